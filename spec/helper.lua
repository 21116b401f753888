--- Shared by every spec: module paths, and the one way specs drive the loop
-- (busted 2 has no async tests): helper.run(fn, timeout) runs fn as the main
-- natpunch task and fails the test if it raises or does not finish in time.
local build = os.getenv("NATPUNCH_BUILD") or "build"
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = build .. "/?.so;" .. package.cpath

local helper = {}
helper.build = build
helper.tests_dir = os.getenv("NATPUNCH_TESTS") or (build .. "/test")
helper.sanitize = os.getenv("NATPUNCH_SANITIZE") == "1"
helper.lua = os.getenv("LUA") or "lua5.4"

--- Run fn as a natpunch task; the loop runs until fn returns.  Errors inside
-- fn (assertions too) fail the calling test with their traceback.
function helper.run(fn, timeout)
  local natpunch = require "natpunch"
  return natpunch.run(fn, { timeout = timeout or 10 })
end

--- Run the loop until cond() holds or timeout (seconds) passes; returns
-- whether cond held.  For specs that drive raw handles without tasks.
function helper.until_true(cond, timeout)
  local core = require "natpunch.core"
  local deadline = core.now() + (timeout or 5) * 1000
  local t = core.timer()
  t:start(10, 10, function() end)     -- wake up regularly
  while not cond() and core.now() < deadline do core.run("once") end
  t:close()
  core.run("nowait")
  return cond() and true or false
end

--- A UDP socket bound to 127.0.0.1 on a port the system picks; returns the
-- socket and that port.
function helper.socket()
  local core = require "natpunch.core"
  local u = core.udp()
  assert(u:bind("127.0.0.1", 0))
  return u, select(2, u:getsockname())
end

--- A relay on loopback between ports a_port and b_port that drops (opts.loss),
-- duplicates (opts.dup) and delays by 0-30 ms, so reorders (opts.reorder),
-- datagrams both ways, from a seeded generator (opts.seed).  Returns the
-- port to send to instead of b_port and its counters (c.close() stops it).
-- opts.drop(data, toward_b), if given, drops the datagrams it returns true for.
function helper.lossy_relay(opts, a_port, b_port)
  local core = require "natpunch.core"
  local ra, ra_port = helper.socket()
  local rb, rb_port = helper.socket()
  local rng_state = opts.seed
  local function rand()   -- small LCG: deterministic and local to this relay
    rng_state = (rng_state * 1103515245 + 12345) % 2147483648
    return rng_state / 2147483648
  end
  -- b_side_port: where b sees the relayed datagrams come from
  local c = { forwarded = 0, dropped = 0, duplicated = 0, delayed = 0, b_side_port = rb_port }
  local timers = {}
  local function forward(out, port, data)
    if (opts.drop and opts.drop(data, port == b_port)) or rand() < (opts.loss or 0) then
      c.dropped = c.dropped + 1
      return
    end
    local copies = rand() < (opts.dup or 0) and 2 or 1
    if copies == 2 then c.duplicated = c.duplicated + 1 end
    for _ = 1, copies do
      if rand() < (opts.reorder or 0) then
        c.delayed = c.delayed + 1
        local t = core.timer()
        timers[t] = true
        t:start(math.floor(rand() * 30), 0, function()
          timers[t] = nil
          t:close()
          out:send("127.0.0.1", port, data)
        end)
      else
        out:send("127.0.0.1", port, data)
      end
      c.forwarded = c.forwarded + 1
    end
  end
  ra:recv_start(function(_, data) forward(rb, b_port, data) end, { raw = true })
  rb:recv_start(function(_, data) forward(ra, a_port, data) end, { raw = true })
  c.close = function()
    ra:close(); rb:close()
    for t in pairs(timers) do t:close() end
  end
  return ra_port, c
end

function helper.is_root()
  local p = io.popen("id -u")
  local uid = p:read("*l")
  p:close()
  return uid == "0"
end

--- Shell-quote one argument.
function helper.q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

