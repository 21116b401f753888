--- The middle peer (natdemo's midPeer, seed 000): peers register with an id;
-- the server records each peer's public (observed) and private
-- (self-reported) endpoints; when a peer asks to connect to another id, both
-- are introduced at the same time with each other's endpoints and a shared
-- nonce, and they punch directly.  The server never carries their data.
--
--   local rv = natpunch.rendezvous{ listen = "0.0.0.0:3478" }
--   rv.on_connect = function(from, to) return from.id ~= "mallory" end
--
-- It also answers plain STUN Binding requests (in C, on the same socket),
-- so any STUN client works against it.
local core = require "natpunch.core"
local msg = require "natpunch.msg"
local addr = require "natpunch.addr"
local registry = require "natpunch.registry"
local registry_redis = require "natpunch.registry_redis"

local rendezvous = {}

local Server = {}
Server.__index = Server

local DEFAULTS = {
  listen = "0.0.0.0:3478",
  ttl = 30,              -- seconds a registration lives without refresh
  max_peers = 10000,     -- cap: memory per peer is bounded, so is the total
  software = "natpunch " .. core.version,
}

local REPEAT_MS = 30000   -- a repeated connect gets the same introduction this long
local ID_PATTERN = "^[%w%-_%.@:]+$"
local MAX_ID = 64
local MAX_PRIVATE = 8
local SWEEP_BATCH = 2000  -- expiries per loop turn: a mass expiry never blocks the loop

local function valid_id(id)
  return type(id) == "string" and #id >= 1 and #id <= MAX_ID and id:match(ID_PATTERN) ~= nil
end

-- What hooks and callers see of a record: a copy, with private as a list.
local function view(rec)
  return { id = rec.id, public = rec.public, private = msg.split_list(rec.private), ip = registry.ip(rec),
    port = rec.port, expires = rec.expires }
end

-- Reply to the source of a request: never larger than the request itself
-- (clients pad requests to msg.MIN_REQUEST), so the server cannot be used
-- to amplify traffic toward a spoofed address.
function Server:_reply(ip, port, fields, request_size)
  -- a reply that echoes a long field (an error quoting a 1170-byte target)
  -- may exceed msg.MAX_SIZE: it is not sent, and nothing raises
  local ok, body = pcall(msg.encode, fields)
  if not ok or #body + 1 > request_size then
    self.counters.replies_suppressed = self.counters.replies_suppressed + 1
    return
  end
  self.udp:send(ip, port, body, "control")
end

function Server:_event(ev)
  if self.on_event then self.on_event(ev) end
end

function Server:_error(ip, port, m, reason, size)
  self.counters.errors = self.counters.errors + 1
  self:_reply(ip, port, { t = "error", tx = m.tx or "", reason = reason }, size)
end

function Server:_on_register(m, ip, port, size)
  local id = m.id
  if not valid_id(id) then return self:_error(ip, port, m, "invalid id", size) end
  local public = addr.format(ip, port)
  local rec = self.registry:get(id)
  if rec and rec.key ~= (m.key or "") and rec.public ~= public then
    return self:_error(ip, port, m, "id taken", size)
  end
  if not rec and self.registry.count >= self.max_peers then
    return self:_error(ip, port, m, "server full", size)
  end
  local private = {}
  for _, c in ipairs(msg.split_list(m.private)) do
    if addr.parse(c) and #private < MAX_PRIVATE then private[#private + 1] = c end
  end
  -- what the peer's traversal methods tell the peers introduced to it:
  -- passed through as it is, never read here (docs/EXTENDING.md)
  local opaque, dropped = msg.opaque(m)
  self.counters.opaque_dropped = self.counters.opaque_dropped + dropped
  local info = { id = id, public = public, private = private, ip = ip, port = port, opaque = opaque }
  if self.on_register then
    local ok, reason = self.on_register(info)
    if ok == false then return self:_error(ip, port, m, reason or "rejected", size) end
  end
  local expires = core.now() + self.ttl * 1000
  if not rec then
    self.counters.registrations = self.counters.registrations + 1
    rec = self.registry:put(registry.record(id, m.key or "", public, port, table.concat(private, ","), expires))
    self:_event({ event = "registered", peer = id, public = public, private = rec.private })
  else
    if rec.public ~= public then self.registry:move(rec, public, port) end
    rec.private = table.concat(private, ",")
    self.registry:refresh(rec, expires)
  end
  -- kept beside the record (records stay at 8 fields); nil when empty
  self.opaque[id] = next(opaque) and opaque or nil
  if self.shared then self.shared:publish_peer(rec) end
  self:_reply(ip, port, { t = "registered", tx = m.tx or "", public = public, ttl = self.ttl }, size)
end

local function hex(bytes)
  return (bytes:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

function Server:_introduce(a, b, tx_for_a, size, nonce)
  local again = nonce ~= nil
  nonce = nonce or hex(core.random_bytes(8))
  local function intro(other, tx, role)
    local f = {}
    for k, v in pairs(self.opaque[other.id] or {}) do f[k] = v end
    f.t, f.tx, f.peer, f.public, f.nonce, f.role = "introduce", tx, other.id, other.public, nonce, role
    f.private = other.private
    return f
  end
  -- b first: b does not have to fit into a's request size budget.  A peer
  -- on another server (b.srv, from Redis) gets it from its own server.
  -- (Opaque fields are those of peers registered here: a peer on another
  -- server is introduced without its own.)
  local to_b = intro(a, nil, "accept")
  if b.srv then
    to_b.to = b.id
    self.shared:send(b.srv, to_b)
  else
    self.udp:send(registry.ip(b), b.port, msg.encode(to_b), "control")
  end
  self:_reply(registry.ip(a), a.port, intro(b, tx_for_a, "connect"), size)
  if again then
    self.counters.reintroductions = self.counters.reintroductions + 1
    return
  end
  a.last_intro = { tx = tx_for_a, target = b.id, nonce = nonce, at = core.now() }
  self.counters.introductions = self.counters.introductions + 1
  self:_event({ event = "introduced", from = a.id, to = b.id, nonce = nonce, server = b.srv })
end

-- The other half of an introduction made by another server, for one of our
-- peers (through Redis pub/sub).
function Server:_on_shared(m)
  if m.t ~= "introduce" or not valid_id(m.to) then return end
  local b = self.registry:get(m.to)
  if not b or not valid_id(m.peer) then
    self.counters.remote_unknown = self.counters.remote_unknown + 1
    return
  end
  local f = msg.opaque(m)    -- the connecting peer's opaque fields, passed through
  f.t, f.peer, f.public, f.private, f.nonce, f.role = "introduce", m.peer, m.public, m.private, m.nonce, "accept"
  self.udp:send(registry.ip(b), b.port, msg.encode(f), "control")
  self.counters.remote_introductions = self.counters.remote_introductions + 1
  self:_event({ event = "introduced", from = m.peer, to = b.id, nonce = m.nonce, via = "redis" })
end

function Server:_on_connect(m, ip, port, size)
  local from = self.registry:at(addr.format(ip, port))
  if not from then return self:_error(ip, port, m, "not registered", size) end
  local to = valid_id(m.target) and self.registry:get(m.target)
  if not to and self.shared and valid_id(m.target) then
    -- registered on another server?  Asked of Redis without blocking; the
    -- answer comes back on the loop.
    return self.shared:find(m.target, function(remote)
      if self.closed or self.registry:get(from.id) ~= from then return end
      if not remote or remote.srv == self.shared.server_id then
        return self:_error(ip, port, m, "unknown peer '" .. tostring(m.target) .. "'", size)
      end
      self:_connect_to(from, remote, m, ip, port, size)
    end)
  end
  if not to then return self:_error(ip, port, m, "unknown peer '" .. tostring(m.target) .. "'", size) end
  if to == from then return self:_error(ip, port, m, "cannot connect to yourself", size) end
  self:_connect_to(from, to, m, ip, port, size)
end

function Server:_connect_to(from, to, m, ip, port, size)
  -- The same request again (same tx): one of the introductions was lost,
  -- or the reply is still on its way.  Send both again with the same
  -- nonce, so the two peers never punch with different nonces.
  local last = from.last_intro
  if last and last.tx == (m.tx or "") and last.target == to.id and core.now() - last.at < REPEAT_MS then
    return self:_introduce(from, to, last.tx, size, last.nonce)
  end
  if self.on_connect then
    local ok, reason = self.on_connect(view(from), view(to))
    if ok == false then return self:_error(ip, port, m, reason or "denied", size) end
  end
  self:_introduce(from, to, m.tx or "", size)
end

function Server:_on_unregister(m, ip, port)
  local rec = self.registry:at(addr.format(ip, port))
  if rec and rec.id == m.id then self:_drop(rec.id) end
end

function Server:_drop(id)
  local rec = self.registry:remove(id)
  if not rec then return end
  self.opaque[id] = nil
  if self.shared then self.shared:forget_peer(rec) end
  self:_event({ event = "expired", peer = id })
end

local handlers = {
  register = Server._on_register,
  connect = Server._on_connect,
  unregister = Server._on_unregister,
}

function Server:_on_packet(err, data, ip, port, kind)
  if err then return end
  if kind == "stun" and self.discovery then return self.discovery:handle(1, 1, data, ip, port) end
  if kind ~= "control" then
    self.counters.dropped = self.counters.dropped + 1
    return
  end
  local m = msg.decode(data)
  local h = m and handlers[m.t]
  if not h then
    self.counters.malformed = self.counters.malformed + 1
    return
  end
  h(self, m, ip, port, #data + 1)
end

-- Registrations due are removed earliest first, at most SWEEP_BATCH per
-- turn of the loop; the rest are left for the next turn (1 ms later).
function Server:_sweep()
  local _, more = self.registry:expire(core.now(), function(rec)
    self.opaque[rec.id] = nil
    if self.shared then self.shared:forget_peer(rec) end
    self:_event({ event = "expired", peer = rec.id })
  end, SWEEP_BATCH)
  if more and not self.closed then self.sweeper:start(1, self.sweep_every, function() self:_sweep() end) end
end

--- Registered peers: a list of {id, public, private}.
function Server:list()
  local out = {}
  for id, rec in self.registry:each() do
    out[#out + 1] = { id = id, public = rec.public, private = msg.split_list(rec.private) }
  end
  table.sort(out, function(x, y) return x.id < y.id end)
  return out
end

--- The record of id ({id, public, private = {...}, ip, port, expires}; a
-- copy) or nil.
function Server:lookup(id)
  local rec = self.registry:get(id)
  return rec and view(rec)
end

function Server:address()
  local ip, port = self.udp:getsockname()
  return addr.format(ip, port), ip, port
end

--- Counters of the socket (C) and of the policy (Lua).
function Server:stats()
  local s = self.udp:stats()
  for k, v in pairs(self.counters) do s[k] = v end
  s.peers = self.registry.count
  if self.stunt then
    for k, v in pairs(self.stunt.counters) do s[k] = v end
    s.tcp_peers = self.stunt.count
  end
  if self.shared then
    for k, v in pairs(self.shared.counters) do s[k] = v end
    s.redis = self.shared.state
  end
  return s
end

function Server:close()
  if self.closed then return end
  self.closed = true
  self.sweeper:close()
  if self.shared then self.shared:close() end
  if self.discovery then self.discovery:close() end
  self.udp:close()
  if self.stunt then self.stunt:close() end
end
Server.__close = Server.close
Server.__gc = Server.close

-- The UDP socket and, unless opts.tcp == false, the STUNT server
-- (natpunch.stunt_server) on the same address and port.  With port 0, a
-- port free for both is searched.
function Server:_bind(ip, port, opts)
  local err, code
  for _ = 1, port == 0 and 8 or 1 do
    self.udp = core.udp()
    local ok
    ok, err, code = self.udp:bind(ip, port, { reuseaddr = opts.reuseaddr, reuseport = opts.reuseport })
    if ok and opts.tcp ~= false then
      local _, uport = self.udp:getsockname()
      self.stunt, err, code = require("natpunch.stunt_server").new(ip, uport, {
        max_peers = self.max_peers, on_connect = self.on_connect,
        on_event = function(ev) self:_event(ev) end })
      ok = self.stunt ~= nil
    end
    if ok then return true end
    self.udp:close()
  end
  return nil, err, code
end

--- STUNT records per id (natpunch.stunt_server): a list, or the one for id.
function Server:records(id)
  return self.stunt and self.stunt:records(id) or {}
end

--- Create and start a rendezvous server.  opts: listen ("ip:port"), ttl
-- (s), max_peers, software, alternate ("ip2[:port2]": answer RFC 5780
-- NAT discovery as natpunch.stunserver does), on_register(info),
-- on_connect(from, to), on_event(ev); redis ("redis://IP:PORT": share the
-- registry with other servers), server_id, redis_prefix, on_log(text); tcp
-- (false: no STUNT server on the same port).  Returns the server, or nil,
-- message, code.
function rendezvous.new(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("bad argument #1 to 'rendezvous' (table expected)", 2) end
  local self = setmetatable({}, Server)
  for k, v in pairs(DEFAULTS) do self[k] = opts[k] == nil and v or opts[k] end
  if type(self.ttl) ~= "number" or self.ttl <= 0 then error("rendezvous: ttl must be a positive number", 2) end
  local ip, port = addr.check(self.listen, "rendezvous: listen", 2)
  if opts.redis ~= nil then
    local ok, why = registry_redis.parse_url(opts.redis)
    if not ok then error("rendezvous: " .. why, 2) end
  end
  self.on_register, self.on_connect, self.on_event = opts.on_register, opts.on_connect, opts.on_event
  self.registry = registry.new()
  self.opaque = {}    -- id -> the peer's opaque m.* fields (msg.opaque), passed through into introductions
  self.counters = { registrations = 0, introductions = 0, reintroductions = 0, errors = 0, malformed = 0,
    dropped = 0, replies_suppressed = 0, opaque_dropped = 0, remote_introductions = 0, remote_unknown = 0 }
  local ok, err, code = self:_bind(ip, port, opts)
  if not ok then return nil, err, code end
  self.udp:touch_config{ accept = "known" }   -- it never touches: no touch state for anyone
  if opts.redis then
    -- shared registry (natpunch.registry_redis); raises on a bad URL
    self.shared = registry_redis.new{ url = opts.redis, registry = self.registry, server_id = opts.server_id,
      prefix = opts.redis_prefix, on_message = function(m) self:_on_shared(m) end,
      log = opts.on_log or function(text) self:_event({ event = "log", message = text }) end }
  end
  if opts.alternate then
    -- RFC 5780 on this socket and three more (natpunch.stunserver): STUN
    -- then goes through Lua, for CHANGE-REQUEST and OTHER-ADDRESS
    local d
    d, err, code = require("natpunch.stunserver").new{ udp = self.udp, alternate = opts.alternate,
      software = self.software, reuseaddr = opts.reuseaddr }
    if not d then
      self.udp:close()
      if self.stunt then self.stunt:close() end
      return nil, err, code
    end
    self.discovery = d
  else
    self.udp:stun_server(true, self.software)
  end
  self.udp:recv_start(function(...) self:_on_packet(...) end)
  self.sweeper = core.timer()
  self.sweep_every = math.max(100, math.min(self.ttl * 250, 5000))
  self.sweeper:start(self.sweep_every, self.sweep_every, function() self:_sweep() end)
  return self
end

return setmetatable(rendezvous, { __call = function(_, opts) return rendezvous.new(opts) end })
