-- natpunch.lab.discovery: NAT behaviour discovery checked in the lab.  One
-- lab holds one NAT per case (each with one host behind it), a host with no
-- NAT, and a public server host s1 with two addresses, on which run
-- natpunch stun-server (--alternate) and coturn's turnserver -L IP1 -L IP2.
-- Every client (natpunch nat-type, coturn's turnutils_natdiscovery -m -f,
-- Debian's classic `stun`) is run from every case against both servers,
-- and its verdict compared with the lab's ground truth (the NAT registry,
-- natpunch.lab.nat_types, and the NAT's options).
--
--   local d = discovery.runner()
--   d:up()                                   -- lab + both servers
--   local rows = d:run("natpunch", "ours")   -- { [case] = {verdict...} }
--   d:down()                                 -- everything stopped, removed
--
-- Used by spec/discover_spec.lua and by docs/DISCOVERY.md's table
-- (`lua5.4 -e 'require"natpunch.lab.discovery".main()'`).
local lab = require "natpunch.lab"
local proc = require "natpunch.lab.proc"
local state = require "natpunch.lab.state"
local matrix = require "natpunch.lab.matrix"
local nat_types = require "natpunch.lab.nat_types"
local discover = require "natpunch.discover"

local discovery = {}

local S1, S1_ALT = "203.0.113.2", "203.0.113.3"

-- Each case: a NAT (nil for none) and what it must show.  One case per
-- type of the lab's NAT registry (natpunch.lab.nat_types), then variants
-- with hairpinning and port preservation changed, then no NAT.
discovery.CASES = {}
for _, id in ipairs(nat_types.ids()) do discovery.CASES[#discovery.CASES + 1] = { name = id, nat = { type = id } } end
for _, c in ipairs({
  { name = "sympp", nat = { type = "sym", port_preservation = true } },
  { name = "prchair", nat = { type = "prc", hairpin = true } },
  { name = "fullnopp", nat = { type = "full", port_preservation = false } },
  { name = "open" },
}) do discovery.CASES[#discovery.CASES + 1] = c end

--- What a case must show, from the registry's ground truth: nat, mapping,
-- filtering, type (classic name), hairpin, port_preserving, allocation.
function discovery.truth(case)
  if not case.nat then
    return { nat = false, mapping = "none", filtering = "endpoint-independent", type = "open" }
  end
  local e = nat_types.get(case.nat.type)
  local pp = case.nat.port_preservation
  if pp == nil then pp = e.port_preservation end
  local allocation
  local PATTERN = { random = "random", sequential = "sequential" }
  if e.mapping ~= discover.EI then allocation = pp and "preserving" or PATTERN[e.port] end
  return { nat = true, mapping = e.mapping, filtering = e.filtering,
    type = discover.classic(true, e.mapping, e.filtering), hairpin = case.nat.hairpin and true or false,
    port_preserving = pp, allocation = allocation,
    delta = allocation == "sequential" and 1 or nil }   -- the lab's sequential NAT steps by 1
end

--- The lab description: NAT n<i> with host h<i> per case; s1 with two
-- addresses; "open" is a public host.
function discovery.topology(opts)
  opts = opts or {}
  local desc = { prefix = opts.prefix, nats = {}, hosts = {
    { name = "s1", public = S1, extra_addrs = { S1_ALT } },
  } }
  for i, c in ipairs(discovery.CASES) do
    if c.nat then
      local n = { name = "n" .. i, public = ("203.0.113.%d"):format(10 + i), lan = ("198.18.%d.0/24"):format(i) }
      for k, v in pairs(c.nat) do n[k] = v end
      desc.nats[#desc.nats + 1] = n
      desc.hosts[#desc.hosts + 1] = { name = "h" .. i, behind = n.name }
    else
      desc.hosts[#desc.hosts + 1] = { name = "h" .. i, public = ("203.0.113.%d"):format(50 + i) }
    end
  end
  return desc
end

--- Parse turnutils_natdiscovery's verdict lines.
function discovery.parse_natdiscovery(out)
  local function kind(what)
    local v = out:match("NAT with ([%a ]-) " .. what .. "!")
    if not v then return nil end
    v = v:lower()
    return ({ ["endpoint independent"] = "endpoint-independent", ["address dependent"] = "address-dependent",
      ["address and port dependent"] = "address-and-port-dependent" })[v] or v
  end
  return { mapping = kind("Mapping"), filtering = kind("Filtering") }
end

--- Parse the classic `stun` client's "Primary:" line into a classic name.
function discovery.parse_stun(out)
  local line = out:match("Primary: ([^\n\t]*)")
  if not line then return { type = nil, line = nil } end
  local t
  if line:match("^Open") then t = "open"
  elseif line:match("^Independent Mapping, Independent Filter") then t = "full-cone"
  elseif line:match("^Independent Mapping, Address Dependent Filter") then t = "restricted-cone"
  elseif line:match("^Independent Mapping, Port Dependent Filter") then t = "port-restricted-cone"
  elseif line:match("^Dependent Mapping") then t = "symmetric"
  elseif line:match("Firewall") then t = "firewall"
  elseif line:match("Blocked") then t = "udp-blocked"
  end
  return { type = t, line = line }
end

local Runner = {}
Runner.__index = Runner

function discovery.runner(opts)
  opts = opts or {}
  return setmetatable({ t = lab.topology(discovery.topology(opts)), ports = {
    ours = opts.port or 3478, coturn = (opts.port or 3478) + 10 } }, Runner)
end

function Runner:topology() return self.t end

-- The coturn configuration: STUN only, no authentication, only the lab
-- addresses, logs in the lab's own log directory.
function Runner:_coturn_conf()
  local dir = state.log_path(self.t.prefix, "coturn")
  local port = self.ports.coturn
  local conf = table.concat({
    "listening-port=" .. port,
    "alt-listening-port=" .. (port + 1),
    "listening-ip=" .. S1,
    "listening-ip=" .. S1_ALT,
    "stun-only", "no-auth", "no-tcp", "no-tls", "no-dtls", "no-cli", "no-tcp-relay",
    "log-file=" .. dir .. ".log", "simple-log",
    "pidfile=" .. dir .. ".pid",
    "userdb=" .. dir .. ".db",
    "",
  }, "\n")
  for _, suffix in ipairs({ ".conf", ".log", ".pid", ".db" }) do state.append(self.t.prefix, "log", dir .. suffix) end
  local f = assert(io.open(dir .. ".conf", "w"))
  f:write(conf)
  f:close()
  return dir .. ".conf"
end

--- Bring up the lab and start both servers on s1.  Raises (after taking
-- everything down) if something does not start.
function Runner:up()
  self.t:up()
  local ok, err = pcall(function()
    local argv = matrix.command()
    for _, w in ipairs({ "stun-server", "--listen", S1 .. ":" .. self.ports.ours, "--alternate", S1_ALT,
      "--json" }) do argv[#argv + 1] = w end
    self.ours = self.t:spawn("s1", proc.preload(argv))
    if not self.ours:expect('"event":"listening"', 10) then
      error("natpunch stun-server did not start: " .. self.ours:output(), 0)
    end
    self.coturn = self.t:spawn("s1", { "turnserver", "-c", self:_coturn_conf() })
    -- ready when it answers a Binding request on both addresses
    local ready = false
    for _ = 1, 50 do
      local out = self.t:exec("h" .. #discovery.CASES, { "timeout", "2", "turnutils_stunclient", "-p",
        tostring(self.ports.coturn), S1_ALT })
      if out:match("UDP reflexive addr") then ready = true break end
      proc.sleep(0.1)
    end
    if not ready then error("coturn did not start: " .. self.coturn:output(), 0) end
  end)
  if not ok then
    self:down()
    error(err, 0)
  end
  return self
end

function Runner:down()
  self.t:down()
end

function Runner:server(which)
  return S1 .. ":" .. self.ports[which]
end

-- argv of a client run in case i against server `which`.
function Runner:_client_argv(tool, which)
  local port = tostring(self.ports[which])
  if tool == "natpunch" then
    local argv = matrix.command()
    for _, w in ipairs({ "nat-type", "--server", S1 .. ":" .. port, "--json" }) do argv[#argv + 1] = w end
    return proc.preload(argv)
  elseif tool == "natdiscovery" then
    return { "timeout", "30", "turnutils_natdiscovery", "-m", "-f", "-p", port, S1 }
  elseif tool == "stun" then
    return { "timeout", "30", "stun", S1 .. ":" .. port }
  end
  error("discovery: unknown tool " .. tostring(tool))
end

local function parse(tool, out)
  if tool == "natpunch" then
    local json = require "natpunch.json"
    for line in out:gmatch("[^\n]+") do
      if line:match('^{"event":"result"') then return json.decode(line) end
    end
    return {}
  elseif tool == "natdiscovery" then
    return discovery.parse_natdiscovery(out)
  end
  return discovery.parse_stun(out)
end

--- Run tool ("natpunch", "natdiscovery", "stun") from every case's host
-- against server which ("ours" or "coturn"), all cases at once.  Returns
-- { [case name] = parsed verdict (with .output and .wall_s) }.
function Runner:run(tool, which)
  local handles, started = {}, os.time()
  for i, c in ipairs(discovery.CASES) do
    handles[c.name] = self.t:spawn("h" .. i, self:_client_argv(tool, which))
  end
  local res = {}
  for name, h in pairs(handles) do
    h:wait(40)
    h:stop(1)
    local out = h:output()
    res[name] = parse(tool, out)
    res[name].output = out
  end
  res._wall_s = os.time() - started
  return res
end

--- Print the classification table (markdown) of every tool against both
-- servers; for docs/DISCOVERY.md.  Needs root.
function discovery.main()
  local d = discovery.runner()
  local ok, err = pcall(function()
    d:up()
    local cols = {}
    for _, tool in ipairs({ "natpunch", "natdiscovery", "stun" }) do
      for _, which in ipairs({ "ours", "coturn" }) do
        cols[#cols + 1] = { tool = tool, which = which, res = d:run(tool, which) }
      end
    end
    print("| lab NAT | ground truth | natpunch nat-type vs ours / coturn"
      .. " | turnutils_natdiscovery -m -f vs ours / coturn | stun vs ours / coturn |")
    print("|---|---|---|---|---|")
    for i, c in ipairs(discovery.CASES) do
      local tr = discovery.truth(c)
      local function cell(col)
        local r = col.res[c.name]
        if col.tool == "natpunch" then
          return ("%s (%s, %s%s)"):format(tostring(r.type), tostring(r.mapping), tostring(r.filtering),
            r.hairpin and ", hairpin" or "")
        elseif col.tool == "natdiscovery" then
          return ("%s, %s"):format(tostring(r.mapping), tostring(r.filtering))
        end
        return tostring(r.line)
      end
      local desc = c.nat and (c.nat.type .. (c.nat.hairpin and " +hairpin" or "")
        .. (c.nat.port_preservation == true and " +pp" or c.nat.port_preservation == false and " -pp" or "")) or "none"
      print(("| h%d `%s` | %s (%s, %s) | %s / %s | %s / %s | %s / %s |"):format(i, desc, tr.type, tr.mapping,
        tr.filtering, cell(cols[1]), cell(cols[2]), cell(cols[3]), cell(cols[4]), cell(cols[5]), cell(cols[6])))
    end
  end)
  d:down()
  if not ok then error(err, 0) end
end

return discovery
