-- natpunch.lab.matrix.kinds.upgrade: a relayed session moves to a direct
-- path (natpunch.upgrade) in lab.standard{ a = "sym", b = "sym" } with
-- coturn on s2 and a rendezvous handing out its credentials on s1.  alice
-- (upgrade.stream "connect", in a) connects to bob ("wait", in b): relayed
-- at once; while the session carries a stream of numbered touches the lab
-- turns bob's NAT into a full cone (t:set_nat_type, in the running lab)
-- and the background punch finds the direct path ("path_changed").  Setup
-- time: from the NAT opening to alice's path_changed.  Every touch must be
-- acked once.  spec/relay_lab_spec.lua runs the same peers
-- (spec/upgrade/stream.lua).
local plan = require "natpunch.lab.plan"
local util = require "natpunch.lab.matrix.util"

local upgrade = {}

upgrade.RV, upgrade.TURN_IP, upgrade.SECRET = "203.0.113.2:3478", "198.51.100.2", "lab-upgrade-secret"
-- the stream: N touches GAP_MS apart; the lab opens after AFTER are resolved;
-- CONNECT_TIMEOUT 2 s: the connect's own direct methods give up early and the
-- background punch finds the way
upgrade.N, upgrade.GAP_MS, upgrade.AFTER, upgrade.CONNECT_TIMEOUT = 600, 15, 100, 2

function upgrade.describe(opts)
  return plan.standard{ a = "sym", b = "sym", prefix = opts.prefix }
end

function upgrade.up(u)
  util.start_relay_servers(u, upgrade.RV, upgrade.TURN_IP, upgrade.SECRET, "coturn-upgrade")
end

upgrade.down = util.stop_procs

