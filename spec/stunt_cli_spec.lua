-- The TCP side of bin/natpunch end to end on 127.0.0.1 (issue 10): peer
-- --transport tcp|auto, --stdio, natpunch records, rendezvous --no-tcp, and
-- the echo example.  Through real NATs: spec/tcp_traversal_spec.lua.  Every
-- command is bounded with `timeout`; background processes are killed in
-- after_each, also when a test fails.
local helper = require "spec.helper"
local json = require "natpunch.json"

local CLI = helper.cli()
local q = helper.q
-- helper.cli() starts with VAR=value assignments: run it through env(1) so
-- that timeout(1) can bound it
local function within(seconds) return "timeout " .. seconds .. " env " .. CLI end
local sh, read_file = helper.sh, helper.read_file
local function tmpdir() return helper.tmpdir("tcpcli") end

local function now()
  return require("natpunch.core").hrtime() / 1e9
end

-- Run a command; returns stdout, exit code, stderr, elapsed seconds.
local function run(cmd, dir)
  local err = dir .. "/run.err"
  local start = now()
  local p = io.popen(sh(cmd .. " 2> " .. q(err)))
  local out = p:read("a")
  local _, how, code = p:close()
  if how == "signal" then code = 128 + code end
  return out, code, read_file(err), now() - start
end

