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
--
-- In parts: lab/plan.lua (descriptions made into plans: pure, no root),
-- lab/build.lua (making a plan real), lab/cleanup.lua (removing labs, also
-- after a crash); lab/nat_types.lua (the NAT behaviours), lab/nft.lua (a
-- router's ruleset), lab/impair.lua, lab/state.lua, lab/proc.lua.

local proc = require "natpunch.lab.proc"
local nft = require "natpunch.lab.nft"
local nat_types = require "natpunch.lab.nat_types"
local impair = require "natpunch.lab.impair"
local state = require "natpunch.lab.state"
local plan = require "natpunch.lab.plan"
local build = require "natpunch.lab.build"
local cleanup = require "natpunch.lab.cleanup"

local lab = {}

lab.TYPES = nft.TYPES                -- id -> entry of lab/nat_types.lua
lab.canonical_type = nft.canonical
lab.nat_types = nat_types

local INET = plan.INET

---------------------------------------------------------------------------
-- paths

lab.wire_path = build.wire_path
lab.wire_src_dir = build.wire_src_dir
lab.wire_build_argv = build.wire_build_argv
lab.build_wire = build.build_wire
lab.netem_available = build.netem_available

function lab.probe_path()
  return package.searchpath("natpunch.lab.probe", package.path)
end

---------------------------------------------------------------------------
-- environment checks

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
  local ns = plan.random_prefix() .. "-check"
  local out, code = proc.run({ "ip", "netns", "add", ns })
  if code ~= 0 then return "cannot create a network namespace: " .. out end
  out, code = proc.run({ "ip", "netns", "exec", ns, "nft", "add", "table",
    "ip", "natpunch" })
  proc.run({ "ip", "netns", "del", ns })
  if code ~= 0 then return "nftables refused in a namespace: " .. out end
  return nil
end

-- The description of `natpunch lab up` (lab/plan.lua).
lab.standard = plan.standard
lab.iface = plan.iface
lab.relay6 = plan.relay6

---------------------------------------------------------------------------
-- the topology object (building: lab/build.lua)

local Topology = {}
for k, f in pairs(build.methods) do Topology[k] = f end
Topology.__index = Topology
Topology.__close = function(t) t:down() end

function lab.topology(desc)
  local p = plan.make(desc)
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
    cleanup.down_all(self.prefix)
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
-- The probe uses natpunch.core: it runs with this process's module paths
-- (and, under `make sanitize`, its sanitizer preload).
function Topology.probe_argv(_, args)
  local paths = ("package.path = %q; package.cpath = %q"):format(package.path, package.cpath)
  local argv = { os.getenv("LUA") or "lua5.4", "-e", paths, lab.probe_path() }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  return proc.preload(argv)
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

-- Pin the neighbour entries of hosts a and b (on one segment) to each
-- other, so ARP (itself lossy on an impaired link) stays out of what is
-- measured.
function Topology:pin_neighbours(a, b)
  local function mac(host)
    local out = self:exec(host, { "ip", "-o", "link", "show", "eth0" })
    return assert(out:match("link/ether (%x%x:%x%x:%x%x:%x%x:%x%x:%x%x)"), out)
  end
  proc.must({ "ip", "-n", self:ns(a), "neigh", "replace", self:addr(b), "lladdr", mac(b),
    "dev", "eth0", "nud", "permanent" })
  proc.must({ "ip", "-n", self:ns(b), "neigh", "replace", self:addr(a), "lladdr", mac(a),
    "dev", "eth0", "nud", "permanent" })
end

-- The counters of node name's natpunch-wire so far (SIGUSR1: the wire
-- prints them and goes on): { up = {...}, down = {...} }, up from the node
-- into the internet, down towards it; fields rx, tx, lost, qdrop, qmax (the
-- most frames held since the previous call), ...  nil, why when the link
-- is not a wire or does not answer.
function Topology:wire_counters(name)
  local h = self.wires[name]
  if not h or not h:alive() then return nil, "no natpunch-wire on " .. tostring(name) end
  local function lines()
    local list = {}
    for line in h:output():gmatch("[^\n]*rx=[^\n]*") do list[#list + 1] = line end
    return list
  end
  local before = #lines()
  h:kill("USR1")
  for _ = 1, 100 do
    local list = lines()
    if #list >= before + 2 then
      local out = {}
      for i = #list - 1, #list do
        local f = {}
        for k, v in list[i]:gmatch("([%w_]+)=(%d+)") do f[k] = tonumber(v) end
        out[list[i]:match("^eth0@") and "up" or "down"] = f
      end
      return out
    end
    proc.sleep(0.02)
  end
  return nil, "natpunch-wire of " .. name .. " printed no counters"
end

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
-- clean-up by prefix (lab/cleanup.lua)

lab.down_all = cleanup.down_all
lab.list = cleanup.list
lab.exec_in = cleanup.exec_in

return lab
