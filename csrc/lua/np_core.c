/*
 * np_core.c - the heart of the natpunch.core module: one libuv loop per
 * lua_State, error conventions, callback dispatch, handles and the loop
 * functions.  The module's registration is np_module.c.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "natpunch.h"
#include "addr.h"

#define NP_CTX_MT "natpunch.ctx"

np_ctx *np_ctx_get(lua_State *L) {
  return (np_ctx *)lua_touserdata(L, lua_upvalueindex(1));
}

/* luv's convention: nil, "ENAME: message", "ENAME" */
int np_push_error(lua_State *L, int uverr) {
  lua_pushnil(L);
  lua_pushfstring(L, "%s: %s", uv_err_name(uverr), uv_strerror(uverr));
  lua_pushstring(L, uv_err_name(uverr));
  return 3;
}

int np_push_fail(lua_State *L, const char *code, const char *msg) {
  lua_pushnil(L);
  lua_pushfstring(L, "%s: %s", code, msg);
  lua_pushstring(L, code);
  return 3;
}

void np_push_cb_error(lua_State *L, const char *code, const char *msg) {
  lua_pushfstring(L, "%s: %s", code, msg);
}

void np_push_cb_status(lua_State *L, int uverr) {
  if (uverr < 0)
    np_push_cb_error(L, uv_err_name(uverr), uv_strerror(uverr));
  else
    lua_pushnil(L);
}

void np_unref(lua_State *L, int *ref) {
  if (*ref != LUA_NOREF && *ref != LUA_REFNIL && L) luaL_unref(L, LUA_REGISTRYINDEX, *ref);
  *ref = LUA_NOREF;
}

void np_setref(lua_State *L, int *ref, int idx) {
  lua_pushvalue(L, idx);
  np_unref(L, ref);
  *ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

void np_pin(lua_State *L, np_handle *h, int idx) {
  if (h->self_ref == LUA_NOREF) {
    lua_pushvalue(L, idx);
    h->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
}

void np_unpin(np_handle *h) {
  np_unref(h->ctx->L, &h->self_ref);
}

uint64_t np_now_ms(np_ctx *ctx) {
  return uv_now(&ctx->loop);
}

lua_State *np_cb_push(np_ctx *ctx, int ref) {
  lua_State *L = ctx->L;
  if (!L || ctx->closing || ref == LUA_NOREF || ref == LUA_REFNIL) return NULL;
  lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
  return L;
}

static void report_error(np_ctx *ctx, lua_State *L) {
  ctx->callback_errors++;
  /* lua.c turns SIGINT into an "interrupted!" error in whatever Lua code
   * runs next, here a callback: stop the loop and raise it from core.run,
   * so a script stops on Ctrl-C as it would outside the loop. */
  const char *m = lua_tostring(L, -1);
  if (m && strncmp(m, "interrupted!", 12) == 0) {
    ctx->interrupted = 1;
    uv_stop(&ctx->loop);
    lua_pop(L, 1);
    return;
  }
  if (ctx->on_error_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, ctx->on_error_ref);
    lua_insert(L, -2);
    if (lua_pcall(L, 1, 0, 0) == LUA_OK) return;
  }
  const char *msg = lua_tostring(L, -1);
  fprintf(stderr, "natpunch: error in callback: %s\n",
          msg ? msg : "(error object is not a string)");
  lua_pop(L, 1);
}

/* Message handler of callbacks: add a traceback to string errors. */
static int np_msgh(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL && !lua_isnoneornil(L, 1)) return 1; /* keep error objects */
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/* Stack: fn, arg1..argn.  Runs under a protected call with a traceback. */
void np_call(np_ctx *ctx, int nargs) {
  lua_State *L = ctx->L;
  int base = lua_gettop(L) - nargs; /* index of fn */
  lua_rawgeti(L, LUA_REGISTRYINDEX, ctx->traceback_ref);
  lua_insert(L, base);
  if (lua_pcall(L, nargs, 0, base) != LUA_OK) report_error(ctx, L);
  lua_remove(L, base);
}

/* ---------------------------------------------------------------- handles */

static void on_handle_closed(uv_handle_t *uvh) {
  np_handle *h = (np_handle *)uvh;
  np_ctx *ctx = h->ctx;
  lua_State *L = ctx->closing ? NULL : ctx->L;
  if (L && h->close_cb_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->close_cb_ref);
    np_call(ctx, 0);
  }
  if (h->free_fn) h->free_fn(h);
  if (L) {
    np_unref(L, &h->close_cb_ref);
    np_unref(L, &h->self_ref);
  }
  free(h);
}

