/*
 * touch.h - reliable small messages over UDP ("touch" in natdemo: send a
 * packet to the target peer reliably).
 *
 * A pure state machine in the style of libjuice's agent: the caller feeds it
 * messages to send, received frames and the time, and pops "actions" (frames
 * to transmit, messages to deliver, outcomes); it reports its next deadline
 * so one timer per socket can drive every peer.  No I/O, no clock, no RNG.
 *
 * One touch_peer holds both directions for one remote endpoint:
 *  - sender: ids 1, 2, 3 ... under a 32-bit epoch chosen by the caller at
 *    random; each message is retransmitted on an RFC 6298 timer with
 *    exponential back-off until acknowledged or max_retries retransmissions
 *    have timed out (then FAILED).
 *  - receiver: delivers each (epoch, id) at most once, acknowledges every
 *    data frame, duplicates included; one ack answers every data frame
 *    input since the previous ack was popped and also carries the ranges of
 *    ids delivered so far (so a lost ack is repaired by the next one).
 *
 * Guarantees (docs/PROTOCOL.md, "Touch"): ACKED means the peer delivered the
 * message exactly once; FAILED means it was delivered at most once; nothing
 * is delivered twice within an epoch while the receiver keeps its state.
 *
 * Wire (big-endian):
 *   TOUCH      [0x06][flags][epoch u32][id u32][xmit u8][payload ...]
 *   TOUCH_ACK  [0x07][flags][epoch u32][id u32][xmit u8]
 *              with flag TOUCH_ACK_F_RANGES: [n u8] n x [first u32][count u16]
 * TOUCH flags: sent as 0, ignored on receipt.  xmit: 0 for the first transmission,
 * +1 per retransmission; the ack echoes the epoch, id and xmit of the frame it
 * answers, so every ack yields an unambiguous RTT sample (this replaces Karn's
 * rule, as QUIC's packet numbers do).
 */
#ifndef NATPUNCH_TOUCH_H
#define NATPUNCH_TOUCH_H

#include <stddef.h>
#include <stdint.h>

#define TOUCH_HEADER_LEN   11   /* type, flags, epoch, id, xmit */
#define TOUCH_ACK_LEN      11   /* the shortest ack: no ranges */
#define TOUCH_ACK_F_RANGES 0x01 /* ack flag: ranges of delivered ids follow */
#define TOUCH_ACK_RANGES   16   /* at most this many ranges per ack */
#define TOUCH_ACK_MAX      (TOUCH_ACK_LEN + 1 + 6 * TOUCH_ACK_RANGES)
/* Receive window in ids.  A sender never has an id in flight that is
 * max_in_flight or more above its oldest unresolved id, so a window at least
 * that wide never skips an id the sender may still get acknowledged. */
#define TOUCH_WINDOW       1024
#define TOUCH_MAX_RETRIES  15 /* xmit counter history kept per message */
#define TOUCH_RX_BUFS      4  /* deliveries waiting to be popped */
#define TOUCH_INITIAL_CWND 10 /* messages: RFC 6928's initial window */
/* Largest UDP payload over IPv4 (65535 - 20 - 8) less our header. */
#define TOUCH_PAYLOAD_LIMIT (65507 - TOUCH_HEADER_LEN)

/* Error codes: XX(name, value, message), negative like libuv's (the same
 * X-macro pattern as STUN_ERRNO_MAP).
 *   EINVAL     bad argument or configuration
 *   E2BIG      payload larger than max_payload
 *   EFULL      max_in_flight messages unresolved: retry later
 *   EMALFORMED not a TOUCH/TOUCH_ACK frame, truncated, bad field
 *   ESTALE     ack for another epoch (an earlier incarnation)
 *   EBUSY      no free receive buffer: frame dropped unacked
 *   ENOMEM     touch_send could not allocate the sender's slots
 *   ETIMEDOUT  a message was never acknowledged (TOUCH_FAILED) */
