-- natpunch.lab.matrix.report: results of the matrix over repeated runs,
-- summed up per case (medians of setup time, ratio to the RTTs).
local report = {}

function report.median(list)
  local t = {}
  for i, v in ipairs(list) do t[i] = v end
  if #t == 0 then return nil end
  table.sort(t)
  local m = (#t + 1) // 2
  if #t % 2 == 1 then return t[m] end
  return (t[m] + t[m + 1]) / 2
end
local median = report.median

-- Per case over repeated runs: { case, pair, runs, connected, passed,
-- setup_ms (median), ratio (median), rtt_server_ms, rtt_peer_ms }.
function report.summarize(results)
  local by, order = {}, {}
  for _, r in ipairs(results) do
    local s = by[r.case]
    if not s then
      s = { case = r.case, pair = r.pair, title = r.title, expect = r.expect, runs = 0, connected = 0,
        passed = 0, setups = {}, ratios = {}, rs = {}, rp = {}, probes = {}, methods = {}, paths = {} }
      by[r.case] = s
      order[#order + 1] = s
    end
    s.runs = s.runs + 1
    if r.connected then s.connected = s.connected + 1 end
    if r.pass then s.passed = s.passed + 1 end
    if r.setup_ms then s.setups[#s.setups + 1] = r.setup_ms end
    if r.probes then s.probes[#s.probes + 1] = r.probes end
    if r.method then s.methods[r.method] = (s.methods[r.method] or 0) + 1 end
    if r.connected and r.path then s.paths[r.path] = (s.paths[r.path] or 0) + 1 end
    if r.ratio then s.ratios[#s.ratios + 1] = r.ratio end
    if r.rtt_server_ms then s.rs[#s.rs + 1] = r.rtt_server_ms end
    if r.rtt_peer_ms then s.rp[#s.rp + 1] = r.rtt_peer_ms end
    s.path = s.path or r.path
  end
  for _, s in ipairs(order) do
    table.sort(s.setups)
    s.setup_min_ms, s.setup_max_ms = s.setups[1], s.setups[#s.setups]
    s.setup_p90_ms = s.setups[math.max(1, math.ceil(#s.setups * 0.9))]
    s.probes_ms = nil
    s.probes = median(s.probes)
    s.setup_ms, s.ratio = median(s.setups), median(s.ratios)
    s.rtt_server_ms, s.rtt_peer_ms = median(s.rs), median(s.rp)
    s.setups, s.ratios, s.rs, s.rp = nil, nil, nil, nil
  end
  return order
end

-- "birthday 49, udp 1": the methods (or paths) that won, most first.
local function method_text(methods)
  local list = {}
  for m, n in pairs(methods or {}) do list[#list + 1] = { m, n } end
  table.sort(list, function(x, y) return x[2] > y[2] or (x[2] == y[2] and x[1] < y[1]) end)
  local out = {}
  for i, e in ipairs(list) do out[i] = #list > 1 and (e[1] .. " " .. e[2]) or e[1] end
  return #out > 0 and table.concat(out, ", ") or "-"
end

--- A Markdown table of summaries (report.summarize): case, the method that
-- won, the path it made (relay, public, private), connected (and as expected) out of runs, setup median / 90th
-- percentile / max, median birthday probes.
function report.markdown(summaries)
  local L = { "| case | won by | path | connected | as expected | setup median | p90 | max | probes (median) |",
    "|---|---|---|---|---|---|---|---|---|" }
  local function ms(v) return v and (math.floor(v + 0.5) .. " ms") or "-" end
  for _, s in ipairs(summaries) do
    L[#L + 1] = ("| %s | %s | %s | %d/%d (%d%%) | %d/%d | %s | %s | %s | %s |"):format(s.title or s.pair,
      method_text(s.methods), method_text(s.paths), s.connected, s.runs, math.floor(100 * s.connected / s.runs + 0.5),
      s.passed, s.runs, ms(s.setup_ms), ms(s.setup_p90_ms), ms(s.setup_max_ms),
      s.probes and tostring(math.floor(s.probes + 0.5)) or "-")
  end
  return table.concat(L, "\n") .. "\n"
end

return report