np_handle *np_handle_new(lua_State *L, size_t size, const char *mt) {
  /* userdata first: if it raises (out of memory) nothing is leaked */
  void **ud = lua_newuserdatauv(L, sizeof(void *), 1);
  *ud = NULL;
  np_handle *h = calloc(1, size);
  if (!h) luaL_error(L, "out of memory");
  *ud = h;
  h->u.handle.data = h; /* marks a natpunch handle for walk_close (set again after init) */
  h->ctx = np_ctx_get(L);
  h->ud = ud;
  h->self_ref = LUA_NOREF;
  h->close_cb_ref = LUA_NOREF;
  luaL_setmetatable(L, mt);
  return h;
}

np_handle *np_handle_test(lua_State *L, int idx, const char *mt) {
  void **ud = luaL_checkudata(L, idx, mt);
  return (np_handle *)*ud;
}

np_handle *np_handle_check(lua_State *L, int idx, const char *mt) {
  np_handle *h = np_handle_test(L, idx, mt);
  if (!h) luaL_error(L, "attempt to use a closed %s", mt);
  return h;
}

void np_handle_close(np_handle *h) {
  if (!h || uv_is_closing(&h->u.handle)) return;
  if (h->ud) *h->ud = NULL;
  h->ud = NULL;
  uv_close(&h->u.handle, on_handle_closed);
}

/* Shared by __gc and __close: closing twice or after close is harmless. */
int np_handle_gc(lua_State *L) {
  void **ud = lua_touserdata(L, 1);
  if (ud && *ud) {
    np_handle *h = *ud;
    /* __close with an error object passes it as arg 2: still just close. */
    np_handle_close(h);
  }
  return 0;
}

static int np_tostring(lua_State *L) {
  void **ud = lua_touserdata(L, 1);
  luaL_getmetafield(L, 1, "__name");
  const char *name = lua_tostring(L, -1);
  if (ud && *ud)
    lua_pushfstring(L, "%s: %p", name ? name : "natpunch", *ud);
  else
    lua_pushfstring(L, "%s: closed", name ? name : "natpunch");
  return 1;
}

