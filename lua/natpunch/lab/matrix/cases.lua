-- natpunch.lab.matrix.cases: the traversal matrix's cases (every ordered
-- pair of the NAT registry's types, one NAT, two NATs, no NAT, a
-- rendezvous behind a NAT), what each must show, and the lab description
-- that holds the cases asked for.  Pure: no root; spec/traversal_spec.lua
-- tests it without the lab.
local nat_types = require "natpunch.lab.nat_types"

local matrix = {}

local function types() return nat_types.ids({ matrix = true }) end
matrix.types = types

-- Lists of the built-in entries, for callers that want a plain list.
matrix.TYPES = types()
matrix.CONE = {}
for _, id in ipairs(matrix.TYPES) do
  if nat_types.get(id).mapping == "endpoint-independent" then matrix.CONE[#matrix.CONE + 1] = id end
end
local PORT = 3478                 -- STUN's default port (RFC 8489); the rendezvous answers STUN too
local S1 = "203.0.113.2"
-- the hard cases' relay: a rendezvous that hands out TURN credentials (st)
-- for coturn on s2, apart from s1 so that no other case gets a relay
local ST, S2 = "203.0.113.3", "198.51.100.2"
local TURN_SECRET = "lab-matrix-turn-secret"
local P_ADDR = "203.0.113.50"

---------------------------------------------------------------------------
-- the cases

-- Outcome of a NAT pair, "connect" or "may-fail": nat_types.expect (from
-- the registry's ground truth and its entries' expect tables).
function matrix.expect(a, b)
  return nat_types.expect(a, b, "udp")
end

local CASES, BY_NAME

local function is_cone(id)
  return nat_types.get(id).mapping == "endpoint-independent"
end

local function add(c)
  c.expect = c.expect or "connect"
  c.path = c.path or "public"
  c.peer_path = c.peer_path or c.path
  c.server = c.server or "s1"
  c.pair = c.pair or (c.a .. "/" .. c.b)
  CASES[#CASES + 1] = c
  BY_NAME[c.name] = c
end

local function build()
CASES, BY_NAME = {}, {}
-- Every ordered pair: the first type connects, the second waits.
for _, a in ipairs(types()) do
  for _, b in ipairs(types()) do
    add{ name = a .. "-" .. b, kind = "pair", a = a, b = b,
      connector = "a" .. nat_types.get(a).short, acceptor = "b" .. nat_types.get(b).short,
      expect = matrix.expect(a, b),
      title = ("%s -> %s"):format(a, b) }
  end
end
add{ name = "same-nat-hairpin", kind = "same", a = "prc", b = "prc",
  pair = "same prc NAT, hairpin",
  connector = "h1", acceptor = "h2", path = "private",
  title = "two hosts behind one hairpinning prc NAT" }
add{ name = "same-nat", kind = "same", a = "prc", b = "prc", pair = "same prc NAT",
  connector = "k1", acceptor = "k2", path = "private",
  title = "two hosts behind one prc NAT without hairpinning" }
add{ name = "double-nat", kind = "double", a = "prc in prc", b = "prc",
  connector = "c", acceptor = "bprc",
  title = "double NAT (prc behind prc) -> prc" }
-- A host without NAT reports its public address as its own ("private")
-- candidate, and that kind is what the other side's check reports.
add{ name = "public-prc", kind = "public", a = "none", b = "prc",
  connector = "p", acceptor = "bprc", peer_path = "private",
  title = "public host (no NAT) -> prc" }
add{ name = "sym-public", kind = "public", a = "sym", b = "none",
  connector = "asym", acceptor = "p", path = "private", peer_path = "public",
  title = "sym -> public host (no NAT)" }
add{ name = "rendezvous-nat", kind = "server-nat", a = "restricted", b = "prc",
  pair = "restricted/prc, rv NAT",
  connector = "arest", acceptor = "bprc", server = "rv",
  title = "rendezvous behind a prc NAT (port forward), restricted -> prc" }
-- The hard cases (issue 12): NAT pairs plain UDP punching cannot connect,
-- run with the peers' default methods (chosen from the introduction,
-- natpunch.method.choose), each with the method that must win.  Not part
-- of "all": `natpunch lab matrix --hard` (or --only hard).  The waiting
-- peer gets --timeout too, and both 30 s by default (birthday's probes).
local function hard(c)
  c.kind, c.hard, c.timeout = "hard", true, c.timeout or 30
  c.connector = c.connector or ("a" .. nat_types.get(c.a).short)
  c.acceptor = c.acceptor or ("b" .. nat_types.get(c.b).short)
  c.title = c.title or ("%s -> %s via %s"):format(c.a, c.b, c.method)
  add(c)
end
hard{ name = "hard-symseq-prc", a = "symseq", b = "prc", method = "predict" }
hard{ name = "hard-prc-symseq", a = "prc", b = "symseq", method = "predict" }
hard{ name = "hard-sym-prc", a = "sym", b = "prc", method = "birthday" }
hard{ name = "hard-prc-sym", a = "prc", b = "sym", method = "birthday" }
hard{ name = "hard-sym-sym", a = "sym", b = "sym", method = "relay", path = "relay", server = "st",
  turn = true, title = "sym -> sym via relay (coturn on s2)" }
-- Hard cases of their own kind, each in its own lab: unit names the
-- module natpunch.lab.matrix.kinds.<unit> that builds the lab and runs the
-- case (its describe, up, down, run; variant: which of the kind's cases).
local function unit(c)
  c.kind, c.hard, c.timeout = c.unit, true, c.timeout or 30
  c.connector, c.acceptor = c.connector or "a", c.acceptor or "b"
  add(c)
end
unit{ name = "hard-failover", unit = "failover", a = "prc", b = "prc", method = "udp",
  title = "failover: s1 killed, prc -> prc via udp through s2 (kill to connection)" }
unit{ name = "hard-upgrade", unit = "upgrade", a = "sym", b = "sym -> full", method = "udp",
  title = "relayed sym -> sym upgrades to direct udp when b's NAT opens (open to path_changed)" }
unit{ name = "hard-fallback", unit = "fallback", a = "prc", b = "prc (cut)", method = "relay", path = "relay",
  title = "direct -> relay fallback: prc -> prc via udp, the direct path cut (cut to path_changed)" }
unit{ name = "hard-dual-homed", unit = "iface", variant = "dualhome", a = "sym + prc LAN", b = "prc",
  connector = "h", method = "udp", path = "private",
  title = "dual-homed (eth0 behind sym, eth1 on prc's LAN) -> prc via udp" }
unit{ name = "hard-dual-nat", unit = "iface", variant = "dualnat", a = "sym (cut) + prc", b = "prc",
  connector = "g", method = "udp", path = "public",
  title = "dual-homed, eth0's sym NAT cut, --each-interface -> prc via udp through eth1's prc NAT" }
unit{ name = "hard-ipv6-only", unit = "iface", variant = "v6only", a = "fw6", b = "fw6",
  connector = "x", acceptor = "y", method = "udp", path = "private",
  title = "IPv6-only, firewall -> firewall via udp" }
unit{ name = "hard-dual-stack", unit = "iface", variant = "dualstack", a = "sym + fw6", b = "sym + fw6",
  connector = "d1", acceptor = "d2", method = "udp", path = "private",
  title = "dual-stack sym -> sym via udp over IPv6 (not the IPv4 relay)" }
unit{ name = "hard-relay-ipv6", unit = "relay6", a = "sym NAT66", b = "sym NAT66",
  connector = "x", acceptor = "y", method = "relay", path = "relay",
  title = "IPv6-only, sym NAT66 -> sym NAT66 via relay (coturn on IPv6)" }
end

-- The cases of the registry as it is now (rebuilt when it changed).
local built_for
local function cases()
  local key = table.concat(types(), ",")
  if key ~= built_for then build(); built_for = key end
  return CASES, BY_NAME
end

-- Names of a set: "all", "pairs" (the 16 NAT pairs), "cone" (the 9 cone
-- pairs), "lean" (cone pairs + sym -> full: the impaired matrix), "hard"
-- (the hard cases, which "all" leaves out), or a list
-- / comma-separated text of case names.  nil, message for an unknown name.
function matrix.names(which)
  which = which or "all"
  local all, by_name = cases()
  local out = {}
  local function pick(pred)
    for _, c in ipairs(all) do
      if pred(c) then out[#out + 1] = c.name end
    end
  end
  local cone = function(c)
    return c.kind == "pair" and is_cone(c.a) and is_cone(c.b)
  end
  if which == "all" then
    pick(function(c) return not c.hard end)
  elseif which == "hard" then
    pick(function(c) return c.hard end)
  elseif which == "pairs" then
    pick(function(c) return c.kind == "pair" end)
  elseif which == "cone" then
    pick(cone)
  elseif which == "lean" then
    pick(function(c) return cone(c) or c.name == "sym-full" end)
  else
    local list = which
    if type(which) == "string" then
      list = {}
      for w in which:gmatch("[^,%s]+") do list[#list + 1] = w end
    end
    for _, name in ipairs(list) do
      if not by_name[name] then
        return nil, ("unknown case %q (see natpunch lab matrix --list)")
          :format(tostring(name))
      end
      out[#out + 1] = name
    end
  end
  return out
end

-- The description of a case (a copy): name, kind, a, b, pair, title,
-- expect ("connect" or "may-fail"), path and peer_path (expected on the
-- connecting and the waiting side), connector, acceptor, server (hosts).
function matrix.case(name)
  local c = select(2, cases())[name]
  if not c then return nil end
  local copy = {}
  for k, v in pairs(c) do copy[k] = v end
  return copy
end

---------------------------------------------------------------------------
-- the topology

-- A lab description holding what the named cases need.  link: impairment
-- of every link into the internet except the server s1's (each NAT's WAN
-- and the public host p), so the peer-to-peer RTT is twice the server RTT.
function matrix.describe(names, opts)
  opts = opts or {}
  local nats, hosts, seen = {}, {}, {}
  local function nat(name, spec)
    if seen[name] then return end
    seen[name] = true
    spec.name = name
    for k, v in pairs(opts.nat or {}) do spec[k] = v end   -- e.g. tcp_unsolicited
    if name:match("^nb") then   -- the waiting side's NATs
      for k, v in pairs(opts.nat_b or {}) do spec[k] = v end
    end
    if not spec.behind then spec.link = opts.link end
    nats[#nats + 1] = spec
  end
  local function host(name, spec)
    if seen[name] then return end
    seen[name] = true
    spec.name = name
    hosts[#hosts + 1] = spec
  end
  host("s1", { public = S1 })
  local function side(h)
    local prefix, short = h:match("^([ab])(%a+)$")
    local e = short and nat_types.by_short(short)
    local kind = e and e.id
    if prefix and kind then
      nat("n" .. h, { type = kind })
      host(h, { behind = "n" .. h })
      return true
    end
    return false
  end
  local by_name = select(2, cases())
  for _, name in ipairs(names) do
    local c = assert(by_name[name], name)
    -- (a case of its own kind builds its own lab)
    for _, h in ipairs(c.unit and {} or { c.connector, c.acceptor }) do
      if not side(h) then
        if h == "h1" or h == "h2" then
          nat("nhair", { type = "prc", hairpin = true })
          host("h1", { behind = "nhair" })
          host("h2", { behind = "nhair" })
        elseif h == "k1" or h == "k2" then
          nat("nsame", { type = "prc" })
          host("k1", { behind = "nsame" })
          host("k2", { behind = "nsame" })
        elseif h == "c" then
          nat("ndout", { type = "prc" })
          nat("ndin", { type = "prc", behind = "ndout" })
          host("c", { behind = "ndin" })
        elseif h == "p" then
          host("p", { public = P_ADDR, link = opts.link })
        end
      end
    end
    if c.unit then goto next end
    if c.turn then host("s2", { public = S2 }) end
    if c.server == "st" then host("st", { public = ST }) end
    if c.server == "rv" then
      nat("nrv", { type = "prc",
        forward = { { proto = "udp", port = PORT, to = "rv" },
          { proto = "tcp", port = PORT, to = "rv" } } })
      host("rv", { behind = "nrv" })
    end
    ::next::
  end
  return { prefix = opts.prefix, impair = opts.impair, nats = nats,
    hosts = hosts }
end

-- The case table by name (the runner's view).
function matrix.by_name()
  return select(2, cases())
end

matrix.PORT, matrix.S1, matrix.S2, matrix.TURN_SECRET = PORT, S1, S2, TURN_SECRET

return matrix
