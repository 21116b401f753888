--- The natpunch side of the touch rows of `make bench`: two processes on
-- 127.0.0.1, one receiving touches, one sending them, as users run it.
--
--   lua5.4 bench/touch_peer.lua --recv --port PORT [--bind IP] [--seconds N] [--idle S]
--       receive touches (acknowledged in C) until stdin closes or N s
--       (with --idle: stdin is not read; S seconds after the last touch);
--       prints its socket counters as one JSON line, with the deliveries
--       Lua saw (lua_deliveries) and how many distinct sequence numbers
--       they carried (distinct: equal when each was delivered once)
--   lua5.4 bench/touch_peer.lua --bulk --to 127.0.0.1:PORT [--count N] [--size B] [--window W]
--       N touches of B bytes, at most W unacknowledged (max_in_flight);
--       prints msgs/s, Mbit/s and how many were acknowledged, and the
--       congestion window seen every 20 ms (cwnd_min/max/samples)
--   lua5.4 bench/touch_peer.lua --ping --to 127.0.0.1:PORT [--count N] [--size B]
--       one touch at a time: time from touch() to its acknowledgement
--
-- Addresses: 127.0.0.1, or the NAT lab's own ranges (bench/touch_wire.lua
-- and spec/touch_wire_spec.lua run it inside lab namespaces).  With
-- --stamp (both sides) each bulk payload starts with its sequence number
-- ("%010d") and the receiver counts the distinct ones (off by default: it
-- costs the loopback row a string per message).
dofile((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/../lua/natpunch/checkout.lua")

local core = require "natpunch.core"
local json = require "natpunch.json"

local o = { count = 100000, size = 1200, window = 64, seconds = 60, bind = "127.0.0.1" }

-- loopback or the lab's ranges (203.0.113.0/24, 198.51.100.0/24, 198.18.0.0/15)
local function allowed(ip)
  if ip == "127.0.0.1" then return ip end
  local a, b, c = (ip or ""):match("^(%d+)%.(%d+)%.(%d+)%.%d+$")
  a, b, c = tonumber(a), tonumber(b), tonumber(c)
  if (a == 203 and b == 0 and c == 113) or (a == 198 and b == 51 and c == 100)
    or (a == 198 and (b == 18 or b == 19)) then return ip end
  return nil
end
do
  local i = 1
  while i <= #arg do
    local a, v = arg[i], arg[i + 1]
    if a == "--recv" or a == "--bulk" or a == "--ping" then o.mode = a:sub(3)
    elseif a == "--port" then o.port = tonumber(v); i = i + 1
    elseif a == "--to" then
      o.ip, o.port = (v or ""):match("^([%d%.]+):(%d+)$"); o.ip, o.port = allowed(o.ip), tonumber(o.port); i = i + 1
    elseif a == "--stamp" then o.stamp = true
    elseif a == "--idle" then o.idle = tonumber(v); i = i + 1
    elseif a == "--bind" then o.bind = allowed(v); i = i + 1
    elseif a == "--count" then o.count = tonumber(v); i = i + 1
    elseif a == "--size" then o.size = tonumber(v); i = i + 1
    elseif a == "--window" then o.window = tonumber(v); i = i + 1
    elseif a == "--seconds" then o.seconds = tonumber(v); i = i + 1
    else io.stderr:write("touch_peer.lua: bad argument ", tostring(a), "\n"); os.exit(2) end
    i = i + 1
  end
  if not o.mode or not o.port or not o.bind or (o.mode ~= "recv" and not o.ip)
    or not o.count or o.count < 1 or o.count > 10000000 then
    io.stderr:write("usage: see bench/touch_peer.lua\n"); os.exit(2)
  end
end

local u = core.udp()
assert(u:bind(o.mode == "recv" and o.bind or (o.ip == "127.0.0.1" and "127.0.0.1" or "0.0.0.0"),
  o.mode == "recv" and o.port or 0))

if o.mode == "recv" then
  local delivered, distinct, seen = 0, 0, {}
  local last = core.now()
  u:recv_start(function(_, data, _, _, kind)
    if kind ~= "touch" then return end
    delivered, last = delivered + 1, core.now()
    if o.stamp then
      local seq = tonumber(data:sub(1, 10))
      if seq and not seen[seq] then seen[seq], distinct = true, distinct + 1 end
    end
  end)
  local input = not o.idle and core.stdin() or nil
  local limit = core.timer()
  local stopped = false
  local function stop()
    if stopped then return end
    stopped = true
    local st = u:stats()
    st.lua_deliveries = delivered
    st.distinct = o.stamp and distinct or nil
    io.stdout:write(json.encode(st), "\n")
    io.stdout:flush()
    limit:close()
    if input then input:close() end
    u:close()
  end
  if o.idle then
    local idle = core.timer()
    idle:start(100, 100, function()
      if stopped then idle:close() elseif delivered > 0 and core.now() - last > o.idle * 1000 then
        idle:close()
        stop()
      end
    end)
  elseif input then input:read_start(function(err, chunk) if err or not chunk then stop() end end) end
  limit:start(math.floor(o.seconds * 1000), 0, stop)
  io.stdout:write("ready\n")
  io.stdout:flush()
  core.run()
  os.exit(0)
end

assert(u:touch_config{ max_in_flight = math.min(o.window, 1024), max_payload = math.max(o.size, 16) })
u:recv_start(function() end)
local payload = string.rep("t", o.size)
local acked, failed, sent = 0, 0, 0
local t0 = core.hrtime()
local deadline = core.now() + 60000

if o.mode == "bulk" then
  local inflight = 0
  local cwnd_min, cwnd_max, samples, cwnd_sum = math.huge, 0, 0, 0
  local sampler = core.timer()
  sampler:start(20, 20, function()
    local info = u:touch_info(o.ip, o.port)
    if info and info.cwnd then
      cwnd_min, cwnd_max = math.min(cwnd_min, info.cwnd), math.max(cwnd_max, info.cwnd)
      samples, cwnd_sum = samples + 1, cwnd_sum + info.cwnd
    end
  end)
  local function on_done(err)
    inflight = inflight - 1
    if err then failed = failed + 1 else acked = acked + 1 end
  end
  while (sent < o.count or inflight > 0) and core.now() < deadline do
    while inflight < o.window and sent < o.count do
      local data = o.stamp and ("%010d"):format(sent + 1) .. payload:sub(11) or payload
      local id = u:touch(o.ip, o.port, data, on_done)
      if not id then break end       -- window full in C: wait for acks
      sent = sent + 1
      inflight = inflight + 1
    end
    core.run("once")
  end
  local secs = (core.hrtime() - t0) / 1e9
  sampler:close()
  local info = u:touch_info(o.ip, o.port) or {}
  print(json.encode({ mode = "bulk", count = o.count, size = o.size, window = o.window, acked = acked,
    failed = failed, seconds = secs, msgs_per_s = acked / secs, mbit_per_s = acked * o.size * 8 / secs / 1e6,
    cwnd_min = samples > 0 and cwnd_min or nil, cwnd_max = samples > 0 and cwnd_max or nil,
    cwnd_mean = samples > 0 and cwnd_sum / samples or nil, cwnd_samples = samples,
    congestion_events = info.congestion_events, retransmitted = info.retransmitted,
    fast_retransmits = info.fast_retransmits, srtt_ms = info.srtt_ms, stats = u:stats() }))
else
  local rtts = {}
  for _ = 1, o.count do
    local done = false
    local t = core.hrtime()
    assert(u:touch(o.ip, o.port, payload, function(err)
      done = true
      if err then failed = failed + 1 else rtts[#rtts + 1] = (core.hrtime() - t) / 1e3 end
    end))
    while not done and core.now() < deadline do core.run("once") end
  end
  table.sort(rtts)
  print(json.encode({ mode = "ping", count = o.count, size = o.size, answered = #rtts, failed = failed,
    p50_us = rtts[math.max(1, #rtts // 2)], p99_us = rtts[math.max(1, (#rtts * 99) // 100)] }))
end
u:close()
core.run("nowait")
