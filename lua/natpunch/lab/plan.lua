-- natpunch.lab.plan: a lab description made into a plan, with every name
-- checked and every address handed out.  Pure: no root, no system calls
-- (but /dev/urandom for a random prefix); natpunch.lab builds what it
-- plans (lab/build.lua) and spec/lab_spec.lua tests it without root.
--
--   local p = plan.make{ nats = { { name = "na", type = "prc" } },
--                        hosts = { { name = "a", behind = "na" }, { name = "s1", public = "203.0.113.2" } } }
--   p.by_name.a.addr          --> "198.18.1.2"
--   plan.standard{ a = "prc", b = "sym" }   -- the description of `natpunch lab up`
--
-- Several interfaces and IPv6 (docs/LAB.md "Dual-homed hosts and IPv6"):
--   { name = "h", behind = "na", also_behind = { "nb" } }   -- eth0 on na's LAN
--        (default route), eth1 on nb's LAN (its connected route; from eth1's
--        address, source-routed out nb: table 101)
--   { name = "n6", type = "sym", ipv6 = true }   -- a NAT for IPv4 that also
--        routes the IPv6 LAN 2001:db8:<i>::/64, behind a stateful firewall
--   { name = "x", behind = "n6", ipv6 = "only" } -- IPv6 only (ipv6 = true:
--        both families); public hosts with ipv6 get 2001:db8::<k>/64
local ip4 = require "natpunch.lab.ip4"
local nat_types = require "natpunch.lab.nat_types"
local impair = require "natpunch.lab.impair"

local plan = {}

-- Defaults of a NAT router.  Linux's own UDP conntrack timeouts (30 s
-- unreplied, 120 s once both ways have been seen) are kept unless asked:
-- RFC 4787 REQ-5 wants at least 2 minutes for an active mapping.
-- TCP: RFC 5382 REQ-5 asks for at least 2 h 4 min on an established
-- connection.  What an unsolicited SYN gets is the NAT type's
-- (nat_types: tcp.unsolicited) unless a NAT says tcp_unsolicited.
local NAT_DEFAULTS = { udp_timeout = 30, udp_stream_timeout = 120, tcp_timeout = 7440 }
local TCP_UNSOLICITED = { drop = true, rst = true, icmp = true }
plan.NAT_DEFAULTS = NAT_DEFAULTS

-- The internet's namespace is <prefix>-inet.
local INET = "inet"
plan.INET = INET

-- IPv6 (2001:db8::/32 only): the internet's segment 2001:db8::/64 with the
-- router at ::1, public hosts from ::11, NAT routers' WAN side at ::1:<i>;
-- NAT i's LAN is 2001:db8:<i>::/64 (router ::1, hosts from ::2).  No NAT
-- for IPv6: the routers route and filter (nft.firewall6).
plan.INET6_ROUTER = "2001:db8::1"
local function inet6_host(k) return ("2001:db8::%x"):format(0x10 + k) end
local function nat6_wan(i) return ("2001:db8::1:%x"):format(i) end
local function lan6(i) return ("2001:db8:%x::"):format(i) end

-- From the kernel, not math.random: a spec that seeds math.random (the
-- JSON spec does) would give every concurrent test run the same prefix.
local function random_prefix()
  local f = io.open("/dev/urandom", "rb")
  local b = f and f:read(2)
  if f then f:close() end
  if b and #b == 2 then return ("np%02x%02x"):format(b:byte(1, 2)) end
  return ("np%04x"):format(math.random(0, 0xffff))
end

plan.random_prefix = random_prefix


local function check_name(name, what)
  if type(name) ~= "string" or not name:match("^[a-z][a-z0-9]*$")
    or #name > 10 or name == INET then
    error(("lab: %s name %q must be [a-z][a-z0-9]*, at most 10 characters, "
      .. "not %q"):format(what, tostring(name), INET), 3)
  end
end

