--- The rendezvous servers of one peer (issue 12, failover): the peer
-- registers with every server of its list at once, keeps each
-- registration refreshed, and knows which servers are up.  Servers share
-- nothing: a peer registered with two can be reached through either.
--
--   local set = servers.new(peer, { "203.0.113.2:3478", "198.51.100.2:3478" })
--   set:register()            --> the first server that answered, or nil, reason
--   set:targets()             --> the live servers, in list order
--
-- One entry per server holds what the peer knows of it: its key, the
-- control key derived from it, the sequence window of its messages, its
-- last cookie, what it saw of us (public, ttl) and its state: "new" (never
-- answered), "up" or "down".  A task per server refreshes an up server
-- every ttl/3 (or peer.refresh) and re-registers a down one with back-off
-- (1 s doubling to 10 s); the peer's requests mark a server down when it
-- does not answer (Peer:_request), which wakes that task at once.  Events:
-- registered (a server's first answer), server_failed (it never answered
-- the first registration), server_down and server_up.
local core = require "natpunch.core"
local sched = require "natpunch.sched"
local addr = require "natpunch.addr"

local servers = {}

local Set = {}
Set.__index = Set

local RETRY_FIRST, RETRY_MAX = 1, 10   -- seconds between registrations of a down server

function servers.new(peer, list)
  local self = setmetatable({ peer = peer, list = {}, by_addr = {} }, Set)
  for i, a in ipairs(list) do
    local ip, port = addr.parse(a)
    local e = { addr = addr.format(ip, port), ip = ip, port = port, index = i, state = "new" }
    self.list[i] = e
    self.by_addr[e.addr] = e
  end
  return self
end

--- The entry of the server at ip:port (nil for anyone else).
function Set:find(ip, port)
  return self.by_addr[addr.format(ip, port)]
end

--- The first server of the list that is up (nil when none is).
function Set:primary()
  for _, e in ipairs(self.list) do
    if e.state == "up" then return e end
  end
  return nil
end

--- The servers a request tries, in order: the up ones (in list order),
-- or every server when none is up.
function Set:targets()
  local out = {}
  for _, e in ipairs(self.list) do
    if e.state == "up" then out[#out + 1] = e end
  end
  if #out == 0 then
    for i, e in ipairs(self.list) do out[i] = e end
  end
  return out
end

function Set:count(state)
  local n = 0
  for _, e in ipairs(self.list) do
    if e.state == state then n = n + 1 end
  end
  return n
end

-- The peer's view of "its" server (peer.server, server_ip, public, ttl:
-- what the methods and discovery use) follows the primary.
function Set:_follow()
  local p = self.peer
  local e = self:primary()
  p.registered = e ~= nil
  if not e then return end
  p.server, p.server_ip, p.server_port = e.addr, e.ip, e.port
  p.public, p.ttl = e.public, e.ttl
end

function Set:_up(e, reply)
  local p = self.peer
  local was = e.state
  e.state, e.public, e.ttl = "up", reply.public, tonumber(reply.ttl) or 30
  e.down_reason = nil
  local first = not p.ever_registered
  p.ever_registered = true
  self:_follow()
  -- methods may register again first (the NAT's port allocation, a TURN
  -- allocation), so that a peer introduced to us from now on gets it all
  if first then p:_first_registration(e, reply)
  elseif p.adv_gen and e.sent_gen ~= p.adv_gen then
    -- this server answered a registration sent before the first one's
    -- methods had measured what they advertise (the NAT's port
    -- allocation): give it the news, or peers introduced through it
    -- would choose methods without it
    sched.spawn(function() if not p.closed then p:_register_at(e, p.register_timeout) end end)
  end
  if not e.registered_once then
    e.registered_once = true
    local ip, port = p.udp:getsockname()
    p:_emit({ event = "registered", public = e.public, ["local"] = addr.format(ip, port), server = e.addr,
      alloc = p.alloc_code })
  elseif was == "down" then
    p:_emit({ event = "server_up", server = e.addr, public = e.public, up = self:count("up") })
  end
  if self.attempt then self.attempt.result:set(e) end
