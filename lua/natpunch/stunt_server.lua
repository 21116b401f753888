--- The STUNT server (seeds 003 and 004): the TCP side of natpunch.rendezvous,
-- on the same address and port as its UDP socket.
--
-- A peer's long-lived TCP connection (its "main" connection) is its
-- registration and notification channel (XSTUNT's Log port); connect
-- requests, queries and deregistration (XSTUNT's Communication port) and the
-- exchange of both sides' details (its Control port) are message types on
-- it.  Each peer also makes two or more short probe connections; the server
-- records the source port it observes for each, so it knows whether the
-- peer's NAT preserves ports, allocates them sequentially (with a delta) or
-- at random, and predicts the port of the peer's next connection.  When one
-- peer asks for another, both get the other's public, predicted and private
-- endpoints, a shared nonce, and a wait so that their SYNs leave at the same
-- moment (from the RTTs the server measures with pings on the main
-- connections).  Each peer then reports how the attempt went, and the server
-- keeps per id: NAT behaviour for TCP, attempts, successes, failures (seed
-- 004's "use STUNT" flag), last result and reason.  It never carries the
-- peers' data.  Wire and message types: docs/PROTOCOL.md.
local core = require "natpunch.core"
local addr = require "natpunch.addr"
local proto = require "natpunch.stunt_proto"

local stunt_server = {}

local Server = {}
Server.__index = Server

local PING_EVERY_MS = 5000       -- keeps the NAT's TCP mapping alive too
local IDLE_MS = 10000            -- a connection that is not a registration closes after this
local MAIN_SILENCE_MS = 30000    -- no pong for this long: the main connection is dead
local PROBES = 2
local MAX_PROBES = 8
local MAX_DELTA = 64             -- largest port step still called "sequential"
local MAX_RECORDS_REPLY = 1000
local START_MARGIN_MS = 2        -- both sides start this much after the later one learns
local ID_PATTERN = "^[%w%-_%.@:]+$"

local function valid_id(id)
  return type(id) == "string" and #id >= 1 and #id <= 64 and id:match(ID_PATTERN) ~= nil
end

local function hex(bytes)
  return (bytes:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

function Server:_event(ev)
  if self.on_event then self.on_event(ev) end
end

function Server:_send(conn, fields)
  if conn.closed then return end
  local ok = conn.tcp:write(proto.frame(fields))
  if not ok then self:_close_conn(conn) end
end

function Server:_close_conn(conn, why)
  if conn.closed then return end
  conn.closed = true
  self.nconns = self.nconns - 1
  conn.tcp:close()
  if why then self.counters.tcp_dropped = self.counters.tcp_dropped + 1 end
  local e = conn.entry
  if e and self.peers[e.id] == e then
    self.peers[e.id] = nil
    self.count = self.count - 1
    self:_event({ event = "expired", peer = e.id, transport = "tcp" })
  end
end

--------------------------------------------------------------- records

function Server:_record(id)
  local r = self.recs[id]
  if r then return r end
  if self.nrecords >= self.max_records then return nil end
  self.nrecords = self.nrecords + 1
  r = { id = id, tcp_attempts = 0, tcp_successes = 0, tcp_failures = 0 }
  self.recs[id] = r
  return r
end

-- Port behaviour of a NAT from (local port, observed port) samples in the
-- order the connections were made: "preserving" (observed = local),
-- "sequential" (each new connection's port is the last one's + delta) or
-- "random"; and the port the next connection from the punching port is
-- predicted to get.
function stunt_server.classify(samples, main_seen)
  local preserving = true
  for _, s in ipairs(samples) do
    if s.seen ~= s["local"] then preserving = false end
  end
  if preserving then return "preserving", 0, nil end
  local n = #samples
  if n >= 2 then
    local d = samples[2].seen - samples[1].seen
    local same = d ~= 0 and math.abs(d) <= MAX_DELTA
    for i = 3, n do
      if samples[i].seen - samples[i - 1].seen ~= d then same = false end
    end
    if same then
      local p = samples[n].seen + d
      if p >= 1 and p <= 65535 then return "sequential", d, p end
    end
  end
  return "random", nil, main_seen
end

function Server:_classify(e)
  local samples = { { ["local"] = e.local_port, seen = e.port } }
  for _, s in ipairs(e.probes) do samples[#samples + 1] = s end
  local mapping, delta, port = stunt_server.classify(samples, e.port)
  e.mapping, e.delta = mapping, delta
  e.predicted = port and port ~= e.port and addr.format(e.ip, port) or nil
  local r = self:_record(e.id)
  if r then
    r.tcp_mapping, r.tcp_delta, r.predicted = mapping, delta, e.predicted or e.public
    r.public = e.public
  end
end

--------------------------------------------------------------- handlers

local H = {}

function H.register(self, conn, m)
  if not valid_id(m.id) then return self:_send(conn, { t = "error", tx = m.tx or "", reason = "invalid id" }) end
  local e = self.peers[m.id]
  if e and e.conn ~= conn then
    if e.key ~= (m.key or "") then
      return self:_send(conn, { t = "error", tx = m.tx or "", reason = "id taken" })
    end
    self:_close_conn(e.conn)   -- the same peer again, from a new connection
    e = nil
  end
  if not e and self.count >= self.max_peers then
    return self:_send(conn, { t = "error", tx = m.tx or "", reason = "server full" })
  end
  local private = {}
  for item in (m.private or ""):gmatch("[^,]+") do
    if addr.parse(item) and #private < 8 then private[#private + 1] = item end
  end
  local local_port = tonumber(m["local"]) or conn.port
  if not e then
    e = { id = m.id, key = m.key or "", conn = conn, token = hex(core.random_bytes(8)), probes = {} }
    self.peers[m.id] = e
    self.count = self.count + 1
    self.counters.tcp_registrations = self.counters.tcp_registrations + 1
  end
  conn.entry, conn.kind = e, "main"
  e.ip, e.port, e.public, e.private, e.local_port = conn.ip, conn.port, conn.public, private, local_port
  self:_classify(e)
  self:_send(conn, { t = "registered", tx = m.tx or "", public = conn.public, token = e.token,
    probes = PROBES, ttl = math.floor(MAIN_SILENCE_MS / 1000) })
  self:_event({ event = "registered", peer = e.id, public = e.public, private = table.concat(private, ","),
    transport = "tcp" })
  self:_ping(e)
end

function H.probe(self, conn, m)
  local e = valid_id(m.id) and self.peers[m.id]
  if not e or e.token ~= m.token then
    return self:_send(conn, { t = "error", tx = m.tx or "", reason = "unknown registration" })
  end
  conn.kind = "probe"
  if #e.probes >= MAX_PROBES then table.remove(e.probes, 1) end
  e.probes[#e.probes + 1] = { ["local"] = tonumber(m["local"]) or -1, seen = conn.port }
  self:_classify(e)
  self:_send(conn, { t = "probed", tx = m.tx or "", public = conn.public, mapping = e.mapping,
    predicted = e.predicted or e.public })
  if #e.probes >= PROBES then
    self:_event({ event = "nat", peer = e.id, mapping = e.mapping, delta = e.delta,
      predicted = e.predicted or e.public })
  end
end

function Server:_ping(e)
  self.ping_seq = self.ping_seq + 1
  e.ping_n, e.ping_at = tostring(self.ping_seq), core.now()
  self:_send(e.conn, { t = "ping", n = e.ping_n })
end

function H.pong(_, conn, m)
  local e = conn.entry
  if not e or conn.kind ~= "main" or m.n ~= e.ping_n then return end
  local rtt = core.now() - e.ping_at
  e.rtt = e.rtt and (e.rtt * 3 + rtt) / 4 or rtt   -- smoothed, as RFC 6298's SRTT
  e.heard = core.now()
  e.ping_n = nil
end

local function candidates_of(e)
  return { public = e.public, predicted = e.predicted or "", private = table.concat(e.private, ",") }
end

function H.connect(self, conn, m)
  local a = conn.kind == "main" and conn.entry
  if not a then return self:_send(conn, { t = "error", tx = m.tx or "", reason = "not registered" }) end
  local b = valid_id(m.target) and self.peers[m.target]
  if not b then
    return self:_send(conn, { t = "error", tx = m.tx or "", reason = "unknown peer '" .. tostring(m.target) .. "'" })
  end
  if a == b then return self:_send(conn, { t = "error", tx = m.tx or "", reason = "cannot connect to yourself" }) end
  if self.on_connect then
    local ok, reason = self.on_connect(a, b)
    if ok == false then return self:_send(conn, { t = "error", tx = m.tx or "", reason = reason or "denied" }) end
  end
  local nonce = hex(core.random_bytes(8))
  -- Both introductions leave now; a's arrives after rtt_a/2, b's after
  -- rtt_b/2.  Each side waits so that both start when the later one has
  -- its introduction (DCUtR's timing, with the server's RTTs).
  local ra, rb = a.rtt or 0, b.rtt or 0
  local late = math.max(ra, rb) / 2
  local wait_a = math.floor(late - ra / 2 + START_MARGIN_MS)
  local wait_b = math.floor(late - rb / 2 + START_MARGIN_MS)
  local cb = candidates_of(b)
  local ca = candidates_of(a)
  self:_send(b.conn, { t = "introduce", peer = a.id, public = ca.public, predicted = ca.predicted,
    private = ca.private, nonce = nonce, role = "accept", wait_ms = wait_b, mapping = a.mapping or "" })
  self:_send(conn, { t = "introduce", tx = m.tx or "", peer = b.id, public = cb.public,
    predicted = cb.predicted, private = cb.private, nonce = nonce, role = "connect", wait_ms = wait_a,
    mapping = b.mapping or "" })
  self.intros[nonce] = { a = a.id, b = b.id, at = core.now(), reported = {} }
  self.nintros = self.nintros + 1
  for _, id in ipairs({ a.id, b.id }) do
    local r = self:_record(id)
    if r then r.tcp_attempts = r.tcp_attempts + 1 end
  end
  self.counters.tcp_introductions = self.counters.tcp_introductions + 1
  self:_event({ event = "introduced", from = a.id, to = b.id, nonce = nonce, transport = "tcp" })
end

-- A peer starts an attempt it was introduced for elsewhere (natpunch.peer's
-- tcp method, after the rendezvous's UDP introduction): nonce, with (the
-- other id).  Counted like an introduction here, so its result is recorded.
function H.attempt(self, conn, m)
  local e = conn.kind == "main" and conn.entry
  if not e or type(m.nonce) ~= "string" or not m.nonce:match("^%x+$") or #m.nonce ~= 16
      or not valid_id(m.with) then
    return
  end
  local intro = self.intros[m.nonce]
  if not intro then
    if self.nintros >= self.max_peers * 4 then return end   -- bounded
    intro = { a = e.id, b = m.with, at = core.now(), reported = {}, counted = {} }
    self.intros[m.nonce] = intro
    self.nintros = self.nintros + 1
  end
  if (intro.a ~= e.id and intro.b ~= e.id) or (intro.counted and intro.counted[e.id]) then return end
  if intro.counted then intro.counted[e.id] = true end
  local r = self:_record(e.id)
  if r then r.tcp_attempts = r.tcp_attempts + 1 end
end

-- A peer's own outcome of an introduction: ok = "1" or "0", reason.
function H.result(self, conn, m)
  local e = conn.kind == "main" and conn.entry
  local intro = e and self.intros[m.nonce or ""]
  if not intro or (intro.a ~= e.id and intro.b ~= e.id) or intro.reported[e.id] then return end
  intro.reported[e.id] = true
  local r = self:_record(e.id)
  if not r then return end
  local ok = m.ok == "1"
  if ok then r.tcp_successes = r.tcp_successes + 1 else r.tcp_failures = r.tcp_failures + 1 end
  r.last = ok and "ok" or "failed"
  r.reason = (not ok) and (m.reason or "failed"):sub(1, 200) or nil
  r.path = ok and m.path or nil
  r.peer = intro.a == e.id and intro.b or intro.a
  r.at = os.time()
  r.use_stunt = r.tcp_successes > 0
  self:_event({ event = "tcp_result", peer = e.id, with = r.peer, result = r.last, reason = r.reason })
  -- one side gave up: tell the other, which may still be trying
  local other = self.peers[r.peer]
  if not ok and other and not intro.reported[r.peer] then
    self:_send(other.conn, { t = "abort", nonce = m.nonce, peer = e.id, reason = r.reason })
  end
end

function H.query(self, conn, m)
  local list = self:records(m.id ~= "" and m.id or nil)
  for i, r in ipairs(list) do
    if i > MAX_RECORDS_REPLY then break end
    local f = { t = "record", tx = m.tx or "" }
    for k, v in pairs(r) do f[k] = v end
    self:_send(conn, f)
  end
  if conn.kind == nil then conn.kind = "query" end
  self:_send(conn, { t = "records_end", tx = m.tx or "", n = math.min(#list, MAX_RECORDS_REPLY) })
end

function H.unregister(self, conn, m)
  if conn.kind == "main" and conn.entry and conn.entry.id == m.id then self:_close_conn(conn) end
end

--------------------------------------------------------------- connections

function Server:_on_data(conn, _, chunk)
  if conn.closed then return end
  if not chunk then return self:_close_conn(conn) end
  self.counters.tcp_bytes_in = self.counters.tcp_bytes_in + #chunk
  local msgs, perr = conn.reader:feed(chunk)
  if not msgs then
    self.counters.tcp_malformed = self.counters.tcp_malformed + 1
    return self:_close_conn(conn, perr)
  end
  conn.heard = core.now()
  for _, m in ipairs(msgs) do
    local h = H[m.t]
    if h then h(self, conn, m) else self.counters.tcp_malformed = self.counters.tcp_malformed + 1 end
    if conn.closed then return end
  end
end

function Server:_on_connection(err)
  if err or self.closed then return end
  local tcp = self.tcp:accept()
  if not tcp then return end
  if self.nconns >= self.max_conns then
    self.counters.tcp_refused = self.counters.tcp_refused + 1
    tcp:close()
    return
  end
  local ip, port = tcp:getpeername()
  if not ip then
    tcp:close()
    return
  end
  local conn = { tcp = tcp, ip = ip, port = port, public = addr.format(ip, port),
    reader = proto.reader(), opened = core.now(), heard = core.now() }
  self.nconns = self.nconns + 1
  self.conns[conn] = true
  tcp:nodelay(true)
  tcp:read_start(function(e, c) self:_on_data(conn, e, c) end)
end

function Server:_sweep()
  local now = core.now()
  for conn in pairs(self.conns) do
    if conn.closed then
      self.conns[conn] = nil
    elseif conn.kind ~= "main" then
      if now - conn.opened > IDLE_MS then self:_close_conn(conn) end
    elseif now - (conn.entry.heard or conn.opened) > MAIN_SILENCE_MS then
      self:_close_conn(conn, "silent")
    elseif now - (conn.entry.ping_at or 0) >= PING_EVERY_MS then
      self:_ping(conn.entry)
    end
  end
  for nonce, intro in pairs(self.intros) do
    if now - intro.at > 60000 then
      self.intros[nonce] = nil
      self.nintros = self.nintros - 1
    end
  end
end

--- Records per id (seed 004): a list sorted by id, or the one for id.
-- Fields: id, tcp_mapping ("preserving" | "sequential" | "random"),
-- tcp_delta, public, predicted, tcp_attempts, tcp_successes, tcp_failures,
-- use_stunt, last ("ok" | "failed"), reason, path, peer, at (Unix time).
function Server:records(id)
  local out = {}
  local function copy(r)
    local c = {}
    for k, v in pairs(r) do c[k] = v end
    return c
  end
  if id then
    if self.recs[id] then out[1] = copy(self.recs[id]) end
    return out
  end
  for _, r in pairs(self.recs) do out[#out + 1] = copy(r) end
  table.sort(out, function(x, y) return x.id < y.id end)
  return out
end

function Server:list()
  local out = {}
  for id, e in pairs(self.peers) do
    out[#out + 1] = { id = id, public = e.public, private = e.private, mapping = e.mapping,
      predicted = e.predicted, rtt_ms = e.rtt }
  end
  table.sort(out, function(x, y) return x.id < y.id end)
  return out
end

function Server:close()
  if self.closed then return end
  self.closed = true
  self.sweeper:close()
  self.tcp:close()
  for conn in pairs(self.conns) do self:_close_conn(conn) end
end

--- Listen on ip:port (TCP).  opts: max_peers, on_event(ev), on_connect(a, b),
-- reuseaddr.  Returns the server, or nil, message, code.
function stunt_server.new(ip, port, opts)
  opts = opts or {}
  local self = setmetatable({
    peers = {}, count = 0, conns = {}, nconns = 0, recs = {}, nrecords = 0,
    intros = {}, nintros = 0, ping_seq = 0,
    max_peers = opts.max_peers or 10000, on_event = opts.on_event, on_connect = opts.on_connect,
    counters = { tcp_registrations = 0, tcp_introductions = 0, tcp_dropped = 0, tcp_refused = 0,
      tcp_bytes_in = 0, tcp_malformed = 0 },
  }, Server)
  self.max_conns = self.max_peers + 256
  self.max_records = self.max_peers * 2
  self.tcp = core.tcp()
  local ok, err, code = self.tcp:bind(ip, port, { reuseaddr = true })
  if ok then ok, err, code = self.tcp:listen(128, function(e) self:_on_connection(e) end) end
  if not ok then
    self.tcp:close()
    return nil, err, code
  end
  self.sweeper = core.timer()
  self.sweeper:start(1000, 1000, function() self:_sweep() end)
  return self
end

return stunt_server
