--- `natpunch peer`: register with a rendezvous server, then either wait to
-- be connected to (and echo what arrives), or connect to a peer by id,
-- exchange a message and/or a touch, and exit with the outcome.
local cli = require "natpunch.cli"

local DEFAULT_TIMEOUT = 10      -- seconds, connecting side
local MAX_REGISTER_WAIT = 5     -- seconds a registration waits for its server
local EXTRA_REPLY_WAIT = 0.5    -- seconds to collect further replies after the first

local SEND_FIRST, SEND_MAX = 0.2, 1   -- seconds between repeated --send datagrams (like ping)

local OPTIONS = {
  { "server", arg = "ADDR:PORT", type = "addr", multi = true, pin = true,
    help = "rendezvous server (IP or host name); with several, registers with all at once and "
      .. "connects through any live one; ADDR:PORT#KEY pins that server's public key (64 hex digits, "
      .. "printed by natpunch rendezvous)" },
  { "id", arg = "ID", type = "id", help = "this peer's id (" .. cli.check.ID_RULE .. ")" },
  { "connect", arg = "ID", type = "id", help = "connect to the peer registered as ID, then exit" },
  { "send", arg = "TEXT", type = "text",
    help = "send TEXT unreliably, repeated until an answer (at most " .. cli.check.TEXT_MAX .. " bytes)" },
  { "touch", arg = "TEXT", type = "text",
    help = "send TEXT reliably (acknowledged; at most " .. cli.check.TEXT_MAX .. " bytes)" },
  { "bind", arg = "ADDR:PORT", type = "addr", port_zero = true, help = "local address (default 0.0.0.0:0)" },
  { "dual-stack", help = "one socket for IPv4 and IPv6 ([::]:0 unless --bind [::]:PORT): "
      .. "candidates of both families" },
  { "each-interface", help = "a socket per interface address too, each with its mapping (through that "
      .. "network's NAT) as a candidate: punched from when the default route finds no path" },
  { "timeout", arg = "S", type = "number", positive = true, max = 86400,
    help = "give up after S seconds (default " .. DEFAULT_TIMEOUT .. " with --connect; "
      .. "when waiting: run until interrupted)" },
  { "no-echo", help = "when waiting: do not echo received messages back" },
  { "transport", arg = "T", help = "udp (default), tcp, auto (= tcp,udp: TCP first, then UDP) "
      .. "or an order such as udp,tcp" },
  { "stdio", help = "with --transport tcp: stdin to the peer, the peer to stdout (like nc); "
      .. "events go to stderr" },
  { "metrics", arg = "ADDR:PORT", type = "addr",
    help = "serve Prometheus metrics (punch outcomes, setup times, touches) at http://ADDR:PORT/metrics" },
  { "discover", help = "find the NAT type first (the server needs --alternate); registration carries it" },
  { "keepalive", arg = "auto", help = "refresh toward the server from a measured mapping lifetime" },
  { "keepalive-server", arg = "IP:PORT", type = "addr",
    help = "keepalive-daemon for --keepalive auto (default: the server's IP, port 3490)" },
  { "candidate", arg = "IP:PORT", type = "addr", multi = true,
    help = "also advertise this endpoint (a port forward, a VPN address); repeatable" },
  { "key", arg = "FILE", help = "load this peer's key seed from FILE (created if missing)" },
  { "server-key", arg = "HEX", help = "accept only servers with this public key (one key for all; see ADDR:PORT#KEY)" },
  { "secret", arg = "SECRET", help = "deployment secret: mint a registration token" },
  { "token", arg = "TOKEN", help = "registration token (expiry:id:hmac) minted by the operator" },
  { "allow", arg = "CLASS", multi = true,
    help = "also probe candidates of this address class (loopback, link-local, ...)" },
  { "no-encrypt", help = "send data and touches unencrypted (both sides see it in the introduction)" },
  { "methods", arg = "LIST",
    help = "traversal methods to try, in order (comma-separated: udp, predict, birthday, relay, tcp; "
      .. "default: udp, then predict or birthday when the introduction says a side is symmetric, "
      .. "and relay alongside them when a TURN server is known)" },
  { "turn", arg = "URL", help = "TURN server for the relay method: turn://USER:PASS@HOST:PORT" },
  { "json", help = "print events as JSON, one object per line" },
}

local M = {}

M.summary = "register as a peer; wait for peers, or connect to one by id"

