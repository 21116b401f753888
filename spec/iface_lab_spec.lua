-- Several interfaces and IPv6 in the NAT lab (issue 12, docs/LAB.md
-- "Dual-homed hosts and IPv6", lab.plan.iface):
--   * an IPv6-only pair behind stateful firewalls (no NAT: 2001:db8 routed)
--     connects through a rendezvous reachable over IPv6;
--   * a dual-homed host (eth0 behind a symmetric NAT, eth1 on the LAN of a
--     port-restricted NAT) gathers candidates from both LANs and connects
--     over the one that works; bound to eth0 alone it cannot;
--   * a dual-homed host whose first NAT passes nothing but its rendezvous
--     traffic (eth0 behind it, eth1 behind a NAT of its own) connects with
--     --each-interface through the second NAT, whose public address the
--     other peer sees (either way round); without it, it cannot; with
--     nothing through the first NAT at all, it registers through the
--     second too;
--   * dual-stack peers (--dual-stack) behind symmetric NATs for IPv4 and
--     firewalls for IPv6 connect directly over IPv6 rather than through the
--     IPv4 TURN relay they fall back to without IPv6.
-- Everything goes through the command line inside the lab's namespaces; the
-- lab's prefix is random (concurrent runs do not collide) and the lab is
-- removed in teardown, also after a failure, and checked to be gone.
-- NATPUNCH_IFACE_RUNS=N repeats each connection N times (default 3); the
-- setup times go to stderr (docs/TRAVERSAL.md).  Tags: #lab (needs root).
local lab = require "natpunch.lab"
local iface = require "natpunch.lab.matrix.kinds.iface"
local runner = require "natpunch.lab.matrix.runner"
local labhelper = require "spec.labhelper"

