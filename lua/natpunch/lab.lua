-- natpunch.lab: a NAT lab made of Linux network namespaces, veth links,
-- bridges and nftables NAT rules, for proving traversal against real NATs.
--
--   local lab = require "natpunch.lab"
--   local t <close> = lab.topology(lab.standard{ a = "prc", b = "sym" })
--   t:up()
--   local out, code = t:exec("a", { "ping", "-c1", t:addr("s1") })
--   local p = t:spawn("s1", { "some-server" })   -- p:stop() / p:output()
--   t:down()                                       -- also done by <close>
--
-- The internet is one namespace (<prefix>-inet) holding a bridge with the
-- routers 203.0.113.1/24 and 198.51.100.1/24 (RFC 5737); public hosts and
-- NAT routers hang off it.  A NAT router's LAN is a bridge inside its own
-- namespace, 198.18.N.0/24 (RFC 2544), with the router at .1.  A NAT may
-- sit behind another NAT (double NAT).  See docs/LAB.md.
--
-- Needs root, ip (iproute2), nft (nftables) and sysctl; impaired links need
-- netem or build/natpunch-wire (csrc/labwire).

local proc = require "natpunch.lab.proc"
local ip4 = require "natpunch.lab.ip4"
local nft = require "natpunch.lab.nft"
local nat_types = require "natpunch.lab.nat_types"
local impair = require "natpunch.lab.impair"
local state = require "natpunch.lab.state"

local lab = {}

lab.TYPES = nft.TYPES                -- id -> entry of lab/nat_types.lua
lab.canonical_type = nft.canonical
lab.nat_types = nat_types

-- Defaults of a NAT router.  Linux's own UDP conntrack timeouts (30 s
-- unreplied, 120 s once both ways have been seen) are kept unless asked:
-- RFC 4787 REQ-5 wants at least 2 minutes for an active mapping.
-- TCP: RFC 5382 REQ-5 asks for at least 2 h 4 min on an established
-- connection.  What an unsolicited SYN gets is the NAT type's
-- (nat_types: tcp.unsolicited) unless a NAT says tcp_unsolicited.
local NAT_DEFAULTS = { udp_timeout = 30, udp_stream_timeout = 120, tcp_timeout = 7440 }
local TCP_UNSOLICITED = { drop = true, rst = true, icmp = true }

local INET = "inet"

---------------------------------------------------------------------------
-- paths

local function repo_root()
  local here = package.searchpath("natpunch.lab", package.path)
  local root = here and here:match("^(.*)lua/natpunch/lab%.lua$")
  if root == "" then root = "./" end
  return root or "./"
end

function lab.wire_path()
  return os.getenv("NATPUNCH_WIRE") or (repo_root() .. "build/natpunch-wire")
end

function lab.probe_path()
  return package.searchpath("natpunch.lab.probe", package.path)
end