--- The peers of the upgrade (a library script in a lab host); one JSON
-- object per line on stdout, each with hr = core.hrtime() in ms (the
-- monotonic clock is shared by every process of the machine).
--
--   stream("wait", ID, SERVER, SECONDS, CONNECT_TIMEOUT)
--       register, take touches for SECONDS, then print "received" (how
--       often each numbered touch arrived) and the socket's counters
--   stream("connect", ID, SERVER, TARGET, N, GAP_MS, CONNECT_TIMEOUT)
--       connect to TARGET, then touch "n=1" .. "n=N", GAP_MS apart,
--       without waiting for the acks; print "progress" every 50 acks and
--       "sent" (acks, failures, counters) once every touch is resolved
--
-- Both refresh their registration every second: the lab's cone NATs learn
-- a mapping from its next outbound packet (lab/nft.lua, @mapping), so
-- after the lab turns a symmetric NAT into a cone the mapping the
-- rendezvous saw is usable a second later at most.
function upgrade.stream(...)
  local arg = { [0] = "stream", ... }
  local natpunch = require "natpunch"
  local core = require "natpunch.core"
  local json = require "natpunch.json"
  local role, id, server = arg[1], arg[2], arg[3]

  local function out(ev)
    ev.hr = core.hrtime() // 1000000
    io.stdout:write(json.encode(ev), "\n")
    io.stdout:flush()
  end

  local function counters(p)
    local s = p:stats()
    return { relay_out = s.relay_out, relay_in = s.relay_in, path_out = s.path_out, path_in = s.path_in,
      touch_delivered = s.touch_delivered, touch_duplicates = s.touch_duplicates,
      touch_retransmits = s.touch_retransmits, touch_unsolicited = s.touch_unsolicited,
      touch_acked = s.touch_acked, touch_failed = s.touch_failed, bad_data = s.bad_data }
  end

  local p
  -- every event but the stream's own (one per touch); traces too (verbose)
  local function on_event(ev)
    if ev.event == "message" or ev.event == "touch_acked" then return end
    if ev.event == "path_changed" then ev.counters = counters(p) end
    out(ev)
  end

  natpunch.run(function()
    if role == "wait" then
      local seconds, ct = tonumber(arg[4]), tonumber(arg[5])
      local got = {}
      p = assert(natpunch.peer{ server = server, id = id, on_event = on_event, refresh = 1, verbose = true,
        connect_timeout = ct,
        on_message = function(_, data, kind)
          local n = kind == "touch" and tonumber(data:match("^n=(%d+)$"))
          if n then got[n] = (got[n] or 0) + 1 end
        end })
      assert(p:register())
      natpunch.sleep(seconds)
      local max = 0
      for n in pairs(got) do if n > max then max = n end end
      local counts = {}
      for n = 1, max do counts[n] = got[n] or 0 end
      out({ event = "received", counts = counts, counters = counters(p) })
      p:close()
      return
    end
    local target, n, gap, ct = arg[4], tonumber(arg[5]), tonumber(arg[6]), tonumber(arg[7])
    p = assert(natpunch.peer{ server = server, id = id, on_event = on_event, refresh = 1, verbose = true,
      connect_timeout = ct })
    assert(p:register())
    local s, err = p:connect(target)
    if not s then
      out({ event = "failed", reason = err })
      os.exit(1)
    end
    local acked, failed, resolved = {}, {}, 0
    local all = natpunch.future()
    for i = 1, n do
      while true do
        local tid, terr, code = s:touch("n=" .. i, function(e)
          if e then failed[#failed + 1] = i .. ": " .. e else acked[i] = (acked[i] or 0) + 1 end
          resolved = resolved + 1
          if resolved % 50 == 0 then out({ event = "progress", resolved = resolved }) end
          if resolved == n then all:set(true) end
        end)
        if tid then break end
        if code ~= "EFULL" then
          out({ event = "failed", reason = "touch " .. i .. ": " .. tostring(terr) })
          os.exit(1)
        end
        natpunch.sleep(0.01)   -- 64 in flight: wait for acks
      end
      natpunch.sleep(gap / 1000)
    end
    all:wait(60)
    local counts = {}
    for i = 1, n do counts[i] = acked[i] or 0 end
    out({ event = "sent", acks = counts, failed = failed, path = s.path, counters = counters(p) })
    natpunch.sleep(0.2)
    p:close()
  end)
end

-- argv running upgrade.stream(args...) in a lab host, with this process's
-- module paths
function upgrade.stream_argv(args)
  return util.lua_argv("natpunch.lab.matrix.kinds.upgrade", "stream", args)
end

function upgrade.run(u)
  local t, seq = u.t, u.seq
  local res = { problems = {} }
  local function want(cond, text) if not cond then res.problems[#res.problems + 1] = text end end
  local bob_id, alice_id = "bob" .. seq, "alice" .. seq
  local bob = t:spawn("b", upgrade.stream_argv({ "wait", bob_id, upgrade.RV, 40, upgrade.CONNECT_TIMEOUT }))
  local alice
  local ok, err = pcall(function()
    if not bob:expect('"event":"relay_allocated"', 15) then
      res.reason = "bob got no relay"
      return
    end
    alice = t:spawn("a", upgrade.stream_argv({ "connect", alice_id, upgrade.RV, bob_id, upgrade.N,
      upgrade.GAP_MS, upgrade.CONNECT_TIMEOUT }))
    if not alice:expect('"event":"connected"', 20) then
      res.reason = "alice did not connect"
      return
    end
    if not alice:expect('"resolved":' .. upgrade.AFTER .. '[,}]', 30) then
      res.reason = "the stream did not start"
      return
    end
    local opened = require("natpunch.core").hrtime() // 1000000
    t:set_nat_type("nb", "full")
    local sent = alice:expect('"event":"sent"', 60)
    local ev = util.first_events(alice:output())
    local bev = util.first_events(bob:output())
    local c, pc = ev.connected or {}, ev.path_changed
    want(c.path == "relay" and c.method == "relay",
      ("first connected via %s, path %s; expected relay"):format(tostring(c.method), tostring(c.path)))
    if not pc then
      res.reason = "no path_changed" .. (sent and "" or " (and the stream did not end)")
      return
    end
    res.connected, res.path, res.method = true, pc.path, pc.method
    res.setup_ms = pc.hr - opened
    want(pc.from == "relay", "path_changed from " .. tostring(pc.from))
    want(pc.hr >= opened, "the path changed before the lab opened the way")
    want(tostring(pc.remote):find(t:public("nb"), 1, true), "path_changed remote " .. tostring(pc.remote))
    want(bev.path_changed ~= nil, "bob did not upgrade")
    want(sent and ev.sent, "the stream did not end")
    if ev.sent then
      want(#ev.sent.failed == 0, "touches failed: " .. table.concat(ev.sent.failed, "; "))
      local once = #ev.sent.acks == upgrade.N
      for i = 1, #ev.sent.acks do once = once and ev.sent.acks[i] == 1 end
      want(once, "not every touch was acked exactly once")
      want(ev.sent.path == "public", "the stream ended on path " .. tostring(ev.sent.path))
    end
  end)
  res.logs = (res.reason or #res.problems > 0) and { connector = alice and alice:output() or "",
    acceptor = bob:output() } or nil
  if alice then alice:stop() end
  bob:stop()
  -- symmetric again for the next run (new peers, new mappings)
  t:set_nat_type("nb", "sym")
  if not ok then error(err, 0) end
  return res
end

return upgrade
