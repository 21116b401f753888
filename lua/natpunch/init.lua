--- natpunch: NAT traversal on a libuv loop, scripted in Lua.
--
--   local natpunch = require "natpunch"
--   natpunch.run(function()
--     local server = natpunch.rendezvous{ listen = "127.0.0.1:3478" }
--     local a = natpunch.peer{ server = "127.0.0.1:3478", id = "a" }
--     local b = natpunch.peer{ server = "127.0.0.1:3478", id = "b" }
--     assert(a:register()); assert(b:register())
--     local s = assert(a:connect("b"))
--     assert(s:touch("hello"))
--   end)
--
-- The C part is natpunch.core (sockets, timers, STUN codec, touch, punch);
-- this module adds coroutine tasks and the rendezvous/peer roles.
local core = require "natpunch.core"
local sched = require "natpunch.sched"

local natpunch = {
  core = core,
  version = core.version,
  run = sched.run,
  spawn = sched.spawn,
  sleep = sched.sleep,
  wait = sched.wait,
  future = sched.future,
  current = sched.current,
}

--- Milliseconds of the loop clock.
function natpunch.now()
  return core.now()
end

-- Roles are loaded on first use, so `require "natpunch"` stays cheap.
local lazy = {
  rendezvous = "natpunch.rendezvous",
  peer = "natpunch.peer",
  stunt = "natpunch.stunt",
  stream = "natpunch.stream",
  addr = "natpunch.addr",
  auth = "natpunch.auth",
  candidates = "natpunch.candidates",
  dns = "natpunch.dns",
  msg = "natpunch.msg",
  json = "natpunch.json",
  lab = "natpunch.lab",
  stunserver = "natpunch.stunserver",
  discover = "natpunch.discover",
  keepalive = "natpunch.keepalive",
  turn = "natpunch.turn",
}

return setmetatable(natpunch, {
  __index = function(t, k)
    local name = lazy[k]
    if not name then return nil end
    local m = require(name)
    -- a role module may be a constructor table with __call
    rawset(t, k, m)
    return m
  end,
})
