-- The keepalive experiment (seed 000): natpunch.keepalive's daemon and client
-- over real sockets on loopback (no NAT: every probe survives), the daemon's
-- rules, the SVG, the CLI and the example; and with root in the NAT lab: the
-- measured mapping lifetime matches the NAT's conntrack UDP timeout (20 s
-- and 45 s, both at once on two NATs) within 10%, and outbound and inbound
-- traffic are shown to refresh a Linux conntrack mapping.  Tags: #lab #slow
-- (the lab part takes about 50 s).
local helper = require "spec.helper"
local natpunch = require "natpunch"
local core = natpunch.core
local keepalive = require "natpunch.keepalive"

describe("natpunch.keepalive (loopback)", function()
  it("staggers the delays 0.5 s apart, then 5% apart, up to max", function()
    local d = keepalive.delays(1, 60)
    assert.equal(1, d[1])
    assert.equal(1.5, d[2])
    assert.equal(60, d[#d])
    for i = 2, #d do
      local gap = d[i] - d[i - 1]
      assert.is_true(gap >= 0.5 - 1e-9 or i == #d)
      assert.is_true(gap <= math.max(0.5, 0.05 * d[i - 1]) + 0.002, "gap at " .. d[i])
    end
    assert.is_true(#d < 60)
  end)

  it("every probe survives without a NAT: the lifetime is above max", function()
    helper.run(function()
      local d = assert(keepalive.daemon{ listen = "127.0.0.1:0" })
      local seen = {}
      local r = assert(keepalive{ server = d:address(), max = 2, on_progress = function(p) seen[#seen + 1] = p end })
      assert.is_nil(r.mapping_lifetime_s)
      assert.equal(2, r.lower_s)
      assert.equal(3, #r.probes)
      for _, p in ipairs(r.probes) do assert.is_true(p.survived) end
      assert.is_true(#seen >= 1)
      local st = d:stats()
      assert.equal(3, st.probes)
      assert.equal(0, st.pending)
      d:close()
    end, 15)
  end)

  it("probes only for the IP that touched, and drops junk", function()
    helper.run(function()
      local d = assert(keepalive.daemon{ listen = "127.0.0.1:0" })
      local ip, port = natpunch.addr.parse(d:address())
      local m = core.udp()
      assert(m:bind("127.0.0.1", 0))
      local stranger = core.udp()
      assert(stranger:bind("127.0.0.2", 0))
      local replies, probes = {}, 0
      stranger:recv_start(function(_, data) replies[#replies + 1] = data end, { raw = true })
      m:recv_start(function(_, data) if data:match("^NPKA probe") then probes = probes + 1 end end, { raw = true })
      m:send(ip, port + 1, "NPKA touch s1 1")
      natpunch.sleep(0.05)
      stranger:send(ip, port, "NPKA arm s1 1 0")        -- another IP: refused
      stranger:send(ip, port, "NPKA arm s1 1 99999999") -- above an hour: dropped
      stranger:send(ip, port, "junk")
      stranger:send(ip, port + 1, "NPKA touch " .. string.rep("x", 40) .. " 1") -- bad token
      natpunch.sleep(0.3)
      assert.same({ "NPKA unknown s1 1" }, replies)
      assert.equal(0, probes)
      assert.equal(3, d:stats().dropped)
      d:close()
      m:close()
      stranger:close()
    end)
  end)

  it("draws an SVG with every probe and the estimate", function()
    local svg = keepalive.svg({ mapping_lifetime_s = 20.3, probes = {
      { delay_s = 10, survived = true }, { delay_s = 19.8, survived = true }, { delay_s = 20.8, survived = false },
    } })
    assert.matches("^<svg ", svg)
    assert.matches("</svg>\n$", svg)
    local _, circles = svg:gsub("<circle ", "")
    assert.equal(3, circles)
    assert.truthy(svg:find("lifetime 20.3 s", 1, true))
  end)

  it("peer{ keepalive = 'auto' } measures after registering and reports it", function()
    helper.run(function()
      local rv = assert(natpunch.rendezvous{ listen = "127.0.0.1:0" })
      local d = assert(keepalive.daemon{ listen = "127.0.0.1:0" })
      local got = natpunch.future()
      local p = natpunch.peer{ server = rv:address(), id = "bob", keepalive = "auto", keepalive_server = d:address(),
        keepalive_max = 1.5, on_event = function(ev) if ev.event == "keepalive" then got:set(ev) end end }
      assert(p:register())
      assert(got:wait(10))
      assert.equal(1.5, p.keepalive_result.lower_s)   -- no NAT here: above max, refresh unchanged
      assert.is_nil(p.refresh)
      p:close()
      rv:close()
      d:close()
    end, 15)
    assert.equal(9, keepalive.refresh_interval(12.5))
    assert.equal(8, keepalive.refresh_interval(120, 10))
    assert.equal(1, keepalive.refresh_interval(1))
  end)

  it("the example measures one mapping by hand", function()
    local p = io.popen(helper.sh("timeout 20 env " .. helper.cli():gsub(" bin/natpunch$", "")
      .. " examples/keepalive.lua 2>&1"))
    local out = p:read("a")
    p:close()
    assert.equal("mapping alive after 2 s idle\n", out)
  end)
end)

describe("natpunch keepalive / keepalive-daemon (CLI, loopback)", function()
  local cli = helper.cli()
  it("prints a JSON result line and writes the plot", function()
    local dir = helper.tmpdir("ka")
    os.execute(helper.sh(cli .. " keepalive-daemon --listen 127.0.0.1:0 --json > " .. dir .. "/d 2>&1 & echo $! > "
      .. dir .. "/pid"))
    local ev
    for _ = 1, 100 do
      ev = helper.json_lines(helper.read_file(dir .. "/d"))[1]
      if ev then break end
      os.execute("sleep 0.05")
    end
    local p = io.popen(helper.sh(cli .. " keepalive --server " .. (ev and ev.address or "127.0.0.1:9")
      .. " --max 1.5 --json --plot " .. dir .. "/k.svg"))
    local out = p:read("a")
    p:close()
    local svg = helper.read_file(dir .. "/k.svg")
    os.execute("kill " .. helper.read_file(dir .. "/pid"):match("%d+"))
    os.execute("rm -rf " .. helper.q(dir))
    assert.equal("listening", ev.event)
    local res = helper.json_lines(out)
    assert.equal(1, #res)
    assert.equal("result", res[1].event)
    assert.equal(2, #res[1].probes)
    assert.matches("^<svg", svg)
  end)

  it("fails with a failed event when no daemon answers, and rejects bad usage", function()
    local silent = core.udp()
    assert(silent:bind("127.0.0.1", 0))
    local _, port = silent:getsockname()
    local p = io.popen(helper.sh(cli .. " keepalive --server 127.0.0.1:" .. port .. " --max 1 --json; echo rc=$?"))
    local out = p:read("a")
    p:close()
    silent:close()
    assert.truthy(out:find('"event":"failed"', 1, true))
    assert.truthy(out:find("rc=1", 1, true))
    for _, args in ipairs({ "keepalive", "keepalive --server 127.0.0.1:1 --max 0",
      "keepalive-daemon --probe-port 0" }) do
      local q = io.popen(helper.sh(cli .. " " .. args .. " >/dev/null 2>&1; echo $?"))
      local code = q:read("a")
      q:close()
      assert.equal("2", code:match("%d+"), args)
    end
  end)
end)

---------------------------------------------------------------------------
-- the lab

local lab = require "natpunch.lab"
local proc = require "natpunch.lab.proc"
local labhelper = require "spec.labhelper"

labhelper.describe("keepalive in the lab: the lifetime is the conntrack UDP timeout #lab #slow", function()
  local timeouts = { 20, 45 }
  local IDLE = 60
  local t, results, peers = nil, {}, {}
  local function cmd(...) return labhelper.natpunch({ ... }) end
  setup(function()
    local desc = { nats = {}, hosts = { { name = "s1", public = "203.0.113.2" },
      { name = "p", public = "203.0.113.50" } } }
    for i, to in ipairs(timeouts) do
      desc.nats[i] = { name = "n" .. i, type = "prc", udp_timeout = to, public = "203.0.113." .. (10 + i),
        lan = "198.18." .. i .. ".0/24" }
      desc.hosts[#desc.hosts + 1] = { name = "h" .. i, behind = "n" .. i }
    end
    -- a NAT that forgets a mapping 20 s after its last packet, replied or not,
    -- with two peers behind it: bob (keepalive auto) and carol (the default
    -- refresh, ttl/3 = 50 s)
    desc.nats[3] = { name = "n3", type = "prc", udp_timeout = 20, udp_stream_timeout = 20,
      public = "203.0.113.13", lan = "198.18.3.0/24" }
    desc.hosts[#desc.hosts + 1] = { name = "bob", behind = "n3" }
    desc.hosts[#desc.hosts + 1] = { name = "carol", behind = "n3" }
    t = lab.topology(desc)
    t:up()
    local d = t:spawn("s1", cmd("keepalive-daemon", "--listen", "203.0.113.2:3490", "--json"))
    assert(d:expect('"event":"listening"', 10), d:output())
    local rv = t:spawn("s1", cmd("rendezvous", "--listen", "203.0.113.2:3478", "--ttl", "150", "--json"))
    assert(rv:expect('"event":"listening"', 10), rv:output())
    local clients = {}
    for i, to in ipairs(timeouts) do
      local argv = cmd("keepalive", "--server", "203.0.113.2:3490", "--max", tostring(3 * to), "--json")
      if i == 1 then argv[#argv + 1] = "--refresh" end
      clients[i] = t:spawn("h" .. i, argv)
    end
    peers.bob = t:spawn("bob", cmd("peer", "--server", "203.0.113.2:3478", "--id", "bob", "--keepalive", "auto",
      "--keepalive-server", "203.0.113.2:3490", "--json"))
    peers.carol = t:spawn("carol", cmd("peer", "--server", "203.0.113.2:3478", "--id", "carol", "--json"))
    -- bob has measured and now refreshes faster; from then on both stay
    -- idle IDLE s (while the other measurements go on)
    peers.bob_measured = peers.bob:expect('"event":"keepalive"', 60)
    local idle_from = os.time()
    for i, h in ipairs(clients) do
      h:wait(4 * timeouts[i] + 30)
      results[i] = helper.json_lines(h:output())[1] or {}
      results[i].output = h:output()
    end
    proc.sleep(math.max(0, idle_from + IDLE - os.time()))
    local to_bob = t:spawn("p", cmd("peer", "--server", "203.0.113.2:3478", "--id", "alice", "--connect", "bob",
      "--touch", "hi", "--timeout", "5", "--json"))
    local to_carol = t:spawn("p", cmd("peer", "--server", "203.0.113.2:3478", "--id", "alice2", "--connect",
      "carol", "--touch", "hi", "--timeout", "5", "--json"))
    to_bob:wait(20)
    to_carol:wait(20)
    peers.to_bob, peers.to_carol = to_bob:output(), to_carol:output()
  end)
  teardown(function()
    if t then t:down() end
  end)

  for i, to in ipairs(timeouts) do
    it(("measures %d s within 10%%"):format(to), function()
      local r = results[i]
      assert.equal("result", r.event, r.output)
      assert.is_true(math.abs(r.mapping_lifetime_s - to) <= 0.1 * to, r.output)
      assert.is_true(r.lower_s <= to + 0.5 and r.upper_s >= to - 0.5, r.output)
      local lifetime_phase = r.elapsed_s - (r.refresh and (r.refresh.probe_s + 1) or 0)
      io.stderr:write(("\nkeepalive lab: conntrack timeout %d s -> %.1f s [%.2f, %.2f], %d mappings, "
        .. "run %.1f s (lifetime phase about %.1f s = %.2fx the timeout)\n"):format(to, r.mapping_lifetime_s,
        r.lower_s, r.upper_s, r.mappings, r.elapsed_s, lifetime_phase, lifetime_phase / to))
    end)
  end

  it("shows outbound and inbound refresh on Linux conntrack (and the control expires)", function()
    local r = results[1]
    assert.equal("result", r.event, r.output)
    assert.is_true(r.refresh.control_expired, r.output)
    assert.is_true(r.refresh.outbound, r.output)
    assert.is_true(r.refresh.inbound, r.output)
  end)

  it("a peer with keepalive = auto behind a 20 s NAT, idle for 60 s, can be connected to", function()
    local ev
    for _, e in ipairs(helper.json_lines(peers.bob:output())) do if e.event == "keepalive" then ev = e end end
    assert.truthy(ev, peers.bob:output())
    assert.is_true(math.abs(ev.mapping_lifetime_s - 20) <= 2, peers.bob:output())
    assert.is_true(ev.refresh_s < 20, peers.bob:output())
    local connected = false
    for _, e in ipairs(helper.json_lines(peers.to_bob)) do if e.event == "connected" then connected = true end end
    assert.is_true(connected, peers.to_bob .. "\n--- bob\n" .. peers.bob:output())
  end)

  it("while one with the default refresh (50 s) cannot: its mapping expired", function()
    local connected = false
    for _, e in ipairs(helper.json_lines(peers.to_carol)) do if e.event == "connected" then connected = true end end
    assert.is_false(connected, peers.to_carol)
  end)
end)
