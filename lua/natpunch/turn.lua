--- A TURN client (RFC 8656) on a natpunch UDP socket: allocates a relayed
-- address on a TURN server (coturn, or any RFC 8656 server), installs
-- permissions and channels, and keeps them refreshed.  Once a channel is
-- bound, the socket's relay engine (csrc/lua/np_udp_relay.c) wraps every
-- datagram toward that peer in ChannelData, so punch checks, touches and
-- data run over the relay unchanged.
--
--   natpunch.run(function()
--     local c = assert(turn.client{ udp = sock, server = "203.0.113.3:3478",
--                                   username = "alice", password = "secret" })
--     local relayed = assert(c:allocate())      -- "203.0.113.3:49152"
--     assert(c:bind("198.51.100.9", 40000))     -- permission + channel
--     sock:send("198.51.100.9", 40000, "hi")    -- leaves as ChannelData
--   end)
--
-- Credentials are long-term (RFC 8489 §9.2) or coturn's TURN REST API
-- shared secret (`secret`, `id`): username "expiry:id", password
-- base64(HMAC-SHA1(secret, username)) (turn.rest_credentials).  The owner of
-- the socket passes the STUN packets it receives to `c:handle(...)`; a
-- client that made its own socket does that itself.
local core = require "natpunch.core"
local sched = require "natpunch.sched"
local addr = require "natpunch.addr"

local turn = {}

local Client = {}
Client.__index = Client

local RTO, TRIES = 0.25, 6            -- RFC 8489 §6.2.1, shortened: ~8 s in all
local LIFETIME = 600                  -- RFC 8656 §7.2 default
local PERMISSION_REFRESH = 240        -- permissions last 300 s (RFC 8656 §9)
local CHANNEL_REFRESH = 540           -- channel bindings last 600 s (RFC 8656 §12)
local CHANNEL_FIRST, CHANNEL_LAST = 0x4000, 0x43FF   -- np_udp_relay.c's range
local MAX_CHANNELS = 16

local OPTIONS = { udp = true, server = true, username = true, password = true, secret = true,
  id = true, ttl = true, lifetime = true, software = true, on_event = true, family = true }

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

