-- The UDP receive path of its own (csrc/lua/np_udp_recv.c: a poll on a
-- duplicate of the socket's fd, one recvmmsg per readable event), over
-- real loopback sockets: bursts larger than one batch arrive completely and
-- in order, the port is free the moment close returns, an unbound socket
-- that starts receiving is bound first, stopping inside a callback holds,
-- and a stopped socket does not keep the loop alive.
local helper = require "spec.helper"
local core = require "natpunch.core"

local socket = helper.socket

describe("udp receive path", function()
  it("delivers a burst of several batches completely, in order, once each", function()
    local srv, port = socket()
    local got = {}
    srv:recv_start(function(err, data) if not err then got[#got + 1] = data end end, { raw = true })
    local cli = socket()
    -- queued before the loop runs: read 16 at a time, one recvmmsg per wake-up
    for i = 1, 100 do assert(cli:send("127.0.0.1", port, ("m%03d"):format(i))) end
    assert.is_true(helper.until_true(function() return #got >= 100 end, 3))
    core.run("nowait")
    assert.equal(100, #got)
    for i = 1, 100 do assert.equal(("m%03d"):format(i), got[i]) end
    assert.equal(100, srv:stats().rx_packets)
    srv:close(); cli:close()
  end)

  it("frees the port as soon as close returns, receiving or not", function()
    for _, receiving in ipairs({ true, false }) do
      local a, port = socket()
      if receiving then a:recv_start(function() end) end
      a:close()
      local b = core.udp()
      local ok, err = b:bind("127.0.0.1", port)   -- no reuse options: only a free port binds
      assert.is_true(ok, tostring(err))
      b:close()
    end
    core.run("nowait")
  end)

  it("binds an unbound socket to 0.0.0.0 when it starts receiving", function()
    local u = core.udp()
    local got
    assert.is_true(u:recv_start(function(err, data) if not err then got = data end end, { raw = true }))
    local ip, port = u:getsockname()
    assert.equal("0.0.0.0", ip)
    assert.is_true(port > 0)
    local cli = socket()
    assert(cli:send("127.0.0.1", port, "hello"))
    assert.is_true(helper.until_true(function() return got ~= nil end, 2))
    assert.equal("hello", got)
    u:close(); cli:close()
    core.run("nowait")
  end)

  it("stops inside a callback: nothing more of that batch, later datagrams after recv_start", function()
    local srv, port = socket()
    local got = {}
    local function on_recv(err, data)
      if err then return end
      got[#got + 1] = data
      if data == "2" then srv:recv_stop() end
    end
    srv:recv_start(on_recv, { raw = true })
    local cli = socket()
    for i = 1, 5 do assert(cli:send("127.0.0.1", port, tostring(i))) end
    assert.is_true(helper.until_true(function() return #got >= 2 end, 2))
    helper.until_true(function() return #got > 2 end, 0.2)
    assert.same({ "1", "2" }, got)
    srv:recv_start(on_recv, { raw = true })
    assert(cli:send("127.0.0.1", port, "after"))
    assert.is_true(helper.until_true(function() return got[#got] == "after" end, 2))
    -- what the stopped batch had read is gone; nothing came twice
    local seen = {}
    for _, d in ipairs(got) do
      assert.is_nil(seen[d], d)
      seen[d] = true
    end
    srv:close(); cli:close()
    core.run("nowait")
  end)

  it("keeps the loop alive while receiving, not once stopped or closed", function()
    core.run("nowait")
    assert.is_false(core.alive())
    local u = socket()
    u:recv_start(function() end)
    assert.is_true(core.alive())
    u:recv_stop()
    assert.is_false(core.alive())
    u:recv_start(function() end)
    assert.is_true(core.alive())
    u:close()
    core.run("nowait")
    assert.is_false(core.alive())
  end)
end)
