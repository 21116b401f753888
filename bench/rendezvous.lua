--- The natpunch server of `make bench`: natpunch.rendezvous on 127.0.0.1,
-- as `natpunch rendezvous --listen 127.0.0.1:PORT` runs it (STUN answered
-- in C on the same socket as the Lua control messages), plus what the
-- bench needs: --no-batch turns off batched sends (udp:batching(false)) to
-- show what they buy, --lua-hook answers STUN in a Lua function called for
-- every datagram (the C answering off: decode, answer and send from Lua,
-- with udp:send_batched),
-- and it stops by itself after --seconds or when a
-- line "stop" (or EOF) comes on stdin, printing the socket counters as one
-- JSON line.
--
--   lua5.4 bench/rendezvous.lua --port PORT [--no-batch] [--lua-hook] [--seconds N]
dofile((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/../lua/natpunch/checkout.lua")

local core = require "natpunch.core"
local rendezvous = require "natpunch.rendezvous"
local json = require "natpunch.json"

local port, batching, seconds, lua_hook = nil, true, 60, false
local i = 1
while i <= #arg do
  local a = arg[i]
  if a == "--port" then port = tonumber(arg[i + 1]); i = i + 1
  elseif a == "--seconds" then seconds = tonumber(arg[i + 1]); i = i + 1
  elseif a == "--no-batch" then batching = false
  elseif a == "--lua-hook" then lua_hook = true
  else io.stderr:write("bench/rendezvous.lua: unknown argument ", a, "\n"); os.exit(2) end
  i = i + 1
end
if not port or not seconds or seconds <= 0 then
  io.stderr:write("usage: lua5.4 bench/rendezvous.lua --port PORT [--no-batch] [--seconds N]\n")
  os.exit(2)
end

local server = assert(rendezvous.new{ listen = "127.0.0.1:" .. port })
server.udp:batching(batching)
if lua_hook then
  -- every datagram goes through this Lua function first; STUN is answered here
  local stun, udp, software = core.stun, server.udp, server.software
  local hooked = 0
  udp:recv_stop()
  udp:stun_server(false)
  udp:recv_start(function(err, data, ip, p, kind)
    hooked = hooked + 1
    if kind == "stun" then
      local answer = stun.answer_binding(data, ip, p, software)
      -- queued with the batch's other answers: one sendmmsg at its end
      if answer then udp:send_batched(ip, p, answer) end
      return
    end
    server:_on_packet(err, data, ip, p, kind)
  end)
  local stats = server.stats
  server.stats = function(self) local st = stats(self); st.lua_hook_calls = hooked; return st end
end
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
