-- Touch in batches over real loopback sockets: acknowledgements that cover
-- several messages, data frames and acks sent together, and the batch
-- callbacks udp:on_touch_batch / udp:on_touch_done (docs/API.md).
local helper = require "spec.helper"
local core = require "natpunch.core"
local natpunch = require "natpunch"

local socket = helper.socket

-- inside a task: wait by sleeping (the loop runs meanwhile)
local function wait_for(cond, seconds)
  local deadline = core.now() + seconds * 1000
  while not cond() and core.now() < deadline do natpunch.sleep(0.01) end
  return cond() and true or false
end

describe("touch acknowledgements", function()
  it("answer a whole receive batch with one ack", function()
    helper.run(function()
      local a = socket()
      local b, b_port = socket()
      a:recv_start(function() end)
      local N, acked, delivered = 10, 0, {}
      -- b does not read yet: the frames wait in its socket buffer and
      -- arrive as one recvmmsg batch
      for i = 1, N do
        assert(a:touch("127.0.0.1", b_port, "m" .. i, function(err)
          assert.is_nil(err)
          acked = acked + 1
        end))
      end
      -- held until the loop runs, then sent together (sendmmsg)
      assert.equal(0, a:stats().tx_packets)
      natpunch.sleep(0.05)
      local sa = a:stats()
      assert.equal(N, sa.tx_packets)
      assert.is_true(sa.tx_batches < N, ("%d sendmmsg calls for %d frames"):format(sa.tx_batches, N))
      b:recv_start(function(_, data, _, _, kind)
        if kind == "touch" then delivered[data] = (delivered[data] or 0) + 1 end
      end)
      assert.is_true(wait_for(function() return acked == N end, 5))
      for i = 1, N do assert.equal(1, delivered["m" .. i]) end
      local st = b:stats()
      assert.equal(N, st.touch_delivered)
      assert.is_true(st.tx_packets < N, ("%d acks for %d messages"):format(st.tx_packets, N))
      assert.is_true(a:stats().rx_touch < N)
      assert.equal(0, a:touch_info("127.0.0.1", b_port).retransmitted)
      a:close(); b:close()
    end)
  end)

  it("repair a lost ack with the next one (ranges of delivered ids)", function()
    helper.run(function()
      local a, a_port = socket()
      local b, b_port = socket()
      local drop_acks = true
      local relay_port, relay = helper.lossy_relay({ seed = 1, drop = function(data, toward_b)
        return not toward_b and drop_acks and data:byte(1) == 0x07
      end }, a_port, b_port)
      -- a long RTO: nothing is retransmitted while the spec runs
      a:touch_config{ initial_rto = 5000, min_rto = 5000, max_rto = 10000 }
      a:recv_start(function() end)
      local got = 0
      b:recv_start(function(_, _, _, _, kind) if kind == "touch" then got = got + 1 end end)
      local acked = {}
      -- 100-byte messages: an ack is never larger than the frames it
      -- answers, and these leave room for the ranges
      local function send(i)
        assert(a:touch("127.0.0.1", relay_port, ("m%-99d"):format(i), function(err) acked[i] = err == nil end))
      end
      for i = 1, 5 do send(i) end
      assert.is_true(wait_for(function() return got == 5 end, 5))
      natpunch.sleep(0.05)
      assert.is_true(relay.dropped >= 1)
      assert.same({}, acked)       -- every ack so far was lost
      drop_acks = false
      send(6)
      assert.is_true(wait_for(function() return #acked == 6 end, 3))
      for i = 1, 6 do assert.is_true(acked[i]) end
      local info = a:touch_info("127.0.0.1", relay_port)
      assert.equal(0, info.retransmitted)
      assert.equal(6, info.acked)
      assert.equal(6, b:stats().touch_delivered)
      relay.close(); a:close(); b:close()
    end)
  end)

  it("at 20% loss with duplication and reordering, with batch callbacks: exactly once", function()
    helper.run(function()
      local a, a_port = socket()
      local b, b_port = socket()
      local relay_port, relay = helper.lossy_relay({ loss = 0.2, dup = 0.1, reorder = 0.3, seed = 11 },
        a_port, b_port)
      a:touch_config{ initial_rto = 40, min_rto = 20, max_rto = 400, max_retries = 10 }
      local delivered, outcome, calls, biggest = {}, {}, 0, 0
      b:on_touch_batch(function(list)
        calls = calls + 1
        biggest = math.max(biggest, #list)
        for _, m in ipairs(list) do
          assert.equal("127.0.0.1", m.host)
          assert.equal(relay.b_side_port, m.port)
          delivered[m.data] = (delivered[m.data] or 0) + 1
        end
      end)
      b:recv_start(function(_, _, _, _, kind) assert.not_equal("touch", kind) end)
      local resolved = 0
      a:on_touch_done(function(list)
        for _, r in ipairs(list) do
          assert.equal(relay_port, r.port)
          assert.is_nil(outcome[r.id], "two outcomes for one id")
          outcome[r.id] = r.err and "failed" or "acked"
          if not r.err then assert.is_number(r.rtt_ms) end
          resolved = resolved + 1
        end
      end)
      a:recv_start(function() end)
      local N, sent, ids = 400, 0, {}
      while sent < N do
        local id, err, code = a:touch("127.0.0.1", relay_port, "m" .. (sent + 1))
        if id then
          sent = sent + 1
          ids[sent] = id
        else
          assert.equal("EFULL", code, err)
          natpunch.sleep(0.005)
        end
      end
      assert.is_true(wait_for(function() return resolved == N end, 30))
      local n_acked = 0
      for i = 1, N do
        local d = delivered["m" .. i] or 0
        assert.is_true(d <= 1, "delivered twice: m" .. i)
        local o = outcome[ids[i]]
        assert.is_not_nil(o, "unresolved m" .. i)
        if o == "acked" then
          n_acked = n_acked + 1
          assert.equal(1, d, "acked but not delivered: m" .. i)
        end
      end
      assert.is_true(relay.dropped > 40 and relay.duplicated > 10 and relay.delayed > 10)
      assert.is_true(a:stats().touch_retransmits > 20)
      assert.is_true(n_acked > N * 0.9, "too many failures: " .. (N - n_acked))
      print(("\n  20%% loss: %d acked, %d batch calls (largest %d), %d acks received for %d messages"):format(
        n_acked, calls, biggest, a:stats().rx_touch, N))
      relay.close(); a:close(); b:close()
    end, 40)
  end)
end)

describe("touch batch callbacks", function()
  it("hand every message of a receive batch to on_touch_batch in one call", function()
    helper.run(function()
      local a = socket()
      local b, b_port = socket()
      a:recv_start(function() end)
      local lists, total = {}, 0
      assert.is_true(b:on_touch_batch(function(list)
        lists[#lists + 1] = #list
        total = total + #list
      end))
      local acked = 0
      for i = 1, 12 do
        assert(a:touch("127.0.0.1", b_port, ("x"):rep(i), function() acked = acked + 1 end))
      end
      natpunch.sleep(0.05)   -- all twelve wait in b's socket buffer
      b:recv_start(function(_, _, _, _, kind) assert.not_equal("touch", kind) end)
      assert.is_true(wait_for(function() return acked == 12 end, 5))
      assert.equal(12, total)
      assert.is_true(#lists < 12 and lists[1] > 1, "one call per message: " .. table.concat(lists, ","))
      -- cleared: messages reach the receive callback again, one by one
      assert.is_true(b:on_touch_batch(nil))
      local one = natpunch.future()
      b:recv_start(function(_, data, _, _, kind) if kind == "touch" then one:set(data) end end)
      assert(a:touch("127.0.0.1", b_port, "single", function() end))
      assert.equal("single", one:wait(2))
      a:close(); b:close()
    end)
  end)

  it("report outcomes of touches sent without a callback to on_touch_done", function()
    helper.run(function()
      local a = socket()
      local b, b_port = socket()
      a:recv_start(function() end)
      b:recv_start(function() end)
      -- without on_touch_done a callback is required
      assert.has_error(function() a:touch("127.0.0.1", b_port, "x") end)
      local results = {}
      a:on_touch_done(function(list)
        for _, r in ipairs(list) do results[#results + 1] = r end
      end)
      local mine = natpunch.future()
      local ids = {}
      for i = 1, 8 do ids[#ids + 1] = assert(a:touch("127.0.0.1", b_port, "d" .. i)) end
      -- a touch with its own callback still gets it, and only it
      local own = assert(a:touch("127.0.0.1", b_port, "own", function(err, id) mine:set(err, id) end))
      local err, id = mine:wait(2)
      assert.is_nil(err); assert.equal(own, id)
      assert.is_true(wait_for(function() return #results == 8 end, 5))
      table.sort(results, function(x, y) return x.id < y.id end)
      for i, r in ipairs(results) do
        assert.equal(ids[i], r.id)
        assert.equal("127.0.0.1", r.host); assert.equal(b_port, r.port)
        assert.is_number(r.rtt_ms); assert.is_nil(r.err)
      end
      -- a failure: ETIMEDOUT in err, no rtt
      local dead = socket()
      local _, dead_port = dead:getsockname()
      dead:close()
      local c = socket()
      c:recv_start(function() end)
      c:touch_config{ initial_rto = 20, min_rto = 20, max_rto = 40, max_retries = 2 }
      local failed = natpunch.future()
      c:on_touch_done(function(list) failed:set(list) end)
      local fid = assert(c:touch("127.0.0.1", dead_port, "nobody"))
      local list = failed:wait(3)
      assert.equal(1, #list)
      assert.equal(fid, list[1].id)
      assert.matches("^ETIMEDOUT: ", list[1].err)
      assert.is_nil(list[1].rtt_ms)
      assert.has_error(function() a:on_touch_done(42) end)
      a:close(); b:close(); c:close()
    end)
  end)
end)

describe("touch_config", function()
  it("names the option and its range when a value is out of range", function()
    local u = socket()
    local ok, err = pcall(u.touch_config, u, { max_retries = 100000 })
    assert.is_false(ok)
    assert.matches("touch_config: max_retries out of range %(0%.%.%d+%)", err)
    ok, err = pcall(u.touch_config, u, { initial_rto = -1 })
    assert.is_false(ok)
    assert.matches("initial_rto out of range %(0%.%.600000%)", err)
    u:close()
  end)
end)
