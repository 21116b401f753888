--- Prometheus text-format metrics (exposition format 0.0.4) and a small
-- HTTP server for them on the loop (core.tcp), which is what operators
-- already scrape:
--
--   local m = metrics.new()
--   m:counter("natpunch_registrations_total", "Registrations accepted")
--   m:inc("natpunch_registrations_total")
--   m:histogram("natpunch_setup_ms", "Setup time", { 10, 50, 100 })
--   m:observe("natpunch_setup_ms", 42, { method = "udp" })
--   local srv = assert(metrics.serve("127.0.0.1:9100", function() return m:render() end))
--
-- The server answers `GET /metrics` (and `GET /`) with the text, anything
-- else with 404/405/400, and closes each connection after its answer.  It
-- holds at most MAX_CONNS connections, each for at most IDLE_MS, and reads
-- at most MAX_REQUEST bytes of a request: a scraper cannot make it grow.
local core = require "natpunch.core"
local addr = require "natpunch.addr"

local metrics = {}

local MAX_CONNS = 32
local IDLE_MS = 5000
local MAX_REQUEST = 8192

local Set = {}
Set.__index = Set

local function check_name(name)
  if type(name) ~= "string" or not name:match("^[%a_:][%w_:]*$") then
    error("metrics: bad metric name " .. tostring(name), 3)
  end
end

