--- Small JSON codec (RFC 8259) for the CLI's event lines, tests and tools.
--
--   json.encode({ event = "connected", setup_ms = 3 })  --> {"event":"connected","setup_ms":3}
--   json.encode(ev, { "event", "peer" })   -- these keys first, the rest sorted
--   json.decode('{"a":[1,2.5,null]}')     --> { a = { 1, 2.5, json.null } }
--
-- Encoding: object keys come out in a stable order (the `first` list, then
-- sorted), so a line is the same for the same table; integral numbers are
-- written as integers; strings are escaped per RFC 8259 section 7, and any
-- byte that is not part of valid UTF-8 is written as \u00XX, so the output
-- is always valid JSON (and valid UTF-8) whatever the bytes received.
-- Misuse (cycles, functions, non-finite numbers) raises.
-- Decoding never raises: bad input gives nil, "message at byte N".
local json = {}

--- Stands for JSON null inside arrays and objects.
json.null = setmetatable({}, { __name = "json.null", __tostring = function() return "null" end })

local array_mt = { __name = "json.array" }

--- Mark t as an array, so that an empty t encodes as [] instead of {}.
function json.array(t)
  return setmetatable(t or {}, array_mt)
end

local MAX_DEPTH = 128

------------------------------------------------------------------ encode

-- RFC 8259 section 7: the two-character escapes; other control characters
-- use \u00XX.  DEL and U+2028/U+2029 are legal but escaped too, so a line is
-- safe to paste into JavaScript or a terminal.
local short_escapes = {
  ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
  ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t",
}

local function escape_byte(c)
  return short_escapes[c] or string.format("\\u%04x", c:byte())
end

-- Length of the valid UTF-8 sequence starting at i, or nil (RFC 3629
-- section 4: no overlong forms, no surrogates, nothing above U+10FFFF).
local function utf8_len(s, i)
  local c = s:byte(i)
  if c < 0x80 then return 1 end
  local n, lo, hi
  lo, hi = 0x80, 0xBF
  if c >= 0xC2 and c <= 0xDF then n = 2
  elseif c == 0xE0 then n, lo = 3, 0xA0
  elseif c == 0xED then n, hi = 3, 0x9F
  elseif c >= 0xE1 and c <= 0xEF then n = 3
  elseif c == 0xF0 then n, lo = 4, 0x90
  elseif c >= 0xF1 and c <= 0xF3 then n = 4
  elseif c == 0xF4 then n, hi = 4, 0x8F
  else return nil end
  local c2 = s:byte(i + 1)
  if not c2 or c2 < lo or c2 > hi then return nil end
  for k = 2, n - 1 do
    local ck = s:byte(i + k)
    if not ck or ck < 0x80 or ck > 0xBF then return nil end
  end
  return n
end

