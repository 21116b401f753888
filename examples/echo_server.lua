--- Seed 004's EchoServer over a direct TCP connection: listen by id behind
-- one NAT, echo every byte each peer that connects sends, close when it does.
--
--   lua5.4 examples/echo_server.lua SERVER ID
--
-- SERVER is a rendezvous ("natpunch rendezvous", examples/rendezvous.lua);
-- its STUNT service (TCP, same address and port) introduces the peers, who
-- then punch a TCP connection between themselves (natpunch.stunt, after
-- XSTUNT's XInit / XListen).  Try it with examples/echo_client.lua.

-- natpunch from this checkout (lua/ and build/ next to examples/); drop
-- this line in a copy of the example that uses an installed natpunch
dofile((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/../lua/natpunch/checkout.lua")

local natpunch = require "natpunch"

local server, id = arg[1], arg[2]
if not server or not id then
  io.stderr:write("usage: lua5.4 examples/echo_server.lua SERVER ID\n")
  os.exit(2)
end
natpunch.core.on_error(function(err)   -- Ctrl-C: leave (see examples/rendezvous.lua)
  if tostring(err):find("interrupted!", 1, true) then os.exit(130) end
  io.stderr:write(tostring(err), "\n")
end)
io.stdout:setvbuf("line")

natpunch.run(function()
  -- XInit: register the id and let the server probe our NAT
  local me = assert(natpunch.stunt.init{ server = server, id = id })
  print(("listening as %s (public %s, TCP NAT %s)"):format(id, me.public, me.mapping))
  while true do
    -- XListen: the next peer that connected to us by id, as a stream
    local s = assert(me:listen())
    print(("%s connected: %s path to %s, %d ms"):format(s.peer, s.path, s.remote, s.setup_ms))
    natpunch.spawn(function()
      while true do
        local data = s:read()
        if not data then break end    -- the client is done (end of stream)
        assert(s:write(data))
      end
      s:close()
      print(s.peer .. " left")
    end)
  end
end)