#define TOUCH_ERRNO_MAP(XX)                           \
  XX(EINVAL, -1, "invalid argument")                  \
  XX(E2BIG, -2, "message too long")                   \
  XX(EFULL, -3, "too many messages in flight")        \
  XX(EMALFORMED, -4, "malformed touch frame")         \
  XX(ESTALE, -5, "acknowledgement for another epoch") \
  XX(EBUSY, -6, "receive buffers full")               \
  XX(ENOMEM, -7, "out of memory")                     \
  XX(ETIMEDOUT, -8, "touch was not acknowledged")

enum touch_error {
  TOUCH_OK = 0,
#define XX(name, value, msg) TOUCH_##name = value,
  TOUCH_ERRNO_MAP(XX)
#undef XX
};

/* "EFULL" etc.; "UNKNOWN" for a value not in the map. */
const char *touch_errname(int err);
const char *touch_strerror(int err);

typedef struct touch_config {
  uint32_t initial_rto_ms; /* RTO before the first RTT sample */
  uint32_t min_rto_ms;
  uint32_t max_rto_ms;
  unsigned max_retries;   /* retransmissions before FAILED, <= TOUCH_MAX_RETRIES */
  unsigned max_in_flight; /* 1 .. TOUCH_WINDOW */
  size_t max_payload;     /* bytes, <= TOUCH_PAYLOAD_LIMIT */
} touch_config;

/* initial 250 ms, min 50 ms, max 3000 ms, 6 retries, 64 in flight, 1200 B
 * (docs/PROTOCOL.md explains each). */
void touch_config_default(touch_config *cfg);
int touch_config_check(const touch_config *cfg); /* 0 or TOUCH_EINVAL */
/* Upper bound on the time from a message's first transmission to its
 * FAILED: (max_retries + 1) * max_rto_ms.  A receiver that forgets an idle
 * peer sooner than this (plus the path delay) may deliver a late
 * retransmission twice. */
uint64_t touch_config_lifetime_ms(const touch_config *cfg);

typedef struct touch_peer touch_peer;

/* NULL if cfg fails touch_config_check() or memory is short.
 *
 * epoch must be fresh for every touch_peer (32 random bits, e.g. from
 * uv_random): ids restart at 1, and a receiver that still remembers an
 * earlier touch_peer under the same epoch would take the new messages for
 * duplicates, acknowledge them and never deliver them.
 *
 * Memory is allocated twice at most and never grows: here about 5 KB plus
 * TOUCH_RX_BUFS * max_payload (the receiver), and at the first touch_send
 * max_in_flight * (max_payload + 200) bytes (the sender's slots). */
touch_peer *touch_peer_new(const touch_config *cfg, uint32_t epoch);
void touch_peer_free(touch_peer *p);
uint32_t touch_peer_epoch(const touch_peer *p);

/* Seed the RTT estimator (e.g. with the punch RTT) if it has no sample yet. */
void touch_seed_rtt(touch_peer *p, uint32_t rtt_ms);

/* Queue a message and its first TRANSMIT.  Returns 0 and the id, TOUCH_E2BIG,
 * TOUCH_EFULL, TOUCH_ENOMEM or TOUCH_EINVAL.  Up to max_in_flight messages
 * are accepted; at most cwnd of them are on the wire (transmitted, not yet
 * resolved), the others wait and go out, oldest first, as acks open the
 * window: slow start from 10 messages, congestion avoidance past ssthresh,
 * a window of one after a retransmission timeout (RFC 5681, section 3.1). */
int touch_send(touch_peer *p, uint64_t now, const uint8_t *data, size_t len, uint32_t *id_out);

/* A received TOUCH or TOUCH_ACK frame (first byte included).  Returns 0 when
 * the frame was used (a duplicate included), else a negative code; the
 * frame is never kept. */
int touch_input(touch_peer *p, uint64_t now, const uint8_t *frame, size_t len);

/* Retransmit or fail the messages whose deadline is <= now. */
void touch_tick(touch_peer *p, uint64_t now);

