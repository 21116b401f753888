-- TURN relay over IPv6 in the NAT lab (issue 12, docs/LAB.md "TURN over
-- IPv6", lab.plan.relay6): two IPv6-only peers, each behind a symmetric
-- NAT66 (nft.nat66: a random port for every new flow, unsolicited packets
-- dropped), have no direct path; a real coturn listening and relaying on
-- 2001:db8::12 carries them.  The rendezvous (reached over IPv6) hands out
-- REST-API credentials for coturn's IPv6 address; each peer allocates an
-- IPv6 relayed address (REQUESTED-ADDRESS-FAMILY), binds a channel to the
-- other's (XOR-PEER-ADDRESS of family IPv6) and the session runs with
-- path "relay": a touch acknowledged and the message answered, ChannelData
-- both ways.
-- Everything goes through the command line in the lab's namespaces; the
-- lab's prefix is "t6" and four random hex digits, and it is removed in
-- teardown, also after a failure, and checked to be gone.
-- NATPUNCH_RELAY6_RUNS=N repeats the relayed connection N times (default
-- 3); the setup times go to stderr.  Tags: #lab (needs root).
local lab = require "natpunch.lab"
local relay6 = require "natpunch.lab.matrix.kinds.relay6"
local runner = require "natpunch.lab.matrix.runner"
local labhelper = require "spec.labhelper"

-- (the hard matrix's relay6 case connects the same way: relay6.connect)
local RV6, TURN6 = relay6.RV6, relay6.TURN6
local RUNS = math.max(1, math.min(50, tonumber(os.getenv("NATPUNCH_RELAY6_RUNS") or "") or 3))

local function summary(list)
  local t = { table.unpack(list) }
  table.sort(t)
  return ("median %d ms (%d-%d)"):format(t[(#t + 1) // 2], t[1], t[#t])
end

labhelper.describe("#lab TURN relay over IPv6", function()
  local L = labhelper.lab(lab.relay6{ prefix = ("t6%04x"):format(math.random(0, 0xffff)) })
  local t
  local u = { cmd = runner.command(), seq = 0 }
  local figures = {}

  -- coturn on both of s2's addresses, the rendezvous on s1's IPv6 one
  -- handing out coturn's IPv6 address (relay6.up)
  setup(function()
    t = L.t
    u.t = t
    relay6.up(u)
  end)

  teardown(function()
    relay6.down(u)
    if #figures > 0 then io.stderr:write("\n  " .. table.concat(figures, "\n  ") .. "\n") end
  end)

  local function pair(...) return relay6.connect(u, ...) end

  it("the NAT66 is symmetric: one socket, a new random port toward each destination", function()
    local f1 = t:node("f1").addr6
    local srv = t:spawn_probe("s1", { "serve", "--six", "1", "--time", "4", "7001", "7002", "7003" })
    assert(srv:expect("READY", 5), srv:output())
    local out = t:probe("x", { "client", "--six", "1", "--bind", "7000", "--to", "[2001:db8::11]:7001",
      "--to", "[2001:db8::11]:7002", "--to", "[2001:db8::11]:7003" })
    srv:wait(6)
    local ports = {}
    -- (each answer, "RECV from port MAPPED ip port": the probe's own
    -- MAPPED line does not match IPv6 targets)
    for ip, port in out:gmatch("RECV %S+ %d+ MAPPED (%S+) (%d+)") do
      assert.equal(f1, ip, out)                  -- translated to f1's WAN address
      ports[port] = true
    end
    local distinct = 0
    for _ in pairs(ports) do distinct = distinct + 1 end
    assert.is_true(next(ports) ~= nil, out)
    assert.is_true(distinct >= 2, out)             -- not one mapping for all destinations
    assert.is_nil(ports["7000"], out)
  end)

  it("without the relay the IPv6 pair has no path (udp only fails)", function()
    local ev, _, out, code = pair("y", "x", RV6, { "--methods", "udp" }, 6)
    assert.equal(1, code, out)
    assert.is_nil(ev.connected, out)
    -- x registered through f1's NAT66
    assert.truthy(ev.registered and ev.registered.public:find("[" .. t:node("f1").addr6 .. "]:", 1, true), out)
  end)

  it("the IPv6 pair connects through coturn's IPv6 relayed addresses: path relay, data and touches", function()
    local times = {}
    for _ = 1, RUNS do
      local ev, wev, out, code = pair("y", "x", RV6)
      assert.equal(0, code, out)
      assert.same({}, relay6.problems(ev, wev), out)
      -- both allocated IPv6 relayed addresses on coturn's IPv6 address
      for _, e in ipairs({ ev, wev }) do
        assert.truthy(e.relay_allocated, out)
        assert.equal("inet6", e.relay_allocated.family, out)
        assert.equal("[" .. TURN6 .. "]:3478", e.relay_allocated.server, out)
        assert.matches("^%[2001:db8::12%]:%d+$", e.relay_allocated.relayed, out)
        -- the mapped address coturn saw: the peer's NAT66, not the peer
        assert.truthy(e.relay_allocated.mapped:find("[2001:db8::1:", 1, true), out)
      end
      assert.equal("relay", ev.connected.path, out)
      assert.equal("relay", ev.connected.method, out)
      assert.equal("inet6", ev.connected.family, out)
      -- the remote is y's relayed address, on coturn
      assert.equal(wev.relay_allocated.relayed, ev.connected.remote, out)
      assert.truthy(ev.touch_acked, out)
      assert.equal("over x", ev.message and ev.message.data, out)   -- y's answer came back
      assert.truthy(wev.connected, out)
      assert.equal("relay", wev.connected.path, out)
      assert.equal(ev.relay_allocated.relayed, wev.connected.remote, out)
      times[#times + 1] = ev.connected.setup_ms
    end
    figures[#figures + 1] = ("IPv6 sym NAT66 x sym NAT66 via coturn on IPv6: %d/%d relayed, setup %s")
      :format(#times, RUNS, summary(times))
  end)
end, { tools = { "turnserver", "turnutils_stunclient" }, hint = "coturn: make deps" })
