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
--     (assert_gone).  Returns L with L.t (the topology, set in setup).
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
-- labhelper.events(text)  the first event of each name among the JSON lines
--     of text: { connected = {...}, message = {...}, ... }.
-- labhelper.assert_gone(prefix, opts)  no namespace, link or state file of
--     the lab with this prefix is left (opts.nft: nor an nft table named
--     natpunch in this namespace).
-- labhelper.dump(res)  a matrix case result (natpunch.lab.matrix) as text
--     for an assertion message: its fields as JSON, then each process's log.
local lab = require "natpunch.lab"
local matrix = require "natpunch.lab.matrix"
local proc = require "natpunch.lab.proc"
local state = require "natpunch.lab.state"
local json = require "natpunch.json"
local helper = require "spec.helper"
-- A required module does not see the spec file's environment, where busted
-- puts describe, it, assert...; its API table has them.
local busted = require "busted"
local describe, pending, setup, teardown, assert =
  busted.describe, busted.pending, busted.setup, busted.teardown, busted.assert

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
      labhelper.assert_gone(L.t.prefix)
    end
  end)
  return L
end

return labhelper
