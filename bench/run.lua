--- `make bench`: STUN Binding throughput and latency over loopback, for
-- natpunch's rendezvous and for other servers, shown as ratios to a
-- baseline measured in the same run (see bench/README.md).
--
--   lua5.4 bench/run.lua [--json] [--duration S] [--rounds N] [--only NAME,...]
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

local opts = { json = false, duration = 1.5, rounds = 5, requests = 600000, sockets = 4, window = 32 }

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
    "usage: lua5.4 bench/run.lua [--json] [--duration S] [--rounds N] [--only NAME,...]\n")
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
    else usage("bad argument '" .. tostring(a) .. "'") end
    i = i + 1
  end
  if opts.duration <= 0 or opts.duration > 10 then usage("--duration must be in (0, 10]") end
  if opts.rounds < 1 or opts.rounds > 5 then usage("--rounds must be 1..5") end
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

local function main()
  parse_args()
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
end

local ok, err = xpcall(main, debug.traceback)
stop_all()
os.execute("rm -rf " .. q(tmp))
if not ok then
  io.stderr:write("bench: ", tostring(err), "\n")
  os.exit(1)
end