-- The exact build line of the wire program (the Makefile has the same).
function lab.wire_build_argv()
  local root = repo_root()
  local srcs = proc.run({ "sh", "-c", "ls " .. proc.quote(root)
    .. "csrc/labwire/*.c" })
  local argv = { "gcc", "-std=gnu11", "-Wall", "-Wextra", "-Werror", "-O2" }
  for src in srcs:gmatch("[^\n]+") do argv[#argv + 1] = src end
  argv[#argv + 1] = "-o"
  argv[#argv + 1] = lab.wire_path()
  return argv
end

-- Build natpunch-wire when it is missing.  Returns its path, or nil, err.
function lab.build_wire()
  local path = lab.wire_path()
  local f = io.open(path, "r")
  if f then f:close(); return path end
  proc.run({ "mkdir", "-p", (path:match("^(.*)/[^/]*$") or ".") })
  local out, code = proc.run(lab.wire_build_argv())
  if code ~= 0 then return nil, "building natpunch-wire failed: " .. out end
  return path
end

---------------------------------------------------------------------------
-- environment checks

-- From the kernel, not math.random: a spec that seeds math.random (the
-- JSON spec does) would give every concurrent test run the same prefix.
local function random_prefix()
  local f = io.open("/dev/urandom", "rb")
  local b = f and f:read(2)
  if f then f:close() end
  if b and #b == 2 then return ("np%02x%02x"):format(b:byte(1, 2)) end
  return ("np%04x"):format(math.random(0, 0xffff))
end

-- nil when the lab can run here, else the reason it cannot.
function lab.unavailable()
  local uid = proc.run({ "id", "-u" })
  if tonumber(uid) ~= 0 then
    return "running as uid " .. uid:gsub("%s", "") .. " (network namespaces need root)"
  end
  for _, tool in ipairs({ "ip", "nft", "sysctl", "setsid" }) do
    local _, code = proc.run({ "sh", "-c", "command -v " .. tool })
    if code ~= 0 then return tool .. " is missing (iproute2, nftables, procps, util-linux)" end
  end
  -- root in a container may still be refused namespaces or nftables
  local ns = random_prefix() .. "-check"
  local out, code = proc.run({ "ip", "netns", "add", ns })
  if code ~= 0 then return "cannot create a network namespace: " .. out end
  out, code = proc.run({ "ip", "netns", "exec", ns, "nft", "add", "table",
    "ip", "natpunch" })
  proc.run({ "ip", "netns", "del", ns })
  if code ~= 0 then return "nftables refused in a namespace: " .. out end
  return nil
end

-- Can this kernel do netem?  Tried on a throwaway veth pair inside ns (the
-- kernel here may lack the dummy driver as well).
function lab.netem_available(ns)
  proc.run({ "ip", "-n", ns, "link", "add", "npchk0", "type", "veth",
    "peer", "name", "npchk1" })
  local _, code = proc.run({ "tc", "-n", ns, "qdisc", "add", "dev", "npchk0",
    "root", "netem", "delay", "1ms" })
  proc.run({ "ip", "-n", ns, "link", "del", "npchk0" })
  return code == 0
end

---------------------------------------------------------------------------
-- topology description

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
local function plan(desc)
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
  -- where a node attaches: the internet (public address) or a NAT's LAN
  local function attach(n, spec)
    if spec.behind then
      local outer = p.by_name[spec.behind]
      if not outer or outer.role ~= "nat" then
        error(("lab: %s: behind=%q is not a NAT listed before it")
          :format(n.name, tostring(spec.behind)), 4)
      end
      n.behind = outer.name
      if spec.addr then
        local a = ip4.parse(spec.addr)
        if not a or not ip4.contains(outer.lan_net, outer.lan_len, a)
          or a == outer.lan_net + 1 then
          error(("lab: %s: address %s is not a host of %s's LAN %s")
            :format(n.name, tostring(spec.addr), outer.name, outer.lan), 4)
        end
        n.addr = take(a, n.name)
      else
        -- hosts count up from .2, routers behind a NAT down from the top
        local first = outer.lan_net + 2
        local last = outer.lan_net + (1 << (32 - outer.lan_len)) - 2
        local a, step, stop = first, 1, last
        if n.role == "nat" then a, step, stop = last, -1, first end
        while used[a] and a ~= stop do a = a + step end
        if used[a] then error("lab: LAN of " .. outer.name .. " is full", 4) end
        n.addr = take(a, n.name)
      end
      n.prefixlen = outer.lan_len
      n.gateway = ip4.format(outer.lan_net + 1)
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
    n.type = nft.canonical(spec.type or "prc")
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
    if n.tcp_unsolicited ~= nil and not TCP_UNSOLICITED[n.tcp_unsolicited] then
      error(("lab: %s: tcp_unsolicited must be drop, rst or icmp"):format(spec.name), 3)
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
function lab.standard(opts)
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

---------------------------------------------------------------------------
-- the topology object

local Topology = {}
Topology.__index = Topology
Topology.__close = function(t) t:down() end

function lab.topology(desc)
  local p = plan(desc)
  return setmetatable({ prefix = p.prefix, plan = p, procs = {}, wires = {},
    up_ = false, spawned = 0 }, Topology)
end

function Topology:node(name)
  local n = self.plan.by_name[name]
  if not n and name == INET then
    return { name = INET, role = INET, ns = self.prefix .. "-" .. INET }
  end
  if not n then error(("lab: no host %q"):format(tostring(name)), 2) end
  return n
end

function Topology:ns(name) return self:node(name).ns end
function Topology:addr(name) return self:node(name).addr end

-- Every address of a node: its own first, then its extra_addrs.
function Topology:addrs(name)
  local n = self:node(name)
  local list = { n.addr }
  for _, x in ipairs(n.extra_addrs or {}) do list[#list + 1] = x.addr end
  return list
end

-- The public address of a NAT router (its WAN address).
function Topology:public(nat_name) return self:node(nat_name).addr end

function Topology:nodes()
  local list = {}
  for _, n in ipairs(self.plan.nats) do list[#list + 1] = n end
  for _, n in ipairs(self.plan.hosts) do list[#list + 1] = n end
  return list
end

local function must_ip(...)
  return proc.must({ "ip", ... })
end

function Topology:_record_ns(ns)
  state.append(self.prefix, "ns", ns)
  must_ip("netns", "add", ns)
  -- IPv6 off before any interface exists: no DAD or router solicitations
  -- crossing the lab's links.
  proc.must({ "ip", "netns", "exec", ns, "sysctl", "-q", "-w",
    "net.ipv6.conf.all.disable_ipv6=1",
    "net.ipv6.conf.default.disable_ipv6=1" })
  must_ip("-n", ns, "link", "set", "lo", "up")
end

-- A router namespace: forwards, sends no redirects (a hairpinned packet
-- leaves by the interface it came in, which would otherwise draw an ICMP
-- redirect), and its bridges are not fed to netfilter (br_netfilter may be
-- loaded on the host).
local function router_sysctls(ns, extra)
  local argv = { "ip", "netns", "exec", ns, "sysctl", "-q", "-e", "-w",
    "net.ipv4.ip_forward=1",
    "net.ipv4.conf.all.send_redirects=0",
    "net.ipv4.conf.default.send_redirects=0",
    "net.bridge.bridge-nf-call-iptables=0",
    "net.bridge.bridge-nf-call-arptables=0" }
  for _, kv in ipairs(extra or {}) do argv[#argv + 1] = kv end
  proc.must(argv)
end

-- Spawn a process in the root namespace (the wire) or in a host.
function Topology:_spawn(argv, what)
  self.spawned = self.spawned + 1
  local log = state.log_path(self.prefix, what .. self.spawned)
  state.append(self.prefix, "log", log)
  local h = proc.spawn(argv, log)
  state.append(self.prefix, "pid", h.pid, h.start, what)
  self.procs[#self.procs + 1] = h
  return h
end

function Topology:_backend()
  if not self.backend_ then
    local b = self.plan.backend
    if b == "auto" then
      b = lab.netem_available(self:ns(INET)) and "netem" or "wire"
    end
    self.backend_ = b
  end
  return self.backend_
end

-- Link interface a_if in ns a to b_if in ns b (b_if becomes a port of
-- bridge master_b).  imp: parsed impairment or nil.
function Topology:_link(a, a_if, b, b_if, master_b, imp, what)
  local kind = imp and self:_backend() or "veth"
  if kind == "wire" then
    local wire = assert(lab.build_wire())
    local argv = { wire, "--tap", a_if .. "@" .. a, "--tap", b_if .. "@" .. b }
    for _, w in ipairs(impair.wire_args(imp)) do argv[#argv + 1] = w end
    argv[#argv + 1] = "--seed"
    argv[#argv + 1] = tostring(math.random(1, 1 << 30))
    local h = self:_spawn(argv, "wire-" .. what)
    self.wires[what] = h
    if not h:expect("^READY", 5) then
      error("lab: natpunch-wire did not start: " .. h:output(), 0)
    end
  else
    must_ip("link", "add", a_if, "netns", a, "type", "veth", "peer", "name",
      b_if, "netns", b)
    if kind == "netem" then
      for _, side in ipairs({ { a, a_if }, { b, b_if } }) do
        local argv = { "tc", "-n", side[1], "qdisc", "add", "dev", side[2],
          "root", "netem" }
        for _, w in ipairs(impair.netem_args(imp)) do argv[#argv + 1] = w end
        proc.must(argv)
      end
    end
  end
  must_ip("-n", b, "link", "set", b_if, "master", master_b)
  must_ip("-n", b, "link", "set", b_if, "up")
  must_ip("-n", a, "link", "set", a_if, "up")
  self.plan.links = self.plan.links or {}
  self.plan.links[what] = kind
end

-- Connect node n's uplink (its "wan"/"eth0") to where it attaches.
function Topology:_uplink(n, ifname)
  local up_ns, bridge, port
  if n.behind then
    up_ns, bridge, port = self:ns(n.behind), "lan", "h-" .. n.name
  else
    up_ns, bridge, port = self:ns(INET), "br0", "p-" .. n.name
  end
  self:_link(n.ns, ifname, up_ns, port, bridge, n.link, n.name)
  must_ip("-n", n.ns, "addr", "add", n.addr .. "/" .. n.prefixlen, "dev",
    ifname)
  for _, x in ipairs(n.extra_addrs or {}) do
    must_ip("-n", n.ns, "addr", "add", x.addr .. "/" .. x.prefixlen, "dev",
      ifname)
  end
  must_ip("-n", n.ns, "route", "add", "default", "via", n.gateway)
end

function Topology:_record_node(n)
  state.node_line(self.prefix, {
    name = n.name, role = n.role, ns = n.ns, addr = n.addr,
    behind = n.behind or "-", type = n.type or "-", lan = n.lan or "-",
    hairpin = n.role == "nat" and tostring(n.hairpin) or "-",
    pp = n.role == "nat" and tostring(n.port_preservation) or "-",
    link = n.link and impair.describe(n.link) or "-",
  })
end

function Topology:_build()
  local p = self.plan
  state.create(self.prefix)

  -- the internet
  local inet = self:ns(INET)
  self:_record_ns(inet)
  router_sysctls(inet)
  must_ip("-n", inet, "link", "add", "br0", "type", "bridge")
  for _, s in ipairs(ip4.PUBLIC) do
    must_ip("-n", inet, "addr", "add", s.router .. "/" .. s.len, "dev", "br0")
  end
  must_ip("-n", inet, "link", "set", "br0", "up")

  for _, n in ipairs(p.nats) do
    self:_record_ns(n.ns)
    router_sysctls(n.ns, {
      "net.netfilter.nf_conntrack_udp_timeout=" .. n.udp_timeout,
      "net.netfilter.nf_conntrack_udp_timeout_stream=" .. n.udp_stream_timeout,
      "net.netfilter.nf_conntrack_tcp_timeout_established=" .. n.tcp_timeout,
    })
    must_ip("-n", n.ns, "link", "add", "lan", "type", "bridge")
    must_ip("-n", n.ns, "addr", "add",
      ("%s/%d"):format(ip4.format(n.lan_net + 1), n.lan_len), "dev", "lan")
    must_ip("-n", n.ns, "link", "set", "lan", "up")
    self:_uplink(n, "wan")
    local rules = nft.ruleset({ type = n.type, public = n.addr,
      hairpin = n.hairpin, port_preservation = n.port_preservation,
      timeout = math.max(n.udp_timeout, n.udp_stream_timeout),
      tcp_unsolicited = n.tcp_unsolicited, tcp_allow = n.tcp_allow,
      forward = n.forward })
    local path = state.log_path(self.prefix, n.name .. "-nft")
    state.append(self.prefix, "log", path)
    local f = assert(io.open(path, "w"))
    f:write(rules)
    f:close()
    proc.must({ "ip", "netns", "exec", n.ns, "nft", "-f", path })
    self:_record_node(n)
  end
  for _, n in ipairs(p.hosts) do
    self:_record_ns(n.ns)
    self:_uplink(n, "eth0")
    self:_record_node(n)
  end
end

-- Build everything.  On failure whatever was made is removed and the error
-- raised again.
function Topology:up()
  if self.up_ then return self end
  if proc.read_file(state.path(self.prefix)) then
    error(("lab: a lab with prefix %s exists (natpunch lab down --prefix %s)")
      :format(self.prefix, self.prefix), 2)
  end
  self.up_ = true
  local ok, err = pcall(self._build, self)
  if not ok then
    self:down()
    error(err, 0)
  end
  return self
end

-- Remove everything this lab made.  Safe to call twice.
function Topology:down()
  for _, h in ipairs(self.procs) do h:stop(1) end
  self.procs = {}
  if self.up_ then
    self.up_ = false
    lab.down_all(self.prefix)
  end
end

-- Run argv inside host's namespace and wait.  Returns output (stdout and
-- stderr), exit code.
function Topology:exec(host, argv)
  local full = { "ip", "netns", "exec", self:ns(host) }
  for _, a in ipairs(argv) do full[#full + 1] = a end
  return proc.run(full)
end

-- Start argv inside host's namespace.  Returns a process handle: :stop(),
-- :kill(sig), :wait(s), :alive(), :output(), :expect(pattern, s).  The lab
-- stops it at down() if it still runs.
function Topology:spawn(host, argv)
  local full = { "ip", "netns", "exec", self:ns(host) }
  for _, a in ipairs(argv) do full[#full + 1] = a end
  return self:_spawn(full, host .. "-")
end

-- Run the lab's UDP probe (natpunch.lab.probe) in host: exec or spawn.
function Topology.probe_argv(_, args)
  local argv = { "lua5.4", lab.probe_path() }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  return argv
end

function Topology:probe(host, args)
  return self:exec(host, self:probe_argv(args))
end

function Topology:spawn_probe(host, args)
  return self:spawn(host, self:probe_argv(args))
end

-- The natpunch-wire process of node name's uplink (nil for a veth link).
-- Stopping it (h:stop()) cuts the link and prints its counters in
-- h:output().
function Topology:wire(name) return self.wires[name] end

-- How each link was built ("veth", "netem", "wire"), by node name.
function Topology:links() return self.plan.links or {} end

-- A description for people and for --json.
function Topology:info()
  local list = {}
  for _, n in ipairs(self:nodes()) do
    local e = { name = n.name, role = n.role, ns = n.ns, addr = n.addr,
      behind = n.behind, link = n.link and impair.describe(n.link) or nil,
      link_kind = (self.plan.links or {})[n.name] }
    if n.role == "nat" then
      e.type = n.type
      e.rfc4787 = nft.TYPES[n.type].mapping .. " mapping, "
        .. nft.TYPES[n.type].filtering .. " filtering"
      e.lan = n.lan
      e.hairpin = n.hairpin
      e.port_preservation = n.port_preservation
      e.udp_timeout = n.udp_timeout
      e.udp_stream_timeout = n.udp_stream_timeout
      e.tcp_timeout = n.tcp_timeout
      e.tcp_unsolicited = n.tcp_unsolicited or nat_types.get(n.type).tcp.unsolicited
      for _, f in ipairs(n.forward) do
        e.forward = e.forward or {}
        e.forward[#e.forward + 1] = ("%s %s:%d -> %s:%d"):format(f.proto,
          n.addr, f.port, f.addr, f.to_port)
      end
    end
    list[#list + 1] = e
  end
  return { prefix = self.prefix, nodes = list }
end

---------------------------------------------------------------------------
-- clean-up by prefix (also after a crash)

local function netns_list()
  local out = proc.run({ "ip", "netns", "list" })
  local names = {}
  for name in out:gmatch("(%S+)[^\n]*") do names[#names + 1] = name end
  return names
end

local function starts_with(s, prefix)
  return s:sub(1, #prefix) == prefix
end

-- Stop every process inside ns (the lab's own, a user's `lab exec`), so the
-- namespace really goes away when it is deleted.
local function stop_ns_pids(ns)
  for _, sig in ipairs({ "TERM", "KILL" }) do
    local out = proc.run({ "ip", "netns", "pids", ns })
    local any = false
    for pid in out:gmatch("%d+") do
      any = true
      proc.run({ "kill", "-" .. sig, pid })
    end
    if not any then return end
    proc.sleep(0.2)
  end
end

-- Remove everything the lab with this prefix made: its processes, its
-- namespaces (which takes their links, bridges and nft tables along), stray
-- links in the root namespace, its logs and its state file.  Without a
-- prefix, every lab that has a state file.  Returns what was removed.
function lab.down_all(prefix)
  if prefix == nil then
    local removed = {}
    for _, p in ipairs(state.list()) do
      for _, r in ipairs(lab.down_all(p)) do removed[#removed + 1] = r end
    end
    return removed
  end
  assert(type(prefix) == "string" and prefix:match("^[a-z][a-z0-9]*$"),
    "lab.down_all: bad prefix")
  local removed = {}
  local s = state.read(prefix) or { ns = {}, pids = {}, logs = {} }
  for _, r in ipairs(s.pids) do
    local h = proc.handle(r.pid, r.start)
    if h:alive() then
      h:stop(1)
      removed[#removed + 1] = "pid " .. r.pid
    end
  end
  local seen, names = {}, {}
  for _, ns in ipairs(s.ns) do
    if not seen[ns] then seen[ns] = true; names[#names + 1] = ns end
  end
  for _, ns in ipairs(netns_list()) do
    if starts_with(ns, prefix .. "-") and not seen[ns] then
      seen[ns] = true
      names[#names + 1] = ns
    end
  end
  local present = {}
  for _, ns in ipairs(netns_list()) do present[ns] = true end
  for i = #names, 1, -1 do
    local ns = names[i]
    if present[ns] then
      stop_ns_pids(ns)
      proc.run({ "ip", "netns", "del", ns })
      removed[#removed + 1] = "netns " .. ns
    end
  end
  -- The lab creates nothing in the root namespace; anything there with the
  -- prefix is a leftover of a crash mid-way.
  local links = proc.run({ "ip", "-o", "link", "show" })
  for name in links:gmatch("%d+: ([^:@%s]+)") do
    if starts_with(name, prefix) then
      proc.run({ "ip", "link", "del", name })
      removed[#removed + 1] = "link " .. name
    end
  end
  for _, log in ipairs(s.logs) do os.remove(log) end
  state.remove(prefix)
  return removed
end

-- Labs that have a state file: { {prefix, created, nodes, alive}, ... }.
function lab.list()
  local labs = {}
  local present = {}
  for _, ns in ipairs(netns_list()) do present[ns] = true end
  for _, prefix in ipairs(state.list()) do
    local s = state.read(prefix)
    if s then
      local alive = 0
      for _, ns in ipairs(s.ns) do
        if present[ns] then alive = alive + 1 end
      end
      local procs = 0
      for _, r in ipairs(s.pids) do
        if proc.alive(r.pid, r.start) then procs = procs + 1 end
      end
      labs[#labs + 1] = { prefix = prefix, created = s.created,
        nodes = s.nodes, namespaces = #s.ns, namespaces_present = alive,
        processes = procs }
    end
  end
  return labs
end

-- Run argv inside host of an existing lab (from its state file).
function lab.exec_in(prefix, host, argv)
  local ns = prefix .. "-" .. host
  local present = false
  for _, n in ipairs(netns_list()) do present = present or n == ns end
  if not present then return nil, ("no host %q in lab %s"):format(host, prefix) end
  local full = { "ip", "netns", "exec", ns }
  for _, a in ipairs(argv) do full[#full + 1] = a end
  return full
end

return lab
