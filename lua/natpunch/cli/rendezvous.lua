--- `natpunch rendezvous`: run a rendezvous server until interrupted.
local cli = require "natpunch.cli"

local OPTIONS = {
  { "listen", arg = "ADDR:PORT", type = "addr", port_zero = true, default = "0.0.0.0:3478",
    help = "address to listen on; port 0 picks a free port" },
  { "ttl", arg = "S", type = "number", positive = true, max = 86400, default = 30,
    help = "seconds a registration lives without a refresh (at most 86400)" },
  { "max-peers", arg = "N", type = "integer", positive = true, max = 1000000, default = 10000,
    help = "registrations kept at most (1 to 1000000)" },
  { "no-tcp", help = "no STUNT service (TCP) on the same address and port" },
  { "alternate", arg = "IP2[:PORT2]", type = "string",
    help = "second address: also an RFC 5780 discovery server (see stun-server)" },
  { "redis", arg = "URL", type = "string",
    help = "share registrations and introductions with other servers through Redis (redis://IP:PORT)" },
  { "workers", arg = "N", type = "integer", default = 1,
    help = "run N server processes on the same port (SO_REUSEPORT) sharing the registry; needs --redis" },
  { "server-id", arg = "ID", type = "string", help = "this server's name in Redis (default: random)" },
  { "metrics", arg = "ADDR:PORT", type = "addr",
    help = "serve Prometheus metrics at http://ADDR:PORT/metrics (with --workers: the first process's)" },
  { "worker", arg = "I", type = "integer", help = "(internal) run as worker I of a --workers parent" },
  { "max-per-ip", arg = "N", type = "integer", default = 1024,
    help = "registrations one source IP may hold" },
  { "max-per-socket", arg = "N", type = "integer", default = 4,
    help = "registrations one source IP:PORT may hold" },
  { "intro-rate", arg = "N", type = "number", default = 5,
    help = "introductions per second per asking peer and per target (token buckets)" },
  { "intro-burst", arg = "N", type = "integer", default = 20, help = "burst of those buckets" },
  { "secret", arg = "SECRET", help = "deployment secret: peers need a token (expiry:id:hmac)" },
  { "key", arg = "FILE", help = "load the server's key seed from FILE (created if missing)" },
  { "stun-rate", arg = "N", type = "number",
    help = "answer at most N STUN requests per second per source IP (default: no limit)" },
  { "turn", arg = "HOST:PORT", type = "addr",
    help = "a TURN server (coturn use-auth-secret) whose REST-API credentials registered peers get" },
  { "turn-secret", arg = "SECRET", help = "the TURN server's static-auth-secret (with --turn)" },
  { "json", help = "print events as JSON, one object per line" },
}

local M = {}

M.summary = "run a rendezvous server that introduces peers to each other"

