-- The command that produces docs/TRAVERSAL.md's hard cases:
-- `natpunch lab matrix --hard --markdown` (and `make traversal-docs`,
-- which splices its table into the document with tools/splice_doc.lua).
-- One run of each case through the real lab NATs and coturn, with the
-- peers' default methods: the table must show every case connected, as
-- expected, by its method, on its path; among them the cases of their own
-- kind (natpunch.lab.matrix.kinds: failover, upgrade, fallback, dual-homed,
-- IPv6-only, dual-stack, relay over IPv6), each run once.  The splice tool is checked without root.
-- Tags: #lab.
local helper = require "spec.helper"
local lab = require "natpunch.lab"

local function run(cmd)
  local p = io.popen(helper.sh(cmd))
  local out = p:read("a")
  local ok, _, code = p:close()
  return out, ok and 0 or code
end

describe("tools/splice_doc.lua", function()
  it("puts stdin between a document's markers, and refuses what it cannot do", function()
    local dir = helper.tmpdir("splice")
    local path = dir .. "/doc.md"
    local f = assert(io.open(path, "w"))
    f:write("before\n<!-- natpunch:t -->\nold\n<!-- /natpunch:t -->\nafter\n")
    f:close()
    local _, code = run("printf '| a |\\n' | " .. helper.lua .. " tools/splice_doc.lua " .. path .. " t")
    assert.equal(0, code)
    assert.equal("before\n<!-- natpunch:t -->\n| a |\n<!-- /natpunch:t -->\nafter\n", helper.read_file(path))
    -- nothing on stdin (the matrix could not run): the document stays
    _, code = run(helper.lua .. " tools/splice_doc.lua " .. path .. " t < /dev/null 2>/dev/null")
    assert.equal(1, code)
    assert.matches("| a |", helper.read_file(path), 1, true)
    -- no such markers
    _, code = run("echo x | " .. helper.lua .. " tools/splice_doc.lua " .. path .. " other 2>/dev/null")
    assert.equal(1, code)
    os.execute("rm -rf " .. helper.q(dir))
  end)

  it("docs/TRAVERSAL.md has the markers make traversal-docs fills", function()
    local doc = helper.read_file("docs/TRAVERSAL.md")
    assert.truthy(doc:find("<!-- natpunch:hard_matrix -->", 1, true))
    assert.truthy(doc:find("<!-- /natpunch:hard_matrix -->", 1, true))
    assert.matches("traversal-docs:", helper.read_file("Makefile"), 1, true)
  end)
end)

local why = lab.unavailable()
if not why and not os.execute("command -v turnserver >/dev/null 2>&1") then why = "needs coturn (make deps)" end

describe("#lab natpunch lab matrix --hard --markdown", function()
  if why then
    it("(skipped)", function() pending("needs root: " .. why) end)
    return
  end
  it("connects every hard case by its method, with the default methods", function()
    local matrix = require "natpunch.lab.matrix.cases"
    local names, title_case = matrix.names("hard"), {}
    for _, name in ipairs(names) do title_case[matrix.case(name).title] = name end
    assert.is_true(#names >= 10)
    local out, code = run(helper.cli() .. " lab matrix --hard --markdown 2>&1")
    -- progress went to stderr (merged here), the table to stdout
    assert.equal(0, code, out)
    assert.matches("`natpunch lab matrix --hard --markdown` (as root)", out, 1, true)
    local rows = 0
    for line in out:gmatch("[^\n]+") do
      local title, won, path, conn, expected =
        line:match("^| (.-) | (%a+) | (%a+) | (%d+/%d+) %(%d+%%%) | (%d+/%d+) |")
      if title then
        rows = rows + 1
        local name = assert(title_case[title], "no case titled " .. title)
        assert.equal(matrix.case(name).method, won, line)
        assert.equal(matrix.case(name).path, path, line)
        assert.equal("1/1", conn, line)
        assert.equal("1/1", expected, line)
      end
    end
    assert.equal(#names, rows, out)
  end)
end)