-- (the hard matrix's iface cases connect the same way: iface.connect)
local RV4, RV6, RV_TURN = iface.RV4, iface.RV6, iface.RV_TURN
local TURN_IP, SECRET = iface.TURN_IP, iface.SECRET
local RUNS = math.max(1, math.min(50, tonumber(os.getenv("NATPUNCH_IFACE_RUNS") or "") or 3))

local np = labhelper.natpunch

-- "median X ms (min-max Y-Z)" of a list of setup times
local function summary(list)
  local t = { table.unpack(list) }
  table.sort(t)
  return ("median %d ms (%d-%d)"):format(t[(#t + 1) // 2], t[1], t[#t])
end

labhelper.describe("#lab several interfaces and IPv6", function()
  -- the lab, with the IPv4 rendezvous on s1 (labhelper: up in setup, down
  -- and checked gone in teardown, also after a failure)
  local L = labhelper.lab(lab.iface(), { rendezvous = true })
  local t, rv6
  local figures = {}

  setup(function()
    t = L.t
    rv6 = t:spawn("s1", np({ "rendezvous", "--listen", RV6, "--json" }))
    assert(rv6:expect('"event":"listening"', 10), rv6:output())
  end)

  teardown(function()
    if #figures > 0 then io.stderr:write("\n  " .. table.concat(figures, "\n  ") .. "\n") end
  end)

  -- A waiting peer in host `who`, then a connecting one in host `from`
  -- (iface.connect); returns the connector's events and output.
  local u = { cmd = runner.command(), seq = 0 }
  local function connect(...)
    u.t = t
    return iface.connect(u, ...)
  end

  it("uses only 2001:db8::/32 for IPv6, and the firewalls drop what nobody inside asked for", function()
    for _, n in ipairs(t:nodes()) do
      if n.addr6 then assert.matches("^2001:db8:", n.addr6) end
    end
    -- x and y have no IPv4 address but loopback
    local v4 = t:exec("x", { "ip", "-4", "-o", "addr", "show" })
    assert.is_nil(v4:find("198.18", 1, true), v4)
    -- unsolicited IPv6 from x toward y: nothing arrives, f2 counts drops
    local y6 = t:node("y").addr6
    local sink = t:spawn_probe("y", { "sink", "--six", "1", "--bind", "7000", "--time", "2" })
    assert(sink:expect("READY", 5), sink:output())
    local out = t:probe("x", { "send", "--six", "1", "--bind", "7001", "--to", "[" .. y6 .. "]:7000",
      "--count", "5" })
    assert.matches("SENT", out)
    sink:wait(5)
    assert.matches("SINK received 0 ", sink:output())
    local rules = t:exec("f2", { "nft", "list", "table", "ip6", "natpunch6" })
    local dropped = tonumber(rules:match("packets (%d+) bytes %d+ drop"))
    assert.is_true(dropped and dropped >= 5, rules)
  end)

  it("an IPv6-only pair connects through a rendezvous reachable over IPv6", function()
    local times = {}
    for _ = 1, RUNS do
      local ev, out, code = connect("y", "x", RV6)
      assert.equal(0, code, out)
      assert.equal("inet6", ev.connected.family, out)
      assert.equal("udp", ev.connected.method, out)
      assert.matches("^%[2001:db8:4::", ev.connected.remote, out)
      assert.matches("^%[2001:db8:3::", ev.registered.public, out)   -- no NAT for IPv6
      assert.truthy(ev.touch_acked, out)
      assert.equal("over x", ev.message and ev.message.data, out)
      times[#times + 1] = ev.connected.setup_ms
    end
    figures[#figures + 1] = ("IPv6-only pair: %d/%d connected, setup %s"):format(#times, RUNS, summary(times))
  end)

  it("a dual-homed host gathers candidates on both LANs and connects over the one that works", function()
    local h_eth0, h_eth1 = t:addr("h"), t:node("h").also[1].addr
    local times = {}
    for _ = 1, RUNS do
      local ev, out, code = connect("b", "h", RV4)
      assert.equal(0, code, out)
      -- both interfaces' addresses were offered
      assert.truthy(ev.trying.private:find(h_eth0 .. ":", 1, true), out)
      assert.truthy(ev.trying.private:find(h_eth1 .. ":", 1, true), out)
      -- registered through eth0's symmetric NAT, connected over eth1's LAN
      assert.truthy(ev.registered.public:find(t:public("na") .. ":", 1, true), out)
      assert.equal("private", ev.connected.path, out)
      assert.truthy(ev.connected.remote:find(t:addr("b") .. ":", 1, true), out)
      assert.equal("over h", ev.message and ev.message.data, out)
      times[#times + 1] = ev.connected.setup_ms
    end
    -- the same host bound to eth0 only: symmetric x port-restricted, no path
    local ev, out, code = connect("b", "h", RV4, nil, { "--bind", h_eth0 .. ":0", "--methods", "udp" }, 4)
    assert.equal(1, code, out)
    assert.is_nil(ev.connected, out)
    figures[#figures + 1] = ("dual-homed host: %d/%d connected over eth1's LAN, setup %s; "
      .. "bound to eth0 only: failed"):format(#times, RUNS, summary(times))
  end)

  it("a dual-homed host whose first NAT is cut connects through its second with --each-interface", function()
    iface.cut(t)
    local g_eth0, g_eth1 = t:addr("g"), t:node("g").also[1].addr
    local nat1, nat2 = t:public("na"), t:public("nd")
    -- the lab routes by source: from eth1's address out nd, else out na
    local rules = t:exec("g", { "ip", "rule", "show" })
    assert.truthy(rules:find("from " .. g_eth1 .. " lookup 101", 1, true), rules)
    local times = {}
    for _ = 1, RUNS do
      local drops = iface.cut_drops(t)
      local ev, out, code = connect("b", "g", RV4, nil, { "--each-interface" })
      assert.equal(0, code, out)
      -- registered through eth0's NAT; every interface's socket and its mapping offered
      assert.truthy(ev.registered.public:find(nat1 .. ":", 1, true), out)
      local offered = ev.interfaces.candidates
      assert.truthy(offered:find(g_eth0 .. ":", 1, true), out)
      assert.truthy(offered:find(g_eth1 .. ":", 1, true), out)
      assert.truthy(offered:find(nat2 .. ":", 1, true), out)
      -- the own socket found nothing through the cut NAT; eth1's socket did
      assert.truthy(ev.punching_interfaces, out)
      assert.truthy(ev.answered["local"]:find(g_eth1 .. ":", 1, true), out)
      assert.equal("udp", ev.connected.method, out)
      assert.equal("public", ev.connected.path, out)
      assert.truthy(ev.connected.remote:find(t:public("nb") .. ":", 1, true), out)
      assert.equal("over g", ev.message and ev.message.data, out)
      -- b was reached from g's second NAT
      local w = iface.waiter_events(out)
      assert.truthy(w.connected and w.connected.remote:find(nat2 .. ":", 1, true), out)
      assert.is_true(iface.cut_drops(t) > drops, out)     -- the first NAT was tried, and dropped it
      times[#times + 1] = ev.connected.setup_ms
    end
    -- the other way round: g waits (introduced through na), b connects and reaches g through nd
    do
      local ev, out, code = connect("g", "b", RV4, { "--each-interface" }, nil, 10)
      assert.equal(0, code, out)
      assert.truthy(ev.connected.remote:find(nat2 .. ":", 1, true), out)
    end
    -- without --each-interface: only the cut NAT (udp alone: no birthday through it either)
    local ev, out, code = connect("b", "g", RV4, nil, { "--methods", "udp" }, 4)
    assert.equal(1, code, out)
    assert.is_nil(ev.connected, out)
    figures[#figures + 1] = ("dual-homed host, first NAT cut: %d/%d connected through the second NAT "
      .. "(--each-interface), setup %s; without: failed"):format(#times, RUNS, summary(times))
  end)

  it("a dual-homed host whose first NAT passes nothing registers and connects through its second", function()
    iface.cut(t, true)
    local g_eth1, nat2 = t:node("g").also[1].addr, t:public("nd")
    local ev, out, code = connect("b", "g", RV4, nil, { "--each-interface" }, 20)
    local dropped = iface.cut_drops(t)
    iface.cut(t)        -- back to the cut of the other cases (the rendezvous passes)
    assert.equal(0, code, out)
    -- the default route's registration went unanswered: through eth1's socket, via nd
    assert.truthy(ev.server_via, out)
    assert.truthy(ev.registered.public:find(nat2 .. ":", 1, true), out)
    assert.truthy(ev.answered["local"]:find(g_eth1 .. ":", 1, true), out)
    -- (the allocation probe through the default route went unanswered: with
    -- it unknown, predict stays, whose first round is udp's punch)
    assert.equal("public", ev.connected.path, out)
    assert.equal("over g", ev.message and ev.message.data, out)
    local w = iface.waiter_events(out)
    assert.truthy(w.connected and w.connected.remote:find(nat2 .. ":", 1, true), out)
    assert.is_true(dropped > 0, out)
    -- the other way round: g waits, registered and introduced through eth1's socket
    iface.cut(t, true)
    local rev, rout, rcode = connect("g", "b", RV4, { "--each-interface" }, nil, 10)
    iface.cut(t)
    assert.equal(0, rcode, rout)
    assert.truthy(rev.connected.remote:find(nat2 .. ":", 1, true), rout)
    figures[#figures + 1] = ("dual-homed host, first NAT cut entirely: connected through the second "
      .. "(registered via eth1), setup %d ms"):format(ev.connected.setup_ms)
  end)

  local relay_it = labhelper.skip_reason{ tools = { "turnserver" } } and pending or it
  relay_it("dual-stack peers connect directly over IPv6 rather than through the IPv4 relay", function()
    local turnd = labhelper.coturn(t, { host = "s2", probe = "s1", ip = TURN_IP, secret = SECRET,
      name = "coturn-iface" })
    local rvt = t:spawn("s1", np({ "rendezvous", "--listen", RV_TURN, "--json",
      "--turn", TURN_IP .. ":3478", "--turn-secret", SECRET }))
    assert(rvt:expect('"event":"listening"', 10), rvt:output())
    local six, relay = {}, {}
    for _ = 1, RUNS do
      -- both families: the IPv6 candidates win over the relay
      local ev, out, code = connect("d2", "d1", RV_TURN, { "--dual-stack" }, { "--dual-stack" }, 25)
      assert.equal(0, code, out)
      assert.truthy(ev.relay_allocated, out)      -- the relay was there to fall back to
      assert.equal("udp", ev.connected.method, out)
      assert.equal("inet6", ev.connected.family, out)
      assert.matches("^%[2001:db8:4::", ev.connected.remote, out)
      assert.truthy(ev.touch_acked, out)
      six[#six + 1] = ev.connected.setup_ms
      -- IPv4 only (symmetric x symmetric): the relay
      ev, out, code = connect("d2", "d1", RV_TURN, nil, nil, 25)
      assert.equal(0, code, out)
      assert.equal("relay", ev.connected.path, out)
      assert.equal("inet", ev.connected.family, out)
      assert.truthy(ev.touch_acked, out)
      relay[#relay + 1] = ev.connected.setup_ms
    end
    figures[#figures + 1] = ("dual-stack sym/sym: IPv6 direct %d/%d, setup %s; "
      .. "IPv4 only: relay %d/%d, setup %s"):format(#six, RUNS, summary(six), #relay, RUNS, summary(relay))
    rvt:stop()
    turnd:stop()
  end)
end)
