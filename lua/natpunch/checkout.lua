--- Run from a built checkout without installing: the module paths of
-- <root>/lua and the C module of <root>/$NATPUNCH_BUILD (default "build";
-- a relative value is taken from <root>).  Scripts of the checkout (bin/,
-- examples/, bench/) load this file by its path, which works before any
-- module path is set:
--
--   local root = dofile((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/../lua/natpunch/checkout.lua")
--
-- (an example copied out of the checkout drops that line; installed as a
-- rock, the modules are found without it).  Returns <root>, as the path it
-- was loaded by ("examples/.."), or nil if this file is not in a checkout.
local here = debug.getinfo(1, "S").source:match("^@(.*)$") or ""
local root = here:match("^(.*)/lua/natpunch/checkout%.lua$")
if not root and here == "lua/natpunch/checkout.lua" then root = "." end
if not root then return nil end
if root == "" then root = "/" end

package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
local build = os.getenv("NATPUNCH_BUILD") or "build"
if build:sub(1, 1) ~= "/" then build = root .. "/" .. build end
package.cpath = build .. "/?.so;" .. package.cpath
return root
