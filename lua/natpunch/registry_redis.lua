--- Many rendezvous servers, one registry: each server keeps its own peers in
-- its local registry (natpunch.registry: it alone holds their NAT mappings
-- and is the only one that can send to them) and mirrors them to Redis, so
-- that any server can find any peer:
--
--   np:peer:<id>   hash {srv, public, private, key}, expiring with the
--                  registration (PEXPIRE ttl; refreshed with it).  The id
--                  is bound to its key across all servers: a server writes
--                  the hash only if it holds no key or the same key (one
--                  script, so two servers cannot both win), and refuses a
--                  new registration of an id Redis holds under another key
--                  (claim)
--   np:srv:<srv>   pub/sub channel of one server: introductions it must
--                  deliver to its own peers
--
-- A server asked to connect its peer A to a peer B registered elsewhere
-- reads B's hash, answers A with B's endpoints, and publishes the other half
-- of the introduction on B's server's channel; that server sends it to B.
-- Everything goes through hiredis's asynchronous API on the loop
-- (core.redis): nothing blocks.  When Redis is down each server keeps
-- serving its own peers (lookups of others find nothing), logs it, retries,
-- and when Redis is back re-publishes every peer it holds.
local core = require "natpunch.core"
local msg = require "natpunch.msg"

local M = {}

local Shared = {}
Shared.__index = Shared

local RETRY_MIN_MS, RETRY_MAX_MS = 200, 5000
local CONNECT_TIMEOUT_MS = 2000
local RESYNC_BATCH = 1000         -- peers re-published per loop turn

-- Delete a peer's hash only if this server still owns it (the peer may have
-- moved to another server since).
local DEL_IF_OWNER = "if redis.call('hget', KEYS[1], 'srv') == ARGV[1] then "
  .. "return redis.call('del', KEYS[1]) else return 0 end"

-- Write a peer's hash unless the id is held under another key: 1 written,
-- 0 refused.  KEYS[1] the hash; ARGV key, srv, public, private, ttl (ms).
local SET_IF_KEY = "local k = redis.call('hget', KEYS[1], 'key') "
  .. "if k and k ~= ARGV[1] then return 0 end "
  .. "redis.call('hset', KEYS[1], 'key', ARGV[1], 'srv', ARGV[2], 'public', ARGV[3], 'private', ARGV[4]) "
  .. "redis.call('pexpire', KEYS[1], ARGV[5]) return 1"

--- "redis://HOST:PORT" (HOST an IP literal or localhost) -> ip, port; or
-- nil, message.
function M.parse_url(url)
  if type(url) ~= "string" then return nil, "redis URL must be a string" end
  local host, port = url:match("^redis://%[([%x:]+)%]:(%d+)/?$")
  if not host then host, port = url:match("^redis://([^:/]+):(%d+)/?$") end
  if not host then
    host = url:match("^redis://([^:/]+)/?$")
    port = host and "6379"
  end
  if not host then return nil, "invalid redis URL '" .. url .. "' (expected redis://IP:PORT)" end
  if host == "localhost" then host = "127.0.0.1" end
  if not host:match("^[%d%.]+$") and not host:find(":", 1, true) then
    return nil, "redis host must be an IP address (no name lookups on the loop): '" .. host .. "'"
  end
  port = tonumber(port)
  if port < 1 or port > 65535 then return nil, "redis port out of range in '" .. url .. "'" end
  return host, port
end

function Shared:_log(text)
  if self.log then self.log(text) end
end

function Shared:_key(id)
  return self.prefix .. "peer:" .. id
end

function Shared:_channel(srv)
  return self.prefix .. "srv:" .. srv
end

function Shared:up()
  return self.state == "up"
end

-- Both connections are gone or going: drop them and try again later.
function Shared:_down(why)
  if self.cmd then self.cmd:close(); self.cmd = nil end
  if self.sub then self.sub:close(); self.sub = nil end
  if self.closed then return end
  if self.state == "up" then
    self.counters.redis_down = self.counters.redis_down + 1
    self:_log("redis down (" .. tostring(why) .. "): serving local peers only")
  end
  self.state = "down"
  self.retry:start(self.retry_ms, 0, function() self:_connect() end)
  self.retry_ms = math.min(self.retry_ms * 2, RETRY_MAX_MS)
end

function Shared:_connect()
  if self.closed or self.cmd then return end
  self.state = "connecting"
  local ready = 0
  local function connected(err)
    if err then return self:_down(err) end
    ready = ready + 1
    if ready == 2 then self:_up() end
  end
  local lost = function(err) self:_down(err) end
  -- a server that neither answers nor refuses: give up after a while
  self.retry:start(CONNECT_TIMEOUT_MS, 0, function()
    if self.state == "connecting" then self:_down("connect timeout") end
  end)
  local cmd, err = core.redis(self.ip, self.port, { on_connect = connected, on_disconnect = lost })
  if not cmd then return self:_down(err) end
  self.cmd = cmd
  local sub
  sub, err = core.redis(self.ip, self.port, { on_connect = connected, on_disconnect = lost,
    on_message = function(_, payload, kind)
      if kind == "message" and payload then self:_on_message(payload) end
    end })
  if not sub then return self:_down(err) end
  self.sub = sub
  sub:subscribe(self:_channel(self.server_id))
end

function Shared:_up()
  self.retry:stop()
  self.state = "up"
  self.retry_ms = RETRY_MIN_MS
  self.counters.redis_up = self.counters.redis_up + 1
  self:_log("redis up at " .. self.ip .. ":" .. self.port .. " (server " .. self.server_id .. ")")
  self:_resync()
end

