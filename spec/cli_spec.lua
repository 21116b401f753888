-- bin/natpunch end to end on 127.0.0.1: a rendezvous and peers as separate
-- processes.  Every command is bounded with `timeout`; background processes
-- are killed in after_each, also when a test fails.
local helper = require "spec.helper"
local json = require "natpunch.json"

local CLI = helper.cli()
local q, sh, read_file = helper.q, helper.sh, helper.read_file
local within, run, events, find = helper.within, helper.exec, helper.events, helper.find_event
local function tmpdir() return helper.tmpdir("cli") end

-- Background processes of the running test, killed by after_each.
local procs = helper.procs()
local spawn = procs.spawn

-- How long starting the CLI takes on this machine now (ASan, load): the
-- bounds below are the command's own --timeout plus a few startups, not a
-- fixed number of seconds.
local startup
local function startup_secs(dir)
  if not startup then
    local _, _, _, secs = run(within(20) .. " peer --help", dir)
    startup = secs
  end
  return startup
end

local function start_rendezvous(dir) return helper.start_rendezvous(procs, dir) end

describe("natpunch CLI", function()
  local dir
  before_each(function() dir = tmpdir() end)
  after_each(function()
    procs.kill_all()
    os.execute(sh("rm -rf " .. q(dir)))
  end)

  describe("help and usage errors", function()
    it("prints help for the command and every subcommand, exit 0", function()
      local out, code = run(CLI .. " --help", dir)
      assert.equal(0, code)
      assert.matches("Usage: natpunch COMMAND", out)
      -- every command the help lists (the lab too), and at least these
      local names = {}
      for line in out:match("Commands:\n(.-)\n\n"):gmatch("[^\n]+") do
        local name = line:match("^  (%w+) ")
        if name and name ~= "help" then names[#names + 1] = name end
      end
      assert.is_true(#names >= 3)
      for _, must in ipairs({ "rendezvous", "peer", "shell" }) do assert.matches("  " .. must .. " ", out, 1, true) end
      for _, name in ipairs(names) do
        local sub, c1 = run(CLI .. " " .. name .. " --help", dir)
        assert.equal(0, c1)
        assert.matches("Usage: natpunch " .. name, sub, 1, true)
        local same, c2 = run(CLI .. " help " .. name, dir)
        assert.equal(0, c2)
        assert.equal(sub, same)
      end
      local h, c3 = run(CLI .. " help", dir)
      assert.equal(0, c3)
      assert.equal(out, h)
    end)

    it("documents the peer success rule and the JSON events", function()
      local out = run(CLI .. " peer --help", dir)
      for _, word in ipairs({ "--server", "--id", "--connect", "--send", "--touch", "--bind", "--timeout",
        "--no-echo", "--json", '"event":"connected"', '"event":"touch_acked"', '"event":"failed"' }) do
        assert.matches(word, out, 1, true)
      end
    end)

    it("rejects an unknown subcommand with exit 2 and a message", function()
      local out, code, err = run(CLI .. " frobnicate", dir)
      assert.equal(2, code)
      assert.equal("", out)
      assert.matches("unknown command 'frobnicate'", err, 1, true)
    end)

    it("rejects bad options with exit 2 and a message", function()
      local cases = {
        { "rendezvous --bogus", "unknown option '--bogus'" },
        { "rendezvous --ttl abc", "--ttl expects a positive number" },
        { "rendezvous --listen nowhere", "invalid address 'nowhere'" },
        { "rendezvous --json extra", "unexpected argument 'extra'" },
        { "peer --id a", "--server ADDR:PORT is required" },
        { "peer --server 127.0.0.1:9", "--id ID is required" },
        { "peer --server 127.0.0.1 --id a", "invalid address" },
        { "peer --server 127.0.0.1:9 --id a --timeout", "needs a value" },
        { "peer --server 127.0.0.1:9 --id a --timeout 0", "--timeout expects a positive number" },
        { "peer --server 127.0.0.1:9 --id a --json=yes", "takes no value" },
        { "shell --nope", "unknown option '--nope'" },
      }
      for _, c in ipairs(cases) do
        local out, code, err = run(CLI .. " " .. c[1], dir)
        assert.equal(2, code, c[1])
        assert.equal("", out, c[1])
        assert.matches(c[2], err, 1, true)
        assert.matches("--help", err, 1, true)
      end
    end)
  end)

  describe("an error before the command's loop", function()
    it("exits 1 and, with --json, still ends with a failed event (a C module that cannot be loaded)", function()
      -- an empty core.so, as while a rebuild rewrites it
      os.execute(sh("mkdir -p " .. q(dir .. "/natpunch") .. " && : > " .. q(dir .. "/natpunch/core.so")))
      local cmd = within(20):gsub("NATPUNCH_BUILD=%S+", "NATPUNCH_BUILD=" .. q(dir))
      local out, code, err = run(cmd .. " peer --server 127.0.0.1:9 --id x --connect y --timeout 1 --json", dir)
      assert.equal(1, code)
      assert.matches("natpunch peer: error: ", err, 1, true)
      local evs = events(out)
      assert.equal(1, #evs, out)
      assert.equal("failed", evs[1].event)
      assert.matches("^internal error: error loading module 'natpunch.core'", evs[1].reason)
      assert.matches("too short", evs[1].reason, 1, true)
      -- without --json: the message only
      out, code, err = run(cmd .. " peer --server 127.0.0.1:9 --id x --connect y --timeout 1", dir)
      assert.equal(1, code)
      assert.equal("", out)
      assert.matches("natpunch peer: error: ", err, 1, true)
    end)
  end)

  describe("rendezvous", function()
    it("prints listening first, then registrations, as JSON lines only", function()
      local rv = start_rendezvous(dir)
      local out, code = run(within(20) .. " peer --server " .. rv.address
        .. " --id regtest --connect nobody --timeout 5 --json", dir)
      assert.equal(1, code)
      local evs = events(out)
      assert.equal("registered", evs[1].event)
      rv.expect('"peer":"regtest"')
      rv.kill()
      local rvevs = events(read_file(rv.out))
      assert.same({ event = "listening", address = rv.address, key = rvevs[1].key, time = rvevs[1].time }, rvevs[1])
      assert.matches("^" .. string.rep("%x", 64) .. "$", rvevs[1].key)
      local _, reg = find(rvevs, "registered")
      assert.equal("regtest", reg.peer)
      assert.equal(evs[1].public, reg.public)
    end)

    it("exits 1 with a message when it cannot listen", function()
      -- 203.0.113.0/24 (TEST-NET-3) is never a local address: bind fails
      local out, code, err = run(within(10) .. " rendezvous --listen 203.0.113.1:3478 --json", dir)
      assert.equal(1, code)
      assert.equal("", out)
      assert.matches("cannot listen on 203.0.113.1:3478", err, 1, true)
    end)
  end)

  describe("peer", function()
    it("connects, touches and gets the echo back (exit 0)", function()
      local rv = start_rendezvous(dir)
      local b = spawn(within(40) .. " peer --server " .. rv.address .. " --id bob --json --timeout 30",
        dir, "bob")
      b.expect('"event":"registered"')
      local out, code, err, secs = run(within(20) .. " peer --server " .. rv.address
        .. " --id alice --connect bob --touch hello --send hi --json --timeout 10", dir)
      assert.equal(0, code, out .. err)
      assert.is_true(secs < 10)
      local evs = events(out)
      local ir, reg = find(evs, "registered")
      local ic, conn = find(evs, "connected")
      local it_, ack = find(evs, "touch_acked")
      assert.is_truthy(ir and ic and it_, out)
      assert.is_true(ir < ic and ic < it_, out)
      assert.matches("^127%.0%.0%.1:%d+$", reg.public)
      assert.equal("bob", conn.peer)
      assert.equal("udp", conn.transport)
      assert.is_truthy(conn.path == "public" or conn.path == "private", conn.path)
      assert.equal("number", type(conn.setup_ms))
      assert.equal("number", type(ack.rtt_ms))
      assert.equal("number", type(ack.id))
      -- bob echoed both: the touch as a touch, the send as a send
      local got = {}
      for i = ic + 1, #evs do
        if evs[i].event == "message" then got[evs[i].data] = evs[i].kind end
      end
      assert.equal("touch", got.hello, out)
      assert.is_nil(find(evs, "failed"), out)
      -- bob saw alice connect and both messages
      b.expect('"data":"hello"')
      local bevs = events(read_file(b.out))
      local _, bconn = find(bevs, "connected")
      assert.equal("alice", bconn.peer)
      rv.expect('"event":"introduced"')
      local _, intro = find(events(read_file(rv.out)), "introduced")
      assert.equal("alice", intro.from)
      assert.equal("bob", intro.to)
    end)

    it("with --touch alone: acked, echoed, and the echo acknowledged in turn", function()
      local rv = start_rendezvous(dir)
      local b = spawn(within(40) .. " peer --server " .. rv.address .. " --id bob --json --timeout 30",
        dir, "bob")
      b.expect('"event":"registered"')
      for round = 1, 3 do
        local id = "toucher" .. round
        local out, code, err = run(within(20) .. " peer --server " .. rv.address .. " --id " .. id
          .. " --connect bob --touch ping" .. round .. " --json", dir)
        assert.equal(0, code, out .. err)
        local evs = events(out)
        local ia = find(evs, "touch_acked")
        local im, msg = find(evs, "message")
        assert.is_truthy(ia and im, out)
        assert.same({ event = "message", peer = "bob", data = "ping" .. round, kind = "touch", time = msg.time }, msg)
        -- bob's echo was acknowledged by the peer that just exited
        b.expect('"event":"touch_acked".*"peer":"' .. id .. '"')
      end
      assert.is_nil(read_file(b.out):find('"touch_failed"', 1, true))
    end)

    it("fails fast with a failed event for an unknown id", function()
      local rv = start_rendezvous(dir)
      local out, code, _, secs = run(within(20) .. " peer --server " .. rv.address
        .. " --id lonely --connect nobody --touch x --json --timeout 10", dir)
      assert.equal(1, code)
      assert.is_true(secs < 10, "took " .. secs .. " s: waited for its --timeout")
      local evs = events(out)
      assert.equal("registered", evs[1].event)
      assert.equal("failed", evs[#evs].event)
      assert.matches("unknown peer 'nobody'", evs[#evs].reason, 1, true)
      assert.equal(1, select(2, out:gsub('"event":"failed"', "")))   -- exactly one
    end)

    it("registers with the live server past a dead one, and fails when none answers", function()
      local rv = start_rendezvous(dir)
      -- a port where nothing answers: bind one, close it
      local core = require "natpunch.core"
      local u = core.udp()
      assert(u:bind("127.0.0.1", 0))
      local _, dead_port = u:getsockname()
      u:close()
      local dead = "127.0.0.1:" .. dead_port
      -- waiting: registered with the live one at once, the dead one reported
      -- once its registration timed out (half of --timeout)
      local out, code = run(within(20) .. " peer --server " .. dead .. " --server " .. rv.address
        .. " --id hopper --json --timeout 3", dir)
      assert.equal(0, code, out)
      local evs = events(out)
      local i1, sf = find(evs, "server_failed")
      local i2, reg = find(evs, "registered")
      assert.is_truthy(i1 and i2 and i2 < i1, out)
      assert.equal(dead, sf.server)
      assert.equal(1, sf.up)
      assert.equal(rv.address, reg.server)
      -- connecting: the live server's answer comes at once, dead one or not
      local secs
      out, code, _, secs = run(within(20) .. " peer --server " .. dead .. " --server " .. rv.address
        .. " --id hopper --connect nobody --json --timeout 4", dir)
      assert.equal(1, code)
      evs = events(out)
      assert.matches("unknown peer", evs[#evs].reason)
      assert.is_true(secs < 2 + 3 * startup_secs(dir) + 1, "took " .. secs .. " s")

      out, code, _, secs = run(within(20) .. " peer --server " .. dead
        .. " --id hopper --connect nobody --json --timeout 1.5", dir)
      assert.equal(1, code)
      evs = events(out)
      assert.equal("failed", evs[#evs].event)
      assert.matches("timeout", evs[#evs].reason)
      assert.is_true(secs < 1.5 + 3 * startup_secs(dir) + 1, "took " .. secs .. " s")
    end)

    it("writes human lines without --json and JSON nowhere", function()
      local rv = start_rendezvous(dir)
      local out, code = run(within(20) .. " peer --server " .. rv.address
        .. " --id human --connect nobody --timeout 5", dir)
      assert.equal(1, code)
      assert.matches("registered via " .. rv.address:gsub("%.", "%%."), out)
      assert.matches("failed: unknown peer 'nobody'", out, 1, true)
      assert.is_nil(out:find("{", 1, true))
    end)
  end)

  describe("shell", function()
    it("runs piped chunks as tasks: rendezvous, peer, register", function()
      local script = dir .. "/in.lua"
      local f = assert(io.open(script, "w"))
      f:write([[
rv = natpunch.rendezvous{ listen = "127.0.0.1:0" }
a = natpunch.peer{ server = rv:address(), id = "shelly", on_event = show }
pub = a:register()
pub == rv:lookup("shelly").public
#rv:list(), rv:list()[1].id
for i = 1, 2 do
  print("line", i)
end
error("oops")
natpunch.sleep(0.05) return "slept"
=  40 + 2
print(rawget(_G, "rv") == nil)
]])
      f:close()
      local out, code, err = run("cat " .. q(script) .. " | " .. within(20) .. " shell", dir)
      assert.equal(0, code, err)
      local lines, named = {}, {}
      for l in out:gmatch("[^\n]+") do
        -- events of objects created without on_event are printed, named after their source
        if l:match("^%[rendezvous ") then named[#named + 1] = l else lines[#lines + 1] = l end
      end
      assert.matches("^%[rendezvous 127%.0%.0%.1:%d+%] registered shelly at 127%.0%.0%.1:%d+", named[1])
      local reg = assert(json.decode(lines[1]))
      assert.equal("peer shelly", reg.source)
      assert.equal("registered", reg.event)
      assert.same({ "true", "1\tshelly", "line\t1", "line\t2", "slept", "42", "true" },
        { table.unpack(lines, 2) })
      assert.matches("stdin:1: oops", err, 1, true)
    end)

    it("reports syntax errors and goes on; ends at end of input", function()
      local out, code, err = run("printf 'x = = 1\\nreturn 7\\nfunction f(\\n' | " .. within(20) .. " shell", dir)
      assert.equal(0, code)
      assert.equal("7\n", out)
      assert.matches("unexpected symbol near '='", err, 1, true)
      assert.matches("<eof>", err, 1, true)     -- the unfinished chunk at the end
    end)

    it("exit(code) leaves at once", function()
      local out, code = run("printf 'exit(3)\\nprint(1)\\n' | " .. within(20) .. " shell", dir)
      assert.equal(3, code)
      assert.equal("", out)
    end)
  end)
end)
