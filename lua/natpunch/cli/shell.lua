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
  "errors are printed and the shell goes on; an incomplete chunk continues on",
  "the next line (prompt >>).  Variables live in the shell's own environment.",
  "exit([code]) or end of input (Ctrl-D) leaves; Ctrl-C leaves at once (130).",
  "Standard input may be a terminal, a pipe or a file; prompts are shown only",
  "on a terminal.",
  "",
  "Example:",
  "  > rv = natpunch.rendezvous{ listen = '127.0.0.1:3478' }",
  "  > a = natpunch.peer{ server = '127.0.0.1:3478', id = 'a', on_event = show }",
  "  > a:register()",
  "  127.0.0.1:40123",
  "",
  "Besides the standard library, the environment has natpunch, show(ev)",
  "(prints an event table as a JSON line) and json (natpunch.json).",
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

local function make_env(natpunch, ctx)
  local json = require "natpunch.json"
  local env = setmetatable({}, { __index = _G })
  -- Background tasks started at the prompt report their errors instead of
  -- stopping the loop (which would end the shell).
  local function spawn(fn, ...)
    if type(fn) ~= "function" then return natpunch.spawn(fn, ...) end
    return natpunch.spawn(function(...)
      local r = table.pack(xpcall(fn, message_handler, ...))
      if r[1] then return table.unpack(r, 2, r.n) end
      io.stderr:write("natpunch shell: error in task: ", tostring(r[2]), "\n")
    end, ...)
  end
  env.natpunch = setmetatable({ spawn = spawn }, { __index = natpunch })
  env.json = json
  env.show = function(ev)
    io.stdout:write(json.encode(ev, cli.KEY_ORDER), "\n")
    io.stdout:flush()
  end
  env.exit = function(code)
    ctx.stop(math.tointeger(code) or (code == false and 1) or 0)
    natpunch.wait(function() end)   -- this chunk ends here
  end
  return env
end

function M.run(argv)
  local opts, rest = cli.parse(argv, {})
  if not opts then return cli.usage_error("shell", rest) end
  if opts.help then
    io.stdout:write(M.usage, "\n")
    return cli.OK
  end
  if #rest > 0 then return cli.usage_error("shell", "unexpected argument '" .. rest[1] .. "'") end
  io.stdout:setvbuf("line")
  local tty = os.execute("test -t 0") == true
  return cli.run_loop("shell", function(ctx)
    local natpunch = ctx.natpunch
    local env = make_env(natpunch, ctx)
    local source = line_source(natpunch)
    if tty then
      io.stdout:write("natpunch ", natpunch.version, " shell (Lua 5.4) - the loop is running; ",
        "exit() or Ctrl-D to leave\n")
    end
    local pending = nil
    while true do
      if tty then
        io.stdout:write(pending and ">> " or "> ")
        io.stdout:flush()
      end
      local line = source.next()
      if line == nil then break end
      line = line:gsub("\r$", "")
      local text = pending and (pending .. "\n" .. line) or line
      local fn, err = compile(text, env, pending == nil)
      if fn then
        pending = nil
        local task = natpunch.spawn(function()
          local r = table.pack(xpcall(fn, message_handler))
          if not r[1] then
            io.stderr:write(tostring(r[2]), "\n")
          elseif r.n > 1 then
            local p = type(env.print) == "function" and env.print or print
            p(table.unpack(r, 2, r.n))
          end
        end)
        task:join()
      elseif err == "incomplete" then
        pending = text
      else
        pending = nil
        io.stderr:write(err, "\n")
      end
    end
    if pending then
      local _, err = load(pending, "=stdin", "t", env)
      io.stderr:write(tostring(err), "\n")
    end
    if tty then io.stdout:write("\n") end
    source.close()
    return cli.OK
  end)
end

return M
