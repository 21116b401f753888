#!/usr/bin/env lua5.4
-- tools/cstyle.lua - the C layout checks of `make lint` (and of
-- spec/cdeps_spec.lua, so CI runs them too):
--   1. no tab in any C source or header (csrc/, bench/);
--   2. every header has an include guard of its own (two headers sharing
--      one silently hide each other);
--   3. the files in FORMATTED are exactly as clang-format-14 writes them
--      (.clang-format at the root).
--
--   lua5.4 tools/cstyle.lua [FILE...]    default: every C file of the tree
--
-- Every C file of the tree is in FORMATTED; a new file joins it (run
-- `clang-format-14 -i FILE` and add it here).  The list stays explicit so
-- that a file being reformatted wholesale is a visible change.
local FORMATTED = {
  "csrc/core/punch.c", "csrc/core/punch.h", "csrc/core/touch.c", "csrc/core/touch.h",
  "csrc/fuzz/fuzz_punch.c", "csrc/fuzz/fuzz_touch.c", "csrc/lua/np_udp.c", "csrc/lua/np_udp.h",
  "csrc/lua/np_udp_batch.c", "csrc/lua/np_udp_path.c", "csrc/lua/np_udp_punch.c",
  "csrc/lua/np_udp_recv.c", "csrc/lua/np_udp_recv.h",
  "csrc/lua/np_udp_relay.c", "csrc/lua/np_udp_touch.c", "csrc/test/test_punch.c",
  "csrc/test/test_touch.c", "csrc/test/test_addr.c",
  "bench/ipv4_port.h", "bench/loadgen.c", "bench/stun_raw.c", "bench/udp_blast.c",
  "csrc/core/addr.c", "csrc/core/addr.h", "csrc/core/bytes.h", "csrc/core/crc32.c",
  "csrc/core/crypto.h", "csrc/core/hash.c", "csrc/core/stun.c", "csrc/core/stun.h",
  "csrc/core/stun_write.c", "csrc/core/turn.c", "csrc/core/turn.h", "csrc/core/wipe.c",
  "csrc/core/wire.h", "csrc/fuzz/ctlmsg.c", "csrc/fuzz/ctlmsg.h", "csrc/fuzz/ctlmsg_dump.c",
  "csrc/fuzz/fuzz.h", "csrc/fuzz/fuzz_addr.c", "csrc/fuzz/fuzz_ctlmsg.c",
  "csrc/fuzz/fuzz_stun_answer.c", "csrc/fuzz/fuzz_stun_integrity.c", "csrc/fuzz/fuzz_stun_read.c",
  "csrc/fuzz/mkseeds.c", "csrc/labwire/engine.c", "csrc/labwire/main.c", "csrc/labwire/opts.c",
  "csrc/labwire/rng.c", "csrc/labwire/sim.c", "csrc/labwire/tap.c", "csrc/labwire/wire.h",
  "csrc/lua/natpunch.h", "csrc/lua/np_core.c", "csrc/lua/np_crypto.c", "csrc/lua/np_crypto.h",
  "csrc/lua/np_dns.c", "csrc/lua/np_inet.c", "csrc/lua/np_module.c", "csrc/lua/np_redis.c",
  "csrc/lua/np_signal.c", "csrc/lua/np_stdio.c",
  "csrc/lua/np_stun.c", "csrc/lua/np_tcp.c", "csrc/lua/np_tcp_punch.c", "csrc/lua/np_timer.c",
  "csrc/readline/np_readline.c", "csrc/test/check.h", "csrc/test/test_regress.c",
  "csrc/test/test_stun.c", "csrc/test/test_turn.c", "csrc/test/vectors.h", "csrc/tools/spoof.c",
}
local CLANG_FORMAT = os.getenv("CLANG_FORMAT") or "clang-format-14"

local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function lines_of(cmd)
  local p = assert(io.popen(cmd))
  local t = {}
  for l in p:lines() do t[#t + 1] = l end
  p:close()
  return t
end

local files = { ... }
local explicit = #files > 0
if not explicit then
  files = lines_of("find csrc bench -name '*.c' -o -name '*.h' 2>/dev/null | sort")
end

local problems = 0
local function bad(fmt, ...)
  io.stderr:write("cstyle: ", fmt:format(...), "\n")
  problems = problems + 1
end

local guards = {}
for _, f in ipairs(files) do
  local fh = io.open(f, "rb")
  if not fh then
    bad("%s: cannot read", f)
  else
    local text = fh:read("a")
    fh:close()
    local n = 0
    for line in (text .. "\n"):gmatch("([^\n]*)\n") do
      n = n + 1
      if line:find("\t", 1, true) then bad("%s:%d: tab (indent with spaces)", f, n) end
    end
    if f:match("%.h$") then
      local g = text:match("#ifndef%s+([%w_]+)%s*\n%s*#define%s+([%w_]+)")
      if not g then
        bad("%s: no include guard (#ifndef X / #define X)", f)
      elseif guards[g] then
        bad("%s: include guard %s already used by %s", f, g, guards[g])
      else
        guards[g] = f
      end
    end
  end
end

-- clang-format: only the files of FORMATTED (also when files were given)
local want = {}
for _, f in ipairs(FORMATTED) do want[f] = true end
local checked = 0
if not explicit or os.getenv("CSTYLE_FORMAT_ALL") then
  for _, f in ipairs(explicit and files or FORMATTED) do
    if want[f] or explicit then
      checked = checked + 1
      local out = lines_of(CLANG_FORMAT .. " --dry-run -Werror " .. q(f) .. " 2>&1; echo rc=$?")
      if out[#out] ~= "rc=0" then
        bad("%s: not clang-formatted (%s -i %s):\n%s", f, CLANG_FORMAT, f,
          table.concat(out, "\n", 1, math.min(#out - 1, 12)))
      end
    end
  end
end

if problems > 0 then
  io.stderr:write(("cstyle: %d problem(s)\n"):format(problems))
  os.exit(1)
end
print(("cstyle: %d C files without tabs, %d include guards unique, %d files clang-formatted")
  :format(#files, (function() local c = 0 for _ in pairs(guards) do c = c + 1 end return c end)(), checked))