--- A shell command run without the sanitizer runtime that `make sanitize`
-- preloads (system tools' own leaks would abort them); natpunch processes
-- get it back from helper.cli().
function helper.sh(cmd)
  return "env -u LD_PRELOAD sh -c " .. helper.q(cmd)
end

--- A file's contents, "" if it cannot be read.
function helper.read_file(path)
  local f = io.open(path, "r")
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

--- A new temporary directory /tmp/natpunch-NAME.XXXXXX.
function helper.tmpdir(name)
  local p = io.popen(helper.sh("mktemp -d /tmp/natpunch-" .. name .. ".XXXXXX"))
  local d = p:read("l")
  p:close()
  return d
end

--- The command prefix that runs bin/natpunch with the right build.
function helper.cli()
  local pre = "NATPUNCH_BUILD=" .. helper.q(build) .. " "
  if helper.sanitize then
    pre = pre .. "LD_PRELOAD=" .. helper.q(os.getenv("LD_PRELOAD") or "") .. " "
  end
  return pre .. helper.lua .. " bin/natpunch"
end

--- Split output lines that are JSON objects into decoded tables.
function helper.json_lines(text)
  local json = require "natpunch.json"
  local out = {}
  for line in text:gmatch("[^\n]+") do
    if line:sub(1, 1) == "{" then out[#out + 1] = assert(json.decode(line)) end
  end
  return out
end

---------------------------------------------------------------------------
-- Command-line specs: bin/natpunch (or any command) run through sh, bounded
-- by timeout(1), background processes killed after each test:
--
--   local procs = helper.procs()              -- this file's background processes
--   after_each(procs.kill_all)                -- also when a test fails
--   local rv = helper.start_rendezvous(procs, dir)            -- rv.address, rv.port
--   local bob = procs.spawn(helper.within(30) .. " peer --server " .. rv.address
--     .. " --id bob --json", dir, "bob")
--   bob.expect('"event":"registered"')
--   local out, code, err = helper.exec(helper.within(20) .. " peer ... --json", dir)
--   local _, connected = helper.find_event(helper.events(out), "connected")

--- "timeout N env <natpunch>": the command bounded by timeout(1).  helper.cli()
-- starts with VAR=value assignments, hence env(1).  With script, the Lua
-- interpreter of helper.cli() runs that script instead of bin/natpunch.
function helper.within(seconds, script)
  local cmd = helper.cli()
  if script then cmd = cmd:gsub(" bin/natpunch$", "") .. " " .. script end
  return "timeout " .. seconds .. " env " .. cmd
end

-- seconds, from natpunch.core's clock (os.time where the C module is not built)
local function now()
  local ok, core = pcall(require, "natpunch.core")
  if ok then return core.hrtime() / 1e9 end
  return os.time()
end

--- Run a shell command (helper.sh) and wait.  Returns stdout, exit code
-- (128 + signal when killed), stderr, elapsed seconds.  With dir, stderr
-- goes to dir/run.err and is returned apart; without, it is mixed into
-- stdout and "" is returned for it.
function helper.exec(cmd, dir)
  local err = dir and (dir .. "/run.err")
  local start = now()
  local p = io.popen(helper.sh(cmd .. (err and (" 2> " .. helper.q(err)) or " 2>&1")))
  local out = p:read("a")
  local _, how, code = p:close()
  if how == "signal" then code = 128 + code end
  return out, code, err and helper.read_file(err) or "", now() - start
end

--- The events of a --json run: every stdout line must be one JSON object
-- with an `event` (raises otherwise).
function helper.events(out)
  local json = require "natpunch.json"
  local list = {}
  for line in out:gmatch("[^\n]+") do
    local ev, err = json.decode(line)
    if not (type(ev) == "table" and ev.event) then
      error("not a JSON event line: " .. line .. " " .. tostring(err), 2)
    end
    list[#list + 1] = ev
  end
  return list
end

--- The first event named name in list (from index from on): index, event.
function helper.find_event(list, name, from)
  for i = from or 1, #list do
    if list[i].event == name then return i, list[i] end
  end
  return nil
end

--- A set of background processes.  set.spawn(cmd, dir, name [, opts]) runs
-- cmd in the background with stdout in dir/name.out and stderr in
-- dir/name.err (opts.merge: both in .out) and returns bg:
--   bg.pid, bg.out, bg.err (file names)
--   bg.expect(pattern [, seconds=5])  waits, bounded, for a stdout line
--     matching pattern and returns it; raises with the output if none comes
--   bg.wait([seconds=5])  true once the process has ended
--   bg.kill()  SIGTERM
-- set.kill_all() kills every process of the set (for after_each).
function helper.procs()
  local set = { list = {} }
  local q, sh, read_file = helper.q, helper.sh, helper.read_file
  function set.spawn(cmd, dir, name, opts)
    local base = dir .. "/" .. name
    local bg = { out = base .. ".out", err = base .. ".err", pidfile = base .. ".pid" }
    local stderr = (opts and opts.merge) and "2>&1" or ("2> " .. q(bg.err))
    assert(os.execute(sh(("%s > %s %s & echo $! > %s"):format(cmd, q(bg.out), stderr, q(bg.pidfile)))))
    bg.pid = read_file(bg.pidfile):match("%d+")
    set.list[#set.list + 1] = bg
    function bg.kill()
      if bg.pid then os.execute(sh("kill " .. bg.pid .. " 2>/dev/null")) end
    end
    function bg.expect(pattern, seconds)
      for _ = 1, (seconds or 5) * 20 do
        for line in read_file(bg.out):gmatch("[^\n]+") do
          if line:find(pattern) then return line end
        end
        os.execute(sh("sleep 0.05"))
      end
      error(name .. ": no line matching '" .. pattern .. "' in time; stdout:\n" .. read_file(bg.out)
        .. "\nstderr:\n" .. read_file(bg.err), 2)
    end
    function bg.wait(seconds)
      for _ = 1, (seconds or 5) * 20 do
        if not os.execute(sh("kill -0 " .. bg.pid .. " 2>/dev/null")) then return true end
        os.execute(sh("sleep 0.05"))
      end
      return false
    end
    return bg
  end
  function set.kill_all()
    for _, bg in ipairs(set.list) do bg.kill() end
    set.list = {}
  end
  return set
end

--- `natpunch rendezvous --listen 127.0.0.1:0 --json [args]` in the
-- background of procs (60 s at most), once it listens: bg with .address
-- ("127.0.0.1:PORT") and .port (string).
function helper.start_rendezvous(procs, dir, args)
  local rv = procs.spawn(helper.within(60) .. " rendezvous --listen 127.0.0.1:0 --json"
    .. (args and (" " .. args) or ""), dir, "rv")
  local json = require "natpunch.json"
  rv.address = assert(json.decode(rv.expect('"event":"listening"'))).address
  rv.port = rv.address:match("^127%.0%.0%.1:(%d+)$")
  if not rv.port then error("rendezvous not on 127.0.0.1: " .. tostring(rv.address), 2) end
  return rv
end


---------------------------------------------------------------------------
-- Lua-API specs on loopback (call inside helper.run): a rendezvous and
-- peers that register with it (authenticated as every peer is: cookie,
-- Ed25519 id key, MACed control messages).

--- natpunch.rendezvous(opts) listening on 127.0.0.1:0 unless opts.listen
-- says otherwise.  Returns the server, its address, ip, port (number).
function helper.rendezvous(opts)
  local natpunch = require "natpunch"
  local o = { listen = "127.0.0.1:0" }
  for k, v in pairs(opts or {}) do o[k] = v end
  local rv = assert(natpunch.rendezvous(o))
  local ip, port = rv:address():match("^(.-):(%d+)$")
  return rv, rv:address(), ip, tonumber(port)
end

--- natpunch.peer{ server = srv, id = id, bind = "127.0.0.1:0" } plus the
-- options of extra (which win).
function helper.peer(srv, id, extra)
  local natpunch = require "natpunch"
  local o = { server = srv, id = id, bind = "127.0.0.1:0" }
  for k, v in pairs(extra or {}) do o[k] = v end
  return assert(natpunch.peer(o))
end


--- A port free on 127.0.0.1 now, for kind "udp" or "tcp" (bound, read and
-- released; a server started next is likely, not certain, to get it).
function helper.free_port(kind)
  local core = require "natpunch.core"
  local h = kind == "tcp" and core.tcp() or core.udp()
  assert(h:bind("127.0.0.1", 0))
  local _, port = h:getsockname()
  h:close()
  core.run("nowait")
  return port
end

return helper
