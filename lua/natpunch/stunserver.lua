--- An RFC 5780 NAT behaviour discovery server: four UDP sockets (primary
-- and alternate address, primary and alternate port) answering Binding
-- requests with CHANGE-REQUEST, RESPONSE-ORIGIN, OTHER-ADDRESS,
-- RESPONSE-PORT and PADDING, and RFC 3489 "classic" requests with
-- SOURCE-ADDRESS and CHANGED-ADDRESS (Debian's `stun` client).
--
--   local srv = assert(stunserver.new{ listen = "203.0.113.2:3478",
--                                      alternate = "203.0.113.3" })
--   print(srv:address(), srv:other())     -- 203.0.113.2:3478 203.0.113.3:3479
--
-- Without an alternate address there is one socket; OTHER-ADDRESS is then
-- never sent (RFC 5780 §7.4: a server that sends it with its own IP makes
-- clients conclude endpoint-independent filtering) and a CHANGE-REQUEST
-- with a flag set gets a 420 error (RFC 5780 §7.2).
--
-- Traffic rules, so the server cannot be used against a third party:
-- answers go only to the requester's own IP (RESPONSE-PORT changes the port
-- only); an answer is never larger than its request, except that a request
-- too small for the RFC 5780 attributes (XOR-MAPPED-ADDRESS, OTHER-ADDRESS,
-- RESPONSE-ORIGIN) still gets those (56 bytes for IPv4, 92 for IPv6: the
-- optional MAPPED-ADDRESS and SOFTWARE are then left out); a request with
-- PADDING gets an answer padded to the size of the request, never more.
local core = require "natpunch.core"
local addr = require "natpunch.addr"

local stunserver = {}

local Server = {}
Server.__index = Server

-- header + three address attributes (RFC 5780 §6.1)
local MIN_ANSWER = { inet = 20 + 3 * 12, inet6 = 20 + 3 * 24 }
local ATTR_CHANGE_REQUEST = 0x0003
local BIND_TRIES = 20 -- port 0: tries to find P and P+1 free on both addresses

local function counters()
  return { requests = 0, answered = 0, changed = 0, response_port = 0, padded = 0,
    refused = 0, dropped = 0 }
end

function Server:_count(k) self.counters[k] = self.counters[k] + 1 end

-- The 420 answer to a CHANGE-REQUEST this server cannot honour.
local function refuse(m)
  return core.stun.encode({ class = "error", method = "binding", transaction_id = m.transaction_id,
    classic = m.classic, error = { code = 420, reason = "No alternate address" },
    unknown_attributes = { ATTR_CHANGE_REQUEST } })
end

