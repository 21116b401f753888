--- How long does a NAT keep an idle UDP mapping?  Seed 000's keepalive
-- experiment (natdemo's keepAliveDaemon/keepAliveClient), made fast.
--
-- A daemon on a public host has a signal port and a probe port.  The client,
-- behind the NAT, opens many mappings toward the probe port at once (one
-- socket each, one "touch" datagram each), and tells the daemon over its
-- own signal socket when to probe each one: mapping i after delay d_i, the
-- delays staggered from `min` to `max` (0.5 s apart, then 5% apart).  A probe
-- that arrives shows the mapping was still there after d_i; a probe that the
-- daemon reports sent but that does not arrive shows it had expired.  The
-- first expiry ends the run: the lifetime lies between the longest delay that
-- survived and the shortest that expired, so a run takes about the lifetime
-- itself (plus a second), instead of the several lifetimes of a binary
-- search.  When that bracket is wider than the accuracy asked for (5% or
-- 1 s), a second round refines it.
--
--   natpunch.run(function()
--     local d = natpunch.keepalive.daemon{ listen = "0.0.0.0:3490" }   -- public host
--     local r = natpunch.keepalive{ server = "203.0.113.2:3490", max = 120 }
--     print(r.mapping_lifetime_s)
--   end)
--
-- Wire format (UDP, text, natpunch's raw kind): "NPKA touch S I" (mapping ->
-- probe port), "NPKA arm S I DELAY_MS [NUDGE_MS]" (signal -> signal port),
-- answered "NPKA armed S I" or "NPKA unknown S I"; "NPKA probe S I" (probe
-- port -> mapping, DELAY_MS after the touch arrived), "NPKA nudge S I" (probe
-- port -> mapping at NUDGE_MS: inbound traffic, for the refresh test),
-- "NPKA sent S I" (signal port -> signal socket), "NPKA ping S" / "NPKA pong
-- S" (keep the signal mapping alive), "NPKA keep S I" (mapping -> probe
-- port: outbound traffic, ignored by the daemon).  S is a session id, I a
-- mapping number.  The daemon never sends more bytes than it received for
-- the same exchange, probes only the address that touched, and only for a
-- signal from that same IP.
local core = require "natpunch.core"
local sched = require "natpunch.sched"
local addr = require "natpunch.addr"

local keepalive = {}

local MAGIC = "NPKA"
local MAX_DELAY_MS = 3600 * 1000
local MAX_PENDING = 4096        -- probes scheduled in a daemon at once
local MAX_PER_SESSION = 512
local TOUCH_TTL_MS = 120 * 1000 -- a touch nobody armed is forgotten
local SESSION_TTL_MS = 120 * 1000

