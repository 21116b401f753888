-- The TCP side of bin/natpunch end to end on 127.0.0.1 (issue 10): peer
-- --transport tcp|auto, --stdio, natpunch records, rendezvous --no-tcp, and
-- the echo example.  Through real NATs: spec/tcp_traversal_spec.lua.  Every
-- command is bounded with `timeout`; background processes are killed in
-- after_each, also when a test fails.
local helper = require "spec.helper"
local json = require "natpunch.json"

local CLI = helper.cli()
local q, sh, read_file = helper.q, helper.sh, helper.read_file
local within, run, events, find = helper.within, helper.exec, helper.events, helper.find_event
local function tmpdir() return helper.tmpdir("tcpcli") end

-- Background processes of the running test, killed by after_each.
local procs = helper.procs()
local spawn = procs.spawn
local function start_rendezvous(dir) return helper.start_rendezvous(procs, dir) end

describe("natpunch over TCP (command line, loopback)", function()
  local dir
  before_each(function() dir = tmpdir() end)
  after_each(function()
    procs.kill_all()
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
