--- A TCP connection as a stream for tasks: what natpunch.stunt returns.
--
--   local s = assert(client:connect("bob"))
--   assert(s:write("hello\n"))             -- waits while the send queue is full
--   local data, err = s:read(5)            -- a chunk; nil, "eof" at the end
--   s:shutdown()                           -- half-close: we send no more
--   s:close()
--
-- Framed messages (send_frame/receive_frame: [u32 length][bytes], big
-- endian) carry natpunch peer's --send/--touch over TCP.  Reading stops
-- while more than HIGH_WATER bytes are buffered unread, so a slow reader
-- slows the sender down through TCP's own flow control; write() waits while
-- more than HIGH_WATER bytes are queued in the socket.
local sched = require "natpunch.sched"

local stream = {}

local Stream = {}
Stream.__index = Stream

stream.HIGH_WATER = 256 * 1024
stream.MAX_FRAME = 16 * 1024 * 1024

local function wake_all(list, ...)
  for i = #list, 1, -1 do
    local w = table.remove(list, i)
    w(...)
  end
end

function Stream:_on_read(err, chunk)
  if chunk then
    self.chunks[#self.chunks + 1] = chunk
    self.buffered = self.buffered + #chunk
    if self.buffered > stream.HIGH_WATER and self.reading then
      self.tcp:read_stop()
      self.reading = false
    end
  else
    self.eof = err or "eof"
    self.reading = false
  end
  wake_all(self.readers)
end

function Stream:_resume_reading()
  if not self.reading and not self.eof and not self.closed and self.buffered <= stream.HIGH_WATER then
    self.reading = true
    local ok, err = self.tcp:read_start(function(e, c) self:_on_read(e, c) end)
    if not ok then
      self.reading = false
      self.eof = err
    end
  end
end

-- Wait until something is buffered or the stream ended; false on timeout.
function Stream:_fill(timeout)
  if #self.chunks > 0 or self.eof then return true end
  local ok = sched.wait(function(wake)
    table.insert(self.readers, wake)
    return function()
      for i, w in ipairs(self.readers) do
        if w == wake then table.remove(self.readers, i) break end
      end
    end
  end, timeout)
  return ok ~= nil or #self.chunks > 0 or self.eof ~= nil
end

local function take(self, n)
  local c = self.chunks[1]
  if not n or n >= #c then
    table.remove(self.chunks, 1)
    self.buffered = self.buffered - #c
    return c
  end
  self.chunks[1] = c:sub(n + 1)
  self.buffered = self.buffered - n
  return c:sub(1, n)
end

--- The next chunk of at most max bytes (any size without max), in a task.
-- nil, "eof" at the end of the stream; nil, "timeout"; nil, error code.
function Stream:read(timeout, max)
  if self.closed then return nil, "closed" end
  if self.expect then
    -- bytes the other side must send first (a handshake): checked here
    local want = self.expect
    self.expect = nil
    local got, err, part = self:read_exactly(#want, timeout)
    if not got and err == "timeout" then
      self:unread(part)
      self.expect = want
      return nil, err
    end
    if got ~= want then
      self:close()
      return nil, got and "bad handshake" or err
    end
  end
  if not self:_fill(timeout) then return nil, "timeout" end
  if #self.chunks == 0 then
    return nil, self.eof
  end
  local c = take(self, max)
  self:_resume_reading()
  return c
end

--- Exactly n bytes; nil, reason if the stream ends first or timeout passes.
function Stream:read_exactly(n, timeout)
  local parts, got = {}, 0
  local deadline = timeout and (require("natpunch.core").now() + timeout * 1000)
  while got < n do
    local left = deadline and math.max(0, (deadline - require("natpunch.core").now()) / 1000)
    local c, err = self:read(left, n - got)
    if not c then return nil, err, table.concat(parts) end
    parts[#parts + 1] = c
    got = got + #c
  end
  return table.concat(parts)
end

--- Queue data; waits (in a task) while the socket has more than HIGH_WATER
-- bytes queued.  true, or nil, error.
function Stream:write(data)
  if self.closed then return nil, "closed" end
  local ok, err = self.tcp:write(data)
  if not ok then return nil, err end
  while not self.closed and self.tcp:write_queue_size() > stream.HIGH_WATER do
    local r = sched.wait(function(wake)
      self.tcp:on_drain(function() wake(true) end)
    end)
    if not r then break end
  end
  if self.closed then return nil, "closed" end
  return true
end

--- Wait (in a task) until everything written has left the socket.
function Stream:flush(timeout)
  if self.closed then return nil, "closed" end
  if self.tcp:write_queue_size() == 0 then return true end
  return sched.wait(function(wake)
    self.tcp:on_drain(function() wake(true) end)
  end, timeout)
end

--- Half-close: send FIN after what is queued; reading goes on.
function Stream:shutdown()
  if self.closed then return nil, "closed" end
  local fut = sched.future()
  local ok, err = self.tcp:shutdown(function(e) fut:set(e) end)
  if not ok then return nil, err end
  local e = fut:wait()
  if e then return nil, e end
  return true
end

--- One framed message.
function Stream:send_frame(data)
  if #data > stream.MAX_FRAME then error("send_frame: message too large", 2) end
  return self:write(string.pack(">s4", data))
end

function Stream:receive_frame(timeout)
  local head, err = self:read_exactly(4, timeout)
  if not head then return nil, err end
  local n = string.unpack(">I4", head)
  if n > stream.MAX_FRAME then
    self:close()
    return nil, "frame too large"
  end
  if n == 0 then return "" end
  return self:read_exactly(n, timeout)
end

-- s.expect = bytes: what the other side must send first, checked and
-- consumed by the first read (the STUNT handshake).

--- Give back bytes read too far (they are read again first).
function Stream:unread(data)
  if data and #data > 0 then
    table.insert(self.chunks, 1, data)
    self.buffered = self.buffered + #data
  end
end

function Stream:close()
  if self.closed then return end
  self.closed = true
  self.tcp:close()
  self.eof = self.eof or "closed"
  wake_all(self.readers)
end
Stream.__close = Stream.close

function Stream:is_closed() return self.closed == true end

--- Wrap a connected natpunch.tcp handle.  fields: extra fields copied in
-- (peer, remote, path, transport, setup_ms...).
function stream.wrap(tcp, fields)
  local self = setmetatable({ tcp = tcp, chunks = {}, buffered = 0, readers = {},
    reading = false }, Stream)
  for k, v in pairs(fields or {}) do self[k] = v end
  tcp:nodelay(true)
  self:_resume_reading()
  return self
end

return stream
