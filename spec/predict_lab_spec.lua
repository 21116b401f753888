-- Port prediction in the NAT lab: a peer behind the lab's symmetric NAT
-- with sequential ports (symseq) and one behind a port-restricted cone.
-- Plain UDP punching cannot connect them (each new mapping of the
-- symmetric side has a new port, which the port-restricted side never sent
-- to); the predict method connects them, in both directions.  Everything
-- goes through the command line in the lab's namespaces.  Tags: #lab.
local lab = require "natpunch.lab"
local matrix = require "natpunch.lab.matrix"
local proc = require "natpunch.lab.proc"
local helper = require "spec.helper"
local predict = require "natpunch.method.predict"

local RV = "203.0.113.2"

local function events(text)
  local out = {}
  for _, ev in ipairs(helper.json_lines(text)) do out[ev.event] = out[ev.event] or ev end
  return out
end

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

local why = lab.unavailable()

describe("#lab port prediction: symmetric (sequential) x port-restricted", function()
  if why then
    it("(skipped)", function() pending("needs root: " .. why) end)
    return
  end
  local t, rv, cmd
  local function natpunch(args)
    local argv = {}
    for _, w in ipairs(cmd) do argv[#argv + 1] = w end
    for _, w in ipairs(args) do argv[#argv + 1] = w end
    return proc.preload(argv)
  end
  setup(function()
    t = lab.topology(lab.standard{ a = "symseq", b = "prc" })
    t:up()
    cmd = matrix.command()
    rv = t:spawn("s1", natpunch({ "rendezvous", "--listen", RV .. ":3478", "--json" }))
    assert(rv:expect('"event":"listening"', 10), rv:output())
  end)
  teardown(function()
    if rv then rv:stop() end
    if t then t:down() end
  end)

  -- methods: a --methods list, or false for the default (chosen from the
  -- introduction); returns the connecting side's events and the waiter's
  local function pair(connector, acceptor, id, methods, want)
    if methods == nil then methods = "udp,predict" end
    local margs = methods and { "--methods", methods } or {}
    local wargs = { "peer", "--server", RV .. ":3478", "--id", id .. "-w", "--json", "--timeout", "30" }
    local cargs = { "peer", "--server", RV .. ":3478", "--id", id .. "-c", "--connect", id .. "-w",
      "--touch", "predicted", "--timeout", "25", "--json" }
    for _, w in ipairs(margs) do wargs[#wargs + 1] = w; cargs[#cargs + 1] = w end
    local waiter = t:spawn(acceptor, natpunch(wargs))
    assert(waiter:expect('"event":"registered"', 15), waiter:output())
    local out, code = t:exec(connector, natpunch(cargs))
    -- the waiter's side of it: its connected event comes a moment later
    waiter:expect('"event":"connected"', 5)
    local ev, wev = events(out), events(waiter:output())
    waiter:stop()
    local all = out .. "\n--- waiter\n" .. waiter:output() .. "\n--- rendezvous\n" .. rv:output()
    assert.equal(0, code, all)
    assert.equal(want or "predict", ev.connected.method, all)
    assert.equal(want or "predict", wev.connected and wev.connected.method, all)
    assert.equal("public", ev.connected.path, all)
    assert.truthy(ev.touch_acked, all)
    assert.equal("predicted", ev.message and ev.message.data, all)
    io.stderr:write(("\n  %s -> %s, --methods %s: %s after %s, setup %d ms\n")
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
