--- A rendezvous server in a few lines: what `natpunch rendezvous` runs,
-- plus the two policy hooks.
--
--   lua5.4 examples/rendezvous.lua [ADDR:PORT [SECONDS]]
--
-- Listens on ADDR:PORT (default 127.0.0.1:3478; port 0 picks one), for
-- SECONDS or until Ctrl-C.  Then try examples/peer.lua against it.

-- natpunch from this checkout (lua/ and build/ next to examples/); drop
-- this line in a copy of the example that uses an installed natpunch
dofile((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/../lua/natpunch/checkout.lua")

local natpunch = require "natpunch"

local listen = arg[1] or "127.0.0.1:3478"
local seconds = tonumber(arg[2])

-- lua5.4 turns Ctrl-C into an "interrupted!" error in the next callback,
-- which the loop reports and survives; leave instead.
natpunch.core.on_error(function(err)
  if tostring(err):find("interrupted!", 1, true) then os.exit(130) end
  io.stderr:write(tostring(err), "\n")
end)
io.stdout:setvbuf("line")

natpunch.run(function()
  local server = assert(natpunch.rendezvous{
    listen = listen,
    ttl = 30,   -- a peer that stops refreshing is forgotten after 30 s

    -- Before a registration is accepted: info = {id, public, private, ip,
    -- port}.  Return false, reason to refuse it (the peer gets the reason).
    on_register = function(info)
      if info.id:match("^admin") then return false, "reserved id" end
      print(("register %s (public %s, private %s)"):format(info.id, info.public,
        table.concat(info.private, ",")))
    end,

    -- Before two registered peers are introduced to each other.
    on_connect = function(from, to)
      print(("introduce %s -> %s"):format(from.id, to.id))
      return true
    end,
  })
  print("listening on " .. server:address())
  if seconds then natpunch.sleep(seconds) else natpunch.future():wait() end
  local stats = server:stats()
  print(("served %d registrations and %d introductions"):format(stats.registrations, stats.introductions))
  server:close()
end)
