--- Scale test of the shared registry, bounded and on loopback only: one
-- redis-server (started here on a free port with a temporary directory,
-- always killed at the end), S `natpunch rendezvous --redis` processes, N
-- simulated registrations spread over them, then K introductions, each
-- between peers registered on two different servers.  Prints what it
-- measured: registrations/s, introduction latency (from the connect request
-- to the introduction reaching the peer on the other server) p50/p99, and
-- memory per peer in Redis and in each rendezvous process.
--
--   lua5.4 bench/redis_scale.lua [--registrations N] [--introductions K] [--servers S] [--json]
--
-- Simulated peers are UDP sockets of this process: each registers many ids
-- (one server record per id, as if from as many peers); connecting peers
-- have a socket of their own; 20 of them connect at the same time, one
-- request each in flight (SCALE_CONNECTORS=N changes that), so the latency
-- includes the queueing of 20 concurrent requests.  Everything is bounded
-- in count and time.
local root = dofile((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/../lua/natpunch/checkout.lua")

local core = require "natpunch.core"
local msg = require "natpunch.msg"
local auth = require "natpunch.auth"
local json = require "natpunch.json"

local opts = { registrations = 100000, introductions = 10000, servers = 3, json = false, sockets = 200,
  connectors = tonumber(os.getenv("SCALE_CONNECTORS")) or 20, window = 256, limit = 240 }

local function usage(text)
  io.stderr:write("bench/redis_scale.lua: ", text, "\n",
    "usage: lua5.4 bench/redis_scale.lua [--registrations N] [--introductions K] [--servers S] [--json]\n")
  os.exit(2)
end

do
  local i = 1
  while i <= #arg do
    local a, v = arg[i], tonumber(arg[i + 1])
    if a == "--json" then opts.json = true
    elseif a == "--registrations" and v and v >= 1 and v <= 1000000 then opts.registrations = v; i = i + 1
    elseif a == "--introductions" and v and v >= 0 and v <= 100000 then opts.introductions = v; i = i + 1
    elseif a == "--servers" and v and v >= 2 and v <= 8 then opts.servers = v; i = i + 1
    else usage("bad argument '" .. tostring(a) .. "'") end
    i = i + 1
  end
end

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
-- Under `make sanitize` this process has the sanitizer runtime preloaded:
-- system tools must not inherit it (LeakSanitizer aborts them over their
-- own leaks); the rendezvous processes get it back explicitly.
local PRELOAD = os.getenv("LD_PRELOAD")
if PRELOAD == "" then PRELOAD = nil end
local function plain(cmd) return PRELOAD and ("env -u LD_PRELOAD sh -c " .. q(cmd)) or cmd end
local function capture(cmd)
  local p = assert(io.popen(plain(cmd), "r"))
  local out = p:read("a")
  p:close()
  return out
end
local function read_file(path)
  local f = io.open(path, "r")
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end
local function sleep(s) os.execute(plain("sleep " .. s)) end
local function free_port(kind)
  local h = kind == "tcp" and core.tcp() or core.udp()
  assert(h:bind("127.0.0.1", 0))
  local _, port = h:getsockname()
  h:close()
  core.run("nowait")
  return port
end
local function rss_kb(pid)
  return tonumber(read_file("/proc/" .. pid .. "/status"):match("VmRSS:%s*(%d+)")) or 0
end

local tmp = capture("mktemp -d /tmp/natpunch-scale.XXXXXX"):gsub("%s+$", "")
assert(tmp:match("^/tmp/natpunch%-scale%."), "mktemp failed")
local procs = {}      -- {pid=..., name=...}

local function spawn(name, cmd)
  local log = tmp .. "/" .. name .. ".log"
  assert(os.execute(plain("(" .. cmd .. ") > " .. q(log) .. " 2>&1 & echo $! > " .. q(tmp .. "/" .. name .. ".pid"))))
  local p = { name = name, log = log, pid = tonumber(read_file(tmp .. "/" .. name .. ".pid"):match("%d+")) }
  procs[#procs + 1] = p
  return p
end

local function kill_all()
  for _, p in ipairs(procs) do
    if p.pid then os.execute("kill -KILL " .. p.pid .. " 2>/dev/null") end
    if p.real_pid then os.execute("kill -KILL " .. p.real_pid .. " 2>/dev/null") end
  end
  os.execute(plain("rm -rf " .. q(tmp)))
end

local function redis_cli(port, args)
  return capture("env -u LD_PRELOAD redis-cli -p " .. port .. " " .. args .. " 2>/dev/null")
end

--------------------------------------------------------------- the load

local function percentile(list, p)
  if #list == 0 then return nil end
  table.sort(list)
  return list[math.max(1, math.ceil(#list * p))]
end

local function run_load(servers)
  local out = {}
  local N, K = opts.registrations, opts.introductions
  local S = #servers
  local bulk, conns = {}, {}
  local pending, replies = {}, 0          -- tx -> {sock, server, body, sent, tries}
  local sent_total, resent = 0, 0
  local intro_sent, intro_seen, intro_reply = {}, {}, {}   -- tx -> ms; nonce -> ms; tx -> nonce
  local function server_of(i) return servers[(i - 1) % S + 1] end

  -- The authenticated protocol (docs/SECURITY.md): every simulated id
  -- shares one key pair; a first registration from a socket gets a cookie
  -- from that server, then every request is MACed under the key shared
  -- with that server, with a new sequence number on every transmission.
  local kp = auth.keypair()
  local seqf = auth.sequence()
  local srv_keys, cookies = {}, {}
  local send
  local function body_of(p)
    local f = {}
    for k, v in pairs(p.fields) do f[k] = v end
    if f.t == "register" then
      f.pk = kp.pk
      f.cookie = cookies[p.sock] and cookies[p.sock][p.server]
    end
    local key = srv_keys[p.server]
    if key then auth.seal(key, "p", f, seqf()) end
    return msg.encode(f, f.t == "connect" and msg.CONNECT_PAD or msg.MIN_REQUEST)
  end
  local function on_cookie(p, m)
    srv_keys[p.server] = srv_keys[p.server] or assert(auth.shared(kp, m.key, "natpunch-control"))
    cookies[p.sock] = cookies[p.sock] or {}
    cookies[p.sock][p.server] = m.cookie
    send(p)
  end

  local function on_reply(_, data, _, _, kind)
    if kind ~= "control" then return end
    local m = msg.decode(data)
    if not m then return end
    local now = core.hrtime() / 1e6
    if m.t == "introduce" and m.role == "accept" then
      if m.nonce and not intro_seen[m.nonce] then intro_seen[m.nonce] = now end
      return
    end
    local p = m.tx and pending[m.tx]
    if not p then return end
    if m.t == "cookie" then return on_cookie(p, m) end
    pending[m.tx] = nil
    replies = replies + 1
    if m.t == "introduce" then intro_reply[m.tx] = m.nonce end
    if p.done then p.done(m) end
  end

  for i = 1, opts.sockets do
    local u = core.udp()
    assert(u:bind("127.0.0.1", 0))
    u:recv_start(on_reply)
    bulk[i] = u
  end

  -- Registrations: a window of outstanding requests, resent after 1 s.
  local next_id, outstanding, failed, reg_errors = 1, 0, 0, {}
  local t0 = core.hrtime()
  send = function(p)
    p.sent = core.hrtime() / 1e6
    p.tries = p.tries + 1
    p.sock:send(p.server.ip, p.server.port, body_of(p), "control")
    sent_total = sent_total + 1
  end
  local function fill()
    while outstanding < opts.window and next_id <= N do
      local i = next_id
      next_id = next_id + 1
      local tx = "r" .. i
      local p = { sock = bulk[(i - 1) % #bulk + 1], server = server_of(i), tries = 0,
        fields = { t = "register", id = "peer" .. i, tx = tx } }
      -- an error reply is an answer, not a registration: counted apart
      p.done = function(m)
        outstanding = outstanding - 1
        if m.t ~= "registered" then
          failed = failed + 1
          reg_errors[m.reason or m.t] = (reg_errors[m.reason or m.t] or 0) + 1
        end
      end
      pending[tx] = p
      outstanding = outstanding + 1
      send(p)
    end
  end
  local retry = core.timer()
  retry:start(200, 200, function()
    local now = core.hrtime() / 1e6
    for tx, p in pairs(pending) do
      if now - p.sent > 1000 then
        if p.tries >= 5 then
          pending[tx] = nil
          outstanding = outstanding - 1
          failed = failed + 1
        else
          resent = resent + 1
          send(p)
        end
      end
    end
  end)
  local deadline = core.now() + opts.limit * 1000
  fill()
  while (next_id <= N or outstanding > 0) and core.now() < deadline do
    core.run("once")
    fill()
  end
  local reg_s = (core.hrtime() - t0) / 1e9
  out.registrations = N - failed - (N - next_id + 1)
  out.registration_failures = failed
  out.registration_errors = reg_errors
  out.registration_seconds = reg_s
  out.registrations_per_s = out.registrations / reg_s
  out.resent = resent

  -- Introductions: connectors registered on each server, each connecting
  -- to targets registered on another server, one request at a time each.
  for j = 1, opts.connectors do
    local u = core.udp()
    assert(u:bind("127.0.0.1", 0))
    u:recv_start(on_reply)
    conns[j] = { sock = u, server = server_of(j), id = "conn" .. j }
  end
  for j, c in ipairs(conns) do
    local tx = "c" .. j
    local p = { sock = c.sock, server = c.server, tries = 0,
      fields = { t = "register", id = c.id, tx = tx } }
    pending[tx] = p
    send(p)
  end
  deadline = core.now() + 10000
  while next(pending) and core.now() < deadline do core.run("once") end
  -- the shared registry is written asynchronously: let Redis catch up
  local settle = core.timer()
  local settled = false
  settle:start(300, 0, function() settled = true end)
  while not settled do core.run("once") end
  settle:close()

  local made, intro_failed, errors = 0, 0, {}
  local t1 = core.hrtime()
  local function next_connect(j)
    if made >= K then return end
    made = made + 1
    local c = conns[j]
    -- a target registered on another server than c's: peer ids are spread
    -- round robin, so id i lives on server (i-1) % S + 1
    local k = made * 7919 % N + 1
    if server_of(k) == c.server then k = k % N + 1 end
    local tx = "i" .. made
    local p = { sock = c.sock, server = c.server, tries = 0,
      fields = { t = "connect", id = c.id, target = "peer" .. k, tx = tx } }
    p.done = function(m)
      if m.t ~= "introduce" then
        intro_failed = intro_failed + 1
        errors[m.reason or m.t] = (errors[m.reason or m.t] or 0) + 1
      end
      next_connect(j)
    end
    pending[tx] = p
    intro_sent[tx] = core.hrtime() / 1e6
    send(p)
  end
  for j = 1, #conns do next_connect(j) end
  deadline = core.now() + opts.limit * 1000
  while (made < K or next(pending)) and core.now() < deadline do
    core.run("once")
    -- a connect whose reply was lost for good: count it and go on
    for tx, p in pairs(pending) do
      if p.tries >= 5 then pending[tx] = nil; intro_failed = intro_failed + 1 end
    end
  end
  local intro_s = (core.hrtime() - t1) / 1e9
  -- the last introductions to the other servers' peers are on their way
  settle = core.timer()
  settled = false
  settle:start(500, 0, function() settled = true end)
  while not settled do core.run("once") end
  settle:close()
  local lat, delivered = {}, 0
  for tx, nonce in pairs(intro_reply) do
    local seen = intro_seen[nonce]
    if seen then
      delivered = delivered + 1
      lat[#lat + 1] = seen - intro_sent[tx]
    end
  end
  out.introductions = made
  out.introductions_answered = made - intro_failed
  out.introductions_delivered = delivered
  out.introduction_errors = errors
  out.introductions_per_s = made / intro_s
  out.intro_p50_ms = percentile(lat, 0.5)
  out.intro_p99_ms = percentile(lat, 0.99)
  retry:close()
  for _, u in ipairs(bulk) do u:close() end
  for _, c in ipairs(conns) do c.sock:close() end
  core.run("nowait")
  return out
end

--------------------------------------------------------------- main

local function main()
  if not os.execute(plain("command -v redis-server >/dev/null 2>&1")) then error("redis-server is not installed", 0) end
  local rport = free_port("tcp")
  local redis = spawn("redis", ("exec env -u LD_PRELOAD timeout -s KILL %d redis-server --bind 127.0.0.1 "
    .. "--port %d --dir %s --save '' --appendonly no --protected-mode no --pidfile %s/redis.real.pid")
    :format(opts.limit + 60, rport, q(tmp), q(tmp)))
  for _ = 1, 100 do
    if redis_cli(rport, "ping"):match("PONG") then break end
    sleep(0.05)
  end
  redis.real_pid = tonumber(read_file(tmp .. "/redis.real.pid"):match("%d+"))
  local mem0 = tonumber(redis_cli(rport, "info memory"):match("used_memory:(%d+)")) or 0
  local servers = {}
  for s = 1, opts.servers do
    local cli = os.getenv("NATPUNCH_CLI") or ("lua5.4 " .. q(root .. "/bin/natpunch"))
    local env = PRELOAD and ("env LD_PRELOAD=" .. q(PRELOAD) .. " ") or ""
    local p = spawn("rv" .. s, ("exec " .. env .. "timeout -s KILL %d %s rendezvous --listen 127.0.0.1:0 --redis "
      .. "redis://127.0.0.1:%d --server-id s%d --max-peers %d --max-per-socket %d --max-per-ip %d "
      .. "--intro-rate 1e6 --intro-burst 1000000 --ttl 600 --json")
      :format(opts.limit + 60, cli, rport, s, opts.registrations + 1000, opts.registrations + 1000,
        opts.registrations + 1000))
    servers[s] = p
  end
  for _, p in ipairs(servers) do
    for _ = 1, 200 do
      local addr = read_file(p.log):match('"event":"listening","address":"([^"]+)"')
      if addr and read_file(p.log):find("redis up", 1, true) then
        p.ip, p.port = addr:match("^(.-):(%d+)$")
        p.port = tonumber(p.port)
        break
      end
      sleep(0.05)
    end
    if not p.port then error(p.name .. " did not start: " .. read_file(p.log):sub(-400), 0) end
    -- `timeout` execs nothing: the server is its child
    p.real_pid = tonumber(capture("pgrep -P " .. p.pid):match("%d+")) or p.pid
    p.rss0 = rss_kb(p.real_pid)
  end
  local r = run_load(servers)
  r.servers = opts.servers
  r.redis_keys = tonumber(redis_cli(rport, "dbsize"):match("%d+"))
  local mem1 = tonumber(redis_cli(rport, "info memory"):match("used_memory:(%d+)")) or 0
  r.redis_bytes_per_peer = r.redis_keys and r.redis_keys > 0 and (mem1 - mem0) / r.redis_keys or nil
  r.process_bytes_per_peer = {}
  local per_server = math.max(1, r.registrations // opts.servers)
  for s, p in ipairs(servers) do
    r.process_bytes_per_peer[s] = (rss_kb(p.real_pid) - p.rss0) * 1024 / per_server
  end
  return r
end

local ok, res = xpcall(main, debug.traceback)
kill_all()
if not ok then
  io.stderr:write("redis_scale: ", tostring(res), "\n")
  os.exit(1)
end
if opts.json then
  print(json.encode(res))
else
  print(("%d servers + redis-server: %d registrations in %.2f s (%.0f/s, %d resent, %d failed)"):format(
    res.servers, res.registrations, res.registration_seconds, res.registrations_per_s, res.resent,
    res.registration_failures))
  print(("%d cross-server introductions (%.0f/s): %d answered, %d delivered; latency p50 %.2f ms, p99 %.2f ms")
    :format(res.introductions, res.introductions_per_s, res.introductions_answered, res.introductions_delivered,
      res.intro_p50_ms or -1, res.intro_p99_ms or -1))
  local per = {}
  for s, b in ipairs(res.process_bytes_per_peer) do per[s] = ("%.0f"):format(b) end
  print(("memory per peer: Redis %.0f B (%d keys); rendezvous processes (RSS) %s B"):format(
    res.redis_bytes_per_peer or -1, res.redis_keys or 0, table.concat(per, ", ")))
end