end

--- Mark a server down (it did not answer); its task starts registering
-- again at once.  Nothing happens to a server that is not up.
function Set:down(e, reason)
  if e.state ~= "up" then return end
  e.state, e.down_reason = "down", reason
  self:_follow()
  self.peer:_emit({ event = "server_down", server = e.addr, reason = tostring(reason), up = self:count("up") })
  if e.wake then e.wake:set() end
end

-- One registration attempt; true once the server answered.
function Set:_register_once(e)
  local p = self.peer
  local sent = core.now()
  local reply, err = p:_register_at(e, p.register_timeout)
  if p.closed then return nil, "closed" end
  if reply then
    -- the round trip to this server (with any retransmission: an upper
    -- bound), the lowest seen; natpunch.method.choose scales udp's budget by it
    local rtt = core.now() - sent
    e.rtt_ms = math.min(e.rtt_ms or rtt, rtt)
    self:_up(e, reply)
    return true
  end
  return nil, err
end

-- The life of one server's registration, until the peer closes.
function Set:_loop(e)
  local p = self.peer
  local backoff = RETRY_FIRST
  while not p.closed do
    if e.state == "up" then
      e.wake = sched.future()
      e.wake:wait(p.refresh or math.max(0.05, e.ttl / 3))
      e.wake = nil
      if p.closed then break end
      if e.state == "up" then
        local ok, err = self:_register_once(e)
        if not ok and not p.closed then self:down(e, err) end
      end
      backoff = RETRY_FIRST
    else
      local ok, err = self:_register_once(e)
      if p.closed then break end
      if not ok then
        self.last_error = err
        e.last_error = err
        if e.state == "new" and not e.failed_reported then
          e.failed_reported = true
          p:_emit({ event = "server_failed", server = e.addr, reason = tostring(err),
            up = self:count("up") })
        end
        local attempt = self.attempt
        if attempt then
          -- the first registration: wait until register() knows
          attempt:_failed(e, err)
          attempt.result:wait()
        end
        if not self.maintain or p.closed then break end      -- register() gave up: stop
        e.wake = sched.future()
        e.wake:wait(backoff)
        e.wake = nil
        backoff = math.min(backoff * 2, RETRY_MAX)
      end
    end
  end
  e.task = nil
end

--- Register with every server at once; returns the first one that
-- answered (entry), or nil, reason once every server has failed.  Servers
-- that answer later come up in the background; once one has answered,
-- the others are retried until the peer closes.
function Set:register()
  if self:primary() then return self:primary() end
  local attempt = { result = sched.future(), failed = {}, n = 0 }
  local final
  function attempt._failed(_, e, err)
    if attempt.failed[e] then return end
    attempt.failed[e] = true
    attempt.n = attempt.n + 1
    -- an answer (e.g. "id taken") says more than a timeout
    if err ~= "timeout" and not final then final = err end
    if attempt.n >= #self.list and not self:primary() then
      attempt.result:set(nil, final or err)
    end
  end
  self.attempt = attempt
  self.maintain = false
  for _, e in ipairs(self.list) do
    if not e.task then
      e.task = sched.spawn(function() self:_loop(e) end)
    elseif e.wake then
      e.wake:set()     -- waiting to retry: now
    end
  end
  local e, err = attempt.result:wait()
  if self.attempt == attempt then self.attempt = nil end
  if e then
    self.maintain = true
  else
    -- nobody answered: stop (a later register() starts over)
    for _, x in ipairs(self.list) do
      if x.task then x.task:cancel() x.task = nil end
    end
  end
  return e, err
end

function Set:close()
  -- a register() still waiting returns
  if self.attempt then self.attempt.result:set(nil, "closed") end
  for _, e in ipairs(self.list) do
    if e.task then e.task:cancel() e.task = nil end
  end
end

return servers
