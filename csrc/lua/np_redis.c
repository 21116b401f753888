/*
 * np_redis.c - a Redis connection on the natpunch loop, through hiredis's
 * asynchronous API and its libuv adapter: nothing here ever blocks.
 *
 *   core.redis(ip, port, {on_connect = fn(err), on_disconnect = fn(err),
 *                         on_message = fn(channel, payload)}) -> conn
 *   conn:command({"HSET", key, field, value, ...}, [fn(err, reply)]) -> true | nil, msg, code
 *   conn:subscribe(channel) -> true | nil, msg, code   (messages go to on_message)
 *   conn:connected() -> boolean
 *   conn:pending() -> number of commands waiting for their reply
 *   conn:close()
 *
 * One connection is one TCP connection: once it is lost (on_disconnect) the
 * object is dead and the caller makes a new one (natpunch.registry_redis
 * reconnects with a timer).  The address must be an IP literal, so that
 * hiredis's name resolution never waits on DNS.  A connection used for
 * subscribe carries nothing else (Redis's RESP2 rule).
 *
 * Replies: status and bulk strings -> string, integers -> integer, nil ->
 * nil (false inside arrays), arrays -> tables; an error reply is passed as
 * the callback's first argument.  Pending commands get ("disconnected")
 * when the connection goes away.
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libuv.h>
#include "natpunch.h"

#define NP_REDIS_MT       "natpunch.redis"
#define NP_REDIS_MAX_ARGS 4096

/* Lifetime: the struct is freed once both the userdata has let go of it
 * (close or __gc: `closed`) and hiredis has finished with the connection
 * (`held` 0: after its last callback).  hiredis may defer freeing a
 * context closed from inside one of its callbacks, and then still calls the
 * pending reply callbacks, which point here. */
typedef struct np_redis {
  np_ctx *ctx;
  redisAsyncContext *ac; /* NULL once it cannot take commands */
  int held;              /* hiredis still refers to this struct */
  void (*adapter_cleanup)(void *);
  int connected;
  int closed;   /* the Lua side is gone: call no Lua */
  int self_ref; /* pins the userdata while ac is alive */
  int on_connect_ref, on_disconnect_ref, on_message_ref;
  long pending;
} np_redis;

typedef struct np_redis_cmd {
  np_redis *r;
  int cb_ref; /* LUA_NOREF: fire and forget */
} np_redis_cmd;

static np_redis *check_redis(lua_State *L) {
  np_redis **pp = luaL_checkudata(L, 1, NP_REDIS_MT);
  return *pp;
}

