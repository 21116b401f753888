-- UDP hole punching proven in the NAT lab: two peers behind two NATs meet
-- through a rendezvous on the lab's internet and exchange a message and a
-- touch directly, for every pair of NAT types (both directions), two hosts
-- behind one NAT (with and without hairpinning), a double NAT, a host with
-- no NAT, and a rendezvous that itself sits behind a NAT (natdemo's stage
-- 2).  Then the lean part of it again over links with 100 ms of delay and
-- 5% loss each way.
--
-- Everything goes through the command line inside the lab's namespaces
-- (natpunch rendezvous/peer --json); natpunch.lab.matrix runs a case and
-- collects what the processes printed, the RTTs (ping) and the rendezvous
-- host's packet counters (nftables).  See docs/TRAVERSAL.md.
--
-- Needs root; without it every case is pending with the reason.  No fixed
-- waits: every wait polls for an event and is bounded.  Tags: #lab (needs
-- root), #impaired (the delay/loss part), e.g. busted --exclude-tags=impaired.
local lab = require "natpunch.lab"
local matrix = require "natpunch.lab.matrix"
local proc = require "natpunch.lab.proc"
local helper = require "spec.helper"
local labhelper = require "spec.labhelper"

local skip_reason = labhelper.skip_reason
local assert_gone = labhelper.assert_gone

-- One it() per case on one lab, brought up once.  limits.setup_ms is a
-- loose bound on the setup time (the measured times go to stderr as a
-- table at the end; docs/TRAVERSAL.md has the ratio to the RTTs).
local function matrix_describe(title, opts, limits)
  labhelper.matrix_describe(title, opts, {
    what = function(c)
      return c.expect == "connect" and ("connects on the %s path"):format(c.path)
        or "connects, or both peers fail with a reason within their timeouts"
    end,
    check = function(c, res, info, runner)
      -- the rendezvous introduced them and carried nothing else
      assert.is_true(res.introduced, info)
      assert.is_true(res.server_control > 0, info)
      assert.equal(0, res.server_other, info)
      assert.is_falsy(res.hung, info)
      if c.expect == "connect" or res.connected then
        assert.is_true(res.connected, info)
        assert.equal(0, res.exit, info)
        assert.equal(c.path, res.path, info)
        assert.is_true(res.peer_connected, info)
        assert.equal(c.peer_path, res.peer_path, info)
        assert.is_number(res.touch_rtt_ms, info)
        assert.is_true((res.echoes or 0) >= 1, info)
        assert.is_number(res.setup_ms, info)
        -- the bound is udp's; a pair udp cannot connect (sym x prc) may
        -- connect through birthday, chosen from the introduction, which
        -- needs probes and starts after udp's 1.5 s
        if c.expect == "connect" then assert.equal("udp", res.method, info) end
        if res.method == "udp" then assert.is_true(res.setup_ms < limits.setup_ms, info) end
      else
        assert.equal(1, res.exit, info)
        assert.is_string(res.reason, info)
        assert.is_true(res.elapsed_ms <= (runner.timeout + 2) * 1000, info)
        assert.matches("punch failed", res.peer_reason, 1, true)
      end
      -- and every other check of natpunch.lab.matrix (remote endpoints,
      -- public addresses the rendezvous saw)
      assert.same({}, res.problems, info)
    end,
  })
end

