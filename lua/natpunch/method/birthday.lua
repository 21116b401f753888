--- The "birthday" method: birthday punching for a symmetric NAT with random
-- ports (nothing to predict) against a cone NAT, with plain UDP punching
-- from both registered sockets alongside (so the method also connects the
-- pairs udp can: symmetric against a full or restricted cone).
--
--   * After registering, a peer measures its allocation against the
--     rendezvous (as the predict method does, once per peer); a peer whose
--     new mappings get random ports advertises `hard = "1"`.
--   * Both sides punch at once from their registered sockets, as the udp
--     method does (the easy side accepts the hard side's new mapping as a
--     peer-reflexive candidate).  After a head start (HEAD_START_RTTS
--     round trips to the server, within HEAD_START_MIN_S..MAX_S) in which
--     that alone may connect, birthday punching joins in:
--   * The hard side opens `sockets` fresh UDP sockets (default 256) and
--     sends a hello from each to the easy side's public endpoint: 256 new
--     mappings at random ports of its public address.
--   * The easy side sends probes from its registered socket to random ports
--     of the hard side's public address, `rate` per second (default 100),
--     at most `probes` (default 2048: Tailscale's published figures,
--     ~20 s), in `ports` (default 1024-65535).  Each probe opens its own
--     filter for that port; one that lands on a mapping of the hard side
--     reaches that socket (the NAT takes it for a reply).
--   * The first hard socket that hears a probe wins: every other closes at
--     once, and it punches (authenticated, docs/SECURITY.md) toward the
--     prober's endpoint.
--   * The hard side decides: the first of its two punches (registered
--     socket, birthday socket) to succeed is the path, the other stops,
--     and it sends a nomination over that path (a MAC under the peers'
--     punch key, NOMINATE_SENDS copies).  The easy side, which has one
--     socket and one punch that may have answered both, takes the path
--     the nomination came from (or, if none arrives within NOMINATE_WAIT_S,
--     its own first answer).  So the two sides never name different
--     paths, which two methods tried one after the other could.
--
-- Per probe the chance is sockets/65536 (256: 1/256): about 1000 probes
-- give 98 %.  Defaults are kept at Tailscale's published ones
-- (tailscale#5389: spraying thousands of ports puts home routers under
-- memory pressure, since each probe is a conntrack entry on the easy
-- side's router; 2048 probes and 256 sockets bound that; the head start
-- spares them when plain punching connects).  The link's method is "udp"
-- when the registered sockets' punch won, "birthday" otherwise; it
-- reports `probes` (sent by the easy side) and `birthday_ms`.
local core = require "natpunch.core"
local sched = require "natpunch.sched"
local addr = require "natpunch.addr"
local udp = require "natpunch.method.udp"
local choose = require "natpunch.method.choose"

local birthday = { name = "birthday", transport = "udp",
  sockets = 256, rate = 100, probes = 2048, port_min = 1024, port_max = 65535 }

local MAX_SOCKETS, MAX_RATE, MAX_PROBES = 1024, 1000, 65536
local HELLO_EVERY_S = 4   -- the hard side's hellos keep its mappings alive

birthday.HEAD_START_RTTS = 2
birthday.HEAD_START_MIN_S = 0.05
birthday.HEAD_START_MAX_S = 0.5
birthday.NOMINATE_SENDS = { 0, 0.05, 0.15, 0.35, 0.75 }   -- s after the decision
birthday.NOMINATE_WAIT_S = 1

--- The head start (s) of plain punching for a round trip of rtt_ms to
-- the server (nil: unknown, the upper bound).
function birthday.head_start(rtt_ms)
  return choose.rtts(rtt_ms, birthday.HEAD_START_RTTS, birthday.HEAD_START_MIN_S, birthday.HEAD_START_MAX_S)
end

--- After registering, once: measure this peer's allocation (shared with
-- the predict method: peer.predict_alloc); true (re-register now) when it
-- is random, so that `hard` reaches the server.
function birthday.prepare(peer)
  if peer.birthday_done or not peer.server_ip then return false end
  peer.birthday_done = true
  if peer.predict_alloc == nil then
    local a = require("natpunch.discover").probe_allocation{
      server = addr.format(peer.server_ip, peer.server_port) }
    peer.predict_alloc = a or false
  end
  return birthday.advertise(peer) ~= nil
end

local function is_hard(peer)
  -- discovery, when it ran, knows the mapping; an EIM NAT is never hard
  if peer.nat and peer.nat.mapping == "endpoint-independent" then return false end
  local a = peer.predict_alloc
  return a and a.pattern == "random" and #a.ports > 1 or false
end

function birthday.advertise(peer)
  if is_hard(peer) then return { hard = "1" } end
end

-- An option (a field of this module, set by an application before it
-- connects), clamped to what is sane.
local function option(_, name, lo, hi)
  local v = math.floor(tonumber(birthday[name]) or lo)
  return math.max(lo, math.min(hi, v))
end

local function public_of(cands)
  for _, c in ipairs(cands) do if c[3] == "public" then return c[1], c[2] end end
end

