--- `natpunch lab`: build, use and remove the NAT lab (network namespaces,
-- nftables NATs, impaired links).  See docs/LAB.md.
local cli = require "natpunch.cli"
local nat_types = require "natpunch.lab.nat_types"

local M = {}

M.summary = "build a NAT lab of network namespaces (up, exec, status, down, matrix)"

-- The NAT types are those of lab/nat_types.lua when the help is shown.
local function type_list() return table.concat(nat_types.ids(), ", ") end

local UP_OPTIONS = {
  { "a", arg = "TYPE", default = "prc", help = "NAT type of na (host a, a2): see NAT types" },
  { "b", arg = "TYPE", default = "prc", help = "NAT type of nb (host b)" },
  { "c", arg = "TYPE", default = "prc", help = "NAT type of nc, the inner NAT behind na (host c)" },
  { "hairpin", help = "every NAT hairpins (RFC 4787 section 6)" },
  { "port-preservation", help = "every NAT keeps the source port when it can "
    .. "(default: cone types yes, sym no)" },
  { "no-port-preservation", help = "no NAT keeps the source port" },
  { "udp-timeout", arg = "S", type = "integer",
    help = "UDP mapping timeout before a reply (nf_conntrack_udp_timeout, default 30)" },
  { "udp-stream-timeout", arg = "S", type = "integer",
    help = "UDP mapping timeout once both ways are seen (default 120)" },
  { "delay", arg = "D", help = "one-way delay on the WAN links of na and nb (50ms)" },
  { "jitter", arg = "D", help = "delay varies by +-D" },
  { "loss", arg = "P", help = "drop P of the frames each way (5%)" },
  { "dup", arg = "P", help = "duplicate P of the frames" },
  { "reorder", arg = "P", help = "send P of the frames at once, ahead of delayed ones" },
  { "rate", arg = "R", help = "rate limit (10mbit)" },
  { "limit", arg = "N", help = "queue of the link in frames (default 1000)" },
  { "impair", arg = "HOW", default = "auto",
    help = "auto (netem if the kernel has it, else natpunch-wire), netem or wire" },
  { "prefix", arg = "P", help = "name prefix of everything made (default np + 4 hex digits)" },
  { "json", help = "print one JSON object per line" },
}

local MATRIX_OPTIONS = {
  { "only", arg = "CASES", default = "all",
    help = "all, pairs, cone, lean (cone pairs + sym->full), hard or case names, a,b (--list)" },
  { "hard", help = "the hard cases (symmetric NATs: predict, birthday, relay through coturn), "
    .. "default methods, 30 s each; the same as --only hard" },
  { "markdown", help = "at the end, print the summary as a Markdown table (with the command and date) "
    .. "on stdout; the progress goes to stderr" },
  { "list", help = "list the cases and what each must show, then exit" },
  { "delay", arg = "D", help = "one-way delay on every link into the internet but the server's (50ms)" },
  { "jitter", arg = "D", help = "delay varies by +-D" },
  { "loss", arg = "P", help = "drop P of the frames each way on those links (5%)" },
  { "timeout", arg = "S", type = "number",
    help = "the connecting peer's --timeout (default 5, with impairment 10)" },
  { "repeat", arg = "N", type = "integer", default = 1, help = "run the cases N times (medians)" },
  { "impair", arg = "HOW", default = "auto", help = "auto, netem or wire" },
  { "prefix", arg = "P", help = "name prefix of the lab (default np + 4 hex digits)" },
  { "json", help = "print one JSON object per line" },
}

local PREFIX_OPTIONS = {
  { "prefix", arg = "P", help = "the lab (needed when several exist)" },
  { "json", help = "print one JSON object per line" },
}

