-- Port prediction in the NAT lab: a peer behind the lab's symmetric NAT
-- with sequential ports (symseq) and one behind a port-restricted cone.
-- Plain UDP punching cannot connect them (each new mapping of the
-- symmetric side has a new port, which the port-restricted side never sent
-- to); the predict method connects them, in both directions.  Everything
-- goes through the command line in the lab's namespaces.  Tags: #lab.
local lab = require "natpunch.lab"
local labhelper = require "spec.labhelper"
local predict = require "natpunch.method.predict"

describe("predict method: candidates", function()
  it("adds the predicted ports after the usual candidates, one window per round", function()
    local c = { { "198.18.1.2", 40000, "private" }, { "203.0.113.20", 30010, "public" } }
    local r1, n1 = predict.candidates(c, 1, 30012, 1, 14)
    assert.equal(14, n1)
    assert.equal(16, #r1)
    assert.same({ "203.0.113.20", 30013, "public" }, r1[3])
    assert.same({ "203.0.113.20", 30026, "public" }, r1[16])
    local r2 = predict.candidates(c, 2, 30012, 2, 14)
    assert.same({ "203.0.113.20", 30012 + 15 * 2, "public" }, r2[3])
    -- no public candidate: nothing to predict from
    local _, n0 = predict.candidates({ c[1] }, 1, 30012, 1, 14)
    assert.equal(0, n0)
    -- never past port 65535
    local _, n3 = predict.candidates(c, 1, 65530, 1, 14)
    assert.equal(5, n3)
  end)
end)

labhelper.describe("#lab port prediction: symmetric (sequential) x port-restricted", function()
  local L = labhelper.lab(lab.standard{ a = "symseq", b = "prc" }, { rendezvous = true })

  -- methods: a --methods list, or false for the default (chosen from the
  -- introduction); want: the method that must win (default predict).
  -- Returns the connecting side's events and the waiter's.
  local function pair(connector, acceptor, id, methods, want)
    if methods == nil then methods = "udp,predict" end
    local ev, code, wev, all = L:pair(connector, acceptor,
      { id = id, touch = "predicted", methods = methods, wait = 30, timeout = 25 })
    assert.equal(0, code, all)
    assert.equal(want or "predict", ev.connected.method, all)
    assert.equal(want or "predict", wev.connected and wev.connected.method, all)
    assert.equal("public", ev.connected.path, all)
    assert.truthy(ev.touch_acked, all)
    assert.equal("predicted", ev.message and ev.message.data, all)
    io.stderr:write(("\n  %s -> %s, --methods %s: %s (tried %s), setup %d ms\n")
      :format(connector, acceptor, methods or "(default)", ev.connected.method, ev.connected.methods,
        ev.connected.setup_ms))
    return ev, wev
  end

  -- --methods udp,predict: predict's first round punches udp's candidates
  -- too, so udp right before it is left out (natpunch.method.choose)
  it("symseq connects to prc with --methods udp,predict: via predict, udp left out", function()
    local ev = pair("a", "b", "s2p")
    assert.equal("predict", ev.connected.methods)
  end)
  it("prc connects to symseq with --methods udp,predict: via predict", function() pair("b", "a", "p2s") end)
  it("with predict first, symseq connects to prc in the first round", function()
    pair("a", "b", "first", "predict,udp")
  end)
  -- no --methods: both peers measure their allocation, the rendezvous puts
  -- both values into the introduction, and both choose predict (in udp's
  -- place; not birthday: no side is random)
  it("default methods: symseq -> prc is chosen as predict and connects via predict", function()
    local ev, wev = pair("a", "b", "d2p", false)
    assert.equal("predict", ev.connected.methods)
    assert.equal("predict", wev.connected.methods)
  end)
  it("default methods: prc -> symseq connects via predict", function()
    local ev = pair("b", "a", "d2s", false)
    assert.equal("predict", ev.connected.methods)
  end)
  -- a pair without a symmetric side: udp alone (the public host p has no
  -- NAT: its allocation is "preserving" without a probe; b's prc preserves)
  it("default methods: public host -> prc tries udp alone and connects via udp", function()
    local ev, wev = pair("p", "b", "d2u", false, "udp")
    assert.equal("udp", ev.connected.methods)
    assert.equal("udp", wev.connected.methods)
  end)
end)
