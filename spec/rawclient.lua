--- A hand-driven control-protocol client for specs: a raw socket that
-- speaks the rendezvous protocol (cookie, key, MACs) with its own Ed25519
-- key and counts the bytes it sends and receives.  Also `signed_register`,
-- a registration body as a source that returned its cookie would send it,
-- for specs that feed the server's packet handler directly.
local core = require "natpunch.core"
local natpunch = require "natpunch"
local msg = require "natpunch.msg"
local auth = require "natpunch.auth"

local rawclient = {}

-- A hand-driven client on a raw socket: speaks the control protocol, keeps
-- its own key, and counts the bytes it sends and receives.
function rawclient.new(ip, port, kp)
  local c = { kp = kp or auth.keypair(), sent = 0, got = 0, inbox = {}, seq = auth.sequence() }
  c.udp = core.udp()
  assert(c.udp:bind("127.0.0.1", 0))
  c.udp:recv_start(function(_, data)
    c.got = c.got + #data
    c.inbox[#c.inbox + 1] = data
  end, { raw = true })
  function c.send_raw(bytes)
    c.sent = c.sent + #bytes
    c.udp:send(ip, port, bytes)
  end
  function c.send(fields, pad)
    if c.key then auth.seal(c.key, "p", fields, c.seq()) end
    c.send_raw("\x04" .. msg.encode(fields, pad == nil and msg.MIN_REQUEST or pad or nil))
  end
  -- the next control message received (decoded), waiting for it up to
  -- `wait` seconds (default 2); nil if none came
  c.seen = 0
  function c.last(wait)
    local deadline = core.now() + (wait or 2) * 1000
    while true do
      for i = #c.inbox, c.seen + 1, -1 do
        local d = c.inbox[i]
        if d:byte(1) == 0x04 then
          c.seen = #c.inbox
          return msg.decode(d:sub(2))
        end
      end
      if core.now() >= deadline then return nil end
      natpunch.sleep(0.005)
    end
  end
  -- the full two-step registration: returns the server's answer
  -- the latest control message already received
  function c.latest()
    for i = #c.inbox, 1, -1 do
      if c.inbox[i]:byte(1) == 0x04 then return msg.decode(c.inbox[i]:sub(2)) end
    end
  end
  function c.register(id, extra)
    local f = { t = "register", id = id, pk = c.kp.pk, tx = "t1" }
    for k, v in pairs(extra or {}) do f[k] = v end
    c.seen = #c.inbox                 -- answers to earlier requests are old news
    c.send(f)
    local ck = c.last()
    assert(ck and ck.t == "cookie", "expected a cookie")
    c.key = assert(auth.shared(c.kp, ck.key, "natpunch-control"))
    f.cookie = ck.cookie
    c.send(f)
    return c.last()
  end
  function c.close() c.udp:close() end
  function c.address()
    local a, p = c.udp:getsockname()
    return a .. ":" .. p
  end
  return c
end

--- The body of a registration from ip:port that returned its cookie, MACed
-- under kp's key with rv (a natpunch.rendezvous); extra fields merged in.
function rawclient.signed(rv, kp, ip, port, fields, seq)
  local key = assert(auth.shared(kp, rv.keys.pk, "natpunch-control"))
  local f = {}
  for k, v in pairs(fields) do f[k] = v end
  f.pk = f.pk or kp.pk
  if f.t == "register" then f.cookie = auth.cookie(rv.cookie_secret, ip, port, core.now() // 1000) end
  return msg.encode(auth.seal(key, "p", f, seq), msg.MIN_REQUEST)
end

return rawclient
