--- What the lab specs share (needs root; see docs/LAB.md).  The usual spec:
--
--   local labhelper = require "spec.labhelper"
--   local lab = require "natpunch.lab"
--
--   labhelper.describe("#lab my case", function()
--     local L = labhelper.lab(lab.standard{ a = "sym", b = "prc" }, { rendezvous = true })
--     it("connects", function()
--       local w = L:spawn_peer("b", { "--id", "w", "--timeout", "30" })   -- waits for "registered"
--       local out, code, ev = L:run_peer("a", { "--id", "c", "--connect", "w", "--touch", "hi" })
--       w:stop()
--       assert.equal(0, code, out .. "\n--- waiter\n" .. w:output())
--       assert.equal("hi", ev.message.data)
--     end)
--   end)
--
-- labhelper.describe(title, body, opts)  describe() that, when the lab cannot
--     run here, holds one pending test "(skipped): <reason>" instead of
--     body (opts as for skip_reason; opts.pending replaces "(skipped)").
-- labhelper.skip_reason(opts)  nil when the lab can run, else why not:
--     not root / no namespaces (lab.unavailable), no build/natpunch/core.so,
--     or a missing command of opts.tools = { "turnserver", ... } (opts.hint
--     says which package has them).  Checked once per tool per process.
-- labhelper.lab(desc, opts)  inside a describe: setup() brings the topology
--     desc up and teardown() takes it down and checks nothing is left
--     (assert_gone, with opts.nft).  Returns L with L.t (the topology, set
--     in setup; a later setup() of the same describe runs after it).
--     opts.rendezvous = true or a list of extra arguments: setup() also
--     starts `natpunch rendezvous --listen L.server --json ...` on host
--     opts.rendezvous_host (default "s1", at 203.0.113.2), as L.rv, and
--     waits for it to listen; teardown() stops it.
--   L:natpunch(args) / labhelper.natpunch(args)  argv running this
--     checkout's bin/natpunch with args (under `make sanitize` with its
--     runtime preloaded), for L.t:spawn / L.t:exec.
--   L:spawn_peer(host, args)  `natpunch peer --server L.server --json args`
--     in the background on host; returns its handle once it has registered.
--   L:run_peer(host, args)  the same run to the end: output, exit code,
--     events(output).
--   L:pair(connector, acceptor, opts)  one connection between two hosts: a
--     waiter `--id ID-w` on acceptor (--timeout opts.wait, default 40) and
--     `--id ID-c --connect ID-w --touch opts.touch` on connector (--timeout
--     opts.timeout, default 30), both with --methods opts.methods when set
--     (opts.id = ID).  Returns the connector's events, its exit code, the
--     waiter's events, and all output (connector, waiter, rendezvous).
-- labhelper.events(text)  the first event of each name among the JSON lines
--     of text: { connected = {...}, message = {...}, ... }.
-- labhelper.assert_gone(prefix, opts)  no namespace, link or state file of
--     the lab with this prefix is left (opts.nft: nor an nft table named
--     natpunch in this namespace).
-- labhelper.dump(res)  a matrix case result (natpunch.lab.matrix) as text
--     for an assertion message: its fields as JSON, then each process's log.
-- labhelper.matrix_describe(title, opts, case)  a describe of
--     natpunch.lab.matrix cases on one lab (matrix.runner(opts), up in
--     setup): one it() per name of opts.cases, titled by the case and
--     case.what(c), that runs it and calls case.check(c, res, info, runner)
--     (info = dump(res)); teardown takes the lab down, prints the setup
--     times (setup_table) and checks nothing is left.  Pending per case
--     when the lab cannot run.
-- labhelper.setup_table(title, results)  those setup times as text.
-- labhelper.coturn(t, opts)  a coturn turnserver on host opts.host of the
--     running topology t, listening on opts.ip:3478 with REST-API secret
--     opts.secret (its files logged under opts.name, removed with the lab's
--     state); returns its handle once a Binding request from host
--     opts.probe is answered (within about 5 s, else it fails): the
--     spec side of natpunch.lab.coturn.
local lab = require "natpunch.lab"
local matrix = require "natpunch.lab.matrix"
local proc = require "natpunch.lab.proc"
local state = require "natpunch.lab.state"
local coturn = require "natpunch.lab.coturn"
local json = require "natpunch.json"
local helper = require "spec.helper"
-- A required module does not see the spec file's environment, where busted
-- puts describe, it, assert...; its API table has them.
local busted = require "busted"
local describe, it, pending, setup, teardown, assert =
  busted.describe, busted.it, busted.pending, busted.setup, busted.teardown, busted.assert

