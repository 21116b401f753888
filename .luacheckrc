std = "lua54"
max_line_length = 120
files["spec/**/*.lua"] = { std = "+busted" }
files["bin/natpunch"] = { std = "lua54" }
exclude_files = { "build", "build-san" }
