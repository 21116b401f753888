--- Candidate endpoints: where a peer can be reached (gathered here), where
-- an introduced peer may be reached (read from its introduction), and which
-- of them are safe to pass on or to probe.
--
--   local list = candidates.gather(udp, server_ip)  --> { "198.18.0.7:40312", ... }
--   local c = candidates.from_intro(intro, "inet", pol) --> { {ip, port, "private"}, ..., {ip, port, "public"} }
--
-- Private candidates are the addresses this socket has on its own LANs
-- (hosts with several interfaces; peers behind the same
-- NAT use their private addresses); the public one is what the rendezvous
-- saw.  Methods (natpunch.method) read them from their context.
--
-- A candidate is "ip:port" or "[ipv6]:port", parsed strictly (the address
-- with inet_pton, the port 1..65535), at most MAX_TEXT characters, at most
-- MAX_COUNT per list.  Addresses nobody should be made to send to are
-- dropped unless the policy allows their class: unspecified, loopback,
-- multicast, broadcast, link-local and reserved (CVE-2020-26262 is this bug
-- in coturn: relaying to 0.0.0.0 and ::1 reached the server itself).
--
--   local cand = require "natpunch.candidates"
--   local pol = cand.policy{ allow = { "loopback" } }
--   local ok = cand.filter({ "127.0.0.1:9", "224.0.0.1:9" }, pol)  --> { "127.0.0.1:9" }
local core = require "natpunch.core"
local addr = require "natpunch.addr"
local msg = require "natpunch.msg"

local candidates = {}

candidates.MAX_PRIVATE = 8

candidates.MAX_TEXT = 47       -- "[" + 39 (longest IPv6 text) + "]:" + 5
candidates.MAX_COUNT = 8
candidates.CLASSES = { "unspecified", "loopback", "multicast", "broadcast", "link-local", "reserved" }

local function bytes_of(s) return s:byte(1, -1) end

-- Class of a 4-byte IPv4 address, or nil for an ordinary unicast address.
local function class4(a, b, c, d)
  if a == 0 then return "unspecified" end                 -- 0.0.0.0/8 "this network" (RFC 1122)
  if a == 127 then return "loopback" end
  if a == 169 and b == 254 then return "link-local" end   -- RFC 3927
  if a >= 224 and a <= 239 then return "multicast" end
  if a == 255 and b == 255 and c == 255 and d == 255 then return "broadcast" end
  if a >= 240 then return "reserved" end                  -- 240.0.0.0/4 (RFC 1112)
  if a == 192 and b == 0 and c == 0 then return "reserved" end   -- IETF protocol assignments (RFC 6890)
  return nil
end

-- Class of a 16-byte IPv6 address.
local function class6(raw)
  local b = { bytes_of(raw) }
  local zero10 = true
  for i = 1, 10 do if b[i] ~= 0 then zero10 = false break end end
  if zero10 and b[11] == 0xff and b[12] == 0xff then        -- ::ffff:a.b.c.d (IPv4-mapped)
    return class4(b[13], b[14], b[15], b[16])
  end
  if zero10 and b[11] == 0 and b[12] == 0 then
    local rest = b[13] | b[14] | b[15]
    if rest == 0 and b[16] == 0 then return "unspecified" end   -- ::
    if rest == 0 and b[16] == 1 then return "loopback" end      -- ::1
    return "reserved"                                            -- ::a.b.c.d (deprecated, RFC 4291)
  end
  if b[1] == 0xff then return "multicast" end
  if b[1] == 0xfe and (b[2] & 0xc0) == 0x80 then return "link-local" end   -- fe80::/10
  if b[1] == 0xfe and (b[2] & 0xc0) == 0xc0 then return "reserved" end     -- fec0::/10 site-local (RFC 3879)
  if b[1] == 0x01 and b[2] == 0 and b[3] == 0 and b[4] == 0 and
     b[5] == 0 and b[6] == 0 and b[7] == 0 and b[8] == 0 then
    return "reserved"                                            -- 100::/64 discard-only (RFC 6666)
  end
  return nil
end

--- Parse one candidate strictly: ip (canonical text), port, family, class
-- (nil for ordinary unicast); or nil, reason.
function candidates.parse(text)
  if type(text) ~= "string" then return nil, "not a string" end
  if #text > candidates.MAX_TEXT then return nil, "too long" end
  local host, port = text:match("^%[([^%]]+)%]:(%d+)$")
  local v6 = host ~= nil
  if not host then host, port = text:match("^([^:%[%]]+):(%d+)$") end
  if not host then return nil, "not ip:port or [ipv6]:port" end
  if #port > 5 then return nil, "bad port" end
  port = tonumber(port)
  if port < 1 or port > 65535 then return nil, "bad port" end
  local fam, raw = core.inet_pton(host)
  if not fam or (fam == "inet6") ~= v6 then return nil, "bad address" end
  local ip = core.inet_ntop(raw)
  local class
  if fam == "inet" then class = class4(bytes_of(raw)) else class = class6(raw) end
  return ip, port, fam, class