M.usage = table.concat({
  "Usage: natpunch peer --server ADDR:PORT [--server ADDR:PORT ...] --id ID",
  "                     [--connect ID] [--send TEXT] [--touch TEXT]",
  "                     [--bind ADDR:PORT] [--dual-stack] [--each-interface] [--timeout S]",
  "                     [--no-echo] [--json]",
  "                     [--candidate IP:PORT ...] [--key FILE] [--server-key HEX]",
  "                     [--secret SECRET | --token TOKEN] [--no-encrypt]",
  "                     [--transport udp|tcp|auto|tcp,udp] [--stdio]",
  "                     [--discover] [--keepalive auto [--keepalive-server IP:PORT]]",
  "                     [--methods LIST] [--turn turn://USER:PASS@HOST:PORT] [-v|-q]",
  "",
  "Registers with the rendezvous server(s) under ID (with several: with all of",
  "them at once, each registration refreshed; a connect goes to the first live",
  "one and, after 0.5 s without an answer, to the next too), then:",
  "",
  "  without --connect: waits to be connected to, and prints what arrives.",
  "    Every message received is echoed back on the same session (a touch as",
  "    a touch, a send as a send) unless --no-echo.  --send/--touch TEXT are",
  "    sent to each peer as it connects.  Runs until interrupted, or for",
  "    --timeout S seconds (then exits 0).",
  "",
  "  with --connect ID: asks the server for an introduction to ID, punches a",
  "    direct UDP path, sends --send TEXT (unreliable) and touches --touch",
  "    TEXT (reliable), then waits for the answer.  --send is repeated, as",
  "    ping does (0.2 s, then up to 1 s apart), until an answer arrives, so",
  "    one lost datagram does not fail a working path.  Success (exit 0):",
  "    connected; with --touch, the touch was acknowledged; and with --send or",
  "    --touch, at least one message came back (the waiting side's echo) - all",
  "    within --timeout; the last event is then \"done\" (with how many",
  "    datagrams were sent).  Anything else exits 1 with a final \"failed\".",
  "",
  "  -v reports what the peer does while it works: servers tried, requests",
  "  retransmitted, the candidates it punches toward, which one answered.",
  "  -q prints only messages and the outcome.",
  "",
  "  --transport tcp punches a direct TCP connection instead (simultaneous",
  "    open through the server's STUNT service, same address and port); auto",
  "    tries TCP, then UDP ({\"event\":\"transport_failed\",...} in between).",
  "    Messages over TCP are framed; \"transport\" in \"connected\" says which won.",
  "  --stdio (TCP only): after connecting, stdin goes to the peer and what it",
  "    sends goes to stdout, byte-exact; at the end of stdin our side is",
  "    half-closed, and the command exits 0 once the peer's side has ended too.",
  "    The waiting side serves one peer.  Events go to stderr.",
  "",
  cli.options_help(OPTIONS),
  "",
  "With --json, stdout carries one JSON object per line, and nothing else:",
  '  {"event":"registered","public":"IP:PORT","local":"IP:PORT","server":"IP:PORT"}',
  '  {"event":"connected","peer":"ID","remote":"IP:PORT","path":"public|private|relay",'
    .. '"transport":"udp","method":"udp","setup_ms":N,"methods":"udp,birthday"}',
  "    (method: the one that won; methods: those tried, chosen from the introduction)",
  '  {"event":"message","peer":"ID","data":"...","kind":"data|touch"}',
  '  {"event":"touch_acked","id":N,"peer":"ID","rtt_ms":N}',
  '  {"event":"done","peer":"ID","sent":N,"received":N}      (last line on success)',
  '  {"event":"failed","peer":"ID","reason":"...","sent":N}  (last line on failure)',
  "\"registered\" comes once per server; \"connected\" has \"server\": the server that",
  "introduced the peers.  Also: server_failed (a server did not answer the first",
  "registration; the others go on), server_down / server_up (a server stopped",
  "answering / answers again; \"up\" counts the servers up), touch_failed, path_changed",
  "(a relayed session moved to a direct path: from, path, remote, method), and with",
  "-v: trying, retransmit,",
  "punching, answered, punch_failed.  Every event ends with \"time\":",
  "milliseconds since the command started.  Bytes that are not UTF-8 are escaped as",
  "\\u00XX in \"data\".  Without --json, control characters and escape",
  "sequences in what peers send are shown escaped (\\e, \\x07, \\u{202e}).",
  "With --metrics: metrics (where they are served).",
  "",
  "Exit codes: 0 success, 1 failure, 2 usage error, 130 interrupted.",
}, "\n")

