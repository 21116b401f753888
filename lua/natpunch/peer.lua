--- A peer (natdemo's peer, seed 000): registers with a rendezvous server,
-- connects to other peers by id, punches a direct UDP path, then sends
-- (unreliable) and touches (reliable) over it.
--
--   local p = natpunch.peer{ server = "203.0.113.1:3478", id = "alice",
--                            on_message = function(s, data, kind) print(s.peer, data) end }
--   assert(p:register())
--   local s = assert(p:connect("bob"))
--   print(s.path, s.remote, s.setup_ms)      --> public 198.51.100.9:40000 3
--   assert(s:touch("hello"))                 -- returns the RTT in ms once acked
--
-- Methods that wait (register, connect, touch, receive) must run in a task
-- (natpunch.run / natpunch.spawn).  Events are also reported to
-- opts.on_event(ev) as flat tables, which the CLI prints as JSON lines.
local core = require "natpunch.core"
local sched = require "natpunch.sched"
local msg = require "natpunch.msg"
local addr = require "natpunch.addr"

local peer = {}

local Peer = {}
Peer.__index = Peer

local Session = {}
Session.__index = Session

local DEFAULTS = {
  register_timeout = 5,    -- seconds per server before failing over
  connect_timeout = 10,    -- seconds for introduction + punching
  touch_timeout = 10,
  rto = 0.2,               -- first control retransmission (s), doubled each time
  refresh = nil,           -- re-register period (s); default ttl/3
}

local function now() return core.now() end

local REPEAT_FIRST, REPEAT_MAX = 0.5, 2   -- seconds between repeated connects while punching
local EARLY_MAX = 64             -- packets kept from a session not set up yet
local EARLY_MAX_AGE_MS = 5000

function Peer:_emit(ev)
  if self.on_event then self.on_event(ev) end
end

-- Local candidates: the addresses this socket can be reached at on its own
-- LANs (seed 002: hosts with several interfaces; seed 003: peers behind the
-- same NAT use their private addresses).
function Peer:_private_candidates()
  local ip, port = self.udp:getsockname()
  if ip ~= "0.0.0.0" and ip ~= "::" then return { addr.format(ip, port) } end
  local fam = addr.family(ip)
  local server_loopback = self.server_ip and (self.server_ip:match("^127%.") or self.server_ip == "::1")
  local out = {}
  for _, itf in ipairs(core.interface_addresses() or {}) do
    if itf.family == fam and (not itf.internal or server_loopback)
       and not itf.ip:lower():match("^fe80") then
      out[#out + 1] = addr.format(itf.ip, port)
      if #out >= 8 then break end
    end
  end
  return out
end

--------------------------------------------------------------- requests

-- Send a control request to the current server, retransmitting with
-- back-off until the reply with the same tx arrives or the deadline passes.
function Peer:_request(fields, timeout)
  self.tx_seq = self.tx_seq + 1
  local tx = tostring(self.tx_seq)
  fields.tx = tx
  local body = msg.encode(fields, msg.MIN_REQUEST)
  local fut = sched.future()
  self.pending[tx] = fut
  local deadline = now() + timeout * 1000
  local rto = self.rto
  local reply, err
  while true do
    local ok, serr = self.udp:send(self.server_ip, self.server_port, body, "control")
    if not ok then err = serr break end
    local left = (deadline - now()) / 1000
    if left <= 0 then err = "timeout" break end
    reply = fut:wait(math.min(rto, left))
    if reply then break end
    rto = math.min(rto * 2, 2)
  end
  self.pending[tx] = nil
  if not reply then return nil, err or "timeout" end
  if reply.t == "error" then return nil, reply.reason or "error" end
  return reply
end

--- Register with the first server that answers (failover in order), and
-- with its STUNT service when TCP is one of the transports.  Returns the
-- public endpoint seen by the server, or nil, reason.
function Peer:register()
  local tcp_only = #self.transports == 1 and self.transports[1] == "tcp"
  if tcp_only then return require("natpunch.peer_tcp").register(self, true) end
  local public, err = self:_register_udp()
  if public and self.transports_tcp and not self.stunt then
    require("natpunch.peer_tcp").register(self, false)
  end
  return public, err
end

function Peer:_register_udp()
  local last
  for i = 1, #self.servers do
    local idx = ((self.server_index - 1 + i - 1) % #self.servers) + 1
    self.server_index = idx
    self.server_ip, self.server_port = addr.parse(self.servers[idx])
    local reply, err = self:_request({
      t = "register", id = self.id, key = self.key,
      private = table.concat(self:_private_candidates(), ","),
    }, self.register_timeout)
    if reply then
      self.public = reply.public
      self.server = self.servers[idx]
      self.ttl = tonumber(reply.ttl) or 30
      local ip, port = self.udp:getsockname()
      if not self.registered then
        self:_emit({ event = "registered", public = self.public, ["local"] = addr.format(ip, port),
          server = self.server })
      end
      self.registered = true
      self:_start_refresh()
      return self.public
    end
    last = err
    self:_emit({ event = "server_failed", server = self.servers[idx], reason = err })
    if err ~= "timeout" then break end   -- an answer (e.g. "id taken") is final
  end
  return nil, "register failed: " .. tostring(last)
end

-- Refresh the registration (and the NAT mapping toward the server) every
-- ttl/3; on failure, fail over to the next server.
function Peer:_start_refresh()
  if self.refresher and not self.refresher.done then return end
  self.refresher = sched.spawn(function()
    while not self.closed do
      sched.sleep(self.refresh or math.max(0.05, self.ttl / 3))
      if self.closed then break end
      local reply = self:_request({ t = "register", id = self.id, key = self.key,
        private = table.concat(self:_private_candidates(), ",") }, self.register_timeout)
      if not reply and not self.closed then
        self.server_index = self.server_index % #self.servers + 1
        self.registered = false
        local ok, err = self:register()
        if not ok then self:_emit({ event = "failed", reason = err }) end
      end
    end
  end)
end

--------------------------------------------------------------- sessions

local function new_session(self, intro, ip, port, kind, started)
  local s = setmetatable({
    owner = self, peer = intro.peer, ip = ip, port = port,
    remote = addr.format(ip, port),
    path = (kind == "private") and "private" or "public",
    transport = "udp",
    setup_ms = now() - started,
    inbox = {}, waiting = {},
  }, Session)
  self.sessions[s.remote] = s
  self.by_peer[s.peer] = s
  return s
end

-- Hand the early packets from this session's address to it, in order;
-- drop the ones too old to belong to any introduction.
function Peer:_replay_early(s)
  local keep, t = {}, now()
  for _, e in ipairs(self.early) do
    if e.from == s.remote then
      s:_deliver(e.data, e.kind)
    elseif t - e.at <= EARLY_MAX_AGE_MS then
      keep[#keep + 1] = e
    else
      self.counters.unknown_source = self.counters.unknown_source + 1
    end
  end
  self.early = keep
end

-- Punch toward every candidate of the introduced peer (C state machine).
function Peer:_punch(intro)
  local cands = {}
  for _, c in ipairs(msg.split_list(intro.private)) do
    local ip, port = addr.parse(c)
    if ip and addr.family(ip) == self.family then cands[#cands + 1] = { ip, port, "private" } end
  end
  local pip, pport = addr.parse(intro.public or "")
  if pip then cands[#cands + 1] = { pip, pport, "public" } end
  local fut = sched.future()
  local ok, err = self.udp:punch({
    nonce = intro.nonce, candidates = cands, timeout = self.connect_timeout * 1000,
  }, function(perr, ip, port, kind, rtt)
    fut:set(perr, ip, port, kind, rtt)
  end)
  if not ok then return nil, err end
  return fut
end

function Peer:_on_introduce(m)
  if type(m.nonce) ~= "string" or not m.nonce:match("^%x+$") or #m.nonce ~= 16 then return end
  if self.intros[m.nonce] then return end      -- a retransmitted introduction
  local started = now()
  local fut, err = self:_punch(m)
  local rec = { msg = m, started = started, done = sched.future() }
  self.intros[m.nonce] = rec
  if not fut then
    rec.done:set(nil, err)
    return
  end
  sched.spawn(function()
    local perr, ip, port, kind, rtt = fut:wait()
    if perr then
      rec.done:set(nil, "punch failed: " .. tostring(perr))
      if m.role == "accept" then
        self:_emit({ event = "failed", peer = m.peer, reason = "punch failed: " .. tostring(perr) })
      end
      return
    end
    local s = self.by_peer[m.peer]
    if not s or s.remote ~= addr.format(ip, port) then
      s = new_session(self, m, ip, port, kind, started)
    end
    if rtt then self.udp:touch_seed(ip, port, math.max(1, rtt)) end   -- first RTO fits the path
    self:_replay_early(s)
    rec.done:set(s)
    self:_emit({ event = "connected", peer = s.peer, remote = s.remote, path = s.path,
      transport = s.transport, setup_ms = s.setup_ms })
    if m.role == "accept" and self.on_session then self.on_session(s) end
  end)
end

--- Connect to the peer registered under id: ask the server for an
-- introduction, punch, and return the session (or nil, reason).  With
-- several transports (opts.transport), each is tried in order
-- (natpunch.peer_tcp); the session's transport says which won.
function Peer:connect(id, timeout)
  if type(id) ~= "string" then error("bad argument #1 to 'connect' (peer id expected)", 2) end
  if self.transports_tcp then return require("natpunch.peer_tcp").connect(self, id, timeout) end
  return self:_connect_udp(id, timeout)
end

function Peer:_connect_udp(id, timeout)
  if not self.registered then
    local ok, err = self:register()
    if not ok then return nil, err end
  end
  timeout = timeout or self.connect_timeout
  local started = now()
  local reply, err = self:_request({ t = "connect", target = id }, timeout)
  if not reply then
    self:_emit({ event = "failed", peer = id, reason = err })
    return nil, err
  end
  if reply.t ~= "introduce" then return nil, "unexpected reply " .. tostring(reply.t) end
  self:_on_introduce(reply)
  local rec = self.intros[reply.nonce]
  if not rec then return nil, "bad introduction" end
  rec.started = started
  -- The other peer's introduction may have been lost: repeat the same
  -- request (same tx) while punching; the server then sends the same
  -- introduction, same nonce, to both of us again.
  local again = msg.encode({ t = "connect", target = id, tx = reply.tx }, msg.MIN_REQUEST)
  local repeater = sched.spawn(function()
    local gap = REPEAT_FIRST
    while true do
      sched.sleep(gap)
      if rec.done:is_set() or self.closed then return end
      self.udp:send(self.server_ip, self.server_port, again, "control")
      gap = math.min(gap * 2, REPEAT_MAX)
    end
  end)
  local left = timeout - (now() - started) / 1000
  local s, perr = rec.done:wait(math.max(0.001, left))
  repeater:cancel()
  if not s then
    local reason = perr or "timeout"
    self:_emit({ event = "failed", peer = id, reason = reason })
    return nil, reason
  end
  s.setup_ms = now() - started
  return s
end

function Peer:session(id)
  return self.by_peer[id]
end

--------------------------------------------------------------- receive

function Peer:_on_packet(err, data, ip, port, kind)
  if err then return end
  if kind == "control" then
    if ip ~= self.server_ip or port ~= self.server_port then
      -- control traffic is only accepted from the current server
      self.counters.foreign_control = self.counters.foreign_control + 1
      return
    end
    local m = msg.decode(data)
    if not m then
      self.counters.malformed = self.counters.malformed + 1
      return
    end
    local fut = m.tx and self.pending[m.tx]
    if fut then fut:set(m) end
    if m.t == "introduce" and m.role == "accept" then self:_on_introduce(m) end
    return
  end
  if kind == "data" or kind == "touch" then
    local from = addr.format(ip, port)
    local s = self.sessions[from]
    if s then return s:_deliver(data, kind) end
    if next(self.intros) then
      -- The other side may finish punching first and send before our own
      -- check has succeeded (touch is acked in C already): keep a few
      -- early packets for a little while and replay them to the session.
      local early = self.early
      if #early >= EARLY_MAX then table.remove(early, 1) end
      early[#early + 1] = { from = from, data = data, kind = kind, at = now() }
      return
    end
    self.counters.unknown_source = self.counters.unknown_source + 1
  end
end

function Session:_deliver(data, kind)
  local owner = self.owner
  owner:_emit({ event = "message", peer = self.peer, data = data, kind = kind })
  -- handlers run as tasks, so they may touch, sleep or wait
  if owner.on_message then sched.spawn(owner.on_message, self, data, kind) end
  if #self.waiting > 0 then
    table.remove(self.waiting, 1)(data, kind)
  elseif not owner.on_message then
    if #self.inbox >= 1024 then table.remove(self.inbox, 1) end   -- bounded
    self.inbox[#self.inbox + 1] = { data, kind }
  end
end

--- Next message from this session (in a task); nil, "timeout" if none came.
function Session:receive(timeout)
  if #self.inbox > 0 then
    local m = table.remove(self.inbox, 1)
    return m[1], m[2]
  end
  return sched.wait(function(wake)
    table.insert(self.waiting, wake)
    return function()
      for i, w in ipairs(self.waiting) do
        if w == wake then table.remove(self.waiting, i) break end
      end
    end
  end, timeout)
end

--- Unreliable send over the punched path.
function Session:send(data)
  if type(data) ~= "string" then error("bad argument #1 to 'send' (string expected)", 2) end
  return self.owner.udp:send(self.ip, self.port, data, "data")
end

--- Reliable send (natdemo's touch): waits for the acknowledgement and
-- returns the RTT in ms, or nil, reason once retransmissions are exhausted.
-- With a callback, returns at once and calls cb(err, rtt_ms) later.
function Session:touch(data, cb)
  if type(data) ~= "string" then error("bad argument #1 to 'touch' (string expected)", 2) end
  local owner = self.owner
  local function report(err, id, rtt)
    if err then owner:_emit({ event = "touch_failed", peer = self.peer, id = id, reason = err })
    else owner:_emit({ event = "touch_acked", peer = self.peer, id = id, rtt_ms = rtt }) end
  end
  if cb then
    return owner.udp:touch(self.ip, self.port, data, function(err, id, rtt)
      report(err, id, rtt)
      cb(err, rtt)
    end)
  end
  local fut = sched.future()
  local id, err = owner.udp:touch(self.ip, self.port, data, function(e, mid, rtt)
    report(e, mid, rtt)
    fut:set(e, rtt)
  end)
  if not id then return nil, err end
  local e, rtt = fut:wait()
  if e then return nil, e end
  return rtt
end

--------------------------------------------------------------- lifecycle

function Peer:address()
  local ip, port = self.udp:getsockname()
  return addr.format(ip, port), ip, port
end

function Peer:stats()
  local s = self.udp:stats()
  for k, v in pairs(self.counters) do s[k] = v end
  return s
end

function Peer:close()
  if self.closed then return end
  self.closed = true
  if self.stunt then require("natpunch.peer_tcp").close(self) end
  if self.refresher then self.refresher:cancel() end
  if self.registered and self.server_ip then
    self.udp:send(self.server_ip, self.server_port,
      msg.encode({ t = "unregister", id = self.id }, msg.MIN_REQUEST), "control")
  end
  self.udp:close()
end
Peer.__close = Peer.close

--- Create a peer.  opts: id (required), server = "ip:port" or servers =
-- {"ip:port", ...} (failover in order), bind = "ip:port" (default
-- wildcard, any port), on_message(session, data, kind),
-- on_session(session) for introductions we did not ask for,
-- on_event(ev), transport ("udp" default, "tcp", "auto" = "tcp,udp", or a
-- comma-separated order), and the timeouts of DEFAULTS.
function peer.new(opts)
  if type(opts) ~= "table" then error("bad argument #1 to 'peer' (table expected)", 2) end
  if type(opts.id) ~= "string" or opts.id == "" then error("peer: id (string) is required", 2) end
  local servers = opts.servers or { opts.server }
  if type(servers) ~= "table" or #servers == 0 then error("peer: server or servers is required", 2) end
  for _, s in ipairs(servers) do addr.check(s, "peer: server", 2) end
  local self = setmetatable({
    id = opts.id, servers = servers, server_index = 1,
    on_message = opts.on_message, on_session = opts.on_session, on_event = opts.on_event,
    pending = {}, sessions = {}, by_peer = {}, intros = {}, early = {}, tx_seq = 0,
    counters = { malformed = 0, foreign_control = 0, unknown_source = 0 },
  }, Peer)
  for k, v in pairs(DEFAULTS) do
    if opts[k] ~= nil then self[k] = opts[k] else self[k] = v end
  end
  self.transports = require("natpunch.peer_tcp").transports(opts.transport, 2)
  for _, t in ipairs(self.transports) do
    if t == "tcp" then self.transports_tcp = true end
  end
  self.key = string.format("%016x", string.unpack("<i8", core.random_bytes(8)))
  local sip, sport = addr.parse(servers[1])
  self.server_ip, self.server_port = sip, sport
  local bind = opts.bind or (addr.family(sip) == "inet6" and "[::]:0" or "0.0.0.0:0")
  local bip, bport = addr.check(bind, "peer: bind", 2)
  self.family = addr.family(bip)
  self.udp = core.udp()
  local ok, err, code = self.udp:bind(bip, bport, { reuseaddr = opts.reuseaddr, reuseport = opts.reuseport })
  if not ok then
    self.udp:close()
    return nil, err, code
  end
  self.udp:recv_start(function(...) self:_on_packet(...) end)
  return self
end

return setmetatable(peer, { __call = function(_, opts) return peer.new(opts) end })