local labhelper = {}

labhelper.RV = "203.0.113.2"          -- host s1 of lab.standard
labhelper.PORT = 3478

local unavailable, have_tool = nil, {}

function labhelper.skip_reason(opts)
  opts = opts or {}
  if unavailable == nil then unavailable = lab.unavailable() or false end
  if unavailable then return "needs root: " .. unavailable end
  local core = helper.build .. "/natpunch/core.so"
  local f = io.open(core, "r")
  if not f then return "needs the C module " .. core .. " (make)" end
  f:close()
  for _, tool in ipairs(opts.tools or {}) do
    if have_tool[tool] == nil then
      local _, code = proc.run({ "sh", "-c", "command -v " .. proc.quote(tool) })
      have_tool[tool] = code == 0
    end
    if not have_tool[tool] then
      return "needs " .. tool .. (opts.hint and (" (" .. opts.hint .. ")") or "")
    end
  end
  return nil
end

function labhelper.describe(title, body, opts)
  describe(title, function()
    local why = labhelper.skip_reason(opts)
    if why then
      pending(((opts and opts.pending) or "(skipped)") .. ": " .. why)
      return
    end
    body()
  end)
end

function labhelper.natpunch(args)
  local argv = matrix.command()
  for _, w in ipairs(args) do argv[#argv + 1] = w end
  return proc.preload(argv)
end

function labhelper.events(text)
  local out = {}
  for _, ev in ipairs(helper.json_lines(text)) do
    if ev.event then out[ev.event] = out[ev.event] or ev end
  end
  return out
end

function labhelper.assert_gone(prefix, opts)
  local netns = proc.run({ "ip", "netns", "list" })
  for name in netns:gmatch("(%S+)[^\n]*") do
    assert.is_nil(name:find(prefix .. "-", 1, true), "namespace left: " .. name)
  end
  local links = proc.run({ "ip", "-o", "link", "show" })
  assert.is_nil(links:find(prefix, 1, true), "link left in: " .. links)
  if opts and opts.nft then
    local tables = proc.run({ "nft", "list", "tables" })
    assert.is_nil(tables:find("natpunch", 1, true), "nft table left: " .. tables)
  end
  assert.is_nil(io.open(state.path(prefix), "r"), "state file left")
end

function labhelper.dump(res)
  local copy = {}
  for k, v in pairs(res) do if k ~= "logs" then copy[k] = v end end
  copy.problems = json.array(copy.problems or {})
  local out = { json.encode(copy, { "case", "pass", "problems" }) }
  for _, who in ipairs({ "connector", "acceptor", "rendezvous" }) do
    if res.logs and res.logs[who] then out[#out + 1] = "--- " .. who .. "\n" .. res.logs[who] end
  end
  return table.concat(out, "\n")
end

function labhelper.setup_table(title, results)
  local lines = { ("\n%s: setup_ms per case (connecting side)"):format(title) }
  for _, r in ipairs(results) do
    lines[#lines + 1] = ("  %-22s %-9s %-8s setup %5s ms  rtt server %s / peer %s ms%s")
      :format(r.pair, r.connected and "connected" or "failed", r.path or "-",
        tostring(r.setup_ms or "-"), tostring(r.rtt_server_ms or "-"),
        tostring(r.rtt_peer_ms or "-"), r.ratio and ("  ratio %.2f"):format(r.ratio) or "")
  end
  return table.concat(lines, "\n")
end

function labhelper.matrix_describe(title, opts, case)
  describe(title, function()
    local why = labhelper.skip_reason()
    if why then
      for _, name in ipairs(opts.cases) do pending(matrix.case(name).title .. ": " .. why) end
      return
    end
    local runner, results = nil, {}
    setup(function()
      runner = matrix.runner(opts)
      runner:up()
    end)
    teardown(function()
      if not runner then return end
      local prefix = runner:topology().prefix
      runner:down()
      io.stderr:write(labhelper.setup_table(title, results), "\n")
      labhelper.assert_gone(prefix)
    end)
    for _, name in ipairs(opts.cases) do
      local c = matrix.case(name)
      it(c.title .. ": " .. case.what(c), function()
        local res = runner:run_case(name)
        results[#results + 1] = res
        case.check(c, res, labhelper.dump(res), runner)
      end)
    end
  end)
end

local Lab = {}
Lab.__index = Lab

function Lab.natpunch(_, args) return labhelper.natpunch(args) end

local function peer_argv(L, args)
  local argv = { "peer", "--server", L.server, "--json" }
  for _, w in ipairs(args) do argv[#argv + 1] = w end
  return labhelper.natpunch(argv)
end

function Lab:spawn_peer(host, args)
  local h = self.t:spawn(host, peer_argv(self, args))
  assert(h:expect('"event":"registered"', 15), h:output())
  return h
end

function Lab:run_peer(host, args)
  local out, code = self.t:exec(host, peer_argv(self, args))
  return out, code, labhelper.events(out)
end

function Lab:pair(connector, acceptor, opts)
  local id = opts.id
  local wargs = { "--id", id .. "-w", "--timeout", tostring(opts.wait or 40) }
  local cargs = { "--id", id .. "-c", "--connect", id .. "-w", "--touch", opts.touch,
    "--timeout", tostring(opts.timeout or 30) }
  if opts.methods then
    for _, args in ipairs({ wargs, cargs }) do
      args[#args + 1] = "--methods"
      args[#args + 1] = opts.methods
    end
  end
  local waiter = self:spawn_peer(acceptor, wargs)
  local out, code, ev = self:run_peer(connector, cargs)
  -- the waiter's side of it: its connected event comes a moment later
  if code == 0 then waiter:expect('"event":"connected"', 5) end
  waiter:stop()
  local all = out .. "\n--- waiter\n" .. waiter:output()
  if self.rv then all = all .. "\n--- rendezvous\n" .. self.rv:output() end
  return ev, code, labhelper.events(waiter:output()), all
end

function labhelper.lab(desc, opts)
  opts = opts or {}
  local L = setmetatable({ server = labhelper.RV .. ":" .. labhelper.PORT }, Lab)
  setup(function()
    L.t = lab.topology(desc)
    L.t:up()
    if opts.rendezvous then
      local argv = { "rendezvous", "--listen", L.server, "--json" }
      if type(opts.rendezvous) == "table" then
        for _, w in ipairs(opts.rendezvous) do argv[#argv + 1] = w end
      end
      L.rv = L.t:spawn(opts.rendezvous_host or "s1", labhelper.natpunch(argv))
      assert(L.rv:expect('"event":"listening"', 10), L.rv:output())
    end
  end)
  teardown(function()
    if L.rv then L.rv:stop() end
    if L.t then
      L.t:down()
      labhelper.assert_gone(L.t.prefix, opts)
    end
  end)
  return L
end


--- coturn on t's host opts.host (see the head of this file).
function labhelper.coturn(t, opts)
  local turnd, err = coturn.start(t, opts)
  return turnd or error(err)
end

return labhelper
