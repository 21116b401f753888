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
      s = { case = r.case, pair = r.pair, expect = r.expect, runs = 0, connected = 0,
        passed = 0, setups = {}, ratios = {}, rs = {}, rp = {} }
      by[r.case] = s
      order[#order + 1] = s
    end
    s.runs = s.runs + 1
    if r.connected then s.connected = s.connected + 1 end
    if r.pass then s.passed = s.passed + 1 end
    if r.setup_ms then s.setups[#s.setups + 1] = r.setup_ms end
    if r.ratio then s.ratios[#s.ratios + 1] = r.ratio end
    if r.rtt_server_ms then s.rs[#s.rs + 1] = r.rtt_server_ms end
    if r.rtt_peer_ms then s.rp[#s.rp + 1] = r.rtt_peer_ms end
    s.path = s.path or r.path
  end
  for _, s in ipairs(order) do
    s.setup_ms, s.ratio = median(s.setups), median(s.ratios)
    s.rtt_server_ms, s.rtt_peer_ms = median(s.rs), median(s.rp)
    s.setups, s.ratios, s.rs, s.rp = nil, nil, nil, nil
  end
  return order
end

return report
