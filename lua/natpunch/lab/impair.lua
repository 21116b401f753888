-- natpunch.lab.impair: a link's impairment (delay, jitter, loss, dup,
-- reorder, rate), parsed once and turned into either netem arguments or
-- natpunch-wire arguments.  Both apply the same impairment in each
-- direction, so a round trip through a link sees twice the delay.  `limit`
-- is the queue of the link in frames (default 1000, as netem's): a small one
-- is a bottleneck with a small buffer.

local impair = {}

impair.KEYS = { "delay", "jitter", "loss", "dup", "reorder", "rate", "limit" }

local TIME_UNITS = { us = 1e-6, ms = 1e-3, s = 1 }
local RATE_UNITS = {
  bit = 1, kbit = 1e3, mbit = 1e6, gbit = 1e9,
  bps = 8, kbps = 8e3, mbps = 8e6,
}

-- "50ms" / "1.5s" / "200us" / 0.05 (seconds) -> seconds
function impair.seconds(v, what)
  if type(v) == "number" then return v end
  local num, unit = tostring(v):match("^(%d+%.?%d*)(%a*)$")
  local scale = TIME_UNITS[unit]
  if not num or not scale then
    error(("lab: %s: bad duration %q (say 50ms, 1s, 200us)")
      :format(what, tostring(v)), 3)
  end
  return tonumber(num) * scale
end

-- "5%" / "0.5%" / 5 -> percent
function impair.percent(v, what)
  local num = type(v) == "number" and v or tonumber(tostring(v):match(
    "^(%d+%.?%d*)%%?$"))
  if not num or num < 0 or num > 100 then
    error(("lab: %s: bad percentage %q (say 5%%)"):format(what, tostring(v)),
      3)
  end
  return num
end

-- "10mbit" / "512kbit" / 1e6 (bit/s) -> bit/s
function impair.rate(v, what)
  if type(v) == "number" then return v end
  local num, unit = tostring(v):match("^(%d+%.?%d*)(%a*)$")
  local scale = RATE_UNITS[unit == "" and "bit" or unit:lower()]
  if not num or not scale or tonumber(num) <= 0 then
    error(("lab: %s: bad rate %q (say 10mbit, 512kbit)")
      :format(what, tostring(v)), 3)
  end
  return tonumber(num) * scale
end

-- 50 / "50" -> frames (1..100000)
function impair.limit(v, what)
  local n = math.tointeger(tonumber(v))
  if not n or n < 1 or n > 100000 then
    error(("lab: %s: bad limit %q (frames, 1..100000)"):format(what, tostring(v)), 3)
  end
  return n
end

-- Normalise a user table {delay="50ms", loss="5%", ...} into numbers, or
-- nil when it asks for nothing.
function impair.parse(t, what)
  if t == nil then return nil end
  if type(t) ~= "table" then
    error(("lab: %s: link options must be a table"):format(what), 2)
  end
  for k in pairs(t) do
    local known = false
    for _, key in ipairs(impair.KEYS) do known = known or key == k end
    if not known then
      error(("lab: %s: unknown link option %q"):format(what, tostring(k)), 2)
    end
  end
  local p = {
    delay = t.delay and impair.seconds(t.delay, what) or 0,
    jitter = t.jitter and impair.seconds(t.jitter, what) or 0,
    loss = t.loss and impair.percent(t.loss, what) or 0,
    dup = t.dup and impair.percent(t.dup, what) or 0,
    reorder = t.reorder and impair.percent(t.reorder, what) or 0,
    rate = t.rate and impair.rate(t.rate, what) or nil,
    limit = t.limit and impair.limit(t.limit, what) or nil,
  }
  if p.jitter > p.delay then
    error(("lab: %s: jitter larger than delay"):format(what), 2)
  end
  if p.delay == 0 and p.loss == 0 and p.dup == 0 and p.reorder == 0
    and not p.rate and not p.limit then
    return nil
  end
  return p
end

local function ms(s) return ("%gms"):format(s * 1000) end
local function pct(x) return ("%g%%"):format(x) end

-- Arguments after `tc qdisc add dev IF root netem`.
function impair.netem_args(p)
  local a = { "delay", ms(p.delay) }
  if p.jitter > 0 then a[#a + 1] = ms(p.jitter) end
  if p.loss > 0 then a[#a + 1] = "loss"; a[#a + 1] = pct(p.loss) end
  if p.dup > 0 then a[#a + 1] = "duplicate"; a[#a + 1] = pct(p.dup) end
  if p.reorder > 0 then a[#a + 1] = "reorder"; a[#a + 1] = pct(p.reorder) end
  if p.rate then a[#a + 1] = "rate"; a[#a + 1] = ("%dbit"):format(p.rate) end
  if p.limit then a[#a + 1] = "limit"; a[#a + 1] = tostring(p.limit) end
  return a
end

-- Impairment arguments of natpunch-wire.
function impair.wire_args(p)
  local a = { "--delay", ms(p.delay), "--jitter", ms(p.jitter),
    "--loss", pct(p.loss), "--dup", pct(p.dup), "--reorder", pct(p.reorder) }
  if p.rate then a[#a + 1] = "--rate"; a[#a + 1] = ("%dbit"):format(p.rate) end
  if p.limit then a[#a + 1] = "--limit"; a[#a + 1] = tostring(p.limit) end
  return a
end

-- One line for people: "delay 50ms jitter 5ms loss 5%".
function impair.describe(p)
  if not p then return "none" end
  local parts = {}
  if p.delay > 0 then parts[#parts + 1] = "delay " .. ms(p.delay) end
  if p.jitter > 0 then parts[#parts + 1] = "jitter " .. ms(p.jitter) end
  if p.loss > 0 then parts[#parts + 1] = "loss " .. pct(p.loss) end
  if p.dup > 0 then parts[#parts + 1] = "dup " .. pct(p.dup) end
  if p.reorder > 0 then parts[#parts + 1] = "reorder " .. pct(p.reorder) end
  if p.rate then parts[#parts + 1] = ("rate %dbit"):format(p.rate) end
  if p.limit then parts[#parts + 1] = ("limit %d"):format(p.limit) end
  return table.concat(parts, " ")
end

return impair
