-- natpunch.lab.probe: the lab's own UDP (and TCP) probe, run inside a lab host with
--   ip netns exec NS lua5.4 -e 'package.path=... package.cpath=...' probe.lua COMMAND ...
-- (Topology:probe_argv builds that line with the paths of the running lab).
--
-- It is the one replaceable helper the lab specs use to see what a NAT
-- does: they only read the lines printed below.  Its sockets and timers
-- are natpunch.core's (raw UDP receive, TCP with SO_REUSEADDR), driven by
-- core.run("once") until each command's deadline.
--
-- Commands (every one stops by itself: bounded in time and count; with
-- "--six 1" sockets bind the dual-stack [::], and targets may be
-- "[ipv6]:port"):
--   serve  --time T [--later S,S..] PORT...
--                                    reflect: answer each datagram with
--                                    "MAPPED ip port" (its source, as seen),
--                                    and again with "LATER s" s seconds on
--                                    (mapping lifetime experiments)
--   client --bind P --to IP:PORT... [--listen T]
--                                    send "PROBE" to each target (3 tries),
--                                    print "MAPPED target ip port" for the
--                                    first answer from each, then until T
--                                    seconds have passed print "RECV ip port
--                                    payload" for every other datagram
--   send   --bind P --to IP:PORT [--count N] [--payload S]
--                                    send N datagrams, 20 ms apart
--   blast  --to IP:PORT --count N [--interval S] [--size B] [--bind P]
--                                    send N numbered datagrams
--   tcpconnect --bind P --to IP:PORT [--time T] [--payload S]
--                                    TCP connect from port P (retrying);
--                                    "TCPCONNECTED", then "TCPRECV line"
--   sink   --bind P --time T [--count N] [--idle S]
--                                    (ends S seconds after the last one)
--                                    count datagrams; prints
--                                    "SINK received N bytes B"
-- Each command prints "READY" once its sockets are bound.

local core = require "natpunch.core"

local probe = {}

local MAX_DATAGRAMS = 100000 -- hard bound on anything counted

local function out(...)
  io.stdout:write(table.concat({ ... }, " "), "\n")
  io.stdout:flush()
end

local function clock() return core.hrtime() / 1e9 end

-- Run the loop until cond() holds or `seconds` have passed.  The timer
-- repeats: a one-shot timer that comes due at the top of a "once" turn
-- runs there, and the turn's poll would then block with nothing to wake it.
local timer
local function pump(seconds, cond)
  local deadline = clock() + seconds
  timer = timer or core.timer()
  while not (cond and cond()) do
    local left = deadline - clock()
    if left <= 0 then break end
    timer:start(math.max(1, math.ceil(left * 1000)), 1, function() end)
    core.run("once")
  end
  timer:stop()
end

-- "ip:port" or "[ipv6]:port"
local function parse_target(text)
  local ip, port = tostring(text):match("^([%d%.]+):(%d+)$")
  if not ip then ip, port = tostring(text):match("^%[([%x:%.]+)%]:(%d+)$") end
  if not ip then error("probe: bad target " .. tostring(text), 0) end
  return ip, tonumber(port)
end

-- The address sockets bind to: 0.0.0.0, or with --six 1 the dual-stack
-- [::] (IPv6 hosts of the lab).
local any = "0.0.0.0"

-- A UDP socket on port (0: any) receiving raw datagrams into on_recv(data, ip, port).
local function bind(port, on_recv)
  local u = core.udp()
  assert(u:bind(any, port or 0))
  assert(u:recv_start(function(err, data, ip, p)
    if not err and on_recv then on_recv(data, ip, p) end
  end, { raw = true }))
  return u
end

