-- Regenerate the tables of docs/LAB.md and docs/TRAVERSAL.md from the NAT
-- registry (lua/natpunch/lab/nat_types.lua):  lua5.4 tools/gen_docs.lua
-- With --check, change nothing and exit 1 if a table is out of date.
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
local nat_types = require "natpunch.lab.nat_types"
local check = arg[1] == "--check"
local stale = false
for _, path in ipairs({ "docs/LAB.md", "docs/TRAVERSAL.md" }) do
  local f = assert(io.open(path, "r"))
  local text = f:read("a")
  f:close()
  local new, changed = nat_types.fill_doc(text)
  if changed then
    stale = true
    if check then
      io.stderr:write(path, ": tables out of date (run lua5.4 tools/gen_docs.lua)\n")
    else
      f = assert(io.open(path, "w"))
      f:write(new)
      f:close()
      print("updated " .. path)
    end
  end
end
os.exit((check and stale) and 1 or 0)
