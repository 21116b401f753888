-- What a user of the command meets first: usage errors, host names, the
-- JSON contract (time, outcome last), safe printing of peer data, --send
-- repeated over a lossy path, -v/-q everywhere, failover messages.
-- Processes are bounded with timeout(1) and killed in after_each.
local helper = require "spec.helper"
local json = require "natpunch.json"

local CLI = helper.cli()
local q, sh, read_file = helper.q, helper.sh, helper.read_file
local within, run, events, find = helper.within, helper.exec, helper.events, helper.find_event

local procs = helper.procs()
local spawn = procs.spawn
local function start_rendezvous(dir) return helper.start_rendezvous(procs, dir) end

describe("natpunch CLI for users", function()
  local dir
  before_each(function() dir = helper.tmpdir("cliux") end)
  after_each(function()
    procs.kill_all()
    os.execute(sh("rm -rf " .. q(dir)))
  end)

  it("turns every bad value into a one-line usage error (exit 2, no traceback)", function()
    local long = string.rep("x", 1201)
    local cases = {
      { "peer --server 1.2.3.4.5:80 --id a", "4 parts" },
      { "peer --server 999.1.1.1:80 --id a", "bad octet '999'" },
      { "peer --server 1.2.3:80 --id a", "4 parts" },
      { "peer --server 1.2.3.4:99999 --id a", "port out of range" },
      { "peer --server 1.2.3.4:0 --id a", "port 0" },
      { "peer --server 1.2.3.4:http --id a", "invalid port 'http'" },
      { "peer --server [::1::2]:80 --id a", "invalid IPv6 address" },
      { "peer --server ::1:80 --id a", "[ip]:port" },
      { "peer --server bad_host!:80 --id a", "invalid host name" },
      { "peer --server 127.0.0.1:9 --id 'has space'", "an id is 1 to 64 letters, digits or - _ . @ :" },
      { "peer --server 127.0.0.1:9 --id " .. string.rep("a", 65), "an id is 1 to 64" },
      { "peer --server 127.0.0.1:9 --id a --connect 'b/c'", "invalid id 'b/c'" },
      { "peer --server 127.0.0.1:9 --id a --connect a", "own id" },
      { "peer --server 127.0.0.1:9 --id a --send " .. long, "--send is at most 1200 bytes" },
      { "peer --server 127.0.0.1:9 --id a --touch " .. long, "--touch is at most 1200 bytes" },
      { "peer --server 127.0.0.1:9 --id a --timeout -1", "--timeout expects a positive number" },
      { "peer --server 127.0.0.1:9 --id a --timeout 0", "--timeout expects a positive number" },
      { "peer --server 127.0.0.1:9 --id a --timeout nan", "--timeout expects a positive number" },
      { "peer --server 127.0.0.1:9 --id a --timeout 1e9", "--timeout is at most 86400" },
      { "peer --server 127.0.0.1:9 --id a --bind 300.0.0.1:0", "bad octet '300'" },
      { "peer --server 127.0.0.1:9 --id a -v -q", "exclude each other" },
      { "rendezvous --max-peers 0", "--max-peers expects a positive integer" },
      { "rendezvous --max-peers 1.5", "--max-peers expects a positive integer" },
      { "rendezvous --ttl -3", "--ttl expects a positive number" },
      { "rendezvous --listen 1.2.3.4.5:0", "4 parts" },
      { "rendezvous --listen 127.0.0.1:65536", "port out of range" },
    }
    for _, c in ipairs(cases) do
      local out, code, err = run(CLI .. " " .. c[1], dir)
      assert.equal(2, code, c[1] .. "\n" .. err)
      assert.equal("", out, c[1])
      assert.matches(c[2], err, 1, true)
      local _, lines = err:gsub("\n", "")
      assert.equal(1, lines, "one line for " .. c[1] .. ":\n" .. err)
      assert.is_nil(err:find("traceback", 1, true), c[1])
      assert.is_nil(err:find(".lua:", 1, true), c[1])
    end
    -- the limits are stated in --help
    local help = run(CLI .. " peer --help", dir)
    assert.matches("at most 1200 bytes", help, 1, true)
    assert.matches("1 to 64 letters", help, 1, true)
  end)

  it("accepts host names where addresses go, resolved on the loop", function()
    local rv = start_rendezvous(dir)
    local b = spawn(within(30) .. " peer --server localhost:" .. rv.port .. " --id hb --json --timeout 20", dir, "b")
    b.expect('"event":"registered"')
    local out, code, err = run(within(20) .. " peer --server localhost:" .. rv.port
      .. " --bind localhost:0 --id ha --connect hb --touch hi --json --timeout 10", dir)
    assert.equal(0, code, out .. err)
    local evs = events(out)
    local _, reg = find(evs, "registered")
    assert.equal(rv.address, reg.server)            -- numeric after resolution
    assert.matches("^127%.0%.0%.1:%d+$", reg["local"])
    -- a name that does not resolve: a run-time failure (exit 1), one line
    local out2, code2, err2 = run(within(20) .. " peer --server no-such-host.invalid:3478 --id x --connect y --json",
      dir)
    assert.equal(1, code2)
    local last = events(out2)[#events(out2)]
    assert.equal("failed", last.event)
    assert.equal("y", last.peer)
    assert.matches("cannot resolve host 'no%-such%-host%.invalid'", last.reason)
    assert.matches("cannot resolve host", err2, 1, true)
  end)

  it("gives every JSON event a time, names the peer in failed, and ends with the outcome", function()
    local rv = start_rendezvous(dir)
    local out, code = run(within(20) .. " peer --server " .. rv.address
      .. " --id lonely --connect nobody --json --timeout 5", dir)
    assert.equal(1, code)
    local evs = events(out)
    local prev = -1
    for _, ev in ipairs(evs) do
      assert.equal("number", type(ev.time), json.encode(ev))
      assert.equal(math.tointeger(ev.time), ev.time)
      assert.is_true(ev.time >= prev)
      prev = ev.time
    end
    local last = evs[#evs]
    assert.equal("failed", last.event)
    assert.equal("nobody", last.peer)
    assert.equal(1, select(2, out:gsub('"event":"failed"', "")))
    -- the rendezvous' events are timed too
    local rvev = events(read_file(rv.out))
    for _, ev in ipairs(rvev) do assert.equal("number", type(ev.time)) end
    -- success ends with "done"
    local b = spawn(within(30) .. " peer --server " .. rv.address .. " --id echo --json --timeout 20", dir, "b")
    b.expect('"event":"registered"')
    out, code = run(within(20) .. " peer --server " .. rv.address
      .. " --id asker --connect echo --touch t --json --timeout 10", dir)
    assert.equal(0, code, out)
    evs = events(out)
    assert.equal("done", evs[#evs].event)
    assert.equal("echo", evs[#evs].peer)
    assert.equal(1, evs[#evs].received)
  end)

  it("prints what peers send safely without --json", function()
    local rv = start_rendezvous(dir)
    local b = spawn(within(30) .. " peer --server " .. rv.address .. " --id sb --timeout 20", dir, "b")
    b.expect("waiting for peers")
    local evil = "A\27]0;pwned\7\27[2J\r\nfailed: forged line\8\226\128\174X\255"
    local out, code, err = run(within(20) .. " peer --server " .. rv.address
      .. " --id sa --connect sb --touch " .. q(evil) .. " --timeout 10", dir)
    assert.equal(0, code, out .. err)
    local echoed = out:match("message from sb %(touch%): ([^\n]*)")
    assert.is_truthy(echoed, out)
    assert.equal("A\\e]0;pwned\\a\\e[2J\\r\\nfailed: forged line\\b\\u{202e}X\\xff", echoed)
    for _, text in ipairs({ out, read_file(b.out) }) do
      assert.is_nil(text:find("[\0-\9\11-\31\127]"), text)          -- no control byte but newline
      assert.is_nil(text:find("\226\128\174", 1, true))               -- no RIGHT-TO-LEFT OVERRIDE
      assert.is_nil(text:find("\nfailed: forged", 1, true))
    end
    assert.matches("message from sa (touch): A\\e]0;pwned", read_file(b.out), 1, true)
  end)

  it("repeats --send until an answer comes, over a path that lost the first datagram", function()
    local rv = start_rendezvous(dir)
    -- the other side ignores the first datagram it gets (as if lost) and
    -- echoes the next ones
    local script = dir .. "/lossy.lua"
    local f = assert(io.open(script, "w"))
    f:write(string.format([[
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = %q .. "/?.so;" .. package.cpath
local natpunch = require "natpunch"
natpunch.run(function()
  local seen = 0
  local p = assert(natpunch.peer{ server = %q, id = "lossy", on_message = function(s, data, kind)
    seen = seen + 1
    if seen > 1 then s:send(data) end
  end })
  assert(p:register())
  print("ready") io.stdout:flush()
  natpunch.sleep(15)
end)
]], helper.build, rv.address))
    f:close()
    -- under `make sanitize` the sanitizer runtime must be preloaded again
    local pre = helper.sanitize and ("LD_PRELOAD=" .. q(os.getenv("LD_PRELOAD") or "") .. " ") or ""
    local l = spawn("timeout 20 env " .. pre .. helper.lua .. " " .. q(script), dir, "lossy")
    l.expect("ready")
    local out, code, err = run(within(20) .. " peer --server " .. rv.address
      .. " --id sender --connect lossy --send ping --json --timeout 8", dir)
    assert.equal(0, code, out .. err)
    local evs = events(out)
    local _, done = find(evs, "done")
    assert.is_truthy(done, out)
    assert.is_true(done.sent >= 2, out)
    assert.is_true(done.received >= 1, out)
    -- without an answer it fails at the timeout, saying how many were sent
    os.execute(sh("kill " .. l.pid))
    local b2 = spawn(within(30) .. " peer --server " .. rv.address .. " --id mute --no-echo --json --timeout 20",
      dir, "mute")
    b2.expect('"event":"registered"')
    out, code = run(within(20) .. " peer --server " .. rv.address
      .. " --id sender2 --connect mute --send ping --json --timeout 2", dir)
    assert.equal(1, code)
    evs = events(out)
    assert.equal("failed", evs[#evs].event)
    assert.equal("mute", evs[#evs].peer)
    assert.is_true(evs[#evs].sent >= 3, out)
  end)

  it("accepts -v and -q on every subcommand; -v reports the work in progress", function()
    local cli = require "natpunch.cli"
    for _, name in ipairs(cli.commands) do
      local help = run(CLI .. " " .. name .. " --help", dir)
      assert.matches("-v, --verbose", help, 1, true)
      assert.matches("-q, --quiet", help, 1, true)
      for _, flag in ipairs({ "-v", "-q", "--verbose", "--quiet" }) do
        local _, code, err = run(CLI .. " " .. name .. " " .. flag .. " --no-such-option", dir)
        assert.equal(2, code, name .. " " .. flag)
        assert.matches("unknown option '--no-such-option'", err, 1, true)
      end
    end
    local rv = start_rendezvous(dir)
    local b = spawn(within(30) .. " peer --server " .. rv.address .. " --id vb --timeout 20 -q", dir, "vb")
    -- a dead server first: the live one registers (and introduces) at once
    local u = require("natpunch.core").udp()
    assert(u:bind("127.0.0.1", 0))
    local _, dead_port = u:getsockname()
    u:close()
    os.execute("sleep 0.3")
    local out, code, err = run(within(20) .. " peer --server 127.0.0.1:" .. dead_port .. " --server " .. rv.address
      .. " --id va --connect vb --touch x -v --timeout 10", dir)
    assert.equal(0, code, out .. err)
    assert.matches("trying server 127.0.0.1:" .. dead_port, out, 1, true)
    assert.matches("request sent again", out, 1, true)
    assert.matches("trying server " .. rv.address, out, 1, true)
    assert.matches("registered via " .. rv.address, out, 1, true)
    assert.matches("introduced by " .. rv.address, out, 1, true)
    assert.matches("punching toward vb: ", out, 1, true)
    assert.matches("vb answered at ", out, 1, true)
    -- -q: the waiting side printed only what arrived
    os.execute("sleep 0.3")
    local quiet = read_file(b.out)
    assert.matches("message from va (touch): x", quiet, 1, true)
    assert.is_nil(quiet:find("registered", 1, true), quiet)
    assert.is_nil(quiet:find("waiting for peers", 1, true), quiet)
  end)

  it("says that no other server is up when the only one fails", function()
    local u = require("natpunch.core").udp()
    assert(u:bind("127.0.0.1", 0))
    local _, dead_port = u:getsockname()
    u:close()
    local out, code = run(within(20) .. " peer --server 127.0.0.1:" .. dead_port
      .. " --id only --connect other --timeout 1.5", dir)
    assert.equal(1, code)
    assert.matches("no other server up", out, 1, true)
    assert.matches("failed: .* %(peer other%)", out)
  end)

  it("speaks to users in help and docs (no project-internal names)", function()
    local cli = require "natpunch.cli"
    local texts = { (run(CLI .. " --help", dir)) }
    for _, name in ipairs(cli.commands) do texts[#texts + 1] = (run(CLI .. " " .. name .. " --help", dir)) end
    for _, doc in ipairs({ "README.md", "docs/API.md", "docs/PROTOCOL.md", "docs/LAB.md", "docs/TRAVERSAL.md" }) do
      texts[#texts + 1] = read_file(doc)
    end
    for _, t in ipairs(texts) do
      assert.is_nil(t:lower():find("seed 00", 1, true), t:match(".-seed 00[^\n]*") or "")
      assert.is_nil(t:lower():find("natdemo", 1, true))
      assert.is_nil(t:lower():find("midpeer", 1, true))
    end
  end)
end)
