-- natpunch.lab.build: making a planned lab real (needs root): namespaces,
-- veth pairs or natpunch-wire TAP links, bridges, addresses, routes,
-- sysctls and each router's nftables ruleset (lab/nft.lua), every step
-- recorded in the lab's state file first (lab/state.lua) so that
-- lab/cleanup.lua can remove it even after a crash.  natpunch.lab mixes
-- build.methods into its Topology objects.
local proc = require "natpunch.lab.proc"
local ip4 = require "natpunch.lab.ip4"
local nft = require "natpunch.lab.nft"
local impair = require "natpunch.lab.impair"
local state = require "natpunch.lab.state"
local plan = require "natpunch.lab.plan"
local nat_types = require "natpunch.lab.nat_types"

local build = {}
local Topology = {}     -- methods for natpunch.lab's Topology
build.methods = Topology

local INET = plan.INET


local function exists(path)
  local f = io.open(path, "r")
  if f then f:close() end
  return f ~= nil
end

-- An absolute path (the lab runs commands from other directories, and an
-- installed rock is used from anywhere).
local function absolute(p)
  if p:sub(1, 1) == "/" then return p end
  local cwd = os.getenv("PWD")
  if not cwd or cwd == "" or not exists(cwd .. "/" .. p) then cwd = proc.run({ "pwd" }):match("[^\n]+") end
  p = p:gsub("^%./", "")
  return cwd .. "/" .. p
end

-- The directory of the natpunch modules, absolute.
local function modules_dir()
  local here = package.searchpath("natpunch.lab.build", package.path)
  return absolute(here and here:match("^(.*)/lab/build%.lua$") or ".")
end

-- The checkout's root ("/path/"), or nil for an installed rock.
local function repo_root()
  local root = modules_dir():match("^(.*/)lua/natpunch$")
  if root and exists(root .. "csrc/labwire/main.c") then return root end
  return nil
end

--- Where natpunch-wire's C sources are: the checkout's csrc/labwire, or
-- natpunch/labwire next to the installed modules (the rock installs them).
function build.wire_src_dir()
  local root = repo_root()
  if root then return root .. "csrc/labwire" end
  return modules_dir() .. "/labwire"
end

--- $NATPUNCH_WIRE, build/natpunch-wire in a checkout, or (installed) a
-- per-user cache ($XDG_CACHE_HOME or ~/.cache)/natpunch/natpunch-wire.
function build.wire_path()
  local env = os.getenv("NATPUNCH_WIRE")
  if env and env ~= "" then return env end
  local root = repo_root()
  if root then return root .. "build/natpunch-wire" end
  local cache = os.getenv("XDG_CACHE_HOME")
  if not cache or cache == "" then cache = (os.getenv("HOME") or "/tmp") .. "/.cache" end
  return cache .. "/natpunch/natpunch-wire"
end

