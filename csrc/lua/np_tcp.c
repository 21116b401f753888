/*
 * np_tcp.c - TCP sockets (luv-like):
 *   core.tcp() -> tcp
 *   tcp:bind(host, port [, {reuseaddr=, reuseport=, ipv6only=}])
 *   tcp:listen([backlog,] cb)  cb(err) per incoming connection; tcp:accept()
 *   tcp:connect(host, port, cb)  cb(err) once, err like "ECONNREFUSED: connection refused"
 *   tcp:read_start(cb)  cb(err, chunk), chunk nil at end of stream; read_stop()
 *   tcp:write(data [, cb]), write_queue_size(), on_drain(cb), shutdown([cb])
 *   getsockname(), getpeername(), nodelay(on), keepalive(on [, delay_s]),
 *   fileno(), close([cb]), is_closed()
 *
 * TCP hole punching (seed 001) binds a listening socket and one or more
 * connecting sockets to the same local port, so bind opens the socket itself
 * and binds it before libuv sees it: uv_tcp_bind() would force SO_REUSEADDR
 * on every socket and report EADDRINUSE only later, at listen or connect.
 * A connect on a bound socket keeps that port (needed for simultaneous open).
 *
 * A handle with a pending connect, write or shutdown, an active read or a
 * listen is pinned (np_pin) and survives without Lua references; it is
 * unpinned as soon as none of these is pending.  Requests never outlive the
 * handle: libuv completes them with UV_ECANCELED before the close callback.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include "natpunch.h"
#include "addr.h"

#define NP_TCP_MT "natpunch.tcp"

/* Default listen backlog when none is given (the Linux SOMAXCONN of old). */
#define NP_TCP_BACKLOG 128
/* Default idle time before keepalive probes, in seconds. */
#define NP_TCP_KEEPIDLE 60
/* uv_try_write returns an int: never offer it more than this at once. */
#define NP_TCP_TRY_MAX (1u << 30)

typedef struct np_tcp {
  np_handle h;
  int read_cb_ref;
  int listen_cb_ref;
  int drain_cb_ref;
  unsigned writes_pending; /* write requests queued in libuv */
  unsigned char connecting, reading, listening, shutting;
} np_tcp;

typedef struct connect_req {
  uv_connect_t req;
  int cb_ref;
} connect_req;

typedef struct shutdown_req {
  uv_shutdown_t req;
  int cb_ref;
} shutdown_req;

/* The unwritten rest of one write, copied: the Lua string may be collected
 * long before the socket drains. */
typedef struct write_req {
  uv_write_t req;
  int cb_ref;
  char data[];
} write_req;

static np_tcp *check_tcp(lua_State *L) {
  return (np_tcp *)np_handle_check(L, 1, NP_TCP_MT);
}

/* The lua_State callbacks may use to drop references, NULL while the state
 * is being torn down (np_unref then only forgets the ref). */
static lua_State *ref_state(np_ctx *ctx) {
  return ctx->closing ? NULL : ctx->L;
}

static void unpin_if_idle(np_tcp *t) {
  if (!t->connecting && !t->reading && !t->listening && !t->shutting && t->writes_pending == 0)
    np_unpin(&t->h);
}

/* Push the callback at *ref and drop the ref (one-shot callbacks).  Returns
 * the state with the function pushed, or NULL (nothing pushed). */
static lua_State *take_cb(np_ctx *ctx, int *ref) {
  lua_State *L = np_cb_push(ctx, *ref);
  np_unref(ref_state(ctx), ref);
  return L;
}

/* A listening socket has libuv's accept callback on its I/O watcher, which
 * asserts on anything but "readable": a write, shutdown or read queued on it
 * would abort the process, so those are refused (as the kernel would). */
static int refuse_listening(lua_State *L, np_tcp *t) {
  return t->listening ? np_push_fail(L, "ENOTCONN", "socket is listening") : 0;
}

static void tcp_free(np_handle *h) {
  np_tcp *t = (np_tcp *)h;
  lua_State *L = ref_state(h->ctx);
  np_unref(L, &t->read_cb_ref);
  np_unref(L, &t->listen_cb_ref);
  np_unref(L, &t->drain_cb_ref);
}

/* A new open handle, left on the stack; NULL (and nil, msg, code pushed
 * instead) on failure. */
