-- The NAT lab: descriptions (no root needed), and with root the real thing:
-- each NAT type's RFC 4787 mapping and filtering behaviour as seen from two
-- public hosts, hairpinning, port preservation, double NAT, the UDP mapping
-- timeout, and clean teardown (also after a crash).
--
-- The probes are natpunch.lab.probe (natpunch.core sockets) run inside the lab hosts.
local lab = require "natpunch.lab"
local nft = require "natpunch.lab.nft"
local impair = require "natpunch.lab.impair"
local proc = require "natpunch.lab.proc"
local state = require "natpunch.lab.state"
local nat_types = require "natpunch.lab.nat_types"
local helper = require "spec.helper"
local labhelper = require "spec.labhelper"

local S1, S2 = "203.0.113.2", "198.51.100.2"

-- describe() whose tests all become pending with the reason when the lab
-- cannot run on this machine.
local lab_describe = labhelper.describe

-- "MAPPED target ip port" lines -> { [target] = "ip:port" }
local function mapped(out)
  local m = {}
  for target, ip, port in out:gmatch("MAPPED (%S+) (%S+) (%d+)") do
    m[target] = ip .. ":" .. port
  end
  return m
end

-- "RECV ip port payload" lines -> { {ip=, port=, payload=}, ... }
local function received(out)
  local r = {}
  for ip, port, payload in out:gmatch("RECV (%S+) (%d+) ([^\n]*)") do
    r[#r + 1] = { ip = ip, port = tonumber(port), payload = payload }
  end
  return r
end

local function got(out, payload)
  for _, r in ipairs(received(out)) do
    if r.payload == payload then return r end
  end
  return nil
end

local function port_of(endpoint) return tonumber(endpoint:match(":(%d+)$")) end
local function ip_of(endpoint) return endpoint:match("^(.*):%d+$") end

-- Nothing of the lab with this prefix is left on the machine (nor an nft
-- table in this namespace).
local function assert_gone(prefix) labhelper.assert_gone(prefix, { nft = true }) end

describe("natpunch.lab descriptions", function()
  it("fills in the standard topology's addresses", function()
    local t = lab.topology(lab.standard{ a = "prc", b = "sym", prefix = "npspec" })
    assert.equal("npspec-a", t:ns("a"))
    assert.equal("npspec-inet", t:ns("inet"))
    assert.equal("203.0.113.11", t:public("na"))
    assert.equal("203.0.113.12", t:public("nb"))
    assert.equal("198.18.1.2", t:addr("a"))
    assert.equal("198.18.1.3", t:addr("a2"))
    assert.equal("198.18.2.2", t:addr("b"))
    -- the inner NAT of the double NAT sits on na's LAN, from the top down
    assert.equal("198.18.1.254", t:addr("nc"))
    assert.equal("198.18.3.2", t:addr("c"))
    assert.equal(S1, t:addr("s1"))
    assert.equal(S2, t:addr("s2"))
    assert.equal("sym", t:node("nb").type)
    assert.is_false(t:node("nb").port_preservation)
    assert.is_true(t:node("na").port_preservation)
  end)

  it("refuses every address outside the lab's ranges", function()
    for _, bad in ipairs({ "10.0.0.1", "192.168.1.1", "8.8.8.8", "203.0.114.5",
      "203.0.113.1", "198.51.100.255", "nonsense" }) do
      assert.has_error(function()
        lab.topology{ hosts = { { name = "x", public = bad } } }
      end)
    end
    for _, bad in ipairs({ "10.0.0.0/24", "192.168.0.0/24", "198.20.0.0/24",
      "198.18.1.5/24" }) do
      assert.has_error(function()
        lab.topology{ nats = { { name = "n", lan = bad } } }
      end)
    end
    assert.has_error(function()
      lab.topology{ nats = { { name = "n", lan = "198.18.1.0/24" } },
        hosts = { { name = "h", behind = "n", addr = "198.18.2.9" } } }
    end)
    assert.has_error(function()
      lab.topology{ nats = { { name = "n1", lan = "198.18.1.0/24" },
        { name = "n2", lan = "198.18.0.0/16" } } }
    end)
  end)

  it("refuses bad names, types and link options", function()
    assert.has_error(function() lab.topology{ hosts = { { name = "Bad" } } } end)
    assert.has_error(function() lab.topology{ hosts = { { name = "inet" } } } end)
    assert.has_error(function()
      lab.topology{ hosts = { { name = "a" }, { name = "a" } } }
    end)
    assert.has_error(function()
      lab.topology{ nats = { { name = "n", type = "cone-ish" } } }
    end)
    assert.has_error(function()
      lab.topology{ hosts = { { name = "a", behind = "nowhere" } } }
    end)
    assert.has_error(function()
      lab.topology{ hosts = { { name = "a", link = { delay = "50parsecs" } } } }
    end)
    assert.has_error(function()
      lab.topology{ hosts = { { name = "a", link = { loss = "120%" } } } }
    end)
    assert.has_error(function()
      lab.topology{ hosts = { { name = "a", link = { delay = "1ms", jitter = "5ms" } } } }
    end)
  end)

  it("knows each type by seed 001's and RFC 4787's names", function()
    assert.equal("full", lab.canonical_type("full-cone"))
    assert.equal("restricted", lab.canonical_type("restricted-cone"))
    assert.equal("prc", lab.canonical_type("port-restricted"))
    assert.equal("sym", lab.canonical_type("symmetric"))
    assert.equal("prc", lab.canonical_type("eim-apdf"))
    assert.equal("address-dependent", lab.TYPES.restricted.filtering)
    assert.equal("address-and-port-dependent", lab.TYPES.sym.mapping)
  end)

  it("writes the nft rules each behaviour needs", function()
    local function rules(kind, extra)
      local n = { type = kind, public = "203.0.113.11", timeout = 30,
        port_preservation = kind ~= "sym" }
      for k, v in pairs(extra or {}) do n[k] = v end
      return nft.ruleset(n)
    end
    local full, restricted = rules("full"), rules("restricted")
    local prc, sym = rules("prc"), rules("sym")
    -- unsolicited inbound is translated only where filtering is not per port
    assert.truthy(full:find('iifname "wan" ip daddr 203.0.113.11', 1, true))
    assert.truthy(restricted:find('iifname "wan" ip daddr 203.0.113.11', 1, true))
    assert.falsy(prc:find('iifname "wan" ip daddr', 1, true))
    assert.falsy(sym:find('iifname "wan" ip daddr', 1, true))
    assert.truthy(restricted:find("@contacted accept", 1, true))
    assert.truthy(sym:find("fully-random", 1, true))
    assert.falsy(prc:find("jhash", 1, true))
    assert.truthy(rules("prc", { port_preservation = false }):find("jhash", 1, true))
    assert.truthy(rules("sym", { port_preservation = true }):find("@bound", 1, true))
    assert.falsy(prc:find('iifname "lan" ip daddr', 1, true))
    assert.truthy(rules("prc", { hairpin = true }):find('iifname "lan" ip daddr', 1, true))
  end)

  it("parses impairment options into netem and wire arguments", function()
    local p = impair.parse({ delay = "50ms", jitter = "5ms", loss = "5%",
      dup = "1%", reorder = "2%", rate = "10mbit" }, "x")
    assert.equal(0.05, p.delay)
    assert.equal(1e7, p.rate)
    assert.same({ "delay", "50ms", "5ms", "loss", "5%", "duplicate", "1%",
      "reorder", "2%", "rate", "10000000bit" }, impair.netem_args(p))
    assert.same({ "--delay", "50ms", "--jitter", "5ms", "--loss", "5%",
      "--dup", "1%", "--reorder", "2%", "--rate", "10000000bit" },
      impair.wire_args(p))
    assert.is_nil(impair.parse({}, "x"))
  end)
end)

lab_describe("natpunch.lab NAT types (RFC 4787 mapping and filtering)", function()
  -- Every behaviour of the registry, checked against its own ground truth.
  local TYPES = nat_types.ids()
  -- filtering: does a packet reach the host from an endpoint it has not
  -- contacted, on the same address (other port), or another address?
  local FILTER = {
    ["endpoint-independent"] = { same_addr = true, other_addr = true },         -- EIF
    ["address-dependent"] = { same_addr = true, other_addr = false },           -- ADF
    ["address-and-port-dependent"] = { same_addr = false, other_addr = false }, -- APDF
  }
  local function short(kind) return nat_types.get(kind).short:sub(1, 4) end
  local t
  setup(function()
    local desc = { hosts = { { name = "s1", public = S1 },
      { name = "s2", public = S2 } }, nats = {} }
    for i, kind in ipairs(TYPES) do
      desc.nats[i] = { name = "n" .. short(kind), type = kind }
      desc.hosts[#desc.hosts + 1] = { name = "h" .. short(kind),
        behind = "n" .. short(kind) }
    end
    t = lab.topology(desc)
    t:up()
    local s1 = t:spawn_probe("s1", { "serve", "--time", "60", "3478", "3479" })
    local s2 = t:spawn_probe("s2", { "serve", "--time", "60", "3478" })
    assert(s1:expect("^READY", 5) and s2:expect("^READY", 5), "servers")
  end)
  teardown(function()
    if t then
      local prefix = t.prefix
      t:down()
      assert_gone(prefix)
    end
  end)

  for i, kind in ipairs(TYPES) do
    it(kind .. ": mapping as RFC 4787 says (" .. lab.TYPES[kind].mapping .. ")",
      function()
        local host = "h" .. short(kind)
        local bind = 40000 + i
        local out = t:probe(host, { "client", "--bind", bind, "--to", S1 .. ":3478",
          "--to", S1 .. ":3479", "--to", S2 .. ":3478", "--listen", "0" })
        local m = mapped(out)
        local a, b, c = m[S1 .. ":3478"], m[S1 .. ":3479"], m[S2 .. ":3478"]
        assert.truthy(a and b and c, out)
        local public = t:public("n" .. short(kind))
        assert.equal(public, ip_of(a))
        local e = nat_types.get(kind)
        if e.mapping == "address-and-port-dependent" then
          -- a new mapping for each destination port and address
          assert.are_not.equal(a, b)
          assert.are_not.equal(a, c)
          assert.are_not.equal(b, c)
          assert.are_not.equal(bind, port_of(a))
        else
          -- one mapping for every destination, keeping the port
          assert.equal(a, b)
          assert.equal(a, c)
          if e.port_preservation then assert.equal(bind, port_of(a)) end
        end
      end)
  end

  it("filtering of each type as RFC 4787 says, all four at once", function()
    local clients = {}
    for i, kind in ipairs(TYPES) do
      local host = "h" .. short(kind)
      clients[kind] = t:spawn_probe(host, { "client", "--bind", 41000 + i,
        "--to", S1 .. ":3478", "--listen", "2.5" })
    end
    local maps = {}
    for _, kind in ipairs(TYPES) do
      local ip, port = clients[kind]:expect("^MAPPED %S+ (%S+) (%d+)", 5)
      assert.truthy(ip, kind .. ": no mapping: " .. clients[kind]:output())
      maps[kind] = ip .. ":" .. port
    end
    -- strangers: s1 from a port not contacted, s2 never contacted at all
    for _, kind in ipairs(TYPES) do
      t:probe("s1", { "send", "--bind", "3481", "--to", maps[kind], "--count", "2",
        "--payload", "SAME-ADDR-OTHER-PORT" })
      t:probe("s2", { "send", "--bind", "3480", "--to", maps[kind], "--count", "2",
        "--payload", "OTHER-ADDR" })
    end
    for _, kind in ipairs(TYPES) do
      assert.is_true(clients[kind]:wait(5))
      local out = clients[kind]:output()
      local want = FILTER[nat_types.get(kind).filtering]
      assert.equal(want.same_addr, got(out, "SAME-ADDR-OTHER-PORT") ~= nil,
        kind .. " (" .. lab.TYPES[kind].filtering .. "): " .. out)
      assert.equal(want.other_addr, got(out, "OTHER-ADDR") ~= nil,
        kind .. " (" .. lab.TYPES[kind].filtering .. "): " .. out)
    end
  end)
end)

lab_describe("natpunch.lab options and shapes", function()
  local t
  setup(function()
    t = lab.topology{
      hosts = {
        { name = "s1", public = S1 }, { name = "s2", public = S2 },
        { name = "p", public = "203.0.113.50" },
        { name = "h1", behind = "hp" }, { name = "h2", behind = "hp" },
        { name = "k1", behind = "nh" }, { name = "k2", behind = "nh" },
        { name = "q", behind = "npp" }, { name = "r", behind = "spp" },
        { name = "c", behind = "di" }, { name = "m", behind = "tm" },
      },
      nats = {
        { name = "hp", type = "prc", hairpin = true },
        { name = "nh", type = "prc", hairpin = false },
        { name = "npp", type = "prc", port_preservation = false },
        { name = "spp", type = "sym", port_preservation = true },
        { name = "dn", type = "prc" },
        { name = "di", type = "sym", behind = "dn" },
        { name = "tm", type = "prc", udp_timeout = 2, udp_stream_timeout = 3 },
      },
    }
    t:up()
    local s1 = t:spawn_probe("s1", { "serve", "--time", "60", "--later", "1,4.5",
      "3478", "3479" })
    local s2 = t:spawn_probe("s2", { "serve", "--time", "60", "3478" })
    assert(s1:expect("^READY", 5) and s2:expect("^READY", 5), "servers")
  end)
  teardown(function()
    if t then
      local prefix = t.prefix
      t:down()
      assert_gone(prefix)
    end
  end)

  it("hairpinning on: a host reaches its neighbour's public mapping, "
    .. "seen from the NAT's public address (REQ-9)", function()
    local h2 = t:spawn_probe("h2", { "client", "--bind", "42000", "--to", S1 .. ":3478",
      "--listen", "2" })
    local ip, port = h2:expect("^MAPPED %S+ (%S+) (%d+)", 5)
    assert.equal(t:public("hp"), ip)
    t:probe("h1", { "send", "--bind", "42001", "--to", ip .. ":" .. port,
      "--payload", "HAIRPIN" })
    assert.is_true(h2:wait(5))
    local r = got(h2:output(), "HAIRPIN")
    assert.truthy(r, h2:output())
    assert.equal(t:public("hp"), r.ip)
    assert.equal(42001, r.port)
  end)

  it("hairpinning off: the same packet never arrives", function()
    local k2 = t:spawn_probe("k2", { "client", "--bind", "42000", "--to", S1 .. ":3478",
      "--listen", "1.5" })
    local ip, port = k2:expect("^MAPPED %S+ (%S+) (%d+)", 5)
    assert.equal(t:public("nh"), ip)
    t:probe("k1", { "send", "--bind", "42001", "--to", ip .. ":" .. port,
      "--payload", "HAIRPIN" })
    assert.is_true(k2:wait(5))
    assert.is_nil(got(k2:output(), "HAIRPIN"), k2:output())
  end)

  it("port preservation off on a cone NAT: another port, still one mapping", function()
    local m = mapped(t:probe("q", { "client", "--bind", "43000", "--to", S1 .. ":3478",
      "--to", S1 .. ":3479", "--to", S2 .. ":3478", "--listen", "0" }))
    local a = m[S1 .. ":3478"]
    assert.truthy(a)
    assert.are_not.equal(43000, port_of(a))
    assert.equal(a, m[S1 .. ":3479"])
    assert.equal(a, m[S2 .. ":3478"])
  end)

  it("port preservation on a symmetric NAT: only the first mapping keeps the port",
    function()
      local first = mapped(t:probe("r", { "client", "--bind", "43001",
        "--to", S1 .. ":3478", "--listen", "0" }))[S1 .. ":3478"]
      assert.equal(43001, port_of(first))
      local m = mapped(t:probe("r", { "client", "--bind", "43001",
        "--to", S1 .. ":3479", "--to", S2 .. ":3478", "--listen", "0" }))
      assert.are_not.equal(43001, port_of(m[S1 .. ":3479"]))
      assert.are_not.equal(43001, port_of(m[S2 .. ":3478"]))
      assert.are_not.equal(m[S1 .. ":3479"], m[S2 .. ":3478"])
    end)

  it("double NAT: the outside sees the outer NAT, mapping is the inner one's",
    function()
      local m = mapped(t:probe("c", { "client", "--bind", "44000",
        "--to", S1 .. ":3478", "--to", S2 .. ":3478", "--listen", "0" }))
      local a, b = m[S1 .. ":3478"], m[S2 .. ":3478"]
      assert.equal(t:public("dn"), ip_of(a))
      assert.equal(t:public("dn"), ip_of(b))
      -- inner NAT symmetric, outer port-restricted: per-destination ports
      assert.are_not.equal(a, b)
      assert.equal("198.18.5.254", t:addr("di"))
    end)

  it("a public host and two hosts behind one NAT", function()
    local m = mapped(t:probe("p", { "client", "--bind", "44001", "--to", S1 .. ":3478",
      "--listen", "0" }))
    assert.equal("203.0.113.50:44001", m[S1 .. ":3478"])
    local m1 = mapped(t:probe("h1", { "client", "--bind", "44002",
      "--to", S1 .. ":3478", "--listen", "0" }))
    local m2 = mapped(t:probe("h2", { "client", "--bind", "44002",
      "--to", S1 .. ":3478", "--listen", "0" }))
    -- same public address; the second one's port clashed and was moved
    assert.equal(t:public("hp"), ip_of(m1[S1 .. ":3478"]))
    assert.equal(t:public("hp"), ip_of(m2[S1 .. ":3478"]))
    assert.are_not.equal(m1[S1 .. ":3478"], m2[S1 .. ":3478"])
  end)

  it("TCP simultaneous open through two port-restricted cones (no RST from the NAT)",
    function()
      -- ports are preserved, so each side knows the other's public endpoint
      local a = t:spawn_probe("h1", { "tcpconnect", "--bind", "46000", "--to",
        t:public("nh") .. ":46001", "--time", "4", "--payload", "FROM-H1" })
      local b = t:spawn_probe("k1", { "tcpconnect", "--bind", "46001", "--to",
        t:public("hp") .. ":46000", "--time", "4", "--payload", "FROM-K1" })
      assert.is_true(a:wait(6))
      assert.is_true(b:wait(6))
      assert.truthy(a:output():find("TCPRECV FROM-K1", 1, true), a:output())
      assert.truthy(b:output():find("TCPRECV FROM-H1", 1, true), b:output())
    end)

  it("UDP mapping timeout: a 2 s mapping is gone when the 4.5 s answer comes",
    function()
      local out = t:exec("tm", { "sysctl", "-n", "net.netfilter.nf_conntrack_udp_timeout",
        "net.netfilter.nf_conntrack_udp_timeout_stream" })
      assert.equal("2\n3\n", out)
      -- k1 sits behind a NAT with Linux's default 30 s / 120 s: the control
      local short = t:spawn_probe("m", { "client", "--bind", "45000",
        "--to", S1 .. ":3478", "--listen", "5.5" })
      local long = t:spawn_probe("k1", { "client", "--bind", "45000",
        "--to", S1 .. ":3478", "--listen", "5.5" })
      assert.is_true(short:wait(8))
      assert.is_true(long:wait(8))
      assert.truthy(got(short:output(), "LATER 1"), short:output())
      assert.is_nil(got(short:output(), "LATER 4.5"), short:output())
      assert.truthy(got(long:output(), "LATER 1"), long:output())
      assert.truthy(got(long:output(), "LATER 4.5"), long:output())
    end)
end)

lab_describe("natpunch.lab teardown", function()
  it("down leaves no namespace, link, nft table, process or state file", function()
    local prefix
    do
      local t <close> = lab.topology{ hosts = { { name = "x", public = S1 },
        { name = "y", public = "203.0.113.3", link = { delay = "5ms" } } },
        nats = { { name = "n" } } }
      prefix = t.prefix
      t:up()
      assert.truthy(proc.run({ "ip", "netns", "list" }):find(prefix .. "-n", 1, true))
      local out, code = t:exec("x", { "ping", "-c", "1", "-W", "2", "203.0.113.3" })
      assert.equal(0, code, out)
      local wire = t:wire("y")
      if wire then assert.is_true(wire:alive()) end
    end -- <close> runs t:down() here
    assert_gone(prefix)
  end)

  it("down_all(prefix) cleans up after a process that died without down",
    function()
      local prefix = ("npx%03x"):format(math.random(0, 0xfff))
      finally(function() lab.down_all(prefix) end)
      local script = ([[
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
local lab = require "natpunch.lab"
local t = lab.topology{ prefix = %q, impair = "wire",
  hosts = { { name = "x", public = "203.0.113.2", link = { delay = "1ms" } } },
  nats = { { name = "n", type = "full" } } }
t:up()
local p = t:spawn("x", { "sleep", "30" })
print("UP", p.pid)
os.exit(3) -- no down: a crash
]]):format(prefix)
      local out, code = proc.run({ "lua5.4", "-e", script })
      assert.equal(3, code, out)
      local pid = out:match("UP%s+(%d+)")
      assert.truthy(pid, out)
      local s = state.read(prefix)
      assert.truthy(s and #s.ns == 3, out)
      assert.equal(2, #s.pids) -- the wire and the sleep
      local removed = lab.down_all(prefix)
      assert.is_true(#removed >= 5, table.concat(removed, ", "))
      assert.is_false(proc.alive(tonumber(pid)))
      for _, r in ipairs(s.pids) do assert.is_false(proc.alive(r.pid, r.start)) end
      assert_gone(prefix)
    end)

  it("a failure half-way through up() removes what was made", function()
    local t = lab.topology{ hosts = { { name = "x", public = S1 } } }
    -- make the second namespace's creation fail: it already exists
    proc.must({ "ip", "netns", "add", t:ns("x") })
    local ok, err = pcall(t.up, t)
    proc.run({ "ip", "netns", "del", t:ns("x") })
    assert.is_false(ok)
    assert.truthy(tostring(err):find("netns", 1, true), err)
    assert_gone(t.prefix)
  end)
end)

describe("natpunch lab (command line)", function()
  local function cli(args)
    local out, code = proc.run({ "sh", "-c", helper.cli() .. " lab " .. args })
    return out, code
  end

  it("explains itself and refuses bad usage with exit code 2", function()
    local out, code = cli("--help")
    assert.equal(0, code, out)
    assert.truthy(out:find("natpunch lab up", 1, true))
    assert.truthy(out:find("port-restricted cone", 1, true))
    for _, bad in ipairs({ "frobnicate", "up --a cone-ish", "up --delay",
      "up --port-preservation --no-port-preservation", "exec", "exec a", "down extra",
      "up --prefix BAD" }) do
      out, code = cli(bad)
      assert.equal(2, code, bad .. ": " .. out)
    end
  end)

  lab_describe("up, status, exec, down", function()
    it("brings the standard lab up, runs a command in it, and removes it", function()
      local prefix = ("npc%03x"):format(math.random(0, 0xfff))
      finally(function() lab.down_all(prefix) end)
      local out, code = cli("up --a full --b sym --hairpin --delay 5ms --json --prefix " .. prefix)
      assert.equal(0, code, out)
      local lines = helper.json_lines(out)
      assert.equal("up", lines[1].event)
      assert.equal(prefix, lines[1].prefix)
      local nodes = {}
      for _, ev in ipairs(lines) do
        if ev.event == "node" then nodes[ev.name] = ev end
      end
      assert.equal("full", nodes.na.type)
      assert.equal("sym", nodes.nb.type)
      assert.is_true(nodes.na.hairpin)
      assert.equal("198.18.3.2", nodes.c.addr)
      assert.equal("delay 5ms", nodes.na.link)

      out, code = cli("status --json --prefix " .. prefix)
      assert.equal(0, code, out)
      local st = helper.json_lines(out)[1]
      assert.equal(11, st.namespaces)
      assert.equal(11, st.namespaces_present)

      -- c is behind two NATs; the ping crosses both and na's 5 ms link
      out, code = cli("exec --prefix " .. prefix .. " c -- ping -c 1 -W 2 203.0.113.2")
      assert.equal(0, code, out)
      out, code = cli("exec --prefix " .. prefix .. " b -- sh -c 'exit 7'")
      assert.equal(7, code, out)

      out, code = cli("down --json --prefix " .. prefix)
      assert.equal(0, code, out)
      local d = helper.json_lines(out)[1]
      assert.equal("down", d.event)
      assert.is_true(#d.removed >= 11)
      assert_gone(prefix)
    end)
  end)
end)
