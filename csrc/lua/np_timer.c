/*
 * np_timer.c - timers: core.timer() -> timer; timer:start(ms, repeat_ms, cb),
 * timer:stop(), timer:again(), timer:close().  A started timer pins its
 * userdata until it is stopped (or fires for the last time).
 *
 * And idle handles: core.idle() -> idle; idle:start(cb) calls cb once per
 * loop iteration (and makes the poll phase not block) until idle:stop();
 * idle:close().  Started, it pins its userdata.  The scheduler runs tasks
 * that yield for less than a millisecond from one: a 0 ms timer started
 * from a timer callback runs in the same timer phase (libuv 1.44 runs
 * every due timer before it polls), so a task looping on sleep(0) would
 * keep the loop from ever polling or running close callbacks.
 */
#include "natpunch.h"

#define NP_TIMER_MT "natpunch.timer"
#define NP_IDLE_MT  "natpunch.idle"

typedef struct np_timer {
  np_handle h;
  int cb_ref;
} np_timer;

static np_timer *check_timer(lua_State *L) {
  return (np_timer *)np_handle_check(L, 1, NP_TIMER_MT);
}

static void timer_free(np_handle *h) {
  np_unref(h->ctx->closing ? NULL : h->ctx->L, &((np_timer *)h)->cb_ref);
}

static void on_timer(uv_timer_t *t) {
  np_timer *tm = (np_timer *)t;
  np_ctx *ctx = tm->h.ctx;
  int last = uv_timer_get_repeat(t) == 0;
  lua_State *L = np_cb_push(ctx, tm->cb_ref);
  /* unpin before calling: the callback may restart or drop the timer */
  if (last && L) {
    int ref = tm->h.self_ref;
    tm->h.self_ref = LUA_NOREF;
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref); /* keep it on the stack while calling */
    lua_insert(L, -2);
    np_call(ctx, 0);
    lua_pop(L, 1);
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    return;
  }
  if (L) np_call(ctx, 0);
}

static int timer_new(lua_State *L) {
  np_timer *tm = (np_timer *)np_handle_new(L, sizeof(np_timer), NP_TIMER_MT);
  tm->cb_ref = LUA_NOREF;
  tm->h.free_fn = timer_free;
  uv_timer_init(&tm->h.ctx->loop, &tm->h.u.timer);
  return 1;
}

static int timer_start(lua_State *L) {
  np_timer *tm = check_timer(L);
  lua_Number ms = luaL_checknumber(L, 2);
  lua_Number rep = luaL_optnumber(L, 3, 0);
  luaL_argcheck(L, ms >= 0 && ms < 1e12, 2, "timeout must be >= 0 (milliseconds)");
  luaL_argcheck(L, rep >= 0 && rep < 1e12, 3, "repeat must be >= 0 (milliseconds)");
  luaL_checktype(L, 4, LUA_TFUNCTION);
  np_setref(L, &tm->cb_ref, 4);
  int rc = uv_timer_start(&tm->h.u.timer, on_timer, (uint64_t)ms, (uint64_t)rep);
  if (rc < 0) return np_push_error(L, rc);
  np_pin(L, &tm->h, 1);
  lua_pushboolean(L, 1);
  return 1;
}

static int timer_stop(lua_State *L) {
  np_timer *tm = check_timer(L);
  uv_timer_stop(&tm->h.u.timer);
  np_unpin(&tm->h);
  lua_pushboolean(L, 1);
  return 1;
}

static int timer_again(lua_State *L) {
  np_timer *tm = check_timer(L);
  int rc = uv_timer_again(&tm->h.u.timer);
  if (rc < 0) return np_push_error(L, rc);
  if (uv_is_active(&tm->h.u.handle)) np_pin(L, &tm->h, 1);
  lua_pushboolean(L, 1);
  return 1;
}

static int timer_active(lua_State *L) {
  np_handle *h = np_handle_test(L, 1, NP_TIMER_MT);
  lua_pushboolean(L, h && uv_is_active(&h->u.handle));
  return 1;
}

static int timer_due_in(lua_State *L) {
  np_timer *tm = check_timer(L);
  uint64_t due = uv_timer_get_due_in(&tm->h.u.timer);
  lua_pushinteger(L, (lua_Integer)due);
  return 1;
}

static int timer_close(lua_State *L) {
  np_handle *h = np_handle_test(L, 1, NP_TIMER_MT);
  if (h) {
    if (lua_isfunction(L, 2)) np_setref(L, &h->close_cb_ref, 2);
    np_handle_close(h);
  }
  return 0;
}

static int timer_is_closed(lua_State *L) {
  lua_pushboolean(L, np_handle_test(L, 1, NP_TIMER_MT) == NULL);
  return 1;
}

static const luaL_Reg timer_methods[] = {{"start", timer_start},         {"stop", timer_stop},
                                         {"again", timer_again},         {"active", timer_active},
                                         {"due_in", timer_due_in},       {"close", timer_close},
                                         {"is_closed", timer_is_closed}, {NULL, NULL}};

/* ---- idle ---- */

static void on_idle(uv_idle_t *i) {
  np_timer *id = (np_timer *)i;
  lua_State *L = np_cb_push(id->h.ctx, id->cb_ref);
  if (L) np_call(id->h.ctx, 0);
}

static int idle_new(lua_State *L) {
  np_timer *id = (np_timer *)np_handle_new(L, sizeof(np_timer), NP_IDLE_MT);
  id->cb_ref = LUA_NOREF;
  id->h.free_fn = timer_free;
  uv_idle_init(&id->h.ctx->loop, &id->h.u.idle);
  return 1;
}

static int idle_start(lua_State *L) {
  np_timer *id = (np_timer *)np_handle_check(L, 1, NP_IDLE_MT);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  np_setref(L, &id->cb_ref, 2);
  int rc = uv_idle_start(&id->h.u.idle, on_idle);
  if (rc < 0) return np_push_error(L, rc);
  np_pin(L, &id->h, 1);
  lua_pushboolean(L, 1);
  return 1;
}

static int idle_stop(lua_State *L) {
  np_timer *id = (np_timer *)np_handle_check(L, 1, NP_IDLE_MT);
  uv_idle_stop(&id->h.u.idle);
  np_unpin(&id->h);
  lua_pushboolean(L, 1);
  return 1;
}

static int idle_active(lua_State *L) {
  np_handle *h = np_handle_test(L, 1, NP_IDLE_MT);
  lua_pushboolean(L, h && uv_is_active(&h->u.handle));
  return 1;
}

static int idle_close(lua_State *L) {
  np_handle *h = np_handle_test(L, 1, NP_IDLE_MT);
  if (h) np_handle_close(h);
  return 0;
}

static int idle_is_closed(lua_State *L) {
  lua_pushboolean(L, np_handle_test(L, 1, NP_IDLE_MT) == NULL);
  return 1;
}

static const luaL_Reg idle_methods[] = {{"start", idle_start},         {"stop", idle_stop},
                                        {"active", idle_active},       {"close", idle_close},
                                        {"is_closed", idle_is_closed}, {NULL, NULL}};

int np_timer_open(lua_State *L) {
  np_class(L, NP_TIMER_MT, timer_methods);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushcclosure(L, timer_new, 1);
  lua_setfield(L, 1, "timer");
  np_class(L, NP_IDLE_MT, idle_methods);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushcclosure(L, idle_new, 1);
  lua_setfield(L, 1, "idle");
  return 0;
}
