-- The registry of registered peers: O(1) lookups, heap-ordered expiry,
-- bounded sweeps, and its memory per peer (measured, with a generous cap:
-- the exact figure is a `make bench` row).
local helper = require "spec.helper"
local registry = require "natpunch.registry"
local natpunch = require "natpunch"
local msg = require "natpunch.msg"
local core = require "natpunch.core"

local function rec(i, expires)
  local ip = string.format("198.51.%d.%d", i // 250 % 250, i % 250 + 1)
  local port = 1024 + i % 60000
  return registry.record("peer-" .. i, "", ip .. ":" .. port, port, "198.18.0.1:" .. port, expires)
end

describe("registry", function()
  it("keeps the heap and both indexes right under random puts, refreshes, moves and removals", function()
    local r = registry.new()
    local rng, live = 12345, {}
    local function rand(n) rng = (rng * 1103515245 + 12345) % 2147483648; return rng % n end
    for step = 1, 20000 do
      local i = rand(3000)
      local x = r:get("peer-" .. i)
      local op = rand(4)
      if not x then
        local nr = rec(i, rand(100000))
        r:put(nr); live[nr.id] = true
      elseif op == 0 then
        r:remove(x); live[x.id] = nil
      elseif op == 1 then
        r:refresh(x, rand(100000))
      elseif op == 2 then
        r:move(x, "203.0.113.1:" .. step, step)
        assert.equal(x, r:get(x.id))
        assert.equal("203.0.113.1:" .. step, x.public)
        assert.equal(step, x.port)
        assert.equal("203.0.113.1", registry.ip(x))
      end
    end
    assert(r:check())
    local n = 0
    for id in pairs(live) do n = n + 1; assert.is_not_nil(r:get(id)) end
    assert.equal(n, r.count)
    -- expiry comes out earliest first, and only what is due
    local last = -1
    local removed = r:expire(50000, function(x)
      assert.is_true(x.expires >= last and x.expires <= 50000); last = x.expires
      assert.is_nil(r:get(x.id))
    end)
    assert.is_true(removed > 0)
    assert(r:check())
    for _, x in r:each() do assert.is_true(x.expires > 50000) end
  end)

  it("reads the IP and port back from IPv4 and IPv6 records", function()
    local a = registry.record("a", "", "203.0.113.7:3478", 3478, "", 0)
    local b = registry.record("a", "", "[2001:db8::1]:9", 9, "", 0)
    assert.equal("203.0.113.7", registry.ip(a))
    assert.equal(3478, a.port)
    assert.equal("2001:db8::1", registry.ip(b))
    assert.equal(9, b.port)
    assert.has_error(function() registry.record("a", "", "203.0.113.7:3478", 3479, "", 0) end)
  end)

  it("names a record's slots and refuses fields it does not have", function()
    local x = registry.record("a", "k", "203.0.113.7:3478", 3478, "198.18.0.1:1", 5)
    assert.same({ "a", "k", "203.0.113.7:3478", "198.18.0.1:1", 5 },
      { x.id, x.key, x.public, x.private, x.expires })
    assert.is_false(x.last_intro)
    assert.is_nil(x.nat)
    x.nat = "EI/APD"
    assert.equal("EI/APD", x.nat)
    x.nat = nil
    assert.is_nil(x.nat)
    assert.is_nil(x.srv)     -- records from Redis have it; local ones do not
    assert.has_error(function() x.colour = "red" end)
    -- every slot in the array made by the constructor: setting one never grows it
    assert.equal(8, #x)
  end)

  it("expires at most `limit` per call and says when more are due", function()
    local r = registry.new()
    for i = 1, 5000 do r:put(rec(i, i)) end
    local n, more = r:expire(10000, nil, 2000)
    assert.same({ 2000, true }, { n, more })
    assert.equal(2001, r:next_expiry())
    n, more = r:expire(10000, nil, 2000)
    assert.same({ 2000, true }, { n, more })
    n, more = r:expire(10000, nil, 2000)
    assert.same({ 1000, false }, { n, more })
    assert.equal(0, r.count)
    assert.is_nil(r:next_expiry())
  end)

  it("uses a bounded amount of memory per registered peer (measured)", function()
    collectgarbage(); collectgarbage()
    local before = collectgarbage("count")
    local r = registry.new()
    local N = 20000
    for i = 1, N do r:put(rec(i, i)) end
    collectgarbage(); collectgarbage()
    local per = (collectgarbage("count") - before) * 1024 / N
    -- a record (8 slots), its strings, two index slots and a heap slot: about
    -- 500 bytes, a little more where the index tables have just doubled.  A
    -- 9th record field would add 192 bytes and fail this.
    assert.is_true(per > 100 and per <= 600, "bytes per peer: " .. per)
    r:expire(N)
    assert.equal(0, r.count)
  end)

  it("a rendezvous expires a mass of registrations across several loop turns, with events", function()
    helper.run(function()
      local expired = {}
      local rv = assert(natpunch.rendezvous{ listen = "127.0.0.1:0", ttl = 0.2, max_peers = 10000,
        on_event = function(ev) if ev.event == "expired" then expired[#expired + 1] = ev.peer end end })
      local _, ip, port = rv:address()
      local u = core.udp(); assert(u:bind("127.0.0.1", 0))
      -- 5000 registrations straight into the server's handler, as if from 5000
      -- addresses that returned their cookie (docs/SECURITY.md), each MACed
      -- under its own key
      local auth = require "natpunch.auth"
      local kp = auth.keypair()
      local key = assert(auth.shared(kp, rv.keys.pk, "natpunch-control"))
      for i = 1, 5000 do
        local sip, sport = "198.18.0." .. (i % 200 + 1), 1024 + i
        local f = { t = "register", id = "m" .. i, tx = tostring(i), pk = kp.pk,
          cookie = auth.cookie(rv.cookie_secret, sip, sport, core.now() // 1000) }
        rv:_on_packet(nil, msg.encode(auth.seal(key, "p", f, i)), sip, sport, "control")
      end
      assert.equal(5000, rv:stats().peers)
      core.update_time()     -- the loop clock stood still while they were handled
      -- wait on the expiry events, not on the clock: give up only when none
      -- has come for 5 s (a loaded machine is slower, but never stalls)
      local seen, last = #expired, core.now()
      while #expired < 5000 and core.now() - last < 5000 do
        natpunch.sleep(0.05)
        if #expired > seen then seen, last = #expired, core.now() end
      end
      assert.equal(5000, #expired)
      assert.equal(0, rv:stats().peers)
      -- still serving
      local got = natpunch.future()
      u:recv_start(function(_, data) got:set(data) end)
      u:send(ip, port, msg.encode({ t = "register", id = "after", tx = "1", pk = kp.pk }, msg.MIN_REQUEST),
        "control")
      assert.is_not_nil(got:wait(5))
      u:close(); rv:close()
    end, 120)   -- 5000 sealed registrations take a while under load; the waits above bound it
  end)
end)
