-- The C files depend on each other one way: tools/cycles.lua (run by
-- `make lint`) finds every cycle of references between objects, and the
-- core never uses the binding.  Here it runs on the real objects and on
-- small objects made to fail it.
local helper = require "spec.helper"

-- sh(cmd): stdout and stderr together, exit code
local function sh(cmd) return helper.exec(cmd) end

local function tmpdir() return helper.tmpdir("cdeps") end

describe("C file dependencies", function()
  it("have no cycle in csrc/core and csrc/lua", function()
    local d = tmpdir()
    local cflags = "$(pkg-config --cflags lua5.4 libuv 2>/dev/null || echo -I/usr/include/lua5.4)"
    local out, rc = sh("mkdir -p " .. d .. "/core " .. d .. "/lua && for f in csrc/core/*.c csrc/lua/*.c; do " ..
      "cc -std=gnu11 -fPIC -Icsrc/core -Icsrc/lua " .. cflags .. " " ..
      "-c $f -o " .. d .. "/$(basename $(dirname $f))/$(basename $f .c).o || exit 1; done && " ..
      helper.lua .. " tools/cycles.lua " .. d .. "/*/*.o")
    os.execute("rm -rf " .. helper.q(d))
    assert.equal(0, rc, out)
    assert.matches("no cycle", out)
  end)

  it("fail the check on a cycle and on the core using the binding", function()
    local d = tmpdir()
    local function obj(path, src)
      local f = assert(io.open(d .. "/" .. path .. ".c", "w"))
      f:write(src)
      f:close()
      local out, rc = sh("cc -c -o " .. d .. "/" .. path .. ".o " .. d .. "/" .. path .. ".c")
      assert.equal(0, rc, out)
      return d .. "/" .. path .. ".o"
    end
    os.execute("mkdir -p " .. d .. "/core " .. d .. "/lua")
    local a = obj("lua/a", "int b(void); int a(void) { return b(); }\n")
    local b = obj("lua/b", "int a(void); int b(void) { return 1; } int c(void) { return a(); }\n")
    local out, rc = sh(helper.lua .. " tools/cycles.lua " .. a .. " " .. b)
    assert.equal(1, rc, out)
    assert.matches("cycle between lua/a, lua/b", out)
    assert.matches("lua/b %-> lua/a %(a%)", out)
    local k = obj("core/k", "int a(void); int k(void) { return a(); }\n")
    out, rc = sh(helper.lua .. " tools/cycles.lua " .. a .. " " .. k)
    assert.equal(1, rc, out)
    assert.matches("core/k uses a from lua/a", out)
    os.execute("rm -rf " .. helper.q(d))
  end)
end)

describe("C layout (tools/cstyle.lua)", function()
  it("holds for the tree: no tabs, one include guard per header, formatted files", function()
    local out, rc = sh(helper.lua .. " tools/cstyle.lua")
    assert.equal(0, rc, out)
  end)

  it("fails on a tab, a shared include guard and an unformatted file", function()
    local d = tmpdir()
    local function file(name, text)
      local f = assert(io.open(d .. "/" .. name, "w"))
      f:write(text)
      f:close()
      return d .. "/" .. name
    end
    local a = file("a.h", "#ifndef SAME_H\n#define SAME_H\n#endif\n")
    local b = file("b.h", "#ifndef SAME_H\n#define SAME_H\n#endif\n")
    local t = file("t.c", "int f(void) {\n\treturn 1;\n}\n")
    local out, rc = sh(helper.lua .. " tools/cstyle.lua " .. a .. " " .. b .. " " .. t)
    assert.equal(1, rc, out)
    assert.matches("include guard SAME_H already used", out)
    assert.matches("t.c:2: tab", out)
    local u = file("u.c", "int   g( void ){return 2;}\n")
    out, rc = sh("CSTYLE_FORMAT_ALL=1 " .. helper.lua .. " tools/cstyle.lua " .. u)
    assert.equal(1, rc, out)
    assert.matches("not clang%-formatted", out)
    os.execute("rm -rf " .. helper.q(d))
  end)
end)

describe("core.so", function()
  it("exports luaopen_natpunch_core and nothing else (nm -D)", function()
    local so = helper.build .. "/natpunch/core.so"
    local out, rc = sh("nm -D --defined-only " .. helper.q(so))
    assert.equal(0, rc, out)
    local names = {}
    for name in out:gmatch("%x+ %a ([%w_@.]+)") do names[#names + 1] = name end
    assert.same({ "luaopen_natpunch_core" }, names)
    -- and it still loads and works
    local core = require "natpunch.core"
    assert.equal("function", type(core.udp))
  end)
end)
