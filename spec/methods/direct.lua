-- A test-only traversal method (docs/EXTENDING.md, "Adding a method"): each
-- peer keeps a second UDP socket, tells introduced peers its port (advertise),
-- and reaches the other side's second socket directly on the other side's
-- candidate addresses.  No punching: it works only where nothing filters
-- (loopback, one LAN), which is all the spec needs.  It shows the whole
-- interface: advertise, run under a deadline with a cancel hook, a link on
-- its own socket (ctx:deliver), and close(peer).
local core = require "natpunch.core"
local sched = require "natpunch.sched"
local addr = require "natpunch.addr"

local direct = { name = "direct", transport = "udp" }

local sockets = setmetatable({}, { __mode = "k" })   -- peer -> { udp, waiting = { [nonce] = fn } }

local function side(peer)
  local st = sockets[peer]
  if st then return st end
  local ip = peer:address():match("^(.*):%d+$")
  local u = core.udp()
  assert(u:bind(ip, 0))
  st = { udp = u, waiting = {}, links = {} }
  u:recv_start(function(err, data, from_ip, from_port, kind)
    if err then return end
    local from = addr.format(from_ip, from_port)
    if kind == "control" then            -- "D" or "A" .. nonce: a hello, its answer
      local what, nonce = data:sub(1, 1), data:sub(2)
      if what == "D" then u:send(from_ip, from_port, "A" .. nonce, "control") end
      local w = st.waiting[nonce]
      if w then w(from_ip, from_port) end
    elseif st.links[from] then
      st.links[from]:deliver(data, kind)
    end
  end)
  sockets[peer] = st
  return st
end

function direct.advertise(peer)
  local _, port = side(peer).udp:getsockname()
  return { port = tostring(port) }
end

local Link = {}
Link.__index = Link
function Link:send(data) return self.udp:send(self.ip, self.port, data, "data") end
function Link:touch(data, cb) return self.udp:touch(self.ip, self.port, data, cb) end
function Link:close() self.st.links[self.remote] = nil end

function direct.run(ctx)
  local st = side(ctx.peer)
  local port = tonumber(ctx.info.port)
  if not port then return nil, "the other peer has no direct socket" end
  local found = sched.future()
  st.waiting[ctx.nonce] = function(ip, p) found:set(ip, p) end
  ctx:on_cancel(function() st.waiting[ctx.nonce] = nil end)
  local hello = "D" .. ctx.nonce
  local ip, p
  while ctx:remaining() > 0 do
    for _, c in ipairs(ctx.candidates) do st.udp:send(c[1], port, hello, "control") end
    ip, p = found:wait(math.min(0.05, ctx:remaining()))
    if ip then break end
  end
  st.waiting[ctx.nonce] = nil
  if not ip then return nil, "no answer" end
  local remote = addr.format(ip, p)
  local link = setmetatable({ udp = st.udp, st = st, ip = ip, port = p, remote = remote,
    path = "private", transport = "udp" }, Link)
  function link.deliver(_, data, kind) ctx:deliver(data, kind) end
  st.links[remote] = link
  return link
end

function direct.close(peer)
  local st = sockets[peer]
  if st then st.udp:close(); sockets[peer] = nil end
end

return direct
