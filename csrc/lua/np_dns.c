/*
 * np_dns.c - host name resolution on the loop (libuv's thread pool runs
 * getaddrinfo, so the loop never blocks):
 *   core.getaddrinfo(host, [family], cb)  -> true, or nil, message, code
 *     family: "inet", "inet6" or nil (both); cb(err, list) with
 *     list = { "203.0.113.7", "2001:db8::7", ... } (unique, in the
 *     resolver's order) or err = "ENOTFOUND: ..." and list = nil.
 * The callback is called once, from the loop.  If the Lua state closes
 * first, the request completes in the pool and is freed without a call.
 */
#include <stdlib.h>
#include <string.h>
#include "natpunch.h"

#define NP_DNS_MAX_RESULTS 16

typedef struct np_dns_req {
  uv_getaddrinfo_t req;
  np_ctx *ctx;
  int cb_ref;
} np_dns_req;

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  np_dns_req *r = (np_dns_req *)req;
  np_ctx *ctx = r->ctx;
  lua_State *L = np_cb_push(ctx, r->cb_ref);
  if (L) {
    if (status < 0) {
      lua_pushfstring(L, "%s: %s", uv_err_name(status), uv_strerror(status));
      lua_pushnil(L);
    } else {
      lua_pushnil(L);
      lua_newtable(L);
      int n = 0;
      for (struct addrinfo *ai = res; ai && n < NP_DNS_MAX_RESULTS; ai = ai->ai_next) {
        char ip[64];
        if (ai->ai_family == AF_INET)
          uv_ip4_name((struct sockaddr_in *)ai->ai_addr, ip, sizeof ip);
        else if (ai->ai_family == AF_INET6)
          uv_ip6_name((struct sockaddr_in6 *)ai->ai_addr, ip, sizeof ip);
        else
          continue;
        int dup = 0; /* getaddrinfo lists an address once per socket type */
        for (int i = 1; i <= n && !dup; i++) {
          lua_rawgeti(L, -1, i);
          dup = strcmp(lua_tostring(L, -1), ip) == 0;
          lua_pop(L, 1);
        }
        if (dup) continue;
        lua_pushstring(L, ip);
        lua_rawseti(L, -2, ++n);
      }
    }
    np_call(ctx, 2);
  }
  uv_freeaddrinfo(res);
  np_unref(ctx->closing ? NULL : ctx->L, &r->cb_ref);
  free(r);
}

static int dns_getaddrinfo(lua_State *L) {
  np_ctx *ctx = np_ctx_get(L);
  const char *host = luaL_checkstring(L, 1);
  static const char *const families[] = {"inet", "inet6", NULL};
  int fam = AF_UNSPEC;
  if (!lua_isnoneornil(L, 2))
    fam = luaL_checkoption(L, 2, NULL, families) == 0 ? AF_INET : AF_INET6;
  luaL_checktype(L, 3, LUA_TFUNCTION);
  luaL_argcheck(L, strlen(host) > 0 && strlen(host) <= 253, 1,
                "host name of 1 to 253 characters expected");
  np_dns_req *r = calloc(1, sizeof *r);
  if (!r) return luaL_error(L, "out of memory");
  r->ctx = ctx;
  r->cb_ref = LUA_NOREF;
  struct addrinfo hints;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = fam;
  hints.ai_socktype = SOCK_DGRAM;
  hints.ai_flags = AI_ADDRCONFIG;
  np_setref(L, &r->cb_ref, 3);
  int rc = uv_getaddrinfo(&ctx->loop, &r->req, on_resolved, host, NULL, &hints);
  if (rc < 0) {
    np_unref(L, &r->cb_ref);
    free(r);
    return np_push_error(L, rc);
  }
  lua_pushboolean(L, 1);
  return 1;
}

int np_dns_open(lua_State *L) {
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushcclosure(L, dns_getaddrinfo, 1);
  lua_setfield(L, 1, "getaddrinfo");
  return 0;
}
