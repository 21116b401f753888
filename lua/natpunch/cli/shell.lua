--- `natpunch shell`: a Lua prompt with the natpunch loop running, so peers
-- keep working (and their events keep arriving) while you type.
--
-- Each chunk you enter runs as a new task, so natpunch.sleep, peer:register,
-- peer:connect and session:touch work at the prompt; chunks run one after
-- the other, like the standard lua REPL.  Standard input is read on the loop
-- (core.stdin), never with a blocking io.read, except when it is a regular
-- file (which cannot block).
local cli = require "natpunch.cli"

local M = {}

M.summary = "interactive Lua prompt with the loop running and natpunch loaded"

M.usage = table.concat({
  "Usage: natpunch shell",
  "",
  "An interactive Lua 5.4 prompt where `natpunch` is loaded and its loop runs",
  "while you type: create a rendezvous or peers, connect, touch, and watch",
  "their events arrive.  Each chunk runs as a task (natpunch.sleep, register,",
  "connect and touch wait without blocking the loop), one chunk at a time.",
  "Expressions print their values, like the lua REPL (`=expr` works too);",
  "tables are shown one level deep, peers, servers and sessions by name.  An",
  "incomplete chunk continues on the next line (prompt >>).  Variables live",
  "in the shell's own environment.",
  "",
  "On a terminal: line editing and history (GNU readline; history in",
  "~/.natpunch_history).  Events and errors that arrive while you type are",
  "printed above the prompt, and the line you are typing stays as it was.",
  "Ctrl-C interrupts the running chunk (a connect that waits, a busy loop)",
  "and returns to the prompt; at the prompt it discards the line.  Ctrl-D on",
  "an empty line, exit([code]) or os.exit([code]) leaves.",
  "",
  "Errors in a chunk, in a callback (on_message, ...) or in a task are",
  "printed with their traceback and the shell goes on; everything created",
  "stays alive.  Events of a peer or rendezvous created without on_event are",
  "printed, named after their source (\"[peer alice] connected to bob ...\");",
  "events given to your own on_event carry source = \"peer alice\" too;",
  "on_event = false keeps an object silent.",
  "",
  "Standard input may also be a pipe or a file: chunks are read line by line,",
  "without prompts (printf 'x = 1\\nx + 1\\n' | natpunch shell).",
  "",
  "Example:",
  "  > rv = natpunch.rendezvous{ listen = '127.0.0.1:3478' }",
  "  > a = natpunch.peer{ server = '127.0.0.1:3478', id = 'a' }",
  "  > a:register()",
  "  [peer a] registered via 127.0.0.1:3478: public 127.0.0.1:40123, local 0.0.0.0:40123",
  "  [rendezvous 127.0.0.1:3478] registered a at 127.0.0.1:40123",
  "  127.0.0.1:40123",
  "",
  "Besides the standard library, the environment has natpunch, show(ev)",
  "(prints an event table as a JSON line), inspect(v) (the text the prompt",
  "prints for a value) and json (natpunch.json).",
  "",
  cli.options_help({}),
}, "\n")

-- lua.c's test for an incomplete chunk: the syntax error is at <eof>.
local EOF_MARK = "<eof>"

