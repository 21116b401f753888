-- natpunch.lab.proc: the one place where the lab runs and stops processes.
--
-- Everything the lab does to the system goes through run() (wait for a
-- command, get its output and exit code) or spawn() (start a command in the
-- background with its output in a log file, get a handle to stop it).  The
-- lead may swap this file for the core loop's process handling; nothing else
-- in the lab knows how processes are made.
--
-- Only the Lua standard library is used, so this goes through /bin/sh.

local proc = {}

-- Quote one word for /bin/sh: single quotes, with ' written as '\''.
function proc.quote(word)
  word = tostring(word)
  if word:match("^[%w%._/:=@%%+,-]+$") then return word end
  return "'" .. word:gsub("'", "'\\''") .. "'"
end

function proc.command(argv)
  local words = {}
  for i, w in ipairs(argv) do words[i] = proc.quote(w) end
  return table.concat(words, " ")
end

-- `make sanitize` preloads the ASan/UBSan runtime (LD_PRELOAD) into the
-- specs.  The system tools the lab runs (ip, nft, sysctl, ping, ...) must
-- not inherit it: LeakSanitizer aborts them over their own leaks.  So run()
-- and spawn() drop it, and a natpunch process gets it back through
-- proc.preload(argv).
proc.PRELOAD = os.getenv("LD_PRELOAD")
if proc.PRELOAD == "" then proc.PRELOAD = nil end

local function unpreloaded(cmd)
  if not proc.PRELOAD then return cmd end
  return "env -u LD_PRELOAD " .. cmd
end

-- argv run with the LD_PRELOAD this process got (as is when there is none).
function proc.preload(argv)
  if not proc.PRELOAD then return argv end
  local out = { "env", "LD_PRELOAD=" .. proc.PRELOAD }
  for _, w in ipairs(argv) do out[#out + 1] = w end
  return out
end

-- Run argv and wait.  Returns output (stdout and stderr together), exit code.
-- A command killed by a signal gets 128 + signal, as in the shell.
function proc.run(argv)
  local f = assert(io.popen(unpreloaded(proc.command(argv)) .. " 2>&1", "r"))
  local out = f:read("a")
  local _, how, code = f:close()
  if how == "signal" then code = 128 + code end
  return out, code or 1
end

-- Run argv; raise with its output when it fails.  For the lab's own set-up
-- commands, where a failure means the lab cannot be built.
function proc.must(argv)
  local out, code = proc.run(argv)
  if code ~= 0 then
    error(("lab: `%s` failed (exit %d): %s"):format(proc.command(argv), code,
      out:gsub("%s+$", "")), 2)
  end
  return out
end

function proc.sleep(seconds)
  os.execute("sleep " .. string.format("%.3f", seconds))
end

local function read_file(path)
  local f = io.open(path, "r")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end
proc.read_file = read_file

-- The start time of a process (field 22 of /proc/PID/stat, in clock ticks
-- since boot).  Together with the pid it names one process: a pid reused by
-- a later process has another start time, so we never signal a stranger.
function proc.start_time(pid)
  local stat = read_file("/proc/" .. pid .. "/stat")
  if not stat then return nil end
  -- the command name (field 2) is in parentheses and may hold spaces
  local rest = stat:match("^%d+ %b() (.*)$")
  if not rest then return nil end
  local fields = {}
  for w in rest:gmatch("%S+") do fields[#fields + 1] = w end
  -- rest starts at field 3 (state); field 22 is rest's 20th
  return fields[20], fields[1]
end

-- True while the process named by (pid, start) runs (a zombie does not).
function proc.alive(pid, start)
  local st, state = proc.start_time(pid)
  if not st or state == "Z" or state == "X" then return false end
  return start == nil or st == start
end

local Handle = {}
Handle.__index = Handle

-- Start argv in the background, in its own session (so it outlives a CLI
-- that exits and is not hit by the terminal's ^C), stdout and stderr to log.
-- Returns a handle {pid, start, log}.
function proc.spawn(argv, log)
  local cmd = ("%s </dev/null >%s 2>&1 & echo $!"):format(
    unpreloaded("setsid " .. proc.command(argv)), proc.quote(log))
  local f = assert(io.popen(cmd, "r"))
  local pid = tonumber(f:read("l"))
  f:close()
  assert(pid, "lab: could not start " .. argv[1])
  -- env and setsid exec in place, so the pid is the command's pid; its start time
  -- is read at once, while the process cannot yet have exited and been
  -- replaced.
  local start = proc.start_time(pid) or "gone"
  return setmetatable({ pid = pid, start = start, log = log, argv = argv },
    Handle)
end

-- A handle for a process recorded earlier (from a state file).
function proc.handle(pid, start, log)
  return setmetatable({ pid = pid, start = start, log = log }, Handle)
end

function Handle:alive()
  return proc.alive(self.pid, self.start)
end

function Handle:kill(sig)
  if not self:alive() then return false end
  local _, code = proc.run({ "kill", "-" .. (sig or "TERM"), self.pid })
  return code == 0
end

-- Wait up to timeout seconds for the process to end.  True if it ended.
function Handle:wait(timeout)
  local step = 0.02
  for _ = 0, math.ceil((timeout or 5) / step) do
    if not self:alive() then return true end
    proc.sleep(step)
  end
  return not self:alive()
end

-- TERM, then KILL if it lingers.  True when the process is gone.
function Handle:stop(timeout)
  if not self:alive() then return true end
  self:kill("TERM")
  if self:wait(timeout or 2) then return true end
  self:kill("KILL")
  return self:wait(1)
end

-- What the process wrote so far.
function Handle:output()
  return read_file(self.log) or ""
end

-- Wait until the log holds a line matching pattern (or the process ends, or
-- timeout seconds pass).  Returns the captures of the first match, or nil.
function Handle:expect(pattern, timeout)
  local step = 0.02
  for _ = 0, math.ceil((timeout or 5) / step) do
    local out = self:output()
    for line in out:gmatch("[^\n]+") do
      local caps = table.pack(line:match(pattern))
      if caps[1] ~= nil then return table.unpack(caps, 1, caps.n) end
    end
    if not self:alive() then return nil end
    proc.sleep(step)
  end
  return nil
end

return proc
