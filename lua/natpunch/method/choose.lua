--- natpunch.method.choose: which traversal methods two introduced peers
-- try, from the NAT behaviour the introduction carries for both of them.
--
-- A peer with the default methods (no `methods` option) measures the port
-- allocation of its NAT once, after its first registration (the predict
-- method's probe, natpunch.discover.probe_allocation: four fresh sockets
-- toward the rendezvous, one after the other) and registers again with it
-- as `alloc` ("preserving", "sequential:D" or "random").  The rendezvous
-- records it (and `nat`, the mapping/filtering of peer{ discover = true })
-- and puts both peers' values into each introduction: the other's as
-- `alloc`/`nat`, the receiver's own as `your_alloc`/`your_nat`.  Both
-- sides therefore decide from the same two values and try the same list:
--
--   udp        always first (cone pairs, and a symmetric NAT against a
--              cone that lets the new port in), except right before
--              predict, and right before birthday for a pair that birthday
--              is made for: predict's first round punches udp's candidates
--              too (plus the predicted ports), birthday punches from both
--              registered sockets alongside its probes, and two methods
--              that punch the same candidates one after the other would
--              meet across the switch (one side still in udp, the other
--              already in the next method) and name different winners;
--   predict    when a side is symmetric with sequential ports and neither
--              is random;
--   birthday   when exactly one side is symmetric with random ports and
--              the other is not symmetric (it then connects the pairs udp
--              can, as udp: symmetric against a full or restricted cone);
--   relay      when a TURN server is known (peer.lua appends it).
--
-- A side counts as symmetric only when its allocation is sequential or
-- random and discovery (when it ran) did not find endpoint-independent
-- mapping.  When a side's values are unknown (an older peer or server, an
-- introduction from another server over Redis, a probe nobody answered),
-- predict and birthday stay in the list and decide for themselves.  An
-- explicit methods list goes through the same filter: it only drops
-- methods that would give up at once anyway.
local choose = {}

--- The default methods of a peer (relay is added when a TURN server is known).
choose.DEFAULT = { "udp", "predict", "birthday" }

local MAX_DELTA = 16

--- udp's budget (s) when birthday follows it (an explicit methods list,
-- or a side unknown): long enough for a
-- symmetric NAT against a cone that lets the new port in, short enough
-- that birthday gets its time (its median is about 1.6 s on its own).  udp
-- connects those pairs in about 2 RTTs between the peers (155-207 ms at
-- 100 ms in the lab; 606 ms at 400 ms with 5 % loss), and two peers behind
-- NATs are about two server round trips apart, so the budget is
-- UDP_HARD_RTTS server round trips (the introducing server's, measured at
-- registration), at least UDP_BEFORE_HARD_S and at most
-- UDP_BEFORE_HARD_MAX_S.  The bounds matter: when one side's udp gives up
-- while the other's has just succeeded, the two name different paths.
-- Otherwise udp keeps its own budget (5 s, before relay) or the whole
-- timeout.
choose.UDP_BEFORE_HARD_S = 0.6
choose.UDP_BEFORE_HARD_MAX_S = 1.5
choose.UDP_HARD_RTTS = 8

--- A wait (s) of `rtts` round trips of rtt_ms, within lo..hi (rtt_ms
-- nil: unknown, hi).
function choose.rtts(rtt_ms, rtts, lo, hi)
  if type(rtt_ms) ~= "number" then return hi end
  return math.max(lo, math.min(hi, rtts * rtt_ms / 1000))
end

--- udp's budget (s) before birthday for a round trip of rtt_ms to the
-- server (nil: unknown, the upper bound).
function choose.udp_before_hard(rtt_ms)
  return choose.rtts(rtt_ms, choose.UDP_HARD_RTTS, choose.UDP_BEFORE_HARD_S, choose.UDP_BEFORE_HARD_MAX_S)
end

--- The `alloc` code of a natpunch.discover allocation result, or nil
-- when fewer than two probes were answered.
function choose.alloc_code(a)
  if type(a) ~= "table" or type(a.ports) ~= "table" or #a.ports < 2 then return nil end
  if a.pattern == "sequential" then return "sequential:" .. math.tointeger(a.delta) end
  if a.pattern == "preserving" or a.pattern == "random" then return a.pattern end
  return nil
end

--- { pattern =, delta = } from an `alloc` code, or nil when it is not one.
function choose.parse_alloc(code)
  if type(code) ~= "string" or #code > 16 then return nil end
  if code == "preserving" or code == "random" then return { pattern = code } end
  local d = code:match("^sequential:(%-?%d%d?)$")
  d = tonumber(d)
  if d and d ~= 0 and math.abs(d) <= MAX_DELTA then return { pattern = "sequential", delta = d } end
  return nil
end

--- One side's class: "easy" (not symmetric), "sequential", "random", or
-- nil (unknown), from its alloc and nat codes.
function choose.side(alloc, nat)
  local m = type(nat) == "string" and nat:match("^(%a+)/%a+$")
  if m == "EI" or m == "none" then return "easy" end
  local a = choose.parse_alloc(alloc)
  if not a then return nil end
  if a.pattern == "preserving" then return "easy" end
  return a.pattern
end

--- The methods of `order` that apply to this introduction (a new list,
-- order kept), and budgets { [name] = seconds } for natpunch.method.try.
-- intro: alloc, nat (the other side), your_alloc, your_nat (this side),
-- as the rendezvous sent them; rtt_ms: the round trip to the server that
-- sent it (choose.udp_before_hard).
function choose.filter(order, intro, rtt_ms)
  local mine = choose.side(intro.your_alloc, intro.your_nat)
  local theirs = choose.side(intro.alloc, intro.nat)
  local known = mine ~= nil and theirs ~= nil
  local seq = mine == "sequential" or theirs == "sequential"
  local rnd = (mine == "random" and 1 or 0) + (theirs == "random" and 1 or 0)
  local easy = mine == "easy" or theirs == "easy"
  local out = {}
  for _, name in ipairs(order) do
    local keep = true
    if name == "predict" then keep = not known or (seq and rnd == 0)
    elseif name == "birthday" then keep = not known or (rnd == 1 and easy) end
    if keep then out[#out + 1] = name end
  end
  -- udp right before predict, or before birthday for a pair it is made
  -- for: those do it too (above)
  local bpair = known and rnd == 1 and easy
  for i = #out - 1, 1, -1 do
    if out[i] == "udp" and (out[i + 1] == "predict" or (bpair and out[i + 1] == "birthday")) then
      table.remove(out, i)
    end
  end
  local budgets = {}
  for i, name in ipairs(out) do
    local nxt = out[i + 1]
    if name == "udp" and nxt == "birthday" then budgets.udp = choose.udp_before_hard(rtt_ms) end
  end
  return out, budgets
end

return choose
