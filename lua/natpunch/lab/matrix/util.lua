-- natpunch.lab.matrix.util: what the matrix's runner and its case kinds
-- (natpunch.lab.matrix.kinds.*) share: a clock, polling, the JSON events of
-- a process's log, and stopping a process with what it started.
local proc = require "natpunch.lab.proc"

local util = {}

util.STEP = 0.02                 -- polling interval (s)

function util.clock_ms()
  local p = io.open("/proc/uptime", "r")
  local up = p and p:read("n")
  if p then p:close() end
  return math.floor((up or os.time()) * 1000)
end

-- JSON lines of a text (a process log from byte `from` on), decoded, in order.
function util.decode_lines(text)
  local json = require "natpunch.json"
  local out = {}
  for line in text:gmatch("[^\n]+") do
    if line:sub(1, 1) == "{" then
      local ev = json.decode(line)
      if ev then out[#out + 1] = ev end
    end
  end
  return out
end

function util.events(h, from)
  local text = h:output()
  if from then text = text:sub(from + 1) end
  return util.decode_lines(text)
end

-- The first event of a name in a text, by name: { connected = ev, ... }.
function util.first_events(text)
  local out = {}
  for _, ev in ipairs(util.decode_lines(text)) do
    if ev.event and out[ev.event] == nil then out[ev.event] = ev end
  end
  return out
end

function util.find(evs, pred)
  for _, ev in ipairs(evs) do
    if pred(ev) then return ev end
  end
  return nil
end

-- Poll until cond() holds or seconds pass; returns cond()'s value.
function util.poll(cond, seconds)
  local deadline = util.clock_ms() + seconds * 1000
  repeat
    local v = cond()
    if v then return v end
    proc.sleep(util.STEP)
  until util.clock_ms() >= deadline
  return cond()
end

-- A process and its descendants, children first read from
-- /proc/PID/task/*/children, as handles that know their start time (so a
-- reused pid is never signalled).
local function tree(h, out)
  out = out or {}
  out[#out + 1] = h
  local tasks = proc.run({ "sh", "-c", "cat /proc/" .. math.tointeger(h.pid)
    .. "/task/*/children 2>/dev/null" })
  for pid in tasks:gmatch("%d+") do
    local start = proc.start_time(pid)
    if start then tree(proc.handle(tonumber(pid), start), out) end
  end
  return out
end

-- Stop a process started through `sh -c` and what it started.  Only ever
-- positive pids: a negative one means a process group to the shell's kill
-- builtin, but procps kill(1) (which runs when the lab drops LD_PRELOAD
-- through env) needs "--" before it and otherwise signals every process.
function util.stop_tree(h)
  if not h:alive() then return end
  local all = tree(h)
  for i = #all, 1, -1 do all[i]:stop(1) end
end

-- argv of `natpunch ARGS` in a lab host: cmd is the runner's command
-- (this checkout's bin/natpunch), with the lab's LD_PRELOAD dropped.
function util.natpunch(cmd, args)
  local argv = {}
  for _, w in ipairs(cmd) do argv[#argv + 1] = w end
  for _, w in ipairs(args) do argv[#argv + 1] = w end
  return proc.preload(argv)
end

-- Start coturn in host `host` of lab t and wait until it answers a Binding
-- request from host `from` (natpunch.lab.coturn).  Returns its handle;
-- raises when it does not.
function util.start_coturn(t, host, from, ip, secret, name)
  local h, err, turnd = require("natpunch.lab.coturn").start(t,
    { host = host, probe = from, ip = ip, secret = secret, name = name, wait = 10 })
  if not h then
    turnd:stop()
    error("matrix: " .. err, 0)
  end
  return h
end

--- The servers of a kind that relays: coturn in s2 (address ip, REST-API
-- secret, checked from host p) and a rendezvous in s1 at rv that hands
-- out its credentials, into u.procs (util.stop_procs stops them).
function util.start_relay_servers(u, rv, ip, secret, name)
  u.procs = {}
  u.procs[1] = util.start_coturn(u.t, "s2", "p", ip, secret, name)
  u.procs[2] = util.start_rendezvous(u.t, u.cmd, "s1", rv, { "--turn", ip .. ":3478", "--turn-secret", secret })
end

-- argv running require(module)[fn](args...) with lua5.4 (or $LUA) in a lab
-- host, with this process's module paths (each arg passed as a string)
function util.lua_argv(module, fn, args)
  local quoted = {}
  for i, a in ipairs(args) do quoted[i] = ("%q"):format(tostring(a)) end
  local code = ("package.path = %q; package.cpath = %q; require(%q).%s(%s)")
    :format(package.path, package.cpath, module, fn, table.concat(quoted, ", "))
  return proc.preload({ os.getenv("LUA") or "lua5.4", "-e", code })
end

-- Start `natpunch rendezvous --listen LISTEN --json ARGS...` in host `host`
-- of lab t (cmd: the runner's command) and wait until it listens; returns
-- its handle, raises (with what it printed) when it does not.
function util.start_rendezvous(t, cmd, host, listen, args)
  local argv = { "rendezvous", "--listen", listen, "--json" }
  for _, w in ipairs(args or {}) do argv[#argv + 1] = w end
  local h = t:spawn(host, util.natpunch(cmd, argv))
  if not h:expect('"event":"listening"', 10) then
    h:stop()
    error("matrix: the rendezvous on " .. listen .. " in " .. host .. " did not start: " .. h:output(), 0)
  end
  return h
end

-- Stop the processes a case kind keeps in u.procs (its down()).
function util.stop_procs(u)
  for _, h in ipairs(u.procs or {}) do h:stop() end
  u.procs = {}
end

return util
