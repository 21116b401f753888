-- The README's "Try it": each make target installs only what it needs
-- (tools/deps.sh TARGET), and `make demo` works for a normal user (no root:
-- loopback) without coturn.  As root the normal user is `nobody` (setpriv)
-- in a copy of the checkout it owns; otherwise the current user.
local helper = require "spec.helper"

local q, sh = helper.q, helper.sh

-- run(cmd): stdout and stderr together, exit code
local function run(cmd) return helper.exec(cmd) end

local function words(s)
  local set = {}
  for w in (s or ""):gmatch("[%w%.%-]+") do set[w] = true end
  return set
end

describe("setting up as the README says", function()
  local tmp
  before_each(function() tmp = helper.tmpdir("tryit") end)
  after_each(function() os.execute(sh("rm -rf " .. q(tmp))) end)

  it("installs per target: coturn and the STUN client not for make demo", function()
    -- a PATH with only the basics, so the other tools look missing
    local bin = tmp .. "/bin"
    assert(os.execute(sh("mkdir -p " .. q(bin))))
    for _, tool in ipairs({ "sh", "id", "sed", "tr", "echo", "cat", "make", "gcc", "pkg-config", "lua5.4" }) do
      os.execute(sh("p=$(command -v " .. tool .. ") && ln -s \"$p\" " .. q(bin .. "/" .. tool)))
    end
    local root = helper.is_root()
    local function deps(target)
      local out, code = run("env PATH=" .. q(bin) .. " DEPS_DRY_RUN=1 sh tools/deps.sh " .. target)
      local list = out:match("would install:([^\n]*)") or out:match("missing Debian packages:([^\n]*)")
        or out:match("not installed %(needs root, not required%):([^\n]*)")
      return words(list), code, out
    end
    local demo, dcode, dout = deps("demo")
    assert.equal(0, dcode, dout)                       -- root or not: the demo can run
    for _, pkg in ipairs({ "coturn", "stun-client", "lua-busted", "lua-check", "luarocks", "tmux" }) do
      assert.is_nil(demo[pkg], pkg .. " is not for the demo: " .. dout)
    end
    assert.is_true(demo.nftables and demo.iproute2, dout)   -- the NAT lab, as root
    if not root then assert.matches("not required", dout, 1, true) end

    local bench, _, bout = deps("bench")
    assert.is_true(bench.coturn and bench["stun-client"], bout)
    assert.is_nil(bench.nftables, bout)

    local test, tcode, tout = deps("test")
    assert.is_true(test["lua-check"] and test.luarocks and test.tmux and test.nftables, tout)
    -- the full suite has interop specs against coturn and the STUN client
    assert.is_true(test.coturn and test["stun-client"], tout)
    if not root then assert.equal(1, tcode, tout) end   -- the specs cannot run without them

    local _, bad, badout = deps("nonsense")
    assert.equal(2, bad, badout)
    assert.matches("unknown target 'nonsense'", badout, 1, true)
    -- every make target that installs asks for its own list
    local mk = helper.read_file("Makefile")
    assert.matches("\ntest: deps%-test ", mk)
    assert.matches("\ndemo: deps%-demo ", mk)
    assert.matches("\nbench: deps%-bench ", mk)
  end)

  it("runs `make demo` as a normal user, on loopback", function()
    local root = helper.is_root()
    if root and select(2, run("command -v setpriv")) ~= 0 then return pending("needs setpriv") end
    local src = tmp .. "/src"
    assert(os.execute(sh("mkdir -p " .. q(src) .. " && git ls-files -z | xargs -0 cp --parents -t " .. q(src))))
    local as_user = ""
    if root then
      assert(os.execute(sh("chown -R 65534:65534 " .. q(tmp) .. " && chmod 755 " .. q(tmp))))
      as_user = "setpriv --reuid=65534 --regid=65534 --clear-groups "
    end
    -- every command of the machine but coturn's and the STUN client's
    local bin = tmp .. "/nocoturn"
    assert(os.execute(sh("mkdir -p " .. q(bin)
      .. " && for f in /usr/local/bin/* /usr/bin/* /bin/* /usr/sbin/* /sbin/*; do "
      .. "n=${f##*/}; case $n in turnutils_*|turnserver|stun) continue ;; esac; "
      .. "[ -e " .. q(bin) .. "/$n ] || ln -s \"$f\" " .. q(bin) .. "/$n; done")))
    if root then assert(os.execute(sh("chown -R 65534:65534 " .. q(bin)))) end
    -- the demo uses the build it makes, not the one the specs run on
    local out, code = run("cd " .. q(src) .. " && " .. as_user .. "env -u NATPUNCH_BUILD HOME=" .. q(tmp)
      .. " PATH=" .. q(bin) .. " timeout 240 make demo")
    assert.equal(0, code, out)
    if root then
      assert.matches("falling back to loopback", out, 1, true)
      assert.is_nil(out:find("installing", 1, true), out)
    end
    assert.matches("touch #1 acknowledged", out, 1, true)
    assert.is_nil(out:lower():find("coturn", 1, true), out)
  end)
end)
