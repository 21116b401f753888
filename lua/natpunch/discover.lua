--- NAT behaviour discovery (RFC 5780 §4) against a server with two
-- addresses and two ports (natpunch stun-server, coturn's turnserver -L IP1
-- -L IP2, ...), reported with RFC 4787's names and the classic ones.
--
--   natpunch.run(function()
--     local r = assert(natpunch.discover{ server = "203.0.113.2:3478" })
--     print(r.type, r.mapping, r.filtering, r.public, r.hairpin)
--   end)
--
-- The mapping tests (RFC 5780 §4.3) and the filtering tests (§4.4) use two
-- different sockets, so the holes the mapping tests open toward the
-- alternate address cannot make the filtering look endpoint-independent
-- (the bug of stunserver#18/#26).  Tests that do not depend on each other
-- run at the same time; retransmissions start at 100 ms and double, so a
-- test that gets no answer costs about 1.5 s, and the whole run about
-- 2 s when some filtering test fails (as it does behind most NATs).
local core = require "natpunch.core"
local sched = require "natpunch.sched"
local addr = require "natpunch.addr"

local discover = {}

local EI, AD, APD = "endpoint-independent", "address-dependent", "address-and-port-dependent"
discover.EI, discover.AD, discover.APD = EI, AD, APD

-- Waits before each retransmission and after the last one (seconds).
local RETRANSMIT = { 0.1, 0.2, 0.4, 0.8 }
-- Requests carry PADDING up to this size, so that an answer with the three
-- RFC 5780 address attributes is never larger than its request.
local REQUEST_SIZE = 64
local ALLOCATION_PROBES = 4

-- A socket with a table of outstanding transactions.
local function prober(bind_ip)
  local u = core.udp()
  local ok, err, code = u:bind(bind_ip, 0)
  if not ok then
    u:close()
    return nil, err, code
  end
  local p = { sock = u, pending = {}, requests = {} }
  u:recv_start(function(e, data, ip, port, kind)
    if e or kind ~= "stun" then return end
    local m = core.stun.decode(data)
    if not m then return end
    if m.class == "request" then
      -- our own request, hairpinned back through the NAT
      local f = p.requests[m.transaction_id]
      if f then f:set(true, m, ip, port) end
      return
    end
    local f = p.pending[m.transaction_id]
    if f then f:set(true, m, ip, port) end
  end)
  return p
end

local function padding_for(fields)
  local size = #core.stun.encode(fields)
  return math.max(0, REQUEST_SIZE - size - 4)
end

-- One Binding transaction; returns the response table and where it came
-- from, or nil when every retransmission went unanswered.
local function transact(p, ip, port, change)
  local tid = core.random_bytes(12)
  local fields = { class = "request", method = "binding", transaction_id = tid, change_request = change }
  fields.padding = padding_for(fields)
  local data = core.stun.encode(fields)
  local f = sched.future()
  p.pending[tid] = f
  local got, m, fip, fport
  for _, wait in ipairs(RETRANSMIT) do
    p.sock:send(ip, port, data)
    got, m, fip, fport = f:wait(wait)
    if got then break end
  end
  p.pending[tid] = nil
  if not got then return nil end
  return m, fip, fport
end

local function mapped(m)
  local a = m and (m.xor_mapped_address or m.mapped_address)
  if not a then return nil end
  return a.ip, a.port, addr.format(a.ip, a.port)
end

-- Run fns (a list of functions) as parallel tasks; returns their results.
local function parallel(fns)
  local tasks = {}
  for i, fn in ipairs(fns) do tasks[i] = sched.spawn(fn) end
  local out = {}
  for i, t in ipairs(tasks) do out[i] = table.pack(t:join()) end
  return out
end

local function local_ips()
  local set = {}
  for _, a in ipairs(core.interface_addresses()) do set[a.ip] = true end
  return set
end

--- The classic (RFC 3489) name of a mapping/filtering pair.
function discover.classic(nat, mapping, filtering)
  if not nat then return filtering == EI and "open" or "firewall" end
  if mapping ~= EI then return "symmetric" end
  if filtering == EI then return "full-cone" end
  if filtering == AD then return "restricted-cone" end
  return "port-restricted-cone"
end

--- The pattern of a list of mapped ports against their local ports:
-- "preserving", "sequential" (with delta) or "random".
function discover.allocation(ports, locals)
  local preserving = #ports > 0
  for i, p in ipairs(ports) do if p ~= locals[i] then preserving = false end end
  if preserving then return { pattern = "preserving", ports = ports } end
  -- sequential: most deltas equal (the common delta), every delta of its
  -- sign and small; a gap (another socket took a port between two
  -- probes) does not make it random
  local deltas, count, delta = {}, {}, nil
  for i = 2, #ports do
    local d = ports[i] - ports[i - 1]
    deltas[#deltas + 1] = d
    count[d] = (count[d] or 0) + 1
    if delta == nil or count[d] > count[delta] then delta = d end
  end
  local ok = delta ~= nil and delta ~= 0 and math.abs(delta) <= 16 and count[delta] * 2 > #deltas
  for _, d in ipairs(deltas) do
    if not ok then break end
    if d * delta <= 0 or math.abs(d) > 16 then ok = false end
  end
  if ok then return { pattern = "sequential", delta = delta, ports = ports } end
  return { pattern = "random", ports = ports }
end

-- Port allocation of new mappings: fresh sockets, one after the other,
-- each to the primary address.
local function allocation_probe(bind_ip, ip, port)
  local ports, locals = {}, {}
  for _ = 1, ALLOCATION_PROBES do
    local p = prober(bind_ip)
    if p then
      local _, lport = p.sock:getsockname()
      local m = transact(p, ip, port)
      local _, mport = mapped(m)
      p.sock:close()
      if mport then
        ports[#ports + 1] = mport
        locals[#locals + 1] = lport
      elseif #ports == 0 then
        break   -- the first fresh socket got no answer: the others would not either
      end
    end
  end
  return discover.allocation(ports, locals)
end

--- The port allocation of new mappings toward one server ("ip:port", any
-- STUN server: a natpunch rendezvous answers Binding requests): four fresh
-- sockets (bound to opts.bind, default the server's family's any address),
-- one after the other.  Must run in a task.  Returns { pattern =
-- "preserving" | "sequential" | "random", delta = (sequential), ports =
-- the mapped ports in order } (ports empty when nothing answered).
function discover.probe_allocation(opts)
  if type(opts) ~= "table" then error("bad argument #1 to 'probe_allocation' (table expected)", 2) end
  local ip, port = addr.check(opts.server, "probe_allocation: server", 2)
  return allocation_probe(opts.bind or (addr.family(ip) == "inet6" and "::" or "0.0.0.0"), ip, port)
end

-- Our own request sent to our public mapping: does the NAT hairpin it?
local function hairpin_probe(p, ip, port)
  local tid = core.random_bytes(12)
  local f = sched.future()
  p.requests[tid] = f
  local data = core.stun.encode({ class = "request", method = "binding", transaction_id = tid })
  local got
  for _, wait in ipairs(RETRANSMIT) do
    p.sock:send(ip, port, data)
    got = f:wait(wait)
    if got then break end
  end
  p.requests[tid] = nil
  return got and true or false
end

-- The short form a registration carries ("EI/APD", "none/EI", ...).
local SHORT = { [EI] = "EI", [AD] = "AD", [APD] = "APD", none = "none" }
local LONG = { EI = EI, AD = AD, APD = APD, none = "none" }

--- A report's mapping and filtering as "M/F" (nil when not tested).
function discover.code(report)
  if not report or not SHORT[report.mapping or ""] or not SHORT[report.filtering or ""] then return nil end
  return SHORT[report.mapping] .. "/" .. SHORT[report.filtering]
end

--- {mapping, filtering, type} from a code, or nil when it is not one.
function discover.parse_code(code)
  if type(code) ~= "string" then return nil end
  local m, f = code:match("^(%a+)/(%a+)$")
  if not m or not LONG[m] or not LONG[f] or f == "none" then return nil end
  local nat = m ~= "none"
  return { mapping = LONG[m], filtering = LONG[f], type = discover.classic(nat, LONG[m], LONG[f]) }
end

--- Run the tests.  opts: server ("ip:port"), bind (local IP, default
-- 0.0.0.0), hairpin (default true), allocation (default true: probe the
-- port allocation of non-EIM NATs).  Must run in a task.  Returns the
-- report (see docs/DISCOVERY.md) or nil, message, code.
function discover.run(opts)
  if type(opts) ~= "table" then error("bad argument #1 to 'discover' (table expected)", 2) end
  local sip, sport = addr.check(opts.server, "discover: server", 2)
  local bind_ip = opts.bind or (addr.family(sip) == "inet6" and "::" or "0.0.0.0")
  local started = core.now()
  local pm, err, code = prober(bind_ip)
  if not pm then return nil, err, code end
  local pf
  pf, err, code = prober(bind_ip)
  if not pf then
    pm.sock:close()
    return nil, err, code
  end
  local report = { server = addr.format(sip, sport) }
  local function finish()
    pm.sock:close()
    pf.sock:close()
    report.elapsed_ms = core.now() - started
    return report
  end

  -- Test I, on both sockets at once: the filtering socket needs a mapping
  -- toward the primary address before its change tests.
  local r1 = parallel({
    function() return transact(pm, sip, sport) end,
    function() return transact(pf, sip, sport) end,
  })
  local m1, f1 = r1[1][1], r1[2][1]
  if not m1 and not f1 then
    report.type = "udp-blocked"
    report.udp = false
    return finish()
  end
  report.udp = true
  m1 = m1 or f1
  local mip, mport, public = mapped(m1)
  if not mip then return nil, "server answered without a mapped address", "EPROTO" end
  report.public = public
  local _, lport = pm.sock:getsockname()
  if m1 == f1 then _, lport = pf.sock:getsockname() end
  report.port_preserving = mport == lport
  report.nat = not (local_ips()[mip] and mport == lport)
  local other = m1.other_address or m1.changed_address
  if not other or other.ip == sip then
    report.limited = "the server has no alternate address (no OTHER-ADDRESS): mapping and filtering not tested"
    if opts.hairpin ~= false and report.nat then report.hairpin = hairpin_probe(pm, mip, mport) end
    return finish()
  end
  report.other = addr.format(other.ip, other.port)

  local results = parallel({
    -- mapping, RFC 5780 §4.3: alternate address with the primary port,
    -- then both alternate
    function() return transact(pm, other.ip, sport) end,
    function() return transact(pm, other.ip, other.port) end,
    -- filtering, §4.4: answers from the other address and port, then from
    -- the other port only
    function() return transact(pf, sip, sport, { ip = true, port = true }) end,
    function() return transact(pf, sip, sport, { port = true }) end,
    function()
      if opts.hairpin == false or not report.nat then return nil end
      return hairpin_probe(pm, mip, mport)
    end,
  })
  local m2, m3 = results[1][1], results[2][1]
  local f2, f3 = results[3][1], results[4][1]
  if report.nat and opts.hairpin ~= false then report.hairpin = results[5][1] end
  local _, _, a2 = mapped(m2)
  local _, _, a3 = mapped(m3)
  if not a2 or not a3 then
    report.limited = "no answer from the server's alternate address: mapping not tested"
  elseif a2 == public then
    report.mapping = EI
  elseif a3 == a2 then
    report.mapping = AD
  else
    report.mapping = APD
  end
  report.mapped = { public, a2, a3 }
  if f2 then report.filtering = EI
  elseif f3 then report.filtering = AD
  else report.filtering = APD end
  if not report.nat then report.mapping = report.mapping and "none" end
  if report.mapping then report.type = discover.classic(report.nat, report.mapping, report.filtering) end
  if report.nat and report.mapping and report.mapping ~= EI and opts.allocation ~= false then
    report.allocation = allocation_probe(bind_ip, sip, sport)
  end
  return finish()
end

return setmetatable(discover, { __call = function(_, opts) return discover.run(opts) end })
