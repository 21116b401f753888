--- Relay fallback (issue 12): a session on a direct UDP path (udp or
-- predict, on the peer's own socket) whose path dies moves to the TURN
-- relay, the opposite of natpunch.upgrade.
--
-- Armed when the session connects directly and both peers have a TURN
-- allocation (this peer's own, natpunch.method.relay's prepare, and the
-- other's relayed address, advertised as m.relay.addr): this side binds
-- a TURN channel toward the other's relayed address (so what the other
-- sends from there reaches us, and no route goes there before the switch:
-- only datagrams addressed to the relayed address take it), and watches
-- the session.
--
-- Death: touches are in flight and nothing has come back from the peer
-- (no ack, no touch, no data) for `fallback` seconds (peer option,
-- default 2; 0: never).  An idle session is not watched: its death shows
-- at its next touch.  Then this side (binding the channel again if that
-- failed at arming) sets the socket's path (u:path_set): what
-- is addressed to the other's direct endpoint now goes over the relay,
-- and its frames from the relayed address are the direct endpoint's.  The
-- session stays keyed as before, and so does the socket's touch state
-- (sequence space, touches in flight, the receiver's duplicate window):
-- touches in flight are retransmitted over the relay and deduplicated as
-- before, none is lost or delivered twice.  A "path_changed" event says
-- from = "public" (or "private"), path = "relay".
--
-- Agreement: the side that switched sends a notice over the relay, a
-- DATA frame "NPFB" .. hash("natpunch-fallback" .. its relayed address,
-- punch key) (the punch key is the pair's, from the introduction; the
-- server does not know it), every NOTICE_EVERY seconds until something
-- comes back from the peer, NOTICES times at most.  The other side,
-- armed, takes a notice from the relayed address it was told about as
-- its cue and switches the same way (it may also have found the death
-- itself: then both switch, and the notices are dropped).
--
-- A session that came up relayed and was upgraded to a direct path
-- (natpunch.upgrade.switch) is armed too, when the upgrade happens: it is
-- keyed by the other's relayed address already and keeps the relay
-- method's channel (the upgrade does not release it then), so its switch
-- only clears the socket's path (u:path_clear): what is addressed to the
-- relayed address takes the channel again.  Its notices arrive from that
-- address, as the session's (fallback.is_notice).
--
-- Once relayed the session stays relayed (no upgrade back).  On close the
-- path and the channel go.
local core = require "natpunch.core"
local sched = require "natpunch.sched"
local addr = require "natpunch.addr"
local candidates = require "natpunch.candidates"

local fallback = {}

fallback.NOTICE_EVERY = 0.25    -- s between notices
fallback.NOTICES = 12           -- notices sent at most (3 s)
fallback.STEP = 0.25            -- s between looks at a watched session, at most
fallback.ARM_CHANNELS = 8       -- arming binds a channel while the TURN client has fewer (of 16)

local MAGIC = "NPFB"

local function notice_of(relayed, key)
  return MAGIC .. core.crypto.hash("natpunch-fallback" .. relayed, key, 16)
end

-- What came back from the peer so far (touch acks, deliveries,
-- duplicates, data messages), and the touches in flight.
local function progress(s)
  local info = s.owner.udp:touch_info(s.ip, s.port)
  local rx = s.rx_count or 0
  if not info then return rx, 0 end
  return info.acked + info.delivered + info.duplicates + info.too_old + rx, info.in_flight
end

local function watch(s, fb)
  local owner = s.owner
  local c = owner.turn_client
  -- a channel toward the other's relayed address at once (its permission
  -- lets what the other sends from there pass our allocation, and the
  -- route takes it in): the relay method, cancelled when the direct path
  -- won, may have left the server a binding this side never installed,
  -- whose ChannelData would be dropped.  Half of the client's channels at
  -- most: the others stay for relayed sessions (then a permission only)
  if c and not c.closed then
    local ch = (c.channels[fb.theirs] or c.n_channels < fallback.ARM_CHANNELS) and c:bind(fb.ip, fb.port)
    if ch then fb.channel = true elseif not c.closed and not c.permitted[fb.ip] then c:permit(fb.ip) end
  end
  local limit_ms = owner.fallback * 1000
  local step = math.min(fallback.STEP, owner.fallback / 8)
  local last, at = progress(s), core.now()
  while fb.state == "armed" and not s.closed and not owner.closed do
    sched.sleep(step)
    if fb.state ~= "armed" or s.closed or owner.closed then return end
    local p, in_flight = progress(s)
    local t = core.now()
    if p ~= last or in_flight == 0 then
      last, at = p, t
    elseif t - at >= limit_ms then
      fallback.switch(s, ("nothing from the direct path for %d ms with %d touches in flight")
        :format(math.floor(t - at), in_flight))
      return
    end
  end
end

--- Arm session s (just connected, intro: its introduction) for the
-- fallback when it can have one: a direct UDP session on the peer's own
-- socket, a TURN allocation here and a relayed address advertised by the
-- other peer, `fallback` > 0; or a relayed session just upgraded to a
-- direct path (s.direct_ip set: the other's relayed address is the
-- session's own).  true if armed.
function fallback.arm(s, intro)
  local owner = s.owner
  local upgraded = s.direct_ip ~= nil
  if not owner.fallback or owner.fallback <= 0 or s.path == "relay" or s._fallback then
    return false
  end
  local link = s.link
  if s.transport ~= "udp" or link.socket ~= owner.udp or not link.route then return false end
  local c, info = owner.turn_client, intro.info and intro.info.relay
  if not (c and owner.relayed and intro.punch_key) then return false end
  local ip, port
  if upgraded then
    ip, port = s.ip, s.port
  elseif info and info.addr then
    ip, port = candidates.check(info.addr, owner.policy)
  end
  if not ip then return false end
  local fb = { ip = ip, port = port, theirs = addr.format(ip, port), mine = owner.relayed,
    key = intro.punch_key, state = "armed", upgraded = upgraded }
  s._fallback = fb
  owner.fallbacks = owner.fallbacks or {}
  owner.fallbacks[fb.theirs] = s
  sched.spawn(watch, s, fb)
  return true
end

local function notify(s, fb)
  local owner = s.owner
  local bytes = notice_of(fb.mine, fb.key)
  local p0 = progress(s)
  for _ = 1, fallback.NOTICES do
    if s.closed or owner.closed or fb.state ~= "relayed" then return end
    s.link:send(bytes)
    sched.sleep(fallback.NOTICE_EVERY)
    if progress(s) ~= p0 then return end
  end
end

--- Move armed session s to the relay (in a task): a TURN channel toward
-- the other's relayed address, then the socket's path.  `why` goes into
-- the event; `noticed`: the other side moved first (no notices back).
-- Returns true, or nil, reason (a "fallback_failed" event then).
function fallback.switch(s, why, noticed)
  local fb = s._fallback
  if not fb or fb.state ~= "armed" then return nil, "not armed" end
  fb.state = "switching"
  local owner = s.owner
  local function failed(reason)
    fb.state = "failed"
    owner:_emit({ event = "fallback_failed", peer = s.peer, reason = tostring(reason) })
    return nil, reason
  end
  local c = owner.turn_client
  if not c or c.closed then return failed("no TURN allocation") end
  local t0 = core.now()
  local ch, err = c:bind(fb.ip, fb.port)
  if s.closed or owner.closed then
    if ch and not owner.closed then require("natpunch.method.relay").release(owner, fb.ip, fb.port) end
    return nil, "closed"
  end
  if not ch then return failed(err) end
  local from = s.path
  if fb.upgraded then
    -- keyed by the relayed address: without the path, the channel again
    owner.udp:path_clear(s.ip, s.port)
    s.remote, s.direct_ip, s.direct_port = fb.theirs, nil, nil
  else
    local ok, perr = owner.udp:path_set(s.ip, s.port, fb.ip, fb.port)
    if not ok then
      require("natpunch.method.relay").release(owner, fb.ip, fb.port)
      return failed(perr)
    end
  end
  fb.state = "relayed"
  s.path, s.relayed, s.method = "relay", fb.theirs, "relay"
  owner:_emit({ event = "path_changed", peer = s.peer, from = from, path = "relay", remote = s.remote,
    relayed = fb.theirs, method = "relay", reason = why, bind_ms = core.now() - t0,
    after_ms = s.connected_at and (core.now() - s.connected_at) or nil })
  if not noticed then sched.spawn(notify, s, fb) end
  return true
end

--- A datagram of kind from "ip:port" that no session took: true if it was
-- a fallback notice (from the relayed address of an armed session, which
-- then switches).
function fallback.input(owner, from, data, kind)
  local s = owner.fallbacks and owner.fallbacks[from]
  if not s or kind ~= "data" then return false end
  local fb = s._fallback
  if not fb or data ~= notice_of(fb.theirs, fb.key) then return false end
  if fb.state == "armed" then
    sched.spawn(fallback.switch, s, "the other peer moved to the relay", true)
  end
  return true
end

--- true if data (kind) is a notice for session s (one that arrives after
-- the switch, through the path; or, for an upgraded session keyed by the
-- relayed address, its cue, and it switches): dropped, it is no message.
function fallback.is_notice(s, data, kind)
  local fb = s._fallback
  if not (kind == "data" and #data == #MAGIC + 16 and data == notice_of(fb.theirs, fb.key)) then return false end
  if fb.state == "armed" then
    sched.spawn(fallback.switch, s, "the other peer moved to the relay", true)
  end
  return true
end

--- Forget the fallback of session s (when it closes): the path and the
-- channel go.
function fallback.forget(s)
  local fb = s._fallback
  if not fb then return end
  local owner = s.owner
  local mine = owner.fallbacks and owner.fallbacks[fb.theirs] == s
  if mine then owner.fallbacks[fb.theirs] = nil end
  if fb.state == "relayed" and not fb.upgraded and not owner.udp:is_closed() then
    owner.udp:path_clear(s.ip, s.port)
  end
  -- the channel, unless a later session toward the same peer armed again
  if mine and (fb.channel or fb.state == "relayed") then
    require("natpunch.method.relay").release(owner, fb.ip, fb.port)
  end
  fb.state = "closed"
end

return fallback
