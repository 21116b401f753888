#!/usr/bin/env lua5.4
-- tools/cycles.lua - fail on any cycle of references between C files.
--
--   lua5.4 tools/cycles.lua OBJ.o...    (run by `make lint` over build/lint/)
--
-- Reads `nm` of each object: a file depends on another when it uses (U) a
-- symbol the other defines.  Dependencies must point one way (the binding
-- calls the core, engines call the UDP socket, HMAC calls the hashes):
-- every strongly connected component of more than one file, and every
-- reference to a binding file from csrc/core, is printed and fails.
--
-- The only file allowed to name everything is the module's registration
-- (the file defining luaopen_*): nothing may reference it, so it can never
-- be part of a cycle, and no exception is needed here.

local objs = { ... }
if #objs == 0 then
  io.stderr:write("usage: cycles.lua OBJ.o...\n")
  os.exit(2)
end

local defs, uses, name_of = {}, {}, {}
for _, o in ipairs(objs) do
  local name = o:match("([^/]+/[^/]+)%.o$") or o
  name_of[o] = name
  uses[name] = {}
  local p = assert(io.popen("nm -P " .. string.format("%q", o)))
  for line in p:lines() do
    local sym, kind = line:match("^(%S+) (%a)")
    if sym then
      if kind == "U" or kind == "w" or kind == "v" then
        uses[name][sym] = true
      elseif kind:match("%u") then
        if defs[sym] and defs[sym] ~= name then
          io.stderr:write(("cycles: %s defined in %s and %s\n"):format(sym, defs[sym], name))
          os.exit(1)
        end
        defs[sym] = name
      end
    end
  end
  assert(p:close(), "nm failed on " .. o)
end

-- edges[a][b] = one symbol a takes from b (for the message)
local edges, files = {}, {}
for _, o in ipairs(objs) do
  local a = name_of[o]
  files[#files + 1] = a
  edges[a] = {}
  for sym in pairs(uses[a]) do
    local b = defs[sym]
    if b and b ~= a and not edges[a][b] then edges[a][b] = sym end
  end
end
table.sort(files)

local failed = false
local function fail(msg)
  io.stderr:write("cycles: " .. msg .. "\n")
  failed = true
end

-- the core never depends on the binding
for _, a in ipairs(files) do
  if a:match("^core/") then
    for b, sym in pairs(edges[a]) do
      if not b:match("^core/") then fail(("%s uses %s from %s (core must not know the binding)"):format(a, sym, b)) end
    end
  end
end

-- Tarjan's strongly connected components
local index, low, onstack, stack, n = {}, {}, {}, {}, 0
local function connect(v)
  n = n + 1
  index[v], low[v] = n, n
  stack[#stack + 1] = v
  onstack[v] = true
  local succ = {}
  for w in pairs(edges[v]) do succ[#succ + 1] = w end
  table.sort(succ)
  for _, w in ipairs(succ) do
    if not index[w] then
      connect(w)
      low[v] = math.min(low[v], low[w])
    elseif onstack[w] then
      low[v] = math.min(low[v], index[w])
    end
  end
  if low[v] == index[v] then
    local comp = {}
    repeat
      local w = table.remove(stack)
      onstack[w] = nil
      comp[#comp + 1] = w
    until w == v
    if #comp > 1 then
      table.sort(comp)
      local set = {}
      for _, f in ipairs(comp) do set[f] = true end
      local why = {}
      for _, f in ipairs(comp) do
        for g, sym in pairs(edges[f]) do
          if set[g] then why[#why + 1] = ("  %s -> %s (%s)"):format(f, g, sym) end
        end
      end
      table.sort(why)
      fail("cycle between " .. table.concat(comp, ", ") .. ":\n" .. table.concat(why, "\n"))
    end
  end
end
for _, f in ipairs(files) do
  if not index[f] then connect(f) end
end

if failed then os.exit(1) end
print(("cycles: %d C files, no cycle"):format(#files))
