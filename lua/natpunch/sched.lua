--- Coroutine tasks on the natpunch loop, so scripts read top to bottom.
--
--   natpunch.run(function()
--     local peer = natpunch.peer{ server = "203.0.113.1:3478", id = "alice" }
--     natpunch.sleep(0.5)
--   end)
--
-- Every task is a coroutine resumed only from the loop thread.  A task that
-- waits registers a resume function with the handle it waits on and yields;
-- the loop callback resumes it.  Errors in a background task are reported,
-- and stop `run` with that error (so tests fail loudly instead of hanging).
local core = require "natpunch.core"

local sched = {}

local Task = {}
Task.__index = Task

-- Scheduler state lives in this table, one per Lua state (there is one loop
-- per Lua state, held by natpunch.core).
local state = {
  by_co = setmetatable({}, { __mode = "k" }),  -- coroutine -> task
  live = {},                                   -- tasks not finished yet
  failure = nil,                               -- first background error
  running = false,
  ready = {},                                  -- wake-ups for the next loop iteration
  idle = nil,                                  -- core.idle() that runs them
}

-- Waits shorter than a millisecond (sleep(0): "let the loop run") resume
-- on the next loop iteration, from an idle handle: after the loop has
-- polled for I/O and run close callbacks.  A 0 ms timer would not do:
-- started from a timer callback it runs in the same timer phase, so a task
-- looping on sleep(0) would starve the loop (and grow without bound).
local function run_ready()
  local q = state.ready
  state.ready = {}
  for i = 1, #q do q[i]() end
  if #state.ready == 0 then state.idle:stop() end
end

