--- Seed 004's EchoClient: connect by id to examples/echo_server.lua across
-- NATs over a direct TCP connection, send each line of standard input, print
-- each line echoed back, and exit at the end of the input.
--
--   lua5.4 examples/echo_client.lua SERVER ID TARGET < lines.txt
--
-- ID is this client's own id, TARGET the echo server's (natpunch.stunt,
-- after XSTUNT's XInit / XConnect).

-- natpunch from this checkout (lua/ and build/ next to examples/); drop
-- this line in a copy of the example that uses an installed natpunch
dofile((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/../lua/natpunch/checkout.lua")

local natpunch = require "natpunch"

local server, id, target = arg[1], arg[2], arg[3]
if not server or not id or not target then
  io.stderr:write("usage: lua5.4 examples/echo_client.lua SERVER ID TARGET\n")
  os.exit(2)
end
natpunch.core.on_error(function(err)
  if tostring(err):find("interrupted!", 1, true) then os.exit(130) end
  io.stderr:write(tostring(err), "\n")
end)
io.stdout:setvbuf("line")

-- Lines of stdin as they come, without blocking the loop: a regular file
-- is read at once (it cannot block, and libuv cannot poll it).
local function input_lines()
  local lines, eof, wake, partial = {}, false, nil, ""
  if io.stdin:seek("cur") then
    for line in io.stdin:lines() do lines[#lines + 1] = line end
    eof = true
  else
    local stdin = assert(natpunch.core.stdin())
    stdin:read_start(function(err, chunk)
      if err or not chunk then
        eof = true
        if partial ~= "" then lines[#lines + 1] = partial end
      else
        partial = partial .. chunk
        for line in partial:gmatch("([^\n]*)\n") do lines[#lines + 1] = line end
        partial = partial:match("[^\n]*$")
      end
      if wake then wake() end
    end)
  end
  return function()
    while #lines == 0 and not eof do natpunch.wait(function(w) wake = w end) end
    wake = nil
    return table.remove(lines, 1)
  end
end

local code = natpunch.run(function()
  local me = assert(natpunch.stunt.init{ server = server, id = id })
  -- XConnect: a connected stream to the peer registered as target
  local s, err = me:connect(target)
  if not s then
    io.stderr:write("cannot connect to ", target, ": ", tostring(err), "\n")
    return 1
  end
  io.stderr:write(("connected to %s: %s path to %s, %d ms\n"):format(target, s.path, s.remote, s.setup_ms))
  local next_line = input_lines()
  local buffer = ""
  for line in next_line do
    assert(s:write(line .. "\n"))
    -- print what comes back, line by line
    while not buffer:find("\n", 1, true) do
      local data, rerr = s:read(10)
      if not data then
        io.stderr:write("the echo server went away: ", tostring(rerr), "\n")
        return 1
      end
      buffer = buffer .. data
    end
    local echoed, rest = buffer:match("^([^\n]*)\n(.*)$")
    print(echoed)
    buffer = rest
  end
  s:shutdown()
  s:close()
  me:close()
  natpunch.sleep(0.05)   -- let the close reach the server
  return 0
end)
os.exit(code)
