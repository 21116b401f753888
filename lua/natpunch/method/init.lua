--- Traversal methods: the ways a peer can reach an introduced peer, as
-- plug-ins.  One module per method (natpunch.method.udp, ...), listed in
-- BUILTIN; a peer tries the methods of its `methods` option in order until
-- one returns a link.  The interface is in docs/EXTENDING.md; in short:
--
--   return {
--     name = "udp", transport = "udp",
--     advertise = function(peer) return { key = "value" } end,   -- optional
--     run = function(ctx) ... return link end,       -- or nil, reason
--   }
--
-- `advertise` gives string fields the peer sends when it registers; the
-- rendezvous passes them through, opaque, to every peer introduced to it,
-- where the method finds them as ctx.info.  `run` runs in its own task
-- with a context (below) and must give up by ctx.deadline; if it does not,
-- or the attempt is cancelled, the task is cancelled and the functions
-- given to ctx:on_cancel run.
local core = require "natpunch.core"
local sched = require "natpunch.sched"
local candidates = require "natpunch.candidates"

local method = {}

--- Built-in methods: name -> module.  A new method is one file and one line here.
method.BUILTIN = {
  udp = "natpunch.method.udp",
  birthday = "natpunch.method.birthday",
  predict = "natpunch.method.predict",
  tcp = "natpunch.method.tcp",
  relay = "natpunch.method.relay",
}

local registered = {}   -- name -> module table (loaded or added with method.register)

local GRACE_MS = 1000   -- a method past its deadline is cancelled this much later

local function check_module(name, m)
  if type(m) ~= "table" then return nil, "method '" .. name .. "' is not a table" end
  if type(m.run) ~= "function" then return nil, "method '" .. name .. "' has no run function" end
  for _, hook in ipairs({ "advertise", "close" }) do
    if m[hook] ~= nil and type(m[hook]) ~= "function" then
      return nil, "method '" .. name .. "': " .. hook .. " must be a function"
    end
  end
  return m
end

--- Add (or replace) a method: module is the table itself or a module name.
-- Built-ins need no call; this is for methods that live elsewhere (tests,
-- applications).
function method.register(name, module)
  if type(name) ~= "string" or not name:match("^[%w_]+$") then
    error("bad argument #1 to 'register' (method name: letters, digits, _)", 2)
  end
  if type(module) == "string" then module = require(module) end
  local m, err = check_module(name, module)
  if not m then error(err, 2) end
  m.name = m.name or name
  registered[name] = m
  return m
end

--- Remove a method added with method.register (built-ins come back).
function method.unregister(name)
  registered[name] = nil
end

--- The module of a method, or nil, message.
function method.get(name)
  local m = registered[name]
  if m then return m end
  local modname = method.BUILTIN[name]
  if not modname then return nil, "unknown method '" .. tostring(name) .. "'" end
  m = assert(check_module(name, require(modname)))
  m.name = m.name or name
  registered[name] = m
  return m
end

