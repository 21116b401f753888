-- The attacker of spec/spoof_spec.lua and of the raw-socket cases of
-- spec/amplification_spec.lua, run inside the lab's attacker namespace (or
-- on loopback).  Forged datagrams leave through build/natpunch-spoof (a raw
-- socket with IP_HDRINCL: csrc/tools/spoof.c, which refuses any address
-- outside the lab's ranges and loopback); the answers the attacker itself
-- needs come to ordinary sockets.  Prints one JSON line.
--
--   lua5.4 attacker.lua ROOT MODE ARGS...
local root = arg[1]
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
package.cpath = root .. "/" .. (os.getenv("NATPUNCH_BUILD") or "build") .. "/?.so;" .. package.cpath
local natpunch = require "natpunch"
local core = require "natpunch.core"
local msg = require "natpunch.msg"
local auth = require "natpunch.auth"
local json = require "natpunch.json"

local mode = arg[2]

local function split(ap)
  local ip, port = ap:match("^(.-):(%d+)$")
  return ip, tonumber(port)
end

-- Forged datagrams, sent in one batch by natpunch-spoof: spoof(src, dst,
-- payload) queues one (payload as it goes on the wire: the first byte is
-- the frame kind), spoof.flush() sends them and returns the tool's
-- {sent, bytes} (bytes: whole IP packets).
local spoof = setmetatable({ lines = {} }, { __call = function(self, src, dst, payload)
  self.lines[#self.lines + 1] = src .. " " .. dst .. " "
    .. payload:gsub(".", function(c) return string.format("%02x", c:byte()) end)
end })
function spoof.flush()
  local tmp = os.tmpname()
  local f = assert(io.popen(root .. "/build/natpunch-spoof > " .. tmp, "w"))
  f:write(table.concat(spoof.lines, "\n"), "\n")
  local ok, _, code = f:close()
  local r = io.open(tmp):read("a")
  os.remove(tmp)
  assert(ok, "natpunch-spoof failed (" .. tostring(code) .. "): " .. r)
  spoof.lines = {}
  return assert(json.decode(r), r)
end

local out = { mode = mode }
if mode == "lenient-server" then
  -- ARGS: listen: a compromised rendezvous that passes every candidate on
  -- (the peers' own filter is what is tested)
  natpunch.run(function()
    local rv = assert(natpunch.rendezvous{ listen = arg[3],
      allow = { "loopback", "multicast", "broadcast", "link-local", "unspecified", "reserved" } })
    print(json.encode({ event = "listening", address = rv:address() }, { "event" }))
    io.stdout:flush()
    natpunch.sleep(60)
    rv:close()
  end, { timeout = 70 })
  os.exit(0)
end
if mode == "capture-replay" then
  -- ARGS: listen victim target: an on-path attacker; the spec copies what
  -- one peer sends another to `listen` (nftables dup + DNAT).  Half a
  -- second after the first copy, every frame captured is replayed to
  -- target "from" the victim, while the punch session still runs
  natpunch.run(function()
    local lip, lport = split(arg[3])
    local u = core.udp()
    assert(u:bind(lip, lport))
    local frames, first = {}, natpunch.future()
    u:recv_start(function(_, data)
      frames[#frames + 1] = data
      if not first:is_set() then first:set(true) end
    end, { raw = true })
    print(json.encode({ event = "capturing" }, { "event" }))
    io.stdout:flush()
    first:wait(20)
    natpunch.sleep(0.5)
    u:close()
    local kinds = {}
    for _, d in ipairs(frames) do
      local k = d:byte(1) == 8 and (d:byte(2) == 0 and "punch_request" or "punch_response")
        or ({ [5] = "data", [6] = "touch", [7] = "touch_ack" })[d:byte(1)] or "other"
      kinds[k] = (kinds[k] or 0) + 1
      spoof(arg[4], arg[5], d)
    end
    local r = #frames > 0 and spoof.flush() or { sent = 0 }
    out.captured, out.kinds, out.sent = #frames, kinds, r.sent
  end, { timeout = 30 })
  print(json.encode(out, { "mode" }))
  os.exit(0)
end
natpunch.run(function()
  if mode == "spoof-register" then
    -- ARGS: victim_ip:port server count: registrations and connects "from"
    -- the victim, as a reflection/amplification attacker would send them
    local victim, server = arg[3], arg[4]
    local n = tonumber(arg[5])
    local kp = auth.keypair()
    local sent = 0
    for i = 1, n do
      local bodies = {
        msg.encode({ t = "register", id = "spoof" .. i, pk = kp.pk, tx = "a" .. i }, msg.MIN_REQUEST),
        msg.encode({ t = "register", id = "spoof" .. i, pk = kp.pk, tx = "b" .. i,
          private = string.rep("203.0.113.77:9,", 8) }),
        msg.encode({ t = "register", id = "spoof" .. i, pk = kp.pk, tx = "c" .. i,
          cookie = string.rep("\1", 20) }, msg.MIN_REQUEST),
        msg.encode({ t = "connect", id = "alice", target = "alice", tx = "d" .. i }, msg.MIN_REQUEST),
      }
      for _, b in ipairs(bodies) do
        spoof(victim, server, "\x04" .. b)
        sent = sent + #b + 1
      end
    end
    local r = spoof.flush()
    natpunch.sleep(0.3)
    out.sent_bytes, out.sent_datagrams, out.sent_ip_bytes = sent, r.sent, r.bytes
  elseif mode == "takeover" then
    -- ARGS: bind_ip owner_ip:port own_sport server id: register `id` with
    -- our own key from the owner's address (forged) and from ours, then
    -- unregister it from the owner's address
    local owner, server = arg[4], arg[6]
    local sip, sport = split(server)
    local id = arg[7]
    local kp = auth.keypair()
    spoof(owner, server, "\x04" .. msg.encode({ t = "register", id = id, pk = kp.pk, tx = "f1" }, msg.MIN_REQUEST))
    spoof(owner, server, "\x04" .. msg.encode({ t = "unregister", id = id }, msg.MIN_REQUEST))
    out.forged = spoof.flush().sent
    -- and from our own address, completing the cookie exchange
    local own = core.udp()
    assert(own:bind(arg[3], tonumber(arg[5])))
    local replies = {}
    own:recv_start(function(_, data) replies[#replies + 1] = msg.decode(data) end)
    own:send(sip, sport, msg.encode({ t = "register", id = id, pk = kp.pk, tx = "o1" }, msg.MIN_REQUEST),
      "control")
    natpunch.sleep(0.3)
    local ck = replies[1]
    out.cookie = ck and ck.t
    if ck and ck.t == "cookie" then
      local key = assert(auth.shared(kp, ck.key, "natpunch-control"))
      local f = auth.seal(key, "p", { t = "register", id = id, pk = kp.pk, tx = "o2", cookie = ck.cookie },
        auth.sequence()())
      own:send(sip, sport, msg.encode(f, msg.MIN_REQUEST), "control")
      natpunch.sleep(0.3)
      local r = replies[#replies]
      out.answer = r and r.t
      out.reason = r and r.reason
    end
    own:close()
  elseif mode == "forge-introduce" then
    -- ARGS: server_ip:port target cand,cand,...: "server" messages to a
    -- peer, forged from its rendezvous's address
    local server, target = arg[3], arg[4]
    local fields = { t = "introduce", peer = "evil", role = "accept", public = "203.0.113.77:9",
      private = arg[5], pk = auth.keypair().pk }
    for i = 1, 20 do
      fields.nonce = string.format("%016x", i)
      spoof(server, target, "\x04" .. msg.encode(fields))
      local f = auth.seal(auth.keypair().pk, "s", { t = "introduce", peer = "evil", role = "accept",
        public = fields.public, private = fields.private, pk = fields.pk, nonce = string.format("%016x", 100 + i) },
        i)
      spoof(server, target, "\x04" .. msg.encode(f))
    end
    out.sent = spoof.flush().sent
    natpunch.sleep(0.3)
  elseif mode == "evil-peer" then
    -- ARGS: server id target cand,cand,...: a registered peer that
    -- advertises forbidden candidates and connects to target
    local p = assert(natpunch.peer{ server = arg[3], id = arg[4], connect_timeout = 2,
      allow = { "loopback", "multicast", "broadcast", "link-local", "unspecified", "reserved" } })
    local list = {}
    for c in arg[6]:gmatch("[^,]+") do list[#list + 1] = c end
    p._private_candidates = function() return list end
    out.registered = p:register() ~= nil
    local s, err = p:connect(arg[5], 2)
    out.connected = s ~= nil
    out.reason = err
    p:close()
  end
end, { timeout = 30 })
print(json.encode(out, { "mode" }))
