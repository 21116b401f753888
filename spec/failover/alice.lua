-- The connecting side of spec/failover_lab_spec.lua, run inside the lab's
-- namespace "a": the hard matrix's failover client
-- (natpunch.lab.matrix.kinds.failover.client): registers with both
-- rendezvous servers, connects to the target through the first, touches,
-- kills the first server's process (SIGKILL, by its pid), connects again
-- and measures the time from the kill to the new connection, then uses the
-- session made before the kill.  Prints one JSON object per line (the
-- peer's events, then "result").
--
--   lua5.4 alice.lua ROOT SERVER1 SERVER2 ID TARGET SERVER1_PID
local root = arg[1]
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
package.cpath = root .. "/" .. (os.getenv("NATPUNCH_BUILD") or "build") .. "/?.so;" .. package.cpath
require("natpunch.lab.matrix.kinds.failover").client(arg[2], arg[3], arg[4], arg[5], arg[6])