-- argv -> { positional..., opts }: "--to" may repeat.
local function parse(argv)
  local opts, pos = { to = {} }, {}
  local i = 1
  while i <= #argv do
    local a = argv[i]
    local key = a:match("^%-%-(.+)$")
    if key then
      local v = argv[i + 1]
      if v == nil then error("probe: " .. a .. " needs a value", 0) end
      if key == "to" then opts.to[#opts.to + 1] = v else opts[key] = v end
      i = i + 2
    else
      pos[#pos + 1] = a
      i = i + 1
    end
  end
  return pos, opts
end

function probe.serve(pos, opts)
  local later = {}
  for s in tostring(opts.later or ""):gmatch("[%d%.]+") do
    later[#later + 1] = tonumber(s)
  end
  local seen, queued, served = {}, 0, 0   -- "LATER" answers go once per client endpoint
  for _, p in ipairs(pos) do
    local u
    u = bind(tonumber(p), function(data, ip, port)
      served = served + 1
      if served > MAX_DATAGRAMS then return end
      u:send(ip, port, ("MAPPED %s %d"):format(ip, port))
      local _, lport = u:getsockname()
      out("SERVED", ip, port, "on", lport, data)
      local key = ip .. ":" .. port
      if data:match("^PROBE") and not seen[key] and queued < 1000 then
        seen[key] = true
        for _, s in ipairs(later) do
          queued = queued + 1
          local t = core.timer()
          t:start(math.floor(s * 1000), 0, function()
            t:close()
            local text = "LATER " .. s
            u:send(ip, port, text)
            out("SENT", ip, port, text)
          end)
        end
      end
    end)
  end
  out("READY")
  pump(tonumber(opts.time or 10))
end

function probe.client(_, opts)
  local start = clock()
  local listen = tonumber(opts.listen or 1)
  local pending, listening = {}, false
  for _, t in ipairs(opts.to) do
    local ip, port = parse_target(t)
    pending[#pending + 1] = { key = ip .. ":" .. port, ip = ip, port = port }
  end
  local n = 0
  local u = bind(tonumber(opts.bind), function(data, ip, port)
    n = n + 1
    if n > MAX_DATAGRAMS then return end
    local mip, mport = data:match("^MAPPED ([%d%.]+) (%d+)$")
    if listening then
      if not mip then out("RECV", ip, port, data) end
      return
    end
    local key = ip .. ":" .. port
    local matched = false
    for _, p in ipairs(pending) do
      if p.key == key and mip then
        matched = true
        if not p.answered then
          p.answered = true
          out("MAPPED", key, mip, mport)
        end
      end
    end
    if not matched then out("RECV", ip, port, data) end
  end)
  out("READY")
  local function all()
    for _, p in ipairs(pending) do if not p.answered then return false end end
    return true
  end
  -- Up to 3 tries 100 ms apart: the probe also runs over lossy links.
  for try = 1, 3 do
    for _, p in ipairs(pending) do
      if not p.answered then u:send(p.ip, p.port, "PROBE " .. try) end
    end
    pump(0.1 * try, all)
    if all() then break end
  end
  for _, p in ipairs(pending) do
    if not p.answered then out("NOANSWER", p.key) end
  end
  listening = true
  out("LISTENING")
  pump(start + listen - clock())
  out("DONE")
end

function probe.send(_, opts)
  local u = bind(tonumber(opts.bind))
  local ip, port = parse_target(opts.to[1])
  out("READY")
  for i = 1, math.min(tonumber(opts.count or 3), MAX_DATAGRAMS) do
    u:send(ip, port, opts.payload or ("HELLO " .. i))
    pump(0.02)
  end
  out("SENT")
end

function probe.blast(_, opts)
  local u = bind(tonumber(opts.bind))
  local ip, port = parse_target(opts.to[1])
  local count = math.min(tonumber(opts.count or 100), MAX_DATAGRAMS)
  local interval = tonumber(opts.interval or 0.001)
  local size = math.max(16, tonumber(opts.size or 64))
  out("READY")
  local t0 = clock()
  for i = 1, count do
    local head = ("BLAST %08d "):format(i)
    u:send(ip, port, head .. ("x"):rep(size - #head))
    -- pace against the start time so timer overshoot does not add up
    local wait = t0 + i * interval - clock()
    if wait > 0 then pump(wait) end
  end
  out("BLASTED", count, ("%.3f"):format(clock() - t0))
end

function probe.sink(_, opts)
  local want = math.min(tonumber(opts.count or MAX_DATAGRAMS), MAX_DATAGRAMS)
  local idle = tonumber(opts.idle)
  local n, bytes, first, last = 0, 0, nil, nil
  bind(tonumber(opts.bind), function(data)
    if n >= want then return end
    n = n + 1
    bytes = bytes + #data
    last = clock()
    first = first or last
  end)
  out("READY")
  local deadline = clock() + tonumber(opts.time or 5)
  while n < want do
    local left = deadline - clock()
    if idle and last then left = math.min(left, last + idle - clock()) end
    if left <= 0 then break end
    local seen = n
    pump(left, function() return n ~= seen end)
  end
  out("SINK received", n, "bytes", bytes, "span",
    ("%.3f"):format(first and last - first or 0))
end

-- TCP connect from a fixed local port (SO_REUSEADDR), as in TCP hole
-- punching: both sides connect to each other's public endpoint
-- and a simultaneous open joins them.  Sends one line, prints the line it
-- gets back as "TCPRECV text".
function probe.tcpconnect(_, opts)
  local ip, port = parse_target(opts.to[1])
  local deadline = clock() + tonumber(opts.time or 5)
  out("READY")
  -- a refused or timed-out attempt is retried from the same port until
  -- the deadline, like a puncher would
  for _ = 1, 50 do
    if deadline - clock() <= 0 then break end
    local c = core.tcp()
    assert(c:bind("0.0.0.0", tonumber(opts.bind), { reuseaddr = true }))
    local result
    assert(c:connect(ip, port, function(err) result = err or "ok" end))
    pump(deadline - clock(), function() return result ~= nil end)
    if result == "ok" then
      local lip, lport = c:getsockname()
      out("TCPCONNECTED", lip, lport)
      c:write((opts.payload or "HELLO") .. "\n")
      local buf, line, eof = "", nil, false
      c:read_start(function(err, chunk)
        if err or not chunk then eof = true return end
        buf = (buf .. chunk):sub(1, 65536)
        line = buf:match("^([^\n]*)\n")
      end)
      pump(math.max(0.001, deadline - clock()), function() return line ~= nil or eof end)
      out("TCPRECV", tostring(line or (buf ~= "" and buf or nil)))
      c:close()
      pump(0.01)
      return
    end
    out("TCPFAIL", tostring(result or "timeout"))
    c:close()
    pump(0.2)
  end
end

function probe.main(argv)
  local cmd = argv[1]
  local f = cmd and probe[cmd]
  if type(f) ~= "function" or cmd == "main" then
    io.stderr:write("usage: probe.lua serve|client|send|blast|sink|tcpconnect ...\n")
    return 2
  end
  local pos, opts = parse(table.move(argv, 2, #argv, 1, {}))
  any = opts.six == "1" and "::" or "0.0.0.0"
  f(pos, opts)
  return 0
end

-- Run as a script (not when required as a module).
if (...) ~= "natpunch.lab.probe" and arg then
  os.exit(probe.main(arg))
end

return probe