static void push_reply(lua_State *L, const redisReply *rep, int in_array) {
  switch (rep->type) {
  case REDIS_REPLY_STRING:
  case REDIS_REPLY_STATUS:
  case REDIS_REPLY_ERROR: lua_pushlstring(L, rep->str, rep->len); break;
  case REDIS_REPLY_INTEGER: lua_pushinteger(L, (lua_Integer)rep->integer); break;
  case REDIS_REPLY_ARRAY:
    lua_createtable(L, (int)rep->elements, 0);
    for (size_t i = 0; i < rep->elements; i++) {
      push_reply(L, rep->element[i], 1);
      lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    break;
  default: /* REDIS_REPLY_NIL */
    if (in_array)
      lua_pushboolean(L, 0);
    else
      lua_pushnil(L);
  }
}

static void unref_cb(np_redis *r, int *ref) {
  if (*ref != LUA_NOREF && r->ctx->L && !r->ctx->closing)
    luaL_unref(r->ctx->L, LUA_REGISTRYINDEX, *ref);
  *ref = LUA_NOREF;
}

/* hiredis is done with the connection: drop the pin; free the struct if
 * the Lua side is gone too. */
static void release(np_redis *r) {
  r->ac = NULL;
  r->held = 0;
  r->connected = 0;
  unref_cb(r, &r->self_ref);
  if (r->closed) free(r);
}

/* hiredis 0.14's libuv adapter drops poll events that come with an error
 * status (`if (status != 0) return;`), and libuv reports a refused or reset
 * connection exactly that way (UV_EBADF, poll stopped): the connection
 * would then hang forever.  Later hiredis releases hand such events to
 * hiredis as read/write, which then sees the socket error; these four
 * replace the adapter's event functions to do the same.  Attach, the event
 * struct and cleanup stay the adapter's. */
static void poll_cb(uv_poll_t *handle, int status, int events) {
  redisLibuvEvents *p = handle->data;
  int ev = status ? p->events : events;
  if (p->context && (ev & UV_READABLE)) redisAsyncHandleRead(p->context);
  if (p->context && (ev & UV_WRITABLE)) redisAsyncHandleWrite(p->context);
}

static void poll_update(redisLibuvEvents *p) {
  if (p->events)
    uv_poll_start(&p->handle, p->events, poll_cb);
  else
    uv_poll_stop(&p->handle);
}

static void add_read(void *privdata) {
  redisLibuvEvents *p = privdata;
  p->events |= UV_READABLE;
  poll_update(p);
}
static void del_read(void *privdata) {
  redisLibuvEvents *p = privdata;
  p->events &= ~UV_READABLE;
  poll_update(p);
}
static void add_write(void *privdata) {
  redisLibuvEvents *p = privdata;
  p->events |= UV_WRITABLE;
  poll_update(p);
}
static void del_write(void *privdata) {
  redisLibuvEvents *p = privdata;
  p->events &= ~UV_WRITABLE;
  poll_update(p);
}

/* The adapter's cleanup runs when hiredis frees a context; when it was
 * never connected no disconnect callback follows, so this is its end. */
static void on_cleanup(void *privdata) {
  redisLibuvEvents *p = privdata;
  redisAsyncContext *ac = p->context;
  np_redis *r = ac ? ac->data : NULL;
  void (*cleanup)(void *) = r ? r->adapter_cleanup : redisLibuvCleanup;
  cleanup(privdata);
  if (r && !r->connected) release(r);
}

/* Call the callback at ref with an error string (or nil). */
static void call_status(np_redis *r, int ref, const char *err) {
  if (r->closed || ref == LUA_NOREF) return;
  lua_State *L = np_cb_push(r->ctx, ref);
  if (!L) return;
  if (err)
    lua_pushstring(L, err);
  else
    lua_pushnil(L);
  np_call(r->ctx, 1);
}

static void on_connect(const redisAsyncContext *ac, int status) {
  np_redis *r = ac->data;
  if (!r) return;
  if (status != REDIS_OK) {
    /* hiredis frees ac after this callback (on_cleanup), without on_disconnect */
    char err[128];
    snprintf(err, sizeof err, "ECONNREFUSED: %s", ac->errstr[0] ? ac->errstr : "cannot connect");
    r->ac = NULL; /* being freed: a close from the callback must not free it again */
    call_status(r, r->on_connect_ref, err);
    return;
  }
  r->connected = 1;
  call_status(r, r->on_connect_ref, NULL);
}

static void on_disconnect(const redisAsyncContext *ac, int status) {
  np_redis *r = ac->data;
  if (!r) return;
  char err[128];
  snprintf(err, sizeof err, "%s",
           status == REDIS_OK ? "closed" : (ac->errstr[0] ? ac->errstr : "connection lost"));
  r->connected = 0;
  r->ac = NULL; /* being freed: a close from the callback must not free it again */
  call_status(r, r->on_disconnect_ref, err);
  release(r); /* last use of r: it may be freed here */
}

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata) {
  (void)ac;
  np_redis_cmd *cmd = privdata;
  np_redis *r = cmd->r;
  r->pending--;
  if (cmd->cb_ref != LUA_NOREF && !r->closed) {
    lua_State *L = np_cb_push(r->ctx, cmd->cb_ref);
    if (L) {
      const redisReply *rep = reply;
      if (!rep) {
        lua_pushliteral(L, "disconnected");
        lua_pushnil(L);
      } else if (rep->type == REDIS_REPLY_ERROR) {
        lua_pushlstring(L, rep->str, rep->len);
        lua_pushnil(L);
      } else {
        lua_pushnil(L);
        push_reply(L, rep, 0);
      }
      np_call(r->ctx, 2);
    }
  }
  unref_cb(r, &cmd->cb_ref);
  free(cmd);
}

/* Subscription replies: ["message", channel, payload] (and the
 * ["subscribe", channel, n] confirmations, passed on with kind). */