local function punch_nonce(ctx) return ctx.intro.punch_nonce or ctx.nonce end

-- The nomination of path kind k ("u": the registered socket, "b": a
-- birthday socket): bound to this attempt by the punch nonce and key.
local function nomination(ctx, k)
  return "N" .. k .. core.crypto.hash("natpunch-birthday-nominate" .. punch_nonce(ctx) .. k,
    ctx.intro.punch_key, 16)
end

---------------------------------------------------------------- easy side

-- Take the hard side's nomination: the path it came from replaces the
-- one our punch found first (a birthday socket and the registered socket
-- may both have been answered).  The session's touch frames on it carry
-- the peers' MAC, as udp.run sets up for its own answer.
local function take_nomination(ctx, link, nom)
  link.method = nom.kind == "u" and "udp" or "birthday"
  if nom.ip == link.ip and nom.port == link.port then return end
  local sock = link.socket
  if ctx.intro.touch_key then sock:touch_key(nom.ip, nom.port, ctx.intro.touch_key) end
  if link.rtt_ms then sock:touch_seed(nom.ip, nom.port, math.max(1, link.rtt_ms)) end
  link.ip, link.port = nom.ip, nom.port
  link.remote = addr.format(nom.ip, nom.port)
  link.route = link.remote
end

local function spray(ctx)
  local peer = ctx.peer
  local hip = public_of(ctx.candidates)
  if not hip then return nil, "no public candidate" end
  local rate = option(peer, "rate", 1, MAX_RATE)
  local max = option(peer, "probes", 1, MAX_PROBES)
  local lo = option(peer, "port_min", 1, 65535)
  local hi = option(peer, "port_max", lo, 65535)
  local started = core.now()
  local done = sched.future()
  -- the hard side's nomination (below) may come before our punch succeeds
  local nominated = sched.future()
  local noms = { [nomination(ctx, "u")] = "u", [nomination(ctx, "b")] = "b" }
  peer.control_watch[ctx] = function(data, ip, port)
    local k = ip == hip and noms[data]
    if not k then return false end
    nominated:set({ kind = k, ip = ip, port = port })
    return true
  end
  ctx:on_cancel(function() peer.control_watch[ctx] = nil end)
  -- a failed session of an earlier method keeps the nonce a moment
  if not peer.udp:is_closed() then peer.udp:punch_cancel(punch_nonce(ctx)) end
  local punching = sched.spawn(function()
    done:set(udp.run(ctx))
  end)
  -- plain punching alone first: it may connect before any probe is needed
  done:wait(math.min(birthday.head_start(ctx.intro.rtt_ms), ctx:remaining()))
  local sprayed = core.now()
  local probe = "B" .. ctx.nonce
  local sent = 0
  local tick = 0.02
  while not done:is_set() and sent < max and ctx:remaining() > 0 and not peer.udp:is_closed() do
    local due = math.min(max, math.floor((core.now() - sprayed) / 1000 * rate) + 1)
    while sent < due do
      peer.udp:send(hip, math.random(lo, hi), probe, "control")
      sent = sent + 1
    end
    done:wait(tick)
  end
  -- the last probes need an RTT or two to be answered
  if not done:is_set() then done:wait(math.min(2, ctx:remaining())) end
  local link, err
  if done:is_set() then link, err = done:wait() end
  if link then
    local nom = nominated:wait(math.min(birthday.NOMINATE_WAIT_S, ctx:remaining()))
    if nom then take_nomination(ctx, link, nom) end
  end
  peer.control_watch[ctx] = nil
  peer:_emit({ event = "birthday", peer = ctx.remote_id, probes = sent, ms = core.now() - started,
    rate = rate, connected = link ~= nil, method = link and link.method })
  if not done:is_set() then
    punching:cancel()
    if not peer.udp:is_closed() then peer.udp:punch_cancel(punch_nonce(ctx)) end
    return nil, ("no answer to %d probes in %d ms"):format(sent, core.now() - started)
  end
  if not link then return nil, ("%s (%d probes)"):format(tostring(err), sent) end
  link.method = link.method or "birthday"
  link.probes, link.birthday_ms = sent, core.now() - started
  return link
end

---------------------------------------------------------------- hard side

local Link = {}
Link.__index = Link
function Link:send(data) return self.socket:send(self.ip, self.port, data, "data") end
function Link:touch(data, cb) return self.socket:touch(self.ip, self.port, data, cb) end
function Link:close()
  if not self.socket:is_closed() then self.socket:close() end
end

local function open_all(ctx, n, eip, eport, found, route)
  local socks = {}
  local bind = ctx.peer.family == "inet6" and "::" or "0.0.0.0"
  local hello = "H" .. ctx.nonce
  local want = "B" .. ctx.nonce
  for i = 1, n do
    local u = core.udp()
    if not u:bind(bind, 0) then u:close() break end
    u:recv_start(function(err, data, ip, port, kind)
      if err then return end
      if kind == "control" and data == want and ip == eip then
        if not found:is_set() then found:set(u, ip, port) end
      elseif (kind == "data" or kind == "touch") and route.ip == ip and route.port == port and route.socket == u then
        ctx:deliver(data, kind)
      end
    end)
    socks[i] = u
    u:send(eip, eport, hello, "control")
  end
  return socks
