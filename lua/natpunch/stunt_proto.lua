--- The wire of natpunch's STUNT service (TCP, on the rendezvous's address
-- and port; docs/PROTOCOL.md, "TCP: the STUNT service").
--
-- Control frames: [u16 length][control message body (natpunch.msg)], so the
-- same codec and size limits as the UDP control messages apply.
-- Peer handshake, once a punched connection is up: 24 bytes,
--   "NPT1" kind(1: "S" select, "K" ok) mode(1: "r" raw, "f" framed) "\0\0"
--   nonce (16 hex digits, from the introduction)
-- The connecting side sends "S" on the one connection it keeps; the other
-- side keeps the connection that carries it and answers "K".
local msg = require "natpunch.msg"

local proto = {}

proto.HEADER_SIZE = 24
proto.MAX_BUFFER = 4 * (msg.MAX_SIZE + 2)   -- unparsed bytes kept per connection

function proto.frame(fields)
  return string.pack(">s2", msg.encode(fields))
end

function proto.header(kind, mode, nonce)
  assert(#nonce == 16, "nonce must be 16 hex digits")
  return "NPT1" .. kind .. mode .. "\0\0" .. nonce
end

--- Parse a handshake: kind, mode, nonce or nil.
function proto.parse_header(h)
  if type(h) ~= "string" or #h ~= proto.HEADER_SIZE or h:sub(1, 4) ~= "NPT1" then return nil end
  local kind, mode, nonce = h:sub(5, 5), h:sub(6, 6), h:sub(9)
  if (kind ~= "S" and kind ~= "K") or (mode ~= "r" and mode ~= "f") or not nonce:match("^%x+$") then
    return nil
  end
  return kind, mode, nonce
end

--- Incremental frame reader: r:feed(chunk) -> list of decoded messages, or
-- nil, reason (the connection should be closed: malformed or too much
-- unparsed input).
local Reader = {}
Reader.__index = Reader

function proto.reader()
  return setmetatable({ buf = "" }, Reader)
end

function Reader:feed(chunk)
  local buf = self.buf .. chunk
  local out = {}
  while #buf >= 2 do
    local n = string.unpack(">I2", buf)
    if n == 0 or n > msg.MAX_SIZE then return nil, "bad frame length " .. n end
    if #buf < 2 + n then break end
    local m, err = msg.decode(buf:sub(3, 2 + n))
    if not m then return nil, "malformed message: " .. tostring(err) end
    out[#out + 1] = m
    buf = buf:sub(3 + n)
  end
  if #buf > proto.MAX_BUFFER then return nil, "too much unparsed input" end
  self.buf = buf
  return out
end

return proto