-- Every stdout line of a --json run must be one JSON object.
local function events(out)
  local list = {}
  for line in out:gmatch("[^\n]+") do
    local ev, err = json.decode(line)
    assert(type(ev) == "table" and ev.event, "not a JSON event line: " .. line .. " " .. tostring(err))
    list[#list + 1] = ev
  end
  return list
end

local function find(list, name, from)
  for i = from or 1, #list do
    if list[i].event == name then return i, list[i] end
  end
  return nil
end

-- Background processes of the running test, killed by after_each.
local running = {}

-- A background process: stdout and stderr in files, pid in a file.
local function spawn(cmd, dir, name)
  local bg = { out = dir .. "/" .. name .. ".out", err = dir .. "/" .. name .. ".err",
    pidfile = dir .. "/" .. name .. ".pid" }
  assert(os.execute(sh(string.format("%s > %s 2> %s & echo $! > %s", cmd, q(bg.out), q(bg.err), q(bg.pidfile)))))
  bg.pid = read_file(bg.pidfile):match("%d+")
  running[#running + 1] = bg
  function bg.kill()
    if bg.pid then os.execute(sh("kill " .. bg.pid .. " 2>/dev/null")) end
  end
  -- wait (bounded) until stdout has a line matching pattern; returns it
  function bg.expect(pattern, seconds)
    for _ = 1, (seconds or 5) * 20 do
      for line in read_file(bg.out):gmatch("[^\n]+") do
        if line:find(pattern) then return line end
      end
      os.execute(sh("sleep 0.05"))
    end
    error(name .. ": no line matching '" .. pattern .. "' in time; stdout:\n" .. read_file(bg.out)
      .. "\nstderr:\n" .. read_file(bg.err))
  end
  return bg
end

local function start_rendezvous(dir)
  local rv = spawn(within(60) .. " rendezvous --listen 127.0.0.1:0 --json", dir, "rv")
  local line = rv.expect('"event":"listening"')
  rv.address = assert(json.decode(line)).address
  assert.matches("^127%.0%.0%.1:%d+$", rv.address)
  return rv
end

describe("natpunch over TCP (command line, loopback)", function()
  local dir
  before_each(function() dir = tmpdir() end)
  after_each(function()
    for _, bg in ipairs(running) do bg.kill() end
    running = {}
    os.execute(sh("rm -rf " .. q(dir)))
  end)

  it("peer --transport tcp: connect, send, touch; the waiting side echoes", function()
    local rv = start_rendezvous(dir)
    local bob = spawn(within(30) .. " peer --server " .. rv.address .. " --id bob --transport tcp --json", dir, "bob")
    bob.expect('"event":"registered"')
    local out, code, err = run(within(20) .. " peer --server " .. rv.address
      .. " --id alice --transport tcp --connect bob --send hi --touch there --json", dir)
    assert.equal(0, code, out .. err)
    local evs = events(out)
    local _, conn = find(evs, "connected")
    assert.equal("tcp", conn.transport)
    assert.equal("tcp", conn.method)
    assert.equal("private", conn.path)
    assert.truthy(find(evs, "touch_acked"))
    local _, m = find(evs, "message")
    assert.truthy(m.data == "hi" or m.data == "there")
    -- auto: TCP first, and it wins here
    out, code, err = run(within(20) .. " peer --server " .. rv.address
      .. " --id carol --transport auto --connect bob --touch x --json", dir)
    assert.equal(0, code, out .. err)
    _, conn = find(events(out), "connected")
    assert.equal("tcp", conn.transport)
    -- the rendezvous recorded both
    out, code, err = run(within(10) .. " records --server " .. rv.address .. " --json", dir)
    assert.equal(0, code, out .. err)
    local recs = {}
    for _, r in ipairs(events(out:gsub('{"id"', '{"event":"record","id"'))) do recs[r.id] = r end
    assert.equal(2, recs.bob.tcp_successes)
    assert.equal("ok", recs.alice.last)
    assert.equal("preserving", recs.carol.tcp_mapping)
    out, code = run(within(10) .. " records --server " .. rv.address .. " --id alice", dir)
    assert.equal(0, code)
    assert.matches("^alice: ok, 1 attempts, 1 ok, 0 failed; TCP NAT preserving", out)
    _, code, err = run(within(10) .. " records --server " .. rv.address .. " --id nobody", dir)
    assert.equal(1, code)
    assert.matches("no record for 'nobody'", err, 1, true)
  end)

  it("--stdio: 1 MiB both ways through, byte-exact, clean close at the end of stdin", function()
    local rv = start_rendezvous(dir)
    local a_in, b_in = dir .. "/a.in", dir .. "/b.in"
    assert(os.execute(sh("head -c 1048576 /dev/urandom > " .. q(a_in) .. " && head -c 300000 /dev/urandom > "
      .. q(b_in))))
    local bob = spawn(within(30) .. " peer --server " .. rv.address
      .. " --id bob --transport tcp --stdio --json < " .. q(b_in), dir, "bob")
    for _ = 1, 100 do
      if read_file(bob.err):find('"event":"registered"', 1, true) then break end
      os.execute(sh("sleep 0.05"))
    end
    local out, code, err = run(within(30) .. " peer --server " .. rv.address
      .. " --id alice --transport tcp --stdio --connect bob --json < " .. q(a_in), dir)
    assert.equal(0, code, err)
    assert.equal(read_file(b_in), out, "what bob sent, as alice printed it")
    -- bob ends by itself once both directions are closed
    for _ = 1, 100 do
      if read_file(bob.err):find('"event":"closed"', 1, true) then break end
      os.execute(sh("sleep 0.05"))
    end
    assert.equal(read_file(a_in), read_file(bob.out), "what alice sent, as bob printed it")
    local evs = events(err:gsub("[^\n]*natpunch peer:[^\n]*\n", ""))
    local _, conn = find(evs, "connected")
    assert.equal("tcp", conn.transport)
    assert.equal("closed", evs[#evs].event)
  end)

  it("usage: --stdio needs tcp; unknown transports; records needs --server", function()
    local out, code, err = run(within(10) .. " peer --server 127.0.0.1:9 --id x --stdio", dir)
    assert.equal(2, code, out)
    assert.matches("--stdio needs --transport tcp (there is no stream over UDP yet)", err, 1, true)
    local _
    _, code = run(within(10) .. " peer --server 127.0.0.1:9 --id x --transport auto --stdio", dir)
    assert.equal(2, code)
    _, code, err = run(within(10) .. " peer --server 127.0.0.1:9 --id x --transport smoke", dir)
    assert.equal(2, code)
    assert.matches("unknown transport 'smoke'", err, 1, true)
    _, code, err = run(within(10) .. " records", dir)
    assert.equal(2, code)
    assert.matches("--server ADDR:PORT is required", err, 1, true)
    out, code = run(within(10) .. " records --help", dir)
    assert.equal(0, code)
    assert.matches("Usage: natpunch records", out, 1, true)
  end)

  it("rendezvous --no-tcp has no STUNT service", function()
    local rv = spawn(within(30) .. " rendezvous --listen 127.0.0.1:0 --no-tcp --json", dir, "rv")
    local addr = json.decode(rv.expect('"event":"listening"')).address
    local _, code, err = run(within(10) .. " records --server " .. addr .. " --timeout 2", dir)
    assert.equal(1, code)
    assert.matches("cannot reach the STUNT server", err, 1, true)
    -- a peer that asks for TCP says so when it registers, and a connection
    -- over TCP fails with that reason
    local b = spawn(within(30) .. " peer --server " .. addr .. " --id b --transport tcp --json", dir, "b")
    local tf = json.decode(b.expect('"event":"transport_failed"'))
    assert.matches("cannot reach the STUNT server", tf.reason, 1, true)
    b.expect('"event":"registered"')
    local out
    out, code = run(within(10) .. " peer --server " .. addr .. " --id a --transport tcp --connect b --timeout 3 --json",
      dir)
    assert.equal(1, code)
    local evs = events(out)
    assert.equal("failed", evs[#evs].event)
    assert.matches("cannot reach the STUNT server", evs[#evs].reason, 1, true)
  end)

  it("examples/echo_server.lua and echo_client.lua on loopback", function()
    local rv = start_rendezvous(dir)
    local lua = "timeout 30 env " .. CLI:gsub(" bin/natpunch$", "")
    local es = spawn(lua .. " examples/echo_server.lua " .. rv.address .. " echo", dir, "es")
    es.expect("listening as echo")
    local input = dir .. "/lines"
    local f = assert(io.open(input, "w"))
    f:write("alpha\nbeta\n")
    f:close()
    local out, code, err = run(lua .. " examples/echo_client.lua " .. rv.address .. " c1 echo < " .. q(input), dir)
    assert.equal(0, code, err)
    assert.equal("alpha\nbeta\n", out)
    es.expect("c1 left")
    local _; _, code = run(lua .. " examples/echo_client.lua", dir)
    assert.equal(2, code)
  end)
end)
