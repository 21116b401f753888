-- Several rendezvous servers at once (issue 12, failover), over loopback:
-- a peer registers with every server of its list concurrently and keeps
-- each registration; connect goes through any live server and moves on
-- to the next one after server_timeout; introductions of one connection
-- from several servers are one connection (no second punch, no
-- "failed"); a server that stops answering is reported down, and up
-- again when it answers.  The lab spec (failover_lab_spec.lua) does the
-- same through NATs with server processes killed.
local helper = require "spec.helper"
local core = require "natpunch.core"
local natpunch = require "natpunch"

local function server(listen)
  local rv = assert(natpunch.rendezvous{ listen = listen or "127.0.0.1:0" })
  return rv, (rv:address())
end

local function dead_address()
  local u = core.udp()
  assert(u:bind("127.0.0.1", 0))
  local _, port = u:getsockname()
  u:close()
  return "127.0.0.1:" .. port
end

local function new_peer(list, id, extra)
  local events = {}
  local o = { servers = list, id = id, bind = "127.0.0.1:0",
    on_event = function(ev) events[#events + 1] = ev end }
  for k, v in pairs(extra or {}) do o[k] = v end
  local p = assert(natpunch.peer(o))
  return p, events
end

local function count(events, name, field, value)
  local n = 0
  for _, ev in ipairs(events) do
    if ev.event == name and (not field or ev[field] == value) then n = n + 1 end
  end
  return n
end

-- In a task: until cond() holds or timeout (s) passes.
local function wait_for(cond, timeout)
  local deadline = core.now() + timeout * 1000
  while not cond() and core.now() < deadline do natpunch.sleep(0.02) end
  return cond() and true or false
end

local function find(events, name)
  for _, ev in ipairs(events) do
    if ev.event == name then return ev end
  end
end

describe("several rendezvous servers", function()
  it("registers with every server at once and is known to each", function()
    helper.run(function()
      local rv1, s1 = server()
      local rv2, s2 = server()
      local a, ev = new_peer({ s1, s2 }, "alice")
      assert(a:register())
      assert.is_true(wait_for(function() return count(ev, "registered") == 2 end, 3))
      assert.is_not_nil(rv1:lookup("alice"))
      assert.is_not_nil(rv2:lookup("alice"))
      assert.equal(s1, a.server)
      a:close(); rv1:close(); rv2:close()
    end)
  end)

  it("does not wait for a dead server: registers with the live one at once", function()
    helper.run(function()
      local rv, s = server()
      local dead = dead_address()
      local a, ev = new_peer({ dead, s }, "alice", { register_timeout = 2 })
      local t0 = core.now()
      assert(a:register())
      assert.is_true(core.now() - t0 < 1000, "took " .. (core.now() - t0) .. " ms")
      assert.equal(s, a.server)
      assert.equal(s, find(ev, "registered").server)
      -- the dead one is reported once its registration times out
      assert.is_true(wait_for(function() return find(ev, "server_failed") ~= nil end, 4))
      assert.equal(dead, find(ev, "server_failed").server)
      a:close(); rv:close()
    end)
  end)

  it("returns from a register() in progress when the peer closes", function()
    helper.run(function()
      local a = new_peer({ dead_address(), dead_address() }, "alice", { register_timeout = 5 })
      natpunch.spawn(function() natpunch.sleep(0.2) a:close() end)
      local t0 = core.now()
      local ok, err = a:register()
      assert.is_nil(ok)
      assert.matches("closed", err)
      assert.is_true(core.now() - t0 < 2000)
    end)
  end)

  it("fails when no server answers, naming the reason", function()
    helper.run(function()
      local a = new_peer({ dead_address(), dead_address() }, "alice", { register_timeout = 0.3 })
      local ok, err = a:register()
      assert.is_nil(ok)
      assert.matches("register failed: timeout", err)
      assert.is_false(a.registered)
      a:close()
    end)
  end)

  it("connects through the other server within 2 s when one dies; sessions go on", function()
    helper.run(function()
      local rv1, s1 = server()
      local rv2, s2 = server()
      local a, aev = new_peer({ s1, s2 }, "alice")
      local b, bev = new_peer({ s1, s2 }, "bob", { on_message = function(s, data, kind)
        if kind == "touch" then s:touch(data, function() end) else s:send(data) end
      end })
      assert(a:register()); assert(b:register())
      assert.is_true(wait_for(function()
        return count(aev, "registered") == 2 and count(bev, "registered") == 2
      end, 3))
      local s = assert(a:connect("bob"))
      assert.equal(s1, s.server)
      assert.equal(s1, find(aev, "connected").server)
      assert.truthy(s:touch("before"))
      -- server 1 goes away: its port is closed, nothing answers there
      rv1:close()
      local t0 = core.now()
      local s2nd = assert(a:connect("bob"))
      local ms = core.now() - t0
      assert.equal(s2, s2nd.server)
      assert.is_true(ms <= 2000, "new connection after " .. ms .. " ms")
      io.stderr:write(("\n  loopback failover: new connection %d ms after the server closed\n"):format(ms))
      assert.equal(1, count(aev, "server_down", "server", s1))
      -- the session made before the failure still carries touches and data
      assert.truthy(s:touch("after"))
      assert.truthy(s:send("ping"))
      -- the next connect goes to the live server first: no wait at all
      local t1 = core.now()
      assert(a:connect("bob"))
      assert.is_true(core.now() - t1 < 500, "took " .. (core.now() - t1) .. " ms")
      assert.equal(0, count(bev, "failed"))
      a:close(); b:close(); rv2:close()
    end)
  end)

  it("dedupes one connection asked of both servers at once (server_timeout 0)", function()
    helper.run(function()
      local rv1, s1 = server()
      local rv2, s2 = server()
      local a = new_peer({ s1, s2 }, "alice", { server_timeout = 0 })
      local sessions = 0
      local b, bev = new_peer({ s1, s2 }, "bob", { on_session = function() sessions = sessions + 1 end })
      assert(a:register()); assert(b:register())
      assert.is_true(wait_for(function()
        return rv1:lookup("alice") and rv2:lookup("alice") and rv1:lookup("bob") and rv2:lookup("bob")
      end, 3))
      local s = assert(a:connect("bob"))
      assert.truthy(s:touch("once"))
      -- both servers introduced bob (the second introduction of the same
      -- connection is a duplicate), and bob made one session, no "failed"
      assert.is_true(wait_for(function() return b:stats().intros_duplicate == 1 end, 3))
      natpunch.sleep(0.5)
      assert.equal(1, rv1:stats().introductions)
      assert.equal(1, rv2:stats().introductions)
      assert.equal(1, sessions)
      assert.equal(1, count(bev, "connected"))
      assert.equal(0, count(bev, "failed"))
      a:close(); b:close(); rv1:close(); rv2:close()
    end)
  end)

  it("reaches a peer registered only with the second server", function()
    helper.run(function()
      local rv1, s1 = server()
      local rv2, s2 = server()
      local a = new_peer({ s1, s2 }, "alice")
      local b = new_peer({ s2 }, "bob")
      assert(a:register()); assert(b:register())
      assert.is_true(wait_for(function() return rv2:lookup("alice") ~= nil end, 3))
      -- server 1 answers "unknown peer": server 2 is asked at once
      local t0 = core.now()
      local s = assert(a:connect("bob"))
      assert.equal(s2, s.server)
      assert.is_true(core.now() - t0 < 500)
      -- and when no server knows the id, the first answer is the reason
      local none, err = a:connect("nobody", 2)
      assert.is_nil(none)
      assert.matches("unknown peer 'nobody'", err)
      a:close(); b:close(); rv1:close(); rv2:close()
    end)
  end)

  it("reports a server down when its refresh fails, and up when it answers again", function()
    helper.run(function()
      local rv1, s1 = server()
      local rv2, s2 = server()
      local a, ev = new_peer({ s1, s2 }, "alice", { refresh = 0.2, register_timeout = 0.5 })
      assert(a:register())
      assert.is_true(wait_for(function() return count(ev, "registered") == 2 end, 3))
      rv1:close()
      assert.is_true(wait_for(function() return count(ev, "server_down", "server", s1) == 1 end, 4))
      assert.equal(s2, a.server)       -- the primary follows the live servers
      assert.is_true(a.registered)
      -- a new server on the same address: the peer registers again
      local rv1b = server(s1)
      assert.is_true(wait_for(function() return count(ev, "server_up", "server", s1) == 1 end, 6))
      assert.is_not_nil(rv1b:lookup("alice"))
      assert.equal(s1, a.server)
      a:close(); rv1b:close(); rv2:close()
    end)
  end)

  it("docs/API.md's example of several servers runs as shown", function()
    local api = helper.read_file("docs/API.md")
    local code = assert(api:match("### Several rendezvous servers\n\n```lua\n(.-)```"), "no example")
    helper.run(function()
      local rv1, s1 = server()
      local rv2, s2 = server()
      local b = new_peer({ s1, s2 }, "bob")
      assert(b:register())
      assert(wait_for(function() return rv1:lookup("bob") and rv2:lookup("bob") end, 3))
      -- the lab's addresses become the two loopback servers
      code = code:gsub("203%.0%.113%.2:3478", s1):gsub("198%.51%.100%.2:3478", s2)
      local printed = {}
      local env = setmetatable({ natpunch = natpunch, print = function(x) printed[#printed + 1] = x end },
        { __index = _G })
      assert(load(code, "API.md", "t", env))()
      assert.same({ s1 }, printed)
      b:close(); rv1:close(); rv2:close()
    end)
  end)
end)