static void on_sub(redisAsyncContext *ac, void *reply, void *privdata) {
  (void)ac;
  np_redis *r = privdata;
  const redisReply *rep = reply;
  if (!rep || r->closed || rep->type != REDIS_REPLY_ARRAY || rep->elements < 3) return;
  const redisReply *kind = rep->element[0], *ch = rep->element[1], *payload = rep->element[2];
  if (kind->type != REDIS_REPLY_STRING || ch->type != REDIS_REPLY_STRING) return;
  if (r->on_message_ref == LUA_NOREF) return;
  lua_State *L = np_cb_push(r->ctx, r->on_message_ref);
  if (!L) return;
  lua_pushlstring(L, ch->str, ch->len);
  if (payload->type == REDIS_REPLY_STRING)
    lua_pushlstring(L, payload->str, payload->len);
  else
    lua_pushnil(L);
  lua_pushlstring(L, kind->str, kind->len);
  np_call(r->ctx, 3);
}

static void opt_ref(lua_State *L, int idx, const char *name, int *ref) {
  *ref = LUA_NOREF;
  if (lua_isnoneornil(L, idx)) return;
  lua_getfield(L, idx, name);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return;
  }
  if (!lua_isfunction(L, -1)) luaL_error(L, "bad option '%s' (function expected)", name);
  *ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

static int redis_new(lua_State *L) {
  np_ctx *ctx = np_ctx_get(L);
  const char *ip = luaL_checkstring(L, 1);
  lua_Integer port = luaL_checkinteger(L, 2);
  luaL_argcheck(L, port > 0 && port <= 65535, 2, "port must be 1..65535");
  unsigned char buf[sizeof(struct in6_addr)];
  luaL_argcheck(L, inet_pton(AF_INET, ip, buf) == 1 || inet_pton(AF_INET6, ip, buf) == 1, 1,
                "IP address expected");
  if (!lua_isnoneornil(L, 3)) luaL_checktype(L, 3, LUA_TTABLE);

  np_redis **pp = lua_newuserdatauv(L, sizeof *pp, 0);
  *pp = NULL;
  luaL_setmetatable(L, NP_REDIS_MT);
  np_redis *r = calloc(1, sizeof *r);
  if (!r) return luaL_error(L, "out of memory");
  *pp = r;
  r->ctx = ctx;
  r->self_ref = LUA_NOREF;
  opt_ref(L, 3, "on_connect", &r->on_connect_ref);
  opt_ref(L, 3, "on_disconnect", &r->on_disconnect_ref);
  opt_ref(L, 3, "on_message", &r->on_message_ref);

  redisAsyncContext *ac = redisAsyncConnect(ip, (int)port);
  if (!ac) return np_push_fail(L, "ENOMEM", "cannot allocate a redis connection");
  if (ac->err) {
    lua_pushnil(L);
    lua_pushfstring(L, "ECONNREFUSED: %s", ac->errstr);
    lua_pushliteral(L, "ECONNREFUSED");
    redisAsyncFree(ac);
    return 3;
  }
  if (redisLibuvAttach(ac, &ctx->loop) != REDIS_OK) {
    redisAsyncFree(ac);
    return np_push_fail(L, "ENOMEM", "cannot attach the redis connection to the loop");
  }
  r->adapter_cleanup = ac->ev.cleanup;
  ac->ev.cleanup = on_cleanup;
  ac->ev.addRead = add_read;
  ac->ev.delRead = del_read;
  ac->ev.addWrite = add_write;
  ac->ev.delWrite = del_write;
  ac->data = r;
  r->held = 1;
  redisAsyncSetConnectCallback(ac, on_connect);
  redisAsyncSetDisconnectCallback(ac, on_disconnect);
  r->ac = ac;
  lua_pushvalue(L, -1);
  r->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 1;
}

