--- Turns a recorded `make bench` run (bench/run.lua --record FILE.json)
-- into docs/BENCH.md and its plots (hand-written SVG, no tools needed):
--
--   lua5.4 bench/report.lua FILE.json [OUTDIR]     (OUTDIR: docs)
--
-- `make bench-docs` runs both steps: one command regenerates the page.
local root = (arg[0]:match("^(.*)/bench/[^/]*$") or ".")
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
local json = require "natpunch.json"

local input, outdir = arg[1], arg[2] or (root .. "/docs")
if not input then
  io.stderr:write("usage: lua5.4 bench/report.lua FILE.json [OUTDIR]\n")
  os.exit(2)
end
local f = assert(io.open(input, "r"))
local raw = f:read("a")
local run = assert(json.decode(raw), "not a recorded run: " .. input)
f:close()
os.execute("mkdir -p '" .. outdir .. "/bench'")

local function esc(s)
  return (tostring(s):gsub("[&<>\"]", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;" }))
end

local function write(path, text)
  local out = assert(io.open(path, "w"))
  out:write(text)
  out:close()
end

--- Horizontal bar chart: bars = { {label, value, note}, ... }.
local function bar_chart(title, unit, bars, color)
  local w, left, row, top = 760, 230, 30, 46
  local h = top + #bars * row + 30
  local max = 0
  for _, b in ipairs(bars) do max = math.max(max, b[2] or 0) end
  if max <= 0 then max = 1 end
  local out = { ('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif"'
    .. ' font-size="13">'):format(w, h),
    ('<rect width="%d" height="%d" fill="white"/>'):format(w, h),
    ('<text x="10" y="22" font-size="15" font-weight="bold">%s</text>'):format(esc(title)),
    ('<text x="10" y="38" fill="#555">%s</text>'):format(esc(unit)) }
  local span = w - left - 150
  for i, b in ipairs(bars) do
    local y = top + (i - 1) * row
    local bw = math.max(1, (b[2] or 0) / max * span)
    out[#out + 1] = ('<text x="%d" y="%d" text-anchor="end">%s</text>'):format(left - 8, y + 18, esc(b[1]))
    out[#out + 1] = ('<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>'):format(left, y + 4, bw, row - 8,
      b.color or color or "#4878a8")
    out[#out + 1] = ('<text x="%.1f" y="%d">%s</text>'):format(left + bw + 6, y + 18, esc(b[3] or ""))
  end
  out[#out + 1] = "</svg>\n"
  return table.concat(out, "\n")
end

--- Histogram of values (ms) per series: series = { {name, {values}}, ... }.
local function histogram(title, series, edges)
  local w, h, left, bottom, top = 760, 300, 60, 50, 50
  local colors = { "#4878a8", "#e07b39", "#6aa84f", "#a64d79" }
  local nb = #edges - 1
  local counts, max = {}, 1
  for s, ser in ipairs(series) do
    counts[s] = {}
    for i = 1, nb do counts[s][i] = 0 end
    for _, v in ipairs(ser[2]) do
      for i = 1, nb do
        if v >= edges[i] and (v < edges[i + 1] or i == nb) then counts[s][i] = counts[s][i] + 1 break end
      end
    end
    for i = 1, nb do max = math.max(max, counts[s][i]) end
  end
  local out = { ('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif"'
    .. ' font-size="12">'):format(w, h), ('<rect width="%d" height="%d" fill="white"/>'):format(w, h),
    ('<text x="10" y="22" font-size="15" font-weight="bold">%s</text>'):format(esc(title)) }
  local pw, ph = w - left - 20, h - top - bottom
  local bw = pw / nb
  for i = 1, nb do
    local x = left + (i - 1) * bw
    for s = 1, #series do
      local c = counts[s][i]
      local bh = c / max * ph
      local sw = (bw - 4) / #series
      out[#out + 1] = ('<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>'):format(
        x + 2 + (s - 1) * sw, top + ph - bh, sw, bh, colors[(s - 1) % #colors + 1])
    end
    out[#out + 1] = ('<text x="%.1f" y="%d" text-anchor="middle">%s</text>'):format(x + bw / 2, top + ph + 16,
      esc(("%g-%g"):format(edges[i], edges[i + 1])))
  end
  out[#out + 1] = ('<text x="%d" y="%d" text-anchor="middle">setup time (ms)</text>'):format(left + pw // 2, h - 10)
  out[#out + 1] = ('<text x="12" y="%d">cases (max %d)</text>'):format(top - 8, max)
  for s, ser in ipairs(series) do
    out[#out + 1] = ('<rect x="%d" y="30" width="12" height="12" fill="%s"/><text x="%d" y="40">%s</text>'):format(
      w - 200 + (s - 1) * 90, colors[(s - 1) % #colors + 1], w - 184 + (s - 1) * 90, esc(ser[1]))
  end
  out[#out + 1] = "</svg>\n"
  return table.concat(out, "\n")
end

local md = {}
local function p(...) md[#md + 1] = table.concat({ ... }) end
local m, S = run.machine or {}, run.suites or {}
p("# Benchmarks: a recorded run")
p("")
p("Every figure is a ratio to a baseline measured in the same run (the absolute numbers depend on the machine")
p("and on what else runs on it). Regenerate this page and its plots with one command: `make bench-docs`")
p("(`bench/run.lua --record` then `bench/report.lua`). How each row is measured:")
p("[bench/README.md](../bench/README.md).")
p("")
p("- command: `", m.command or "?", "`")
p("- date: ", m.date or "?", "; machine: ", m.cpu or "?", ", ", tostring(m.cpus or "?"), " CPUs, Linux ",
  m.kernel or "?")
p("- other work was running on the machine at the same time (other helpers' sessions share its 2 cores), so")
p("  figures vary by several per cent between runs; the ratios are what to read.")
p("")

if S.stun then
  p("## STUN Binding: natpunch vs a raw C server")
  p("")
  p("| server | req/s | x raw | CPU us/req | x raw (CPU per request) |")
  p("| --- | ---: | ---: | ---: | ---: |")
  local bars = {}
  local base_cpu
  for _, r in ipairs(S.stun) do if r.name == "raw" then base_cpu = r.cpu_us end end
  for _, r in ipairs(S.stun) do
    p(("| %s | %.0f | %.2f | %s | %s |"):format(r.title, r.rps, r.ratio or 0,
      r.cpu_us and ("%.2f"):format(r.cpu_us) or "-",
      (r.cpu_us and base_cpu) and ("%.2f"):format(r.cpu_us / base_cpu) or "-"))
    bars[#bars + 1] = { r.title, r.rps, ("%.0f req/s (%.2fx)"):format(r.rps, r.ratio or 0),
      color = r.name == "raw" and "#888" or nil }
  end
  write(outdir .. "/bench/stun.svg", bar_chart("STUN Binding throughput per server", "answered requests per second, "
    .. "one core each, loopback", bars))
  p("")
  p("![STUN throughput per server](bench/stun.svg)")
  p("")
  p("Read `req/s` together with the CPU each server spent per answered request: the load generator shares")
  p("the machine with other work, and when it cannot keep a server busy (a server's core well below 100 %,")
  p("`make bench` prints CPU %) the req/s ratios show the load generator's luck more than the server's cost,")
  p("while CPU us/req does not depend on it (bench/README.md, \"The columns\").")
  p("")
  p("The Lua-hook row answers every STUN request in a Lua function (decode, answer, send from Lua) instead of in C:")
  p("the cost of running Lua on every packet. Goal: >= 0.6x raw.")
  p("")
end

if S.touch then
  local t = S.touch
  p("## Touch between two processes")
  p("")
  p("| | figure | baseline (raw C) | x base | goal |")
  p("| --- | ---: | ---: | ---: | --- |")
  p(("| bulk, 1200-byte touches, window 64 | %.0f msgs/s (%.0f Mbit/s) | %.0f msgs/s (%.0f Mbit/s) | %.2f | >= 0.7 |")
    :format(t.touch_bulk.msgs_per_s, t.touch_bulk.mbit_per_s, t.raw_bulk.msgs_per_s, t.raw_bulk.mbit_per_s,
      t.bulk_ratio))
  if t.touch_bulk_batch then
    p(("| the same, batch callbacks (`on_touch_batch`, `on_touch_done`) | %.0f msgs/s (%.0f Mbit/s) | %.0f msgs/s"
      .. " (%.0f Mbit/s) | %.2f | >= 0.7 |"):format(t.touch_bulk_batch.msgs_per_s, t.touch_bulk_batch.mbit_per_s,
      t.raw_bulk.msgs_per_s, t.raw_bulk.mbit_per_s, t.bulk_batch_ratio))
  end
  p(("| round trip, 32 bytes, one at a time (p50) | %.1f us | %.1f us | %.2f | <= 1.1 |"):format(t.touch_ping.p50_us,
    t.raw_ping.p50_us, t.rtt_ratio))
  if t.epoll_ping then
    p(("| raw C round trip with epoll (an event loop's wake-up, no natpunch) | %.1f us | %.1f us | %.2f | |")
      :format(t.epoll_ping.p50_us, t.raw_ping.p50_us, t.epoll_ratio))
    p(("| touch round trip against the raw one with epoll | %.1f us | %.1f us | %.2f | |"):format(t.touch_ping.p50_us,
      t.epoll_ping.p50_us, t.rtt_ratio_epoll))
  end
  if t.rtt_ratio_min then
    p("")
    p(("Round trip: %d interleaved runs of %d pings each; touch x raw per pair: min %.2f, median %.2f, max %.2f.")
      :format(t.rtt_pairs, t.rtt_pings, t.rtt_ratio_min, t.rtt_ratio_pair_median, t.rtt_ratio_max))
  end
  p("")
  write(outdir .. "/bench/touch.svg", bar_chart("Touch vs raw C UDP, two processes on loopback",
    "bulk: messages per second (1200 bytes, window 64)", {
      { "raw C blast-and-ack", t.raw_bulk.msgs_per_s, ("%.0f msgs/s"):format(t.raw_bulk.msgs_per_s), color = "#888" },
      { "natpunch touch", t.touch_bulk.msgs_per_s, ("%.0f msgs/s (%.2fx)"):format(t.touch_bulk.msgs_per_s,
        t.bulk_ratio) },
      t.touch_bulk_batch and { "touch, batch callbacks", t.touch_bulk_batch.msgs_per_s,
        ("%.0f msgs/s (%.2fx)"):format(t.touch_bulk_batch.msgs_per_s, t.bulk_batch_ratio) } or nil }))
  p("![touch throughput](bench/touch.svg)")
  p("")
  p("Both sides use the same window (64 unacknowledged 1200-byte messages) and the kernel's default socket")
  p("buffers; the baseline acknowledges every datagram (its acks leave in one `sendmmsg` per batch) and never")
  p("retransmits. Touch sends its data frames together (one `sendmmsg` per receive batch, `udp:touch` loop or")
  p("timer tick) and answers a whole receive batch with one ack that lists the ranges of ids delivered, so it")
  p("sends about one ack per 4-16 messages; what remains is the event loop and the Lua work per message (a")
  p("1200-byte string per delivery, a callback or a record per outcome).")
  p("")
  p("The round trip falls short of its goal. Of the gap, the part any epoll-based event loop pays shows in the")
  p("second raw row: the same raw ping-pong waiting in `epoll_wait` and then reading, as libuv does, instead of")
  p("sleeping in `recv` (the kernel's wake-up through epoll costs more than a blocked task's). The rest is")
  p("natpunch's own work per round trip, in user space: the touch frame and its ack (state machine, timer),")
  p("the Lua call of `touch()` with its callback on one side and the receive callback on the other, and")
  p("libuv's loop iteration. Each side makes three system calls per round trip (`sendmmsg`, `epoll_wait`, one")
  p("`recvmmsg`: natpunch's own receive path reads once per wake-up, np_udp_recv.c), as the epoll baseline")
  p("does.")
  p("")
end

if S.wire then
  p("## Touch over the lab wire: 5% loss, and congestion control on 2 Mbit/s")
  p("")
  p("Through the NAT lab's userspace wire (natpunch-wire, docs/LAB.md) between two namespaces, 1200-byte touches,")
  p("up to 256 unacknowledged (`bench/touch_wire.lua`). Baseline, same run, same wire: a raw one-way UDP blast of")
  p("the same datagrams offered at twice the link's rate (no acknowledgement, no retransmission), which shows what")
  p("the wire moves. Touch delivers every message exactly once (`delivered`: distinct messages the receiver saw).")
  p("")
  p("| link | raw UDP Mbit/s | touch Mbit/s | x raw | delivered once | wire queue drops (touch) | (raw blast) |"
    .. " most frames queued | cwnd min/mean/max |")
  p("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
  local bars = {}
  for _, r in ipairs(S.wire) do
    p(("| %s | %.2f | %.2f | %.2f | %d/%d | %.1f%% | %.0f%% | %d | %s/%.0f/%s |"):format(r.title, r.raw_mbit,
      r.touch_mbit, r.ratio, r.distinct or 0, r.count, 100 * r.qdrop_share, 100 * r.raw_qdrop_share,
      r.wire_qmax or 0, tostring(r.cwnd_min or "-"), r.cwnd_mean or 0, tostring(r.cwnd_max or "-")))
    bars[#bars + 1] = { (r.short or r.link) .. ": raw UDP", r.raw_mbit, ("%.2f Mbit/s"):format(r.raw_mbit),
      color = "#888" }
    bars[#bars + 1] = { (r.short or r.link) .. ": touch", r.touch_mbit,
      ("%.2f Mbit/s (%.2fx)"):format(r.touch_mbit, r.ratio) }
  end
  write(outdir .. "/bench/wire.svg", bar_chart("Touch vs raw UDP over natpunch-wire", "goodput, Mbit/s", bars))
  p("")
  p("![touch over the lab wire](bench/wire.svg)")
  p("")
  p("On the 2 Mbit/s link the queue holds 30 frames: a sender that kept its 256 messages in flight would lose")
  p("most of them there, as the raw blast does. Touch's congestion window (RFC 5681 style: slow start, halving on")
  p("loss) keeps the drops to the few that show it where the bottleneck is; spec/touch_wire_spec.lua asserts the")
  p("outcomes (all delivered once, wire drops below 10% of what touch offered, window below 256).")
  p("")
end

if S.registry then
  p("## Registry")
  p("")
  p("Costs per operation, each also as x its 1k figure and, in brackets, as x a plain Lua table by id filled and")
  p("read the same way at the same size in the same run (`bench/registry.lua`; the least of 3 runs per size).")
  p("")
  p("| peers | bytes/peer | put us (x 1k) [x table] | lookup us (x 1k) [x table] | plain table put / lookup x 1k |"
    .. " expire us (x 1k) | worst sweep batch |")
  p("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
  local bars = {}
  for _, r in ipairs(S.registry) do
    p(("| %d | %.0f | %.2f (%.2f) [%.2f] | %.3f (%.2f) [%.2f] | %.2f / %.2f | %.2f (%.2f) | %.1f ms |"):format(r.peers,
      r.bytes_per_peer, r.put_us, r.put_ratio, r.put_vs_plain or 0, r.lookup_us, r.lookup_ratio, r.lookup_vs_plain or 0,
      r.plain_put_ratio or 0, r.plain_lookup_ratio or 0, r.expire_us, r.expire_ratio, r.worst_sweep_ms))
    bars[#bars + 1] = { r.peers .. " peers", r.bytes_per_peer, ("%.0f B/peer"):format(r.bytes_per_peer) }
  end
  write(outdir .. "/bench/registry.svg", bar_chart("Registry memory per registered peer", "bytes (goal <= 512)", bars))
  p("")
  p("![registry bytes per peer](bench/registry.svg)")
  p("")
  p("A record is an array of 8 slots with named access (id, 32-byte public key, public address, candidates,")
  p("expiry, heap index, last introduction, NAT); the registry keeps one index (by id) and the expiry heap. From")
  p("1k to 100k peers the operations grow about as much as the plain table does: what grows is the memory")
  p("hierarchy (1k records stay in the caches, 100k do not), not the algorithm (O(1) lookups and registrations,")
  p("O(log n) heap steps).")
  p("")
end

if S.redis then
  local r = S.redis
  local per = {}
  for i, b in ipairs(r.process_bytes_per_peer or {}) do per[i] = ("%.0f"):format(b) end
  p("## Shared registry through Redis")
  p("")
  p(("%d rendezvous processes and one redis-server on loopback (`bench/redis_scale.lua`): %d registrations at %.0f/s;")
    :format(r.servers, r.registrations, r.registrations_per_s))
  p(("%d cross-server introductions (20 connecting at a time), %d delivered to the peer on the other server, latency")
    :format(r.introductions, r.introductions_delivered))
  p(("p50 %.2f ms, p99 %.2f ms; memory per peer: Redis %.0f B, each rendezvous process (RSS) %s B.")
    :format(r.intro_p50_ms or -1, r.intro_p99_ms or -1, r.redis_bytes_per_peer or -1, table.concat(per, ", ")))
  p(("%d registrations were refused or lost. The driver registers many ids from each of its sockets, all from")
    :format(r.registration_failures or 0))
  p("127.0.0.1, so the servers run with `--max-per-ip` and `--max-per-socket` raised to fit the load (the defaults")
  p("would refuse most of them, as a server should for one address).")
  p("")
end

if S.punch then
  p("## Punch setup time per method in the NAT lab (25 ms per link)")
  p("")
  p("`natpunch lab matrix --delay 25ms`: peers behind the lab's NATs, 25 ms one way on every link into the lab's")
  p("internet but the servers'. udp: the cone pairs (and sym -> full, double NAT); predict: symseq -> prc;")
  p("birthday: sym -> prc; relay: sym -> sym through coturn on s2. Setup time is what the connecting peer reports")
  p("(from its connect request to the connected path). The ideal, per case, from the RTTs ping measured in the")
  p("same case:")
  p("")
  p("- udp, predict: RTT to the rendezvous (the introduction) + RTT between the peers (one punch check there")
  p("  and back).")
  p("- birthday: the same + the median time of the search at the method's defaults (256 mappings among 64512")
  p("  ports, 100 probes a second: half of all searches need 174 probes or fewer, 1.74 s). No prober within")
  p("  those bounds beats that median; a single run's ratio varies widely, since the search is random.")
  p("- relay: RTT to the rendezvous + one RTT to the TURN server (the ChannelBind to the other's relayed address)")
  p("  + the RTT of the relayed path (a -> coturn -> b and back). coturn sits beside the rendezvous on the lab's")
  p("  undelayed internet, so its RTT is the RTT to the rendezvous, and the relayed path crosses the same two")
  p("  delayed links as the direct one, so its RTT is the peers' RTT: ideal = 2 x RTT server + RTT peers.")
  p("")
  p("Goal: median <= 1.2x the ideal.")
  p("")
  p("| method | pairs | runs | p50 setup | p90 | max | ideal (p50) | median x ideal | goal met |")
  p("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
  for _, r in ipairs(S.punch) do
    local probes = {}
    for _, c in ipairs(r.cases) do if c.probes then probes[#probes + 1] = c.probes end end
    table.sort(probes)
    local pairs_ = table.concat(r.pairs or {}, ", ")
    if #(r.pairs or {}) > 2 then pairs_ = #r.pairs .. " pairs" end
    p(("| %s | %s | %d | %.0f ms | %.0f ms | %.0f ms | %s | %s | %s |"):format(r.method, pairs_, #r.cases,
      r.median_setup_ms or -1, r.p90_setup_ms or -1, r.max_setup_ms or -1,
      r.median_ideal_ms and ("%.0f ms"):format(r.median_ideal_ms) or "-",
      r.median_ratio and ("%.2f"):format(r.median_ratio) or "-",
      (r.median_ratio and (r.median_ratio <= 1.2 and "yes" or "no") or "-")
      .. (probes[1] and (" (median %d probes)"):format(probes[(#probes + 1) // 2]) or "")))
  end
  if (S.punch_failures or 0) > 0 then
    p("")
    p(("%d runs did not connect within the matrix's timeout; they are left out of the figures."):format(
      S.punch_failures))
  end
  p("")
  for _, r in ipairs(S.punch) do
    local values, lo, hi = {}, math.huge, 0
    for _, c in ipairs(r.cases) do
      values[#values + 1] = c.setup_ms
      lo, hi = math.min(lo, c.setup_ms), math.max(hi, c.setup_ms)
    end
    -- 8 bins over the method's own range (rounded out to 10 ms)
    lo, hi = math.floor(lo / 10) * 10, math.ceil((hi + 1) / 10) * 10
    local step = math.max(10, math.ceil((hi - lo) / 8 / 10) * 10)
    local edges = {}
    for i = 0, 8 do edges[#edges + 1] = lo + i * step end
    local file = "setup-" .. r.method:gsub("[^%w]", "") .. ".svg"
    write(outdir .. "/bench/" .. file, histogram(("Setup time, %s (%d runs; ideal p50 %s)"):format(r.method, #values,
      r.median_ideal_ms and ("%.0f ms"):format(r.median_ideal_ms) or "-"), { { r.method, values } }, edges))
    p(("![setup-time histogram, %s](bench/%s)"):format(r.method, file))
    p("")
  end
end

write(outdir .. "/BENCH.md", table.concat(md, "\n") .. "\n")
write(outdir .. "/bench/run.json", raw)             -- the recorded run the page was made from
print("wrote " .. outdir .. "/BENCH.md and " .. outdir .. "/bench/*.svg")
