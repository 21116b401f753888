--- The rendezvous server: peers register with an id;
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
local options = require "natpunch.options"
local auth = require "natpunch.auth"
local candidates = require "natpunch.candidates"
local turn = require "natpunch.turn"
local registry = require "natpunch.registry"
local metrics = require "natpunch.metrics"
local registry_redis = require "natpunch.registry_redis"

local rendezvous = {}

local Server = {}
Server.__index = Server

-- TURN REST-API credentials handed to registered peers (--turn) last a day.
local TURN_CRED_TTL = 86400

local DEFAULTS = {
  listen = "0.0.0.0:3478",
  ttl = 30,              -- seconds a registration lives without refresh
  max_peers = 10000,     -- cap: memory per peer is bounded, so is the total
  max_per_socket = 4,    -- ids one source ip:port may hold
  max_per_ip = 1024,     -- ids one source ip may hold (many users may share a NAT)
  intro_rate = 5,        -- introductions per second, per asker and per target (token buckets)
  intro_burst = 20,
  kx_rate = 200,         -- new keys (X25519) per second per source IP, after the cookie
  kx_burst = 1000,
  software = "natpunch " .. core.version,
}

local REPEAT_MS = 30000   -- a repeated connect gets the same introduction this long
local ID_PATTERN = "^[%w%-_%.@:]+$"
local MAX_ID = 64
local MAX_PRIVATE = 8
local STUN_SOURCES = 4096   -- per-source STUN buckets kept at most
local KX_CACHE = 4096       -- shared keys of recently seen peer keys
local SWEEP_BATCH = 2000  -- expiries per loop turn: a mass expiry never blocks the loop

local function valid_id(id)
  return type(id) == "string" and #id >= 1 and #id <= MAX_ID and id:match(ID_PATTERN) ~= nil
end
rendezvous.valid_id = valid_id

-- What hooks and callers see of a record: a copy, with private as a list
-- and the peer's public key as hex.
local function view(rec)
  return { id = rec.id, public = rec.public, private = msg.split_list(rec.private), ip = registry.ip(rec),
    port = rec.port, expires = rec.expires, key = auth.hex(rec.key), nat = rec.nat }
end

local function count(self, what)
  self.counters[what] = (self.counters[what] or 0) + 1
end

-- Reply to the source of a request that is not authenticated yet: never
-- larger than the request itself (clients pad requests to
-- msg.MIN_REQUEST), so the server cannot be used to amplify traffic
-- toward a spoofed address.
function Server:_reply(ip, port, fields, request_size)
  local ok, body = pcall(msg.encode, fields)
  if not ok or #body + 1 > request_size then
    count(self, "replies_suppressed")
    return
  end
  self.udp:send(ip, port, body, "control")
end

-- Send a MACed message to a source that has proven it receives (it
-- returned a cookie), under the key it shares with us.
function Server:_send_mac(key, ip, port, fields)
  auth.seal(key, "s", fields, self.seq())
  local ok, body = pcall(msg.encode, fields)
  if not ok then
    count(self, "replies_suppressed")
    return
  end
  self.udp:send(ip, port, body, "control")
end

-- ... to a registered peer.  Per-peer security state lives in a side
-- table keyed by id (self.sec), so registry records stay small.
function Server:_send_to(rec, fields)
  self:_send_mac(self.sec[rec.id].mac_key, registry.ip(rec), rec.port, fields)
end

function Server:_event(ev)
  if self.on_event then self.on_event(ev) end
end

function Server:_error(ip, port, m, reason, size)
  count(self, "errors")
  self:_reply(ip, port, { t = "error", tx = m.tx or "", reason = reason }, size)
end

-- An authenticated error: to a source that proved its address and key
-- (key, ip, port), or to a registered record.
function Server:_auth_error(to, m, reason)
  count(self, "errors")
  local fields = { t = "error", tx = m.tx or "", reason = reason }
  if to.id then return self:_send_to(to, fields) end
  self:_send_mac(to.mac_key, to.ip, to.port, fields)