local function encode_string(s)
  -- fast path: printable ASCII only
  if not s:find('[%c"\\\128-\255]') then return '"' .. s .. '"' end
  local out, i, n = {}, 1, #s
  while i <= n do
    local j = s:find('[%c"\\\128-\255]', i)
    if not j then
      out[#out + 1] = s:sub(i)
      break
    end
    if j > i then out[#out + 1] = s:sub(i, j - 1) end
    local c = s:byte(j)
    if c < 0x80 then
      out[#out + 1] = escape_byte(s:sub(j, j))
      i = j + 1
    else
      local len = utf8_len(s, j)
      if not len then
        out[#out + 1] = string.format("\\u%04x", c)
        i = j + 1
      else
        local seq = s:sub(j, j + len - 1)
        if seq == "\226\128\168" then seq = "\\u2028"
        elseif seq == "\226\128\169" then seq = "\\u2029" end
        out[#out + 1] = seq
        i = j + len
      end
    end
  end
  return '"' .. table.concat(out) .. '"'
end

local function encode_number(x)
  if math.type(x) == "integer" then return string.format("%d", x) end
  if x ~= x or x == math.huge or x == -math.huge then
    error("json.encode: cannot encode " .. tostring(x) .. " (JSON has no NaN or infinity)", 0)
  end
  local i = math.tointeger(x)
  if i then return string.format("%d", i) end
  -- shortest form that reads back as the same double
  for prec = 15, 17 do
    local s = string.format("%." .. prec .. "g", x)
    if tonumber(s) == x then return s end
  end
  return string.format("%.17g", x)
end

-- A table is an array when its keys are exactly 1..n.
local function array_length(t)
  local n = 0
  for k in pairs(t) do
    if math.type(k) ~= "integer" or k < 1 then return nil end
    n = n + 1
  end
  for i = 1, n do
    if t[i] == nil then return nil end
  end
  return n
end

local encode_value

local function encode_table(t, first, seen, depth, out)
  if seen[t] then error("json.encode: table contains a cycle", 0) end
  if depth > MAX_DEPTH then error("json.encode: nested too deeply", 0) end
  seen[t] = true
  local n = array_length(t)
  if n and (n > 0 or getmetatable(t) == array_mt) then
    out[#out + 1] = "["
    for i = 1, n do
      if i > 1 then out[#out + 1] = "," end
      encode_value(t[i], first, seen, depth + 1, out)
    end
    out[#out + 1] = "]"
  else
    local keys, rank, orig = {}, {}, {}
    for k in pairs(t) do
      local tk = type(k)
      if tk ~= "string" and math.type(k) ~= "integer" then
        error("json.encode: object key of type " .. tk .. " (only strings and integers)", 0)
      end
      local sk = tostring(k)
      if orig[sk] ~= nil then error("json.encode: duplicate key '" .. sk .. "'", 0) end
      keys[#keys + 1], orig[sk] = sk, k
    end
    if #keys > 0 and first then
      for i, k in ipairs(first) do rank[k] = i end
    end
    table.sort(keys, function(a, b)
      local ra, rb = rank[a], rank[b]
      if ra or rb then
        if ra and rb then return ra < rb end
        return ra ~= nil
      end
      return a < b
    end)
    out[#out + 1] = "{"
    for i, k in ipairs(keys) do
      if i > 1 then out[#out + 1] = "," end
      out[#out + 1] = encode_string(k)
      out[#out + 1] = ":"
      encode_value(t[orig[k]], first, seen, depth + 1, out)
    end
    out[#out + 1] = "}"
  end
  seen[t] = nil
end

function encode_value(v, first, seen, depth, out)
  local tv = type(v)
  if v == nil or v == json.null then out[#out + 1] = "null"
  elseif tv == "boolean" then out[#out + 1] = v and "true" or "false"
  elseif tv == "number" then out[#out + 1] = encode_number(v)
  elseif tv == "string" then out[#out + 1] = encode_string(v)
  elseif tv == "table" then encode_table(v, first, seen, depth, out)
  else error("json.encode: cannot encode a " .. tv, 0) end
end

--- Encode a value as one line of JSON.  first: optional list of object keys
-- written before the others (e.g. {"event"}), at every level.
function json.encode(value, first)
  if first ~= nil and type(first) ~= "table" then
    error("bad argument #2 to 'encode' (table of keys expected)", 2)
  end
  local out = {}
  local ok, err = pcall(encode_value, value, first, {}, 0, out)
  if not ok then error(err, 2) end
  return table.concat(out)
end

------------------------------------------------------------------ decode

local Parser = {}
Parser.__index = Parser

local function fail(pos, what)
  error({ json_error = what .. " at byte " .. pos }, 0)
end

function Parser:skip()
  self.pos = self.s:find("[^ \t\r\n]", self.pos) or #self.s + 1
end

local simple_unescape = {
  ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n", r = "\r", t = "\t",
}

function Parser:string()
  local s, pos = self.s, self.pos + 1   -- after the opening quote
  local out = {}
  while true do
    local j = s:find('["\\%c]', pos)
    if not j then fail(self.pos, "unterminated string") end
    if j > pos then out[#out + 1] = s:sub(pos, j - 1) end
    local c = s:sub(j, j)
    if c == '"' then
      self.pos = j + 1
      break
    elseif c == "\\" then
      local e = s:sub(j + 1, j + 1)
      if simple_unescape[e] then
        out[#out + 1] = simple_unescape[e]
        pos = j + 2
      elseif e == "u" then
        local hex = s:match("^%x%x%x%x", j + 2)
        if not hex then fail(j, "bad \\u escape") end
        local cp = tonumber(hex, 16)
        pos = j + 6
        if cp >= 0xD800 and cp <= 0xDBFF then
          -- RFC 8259 section 7: a character outside the BMP is a surrogate pair
          local lo = s:match("^\\u([dD][c-fC-F]%x%x)", pos)
          if lo then
            cp = 0x10000 + ((cp - 0xD800) << 10) + (tonumber(lo, 16) - 0xDC00)
            pos = pos + 6
          else
            cp = 0xFFFD   -- a lone surrogate cannot be UTF-8: replacement character
          end
        elseif cp >= 0xDC00 and cp <= 0xDFFF then
          cp = 0xFFFD
        end
        out[#out + 1] = utf8.char(cp)
      else
        fail(j, "bad escape")
      end
    else
      fail(j, "control character in string")
    end
  end
  return table.concat(out)
end

-- RFC 8259 section 6: -? (0 | [1-9] digits) [. digits] [(e|E) [+|-] digits]
function Parser:number()
  local s, start = self.s, self.pos
  local p = start
  if s:sub(p, p) == "-" then p = p + 1 end
  local int = s:match("^%d+", p)
  if not int or (#int > 1 and int:sub(1, 1) == "0") then fail(start, "bad number") end
  p = p + #int
  local float = false
  if s:sub(p, p) == "." then
    local frac = s:match("^%.%d+", p)
    if not frac then fail(start, "bad number") end
    p, float = p + #frac, true
  end
  if s:match("^[eE]", p) then
    local exp = s:match("^[eE][-+]?%d+", p)
    if not exp then fail(start, "bad number") end
    p, float = p + #exp, true
  end
  local text = s:sub(start, p - 1)
  self.pos = p
  if not float then
    local i = math.tointeger(tonumber(text))
    if i then return i end
  end
  return tonumber(text) + 0.0
end

local literals = { { "true", true }, { "false", false }, { "null", json.null } }

function Parser:value(depth)
  if depth > MAX_DEPTH then fail(self.pos, "nested too deeply") end
  self:skip()
  local s, pos = self.s, self.pos
  local c = s:sub(pos, pos)
  if c == "{" then
    local obj = {}
    self.pos = pos + 1
    self:skip()
    if s:sub(self.pos, self.pos) == "}" then
      self.pos = self.pos + 1
      return obj
    end
    while true do
      self:skip()
      if s:sub(self.pos, self.pos) ~= '"' then fail(self.pos, "object key expected") end
      local k = self:string()
      self:skip()
      if s:sub(self.pos, self.pos) ~= ":" then fail(self.pos, "':' expected") end
      self.pos = self.pos + 1
      obj[k] = self:value(depth + 1)
      self:skip()
      local d = s:sub(self.pos, self.pos)
      self.pos = self.pos + 1
      if d == "}" then return obj end
      if d ~= "," then fail(self.pos - 1, "',' or '}' expected") end
    end
  elseif c == "[" then
    local arr, n = json.array(), 0
    self.pos = pos + 1
    self:skip()
    if s:sub(self.pos, self.pos) == "]" then
      self.pos = self.pos + 1
      return arr
    end
    while true do
      n = n + 1
      arr[n] = self:value(depth + 1)
      self:skip()
      local d = s:sub(self.pos, self.pos)
      self.pos = self.pos + 1
      if d == "]" then return arr end
      if d ~= "," then fail(self.pos - 1, "',' or ']' expected") end
    end
  elseif c == '"' then
    return self:string()
  elseif c == "-" or c:match("%d") then
    return self:number()
  else
    for _, lit in ipairs(literals) do
      if s:sub(pos, pos + #lit[1] - 1) == lit[1] then
        self.pos = pos + #lit[1]
        return lit[2]
      end
    end
    if c == "" then fail(pos, "unexpected end of input") end
    fail(pos, "unexpected character '" .. c .. "'")
  end
end

--- Decode one JSON text.  Returns the value (null as json.null, arrays as
-- sequences marked with json.array), or nil, message.
function json.decode(text)
  if type(text) ~= "string" then return nil, "json.decode: string expected, got " .. type(text) end
  local p = setmetatable({ s = text, pos = 1 }, Parser)
  local ok, v = pcall(function()
    local value = p:value(0)
    p:skip()
    if p.pos <= #text then fail(p.pos, "trailing characters") end
    return value
  end)
  if ok then return v end
  if type(v) == "table" and v.json_error then return nil, "json.decode: " .. v.json_error end
  error(v, 0)
end

return json
