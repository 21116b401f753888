--- A peer (natdemo's peer, seed 000): registers with a rendezvous server,
-- connects to other peers by id, reaches them directly with the first
-- traversal method that works (natpunch.method: UDP hole punching by
-- default), then sends (unreliable) and touches (reliable) over it.
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
local candidates = require "natpunch.candidates"
local method = require "natpunch.method"

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

-- The fields of a register request: our private candidates, and what our
-- methods (and p:advertise) tell peers introduced to us, as opaque
-- "m.NAMESPACE.KEY" fields the rendezvous passes through (PROTOCOL.md).
function Peer:_register_fields()
  local f = { t = "register", id = self.id, key = self.key,
    private = table.concat(candidates.gather(self.udp, self.server_ip), ",") }
  -- the methods, unless just the default (a peer that says nothing has "udp"),
  -- so that a plain peer costs the rendezvous nothing more
  local list = table.concat(self.methods, ",")
  if list ~= "udp" then f["m.methods"] = list end
  local function put(ns, fields)
    for k, v in pairs(fields or {}) do f["m." .. ns .. "." .. k] = v end
  end
  for _, name in ipairs(self.methods) do
    local m = method.get(name)
    if m.advertise then put(name, m.advertise(self)) end
  end
  for ns, fields in pairs(self.advertised) do put(ns, fields) end
  return f
end

--- Fields under namespace ns sent with every registration from now on
-- (nil removes them); peers introduced to us read them as intro.info[ns].
-- For facts about this peer that are no method's own (the NAT type found
-- by discovery, say). Takes effect at the next register or refresh.
function Peer:advertise(ns, fields)
  if type(ns) ~= "string" or not ns:match("^[%w_]+$") then
    error("bad argument #1 to 'advertise' (namespace: letters, digits, _)", 2)
  end
  if fields ~= nil and type(fields) ~= "table" then error("bad argument #2 to 'advertise' (table expected)", 2) end
  self.advertised[ns] = fields
end

--------------------------------------------------------------- requests

-- Send a control request to the current server, retransmitting with
-- back-off until the reply with the same tx arrives or the deadline passes.
function Peer:_request(fields, timeout, pad)
  self.tx_seq = self.tx_seq + 1
  local tx = tostring(self.tx_seq)
  fields.tx = tx
  local body = msg.encode(fields, pad or msg.MIN_REQUEST)
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