-- The answer padded to `size` bytes (PADDING, RFC 5780 §7.6).
local function padded(answer, m, size)
  local a = core.stun.decode(answer)
  if not a then return answer end
  local pad = (size - #answer - 4) & ~3
  if pad <= 0 then return answer end
  return core.stun.encode({ class = "success", method = "binding", transaction_id = a.transaction_id,
    xor_mapped_address = a.xor_mapped_address, other_address = a.other_address,
    response_origin = a.response_origin, padding = pad, fingerprint = m.fingerprint ~= nil })
end

--- Handle one datagram that arrived on socket (ai, pi) (1 = primary, 2 =
-- alternate address / port) from ip:port.  The owner of an adopted socket
-- calls this for its STUN packets; the server's own sockets call it too.
function Server:handle(ai, pi, data, ip, port)
  self:_count("requests")
  local m = core.stun.decode(data)
  if not m or m.class ~= "request" or m.method ~= "binding" then return self:_count("dropped") end
  local cr = m.change_request or {}
  local out_a, out_p = ai, pi
  if cr.ip or cr.port then
    if not self.alternate then
      self:_count("refused")
      return self.socks[ai][pi]:send(ip, port, refuse(m))
    end
    if cr.ip then out_a = 3 - ai end
    if cr.port then out_p = 3 - pi end
    self:_count("changed")
  end
  local dport = port
  if m.response_port then
    if m.response_port == 0 then return self:_count("dropped") end
    dport = m.response_port
    self:_count("response_port")
  end
  local sock = self.socks[out_a][out_p]
  local oip, oport = sock:getsockname()
  local opts = { origin = { ip = oip, port = oport }, change_ok = true, response_port_ok = true,
    max_size = math.max(#data, MIN_ANSWER[addr.family(ip)]) }
  if self.alternate then
    local xip, xport = self.socks[3 - ai][3 - pi]:getsockname()
    opts.other = { ip = xip, port = xport }
  end
  local answer = core.stun.answer_binding(data, ip, port, self.software, opts)
  if not answer then return self:_count("dropped") end
  if m.padding and not m.classic and #data > #answer then
    answer = padded(answer, m, #data)
    self:_count("padded")
  end
  sock:send(ip, dport, answer)
  self:_count("answered")
end

--- Split an alternate "ip2", "ip2:port2" or "[v6]:port2" into ip2, port2
-- (nil when absent); nil, message when it is neither.
function stunserver.parse_alternate(text)
  text = tostring(text)
  local ip, port = text:match("^([%d%.]+):(%d+)$")
  if not ip then ip, port = text:match("^%[([%x:%.]+)%]:(%d+)$") end
  if not ip and (text:match("^[%d%.]+$") or text:match("^[%x:]+$")) and text:find("[%.:]") then ip = text end
  port = tonumber(port)
  if not ip or (port and (port < 1 or port > 65535)) then
    return nil, "alternate must be IP or IP:PORT, got '" .. text .. "'"
  end
  return ip, port
end

local function bind(ip, port, reuse)
  local u = core.udp()
  local ok, err, code = u:bind(ip, port, { reuseaddr = reuse })
  if not ok then
    u:close()
    return nil, err, code
  end
  return u
end

function Server:_start(sock, ai, pi)
  sock:recv_start(function(err, data, ip, port, kind)
    if err then return end
    if kind ~= "stun" then return self:_count("dropped") end
    self:handle(ai, pi, data, ip, port)
  end)
end

-- Open the sockets this server owns; socks[1][1] may be adopted.
function Server:_open(ip1, port1, ip2, port2)
  local opened = {}
  local function fail(...)
    for _, u in ipairs(opened) do u:close() end
    return nil, ...
  end
  local first = self.socks[1][1]
  if not first then
    local u, err, code = bind(ip1, port1, self.reuseaddr)
    if not u then return fail(err, code) end
    opened[#opened + 1] = u
    first = u
  end
  local _, p1 = first:getsockname()
  if ip2 then
    local p2 = port2 or p1 + 1
    if p2 > 65535 or p2 == p1 then return fail("alternate port out of range", "EINVAL") end
    local want = { { 1, 2, ip1, p2 }, { 2, 1, ip2, p1 }, { 2, 2, ip2, p2 } }
    local got = {}
    for _, w in ipairs(want) do
      local u, err, code = bind(w[3], w[4], self.reuseaddr)
      if not u then
        for _, g in ipairs(got) do g[3]:close() end
        if first ~= self.socks[1][1] then first:close() end
        return nil, err, code
      end
      got[#got + 1] = { w[1], w[2], u }
    end
    for _, g in ipairs(got) do self.socks[g[1]][g[2]] = g[3] end
  end
  if first ~= self.socks[1][1] then self.socks[1][1] = first end
  return true
end

--- Create and start a server.  opts: listen ("ip:port", port 0 picks free
-- ports), alternate ("ip2" or "ip2:port2": port2, the alternate port, used on
-- both addresses, defaults to port+1), software (SOFTWARE text, false for
-- none), udp (an already bound socket to adopt as the primary one: its
-- owner passes its STUN packets to server:handle(1, 1, ...)), reuseaddr.
-- Returns the server or nil, message, code.
function stunserver.new(opts)
  if type(opts) ~= "table" then error("bad argument #1 to 'stunserver' (table expected)", 2) end
  local self = setmetatable({ counters = counters(), socks = { {}, {} }, reuseaddr = opts.reuseaddr },
    Server)
  if opts.software == nil then self.software = "natpunch " .. core.version
  elseif opts.software then self.software = opts.software end
  local ip1, port1
  if opts.udp then
    self.socks[1][1] = opts.udp
    self.adopted = true
    ip1, port1 = opts.udp:getsockname()
  else
    ip1, port1 = addr.check(opts.listen or "0.0.0.0:3478", "stunserver: listen", 2)
  end
  local ip2, port2
  if opts.alternate then
    ip2, port2 = stunserver.parse_alternate(opts.alternate)
    if not ip2 then error("stunserver: " .. port2, 2) end
    if addr.family(ip2) ~= addr.family(ip1) then
      error("stunserver: alternate address of another family than listen", 2)
    end
    if ip2 == ip1 then error("stunserver: alternate address must differ from the listen address", 2) end
    self.alternate = true
  end
  local tries = (port1 == 0 and not port2 and not self.adopted) and BIND_TRIES or 1
  local ok, err, code
  for _ = 1, tries do
    ok, err, code = self:_open(ip1, port1, ip2, port2)
    if ok or code ~= "EADDRINUSE" then break end
  end
  if not ok then return nil, err, code end
  for a = 1, 2 do
    for p = 1, 2 do
      local s = self.socks[a][p]
      if s and not (a == 1 and p == 1 and self.adopted) then self:_start(s, a, p) end
    end
  end
  return self
end

--- "ip:port" of the primary socket.
function Server:address()
  local ip, port = self.socks[1][1]:getsockname()
  return addr.format(ip, port)
end

--- "ip:port" of the alternate address and port (OTHER-ADDRESS), or nil.
function Server:other()
  if not self.alternate then return nil end
  local ip, port = self.socks[2][2]:getsockname()
  return addr.format(ip, port)
end

--- The four (or one) addresses served, primary first.
function Server:addresses()
  local out = {}
  for a = 1, 2 do
    for p = 1, 2 do
      local s = self.socks[a][p]
      if s then out[#out + 1] = addr.format(s:getsockname()) end
    end
  end
  return out
end

function Server:stats()
  local s = {}
  for k, v in pairs(self.counters) do s[k] = v end
  return s
end

--- Close the sockets the server opened (an adopted one stays its owner's).
function Server:close()
  if self.closed then return end
  self.closed = true
  for a = 1, 2 do
    for p = 1, 2 do
      local s = self.socks[a][p]
      if s and not (a == 1 and p == 1 and self.adopted) then s:close() end
    end
  end
end
Server.__close = Server.close
Server.__gc = Server.close

return setmetatable(stunserver, { __call = function(_, opts) return stunserver.new(opts) end })
