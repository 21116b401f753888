--- What `make demo` runs as root: the loopback demo (examples/demo.lua) for
-- real, in the NAT lab.  alice sits behind a restricted cone NAT, bob behind
-- a port-restricted cone NAT, and the rendezvous on the lab's internet.
-- Each link into the internet delays packets by 20 ms each way, so the RTTs
-- are visible.  bob waits (`natpunch peer`, echoing what arrives), alice
-- connects by id, sends a message and three touches.  The transcript says
-- which NAT types met, which path won, and the RTTs.
--
--   lua5.4 examples/lab_demo.lua [--delay 20ms] [--loss 0%]
--
-- Without root (or without network namespaces / nftables) it prints why
-- and exits 77, and `make demo` falls back to examples/demo.lua.

-- natpunch from this checkout (lua/ and build/ next to examples/); drop
-- this line in a copy of the example that uses an installed natpunch
local root = dofile((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/../lua/natpunch/checkout.lua")

local CANNOT_RUN = 77     -- the automake convention for "skipped"
local TOUCHES = 3
local SERVER = "203.0.113.2:3478"
io.stdout:setvbuf("line")

---------------------------------------------------------------------------
-- alice: runs inside her namespace (the demo starts this same file with
-- --alice) and prints one line per step, which the demo relays.

local function alice(server)
  local natpunch = require "natpunch"
  natpunch.run(function()
    local echoes, all_echoes = 0, natpunch.future()
    local me = assert(natpunch.peer{
      server = server, id = "alice",
      on_message = function(_, data, kind)
        print(("got %q back (%s)"):format(data, kind))
        echoes = echoes + 1
        if echoes == TOUCHES + 1 then all_echoes:set(true) end
      end,
    })
    print("registered: the rendezvous sees us at " .. assert(me:register()))
    local s = assert(me:connect("bob"))
    print(("connected to bob: %s path to %s, set up in %d ms"):format(s.path, s.remote,
      s.setup_ms))
    assert(s:send("hello bob"))
    print("sent \"hello bob\" (unreliable)")
    for i = 1, TOUCHES do
      local rtt = assert(s:touch("touch #" .. i))
      print(("touch #%d acknowledged, RTT %d ms"):format(i, rtt))
    end
    if not all_echoes:wait(5) then print("not every echo came back") end
    natpunch.sleep(0.1)     -- let the ack of bob's last echo go out
    local st = me:stats()
    print(("socket: %d packets out, %d in, %d touch retransmissions"):format(st.tx_packets,
      st.rx_packets, st.touch_retransmits or 0))
    me:close()
  end, { timeout = 30 })
end

if arg[1] == "--alice" then
  alice(arg[2])
  os.exit(0)
end

---------------------------------------------------------------------------
-- the demo

local lab = require "natpunch.lab"
local proc = require "natpunch.lab.proc"
local json = require "natpunch.json"

local opts = { delay = "20ms", loss = nil }
local i = 1
while arg[i] do
  local k, v = arg[i]:match("^%-%-(%a+)$"), arg[i + 1]
  if (k == "delay" or k == "loss") and v then
    opts[k] = v
    i = i + 2
  else
    io.stderr:write("usage: lua5.4 examples/lab_demo.lua [--delay 20ms] [--loss 0%]\n")
    os.exit(2)
  end
end

local why = lab.unavailable()
if why then
  print("The NAT lab demo needs root (network namespaces and nftables): " .. why .. ".")
  print("Run the loopback demo instead: lua5.4 examples/demo.lua")
  os.exit(CANNOT_RUN)
end

local function clock_ms()
  local f = io.open("/proc/uptime", "r")
  local up = f:read("n")
  f:close()
  return math.floor(up * 1000)
end
local t0 = clock_ms()
local function say(fmt, ...)
  print(("[%5d ms] " .. fmt):format(clock_ms() - t0, ...))
end

local link = { delay = opts.delay, loss = opts.loss }
local t <close> = lab.topology{
  nats = {
    { name = "na", type = "restricted", public = "203.0.113.11", link = link },
    { name = "nb", type = "prc", public = "203.0.113.12", link = link },
  },
  hosts = {
    { name = "s1", public = SERVER:match("^[^:]+") },
    { name = "alice", behind = "na" },
    { name = "bob", behind = "nb" },
  },
}
t:up()
say("lab %s is up", t.prefix)
for _, who in ipairs({ { "alice", "na" }, { "bob", "nb" } }) do
  local nat = t:node(who[2])
  say("  %-5s %s behind %s: %s (%s mapping, %s filtering), public address %s", who[1],
    t:addr(who[1]), who[2], lab.TYPES[nat.type].name, lab.TYPES[nat.type].mapping,
    lab.TYPES[nat.type].filtering, nat.addr)
end
local one_way = require("natpunch.lab.impair").seconds(opts.delay, "--delay") * 1000
say("  rendezvous %s on the internet; each NAT's link adds %s each way%s,", SERVER, opts.delay,
  opts.loss and (" and loses " .. opts.loss) or "")
say("  so a round trip takes %g ms to the rendezvous and %g ms between alice and bob",
  2 * one_way, 4 * one_way)

-- natpunch processes keep a sanitizer runtime that `make sanitize` preloads
-- (the lab drops it for system tools)
local natpunch_cmd = proc.preload({ os.getenv("LUA") or "lua5.4", root .. "/bin/natpunch" })
local function cmd(...)
  local argv = {}
  for _, w in ipairs(natpunch_cmd) do argv[#argv + 1] = w end
  for _, w in ipairs({ ... }) do argv[#argv + 1] = w end
  return argv
end

-- Relay each process's new lines as they come.
local relays = {}
local function relay(name, h, format)
  relays[#relays + 1] = { name = name, h = h, format = format, seen = 0 }
end
local function pump()
  for _, r in ipairs(relays) do
    local out = r.h:output()
    local n = 0
    for line in out:gmatch("([^\n]*)\n") do
      n = n + 1
      if n > r.seen then
        r.seen = n
        local text = r.format(line)
        if text then say("%-10s %s", r.name .. ":", text) end
      end
    end
  end
end

local function server_line(line)
  local ev = line:sub(1, 1) == "{" and json.decode(line)
  if not ev then return nil end
  if ev.event == "listening" then return "listening on " .. ev.address end
  if ev.event == "registered" then
    return ("%s registered from %s (it says its own address is %s)"):format(ev.peer, ev.public,
      ev.private)
  end
  if ev.event == "introduced" then
    return ("introduced %s to %s: each gets the other's addresses and a nonce"):format(ev.from,
      ev.to)
  end
  return nil
end

local function bob_line(line)
  local ev = line:sub(1, 1) == "{" and json.decode(line)
  if not ev then return nil end
  if ev.event == "connected" then
    return ("%s connected: %s path to %s"):format(ev.peer, ev.path, ev.remote)
  elseif ev.event == "message" then
    return ("got %q (%s); echoing it"):format(ev.data, ev.kind)
  elseif ev.event == "registered" then
    return "registered: the rendezvous sees us at " .. ev.public
  end
  return nil
end

local ok, err = pcall(function()
  local rv = t:spawn("s1", cmd("rendezvous", "--listen", SERVER, "--json"))
  relay("rendezvous", rv, server_line)
  assert(rv:expect('"event":"listening"', 10), "the rendezvous did not start: " .. rv:output())
  local bob = t:spawn("bob", cmd("peer", "--server", SERVER, "--id", "bob", "--json"))
  relay("bob", bob, bob_line)
  assert(bob:expect('"event":"registered"', 10), "bob did not register: " .. bob:output())
  pump()
  local a = t:spawn("alice", proc.preload({ os.getenv("LUA") or "lua5.4",
    root .. "/examples/lab_demo.lua", "--alice", SERVER }))
  relay("alice", a, function(line) return line ~= "" and line or nil end)
  for _ = 1, 30 / 0.02 do
    pump()
    if not a:alive() then break end
    proc.sleep(0.02)
  end
  pump()
  assert(not a:alive(), "alice did not finish in 30 s")
  assert(a:output():find("touch #" .. TOUCHES .. " acknowledged", 1, true), "alice failed")
end)
local prefix = t.prefix
t:down()
say("lab %s removed", prefix)
if not ok then
  io.stderr:write("lab demo failed: ", tostring(err), "\n")
  os.exit(1)
end
