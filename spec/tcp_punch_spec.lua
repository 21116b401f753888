-- core.tcp_punch (csrc/lua/np_tcp_punch.c) over real loopback sockets: the
-- race of a listener and connects from one shared port, the winner handed
-- over as an ordinary tcp stream, retries with back-off against refusals,
-- the deadline, low-TTL SYNs, closing in the middle, and bad arguments.
-- Through real NATs: spec/tcp_traversal_spec.lua.
local helper = require "spec.helper"
local core = require "natpunch.core"

local LO = "127.0.0.1"
local REUSE = { reuseaddr = true, reuseport = true }

-- A port with a socket bound to it (like a peer's main connection), kept
-- open by the caller.
local function bound_port(list)
  local t = core.tcp()
  assert(t:bind(LO, 0, REUSE))
  list[#list + 1] = t
  local _, port = t:getsockname()
  return port
end

describe("core.tcp_punch", function()
  local keep
  before_each(function() keep = {} end)
  after_each(function()
    for _, h in ipairs(keep) do h:close() end
    for _ = 1, 3 do core.run("nowait") end
  end)

  it("connects two punches from their shared ports; the winner is a stream", function()
    local pa, pb = bound_port(keep), bound_port(keep)
    local got = {}
    local a = core.tcp_punch({ host = LO, port = pa, remotes = { { LO, pb } }, timeout = 3000 },
      function(err, tcp, ip, port, how) got.a = { err, tcp, ip, port, how } end)
    local b = core.tcp_punch({ host = LO, port = pb, remotes = { { LO, pa } }, timeout = 3000 },
      function(err, tcp, ip, port, how) got.b = { err, tcp, ip, port, how } end)
    keep[#keep + 1] = a
    keep[#keep + 1] = b
    assert.is_true(helper.until_true(function() return got.a and got.b end, 5))
    assert.is_nil(got.a[1])
    assert.is_nil(got.b[1])
    local ta, tb = got.a[2], got.b[2]
    keep[#keep + 1] = ta
    keep[#keep + 1] = tb
    -- each side sees the other's shared port, and the stream keeps its own
    assert.same({ LO, pb }, { got.a[3], got.a[4] })
    assert.same({ LO, pa }, { got.b[3], got.b[4] })
    assert.equal(pa, select(2, ta:getsockname()))
    assert.truthy(({ connect = true, accept = true })[got.a[5]])
    -- one of them connected, the other accepted: the same connection
    assert.are_not.equal(got.a[5], got.b[5])
    local data = {}
    tb:read_start(function(_, chunk) data[#data + 1] = chunk or "<eof>" end)
    assert(ta:write("through the punched port"))
    assert(ta:shutdown())
    assert.is_true(helper.until_true(function() return data[#data] == "<eof>" end, 3))
    assert.equal("through the punched port<eof>", table.concat(data))
    local sa = a:stats()
    assert.is_true(sa.done)
    assert.equal(1, sa.delivered)
  end)

  it("retries refused attempts with back-off and gives up at the deadline", function()
    local pa = bound_port(keep)
    local dead = bound_port(keep)   -- bound, never listening: every SYN meets an RST
    local res
    local started = core.now()
    local p = core.tcp_punch({ host = LO, port = pa, remotes = { { LO, dead } }, listen = false,
      timeout = 600, retry = 20, retry_max = 200 }, function(err, tcp, m) res = { err, tcp, m } end)
    keep[#keep + 1] = p
    assert.is_true(helper.until_true(function() return res ~= nil end, 3))
    local elapsed = core.now() - started
    assert.equal("ETIMEDOUT", res[1])
    assert.is_nil(res[2])
    assert.matches("no connection after %d+ attempts %(last: ECONNREFUSED%)", res[3])
    local st = p:stats()
    assert.is_true(st.refused >= 3, "refused " .. st.refused)
    assert.equal(st.attempts, st.refused)
    -- back-off: 20, 40, 80, 160, 200, 200 ms... far fewer than one per ms
    assert.is_true(st.attempts <= 12, "attempts " .. st.attempts)
    assert.is_true(elapsed >= 600, "gave up after " .. elapsed .. " ms")
    assert.is_true(st.done)
  end)

  it("accepts on the shared port when only the other side connects", function()
    local pa = bound_port(keep)
    local got
    local p = core.tcp_punch({ host = LO, port = pa, remotes = {}, timeout = 2000 },
      function(err, tcp, _, _, how) got = { err, tcp, how } end)
    keep[#keep + 1] = p
    local c = core.tcp()
    keep[#keep + 1] = c
    local connected
    assert(c:connect(LO, pa, function(err) connected = err or "ok" end))
    assert.is_true(helper.until_true(function() return got and connected end, 3))
    assert.equal("ok", connected)
    assert.is_nil(got[1])
    assert.equal("accept", got[3])
    keep[#keep + 1] = got[2]
    assert.equal(1, p:stats().accepted)
  end)

  it("with first = false delivers every connection until closed", function()
    local pa = bound_port(keep)
    local got = {}
    local p = core.tcp_punch({ host = LO, port = pa, remotes = {}, timeout = 3000, first = false },
      function(err, tcp) got[#got + 1] = tcp or err end)
    keep[#keep + 1] = p
    for _ = 1, 3 do
      local c = core.tcp()
      keep[#keep + 1] = c
      assert(c:connect(LO, pa, function() end))
    end
    assert.is_true(helper.until_true(function() return #got == 3 end, 3))
    for _, t in ipairs(got) do
      assert.equal("userdata", type(t))
      keep[#keep + 1] = t
    end
    assert.is_false(p:stats().done)
    p:close()
    assert.is_true(p:is_closed())
  end)

  it("sends low-TTL SYNs when asked", function()
    local pa, pb = bound_port(keep), bound_port(keep)
    local got
    local l = core.tcp()
    keep[#keep + 1] = l
    local p = core.tcp_punch({ host = LO, port = pa, remotes = { { LO, pb } }, listen = false,
      timeout = 400, retry = 20, ttl = 2, ttl_every = 2 }, function(err) got = err end)
    keep[#keep + 1] = p
    assert.is_true(helper.until_true(function() return got ~= nil end, 3))
    local st = p:stats()
    -- attempts 1, 3, 5... went with TTL 2 (loopback is 0 hops: refused all the same)
    assert.equal((st.attempts + 1) // 2, st.low_ttl_syns)
  end)

  it("closing in the middle of the race calls nothing back and leaks nothing", function()
    local pa = bound_port(keep)
    local dead = bound_port(keep)
    local calls = 0
    local p = core.tcp_punch({ host = LO, port = pa, remotes = { { LO, dead }, { LO, dead + 0 } },
      timeout = 2000, retry = 5 }, function() calls = calls + 1 end)
    helper.until_true(function() return p:stats().attempts >= 4 end, 2)
    p:close()
    p:close()
    assert.is_true(p:is_closed())
    assert.has_error(function() p:stats() end)
    helper.until_true(function() return false end, 0.1)
    assert.equal(0, calls)
    -- a punch dropped without close is collected and closed
    core.tcp_punch({ host = LO, port = pa, remotes = { { LO, dead } }, timeout = 100 }, function() end)
    collectgarbage()
    collectgarbage()
    helper.until_true(function() return false end, 0.3)
  end)

  it("raises on bad arguments and reports a port it cannot bind", function()
    local cb = function() end
    assert.has_error(function() core.tcp_punch(nil, cb) end)
    assert.has_error(function() core.tcp_punch({ host = LO, port = 1 }, nil) end)
    assert.has_error(function() core.tcp_punch({ host = "nope", port = 1, remotes = {} }, cb) end)
    assert.has_error(function() core.tcp_punch({ host = LO, port = 1, remotes = { { "::1", 2 } } }, cb) end)
    assert.has_error(function() core.tcp_punch({ host = LO, port = 1, remotes = {}, listen = false }, cb) end)
    local many = {}
    for i = 1, 9 do many[i] = { LO, 1000 + i } end
    assert.has_error(function() core.tcp_punch({ host = LO, port = 1, remotes = many }, cb) end)
    assert.has_error(function() core.tcp_punch({ host = LO, port = 1, remotes = {}, timeout = 0 }, cb) end)
    assert.has_error(function() core.tcp_punch({ host = LO, port = 1, remotes = {}, ttl = 300 }, cb) end)
    -- a port held by a socket without SO_REUSEPORT: nil, message, code
    local plain = core.tcp()
    keep[#keep + 1] = plain
    assert(plain:bind(LO, 0))
    local _, pp = plain:getsockname()
    local p, err, code = core.tcp_punch({ host = LO, port = pp, remotes = {} }, cb)
    assert.is_nil(p)
    assert.equal("EADDRINUSE", code)
    assert.matches("EADDRINUSE", err)
  end)
end)
