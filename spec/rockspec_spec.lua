-- rockspec/natpunch-scm-1.rockspec: lists every source, builds with
-- `luarocks make` into a temporary tree, and the installed rock works.
-- The build runs in a copy of the checkout, because the builtin build type
-- writes its objects next to the sources.
local helper = require "spec.helper"

local q = helper.q
local ROCKSPEC = "rockspec/natpunch-scm-1.rockspec"
-- the project's warning flags (Makefile), which luarocks' builtin type only
-- takes from the command line
local CFLAGS = "-O2 -fPIC -fvisibility=hidden -std=gnu11 -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter"
-- No sanitizer runtime (which `make sanitize` preloads) in luarocks, gcc,
-- coreutils and the installed rock: this spec checks packaging, not memory.
local sh = helper.sh

-- run(cmd): stdout and stderr together, exit code
local function run(cmd) return helper.exec(cmd) end

local function lines(cmd)
  local out = {}
  for l in run(cmd):gmatch("[^\n]+") do out[#out + 1] = l end
  table.sort(out)
  return out
end

local function load_rockspec()
  local env = {}
  local chunk = assert(loadfile(ROCKSPEC, "t", env))
  chunk()
  return env
end

describe("rockspec", function()
  it("names every C source and every Lua module, and only those", function()
    local spec = load_rockspec()
    assert.equal("natpunch", spec.package)
    assert.equal("scm-1", spec.version)
    assert.equal("builtin", spec.build.type)
    assert.equal("bin/natpunch", spec.build.install.bin.natpunch)
    assert.same({ header = "uv.h", library = "uv" }, spec.external_dependencies.LIBUV)

    local core = spec.build.modules["natpunch.core"]
    local listed = {}
    for _, s in ipairs(core.sources) do listed[#listed + 1] = s end
    table.sort(listed)
    local want = lines("ls csrc/core/*.c csrc/lua/*.c")
    local missing = {}
    for _, f in ipairs(want) do
      local found = false
      for _, s in ipairs(listed) do found = found or s == f end
      if not found then missing[#missing + 1] = '        "' .. f .. '",' end
    end
    assert.same(want, listed, "the rockspec's natpunch.core sources differ from csrc/core/*.c + csrc/lua/*.c; add:\n"
      .. table.concat(missing, "\n"))

    local mods = {}
    for name, file in pairs(spec.build.modules) do
      if type(file) == "string" then mods[file] = name end
    end
    local absent = {}
    for _, f in ipairs(lines("find lua -name '*.lua'")) do
      local name = f:gsub("^lua/", ""):gsub("%.lua$", ""):gsub("/init$", ""):gsub("/", ".")
      if mods[f] ~= name then
        absent[#absent + 1] = string.format('    ["%s"] = "%s",', name, f)
      end
      mods[f] = nil
    end
    assert.same({}, absent, "modules missing from the rockspec:\n" .. table.concat(absent, "\n"))
    assert.same({}, mods, "the rockspec names Lua files that do not exist")

    -- natpunch-wire's sources are installed for the lab, under their own names
    local wire = {}
    for name, file in pairs(spec.build.install.lua) do
      assert.equal("natpunch.labwire." .. file:match("([^/]+)%.[ch]$"), name)
      wire[#wire + 1] = file
    end
    table.sort(wire)
    assert.same(lines("ls csrc/labwire/*.c csrc/labwire/*.h"), wire)
    assert.same({ "csrc/readline/np_readline.c" }, spec.build.modules["natpunch.readline"].sources)
    -- a test section (busted through make test), and the license
    assert.equal("command", spec.test.type)
    assert.equal("make test", spec.test.command)
    assert.equal("MIT", spec.description.license)
    assert.matches("^MIT License\n", helper.read_file("LICENSE"))
  end)

  it("builds with luarocks make into a tree where natpunch loads and runs", function()
    local tmp = run("mktemp -d /tmp/natpunch-rock.XXXXXX"):match("[^\n]+")
    finally(function() os.execute(sh("rm -rf " .. q(tmp))) end)
    local src, tree = tmp .. "/src", tmp .. "/tree"
    assert(os.execute(sh("mkdir -p " .. q(src) .. " && cp -r csrc lua bin rockspec LICENSE " .. q(src))))

    local out, code = run("cd " .. q(src) .. " && timeout 300 luarocks --lua-version=5.4 --tree "
      .. q(tree) .. " make " .. ROCKSPEC .. " CFLAGS=" .. q(CFLAGS))
    assert.equal(0, code, out)
    assert.matches("-Werror", out, 1, true)           -- our flags reached the compiler
    assert.matches("natpunch scm-1 is now installed", out, 1, true)

    -- the tree's paths, as `luarocks path` gives them; run outside the
    -- checkout so nothing is found through ./?.lua
    local paths = "eval \"$(luarocks --lua-version=5.4 --tree " .. q(tree) .. " path)\" && cd " .. q(tmp) .. " && "
    out, code = run("sh -c " .. q(paths .. "timeout 20 lua5.4 -e '"
      .. "local n = require \"natpunch\"; "
      .. "print(n.version, package.searchpath(\"natpunch.core\", package.cpath), "
      .. "package.searchpath(\"natpunch.cli\", package.path))'"))
    assert.equal(0, code, out)
    assert.matches("^%d+%.%d+%.%d+\t" .. tree:gsub("%p", "%%%0") .. "/lib/lua/5%.4/natpunch/core%.so\t"
      .. tree:gsub("%p", "%%%0") .. "/share/lua/5%.4/natpunch/cli/init%.lua\n$", out)

    -- the installed command: help, and real work (a rendezvous and a peer
    -- that registers, in the shell)
    out, code = run("timeout 20 " .. q(tree .. "/bin/natpunch") .. " --help")
    assert.equal(0, code, out)
    assert.matches("Usage: natpunch COMMAND", out, 1, true)
    out, code = run("timeout 20 " .. q(tree .. "/bin/natpunch") .. " peer --help")
    assert.equal(0, code, out)
    out, code = run("printf '%s\\n' "
      .. q('rv = natpunch.rendezvous{ listen = "127.0.0.1:0" }') .. " "
      .. q('p = natpunch.peer{ server = rv:address(), id = "rock" }') .. " "
      .. q('p:register() == rv:lookup("rock").public') .. " | "
      .. "sh -c " .. q(paths .. "timeout 20 natpunch shell"))
    assert.equal(0, code, out)
    assert.equal("true", out:match("([^\n]*)\n$"), out)

    -- the installed shell has line editing, the installed lab finds (and
    -- builds) natpunch-wire from absolute paths, whatever the directory
    out, code = run("sh -c " .. q(paths .. "XDG_CACHE_HOME=" .. q(tmp .. "/cache") .. " timeout 60 lua5.4 -e '"
      .. "local rl = require \"natpunch.readline\"; local lab = require \"natpunch.lab\"; "
      .. "print(rl.version); print(lab.wire_src_dir()); print(lab.wire_path()); "
      .. "print(table.concat(lab.wire_build_argv(), \" \")); print(assert(lab.build_wire()))'"))
    assert.equal(0, code, out)
    local ver, srcdir, wpath, argv, built = out:match("^([^\n]+)\n([^\n]+)\n([^\n]+)\n([^\n]+)\n([^\n]+)\n$")
    assert.is_truthy(ver, out)
    assert.equal(tree .. "/share/lua/5.4/natpunch/labwire", srcdir)
    assert.equal(tmp .. "/cache/natpunch/natpunch-wire", wpath)
    assert.matches(" " .. srcdir:gsub("%p", "%%%0") .. "/main%.c ", argv)
    assert.is_nil(argv:find("No such file", 1, true))
    assert.equal(wpath, built)
    assert.equal(0, select(2, run("test -x " .. q(built))))
  end)
end)