local function words(data)
  if #data > 128 or data:sub(1, 5) ~= MAGIC .. " " then return nil end
  local w = {}
  for x in data:gmatch("%S+") do w[#w + 1] = x end
  return w
end

local function valid_token(s) return s ~= nil and #s <= 16 and s:match("^[%w]+$") ~= nil end

---------------------------------------------------------------------------
-- the daemon

local Daemon = {}
Daemon.__index = Daemon

function Daemon:_count(k) self.counters[k] = (self.counters[k] or 0) + 1 end

function Daemon:_on_probe_port(data, ip, port)
  local w = words(data)
  if not w then return self:_count("dropped") end
  if w[2] == "touch" and valid_token(w[3]) and valid_token(w[4]) then
    local key = w[3] .. " " .. w[4]
    if not self.touches[key] and self.n_touches >= MAX_PENDING then return self:_count("refused") end
    if not self.touches[key] then self.n_touches = self.n_touches + 1 end
    self.touches[key] = { ip = ip, port = port, at = core.now() }
    self:_count("touches")
  elseif w[2] == "keep" then
    self:_count("keeps")
  else
    self:_count("dropped")
  end
end

function Daemon:_fire(p, what)
  if self.closed then return end
  self.probe:send(p.ip, p.port, MAGIC .. " " .. what .. " " .. p.session .. " " .. p.id)
  if what == "probe" then
    self:_count("probes")
    local s = self.sessions[p.session]
    if s then self.signal:send(s.ip, s.port, MAGIC .. " sent " .. p.session .. " " .. p.id) end
  else
    self:_count("nudges")
  end
end

function Daemon:_schedule(p, due_ms, what)
  local t = core.timer()
  self.timers[t] = true
  t:start(math.max(0, due_ms - core.now()), 0, function()
    self.timers[t] = nil
    t:close()
    if what == "probe" then
      self.pending = self.pending - 1
      local s = self.sessions[p.session]
      if s then s.pending = s.pending - 1 end
    end
    self:_fire(p, what)
  end)
end

-- The session sid (s, or a new one when there is room: else nil), seen
-- now from ip:port.
local function daemon_session(self, sid, s, ip, port)
  if not s then
    if self.n_sessions >= MAX_PENDING then return nil end
    s = { pending = 0 }
    self.sessions[sid] = s
    self.n_sessions = self.n_sessions + 1
  end
  s.ip, s.port, s.last = ip, port, core.now()
  return s
end

function Daemon:_on_signal(data, ip, port)
  local w = words(data)
  if not w or not valid_token(w[3]) then return self:_count("dropped") end
  local sid = w[3]
  local s = self.sessions[sid]
  if s and s.ip ~= ip then return self:_count("dropped") end
  if w[2] == "ping" then
    s = daemon_session(self, sid, s, ip, port)
    if not s then return self:_count("refused") end
    self.signal:send(ip, port, MAGIC .. " pong " .. sid)
    return
  end
  if w[2] ~= "arm" or not valid_token(w[4]) then return self:_count("dropped") end
  local delay, nudge = math.tointeger(tonumber(w[5])), w[6] and math.tointeger(tonumber(w[6]))
  if not delay or delay < 0 or delay > MAX_DELAY_MS or (w[6] and (not nudge or nudge < 0 or nudge > delay)) then
    return self:_count("dropped")
  end
  local key = sid .. " " .. w[4]
  local t = self.touches[key]
  -- only the IP that touched may have it probed
  if not t or t.ip ~= ip then
    self.signal:send(ip, port, MAGIC .. " unknown " .. key)
    return
  end
  s = daemon_session(self, sid, s, ip, port)
  if not s then return self:_count("refused") end
  if t.armed then
    self.signal:send(ip, port, MAGIC .. " armed " .. key)
    return
  end
  if self.pending >= MAX_PENDING or s.pending >= MAX_PER_SESSION then return self:_count("refused") end
  t.armed = true
  self.pending = self.pending + 1
  s.pending = s.pending + 1
  local p = { ip = t.ip, port = t.port, session = sid, id = w[4] }
  self:_schedule(p, t.at + delay, "probe")
  if nudge then self:_schedule(p, t.at + nudge, "nudge") end
  self:_count("armed")
  self.signal:send(ip, port, MAGIC .. " armed " .. key)
end

function Daemon:_sweep()
  local now = core.now()
  for key, t in pairs(self.touches) do
    if now - t.at > TOUCH_TTL_MS + (t.armed and MAX_DELAY_MS or 0) then
      self.touches[key] = nil
      self.n_touches = self.n_touches - 1
    end
  end
  for sid, s in pairs(self.sessions) do
    if now - s.last > SESSION_TTL_MS and s.pending == 0 then
      self.sessions[sid] = nil
      self.n_sessions = self.n_sessions - 1
    end
  end
end

function Daemon:address()
  return addr.format(self.signal:getsockname())
end

function Daemon:probe_address()
  return addr.format(self.probe:getsockname())
end

function Daemon:stats()
  local s = { pending = self.pending, sessions = self.n_sessions }
  for k, v in pairs(self.counters) do s[k] = v end
  return s
end

function Daemon:close()
  if self.closed then return end
  self.closed = true
  for t in pairs(self.timers) do t:close() end
  self.timers = {}
  self.sweeper:close()
  self.signal:close()
  self.probe:close()
end
Daemon.__close = Daemon.close
Daemon.__gc = Daemon.close

--- Start a daemon.  opts: listen ("ip:port", the signal port; port 0 picks
-- free ports), probe_port (default signal port + 1).  Returns it or nil,
-- message, code.
function keepalive.daemon(opts)
  if type(opts) ~= "table" then error("bad argument #1 to 'keepalive.daemon' (table expected)", 2) end
  local ip, port = addr.check(opts.listen or "0.0.0.0:3490", "keepalive.daemon: listen", 2)
  local self = setmetatable({ counters = { touches = 0, armed = 0, probes = 0, nudges = 0, keeps = 0,
    dropped = 0, refused = 0 }, touches = {}, n_touches = 0, sessions = {}, n_sessions = 0, pending = 0,
    timers = {} }, Daemon)
  local tries = (port == 0 and not opts.probe_port) and 20 or 1
  local err, code
  for _ = 1, tries do
    self.signal = core.udp()
    local ok
    ok, err, code = self.signal:bind(ip, port)
    if ok then
      local _, sport = self.signal:getsockname()
      local pport = opts.probe_port or sport + 1
      self.probe = core.udp()
      ok, err, code = self.probe:bind(ip, pport)
      if ok then break end
      self.probe:close()
      self.probe = nil
    end
    self.signal:close()
    self.signal = nil
  end
  if not self.signal then return nil, err, code end
  self.signal:recv_start(function(e, data, fip, fport)
    if not e then self:_on_signal(data, fip, fport) end
  end, { raw = true })
  self.probe:recv_start(function(e, data, fip, fport)
    if not e then self:_on_probe_port(data, fip, fport) end
  end, { raw = true })
  self.sweeper = core.timer()
  self.sweeper:start(10000, 10000, function() self:_sweep() end)
  return self
end

---------------------------------------------------------------------------
-- the client

--- The staggered delays (seconds): from min, 0.5 s apart while that is more
-- than `step` (5%) of the delay, then `step` apart, up to max.
function keepalive.delays(min, max, step, gap)
  step, gap = step or 0.05, gap or 0.5
  local list, d = {}, min
  while d <= max + 1e-9 do
    list[#list + 1] = math.floor(d * 1000 + 0.5) / 1000
    d = math.max(d + gap, d * (1 + step))
  end
  if list[#list] < max then list[#list + 1] = max end
  return list
end

-- A session: the signal socket and the mappings under test.
local Session = {}
Session.__index = Session

local GRACE_MS = 1000     -- a probe reported sent must arrive within this
local LATE_MS = 4000      -- no news this long after the due time: expired
local ARM_RETRY_MS = 300
local ARM_TRIES = 6
local PING_MS = 2000

function Session:_signal_send(text) self.signal:send(self.sip, self.sport, text) end

function Session:_on_signal(data)
  local w = words(data)
  if not w or w[3] ~= self.id then return end
  local m = self.by_id[w[4]]
  if w[2] == "armed" and m and not m.armed_at then
    m.armed_at = core.now()
  elseif w[2] == "unknown" and m and not m.armed_at then
    m.sock:send(self.sip, self.pport, MAGIC .. " touch " .. self.id .. " " .. m.id)
    m.touched_at = core.now()
  elseif w[2] == "sent" and m then
    m.sent_at = m.sent_at or core.now()
  end
end

-- Open one mapping with delay d (s); nudge (s) for the inbound refresh
-- test; keep (s) for the outbound one.
function Session:open(d, extra)
  extra = extra or {}
  local m = { id = tostring(#self.mappings + 1), delay = d, nudge = extra.nudge, keep = extra.keep,
    tag = extra.tag, tries = 0 }
  local u = core.udp()
  local ok, err, code = u:bind(self.bind, 0)
  if not ok then
    u:close()
    return nil, err, code
  end
  m.sock = u
  u:recv_start(function(e, data)
    if e then return end
    local w = words(data)
    if w and w[2] == "probe" and w[3] == self.id and w[4] == m.id and m.survived == nil then
      m.survived = true
      m.done_at = core.now()
    end
  end, { raw = true })
  u:send(self.sip, self.pport, MAGIC .. " touch " .. self.id .. " " .. m.id)
  m.touched_at = core.now()
  self.mappings[#self.mappings + 1] = m
  self.by_id[m.id] = m
  return m
end

function Session:_arm(m)
  local msg = ("%s arm %s %s %d"):format(MAGIC, self.id, m.id, math.floor(m.delay * 1000 + 0.5))
  if m.nudge then msg = msg .. " " .. math.floor(m.nudge * 1000 + 0.5) end
  self:_signal_send(msg)
  m.tries = m.tries + 1
  m.arm_sent = core.now()
end

-- One pass of the bookkeeping: arms, keeps, expiries.
function Session:_tick()
  local now = core.now()
  if now - (self.pinged or 0) >= PING_MS then
    self:_signal_send(MAGIC .. " ping " .. self.id)
    self.pinged = now
  end
  for _, m in ipairs(self.mappings) do
    if m.survived == nil then
      if not m.armed_at then
        if m.tries >= ARM_TRIES then
          m.survived, m.lost = false, true
        elseif now - (m.arm_sent or 0) >= ARM_RETRY_MS then
          self:_arm(m)
        end
      else
        local due = m.touched_at + m.delay * 1000
        if m.keep and not m.kept and now >= m.touched_at + m.keep * 1000 then
          m.sock:send(self.sip, self.pport, MAGIC .. " keep " .. self.id .. " " .. m.id)
          m.kept = true
        end
        if (m.sent_at and now - m.sent_at >= GRACE_MS) or now - due >= LATE_MS then
          m.survived = false
          m.done_at = now
        end
      end
    end
  end
end

function Session:close()
  if self.closed then return end
  self.closed = true
  if self.ticker then self.ticker:close() end
  for _, m in ipairs(self.mappings) do if not m.sock:is_closed() then m.sock:close() end end
  self.signal:close()
end

local function new_session(opts)
  local sip, sport = addr.check(opts.server, "keepalive: server", 3)
  local self = setmetatable({ sip = sip, sport = sport, pport = opts.probe_port or sport + 1,
    bind = opts.bind or (addr.family(sip) == "inet6" and "::" or "0.0.0.0"),
    id = (core.random_bytes(4):gsub(".", function(c) return ("%02x"):format(c:byte()) end)),
    mappings = {}, by_id = {} }, Session)
  self.signal = core.udp()
  local ok, err, code = self.signal:bind(self.bind, 0)
  if not ok then
    self.signal:close()
    return nil, err, code
  end
  self.signal:recv_start(function(e, data) if not e then self:_on_signal(data) end end, { raw = true })
  self.ticker = core.timer()
  self.ticker:start(50, 50, function() self:_tick() end)
  return self
end

-- Wait (in a task) until done() holds; progress() every second.  If the
-- task is cancelled meanwhile (Task:cancel, or the run ends), the session
-- is closed: no socket or timer is left behind.
local function wait_until(session, done, progress)
  local last = 0
  while not done() do
    local woke = false
    sched.wait(function(wake)
      local t = core.timer()
      t:start(50, 0, function()
        woke = true
        wake(true)
      end)
      return function()
        if not t:is_closed() then t:close() end
        if not woke then session:close() end
      end
    end)
    if progress and core.now() - last >= 1000 then
      last = core.now()
      progress()
    end
  end
end

-- The bracket of the lifetime from resolved mappings: longest survived
-- below the shortest expired.
local function bracket(list)
  local hi
  for _, m in ipairs(list) do
    if m.survived == false and not m.lost and (not hi or m.delay < hi) then hi = m.delay end
  end
  local lo = 0
  for _, m in ipairs(list) do
    if m.survived and m.delay > lo and (not hi or m.delay < hi) then lo = m.delay end
  end
  return lo, hi
end

--- Measure the mapping lifetime.  opts: server ("ip:port" of the daemon's
-- signal port), probe_port (default port + 1), min (s, default 1), max (s,
-- default 120), step (default 0.05), refine (default true), refresh (also
-- test whether outbound and inbound traffic refresh a mapping: costs 1.3
-- lifetimes more), bind, on_progress(info) (about once a second: elapsed_s,
-- outstanding, lower_s, upper_s).  Must run in a task.  Returns the result
-- (docs/DISCOVERY.md) or nil, message, code.
function keepalive.run(opts)
  if type(opts) ~= "table" then error("bad argument #1 to 'keepalive' (table expected)", 2) end
  local min, max = opts.min or 1, opts.max or 120
  if type(min) ~= "number" or type(max) ~= "number" or min <= 0 or max < min or max > MAX_DELAY_MS / 1000 then
    error("keepalive: need 0 < min <= max <= 3600", 2)
  end
  local s, err, code = new_session(opts)
  if not s then return nil, err, code end
  local started = core.now()
  local ok, res = pcall(function()
    local round1 = {}
    for _, d in ipairs(keepalive.delays(min, max, opts.step)) do
      local m, e, c = s:open(d)
      if not m then return { err = e, code = c } end
      round1[#round1 + 1] = m
    end
    local function outstanding(list)
      local n = 0
      for _, m in ipairs(list) do if m.survived == nil then n = n + 1 end end
      return n
    end
    -- done when every mapping below the first expiry is resolved
    local function resolved(list)
      local _, hi = bracket(list)
      for _, m in ipairs(list) do
        if m.survived == nil and (not hi or m.delay < hi) then return false end
      end
      return true
    end
    local function progress(list)
      if not opts.on_progress then return nil end
      return function()
        local lo, hi = bracket(list)
        opts.on_progress({ elapsed_s = (core.now() - started) / 1000, outstanding = outstanding(list),
          lower_s = lo, upper_s = hi })
      end
    end
    wait_until(s, function() return resolved(round1) end, progress(round1))
    local all = round1
    local armed = 0
    for _, m in ipairs(round1) do if m.armed_at then armed = armed + 1 end end
    if armed == 0 then return { err = "the daemon did not answer on " .. opts.server, code = "ETIMEDOUT" } end
    local lo, hi = bracket(all)
    -- refine when the midpoint would be off by more than 5% (or 1 s): a
    -- coarser step, or probes lost around the lifetime
    if opts.refine ~= false and hi and (hi - lo) / 2 > math.max(1, 0.05 * lo) then
      local extra = {}
      for i = 1, 7 do
        local m = s:open(lo + (hi - lo) * i / 8)
        if m then extra[#extra + 1] = m; all[#all + 1] = m end
      end
      wait_until(s, function() return resolved(extra) end, progress(all))
      lo, hi = bracket(all)
    end
    local result = { lower_s = lo, upper_s = hi, mappings = #all }
    if hi then result.mapping_lifetime_s = math.floor((lo + hi) / 2 * 10 + 0.5) / 10 end
    if opts.refresh and hi then
      local L = result.mapping_lifetime_s
      local at, probe = 0.6 * L, 1.3 * L
      local out = s:open(probe, { keep = at, tag = "outbound" })
      local inb = s:open(probe, { nudge = at, tag = "inbound" })
      local ctl = s:open(probe, { tag = "control" })
      local trio = { out, inb, ctl }
      wait_until(s, function() return outstanding(trio) == 0 end, progress(all))
      result.refresh = { outbound = out.survived, inbound = inb.survived, control_expired = not ctl.survived,
        at_s = at, probe_s = probe }
      for _, m in ipairs(trio) do all[#all + 1] = m end
    end
    local probes = {}
    for _, m in ipairs(all) do
      if m.survived ~= nil and not m.lost then
        probes[#probes + 1] = { delay_s = m.delay, survived = m.survived, refresh = m.tag }
      end
    end
    table.sort(probes, function(a, b) return a.delay_s < b.delay_s end)
    result.probes = probes
    return result
  end)
  s:close()
  if not ok then error(res, 0) end
  if res.err then return nil, res.err, res.code end
  res.elapsed_s = (core.now() - started) / 1000
  return res
end

--- The refresh period (s) for a measured lifetime: 80% of it less a
-- second, never below 1 s, and short enough for a registration ttl.
function keepalive.refresh_interval(lifetime_s, ttl_s)
  local r = 0.8 * lifetime_s - 1
  if ttl_s then r = math.min(r, 0.8 * ttl_s) end
  return math.max(1, r)
end

--- An SVG picture of a result: delay -> survived (top row, green) or
-- expired (bottom row, red), the estimate as a vertical line.
function keepalive.svg(result, title)
  local W, H, L, R, T, B = 720, 260, 60, 20, 40, 50
  local probes = result.probes or {}
  local maxd = 1
  for _, p in ipairs(probes) do maxd = math.max(maxd, p.delay_s) end
  maxd = maxd * 1.05
  local function x(d) return L + (W - L - R) * d / maxd end
  local yS, yE = T + 40, H - B - 40
  local out = {
    ('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" '
      .. 'font-family="sans-serif" font-size="12">'):format(W, H, W, H),
    ('<rect width="%d" height="%d" fill="white"/>'):format(W, H),
    ('<text x="%d" y="20" font-size="14">%s</text>'):format(L, title or "NAT mapping lifetime (natpunch keepalive)"),
    ('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>'):format(L, H - B, W - R, H - B),
    ('<text x="%d" y="%d" text-anchor="end">survived</text>'):format(L - 6, yS + 4),
    ('<text x="%d" y="%d" text-anchor="end">expired</text>'):format(L - 6, yE + 4),
  }
  local tick = maxd > 200 and 60 or maxd > 60 and 10 or maxd > 20 and 5 or 1
  for t = 0, maxd, tick do
    out[#out + 1] = ('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="black"/>'):format(x(t), H - B, x(t), H - B + 5)
    out[#out + 1] = ('<text x="%.1f" y="%d" text-anchor="middle">%g</text>'):format(x(t), H - B + 18, t)
  end
  out[#out + 1] = ('<text x="%d" y="%d" text-anchor="middle">probe delay after the last outbound packet (s)</text>')
    :format((L + W - R) // 2, H - 12)
  for _, p in ipairs(probes) do
    local color = p.survived and "#2a9d3f" or "#d62828"
    local shape = p.refresh and ('stroke="black" stroke-width="1.5"') or ""
    out[#out + 1] = ('<circle cx="%.1f" cy="%d" r="4" fill="%s" %s><title>%gs %s%s</title></circle>'):format(
      x(p.delay_s), p.survived and yS or yE, color, shape, p.delay_s, p.survived and "survived" or "expired",
      p.refresh and (" (" .. p.refresh .. " refresh test)") or "")
  end
  if result.mapping_lifetime_s then
    local e = x(result.mapping_lifetime_s)
    out[#out + 1] = ('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#1d3557" stroke-dasharray="4 3"/>')
      :format(e, T, e, H - B)
    -- the label on the side of the line that has room
    local right = e + 110 < W
    out[#out + 1] = ('<text x="%.1f" y="%d" fill="#1d3557" text-anchor="%s">lifetime %.1f s</text>'):format(
      right and e + 4 or e - 4, T + 10, right and "start" or "end", result.mapping_lifetime_s)
  end
  out[#out + 1] = "</svg>"
  return table.concat(out, "\n") .. "\n"
end

return setmetatable(keepalive, { __call = function(_, opts) return keepalive.run(opts) end })
