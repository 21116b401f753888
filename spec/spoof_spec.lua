-- Spoofing in the NAT lab (root only; tag #lab): an attacker host whose
-- datagrams carry forged source addresses (raw sockets: build/natpunch-spoof,
-- run inside the attacker's namespace, writes the IPv4 and UDP headers
-- itself) against a rendezvous and a peer on the lab's internet.  Shows,
-- with packet counters in the victims' namespaces (and the attacker's: the
-- forged packets really leave it with the victims' sources) and the
-- processes' own JSON events:
--   - spoofed registrations create no state, and what reaches the spoofed
--     victim is no more than the attacker sent (only cookies);
--   - nobody takes over a registered id: not from the owner's address
--     (forged), not with another key from its own address; a forged
--     unregister does nothing; the owner is still reachable afterwards;
--   - forged "server" introductions make a peer send nothing, and even an
--     authenticated introduction from a compromised server that passes
--     forbidden candidates makes the peer probe none of them;
--   - frames an on-path attacker copies from one peer to another (punch,
--     touch, data), replayed "from" a bystander during the punch session,
--     draw nothing toward the bystander.
local lab = require "natpunch.lab"
local proc = require "natpunch.lab.proc"
local json = require "natpunch.json"
local helper = require "spec.helper"
local labhelper = require "spec.labhelper"

local SERVER, PEER, VICTIM, ATTACKER, OTHER = "203.0.113.2", "203.0.113.50", "203.0.113.77",
  "203.0.113.66", "203.0.113.51"

local function skip_reason()
  local why = labhelper.skip_reason()
  if why then return why end
  local f = io.open("build/natpunch-spoof", "r")
  if not f then return "needs build/natpunch-spoof (make)" end
  f:close()
  return nil
end

local function root_dir()
  local p = io.popen("pwd")
  local d = p:read("l")
  p:close()
  return d
end

local function nft(t, host, rules)
  local _, code = t:exec(host, { "sh", "-c", "printf '%s' \"$1\" | nft -f -", "sh", rules })
  assert.equal(0, code, "nft in " .. host)
end

local function counters(t, host, tbl)
  local out, code = t:exec(host, { "nft", "-j", "list", "counters", "table", "ip", tbl })
  assert.equal(0, code)
  local c = {}
  for _, item in ipairs((json.decode(out) or {}).nftables or {}) do
    if type(item) == "table" and item.counter then
      c[item.counter.name] = { packets = item.counter.packets, bytes = item.counter.bytes }
    end
  end
  return c
end

local function events(h)
  local list = {}
  for line in h:output():gmatch("[^\n]+") do
    local ev = json.decode(line)
    if type(ev) == "table" then list[#list + 1] = ev end
  end
  return list
end

describe("spoofing in the lab #lab", function()
  local why = skip_reason()
  if why then
    it("spoofed registrations, id takeover, forged introductions", function() pending(why) end)
    return
  end
  local t, root
  setup(function()
    root = root_dir()
    t = lab.topology{ nats = {}, hosts = {
      { name = "s1", public = SERVER }, { name = "p", public = PEER }, { name = "v", public = VICTIM },
      { name = "m", public = ATTACKER }, { name = "q", public = OTHER } } }
    t:up()
    -- what leaves the attacker with another host's source address: no NAT
    -- rule anywhere, the raw socket writes these sources itself
    nft(t, "m", "table ip count {\n  counter forged {}\n"
      .. "  chain out {\n    type filter hook postrouting priority 0; policy accept;\n"
      .. "    ip saddr != " .. ATTACKER .. " meta l4proto udp counter name forged\n  }\n}\n")
    -- what reaches the bystander, and where the peer sends
    nft(t, "v", "table ip count {\n  counter from_server {}\n  counter any {}\n"
      .. "  chain in {\n    type filter hook input priority 0; policy accept;\n"
      .. "    ip saddr " .. SERVER .. " counter name from_server\n    meta l4proto udp counter name any\n  }\n}\n")
    nft(t, "p", "table ip count {\n  counter forbidden {}\n  counter to_victim {}\n  counter to_attacker {}\n"
      .. "  counter from_server {}\n"
      .. "  chain in {\n    type filter hook input priority 0; policy accept;\n"
      .. "    ip saddr " .. SERVER .. " udp sport 3478 udp dport 4000 counter name from_server\n  }\n"
      .. "  chain out {\n    type filter hook output priority 0; policy accept;\n"
      .. "    ip daddr { 0.0.0.0/8, 127.0.0.0/8, 169.254.0.0/16, 224.0.0.0/4, 240.0.0.0/4 } "
      .. "counter name forbidden\n"
      .. "    ip daddr " .. VICTIM .. " counter name to_victim\n"
      .. "    ip daddr " .. ATTACKER .. " counter name to_attacker\n  }\n}\n")
  end)
  teardown(function()
    if t then t:down() end
  end)

  local function natpunch_argv(...) return labhelper.natpunch({ ... }) end

  local function attacker(...)
    local argv = { helper.lua, root .. "/spec/spoof/attacker.lua", root, ... }
    local out, code = t:exec("m", proc.preload(argv))
    assert.equal(0, code, out)
    local last
    for line in out:gmatch("[^\n]+") do last = json.decode(line) or last end
    assert.is_table(last, out)
    return last
  end

  it("spoofed registrations, id takeover, forged introductions", function()
    local rv = t:spawn("s1", natpunch_argv("rendezvous", "--listen", SERVER .. ":3478", "--json"))
    assert.truthy(rv:expect('"event":"listening"', 10), rv:output())
    local alice = t:spawn("p", natpunch_argv("peer", "--server", SERVER .. ":3478", "--id", "alice",
      "--bind", PEER .. ":4000", "--json"))
    assert.truthy(alice:expect('"event":"registered"', 10), alice:output())

    -- 1. reflection: registrations and connects forged from the bystander
    local r = attacker("spoof-register", VICTIM .. ":40001", SERVER .. ":3478", "50")
    local cv = counters(t, "v", "count")
    local cm = counters(t, "m", "count")
    print(("\nspoofed registrations (raw socket): attacker sent %d datagrams, %d bytes (%d with headers; "
      .. "%d forged packets left its namespace); the bystander got %d bytes in %d datagrams")
      :format(r.sent_datagrams, r.sent_bytes, r.sent_ip_bytes, cm.forged.packets, cv.from_server.bytes,
        cv.from_server.packets))
    assert.equal(200, r.sent_datagrams)
    assert.equal(200, cm.forged.packets)
    assert.is_true(cv.from_server.packets > 0, "the server answered nothing: the forgeries did not arrive")
    assert.is_true(cv.from_server.bytes <= r.sent_ip_bytes)
    for _, ev in ipairs(events(rv)) do
      assert.is_nil((ev.peer or ""):match("^spoof"), "a spoofed registration was accepted")
      assert.are_not.equal("introduced", ev.event)
    end

    -- 2. takeover of alice
    r = attacker("takeover", ATTACKER, PEER .. ":4000", "40004", SERVER .. ":3478", "alice")
    assert.equal(2, r.forged)
    assert.equal("cookie", r.cookie)
    assert.equal("error", r.answer)
    assert.equal("id taken", r.reason)
    local regs = 0
    for _, ev in ipairs(events(rv)) do
      if ev.event == "registered" and ev.peer == "alice" then regs = regs + 1 end
      assert.is_false(ev.event == "expired" and ev.peer == "alice", "a forged unregister removed alice")
    end
    assert.equal(1, regs)
    -- alice is still alice: another peer reaches her, through her key
    local out, code = t:exec("q", natpunch_argv("peer", "--server", SERVER .. ":3478", "--id", "carol",
      "--connect", "alice", "--touch", "still me", "--json", "--timeout", "10"))
    assert.equal(0, code, out)
    assert.truthy(out:find('"event":"touch_acked"', 1, true), out)

    -- 3. forged introductions "from the server" with forbidden candidates
    local forbidden = "127.0.0.1:9,224.0.0.1:9,255.255.255.255:9,0.0.0.0:9,169.254.1.1:9,240.0.0.1:9,"
      .. VICTIM .. ":9"
    local before = counters(t, "p", "count")
    r = attacker("forge-introduce", SERVER .. ":3478", PEER .. ":4000", forbidden)
    assert.equal(40, r.sent)
    local after = counters(t, "p", "count")
    -- they did reach alice, "from" her server's address and port
    assert.is_true(after.from_server.packets - before.from_server.packets >= 40)
    assert.equal(242, counters(t, "m", "count").forged.packets)
    assert.equal(before.to_victim.packets, after.to_victim.packets)
    assert.equal(0, after.forbidden.packets)

    -- 4. a compromised server that passes forbidden candidates on, in an
    -- authenticated introduction: the peer still probes none of them, but
    -- does punch toward the attacker's public address (so this can fail)
    local lenient = t:spawn("s1", proc.preload({ helper.lua, root .. "/spec/spoof/attacker.lua", root,
      "lenient-server", SERVER .. ":3479" }))
    assert.truthy(lenient:expect('"event":"listening"', 10), lenient:output())
    local bob = t:spawn("p", natpunch_argv("peer", "--server", SERVER .. ":3479", "--id", "bob",
      "--bind", PEER .. ":4001", "--json", "--no-echo"))
    assert.truthy(bob:expect('"event":"registered"', 10), bob:output())
    local only_forbidden = forbidden:gsub("," .. VICTIM:gsub("%.", "%%.") .. ":9$", "")
    r = attacker("evil-peer", SERVER .. ":3479", "evil", "bob", only_forbidden)
    assert.is_true(r.registered)
    after = counters(t, "p", "count")
    print(("compromised server: bob sent %d datagrams to the attacker's address, %d to forbidden ones, "
      .. "%d to the bystander"):format(after.to_attacker.packets, after.forbidden.packets,
      after.to_victim.packets - before.to_victim.packets))
    assert.is_true(after.to_attacker.packets > 0, "bob did not punch at all")
    assert.equal(0, after.forbidden.packets)
    assert.equal(before.to_victim.packets, after.to_victim.packets)

    -- 5. an on-path attacker: what dave sends alice is copied to the
    -- attacker (nftables dup in dave's namespace, DNAT to the attacker's
    -- socket in its own), which replays every frame "from" the bystander
    -- while alice's punch session still runs: alice answers none of them
    nft(t, "q", "table ip tap {\n  chain out {\n    type filter hook output priority 0; policy accept;\n"
      .. "    ip daddr " .. PEER .. " udp dport 4000 dup to " .. ATTACKER .. "\n  }\n}\n")
    nft(t, "m", "table ip tap {\n  chain pre {\n    type nat hook prerouting priority dstnat; policy accept;\n"
      .. "    ip daddr " .. PEER .. " udp dport 4000 dnat to " .. ATTACKER .. ":5555\n  }\n}\n")
    local tap = t:spawn("m", proc.preload({ helper.lua, root .. "/spec/spoof/attacker.lua", root,
      "capture-replay", ATTACKER .. ":5555", VICTIM .. ":40001", PEER .. ":4000" }))
    assert.truthy(tap:expect('"event":"capturing"', 10), tap:output())
    before = counters(t, "p", "count")
    local forged0 = counters(t, "m", "count").forged.packets
    out, code = t:exec("q", natpunch_argv("peer", "--server", SERVER .. ":3478", "--id", "dave",
      "--connect", "alice", "--touch", "again", "--json", "--timeout", "10"))
    assert.equal(0, code, out)
    assert.truthy(tap:expect('"mode":"capture%-replay"', 10), tap:output())
    r = json.decode(tap:output():match('({"mode":"capture%-replay".-})\n'))
    proc.sleep(0.5)
    after = counters(t, "p", "count")
    local forged = counters(t, "m", "count").forged.packets - forged0
    print(("on-path replay: %d frames of dave's captured (%s), %d replayed from the bystander; "
      .. "alice sent %d datagrams to the bystander"):format(r.captured, json.encode(r.kinds), forged,
      after.to_victim.packets - before.to_victim.packets))
    assert.is_true((r.kinds.punch_request or 0) >= 1, "no punch request captured")
    assert.equal(r.captured, r.sent)
    assert.equal(r.captured, forged)
    assert.equal(before.to_victim.packets, after.to_victim.packets)
    tap:stop()
    bob:stop(); lenient:stop(); alice:stop(); rv:stop()
  end)
end)
