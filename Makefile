# natpunch - build, test and demo.  `make demo` and `make test` do all the
# set-up on a fresh Debian machine (via `make deps`).

LUA        ?= lua5.4
PKG_CONFIG ?= pkg-config
LUA_CFLAGS ?= $(shell $(PKG_CONFIG) --cflags lua5.4 2>/dev/null || echo -I/usr/include/lua5.4)
UV_CFLAGS  ?= $(shell $(PKG_CONFIG) --cflags libuv 2>/dev/null)
UV_LIBS    ?= $(shell $(PKG_CONFIG) --libs libuv 2>/dev/null || echo -luv)
# csrc/core's hashes and HMAC (hash.c): every link of the core needs it
NETTLE_LIBS ?= $(shell $(PKG_CONFIG) --libs nettle 2>/dev/null || echo -lnettle)
SODIUM_LIBS?= $(shell $(PKG_CONFIG) --libs libsodium 2>/dev/null || echo -lsodium)
REDIS_LIBS ?= -lhiredis
WARN       := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter
CFLAGS     ?= -O2 -g
INC        := -Icsrc/core -Icsrc/lua
ALL_CFLAGS := -std=gnu11 $(WARN) $(CFLAGS) -fPIC $(INC)
# core.so exports luaopen_natpunch_core only (NP_EXPORT in natpunch.h)
SO_CFLAGS  := -fvisibility=hidden
SAN        := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

