--- The `natpunch` command: a dispatcher over subcommand modules, and the
-- option parser and loop runner they share.
--
-- A subcommand is a module natpunch.cli.NAME returning
--   { summary = "one line", usage = "full --help text", run = function(argv) -> exit code }
-- where argv is the list of arguments after NAME.  Modules load
-- natpunch.core only inside run, so --help works without the C module.
--
-- Exit codes: 0 success, 1 run-time failure, 2 usage error, 130 interrupted.
local cli = {}

cli.OK, cli.FAIL, cli.USAGE, cli.INTERRUPTED = 0, 1, 2, 130

-- Subcommands in the order `natpunch --help` lists them.
cli.commands = { "rendezvous", "peer", "records", "shell", "lab", "stun-server", "nat-type",
  "keepalive-daemon", "keepalive" }

local function is_command(name)
  for _, c in ipairs(cli.commands) do
    if c == name then return true end
  end
  return false
end

--- Load subcommand NAME; nil, message if it is unknown or cannot load.
function cli.load(name)
  if not is_command(name) then return nil, "unknown command '" .. tostring(name) .. "'" end
  -- "stun-server" lives in natpunch/cli/stun_server.lua
  local ok, mod = pcall(require, "natpunch.cli." .. name:gsub("-", "_"))
  if not ok then return nil, "command '" .. name .. "' cannot load: " .. tostring(mod) end
  return mod
end

--------------------------------------------------------------- options

-- Option specs, for cli.parse and cli.options_help:
--   { "server", arg = "ADDR:PORT", type = "addr", multi = true, help = "..." }
-- type: "flag" (default when there is no arg), "string", "number",
-- "integer" (non-negative; positive = true excludes 0; max = N), "addr"
-- (host:port with an IPv4 address, [IPv6] or a host name; port 1..65535,
-- for options named *server* or with port_zero = false, else 0..65535:
-- port 0 binds any free port), "id" (a peer id, check.ID_RULE),
-- "text" (at most max bytes, default check.TEXT_MAX).  multi: may repeat,
-- the value is a list.  default: value when absent.  Every option of
-- every subcommand gets -v/--verbose and -q/--quiet (opts.verbose,
-- opts.quiet) and -h/--help.  Host names in "addr" values are resolved
-- through libuv when cli.run_loop starts, before main runs; numeric
-- addresses are kept as they are.

local check = require "natpunch.cli.check"
cli.check = check

-- Host names seen by the last cli.parse, resolved by cli.run_loop.
local unresolved = {}

local function check_value(o, v, opts, key)
  local name = "--" .. o[1]
  if o.type == "number" or o.type == "integer" then
    local n, err = check.number(v, o)
    if not n then return nil, name .. " " .. err .. ", got '" .. check.printable(v) .. "'" end
    return n
  elseif o.type == "addr" then
    -- port 0 (any free port) makes sense where we bind, not where we send
    local port_zero = o.port_zero
    if port_zero == nil then port_zero = o[1]:match("server") == nil end
    -- o.pin: "ADDR#HEX" pins the server's public key (kept in the value)
    local ep, pin = v, ""
    if o.pin and v:find("#", 1, true) then
      ep, pin = v:match("^(.-)(#.*)$")
      if not pin:match("^#" .. string.rep("%x", 64) .. "$") then
        return nil, name .. ": the key after '#' in '" .. check.printable(v) .. "' must be 64 hex digits"
      end
    end
    local host, port, kind = check.endpoint(ep, { port_zero = port_zero })
    if not host then return nil, name .. ": " .. check.printable(port) end
    if kind == "name" then
      unresolved[#unresolved + 1] = { opts = opts, key = key, text = v, host = host, port = port,
        multi = o.multi and true or false, suffix = pin }
    end
  elseif o.type == "id" then
    local id, err = check.id(v)
    if not id then return nil, name .. ": " .. err end
  elseif o.type == "text" then
    local max = o.max or check.TEXT_MAX
    if #v > max then return nil, name .. " is at most " .. max .. " bytes, got " .. #v end
  end
  return v
end

