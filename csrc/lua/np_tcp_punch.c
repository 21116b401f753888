/*
 * np_tcp_punch.c - TCP hole punching by simultaneous open (seed 001's "help
 * hole", seed 003's STUNT #2 without the spoofing):
 *
 *   core.tcp_punch(opts, cb) -> punch
 *     opts.host, opts.port   local address: the port of this peer's TCP
 *                            connection to the rendezvous, whose NAT mapping
 *                            the other side was told about
 *     opts.remotes           { {ip, port}, ... } (up to NP_PUNCH_MAX), e.g.
 *                            the other side's private and public endpoints
 *     opts.listen            also accept on the local port (default true)
 *     opts.timeout           ms before giving up (default 10000)
 *     opts.retry, opts.retry_max   back-off after a refused/unreachable
 *                            attempt, ms (default 50, doubling to 1000)
 *     opts.attempt           ms an unanswered SYN is left before a fresh
 *                            one replaces it (default 1000)
 *     opts.first             stop at the first connection (default true);
 *                            false delivers every connection until close()
 *     opts.ttl, opts.ttl_every   send the SYN of every ttl_every-th attempt
 *                            (the first, and so on) with this IP TTL / hop
 *                            limit (default 0: never)
 *   cb(nil, tcp, ip, port, how)  a connection completed: tcp is an ordinary
 *                            natpunch.tcp stream, how "connect" or "accept"
 *   cb(code, nil, message)   the deadline passed with no connection
 *   punch:stats()  attempts, refused (RST or ICMP port unreachable),
 *                  unreachable, syn_timeouts, low_ttl_syns, connected,
 *                  accepted, delivered, done, last_error
 *   punch:close(), punch:is_closed()
 *
 * Every socket is opened here, given SO_REUSEADDR and SO_REUSEPORT, bound to
 * the same local port and only then handed to libuv (uv_poll while racing,
 * uv_tcp_open for the winner): libuv 1.44 has no UV_TCP_REUSEPORT.  The
 * connects and the listen run at once; a SYN that crosses ours completes a
 * connect (RFC 793 simultaneous open), one that finds no connecting socket
 * reaches the listener.  A router that answers our early SYN with an RST or
 * an ICMP error (RFC 5382 REQ-4 says it should not, many do) fails that
 * attempt: it is retried from the same port with back-off, a SYN left
 * unanswered is replaced after opts.attempt ms, and the deadline ends it
 * all.  No Lua runs while racing; one timer drives every deadline.
 */
#define _GNU_SOURCE /* accept4 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include "natpunch.h"

#define NP_PUNCH_MT        "natpunch.tcp_punch"
#define NP_PUNCH_MAX       8     /* remote endpoints per punch */
#define NP_PUNCH_TIMEOUT   10000 /* ms */
#define NP_PUNCH_RETRY     50    /* ms, first back-off */
#define NP_PUNCH_RETRY_MAX 1000  /* ms */
#define NP_PUNCH_ATTEMPT   1000  /* ms, the kernel's first SYN RTO (RFC 6298) */
#define NP_PUNCH_BACKLOG   8

struct tcp_punch;

/* One socket of the race: a connect toward slot `slot`, or the listener
 * (slot -1).  Freed in its poll's close callback, which also closes fd
 * unless the fd was handed over. */
typedef struct attempt {
  uv_poll_t poll;
  struct tcp_punch *p;
  int fd;
  int slot;
  uint64_t started;
} attempt;

typedef struct slot {
  struct sockaddr_storage addr;
  attempt *a;       /* connecting now, or NULL */
  unsigned tries;   /* attempts started toward it */
  uint64_t next_at; /* when idle: next attempt */
  unsigned backoff;
} slot;

typedef struct tcp_punch {
  np_handle h; /* the timer */
  int cb_ref;
  struct sockaddr_storage local;
  int nslots;
  slot slots[NP_PUNCH_MAX];
  attempt *listener;
  uint64_t deadline;
  unsigned retry, retry_max, attempt_ms;
  int ttl, ttl_every; /* low-TTL SYNs: every ttl_every-th attempt, 0 = never */
  int first, done, delivered;
  int last_err; /* last attempt's error (uv code) */
  unsigned attempts, refused, unreachable, syn_timeouts, other_errors, connected, accepted;
  unsigned low_ttl_syns;
} tcp_punch;