local function human(ev)
  local e = ev.event
  if e == "registered" then
    return string.format("registered via %s: public %s, local %s", ev.server or "?", ev.public, ev["local"])
  elseif e == "server_failed" then
    return string.format("server %s failed: %s (%s)", ev.server, tostring(ev.reason),
      (ev.up or 0) > 0 and (ev.up .. " other server(s) up") or "no other server up")
  elseif e == "server_down" then
    return string.format("server %s is down: %s (%d server(s) up)", ev.server, tostring(ev.reason), ev.up or 0)
  elseif e == "server_up" then
    return string.format("server %s is up again (%d server(s) up)", ev.server, ev.up or 0)
  elseif e == "connected" then
    return string.format("connected to %s at %s (%s path, %s, %s, %d ms%s)", ev.peer, ev.remote, ev.path,
      ev.transport, tostring(ev.method), ev.setup_ms, ev.server and (", introduced by " .. ev.server) or "")
  elseif e == "path_changed" then
    return string.format("path to %s changed: %s -> %s at %s (%s)", ev.peer, ev.from, ev.path, ev.remote,
      tostring(ev.method))
  elseif e == "message" then
    return string.format("message from %s (%s): %s", ev.peer, ev.kind or "data", ev.data)
  elseif e == "touch_acked" then
    return string.format("touch %s acked by %s in %d ms", tostring(ev.id), ev.peer, ev.rtt_ms)
  elseif e == "touch_failed" then
    return string.format("touch %s to %s failed: %s", tostring(ev.id), ev.peer, tostring(ev.reason))
  elseif e == "transport_failed" then
    return string.format("%s failed: %s (trying the next transport)", ev.transport, tostring(ev.reason))
  elseif e == "closed" then
    return "connection to " .. tostring(ev.peer) .. " closed"
  elseif e == "metrics" then
    return "metrics at http://" .. ev.address .. "/metrics"
  elseif e == "failed" then
    return "failed: " .. tostring(ev.reason) .. (ev.peer and (" (peer " .. ev.peer .. ")") or "")
      .. (ev.sent and ev.sent > 0 and (", " .. ev.sent .. " datagram(s) sent") or "")
  elseif e == "done" then
    return string.format("done: %d datagram(s) sent to %s, %d message(s) received", ev.sent, ev.peer, ev.received)
  elseif e == "trying" then
    return "trying server " .. ev.server .. " (local candidates: " .. (ev.private ~= "" and ev.private or "none") .. ")"
  elseif e == "retransmit" then
    return string.format("no answer from %s yet: %s request sent again (attempt %d)", ev.server, ev.request, ev.attempt)
  elseif e == "interfaces" then
    return "sockets per interface: " .. (ev.candidates ~= "" and ev.candidates or "none")
  elseif e == "punching_interfaces" then
    return string.format("no path from the default route (%s): punching from %d interface socket(s)",
      tostring(ev.reason), ev.sockets or 0)
  elseif e == "punching" then
    return "punching toward " .. ev.peer .. ": " .. ev.candidates
  elseif e == "answered" then
    return string.format("%s answered at %s (%s candidate, rtt %s ms)", ev.peer, ev.remote, ev.kind,
      tostring(ev.rtt_ms))
  elseif e == "punch_failed" then
    return string.format("punching toward %s failed: %s (%d punch packets received)", ev.peer, ev.reason,
      ev.probes_received or 0)
  elseif e == "sent" then
    return string.format("sent datagram %d to %s", ev.count, ev.peer)
  elseif e == "nat" then
    return string.format("NAT: %s (mapping %s, filtering %s)", tostring(ev.type), tostring(ev.mapping),
      tostring(ev.filtering))
  elseif e == "keepalive" then
    return string.format("mapping lifetime %s s: refreshing every %s s", tostring(ev.mapping_lifetime_s),
      tostring(ev.refresh_s or "ttl/3"))
  end
  return e
end