--- RFC 4648 base64 (for REST-API passwords).
function turn.base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a << 16 | (b or 0) << 8 | (c or 0)
    local keep = c and 4 or (b and 3 or 2)
    for j = 1, 4 do
      local v = n >> (6 * (4 - j)) & 63
      out[#out + 1] = j <= keep and B64:sub(v + 1, v + 1) or "="
    end
  end
  return table.concat(out)
end

--- coturn's TURN REST API credentials for `id`, valid `ttl` seconds from
-- `now_s` (default: the wall clock): username, password.
function turn.rest_credentials(secret, id, ttl, now_s)
  assert(type(secret) == "string" and secret ~= "", "turn.rest_credentials: secret expected")
  assert(type(id) == "string" and not id:find(":"), "turn.rest_credentials: id without ':' expected")
  local user = string.format("%d:%s", math.floor((now_s or os.time()) + (ttl or 86400)), id)
  return user, turn.base64(core.stun.hmac_sha1(secret, user))
end

--- Parses "turn://USER:PASS@HOST:PORT": server, username, password; or nil, message.
function turn.parse_url(url)
  local user, pass, hostport = tostring(url):match("^turn://([^:@]+):([^@]*)@(.+)$")
  if not user then return nil, "expected turn://USER:PASS@HOST:PORT, got '" .. tostring(url) .. "'" end
  local ip, port = addr.parse(hostport)
  if not ip then return nil, "turn server: " .. port end
  return addr.format(ip, port), user, pass
end

local function fail(m, what)
  local e = m.error or {}
  return nil, string.format("%s: %s %s", what, tostring(e.code or "?"), tostring(e.reason or "")),
    "ETURN" .. tostring(e.code or "")
end

function Client:_emit(ev)
  if self.on_event then self.on_event(ev) end
end

--- One request with retransmissions; the success message, or nil, message, code.
-- Adds the long-term credential attributes once a realm is known, and
-- follows 401 (first challenge) and 438 (stale nonce) once each.
function Client:_request(fields, what)
  for _ = 1, 3 do
    local msg = {}
    for k, v in pairs(fields) do msg[k] = v end
    msg.class = "request"
    if self.software then msg.software = self.software end
    if self.nonce then
      msg.username, msg.realm, msg.nonce, msg.integrity = self.username, self.realm, self.nonce, true
    end
    msg.fingerprint = true
    local bytes = core.stun.encode(msg, self.key)
    local tid = core.stun.decode(bytes).transaction_id
    local f = sched.future()
    self.pending[tid] = f
    local m
    local rto = RTO
    for _ = 1, TRIES do
      local ok, err, code = self.udp:send(self.server_ip, self.server_port, bytes)
      if not ok then
        self.pending[tid] = nil
        return nil, err, code
      end
      m = f:wait(rto)
      if m then break end
      rto = rto * 2
    end
    self.pending[tid] = nil
    if not m then return nil, what .. ": no answer from " .. self.server, "ETIMEDOUT" end
    if m.class == "success" then return m end
    local code = m.error and m.error.code
    if (code == 401 and not self.nonce or code == 438) and m.nonce then
      if not self.username then return fail(m, what) end
      self.nonce = m.nonce
      self.realm = m.realm or self.realm
      self.key = core.stun.long_term_key(self.username, self.realm or "", self.password or "")
    else
      return fail(m, what)
    end
  end
  return nil, what .. ": authentication failed", "ETURN401"
end

--- Handles a STUN packet from the socket: true if it was this client's.
function Client:handle(data, ip, port)
  if ip ~= self.server_ip or port ~= self.server_port then return false end
  local m = core.stun.decode(data)
  if not m then return false end
  if m.class == "indication" and m.method == "data" then
    -- relayed data before its channel was bound (RFC 8656 §11.6)
    local p = m.xor_peer_address
    if p and m.data and self.permitted[p.ip] then
      self.udp:relay_input(m.data, p.ip, p.port)
    end
    return true
  end
  local f = self.pending[m.transaction_id]
  if not f then return false end
  -- responses must verify once we have a key (RFC 8489 §9.2.5)
  if self.key and m.has_integrity then
    local checked = core.stun.decode(data, self.key)
    if not (checked.integrity) then return true end
  end
  f:set(m)
  return true
end

--- Allocates a relayed transport address of the client's family
-- (opts.family): relayed "ip:port", mapped "ip:port" (the client's
-- server-reflexive address); or nil, message, code.  An IPv6 relayed
-- address, or an IPv4 one from a server reached over IPv6, is asked for
-- with REQUESTED-ADDRESS-FAMILY (RFC 8656 §7.1, §18.10); a server without
-- relay addresses of that family answers 440 (code "ETURN440").
function Client:allocate()
  local req = { method = "allocate", requested_transport = 17, lifetime = self.lifetime }
  if self.family ~= "inet" or addr.family(self.server_ip) ~= "inet" then
    req.requested_address_family = self.family
  end
  local m, err, code = self:_request(req, "allocate")
  if not m then return nil, err, code end
  local r, x = m.xor_relayed_address, m.xor_mapped_address
  if not r then return nil, "allocate: no XOR-RELAYED-ADDRESS in the answer", "EPROTO" end
  if r.family ~= self.family then
    -- (RFC 8656 §7.3: the relayed address has the family asked for)
    return nil, ("allocate: asked for an %s relayed address, got %s"):format(self.family,
      addr.format(r.ip, r.port)), "EPROTO"
  end
  self.relayed = addr.format(r.ip, r.port)
  self.mapped = x and addr.format(x.ip, x.port) or nil
  self.lifetime = m.lifetime or self.lifetime
  self:_emit{ event = "relay_allocated", relayed = self.relayed, mapped = self.mapped,
    server = self.server, lifetime = self.lifetime, family = self.family }
  self:_start_refresh()
  return self.relayed, self.mapped
end

--- CreatePermission for a peer IP (RFC 8656 §9): true or nil, message, code.
-- The peer must have the relayed address's family: a TURN server relays
-- IPv4 to IPv4 and IPv6 to IPv6 only (RFC 8656 §9.1, error 443; coturn
-- likewise), so another family is refused here without asking.
function Client:permit(ip)
  if addr.family(ip) ~= self.family then
    return nil, ("create permission: peer %s is not %s like the relayed address"):format(ip, self.family),
      "ETURN443"
  end
  local m, err, code = self:_request({ method = "create_permission",
    xor_peer_address = { ip = ip, port = 0 } }, "create permission")
  if not m then return nil, err, code end
  self.permitted[ip] = true
  return true
end

--- A channel toward peer ip:port, then the socket's route: the channel
-- number, or nil, message, code.  The ChannelBind installs the permission
-- for ip as well (RFC 8656 section 12), so binding takes one round trip to
-- the server, not two.
function Client:bind(ip, port)
  local key = addr.format(ip, port)
  if self.channels[key] then return self.channels[key] end
  if self.n_channels >= MAX_CHANNELS then return nil, "bind: too many channels", "ENOSPC" end
  -- a peer unbound a while ago still has its channel on the server (until
  -- it expires), and the server refuses another number for it: reuse it
  local ch = self.unbound[key] or self.next_channel
  local m, err, code = self:_request({ method = "channel_bind", channel_number = ch,
    xor_peer_address = { ip = ip, port = port } }, "channel bind")
  if not m then return nil, err, code end
  self.permitted[ip] = true   -- installed by the ChannelBind; refreshed from now on
  if self.unbound[key] then self.unbound[key] = nil
  else self.next_channel = ch < CHANNEL_LAST and ch + 1 or CHANNEL_FIRST end
  local ok, rerr, rcode = self.udp:relay_add(ip, port, self.server_ip, self.server_port, ch)
  if not ok then return nil, rerr, rcode end
  self.channels[key] = ch
  self.n_channels = self.n_channels + 1
  return ch
end

--- Forget the channel toward peer ip:port: the socket's route goes and
-- the binding is no longer refreshed (TURN has no unbind: it expires on
-- the server, RFC 8656 §12).  true if there was one.
function Client:unbind(ip, port)
  local key = addr.format(ip, port)
  if not self.channels[key] then return false end
  self.unbound[key] = self.channels[key]
  self.channels[key] = nil
  self.n_channels = self.n_channels - 1
  if not self.udp:is_closed() then self.udp:relay_remove(ip, port) end
  return true
end

function Client:_start_refresh()
  if self.refresher then return end
  self.refresher = sched.spawn(function()
    local since_perm, since_chan = 0, 0
    local step = math.max(5, math.min(PERMISSION_REFRESH, math.floor(self.lifetime / 2)))
    while not self.closed do
      sched.sleep(step)
      if self.closed then break end
      since_perm, since_chan = since_perm + step, since_chan + step
      local ok, err = self:_request({ method = "refresh", lifetime = self.lifetime }, "refresh")
      if not ok then self:_emit{ event = "relay_refresh_failed", server = self.server, reason = err } end
      if since_perm >= PERMISSION_REFRESH then
        since_perm = 0
        for ip in pairs(self.permitted) do self:permit(ip) end
      end
      if since_chan >= CHANNEL_REFRESH then
        since_chan = 0
        for key, ch in pairs(self.channels) do
          local ip, port = addr.parse(key)
          self:_request({ method = "channel_bind", channel_number = ch,
            xor_peer_address = { ip = ip, port = port } }, "channel refresh")
        end
      end
    end
  end)
end

--- Releases the allocation (Refresh with lifetime 0, in a task) and the
-- socket's routes; closes the socket if the client made it.
function Client:close()
  if self.closed then return end
  self.closed = true
  if self.refresher then self.refresher:cancel() end
  for key in pairs(self.channels) do
    local ip, port = addr.parse(key)
    if not self.udp:is_closed() then self.udp:relay_remove(ip, port) end
  end
  self.channels = {}
  if self.relayed and sched.current() and not self.udp:is_closed() then
    self:_request({ method = "refresh", lifetime = 0 }, "release")
  end
  if self.own_udp then self.udp:close() end
end
Client.__close = Client.close
Client.__gc = function(self) if self.own_udp and not self.closed then self.udp:close() end end

--- A client for TURN server opts.server ("ip:port").  opts.udp: the socket to
-- allocate from (its owner passes STUN packets to handle); without it the
-- client binds its own.  Credentials: username + password, or secret + id
-- (REST API, opts.ttl seconds, default 86400).  opts.lifetime (s, default
-- 600), opts.software, opts.on_event(ev), opts.family: "inet" or "inet6",
-- the family of the relayed address to allocate (default: the server's).
function turn.client(opts)
  assert(type(opts) == "table", "turn.client: options table expected")
  for k in pairs(opts) do
    if not OPTIONS[k] then error("turn.client: unknown option '" .. tostring(k) .. "'", 2) end
  end
  local ip, port = addr.parse(opts.server or "")
  if not ip then error("turn.client: server: " .. tostring(port), 2) end
  local family = opts.family or addr.family(ip)
  if family ~= "inet" and family ~= "inet6" then
    error("turn.client: family: \"inet\" or \"inet6\" expected, got " .. tostring(opts.family), 2)
  end
  local self = setmetatable({ server = addr.format(ip, port), server_ip = ip, server_port = port,
    family = family,
    lifetime = opts.lifetime or LIFETIME, software = opts.software, on_event = opts.on_event,
    pending = {}, permitted = {}, channels = {}, unbound = {}, n_channels = 0, next_channel = CHANNEL_FIRST },
    Client)
  if opts.secret then
    assert(opts.id, "turn.client: secret needs id")
    self.username, self.password = turn.rest_credentials(opts.secret, opts.id, opts.ttl)
  else
    self.username, self.password = opts.username, opts.password
  end
  if opts.udp then
    self.udp = opts.udp
  else
    local u = core.udp()
    local ok, err, code = u:bind(addr.family(ip) == "inet6" and "::" or "0.0.0.0", 0)
    if not ok then
      u:close()
      return nil, err, code
    end
    self.udp, self.own_udp = u, true
    u:recv_start(function(e, data, rip, rport, kind)
      if not e and kind == "stun" then self:handle(data, rip, rport) end
    end)
  end
  return self
end

return turn