--- Parse argv (a list) against option specs.  Returns opts (keys with "-"
-- turned into "_"; opts.help set by -h/--help) and the list of positional
-- arguments, or nil, message for a usage error.  "--" ends the options.
function cli.parse(argv, specs)
  local by_name = {}
  for _, o in ipairs(specs) do by_name[o[1]] = o end
  local opts, rest = {}, {}
  unresolved = {}
  local i = 1
  while i <= #argv do
    local a = argv[i]
    if a == "--" then
      table.move(argv, i + 1, #argv, #rest + 1, rest)
      break
    elseif a == "-h" or a == "--help" then
      opts.help = true
    elseif (a == "-v" or a == "--verbose") and not by_name.verbose then
      opts.verbose = true
    elseif (a == "-q" or a == "--quiet") and not by_name.quiet then
      opts.quiet = true
    elseif a:sub(1, 2) == "--" then
      local name, inline = a:match("^%-%-([^=]+)=(.*)$")
      name = name or a:sub(3)
      local o = by_name[name]
      if not o then return nil, "unknown option '--" .. check.printable(name) .. "'" end
      local key = name:gsub("-", "_")
      local v
      if o.arg then
        if inline then
          v = inline
        else
          i = i + 1
          v = argv[i]
          if v == nil then return nil, "option '--" .. name .. "' needs a value (" .. o.arg .. ")" end
        end
        local err
        v, err = check_value(o, v, opts, key)
        if v == nil then return nil, err end
      else
        if inline then return nil, "option '--" .. name .. "' takes no value" end
        v = true
      end
      if o.multi then
        opts[key] = opts[key] or {}
        table.insert(opts[key], v)
      elseif opts[key] ~= nil and o.arg then
        return nil, "option '--" .. name .. "' given twice"
      else
        opts[key] = v
      end
    elseif a:sub(1, 1) == "-" and #a > 1 then
      return nil, "unknown option '" .. check.printable(a) .. "'"
    else
      rest[#rest + 1] = a
    end
    i = i + 1
  end
  if opts.verbose and opts.quiet then return nil, "-v (--verbose) and -q (--quiet) exclude each other" end
  for _, o in ipairs(specs) do
    local key = o[1]:gsub("-", "_")
    if opts[key] == nil and o.default ~= nil then opts[key] = o.default end
  end
  return opts, rest
end

--- Resolve the host names of the last cli.parse in place (in a task; the
-- loop keeps running).  Returns true, or nil, "cannot resolve ...".
function cli.resolve_names()
  local dns = require "natpunch.dns"
  local addr = require "natpunch.addr"
  local todo = unresolved
  unresolved = {}
  for _, u in ipairs(todo) do
    local ip, err = dns.resolve(u.host)
    if not ip then return nil, "cannot resolve host '" .. u.host .. "': " .. tostring(err) end
    local value = addr.format(ip, u.port) .. (u.suffix or "")
    local list = u.multi and u.opts[u.key] or nil
    if list then
      for j, v in ipairs(list) do
        if v == u.text then list[j] = value break end
      end
    elseif u.opts[u.key] == u.text then
      u.opts[u.key] = value
    end
  end
  return true
end

--- The "Options:" block of a usage text.
function cli.options_help(specs)
  local rows = {}
  for _, o in ipairs(specs) do
    local left = "--" .. o[1] .. (o.arg and (" " .. o.arg) or "")
    local right = o.help or ""
    if o.default ~= nil and o.arg then right = right .. " (default " .. tostring(o.default) .. ")" end
    if o.multi then right = right .. " (may repeat)" end
    rows[#rows + 1] = { left, right }
  end
  rows[#rows + 1] = { "-v, --verbose", "say what is being done while it works" }
  rows[#rows + 1] = { "-q, --quiet", "print only the outcome and errors" }
  rows[#rows + 1] = { "-h, --help", "show this help and exit" }
  local width = 0
  for _, r in ipairs(rows) do width = math.max(width, #r[1]) end
  local out = { "Options:" }
  for _, r in ipairs(rows) do
    out[#out + 1] = string.format("  %-" .. width .. "s  %s", r[1], r[2])
  end
  return table.concat(out, "\n")
end

--- Report a usage error of a subcommand on stderr; returns cli.USAGE.
function cli.usage_error(command, message)
  local prog = command and ("natpunch " .. command) or "natpunch"
  io.stderr:write(prog, ": ", message, " (see '", prog, " --help')\n")
  return cli.USAGE
end

--------------------------------------------------------------- output

-- Key order of event lines: the order of the documented examples, so that
-- lines read naturally and can be matched as text; other keys follow, sorted.
cli.KEY_ORDER = { "event", "id", "peer", "from", "to", "address", "public", "local", "remote", "path",
  "transport", "method", "setup_ms", "rtt_ms", "data", "kind" }

--- An emitter of events: one JSON object per line on stdout with json,
-- else format(ev) (a human line, or nil to skip) on stdout.  Lines are
-- flushed at once so a reader (a pipe, a test) sees each event as it
-- happens.  Every JSON event gets "time", its last key: milliseconds since
-- the command started (an integer, monotonic clock).  In human lines every string
-- field is passed through check.printable first, so what a peer sent
-- cannot move the cursor, clear the screen or forge a line.
-- out.log(...) writes human notes: to stderr in JSON mode (stdout then
-- carries nothing but JSON lines), to stdout otherwise; -q (opts.quiet)
-- drops them, and in human mode keeps only the events named in
-- opts.quiet_keep (default: failed, message).
-- out.finish(ev) prints the outcome: nothing is printed after it.
local started_ns

function cli.output(as_json, format, opts)
  local json = require "natpunch.json"
  opts = opts or {}
  local core = require "natpunch.core"
  started_ns = started_ns or core.hrtime()
  local keep = {}
  for _, name in ipairs(opts.quiet_keep or { "failed", "message", "done" }) do keep[name] = true end
  local out = { last = nil, finished = false }
  function out.event(ev)
    if out.finished then return end
    out.last = ev
    if ev.time == nil then ev.time = (core.hrtime() - started_ns) // 1000000 end
    if as_json then
      -- "time" goes last, so lines still read (and match) as documented
      local t = ev.time
      ev.time = nil
      local line = json.encode(ev, cli.KEY_ORDER)
      ev.time = t
      io.stdout:write(line:sub(1, -2), ',"time":', json.encode(t), "}\n")
    elseif not opts.quiet or keep[ev.event] then
      local safe = {}
      for k, v in pairs(ev) do safe[k] = type(v) == "string" and check.printable(v) or v end
      local line = format and format(safe)
      if line then io.stdout:write(line, "\n") end
    end
    io.stdout:flush()
  end
  function out.finish(ev)
    out.event(ev)
    out.finished = true
  end
  function out.log(...)
    if opts.quiet then return end
    local f = as_json and io.stderr or io.stdout
    f:write(...)
    f:write("\n")
    f:flush()
  end
  return out
end

--------------------------------------------------------------- loop

-- lua5.4 handles SIGINT by setting a hook that raises "interrupted!" in the
-- next Lua code that runs on the main thread (then the default action is
-- back, so a second Ctrl-C kills at once).  While libuv waits, that is the
-- next callback; the C core reports callback errors through core.on_error,
-- where we catch it.  The heartbeat timer bounds the delay to 200 ms.
local HEARTBEAT_MS = 200

local function interrupted(err)
  return type(err) == "string" and err:match("^[^\n]*interrupted!") ~= nil
end

--- Run main(ctx) as a task on the natpunch loop and return its exit code.
-- ctx.stop(code) ends the run from anywhere (a callback too).  Errors in
-- main are reported as "natpunch COMMAND: error: ..." and give cli.FAIL;
-- Ctrl-C gives cli.INTERRUPTED; either way on_fail(reason), if given, runs
-- first (to print a final event).  There is no signal handling in the C
-- core: SIGTERM ends the process the default way.
function cli.run_loop(command, main, on_fail)
  local natpunch = require "natpunch"
  local core = natpunch.core
  local done = natpunch.future()
  local ctx = { natpunch = natpunch }
  function ctx.stop(code) done:set(true, code) end
  core.on_error(function(err)
    if interrupted(err) then
      done:set(true, cli.INTERRUPTED)
    else
      io.stderr:write("natpunch ", command, ": error in callback: ", tostring(err), "\n")
    end
  end)
  local ok, okmain, code = pcall(natpunch.run, function()
    local heartbeat = core.timer()
    heartbeat:start(HEARTBEAT_MS, HEARTBEAT_MS, function() end)
    natpunch.spawn(function()
      local resolved, rerr = cli.resolve_names()
      if not resolved then
        if on_fail then on_fail(rerr) end
        io.stderr:write("natpunch ", command, ": ", rerr, "\n")
        done:set(true, cli.FAIL)
        return
      end
      local r = table.pack(xpcall(main, debug.traceback, ctx))
      if r[1] then done:set(true, r[2]) else done:set(false, r[2]) end
    end)
    local good, value = done:wait()
    heartbeat:close()
    return good, value
  end)
  core.on_error(nil)
  local err = (not ok and okmain) or (ok and not okmain and code) or nil
  if (ok and okmain and code == cli.INTERRUPTED) or interrupted(err) then
    if on_fail then on_fail("interrupted") end
    return cli.INTERRUPTED
  end
  if err then
    if on_fail then on_fail("internal error: " .. tostring(err):match("^[^\n]*")) end
    io.stderr:write("natpunch ", command, ": error: ", tostring(err), "\n")
    return cli.FAIL
  end
  return math.tointeger(code) or cli.OK
end

--------------------------------------------------------------- main

local function main_usage()
  local out = {
    "Usage: natpunch COMMAND [options]",
    "",
    "NAT traversal: peers register with a rendezvous server, are introduced by id,",
    "and punch a direct UDP path to each other.",
    "",
    "Commands:",
  }
  for _, name in ipairs(cli.commands) do
    local mod = cli.load(name)
    if mod then out[#out + 1] = string.format("  %-12s %s", name, mod.summary or "") end
  end
  out[#out + 1] = string.format("  %-12s %s", "help", "show this help, or a command's: natpunch help COMMAND")
  out[#out + 1] = string.format("  %-12s %s", "--version", "print the version")
  out[#out + 1] = ""
  out[#out + 1] = "Run 'natpunch COMMAND --help' for a command's options."
  out[#out + 1] = "Exit codes: 0 success, 1 failure, 2 usage error, 130 interrupted."
  return table.concat(out, "\n")
end

local function show_help(name)
  if not name then
    io.stdout:write(main_usage(), "\n")
    return cli.OK
  end
  local mod, err = cli.load(name)
  if not mod then
    io.stderr:write("natpunch: ", err, "\n")
    return cli.USAGE
  end
  io.stdout:write(mod.usage, "\n")
  return cli.OK
end

--- Entry point: argv is the script's `arg` table; returns the exit code.
function cli.main(argv)
  local args = table.move(argv or {}, 1, #(argv or {}), 1, {})
  local name = args[1]
  if name == nil then
    io.stderr:write(main_usage(), "\n")
    return cli.USAGE
  end
  if name == "-h" or name == "--help" then return show_help(nil) end
  if name == "help" then return show_help(args[2]) end
  if name == "--version" or name == "version" then
    local ok, core = pcall(require, "natpunch.core")
    io.stdout:write("natpunch ", ok and core.version or "(C module not found)", "\n")
    return ok and cli.OK or cli.FAIL
  end
  if not is_command(name) then
    io.stderr:write("natpunch: unknown command '", name, "'\n",
      "Commands: ", table.concat(cli.commands, ", "), ". Run 'natpunch --help' for more.\n")
    return cli.USAGE
  end
  local mod, err = cli.load(name)
  if not mod then
    io.stderr:write("natpunch: ", err, "\n")
    return cli.FAIL
  end
  local rest = table.move(args, 2, #args, 1, {})
  if rest[1] == "-h" or rest[1] == "--help" then
    io.stdout:write(mod.usage, "\n")
    return cli.OK
  end
  local ok, code = xpcall(mod.run, debug.traceback, rest)
  if not ok then
    if interrupted(code) then return cli.INTERRUPTED end
    io.stderr:write("natpunch ", name, ": error: ", tostring(code), "\n")
    -- with --json the last line is still a `failed` event (an error before
    -- the command's own loop: a C module that cannot be loaded, say, while
    -- a rebuild rewrites it)
    for _, a in ipairs(rest) do
      if a == "--" then break end
      if a == "--json" then
        local text = tostring(code)
        text = (text:match("^(.-)\nstack traceback:") or text):gsub("%s+", " ")
        local reason = "internal error: " .. text:sub(1, 300)
        io.stdout:write(require("natpunch.json").encode({ event = "failed", reason = reason }, cli.KEY_ORDER), "\n")
        io.stdout:flush()
        break
      end
    end
    return cli.FAIL
  end
  return math.tointeger(code) or cli.OK
end

return cli