local function defer(fn)
  local q = state.ready
  q[#q + 1] = fn
  if #q == 1 then
    if not state.idle or state.idle:is_closed() then state.idle = core.idle() end
    state.idle:start(run_ready)
  end
end

-- One timer per task, reused by every wait of that task with a timeout
-- (sleep included) and closed when the task ends.
local function task_timer(task)
  local t = task.timer
  if not t or t:is_closed() then
    t = core.timer()
    task.timer = t
  end
  return t
end

local function close_timer(task)
  if task.timer then task.timer:close() end
  task.timer = nil
end

-- Whole milliseconds, never early: 0.0005 s waits 1 ms, 0 waits for the
-- next loop iteration.  (The 1e-6 keeps 0.05 * 1000 = 50.000000000000007
-- at 50.)
local function timeout_ms(s)
  return math.max(0, math.ceil(s * 1000 - 1e-6))
end

local function traceback(co, err)
  if type(err) == "string" then
    return debug.traceback(co, err)
  end
  return err
end

local function finish(task, ok, ...)
  if coroutine.status(task.co) ~= "dead" then return end
  task.done = true
  state.live[task] = nil
  close_timer(task)
  if ok then
    task.results = table.pack(...)
  else
    task.error = traceback(task.co, (...))
    if not task.main and not task.cancelled and state.on_error then
      state.on_error(task.error, task)
    elseif not task.main and not task.cancelled and state.failure == nil then
      state.failure = task.error
      io.stderr:write("natpunch: error in task: ", tostring(task.error), "\n")
      core.stop()
    end
  end
  local waiters = task.waiters
  task.waiters = nil
  for _, w in ipairs(waiters or {}) do w() end
  if task.main then core.stop() end
end

--- Report errors of background tasks to fn(traceback, task) instead of
-- stopping the run (an interactive shell goes on); nil restores that.
function sched.on_error(fn)
  if fn ~= nil and type(fn) ~= "function" then error("bad argument #1 to 'on_error' (function or nil expected)", 2) end
  state.on_error = fn
end

--- Resume a task with values; used by wake-up callbacks.
function sched.resume(task, ...)
  if task.done or coroutine.status(task.co) ~= "suspended" then return end
  finish(task, coroutine.resume(task.co, ...))
end

--- The task running now, or nil on the main thread.
function sched.current()
  local co, main = coroutine.running()
  if main then return nil end
  return state.by_co[co]
end

local function need_task(what)
  local t = sched.current()
  if not t then
    error(what .. " must be called from a task (inside natpunch.run or natpunch.spawn)", 3)
  end
  return t
end

--- Start fn(...) as a new task; it runs until its first wait right away.
function sched.spawn(fn, ...)
  if type(fn) ~= "function" then
    error("bad argument #1 to 'spawn' (function expected, got " .. type(fn) .. ")", 2)
  end
  local task = setmetatable({ co = coroutine.create(fn) }, Task)
  state.by_co[task.co] = task
  state.live[task] = true
  finish(task, coroutine.resume(task.co, ...))
  return task
end

--- Suspend the current task until wake(...) is called; `arm(wake)` (optional) sets it
-- up.  With timeout (seconds), returns nil, "timeout" if nothing came.
function sched.wait(arm, timeout)
  local task = need_task("wait")
  local timer, fired = nil, false
  local function wake(...)
    if fired then return end
    fired = true
    if timer and not timer:is_closed() then timer:stop() end
    sched.resume(task, ...)
  end
  if timeout then
    local function expire() wake(nil, "timeout", "ETIMEDOUT") end
    local ms = timeout_ms(timeout)
    if ms == 0 then
      defer(expire)
    else
      timer = task_timer(task)
      timer:start(ms, 0, expire)
    end
  end
  local cancel = arm and arm(wake)
  local function release()
    fired = true
    task.release = nil
    if timer and not timer:is_closed() then timer:stop() end
    if type(cancel) == "function" then cancel() end
  end
  task.release = release     -- what Task:cancel undoes while we wait
  local r = table.pack(coroutine.yield())
  release()
  return table.unpack(r, 1, r.n)
end

--- sched.wait with a wake-up function appended to the list waiters (a
-- queue: whoever takes it out, or swaps the list for a new one, and calls it
-- resumes the task); on timeout or when the task is cancelled it leaves the
-- list again.  A function that was called is not looked for: its caller may
-- still be walking the list.
function sched.wait_in(waiters, timeout)
  return sched.wait(function(wake)
    local called = false
    local function w(...)
      called = true
      wake(...)
    end
    table.insert(waiters, w)
    return function()
      if called then return end
      for i, x in ipairs(waiters) do
        if x == w then table.remove(waiters, i) break end
      end
    end
  end, timeout)
end

--- Sleep the current task for s seconds (whole milliseconds, rounded up);
-- sleep(0) lets every other ready callback and task run once, I/O included.
function sched.sleep(s)
  if type(s) ~= "number" or s < 0 or s ~= s or s >= 1e9 then
    error("bad argument #1 to 'sleep' (non-negative number of seconds expected)", 2)
  end
  need_task("sleep")
  sched.wait(nil, s)
end

--- Wait for another task to finish; returns its results (or raises its error).
function Task:join(timeout)
  if not self.done then
    local ok, err = sched.wait(function(wake)
      self.waiters = self.waiters or {}
      table.insert(self.waiters, function() wake(true) end)
    end, timeout)
    if not ok then return nil, err end
  end
  if self.error then error(self.error, 0) end
  return table.unpack(self.results, 1, self.results.n)
end

--- Stop a waiting task; it never resumes, and what it waited on (timers,
-- waiter lists) is released.
function Task:cancel()
  if self.done then return end
  self.cancelled = true
  self.done = true
  state.live[self] = nil
  if self.release then self.release() end
  close_timer(self)
  local waiters = self.waiters
  self.waiters = nil
  for _, w in ipairs(waiters or {}) do w() end
end

--- A one-shot value that tasks can wait for: f:set(...), f:wait(timeout).
local Future = {}
Future.__index = Future

function sched.future()
  return setmetatable({ waiters = {} }, Future)
end

function Future:set(...)
  if self.values then return false end
  self.values = table.pack(...)
  local ws = self.waiters
  self.waiters = {}
  for _, w in ipairs(ws) do w(...) end
  return true
end

function Future:is_set()
  return self.values ~= nil
end

function Future:wait(timeout)
  if self.values then return table.unpack(self.values, 1, self.values.n) end
  return sched.wait_in(self.waiters, timeout)
end

--- Run fn as the main task and drive the loop until it returns.  Returns its
-- results; raises its error, or the error of a background task.
-- opts.timeout (seconds) bounds the whole run.  A run owns the tasks
-- spawned during it: those still waiting when it ends are cancelled.
function sched.run(fn, opts)
  if state.running then error("natpunch.run is already running (nested run)", 2) end
  if sched.current() then error("natpunch.run called from inside a task", 2) end
  opts = opts or {}
  state.running = true
  state.failure = nil
  local watchdog
  local main
  local ok, err = pcall(function()
    main = setmetatable({ co = coroutine.create(fn), main = true }, Task)
    state.by_co[main.co] = main
    state.live[main] = true
    if opts.timeout then
      watchdog = core.timer()
      watchdog:start(opts.timeout * 1000, 0, function()
        state.failure = state.failure or ("natpunch.run: timed out after " .. opts.timeout .. " s")
        core.stop()
      end)
    end
    finish(main, coroutine.resume(main.co))
    while not main.done and not state.failure do
      local alive = core.run("default")
      if not alive and not main.done and not state.failure then
        state.failure = "natpunch.run: the main task is waiting but nothing can wake it (no active handles)"
      end
    end
  end)
  if watchdog then watchdog:close() end
  -- tasks still waiting when run ends (after an error or a timeout, or
  -- background tasks the main task left behind) must not resume later
  for t in pairs(state.live) do t:cancel() end
  state.running = false
  if not ok then error(err, 0) end
  if state.failure then
    local f = state.failure
    state.failure = nil
    error(f, 0)
  end
  if main.error then error(main.error, 0) end
  return table.unpack(main.results, 1, main.results.n)
end

return sched
