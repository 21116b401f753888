-- natpunch.lab.matrix: UDP hole punching proven in the NAT lab, across every
-- pair of NAT types, behind one NAT, behind two, from a host with no NAT and
-- through a rendezvous that itself sits behind a NAT.
--
--   local matrix = require "natpunch.lab.matrix"
--   local r <close> = matrix.runner{ cases = matrix.names("lean"),
--                                   link = { delay = "50ms", loss = "5%" } }
--   r:up()
--   for _, name in ipairs(r:names()) do
--     local res = r:run_case(name)       -- one table per case, see below
--     print(res.pair, res.connected, res.path, res.setup_ms, res.reason)
--   end
--   r:down()                             -- also done by <close>
--
-- Everything runs through the public command line, exactly as a user would:
-- the rendezvous as `natpunch rendezvous --listen IP:3478 --json`, the peers
-- as `natpunch peer ... --json` inside the lab's namespaces; the runner only
-- reads the JSON lines they print.  One topology holds every NAT the chosen
-- cases need (one per side and type, so cases never share a NAT pair), so
-- nothing is rebuilt between cases.  See docs/TRAVERSAL.md.
--
-- Per case the runner also
--   * pings the server and the other peer from the connecting host (RTTs
--     for the setup-time ratio; the pings also settle ARP on the lab's flat
--     internet, which a real path does not pay for);
--   * counts the UDP packets the rendezvous host sends and receives, split
--     by the first payload byte (0x04 control frames vs. anything else),
--     with nftables counters in its namespace: "no data through the
--     server" is other = 0.

-- In parts: matrix/cases.lua (the cases and their lab: pure, no root),
-- matrix/runner.lua (running them), matrix/report.lua (summaries).

local cases = require "natpunch.lab.matrix.cases"
local runner = require "natpunch.lab.matrix.runner"
local report = require "natpunch.lab.matrix.report"

local matrix = {}

for _, k in ipairs({ "types", "TYPES", "CONE", "expect", "names", "case", "describe" }) do
  matrix[k] = cases[k]
end
matrix.command = runner.command
matrix.runner = runner.runner
matrix.summarize = report.summarize
matrix.median = report.median
matrix.markdown = report.markdown

return matrix
