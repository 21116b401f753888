-- natpunch.lab.nft: the nftables ruleset of one lab NAT router.
--
-- The router has two interfaces: "wan" (its public address) and "lan" (a
-- bridge holding its private hosts).  Linux connection tracking already
-- gives a NAPT whose mapping is endpoint-independent while ports do not
-- clash (nf_nat keeps a mapping's port whenever the translated tuple is
-- unique) and whose filtering is address-and-port-dependent (only replies
-- to a tracked connection come back in).  The other behaviours of RFC 4787
-- are built on top of it with dynamic sets:
--
--   @mapping   public port -> internal endpoint, learnt after translation
--              from every outbound packet (so it is refreshed by outbound
--              traffic, RFC 4787 REQ-6).  Used to DNAT unsolicited
--              inbound packets (endpoint-independent filtering, and
--              address-dependent filtering with @contacted) and for
--              hairpinning (RFC 4787 section 6).
--   @contacted protocol . internal endpoint . remote address, for address-dependent
--              filtering (the restricted cone).
--   @bound     internal endpoints that already own a mapping, so that a
--              symmetric NAT with port preservation keeps the port only for
--              the first mapping of an endpoint.
--
-- Protocols: UDP and TCP are translated this way; anything else (ICMP
-- echo, for debugging) gets a plain source NAT.

local nat_types = require "natpunch.lab.nat_types"

local nft = {}

-- The behaviours (names, ground truth, rules) live in lab/nat_types.lua;
-- these stay for callers of this module.
nft.TYPES = setmetatable({}, { __index = function(_, k)
  local e = nat_types.get(k)
  return e and e.id == k and e or nil
end })

function nft.canonical(kind)
  return nat_types.canonical(kind)
end

