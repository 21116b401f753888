--- A private redis-server for specs: on 127.0.0.1, a free port, a temporary
-- directory, no persistence; started and stopped by the spec itself (by
-- pid), never left running.
local helper = require "spec.helper"

local M = {}
local Server = {}
Server.__index = Server

M.LIFETIME = 600   -- seconds: the longest a spec's redis-server can live

M.available = os.execute("command -v redis-server >/dev/null 2>&1") == true

--- Start (or restart, on the same port) the server; waits until it answers.
function Server:start()
  assert(not self.pid, "redis-server already running")
  os.remove(self.dir .. "/pid")
  -- under `timeout`, so that even a spec process that crashes before its
  -- teardown leaves no redis-server behind for long
  local cmd = string.format("timeout -s KILL %d redis-server --bind 127.0.0.1 --port %d --dir %s --save '' "
    .. "--appendonly no --daemonize no --pidfile %s/pid --logfile %s/log --protected-mode no "
    .. "</dev/null >/dev/null 2>&1 &", M.LIFETIME, self.port, helper.q(self.dir), helper.q(self.dir),
    helper.q(self.dir))
  assert(os.execute(helper.sh(cmd)), "cannot start redis-server")
  for _ = 1, 100 do
    local pid = tonumber(helper.read_file(self.dir .. "/pid"):match("%d+"))
    if pid and os.execute(helper.sh("redis-cli -p " .. self.port .. " ping >/dev/null 2>&1")) then
      self.pid = pid
      return self
    end
    os.execute("sleep 0.05")
  end
  error("redis-server did not start: " .. helper.read_file(self.dir .. "/log"))
end

--- Kill it (SIGKILL: as if it crashed) and wait until it is gone.
function Server:kill()
  if not self.pid then return end
  os.execute("kill -9 " .. self.pid .. " 2>/dev/null")
  for _ = 1, 100 do
    if not os.execute("kill -0 " .. self.pid .. " 2>/dev/null") then break end
    os.execute("sleep 0.02")
  end
  self.pid = nil
end

--- redis-cli with arguments; its output.
function Server:cli(args)
  local p = io.popen(helper.sh("redis-cli -p " .. self.port .. " " .. args))
  local out = p:read("a")
  p:close()
  return out
end

function Server:stop()
  self:kill()
  if self.dir then os.execute("rm -rf " .. helper.q(self.dir)) end
  self.dir = nil
end

function M.start()
  local dir = assert(helper.tmpdir("redis"))
  local s = setmetatable({ dir = dir, port = helper.free_port("tcp") }, Server)
  return s:start()
end

return M
