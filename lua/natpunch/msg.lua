--- Control messages between peers and a rendezvous server (frame 0x04).
--
-- Body: [version u8 = 1] then up to MAX_FIELDS pairs of
--   [key: u8 length + bytes][value: u16 length + bytes]   (big-endian)
-- The field "t" is the message type.  Unknown fields are ignored so both
-- sides can grow.  Decoding never raises: bad input gives nil, reason.
-- See docs/PROTOCOL.md, "Control messages".
local msg = {}

msg.VERSION = 1
msg.MAX_SIZE = 1200        -- stays under the IPv6 minimum MTU (RFC 8200)
msg.MAX_FIELDS = 32
-- Requests are padded to at least this size so that no reply the server
-- sends back to a request's source is larger than the request itself:
-- a rendezvous never amplifies traffic toward a spoofed source.
msg.MIN_REQUEST = 160
-- Connect requests are padded to this size: the introduction that answers
-- one carries the other peer's candidates and opaque method fields.
msg.CONNECT_PAD = 1024
-- Opaque fields: a register request's "m.NAMESPACE.KEY" fields (what a
-- peer's traversal methods tell the peers introduced to it) are passed
-- through by the rendezvous into introductions, within these bounds.
msg.OPAQUE_PREFIX = "m."
msg.MAX_OPAQUE = 12          -- fields per peer
msg.MAX_OPAQUE_BYTES = 400   -- names + values per peer

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  return keys
end

--- Encode a table of string/number/boolean fields.  pad: minimum size.
function msg.encode(fields, pad)
  local parts = { string.pack(">B", msg.VERSION) }
  local n = 0
  for _, k in ipairs(sorted_keys(fields)) do
    local v = fields[k]
    local tv = type(v)
    if tv == "number" then v = tostring(v)
    elseif tv == "boolean" then v = v and "1" or "0"
    elseif tv ~= "string" then
      error("msg.encode: field '" .. tostring(k) .. "' has unsupported type " .. tv, 2)
    end
    if type(k) ~= "string" or #k == 0 or #k > 255 then
      error("msg.encode: bad field name " .. tostring(k), 2)
    end
    parts[#parts + 1] = string.pack(">s1s2", k, v)
    n = n + 1
  end
  if n > msg.MAX_FIELDS then error("msg.encode: too many fields", 2) end
  local body = table.concat(parts)
  if pad and #body < pad then
    local need = pad - #body - 4   -- key "_": 1+1 bytes, value length: 2 bytes
    body = body .. string.pack(">s1s2", "_", string.rep("\0", math.max(0, need)))
  end
  if #body > msg.MAX_SIZE then error("msg.encode: message too large (" .. #body .. " bytes)", 2) end
  return body
end

--- Decode; returns a table of string fields, or nil, reason.
function msg.decode(body)
  if type(body) ~= "string" then return nil, "not a string" end
  if #body < 1 or #body > msg.MAX_SIZE then return nil, "bad size" end
  if body:byte(1) ~= msg.VERSION then return nil, "unsupported version" end
  local fields, pos, n = {}, 2, 0
  while pos <= #body do
    n = n + 1
    if n > msg.MAX_FIELDS then return nil, "too many fields" end
    local ok, k, v, nextpos = pcall(string.unpack, ">s1s2", body, pos)
    if not ok then return nil, "truncated field" end
    fields[k] = v
    pos = nextpos
  end
  if type(fields.t) ~= "string" then return nil, "no message type" end
  fields._ = nil
  return fields
end

--- The opaque fields of a message (see OPAQUE_PREFIX), within the bounds,
-- as a new table; and how many were left out.
function msg.opaque(fields)
  local names = {}
  for k in pairs(fields) do
    if k:sub(1, #msg.OPAQUE_PREFIX) == msg.OPAQUE_PREFIX then names[#names + 1] = k end
  end
  table.sort(names)
  local out, n, bytes, dropped = {}, 0, 0, 0
  for _, k in ipairs(names) do
    local size = #k + #fields[k]
    if n < msg.MAX_OPAQUE and bytes + size <= msg.MAX_OPAQUE_BYTES then
      out[k] = fields[k]
      n, bytes = n + 1, bytes + size
    else
      dropped = dropped + 1
    end
  end
  return out, dropped
end

--- "ip:port,ip:port" lists of candidates.
function msg.split_list(s)
  local out = {}
  if type(s) ~= "string" then return out end
  for item in s:gmatch("[^,]+") do
    out[#out + 1] = item
    if #out >= 16 then break end
  end
  return out
end

return msg