-- Without port preservation, a cone NAT still needs the same public port
-- for every destination of one internal endpoint (EIM), so the port is a
-- hash of that endpoint rather than a fresh random one.  Ports 20000-59999
-- keep clear of the well-known range (RFC 4787 REQ-3 only asks to keep a
-- port's range, here we simply stay above 1023).
local HASH_PORTS = "jhash ip saddr . th sport mod 40000 offset 20000"
-- Sequential allocation: `numgen inc` is a counter of the rule, which the
-- nat chain evaluates only for the first packet of a connection, so every
-- new mapping gets the next port of 30000-31023 (wrapping).  The counter
-- goes through a map of inet_service values: used as a port directly, its
-- host byte order would make the step 256 on this (little-endian) machine.
local SEQ_COUNT, SEQ_BASE = 1024, 30000
local SEQ_PORTS
do
  local items = {}
  for i = 0, SEQ_COUNT - 1 do items[#items + 1] = ("%d : %d"):format(i, SEQ_BASE + i) end
  SEQ_PORTS = ("numgen inc mod %d map { %s }"):format(SEQ_COUNT, table.concat(items, ", "))
end

-- The source-NAT statement for one new outbound connection.
local function snat(n, e)
  local to = "snat ip to " .. n.public
  if e.port == "random" then
    return to .. " fully-random"
  elseif e.port == "sequential" then
    return to .. " : " .. SEQ_PORTS
  elseif n.port_preservation or e.port == "preserved" then
    return to
  else
    return to .. " : " .. HASH_PORTS
  end
end

-- What an unsolicited inbound TCP SYN gets (nat_types: tcp.unsolicited).
local TCP_ANSWER = {
  drop = nil,
  rst = "tcp flags & (syn | ack) == syn reject with tcp reset",
  icmp = "tcp flags & (syn | ack) == syn reject with icmp type port-unreachable",
}

-- Render the ruleset (an `nft -f` file).  n = { type, public, hairpin,
-- port_preservation, timeout (seconds, lifetime of the dynamic entries),
-- tcp_unsolicited (this router's answer to an unsolicited SYN, instead of
-- its type's tcp.unsolicited: "drop", "rst", "icmp"), tcp_allow (a list of
-- addresses: outbound TCP to any other is dropped, a firewall),
-- forward = { { proto = "udp"|"tcp", port = P, addr = LAN host, to_port = Q },
-- ... } (static port forwards: a server behind the NAT) }.
function nft.ruleset(n)
  local e = assert(nat_types.get(n.type), "unknown NAT type")
  local pub = n.public
  local t = math.max(1, math.floor(n.timeout or 120))
  local L = {}
  local function add(fmt, ...) L[#L + 1] = fmt:format(...) end
  local l4 = "meta l4proto { udp, tcp }"
  -- a mapping that depends on the destination, with port preservation:
  -- only an endpoint's first mapping keeps its port
  local dep_pp = e.mapping ~= "endpoint-independent" and n.port_preservation
  local r = { public = pub, l4 = l4, timeout = t, nat = n,
    dnat_mapping = ("ip daddr %s %s meta l4proto . th dport @mapping "
      .. "dnat ip to meta l4proto . th dport map @mapping"):format(pub, l4) }
  local extra = e.rules and e.rules(r) or {}
  local tcp_answer = TCP_ANSWER[n.tcp_unsolicited or e.tcp.unsolicited]
  local function each(chain, fn)
    for _, line in ipairs(extra[chain] or {}) do fn(line) end
  end

  add("table ip natpunch {")
  add("  map mapping {")
  add("    type inet_proto . inet_service : ipv4_addr . inet_service")
  add("    flags dynamic, timeout; timeout %ds", t)
  add("  }")
  each("sets", function(set)
    add("  set %s {", set[1])
    add("    type %s", set[2])
    add("    flags dynamic, timeout; timeout %ds", t)
    add("  }")
  end)
  if dep_pp then
    add("  set bound {")
    add("    type inet_proto . ipv4_addr . inet_service")
    add("    flags dynamic, timeout; timeout %ds", t)
    add("  }")
  end

  -- Destination NAT of packets addressed to a mapping: from outside only
  -- for the cone types whose filtering is not per port (for prc and sym,
  -- conntrack's own reply matching is the filter), from inside for
  -- hairpinning.
  add("  chain prerouting {")
  add("    type nat hook prerouting priority dstnat; policy accept;")
  -- A static forward comes first: it owns its public port whatever the
  -- NAT type, like a port forward configured on a home router.
  for _, f in ipairs(n.forward or {}) do
    add('    iifname "wan" ip daddr %s %s dport %d dnat ip to %s:%d', pub,
      f.proto, f.port, f.addr, f.to_port or f.port)
  end
  each("prerouting", function(line) add("    %s", line) end)
  if n.hairpin then add('    iifname "lan" %s', r.dnat_mapping) end
  add("  }")

  add("  chain postrouting {")
  add("    type nat hook postrouting priority srcnat; policy accept;")
  if n.hairpin then
    -- RFC 4787 REQ-9: a hairpinned packet carries the sender's external
    -- address and port, so its source is translated like outbound traffic.
    add('    iifname "lan" oifname "lan" ct status dnat %s %s', l4, snat(n, e))
  end
  if dep_pp then
    add('    oifname "wan" %s meta l4proto . ip saddr . th sport @bound '
      .. 'snat ip to %s fully-random', l4, pub)
    add('    oifname "wan" %s snat ip to %s', l4, pub)
  else
    add('    oifname "wan" %s %s', l4, snat(n, e))
  end
  add('    oifname "wan" snat ip to %s', pub)
  add("  }")

  -- Runs after the source NAT, so th sport is the public port.
  add("  chain learn {")
  add("    type filter hook postrouting priority srcnat + 10; policy accept;")
  add('    ip saddr %s %s update @mapping { meta l4proto . th sport : '
    .. 'ct original ip saddr . ct original proto-src }', pub, l4)
  if dep_pp then
    add('    oifname "wan" %s update @bound { meta l4proto . '
      .. 'ct original ip saddr . ct original proto-src }', l4)
  end
  add("  }")

  add("  chain forward {")
  add("    type filter hook forward priority filter; policy drop;")
  each("forward_first", function(line) add("    %s", line) end)
  add("    ct state established,related accept")
  if n.tcp_allow then
    -- a firewall that lets TCP out only toward these addresses
    if #n.tcp_allow == 0 then
      add('    iifname "lan" oifname "wan" meta l4proto tcp drop')
    else
      add('    iifname "lan" oifname "wan" meta l4proto tcp ip daddr != { %s } drop',
        table.concat(n.tcp_allow, ", "))
    end
  end
  add('    iifname "lan" oifname "wan" accept')
  for _, f in ipairs(n.forward or {}) do
    add('    iifname "wan" oifname "lan" ct status dnat ip daddr %s %s dport %d '
      .. 'accept', f.addr, f.proto, f.to_port or f.port)
  end
  each("forward", function(line) add("    %s", line) end)
  if n.hairpin then
    add('    iifname "lan" oifname "lan" ct status dnat accept')
  end
  -- a SYN to a mapping (DNAT) that the filtering does not let in gets the
  -- same answer as one to the router's own address
  if tcp_answer then add('    iifname "wan" oifname "lan" %s', tcp_answer) end
  add("  }")

  -- The router runs no service on its public address: what reaches it
  -- there (unsolicited, or from inside without hairpinning) is dropped
  -- silently, as NATs do, rather than answered with an ICMP error or a TCP
  -- RST that would spoil a simultaneous open.
  add("  chain input {")
  add("    type filter hook input priority filter; policy accept;")
  if tcp_answer then
    add('    iifname "wan" ip daddr %s %s', pub, tcp_answer)
  end
  add("    ip daddr %s %s drop", pub, l4)
  add("  }")
  add("}")
  return table.concat(L, "\n") .. "\n"
end

-- The IPv6 firewall's forward chain: out from the LAN, and answers back
-- in; the rest from the internet dropped and counted.
local FORWARD6 = table.concat({
  "  chain forward {",
  "    type filter hook forward priority filter; policy drop;",
  "    ct state established,related accept",
  '    iifname "lan" oifname "wan" accept',
  '    iifname "wan" counter drop comment "unsolicited"',
  "  }",
}, "\n")

--- The IPv6 side of a router with ipv6 = true: no NAT (2001:db8 is
-- routed), a stateful firewall like a home router's: whatever the LAN
-- sends out, and what conntrack sees as its answer (established or
-- related: ICMPv6 errors) comes back in; anything else from the internet
-- is dropped and counted (`nft list table ip6 natpunch6`).  So a peer
-- behind it is reachable only through a hole it punched itself.
-- Neighbour discovery is the router's own traffic (input/output), not
-- forwarded, so it is not filtered.
function nft.firewall6()
  return table.concat({
    "table ip6 natpunch6 {",
    FORWARD6,
    "}",
    "",
  }, "\n")
end

--- The IPv6 side of a router with nat6 = "sym": a symmetric NAT66 in
-- front of the same stateful firewall.  Every new UDP or TCP flow leaving
-- the LAN gets the router's WAN address `addr6` and a random port
-- (fully-random: the mapping depends on the destination, like the
-- symmetric NAT of nat_types), so two peers behind such routers cannot
-- predict each other's ports and have no direct path; what nobody inside
-- asked for is dropped and counted, toward the LAN's own addresses
-- (forward) as toward the router's (input).  ICMPv6 (neighbour
-- discovery, errors) keeps the plain address translation.
function nft.nat66(addr6)
  assert(type(addr6) == "string" and addr6:find(":", 1, true), "nft.nat66: an IPv6 address expected")
  return table.concat({
    "table ip6 natpunch6 {",
    "  chain prerouting {",
    "    type nat hook prerouting priority dstnat; policy accept;",
    "  }",
    "  chain postrouting {",
    "    type nat hook postrouting priority srcnat; policy accept;",
    ('    oifname "wan" meta l4proto { udp, tcp } snat to %s fully-random'):format(addr6),
    ('    oifname "wan" snat to %s'):format(addr6),
    "  }",
    FORWARD6,
    "  chain input {",
    "    type filter hook input priority filter; policy accept;",
    "    ct state established,related accept",
    ('    iifname "wan" ip6 daddr %s meta l4proto { udp, tcp } counter drop comment "unsolicited"'):format(addr6),
    "  }",
    "}",
    "",
  }, "\n")
end

return nft
