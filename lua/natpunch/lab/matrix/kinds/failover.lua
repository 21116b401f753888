-- natpunch.lab.matrix.kinds.failover: failover between two rendezvous
-- servers (issue 12) in lab.standard{ a = "prc", b = "prc" }: s1
-- 203.0.113.2 and s2 198.51.100.2 each run a rendezvous; bob (the CLI, in
-- b) registers with both; alice (failover.client, a library script in a)
-- registers with both, connects to bob through s1, kills s1's process with
-- SIGKILL and connects again: through s2.  Setup time: from the kill to the
-- new connection.  The session made before the kill must still carry a
-- touch and data.  spec/failover_lab_spec.lua runs the same client
-- (spec/failover/alice.lua).
local plan = require "natpunch.lab.plan"
local util = require "natpunch.lab.matrix.util"

local failover = {}

failover.RV1, failover.RV2 = "203.0.113.2:3478", "198.51.100.2:3478"

function failover.describe(opts)
  return plan.standard{ a = "prc", b = "prc", prefix = opts.prefix }
end

function failover.up(u) u.procs = {} end
function failover.down(u)
  for _, h in ipairs(u.procs or {}) do h:stop() end
  u.procs = {}
end

-- The connecting side, in a lab host: prints its peer's events and last
-- a "result" object (JSON lines): registered (servers), first_server,
-- new_server, failover_ms, touch_before/touch_after (RTTs), echo_after,
-- primary, reason (what went wrong).  pid: the first server's process.
function failover.client(s1, s2, id, target, pid)
  local natpunch = require "natpunch"
  local json = require "natpunch.json"
  pid = tonumber(pid)
  assert(s1 and s2 and id and target and pid, "usage: failover.client(SERVER1, SERVER2, ID, TARGET, SERVER1_PID)")
  local function say(t)
    io.stdout:write(json.encode(t), "\n")
    io.stdout:flush()
  end
  local result = { event = "result" }
  natpunch.run(function()
    local registered = 0
    local p = assert(natpunch.peer{ servers = { s1, s2 }, id = id,
      on_event = function(ev)
        if ev.event == "registered" then registered = registered + 1 end
        say(ev)
      end })
    assert(p:register())
    for _ = 1, 500 do
      if registered == 2 then break end
      natpunch.sleep(0.01)
    end
    result.registered = registered
    local s, err = p:connect(target)
    if not s then result.reason = "first connect: " .. tostring(err) return end
    result.first_server = s.server
    result.touch_before = s:touch("before")
    -- the first server dies
    local t0 = natpunch.now()
    os.execute("kill -KILL " .. math.tointeger(pid))
    local s_new, err2 = p:connect(target)
    result.failover_ms = natpunch.now() - t0
    if not s_new then result.reason = "connect after the kill: " .. tostring(err2) return end
    result.new_server, result.path, result.method = s_new.server, s_new.path, s_new.method
    -- the session made before the kill: touches and data still flow
    result.touch_after = s:touch("after")
    s:send("data after")
    for _ = 1, 8 do      -- the echoes of the touches may come first
      local data = s:receive(1)
      if data == "data after" then result.echo_after = data break end
      if not data then s:send("data after") end
    end
    result.primary = p.server
    p:close()
  end, { timeout = 40 })
  say(result)
end

-- argv running failover.client(args...) in a lab host, with this
-- process's module paths
function failover.client_argv(args)
  return util.lua_argv("natpunch.lab.matrix.kinds.failover", "client", args)
end

function failover.run(u)
  local t, seq = u.t, u.seq
  local function spawn(host, args)
    local h = t:spawn(host, util.natpunch(u.cmd, args))
    u.procs[#u.procs + 1] = h
    return h
  end
  local res = { problems = {} }
  local function want(cond, text) if not cond then res.problems[#res.problems + 1] = text end end
  -- short ttl: bob refreshes every second, so he notices the kill soon
  local rv1 = spawn("s1", { "rendezvous", "--listen", failover.RV1, "--ttl", "3", "--json" })
  local rv2 = spawn("s2", { "rendezvous", "--listen", failover.RV2, "--ttl", "3", "--json" })
  local bob_id, alice_id = "bob" .. seq, "alice" .. seq
  local bob
  local ok, err = pcall(function()
    if not (rv1:expect('"event":"listening"', 10) and rv2:expect('"event":"listening"', 10)) then
      error("matrix: failover: a rendezvous did not start: " .. rv1:output() .. rv2:output(), 0)
    end
    bob = spawn("b", { "peer", "--server", failover.RV1, "--server", failover.RV2, "--id", bob_id,
      "--json", "--timeout", "60" })
    local two = util.poll(function()
      return select(2, bob:output():gsub('"event":"registered"', "")) >= 2
    end, 10)
    if not two then
      res.reason = "bob did not register with both servers"
      return
    end
    local out, rc = t:exec("a", failover.client_argv({ failover.RV1, failover.RV2, alice_id, bob_id,
      tostring(math.tointeger(rv1.pid)) }))
    local lines = util.decode_lines(out)
    local r = lines[#lines] or {}
    res.logs = { connector = out, acceptor = bob:output() }
    if rc ~= 0 or r.event ~= "result" or r.reason then
      res.reason = r.reason or ("exit " .. tostring(rc))
      return
    end
    res.connected = r.new_server ~= nil
    res.setup_ms, res.path, res.method = r.failover_ms, r.path, r.method
    want(r.registered == 2, "alice registered with " .. tostring(r.registered) .. " servers")
    want(r.first_server == failover.RV1, "first connection through " .. tostring(r.first_server))
    want(r.new_server == failover.RV2, "new connection through " .. tostring(r.new_server))
    want(type(r.touch_after) == "number", "the session made before the kill lost its touch")
    want(r.echo_after == "data after", "the session made before the kill lost its data")
    want(r.primary == failover.RV2, "primary server after the kill: " .. tostring(r.primary))
    want(not rv1:alive(), "s1's rendezvous still alive after the kill")
  end)
  if bob then bob:stop() end
  rv2:stop()
  rv1:stop()
  u.procs = {}
  if not ok then error(err, 0) end
  if #res.problems == 0 and res.connected then res.logs = nil end
  return res
end

return failover
