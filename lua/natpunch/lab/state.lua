-- natpunch.lab.state: what a lab made, written down before it is made.
--
-- Each lab has a state file <dir>/<prefix>.state, appended line by line
-- *before* each namespace or process is created, so a crash at any point
-- leaves a file naming everything that may exist.  `lab.down_all` reads it
-- (and also scans for names carrying the prefix) to remove the lot.
--
-- Lines (space separated, values never hold spaces):
--   lab PREFIX TIME
--   ns NAME
--   pid PID START WHAT        START: /proc start time, see proc.start_time
--   log PATH
--   node key=value ...        what `natpunch lab status/exec` need

local proc = require "natpunch.lab.proc"

local state = {}

function state.dir()
  return os.getenv("NATPUNCH_LAB_DIR") or "/run/natpunch-lab"
end

function state.path(prefix)
  return state.dir() .. "/" .. prefix .. ".state"
end

function state.log_path(prefix, name)
  return ("%s/%s.%s.log"):format(state.dir(), prefix, name)
end

function state.create(prefix)
  proc.must({ "mkdir", "-p", state.dir() })
  local f = assert(io.open(state.path(prefix), "w"))
  f:write(("lab %s %d\n"):format(prefix, os.time()))
  f:close()
end

function state.append(prefix, ...)
  local words = {}
  for i = 1, select("#", ...) do words[i] = tostring(select(i, ...)) end
  local f = assert(io.open(state.path(prefix), "a"))
  f:write(table.concat(words, " "), "\n")
  f:close()
end

function state.node_line(prefix, fields)
  local keys = {}
  for k in pairs(fields) do keys[#keys + 1] = k end
  table.sort(keys)
  local words = { "node" }
  for _, k in ipairs(keys) do
    local v = tostring(fields[k]):gsub("%s", "_")
    words[#words + 1] = k .. "=" .. v
  end
  state.append(prefix, table.concat(words, " "))
end

-- Parse a state file.  Returns nil when there is none.
function state.read(prefix)
  local text = proc.read_file(state.path(prefix))
  if not text then return nil end
  local s = { prefix = prefix, ns = {}, pids = {}, logs = {}, nodes = {} }
  for line in text:gmatch("[^\n]+") do
    local kind, rest = line:match("^(%S+)%s*(.*)$")
    if kind == "lab" then
      s.created = tonumber(rest:match("%S+%s+(%d+)"))
    elseif kind == "ns" then
      s.ns[#s.ns + 1] = rest
    elseif kind == "pid" then
      local pid, start, what = rest:match("^(%d+)%s+(%S+)%s*(.*)$")
      if pid then
        s.pids[#s.pids + 1] = { pid = tonumber(pid), start = start,
          what = what }
      end
    elseif kind == "log" then
      s.logs[#s.logs + 1] = rest
    elseif kind == "node" then
      local n = {}
      for k, v in rest:gmatch("(%w+)=(%S*)") do n[k] = v end
      s.nodes[#s.nodes + 1] = n
    end
  end
  return s
end

-- Prefixes that have a state file.
function state.list()
  local out = proc.run({ "ls", "-1", state.dir() })
  local prefixes = {}
  for name in out:gmatch("[^\n]+") do
    local p = name:match("^(.+)%.state$")
    if p then prefixes[#prefixes + 1] = p end
  end
  table.sort(prefixes)
  return prefixes
end

function state.remove(prefix)
  os.remove(state.path(prefix))
end

return state
