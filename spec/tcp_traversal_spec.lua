-- TCP hole punching proven in the NAT lab (issue 10): two peers behind NATs
-- meet through the rendezvous's STUNT service and open a direct TCP
-- connection by simultaneous open, for every NAT pair (both directions),
-- behind one NAT (path private), double NAT, a public host, a rendezvous
-- behind a NAT; over 25 ms and 100 ms links; through routers that answer an
-- unsolicited SYN with an RST or an ICMP error; `auto` falling back to UDP
-- when a firewall blocks TCP between the peers (and the STUNT records say
-- so); 4 MiB through `natpunch peer --stdio` byte-exact while the
-- server's own nftables counters show it carried none of it; and the echo
-- example across two NATs.  The lab's TCP behaviours are checked first.
--
-- Everything runs through the command line inside the lab's namespaces.
-- Needs root (pending otherwise).  Tags: #lab, #impaired (delays).
local lab = require "natpunch.lab"
local matrix = require "natpunch.lab.matrix"
local proc = require "natpunch.lab.proc"
local helper = require "spec.helper"
local labhelper = require "spec.labhelper"

local skip_reason = labhelper.skip_reason
local dump = labhelper.dump

-- The TCP matrix: one it() per case.  Outcomes as for UDP (matrix.expect):
-- cone pairs connect, a symmetric side connects against full and
-- restricted cones (its SYN from an unpredicted port is let in) and else
-- ends in a clear failure within the timeout.
local function tcp_matrix(title, opts, limits)
  describe(title, function()
    local why = skip_reason()
    if why then
      for _, name in ipairs(opts.cases) do it(matrix.case(name).title, function() pending(why) end) end
      return
    end
    local runner, results = nil, {}
    setup(function()
      opts.transport = opts.transport or "tcp"
      runner = matrix.runner(opts)
      runner:up()
    end)
    teardown(function()
      if not runner then return end
      runner:down()
      local lines = { ("\n%s: setup_ms per case (connecting side)"):format(title) }
      for _, r in ipairs(results) do
        lines[#lines + 1] = ("  %-22s %-9s %-8s setup %5s ms  rtt server %s / peer %s ms%s")
          :format(r.pair, r.connected and "connected" or "failed", r.path or "-", tostring(r.setup_ms or "-"),
            tostring(r.rtt_server_ms or "-"), tostring(r.rtt_peer_ms or "-"),
            r.ratio and ("  ratio %.2f"):format(r.ratio) or "")
      end
      io.stderr:write(table.concat(lines, "\n"), "\n")
    end)
    for _, name in ipairs(opts.cases) do
      local c = matrix.case(name)
      local what = c.expect == "connect" and ("connects over TCP on the %s path"):format(c.path)
        or "connects (prediction) or both sides fail with a reason in time"
      it(c.title .. ": " .. what, function()
        local res = runner:run_case(name)
        results[#results + 1] = res
        local info = dump(res)
        assert.is_true(res.introduced, info)
        assert.is_true(res.server_tcp_control > 0, info)   -- it went through the STUNT service
        assert.equal(0, res.server_other, info)            -- and nothing else reached the server
        if c.expect == "connect" or res.connected then
          assert.is_true(res.connected, info)
          assert.equal("tcp", res.transport, info)
          assert.equal(c.path, res.path, info)
          assert.is_true(res.setup_ms < limits.setup_ms, info)
        else
          assert.equal(1, res.exit, info)
          assert.matches("no TCP connection to", res.reason, 1, true)
          assert.is_true(res.elapsed_ms <= (runner.timeout + 2) * 1000, info)
          assert.matches("no TCP connection", res.peer_reason or "", 1, true)
        end
        assert.same({}, res.problems, info)
      end)
    end
  end)
end

tcp_matrix("TCP hole punching through every NAT pair (lab, no impairment) #lab",
  { cases = matrix.names("all"), timeout = 5 }, { setup_ms = 1500 })

tcp_matrix("TCP hole punching over 25 ms links, routers answering unsolicited SYNs with RST #lab #impaired",
  { cases = matrix.names("cone"), link = { delay = "25ms" }, nat = { tcp_unsolicited = "rst" }, timeout = 8 },
  { setup_ms = 2000 })

tcp_matrix("TCP hole punching over 25 ms links, routers answering with ICMP port unreachable #lab #impaired",
  { cases = { "prc-prc", "full-prc", "restricted-restricted" }, link = { delay = "25ms" },
    nat = { tcp_unsolicited = "icmp" }, timeout = 8 }, { setup_ms = 2000 })

tcp_matrix("TCP hole punching over 100 ms links #lab #impaired",
  { cases = matrix.names("cone"), link = { delay = "100ms" }, timeout = 10 }, { setup_ms = 4000 })

describe("the lab's NAT behaviours for TCP #lab", function()
  local why = skip_reason()
  if why then
    it("(skipped)", function() pending(why) end)
    return
  end
  local t
  setup(function()
    t = lab.topology{ nats = {
      { name = "nd", type = "prc" },
      { name = "nr", type = "prc_rst" },                         -- registry entries (nat_types)
      { name = "ni", type = "prc", tcp_unsolicited = "icmp" },   -- a NAT's own option
      { name = "nt", type = "prc", tcp_timeout = 2 },
    }, hosts = { { name = "s1", public = "203.0.113.2" }, { name = "ht", behind = "nt" } } }
    t:up()
  end)
  teardown(function() if t then t:down() end end)

  -- connect from s1 to a NAT's public address (nothing is mapped there):
  -- the error and how long it took
  local function knock(nat)
    local script = ([[
package.cpath = %q .. "/?.so;" .. package.cpath
local core = require "natpunch.core"
local c = core.tcp()
local t0 = core.now()
local res
c:connect(%q, 4444, function(err) res = err or "connected" end)
local tm = core.timer()
tm:start(1500, 0, function() res = res or "no answer" end)
while not res do core.run("once") end
print((res:gsub(" ", "_")), core.now() - t0)
]]):format(helper.build, t:addr(nat))
    local out = proc.run(proc.preload({ "ip", "netns", "exec", t:ns("s1"), "lua5.4", "-e", script }))
    local res, ms = out:match("^(%S+)%s+(%d+)")
    return res, tonumber(ms), out
  end

  it("drops an unsolicited SYN silently (RFC 5382 REQ-4)", function()
    local res, _, out = knock("nd")
    assert.equal("no_answer", res, out)
  end)

  it("answers it with an RST, or with ICMP port unreachable, when told to", function()
    local res, ms, out = knock("nr")
    assert.matches("^ECONNREFUSED", res)
    assert.is_true(ms < 1000, out)
    local rules = proc.run({ "ip", "netns", "exec", t:ns("nr"), "nft", "list", "chain", "ip", "natpunch", "input" })
    assert.matches("reject with tcp reset", rules, 1, true)
    res, ms, out = knock("ni")
    assert.matches("^ECONNREFUSED", res)
    assert.is_true(ms < 1000, out)
    rules = proc.run({ "ip", "netns", "exec", t:ns("ni"), "nft", "list", "chain", "ip", "natpunch", "input" })
    -- (nft prints ICMP port unreachable, the default of reject, as "reject")
    assert.matches("syn,ack reject\n", rules, 1, true)
  end)

  it("forgets an idle TCP mapping after its tcp_timeout", function()
    local v = proc.run({ "ip", "netns", "exec", t:ns("nt"), "cat",
      "/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_established" })
    assert.equal("2", v:match("%d+"))
    -- an established connection through the NAT, then idle
    local listener = t:spawn("s1", proc.preload({ "lua5.4", "-e", ([[
package.cpath = %q .. "/?.so;" .. package.cpath
local core = require "natpunch.core"
local l = core.tcp(); assert(l:bind("0.0.0.0", 5555)); local kept = {}
l:listen(function() kept[#kept + 1] = l:accept(); print("accepted"); io.stdout:flush() end)
core.run()]]):format(helper.build) }))
    finally(function() listener:stop() end)
    proc.sleep(0.3)
    local client = t:spawn("ht", proc.preload({ "lua5.4", "-e", ([[
package.cpath = %q .. "/?.so;" .. package.cpath
local core = require "natpunch.core"
local c = core.tcp(); c:connect("203.0.113.2", 5555, function(e) print("connect", e) io.stdout:flush() end)
local tm = core.timer(); tm:start(8000, 0, function() c:close() end)
core.run()]]):format(helper.build) }))
    finally(function() client:stop() end)
    assert.truthy(listener:expect("accepted", 5), listener:output())
    local function entries()
      local out = proc.run({ "ip", "netns", "exec", t:ns("nt"), "conntrack", "-L", "-p", "tcp", "--dport", "5555" })
      local n = 0
      for _ in out:gmatch("ESTABLISHED") do n = n + 1 end
      return n
    end
    assert.equal(1, entries())
    local gone = false
    for _ = 1, 50 do
      proc.sleep(0.1)
      if entries() == 0 then gone = true break end
    end
    assert.is_true(gone, "the mapping outlived its 2 s timeout")
  end)
end)

describe("TCP across two NATs through the command line #lab", function()
  local why = skip_reason()
  if why then
    it("(skipped)", function() pending(why) end)
    return
  end
  local runner, dir
  setup(function()
    runner = matrix.runner{ cases = { "prc-prc" }, transport = "tcp" }
    runner:up()
    dir = helper.tmpdir("tcptrav")
  end)
  teardown(function()
    if runner then runner:down() end
    if dir then os.execute(helper.sh("rm -rf " .. helper.q(dir))) end
  end)

  local seq = 0
  local function ids()
    seq = seq + 1
    return "a" .. seq, "b" .. seq
  end
  local function server() return runner.servers.s1.addr end
  local natpunch_argv = labhelper.natpunch
  local function shell_in(host, cmd)
    return runner:topology():spawn(host, { "sh", "-c", cmd })
  end
  local function cmdline(args)
    local words = {}
    for i, w in ipairs(natpunch_argv(args)) do words[i] = proc.quote(w) end
    return table.concat(words, " ")
  end
  local function records(id)
    local out = runner:topology():exec("s1", natpunch_argv({ "records", "--server", server(), "--id", id, "--json" }))
    return helper.json_lines(out)[1] or {}, out
  end

  it("4 MiB cross through --stdio byte-exact; the server carries none of it", function()
    local a, b = ids()
    local input, output, back = dir .. "/in.bin", dir .. "/out.bin", dir .. "/back.bin"
    assert(os.execute(helper.sh("head -c 4194304 /dev/urandom > " .. helper.q(input))))
    local before = runner:_counters("s1")
    local waiting = shell_in("bprc", cmdline({ "peer", "--server", server(), "--id", b, "--transport", "tcp",
      "--stdio", "--json", "--timeout", "30" }) .. " < /dev/null > " .. proc.quote(output))
    assert.truthy(waiting:expect('"event":"registered"', 10), waiting:output())
    local sending = shell_in("aprc", cmdline({ "peer", "--server", server(), "--id", a, "--transport", "tcp",
      "--stdio", "--connect", b, "--json", "--timeout", "30" }) .. " < " .. proc.quote(input)
      .. " > " .. proc.quote(back) .. "; echo exit=$?")
    assert.truthy(sending:expect("exit=", 40), sending:output())
    assert.truthy(waiting:expect('"event":"closed"', 10), waiting:output())
    assert.matches("exit=0", sending:output(), 1, true)
    assert.matches('"transport":"tcp"', sending:output(), 1, true)
    local same = os.execute(helper.sh("cmp -s " .. helper.q(input) .. " " .. helper.q(output)))
    assert.is_true(same == true or same == 0, "the file arrived changed")
    assert.equal("", helper.read_file(back))   -- the waiting side sent nothing back
    local after = runner:_counters("s1")
    local function d(k) return (after[k] or 0) - (before[k] or 0) end
    -- only control traffic at the server: a few KB, not 4 MiB
    assert.equal(0, d("tcp_other_in") + d("tcp_other_out") + d("other_in") + d("other_out"))
    local bytes = d("tcp_control_in_bytes") + d("tcp_control_out_bytes")
    assert.is_true(bytes > 0 and bytes < 64 * 1024, "server TCP bytes: " .. bytes)
    -- and both sides' success is on record
    assert.equal("ok", records(a).last)
    assert.equal("ok", records(b).last)
    assert.equal(1, records(b).tcp_successes)
  end)

  it("the echo example: the client's lines come back across two NATs", function()
    local a, b = ids()
    local lua = helper.cli():gsub(" bin/natpunch$", "")
    local es = shell_in("bprc", lua .. " examples/echo_server.lua " .. server() .. " " .. b)
    finally(function() es:stop() end)
    assert.truthy(es:expect("listening as", 10), es:output())
    local input = dir .. "/lines.txt"
    local f = assert(io.open(input, "w"))
    f:write("first line\nsecond line\nthird, the last\n")
    f:close()
    local ec = shell_in("aprc", lua .. " examples/echo_client.lua " .. server() .. " " .. a .. " " .. b
      .. " < " .. proc.quote(input) .. " 2>&1; echo exit=$?")
    assert.truthy(ec:expect("exit=", 20), ec:output())
    local out = ec:output()
    assert.matches("exit=0", out, 1, true)
    assert.matches("connected to " .. b .. ": public path", out, 1, true)
    assert.matches("first line\nsecond line\nthird, the last\n", out, 1, true)
    assert.truthy(es:expect(a .. " left", 5), es:output())
  end)

  it("records show failure: a firewall blocks TCP between the peers, auto falls back to UDP", function()
    -- a second lab: the waiting side's NAT lets TCP out only to the server
    local r2 = matrix.runner{ cases = { "prc-prc" }, transport = "auto",
      nat_b = { tcp_allow = { "203.0.113.2" } } }
    r2:up()
    finally(function() r2:down() end)
    local res = r2:run_case("prc-prc")
    local info = dump(res)
    assert.is_true(res.pass, info)
    assert.equal("udp", res.transport, info)
    assert.matches("^tcp: no TCP connection to", res.transport_failed or "", info)
    -- `natpunch records` in that lab: the TCP failure of both sides
    local a_id = "a1-prc-prc"
    local out = r2:topology():exec("s1", natpunch_argv({ "records", "--server", r2.servers.s1.addr, "--json" }))
    local recs = {}
    for _, r in ipairs(helper.json_lines(out)) do recs[r.id] = r end
    assert.truthy(recs[a_id], out)
    assert.equal("failed", recs[a_id].last, out)
    assert.equal(1, recs[a_id].tcp_failures, out)
    assert.equal(0, recs[a_id].tcp_successes, out)
    assert.matches("no TCP connection", recs[a_id].reason, 1, true)
    assert.equal("failed", recs["b1-prc-prc"].last, out)
    assert.equal("preserving", recs[a_id].tcp_mapping, out)
  end)
end)
