/*
 * natpunch.h - shared declarations of the Lua binding (np_*.c files).
 *
 * The pure cores (stun.c, touch.c, punch.c, addr.c, ...) never include this
 * file: they know nothing of Lua or libuv.  The binding files do.
 *
 * Ownership model (after luv and libuv):
 *  - every handle lives in malloc'd memory that never moves while libuv
 *    uses it; the Lua userdata only holds a pointer to it;
 *  - uv_close() is called once, and the memory is freed in the close
 *    callback; a closed userdata holds NULL and raises "closed" on use;
 *  - while a handle can still call back into Lua (receiving, listening, a
 *    started timer, a pending write) it pins its userdata with a registry
 *    reference, so it is not collected under libuv's feet;
 *  - __gc and __close close a handle that is still open.
 * There is no global mutable state: the loop and its bookkeeping live in one
 * np_ctx per lua_State, an upvalue of every function of the module.
 */
#ifndef NATPUNCH_H
#define NATPUNCH_H

#include <stddef.h>
#include <stdint.h>
#include <lua.h>
#include <lauxlib.h>
#include <uv.h>

#define NP_VERSION "0.1.0"

/* core.so is built with -fvisibility=hidden (after libjuice's JUICE_EXPORT):
 * only what carries NP_EXPORT, luaopen_natpunch_core, is exported, so no
 * symbol of the module can clash with one of the process that loads it
 * (spec/cdeps_spec.lua checks nm -D). */
#define NP_EXPORT __attribute__((visibility("default")))

/* Size of the shared receive buffer: the UDP receive path (np_udp_recv.c)
 * cuts the buffer into 64 KiB slots, one per datagram, so this allows
 * batches of up to 16 datagrams per system call. */
#define NP_RECV_SLOT  (64 * 1024)
#define NP_RECV_BATCH 16

typedef struct np_ctx {
  uv_loop_t loop;
  lua_State *L;      /* main thread; NULL once the state is closing */
  int on_error_ref;  /* optional Lua error reporter (registry ref) */
  int traceback_ref; /* debug.traceback, cached for callbacks */
  int closing;
  int running;     /* inside uv_run */
  int interrupted; /* a callback raised "interrupted!" (SIGINT) */
  int dead;        /* the loop is closed */
  uint64_t callback_errors;
  char *recv_buf; /* shared receive buffer, NP_RECV_SLOT * NP_RECV_BATCH */
} np_ctx;

/* Every handle struct starts with this. */
typedef struct np_handle {
  union {
    uv_handle_t handle;
    uv_udp_t udp;
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_idle_t idle;
    uv_stream_t stream;
    uv_tty_t tty;
    uv_pipe_t pipe;
    uv_poll_t poll;
  } u;
  np_ctx *ctx;
  void **ud;                           /* the userdata's slot; set to NULL on close */
  int self_ref;                        /* registry ref pinning the userdata, or LUA_NOREF */
  int close_cb_ref;                    /* Lua callback for close, or LUA_NOREF */
  void (*free_fn)(struct np_handle *); /* extra cleanup before free() */
} np_handle;

/* np_core.c */
/* Push the ctx and the module table with the loop's functions (for
 * luaopen_natpunch_core in np_module.c). */
void np_core_open(lua_State *L);
np_ctx *np_ctx_get(lua_State *L);           /* from upvalue 1 */
int np_push_error(lua_State *L, int uverr); /* nil, "ENAME: text", "ENAME" */
int np_push_fail(lua_State *L, const char *code, const char *msg);
/* The one shape of errors passed to callbacks: cb(err, ...) where err is
 * nil or "CODE: message", the text of the message in nil, message, code;
 * the code is what comes before the first ':' (docs/API.md).  These push
 * that first argument. */
void np_push_cb_error(lua_State *L, const char *code, const char *msg);
void np_push_cb_status(lua_State *L, int uverr);  /* nil when uverr >= 0 */
void np_pin(lua_State *L, np_handle *h, int idx); /* pin userdata at idx */
void np_unpin(np_handle *h);
/* Push the callback at ref and call it with nargs already pushed after it.
 * Errors in user callbacks are reported (never unwind through libuv). */
void np_call(np_ctx *ctx, int nargs);
/* Push registry value ref (a function) on ctx->L; returns the lua_State or
 * NULL when the state is gone (then nothing is pushed). */
lua_State *np_cb_push(np_ctx *ctx, int ref);
void np_unref(lua_State *L, int *ref);
void np_setref(lua_State *L, int *ref, int idx); /* replace ref with value at idx */
uint64_t np_now_ms(np_ctx *ctx);

/* Allocate a handle of `size` bytes, a userdata of class `mt` holding it,
 * left on the stack. */
np_handle *np_handle_new(lua_State *L, size_t size, const char *mt);
np_handle *np_handle_check(lua_State *L, int idx, const char *mt); /* raises if closed */
np_handle *np_handle_test(lua_State *L, int idx, const char *mt);  /* NULL if closed */
void np_handle_close(np_handle *h);
int np_handle_gc(lua_State *L); /* shared __gc/__close for handles */
/* Register class `name` with methods; leaves nothing on the stack.  The
 * methods get the ctx userdata as upvalue 1. */
void np_class(lua_State *L, const char *name, const luaL_Reg *methods);

/* Socket addresses: parse host/port from Lua, push host, port. */
int np_parse_addr(lua_State *L, int host_idx, int port_idx, struct sockaddr_storage *ss);
int np_push_addr(lua_State *L, const struct sockaddr *sa); /* pushes host, port: returns 2 */
int np_sockopt_flags(lua_State *L, int idx, int *reuseaddr, int *reuseport);

/* Module parts, called by np_module.c as closures with ctx as upvalue 1
 * and the module table as argument 1: each registers its class(es)
 * (np_class) and sets its constructor(s) on the module table.  They
 * return 0.  np_udp_open also takes its engine table as upvalue 2. */
int np_timer_open(lua_State *L);
int np_udp_open(lua_State *L);
int np_tcp_open(lua_State *L);
int np_tcp_punch_open(lua_State *L);
/* np_tcp.c: wrap a connected socket in a tcp handle (pushes it, or nil,
 * msg, code and closes fd). */
int np_tcp_push_fd(lua_State *L, int fd);
int np_stdio_open(lua_State *L);
int np_dns_open(lua_State *L);
int np_signal_open(lua_State *L);
int np_redis_open(lua_State *L);  /* np_redis.c: hiredis on the loop */
int np_stun_open(lua_State *L);   /* pushes the stun table (no argument) */
int np_crypto_open(lua_State *L); /* pushes the crypto table (no argument) */
int np_inet_open(lua_State *L);   /* adds inet_pton/inet_ntop to the module table */

#endif