end

-- Quotas: registrations held per source ip:port and per source IP.
function Server:_quota_ok(ip, public)
  return (self.per_socket[public] or 0) < self.max_per_socket and (self.per_ip[ip] or 0) < self.max_per_ip
end

function Server:_hold(public, ip)
  self.per_socket[public] = (self.per_socket[public] or 0) + 1
  self.per_ip[ip] = (self.per_ip[ip] or 0) + 1
end

function Server:_release(public, ip)
  local n = (self.per_socket[public] or 1) - 1
  self.per_socket[public] = n > 0 and n or nil
  n = (self.per_ip[ip] or 1) - 1
  self.per_ip[ip] = n > 0 and n or nil
end

-- A record left the registry (expired or unregistered).
function Server:_forget(rec)
  self:_release(rec.public, registry.ip(rec))
  self.sec[rec.id] = nil
  self.opaque[rec.id] = nil
  if self.shared then self.shared:forget_peer(rec) end
  self:_event({ event = "expired", peer = rec.id })
end

-- Registration, in two steps.  Without a valid cookie for its source the
-- request gets only a cookie (no state, reply no larger than the request).
-- With it, the request must carry the peer's public key and a MAC under
-- the key the peer and this server share; the id is bound to that key
-- until the registration expires (trust on first use).
function Server:_on_register(m, ip, port, size, claimed)
  local id = m.id
  if not valid_id(id) then return self:_error(ip, port, m, "invalid id", size) end
  local pk = m.pk
  if type(pk) ~= "string" or #pk ~= auth.KEY_LEN then
    return self:_error(ip, port, m, "key required (this server authenticates peers)", size)
  end
  local now_s = core.now() // 1000
  if not auth.cookie_ok(self.cookie_secret, m.cookie, ip, port, now_s, self.cookie_lifetime) then
    count(self, "cookies")
    return self:_reply(ip, port, { t = "cookie", tx = m.tx or "", key = self.keys.pk,
      cookie = auth.cookie(self.cookie_secret, ip, port, now_s) }, size)
  end
  local rec = self.registry:get(id)
  local sec = rec and self.sec[id]
  local key
  if rec and rec.key == pk then
    key = sec.mac_key
  else
    -- an X25519 costs about 0.1 ms: keys seen lately are remembered (at
    -- most KX_CACHE), and a proven source gets kx_rate new ones per second
    key = self.kx_cache[pk]
    if not key then
      if not self.kx_limiter:take(ip, core.now()) then return count(self, "kx_limited") end
      key = auth.shared(self.keys, pk, "natpunch-control")
      if key then
        if self.kx_cached >= KX_CACHE then self.kx_cache, self.kx_cached = {}, 0 end
        self.kx_cache[pk], self.kx_cached = key, self.kx_cached + 1
      end
    end
  end
  local seq = key and auth.check(key, "p", m)
  if not seq then return count(self, "bad_mac") end
  local public = addr.format(ip, port)
  local tmp = { mac_key = key, ip = ip, port = port }
  if rec and rec.key ~= pk then
    count(self, "id_taken")
    return self:_auth_error(tmp, m, "id taken")
  end
  if rec and not sec.window:accept(seq) then return count(self, "replayed") end
  if self.secret then
    local ok, why = auth.token_ok(self.secret, m.token, id, os.time())
    if not ok then return self:_auth_error(tmp, m, why) end
  end
  local moved = not rec or rec.public ~= public
  if not rec and self.registry.count >= self.max_peers then return self:_auth_error(tmp, m, "server full") end
  if moved and not self:_quota_ok(ip, public) then
    count(self, "quota")
    return self:_auth_error(tmp, m, "too many registrations from this address")
  end
  local pol = self.policy
  if candidates.is_loopback(ip) then pol = self.loopback_policy end
  local private, dropped = candidates.filter(m.private or "", pol)
  if dropped > 0 then self.counters.candidates_dropped = self.counters.candidates_dropped + dropped end
  while #private > MAX_PRIVATE do table.remove(private) end
  -- what the peer's traversal methods tell the peers introduced to it:
  -- passed through as it is, never read here (docs/EXTENDING.md)
  local opaque, odropped = msg.opaque(m)
  self.counters.opaque_dropped = self.counters.opaque_dropped + odropped
  local info = { id = id, public = public, private = private, ip = ip, port = port, opaque = opaque,
    key = auth.hex(pk), token = m.token }
  if self.on_register then
    local ok, reason = self.on_register(info)
    if ok == false then return self:_auth_error(tmp, m, reason or "rejected") end
  end
  local expires = core.now() + self.ttl * 1000
  local text = table.concat(private, ",")
  if not rec and not claimed and self.shared and self.shared:up() then
    -- shared registry: the id may be held by another server's peer; Redis
    -- binds it to one key across all servers (registry_redis.claim), and
    -- the registration goes on once Redis has answered
    if self.claiming[id] then return count(self, "claims_pending") end
    self.claiming[id] = true
    return self.shared:claim(id, pk, public, text, self.ttl * 1000, function(ok)
      self.claiming[id] = nil
      if self.closed then return end
      if ok == false then
        count(self, "id_taken")
        return self:_auth_error(tmp, m, "id taken")
      end
      self:_on_register(m, ip, port, size, true)
    end)
  end
  -- the NAT behaviour the peer discovered ("EI/APD"), passed on in introductions
  local nat = type(m.nat) == "string" and #m.nat <= 12 and m.nat:match("^%a+/%a+$") or nil
  if not rec then
    self.counters.registrations = self.counters.registrations + 1
    rec = self.registry:put(registry.record(id, pk, public, port, text, expires))
    sec = { mac_key = key, window = auth.window() }
    sec.window:accept(seq)
    self.sec[id] = sec
    if nat then rec.nat = nat end     -- a slot of every record (registry.record)
    self:_event({ event = "registered", peer = id, public = public, private = text, nat = nat })
  else
    rec.nat = nat or rec.nat
    if moved then
      self:_release(rec.public, registry.ip(rec))
      self.registry:move(rec, public, port)
    end
    rec.private = text
    self.registry:refresh(rec, expires)
  end
  sec.plain = m.plain == "1"
  if moved then self:_hold(public, ip) end
  -- kept beside the record (records stay at 8 fields); nil when empty
  self.opaque[id] = next(opaque) and opaque or nil
  if self.shared then self.shared:publish_peer(rec) end
  local reply = { t = "registered", tx = m.tx or "", public = public, ttl = self.ttl,
    cookie = auth.cookie(self.cookie_secret, ip, port, now_s) }
  if self.turn then
    -- TURN REST-API credentials for this id (the relay method), valid a day
    reply.turn = self.turn
    reply.turn_user, reply.turn_pass = turn.rest_credentials(self.turn_secret, id, TURN_CRED_TTL)
  end
  self:_send_to(rec, reply)
