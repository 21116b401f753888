-- TURN relay fallback in the NAT lab: two peers behind symmetric NATs
-- (random ports: no direct UDP path, see docs/TRAVERSAL.md) connect through
-- a real coturn turnserver on the lab's internet.  The rendezvous hands out
-- REST-API credentials (natpunch rendezvous --turn --turn-secret); the
-- peers try udp, then relay, and end with path "relay", a touch and a
-- message answered.  Everything goes through the command line in the lab's
-- namespaces.  Tags: #lab (needs root).
local lab = require "natpunch.lab"
local matrix = require "natpunch.lab.matrix"
local proc = require "natpunch.lab.proc"
local state = require "natpunch.lab.state"
local helper = require "spec.helper"

local RV, TURN_IP = "203.0.113.2", "198.51.100.2"
local SECRET = "lab-turn-secret"

local function skip_reason()
  local why = lab.unavailable()
  if why then return "needs root: " .. why end
  if not os.execute("command -v turnserver >/dev/null 2>&1") then return "needs coturn (make deps)" end
  return nil
end

local function coturn_conf(prefix)
  local base = state.log_path(prefix, "coturn-relay")
  for _, suffix in ipairs({ ".conf", ".log", ".pid", ".db" }) do state.append(prefix, "log", base .. suffix) end
  local f = assert(io.open(base .. ".conf", "w"))
  f:write(table.concat({
    "listening-port=3478", "listening-ip=" .. TURN_IP, "relay-ip=" .. TURN_IP,
    "min-port=49152", "max-port=49252", "use-auth-secret", "static-auth-secret=" .. SECRET,
    "realm=lab.natpunch", "no-tcp", "no-tls", "no-dtls", "no-cli", "no-tcp-relay",
    "log-file=" .. base .. ".log", "simple-log", "pidfile=" .. base .. ".pid", "userdb=" .. base .. ".db", "",
  }, "\n"))
  f:close()
  return base .. ".conf"
end

local function events(text)
  local out = {}
  for _, ev in ipairs(helper.json_lines(text)) do out[ev.event] = out[ev.event] or ev end
  return out
end

local reason = skip_reason()
local lab_it = reason and pending or it

describe("#lab relay fallback through coturn", function()
  if reason then
    pending(reason)
    return
  end

  lab_it("symmetric x symmetric connects with path relay; data and touches flow", function()
    local t <close> = lab.topology(lab.standard{ a = "sym", b = "sym" })
    t:up()
    local cmd = matrix.command()
    local function natpunch(args)
      local argv = {}
      for _, w in ipairs(cmd) do argv[#argv + 1] = w end
      for _, w in ipairs(args) do argv[#argv + 1] = w end
      return proc.preload(argv)
    end
    local turnd = t:spawn("s2", { "turnserver", "-c", coturn_conf(t.prefix) })
    local rv = t:spawn("s1", natpunch({ "rendezvous", "--listen", RV .. ":3478", "--json",
      "--turn", TURN_IP .. ":3478", "--turn-secret", SECRET }))
    assert(rv:expect('"event":"listening"', 10), rv:output())
    -- coturn answers a Binding request from the lab's internet side
    local ready = false
    for _ = 1, 50 do
      local out = t:exec("p", { "timeout", "2", "turnutils_stunclient", "-p", "3478", TURN_IP })
      if out:match("reflexive addr") then ready = true break end
      proc.sleep(0.1)
    end
    assert(ready, "coturn did not start: " .. turnd:output())
    local bob = t:spawn("b", natpunch({ "peer", "--server", RV .. ":3478", "--id", "bob", "--json",
      "--timeout", "40" }))
    assert(bob:expect('"event":"registered"', 15), bob:output())
    assert(bob:expect('"event":"relay_allocated"', 15), bob:output())
    local out, code = t:exec("a", natpunch({ "peer", "--server", RV .. ":3478", "--id", "alice",
      "--connect", "bob", "--touch", "over the relay", "--timeout", "25", "--json" }))
    local ev = events(out)
    assert.equal(0, code, out .. "\n--- bob\n" .. bob:output() .. "\n--- rendezvous\n" .. rv:output())
    assert.truthy(ev.relay_allocated, out)
    assert.equal("relay", ev.connected.path)
    assert.equal("relay", ev.connected.method)
    -- both symmetric with random ports: predict and birthday are left out
    assert.equal("udp,relay", ev.connected.methods, out)
    assert.truthy(ev.touch_acked, out)
    assert.equal("over the relay", ev.message and ev.message.data, out)
    io.stderr:write(("\n  sym/sym via relay: setup %d ms (udp gave up after its 5 s budget), touch rtt %s ms\n")
      :format(ev.connected.setup_ms, tostring(ev.touch_acked.rtt_ms)))
    -- the relayed address is coturn's, on the lab's internet
    assert.truthy(ev.connected.remote:find(TURN_IP, 1, true), ev.connected.remote)
    bob:stop()
    rv:stop()
    turnd:stop()
  end)
end)