describe("natpunch.lab.matrix (no root needed)", function()
  it("expects what RFC 4787 behaviour allows without port prediction", function()
    for _, a in ipairs(matrix.CONE) do
      for _, b in ipairs(matrix.CONE) do assert.equal("connect", matrix.expect(a, b)) end
    end
    assert.equal("connect", matrix.expect("sym", "full"))
    assert.equal("connect", matrix.expect("restricted", "sym"))
    assert.equal("may-fail", matrix.expect("sym", "prc"))
    assert.equal("may-fail", matrix.expect("prc", "sym"))
    assert.equal("may-fail", matrix.expect("sym", "sym"))
  end)

  it("names its sets of cases", function()
    assert.equal(22, #matrix.names("all"))
    assert.equal(16, #matrix.names("pairs"))
    assert.equal(9, #matrix.names("cone"))
    local lean = matrix.names("lean")
    assert.equal(10, #lean)
    assert.equal("sym-full", lean[10])
    assert.same({ "prc-sym", "same-nat" }, matrix.names("prc-sym, same-nat"))
    local ok, err = matrix.names("prc-cone")
    assert.is_nil(ok)
    assert.matches("unknown case", err)
    assert.equal("private", matrix.case("same-nat-hairpin").path)
    assert.equal("rv", matrix.case("rendezvous-nat").server)
  end)

  it("has hard cases apart (symmetric NATs, the method that must win), left out of all", function()
    local hard = matrix.names("hard")
    assert.same({ "hard-symseq-prc", "hard-prc-symseq", "hard-sym-prc", "hard-prc-sym", "hard-sym-sym",
      "hard-failover", "hard-upgrade", "hard-fallback", "hard-dual-homed", "hard-dual-nat", "hard-ipv6-only",
      "hard-dual-stack", "hard-relay-ipv6" }, hard)
    for _, name in ipairs(matrix.names("all")) do assert.is_nil(name:match("^hard"), name) end
    assert.equal("predict", matrix.case("hard-symseq-prc").method)
    assert.equal("birthday", matrix.case("hard-prc-sym").method)
    local relay = matrix.case("hard-sym-sym")
    assert.equal("relay", relay.method)
    assert.equal("relay", relay.path)
    -- its own rendezvous (st) and coturn's host (s2); the sequential NAT on both sides
    local desc = matrix.describe(hard)
    local hosts, nats = {}, {}
    for _, h in ipairs(desc.hosts) do hosts[h.name] = h end
    for _, n in ipairs(desc.nats) do nats[n.name] = n.type end
    assert.truthy(hosts.st and hosts.s2 and hosts.s1)
    assert.equal("symseq", nats.naseq)
    assert.equal("symseq", nats.nbseq)
    -- the cases of their own kind build their own labs: nothing of theirs here
    for _, name in ipairs({ "hard-failover", "hard-upgrade", "hard-fallback", "hard-dual-homed", "hard-dual-nat",
      "hard-ipv6-only", "hard-dual-stack", "hard-relay-ipv6" }) do
      local c = matrix.case(name)
      assert.is_string(c.unit, name)
      assert.is_table(require("natpunch.lab.matrix.kinds." .. c.unit).describe({}).hosts, name)
      assert.is_nil(hosts[c.connector], name)
    end
    assert.same({ "s1" }, (function()
      local only = {}
      for _, h in ipairs(matrix.describe({ "hard-failover", "hard-ipv6-only" }).hosts) do only[#only + 1] = h.name end
      return only
    end)())
  end)

  it("builds one NAT per side and type, impairing only links into the internet", function()
    local desc = matrix.describe(matrix.names("all"), { link = { delay = "100ms" } })
    local nats, hosts = {}, {}
    for _, n in ipairs(desc.nats) do nats[n.name] = n end
    for _, h in ipairs(desc.hosts) do hosts[h.name] = h end
    for _, side in ipairs({ "a", "b" }) do
      assert.equal("full", nats["n" .. side .. "full"].type)
      assert.equal("restricted", nats["n" .. side .. "rest"].type)
      assert.equal("prc", nats["n" .. side .. "prc"].type)
      assert.equal("sym", nats["n" .. side .. "sym"].type)
    end
    assert.is_true(nats.nhair.hairpin)
    assert.is_falsy(nats.nsame.hairpin)
    assert.equal("ndout", nats.ndin.behind)
    assert.is_nil(nats.ndin.link)             -- inside ndout's LAN
    assert.equal("100ms", nats.nasym.link.delay)
    assert.equal("100ms", hosts.p.link.delay)
    assert.is_nil(hosts.s1.link)              -- the server's link is clean
    assert.same({ { proto = "udp", port = 3478, to = "rv" }, { proto = "tcp", port = 3478, to = "rv" } },
      nats.nrv.forward)
    -- and the lab accepts it
    local t = lab.topology(desc)
    assert.equal("203.0.113.2", t:addr("s1"))
    assert.equal(t:node("nrv").forward[1].addr, t:addr("rv"))
  end)

  it("natpunch lab matrix: --list, and usage errors exit 2", function()
    local out, code = proc.run({ "sh", "-c", helper.cli() .. " lab matrix --list --only lean --json" })
    assert.equal(0, code, out)
    local lines = helper.json_lines(out)
    assert.equal(10, #lines)
    assert.equal("full-full", lines[1].case)
    assert.equal("connect", lines[10].expect)
    for _, bad in ipairs({ "--only nonsense", "--repeat 0", "--delay", "extra", "--timeout 0" }) do
      out, code = proc.run({ "sh", "-c", helper.cli() .. " lab matrix " .. bad })
      assert.equal(2, code, bad .. ": " .. out)
    end
  end)

  it("examples/lab_demo.lua explains itself and exits 77 when the lab cannot run", function()
    local argv = { "env", "NATPUNCH_BUILD=" .. helper.build, helper.lua, "examples/lab_demo.lua" }
    if helper.is_root() then
      -- root checks this path as an unprivileged user
      local _, has = proc.run({ "sh", "-c", "command -v setpriv" })
      if has ~= 0 then return pending("needs setpriv (util-linux)") end
      table.move(argv, 1, #argv, 5)
      argv[1], argv[2], argv[3], argv[4] = "setpriv", "--reuid=65534", "--regid=65534",
        "--clear-groups"
    end
    local out, code = proc.run(argv)
    assert.equal(77, code, out)
    assert.matches("needs root", out, 1, true)
    assert.matches("examples/demo.lua", out, 1, true)
  end)
end)

matrix_describe("UDP hole punching through every NAT pair (lab, no impairment) #lab",
  { cases = matrix.names("all"), timeout = 5 }, { setup_ms = 1000 })

-- 100 ms one way on each NAT's link into the internet: 200 ms RTT to the
-- server, 400 ms between the peers; 5% of the frames lost on each link,
-- each way.
matrix_describe("UDP hole punching with 100 ms delay and 5% loss (lean matrix) #lab #impaired",
  { cases = matrix.names("lean"), link = { delay = "100ms", loss = "5%" }, timeout = 15 },
  { setup_ms = 5000 })

describe("natpunch lab matrix and the lab demo (root) #lab", function()
  local why = skip_reason()
  if why then
    it("(skipped)", function() pending(why) end)
    return
  end

  it("natpunch lab matrix prints one JSON line per case and removes its lab", function()
    local prefix = ("npt%03x"):format(math.random(0, 0xfff))
    finally(function() lab.down_all(prefix) end)
    local out, code = proc.run({ "sh", "-c", helper.cli()
      .. " lab matrix --only prc-prc,same-nat --json --prefix " .. prefix })
    assert.equal(0, code, out)
    local lines = helper.json_lines(out)
    assert.equal("lab", lines[1].event)
    assert.equal(prefix, lines[1].prefix)
    assert.equal("case", lines[2].event)
    assert.equal("prc/prc", lines[2].pair)
    assert.is_true(lines[2].connected)
    assert.equal("public", lines[2].path)
    assert.is_number(lines[2].setup_ms)
    assert.equal("private", lines[3].path)
    assert.equal("done", lines[4].event)
    assert.equal(2, lines[4].passed)
    assert_gone(prefix)
  end)

  it("examples/lab_demo.lua: restricted cone meets port-restricted cone", function()
    -- helper.cli() carries NATPUNCH_BUILD (and LD_PRELOAD under make sanitize)
    local lua = helper.cli():gsub(" bin/natpunch$", "")
    local out, code = proc.run({ "sh", "-c", lua .. " examples/lab_demo.lua 2>&1" })
    assert.equal(0, code, out)
    assert.matches("restricted cone", out, 1, true)
    assert.matches("port-restricted cone", out, 1, true)
    assert.matches("public path", out, 1, true)
    assert.matches("touch #3 acknowledged, RTT %d+ ms", out)
    assert.matches("lab np%x+ removed", out)
    local prefix = out:match("lab (np%x+) is up")
    assert.truthy(prefix, out)
    assert_gone(prefix)
  end)
end)
