-- Robustness of the rendezvous (issue 11): it never raises on any input,
-- and under a soak of bogus registrations and spoofed frames its memory
-- stays bounded while legitimate peers are still served.
local helper = require "spec.helper"
local core = require "natpunch.core"
local natpunch = require "natpunch"
local msg = require "natpunch.msg"
local auth = require "natpunch.auth"
local rawclient = require "spec.rawclient"

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
      local c = rawclient.new(ip, port)
      assert.equal("registered", c.register("long").t)
      -- the issue's shape (the old reply quoted the target, larger than
      -- msg.MAX_SIZE), unauthenticated, and a long one with the MAC
      c.send_raw("\4" .. msg.encode({ t = "connect", tx = "x", target = ("t"):rep(1170) }))
      c.send({ t = "connect", id = "long", tx = "y", target = ("t"):rep(1100) }, false)
      local m = c.register("long")
      assert.truthy(m, "the server stopped answering")
      assert.equal("registered", m.t)
      assert.equal(errors0, core.callback_errors())
      assert.equal(0, rv:stats().internal_errors)
      assert.is_true(rv:stats().errors >= 2)
      c.close(); rv:close()
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
      -- valid messages are authenticated (docs/SECURITY.md): each belongs to
      -- the source port its cookie and registration are for
      local valid = {}
      local kp = auth.keypair()
      local seq = 0
      for i = 1, 20 do
        local p = sport + i % 16
        seq = seq + 1
        valid[#valid + 1] = { rawclient.signed(rv, kp, "127.0.0.1", p, { t = "register", id = "peer" .. i,
          tx = tostring(i), private = "127.0.0.1:" .. (1000 + i) }, seq), p }
        for r = 1, 5 do          -- connects with new sequence numbers (a repeat is a replay)
          seq = seq + 1
          valid[#valid + 1] = { rawclient.signed(rv, kp, "127.0.0.1", p, { t = "connect", id = "peer" .. i,
            target = "peer" .. (i % 20 + 1), tx = "c" .. i .. "." .. r }, seq), p }
        end
      end
      for i = 1, 40000 do
        local body, vport
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
        elseif kind == 1 then                              -- valid ones, from their sources
          local v = valid[1 + rand(#valid)]
          body, vport = v[1], v[2]
        elseif kind == 2 then                              -- one long field in a typed message
          local f = { t = types[1 + rand(#types)], tx = tostring(i) }
          local k = keys[1 + rand(#keys)]
          if #k > 0 then f[k] = ("z"):rep(900 + rand(300)) end
          local ok, b = pcall(msg.encode, f)
          body = ok and b or valid[1][1]
        else                                               -- mutated valid ones
          local b = { valid[1 + rand(#valid)][1]:byte(1, -1) }
          for _ = 1, 1 + rand(6) do b[1 + rand(#b)] = rand(256) end
          body = string.char(table.unpack(b))
        end
        -- replies go to the sink's port and its 15 neighbours (mostly
        -- nobody: loopback drops them), so registered sources also send
        -- connects; now and then a source from anywhere
        local port = vport or (rand(8) == 0 and (1 + rand(65535)) or (sport + rand(16)))
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
