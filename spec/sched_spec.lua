-- Coroutine tasks on the loop: natpunch.run / spawn / sleep / future.
local helper = require "spec.helper"
local natpunch = require "natpunch"
local core = require "natpunch.core"

describe("tasks", function()
  it("run returns the main task's results", function()
    local a, b = natpunch.run(function() return 1, "two" end)
    assert.same({ 1, "two" }, { a, b })
  end)

  it("sleep waits on the loop while other tasks run", function()
    local order = {}
    helper.run(function()
      local t0 = core.now()
      local bg = natpunch.spawn(function()
        natpunch.sleep(0.02)
        order[#order + 1] = "bg"
        return "bg-result"
      end)
      order[#order + 1] = "main"
      natpunch.sleep(0.05)
      assert.is_true(core.now() - t0 >= 45)
      assert.equal("bg-result", bg:join())
    end)
    assert.same({ "main", "bg" }, order)
  end)

  it("futures wake every waiter and time out", function()
    helper.run(function()
      local f = natpunch.future()
      local got = {}
      for i = 1, 3 do
        natpunch.spawn(function() got[i] = f:wait(1) end)
      end
      natpunch.spawn(function() natpunch.sleep(0.01); f:set("v") end)
      natpunch.sleep(0.05)
      assert.same({ "v", "v", "v" }, got)
      local g = natpunch.future()
      local v, err, code = g:wait(0.01)
      assert.is_nil(v); assert.equal("timeout", err); assert.equal("ETIMEDOUT", code)
      assert.is_false(f:set("again"))            -- one-shot
    end)
  end)

  it("wait_in queues a waiter; one that times out leaves the queue, one that is woken was taken out", function()
    helper.run(function()
      local sched = require "natpunch.sched"
      local q = {}
      local v, err = sched.wait_in(q, 0.01)
      assert.is_nil(v); assert.equal("timeout", err)
      assert.equal(0, #q)
      local got
      natpunch.spawn(function() got = sched.wait_in(q, 1) end)
      natpunch.sleep(0)
      assert.equal(1, #q)
      table.remove(q, 1)("x")
      natpunch.sleep(0)
      assert.equal("x", got)
      assert.equal(0, #q)
    end)
  end)

  it("raises the main task's error", function()
    assert.has_error(function()
      natpunch.run(function() error("main failed") end)
    end)
  end)

  it("stops with a background task's error instead of hanging", function()
    local ok, err = pcall(natpunch.run, function()
      natpunch.spawn(function() natpunch.sleep(0.01); error("background failed") end)
      natpunch.sleep(5)
    end)
    assert.is_false(ok)
    assert.matches("background failed", err)
  end)

  it("detects a main task waiting on nothing", function()
    local ok, err = pcall(natpunch.run, function()
      natpunch.future():wait()
    end)
    assert.is_false(ok)
    assert.matches("nothing can wake it", err)
  end)

  it("bounds a run with a timeout", function()
    local ok, err = pcall(natpunch.run, function() natpunch.sleep(10) end, { timeout = 0.05 })
    assert.is_false(ok)
    assert.matches("timed out", err)
  end)

  it("refuses waits outside a task and bad arguments", function()
    assert.has_error(function() natpunch.sleep(0.1) end,
      "sleep must be called from a task (inside natpunch.run or natpunch.spawn)")
    assert.has_error(function() natpunch.spawn("nope") end)
    helper.run(function()
      assert.has_error(function() natpunch.sleep(-1) end)
      assert.has_error(function() natpunch.run(function() end) end)   -- nested
    end)
  end)

  it("cancelled tasks never resume", function()
    helper.run(function()
      local resumed = false
      local t = natpunch.spawn(function() natpunch.sleep(0.01); resumed = true end)
      t:cancel()
      natpunch.sleep(0.03)
      assert.is_false(resumed)
    end)
  end)

  describe("sleep shorter than a millisecond", function()
    local function rss_kb()
      local f = assert(io.open("/proc/self/statm"))
      local _, res = f:read("n", "n")
      f:close()
      return res * 4
    end

    it("sleep(0) yields to the loop: I/O and close callbacks run while a task spins on it", function()
      helper.run(function()
        local spins, stop = 0, false
        local spinner = natpunch.spawn(function()
          while not stop and spins < 1e6 do natpunch.sleep(0); spins = spins + 1 end
        end)
        -- I/O: a datagram sent now is received while the spinner runs
        local rx = core.udp(); assert(rx:bind("127.0.0.1", 0))
        local got = natpunch.future()
        rx:recv_start(function(err, data) if not err then got:set(data) end end, { raw = true })
        local tx = core.udp(); assert(tx:bind("127.0.0.1", 0))
        local _, port = rx:getsockname()
        assert(tx:send("127.0.0.1", port, "ping"))
        assert.equal("ping", (got:wait(5)))
        -- close callbacks
        local closed = natpunch.future()
        local t = core.timer()
        t:close(function() closed:set(true) end)
        assert.is_true(closed:wait(5))
        -- timers
        local before = spins
        natpunch.sleep(0.02)
        assert.is_true(spins > before, "the spinner kept running")
        stop = true
        spinner:join(5)
        rx:close(); tx:close()
      end, 30)
    end)

    it("200000 sleep(0) calls leave memory flat and reuse one timer per task", function()
      helper.run(function()
        natpunch.sleep(0)                                     -- warm up
        collectgarbage("collect")
        local rss0 = rss_kb()
        for _ = 1, 200000 do natpunch.sleep(0) end
        for _ = 1, 50 do natpunch.sleep(0.0004) end           -- rounded up to 1 ms
        collectgarbage("collect")
        local grown = rss_kb() - rss0
        -- ASan keeps freed memory in a quarantine of up to 256 MiB
        local cap = helper.sanitize and 320 * 1024 or 16 * 1024
        assert.is_true(grown < cap, "RSS grew by " .. grown .. " KiB")
        local me = require("natpunch.sched").current()
        local t1 = me.timer
        natpunch.sleep(0.001)
        natpunch.sleep(0.002)
        assert.is_truthy(t1)
        assert.is_true(rawequal(t1, me.timer), "the task's timer is reused")
      end, 60)
    end)

    it("a sub-millisecond sleep still waits at least that long, in whole milliseconds", function()
      helper.run(function()
        local t0 = core.now()
        for _ = 1, 5 do natpunch.sleep(0.0001) end
        assert.is_true(core.now() - t0 >= 5)
      end)
    end)

    it("wait with a zero timeout times out on the next iteration", function()
      helper.run(function()
        local f = natpunch.future()
        local v, err = f:wait(0)
        assert.is_nil(v)
        assert.equal("timeout", err)
        natpunch.spawn(function() f:set("late") end)
        assert.equal("late", (f:wait(0)))
      end)
    end)
  end)
end)
