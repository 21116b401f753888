-- natpunch.lab.matrix.runner: runs the matrix's cases in one lab, through
-- the public command line (natpunch rendezvous/peer --json inside the lab's
-- namespaces), and checks each result against its case.
local lab = require "natpunch.lab"
local proc = require "natpunch.lab.proc"
local nat_types = require "natpunch.lab.nat_types"
local cases = require "natpunch.lab.matrix.cases"
local report = require "natpunch.lab.matrix.report"
local util = require "natpunch.lab.matrix.util"

local matrix = {}

local PORT = cases.PORT
-- A waiting peer runs without --timeout, so its punch gives up after
-- natpunch peer's default (lua/natpunch/cli/peer.lua DEFAULT_TIMEOUT).
local PEER_PUNCH_TIMEOUT = 10
local median = report.median

---------------------------------------------------------------------------
-- small helpers

local function repo_root()
  local here = package.searchpath("natpunch.lab.matrix.runner", package.path)
  local root = here and here:match("^(.*)lua/natpunch/lab/matrix/runner%.lua$")
  if root == "" then root = "./" end
  return root
end

-- The natpunch command: this checkout's bin/natpunch, else the installed one.
function matrix.command()
  local lua = os.getenv("LUA") or "lua5.4"
  local root = repo_root()
  if root then
    local f = io.open(root .. "bin/natpunch", "r")
    if f then
      f:close()
      return { lua, root .. "bin/natpunch" }
    end
  end
  return { "natpunch" }
end

local clock_ms, events, find, poll = util.clock_ms, util.events, util.find, util.poll
local stop_tree = util.stop_tree

local function ip_of(endpoint) return endpoint and endpoint:match("^(.*):%d+$") end

---------------------------------------------------------------------------
-- the runner

local Runner = {}
Runner.__index = Runner
Runner.__close = function(r) r:down() end

