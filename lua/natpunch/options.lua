--- Checks of the option tables given to constructors (natpunch.peer{},
-- natpunch.rendezvous{}, ...): a misspelt key raises instead of being
-- ignored (`rendezvous{ listne = ... }` would otherwise listen on the
-- default address).
local options = {}

-- Levenshtein distance, for "did you mean" (keys are short).
local function distance(a, b)
  local prev = {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    local cur = { [0] = i }
    for j = 1, #b do
      local cost = a:byte(i) == b:byte(j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev = cur
  end
  return prev[#b]
end

--- Raise (at level, default: the caller of the caller) if opts has a key
-- that is not in known (a list of names, or a set name -> true).
-- what names the constructor in the message: "peer: unknown option ...".
function options.check(opts, known, what, level)
  local set = {}
  for k, v in pairs(known) do
    if type(k) == "number" then set[v] = true else set[k] = true end
  end
  for k in pairs(opts) do
    if not set[k] then
      local names = {}
      for name in pairs(set) do names[#names + 1] = name end
      table.sort(names)
      local best, best_d
      if type(k) == "string" then
        for _, name in ipairs(names) do
          local d = distance(k, name)
          if d <= 2 and (not best_d or d < best_d) then best, best_d = name, d end
        end
      end
      local msg = what .. ": unknown option '" .. tostring(k) .. "'"
      if best then msg = msg .. " (did you mean '" .. best .. "'?)" end
      error(msg .. "; options: " .. table.concat(names, ", "), (level or 2) + 1)
    end
  end
end

return options
