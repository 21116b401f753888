--- Authentication of the rendezvous protocol (docs/SECURITY.md).
--
-- * Keys: every peer and every server has an Ed25519 key pair (libsodium,
--   core.crypto).  X25519 between two of them (the Ed25519 keys converted)
--   gives a shared key that nobody else, the server included, can compute.
-- * Cookies: a server answers a first registration with a stateless cookie,
--   an HMAC of the source address and a timestamp under a per-process
--   secret (DTLS HelloVerifyRequest, QUIC Retry).  Only a source that
--   received it can send it back: return routability before any state.
-- * Control MACs: every control message after the cookie carries `seq` and
--   `mac` (16-byte keyed BLAKE2b of the canonical encoding, per direction);
--   receivers compare in constant time and keep a 64-message replay window.
-- * Tokens: with a deployment secret, a registration must carry
--   `expiry:id:hex(HMAC-SHA-256(secret, "expiry:id"))`, the shape of
--   coturn's TURN REST API credentials, so operators mint them elsewhere.
-- * Token buckets for rate limits.
local core = require "natpunch.core"
local msg = require "natpunch.msg"

local crypto = core.crypto
local auth = {}

auth.KEY_LEN = 32           -- public keys, shared keys
auth.MAC_LEN = 16
auth.COOKIE_LEN = 20        -- 4-byte time + 16-byte MAC
auth.WINDOW = 64            -- replay window (messages)
auth.MAX_TOKEN = 200

local function hex(bytes)
  return (bytes:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end
auth.hex = hex

local function unhex(s)
  if type(s) ~= "string" or #s % 2 ~= 0 or not s:match("^%x*$") then return nil end
  return (s:gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end))
end
auth.unhex = unhex

--------------------------------------------------------------- keys

--- A key pair: { pk = 32 bytes, sk = 64 bytes }.  seed: 32 bytes or nil.
function auth.keypair(seed)
  local pk, sk = crypto.keypair(seed)
  return { pk = pk, sk = sk }
end

--- Load a key pair from a file holding a 64-hex-digit seed; with create,
-- a missing file is created (mode 0600) with a fresh seed.
function auth.load_key(path, create)
  local f = io.open(path, "r")
  if not f then
    if not create then return nil, "cannot read key file " .. path end
    local seed = crypto.random(32)
    local old = io.open(path, "r")
    if old then old:close() return nil, "key file appeared while creating it" end
    os.execute("umask 077 && : > '" .. path:gsub("'", "'\\''") .. "'")
    f = io.open(path, "w")
    if not f then return nil, "cannot create key file " .. path end
    f:write(hex(seed), "\n")
    f:close()
    return auth.keypair(seed)
  end
  local text = f:read("a") or ""
  f:close()
  local seed = unhex(text:match("^%s*(%x+)%s*$") or "")
  if not seed or #seed ~= 32 then return nil, "key file " .. path .. ": expected 64 hex digits" end
  return auth.keypair(seed)
end

--- The key two parties share: X25519 between kp's secret and their public
-- key, hashed with both public keys (sorted, so both sides agree) and a
-- label.  nil, reason for an invalid public key.
function auth.shared(kp, their_pk, label)
  if type(their_pk) ~= "string" or #their_pk ~= auth.KEY_LEN then return nil, "bad public key" end
  local raw, err = crypto.kx(kp.sk, their_pk)
  if not raw then return nil, err end
  local a, b = kp.pk, their_pk
  if b < a then a, b = b, a end
  return crypto.hash((label or "natpunch") .. a .. b, raw, 32)
end

--- A key for one purpose, derived from a shared key.
function auth.derive(key, purpose)
  return crypto.hash(purpose, key, 32)
end

--------------------------------------------------------------- cookies

local function u32(n) return string.pack(">I4", n & 0xffffffff) end

--- A cookie for ip:port at time now_s (seconds) under secret.
function auth.cookie(secret, ip, port, now_s)
  local t = u32(now_s)
  return t .. crypto.hash(t .. ip .. "|" .. tostring(port), secret, auth.MAC_LEN)
end

--- Whether cookie was made for ip:port less than lifetime_s ago.
function auth.cookie_ok(secret, cookie, ip, port, now_s, lifetime_s)
  if type(cookie) ~= "string" or #cookie ~= auth.COOKIE_LEN then return false end
  local t = string.unpack(">I4", cookie)
  local age = (now_s - t) & 0xffffffff
  if age > lifetime_s then return false end
  return crypto.equal(cookie, auth.cookie(secret, ip, port, t))
end

--------------------------------------------------------------- control MACs

-- The canonical bytes a MAC covers: the direction, then the message
-- encoded without its mac and padding (msg.encode sorts the keys).
local function mac_of(key, dir, fields)
  local mac = fields.mac
  fields.mac = nil
  local ok, body = pcall(msg.encode, fields)
  fields.mac = mac
  if not ok then return nil end
  return crypto.hash(dir .. body, key, auth.MAC_LEN)