-- opts: cases (names, default all), link (impairment), timeout (s, the
-- connecting peer's --timeout; default 5, or 15 on impaired links), prefix,
-- impair ("auto", "wire", "netem"), message, touch (texts exchanged),
-- transport (natpunch peer --transport: "tcp", "auto", ...), nat (fields
-- added to every NAT: tcp_unsolicited = "rst", tcp_allow = {...}), nat_b
-- (the same for the waiting side's NATs only).
function matrix.runner(opts)
  opts = opts or {}
  local names = opts.cases or cases.names("all")
  for _, n in ipairs(names) do
    if not cases.by_name()[n] then error("matrix: unknown case " .. tostring(n), 2) end
  end
  local t = lab.topology(cases.describe(names, opts))
  return setmetatable({ t = t, names_ = names, opts = opts,
    timeout = opts.timeout or (opts.link and 15 or 5),
    servers = {}, seq = 0, cmd = matrix.command() }, Runner)
end

function Runner:names() return self.names_ end
function Runner:topology() return self.t end

-- The outermost public address in front of a host (its own when public).
function Runner:reach(host)
  local n = self.t:node(host)
  while n.behind do n = self.t:node(n.behind) end
  return n.addr
end

-- Counting rules in a server host: UDP to and from the rendezvous port,
-- control frames (first byte 0x04, docs/PROTOCOL.md) apart from the rest;
-- STUN (the peers' allocation probe: Binding requests and answers, with
-- the magic cookie 0x2112A442 at payload bytes 4-7) apart too; and any
-- other UDP at all.  @th,64,8 is the first byte after the 8-byte UDP
-- header, @th,96,32 payload bytes 4-7.
local COUNTERS = { "control_in", "other_in", "control_out", "other_out", "stun_in", "stun_out",
  "tcp_control_in", "tcp_other_in", "tcp_control_out", "tcp_other_out" }

local function counter_rules(port)
  local L = { "table ip npmatrix {" }
  for _, c in ipairs(COUNTERS) do L[#L + 1] = ("  counter %s { }"):format(c) end
  for _, dir in ipairs({ { "input", "in", "dport" }, { "output", "out", "sport" } }) do
    L[#L + 1] = ("  chain %s {"):format(dir[1])
    L[#L + 1] = ("    type filter hook %s priority filter; policy accept;"):format(dir[1])
    L[#L + 1] = ('    udp %s %d @th,64,8 0x04 counter name "control_%s" accept')
      :format(dir[3], port, dir[2])
    L[#L + 1] = ('    udp %s %d @th,96,32 0x2112a442 counter name "stun_%s" accept')
      :format(dir[3], port, dir[2])
    L[#L + 1] = ('    meta l4proto udp counter name "other_%s"'):format(dir[2])
    -- TCP: the STUNT service's port (control only: it never relays) and
    -- anything else
    L[#L + 1] = ('    tcp %s %d counter name "tcp_control_%s" accept'):format(dir[3], port, dir[2])
    L[#L + 1] = ('    meta l4proto tcp counter name "tcp_other_%s"'):format(dir[2])
    L[#L + 1] = "  }"
  end
  L[#L + 1] = "}"
  return table.concat(L, "\n") .. "\n"
end

function Runner:_counters(host)
  local json = require "natpunch.json"
  local out, code = self.t:exec(host, { "nft", "-j", "list", "counters",
    "table", "ip", "npmatrix" })
  if code ~= 0 then return nil end
  local doc = json.decode(out)
  local c = {}
  for _, item in ipairs(doc and doc.nftables or {}) do
    if type(item) == "table" and item.counter then
      c[item.counter.name] = item.counter.packets
      c[item.counter.name .. "_bytes"] = item.counter.bytes
    end
  end
  return c
end

-- coturn on s2 for the hard relay case, with the REST-API secret the
-- rendezvous on st hands credentials out for (as spec/relay_lab_spec.lua).
function Runner:_start_turn()
  if self.turnd then return end
  self.turnd = util.start_coturn(self.t, "s2", "st", cases.S2, cases.TURN_SECRET, "coturn-matrix")
end

function Runner:_start_server(host)
  if self.servers[host] then return self.servers[host] end
  local t = self.t
  local rules = counter_rules(PORT)
  local _, code = t:exec(host, { "sh", "-c", "printf '%s' \"$1\" | nft -f -",
    "sh", rules })
  if code ~= 0 then error("matrix: cannot add counters in " .. host, 0) end
  local listen = t:addr(host) .. ":" .. PORT
  local args
  if host == "st" then
    self:_start_turn()
    args = { "--turn", cases.S2 .. ":3478", "--turn-secret", cases.TURN_SECRET }
  end
  local h = util.start_rendezvous(t, self.cmd, host, listen, args)
  -- the address peers use: the NAT's public one for a server behind a NAT
  local s = { host = host, proc = h, listen = listen,
    addr = self:reach(host) .. ":" .. PORT }
  self.servers[host] = s
  return s
end

-- Build the lab and start the rendezvous servers.  On failure everything is
-- removed and the error raised again.
function Runner:up()
  self.t:up()
  local ok, err = pcall(function()
    for _, name in ipairs(self.names_) do
      local c = cases.by_name()[name]
      if not c.unit then self:_start_server(c.server) end
    end
  end)
  if not ok then
    self:down()
    error(err, 0)
  end
  return self
end

function Runner:down()
  for _, u in pairs(self.units or {}) do
    pcall(u.kind.down, u)
    u.t:down()
  end
  self.units = {}
  self.servers = {}
  if self.turnd then self.turnd:stop() end
  self.turnd = nil
  self.t:down()
end

-- RTTs by ping, all targets at once: { [key] = median ms or false }.
-- targets: { key = { host, address } }.  One ping first settles ARP (on the
-- lab's flat internet a NAT router resolves the other NAT's address across
-- two impaired links, and a lost ARP request is retried after 1 s); then 4
-- pings 50 ms apart.  ping -W bounds the wait for lost ones.
function Runner:_ping(targets)
  local script, keys = {}, {}
  for key, tg in pairs(targets) do
    keys[#keys + 1] = key
    local ping = ("ip netns exec %s ping -n"):format(proc.quote(self.t:ns(tg[1])))
    script[#script + 1] = ("{ %s -c 1 -W 2 %s >/dev/null 2>&1; %s -c 4 -i 0.05 -W 1 %s 2>&1; }"
      .. " | sed 's/^/%s /' &"):format(ping, proc.quote(tg[2]), ping, proc.quote(tg[2]), key)
  end
  script[#script + 1] = "wait"
  local out = proc.run({ "sh", "-c", table.concat(script, "\n") })
  local times = {}
  for _, key in ipairs(keys) do times[key] = {} end
  for line in out:gmatch("[^\n]+") do
    local key, ms = line:match("^(%S+) .-time=([%d%.]+) ms")
    if key and times[key] then table.insert(times[key], tonumber(ms)) end
  end
  local rtt = {}
  for _, key in ipairs(keys) do rtt[key] = median(times[key]) or false end
  return rtt
end

function Runner:_spawn_peer(host, args)
  local argv = { "sh", "-c", '"$@"; echo "{\\"event\\":\\"exit\\",\\"code\\":$?}"',
    "natpunch-peer" }
  for _, w in ipairs(proc.preload(self.cmd)) do argv[#argv + 1] = w end
  argv[#argv + 1] = "peer"
  for _, w in ipairs(args) do argv[#argv + 1] = w end
  return self.t:spawn(host, argv)
end

-- Run one case; returns a result table:
--   case, pair, a, b, title, expect, want_path, want_peer_path, server;
--   the connecting peer: connected, path, remote, setup_ms, touch_rtt_ms,
--     echoes (messages back), reason (of its "failed" event), exit (code),
--     elapsed_ms (start to exit), hung (did not exit in time), public;
--   the waiting peer: peer_connected, peer_path, peer_remote, peer_setup_ms,
--     peer_reason, peer_messages;
--   the rendezvous: introduced, registered = { a =, b = } (the public
--     endpoints it recorded), b_private (what b said its own endpoints are);
--   rtt_server_ms, rtt_peer_ms (ping from the connecting host), ratio
--   (setup_ms / (rtt_server_ms + rtt_peer_ms), when that is >= 10 ms);
--   server_control, server_other, server_stun (UDP packets at the rendezvous
--     host: control frames, anything else, STUN Binding apart);
--   phase_ms (where the case's time went); problems (list of text), pass
--   (no problems), and logs (what each process printed) when not pass.
function Runner:run_case(name)
  local c = assert(cases.by_name()[name], "matrix: unknown case")
  if c.unit then return self:_run_unit(c) end
  local t = self.t
  self.seq = self.seq + 1
  local server = self:_start_server(c.server)
  local res = { case = c.name, pair = c.pair, a = c.a, b = c.b, title = c.title,
    expect = c.expect, want_path = c.path, want_peer_path = c.peer_path,
    server = server.addr }
  local a_id = ("a%d-%s"):format(self.seq, c.name)
  local b_id = ("b%d-%s"):format(self.seq, c.name)
  local same = c.kind == "same"
  local b_reach = same and t:addr(c.acceptor) or self:reach(c.acceptor)
  local server_ip = ip_of(server.addr)

  local phase = {}
  local mark = clock_ms()
  local function lap(what)
    local now = clock_ms()
    phase[what] = now - mark
    mark = now
  end
  res.phase_ms = phase
  -- (the waiting side's ARP entries are settled by these too: a router
  -- that answers an ARP request learns the asker)
  local rtt = self:_ping{
    server = { c.connector, server_ip }, peer = { c.connector, b_reach },
  }
  res.rtt_server_ms = rtt.server or nil
  res.rtt_peer_ms = rtt.peer or nil

  lap("ping")
  local before = self:_counters(server.host) or {}
  local rv_from = #server.proc:output()
  local timeout = c.timeout and (self.opts.timeout or c.timeout) or self.timeout
  local msg, touch = self.opts.message or "hello", self.opts.touch or "touch"

  local targs = self.opts.transport and { "--transport", self.opts.transport } or {}
  local b_args = { "--server", server.addr, "--id", b_id, "--json" }
  -- the hard cases' waiting peer gets the same budget (its default is 10 s)
  if c.hard then
    b_args[#b_args + 1] = "--timeout"
    b_args[#b_args + 1] = tostring(timeout + 10)
  end
  for _, w in ipairs(targs) do b_args[#b_args + 1] = w end
  local b = self:_spawn_peer(c.acceptor, b_args)
  local a
  local ok, err = pcall(function()
    local reg = poll(function()
      return find(events(b), function(ev)
        return ev.event == "registered" or ev.event == "failed" or ev.event == "exit"
      end)
    end, timeout)
    if not reg or reg.event ~= "registered" then
      res.peer_reason = "waiting peer did not register: "
        .. (reg and tostring(reg.reason or reg.event) or "timeout")
      return
    end
    lap("register")
    local started = clock_ms()
    local a_args = { "--server", server.addr, "--id", a_id,
      "--connect", b_id, "--send", msg, "--touch", touch,
      "--timeout", tostring(timeout), "--json" }
    for _, w in ipairs(targs) do a_args[#a_args + 1] = w end
    a = self:_spawn_peer(c.connector, a_args)
    -- natpunch peer --connect ends by itself within --timeout
    local done = poll(function()
      return find(events(a), function(ev) return ev.event == "exit" end)
    end, timeout + 10)
    res.elapsed_ms = clock_ms() - started
    lap("connect")
    if not done then res.hung = true end
    -- the waiting side: connected, or its punch gave up
    local limit = (find(events(a), function(ev) return ev.event == "connected" end)
      and timeout or (c.hard and timeout or PEER_PUNCH_TIMEOUT) + 3)
    poll(function()
      return find(events(b), function(ev)
        return (ev.event == "connected" and ev.peer == a_id)
          or (ev.event == "failed" and ev.peer == a_id)
      end)
    end, limit)
  end)
  lap("wait_peer")
  if a then stop_tree(a) end
  stop_tree(b)
  if not ok then error(err, 0) end

  -- what the connecting peer said
  for _, ev in ipairs(a and events(a) or {}) do
    if ev.event == "connected" then
      res.connected, res.path, res.remote = true, ev.path, ev.remote
      res.setup_ms, res.transport = ev.setup_ms, ev.transport
      res.method, res.methods = ev.method, ev.methods
    elseif ev.event == "birthday" then
      res.probes = ev.probes
    elseif ev.event == "transport_failed" then
      res.transport_failed = (res.transport_failed or "") .. ev.transport .. ": " .. tostring(ev.reason) .. ";"
    elseif ev.event == "touch_acked" then
      res.touch_rtt_ms = ev.rtt_ms
    elseif ev.event == "message" then
      res.echoes = (res.echoes or 0) + 1
    elseif ev.event == "failed" then
      res.reason = ev.reason
    elseif ev.event == "exit" then
      res.exit = ev.code
    elseif ev.event == "registered" then
      res.public = ev.public
    end
  end
  res.connected = res.connected or false
  if a and not res.exit and not res.reason then
    res.reason = res.hung and "did not exit" or "no result"
  end
  -- what the waiting peer said
  for _, ev in ipairs(events(b)) do
    if ev.event == "connected" and ev.peer == a_id then
      res.peer_connected, res.peer_path = true, ev.path
      res.peer_setup_ms, res.peer_remote = ev.setup_ms, ev.remote
      res.peer_method = ev.method
    elseif ev.event == "birthday" and ev.peer == a_id then
      res.probes = res.probes or ev.probes
    elseif ev.event == "failed" and ev.peer == a_id then
      res.peer_reason = ev.reason
    elseif ev.event == "message" and ev.peer == a_id then
      res.peer_messages = (res.peer_messages or 0) + 1
    end
  end
  res.peer_connected = res.peer_connected or false
  -- what the rendezvous said
  res.registered, res.registered_tcp = {}, {}
  for _, ev in ipairs(events(server.proc, rv_from)) do
    if ev.event == "registered" and (ev.peer == a_id or ev.peer == b_id) then
      -- per transport: the STUNT (TCP) registration has its own mapping
      local side = ev.peer == a_id and "a" or "b"
      if ev.transport == "tcp" then
        res.registered_tcp[side] = ev.public
        if side == "b" then res.b_private_tcp = ev.private end
      else
        res.registered[side] = ev.public
        if side == "b" then res.b_private = ev.private end
      end
    elseif ev.event == "introduced" and ev.from == a_id and ev.to == b_id then
      res.introduced = true
    end
  end
  local after = self:_counters(server.host) or {}
  res.server_control = (after.control_in or 0) - (before.control_in or 0)
    + (after.control_out or 0) - (before.control_out or 0)
  res.server_other = (after.other_in or 0) - (before.other_in or 0)
    + (after.other_out or 0) - (before.other_out or 0)
  res.server_stun = (after.stun_in or 0) - (before.stun_in or 0)
    + (after.stun_out or 0) - (before.stun_out or 0)
  local function delta(k) return (after[k] or 0) - (before[k] or 0) end
  res.server_tcp_control = delta("tcp_control_in") + delta("tcp_control_out")
  res.server_tcp_other = delta("tcp_other_in") + delta("tcp_other_out")
  res.server_tcp_bytes = delta("tcp_control_in_bytes") + delta("tcp_control_out_bytes")
  res.server_control = res.server_control + res.server_tcp_control
  res.server_other = res.server_other + res.server_tcp_other
  if res.setup_ms and res.rtt_server_ms and res.rtt_peer_ms then
    local base = res.rtt_server_ms + res.rtt_peer_ms
    if base >= 10 then res.ratio = res.setup_ms / base end
  end
  res.problems = self:check(res, c)
  res.pass = #res.problems == 0
  if not res.pass then
    -- what each process printed, for the report of a failed case
    res.logs = { connector = a and a:output() or "", acceptor = b:output(),
      rendezvous = server.proc:output():sub(rv_from + 1) }
  end
  return res
end

-- A case of its own kind (c.unit, natpunch.lab.matrix.kinds.<unit>): in
-- that kind's own lab, built on its first case and kept for the next ones
-- and the repeats.  The kind's run(u, c) returns a result with connected,
-- path, method, setup_ms (what the kind times) and problems.
function Runner:_unit(c)
  self.units = self.units or {}
  local u = self.units[c.unit]
  if u then return u end
  local kind = require("natpunch.lab.matrix.kinds." .. c.unit)
  local prefix
  if self.opts.prefix then
    self.unit_n = (self.unit_n or 0) + 1
    prefix = self.opts.prefix:sub(1, 6) .. "u" .. self.unit_n
  end
  u = { kind = kind, cmd = self.cmd, opts = self.opts, seq = 0 }
  u.t = lab.topology(kind.describe({ prefix = prefix }))
  self.units[c.unit] = u
  u.t:up()
  kind.up(u)
  return u
end

function Runner:_run_unit(c)
  local u = self:_unit(c)
  u.seq = u.seq + 1
  local res = c.unit_run and u.kind[c.unit_run](u, c) or u.kind.run(u, c)
  res.case, res.pair, res.a, res.b, res.title, res.expect = c.name, c.pair, c.a, c.b, c.title, c.expect
  res.want_path = c.path
  res.connected = res.connected or false
  res.problems = res.problems or {}
  local function want(cond, text) if not cond then table.insert(res.problems, text) end end
  want(res.connected, "did not connect" .. (res.reason and (": " .. res.reason) or ""))
  want(not res.connected or res.path == c.path, ("path %s, expected %s"):format(tostring(res.path), c.path))
  want(not res.connected or res.method == c.method,
    ("connected via %s, expected %s"):format(tostring(res.method), c.method))
  res.pass = #res.problems == 0
  return res
end

-- What is wrong with a result, as a list of sentences (empty: as expected).
function Runner:check(res, c)
  local p = {}
  local function want(cond, text) if not cond then p[#p + 1] = text end end
  local function connected_checks()
    want(res.exit == 0, "natpunch peer --connect exited " .. tostring(res.exit)
      .. (res.reason and (": " .. res.reason) or ""))
    want(res.path == c.path, ("path %s, expected %s"):format(tostring(res.path), c.path))
    want(res.peer_connected, "the waiting peer never reported connected"
      .. (res.peer_reason and (": " .. res.peer_reason) or ""))
    want(not res.peer_connected or res.peer_path == c.peer_path,
      ("waiting peer's path %s, expected %s"):format(tostring(res.peer_path),
        c.peer_path))
    want(res.touch_rtt_ms ~= nil, "the touch was not acknowledged")
    want((res.echoes or 0) >= 1, "nothing came back from the waiting peer")
    -- the other side's endpoint: what the rendezvous recorded (a cone
    -- mapping, or a public host), its NAT's address with a new port (a
    -- symmetric NAT's mapping towards us), or its LAN address
    local tcp = res.transport == "tcp"
    local b_pub = tcp and res.registered_tcp.b or res.registered.b
    local b_private = tcp and res.b_private_tcp or res.b_private
    if c.path == "relay" then
      want(ip_of(res.remote) == cases.S2, ("remote %s is not a relayed address of coturn at %s")
        :format(tostring(res.remote), cases.S2))
    elseif c.path == "private" then
      local ok = false
      for e in (b_private or ""):gmatch("[^,]+") do ok = ok or e == res.remote end
      want(ok, ("remote %s is not one of the waiting peer's private endpoints %s")
        :format(tostring(res.remote), tostring(b_private)))
    elseif nat_types.get(c.b) and nat_types.get(c.b).mapping ~= "endpoint-independent" then
      want(ip_of(res.remote) == self:reach(c.acceptor),
        ("remote %s is not behind %s"):format(tostring(res.remote), self:reach(c.acceptor)))
    else
      want(res.remote ~= nil and res.remote == b_pub,
        ("remote %s, but the rendezvous saw the waiting peer at %s")
        :format(tostring(res.remote), tostring(b_pub)))
    end
  end
  want(not res.hung, "natpunch peer --connect did not exit within its --timeout")
  -- the method that won, on both sides: the hard cases' own; a cone pair
  -- (UDP, default methods) needs nothing but udp and tries nothing else
  local want_method = c.method
  if not want_method and c.kind == "pair" and not self.opts.transport and res.connected
     and nat_types.get(c.a).mapping == "endpoint-independent"
     and nat_types.get(c.b).mapping == "endpoint-independent" then
    want_method = "udp"
    want(res.methods == "udp", ("cone pair tried %s, expected udp alone"):format(tostring(res.methods)))
  end
  if want_method then
    want(res.method == want_method, ("connected via %s, expected %s"):format(tostring(res.method), want_method))
    want(not res.peer_connected or res.peer_method == want_method,
      ("the waiting peer connected via %s, expected %s"):format(tostring(res.peer_method), want_method))
  end
  want(res.introduced, "the rendezvous did not introduce the peers")
  -- introductions carry what the server saw: each peer's outermost public
  -- address (its NAT's, or its own)
  for side, host in pairs({ a = c.connector, b = c.acceptor }) do
    local seen = res.registered[side] or res.registered_tcp[side]
    want(seen and ip_of(seen) == self:reach(host),
      ("the rendezvous saw peer %s at %s, expected address %s"):format(side,
        tostring(seen), self:reach(host)))
  end
  want(res.server_other == 0, ("%d non-control packets at the rendezvous host")
    :format(res.server_other or -1))
  want((res.server_control or 0) > 0, "no control packets counted at the rendezvous host")
  if c.expect == "connect" or res.connected then
    connected_checks()
  else
    -- may fail: then both sides say so, in time, with a reason
    want(res.exit == 1, "natpunch peer --connect exited " .. tostring(res.exit))
    want(type(res.reason) == "string" and res.reason ~= "",
      "the connecting peer gave no reason")
    want(res.elapsed_ms and res.elapsed_ms <= (self.timeout + 2) * 1000,
      ("the connecting peer took %s ms, --timeout was %d s")
      :format(tostring(res.elapsed_ms), self.timeout))
    want(res.peer_reason ~= nil or res.peer_connected,
      "the waiting peer reported neither connected nor failed")
  end
  return p
end

-- Run every case in order; on_result(res) after each.  Returns the results.
function Runner:run(on_result, repeat_n)
  local results = {}
  for _ = 1, repeat_n or 1 do
    for _, name in ipairs(self.names_) do
      local res = self:run_case(name)
      results[#results + 1] = res
      if on_result then on_result(res) end
    end
  end
  return results
end

return matrix
