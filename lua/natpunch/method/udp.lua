--- The "udp" method: UDP hole punching from the peer's own socket (the
-- one registered with the rendezvous, so its NAT mapping is the one the
-- other side was told about).  Both sides send connectivity checks (the C
-- punch state machine, docs/PROTOCOL.md "Punching") to every candidate at
-- once; the first pair that answers both ways wins.  Works through every
-- cone NAT and against a symmetric NAT whose other side lets in a port it
-- has not contacted (peer-reflexive candidates); see docs/TRAVERSAL.md.
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

function udp.run(ctx)
  local sock = ctx.peer.udp
  if #ctx.candidates == 0 then return nil, "no usable candidate" end
  -- the nonce and MAC key the two peers derived from their own keys
  -- (docs/SECURITY.md): the server does not know them
  local nonce = ctx.intro.punch_nonce or ctx.nonce
  if ctx.peer.verbose then
    local list = {}
    for _, c in ipairs(ctx.candidates) do list[#list + 1] = addr.format(c[1], c[2]) .. " (" .. c[3] .. ")" end
    trace(ctx, { event = "punching", peer = ctx.remote_id,
      candidates = table.concat(list, ", ") })
  end
  local fut = sched.future()
  -- ctx.punch: the pace of a punch in the background (natpunch.upgrade)
  local pace = ctx.punch or {}
  local ok, err = sock:punch({
    nonce = nonce, key = ctx.intro.punch_key, candidates = ctx.candidates,
    timeout = math.max(1, math.floor(ctx:remaining() * 1000)),
    interval = pace.interval, max_interval = pace.max_interval,
  }, function(perr, ip, port, kind, rtt)
    fut:set(perr, ip, port, kind, rtt)
  end)
  if not ok then return nil, err end
  ctx:on_cancel(function() if not sock:is_closed() then sock:punch_cancel(nonce) end end)
  local perr, ip, port, kind, rtt = fut:wait()
  local who = ctx.remote_id
  if perr then
    trace(ctx, { event = "punch_failed", peer = who, reason = tostring(perr),
      probes_received = sock:stats().rx_punch })
    return nil, "punch failed: " .. tostring(perr)
  end
  trace(ctx, { event = "answered", peer = who, remote = addr.format(ip, port), kind = kind, rtt_ms = rtt })
  -- touch frames on this path carry a MAC under the peers' key (set before
  -- anything else creates the endpoint's touch state)
  if ctx.intro.touch_key then sock:touch_key(ip, port, ctx.intro.touch_key) end
  if rtt then sock:touch_seed(ip, port, math.max(1, rtt)) end   -- first RTO fits the path
  local remote = addr.format(ip, port)
  return setmetatable({
    socket = sock, ip = ip, port = port, remote = remote,
    path = (kind == "private") and "private" or "public",
    transport = "udp", rtt_ms = rtt,
    route = remote,        -- data/touch frames from there on the peer's socket are this session's
  }, Link)
end

return udp
