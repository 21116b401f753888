-- Bounded touch state (issue 11): state only for endpoints this side chose,
-- an LRU that never forgets a state younger than its idle time, and so no
-- message delivered twice under state pressure.
local helper = require "spec.helper"
local core = require "natpunch.core"
local natpunch = require "natpunch"

local function socket(cb)
  local u = core.udp()
  assert(u:bind("127.0.0.1", 0))
  u:recv_start(cb or function() end)
  return u, select(2, u:getsockname())
end

local function wait_for(cond, seconds)
  local t0 = core.now()
  while not cond() do
    if core.now() - t0 > (seconds or 3) * 1000 then return false end
    natpunch.sleep(0.01)
  end
  return true
end

describe("touch state", function()
  it('with accept = "known", touches from endpoints without a state make none', function()
    helper.run(function()
      local got = {}
      local r, rport = socket(function(_, data, _, port, kind)
        if kind == "touch" then got[#got + 1] = port .. data end
      end)
      assert(r:touch_config{ accept = "known" })
      local senders = {}
      for i = 1, 50 do
        local s = socket()
        senders[i] = s
        s:touch("127.0.0.1", rport, "spoof" .. i, function() end)
      end
      assert(wait_for(function() return r:stats().touch_unsolicited >= 50 end))
      assert.equal(0, #got)
      for i = 1, 50 do
        assert.is_nil(r:touch_info("127.0.0.1", select(2, senders[i]:getsockname())))
      end
      -- an endpoint this side chose (a punched session seeds it) is served
      local _, sport = senders[1]:getsockname()
      assert(r:touch_seed("127.0.0.1", sport, 5))
      local acked = natpunch.future()
      senders[1]:touch("127.0.0.1", rport, "chosen", function(err) acked:set(err == nil) end)
      assert.is_true(acked:wait(5))
      assert.is_true(#got >= 1)
      for i = 1, 50 do senders[i]:close() end
      r:close()
    end, 20)
  end)

  it("a rendezvous keeps no touch state for the sources that send it touch frames", function()
    helper.run(function()
      local rv = assert(natpunch.rendezvous{ listen = "127.0.0.1:0" })
      local _, ip, port = rv:address()
      local s = socket()
      for _ = 1, 20 do s:touch(ip, port, "x", function() end) end
      assert(wait_for(function() return rv:stats().touch_unsolicited >= 1 end))
      assert.equal(0, rv:stats().touch_delivered)
      assert.is_nil(rv.udp:touch_info("127.0.0.1", select(2, s:getsockname())))
      s:close(); rv:close()
    end)
  end)

  it("a full map refuses new endpoints instead of forgetting a young state, so nothing is delivered twice",
    function()
    helper.run(function()
      local got = {}
      local r, rport = socket(function(_, data, _, _, kind) if kind == "touch" then got[#got + 1] = data end end)
      -- idle time = 2 * (max_retries + 1) * max_rto + 1 s = 1.4 s
      assert(r:touch_config{ max_peers = 3, max_retries = 1, initial_rto = 50, min_rto = 50, max_rto = 100 })
      -- X: a raw socket replaying a real touch frame, captured from a sender
      local frame = natpunch.future()
      local x, xport = socket(function(_, data) if not frame:is_set() then frame:set(data) end end)
      x:recv_stop()
      x:recv_start(function(_, data) if not frame:is_set() then frame:set(data) end end, { raw = true })
      local w = socket()
      w:touch("127.0.0.1", xport, "once", function() end)
      local bytes = frame:wait(2)
      w:close()
      x:send("127.0.0.1", rport, bytes)                    -- delivered: X's state is made
      assert(wait_for(function() return #got == 1 end))
      local a, b = socket(), socket()
      for _, s in ipairs({ a, b }) do
        local f = natpunch.future()
        s:touch("127.0.0.1", rport, "fill", function(err) f:set(err == nil) end)
        assert.is_true(f:wait(2))
      end
      -- the map is full of young states: C is refused, not served by
      -- forgetting X
      local c = socket()
      assert(c:touch_config{ max_retries = 1, initial_rto = 50, min_rto = 50, max_rto = 100 })
      local cf = natpunch.future()
      c:touch("127.0.0.1", rport, "late", function(err) cf:set(err) end)
      assert(wait_for(function() return r:stats().touch_refused >= 1 end))
      x:send("127.0.0.1", rport, bytes)                    -- X's message again
      natpunch.sleep(0.1)
      assert.same({ "once", "fill", "fill" }, got)
      assert.is_true(r:stats().touch_duplicates >= 1)
      assert.matches("ETIMEDOUT", cf:wait(3))
      -- once X has been idle longer than any sender could retransmit, its
      -- state makes room
      natpunch.sleep(1.5)
      local cf2 = natpunch.future()
      c:touch("127.0.0.1", rport, "later", function(err) cf2:set(err == nil) end)
      assert.is_true(cf2:wait(3))
      assert.equal("later", got[#got])
      assert.is_true(r:stats().touch_peers_evicted >= 1)
      for _, s in ipairs({ x, a, b, c, r }) do s:close() end
    end, 20)
  end)
end)
