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

local nft = {}

-- Behaviour names.  Seed 001's names (full cone, restricted cone, port
-- restricted cone, symmetric) and their RFC 4787 sections 4.1 (mapping) and
-- 5 (filtering) terms.
nft.TYPES = {
  full = {
    name = "full cone",
    mapping = "endpoint-independent", filtering = "endpoint-independent",
  },
  restricted = {
    name = "restricted cone",
    mapping = "endpoint-independent", filtering = "address-dependent",
  },
  prc = {
    name = "port-restricted cone",
    mapping = "endpoint-independent",
    filtering = "address-and-port-dependent",
  },
  sym = {
    name = "symmetric",
    mapping = "address-and-port-dependent",
    filtering = "address-and-port-dependent",
  },
}
nft.ALIASES = {
  ["full-cone"] = "full", eim = "full", ["eim-eif"] = "full",
  ["restricted-cone"] = "restricted", ["eim-adf"] = "restricted",
  ["port-restricted"] = "prc", ["port-restricted-cone"] = "prc",
  ["eim-apdf"] = "prc",
  symmetric = "sym", ["apdm-apdf"] = "sym",
}

function nft.canonical(kind)
  kind = kind and tostring(kind):lower()
  if nft.TYPES[kind] then return kind end
  return nft.ALIASES[kind]
end

-- Without port preservation, a cone NAT still needs the same public port
-- for every destination of one internal endpoint (EIM), so the port is a
-- hash of that endpoint rather than a fresh random one.  Ports 20000-59999
-- keep clear of the well-known range (RFC 4787 REQ-3 only asks to keep a
-- port's range, here we simply stay above 1023).
local HASH_PORTS = "jhash ip saddr . th sport mod 40000 offset 20000"

-- The source-NAT statement for one new outbound connection.
local function snat(n)
  local to = "snat ip to " .. n.public
  if n.type == "sym" then
    return to .. " fully-random"
  elseif n.port_preservation then
    return to
  else
    return to .. " : " .. HASH_PORTS
  end
end

-- Render the ruleset (an `nft -f` file).  n = { type, public, hairpin,
-- port_preservation, timeout (seconds, lifetime of the dynamic entries),
-- tcp_unsolicited ("drop" default, "rst", "icmp"), tcp_allow (a list of
-- addresses: outbound TCP to any other is dropped),
-- forward = { { proto = "udp"|"tcp", port = P, addr = LAN host, to_port = Q },
-- ... } (static port forwards: a server behind the NAT, natdemo stage 2) }.
function nft.ruleset(n)
  assert(nft.TYPES[n.type], "unknown NAT type")
  local pub = n.public
  local t = math.max(1, math.floor(n.timeout or 120))
  local L = {}
  local function add(fmt, ...) L[#L + 1] = fmt:format(...) end
  local l4 = "meta l4proto { udp, tcp }"
  local eif = n.type == "full" or n.type == "restricted"
  local sym_pp = n.type == "sym" and n.port_preservation
  -- Unsolicited inbound TCP (no mapping, or filtered out): dropped
  -- silently (RFC 5382 REQ-4), or, as many routers do, answered with a TCP
  -- RST (tcp_unsolicited = "rst") or an ICMP port unreachable ("icmp"): a
  -- SYN that arrives before the other side's own SYN has left then kills
  -- the attempt at once.
  local tu = n.tcp_unsolicited or "drop"
  local reject = tu == "rst" and "reject with tcp reset"
    or tu == "icmp" and "reject with icmp type port-unreachable" or nil

  add("table ip natpunch {")
  add("  map mapping {")
  add("    type inet_proto . inet_service : ipv4_addr . inet_service")
  add("    flags dynamic, timeout; timeout %ds", t)
  add("  }")
  if n.type == "restricted" then
    add("  set contacted {")
    add("    type inet_proto . ipv4_addr . inet_service . ipv4_addr")
    add("    flags dynamic, timeout; timeout %ds", t)
    add("  }")
  end
  if sym_pp then
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
  local dnat = ("ip daddr %s %s meta l4proto . th dport @mapping "
    .. "dnat ip to meta l4proto . th dport map @mapping"):format(pub, l4)
  if eif then add('    iifname "wan" %s', dnat) end
  if n.hairpin then add('    iifname "lan" %s', dnat) end
  add("  }")

  add("  chain postrouting {")
  add("    type nat hook postrouting priority srcnat; policy accept;")
  if n.hairpin then
    -- RFC 4787 REQ-9: a hairpinned packet carries the sender's external
    -- address and port, so its source is translated like outbound traffic.
    add('    iifname "lan" oifname "lan" ct status dnat %s %s', l4, snat(n))
  end
  if sym_pp then
    add('    oifname "wan" %s meta l4proto . ip saddr . th sport @bound '
      .. 'snat ip to %s fully-random', l4, pub)
    add('    oifname "wan" %s snat ip to %s', l4, pub)
  else
    add('    oifname "wan" %s %s', l4, snat(n))
  end
  add('    oifname "wan" snat ip to %s', pub)
  add("  }")

  -- Runs after the source NAT, so th sport is the public port.
  add("  chain learn {")
  add("    type filter hook postrouting priority srcnat + 10; policy accept;")
  add('    ip saddr %s %s update @mapping { meta l4proto . th sport : '
    .. 'ct original ip saddr . ct original proto-src }', pub, l4)
  if sym_pp then
    add('    oifname "wan" %s update @bound { meta l4proto . '
      .. 'ct original ip saddr . ct original proto-src }', l4)
  end
  add("  }")

  add("  chain forward {")
  add("    type filter hook forward priority filter; policy drop;")
  if n.type == "restricted" then
    add('    iifname "lan" oifname "wan" %s update @contacted '
      .. '{ meta l4proto . ip saddr . th sport . ip daddr }', l4)
  end
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
  if n.type == "full" then
    add('    iifname "wan" oifname "lan" ct status dnat accept')
  elseif n.type == "restricted" then
    add('    iifname "wan" oifname "lan" ct status dnat '
      .. 'meta l4proto . ip daddr . th dport . ip saddr @contacted accept')
  end
  if n.hairpin then
    add('    iifname "lan" oifname "lan" ct status dnat accept')
  end
  if reject then add('    iifname "wan" meta l4proto tcp %s', reject) end
  add("  }")

  -- The router runs no service on its public address: what reaches it
  -- there (unsolicited, or from inside without hairpinning) is dropped
  -- silently, as NATs do, rather than answered with an ICMP error or a TCP
  -- RST that would spoil a simultaneous open.
  --
  -- For TCP the lab can also model routers that answer an unsolicited SYN
  -- (see `reject` above).
  add("  chain input {")
  add("    type filter hook input priority filter; policy accept;")
  if reject then add("    ip daddr %s meta l4proto tcp %s", pub, reject) end
  add("    ip daddr %s %s drop", pub, l4)
  add("  }")
  add("}")
  return table.concat(L, "\n") .. "\n"
end

return nft
