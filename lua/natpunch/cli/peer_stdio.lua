--- `natpunch peer --transport tcp --stdio`: like nc over a punched TCP
-- connection.  After connecting (--connect ID) or being connected to (the
-- first peer that does), standard input goes to the peer and what the peer
-- sends goes to standard output, byte for byte.  At the end of standard
-- input our side is half-closed (FIN); the command exits once the peer's side
-- has ended too.  Events go to stderr (stdout is the data).
local cli = require "natpunch.cli"

local M = {}

local CHUNK = 64 * 1024

-- Pump stdin into the stream; returns nil or a reason.  A terminal, pipe or
-- socket is read on the loop; a regular file (or /dev/null) with io.read,
-- which never blocks for long.
local function pump_stdin(natpunch, s)
  local reader = natpunch.core.stdin()
  if not reader then
    while true do
      local data = io.stdin:read(CHUNK)
      if not data then break end
      local ok, err = s:write(data)
      if not ok then return "write failed: " .. tostring(err) end
    end
  else
    local chunks, eof, wake, paused = {}, false, nil, false
    local function on_chunk(_, chunk)
      if chunk then chunks[#chunks + 1] = chunk else eof = true end
      if #chunks > 16 and not eof then   -- the peer is slower than stdin
        reader:read_stop()
        paused = true
      end
      if wake then
        local w = wake
        wake = nil
        w()
      end
    end
    reader:read_start(on_chunk)
    while true do
      if #chunks > 0 then
        local data = table.concat(chunks)
        chunks = {}
        if paused then
          paused = false
          reader:read_start(on_chunk)
        end
        local ok, err = s:write(data)
        if not ok then
          reader:close()
          return "write failed: " .. tostring(err)
        end
      elseif eof then
        break
      else
        natpunch.wait(function(w) wake = w end)
      end
    end
    reader:close()
  end
  local ok, err = s:flush()
  if ok then ok, err = s:shutdown() end
  if not ok then return "shutdown failed: " .. tostring(err) end
  return nil
end

local function pump_stdout(s)
  while true do
    local data, err = s:read()
    if not data then return err ~= "eof" and err or nil end
    io.stdout:write(data)
    io.stdout:flush()
  end
end

--- Run with parsed options (opts.connect or waiting); out: the event
-- emitter (writing to stderr).  Returns the exit code.
function M.run(opts, out)
  return cli.run_loop("peer", function(ctx)
    local natpunch = ctx.natpunch
    local started = natpunch.now()
    local function left()
      if not opts.timeout then return nil end
      return math.max(0.001, opts.timeout - (natpunch.now() - started) / 1000)
    end
    local c, err = natpunch.stunt.init{ server = opts.server[1], id = opts.id,
      bind = opts.bind, on_event = out.event, connect_timeout = opts.timeout or 10,
      register_timeout = math.min(5, opts.timeout and opts.timeout / 2 or 5) }
    if not c then
      out.event({ event = "failed", reason = err })
      return cli.FAIL
    end
    local s
    if opts.connect then
      s, err = c:connect(opts.connect, { timeout = left(), mode = "raw" })
    else
      out.log("natpunch peer: registered as '", opts.id, "'; waiting for one peer (--stdio)")
      s, err = c:listen(left())
      if s and s.mode ~= "raw" then
        err = "the other side sends messages, not a raw stream (use --stdio on both sides)"
        s:close()
        s = nil
      end
    end
    if not s then
      if not (out.last and out.last.event == "failed") then
        out.event({ event = "failed", peer = opts.connect, reason = err or "timeout" })
      end
      c:close()
      return cli.FAIL
    end
    local sending = natpunch.spawn(pump_stdin, natpunch, s)
    local rerr = pump_stdout(s)
    local serr = sending:join()
    s:close()
    natpunch.sleep(0.01)
    c:close()
    natpunch.sleep(0.01)
    if rerr or serr then
      out.event({ event = "failed", peer = s.peer, reason = rerr or serr })
      return cli.FAIL
    end
    out.event({ event = "closed", peer = s.peer, transport = "tcp" })
    return cli.OK
  end, function(reason)
    if not (out.last and out.last.event == "failed") then out.event({ event = "failed", reason = reason }) end
  end)
end

return M
