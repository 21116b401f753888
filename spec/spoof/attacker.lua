-- The attacker of spec/spoof_spec.lua, run inside the lab's attacker
-- namespace only.  Source addresses are forged there by nftables SNAT rules
-- keyed on the attacker's local port (see the spec); this script only sends
-- from the port the rule for that forgery matches.  Prints one JSON line.
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

local function sock(bind_ip, port)
  local u = core.udp()
  assert(u:bind(bind_ip, port))
  local got = 0
  u:recv_start(function(_, data) got = got + #data end, { raw = true })
  return u, function() return got end
end

local function split(ap)
  local ip, port = ap:match("^(.-):(%d+)$")
  return ip, tonumber(port)
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
natpunch.run(function()
  if mode == "spoof-register" then
    -- ARGS: bind_ip sport server count: registrations and connects "from" the
    -- victim (SNAT), as a reflection/amplification attacker would send them
    local u = sock(arg[3], tonumber(arg[4]))
    local sip, sport = split(arg[5])
    local n = tonumber(arg[6])
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
        u:send(sip, sport, b, "control")
        sent = sent + #b + 1
      end
      if i % 10 == 0 then natpunch.sleep(0.01) end
    end
    natpunch.sleep(0.3)
    out.sent_bytes = sent
  elseif mode == "takeover" then
    -- ARGS: bind_ip spoof_sport own_sport server id: register `id` with our
    -- own key from the owner's address (forged) and from ours, then
    -- unregister it from the owner's address
    local sip, sport = split(arg[6])
    local id = arg[7]
    local kp = auth.keypair()
    local forged = sock(arg[3], tonumber(arg[4]))
    forged:send(sip, sport, msg.encode({ t = "register", id = id, pk = kp.pk, tx = "f1" }, msg.MIN_REQUEST),
      "control")
    forged:send(sip, sport, msg.encode({ t = "unregister", id = id }, msg.MIN_REQUEST), "control")
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
    own:close(); forged:close()
  elseif mode == "forge-introduce" then
    -- ARGS: bind_ip sport target cand,cand,...: "server" messages to a peer
    -- (the SNAT rule makes them come from the peer's rendezvous)
    local u = sock(arg[3], tonumber(arg[4]))
    local tip, tport = split(arg[5])
    local fields = { t = "introduce", peer = "evil", role = "accept", public = "203.0.113.77:9",
      private = arg[6], pk = auth.keypair().pk }
    for i = 1, 20 do
      fields.nonce = string.format("%016x", i)
      u:send(tip, tport, msg.encode(fields), "control")
      local f = auth.seal(auth.keypair().pk, "s", { t = "introduce", peer = "evil", role = "accept",
        public = fields.public, private = fields.private, pk = fields.pk, nonce = string.format("%016x", 100 + i) },
        i)
      u:send(tip, tport, msg.encode(f), "control")
    end
    natpunch.sleep(0.3)
    out.sent = 40
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
