-- The STUNT service and the XSTUNT-style API over loopback: natpunch.stunt
-- init / listen / connect, streams (read, write with back-pressure,
-- half-close, close), the records the server keeps, port prediction, the
-- server's defences, and natpunch.peer{ transport = "tcp" | "auto" }.
-- Through real NATs: spec/tcp_traversal_spec.lua.
local helper = require "spec.helper"
local natpunch = require "natpunch"
local stunt_server = require "natpunch.stunt_server"
local proto = require "natpunch.stunt_proto"

local server = helper.rendezvous

describe("natpunch.stunt", function()
  it("init, listen and connect give a byte stream both ways, with half-close", function()
    helper.run(function()
      local rv = server()
      local addr = rv:address()
      local bob = assert(natpunch.stunt.init{ server = addr, id = "bob" })
      local alice = assert(natpunch.stunt.init{ server = addr, id = "alice" })
      assert.equal("preserving", bob.mapping)   -- loopback: no NAT
      natpunch.spawn(function()
        local s = assert(bob:listen(5))
        assert.equal("alice", s.peer)
        assert.equal("tcp", s.transport)
        assert.equal("private", s.path)
        -- echo until alice half-closes, then say goodbye and close
        while true do
          local data = s:read(5)
          if not data then break end
          assert(s:write(data))
        end
        assert(s:write("bye"))
        assert(s:shutdown())
        s:close()
      end)
      local s = assert(alice:connect("bob"))
      assert.equal("bob", s.peer)
      assert.equal("private", s.path)
      assert.equal("number", type(s.setup_ms))
      assert.equal(rv:lookup("bob") and nil, nil)   -- (UDP registry untouched)
      assert(s:write("ping"))
      assert.equal("ping", s:read_exactly(4, 5))
      -- 3 MiB in 64 KiB writes while the echo comes back: writes wait for
      -- the queue to drain, nothing is lost or reordered
      local blob = {}
      for i = 1, 48 do blob[i] = string.rep(string.char(i), 65536) end
      local sent = table.concat(blob)
      local writer = natpunch.spawn(function()
        for _, b in ipairs(blob) do
          assert(s:write(b))
          assert.is_true(s.tcp:write_queue_size() <= natpunch.stream.HIGH_WATER + 65536)
        end
        assert(s:shutdown())   -- half-close: we still read
      end)
      local got = {}
      while true do
        local data, err = s:read(5)
        if not data then
          assert.equal("eof", err)
          break
        end
        got[#got + 1] = data
      end
      writer:join()
      assert.equal(sent .. "bye", table.concat(got))
      s:close()
      assert.same({ nil, "closed" }, { s:read() })
      alice:close()
      bob:close()
      rv:close()
    end, 20)
  end)

  it("records attempts, successes, failures and the reason per id", function()
    helper.run(function()
      local rv = server()
      local addr = rv:address()
      local bob = assert(natpunch.stunt.init{ server = addr, id = "bob" })
      local alice = assert(natpunch.stunt.init{ server = addr, id = "alice" })
      local s = assert(alice:connect("bob"))
      local b = assert(bob:listen(5))
      s:close()
      b:close()
      -- carol never answers her introductions: alice's punch toward her
      -- port is refused until alice gives up
      local carol = assert(natpunch.stunt.init{ server = addr, id = "carol" })
      carol._accept = function() end
      local none, err = alice:connect("carol", { timeout = 1 })
      assert.is_nil(none)
      assert.matches("no TCP connection to carol %(%d+ attempts: %d+ refused", err)
      local nobody, uerr = alice:connect("nobody", 1)
      assert.is_nil(nobody)
      assert.equal("unknown peer 'nobody'", uerr)
      natpunch.sleep(0.1)
      local recs = {}
      for _, r in ipairs(rv:records()) do recs[r.id] = r end
      assert.equal(2, recs.alice.tcp_attempts)
      assert.equal(1, recs.alice.tcp_successes)
      assert.equal(1, recs.alice.tcp_failures)
      assert.equal("failed", recs.alice.last)
      assert.matches("no TCP connection to carol", recs.alice.reason)
      assert.equal("ok", recs.bob.last)
      assert.is_true(recs.bob.use_stunt)
      assert.equal(1, recs.carol.tcp_attempts)
      assert.equal(0, recs.carol.tcp_successes + recs.carol.tcp_failures)   -- carol said nothing
      assert.equal("preserving", recs.alice.tcp_mapping)
      -- the same over the wire, without registering
      local list = assert(natpunch.stunt.records{ server = addr, id = "alice" })
      assert.equal(1, #list)
      assert.equal(1, list[1].tcp_failures)
      assert.equal("failed", list[1].last)
      assert.same({}, assert(natpunch.stunt.records{ server = addr, id = "nobody" }))
      alice:close()
      bob:close()
      carol:close()
      rv:close()
    end, 20)
  end)

  it("classifies port allocation and predicts the next port", function()
    local function c(list, main)
      local samples = {}
      for i, p in ipairs(list) do samples[i] = { ["local"] = p[1], seen = p[2] } end
      return { stunt_server.classify(samples, main) }
    end
    assert.same({ "preserving", 0 }, c({ { 4000, 4000 }, { 4001, 4001 }, { 4100, 4100 } }, 4000))
    assert.same({ "sequential", 1, 30003 }, c({ { 4000, 30001 }, { 5000, 30002 } }, 30001))
    assert.same({ "sequential", 2, 30007 }, c({ { 4000, 30001 }, { 5000, 30003 }, { 6000, 30005 } }, 30001))
    assert.same({ "random", nil, 30001 }, c({ { 4000, 30001 }, { 5000, 41234 }, { 6000, 20012 } }, 30001))
    assert.same({ "random", nil, 30001 }, c({ { 4000, 30001 } }, 30001))
  end)

  it("refuses what it should, and survives garbage on its TCP port", function()
    helper.run(function()
      local rv = server{ max_peers = 2 }
      local addr = rv:address()
      local ip, port = natpunch.addr.parse(addr)
      -- garbage, an oversized frame, an undecodable one: each connection is
      -- closed and counted; nothing else changes
      for _, junk in ipairs({ "GET / HTTP/1.0\r\n\r\n", string.pack(">I2", 60000) .. "x",
          string.pack(">s2", "\1\0\0"), string.rep("\0", 8) }) do
        local t = natpunch.core.tcp()
        local done = natpunch.future()
        assert(t:connect(ip, port, function() t:write(junk); done:set(true) end))
        done:wait(2)
        local closed = natpunch.future()
        t:read_start(function(_, chunk) if not chunk then closed:set(true) end end)
        assert.is_true(closed:wait(3))
        t:close()
      end
      assert.is_true(rv:stats().tcp_malformed >= 3)
      local a = assert(natpunch.stunt.init{ server = addr, id = "a" })
      local taken, terr = natpunch.stunt.init{ server = addr, id = "a" }
      assert.is_nil(taken)
      assert.matches("id taken", terr)
      assert(natpunch.stunt.init{ server = addr, id = "b" })
      local full, ferr = natpunch.stunt.init{ server = addr, id = "c" }
      assert.is_nil(full)
      assert.matches("server full", ferr)
      local bad, berr = natpunch.stunt.init{ server = addr, id = "bad id!" }
      assert.is_nil(bad)
      assert.matches("invalid id", berr)
      local self_s, serr = a:connect("a", 1)
      assert.is_nil(self_s)
      assert.equal("cannot connect to yourself", serr)
      assert.equal(2, rv:stats().tcp_peers)
      rv:close()
    end, 20)
  end)

  it("is not there with tcp = false; the handshake is checked", function()
    helper.run(function()
      local rv = server{ tcp = false }
      local c, err = natpunch.stunt.init{ server = rv:address(), id = "x", register_timeout = 1 }
      assert.is_nil(c)
      assert.matches("cannot reach the STUNT server", err)
      rv:close()
    end)
    assert.same({ "S", "r", "0123456789abcdef" }, { proto.parse_header(proto.header("S", "r", "0123456789abcdef")) })
    assert.is_nil(proto.parse_header("NPT1Xr\0\0" .. "0123456789abcdef"))
    assert.is_nil(proto.parse_header("short"))
    local r = proto.reader()
    assert.same({}, r:feed(string.pack(">I2", 5)))   -- incomplete: kept
    assert.is_nil(r:feed(string.rep("z", 5)))        -- complete but not a message
  end)
end)

describe("natpunch.peer over TCP", function()
  it("transport = tcp: connect, send and touch over framed messages", function()
    helper.run(function()
      local rv = server()
      local addr = rv:address()
      local got = natpunch.future()
      local bob = natpunch.peer{ server = addr, id = "bob", transport = "tcp",
        on_message = function(s, data, kind)
          if kind == "touch" then got:set(data, s.transport) end
        end }
      assert(bob:register())
      local alice = natpunch.peer{ server = addr, id = "alice", transport = "tcp" }
      local s = assert(alice:connect("bob"))
      assert.equal("tcp", s.transport)
      assert.equal("private", s.path)
      assert(s:send("unreliable in name only"))
      local rtt = assert(s:touch("reliable"))
      assert.equal("number", type(rtt))
      assert.same({ "reliable", "tcp" }, { got:wait(5) })
      alice:close()
      bob:close()
      rv:close()
    end, 20)
  end)

  it("transport = auto: TCP first; UDP when TCP cannot be reached, reported", function()
    helper.run(function()
      local rv = server()
      local addr = rv:address()
      local bob = natpunch.peer{ server = addr, id = "bob", transport = "auto" }
      assert(bob:register())
      local alice = natpunch.peer{ server = addr, id = "alice", transport = "auto" }
      local s = assert(alice:connect("bob"))
      assert.equal("tcp", s.transport)
      alice:close()
      bob:close()
      rv:close()
      -- a rendezvous without its STUNT side: auto goes on with UDP
      local rv2 = server{ tcp = false }
      local events = {}
      local carol = natpunch.peer{ server = rv2:address(), id = "carol", transport = "auto",
        register_timeout = 1 }
      assert(carol:register())
      local dave = natpunch.peer{ server = rv2:address(), id = "dave", transport = "auto",
        register_timeout = 1, on_event = function(ev) events[#events + 1] = ev end }
      local s2 = assert(dave:connect("carol", 5))
      assert.equal("udp", s2.transport)
      local tf
      for _, ev in ipairs(events) do if ev.event == "transport_failed" then tf = ev end end
      assert.equal("tcp", tf and tf.transport)
      carol:close()
      dave:close()
      rv2:close()
    end, 30)
  end)

  it("rejects an unknown transport", function()
    assert.has_error(function() natpunch.peer{ server = "127.0.0.1:1", id = "x", transport = "carrier-pigeon" } end,
      "peer: unknown transport 'carrier-pigeon' (udp, tcp, auto or a list such as tcp,udp)")
  end)
end)
