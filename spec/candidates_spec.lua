-- Safe candidates (natpunch.candidates): strict parsing and the address
-- classes that are never probed unless allowed.  One row per address.
require "spec.helper"
local cand = require "natpunch.candidates"

-- text, expected: "ok" (ordinary unicast), a class name, or "bad" (not parsed)
local TABLE = {
  -- ordinary unicast, IPv4 (documentation, lab and private ranges are fine)
  { "203.0.113.7:3478", "ok" }, { "198.51.100.1:1", "ok" }, { "198.18.0.5:40000", "ok" },
  { "192.0.2.1:65535", "ok" }, { "10.0.0.1:5000", "ok" }, { "172.16.9.9:5000", "ok" },
  { "192.168.1.20:5000", "ok" }, { "100.64.0.1:5000", "ok" }, { "8.8.8.8:53", "ok" },
  { "1.2.3.4:80", "ok" }, { "223.255.255.254:9", "ok" }, { "192.0.1.255:9", "ok" },
  -- ordinary unicast, IPv6
  { "[2001:db8::1]:3478", "ok" }, { "[2001:db8:0:0:0:0:0:2]:9", "ok" }, { "[fd00::7]:9", "ok" },
  { "[64:ff9b::192.0.2.1]:9", "ok" }, { "[2a00:1450::1]:443", "ok" }, { "[fc00::1]:9", "ok" },
  -- unspecified
  { "0.0.0.0:9", "unspecified" }, { "0.1.2.3:9", "unspecified" }, { "[::]:9", "unspecified" },
  { "[0:0:0:0:0:0:0:0]:9", "unspecified" }, { "[::ffff:0.0.0.0]:9", "unspecified" },
  -- loopback
  { "127.0.0.1:9", "loopback" }, { "127.255.255.254:9", "loopback" }, { "[::1]:9", "loopback" },
  { "[::ffff:127.0.0.1]:9", "loopback" }, { "[0:0:0:0:0:0:0:1]:9", "loopback" },
  -- multicast
  { "224.0.0.1:9", "multicast" }, { "239.255.255.250:1900", "multicast" }, { "232.1.1.1:9", "multicast" },
  { "[ff02::1]:9", "multicast" }, { "[ff05::1:3]:547", "multicast" }, { "[::ffff:224.0.0.251]:5353", "multicast" },
  -- broadcast and reserved
  { "255.255.255.255:9", "broadcast" }, { "240.0.0.1:9", "reserved" }, { "254.1.1.1:9", "reserved" },
  { "192.0.0.8:9", "reserved" }, { "[::1.2.3.4]:9", "reserved" }, { "[fec0::1]:9", "reserved" },
  { "[100::1]:9", "reserved" },
  -- link-local
  { "169.254.0.1:9", "link-local" }, { "169.254.255.255:9", "link-local" }, { "[fe80::1]:9", "link-local" },
  { "[febf::1]:9", "link-local" }, { "[::ffff:169.254.1.1]:9", "link-local" },
  -- not candidates at all
  { "1.2.3.4.5:80", "bad" }, { "999.1.1.1:9", "bad" }, { "1.2.3:9", "bad" }, { "01.2.3.4:9", "bad" },
  { "1.2.3.4:0", "bad" }, { "1.2.3.4:65536", "bad" }, { "1.2.3.4:000080", "bad" }, { "1.2.3.4", "bad" },
  { "[1.2.3.4]:9", "bad" }, { "2001:db8::1:9", "bad" }, { "[2001:db8::g]:9", "bad" }, { "[2001:db8::1]", "bad" },
  { "host.example:80", "bad" }, { " 1.2.3.4:9", "bad" }, { "1.2.3.4:9 ", "bad" }, { "", "bad" },
  { "[" .. string.rep("1:", 40) .. "1]:9", "bad" }, { "1.2.3.4:-1", "bad" }, { "[fe80::1%eth0]:9", "bad" },
  { "1.2.3.4\0:9", "bad" },
}

