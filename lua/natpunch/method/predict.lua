--- The "predict" method: port prediction for a symmetric NAT whose new
-- mappings take sequential ports (delta d).  UDP punching fails between such
-- a NAT and a port-restricted one: the hard side's packets to the easy side
-- leave from a new mapping (not the port the rendezvous saw), and the easy
-- side's filter drops them because it never sent to that port.
--
--   * After registering, the hard side measures its allocation against the
--     rendezvous (natpunch.discover.probe_allocation: 4 fresh sockets, one
--     RTT) and, when it is sequential, advertises `delta` and `last` (the
--     last mapped port it saw).  Nothing is advertised otherwise, and with
--     nothing to predict both sides punch their usual candidates, exactly
--     as udp does (so the chosen methods can put predict in udp's place).
--   * At connect time the hard side punches toward the easy side's
--     candidates from its registered socket, as the udp method does: its
--     mapping toward the easy side's public endpoint is one of the next
--     ports, last + k*d for small k.
--   * The easy side punches toward its usual candidates plus the predicted
--     ports last + d, last + 2d, ... in windows of `window` ports, one
--     window per round of `round_s` seconds, up to `rounds` rounds: sending
--     to the right port opens its own filter for it, and the punch checks
--     meet.  Both sides learn the pair the normal way (punch state machine).
--
-- A sequential NAT with nothing else allocating connects in the first round.
-- Defaults: window 14 (the punch engine takes 16 candidates), 2 s rounds,
-- 4 rounds (56 ports, at the udp engine's pacing: a few packets a second
-- per port, nothing like a spray).
local udp = require "natpunch.method.udp"
local addr = require "natpunch.addr"

local predict = { name = "predict", transport = "udp", budget = 8,
  window = 14, round_s = 2, rounds = 4 }

local MAX_DELTA = 16

-- The peer's allocation toward its rendezvous, measured once per peer
-- (shared with the birthday method: peer.predict_alloc); true (re-register
-- now) when it is sequential, so that delta and last reach the server.
function predict.prepare(peer)
  if peer.predict_done or not peer.server_ip then return false end
  peer.predict_done = true
  if peer.predict_alloc == nil then
    local discover = require "natpunch.discover"
    local a = discover.probe_allocation{ server = addr.format(peer.server_ip, peer.server_port) }
    peer.predict_alloc = a or false
  end
  return predict.advertise(peer) ~= nil
end

function predict.advertise(peer)
  local a = peer.predict_alloc
  if a and a.pattern == "sequential" and #a.ports > 0 then
    return { delta = tostring(a.delta), last = tostring(a.ports[#a.ports]) }
  end
end

-- The other side's advertised prediction: delta, last (numbers) or nil.
local function theirs(info)
  local d, last = tonumber(info.delta), tonumber(info.last)
  if not (d and last) or d ~= math.floor(d) or last ~= math.floor(last) then return nil end
  if d == 0 or math.abs(d) > MAX_DELTA or last < 1 or last > 65535 then return nil end
  return d, last
end

-- The candidates of one round: the usual ones, then predicted ports.
function predict.candidates(cands, d, last, round, window)
  local out, seen, pub = {}, {}, nil
  for _, c in ipairs(cands) do
    out[#out + 1] = c
    seen[c[1] .. ":" .. c[2]] = true
    if c[3] == "public" then pub = c[1] end
  end
  if not pub then return out, 0 end
  local n = 0
  local room = math.max(1, math.min(window, 16 - #out))
  for i = (round - 1) * room + 1, round * room do
    local p = last + i * d
    if p >= 1 and p <= 65535 and not seen[pub .. ":" .. p] then
      out[#out + 1] = { pub, p, "public" }
      n = n + 1
    end
  end
  return out, n
end

-- A punch session of this introduction that an earlier method or round
-- left (a failed session keeps its nonce a moment): forget it first.
local function punch(ctx)
  local nonce = ctx.intro.punch_nonce or ctx.nonce
  if not ctx.peer.udp:is_closed() then ctx.peer.udp:punch_cancel(nonce) end
  return udp.run(ctx)
end

function predict.run(ctx)
  local d, last = theirs(ctx.info)
  if not d then
    -- we are the hard side (or nothing is known to predict): punch toward
    -- their usual candidates, as udp does.  predict stands in for udp when
    -- the methods are chosen from the introduction (natpunch.method.choose)
    return punch(ctx)
  end
  local reason = "no predicted port answered"
  local probed = 0
  for round = 1, predict.rounds do
    if ctx:remaining() <= 0 then break end
    local cands, n = predict.candidates(ctx.candidates, d, last, round, predict.window)
    if n == 0 then
      if round == 1 then return punch(ctx) end   -- no port to predict: udp's candidates
      break
    end
    probed = probed + n
    local last_round = round == predict.rounds
    local sub = setmetatable({ candidates = cands,
      deadline = last_round and ctx.deadline or math.min(ctx.deadline, require("natpunch.core").now()
        + predict.round_s * 1000) }, { __index = ctx })
    local link, err = punch(sub)
    if link then
      link.predicted = probed
      return link
    end
    reason = err
  end
  return nil, reason .. " (" .. probed .. " predicted ports)"
end

return predict
