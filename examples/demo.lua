--- What `make demo` runs: a rendezvous server and two peers, alice and bob,
-- on loopback in this one process.  They register, alice asks for bob by id,
-- both are introduced, punch a direct path, and exchange an unreliable
-- message and reliable touches.  Prints a transcript with timings.
--
--   lua5.4 examples/demo.lua

-- natpunch from this checkout (lua/ and build/ next to examples/); drop
-- this line in a copy of the example that uses an installed natpunch
dofile((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/../lua/natpunch/checkout.lua")

local natpunch = require "natpunch"

local TOUCHES = 3
io.stdout:setvbuf("line")

natpunch.run(function()
  local t0 = natpunch.now()
  local function say(fmt, ...)
    print(string.format("[%5d ms] " .. fmt, natpunch.now() - t0, ...))
  end

  -- The rendezvous: port 0 picks a free port; on_event narrates.
  local server = assert(natpunch.rendezvous{
    listen = "127.0.0.1:0",
    on_event = function(ev)
      if ev.event == "registered" then
        say("rendezvous: %s registered from public address %s", ev.peer, ev.public)
      elseif ev.event == "introduced" then
        say("rendezvous: introduced %s to %s (each gets the other's addresses)", ev.from, ev.to)
      end
    end,
  })
  local addr = server:address()
  say("rendezvous listening on %s", addr)

  -- bob waits to be called and echoes every message back the same way.
  local bob = assert(natpunch.peer{
    server = addr, id = "bob",
    on_session = function(s)
      say("bob: %s connected to us, %s path to %s", s.peer, s.path, s.remote)
    end,
    on_message = function(s, data, kind)
      say("bob: got %q (%s) from %s; echoing it", data, kind, s.peer)
      if kind == "touch" then s:touch("echo: " .. data, function() end) else s:send("echo: " .. data) end
    end,
  })
  -- alice calls bob and counts the echoes.
  local echoes, all_echoes = 0, natpunch.future()
  local alice = assert(natpunch.peer{
    server = addr, id = "alice",
    on_message = function(_, data, kind)
      say("alice: got %q (%s)", data, kind)
      echoes = echoes + 1
      if echoes == TOUCHES + 1 then all_echoes:set(true) end
    end,
  })

  say("bob registered, public address %s", assert(bob:register()))
  say("alice registered, public address %s", assert(alice:register()))

  local s = assert(alice:connect("bob"))
  say("alice: connected to bob, %s path to %s, set up in %d ms (%s)", s.path, s.remote, s.setup_ms, s.transport)

  assert(s:send("hello bob"))
  say("alice: sent %q (unreliable)", "hello bob")
  for i = 1, TOUCHES do
    local rtt = assert(s:touch("touch #" .. i))
    say("alice: touch #%d acknowledged, RTT %d ms", i, rtt)
  end
  assert(all_echoes:wait(5), "not every echo came back")

  -- bob's last echo was a touch: let alice's acknowledgement of it go out
  natpunch.sleep(0.05)

  local st = alice:stats()
  say("alice's socket: %d packets out, %d in, %d touch retransmissions",
    st.tx_packets, st.rx_packets, st.touch_retransmits or 0)
  alice:close()
  bob:close()
  server:close()
  say("done")
end, { timeout = 20 })
