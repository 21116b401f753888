--- A private coturn turnserver for specs: on 127.0.0.1, a free port, a
-- temporary directory, relay ports from a random range; started and stopped
-- by the spec itself (by pid, under `timeout`), never left running.
--   local srv = turn_server.start{ user = "alice:wonderland" }   -- long-term
--   local srv = turn_server.start{ secret = "s3cret" }            -- REST API
--   local srv = turn_server.start{ ip = "::1" }   -- listening and relaying on IPv6 loopback
--   local srv = turn_server.start{ ip = "::1", relay = { "::1", "127.0.0.1" } }   -- relaying on both
local helper = require "spec.helper"

local M = {}
local Server = {}
Server.__index = Server

M.LIFETIME = 600   -- seconds: the longest a spec's turnserver can live
M.REALM = "natpunch.test"

-- coturn's programs are not built with the sanitizers `make sanitize`
-- preloads for natpunch's own processes
local NO_SAN = "env -u LD_PRELOAD "

M.available = os.execute("command -v turnserver >/dev/null 2>&1") == true

function Server:stop()
  if self.dir then
    -- the turnserver and the `timeout` above it: both name the config
    os.execute(NO_SAN .. "pkill -9 -f " .. helper.q(self.dir .. "/turn.conf") .. " 2>/dev/null")
    self.pid = nil
  end
  if self.dir then os.execute("rm -rf " .. helper.q(self.dir)) end
  self.dir = nil
end

function Server:log()
  return helper.read_file(self.dir .. "/turn.log")
end

function M.start(opts)
  opts = opts or {}
  local dir = assert(helper.tmpdir("coturn"))
  local port = helper.free_port("udp")
  local lo = 20000 + math.random(0, 400) * 100
  local ip = opts.ip or "127.0.0.1"
  local lines = {
    "listening-port=" .. port, "listening-ip=" .. ip,
    "min-port=" .. lo, "max-port=" .. (lo + 99), "realm=" .. M.REALM,
    "allow-loopback-peers", "no-tcp", "no-tls", "no-dtls", "no-cli", "no-tcp-relay",
    "log-file=" .. dir .. "/turn.log", "simple-log", "pidfile=" .. dir .. "/pid",
    "userdb=" .. dir .. "/turn.db",
  }
  for _, r in ipairs(opts.relay or { ip }) do lines[#lines + 1] = "relay-ip=" .. r end
  if opts.secret then
    lines[#lines + 1] = "use-auth-secret"
    lines[#lines + 1] = "static-auth-secret=" .. opts.secret
  else
    lines[#lines + 1] = "lt-cred-mech"
    lines[#lines + 1] = "user=" .. (opts.user or "alice:wonderland")
  end
  local f = assert(io.open(dir .. "/turn.conf", "w"))
  f:write(table.concat(lines, "\n"), "\n")
  f:close()
  local s = setmetatable({ dir = dir, port = port, ip = ip,
    address = (ip:find(":", 1, true) and "[" .. ip .. "]:" or ip .. ":") .. port }, Server)
  local cmd = string.format(NO_SAN .. "timeout -s KILL %d turnserver -c %s </dev/null >/dev/null 2>&1 &",
    M.LIFETIME, helper.q(dir .. "/turn.conf"))
  assert(os.execute(helper.sh(cmd)), "cannot start turnserver")
  for _ = 1, 100 do
    s.pid = s.pid or tonumber(helper.read_file(dir .. "/pid"):match("%d+") or "")
    if s.pid and os.execute(helper.sh(NO_SAN .. "timeout 1 turnutils_stunclient -p " .. port
        .. " " .. ip .. " 2>/dev/null | grep -q 'reflexive addr'")) then
      return s
    end
    os.execute("sleep 0.05")
  end
  local log = s:log()
  s:stop()
  error("turnserver did not start: " .. log)
end

return M
