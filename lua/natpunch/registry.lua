--- The rendezvous server's table of registered peers: O(1) lookup by id,
-- and expiry through an indexed binary min-heap on
-- the expiry time, so a sweep costs O(k log n) for the k records that are
-- due (never a walk over every peer), and a refresh O(log n).
--
--   local reg = registry.new()
--   local rec = reg:put(registry.record(id, key, "IP:PORT", port, "IP:PORT,...", expires_ms))
--   reg:refresh(rec, now_ms + ttl_ms)
--   reg:expire(now_ms, function(rec) ... end, 1000)  -- at most 1000 per call
--
-- Records are owned by the registry (see registry.record for their shape);
-- the slot `hi` is a record's place in the heap.  Nothing here does I/O: a
-- shared registry (natpunch.registry_redis) mirrors these operations to
-- Redis.
local registry = {}

local Registry = {}
Registry.__index = Registry

-- A record is an array with a metatable that names its slots (rec.id,
-- rec.public, ... read and write them), because an array of 8 slots costs
-- 128 bytes where a table of 8 named fields costs 192 (and a 9th field
-- would double it to 384).  Inside this file the slots are used directly.
local ID, KEY, PUBLIC, PRIVATE, EXPIRES, HI, LAST_INTRO, NAT = 1, 2, 3, 4, 5, 6, 7, 8
local SLOT = { id = ID, key = KEY, public = PUBLIC, private = PRIVATE, expires = EXPIRES, hi = HI,
  last_intro = LAST_INTRO, nat = NAT }
registry.FIELDS = { "id", "key", "public", "port", "private", "expires", "hi", "last_intro", "nat" }

-- "IP:PORT" / "[v6]:PORT" -> ip, port
local function split(public)
  local ip, port = public:match("^(.*):(%d+)$")
  if ip and ip:byte(1) == 91 then ip = ip:sub(2, -2) end   -- "[v6]"
  return ip, tonumber(port)
end

local Record = {}
Record.__index = function(rec, k)
  local i = SLOT[k]
  if i then
    local v = rawget(rec, i)
    if i == NAT and v == false then return nil end
    return v
  end
  if k == "port" then   -- read back from public, not kept twice
    local _, port = split(rawget(rec, PUBLIC))
    return port
  end
  return nil
end
Record.__newindex = function(rec, k, v)
  local i = SLOT[k]
  if not i then error("registry: a record has no field " .. tostring(k), 2) end
  if i == NAT and v == nil then v = false end   -- the slot stays in the array
  rawset(rec, i, v)
end
Record.__name = "natpunch.registry.record"

-- heap[i] is a record; rec[HI] == i.  The earliest expiry is heap[1].
local function swap(heap, i, j)
  local a, b = heap[i], heap[j]
  heap[i], heap[j] = b, a
  a[HI], b[HI] = j, i
end

local function up(heap, i)
  while i > 1 do
    local p = i // 2
    if heap[p][EXPIRES] <= heap[i][EXPIRES] then return end
    swap(heap, i, p)
    i = p
  end
end

local function down(heap, i)
  local n = #heap
  while true do
    local l = 2 * i
    if l > n then return end
    local m = l
    if l + 1 <= n and heap[l + 1][EXPIRES] < heap[l][EXPIRES] then m = l + 1 end
    if heap[i][EXPIRES] <= heap[m][EXPIRES] then return end
    swap(heap, i, m)
    i = m
  end
end

local function heap_remove(heap, rec)
  local i, n = rec[HI], #heap
  rec[HI] = 0
  if i == n then
    heap[n] = nil
    return
  end
  local last = heap[n]
  heap[n] = nil
  heap[i], last[HI] = last, i
  up(heap, i)
  down(heap, last[HI])
end

