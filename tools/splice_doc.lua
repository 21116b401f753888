-- Put stdin between the markers <!-- natpunch:NAME --> and
-- <!-- /natpunch:NAME --> of a document (for generated tables that need
-- the lab, like `make traversal-docs`; tools/gen_docs.lua fills the ones
-- the NAT registry gives).  Usage: lua5.4 tools/splice_doc.lua FILE NAME < TEXT
local path, name = arg[1], arg[2]
if not (path and name and name:match("^[%w_]+$")) then
  io.stderr:write("usage: lua5.4 tools/splice_doc.lua FILE NAME < TEXT\n")
  os.exit(2)
end
local body = io.read("a")
if not body or not body:match("%S") then
  io.stderr:write("splice_doc: nothing on stdin; ", path, " left as it was\n")
  os.exit(1)
end
local f = assert(io.open(path, "r"))
local text = f:read("a")
f:close()
local open_tag, close_tag = "<!-- natpunch:" .. name .. " -->", "<!-- /natpunch:" .. name .. " -->"
local a, b = text:find(open_tag, 1, true)
local c = text:find(close_tag, b or 1, true)
if not a or not c then
  io.stderr:write(("splice_doc: %s has no %s ... %s\n"):format(path, open_tag, close_tag))
  os.exit(1)
end
if body:sub(-1) ~= "\n" then body = body .. "\n" end
text = text:sub(1, b) .. "\n" .. body .. text:sub(c)
f = assert(io.open(path, "w"))
f:write(text)
f:close()
print("updated " .. path .. " (" .. name .. ")")
