-- Child process of spec/batch_spec.lua, run with spec/batch/sendmmsg_shim.c
-- preloaded: a burst of STUN requests from one client; prints one line
-- "answered in_order tx_batches tx_batched tx_queued tx_packets".
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = (os.getenv("NATPUNCH_BUILD") or "build") .. "/?.so;" .. package.cpath
local core = require "natpunch.core"

local N = 64
local srv = core.udp()
assert(srv:bind("127.0.0.1", 0))
local _, port = srv:getsockname()
srv:stun_server(true)
assert(srv:recv_start(function() end))
local cli = core.udp()
assert(cli:bind("127.0.0.1", 0))
local answered, in_order = 0, true
assert(cli:recv_start(function(err, data)
  local m = not err and core.stun.decode(data)
  local i = m and m.class == "success" and string.unpack(">I4", m.transaction_id, 9)
  if i ~= answered + 1 then in_order = false end
  answered = answered + 1
end))
for i = 1, N do
  local tid = string.pack(">I4I4I4", 0, 0, i)
  assert(cli:send("127.0.0.1", port, core.stun.encode({ method = "binding", class = "request",
    transaction_id = tid })))
end
local deadline = core.now() + 3000
local t = core.timer()
t:start(10, 10, function() end)
while answered < N and core.now() < deadline do core.run("once") end
local st = srv:stats()
print(answered, in_order, st.tx_batches, st.tx_batched, st.tx_queued, st.tx_packets)
t:close(); srv:close(); cli:close()
core.run("nowait")
