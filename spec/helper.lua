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
