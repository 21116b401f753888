-- The STUN codec through its Lua binding (natpunch.core.stun): RFC 5769
-- vectors, round trips, the Binding fast path, and the error conventions
-- (nil, message, code for bad bytes; raise for misuse).
local core = require "natpunch.core"
local stun = core.stun

local function unhex(s)
  s = s:gsub("%s+", "")
  return (s:gsub("..", function(h) return string.char(tonumber(h, 16)) end))
end

local function hex(s)
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

-- RFC 5769 §2.1-2.4
local REQ21 = unhex [[
  000100582112a442b7e7a701bc34d686fa87dfae802200105354554e2074657374
  20636c69656e74002400046e0001ff80290008932ff9b151263b36000600096576
  746a3a6836765920202000080014 9aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a2
  80280004e57a3bcf]]
local RESP22 = unhex [[
  0101003c2112a442b7e7a701bc34d686fa87dfae8022000b7465737420766563746f
  7220002000080001a147e112a643000800142b91f599fd9e90c38c7489f92af9ba53
  f06be7d780280004c07d4c96]]
local RESP23 = unhex [[
  010100482112a442b7e7a701bc34d686fa87dfae8022000b7465737420766563746f
  7220002000140002a1470113a9faa5d3f179bc25f4b5bed2b9d900080014a382954e
  4be67bf11784c97c8292c275bfe3ed4180280004c8fb0b4c]]
local REQ24 = unhex [[
  000100602112a44278ad3433c6ad72c029da412e00060012e3839ee38388e383aae3
  8383e382afe382b900000015001c662f2f3439396b39353464364f4c33346f4c3946
  53547679363473410014000b6578616d706c652e6f726700000800 14f67024656dd6
  4a3e02b8e0712e85c9a28ca89666]]
local PASSWORD = "VOkJxbRl1RmTxUk/WvJxBt"
-- RFC 3489 Binding Request as Debian's `stun` client sends it
local CLASSIC = unhex [[
  00010008015e7a130a449bc25531700d3c918f2000030004 00000000]]

