--- The "udp" method: UDP hole punching from the peer's own socket (the
-- one registered with the rendezvous, so its NAT mapping is the one the
-- other side was told about).  Both sides send connectivity checks (the C
-- punch state machine, docs/PROTOCOL.md "Punching") to every candidate at
-- once; the first pair that answers both ways wins.  Works through every
-- cone NAT and against a symmetric NAT whose other side lets in a port it
-- has not contacted (peer-reflexive candidates); see docs/TRAVERSAL.md.
--
-- A peer with sockets per interface (peer{ each_interface = true },
-- natpunch.interfaces) punches from its own socket first and, when that
-- finds nothing, from every interface socket at once (udp.OWN_FIRST_S).
--
-- Needs from the introduction: the nonce, the other peer's candidates
-- (private + public).  Advertises nothing.
local sched = require "natpunch.sched"
local addr = require "natpunch.addr"

-- Followed by other methods, punching gives up after `budget` seconds (a
-- direct path through cone NATs is found within a few RTTs), leaving the
-- rest of connect_timeout to the next method (relay, say).
local udp = { name = "udp", transport = "udp", budget = 5 }

local Link = {}
Link.__index = Link

function Link:send(data)
  return self.socket:send(self.ip, self.port, data, "data")
end

function Link:touch(data, cb)
  return self.socket:touch(self.ip, self.port, data, cb)
end

-- The socket belongs to the peer: closing a UDP session only forgets it.
function Link.close() end

-- `natpunch peer -v`: what is being punched, and what answered
local function trace(ctx, ev)
  local p = ctx.peer
  if p._trace then p:_trace(ev) end
end

-- One punch from socket sock toward every candidate, for timeout_ms;
-- cb(err, ip, port, kind, rtt) once.  Returns a cancel function, or nil,
-- err when it could not start.
local function punch(ctx, sock, nonce, timeout_ms, cb)
  local pace = ctx.punch or {}    -- ctx.punch: the pace of a punch in the background (natpunch.upgrade)
  local ok, err = sock:punch({
    nonce = nonce, key = ctx.intro.punch_key, candidates = ctx.candidates,
    timeout = math.max(1, math.floor(timeout_ms)),
    interval = pace.interval, max_interval = pace.max_interval,
  }, cb)
  if not ok then return nil, err end
  local function cancel() if not sock:is_closed() then sock:punch_cancel(nonce) end end
  ctx:on_cancel(cancel)
  return cancel
end

-- With sockets per interface (peer{ each_interface = true }): the peer's
-- own socket punches alone for this long first (s, at most a third of the
-- budget), then, if it found nothing, every interface's socket at once
-- until the deadline.  One after the other, so that the two peers do not
-- settle on different flows (the other side answers all of them).
udp.OWN_FIRST_S = 0.5

-- Punch from every socket of `socks` at once: the first success wins and
-- the others are cancelled.  Returns err, ip, port, kind, rtt, socket
-- (err: the last failure when none succeeded).
local function punch_all(ctx, socks, nonce)
  local done = sched.future()
  local cancels, failed = {}, 0
  for i, u in ipairs(socks) do
    cancels[i] = punch(ctx, u, nonce, ctx:remaining() * 1000, function(perr, ip, port, kind, rtt)
      if done:is_set() then return end
      if perr then
        failed = failed + 1
        if failed == #socks then done:set(perr) end
        return
      end
      done:set(nil, ip, port, kind, rtt, u)
      for j, c in pairs(cancels) do if j ~= i then c() end end
    end)
    if not cancels[i] then
      failed = failed + 1
      cancels[i] = function() end
    end
  end
  if failed == #socks and not done:is_set() then done:set("no socket could punch") end
  return done:wait()
end

function udp.run(ctx)
  local peer = ctx.peer
  local sock = peer.udp
  if #ctx.candidates == 0 then return nil, "no usable candidate" end
  -- the nonce and MAC key the two peers derived from their own keys
  -- (docs/SECURITY.md): the server does not know them
  local nonce = ctx.intro.punch_nonce or ctx.nonce
  if peer.verbose then
    local list = {}
    for _, c in ipairs(ctx.candidates) do list[#list + 1] = addr.format(c[1], c[2]) .. " (" .. c[3] .. ")" end
    trace(ctx, { event = "punching", peer = ctx.remote_id,
      candidates = table.concat(list, ", ") })
  end
  local extra = (not ctx.punch and peer.ifaces) or {}
  local own_ms = ctx:remaining() * 1000
  if #extra > 0 then own_ms = math.min(udp.OWN_FIRST_S * 1000, own_ms / 3) end
  local fut = sched.future()
  local cancel, err = punch(ctx, sock, nonce, own_ms, function(...) fut:set(...) end)
  if not cancel then return nil, err end
  local perr, ip, port, kind, rtt = fut:wait()
  if perr and #extra > 0 and not ctx.cancelled then
    -- nothing through the default route: every interface's socket
    local socks = {}
    for _, x in ipairs(extra) do
      if not x.udp:is_closed() then socks[#socks + 1] = x.udp end
    end
    trace(ctx, { event = "punching_interfaces", peer = ctx.remote_id, reason = tostring(perr), sockets = #socks })
    if #socks > 0 then
      local won
      perr, ip, port, kind, rtt, won = punch_all(ctx, socks, nonce)
      if not perr then sock = won end
    end
  end
  local who = ctx.remote_id
  if perr then
    trace(ctx, { event = "punch_failed", peer = who, reason = tostring(perr),
      probes_received = sock:stats().rx_punch })
    return nil, "punch failed: " .. tostring(perr)
  end
  trace(ctx, { event = "answered", peer = who, remote = addr.format(ip, port), kind = kind, rtt_ms = rtt,
    ["local"] = sock ~= peer.udp and addr.format(sock:getsockname()) or nil })
  -- touch frames on this path carry a MAC under the peers' key (set before
  -- anything else creates the endpoint's touch state)
  if ctx.intro.touch_key then sock:touch_key(ip, port, ctx.intro.touch_key) end
  if rtt then sock:touch_seed(ip, port, math.max(1, rtt)) end   -- first RTO fits the path
  local remote = addr.format(ip, port)
  return setmetatable({
    socket = sock, ip = ip, port = port, remote = remote,
    path = (kind == "private") and "private" or "public",
    transport = "udp", rtt_ms = rtt,
    route = remote,        -- data/touch frames from there on the peer's sockets are this session's
  }, Link)
end

return udp
