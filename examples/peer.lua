--- A peer: register under an id, then wait for others, or connect to one.
--
--   lua5.4 examples/peer.lua SERVER ID            -- wait; echo what arrives
--   lua5.4 examples/peer.lua SERVER ID TARGET     -- connect, touch, exit
--
-- SERVER is a rendezvous ("127.0.0.1:3478", see examples/rendezvous.lua).

-- natpunch from this checkout (lua/ and build/ next to examples/); drop
-- this line in a copy of the example that uses an installed natpunch
dofile((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/../lua/natpunch/checkout.lua")

local natpunch = require "natpunch"

local server, id, target = arg[1], arg[2], arg[3]
if not server or not id then
  io.stderr:write("usage: lua5.4 examples/peer.lua SERVER ID [TARGET]\n")
  os.exit(2)
end
natpunch.core.on_error(function(err)   -- Ctrl-C: leave (see examples/rendezvous.lua)
  if tostring(err):find("interrupted!", 1, true) then os.exit(130) end
  io.stderr:write(tostring(err), "\n")
end)
io.stdout:setvbuf("line")

natpunch.run(function()
  local replies = natpunch.future()
  local me = assert(natpunch.peer{
    server = server, id = id,
    -- a peer we did not call connected to us (we were introduced)
    on_session = function(s)
      print(("%s connected: %s path to %s, %d ms"):format(s.peer, s.path, s.remote, s.setup_ms))
    end,
    -- every message, on any session; kind is "data" (send) or "touch"
    on_message = function(s, data, kind)
      print(("%s says (%s): %s"):format(s.peer, kind, data))
      if target then
        replies:set(data)
      else
        s:touch("echo: " .. data, function() end)   -- answer reliably, don't wait
      end
    end,
  })
  print("registered as " .. id .. ", public address " .. assert(me:register()))

  if not target then
    natpunch.future():wait()   -- serve until Ctrl-C
    return
  end

  local s = assert(me:connect(target))
  print(("connected to %s: %s path to %s, set up in %d ms"):format(target, s.path, s.remote, s.setup_ms))
  local rtt = assert(s:touch("hello from " .. id))   -- reliable: returns once acked
  print(("touch acked in %d ms"):format(rtt))
  assert(replies:wait(5), "no reply within 5 s")
  -- the reply was a touch: let our acknowledgement of it go out first
  natpunch.sleep(0.01)
  me:close()
end, { timeout = 30 })
