--- natpunch.interfaces: a socket per interface address, for a peer on
-- several networks (peer{ each_interface = true }, docs/API.md "Several
-- interfaces and IPv6").  The peer's own socket is bound to the wildcard
-- address and leaves by the default route, so through one NAT only; a
-- socket bound to an interface's address leaves by that interface (with
-- source-based routing on the host: `ip rule add from ADDR table N`, a
-- default route via that network's router in table N), so through that
-- network's NAT.  Each such socket learns its mapping with a STUN Binding
-- to the peer's server (a rendezvous answers them), and the peer registers
-- both its local endpoint and the mapping as candidates; the udp method
-- punches from these sockets when its own socket found no path
-- (natpunch.method.udp).
--
--   local list = interfaces.open("inet", on_packet)   --> { { udp =, ip =, port = }, ... }
--   interfaces.map(list, server_ip, server_port)   -- in a task: x.mapped = "ip:port"
--   interfaces.candidates(list)                    --> { "198.18.5.2:40001", "203.0.113.15:40001", ... }
--   interfaces.close(list)
local core = require "natpunch.core"
local sched = require "natpunch.sched"
local addr = require "natpunch.addr"
local candidates = require "natpunch.candidates"

local interfaces = {}

interfaces.MAX = 4                       -- sockets at most (each adds two candidates)
local RETRANSMIT = { 0.1, 0.2, 0.4 }     -- s between Binding retransmissions

-- The interface addresses of a family worth a socket: not loopback, not
-- link-local, each once.
function interfaces.addresses(family)
  local out, seen = {}, {}
  for _, itf in ipairs(core.interface_addresses() or {}) do
    if itf.family == family and not itf.internal and not seen[itf.ip]
       and candidates.class(itf.ip) == nil and #out < interfaces.MAX then
      seen[itf.ip] = true
      out[#out + 1] = itf.ip
    end
  end
  return out
end

--- Open one socket per interface address of `family` (interfaces.addresses),
-- each bound to ip:0 with the peer's touch policy; every packet but STUN
-- answers goes to on_packet(err, data, ip, port, kind), as the peer's own
-- socket's do.  Addresses that cannot be bound are skipped.
function interfaces.open(family, on_packet)
  local list = {}
  for _, ip in ipairs(interfaces.addresses(family)) do
    local u = core.udp()
    if u:bind(ip, 0) then
      local _, port = u:getsockname()
      local x = { udp = u, ip = ip, port = port, pending = {} }
      u:touch_config{ accept = "known" }
      u:recv_start(function(err, data, fip, fport, kind)
        if not err and kind == "stun" then
          local m = core.stun.decode(data)
          local f = m and m.class ~= "request" and x.pending[m.transaction_id]
          if f then f:set(m) end
          return
        end
        on_packet(err, data, fip, fport, kind)
      end)
      list[#list + 1] = x
    else
      u:close()
    end
  end
  return list
end

-- One Binding from x's socket; the mapped "ip:port" or nil.
local function binding(x, ip, port)
  local tid = core.random_bytes(12)
  local data = core.stun.encode({ class = "request", method = "binding", transaction_id = tid })
  local f = sched.future()
  x.pending[tid] = f
  local m
  for _, wait in ipairs(RETRANSMIT) do
    if x.udp:is_closed() then break end
    x.udp:send(ip, port, data)
    m = f:wait(wait)
    if m then break end
  end
  x.pending[tid] = nil
  local a = m and (m.xor_mapped_address or m.mapped_address)
  return a and addr.format(a.ip, a.port) or nil
end

--- Learn every socket's mapping toward the server, all at once (in a
-- task): x.mapped = "ip:port" (nil when nothing answered: that network
-- does not reach the server).  Returns true when a mapping changed.
function interfaces.map(list, ip, port)
  local tasks = {}
  for i, x in ipairs(list) do
    tasks[i] = sched.spawn(function() return binding(x, ip, port) end)
  end
  local changed = false
  for i, t in ipairs(tasks) do
    local mapped = t:join()
    if mapped ~= list[i].mapped then changed = true end
    list[i].mapped = mapped
  end
  return changed
end

--- The candidates of the sockets: each one's local endpoint, then its
-- mapping when that is another address (behind a NAT).
function interfaces.candidates(list)
  local out = {}
  for _, x in ipairs(list) do
    local own = addr.format(x.ip, x.port)
    out[#out + 1] = own
    if x.mapped and x.mapped ~= own then out[#out + 1] = x.mapped end
  end
  return out
end

--- The sockets of the list.
function interfaces.sockets(list)
  local out = {}
  for i, x in ipairs(list) do out[i] = x.udp end
  return out
end

--- Close every socket of the list.
function interfaces.close(list)
  for _, x in ipairs(list or {}) do
    if not x.udp:is_closed() then x.udp:close() end
  end
end

return interfaces
