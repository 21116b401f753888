/*
 * np_module.c - the registration of the natpunch.core module: the one
 * file that names every part, and the table of UDP engines (np_udp.h).
 * Nothing calls into this file but Lua (require), so it is in no cycle of
 * references between C files (tools/cycles.lua).
 */
#include "natpunch.h"
#include "np_udp.h"

/* The engines of the UDP socket: a new one is a new file and one row. */
extern const np_udp_engine np_udp_touch_engine; /* np_udp_touch.c */
extern const np_udp_engine np_udp_punch_engine; /* np_udp_punch.c */
extern const np_udp_engine np_udp_batch_engine; /* np_udp_batch.c */
extern const np_udp_engine np_udp_relay_engine; /* np_udp_relay.c */
extern const np_udp_engine np_udp_path_engine;  /* np_udp_path.c */

static const np_udp_engine *const udp_engines[] = {
    &np_udp_touch_engine,
    &np_udp_punch_engine,
    &np_udp_batch_engine,
    /* before relay: a peer's path wins over its TURN channel */
    &np_udp_path_engine,
    &np_udp_relay_engine,
    NULL,
};

NP_EXPORT int luaopen_natpunch_core(lua_State *L) {
  np_core_open(L); /* ctx, module table */
  /* each part registers its classes and constructors into the module
   * table; run as closures so they see ctx as upvalue 1 too */
  static const struct {
    lua_CFunction open;
    const void *arg; /* upvalue 2 when not NULL */
  } parts[] = {
      {np_timer_open, NULL},     {np_udp_open, udp_engines}, {np_tcp_open, NULL},
      {np_tcp_punch_open, NULL}, {np_stdio_open, NULL},      {np_dns_open, NULL},
      {np_signal_open, NULL},    {np_redis_open, NULL},      {np_inet_open, NULL},
  };
  for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
    lua_pushvalue(L, -2);
    if (parts[i].arg) lua_pushlightuserdata(L, (void *)parts[i].arg);
    lua_pushcclosure(L, parts[i].open, parts[i].arg ? 2 : 1);
    lua_pushvalue(L, -2);
    lua_call(L, 1, 0);
  }
  lua_pushvalue(L, -2);
  lua_pushcclosure(L, np_stun_open, 1);
  lua_call(L, 0, 1);
  lua_setfield(L, -2, "stun");
  lua_pushcfunction(L, np_crypto_open);
  lua_call(L, 0, 1);
  lua_setfield(L, -2, "crypto");
  return 1;
}
