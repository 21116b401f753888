--- The rendezvous server's table of registered peers: O(1) lookup by id
-- and by public address, and expiry through an indexed binary min-heap on
-- the expiry time, so a sweep costs O(k log n) for the k records that are
-- due (never a walk over every peer), and a refresh O(log n).
--
--   local reg = registry.new()
--   local rec = reg:put(registry.record(id, key, "IP:PORT", port, "IP:PORT,...", expires_ms))
--   reg:refresh(rec, now_ms + ttl_ms)
--   reg:expire(now_ms, function(rec) ... end, 1000)  -- at most 1000 per call
--
-- Records are plain tables owned by the registry; the field `hi` is the
-- record's place in the heap.  Nothing here does I/O: a shared
-- registry (natpunch.registry_redis) mirrors these operations to Redis.
local registry = {}

local Registry = {}
Registry.__index = Registry

-- heap[i] is a record; rec.hi == i.  The earliest expiry is heap[1].
local function swap(heap, i, j)
  local a, b = heap[i], heap[j]
  heap[i], heap[j] = b, a
  a.hi, b.hi = j, i
end

local function up(heap, i)
  while i > 1 do
    local p = i // 2
    if heap[p].expires <= heap[i].expires then return end
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
    if l + 1 <= n and heap[l + 1].expires < heap[l].expires then m = l + 1 end
    if heap[i].expires <= heap[m].expires then return end
    swap(heap, i, m)
    i = m
  end
end

local function heap_remove(heap, rec)
  local i, n = rec.hi, #heap
  rec.hi = nil
  if i == n then
    heap[n] = nil
    return
  end
  local last = heap[n]
  heap[n] = nil
  heap[i], last.hi = last, i
  up(heap, i)
  down(heap, last.hi)
end

--- A new record.  Every field is set in one constructor, so Lua sizes
-- the table once, at 8 slots: id, key, public ("IP:PORT"), port, private
-- (the candidates, "IP:PORT,IP:PORT"), expires (ms), hi (heap index) and
-- last_intro (the server's last introduction, false until one).  The IP is
-- read back from `public` (registry.ip) rather than kept twice.  This keeps
-- a registered peer under 512 bytes (bench/run.lua measures it); more
-- per-peer state belongs in a side table keyed by id, not in the record,
-- because a 9th field doubles the table.
function registry.record(id, key, public, port, private, expires)
  return { id = id, key = key, public = public, port = port, private = private,
    expires = expires, hi = 0, last_intro = false }
end

--- The IP of a record (from its "IP:PORT" or "[IPv6]:PORT").
function registry.ip(rec)
  local public = rec.public
  local ip = public:sub(1, #public - #tostring(rec.port) - 1)
  if ip:byte(1) == 91 then ip = ip:sub(2, -2) end   -- "[v6]"
  return ip
end

--- A record by id, or nil.
function Registry:get(id)
  return self.by_id[id]
end

--- The record registered from public address "IP:PORT", or nil.
function Registry:at(public)
  return self.by_public[public]
end

--- Insert a new record (rec.id must not be registered yet; rec.expires set).
function Registry:put(rec)
  assert(self.by_id[rec.id] == nil, "registry: id already present")
  assert(type(rec.expires) == "number", "registry: expires must be a number")
  self.by_id[rec.id] = rec
  self.by_public[rec.public] = rec
  self.count = self.count + 1
  local heap = self.heap
  heap[#heap + 1] = rec
  rec.hi = #heap
  up(heap, rec.hi)
  return rec
end

--- A registered record moved to another public address.
function Registry:move(rec, public, port)
  if self.by_public[rec.public] == rec then self.by_public[rec.public] = nil end
  rec.public, rec.port = public, port
  self.by_public[public] = rec
end

--- New expiry time for a registered record (earlier or later).
function Registry:refresh(rec, expires)
  local old = rec.expires
  rec.expires = expires
  if expires >= old then down(self.heap, rec.hi) else up(self.heap, rec.hi) end
end

--- Remove a record (by record or id); returns it, or nil if absent.
function Registry:remove(rec)
  if type(rec) == "string" then rec = self.by_id[rec] end
  if not rec or self.by_id[rec.id] ~= rec then return nil end
  self.by_id[rec.id] = nil
  if self.by_public[rec.public] == rec then self.by_public[rec.public] = nil end
  self.count = self.count - 1
  heap_remove(self.heap, rec)
  return rec
end

--- The earliest expiry time, or nil when empty.
function Registry:next_expiry()
  local top = self.heap[1]
  return top and top.expires
end

--- Remove up to `limit` records whose expiry is <= now, earliest first,
-- calling on_expire(rec) for each after its removal.  Returns how many
-- were removed and whether more are due.
function Registry:expire(now, on_expire, limit)
  limit = limit or math.huge
  local heap, n = self.heap, 0
  while n < limit do
    local top = heap[1]
    if not top or top.expires > now then return n, false end
    self:remove(top)
    n = n + 1
    if on_expire then on_expire(top) end
  end
  local top = heap[1]
  return n, top ~= nil and top.expires <= now
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
  return setmetatable({ by_id = {}, by_public = {}, heap = {}, count = 0 }, Registry)
end

return registry
