#!/bin/sh
# Installs the Debian packages natpunch needs when run as root; otherwise
# lists what is missing and fails.  Checked by command or file, so a machine
# that already has them does not touch apt.
set -u
missing=""
need() {  # need PACKAGE TEST...
  pkg=$1; shift
  if ! "$@" >/dev/null 2>&1; then missing="$missing $pkg"; fi
}
have() { command -v "$1"; }
need make          have make
need gcc           have gcc
need pkg-config    have pkg-config
need lua5.4        have lua5.4
need liblua5.4-dev test -f /usr/include/lua5.4/lua.h
need libuv1-dev    test -f /usr/include/uv.h
need libsodium-dev test -f /usr/include/sodium.h
need libhiredis-dev test -f /usr/include/hiredis/adapters/libuv.h
need nettle-dev    test -f /usr/include/nettle/sha1.h
need redis-server  have redis-server
need lua-busted    test -x /usr/bin/busted
need luarocks      have luarocks
need lua-check     have luacheck
need iproute2      have ip
need nftables      have nft
need iputils-ping  have ping
need conntrack     have conntrack
need procps        have pgrep
need util-linux    have setpriv
# spec/discover_spec.lua runs stun (stun-client), and turnserver and
# turnutils_natdiscovery (coturn) as reference tools
need stun-client   have stun
need coturn        have turnutils_stunclient
# make fuzz (libFuzzer, ASan+UBSan): clang and its fuzzer runtime
need clang-14      have clang-14
# make lint / spec/cdeps_spec.lua: tools/cstyle.lua
need clang-format-14 have clang-format-14
need libclang-rt-14-dev sh -c 'ls /usr/lib/llvm-14/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a'
if [ -z "$missing" ]; then
  echo "deps: all present"
  exit 0
fi
if [ "$(id -u)" = 0 ]; then
  echo "deps: installing:$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing >/dev/null || {
    echo "deps: apt-get failed for:$missing" >&2; exit 1; }
  echo "deps: installed"
else
  echo "deps: missing Debian packages:$missing" >&2
  echo "deps: run 'sudo make deps' or: sudo apt-get install$missing" >&2
  exit 1
fi