static int redis_command(lua_State *L) {
  np_redis *r = check_redis(L);
  luaL_checktype(L, 2, LUA_TTABLE);
  if (!lua_isnoneornil(L, 3)) luaL_checktype(L, 3, LUA_TFUNCTION);
  lua_Integer n = luaL_len(L, 2);
  luaL_argcheck(L, n >= 1 && n <= NP_REDIS_MAX_ARGS, 2, "1..4096 arguments expected");
  if (!r || !r->ac) return np_push_fail(L, "ENOTCONN", "redis is not connected");
  const char **argv = malloc((size_t)n * sizeof *argv);
  size_t *lens = malloc((size_t)n * sizeof *lens);
  np_redis_cmd *cmd = malloc(sizeof *cmd);
  if (!argv || !lens || !cmd) {
    free(argv);
    free(lens);
    free(cmd);
    return luaL_error(L, "out of memory");
  }
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, 2, i);
    int t = lua_type(L, -1);
    if (t != LUA_TSTRING && t != LUA_TNUMBER) {
      free(argv);
      free(lens);
      free(cmd);
      return luaL_error(L, "bad argument #2 to 'command' (item %d is not a string or number)",
                        (int)i);
    }
    argv[i - 1] = lua_tolstring(L, -1, &lens[i - 1]); /* kept alive on the stack */
  }
  cmd->r = r;
  cmd->cb_ref = LUA_NOREF;
  if (lua_isfunction(L, 3)) {
    lua_pushvalue(L, 3);
    cmd->cb_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  int rc = redisAsyncCommandArgv(r->ac, on_reply, cmd, (int)n, argv, lens);
  free(argv);
  free(lens);
  if (rc != REDIS_OK) {
    unref_cb(r, &cmd->cb_ref);
    free(cmd);
    return np_push_fail(L, "ENOTCONN", "redis connection is closing");
  }
  r->pending++;
  lua_pushboolean(L, 1);
  return 1;
}

static int redis_subscribe(lua_State *L) {
  np_redis *r = check_redis(L);
  size_t len;
  const char *ch = luaL_checklstring(L, 2, &len);
  if (!r || !r->ac) return np_push_fail(L, "ENOTCONN", "redis is not connected");
  const char *argv[2] = {"SUBSCRIBE", ch};
  size_t lens[2] = {9, len};
  if (redisAsyncCommandArgv(r->ac, on_sub, r, 2, argv, lens) != REDIS_OK)
    return np_push_fail(L, "ENOTCONN", "redis connection is closing");
  lua_pushboolean(L, 1);
  return 1;
}

static int redis_connected(lua_State *L) {
  np_redis *r = check_redis(L);
  lua_pushboolean(L, r && r->ac && r->connected);
  return 1;
}

static int redis_pending(lua_State *L) {
  np_redis *r = check_redis(L);
  lua_pushinteger(L, r ? r->pending : 0);
  return 1;
}

/* Let go of the connection: pending callbacks are not called any more;
 * the struct is freed when hiredis is done with it (release). */
static int redis_close(lua_State *L) {
  np_redis **pp = luaL_checkudata(L, 1, NP_REDIS_MT);
  np_redis *r = *pp;
  if (!r) return 0;
  *pp = NULL;
  r->closed = 1;
  unref_cb(r, &r->on_connect_ref);
  unref_cb(r, &r->on_disconnect_ref);
  unref_cb(r, &r->on_message_ref);
  if (r->ac)
    redisAsyncFree(r->ac); /* now or, inside a hiredis callback, right after it */
  else if (!r->held)
    free(r); /* else release() frees it */
  return 0;
}

static int redis_is_closed(lua_State *L) {
  np_redis **pp = luaL_checkudata(L, 1, NP_REDIS_MT);
  lua_pushboolean(L, *pp == NULL || (*pp)->ac == NULL);
  return 1;
}

static const luaL_Reg redis_methods[] = {{"command", redis_command},
                                         {"subscribe", redis_subscribe},
                                         {"connected", redis_connected},
                                         {"pending", redis_pending},
                                         {"close", redis_close},
                                         {"is_closed", redis_is_closed},
                                         {NULL, NULL}};

int np_redis_open(lua_State *L) {
  np_class(L, NP_REDIS_MT, redis_methods);
  luaL_getmetatable(L, NP_REDIS_MT);
  lua_pushcfunction(L, redis_close);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, redis_close);
  lua_setfield(L, -2, "__close");
  lua_pop(L, 1);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushcclosure(L, redis_new, 1);
  lua_setfield(L, 1, "redis");
  return 0;
}
