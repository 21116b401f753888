--- `natpunch stun-server`: an RFC 5780 NAT behaviour discovery server.
local cli = require "natpunch.cli"

local OPTIONS = {
  { "listen", arg = "ADDR:PORT", type = "addr", default = "0.0.0.0:3478",
    help = "primary address and port; port 0 picks free ports" },
  { "alternate", arg = "IP2[:PORT2]", type = "string",
    help = "second address (and alternate port, default PORT+1) for CHANGE-REQUEST and OTHER-ADDRESS" },
  { "stats", arg = "S", type = "number", help = "print the counters every S seconds" },
  { "json", help = "print events as JSON, one object per line" },
}

local M = {}

M.summary = "run an RFC 5780 STUN server for NAT type discovery (nat-type)"

M.usage = table.concat({
  "Usage: natpunch stun-server [--listen ADDR:PORT] [--alternate IP2[:PORT2]] [--json]",
  "",
  "Answers STUN Binding requests (RFC 8489, RFC 5780, and RFC 3489's classic",
  "clients such as Debian's `stun`).  With --alternate it binds the four sockets",
  "of RFC 5780 (two addresses x two ports), sends OTHER-ADDRESS and",
  "RESPONSE-ORIGIN, and honours CHANGE-REQUEST; without it a CHANGE-REQUEST gets",
  "error 420 and OTHER-ADDRESS is never sent.  RESPONSE-PORT is honoured (the",
  "answer still goes to the requester's own IP).  Answers are not larger than",
  "their requests beyond the three RFC 5780 address attributes; PADDING is",
  "honoured up to the request's size.  Runs until interrupted.",
  "",
  cli.options_help(OPTIONS),
  "",
  "With --json:",
  '  {"event":"listening","address":"IP:PORT","other":"IP2:PORT2","addresses":[...]}',
  '  {"event":"stats","requests":N,"answered":N,"changed":N,...}     (with --stats)',
  "",
  "Exit codes: 130 after Ctrl-C, 1 if an address cannot be bound, 2 usage error.",
}, "\n")

local function human(ev)
  if ev.event == "listening" then
    return "listening on " .. table.concat(ev.addresses, ", ")
      .. (ev.other and (" (other address " .. ev.other .. ")") or " (no alternate address)")
  elseif ev.event == "stats" then
    return ("%d requests, %d answered (%d changed, %d response-port, %d padded), %d refused, %d dropped")
      :format(ev.requests, ev.answered, ev.changed, ev.response_port, ev.padded, ev.refused, ev.dropped)
  end
  return ev.event
end

function M.run(argv)
  local opts, rest = cli.parse(argv, OPTIONS)
  if not opts then return cli.usage_error("stun-server", rest) end
  if opts.help then
    io.stdout:write(M.usage, "\n")
    return cli.OK
  end
  if #rest > 0 then return cli.usage_error("stun-server", "unexpected argument '" .. rest[1] .. "'") end
  if opts.alternate then
    local ok, err = require("natpunch.stunserver").parse_alternate(opts.alternate)
    if not ok then return cli.usage_error("stun-server", "--" .. err) end
  end
  if opts.stats and opts.stats <= 0 then return cli.usage_error("stun-server", "--stats must be positive") end
  io.stdout:setvbuf("line")
  local out = cli.output(opts.json, human)
  return cli.run_loop("stun-server", function(ctx)
    local ok, server, err = pcall(ctx.natpunch.stunserver.new, { listen = opts.listen, alternate = opts.alternate })
    if not ok then return cli.usage_error("stun-server", tostring(server):gsub("^[^:]*:%d+: ", "")) end
    if not server then
      io.stderr:write("natpunch stun-server: cannot listen on ", opts.listen, ": ", tostring(err), "\n")
      return cli.FAIL
    end
    local json = require "natpunch.json"
    out.event({ event = "listening", address = server:address(), other = server:other(),
      addresses = json.array(server:addresses()) })
    if opts.stats then
      local t = ctx.natpunch.core.timer()
      t:start(opts.stats * 1000, opts.stats * 1000, function()
        local ev = server:stats()
        ev.event = "stats"
        out.event(ev)
      end)
    end
    ctx.natpunch.future():wait()
    return cli.OK
  end)
end

return M
