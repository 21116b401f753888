-- TURN relay fallback in the NAT lab: two peers behind symmetric NATs
-- (random ports: no direct UDP path, see docs/TRAVERSAL.md) connect through
-- a real coturn turnserver on the lab's internet.  The rendezvous hands out
-- REST-API credentials (natpunch rendezvous --turn --turn-secret); the
-- peers run udp and relay at the same time and end with path "relay", a
-- touch and a message answered.  Everything goes through the command line
-- in the lab's namespaces.
--
-- Then the upgrade (natpunch.upgrade): while a relayed session carries a
-- continuous stream of numbered touches, the lab turns one of the
-- symmetric NATs into a full cone (t:set_nat_type, in the running lab);
-- the background punching finds the direct path, the session moves to it
-- ("path_changed"), and every touch of the stream arrives exactly once and
-- is acked exactly once.  Tags: #lab (needs root).
local lab = require "natpunch.lab"
local proc = require "natpunch.lab.proc"
local util = require "natpunch.lab.matrix.util"
local core = require "natpunch.core"
local labhelper = require "spec.labhelper"

local RV, TURN_IP = "203.0.113.2", "198.51.100.2"
local SECRET = "lab-turn-secret"

local events, natpunch = labhelper.events, labhelper.natpunch

-- spec/upgrade/stream.lua in a lab host, with this process's module paths
local function stream(args)
  local paths = ("package.path = %q; package.cpath = %q"):format(package.path, package.cpath)
  local script = assert(package.searchpath("spec.upgrade.stream", package.path))
  local argv = { os.getenv("LUA") or "lua5.4", "-e", paths, script }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  return proc.preload(argv)
end

labhelper.describe("#lab relay fallback through coturn", function()

  -- coturn on s2 and a rendezvous handing out its credentials on s1
  local function relay_lab(t)
    -- (coturn answers a Binding request from the lab's internet side first)
    local turnd = util.start_coturn(t, "s2", "p", TURN_IP, SECRET, "coturn-relay")
    local rv = t:spawn("s1", natpunch({ "rendezvous", "--listen", RV .. ":3478", "--json",
      "--turn", TURN_IP .. ":3478", "--turn-secret", SECRET }))
    assert(rv:expect('"event":"listening"', 10), rv:output())
    return turnd, rv
  end

  it("symmetric x symmetric connects with path relay; data and touches flow", function()
    local t <close> = lab.topology(lab.standard{ a = "sym", b = "sym" })
    t:up()
    local turnd, rv = relay_lab(t)
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
    io.stderr:write(("\n  sym/sym via relay: setup %d ms (relay and udp in parallel), touch rtt %s ms\n")
      :format(ev.connected.setup_ms, tostring(ev.touch_acked.rtt_ms)))
    -- the relayed address is coturn's, on the lab's internet
    assert.truthy(ev.connected.remote:find(TURN_IP, 1, true), ev.connected.remote)
    bob:stop()
    rv:stop()
    turnd:stop()
  end)

  -- One run of the upgrade: the stream starts over the relay; once `after`
  -- touches are resolved the lab turns bob's NAT into a full cone.
  -- connect_timeout decides which part of the peers finds the direct path:
  -- the direct methods of the connect itself (long) or the slower punch in
  -- the background after them (short).  With a delay on the NATs' links,
  -- touches are in flight when the path changes, and the two sides switch
  -- at different moments.
  local function upgrade_run(connect_timeout, after, link)
    local t <close> = lab.topology(lab.standard{ a = "sym", b = "sym", link = link })
    t:up()
    local turnd, rv = relay_lab(t)
    local N, GAP_MS = 600, 15
    local server = RV .. ":3478"
    local bob = t:spawn("b", stream({ "wait", "bob", server, "40", tostring(connect_timeout) }))
    assert(bob:expect('"event":"relay_allocated"', 15), bob:output())
    local alice = t:spawn("a", stream({ "connect", "alice", server, "bob", tostring(N), tostring(GAP_MS),
      tostring(connect_timeout) }))
    assert(alice:expect('"event":"connected"', 20), alice:output() .. "\n--- bob\n" .. bob:output())
    assert(alice:expect('"resolved":' .. after .. '[,}]', 30), alice:output())
    local opened = core.hrtime() // 1000000
    t:set_nat_type("nb", "full")
    assert(alice:expect('"event":"sent"', 60), alice:output() .. "\n--- bob\n" .. bob:output())
    assert(bob:expect('"event":"received"', 45), bob:output())
    local ev, bev = events(alice:output()), events(bob:output())
    local why = alice:output() .. "\n--- bob\n" .. bob:output()
    -- relayed first (at once: the relay does not wait for udp), then direct
    assert.equal("relay", ev.connected.path, why)
    assert.equal("relay", ev.connected.method, why)
    assert.truthy(ev.path_changed, "no upgrade\n" .. why)
    assert.equal("relay", ev.path_changed.from)
    assert.equal("public", ev.path_changed.path, why)
    assert.equal("udp", ev.path_changed.method)
    assert.truthy(ev.path_changed.remote:find(t:public("nb"), 1, true), ev.path_changed.remote)
    assert.truthy(bev.path_changed, "bob did not upgrade\n" .. why)
    assert.equal("public", ev.sent.path)
    -- the switch came after the lab opened the way, not before
    assert.is_true(ev.path_changed.hr >= opened)
    -- every touch acked once at alice, delivered once at bob
    assert.same({}, ev.sent.failed)
    assert.equal(N, #ev.sent.acks)
    assert.equal(N, #bev.received.counts)
    for i = 1, N do
      assert.equal(1, ev.sent.acks[i], "acks of touch " .. i)
      assert.equal(1, bev.received.counts[i], "deliveries of touch " .. i)
    end
    -- the touch layer itself delivered each once: no replayed ciphertext
    -- reached the session (its replay window would have hidden a duplicate)
    assert.equal(0, bev.received.counters.bad_data)
    assert.equal(N, bev.received.counters.touch_delivered)
    -- nothing went through the relay after the switch: the path engine took it
    assert.equal(ev.path_changed.counters.relay_out, ev.sent.counters.relay_out)
    assert.is_true(ev.sent.counters.path_out > 0 and bev.received.counters.path_in > 0)
    local c = ev.sent.counters
    io.stderr:write(("\n  sym/sym upgrade (connect_timeout %d s, link delay %s): setup %d ms via relay; "
      .. "lab opened at touch %d, path_changed %d ms later (alice), %d ms (bob); %d touches once each; "
      .. "alice: %d retransmits, %d relayed datagrams; bob: %d duplicates dropped, %d unsolicited\n")
      :format(connect_timeout, link and link.delay or "none", ev.connected.setup_ms, after, ev.path_changed.hr - opened,
        bev.path_changed.hr - opened, N, c.touch_retransmits, c.relay_out,
        bev.received.counters.touch_duplicates, bev.received.counters.touch_unsolicited))
    alice:stop()
    bob:stop()
    rv:stop()
    turnd:stop()
  end

  it("a relayed session upgrades to direct when the lab opens the way (found by the connect's punch)",
    function() upgrade_run(30, 150) end)

  it("a relayed session upgrades to direct when the lab opens the way (found by the background punch)",
    function() upgrade_run(2, 300, { delay = "20ms" }) end)
end, { tools = { "turnserver", "turnutils_stunclient" }, hint = "coturn: make deps" })
