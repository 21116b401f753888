--- Chat between two terminals through a punched path.
--
--   terminal 1:  lua5.4 examples/chat.lua 127.0.0.1:3478 alice
--   terminal 2:  lua5.4 examples/chat.lua 127.0.0.1:3478 bob alice
--
-- (with a rendezvous running: `natpunch rendezvous --listen 127.0.0.1:3478`).
-- The first waits to be called, the second calls it by id.  Each line you
-- type is sent with touch (reliable; "!" is printed if it was not
-- acknowledged); lines typed before the other side is there are sent once
-- it is.  End of input (Ctrl-D) sends what is left, waits a second for
-- answers, and leaves.  Standard input is read on the loop (core.stdin) so
-- receiving goes on while you type; it may be a terminal, a pipe or a file.

-- natpunch from this checkout (lua/ and build/ next to examples/); drop
-- this line in a copy of the example that uses an installed natpunch
dofile((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/../lua/natpunch/checkout.lua")

local natpunch = require "natpunch"

local server, me_id, them_id = arg[1], arg[2], arg[3]
if not server or not me_id then
  io.stderr:write("usage: lua5.4 examples/chat.lua SERVER MY_ID [THEIR_ID]\n")
  os.exit(2)
end
natpunch.core.on_error(function(err)   -- Ctrl-C: leave (see examples/rendezvous.lua)
  if tostring(err):find("interrupted!", 1, true) then os.exit(130) end
  io.stderr:write(tostring(err), "\n")
end)
io.stdout:setvbuf("line")

local IDLE_BEFORE_EXIT = 1.0   -- seconds without messages after end of input

natpunch.run(function()
  local session = natpunch.future()      -- set once the other side is there
  local last_heard = natpunch.now()
  local me = assert(natpunch.peer{
    server = server, id = me_id,
    on_session = function(s)               -- they called us
      print("* " .. s.peer .. " joined (" .. s.path .. " path, " .. s.remote .. ")")
      session:set(s)
    end,
    on_message = function(s, data)
      last_heard = natpunch.now()
      print(s.peer .. ": " .. data)
    end,
  })
  print("* registered as " .. me_id .. " (public " .. assert(me:register()) .. ")")
  if them_id then
    local s = assert(me:connect(them_id))
    print("* connected to " .. them_id .. " (" .. s.path .. " path, " .. s.remote .. ")")
    session:set(s)
  else
    print("* waiting for someone to connect to " .. me_id)
  end

  -- Lines from stdin, as they come, without blocking the loop.
  local lines, eof, wake, partial = {}, false, nil, ""
  local function on_input(err, chunk)
    if err or not chunk then
      eof = true
      if partial ~= "" then lines[#lines + 1] = partial end
    else
      partial = partial .. chunk
      for line in partial:gmatch("([^\n]*)\n") do lines[#lines + 1] = line end
      partial = partial:match("[^\n]*$")
    end
    if wake then wake() end
  end
  local stdin
  if io.stdin:seek("cur") then
    -- a regular file (`< file`): it cannot block, and libuv cannot poll it
    for line in io.stdin:lines() do lines[#lines + 1] = line end
    eof = true
  else
    stdin = assert(natpunch.core.stdin())
    stdin:read_start(on_input)
  end

  -- Send each line with touch; do not wait for one ack before the next.
  local in_flight = 0
  while true do
    while #lines == 0 and not eof do natpunch.wait(function(w) wake = w end) end
    wake = nil
    if #lines == 0 then break end
    local line = table.remove(lines, 1)
    local s = session:wait()
    in_flight = in_flight + 1
    local ok, err = s:touch(line, function(terr)
      in_flight = in_flight - 1
      if terr then print("! not delivered: " .. line .. " (" .. terr .. ")") end
    end)
    if not ok then
      in_flight = in_flight - 1
      print("! cannot send: " .. tostring(err))
    end
  end
  if stdin then stdin:close() end

  -- End of input: let the last touches finish and answers arrive.
  while in_flight > 0 or (natpunch.now() - last_heard) < IDLE_BEFORE_EXIT * 1000 do
    natpunch.sleep(0.05)
  end
  me:close()
end)