-- A NAT's static port forwards, { proto =, port =, to = host name or LAN
-- address, to_port = }, resolved to { proto, port, addr, to_port } once
-- every address is known.
local function plan_forwards(n, by_name)
  local list = {}
  for i, f in ipairs(n.forward_spec or {}) do
    local what = ("%s: forward #%d"):format(n.name, i)
    if type(f) ~= "table" or (f.proto ~= "udp" and f.proto ~= "tcp") then
      error(("lab: %s: proto must be udp or tcp"):format(what), 4)
    end
    for _, k in ipairs({ "port", "to_port" }) do
      local v = f[k]
      if (v ~= nil or k == "port") and (math.type(v) ~= "integer"
          or v < 1 or v > 65535) then
        error(("lab: %s: %s must be a port number"):format(what, k), 4)
      end
    end
    local target = by_name[f.to]
    local a = target and target.addr or f.to
    local num = ip4.parse(a)
    if (target and target.behind ~= n.name) or not num
      or not ip4.contains(n.lan_net, n.lan_len, num) then
      error(("lab: %s: to=%q is not a host on %s's LAN"):format(what,
        tostring(f.to), n.name), 4)
    end
    list[i] = { proto = f.proto, port = f.port, addr = a,
      to_port = f.to_port or f.port }
  end
  return list
end

