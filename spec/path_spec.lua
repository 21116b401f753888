-- The socket's path engine (csrc/lua/np_udp_path.c) over real loopback
-- sockets: two sockets talk through a forwarding relay (each knows the
-- other only by the relay's address, as a TURN peer does), a stream of
-- touches runs, and the path switches to direct in the middle of it.  The
-- relay stops forwarding at the switch (what it held in flight is lost)
-- and the two sides switch one after the other, so touches sent in between
-- are dropped and must be retransmitted on the new path: every touch is
-- still acked once and delivered exactly once.
local helper = require "spec.helper"
local core = require "natpunch.core"
local natpunch = require "natpunch"

local socket = helper.socket

-- a <-> ra | rb <-> b: a knows b as ra, b knows a as rb
local function relay(a_port, b_port)
  local ra, ra_port = socket()
  local rb, rb_port = socket()
  local r = { on = true, forwarded = 0 }
  ra:recv_start(function(_, data)
    if r.on then r.forwarded = r.forwarded + 1; rb:send("127.0.0.1", b_port, data) end
  end, { raw = true })
  rb:recv_start(function(_, data)
    if r.on then r.forwarded = r.forwarded + 1; ra:send("127.0.0.1", a_port, data) end
  end, { raw = true })
  function r.close() ra:close(); rb:close() end
  return ra_port, rb_port, r
end

describe("path engine", function()
  it("moves a touch stream from a relay to a direct path: none lost, none twice", function()
    helper.run(function()
      local a, a_port = socket()
      local b, b_port = socket()
      local ra_port, rb_port, r = relay(a_port, b_port)
      -- as natpunch.peer sets them up: touch state only for known endpoints
      for _, u in ipairs({ a, b }) do
        u:touch_config{ accept = "known", initial_rto = 40, min_rto = 20, max_rto = 200, max_retries = 12 }
      end
      a:touch_seed("127.0.0.1", ra_port, 5)
      b:touch_seed("127.0.0.1", rb_port, 5)
      local delivered, from_relay, data_from = {}, 0, nil
      a:recv_start(function() end)
      b:recv_start(function(_, data, _, port, kind)
        if kind == "touch" then
          delivered[data] = (delivered[data] or 0) + 1
          if port == rb_port then from_relay = from_relay + 1 end
        elseif kind == "data" then
          data_from = port
        end
      end)
      local N, acked, failed = 300, {}, {}
      local done = natpunch.future()
      local resolved = 0
      local function touch(i)
        while true do
          local payload = "t" .. i
          local id, _, code = a:touch("127.0.0.1", ra_port, payload, function(e)
            if e then failed[#failed + 1] = payload .. ": " .. e
            else acked[payload] = (acked[payload] or 0) + 1 end
            resolved = resolved + 1
            if resolved == N then done:set(true) end
          end)
          if id then return end
          assert.equal("EFULL", code)
          natpunch.sleep(0.005)
        end
      end
      for i = 1, 150 do
        touch(i)
        if i % 10 == 0 then natpunch.sleep(0.002) end
      end
      -- the switch: the relay goes dark, a moves first, b a little later
      r.on = false
      assert.is_true(a:path_set("127.0.0.1", ra_port, "127.0.0.1", b_port))
      for i = 151, 160 do touch(i) end
      natpunch.sleep(0.05)
      assert.is_true(b:path_set("127.0.0.1", rb_port, "127.0.0.1", a_port))
      for i = 161, N do
        touch(i)
        if i % 10 == 0 then natpunch.sleep(0.002) end
      end
      assert.is_true(done:wait(20))
      assert.same({}, failed)
      for i = 1, N do
        assert.equal(1, acked["t" .. i], "ack of t" .. i)
        assert.equal(1, delivered["t" .. i], "delivery of t" .. i)
      end
      -- every touch reached b under the relay's address, whichever path it took
      assert.equal(N, from_relay)
      -- the touches sent while only a had switched were dropped at b and
      -- retransmitted on the new path
      local sa, sb = a:stats(), b:stats()
      assert.is_true(sb.touch_unsolicited > 0, "no touch fell between the two switches")
      assert.is_true(sa.touch_retransmits > 0)
      assert.is_true(sa.path_out > 0 and sb.path_in > 0)
      assert.equal(N, sb.touch_delivered)
      -- unreliable data takes the path too, and counts as the relay's address's
      assert(a:send("127.0.0.1", ra_port, "plain", "data"))
      for _ = 1, 100 do
        if data_from then break end
        natpunch.sleep(0.01)
      end
      assert.equal(rb_port, data_from)
      io.stderr:write(("\n  path switch: %d touches, %d retransmitted, %d dropped between the switches, "
        .. "%d duplicates\n")
        :format(N, sa.touch_retransmits, sb.touch_unsolicited, sb.touch_duplicates))
      a:close(); b:close(); r.close()
    end, 30)
  end)

  it("checks its arguments and forgets paths", function()
    local u = core.udp()
    assert(u:bind("127.0.0.1", 0))
    assert.is_nil(u:path_get("127.0.0.1", 1000))
    assert.is_true(u:path_set("127.0.0.1", 1000, "127.0.0.1", 2000))
    local ip, port = u:path_get("127.0.0.1", 1000)
    assert.equal("127.0.0.1", ip)
    assert.equal(2000, port)
    -- moving a path is allowed; two peers on one path, or chains, are not
    assert.is_true(u:path_set("127.0.0.1", 1000, "127.0.0.1", 2001))
    local ok, _, code = u:path_set("127.0.0.1", 1001, "127.0.0.1", 2001)
    assert.is_nil(ok)
    assert.equal("EEXIST", code)
    ok, _, code = u:path_set("127.0.0.1", 2001, "127.0.0.1", 3000)
    assert.is_nil(ok)
    assert.equal("EINVAL", code)
    ok, _, code = u:path_set("127.0.0.1", 1002, "127.0.0.1", 1000)
    assert.is_nil(ok)
    assert.equal("EINVAL", code)
    assert.has_error(function() u:path_set("127.0.0.1", 1000, "127.0.0.1", 1000) end)
    assert.is_true(u:path_clear("127.0.0.1", 1000))
    assert.is_false(u:path_clear("127.0.0.1", 1000))
    assert.is_nil(u:path_get("127.0.0.1", 1000))
    u:close()
  end)
end)
