-- Prometheus metrics: the text format, the HTTP endpoint on the loop, the
-- rendezvous's figures read by an HTTP client over core.tcp (as a scraper
-- would), and a peer's punch outcomes and setup-time histogram.
local helper = require "spec.helper"
local core = require "natpunch.core"
local natpunch = require "natpunch"
local metrics = require "natpunch.metrics"
local json = require "natpunch.json"
local msg = require "natpunch.msg"

-- A tiny HTTP/1.1 client: one request, read to the end; returns status, body.
local function http(address, request)
  local ip, port = address:match("^(.-):(%d+)$")
  local c = core.tcp()
  local done = natpunch.future()
  local chunks = {}
  assert(c:connect(ip, tonumber(port), function(err)
    if err then return done:set(nil, err) end
    c:read_start(function(rerr, chunk)
      if chunk then chunks[#chunks + 1] = chunk else done:set(true, rerr) end
    end)
    c:write(request)
  end))
  local ok, err = done:wait(5)
  c:close()
  assert(ok, "http: " .. tostring(err))
  local text = table.concat(chunks)
  local status = tonumber(text:match("^HTTP/1%.1 (%d+)"))
  local body = text:match("\r\n\r\n(.*)$")
  local len = tonumber(text:match("\r\nContent%-Length: (%d+)\r\n"))
  assert.equal(len, #body)
  return status, body, text
end

local function get(address, path)
  return http(address, "GET " .. path .. " HTTP/1.1\r\nHost: x\r\nUser-Agent: spec\r\n\r\n")
end

-- value of one sample line `name{labels} value` in a text exposition
local function sample(text, series)
  for line in text:gmatch("[^\n]+") do
    local name, value = line:match("^(%S+) (%S+)$")
    if name == series then return tonumber(value) end
  end
  return nil
end

describe("metrics", function()
  it("renders counters, gauges and labelled histograms in the text format", function()
    local m = metrics.new()
    m:counter("x_total", "An x"):gauge("y", "A y\nwith a newline")
    m:histogram("z_ms", "A z", { 10, 100 })
    m:inc("x_total"); m:inc("x_total", nil, 2)
    m:inc("x_total", { reason = 'q"u\\o' })
    m:set("y", 2.5)
    for _, v in ipairs({ 5, 50, 500, 10 }) do m:observe("z_ms", v, { method = "udp" }) end
    local text = m:render()
    assert.equal(table.concat({
      "# HELP x_total An x", "# TYPE x_total counter",
      "x_total 3", 'x_total{reason="q\\"u\\\\o"} 1',
      "# HELP y A y\\nwith a newline", "# TYPE y gauge", "y 2.5",
      "# HELP z_ms A z", "# TYPE z_ms histogram",
      'z_ms_bucket{method="udp",le="10"} 2', 'z_ms_bucket{method="udp",le="100"} 3',
      'z_ms_bucket{method="udp",le="+Inf"} 4', 'z_ms_sum{method="udp"} 565', 'z_ms_count{method="udp"} 4', "",
    }, "\n"), text)
    assert.has_error(function() m:inc("nope") end)
    assert.has_error(function() m:counter("bad name") end)
    assert.has_error(function() m:observe("x_total", 1) end)
  end)

  it("natpunch rendezvous --metrics serves the server's figures to an HTTP client", function()
    local dir = helper.tmpdir("metrics")
    local out = dir .. "/rv.out"
    local cmd = "timeout 60 env " .. helper.cli() .. " rendezvous --listen 127.0.0.1:0 --metrics 127.0.0.1:0 --json"
    assert(os.execute(helper.sh(cmd .. " > " .. helper.q(out) .. " 2>&1 & echo $! > " .. helper.q(dir .. "/pid"))))
    local pid = helper.read_file(dir .. "/pid"):match("%d+")
    local ok, err = pcall(helper.run, function()
      local lines
      for _ = 1, 200 do
        lines = {}
        for line in helper.read_file(out):gmatch("[^\n]+") do lines[#lines + 1] = json.decode(line) end
        if #lines >= 2 then break end
        natpunch.sleep(0.025)
      end
      assert.equal("listening", lines[1].event)
      assert.equal("metrics", lines[2].event)
      local srv, maddr = lines[1].address, lines[2].address
      local a = assert(natpunch.peer{ server = srv, id = "ma", bind = "127.0.0.1:0" })
      local b = assert(natpunch.peer{ server = srv, id = "mb", bind = "127.0.0.1:0" })
      assert(a:register()); assert(b:register())
      assert(a:connect("mb"))
      -- a STUN Binding request, a malformed control message, a frame of no kind
      local u = core.udp(); assert(u:bind("127.0.0.1", 0))
      local answered = natpunch.future()
      u:recv_start(function(_, data) if core.stun.is_stun(data) then answered:set(true) end end, { raw = true })
      local sip, sport = srv:match("^(.-):(%d+)$")
      u:send(sip, tonumber(sport), core.stun.encode({ method = "binding", class = "request" }))
      assert(answered:wait(2))
      u:send(sip, tonumber(sport), "\x04\x01\x05junk")
      u:send(sip, tonumber(sport), "\x04" .. msg.encode({ t = "nonsense" }))
      natpunch.sleep(0.1)
      local status, body = get(maddr, "/metrics")
      assert.equal(200, status)
      assert.equal(2, sample(body, "natpunch_peers"))
      assert.equal(2, sample(body, "natpunch_registrations_total"))
      assert.equal(1, sample(body, 'natpunch_introductions_total{kind="new"}'))
      assert.equal(1, sample(body, "natpunch_stun_answered_total"))
      assert.equal(2, sample(body, 'natpunch_drops_total{reason="malformed"}'))
      assert.matches("# TYPE natpunch_drops_total counter", body, 1, true)
      -- what is not /metrics
      assert.equal(404, (get(maddr, "/other")))
      assert.equal(405, (http(maddr, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n")))
      assert.equal(400, (http(maddr, "garbage\r\n\r\n")))
      assert.equal(400, (http(maddr, "GET /metrics HTTP/1.1\r\nX: " .. string.rep("a", 10000) .. "\r\n\r\n")))
      -- and it still answers
      assert.equal(200, (get(maddr, "/metrics")))
      u:close(); a:close(); b:close()
    end, 20)
    os.execute("kill " .. pid .. " 2>/dev/null")
    os.execute("rm -rf " .. helper.q(dir))
    assert(ok, err)
  end)

  it("the rendezvous counts the peers' punch reports by method and NAT pair, with a setup-time histogram", function()
    local rawclient = require "spec.rawclient"
    helper.run(function()
      local rv = assert(natpunch.rendezvous{ listen = "127.0.0.1:0" })
      local sip, sport = (rv:address()):match("^(.-):(%d+)$")
      sport = tonumber(sport)
      local events = {}
      rv.on_event = function(ev) if ev.event == "report" then events[#events + 1] = ev end end
      local a = assert(natpunch.peer{ server = (rv:address()), id = "ra", bind = "127.0.0.1:0" })
      local b = assert(natpunch.peer{ server = (rv:address()), id = "rb", bind = "127.0.0.1:0" })
      assert(a:register()); assert(b:register())
      -- 1. a connects to b: a (the asker) reports it, b does not
      assert(a:connect("rb"))
      -- 2. a connects to a peer that registered as behind a port-restricted
      -- cone NAT and never answers a punch: a reports the failure
      local mute = rawclient.new(sip, sport)
      assert.equal("registered", mute.register("mute", { nat = "EI/APD" }).t)
      assert.is_nil(a:connect("mute", 1))
      -- 3. a hand-driven asker behind a symmetric NAT: its report names a
      -- method nobody knows, and it tries to report twice and to report an
      -- introduction it never had
      local c = rawclient.new(sip, sport)
      assert.equal("registered", c.register("rc", { nat = "APD/APD" }).t)
      c.send({ t = "connect", id = "rc", target = "rb", tx = "t2" }, msg.CONNECT_PAD)
      local intro = c.last()
      assert.equal("introduce", intro.t)
      local function report(fields)
        local f = { t = "report", id = "rc", nonce = intro.nonce, method = "carrier-pigeon", outcome = "connected",
          setup_ms = 42 }
        for k, v in pairs(fields or {}) do f[k] = v end
        c.send(f)
      end
      report({ nonce = "0123456789abcdef" })     -- not its introduction
      report({ outcome = "maybe" })              -- no such outcome
      report({ setup_ms = -5 })                  -- no such time
      report()                                    -- accepted
      report()                                    -- once only
      local mute_report = { t = "report", id = "mute", nonce = intro.nonce, method = "udp", outcome = "failed" }
      mute.send(mute_report)                      -- it asked for no introduction
      for _ = 1, 100 do
        if #events >= 3 and rv:stats().reports_refused >= 5 then break end
        natpunch.sleep(0.02)
      end
      local st = rv:stats()
      assert.equal(3, st.reports)
      assert.equal(5, st.reports_refused)
      local text = metrics.rendezvous(rv)
      assert.equal(1, sample(text, 'natpunch_punch_total{method="udp",nat_pair="unknown+unknown",outcome="connected"}'))
      assert.equal(1, sample(text,
        'natpunch_punch_total{method="udp",nat_pair="port-restricted-cone+unknown",outcome="failed"}'))
      assert.equal(1, sample(text,
        'natpunch_punch_total{method="other",nat_pair="symmetric+unknown",outcome="connected"}'))
      assert.equal(1, sample(text, 'natpunch_setup_ms_count{method="udp"}'))
      assert.equal(1, sample(text, 'natpunch_setup_ms_count{method="other"}'))
      assert.equal(1, sample(text, 'natpunch_setup_ms_bucket{method="other",le="50"}'))
      assert.equal(0, sample(text, 'natpunch_setup_ms_bucket{method="other",le="25"}'))
      assert.equal(42, sample(text, 'natpunch_setup_ms_sum{method="other"}'))
      assert.equal(3, sample(text, 'natpunch_reports_total{result="accepted"}'))
      assert.equal(5, sample(text, 'natpunch_reports_total{result="refused"}'))
      assert.matches("# TYPE natpunch_setup_ms histogram", text, 1, true)
      -- the labels come from fixed sets: nothing a peer sends adds a series
      local series = 0
      for _ in text:gmatch("natpunch_punch_total{[^\n]+") do series = series + 1 end
      assert.equal(3, series)
      assert.equal("ra", events[1].peer)
      -- the classes of every NAT code, and pairs unordered
      assert.equal("open", natpunch.rendezvous.nat_class("none/EI"))
      assert.equal("full-cone", natpunch.rendezvous.nat_class("EI/EI"))
      assert.equal("restricted-cone", natpunch.rendezvous.nat_class("EI/AD"))
      assert.equal("symmetric", natpunch.rendezvous.nat_class("AD/APD"))
      assert.equal("unknown", natpunch.rendezvous.nat_class("XX/YY"))
      assert.equal(natpunch.rendezvous.nat_pair("EI/EI", "APD/APD"), natpunch.rendezvous.nat_pair("APD/APD", "EI/EI"))
      c.close(); mute.close(); a:close(); b:close(); rv:close()
    end)
  end)

  it("a peer with report = false sends no report", function()
    helper.run(function()
      local rv = assert(natpunch.rendezvous{ listen = "127.0.0.1:0" })
      local a = assert(natpunch.peer{ server = (rv:address()), id = "qa", bind = "127.0.0.1:0", report = false })
      local b = assert(natpunch.peer{ server = (rv:address()), id = "qb", bind = "127.0.0.1:0" })
      assert(a:register()); assert(b:register())
      assert(a:connect("qb"))
      natpunch.sleep(0.2)
      assert.equal(0, rv:stats().reports)
      assert.equal(0, rv:stats().malformed)
      a:close(); b:close(); rv:close()
    end)
  end)

  it("a peer's punch outcomes by method and its setup-time histogram", function()
    helper.run(function()
      local rv = assert(natpunch.rendezvous{ listen = "127.0.0.1:0" })
      local set, feed = metrics.peer()
      local msrv = assert(metrics.serve("127.0.0.1:0", function() return set:render() end))
      local a = assert(natpunch.peer{ server = (rv:address()), id = "pa", bind = "127.0.0.1:0", on_event = feed })
      local b = assert(natpunch.peer{ server = (rv:address()), id = "pb", bind = "127.0.0.1:0" })
      assert(a:register()); assert(b:register())
      local s = assert(a:connect("pb"))
      assert(s:touch("x"))
      assert.is_nil(a:connect("nobody", 1))
      local status, body = get((msrv:address()), "/metrics")
      assert.equal(200, status)
      assert.equal(1, sample(body, 'natpunch_punch_total{method="udp",outcome="connected",path="private"}'))
      assert.equal(1, sample(body, 'natpunch_punch_total{method="udp",outcome="failed",path="none"}'))
      assert.equal(1, sample(body, 'natpunch_setup_ms_count{method="udp"}'))
      assert.equal(1, sample(body, 'natpunch_setup_ms_bucket{method="udp",le="+Inf"}'))
      assert.equal(1, sample(body, 'natpunch_touch_total{outcome="acked"}'))
      assert.equal(1, sample(body, "natpunch_registrations_total"))
      msrv:close(); a:close(); b:close(); rv:close()
    end)
  end)
end)
