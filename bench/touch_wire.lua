--- The lab-wire rows of `make bench` (root only): touch through the NAT
-- lab's userspace wire (natpunch-wire, docs/LAB.md), each against raw UDP
-- over the same wire measured in the same run.
--
--   lua5.4 bench/touch_wire.lua [--json] [--quick]
--
-- Two impaired links from one lab (hosts on the lab's internet, no NAT):
--   lossy: 5% loss each way, 20 Mbit/s (so the wire, not the CPU, sets the
--          pace and the figure does not depend on the machine's load)
--   slow:  2 Mbit/s with a queue of 30 frames (a bottleneck with a small
--          buffer: about 150 ms at 2 Mbit/s)
-- For each: a raw one-way UDP blast (build/bench/udp_blast --oneway,
-- offered above the link's rate) gives what the wire moves for 1200-byte
-- datagrams; then a bulk of 1200-byte touches (bench/touch_peer.lua, up to
-- 256 unacknowledged) is delivered exactly once and its goodput is shown as
-- a ratio to the raw figure.  The wire's own counters (SIGUSR1) give the
-- frames dropped at its queue (qdrop) and the most it held (qmax); the
-- sender samples its congestion window every 20 ms.
--
-- Loaded with require/dofile it returns its functions (spec/touch_wire_spec.lua).
local root = dofile((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".")
  .. "/../lua/natpunch/checkout.lua")
local lab = require "natpunch.lab"
local proc = require "natpunch.lab.proc"
local json = require "natpunch.json"

local W = {}

W.LINKS = {
  lossy = { host = "l", addr = "203.0.113.3", link = { loss = "5%", rate = "20mbit" }, rate = 20e6,
    title = "5% loss each way, 20 Mbit/s", short = "5% loss" },
  slow = { host = "w", addr = "203.0.113.5", link = { rate = "2mbit", limit = 30 }, rate = 2e6,
    title = "2 Mbit/s, queue of 30 frames", short = "2 Mbit/s" },
}
W.PORT = 7400
W.UDP_BLAST = root .. "/build/bench/udp_blast"
W.TOUCH_PEER = root .. "/bench/touch_peer.lua"

local function lua_argv(script, args)
  local argv = { os.getenv("LUA") or "lua5.4", script }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  return proc.preload(argv)
end

local function last_json(text)
  for line in (text or ""):gmatch("[^\n]+") do
    local ok, v = pcall(json.decode, line)
    if ok and type(v) == "table" then text = v end
  end
  return type(text) == "table" and text or nil
end

--- The lab's description: host x on the internet and one host per link of
-- W.LINKS (names: which of them; default all).
function W.desc(names)
  local hosts = { { name = "x", public = "203.0.113.2" } }
  for _, n in ipairs(names or { "lossy", "slow" }) do
    local l = W.LINKS[n]
    hosts[#hosts + 1] = { name = l.host, public = l.addr, link = l.link }
  end
  return { impair = "wire", hosts = hosts }
end

--- Pin the neighbour entries of x and every other host of an up lab t.
function W.pin(t)
  for _, n in ipairs(t:nodes()) do
    if n.name ~= "x" and n.role == "host" then t:pin_neighbours("x", n.name) end
  end
end

--- W.desc(names) up, with pinned neighbours.
function W.lab(names)
  local t = lab.topology(W.desc(names))
  t:up()
  local ok, err = pcall(W.pin, t)
  if not ok then
    t:down()
    error(err, 0)
  end
  return t
end

-- Wire counters of `host` between two snapshots: down (towards host) and up.
local function delta(a, b)
  local d = {}
  for _, dir in ipairs({ "up", "down" }) do
    d[dir] = {}
    for k, v in pairs(b[dir]) do d[dir][k] = k == "qmax" and v or v - (a[dir][k] or 0) end
  end
  return d
end

local function snapshot(t, host)
  return assert(t:wire_counters(host))
end

--- count touches of size bytes from x to host, at most window
-- unacknowledged.  Returns the sender's line, the receiver's line and the
-- wire's counters during the run.
function W.touch_bulk(t, host, count, size, window)
  local c0 = snapshot(t, host)
  local recv = t:spawn(host, lua_argv(W.TOUCH_PEER, { "--recv", "--bind", t:addr(host), "--port", tostring(W.PORT),
    "--stamp", "--idle", "1.5", "--seconds", "60" }))
  assert(recv:expect("^ready", 10), "touch receiver did not start: " .. recv:output())
  local out = t:exec("x", lua_argv(W.TOUCH_PEER, { "--bulk", "--to", t:addr(host) .. ":" .. W.PORT, "--stamp",
    "--count", tostring(count), "--size", tostring(size), "--window", tostring(window) }))
  local sender = last_json(out)
  recv:wait(10)
  recv:stop()
  local receiver = last_json(recv:output())
  if not sender or not receiver then error("touch bulk failed: " .. out .. "\n" .. recv:output(), 0) end
  return sender, receiver, delta(c0, snapshot(t, host))
end

--- count datagrams of size bytes from x to host, paced at rate bit/s, no
-- acknowledgement, no retransmission: build/bench/udp_blast when built,
-- else the lab probe's blast (Lua, natpunch.core, paced by its timer).  Returns
-- { received, distinct, bytes, span_s, mbit_per_s } and the wire's counters.
function W.raw_oneway(t, host, count, size, rate)
  local c0 = snapshot(t, host)
  local target = t:addr(host) .. ":" .. (W.PORT + 1)
  local res
  if proc.read_file(W.UDP_BLAST) then
    local sink = t:spawn(host, { W.UDP_BLAST, "--sink", "--listen", target, "--idle", "1", "--seconds", "60" })
    assert(sink:expect("^ready", 5), "sink did not start: " .. sink:output())
    t:exec("x", { W.UDP_BLAST, "--blast", "--oneway", "--server", target, "--count", tostring(count),
      "--size", tostring(size), "--rate", tostring(rate) })
    sink:wait(10)
    sink:stop()
    res = last_json(sink:output())
  else
    local sink = t:spawn_probe(host, { "sink", "--bind", tostring(W.PORT + 1), "--time", "30", "--count",
      tostring(count), "--idle", "1" })
    assert(sink:expect("^READY", 5))
    t:probe("x", { "blast", "--to", target, "--count", tostring(count), "--size", tostring(size),
      "--interval", ("%.6f"):format((size + 28) * 8 / rate) })
    sink:wait(35)
    local n, bytes, span = sink:output():match("SINK received (%d+) bytes (%d+) span ([%d%.]+)")
    n, bytes, span = tonumber(n), tonumber(bytes), tonumber(span)
    res = n and { received = n, bytes = bytes, span_s = span, mbit_per_s = span > 0 and bytes * 8 / span / 1e6 or 0 }
  end
  if not res then error("raw blast over the wire failed", 0) end
  return res, delta(c0, snapshot(t, host))
end

--- Both rows: returns a list of { link, title, raw = {...}, touch = {...},
-- ratio, ... }.
function W.run(quick)
  local rows = {}
  local t = W.lab()
  local ok, err = pcall(function()
    for _, name in ipairs({ "lossy", "slow" }) do
      local l = W.LINKS[name]
      local count = name == "slow" and (quick and 200 or 400) or (quick and 1000 or 3000)
      io.stderr:write(("bench: touch over the lab wire (%s)\n"):format(l.title))
      local raw, rw = W.raw_oneway(t, l.host, count, 1200, l.rate * 2)
      local s, r, tw = W.touch_bulk(t, l.host, count, 1200, 256)
      local goodput = s.acked * 1200 * 8 / s.seconds / 1e6
      rows[#rows + 1] = { link = name, title = l.title, short = l.short, rate_mbit = l.rate / 1e6, count = count,
        raw_mbit = raw.mbit_per_s, raw_received = raw.received, raw_qdrop_share = rw.down.qdrop / rw.down.rx,
        touch_mbit = goodput, ratio = goodput / raw.mbit_per_s, acked = s.acked, failed = s.failed,
        delivered = r.lua_deliveries, distinct = r.distinct, retransmitted = s.retransmitted,
        congestion_events = s.congestion_events, cwnd_min = s.cwnd_min, cwnd_mean = s.cwnd_mean,
        cwnd_max = s.cwnd_max, srtt_ms = s.srtt_ms, wire_rx = tw.down.rx, wire_lost = tw.down.lost,
        wire_qdrop = tw.down.qdrop, wire_qmax = tw.down.qmax, qdrop_share = tw.down.qdrop / tw.down.rx }
    end
  end)
  t:down()
  if not ok then error(err, 0) end
  return rows
end

function W.print(rows)
  print("Touch over the NAT lab's natpunch-wire (x -> host on the lab's internet), 1200-byte messages, up to 256"
    .. " unacknowledged; baseline: a raw one-way UDP blast over the same wire in the same run")
  local line = "%-30s %9s %9s %7s %13s %10s %8s %6s %14s"
  print(line:format("link", "raw Mbit", "touch Mb", "x raw", "delivered", "wire qdrop", "raw qdrop", "qmax",
    "cwnd min/avg/max"))
  for _, r in ipairs(rows) do
    print(line:format(r.title, ("%.2f"):format(r.raw_mbit), ("%.2f"):format(r.touch_mbit), ("%.2f"):format(r.ratio),
      ("%d/%d once"):format(r.distinct or 0, r.count), ("%.1f%%"):format(100 * r.qdrop_share),
      ("%.0f%%"):format(100 * r.raw_qdrop_share), tostring(r.wire_qmax),
      ("%s/%.0f/%s"):format(r.cwnd_min or "-", r.cwnd_mean or 0, r.cwnd_max or "-")))
  end
end

if arg and arg[0] and arg[0]:match("touch_wire%.lua$") then   -- run as a script
  local want_json, quick = false, false
  for _, a in ipairs(arg) do
    if a == "--json" then want_json = true elseif a == "--quick" then quick = true
    else io.stderr:write("usage: lua5.4 bench/touch_wire.lua [--json] [--quick]\n"); os.exit(2) end
  end
  local why = lab.unavailable()
  if why then
    print("Touch over the lab wire: skipped (" .. why .. ")")
    os.exit(0)
  end
  local rows = W.run(quick)
  if want_json then
    for _, r in ipairs(rows) do print(json.encode(r)) end
  else
    W.print(rows)
  end
end

return W
