--- The registry rows of `make bench`: memory per registered peer and the
-- cost of registering, looking up and expiring peers at 1k, 10k and 100k
-- peers (each cost also as a ratio to the 1k figure: flat means ~1.0).
-- Records are made as the rendezvous makes them (registry.record), with
-- realistic ids and addresses.  One process, no sockets.
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
  return registry.record(string.format("peer-%06d", i), "", ip .. ":" .. port, port,
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
  local ids, pubs = {}, {}
  for i = 1, 10000 do
    local k = (i * 7919) % n + 1
    local x = rec(k, 0)
    ids[i], pubs[i] = x.id, x.public
  end
  t0 = clock()
  for rep = 1, 10 do
    for i = 1, #ids do
      if not r:get(ids[i]) or not r:at(pubs[i]) then error("lookup failed at " .. i .. "/" .. rep) end
    end
  end
  local lookup_us = (clock() - t0) / (10 * #ids) * 1e6
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
    lookup_us = lookup_us, refresh_us = refresh_us, expire_us = expire_us, worst_sweep_ms = worst * 1000 }
end

local rows = {}
for i, n in ipairs(SIZES) do rows[i] = measure(n) end
local base = rows[1]
for _, r in ipairs(rows) do
  r.put_ratio = r.put_us / base.put_us
  r.lookup_ratio = r.lookup_us / base.lookup_us
  r.expire_ratio = r.expire_us / base.expire_us
end

if arg[1] == "--json" then
  for _, r in ipairs(rows) do print(json.encode(r)) end
else
  print("Registry (lua/natpunch/registry.lua), one process; costs also as x the 1k figure (flat = 1.0)")
  local fmt = "%8s %10s %8s %7s %10s %7s %10s %10s %7s %12s"
  print(fmt:format("peers", "B/peer", "put us", "x 1k", "lookup us", "x 1k", "refresh us", "expire us", "x 1k",
    "worst sweep"))
  for _, r in ipairs(rows) do
    print(fmt:format(r.peers, ("%.0f"):format(r.bytes_per_peer), ("%.2f"):format(r.put_us),
      ("%.2f"):format(r.put_ratio), ("%.3f"):format(r.lookup_us), ("%.2f"):format(r.lookup_ratio),
      ("%.2f"):format(r.refresh_us), ("%.2f"):format(r.expire_us), ("%.2f"):format(r.expire_ratio),
      ("%.1f ms"):format(r.worst_sweep_ms)))
  end
end
