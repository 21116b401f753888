-- The connecting side of spec/failover_lab_spec.lua, run inside the lab's
-- namespace "a": registers with both rendezvous servers, connects to the
-- target through the first, touches, kills the first server's process
-- (SIGKILL, by its pid), connects again and measures the time from the
-- kill to the new connection, then uses the session made before the kill.
-- Prints one JSON object per line (the peer's events, then "result").
--
--   lua5.4 alice.lua ROOT SERVER1 SERVER2 ID TARGET SERVER1_PID
local root = arg[1]
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
package.cpath = root .. "/" .. (os.getenv("NATPUNCH_BUILD") or "build") .. "/?.so;" .. package.cpath
local natpunch = require "natpunch"
local json = require "natpunch.json"

local s1, s2, id, target, pid = arg[2], arg[3], arg[4], arg[5], tonumber(arg[6])
assert(s1 and s2 and id and target and pid, "usage: alice.lua ROOT SERVER1 SERVER2 ID TARGET SERVER1_PID")

local function say(t)
  io.stdout:write(json.encode(t), "\n")
  io.stdout:flush()
end

local result = { event = "result" }
natpunch.run(function()
  local registered = 0
  local p = assert(natpunch.peer{ servers = { s1, s2 }, id = id,
    on_event = function(ev)
      if ev.event == "registered" then registered = registered + 1 end
      say(ev)
    end })
  assert(p:register())
  for _ = 1, 500 do
    if registered == 2 then break end
    natpunch.sleep(0.01)
  end
  result.registered = registered
  local s, err = p:connect(target)
  if not s then result.reason = "first connect: " .. tostring(err) return end
  result.first_server = s.server
  result.touch_before = s:touch("before")
  -- the first server dies
  local t0 = natpunch.now()
  os.execute("kill -KILL " .. pid)
  local s_new, err2 = p:connect(target)
  result.failover_ms = natpunch.now() - t0
  if not s_new then result.reason = "connect after the kill: " .. tostring(err2) return end
  result.new_server = s_new.server
  -- the session made before the kill: touches and data still flow
  result.touch_after = s:touch("after")
  s:send("data after")
  for _ = 1, 8 do      -- the echoes of the touches may come first
    local data = s:receive(1)
    if data == "data after" then result.echo_after = data break end
    if not data then s:send("data after") end
  end
  result.primary = p.server
  p:close()
end, { timeout = 40 })
say(result)