# csrc/core: codecs, state machines, hashes (no Lua, no libuv, no system
# calls); csrc/lua: the binding.  Tests, fuzzers and benchmarks link core only.
PURE_SRC := $(wildcard csrc/core/*.c)
BIND_SRC := $(wildcard csrc/lua/*.c)
HDRS     := $(wildcard csrc/core/*.h csrc/lua/*.h)
TEST_HDRS:= $(wildcard csrc/test/*.h)
TESTS    := $(patsubst csrc/test/%.c,build/test/%,$(wildcard csrc/test/*.c))
SAN_TESTS:= $(patsubst csrc/test/%.c,build-san/test/%,$(wildcard csrc/test/*.c))
WIRE_SRC := $(wildcard csrc/labwire/*.c)

BUSTED   := $(LUA) /usr/bin/busted --ignore-lua

.PHONY: all deps test ctest sanitize fuzz demo bench bench-docs traversal-docs lint clean install-rock help

# The shell's line editing (GNU readline's callback interface); a separate
# module so that core.so does not depend on readline.
RL_SRC   := csrc/readline/np_readline.c
RL_LIBS  ?= -lreadline

all: build/natpunch/core.so build/natpunch/readline.so $(if $(WIRE_SRC),build/natpunch-wire) build/natpunch-spoof

help:
	@echo "make          build build/natpunch/core.so (and build/natpunch-wire)"
	@echo "make deps     install missing Debian packages of every target (as root) or list them"
	@echo "              (make deps-demo, deps-test, deps-bench...: one target's; tools/deps.sh)"
	@echo "make test     build and run every spec (busted) and C unit test"
	@echo "make sanitize build with ASan+UBSan and run the specs under it"
	@echo "make demo     two peers meet through a rendezvous and exchange messages"
	@echo "make fuzz     libFuzzer targets under ASan+UBSan, FUZZ_RUNS inputs each (docs/SECURITY.md)"
	@echo "make lint     luacheck, no cycles between C files, C layout (tools/cycles.lua, tools/cstyle.lua), docs/API.md covers every exported function (tools/docscov.lua), generated docs up to date"
	@echo "make bench    every bench row as a ratio to a baseline of the same run (bench/README.md)"
	@echo "make bench-docs  record a run into docs/BENCH.md with its SVG plots"
	@echo "make traversal-docs  run the lab's hard cases TRAVERSAL_RUNS times (as root) into docs/TRAVERSAL.md"

# The modules and programs processes load (the lab starts natpunch in its
# namespaces all the time) are written to a temporary file and renamed into
# place: a rebuild while something runs never lets a starting process load
# a half-written file ("file too short": it exits 1 before it can say why).
build/natpunch/core.so: $(PURE_SRC) $(BIND_SRC) $(HDRS)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(SO_CFLAGS) $(LUA_CFLAGS) $(UV_CFLAGS) -shared -o $@.tmp $(PURE_SRC) $(BIND_SRC) $(UV_LIBS) \
	  $(NETTLE_LIBS) $(REDIS_LIBS) $(SODIUM_LIBS) && mv -f $@.tmp $@

build/natpunch/readline.so: $(RL_SRC)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(LUA_CFLAGS) -shared -o $@.tmp $(RL_SRC) $(RL_LIBS) && mv -f $@.tmp $@

build-san/natpunch/readline.so: $(RL_SRC)
	@mkdir -p $(@D)
	$(CC) -std=gnu11 $(WARN) -O1 -g $(SAN) -fPIC $(LUA_CFLAGS) -shared -o $@ $(RL_SRC) $(RL_LIBS)

build/natpunch-wire: $(WIRE_SRC) $(wildcard csrc/labwire/*.h)
	@mkdir -p $(@D)
	$(CC) -std=gnu11 $(WARN) $(CFLAGS) -o $@.tmp $(WIRE_SRC) && mv -f $@.tmp $@

# Test tool of the spoofing specs: UDP with forged IPv4 sources through a raw
# socket, only toward the lab's ranges inside a namespace, or on loopback
# (csrc/tools/spoof.c).  Never installed.
build/natpunch-spoof: csrc/tools/spoof.c
	@mkdir -p $(@D)
	$(CC) -std=gnu11 $(WARN) $(CFLAGS) -o $@ $<

build/test/%: csrc/test/%.c $(PURE_SRC) $(HDRS) $(TEST_HDRS)
	@mkdir -p $(@D)
	$(CC) -std=gnu11 $(WARN) -O1 -g -Icsrc/core -o $@ $< $(PURE_SRC) $(NETTLE_LIBS) -lm

build-san/test/%: csrc/test/%.c $(PURE_SRC) $(HDRS) $(TEST_HDRS)
	@mkdir -p $(@D)
	$(CC) -std=gnu11 $(WARN) -O1 -g $(SAN) -Icsrc/core -o $@ $< $(PURE_SRC) $(NETTLE_LIBS) -lm

build-san/natpunch/core.so: $(PURE_SRC) $(BIND_SRC) $(HDRS)
	@mkdir -p $(@D)
	$(CC) -std=gnu11 $(WARN) -O1 -g $(SAN) -fPIC $(SO_CFLAGS) $(INC) $(LUA_CFLAGS) $(UV_CFLAGS) -shared -o $@ $(PURE_SRC) \
	  $(BIND_SRC) $(UV_LIBS) $(NETTLE_LIBS) $(REDIS_LIBS) $(SODIUM_LIBS)

ctest: $(TESTS)
	@for t in $(TESTS); do echo "== $$t"; $$t || exit 1; done

# tools/deps.sh TARGET installs what that target needs (and what building
# needs); a new dependency goes under its target there.
deps:
	@sh tools/deps.sh all

DEPS_TARGETS := build demo test bench fuzz rock
.PHONY: $(addprefix deps-,$(DEPS_TARGETS))
$(addprefix deps-,$(DEPS_TARGETS)):
	@sh tools/deps.sh $(@:deps-%=%)

# NATPUNCH_BUILD tells the specs (spec/helper.lua) which core.so to load.
test: deps-test all $(TESTS) build/test/ctlmsg_dump
	NATPUNCH_BUILD=build NATPUNCH_TESTS=build/test $(BUSTED) $(BUSTED_ARGS)

sanitize: deps-test build-san/natpunch/core.so build-san/natpunch/readline.so $(SAN_TESTS) build-san/test/ctlmsg_dump \
  $(if $(WIRE_SRC),build/natpunch-wire) build/natpunch-spoof
	NATPUNCH_BUILD=build-san NATPUNCH_TESTS=build-san/test NATPUNCH_SANITIZE=1 \
	LD_PRELOAD="$$($(CC) -print-file-name=libasan.so) $$($(CC) -print-file-name=libubsan.so)" \
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=0 \
	LSAN_OPTIONS=suppressions=$(CURDIR)/tools/lsan.supp:print_suppressions=0 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	$(BUSTED) $(BUSTED_ARGS)

# libFuzzer targets (csrc/fuzz/fuzz_*.c) link csrc/core only; tools/fuzz.sh
# runs each for FUZZ_RUNS inputs (at most FUZZ_TIME s) from the seeds that
# build/fuzz/mkseeds writes.  docs/SECURITY.md, "Fuzzing".
FUZZ_CC      ?= clang-14
FUZZ_RUNS    ?= 100000
FUZZ_TIME    ?= 600
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_CFLAGS  := -std=gnu11 $(WARN) -g -O1 $(FUZZ_SAN) -Icsrc/core -Icsrc/fuzz
FUZZ_SRC     := csrc/fuzz/ctlmsg.c
FUZZ_HDRS    := $(wildcard csrc/fuzz/*.h)
FUZZ_TARGETS := $(patsubst csrc/fuzz/fuzz_%.c,build/fuzz/fuzz_%,$(wildcard csrc/fuzz/fuzz_*.c))
FUZZ_OBJS    := $(patsubst csrc/%.c,build/fuzz/obj/%.o,$(PURE_SRC) $(FUZZ_SRC))

# The code under test is compiled once, instrumented for coverage.
build/fuzz/obj/%.o: csrc/%.c $(HDRS) $(FUZZ_HDRS)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

build/fuzz/fuzz_%: csrc/fuzz/fuzz_%.c $(FUZZ_OBJS) $(FUZZ_HDRS) $(HDRS)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_OBJS) $(NETTLE_LIBS) -lm

build/fuzz/mkseeds: csrc/fuzz/mkseeds.c $(PURE_SRC) $(HDRS) $(TEST_HDRS)
	@mkdir -p $(@D)
	$(CC) -std=gnu11 $(WARN) -O1 -g -Icsrc/core -Icsrc/test -o $@ $< $(PURE_SRC) $(NETTLE_LIBS) -lm

# The C port of the control-message decoder, for spec/fuzz_spec.lua's
# comparison with msg.decode.
build/test/ctlmsg_dump: csrc/fuzz/ctlmsg_dump.c $(FUZZ_SRC) $(FUZZ_HDRS)
	@mkdir -p $(@D)
	$(CC) -std=gnu11 $(WARN) -O1 -g -Icsrc/fuzz -o $@ $< $(FUZZ_SRC)

build-san/test/ctlmsg_dump: csrc/fuzz/ctlmsg_dump.c $(FUZZ_SRC) $(FUZZ_HDRS)
	@mkdir -p $(@D)
	$(CC) -std=gnu11 $(WARN) -O1 -g $(SAN) -Icsrc/fuzz -o $@ $< $(FUZZ_SRC)

fuzz: deps-fuzz
	@$(MAKE) --no-print-directory $(FUZZ_TARGETS) build/fuzz/mkseeds
	sh tools/fuzz.sh $(FUZZ_RUNS) $(FUZZ_TIME) $(FUZZ_ONLY)

.PRECIOUS: build/fuzz/obj/%.o

# In the NAT lab when it can run (root, namespaces, nftables); otherwise the
# lab demo says why (exit 77) and the loopback demo runs instead.
demo: deps-demo all
	@$(LUA) examples/lab_demo.lua; rc=$$?; \
	if [ $$rc = 77 ]; then echo "demo: falling back to loopback"; $(LUA) examples/demo.lua; \
	else exit $$rc; fi

# bench/README.md: STUN throughput against a raw C baseline, natpunch, coturn
BENCH := build/bench/loadgen build/bench/stun_raw build/bench/udp_blast

bench: deps-bench all $(BENCH)
	$(LUA) bench/run.lua $(BENCH_ARGS)

# docs/BENCH.md and docs/bench/*.svg from one recorded run
bench-docs: deps all $(BENCH)
	$(LUA) bench/run.lua --record build/bench/run.json $(BENCH_ARGS)
	$(LUA) bench/report.lua build/bench/run.json docs

# docs/TRAVERSAL.md's table of the hard cases (symmetric NATs: predict,
# birthday, relay through coturn) from `natpunch lab matrix --hard`, as
# root.  The table is written even when a case failed (then make fails).
TRAVERSAL_RUNS ?= 50
traversal-docs: deps-test all
	@mkdir -p build
	$(LUA) bin/natpunch lab matrix --hard --repeat $(TRAVERSAL_RUNS) --markdown > build/traversal-hard.md; \
	rc=$$?; $(LUA) tools/splice_doc.lua docs/TRAVERSAL.md hard_matrix < build/traversal-hard.md && exit $$rc

build/bench/%: bench/%.c bench/ipv4_port.h $(PURE_SRC) $(HDRS)
	@mkdir -p $(@D)
	$(CC) -std=gnu11 $(WARN) $(CFLAGS) -Icsrc/core -o $@ $< $(PURE_SRC) $(NETTLE_LIBS) -lm

# One object per C file, for tools/cycles.lua (no cycle of references
# between C files; the core never uses the binding).
LINT_OBJ := $(patsubst csrc/%.c,build/lint/%.o,$(PURE_SRC) $(BIND_SRC))

build/lint/%.o: csrc/%.c $(HDRS)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(LUA_CFLAGS) $(UV_CFLAGS) -c -o $@ $<

lint: $(LINT_OBJ)
	luacheck lua bin/natpunch examples spec bench tools/docscov.lua tools/gen_docs.lua tools/splice_doc.lua
	$(LUA) tools/cycles.lua $(LINT_OBJ)
	$(LUA) tools/cstyle.lua
	$(LUA) tools/docscov.lua
	$(LUA) tools/gen_docs.lua --check

clean:
	rm -rf build build-san
