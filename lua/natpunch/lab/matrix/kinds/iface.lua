-- natpunch.lab.matrix.kinds.iface: the hard matrix's cases in the lab of
-- several interfaces and IPv6 (natpunch.lab.plan.iface, docs/LAB.md
-- "Dual-homed hosts and IPv6"), through the command line:
--   v6only     an IPv6-only pair behind stateful firewalls (x -> y) through
--              the rendezvous's IPv6 address: udp, inet6;
--   dualhome   a dual-homed host (h: eth0 behind a symmetric NAT, eth1 on
--              the LAN of b's port-restricted NAT) -> b: over eth1's LAN;
--   dualnat    a dual-homed host (g: eth0 behind the symmetric NAT, which
--              passes only its rendezvous traffic (iface.cut), eth1 behind
--              a port-restricted NAT of its own) -> b, --each-interface:
--              through eth1's NAT, b sees its public address;
--   dualstack  dual-stack peers (--dual-stack, d1 -> d2) behind symmetric
--              NATs for IPv4, firewalls for IPv6, with a TURN relay to fall
--              back to: direct over IPv6, not relayed.
-- Setup time: the connecting peer's setup_ms.  spec/iface_lab_spec.lua
-- connects the same way (iface.connect).
local plan = require "natpunch.lab.plan"
local util = require "natpunch.lab.matrix.util"

local iface = {}

iface.RV4, iface.RV6 = "203.0.113.2:3478", "[2001:db8::11]:3478"
iface.RV_TURN = "203.0.113.2:3479"        -- the same host, handing out TURN credentials
iface.TURN_IP, iface.SECRET = "198.51.100.2", "lab-iface-secret"

function iface.describe(opts) return plan.iface(opts) end

-- g's first NAT (na) cut: what g sends from its eth0 address anywhere but
-- the rendezvous host (full: anywhere at all), and what comes back to it
-- from there, is dropped (and counted: `nft list table ip npcut` in na).
-- Replaces the previous cut.
function iface.cut(t, full)
  local g, rv = t:addr("g"), iface.RV4:match("^(.-):")
  local except = full and "" or (" ip daddr != " .. rv)
  local except_in = full and "" or (" ip saddr != " .. rv)
  local rules = ("table ip npcut {}\ndelete table ip npcut\ntable ip npcut {\n chain forward {\n"
    .. "  type filter hook forward priority -10; policy accept;\n"
    .. "  ip saddr %s%s counter drop\n  ip daddr %s%s counter drop\n }\n}\n"):format(g, except, g, except_in)
  local out, code = t:exec("na", { "sh", "-c", "printf '%s' \"$1\" | nft -f -", "sh", rules })
  if code ~= 0 then error("iface: cannot cut na: " .. out, 0) end
end

-- Packets the cut dropped so far.
function iface.cut_drops(t)
  local out = t:exec("na", { "nft", "list", "table", "ip", "npcut" })
  local n = 0
  for p in out:gmatch("packets (%d+) bytes %d+ drop") do n = n + tonumber(p) end
  return n
end

local function rendezvous(u, listen, extra)
  local h = util.start_rendezvous(u.t, u.cmd, "s1", listen, extra)
  u.procs[#u.procs + 1] = h
  return h
end

-- The rendezvous servers (IPv4, IPv6, IPv4 with TURN credentials) and
-- coturn on s2.
function iface.up(u)
  u.procs = {}
  rendezvous(u, iface.RV4)
  rendezvous(u, iface.RV6)
  if os.execute("command -v turnserver >/dev/null 2>&1") then
    u.procs[#u.procs + 1] = util.start_coturn(u.t, "s2", "s1", iface.TURN_IP, iface.SECRET, "coturn-iface")
    rendezvous(u, iface.RV_TURN, { "--turn", iface.TURN_IP .. ":3478", "--turn-secret", iface.SECRET })
  end
end

iface.down = util.stop_procs

-- A waiting peer in host `who` (a fresh id each time), then a connecting
-- one in host `from` (natpunch peer --connect, -v: its "trying" event);
-- returns the connector's first events by name, both outputs, its exit code.
-- u: { t = lab topology, cmd = natpunch command, seq = counter }.  The
-- waiting peer must also have reported `relay_allocated` when `relayed`
-- (default: when server is iface.RV_TURN, which hands out TURN).
function iface.connect(u, who, from, server, extra_wait, extra_connect, timeout, relayed)
  u.seq = (u.seq or 0) + 1
  local id = ("%s%d"):format(who, u.seq)
  local args = { "peer", "--server", server, "--id", id, "--json", "--timeout", "60" }
  for _, w in ipairs(extra_wait or {}) do args[#args + 1] = w end
  local waiter = u.t:spawn(who, util.natpunch(u.cmd, args))
  local ok = waiter:expect('"event":"registered"', 15)
  if relayed == nil then relayed = server == iface.RV_TURN end
  if ok and relayed then ok = waiter:expect('"event":"relay_allocated"', 15) end
  if not ok then
    waiter:stop()
    return {}, "waiting peer not ready\n" .. waiter:output(), -1
  end
  local cargs = { "peer", "--server", server, "--id", from .. u.seq, "--connect", id,
    "--touch", "over " .. from, "--timeout", tostring(timeout or 10), "--json", "-v" }
  for _, w in ipairs(extra_connect or {}) do cargs[#cargs + 1] = w end
  local out, code = u.t:exec(from, util.natpunch(u.cmd, cargs))
  waiter:stop()
  return util.first_events(out), out .. "\n--- waiting peer\n" .. waiter:output(), code
end

-- "exit N: LINE" for a connector that exited without a `failed` event:
-- the first line it wrote to stderr that says "error" (a traceback's last
-- line says nothing), else its last line that is not an event
local function exit_reason(code, out)
  local last, err
  local conn = out:match("^(.-)\n%-%-%- waiting peer") or out
  for line in conn:gmatch("[^\n]+") do
    if not line:match("^{") then
      last = line
      if not err and line:lower():find("error", 1, true) then err = line end
    end
  end
  local line = err or last
  return ("exit %s%s"):format(tostring(code), line and (": " .. line:sub(1, 200)) or "")
end

-- A result from the connector's events: connected, path, method, setup_ms,
-- family, remote, and problems from the checks (cond, text) in `wants`.
local function result(ev, out, code, wants)
  local c = ev.connected or {}
  local res = { connected = code == 0 and ev.connected ~= nil, path = c.path, method = c.method,
    setup_ms = c.setup_ms, remote = c.remote, family = c.family, problems = {},
    reason = ev.failed and ev.failed.reason or (code ~= 0 and exit_reason(code, out) or nil) }
  if res.connected then
    if not ev.touch_acked then wants[#wants + 1] = { false, "the touch was not acknowledged" } end
    for _, w in ipairs(wants) do
      if not w[1] then res.problems[#res.problems + 1] = w[2] end
    end
  end
  if #res.problems > 0 or not res.connected then res.logs = { connector = out } end
  return res
end

function iface.v6only(u)
  local ev, out, code = iface.connect(u, "y", "x", iface.RV6)
  local c = ev.connected or {}
  return result(ev, out, code, {
    { c.family == "inet6", ("family %s, expected inet6"):format(tostring(c.family)) },
    { tostring(c.remote):match("^%[2001:db8:4::") ~= nil, ("remote %s is not y's"):format(tostring(c.remote)) },
  })
end

function iface.dualhome(u)
  local eth0, eth1 = u.t:addr("h"), u.t:node("h").also[1].addr
  local ev, out, code = iface.connect(u, "b", "h", iface.RV4)
  local c, private = ev.connected or {}, ev.trying and ev.trying.private or ""
  return result(ev, out, code, {
    { private:find(eth0 .. ":", 1, true) and private:find(eth1 .. ":", 1, true),
      ("candidates %s lack eth0 %s or eth1 %s"):format(private, eth0, eth1) },
    { tostring(c.remote):find(u.t:addr("b") .. ":", 1, true),
      ("remote %s is not b's LAN address"):format(tostring(c.remote)) },
  })
end

-- The waiting peer's first events (the part of iface.connect's output after
-- "--- waiting peer").
function iface.waiter_events(out)
  return util.first_events(out:match("\n%-%-%- waiting peer\n(.*)$") or "")
end

function iface.dualnat(u)
  iface.cut(u.t)
  local ev, out, code = iface.connect(u, "b", "g", iface.RV4, nil, { "--each-interface" })
  local c, w = ev.connected or {}, iface.waiter_events(out).connected or {}
  local nat2 = u.t:public("nd")
  return result(ev, out, code, {
    { tostring(c.remote):find(u.t:public("nb") .. ":", 1, true), ("remote %s is not b's public address")
      :format(tostring(c.remote)) },
    { tostring(w.remote):find(nat2 .. ":", 1, true), ("b saw %s, not g's second NAT %s")
      :format(tostring(w.remote), nat2) },
  })
end

function iface.dualstack(u)
  if not os.execute("command -v turnserver >/dev/null 2>&1") then
    return { problems = { "needs coturn (make deps)" } }
  end
  local ev, out, code = iface.connect(u, "d2", "d1", iface.RV_TURN, { "--dual-stack" }, { "--dual-stack" }, 25)
  local c = ev.connected or {}
  return result(ev, out, code, {
    { ev.relay_allocated ~= nil, "no relay was allocated to fall back to" },
    { c.family == "inet6", ("family %s, expected inet6"):format(tostring(c.family)) },
    { tostring(c.remote):match("^%[2001:db8:4::") ~= nil, ("remote %s is not d2's"):format(tostring(c.remote)) },
  })
end

function iface.run(u, c) return iface[c.variant](u, c) end

return iface
