/*
 * np_stdio.c - read standard input on the loop (for `natpunch shell` and
 * scripts that read commands while peers keep running):
 *   core.stdin() -> reader;  reader:read_start(cb)  cb(err, chunk|nil at EOF)
 *   reader:read_stop(); reader:close()
 * A tty, a pipe or a file descriptor of another kind are all handled.
 *
 *   core.stdin_poll() -> poller;  poller:start(cb)  cb() whenever standard
 *   input is readable, without reading it (for GNU readline's callback
 *   interface, which reads the terminal itself); poller:stop(); close()
 */
#include <stdlib.h>
#include "natpunch.h"

#define NP_STDIN_MT "natpunch.stdin"

typedef struct np_stdin {
  np_handle h;
  int cb_ref;
} np_stdin;

static void stdin_free(np_handle *h) {
  np_unref(h->ctx->closing ? NULL : h->ctx->L, &((np_stdin *)h)->cb_ref);
}

static int stdin_new(lua_State *L) {
  np_ctx *ctx = np_ctx_get(L);
  uv_handle_type t = uv_guess_handle(0);
  /* epoll cannot watch a regular file (libuv would abort): callers read
   * those with io.read, they never block for long */
  if (t != UV_TTY && t != UV_NAMED_PIPE && t != UV_TCP)
    return np_push_fail(L, "EINVAL", "standard input is not a terminal, pipe or socket");
  np_stdin *s = (np_stdin *)np_handle_new(L, sizeof(np_stdin), NP_STDIN_MT);
  s->cb_ref = LUA_NOREF;
  s->h.free_fn = stdin_free;
  int rc;
  if (t == UV_TTY) {
    rc = uv_tty_init(&ctx->loop, &s->h.u.tty, 0, 0);
  } else {
    rc = uv_pipe_init(&ctx->loop, &s->h.u.pipe, 0);
    if (rc == 0) {
      rc = uv_pipe_open(&s->h.u.pipe, 0);
      if (rc < 0) {
        np_handle_close(&s->h);
        return np_push_error(L, rc);
      }
    }
  }
  if (rc < 0) {
    *s->h.ud = NULL;
    free(s);
    return np_push_error(L, rc);
  }
  return 1;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  np_handle *nh = (np_handle *)h;
  buf->base = nh->ctx->recv_buf;
  buf->len = NP_RECV_SLOT;
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  np_stdin *s = (np_stdin *)st;
  if (nread == 0) return;
  lua_State *L = np_cb_push(s->h.ctx, s->cb_ref);
  if (!L) return;
  if (nread == UV_EOF) {
    lua_pushnil(L);
    lua_pushnil(L);
  } else if (nread < 0) {
    np_push_cb_status(L, (int)nread);
    lua_pushnil(L);
  } else {
    lua_pushnil(L);
    lua_pushlstring(L, buf->base, (size_t)nread);
  }
  if (nread < 0) {
    uv_read_stop(st);
    np_unpin(&s->h);
  }
  np_call(s->h.ctx, 2);
}

static int stdin_read_start(lua_State *L) {
  np_stdin *s = (np_stdin *)np_handle_check(L, 1, NP_STDIN_MT);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  np_setref(L, &s->cb_ref, 2);
  int rc = uv_read_start(&s->h.u.stream, on_alloc, on_read);
  if (rc < 0 && rc != UV_EALREADY) return np_push_error(L, rc);
  np_pin(L, &s->h, 1);
  lua_pushboolean(L, 1);
  return 1;
}

static int stdin_read_stop(lua_State *L) {
  np_stdin *s = (np_stdin *)np_handle_check(L, 1, NP_STDIN_MT);
  uv_read_stop(&s->h.u.stream);
  np_unpin(&s->h);
  lua_pushboolean(L, 1);
  return 1;
}

static int stdin_close(lua_State *L) {
  np_handle *h = np_handle_test(L, 1, NP_STDIN_MT);
  if (h) np_handle_close(h);
  return 0;
}

static const luaL_Reg stdin_methods[] = {{"read_start", stdin_read_start},
                                         {"read_stop", stdin_read_stop},
                                         {"close", stdin_close},
                                         {NULL, NULL}};

/* ------------------------------------------------------------ stdin_poll */

#define NP_STDIN_POLL_MT "natpunch.stdin_poll"

typedef struct np_stdin_poll {
  np_handle h;
  int cb_ref;
} np_stdin_poll;

static void poll_free(np_handle *h) {
  np_unref(h->ctx->closing ? NULL : h->ctx->L, &((np_stdin_poll *)h)->cb_ref);
}

static void on_poll(uv_poll_t *p, int status, int events) {
  (void)events;
  np_stdin_poll *s = (np_stdin_poll *)p;
  if (status < 0) uv_poll_stop(p); /* reported as readable once more: the read sees the error */
  lua_State *L = np_cb_push(s->h.ctx, s->cb_ref);
  if (L) np_call(s->h.ctx, 0);
}

static int poll_new(lua_State *L) {
  np_ctx *ctx = np_ctx_get(L);
  uv_handle_type t = uv_guess_handle(0);
  if (t != UV_TTY && t != UV_NAMED_PIPE && t != UV_TCP)
    return np_push_fail(L, "EINVAL", "standard input is not a terminal, pipe or socket");
  np_stdin_poll *s = (np_stdin_poll *)np_handle_new(L, sizeof(np_stdin_poll), NP_STDIN_POLL_MT);
  s->cb_ref = LUA_NOREF;
  s->h.free_fn = poll_free;
  int rc = uv_poll_init(&ctx->loop, &s->h.u.poll, 0);
  if (rc < 0) {
    *s->h.ud = NULL;
    free(s);
    return np_push_error(L, rc);
  }
  return 1;
}

static int poll_start(lua_State *L) {
  np_stdin_poll *s = (np_stdin_poll *)np_handle_check(L, 1, NP_STDIN_POLL_MT);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  np_setref(L, &s->cb_ref, 2);
  int rc = uv_poll_start(&s->h.u.poll, UV_READABLE, on_poll);
  if (rc < 0) return np_push_error(L, rc);
  np_pin(L, &s->h, 1);
  lua_pushboolean(L, 1);
  return 1;
}

static int poll_stop(lua_State *L) {
  np_stdin_poll *s = (np_stdin_poll *)np_handle_check(L, 1, NP_STDIN_POLL_MT);
  uv_poll_stop(&s->h.u.poll);
  np_unpin(&s->h);
  lua_pushboolean(L, 1);
  return 1;
}

static int poll_close(lua_State *L) {
  np_handle *h = np_handle_test(L, 1, NP_STDIN_POLL_MT);
  if (h) np_handle_close(h);
  return 0;
}

static const luaL_Reg poll_methods[] = {
    {"start", poll_start}, {"stop", poll_stop}, {"close", poll_close}, {NULL, NULL}};

int np_stdio_open(lua_State *L) {
  np_class(L, NP_STDIN_POLL_MT, poll_methods);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushcclosure(L, poll_new, 1);
  lua_setfield(L, 1, "stdin_poll");
  np_class(L, NP_STDIN_MT, stdin_methods);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushcclosure(L, stdin_new, 1);
  lua_setfield(L, 1, "stdin");
  return 0;
}
