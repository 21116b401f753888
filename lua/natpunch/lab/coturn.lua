-- natpunch.lab.coturn: a coturn turnserver inside a running lab, for the
-- relay cases (spec/iface_lab_spec.lua, spec/relay_lab_spec.lua, the hard
-- matrix's relay row).  Its config, log, pid and user-db files are written
-- down in the lab's state (natpunch.lab.state), so `lab down` removes them.
local proc = require "natpunch.lab.proc"
local state = require "natpunch.lab.state"

local coturn = {}

--- Write the config for opts (ip: listening and relay address; ip6: an
-- IPv6 one as well, for TURN over IPv6 and IPv6 relayed addresses; secret:
-- the REST-API secret a rendezvous hands credentials out for; name: the
-- files' name in the lab's log directory) and return its path.
function coturn.config(prefix, opts)
  local base = state.log_path(prefix, opts.name)
  for _, suffix in ipairs({ ".conf", ".log", ".pid", ".db" }) do state.append(prefix, "log", base .. suffix) end
  local f = assert(io.open(base .. ".conf", "w"))
  local lines = {
    "listening-port=3478", "listening-ip=" .. opts.ip, "relay-ip=" .. opts.ip,
    "min-port=49152", "max-port=49252", "use-auth-secret", "static-auth-secret=" .. opts.secret,
    "realm=lab.natpunch", "no-tcp", "no-tls", "no-dtls", "no-cli", "no-tcp-relay",
    "log-file=" .. base .. ".log", "simple-log", "pidfile=" .. base .. ".pid", "userdb=" .. base .. ".db",
  }
  if opts.ip6 then
    table.insert(lines, 4, "listening-ip=" .. opts.ip6)
    table.insert(lines, 5, "relay-ip=" .. opts.ip6)
  end
  lines[#lines + 1] = ""
  f:write(table.concat(lines, "\n"))
  f:close()
  return base .. ".conf"
end

--- Start coturn on host opts.host of the running topology t (opts as for
-- config) and wait until it answers a Binding request from host
-- opts.probe (on opts.ip, and on opts.ip6 when given), for at most
-- opts.wait seconds (default 5).  Returns its
-- process handle, or nil, the message and the handle when it did not answer.
function coturn.start(t, opts)
  local turnd = t:spawn(opts.host, { "turnserver", "-c", coturn.config(t.prefix, opts) })
  local want = { opts.ip, opts.ip6 }
  for _ = 1, math.max(1, math.ceil((opts.wait or 5) / 0.1)) do
    local out = t:exec(opts.probe, { "timeout", "2", "turnutils_stunclient", "-p", "3478", want[1] })
    if out:match("reflexive addr") then
      table.remove(want, 1)
      if #want == 0 then return turnd end
    else
      proc.sleep(0.1)
    end
  end
  return nil, "coturn did not start: " .. turnd:output(), turnd
end

return coturn
