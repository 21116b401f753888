--- The natpunch side of the touch rows of `make bench`: two processes on
-- 127.0.0.1, one receiving touches, one sending them, as users run it.
--
--   lua5.4 bench/touch_peer.lua --recv --port PORT [--seconds N] [--batch]
--       receive touches (acknowledged in C) until stdin closes or N s;
--       prints its socket counters as one JSON line
--   lua5.4 bench/touch_peer.lua --bulk --to 127.0.0.1:PORT [--count N] [--size B] [--window W] [--batch]
--       N touches of B bytes, at most W unacknowledged (max_in_flight);
--       prints msgs/s, Mbit/s and how many were acknowledged
--   --batch: Lua gets several messages per call (udp:on_touch_batch on the
--       receiver, udp:on_touch_done on the sender) instead of one call each
--   lua5.4 bench/touch_peer.lua --ping --to 127.0.0.1:PORT [--count N] [--size B]
--       one touch at a time: time from touch() to its acknowledgement
dofile((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/../lua/natpunch/checkout.lua")

local core = require "natpunch.core"
local json = require "natpunch.json"

local o = { count = 100000, size = 1200, window = 64, seconds = 60 }
do
  local i = 1
  while i <= #arg do
    local a, v = arg[i], arg[i + 1]
    if a == "--recv" or a == "--bulk" or a == "--ping" then o.mode = a:sub(3)
    elseif a == "--port" then o.port = tonumber(v); i = i + 1
    elseif a == "--to" then o.ip, o.port = v:match("^(127%.0%.0%.1):(%d+)$"); o.port = tonumber(o.port); i = i + 1
    elseif a == "--count" then o.count = tonumber(v); i = i + 1
    elseif a == "--size" then o.size = tonumber(v); i = i + 1
    elseif a == "--window" then o.window = tonumber(v); i = i + 1
    elseif a == "--seconds" then o.seconds = tonumber(v); i = i + 1
    elseif a == "--batch" then o.batch = true
    else io.stderr:write("touch_peer.lua: bad argument ", tostring(a), "\n"); os.exit(2) end
    i = i + 1
  end
  if not o.mode or not o.port or not o.count or o.count < 1 or o.count > 10000000 then
    io.stderr:write("usage: see bench/touch_peer.lua\n"); os.exit(2)
  end
end

local u = core.udp()
assert(u:bind("127.0.0.1", o.mode == "recv" and o.port or 0))

if o.mode == "recv" then
  local delivered = 0
  if o.batch then u:on_touch_batch(function(list) delivered = delivered + #list end) end
  u:recv_start(function(_, _, _, _, kind) if kind == "touch" then delivered = delivered + 1 end end)
  local input = core.stdin()
  local limit = core.timer()
  local stopped = false
  local function stop()
    if stopped then return end
    stopped = true
    local st = u:stats()
    st.lua_deliveries = delivered
    io.stdout:write(json.encode(st), "\n")
    io.stdout:flush()
    limit:close()
    if input then input:close() end
    u:close()
  end
  if input then input:read_start(function(err, chunk) if err or not chunk then stop() end end) end
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
  local function on_done(err)
    inflight = inflight - 1
    if err then failed = failed + 1 else acked = acked + 1 end
  end
  if o.batch then
    u:on_touch_done(function(list)
      for i = 1, #list do on_done(list[i].err) end
    end)
  end
  local cb = not o.batch and on_done or nil
  while (sent < o.count or inflight > 0) and core.now() < deadline do
    while inflight < o.window and sent < o.count do
      local id = u:touch(o.ip, o.port, payload, cb)
      if not id then break end       -- window full in C: wait for acks
      sent = sent + 1
      inflight = inflight + 1
    end
    core.run("once")
  end
  local secs = (core.hrtime() - t0) / 1e9
  print(json.encode({ mode = "bulk", batch = o.batch or false, count = o.count, size = o.size, window = o.window,
    acked = acked, failed = failed, seconds = secs, msgs_per_s = acked / secs,
    mbit_per_s = acked * o.size * 8 / secs / 1e6,
    stats = u:stats() }))
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
