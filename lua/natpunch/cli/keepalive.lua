--- `natpunch keepalive`: measure how long the NAT keeps an idle UDP mapping.
local cli = require "natpunch.cli"

local OPTIONS = {
  { "server", arg = "IP:PORT", type = "addr", help = "the keepalive daemon's signal port" },
  { "probe-port", arg = "PORT", type = "integer", help = "the daemon's probe port (default PORT+1)" },
  { "max", arg = "S", type = "number", default = 120, help = "longest delay tried (s)" },
  { "min", arg = "S", type = "number", default = 1, help = "shortest delay tried (s)" },
  { "refresh", help = "then test whether outbound / inbound traffic refreshes a mapping (1.3 lifetimes more)" },
  { "plot", arg = "FILE.svg", type = "string", help = "draw delay -> survived/expired with the estimate" },
  { "json", help = "print the result as one JSON object" },
}

local M = {}

M.summary = "measure the NAT's UDP mapping lifetime against a keepalive-daemon"

M.usage = table.concat({
  "Usage: natpunch keepalive --server IP:PORT [--max S] [--refresh] [--plot FILE.svg] [--json]",
  "",
  "Opens many mappings toward the daemon's probe port at once and has the daemon",
  "probe each after a different delay (0.5 s apart, then 5% apart, up to --max);",
  "the first probe that no longer gets through ends the run.  The lifetime is",
  "found to 5% (or 1 s) in about the lifetime itself.  On a terminal, progress",
  "goes to stderr.",
  "",
  cli.options_help(OPTIONS),
  "",
  "With --json, one line:",
  '  {"event":"result","mapping_lifetime_s":20.2,"lower_s":20,"upper_s":20.5,',
  '   "elapsed_s":21.6,"probes":[{"delay_s":1,"survived":true},...],',
  '   "refresh":{"outbound":true,"inbound":true,...}}     (refresh with --refresh)',
  "mapping_lifetime_s is absent when every probe survived (the lifetime is above",
  "--max: lower_s says so).",
  "",
  "Exit codes: 0 result, 1 failure (no daemon), 2 usage error.",
}, "\n")

local function is_tty(fd)
  return os.execute("test -t " .. fd) == true
end

local function human(r)
  local lines = {}
  if r.mapping_lifetime_s then
    lines[1] = ("NAT mapping lifetime: %.1f s (survived %.1f s, expired %.1f s; %d mappings, run %.1f s)")
      :format(r.mapping_lifetime_s, r.lower_s, r.upper_s, r.mappings, r.elapsed_s)
  else
    lines[1] = ("NAT mapping lifetime: above %.1f s (every probe survived; try a larger --max)"):format(r.lower_s)
  end
  if r.refresh then
    lines[#lines + 1] = ("Refresh: outbound traffic %s the mapping, inbound traffic %s it (control %s)")
      :format(r.refresh.outbound and "refreshes" or "does not refresh",
        r.refresh.inbound and "refreshes" or "does not refresh",
        r.refresh.control_expired and "expired as it should" or "survived: results unreliable")
  end
  return table.concat(lines, "\n")
end

function M.run(argv)
  local opts, rest = cli.parse(argv, OPTIONS)
  if not opts then return cli.usage_error("keepalive", rest) end
  if opts.help then
    io.stdout:write(M.usage, "\n")
    return cli.OK
  end
  if #rest > 0 then return cli.usage_error("keepalive", "unexpected argument '" .. rest[1] .. "'") end
  if not opts.server then return cli.usage_error("keepalive", "--server IP:PORT is required") end
  if opts.min <= 0 or opts.max < opts.min or opts.max > 3600 then
    return cli.usage_error("keepalive", "need 0 < --min <= --max <= 3600")
  end
  local tty = is_tty(2)
  local out = cli.output(opts.json, function(ev) return ev.event == "result" and human(ev) or nil end)
  return cli.run_loop("keepalive", function(ctx)
    local ka = ctx.natpunch.keepalive
    local r, err = ka{ server = opts.server, probe_port = opts.probe_port, min = opts.min, max = opts.max,
      refresh = opts.refresh,
      on_progress = tty and function(p)
        io.stderr:write(("\r%5.0f s elapsed, %3d probes outstanding, lifetime in [%.1f, %s] s   ")
          :format(p.elapsed_s, p.outstanding, p.lower_s, p.upper_s and ("%.1f"):format(p.upper_s) or "?"))
      end or nil }
    if tty then io.stderr:write("\n") end
    if not r then
      out.event({ event = "failed", reason = tostring(err) })
      return cli.FAIL
    end
    if opts.plot then
      local f, ferr = io.open(opts.plot, "w")
      if not f then
        io.stderr:write("natpunch keepalive: cannot write ", opts.plot, ": ", tostring(ferr), "\n")
      else
        f:write(ka.svg(r))
        f:close()
      end
    end
    r.event = "result"
    r.probes = require("natpunch.json").array(r.probes)
    out.event(r)
    return cli.OK
  end)
end

return M
