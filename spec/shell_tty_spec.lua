-- `natpunch shell` on a real pseudo-terminal (tmux, on a private tmux
-- server socket): line editing and history, Ctrl-C, Ctrl-D, errors in
-- callbacks, events printed above the line being typed.  HOME is a
-- temporary directory, so the user's ~/.natpunch_history is untouched.
local helper = require "spec.helper"

local q, sh, read_file = helper.q, helper.sh, helper.read_file

local function has_tmux()
  return os.execute(sh("command -v tmux >/dev/null 2>&1")) == true
end

local function sleep(s) os.execute("sleep " .. s) end

-- A shell in a detached tmux session; t.keys(...) types (tmux key names
-- such as "Enter", "Left", "Up", "C-c", "C-d"), t.type(text) types text
-- literally, t.screen() is what the terminal shows (with scrollback).
local function tmux_shell(dir, home)
  local t = { sock = "npux" .. math.random(1e6, 9e6), name = "shell" }
  local exitfile = dir .. "/exit"
  local cmd = "cd " .. q(os.getenv("PWD") or ".") .. " && env HOME=" .. q(home) .. " TERM=xterm "
    .. helper.cli() .. " shell; echo $? > " .. q(exitfile) .. "; sleep 60"
  local function tmux(args) return "tmux -L " .. t.sock .. " " .. args end
  assert(os.execute(sh(tmux("new-session -d -s " .. t.name .. " -x 160 -y 50 " .. q(cmd)))))
  function t.keys(...)
    for _, k in ipairs({ ... }) do os.execute(sh(tmux("send-keys -t " .. t.name .. " " .. k))) end
    sleep(0.05)
  end
  function t.type(text)
    os.execute(sh(tmux("send-keys -t " .. t.name .. " -l " .. q(text))))
    sleep(0.05)
  end
  function t.line(text)
    t.type(text)
    t.keys("Enter")
  end
  function t.screen()
    local p = io.popen(sh(tmux("capture-pane -p -J -S -500 -t " .. t.name)))
    local s = p:read("a")
    p:close()
    return s
  end
  -- wait until the screen matches pattern (plain text), bounded
  function t.expect(text, seconds, count)
    local screen
    for _ = 1, (seconds or 5) * 20 do
      screen = t.screen()
      -- tmux shows a tab as spaces
      local n = select(2, screen:gsub((text:gsub("%p", "%%%0"):gsub("\t", " +")), ""))
      if n >= (count or 1) then return screen end
      sleep(0.05)
    end
    error("screen never showed " .. text .. ":\n" .. screen)
  end
  function t.exit_code(seconds)
    for _ = 1, (seconds or 5) * 20 do
      local c = read_file(exitfile):match("%d+")
      if c then return tonumber(c) end
      sleep(0.05)
    end
    return nil
  end
  function t.kill()
    os.execute(sh(tmux("kill-server") .. " 2>/dev/null"))
  end
  -- the prompt is there once the banner is
  t.expect("the loop is running")
  return t
end

