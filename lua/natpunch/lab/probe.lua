-- natpunch.lab.probe: the lab's own UDP (and TCP) probe, run inside a lab host with
--   ip netns exec NS lua5.4 probe.lua COMMAND ...
--
-- It is the one replaceable helper the lab specs use to see what a NAT
-- does.  It needs sockets, which the Lua standard library lacks, so it uses
-- LuaSocket (Debian package lua-socket); once natpunch.core's UDP handles
-- exist this file can move onto them without the specs changing, since they
-- only read the lines printed below.
--
-- Commands (every one stops by itself: bounded in time and count):
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

local socket = require "socket"

local probe = {}

local MAX_DATAGRAMS = 100000 -- hard bound on any receive loop

local function out(...)
  io.stdout:write(table.concat({ ... }, " "), "\n")
  io.stdout:flush()
end

local function parse_target(text)
  local ip, port = tostring(text):match("^([%d%.]+):(%d+)$")
  if not ip then error("probe: bad target " .. tostring(text), 0) end
  return ip, tonumber(port)
end

local function bind(port)
  local u = assert(socket.udp())
  assert(u:setsockname("0.0.0.0", port or 0))
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
  local deadline = socket.gettime() + tonumber(opts.time or 10)
  local socks = {}
  for _, p in ipairs(pos) do
    local u = bind(tonumber(p))
    socks[#socks + 1] = u
  end
  local later = {}
  for s in tostring(opts.later or ""):gmatch("[%d%.]+") do
    later[#later + 1] = tonumber(s)
  end
  local queue = {} -- { at, sock, ip, port, text }, bounded below
  local seen = {}  -- "LATER" answers go once per client endpoint
  out("READY")
  for _ = 1, MAX_DATAGRAMS do
    local now = socket.gettime()
    -- send what is due from the "later" queue
    for i = #queue, 1, -1 do
      local q = queue[i]
      if q.at <= now then
        q.sock:sendto(q.text, q.ip, q.port)
        out("SENT", q.ip, q.port, q.text)
        table.remove(queue, i)
      end
    end
    local left = deadline - now
    if left <= 0 then break end
    for _, q in ipairs(queue) do left = math.min(left, q.at - now) end
    local ready = socket.select(socks, nil, math.max(0.001, left))
    for _, u in ipairs(ready) do
      local data, ip, port = u:receivefrom()
      if data then
        u:sendto(("MAPPED %s %d"):format(ip, port), ip, port)
        local _, lport = u:getsockname()
        out("SERVED", ip, port, "on", lport, data)
        local key = ip .. ":" .. port
        if #queue < 1000 and data:match("^PROBE") and not seen[key] then
          seen[key] = true
          for _, s in ipairs(later) do
            queue[#queue + 1] = { at = socket.gettime() + s, sock = u,
              ip = ip, port = port, text = "LATER " .. s }
          end
        end
      end
    end
  end
end

function probe.client(_, opts)
  local start = socket.gettime()
  local listen = tonumber(opts.listen or 1)
  local u = bind(tonumber(opts.bind))
  out("READY")
  local pending = {}
  for _, t in ipairs(opts.to) do
    local ip, port = parse_target(t)
    pending[#pending + 1] = { key = ip .. ":" .. port, ip = ip, port = port }
  end
  -- Up to 3 tries 100 ms apart: the probe also runs over lossy links.
  for try = 1, 3 do
    for _, p in ipairs(pending) do
      if not p.answered then u:sendto("PROBE " .. try, p.ip, p.port) end
    end
    local until_t = socket.gettime() + 0.1 * try
    while socket.gettime() < until_t do
      u:settimeout(math.max(0, until_t - socket.gettime()))
      local data, ip, port = u:receivefrom()
      if data then
        local mip, mport = data:match("^MAPPED ([%d%.]+) (%d+)$")
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
      end
    end
    local all = true
    for _, p in ipairs(pending) do all = all and p.answered end
    if all then break end
  end
  for _, p in ipairs(pending) do
    if not p.answered then out("NOANSWER", p.key) end
  end
  out("LISTENING")
  local deadline = start + listen
  for _ = 1, MAX_DATAGRAMS do
    local left = deadline - socket.gettime()
    if left <= 0 then break end
    u:settimeout(left)
    local data, ip, port = u:receivefrom()
    if data and not data:match("^MAPPED ") then out("RECV", ip, port, data) end
  end
  out("DONE")
end

function probe.send(_, opts)
  local u = bind(tonumber(opts.bind))
  local ip, port = parse_target(opts.to[1])
  out("READY")
  for i = 1, tonumber(opts.count or 3) do
    u:sendto(opts.payload or ("HELLO " .. i), ip, port)
    socket.sleep(0.02)
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
  local t0 = socket.gettime()
  for i = 1, count do
    local head = ("BLAST %08d "):format(i)
    u:sendto(head .. ("x"):rep(size - #head), ip, port)
    -- pace against the start time so sleep overshoot does not add up
    local wait = t0 + i * interval - socket.gettime()
    if wait > 0 then socket.sleep(wait) end
  end
  out("BLASTED", count, ("%.3f"):format(socket.gettime() - t0))
end

function probe.sink(_, opts)
  local u = bind(tonumber(opts.bind))
  local deadline = socket.gettime() + tonumber(opts.time or 5)
  local want = math.min(tonumber(opts.count or MAX_DATAGRAMS), MAX_DATAGRAMS)
  local idle = tonumber(opts.idle)
  local n, bytes, first, last = 0, 0, nil, nil
  out("READY")
  while n < want do
    local left = deadline - socket.gettime()
    if idle and last then left = math.min(left, last + idle - socket.gettime()) end
    if left <= 0 then break end
    u:settimeout(left)
    local data = u:receivefrom()
    if data then
      n = n + 1
      bytes = bytes + #data
      last = socket.gettime()
      first = first or last
    end
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
  local deadline = socket.gettime() + tonumber(opts.time or 5)
  out("READY")
  -- a refused or timed-out attempt is retried from the same port until
  -- the deadline, like a puncher would
  for _ = 1, 50 do
    local left = deadline - socket.gettime()
    if left <= 0 then break end
    local c = assert(socket.tcp())
    c:setoption("reuseaddr", true)
    assert(c:bind("0.0.0.0", tonumber(opts.bind)))
    c:settimeout(left)
    local ok, err = c:connect(ip, port)
    if ok then
      local lip, lport = c:getsockname()
      out("TCPCONNECTED", lip, lport)
      c:send((opts.payload or "HELLO") .. "\n")
      local line = c:receive("*l")
      out("TCPRECV", tostring(line))
      c:close()
      return
    end
    out("TCPFAIL", tostring(err))
    c:close()
    socket.sleep(0.2)
  end
end

function probe.main(argv)
  local cmd = argv[1]
  local f = cmd and probe[cmd]
  if type(f) ~= "function" or cmd == "main" then
    io.stderr:write("usage: probe.lua serve|client|send|blast|sink ...\n")
    return 2
  end
  local pos, opts = parse(table.move(argv, 2, #argv, 1, {}))
  f(pos, opts)
  return 0
end

-- Run as a script (not when required as a module).
if (...) ~= "natpunch.lab.probe" and arg then
  os.exit(probe.main(arg))
end

return probe
