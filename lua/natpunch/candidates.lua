--- Candidate endpoints: where a peer can be reached (gathered here) and
-- where an introduced peer may be reached (read from its introduction).
--
--   local list = candidates.gather(udp, server_ip)  --> { "198.18.0.7:40312", ... }
--   local c = candidates.from_intro(intro, "inet")   --> { {ip, port, "private"}, ..., {ip, port, "public"} }
--
-- Private candidates are the addresses this socket has on its own LANs
-- (seed 002: hosts with several interfaces; seed 003: peers behind the same
-- NAT use their private addresses); the public one is what the rendezvous
-- saw.  Methods (natpunch.method) read them from their context.
local core = require "natpunch.core"
local addr = require "natpunch.addr"
local msg = require "natpunch.msg"

local candidates = {}

candidates.MAX_PRIVATE = 8

--- The private candidates of a bound UDP socket, "ip:port" strings: its own
-- address when bound to one, else one per interface address of the socket's
-- family (loopback only when the server is on loopback; never link-local).
function candidates.gather(udp, server_ip)
  local ip, port = udp:getsockname()
  if ip ~= "0.0.0.0" and ip ~= "::" then return { addr.format(ip, port) } end
  local fam = addr.family(ip)
  local server_loopback = server_ip and (server_ip:match("^127%.") or server_ip == "::1")
  local out = {}
  for _, itf in ipairs(core.interface_addresses() or {}) do
    if itf.family == fam and (not itf.internal or server_loopback)
       and not itf.ip:lower():match("^fe80") then
      out[#out + 1] = addr.format(itf.ip, port)
      if #out >= candidates.MAX_PRIVATE then break end
    end
  end
  return out
end

--- The endpoints of an introduced peer in one address family, in the order
-- to try them: its private candidates ("private"), then its public endpoint
-- ("public").  intro.private is a list or the comma-separated wire text.
function candidates.from_intro(intro, family)
  local out = {}
  local private = intro.private
  if type(private) ~= "table" then private = msg.split_list(private) end
  for _, c in ipairs(private) do
    local ip, port = addr.parse(c)
    if ip and (not family or addr.family(ip) == family) then out[#out + 1] = { ip, port, "private" } end
  end
  local pip, pport = addr.parse(intro.public or "")
  if pip then out[#out + 1] = { pip, pport, "public" } end
  return out
end

return candidates