void np_class(lua_State *L, const char *name, const luaL_Reg *methods) {
  luaL_newmetatable(L, name);
  lua_pushvalue(L, lua_upvalueindex(1));
  luaL_setfuncs(L, methods, 1);
  lua_pushvalue(L, -1);
  lua_setfield(L, -2, "__index");
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushcclosure(L, np_handle_gc, 1);
  lua_setfield(L, -2, "__gc");
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushcclosure(L, np_handle_gc, 1);
  lua_setfield(L, -2, "__close");
  lua_pushcfunction(L, np_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
}

/* -------------------------------------------------------------- addresses */

/* Both through addr.c, the core's one address converter. */
int np_parse_addr(lua_State *L, int host_idx, int port_idx, struct sockaddr_storage *ss) {
  const char *host = luaL_checkstring(L, host_idx);
  lua_Integer port = luaL_checkinteger(L, port_idx);
  luaL_argcheck(L, port >= 0 && port <= 65535, port_idx, "port out of range");
  if (addr_from_ip(host, (uint16_t)port, ss) == 0) return 0;
  return luaL_argerror(L, host_idx, lua_pushfstring(L, "invalid IP address '%s'", host));
}

int np_push_addr(lua_State *L, const struct sockaddr *sa) {
  char ip[INET6_ADDRSTRLEN];
  if (addr_ip_text(sa, ip, sizeof ip) < 0) {
    lua_pushnil(L);
    lua_pushnil(L);
    return 2;
  }
  lua_pushstring(L, ip);
  lua_pushinteger(L, addr_port(sa));
  return 2;
}

/* Options table {reuseaddr=bool, reuseport=bool} at idx (may be absent). */
int np_sockopt_flags(lua_State *L, int idx, int *reuseaddr, int *reuseport) {
  *reuseaddr = *reuseport = 0;
  if (lua_isnoneornil(L, idx)) return 0;
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_getfield(L, idx, "reuseaddr");
  *reuseaddr = lua_toboolean(L, -1);
  lua_getfield(L, idx, "reuseport");
  *reuseport = lua_toboolean(L, -1);
  lua_pop(L, 2);
  return 0;
}

/* ------------------------------------------------------------ loop funcs */

/* core.run([mode]) -> true if handles remain active.  Callbacks run on the
 * thread that called run, so run may be called from a coroutine. */
static int np_run(lua_State *L) {
  static const char *const modes[] = {"default", "once", "nowait", NULL};
  static const uv_run_mode uvmodes[] = {UV_RUN_DEFAULT, UV_RUN_ONCE, UV_RUN_NOWAIT};
  np_ctx *ctx = np_ctx_get(L);
  int mode = luaL_checkoption(L, 1, "default", modes);
  if (ctx->running) return luaL_error(L, "loop is already running (run called from a callback)");
  lua_State *saved = ctx->L;
  ctx->L = L;
  ctx->running = 1;
  int alive = uv_run(&ctx->loop, uvmodes[mode]);
  ctx->running = 0;
  ctx->L = saved;
  if (ctx->interrupted) {
    ctx->interrupted = 0;
    return luaL_error(L, "interrupted!");
  }
  lua_pushboolean(L, alive);
  return 1;
}

static int np_stop(lua_State *L) {
  uv_stop(&np_ctx_get(L)->loop);
  return 0;
}

static int np_now(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)uv_now(&np_ctx_get(L)->loop));
  return 1;
}

static int np_update_time(lua_State *L) {
  uv_update_time(&np_ctx_get(L)->loop);
  return 0;
}

static int np_hrtime(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)uv_hrtime());
  return 1;
}

static int np_alive(lua_State *L) {
  lua_pushboolean(L, uv_loop_alive(&np_ctx_get(L)->loop));
  return 1;
}

static int np_on_error(lua_State *L) {
  np_ctx *ctx = np_ctx_get(L);
  if (lua_isnoneornil(L, 1)) {
    np_unref(L, &ctx->on_error_ref);
  } else {
    luaL_checktype(L, 1, LUA_TFUNCTION);
    np_setref(L, &ctx->on_error_ref, 1);
  }
  return 0;
}

static int np_callback_errors(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)np_ctx_get(L)->callback_errors);
  return 1;
}

static int np_random_bytes(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  luaL_argcheck(L, n >= 0 && n <= 4096, 1, "length must be 0..4096");
  luaL_Buffer b;
  char *p = luaL_buffinitsize(L, &b, (size_t)n);
  int rc = uv_random(NULL, NULL, p, (size_t)n, 0, NULL);
  if (rc < 0) return np_push_error(L, rc);
  luaL_pushresultsize(&b, (size_t)n);
  return 1;
}

