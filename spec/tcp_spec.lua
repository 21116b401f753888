-- natpunch.core TCP handles over real loopback sockets.  Busted has no async
-- tests: every test drives the loop itself until a condition holds or a
-- deadline passes, and fails if it did not hold.
package.cpath = (os.getenv("NATPUNCH_BUILD") or "build") .. "/?.so;" .. package.cpath
local core = require "natpunch.core"

local LO4, LO6 = "127.0.0.1", "::1"
local REUSE = { reuseaddr = true, reuseport = true }
-- callbacks get err "CODE: message" (docs/API.md); write() returns the code
local function code_of(err)
  return err and (err:match("^([%u%d_]+): ") or err)
end
local LUA = os.getenv("LUA") or "lua5.4"

-- Run the loop until cond() holds or ms pass; true if cond held.
local function wait_for(cond, ms)
  core.update_time()
  local deadline = core.now() + (ms or 3000)
  local tick = core.timer()
  tick:start(5, 5, function() end)   -- wakes the loop so the deadline is seen
  while not cond() and core.now() < deadline do core.run("once") end
  tick:close()
  core.run("nowait")
  return cond() and true or false
end

-- Handles made with tcp() are closed after each test; GC tests use
-- core.tcp() directly so that nothing here holds them.
local handles = {}
local function keep(h)
  handles[#handles + 1] = h
  return h
end
local function tcp()
  return keep(assert(core.tcp()))
end

-- Errors raised inside callbacks are reported, not thrown: collect them and
-- fail the test that caused them.
local cb_errors = {}
before_each(function()
  cb_errors = {}
  core.on_error(function(msg) cb_errors[#cb_errors + 1] = tostring(msg) end)
end)

after_each(function()
  for i = #handles, 1, -1 do
    handles[i]:close()
    handles[i] = nil
  end
  for _ = 1, 3 do core.run("nowait") end
  core.on_error(nil)
  assert(#cb_errors == 0, "error in a callback: " .. table.concat(cb_errors, "\n"))
end)

local function port_of(h)
  local _, port = h:getsockname()
  return port
end

-- A listening echo server: echoes every chunk, closes at end of stream or
-- on an error (a peer that closes with unread data resets the connection).
local function echo_server(host, opts)
  local s = tcp()
  assert(s:bind(host or LO4, 0, opts))
  local srv = { accepted = 0, ended = 0, conns = {} }
  assert(s:listen(128, function(err)
    assert(err == nil, err)
    local c = keep(assert(s:accept()))
    srv.accepted = srv.accepted + 1
    srv.conns[#srv.conns + 1] = c
    assert(c:read_start(function(_, chunk)
      if chunk then
        c:write(chunk)
      else
        srv.ended = srv.ended + 1
        c:close()
      end
    end))
  end))
  return s, port_of(s), srv
end

local function count(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

-- A client that connects and collects everything it reads.
local function client(host, port)
  local c = tcp()
  local st = { chunks = {}, eof = false }
  assert(c:connect(host, port, function(err)
    st.connected, st.connect_err = err == nil, err
    if err then return end
    assert(c:read_start(function(rerr, chunk)
      assert(rerr == nil, rerr)
      if chunk then st.chunks[#st.chunks + 1] = chunk else st.eof = true end
    end))
  end))
  function st.data() return table.concat(st.chunks) end
  return c, st
end

local function sh_ok(cmd)
  return os.execute("(" .. cmd .. ") >/dev/null 2>&1") == true
end

local function q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function write_file(text)
  local name = os.tmpname()
  local f = assert(io.open(name, "w"))
  f:write(text)
  f:close()
  return name
end

-- Run a Lua script in a child process (inherits NATPUNCH_BUILD and, under
-- `make sanitize`, LD_PRELOAD); returns its output and whether it exited 0.
local function run_child(code, prefix)
  local name = write_file("package.cpath = (os.getenv('NATPUNCH_BUILD') or 'build') .. '/?.so;' .. package.cpath\n"
    .. code)
  local p = io.popen((prefix or "") .. LUA .. " " .. q(name) .. " 2>&1")
  local out = p:read("a")
  local ok = p:close()
  os.remove(name)
  return out, ok
end

describe("core.tcp", function()
  it("echoes data between a client and a server", function()
    local _, port, srv = echo_server()
    local c, st = client(LO4, port)
    local sent = { "hello", ("x"):rep(100000), "", "bye" }
    local write_results, shut
    assert(wait_for(function() return st.connected end))
    write_results = {}
    for i, m in ipairs(sent) do
      assert.is_true(c:write(m, function(err) write_results[#write_results + 1] = { i, err } end))
    end
    assert(c:shutdown(function(err) shut = err or "ok" end))
    assert(wait_for(function() return st.eof end))
    assert.equal(table.concat(sent), st.data())
    assert.same({ { 1 }, { 2 }, { 3 }, { 4 } }, write_results)   -- in order, err nil
    assert.equal("ok", shut)
    assert.equal(1, srv.accepted)
    assert.equal(1, srv.ended)
  end)

  it("queues writes made before the connection is established", function()
    local _, port = echo_server()
    local c, st = client(LO4, port)
    assert.is_true(c:write("early "))
    assert.is_true(c:write("bird"))
    assert(wait_for(function() return st.data() == "early bird" end))
  end)

  it("accepts 50 clients on one listener", function()
    local N = 50
    local s = tcp()
    assert(s:bind(LO4, 0))
    local ids = {}
    assert(s:listen(128, function(err)
      assert(err == nil, err)
      local c = keep(assert(s:accept()))
      local buf = ""
      assert(c:read_start(function(_, chunk)
        if not chunk then return c:close() end
        buf = buf .. chunk
        if buf:find("\n") then
          ids[#ids + 1] = tonumber(buf:match("^(%d+)\n"))
          assert(c:write("ack " .. buf))
        end
      end))
    end))
    local port = port_of(s)
    local clients = {}
    for i = 1, N do
      local c, st = client(LO4, port)
      assert(c:write(i .. "\n"))
      clients[i] = st
    end
    assert(wait_for(function()
      for i = 1, N do if clients[i].data() ~= "ack " .. i .. "\n" then return false end end
      return true
    end, 5000))
    table.sort(ids)
    for i = 1, N do assert.equal(i, ids[i]) end
  end)

  it("queues an 8 MiB write (back-pressure) and delivers it intact", function()
    local parts = {}
    for i = 1, 128 do parts[i] = string.format("%07d|", i):rep(8192) end   -- 128 x 64 KiB
    local big = table.concat(parts)
    assert.equal(8 * 1024 * 1024, #big)
    local s = tcp()
    assert(s:bind(LO4, 0))
    local got, got_len, eof = {}, 0, false
    assert(s:listen(function()
      local c = keep(assert(s:accept()))
      assert(c:read_start(function(_, chunk)
        if chunk then got[#got + 1], got_len = chunk, got_len + #chunk else eof = true end
      end))
    end))
    local c, st = client(LO4, port_of(s))
    assert(wait_for(function() return st.connected end))
    local written, drained = nil, 0
    assert.is_true(c:write(big, function(err) written = err or "ok" end))
    local queued = c:write_queue_size()
    assert.is_true(queued > 0 and queued < #big, "queued " .. queued)
    assert.is_true(c:on_drain(function() drained = drained + 1 end))
    assert(wait_for(function() return written ~= nil end, 10000))
    assert.equal("ok", written)
    assert.equal(0, c:write_queue_size())
    assert(wait_for(function() return drained == 1 end))
    c:shutdown()
    assert(wait_for(function() return eof end, 10000))
    assert.equal(#big, got_len)
    assert.is_true(table.concat(got) == big, "data differs")
  end)

  it("lets a writer pause on write_queue_size and resume on_drain", function()
    local CHUNK, TOTAL, HIGH = 64 * 1024, 16 * 1024 * 1024, 256 * 1024
    local s = tcp()
    assert(s:bind(LO4, 0))
    local got, eof = {}, false
    assert(s:listen(function()
      local c = keep(assert(s:accept()))
      assert(c:read_start(function(_, chunk)
        if chunk then got[#got + 1] = chunk else eof = true end
      end))
    end))
    local c = tcp()
    local sent, pauses, drains, max_queue, expect = 0, 0, 0, 0, {}
    local function pump()
      while sent < TOTAL do
        local n = sent // CHUNK
        local chunk = string.format("%05d:", n):rep(CHUNK // 6 + 1):sub(1, CHUNK)
        expect[#expect + 1] = chunk
        assert(c:write(chunk))
        sent = sent + CHUNK
        max_queue = math.max(max_queue, c:write_queue_size())
        if c:write_queue_size() > HIGH then
          pauses = pauses + 1
          assert(c:on_drain(function()
            drains = drains + 1
            assert.equal(0, c:write_queue_size())
            pump()
          end))
          return
        end
      end
      c:shutdown()
    end
    assert(c:connect(LO4, port_of(s), function(err) assert(err == nil, err); pump() end))
    assert(wait_for(function() return eof end, 10000))
    assert.is_true(pauses > 0, "writer never had to pause")
    assert.equal(pauses, drains)
    assert.is_true(max_queue > HIGH)
    assert.is_true(table.concat(got) == table.concat(expect), "data differs")
  end)

  it("calls on_drain from the loop when nothing is queued", function()
    local _, port = echo_server()
    local c, st = client(LO4, port)
    assert(wait_for(function() return st.connected end))
    local drained = 0
    assert.is_true(c:on_drain(function() drained = drained + 1 end))
    assert.equal(0, drained)   -- never from inside the method
    assert(wait_for(function() return drained == 1 end))
  end)

  it("reports ECONNREFUSED to the connect callback", function()
    local holder = tcp()                 -- bound, never listening: SYNs get RST
    assert(holder:bind(LO4, 0))
    local c = tcp()
    local result
    assert.is_true(c:connect(LO4, port_of(holder), function(err) result = err or "connected" end))
    assert(wait_for(function() return result ~= nil end))
    assert.matches("^ECONNREFUSED: ", result)   -- cb(err): "CODE: message"
  end)

  it("fails a second bind to a port with EADDRINUSE unless both sockets reuse it", function()
    local a = tcp()
    assert(a:bind(LO4, 0))
    local port = port_of(a)
    local ok, msg, code = tcp():bind(LO4, port)
    assert.is_nil(ok)
    assert.equal("EADDRINUSE", code)
    assert.matches("^EADDRINUSE: ", msg)
    -- the first socket did not allow reuse: asking on the second is not enough
    ok, msg, code = tcp():bind(LO4, port, REUSE)
    assert.is_nil(ok)
    assert.equal("EADDRINUSE", code)
    assert.matches("^EADDRINUSE: ", msg)
    -- a handle binds once
    ok, msg, code = a:bind(LO4, 0)
    assert.is_nil(ok)
    assert.equal("EINVAL", code)
    assert.equal("EINVAL: socket is already bound or connected", msg)

    local b, c = tcp(), tcp()
    assert(b:bind(LO4, 0, REUSE))
    assert.is_true(c:bind(LO4, port_of(b), REUSE))
    assert.equal(port_of(b), port_of(c))
  end)

  it("listens and connects from the same port (TCP hole punching, seed 001)", function()
    local _, rdv_port = echo_server()         -- the rendezvous server S
    local listener, punch = tcp(), tcp()
    assert(listener:bind(LO4, 0, REUSE))
    local P = port_of(listener)
    local accepted = {}
    assert(listener:listen(function()
      local conn = keep(assert(listener:accept()))
      local host, port = conn:getpeername()
      accepted[#accepted + 1] = host .. ":" .. port
      assert(conn:read_start(function(_, chunk) if chunk then conn:write(chunk) end end))
    end))
    assert.is_true(punch:bind(LO4, P, REUSE))
    local connected
    assert(punch:connect(LO4, rdv_port, function(err) connected = err or "ok" end))
    assert(wait_for(function() return connected end))
    assert.equal("ok", connected)
    assert.equal(P, port_of(punch))               -- the bound port was kept
    local _, peer = punch:getpeername()
    assert.equal(rdv_port, peer)
    -- meanwhile the listener on the same port still accepts the other peer
    local c, st = client(LO4, P)
    assert(wait_for(function() return st.connected end))
    assert(c:write("through the hole"))
    assert(wait_for(function() return st.data() == "through the hole" end))
    assert.same({ LO4 .. ":" .. port_of(c) }, accepted)
  end)

  it("completes a simultaneous open between two bound sockets (own netns)", function()
    -- On plain loopback the first SYN is delivered synchronously, before the
    -- other side has called connect, and is answered by RST: both connects
    -- fail with ECONNREFUSED every time.  In a private network namespace
    -- whose RSTs are dropped the first SYN is simply lost (as at a NAT that
    -- has no mapping yet), the second SYN meets a socket in SYN-SENT and the
    -- connection opens without any listener (RFC 793 section 3.4, figure 8).
    local id = io.popen("id -u")
    local uid = id:read("l")
    id:close()
    if uid ~= "0" or not sh_ok("command -v unshare && command -v nft && command -v ip")
        or not sh_ok("env -u LD_PRELOAD unshare --net nft add table inet np_tcp_probe") then
      pending("needs root, unshare, ip and nft")
      return
    end
    local setup = write_file([[
set -e
ip link set lo up
nft add table inet np_tcp_spec
nft add chain inet np_tcp_spec out '{ type filter hook output priority 0; }'
nft add rule inet np_tcp_spec out 'tcp flags & rst == rst' drop
exec env LD_PRELOAD="$NP_PRELOAD" "$@"
]])
    finally(function() os.remove(setup) end)
    -- unshare: the namespace lives as long as the child, nothing to clean up
    local prefix = "NP_PRELOAD=" .. q(os.getenv("LD_PRELOAD") or "") ..
      " env -u LD_PRELOAD unshare --net sh " .. q(setup) .. " "
    local out, ok = run_child([[
local core = require "natpunch.core"
local REUSE = { reuseaddr = true, reuseport = true }
local a, b = core.tcp(), core.tcp()
assert(a:bind("127.0.0.1", 0, REUSE))
assert(b:bind("127.0.0.1", 0, REUSE))
local _, pa = a:getsockname()
local _, pb = b:getsockname()
local res = {}
local function side(name, h, other)
  return function(err)
    res[name .. "_connect"] = err or "ok"
    if err then return end
    local _, lp = h:getsockname()
    local _, rp = h:getpeername()
    res[name .. "_ports_kept"] = tostring(lp == (name == "a" and pa or pb) and rp == other)
    h:read_start(function(_, chunk) if chunk then res[name .. "_got"] = chunk end end)
    h:write("hello from " .. name)
  end
end
-- both connect before the loop runs; neither listens
assert(a:connect("127.0.0.1", pb, side("a", a, pb)))
assert(b:connect("127.0.0.1", pa, side("b", b, pa)))
local t = core.timer()
t:start(3000, 0, core.stop)
local poll = core.timer()
poll:start(1, 1, function() if res.a_got and res.b_got then core.stop() end end)
core.run()
local keys = {}
for k in pairs(res) do keys[#keys + 1] = k end
table.sort(keys)
for _, k in ipairs(keys) do print(k .. "=" .. res[k]) end
]], prefix)
    assert(ok, out)
    local res = {}
    for k, v in out:gmatch("([%w_]+)=([^\n]*)") do res[k] = v end
    assert.same({
      a_connect = "ok", b_connect = "ok",
      a_ports_kept = "true", b_ports_kept = "true",
      a_got = "hello from b", b_got = "hello from a",
    }, res, out)
  end)

  it("reports local and peer addresses", function()
    local s, port, srv = echo_server()
    local c, st = client(LO4, port)
    assert(wait_for(function() return st.connected and srv.accepted == 1 end))
    local h, p = c:getsockname()
    assert.equal(LO4, h)
    assert.is_true(p > 0 and p ~= port)
    assert.same({ LO4, port }, { c:getpeername() })
    assert.same({ LO4, p }, { srv.conns[1]:getpeername() })
    assert.same({ LO4, port }, { srv.conns[1]:getsockname() })
    assert.same({ LO4, port }, { s:getsockname() })
    local ok, msg, code = s:getpeername()   -- a listener has no peer
    assert.is_nil(ok)
    assert.equal("ENOTCONN", code)
    assert.matches("^ENOTCONN: ", msg)
    ok, msg, code = tcp():getsockname()        -- no socket yet
    assert.is_nil(ok)
    assert.equal("EBADF", code)
    assert.matches("^EBADF: ", msg)
    assert.is_true(c:nodelay(true))
    assert.is_true(c:keepalive(true, 30))
    assert.is_true(c:keepalive(false))
    assert.is_true(math.type(c:fileno()) == "integer" and c:fileno() > 2)
  end)

  it("works over IPv6 ::1", function()
    local _, port, srv = echo_server(LO6)
    local c, st = client(LO6, port)
    assert(wait_for(function() return st.connected end))
    assert.equal(LO6, (c:getsockname()))
    assert.same({ LO6, port }, { c:getpeername() })
    assert(c:write("six"))
    assert(wait_for(function() return st.data() == "six" end))
    assert.equal(LO6, (srv.conns[1]:getpeername()))
  end)

  it("honours ipv6only on a dual-stack bind", function()
    -- an IPv4 socket holds port P (never listening: connects to it are
    -- refused); only an IPv6-only socket can share P with it.  A few tries,
    -- as the IPv6 side of P may be taken by some other socket.
    local v6only, port
    for _ = 1, 10 do
      local holder = tcp()
      assert(holder:bind(LO4, 0))
      port = port_of(holder)
      local _, _, code = tcp():bind("::", port, { ipv6only = false })
      assert.equal("EADDRINUSE", code)
      v6only = tcp()
      if v6only:bind("::", port, { ipv6only = true }) then break end
      v6only = nil
    end
    assert(v6only, "no IPv6-only bind beside an IPv4 socket in 10 tries")
    assert(v6only:listen(function() keep(v6only:accept()) end))
    local res
    assert(tcp():connect(LO4, port, function(err) res = err or "ok" end))
    assert(wait_for(function() return res end))
    assert.equal("ECONNREFUSED", code_of(res))

    local dual = tcp()
    assert(dual:bind("::", 0, { ipv6only = false }))
    local _, _, code = tcp():bind(LO4, port_of(dual))
    assert.equal("EADDRINUSE", code)
    local peer
    assert(dual:listen(function() peer = keep(dual:accept()):getpeername() end))
    res = nil
    assert(tcp():connect(LO4, port_of(dual), function(err) res = err or "ok" end))
    assert(wait_for(function() return res and peer end))
    assert.equal("ok", res)
    assert.equal("::ffff:127.0.0.1", peer)
  end)

  it("half-closes with shutdown: the peer can still answer", function()
    local s = tcp()
    assert(s:bind(LO4, 0))
    assert(s:listen(function()
      local c = keep(assert(s:accept()))
      local buf = ""
      assert(c:read_start(function(_, chunk)
        if chunk then buf = buf .. chunk return end
        assert(c:write("pong:" .. buf))                 -- after the peer's FIN
        c:shutdown(function() c:close() end)
      end))
    end))
    local c, st = client(LO4, port_of(s))
    assert(c:write("ping"))
    local shut
    assert(c:shutdown(function(err) shut = err or "ok" end))
    assert(wait_for(function() return st.eof end))
    assert.equal("ok", shut)
    assert.equal("pong:ping", st.data())
    local ok, _, code = c:write("late")                 -- shut down: EPIPE
    assert.is_nil(ok)
    assert.equal("EPIPE", code)
  end)

  it("survives writes to a reset connection (EPIPE, no SIGPIPE)", function()
    local s = tcp()
    assert(s:bind(LO4, 0))
    assert(s:listen(function() assert(s:accept()):close() end))
    local c, st = client(LO4, port_of(s))
    assert(wait_for(function() return st.connected end))
    local failure
    local block = ("z"):rep(64 * 1024)
    local t = keep(core.timer())
    t:start(1, 2, function()
      if failure then return end
      local ok, _, code = c:write(block, function(err) failure = failure or err end)
      if not ok then failure = code end
    end)
    assert(wait_for(function() return failure end, 5000))
    assert.is_truthy(({ EPIPE = true, ECONNRESET = true })[code_of(failure)], failure)
  end)

  it("returns nil, msg, code for run-time failures", function()
    local fresh = tcp()
    local ok, msg, code = fresh:write("nowhere")   -- no socket yet
    assert.is_nil(ok)
    assert.equal("EBADF: bad file descriptor", msg)
    assert.equal("EBADF", code)
    local function fails_with(expected, ...)
      ok, msg, code = ...
      assert.is_nil(ok)
      assert.equal(expected, code)
      assert.equal(expected .. ": ", msg:sub(1, #expected + 2))
    end
    fails_with("ENOTCONN", fresh:read_start(function() end))
    fails_with("ENOTCONN", fresh:shutdown())
    fails_with("EBADF", fresh:fileno())
    fails_with("EAGAIN", fresh:accept())            -- not listening
    local s = tcp()
    assert(s:bind(LO4, 0))
    assert(s:listen(function() end))
    fails_with("EALREADY", s:listen(function() end))
    fails_with("EAGAIN", s:accept())                -- nothing pending
    -- a listener neither reads nor writes
    fails_with("ENOTCONN", s:write("x"))
    fails_with("ENOTCONN", s:write("x", function() end))
    fails_with("ENOTCONN", s:on_drain(function() end))
    fails_with("ENOTCONN", s:shutdown())
    fails_with("ENOTCONN", s:read_start(function() end))
    fails_with("EISCONN", s:connect(LO4, port_of(s), function() end))
    -- and a socket with requests in flight cannot become one
    local busy = tcp()
    assert(busy:bind(LO4, 0))
    local drained = false
    assert(busy:on_drain(function() drained = true end))
    fails_with("EBUSY", busy:listen(function() end))
    assert(wait_for(function() return drained end))
    assert.is_true(busy:listen(function() end))
  end)

  it("raises on misuse", function()
    local t = tcp()
    assert.has_error(function() t:bind("not an address", 1) end)
    assert.has_error(function() t:bind(LO4, 65536) end)
    assert.has_error(function() t:bind(LO4, "x") end)
    assert.has_error(function() t:bind(LO4, 0, "reuse") end)
    assert.has_error(function() t:connect(LO4, 1) end)             -- no callback
    assert.has_error(function() t:connect(LO4, 1, "cb") end)
    assert.has_error(function() t:listen(128) end)
    assert.has_error(function() t:listen(0, function() end) end)
    assert.has_error(function() t:read_start() end)
    assert.has_error(function() t:write({}) end)
    assert.has_error(function() t:write("x", 42) end)
    assert.has_error(function() t:on_drain() end)
    assert.has_error(function() t:shutdown("cb") end)
    assert.has_error(function() t:keepalive(true, 0) end)
    assert.has_error(function() t:nodelay() end)
    assert.has_error(function() t.bind(core.timer(), LO4, 0) end)  -- not a tcp
    assert.has_error(function() t.write(nil, "x") end)
    t:close()
    assert.is_true(t:is_closed())
    assert.has_error(function() t:bind(LO4, 0) end, "attempt to use a closed natpunch.tcp")
    assert.has_error(function() t:write("x") end, "attempt to use a closed natpunch.tcp")
    assert.has_error(function() t:getsockname() end, "attempt to use a closed natpunch.tcp")
    t:close()                                                        -- twice is harmless
    assert.matches("closed", tostring(t))
  end)

  it("closes a handle from inside its own callbacks", function()
    local _, port, srv = echo_server()
    local closed = {}
    local function on_closed(name) return function() closed[name] = (closed[name] or 0) + 1 end end

    -- connect callback
    local a = tcp()
    assert(a:connect(LO4, port, function() a:close(on_closed("connect")) end))
    -- read callback: nothing is delivered after close
    local b = tcp()
    local reads = 0
    assert(b:connect(LO4, port, function()
      assert(b:read_start(function()
        reads = reads + 1
        b:close(on_closed("read"))
      end))
      b:write("one")
      b:write("two")
    end))
    -- write callback, with writes still queued behind it
    local c = tcp()
    local write_errs = {}
    assert(c:connect(LO4, port, function()
      c:write("x", function(err) write_errs[1] = err or "ok"; c:close(on_closed("write")) end)
      c:write(("y"):rep(1024 * 1024), function(err) write_errs[2] = err or "ok" end)
    end))
    -- listen callback
    local s = tcp()
    assert(s:bind(LO4, 0))
    local lport = port_of(s)
    assert(s:listen(function()
      s:accept():close()
      s:close(on_closed("listen"))
    end))
    assert(tcp():connect(LO4, lport, function() end))
    -- drain callback
    local d = tcp()
    assert(d:connect(LO4, port, function()
      d:write(("d"):rep(1024 * 1024))
      d:on_drain(function() d:close(on_closed("drain")) end)
    end))

    assert(wait_for(function()
      return closed.connect and closed.read and closed.write and closed.listen and closed.drain
    end))
    assert.same({ connect = 1, read = 1, write = 1, listen = 1, drain = 1 }, closed)
    assert.equal(1, reads)
    assert.equal("ok", write_errs[1])
    assert.is_truthy(write_errs[2])   -- ok if already written, else ECANCELED
    assert.is_true(write_errs[2] == "ok" or code_of(write_errs[2]) == "ECANCELED")
    for _, h in ipairs({ a, b, c, s, d }) do assert.is_true(h:is_closed()) end
    -- the closed listener is gone: its port refuses
    local res
    assert(tcp():connect(LO4, lport, function(err) res = err or "ok" end))
    assert(wait_for(function() return res end))
    assert.equal("ECONNREFUSED", code_of(res))
    assert(wait_for(function() return srv.ended == 4 end))
  end)

  it("cancels pending requests on close", function()
    local _, port = echo_server()
    local c = tcp()
    local connect_err, write_err, close_cb
    assert(c:connect(LO4, port, function(err) connect_err = err end))
    assert(c:write(("q"):rep(4 * 1024 * 1024), function(err) write_err = err end))
    c:close(function() close_cb = true end)
    assert(wait_for(function() return close_cb end))
    assert.equal("ECANCELED", code_of(connect_err))
    assert.equal("ECANCELED", code_of(write_err))
  end)

  it("reports callback errors and keeps going", function()
    local _, port = echo_server()
    local c, st = client(LO4, port)
    assert(wait_for(function() return st.connected end))
    local before = core.callback_errors()
    local seen = ""
    assert(c:read_start(function(_, chunk)
      seen = seen .. (chunk or "")
      if chunk and chunk:find("boom") then
        c:write("after")
        error("callback failure")
      end
    end))
    assert(c:write("boom"))
    assert(wait_for(function() return seen:find("after") end))
    assert.equal(before + 1, core.callback_errors())
    assert.equal(1, #cb_errors)
    assert.matches("callback failure", cb_errors[1])
    cb_errors = {}
  end)

  describe("garbage collection", function()
    -- Handles are made inside helper functions: a dead local of the test
    -- function itself could still hold one for the collector.
    local function full_gc()
      core.run("nowait")   -- close callbacks release the pins of closed handles
      collectgarbage()
      collectgarbage()
      core.run("nowait")
    end

    it("closes unreferenced idle handles", function()
      local weak = setmetatable({}, { __mode = "v" })
      local function make()
        for i = 1, 20 do
          local t = core.tcp()
          if i % 2 == 0 then assert(t:bind(LO4, 0)) end
          if i % 4 == 0 then assert(t:listen(function() end)); t:close() end
          weak[i] = t
        end
      end
      make()
      full_gc()
      assert.is_nil(next(weak))
    end)

    it("keeps pinned handles alive, then collects them when idle", function()
      local s = tcp()
      assert(s:bind(LO4, 0))
      local accepted = setmetatable({}, { __mode = "v" })
      local received, eofs, connected = 0, 0, 0
      assert(s:listen(function()
        -- the read callback does not capture the handle: only the pin holds it
        local c = assert(s:accept())
        assert(c:read_start(function(_, chunk)
          if chunk then received = received + #chunk else eofs = eofs + 1 end
        end))
        accepted[#accepted + 1] = c
      end))
      local N = 8
      local clients = setmetatable({}, { __mode = "v" })
      local function make()
        for i = 1, N do
          clients[i] = core.tcp()
          assert(clients[i]:connect(LO4, port_of(s), function(err)
            if not err then connected = connected + 1 end
          end))
        end
      end
      make()
      collectgarbage()   -- the connects are pending (the loop has not run): pinned
      collectgarbage()
      assert.equal(N, count(clients))
      for i = 1, N do keep(clients[i]) end
      assert(wait_for(function() return connected == N and count(accepted) == N end))
      full_gc()   -- the accepted handles are reading: pinned
      assert.equal(N, count(accepted))
      for i = 1, N do assert(clients[i]:write("data")) end
      assert(wait_for(function() return received == 4 * N end))
      for i = 1, N do clients[i]:close() end
      assert(wait_for(function() return eofs == N end))
      -- end of stream unpinned them: nothing holds the accepted handles now
      full_gc()
      assert.equal(0, count(accepted))
    end)

    it("drops finished callbacks, so handles they refer to can be collected", function()
      local _, port, srv = echo_server()
      local weak = setmetatable({}, { __mode = "v" })
      local echoed, eof = 0, 0
      local function make()
        -- every callback refers to its own handle
        local a = core.tcp()
        assert(a:connect(LO4, port, function()
          assert(a:read_start(function(_, chunk)
            if chunk then echoed = echoed + 1; a:shutdown() else eof = eof + 1 end
          end))
          assert(a:write("a", function() assert(a:getsockname()) end))
        end))
        local b = core.tcp()
        assert(b:connect(LO4, port, function()
          assert(b:read_start(function(_, chunk)
            if chunk then echoed = echoed + 1; b:read_stop() end
          end))
          assert(b:write("b"))
          assert(b:on_drain(function() assert(b:getsockname()) end))
        end))
        weak[1], weak[2] = a, b
      end
      make()
      assert(wait_for(function() return echoed == 2 and eof == 1 and srv.ended == 1 end))
      full_gc()
      assert.is_nil(weak[1])   -- ended
      assert.is_nil(weak[2])   -- stopped reading
      assert(wait_for(function() return srv.ended == 2 end))   -- b was closed by __gc
    end)

    it("finishes queued writes of an unreferenced handle, then collects it", function()
      local s = tcp()
      assert(s:bind(LO4, 0))
      local received, eof = 0, false
      assert(s:listen(function()
        local c = keep(assert(s:accept()))
        assert(c:read_start(function(_, chunk)
          if chunk then received = received + #chunk else eof = true end
        end))
      end))
      local weak = setmetatable({}, { __mode = "v" })
      local SIZE = 2 * 1024 * 1024
      local function make()
        local c = core.tcp()
        assert(c:connect(LO4, port_of(s), function() end))
        assert(c:write(("w"):rep(SIZE)))
        weak[1] = c
      end
      make()
      full_gc()
      assert.is_not_nil(weak[1])
      assert(wait_for(function() return received == SIZE end, 5000))
      -- idle now: collecting it closes it, and the server sees the end
      assert(wait_for(function()
        collectgarbage()
        return eof
      end, 5000))
      assert.is_nil(weak[1])
    end)

    it("tears down a state with active handles cleanly", function()
      local out, ok = run_child([[
local core = require "natpunch.core"
local s = core.tcp()
assert(s:bind("127.0.0.1", 0))
local accepted = {}
assert(s:listen(function() local c = s:accept(); c:read_start(function() end); accepted[#accepted + 1] = c end))
local _, port = s:getsockname()
local cs = {}
for i = 1, 4 do
  local c = core.tcp()
  assert(c:connect("127.0.0.1", port, function() end))
  assert(c:write(("p"):rep(1024 * 1024), function() end))
  cs[i] = c
end
local t = core.timer()
t:start(50, 0, function() core.stop() end)
core.run()
local late = core.tcp()                 -- a connect still pending at exit
assert(late:connect("127.0.0.1", port, function() error("must not be called") end))
assert(cs[1]:shutdown(function() end))
print("done", #accepted)
]])
      assert(ok, out)
      assert.matches("done\t4", out)
      assert.not_matches("must not be called", out)
    end)
  end)
end)