-- Re-publish every local peer, RESYNC_BATCH per loop turn.
function Shared:_resync()
  if not self.registry then return end
  local ids = {}
  for id in self.registry:each() do ids[#ids + 1] = id end
  local i = 1
  local function step()
    if not self:up() then return end
    local stop = math.min(#ids, i + RESYNC_BATCH - 1)
    for j = i, stop do
      local rec = self.registry:get(ids[j])
      if rec then self:publish_peer(rec) end
    end
    self.counters.resynced = self.counters.resynced + (stop - i + 1)
    i = stop + 1
    if i <= #ids then self.resync_timer:start(0, 0, step) end
  end
  step()
end

function Shared:_on_message(payload)
  local m = msg.decode(payload)
  if not m then
    self.counters.bad_messages = self.counters.bad_messages + 1
    return
  end
  if self.on_message then self.on_message(m) end
end

--- Mirror a local record to Redis (registration or refresh); not over a
-- hash that holds the id under another key (counted: conflicts; that can
-- happen only after Redis lost or expired the hash while this server
-- still held the peer, e.g. Redis down meanwhile).
function Shared:publish_peer(rec)
  if not self:up() then return false end
  local ms = math.max(1, math.floor(rec.expires - core.now()))
  self.cmd:command({ "EVAL", SET_IF_KEY, 1, self:_key(rec.id), rec.key, self.server_id, rec.public,
    rec.private, ms }, function(err, n)
    if not err and n == 0 then
      self.counters.conflicts = self.counters.conflicts + 1
      self:_log("id " .. rec.id .. " is held under another key in Redis: not published")
    end
  end)
  self.counters.published = self.counters.published + 1
  return true
end

--- Bind id to key (the peer's raw public key) in Redis before a new local
-- registration: cb(true) if Redis held no key or the same key for it (the
-- hash is written, with public, private and ttl_ms), cb(false) if another
-- key holds it (another server's peer), cb(nil, err) if Redis could not
-- answer (the registration then goes on locally, as when Redis is down).
function Shared:claim(id, key, public, private, ttl_ms, cb)
  if not self:up() then return cb(nil, "redis down") end
  self.counters.claims = self.counters.claims + 1
  local ok = self.cmd:command({ "EVAL", SET_IF_KEY, 1, self:_key(id), key, self.server_id, public, private,
    math.max(1, math.floor(ttl_ms)) }, function(err, n)
    if err then return cb(nil, err) end
    if n == 0 then
      self.counters.claims_refused = self.counters.claims_refused + 1
      return cb(false)
    end
    cb(true)
  end)
  if not ok then cb(nil, "redis down") end
end

--- A local record went away (expired or unregistered).
function Shared:forget_peer(rec)
  if not self:up() then return false end
  self.cmd:command({ "EVAL", DEL_IF_OWNER, 1, self:_key(rec.id), self.server_id })
  return true
end

--- Find a peer registered on another server: cb(record or nil, err) with
-- record = {id, srv, public, private, key, port}.  Calls cb at once with
-- nil when Redis is down.
function Shared:find(id, cb)
  if not self:up() then return cb(nil, "redis down") end
  self.counters.lookups = self.counters.lookups + 1
  local ok = self.cmd:command({ "HGETALL", self:_key(id) }, function(err, reply)
    if err or type(reply) ~= "table" or #reply == 0 then return cb(nil, err) end
    local rec = { id = id }
    for i = 1, #reply - 1, 2 do rec[reply[i]] = reply[i + 1] end
    rec.port = tonumber(tostring(rec.public):match(":(%d+)$"))
    if not rec.srv or not rec.port then return cb(nil, "bad record") end
    cb(rec)
  end)
  if not ok then cb(nil, "redis down") end
end

--- Send a control message (a table of fields) to server srv's channel.
function Shared:send(srv, fields)
  if not self:up() then return false end
  self.cmd:command({ "PUBLISH", self:_channel(srv), msg.encode(fields) })
  self.counters.sent = self.counters.sent + 1
  return true
end

--- Redis's own figures: cb({dbsize, used_memory}) (nil when down).
function Shared:info(cb)
  if not self:up() then return cb(nil) end
  self.cmd:command({ "DBSIZE" }, function(_, n)
    self.cmd:command({ "INFO", "memory" }, function(_, text)
      cb({ dbsize = n, used_memory = tonumber(tostring(text):match("used_memory:(%d+)")) })
    end)
  end)
end

function Shared:close()
  if self.closed then return end
  self.closed = true
  self.retry:close()
  self.resync_timer:close()
  if self.cmd then self.cmd:close(); self.cmd = nil end
  if self.sub then self.sub:close(); self.sub = nil end
  self.state = "closed"
end

--- opts: url ("redis://IP:PORT"), registry (the server's local one, for
-- resynchronisation), server_id (default: random), prefix ("np:"),
-- on_message(fields) (introductions for this server's peers), log(text).
-- Raises on a bad URL; connects in the background.
function M.new(opts)
  local ip, port = M.parse_url(opts.url)
  if not ip then error(port, 2) end
  local self = setmetatable({
    ip = ip, port = port, registry = opts.registry, prefix = opts.prefix or "np:",
    server_id = opts.server_id or (core.random_bytes(6):gsub(".", function(c)
      return string.format("%02x", c:byte()) end)),
    on_message = opts.on_message, log = opts.log, state = "down", retry_ms = RETRY_MIN_MS,
    retry = core.timer(), resync_timer = core.timer(),
    counters = { redis_up = 0, redis_down = 0, published = 0, lookups = 0, sent = 0, resynced = 0,
      bad_messages = 0, claims = 0, claims_refused = 0, conflicts = 0 },
  }, Shared)
  self:_connect()
  return self
end

return M
