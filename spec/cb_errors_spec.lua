-- One shape for errors passed to callbacks (docs/API.md): cb(err, ...) with
-- err nil or "CODE: message", the code being what comes before the first
-- ':', as in the message of nil, message, code.  Shown over real loopback
-- sockets for each callback that can fail: TCP, touch, punch.
local helper = require "spec.helper"
local core = require "natpunch.core"
local natpunch = require "natpunch"

local SHAPE = "^(%u[%u%d_]*): (.+)$"

local function dead_udp_port()
  local d = core.udp()
  assert(d:bind("127.0.0.1", 0))
  local _, port = d:getsockname()
  d:close()
  return port
end

describe("callback errors", function()
  it("TCP connect: ECONNREFUSED: connection refused", function()
    helper.run(function()
      local holder = core.tcp()              -- bound, never listening: RST
      assert(holder:bind("127.0.0.1", 0))
      local _, port = holder:getsockname()
      local c = core.tcp()
      local fut = natpunch.future()
      assert(c:connect("127.0.0.1", port, function(err) fut:set(err) end))
      local err = fut:wait(3)
      local code, text = err:match(SHAPE)
      assert.equal("ECONNREFUSED", code, err)
      assert.equal("connection refused", text)
      c:close(); holder:close()
    end)
  end)

  it("touch: ETIMEDOUT once retransmissions are exhausted, nil on success", function()
    helper.run(function()
      local a = core.udp(); assert(a:bind("127.0.0.1", 0))
      a:recv_start(function() end)
      a:touch_config{ initial_rto = 20, min_rto = 10, max_rto = 40, max_retries = 2 }
      local fut = natpunch.future()
      assert(a:touch("127.0.0.1", dead_udp_port(), "x", function(err, id) fut:set(err, id) end))
      local err, id = fut:wait(3)
      assert.equal("ETIMEDOUT", err:match(SHAPE), err)
      assert.equal(1, id)
      local b = core.udp(); assert(b:bind("127.0.0.1", 0))
      b:recv_start(function() end)
      local _, bport = b:getsockname()
      local ok = natpunch.future()
      assert(a:touch("127.0.0.1", bport, "y", function(e, mid, rtt) ok:set(e, mid, rtt) end))
      local e, _, rtt = ok:wait(3)
      assert.is_nil(e)
      assert.is_number(rtt)
      a:close(); b:close()
    end)
  end)

  it("punch: ETIMEDOUT when nothing answers", function()
    helper.run(function()
      local a = core.udp(); assert(a:bind("127.0.0.1", 0))
      a:recv_start(function() end)
      local fut = natpunch.future()
      assert(a:punch({ nonce = "0123456789abcdef", timeout = 150,
        candidates = { { "127.0.0.1", dead_udp_port(), "public" } } }, function(...) fut:set(...) end))
      local err, ip = fut:wait(3)
      assert.equal("ETIMEDOUT", err:match(SHAPE), err)
      assert.matches("timeout", err)
      assert.is_nil(ip)
      a:close()
    end)
  end)
end)
