--- The registry rows of `make bench`: memory per registered peer and the
-- cost of registering, looking up and expiring peers at 1k, 10k and 100k
-- peers (each cost also as a ratio to the 1k figure: flat means ~1.0).
-- Records are made as the rendezvous makes them (registry.record), with
-- realistic ids and addresses and a distinct 32-byte public key each.  One
-- process, no sockets.  Baseline, in the same run: a plain Lua table keyed
-- by the same ids, filled and read the same way (plain_put_us,
-- plain_lookup_us).  Both grow from 1k to 100k by the same factor when the
-- registry adds nothing that is not O(1): what remains is the memory
-- hierarchy (100k records do not fit in the caches; 1k do).
--
--   lua5.4 bench/registry.lua [--json]
local root = (arg[0]:match("^(.*)/bench/[^/]*$") or ".")
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path

local registry = require "natpunch.registry"
local json = require "natpunch.json"

local SIZES = { 1000, 10000, 100000 }
local BATCH = 2000   -- what the rendezvous expires per loop turn

local function rec(i, expires)
  local ip = string.format("198.51.%d.%d", i // 250 % 250, i % 250 + 1)
  local port = 1024 + i % 60000
  return registry.record(string.format("peer-%06d", i), string.pack("<I8", i) .. string.rep("k", 24),
    ip .. ":" .. port, port,
    string.format("198.18.%d.%d:%d", i // 250 % 250, i % 250 + 1, port), expires)
end

local function clock() return os.clock() end

local function measure(n)
  collectgarbage(); collectgarbage()
  local before = collectgarbage("count")
  local r = registry.new()
  local recs = {}
  for i = 1, n do recs[i] = rec(i, 1000000 + i) end      -- made outside the timing
  collectgarbage(); collectgarbage()
  local made = collectgarbage("count")
  local t0 = clock()
  for i = 1, n do r:put(recs[i]) end
  local put_us = (clock() - t0) / n * 1e6
  recs = nil                                            -- luacheck: ignore
  collectgarbage(); collectgarbage()
  local bytes = (collectgarbage("count") - before) * 1024 / n
  local index_bytes = (collectgarbage("count") - made) * 1024 / n
  -- lookups by id and by address, in a scattered order
  local ids = {}
  for i = 1, 10000 do ids[i] = rec((i * 7919) % n + 1, 0).id end
  t0 = clock()
  for rep = 1, 10 do
    for i = 1, #ids do
      if not r:get(ids[i]) then error("lookup failed at " .. i .. "/" .. rep) end
    end
  end
  local lookup_us = (clock() - t0) / (10 * #ids) * 1e6
  -- the baseline: a plain table by id holding the same records
  local plain = {}
  local order = {}
  for _, x in r:each() do order[#order + 1] = x end
  t0 = clock()
  for i = 1, #order do plain[order[i].id] = order[i] end
  local plain_put_us = (clock() - t0) / #order * 1e6
  t0 = clock()
  for rep = 1, 10 do
    for i = 1, #ids do
      if not plain[ids[i]] then error("plain lookup failed at " .. i .. "/" .. rep) end
    end
  end
  local plain_lookup_us = (clock() - t0) / (10 * #ids) * 1e6
  plain, order = nil, nil                               -- luacheck: ignore
  -- refreshes (re-registration moves a peer's expiry later: heap sift)
  t0 = clock()
  for i = 1, math.min(n, 10000) do
    local x = r:get(ids[i])
    r:refresh(x, x.expires + 1000000)
  end
  local refresh_us = (clock() - t0) / math.min(n, 10000) * 1e6
  -- expiry of everything, BATCH at a time as the server's sweep does
  local worst = 0
  t0 = clock()
  while r.count > 0 do
    local b = clock()
    r:expire(math.huge, nil, BATCH)
    worst = math.max(worst, clock() - b)
  end
  local expire_us = (clock() - t0) / n * 1e6
  return { peers = n, bytes_per_peer = bytes, index_bytes_per_peer = index_bytes, put_us = put_us,
    lookup_us = lookup_us, plain_put_us = plain_put_us, plain_lookup_us = plain_lookup_us, refresh_us = refresh_us,
    expire_us = expire_us, worst_sweep_ms = worst * 1000 }
end

-- each size 3 times; the least of each cost (the others lost time to
-- whatever else ran), the memory of the first
local function best(n)
  local r = measure(n)
  for _ = 2, 3 do
    local again = measure(n)
    for k, v in pairs(again) do
      if k:match("_us$") or k == "worst_sweep_ms" then r[k] = math.min(r[k], v) end
    end
  end
  return r
end

local rows = {}
for i, n in ipairs(SIZES) do rows[i] = best(n) end
local base = rows[1]
for _, r in ipairs(rows) do
  r.put_ratio = r.put_us / base.put_us
  r.lookup_ratio = r.lookup_us / base.lookup_us
  r.expire_ratio = r.expire_us / base.expire_us
  r.plain_put_ratio = r.plain_put_us / base.plain_put_us
  r.plain_lookup_ratio = r.plain_lookup_us / base.plain_lookup_us
  -- the registry's cost over the plain table's at this size: flat when
  -- the registry grows no worse than a table does
  r.put_vs_plain = r.put_us / r.plain_put_us
  r.lookup_vs_plain = r.lookup_us / r.plain_lookup_us
end

if arg[1] == "--json" then
  for _, r in ipairs(rows) do print(json.encode(r)) end
else
  print("Registry (lua/natpunch/registry.lua), one process; costs also as x the 1k figure (flat = 1.0) and as x a"
    .. " plain Lua table by id at the same size (same run)")
  local fmt = "%8s %8s %8s %6s %8s %10s %6s %8s %10s %10s %6s %12s"
  print(fmt:format("peers", "B/peer", "put us", "x 1k", "x table", "lookup us", "x 1k", "x table", "refresh us",
    "expire us", "x 1k", "worst sweep"))
  for _, r in ipairs(rows) do
    print(fmt:format(r.peers, ("%.0f"):format(r.bytes_per_peer), ("%.2f"):format(r.put_us),
      ("%.2f"):format(r.put_ratio), ("%.2f"):format(r.put_vs_plain), ("%.3f"):format(r.lookup_us),
      ("%.2f"):format(r.lookup_ratio), ("%.2f"):format(r.lookup_vs_plain), ("%.2f"):format(r.refresh_us),
      ("%.2f"):format(r.expire_us), ("%.2f"):format(r.expire_ratio), ("%.1f ms"):format(r.worst_sweep_ms)))
  end
  print("plain table alone, x its 1k figure: put " .. table.concat((function()
    local t = {}
    for i, r in ipairs(rows) do t[i] = ("%.2f"):format(r.plain_put_ratio) end
    return t
  end)(), " / ") .. ", lookup " .. table.concat((function()
    local t = {}
    for i, r in ipairs(rows) do t[i] = ("%.2f"):format(r.plain_lookup_ratio) end
    return t
  end)(), " / "))
end
