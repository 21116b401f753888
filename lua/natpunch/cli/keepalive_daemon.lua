--- `natpunch keepalive-daemon`: the public side of the keepalive experiment.
local cli = require "natpunch.cli"

local OPTIONS = {
  { "listen", arg = "ADDR:PORT", type = "addr", default = "0.0.0.0:3490",
    help = "signal port; port 0 picks free ports" },
  { "probe-port", arg = "PORT", type = "integer", help = "probe port (default PORT+1)" },
  { "json", help = "print events as JSON, one object per line" },
}

local M = {}

M.summary = "run the daemon that probes NAT mappings for `natpunch keepalive`"

M.usage = table.concat({
  "Usage: natpunch keepalive-daemon [--listen ADDR:PORT] [--probe-port PORT] [--json]",
  "",
  "The public side of the keepalive experiment: clients behind a NAT open",
  "mappings toward the probe port and ask, over the signal port, to have each",
  "probed after some delay.  It probes only the address that opened a mapping,",
  "for a client at that same IP, never sends more than it received, and keeps",
  "at most 4096 probes pending.  Runs until interrupted.",
  "",
  cli.options_help(OPTIONS),
  "",
  "With --json:",
  '  {"event":"listening","address":"IP:PORT","probe":"IP:PORT+1"}',
  "",
  "Exit codes: 130 after Ctrl-C, 1 if an address cannot be bound, 2 usage error.",
}, "\n")

function M.run(argv)
  local opts, rest = cli.parse(argv, OPTIONS)
  if not opts then return cli.usage_error("keepalive-daemon", rest) end
  if opts.help then
    io.stdout:write(M.usage, "\n")
    return cli.OK
  end
  if #rest > 0 then return cli.usage_error("keepalive-daemon", "unexpected argument '" .. rest[1] .. "'") end
  if opts.probe_port and (opts.probe_port < 1 or opts.probe_port > 65535) then
    return cli.usage_error("keepalive-daemon", "--probe-port must be 1..65535")
  end
  io.stdout:setvbuf("line")
  local out = cli.output(opts.json, function(ev)
    return ev.event == "listening" and ("signal port " .. ev.address .. ", probe port " .. ev.probe) or nil
  end)
  return cli.run_loop("keepalive-daemon", function(ctx)
    local d, err = ctx.natpunch.keepalive.daemon{ listen = opts.listen, probe_port = opts.probe_port }
    if not d then
      io.stderr:write("natpunch keepalive-daemon: cannot listen on ", opts.listen, ": ", tostring(err), "\n")
      return cli.FAIL
    end
    out.event({ event = "listening", address = d:address(), probe = d:probe_address() })
    ctx.natpunch.future():wait()
    return cli.OK
  end)
end

return M