describe("natpunch.core.stun", function()
  describe("decode of the RFC 5769 vectors", function()
    it("reads the sample request (2.1)", function()
      local m = assert(stun.decode(REQ21, PASSWORD))
      assert.equal("binding", m.method)
      assert.equal(1, m.method_code)
      assert.equal("request", m.class)
      assert.equal("b7e7a701bc34d686fa87dfae", hex(m.transaction_id))
      assert.is_nil(m.classic)
      assert.equal("STUN test client", m.software)
      assert.equal(0x6e0001ff, m.priority)
      assert.equal(0x932ff9b151263b36, m.ice_controlled)
      assert.equal("evtj:h6vY", m.username)
      assert.is_true(m.integrity)
      assert.is_true(m.fingerprint)
      assert.is_nil(m.integrity_sha256)
      assert.is_nil(m.unknown_required)
    end)

    it("tells a wrong key from no key", function()
      local bad = assert(stun.decode(REQ21, "not the password"))
      assert.is_false(bad.integrity)
      assert.is_true(bad.fingerprint)
      local nokey = assert(stun.decode(REQ21))
      assert.is_nil(nokey.integrity)
      assert.is_true(nokey.has_integrity)
    end)

    it("sees a flipped bit", function()
      local b = REQ21:sub(1, 55) .. string.char(REQ21:byte(56) ~ 1) .. REQ21:sub(57)
      local m = assert(stun.decode(b, PASSWORD))
      assert.is_false(m.integrity)
      assert.is_false(m.fingerprint)
    end)

    it("reads the IPv4 response (2.2)", function()
      local m = assert(stun.decode(RESP22, PASSWORD))
      assert.equal("success", m.class)
      assert.equal("test vector", m.software)
      assert.same({ family = "inet", ip = "192.0.2.1", port = 32853 }, m.xor_mapped_address)
      assert.is_true(m.integrity)
      assert.is_true(m.fingerprint)
    end)

    it("reads the IPv6 response (2.3)", function()
      local m = assert(stun.decode(RESP23, PASSWORD))
      assert.same({ family = "inet6", ip = "2001:db8:1234:5678:11:2233:4455:6677", port = 32853 },
        m.xor_mapped_address)
      assert.is_true(m.integrity)
      assert.is_true(m.fingerprint)
    end)

    it("verifies long-term credentials (2.4)", function()
      local user = "\u{30DE}\u{30C8}\u{30EA}\u{30C3}\u{30AF}\u{30B9}"
      -- SASLprep("The\u{00AD}M\u{00AA}tr\u{2168}x") is "TheMatrIX"
      local key = stun.long_term_key(user, "example.org", "TheMatrIX")
      assert.equal(16, #key)
      local m = assert(stun.decode(REQ24, key))
      assert.equal(user, m.username)
      assert.equal("example.org", m.realm)
      assert.equal("f//499k954d6OL34oL9FSTvy64sA", m.nonce)
      assert.is_true(m.integrity)
      assert.is_nil(m.fingerprint)
      assert.is_false(assert(stun.decode(REQ24, "TheMatrIX")).integrity)
    end)

    it("reads an RFC 3489 request as classic", function()
      local m = assert(stun.decode(CLASSIC))
      assert.is_true(m.classic)
      assert.equal(16, #m.transaction_id)
      assert.same({ ip = false, port = false }, m.change_request)
    end)
  end)

  describe("encode", function()
    it("round-trips every attribute with integrity and fingerprint", function()
      local msg = {
        method = "binding", class = "success",
        xor_mapped_address = { ip = "203.0.113.1", port = 3478 },
        mapped_address = { family = "inet6", ip = "2001:db8::1", port = 1 },
        response_origin = { family = "inet", ip = "198.51.100.1", port = 3478 },
        other_address = { family = "inet", ip = "198.51.100.2", port = 3479 },
        source_address = { family = "inet", ip = "198.51.100.3", port = 1000 },
        changed_address = { family = "inet6", ip = "::1", port = 65535 },
        username = "alice:bob", software = "natpunch", realm = "example.org", nonce = "abc",
        error = { code = 420, reason = "Unknown Attribute" },
        unknown_attributes = { 0x31, 0x7fff },
        change_request = { ip = true, port = false },
        response_port = 4000, padding = 9, priority = 0x7e0000ff, use_candidate = true,
        ice_controlling = -2, ice_controlled = 0x0102030405060708,
        integrity = true, integrity_sha256 = true, fingerprint = true,
      }
      local bytes = stun.encode(msg, "s3cret")
      assert.is_true(stun.is_stun(bytes))
      local m = assert(stun.decode(bytes, "s3cret"))
      assert.equal(12, #m.transaction_id)
      for _, k in ipairs { "response_origin", "other_address", "source_address", "changed_address",
                           "error", "unknown_attributes", "change_request" } do
        assert.same(msg[k], m[k])
      end
      assert.same({ family = "inet", ip = "203.0.113.1", port = 3478 }, m.xor_mapped_address)
      assert.same(msg.mapped_address, m.mapped_address)
      for _, k in ipairs { "username", "software", "realm", "nonce", "response_port", "padding",
                           "priority", "use_candidate", "ice_controlling", "ice_controlled" } do
        assert.equal(msg[k], m[k])
      end
      assert.is_true(m.integrity)
      assert.is_true(m.integrity_sha256)
      assert.is_true(m.fingerprint)
      assert.is_false(assert(stun.decode(bytes, "other")).integrity_sha256)
    end)

    it("keeps a given transaction id and makes fresh random ones", function()
      local tid = ("\1"):rep(12)
      assert.equal(tid, assert(stun.decode(stun.encode { transaction_id = tid })).transaction_id)
      local a = stun.decode(stun.encode {}).transaction_id
      local b = stun.decode(stun.encode {}).transaction_id
      assert.equal(12, #a)
      assert.not_equal(a, b)
      local c = assert(stun.decode(stun.encode { classic = true }))
      assert.is_true(c.classic)
      assert.equal(16, #c.transaction_id)
    end)

    it("takes other methods as numbers", function()
      local m = assert(stun.decode(stun.encode { method = 0x00A, class = "indication" }))
      assert.equal(10, m.method)
      assert.equal(10, m.method_code)
      assert.equal("indication", m.class)
    end)

    it("builds messages larger than one MTU", function()
      local big = stun.encode { padding = 3000, fingerprint = true }
      assert.equal(20 + 4 + 3000 + 8, #big)
      assert.is_true(assert(stun.decode(big)).fingerprint)
    end)

    it("refuses text attributes beyond their RFC 5389 caps (USERNAME 512, others 763 bytes)", function()
      assert.truthy(stun.decode(stun.encode { username = ("u"):rep(512) }))
      local m, err, code = stun.decode(stun.encode { username = ("u"):rep(513) })
      assert.is_nil(m)
      assert.equal("EATTRLEN", code, err)
      assert.truthy(stun.decode(stun.encode { software = ("x"):rep(763) }))
      assert.is_nil(stun.decode(stun.encode { software = ("x"):rep(764) }))
    end)
  end)

  describe("answer_binding", function()
    local req = stun.encode { class = "request", fingerprint = true }
    local tid = assert(stun.decode(req)).transaction_id

    it("answers an IPv4 request", function()
      local resp = assert(stun.answer_binding(req, "203.0.113.7", 40000, "natpunch test"))
      assert.is_true(#resp <= 128)
      local m = assert(stun.decode(resp))
      assert.equal("success", m.class)
      assert.equal(tid, m.transaction_id)
      assert.same({ family = "inet", ip = "203.0.113.7", port = 40000 }, m.xor_mapped_address)
      assert.same(m.xor_mapped_address, m.mapped_address)
      assert.equal("natpunch test", m.software)
      assert.is_true(m.fingerprint)
    end)

    it("answers an IPv6 request", function()
      local resp = assert(stun.answer_binding(REQ21, "2001:db8::7", 1))
      assert.is_true(#resp <= 128)
      local m = assert(stun.decode(resp))
      assert.same({ family = "inet6", ip = "2001:db8::7", port = 1 }, m.xor_mapped_address)
      assert.is_nil(m.software)
      assert.is_true(m.fingerprint)
    end)

    it("answers a classic request with MAPPED-ADDRESS only", function()
      local m = assert(stun.decode(assert(stun.answer_binding(CLASSIC, "198.51.100.9", 5000))))
      assert.is_true(m.classic)
      assert.equal(CLASSIC:sub(5, 20), m.transaction_id)
      assert.same({ family = "inet", ip = "198.51.100.9", port = 5000 }, m.mapped_address)
      assert.is_nil(m.xor_mapped_address)
    end)

    it("adds the RFC 5780 addresses when given", function()
      local opts = { origin = { ip = "127.0.0.1", port = 3478 }, other = { ip = "127.0.0.2", port = 3479 } }
      local m = assert(stun.decode(assert(stun.answer_binding(req, "127.0.0.1", 9, nil, opts))))
      assert.equal("127.0.0.1", m.response_origin.ip)
      assert.equal(3479, m.other_address.port)
      local c = assert(stun.decode(assert(stun.answer_binding(CLASSIC, "127.0.0.1", 9, nil, opts))))
      assert.equal(3478, c.source_address.port)
      assert.equal("127.0.0.2", c.changed_address.ip)
    end)

    it("answers 420 to an unknown comprehension-required attribute", function()
      -- splice a type 0x0031 attribute into a request by hand
      local r = stun.encode { transaction_id = tid }
      r = r:sub(1, 2) .. "\0\8" .. r:sub(5) .. "\0\49\0\4abcd"
      assert.same({ 0x31 }, assert(stun.decode(r)).unknown_required)
      local m = assert(stun.decode(assert(stun.answer_binding(r, "127.0.0.1", 9))))
      assert.equal("error", m.class)
      assert.same({ code = 420, reason = "Unknown Attribute" }, m.error)
      assert.same({ 0x31 }, m.unknown_attributes)
    end)

    it("never answers responses, indications or change requests", function()
      local cases = {
        { RESP22, "ENOTREQUEST" },
        { stun.encode { class = "indication" }, "ENOTREQUEST" },
        { stun.encode { method = 3 }, "EMETHOD" },
        { stun.encode { change_request = { ip = true, port = true } }, "ECHANGE" },
        { stun.encode { response_port = 9 }, "ERESPPORT" },
        { "hello world, not stun", "ENOTSTUN" },
        { "\0\1\0\0", "ETRUNCATED" },
      }
      for _, c in ipairs(cases) do
        local resp, msg, code = stun.answer_binding(c[1], "127.0.0.1", 9)
        assert.is_nil(resp)
        assert.equal(c[2], code)
        assert.matches("^" .. c[2] .. ": ", msg)
      end
      assert.truthy(stun.answer_binding(stun.encode { change_request = { ip = true } }, "127.0.0.1", 9,
        nil, { change_ok = true }))
    end)
  end)

  describe("bad input", function()
    it("gives nil, message, code for garbage", function()
      local cases = {
        { "", "ETRUNCATED" },
        { ("\255"):rep(20), "ENOTSTUN" },
        { "\0\1\0\2" .. REQ21:sub(5, 20) .. "ab", "EBADLENGTH" },
        { REQ21 .. "\0\0\0\0", "ETRAILING" },
        { ("\0"):rep(20), "EBADCOOKIE" },
        { "\0\1\0\4" .. REQ21:sub(5, 20) .. "\0\1\0\8", "EATTRTRUNC" },
        { "\1\1\0\8" .. REQ21:sub(5, 20) .. "\0\1\0\4\0\1\0\0", "EATTRLEN" },
        { "\1\1\0\12" .. REQ21:sub(5, 20) .. "\0\1\0\8\0\9\0\0\1\2\3\4", "EBADFAMILY" },
        { "\1\17\0\8" .. REQ21:sub(5, 20) .. "\0\9\0\4\0\0\7\0", "EBADERRCODE" },
        { "\0\1\0\12" .. REQ21:sub(5, 20) .. "\128\40\0\4\0\0\0\0\128\34\0\0", "EFPNOTLAST" },
      }
      for i, c in ipairs(cases) do
        local m, msg, code = stun.decode(c[1])
        assert.is_nil(m)
        assert.equal(c[2], code)
        assert.equal("string", type(msg))
        assert.matches("^" .. c[2] .. ": ", msg)
        if i <= 5 then assert.is_false(stun.is_stun(c[1])) end -- header-level errors
      end
    end)

    it("rejects every truncation of every vector", function()
      for _, v in ipairs { REQ21, RESP22, RESP23, REQ24, CLASSIC } do
        for n = 0, #v - 1 do
          local m, msg, code = stun.decode(v:sub(1, n))
          assert.is_nil(m)
          assert.equal("string", type(msg))
          assert.truthy(code == "ETRUNCATED" or code == "EBADLENGTH", code)
        end
        assert.truthy(stun.decode(v))
      end
    end)

    it("raises on wrong argument types", function()
      assert.has_error(function() stun.decode() end)
      assert.has_error(function() stun.decode({}) end)
      assert.has_error(function() stun.decode(REQ21, {}) end)
      assert.has_error(function() stun.encode("x") end)
      assert.has_error(function() stun.encode { integrity = true } end)
      assert.has_error(function() stun.encode { transaction_id = "short" } end)
      assert.has_error(function() stun.encode { class = "response" } end)
      assert.has_error(function() stun.encode { method = "allocat" } end)
      assert.has_error(function() stun.encode { channel_number = 0x3FFF } end)
      assert.has_error(function() stun.channel_data(0x5000, "x") end)
      assert.has_error(function() stun.encode { method = 0x1000 } end)
      assert.has_error(function() stun.encode { username = 42 } end)
      assert.has_error(function() stun.encode { priority = "high" } end)
      assert.has_error(function() stun.encode { error = { code = 200 } } end)
      assert.has_error(function() stun.encode { xor_mapped_address = { ip = "256.1.1.1", port = 1 } } end)
      assert.has_error(function() stun.encode { mapped_address = { ip = "::1", port = 1, family = "inet" } } end)
      assert.has_error(function() stun.encode { other_address = "1.2.3.4:5" } end)
      assert.has_error(function() stun.encode { response_port = 70000 } end)
      assert.has_error(function() stun.answer_binding(REQ21, "nope", 1) end)
      assert.has_error(function() stun.answer_binding(REQ21, "127.0.0.1", "x") end)
      assert.has_error(function() stun.answer_binding(REQ21, "127.0.0.1", 70000) end)
      assert.has_error(function() stun.answer_binding(REQ21, "127.0.0.1", 1, nil, { other = {} }) end)
      assert.has_error(function() stun.is_stun({}) end)
    end)
  end)
  describe("TURN (RFC 8656)", function()
    it("encodes and decodes the TURN methods and attributes", function()
      local bytes = stun.encode {
        method = "channel_bind", class = "request",
        xor_peer_address = { ip = "198.51.100.7", port = 40000 },
        channel_number = 0x4001, lifetime = 600, requested_transport = 17,
        data = "hi", dont_fragment = true, fingerprint = true,
      }
      local m = assert(stun.decode(bytes))
      assert.equal("channel_bind", m.method)
      assert.equal(9, m.method_code)
      assert.same({ ip = "198.51.100.7", port = 40000, family = "inet" }, m.xor_peer_address)
      assert.equal(0x4001, m.channel_number)
      assert.equal(600, m.lifetime)
      assert.equal(17, m.requested_transport)
      assert.equal("hi", m.data)
      assert.is_true(m.dont_fragment)
      assert.is_true(m.fingerprint)
      for _, name in ipairs { "allocate", "refresh", "send", "data", "create_permission" } do
        assert.equal(name, assert(stun.decode(stun.encode { method = name })).method)
      end
      local r = assert(stun.decode(stun.encode { method = "allocate", class = "success",
        xor_relayed_address = { ip = "2001:db8::5", port = 50000 } }))
      assert.same({ ip = "2001:db8::5", port = 50000, family = "inet6" }, r.xor_relayed_address)
    end)

    it("frames ChannelData and rejects what is not one", function()
      local cd = stun.channel_data(0x4002, "payload")
      assert.equal("\x40\x02\x00\x07payload", cd)
      assert.same({ 0x4002, "payload" }, { stun.parse_channel_data(cd) })
      assert.same({ 0x4002, "payload" }, { stun.parse_channel_data(cd .. "\0") })
      assert.is_nil(stun.parse_channel_data("\x40\x02\x00\x09payload"))
      assert.is_nil(stun.parse_channel_data("\x50\x00\x00\x00"))
      assert.is_nil(stun.parse_channel_data("\x40"))
      assert.is_false(stun.is_stun(cd))
    end)

    it("computes the HMAC-SHA1 of TURN REST-API passwords (RFC 2202 case 2)", function()
      local mac = stun.hmac_sha1("Jefe", "what do ya want for nothing?")
      assert.equal("effcdf6ae5eb2fa2d27416d5f184df9c259a7c79",
        (mac:gsub(".", function(c) return string.format("%02x", c:byte()) end)))
    end)
  end)
end)
