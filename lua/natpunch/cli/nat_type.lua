--- `natpunch nat-type`: RFC 5780 NAT behaviour discovery against a server.
local cli = require "natpunch.cli"

local OPTIONS = {
  { "server", arg = "IP:PORT", type = "addr", help = "an RFC 5780 server (natpunch stun-server --alternate, coturn)" },
  { "bind", arg = "IP", type = "string", help = "local address of the test sockets (default any)" },
  { "no-hairpin", help = "skip the hairpinning test" },
  { "json", help = "print the result as one JSON object" },
}

local M = {}

M.summary = "find the NAT's mapping and filtering behaviour (RFC 5780) and its classic type"

M.usage = table.concat({
  "Usage: natpunch nat-type --server IP:PORT [--json]",
  "",
  "Runs the RFC 5780 tests against a server with two addresses (natpunch",
  "stun-server --alternate, coturn's turnserver -L IP1 -L IP2): mapping and",
  "filtering behaviour (endpoint-independent, address-dependent,",
  "address-and-port-dependent), the classic type (open, full-cone,",
  "restricted-cone, port-restricted-cone, symmetric, udp-blocked), the public",
  "address, port preservation, hairpinning, and for a NAT whose mapping is not",
  "endpoint-independent the port allocation (preserving, sequential, random).",
  "Mapping and filtering are tested from separate sockets.  Takes 1 to 3 s.",
  "",
  cli.options_help(OPTIONS),
  "",
  "With --json, one line:",
  '  {"event":"result","type":"port-restricted-cone","mapping":"endpoint-independent",',
  '   "filtering":"address-and-port-dependent","public":"IP:PORT","nat":true,',
  '   "port_preserving":true,"hairpin":false,"elapsed_ms":1510,...}',
  "",
  "Exit codes: 0 result (udp-blocked too), 1 failure, 2 usage error.",
}, "\n")

local function yesno(v)
  if v == nil then return "not tested" end
  return v and "yes" or "no"
end

-- A short report in the spirit of `tailscale netcheck`.
local function human(r)
  local lines = { "NAT type report (server " .. r.server .. "):" }
  local function row(k, v) lines[#lines + 1] = ("  * %-16s %s"):format(k .. ":", tostring(v)) end
  row("UDP", r.udp and "true" or "false (no answer)")
  if r.udp then
    row("Public address", r.public)
    row("Behind a NAT", yesno(r.nat))
    row("Type", r.type or "unknown")
    row("Mapping", r.mapping or "not tested")
    row("Filtering", r.filtering or "not tested")
    row("Port preserving", yesno(r.port_preserving))
    row("Hairpinning", yesno(r.hairpin))
    if r.allocation then
      local delta = r.allocation.delta and (" (delta " .. r.allocation.delta .. ")") or ""
      row("Port allocation", r.allocation.pattern .. delta)
    end
    if r.limited then row("Note", r.limited) end
  end
  row("Took", ("%.1f s"):format(r.elapsed_ms / 1000))
  return table.concat(lines, "\n")
end

function M.run(argv)
  local opts, rest = cli.parse(argv, OPTIONS)
  if not opts then return cli.usage_error("nat-type", rest) end
  if opts.help then
    io.stdout:write(M.usage, "\n")
    return cli.OK
  end
  if #rest > 0 then return cli.usage_error("nat-type", "unexpected argument '" .. rest[1] .. "'") end
  if not opts.server then return cli.usage_error("nat-type", "--server IP:PORT is required") end
  local out = cli.output(opts.json, function(ev) return ev.event == "result" and human(ev) or nil end)
  return cli.run_loop("nat-type", function(ctx)
    local r, err = ctx.natpunch.discover{ server = opts.server, bind = opts.bind, hairpin = not opts.no_hairpin }
    if not r then
      out.event({ event = "failed", reason = tostring(err) })
      return cli.FAIL
    end
    if r.allocation then r.allocation.ports = require("natpunch.json").array(r.allocation.ports) end
    if r.mapped then r.mapped = nil end
    r.event = "result"
    out.event(r)
    return cli.OK
  end)
end

return M
