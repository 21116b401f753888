-- Rendezvous servers sharing one registry through a real redis-server,
-- started by this spec on a free loopback port with a temporary directory,
-- and always killed at the end: the hiredis binding, cross-server
-- introductions, TTL expiry, and Redis going away and coming back.
local helper = require "spec.helper"
local redis_server = require "spec.redis_server"
local core = require "natpunch.core"
local natpunch = require "natpunch"

local describe_redis = redis_server.available and describe or pending

local function wait_for(cond, seconds)
  local t0 = core.now()
  while not cond() do
    if core.now() - t0 > (seconds or 5) * 1000 then return false end
    natpunch.sleep(0.02)
  end
  return true
end

describe_redis("redis", function()
  local rs
  setup(function() rs = redis_server.start() end)
  teardown(function() if rs then rs:stop() end end)

  local function url() return "redis://127.0.0.1:" .. rs.port end

  local function server(id, extra)
    local logs = {}
    local o = { listen = "127.0.0.1:0", redis = url(), server_id = id, redis_prefix = "np:t:",
      on_log = function(text) logs[#logs + 1] = text end }
    for k, v in pairs(extra or {}) do o[k] = v end
    local rv = assert(natpunch.rendezvous(o))
    rv.logs = logs
    return rv
  end

  local function peer(rv, id, extra)
    local o = { server = (rv:address()), id = id, bind = "127.0.0.1:0" }
    for k, v in pairs(extra or {}) do o[k] = v end
    return assert(natpunch.peer(o))
  end

  it("core.redis runs commands and pub/sub on the loop", function()
    helper.run(function()
      local up = natpunch.future()
      local r = assert(core.redis("127.0.0.1", rs.port, { on_connect = function(err) up:set(err or "ok") end }))
      assert.equal("ok", up:wait(2))
      assert.is_true(r:connected())
      local function call(args)
        local f = natpunch.future()
        assert(r:command(args, function(err, reply) f:set(err or false, reply) end))
        return f:wait(2)
      end
      assert.same({ false, "OK" }, { call({ "SET", "np:t:k", "v" }) })
      assert.same({ false, "v" }, { call({ "GET", "np:t:k" }) })
      assert.same({ false, 2 }, { call({ "RPUSH", "np:t:l", "a", 7 }) })
      assert.same({ false, { "a", "7" } }, { call({ "LRANGE", "np:t:l", 0, -1 }) })
      local err = call({ "NOSUCHCOMMAND" })
      assert.matches("ERR", err)
      local _, missing = call({ "GET", "np:t:missing" })
      assert.is_nil(missing)
      -- pub/sub on a second connection
      local got = natpunch.future()
      local sub = assert(core.redis("127.0.0.1", rs.port, {
        on_message = function(ch, payload, kind) if kind == "message" then got:set(ch, payload) end end }))
      assert(sub:subscribe("np:t:chan"))
      assert(wait_for(function()
        r:command({ "PUBLISH", "np:t:chan", "hello" })
        natpunch.sleep(0.02)
        return got:is_set()
      end))
      assert.same({ "np:t:chan", "hello" }, { got:wait(1) })
      sub:close(); r:close(); r:close()
      assert.is_true(r:is_closed())
      assert.has_error(function() core.redis("localhost", rs.port) end)   -- no name lookups
      -- nothing listens on this port: the failure comes back on the loop (or at once)
      local t = core.tcp(); assert(t:bind("127.0.0.1", 0)); local _, dead = t:getsockname(); t:close()
      local refused = natpunch.future()
      local c, e = core.redis("127.0.0.1", dead, { on_connect = function(cerr) refused:set(cerr) end })
      if c then assert.matches("ECONNREFUSED", refused:wait(2)) else assert.matches("ECONNREFUSED", e) end
    end)
  end)

  it("introduces a peer on one server to a peer on another, and they talk directly", function()
    helper.run(function()
      local rv1, rv2 = server("s1"), server("s2")
      assert(wait_for(function() return rv1:stats().redis == "up" and rv2:stats().redis == "up" end))
      local got = natpunch.future()
      local a = peer(rv1, "alice")
      local b = peer(rv2, "bob", { on_message = function(_, data) got:set(data) end })
      assert(a:register()); assert(b:register())
      assert(wait_for(function() return rs:cli("HGET np:t:peer:bob srv"):match("s2") ~= nil end))
      local s = assert(a:connect("bob"))
      assert.equal(b:address(), s.remote)
      assert(s:touch("hello bob"))
      assert.equal("hello bob", got:wait(2))
      assert.equal(1, rv1:stats().introductions)
      assert.equal(1, rv2:stats().remote_introductions)
      assert.equal(0, rv2:stats().introductions)
      -- and the other way round
      local s2 = assert(b:connect("alice"))
      assert.equal(a:address(), s2.remote)
      -- an id nobody registered
      local ok, err = a:connect("nobody", 1)
      assert.is_nil(ok); assert.matches("unknown peer", err)
      a:close(); b:close(); rv1:close(); rv2:close()
    end, 20)
  end)

  it("registrations expire in Redis with their TTL, and go on unregister", function()
    helper.run(function()
      local rv = server("s3", { ttl = 0.5 })
      assert(wait_for(function() return rv:stats().redis == "up" end))
      local _, ip, port = rv:address()
      -- one registration that is never refreshed, from a plain socket
      -- (speaking the authenticated protocol: docs/SECURITY.md)
      local u = require("spec.rawclient").new(ip, port)
      assert.equal("registered", u.register("short").t)
      assert(wait_for(function() return rs:cli("EXISTS np:t:peer:short"):match("1") ~= nil end))
      local pttl = tonumber(rs:cli("PTTL np:t:peer:short"):match("-?%d+"))
      assert.is_true(pttl > 0 and pttl <= 500, "PTTL " .. tostring(pttl))
      assert(wait_for(function() return rs:cli("EXISTS np:t:peer:short"):match("0") ~= nil end, 3))
      assert(wait_for(function() return rv:lookup("short") == nil end, 2))
      -- a peer that unregisters (close) is gone from Redis at once, long before its TTL
      local rv2 = server("s3b", { ttl = 60 })
      assert(wait_for(function() return rv2:stats().redis == "up" end))
      local a = peer(rv2, "leaving")
      assert(a:register())
      assert(wait_for(function() return rs:cli("EXISTS np:t:peer:leaving"):match("1") ~= nil end))
      a:close()
      assert(wait_for(function() return rs:cli("EXISTS np:t:peer:leaving"):match("0") ~= nil end, 3))
      u.close(); rv:close(); rv2:close()
    end, 15)
  end)

  it("an id is bound to its key across servers: another key is refused on another server", function()
    helper.run(function()
      local rv1, rv2 = server("s6"), server("s7")
      assert(wait_for(function() return rv1:stats().redis == "up" and rv2:stats().redis == "up" end))
      local seed = string.rep("\1", 32)   -- the owner's key, the same in two processes
      local a = peer(rv1, "owned", { seed = seed })
      assert(a:register())
      assert(wait_for(function() return rs:cli("HGET np:t:peer:owned srv"):match("s6") ~= nil end))
      -- key B on server 2: refused, and nothing of it reaches Redis or server 2
      local b = peer(rv2, "owned", { register_timeout = 2 })
      local ok, err = b:register()
      assert.is_nil(ok); assert.matches("id taken", err)
      assert.equal(1, rv2:stats().claims_refused)
      assert.is_nil(rv2:lookup("owned"))
      assert.truthy(rs:cli("HGET np:t:peer:owned srv"):match("s6"))
      -- a third peer on server 2 still reaches the owner on server 1
      local c = peer(rv2, "asker")
      assert(c:register())
      local sess = assert(c:connect("owned"))
      assert.equal(a:address(), sess.remote)
      -- the owner's own key on server 2 (a failover) is accepted there
      local a2 = peer(rv2, "owned", { seed = seed })
      assert(a2:register())
      assert(wait_for(function() return rs:cli("HGET np:t:peer:owned srv"):match("s7") ~= nil end))
      -- released when the owner goes: then key B may have the id
      a:close(); a2:close()
      assert(wait_for(function() return rs:cli("EXISTS np:t:peer:owned"):match("0") ~= nil end, 3))
      assert(b:register())
      b:close(); c:close(); rv1:close(); rv2:close()
    end, 20)
  end)

  it("keeps serving its own peers while Redis is down, logs it, and resynchronises when it is back", function()
    helper.run(function()
      local rv1, rv2 = server("s4"), server("s5")
      assert(wait_for(function() return rv1:stats().redis == "up" and rv2:stats().redis == "up" end))
      local a, b = peer(rv1, "a4"), peer(rv2, "b5")
      local c = peer(rv1, "c4")
      assert(a:register()); assert(b:register()); assert(c:register())
      rs:kill()
      assert(wait_for(function() return rv1:stats().redis ~= "up" and rv2:stats().redis ~= "up" end))
      assert.matches("redis down", table.concat(rv1.logs, "\n"))
      -- local service goes on: registration and a same-server introduction
      local d = peer(rv1, "d4")
      assert(d:register())
      assert(a:connect("c4"))
      -- a peer on the other server cannot be found meanwhile
      local ok, err = a:connect("b5", 1)
      assert.is_nil(ok); assert.matches("unknown peer", err)
      -- Redis comes back empty, on the same port: both servers reconnect and
      -- publish their peers again
      rs:start()
      assert(wait_for(function() return rv1:stats().redis == "up" and rv2:stats().redis == "up" end, 10))
      assert.matches("redis up", rv1.logs[#rv1.logs])
      assert(wait_for(function() return rs:cli("EXISTS np:t:peer:b5"):match("1") ~= nil
        and rs:cli("EXISTS np:t:peer:d4"):match("1") ~= nil end))
      assert.is_true(rv1:stats().resynced >= 3)
      assert(d:connect("b5"))
      a:close(); b:close(); c:close(); d:close(); rv1:close(); rv2:close()
    end, 30)
  end)

  it("natpunch rendezvous --redis --workers 2: two processes on one port share the registry", function()
    local json = require "natpunch.json"
    local dir = helper.tmpdir("workers")
    local out = dir .. "/rv.out"
    local cmd = "timeout 60 env " .. helper.cli() .. " rendezvous --listen 127.0.0.1:0 --redis " .. url()
      .. " --workers 2 --json"
    assert(os.execute(helper.sh(cmd .. " > " .. helper.q(out) .. " 2>&1 & echo $! > " .. helper.q(dir .. "/pid"))))
    local pid = helper.read_file(dir .. "/pid"):match("%d+")
    local ok, err = pcall(helper.run, function()
      local address
      assert(wait_for(function()
        local text = helper.read_file(out)
        address = text:match('"event":"listening","address":"([^"]+)"')
        local ups = select(2, text:gsub("redis up", ""))
        return address and text:find('"event":"worker"') and ups >= 2
      end, 10), helper.read_file(out))
      -- 16 peers from 16 sockets: the kernel spreads them over both workers
      local peers = {}
      for i = 1, 16 do
        peers[i] = assert(natpunch.peer{ server = address, id = "w" .. i, bind = "127.0.0.1:0" })
        assert(peers[i]:register())
      end
      local servers = {}
      assert(wait_for(function()
        servers = {}
        local n = 0
        for i = 1, 16 do
          local srv = rs:cli("HGET np:peer:w" .. i .. " srv"):match("%x+")
          if srv then n = n + 1; servers[srv] = true end
        end
        return n == 16
      end))
      local distinct = 0
      for _ in pairs(servers) do distinct = distinct + 1 end
      assert.equal(2, distinct)
      -- every peer reaches the next one, wherever each is registered
      for i = 1, 16 do
        local sess = assert(peers[i]:connect("w" .. (i % 16 + 1)))
        assert(sess:touch("hi"))
      end
      for i = 1, 16 do peers[i]:close() end
      -- the worker's events carry its number
      local n_worker = 0
      for line in helper.read_file(out):gmatch("[^\n]+") do
        local ev = json.decode(line)
        if ev and ev.worker then n_worker = n_worker + 1 end
      end
      assert.is_true(n_worker > 0)
    end, 30)
    os.execute("kill " .. pid .. " 2>/dev/null")
    -- the worker sees its stdin close and stops too
    local gone = false
    for _ = 1, 100 do
      local probe = helper.sh("pgrep -f -- '--redis " .. url() .. " --worke[r]' >/dev/null")
      if not os.execute(probe) then gone = true; break end
      os.execute("sleep 0.05")
    end
    os.execute("rm -rf " .. helper.q(dir))
    assert(ok, err)
    assert.is_true(gone, "worker still running")
  end)

  it("scale test, small: 3 rendezvous processes, 3000 registrations, 300 cross-server introductions", function()
    -- bench/redis_scale.lua starts its own redis-server and servers and
    -- kills them at the end; `make bench` runs it at 100k/10k
    local env = "NATPUNCH_BUILD=" .. helper.q(helper.build) .. " "
    if helper.sanitize then env = env .. "LD_PRELOAD=" .. helper.q(os.getenv("LD_PRELOAD") or "") .. " " end
    local cmd = "env " .. env .. "timeout 120 " .. helper.lua
      .. " bench/redis_scale.lua --registrations 3000 --introductions 300 --json"
    local p = io.popen(cmd .. " 2>&1")
    local text = p:read("a")
    p:close()
    local r = require("natpunch.json").decode(text:match("(%b{})%s*$") or "")
    assert(r, text)
    assert.equal(3, r.servers)
    assert.equal(3000, r.registrations)
    assert.equal(300, r.introductions)
    assert.equal(300, r.introductions_answered)
    assert.equal(300, r.introductions_delivered)
    assert.is_true(r.redis_keys >= 3000)
    assert.is_number(r.intro_p50_ms)
    assert.is_number(r.redis_bytes_per_peer)
  end)
end)
