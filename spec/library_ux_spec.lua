-- The library keeps its word: misspelt options raise, a pending touch is
-- never left waiting when its peer closes, and the documented return
-- values are the real ones.
local helper = require "spec.helper"
local natpunch = require "natpunch"

describe("library surfaces", function()
  it("raises on unknown option keys, naming the likely one", function()
    helper.run(function()
      local ok, err = pcall(natpunch.rendezvous, { listne = "127.0.0.1:0" })
      assert.is_false(ok)
      assert.matches("rendezvous: unknown option 'listne' (did you mean 'listen'?)", err, 1, true)
      ok, err = pcall(natpunch.peer, { sever = "127.0.0.1:9", id = "a" })
      assert.is_false(ok)
      assert.matches("peer: unknown option 'sever' (did you mean 'server'?)", err, 1, true)
      ok, err = pcall(function()
        local p = natpunch.peer{ server = "127.0.0.1:9", id = "a", frobnicate = 1 }
        return p
      end)
      assert.is_false(ok)
      assert.matches("peer: unknown option 'frobnicate'; options: ", err, 1, true)
      -- the error points at the caller, not into the library
      assert.matches("library_ux_spec.lua", err, 1, true)
      -- every documented option is accepted
      local rv = assert(natpunch.rendezvous{ listen = "127.0.0.1:0", ttl = 5, max_peers = 10, software = "x",
        reuseaddr = true, on_register = function() end, on_connect = function() end, on_event = function() end })
      local p = assert(natpunch.peer{ server = rv:address(), id = "a", bind = "127.0.0.1:0",
        on_message = function() end, on_session = function() end, on_event = function() end,
        register_timeout = 1, connect_timeout = 1, touch_timeout = 1, rto = 0.1, refresh = 1,
        reuseaddr = false, reuseport = false, verbose = false, fallback = 0 })
      p:close()
      -- fallback: seconds (0: never), like upgrade
      ok, err = pcall(natpunch.peer, { server = rv:address(), id = "b", fallback = -1 })
      assert.is_false(ok)
      assert.matches("peer: fallback must be a number of seconds (0: never)", err, 1, true)
      rv:close()
    end)
  end)

  it("calls back a pending touch with an error when its peer is closed", function()
    helper.run(function()
      local rv = assert(natpunch.rendezvous{ listen = "127.0.0.1:0" })
      local a = assert(natpunch.peer{ server = rv:address(), id = "ta", bind = "127.0.0.1:0" })
      local b = assert(natpunch.peer{ server = rv:address(), id = "tb", bind = "127.0.0.1:0" })
      assert(a:register()); assert(b:register())
      local s = assert(a:connect("tb"))
      b:close()                              -- nobody will ever acknowledge
      local got = {}
      for i = 1, 3 do
        assert(s:touch("t" .. i, function(err, rtt) got[#got + 1] = { err, rtt } end))
      end
      local waited = natpunch.future()
      natpunch.spawn(function() waited:set(s:touch("blocking")) end)
      natpunch.sleep(0.05)
      assert.equal(0, #got)
      a:close()
      assert.equal(3, #got)
      for _, g in ipairs(got) do
        assert.equal("closed", g[1])
        assert.is_nil(g[2])
      end
      local r1, r2 = waited:wait(1)
      assert.is_nil(r1)
      assert.equal("closed", r2)
      -- after close: refused at once, never pending
      local id, err = s:touch("late", function() error("must not be called") end)
      assert.is_nil(id)
      assert.equal("closed", err)
      natpunch.sleep(0.05)
      assert.equal(3, #got)                    -- each callback exactly once
      rv:close()
    end)
  end)

  it("returns what the docs say: future:wait, p.registered, lookup()", function()
    local api = helper.read_file("docs/API.md")
    helper.run(function()
      -- future:wait: the values, or nil, "timeout", "ETIMEDOUT"
      local f = natpunch.future()
      local r = table.pack(f:wait(0.01))
      assert.same({ n = 3, nil, "timeout", "ETIMEDOUT" }, r)
      assert.matches('`nil, "timeout", "ETIMEDOUT"` (three values)', api, 1, true)
      f:set(1, 2)
      assert.same({ n = 2, 1, 2 }, table.pack(f:wait()))

      local rv = assert(natpunch.rendezvous{ listen = "127.0.0.1:0" })
      local p = assert(natpunch.peer{ server = rv:address(), id = "doc", bind = "127.0.0.1:0" })
      assert.is_false(p.registered)
      assert.is_nil(p.public)
      assert.matches("`p.registered` (`false` until `register()` succeeds", api, 1, true)
      local public = assert(p:register())
      assert.is_true(p.registered)
      assert.equal(public, p.public)
      assert.equal(rv:address(), p.server)

      local rec = rv:lookup("doc")
      local keys = {}
      for k in pairs(rec) do keys[#keys + 1] = k end
      table.sort(keys)
      -- every field is documented (nat only when the peer registered one;
      -- alloc: its port allocation, "preserving" on loopback)
      for _, k in ipairs(keys) do assert.matches("`" .. k, api:match("`server:lookup%(id%)`[^\n]*"), 1, true) end
      assert.same({ "alloc", "expires", "id", "ip", "key", "port", "private", "public" }, keys)
      assert.equal(public, rec.public)
      assert.equal("number", type(rec.expires))
      assert.matches("`server:lookup(id)` | a copy of the record of `id` (`id`, `public`, `private = {...}`, `ip`, "
        .. "`port`, `expires`, `key`", api, 1, true)
      rec.private[1] = "mutated"                -- a copy: the server's record is untouched
      assert.are_not.equal("mutated", rv:lookup("doc").private[1])
      assert.is_nil(rv:lookup("nobody"))
      p:close(); rv:close()
    end)
  end)

  it("resolves host names on the loop without blocking it", function()
    helper.run(function()
      -- another task runs while the lookup is in the thread pool
      local other = false
      natpunch.spawn(function() natpunch.sleep(0) other = true end)
      assert.equal("127.0.0.1", natpunch.dns.resolve("localhost"))
      assert.is_true(other)
      assert.same({ "203.0.113.9" }, natpunch.dns.lookup("203.0.113.9"))   -- numeric: as is
      local list, err = natpunch.dns.lookup("no-such-host.invalid")
      assert.is_nil(list)
      assert.matches("EAI_", err)
      assert.has_error(function() natpunch.core.getaddrinfo("", nil, function() end) end)
    end)
  end)
end)
