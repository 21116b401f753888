-- A peer for spec/upgrade_lab_spec.lua, run inside a lab namespace; one
-- JSON object per line on stdout, each with hr = core.hrtime() in ms (the
-- monotonic clock is shared by every process of the machine).
--
--   stream.lua wait ID SERVER SECONDS CONNECT_TIMEOUT
--       register, take touches for SECONDS, then print "received" (how
--       often each numbered touch arrived) and the socket's counters
--   stream.lua connect ID SERVER TARGET N GAP_MS CONNECT_TIMEOUT
--       connect to TARGET, then touch "n=1" .. "n=N", GAP_MS apart,
--       without waiting for the acks; print "progress" every 50 acks and
--       "sent" (acks, failures, counters) once every touch is resolved
--
-- Both refresh their registration every second: the lab's cone NATs learn
-- a mapping from its next outbound packet (lab/nft.lua, @mapping), so
-- after the lab turns a symmetric NAT into a cone the mapping the
-- rendezvous saw is usable a second later at most.
local natpunch = require "natpunch"
local core = require "natpunch.core"
local json = require "natpunch.json"

local role, id, server = arg[1], arg[2], arg[3]

local function out(ev)
  ev.hr = core.hrtime() // 1000000
  io.stdout:write(json.encode(ev), "\n")
  io.stdout:flush()
end

local function counters(p)
  local s = p:stats()
  return { relay_out = s.relay_out, relay_in = s.relay_in, path_out = s.path_out, path_in = s.path_in,
    touch_delivered = s.touch_delivered, touch_duplicates = s.touch_duplicates,
    touch_retransmits = s.touch_retransmits, touch_unsolicited = s.touch_unsolicited,
    touch_acked = s.touch_acked, touch_failed = s.touch_failed, bad_data = s.bad_data }
end

local p
-- every event but the stream's own (one per touch); traces too (verbose)
local function on_event(ev)
  if ev.event == "message" or ev.event == "touch_acked" then return end
  if ev.event == "path_changed" then ev.counters = counters(p) end
  out(ev)
end

natpunch.run(function()
  if role == "wait" then
    local seconds, ct = tonumber(arg[4]), tonumber(arg[5])
    local got = {}
    p = assert(natpunch.peer{ server = server, id = id, on_event = on_event, refresh = 1, verbose = true,
      connect_timeout = ct,
      on_message = function(_, data, kind)
        local n = kind == "touch" and tonumber(data:match("^n=(%d+)$"))
        if n then got[n] = (got[n] or 0) + 1 end
      end })
    assert(p:register())
    natpunch.sleep(seconds)
    local max = 0
    for n in pairs(got) do if n > max then max = n end end
    local counts = {}
    for n = 1, max do counts[n] = got[n] or 0 end
    out({ event = "received", counts = counts, counters = counters(p) })
    p:close()
    return
  end
  local target, n, gap, ct = arg[4], tonumber(arg[5]), tonumber(arg[6]), tonumber(arg[7])
  p = assert(natpunch.peer{ server = server, id = id, on_event = on_event, refresh = 1, verbose = true,
    connect_timeout = ct })
  assert(p:register())
  local s, err = p:connect(target)
  if not s then
    out({ event = "failed", reason = err })
    os.exit(1)
  end
  local acked, failed, resolved = {}, {}, 0
  local all = natpunch.future()
  for i = 1, n do
    while true do
      local tid, terr, code = s:touch("n=" .. i, function(e)
        if e then failed[#failed + 1] = i .. ": " .. e else acked[i] = (acked[i] or 0) + 1 end
        resolved = resolved + 1
        if resolved % 50 == 0 then out({ event = "progress", resolved = resolved }) end
        if resolved == n then all:set(true) end
      end)
      if tid then break end
      if code ~= "EFULL" then
        out({ event = "failed", reason = "touch " .. i .. ": " .. tostring(terr) })
        os.exit(1)
      end
      natpunch.sleep(0.01)   -- 64 in flight: wait for acks
    end
    natpunch.sleep(gap / 1000)
  end
  all:wait(60)
  local counts = {}
  for i = 1, n do counts[i] = acked[i] or 0 end
  out({ event = "sent", acks = counts, failed = failed, path = s.path, counters = counters(p) })
  natpunch.sleep(0.2)
  p:close()
end)
