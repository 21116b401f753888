-- Batched sends on the STUN fast path (csrc/lua/np_udp_batch.c), over real
-- loopback sockets: every request of a burst is answered exactly once and
-- correctly, the answers leave in sendmmsg batches, and batching never
-- reorders datagrams or loses them when the socket stops or closes inside a
-- batch.  udp:send_batched: a receive callback's sends join the batch.
local helper = require "spec.helper"
local core = require "natpunch.core"
local natpunch = require "natpunch"

local CLIENTS = 4
local PER_CLIENT = 40   -- 160 small datagrams: well inside the default receive buffer

local socket = helper.socket

local function stun_server()
  local srv, port = socket()
  srv:stun_server(true, "batch-spec")
  local controls = {}
  srv:recv_start(function(err, data, ip, cport, kind)
    assert.is_nil(err)
    if kind == "control" and controls[data] then controls[data](ip, cport) end
  end)
  return srv, port, controls
end

-- A STUN server in Lua: every request decoded, answered and sent from the
-- receive callback with send(srv, ...) (udp.send or udp.send_batched).
local function srv_send(how)
  return function(srv, ...) return srv[how](srv, ...) end
end

local function lua_stun_server(send)
  local srv, port = socket()
  local results = {}
  srv:recv_start(function(err, data, ip, cport, kind)
    assert.is_nil(err)
    if kind ~= "stun" then return end
    local answer = assert(core.stun.answer_binding(data, ip, cport, "batch-spec"))
    results[#results + 1] = table.pack(send(srv, ip, cport, answer))
  end)
  return srv, port, results
end

-- A transaction id that says who sent it: client c, request i.
local function tid(c, i)
  return string.pack(">I4I4I4", 0x6e700000 + c, i, 0x5eed)
end

local function request(c, i)
  return core.stun.encode({ method = "binding", class = "request", transaction_id = tid(c, i),
    fingerprint = true })
end

-- Sends CLIENTS x PER_CLIENT requests back to back before the loop runs, so
-- the server finds them queued and reads them in recvmmsg batches; checks
-- every answer.  Returns the number of correct answers.
local function burst(port)
  local answered, wrong, seen = 0, {}, {}
  local done = natpunch.future()
  local clients = {}
  for c = 1, CLIENTS do
    local u, cport = socket()
    clients[c] = u
    u:recv_start(function(err, data)
      local m = not err and core.stun.decode(data)
      local key = m and m.transaction_id
      local cc, i = 0, 0
      if key and #key == 12 then cc, i = string.unpack(">I4I4", key) end
      if not (m and m.class == "success" and cc == 0x6e700000 + c and i >= 1 and i <= PER_CLIENT
          and not seen[key] and m.xor_mapped_address.ip == "127.0.0.1"
          and m.xor_mapped_address.port == cport and m.software == "batch-spec") then
        wrong[#wrong + 1] = err or data
      else
        seen[key] = true
        answered = answered + 1
      end
      if answered + #wrong == CLIENTS * PER_CLIENT then done:set(true) end
    end, { raw = true })
  end
  for i = 1, PER_CLIENT do
    for c = 1, CLIENTS do assert(clients[c]:send("127.0.0.1", port, request(c, i))) end
  end
  done:wait(5)
  for _, u in ipairs(clients) do u:close() end
  return answered, wrong
end

-- Runs spec/batch/eagain.lua with spec/batch/sendmmsg_shim.c preloaded.
local function run_with_shim()
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -m 700 " .. helper.q(dir)))
  local so = dir .. "/sendmmsg_shim.so"
  -- the compiler runs without the sanitizers a `make sanitize` run preloads
  local ok = os.execute("env -u LD_PRELOAD " .. (os.getenv("CC") or "cc") .. " -shared -fPIC -O1 -o " .. helper.q(so)
    .. " spec/batch/sendmmsg_shim.c -ldl")
  local out = ""
  if ok then
    local pre = os.getenv("LD_PRELOAD") or ""   -- the sanitizers come first
    local p = io.popen("NATPUNCH_BUILD=" .. helper.q(helper.build) .. " LD_PRELOAD="
      .. helper.q((pre ~= "" and pre .. " " or "") .. so) .. " " .. helper.lua
      .. " spec/batch/eagain.lua 2>&1")
    out = p:read("a")
    p:close()
  end
  os.remove(so)
  os.remove(dir)
  assert(ok, "cannot build spec/batch/sendmmsg_shim.c")
  return out
end

describe("batched sends", function()
  it("answers a burst of STUN requests completely, in sendmmsg batches", function()
    helper.run(function()
      local srv, port = stun_server()
      assert.is_true(srv:batching())
      local answered, wrong = burst(port)
      assert.same({}, wrong)
      assert.equal(CLIENTS * PER_CLIENT, answered)
      local st = srv:stats()
      assert.equal(answered, st.stun_answered)
      assert.equal(answered, st.tx_batched)
      assert.equal(answered, st.tx_packets)
      assert.is_true(st.tx_batches >= 1)
      assert.is_true(st.tx_batches < answered, "no batching: " .. st.tx_batches .. " batches")
      srv:close()
    end)
  end)

  it("sends one datagram at a time when batching is off", function()
    helper.run(function()
      local srv, port = stun_server()
      assert.is_false(srv:batching(false))
      local answered, wrong = burst(port)
      assert.same({}, wrong)
      assert.equal(CLIENTS * PER_CLIENT, answered)
      local st = srv:stats()
      assert.equal(0, st.tx_batches)
      assert.equal(0, st.tx_batched)
      assert.equal(answered, st.tx_packets)
      srv:close()
    end)
  end)

  it("keeps the order of queued answers and sends made from Lua", function()
    helper.run(function()
      local srv, port, controls = stun_server()
      controls.ping = function(ip, cport) assert(srv:send(ip, cport, "pong", "control")) end
      -- larger than a queue slot: sent at once, after what is queued
      controls.big = function(ip, cport) srv:send(ip, cport, string.rep("b", 1000), "data") end
      local cli = socket()
      local got, fut = {}, natpunch.future()
      cli:recv_start(function(_, data, _, _, kind)
        if kind == "stun" then
          got[#got + 1] = string.unpack(">I4", assert(core.stun.decode(data)).transaction_id, 5)
        else
          got[#got + 1] = kind .. ":" .. data:sub(1, 4)
        end
        if #got == 6 then fut:set(true) end
      end)
      cli:send("127.0.0.1", port, request(1, 1))
      cli:send("127.0.0.1", port, request(1, 2))
      cli:send("127.0.0.1", port, "ping", "control")
      cli:send("127.0.0.1", port, request(1, 3))
      cli:send("127.0.0.1", port, "big", "control")
      cli:send("127.0.0.1", port, request(1, 4))
      assert.is_true(fut:wait(3))
      assert.same({ 1, 2, "control:pong", 3, "data:bbbb", 4 }, got)
      assert.is_true(srv:stats().tx_batches >= 1)
      srv:close(); cli:close()
    end)
  end)

  it("falls back to libuv's send queue, in order, on EAGAIN and partial sendmmsg", function()
    local out = run_with_shim()
    local answered, in_order, batches, batched, queued, packets =
      out:match("^(%d+)\t(%a+)\t(%d+)\t(%d+)\t(%d+)\t(%d+)\n$")
    assert(answered, "unexpected output: " .. out)
    assert.equal("64", answered)
    assert.equal("true", in_order)
    assert.equal(64, tonumber(batched) + tonumber(queued))
    assert.equal("64", packets)
    assert.is_true(tonumber(queued) > 0, "EAGAIN never fell back")
    -- partial results: at most 5 per sendmmsg call
    assert.is_true(tonumber(batches) >= math.ceil(tonumber(batched) / 5))
    assert.is_true(tonumber(batched) > 0)
  end)

  it("sends what a batch queued before the socket stops or closes inside it", function()
    helper.run(function()
      for _, action in ipairs({ "recv_stop", "close" }) do
        local srv, port, controls = stun_server()
        controls.bye = function() srv[action](srv) end
        local cli = socket()
        local n, fut = 0, natpunch.future()
        cli:recv_start(function(_, _, _, _, kind)
          if kind == "stun" then n = n + 1 end
          if n == 3 then fut:set(true) end
        end)
        for i = 1, 3 do cli:send("127.0.0.1", port, request(1, i)) end
        cli:send("127.0.0.1", port, "bye", "control")
        cli:send("127.0.0.1", port, request(1, 4))   -- never read: the socket stopped
        fut:wait(1)
        natpunch.sleep(0.05)
        assert.equal(3, n, action)
        if action == "recv_stop" then
          assert.equal(3, srv:stats().stun_answered)
          srv:close()
        end
        cli:close()
      end
    end)
  end)

  it("queues udp:send_batched from a receive callback into the batch's sendmmsg", function()
    helper.run(function()
      for _, how in ipairs({ "send_batched", "send" }) do
        local srv, port, results = lua_stun_server(srv_send(how))
        local answered, wrong = burst(port)
        assert.same({}, wrong)
        assert.equal(CLIENTS * PER_CLIENT, answered)
        for _, r in ipairs(results) do assert.same({ n = 1, true }, r) end
        local st = srv:stats()
        assert.equal(0, st.stun_answered)   -- none in C
        assert.equal(answered, st.tx_packets)
        assert.equal(0, st.tx_errors)
        if how == "send_batched" then
          assert.equal(answered, st.tx_batched)
          assert.is_true(st.tx_batches >= 1)
          assert.is_true(st.tx_batches < answered, "no batching: " .. st.tx_batches .. " batches")
        else   -- udp:send: one sendto each
          assert.equal(0, st.tx_batches)
        end
        srv:close()
      end
    end)
  end)

  it("sends at once outside a receive batch or with batching off, returning errors", function()
    helper.run(function()
      local u = socket()
      local peer, pport = socket()
      local got, fut = {}, natpunch.future()
      peer:recv_start(function(_, data, _, _, kind)
        got[#got + 1] = kind .. ":" .. data
        if #got == 2 then fut:set(true) end
      end)
      assert.is_true(u:send_batched("127.0.0.1", pport, "one", "data"))
      assert.equal(1, u:stats().tx_packets)   -- left inside the call
      local ok, msg, code = u:send_batched("127.0.0.1", 0, "x")   -- port 0: EINVAL
      assert.is_nil(ok)
      assert.equal("EINVAL", code)
      assert.matches("^EINVAL: ", msg)
      assert.is_false(u:batching(false))
      assert.is_true(u:send_batched("127.0.0.1", pport, "two", "control"))
      assert.is_true(fut:wait(2))
      assert.same({ "data:one", "control:two" }, got)
      local st = u:stats()
      assert.equal(2, st.tx_packets)
      assert.equal(1, st.tx_errors)
      assert.equal(0, st.tx_batches)
      assert.equal(0, st.tx_batch_errors)   -- the failure was returned, not deferred
      assert.has_error(function() u:send_batched("127.0.0.1", 70000, "x") end)
      assert.has_error(function() u:send_batched("nowhere", 1, "x") end)
      assert.has_error(function() u:send_batched("127.0.0.1", 1, "x", "bogus") end)
      u:close(); peer:close()
    end)
  end)

  it("counts a queued udp:send_batched that fails at the batch's end, sends the rest in order", function()
    helper.run(function()
      local srv, port = socket()
      local returned = {}
      srv:recv_start(function(_, data, ip, cport)
        -- port 0 (EINVAL) and broadcast without SO_BROADCAST (EACCES) fail in sendmmsg
        local to = data == "bad0" and 0 or cport
        local host = data == "bad1" and "255.255.255.255" or ip
        if data == "now" then   -- udp:send flushes what is queued first
          returned[#returned + 1] = srv:send(ip, cport, "re:" .. data, "data")
        else
          returned[#returned + 1] = srv:send_batched(host, to, "re:" .. data, "data")
        end
      end)
      local cli = socket()
      local got, fut = {}, natpunch.future()
      cli:recv_start(function(_, data)
        got[#got + 1] = data
        if #got == 4 then fut:set(true) end
      end)
      for _, m in ipairs({ "a", "bad0", "b", "bad1", "c", "now" }) do
        cli:send("127.0.0.1", port, m, "control")
      end
      assert.is_true(fut:wait(3))
      natpunch.sleep(0.05)
      assert.same({ "re:a", "re:b", "re:c", "re:now" }, got)
      assert.same({ true, true, true, true, true, true }, returned)   -- queued: nothing to return
      local st = srv:stats()
      assert.equal(2, st.tx_errors)
      assert.equal(2, st.tx_batch_errors)
      assert.equal(3, st.tx_batched)
      assert.equal(4, st.tx_packets)
      srv:close(); cli:close()
    end)
  end)

  it("docs/API.md's STUN hook in Lua runs as shown", function()
    local api = helper.read_file("docs/API.md")
    local code = assert(api:match("### A STUN hook in Lua\n\n.-```lua\n(.-)```"), "no example")
    code = code:gsub('u:bind%("127%.0%.0%.1", 3478%)', 'u:bind("127.0.0.1", 0)') .. "\nreturn u\n"
    helper.run(function()
      local u = assert(load(code, "API.md", "t", setmetatable({}, { __index = _G })))()
      local port = select(2, u:getsockname())
      local cli, cport = socket()
      local fut = natpunch.future()
      cli:recv_start(function(_, data) fut:set(core.stun.decode(data)) end, { raw = true })
      assert(cli:send("127.0.0.1", port, request(1, 1)))
      local m = assert(fut:wait(2))
      assert.equal("success", m.class)
      assert.equal(tid(1, 1), m.transaction_id)
      assert.equal("my-server", m.software)
      assert.same({ "127.0.0.1", cport }, { m.xor_mapped_address.ip, m.xor_mapped_address.port })
      assert.equal(1, u:stats().tx_batched)
      u:close(); cli:close()
    end)
  end)

  it("queues udp:send_batched from on_touch_batch, which runs at the batch's end", function()
    helper.run(function()
      local a = socket()
      local b, b_port = socket()
      local N, replies, fut = 8, {}, natpunch.future()
      a:recv_start(function(_, data, _, _, kind)
        if kind == "data" then replies[#replies + 1] = data end
        if #replies == N then fut:set(true) end
      end)
      b:recv_start(function() end)
      assert.is_true(b:on_touch_batch(function(list)
        for _, m in ipairs(list) do assert(b:send_batched(m.host, m.port, "re:" .. m.data, "data")) end
      end))
      for i = 1, N do assert(a:touch("127.0.0.1", b_port, "m" .. i, function() end)) end
      assert.is_true(fut:wait(3))
      table.sort(replies)
      local want = {}
      for i = 1, N do want[i] = "re:m" .. i end
      table.sort(want)
      assert.same(want, replies)
      local st = b:stats()
      -- b sent only acks and replies, all of them in sendmmsg batches
      assert.equal(st.tx_packets, st.tx_batched)
      assert.is_true(st.tx_packets >= N + 1)
      a:close(); b:close()
    end)
  end)
end)
