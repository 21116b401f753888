--- TCP as a transport of natpunch.peer (natpunch.peer{ transport = "tcp" |
-- "auto" | "tcp,udp" | "udp,tcp" }): the peer also registers with the
-- server's STUNT service (natpunch.stunt) and connects over a punched TCP
-- connection, with framed send/touch (natpunch.tcp_session).  "auto"
-- follows seed 002: TCP first, then UDP.  A transport that fails before the
-- last one is reported as {"event":"transport_failed","transport":...} and
-- the next is tried; the server records the TCP failure either way.
local core = require "natpunch.core"

local peer_tcp = {}

local KNOWN = { udp = true, tcp = true }

--- The transport order from opts.transport; raises on a bad value.
function peer_tcp.transports(spec, level)
  if spec == nil then return { "udp" } end
  if type(spec) == "table" then spec = table.concat(spec, ",") end
  if type(spec) ~= "string" then error("peer: transport must be a string", level + 1) end
  if spec == "auto" then spec = "tcp,udp" end
  local out, seen = {}, {}
  for t in spec:gmatch("[^,%s]+") do
    if not KNOWN[t] then
      error("peer: unknown transport '" .. t .. "' (udp, tcp, auto or a list such as tcp,udp)", level + 1)
    end
    if not seen[t] then
      seen[t] = true
      out[#out + 1] = t
    end
  end
  if #out == 0 then error("peer: transport is empty", level + 1) end
  return out
end

local function session_of(self, s)
  local ts = require("natpunch.tcp_session").new(s, {
    on_message = self.on_message, on_event = self.on_event, touch_timeout = self.touch_timeout,
  })
  self.tcp_sessions[ts] = true
  self.by_peer[ts.peer] = ts
  return ts
end

--- Register with the STUNT service of the current server.  primary: TCP is
-- the only transport (its registration is the peer's, reported as
-- "registered"); otherwise a failure is reported as transport_failed and
-- the peer goes on with UDP.
function peer_tcp.register(self, primary)
  self.tcp_sessions = self.tcp_sessions or {}
  local server = self.server or self.servers[self.server_index]
  local c, err = require("natpunch.stunt").init{
    server = server, id = self.id, connect_timeout = self.connect_timeout,
    register_timeout = self.register_timeout,
    on_event = function(ev)
      if ev.event == "registered" and not primary then return end
      if ev.event == "failed" and self.tcp_quiet then
        ev = { event = "transport_failed", peer = ev.peer, transport = "tcp", reason = ev.reason }
      end
      self:_emit(ev)
    end,
    on_stream = function(s)
      if s.mode ~= "framed" then
        self:_emit({ event = "failed", peer = s.peer, transport = "tcp",
          reason = "the other side sends a raw stream (--stdio); this peer expects messages" })
        s:close()
        return
      end
      local ts = session_of(self, s)
      if self.on_session then self.on_session(ts) end
    end,
  }
  if not c then
    if primary then return nil, err end
    self:_emit({ event = "transport_failed", transport = "tcp", reason = err })
    return nil, err
  end
  self.stunt = c
  if primary then
    self.registered = true
    self.server = server
    self.public = c.public
  end
  return c.public
end

--- Connect over each transport in order; the first session wins.
function peer_tcp.connect(self, id, timeout)
  timeout = timeout or self.connect_timeout
  local started = core.now()
  if not self.registered then
    local ok, err = self:register()
    if not ok then
      self:_emit({ event = "failed", peer = id, reason = err })
      return nil, err
    end
  end
  local reasons = {}
  for i, t in ipairs(self.transports) do
    local last = i == #self.transports
    local left = timeout - (core.now() - started) / 1000
    -- each transport but the last gets an equal share of what is left
    local budget = last and left or left / (#self.transports - i + 1)
    -- TCP gives up a little early, so that its own reason (refused,
    -- unanswered...) is what a caller bounded by the same timeout reports
    if t == "tcp" then budget = budget - math.min(0.3, budget / 10) end
    local s, err
    if budget <= 0 then
      err = "no time left"
    elseif t == "tcp" then
      if not self.stunt then
        err = "not registered with the STUNT service"
      else
        self.tcp_quiet = not last
        local st
        st, err = self.stunt:connect(id, { timeout = budget, mode = "framed" })
        self.tcp_quiet = false
        if st then s = session_of(self, st) end
      end
    else
      s, err = self:_connect_udp(id, budget)
      if not s and not last then
        self:_emit({ event = "transport_failed", peer = id, transport = "udp", reason = err })
      end
    end
    if s then
      s.setup_ms = core.now() - started
      s.tried = i
      return s
    end
    reasons[#reasons + 1] = t .. ": " .. tostring(err)
  end
  local reason = table.concat(reasons, "; ")
  if #self.transports > 1 then self:_emit({ event = "failed", peer = id, reason = reason }) end
  return nil, reason
end

function peer_tcp.close(self)
  for ts in pairs(self.tcp_sessions or {}) do ts:close() end
  self.stunt:close()
  self.stunt = nil
end

return peer_tcp
