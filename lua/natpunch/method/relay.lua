--- The "relay" method: when no direct path exists (a symmetric NAT on
-- both sides), both peers allocate a relayed address on a TURN server
-- (RFC 8656; coturn in the lab) from their own registered UDP socket,
-- advertise it, and punch toward each other's relayed address.  Each side
-- binds a channel to the other's relayed address, so the socket's relay
-- engine carries the punch checks, touches and data as ChannelData; the
-- TURN server forwards them between the two allocations.  The session is
-- an ordinary UDP session with path "relay".
--
-- Needs: a TURN server, from natpunch.peer{ turn = "turn://USER:PASS@HOST:PORT" }
-- or handed out by the rendezvous (natpunch rendezvous --turn HOST:PORT
-- --turn-secret SECRET: REST-API credentials in the registration reply).
-- Advertises: addr = the relayed "ip:port".
--
-- The relay runs alongside the direct methods (`parallel`, natpunch.upgrade):
-- it is used as soon as it works, while they go on trying, and the
-- session moves to a direct path when one appears.
local core = require "natpunch.core"
local turn = require "natpunch.turn"
local addr = require "natpunch.addr"
local candidates = require "natpunch.candidates"
local udp = require "natpunch.method.udp"

local relay = { name = "relay", transport = "udp", parallel = true }

-- The relay's punch runs while the direct methods punch with the
-- introduction's nonce: its own nonce, which both sides derive alike.
local function relay_nonce(intro)
  local n = intro.punch_nonce or intro.nonce
  return core.crypto.hash("relay" .. n, intro.punch_key, 16):sub(1, 8)
end

-- The TURN configuration: the peer's own, else what the server handed out.
local function config(peer, reply)
  if peer.turn_conf then return peer.turn_conf end
  if reply and type(reply.turn) == "string" and type(reply.turn_user) == "string"
     and type(reply.turn_pass) == "string" and addr.parse(reply.turn) then
    return { server = reply.turn, username = reply.turn_user, password = reply.turn_pass }
  end
end

--- After registering: allocate once (true: there is a relayed address to advertise).
function relay.prepare(peer, reply)
  if peer.turn_client then return false end
  local conf = config(peer, reply)
  if not conf then return false end
  local c, err = turn.client{ udp = peer.udp, server = conf.server, username = conf.username,
    password = conf.password, secret = conf.secret, id = conf.secret and peer.id or nil,
    on_event = peer.on_event }
  if c then
    peer.turn_client = c   -- the peer passes it the STUN answers from now on
    local relayed, aerr = c:allocate()
    if relayed then
      peer.relayed = relayed
      return true
    end
    err = aerr
    peer.turn_client = nil
    c:close()
  end
  peer:_emit({ event = "relay_failed", server = conf.server, reason = tostring(err) })
  return false
end

function relay.advertise(peer)
  return peer.relayed and { addr = peer.relayed } or nil
end

function relay.run(ctx)
  local peer = ctx.peer
  local c = peer.turn_client
  if not (c and peer.relayed) then return nil, "no TURN allocation" end
  local theirs = ctx.info.addr
  if not theirs then return nil, "the other peer has no relayed address" end
  -- the other's relayed address is an address like any candidate: strict
  -- parsing and the same policy (no loopback unless allowed, ...)
  local ip, port = candidates.check(theirs, peer.policy)
  if not ip then return nil, "bad relayed address: " .. tostring(port) end
  local ch, err = c:bind(ip, port)
  if not ch then return nil, err end
  local intro = setmetatable({ punch_nonce = relay_nonce(ctx.intro) }, { __index = ctx.intro })
  local sub = setmetatable({ candidates = { { ip, port, "public" } }, intro = intro }, { __index = ctx })
  local link, perr = udp.run(sub)
  if not link then return nil, perr end
  link.path = "relay"
  return link
end

--- After an upgrade: forget the channel toward the other peer's relayed
-- address ip:port (the socket's route goes; the binding is no longer
-- refreshed and expires on the server).  The allocation stays: it is this
-- peer's advertised relayed address, for its other sessions and the next
-- introductions.
function relay.release(peer, ip, port)
  if peer.turn_client then return peer.turn_client:unbind(ip, port) end
  return false
end

function relay.close(peer)
  if peer.turn_client then
    peer.turn_client:close()
    peer.turn_client, peer.relayed = nil, nil
  end
end

return relay