-- The exact build line of the wire program (the Makefile has the same),
-- with absolute paths.  Raises if the sources are not there.
function build.wire_build_argv()
  local dir = build.wire_src_dir()
  local srcs = proc.run({ "sh", "-c", 'for f in "$1"/*.c; do [ -f "$f" ] && printf "%s\\n" "$f"; done',
    "sh", dir })
  local argv = { "gcc", "-std=gnu11", "-Wall", "-Wextra", "-Werror", "-O2" }
  for src in srcs:gmatch("[^\n]+") do
    if src:sub(1, 1) == "/" and src:match("%.c$") then argv[#argv + 1] = src end
  end
  if #argv == 6 then error("lab: natpunch-wire sources not found in " .. dir, 0) end
  argv[#argv + 1] = "-o"
  argv[#argv + 1] = build.wire_path()
  return argv
end

-- Build natpunch-wire when it is missing.  Returns its path, or nil, err.
function build.build_wire()
  local path = build.wire_path()
  local f = io.open(path, "r")
  if f then f:close(); return path end
  proc.run({ "mkdir", "-p", (path:match("^(.*)/[^/]*$") or ".") })
  local okargv, argv = pcall(build.wire_build_argv)
  if not okargv then return nil, tostring(argv) end
  local out, code = proc.run(argv)
  if code ~= 0 then return nil, "building natpunch-wire failed: " .. out end
  return path
end

-- Can this kernel do netem?  Tried on a throwaway veth pair inside ns (the
-- kernel here may lack the dummy driver as well).
function build.netem_available(ns)
  proc.run({ "ip", "-n", ns, "link", "add", "npchk0", "type", "veth",
    "peer", "name", "npchk1" })
  local _, code = proc.run({ "tc", "-n", ns, "qdisc", "add", "dev", "npchk0",
    "root", "netem", "delay", "1ms" })
  proc.run({ "ip", "-n", ns, "link", "del", "npchk0" })
  return code == 0
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

-- IPv6 back on in a namespace of the lab's IPv6 segment (before its links
-- exist, so they inherit it): static addresses only (no router
-- advertisements taken, no solicitations sent), no duplicate address
-- detection (a tentative address cannot be bound for a second or so).
local function enable_ipv6(ns, router)
  local argv = { "ip", "netns", "exec", ns, "sysctl", "-q", "-e", "-w",
    "net.ipv6.conf.all.disable_ipv6=0", "net.ipv6.conf.default.disable_ipv6=0",
    "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0",
    "net.ipv6.conf.all.accept_ra=0", "net.ipv6.conf.default.accept_ra=0",
    "net.ipv6.conf.all.router_solicitations=0", "net.ipv6.conf.default.router_solicitations=0",
    "net.ipv6.conf.all.forwarding=" .. (router and 1 or 0) }
  proc.must(argv)
end

local function addr6(ns, a, dev)
  must_ip("-n", ns, "-6", "addr", "add", a, "dev", dev, "nodad")
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
    "net.bridge.bridge-nf-call-ip6tables=0",
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
      b = build.netem_available(self:ns(INET)) and "netem" or "wire"
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
    local wire = assert(build.build_wire())
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
  if n.ipv6 ~= "only" then
    must_ip("-n", n.ns, "addr", "add", n.addr .. "/" .. n.prefixlen, "dev",
      ifname)
    for _, x in ipairs(n.extra_addrs or {}) do
      must_ip("-n", n.ns, "addr", "add", x.addr .. "/" .. x.prefixlen, "dev",
        ifname)
    end
    must_ip("-n", n.ns, "route", "add", "default", "via", n.gateway)
  end
  if n.addr6 then
    addr6(n.ns, n.addr6 .. "/64", ifname)
    must_ip("-n", n.ns, "-6", "route", "add", "default", "via", n.gateway6)
  end
  -- a dual-homed host's other LANs: an address, the connected route, and
  -- source-based routing (what is sent from that address goes out that
  -- LAN's NAT: its own table with the LAN and a default route via the NAT)
  for _, x in ipairs(n.also or {}) do
    self:_link(n.ns, x.ifname, self:ns(x.behind), "h-" .. n.name, "lan", nil,
      n.name .. "-" .. x.ifname)
    must_ip("-n", n.ns, "addr", "add", x.addr .. "/" .. x.prefixlen, "dev",
      x.ifname)
    local tab = tostring(x.table)
    must_ip("-n", n.ns, "route", "add", x.lan, "dev", x.ifname, "table", tab)
    must_ip("-n", n.ns, "route", "add", "default", "via", x.gateway, "dev",
      x.ifname, "table", tab)
    must_ip("-n", n.ns, "rule", "add", "from", x.addr, "table", tab,
      "priority", tab)
  end
end

-- Does any node of the plan have IPv6?
local function any_ipv6(p)
  for _, list in ipairs({ p.nats, p.hosts }) do
    for _, n in ipairs(list) do if n.ipv6 then return true end end
  end
  return false
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

-- Write router n's ruleset (lab/nft.lua) to a log file and load it;
-- `head` goes first in the same nft transaction.
function Topology:_load_rules(n, head, suffix)
  local rules = nft.ruleset({ type = n.type, public = n.addr,
    hairpin = n.hairpin, port_preservation = n.port_preservation,
    timeout = math.max(n.udp_timeout, n.udp_stream_timeout),
    tcp_unsolicited = n.tcp_unsolicited, tcp_allow = n.tcp_allow,
    forward = n.forward })
  -- the IPv6 firewall once, at the first load (set_nat_type swaps the ip table only)
  if n.ipv6 and head == "" then rules = rules .. (n.nat6 and nft.nat66(n.addr6) or nft.firewall6()) end
  local path = state.log_path(self.prefix, n.name .. suffix)
  state.append(self.prefix, "log", path)
  local f = assert(io.open(path, "w"))
  f:write(head, rules)
  f:close()
  proc.must({ "ip", "netns", "exec", n.ns, "nft", "-f", path })
end

--- Give NAT router `name` of a running lab another behaviour (a type of
-- lab/nat_types.lua), in one nftables transaction: the mappings the
-- kernel tracks stay, new ones follow the new rules (a lab "opening the
-- way" under a running session, spec/upgrade_lab_spec.lua).  Port
-- preservation becomes the new type's default unless opts.port_preservation.
function Topology:set_nat_type(name, nat_type, opts)
  local n = self:node(name)
  if n.role ~= "nat" then error(("lab: %s is not a NAT router"):format(name), 2) end
  local e = nat_types.get(nat_type)
  if not e then error(("lab: unknown NAT type %q"):format(tostring(nat_type)), 2) end
  if not self.up_ then error("lab: set_nat_type needs a running lab (t:up())", 2) end
  n.type = e.id
  n.port_preservation = (opts and opts.port_preservation ~= nil) and opts.port_preservation
    or e.port_preservation
  self.rules_loaded = (self.rules_loaded or 0) + 1
  self:_load_rules(n, "table ip natpunch {}\ndelete table ip natpunch\n",
    "-nft-" .. self.rules_loaded)
end

function Topology:_build()
  local p = self.plan
  state.create(self.prefix)

  -- the internet
  local inet = self:ns(INET)
  self:_record_ns(inet)
  router_sysctls(inet)
  local six = any_ipv6(p)
  if six then enable_ipv6(inet, true) end
  must_ip("-n", inet, "link", "add", "br0", "type", "bridge")
  for _, s in ipairs(ip4.PUBLIC) do
    must_ip("-n", inet, "addr", "add", s.router .. "/" .. s.len, "dev", "br0")
  end
  if six then addr6(inet, plan.INET6_ROUTER .. "/64", "br0") end
  must_ip("-n", inet, "link", "set", "br0", "up")

  for _, n in ipairs(p.nats) do
    self:_record_ns(n.ns)
    if n.ipv6 then enable_ipv6(n.ns, true) end
    router_sysctls(n.ns, {
      "net.netfilter.nf_conntrack_udp_timeout=" .. n.udp_timeout,
      "net.netfilter.nf_conntrack_udp_timeout_stream=" .. n.udp_stream_timeout,
      "net.netfilter.nf_conntrack_tcp_timeout_established=" .. n.tcp_timeout,
    })
    must_ip("-n", n.ns, "link", "add", "lan", "type", "bridge")
    must_ip("-n", n.ns, "addr", "add",
      ("%s/%d"):format(ip4.format(n.lan_net + 1), n.lan_len), "dev", "lan")
    if n.ipv6 then addr6(n.ns, n.lan6_router .. "/64", "lan") end
    must_ip("-n", n.ns, "link", "set", "lan", "up")
    self:_uplink(n, "wan")
    if n.ipv6 then
      -- the internet routes this NAT's IPv6 LAN to it
      must_ip("-n", inet, "-6", "route", "add", n.lan6, "via", n.addr6)
    end
    self:_load_rules(n, "", "-nft")
    self:_record_node(n)
  end
  for _, n in ipairs(p.hosts) do
    self:_record_ns(n.ns)
    if n.ipv6 then enable_ipv6(n.ns, false) end
    self:_uplink(n, "eth0")
    self:_record_node(n)
  end
end

return build