static int np_interface_addresses(lua_State *L) {
  uv_interface_address_t *ifs;
  int count;
  int rc = uv_interface_addresses(&ifs, &count);
  if (rc < 0) return np_push_error(L, rc);
  lua_createtable(L, count, 0);
  for (int i = 0; i < count; i++) {
    lua_createtable(L, 0, 5);
    lua_pushstring(L, ifs[i].name);
    lua_setfield(L, -2, "name");
    np_push_addr(L, (const struct sockaddr *)&ifs[i].address);
    lua_pop(L, 1);
    lua_setfield(L, -2, "ip");
    lua_pushstring(L, ifs[i].address.address4.sin_family == AF_INET6 ? "inet6" : "inet");
    lua_setfield(L, -2, "family");
    lua_pushboolean(L, ifs[i].is_internal);
    lua_setfield(L, -2, "internal");
    lua_rawseti(L, -2, i + 1);
  }
  uv_free_interface_addresses(ifs, count);
  return 1;
}

static void walk_close(uv_handle_t *uvh, void *arg) {
  (void)arg;
  /* only handles that carry their own address in data are natpunch
   * handles; internal ones (a socket's deadline timer) are closed by their
   * owner's free_fn */
  if (uvh->data == (void *)uvh) np_handle_close((np_handle *)uvh);
}

/* The state is closing: close every handle, let libuv finish, free. */
static int np_ctx_gc(lua_State *L) {
  np_ctx *ctx = lua_touserdata(L, 1);
  if (!ctx || ctx->dead) return 0;
  ctx->closing = 1;
  ctx->L = NULL;
  uv_walk(&ctx->loop, walk_close, NULL);
  /* a pending uv_stop() makes the first run return at once; every close
   * callback has run once uv_loop_close stops answering EBUSY (closing
   * handles may close others, e.g. a socket its deadline timer) */
  for (int i = 0; i < 100 && uv_loop_close(&ctx->loop) == UV_EBUSY; i++)
    uv_run(&ctx->loop, UV_RUN_NOWAIT);
  free(ctx->recv_buf);
  ctx->recv_buf = NULL;
  ctx->dead = 1;
  return 0;
}

static const luaL_Reg core_funcs[] = {{"run", np_run},
                                      {"stop", np_stop},
                                      {"now", np_now},
                                      {"update_time", np_update_time},
                                      {"hrtime", np_hrtime},
                                      {"alive", np_alive},
                                      {"on_error", np_on_error},
                                      {"callback_errors", np_callback_errors},
                                      {"random_bytes", np_random_bytes},
                                      {"interface_addresses", np_interface_addresses},
                                      {NULL, NULL}};

/* The ctx and the module table with the loop's functions, left on the
 * stack (ctx below the table) for the registration (np_module.c). */
void np_core_open(lua_State *L) {
  np_ctx *ctx = lua_newuserdatauv(L, sizeof(np_ctx), 0);
  memset(ctx, 0, sizeof *ctx);
  ctx->on_error_ref = LUA_NOREF;
  ctx->recv_buf = malloc(NP_RECV_SLOT * NP_RECV_BATCH);
  if (!ctx->recv_buf) {
    luaL_error(L, "out of memory");
    return;
  }
  int rc = uv_loop_init(&ctx->loop);
  if (rc < 0) {
    free(ctx->recv_buf);
    luaL_error(L, "uv_loop_init: %s", uv_strerror(rc));
    return;
  }
  luaL_newmetatable(L, NP_CTX_MT);
  lua_pushcfunction(L, np_ctx_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  ctx->L = L;

  /* keep the ctx alive as long as the state: it is finalized last because
   * it was marked for finalization first. */
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, "natpunch.loop");

  lua_pushcfunction(L, np_msgh);
  ctx->traceback_ref = luaL_ref(L, LUA_REGISTRYINDEX);

  /* module table; every function gets ctx as upvalue 1 */
  lua_newtable(L);
  lua_pushvalue(L, -2);
  luaL_setfuncs(L, core_funcs, 1);
  lua_pushliteral(L, NP_VERSION);
  lua_setfield(L, -2, "version");
}
