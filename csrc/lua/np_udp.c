/*
 * np_udp.c - UDP sockets: bind (with SO_REUSEADDR/SO_REUSEPORT and an
 * optional interface), batched receive (recvmmsg, np_udp_recv.c), send, and
 * the receive demux by first byte (RFC 7983 style, see wire.h):
 *   STUN -> answered in C when the socket is a STUN server, else delivered
 *   CONTROL / DATA -> delivered to Lua without the frame byte
 *   a byte an engine registered (touch, punch) -> that engine's input
 *   anything else -> dropped and counted
 * The socket is the hub of np_udp.h: it reaches its engines (touch, punch,
 * send batching) only through the engine table handed to np_udp_open.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <net/if.h>
#include <sys/socket.h>
#include "addr.h"
#include "np_udp.h"
#include "np_udp_recv.h"
#include "stun.h"
#include "wire.h"

np_udp *np_udp_check(lua_State *L, int idx) {
  return (np_udp *)np_handle_check(L, idx, NP_UDP_MT);
}

static void free_timer(uv_handle_t *t) {
  free(t);
}

np_udp_slot *np_udp_slot_of(np_udp *u, const np_udp_engine *e) {
  unsigned i = 0;
  while (u->engines[i] != e) i++;
  return &u->slot[i];
}

/* What engines hold leaves now (before a direct send, at the end of a
 * receive batch, before stopping or closing). */
static void flush_engines(np_udp *u) {
  for (const np_udp_engine *const *e = u->engines; *e; e++)
    if ((*e)->flush) (*e)->flush(u);
}

static void batch_end(np_udp *u) {
  if (u->in_batch)
    for (const np_udp_engine *const *e = u->engines; *e; e++) {
      if ((*e)->batch_end) (*e)->batch_end(u);
      if (uv_is_closing(&u->h.u.handle)) break; /* closed from a callback: flushed then */
    }
  flush_engines(u);
  u->in_batch = 0;
}

static void udp_free(np_handle *h) {
  np_udp *u = (np_udp *)h;
  np_unref(h->ctx->closing ? NULL : h->ctx->L, &u->recv_cb_ref);
  for (const np_udp_engine *const *e = u->engines; *e; e++)
    if ((*e)->free) (*e)->free(u);
  u->in_batch = 0;
  np_recv_close(&u->recv); /* closed with the state (walk_close) */
  if (u->timer) uv_close((uv_handle_t *)u->timer, free_timer);
  u->timer = NULL;
}

static int udp_new(lua_State *L) {
  np_udp *u = (np_udp *)np_handle_new(L, sizeof(np_udp), NP_UDP_MT);
  u->recv_cb_ref = LUA_NOREF;
  u->h.free_fn = udp_free;
  u->engines = lua_touserdata(L, lua_upvalueindex(2));
  for (unsigned i = 0; u->engines[i]; i++)
    for (unsigned k = 0; k < u->engines[i]->nframes; k++)
      u->by_frame[u->engines[i]->frames[k]] = (uint8_t)(i + 1);
  int rc = uv_udp_init_ex(&u->h.ctx->loop, &u->h.u.udp, AF_UNSPEC);
  if (rc < 0) {
    *u->h.ud = NULL;
    free(u);
    return np_push_error(L, rc);
  }
  return 1;
}

