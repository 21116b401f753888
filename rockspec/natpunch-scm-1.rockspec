-- natpunch as a rock.  From a checkout:
--
--   luarocks --lua-version=5.4 make rockspec/natpunch-scm-1.rockspec \
--     CFLAGS="-O2 -fPIC -fvisibility=hidden -std=gnu11 -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter"
--
-- `luarocks make` builds from the current directory; source.url is only
-- read by `luarocks install`/`pack`, and natpunch has no published
-- repository yet.  The builtin build type takes its compiler flags from
-- luarocks' own variables, not from this file (build.variables is used only
-- by the "make" type), hence CFLAGS on the command line above; without it
-- the module builds with luarocks' default "-O2 -fPIC" (gcc's default
-- dialect, gnu17, accepts the sources too), and then exports every
-- function instead of luaopen_natpunch_core alone (-fvisibility=hidden).
--
-- The lists below must name every csrc/core/*.c and csrc/lua/*.c (not csrc/test/ nor
-- csrc/labwire/) and every lua/natpunch/**.lua, and install every
-- csrc/labwire/*.[ch]: spec/rockspec_spec.lua checks that, and prints the
-- missing lines.
rockspec_format = "3.0"
package = "natpunch"
version = "scm-1"

source = {
  url = "git+file:///natpunch",   -- placeholder, see above
}

description = {
  summary = "NAT traversal engine: rendezvous, UDP hole punching and reliable touch on libuv",
  detailed = [[
natpunch lets two peers behind NATs find each other through a rendezvous
server and talk over a direct UDP path.  A C core on libuv (sockets, timers,
STUN codec, punching and reliable "touch" messages) is scripted from Lua 5.4
with coroutine tasks.  Includes the `natpunch` command (rendezvous, peer,
shell, lab).
]],
  license = "MIT",
}

dependencies = {
  "lua >= 5.4, < 5.5",
}

external_dependencies = {
  LIBUV = { header = "uv.h", library = "uv" },
  HIREDIS = { header = "hiredis/adapters/libuv.h", library = "hiredis" },
  LIBSODIUM = { header = "sodium.h", library = "sodium" },
  NETTLE = { header = "nettle/sha1.h", library = "nettle" },
  READLINE = { header = "readline/readline.h", library = "readline" },
}

-- `luarocks test` runs the busted specs (and the C unit tests) through the
-- Makefile: busted is Debian's lua-busted, run under lua5.4, not a rock.
test = {
  type = "command",
  command = "make test",
}

build = {
  type = "builtin",
  modules = {
    ["natpunch.core"] = {
      sources = {
        "csrc/core/addr.c",
        "csrc/core/crc32.c",
        "csrc/core/hash.c",
        "csrc/lua/np_core.c",
        "csrc/lua/np_dns.c",
        "csrc/lua/np_signal.c",
        "csrc/lua/np_crypto.c",
        "csrc/lua/np_inet.c",
        "csrc/lua/np_module.c",
        "csrc/lua/np_redis.c",
        "csrc/lua/np_stdio.c",
        "csrc/lua/np_stun.c",
        "csrc/lua/np_tcp.c",
        "csrc/lua/np_tcp_punch.c",
        "csrc/lua/np_timer.c",
        "csrc/lua/np_udp.c",
        "csrc/lua/np_udp_batch.c",
        "csrc/lua/np_udp_path.c",
        "csrc/lua/np_udp_recv.c",
        "csrc/lua/np_udp_relay.c",
        "csrc/lua/np_udp_punch.c",
        "csrc/lua/np_udp_touch.c",
        "csrc/core/punch.c",
        "csrc/core/stun.c",
        "csrc/core/stun_write.c",
        "csrc/core/touch.c",
        "csrc/core/turn.c",
        "csrc/core/wipe.c",
      },
      incdirs = { "csrc/core", "csrc/lua", "$(LIBUV_INCDIR)", "$(HIREDIS_INCDIR)", "$(LIBSODIUM_INCDIR)",
        "$(NETTLE_INCDIR)" },
      libdirs = { "$(LIBUV_LIBDIR)", "$(HIREDIS_LIBDIR)", "$(LIBSODIUM_LIBDIR)", "$(NETTLE_LIBDIR)" },
      libraries = { "uv", "hiredis", "sodium", "nettle" },
    },
    -- the shell's line editing (GNU readline's callback interface)
    ["natpunch.readline"] = {
      sources = { "csrc/readline/np_readline.c" },
      incdirs = { "$(READLINE_INCDIR)" },
      libdirs = { "$(READLINE_LIBDIR)" },
      libraries = { "readline" },
    },
    ["natpunch"] = "lua/natpunch/init.lua",
    ["natpunch.addr"] = "lua/natpunch/addr.lua",
    ["natpunch.auth"] = "lua/natpunch/auth.lua",
    ["natpunch.candidates"] = "lua/natpunch/candidates.lua",
    ["natpunch.interfaces"] = "lua/natpunch/interfaces.lua",
    ["natpunch.checkout"] = "lua/natpunch/checkout.lua",
    ["natpunch.dns"] = "lua/natpunch/dns.lua",
    ["natpunch.cli"] = "lua/natpunch/cli/init.lua",
    ["natpunch.cli.check"] = "lua/natpunch/cli/check.lua",
    ["natpunch.cli.keepalive"] = "lua/natpunch/cli/keepalive.lua",
    ["natpunch.cli.keepalive_daemon"] = "lua/natpunch/cli/keepalive_daemon.lua",
    ["natpunch.cli.lab"] = "lua/natpunch/cli/lab.lua",
    ["natpunch.cli.nat_type"] = "lua/natpunch/cli/nat_type.lua",
    ["natpunch.cli.peer"] = "lua/natpunch/cli/peer.lua",
    ["natpunch.cli.peer_stdio"] = "lua/natpunch/cli/peer_stdio.lua",
    ["natpunch.cli.records"] = "lua/natpunch/cli/records.lua",
    ["natpunch.cli.rendezvous"] = "lua/natpunch/cli/rendezvous.lua",
    ["natpunch.cli.shell"] = "lua/natpunch/cli/shell.lua",
    ["natpunch.cli.stun_server"] = "lua/natpunch/cli/stun_server.lua",
    ["natpunch.discover"] = "lua/natpunch/discover.lua",
    ["natpunch.json"] = "lua/natpunch/json.lua",
    ["natpunch.keepalive"] = "lua/natpunch/keepalive.lua",
    ["natpunch.lab"] = "lua/natpunch/lab.lua",
    ["natpunch.lab.coturn"] = "lua/natpunch/lab/coturn.lua",
    ["natpunch.lab.discovery"] = "lua/natpunch/lab/discovery.lua",
    ["natpunch.lab.impair"] = "lua/natpunch/lab/impair.lua",
    ["natpunch.lab.ip4"] = "lua/natpunch/lab/ip4.lua",
    ["natpunch.lab.build"] = "lua/natpunch/lab/build.lua",
    ["natpunch.lab.cleanup"] = "lua/natpunch/lab/cleanup.lua",
    ["natpunch.lab.matrix"] = "lua/natpunch/lab/matrix.lua",
    ["natpunch.lab.matrix.cases"] = "lua/natpunch/lab/matrix/cases.lua",
    ["natpunch.lab.matrix.report"] = "lua/natpunch/lab/matrix/report.lua",
    ["natpunch.lab.matrix.runner"] = "lua/natpunch/lab/matrix/runner.lua",
    ["natpunch.lab.matrix.util"] = "lua/natpunch/lab/matrix/util.lua",
    ["natpunch.lab.matrix.kinds.fallback"] = "lua/natpunch/lab/matrix/kinds/fallback.lua",
    ["natpunch.lab.matrix.kinds.failover"] = "lua/natpunch/lab/matrix/kinds/failover.lua",
    ["natpunch.lab.matrix.kinds.iface"] = "lua/natpunch/lab/matrix/kinds/iface.lua",
    ["natpunch.lab.matrix.kinds.relay6"] = "lua/natpunch/lab/matrix/kinds/relay6.lua",
    ["natpunch.lab.matrix.kinds.upgrade"] = "lua/natpunch/lab/matrix/kinds/upgrade.lua",
    ["natpunch.lab.nat_types"] = "lua/natpunch/lab/nat_types.lua",
    ["natpunch.lab.nft"] = "lua/natpunch/lab/nft.lua",
    ["natpunch.lab.plan"] = "lua/natpunch/lab/plan.lua",
    ["natpunch.lab.probe"] = "lua/natpunch/lab/probe.lua",
    ["natpunch.lab.proc"] = "lua/natpunch/lab/proc.lua",
    ["natpunch.lab.state"] = "lua/natpunch/lab/state.lua",
    ["natpunch.metrics"] = "lua/natpunch/metrics.lua",
    ["natpunch.method"] = "lua/natpunch/method/init.lua",
    ["natpunch.method.birthday"] = "lua/natpunch/method/birthday.lua",
    ["natpunch.method.predict"] = "lua/natpunch/method/predict.lua",
    ["natpunch.method.choose"] = "lua/natpunch/method/choose.lua",
    ["natpunch.method.relay"] = "lua/natpunch/method/relay.lua",
    ["natpunch.method.tcp"] = "lua/natpunch/method/tcp.lua",
    ["natpunch.method.udp"] = "lua/natpunch/method/udp.lua",
    ["natpunch.msg"] = "lua/natpunch/msg.lua",
    ["natpunch.options"] = "lua/natpunch/options.lua",
    ["natpunch.peer"] = "lua/natpunch/peer.lua",
    ["natpunch.registry"] = "lua/natpunch/registry.lua",
    ["natpunch.registry_redis"] = "lua/natpunch/registry_redis.lua",
    ["natpunch.rendezvous"] = "lua/natpunch/rendezvous.lua",
    ["natpunch.sched"] = "lua/natpunch/sched.lua",
    ["natpunch.servers"] = "lua/natpunch/servers.lua",
    ["natpunch.stream"] = "lua/natpunch/stream.lua",
    ["natpunch.stunt"] = "lua/natpunch/stunt.lua",
    ["natpunch.stunt_proto"] = "lua/natpunch/stunt_proto.lua",
    ["natpunch.stunt_server"] = "lua/natpunch/stunt_server.lua",
    ["natpunch.tcp_session"] = "lua/natpunch/tcp_session.lua",
    ["natpunch.stunserver"] = "lua/natpunch/stunserver.lua",
    ["natpunch.turn"] = "lua/natpunch/turn.lua",
    ["natpunch.upgrade"] = "lua/natpunch/upgrade.lua",
    ["natpunch.fallback"] = "lua/natpunch/fallback.lua",
  },
  install = {
    bin = { natpunch = "bin/natpunch" },
    -- natpunch-wire's sources, next to the modules (natpunch/labwire/*.c):
    -- the installed lab builds it from there (lab.wire_src_dir)
    lua = {
      ["natpunch.labwire.engine"] = "csrc/labwire/engine.c",
      ["natpunch.labwire.main"] = "csrc/labwire/main.c",
      ["natpunch.labwire.opts"] = "csrc/labwire/opts.c",
      ["natpunch.labwire.rng"] = "csrc/labwire/rng.c",
      ["natpunch.labwire.sim"] = "csrc/labwire/sim.c",
      ["natpunch.labwire.tap"] = "csrc/labwire/tap.c",
      ["natpunch.labwire.wire"] = "csrc/labwire/wire.h",
    },
  },
}
