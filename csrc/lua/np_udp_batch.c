/*
 * np_udp_batch.c - batched sends on the receive fast path.
 *
 * The receive path (np_udp_recv.c) hands over each datagram of a
 * recvmmsg(2) batch, and then the end of the batch.  A STUN server answers every
 * request of the batch from C, one sendto(2) each; here those answers (and
 * any other datagram sent from C meanwhile: touch frames and acks, punch
 * checks) are copied into a per-socket queue and leave together with one
 * sendmmsg(2) when the batch ends, or earlier when the queue is full.
 * Engines may also hand over datagrams outside a receive batch
 * (np_udp_send_soon: touch frames sent by udp:touch or a retransmission
 * timer): those leave, together, before the loop next waits for I/O (a
 * uv_prepare handle, started only while something waits).
 *
 * Rules that keep this invisible to the peers:
 *  - nothing waits past the end of its batch, or past the current loop
 *    iteration for a datagram sent outside one: no added latency;
 *  - datagrams leave in the order they were sent: a datagram that cannot
 *    be queued (too large) or that Lua sends itself (np_udp_send_now, which
 *    flushes every engine) flushes the queue first, and when libuv's own send queue is not
 *    empty everything goes behind it;
 *  - the socket is flushed before it stops receiving (the rest of the
 *    batch, and its end call, are then dropped) or closes (the fd goes);
 *  - a full socket buffer (EAGAIN) or a partial sendmmsg result leaves the
 *    rest to libuv's send queue, which keeps the order too.
 *
 * An engine of the UDP hub (np_udp.h): its send hook takes datagrams while
 * the socket is inside a receive batch, its flush hook sends them.
 *   udp:batching([enable]) -> enabled   (on by default)
 *   udp:send_batched(host, port, data [, kind]) -> true | nil, err, code
 * The second is udp:send for a receive callback: the datagram joins the
 * batch like an answer sent from C (one sendmmsg for all at its end), so a
 * hook in Lua that answers every datagram costs no syscall per answer.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* sendmmsg */
#endif
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include "np_udp.h"
#include "addr.h"

/* A window of touch data frames (64 by default) plus acks and answers. */
#define NP_TXQ_SLOTS 80
/* The bytes queued: small at first (STUN answers, acks, punch checks); the
 * first datagram that does not fit grows it once to the large size (a
 * window of 1200-byte touch frames).  A datagram larger than that is sent
 * directly, after the queue. */
#define NP_TXQ_SMALL (8 * 1024)
#define NP_TXQ_LARGE (128 * 1024)

/* sendmmsg calls, datagrams they sent, queued datagrams that failed */
enum { C_BATCHES, C_BATCHED, C_ERRORS };
static const char *const counters[] = {"tx_batches", "tx_batched", "tx_batch_errors", NULL};

typedef struct np_txq {
  int off; /* udp:batching(false) */
  unsigned n;
  size_t used, cap;
  uint8_t *bytes;    /* cap bytes */
  uv_prepare_t soon; /* flushes before the loop waits; started while n > 0 outside a batch */
  int soon_init;
  struct mmsghdr msgs[NP_TXQ_SLOTS];
  struct iovec iov[NP_TXQ_SLOTS];
  struct sockaddr_storage to[NP_TXQ_SLOTS];
} np_txq;

extern const np_udp_engine np_udp_batch_engine;
static void batch_flush(np_udp *u);

static np_txq *txq(np_udp *u) {
  np_udp_slot *sl = np_udp_slot_of(u, &np_udp_batch_engine);
  if (!sl->state) {
    np_txq *q = calloc(1, sizeof(np_txq));
    if (q && !(q->bytes = malloc(NP_TXQ_SMALL))) {
      free(q);
      q = NULL;
    }
    if (q) q->cap = NP_TXQ_SMALL;
    sl->state = q;
  }
  return sl->state;
}

static void on_soon(uv_prepare_t *h) {
  np_udp *u = h->data;
  uv_prepare_stop(h);
  batch_flush(u);
}

/* Make sure what is queued leaves before the loop waits for I/O. */
static void flush_soon(np_udp *u, np_txq *q) {
  if (!q->soon_init) {
    if (uv_prepare_init(&u->h.ctx->loop, &q->soon) < 0) return;
    q->soon.data = u;
    q->soon_init = 1;
  }
  if (!uv_is_active((uv_handle_t *)&q->soon)) uv_prepare_start(&q->soon, on_soon);
}

/* Queue a datagram: 1 when queued, 0 when the caller must send it now
 * (batching off, too large, or no memory; the queue has been flushed
 * first, so the order of datagrams is kept). */