M.usage = table.concat({
  "Usage: natpunch rendezvous [--listen ADDR:PORT] [--ttl S] [--alternate IP2[:PORT2]]",
  "                           [--redis URL [--workers N]] [--metrics ADDR:PORT] [--json]",
  "                           [--max-peers N] [--max-per-ip N] [--max-per-socket N]",
  "                           [--intro-rate N] [--intro-burst N]",
  "                           [--secret SECRET] [--key FILE]",
  "                           [--stun-rate N] [--no-tcp]",
  "",
  "Runs a rendezvous server: peers register with an id, and when one asks to",
  "connect to another, both are introduced (each gets the other's public and",
  "private endpoints and a shared nonce) so they can punch a direct path.  The",
  "server never carries their data.  It also answers STUN Binding requests on",
  "the same port (with --alternate also RFC 5780's CHANGE-REQUEST and",
  "OTHER-ADDRESS, from three more sockets, as `natpunch stun-server` does),",
  "and accepts TCP there too (unless --no-tcp): the STUNT service, through",
  "which peers punch direct TCP connections (natpunch peer --transport tcp)",
  "and whose records `natpunch records` shows.  It runs until interrupted",
  "(Ctrl-C) or killed.",
  "",
  "With --redis, several servers (on one host or many) share one registry: a",
  "peer registered on one server can connect to a peer registered on another",
  "(each server sends the introduction to its own peer, coordinated through",
  "Redis pub/sub).  If Redis goes away, each server keeps serving its own",
  "peers, logs it, and publishes them again when Redis is back.  --workers N",
  "starts N-1 more processes bound to the same port with SO_REUSEPORT (the",
  "kernel spreads peers over them by address); they end with this one.",
  "",
  cli.options_help(OPTIONS),
  "",
  "With --json, stdout carries one JSON object per line, and nothing else:",
  '  {"event":"listening","address":"127.0.0.1:3478","key":HEX}   (always first; key: pin it',
  '                                                  with natpunch peer --server ADDR#KEY)',
  '  {"event":"registered","peer":"alice","public":"IP:PORT","private":"IP:PORT,..."}',
  '  {"event":"introduced","from":"alice","to":"bob","nonce":"..."}',
  '  {"event":"expired","peer":"alice"}      (timed out or unregistered)',
  'TCP registrations and introductions carry "transport":"tcp"; also',
  '  {"event":"nat","peer":"alice","mapping":"preserving|sequential|random","delta":N,"predicted":"IP:PORT"}',
  '  {"event":"tcp_result","peer":"alice","with":"bob","result":"ok|failed","reason":"..."}',
  '  {"event":"log","message":"redis down (...): serving local peers only"}',
  '  {"event":"worker","worker":2,"address":"127.0.0.1:3478"}   (with --workers)',
  '  {"event":"metrics","address":"127.0.0.1:9100"}   (with --metrics, right after listening)',
  "",
  "Exit codes: 130 after Ctrl-C, 1 if the address cannot be bound, 2 usage error.",
}, "\n")

-- Human-readable form of the server's events.
local function human(ev)
  if ev.event == "listening" then
    return "listening on " .. ev.address
  elseif ev.event == "registered" then
    local priv = (ev.private and ev.private ~= "") and (" (private " .. ev.private .. ")") or ""
    return "registered " .. ev.peer .. " at " .. ev.public .. priv
  elseif ev.event == "introduced" then
    return "introduced " .. ev.from .. " -> " .. ev.to
  elseif ev.event == "expired" then
    return "expired " .. ev.peer
  elseif ev.event == "nat" then
    return ("TCP NAT of %s: %s, next port predicted %s"):format(ev.peer, ev.mapping, tostring(ev.predicted))
  elseif ev.event == "tcp_result" then
    return ("TCP %s -> %s: %s%s"):format(ev.peer, ev.with, ev.result, ev.reason and (" (" .. ev.reason .. ")") or "")
  elseif ev.event == "log" then
    return ev.message
  elseif ev.event == "metrics" then
    return "metrics at http://" .. ev.address .. "/metrics"
  elseif ev.event == "worker" then
    return "worker " .. ev.worker .. " listening on " .. ev.address
  end
  return ev.event
end

-- the human form of events, shared with `natpunch shell`
M.human = human

