-- A peer for spec/relay_lab_spec.lua's upgrade, run inside a lab
-- namespace: the hard matrix's upgrade peers
-- (natpunch.lab.matrix.kinds.upgrade.stream, which documents the
-- arguments and the JSON lines it prints).
--
--   stream.lua wait ID SERVER SECONDS CONNECT_TIMEOUT
--   stream.lua connect ID SERVER TARGET N GAP_MS CONNECT_TIMEOUT
require("natpunch.lab.matrix.kinds.upgrade").stream(table.unpack(arg, 1, #arg))
