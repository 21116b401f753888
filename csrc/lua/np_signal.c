/*
 * np_signal.c - Ctrl-C for interactive use (`natpunch shell`), through the
 * loop and also in the middle of a busy Lua chunk:
 *
 *   core.sigint() -> watcher   SIGINT is blocked and read from a signalfd
 *   w:start(cb)                cb() on the loop for each Ctrl-C
 *   w:pending()                true if a Ctrl-C came since the last check
 *                              (consumes it; cheap: one non-blocking read),
 *                              for a debug hook that stops a busy chunk
 *   w:close()                  SIGINT back as it was (also __gc/__close)
 *
 * With SIGINT blocked no handler runs at all (neither lua.c's nor
 * readline's), so a Ctrl-C is never lost and never interrupts a system
 * call: it waits in the signalfd until the loop or the hook looks.  The
 * mask is per thread; libuv's thread pool threads started later inherit it.
 * Child processes started with os.execute/io.popen inherit it too (libuv's
 * uv_spawn resets it).
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/signalfd.h>
#include "natpunch.h"

#define NP_SIGINT_MT "natpunch.sigint"

typedef struct np_sigint {
  np_handle h;
  int fd;
  int was_blocked;
  int cb_ref;
} np_sigint;

/* Read every queued SIGINT; returns how many. */
static int drain(np_sigint *s) {
  struct signalfd_siginfo si[8];
  int n = 0;
  for (;;) {
    ssize_t r = read(s->fd, si, sizeof si);
    if (r <= 0) break;
    n += (int)(r / (ssize_t)sizeof si[0]);
  }
  return n;
}

static void restore(np_sigint *s) {
  if (s->fd >= 0) {
    drain(s); /* a Ctrl-C still queued must not fire once unblocked */
    close(s->fd);
    s->fd = -1;
    if (!s->was_blocked) {
      sigset_t set;
      sigemptyset(&set);
      sigaddset(&set, SIGINT);
      pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    }
  }
}

static void sigint_free(np_handle *h) {
  np_sigint *s = (np_sigint *)h;
  restore(s);
  np_unref(h->ctx->closing ? NULL : h->ctx->L, &s->cb_ref);
}

static void on_readable(uv_poll_t *p, int status, int events) {
  (void)events;
  np_sigint *s = (np_sigint *)p;
  if (status < 0 || drain(s) == 0) return;
  lua_State *L = np_cb_push(s->h.ctx, s->cb_ref);
  if (L) np_call(s->h.ctx, 0);
}

static int sigint_new(lua_State *L) {
  np_ctx *ctx = np_ctx_get(L);
  sigset_t set, old;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  int rc = pthread_sigmask(SIG_BLOCK, &set, &old);
  if (rc != 0) return np_push_fail(L, "EINVAL", "cannot block SIGINT");
  int fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    if (!sigismember(&old, SIGINT)) pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    return np_push_error(L, uv_translate_sys_error(e));
  }
  np_sigint *s = (np_sigint *)np_handle_new(L, sizeof(np_sigint), NP_SIGINT_MT);
  s->fd = fd;
  s->was_blocked = sigismember(&old, SIGINT);
  s->cb_ref = LUA_NOREF;
  s->h.free_fn = sigint_free;
  rc = uv_poll_init(&ctx->loop, &s->h.u.poll, fd);
  if (rc < 0) {
    restore(s);
    *s->h.ud = NULL;
    free(s);
    return np_push_error(L, rc);
  }
  return 1;
}

static int sigint_start(lua_State *L) {
  np_sigint *s = (np_sigint *)np_handle_check(L, 1, NP_SIGINT_MT);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  np_setref(L, &s->cb_ref, 2);
  int rc = uv_poll_start(&s->h.u.poll, UV_READABLE, on_readable);
  if (rc < 0) return np_push_error(L, rc);
  np_pin(L, &s->h, 1);
  lua_pushboolean(L, 1);
  return 1;
}

static int sigint_pending(lua_State *L) {
  np_sigint *s = (np_sigint *)np_handle_check(L, 1, NP_SIGINT_MT);
  lua_pushboolean(L, drain(s) > 0);
  return 1;
}

static int sigint_close(lua_State *L) {
  np_handle *h = np_handle_test(L, 1, NP_SIGINT_MT);
  if (h) {
    uv_poll_stop(&h->u.poll); /* before its fd goes */
    restore((np_sigint *)h);
    np_handle_close(h);
  }
  return 0;
}

static const luaL_Reg sigint_methods[] = {
    {"start", sigint_start}, {"pending", sigint_pending}, {"close", sigint_close}, {NULL, NULL}};

int np_signal_open(lua_State *L) {
  np_class(L, NP_SIGINT_MT, sigint_methods);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushcclosure(L, sigint_new, 1);
  lua_setfield(L, 1, "sigint");
  return 0;
}