describe("natpunch shell on a terminal", function()
  local dir, home, t
  before_each(function()
    if not has_tmux() then return end
    dir = helper.tmpdir("shelltty")
    home = dir .. "/home"
    assert(os.execute(sh("mkdir -p " .. q(home))))
  end)
  after_each(function()
    if t then t.kill() end
    t = nil
    if dir then os.execute(sh("rm -rf " .. q(dir))) end
  end)

  it("edits lines, keeps history in ~/.natpunch_history, prints values readably", function()
    if not has_tmux() then return pending("needs tmux") end
    t = tmux_shell(dir, home)
    t.line("x = 40")
    t.type("return x + 2")
    t.keys("Home", "Right", "Right", "Right", "Right", "Right", "Right", "Right")   -- after "return "
    t.type("1 + ")                                        -- "return 1 + x + 2"
    t.keys("Enter")
    t.expect("\n43\n")
    assert.is_nil(t.screen():find("^[[", 1, true))          -- arrows edit, they do not insert escapes
    t.line('{ 1, "two\\27[2J", k = { 3 }, f = false }')
    t.expect('{ 1, "two\\e[2J", f = false, k = {...} (1) }')
    t.keys("Up", "Up")                                      -- two lines back in the history
    t.expect("> return 1 + x + 2")
    t.keys("C-u")
    t.keys("C-d")
    assert.equal(0, t.exit_code())
    local hist = read_file(home .. "/.natpunch_history")
    assert.matches("x = 40\nreturn 1 + x + 2\n", hist, 1, true)
    t.kill()
    -- a new shell starts with that history
    t = tmux_shell(dir, home)
    t.keys("Up")
    t.expect("> { 1, ")
    t.keys("Up")
    t.expect("> return 1 + x + 2")
    t.keys("Enter")
    t.expect("attempt to perform arithmetic on a nil value")   -- x is gone with the old shell
    t.line("os.exit(3)")
    assert.equal(3, t.exit_code())
  end)

  it("prints errors in callbacks with a traceback and goes on, state intact", function()
    if not has_tmux() then return pending("needs tmux") end
    t = tmux_shell(dir, home)
    t.line('rv = natpunch.rendezvous{ listen = "127.0.0.1:0" }')
    t.line('function boom(d) error("boom " .. d) end')
    t.line('b = natpunch.peer{ server = rv:address(), id = "bob", on_message = function(s, d) boom(d) end }')
    t.line('b:register()')
    t.expect("[peer bob] registered via 127.0.0.1:")         -- events name their source
    t.line('a = natpunch.peer{ server = rv:address(), id = "al" }')
    t.line('s = a:connect("bob")')
    t.expect("[peer al] connected to bob at 127.0.0.1:")
    t.line('s:send("one") natpunch.sleep(0.2) s:send("two") natpunch.sleep(0.2)')
    t.expect("error in task: stdin:1: boom one")
    local screen = t.expect("error in task: stdin:1: boom two")
    assert.matches("stack traceback:", screen, 1, true)
    assert.matches("'boom'", screen, 1, true)
    -- and everything is still alive
    t.line('b.registered, #rv:list(), a:session("bob") == s, s:touch("ack?") ~= nil')
    t.expect("true\t2\ttrue\ttrue")
    t.line("exit(0)")
    assert.equal(0, t.exit_code())
  end)

  it("Ctrl-C interrupts a busy chunk and a waiting connect, Ctrl-D leaves", function()
    if not has_tmux() then return pending("needs tmux") end
    t = tmux_shell(dir, home)
    t.line('rv = natpunch.rendezvous{ listen = "127.0.0.1:0", on_event = false }')
    t.line('n = 0; while true do n = n + 1 end')
    sleep(0.5)
    t.keys("C-c")
    t.expect("interrupted (Ctrl-C)")
    t.line('n > 0')
    t.expect("\ntrue\n")
    -- a peer whose socket is gone (still registered): connect would wait 60 s
    t.line('g = natpunch.peer{ server = rv:address(), id = "ghost", on_event = false }; g:register(); g.udp:close()')
    t.line('p = natpunch.peer{ server = rv:address(), id = "waiter", connect_timeout = 60, on_event = false }')
    t.line('began = natpunch.now(); s, err = p:connect("ghost")')
    sleep(0.5)
    t.keys("C-c")
    t.expect("interrupted (Ctrl-C)", 5, 2)
    t.line('natpunch.now() - began < 30000, p.registered, rv:lookup("waiter") ~= nil')
    t.expect("true\ttrue\ttrue")
    -- Ctrl-C at the prompt drops the line being typed, and an unfinished chunk
    t.type("for i = 1, 3 do")
    t.keys("Enter")
    t.expect(">> ")
    t.type("print(i)")
    t.keys("C-c")
    t.expect("print(i)^C")
    t.line("return 'fresh'")
    t.expect("\nfresh\n")
    t.keys("C-d")
    assert.equal(0, t.exit_code())
  end)

  it("prints asynchronous events above the prompt and leaves the typed line as it was", function()
    if not has_tmux() then return pending("needs tmux") end
    t = tmux_shell(dir, home)
    t.line('natpunch.spawn(function() for i = 1, 3 do natpunch.sleep(0.4) print("tick " .. i) end end)')
    t.type("val = 'half")
    local screen = t.expect("tick 3", 5)
    -- the ticks are above; the prompt with the half-typed line is last
    local last
    for line in screen:gmatch("[^\n]+") do last = line end
    assert.equal("> val = 'half", last)
    local i1 = screen:find("tick 1", 1, true)
    local ip = screen:find("> val = 'half", 1, true)
    assert.is_true(i1 < ip)
    t.type(" done'")
    t.keys("Enter")
    t.line("val")
    t.expect("\nhalf done\n")
    t.keys("C-d")
    assert.equal(0, t.exit_code())
  end)
end)
