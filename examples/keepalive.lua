-- Seed 000's keepalive experiment by hand: open one mapping toward the
-- daemon's probe port, signal it to probe after DELAY s, see if it arrives.
--   lua5.4 examples/keepalive.lua [DAEMON_IP:PORT [DELAY_S]]   (no daemon: one on loopback)
dofile((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/../lua/natpunch/checkout.lua")   -- this checkout's natpunch
local natpunch = require "natpunch"
natpunch.run(function()
  local server, delay, daemon = arg[1], tonumber(arg[2]) or 2, nil
  if not server then
    daemon = assert(natpunch.keepalive.daemon{ listen = "127.0.0.1:0" })
    server = daemon:address()
  end
  local ip, port = natpunch.addr.parse(server)
  local mapping, signal = natpunch.core.udp(), natpunch.core.udp()
  assert(mapping:bind("0.0.0.0", 0)); assert(signal:bind("0.0.0.0", 0))
  local armed, probed = natpunch.future(), natpunch.future()
  signal:recv_start(function(_, d) if d:match("^NPKA armed") then armed:set(true) end end, { raw = true })
  mapping:recv_start(function(_, d) if d:match("^NPKA probe") then probed:set(true) end end, { raw = true })
  mapping:send(ip, port + 1, "NPKA touch demo 1")                      -- 1. the mapping (a hole)
  natpunch.sleep(0.05)
  signal:send(ip, port, ("NPKA arm demo 1 %d"):format(delay * 1000))  -- 2. "probe it after delay"
  assert(armed:wait(2), "no answer from the daemon at " .. server)
  local alive = probed:wait(delay + 1)                                 -- 3. the probe, or nothing
  print(("mapping %s after %g s idle"):format(alive and "alive" or "expired", delay))
  mapping:close(); signal:close()
  if daemon then daemon:close() end
end)