/* udp:bind(host, port [, {reuseaddr=, reuseport=, ipv6only=, interface=}]) */
static int udp_bind(lua_State *L) {
  np_udp *u = np_udp_check(L, 1);
  struct sockaddr_storage ss;
  np_parse_addr(L, 2, 3, &ss);
  int reuseaddr, reuseport;
  np_sockopt_flags(L, 4, &reuseaddr, &reuseport);
  int ipv6only = 0;
  const char *ifname = NULL;
  if (lua_istable(L, 4)) {
    lua_getfield(L, 4, "ipv6only");
    ipv6only = lua_toboolean(L, -1);
    lua_getfield(L, 4, "interface");
    ifname = lua_tostring(L, -1);
    lua_pop(L, 2);
    if (ifname) luaL_argcheck(L, strlen(ifname) < IFNAMSIZ, 4, "interface name too long");
  }
  if (u->bound) return np_push_fail(L, "EINVAL", "socket is already bound");
  int fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return np_push_error(L, uv_translate_sys_error(errno));
  int one = 1;
  if ((reuseaddr && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0) ||
      (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) ||
      (ifname &&
       setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, ifname, (socklen_t)strlen(ifname)) < 0)) {
    int err = errno;
    close(fd);
    return np_push_error(L, uv_translate_sys_error(err));
  }
  int rc = uv_udp_open(&u->h.u.udp, fd);
  if (rc < 0) {
    close(fd);
    return np_push_error(L, rc);
  }
  /* uv_udp_open turns SO_REUSEADDR on; on Linux that lets a second socket
   * take the same UDP port silently.  Sharing a port must be asked for. */
  int zero = 0;
  if (!reuseaddr) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &zero, sizeof zero);
  rc = uv_udp_bind(&u->h.u.udp, (struct sockaddr *)&ss, ipv6only ? UV_UDP_IPV6ONLY : 0);
  if (rc < 0) return np_push_error(L, rc);
  u->bound = 1;
  /* dual-stack: IPv4 peers arrive as ::ffff:a.b.c.d (turned back into
   * IPv4 on receipt) and IPv4 destinations are mapped when sent */
  u->dual = ss.ss_family == AF_INET6 && !ipv6only;
  lua_pushboolean(L, 1);
  return 1;
}

static int udp_getsockname(lua_State *L) {
  np_udp *u = np_udp_check(L, 1);
  struct sockaddr_storage ss;
  int len = sizeof ss;
  int rc = uv_udp_getsockname(&u->h.u.udp, (struct sockaddr *)&ss, &len);
  if (rc < 0) return np_push_error(L, rc);
  return np_push_addr(L, (struct sockaddr *)&ss);
}

/* ------------------------------------------------------------------ send */

typedef struct send_req {
  uv_udp_send_t req;
  np_udp *u;
  char data[];
} send_req;

static void on_sent(uv_udp_send_t *req, int status) {
  send_req *sr = (send_req *)req;
  if (status < 0 && status != UV_ECANCELED) sr->u->st.tx_errors++;
  free(sr);
}

const struct sockaddr *np_udp_dest(const np_udp *u, const struct sockaddr *to,
                                   struct sockaddr_storage *tmp) {
  if (!u->dual || to->sa_family != AF_INET || addr_to_mapped(to, tmp) < 0) return to;
  return (const struct sockaddr *)tmp;
}

int np_udp_send_async(np_udp *u, const struct sockaddr *to, int prefix, const void *data,
                      size_t len) {
  struct sockaddr_storage mapped;
  to = np_udp_dest(u, to, &mapped);
  size_t total = len + (prefix >= 0);
  send_req *sr = malloc(sizeof *sr + total);
  if (!sr) {
    u->st.tx_errors++;
    return UV_ENOMEM;
  }
  sr->u = u;
  if (prefix >= 0) sr->data[0] = (char)prefix;
  memcpy(sr->data + (prefix >= 0), data, len);
  uv_buf_t b = uv_buf_init(sr->data, (unsigned)total);
  int rc = uv_udp_send(&sr->req, &u->h.u.udp, &b, 1, to, on_sent);
  if (rc < 0) {
    free(sr);
    u->st.tx_errors++;
    return rc;
  }
  u->st.tx_packets++;
  u->st.tx_queued++;
  u->st.tx_bytes += total;
  return 0;
}

static int routed(np_udp *u, const struct sockaddr *to, int prefix, const void *data, size_t len) {
  for (const np_udp_engine *const *e = u->engines; *e; e++)
    if ((*e)->route && (*e)->route(u, to, prefix, data, len)) return 1;
  return 0;
}