--- A new record: id, key (the peer's public key), public ("IP:PORT"),
-- port (that of public: read back from it, not kept), private (the
-- candidates, "IP:PORT,IP:PORT"), expires (ms).  Its slots are made in one
-- constructor, so Lua sizes the array once: id, key, public, private,
-- expires, hi (heap index), last_intro (the server's last introduction,
-- false until one) and nat (the NAT behaviour the peer discovered, nil
-- until set).  This keeps a registered peer under 512 bytes (bench/run.lua
-- measures it); more per-peer state belongs in a side table keyed by id,
-- and setting a field that is not one of these raises.
function registry.record(id, key, public, port, private, expires)
  if port ~= nil and select(2, split(public)) ~= port then
    error("registry: port " .. tostring(port) .. " is not that of " .. tostring(public), 2)
  end
  return setmetatable({ id, key, public, private, expires, 0, false, false }, Record)
end

--- The IP of a record (from its "IP:PORT" or "[IPv6]:PORT").
function registry.ip(rec)
  return (split(rec.public))
end

--- A record by id, or nil.
function Registry:get(id)
  return self.by_id[id]
end

--- Insert a new record (rec.id must not be registered yet; rec.expires set).
function Registry:put(rec)
  assert(getmetatable(rec) == Record, "registry: not a record (registry.record)")
  assert(self.by_id[rec[ID]] == nil, "registry: id already present")
  assert(type(rec[EXPIRES]) == "number", "registry: expires must be a number")
  self.by_id[rec[ID]] = rec
  self.count = self.count + 1
  local heap = self.heap
  heap[#heap + 1] = rec
  rec[HI] = #heap
  up(heap, rec[HI])
  return rec
end

--- A registered record moved to another public address (port: that of
-- public, checked).
function Registry:move(rec, public, port)
  if port ~= nil and select(2, split(public)) ~= port then
    error("registry: port " .. tostring(port) .. " is not that of " .. tostring(public), 2)
  end
  assert(self.by_id[rec[ID]] == rec, "registry: move of a record that is not registered")
  rec[PUBLIC] = public
end

--- New expiry time for a registered record (earlier or later).
function Registry:refresh(rec, expires)
  local old = rec[EXPIRES]
  rec[EXPIRES] = expires
  if expires >= old then down(self.heap, rec[HI]) else up(self.heap, rec[HI]) end
end

--- Remove a record (by record or id); returns it, or nil if absent.
function Registry:remove(rec)
  if type(rec) == "string" then rec = self.by_id[rec] end
  if not rec or self.by_id[rec.id] ~= rec then return nil end
  self.by_id[rec[ID]] = nil
  self.count = self.count - 1
  heap_remove(self.heap, rec)
  return rec
end

--- The earliest expiry time, or nil when empty.
function Registry:next_expiry()
  local top = self.heap[1]
  return top and top[EXPIRES]
end

--- Remove up to `limit` records whose expiry is <= now, earliest first,
-- calling on_expire(rec) for each after its removal.  Returns how many
-- were removed and whether more are due.
function Registry:expire(now, on_expire, limit)
  limit = limit or math.huge
  local heap, n = self.heap, 0
  while n < limit do
    local top = heap[1]
    if not top or top[EXPIRES] > now then return n, false end
    self:remove(top)
    n = n + 1
    if on_expire then on_expire(top) end
  end
  local top = heap[1]
  return n, top ~= nil and top[EXPIRES] <= now
end

--- Iterate over (id, rec) in no particular order.
function Registry:each()
  return next, self.by_id, nil
end

--- Check the heap invariant and the indexes (for specs): true or false, why.
function Registry:check()
  local heap, n = self.heap, 0
  for i, rec in ipairs(heap) do
    if rec.hi ~= i then return false, "bad index at " .. i end
    if i > 1 and heap[i // 2].expires > rec.expires then return false, "heap order at " .. i end
    if self.by_id[rec.id] ~= rec then return false, "heap record not indexed: " .. tostring(rec.id) end
    n = n + 1
  end
  if n ~= self.count then return false, "count " .. self.count .. " ~= heap size " .. n end
  return true
end

function registry.new()
  -- No index by address: nothing looks a record up by it (the server keeps
  -- its per-address quotas apart), and a second index is 25-50 bytes a peer.
  return setmetatable({ by_id = {}, heap = {}, count = 0 }, Registry)
end

return registry
