#!/bin/sh
# tools/deps.sh [TARGET...]: the Debian packages a make target needs.
# Installs the missing ones when run as root; otherwise lists them and
# fails (only for packages a non-root user cannot do without).  Each
# package is checked by command or file, so a machine that already has
# them does not touch apt.
#
# Targets: build (always included), demo, test, bench, fuzz, rock, all.
# `make demo` runs `tools/deps.sh demo`, `make test` `tools/deps.sh test`
# (everything the full spec suite needs: CI starts from a clean machine),
# `make bench` `tools/deps.sh bench`, and so on.
# DEPS_DRY_RUN=1 only says what it would install (for specs).
#
# To add a dependency, add a `need PACKAGE CHECK...` line under the
# `target` line of every target that needs it (a package may appear under
# several targets; it is installed once).  `target NAME optional` marks
# packages a user without root can do without (the target then runs
# without them, e.g. the demo falls back to loopback without the lab).
set -u

wanted=" build $* "
case "$wanted" in *" all "*) wanted=" build demo test bench fuzz rock " ;; esac
for t in $wanted; do
  case $t in build|demo|test|bench|fuzz|rock) ;;
    *) echo "deps: unknown target '$t' (build, demo, test, bench, fuzz, rock, all)" >&2; exit 2 ;;
  esac
done

missing=""        # packages to install
optional=""       # of those, the ones a non-root user can do without
section="" section_optional=""
target() {  # target NAME [optional]
  section=$1
  section_optional=${2:-}
}
need() {    # need PACKAGE CHECK...
  pkg=$1; shift
  case "$wanted" in *" $section "*) ;; *) return 0 ;; esac
  case " $missing " in *" $pkg "*)
    # needed by a target that cannot do without it: no longer optional
    if [ -z "$section_optional" ]; then
      optional=$(echo " $optional " | sed "s/ $pkg / /")
    fi
    return 0 ;;
  esac
  if ! "$@" >/dev/null 2>&1; then
    missing="$missing $pkg"
    if [ -n "$section_optional" ]; then optional="$optional $pkg"; fi
  fi
}
have() { command -v "$1"; }

target build          # build/natpunch/core.so, readline.so, natpunch-wire
need make          have make
need gcc           have gcc
need libc6-dev     test -f /usr/include/stdio.h
need pkg-config    have pkg-config
need lua5.4        have lua5.4
need liblua5.4-dev test -f /usr/include/lua5.4/lua.h
need libuv1-dev    test -f /usr/include/uv.h
need libsodium-dev test -f /usr/include/sodium.h
need libhiredis-dev test -f /usr/include/hiredis/adapters/libuv.h
need nettle-dev    test -f /usr/include/nettle/sha1.h
need libreadline-dev test -f /usr/include/readline/readline.h

target demo optional  # the lab demo (root); without these it runs on loopback
need iproute2      have ip
need nftables      have nft
need conntrack     have conntrack
need procps        have pgrep

target test           # make test: every spec, the lab, traversal and interop specs included
need lua-busted    test -x /usr/bin/busted
need lua-check     have luacheck
need luarocks      have luarocks
need iproute2      have ip
need nftables      have nft
need iputils-ping  have ping
need conntrack     have conntrack
need procps        have pgrep
need util-linux    have setpriv
need lua-socket    lua5.4 -e 'require "socket"'
need tmux          have tmux
need clang-format-14 have clang-format-14      # make lint / spec/cdeps_spec.lua: tools/cstyle.lua
need redis-server  have redis-server
need stun-client   have stun                    # interop: spec/discover_spec.lua
need coturn        have turnutils_stunclient    # interop: spec/discover_spec.lua

target bench          # make bench: coturn is the comparison server
need coturn        have turnutils_stunclient
need stun-client   have stun
need procps        have pgrep
need util-linux    have taskset
need redis-server  have redis-server

target fuzz           # make fuzz (libFuzzer, ASan+UBSan): clang and its fuzzer runtime
need clang-14      have clang-14
need libclang-rt-14-dev sh -c 'ls /usr/lib/llvm-14/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a'

target rock           # luarocks make rockspec/natpunch-scm-1.rockspec
need luarocks      have luarocks

if [ -z "$missing" ]; then
  echo "deps:$wanted: all present" | tr -s ' '
  exit 0
fi
if [ "$(id -u)" = 0 ] && [ "${DEPS_DRY_RUN:-}" = 1 ]; then
  echo "deps: would install:$missing"
  exit 0
elif [ "$(id -u)" = 0 ]; then
  echo "deps: installing:$missing"
  export DEBIAN_FRONTEND=noninteractive
  tries=0
  # apt may be locked by another apt run: retry for a while
  until apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing >/dev/null; do
    tries=$((tries + 1))
    if [ $tries -ge 5 ]; then echo "deps: apt-get failed for:$missing" >&2; exit 1; fi
    sleep 5
  done
  echo "deps: installed"
else
  required=""
  for p in $missing; do
    case " $optional " in *" $p "*) ;; *) required="$required $p" ;; esac
  done
  if [ -z "$required" ]; then
    echo "deps: not installed (needs root, not required):$optional" >&2
    exit 0
  fi
  echo "deps: missing Debian packages:$missing" >&2
  echo "deps: run 'sudo make deps' or: sudo apt-get install$missing" >&2
  exit 1
fi