--- Names of every known method, sorted.
function method.names()
  local out, seen = {}, {}
  for k in pairs(method.BUILTIN) do seen[k] = true end
  for k in pairs(registered) do seen[k] = true end
  for k in pairs(seen) do out[#out + 1] = k end
  table.sort(out)
  return out
end

--- Check a `methods` option: a non-empty list of known names.  Raises on
-- misuse (level as for error).
function method.check_list(list, what, level)
  level = (level or 1) + 1
  if type(list) ~= "table" or #list == 0 then error(what .. ": methods must be a non-empty list of names", level) end
  for _, name in ipairs(list) do
    local ok, err = method.get(name)
    if not ok then error(what .. ": " .. err, level) end
  end
  return list
end

--- The methods two peers try, in the connecting side's order: `mine` are
-- this peer's, `theirs` the other's as it advertised them (nil: an older
-- peer, which only knows "udp").  Both sides compute the same list.
function method.order(mine, theirs, role)
  theirs = theirs or { "udp" }
  local first, second = mine, theirs
  if role == "accept" then first, second = theirs, mine end
  local ok = {}
  for _, n in ipairs(second) do ok[n] = true end
  local out = {}
  for _, n in ipairs(first) do
    if ok[n] and method.get(n) then out[#out + 1] = n; ok[n] = nil end
  end
  return out
end

---------------------------------------------------------------- context

local Context = {}
Context.__index = Context

--- Seconds left before the deadline (never negative).
function Context:remaining()
  return math.max(0, (self.deadline - core.now()) / 1000)
end

--- Run fn() if this attempt is cancelled (deadline passed, peer closed).
function Context:on_cancel(fn)
  self.cancel_hooks[#self.cancel_hooks + 1] = fn
end

--- Hand received data to the session (for links with their own sockets;
-- links on the peer's UDP socket set `route` instead).  Data that arrives
-- before the session exists is kept (up to 64 messages) and handed over
-- when it is made.
function Context:deliver(data, kind)
  if self.session then return self.session:_deliver(data, kind or "data") end
  if #self.early < 64 then self.early[#self.early + 1] = { data, kind or "data" } end
end

function Context:_attach(session)
  self.session = session
  local early = self.early
  self.early = {}
  for _, e in ipairs(early) do session:_deliver(e[1], e[2]) end
end

function Context:_cancel()
  if self.cancelled then return end
  self.cancelled = true
  if self.task then self.task:cancel() end
  local hooks = self.cancel_hooks
  self.cancel_hooks = {}
  for _, fn in ipairs(hooks) do fn() end
end

--- A context for one method and one introduction.  intro: the decoded
-- introduction (peer, nonce, role, public, private, info, methods).
function method.context(name, peer, intro, deadline)
  return setmetatable({
    method = name, peer = peer, intro = intro,
    nonce = intro.nonce, role = intro.role, remote_id = intro.peer,
    info = (intro.info and intro.info[name]) or {},
    candidates = candidates.from_intro(intro, peer.family, peer.policy),   -- safe ones only
    deadline = deadline, cancel_hooks = {}, early = {}, cancelled = false,
  }, Context)
end

--- Try the methods of `order` one after the other until one gives a link;
-- in a task.  `attempt` holds the running context (attempt.ctx) so that it
-- can be cancelled from outside (method.cancel).  Returns link, context, or
-- nil, reason (every method's reason, "; "-separated).
function method.try(order, peer, intro, deadline, attempt)
  attempt = attempt or {}
  local reasons = {}
  for i, name in ipairs(order) do
    if attempt.cancelled then break end
    if core.now() >= deadline then
      reasons[#reasons + 1] = { name, "no time left" }
      break
    end
    local m = assert(method.get(name))
    -- a method followed by others may have a budget (seconds), so that
    -- the later ones get time too: peer.method_budget[name], else m.budget
    local mdl = deadline
    local budget = (peer.method_budget and peer.method_budget[name]) or m.budget
    if budget and i < #order then mdl = math.min(deadline, core.now() + budget * 1000) end
    local ctx = method.context(name, peer, intro, mdl)
    attempt.ctx, attempt.last = ctx, name   -- last: the method tried last (a failed connect's report)
    local fut = sched.future()
    ctx.task = sched.spawn(function() fut:set(m.run(ctx)) end)
    local wait_s = math.max(0, (mdl + GRACE_MS - core.now()) / 1000)
    local link, reason = fut:wait(wait_s)
    if not fut:is_set() then   -- past its deadline (the task may still be finishing otherwise)
      ctx:_cancel()
      link, reason = nil, "timeout"
    end
    attempt.ctx = nil
    if link then
      link.method = link.method or name
      link.transport = link.transport or m.transport
      return link, ctx
    end
    reasons[#reasons + 1] = { name, tostring(reason or "failed") }
  end
  if #reasons == 0 then return nil, attempt.cancelled and "cancelled" or "no common method" end
  -- one method: its reason as it is; several: which said what
  if #reasons == 1 then return nil, reasons[1][2] end
  local text = {}
  for i, r in ipairs(reasons) do text[i] = r[1] .. ": " .. r[2] end
  return nil, table.concat(text, "; ")
end

--- Cancel a running attempt of method.try.
function method.cancel(attempt)
  attempt.cancelled = true
  if attempt.ctx then attempt.ctx:_cancel() end
end

return method