static int batch_put(np_udp *u, const struct sockaddr *to, int prefix, const void *data,
                     size_t len) {
  size_t total = len + (prefix >= 0);
  np_txq *q = txq(u);
  if (!q || q->off) return 0;
  if (total > NP_TXQ_LARGE || (to->sa_family != AF_INET && to->sa_family != AF_INET6)) {
    batch_flush(u);
    return 0;
  }
  if (q->n == NP_TXQ_SLOTS || q->used + total > q->cap) batch_flush(u);
  if (total > q->cap) { /* empty now: the bytes may move */
    uint8_t *big = realloc(q->bytes, NP_TXQ_LARGE);
    if (!big) return 0;
    q->bytes = big;
    q->cap = NP_TXQ_LARGE;
  }
  struct sockaddr_storage mapped;
  to = np_udp_dest(u, to, &mapped);
  unsigned i = q->n++;
  uint8_t *start = q->bytes + q->used, *p = start;
  q->used += total;
  if (prefix >= 0) *p++ = (uint8_t)prefix;
  memcpy(p, data, len);
  memcpy(&q->to[i], to, addr_len(to));
  q->iov[i] = (struct iovec){.iov_base = start, .iov_len = total};
  q->msgs[i] = (struct mmsghdr){.msg_hdr = {.msg_name = &q->to[i],
                                            .msg_namelen = addr_len(to),
                                            .msg_iov = &q->iov[i],
                                            .msg_iovlen = 1}};
  if (!u->in_batch) flush_soon(u, q);
  return 1;
}

static void batch_flush(np_udp *u) {
  np_udp_slot *sl = np_udp_slot_of(u, &np_udp_batch_engine);
  np_txq *q = sl->state;
  if (!q || q->n == 0) return;
  unsigned n = q->n, i = 0;
  /* before any send: np_udp_send_async must not come back here; the bytes
   * stay put until the next batch_put, after this returns */
  q->n = 0;
  q->used = 0;
  if (uv_is_closing(&u->h.u.handle)) { /* see np_udp_send_now */
    u->st.tx_errors += n;
    sl->counters[C_ERRORS] += n;
    return;
  }
  uv_os_fd_t fd;
  /* behind sends libuv still holds, a direct send would overtake them */
  if (u->h.u.udp.send_queue_count == 0 && uv_fileno(&u->h.u.handle, &fd) == 0) {
    while (i < n) {
      int r;
      do r = sendmmsg(fd, q->msgs + i, n - i, 0);
      while (r < 0 && errno == EINTR);
      if (r > 0) {
        sl->counters[C_BATCHES]++;
        sl->counters[C_BATCHED] += (uint64_t)r;
        u->st.tx_packets += (uint64_t)r;
        for (int k = 0; k < r; k++) u->st.tx_bytes += q->iov[i + k].iov_len;
        i += (unsigned)r;
      } else if (r == 0 || errno == EAGAIN || errno == EWOULDBLOCK) {
        break; /* the rest waits in libuv's queue, in order */
      } else {
        u->st.tx_errors++; /* sendmmsg reports the failing datagram: skip it */
        sl->counters[C_ERRORS]++;
        i++;
      }
    }
  }
  for (; i < n; i++)
    np_udp_send_async(u, (struct sockaddr *)&q->to[i], -1, q->iov[i].iov_base, q->iov[i].iov_len);
}

static void txq_free(np_txq *q) {
  free(q->bytes);
  free(q);
}

static void on_soon_closed(uv_handle_t *h) {
  txq_free((np_txq *)((char *)h - offsetof(np_txq, soon)));
}

static void batch_free(np_udp *u) {
  np_udp_slot *sl = np_udp_slot_of(u, &np_udp_batch_engine);
  np_txq *q = sl->state;
  sl->state = NULL;
  if (!q) return;
  if (q->soon_init)
    uv_close((uv_handle_t *)&q->soon, on_soon_closed);
  else
    txq_free(q);
}

/* udp:batching([enable]) -> enabled: whether sends made in C during a
 * receive batch leave together (sendmmsg) at its end.  On by default. */
static int udp_batching(lua_State *L) {
  np_udp *u = np_udp_check(L, 1);
  np_txq *q = np_udp_slot_of(u, &np_udp_batch_engine)->state;
  if (!lua_isnoneornil(L, 2)) {
    int on = lua_toboolean(L, 2);
    if (!q && !on && !(q = txq(u))) return luaL_error(L, "out of memory");
    if (q) q->off = !on;
    if (!on) batch_flush(u);
  }
  lua_pushboolean(L, !q || !q->off);
  return 1;
}

/* udp:send_batched(host, port, data [, kind]) -> true | nil, err, code:
 * inside a receive batch (from a receive callback) the datagram is queued
 * with what C sends during it and leaves at the batch's end, in order with
 * the socket's other sends; a failure then is counted (tx_errors,
 * tx_batch_errors), not returned.  Elsewhere, or with batching off, it is
 * sent at once like udp:send and its error is returned. */
static int udp_send_batched(lua_State *L) {
  np_udp *u = np_udp_check(L, 1);
  struct sockaddr_storage ss;
  const char *data;
  size_t len;
  int prefix = np_udp_send_args(L, &ss, &data, &len);
  int rc = np_udp_sendto(u, (struct sockaddr *)&ss, prefix, data, len);
  if (rc < 0) return np_push_error(L, rc);
  lua_pushboolean(L, 1);
  return 1;
}

static const luaL_Reg methods[] = {
    {"batching", udp_batching}, {"send_batched", udp_send_batched}, {NULL, NULL}};

const np_udp_engine np_udp_batch_engine = {
    .name = "batch",
    .counters = counters,
    .methods = methods,
    .send = batch_put,
    .flush = batch_flush,
    .free = batch_free,
};
