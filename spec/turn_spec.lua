-- TURN relaying (RFC 8656) against a real coturn turnserver on loopback:
-- natpunch.turn allocates, binds channels and refreshes; the socket's relay
-- engine carries data, punch checks and touches over the relay unchanged.
local helper = require "spec.helper"
local core = require "natpunch.core"
local natpunch = require "natpunch"
local turn = require "natpunch.turn"
local addr = require "natpunch.addr"
local turn_server = require "spec.turn_server"

local function socket(handler, bind_ip)
  local u = core.udp()
  assert(u:bind(bind_ip or "127.0.0.1", 0))
  u:recv_start(function(e, data, ip, port, kind)
    if not e then handler(data, ip, port, kind) end
  end)
  return u
end

-- Two sockets and a TURN client on the first: t.a (bound to a_ip) hands
-- the server's answers to t.c, and both put the data they receive into
-- t.a_got / t.b_got (futures; a test may put new ones there).  opts: more
-- fields of turn.client's options.
local function endpoints(srv, a_ip, b_ip, opts)
  local t = { a_got = natpunch.future(), b_got = natpunch.future() }
  t.a = socket(function(data, ip, port, kind)
    if kind == "stun" and t.c:handle(data, ip, port) then return end
    if kind == "data" then t.a_got:set(data, ip, port) end
  end, a_ip)
  t.b = socket(function(data, ip, port, kind)
    if kind == "data" then t.b_got:set(data, ip, port) end
  end, b_ip)
  local o = { udp = t.a, server = srv.address, username = "alice", password = "wonderland" }
  for k, v in pairs(opts or {}) do o[k] = v end
  t.c = assert(turn.client(o))
  return t
end

local function endpoints_close(t)
  t.c:close()
  t.a:close()
  t.b:close()
end

-- Through t.c's allocation (relayed address rip:rport) between t.a and t.b,
-- once bound: `there` to b, which sees it from the relayed address, and
-- `back`, which a sees from b (not from the server).  Returns b's address.
local function exchange(t, rip, rport, there, back)
  local bip, bport = t.b:getsockname()
  assert(t.a:send(bip, bport, there, "data"))
  local data, ip, port = t.b_got:wait(3)
  assert.equal(there, data)
  assert.same({ rip, rport }, { ip, port })           -- b sees the relayed address
  assert(t.b:send(rip, rport, back, "data"))
  data, ip, port = t.a_got:wait(3)
  assert.equal(back, data)
  assert.same({ bip, bport }, { ip, port })           -- a sees b, not the server
  return bip, bport
end

-- A channel toward t.b, data both ways, a touch acknowledged back through
-- it.  Returns b's address.
local function relay_both_ways(t, rip, rport)
  local bip, bport = t.b:getsockname()
  assert.equal(0x4000, assert(t.c:bind(bip, bport)))
  assert.equal(0x4000, t.c:bind(bip, bport))           -- bound once
  exchange(t, rip, rport, "via relay", "back")
  -- a touch: a's frames leave as ChannelData, b's acknowledgement comes back through it
  local acked = natpunch.future()
  t.a:touch(bip, bport, "reliable", function(err, _, rtt) acked:set(err, rtt) end)
  assert.is_nil(acked:wait(5))
  local st = t.a:stats()
  assert.is_true(st.relay_out >= 2 and st.relay_in >= 2)
  assert.equal(0, st.relay_errors)
  return bip, bport
end

