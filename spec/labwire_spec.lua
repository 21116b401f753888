-- natpunch-wire (csrc/labwire): the userspace link emulator the lab uses when
-- the kernel has no netem.  First its engine on a virtual clock
-- (--simulate, no root), then real links between lab namespaces: measured
-- round-trip time, loss, duplication and rate against what was configured.
local lab = require "natpunch.lab"
local proc = require "natpunch.lab.proc"

-- "key=value" pairs of every line of out -> table of numbers
local function fields(out)
  local f = {}
  for k, v in out:gmatch("([%w_]+)=([%d%.]+)") do f[k] = tonumber(v) end
  return f
end

local wire, build_err = lab.build_wire()

local function sim(args)
  local argv = { wire, "--simulate" }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local out, code = proc.run(argv)
  assert.equal(0, code, out)
  return fields(out), out
end

local function within(x, lo, hi, what)
  assert(x and x >= lo and x <= hi,
    ("%s: %s not within [%s, %s]"):format(what, tostring(x), lo, hi))
end

describe("natpunch-wire engine (--simulate)", function()
  if not wire then
    it("(skipped)", function() pending("cannot build natpunch-wire: " .. build_err) end)
    return
  end

  it("delays every frame by exactly --delay without jitter", function()
    local f = sim({ "2000", "--delay", "50ms", "--seed", "1" })
    assert.equal(2000, f.tx)
    assert.equal(50, f.delay_min_ms)
    assert.equal(50, f.delay_max_ms)
    assert.equal(0, f.out_of_order)
  end)

  it("keeps jitter inside delay +- jitter, centred", function()
    local f = sim({ "20000", "--delay", "50ms", "--jitter", "5ms", "--seed", "2" })
    within(f.delay_min_ms, 45, 46, "min")
    within(f.delay_max_ms, 54, 55, "max")
    within(f.delay_avg_ms, 49.8, 50.2, "avg")
  end)

  it("drops the --loss share", function()
    local f = sim({ "20000", "--loss", "20%", "--seed", "3" })
    within(f.lost / f.rx, 0.19, 0.21, "loss share")
    assert.equal(f.rx, f.tx + f.lost)
  end)

  it("duplicates the --dup share and reorders the --reorder share", function()
    local f = sim({ "20000", "--delay", "20ms", "--dup", "10%", "--reorder", "5%",
      "--seed", "4" })
    within(f.dup / f.rx, 0.09, 0.11, "dup share")
    assert.equal(f.rx + f.dup, f.tx)
    within(f.reordered / f.tx, 0.04, 0.06, "reorder share")
    assert.equal(0, f.delay_min_ms) -- reordered frames go at once
    assert.is_true(f.out_of_order > 0)
  end)

  it("holds --rate with a token bucket", function()
    -- 1000-byte frames offered at 80 Mbit/s into a 10 Mbit/s link
    local f = sim({ "5000", "--interval", "100us", "--size", "1000", "--rate",
      "10mbit", "--limit", "10000", "--seed", "5" })
    assert.equal(5000, f.tx)
    within(f.rate_bps, 9.8e6, 10.2e6, "rate")
  end)

  it("bounds its queue and counts what it drops", function()
    local f = sim({ "5000", "--interval", "100us", "--size", "1000", "--rate",
      "10mbit", "--limit", "100", "--seed", "6" })
    assert.is_true(f.qdrop > 4000)
    assert.equal(f.rx, f.tx + f.qdrop)
    -- a frame never waits longer than a full queue takes to drain
    within(f.delay_max_ms, 0, 100 * 1000 * 8 / 10e6 * 1000 * 1.1, "max wait")
  end)

  it("repeats a run with the same seed, and not with another", function()
    local _, a = sim({ "3000", "--delay", "10ms", "--jitter", "3ms", "--loss", "7%", "--seed", "9" })
    local _, b = sim({ "3000", "--delay", "10ms", "--jitter", "3ms", "--loss", "7%", "--seed", "9" })
    local _, c = sim({ "3000", "--delay", "10ms", "--jitter", "3ms", "--loss", "7%", "--seed", "10" })
    assert.equal(a, b)
    assert.are_not.equal(a, c)
  end)

  it("refuses bad options with exit code 2", function()
    for _, args in ipairs({ { "--delay", "5parsecs", "--simulate", "1" },
      { "--loss", "101%", "--simulate", "1" }, { "--rate", "fast", "--simulate", "1" },
      { "--delay", "1ms", "--jitter", "2ms", "--simulate", "1" },
      { "--tap", "only-one" }, { "--bogus", "1" } }) do
      local argv = { wire }
      for _, a in ipairs(args) do argv[#argv + 1] = a end
      local out, code = proc.run(argv)
      assert.equal(2, code, out)
      assert.truthy(out:find("natpunch-wire:", 1, true))
    end
  end)
end)

local function ping(t, from, to, count, interval)
  local out = t:exec(from, { "ping", "-q", "-n", "-c", count, "-i", interval, "-W", "1",
    t:addr(to) })
  local sent, recv = out:match("(%d+) packets transmitted, (%d+) received")
  local avg = out:match("= [%d%.]+/([%d%.]+)/")
  return tonumber(sent), tonumber(recv), tonumber(avg), out
end

-- Blast count datagrams of size bytes from `from` to `to`; returns what the
-- sink in `to` printed.
local function blast(t, from, to, count, size, interval)
  local sink = t:spawn_probe(to, { "sink", "--bind", "5000", "--time", "8",
    "--count", count * 2, "--idle", "0.5" })
  assert(sink:expect("^READY", 5))
  t:probe(from, { "blast", "--to", t:addr(to) .. ":5000", "--count", count,
    "--size", size, "--interval", interval })
  assert(sink:wait(8), "sink did not finish")
  local n, bytes, span = sink:output():match("SINK received (%d+) bytes (%d+) span ([%d%.]+)")
  return tonumber(n), tonumber(bytes), tonumber(span), sink:output()
end

describe("natpunch-wire on real lab links", function()
  local why = lab.unavailable() or (not wire and build_err)
  if why then
    it("(skipped)", function() pending("needs root: " .. why) end)
    return
  end

  local t
  setup(function()
    t = lab.topology{ impair = "wire", hosts = {
      { name = "x", public = "203.0.113.2" },
      { name = "y", public = "203.0.113.3", link = { delay = "50ms" } },
      { name = "z", public = "203.0.113.4", link = { loss = "20%" } },
      { name = "w", public = "203.0.113.5", link = { rate = "2mbit" } },
      { name = "v", public = "198.51.100.6", link = { dup = "10%" } },
    } }
    t:up()
    for _, h in ipairs({ "y", "z", "w" }) do t:pin_neighbours("x", h) end
  end)
  teardown(function()
    if t then t:down() end
  end)

  it("is what the lab chose for the impaired links", function()
    assert.equal("wire", t:links().y)
    assert.equal("veth", t:links().x)
    assert.is_true(t:wire("y"):alive())
  end)

  it("gives the configured round trip: 2 x 50 ms +- 10%", function()
    local sent, recv, avg, out = ping(t, "x", "y", 20, "0.05")
    assert.equal(20, sent, out)
    assert.equal(20, recv, out)
    within(avg, 90, 110, "rtt ms")
  end)

  it("drops the configured 20% each way: pings and a one-way blast", function()
    -- a ping crosses the link twice: 1 - 0.8^2 = 36% lost
    local sent, recv, _, out = ping(t, "x", "z", 1000, "0.005")
    assert.equal(1000, sent, out)
    within(1 - recv / sent, 0.31, 0.41, "ping loss")
    local n = blast(t, "x", "z", 2000, 64, "0.0005")
    within(n / 2000, 0.76, 0.84, "one-way delivery")
    -- the wire's own counters, printed when it is stopped
    local h = t:wire("z")
    assert.is_true(h:stop())
    local out2 = h:output()
    local lines = {}
    for line in out2:gmatch("[^\n]*rx=[^\n]*") do lines[#lines + 1] = fields(line) end
    assert.equal(2, #lines, out2)
    for _, c in ipairs(lines) do
      assert.is_true(c.rx > 500, out2)
      -- a binomial share: 4.5 standard deviations either side of 20%
      -- (about 0.06 at 800 datagrams), so the spec fails on a wrong rate,
      -- not once in a dozen runs on the right one
      local tol = 4.5 * math.sqrt(0.2 * 0.8 / c.rx)
      within(c.lost / c.rx, 0.2 - tol, 0.2 + tol, "counted loss")
      assert.equal(c.rx, c.tx + c.lost)
      assert.equal(0, c.qdrop)
    end
  end)

  it("holds the configured rate: 2 mbit/s +- 10%", function()
    -- 300 frames of 1000 bytes of payload (1042 on the wire) offered at
    -- 16 Mbit/s; the queue (1000 frames) holds them all
    local n, bytes, span, out = blast(t, "x", "w", 300, 1000, "0.0005")
    assert.equal(300, n, out)
    local rate = (bytes - 1000) * 8 / span * 1042 / 1000
    within(rate, 1.8e6, 2.2e6, "rate bit/s")
  end)

  it("duplicates the configured 10%", function()
    local n = blast(t, "x", "v", 1000, 64, "0.001")
    within(n / 1000, 1.06, 1.14, "delivered with copies")
  end)
end)
