--- Host names to addresses, on the loop (libuv runs getaddrinfo in its
-- thread pool; the loop and every other task keep running).
--
--   local ip = assert(natpunch.dns.resolve("localhost"))      --> "127.0.0.1"
--   local all = assert(natpunch.dns.lookup("example.org"))    --> { "2001:db8::1", "203.0.113.5" }
--
-- Numeric addresses are returned as they are, without a lookup.
local core = require "natpunch.core"
local sched = require "natpunch.sched"

local dns = {}

local function numeric(host)
  return host:match("^%d+%.%d+%.%d+%.%d+$") or (host:find(":", 1, true) and host:match("^[%x:%.]+$"))
end

--- Every address of host (in a task): a list of address strings, or nil,
-- message.  family: "inet", "inet6" or nil (both).  timeout in seconds
-- (default 10).
function dns.lookup(host, family, timeout)
  if type(host) ~= "string" or host == "" then error("bad argument #1 to 'lookup' (host name expected)", 2) end
  if numeric(host) then return { host } end
  local fut = sched.future()
  local ok, err = core.getaddrinfo(host, family, function(e, list) fut:set(e, list) end)
  if not ok then return nil, err end
  local e, list = fut:wait(timeout or 10)
  if e == nil and list == "timeout" then return nil, "timeout resolving '" .. host .. "'" end
  if e then return nil, e end
  if #list == 0 then return nil, "no address for '" .. host .. "'" end
  return list
end

--- One address of host (in a task), IPv4 first unless family says
-- otherwise; nil, message if it has none.
function dns.resolve(host, family, timeout)
  local list, err = dns.lookup(host, family, timeout)
  if not list then return nil, err end
  for _, ip in ipairs(list) do
    if not ip:find(":", 1, true) then return ip end
  end
  return list[1]
end

return dns
