/*
 * np_udp.h - the UDP socket as a hub, and the interface of its engines.
 *
 * np_udp.c owns the socket: bind, send, the receive demux by first byte,
 * one deadline timer, the socket's counters.  Everything else that lives on
 * a socket is an engine (np_udp_touch.c, np_udp_punch.c, np_udp_batch.c,
 * np_udp_relay.c, np_udp_path.c):
 * a row of the engine table given to np_udp_open by the module's
 * registration (np_module.c), in the shape of libjuice's conn_mode_entry_t.
 * Dependencies point one way: engines call the socket (the functions
 * below); the socket calls engines only through their hooks and never
 * names one.  A new engine is a new file and one table row.
 */
#ifndef NP_UDP_H
#define NP_UDP_H

#include "natpunch.h"

#define NP_UDP_MT "natpunch.udp"

#define NP_UDP_MAX_ENGINES  8
#define NP_UDP_MAX_COUNTERS 16
#define NP_UDP_MAX_FRAMES   4

typedef struct np_udp np_udp;

typedef struct np_udp_engine {
  const char *name;
  /* First bytes of the datagrams it takes (wire.h): those reach input,
   * frame byte included, and count as rx_<name>. */
  uint8_t frames[NP_UDP_MAX_FRAMES];
  unsigned nframes;
  /* Its own counters, NULL-terminated names (at most NP_UDP_MAX_COUNTERS):
   * the values are np_udp_slot(u, engine)->counters[i], and udp:stats()
   * reports them under these names. */
  const char *const *counters;
  /* Methods added to the socket class (upvalue 1: the ctx), or NULL. */
  const luaL_Reg *methods;
  /* Every hook may be NULL. */
  void (*input)(np_udp *u, const uint8_t *frame, size_t len, const struct sockaddr *from);
  /* The deadline timer fired at `now`: do what is due, return the next
   * deadline (UINT64_MAX: none). */
  uint64_t (*tick)(np_udp *u, uint64_t now);
  /* A datagram sent from C inside a receive batch (np_udp_sendto), or at
   * any time by np_udp_send_soon: 1 when the engine took it (and sends it
   * by its flush at the latest; outside a batch, before the loop next
   * waits for I/O). */
  int (*send)(np_udp *u, const struct sockaddr *to, int prefix, const void *data, size_t len);
  /* Every datagram about to leave toward `to` (from C or Lua) is offered
   * here first: 1 when the engine sent it another way (the TURN relay
   * engine wraps it for its server, np_udp_relay.c). */
  int (*route)(np_udp *u, const struct sockaddr *to, int prefix, const void *data, size_t len);
  /* Every datagram received (before the demux) is offered here first: the
   * address it counts as coming from, `from` itself or one the engine
   * wrote into *out (np_udp_path.c: a peer's new path speaks for it). */
  const struct sockaddr *(*source)(np_udp *u, const uint8_t *p, size_t n,
                                   const struct sockaddr *from, struct sockaddr_storage *out);
  /* Send what it holds now: before a direct send, at the end of a receive
   * batch, before the socket stops receiving or closes. */
  void (*flush)(np_udp *u);
  /* A receive batch is over (also at recv_stop and close): hand what was
   * collected during it to Lua.  Called before the flush hooks, so what
   * engines hold for the batch (acks) leaves after Lua has seen it. */
  void (*batch_end)(np_udp *u);
  /* The socket is closed: free the engine's state. */
  void (*free)(np_udp *u);
} np_udp_engine;

/* What a socket keeps for each engine. */
typedef struct np_udp_slot {
  void *state; /* the engine's own, created by the engine */
  uint64_t rx; /* datagrams the demux gave it */
  uint64_t counters[NP_UDP_MAX_COUNTERS];
} np_udp_slot;

typedef struct np_udp_stats {
  uint64_t rx_packets, rx_bytes, tx_packets, tx_bytes, tx_queued, tx_errors;
  uint64_t rx_stun, rx_control, rx_data, rx_unknown, rx_truncated;
  uint64_t stun_answered, stun_rejected;
} np_udp_stats;

struct np_udp {
  np_handle h;
  int recv_cb_ref;
  int raw; /* deliver every datagram as is, no demux */
  int receiving;
  struct np_recv *recv; /* the receive path (np_udp_recv.c), from the first recv_start */
  int stun_server;      /* answer STUN Binding requests in C */
  char software[64];    /* SOFTWARE attribute of answers, "" for none */
  int bound;
  int dual;     /* AF_INET6 without IPV6_V6ONLY: IPv4 as ::ffff:a.b.c.d */
  int in_batch; /* inside one recvmmsg batch (np_udp_recv.c): engines may hold sends */
  np_udp_stats st;
  uv_timer_t *timer;                   /* the engines' deadline timer, lazily */
  const np_udp_engine *const *engines; /* NULL-terminated, from np_udp_open */
  uint8_t by_frame[256];               /* first byte -> engine index + 1, 0: none */
  np_udp_slot slot[NP_UDP_MAX_ENGINES];
};

np_udp *np_udp_check(lua_State *L, int idx);
/* The slot of engine e on this socket (e must be in its table). */
np_udp_slot *np_udp_slot_of(np_udp *u, const np_udp_engine *e);
/* Send one datagram from C: an engine may hold it until the end of the
 * receive batch.  prefix is a frame type byte, or -1 for none.  Returns 0
 * or a negative uv error. */
int np_udp_sendto(np_udp *u, const struct sockaddr *to, int prefix, const void *data, size_t len);
/* The address to hand the kernel for `to`: on a dual-stack socket an IPv4
 * destination as its IPv4-mapped form (in *tmp), else `to` itself. */
const struct sockaddr *np_udp_dest(const np_udp *u, const struct sockaddr *to,
                                   struct sockaddr_storage *tmp);
/* Send one datagram from C soon: an engine may hold it until the end of the
 * receive batch, or outside one until the end of this loop iteration (it
 * then leaves with the others sent meanwhile, one sendmmsg). */
int np_udp_send_soon(np_udp *u, const struct sockaddr *to, int prefix, const void *data,
                     size_t len);
/* Send one datagram now: what engines hold goes first. */
int np_udp_send_now(np_udp *u, const struct sockaddr *to, int prefix, const void *data, size_t len);
/* Hand a copy of one datagram to libuv's send queue (sent in order, later). */
int np_udp_send_async(np_udp *u, const struct sockaddr *to, int prefix, const void *data,
                      size_t len);
/* The arguments (host, port, data [, kind]) at 2..5 of udp:send and its
 * kin: raises on bad ones; returns the frame byte (-1 for none). */
int np_udp_send_args(lua_State *L, struct sockaddr_storage *to, const char **data, size_t *len);
/* Handle one datagram as if it had just been received from `from` (the
 * receive demux): the relay engine passes on what its server relayed. */
void np_udp_input(np_udp *u, const uint8_t *p, size_t n, const struct sockaddr *from);
/* Deliver a message to the Lua receive callback. */
void np_udp_deliver(np_udp *u, const char *kind, const void *data, size_t len,
                    const struct sockaddr *from);
/* The same with the sender's address already as text (an engine that keeps
 * it per endpoint saves formatting it for every message). */
void np_udp_deliver_named(np_udp *u, const char *kind, const void *data, size_t len,
                          const char *host, int port);
/* The deadline timer: (re)arm for an absolute time in ms (UINT64_MAX: stop).
 * Only ever moves a pending deadline earlier; each tick asks every engine. */
void np_udp_arm(np_udp *u, uint64_t deadline);

#endif
