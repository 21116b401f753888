-- natpunch.lab.cleanup: removing labs by prefix, also what a crashed run
-- left behind (from its state file, lab/state.lua, and by name), listing
-- the labs that exist, and reaching into one from outside (`natpunch lab
-- exec`).
local proc = require "natpunch.lab.proc"
local state = require "natpunch.lab.state"

local cleanup = {}


local function netns_list()
  local out = proc.run({ "ip", "netns", "list" })
  local names = {}
  for name in out:gmatch("(%S+)[^\n]*") do names[#names + 1] = name end
  return names
end

local function starts_with(s, prefix)
  return s:sub(1, #prefix) == prefix
end

-- Stop every process inside ns (the lab's own, a user's `lab exec`), so the
-- namespace really goes away when it is deleted.
local function stop_ns_pids(ns)
  for _, sig in ipairs({ "TERM", "KILL" }) do
    local out = proc.run({ "ip", "netns", "pids", ns })
    local any = false
    for pid in out:gmatch("%d+") do
      any = true
      proc.run({ "kill", "-" .. sig, pid })
    end
    if not any then return end
    proc.sleep(0.2)
  end
end

-- Remove everything the lab with this prefix made: its processes, its
-- namespaces (which takes their links, bridges and nft tables along), stray
-- links in the root namespace, its logs and its state file.  Without a
-- prefix, every lab that has a state file.  Returns what was removed.
function cleanup.down_all(prefix)
  if prefix == nil then
    local removed = {}
    for _, p in ipairs(state.list()) do
      for _, r in ipairs(cleanup.down_all(p)) do removed[#removed + 1] = r end
    end
    return removed
  end
  assert(type(prefix) == "string" and prefix:match("^[a-z][a-z0-9]*$"),
    "lab.down_all: bad prefix")
  local removed = {}
  local s = state.read(prefix) or { ns = {}, pids = {}, logs = {} }
  for _, r in ipairs(s.pids) do
    local h = proc.handle(r.pid, r.start)
    if h:alive() then
      h:stop(1)
      removed[#removed + 1] = "pid " .. r.pid
    end
  end
  local seen, names = {}, {}
  for _, ns in ipairs(s.ns) do
    if not seen[ns] then seen[ns] = true; names[#names + 1] = ns end
  end
  for _, ns in ipairs(netns_list()) do
    if starts_with(ns, prefix .. "-") and not seen[ns] then
      seen[ns] = true
      names[#names + 1] = ns
    end
  end
  local present = {}
  for _, ns in ipairs(netns_list()) do present[ns] = true end
  for i = #names, 1, -1 do
    local ns = names[i]
    if present[ns] then
      stop_ns_pids(ns)
      proc.run({ "ip", "netns", "del", ns })
      removed[#removed + 1] = "netns " .. ns
    end
  end
  -- The lab creates nothing in the root namespace; anything there with the
  -- prefix is a leftover of a crash mid-way.
  local links = proc.run({ "ip", "-o", "link", "show" })
  for name in links:gmatch("%d+: ([^:@%s]+)") do
    if starts_with(name, prefix) then
      proc.run({ "ip", "link", "del", name })
      removed[#removed + 1] = "link " .. name
    end
  end
  for _, log in ipairs(s.logs) do os.remove(log) end
  state.remove(prefix)
  return removed
end

-- Labs that have a state file: { {prefix, created, nodes, alive}, ... }.
function cleanup.list()
  local labs = {}
  local present = {}
  for _, ns in ipairs(netns_list()) do present[ns] = true end
  for _, prefix in ipairs(state.list()) do
    local s = state.read(prefix)
    if s then
      local alive = 0
      for _, ns in ipairs(s.ns) do
        if present[ns] then alive = alive + 1 end
      end
      local procs = 0
      for _, r in ipairs(s.pids) do
        if proc.alive(r.pid, r.start) then procs = procs + 1 end
      end
      labs[#labs + 1] = { prefix = prefix, created = s.created,
        nodes = s.nodes, namespaces = #s.ns, namespaces_present = alive,
        processes = procs }
    end
  end
  return labs
end

-- Run argv inside host of an existing lab (from its state file).
function cleanup.exec_in(prefix, host, argv)
  local ns = prefix .. "-" .. host
  local present = false
  for _, n in ipairs(netns_list()) do present = present or n == ns end
  if not present then return nil, ("no host %q in lab %s"):format(host, prefix) end
  local full = { "ip", "netns", "exec", ns }
  for _, a in ipairs(argv) do full[#full + 1] = a end
  return full
end

return cleanup