end

--- Class of an address text ("loopback", ...) or nil for ordinary unicast;
-- false when it is not an address.
function candidates.class(ip)
  local fam, raw = core.inet_pton(ip or "")
  if not fam then return false end
  if fam == "inet" then return class4(bytes_of(raw)) end
  return class6(raw)
end

--- A policy: opts.allow = list (or set) of classes allowed anyway, e.g.
-- { "loopback" } for tests on one host; opts.max = most candidates kept.
function candidates.policy(opts)
  opts = opts or {}
  local allow = {}
  for k, v in pairs(opts.allow or {}) do
    local name = type(k) == "number" and v or (v and k)
    if name then
      local known = false
      for _, c in ipairs(candidates.CLASSES) do if c == name then known = true end end
      if not known then error("candidates: unknown address class '" .. tostring(name) .. "'", 2) end
      allow[name] = true
    end
  end
  return { allow = allow, max = opts.max or candidates.MAX_COUNT }
end

--- Whether one candidate passes the policy: ip, port, family or nil, reason.
function candidates.check(text, pol)
  local ip, port, fam, class = candidates.parse(text)
  if not ip then return nil, port end
  if class and not (pol and pol.allow[class]) then return nil, class .. " address" end
  return ip, port, fam
end

--- Keep the candidates of list (strings, or one "a,b,c" string) that pass;
-- returns the kept texts (canonical form, no duplicates) and the number
-- dropped.
function candidates.filter(list, pol)
  if type(list) == "string" then
    local t = {}
    local n = 0
    for item in list:gmatch("[^,]+") do
      n = n + 1
      if n > 4 * candidates.MAX_COUNT then break end
      t[#t + 1] = item
    end
    list = t
  end
  local out, seen, dropped = {}, {}, 0
  local max = (pol and pol.max) or candidates.MAX_COUNT
  for _, text in ipairs(list or {}) do
    local ip, port = candidates.check(text, pol)
    local canon = ip and ((ip:find(":", 1, true) and ("[" .. ip .. "]") or ip) .. ":" .. port)
    if canon and not seen[canon] and #out < max then
      seen[canon] = true
      out[#out + 1] = canon
    else
      dropped = dropped + 1
    end
  end
  return out, dropped
end

--- The private candidates of a bound UDP socket, "ip:port" strings: its own
-- address when bound to one, else one per interface address of the socket's
-- family -- of both families with families = "both" (a dual-stack socket
-- bound to [::]), IPv6 first -- on every interface (a host with several
-- LANs offers all of them).  Loopback only when the server is on loopback;
-- never link-local (fe80::/10, 169.254/16: meaningless off the link).
function candidates.gather(udp, server_ip, families)
  local ip, port = udp:getsockname()
  if ip ~= "0.0.0.0" and ip ~= "::" then return { addr.format(ip, port) } end
  local order = { addr.family(ip) }
  if families == "both" then order = { "inet6", "inet" } end
  local server_loopback = server_ip and (server_ip:match("^127%.") or server_ip == "::1")
  local out = {}
  for _, fam in ipairs(order) do
    for _, itf in ipairs(core.interface_addresses() or {}) do
      if itf.family == fam and (not itf.internal or server_loopback)
         and candidates.class(itf.ip) ~= "link-local" and #out < candidates.MAX_PRIVATE then
        out[#out + 1] = addr.format(itf.ip, port)
      end
    end
  end
  return out
end

--- The endpoints of an introduced peer in one address family, in the order
-- to try them: its private candidates ("private"), then its public endpoint
-- ("public").  intro.private is a list or the comma-separated wire text.
-- Only candidates that pass pol (candidates.policy; default: the strict
-- one) are returned: a server, or whoever forges its messages, cannot make
-- a peer probe loopback, multicast, broadcast, ... addresses.
function candidates.from_intro(intro, family, pol)
  pol = pol or candidates.policy()
  local out = {}
  local private = intro.private
  if type(private) ~= "table" then private = msg.split_list(private) end
  for _, c in ipairs(candidates.filter(private, pol)) do
    local ip, port = addr.parse(c)
    if ip and (not family or addr.family(ip) == family) then out[#out + 1] = { ip, port, "private" } end
  end
  local pip, pport, pfam = candidates.check(intro.public or "", pol)
  if pip and (not family or pfam == family) then out[#out + 1] = { pip, pport, "public" } end
  return out
end

--- Is ip a loopback address?
function candidates.is_loopback(ip)
  return candidates.class(ip) == "loopback"
end

return candidates
