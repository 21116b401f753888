-- natpunch.lab.matrix.kinds.relay6: the hard matrix's TURN relay over IPv6
-- (natpunch.lab.plan.relay6, docs/LAB.md "TURN over IPv6"), through the
-- command line: two IPv6-only peers, x -> y, each behind a symmetric NAT66
-- (no direct path), connect through coturn listening and relaying on
-- 2001:db8::12; the rendezvous on s1 is reached over IPv6 and hands out
-- coturn's IPv6 address.  Both sides must have allocated an IPv6 relayed
-- address, and the session must run with path "relay" toward the other's
-- relayed address.  Setup time: the connecting peer's setup_ms.
-- spec/relay6_lab_spec.lua connects the same way (relay6.connect).
local plan = require "natpunch.lab.plan"
local coturn = require "natpunch.lab.coturn"
local util = require "natpunch.lab.matrix.util"
local iface = require "natpunch.lab.matrix.kinds.iface"

local relay6 = {}

relay6.RV6, relay6.RV4 = "[2001:db8::11]:3478", "203.0.113.2:3478"
relay6.TURN4, relay6.TURN6 = "198.51.100.2", "2001:db8::12"
relay6.SECRET = "lab-relay6-secret"

function relay6.describe(opts) return plan.relay6(opts) end

-- coturn on both of s2's addresses, and the rendezvous on s1's IPv6
-- address handing out credentials for coturn's IPv6 one.
function relay6.up(u)
  u.procs = {}
  local h, err, turnd = coturn.start(u.t, { host = "s2", probe = "s1", ip = relay6.TURN4, ip6 = relay6.TURN6,
    secret = relay6.SECRET, name = "coturn-relay6", wait = 10 })
  if not h then
    turnd:stop()
    error("matrix: " .. err, 0)
  end
  u.procs[1] = h
  u.procs[2] = util.start_rendezvous(u.t, u.cmd, "s1", relay6.RV6,
    { "--turn", "[" .. relay6.TURN6 .. "]:3478", "--turn-secret", relay6.SECRET })
end

relay6.down = util.stop_procs

-- A waiting peer in host `who` (a fresh id each time; it must allocate a
-- relayed address first), then a connecting one in host `from` with a
-- touch (-v, extra arguments `extra`, --timeout `timeout`, default 20 s);
-- returns the connector's first events by name, the waiter's, both
-- outputs and the connector's exit code.  u: { t = lab topology, cmd =
-- natpunch command, seq = counter }.
function relay6.connect(u, who, from, server, extra, timeout)
  local ev, out, code = iface.connect(u, who, from, server, nil, extra, timeout or 20, true)
  return ev, iface.waiter_events(out), out, code
end

-- What a relayed IPv6 connection must show, as sentences (empty: all of it):
-- ev and wev the connector's and the waiter's events.
function relay6.problems(ev, wev)
  local p = {}
  local function want(cond, text) if not cond then p[#p + 1] = text end end
  for _, side in ipairs({ { "connector", ev }, { "waiting peer", wev } }) do
    local r = side[2].relay_allocated or {}
    want(r.family == "inet6", ("%s: relayed family %s, expected inet6"):format(side[1], tostring(r.family)))
    want(tostring(r.relayed):match("^%[2001:db8::12%]:%d+$") ~= nil,
      ("%s: relayed %s is not on coturn's IPv6 address"):format(side[1], tostring(r.relayed)))
  end
  local c = ev.connected or {}
  want(c.family == "inet6", ("family %s, expected inet6"):format(tostring(c.family)))
  want(wev.relay_allocated == nil or c.remote == wev.relay_allocated.relayed,
    ("remote %s is not the waiting peer's relayed address"):format(tostring(c.remote)))
  want(ev.touch_acked ~= nil, "the touch was not acknowledged")
  want(ev.message ~= nil, "no answer to the touch")
  want(wev.connected ~= nil and wev.connected.path == "relay", "the waiting peer did not connect through the relay")
  return p
end

function relay6.run(u)
  local ev, wev, out, code = relay6.connect(u, "y", "x", relay6.RV6)
  local c = ev.connected or {}
  local reason = ev.failed and ev.failed.reason or (code ~= 0 and ("exit " .. tostring(code)) or nil)
  if code == -1 then
    -- the waiting peer had no relayed address: its last line says why
    reason = "the waiting peer allocated no relayed address: " .. (out:match("([^\n]+)\n*$") or ""):sub(1, 300)
  end
  local res = { connected = code == 0 and ev.connected ~= nil, path = c.path, method = c.method,
    setup_ms = c.setup_ms, remote = c.remote, family = c.family, reason = reason }
  res.problems = res.connected and relay6.problems(ev, wev) or {}
  if #res.problems > 0 or not res.connected then res.logs = { connector = out } end
  return res
end

return relay6