describe("natpunch.turn", function()
  it("makes REST-API credentials as coturn checks them", function()
    local user, pass = turn.rest_credentials("s3cret", "alice", 3600, 1000)
    assert.equal("4600:alice", user)
    assert.equal(turn.base64(core.stun.hmac_sha1("s3cret", "4600:alice")), pass)
    assert.equal("", turn.base64(""))
    assert.equal("Zg==", turn.base64("f"))
    assert.equal("Zm8=", turn.base64("fo"))
    assert.equal("Zm9vYmFy", turn.base64("foobar"))
    assert.same({ "127.0.0.1:3478", "u", "p" }, { turn.parse_url("turn://u:p@127.0.0.1:3478") })
    assert.is_nil((turn.parse_url("turn://127.0.0.1:3478")))
    assert.has_error(function() turn.client{ server = "127.0.0.1:1", pasword = "x" } end)
    assert.has_error(function() turn.client{ server = "nowhere" } end)
  end)

  it("encodes and decodes TURN's IPv6 attributes (RFC 8656 §7.3, §18.10-18.12)", function()
    local tid = "abcdefghijkl"
    local req = core.stun.decode(core.stun.encode{ method = "allocate", transaction_id = tid,
      requested_transport = 17, requested_address_family = "inet6", additional_address_family = "inet6" })
    assert.equal("inet6", req.requested_address_family)
    assert.equal("inet6", req.additional_address_family)
    assert.is_nil(req.unknown_required)
    local ans = core.stun.decode(core.stun.encode{ method = "allocate", class = "success", transaction_id = tid,
      xor_relayed_address = { ip = "198.51.100.2", port = 49152 },
      xor_relayed_address2 = { ip = "2001:db8::12", port = 49153 },
      xor_peer_address = { ip = "2001:db8:4::2", port = 40000 },
      address_error = { family = "inet6", code = 440, reason = "Address Family not Supported" } })
    assert.same({ family = "inet", ip = "198.51.100.2", port = 49152 }, ans.xor_relayed_address)
    assert.same({ family = "inet6", ip = "2001:db8::12", port = 49153 }, ans.xor_relayed_address2)
    assert.same({ family = "inet6", ip = "2001:db8:4::2", port = 40000 }, ans.xor_peer_address)
    assert.same({ family = "inet6", code = 440, reason = "Address Family not Supported" }, ans.address_error)
    -- the IPv6 address is XORed with the cookie and the transaction id: not in clear
    local wire = core.stun.encode{ method = "create_permission", transaction_id = tid,
      xor_peer_address = { ip = "2001:db8:4::2", port = 40000 } }
    assert.is_nil(wire:find("\x20\x01\x0d\xb8", 1, true))
    assert.has_error(function() core.stun.encode{ requested_address_family = "ipx" } end)
    assert.has_error(function() core.stun.encode{ address_error = { family = "inet6", code = 200 } } end)
    assert.has_error(function() turn.client{ server = "127.0.0.1:1", family = "inet7" } end)
  end)

  describe("relay engine", function()
    it("checks its arguments and drops ChannelData it has no route for", function()
      local u = socket(function() end)
      assert.has_error(function() u:relay_add("127.0.0.1", 1, "127.0.0.1", 2, 0x4400) end)
      assert.has_error(function() u:relay_add("127.0.0.1", 1, "127.0.0.1", 1, 0x4000) end)
      assert.has_error(function() u:relay_add("nope", 1, "127.0.0.1", 2, 0x4000) end)
      assert.is_true(u:relay_add("127.0.0.1", 1, "127.0.0.1", 2, 0x4000))
      assert.has_error(function() u:relay_add("127.0.0.1", 3, "127.0.0.1", 2, 0x4000) end)
      assert.is_true(u:relay_remove("127.0.0.1", 1))
      assert.is_false(u:relay_remove("127.0.0.1", 1))
      local ip, port = u:getsockname()
      local s = socket(function() end)
      s:send(ip, port, core.stun.channel_data(0x4001, "\5stray"))
      assert.is_true(helper.until_true(function() return u:stats().relay_unknown == 1 end, 2))
      -- a route from s's address: nested ChannelData is dropped, not recursed into
      local sip, sport = s:getsockname()
      assert(u:relay_add("127.0.0.1", 9, sip, sport, 0x4002))
      s:send(ip, port, core.stun.channel_data(0x4002, core.stun.channel_data(0x4002, "\5x")))
      assert.is_true(helper.until_true(function() return u:stats().relay_nested == 1 end, 2))
      u:close()
      s:close()
      core.run("nowait")
    end)
  end)

  describe("against coturn", function()
    local srv
    setup(function()
      assert(turn_server.available, "coturn's turnserver is not installed (make deps installs it)")
      srv = turn_server.start{ user = "alice:wonderland" }
    end)
    teardown(function() if srv then srv:stop() end end)

    it("relays data and touches both ways through an allocation", function()
      helper.run(function()
        local t = endpoints(srv)
        local a, c = t.a, t.c
        local relayed, mapped = assert(c:allocate())
        local rip, rport = assert(addr.parse(relayed))
        assert.equal(a:getsockname(), (addr.parse(mapped)))
        local bip, bport = relay_both_ways(t, rip, rport)
        -- unbind (after an upgrade to a direct path): the route goes; a
        -- later bind takes the same number again (the server still has it
        -- bound to b, and would refuse another) and relays again
        assert.is_true(c:unbind(bip, bport))
        assert.is_false(c:unbind(bip, bport))
        assert.equal(0x4000, assert(c:bind(bip, bport)))
        t.b_got = natpunch.future()
        assert(a:send(bip, bport, "again", "data"))
        local data, ip, port = t.b_got:wait(3)
        assert.equal("again", data)
        assert.same({ rip, rport }, { ip, port })
        endpoints_close(t)
      end, 20)
    end)

    it("reports a wrong password as a TURN error", function()
      helper.run(function()
        local c = assert(turn.client{ server = srv.address, username = "alice", password = "nope" })
        local ok, err, code = c:allocate()
        assert.is_nil(ok)
        assert.equal("ETURN401", code, err)
        c:close()
      end, 15)
    end)

    it("releases the allocation on close (a second one on the same socket is then allowed)", function()
      helper.run(function()
        local c, clients = nil, {}
        local a = socket(function(data, ip, port, kind)
          if kind ~= "stun" then return end
          for _, x in ipairs(clients) do
            if x:handle(data, ip, port) then return end
          end
        end)
        local function client()
          c = assert(turn.client{ udp = a, server = srv.address, username = "alice", password = "wonderland" })
          clients[#clients + 1] = c
          return c
        end
        assert(client():allocate())
        local c1 = c
        -- while it exists, the same 5-tuple cannot allocate again (437, RFC 8656 §7.2)
        local ok, _, code = client():allocate()
        assert.is_nil(ok)
        assert.equal("ETURN437", code)
        c1:close()
        -- coturn frees a released allocation's session on its next timer
        -- tick; without the release it would live for its 600 s lifetime
        local again
        for _ = 1, 30 do
          again = client():allocate()
          if again then break end
          natpunch.sleep(0.2)
        end
        assert.is_truthy(again)
        c:close()
        a:close()
      end, 15)
    end)
  end)

  describe("against coturn on IPv6", function()
    local srv
    setup(function()
      assert(turn_server.available, "coturn's turnserver is not installed (make deps installs it)")
      srv = turn_server.start{ ip = "::1", user = "alice:wonderland" }
    end)
    teardown(function() if srv then srv:stop() end end)

    it("allocates an IPv6 relayed address; permissions, channels, data and touches over it", function()
      helper.run(function()
        local events = {}
        local t = endpoints(srv, "::1", "::1", { on_event = function(ev) events[#events + 1] = ev end })
        local a, b, c = t.a, t.b, t.c
        local relayed, mapped = assert(c:allocate())
        local rip, rport = assert(addr.parse(relayed))
        assert.equal("::1", rip)                            -- coturn's relay-ip, an IPv6 address
        assert.equal("[::1]:" .. select(2, a:getsockname()), mapped)
        assert.equal("inet6", events[1].family)
        -- an IPv4 peer cannot be reached from an IPv6 allocation (RFC 8656 §9.1)
        local ok, _, code = c:bind("127.0.0.1", 9)
        assert.is_nil(ok)
        assert.equal("ETURN443", code)
        assert.equal("::1", (b:getsockname()))
        relay_both_ways(t, rip, rport)
        endpoints_close(t)
      end, 20)
    end)

    it("asks for an IPv4 relayed address from an IPv6-only server and gets 440", function()
      helper.run(function()
        local c = assert(turn.client{ server = srv.address, username = "alice", password = "wonderland",
          family = "inet" })
        local ok, err, code = c:allocate()
        assert.is_nil(ok)
        assert.equal("ETURN440", code, err)
        c:close()
      end, 15)
    end)
  end)

  describe("against coturn reached over IPv6, relaying on both families", function()
    local srv
    setup(function()
      assert(turn_server.available, "coturn's turnserver is not installed (make deps installs it)")
      srv = turn_server.start{ ip = "::1", relay = { "::1", "127.0.0.1" }, user = "alice:wonderland" }
    end)
    teardown(function() if srv then srv:stop() end end)

    it("gives a client on IPv6 an IPv4 relayed address that reaches an IPv4 peer", function()
      helper.run(function()
        local t = endpoints(srv, "::1", nil, { family = "inet" })   -- b: IPv4 only
        local c = t.c
        local relayed, mapped = assert(c:allocate())
        local rip, rport = assert(addr.parse(relayed))
        assert.equal("127.0.0.1", rip)                      -- IPv4, though asked over IPv6
        assert.matches("^%[::1%]:", mapped)
        local ok, _, code = c:bind("::1", 9)                -- and so no IPv6 peer
        assert.is_nil(ok)
        assert.equal("ETURN443", code)
        assert(c:bind(t.b:getsockname()))
        exchange(t, rip, rport, "6 to 4", "4 to 6")
        endpoints_close(t)
      end, 20)
    end)
  end)

  describe("against coturn with a REST-API secret", function()
    local srv
    setup(function() srv = turn_server.start{ secret = "s3cret" } end)
    teardown(function() if srv then srv:stop() end end)

    it("allocates with time-limited credentials and refuses expired ones", function()
      helper.run(function()
        local c = assert(turn.client{ server = srv.address, secret = "s3cret", id = "alice" })
        assert(c:allocate())
        c:close()
        local user, pass = turn.rest_credentials("s3cret", "bob", -60)   -- expired a minute ago
        local old = assert(turn.client{ server = srv.address, username = user, password = pass })
        local ok, _, code = old:allocate()
        assert.is_nil(ok)
        assert.equal("ETURN401", code)
        old:close()
      end, 20)
    end)
  end)
end)
