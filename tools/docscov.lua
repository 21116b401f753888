-- Docs coverage (make lint), as luv's .ci/docscov.sh: every function
-- exported to Lua must appear in docs/API.md -- the luaL_Reg tables of
-- csrc/lua/*.c and the public functions of the Lua modules (lua/natpunch/,
-- `function T.name` / `function T:name`, names not starting with "_").
-- A name counts as documented when it appears in a code span of API.md
-- (`name(...)`, `x:name`, `mod.name`, ...).  Usage: lua5.4 tools/docscov.lua
local function read(path)
  local f = assert(io.open(path, "r"))
  local s = f:read("a")
  f:close()
  return s
end

local function lines_of(cmd)
  local p = assert(io.popen(cmd))
  local out = {}
  for l in p:lines() do out[#out + 1] = l end
  p:close()
  return out
end

-- Every word inside `...` spans of the doc.
local doc = read("docs/API.md")
local words = {}
local function take(text)
  for w in text:gmatch("[%a_][%w_]*") do words[w] = true end
end
-- fenced blocks first (their backticks would upset the pairing), then
-- inline spans, which may wrap across lines
doc = doc:gsub("\n```[^\n]*\n(.-)\n```", function(block) take(block) return "\n" end)
for span in doc:gmatch("`([^`]+)`") do take(span) end

local SKIP = { __gc = true, __close = true, __index = true, __tostring = true, __call = true,
  __newindex = true, __len = true, __eq = true, __lt = true, __le = true, __concat = true }

local missing = {}
local function need(name, where)
  if SKIP[name] or name:sub(1, 1) == "_" then return end
  if not words[name] then missing[#missing + 1] = ("%s (%s)"):format(name, where) end
end

-- C: entries of luaL_Reg tables
for _, path in ipairs(lines_of("ls csrc/lua/*.c")) do
  local src = read(path)
  for body in src:gmatch("luaL_Reg%s+[%w_]+%s*%[%s*%]%s*=%s*(%b{})") do
    for name in body:gmatch('{%s*"([%w_]+)"%s*,') do need(name, path) end
  end
end

-- Lua: public functions of the modules: those of the table a module
-- returns, and the methods of its classes (capitalised tables: Peer,
-- Session, Topology, ...), but for classes listed in PRIVATE.
local PRIVATE = { Parser = true }   -- json.lua's decoder state
for _, path in ipairs(lines_of("find lua/natpunch -name '*.lua' | sort")) do
  local src = read(path)
  local ret = src:match("\nreturn%s+setmetatable%(([%w_]+)") or src:match("\nreturn%s+([%w_]+)%s*$")
    or src:match("\nreturn%s+([%w_]+)%s*\n")
  for line in src:gmatch("[^\n]+") do
    local t, name = line:match("^function ([%w_]+)[.:]([%w_]+)%s*%(")
    if t and (t == ret or (t:match("^%u") and not PRIVATE[t])) then need(name, path) end
  end
end

if #missing > 0 then
  io.stderr:write("docs/API.md does not mention ", #missing, " exported function(s):\n  ",
    table.concat(missing, "\n  "), "\n")
  os.exit(1)
end
print(("docscov: every exported function is in docs/API.md"))