end

-- The registered peer a request claims to come from, if its MAC, its
-- sequence number and its source address all check out.
function Server:_sender(m, ip, port)
  local rec = valid_id(m.id) and self.registry:get(m.id)
  if not rec then return nil, "not registered" end
  local sec = self.sec[rec.id]
  local seq = auth.check(sec.mac_key, "p", m)
  if not seq then
    count(self, "bad_mac")
    return nil
  end
  if rec.port ~= port or rec.public ~= addr.format(ip, port) then
    count(self, "wrong_source")
    return nil
  end
  if not sec.window:accept(seq) then
    count(self, "replayed")
    return nil
  end
  return rec
end

function Server:_introduce(a, b, tx_for_a, nonce)
  local again = nonce ~= nil
  nonce = nonce or auth.hex(core.random_bytes(8))
  local function intro(other, tx, role)
    local f = {}
    for k, v in pairs(self.opaque[other.id] or {}) do f[k] = v end
    local sec = self.sec[other.id]
    f.t, f.tx, f.peer, f.public, f.nonce, f.role = "introduce", tx, other.id, other.public, nonce, role
    f.private, f.pk, f.plain = other.private, other.key, (sec and sec.plain) and "1" or nil
    f.nat = other.nat     -- the NAT behaviour it registered with ("EI/APD"), if any
    return f
  end
  -- b first: its introduction is what a lost reply to a repeats.  A peer
  -- on another server (b.srv, from Redis) gets it from its own server.
  -- (Opaque fields are those of peers registered here: a peer on another
  -- server is introduced without its own.)
  local to_b = intro(a, nil, "accept")
  if b.srv then
    to_b.to = b.id
    self.shared:send(b.srv, to_b)
  else
    self:_send_to(b, to_b)
  end
  self:_send_to(a, intro(b, tx_for_a, "connect"))
  if again then
    self.counters.reintroductions = self.counters.reintroductions + 1
    return
  end
  a.last_intro = { tx = tx_for_a, target = b.id, nonce = nonce, at = core.now(),
    pair = rendezvous.nat_pair(a.nat, b.nat) }   -- for the asker's report (_on_report)
  self.counters.introductions = self.counters.introductions + 1
  self:_event({ event = "introduced", from = a.id, to = b.id, nonce = nonce, server = b.srv })
