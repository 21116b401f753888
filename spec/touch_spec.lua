-- Touch (reliable send) over real loopback sockets, through a relay that
-- drops, duplicates and reorders datagrams in both directions
-- (helper.lossy_relay).
local helper = require "spec.helper"
local core = require "natpunch.core"
local natpunch = require "natpunch"

local socket = helper.socket

local lossy_relay = helper.lossy_relay

describe("touch", function()
  it("delivers exactly once and acks, on a clean path", function()
    helper.run(function()
      local a = socket()
      local b, b_port = socket()
      local got = {}
      a:recv_start(function() end)
      b:recv_start(function(err, data, _, _, kind)
        assert.is_nil(err)
        if kind == "touch" then got[#got + 1] = data end
      end)
      local fut = natpunch.future()
      local id = assert(a:touch("127.0.0.1", b_port, "hello", function(err, mid, rtt)
        fut:set(err, mid, rtt)
      end))
      local err, mid, rtt = fut:wait(2)
      assert.is_nil(err)
      assert.equal(id, mid)
      assert.is_number(rtt)
      assert.same({ "hello" }, got)
      assert.equal(1, b:stats().touch_delivered)
      assert.equal(1, a:stats().touch_acked)
      a:close(); b:close()
    end)
  end)

  it("at 30% loss with duplication and reordering: exactly once or reported failed", function()
    helper.run(function()
      local a, a_port = socket()
      local b, b_port = socket()
      local relay_port, relay = lossy_relay({ loss = 0.3, dup = 0.1, reorder = 0.2, seed = 7 }, a_port, b_port)
      a:touch_config{ initial_rto = 40, min_rto = 20, max_rto = 400, max_retries = 10 }
      local delivered, acked, failed = {}, {}, {}
      a:recv_start(function() end)
      b:recv_start(function(_, data, _, _, kind)
        if kind == "touch" then delivered[data] = (delivered[data] or 0) + 1 end
      end)
      local N, resolved = 300, 0
      local done = natpunch.future()
      local sent = 0
      while sent < N do
        local payload = "m" .. (sent + 1)
        local id, err, code = a:touch("127.0.0.1", relay_port, payload, function(e)
          if e then failed[payload] = true else acked[payload] = true end
          resolved = resolved + 1
          if resolved == N then done:set(true) end
        end)
        if id then
          sent = sent + 1
        else
          assert.equal("EFULL", code, err)   -- in-flight bound: wait and retry
          natpunch.sleep(0.01)
        end
      end
      assert.is_true(done:wait(30))
      local dup = 0
      for _, n in pairs(delivered) do if n > 1 then dup = dup + 1 end end
      assert.equal(0, dup, "a message was delivered twice")
      local n_acked, n_failed = 0, 0
      for i = 1, N do
        local p = "m" .. i
        assert.is_true(acked[p] or failed[p] or false, "unresolved " .. p)
        assert.is_falsy(acked[p] and failed[p])
        if acked[p] then
          n_acked = n_acked + 1
          assert.equal(1, delivered[p], "acked but not delivered: " .. p)
        else
          n_failed = n_failed + 1
        end
      end
      assert.is_true(relay.dropped > 50 and relay.duplicated > 10 and relay.delayed > 10)
      assert.is_true(a:stats().touch_retransmits > 50)
      assert.is_true(b:stats().touch_duplicates > 0)
      assert.is_true(n_acked > N * 0.9, "too many failures: " .. n_failed)
      relay.close(); a:close(); b:close()
    end, 40)
  end)

  it("reports failure when nothing answers", function()
    helper.run(function()
      local a = socket()
      local dead = socket()
      local _, dead_port = dead:getsockname()
      dead:close()
      a:recv_start(function() end)
      a:touch_config{ initial_rto = 20, min_rto = 10, max_rto = 40, max_retries = 3 }
      local fut = natpunch.future()
      assert(a:touch("127.0.0.1", dead_port, "x", function(err, id) fut:set(err, id) end))
      local err = fut:wait(3)
      assert.matches("ETIMEDOUT", err)
      assert.equal(1, a:stats().touch_failed)
      a:close()
    end)
  end)

  it("bounds messages in flight and refuses bad use", function()
    helper.run(function()
      local a = socket()
      assert.has_error(function() a:touch("127.0.0.1", 9, "x") end)          -- no callback
      local ok, _, code = a:touch("127.0.0.1", 9, "x", function() end)
      assert.is_nil(ok); assert.equal("ENOTCONN", code)                       -- not receiving
      a:recv_start(function() end)
      assert.has_error(function() a:touch_config{ max_in_flight = -1 } end)
      assert.has_error(function() a:touch_config{ min_rto = 500, max_rto = 100 } end)
      a:touch_config{ max_in_flight = 4, initial_rto = 1000, min_rto = 1000, max_rto = 1000 }
      for _ = 1, 4 do assert(a:touch("127.0.0.1", 9, "x", function() end)) end
      local id, _, c2 = a:touch("127.0.0.1", 9, "x", function() end)
      assert.is_nil(id); assert.equal("EFULL", c2)
      local big = string.rep("x", 5000)
      local id2, _, c3 = a:touch("127.0.0.1", 10, big, function() end)
      assert.is_nil(id2); assert.equal("E2BIG", c3)
      local busy, _, c4 = a:touch_config{ max_retries = 2 }   -- too late: peers exist
      assert.is_nil(busy); assert.equal("EBUSY", c4)
      a:close()
      assert.has_error(function() a:touch("127.0.0.1", 9, "x", function() end) end)
    end)
  end)
end)

describe("deadline timer", function()
  it("is not put off by traffic that arrives while a deadline is due", function()
    -- A lingering punch session answers a stream of its peer's requests;
    -- each answer re-arms the socket's one timer.  A touch toward an
    -- address that never answers must still be retransmitted on time.
    helper.run(function()
      local a, a_port = socket()
      local b, b_port = socket()
      local nonce = "0011223344556677"
      local request
      b:recv_start(function(_, data, ip, port)
        if data:byte(1) == 0x08 and data:byte(2) == 0 then
          request = "\x08\x00" .. data:sub(3, 14) .. string.rep("\x09", 8)     -- b's own tie-breaker
          b:send(ip, port, "\x08\x01" .. data:sub(3, 14) .. string.rep("\x09", 8))
        end
      end, { raw = true })
      a:recv_start(function() end)
      local done = natpunch.future()
      assert(a:punch({ nonce = nonce, candidates = { { "127.0.0.1", b_port, "public" } }, timeout = 10000 },
        function(err) done:set(err == nil) end))
      assert.is_true(done:wait(10))
      -- the flood comes from another process, so that packets arrive at
      -- any moment of a's loop (also just as a deadline falls due).  It lasts
      -- until this side says stop on ctl (at most about 30 s), not for a
      -- fixed count: under load the retransmissions below take longer, and
      -- the flood must not end before they are counted.
      local ctl, ctl_port = socket()
      local child_port
      ctl:recv_start(function(_, data, _, port) if data == "hello" then child_port = port end end, { raw = true })
      local hex = request:gsub(".", function(c) return ("%02x"):format(c:byte()) end)
      local child = io.popen(helper.lua .. [[ -e '
        package.cpath = ]] .. ("%q"):format(helper.build .. "/?.so;") .. [[ .. package.cpath
        local core = require "natpunch.core"
        local req = (]] .. ("%q"):format(hex) .. [[):gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end)
        local u = core.udp(); u:bind("127.0.0.1", 0)
        local t = core.timer(); local n = 0
        local stopped = false
        local function stop()
          if not stopped then stopped = true; t:close(); u:close() end
        end
        u:recv_start(function(_, data) if data == "stop" then stop() end end, { raw = true })
        u:send("127.0.0.1", ]] .. ctl_port .. [[, "hello")
        t:start(0, 1, function()
          for _ = 1, 5 do u:send("127.0.0.1", ]] .. a_port .. [[, req) end
          n = n + 1
          if n >= 30000 then stop() end
        end)
        core.run()' 2>&1]])
      local dead = socket()
      local _, dead_port = dead:getsockname()
      dead:close()
      -- start once the flood arrives (the child may be slow to start), and
      -- wait for the retransmissions rather than for a fixed time: how fast
      -- this machine runs changes how long it takes, not the outcome
      local function wait_for(cond, seconds)
        local deadline = core.now() + seconds * 1000
        while not cond() and core.now() < deadline do natpunch.sleep(0.02) end
        return cond()
      end
      local rx0 = a:stats().rx_punch
      local arrived = wait_for(function() return a:stats().rx_punch > rx0 + 50 end, 20)
      a:touch_config{ initial_rto = 100, min_rto = 100, max_rto = 100, max_retries = 15 }
      -- giving up is an event too: it comes only after all 15 retries
      local gave_up = false
      assert(a:touch("127.0.0.1", dead_port, "x", function(err) gave_up = err ~= nil end))
      local rx1 = a:stats().rx_punch
      -- one transmission every 100 ms; the bug gave none while the flood lasted
      local most = 0
      local function retransmitted()
        local info = a:touch_info("127.0.0.1", dead_port)
        most = math.max(most, info and info.retransmitted or 0, gave_up and 15 or 0)
        return most
      end
      local ok = arrived and wait_for(function() return retransmitted() >= 6 end, 15)
      local rx2 = a:stats().rx_punch
      if child_port then
        ctl:send("127.0.0.1", child_port, "stop")
        natpunch.sleep(0.05)     -- let the loop send it before reading blocks
      end
      local out = child:read("a")
      child:close()
      ctl:close()
      assert.is_true(arrived, "the flood did not arrive: " .. out)
      assert.is_true(rx2 > rx1, "the flood went on while the touch was retransmitted")
      assert.is_true(ok, "retransmitted " .. retransmitted())
      a:close(); b:close()
    end, 90)
  end)
end)
