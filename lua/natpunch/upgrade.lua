--- Relay and direct paths together (issue 12).
--
-- Connecting: the methods marked `parallel` (the TURN relay) start at once,
-- next to the direct ones (udp, predict, birthday, tried in order as
-- natpunch.method.try does).  The first link wins the session: a direct
-- one cancels the relay; a relayed one is used at once while the direct
-- methods go on.  When one of them gives a link later, or, after they gave
-- up, a slower punch in the background (`upgrade` seconds, default 120),
-- the session moves to the direct path: the "connected" event said
-- path = "relay", a "path_changed" event then says "public" or "private".
--
-- What moves is only the path.  The session stays keyed by the other
-- peer's relayed address, and so do the socket's touch state (sequence
-- space, ids, the touches in flight, the receiver's duplicate window) and
-- the session's data keys: the socket's path engine (np_udp_path.c) sends
-- what is addressed to the relayed address along the direct path and takes
-- the data and touch frames from there as the relayed address's.  A touch
-- in flight when the path changes is retransmitted on the new path and
-- deduplicated as before: none is lost or delivered twice.
--
-- The TURN channel toward the other peer is kept RELAY_KEEP seconds after
-- the switch (datagrams already relayed still land), then dropped (the
-- binding expires on the server) - unless natpunch.fallback armed the
-- session (the caller arms it after the switch): then it stays for the
-- way back, and goes when the session closes.  The allocation stays: it is the peer's
-- advertised relayed address, for its other sessions and later
-- introductions.  The other direction, a direct session whose path dies
-- moving to the relay, is natpunch.fallback's, for a session upgraded
-- here too.
local core = require "natpunch.core"
local sched = require "natpunch.sched"
local method = require "natpunch.method"

local upgrade = {}

upgrade.RELAY_KEEP = 5            -- s the channel stays after the switch
upgrade.INTERVAL = 200            -- ms: background punch, first rounds
upgrade.MAX_INTERVAL = 1000       -- ms: background punch, at most one round per second

-- The background punch has its own nonce, derived alike on both sides.
local function upgrade_intro(intro)
  local n = intro.punch_nonce or intro.nonce
  return setmetatable({ punch_nonce = core.crypto.hash("upgrade" .. n, intro.punch_key, 16):sub(1, 8) },
    { __index = intro })
end

local function split(order)
  local direct, parallel = {}, {}
  for _, name in ipairs(order) do
    local m = method.get(name)
    if m and m.parallel then parallel[#parallel + 1] = name else direct[#direct + 1] = name end
  end
  return direct, parallel
end

local function reasons_of(a, b)
  if a and b then return a .. "; " .. b end
  return a or b or "failed"
end

--- Try the methods of `order` (as natpunch.method.try, same results: link,
-- context or nil, reason), the parallel ones (relay) at the same time as
-- the others.  When a parallel method wins, the direct ones go on; a link
-- they give later is handed to on_direct(link, ctx), and when they have
-- all failed on_direct(nil, reason) is called (the caller may then punch in
-- the background: upgrade.punch) - unless they had failed before the relay
-- won: then the third result, the handle, says direct_done (and
-- direct_reason).  `attempt` cancels everything while the race is on;
-- afterwards the handle does (handle.cancel()).
function upgrade.race(order, peer, intro, deadline, attempt, on_direct)
  attempt = attempt or {}
  local direct, parallel = split(order)
  if #parallel == 0 or #direct == 0 then
    return method.try(order, peer, intro, deadline, attempt)
  end
  local d_attempt, p_attempt = {}, {}
  local handle = {}
  function handle.cancel()
    handle.cancelled = true
    method.cancel(d_attempt)
    method.cancel(p_attempt)
  end
  attempt.ctx = { _cancel = handle.cancel }
  local first = sched.future()
  local d_reason, p_reason, d_done, p_done
  local function both_failed()
    if d_done and p_done and not first:is_set() then
      attempt.last = p_attempt.last or d_attempt.last   -- what a failed connect reports
      first:set(nil, reasons_of(d_reason, p_reason))
    end
  end
  sched.spawn(function()
    local link, ctx = method.try(direct, peer, intro, deadline, d_attempt)
    d_done = true
    if link then
      if not first:is_set() then
        method.cancel(p_attempt)
        first:set(link, ctx)
      elseif not handle.cancelled and on_direct then
        on_direct(link, ctx)
      end
      return
    end
    d_reason = ctx
    if first:is_set() then
      if not handle.cancelled and on_direct then on_direct(nil, ctx) end
    else
      both_failed()
    end
  end)
  sched.spawn(function()
    local link, ctx = method.try(parallel, peer, intro, deadline, p_attempt)
    p_done = true
    if link and not first:is_set() then
      -- the direct methods may have given up already: the caller then
      -- goes on in the background itself
      handle.direct_done, handle.direct_reason = d_done, d_reason
      first:set(link, ctx, handle)
    elseif not link then
      p_reason = ctx
      both_failed()
    end
  end)
  local link, ctx, h = first:wait()
  attempt.ctx = nil
  if attempt.cancelled then handle.cancel() end
  return link, ctx, h
end

--- Punch toward the other peer in the background, slowly, until a direct
-- path answers or `seconds` pass; in a task.  Returns the udp method's
-- link (ip, port, path, remote, rtt_ms) or nil, reason.  `handle` (a
-- table) gets a cancel function.
function upgrade.punch(peer, intro, seconds, handle)
  local m = assert(method.get("udp"))
  local ctx = method.context("udp", peer, upgrade_intro(intro), core.now() + seconds * 1000)
  ctx.punch = { interval = upgrade.INTERVAL, max_interval = upgrade.MAX_INTERVAL }
  local fut = sched.future()
  ctx.task = sched.spawn(function() fut:set(m.run(ctx)) end)
  if handle then handle.cancel = function() ctx:_cancel() fut:set(nil, "cancelled") end end
  local link, reason = fut:wait(seconds + 1)
  if not fut:is_set() then
    ctx:_cancel()
    return nil, "timeout"
  end
  if link then link.method = "udp" end
  return link, reason
end

--- Move relayed session s to the direct path of `link` (a udp link: ip,
-- port, path, remote): the socket's path engine carries the session's
-- traffic from now on.  Emits "path_changed".  Returns true, or nil, reason.
function upgrade.switch(s, link)
  local owner = s.owner
  if s.closed or owner.closed or s.path ~= "relay" then return nil, "not a relayed session" end
  local sock = owner.udp
  local ok, err = sock:path_set(s.ip, s.port, link.ip, link.port)
  if not ok then return nil, err end
  local t = core.now()
  s.relayed, s.remote, s.path, s.method = s.remote, link.remote, link.path, link.method or "udp"
  s.direct_ip, s.direct_port = link.ip, link.port
  owner:_emit({ event = "path_changed", peer = s.peer, from = "relay", path = s.path,
    remote = s.remote, relayed = s.relayed, method = s.method, rtt_ms = link.rtt_ms,
    after_ms = s.connected_at and (t - s.connected_at) or nil })
  -- the relayed datagrams in flight still land through the channel a while
  sched.spawn(function()
    sched.sleep(upgrade.RELAY_KEEP)
    if owner.closed or (s._fallback and not s.closed) then return end
    require("natpunch.method.relay").release(owner, s.ip, s.port)
  end)
  return true
end

--- Forget the direct path of an upgraded session (when it closes).
function upgrade.forget(s)
  if s.direct_ip and not s.owner.udp:is_closed() then s.owner.udp:path_clear(s.ip, s.port) end
end

return upgrade