describe("candidates", function()
  it("classifies a table of " .. #TABLE .. " addresses", function()
    assert.is_true(#TABLE >= 50)
    local strict = cand.policy()
    for _, row in ipairs(TABLE) do
      local text, want = row[1], row[2]
      local ip, port, _, class = cand.parse(text)
      if want == "bad" then
        assert.is_nil(ip, text .. " should not parse")
      else
        assert.truthy(ip, text .. " should parse: " .. tostring(port))
        assert.equal(want == "ok" and "nil" or want, tostring(class), text)
        -- the default policy keeps exactly the ordinary unicast ones
        assert.equal(want == "ok", cand.check(text, strict) ~= nil, text)
        -- and a policy that allows the class keeps it
        if want ~= "ok" then assert.truthy(cand.check(text, cand.policy{ allow = { want } }), text) end
      end
    end
  end)

  it("filters lists: canonical text, no duplicates, capped count", function()
    local out, dropped = cand.filter("203.0.113.7:1,[2001:DB8::1]:2,203.0.113.7:1,127.0.0.1:3,x")
    assert.same({ "203.0.113.7:1", "[2001:db8::1]:2" }, out)
    assert.equal(3, dropped)
    local many = {}
    for i = 1, 40 do many[i] = "203.0.113." .. i .. ":9" end
    out = cand.filter(many)
    assert.equal(cand.MAX_COUNT, #out)
    out = cand.filter(table.concat(many, ","), cand.policy{ max = 3 })
    assert.equal(3, #out)
  end)

  it("gathers from every interface, both families for a dual-stack socket, never link-local", function()
    local core = require "natpunch.core"
    local u = core.udp()
    if not u:bind("::", 0) then pending("no IPv6 here") return end
    local _, port = u:getsockname()
    local both = cand.gather(u, "203.0.113.2", "both")
    local six = cand.gather(u, "203.0.113.2")
    local want4, want6 = 0, 0
    for _, itf in ipairs(core.interface_addresses()) do
      if not itf.internal and cand.class(itf.ip) ~= "link-local" then
        if itf.family == "inet" then want4 = want4 + 1 else want6 = want6 + 1 end
      end
    end
    local n4, n6, seen4 = 0, 0, false
    for _, c in ipairs(both) do
      local ip, p, fam, class = cand.parse(c)
      assert.equal(port, p)
      assert.is_nil(class, c)                       -- no loopback, no fe80::
      assert.truthy(ip)
      if fam == "inet" then n4, seen4 = n4 + 1, true
      else n6 = n6 + 1; assert.is_false(seen4, "IPv6 first") end
    end
    assert.equal(math.min(want6, cand.MAX_PRIVATE), n6)
    assert.equal(math.min(want4, cand.MAX_PRIVATE - n6), n4)
    assert.equal(n6, #six)                          -- one family by default
    u:close()
  end)

  it("offers an interface socket's own endpoint and its mapping when that differs (each_interface)", function()
    local interfaces = require "natpunch.interfaces"
    local list = { { ip = "198.18.5.2", port = 40001, mapped = "203.0.113.15:40001" },
      { ip = "198.18.1.3", port = 40002 },                                   -- nothing answered
      { ip = "203.0.113.50", port = 40003, mapped = "203.0.113.50:40003" } }  -- no NAT
    assert.same({ "198.18.5.2:40001", "203.0.113.15:40001", "198.18.1.3:40002", "203.0.113.50:40003" },
      interfaces.candidates(list))
    -- the addresses worth a socket: never loopback or link-local, each once, at most MAX
    local core = require "natpunch.core"
    local got = interfaces.addresses("inet")
    assert.is_true(#got <= interfaces.MAX)
    local seen = {}
    for _, ip in ipairs(got) do
      assert.is_nil(cand.class(ip), ip)
      assert.is_nil(seen[ip], ip)
      seen[ip] = true
    end
    local want = {}
    for _, itf in ipairs(core.interface_addresses()) do
      if itf.family == "inet" and not itf.internal and cand.class(itf.ip) == nil then want[itf.ip] = true end
    end
    for ip in pairs(want) do
      if #got < interfaces.MAX then assert.truthy(seen[ip], ip) end
    end
  end)

  it("refuses an unknown class name in a policy", function()
    assert.has_error(function() cand.policy{ allow = { "everything" } } end)
  end)
end)