/* Earliest deadline in caller time, UINT64_MAX if none. */
uint64_t touch_next_deadline(const touch_peer *p);

typedef enum touch_action_kind {
  TOUCH_TRANSMIT = 1, /* data/len: a whole frame to send to the peer */
  TOUCH_DELIVER,      /* data/len: a payload for the application, once */
  TOUCH_ACKED,        /* id was delivered; rtt_ms of the answered transmission */
  TOUCH_FAILED        /* id was not acknowledged in time */
} touch_action_kind;

typedef struct touch_action {
  touch_action_kind kind;
  uint32_t id;
  const uint8_t *data; /* valid until the next touch_send/input/tick/free */
  size_t len;
  uint32_t rtt_ms;
} touch_action;

/* 1 and *out filled if an action was pending, 0 otherwise.  Pop until 0
 * after every call: a message's slot is reused only once its ACKED/FAILED
 * has been popped, and deliveries wait in TOUCH_RX_BUFS buffers.  Owed acks
 * come last (a TRANSMIT of a TOUCH_ACK frame, at most TOUCH_ACK_MAX bytes).
 * ACKED's rtt_ms: for the message the ack names, of the transmission it
 * echoes; for one acknowledged by a range, since its latest transmission. */
int touch_pop(touch_peer *p, touch_action *out);

/* touch_pop with flags: TOUCH_POP_HOLD_ACKS keeps the owed acks back (a
 * caller inside a receive batch pops everything else after each frame and
 * the acks once at the end, so one ack answers the whole batch). */
#define TOUCH_POP_HOLD_ACKS 1u
/* TOUCH_POP_ONLY_ACKS returns only owed acks, whatever else is queued (a
 * caller about to send its own frame to the peer lets the acks go first),
 * and none while a delivery is still to be popped: an ack never leaves
 * before the messages it covers have been handed over. */
#define TOUCH_POP_ONLY_ACKS 2u
int touch_pop_ex(touch_peer *p, touch_action *out, unsigned flags);

/* 1 if an ack is owed (touch_pop would return it once the queue is empty). */
int touch_acks_due(const touch_peer *p);

/* 1 if no message is in flight and no action is pending. */
int touch_idle(const touch_peer *p);

typedef struct touch_stats {
  uint64_t sent;          /* messages accepted by touch_send */
  uint64_t transmissions; /* data frames queued, first ones included */
  uint64_t retransmitted;
  uint64_t acked;
  uint64_t failed;
  uint64_t delivered;
  uint64_t duplicates; /* data frames already delivered (re-acked) */
  uint64_t too_old;    /* data frames below the receive window (re-acked) */
  uint64_t acks_sent;  /* ack frames popped (one may answer several data frames) */
  uint64_t stale_acks; /* acks for another epoch or a resolved id */
  uint64_t rx_busy;    /* data frames dropped: no receive buffer */
  uint64_t malformed;
  uint64_t epoch_changes;     /* the peer restarted with a new epoch */
  uint64_t congestion_events; /* losses (timeout or fast retransmit) that cut the window */
  uint64_t fast_retransmits;  /* retransmitted before the timeout: overtaken 3 times */
  uint32_t srtt_ms;           /* 0 until the first sample */
  uint32_t rttvar_ms;
  uint32_t rto_ms;    /* RTO a new message would start with */
  unsigned in_flight; /* slots in use (sent or waiting for the window) */
  unsigned cwnd;      /* congestion window, messages */
  unsigned ssthresh;
} touch_stats;

void touch_get_stats(const touch_peer *p, touch_stats *out);
/* The counters of touch_stats (sent .. fast_retransmits) in place, without
 * the derived fields (srtt_ms .. ssthresh, left 0): a read without a copy
 * for a caller that follows one counter across a call (the binding's
 * per-frame duplicate count).  Valid as long as p. */
const touch_stats *touch_counters(const touch_peer *p);

#endif
