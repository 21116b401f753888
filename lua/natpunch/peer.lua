--- A peer: registers with a rendezvous server,
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
local choose = require "natpunch.method.choose"
local options = require "natpunch.options"
local auth = require "natpunch.auth"
local server_set = require "natpunch.servers"
local upgrade = require "natpunch.upgrade"
local interfaces = require "natpunch.interfaces"
local fallback = require "natpunch.fallback"

local peer = {}

local Peer = {}
Peer.__index = Peer

local Session = {}
Session.__index = Session

local DEFAULTS = {
  register_timeout = 5,    -- seconds a registration (or refresh) waits for its server
  server_timeout = 0.5,    -- seconds a connect waits for a server before trying the next too (0: all at once)
  connect_timeout = 10,    -- seconds for introduction + punching
  touch_timeout = 10,
  rto = 0.2,               -- first control retransmission (s), doubled each time
  refresh = nil,           -- re-register period (s); default ttl/3
  discover = false,        -- run NAT discovery (natpunch.discover) first; the registration carries it
  keepalive = false,       -- "auto": refresh period from a measured mapping lifetime (natpunch.keepalive)
  keepalive_server = false, -- keepalive-daemon "ip:port" (default: the server's IP, port 3490)
  keepalive_max = 120,     -- longest mapping lifetime tried (s)
  upgrade = 120,           -- s a relayed session goes on punching for a direct path (0: never)
  fallback = 2,            -- s of silence (touches in flight) before a direct session moves to the relay (0: never)
  report = true,           -- tell the server how each connect ended (its punch metrics)
}

local function now() return core.now() end

local REPEAT_FIRST, REPEAT_MAX = 0.5, 2   -- seconds between repeated connects while punching
local EARLY_MAX = 64             -- packets kept from a session not set up yet
local EARLY_MAX_AGE_MS = 5000
local INTRO_KEEP_MS = 60000      -- introductions are remembered (retransmissions) this long
local INTRO_MAX = 256            -- and at most this many
local DATA_WINDOW = 4096         -- replay window of a session's encrypted messages
local SEAL_OVERHEAD = 8 + 16     -- counter + Poly1305 tag

function Peer:_emit(ev)
  if self.on_event then self.on_event(ev) end
end

-- What the peer is doing, for `natpunch peer -v`: only with opts.verbose.
function Peer:_trace(ev)
  if self.verbose and self.on_event then self.on_event(ev) end
end

-- The fields of a register request: our private candidates, and what our
-- methods (and p:advertise) tell peers introduced to us, as opaque
-- "m.NAMESPACE.KEY" fields the rendezvous passes through (PROTOCOL.md).
function Peer:_register_fields(e)
  e = e or self:_server_entry()
  local token = self.token
  if not token and self.secret then
    token = auth.mint_token(self.secret, self.id, os.time() + self.token_lifetime)
  end
  -- our key (docs/SECURITY.md), then extra candidates first, then gathered ones
  local private = { table.unpack(self.extra_candidates) }
  for _, c in ipairs(candidates.gather(self.udp, e.ip, self.family == nil and "both" or nil)) do
    if #private >= candidates.MAX_PRIVATE then break end
    private[#private + 1] = c
  end
  -- each_interface: the sockets per interface address, and their mappings
  for _, c in ipairs(interfaces.candidates(self.ifaces or {})) do
    if #private >= candidates.MAX_PRIVATE then break end
    private[#private + 1] = c
  end
  local f = { t = "register", id = self.id, pk = self.keys.pk, token = token,
    plain = self.encrypt == false and "1" or nil, private = table.concat(private, ","), nat = self.nat_code,
    alloc = self.alloc_code }
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

-- The bytes of one transmission of a request to server entry e
-- (natpunch.servers): a registration carries that server's last cookie;
-- once its key is known, every message is MACed with a fresh sequence
-- number (so a retransmission is not a replay).
function Peer:_encode_request(fields, pad, e)
  e = e or self:_server_entry()
  local f = {}
  for k, v in pairs(fields) do f[k] = v end
  if f.t == "register" then f.cookie = e.cookie end
  if e.ctl_key then auth.seal(e.ctl_key, "p", f, self.seq()) end
  return msg.encode(f, pad or msg.MIN_REQUEST)
end

-- A cookie reply from server entry e: its key and a cookie for our
-- address.  With server_key pinned, another key is refused.
function Peer:_take_cookie(reply, e)
  local pk = reply.key
  if type(pk) ~= "string" or #pk ~= auth.KEY_LEN or type(reply.cookie) ~= "string" then
    return nil, "bad cookie reply"
  end
  local pin = self.pins[e.index] or self.server_key
  if pin and not core.crypto.equal(pin, pk) then
    return nil, "server key mismatch (pinned " .. auth.hex(pin):sub(1, 16) .. "..., the server sent "
      .. auth.hex(pk):sub(1, 16) .. "...)"
  end
  if pk ~= e.pk then
    local k, err = auth.shared(self.keys, pk, "natpunch-control")
    if not k then return nil, err end
    e.pk, e.ctl_key, e.window = pk, k, auth.window()
  end
  e.cookie = reply.cookie
  return true
end

-- The server a request goes to by default: the primary (the first one up),
-- else the first of the list.
function Peer:_server_entry()
  return self.srvset:primary() or self.srvset.list[1]
end

-- Send a control request, retransmitting with back-off until the reply
-- with the same tx arrives or the deadline passes; tx is random, so an
-- off-path host cannot answer for a server.  targets: server entries in
-- order (default: the primary).  The request goes to the first; each
-- server_timeout without an answer, the silent ones are marked down and
-- the next target is asked too (server_timeout 0: all at once); an error
-- answer moves on to the next at once.  The first reply wins.  Returns
-- reply, entry or nil, reason.
function Peer:_request(fields, timeout, pad, targets)
  targets = targets or { self:_server_entry() }
  local tx = auth.hex(core.crypto.random(6))
  fields.tx = tx
  local t0 = now()
  local deadline = t0 + timeout * 1000
  local hedge_ms = self.server_timeout * 1000
  local rto = self.rto
  local reply, from, err
  local attempt = 0
  local cookies = 0
  local active, errors, nerr, first_error = 0, {}, 0, nil
  local next_hedge = math.huge
  local function widen()
    active = active + 1
    if active < #targets then next_hedge = now() + hedge_ms else next_hedge = math.huge end
  end
  widen()
  while active < #targets and hedge_ms <= 0 do widen() end
  while true do
    local fut = sched.future()
    self.pending[tx] = fut
    for i = 1, active do
      local e = targets[i]
      if not errors[e] then
        local ok, serr = self:_send_control(e, fields, pad)
        if not ok then err = serr end
      end
    end
    if err and #targets == 1 then break end
    err = nil
    attempt = attempt + 1
    if attempt > 1 then
      self:_trace({ event = "retransmit", server = targets[1].addr, request = fields.t, attempt = attempt,
        servers = active > 1 and active or nil })
    end
    local left = (deadline - now()) / 1000
    if left <= 0 then err = "timeout" break end
    local wait_until = math.min(now() + math.min(rto, left) * 1000, next_hedge)
    local resend = false
    while true do
      local r, e = fut:wait(math.max(0.001, (wait_until - now()) / 1000))
      if r and r.t == "cookie" and fields.t == "register" then
        -- a new cookie (or server key): send again at once with it; the
        -- same one again answers an earlier transmission: keep waiting
        local fresh = r.cookie ~= e.cookie or r.key ~= e.pk
        local cok, cerr = self:_take_cookie(r, e)
        if not cok then err = cerr break end
        if fresh then
          cookies = cookies + 1
          if cookies > 8 then err = "server keeps asking for a cookie" break end
          resend = true
          break
        end
      elseif r and r.t == "error" and #targets > 1 then
        -- this server cannot help (the target registered elsewhere, say):
        -- the next one is asked at once; the first error is the answer
        -- once every server has given one
        if not errors[e] then
          errors[e] = true
          nerr = nerr + 1
          first_error = first_error or r
        end
        if nerr >= #targets then reply = first_error break end
        if nerr >= active then
          widen()
          resend = true
          break
        end
      elseif r then
        reply, from = r, e
        break
      elseif now() >= next_hedge then
        -- no answer from the servers asked so far within server_timeout
        for i = 1, active do
          if not errors[targets[i]] then self.srvset:down(targets[i], "no answer within server_timeout") end
        end
        widen()
        resend = true
        break
      else
        break   -- time to retransmit
      end
      fut = sched.future()
      self.pending[tx] = fut
    end
    if reply or err then break end
    if not resend then rto = math.min(rto * 2, 2) end
  end
  self.pending[tx] = nil
  if not reply then return nil, err or "timeout" end
  if reply.t == "error" then return nil, reply.reason or "error" end
  return reply, from
end

-- Send a control request (fields, padded to pad) to server entry e, from
-- the socket it is reached through (e.sock, below; the peer's own by
-- default): udp:send's results.
function Peer:_send_control(e, fields, pad)
  return (e.sock or self.udp):send(e.ip, e.port, self:_encode_request(fields, pad, e), "control")
end

-- each_interface: the socket a server is reached through (e.sock; nil:
-- the peer's own) is the one that last got an answer.  A registration
-- goes out through it; unanswered, through each interface socket in turn
-- (the default route may not reach the server), each with an equal share
-- of the timeout.  The server then records that socket's mapping, and
-- introductions, connects and refreshes go through it.
function Peer:_register_via(e, fields, timeout)
  local order = { e.sock or self.udp }
  for _, u in ipairs({ self.udp, table.unpack(interfaces.sockets(self.ifaces)) }) do
    if u ~= order[1] and not u:is_closed() then order[#order + 1] = u end
  end
  local share = math.max(1, timeout / #order)
  local reply, err
  for i, u in ipairs(order) do
    e.sock = u ~= self.udp and u or nil
    local f = {}
    for k, v in pairs(fields) do f[k] = v end
    reply, err = self:_request(f, share, nil, { e })
    -- (a send that fails, say no route that way, moves on too)
    if reply or self.closed then break end
    if i < #order then
      self:_emit({ event = "server_via", server = e.addr, reason = tostring(err),
        ["local"] = addr.format(order[i + 1]:getsockname()) })
    end
  end
  return reply, err
end

-- Register with server entry e (natpunch.servers).
function Peer:_register_at(e, timeout)
  if self.discover and not self.nat then
    -- once, against the first server asked; the others wait for it
    if self.discovering then self.discovering:wait()
    else
      self.discovering = sched.future()
      self:_discover(e)
      self.discovering:set()
    end
  end
  local gen = self.adv_gen
  -- each_interface: a refresh of the primary's registration refreshes the
  -- interface sockets' mappings too (keeping them open in their NATs)
  if self.ifaces and #self.ifaces > 0 and self.ever_registered and e == self.srvset:primary()
     and now() - (self.ifaces_mapped or 0) > 1000 then
    interfaces.map(self.ifaces, e.ip, e.port)
    self.ifaces_mapped = now()
  end
  local fields = self:_register_fields(e)
  self:_trace({ event = "trying", server = e.addr, private = fields.private })
  local reply, err
  if self.ifaces and #self.ifaces > 0 then
    reply, err = self:_register_via(e, fields, timeout)
  else
    reply, err = self:_request(fields, timeout, nil, { e })
  end
  if not reply then return nil, err end
  if type(reply.cookie) == "string" then e.cookie = reply.cookie end
  e.sent_gen = gen
  return reply
end

--- Register with every server at once (natpunch.servers); returns the
-- public endpoint seen by the first one that answers, or nil, reason once
-- none has.  Each registration is then refreshed every ttl/3; a server
-- that stops answering is reported down and registered with again.
function Peer:register()
  local e, err = self.srvset:register()
  if not e then return nil, "register failed: " .. tostring(err) end
  return self.public
end

-- The first registration of this peer's life (from natpunch.servers):
-- methods that need the server's answer before they can advertise (a
-- TURN allocation with the credentials it handed out) prepare, once.
function Peer:_first_registration(e, reply)
  if self:_prepare_methods(reply) then
    -- what we advertise changed: servers that answer a registration sent
    -- before this get it again (natpunch.servers, e.sent_gen)
    self.adv_gen = (self.adv_gen or 0) + 1
    for _, x in ipairs(self.srvset.list) do
      if x.state == "up" then self:_register_at(x, self.register_timeout) end
    end
  end
  if self.keepalive == "auto" and not self.keepalive_task then self:_measure_keepalive(e) end
end

-- NAT discovery against server entry e (it needs an alternate address:
-- natpunch rendezvous --alternate).  self.nat is the report.
function Peer:_discover(e)
  local discover = require "natpunch.discover"
  local r = discover{ server = e.addr, allocation = false }
  self.nat = r or { limited = "discovery failed" }
  self.nat_code = discover.code(r)
  self:_emit({ event = "nat", type = r and r.type, mapping = r and r.mapping, filtering = r and r.filtering,
    public = r and r.public })
end

-- keepalive = "auto": measure the mapping lifetime in the background, then
-- refresh the registration (and so the mapping) a bit faster than that.
function Peer:_measure_keepalive(e)
  self.keepalive_task = sched.spawn(function()
    local ka = require "natpunch.keepalive"
    local server = self.keepalive_server or addr.format(e.ip, 3490)
    local r, err = ka{ server = server, max = self.keepalive_max }
    if self.closed then return end
    if not r then
      return self:_emit({ event = "keepalive", reason = tostring(err), refresh_s = self.refresh })
    end
    if r.mapping_lifetime_s then self.refresh = ka.refresh_interval(r.mapping_lifetime_s, self.ttl) end
    self.keepalive_result = r
    self:_emit({ event = "keepalive", mapping_lifetime_s = r.mapping_lifetime_s, refresh_s = self.refresh })
  end)
end

-- The port allocation of our NAT (natpunch.method.choose), once, when a
-- method of ours needs it: none behind no NAT (the server saw our own
-- address), else the predict method's probe toward the server.  Sets
-- self.predict_alloc (read by predict and birthday) and self.alloc_code
-- (sent as `alloc`); true when alloc_code is new.
function Peer:_measure_alloc(reply)
  if self.predict_alloc ~= nil or not reply then return false end
  local wanted = false
  for _, name in ipairs(self.methods) do wanted = wanted or name == "predict" or name == "birthday" end
  if not wanted then return false end
  local pip, pport = addr.parse(tostring(reply.public))
  local _, lport = self.udp:getsockname()
  local own = false
  if pip and pport == lport then
    for _, a in ipairs(core.interface_addresses() or {}) do own = own or a.ip == pip end
  end
  local code
  if own then
    self.predict_alloc = false
    code = "preserving"
  else
    local a = require("natpunch.discover").probe_allocation{
      server = addr.format(self.server_ip, self.server_port) }
    self.predict_alloc = a or false
    code = choose.alloc_code(a)
  end
  self:_trace({ event = "allocation", alloc = code or "unknown" })
  if code == self.alloc_code then return false end
  self.alloc_code = code
  return true
end

-- Runs the methods' prepare(peer, reply) hooks (docs/EXTENDING.md); true
-- if one has something new to advertise.
function Peer:_prepare_methods(reply)
  -- a TURN server known (our own, or the rendezvous hands one out): with
  -- the default methods, relay comes last
  if self.default_methods and (self.turn_conf or (reply and reply.turn)) then
    local has = false
    for _, n in ipairs(self.methods) do has = has or n == "relay" end
    if not has then self.methods[#self.methods + 1] = "relay" end
  end
  local changed = self:_measure_alloc(reply)
  -- each_interface: every interface's socket learns its mapping (its NAT)
  if self.ifaces and #self.ifaces > 0 then
    if interfaces.map(self.ifaces, self.server_ip, self.server_port) then changed = true end
    self.ifaces_mapped = now()
    self:_emit({ event = "interfaces", candidates = table.concat(interfaces.candidates(self.ifaces), ",") })
  end
  for _, name in ipairs(self.methods) do
    local m = method.get(name)
    if m.prepare and m.prepare(self, reply) then changed = true end
  end
  return changed
end

--------------------------------------------------------------- sessions

-- A session wraps the link a method returned (send/touch/close).
local function new_session(self, intro, link, started)
  local s = setmetatable({
    owner = self, peer = intro.peer, link = link,
    ip = link.ip, port = link.port, remote = link.remote,
    path = link.path, transport = link.transport, method = link.method,
    family = link.ip and addr.family(link.ip) or nil,
    setup_ms = now() - started,
    inbox = {}, waiting = {}, rx_count = 0,
    key = intro.peer_key, encrypted = intro.tx_key ~= nil,
    tx_key = intro.tx_key, rx_key = intro.rx_key, tx_ctr = 0,
    rx_window = intro.tx_key and auth.window(DATA_WINDOW) or nil,
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
  -- both sides' NAT behaviour as the server recorded it (natpunch.method.choose)
  intro.alloc, intro.nat, intro.your_alloc, intro.your_nat = m.alloc, m.nat, m.your_alloc, m.your_nat
  return intro
end

-- Keys of one introduction, from X25519 between our key and the other
-- peer's (the server cannot compute them): the punch nonce and MAC key,
-- and one data key per direction (docs/SECURITY.md).
function Peer:_intro_keys(m)
  local shared, err = auth.shared(self.keys, m.pk, "natpunch-peer")
  if not shared then return nil, err end
  local raw_nonce = auth.unhex(m.nonce)
  local keys = {
    nonce = core.crypto.hash(raw_nonce, shared, 16):sub(1, 8),
    punch = auth.derive(shared, "punch" .. raw_nonce),
    touch = auth.derive(shared, "touch"),     -- per pair: the same across reconnections
  }
  if self.encrypt ~= false and m.plain ~= "1" then
    keys.tx_key = auth.derive(shared, "data" .. self.keys.pk)
    keys.rx_key = auth.derive(shared, "data" .. m.pk)
  end
  return keys
end

-- Introductions are kept for retransmissions, then forgotten.
function Peer:_prune_intros()
  local t, n = now(), 0
  for nonce, rec in pairs(self.intros) do
    if t - rec.started > INTRO_KEEP_MS and rec.done:is_set() then self.intros[nonce] = nil
    else n = n + 1 end
  end
  for key, g in pairs(self.cids) do
    if t - g.at > INTRO_KEEP_MS then self.cids[key] = nil end
  end
  return n
end

-- One connect asked of several servers (Peer:connect) carries one cid,
-- which every server passes on: introductions from different servers for
-- the same (peer, cid) are one connection.  All of them are tried (we
-- cannot know which one the other side took: the first it got), the
-- first to connect wins and the others stop at once, without a "failed";
-- one that arrives after a winner is dropped.  Returns false to drop m.
function Peer:_dedupe(m, rec)
  local cid = m.cid
  if m.role ~= "accept" or type(cid) ~= "string" or not cid:match("^%x+$") or #cid ~= 16 then return true end
  local key = m.peer .. "\0" .. cid
  local g = self.cids[key]
  if not g then
    self.cids[key] = { at = now(), recs = { rec } }
    rec.group = self.cids[key]
    return true
  end
  self.counters.intros_duplicate = self.counters.intros_duplicate + 1
  if g.won then return false end
  g.recs[#g.recs + 1] = rec
  rec.group = g
  return true
end

-- rec connected: the other introductions of its connection stop.
local function won(rec)
  local g = rec.group
  if not g then return end
  g.won = true
  for _, other in ipairs(g.recs) do
    if other ~= rec and not other.done:is_set() then
      other.superseded = true
      method.cancel(other.attempt)
      other.done:set(nil, "duplicate introduction")
    end
  end
end

-- An introduction (m) from server entry e.
function Peer:_on_introduce(m, e)
  if type(m.nonce) ~= "string" or not m.nonce:match("^%x+$") or #m.nonce ~= 16 then return end
  if self.intros[m.nonce] then return end      -- a retransmitted introduction
  if type(m.peer) ~= "string" or #m.peer > 64 then return end
  if self:_prune_intros() >= INTRO_MAX then
    self.counters.intros_dropped = self.counters.intros_dropped + 1
    return
  end
  local started = now()
  local intro = decode_intro(m)
  local rec = { msg = m, started = started, done = sched.future(), attempt = {}, server = e and e.addr }
  if not self:_dedupe(m, rec) then return end
  self.intros[m.nonce] = rec
  local keys, kerr = self:_intro_keys(m)
  if not keys then
    rec.done:set(nil, "bad peer key: " .. tostring(kerr))
    return
  end
  intro.punch_nonce, intro.punch_key, intro.touch_key = keys.nonce, keys.punch, keys.touch
  intro.tx_key, intro.rx_key, intro.peer_key = keys.tx_key, keys.rx_key, auth.hex(m.pk)
  intro.rtt_ms = e and e.rtt_ms   -- the round trip to the introducing server
  local order, budgets = choose.filter(method.order(self.methods, intro.methods, intro.role), intro,
    e and e.rtt_ms)
  rec.attempt.budget = budgets
  sched.spawn(function()
    -- the relay runs alongside the direct methods; a relayed session moves
    -- to a direct path when one appears (natpunch.upgrade)
    local later = {}
    local link, ctx, race = upgrade.race(order, self, intro, started + self.connect_timeout * 1000,
      rec.attempt, function(l, c) if later.fn then later.fn(l, c) end end)
    if rec.superseded then return end      -- another server's introduction connected
    if not link then
      rec.done:set(nil, ctx)
      if m.role == "accept" then
        self:_emit({ event = "failed", peer = m.peer, reason = ctx })
      end
      return
    end
    local s = self.by_peer[m.peer]
    if not s or s.remote ~= link.remote or s.transport ~= link.transport or s.tx_key ~= intro.tx_key then
      s = new_session(self, intro, link, started)
    end
    s.peer_nat = m.nat and require("natpunch.discover").parse_code(m.nat) or nil
    ctx:_attach(s)
    if link.route then self:_replay_early(s) end
    won(rec)
    s.server = rec.server       -- the server that introduced us
    s.setup_ms = now() - rec.started
    self:_emit({ event = "connected", peer = s.peer, remote = s.remote, path = s.path,
      transport = s.transport, method = s.method, methods = table.concat(order, ","), family = s.family,
      setup_ms = s.setup_ms, server = rec.server })
    -- a direct session moves to the relay if its path dies (natpunch.fallback)
    fallback.arm(s, intro)
    rec.done:set(s)
    s.connected_at = now()
    if race and s.path == "relay" then self:_keep_trying(s, intro, race, later) end
    if m.role == "accept" and self.on_session then self.on_session(s) end
  end)
end

-- A relayed session: the direct methods go on (race); a link they give
-- moves the session to it; when they fail, a slow punch in the
-- background goes on for `upgrade` seconds (natpunch.upgrade).
function Peer:_keep_trying(s, intro, race, later)
  s._upgrade = race
  -- upgraded, the session falls back to the relay if the direct path dies
  local function switch(l)
    if upgrade.switch(s, l) then fallback.arm(s, intro) end
  end
  local function background()
    if s.closed or self.closed or not self.upgrade or self.upgrade <= 0 then return end
    sched.spawn(function()
      local h = {}
      s._upgrade = h
      local l = upgrade.punch(self, intro, self.upgrade, h)
      if l and not s.closed then switch(l) end
    end)
  end
  function later.fn(l)
    if s.closed or self.closed then return end
    -- a link on the peer's own socket (udp, predict) can take over; one
    -- with sockets of its own (birthday) cannot carry this session
    if l and l.socket == self.udp and l.route then
      switch(l)
    else
      if l and l.close then l:close() end
      background()
    end
  end
  if race.direct_done then background() end
end

--- Connect to the peer registered under id: ask a server for an
-- introduction (the live ones in order, the next one after
-- server_timeout without an answer), punch, and return the session (or
-- nil, reason).
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
  -- (cid: the same connection for every server asked, see _dedupe)
  local cid = auth.hex(core.crypto.random(8))
  local reply, via = self:_request({ t = "connect", target = id, id = self.id, cid = cid }, timeout,
    msg.CONNECT_PAD, self.srvset:targets())
  if not reply then
    self:_emit({ event = "failed", peer = id, reason = via })
    return nil, via
  end
  if reply.t ~= "introduce" then return nil, "unexpected reply " .. tostring(reply.t) end
  self:_on_introduce(reply, via)
  local rec = self.intros[reply.nonce]
  if not rec then return nil, "bad introduction" end
  rec.started = started
  -- The other peer's introduction may have been lost: repeat the same
  -- request (same tx) while punching; the server then sends the same
  -- introduction, same nonce, to both of us again.
  local again = { t = "connect", target = id, tx = reply.tx, id = self.id, cid = cid }
  local repeater = sched.spawn(function()
    local gap = REPEAT_FIRST
    while true do
      sched.sleep(gap)
      if rec.done:is_set() or self.closed then return end
      self:_send_control(via, again, msg.CONNECT_PAD)
      gap = math.min(gap * 2, REPEAT_MAX)
    end
  end)
  local left = timeout - (now() - started) / 1000
  local s, perr = rec.done:wait(math.max(0.001, left))
  repeater:cancel()
  if not s then
    local reason = perr or "timeout"
    self:_report(via, reply.nonce, rec.attempt.last or "none", "failed")
    self:_emit({ event = "failed", peer = id, reason = reason })
    return nil, reason
  end
  s.setup_ms = now() - started
  self:_report(via, reply.nonce, s.method or "udp", "connected", s.setup_ms)
  return s
end

-- How the connect of an introduction ended, to the server that made it
-- (a `report`, MACed like every request; no reply).  Only the asking side
-- reports, once: the server counts it by method and by the two peers' NAT
-- classes (docs/PROTOCOL.md).
-- e: the server entry that introduced us (natpunch.servers).
function Peer:_report(e, nonce, name, outcome, setup_ms)
  if not self.report or self.closed or not e or not e.ctl_key then return end
  self:_send_control(e, { t = "report", id = self.id, nonce = nonce,
    method = name, outcome = outcome, setup_ms = setup_ms and math.floor(setup_ms) or nil })
end

function Peer:session(id)
  return self.by_peer[id]
end

--------------------------------------------------------------- receive

function Peer:_on_packet(err, data, ip, port, kind)
  if err then return end
  if kind == "stun" then
    -- answers of our TURN server (the relay method)
    if self.turn_client then self.turn_client:handle(data, ip, port) end
    return
  end
  if kind == "control" then
    local e = self.srvset:find(ip, port)
    if not e then
      -- a peer's word during a connect (the birthday method's nomination)
      for _, fn in pairs(self.control_watch) do if fn(data, ip, port) then return end end
      -- control traffic is only accepted from our servers
      self.counters.foreign_control = self.counters.foreign_control + 1
      return
    end
    local m = msg.decode(data)
    if not m then
      self.counters.malformed = self.counters.malformed + 1
      return
    end
    -- Only a cookie or an error may come without a MAC (both only answer
    -- a pending request, whose tx is random); everything else must carry
    -- the server's MAC with a new sequence number.
    local authed = false
    if m.mac ~= nil then
      local seq = e.ctl_key and auth.check(e.ctl_key, "s", m)
      if not seq or not e.window:accept(seq) then
        self.counters.bad_mac = self.counters.bad_mac + 1
        return
      end
      authed = true
    elseif m.t ~= "cookie" and m.t ~= "error" then
      self.counters.unauthenticated = self.counters.unauthenticated + 1
      return
    end
    local fut = m.tx and self.pending[m.tx]
    if fut then fut:set(m, e) end
    if authed and m.t == "introduce" and m.role == "accept" then self:_on_introduce(m, e) end
    return
  end
  if kind == "data" or kind == "touch" then
    local from = addr.format(ip, port)
    local s = self.sessions[from]
    if s then
      if s._fallback and fallback.is_notice(s, data, kind) then return end
      return s:_deliver(data, kind)
    end
    -- a direct session's peer that moved to the relay (natpunch.fallback)
    if self.fallbacks and fallback.input(self, from, data, kind) then return end
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

-- Encrypted messages: [counter u64][XChaCha20-Poly1305 of the payload],
-- the kind as associated data (a touch cannot be replayed as data), and
-- each counter accepted once (exactly-once beyond the touch state).
local function seal(s, data, kind)
  s.tx_ctr = s.tx_ctr + 1
  local ctr = string.pack(">I8", s.tx_ctr)
  return ctr .. core.crypto.seal(s.tx_key, ctr .. string.rep("\0", 16), data, kind)
end

local function open(s, data, kind)
  if #data < SEAL_OVERHEAD then return nil end
  local ctr = data:sub(1, 8)
  local plain = core.crypto.open(s.rx_key, ctr .. string.rep("\0", 16), data:sub(9), kind)
  if not plain then return nil end
  local n = string.unpack(">I8", ctr)
  if n < 1 or not s.rx_window:accept(n) then return nil end
  return plain
end

function Session:_deliver(data, kind)
  local owner = self.owner
  self.rx_count = self.rx_count + 1     -- what came back (natpunch.fallback watches it)
  if self.rx_key then
    data = open(self, data, kind)
    if not data then
      owner.counters.bad_data = owner.counters.bad_data + 1
      return
    end
  end
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
  return sched.wait_in(self.waiting, timeout)
end

--- Unreliable send over the session's path.
function Session:send(data)
  if type(data) ~= "string" then error("bad argument #1 to 'send' (string expected)", 2) end
  if self.closed then return nil, "session closed", "ECLOSED" end
  if self.tx_key then data = seal(self, data, "data") end
  return self.link:send(data)
end

--- Forget the session (and close what its method opened for it); later
-- packets from its address count as unknown_source.
function Session:close()
  if self.closed then return end
  self.closed = true
  local owner = self.owner
  if self._upgrade and self._upgrade.cancel then self._upgrade.cancel() end
  upgrade.forget(self)
  fallback.forget(self)
  if self.link.route and owner.sessions[self.link.route] == self then owner.sessions[self.link.route] = nil end
  if owner.by_peer[self.peer] == self then owner.by_peer[self.peer] = nil end
  self.link:close()
end
Session.__close = Session.close

--- Reliable send (a touch): waits for the acknowledgement and
-- returns the RTT in ms, or nil, reason once retransmissions are exhausted.
-- With a callback, returns at once and calls cb(err, rtt_ms) later.
function Session:touch(data, cb)
  if type(data) ~= "string" then error("bad argument #1 to 'touch' (string expected)", 2) end
  local owner = self.owner
  local function report(err, id, rtt)
    if err then owner:_emit({ event = "touch_failed", peer = self.peer, id = id, reason = err })
    else owner:_emit({ event = "touch_acked", peer = self.peer, id = id, rtt_ms = rtt }) end
  end
  if owner.closed then return nil, "closed" end
  if self.closed then return nil, "session closed", "ECLOSED" end
  if self.tx_key then data = seal(self, data, "touch") end
  local link = self.link
  -- Pending touches are remembered, so that closing the peer calls them
  -- back with "closed" (the socket's own state goes with it).
  local entry = {}
  local function done(err, id, rtt)
    if entry.called then return end
    entry.called = true
    owner.touching[entry] = nil
    report(err, id, rtt)
    if cb then cb(err, rtt) else entry.fut:set(err, rtt) end
  end
  if not cb then entry.fut = sched.future() end
  local id, err, code = link:touch(data, done)
  if not id then return nil, err, code end
  entry.id, entry.done = id, done
  owner.touching[entry] = true
  if cb then return id end
  local fut = entry.fut
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
  self.srvset:close()
  local pending = {}
  for e in pairs(self.touching) do pending[#pending + 1] = e end
  table.sort(pending, function(x, y) return x.id < y.id end)
  for _, e in ipairs(pending) do e.done("closed", e.id) end
  if self.keepalive_task then self.keepalive_task:cancel() end
  for _, rec in pairs(self.intros) do
    if not rec.done:is_set() then method.cancel(rec.attempt) end
  end
  for _, s in pairs(self.by_peer) do s:close() end
  for _, name in ipairs(self.methods) do
    local m = method.get(name)
    if m.close then m.close(self) end   -- what a method keeps per peer
  end
  for _, e in ipairs(self.srvset.list) do
    if e.state == "up" then
      self:_send_control(e, { t = "unregister", id = self.id })
    end
  end
  self.udp:close()
  interfaces.close(self.ifaces)
end
Peer.__close = Peer.close

--- Create a peer.  opts: id (required), server = "ip:port" or servers =
-- {"ip:port", ...} (registered with all at once; connects go to the live
-- ones, see server_timeout), bind = "ip:port" (default
-- wildcard, any port), on_message(session, data, kind),
-- on_session(session) for introductions we did not ask for,
-- on_event(ev), methods = { "udp", ... } (natpunch.method, tried in this
-- order) or transport = "udp" | "tcp" | "auto" | "tcp,udp" (the same as
-- methods), the timeouts of DEFAULTS, and the security options: key_file,
-- server_key, secret / token (token_lifetime), encrypt, allow, candidates
-- (docs/SECURITY.md).
-- Every key natpunch.peer{} accepts; any other raises.
local KNOWN = { "id", "server", "servers", "bind", "on_message", "on_session", "on_event",
  "reuseaddr", "reuseport", "verbose", "refresh", "methods", "allow", "candidates", "encrypt", "key_file",
  "secret", "seed", "server_key", "token", "token_lifetime", "turn", "method_budget", "transport", "dual_stack",
  "each_interface" }
for k in pairs(DEFAULTS) do KNOWN[#KNOWN + 1] = k end

function peer.new(opts)
  if type(opts) ~= "table" then error("bad argument #1 to 'peer' (table expected)", 2) end
  options.check(opts, KNOWN, "peer", 2)
  if type(opts.id) ~= "string" or opts.id == "" then error("peer: id (string) is required", 2) end
  local servers = opts.servers or { opts.server }
  if type(servers) ~= "table" or #servers == 0 then error("peer: server or servers is required", 2) end
  -- "ip:port#HEX" pins that server's public key
  local pins, plain = {}, {}
  for i, s in ipairs(servers) do
    local a, hex = tostring(s):match("^(.-)#(.*)$")
    if a then
      local pk = auth.unhex(hex)
      if not pk or #pk ~= auth.KEY_LEN then error("peer: the key after '#' in a server must be 64 hex digits", 2) end
      pins[i], s = pk, a
    end
    addr.check(s, "peer: server", 2)
    plain[i] = s
  end
  servers = plain
  local self = setmetatable({
    id = opts.id, servers = servers, server_index = 1, pins = pins,
    on_message = opts.on_message, on_session = opts.on_session, on_event = opts.on_event,
    verbose = opts.verbose and true or false, registered = false, touching = {},
    pending = {}, sessions = {}, by_peer = {}, intros = {}, cids = {}, early = {}, tx_seq = 0, advertised = {},
    methods = method.check_list(opts.methods or require("natpunch.method.tcp").methods_for(opts.transport, 2)
      or { table.unpack(choose.DEFAULT) }, "peer", 2),
    default_methods = opts.methods == nil and opts.transport == nil,
    method_budget = opts.method_budget,
    control_watch = {},   -- connect attempts' watchers of control from peers (birthday)
    counters = { malformed = 0, foreign_control = 0, unknown_source = 0, bad_mac = 0,
      unauthenticated = 0, bad_data = 0, intros_dropped = 0, intros_duplicate = 0 },
  }, Peer)
  for k, v in pairs(DEFAULTS) do
    if opts[k] ~= nil then self[k] = opts[k] else self[k] = v end
  end
  if type(self.upgrade) ~= "number" or self.upgrade < 0 then
    error("peer: upgrade must be a number of seconds (0: never)", 2)
  end
  if type(self.fallback) ~= "number" or self.fallback < 0 then
    error("peer: fallback must be a number of seconds (0: never)", 2)
  end
  -- (refresh defaults to nil, so the loop above never sees it)
  if opts.refresh ~= nil then
    if type(opts.refresh) ~= "number" or opts.refresh <= 0 then error("peer: refresh must be a positive number", 2) end
    self.refresh = opts.refresh
  end
  -- keys and policies (docs/SECURITY.md)
  if opts.key_file then
    local kp, kerr = auth.load_key(opts.key_file, true)
    if not kp then error("peer: " .. kerr, 2) end
    self.keys = kp
  else
    self.keys = auth.keypair(opts.seed)
  end
  self.seq = auth.sequence()
  if opts.server_key ~= nil then
    local pk = auth.unhex(opts.server_key)
    if not pk or #pk ~= auth.KEY_LEN then error("peer: server_key must be 64 hex digits", 2) end
    self.server_key = pk
  end
  self.token, self.secret = opts.token, opts.secret
  self.token_lifetime = opts.token_lifetime or 86400
  self.encrypt = opts.encrypt
  local allow = {}
  for _, c in ipairs(opts.allow or {}) do allow[#allow + 1] = c end
  local sip0 = addr.parse(servers[1])
  if candidates.is_loopback(sip0) then allow[#allow + 1] = "loopback" end
  self.policy = candidates.policy{ allow = allow }
  -- a TURN server for the relay method: "turn://USER:PASS@HOST:PORT" or
  -- { server =, username =, password = } (or secret =, id = for REST)
  if opts.turn ~= nil then
    local conf = opts.turn
    if type(conf) == "string" then
      local server, user, pass = require("natpunch.turn").parse_url(conf)
      if not server then error("peer: turn: " .. user, 2) end
      conf = { server = server, username = user, password = pass }
    elseif type(conf) ~= "table" or type(conf.server) ~= "string" then
      error("peer: turn must be 'turn://USER:PASS@HOST:PORT' or a table with server", 2)
    end
    self.turn_conf = conf
  end
  if opts.method_budget ~= nil and type(opts.method_budget) ~= "table" then
    error("peer: method_budget must be a table { method = seconds }", 2)
  end
  self.extra_candidates = {}
  if opts.candidates ~= nil then
    if type(opts.candidates) ~= "table" then error("peer: candidates must be a list of 'ip:port'", 2) end
    if #opts.candidates > candidates.MAX_COUNT then
      error("peer: at most " .. candidates.MAX_COUNT .. " candidates", 2)
    end
    for _, c in ipairs(opts.candidates) do
      local ip, port = candidates.check(c, self.policy)
      if not ip then error("peer: candidate " .. tostring(c) .. ": " .. tostring(port), 2) end
      self.extra_candidates[#self.extra_candidates + 1] = addr.format(ip, port)
    end
  end
  local sip, sport = addr.parse(servers[1])
  self.server_ip, self.server_port = sip, sport
  self.srvset = server_set.new(self, servers)
  -- dual_stack: one socket for both families ([::] without IPV6_V6ONLY;
  -- the C socket maps IPv4 destinations to ::ffff:a.b.c.d and back), so
  -- every method, the touch state and the registration share one port;
  -- candidates come from the interfaces of both families (docs/API.md)
  local dual = opts.dual_stack and true or false
  local bind = opts.bind or ((dual or addr.family(sip) == "inet6") and "[::]:0" or "0.0.0.0:0")
  local bip, bport = addr.check(bind, "peer: bind", 2)
  if dual and bip ~= "::" then error("peer: dual_stack needs bind = \"[::]:PORT\"", 2) end
  self.family = (not dual) and addr.family(bip) or nil   -- nil: both
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
  -- each_interface: a socket per interface address too (natpunch.interfaces),
  -- its packets handled as the main socket's
  if opts.each_interface and (bip == "0.0.0.0" or bip == "::") then
    self.ifaces = interfaces.open(addr.family(bip), function(...) self:_on_packet(...) end)
  end
  return self
end

return setmetatable(peer, { __call = function(_, opts) return peer.new(opts) end })
