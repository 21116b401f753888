/*
 * np_inet.c - strict address text parsing for candidates (inet_pton(3)):
 *
 *   family, bytes = core.inet_pton(text)   "inet" + 4 bytes or "inet6" + 16
 *                                          bytes; nil, message when text is
 *                                          not exactly one address
 *   text = core.inet_ntop(bytes)           canonical text of 4 or 16 bytes
 *
 * The Lua patterns of addr.lua accept "1.2.3.4.5" or "999.1.1.1"; what goes
 * on the wire or into the punch engine is checked here first.
 */
#include <string.h>
#include <arpa/inet.h>
#include "natpunch.h"

static int c_pton(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  uint8_t out[16];
  char buf[INET6_ADDRSTRLEN];
  if (n == 0 || n >= sizeof buf || memchr(s, '\0', n))
    return np_push_fail(L, "EINVAL", "not an IP address");
  memcpy(buf, s, n);
  buf[n] = '\0';
  if (inet_pton(AF_INET, buf, out) == 1) {
    lua_pushliteral(L, "inet");
    lua_pushlstring(L, (const char *)out, 4);
    return 2;
  }
  if (inet_pton(AF_INET6, buf, out) == 1) {
    lua_pushliteral(L, "inet6");
    lua_pushlstring(L, (const char *)out, 16);
    return 2;
  }
  return np_push_fail(L, "EINVAL", "not an IP address");
}

static int c_ntop(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  luaL_argcheck(L, n == 4 || n == 16, 1, "4 or 16 bytes expected");
  char buf[INET6_ADDRSTRLEN];
  if (!inet_ntop(n == 4 ? AF_INET : AF_INET6, s, buf, sizeof buf))
    return np_push_fail(L, "EINVAL", "bad address");
  lua_pushstring(L, buf);
  return 1;
}

/* Registers inet_pton/inet_ntop into the module table (argument 1). */
int np_inet_open(lua_State *L) {
  lua_pushcfunction(L, c_pton);
  lua_setfield(L, 1, "inet_pton");
  lua_pushcfunction(L, c_ntop);
  lua_setfield(L, 1, "inet_ntop");
  return 0;
}