int np_udp_sendto(np_udp *u, const struct sockaddr *to, int prefix, const void *data, size_t len) {
  if (u->in_batch) {
    if (routed(u, to, prefix, data, len)) return 0;
    for (const np_udp_engine *const *e = u->engines; *e; e++)
      if ((*e)->send && (*e)->send(u, to, prefix, data, len)) return 0;
  }
  return np_udp_send_now(u, to, prefix, data, len);
}

int np_udp_send_soon(np_udp *u, const struct sockaddr *to, int prefix, const void *data,
                     size_t len) {
  if (uv_is_closing(&u->h.u.handle)) return np_udp_send_now(u, to, prefix, data, len);
  if (routed(u, to, prefix, data, len)) return 0;
  for (const np_udp_engine *const *e = u->engines; *e; e++)
    if ((*e)->send && (*e)->send(u, to, prefix, data, len)) return 0;
  return np_udp_send_now(u, to, prefix, data, len);
}

int np_udp_send_now(np_udp *u, const struct sockaddr *to, int prefix, const void *data,
                    size_t len) {
  /* libuv would open a new socket for a closing handle ("deferred bind")
   * and then abort in uv__udp_finish_close */
  if (uv_is_closing(&u->h.u.handle)) {
    u->st.tx_errors++;
    return UV_EBADF;
  }
  if (routed(u, to, prefix, data, len)) return 0;
  flush_engines(u);
  uint8_t pfx = (uint8_t)prefix;
  uv_buf_t bufs[2];
  unsigned n = 0;
  if (prefix >= 0) bufs[n++] = uv_buf_init((char *)&pfx, 1);
  bufs[n++] = uv_buf_init((char *)data, (unsigned)len);
  size_t total = len + (prefix >= 0);
  struct sockaddr_storage mapped;
  int rc = uv_udp_try_send(&u->h.u.udp, bufs, n, np_udp_dest(u, to, &mapped));
  if (rc >= 0) {
    u->st.tx_packets++;
    u->st.tx_bytes += total;
    return 0;
  }
  if (rc != UV_EAGAIN) {
    u->st.tx_errors++;
    return rc;
  }
  /* would block: copy and queue; libuv keeps the order */
  return np_udp_send_async(u, to, prefix, data, len);
}

static int kind_prefix(lua_State *L, int idx) {
  static const char *const kinds[] = {"raw", "data", "control", NULL};
  static const int prefixes[] = {-1, WIRE_DATA, WIRE_CONTROL};
  return prefixes[luaL_checkoption(L, idx, "raw", kinds)];
}

int np_udp_send_args(lua_State *L, struct sockaddr_storage *to, const char **data, size_t *len) {
  np_parse_addr(L, 2, 3, to);
  *data = luaL_checklstring(L, 4, len);
  int prefix = kind_prefix(L, 5);
  luaL_argcheck(L, *len + (prefix >= 0) <= 65507, 4, "datagram too large");
  return prefix;
}

/* udp:send(host, port, data [, kind]) -> true | nil, err, code
 * kind "raw" (default) sends data as is; "data"/"control" add the frame byte.
 * Sent at once (never batched), so the caller sees send errors; see
 * udp:send_batched (np_udp_batch.c) for the batched one. */
static int udp_send(lua_State *L) {
  np_udp *u = np_udp_check(L, 1);
  struct sockaddr_storage ss;
  const char *data;
  size_t len;
  int prefix = np_udp_send_args(L, &ss, &data, &len);
  int rc = np_udp_send_now(u, (struct sockaddr *)&ss, prefix, data, len);
  if (rc < 0) return np_push_error(L, rc);
  lua_pushboolean(L, 1);
  return 1;
}

/* --------------------------------------------------------------- receive */

void np_udp_deliver(np_udp *u, const char *kind, const void *data, size_t len,
                    const struct sockaddr *from) {
  lua_State *L = np_cb_push(u->h.ctx, u->recv_cb_ref);
  if (!L) return;
  lua_pushnil(L);
  lua_pushlstring(L, data, len);
  np_push_addr(L, from);
  lua_pushstring(L, kind);
  np_call(u->h.ctx, 5);
}

