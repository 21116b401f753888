-- Every example runs for real, on 127.0.0.1, bounded in time; background
-- processes are killed in after_each, also when a test fails.
local helper = require "spec.helper"

local q, sh, read_file = helper.q, helper.sh, helper.read_file
-- within(seconds, script): the Lua of helper.cli() runs script, bounded by timeout(1)
local within, run = helper.within, helper.exec

-- Background processes of the running test (stdout and stderr in one
-- file), killed by after_each.
local procs = helper.procs()
local function spawn(cmd, dir, name) return procs.spawn(cmd, dir, name, { merge = true }) end

local function tmpdir() return helper.tmpdir("examples") end

-- The rendezvous of examples/rendezvous.lua on a free port.
local function start_rendezvous(dir)
  local rv = spawn(within(60, "examples/rendezvous.lua 127.0.0.1:0 50"), dir, "rv")
  local listening = "^listening on (127%.0%.0%.1:%d+)$"
  rv.address = rv.expect(listening):match(listening)
  return rv
end

describe("examples", function()
  local dir
  before_each(function() dir = tmpdir() end)
  after_each(function()
    procs.kill_all()
    os.execute(sh("rm -rf " .. q(dir)))
  end)

  it("demo.lua prints the whole transcript and exits 0", function()
    local out, code = run(within(30, "examples/demo.lua"))
    assert.equal(0, code, out)
    local expected = {
      "rendezvous listening on 127%.0%.0%.1:%d+",
      "rendezvous: bob registered from public address 127%.0%.0%.1:%d+",
      "alice registered, public address 127%.0%.0%.1:%d+",
      "rendezvous: introduced alice to bob",
      "alice: connected to bob, %a+ path to 127%.0%.0%.1:%d+, set up in %d+ ms %(udp%)",
      'bob: got "hello bob" %(data%) from alice',
      "alice: touch #1 acknowledged, RTT %d+ ms",
      "alice: touch #2 acknowledged, RTT %d+ ms",
      "alice: touch #3 acknowledged, RTT %d+ ms",
      'alice: got "echo: touch #3" %(touch%)',
      "done",
    }
    local pos = 1
    for _, pat in ipairs(expected) do
      local s, e = out:find(pat, pos)
      assert.is_truthy(s, "missing (in order) '" .. pat .. "' in:\n" .. out)
      pos = e + 1
    end
    assert.matches("%[%s*%d+ ms%] done", out)
  end)

  it("rendezvous.lua and peer.lua: register, introduce, touch, echo", function()
    local rv = start_rendezvous(dir)
    local bob = spawn(within(40, "examples/peer.lua " .. rv.address .. " bob"), dir, "bob")
    bob.expect("^registered as bob")
    local out, code = run(within(20, "examples/peer.lua " .. rv.address .. " alice bob"))
    assert.equal(0, code, out)
    assert.matches("registered as alice, public address 127%.0%.0%.1:%d+", out)
    assert.matches("connected to bob: %a+ path to 127%.0%.0%.1:%d+, set up in %d+ ms", out)
    assert.matches("touch acked in %d+ ms", out)
    assert.matches("bob says %(touch%): echo: hello from alice", out)
    bob.expect("^alice says %(touch%): hello from alice$")
    bob.expect("^alice connected: %a+ path")
    -- the hooks ran
    rv.expect("^register bob %(public 127%.0%.0%.1:%d+")
    rv.expect("^register alice")
    rv.expect("^introduce alice %-> bob$")
  end)

  it("rendezvous.lua's on_register hook refuses reserved ids", function()
    local rv = start_rendezvous(dir)
    local out, code = run(within(20, "examples/peer.lua " .. rv.address .. " admin7 bob"))
    assert.is_not.equal(0, code)
    assert.matches("reserved id", out, 1, true)
    assert.is_nil(read_file(rv.out):find("register admin7", 1, true))
  end)

  it("chat.lua: two chats exchange lines read from stdin (a pipe, a file)", function()
    local rv = start_rendezvous(dir)
    -- bob waits; his stdin stays open 3 s so he is still there to answer
    local bob = spawn("(printf 'hi alice\\nhow are you\\n'; sleep 3) | "
      .. within(30, "examples/chat.lua " .. rv.address .. " bob"), dir, "bob")
    bob.expect("^%* waiting for someone")
    local input = dir .. "/alice.txt"
    local f = assert(io.open(input, "w"))
    f:write("hello bob\n", "second line\n", "last line without newline")
    f:close()
    -- alice reads a file (bob a pipe): both ways of reading stdin
    local out, code = run(within(20, "examples/chat.lua " .. rv.address .. " alice bob") .. " < " .. q(input))
    assert.equal(0, code, out)
    assert.matches("%* connected to bob %(%a+ path, 127%.0%.0%.1:%d+%)", out)
    assert.matches("bob: hi alice\n", out, 1, true)
    assert.matches("bob: how are you\n", out, 1, true)
    assert.is_nil(out:find("!", 1, true), out)    -- every line was acknowledged
    assert.is_true(bob.wait(10), "bob did not leave after end of input")
    local bout = read_file(bob.out)
    assert.matches("%* alice joined", bout)
    -- in the order typed, each once
    local got = {}
    for line in bout:gmatch("alice: ([^\n]*)") do got[#got + 1] = line end
    assert.same({ "hello bob", "second line", "last line without newline" }, got)
  end)

  it("the README's Lua example runs as shown", function()
    local code = assert(read_file("README.md"):match("```lua\n(.-)```"), "no ```lua block in README.md")
    -- the README uses the well-known port; take a free one here
    local u = require("natpunch.core").udp()
    assert(u:bind("127.0.0.1", 0))
    local _, port = u:getsockname()
    u:close()
    local script = dir .. "/readme.lua"
    local f = assert(io.open(script, "w"))
    f:write('package.path = "lua/?.lua;lua/?/init.lua;" .. package.path\n',
      'package.cpath = ', string.format("%q", helper.build .. "/?.so;"), ' .. package.cpath\n',
      (code:gsub("127%.0%.0%.1:3478", "127.0.0.1:" .. port)))
    f:close()
    local out, status = run(within(20, q(script)))
    assert.equal(0, status, out)
    assert.matches("^%a+ path to 127%.0%.0%.1:%d+ in %d+ ms\nalice says hello\nacked in %d+ ms\n$", out)
  end)

  it("every example is valid Lua that finds the modules from the repository root", function()
    for _, name in ipairs({ "demo", "rendezvous", "peer", "chat" }) do
      assert(loadfile("examples/" .. name .. ".lua"))
    end
    -- usage errors exit 2 before touching the network
    for _, name in ipairs({ "peer", "chat" }) do
      local out, code = run(within(10, "examples/" .. name .. ".lua"))
      assert.equal(2, code)
      assert.matches("usage: lua5.4 examples/" .. name .. ".lua SERVER", out, 1, true)
    end
  end)
end)
