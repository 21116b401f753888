/*
 * np_udp_batch.c - batched sends on the receive fast path.
 *
 * libuv (UV_UDP_RECVMMSG) calls the receive callback once per datagram of
 * a recvmmsg(2) batch, flagged UV_UDP_MMSG_CHUNK, and then once more with
 * nread 0, no address and UV_UDP_MMSG_FREE.  A STUN server answers every
 * request of the batch from C, one sendto(2) each; here those answers (and
 * any other small datagram sent from C meanwhile: touch acks, punch
 * checks) are copied into a per-socket queue and leave together with one
 * sendmmsg(2) when the batch ends, or earlier when the queue is full.
 *
 * Rules that keep this invisible to the peers:
 *  - nothing waits past the end of its batch: no added latency;
 *  - datagrams leave in the order they were sent: a datagram that cannot
 *    be queued (too large) or that Lua sends itself (np_udp_send_now, which
 *    flushes every engine) flushes the queue first, and when libuv's own send queue is not
 *    empty everything goes behind it;
 *  - the socket is flushed before it stops receiving (libuv then ends the
 *    batch without the UV_UDP_MMSG_FREE call) or closes (the fd goes);
 *  - a full socket buffer (EAGAIN) or a partial sendmmsg result leaves the
 *    rest to libuv's send queue, which keeps the order too.
 *
 * An engine of the UDP hub (np_udp.h): its send hook takes datagrams while
 * the socket is inside a receive batch, its flush hook sends them.
 *   udp:batching([enable]) -> enabled   (on by default)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE   /* sendmmsg */
#endif
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include "np_udp.h"
#include "addr.h"

#define NP_TXQ_SLOTS 32 /* twice NP_RECV_BATCH: room for two sends per datagram */
#define NP_TXQ_SLOT 256 /* > STUN_ANSWER_MAX, touch acks, punch checks */

enum { C_BATCHES, C_BATCHED }; /* sendmmsg calls, datagrams they sent */
static const char *const counters[] = {"tx_batches", "tx_batched", NULL};

typedef struct np_txq {
  int off; /* udp:batching(false) */
  unsigned n;
  struct mmsghdr msgs[NP_TXQ_SLOTS];
  struct iovec iov[NP_TXQ_SLOTS];
  struct sockaddr_storage to[NP_TXQ_SLOTS];
  uint8_t data[NP_TXQ_SLOTS][NP_TXQ_SLOT];
} np_txq;

extern const np_udp_engine np_udp_batch_engine;
static void batch_flush(np_udp *u);

static np_txq *txq(np_udp *u) {
  np_udp_slot *sl = np_udp_slot_of(u, &np_udp_batch_engine);
  if (!sl->state) sl->state = calloc(1, sizeof(np_txq));
  return sl->state;
}

/* Queue a datagram: 1 when queued, 0 when the caller must send it now
 * (batching off, too large, or no memory; the queue has been flushed
 * first, so the order of datagrams is kept). */
static int batch_put(np_udp *u, const struct sockaddr *to, int prefix, const void *data, size_t len) {
  size_t total = len + (prefix >= 0);
  np_txq *q = txq(u);
  if (!q || q->off) return 0;
  if (total > NP_TXQ_SLOT || (to->sa_family != AF_INET && to->sa_family != AF_INET6)) {
    batch_flush(u);
    return 0;
  }
  if (q->n == NP_TXQ_SLOTS) batch_flush(u);
  struct sockaddr_storage mapped;
  to = np_udp_dest(u, to, &mapped);
  unsigned i = q->n++;
  uint8_t *p = q->data[i];
  if (prefix >= 0) *p++ = (uint8_t)prefix;
  memcpy(p, data, len);
  memcpy(&q->to[i], to, addr_len(to));
  q->iov[i] = (struct iovec){.iov_base = q->data[i], .iov_len = total};
  q->msgs[i] = (struct mmsghdr){.msg_hdr = {
    .msg_name = &q->to[i], .msg_namelen = addr_len(to), .msg_iov = &q->iov[i], .msg_iovlen = 1}};
  return 1;
}

static void batch_flush(np_udp *u) {
  np_udp_slot *sl = np_udp_slot_of(u, &np_udp_batch_engine);
  np_txq *q = sl->state;
  if (!q || q->n == 0) return;
  unsigned n = q->n, i = 0;
  q->n = 0;   /* before any send: np_udp_send_async must not come back here */
  if (uv_is_closing(&u->h.u.handle)) {   /* see np_udp_send_now */
    u->st.tx_errors += n;
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
        break;   /* the rest waits in libuv's queue, in order */
      } else {
        u->st.tx_errors++;   /* sendmmsg reports the failing datagram: skip it */
        i++;
      }
    }
  }
  for (; i < n; i++)
    np_udp_send_async(u, (struct sockaddr *)&q->to[i], -1, q->data[i], q->iov[i].iov_len);
}

static void batch_free(np_udp *u) {
  np_udp_slot *sl = np_udp_slot_of(u, &np_udp_batch_engine);
  free(sl->state);
  sl->state = NULL;
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

static const luaL_Reg methods[] = {
  {"batching", udp_batching},
  {NULL, NULL}
};

const np_udp_engine np_udp_batch_engine = {
  .name = "batch",
  .counters = counters,
  .methods = methods,
  .send = batch_put,
  .flush = batch_flush,
  .free = batch_free,
};