void np_udp_deliver_named(np_udp *u, const char *kind, const void *data, size_t len,
                          const char *host, int port) {
  lua_State *L = np_cb_push(u->h.ctx, u->recv_cb_ref);
  if (!L) return;
  lua_pushnil(L);
  lua_pushlstring(L, data, len);
  lua_pushstring(L, host);
  lua_pushinteger(L, port);
  lua_pushstring(L, kind);
  np_call(u->h.ctx, 5);
}

static void answer_stun(np_udp *u, const uint8_t *p, size_t n, const struct sockaddr *from) {
  uint8_t out[256];
  int len = stun_answer_binding(p, n, from, u->software[0] ? u->software : NULL, out, sizeof out);
  if (len > 0) {
    u->st.stun_answered++;
    np_udp_sendto(u, from, -1, out, (size_t)len);
  } else {
    /* not a Binding request we answer: hand it to Lua (responses to our
     * own requests, other methods) */
    u->st.stun_rejected++;
    np_udp_deliver(u, "stun", p, n, from);
  }
}

void np_udp_input(np_udp *u, const uint8_t *p, size_t n, const struct sockaddr *from) {
  if (u->raw) {
    np_udp_deliver(u, "raw", p, n, from);
    return;
  }
  if (n == 0) {
    u->st.rx_unknown++;
    return;
  }
  struct sockaddr_storage alias;
  for (const np_udp_engine *const *e = u->engines; *e; e++)
    if ((*e)->source) from = (*e)->source(u, p, n, from, &alias);
  switch (p[0]) {
  case 0x00:
  case 0x01:
  case 0x02:
  case 0x03:
    u->st.rx_stun++;
    if (u->stun_server)
      answer_stun(u, p, n, from);
    else
      np_udp_deliver(u, "stun", p, n, from);
    break;
  case WIRE_CONTROL:
    u->st.rx_control++;
    np_udp_deliver(u, "control", p + 1, n - 1, from);
    break;
  case WIRE_DATA:
    u->st.rx_data++;
    np_udp_deliver(u, "data", p + 1, n - 1, from);
    break;
  default: {
    unsigned i = u->by_frame[p[0]];
    const np_udp_engine *e = i ? u->engines[i - 1] : NULL;
    if (e && e->input) {
      u->slot[i - 1].rx++;
      e->input(u, p, n, from);
    } else {
      u->st.rx_unknown++;
    }
    break;
  }
  }
}

/* The receive path (np_udp_recv.c): each datagram of a recvmmsg batch,
 * then the batch's end (no address) or an error.  Returns whether the rest
 * of the batch is wanted. */
static int on_recv(void *arg, ssize_t nread, const char *data, const struct sockaddr *addr,
                   int truncated) {
  np_udp *u = arg;
  /* closed from a callback inside the batch: the socket is gone, drop the rest */
  if (uv_is_closing(&u->h.u.handle)) return 0;
  if (addr == NULL) batch_end(u); /* the end of the batch, nothing, or an error */
  if (nread < 0) {
    lua_State *L = np_cb_push(u->h.ctx, u->recv_cb_ref);
    if (!L) return 0;
    np_push_cb_status(L, (int)nread);
    np_call(u->h.ctx, 1);
    return 0;
  }
  if (!addr) return 0;
  if (truncated) {
    u->st.rx_truncated++; /* larger than a slot: never happens below 64 KiB */
    return 1;
  }
  u->st.rx_packets++;
  u->st.rx_bytes += (uint64_t)nread;
  u->in_batch = 1; /* the end of the batch follows */
  struct sockaddr_storage from;
  if (u->dual && addr->sa_family == AF_INET6 && addr_copy(&from, addr) == 0) {
    addr_normalize(&from); /* an IPv4 peer of a dual-stack socket */
    addr = (const struct sockaddr *)&from;
  }
  np_udp_input(u, (const uint8_t *)data, (size_t)nread, addr);
  return u->receiving && !uv_is_closing(&u->h.u.handle);
}

/* Receiving needs the socket: unbound, it is bound to 0.0.0.0:0 first
 * (what libuv's uv_udp_recv_start did). */