local function check(opts, rest)
  if #rest > 0 then return "unexpected argument '" .. rest[1] .. "'" end
  if not opts.server then return "--server ADDR:PORT is required" end
  if not opts.id then return "--id ID is required" end
  if opts.timeout and opts.timeout <= 0 then return "--timeout must be positive" end
  local ok, order = pcall(require("natpunch.method.tcp").methods_for, opts.transport or "udp", 1)
  if not ok then return "--transport: " .. tostring(order):gsub("^peer: ", "") end
  if opts.stdio and (#order ~= 1 or order[1] ~= "tcp") then
    return "--stdio needs --transport tcp (there is no stream over UDP yet)"
  end
  if opts.stdio and (opts.send or opts.touch) then return "--stdio does not go with --send or --touch" end
  if opts.connect and opts.connect == opts.id then return "--connect names this peer's own id" end
  if opts.keepalive and opts.keepalive ~= "auto" then return "--keepalive takes 'auto'" end
  return nil
end

-- The connecting side: register, connect, send/touch, wait for the answer.
-- Returns nil on success, else the reason.
local function connect_and_exchange(natpunch, p, opts, state)
  state.stage = "registering"
  local ok, err = p:register()
  if not ok then return err end
  state.stage = "connecting to " .. opts.connect
  local s
  s, err = p:connect(opts.connect, math.max(0.1, state.left()))
  if not s then return err end
  if opts.send then
    state.stage = "sending"
    ok, err = s:send(opts.send)
    if not ok then return "send failed: " .. tostring(err) end
    state.sent = 1
    state.expected = state.expected + 1
    -- repeated until something comes back (the touch's echo counts too)
    natpunch.spawn(function()
      local gap = SEND_FIRST
      while state.received == 0 and not state.finished do
        natpunch.sleep(gap)
        if state.received > 0 or state.finished then break end
        if not s:send(opts.send) then break end
        state.sent = state.sent + 1
        if opts.verbose then state.out.event({ event = "sent", peer = opts.connect, count = state.sent }) end
        gap = math.min(gap * 2, SEND_MAX)
      end
    end)
  end
  if opts.touch then
    state.stage = "waiting for the touch acknowledgement"
    local acked = natpunch.future()
    local id, terr = s:touch(opts.touch, function(e, rtt) acked:set(e == nil, e, rtt) end)
    if not id then return "touch failed: " .. tostring(terr) end
    state.expected = state.expected + 1
    local good, e = acked:wait(math.max(0.001, state.left()))
    if good == nil then return "timeout after " .. opts.timeout .. " s waiting for the touch acknowledgement" end
    if not good then return "touch failed: " .. tostring(e) end
  end
  if state.expected > 0 then
    state.stage = "waiting for a reply from " .. opts.connect
    if state.received == 0 then
      local got = state.replies:wait(math.max(0.001, state.left()))
      if not got then
        return "timeout after " .. opts.timeout .. " s waiting for a reply from " .. opts.connect
          .. " (is it echoing? see --no-echo)"
      end
    end
    -- the rest of the echoes, briefly, so they are printed too
    local until_ms = natpunch.now() + math.min(EXTRA_REPLY_WAIT, state.left()) * 1000
    while state.received < state.expected and natpunch.now() < until_ms do
      natpunch.sleep(0.02)
    end
  end
  return nil
end

-- the human form of events, shared with `natpunch shell`
M.human = human

function M.run(argv)
  local opts, rest = cli.parse(argv, OPTIONS)
  if not opts then return cli.usage_error("peer", rest) end
  if opts.help then
    io.stdout:write(M.usage, "\n")
    return cli.OK
  end
  local bad = check(opts, rest)
  if bad then return cli.usage_error("peer", bad) end
  if opts.connect and not opts.timeout then opts.timeout = DEFAULT_TIMEOUT end
  if opts.stdio then
    -- stdout carries the data: events go to stderr
    io.stdout:setvbuf("full")
    local json = require "natpunch.json"
    local out = { last = nil }
    function out.event(ev)
      out.last = ev
      local line = opts.json and json.encode(ev, cli.KEY_ORDER) or human(ev)
      if line then io.stderr:write(line, "\n") end
      io.stderr:flush()
    end
    function out.log(...)
      io.stderr:write(...)
      io.stderr:write("\n")
    end
    return require("natpunch.cli.peer_stdio").run(opts, out)
  end
  io.stdout:setvbuf("line")
  local out = cli.output(opts.json, human, { quiet = opts.quiet })

  return cli.run_loop("peer", function(ctx)
    local natpunch = ctx.natpunch
    local started = natpunch.now()
    local state = { stage = "starting", expected = 0, received = 0, sent = 0, replies = natpunch.future(),
      out = out }
    function state.left()
      if not opts.timeout then return math.huge end
      return opts.timeout - (natpunch.now() - started) / 1000
    end
    local echo = not opts.no_echo and not opts.connect
    local on_event = out.event
    if opts.metrics then
      local metrics = require "natpunch.metrics"
      local set, feed = metrics.peer()
      local msrv, merr = metrics.serve(opts.metrics, function() return set:render() end)
      if not msrv then
        out.event({ event = "failed", reason = "cannot serve metrics on " .. opts.metrics .. ": " .. tostring(merr) })
        return cli.FAIL
      end
      on_event = function(ev) feed(ev); out.event(ev) end
      out.event({ event = "metrics", address = msrv:address() })
    end

    local function greet(s)
      if opts.send then s:send(opts.send) end
      if opts.touch then s:touch(opts.touch, function() end) end
    end

    local methods
    if opts.methods then
      methods = {}
      for name in opts.methods:gmatch("[^,]+") do methods[#methods + 1] = name end
    end
    local ok_new, p, err = pcall(natpunch.peer, {
      servers = opts.server, id = opts.id, bind = opts.bind, transport = opts.transport,
      dual_stack = opts.dual_stack, each_interface = opts.each_interface,
      discover = opts.discover, keepalive = opts.keepalive, keepalive_server = opts.keepalive_server,
      candidates = opts.candidate, key_file = opts.key, server_key = opts.server_key,
      secret = opts.secret, token = opts.token, allow = opts.allow,
      encrypt = not opts.no_encrypt,
      methods = methods, turn = opts.turn,
      -- with --timeout, registering (with every server at once) may use half of it
      register_timeout = math.min(MAX_REGISTER_WAIT, opts.timeout and opts.timeout / 2 or MAX_REGISTER_WAIT),
      connect_timeout = opts.timeout or DEFAULT_TIMEOUT,
      verbose = opts.verbose,
      -- connecting: the outcome is printed once, at the end, by fail()
      on_event = opts.connect and function(ev)
        if ev.event ~= "failed" then on_event(ev) end
      end or on_event,
      on_session = not opts.connect and greet or nil,
      on_message = function(s, data, kind)
        state.received = state.received + 1
        state.replies:set(true)
        if echo then
          if kind == "touch" then s:touch(data, function() end) else s:send(data) end
        end
      end,
    })
    if not ok_new then
      out.event({ event = "failed", reason = tostring(p):gsub("^.-:%d+: ", "") })
      return cli.FAIL
    end
    if not p then
      out.finish({ event = "failed", peer = opts.connect or opts.id,
        reason = "cannot bind " .. tostring(opts.bind) .. ": " .. tostring(err) })
      return cli.FAIL
    end

    local function fail(reason)
      state.finished = true
      out.finish({ event = "failed", peer = opts.connect or opts.id, reason = reason,
        sent = opts.send and state.sent or nil })
      natpunch.sleep(0.01)   -- out of the current callback before closing (see below)
      p:close()
      return cli.FAIL
    end

    if not opts.connect then
      local ok, rerr = p:register()
      if not ok then return fail(rerr) end
      out.log("natpunch peer: registered as '", opts.id, "'; waiting for peers",
        opts.timeout and (" for " .. opts.timeout .. " s") or " (Ctrl-C to stop)")
      if opts.timeout then natpunch.sleep(math.max(0, state.left())) else natpunch.future():wait() end
      p:close()
      return cli.OK
    end

    -- connecting side: the whole exchange is bounded by --timeout
    local result = natpunch.future()
    local task = natpunch.spawn(function()
      result:set(true, connect_and_exchange(natpunch, p, opts, state))
    end)
    local finished, reason = result:wait(math.max(0.001, state.left()))
    if not finished then
      task:cancel()
      return fail("timeout after " .. opts.timeout .. " s while " .. state.stage)
    end
    if reason then return fail(reason) end
    state.finished = true
    out.finish({ event = "done", peer = opts.connect, sent = state.sent, received = state.received })
    -- We may be inside the callback that delivered the last echo: let the
    -- loop send its acknowledgement before the socket goes, or the other
    -- side would retransmit that touch into a closed port and report it
    -- failed.
    natpunch.sleep(0.01)
    p:close()
    return cli.OK
  end, function(reason)
    if reason == "interrupted" and not opts.connect then return end   -- how a waiting peer stops
    out.finish({ event = "failed", peer = opts.connect or opts.id, reason = reason })
  end)
end

return M
