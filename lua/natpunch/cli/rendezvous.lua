--- `natpunch rendezvous`: run a rendezvous server until interrupted.
local cli = require "natpunch.cli"

local OPTIONS = {
  { "listen", arg = "ADDR:PORT", type = "addr", default = "0.0.0.0:3478",
    help = "address to listen on; port 0 picks a free port" },
  { "ttl", arg = "S", type = "number", default = 30,
    help = "seconds a registration lives without a refresh" },
  { "max-peers", arg = "N", type = "integer", default = 10000, help = "registrations kept at most" },
  { "no-tcp", help = "no STUNT service (TCP) on the same address and port" },
  { "alternate", arg = "IP2[:PORT2]", type = "string",
    help = "second address: also an RFC 5780 discovery server (see stun-server)" },
  { "json", help = "print events as JSON, one object per line" },
}

local M = {}

M.summary = "run a rendezvous server that introduces peers to each other"

M.usage = table.concat({
  "Usage: natpunch rendezvous [--listen ADDR:PORT] [--ttl S] [--max-peers N] [--alternate IP2[:PORT2]]",
  "                           [--no-tcp] [--json]",
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
  cli.options_help(OPTIONS),
  "",
  "With --json, stdout carries one JSON object per line, and nothing else:",
  '  {"event":"listening","address":"127.0.0.1:3478"}      (always first)',
  '  {"event":"registered","peer":"alice","public":"IP:PORT","private":"IP:PORT,..."}',
  '  {"event":"introduced","from":"alice","to":"bob","nonce":"..."}',
  '  {"event":"expired","peer":"alice"}      (timed out or unregistered)',
  'TCP registrations and introductions carry "transport":"tcp"; also',
  '  {"event":"nat","peer":"alice","mapping":"preserving|sequential|random","delta":N,"predicted":"IP:PORT"}',
  '  {"event":"tcp_result","peer":"alice","with":"bob","result":"ok|failed","reason":"..."}',
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
  end
  return ev.event
end

function M.run(argv)
  local opts, rest = cli.parse(argv, OPTIONS)
  if not opts then return cli.usage_error("rendezvous", rest) end
  if opts.help then
    io.stdout:write(M.usage, "\n")
    return cli.OK
  end
  if #rest > 0 then return cli.usage_error("rendezvous", "unexpected argument '" .. rest[1] .. "'") end
  if opts.ttl <= 0 then return cli.usage_error("rendezvous", "--ttl must be positive") end
  if opts.alternate then
    local ok, err = require("natpunch.stunserver").parse_alternate(opts.alternate)
    if not ok then return cli.usage_error("rendezvous", "--" .. err) end
  end
  io.stdout:setvbuf("line")
  local out = cli.output(opts.json, human)
  return cli.run_loop("rendezvous", function(ctx)
    local server, err = ctx.natpunch.rendezvous{
      listen = opts.listen, ttl = opts.ttl, max_peers = opts.max_peers, alternate = opts.alternate,
      tcp = not opts.no_tcp,
      on_event = out.event,
    }
    if not server then
      io.stderr:write("natpunch rendezvous: cannot listen on ", opts.listen, ": ", tostring(err), "\n")
      return cli.FAIL
    end
    out.event({ event = "listening", address = server:address() })
    -- run until Ctrl-C (cli.run_loop ends the run) or SIGTERM
    ctx.natpunch.future():wait()
    return cli.OK
  end)
end

return M
