-- natpunch.fallback on loopback (no root): two peers with a TURN server
-- (a private coturn, spec/turn_server.lua) connect directly; a stream of
-- touches runs; then their direct path goes dark (each socket's path
-- toward the other is pointed at a sink that drops everything, as a dead
-- NAT mapping would).  alice finds touches in flight and nothing back,
-- moves to the relay and tells bob over it; bob follows.  Every touch is
-- acked once and delivered once.  spec/fallback_lab_spec.lua does the same
-- across real NATs with a cut in the lab.
local helper = require "spec.helper"
local turn_server = require "spec.turn_server"
local natpunch = require "natpunch"

local trace = os.getenv("FALLBACK_TRACE")   -- print the peers' events

-- a socket that takes everything and answers nothing
local function core_sink()
  local u, port = helper.socket()
  u:recv_start(function() end, { raw = true })
  return { port = port, close = function() u:close() end }
end

describe("relay fallback on loopback", function()
  local srv
  setup(function()
    if turn_server.available then srv = turn_server.start{ user = "fb:secret" } end
  end)
  teardown(function() if srv then srv:stop() end end)

  it("moves a direct session that goes dark to the relay: every touch once", function()
    assert(turn_server.available, "coturn's turnserver is not installed (make deps installs it)")
    helper.run(function()
      local rv, addr = helper.rendezvous()
      local evs = { alice = {}, bob = {} }
      local got = {}
      local function opts(id)
        return { turn = { server = srv.address, username = "fb", password = "secret" }, fallback = 0.5,
          on_event = function(ev)
            if ev.event == "touch_acked" or ev.event == "message" then return end
            table.insert(evs[id], ev)
            if trace then io.stderr:write(id, " ", require("natpunch.json").encode(ev), "\n") end
          end,
          on_message = id == "bob" and function(_, data, kind)
            if kind == "touch" then got[data] = (got[data] or 0) + 1 end
          end or nil }
      end
      local bob = helper.peer(addr, "bob", opts("bob"))
      local alice = helper.peer(addr, "alice", opts("alice"))
      assert(bob:register())
      assert(alice:register())
      assert.truthy(alice.relayed and bob.relayed, "no TURN allocation")
      local s = assert(alice:connect("bob"))
      assert.are_not.equal("relay", s.path)
      assert.truthy(s._fallback, "the direct session is not armed")
      local bs
      for _ = 1, 100 do
        bs = bob:session("alice")
        if bs then break end
        natpunch.sleep(0.01)
      end
      assert.truthy(bs and bs._fallback, "bob's session is not armed")
      local N, resolved, acked, failed = 200, 0, {}, {}
      local all = natpunch.future()
      local function touch(i)
        while true do
          local id, err, code = s:touch("t" .. i, function(e)
            if e then failed[#failed + 1] = i .. ": " .. e else acked[i] = (acked[i] or 0) + 1 end
            resolved = resolved + 1
            if resolved == N then all:set(true) end
          end)
          if id then return end
          assert.equal("EFULL", code, err)
          natpunch.sleep(0.01)
        end
      end
      for i = 1, 80 do touch(i); natpunch.sleep(0.002) end
      -- the direct path goes dark both ways
      local sink = core_sink()
      assert(alice.udp:path_set(s.ip, s.port, "127.0.0.1", sink.port))
      assert(bob.udp:path_set(bs.ip, bs.port, "127.0.0.1", sink.port))
      for i = 81, N do touch(i); natpunch.sleep(0.002) end
      assert.is_true(all:wait(30), "the stream did not end")
      local function first(id, name)
        for _, ev in ipairs(evs[id]) do if ev.event == name then return ev end end
      end
      local pa, pb = first("alice", "path_changed"), first("bob", "path_changed")
      assert.truthy(pa, "alice did not fall back")
      assert.truthy(pb, "bob did not fall back")
      assert.equal("relay", pa.path)
      assert.equal("relay", pb.path)
      assert.equal(bob.relayed, pa.relayed)
      assert.equal(alice.relayed, pb.relayed)
      assert.equal("the other peer moved to the relay", pb.reason)
      assert.equal("relay", s.path)
      assert.equal("relay", bs.path)
      assert.is_nil(first("alice", "fallback_failed"))
      assert.same({}, failed)
      for i = 1, N do
        assert.equal(1, acked[i], "acks of touch " .. i)
        assert.equal(1, got["t" .. i], "deliveries of touch " .. i)
      end
      -- nothing reached the session that should not have (no notice as a message)
      assert.equal(0, bob:stats().bad_data)
      assert.is_true(alice:stats().relay_out > 0 and bob:stats().relay_in > 0)
      -- closing forgets the path and the channel
      s:close()
      assert.is_nil(alice.udp:path_get(s.ip, s.port))
      assert.is_nil(alice.fallbacks[bob.relayed])
      sink.close()
      alice:close()
      bob:close()
      rv:close()
    end, 60)
  end)
end)
