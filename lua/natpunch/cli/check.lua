--- Value checks shared by every `natpunch` subcommand (cli.parse applies
-- them by option type), and safe printing of text that came from the
-- network.  Every check returns the value (converted) or nil, message; the
-- message is one line meant for a user.
local check = {}

check.ID_RULE = "1 to 64 letters, digits or - _ . @ :"
check.ID_MAX = 64
check.TEXT_MAX = 1200   -- bytes in one --send/--touch (the touch payload limit, one datagram on any path)

--- "a.b.c.d" with four decimal octets 0..255; true or nil, reason.
function check.ipv4(s)
  local parts = {}
  for p in (s .. "."):gmatch("([^.]*)%.") do parts[#parts + 1] = p end
  if #parts ~= 4 then return nil, "an IPv4 address has 4 parts, '" .. s .. "' has " .. #parts end
  for _, p in ipairs(parts) do
    if not p:match("^%d+$") or #p > 3 or tonumber(p) > 255 then
      return nil, "bad octet '" .. p .. "' in '" .. s .. "' (each part is 0 to 255)"
    end
  end
  return true
end

--- RFC 4291 text form (with an optional dotted IPv4 tail); true or nil, reason.
function check.ipv6(s)
  local bad = "invalid IPv6 address '" .. s .. "'"
  if s:find("%%") then return nil, bad .. " (zone ids are not supported)" end
  local head, tail = s, nil
  local v4 = s:match(":(%d+%.%d+%.%d+%.%d+)$")
  if v4 then
    if not check.ipv4(v4) then return nil, bad end
    head = s:sub(1, #s - #v4) .. "0:0"   -- the IPv4 tail counts as two groups
  end
  local double = select(2, head:gsub("::", "::"))
  if double > 1 or head:find(":::", 1, true) then return nil, bad end
  local groups = 0
  for g in (head:gsub("::", ":z:") .. ":"):gmatch("([^:]*):") do
    if g == "z" then
      tail = true
    elseif g == "" then
      if not (head:sub(1, 2) == "::" or head:sub(-2) == "::") then return nil, bad end
    elseif not g:match("^%x%x?%x?%x?$") then
      return nil, bad
    else
      groups = groups + 1
    end
  end
  if (tail and groups > 7) or (not tail and groups ~= 8) then return nil, bad end
  return true
end

--- A DNS host name (RFC 1123 labels); true or nil, reason.
function check.hostname(s)
  if #s > 253 then return nil, "host name too long (at most 253 characters)" end
  for label in (s .. "."):gmatch("([^.]*)%.") do
    if label == "" and s:sub(-1) ~= "." then return nil, "invalid host name '" .. s .. "' (empty label)" end
    if #label > 63 then return nil, "invalid host name '" .. s .. "' (a label has at most 63 characters)" end
    if label ~= "" and not label:match("^%w[%w%-]*$") or label:match("%-$") then
      return nil, "invalid host name '" .. s .. "' (letters, digits and - between dots)"
    end
  end
  return true
end

--- "HOST:PORT": an IPv4 address, [IPv6] or a host name, and a port.
-- Returns host, port, kind ("ipv4", "ipv6" or "name"), or nil, reason.
-- opts.port_zero: port 0 is allowed (bind/listen: any free port).
function check.endpoint(text, opts)
  opts = opts or {}
  if type(text) ~= "string" then return nil, "address must be a string 'host:port'" end
  local host, port = text:match("^%[([^%]]*)%]:([^:]*)$")
  local kind = "ipv6"
  if not host then
    host, port = text:match("^([^:%[%]]+):([^:]*)$")
    kind = nil
  end
  if not host then
    if text:find(":") and select(2, text:gsub(":", "")) > 1 and not text:find("%[") then
      return nil, "invalid address '" .. text .. "' (write IPv6 addresses as [ip]:port)"
    end
    return nil, "invalid address '" .. text .. "' (expected ip:port, [ipv6]:port or host:port)"
  end
  if not port:match("^%d+$") then
    return nil, "invalid port '" .. port .. "' in '" .. text .. "' (a number, 0 to 65535)"
  end
  if #port > 5 or tonumber(port) > 65535 then
    return nil, "port out of range in '" .. text .. "' (0 to 65535)"
  end
  port = tonumber(port)
  if port == 0 and not opts.port_zero then
    return nil, "port 0 in '" .. text .. "' (a server's port is 1 to 65535)"
  end
  local ok, why
  if kind == "ipv6" then
    ok, why = check.ipv6(host)
  elseif host:match("^[%d.]+$") then
    kind = "ipv4"
    ok, why = check.ipv4(host)
  else
    kind = "name"
    ok, why = check.hostname(host)
  end
  if not ok then return nil, why end
  return host, port, kind
end

--- A peer id by the rendezvous' rule; the id or nil, reason.
function check.id(s)
  if #s < 1 or #s > check.ID_MAX or not s:match("^[%w%-_%.@:]+$") then
    return nil, "invalid id '" .. check.printable(s) .. "' (an id is " .. check.ID_RULE .. ")"
  end
  return s
end

--- A number within [min, max]; positive = true excludes 0.
function check.number(s, o)
  local n = tonumber(s)
  local range
  if o.positive then range = "a positive number" else range = "a non-negative number" end
  if o.type == "integer" then range = o.positive and "a positive integer" or "a non-negative integer" end
  if not n or n ~= n or n == math.huge or n == -math.huge then return nil, "expects " .. range end
  if o.type == "integer" then
    n = math.tointeger(n)
    if not n then return nil, "expects " .. range end
  end
  if n < 0 or (o.positive and n == 0) then return nil, "expects " .. range end
  if o.max and n > o.max then return nil, "is at most " .. o.max end
  return n
end

-- Unicode code points a terminal may act on or that reorder text: C1
-- controls, bidi embeddings/overrides/isolates, line/paragraph separators.
local function dangerous_cp(cp)
  return (cp >= 0x80 and cp <= 0x9f) or (cp >= 0x202a and cp <= 0x202e) or (cp >= 0x2066 and cp <= 0x2069)
    or cp == 0x2028 or cp == 0x2029 or cp == 0x200e or cp == 0x200f or cp == 0x061c
end

--- Text safe for a terminal: control bytes (ESC, CR, BS, NUL...), bytes that
-- are not UTF-8 and code points that control the display are shown as
-- escapes (\e, \r, \x1b, \u{202e}); a backslash is doubled, so an escape
-- printed here can never be confused with one a peer typed.
function check.printable(s)
  s = tostring(s)
  local out, i, n = {}, 1, #s
  local named = { [7] = "\\a", [8] = "\\b", [9] = "\\t", [10] = "\\n", [11] = "\\v", [12] = "\\f",
    [13] = "\\r", [27] = "\\e", [92] = "\\\\" }
  while i <= n do
    local c = s:byte(i)
    if named[c] then
      out[#out + 1] = named[c]
      i = i + 1
    elseif c < 0x20 or c == 0x7f then
      out[#out + 1] = string.format("\\x%02x", c)
      i = i + 1
    elseif c < 0x80 then
      local j = i
      while j <= n do
        local d = s:byte(j)
        if d < 0x20 or d >= 0x7f or d == 92 then break end
        j = j + 1
      end
      out[#out + 1] = s:sub(i, j - 1)
      i = j
    else
      local len = (c >= 0xc2 and c <= 0xdf and 2) or (c >= 0xe0 and c <= 0xef and 3)
        or (c >= 0xf0 and c <= 0xf4 and 4) or nil
      local seq = len and s:sub(i, i + len - 1)
      local ok, cp = false, nil
      if seq and #seq == len and utf8.len(seq) == 1 then
        ok, cp = pcall(utf8.codepoint, seq)
      end
      if ok and cp then
        if dangerous_cp(cp) then out[#out + 1] = string.format("\\u{%x}", cp) else out[#out + 1] = seq end
        i = i + len
      else
        out[#out + 1] = string.format("\\x%02x", c)
        i = i + 1
      end
    end
  end
  return table.concat(out)
end

return check
