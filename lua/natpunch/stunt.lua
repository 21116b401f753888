--- Direct TCP connections between peers behind NATs, after XSTUNT (seed
-- 003): XInit, XListen and XConnect become init, listen and connect.
--
--   natpunch.run(function()
--     local c = assert(natpunch.stunt.init{ server = "203.0.113.2:3478", id = "bob" })
--     local s = assert(c:listen())            -- the next peer that connects to "bob"
--     s:write("hello " .. s.peer .. "\n")
--   end)
--   -- elsewhere
--   local c = assert(natpunch.stunt.init{ server = "203.0.113.2:3478", id = "alice" })
--   local s = assert(c:connect("bob"))        -- a natpunch.stream: read, write, shutdown, close
--   print(s.path, s.remote, s.setup_ms, s:read())
--
-- init opens the peer's main TCP connection to the rendezvous's STUNT
-- service (natpunch.stunt_server), from a port bound with SO_REUSEADDR and
-- SO_REUSEPORT; registers the id on it; then makes `probes` short probe
-- connections so that the server learns how the NAT allocates TCP ports.
-- connect asks the server for the other side, waits the start time the
-- server gave, and punches from the main connection's port (core.tcp_punch:
-- listen and connect to the other side's private, public and predicted
-- endpoints at once); the side that connected selects one connection with a
-- handshake carrying the introduction's nonce, and both report the outcome
-- to the server (its records, `natpunch records`).  Must run in a task.
local core = require "natpunch.core"
local sched = require "natpunch.sched"
local addr = require "natpunch.addr"
local proto = require "natpunch.stunt_proto"
local stream = require "natpunch.stream"

local stunt = {}

local Client = {}
Client.__index = Client

local DEFAULTS = {
  register_timeout = 5,   -- seconds for the main connection, registration and probes
  connect_timeout = 10,   -- seconds for introduction + punching
  probes = 2,
  low_ttl = 0,            -- TTL of every other SYN of a waiting side (0: normal TTL)
}
local MAX_ACCEPT_QUEUE = 64

local function now() return core.now() end

function Client:_emit(ev)
  if self.on_event then self.on_event(ev) end
end