function M.run(argv)
  local opts, rest = cli.parse(argv, OPTIONS)
  if not opts then return cli.usage_error("rendezvous", rest) end
  if opts.help then
    io.stdout:write(M.usage, "\n")
    return cli.OK
  end
  if #rest > 0 then return cli.usage_error("rendezvous", "unexpected argument '" .. rest[1] .. "'") end
  if opts.stun_rate and opts.stun_rate <= 0 then
    return cli.usage_error("rendezvous", "--stun-rate must be positive")
  end
  if opts.alternate then
    local ok, err = require("natpunch.stunserver").parse_alternate(opts.alternate)
    if not ok then return cli.usage_error("rendezvous", "--" .. err) end
  end
  if opts.workers < 1 or opts.workers > 64 then return cli.usage_error("rendezvous", "--workers must be 1..64") end
  if opts.workers > 1 and not opts.redis then
    return cli.usage_error("rendezvous", "--workers needs --redis (the workers share the registry through it)")
  end
  if opts.redis then
    local ok, why = require("natpunch.registry_redis").parse_url(opts.redis)
    if not ok then return cli.usage_error("rendezvous", "--redis: " .. why) end
  end
  io.stdout:setvbuf("line")
  local out = cli.output(opts.json, human, { quiet = opts.quiet, quiet_keep = { "listening" } })
  local event = out.event
  if opts.worker then
    event = function(ev) ev.worker = opts.worker; out.event(ev) end
  end
  local children = {}
  local code = cli.run_loop("rendezvous", function(ctx)
    local server, err = ctx.natpunch.rendezvous{
      listen = opts.listen, ttl = opts.ttl, max_peers = opts.max_peers, alternate = opts.alternate,
      max_per_ip = opts.max_per_ip, max_per_socket = opts.max_per_socket,
      intro_rate = opts.intro_rate, intro_burst = opts.intro_burst, secret = opts.secret, key_file = opts.key,
      stun_rate = opts.stun_rate, turn = opts.turn, turn_secret = opts.turn_secret,
      on_event = event, redis = opts.redis, server_id = opts.server_id,
      reuseport = (opts.workers > 1 or opts.worker) and true or nil,
      -- the STUNT registry is per process: no TCP service behind --workers
      tcp = not opts.no_tcp and not (opts.workers > 1 or opts.worker),
    }
    if not server then
      io.stderr:write("natpunch rendezvous: cannot listen on ", opts.listen, ": ", tostring(err), "\n")
      return cli.FAIL
    end
    local address = server:address()
    if opts.worker then
      event({ event = "worker", address = address })
      -- a worker lives as long as its parent: its stdin is a pipe from it
      local stdin = ctx.natpunch.core.stdin()
      local gone = ctx.natpunch.future()
      if stdin then
        stdin:read_start(function(_, chunk) if not chunk then gone:set(true) end end)
      end
      gone:wait()
      if stdin then stdin:close() end
      server:close()
      return cli.OK
    end
    event({ event = "listening", address = address, key = server:key(),
      workers = opts.workers > 1 and opts.workers or nil })
    out.log("natpunch rendezvous: server key ", server:key(), " (peers pin it: natpunch peer --server ",
      address, "#", server:key(), ")")
    if opts.metrics then
      local msrv, merr = require("natpunch.metrics").serve(opts.metrics, function()
        return require("natpunch.metrics").rendezvous(server)
      end)
      if not msrv then
        io.stderr:write("natpunch rendezvous: cannot serve metrics on ", opts.metrics, ": ", tostring(merr), "\n")
        server:close()
        return cli.FAIL
      end
      event({ event = "metrics", address = msrv:address() })
    end
    for i = 2, opts.workers do
      children[#children + 1] = M.spawn_worker(opts, address, i)
    end
    -- run until Ctrl-C (cli.run_loop ends the run) or SIGTERM
    ctx.natpunch.future():wait()
    return cli.OK
  end)
  for _, child in ipairs(children) do child:close() end   -- EOF on its stdin: it stops
  return code
end

--- Start worker i of a --workers run: the same command, bound to the same
-- address with SO_REUSEPORT; its stdin is a pipe from this process.
function M.spawn_worker(opts, address, i)
  local q = function(w) return "'" .. tostring(w):gsub("'", "'\\''") .. "'" end
  local argv = { q(arg and arg[-1] or "lua5.4"), q(arg and arg[0] or "natpunch"), "rendezvous",
    "--listen", q(address), "--ttl", q(opts.ttl), "--max-peers", q(opts.max_peers),
    "--redis", q(opts.redis), "--worker", q(i) }
  if opts.json then argv[#argv + 1] = "--json" end
  -- the security options too (a worker has its own key and cookie secret:
  -- the kernel sends one client's datagrams to one worker)
  for _, o in ipairs({ { "--max-per-ip", opts.max_per_ip }, { "--max-per-socket", opts.max_per_socket },
      { "--intro-rate", opts.intro_rate }, { "--intro-burst", opts.intro_burst },
      { "--secret", opts.secret }, { "--stun-rate", opts.stun_rate },
      { "--turn", opts.turn }, { "--turn-secret", opts.turn_secret } }) do
    if o[2] ~= nil then argv[#argv + 1] = o[1]; argv[#argv + 1] = q(o[2]) end
  end
  return assert(io.popen(table.concat(argv, " "), "w"))
end

return M