local function usage() return table.concat({
  "Usage: natpunch lab up [options]",
  "       natpunch lab exec [--prefix P] HOST -- COMMAND [ARG...]",
  "       natpunch lab status [--json]",
  "       natpunch lab down [--prefix P] [--json]",
  "       natpunch lab matrix [--only CASES | --hard] [--delay D] [--loss P] [--repeat N]",
  "                               [--json | --markdown]",
  "",
  "Builds a NAT lab from Linux network namespaces (needs root, iproute2 and",
  "nftables) and leaves it up until `down`:",
  "",
  "  internet   203.0.113.0/24 and 198.51.100.0/24 on one bridge",
  "    s1 203.0.113.2, s2 198.51.100.2   public servers (rendezvous)",
  "    p  203.0.113.50                   a host with no NAT",
  "    na 203.0.113.11  --a TYPE  LAN 198.18.1.0/24: a .2, a2 .3",
  "       nc 198.18.1.254  --c TYPE  LAN 198.18.3.0/24: c .2 (double NAT)",
  "    nb 203.0.113.12  --b TYPE  LAN 198.18.2.0/24: b .2",
  "",
  "NAT types (classic names, RFC 4787 terms; lab/nat_types.lua):",
  table.concat(nat_types.help_lines(), "\n"),
  "",
  "up " .. cli.options_help(UP_OPTIONS):gsub("^Options:", "options:"),
  "",
  "matrix builds its own lab (one NAT per side and type), runs a rendezvous",
  "and two `natpunch peer --json` per case (one waits, one connects, sends and",
  "touches), prints one line per case (pair, connected, path, setup_ms, reason),",
  "and removes the lab.  Exit 0 when every case is as expected:",
  "",
  "matrix " .. cli.options_help(MATRIX_OPTIONS):gsub("^Options:", "options:"),
  "",
  "exec runs COMMAND inside HOST's namespace (s1, s2, p, a, a2, b, c, the",
  "routers na, nb, nc, or inet) with this terminal, and exits with its code.",
  "status lists the labs that exist; down removes one (--prefix) or all of",
  "them, also what a crashed run left behind.",
  "",
  "Examples:",
  "  natpunch lab up --a prc --b sym --hairpin",
  "  natpunch lab up --a full --b full --delay 50ms --loss 5% --prefix np1",
  "  natpunch lab exec --prefix np1 s1 -- natpunch rendezvous --listen 0.0.0.0:3478",
  "  natpunch lab exec --prefix np1 a -- natpunch peer --server 203.0.113.2:3478 --id a",
  "  natpunch lab down --prefix np1",
  "  natpunch lab matrix --hard --repeat 50 --markdown   # docs/TRAVERSAL.md's hard cases",
  "  natpunch lab matrix --only lean --delay 50ms --loss 5% --json",
  "",
  "Exit codes: 0 success, 1 failure (not root, a command failed), 2 usage error;",
  "exec: the command's own exit code.",
}, "\n") end

-- M.usage is made when read, from the NAT registry as it is then.
setmetatable(M, { __index = function(_, k) if k == "usage" then return usage() end end })

-- Events carry a human line in ev.text; JSON lines leave it out.
local function out_for(as_json)
  local out = cli.output(as_json, function(ev) return ev.text end)
  if as_json then
    local json = require "natpunch.json"
    local event = out.event
    out.event = function(ev)
      local copy = {}
      for k, v in pairs(ev) do copy[k] = v end
      copy.text = nil
      if copy.removed then copy.removed = json.array(copy.removed) end
      event(copy)
    end
  end
  return out
end

-- lab table (from lab.list) -> the prefix to act on, or nil, message.
local function pick_prefix(lab, prefix)
  if prefix then return prefix end
  local labs = lab.list()
  if #labs == 1 then return labs[1].prefix end
  if #labs == 0 then return nil, "no lab is up (natpunch lab up)" end
  local names = {}
  for i, l in ipairs(labs) do names[i] = l.prefix end
  return nil, "several labs are up (" .. table.concat(names, ", ") .. "): say --prefix"
end