end

-- The other half of an introduction made by another server, for one of our
-- peers (through Redis pub/sub): MACed to it like ours, within its
-- target bucket.
function Server:_on_shared(m)
  if m.t ~= "introduce" or not valid_id(m.to) then return end
  local b = self.registry:get(m.to)
  if not b or not valid_id(m.peer) or type(m.pk) ~= "string" or #m.pk ~= auth.KEY_LEN then
    self.counters.remote_unknown = self.counters.remote_unknown + 1
    return
  end
  local sec = self.sec[b.id]
  local now = core.now()
  sec.target = sec.target or auth.bucket(self.intro_rate, self.intro_burst, now)
  if not sec.target:take(now) then return count(self, "rate_limited") end
  local f = msg.opaque(m)    -- the connecting peer's opaque fields, passed through
  f.t, f.peer, f.public, f.private, f.nonce, f.role = "introduce", m.peer, m.public, m.private, m.nonce, "accept"
  f.pk, f.plain = m.pk, m.plain
  self:_send_to(b, f)
  self.counters.remote_introductions = self.counters.remote_introductions + 1
  self:_event({ event = "introduced", from = m.peer, to = b.id, nonce = m.nonce, via = "redis" })
end

-- Introductions cost the server two messages and make the target punch:
-- each asker and each target gets a token bucket.
function Server:_rate_ok(from, to)
  local now = core.now()
  local fs, ts = self.sec[from.id], self.sec[to.id]
  fs.ask = fs.ask or auth.bucket(self.intro_rate, self.intro_burst, now)
  if not fs.ask:take(now) then return false end
  if not ts then return true end      -- on another server: its own server keeps its bucket
  ts.target = ts.target or auth.bucket(self.intro_rate, self.intro_burst, now)
  return ts.target:take(now)
end

function Server:_on_connect(m, ip, port, size)
  local from, why = self:_sender(m, ip, port)
  if not from then
    if why then return self:_error(ip, port, m, why, size) end
    return
  end
  if type(m.tx) ~= "string" or m.tx == "" then return self:_auth_error(from, m, "tx required") end
  if not valid_id(m.target) then return self:_auth_error(from, m, "invalid target id") end
  local to = self.registry:get(m.target)
  if not to and self.shared then
    -- registered on another server?  Asked of Redis without blocking; the
    -- answer comes back on the loop.
    return self.shared:find(m.target, function(remote)
      if self.closed or self.registry:get(from.id) ~= from then return end
      if not remote or remote.srv == self.shared.server_id or type(remote.key) ~= "string" then
        return self:_auth_error(from, m, "unknown peer '" .. m.target .. "'")
      end
      self:_connect_to(from, remote, m)
    end)
  end
  if not to then return self:_auth_error(from, m, "unknown peer '" .. m.target .. "'") end
  if to == from then return self:_auth_error(from, m, "cannot connect to yourself") end
  self:_connect_to(from, to, m)