end

--- Sign fields in place (adds seq and mac).  dir: "p" peer->server,
-- "s" server->peer, so a message cannot be reflected.
function auth.seal(key, dir, fields, seq)
  fields.seq = seq
  fields.mac = nil
  fields.mac = mac_of(key, dir, fields)
  return fields
end

--- Check the mac of decoded fields; returns the seq (integer) or nil.
-- The replay window is checked separately (auth.window).
function auth.check(key, dir, fields)
  if type(fields.mac) ~= "string" or #fields.mac ~= auth.MAC_LEN then return nil end
  local seq = math.tointeger(tonumber(fields.seq or ""))
  if not seq or seq < 1 or not (fields.seq or ""):match("^%d+$") then return nil end
  local want = mac_of(key, dir, fields)
  if not want or not crypto.equal(want, fields.mac) then return nil end
  return seq
end

--- A sequence number source that only grows, also across restarts of a
-- process that reloads its key: microseconds of wall time, then +1.
function auth.sequence()
  local last = os.time() * 1000000
  return function()
    last = last + 1
    return last
  end
end

--------------------------------------------------------------- replay window

local Window = {}
Window.__index = Window

--- A sliding window over the last `width` sequence numbers (default
-- auth.WINDOW; RFC 4303 section 3.4.3, the IPsec anti-replay window): a
-- number is accepted once, and never when it is width or more below the
-- highest one seen.  Memory is O(width).
function auth.window(width)
  return setmetatable({ hi = 0, width = width or auth.WINDOW, seen = {}, n = 0 }, Window)
end

--- true when seq is new (and marks it seen); false for a replay or one
-- too old for the window.
function Window:accept(seq)
  if seq <= self.hi - self.width or self.seen[seq] then return false end
  self.seen[seq] = true
  self.n = self.n + 1
  if seq > self.hi then self.hi = seq end
  if self.n > 2 * self.width then
    local floor, n = self.hi - self.width, 0
    for k in pairs(self.seen) do
      if k <= floor then self.seen[k] = nil else n = n + 1 end
    end
    self.n = n
  end
  return true
end

--------------------------------------------------------------- tokens

--- Mint a registration token for id, valid until expiry (Unix seconds).
function auth.mint_token(secret, id, expiry)
  local user = tostring(math.floor(expiry)) .. ":" .. id
  return user .. ":" .. hex(crypto.hmac_sha256(secret, user))
end

--- Check a token for id against secret at Unix time now.  true or
-- false, reason.
function auth.token_ok(secret, token, id, now)
  if type(token) ~= "string" or #token > auth.MAX_TOKEN then return false, "token required" end
  local expiry, tid, mac = token:match("^(%d+):(.+):(%x+)$")
  if not expiry or #mac ~= 64 then return false, "malformed token" end
  if tid ~= id then return false, "token is for another id" end
  local want = hex(crypto.hmac_sha256(secret, expiry .. ":" .. tid))
  if not crypto.equal(want, mac:lower()) then return false, "bad token" end
  if tonumber(expiry) < now then return false, "token expired" end
  return true
end

--------------------------------------------------------------- token buckets

local Bucket = {}
Bucket.__index = Bucket

--- A token bucket: burst tokens, refilled at rate per second.
function auth.bucket(rate, burst, now_ms)
  return setmetatable({ rate = rate, burst = burst, tokens = burst, at = now_ms }, Bucket)
end

--- Take one token at now_ms: true, or false when empty.
function Bucket:take(now_ms)
  local t = self.tokens + (now_ms - self.at) * self.rate / 1000
  if t > self.burst then t = self.burst end
  self.at = now_ms
  if t < 1 then
    self.tokens = t
    return false
  end
  self.tokens = t - 1
  return true
end

--------------------------------------------------------------- limiters

local Limiter = {}
Limiter.__index = Limiter

--- Token buckets per key (a source IP), at most max_keys of them: when the
-- table is full, keys whose bucket has refilled are forgotten, and a new
-- key that still finds no room is refused (counted by the caller).
function auth.limiter(rate, burst, max_keys)
  return setmetatable({ rate = rate, burst = burst, max = max_keys or 4096, buckets = {}, n = 0 }, Limiter)
end

--- Take one token for key at now_ms: true, or false when empty or full.
function Limiter:take(key, now_ms)
  local b = self.buckets[key]
  if not b then
    if self.n >= self.max then
      for k, v in pairs(self.buckets) do
        if v.tokens + (now_ms - v.at) * v.rate / 1000 >= v.burst then
          self.buckets[k] = nil
          self.n = self.n - 1
        end
      end
      if self.n >= self.max then return false end
    end
    b = auth.bucket(self.rate, self.burst, now_ms)
    self.buckets[key] = b
    self.n = self.n + 1
  end
  return b:take(now_ms)
end

return auth
