-- natpunch.lab.ip4: IPv4 text <-> number, and the lab's address rules.
--
-- The lab only ever uses the documentation ranges of RFC 5737
-- (203.0.113.0/24 TEST-NET-3 and 198.51.100.0/24 TEST-NET-2) for its
-- "public" hosts, and the benchmarking range of RFC 2544 (198.18.0.0/15)
-- for its private LANs.  Anything else is refused before a command runs.

local ip4 = {}

function ip4.parse(text)
  if type(text) ~= "string" then return nil end
  local a, b, c, d = text:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if not a then return nil end
  a, b, c, d = tonumber(a), tonumber(b), tonumber(c), tonumber(d)
  if a > 255 or b > 255 or c > 255 or d > 255 then return nil end
  return ((a * 256 + b) * 256 + c) * 256 + d
end

function ip4.format(n)
  return ("%d.%d.%d.%d"):format(n >> 24 & 255, n >> 16 & 255, n >> 8 & 255,
    n & 255)
end

-- "198.18.1.0/24" -> network number, prefix length
function ip4.parse_cidr(text)
  if type(text) ~= "string" then return nil end
  local a, len = text:match("^([%d%.]+)/(%d+)$")
  local n = ip4.parse(a)
  len = tonumber(len)
  if not n or not len or len < 8 or len > 30 then return nil end
  local mask = (0xffffffff << (32 - len)) & 0xffffffff
  if n & mask ~= n then return nil end
  return n, len
end

function ip4.contains(net, len, n)
  local mask = (0xffffffff << (32 - len)) & 0xffffffff
  return n & mask == net
end

-- RFC 5737 documentation ranges used for the lab's internet.
ip4.PUBLIC = {
  { net = ip4.parse("203.0.113.0"), len = 24, router = "203.0.113.1" },
  { net = ip4.parse("198.51.100.0"), len = 24, router = "198.51.100.1" },
}
-- RFC 2544 benchmarking range for every private LAN.
ip4.PRIVATE = { net = ip4.parse("198.18.0.0"), len = 15 }

-- The public subnet holding address text, or nil.
function ip4.public_subnet(text)
  local n = ip4.parse(text)
  if not n then return nil end
  for _, s in ipairs(ip4.PUBLIC) do
    if ip4.contains(s.net, s.len, n) then return s, n end
  end
  return nil
end

-- A usable public host address: in a public subnet, not the network,
-- broadcast or the lab's internet router (.1).
function ip4.check_public(text, what)
  local s, n = ip4.public_subnet(text)
  if not s then
    error(("lab: %s: public address %s is not in 203.0.113.0/24 or "
      .. "198.51.100.0/24"):format(what, tostring(text)), 3)
  end
  local host = n & 255
  if host == 0 or host == 1 or host == 255 then
    error(("lab: %s: %s is reserved (network, router or broadcast)")
      :format(what, text), 3)
  end
  return s, n
end

-- A private LAN prefix inside 198.18.0.0/15.
function ip4.check_lan(text, what)
  local net, len = ip4.parse_cidr(text)
  if not net or len < 15 or len > 29
    or not ip4.contains(ip4.PRIVATE.net, ip4.PRIVATE.len, net) then
    error(("lab: %s: LAN %s is not a /15../29 inside 198.18.0.0/15")
      :format(what, tostring(text)), 3)
  end
  return net, len
end

return ip4
