--- `natpunch records`: the STUNT records a rendezvous keeps per id (seed
-- 004): NAT behaviour for TCP, attempts, successes, failures, last result.
local cli = require "natpunch.cli"

local OPTIONS = {
  { "server", arg = "ADDR:PORT", type = "addr", help = "the rendezvous server (its TCP side)" },
  { "id", arg = "ID", help = "only this id" },
  { "timeout", arg = "S", type = "number", default = 5, help = "give up after S seconds" },
  { "json", help = "one JSON object per id" },
}

local M = {}

M.summary = "show a rendezvous's STUNT records (TCP traversal results per id)"

M.usage = table.concat({
  "Usage: natpunch records --server ADDR:PORT [--id ID] [--timeout S] [--json]",
  "",
  "Asks the rendezvous's STUNT service (TCP, same address and port) for what it",
  "recorded per id, and prints one line (with --json one object) per id:",
  '  {"id":"alice","tcp_successes":N,"tcp_failures":N,"last":"ok"|"failed",',
  '   "tcp_attempts":N,"tcp_mapping":"preserving|sequential|random","tcp_delta":N,',
  '   "public":"IP:PORT","predicted":"IP:PORT","use_stunt":true,"reason":"...","peer":"bob",...}',
  "A peer that failed direct TCP is recorded as failed even when it then",
  "connected over UDP.",
  "",
  cli.options_help(OPTIONS),
  "",
  "Exit codes: 0 printed (also when empty), 1 the server did not answer or has",
  "no such id, 2 usage error.",
}, "\n")

M.ORDER = { "id", "tcp_successes", "tcp_failures", "last", "tcp_attempts", "tcp_mapping", "tcp_delta",
  "public", "predicted", "use_stunt", "peer", "path", "reason", "at" }

local function human(r)
  return ("%s: %s, %d attempts, %d ok, %d failed%s; TCP NAT %s%s"):format(r.id, r.last or "never tried",
    r.tcp_attempts or 0, r.tcp_successes or 0, r.tcp_failures or 0,
    r.reason and (" (" .. r.reason .. ")") or "", r.tcp_mapping or "?",
    r.predicted and (", next port predicted " .. r.predicted) or "")
end

function M.run(argv)
  local opts, rest = cli.parse(argv, OPTIONS)
  if not opts then return cli.usage_error("records", rest) end
  if opts.help then
    io.stdout:write(M.usage, "\n")
    return cli.OK
  end
  if #rest > 0 then return cli.usage_error("records", "unexpected argument '" .. rest[1] .. "'") end
  if not opts.server then return cli.usage_error("records", "--server ADDR:PORT is required") end
  if opts.timeout <= 0 then return cli.usage_error("records", "--timeout must be positive") end
  local json = require "natpunch.json"
  return cli.run_loop("records", function(ctx)
    local list, err = ctx.natpunch.stunt.records{ server = opts.server, id = opts.id, timeout = opts.timeout }
    if not list then
      io.stderr:write("natpunch records: ", tostring(err), "\n")
      return cli.FAIL
    end
    for _, r in ipairs(list) do
      io.stdout:write(opts.json and json.encode(r, M.ORDER) or human(r), "\n")
    end
    io.stdout:flush()
    if opts.id and #list == 0 then
      io.stderr:write("natpunch records: no record for '", opts.id, "'\n")
      return cli.FAIL
    end
    return cli.OK
  end)
end

return M
