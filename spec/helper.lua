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

--- A relay on loopback between ports a_port and b_port that drops (opts.loss),
-- duplicates (opts.dup) and delays by 0-30 ms, so reorders (opts.reorder),
-- datagrams both ways, from a seeded generator (opts.seed).  Returns the
-- port to send to instead of b_port and its counters (c.close() stops it).
-- opts.drop(data, toward_b), if given, drops the datagrams it returns true for.
function helper.lossy_relay(opts, a_port, b_port)
  local core = require "natpunch.core"
  local function socket()
    local u = core.udp()
    assert(u:bind("127.0.0.1", 0))
    return u, select(2, u:getsockname())
  end
  local ra, ra_port = socket()
  local rb, rb_port = socket()
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

return helper
