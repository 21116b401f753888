-- The plain C tests of the pure cores (csrc/test/test_*.c), built by the
-- Makefile into build/test (or build-san/test under `make sanitize`).
local helper = require "spec.helper"

describe("C unit tests", function()
  local p = io.popen("ls csrc/test/test_*.c 2>/dev/null")
  local names = {}
  for line in p:lines() do names[#names + 1] = line:match("(test_[%w_]+)%.c$") end
  p:close()
  it("exist", function() assert.is_true(#names > 0) end)
  for _, name in ipairs(names) do
    it(name, function()
      local bin = helper.tests_dir .. "/" .. name
      local f = io.open(bin, "rb")
      assert(f, bin .. " is not built (run make test)")
      f:close()
      local out = io.popen(helper.q(bin) .. " 2>&1; echo \"exit=$?\"")
      local text = out:read("a")
      out:close()
      assert.truthy(text:match("exit=0%s*$"), text)
    end)
  end
end)