end

-- The birthday half of the hard side: sockets, the first that hears a
-- probe punches.  `stop.close()` closes every socket it opened (the
-- winner too): the registered socket's punch won.
local function wait_probe(ctx, stop)
  local eip, eport = public_of(ctx.candidates)
  if not eip then return nil, "no public candidate" end
  local n = option(ctx.peer, "sockets", 1, MAX_SOCKETS)
  local found = sched.future()
  local started = core.now()
  local route = {}   -- the winner's session: socket, ip, port
  local socks = open_all(ctx, n, eip, eport, found, route)
  if #socks == 0 then return nil, "could not open sockets" end
  local function close_all(keep)
    for _, u in ipairs(socks) do if u ~= keep and not u:is_closed() then u:close() end end
  end
  stop.close = close_all
  local winner, ip, port
  while ctx:remaining() > 0 do
    winner, ip, port = found:wait(math.min(HELLO_EVERY_S, ctx:remaining()))
    if winner then break end
    for _, u in ipairs(socks) do if not u:is_closed() then u:send(eip, eport, "H" .. ctx.nonce, "control") end end
  end
  close_all(winner)   -- first hit wins, every other socket closes at once
  if not winner then return nil, ("no probe reached any of %d sockets"):format(#socks) end
  local nonce = punch_nonce(ctx)
  local fut = sched.future()
  local ok, err = winner:punch({
    nonce = nonce, key = ctx.intro.punch_key, candidates = { { ip, port, "public" } },
    timeout = math.max(1, math.floor(ctx:remaining() * 1000)),
  }, function(perr, pip, pport, _, rtt) fut:set(perr, pip, pport, rtt) end)
  if not ok then winner:close() return nil, err end
  local perr, pip, pport, rtt = fut:wait()
  if perr then winner:close() return nil, "punch failed: " .. tostring(perr) end
  -- touch frames carry a MAC under the peers' key, as on the udp method's path
  if ctx.intro.touch_key then winner:touch_key(pip, pport, ctx.intro.touch_key) end
  if rtt then winner:touch_seed(pip, pport, math.max(1, rtt)) end
  route.socket, route.ip, route.port = winner, pip, pport
  return setmetatable({ socket = winner, ip = pip, port = pport, remote = addr.format(pip, pport),
    path = "public", transport = "udp", method = "birthday", rtt_ms = rtt, sockets = #socks,
    birthday_ms = core.now() - started }, Link)
end

-- Send the nomination of the chosen path, NOMINATE_SENDS copies (the
-- easy side waits for one), in the background.
local function nominate(ctx, link, k)
  local word = nomination(ctx, k)
  sched.spawn(function()
    local t0 = core.now()
    for _, at in ipairs(birthday.NOMINATE_SENDS) do
      local wait = at - (core.now() - t0) / 1000
      if wait > 0 then sched.sleep(wait) end
      if link.socket:is_closed() then return end
      link.socket:send(link.ip, link.port, word, "control")
    end
  end)
end

-- The hard side: the registered socket punches as udp does; after the
-- head start, birthday sockets too.  The first to succeed is the path.
local function hard_side(ctx)
  local peer = ctx.peer
  local decided = sched.future()
  local reasons, failed = {}, 0
  local function lost(what, reason)
    reasons[#reasons + 1] = what .. ": " .. tostring(reason)
    failed = failed + 1
    if failed == 2 then decided:set(nil, table.concat(reasons, "; ")) end
  end
  local stop = {}
  local direct = sched.spawn(function()
    local link, err = udp.run(ctx)
    if link then decided:set("u", link) else lost("udp", err) end
  end)
  local probing = sched.spawn(function()
    sched.sleep(math.min(birthday.head_start(ctx.intro.rtt_ms), ctx:remaining()))
    if decided:is_set() then return end
    local link, err = wait_probe(ctx, stop)
    if not link then return lost("birthday", err) end
    if not decided:set("b", link) then link:close() end
  end)
  local function stop_probing()
    probing:cancel()
    if stop.close then stop.close() end
  end
  local function stop_direct()
    direct:cancel()
    if not peer.udp:is_closed() then peer.udp:punch_cancel(punch_nonce(ctx)) end
  end
  ctx:on_cancel(function() stop_probing() stop_direct() end)
  local k, link = decided:wait(ctx:remaining() + 0.5)
  if k == "u" then stop_probing()
  elseif k == "b" then stop_direct()
  else
    stop_probing() stop_direct()
    return nil, link or "timeout"
  end
  nominate(ctx, link, k)
  link.method = k == "u" and "udp" or "birthday"
  return link
end

function birthday.run(ctx)
  local mine, theirs = is_hard(ctx.peer), ctx.info.hard == "1"
  if mine and theirs then return nil, "both sides allocate random ports: no birthday pair" end
  if not mine and not theirs then return nil, "no side allocates random ports" end
  if mine then return hard_side(ctx) end
  return spray(ctx)
end

return birthday
