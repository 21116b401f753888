--- The natpunch server of `make bench`: natpunch.rendezvous on 127.0.0.1,
-- as `natpunch rendezvous --listen 127.0.0.1:PORT` runs it (STUN answered
-- in C on the same socket as the Lua control messages), plus what the
-- bench needs: --no-batch turns off batched sends (udp:batching(false)) to
-- show what they buy, and it stops by itself after --seconds or when a
-- line "stop" (or EOF) comes on stdin, printing the socket counters as one
-- JSON line.
--
--   lua5.4 bench/rendezvous.lua --port PORT [--no-batch] [--seconds N]
dofile((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/../lua/natpunch/checkout.lua")

local core = require "natpunch.core"
local rendezvous = require "natpunch.rendezvous"
local json = require "natpunch.json"

local port, batching, seconds = nil, true, 60
local i = 1
while i <= #arg do
  local a = arg[i]
  if a == "--port" then port = tonumber(arg[i + 1]); i = i + 1
  elseif a == "--seconds" then seconds = tonumber(arg[i + 1]); i = i + 1
  elseif a == "--no-batch" then batching = false
  else io.stderr:write("bench/rendezvous.lua: unknown argument ", a, "\n"); os.exit(2) end
  i = i + 1
end
if not port or not seconds or seconds <= 0 then
  io.stderr:write("usage: lua5.4 bench/rendezvous.lua --port PORT [--no-batch] [--seconds N]\n")
  os.exit(2)
end

local server = assert(rendezvous.new{ listen = "127.0.0.1:" .. port })
server.udp:batching(batching)
local input = core.stdin()
local limit = core.timer()
local stopped = false
local function stop()
  if stopped then return end
  stopped = true
  local st = server:stats()
  st.batching = batching
  io.stdout:write(json.encode(st), "\n")
  limit:close()
  input:close()
  server:close()
end
local line = ""
input:read_start(function(err, chunk)
  if err or not chunk then return stop() end
  line = (line .. chunk):sub(-64)
  if line:find("stop") then stop() end
end)
limit:start(math.floor(seconds * 1000), 0, stop)
io.stdout:write("ready\n")
io.stdout:flush()
core.run()
