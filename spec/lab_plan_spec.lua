-- The lab's planning and the matrix's cases, without root: lab/plan.lua
-- (descriptions checked and addressed) and lab/matrix/cases.lua (the
-- cases and the lab that holds them).  Nothing here runs a command.
local plan = require "natpunch.lab.plan"
local cases = require "natpunch.lab.matrix.cases"

describe("natpunch.lab.plan", function()
  it("hands out addresses: LANs 198.18.N.0/24, hosts from .2, inner routers from the top", function()
    local p = plan.make{ prefix = "npt", nats = {
        { name = "na", type = "prc" },
        { name = "nc", type = "sym", behind = "na", lan = "198.18.9.0/24" } },
      hosts = { { name = "s1", public = "203.0.113.2" }, { name = "a", behind = "na" },
        { name = "a2", behind = "na" }, { name = "c", behind = "nc" } } }
    local n = p.by_name
    assert.equal("npt", p.prefix)
    assert.equal("npt-a", n.a.ns)
    assert.equal("198.18.1.2", n.a.addr)
    assert.equal("198.18.1.3", n.a2.addr)
    assert.equal("198.18.1.254", n.nc.addr)
    assert.equal("198.18.9.2", n.c.addr)
    assert.equal("198.18.1.1", n.a.gateway)
    assert.matches("^203%.0%.113%.%d+$", n.na.addr)
    assert.is_true(n.na.port_preservation)      -- from the registry entry
    assert.is_false(n.nc.port_preservation)
    assert.equal("sym", n.nc.type)
  end)

  it("knows NAT types by any registry name and refuses the rest", function()
    local p = plan.make{ prefix = "npt", nats = { { name = "nx", type = "Port-Restricted" } } }
    assert.equal("prc", p.by_name.nx.type)
    assert.has_error(function() plan.make{ prefix = "npt", nats = { { name = "nx", type = "cone" } } } end,
      'lab: nx: unknown NAT type "cone"')
  end)

  it("refuses bad names, prefixes, overlapping LANs and forwards to nowhere", function()
    assert.has_error(function() plan.make{ prefix = "NP" } end)
    assert.has_error(function() plan.make{ prefix = "npt", hosts = { { name = "inet" } } } end)
    assert.has_error(function()
      plan.make{ prefix = "npt", nats = { { name = "n1", lan = "198.18.1.0/24" },
        { name = "n2", lan = "198.18.1.0/25" } } }
    end)
    assert.has_error(function()
      plan.make{ prefix = "npt", nats = { { name = "n1", forward = { { proto = "udp", port = 1, to = "zz" } } } } }
    end)
  end)

  it("plans dual-homed hosts and an IPv6 segment inside 2001:db8::/32 (lab.iface)", function()
    local p = plan.make(plan.iface{ prefix = "npt" })
    local n = p.by_name
    -- h: eth0 on na's LAN (default route), eth1 on nb's
    assert.equal("198.18.1.2", n.h.addr)
    assert.equal("198.18.1.1", n.h.gateway)
    assert.same({ { behind = "nb", ifname = "eth1", addr = "198.18.2.2", prefixlen = 24, lan = "198.18.2.0/24",
      gateway = "198.18.2.1", table = 101 } }, n.h.also)
    -- g: eth0 behind na too, eth1 behind nd (its own NAT: no peer on that LAN)
    assert.equal("198.18.1.3", n.g.addr)
    assert.same({ { behind = "nd", ifname = "eth1", addr = "198.18.5.2", prefixlen = 24, lan = "198.18.5.0/24",
      gateway = "198.18.5.1", table = 101 } }, n.g.also)
    assert.equal("198.18.2.3", n.b.addr)          -- the LAN's next address after h's
    -- IPv6: routers' WAN on the internet's 2001:db8::/64, LANs 2001:db8:<i>::/64
    assert.equal("2001:db8::11", n.s1.addr6)
    assert.equal("2001:db8::1:3", n.f1.addr6)
    assert.equal("2001:db8:3::/64", n.f1.lan6)
    assert.equal("2001:db8:3::2", n.x.addr6)
    assert.equal("2001:db8:3::1", n.x.gateway6)
    assert.equal("2001:db8:3::3", n.d1.addr6)
    assert.equal("198.18.3.2", n.d1.addr)          -- d1 has both families
    assert.equal("2001:db8:3::2", n.x.addr)        -- x is IPv6 only
    assert.is_nil(n.x.gateway)
    for _, list in ipairs({ p.nats, p.hosts }) do
      for _, node in ipairs(list) do
        if node.addr6 then assert.matches("^2001:db8:", node.addr6) end
      end
    end
    assert.has_error(function()
      plan.make{ prefix = "npt", nats = { { name = "na" } }, hosts = { { name = "h", behind = "na", ipv6 = true } } }
    end)
    assert.has_error(function()
      plan.make{ prefix = "npt", nats = { { name = "na" } }, hosts = { { name = "h", behind = "na",
        also_behind = { "na" } } } }
    end)
    assert.has_error(function()
      plan.make{ prefix = "npt", hosts = { { name = "h", ipv6 = "yes" } } }
    end)
    -- the firewall of an IPv6 router: answers in, the LAN out, the rest dropped and counted
    local fw = require("natpunch.lab.nft").firewall6()
    assert.matches("table ip6 natpunch6", fw)
    assert.matches("policy drop;", fw)
    assert.matches("ct state established,related accept", fw)
  end)

  it("plans symmetric NAT66 routers for TURN over IPv6 (lab.relay6)", function()
    local p = plan.make(plan.relay6{ prefix = "npt" })
    local n = p.by_name
    assert.equal("sym", n.f1.nat6)
    assert.equal("sym", n.f2.nat6)
    assert.is_nil(n.nb.nat6)
    assert.equal("2001:db8::12", n.s2.addr6)      -- coturn's IPv6 address
    assert.equal("198.51.100.2", n.s2.addr)
    assert.equal("2001:db8:1::2", n.x.addr)       -- IPv6 only
    assert.equal("2001:db8:2::2", n.y.addr)
    assert.equal("198.18.3.2", n.b.addr)
    assert.is_nil(n.b.addr6)
    assert.has_error(function()
      plan.make{ prefix = "npt", nats = { { name = "na", nat6 = "sym" } } }   -- no IPv6
    end)
    assert.has_error(function()
      plan.make{ prefix = "npt", nats = { { name = "na", ipv6 = true, nat6 = "full" } } }
    end)
    -- the NAT66: a random port per new flow onto the WAN address, the firewall's filter
    local r = require("natpunch.lab.nft").nat66("2001:db8::1:1")
    assert.matches("table ip6 natpunch6", r)
    assert.truthy(r:find('snat to 2001:db8::1:1 fully-random', 1, true))
    assert.matches("ct state established,related accept", r)
    assert.truthy(r:find('iifname "wan" counter drop comment "unsolicited"', 1, true))
    assert.has_error(function() require("natpunch.lab.nft").nat66("203.0.113.1") end)
  end)

  it("draws random prefixes np + 4 hex digits", function()
    local seen = {}
    for _ = 1, 20 do
      local p = plan.random_prefix()
      assert.matches("^np%x%x%x%x$", p)
      seen[p] = true
    end
    local n = 0
    for _ in pairs(seen) do n = n + 1 end
    assert.is_true(n > 10)
  end)

  it("describes the standard lab of `natpunch lab up`", function()
    local d = plan.standard{ a = "full", b = "sym", hairpin = true }
    local p = plan.make(d)
    assert.equal("full", p.by_name.na.type)
    assert.equal("sym", p.by_name.nb.type)
    assert.is_true(p.by_name.nb.hairpin)
    assert.equal("nc", p.by_name.c.behind)
    assert.equal("203.0.113.2", p.by_name.s1.addr)
  end)
end)

describe("natpunch.lab.matrix.cases", function()
  it("has every ordered pair of the registry's types and the special cases", function()
    local pairs_ = cases.names("pairs")
    assert.equal(16, #pairs_)
    local all = table.concat(cases.names("all"), ",")
    for _, n in ipairs({ "same-nat-hairpin", "same-nat", "double-nat", "public-prc", "sym-public",
        "rendezvous-nat" }) do
      assert.matches(n, all, 1, true)
    end
    assert.equal(9, #cases.names("cone"))
    assert.equal(10, #cases.names("lean"))
    assert.is_nil((cases.names("nosuch")))
  end)

  it("describes one lab holding the NATs the chosen cases need", function()
    local d = cases.describe({ "prc-sym", "double-nat" }, { prefix = "npt" })
    local p = plan.make(d)
    assert.equal("prc", p.by_name.naprc.type)
    assert.equal("sym", p.by_name.nbsym.type)
    assert.equal("ndout", p.by_name.ndin.behind)
    assert.equal("aprc", cases.case("prc-sym").connector)
    assert.equal("may-fail", cases.case("prc-sym").expect)
  end)
end)