static tcp_punch *check_punch(lua_State *L) {
  return (tcp_punch *)np_handle_check(L, 1, NP_PUNCH_MT);
}

static socklen_t addr_len(const struct sockaddr_storage *ss) {
  return ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
}

/* A non-blocking socket with both reuse options, bound to the local port;
 * the fd, or a negative uv error. */
static int open_bound(const struct sockaddr_storage *local) {
  int fd = socket(local->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return uv_translate_sys_error(errno);
  int one = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
      setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0 ||
      (local->ss_family == AF_INET6 &&
       setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) < 0) ||
      bind(fd, (const struct sockaddr *)local, addr_len(local)) < 0) {
    int err = errno;
    close(fd);
    return uv_translate_sys_error(err);
  }
  return fd;
}

static void on_attempt_closed(uv_handle_t *h) {
  attempt *a = (attempt *)h;
  if (a->fd >= 0) close(a->fd);
  free(a);
}

/* Stop watching; keep_fd: the fd now belongs to someone else. */
static void attempt_close(attempt *a, int keep_fd) {
  if (keep_fd) a->fd = -1;
  uv_close((uv_handle_t *)&a->poll, on_attempt_closed);
}

static void close_all(tcp_punch *p) {
  for (int i = 0; i < p->nslots; i++) {
    if (p->slots[i].a) attempt_close(p->slots[i].a, 0);
    p->slots[i].a = NULL;
  }
  if (p->listener) attempt_close(p->listener, 0);
  p->listener = NULL;
}

static int closing(tcp_punch *p) {
  return p->done || uv_is_closing(&p->h.u.handle);
}

static void arm(tcp_punch *p);

/* The race is over: close what is left; report err if nothing won. */
static void finish(tcp_punch *p, int err) {
  if (p->done) return;
  p->done = 1;
  close_all(p);
  uv_timer_stop(&p->h.u.timer);
  np_ctx *ctx = p->h.ctx;
  lua_State *L = NULL;
  if (err && !p->delivered) L = np_cb_push(ctx, p->cb_ref);
  if (L) {
    lua_pushstring(L, uv_err_name(err));
    lua_pushnil(L);
    if (p->last_err)
      lua_pushfstring(L, "no connection after %d attempts (last: %s)", (int)p->attempts,
                      uv_err_name(p->last_err));
    else
      lua_pushfstring(L, "no connection after %d attempts", (int)p->attempts);
    np_call(ctx, 3);
  }
  np_unpin(&p->h);
}

/* Hand fd over as a tcp stream to the callback. */
static void deliver(tcp_punch *p, int fd, const char *how) {
  np_ctx *ctx = p->h.ctx;
  struct sockaddr_storage peer;
  socklen_t len = sizeof peer;
  if (getpeername(fd, (struct sockaddr *)&peer, &len) < 0) {
    close(fd); /* reset before we got to it */
    p->other_errors++;
    return;
  }
  p->delivered++;
  lua_State *L = np_cb_push(ctx, p->cb_ref);
  if (!L) {
    close(fd);
    return;
  }
  lua_pushnil(L);
  if (np_tcp_push_fd(L, fd) != 1) { /* pushed nil, msg, code; fd closed */
    lua_pop(L, 5);
    p->delivered--;
    p->other_errors++;
    return;
  }
  np_push_addr(L, (struct sockaddr *)&peer);
  lua_pushstring(L, how);
  np_call(ctx, 5);
}

static void attempt_failed(tcp_punch *p, int i, int err) {
  slot *s = &p->slots[i];
  p->last_err = err;
  if (err == UV_ECONNREFUSED || err == UV_ECONNRESET)
    p->refused++;
  else if (err == UV_EHOSTUNREACH || err == UV_ENETUNREACH)
    p->unreachable++;
  else
    p->other_errors++;
  s->next_at = uv_now(&p->h.ctx->loop) + s->backoff;
  s->backoff = s->backoff * 2 > p->retry_max ? p->retry_max : s->backoff * 2;
}

