--- The "tcp" method: a direct TCP connection by simultaneous open, through
-- the rendezvous's STUNT service (natpunch.stunt, natpunch.stunt_server).
--
-- advertise: the first time (in register, a task) the peer also registers
-- with the STUNT service on the same address and port: a main TCP
-- connection from a port bound with SO_REUSEADDR + SO_REUSEPORT, and probes
-- that tell the server how the NAT allocates TCP ports.  What it learnt
-- travels to every peer introduced to us as opaque fields: the TCP public
-- endpoint, the predicted one, the private ones, and our RTT to the server.
--
-- run: both sides got the rendezvous's introduction at the same time; each
-- waits half the difference of the two RTTs to the server (so both start
-- together, as the STUNT server's own start time does), tells the STUNT
-- service about the attempt (its records), and punches from the main
-- connection's port toward the other's endpoints (core.tcp_punch).  The
-- connecting side selects a connection with the introduction's nonce;
-- messages are framed over it (natpunch.tcp_session).  When TCP is not the
-- last method, it uses an equal share of the time left and reports
-- {"event":"transport_failed","transport":"tcp"} if it fails.
local sched = require "natpunch.sched"
local core = require "natpunch.core"
local addr = require "natpunch.addr"

local tcp = { name = "tcp", transport = "tcp" }

--- The methods of a `transport` option: "udp", "tcp", "auto" (= tcp,udp,
-- seed 002) or an order such as "udp,tcp"; raises on a bad value.
function tcp.methods_for(spec, level)
  if spec == nil then return nil end
  if type(spec) == "table" then spec = table.concat(spec, ",") end
  if type(spec) ~= "string" then error("peer: transport must be a string", level + 1) end
  if spec == "auto" then spec = "tcp,udp" end
  local out, seen = {}, {}
  for t in spec:gmatch("[^,%s]+") do
    if t ~= "udp" and t ~= "tcp" then
      error("peer: unknown transport '" .. t .. "' (udp, tcp, auto or a list such as tcp,udp)", level + 1)
    end
    if not seen[t] then
      seen[t] = true
      out[#out + 1] = t
    end
  end
  if #out == 0 then error("peer: transport is empty", level + 1) end
  return out
end

local Link = {}
Link.__index = Link

function Link:send(data)
  return self.session:send(data)
end

function Link:touch(data, cb)
  local id
  id = self.session:touch(data, function(err, rtt) cb(err, id, rtt) end)
  return id
end

function Link:close()
  self.session:close()
end

local function register(peer)
  local server = peer.server or peer.servers[peer.server_index]
  local c, err = require("natpunch.stunt").init{
    server = server, id = peer.id, connect_timeout = peer.connect_timeout,
    register_timeout = peer.register_timeout,
    -- a peer's events are its own; only lost servers are worth saying
    on_event = function(ev) if ev.event == "server_lost" then peer:_emit(ev) end end,
    -- XSTUNT clients connecting to us directly are not peer sessions
    on_stream = function(s) s:close() end,
  }
  if not c then
    peer.stunt_error = err
    peer:_emit({ event = "transport_failed", transport = "tcp", reason = err })
    return
  end
  peer.stunt = c
end

function tcp.advertise(peer)
  if not peer.stunt and not peer.stunt_error and not peer.closed then register(peer) end
  local c = peer.stunt
  if not c then return {} end
  return { public = c.public, predicted = c.predicted ~= c.public and c.predicted or nil,
    private = table.concat(c:_private_candidates(), ","), rtt = math.floor(c.rtt_ms or 0) }
end

-- Is tcp the last method both sides will try?
local function is_last(ctx)
  local order = require("natpunch.method").order(ctx.peer.methods, ctx.intro.methods, ctx.role)
  return order[#order] == "tcp"
end

function tcp.run(ctx)
  local peer, c = ctx.peer, ctx.peer.stunt
  local last = is_last(ctx)
  local started = core.now()
  local function fail(reason)
    if not last then
      peer:_emit({ event = "transport_failed", peer = ctx.remote_id, transport = "tcp", reason = reason })
    end
    return nil, reason
  end
  if not c or not c.registered then
    return fail("not registered with the STUNT service: " .. tostring(peer.stunt_error or "connection lost"))
  end
  local info = ctx.info
  if not info.public then return fail("the other side has no TCP endpoint (no STUNT registration)") end
  local left = ctx:remaining()
  local budget = last and left or left / 2
  local deadline = started + math.max(0.1, budget - math.min(0.3, budget / 10)) * 1000
  local intro = { peer = ctx.remote_id, nonce = ctx.nonce, public = info.public, predicted = info.predicted,
    private = info.private,
    wait_ms = math.max(0, ((tonumber(info.rtt) or 0) - (c.rtt_ms or 0)) / 2) }
  c.intros[ctx.nonce] = true
  c:_send({ t = "attempt", nonce = ctx.nonce, with = ctx.remote_id })
  ctx:on_cancel(function()
    local done = c.accepting[ctx.nonce]
    if done then done:set(nil, "cancelled") end
  end)
  local s, err
  if ctx.role == "connect" then
    s, err = c:_connect_punch(intro, started, deadline, "framed")
    if s then c:_report(intro, true, nil, s.path) else c:_report(intro, false, err) end
  else
    local wait = math.min(intro.wait_ms, 2000)
    intro.wait_ms = 0
    if wait > 0 then sched.sleep(wait / 1000) end
    s, err = c:_accept_punch(intro, started, deadline)
    if s and s.mode ~= "framed" then
      s:close()
      s, err = nil, "the other side sends a raw stream"
    end
  end
  if not s then return fail(err) end
  local link = setmetatable({ ip = s.ip, port = s.port, remote = s.remote or addr.format(s.ip, s.port),
    path = s.path, transport = "tcp", stream = s }, Link)
  link.session = require("natpunch.tcp_session").new(s, {
    on_message = function(_, data, kind) ctx:deliver(data, kind) end,
    touch_timeout = peer.touch_timeout,
  })
  return link
end

function tcp.close(peer)
  if peer.stunt then
    peer.stunt:close()
    peer.stunt = nil
  end
end

return tcp
