-- natpunch.lab.matrix.kinds.fallback: a direct session moves to the TURN
-- relay when its path dies (natpunch.fallback) in lab.standard{ a = "prc",
-- b = "prc" } with coturn on s2 and a rendezvous handing out its
-- credentials on s1.  alice (upgrade.stream "connect", in a) connects to
-- bob ("wait", in b): directly (udp, path "public"), both holding an
-- allocation; while the session carries a stream of numbered touches the
-- lab cuts the direct path (fallback.cut: an nftables table in bob's NAT
-- drops everything to and from alice's NAT; the rendezvous and coturn
-- stay reachable), alice finds the silence and moves to the relay, bob
-- follows her notice.  Setup time: from the cut to alice's path_changed.
-- Every touch must be acked once at alice and delivered once at bob, the
-- stream must end on path "relay".  spec/fallback_lab_spec.lua runs the
-- same case (fallback.once, fallback.problems) on its own labs, and the
-- upgraded one: sym x sym relayed, bob's NAT opened (a full cone), the
-- session upgraded to the direct path, then cut (once's opts.open).
local plan = require "natpunch.lab.plan"
local util = require "natpunch.lab.matrix.util"
local upgrade = require "natpunch.lab.matrix.kinds.upgrade"

local fallback = {}

fallback.RV, fallback.TURN_IP, fallback.SECRET = "203.0.113.2:3478", "198.51.100.2", "lab-fallback-secret"
-- the stream: N touches GAP_MS apart; the lab cuts after AFTER are
-- resolved; bob takes touches for WAIT s; CONNECT_TIMEOUT for both
fallback.N, fallback.GAP_MS, fallback.AFTER, fallback.WAIT, fallback.CONNECT_TIMEOUT = 400, 15, 150, 25, 10
fallback.TABLE = "fbcut"          -- the cut's nftables table in bob's NAT

--- The lab: opts.prefix, opts.link (impairment of each NAT's WAN link),
-- opts.a and opts.b (the NATs' types, default "prc").
function fallback.describe(opts)
  return plan.standard{ a = opts.a or "prc", b = opts.b or "prc", prefix = opts.prefix, link = opts.link }
end

function fallback.up(u)
  util.start_relay_servers(u, fallback.RV, fallback.TURN_IP, fallback.SECRET, "coturn-fallback")
end

fallback.down = util.stop_procs

--- Cut every packet between NAT `nat` and address `other` (both ways), in
-- one table of nat's namespace (before conntrack); raises when nft fails.
function fallback.cut(t, nat, other)
  local T = fallback.TABLE
  for _, cmd in ipairs({
    { "nft", "add", "table", "ip", T },
    { "nft", "add", "chain", "ip", T, "pre", "{ type filter hook prerouting priority -400 ; }" },
    { "nft", "add", "rule", "ip", T, "pre", "ip", "saddr", other, "drop" },
    { "nft", "add", "rule", "ip", T, "pre", "ip", "daddr", other, "drop" },
  }) do
    local out, code = t:exec(nat, cmd)
    if code ~= 0 then error("matrix: fallback: " .. table.concat(cmd, " ") .. ": " .. out, 0) end
  end
end

--- Take the cut of NAT `nat` away (for the next run in the same lab).
function fallback.heal(t, nat)
  t:exec(nat, { "nft", "delete", "table", "ip", fallback.TABLE })
end

--- One fallback in the running lab u.t (u.up done, u.seq: the run's
-- number, for the peers' ids).  opts.open = { nat, type, back }: the
-- session must come up relayed; after AFTER touches NAT `nat` becomes a
-- `type` (t:set_nat_type), the session must upgrade (alice's
-- path_changed), and the cut follows; `back` is the type restored after
-- the run.  opts.n: touches (default N), opts.connect_timeout.  Returns a
-- record: ev and bev (alice's and bob's first event of each name), moves
-- and bmoves (their path_changed events, in order), n, opened, cut_at
-- (ms of core.hrtime, the peers' clock), logs (connector, acceptor),
-- reason (set when a step did not come).  The cut is taken away before
-- it returns.
function fallback.once(u, opts)
  opts = opts or {}
  local t, seq = u.t, u.seq or 1
  local core = require "natpunch.core"
  local n, ct = opts.n or fallback.N, opts.connect_timeout or fallback.CONNECT_TIMEOUT
  local r = { ev = {}, bev = {}, moves = {}, bmoves = {}, n = n, opened = opts.open ~= nil }
  local bob_id, alice_id = "bob" .. seq, "alice" .. seq
  local bob = t:spawn("b", upgrade.stream_argv({ "wait", bob_id, fallback.RV, fallback.WAIT, ct }))
  local alice, cut
  local ok, err = pcall(function()
    if not bob:expect('"event":"relay_allocated"', 15) then r.reason = "bob got no relay" return end
    alice = t:spawn("a", upgrade.stream_argv({ "connect", alice_id, fallback.RV, bob_id, n,
      fallback.GAP_MS, ct }))
    if not alice:expect('"event":"connected"', 20) then r.reason = "alice did not connect" return end
    if not alice:expect('"resolved":' .. fallback.AFTER .. '[,}]', 30) then
      r.reason = "the stream did not start"
      return
    end
    if opts.open then
      t:set_nat_type(opts.open.nat, opts.open.type)
      if not alice:expect('"event":"path_changed"', 15) then r.reason = "no upgrade" return end
      -- both upgraded before the cut, however slow the machine (the checks want it)
      if not bob:expect('"event":"path_changed"', 15) then r.reason = "bob did not upgrade" return end
    end
    r.cut_at = core.hrtime() // 1000000
    cut = true
    fallback.cut(t, "nb", t:public("na"))
    if not alice:expect('"event":"sent"', 60) then r.reason = "the stream did not end" end
    if not bob:expect('"event":"received"', fallback.WAIT + 20) then
      r.reason = r.reason or "bob did not report what he received"
    end
  end)
  r.ev = util.first_events(alice and alice:output() or "")
  r.bev = util.first_events(bob:output())
  for who, text in pairs({ moves = alice and alice:output() or "", bmoves = bob:output() }) do
    for _, ev in ipairs(util.decode_lines(text)) do
      if ev.event == "path_changed" then table.insert(r[who], ev) end
    end
  end
  r.logs = { connector = alice and alice:output() or "", acceptor = bob:output() }
  if alice then alice:stop() end
  bob:stop()
  if cut then fallback.heal(t, "nb") end
  if opts.open then t:set_nat_type(opts.open.nat, opts.open.back) end
  if not ok then error(err, 0) end
  return r
end

--- What a record of fallback.once lacks, as a list of sentences (empty:
-- the session connected directly, both sides moved to the relay after
-- the cut, alice for the silence and bob for her notice, every touch
-- acked once and delivered once, the session then through the relay).
-- A record of opts.open: the session connected relayed and both sides
-- upgraded before the cut.  Without it a session that came up relayed
-- (the relay won the race) and was upgraded before the cut counts as
-- direct too (r.upgraded says so), on either side.
function fallback.problems(r, t)
  local p = {}
  local function want(cond, text) if not cond then p[#p + 1] = text end end
  local ev, bev = r.ev, r.bev
  if r.reason then p[#p + 1] = r.reason end
  local c = ev.connected or {}
  -- the upgrades before the cut, and the fallbacks after it
  local function split(moves)
    local up, fb = nil, nil
    for _, m in ipairs(moves) do
      if m.from == "relay" and not up and not fb then up = m
      elseif m.path == "relay" and not fb then fb = m
      else want(false, ("another path_changed, from %s to %s"):format(tostring(m.from), tostring(m.path))) end
    end
    return up, fb
  end
  local up, pc = split(r.moves)
  local bup, bpc = split(r.bmoves)
  want(ev.relay_allocated and bev.relay_allocated, "a peer had no relayed address")
  if r.opened or (c.path == "relay" and up) then
    r.upgraded = true
    want(c.path == "relay" and c.method == "relay",
      ("first connected via %s, path %s; expected relay"):format(tostring(c.method), tostring(c.path)))
    -- (each side has its own race: bob's udp may have won where alice's
    -- relay did; in an opened lab no side can)
    local bc = bev.connected or {}
    want(up, "alice did not upgrade before the cut")
    want(bup or (not r.opened and bc.path == "public" and bc.method == "udp"),
      "bob neither connected directly nor upgraded before the cut")
    want(not up or (r.cut_at and up.hr <= r.cut_at and up.path == "public"),
      "alice's upgrade: " .. (up and (tostring(up.path) .. " at " .. tostring(up.hr)) or "none"))
    want(not bup or (r.cut_at and bup.hr <= r.cut_at), "bob's upgrade came after the cut")
  else
    want(c.path == "public" and c.method == "udp",
      ("first connected via %s, path %s; expected udp, public"):format(tostring(c.method), tostring(c.path)))
  end
  want(ev.fallback_failed == nil and bev.fallback_failed == nil, "fallback_failed: "
    .. tostring((ev.fallback_failed or bev.fallback_failed or {}).reason))
  if not pc then
    p[#p + 1] = "alice did not fall back"
  else
    want(pc.from == "public" and pc.path == "relay" and pc.method == "relay",
      ("alice's path_changed from %s to %s via %s"):format(tostring(pc.from), tostring(pc.path),
        tostring(pc.method)))
    want(tostring(pc.relayed):find(fallback.TURN_IP, 1, true), "alice's relayed " .. tostring(pc.relayed))
    -- (the remote the session keeps: bob's direct endpoint, or after an
    -- upgrade the relayed address it was keyed by all along)
    want(tostring(pc.remote):find(r.upgraded and fallback.TURN_IP or t:public("nb"), 1, true),
      "alice's remote " .. tostring(pc.remote))
    want(tostring(pc.reason):find("nothing from the direct path", 1, true), "alice's reason " .. tostring(pc.reason))
    want(r.cut_at and pc.hr >= r.cut_at, "alice's path changed before the cut")
  end
  if not bpc then
    p[#p + 1] = "bob did not fall back"
  else
    want(bpc.from == "public" and bpc.path == "relay", ("bob's path_changed from %s to %s")
      :format(tostring(bpc.from), tostring(bpc.path)))
    want(bpc.reason == "the other peer moved to the relay", "bob's reason " .. tostring(bpc.reason))
    want(r.cut_at and bpc.hr >= r.cut_at, "bob's path changed before the cut")
  end
  local sent, got = ev.sent, bev.received
  if not (sent and got) then
    p[#p + 1] = "no stream's end: " .. (sent and "" or "alice's sent ") .. (got and "" or "bob's received")
    return p
  end
  want(sent.path == "relay", "the stream ended on path " .. tostring(sent.path))
  want(#sent.failed == 0, "touches failed: " .. table.concat(sent.failed, "; "))
  local acked, delivered = #sent.acks == r.n, #got.counts == r.n
  for i = 1, r.n do
    acked = acked and sent.acks[i] == 1
    delivered = delivered and got.counts[i] == 1
  end
  want(acked, "not every touch was acked exactly once")
  want(delivered, "not every touch was delivered exactly once")
  -- the touch layer delivered each once (no replayed ciphertext reached
  -- the session's window), and no notice reached it as a message
  want(got.counters.bad_data == 0, got.counters.bad_data .. " bad data frames at bob")
  want(got.counters.touch_delivered == r.n, got.counters.touch_delivered .. " touches delivered at bob")
  -- after the switch the path engine carried the session through the relay
  want(pc == nil or sent.counters.relay_out > pc.counters.relay_out, "alice relayed nothing after the switch")
  want(sent.counters.path_out > 0 and got.counters.path_in > 0, "the path engine carried nothing")
  return p
end

--- The figures of a record as one line of text (for a spec's stderr).
function fallback.figures(r)
  local ev, bev = r.ev, r.bev
  local c = ev.sent.counters
  return ("%scut at touch %d, path_changed %d ms later (alice), %d ms (bob); %d touches once each; "
    .. "alice: %d retransmits, %d relayed datagrams; bob: %d duplicates dropped, %d unsolicited")
    :format(r.upgraded and "relayed, upgraded, " or "", fallback.AFTER, r.moves[#r.moves].hr - r.cut_at,
      r.bmoves[#r.bmoves].hr - r.cut_at, r.n,
      c.touch_retransmits, c.relay_out, bev.received.counters.touch_duplicates,
      bev.received.counters.touch_unsolicited)
end

function fallback.run(u)
  local r = fallback.once(u)
  local res = { problems = fallback.problems(r, u.t) }
  local pc = r.moves[#r.moves]
  if pc and pc.path == "relay" then
    res.connected, res.path, res.method = true, pc.path, pc.method
    res.setup_ms = r.cut_at and pc.hr - r.cut_at
    res.upgraded = r.upgraded
  else
    res.reason = r.reason or "no path_changed"
  end
  if res.reason or #res.problems > 0 then res.logs = r.logs end
  return res
end

return fallback
