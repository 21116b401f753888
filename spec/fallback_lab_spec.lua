-- The relay fallback (natpunch.fallback) in the NAT lab: two peers behind
-- port-restricted cone NATs connect directly (udp, path "public"), with a
-- real coturn on the lab's internet and a rendezvous handing out its
-- credentials, so both also hold a TURN allocation.  While alice streams
-- numbered touches to bob, the lab cuts the direct path (an nftables table
-- of bob's NAT drops everything to and from alice's NAT; the rendezvous
-- and coturn stay reachable).  alice finds the path dead (touches in
-- flight, nothing back for `fallback` seconds), moves the session to the
-- relay and tells bob over it; both report path_changed from "public" to
-- "relay", and every touch of the stream is acked once at alice and
-- delivered once at bob; also for a relayed session upgraded to the direct
-- path before the cut (sym x sym, bob's NAT opened).  The hard matrix's fallback case
-- (natpunch.lab.matrix.kinds.fallback: fallback.once runs it,
-- fallback.problems lists what it lacks), here on clean links and with
-- 20 ms per NAT link.  Lab namespaces: prefix "fbl" and four random hex
-- digits (runs beside one another do not meet; "fb" alone would match the
-- host's ifb links in assert_gone).  Tags: #lab (needs root).
local lab = require "natpunch.lab"
local fallback = require "natpunch.lab.matrix.kinds.fallback"
local runner = require "natpunch.lab.matrix.runner"
local labhelper = require "spec.labhelper"

labhelper.describe("#lab relay fallback of a direct session", function()

  local function run(link, a, b, opts)
    local prefix = ("fbl%04x"):format(math.random(0, 0xffff))
    local t <close> = lab.topology(fallback.describe({ prefix = prefix, link = link, a = a, b = b }))
    t:up()
    local u = { t = t, cmd = runner.command(), seq = 1 }
    local ok, err = pcall(function()
      fallback.up(u)
      local r = fallback.once(u, opts)
      local why = (r.logs.connector or "") .. "\n--- bob\n" .. (r.logs.acceptor or "")
      assert.same({}, fallback.problems(r, t), why)
      if opts then assert.is_true(r.upgraded) end
      io.stderr:write(("\n  %s/%s fallback (link delay %s): %s\n")
        :format(a or "prc", b or "prc", link and link.delay or "none", fallback.figures(r)))
    end)
    fallback.down(u)
    t:down()
    labhelper.assert_gone(prefix)
    if not ok then error(err, 0) end
  end

  it("a direct session falls back to the relay when its path is cut", function() run() end)

  it("a direct session falls back to the relay when its path is cut (20 ms per NAT link)",
    function() run({ delay = "20ms" }) end)

  -- relayed (sym x sym), bob's NAT opened into a full cone, the session
  -- upgraded to the direct path (natpunch.upgrade), then cut: the upgraded
  -- session falls back to the relay it came from
  it("a relayed session upgraded to direct falls back to the relay when that path is cut", function()
    run(nil, "sym", "sym", { open = { nat = "nb", type = "full", back = "sym" }, n = 600, connect_timeout = 2 })
  end)
end, { tools = { "turnserver", "turnutils_stunclient" }, hint = "coturn: make deps" })