-- Validate a description and fill in every address.  Returns the plan:
-- { prefix, nats = {...}, hosts = {...}, by_name = {...} }.
function plan.make(desc)
  if type(desc) ~= "table" then error("lab.topology: needs a table", 3) end
  local prefix = desc.prefix or random_prefix()
  if not prefix:match("^[a-z][a-z0-9]*$") or #prefix > 8 then
    error("lab: prefix must be [a-z][a-z0-9]*, at most 8 characters", 3)
  end
  local p = { prefix = prefix, nats = {}, hosts = {}, by_name = {},
    backend = desc.impair or "auto" }
  if p.backend ~= "auto" and p.backend ~= "wire" and p.backend ~= "netem" then
    error("lab: impair must be auto, wire or netem", 3)
  end
  local used = {}
  local function take(n, what)
    if used[n] then
      error(("lab: %s: address %s used twice"):format(what, ip4.format(n)), 4)
    end
    used[n] = true
    return ip4.format(n)
  end
  local next_public = ip4.parse("203.0.113.10")
  local function auto_public(what)
    repeat next_public = next_public + 1 until not used[next_public]
    if next_public & 255 > 254 then error("lab: out of public addresses", 4) end
    return take(next_public, what)
  end
  local function node(spec, role)
    check_name(spec.name, role)
    if p.by_name[spec.name] then
      error(("lab: name %q used twice"):format(spec.name), 4)
    end
    local n = { name = spec.name, role = role, ns = prefix .. "-" .. spec.name,
      link = impair.parse(spec.link, spec.name) }
    p.by_name[spec.name] = n
    return n
  end
  local function nat_named(n, name, what)
    local outer = p.by_name[name]
    if not outer or outer.role ~= "nat" then
      error(("lab: %s: %s=%q is not a NAT listed before it")
        :format(n.name, what, tostring(name)), 5)
    end
    return outer
  end
  -- an address on outer's LAN: asked (spec_addr) or the next free one
  local function lan_addr(n, outer, spec_addr)
    if spec_addr then
      local a = ip4.parse(spec_addr)
      if not a or not ip4.contains(outer.lan_net, outer.lan_len, a)
        or a == outer.lan_net + 1 then
        error(("lab: %s: address %s is not a host of %s's LAN %s")
          :format(n.name, tostring(spec_addr), outer.name, outer.lan), 5)
      end
      return take(a, n.name)
    end
    -- hosts count up from .2, routers behind a NAT down from the top
    local first = outer.lan_net + 2
    local last = outer.lan_net + (1 << (32 - outer.lan_len)) - 2
    local a, step, stop = first, 1, last
    if n.role == "nat" then a, step, stop = last, -1, first end
    while used[a] and a ~= stop do a = a + step end
    if used[a] then error("lab: LAN of " .. outer.name .. " is full", 5) end
    return take(a, n.name)
  end
  local public6 = 0
  -- IPv6 of a node (spec.ipv6 true or "only"): on the internet's segment
  -- or on its NAT's IPv6 LAN
  local function attach6(n, spec)
    local v6 = spec.ipv6
    if v6 == nil or v6 == false then return end
    if v6 ~= true and v6 ~= "only" then
      error(("lab: %s: ipv6 must be true or \"only\""):format(n.name), 4)
    end
    if v6 == "only" and n.role == "nat" then
      error(("lab: %s: a NAT router keeps its IPv4 side (ipv6 = true)"):format(n.name), 4)
    end
    n.ipv6 = v6
    if n.role == "nat" then
      if spec.behind then error(("lab: %s: IPv6 only for NATs on the internet"):format(n.name), 4) end
      n.addr6, n.gateway6 = nat6_wan(n.index), plan.INET6_ROUTER
      n.lan6 = lan6(n.index) .. "/64"
      n.lan6_router = lan6(n.index) .. "1"
      n.lan6_next = 2
    elseif spec.behind then
      local outer = p.by_name[spec.behind]
      if not outer.ipv6 then
        error(("lab: %s: ipv6 behind %s, which has no IPv6 (ipv6 = true)"):format(n.name, outer.name), 4)
      end
      n.addr6 = ("%s%x"):format(lan6(outer.index), outer.lan6_next)
      outer.lan6_next = outer.lan6_next + 1
      n.gateway6 = outer.lan6_router
    else
      public6 = public6 + 1
      if public6 > 0xef then error("lab: out of public IPv6 addresses", 4) end
      n.addr6, n.gateway6 = inet6_host(public6), plan.INET6_ROUTER
    end
  end
  -- where a node attaches: the internet (public address) or a NAT's LAN
  local function attach(n, spec)
    if spec.behind then
      local outer = nat_named(n, spec.behind, "behind")
      n.behind = outer.name
      n.gateway = ip4.format(outer.lan_net + 1)
      n.prefixlen = outer.lan_len
      if spec.ipv6 ~= "only" then n.addr = lan_addr(n, outer, spec.addr) end
    else
      if spec.public then
        local _, a = ip4.check_public(spec.public, n.name)
        n.addr = take(a, n.name)
      else
        n.addr = auto_public(n.name)
      end
      local subnet = ip4.public_subnet(n.addr)
      n.prefixlen = subnet.len
      n.gateway = subnet.router
    end
    attach6(n, spec)
    if n.ipv6 == "only" then n.addr, n.gateway, n.prefixlen = n.addr6, nil, nil end
    -- more LANs (a dual-homed host): eth1, eth2, ... each on another NAT's
    -- LAN with its connected route; the default route stays on eth0
    n.also = {}
    for i, name in ipairs(spec.also_behind or {}) do
      if n.role ~= "host" or not spec.behind or spec.ipv6 == "only" then
        error(("lab: %s: also_behind only for an IPv4 host behind a NAT"):format(n.name), 4)
      end
      local outer = nat_named(n, name, "also_behind")
      if outer.name == n.behind then
        error(("lab: %s: also_behind=%q is its own NAT"):format(n.name, name), 4)
      end
      for _, x in ipairs(n.also) do
        if x.behind == outer.name then error(("lab: %s: %s listed twice"):format(n.name, name), 4) end
      end
      -- source-based routing: what leaves from this address (a socket
      -- bound to it) goes out this LAN's NAT (ip rule from ADDR table T)
      n.also[i] = { behind = outer.name, ifname = "eth" .. i, addr = lan_addr(n, outer),
        prefixlen = outer.lan_len, lan = outer.lan, gateway = ip4.format(outer.lan_net + 1),
        table = 100 + i }
    end
    -- more public addresses on the same interface (an RFC 5780 server
    -- needs two): on the internet only, each in a public subnet
    n.extra_addrs = {}
    for _, extra in ipairs(spec.extra_addrs or {}) do
      if n.behind then
        error(("lab: %s: extra_addrs only on a public host"):format(n.name), 4)
      end
      local _, a = ip4.check_public(extra, n.name)
      local text = take(a, n.name)
      n.extra_addrs[#n.extra_addrs + 1] = { addr = text,
        prefixlen = ip4.public_subnet(text).len }
    end
  end
  for _, s in ipairs(ip4.PUBLIC) do take(ip4.parse(s.router), "router") end

  for i, spec in ipairs(desc.nats or {}) do
    local n = node(spec, "nat")
    n.index = i
    n.type = nat_types.canonical(spec.type or "prc")
    if not n.type then
      error(("lab: %s: unknown NAT type %q"):format(spec.name,
        tostring(spec.type)), 3)
    end
    n.hairpin = spec.hairpin and true or false
    if spec.port_preservation == nil then
      n.port_preservation = nat_types.get(n.type).port_preservation
    else
      n.port_preservation = spec.port_preservation and true or false
    end
    n.forward_spec = spec.forward
    n.udp_timeout = spec.udp_timeout or NAT_DEFAULTS.udp_timeout
    n.udp_stream_timeout = spec.udp_stream_timeout
      or NAT_DEFAULTS.udp_stream_timeout
    n.tcp_timeout = spec.tcp_timeout or NAT_DEFAULTS.tcp_timeout
    n.tcp_unsolicited = spec.tcp_unsolicited
    if n.tcp_unsolicited ~= nil and not TCP_UNSOLICITED[n.tcp_unsolicited] then
      error(("lab: %s: tcp_unsolicited must be drop, rst or icmp"):format(spec.name), 3)
    end
    if spec.tcp_allow ~= nil then
      if type(spec.tcp_allow) ~= "table" then
        error(("lab: %s: tcp_allow must be a list of addresses"):format(spec.name), 3)
      end
      n.tcp_allow = {}
      for _, a in ipairs(spec.tcp_allow) do
        if not ip4.parse(a) then error(("lab: %s: tcp_allow: bad address %s"):format(spec.name, tostring(a)), 3) end
        n.tcp_allow[#n.tcp_allow + 1] = a
      end
    end
    -- IPv6 through a symmetric NAT66 (nft.nat66) rather than the plain
    -- firewall: no direct IPv6 path between two such LANs
    if spec.nat6 ~= nil then
      if spec.nat6 ~= "sym" then error(("lab: %s: nat6 must be \"sym\""):format(spec.name), 3) end
      if spec.ipv6 ~= true then error(("lab: %s: nat6 needs ipv6 = true"):format(spec.name), 3) end
      n.nat6 = spec.nat6
    end
    -- the LAN first, so a NAT's own outer address cannot land in it
    local lan = spec.lan or ("198.18.%d.0/24"):format(i)
    n.lan_net, n.lan_len = ip4.check_lan(lan, spec.name)
    n.lan = lan
    for _, other in ipairs(p.nats) do
      if ip4.contains(other.lan_net, math.min(other.lan_len, n.lan_len),
          n.lan_net)
        or ip4.contains(n.lan_net, math.min(other.lan_len, n.lan_len),
          other.lan_net) then
        error(("lab: %s: LAN %s overlaps %s's %s"):format(n.name, lan,
          other.name, other.lan), 3)
      end
    end
    take(n.lan_net + 1, n.name)
    attach(n, spec)
    p.nats[#p.nats + 1] = n
  end
  for _, spec in ipairs(desc.hosts or {}) do
    local n = node(spec, "host")
    attach(n, spec)
    p.hosts[#p.hosts + 1] = n
  end
  for _, n in ipairs(p.nats) do n.forward = plan_forwards(n, p.by_name) end
  return p
end

-- The standard lab of `natpunch lab up`:
--   s1 203.0.113.2, s2 198.51.100.2   public servers (rendezvous)
--   p  203.0.113.50                   a host right on the internet
--   na (opts.a) 203.0.113.11, LAN 198.18.1.0/24: hosts a, a2
--   nb (opts.b) 203.0.113.12, LAN 198.18.2.0/24: host b
--   nc (opts.c) behind na, LAN 198.18.3.0/24: host c (double NAT)
-- opts.hairpin, opts.port_preservation, opts.udp_timeout,
-- opts.udp_stream_timeout apply to every NAT; opts.link (impairment) to the
-- WAN links of na and nb.
function plan.standard(opts)
  opts = opts or {}
  local function nat(name, kind, extra)
    local n = { name = name, type = kind, hairpin = opts.hairpin,
      port_preservation = opts.port_preservation,
      udp_timeout = opts.udp_timeout,
      udp_stream_timeout = opts.udp_stream_timeout }
    for k, v in pairs(extra) do n[k] = v end
    return n
  end
  return {
    prefix = opts.prefix,
    impair = opts.impair,
    nats = {
      nat("na", opts.a or "prc", { public = "203.0.113.11",
        lan = "198.18.1.0/24", link = opts.link }),
      nat("nb", opts.b or "prc", { public = "203.0.113.12",
        lan = "198.18.2.0/24", link = opts.link }),
      nat("nc", opts.c or "prc", { behind = "na", lan = "198.18.3.0/24" }),
    },
    hosts = {
      { name = "s1", public = "203.0.113.2" },
      { name = "s2", public = "198.51.100.2" },
      { name = "p", public = "203.0.113.50" },
      { name = "a", behind = "na" },
      { name = "a2", behind = "na" },
      { name = "b", behind = "nb" },
      { name = "c", behind = "nc" },
    },
  }
end

-- The lab of spec/iface_lab_spec.lua (docs/LAB.md "Dual-homed hosts and
-- IPv6"):
--   s1 203.0.113.2 + 2001:db8::11    rendezvous (IPv4 and IPv6)
--   s2 198.51.100.2                  TURN (coturn), IPv4 only
--   na sym 203.0.113.11, LAN 198.18.1.0/24     h's eth0 (default route)
--   nb prc 203.0.113.12, LAN 198.18.2.0/24     h's eth1, host b
--   nd prc 203.0.113.15, LAN 198.18.5.0/24     g's eth1 (g's eth0 behind na)
--   f1 sym 203.0.113.13, LAN 198.18.3.0/24 + 2001:db8:3::/64: x (IPv6 only), d1 (both)
--   f2 sym 203.0.113.14, LAN 198.18.4.0/24 + 2001:db8:4::/64: y (IPv6 only), d2 (both)
-- f1 and f2 route IPv6 behind a stateful firewall (nft.firewall6).
function plan.iface(opts)
  opts = opts or {}
  return {
    prefix = opts.prefix,
    nats = {
      { name = "na", type = "sym", public = "203.0.113.11", lan = "198.18.1.0/24" },
      { name = "nb", type = "prc", public = "203.0.113.12", lan = "198.18.2.0/24" },
      { name = "f1", type = "sym", public = "203.0.113.13", lan = "198.18.3.0/24", ipv6 = true },
      { name = "f2", type = "sym", public = "203.0.113.14", lan = "198.18.4.0/24", ipv6 = true },
      { name = "nd", type = "prc", public = "203.0.113.15", lan = "198.18.5.0/24" },
    },
    hosts = {
      { name = "s1", public = "203.0.113.2", ipv6 = true },
      { name = "s2", public = "198.51.100.2" },
      { name = "h", behind = "na", also_behind = { "nb" } },
      { name = "b", behind = "nb" },
      { name = "x", behind = "f1", ipv6 = "only" },
      { name = "y", behind = "f2", ipv6 = "only" },
      { name = "d1", behind = "f1", ipv6 = true },
      { name = "d2", behind = "f2", ipv6 = true },
      { name = "g", behind = "na", also_behind = { "nd" } },
    },
  }
end

-- The lab of spec/relay6_lab_spec.lua (docs/LAB.md "TURN over IPv6"):
--   s1 203.0.113.2 + 2001:db8::11    rendezvous (IPv4 and IPv6)
--   s2 198.51.100.2 + 2001:db8::12   TURN (coturn) on both families
--   f1 sym 203.0.113.11, LAN 198.18.1.0/24 + 2001:db8:1::/64, symmetric NAT66: x (IPv6 only)
--   f2 sym 203.0.113.12, LAN 198.18.2.0/24 + 2001:db8:2::/64, symmetric NAT66: y (IPv6 only)
--   nb sym 203.0.113.13, LAN 198.18.3.0/24: b (IPv4 only)
function plan.relay6(opts)
  opts = opts or {}
  return {
    prefix = opts.prefix,
    nats = {
      { name = "f1", type = "sym", public = "203.0.113.11", lan = "198.18.1.0/24", ipv6 = true, nat6 = "sym" },
      { name = "f2", type = "sym", public = "203.0.113.12", lan = "198.18.2.0/24", ipv6 = true, nat6 = "sym" },
      { name = "nb", type = "sym", public = "203.0.113.13", lan = "198.18.3.0/24" },
    },
    hosts = {
      { name = "s1", public = "203.0.113.2", ipv6 = true },
      { name = "s2", public = "198.51.100.2", ipv6 = true },
      { name = "x", behind = "f1", ipv6 = "only" },
      { name = "y", behind = "f2", ipv6 = "only" },
      { name = "b", behind = "nb" },
    },
  }
end

return plan
