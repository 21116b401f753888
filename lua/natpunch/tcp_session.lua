--- A peer session over a punched TCP connection: the same send / touch /
-- receive as a UDP session (natpunch.peer), as framed messages on a
-- natpunch.stream.
--
-- Each message is one stream frame ([u32 length] + body), the body being
--   [kind u8: 1 data, 2 touch, 3 ack][id u32][data]
-- A touch is acknowledged (ack with its id) once the other side has read
-- it; TCP does the retransmitting, so a touch fails only when the
-- connection ends before its ack, or after touch_timeout.
local sched = require "natpunch.sched"
local core = require "natpunch.core"

local tcp_session = {}

local Session = {}
Session.__index = Session

local DATA, TOUCH, ACK = 1, 2, 3
local MAX_INBOX = 1024

function Session:_emit(ev)
  if self.on_event then self.on_event(ev) end
end

function Session:_deliver(data, kind)
  self:_emit({ event = "message", peer = self.peer, data = data, kind = kind })
  if self.on_message then sched.spawn(self.on_message, self, data, kind) end
  if #self.waiting > 0 then
    table.remove(self.waiting, 1)(data, kind)
  elseif not self.on_message then
    if #self.inbox >= MAX_INBOX then table.remove(self.inbox, 1) end
    self.inbox[#self.inbox + 1] = { data, kind }
  end
end

function Session:_finish_touch(id, err)
  local t = self.touches[id]
  if not t then return end
  self.touches[id] = nil
  local rtt = core.now() - t.at
  if err then self:_emit({ event = "touch_failed", peer = self.peer, id = id, reason = err })
  else self:_emit({ event = "touch_acked", peer = self.peer, id = id, rtt_ms = rtt }) end
  t.cb(err, (not err) and rtt or nil)
end

function Session:_reader()
  while true do
    local body, err = self.stream:receive_frame()
    if not body then
      self.closed = true
      for id in pairs(self.touches) do self:_finish_touch(id, "connection closed: " .. tostring(err)) end
      for _, w in ipairs(self.waiting) do w(nil, "closed") end
      self.waiting = {}
      if self.on_close then self.on_close(self, err) end
      return
    end
    if #body >= 5 then
      local kind, id = string.unpack(">BI4", body)
      local data = body:sub(6)
      if kind == ACK then
        self:_finish_touch(id)
      elseif kind == TOUCH then
        self.stream:send_frame(string.pack(">BI4", ACK, id))
        self:_deliver(data, "touch")
      elseif kind == DATA then
        self:_deliver(data, "data")
      end
    end
  end
end

--- Unreliable in UDP, but over TCP a send simply arrives (or the
-- connection breaks).  true, or nil, err.
function Session:send(data)
  if type(data) ~= "string" then error("bad argument #1 to 'send' (string expected)", 2) end
  if self.closed then return nil, "closed" end
  return self.stream:send_frame(string.pack(">BI4", DATA, 0) .. data)
end

--- Reliable send: the RTT in ms once the other side has it, or nil,
-- reason.  With cb, returns the touch id at once and calls cb(err, rtt).
function Session:touch(data, cb)
  if type(data) ~= "string" then error("bad argument #1 to 'touch' (string expected)", 2) end
  if self.closed then return nil, "closed" end
  self.touch_seq = self.touch_seq + 1
  local id = self.touch_seq
  local fut
  if not cb then
    fut = sched.future()
    cb = function(e, rtt) fut:set(e, rtt) end
  end
  self.touches[id] = { at = core.now(), cb = cb }
  local ok, err = self.stream:send_frame(string.pack(">BI4", TOUCH, id) .. data)
  if not ok then
    self.touches[id] = nil
    return nil, err
  end
  if not fut then return id end
  local e, rtt = fut:wait(self.touch_timeout)
  if e == nil and rtt == "timeout" then
    self:_finish_touch(id, "timeout")
    return nil, "timeout"
  end
  if e then return nil, e end
  return rtt
end

function Session:receive(timeout)
  if #self.inbox > 0 then
    local m = table.remove(self.inbox, 1)
    return m[1], m[2]
  end
  if self.closed then return nil, "closed" end
  return sched.wait_in(self.waiting, timeout)
end

function Session:close()
  self.closed = true
  self.stream:close()
end

--- A session over stream s (a natpunch.stream from natpunch.stunt).  hooks:
-- on_message(session, data, kind), on_event(ev), on_close(session, reason),
-- touch_timeout (s).
function tcp_session.new(s, hooks)
  hooks = hooks or {}
  local self = setmetatable({
    stream = s, peer = s.peer, remote = s.remote, ip = s.ip, port = s.port, path = s.path,
    transport = "tcp", setup_ms = s.setup_ms, inbox = {}, waiting = {}, touches = {}, touch_seq = 0,
    on_message = hooks.on_message, on_event = hooks.on_event, on_close = hooks.on_close,
    touch_timeout = hooks.touch_timeout or 10,
  }, Session)
  self.reader = sched.spawn(function() self:_reader() end)
  return self
end

return tcp_session