-- Local candidates: the main connection's own address and, when it is bound
-- to a wildcard, the other addresses of this host's interfaces.
function Client:_private_candidates()
  local out, seen = {}, {}
  local function add(ip)
    local e = addr.format(ip, self.port)
    if not seen[e] and #out < 8 then
      seen[e] = true
      out[#out + 1] = e
    end
  end
  add(self.local_ip)
  -- a server on loopback: peers on this host, nothing else to offer
  local loopback = self.server_ip:match("^127%.") or self.server_ip == "::1"
  if loopback then return out end
  for _, itf in ipairs(core.interface_addresses() or {}) do
    if itf.family == self.family and not itf.internal and not itf.ip:lower():match("^fe80") then
      add(itf.ip)
    end
  end
  return out
end

-- Connect a tcp handle (bound already) to the server; true or nil, reason.
local function tcp_connect(tcp, ip, port, timeout)
  local fut = sched.future()
  local ok, err = tcp:connect(ip, port, function(e) fut:set(e or false) end)
  if not ok then return nil, err end
  local e, why = fut:wait(timeout)
  if e == nil then return nil, why or "timeout" end
  if e then return nil, e end
  return true
end

function Client:_send(fields)
  if self.closed or not self.main then return nil, "closed" end
  return self.main:write(proto.frame(fields))
end

function Client:_request(fields, timeout)
  self.tx_seq = self.tx_seq + 1
  local tx = tostring(self.tx_seq)
  fields.tx = tx
  local fut = sched.future()
  self.pending[tx] = fut
  local ok, err = self:_send(fields)
  local reply
  if ok then reply, err = fut:wait(timeout) end
  self.pending[tx] = nil
  if not reply then return nil, err or "timeout" end
  if reply.t == "error" then return nil, reply.reason or "error" end
  return reply
end

function Client:_dispatch(m)
  local fut = m.tx and self.pending[m.tx]
  if m.t == "ping" then
    self:_send({ t = "pong", n = m.n or "" })
  elseif m.t == "introduce" and m.role == "accept" then
    sched.spawn(function() self:_accept(m) end)
  elseif m.t == "abort" then
    -- the connecting side gave up on this introduction
    local done = self.accepting[m.nonce or ""]
    if done then done:set(nil, "the other side gave up: " .. tostring(m.reason)) end
  elseif m.t == "record" and fut then
    local list = self.record_lists[m.tx]
    if list and #list < 1000 then
      m.t, m.tx = nil, nil
      for _, k in ipairs({ "tcp_attempts", "tcp_successes", "tcp_failures", "tcp_delta", "at" }) do
        if m[k] then m[k] = tonumber(m[k]) end
      end
      if m.use_stunt then m.use_stunt = m.use_stunt == "1" end
      list[#list + 1] = m
    end
    return
  end
  if fut then fut:set(m) end
end

function Client:_on_main(err, chunk)
  if self.closed then return end
  local msgs, perr
  if chunk then msgs, perr = self.reader:feed(chunk) end
  if not msgs then
    self.registered = false
    self.main:close()
    self.main = nil
    for _, fut in pairs(self.pending) do fut:set(nil, "connection to the server lost") end
    self:_emit({ event = "server_lost", server = self.server, reason = perr or err or "eof" })
    return
  end
  for _, m in ipairs(msgs) do self:_dispatch(m) end
end

-- One probe connection from a fresh port; the server answers with what it saw.
function Client:_probe(n, timeout)
  local t = core.tcp()
  local ok, err = t:bind(self.bind_ip, 0)
  if ok then ok, err = tcp_connect(t, self.server_ip, self.server_port, timeout) end
  local reply
  if ok then
    local _, lport = t:getsockname()
    local s = stream.wrap(t)
    s:write(proto.frame({ t = "probe", id = self.id, token = self.token, n = n, ["local"] = lport, tx = "p" .. n }))
    local head = s:read_exactly(2, timeout)
    local body = head and s:read_exactly(string.unpack(">I2", head), timeout)
    reply = body and require("natpunch.msg").decode(body)
    s:close()
    if not reply then err = "no answer to probe " .. n end
  else
    t:close()
  end
  if reply and reply.t == "error" then return nil, reply.reason end
  return reply, err
end

function Client:_register()
  local timeout = self.register_timeout
  local tcp = core.tcp()
  local ok, err = tcp:bind(self.bind_ip, self.bind_port, { reuseaddr = true, reuseport = true })
  if ok then ok, err = tcp_connect(tcp, self.server_ip, self.server_port, timeout) end
  if not ok then
    tcp:close()
    return nil, "cannot reach the STUNT server " .. self.server .. ": " .. tostring(err)
  end
  self.main = tcp
  self.local_ip, self.port = tcp:getsockname()
  self.reader = proto.reader()
  tcp:nodelay(true)
  tcp:read_start(function(e, c) self:_on_main(e, c) end)
  local reply
  local asked = now()
  reply, err = self:_request({ t = "register", id = self.id, key = self.key, ["local"] = self.port,
    private = table.concat(self:_private_candidates(), ",") }, timeout)
  if not reply then return nil, "register failed: " .. tostring(err) end
  self.rtt_ms = now() - asked   -- to the server, for start times agreed without it
  self.public, self.token = reply.public, reply.token
  self.registered = true
  local want = math.max(self.probes, tonumber(reply.probes) or 0)
  for i = 1, want do
    local p, perr = self:_probe(i, timeout)
    if not p then return nil, "probe failed: " .. tostring(perr) end
    self.mapping, self.predicted = p.mapping, p.predicted
  end
  self:_emit({ event = "registered", public = self.public, ["local"] = addr.format(self.local_ip, self.port),
    server = self.server, transport = "tcp", mapping = self.mapping })
  return self.public
end

--------------------------------------------------------------- punching

local function candidates(self, intro)
  local out, seen = {}, {}
  local function add(text, kind)
    local ip, port = addr.parse(text or "")
    if ip and addr.family(ip) == self.family and not seen[text] and #out < 8 then
      seen[text] = true
      out[#out + 1] = { ip, port, kind = kind, text = text }
    end
  end
  for item in (intro.private or ""):gmatch("[^,]+") do add(item, "private") end
  add(intro.public, "public")
  if intro.predicted and intro.predicted ~= "" then add(intro.predicted, "predicted") end
  return out
end

local function path_of(cands, remote)
  for _, c in ipairs(cands) do
    if c.text == remote then return c.kind == "private" and "private" or "public", c.kind == "predicted" end
  end
  return addr.is_private(remote:match("^%[?(.-)%]?:%d+$") or "") and "private" or "public", false
end

function Client:_report(intro, ok, reason, path)
  self:_send({ t = "result", nonce = intro.nonce, ok = ok and 1 or 0, reason = reason or "", path = path or "" })
end

-- The waiting side (first = false) sends every other SYN with a small TTL:
-- it opens its own NAT without reaching the other side's, which might answer
-- with an RST; the connecting side's SYN then gets through.  The others go
-- with the normal TTL, for NATs further away than low_ttl hops.
function Client:_start_punch(cands, first, left_ms, cb)
  local remotes = {}
  for i, c in ipairs(cands) do remotes[i] = { c[1], c[2] } end
  return core.tcp_punch({ host = self.bind_ip, port = self.port, remotes = remotes,
    timeout = math.max(1, math.floor(left_ms)), first = first,
    ttl = (not first) and self.low_ttl or 0, ttl_every = 2 }, cb)
end

local function valid_intro(m)
  return type(m.nonce) == "string" and #m.nonce == 16 and m.nonce:match("^%x+$") ~= nil
    and type(m.peer) == "string"
end

-- The connecting side: the first connection wins; select it.
function Client:_connect_punch(intro, started, deadline, mode)
  local cands = candidates(self, intro)
  local wait = math.min(tonumber(intro.wait_ms) or 0, 2000)
  if wait > 0 then sched.sleep(wait / 1000) end
  local fut = sched.future()
  local punch, perr = self:_start_punch(cands, true, deadline - now(), function(err, tcp, ip, port)
    fut:set(err, tcp, ip, port)
  end)
  if not punch then return nil, "cannot punch: " .. tostring(perr) end
  local err, tcp, ip, port = fut:wait(math.max(0.001, (deadline - now()) / 1000 + 0.5))
  local stats = punch:stats()
  punch:close()
  if err or not tcp then
    local reason = ("no TCP connection to %s (%d attempts: %d refused, %d unreachable, %d unanswered)")
      :format(intro.peer, stats.attempts, stats.refused, stats.unreachable, stats.syn_timeouts)
    return nil, reason
  end
  local remote = addr.format(ip, port)
  local path, predicted = path_of(cands, remote)
  tcp:write(proto.header("S", mode == "framed" and "f" or "r", intro.nonce))
  local s = stream.wrap(tcp, { peer = intro.peer, remote = remote, ip = ip, port = port, path = path,
    predicted = predicted, transport = "tcp", setup_ms = now() - started, mode = mode or "raw",
    nonce = intro.nonce })
  s.expect = proto.header("K", mode == "framed" and "f" or "r", intro.nonce)
  return s
end

-- The waiting side: every connection that completes may be the one the
-- other side selects; the first carrying a valid selection wins.  Returns
-- the stream, or nil, reason; reports the outcome to the server.
function Client:_accept_punch(intro, started, deadline)
  local cands = candidates(self, intro)
  local done = sched.future()
  self.accepting[intro.nonce] = done
  local wait = math.min(tonumber(intro.wait_ms) or 0, 2000)
  if wait > 0 then done:wait(wait / 1000) end
  local pending = {}
  local punch
  local function verify(tcp, ip, port)
    local remote = addr.format(ip, port)
    local s = stream.wrap(tcp, { peer = intro.peer, remote = remote, ip = ip, port = port,
      transport = "tcp", nonce = intro.nonce })
    pending[s] = true
    local h = s:read_exactly(proto.HEADER_SIZE, math.max(0.001, (deadline - now()) / 1000))
    pending[s] = nil
    local kind, mode, nonce = proto.parse_header(h)
    if done:is_set() or kind ~= "S" or nonce ~= intro.nonce then
      s:close()
      return
    end
    s:write(proto.header("K", mode, nonce))
    s.mode = mode == "f" and "framed" or "raw"
    s.path, s.predicted = path_of(cands, remote)
    s.setup_ms = now() - started
    done:set(s)
  end
  if not done:is_set() then   -- (not aborted while waiting to start)
    punch = self:_start_punch(cands, false, deadline - now(), function(err, tcp, ip, port)
      if err then
        done:set(nil, "no TCP connection from " .. intro.peer .. " (" .. tostring(ip or err) .. ")")
      elseif tcp then
        sched.spawn(verify, tcp, ip, port)
      end
    end)
  end
  local s, reason
  if done:is_set() then
    s, reason = done:wait()
  elseif punch then
    s, reason = done:wait(math.max(0.001, (deadline - now()) / 1000 + 0.5))
    local stats = punch:stats()
    punch:close()
    if not s and (reason == nil or reason == "timeout") then
      reason = ("no TCP connection from %s (%d attempts: %d refused, %d unreachable, %d unanswered)")
        :format(intro.peer, stats.attempts, stats.refused, stats.unreachable, stats.syn_timeouts)
    end
  else
    reason = "cannot punch"
  end
  for other in pairs(pending) do other:close() end
  self.accepting[intro.nonce] = nil
  if not s then
    self:_report(intro, false, reason)
    return nil, reason
  end
  self:_report(intro, true, nil, s.path)
  return s
end

-- An introduction from the STUNT service (another peer called connect).
function Client:_accept(intro)
  if not valid_intro(intro) or self.intros[intro.nonce] then return end
  local started = now()
  self.intros[intro.nonce] = true
  local s, reason = self:_accept_punch(intro, started, started + self.connect_timeout * 1000)
  if not s then
    self:_emit({ event = "failed", peer = intro.peer, reason = reason, transport = "tcp" })
    return
  end
  self:_emit({ event = "connected", peer = s.peer, remote = s.remote, path = s.path, transport = "tcp",
    setup_ms = s.setup_ms })
  if self.on_stream then
    sched.spawn(self.on_stream, s)
  elseif #self.waiters > 0 then
    table.remove(self.waiters, 1)(s)
  elseif #self.queue < MAX_ACCEPT_QUEUE then
    self.queue[#self.queue + 1] = s
  else
    s:close()
  end
end

--------------------------------------------------------------- the API

--- XConnect: a connected stream to the peer registered as id, or nil,
-- reason.  opts: timeout (s), mode ("raw" default, or "framed": the
-- handshake tells the other side).
function Client:connect(id, opts)
  if type(id) ~= "string" then error("bad argument #1 to 'connect' (peer id expected)", 2) end
  if type(opts) == "number" then opts = { timeout = opts } end
  opts = opts or {}
  local timeout = opts.timeout or self.connect_timeout
  local started = now()
  local deadline = started + timeout * 1000
  if not self.registered then
    local ok, err = self:_register()
    if not ok then
      self:_emit({ event = "failed", peer = id, reason = err, transport = "tcp" })
      return nil, err
    end
  end
  local intro, err = self:_request({ t = "connect", target = id }, timeout)
  local s
  if intro and valid_intro(intro) then
    self.intros[intro.nonce] = true
    s, err = self:_connect_punch(intro, started, deadline, opts.mode)
    if s then self:_report(intro, true, nil, s.path) else self:_report(intro, false, err) end
  elseif intro then
    err = "bad introduction"
  end
  if not s then
    self:_emit({ event = "failed", peer = id, reason = err, transport = "tcp" })
    return nil, err
  end
  self:_emit({ event = "connected", peer = s.peer, remote = s.remote, path = s.path, transport = "tcp",
    setup_ms = s.setup_ms })
  return s
end

--- XListen: the next stream a peer connected to us with, or nil, "timeout".
function Client:listen(timeout)
  if #self.queue > 0 then return table.remove(self.queue, 1) end
  return sched.wait_in(self.waiters, timeout)
end

--- The STUNT records the server keeps (all, or the one for id).
function Client:records(id, timeout)
  self.tx_seq = self.tx_seq + 1
  local tx = tostring(self.tx_seq)
  local list = {}
  self.record_lists[tx] = list
  local fut = sched.future()
  self.pending[tx] = fut
  local ok, err = self:_send({ t = "query", id = id or "", tx = tx })
  local reply
  if ok then reply, err = fut:wait(timeout or 5) end
  self.pending[tx], self.record_lists[tx] = nil, nil
  if not reply then return nil, err end
  return list
end

function Client:close()
  if self.closed then return end
  if self.main then
    self:_send({ t = "unregister", id = self.id })
    local m = self.main
    m:on_drain(function() m:close() end)   -- after the unregister has left
  end
  self.closed = true
  self.main = nil
  for _, s in ipairs(self.queue) do s:close() end
  self.queue = {}
end
Client.__close = Client.close

local function new_client(opts, what)
  if type(opts) ~= "table" then error("bad argument #1 to '" .. what .. "' (table expected)", 3) end
  local sip, sport = addr.check(opts.server, what .. ": server", 3)
  local fam = addr.family(sip)
  local bind = opts.bind or (fam == "inet6" and "[::]:0" or "0.0.0.0:0")
  local bip, bport = addr.check(bind, what .. ": bind", 3)
  local self = setmetatable({
    id = opts.id, server = opts.server, server_ip = sip, server_port = sport, family = fam,
    bind_ip = bip, bind_port = bport, on_event = opts.on_event, on_stream = opts.on_stream,
    pending = {}, record_lists = {}, intros = {}, accepting = {}, queue = {}, waiters = {}, tx_seq = 0,
    key = string.format("%016x", string.unpack("<i8", core.random_bytes(8))),
  }, Client)
  for k, v in pairs(DEFAULTS) do
    if opts[k] ~= nil then self[k] = opts[k] else self[k] = v end
  end
  return self
end

--- XInit: register id with the server's STUNT service and probe the NAT.
-- opts: server ("ip:port"), id, bind ("ip:port"), probes, register_timeout,
-- connect_timeout (s), on_event(ev), on_stream(stream) (instead of
-- listen()).  Returns the client, or nil, reason.  In a task.
function stunt.init(opts)
  if type(opts) == "table" and (type(opts.id) ~= "string" or opts.id == "") then
    error("stunt.init: id (string) is required", 2)
  end
  local self = new_client(opts, "stunt.init")
  local ok, err = self:_register()
  if not ok then
    self:close()
    return nil, err
  end
  return self
end

--- The server's records without registering (natpunch records): a list of
-- tables, or nil, reason.  opts: server, id, timeout.  In a task.
function stunt.records(opts)
  local self = new_client(opts, "stunt.records")
  local tcp = core.tcp()
  local ok, err = tcp:bind(self.bind_ip, 0)
  if ok then ok, err = tcp_connect(tcp, self.server_ip, self.server_port, opts.timeout or 5) end
  if not ok then
    tcp:close()
    return nil, "cannot reach the STUNT server " .. self.server .. ": " .. tostring(err)
  end
  self.main = tcp
  self.reader = proto.reader()
  tcp:read_start(function(e, c) self:_on_main(e, c) end)
  local list
  list, err = self:records(opts.id, opts.timeout)
  self.closed = true
  tcp:close()
  return list, err
end

return stunt