static void on_connect_ready(uv_poll_t *poll, int status, int events) {
  attempt *a = (attempt *)poll;
  tcp_punch *p = a->p;
  if (closing(p)) return;
  int i = a->slot;
  int err = 0;
  socklen_t len = sizeof err;
  /* libuv reports POLLERR as UV_EBADF: the socket's own error says why */
  if (getsockopt(a->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
    err = uv_translate_sys_error(errno);
  else if (err)
    err = uv_translate_sys_error(err);
  else if (status < 0)
    err = status;
  if (err == 0 && !(events & UV_WRITABLE)) return;
  p->slots[i].a = NULL;
  if (err) {
    attempt_close(a, 0);
    attempt_failed(p, i, err);
    arm(p);
    return;
  }
  int fd = a->fd;
  attempt_close(a, 1);
  p->connected++;
  deliver(p, fd, "connect");
  if (closing(p)) return;
  if (p->first && p->delivered)
    finish(p, 0);
  else {
    /* this endpoint is done; a second connection to it would collide */
    p->slots[i].next_at = UINT64_MAX;
    arm(p);
  }
}

static int start_poll(tcp_punch *p, attempt *a, int events, uv_poll_cb cb) {
  int rc = uv_poll_init_socket(&p->h.ctx->loop, &a->poll, a->fd);
  if (rc < 0) return rc;
  /* not the handle itself: walk_close (np_core.c) takes a handle whose data
   * points to itself for a natpunch handle; its owner closes this one */
  a->poll.data = NULL;
  rc = uv_poll_start(&a->poll, events, cb);
  if (rc < 0) {
    uv_close((uv_handle_t *)&a->poll, on_attempt_closed);
    return 1; /* a is gone */
  }
  return 0;
}

static attempt *new_attempt(tcp_punch *p, int fd, int slot_idx) {
  attempt *a = calloc(1, sizeof *a);
  if (!a) return NULL;
  a->p = p;
  a->fd = fd;
  a->slot = slot_idx;
  a->started = uv_now(&p->h.ctx->loop);
  return a;
}

static void start_attempt(tcp_punch *p, int i) {
  slot *s = &p->slots[i];
  p->attempts++;
  int fd = open_bound(&p->local);
  if (fd < 0) {
    attempt_failed(p, i, fd);
    return;
  }
  /* A SYN with a small TTL opens our own NAT's mapping but expires before
   * it reaches the other side's NAT, which could answer it with an RST
   * (STUNT #1): the other side's SYN then finds the way open.  Only the SYN
   * leaves with it; the default is back for whatever follows. */
  int low = p->ttl > 0 && p->ttl_every > 0 && s->tries % (unsigned)p->ttl_every == 0;
  s->tries++;
  int v6 = p->local.ss_family == AF_INET6;
  int lvl = v6 ? IPPROTO_IPV6 : IPPROTO_IP, opt = v6 ? IPV6_UNICAST_HOPS : IP_TTL;
  if (low && setsockopt(fd, lvl, opt, &p->ttl, sizeof p->ttl) < 0) low = 0;
  if (low) p->low_ttl_syns++;
  int crc = connect(fd, (struct sockaddr *)&s->addr, addr_len(&s->addr));
  int cerr = errno;
  if (low) {
    int dflt = -1;
    setsockopt(fd, lvl, opt, &dflt, sizeof dflt);
  }
  if (crc < 0 && cerr != EINPROGRESS) {
    int err = uv_translate_sys_error(cerr);
    close(fd);
    attempt_failed(p, i, err);
    return;
  }
  attempt *a = new_attempt(p, fd, i);
  if (!a) {
    close(fd);
    attempt_failed(p, i, UV_ENOMEM);
    return;
  }
  int rc = start_poll(p, a, UV_WRITABLE, on_connect_ready);
  if (rc != 0) {
    if (rc < 0) {
      close(fd);
      free(a);
    }
    attempt_failed(p, i, rc < 0 ? rc : UV_EIO);
    return;
  }
  s->a = a;
}

static void on_listen_ready(uv_poll_t *poll, int status, int events) {
  attempt *a = (attempt *)poll;
  tcp_punch *p = a->p;
  if (closing(p) || status < 0) return;
  for (;;) {
    int fd = accept4(a->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return; /* EAGAIN, or an aborted connection */
    p->accepted++;
    deliver(p, fd, "accept");
    if (closing(p)) return;
    if (p->first && p->delivered) {
      finish(p, 0);
      return;
    }
  }
}

static int start_listener(tcp_punch *p) {
  int fd = open_bound(&p->local);
  if (fd < 0) return fd;
  if (listen(fd, NP_PUNCH_BACKLOG) < 0) {
    int err = uv_translate_sys_error(errno);
    close(fd);
    return err;
  }
  attempt *a = new_attempt(p, fd, -1);
  if (!a) {
    close(fd);
    return UV_ENOMEM;
  }
  int rc = start_poll(p, a, UV_READABLE, on_listen_ready);
  if (rc < 0) {
    close(fd);
    free(a);
    return rc;
  }
  if (rc > 0) return UV_EIO;
  p->listener = a;
  return 0;
}

static void on_tick(uv_timer_t *t) {
  tcp_punch *p = (tcp_punch *)t;
  if (closing(p)) return;
  uint64_t now = uv_now(&p->h.ctx->loop);
  if (now >= p->deadline) {
    finish(p, UV_ETIMEDOUT);
    return;
  }
  for (int i = 0; i < p->nslots; i++) {
    slot *s = &p->slots[i];
    if (s->a && now - s->a->started >= p->attempt_ms) {
      /* no answer to this SYN: a fresh socket sends a fresh one now */
      attempt_close(s->a, 0);
      s->a = NULL;
      p->syn_timeouts++;
      p->last_err = UV_ETIMEDOUT;
      s->next_at = now;
    }
    if (!s->a && s->next_at <= now) start_attempt(p, i);
  }
  arm(p);
}

static void arm(tcp_punch *p) {
  if (closing(p)) return;
  uint64_t next = p->deadline;
  for (int i = 0; i < p->nslots; i++) {
    slot *s = &p->slots[i];
    uint64_t at = s->a ? s->a->started + p->attempt_ms : s->next_at;
    if (at < next) next = at;
  }
  uint64_t now = uv_now(&p->h.ctx->loop);
  uv_timer_start(&p->h.u.timer, on_tick, next > now ? next - now : 0, 0);
}

static void punch_free(np_handle *h) {
  tcp_punch *p = (tcp_punch *)h;
  close_all(p);
  np_unref(h->ctx->closing ? NULL : h->ctx->L, &p->cb_ref);
}

static unsigned opt_ms(lua_State *L, const char *key, unsigned def, unsigned lo) {
  lua_getfield(L, 1, key);
  lua_Integer v = luaL_optinteger(L, -1, def);
  lua_pop(L, 1);
  if (v < (lua_Integer)lo || v > 3600000)
    luaL_error(L, "tcp_punch: %s must be %d..3600000 ms", key, (int)lo);
  return (unsigned)v;
}

static int opt_bool(lua_State *L, const char *key, int def) {
  lua_getfield(L, 1, key);
  int v = lua_isnil(L, -1) ? def : lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

/* core.tcp_punch(opts, cb) */
static int punch_new(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  struct sockaddr_storage local;
  lua_getfield(L, 1, "host");
  lua_getfield(L, 1, "port");
  np_parse_addr(L, -2, -1, &local);
  lua_pop(L, 2);
  unsigned timeout = opt_ms(L, "timeout", NP_PUNCH_TIMEOUT, 1);
  unsigned retry = opt_ms(L, "retry", NP_PUNCH_RETRY, 1);
  unsigned retry_max = opt_ms(L, "retry_max", NP_PUNCH_RETRY_MAX, 1);
  unsigned attempt_ms = opt_ms(L, "attempt", NP_PUNCH_ATTEMPT, 10);
  int do_listen = opt_bool(L, "listen", 1);
  lua_getfield(L, 1, "ttl");
  lua_Integer ttl = luaL_optinteger(L, -1, 0);
  lua_getfield(L, 1, "ttl_every");
  lua_Integer ttl_every = luaL_optinteger(L, -1, 1);
  lua_pop(L, 2);
  luaL_argcheck(L, ttl >= 0 && ttl <= 255, 1, "ttl must be 0..255");
  luaL_argcheck(L, ttl_every >= 1 && ttl_every <= 1000, 1, "ttl_every must be 1..1000");
  int first = opt_bool(L, "first", 1);
  struct sockaddr_storage remotes[NP_PUNCH_MAX];
  lua_getfield(L, 1, "remotes");
  luaL_argcheck(L, lua_istable(L, -1), 1, "remotes must be a list of {ip, port}");
  int n = (int)luaL_len(L, -1);
  luaL_argcheck(L, n <= NP_PUNCH_MAX, 1, "too many remotes (at most 8)");
  luaL_argcheck(L, n > 0 || do_listen, 1, "nothing to do: no remotes and listen = false");
  for (int i = 0; i < n; i++) {
    lua_rawgeti(L, -1, i + 1);
    luaL_argcheck(L, lua_istable(L, -1), 1, "remotes must be a list of {ip, port}");
    lua_rawgeti(L, -1, 1);
    lua_rawgeti(L, -2, 2);
    np_parse_addr(L, -2, -1, &remotes[i]);
    luaL_argcheck(L, remotes[i].ss_family == local.ss_family, 1,
                  "remote and local address families differ");
    lua_pop(L, 3);
  }
  lua_pop(L, 1);

  tcp_punch *p = (tcp_punch *)np_handle_new(L, sizeof(tcp_punch), NP_PUNCH_MT);
  p->cb_ref = LUA_NOREF;
  p->h.free_fn = punch_free;
  uv_timer_init(&p->h.ctx->loop, &p->h.u.timer);
  p->h.u.handle.data = &p->h;
  p->local = local;
  p->retry = retry;
  p->retry_max = retry_max < retry ? retry : retry_max;
  p->attempt_ms = attempt_ms;
  p->first = first;
  p->ttl = (int)ttl;
  p->ttl_every = (int)ttl_every;
  p->nslots = n;
  uint64_t now = uv_now(&p->h.ctx->loop);
  p->deadline = now + timeout;
  np_setref(L, &p->cb_ref, 2);
  np_pin(L, &p->h, -1);
  if (do_listen) {
    int rc = start_listener(p);
    if (rc < 0) {
      np_handle_close(&p->h);
      return np_push_error(L, rc);
    }
  }
  for (int i = 0; i < n; i++) {
    p->slots[i].addr = remotes[i];
    p->slots[i].backoff = retry;
    start_attempt(p, i);
  }
  arm(p);
  return 1;
}

static int punch_stats(lua_State *L) {
  tcp_punch *p = check_punch(L);
  lua_createtable(L, 0, 9);
#define F(name) lua_pushinteger(L, p->name), lua_setfield(L, -2, #name)
  F(attempts);
  F(refused);
  F(unreachable);
  F(syn_timeouts);
  F(other_errors);
  F(connected);
  F(accepted);
  F(delivered);
  F(low_ttl_syns);
#undef F
  lua_pushboolean(L, p->done);
  lua_setfield(L, -2, "done");
  if (p->last_err) {
    lua_pushstring(L, uv_err_name(p->last_err));
    lua_setfield(L, -2, "last_error");
  }
  return 1;
}

static int punch_close(lua_State *L) {
  np_handle *h = np_handle_test(L, 1, NP_PUNCH_MT);
  if (h) {
    tcp_punch *p = (tcp_punch *)h;
    p->done = 1;
    close_all(p);
    np_handle_close(h);
  }
  return 0;
}

static int punch_is_closed(lua_State *L) {
  lua_pushboolean(L, np_handle_test(L, 1, NP_PUNCH_MT) == NULL);
  return 1;
}

static const luaL_Reg punch_methods[] = {
    {"stats", punch_stats}, {"close", punch_close}, {"is_closed", punch_is_closed}, {NULL, NULL}};

int np_tcp_punch_open(lua_State *L) {
  np_class(L, NP_PUNCH_MT, punch_methods);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushcclosure(L, punch_new, 1);
  lua_setfield(L, 1, "tcp_punch");
  return 0;
}