local function compile(text, env, first)
  if first then
    if text:sub(1, 1) == "=" then text = "return " .. text:sub(2) end   -- 5.1-style `=expr`
    local fn = load("return " .. text, "=stdin", "t", env)
    if fn then return fn end
  end
  local fn, err = load(text, "=stdin", "t", env)
  if fn then return fn end
  if err:sub(-#EOF_MARK) == EOF_MARK then return nil, "incomplete" end
  return nil, err
end

-- Standard input as a line source.  A regular file (or /dev/null) is
-- seekable and never blocks: read it directly (libuv cannot poll it).
-- Pipes and terminals are not seekable (ESPIPE): read them on the loop.
local function line_source(natpunch)
  local pos, _, errno = io.stdin:seek("cur")
  if pos then
    return { next = function() return io.stdin:read("l") end, close = function() end }
  end
  if errno ~= 29 then   -- ESPIPE; anything else (EBADF: stdin closed) is an empty input
    return { next = function() return nil end, close = function() end }
  end
  local reader, err = natpunch.core.stdin()
  if not reader then error("cannot read standard input: " .. tostring(err), 0) end
  local lines, partial, eof, waiting = {}, "", false, nil
  local function wake()
    if waiting then
      local w = waiting
      waiting = nil
      w()
    end
  end
  local ok, serr = reader:read_start(function(rerr, chunk)
    if rerr or chunk == nil then
      if partial ~= "" then lines[#lines + 1] = partial end
      partial, eof = "", true
      if rerr then io.stderr:write("natpunch shell: reading standard input: ", tostring(rerr), "\n") end
    else
      partial = partial .. chunk
      local start = 1
      while true do
        local nl = partial:find("\n", start, true)
        if not nl then break end
        lines[#lines + 1] = partial:sub(start, nl - 1)
        start = nl + 1
      end
      partial = partial:sub(start)
    end
    wake()
  end)
  if not ok then error("cannot read standard input: " .. tostring(serr), 0) end
  return {
    next = function()
      while #lines == 0 and not eof do
        natpunch.wait(function(w) waiting = w end)
      end
      return table.remove(lines, 1)
    end,
    close = function() reader:close() end,
  }
end

-- Error text for the user: the message and the traceback of the chunk,
-- without the shell's own frames.
local function message_handler(err)
  if type(err) ~= "string" then
    local mt = getmetatable(err)
    err = (mt and mt.__tostring) and tostring(err) or ("(error object is a " .. type(err) .. " value)")
  end
  local tb = debug.traceback(err, 2)
  local keep = {}
  for line in tb:gmatch("[^\n]+") do
    if line:find("in function 'xpcall'", 1, true) then break end
    keep[#keep + 1] = line
  end
  if #keep <= 2 then return err end   -- no frame of the user's code: the message says it all
  return table.concat(keep, "\n")
end

--------------------------------------------------------------- values

local check = require "natpunch.cli.check"

-- A name for natpunch's objects (by their fields: they are plain tables).
local function object_name(v)
  if type(v) ~= "table" then return nil end
  local ok, name = pcall(function()
    if rawget(v, "servers") and rawget(v, "id") then return "peer " .. tostring(v.id) end
    if (rawget(v, "registry") or rawget(v, "by_addr")) and rawget(v, "udp") then
      local a = v.address and v:address()
      return "rendezvous " .. tostring(a)
    end
    if type(rawget(v, "co")) == "thread" then
      return "task (" .. (v.done and "done" or coroutine.status(v.co)) .. ")"
    end
    if rawget(v, "owner") and rawget(v, "remote") and rawget(v, "peer") then
      return "session " .. tostring(v.owner.id) .. " -> " .. tostring(v.peer) .. " at " .. tostring(v.remote)
    end
  end)
  return ok and name or nil
end

local function quote(str)
  return '"' .. check.printable(str):gsub('"', '\\"') .. '"'
end

local MAX_FIELDS = 40

-- A value as the prompt shows it: scalars as Lua writes them, strings
-- with control characters escaped, tables one level deep (keys sorted,
-- the array part first), natpunch objects by name.
local function inspect(v, depth)
  depth = depth or 0
  local t = type(v)
  if t == "string" then return depth == 0 and check.printable(v) or quote(v) end
  if t ~= "table" then return tostring(v) end
  local name = object_name(v)
  if name then return "<" .. name .. ">" end
  local mt = getmetatable(v)
  if mt and mt.__tostring then return tostring(v) end
  if depth > 0 then
    local n = 0
    for _ in pairs(v) do n = n + 1 end
    return n == 0 and "{}" or ("{...} (" .. n .. ")")
  end
  local parts, seen = {}, {}
  for i, x in ipairs(v) do
    parts[#parts + 1] = inspect(x, depth + 1)
    seen[i] = true
  end
  local keys = {}
  for k in pairs(v) do
    if not seen[k] then keys[#keys + 1] = k end
  end
  table.sort(keys, function(a, b)
    if type(a) == type(b) and (type(a) == "string" or type(a) == "number") then return a < b end
    return type(a) < type(b)
  end)
  for _, k in ipairs(keys) do
    local ks = (type(k) == "string" and k:match("^[%a_][%w_]*$")) and k or ("[" .. inspect(k, depth + 1) .. "]")
    parts[#parts + 1] = ks .. " = " .. inspect(v[k], depth + 1)
  end
  if #parts > MAX_FIELDS then
    local more = #parts - MAX_FIELDS
    parts = { table.unpack(parts, 1, MAX_FIELDS) }
    parts[#parts + 1] = "... (" .. more .. " more)"
  end
  if #parts == 0 then return "{}" end
  return "{ " .. table.concat(parts, ", ") .. " }"
end
M.inspect = inspect

--------------------------------------------------------------- environment

-- The human line of an event, named after its source.
local function event_line(source, ev)
  local kind = source:match("^(%S+)")
  local fmt = (kind == "rendezvous") and require("natpunch.cli.rendezvous").human
    or require("natpunch.cli.peer").human
  local safe = {}
  for k, v in pairs(ev) do safe[k] = type(v) == "string" and check.printable(v) or v end
  local ok, line = pcall(fmt, safe)
  if not ok or not line or line == ev.event then
    local fields = {}
    for k, v in pairs(safe) do
      if k ~= "event" and k ~= "source" then fields[#fields + 1] = k .. "=" .. tostring(v) end
    end
    table.sort(fields)
    line = tostring(ev.event) .. (#fields > 0 and (" " .. table.concat(fields, " ")) or "")
  end
  return "[" .. source .. "] " .. line
end

local function make_env(natpunch, ctx, say)
  local json = require "natpunch.json"
  local env = setmetatable({}, { __index = _G })
  -- Background tasks started at the prompt report their errors instead of
  -- stopping the loop (which would end the shell).
  local function spawn(fn, ...)
    if type(fn) ~= "function" then return natpunch.spawn(fn, ...) end
    return natpunch.spawn(function(...)
      local r = table.pack(xpcall(fn, message_handler, ...))
      if r[1] then return table.unpack(r, 2, r.n) end
      say("natpunch shell: error in task: " .. tostring(r[2]), true)
    end, ...)
  end
  -- Constructors whose events name their source.
  local function named(ctor, kind)
    return function(opts)
      if type(opts) ~= "table" then return ctor(opts) end
      local user = opts.on_event
      local copy = {}
      for k, v in pairs(opts) do copy[k] = v end
      local obj
      local function source()
        return obj and object_name(obj) or (kind .. " " .. tostring(opts.id or opts.listen or "?"))
      end
      if user == false then
        copy.on_event = nil
      elseif user then
        copy.on_event = function(ev)
          ev.source = source()
          return user(ev)
        end
      else
        copy.on_event = function(ev) say(event_line(source(), ev)) end
      end
      local r = table.pack(ctor(copy))
      obj = r[1]
      return table.unpack(r, 1, r.n)
    end
  end
  env.natpunch = setmetatable({
    spawn = spawn,
    peer = named(natpunch.peer, "peer"),
    rendezvous = named(natpunch.rendezvous, "rendezvous"),
  }, { __index = natpunch })
  env.json = json
  env.inspect = function(v) return inspect(v) end
  env.show = function(ev) say(json.encode(ev, cli.KEY_ORDER)) end
  env.print = function(...)
    local n = select("#", ...)
    local parts = {}
    for i = 1, n do parts[i] = tostring((select(i, ...))) end
    say(table.concat(parts, "\t"))
  end
  env.exit = function(code)
    ctx.stop(math.tointeger(code) or (code == false and 1) or 0)
    natpunch.wait(function() end)   -- this chunk ends here
  end
  env.os = setmetatable({ exit = env.exit }, { __index = os })
  return env
end

--------------------------------------------------------------- terminal

-- Lines from a terminal through GNU readline's callback interface: the
-- loop polls standard input and feeds readline; while a chunk runs there
-- is no prompt (and typed-ahead text waits in the terminal).
local function readline_source(natpunch, rl)
  local poll, err = natpunch.core.stdin_poll()
  if not poll then return nil, err end
  local src = { prompting = false }
  local waiting
  function src.next(prompt)
    local fut = natpunch.future()
    waiting = fut
    rl.install(prompt)
    src.prompting = true
    poll:start(function()
      local ok, line = pcall(rl.read_char)
      if not ok then line = nil end
      if line == false then return end
      src.prompting = false
      poll:stop()
      waiting = nil
      fut:set(line)
    end)
    return fut:wait()
  end
  function src.say(text)
    if src.prompting then rl.print_above(text .. "\n") else
      io.stdout:write(text, "\n")
      io.stdout:flush()
    end
  end
  function src.cancel_line()
    if src.prompting then
      rl.cancel()
      rl.set_prompt("> ")    -- an unfinished chunk is dropped too
    end
  end
  function src.close()
    if waiting then waiting:set(nil) end
    src.prompting = false
    rl.remove()
    poll:close()
  end
  return src
end

local function history_file()
  local home = os.getenv("HOME")
  if not home or home == "" then return nil end
  return home .. "/.natpunch_history"
end

local INTERRUPTED = "interrupted (Ctrl-C)"
local HOOK_COUNT = 100000   -- VM instructions between two looks for a Ctrl-C in a busy chunk

function M.run(argv)
  local opts, rest = cli.parse(argv, {})
  if not opts then return cli.usage_error("shell", rest) end
  if opts.help then
    io.stdout:write(M.usage, "\n")
    return cli.OK
  end
  if #rest > 0 then return cli.usage_error("shell", "unexpected argument '" .. rest[1] .. "'") end
  io.stdout:setvbuf("line")
  local tty = os.execute("test -t 0 && test -t 1") == true
  local rl
  if tty then
    local ok, mod = pcall(require, "natpunch.readline")
    if ok then rl = mod
    elseif not opts.quiet then
      io.stderr:write("natpunch shell: no line editing (natpunch.readline: ", tostring(mod):match("^[^\n]*"), ")\n")
    end
  end
  local hist = rl and history_file()
  if hist then rl.read_history(hist) end
  local sig
  local code = cli.run_loop("shell", function(ctx)
    local natpunch = ctx.natpunch
    local core = natpunch.core
    local source
    if rl then source = readline_source(natpunch, rl) end
    local function say(text, is_error)
      if source then return source.say(text) end
      local f = is_error and io.stderr or io.stdout
      f:write(text, "\n")
      f:flush()
    end
    local env = make_env(natpunch, ctx, say)
    -- errors in callbacks and tasks: printed, and the shell goes on
    core.on_error(function(err)
      if type(err) == "string" and err:match("^[^\n]*interrupted!") then return ctx.stop(cli.INTERRUPTED) end
      say("natpunch shell: error in callback: " .. tostring(err), true)
    end)
    require("natpunch.sched").on_error(function(err)
      say("natpunch shell: error in task: " .. tostring(err), true)
    end)
    local chunk_task, chunk_done
    if tty then
      sig = core.sigint()
      if sig then
        sig:start(function()
          if chunk_task and not chunk_task.done then
            chunk_task:cancel()
            chunk_done:set(false, INTERRUPTED)
          elseif source then
            source.cancel_line()
            source.reset = true
          end
        end)
      end
    end
    local lines = source or line_source(natpunch)
    if tty and not opts.quiet then
      say("natpunch " .. natpunch.version .. " shell (Lua 5.4) - the loop is running; "
        .. "exit() or Ctrl-D to leave, Ctrl-C interrupts")
    end
    local function hook()
      if sig and sig:pending() then
        debug.sethook()
        error(INTERRUPTED, 0)
      end
    end
    local pending = nil
    while true do
      if not source and tty then
        io.stdout:write(pending and ">> " or "> ")
        io.stdout:flush()
      end
      local line = lines.next(pending and ">> " or "> ")
      if source and source.reset then   -- Ctrl-C at the prompt dropped an unfinished chunk
        source.reset = nil
        pending = nil
      end
      if line == nil then break end
      line = line:gsub("\r$", "")
      if rl and line:match("%S") then rl.add_history(line) end
      local text = pending and (pending .. "\n" .. line) or line
      local fn, err = compile(text, env, pending == nil)
      if fn then
        pending = nil
        chunk_done = natpunch.future()
        local done = chunk_done
        chunk_task = natpunch.spawn(function()
          if sig then debug.sethook(hook, "", HOOK_COUNT) end
          local r = table.pack(xpcall(fn, message_handler))
          debug.sethook()
          done:set(table.unpack(r, 1, r.n))
        end)
        local r = table.pack(done:wait())
        chunk_task = nil
        if not r[1] then
          local msg = tostring(r[2])
          if msg:find(INTERRUPTED, 1, true) then msg = (tty and "\n" or "") .. INTERRUPTED end
          say(msg, true)
        elseif r.n > 1 then
          local parts = {}
          for i = 2, r.n do parts[#parts + 1] = inspect(r[i]) end
          say(table.concat(parts, "\t"))
        end
      elseif err == "incomplete" then
        pending = text
      else
        pending = nil
        say(err, true)
      end
    end
    if pending then
      local _, err = load(pending, "=stdin", "t", env)
      say(tostring(err), true)
    end
    if source then io.stdout:write("\n") end
    lines.close()
    return cli.OK
  end)
  if sig then sig:close() end
  if rl then
    rl.remove()
    if hist then rl.write_history(hist, 1000) end
  end
  require("natpunch.sched").on_error(nil)
  return code
end

return M