local function node_text(n)
  local parts = { ("  %-5s %-5s %-14s %-15s"):format(n.name, n.role, n.ns, n.addr or "") }
  if n.role == "nat" then
    parts[#parts + 1] = ("%s (%s), LAN %s, hairpin %s, port preservation %s, "
      .. "udp timeout %ds/%ds"):format(n.type, n.rfc4787, n.lan,
      n.hairpin and "on" or "off", n.port_preservation and "on" or "off",
      n.udp_timeout, n.udp_stream_timeout)
  end
  if n.behind then parts[#parts + 1] = "behind " .. n.behind end
  if n.link then parts[#parts + 1] = "link: " .. n.link .. " (" .. (n.link_kind or "?") .. ")" end
  return table.concat(parts, "  ")
end

-- The options of a subcommand that takes no operands; nil and the exit
-- code when there is nothing more to do (a usage error, or --help shown).
local function parse_plain(name, argv, options)
  local opts, rest = cli.parse(argv, options)
  if not opts then return nil, cli.usage_error(name, rest) end
  if opts.help then print(M.usage) return nil, cli.OK end
  if #rest > 0 then return nil, cli.usage_error(name, "unexpected '" .. rest[1] .. "'") end
  return opts
end

local function up(lab, argv)
  local opts, code = parse_plain("lab up", argv, UP_OPTIONS)
  if not opts then return code end
  for _, k in ipairs({ "a", "b", "c" }) do
    if not lab.canonical_type(opts[k]) then
      return cli.usage_error("lab up", "--" .. k .. ": unknown NAT type '" .. opts[k]
        .. "' (" .. type_list() .. ")")
    end
  end
  if opts.port_preservation and opts.no_port_preservation then
    return cli.usage_error("lab up", "--port-preservation and --no-port-preservation")
  end
  local pp
  if opts.port_preservation then pp = true elseif opts.no_port_preservation then pp = false end
  local link
  for _, k in ipairs({ "delay", "jitter", "loss", "dup", "reorder", "rate", "limit" }) do
    if opts[k] then link = link or {}; link[k] = opts[k] end
  end
  local ok, t = pcall(lab.topology, lab.standard{
    a = opts.a, b = opts.b, c = opts.c, hairpin = opts.hairpin, port_preservation = pp,
    udp_timeout = opts.udp_timeout, udp_stream_timeout = opts.udp_stream_timeout,
    link = link, prefix = opts.prefix, impair = opts.impair,
  })
  if not ok then return cli.usage_error("lab up", tostring(t):gsub("^lab: ", "")) end
  local why = lab.unavailable()
  if why then
    io.stderr:write("natpunch lab up: ", why, "\n")
    return cli.FAIL
  end
  local good, err = pcall(t.up, t)
  if not good then
    io.stderr:write("natpunch lab up: ", tostring(err), "\n")
    return cli.FAIL
  end
  local out = out_for(opts.json)
  local info = t:info()
  out.event({ event = "up", prefix = info.prefix,
    text = "lab " .. info.prefix .. " is up" })
  for _, n in ipairs(info.nodes) do
    local ev = { event = "node", text = node_text(n) }
    for k, v in pairs(n) do ev[k] = v end
    out.event(ev)
  end
  if not opts.json then
    print(("\nRun a command in a host:  natpunch lab exec --prefix %s a -- ping -c1 203.0.113.2")
      :format(info.prefix))
    print(("Remove it:                natpunch lab down --prefix %s"):format(info.prefix))
  end
  return cli.OK
end

local function exec(lab, argv)
  -- options stop at the host name: what follows "--" is the command's
  local head, cmd = {}, nil
  for i, a in ipairs(argv) do
    if a == "--" then cmd = table.move(argv, i + 1, #argv, 1, {}) break end
    head[#head + 1] = a
  end
  local opts, rest = cli.parse(head, PREFIX_OPTIONS)
  if not opts then return cli.usage_error("lab exec", rest) end
  if opts.help then print(M.usage) return cli.OK end
  if #rest ~= 1 or not cmd or #cmd == 0 then
    return cli.usage_error("lab exec", "say: natpunch lab exec [--prefix P] HOST -- COMMAND")
  end
  local prefix, err = pick_prefix(lab, opts.prefix)
  if not prefix then return cli.usage_error("lab exec", err) end
  local full, why = lab.exec_in(prefix, rest[1], cmd)
  if not full then
    io.stderr:write("natpunch lab exec: ", why, "\n")
    return cli.FAIL
  end
  local proc = require "natpunch.lab.proc"
  io.stdout:flush()
  local _, how, code = os.execute(proc.command(full))
  if how == "signal" then return 128 + code end
  return code or cli.FAIL
end

local function status(lab, argv)
  local opts, code = parse_plain("lab status", argv, PREFIX_OPTIONS)
  if not opts then return code end
  local out = out_for(opts.json)
  local labs = lab.list()
  if #labs == 0 and not opts.json then print("no lab is up") end
  for _, l in ipairs(labs) do
    if not opts.prefix or opts.prefix == l.prefix then
      local age = l.created and (os.time() - l.created) or 0
      out.event({ event = "lab", prefix = l.prefix, created = l.created,
        namespaces = l.namespaces, namespaces_present = l.namespaces_present,
        processes = l.processes,
        text = ("%s  up %ds  namespaces %d/%d  processes %d"):format(l.prefix, age,
          l.namespaces_present, l.namespaces, l.processes) })
      for _, n in ipairs(l.nodes) do
        local ev = { event = "node", prefix = l.prefix }
        for k, v in pairs(n) do
          if v == "true" or v == "false" then
            ev[k] = v == "true"
          elseif v ~= "-" then
            ev[k] = k == "link" and v:gsub("_", " ") or v
          end
        end
        ev.text = ("  %-5s %-5s %-14s %-15s %s"):format(n.name or "", n.role or "",
          n.ns or "", n.addr or "", n.role == "nat" and ("type " .. (n.type or "?")
          .. " lan " .. (n.lan or "?") .. " hairpin " .. (n.hairpin or "?")
          .. " pp " .. (n.pp or "?")) or "")
        out.event(ev)
      end
    end
  end
  return cli.OK
end

local function down(lab, argv)
  local opts, code = parse_plain("lab down", argv, PREFIX_OPTIONS)
  if not opts then return code end
  if opts.prefix and not opts.prefix:match("^[a-z][a-z0-9]*$") then
    return cli.usage_error("lab down", "bad --prefix '" .. opts.prefix .. "'")
  end
  local prefixes = {}
  if opts.prefix then
    prefixes[1] = opts.prefix
  else
    for _, l in ipairs(lab.list()) do prefixes[#prefixes + 1] = l.prefix end
  end
  local out = out_for(opts.json)
  if #prefixes == 0 and not opts.json then print("no lab is up") end
  for _, p in ipairs(prefixes) do
    local removed = lab.down_all(p)
    out.event({ event = "down", prefix = p, removed = removed,
      text = ("lab %s removed (%d things: %s)"):format(p, #removed,
        #removed > 0 and table.concat(removed, ", ") or "nothing left") })
  end
  return cli.OK
end

-- One human line per case result.
local function case_text(r)
  local function ms(v) return v and ("%.1f"):format(v) or "-" end
  local line = ("%-23s %-8s %-9s %-8s %6s"):format(r.pair, r.expect, r.connected and "connected" or "FAILED",
    r.path or "-", r.setup_ms and (r.setup_ms .. " ms") or "-")
  -- (the cases of their own kind, natpunch.lab.matrix.kinds, time something else and count nothing)
  if r.server_other then
    line = line .. ("  rtt %s/%s ms  ratio %s  server non-control %s"):format(ms(r.rtt_server_ms),
      ms(r.rtt_peer_ms), r.ratio and ("%.2f"):format(r.ratio) or "-", tostring(r.server_other))
  end
  if r.method then
    line = line .. ("  via %s"):format(r.method) .. (r.methods and (" (of %s)"):format(r.methods) or "")
  end
  if r.probes then line = line .. ("  %d probes"):format(r.probes) end
  if r.reason then line = line .. "  reason: " .. r.reason end
  if not r.pass then line = line .. "\n    NOT AS EXPECTED: " .. table.concat(r.problems, "; ") end
  return line
end

local CASE_KEYS = { "case", "pair", "a", "b", "expect", "connected", "path", "setup_ms", "reason",
  "peer_connected", "peer_path", "peer_setup_ms", "peer_reason", "remote", "touch_rtt_ms",
  "rtt_server_ms", "rtt_peer_ms", "ratio", "server_control", "server_other", "elapsed_ms",
  "pass", "problems", "phase_ms", "method", "methods", "peer_method", "probes", "server_stun" }

local function matrix_cmd(lab, argv)
  local opts, rest = cli.parse(argv, MATRIX_OPTIONS)
  if not opts then return cli.usage_error("lab matrix", rest) end
  if opts.help then print(M.usage) return cli.OK end
  if #rest > 0 then return cli.usage_error("lab matrix", "unexpected '" .. rest[1] .. "'") end
  local matrix = require "natpunch.lab.matrix"
  local json = require "natpunch.json"
  local names, err = matrix.names(opts.hard and "hard" or opts.only)
  if not names then return cli.usage_error("lab matrix", err) end
  if opts["repeat"] < 1 then return cli.usage_error("lab matrix", "--repeat must be at least 1") end
  if opts.timeout and opts.timeout <= 0 then
    return cli.usage_error("lab matrix", "--timeout must be positive")
  end
  local out = out_for(opts.json)
  if opts.markdown then
    -- progress on stderr, the table alone on stdout
    out = { event = function(ev) if ev.text then io.stderr:write(ev.text, "\n") end end }
  end
  if opts.list then
    for _, name in ipairs(names) do
      local c = matrix.case(name)
      out.event({ event = "case", case = name, pair = c.pair, expect = c.expect, path = c.path,
        peer_path = c.peer_path, title = c.title,
        text = ("%-22s %-8s path %-7s  %s"):format(name, c.expect, c.path, c.title) })
    end
    return cli.OK
  end
  local link
  for _, k in ipairs({ "delay", "jitter", "loss" }) do
    if opts[k] then link = link or {}; link[k] = opts[k] end
  end
  local ok, r = pcall(matrix.runner, { cases = names, link = link, timeout = opts.timeout,
    prefix = opts.prefix, impair = opts.impair })
  if not ok then return cli.usage_error("lab matrix", tostring(r):gsub("^lab: ", "")) end
  local why = lab.unavailable()
  if why then
    io.stderr:write("natpunch lab matrix: ", why, "\n")
    return cli.FAIL
  end
  local started = os.time()
  local results = {}
  local good, failure = pcall(function()
    r:up()
    local desc = link and require("natpunch.lab.impair").describe(
      require("natpunch.lab.impair").parse(link, "matrix")) or "none"
    out.event({ event = "lab", prefix = r:topology().prefix, link = desc, cases = #names,
      timeout = r.timeout,
      text = ("lab %s up: %d cases, link impairment: %s, peer --timeout %g s%s")
        :format(r:topology().prefix, #names, desc, r.timeout,
          opts.hard and not opts.timeout and " (hard cases: 30 s)" or "") })
    r:run(function(res)
      results[#results + 1] = res
      local ev = { event = "case", text = case_text(res) }
      for _, k in ipairs(CASE_KEYS) do ev[k] = res[k] end
      ev.problems = json.array(res.problems)
      out.event(ev)
    end, opts["repeat"])
  end)
  r:down()
  if not good then
    local interrupted = tostring(failure):match("interrupted!")
    io.stderr:write("natpunch lab matrix: ", tostring(failure), "\n")
    return interrupted and cli.INTERRUPTED or cli.FAIL
  end
  local passed, ratios = 0, {}
  for _, res in ipairs(results) do
    if res.pass then passed = passed + 1 end
    if res.ratio then ratios[#ratios + 1] = res.ratio end
  end
  if opts["repeat"] > 1 then
    for _, s in ipairs(matrix.summarize(results)) do
      local ev = { event = "summary", text = ("%-23s %d/%d connected, %d/%d as expected, "
        .. "median setup %s ms, median ratio %s"):format(s.pair, s.connected, s.runs, s.passed,
        s.runs, tostring(s.setup_ms or "-"), s.ratio and ("%.2f"):format(s.ratio) or "-") }
      for k, v in pairs(s) do ev[k] = v end
      out.event(ev)
    end
  end
  if opts.markdown then
    local args = { "natpunch lab matrix" }
    if opts.hard then
      args[#args + 1] = "--hard"
    elseif opts.only ~= "all" then
      args[#args + 1] = "--only " .. opts.only
    end
    for _, k in ipairs({ "delay", "jitter", "loss", "timeout" }) do
      if opts[k] then args[#args + 1] = "--" .. k .. " " .. tostring(opts[k]) end
    end
    if opts["repeat"] > 1 then args[#args + 1] = "--repeat " .. opts["repeat"] end
    args[#args + 1] = "--markdown"
    io.stdout:write(("`%s` (as root), %s, %d s:\n\n"):format(table.concat(args, " "),
      os.date("!%Y-%m-%d %H:%M UTC", started), os.time() - started))
    io.stdout:write(matrix.markdown(matrix.summarize(results)))
  end
  local med = matrix.median(ratios)
  out.event({ event = "done", cases = #results, passed = passed, seconds = os.time() - started,
    median_ratio = med,
    text = ("%d/%d cases as expected in %d s%s"):format(passed, #results, os.time() - started,
      med and (", median setup/(server RTT + peer RTT) %.2f"):format(med) or "") })
  return passed == #results and cli.OK or cli.FAIL
end

local SUB = { up = up, exec = exec, status = status, down = down, matrix = matrix_cmd }

function M.run(argv)
  local lab = require "natpunch.lab"
  -- -v/-q may come before the subcommand too (`natpunch lab -v up ...`)
  local common = {}
  while argv[1] == "-v" or argv[1] == "-q" or argv[1] == "--verbose" or argv[1] == "--quiet" do
    common[#common + 1] = table.remove(argv, 1)
  end
  if #common > 0 and argv[1] and argv[1]:sub(1, 1) == "-" then
    return cli.usage_error("lab", "unknown option '" .. cli.check.printable(argv[1]) .. "'")
  end
  if #common > 0 and argv[1] then table.move(common, 1, #common, 2, argv) end
  local sub = argv[1]
  if sub == nil or sub == "-h" or sub == "--help" or sub == "help" then
    print(M.usage)
    return sub and cli.OK or cli.USAGE
  end
  local f = SUB[sub]
  if not f then return cli.usage_error("lab", "unknown subcommand '" .. sub .. "'") end
  return f(lab, table.move(argv, 2, #argv, 1, {}))
end

return M
