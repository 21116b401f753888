-- Fuzzing in the tree (csrc/fuzz, docs/SECURITY.md "Fuzzing"): a short run
-- of every libFuzzer target under ASan+UBSan, and the C port of the
-- control-message decoder (csrc/fuzz/ctlmsg.c, what fuzz_ctlmsg fuzzes)
-- checked against msg.decode on the same inputs.
local helper = require "spec.helper"
local msg = require "natpunch.msg"

local function targets()
  local out = {}
  local p = io.popen("ls csrc/fuzz/fuzz_*.c")
  for line in p:lines() do out[#out + 1] = line:match("fuzz_([%w_]+)%.c$") end
  p:close()
  return out
end

describe("make fuzz", function()
  it("builds every target and runs each for a few thousand inputs without a finding", function()
    local names = targets()
    assert.is_true(#names >= 7, "targets: " .. table.concat(names, " "))
    local out = helper.tmpdir("fuzz")
    local p = io.popen(helper.sh("make --no-print-directory fuzz FUZZ_RUNS=3000 FUZZ_TIME=30 FUZZ_OUT="
      .. helper.q(out) .. " 2>&1; echo exit=$?"))
    local text = p:read("a")
    p:close()
    os.execute(helper.sh("rm -rf " .. helper.q(out)))
    assert.truthy(text:match("exit=0%s*$"), text)
    for _, name in ipairs(names) do
      local runs = text:match("fuzz: " .. name .. " ok: (%d+) inputs")
      assert.truthy(runs, name .. " did not run:\n" .. text)
      assert.is_true(tonumber(runs) >= 3000, name .. ": " .. runs .. " inputs")
    end
  end)
end)

describe("ctlmsg.c (the C port of msg.decode)", function()
  local function hex(s)
    return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
  end

  -- msg.decode's result in ctlmsg_dump's line format
  local function lua_line(body)
    local f, why = msg.decode(body)
    if not f then return "err " .. why end
    local items = {}
    for k, v in pairs(f) do items[#items + 1] = hex(k) .. "=" .. hex(v) end
    table.sort(items)
    return "ok" .. (#items > 0 and (" " .. table.concat(items, " ")) or "")
  end

  it("decodes 6000 generated and mutated bodies exactly as msg.decode does", function()
    local seed = 4242
    local function rand(n)
      seed = (seed * 1103515245 + 12345) % 2147483648
      return seed % n
    end
    local valid = {
      msg.encode({ t = "register", id = "bob", tx = "1", private = "198.18.0.7:4000" }, msg.MIN_REQUEST),
      msg.encode({ t = "connect", target = "bob", tx = "2" }),
      msg.encode({ t = "introduce", peer = "a", public = "203.0.113.1:5", nonce = "00ff", role = "accept" }),
      msg.encode({ t = "unregister", id = "x" }),
    }
    local bodies = { "", "\1", "\2", "\1\1t\0\0", "\1\1_\0\0", "\1\0\0\0", string.rep("\1", 1200),
      string.rep("\1", 1201), "\1\1t\0\1x\1t\0\1y", "\1\1t\0\1x\1_\0\1z\1_\0\0" }
    local many = { "\1" }
    for i = 1, 33 do many[#many + 1] = string.pack(">s1s2", "k" .. i, "v") end
    bodies[#bodies + 1] = table.concat(many)
    bodies[#bodies + 1] = table.concat(many, "", 1, 33) .. string.pack(">s1s2", "t", "x")
    for i = 1, 6000 do
      local kind = i % 5
      local b
      if kind == 0 then
        local t = {}
        for j = 1, rand(64) do t[j] = string.char(rand(256)) end
        b = "\1" .. table.concat(t)
      elseif kind == 1 then
        local v = valid[1 + rand(#valid)]
        b = v:sub(1, rand(#v + 1))
      else
        local v = valid[1 + rand(#valid)]
        local t = { v:byte(1, -1) }
        for _ = 1, 1 + rand(3) do t[1 + rand(#t)] = rand(256) end
        if kind == 4 then t[#t + 1] = rand(256) end
        b = string.char(table.unpack(t))
      end
      bodies[#bodies + 1] = b
    end
    local dir = helper.tmpdir("ctlmsg")
    local f = assert(io.open(dir .. "/in", "wb"))
    for _, b in ipairs(bodies) do f:write(string.pack(">I2", #b), b) end
    f:close()
    local p = io.popen(helper.sh(helper.q(helper.tests_dir .. "/ctlmsg_dump") .. " < " .. helper.q(dir .. "/in")))
    local lines = {}
    for line in p:lines() do lines[#lines + 1] = line end
    p:close()
    os.execute(helper.sh("rm -rf " .. helper.q(dir)))
    assert.are.equal(#bodies, #lines)
    local oks, reasons = 0, {}
    for i, b in ipairs(bodies) do
      local want = lua_line(b)
      assert.are.equal(want, lines[i], "body " .. i .. ": " .. hex(b))
      if want:sub(1, 2) == "ok" then oks = oks + 1 else reasons[want] = true end
    end
    -- both outcomes, and every reason msg.decode gives, were exercised
    assert.is_true(oks > 500, "decoded " .. oks)
    for _, why in ipairs({ "bad size", "unsupported version", "too many fields", "truncated field",
      "no message type" }) do
      assert.truthy(reasons["err " .. why], why)
    end
  end)
end)
