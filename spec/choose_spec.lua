-- Choosing the traversal methods from the NAT behaviour the introduction
-- carries (natpunch.method.choose, docs/PROTOCOL.md "Choosing the
-- methods"): the rule itself, and, over real sockets on loopback, that the
-- rendezvous records each peer's `alloc` and puts both peers' values into
-- both introductions, so that both sides try the same list.  The lab specs
-- (predict_lab_spec, birthday_lab_spec, relay_lab_spec) show it through
-- real NATs.
local helper = require "spec.helper"
local natpunch = require "natpunch"
local choose = require "natpunch.method.choose"

local ALL = { "udp", "predict", "birthday", "relay" }

local function pick(mine, theirs, my_nat, their_nat)
  local out, budgets = choose.filter(ALL, { your_alloc = mine, alloc = theirs, your_nat = my_nat, nat = their_nat })
  return table.concat(out, ","), budgets
end

describe("choose: the methods a pair tries", function()
  it("codes an allocation, and reads only good codes back", function()
    assert.equal("sequential:1", choose.alloc_code{ pattern = "sequential", delta = 1, ports = { 5, 6, 7, 8 } })
    assert.equal("sequential:-2", choose.alloc_code{ pattern = "sequential", delta = -2, ports = { 9, 7 } })
    assert.equal("random", choose.alloc_code{ pattern = "random", ports = { 9, 70, 3 } })
    assert.equal("preserving", choose.alloc_code{ pattern = "preserving", ports = { 9, 70 } })
    -- fewer than two answers: nothing known
    assert.is_nil(choose.alloc_code{ pattern = "random", ports = { 9 } })
    assert.is_nil(choose.alloc_code(false))
    assert.same({ pattern = "sequential", delta = -2 }, choose.parse_alloc("sequential:-2"))
    for _, bad in ipairs({ "sequential:0", "sequential:17", "sequential:", "seq:1", "Random", "", 5 }) do
      assert.is_nil(choose.parse_alloc(bad), tostring(bad))
    end
  end)

  it("keeps predict and birthday only where they can work", function()
    assert.equal("udp,relay", (pick("preserving", "preserving")))
    -- predict's first round punches udp's candidates too: no udp before it
    assert.equal("predict,relay", (pick("sequential:1", "preserving")))
    assert.equal("predict,relay", (pick("preserving", "sequential:1")))
    assert.equal("predict,relay", (pick("sequential:1", "sequential:2")))
    assert.equal("predict,udp", table.concat(choose.filter({ "predict", "udp" },
      { alloc = "sequential:1", your_alloc = "preserving" }), ","))
    -- birthday punches from the registered sockets too: no udp before it
    assert.equal("birthday,relay", (pick("random", "preserving")))
    assert.equal("birthday,relay", (pick("preserving", "random")))
    assert.equal("udp,relay", (pick("random", "random")))
    assert.equal("udp,relay", (pick("random", "sequential:1")))
    -- discovery's endpoint-independent mapping: never symmetric, whatever the ports
    assert.equal("udp,relay", (pick("random", "preserving", "EI/APD")))
    assert.equal("birthday,relay", (pick("random", "preserving", "APD/APD", "EI/APD")))
    -- a side unknown: both stay (they decide for themselves)
    assert.equal("predict,birthday,relay", (pick(nil, "preserving")))
    assert.equal("predict,birthday,relay", (pick("random", nil)))
  end)

  it("is the same list on both sides (the introduction carries both values)", function()
    local codes = { "preserving", "sequential:1", "random", false }
    for _, x in ipairs(codes) do
      for _, y in ipairs(codes) do
        local a = pick(x or nil, y or nil)
        local b = pick(y or nil, x or nil)
        assert.equal(a, b, tostring(x) .. " / " .. tostring(y))
      end
    end
  end)

  it("gives udp a short budget when birthday follows it (a side unknown, or a methods list)", function()
    local function budgets(list, intro) return select(2, choose.filter(list, intro)) end
    local b = budgets({ "udp", "birthday" }, { your_alloc = "random" })
    assert.equal(choose.UDP_BEFORE_HARD_MAX_S, b.udp)     -- the server's RTT unknown
    b = budgets({ "udp", "birthday", "relay" }, { your_alloc = "random", alloc = "preserving" })
    assert.is_nil(b.udp)   -- no udp before birthday for a birthday pair
    assert.is_nil(select(2, pick("preserving", "preserving")).udp)
  end)

  it("scales udp's budget before birthday by the round trip to the server", function()
    local intro = { your_alloc = "random" }
    local function budget(rtt) return select(2, choose.filter({ "udp", "birthday" }, intro, rtt)).udp end
    assert.equal(choose.UDP_BEFORE_HARD_S, budget(0.1))          -- the lab without delay
    assert.equal(choose.UDP_BEFORE_HARD_S, budget(50))           -- 25 ms per link
    assert.near(choose.UDP_HARD_RTTS * 0.12, budget(120), 1e-9)
    assert.equal(choose.UDP_BEFORE_HARD_MAX_S, budget(201))      -- 100 ms per link
    assert.equal(choose.UDP_BEFORE_HARD_MAX_S, budget(nil))
    assert.is_true(choose.udp_before_hard(120) > choose.udp_before_hard(80))
  end)
end)

describe("birthday: the head start of plain punching", function()
  local birthday = require "natpunch.method.birthday"
  it("is HEAD_START_RTTS round trips to the server, within its bounds", function()
    assert.equal(birthday.HEAD_START_MIN_S, birthday.head_start(0.2))    -- the lab without delay
    assert.near(birthday.HEAD_START_RTTS * 0.1, birthday.head_start(100), 1e-9)
    assert.equal(birthday.HEAD_START_MAX_S, birthday.head_start(400))
    assert.equal(birthday.HEAD_START_MAX_S, birthday.head_start(nil))  -- unknown
  end)
end)

describe("choose: over the rendezvous (loopback)", function()
  -- b_alloc: what b says it measured, as a sequential NAT would (the lab
  -- specs measure it for real); alloc: what the rendezvous records for b;
  -- want: the method list both sides try and the one that connects
  local cases = {
    { "carries alloc both ways; default peers on loopback try udp alone",
      -- no NAT: the server saw our own address, so no probe is needed
      alloc = "preserving", want = "udp" },
    { "a sequential side (as registered) makes both sides try predict",
      -- loopback needs no prediction: predict's first round punches the
      -- usual candidates, and they answer
      b_alloc = "sequential:1", alloc = "sequential:1", want = "predict" },
  }
  for _, c in ipairs(cases) do
    it(c[1], function()
      helper.run(function()
        local rv = assert(natpunch.rendezvous{ listen = "127.0.0.1:0" })
        local srv = rv:address()
        local evs = { a = {}, b = {} }
        local function mk(id, box)
          return assert(natpunch.peer{ server = srv, id = id,
            on_event = function(ev) if ev.event == "connected" then box[#box + 1] = ev end end })
        end
        local a, b = mk("a", evs.a), mk("b", evs.b)
        if c.b_alloc then b.predict_alloc, b.alloc_code = false, c.b_alloc end
        assert(a:register()); assert(b:register())
        assert.equal("preserving", a.alloc_code)
        assert.equal(c.alloc, rv:lookup("b").alloc)
        local s = assert(a:connect("b"))
        assert.equal(c.want, s.method)
        for _ = 1, 250 do if #evs.a > 0 and #evs.b > 0 then break end natpunch.sleep(0.02) end
        assert.equal(c.want, evs.a[1].methods)
        assert.equal(c.want, evs.b[1].methods)
        assert.equal(c.want, evs.b[1].method)
        a:close(); b:close(); rv:close()
      end)
    end)
  end
end)
