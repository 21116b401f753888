-- The worked examples of docs/EXTENDING.md, as specs: a traversal method
-- added as one file (spec/methods/direct.lua) plus one registration line,
-- and a NAT behaviour added as one registry entry, which then shows in
-- `natpunch lab up --help`, in the matrix's cases and in the lab (root).
local helper = require "spec.helper"
local natpunch = require "natpunch"
local method = require "natpunch.method"
local nat_types = require "natpunch.lab.nat_types"

local function pair(methods_a, methods_b, opts)
  opts = opts or {}
  local rv = assert(natpunch.rendezvous{ listen = "127.0.0.1:0" })
  local srv = rv:address()
  local got = { a = {}, b = {} }
  local function mk(id, methods, box)
    return assert(natpunch.peer{ server = srv, id = id, methods = methods,
      connect_timeout = opts.connect_timeout,
      on_message = function(s, data, kind) box[#box + 1] = { s.peer, data, kind } end })
  end
  local a, b = mk("a", methods_a, got.a), mk("b", methods_b, got.b)
  assert(a:register()); assert(b:register())
  return rv, a, b, got
end

describe("adding a traversal method (docs/EXTENDING.md)", function()
  setup(function()
    -- the registration line of the worked example
    method.register("direct", "spec.methods.direct")
    -- two more, inline, to show ordering, fallback and the deadline
    method.register("test_fail", { run = function() return nil, "nope" end })
    method.register("test_slow", { run = function(ctx)
      ctx:on_cancel(function() ctx.peer.slow_cancelled = true end)
      natpunch.sleep(3600)          -- ignores its deadline: the peer cancels it
    end })
  end)
  teardown(function()
    for _, n in ipairs({ "direct", "test_fail", "test_slow" }) do method.unregister(n) end
  end)

  it("is known by name, and unknown names are refused when the peer is made", function()
    assert.truthy(method.get("direct"))
    assert.truthy(method.get("udp"))
    local names = table.concat(method.names(), ",")
    assert.matches("direct", names); assert.matches("udp", names)
    assert.has_error(function() natpunch.peer{ server = "127.0.0.1:1", id = "x", methods = { "nosuch" } } end,
      "peer: unknown method 'nosuch'")
  end)

  it("connects with the first method that works, in the option's order, and carries data both ways", function()
    helper.run(function()
      local rv, a, b, got = pair({ "test_fail", "direct", "udp" }, { "test_fail", "direct", "udp" })
      local s = assert(a:connect("b"))
      assert.equal("direct", s.method)
      assert.equal("udp", s.transport)
      -- the direct socket is not the peer's registered one
      assert.are_not.equal(b:address(), s.remote)
      assert.is_number(assert(s:touch("over direct")))
      assert(s:send("datagram"))
      local bs
      for _ = 1, 100 do
        bs = b:session("a")
        if bs and #got.b >= 2 then break end
        natpunch.sleep(0.01)
      end
      assert.equal("direct", bs.method)
      assert.is_number(assert(bs:touch("back")))
      for _ = 1, 100 do if #got.a >= 1 then break end natpunch.sleep(0.01) end
      assert.same({ "b", "back", "touch" }, got.a[1])
      local seen = {}
      for _, m in ipairs(got.b) do seen[m[2]] = m[3] end
      assert.same({ ["over direct"] = "touch", datagram = "data" }, seen)
      a:close(); b:close(); rv:close()
    end)
  end)

  it("uses only the methods both sides have, in the connecting side's order", function()
    helper.run(function()
      local rv, a, b = pair({ "direct", "udp" }, { "udp" })
      local s = assert(a:connect("b"))
      assert.equal("udp", s.method)
      a:close(); b:close(); rv:close()
    end)
  end)

  it("fails with the method's reason, or every method's reasons", function()
    helper.run(function()
      local rv, a, b = pair({ "test_fail" }, { "test_fail" })
      local s, err = a:connect("b", 2)
      assert.is_nil(s)
      assert.equal("nope", err)
      a:close(); b:close(); rv:close()
    end)
    helper.run(function()
      local rv, a, b = pair({ "test_fail", "direct" }, { "test_fail" })
      local s, err = a:connect("b", 2)
      assert.is_nil(s)
      assert.equal("nope", err)    -- direct is not common: only test_fail was tried
      a:close(); b:close(); rv:close()
    end)
  end)

  it("the rendezvous passes m.* fields through into introductions, bounded and counted", function()
    helper.run(function()
      local msg = require "natpunch.msg"
      local rv = assert(natpunch.rendezvous{ listen = "127.0.0.1:0" })
      local _, sip, sport = rv:address()
      -- registrations as the authenticated protocol makes them (docs/SECURITY.md)
      local rawclient = require "spec.rawclient"
      local big = {}
      for i = 1, 20 do big["m.x.k" .. string.format("%02d", i)] = string.rep("v", 20) end
      big["m.tcp.port"] = "4444"
      local ua = rawclient.new(sip, sport)
      assert.equal("registered", ua.register("oa", { ["m.methods"] = "tcp,udp" }).t)
      local ub = rawclient.new(sip, sport)
      assert.equal("registered", ub.register("ob", big).t)
      ua.send({ t = "connect", id = "oa", target = "ob", tx = "2" }, msg.CONNECT_PAD)
      local to_a, to_b = ua.last(), ub.last()
      assert.equal("introduce", to_a.t)
      assert.equal("introduce", to_b.t)
      assert.equal("tcp,udp", to_b["m.methods"])       -- a's fields, to b
      local n = 0
      for k in pairs(to_a) do if k:sub(1, 2) == "m." then n = n + 1 end end
      assert.equal(msg.MAX_OPAQUE, n)                  -- b's, within the bounds
      assert.equal("4444", to_a["m.tcp.port"])         -- sorted by name: m.tcp before m.x
      assert.equal(21 - msg.MAX_OPAQUE, rv:stats().opaque_dropped)
      ua.close(); ub.close(); rv:close()
    end)
  end)

  it("cancels a method that overruns its deadline (its cancel hook runs)", function()
    helper.run(function()
      local rv, a, b = pair({ "test_slow" }, { "test_slow" }, { connect_timeout = 0.3 })
      local t0 = natpunch.now()
      local s, err = a:connect("b", 5)
      assert.is_nil(s)
      assert.equal("timeout", err)
      assert.is_true(natpunch.now() - t0 < 4000)
      assert.is_true(a.slow_cancelled)
      a:close(); b:close(); rv:close()
    end, 15)
  end)
end)

-- The worked example's entry: a full cone whose router answers an
-- unsolicited TCP SYN with a RST (the kind of behaviour TCP punching must
-- survive).  UDP: the same as full.
local ENTRY = { id = "fullrst", short = "frst", base = "full", name = "full cone, TCP RST",
  tcp = { unsolicited = "rst" },
  summary = "full cone whose router answers unsolicited TCP SYNs with RST" }

describe("adding a NAT behaviour (docs/EXTENDING.md)", function()
  setup(function() nat_types.add(ENTRY) end)
  teardown(function() nat_types.remove("fullrst") end)

  it("shows in `natpunch lab up --help`, is accepted by name, and its rules are rendered", function()
    local usage = require("natpunch.cli.lab").usage
    assert.matches("  fullrst     full cone whose router answers unsolicited TCP SYNs with RST", usage, 1, true)
    assert.equal("fullrst", require("natpunch.lab").canonical_type("FullRst"))
    local rules = require("natpunch.lab.nft").ruleset{ type = "fullrst", public = "203.0.113.11",
      port_preservation = true }
    assert.matches("reject with tcp reset", rules, 1, true)
    -- the UDP behaviour of its base
    assert.matches('iifname "wan" oifname "lan" ct status dnat accept', rules, 1, true)
  end)

  it("is in the matrix, with outcomes from its ground truth", function()
    local matrix = require "natpunch.lab.matrix"
    local names = table.concat(assert(matrix.names("pairs")), ",")
    for _, other in ipairs({ "full", "restricted", "prc", "sym" }) do
      assert.matches("fullrst%-" .. other, names)
      assert.matches(other .. "%-fullrst", names)
    end
    assert.equal("connect", matrix.case("fullrst-sym").expect)
    assert.equal("connect", matrix.case("sym-fullrst").expect)
    assert.equal("afrst", matrix.case("fullrst-prc").connector)
    assert.matches("fullrst%-prc", table.concat(matrix.names("cone"), ","))
  end)

  local why = require("natpunch.lab").unavailable()
  local lab_it = why and function(name) it(name, function() pending("needs root: " .. why) end) end or it

  lab_it("runs in the lab: matrix cases connect through it and a SYN to it gets a RST", function()
    local matrix = require "natpunch.lab.matrix"
    local runner = matrix.runner{ cases = { "fullrst-sym", "prc-fullrst" } }
    local ok, err = pcall(function()
      runner:up()
      for _, name in ipairs({ "fullrst-sym", "prc-fullrst" }) do
        local res = runner:run_case(name)
        assert.is_true(res.connected, name .. ": " .. tostring(res.reason))
        assert.same({}, res.problems)
      end
      -- from the server's host: a TCP connect to the NAT's public address is refused at once
      local t = runner:topology()
      local code = ("package.path='lua/?.lua;lua/?/init.lua;'..package.path; package.cpath='%s/?.so;'..package.cpath;"
        .. "local c=require'natpunch.core'; local s=c.tcp(); local r;"
        .. "s:connect('%s', 4444, function(e) r=e or 'connected' end);"
        .. "local t=c.timer(); t:start(3000,0,function() r=r or 'timeout' end);"
        .. "while not r do c.run('once') end; print(r)"):format(helper.build, t:public("nafrst"))
      local proc = require "natpunch.lab.proc"
      local out = proc.run({ "ip", "netns", "exec", t:ns("s1"),
        table.unpack(proc.preload({ helper.lua, "-e", code })) })
      assert.matches("ECONNREFUSED", out)
    end)
    runner:down()
    assert(ok, err)
  end)
end)