end

function Server:_connect_to(from, to, m)
  if not self:_rate_ok(from, to) then
    count(self, "rate_limited")
    return self:_auth_error(from, m, "rate limited")
  end
  -- The same request again (same tx): one of the introductions was lost,
  -- or the reply is still on its way.  Send both again with the same
  -- nonce, so the two peers never punch with different nonces.
  local last = from.last_intro
  if last and last.tx == m.tx and last.target == to.id and core.now() - last.at < REPEAT_MS then
    return self:_introduce(from, to, last.tx, last.nonce)
  end
  if self.on_connect then
    local ok, reason = self.on_connect(view(from), to.srv and to or view(to))
    if ok == false then return self:_auth_error(from, m, reason or "denied") end
  end
  self:_introduce(from, to, m.tx)
end

--------------------------------------------------------------- reports

-- Label values of the punch reports, from a fixed set each, so that what
-- peers send cannot grow the metrics: at most 7 NAT classes (28 pairs),
-- 7 method names and 2 outcomes.
local NAT_CLASSES = { open = true, firewall = true, ["full-cone"] = true, ["restricted-cone"] = true,
  ["port-restricted-cone"] = true, symmetric = true }

--- A NAT code as registered ("EI/APD") -> its classic name, or "unknown".
function rendezvous.nat_class(code)
  local d = code and require("natpunch.discover").parse_code(code)
  return d and NAT_CLASSES[d.type] and d.type or "unknown"
end

--- The unordered pair of two peers' NAT classes: "full-cone+symmetric".
function rendezvous.nat_pair(a, b)
  local x, y = rendezvous.nat_class(a), rendezvous.nat_class(b)
  if x > y then x, y = y, x end
  return x .. "+" .. y
end

--- A reported method name -> a built-in method's name, "none" or "other".
function rendezvous.method_label(name)
  if name == "none" then return name end
  return type(name) == "string" and require("natpunch.method").BUILTIN[name] and name or "other"
end

local MAX_SETUP_MS = 3600 * 1000

-- How an introduction ended, from the peer that asked for it (only it,
-- only once per introduction, MACed from its registered address): counted
-- by method, outcome and the two peers' NAT classes, setup time observed
-- by method.  No reply, so no amplification.
function Server:_on_report(m, ip, port)
  local rec = self:_sender(m, ip, port)
  if not rec then return end
  local last = rec.last_intro
  local outcome = m.outcome
  local setup = tonumber(m.setup_ms)
  if not last or last.nonce ~= m.nonce or last.reported or (outcome ~= "connected" and outcome ~= "failed")
    or (m.setup_ms ~= nil and not (setup and setup >= 0 and setup <= MAX_SETUP_MS)) then
    return count(self, "reports_refused")
  end
  last.reported = true
  local name = rendezvous.method_label(m.method)
  self.reports:inc("natpunch_punch_total", { method = name, outcome = outcome, nat_pair = last.pair })
  if outcome == "connected" and setup then
    self.reports:observe("natpunch_setup_ms", setup, { method = name })
  end
  count(self, "reports")
  self:_event({ event = "report", peer = rec.id, target = last.target, method = name, outcome = outcome,
    nat_pair = last.pair, setup_ms = setup })
end

--- The punch reports as a metrics set (natpunch.metrics): natpunch_punch_total
-- {method, outcome, nat_pair} and the natpunch_setup_ms histogram {method}.
function Server:report_metrics()
  return self.reports
end

-- Only the key an id is bound to can unregister it, from its address.
function Server:_on_unregister(m, ip, port)
  local rec = self:_sender(m, ip, port)
  if rec then self:_drop(rec.id) end
end

