-- NAT behaviour discovery: the RFC 5780 server (natpunch.stunserver, `natpunch
-- stun-server`) and client (natpunch.discover, `natpunch nat-type`) over real
-- sockets on loopback (127.0.0.1 and 127.0.0.2 as the two addresses), and
-- with root in the NAT lab: every lab NAT type classified by our client
-- against our server and against coturn's turnserver, and by coturn's
-- turnutils_natdiscovery and Debian's classic `stun` against both servers
-- (same verdicts, and the lab's ground truth).  Tags: #lab.
local helper = require "spec.helper"
local natpunch = require "natpunch"
local core = natpunch.core
local stun = core.stun
local stunserver = require "natpunch.stunserver"
local discover = require "natpunch.discover"

-- A client socket that collects what arrives: list of {m, ip, port, size}.
local function client(port)
  local u = core.udp()
  assert(u:bind("127.0.0.1", port or 0))
  local got = {}
  u:recv_start(function(err, data, ip, p)
    if not err then got[#got + 1] = { m = stun.decode(data), ip = ip, port = p, size = #data } end
  end)
  return u, got
end

local function server_endpoints(s)
  local list = {}
  for _, a in ipairs(s:addresses()) do
    local ip, port = natpunch.addr.parse(a)
    list[#list + 1] = { ip = ip, port = port }
  end
  return list -- (1,1) (1,2) (2,1) (2,2)
end

-- A Binding request with RESPONSE-PORT of length 2 (not 4), by hand.
local function response_port_len2(port)
  local tid = core.random_bytes(12)
  return string.pack(">I2I2I4", 0x0001, 8, 0x2112A442) .. tid .. string.pack(">I2I2I2I2", 0x0027, 2, port, 0), tid
end

describe("natpunch.stunserver (loopback, two addresses)", function()
  it("answers from the address and port CHANGE-REQUEST asks for, with RESPONSE-ORIGIN and OTHER-ADDRESS", function()
    helper.run(function()
      local s = assert(stunserver.new{ listen = "127.0.0.1:0", alternate = "127.0.0.2" })
      local ep = server_endpoints(s)
      assert.equal(4, #ep)
      assert.equal(ep[1].port + 1, ep[2].port)
      assert.equal("127.0.0.2", ep[3].ip)
      assert.equal(ep[1].port, ep[3].port)
      assert.equal(s:other(), "127.0.0.2:" .. ep[2].port)
      local u, got = client()
      local cases = {
        { change = nil, from = ep[1] },
        { change = { port = true }, from = ep[2] },
        { change = { ip = true }, from = ep[3] },
        { change = { ip = true, port = true }, from = ep[4] },
      }
      for i, c in ipairs(cases) do
        u:send(ep[1].ip, ep[1].port, stun.encode{ class = "request", change_request = c.change })
        assert.is_true(helper.until_true(function() return #got >= i end, 2))
        local r = got[i]
        assert.equal(c.from.ip, r.ip)
        assert.equal(c.from.port, r.port)
        assert.same({ c.from.ip, c.from.port }, { r.m.response_origin.ip, r.m.response_origin.port })
        -- OTHER-ADDRESS: both changed, relative to where the request arrived
        assert.same({ ep[4].ip, ep[4].port }, { r.m.other_address.ip, r.m.other_address.port })
        assert.equal("127.0.0.1", r.m.xor_mapped_address.ip)
        assert.equal(select(2, u:getsockname()), r.m.xor_mapped_address.port)
      end
      -- a request to the alternate address names the primary as OTHER-ADDRESS
      u:send(ep[4].ip, ep[4].port, stun.encode{ class = "request" })
      assert.is_true(helper.until_true(function() return #got >= 5 end, 2))
      assert.same({ ep[1].ip, ep[1].port }, { got[5].m.other_address.ip, got[5].m.other_address.port })
      assert.equal(3, s:stats().changed) -- three of the four asked for a change
      s:close()
      u:close()
    end)
  end)

  it("sends RESPONSE-PORT answers to the requester's own IP at that port (length 4 and 2)", function()
    helper.run(function()
      local s = assert(stunserver.new{ listen = "127.0.0.1:0", alternate = "127.0.0.2" })
      local ep = server_endpoints(s)
      local u = client()
      local other, got = client()
      local oport = select(2, other:getsockname())
      u:send(ep[1].ip, ep[1].port, stun.encode{ class = "request", response_port = oport })
      local raw = response_port_len2(oport)
      u:send(ep[1].ip, ep[1].port, raw)
      assert.is_true(helper.until_true(function() return #got >= 2 end, 2))
      for _, r in ipairs(got) do
        -- the mapped address is still the requester's, the answer went elsewhere
        assert.equal(select(2, u:getsockname()), r.m.xor_mapped_address.port)
      end
      assert.equal(2, s:stats().response_port)
      s:close()
      u:close()
      other:close()
    end)
  end)

  it("never answers larger than the request beyond the RFC 5780 attributes; PADDING up to the request size", function()
    helper.run(function()
      local s = assert(stunserver.new{ listen = "127.0.0.1:0", alternate = "127.0.0.2" })
      local ep = server_endpoints(s)
      local u, got = client()
      local small = stun.encode{ class = "request" }                    -- 20 bytes
      local padded = stun.encode{ class = "request", padding = 400 }   -- 424 bytes
      local big = stun.encode{ class = "request", software = string.rep("x", 200) }
      for _, req in ipairs({ small, padded, big }) do u:send(ep[1].ip, ep[1].port, req) end
      assert.is_true(helper.until_true(function() return #got >= 3 end, 2))
      local by_size = {}
      for _, r in ipairs(got) do by_size[#by_size + 1] = r.size end
      table.sort(by_size)
      -- small: exactly the three address attributes; big: with SOFTWARE
      -- and MAPPED-ADDRESS; padded: padded, and still not above 424
      assert.equal(56, by_size[1])
      assert.is_true(by_size[2] <= #big)
      assert.is_true(by_size[3] > 300 and by_size[3] <= #padded, "padded answer of " .. by_size[3])
      s:close()
      u:close()
    end)
  end)

  it("answers RFC 3489 requests with SOURCE-ADDRESS and CHANGED-ADDRESS", function()
    helper.run(function()
      local s = assert(stunserver.new{ listen = "127.0.0.1:0", alternate = "127.0.0.2" })
      local ep = server_endpoints(s)
      local u, got = client()
      local tid = "\1" .. core.random_bytes(15)
      local req = stun.encode{ class = "request", classic = true, transaction_id = tid,
        change_request = { ip = true } }
      u:send(ep[1].ip, ep[1].port, req)
      assert.is_true(helper.until_true(function() return #got >= 1 end, 2))
      local m = got[1].m
      assert.is_true(m.classic)
      assert.equal("127.0.0.2", got[1].ip)
      assert.same({ ep[3].ip, ep[3].port }, { m.source_address.ip, m.source_address.port })
      assert.same({ ep[4].ip, ep[4].port }, { m.changed_address.ip, m.changed_address.port })
      assert.equal("127.0.0.1", m.mapped_address.ip)
      s:close()
      u:close()
    end)
  end)

  it("without an alternate address: no OTHER-ADDRESS, 420 to CHANGE-REQUEST, junk dropped", function()
    helper.run(function()
      local s = assert(stunserver.new{ listen = "127.0.0.1:0" })
      assert.equal(1, #s:addresses())
      assert.is_nil(s:other())
      local ip, port = natpunch.addr.parse(s:address())
      local u, got = client()
      u:send(ip, port, stun.encode{ class = "request" })
      u:send(ip, port, stun.encode{ class = "request", change_request = { ip = true, port = true } })
      u:send(ip, port, stun.encode{ class = "success" })   -- never answered
      u:send(ip, port, "\0\1\0\0garbage")
      assert.is_true(helper.until_true(function() return #got >= 2 end, 2))
      natpunch.sleep(0.1)
      assert.equal(2, #got)
      local ok, err
      for _, r in ipairs(got) do
        if r.m.class == "success" then ok = r.m else err = r.m end
      end
      assert.is_nil(ok.other_address)
      assert.equal(420, err.error.code)
      assert.same({ 3 }, err.unknown_attributes)
      local st = s:stats()
      assert.equal(1, st.refused)
      assert.equal(2, st.dropped)
      s:close()
      u:close()
    end)
  end)

  it("refuses bad options", function()
    assert.has_error(function() stunserver.new{ listen = "127.0.0.1:0", alternate = "127.0.0.1" } end)
    assert.has_error(function() stunserver.new{ listen = "127.0.0.1:0", alternate = "not an ip" } end)
    assert.has_error(function() stunserver.new{ listen = "127.0.0.1:0", alternate = "::1" } end)
    assert.has_error(function() stunserver.new("127.0.0.1:0") end)
  end)
end)

describe("natpunch.discover (loopback)", function()
  it("reports a host without NAT as open, not as endpoint-independent filtering", function()
    helper.run(function()
      local s = assert(stunserver.new{ listen = "127.0.0.1:0", alternate = "127.0.0.2" })
      local r = assert(discover{ server = s:address(), bind = "127.0.0.1" })
      assert.is_false(r.nat)
      assert.equal("open", r.type)
      assert.equal("none", r.mapping)
      assert.equal("endpoint-independent", r.filtering)
      assert.is_true(r.port_preserving)
      assert.equal(s:other(), r.other)
      assert.is_true(r.elapsed_ms < 3000, "took " .. r.elapsed_ms .. " ms")
      s:close()
    end)
  end)

  it("says what it could not test against a server without an alternate address", function()
    helper.run(function()
      local s = assert(stunserver.new{ listen = "127.0.0.1:0" })
      local r = assert(discover{ server = s:address(), bind = "127.0.0.1" })
      assert.truthy(r.limited)
      assert.is_nil(r.mapping)
      assert.is_nil(r.type)
      assert.matches("^127%.0%.0%.1:%d+$", r.public)
      s:close()
    end)
  end)

  it("reports udp-blocked when nothing answers", function()
    helper.run(function()
      local silent = core.udp()
      assert(silent:bind("127.0.0.1", 0))
      local r = assert(discover{ server = natpunch.addr.format(silent:getsockname()), bind = "127.0.0.1" })
      assert.equal("udp-blocked", r.type)
      assert.is_false(r.udp)
      silent:close()
    end)
  end)

  it("runs against a rendezvous with --alternate, which still introduces peers", function()
    helper.run(function()
      local rv = assert(natpunch.rendezvous{ listen = "127.0.0.1:0", alternate = "127.0.0.2" })
      local r = assert(discover{ server = rv:address(), bind = "127.0.0.1" })
      assert.equal("open", r.type)
      assert.equal("127.0.0.2:" .. (select(3, rv:address()) + 1), r.other)
      local a = natpunch.peer{ server = rv:address(), id = "a" }
      local b = natpunch.peer{ server = rv:address(), id = "b" }
      assert(a:register())
      assert(b:register())
      local sess = assert(a:connect("b"))
      assert.truthy(sess:touch("hi"))
      a:close()
      b:close()
      rv:close()
    end)
  end)

  it("peer{ discover = true }: the registration carries the NAT behaviour, introductions pass it on", function()
    helper.run(function()
      local events = {}
      local rv = assert(natpunch.rendezvous{ listen = "127.0.0.1:0", alternate = "127.0.0.2",
        on_event = function(ev) events[#events + 1] = ev end })
      local got = natpunch.future()
      local b = natpunch.peer{ server = rv:address(), id = "b", discover = true,
        on_session = function(s) got:set(s) end }
      local a = natpunch.peer{ server = rv:address(), id = "a", discover = true }
      assert(b:register())
      assert(a:register())
      assert.equal("open", a.nat.type)
      assert.equal("none/EI", a.nat_code)
      assert.equal("none/EI", rv:lookup("a").nat)
      local regs = 0
      for _, ev in ipairs(events) do if ev.event == "registered" and ev.nat == "none/EI" then regs = regs + 1 end end
      assert.equal(2, regs)
      local s = assert(a:connect("b"))
      assert.same({ mapping = "none", filtering = "endpoint-independent", type = "open" }, s.peer_nat)
      local sb = assert(got:wait(5))
      assert.equal("open", sb.peer_nat.type)
      a:close()
      b:close()
      rv:close()
    end, 20)
  end)

  it("codes NAT behaviour for registrations", function()
    assert.equal("EI/APD", discover.code({ mapping = discover.EI, filtering = discover.APD }))
    assert.is_nil(discover.code({ limited = "x" }))
    assert.same({ mapping = discover.APD, filtering = discover.APD, type = "symmetric" },
      discover.parse_code("APD/APD"))
    assert.is_nil(discover.parse_code("XX/EI"))
    assert.is_nil(discover.parse_code("EI/none"))
    assert.is_nil(discover.parse_code(42))
  end)

  it("names port allocation patterns", function()
    assert.equal("preserving", discover.allocation({ 5000, 6000 }, { 5000, 6000 }).pattern)
    local seq = discover.allocation({ 1000, 1002, 1004, 1006 }, { 1, 2, 3, 4 })
    assert.same({ "sequential", 2 }, { seq.pattern, seq.delta })
    assert.equal("random", discover.allocation({ 1000, 31337, 2222, 45000 }, { 1, 2, 3, 4 }).pattern)
    -- a gap (another socket took a port between two probes): still sequential
    local gap = discover.allocation({ 1000, 1001, 1003, 1004 }, { 1, 2, 3, 4 })
    assert.equal("sequential", gap.pattern)
    assert.equal(1, gap.delta)
    assert.equal("random", discover.allocation({ 1000, 1001, 900, 901 }, { 1, 2, 3, 4 }).pattern)
    assert.equal("random", discover.allocation({ 1000, 1001, 1030, 1031 }, { 1, 2, 3, 4 }).pattern)
    assert.equal("random", discover.allocation({ 1000, 1002, 1005 }, { 1, 2, 3 }).pattern)
    assert.equal("symmetric", discover.classic(true, discover.AD, discover.EI))
    assert.equal("restricted-cone", discover.classic(true, discover.EI, discover.AD))
    assert.equal("firewall", discover.classic(false, "none", discover.APD))
  end)
end)

describe("natpunch stun-server / nat-type (CLI, loopback)", function()
  local within, procs, dir = helper.within, helper.procs(), nil
  before_each(function() dir = helper.tmpdir("disc") end)
  after_each(function()
    procs.kill_all()
    os.execute(helper.sh("rm -rf " .. helper.q(dir)))
  end)

  it("prints the listening addresses, then a result line with --json", function()
    local srv = procs.spawn(within(60) .. " stun-server --listen 127.0.0.1:0 --alternate 127.0.0.2 --json",
      dir, "srv")
    local ev = helper.json_lines(srv.expect('"event":"listening"'))[1]
    assert.equal(4, #ev.addresses)
    local out, code, err = helper.exec(within(20) .. " nat-type --server " .. ev.address
      .. " --bind 127.0.0.1 --json", dir)
    assert.equal(0, code, out .. err)
    local res = helper.json_lines(out)
    assert.equal(1, #res)
    assert.equal("result", res[1].event)
    assert.equal("open", res[1].type)
  end)

  it("rejects bad usage with exit code 2", function()
    for _, args in ipairs({ "nat-type", "nat-type --server nonsense", "stun-server --alternate x:y:z",
      "stun-server --listen 127.0.0.1:0 --alternate 127.0.0.1" }) do
      local _, code = helper.exec(within(20) .. " " .. args, dir)
      assert.equal(2, code, args)
    end
  end)
end)

---------------------------------------------------------------------------
-- the lab

local labhelper = require "spec.labhelper"
local discovery = require "natpunch.lab.discovery"

labhelper.describe("NAT discovery in the lab: every NAT type, every tool, both servers #lab", function()
  local d, results, prefix = nil, {}, nil
  setup(function()
    d = discovery.runner()
    prefix = d:topology().prefix
    d:up()
    for _, tool in ipairs({ "natpunch", "natdiscovery", "stun" }) do
      for _, which in ipairs({ "ours", "coturn" }) do
        results[tool .. "/" .. which] = d:run(tool, which)
      end
    end
  end)
  teardown(function()
    if d then d:down() end
    local p = io.popen("ip netns list")
    local out = p:read("a")
    p:close()
    assert.is_nil(out:find(prefix .. "-", 1, true), "namespaces left")
    for _, h in ipairs({ d and d.coturn, d and d.ours }) do
      assert.is_false(h:alive(), "server left running: " .. table.concat(h.argv, " "))
    end
  end)

  for _, c in ipairs(discovery.CASES) do
    local truth = discovery.truth(c)
    for _, which in ipairs({ "ours", "coturn" }) do
      it(("natpunch nat-type vs %s: %s is %s"):format(which, c.name, truth.type), function()
        local r = results["natpunch/" .. which][c.name]
        local show = r.output
        assert.equal(truth.type, r.type, show)
        assert.equal(truth.mapping, r.mapping, show)
        assert.equal(truth.filtering, r.filtering, show)
        assert.equal(truth.nat, r.nat, show)
        if truth.nat then
          assert.equal(truth.hairpin, r.hairpin, show)
          assert.equal(truth.port_preserving, r.port_preserving, show)
        end
        if truth.allocation then assert.equal(truth.allocation, r.allocation and r.allocation.pattern, show) end
        if truth.delta then assert.equal(truth.delta, r.allocation and r.allocation.delta, show) end
        assert.is_true(r.elapsed_ms < 5000, show)
      end)
      it(("turnutils_natdiscovery -m -f vs %s: %s"):format(which, c.name), function()
        local r = results["natdiscovery/" .. which][c.name]
        -- natdiscovery has no "no NAT" verdict: it says EIM + EIF
        local want_mapping = truth.nat and truth.mapping or "endpoint-independent"
        assert.equal(want_mapping, r.mapping, r.output)
        assert.equal(truth.filtering, r.filtering, r.output)
      end)
      it(("stun (RFC 3489) vs %s: %s"):format(which, c.name), function()
        local r = results["stun/" .. which][c.name]
        assert.equal(truth.type, r.type, r.output)
        if truth.nat then
          assert.equal(truth.hairpin, r.line:match("will hairpin") ~= nil, r.output)
        end
      end)
    end
    it(("every tool says the same against our server and coturn: %s"):format(c.name), function()
      for _, tool in ipairs({ "natpunch", "natdiscovery", "stun" }) do
        local a, b = results[tool .. "/ours"][c.name], results[tool .. "/coturn"][c.name]
        for _, k in ipairs({ "type", "mapping", "filtering", "hairpin", "line" }) do
          assert.equal(b[k], a[k], tool .. " " .. k)
        end
      end
    end)
  end
end, { tools = { "turnserver", "turnutils_natdiscovery", "stun" }, hint = "tools/deps.sh: coturn, stun-client" })
