-- The protocol's defences over real loopback sockets (docs/SECURITY.md):
-- return routability, id ownership, quotas, rate limits, authenticated
-- signalling, authenticated punching, encrypted data, and input that used
-- to make a server or a peer raise.  The spoofing specs in network
-- namespaces are in spec/spoof_spec.lua.
local helper = require "spec.helper"
local core = require "natpunch.core"
local natpunch = require "natpunch"
local msg = require "natpunch.msg"
local auth = require "natpunch.auth"

local function server(opts)
  opts = opts or {}
  opts.listen = opts.listen or "127.0.0.1:0"
  local rv = assert(natpunch.rendezvous(opts))
  local ip, port = rv:address():match("^(.-):(%d+)$")
  return rv, rv:address(), ip, tonumber(port)
end

local function new_peer(srv, id, extra)
  local o = { server = srv, id = id, bind = "127.0.0.1:0" }
  for k, v in pairs(extra or {}) do o[k] = v end
  return assert(natpunch.peer(o))
end

local raw_client = require("spec.rawclient").new

describe("security", function()
  it("a registration without a cookie creates no state and gets only a cookie, no larger", function()
    helper.run(function()
      local rv, _, ip, port = server()
      local c = raw_client(ip, port)
      c.send({ t = "register", id = "victim", pk = c.kp.pk, tx = "1" })
      local m = c.last()
      assert.equal("cookie", m.t)
      assert.equal(0, rv:stats().peers)
      assert.is_nil(rv:lookup("victim"))
      assert.is_true(c.got <= c.sent, ("%d bytes out for %d in"):format(c.got, c.sent))
      -- unpadded: the cookie would be larger than the request, so nothing at all
      local before = c.got
      c.send({ t = "register", id = "victim", pk = c.kp.pk, tx = "2" }, false)
      natpunch.sleep(0.05)
      assert.equal(before, c.got)
      assert.is_true(rv:stats().replies_suppressed >= 1)
      c.close(); rv:close()
    end)
  end)

  it("a cookie made for another address does not register", function()
    helper.run(function()
      local rv, _, ip, port = server()
      local a, b = raw_client(ip, port), raw_client(ip, port)
      a.send({ t = "register", id = "x", pk = a.kp.pk, tx = "1" })
      local ck = a.last()
      -- b replays a's cookie (as an attacker spoofing a's source would
      -- have to, without ever seeing the cookie), MACed with a valid key
      b.key = assert(auth.shared(b.kp, ck.key, "natpunch-control"))
      b.send({ t = "register", id = "x", pk = b.kp.pk, tx = "1", cookie = ck.cookie })
      assert.equal("cookie", b.last().t)
      assert.equal(0, rv:stats().peers)
      -- and a stale cookie is refused too
      local old = auth.cookie(rv.cookie_secret, "127.0.0.1", select(2, a.udp:getsockname()),
        core.now() // 1000 - 3600)
      a.key = assert(auth.shared(a.kp, ck.key, "natpunch-control"))
      a.send({ t = "register", id = "x", pk = a.kp.pk, tx = "2", cookie = old })
      assert.equal("cookie", a.last().t)
      assert.equal(0, rv:stats().peers)
      a.close(); b.close(); rv:close()
    end)
  end)

  it("a registration without a valid MAC is dropped", function()
    helper.run(function()
      local rv, _, ip, port = server()
      local c = raw_client(ip, port)
      c.send({ t = "register", id = "m", pk = c.kp.pk, tx = "1" })
      local ck = c.last()
      c.key = auth.keypair().pk     -- not the shared key
      c.send({ t = "register", id = "m", pk = c.kp.pk, tx = "1", cookie = ck.cookie })
      natpunch.sleep(0.05)
      assert.equal(0, rv:stats().peers)
      assert.is_true(rv:stats().bad_mac >= 1)
      c.close(); rv:close()
    end)
  end)

  it("peers own their id: another key cannot take it, from any address", function()
    helper.run(function()
      local rv, srv, ip, port = server()
      local owner = new_peer(srv, "alice")
      assert(owner:register())
      -- another host
      local other = new_peer(srv, "alice")
      local ok, err = other:register()
      assert.is_nil(ok)
      assert.matches("id taken", err)
      -- the same address as the owner, another key (a raw socket cannot
      -- bind the owner's port, so use the owner's socket itself)
      local thief = raw_client(ip, port)
      thief.send({ t = "register", id = "alice", pk = thief.kp.pk, tx = "1" })
      local ck = thief.last()
      thief.key = assert(auth.shared(thief.kp, ck.key, "natpunch-control"))
      local f = { t = "register", id = "alice", pk = thief.kp.pk, tx = "2",
        cookie = auth.cookie(rv.cookie_secret, "127.0.0.1", select(3, owner:address()), core.now() // 1000) }
      auth.seal(thief.key, "p", f, thief.seq())
      owner.udp:send(ip, port, msg.encode(f, msg.MIN_REQUEST), "control")
      natpunch.sleep(0.05)
      assert.equal(auth.hex(owner.keys.pk), rv:lookup("alice").key)
      assert.is_true(rv:stats().id_taken >= 2)
      -- the owner keeps its id across refreshes
      assert(owner:register())
      -- released when the registration goes away: then the other key may have it
      owner:close()
      natpunch.sleep(0.05)
      assert.is_nil(rv:lookup("alice"))
      assert(other:register())
      other:close(); thief.close(); rv:close()
    end)
  end)

  it("unregister needs the id's key and address; an old id cannot remove the current one", function()
    helper.run(function()
      local rv, _, ip, port = server()
      local c = raw_client(ip, port)
      assert.equal("registered", c.register("old").t)
      assert.equal("registered", c.register("new").t)
      assert.equal(2, rv:stats().peers)
      -- an unregister without a MAC, naming the id: ignored
      local key = c.key
      c.key = nil
      c.send({ t = "unregister", id = "new" })
      natpunch.sleep(0.05)
      assert.truthy(rv:lookup("new"))
      -- another host with the right MAC key cannot (wrong source)
      local d = raw_client(ip, port)
      d.key = key
      d.send({ t = "unregister", id = "new" })
      natpunch.sleep(0.05)
      assert.truthy(rv:lookup("new"))
      assert.is_true(rv:stats().wrong_source >= 1)
      -- the old id expires: the new one, same socket, stays
      rv:_drop("old")
      assert.truthy(rv:lookup("new"))
      assert.equal(1, rv.per_socket[c.address()])
      -- the owner can
      c.key = key
      c.send({ t = "unregister", id = "new" })
      natpunch.sleep(0.05)
      assert.is_nil(rv:lookup("new"))
      assert.is_nil(rv.per_socket[c.address()])
      c.close(); d.close(); rv:close()
    end)
  end)

  it("one socket cannot fill the table: per-socket and per-IP quotas", function()
    helper.run(function()
      local rv, _, ip, port = server({ max_per_socket = 3, max_per_ip = 5 })
      local c = raw_client(ip, port)
      for i = 1, 3 do assert.equal("registered", c.register("q" .. i).t) end
      local m = c.register("q4")
      assert.equal("error", m.t)
      assert.matches("too many registrations", m.reason)
      local d = raw_client(ip, port)
      for i = 1, 2 do assert.equal("registered", d.register("r" .. i).t) end
      assert.equal("error", d.register("r3").t)       -- the IP's quota (5) is used up
      assert.equal(5, rv:stats().peers)
      assert.is_true(rv:stats().quota >= 2)
      c.close(); d.close(); rv:close()
    end)
  end)

  it("new keys cost a source at most kx_rate X25519s per second (after its cookie)", function()
    helper.run(function()
      local rv, _, ip, port = server({ kx_rate = 1, kx_burst = 3 })
      local c = raw_client(ip, port)
      for i = 1, 3 do                      -- three new keys: the burst
        c.kp = auth.keypair()
        assert.equal("registered", c.register("k" .. i).t)
      end
      -- a known key for another id is remembered: no new X25519
      assert.equal("registered", c.register("k3b").t)
      -- a fourth new key is refused (no state, no answer)
      c.kp = auth.keypair()
      c.send({ t = "register", id = "k4", pk = c.kp.pk, tx = "a" })
      local ck = c.last()
      c.key = assert(auth.shared(c.kp, ck.key, "natpunch-control"))
      c.send({ t = "register", id = "k4", pk = c.kp.pk, tx = "b", cookie = ck.cookie })
      natpunch.sleep(0.05)
      assert.is_nil(rv:lookup("k4"))
      assert.equal(1, rv:stats().kx_limited)
      c.close(); rv:close()
    end)
  end)

  it("registers through a slow path that duplicates every answer (cookies of earlier transmissions)", function()
    helper.run(function()
      local rv, _, sip, sport = server()
      -- a relay: peer -> server at once, server -> peer 300 ms later, three times
      local relay = core.udp(); relay:bind("127.0.0.1", 0)
      local _, rport = relay:getsockname()
      local pip, pport
      local timers = {}
      relay:recv_start(function(_, data, ip, port)
        if port == sport then
          for _ = 1, 3 do
            local t = core.timer()
            timers[#timers + 1] = t
            t:start(300, 0, function() relay:send(pip, pport, data) end)
          end
        else
          pip, pport = ip, port
          relay:send(sip, sport, data)
        end
      end, { raw = true })
      local p = new_peer("127.0.0.1:" .. rport, "slow")
      assert(p:register())
      assert.truthy(rv:lookup("slow"))
      p:close(); relay:close(); rv:close()
      for _, t in ipairs(timers) do t:close() end
    end)
  end)

  it("a connect needs a tx and its MAC; introductions are rate limited per asker and target", function()
    helper.run(function()
      local rv, srv, ip, port = server({ intro_rate = 1, intro_burst = 3 })
      local b = new_peer(srv, "b")
      assert(b:register())
      local c = raw_client(ip, port)
      assert.equal("registered", c.register("c").t)
      c.send({ t = "connect", id = "c", target = "b" })               -- no tx
      local m = c.last()
      assert.equal("error", m.t)
      assert.matches("tx required", m.reason)
      local key = c.key
      c.key = nil
      c.send({ t = "connect", id = "c", target = "b", tx = "1" })     -- no MAC
      natpunch.sleep(0.05)
      assert.equal(0, rv:stats().introductions)
      c.key = key
      local intros = 0
      for i = 1, 10 do
        c.send({ t = "connect", id = "c", target = "b", tx = "same" })   -- repeats count too
        local r = c.last()
        if r and r.t == "introduce" and i == 1 then intros = intros + 1 end
      end
      assert.equal(1, intros)
      local st = rv:stats()
      assert.equal(1, st.introductions)
      assert.is_true(st.reintroductions <= 2, "reintroductions " .. st.reintroductions)
      assert.is_true(st.rate_limited >= 7, "rate_limited " .. st.rate_limited)
      assert.equal("rate limited", c.latest().reason)
      b:close(); c.close(); rv:close()
    end)
  end)

  it("a 1170-character target or any bad field never raises in the server", function()
    helper.run(function()
      local rv, _, ip, port = server()
      local c = raw_client(ip, port)
      assert.equal("registered", c.register("long").t)
      c.send({ t = "connect", id = "long", target = string.rep("x", 1100), tx = "1" }, false)
      local m = c.last()
      assert.equal("error", m.t)
      assert.equal("invalid target id", m.reason)
      local key = c.key
      c.key = nil                                     -- the issue's shape: 1170 characters
      c.send({ t = "connect", target = string.rep("x", 1170), tx = "1" }, false)
      assert.equal("not registered", c.last().reason)
      c.key = key
      c.send({ t = "register", id = string.rep("y", 1100), tx = "1" }, false)
      c.send({ t = "register", id = "z", pk = "short", tx = "1" })
      c.send({ t = "connect", target = "long", tx = "1" })
      natpunch.sleep(0.05)
      assert.equal(0, rv:stats().internal_errors)
      assert.equal(0, core.callback_errors())
      assert.equal("registered", c.register("long").t)
      c.close(); rv:close()
    end)
  end)

  it("peers accept server messages only with the server's MAC", function()
    helper.run(function()
      local rv, srv = server()
      local a = new_peer(srv, "a")
      assert(a:register())
      local sent_before = a:stats().tx_packets
      -- a forged, unauthenticated introduction "from the server" (the
      -- server's socket sends it, as a spoofer would) makes a punch nothing
      local fake = msg.encode({ t = "introduce", peer = "evil", role = "accept", nonce = "0123456789abcdef",
        public = "127.0.0.1:9", private = "", pk = auth.keypair().pk })
      local aip, aport = select(2, a:address())
      rv.udp:send(aip, aport, fake, "control")
      -- and one with a MAC under another key
      local f = auth.seal(auth.keypair().pk, "s", { t = "introduce", peer = "evil", role = "accept",
        nonce = "0123456789abcdee", public = "127.0.0.1:9", private = "", pk = auth.keypair().pk }, 1)
      rv.udp:send(aip, aport, msg.encode(f), "control")
      -- and a replay of a real server message
      natpunch.sleep(0.05)
      assert.equal(1, a:stats().unauthenticated)
      assert.equal(1, a:stats().bad_mac)
      assert.is_nil(next(a.intros))
      assert.equal(sent_before, a:stats().tx_packets)
      a:close(); rv:close()
    end)
  end)

  it("a replayed server message is refused", function()
    helper.run(function()
      local rv, srv = server()
      local a, b = new_peer(srv, "a"), new_peer(srv, "b")
      assert(a:register()); assert(b:register())
      -- record what the server sends b (through b's receive callback)
      local seen = {}
      local orig = b._on_packet
      b._on_packet = function(self, err, data, ip, port, kind)
        if kind == "control" then seen[#seen + 1] = data end
        return orig(self, err, data, ip, port, kind)
      end
      assert(a:connect("b"))
      natpunch.sleep(0.05)
      local n_intros = 0
      for _ in pairs(b.intros) do n_intros = n_intros + 1 end
      assert.equal(1, n_intros)
      local bad = b:stats().bad_mac
      local bip, bport = select(2, b:address())
      local replay = { table.unpack(seen) }
      assert.is_true(#replay >= 1)
      for _, d in ipairs(replay) do rv.udp:send(bip, bport, d, "control") end
      natpunch.sleep(0.05)
      assert.equal(bad + #replay, b:stats().bad_mac)
      a:close(); b:close(); rv:close()
    end)
  end)

  it("peers never raise on bad candidates and never probe forbidden addresses", function()
    helper.run(function()
      local a = assert(natpunch.peer{ server = "203.0.113.1:9", id = "a", bind = "127.0.0.1:0" })
      local kp = auth.keypair()
      local sent_before = a:stats().tx_packets
      a:_on_introduce({ t = "introduce", peer = "x", role = "accept", nonce = "00112233445566ff", pk = kp.pk,
        public = "1.2.3.4.5:80",
        private = "0.0.0.0:1,127.0.0.1:9,224.0.0.1:9,255.255.255.255:9,169.254.1.1:9,240.0.0.1:9,"
          .. "[::1]:9,999.1.1.1:9,1.2.3.4:0,1.2.3.4:70000" })
      local rec = a.intros["00112233445566ff"]
      local s, err = rec.done:wait(1)
      assert.is_nil(s)
      assert.equal("no usable candidate", err)
      assert.equal(sent_before, a:stats().tx_packets)
      a:close()
    end)
  end)

  it("the server filters registered candidates and extra candidates reach the other peer", function()
    helper.run(function()
      local rv, srv, ip, port = server()
      local c = raw_client(ip, port)
      assert.equal("registered", c.register("c", {
        private = "1.2.3.4.5:80,198.51.100.7:4000,224.0.0.1:9,127.0.0.1:5,0.0.0.0:9," .. string.rep("9", 300) }).t)
      assert.same({ "198.51.100.7:4000", "127.0.0.1:5" }, rv:lookup("c").private)   -- loopback source: loopback ok
      assert.is_true(rv:stats().candidates_dropped >= 4)
      -- natpunch.peer{ candidates = ... }
      local p = new_peer(srv, "p", { candidates = { "198.51.100.9:5000" } })
      assert(p:register())
      assert.equal("198.51.100.9:5000", rv:lookup("p").private[1])
      assert.has_error(function() natpunch.peer{ server = srv, id = "q", candidates = { "224.0.0.1:9" } } end)
      assert.has_error(function() natpunch.peer{ server = srv, id = "q", candidates = { "1.2.3.4.5:80" } } end)
      p:close(); c.close(); rv:close()
    end)
  end)

  it("data and touches are encrypted on the wire and forged ones are dropped", function()
    helper.run(function()
      local rv, srv = server()
      local got = {}
      local b = new_peer(srv, "b", { on_message = function(_, data, kind) got[#got + 1] = kind .. ":" .. data end })
      local a = new_peer(srv, "a")
      assert(a:register()); assert(b:register())
      local s = assert(a:connect("b"))
      assert.truthy(s.encrypted)
      -- see what a's socket sends
      local wire = {}
      local real = s.link.socket
      s.link.socket = setmetatable({ send = function(_, ip, port, data, kind)
        wire[#wire + 1] = data
        return real:send(ip, port, data, kind)
      end, touch = function(_, ...) return real:touch(...) end }, { __index = function(_, k)
        return function(_, ...) return real[k](real, ...) end
      end })
      assert(s:send("plain secret"))
      assert(s:touch("touch secret"))
      natpunch.sleep(0.1)
      s.link.socket = real
      assert.same({ "data:plain secret", "touch:touch secret" }, got)
      assert.is_nil(wire[1]:find("plain secret", 1, true))
      assert.equal(#"plain secret" + 24, #wire[1])
      -- a forged or replayed frame at b's session is dropped and counted
      local bs = b:session("a")
      bs:_deliver("forged data that is long enough", "data")
      bs:_deliver(wire[1], "data")                       -- replay of a real one
      bs:_deliver(wire[1], "touch")                      -- as another kind
      assert.equal(3, b:stats().bad_data)
      assert.equal(2, #got)
      a:close(); b:close(); rv:close()
    end)
  end)

  it("touch frames between the peers carry a MAC; frames without a valid one are dropped", function()
    helper.run(function()
      local rv, srv = server()
      local got = {}
      local b = new_peer(srv, "b", { on_message = function(_, data) got[#got + 1] = data end })
      local a = new_peer(srv, "a")
      assert(a:register()); assert(b:register())
      local s = assert(a:connect("b"))
      assert(s:touch("one"))
      -- from a's own socket (its address), frames a forger would send:
      -- a TOUCH and a TOUCH_ACK without the MAC, and with a wrong one
      local _, bip, bport = b:address()
      local touch = string.pack(">BBI4I4B", 6, 0, 7, 1, 0) .. "forged"
      local ack = string.pack(">BBI4I4B", 7, 0, 7, 1, 0)
      for _, f in ipairs({ touch, ack, touch .. string.rep("\0", 16), ack .. string.rep("\0", 16) }) do
        a.udp:send(bip, bport, f)
      end
      natpunch.sleep(0.1)
      assert.equal(4, b:stats().touch_bad_mac)
      assert.same({ "one" }, got)
      assert(s:touch("two"))                           -- the real ones still go through
      assert.same({ "one", "two" }, got)
      a:close(); b:close(); rv:close()
    end)
  end)

  it("encryption off is an explicit option that both sides see", function()
    helper.run(function()
      local rv, srv = server()
      local b = new_peer(srv, "b", { encrypt = false })
      local a = new_peer(srv, "a")
      assert(a:register()); assert(b:register())
      local s = assert(a:connect("b"))
      assert.falsy(s.encrypted)
      assert(s:touch("hello"))
      a:close(); b:close(); rv:close()
    end)
  end)

  it("punch responses without the peers' MAC never make a path", function()
    helper.run(function()
      local a = assert(natpunch.peer{ server = "127.0.0.1:9", id = "a", bind = "127.0.0.1:0",
        connect_timeout = 0.5 })
      local r = core.udp(); r:bind("127.0.0.1", 0)
      local _, rport = r:getsockname()
      r:recv_start(function(_, data, ip, port)
        if data:byte(1) == 0x08 and data:byte(2) == 0 then
          -- a response that knows the nonce (an on-path attacker) but not the key
          r:send(ip, port, "\x08\x01" .. data:sub(3, 14) .. string.rep("\x07", 8) .. string.rep("\0", 16))
          r:send(ip, port, "\x08\x01" .. data:sub(3, 14) .. string.rep("\x07", 8))
        end
      end, { raw = true })
      a:_on_introduce({ t = "introduce", peer = "r", public = "127.0.0.1:" .. rport, private = "",
        nonce = "0123456789abcdef", role = "accept", pk = auth.keypair().pk })
      local s, err = a.intros["0123456789abcdef"].done:wait(2)
      assert.is_nil(s)
      assert.matches("punch failed", err)
      assert.is_true(a:stats().punch_bad_mac >= 2)
      a:close(); r:close()
    end)
  end)

  it("punch requests that arrive before their session are MAC-checked when it starts", function()
    helper.run(function()
      local key, nonce = string.rep("k", 32), "0123456789abcdef"
      local raw_nonce = nonce:gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end)
      local a = core.udp(); assert(a:bind("127.0.0.1", 0)); a:recv_start(function() end)
      local _, aport = a:getsockname()
      local function sock()
        local u = core.udp(); assert(u:bind("127.0.0.1", 0))
        local got = {}
        u:recv_start(function(_, data) got[#got + 1] = data end, { raw = true })
        return u, got
      end
      local function request(seq, tie)
        return string.pack(">BB", 8, 0) .. raw_nonce .. string.pack(">I4", seq) .. tie
      end
      local b, b_got = sock()   -- the real peer: its early request carries the MAC
      local x, x_got = sock()   -- forgers who know the nonce, not the key
      local x2, x2_got = sock()
      -- more early requests than the cache holds (other nonces): the oldest
      -- are dropped and counted
      for i = 1, 20 do
        x:send("127.0.0.1", aport, "\x08\x00" .. string.pack(">I8I4", i, 1) .. "othertie")
      end
      natpunch.sleep(0.05)
      local f = request(7, "tiebreak")
      b:send("127.0.0.1", aport, f .. core.crypto.hash(f, key, 16))
      f = request(8, "forgedtb")
      x:send("127.0.0.1", aport, f .. string.rep("\0", 16))
      x2:send("127.0.0.1", aport, request(9, "forged2t"))   -- and one with no MAC
      natpunch.sleep(0.1)
      assert.equal(23, a:stats().punch_early)   -- 20 + 3 kept, 16 at most at a time
      local done = natpunch.future()
      local _, bport = b:getsockname()
      assert(a:punch({ nonce = nonce, key = key, candidates = { { "127.0.0.1", bport, "public" } },
        timeout = 300 }, function(err) done:set(err or "ok") end))
      done:wait(2)
      local st = a:stats()
      print(("\nearly punch requests: %d cached, %d dropped for room/age, %d refused by the MAC check; "
        .. "forgers got %d datagrams"):format(st.punch_early, st.punch_early_dropped, st.punch_early_bad_mac,
        #x_got + #x2_got))
      assert.equal(0, #x_got + #x2_got)   -- not acted on: no response, no check toward them
      assert.equal(2, st.punch_early_bad_mac)
      assert.is_true(st.punch_early_dropped >= 23 - 16)
      local answered = false
      for _, d in ipairs(b_got) do
        if d:byte(2) == 1 and string.unpack(">I4", d, 11) == 7 then answered = true end
      end
      assert.is_true(answered, "the real peer's early request was not answered")
      a:close(); b:close(); x:close(); x2:close()
    end)
  end)

  it("deployment secret: registrations need a valid, unexpired token for their id", function()
    helper.run(function()
      local rv, srv = server({ secret = "s3cret" })
      local none = new_peer(srv, "n")
      local ok, err = none:register()
      assert.is_nil(ok); assert.matches("token required", err)
      local wrong = new_peer(srv, "w", { token = auth.mint_token("s3cret", "other", os.time() + 60) })
      ok, err = wrong:register()
      assert.is_nil(ok); assert.matches("another id", err)
      local old = new_peer(srv, "o", { token = auth.mint_token("s3cret", "o", os.time() - 1) })
      ok, err = old:register()
      assert.is_nil(ok); assert.matches("expired", err)
      local forged = new_peer(srv, "f", { token = auth.mint_token("guess", "f", os.time() + 60) })
      ok, err = forged:register()
      assert.is_nil(ok); assert.matches("bad token", err)
      local a = new_peer(srv, "a", { token = auth.mint_token("s3cret", "a", os.time() + 60) })
      local b = new_peer(srv, "b", { secret = "s3cret" })
      assert(a:register()); assert(b:register())
      assert(assert(a:connect("b")):touch("ok"))
      for _, p in ipairs({ none, wrong, old, forged, a, b }) do p:close() end
      rv:close()
    end)
  end)

  it("a pinned server key refuses another server", function()
    helper.run(function()
      local rv, srv = server()
      local ok_p = new_peer(srv, "a", { server_key = rv:key() })
      assert(ok_p:register())
      local bad = new_peer(srv, "b", { server_key = string.rep("ab", 32), register_timeout = 0.5 })
      local ok, err = bad:register()
      assert.is_nil(ok); assert.matches("server key mismatch", err)
      -- per server: "ip:port#KEY"; a server with another key is skipped
      local other = server()
      local c = new_peer(other:address() .. "#" .. rv:key(), "c", { servers = { other:address() .. "#" .. rv:key(),
        srv .. "#" .. rv:key() }, register_timeout = 0.5 })
      assert(c:register())
      assert.equal(srv, c.server)
      local raised, why = pcall(new_peer, srv .. "#12", "d")
      assert.is_false(raised); assert.matches("the key after '#' in a server must be 64 hex digits", why)
      ok_p:close(); bad:close(); c:close(); other:close(); rv:close()
    end)
  end)

  it("the peer's table of introductions is pruned", function()
    helper.run(function()
      local rv, srv = server()
      local a, b = new_peer(srv, "a"), new_peer(srv, "b")
      assert(a:register()); assert(b:register())
      assert(a:connect("b"))
      for _, rec in pairs(a.intros) do rec.started = rec.started - 120000 end
      assert.equal(0, a:_prune_intros())
      a:close(); b:close(); rv:close()
    end)
  end)

  it("keys load from a file and stay the same", function()
    local path = helper.tmpdir("natpunch-key") .. "/peer.key"
    local k1 = assert(auth.load_key(path, true))
    local k2 = assert(auth.load_key(path, false))
    assert.equal(k1.pk, k2.pk)
    local f = io.open(path, "w"); f:write("nothex\n"); f:close()
    assert.is_nil((auth.load_key(path)))
    os.remove(path)
  end)
end)
