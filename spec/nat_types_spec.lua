-- The lab's NAT registry (lua/natpunch/lab/nat_types.lua), without root:
-- names, ground truth, expected outcomes, and the docs generated from it.
local nat_types = require "natpunch.lab.nat_types"
local helper = require "spec.helper"

describe("natpunch.lab.nat_types", function()
  it("has seed 001's four behaviours with their RFC 4787 ground truth", function()
    assert.same({ "full", "restricted", "prc", "sym" }, nat_types.ids({ matrix = true }))
    local want = {
      full = { "endpoint-independent", "endpoint-independent", "full cone" },
      restricted = { "endpoint-independent", "address-dependent", "restricted cone" },
      prc = { "endpoint-independent", "address-and-port-dependent", "port-restricted cone" },
      sym = { "address-and-port-dependent", "address-and-port-dependent", "symmetric" },
    }
    for id, w in pairs(want) do
      local e = nat_types.get(id)
      assert.same(w, { e.mapping, e.filtering, e.name })
      assert.equal("drop", e.tcp.unsolicited)
    end
    assert.equal("EIM, ADF", nat_types.rfc_terms(nat_types.get("restricted")))
    -- TCP variants (issue 10): prc whose router answers an unsolicited SYN
    assert.equal("rst", nat_types.get("prc_rst").tcp.unsolicited)
    assert.equal("icmp", nat_types.get("prc_icmp").tcp.unsolicited)
    assert.equal("address-and-port-dependent", nat_types.get("prc_rst").filtering)
    assert.equal("connect", nat_types.expect("prc_rst", "prc", "tcp"))
    assert.equal("may-fail", nat_types.expect("sym", "prc", "tcp"))
  end)

  it("has a symmetric NAT with sequential ports: a counter of the SNAT rule through a port map", function()
    local e = nat_types.get("sequential")
    assert.equal("symseq", e.id)
    assert.equal("address-and-port-dependent", e.mapping)
    assert.equal("sequential", e.port)
    assert.is_false(e.port_preservation)
    local rules = require("natpunch.lab.nft").ruleset{ type = "symseq", public = "203.0.113.9" }
    local line = rules:match("[^\n]*numgen inc mod 1024 map {[^\n]*")
    assert.truthy(line, rules)
    assert.truthy(line:find("snat ip to 203.0.113.9 : numgen", 1, true), line)
    assert.truthy(line:find("{ 0 : 30000, 1 : 30001,", 1, true), line)
    assert.truthy(line:find("1023 : 31023 }", 1, true), line)
  end)

  it("knows every name and alias, in any case", function()
    for name, id in pairs({ ["full-cone"] = "full", ["EIM-EIF"] = "full", ["restricted-cone"] = "restricted",
      ["port-restricted"] = "prc", ["eim-apdf"] = "prc", symmetric = "sym", SYM = "sym" }) do
      assert.equal(id, nat_types.canonical(name))
    end
    assert.is_nil(nat_types.canonical("cone"))
    assert.is_nil(nat_types.canonical(nil))
  end)

  it("derives the expected outcome of each pair from mapping and filtering", function()
    assert.equal("connect", nat_types.expect("prc", "restricted"))
    assert.equal("connect", nat_types.expect("sym", "restricted"))
    assert.equal("may-fail", nat_types.expect("prc", "sym"))
    assert.equal("may-fail", nat_types.expect("sym", "sym"))
    -- an entry's expect table overrides the rule, from either side
    nat_types.add{ id = "t_over", base = "prc", expect = { udp = { sym = "connect" } } }
    assert.equal("connect", nat_types.expect("t_over", "sym"))
    assert.equal("connect", nat_types.expect("sym", "t_over"))
    assert.equal("may-fail", nat_types.expect("t_over", "sym", "tcp"))
    nat_types.remove("t_over")
    assert.is_nil(nat_types.get("t_over"))
  end)

  it("refuses entries it could not build", function()
    assert.has_error(function() nat_types.add{ id = "bad", name = "x", mapping = "none",
      filtering = "endpoint-independent", port = "hashed" } end)
    assert.has_error(function() nat_types.add{ id = "bad", base = "full", tcp = { unsolicited = "maybe" } } end)
    assert.has_error(function() nat_types.add{ id = "full", base = "full" } end)
    assert.is_nil(nat_types.get("bad"))
  end)

  it("renders the TCP answer of an entry into the router's input chain", function()
    local nft = require "natpunch.lab.nft"
    for how, text in pairs({ rst = "reject with tcp reset", icmp = "reject with icmp type port-unreachable" }) do
      nat_types.add{ id = "t_" .. how, base = "prc", tcp = { unsolicited = how } }
      local rules = nft.ruleset{ type = "t_" .. how, public = "203.0.113.11", port_preservation = true }
      assert.matches('iifname "wan" ip daddr 203.0.113.11 tcp flags & (syn | ack) == syn ' .. text, rules, 1, true)
      nat_types.remove("t_" .. how)
    end
    assert.is_nil(nft.ruleset{ type = "prc", public = "203.0.113.11" }:find("reject", 1, true))
  end)

  it("is what the tables of docs/LAB.md and docs/TRAVERSAL.md say (tools/gen_docs.lua)", function()
    for _, path in ipairs({ "docs/LAB.md", "docs/TRAVERSAL.md" }) do
      local text = helper.read_file(path)
      local _, changed = nat_types.fill_doc(text)
      assert.is_false(changed, path .. " is out of date: run lua5.4 tools/gen_docs.lua")
    end
    assert.matches("| `sym` | symmetric | address-and-port-dependent |", helper.read_file("docs/LAB.md"), 1, true)
  end)
end)