static np_tcp *tcp_push_new(lua_State *L) {
  np_tcp *t = (np_tcp *)np_handle_new(L, sizeof(np_tcp), NP_TCP_MT);
  t->read_cb_ref = t->listen_cb_ref = t->drain_cb_ref = LUA_NOREF;
  t->h.free_fn = tcp_free;
  int rc = uv_tcp_init(&t->h.ctx->loop, &t->h.u.tcp);
  if (rc < 0) {
    *t->h.ud = NULL;
    free(t);
    lua_pop(L, 1);
    np_push_error(L, rc);
    return NULL;
  }
  t->h.u.handle.data = &t->h; /* the natpunch-handle mark (np_handle_new) */
  return t;
}

static int tcp_new(lua_State *L) {
  return tcp_push_new(L) ? 1 : 3;
}

/* A tcp handle for a connected socket fd (np_tcp_punch.c hands its winner
 * over this way).  Pushes the handle, or nil, msg, code; the fd is closed
 * on failure. */
int np_tcp_push_fd(lua_State *L, int fd) {
  np_tcp *t = tcp_push_new(L);
  if (!t) {
    close(fd);
    return 3;
  }
  int rc = uv_tcp_open(&t->h.u.tcp, fd);
  if (rc < 0) {
    close(fd);
    np_handle_close(&t->h);
    lua_pop(L, 1);
    return np_push_error(L, rc);
  }
  return 1;
}

/* ------------------------------------------------------------------ bind */

