-- The security options of the command line: --secret / --token on both
-- sides, --candidate, --key, --no-encrypt, --stun-rate (docs/SECURITY.md).
local helper = require "spec.helper"
local json = require "natpunch.json"

local CLI = helper.cli()

local function run(cmd)
  local p = io.popen(helper.sh(cmd .. " 2>&1; echo \"exit=$?\""))
  local out = p:read("a")
  p:close()
  local code = tonumber(out:match("exit=(%d+)%s*$"))
  return out:gsub("exit=%d+%s*$", ""), code
end

-- A background process; its stdout in a file.  kill() stops it.
local function spawn(cmd, dir, name)
  local out = dir .. "/" .. name .. ".out"
  local pidf = dir .. "/" .. name .. ".pid"
  os.execute(helper.sh(cmd .. " > " .. helper.q(out) .. " 2>/dev/null & echo $! > " .. helper.q(pidf)))
  local bg = { out = out }
  function bg.expect(pattern, seconds)
    for _ = 1, (seconds or 5) * 20 do
      for line in helper.read_file(out):gmatch("[^\n]+") do
        if line:find(pattern) then return line end
      end
      os.execute(helper.sh("sleep 0.05"))
    end
    error(name .. ": no line matching '" .. pattern .. "'; stdout:\n" .. helper.read_file(out))
  end
  function bg.kill()
    local pid = helper.read_file(pidf):match("%d+")
    if pid then os.execute(helper.sh("kill " .. pid .. " 2>/dev/null; wait " .. pid .. " 2>/dev/null")) end
  end
  return bg
end

describe("natpunch CLI security options", function()
  local dir, procs
  before_each(function()
    dir = helper.tmpdir("seccli")
    procs = {}
  end)
  after_each(function()
    for _, p in ipairs(procs) do p.kill() end
    os.execute(helper.sh("rm -rf " .. helper.q(dir)))
  end)

  it("--secret on the server needs a token; peers mint one with --secret or bring --token", function()
    local rv = spawn("timeout 30 env " .. CLI .. " rendezvous --listen 127.0.0.1:0 --secret s3 --json", dir, "rv")
    procs[#procs + 1] = rv
    local addr = json.decode(rv.expect('"event":"listening"')).address
    local bob = spawn("timeout 30 env " .. CLI .. " peer --server " .. addr .. " --id bob --secret s3 "
      .. "--candidate 198.51.100.9:5000 --key " .. helper.q(dir .. "/bob.key") .. " --json", dir, "bob")
    procs[#procs + 1] = bob
    bob.expect('"event":"registered"', 10)
    assert.matches("^%x+%s*$", helper.read_file(dir .. "/bob.key"))
    local reg = json.decode(rv.expect('"peer":"bob"'))
    assert.matches("198.51.100.9:5000", reg.private, 1, true)
    -- a connecting peer with its secret: connects, touches, gets the echo
    local out, code = run(CLI .. " peer --server " .. addr .. " --id alice --secret s3 --connect bob "
      .. "--touch hi --json --timeout 10")
    assert.equal(0, code, out)
    assert.matches('"event":"touch_acked"', out)
    -- none, or a token for another id: refused with the reason
    out, code = run(CLI .. " peer --server " .. addr .. " --id eve --connect bob --json --timeout 3")
    assert.equal(1, code)
    assert.matches("token required", out)
    local auth = require "natpunch.auth"
    out, code = run(CLI .. " peer --server " .. addr .. " --id eve --token "
      .. helper.q(auth.mint_token("s3", "bob", os.time() + 60)) .. " --connect bob --json --timeout 3")
    assert.equal(1, code)
    assert.matches("another id", out)
  end)

  it("a forbidden --candidate is refused; --no-encrypt works against a default peer", function()
    local out, code = run(CLI .. " peer --server 127.0.0.1:9 --id x --candidate 224.0.0.1:9 --json --timeout 1")
    assert.equal(1, code)
    assert.matches('"event":"failed"', out)
    assert.matches("multicast", out)
    local rv = spawn("timeout 30 env " .. CLI .. " rendezvous --listen 127.0.0.1:0 --stun-rate 100 --json", dir, "rv")
    procs[#procs + 1] = rv
    local addr = json.decode(rv.expect('"event":"listening"')).address
    local bob = spawn("timeout 30 env " .. CLI .. " peer --server " .. addr .. " --id bob --json", dir, "bob")
    procs[#procs + 1] = bob
    bob.expect('"event":"registered"', 10)
    out, code = run(CLI .. " peer --server " .. addr .. " --id alice --no-encrypt --connect bob "
      .. "--send plain --json --timeout 10")
    assert.equal(0, code, out)
    assert.matches('"data":"plain"', out)
  end)

  it("pins the server key: the rendezvous prints it, --server ADDR#KEY and --server-key check it", function()
    local rv = spawn("timeout 30 env " .. CLI .. " rendezvous --listen 127.0.0.1:0 --json", dir, "rv")
    procs[#procs + 1] = rv
    local ev = json.decode(rv.expect('"event":"listening"'))
    assert.matches("^" .. string.rep("%x", 64) .. "$", ev.key)
    local other = string.rep("ab", 32)
    assert.are_not.equal(other, ev.key)
    -- the right key, pinned in the server argument: registers
    local out, code = run("timeout 20 env " .. CLI .. " peer --server " .. ev.address .. "#" .. ev.key
      .. " --id pinned --connect nobody --timeout 3 --json")
    assert.equal(1, code, out)   -- nobody is there to connect to, but registration worked
    assert.truthy(out:find('"event":"registered"', 1, true), out)
    -- a wrong key: a clear failure, before anything is registered
    for _, args in ipairs({ " --server " .. ev.address .. "#" .. other, " --server " .. ev.address
        .. " --server-key " .. other }) do
      out, code = run("timeout 20 env " .. CLI .. " peer" .. args .. " --id wrong --timeout 3")
      assert.equal(1, code, out)
      assert.matches("server key mismatch %(pinned abababab", out)
      assert.matches("the server sent " .. ev.key:sub(1, 16), out, 1, true)
      assert.is_nil(out:find("registered via", 1, true), out)
    end
    -- an impostor first, the real server second: the peer fails over to it
    local fake = spawn("timeout 30 env " .. CLI .. " rendezvous --listen 127.0.0.1:0 --json", dir, "fake")
    procs[#procs + 1] = fake
    local fev = json.decode(fake.expect('"event":"listening"'))
    out, code = run("timeout 20 env " .. CLI .. " peer --server " .. fev.address .. "#" .. ev.key
      .. " --server " .. ev.address .. "#" .. ev.key .. " --id failover --connect nobody --timeout 3 --json")
    assert.equal(1, code, out)
    assert.truthy(out:find('"event":"server_failed"', 1, true), out)
    assert.truthy(out:find('"server":"' .. ev.address .. '"', 1, true), out)
    assert.truthy(out:find('"event":"registered"', 1, true), out)
    -- a malformed pin is a usage error
    out, code = run("env " .. CLI .. " peer --server " .. ev.address .. "#abc --id x")
    assert.equal(2, code, out)
    assert.matches("64 hex digits", out)
  end)

  it("rejects a bad --stun-rate", function()
    local out, code = run(CLI .. " rendezvous --listen 127.0.0.1:0 --stun-rate 0")
    assert.equal(2, code)
    assert.matches("stun%-rate", out)
  end)
end)
