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
end)