/* tcp:bind(host, port [, {reuseaddr=, reuseport=, ipv6only=}]) */
static int tcp_bind(lua_State *L) {
  np_tcp *t = check_tcp(L);
  struct sockaddr_storage ss;
  np_parse_addr(L, 2, 3, &ss);
  int reuseaddr, reuseport;
  np_sockopt_flags(L, 4, &reuseaddr, &reuseport);
  int ipv6only = 0;
  if (lua_istable(L, 4)) {
    lua_getfield(L, 4, "ipv6only");
    ipv6only = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  uv_os_fd_t old;
  if (uv_fileno(&t->h.u.handle, &old) == 0)
    return np_push_fail(L, "EINVAL", "socket is already bound or connected");
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return np_push_error(L, uv_translate_sys_error(errno));
  int one = 1;
  socklen_t len = addr_len((struct sockaddr *)&ss);
  /* IPV6_V6ONLY is set either way so the result does not depend on the
   * net.ipv6.bindv6only sysctl. */
  if ((reuseaddr && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0) ||
      (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) ||
      (ss.ss_family == AF_INET6 &&
       setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &ipv6only, sizeof ipv6only) < 0) ||
      bind(fd, (struct sockaddr *)&ss, len) < 0) {
    int err = errno;
    close(fd);
    return np_push_error(L, uv_translate_sys_error(err));
  }
  int rc = uv_tcp_open(&t->h.u.tcp, fd);
  if (rc < 0) {
    close(fd);
    return np_push_error(L, rc);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* --------------------------------------------------------- listen/accept */

static void on_connection(uv_stream_t *server, int status) {
  np_tcp *t = (np_tcp *)server;
  lua_State *L = np_cb_push(t->h.ctx, t->listen_cb_ref);
  if (!L) return;
  np_push_cb_status(L, status);
  np_call(t->h.ctx, 1);
}

/* tcp:listen([backlog,] cb) */
static int tcp_listen(lua_State *L) {
  np_tcp *t = check_tcp(L);
  if (lua_isfunction(L, 2) && lua_isnone(L, 3)) { /* listen(cb) */
    lua_pushnil(L);
    lua_insert(L, 2);
  }
  lua_Integer backlog = luaL_optinteger(L, 2, NP_TCP_BACKLOG);
  luaL_argcheck(L, backlog > 0 && backlog <= INT_MAX, 2, "backlog must be positive");
  luaL_checktype(L, 3, LUA_TFUNCTION);
  if (t->listening) return np_push_fail(L, "EALREADY", "already listening");
  /* the same watcher: nothing else may be in flight (see refuse_listening) */
  if (t->connecting || t->reading || t->shutting || t->writes_pending)
    return np_push_fail(L, "EBUSY", "socket is connecting, reading or writing");
  int rc = uv_listen(&t->h.u.stream, (int)backlog, on_connection);
  if (rc < 0) return np_push_error(L, rc);
  np_setref(L, &t->listen_cb_ref, 3);
  t->listening = 1;
  np_pin(L, &t->h, 1);
  lua_pushboolean(L, 1);
  return 1;
}

/* tcp:accept() -> new tcp | nil, err, code */
static int tcp_accept(lua_State *L) {
  np_tcp *t = check_tcp(L);
  np_tcp *c = tcp_push_new(L);
  if (!c) return 3;
  int rc = uv_accept(&t->h.u.stream, &c->h.u.stream);
  if (rc < 0) {
    np_handle_close(&c->h);
    return np_push_error(L, rc);
  }
  return 1;
}

/* --------------------------------------------------------------- connect */

static void on_connect(uv_connect_t *req, int status) {
  connect_req *cr = (connect_req *)req;
  np_tcp *t = (np_tcp *)req->handle;
  np_ctx *ctx = t->h.ctx;
  lua_State *L = take_cb(ctx, &cr->cb_ref);
  free(cr);
  t->connecting = 0;
  if (L) {
    np_push_cb_status(L, status);
    np_call(ctx, 1);
  }
  unpin_if_idle(t);
}

/* tcp:connect(host, port, cb) -> true | nil, err, code */
static int tcp_connect(lua_State *L) {
  np_tcp *t = check_tcp(L);
  struct sockaddr_storage ss;
  np_parse_addr(L, 2, 3, &ss);
  luaL_checktype(L, 4, LUA_TFUNCTION);
  connect_req *cr = malloc(sizeof *cr);
  if (!cr) return luaL_error(L, "out of memory");
  int rc = uv_tcp_connect(&cr->req, &t->h.u.tcp, (struct sockaddr *)&ss, on_connect);
  if (rc < 0) {
    free(cr);
    return np_push_error(L, rc);
  }
  cr->cb_ref = LUA_NOREF;
  np_setref(L, &cr->cb_ref, 4);
  t->connecting = 1;
  np_pin(L, &t->h, 1);
  lua_pushboolean(L, 1);
  return 1;
}

/* ------------------------------------------------------------------ read */

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  /* Safe to share: the chunk is copied into a Lua string before anything
   * else can read into the buffer (see np_stdio.c). */
  buf->base = ((np_handle *)handle)->ctx->recv_buf;
  buf->len = NP_RECV_SLOT;
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  np_tcp *t = (np_tcp *)st;
  np_ctx *ctx = t->h.ctx;
  if (nread == 0) return; /* EAGAIN */
  lua_State *L = np_cb_push(ctx, t->read_cb_ref);
  if (nread < 0) {
    /* end of stream or error: nothing more will be read (libuv has
     * stopped already at EOF) */
    uv_read_stop(st);
    t->reading = 0;
    np_unref(ref_state(ctx), &t->read_cb_ref);
  }
  if (L) {
    if (nread > 0) {
      lua_pushnil(L);
      lua_pushlstring(L, buf->base, (size_t)nread);
    } else {
      np_push_cb_status(L, nread == UV_EOF ? 0 : (int)nread);
      lua_pushnil(L);
    }
    np_call(ctx, 2);
  }
  /* still pinned during the call: unpin only now */
  if (nread < 0) unpin_if_idle(t);
}

/* tcp:read_start(cb) -> true | nil, err, code */
static int tcp_read_start(lua_State *L) {
  np_tcp *t = check_tcp(L);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  if (t->listening) return refuse_listening(L, t);
  int rc = uv_read_start(&t->h.u.stream, on_alloc, on_read);
  if (rc < 0 && rc != UV_EALREADY) return np_push_error(L, rc);
  np_setref(L, &t->read_cb_ref, 2);
  t->reading = 1;
  np_pin(L, &t->h, 1);
  lua_pushboolean(L, 1);
  return 1;
}

static int tcp_read_stop(lua_State *L) {
  np_tcp *t = check_tcp(L);
  uv_read_stop(&t->h.u.stream);
  t->reading = 0;
  np_unref(L, &t->read_cb_ref);
  unpin_if_idle(t);
  lua_pushboolean(L, 1);
  return 1;
}

/* ----------------------------------------------------------------- write */

static void fire_drain(np_tcp *t) {
  if (t->drain_cb_ref == LUA_NOREF || uv_is_closing(&t->h.u.handle)) return;
  lua_State *L = take_cb(t->h.ctx, &t->drain_cb_ref);
  if (L) np_call(t->h.ctx, 0);
}

static void on_write(uv_write_t *req, int status) {
  write_req *wr = (write_req *)req;
  np_tcp *t = (np_tcp *)req->handle;
  np_ctx *ctx = t->h.ctx;
  lua_State *L = take_cb(ctx, &wr->cb_ref);
  free(wr);
  t->writes_pending--;
  if (L) {
    np_push_cb_status(L, status);
    np_call(ctx, 1);
  }
  /* the callback may have queued more */
  if (t->writes_pending == 0) fire_drain(t);
  unpin_if_idle(t);
}

/* Queue len bytes (copied; len may be 0, to get a callback in order with
 * the data before it) with the callback at cb_idx (0: none). */
static int queue_write(lua_State *L, np_tcp *t, const char *data, size_t len, int cb_idx) {
  write_req *wr = malloc(sizeof *wr + len);
  if (!wr) return UV_ENOMEM;
  if (len) memcpy(wr->data, data, len);
  uv_buf_t b;
  b.base = wr->data;
  b.len = len;
  int rc = uv_write(&wr->req, &t->h.u.stream, &b, 1, on_write);
  if (rc < 0) {
    free(wr);
    return rc;
  }
  wr->cb_ref = LUA_NOREF;
  if (cb_idx) np_setref(L, &wr->cb_ref, cb_idx);
  t->writes_pending++;
  np_pin(L, &t->h, 1);
  return 0;
}

/* tcp:write(data [, cb]) -> true | nil, err, code.  Writes at once what the
 * socket takes and queues the rest, so true does not mean sent: see
 * write_queue_size() and on_drain().  cb(err) runs from the loop once all
 * of data is written. */
static int tcp_write(lua_State *L) {
  np_tcp *t = check_tcp(L);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  int has_cb = !lua_isnoneornil(L, 3);
  if (has_cb) luaL_checktype(L, 3, LUA_TFUNCTION);
  if (t->listening) return refuse_listening(L, t);
  size_t done = 0;
  /* Only when nothing is queued, to keep the order; not writable (never
   * connected, shut down) is left to uv_write to report. */
  if (t->writes_pending == 0 && uv_is_writable(&t->h.u.stream)) {
    while (done < len) {
      size_t n = len - done < NP_TCP_TRY_MAX ? len - done : NP_TCP_TRY_MAX;
      uv_buf_t b = uv_buf_init((char *)data + done, (unsigned)n);
      int rc = uv_try_write(&t->h.u.stream, &b, 1);
      if (rc == UV_EAGAIN) break;
      if (rc < 0) return np_push_error(L, rc);
      done += (size_t)rc;
      if ((size_t)rc < n) break;
    }
  }
  if (done < len || has_cb) {
    int rc = queue_write(L, t, data + done, len - done, has_cb ? 3 : 0);
    if (rc < 0) return np_push_error(L, rc);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* tcp:write_queue_size() -> bytes accepted by write() but not yet sent */
static int tcp_write_queue_size(lua_State *L) {
  np_tcp *t = check_tcp(L);
  lua_pushinteger(L, (lua_Integer)uv_stream_get_write_queue_size(&t->h.u.stream));
  return 1;
}

/* tcp:on_drain(cb) -> true | nil, err, code.  cb() runs once, from the loop,
 * when no write is queued any more: at once (next loop turn) if nothing is
 * queued now.  Write errors go to the write callbacks, not here. */
static int tcp_on_drain(lua_State *L) {
  np_tcp *t = check_tcp(L);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  if (t->listening) return refuse_listening(L, t);
  if (t->writes_pending == 0) {
    /* an empty write completes in order and brings us back to on_write */
    int rc = queue_write(L, t, NULL, 0, 0);
    if (rc < 0) return np_push_error(L, rc);
  }
  np_setref(L, &t->drain_cb_ref, 2);
  lua_pushboolean(L, 1);
  return 1;
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  shutdown_req *sr = (shutdown_req *)req;
  np_tcp *t = (np_tcp *)req->handle;
  np_ctx *ctx = t->h.ctx;
  lua_State *L = take_cb(ctx, &sr->cb_ref);
  free(sr);
  t->shutting = 0;
  if (L) {
    np_push_cb_status(L, status);
    np_call(ctx, 1);
  }
  unpin_if_idle(t);
}

/* tcp:shutdown([cb]) -> true | nil, err, code; sends FIN after the queued
 * writes; cb(err). */
static int tcp_shutdown(lua_State *L) {
  np_tcp *t = check_tcp(L);
  int has_cb = !lua_isnoneornil(L, 2);
  if (has_cb) luaL_checktype(L, 2, LUA_TFUNCTION);
  if (t->listening) return refuse_listening(L, t);
  shutdown_req *sr = malloc(sizeof *sr);
  if (!sr) return luaL_error(L, "out of memory");
  int rc = uv_shutdown(&sr->req, &t->h.u.stream, on_shutdown);
  if (rc < 0) {
    free(sr);
    return np_push_error(L, rc);
  }
  sr->cb_ref = LUA_NOREF;
  if (has_cb) np_setref(L, &sr->cb_ref, 2);
  t->shutting = 1;
  np_pin(L, &t->h, 1);
  lua_pushboolean(L, 1);
  return 1;
}

/* ------------------------------------------------------------- addresses */

static int push_name(lua_State *L, int which) {
  np_tcp *t = check_tcp(L);
  struct sockaddr_storage ss;
  int len = sizeof ss;
  int rc = which ? uv_tcp_getpeername(&t->h.u.tcp, (struct sockaddr *)&ss, &len)
                 : uv_tcp_getsockname(&t->h.u.tcp, (struct sockaddr *)&ss, &len);
  if (rc < 0) return np_push_error(L, rc);
  return np_push_addr(L, (struct sockaddr *)&ss);
}

static int tcp_getsockname(lua_State *L) {
  return push_name(L, 0);
}

static int tcp_getpeername(lua_State *L) {
  return push_name(L, 1);
}

/* --------------------------------------------------------------- options */

static int tcp_nodelay(lua_State *L) {
  np_tcp *t = check_tcp(L);
  luaL_checkany(L, 2);
  int rc = uv_tcp_nodelay(&t->h.u.tcp, lua_toboolean(L, 2));
  if (rc < 0) return np_push_error(L, rc);
  lua_pushboolean(L, 1);
  return 1;
}

/* tcp:keepalive(on [, delay_s]): delay_s is the idle time before the first
 * probe. */
static int tcp_keepalive(lua_State *L) {
  np_tcp *t = check_tcp(L);
  luaL_checkany(L, 2);
  int on = lua_toboolean(L, 2);
  lua_Integer delay = luaL_optinteger(L, 3, NP_TCP_KEEPIDLE);
  /* TCP_KEEPIDLE rejects 0; the kernel's maximum is 32767 s */
  luaL_argcheck(L, !on || (delay >= 1 && delay <= 32767), 3, "delay must be 1..32767 seconds");
  int rc = uv_tcp_keepalive(&t->h.u.tcp, on, on ? (unsigned)delay : 0);
  if (rc < 0) return np_push_error(L, rc);
  lua_pushboolean(L, 1);
  return 1;
}

static int tcp_fileno(lua_State *L) {
  np_tcp *t = check_tcp(L);
  uv_os_fd_t fd;
  int rc = uv_fileno(&t->h.u.handle, &fd);
  if (rc < 0) return np_push_error(L, rc);
  lua_pushinteger(L, fd);
  return 1;
}

static int tcp_close(lua_State *L) {
  np_handle *h = np_handle_test(L, 1, NP_TCP_MT);
  if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TFUNCTION);
  if (h) {
    if (lua_isfunction(L, 2)) np_setref(L, &h->close_cb_ref, 2);
    np_handle_close(h);
  }
  return 0;
}

static int tcp_is_closed(lua_State *L) {
  lua_pushboolean(L, np_handle_test(L, 1, NP_TCP_MT) == NULL);
  return 1;
}

static const luaL_Reg tcp_methods[] = {{"bind", tcp_bind},
                                       {"listen", tcp_listen},
                                       {"accept", tcp_accept},
                                       {"connect", tcp_connect},
                                       {"read_start", tcp_read_start},
                                       {"read_stop", tcp_read_stop},
                                       {"write", tcp_write},
                                       {"write_queue_size", tcp_write_queue_size},
                                       {"on_drain", tcp_on_drain},
                                       {"shutdown", tcp_shutdown},
                                       {"getsockname", tcp_getsockname},
                                       {"getpeername", tcp_getpeername},
                                       {"nodelay", tcp_nodelay},
                                       {"keepalive", tcp_keepalive},
                                       {"fileno", tcp_fileno},
                                       {"close", tcp_close},
                                       {"is_closed", tcp_is_closed},
                                       {NULL, NULL}};

int np_tcp_open(lua_State *L) {
  /* libuv writes with writev(), so a write to a connection the peer has
   * reset raises SIGPIPE, which kills the process by default.  Ignore it,
   * as LuaSocket does, unless the host program installed its own handler:
   * the write then fails with EPIPE, reported like any other error. */
  struct sigaction sa;
  if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) {
    sa.sa_handler = SIG_IGN;
    sa.sa_flags = 0;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGPIPE, &sa, NULL);
  }
  np_class(L, NP_TCP_MT, tcp_methods);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushcclosure(L, tcp_new, 1);
  lua_setfield(L, 1, "tcp");
  return 0;
}
