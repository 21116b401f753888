-- Robustness of the rendezvous (issue 11): it never raises on any input,
-- and under a soak of bogus registrations and spoofed frames its memory
-- stays bounded while legitimate peers are still served.
local helper = require "spec.helper"
local core = require "natpunch.core"
local natpunch = require "natpunch"
local msg = require "natpunch.msg"

local function lcg(seed)
  return function(n)
    seed = (seed * 1103515245 + 12345) % 2147483648
    return seed % n
  end
end

describe("rendezvous robustness", function()
  it("answers a connect whose target is 1170 characters without raising", function()
    helper.run(function()
      local rv = assert(natpunch.rendezvous{ listen = "127.0.0.1:0" })
      local _, ip, port = rv:address()
      local errors0 = core.callback_errors()
      local u = core.udp(); assert(u:bind("127.0.0.1", 0))
      local replies = {}
      local got = natpunch.future()
      u:recv_start(function(err, data, _, _, kind)
        if not err and kind == "control" then
          local m = msg.decode(data)
          replies[#replies + 1] = m
          if m and m.tx == "2" then got:set(m) end
        end
      end)
      local function request(fields)
        assert(u:send(ip, port, msg.encode(fields, msg.MIN_REQUEST), "control"))
      end
      request({ t = "register", id = "long", tx = "1" })
      -- the reply quoting the target would be larger than msg.MAX_SIZE
      assert(u:send(ip, port, msg.encode({ t = "connect", tx = "x", target = ("t"):rep(1170) }), "control"))
      request({ t = "register", id = "long", tx = "2" })
      local m = got:wait(5)
      assert.truthy(m, "the server stopped answering")
      assert.equal("registered", m.t)
      assert.equal(errors0, core.callback_errors())
      assert.is_true(rv:stats().replies_suppressed >= 1)
      u:close(); rv:close()
    end)
  end)

  it("handles 40000 generated and mutated control messages without raising", function()
    helper.run(function()
      local rv = assert(natpunch.rendezvous{ listen = "127.0.0.1:0", max_peers = 500 })
      local sink = core.udp(); assert(sink:bind("127.0.0.1", 0))
      sink:recv_start(function() end, { raw = true })
      local _, sport = sink:getsockname()
      local rand = lcg(99)
      local keys = { "t", "id", "tx", "key", "target", "private", "public", "nonce", "peer", "role", "ttl",
        "reason", "_", "" }
      local types = { "register", "connect", "unregister", "introduce", "error", "registered", "", "x" }
      local function str(max)
        local n = rand(math.max(0, max) + 1)
        local pick = rand(6)
        if pick == 0 then return ("a"):rep(n) end
        if pick == 1 then return "peer" .. rand(20) end                         -- ids that exist
        if pick == 2 then                                                        -- candidate lists
          local t = {}
          for i = 1, 1 + rand(40) do
            t[i] = ({ "127.0.0.1:1", "1.2.3.4.5:80", "[::1]:2", "0.0.0.0:0", "x:y", "", "[zz]:1",
              "198.18.0." .. rand(300) .. ":" .. rand(70000) })[1 + rand(8)]
          end
          return table.concat(t, ",")
        end
        local t = {}
        for i = 1, n do t[i] = string.char(rand(256)) end
        return table.concat(t)
      end
      local valid = {}
      for i = 1, 20 do
        valid[#valid + 1] = msg.encode({ t = "register", id = "peer" .. i, tx = tostring(i),
          private = "127.0.0.1:" .. (1000 + i) }, msg.MIN_REQUEST)
        valid[#valid + 1] = msg.encode({ t = "connect", target = "peer" .. (i % 20 + 1), tx = "c" .. i },
          msg.MIN_REQUEST)
      end
      for i = 1, 40000 do
        local body
        local kind = i % 4
        if kind == 0 then                                  -- random fields, known keys and types
          local parts, size = { "\1" }, 1
          for _ = 1, rand(12) do
            local k = rand(3) == 0 and str(8) or keys[1 + rand(#keys)]
            local v = (k == "t" and rand(4) > 0) and types[1 + rand(#types)] or str(msg.MAX_SIZE - 6 - size)
            if #k <= 255 and size + #k + #v + 3 <= msg.MAX_SIZE then
              parts[#parts + 1] = string.pack(">s1s2", k, v)
              size = size + #k + #v + 3
            end
          end
          body = table.concat(parts)
        elseif kind == 1 then                              -- valid ones, from many sources
          body = valid[1 + rand(#valid)]
        elseif kind == 2 then                              -- one long field in a typed message
          local f = { t = types[1 + rand(#types)], tx = tostring(i) }
          local k = keys[1 + rand(#keys)]
          if #k > 0 then f[k] = ("z"):rep(900 + rand(300)) end
          local ok, b = pcall(msg.encode, f)
          body = ok and b or valid[1]
        else                                               -- mutated valid ones
          local b = { valid[1 + rand(#valid)]:byte(1, -1) }
          for _ = 1, 1 + rand(6) do b[1 + rand(#b)] = rand(256) end
          body = string.char(table.unpack(b))
        end
        -- replies go to the sink's port and its 15 neighbours (mostly
        -- nobody: loopback drops them), so registered sources also send
        -- connects; now and then a source from anywhere
        local port = rand(8) == 0 and (1 + rand(65535)) or (sport + rand(16))
        rv:_on_packet(nil, body, "127.0.0.1", port, "control")
        if i % 2000 == 0 then natpunch.sleep(0) end        -- let the replies drain
      end
      local st = rv:stats()
      assert.is_true(st.registrations > 0 and st.introductions > 0 and st.malformed > 0 and st.errors > 0)
      assert.is_true(st.peers <= 500)
      sink:close(); rv:close()
    end, 120)
  end)
end)
