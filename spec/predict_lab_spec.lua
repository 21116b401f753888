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

  local function pair(connector, acceptor, id, methods)
    methods = methods or "udp,predict"
    local waiter = L:spawn_peer(acceptor, { "--id", id .. "-w", "--timeout", "30", "--methods", methods })
    local out, code, ev = L:run_peer(connector, { "--id", id .. "-c", "--connect", id .. "-w",
      "--touch", "predicted", "--timeout", "25", "--methods", methods })
    waiter:stop()
    assert.equal(0, code, out .. "\n--- waiter\n" .. waiter:output() .. "\n--- rendezvous\n" .. L.rv:output())
    assert.equal("predict", ev.connected.method, out)
    assert.equal("public", ev.connected.path, out)
    assert.truthy(ev.touch_acked, out)
    assert.equal("predicted", ev.message and ev.message.data, out)
    io.stderr:write(("\n  %s -> %s, --methods %s: setup %d ms\n")
      :format(connector, acceptor, methods, ev.connected.setup_ms))
  end

  it("symseq connects to prc: udp fails, predict connects", function() pair("a", "b", "s2p") end)
  it("prc connects to symseq: udp fails, predict connects", function() pair("b", "a", "p2s") end)
  it("with predict first, symseq connects to prc in the first round", function()
    pair("a", "b", "first", "predict,udp")
  end)
end)