static int recv_fd(np_udp *u, uv_os_fd_t *fd) {
  if (uv_fileno(&u->h.u.handle, fd) == 0) return 0;
  struct sockaddr_in any = {.sin_family = AF_INET};
  int rc = uv_udp_bind(&u->h.u.udp, (struct sockaddr *)&any, 0);
  return rc < 0 ? rc : uv_fileno(&u->h.u.handle, fd);
}

/* udp:recv_start(cb [, {raw=bool}]); cb(err, data, host, port, kind) */
static int udp_recv_start(lua_State *L) {
  np_udp *u = np_udp_check(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  if (lua_istable(L, 3)) {
    lua_getfield(L, 3, "raw");
    u->raw = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  np_setref(L, &u->recv_cb_ref, 2);
  if (!u->receiving) {
    uv_os_fd_t fd;
    int rc = recv_fd(u, &fd);
    if (rc == 0) rc = np_recv_start(&u->recv, u->h.ctx, fd, on_recv, u);
    if (rc < 0) return np_push_error(L, rc);
    u->receiving = 1;
  }
  np_pin(L, &u->h, 1);
  lua_pushboolean(L, 1);
  return 1;
}

static int udp_recv_stop(lua_State *L) {
  np_udp *u = np_udp_check(L, 1);
  batch_end(u); /* the rest of a batch being handed over is dropped */
  np_recv_stop(u->recv);
  u->receiving = 0;
  np_unpin(&u->h);
  lua_pushboolean(L, 1);
  return 1;
}

/* udp:stun_server(enable [, software]) */
static int udp_stun_server(lua_State *L) {
  np_udp *u = np_udp_check(L, 1);
  u->stun_server = lua_toboolean(L, 2);
  size_t n = 0;
  const char *sw = luaL_optlstring(L, 3, "", &n);
  luaL_argcheck(L, n < sizeof u->software, 3, "software name too long (max 63 bytes)");
  memcpy(u->software, sw, n + 1);
  lua_pushboolean(L, 1);
  return 1;
}

/* ----------------------------------------------------------------- timer */

static void on_deadline(uv_timer_t *t) {
  np_udp *u = t->data;
  if (uv_is_closing(&u->h.u.handle)) return;
  uint64_t now = uv_now(t->loop), next = UINT64_MAX;
  for (const np_udp_engine *const *e = u->engines; *e; e++) {
    if (!(*e)->tick) continue;
    uint64_t d = (*e)->tick(u, now);
    if (d < next) next = d;
    if (uv_is_closing(&u->h.u.handle)) return; /* closed from a callback */
  }
  np_udp_arm(u, next);
}

void np_udp_arm(np_udp *u, uint64_t deadline) {
  if (!u->timer) {
    if (deadline == UINT64_MAX) return;
    u->timer = malloc(sizeof *u->timer);
    if (!u->timer) return;
    uv_timer_init(&u->h.ctx->loop, u->timer);
    u->timer->data = u;
    /* the deadline timer alone must not keep the loop alive: the socket
     * (receiving) does; a pending touch callback pins the socket anyway */
  }
  if (deadline == UINT64_MAX) {
    uv_timer_stop(u->timer);
    return;
  }
  uint64_t now = uv_now(&u->h.ctx->loop);
  uint64_t due = uv_timer_get_due_in(u->timer);
  /* keep an earlier deadline, also one already due whose callback has not
   * run yet (due == 0): replacing it would put off, say, a retransmission
   * until a much later deadline */
  if (uv_is_active((uv_handle_t *)u->timer) && now + due <= deadline) return;
  uv_timer_start(u->timer, on_deadline, deadline > now ? deadline - now : 0, 0);
}

/* ----------------------------------------------------------------- stats */

#define STAT(name)                               \
  do {                                           \
    lua_pushinteger(L, (lua_Integer)u->st.name); \
    lua_setfield(L, -2, #name);                  \
  } while (0)

/* udp:stats(): the socket's counters, then rx_<engine> and each engine's
 * own counters by the names it registered. */
static int udp_stats(lua_State *L) {
  np_udp *u = np_udp_check(L, 1);
  lua_createtable(L, 0, 32);
  STAT(rx_packets);
  STAT(rx_bytes);
  STAT(tx_packets);
  STAT(tx_bytes);
  STAT(tx_queued);
  STAT(tx_errors);
  STAT(rx_stun);
  STAT(rx_control);
  STAT(rx_data);
  STAT(rx_unknown);
  STAT(rx_truncated);
  STAT(stun_answered);
  STAT(stun_rejected);
  for (unsigned i = 0; u->engines[i]; i++) {
    const np_udp_engine *e = u->engines[i];
    if (e->nframes) {
      lua_pushfstring(L, "rx_%s", e->name);
      lua_pushinteger(L, (lua_Integer)u->slot[i].rx);
      lua_rawset(L, -3);
    }
    for (unsigned k = 0; e->counters && e->counters[k] && k < NP_UDP_MAX_COUNTERS; k++) {
      lua_pushinteger(L, (lua_Integer)u->slot[i].counters[k]);
      lua_setfield(L, -2, e->counters[k]);
    }
  }
  return 1;
}

static int udp_fileno(lua_State *L) {
  np_udp *u = np_udp_check(L, 1);
  uv_os_fd_t fd;
  int rc = uv_fileno(&u->h.u.handle, &fd);
  if (rc < 0) return np_push_error(L, rc);
  lua_pushinteger(L, fd);
  return 1;
}

/* Closing (also from a callback inside a batch) closes the fd at once:
 * what the batch queued leaves first. */
static int udp_close(lua_State *L) {
  np_handle *h = np_handle_test(L, 1, NP_UDP_MT);
  if (h) {
    batch_end((np_udp *)h);
    np_recv_close(&((np_udp *)h)->recv); /* the port is free when this returns */
    if (lua_isfunction(L, 2)) np_setref(L, &h->close_cb_ref, 2);
    np_handle_close(h);
  }
  return 0;
}

/* __gc and __close: as for every handle, after what a batch queued. */
static int udp_gc(lua_State *L) {
  void **ud = lua_touserdata(L, 1);
  if (ud && *ud) {
    batch_end((np_udp *)*ud);
    np_recv_close(&((np_udp *)*ud)->recv);
  }
  return np_handle_gc(L);
}

static int udp_is_closed(lua_State *L) {
  lua_pushboolean(L, np_handle_test(L, 1, NP_UDP_MT) == NULL);
  return 1;
}

static const luaL_Reg udp_methods[] = {{"bind", udp_bind},
                                       {"getsockname", udp_getsockname},
                                       {"send", udp_send},
                                       {"recv_start", udp_recv_start},
                                       {"recv_stop", udp_recv_stop},
                                       {"stun_server", udp_stun_server},
                                       {"stats", udp_stats},
                                       {"fileno", udp_fileno},
                                       {"close", udp_close},
                                       {"is_closed", udp_is_closed},
                                       {NULL, NULL}};

/* Called with the ctx as upvalue 1 and the engine table (a light userdata:
 * const np_udp_engine *const[], NULL-terminated) as upvalue 2. */
int np_udp_open(lua_State *L) {
  np_class(L, NP_UDP_MT, udp_methods);
  luaL_getmetatable(L, NP_UDP_MT);
  lua_pushcfunction(L, udp_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, udp_gc);
  lua_setfield(L, -2, "__close");
  /* the engine table (upvalue 2): each engine's methods join the class */
  const np_udp_engine *const *engines = lua_touserdata(L, lua_upvalueindex(2));
  unsigned n = 0;
  for (; engines[n]; n++) {
    luaL_argcheck(L, n < NP_UDP_MAX_ENGINES, 1, "too many UDP engines");
    if (!engines[n]->methods) continue;
    lua_pushvalue(L, lua_upvalueindex(1));
    luaL_setfuncs(L, engines[n]->methods, 1);
  }
  lua_pop(L, 1);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushvalue(L, lua_upvalueindex(2));
  lua_pushcclosure(L, udp_new, 2);
  lua_setfield(L, 1, "udp");
  return 0;
}