function Server:_drop(id)
  local rec = self.registry:remove(id)
  if rec then self:_forget(rec) end
end

-- Plain STUN Binding answers, with a per-source token bucket (opt-in:
-- --stun-rate; at most STUN_SOURCES sources tracked, see auth.limiter).
function Server:_stun_allowed(ip)
  if self.stun_limiter:take(ip, core.now()) then return true end
  count(self, "stun_limited")
  return false
end

function Server:_answer_stun(data, ip, port)
  local answer = core.stun.answer_binding(data, ip, port, self.software ~= "" and self.software or nil)
  if answer then
    count(self, "stun_answered_lua")
    self.udp:send(ip, port, answer)
  end
end

local handlers = {
  register = Server._on_register,
  connect = Server._on_connect,
  unregister = Server._on_unregister,
  report = Server._on_report,
}

function Server:_on_packet(err, data, ip, port, kind)
  if err then return end
  if kind == "stun" then
    if self.stun_rate and not self:_stun_allowed(ip) then return end
    if self.discovery then return self.discovery:handle(1, 1, data, ip, port) end
    if self.stun_rate then return self:_answer_stun(data, ip, port) end
  end
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
  -- the server never raises on input: a bug here costs one message
  local ok, perr = pcall(h, self, m, ip, port, #data + 1)
  if not ok then
    count(self, "internal_errors")
    self:_event({ event = "error", reason = tostring(perr) })
  end
end

-- Registrations due are removed earliest first, at most SWEEP_BATCH per
-- turn of the loop; the rest are left for the next turn (1 ms later).
function Server:_sweep()
  local _, more = self.registry:expire(core.now(), function(rec) self:_forget(rec) end, SWEEP_BATCH)
  if more and not self.closed then self.sweeper:start(1, self.sweep_every, function() self:_sweep() end) end
end

--- Registered peers: a list of {id, public, private, key}.
function Server:list()
  local out = {}
  for id, rec in self.registry:each() do
    out[#out + 1] = { id = id, public = rec.public, private = msg.split_list(rec.private), key = auth.hex(rec.key) }
  end
  table.sort(out, function(x, y) return x.id < y.id end)
  return out
end

--- The record of id ({id, public, private = {...}, ip, port, expires,
-- key}; a copy) or nil.
function Server:lookup(id)
  local rec = self.registry:get(id)
  return rec and view(rec)
end

--- The server's public key, as hex (peers may pin it: server_key).
function Server:key()
  return auth.hex(self.keys.pk)
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
-- (s), max_peers, max_per_socket, max_per_ip, intro_rate, intro_burst,
-- stun_rate, software, alternate ("ip2[:port2]": answer RFC 5780 NAT
-- discovery as natpunch.stunserver does), secret (deployment secret:
-- registrations need a token), key_file (the server's key seed, created if
-- missing), allow (address classes passed on anyway, see
-- natpunch.candidates), on_register(info), on_connect(from, to),
-- on_event(ev); redis ("redis://IP:PORT": share the registry with other
-- servers), server_id, redis_prefix, on_log(text); tcp (false: no STUNT server on
-- the same port).  Returns the server, or nil, message, code.
-- Every key natpunch.rendezvous{} accepts; any other raises.
local KNOWN = { "on_register", "on_connect", "on_event", "reuseaddr", "alternate", "redis", "server_id",
  "redis_prefix", "on_log", "reuseport", "allow", "key_file", "secret", "seed", "stun_rate",
  "turn", "turn_secret", "tcp" }
for k in pairs(DEFAULTS) do KNOWN[#KNOWN + 1] = k end

function rendezvous.new(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("bad argument #1 to 'rendezvous' (table expected)", 2) end
  options.check(opts, KNOWN, "rendezvous", 2)
  local self = setmetatable({}, Server)
  for k, v in pairs(DEFAULTS) do self[k] = opts[k] == nil and v or opts[k] end
  if type(self.ttl) ~= "number" or self.ttl <= 0 then error("rendezvous: ttl must be a positive number", 2) end
  local ip, port = addr.check(self.listen, "rendezvous: listen", 2)
  if opts.redis ~= nil then
    local ok, why = registry_redis.parse_url(opts.redis)
    if not ok then error("rendezvous: " .. why, 2) end
  end
  self.on_register, self.on_connect, self.on_event = opts.on_register, opts.on_connect, opts.on_event
  -- STUN answers per second per source ip (nil: unlimited, answered in C)
  self.stun_rate = opts.stun_rate
  if opts.turn ~= nil then
    local tip, tport = addr.parse(tostring(opts.turn))
    if not tip then error("rendezvous: turn: " .. tostring(tport), 2) end
    if type(opts.turn_secret) ~= "string" or opts.turn_secret == "" then
      error("rendezvous: turn needs turn_secret (the TURN server's static-auth-secret)", 2)
    end
    self.turn, self.turn_secret = addr.format(tip, tport), opts.turn_secret
  end
  if self.stun_rate ~= nil and (type(self.stun_rate) ~= "number" or self.stun_rate <= 0) then
    error("rendezvous: stun_rate must be a positive number", 2)
  end
  self.registry = registry.new()
  self.opaque = {}    -- id -> the peer's opaque m.* fields (msg.opaque), passed through into introductions
  self.sec, self.per_socket, self.per_ip = {}, {}, {}
  self.counters = { registrations = 0, introductions = 0, reintroductions = 0, errors = 0, malformed = 0,
    dropped = 0, replies_suppressed = 0, cookies = 0, bad_mac = 0, replayed = 0, wrong_source = 0,
    id_taken = 0, quota = 0, rate_limited = 0, candidates_dropped = 0, internal_errors = 0,
    stun_limited = 0, kx_limited = 0, opaque_dropped = 0, remote_introductions = 0, remote_unknown = 0,
    reports = 0, reports_refused = 0 }
  self.reports = metrics.new()
  self.reports:counter("natpunch_punch_total", "Punch outcomes reported by the peers that asked for an introduction,"
    .. " by method, outcome and the two peers' NAT classes")
  self.reports:histogram("natpunch_setup_ms", "Setup time reported by the peers that connected (ms), by method",
    metrics.SETUP_BUCKETS)
  -- security (docs/SECURITY.md): the server's key pair, the cookie secret
  -- (never leaves the process), an optional deployment secret for tokens
  if opts.key_file then
    local kp, kerr = auth.load_key(opts.key_file, true)
    if not kp then error("rendezvous: " .. kerr, 2) end
    self.keys = kp
  else
    self.keys = auth.keypair(opts.seed)
  end
  self.secret = opts.secret
  self.cookie_secret = core.crypto.random(32)
  self.cookie_lifetime = math.max(60, 2 * self.ttl)
  self.seq = auth.sequence()
  self.policy = candidates.policy{ allow = opts.allow }
  local lo = { "loopback" }
  for _, c in ipairs(opts.allow or {}) do lo[#lo + 1] = c end
  self.loopback_policy = candidates.policy{ allow = lo }
  if self.stun_rate then self.stun_limiter = auth.limiter(self.stun_rate, math.max(1, self.stun_rate), STUN_SOURCES) end
  self.kx_limiter = auth.limiter(self.kx_rate, self.kx_burst, STUN_SOURCES)
  self.kx_cache, self.kx_cached = {}, 0
  self.claiming = {}   -- ids whose registration waits for Redis's claim
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
    self.udp:stun_server(not self.stun_rate, self.software)
  end
  self.udp:recv_start(function(...) self:_on_packet(...) end)
  self.sweeper = core.timer()
  self.sweep_every = math.max(100, math.min(self.ttl * 250, 5000))
  self.sweeper:start(self.sweep_every, self.sweep_every, function() self:_sweep() end)
  return self
end

return setmetatable(rendezvous, { __call = function(_, opts) return rendezvous.new(opts) end })
