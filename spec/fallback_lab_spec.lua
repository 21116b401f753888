-- The relay fallback (natpunch.fallback) in the NAT lab: two peers behind
-- port-restricted cone NATs connect directly (udp, path "public"), with a
-- real coturn on the lab's internet and a rendezvous handing out its
-- credentials, so both also hold a TURN allocation.  While alice streams
-- numbered touches to bob, the lab cuts the direct path (an nftables table
-- of bob's NAT drops everything to and from alice's NAT; the rendezvous
-- and coturn stay reachable).  alice finds the path dead (touches in
-- flight, nothing back for `fallback` seconds), moves the session to the
-- relay and tells bob over it; both report path_changed from "public" to
-- "relay", and every touch of the stream is acked once at alice and
-- delivered once at bob.  Lab namespaces: prefix "fbl" ("fb" alone
-- would match the host's ifb links in assert_gone).  Tags: #lab (needs
-- root).
local lab = require "natpunch.lab"
local proc = require "natpunch.lab.proc"
local util = require "natpunch.lab.matrix.util"
local core = require "natpunch.core"
local labhelper = require "spec.labhelper"

local RV, TURN_IP = "203.0.113.2", "198.51.100.2"
local SECRET = "lab-fallback-secret"

local events, natpunch = labhelper.events, labhelper.natpunch

-- spec/upgrade/stream.lua in a lab host, with this process's module paths
local function stream(args)
  local paths = ("package.path = %q; package.cpath = %q"):format(package.path, package.cpath)
  local script = assert(package.searchpath("spec.upgrade.stream", package.path))
  local argv = { os.getenv("LUA") or "lua5.4", "-e", paths, script }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  return proc.preload(argv)
end

-- Cut every packet between NAT `nat` and address `other` (both ways), in
-- one table of nat's namespace that goes with the lab.
local function cut(t, nat, other)
  for _, cmd in ipairs({
    { "nft", "add", "table", "ip", "fbcut" },
    { "nft", "add", "chain", "ip", "fbcut", "pre", "{ type filter hook prerouting priority -400 ; }" },
    { "nft", "add", "rule", "ip", "fbcut", "pre", "ip", "saddr", other, "drop" },
    { "nft", "add", "rule", "ip", "fbcut", "pre", "ip", "daddr", other, "drop" },
  }) do
    local out, code = t:exec(nat, cmd)
    assert(code == 0, table.concat(cmd, " ") .. ": " .. out)
  end
end

labhelper.describe("#lab relay fallback of a direct session", function()

  local function run(after, link)
    local t <close> = lab.topology(lab.standard{ a = "prc", b = "prc", link = link, prefix = "fbl" })
    t:up()
    local turnd = util.start_coturn(t, "s2", "p", TURN_IP, SECRET, "coturn-fallback")
    local rv = t:spawn("s1", natpunch({ "rendezvous", "--listen", RV .. ":3478", "--json",
      "--turn", TURN_IP .. ":3478", "--turn-secret", SECRET }))
    assert(rv:expect('"event":"listening"', 10), rv:output())
    local N, GAP_MS = 400, 15
    local server = RV .. ":3478"
    local bob = t:spawn("b", stream({ "wait", "bob", server, "25", "10" }))
    assert(bob:expect('"event":"relay_allocated"', 15), bob:output())
    local alice = t:spawn("a", stream({ "connect", "alice", server, "bob", tostring(N), tostring(GAP_MS), "10" }))
    assert(alice:expect('"event":"connected"', 20), alice:output() .. "\n--- bob\n" .. bob:output())
    assert(alice:expect('"resolved":' .. after .. '[,}]', 30), alice:output())
    local cut_at = core.hrtime() // 1000000
    cut(t, "nb", t:public("na"))
    assert(alice:expect('"event":"sent"', 60), alice:output() .. "\n--- bob\n" .. bob:output())
    assert(bob:expect('"event":"received"', 45), bob:output())
    local ev, bev = events(alice:output()), events(bob:output())
    local why = alice:output() .. "\n--- bob\n" .. bob:output()
    -- direct first (both allocated on coturn, the direct path won)
    assert.truthy(ev.relay_allocated, why)
    assert.equal("public", ev.connected.path, why)
    assert.equal("udp", ev.connected.method, why)
    assert.truthy(ev.path_changed, "no fallback\n" .. why)
    assert.equal("public", ev.path_changed.from, why)
    assert.equal("relay", ev.path_changed.path, why)
    assert.equal("relay", ev.path_changed.method)
    assert.truthy(ev.path_changed.relayed:find(TURN_IP, 1, true), ev.path_changed.relayed)
    assert.truthy(ev.path_changed.remote:find(t:public("nb"), 1, true), ev.path_changed.remote)
    assert.truthy(bev.path_changed, "bob did not fall back\n" .. why)
    assert.equal("public", bev.path_changed.from, why)
    assert.equal("relay", bev.path_changed.path, why)
    -- alice found the death, bob followed her notice
    assert.truthy(ev.path_changed.reason:find("nothing from the direct path", 1, true), ev.path_changed.reason)
    assert.equal("the other peer moved to the relay", bev.path_changed.reason)
    assert.is_nil(ev.fallback_failed, why)
    assert.is_nil(bev.fallback_failed, why)
    -- the switch came after the cut, not before
    assert.is_true(ev.path_changed.hr >= cut_at)
    assert.is_true(bev.path_changed.hr >= cut_at)
    assert.equal("relay", ev.sent.path)
    -- every touch acked once at alice, delivered once at bob
    assert.same({}, ev.sent.failed)
    assert.equal(N, #ev.sent.acks)
    assert.equal(N, #bev.received.counts)
    for i = 1, N do
      assert.equal(1, ev.sent.acks[i], "acks of touch " .. i)
      assert.equal(1, bev.received.counts[i], "deliveries of touch " .. i)
    end
    -- the touch layer delivered each once (no replayed ciphertext reached
    -- the session's window), and no notice reached it as a message
    assert.equal(0, bev.received.counters.bad_data)
    assert.equal(N, bev.received.counters.touch_delivered)
    -- after the switch the path engine carried the session through the relay
    assert.is_true(ev.sent.counters.relay_out > ev.path_changed.counters.relay_out)
    assert.is_true(ev.sent.counters.path_out > 0 and bev.received.counters.path_in > 0)
    local c = ev.sent.counters
    io.stderr:write(("\n  prc/prc fallback (link delay %s): cut at touch %d, path_changed %d ms later (alice), "
      .. "%d ms (bob); %d touches once each; alice: %d retransmits, %d relayed datagrams; "
      .. "bob: %d duplicates dropped, %d unsolicited\n")
      :format(link and link.delay or "none", after, ev.path_changed.hr - cut_at, bev.path_changed.hr - cut_at, N,
        c.touch_retransmits, c.relay_out, bev.received.counters.touch_duplicates,
        bev.received.counters.touch_unsolicited))
    alice:stop()
    bob:stop()
    rv:stop()
    turnd:stop()
    t:down()
    labhelper.assert_gone("fbl")
  end

  it("a direct session falls back to the relay when its path is cut", function() run(150) end)

  it("a direct session falls back to the relay when its path is cut (20 ms per NAT link)",
    function() run(150, { delay = "20ms" }) end)
end, { tools = { "turnserver", "turnutils_stunclient" }, hint = "coturn: make deps" })
