/*
 * np_udp.h - the UDP handle shared by np_udp.c (socket, send, receive demux)
 * and np_udp_touch.c / np_udp_punch.c (the touch and punch engines glued to
 * one socket and one timer).
 */
#ifndef NP_UDP_H
#define NP_UDP_H

#include "natpunch.h"

#define NP_UDP_MT "natpunch.udp"

struct np_touchmap;
struct np_punch;
struct np_txq;

typedef struct np_udp_stats {
  uint64_t rx_packets, rx_bytes, tx_packets, tx_bytes, tx_queued, tx_errors;
  uint64_t tx_batches, tx_batched;   /* sendmmsg calls, datagrams they sent */
  uint64_t rx_stun, rx_control, rx_data, rx_touch, rx_punch, rx_unknown, rx_truncated;
  uint64_t stun_answered, stun_rejected;
  uint64_t touch_delivered, touch_duplicates, touch_acked, touch_failed, touch_retransmits,
      touch_malformed, touch_peers_evicted;
  uint64_t punch_malformed, punch_unmatched, punch_bad_mac;
} np_udp_stats;

typedef struct np_udp {
  np_handle h;
  int recv_cb_ref;
  int raw;                 /* deliver every datagram as is, no demux */
  int receiving;
  int stun_server;         /* answer STUN Binding requests in C */
  char software[64];       /* SOFTWARE attribute of answers, "" for none */
  int bound;
  np_udp_stats st;
  struct np_touchmap *touch;   /* lazily created */
  struct np_punch *punch;      /* lazily created */
  uv_timer_t *timer;           /* deadline timer of touch and punch, lazily */
  int batching;                /* queue sends made in C during a receive batch */
  int in_batch;                /* inside one recvmmsg batch (np_udp_batch.c) */
  struct np_txq *txq;          /* those queued sends, lazily */
} np_udp;

np_udp *np_udp_check(lua_State *L, int idx);
/* Send one datagram now (or queued if the socket would block).  prefix is a
 * frame type byte, or -1 for none.  Returns 0 or a negative uv error. */
int np_udp_sendto(np_udp *u, const struct sockaddr *to, int prefix, const void *data, size_t len);
/* Send one datagram now: the queued sends of the batch go first. */
int np_udp_send_now(np_udp *u, const struct sockaddr *to, int prefix, const void *data, size_t len);
/* Hand a copy of one datagram to libuv's send queue (sent in order, later). */
int np_udp_send_async(np_udp *u, const struct sockaddr *to, int prefix, const void *data,
                      size_t len);
/* Deliver a message to the Lua receive callback. */
void np_udp_deliver(np_udp *u, const char *kind, const void *data, size_t len,
                    const struct sockaddr *from);
/* The deadline timer: (re)arm for an absolute time in ms (UINT64_MAX: stop). */
void np_udp_arm(np_udp *u, uint64_t deadline);

/* np_udp_batch.c: while one recvmmsg batch is handled, small datagrams
 * sent from C (STUN answers, touch and punch frames) wait in a per-socket
 * queue and leave with one sendmmsg(2) at the end of the batch. */
#define NP_TXQ_SLOTS 32       /* twice NP_RECV_BATCH: room for two sends per datagram */
#define NP_TXQ_SLOT 256       /* > STUN_ANSWER_MAX, touch acks, punch checks */
/* Queue a datagram: 1 when queued, 0 when the caller must send it now
 * (too large, or no memory; the queue has been flushed first, so the
 * order of datagrams is kept). */
int np_udp_batch_put(np_udp *u, const struct sockaddr *to, int prefix, const void *data, size_t len);
void np_udp_batch_flush(np_udp *u);   /* send what is queued */
void np_udp_batch_end(np_udp *u);     /* flush, and the batch is over */
void np_udp_batch_free(np_udp *u);

/* np_udp_touch.c */
void np_udp_touch_input(np_udp *u, const uint8_t *frame, size_t len, const struct sockaddr *from);
uint64_t np_udp_touch_tick(np_udp *u, uint64_t now);   /* returns next deadline */
void np_udp_touch_free(np_udp *u);
extern const luaL_Reg np_udp_touch_methods[];

/* np_udp_punch.c */
void np_udp_punch_input(np_udp *u, const uint8_t *frame, size_t len, const struct sockaddr *from);
uint64_t np_udp_punch_tick(np_udp *u, uint64_t now);
void np_udp_punch_free(np_udp *u);
extern const luaL_Reg np_udp_punch_methods[];

#endif
