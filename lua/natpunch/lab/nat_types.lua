-- natpunch.lab.nat_types: the one registry of the lab's NAT behaviours.
--
-- Each behaviour is one entry: its names (the classic ones (RFC 3489) and
-- the RFC 4787 terms), its ground truth (mapping and filtering, RFC 4787
-- sections 4.1 and 5; what an unsolicited inbound TCP SYN gets), its
-- nftables rules (the pieces lab/nft.lua puts into the router's ruleset:
-- the same for UDP and TCP unless an entry says otherwise), and what the
-- traversal matrix expects when it meets each other behaviour.  nft.lua,
-- the matrix (lab/matrix.lua), `natpunch lab up --help` and the tables of
-- docs/LAB.md and docs/TRAVERSAL.md are generated from it (a spec checks the
-- docs).  docs/EXTENDING.md shows how to add one.
--
-- An entry:
--   id           the name on command lines and in case names ("prc")
--   short        a shorter column name for host names in the matrix ("rest")
--   name         the classic name ("port-restricted cone")
--   aliases      other names accepted on command lines
--   mapping      "endpoint-independent" | "address-dependent" | "address-and-port-dependent"
--   filtering    the same three terms
--   port         "preserved" | "hashed" | "random" | "sequential": how a new mapping's
--                public port is chosen when port preservation is off
--                (with it on, every type keeps the port while it is free;
--                a symmetric NAT only for an endpoint's first mapping)
--   port_preservation  the default of the --port-preservation option
--   tcp          { unsolicited = "drop" | "rst" | "icmp" }: what an
--                inbound SYN that no mapping lets in gets (default drop)
--   rules        function(r) -> table of extra nftables lines by chain
--                (see nft.lua: sets, prerouting, forward_first, forward);
--                r holds the router's facts and helpers
--   expect       optional { udp = { [other id] = "connect" | "may-fail" } },
--                overriding the rule of nat_types.expect
--   matrix       false to keep it out of the traversal matrix's pairs
--   summary      one line for `natpunch lab up --help`
local nat_types = {}

local MAPPING_SHORT = {
  ["endpoint-independent"] = "EIM", ["address-dependent"] = "ADM",
  ["address-and-port-dependent"] = "APDM",
}
local FILTERING_SHORT = {
  ["endpoint-independent"] = "EIF", ["address-dependent"] = "ADF",
  ["address-and-port-dependent"] = "APDF",
}
nat_types.MAPPING_SHORT, nat_types.FILTERING_SHORT = MAPPING_SHORT, FILTERING_SHORT

-- Inbound packets to a mapping are translated back by a DNAT through the
-- @mapping map (nft.lua); what lets them through the forward chain is the
-- filtering.  Address-and-port-dependent filtering needs no rule: only
-- conntrack's replies come in.
local ENTRIES = {
  {
    id = "full", short = "full", name = "full cone",
    aliases = { "full-cone", "eim", "eim-eif" },
    mapping = "endpoint-independent", filtering = "endpoint-independent",
    port = "hashed", port_preservation = true,
    summary = "full cone: endpoint-independent mapping and filtering",
    rules = function(r)
      return {
        prerouting = { 'iifname "wan" ' .. r.dnat_mapping },
        forward = { 'iifname "wan" oifname "lan" ct status dnat accept' },
      }
    end,
  },
  {
    id = "restricted", short = "rest", name = "restricted cone",
    aliases = { "restricted-cone", "eim-adf" },
    mapping = "endpoint-independent", filtering = "address-dependent",
    port = "hashed", port_preservation = true,
    summary = "restricted cone: EIM, address-dependent filtering",
    rules = function(r)
      return {
        sets = { { "contacted", "inet_proto . ipv4_addr . inet_service . ipv4_addr" } },
        prerouting = { 'iifname "wan" ' .. r.dnat_mapping },
        forward_first = { ('iifname "lan" oifname "wan" %s update @contacted '
          .. '{ meta l4proto . ip saddr . th sport . ip daddr }'):format(r.l4) },
        forward = { 'iifname "wan" oifname "lan" ct status dnat '
          .. 'meta l4proto . ip daddr . th dport . ip saddr @contacted accept' },
      }
    end,
  },
  {
    id = "prc", short = "prc", name = "port-restricted cone",
    aliases = { "port-restricted", "port-restricted-cone", "eim-apdf" },
    mapping = "endpoint-independent", filtering = "address-and-port-dependent",
    port = "hashed", port_preservation = true,
    summary = "port-restricted cone: EIM, address-and-port-dependent filtering",
  },
  {
    id = "sym", short = "sym", name = "symmetric",
    aliases = { "symmetric", "apdm-apdf" },
    mapping = "address-and-port-dependent", filtering = "address-and-port-dependent",
    port = "random", port_preservation = false,
    summary = "symmetric: address-and-port-dependent mapping (random ports)",
  },
  -- Sequential allocation, as many real symmetric NATs do: every new
  -- mapping takes the next public port (delta 1).  nf_nat alone picks
  -- random ports (or keeps the internal one), so the port is given by the
  -- ruleset: `numgen inc` is a counter of the source-NAT rule, which nf_nat
  -- evaluates once per new connection (nft.lua).  Kept out of the matrix's
  -- pairs; the predict method's lab spec pairs it (spec/predict_lab_spec.lua).
  {
    id = "symseq", short = "seq", name = "symmetric, sequential ports",
    aliases = { "symmetric-sequential", "sequential" },
    mapping = "address-and-port-dependent", filtering = "address-and-port-dependent",
    port = "sequential", port_preservation = false, matrix = false,
    summary = "symmetric with sequential port allocation (each new mapping: next port)",
  },
}

local by_id, by_alias, order = {}, {}, {}

local function check(e)
  assert(type(e.id) == "string" and e.id:match("^[%w_]+$"), "nat type: id (letters, digits, _) expected")
  assert(type(e.name) == "string", "nat type " .. e.id .. ": name expected")
  assert(MAPPING_SHORT[e.mapping], "nat type " .. e.id .. ": bad mapping")
  assert(FILTERING_SHORT[e.filtering], "nat type " .. e.id .. ": bad filtering")
  assert(({ preserved = true, hashed = true, random = true, sequential = true })[e.port],
    "nat type " .. e.id .. ": bad port")
  e.tcp = e.tcp or {}
  e.tcp.unsolicited = e.tcp.unsolicited or "drop"
  assert(({ drop = true, rst = true, icmp = true })[e.tcp.unsolicited],
    "nat type " .. e.id .. ": tcp.unsolicited must be drop, rst or icmp")
  assert(e.rules == nil or type(e.rules) == "function", "nat type " .. e.id .. ": rules must be a function")
  -- mapping rules the renderer knows; a new mapping behaviour needs nft.lua
  assert(e.mapping ~= "address-dependent", "nat type " .. e.id .. ": address-dependent mapping is not built yet")
  e.short = e.short or e.id
  e.summary = e.summary or (e.name .. ": " .. MAPPING_SHORT[e.mapping] .. ", " .. FILTERING_SHORT[e.filtering])
  if e.port_preservation == nil then e.port_preservation = e.port ~= "random" end
  return e
end

--- Add a behaviour (one entry, as above); it is then known by id and
-- aliases everywhere.  Returns the entry.  `base` = id of an entry whose
-- fields are copied first (for variants: the same NAT with another TCP
-- answer, say).
function nat_types.add(e)
  if e.base then
    local b = assert(by_id[e.base], "nat type: unknown base " .. tostring(e.base))
    local copy = {}
    for k, v in pairs(b) do copy[k] = v end
    copy.aliases, copy.summary, copy.short, copy.tcp = nil, nil, nil, nil
    for k, v in pairs(e) do copy[k] = v end
    e = copy
  end
  check(e)
  if by_id[e.id] then error("nat type " .. e.id .. " exists", 2) end
  by_id[e.id] = e
  order[#order + 1] = e.id
  for _, a in ipairs(e.aliases or {}) do by_alias[a] = e.id end
  return e
end

--- Remove a behaviour added with nat_types.add (tests).
function nat_types.remove(id)
  local e = by_id[id]
  if not e then return end
  by_id[id] = nil
  for i, v in ipairs(order) do if v == id then table.remove(order, i) break end end
  for _, a in ipairs(e.aliases or {}) do if by_alias[a] == id then by_alias[a] = nil end end
end

for _, e in ipairs(ENTRIES) do nat_types.add(e) end

-- Routers that answer an unsolicited TCP SYN (issue 10), against RFC 5382
-- REQ-4 but common: a port-restricted cone that sends an RST, and one that
-- sends ICMP port unreachable.  Out of the matrix's pairs (same UDP
-- behaviour as prc); spec/tcp_traversal_spec.lua runs TCP through them
-- (and through every cone type made to answer so, with a NAT's own
-- tcp_unsolicited option).
nat_types.add{ id = "prc_rst", short = "prcr", base = "prc", name = "port-restricted cone, RST for unsolicited SYNs",
  tcp = { unsolicited = "rst" }, matrix = false,
  summary = "prc that answers an unsolicited TCP SYN with an RST" }
nat_types.add{ id = "prc_icmp", short = "prci", base = "prc", name = "port-restricted cone, ICMP for unsolicited SYNs",
  tcp = { unsolicited = "icmp" }, matrix = false,
  summary = "prc that answers an unsolicited TCP SYN with ICMP port unreachable" }

--- The entry of a name (id or alias, any case), or nil.
function nat_types.get(name)
  if name == nil then return nil end
  name = tostring(name):lower()
  return by_id[name] or by_id[by_alias[name] or ""]
end

--- The id of a name, or nil.
function nat_types.canonical(name)
  local e = nat_types.get(name)
  return e and e.id
end

--- Ids in registry order (opts.matrix: only those in the matrix).
function nat_types.ids(opts)
  local out = {}
  for _, id in ipairs(order) do
    if not (opts and opts.matrix and by_id[id].matrix == false) then out[#out + 1] = id end
  end
  return out
end

--- The entry whose `short` (or id) is s.
function nat_types.by_short(s)
  for _, id in ipairs(order) do
    if by_id[id].short == s then return by_id[id] end
  end
  return by_id[s]
end

--- The RFC 4787 terms of an entry, "EIM, APDF".
function nat_types.rfc_terms(e)
  return MAPPING_SHORT[e.mapping] .. ", " .. FILTERING_SHORT[e.filtering]
end

--- What the matrix expects when a peer behind `a` connects to one behind
-- `b` (ids) over transport ("udp"): "connect" or "may-fail".  An entry's
-- expect table decides if it names the other; otherwise, from the ground
-- truth: UDP punching sends to the public endpoint the rendezvous saw.
-- With endpoint-independent mapping on both sides that endpoint is the one
-- the other side's packets use, so any filtering lets them in once each
-- side has sent.  With a mapping that depends on the destination on one
-- side, the other side must let in a port it has not sent to (filtering
-- not port-dependent); it then learns the real port from the request
-- (peer-reflexive).  Both dependent: needs port prediction.
function nat_types.expect(a, b, transport)
  transport = transport or "udp"
  local ea, eb = assert(nat_types.get(a), a), assert(nat_types.get(b), b)
  for _, pair in ipairs({ { ea, eb }, { eb, ea } }) do
    local x = pair[1].expect and pair[1].expect[transport]
    if x and x[pair[2].id] then return x[pair[2].id] end
  end
  -- TCP simultaneous open (natpunch.method.tcp) needs the same: each side's
  -- SYN toward the mapping the server saw, or a port the other side's
  -- filtering lets in
  if transport ~= "udp" and transport ~= "tcp" then return "may-fail" end
  local dep_a = ea.mapping ~= "endpoint-independent"
  local dep_b = eb.mapping ~= "endpoint-independent"
  if not dep_a and not dep_b then return "connect" end
  if dep_a and dep_b then return "may-fail" end
  local other = dep_a and eb or ea
  if other.filtering ~= "address-and-port-dependent" then return "connect" end
  return "may-fail"
end

--- The Markdown table of docs/LAB.md (one row per behaviour).
function nat_types.markdown()
  local L = {
    "| type | classic name | mapping (RFC 4787 4.1) | filtering (RFC 4787 5) | new port | unsolicited TCP SYN |",
    "|---|---|---|---|---|---|",
  }
  for _, id in ipairs(order) do
    local e = by_id[id]
    L[#L + 1] = ("| `%s` | %s | %s | %s | %s | %s |"):format(e.id, e.name, e.mapping, e.filtering,
      e.port, e.tcp.unsolicited)
  end
  return table.concat(L, "\n")
end

--- The Markdown table of expected outcomes (docs/TRAVERSAL.md): the
-- connecting side's type in rows, the waiting side's in columns.
function nat_types.expect_markdown(transport)
  local ids = nat_types.ids({ matrix = true })
  local L = { "| connects → waits | " .. table.concat(ids, " | ") .. " |",
    "|---|" .. string.rep("---|", #ids) }
  for _, a in ipairs(ids) do
    local row = {}
    for _, b in ipairs(ids) do row[#row + 1] = (nat_types.expect(a, b, transport):gsub("-", " ")) end
    L[#L + 1] = "| **" .. a .. "** | " .. table.concat(row, " | ") .. " |"
  end
  return table.concat(L, "\n")
end

--- Replace what lies between "<!-- natpunch:NAME -->" and
-- "<!-- /natpunch:NAME -->" in text by the generated table NAME
-- ("nat_types" or "expect_udp"); returns the new text and whether it changed.
function nat_types.fill_doc(text)
  local gen = { nat_types = nat_types.markdown, expect_udp = function() return nat_types.expect_markdown("udp") end }
  local out = text:gsub("(<!%-%- natpunch:([%w_]+) %-%->\n)(.-)(<!%-%- /natpunch:%2 %-%->)",
    function(open, name, _, close)
      if not gen[name] then return nil end
      return open .. gen[name]() .. "\n" .. close
    end)
  return out, out ~= text
end

--- Lines for `natpunch lab up --help`.
function nat_types.help_lines()
  local out = {}
  for _, id in ipairs(order) do
    out[#out + 1] = ("  %-11s %s"):format(id, by_id[id].summary)
  end
  return out
end

return nat_types
