-- Touch congestion control through the NAT lab's natpunch-wire (root):
-- a bulk of touches into a 2 Mbit/s link with a queue of 30 frames does not
-- flood it (the same link drops a large share of a raw UDP blast), every
-- message is delivered exactly once, and the congestion window stays well
-- below the 256 messages the sender may have unacknowledged.  Under 5% loss
-- each way every message is delivered exactly once too.  Outcomes only: the
-- goodput figures are make bench's (bench/touch_wire.lua).
local labhelper = require "spec.labhelper"

local W = dofile("bench/touch_wire.lua")

labhelper.describe("#lab touch over natpunch-wire", function()
  local L = labhelper.lab(W.desc())
  local t
  setup(function()
    t = L.t
    W.pin(t)
  end)

  it("does not flood a 2 Mbit/s link with a 30-frame queue, delivers each once, and its window adapts", function()
    local host = W.LINKS.slow.host
    -- the contrast: a raw blast of the same datagrams, with no congestion
    -- control, overruns the queue
    local raw, rw = W.raw_oneway(t, host, 300, 1200, 20e6)
    assert.is_true(rw.down.qdrop / rw.down.rx > 0.3,
      ("a raw blast should overrun the queue: %d of %d dropped"):format(rw.down.qdrop, rw.down.rx))
    assert.is_true(raw.received < 300)

    local s, r, tw = W.touch_bulk(t, host, 300, 1200, 256)
    assert.equal(300, s.acked, "acknowledged")
    assert.equal(0, s.failed)
    assert.equal(300, r.lua_deliveries, "deliveries")
    assert.equal(300, r.distinct, "distinct messages delivered")
    -- bounded drops at the bottleneck: below 10% of what was offered to it
    assert.is_true(tw.down.qdrop <= 0.1 * tw.down.rx,
      ("wire dropped %d of %d frames"):format(tw.down.qdrop, tw.down.rx))
    -- the window adapts: losses were seen and answered, and the window never
    -- reached what the sender was allowed
    assert.is_true(s.cwnd_samples > 0)
    assert.is_true(s.congestion_events >= 1, "congestion events: " .. tostring(s.congestion_events))
    assert.is_true(s.cwnd_max < 256, "cwnd max " .. tostring(s.cwnd_max))
  end)

  it("delivers every touch exactly once under 5% loss each way", function()
    local s, r, tw = W.touch_bulk(t, W.LINKS.lossy.host, 500, 1200, 256)
    assert.equal(500, s.acked)
    assert.equal(0, s.failed)
    assert.equal(500, r.lua_deliveries)
    assert.equal(500, r.distinct)
    assert.is_true(tw.down.lost > 0 and tw.up.lost > 0, "the wire lost frames both ways")
    assert.is_true(s.retransmitted > 0)
  end)
end)