function Set:_family(name, kind, help, buckets)
  check_name(name)
  local f = self.by_name[name]
  if f then
    if f.kind ~= kind then error("metrics: " .. name .. " is already a " .. f.kind, 3) end
    return f
  end
  f = { name = name, kind = kind, help = help or name, series = {}, order = {}, buckets = buckets }
  self.by_name[name] = f
  self.families[#self.families + 1] = f
  return f
end

function Set:counter(name, help) self:_family(name, "counter", help) return self end
function Set:gauge(name, help) self:_family(name, "gauge", help) return self end

--- buckets: increasing upper bounds (+Inf is added).
function Set:histogram(name, help, buckets)
  assert(type(buckets) == "table" and #buckets > 0, "metrics: histogram needs buckets")
  for i = 2, #buckets do assert(buckets[i] > buckets[i - 1], "metrics: buckets must increase") end
  self:_family(name, "histogram", help, buckets)
  return self
end

local function escape(v)
  return (tostring(v):gsub("[\\\n\"]", { ["\\"] = "\\\\", ["\n"] = "\\n", ['"'] = '\\"' }))
end

-- Labels in a stable order, as the text that identifies a series.
local function label_text(labels)
  if not labels or next(labels) == nil then return "" end
  local keys = {}
  for k in pairs(labels) do
    if type(k) ~= "string" or not k:match("^[%a_][%w_]*$") then error("metrics: bad label name " .. tostring(k), 4) end
    keys[#keys + 1] = k
  end
  table.sort(keys)
  local parts = {}
  for i, k in ipairs(keys) do parts[i] = k .. '="' .. escape(labels[k]) .. '"' end
  return "{" .. table.concat(parts, ",") .. "}"
end

function Set:_series(name, labels, kind)
  local f = self.by_name[name]
  if not f then error("metrics: unknown metric " .. tostring(name), 3) end
  if kind and f.kind ~= kind then error("metrics: " .. name .. " is a " .. f.kind, 3) end
  local key = label_text(labels)
  local s = f.series[key]
  if not s then
    s = { labels = key, value = 0 }
    if f.kind == "histogram" then
      s.counts, s.sum = {}, 0
      for i = 1, #f.buckets do s.counts[i] = 0 end
    end
    f.series[key] = s
    f.order[#f.order + 1] = key
  end
  return s
end

function Set:inc(name, labels, by)
  local s = self:_series(name, labels)
  s.value = s.value + (by or 1)
end

function Set:set(name, value, labels)
  self:_series(name, labels).value = value
end

function Set:observe(name, value, labels)
  local f = self.by_name[name]
  local s = self:_series(name, labels, "histogram")
  for i, le in ipairs(f.buckets) do
    if value <= le then s.counts[i] = s.counts[i] + 1 end
  end
  s.value = s.value + 1   -- count
  s.sum = s.sum + value
end

local function num(v)
  if v == math.huge then return "+Inf" elseif v == -math.huge then return "-Inf" elseif v ~= v then return "NaN" end
  if math.type(v) == "integer" or (v == math.floor(v) and math.abs(v) < 2 ^ 53) then
    return string.format("%d", v)
  end
  return string.format("%.17g", v)
end

-- "{a="1"}" + le -> "{a="1",le="10"}"
local function with_le(labels, le)
  if labels == "" then return '{le="' .. le .. '"}' end
  return labels:sub(1, -2) .. ',le="' .. le .. '"}'
end

--- The text exposition of every family, in the order they were declared.
function Set:render()
  local out = {}
  for _, f in ipairs(self.families) do
    out[#out + 1] = "# HELP " .. f.name .. " " .. f.help:gsub("\\", "\\\\"):gsub("\n", "\\n")
    out[#out + 1] = "# TYPE " .. f.name .. " " .. f.kind
    for _, key in ipairs(f.order) do
      local s = f.series[key]
      if f.kind == "histogram" then
        for i, le in ipairs(f.buckets) do
          out[#out + 1] = f.name .. "_bucket" .. with_le(key, num(le)) .. " " .. num(s.counts[i])
        end
        out[#out + 1] = f.name .. "_bucket" .. with_le(key, "+Inf") .. " " .. num(s.value)
        out[#out + 1] = f.name .. "_sum" .. key .. " " .. num(s.sum)
        out[#out + 1] = f.name .. "_count" .. key .. " " .. num(s.value)
      else
        out[#out + 1] = f.name .. key .. " " .. num(s.value)
      end
    end
  end
  out[#out + 1] = ""
  return table.concat(out, "\n")
end

function metrics.new()
  return setmetatable({ families = {}, by_name = {} }, Set)
end

--------------------------------------------------------------- HTTP

local REASONS = { [200] = "OK", [400] = "Bad Request", [404] = "Not Found", [405] = "Method Not Allowed",
  [500] = "Internal Server Error", [503] = "Service Unavailable" }

local function response(code, body, ctype)
  return table.concat({
    "HTTP/1.1 " .. code .. " " .. REASONS[code],
    "Content-Type: " .. (ctype or "text/plain; charset=utf-8"),
    "Content-Length: " .. #body,
    "Connection: close",
    "", body }, "\r\n")
end

local Server = {}
Server.__index = Server

function Server:_answer(request)
  local method, path = request:match("^(%u+) (%S+) HTTP/1%.[01]\r\n")
  if not method then return response(400, "bad request\n") end
  if method ~= "GET" and method ~= "HEAD" then return response(405, "only GET\n") end
  path = path:match("^[^?]*")
  if path ~= "/metrics" and path ~= "/" then return response(404, "try /metrics\n") end
  local ok, text = pcall(self.render)
  if not ok then
    self.errors = self.errors + 1
    return response(500, "metrics failed\n")
  end
  self.scrapes = self.scrapes + 1
  local r = response(200, text, "text/plain; version=0.0.4; charset=utf-8")
  if method == "HEAD" then r = r:sub(1, #r - #text) end
  return r
end

function Server:_accept()
  local c = self.tcp:accept()
  if not c then return end
  if self.conns >= MAX_CONNS then
    self.refused = self.refused + 1
    c:close()
    return
  end
  self.conns = self.conns + 1
  local buf, done = {}, false
  local size = 0
  local timer = core.timer()
  local function finish()
    if done then return end
    done = true
    timer:close()
    c:close()
    self.conns = self.conns - 1
  end
  timer:start(IDLE_MS, 0, finish)
  c:read_start(function(err, chunk)
    if done then return end
    if err or not chunk then return finish() end
    buf[#buf + 1] = chunk
    size = size + #chunk
    local request = table.concat(buf)
    if request:find("\r\n\r\n", 1, true) or size > MAX_REQUEST then
      buf = nil
      c:read_stop()
      local answer = size > MAX_REQUEST and response(400, "request too large\n") or self:_answer(request)
      c:write(answer, function() c:shutdown(finish) end)
    else
      buf = { request }
    end
  end)
end

function Server:address()
  local ip, port = self.tcp:getsockname()
  return addr.format(ip, port), ip, port
end

function Server:close()
  if self.closed then return end
  self.closed = true
  self.tcp:close()
end
Server.__close = Server.close

--- Serve render() (a function returning the text) at http://listen/metrics.
-- Returns the server ({address(), close(), scrapes, ...}) or nil, message,
-- code.
function metrics.serve(listen, render)
  local ip, port = addr.check(listen, "metrics: listen", 2)
  if type(render) ~= "function" then error("metrics.serve: render must be a function", 2) end
  local self = setmetatable({ render = render, conns = 0, scrapes = 0, errors = 0, refused = 0 }, Server)
  self.tcp = core.tcp()
  local ok, err, code = self.tcp:bind(ip, port, { reuseaddr = true })
  if ok then ok, err, code = self.tcp:listen(64, function(lerr) if not lerr then self:_accept() end end) end
  if not ok then
    self.tcp:close()
    return nil, err, code
  end
  return self
end

--------------------------------------------------------------- natpunch's own

-- Buckets of setup-time histograms (ms).
metrics.SETUP_BUCKETS = { 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000 }

--- The text of a rendezvous server's metrics (from server:stats()).
function metrics.rendezvous(server)
  local st = server:stats()
  local m = metrics.new()
  m:gauge("natpunch_peers", "Peers registered on this server"):set("natpunch_peers", st.peers or 0)
  m:counter("natpunch_registrations_total", "New registrations accepted")
  m:set("natpunch_registrations_total", st.registrations or 0)
  m:counter("natpunch_introductions_total", "Introductions, by kind")
  m:set("natpunch_introductions_total", st.introductions or 0, { kind = "new" })
  m:set("natpunch_introductions_total", st.reintroductions or 0, { kind = "repeat" })
  m:set("natpunch_introductions_total", st.remote_introductions or 0, { kind = "delivered_for_other_server" })
  m:counter("natpunch_stun_answered_total", "STUN Binding requests answered"):set("natpunch_stun_answered_total",
    st.stun_answered or 0)
  m:counter("natpunch_drops_total", "Datagrams dropped or refused, by reason")
  local drops = { malformed = st.malformed, not_control = st.dropped, unknown_frame = st.rx_unknown,
    stun_rejected = st.stun_rejected, reply_suppressed = st.replies_suppressed, error_reply = st.errors,
    remote_unknown = st.remote_unknown }
  local reasons = {}
  for k in pairs(drops) do reasons[#reasons + 1] = k end
  table.sort(reasons)
  for _, k in ipairs(reasons) do m:set("natpunch_drops_total", drops[k] or 0, { reason = k }) end
  m:counter("natpunch_rx_packets_total", "Datagrams received"):set("natpunch_rx_packets_total", st.rx_packets or 0)
  m:counter("natpunch_tx_packets_total", "Datagrams sent"):set("natpunch_tx_packets_total", st.tx_packets or 0)
  m:counter("natpunch_reports_total", "Punch reports from peers, accepted or refused")
  m:set("natpunch_reports_total", st.reports or 0, { result = "accepted" })
  m:set("natpunch_reports_total", st.reports_refused or 0, { result = "refused" })
  -- the punch outcomes by method and NAT pair, and the setup-time
  -- histogram, as the peers reported them (rendezvous report messages)
  local reports = server.report_metrics and server:report_metrics()
  if reports then
    for _, f in ipairs(reports.families) do
      m.families[#m.families + 1] = f
      m.by_name[f.name] = f
    end
  end
  if st.redis then
    m:gauge("natpunch_redis_up", "1 when the shared registry (Redis) is reachable")
    m:set("natpunch_redis_up", st.redis == "up" and 1 or 0)
    m:counter("natpunch_redis_outages_total", "Times Redis went away"):set("natpunch_redis_outages_total",
      st.redis_down or 0)
  end
  return m:render()
end

--- A metrics set fed by a peer's events (on_event): punch outcomes by
-- method and path, setup-time histogram, touches.  Returns set, feed(ev).
function metrics.peer()
  local m = metrics.new()
  m:counter("natpunch_punch_total", "Connection attempts by method and outcome")
  m:histogram("natpunch_setup_ms", "Time from connect to a working direct path (ms), by method",
    metrics.SETUP_BUCKETS)
  m:counter("natpunch_registrations_total", "Successful registrations with a rendezvous server")
  m:counter("natpunch_touch_total", "Reliable messages by outcome")
  m:counter("natpunch_messages_total", "Messages received, by kind")
  local function feed(ev)
    local e = ev.event
    if e == "connected" then
      local method = ev.transport or ev.method or "udp"
      m:inc("natpunch_punch_total", { method = method, outcome = "connected", path = ev.path or "unknown" })
      if type(ev.setup_ms) == "number" then m:observe("natpunch_setup_ms", ev.setup_ms, { method = method }) end
    elseif e == "failed" and ev.peer then
      m:inc("natpunch_punch_total", { method = ev.transport or ev.method or "udp", outcome = "failed",
        path = "none" })
    elseif e == "registered" then
      m:inc("natpunch_registrations_total")
    elseif e == "touch_acked" then
      m:inc("natpunch_touch_total", { outcome = "acked" })
    elseif e == "touch_failed" then
      m:inc("natpunch_touch_total", { outcome = "failed" })
    elseif e == "message" then
      m:inc("natpunch_messages_total", { kind = ev.kind or "data" })
    end
  end
  return m, feed
end

return metrics