--- Register with the first server that answers (failover in order).
-- Returns the public endpoint seen by the server, or nil, reason.
function Peer:register()
  local last
  for i = 1, #self.servers do
    local idx = ((self.server_index - 1 + i - 1) % #self.servers) + 1
    self.server_index = idx
    self.server_ip, self.server_port = addr.parse(self.servers[idx])
    local reply, err = self:_request(self:_register_fields(), self.register_timeout)
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
      local reply = self:_request(self:_register_fields(), self.register_timeout)
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

-- A session wraps the link a method returned (send/touch/close).
local function new_session(self, intro, link, started)
  local s = setmetatable({
    owner = self, peer = intro.peer, link = link,
    ip = link.ip, port = link.port, remote = link.remote,
    path = link.path, transport = link.transport, method = link.method,
    setup_ms = now() - started,
    inbox = {}, waiting = {},
  }, Session)
  if link.route then self.sessions[link.route] = s end
  self.by_peer[s.peer] = s
  return s
end

-- Hand the early packets from this session's address to it, in order;
-- drop the ones too old to belong to any introduction.
function Peer:_replay_early(s)
  local keep, t = {}, now()
  for _, e in ipairs(self.early) do
    if e.from == s.link.route then
      s:_deliver(e.data, e.kind)
    elseif t - e.at <= EARLY_MAX_AGE_MS then
      keep[#keep + 1] = e
    else
      self.counters.unknown_source = self.counters.unknown_source + 1
    end
  end
  self.early = keep
end

-- An introduction as the methods see it: the other peer's id, nonce, role,
-- public endpoint, private candidates (a list), the methods it advertised
-- (nil from a peer that does not say) and info[namespace] = { key = value }
-- from its opaque "m.NAMESPACE.KEY" fields.
local function decode_intro(m)
  local intro = { peer = m.peer, nonce = m.nonce, role = m.role, public = m.public,
    private = msg.split_list(m.private), info = {} }
  for k, v in pairs(m) do
    local ns, key = k:match("^m%.([%w_]+)%.(.+)$")
    if ns then
      intro.info[ns] = intro.info[ns] or {}
      intro.info[ns][key] = v
    end
  end
  if m["m.methods"] then intro.methods = msg.split_list(m["m.methods"]) end
  return intro
end

function Peer:_on_introduce(m)
  if type(m.nonce) ~= "string" or not m.nonce:match("^%x+$") or #m.nonce ~= 16 then return end
  if self.intros[m.nonce] then return end      -- a retransmitted introduction
  local started = now()
  local intro = decode_intro(m)
  local rec = { msg = m, started = started, done = sched.future(), attempt = {} }
  self.intros[m.nonce] = rec
  local order = method.order(self.methods, intro.methods, intro.role)
  sched.spawn(function()
    local link, ctx = method.try(order, self, intro, started + self.connect_timeout * 1000, rec.attempt)
    if not link then
      rec.done:set(nil, ctx)
      if m.role == "accept" then
        self:_emit({ event = "failed", peer = m.peer, reason = ctx })
      end
      return
    end
    local s = self.by_peer[m.peer]
    if not s or s.remote ~= link.remote or s.transport ~= link.transport then
      s = new_session(self, intro, link, started)
    end
    ctx:_attach(s)
    if link.route then self:_replay_early(s) end
    rec.done:set(s)
    self:_emit({ event = "connected", peer = s.peer, remote = s.remote, path = s.path,
      transport = s.transport, method = s.method, setup_ms = s.setup_ms })
    if m.role == "accept" and self.on_session then self.on_session(s) end
  end)
end

--- Connect to the peer registered under id: ask the server for an
-- introduction, punch, and return the session (or nil, reason).
function Peer:connect(id, timeout)
  if type(id) ~= "string" then error("bad argument #1 to 'connect' (peer id expected)", 2) end
  if not self.registered then
    local ok, err = self:register()
    if not ok then return nil, err end
  end
  timeout = timeout or self.connect_timeout
  local started = now()
  -- padded so that the introduction (a reply, never larger than the
  -- request) has room for the other peer's opaque method fields
  local reply, err = self:_request({ t = "connect", target = id }, timeout, msg.CONNECT_PAD)
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
  local again = msg.encode({ t = "connect", target = id, tx = reply.tx }, msg.CONNECT_PAD)
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

--- Unreliable send over the session's path.
function Session:send(data)
  if type(data) ~= "string" then error("bad argument #1 to 'send' (string expected)", 2) end
  if self.closed then return nil, "session closed", "ECLOSED" end
  return self.link:send(data)
end

--- Forget the session (and close what its method opened for it); later
-- packets from its address count as unknown_source.
function Session:close()
  if self.closed then return end
  self.closed = true
  local owner = self.owner
  if self.link.route and owner.sessions[self.link.route] == self then owner.sessions[self.link.route] = nil end
  if owner.by_peer[self.peer] == self then owner.by_peer[self.peer] = nil end
  self.link:close()
end
Session.__close = Session.close

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
  if self.closed then return nil, "session closed", "ECLOSED" end
  local link = self.link
  if cb then
    return link:touch(data, function(err, id, rtt)
      report(err, id, rtt)
      cb(err, rtt)
    end)
  end
  local fut = sched.future()
  local id, err = link:touch(data, function(e, mid, rtt)
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
  if self.refresher then self.refresher:cancel() end
  for _, rec in pairs(self.intros) do
    if not rec.done:is_set() then method.cancel(rec.attempt) end
  end
  for _, s in pairs(self.by_peer) do s:close() end
  for _, name in ipairs(self.methods) do
    local m = method.get(name)
    if m.close then m.close(self) end   -- what a method keeps per peer
  end
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
-- on_event(ev), methods = { "udp", ... } (natpunch.method, tried in this
-- order) or transport = "udp" | "tcp" | "auto" | "tcp,udp" (the same as
-- methods), and the timeouts of DEFAULTS.
function peer.new(opts)
  if type(opts) ~= "table" then error("bad argument #1 to 'peer' (table expected)", 2) end
  if type(opts.id) ~= "string" or opts.id == "" then error("peer: id (string) is required", 2) end
  local servers = opts.servers or { opts.server }
  if type(servers) ~= "table" or #servers == 0 then error("peer: server or servers is required", 2) end
  for _, s in ipairs(servers) do addr.check(s, "peer: server", 2) end
  local self = setmetatable({
    id = opts.id, servers = servers, server_index = 1,
    on_message = opts.on_message, on_session = opts.on_session, on_event = opts.on_event,
    pending = {}, sessions = {}, by_peer = {}, intros = {}, early = {}, tx_seq = 0, advertised = {},
    methods = method.check_list(opts.methods or require("natpunch.method.tcp").methods_for(opts.transport, 2)
      or { "udp" }, "peer", 2),
    counters = { malformed = 0, foreign_control = 0, unknown_source = 0 },
  }, Peer)
  for k, v in pairs(DEFAULTS) do
    if opts[k] ~= nil then self[k] = opts[k] else self[k] = v end
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
  -- touch state only for endpoints this peer punched (touch_seed) or
  -- touches itself: a spoofed source costs no memory (issue 11)
  self.udp:touch_config{ accept = "known" }
  self.udp:recv_start(function(...) self:_on_packet(...) end)
  return self
end

return setmetatable(peer, { __call = function(_, opts) return peer.new(opts) end })
