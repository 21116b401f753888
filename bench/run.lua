--- `make bench`: STUN Binding throughput and latency over loopback, for
-- natpunch's rendezvous and for other servers, shown as ratios to a
-- baseline measured in the same run (see bench/README.md).
--
--   lua5.4 bench/run.lua [--json] [--duration S] [--rounds N] [--only NAME,...]
--                        [--suite stun,touch,wire,registry,redis,punch] [--quick] [--record FILE.json]
--
-- Suites (all by default): stun (the table above), touch (bulk throughput
-- and RTT between two processes against raw C UDP baselines), wire
-- (bench/touch_wire.lua, as root: touch through the lab's natpunch-wire
-- under 5% loss and on a 2 Mbit/s link, against raw UDP over the same
-- wire), registry
-- (bytes per peer, costs 1k..100k), redis (bench/redis_scale.lua: 3
-- servers + redis-server, 100k registrations, 10k introductions) and punch
-- (setup time in the NAT lab at 25 ms per link, as root only).  --quick
-- makes the touch and redis loads 10x smaller; --record writes every figure
-- as JSON (bench/report.lua turns it into docs/BENCH.md and its plots).
--
-- Each server runs on CPU 0 and the load generator (build/bench/loadgen) on
-- CPU 1 (taskset) when there are two CPUs.  Every server is started under
-- `timeout`, has its own time limit too, and is killed when its turn ends
-- or the run fails.  Only 127.0.0.1 is used.
local root = dofile((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/../lua/natpunch/checkout.lua")

local core = require "natpunch.core"
local json = require "natpunch.json"

local LOADGEN = root .. "/build/bench/loadgen"
local STUN_RAW = root .. "/build/bench/stun_raw"
local SAFETY_LIMIT = 90   -- seconds: `timeout` kills a server left behind

local opts = { json = false, duration = 1.5, rounds = 5, requests = 600000, sockets = 4, window = 32,
  suite = "stun,touch,wire,registry,redis,punch", setup_runs = 6 }

local function q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function capture(cmd)
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("a")
  p:close()
  return out
end

local function sh(cmd)
  return os.execute(cmd) == true
end

local function sleep(s)
  os.execute("sleep " .. s)
end

local function usage(msg)
  io.stderr:write("bench/run.lua: ", msg, "\n",
    "usage: lua5.4 bench/run.lua [--json] [--duration S] [--rounds N] [--only NAME,...]\n",
    "       [--suite stun,touch,wire,registry,redis,punch] [--quick] [--record FILE.json]\n",
    "       [--setup-runs N]\n")
  os.exit(2)
end

local function parse_args()
  local i = 1
  while i <= #arg do
    local a, v = arg[i], arg[i + 1]
    if a == "--json" then opts.json = true
    elseif a == "--duration" and tonumber(v) then opts.duration = tonumber(v); i = i + 1
    elseif a == "--rounds" and tonumber(v) then opts.rounds = math.floor(tonumber(v)); i = i + 1
    elseif a == "--only" and v then opts.only = v; i = i + 1
    elseif a == "--suite" and v then opts.suite = v; i = i + 1
    elseif a == "--quick" then opts.quick = true
    elseif a == "--record" and v then opts.record = v; i = i + 1
    elseif a == "--setup-runs" and tonumber(v) then opts.setup_runs = math.floor(tonumber(v)); i = i + 1
    else usage("bad argument '" .. tostring(a) .. "'") end
    i = i + 1
  end
  if opts.duration <= 0 or opts.duration > 10 then usage("--duration must be in (0, 10]") end
  if opts.rounds < 1 or opts.rounds > 5 then usage("--rounds must be 1..5") end
  if opts.setup_runs < 1 or opts.setup_runs > 50 then usage("--setup-runs must be 1..50") end
end

--- A free UDP port on 127.0.0.1, from the kernel.
local function free_port()
  local u = core.udp()
  assert(u:bind("127.0.0.1", 0))
  local _, port = u:getsockname()
  u:close()
  core.run("nowait")
  return port
end

local ncpu = tonumber(capture("nproc 2>/dev/null")) or 1
local pinned = ncpu >= 2 and sh("command -v taskset >/dev/null 2>&1")
local function pin(cpu)
  return pinned and ("taskset -c " .. cpu .. " ") or ""
end

local tmp = capture("mktemp -d /tmp/natpunch-bench.XXXXXX"):gsub("%s+$", "")
assert(tmp:match("^/tmp/natpunch%-bench%."), "mktemp failed")

-- ------------------------------------------------------------ processes

local running = {}
local started = 0

local function alive(pid)
  local f = pid and io.open("/proc/" .. pid .. "/stat", "r")
  if not f then return false end
  local state = f:read("a"):match("%) (%a)")
  f:close()
  return state ~= "Z"   -- a zombie has exited already
end

local function read_file(path)
  local f = io.open(path, "r")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

--- The pid of the child of `timeout` (the server: taskset execs it).
local function child_of(tpid)
  return tpid and tonumber(capture("pgrep -P " .. tpid .. " 2>/dev/null"):match("%d+") or "")
end

--- Start a server: `timeout` (pid tpid) runs it (pid pid) on CPU 0 with
-- stdin from a pipe we hold; closing the pipe is the natpunch server's
-- signal to stop.
local function start(name, cmd)
  started = started + 1
  local pidf = ("%s/%s.%d.pid"):format(tmp, name, started)
  local log = ("%s/%s.%d.log"):format(tmp, name, started)
  local h = assert(io.popen("echo $$ > " .. q(pidf) .. "; exec timeout --foreground -s KILL "
    .. SAFETY_LIMIT .. " " .. pin(0) .. cmd .. " > " .. q(log) .. " 2>&1", "w"))
  local proc = { name = name, h = h, log = log }
  running[#running + 1] = proc
  for _ = 1, 40 do
    proc.tpid = proc.tpid or tonumber(read_file(pidf) or "")
    if proc.tpid then
      proc.pid = child_of(proc.tpid)
      if proc.pid then break end
    end
    sleep(0.05)
  end
  return proc
end

local function stop(proc)
  if proc.stopped then return end
  proc.stopped = true
  proc.pid = proc.pid or child_of(proc.tpid)
  if proc.pid and not proc.eof_stops then os.execute("kill -TERM " .. proc.pid .. " 2>/dev/null") end
  if proc.eof_stops then
    proc.h:close()   -- EOF on its stdin: it prints its counters and exits
    proc.h = nil
  end
  for _ = 1, 60 do
    if not alive(proc.tpid) and not alive(proc.pid) then break end
    sleep(0.05)
  end
  for _, pid in ipairs({ proc.pid, proc.tpid }) do
    if alive(pid) then os.execute("kill -KILL " .. pid .. " 2>/dev/null") end
  end
  if proc.h then proc.h:close() end
  for i, p in ipairs(running) do
    if p == proc then table.remove(running, i) break end
  end
end

local function stop_all()
  while #running > 0 do stop(running[#running]) end
end

--- CPU time (ns) of every thread of pid so far, from schedstat.
local function cpu_ns(pid)
  local total = 0
  for v in capture("cat /proc/" .. pid .. "/task/*/schedstat 2>/dev/null"):gmatch("(%d+) %d+ %d+") do
    total = total + tonumber(v)
  end
  return total
end

local function loadgen(port, label, args)
  local out = capture(pin(1) .. q(LOADGEN) .. " --server 127.0.0.1:" .. port .. " --label " .. q(label)
    .. " --json " .. args .. " 2>&1")
  local line = out:match("(%b{})")
  local r = line and json.decode(line)
  if not r then error("loadgen failed: " .. out, 0) end
  return r
end

-- --------------------------------------------------------------- servers

local servers = {
  { name = "raw", title = "raw C (baseline)",
    cmd = function(port) return q(STUN_RAW) .. " --listen 127.0.0.1:" .. port .. " --seconds " .. SAFETY_LIMIT end },
  { name = "natpunch", title = "natpunch rendezvous", eof_stops = true,
    cmd = function(port) return "lua5.4 " .. q(root .. "/bench/rendezvous.lua") .. " --port " .. port end },
  { name = "natpunch-nobatch", title = "natpunch, no batching", eof_stops = true,
    cmd = function(port)
      return "lua5.4 " .. q(root .. "/bench/rendezvous.lua") .. " --port " .. port .. " --no-batch"
    end },
  { name = "natpunch-luahook", title = "natpunch, Lua hook/packet", eof_stops = true,
    cmd = function(port)
      return "lua5.4 " .. q(root .. "/bench/rendezvous.lua") .. " --port " .. port .. " --lua-hook"
    end },
  { name = "coturn", title = "coturn (turnserver)",
    available = function()
      if not sh("command -v turnserver >/dev/null 2>&1") then
        return false, "turnserver not installed (Debian package coturn)"
      end
      return true
    end,
    cmd = function(port)
      -- STUN only, UDP only, no config file, no CLI, no TLS/DTLS, one relay thread
      return "turnserver -n --listening-ip 127.0.0.1 --listening-port " .. port
        .. " --stun-only --no-tcp --no-tls --no-dtls --no-cli --relay-threads 1 --no-auth"
        .. " --log-file stdout --simple-log --pidfile " .. q(tmp .. "/turnserver.pid")
    end },
}

--- One measurement of one server: warm up, load, idle round trips.
local function measure(s)
  if s.available then
    local ok, why = s.available()
    if not ok then return { skipped = why } end
  end
  local port = free_port()
  local proc = start(s.name, s.cmd(port))
  proc.eof_stops = s.eof_stops
  local ok, res = pcall(function()
    if not proc.pid then error("did not start", 0) end
    local up = false
    for _ = 1, 3 do
      if sh(pin(1) .. q(LOADGEN) .. " --server 127.0.0.1:" .. port .. " --probe") then up = true break end
      if not alive(proc.pid) then break end
    end
    if not up then
      error("no answer to a STUN Binding request; its log: " .. (read_file(proc.log) or ""):sub(-300), 0)
    end
    loadgen(port, s.name, "--requests 20000 --duration 0.5")   -- warm-up, not counted
    local cpu0 = cpu_ns(proc.pid)
    local r = loadgen(port, s.name, ("--requests %d --sockets %d --window %d --duration %g")
      :format(opts.requests, opts.sockets, opts.window, opts.duration))
    local cpu = cpu_ns(proc.pid) - cpu0
    r.server_cpu_pct = 100 * cpu / 1e9 / r.seconds
    r.server_cpu_us_per_req = r.answered > 0 and cpu / 1e3 / r.answered or nil
    local idle = loadgen(port, s.name, "--requests 5000 --sockets 1 --window 1 --duration 1")
    r.idle_p50_us, r.idle_p99_us = idle.p50_us, idle.p99_us
    return r
  end)
  stop(proc)
  if not ok then return { failed = tostring(res) } end
  if s.eof_stops then
    local line = (read_file(proc.log) or ""):match("\n(%b{})%s*$")
    res.server_stats = line and json.decode(line)
  end
  return res
end

--- The round with the median throughput; a failure only when all failed.
local function median_by_rps(list)
  local ok = {}
  for _, r in ipairs(list) do
    if r.rps then ok[#ok + 1] = r end
  end
  if #ok == 0 then return list[1] end
  table.sort(ok, function(a, b) return a.rps < b.rps end)
  return ok[(#ok + 1) // 2]
end

local function wanted(s)
  if not opts.only then return true end
  for n in opts.only:gmatch("[^,]+") do
    if n == s.name then return true end
  end
  return false
end

local function fmt(x, f)
  return x and (f or "%.0f"):format(x) or "-"
end

local function report(results)
  local base = results.raw and results.raw.rps
  local base_cost = results.raw and results.raw.server_cpu_us_per_req
  print(("STUN Binding over 127.0.0.1: %d sockets x %d outstanding, up to %d requests or %g s per server;"
    .. " %s"):format(opts.sockets, opts.window, opts.requests, opts.duration,
    pinned and "server on CPU 0, load generator on CPU 1" or "not pinned (fewer than 2 CPUs or no taskset)"))
  local row = "%-24s %9s %7s %7s %7s %8s %15s %10s %7s %6s"
  print(row:format("server", "req/s", "x base", "p50 us", "p99 us", "idle p50", "answered/sent",
    "CPU us/req", "x base", "CPU %"))
  for _, s in ipairs(servers) do
    local r = results[s.name]
    if r and (r.skipped or r.failed) then
      print(("%-24s %s"):format(s.title, r.skipped and ("skipped: " .. r.skipped) or ("failed: " .. r.failed)))
    elseif r then
      local cost = r.server_cpu_us_per_req
      print(row:format(s.title, fmt(r.rps), base and fmt(r.rps / base, "%.2f") or "-", fmt(r.p50_us),
        fmt(r.p99_us), fmt(r.idle_p50_us, "%.1f"), ("%d/%d"):format(r.answered, r.sent), fmt(cost, "%.2f"),
        base_cost and cost and fmt(cost / base_cost, "%.2f") or "-", fmt(r.server_cpu_pct)))
    end
  end
  local nb = results.natpunch and results.natpunch.server_stats
  if nb and nb.tx_batches and nb.tx_batches > 0 then
    print(("natpunch sent its answers in %d sendmmsg calls (%.1f datagrams each)"):format(
      nb.tx_batches, nb.tx_batched / nb.tx_batches))
  end
  if opts.json then
    for _, s in ipairs(servers) do
      local r = results[s.name]
      if r then
        r.server = s.name
        r.ratio = base and r.rps and r.rps / base or nil
        r.cpu_ratio = base_cost and r.server_cpu_us_per_req and r.server_cpu_us_per_req / base_cost or nil
        print(json.encode(r))
      end
    end
  end
end

local recorded = { machine = {}, suites = {} }

local function in_suite(name)
  for n in opts.suite:gmatch("[^,]+") do
    if n == name then return true end
  end
  return false
end

local function stun_suite()
  for _, f in ipairs({ LOADGEN, STUN_RAW }) do
    if not read_file(f) then error(f .. " is missing: run `make bench`", 0) end
  end
  local rounds = {}
  for round = 1, opts.rounds do
    for _, s in ipairs(servers) do
      if wanted(s) then
        io.stderr:write(("bench: round %d/%d: %s\n"):format(round, opts.rounds, s.name))
        rounds[s.name] = rounds[s.name] or {}
        table.insert(rounds[s.name], measure(s))
      end
    end
  end
  local results = {}
  for name, list in pairs(rounds) do
    local all = {}
    for i, r in ipairs(list) do all[i] = r.rps or 0 end
    results[name] = median_by_rps(list)
    results[name].rps_rounds = all
  end
  report(results)
  local rows = {}
  for _, s in ipairs(servers) do
    local r = results[s.name]
    if r and r.rps then
      rows[#rows + 1] = { name = s.name, title = s.title, rps = r.rps,
        ratio = results.raw and results.raw.rps and r.rps / results.raw.rps, cpu_us = r.server_cpu_us_per_req }
    end
  end
  recorded.suites.stun = rows
end

-- ------------------------------------------------------------ touch

local TOUCH_PEER = root .. "/bench/touch_peer.lua"
local UDP_BLAST = root .. "/build/bench/udp_blast"

local function json_line(text)
  local line = text:match("(%b{})%s*$")
  local r = line and json.decode(line)
  if not r then error("no JSON result in: " .. text:sub(-300), 0) end
  return r
end

-- one receiver on CPU 0 (stopped at the end), one sender on CPU 1 (waited for)
local function pair(name, server_cmd, client_cmd, eof_stops)
  local port = free_port()
  local proc = start(name, server_cmd(port))
  proc.eof_stops = eof_stops
  local ok, res = pcall(function()
    for _ = 1, 100 do
      if (read_file(proc.log) or ""):find("ready", 1, true) then break end
      sleep(0.05)
    end
    return json_line(capture(pin(1) .. client_cmd(port) .. " 2>&1"))
  end)
  stop(proc)
  if not ok then error(name .. ": " .. tostring(res), 0) end
  return res
end

-- a receiver on CPU 0 that serves several client runs (stop it with stop())
local function serve(name, cmd, eof_stops)
  local port = free_port()
  local proc = start(name, cmd(port))
  proc.eof_stops, proc.port = eof_stops, port
  for _ = 1, 100 do
    if (read_file(proc.log) or ""):find("ready", 1, true) then return proc end
    sleep(0.05)
  end
  stop(proc)
  error(name .. " did not start: " .. (read_file(proc.log) or ""):sub(-300), 0)
end

-- The round trips: raw, raw with epoll and touch ping-pong interleaved
-- against echo servers and one touch receiver started once, runs in
-- alternating order (raw first, then touch first) so that drift on the
-- machine hits all alike.  "raw with epoll" waits in epoll_wait and then
-- reads, as an event loop does (udp_blast --epoll): the part of the gap
-- that any epoll-based loop pays (the kernel's wake-up through epoll costs
-- more than a blocked recv's).  Each run gives its p50; the figure is the
-- median of the p50s of each side, and the spread the least and greatest
-- ratio of a pair.
local function ping_rounds(pairs_n, pings, lua)
  local raw, ep, touch, ratios = {}, {}, {}, {}
  local procs = {}
  local ok, err = pcall(function()
    procs.echo = serve("echo", function(p)
      return q(UDP_BLAST) .. " --echo --listen 127.0.0.1:" .. p .. " --seconds 120"
    end)
    procs.echo_ep = serve("echo-epoll", function(p)
      return q(UDP_BLAST) .. " --echo --epoll --listen 127.0.0.1:" .. p .. " --seconds 120"
    end)
    procs.recv = serve("touch-recv", function(p) return lua .. " --recv --port " .. p .. " --seconds 120" end, true)
    local function run(cmd, port)
      return json_line(capture(pin(1) .. cmd .. " 127.0.0.1:" .. port .. " --count " .. pings .. " --size 32 2>&1"))
    end
    local function raw_run() return run(q(UDP_BLAST) .. " --ping --server", procs.echo.port) end
    local function ep_run() return run(q(UDP_BLAST) .. " --ping --epoll --server", procs.echo_ep.port) end
    local function touch_run() return run(lua .. " --ping --to", procs.recv.port) end
    for i = 1, pairs_n do
      local r, e, t
      if i % 2 == 1 then r = raw_run(); e = ep_run(); t = touch_run()
      else t = touch_run(); e = ep_run(); r = raw_run() end
      raw[#raw + 1], ep[#ep + 1], touch[#touch + 1] = r, e, t
      ratios[#ratios + 1] = t.p50_us / r.p50_us
    end
  end)
  for _, name in ipairs({ "recv", "echo_ep", "echo" }) do if procs[name] then stop(procs[name]) end end
  if not ok then error(err, 0) end
  return raw, ep, touch, ratios
end

local function touch_suite()
  if not read_file(UDP_BLAST) then error(UDP_BLAST .. " is missing: run `make bench`", 0) end
  local n = opts.quick and 20000 or 200000
  local pings = opts.quick and 500 or 2000
  local lua = "lua5.4 " .. q(TOUCH_PEER)
  local rows = {}
  local function median(list, key)
    table.sort(list, function(a, b) return (a[key] or 0) < (b[key] or 0) end)
    return list[(#list + 1) // 2]
  end
  local runs = { raw_bulk = {}, touch_bulk = {}, touch_bulk_batch = {} }
  local rounds = math.min(opts.rounds, 3)
  for round = 1, rounds do
    io.stderr:write(("bench: touch round %d/%d\n"):format(round, rounds))
    table.insert(runs.raw_bulk, pair("sink", function(p)
      return q(UDP_BLAST) .. " --sink --listen 127.0.0.1:" .. p .. " --seconds 60"
    end, function(p)
      return q(UDP_BLAST) .. " --blast --server 127.0.0.1:" .. p .. " --count " .. n .. " --size 1200 --window 64"
    end))
    table.insert(runs.touch_bulk, pair("touch-recv", function(p)
      return lua .. " --recv --port " .. p
    end, function(p)
      return lua .. " --bulk --to 127.0.0.1:" .. p .. " --count " .. n .. " --size 1200 --window 64"
    end, true))
    -- the same with the batch callbacks (udp:on_touch_batch / on_touch_done)
    table.insert(runs.touch_bulk_batch, pair("touch-recv", function(p)
      return lua .. " --recv --batch --port " .. p
    end, function(p)
      return lua .. " --bulk --batch --to 127.0.0.1:" .. p .. " --count " .. n .. " --size 1200 --window 64"
    end, true))
  end
  -- per round, before median() sorts the lists
  local per_round = {}
  for i = 1, #runs.raw_bulk do
    per_round[i] = (runs.touch_bulk[i].msgs_per_s or 0) / runs.raw_bulk[i].msgs_per_s
  end
  local rb, tb = median(runs.raw_bulk, "msgs_per_s"), median(runs.touch_bulk, "msgs_per_s")
  local tbb = median(runs.touch_bulk_batch, "msgs_per_s")
  local ping_pairs = 4 * opts.rounds
  io.stderr:write(("bench: touch round trips, %d interleaved pairs of %d pings\n"):format(ping_pairs, pings))
  local raw_pings, ep_pings, touch_pings, rtt_ratios = ping_rounds(ping_pairs, pings, lua)
  local rp, tp = median(raw_pings, "p50_us"), median(touch_pings, "p50_us")
  local ep = median(ep_pings, "p50_us")
  table.sort(rtt_ratios)
  table.sort(per_round)
  print(("Touch between two processes on 127.0.0.1 (receiver CPU 0, sender CPU 1), 1200-byte messages,"
    .. " window 64; median of %d rounds"):format(rounds))
  local line = "%-34s %10s %9s %7s %14s"
  print(line:format("bulk", "msgs/s", "Mbit/s", "x base", "acked/sent"))
  print(line:format("raw C blast-and-ack (baseline)", ("%.0f"):format(rb.msgs_per_s), ("%.0f"):format(rb.mbit_per_s),
    "1.00", rb.acked .. "/" .. rb.count))
  print(line:format("natpunch touch", ("%.0f"):format(tb.msgs_per_s), ("%.0f"):format(tb.mbit_per_s),
    ("%.2f"):format(tb.msgs_per_s / rb.msgs_per_s), tb.acked .. "/" .. tb.count))
  print(line:format("natpunch touch, batch callbacks", ("%.0f"):format(tbb.msgs_per_s), ("%.0f"):format(tbb.mbit_per_s),
    ("%.2f"):format(tbb.msgs_per_s / rb.msgs_per_s), tbb.acked .. "/" .. tbb.count))
  line = "%-34s %10s %9s %7s %14s"
  print(line:format("round trip, 32 bytes, one at a time", "p50 us", "p99 us", "x base", "answered"))
  print(line:format("raw C UDP ping-pong (baseline)", ("%.1f"):format(rp.p50_us), ("%.1f"):format(rp.p99_us), "1.00",
    rp.answered .. "/" .. rp.count))
  print(line:format("raw C ping-pong, epoll", ("%.1f"):format(ep.p50_us), ("%.1f"):format(ep.p99_us),
    ("%.2f"):format(ep.p50_us / rp.p50_us), ep.answered .. "/" .. ep.count))
  print(line:format("natpunch touch (until acked)", ("%.1f"):format(tp.p50_us), ("%.1f"):format(tp.p99_us),
    ("%.2f"):format(tp.p50_us / rp.p50_us), tp.answered .. "/" .. tp.count))
  print(("round trip: touch is %.2fx the raw ping-pong with epoll (an event loop's wake-up)")
    :format(tp.p50_us / ep.p50_us))
  print(("round trip: median p50 of %d interleaved runs each (%d pings a run); x base over the pairs:"
    .. " min %.2f, median %.2f, max %.2f; bulk x base over the rounds: min %.2f, max %.2f"):format(ping_pairs,
    pings, rtt_ratios[1], rtt_ratios[(#rtt_ratios + 1) // 2], rtt_ratios[#rtt_ratios], per_round[1],
    per_round[#per_round]))
  rows.raw_bulk, rows.touch_bulk, rows.raw_ping, rows.touch_ping = rb, tb, rp, tp
  rows.touch_bulk_batch = tbb
  rows.touch_bulk.stats, tbb.stats = nil, nil
  rows.bulk_ratio = tb.msgs_per_s / rb.msgs_per_s
  rows.bulk_batch_ratio = tbb.msgs_per_s / rb.msgs_per_s
  rows.rtt_ratio = tp.p50_us / rp.p50_us
  rows.epoll_ping = ep
  rows.epoll_ratio = ep.p50_us / rp.p50_us         -- what an epoll loop's wake-up costs
  rows.rtt_ratio_epoll = tp.p50_us / ep.p50_us     -- touch against that
  rows.rtt_pairs, rows.rtt_pings = ping_pairs, pings
  rows.rtt_ratio_min, rows.rtt_ratio_max = rtt_ratios[1], rtt_ratios[#rtt_ratios]
  rows.rtt_ratio_pair_median = rtt_ratios[(#rtt_ratios + 1) // 2]
  rows.bulk_ratio_min, rows.bulk_ratio_max = per_round[1], per_round[#per_round]
  recorded.suites.touch = rows
end

-- ------------------------------------------------------------ registry, redis

local function registry_suite()
  local out = capture("lua5.4 " .. q(root .. "/bench/registry.lua") .. " --json 2>&1")
  local rows = {}
  for line in out:gmatch("[^\n]+") do rows[#rows + 1] = json.decode(line) end
  if #rows == 0 then error("bench/registry.lua failed: " .. out, 0) end
  io.stdout:write(capture("lua5.4 " .. q(root .. "/bench/registry.lua") .. " 2>&1"))
  recorded.suites.registry = rows
end

local function redis_suite()
  if not sh("command -v redis-server >/dev/null 2>&1") then
    print("Redis scale test: skipped (redis-server not installed)")
    return
  end
  local args = opts.quick and "--registrations 10000 --introductions 1000" or ""
  local cmd = "lua5.4 " .. q(root .. "/bench/redis_scale.lua") .. " " .. args
  io.stderr:write("bench: redis scale test\n")
  local text = capture(cmd .. " --json 2>&1")
  local r = json_line(text)
  print("Shared registry: bench/redis_scale.lua " .. args)
  print(("  %d servers + redis-server: %d registrations at %.0f/s (%d refused or lost); %d cross-server"
    .. " introductions, %d delivered, latency p50 %.2f ms p99 %.2f ms"):format(r.servers, r.registrations,
    r.registrations_per_s, r.registration_failures or 0, r.introductions, r.introductions_delivered,
    r.intro_p50_ms or -1, r.intro_p99_ms or -1))
  local per = {}
  for i, b in ipairs(r.process_bytes_per_peer) do per[i] = ("%.0f"):format(b) end
  print(("  memory per peer: Redis %.0f B, rendezvous processes (RSS) %s B"):format(r.redis_bytes_per_peer or -1,
    table.concat(per, ", ")))
  recorded.suites.redis = r
end

-- ------------------------------------------------------------ touch over the lab wire

local function wire_suite()
  if capture("id -u"):match("%d+") ~= "0" then
    print("Touch over the lab wire: skipped (needs root for network namespaces)")
    return
  end
  local text = capture("timeout 300 lua5.4 " .. q(root .. "/bench/touch_wire.lua") .. " --json"
    .. (opts.quick and " --quick" or "") .. " 2>&1")
  local rows = {}
  for line in text:gmatch("[^\n]+") do
    local ok, r = pcall(json.decode, line)
    if ok and type(r) == "table" and r.link then rows[#rows + 1] = r end
  end
  if #rows == 0 then error("bench/touch_wire.lua failed: " .. text:sub(-400), 0) end
  dofile(root .. "/bench/touch_wire.lua").print(rows)
  recorded.suites.wire = rows
end

-- ------------------------------------------------------------ punch (lab)

-- The ideal setup time of a case, per method, from the RTTs the matrix
-- measured by ping in the same case (bench/README.md):
--   udp, predict: RTT to the rendezvous (the introduction) + RTT between
--     the peers (one punch check there and back);
--   birthday: the same + the median time of the search itself at the
--     method's defaults (the median number of probes until one of
--     `sockets` mappings among the ports is hit, at `rate` per second:
--     what any prober with those bounds needs; birthday_search_ms);
--   relay: RTT to the rendezvous + one RTT to the TURN server (ChannelBind
--     to the other's relayed address, relay.run) + the RTT of the relayed
--     path (a -> coturn -> b and back).  coturn sits on s2, beside s1 on the
--     lab's undelayed internet, so the RTT to it is the RTT to the server,
--     and the relayed path crosses the same two delayed links as the direct
--     one, so its RTT is the peers' RTT: 2 x rtt_server + rtt_peer.
local function birthday_search_ms()
  local b = require "natpunch.method.birthday"
  local p = b.sockets / (b.port_max - b.port_min + 1)
  return math.log(0.5) / math.log(1 - p) / b.rate * 1000
end

local function ideal_ms(method, c)
  if not (c.rtt_server_ms and c.rtt_peer_ms) then return nil end
  if method == "relay" then return 2 * c.rtt_server_ms + c.rtt_peer_ms end
  if method == "birthday" then return c.rtt_server_ms + c.rtt_peer_ms + birthday_search_ms() end
  return c.rtt_server_ms + c.rtt_peer_ms
end

local function matrix_cases(only, repeat_n, cases)
  local prefix = ("bb%04x"):format(math.random(0, 0xffff))
  local text = capture("timeout 900 lua5.4 " .. q(root .. "/bin/natpunch") .. " lab matrix --delay 25ms --only "
    .. only .. " --repeat " .. repeat_n .. " --prefix " .. prefix .. " --json 2>&1")
  os.execute("lua5.4 " .. q(root .. "/bin/natpunch") .. " lab down --prefix " .. prefix .. " >/dev/null 2>&1")
  local n, failed = 0, 0
  for line in text:gmatch("[^\n]+") do
    local ok, ev = pcall(json.decode, line)
    if ok and type(ev) == "table" and ev.event == "case" then
      if ev.connected and ev.setup_ms then
        ev.method = ev.method or ev.transport or "udp"
        ev.ideal_ms = ideal_ms(ev.method, ev)
        ev.ideal_ratio = ev.ideal_ms and ev.ideal_ms >= 10 and ev.setup_ms / ev.ideal_ms or nil
        ev.phase_ms, ev.problems = nil, nil
        cases[#cases + 1] = ev
        n = n + 1
      else
        failed = failed + 1
      end
    end
  end
  return n, failed, text
end

local function punch_suite()
  if capture("id -u"):match("%d+") ~= "0" then
    print("Punch setup time in the lab: skipped (needs root for network namespaces)")
    return
  end
  math.randomseed(os.time())
  local runs = opts.quick and math.min(opts.setup_runs, 2) or opts.setup_runs
  local cone_runs = math.max(1, (runs + 2) // 3)
  local cases, failures, tails = {}, 0, {}
  io.stderr:write(("bench: punch setup time in the NAT lab (25 ms per link): cone pairs x %d\n"):format(cone_runs))
  local cone = "full-full,full-restricted,restricted-prc,prc-prc,prc-full,sym-full,full-sym,double-nat"
  local n, f, text = matrix_cases(cone, cone_runs, cases)
  failures = failures + f
  if n == 0 then tails[#tails + 1] = text:sub(-300) end
  io.stderr:write(("bench: punch setup time: predict, birthday, relay x %d\n"):format(runs))
  n, f, text = matrix_cases("hard-symseq-prc,hard-sym-prc,hard-sym-sym", runs, cases)
  failures = failures + f
  if n == 0 then tails[#tails + 1] = text:sub(-300) end
  if #cases == 0 then
    print("Punch setup time in the lab: failed: " .. table.concat(tails, " / "))
    return
  end
  local by_method, order = {}, { "udp", "predict", "birthday", "relay" }
  for _, c in ipairs(cases) do
    if not by_method[c.method] then
      by_method[c.method] = {}
      local known = false
      for _, m in ipairs(order) do known = known or m == c.method end
      if not known then order[#order + 1] = c.method end
    end
    table.insert(by_method[c.method], c)
  end
  print(("Punch setup time in the NAT lab, 25 ms per link (natpunch lab matrix --delay 25ms; cone pairs x %d,"
    .. " symseq-prc, sym-prc, sym-sym x %d)"):format(cone_runs, runs))
  local line = "%-9s %-22s %5s %9s %9s %9s %9s %10s"
  print(line:format("method", "pairs", "runs", "p50 ms", "p90 ms", "max ms", "ideal ms", "x ideal"))
  local rows = {}
  local function pick(t, q_) return t[math.max(1, math.ceil(#t * q_))] end
  for _, m in ipairs(order) do
    local list = by_method[m]
    if list then
      local ratios, setups, ideals, pairs_, seen = {}, {}, {}, {}, {}
      for _, c in ipairs(list) do
        setups[#setups + 1] = c.setup_ms
        if c.ideal_ratio then ratios[#ratios + 1] = c.ideal_ratio end
        if c.ideal_ms then ideals[#ideals + 1] = c.ideal_ms end
        if not seen[c.pair] then seen[c.pair] = true; pairs_[#pairs_ + 1] = c.pair end
      end
      table.sort(ratios); table.sort(setups); table.sort(ideals)
      local pairs_text = #pairs_ > 2 and (#pairs_ .. " pairs") or table.concat(pairs_, ",")
      print(line:format(m, pairs_text, #list, ("%.0f"):format(pick(setups, 0.5)), ("%.0f"):format(pick(setups, 0.9)),
        ("%.0f"):format(setups[#setups]), ideals[1] and ("%.0f"):format(pick(ideals, 0.5)) or "-",
        ratios[1] and ("%.2f"):format(pick(ratios, 0.5)) or "-"))
      rows[#rows + 1] = { method = m, pairs = pairs_, cases = list, median_setup_ms = pick(setups, 0.5),
        p90_setup_ms = pick(setups, 0.9), max_setup_ms = setups[#setups], median_ideal_ms = pick(ideals, 0.5),
        median_ratio = pick(ratios, 0.5) }
    end
  end
  if failures > 0 then print(("(%d runs did not connect and are left out of the figures)"):format(failures)) end
  recorded.suites.punch = rows
  recorded.suites.punch_failures = failures
end

local function main()
  parse_args()
  recorded.machine = { date = os.date("!%Y-%m-%d %H:%M UTC"), cpus = ncpu,
    cpu = (read_file("/proc/cpuinfo") or ""):match("model name%s*:%s*([^\n]+)"),
    kernel = capture("uname -r"):gsub("%s+$", ""), command = "lua5.4 bench/run.lua " .. table.concat(arg, " ") }
  local suites = { { "stun", stun_suite }, { "touch", touch_suite }, { "wire", wire_suite },
    { "registry", registry_suite },
    { "redis", redis_suite }, { "punch", punch_suite } }
  for _, s in ipairs(suites) do
    if in_suite(s[1]) then
      local ok, err = pcall(s[2])
      if not ok then print(s[1] .. ": failed: " .. tostring(err)) end
      print("")
    end
  end
  if opts.record then
    local f = assert(io.open(opts.record, "w"))
    f:write(json.encode(recorded), "\n")
    f:close()
  end
end

local ok, err = xpcall(main, debug.traceback)
stop_all()
os.execute("rm -rf " .. q(tmp))
if not ok then
  io.stderr:write("bench: ", tostring(err), "\n")
  os.exit(1)
end
