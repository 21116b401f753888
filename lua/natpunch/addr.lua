--- Endpoint text: "203.0.113.7:3478" and "[2001:db8::1]:3478".
local addr = {}

--- Split "ip:port" into ip, port (number); nil, message on bad input.
function addr.parse(text)
  if type(text) ~= "string" then return nil, "address must be a string 'ip:port'" end
  local ip, port = text:match("^%[([%x:%.]+)%]:(%d+)$")
  if not ip then ip, port = text:match("^([%d%.]+):(%d+)$") end
  if not ip then return nil, "invalid address '" .. text .. "' (expected ip:port or [ipv6]:port)" end
  port = tonumber(port)
  if port > 65535 then return nil, "port out of range in '" .. text .. "'" end
  return ip, port
end

--- Like parse, but raises (for arguments given by the caller).
function addr.check(text, what, level)
  local ip, port = addr.parse(text)
  if not ip then error((what and (what .. ": ") or "") .. port, (level or 1) + 1) end
  return ip, port
end

function addr.format(ip, port)
  if ip:find(":", 1, true) then return "[" .. ip .. "]:" .. port end
  return ip .. ":" .. port
end

local function v4(ip)
  local a, b, c, d = ip:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if not a then return nil end
  return tonumber(a), tonumber(b), tonumber(c), tonumber(d)
end

--- Private, link-local, loopback or benchmark (198.18.0.0/15) address?
-- Used to label a path "private" (LAN) vs "public".
function addr.is_private(ip)
  local a, b = v4(ip)
  if a then
    return a == 10 or a == 127 or (a == 172 and b >= 16 and b <= 31) or (a == 192 and b == 168)
      or (a == 169 and b == 254) or (a == 198 and (b == 18 or b == 19)) or (a == 100 and b >= 64 and b <= 127)
  end
  local l = ip:lower()
  return l == "::1" or l:match("^f[cd]") ~= nil or l:match("^fe[89ab]") ~= nil
end

function addr.family(ip)
  return ip:find(":", 1, true) and "inet6" or "inet"
end

return addr
