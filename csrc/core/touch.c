/*
 * touch.c - reliable small messages over UDP (see touch.h and the "Touch"
 * section of docs/PROTOCOL.md).
 */
#include "touch.h"
#include "wire.h"

#include <stdlib.h>
#include <string.h>

/*
 *   0      1      2             6             10     11
 *  +------+------+-------------+-------------+------+------------...
 *  | 0x06 |flags | epoch (u32) |  id (u32)   | xmit | payload
 *  +------+------+-------------+-------------+------+------------...
 *  | 0x07 |flags | epoch (u32) |  id (u32)   | xmit | [n u8] n x [first u32][count u16]
 *  +------+------+-------------+-------------+------+------------...   (TOUCH_ACK)
 * An ack with flag TOUCH_ACK_F_RANGES also acknowledges the n ranges of ids
 * [first, first + count) that follow (docs/PROTOCOL.md, "Touch").
 */
#define OFF_FLAGS   1
#define OFF_EPOCH   2
#define OFF_ID      6
#define OFF_XMIT    10
#define OFF_NRANGES 11
#define RANGE_LEN   6 /* first u32, count u16 */

/* RFC 6298 section 2: clock granularity G.  Our clock counts milliseconds. */
#define CLOCK_G_US  1000u
#define WINDOW_MASK (TOUCH_WINDOW - 1u)
#define SERIAL_HALF 0x80000000u /* RFC 1982 serial number comparison */

enum { SLOT_FREE = 0, SLOT_INFLIGHT, SLOT_DONE };
enum { Q_TX_DATA = 1, Q_TX_ACK, Q_DELIVER, Q_ACKED, Q_FAILED };

typedef struct touch_slot {
  uint8_t state;
  uint8_t unsent;     /* accepted, waiting for room in the congestion window */
  uint8_t xmit;       /* number of the latest transmission */
  uint8_t tx_pending; /* a Q_TX_DATA entry for this slot is queued */
  uint8_t passed;     /* acks of messages sent after its latest transmission */
  uint32_t id;
  uint32_t rto_ms; /* timeout armed after the latest transmission */
  uint64_t deadline;
  uint64_t sent_at[TOUCH_MAX_RETRIES + 1];
  size_t frame_len;
  uint8_t *frame; /* max_payload + TOUCH_HEADER_LEN bytes */
} touch_slot;

typedef struct touch_entry {
  uint8_t kind;
  uint16_t index; /* slot or receive buffer */
  uint32_t id;
  uint32_t rtt_ms;
} touch_entry;

/* Duplicate filter of one sender epoch: ids below base are done, ids in
 * [base, base + TOUCH_WINDOW) have a bit at id % TOUCH_WINDOW. */
typedef struct rx_filter {
  int valid;
  uint32_t epoch;
  uint32_t base;
  uint64_t bits[TOUCH_WINDOW / 64];
  int has_top; /* top: the highest id delivered */
  uint32_t top;
  /* One ack is owed for every data frame since the last one popped; it
   * names the latest of them (id, xmit: the RTT sample) and carries the
   * delivered ranges at the time it is popped. */
  int ack_due;
  uint32_t ack_id;
  uint8_t ack_xmit;
  uint32_t ack_budget; /* bytes of the frames it answers: its size limit */
} rx_filter;

struct touch_peer {
  touch_config cfg;
  uint32_t epoch;
  uint32_t next_id;
  /* Slots form a ring indexed by id % nslots: every id in flight is less
   * than max_in_flight above the oldest (the in-flight rule), so their
   * indexes differ.  tail: no id below it is unresolved; unsent_from: the
   * ids from there on wait for the window (always a suffix). */
  uint32_t tail, unsent_from;
  unsigned slots_used;
  unsigned nslots; /* 0 until the first touch_send, then max_in_flight */
  touch_slot *slots;
  uint8_t *frames;      /* one block holding every slot's frame */
  uint64_t *acked_sent; /* nslots: send times of the messages one ack resolved */

  int have_rtt;
  uint64_t srtt_us;
  uint64_t rttvar_us;

  /* Congestion window in messages, in the spirit of RFC 5681 (slow start,
   * congestion avoidance, one message after a timeout): at most cwnd
   * messages transmitted and unresolved; the others wait, unsent. */
  unsigned cwnd, ssthresh, cwnd_acc;
  unsigned outstanding;   /* transmitted and not yet acked or failed */
  uint64_t recover_after; /* one window reduction per loss event */

  /* The current and the previous sender epoch: frames of the old one still
   * in the network after a restart are filtered, not taken for a third. */
  rx_filter cur, prev;
  uint8_t *rx_buf;
  size_t rx_len[TOUCH_RX_BUFS];
  uint8_t rx_used[TOUCH_RX_BUFS];

  touch_entry *queue; /* ring; capacity bounds every kind of entry */
  unsigned qcap, qhead, qcount;
  uint8_t ack_frame[TOUCH_ACK_MAX]; /* the last ack popped */

  touch_stats stats;
};

const char *touch_errname(int err) {
  switch (err) {
#define XX(name, value, msg) \
  case value: return #name;
    TOUCH_ERRNO_MAP(XX)
#undef XX
  }
  return "UNKNOWN";
}

const char *touch_strerror(int err) {
  switch (err) {
#define XX(name, value, msg) \
  case value: return msg;
    TOUCH_ERRNO_MAP(XX)
#undef XX
  }
  return "unknown touch error";
}

/*
 * Defaults, and why:
 *  - initial RTO 250 ms instead of RFC 6298's 1 s (section 2.1): the path
 *    has just been punched, so it answers, and a spurious retransmission
 *    costs one small duplicate datagram (filtered by the receiver), not a
 *    collapsed congestion window as in TCP.  250 ms still exceeds almost
 *    every Internet RTT, and a loss on a LAN or loopback costs 250 ms, not
 *    1 s.  Callers that know the RTT (from punching) use touch_seed_rtt().
 *  - min RTO 50 ms instead of 1 s (section 2.4): acks are never delayed
 *    here (TCP's floor covers delayed ACKs), and on loopback SRTT is ~0, so
 *    the floor only has to cover event-loop scheduling jitter.
 *  - max RTO 3 s and 6 retries: FAILED after at most 7 * 3 s and typically
 *    0.25+0.5+1+2+3+3+3 = 12.75 s without answer: long enough to ride out a
 *    short outage, short enough for an application to react.
 *  - 64 in flight; 1200-byte payloads: 1211-byte frames fit the 1232-byte
 *    UDP payload any IPv6 path carries (RFC 8200 section 5: 1280-byte
 *    minimum MTU), the size QUIC relies on too (RFC 9000 section 14).
 */
void touch_config_default(touch_config *cfg) {
  cfg->initial_rto_ms = 250;
  cfg->min_rto_ms = 50;
  cfg->max_rto_ms = 3000;
  cfg->max_retries = 6;
  cfg->max_in_flight = 64;
  cfg->max_payload = 1200;
}

int touch_config_check(const touch_config *cfg) {
  if (cfg == NULL) return TOUCH_EINVAL;
  if (cfg->min_rto_ms == 0 || cfg->min_rto_ms > cfg->max_rto_ms) return TOUCH_EINVAL;
  if (cfg->initial_rto_ms < cfg->min_rto_ms || cfg->initial_rto_ms > cfg->max_rto_ms)
    return TOUCH_EINVAL;
  if (cfg->max_retries > TOUCH_MAX_RETRIES) return TOUCH_EINVAL;
  if (cfg->max_in_flight == 0 || cfg->max_in_flight > TOUCH_WINDOW) return TOUCH_EINVAL;
  if (cfg->max_payload > TOUCH_PAYLOAD_LIMIT) return TOUCH_EINVAL;
  return TOUCH_OK;
}

uint64_t touch_config_lifetime_ms(const touch_config *cfg) {
  return (uint64_t)(cfg->max_retries + 1) * cfg->max_rto_ms;
}

touch_peer *touch_peer_new(const touch_config *cfg, uint32_t epoch) {
  if (touch_config_check(cfg) != TOUCH_OK) return NULL;
  touch_peer *p = calloc(1, sizeof *p);
  if (p == NULL) return NULL;
  p->cfg = *cfg;
  p->epoch = epoch;
  p->next_id = 1;
  p->tail = 1;
  p->unsent_from = 1;
  /* RFC 6928's initial window of 10 segments; ssthresh starts "arbitrarily
   * high" (RFC 5681 section 3.1): the whole window */
  p->cwnd = cfg->max_in_flight < TOUCH_INITIAL_CWND ? cfg->max_in_flight : TOUCH_INITIAL_CWND;
  p->ssthresh = cfg->max_in_flight;
  p->rx_buf = malloc(cfg->max_payload * TOUCH_RX_BUFS + 1);
  /* At most one pending transmit and one outcome per slot, plus deliveries
   * (bounded by the buffers): the ring never overflows.  Acks are not queued
   * (one flag per epoch filter). */
  p->qcap = 2 * cfg->max_in_flight + TOUCH_RX_BUFS;
  p->queue = calloc(p->qcap, sizeof *p->queue);
  if (p->rx_buf == NULL || p->queue == NULL) {
    free(p->rx_buf);
    free(p->queue);
    free(p);
    return NULL;
  }
  return p;
}

/* The sender's slots are allocated at the first touch_send, once: a peer
 * that only receives (any source can make the caller create one) costs a
 * few kilobytes, not max_in_flight full frames. */
static int sender_alloc(touch_peer *p) {
  if (p->nslots > 0) return TOUCH_OK;
  size_t frame_cap = p->cfg.max_payload + TOUCH_HEADER_LEN;
  p->slots = calloc(p->cfg.max_in_flight, sizeof *p->slots);
  p->frames = malloc(frame_cap * p->cfg.max_in_flight);
  p->acked_sent = malloc(p->cfg.max_in_flight * sizeof *p->acked_sent);
  if (p->slots == NULL || p->frames == NULL || p->acked_sent == NULL) {
    free(p->slots);
    free(p->frames);
    free(p->acked_sent);
    p->slots = NULL;
    p->frames = NULL;
    p->acked_sent = NULL;
    return TOUCH_ENOMEM;
  }
  for (unsigned i = 0; i < p->cfg.max_in_flight; i++) p->slots[i].frame = p->frames + i * frame_cap;
  p->nslots = p->cfg.max_in_flight;
  return TOUCH_OK;
}

void touch_peer_free(touch_peer *p) {
  if (p == NULL) return;
  free(p->frames);
  free(p->slots);
  free(p->acked_sent);
  free(p->rx_buf);
  free(p->queue);
  free(p);
}

uint32_t touch_peer_epoch(const touch_peer *p) {
  return p->epoch;
}

/* ---- RTT estimator, RFC 6298 section 2 (microseconds internally) ---- */

static uint32_t current_rto_ms(const touch_peer *p) {
  uint64_t rto;
  if (!p->have_rtt) return p->cfg.initial_rto_ms;
  uint64_t var4 = 4 * p->rttvar_us;
  rto = p->srtt_us + (var4 > CLOCK_G_US ? var4 : CLOCK_G_US); /* (2.3) */
  rto = (rto + 999) / 1000;
  if (rto < p->cfg.min_rto_ms) rto = p->cfg.min_rto_ms; /* (2.4) */
  if (rto > p->cfg.max_rto_ms) rto = p->cfg.max_rto_ms; /* (2.5) */
  return (uint32_t)rto;
}

static void rtt_sample(touch_peer *p, uint64_t rtt_ms) {
  if (rtt_ms > 3600000) rtt_ms = 3600000; /* a caller's clock jump, not a path */
  uint64_t r = rtt_ms * 1000;
  if (!p->have_rtt) { /* (2.2) */
    p->srtt_us = r;
    p->rttvar_us = r / 2;
    p->have_rtt = 1;
  } else { /* (2.3) */
    uint64_t diff = p->srtt_us > r ? p->srtt_us - r : r - p->srtt_us;
    p->rttvar_us = (3 * p->rttvar_us + diff) / 4;
    p->srtt_us = (7 * p->srtt_us + r) / 8;
  }
}

void touch_seed_rtt(touch_peer *p, uint32_t rtt_ms) {
  if (!p->have_rtt) rtt_sample(p, rtt_ms);
}

/* ---- action queue ---- */

static touch_entry *enqueue(touch_peer *p, uint8_t kind, unsigned index, uint32_t id) {
  if (p->qcount == p->qcap) return NULL; /* cannot happen: see qcap */
  touch_entry *e = &p->queue[(p->qhead + p->qcount) % p->qcap];
  p->qcount++;
  e->kind = kind;
  e->index = (uint16_t)index;
  e->id = id;
  e->rtt_ms = 0;
  return e;
}

static void queue_transmit(touch_peer *p, unsigned slot) {
  touch_slot *s = &p->slots[slot];
  if (s->tx_pending) return; /* the queued one will carry the new xmit */
  if (enqueue(p, Q_TX_DATA, slot, s->id) != NULL) s->tx_pending = 1;
}

/* A data frame (id, xmit, len bytes) of this epoch is to be acknowledged:
 * one ack covers every frame until it is popped. */
static void owe_ack(rx_filter *f, uint32_t id, uint8_t xmit, size_t len) {
  f->ack_due = 1;
  f->ack_id = id;
  f->ack_xmit = xmit;
  if (f->ack_budget < TOUCH_ACK_MAX)
    f->ack_budget += (uint32_t)(len < TOUCH_ACK_MAX ? len : TOUCH_ACK_MAX);
}

static int bit_get(const rx_filter *f, uint32_t id) {
  uint32_t b = id & WINDOW_MASK;
  return (int)((f->bits[b / 64] >> (b % 64)) & 1u);
}

/* Going down from id, skip ids whose bit is `set`, at most *left of them
 * (whole 64-bit words at a time where possible). */
static uint32_t skip_down(const rx_filter *f, uint32_t id, uint32_t *left, int set) {
  const uint64_t all = set ? ~(uint64_t)0 : 0;
  while (*left > 0) {
    uint32_t b = id & WINDOW_MASK;
    if ((b & 63u) == 63u && *left >= 64 && f->bits[b / 64] == all) {
      id -= 64;
      *left -= 64;
      continue;
    }
    if (bit_get(f, id) != set) break;
    id--;
    (*left)--;
  }
  return id;
}

/* The ranges of delivered ids, highest first, at most max, written after
 * the ack header; returns how many. */
static unsigned write_ranges(const rx_filter *f, uint8_t *out, unsigned max) {
  if (!f->has_top) return 0;
  uint32_t left = f->top - f->base + 1; /* ids in [base, top] */
  uint32_t id = f->top;
  unsigned n = 0;
  while (left > 0 && n < max) {
    id = skip_down(f, id, &left, 0);
    if (left == 0) break;
    uint32_t hi = id;
    id = skip_down(f, id, &left, 1);
    uint32_t count = hi - id; /* ids id+1 .. hi */
    put_be32(out + n * RANGE_LEN, id + 1);
    out[n * RANGE_LEN + 4] = (uint8_t)(count >> 8);
    out[n * RANGE_LEN + 5] = (uint8_t)count;
    n++;
  }
  return n;
}

/* The owed ack of filter f as a frame in p->ack_frame; its length.  An ack
 * is never larger than the frames it answers (no amplification toward a
 * spoofed source): as many ranges as fit in their bytes, and the plain
 * 11-byte form when not even the range count fits. */
static size_t make_ack(touch_peer *p, rx_filter *f) {
  uint8_t *a = p->ack_frame;
  uint32_t budget = f->ack_budget;
  a[0] = WIRE_TOUCH_ACK;
  a[OFF_FLAGS] = 0;
  put_be32(a + OFF_EPOCH, f->epoch);
  put_be32(a + OFF_ID, f->ack_id);
  a[OFF_XMIT] = f->ack_xmit;
  f->ack_due = 0;
  f->ack_budget = 0;
  p->stats.acks_sent++;
  if (budget < OFF_NRANGES + 1) return TOUCH_ACK_LEN;
  unsigned max = (budget - (OFF_NRANGES + 1)) / RANGE_LEN;
  unsigned n =
      write_ranges(f, a + OFF_NRANGES + 1, max < TOUCH_ACK_RANGES ? max : TOUCH_ACK_RANGES);
  a[OFF_FLAGS] = TOUCH_ACK_F_RANGES;
  a[OFF_NRANGES] = (uint8_t)n;
  return OFF_NRANGES + 1 + (size_t)n * RANGE_LEN;
}

int touch_pop_ex(touch_peer *p, touch_action *out, unsigned flags) {
  while (p->qcount > 0 && !(flags & TOUCH_POP_ONLY_ACKS)) {
    touch_entry *e = &p->queue[p->qhead];
    p->qhead = (p->qhead + 1) % p->qcap;
    p->qcount--;
    memset(out, 0, sizeof *out);
    out->id = e->id;
    switch (e->kind) {
    case Q_TX_DATA: {
      touch_slot *s = &p->slots[e->index];
      s->tx_pending = 0;
      if (s->state != SLOT_INFLIGHT || s->id != e->id) continue; /* resolved meanwhile */
      out->kind = TOUCH_TRANSMIT;
      out->data = s->frame;
      out->len = s->frame_len;
      return 1;
    }
    case Q_DELIVER:
      /* Freed now, overwritten at the earliest by the next touch_input. */
      p->rx_used[e->index] = 0;
      out->kind = TOUCH_DELIVER;
      out->data = p->rx_buf + (size_t)e->index * p->cfg.max_payload;
      out->len = p->rx_len[e->index];
      return 1;
    case Q_ACKED:
    case Q_FAILED:
      p->slots[e->index].state = SLOT_FREE;
      p->slots_used--;
      out->kind = e->kind == Q_ACKED ? TOUCH_ACKED : TOUCH_FAILED;
      out->rtt_ms = e->rtt_ms;
      return 1;
    default: continue;
    }
  }
  if (flags & TOUCH_POP_HOLD_ACKS) return 0;
  if (flags & TOUCH_POP_ONLY_ACKS)
    for (int i = 0; i < TOUCH_RX_BUFS; i++)
      if (p->rx_used[i]) return 0;
  rx_filter *f = p->cur.valid && p->cur.ack_due     ? &p->cur
                 : p->prev.valid && p->prev.ack_due ? &p->prev
                                                    : NULL;
  if (f == NULL) return 0;
  memset(out, 0, sizeof *out);
  out->kind = TOUCH_TRANSMIT;
  out->id = f->ack_id;
  out->len = make_ack(p, f);
  out->data = p->ack_frame;
  return 1;
}

int touch_pop(touch_peer *p, touch_action *out) {
  return touch_pop_ex(p, out, 0);
}

int touch_acks_due(const touch_peer *p) {
  return (p->cur.valid && p->cur.ack_due) || (p->prev.valid && p->prev.ack_due);
}

/* ---- sender ---- */

static uint32_t id_next(uint32_t id) {
  return id + 1 == 0 ? 1 : id + 1; /* 0 is never a valid id */
}

/* The slot holding id (in flight or resolved and not popped), or NULL. */
static touch_slot *slot_of(touch_peer *p, uint32_t id) {
  if (p->nslots == 0 || id == 0) return NULL;
  touch_slot *s = &p->slots[id % p->nslots];
  return s->state != SLOT_FREE && s->id == id ? s : NULL;
}

/* Move tail past the ids that are resolved. */
static void advance_tail(touch_peer *p) {
  while (p->tail != p->next_id) {
    touch_slot *s = slot_of(p, p->tail);
    if (s != NULL && s->state == SLOT_INFLIGHT) return;
    p->tail = id_next(p->tail);
  }
}

/* First transmission of slot i, now. */
static void transmit_first(touch_peer *p, unsigned i, uint64_t now) {
  touch_slot *s = &p->slots[i];
  s->unsent = 0;
  s->passed = 0;
  s->rto_ms = current_rto_ms(p);
  s->sent_at[0] = now;
  s->deadline = now + s->rto_ms;
  p->outstanding++;
  p->stats.transmissions++;
  queue_transmit(p, i);
}

/* Send waiting messages, oldest first, while the window has room. */
static void release(touch_peer *p, uint64_t now) {
  while (p->outstanding < p->cwnd && p->unsent_from != p->next_id) {
    touch_slot *s = slot_of(p, p->unsent_from);
    if (s != NULL && s->state == SLOT_INFLIGHT && s->unsent)
      transmit_first(p, (unsigned)(s - p->slots), now);
    p->unsent_from = id_next(p->unsent_from);
  }
}

/* An ack: the window grows by one per ack in slow start, by one per window
 * of acks in congestion avoidance (RFC 5681 section 3.1). */
static void cwnd_on_ack(touch_peer *p) {
  if (p->cwnd < p->ssthresh) {
    p->cwnd++;
  } else if (++p->cwnd_acc >= p->cwnd) {
    p->cwnd++;
    p->cwnd_acc = 0;
  }
  if (p->cwnd > p->cfg.max_in_flight) p->cwnd = p->cfg.max_in_flight;
}

/* Fast retransmit (RFC 5681 section 3.2, in messages): a message that
 * three messages sent after it have overtaken is taken as lost; it is sent
 * again at once, and the window halves (fast recovery) instead of
 * collapsing to one after a timeout.  acked[0..n): the send times of the
 * messages the latest ack resolved. */
#define TOUCH_DUPTHRESH 3

static void fast_retransmit(touch_peer *p, const uint64_t *acked, unsigned n, uint64_t now) {
  for (unsigned i = 0; i < p->nslots; i++) {
    touch_slot *s = &p->slots[i];
    if (s->state != SLOT_INFLIGHT || s->unsent) continue;
    uint64_t mine = s->sent_at[s->xmit];
    unsigned later = 0;
    for (unsigned k = 0; k < n; k++) later += acked[k] > mine;
    if (later == 0) continue;
    s->passed = (uint8_t)(s->passed + later > 255 ? 255 : s->passed + later);
    if (s->passed < TOUCH_DUPTHRESH || s->xmit >= p->cfg.max_retries) continue;
    s->passed = 0;
    s->xmit++;
    s->frame[OFF_XMIT] = s->xmit;
    s->sent_at[s->xmit] = now;
    s->deadline = now + s->rto_ms;
    p->stats.retransmitted++;
    p->stats.fast_retransmits++;
    p->stats.transmissions++;
    queue_transmit(p, i);
    if (now >= p->recover_after) {
      unsigned half = p->outstanding / 2;
      p->ssthresh = half > 2 ? half : 2;
      p->cwnd = p->ssthresh;
      p->cwnd_acc = 0;
      p->recover_after = now + current_rto_ms(p);
      p->stats.congestion_events++;
    }
  }
}

/* A retransmission timeout: half the flight as ssthresh, a window of one
 * (RFC 5681 section 3.1, equation 4), once per loss event. */
static void cwnd_on_timeout(touch_peer *p, uint64_t now) {
  if (now < p->recover_after) return;
  unsigned half = p->outstanding / 2;
  p->ssthresh = half > 2 ? half : 2;
  p->cwnd = 1;
  p->cwnd_acc = 0;
  p->recover_after = now + current_rto_ms(p);
  p->stats.congestion_events++;
}

int touch_send(touch_peer *p, uint64_t now, const uint8_t *data, size_t len, uint32_t *id_out) {
  if (data == NULL && len > 0) return TOUCH_EINVAL;
  if (len > p->cfg.max_payload) return TOUCH_E2BIG;
  if (p->slots_used >= p->cfg.max_in_flight) return TOUCH_EFULL;
  if (sender_alloc(p) != TOUCH_OK) return TOUCH_ENOMEM;
  /* Keep every id in flight within max_in_flight of the oldest one, so the
   * receiver's window (>= max_in_flight) never slides past an id that may
   * still be acknowledged (see TOUCH_WINDOW); the same rule keeps the ring
   * indexes of the ids in flight apart. */
  advance_tail(p);
  if (p->next_id - p->tail >= p->cfg.max_in_flight) return TOUCH_EFULL;
  unsigned i = p->next_id % p->nslots;
  touch_slot *s = &p->slots[i];
  /* taken only near the wrap of the id space (0 is skipped) or by an
   * outcome not popped yet */
  if (s->state != SLOT_FREE) return TOUCH_EFULL;
  s->state = SLOT_INFLIGHT;
  s->id = p->next_id;
  s->xmit = 0;
  s->tx_pending = 0;
  s->unsent = 1;
  s->deadline = UINT64_MAX;
  s->frame[0] = WIRE_TOUCH;
  s->frame[OFF_FLAGS] = 0;
  put_be32(s->frame + OFF_EPOCH, p->epoch);
  put_be32(s->frame + OFF_ID, s->id);
  s->frame[OFF_XMIT] = 0;
  if (len > 0) memcpy(s->frame + TOUCH_HEADER_LEN, data, len);
  s->frame_len = TOUCH_HEADER_LEN + len;
  p->slots_used++;
  p->next_id = id_next(p->next_id);
  p->stats.sent++;
  /* the first transmission now if the window has room and nothing older waits */
  if (p->unsent_from == s->id && p->outstanding < p->cwnd) {
    transmit_first(p, i, now);
    p->unsent_from = p->next_id;
  }
  if (id_out != NULL) *id_out = s->id;
  return TOUCH_OK;
}

void touch_tick(touch_peer *p, uint64_t now) {
  for (unsigned i = 0; i < p->nslots; i++) {
    touch_slot *s = &p->slots[i];
    if (s->state != SLOT_INFLIGHT || s->deadline > now) continue;
    if (s->xmit >= p->cfg.max_retries) {
      s->state = SLOT_DONE;
      enqueue(p, Q_FAILED, i, s->id);
      p->stats.failed++;
      p->outstanding--;
      continue;
    }
    cwnd_on_timeout(p, now);
    /* RFC 6298 section 5.5: back off the timer on each expiry. */
    s->xmit++;
    s->passed = 0;
    s->frame[OFF_XMIT] = s->xmit;
    s->sent_at[s->xmit] = now;
    s->rto_ms = s->rto_ms >= p->cfg.max_rto_ms / 2 ? p->cfg.max_rto_ms : s->rto_ms * 2;
    s->deadline = now + s->rto_ms;
    p->stats.retransmitted++;
    p->stats.transmissions++;
    queue_transmit(p, i);
  }
  release(p, now);
}

uint64_t touch_next_deadline(const touch_peer *p) {
  uint64_t next = UINT64_MAX;
  for (unsigned i = 0; i < p->nslots; i++) {
    const touch_slot *s = &p->slots[i];
    if (s->state == SLOT_INFLIGHT && s->deadline < next) next = s->deadline;
  }
  return next;
}

/* Slot s was delivered; `sent` is when the answered transmission left. */
static void resolve_acked(touch_peer *p, touch_slot *s, uint64_t sent, uint64_t now,
                          unsigned *nacked) {
  uint64_t rtt = now > sent ? now - sent : 0;
  s->state = SLOT_DONE;
  touch_entry *e = enqueue(p, Q_ACKED, (unsigned)(s - p->slots), s->id);
  if (e != NULL) e->rtt_ms = rtt > UINT32_MAX ? UINT32_MAX : (uint32_t)rtt;
  p->stats.acked++;
  p->outstanding--;
  cwnd_on_ack(p);
  p->acked_sent[(*nacked)++] = sent;
}

/* The ranges of an ack: check them all before using any. */
static int ranges_ok(const uint8_t *r, unsigned n) {
  for (unsigned k = 0; k < n; k++) {
    uint32_t first = be32(r + k * RANGE_LEN);
    unsigned count = (unsigned)r[k * RANGE_LEN + 4] << 8 | r[k * RANGE_LEN + 5];
    if (first == 0 || count == 0 || count > TOUCH_WINDOW) return 0;
  }
  return 1;
}

/* Ids [first, first + count) were delivered: resolve those in flight. */
static void ack_range(touch_peer *p, uint32_t first, unsigned count, uint64_t now,
                      unsigned *nacked) {
  /* only the part within [tail, next_id) can name a message in flight */
  uint32_t span = p->next_id - p->tail;
  int64_t lo = (int32_t)(first - p->tail);
  int64_t hi = lo + count;
  if (lo < 0) lo = 0;
  if (hi > (int64_t)span) hi = span;
  for (int64_t k = lo; k < hi; k++) {
    touch_slot *s = slot_of(p, p->tail + (uint32_t)k);
    /* an unsent message cannot have been delivered: not taken as acked */
    if (s == NULL || s->state != SLOT_INFLIGHT || s->unsent) continue;
    resolve_acked(p, s, s->sent_at[s->xmit], now, nacked);
  }
}

static int input_ack(touch_peer *p, uint64_t now, const uint8_t *f, size_t len) {
  uint32_t epoch = be32(f + OFF_EPOCH);
  uint32_t id = be32(f + OFF_ID);
  uint8_t xmit = f[OFF_XMIT];
  unsigned nranges = 0;
  if (f[OFF_FLAGS] & TOUCH_ACK_F_RANGES) {
    nranges = len > OFF_NRANGES ? f[OFF_NRANGES] : 0;
    if (len <= OFF_NRANGES || nranges > TOUCH_ACK_RANGES ||
        len < OFF_NRANGES + 1 + (size_t)nranges * RANGE_LEN ||
        !ranges_ok(f + OFF_NRANGES + 1, nranges)) {
      p->stats.malformed++;
      return TOUCH_EMALFORMED;
    }
  }
  if (id == 0) {
    p->stats.malformed++;
    return TOUCH_EMALFORMED;
  }
  if (epoch != p->epoch) {
    p->stats.stale_acks++;
    return TOUCH_ESTALE;
  }
  touch_slot *s = slot_of(p, id);
  if (s != NULL && s->state == SLOT_INFLIGHT && (s->unsent || xmit > s->xmit)) {
    /* echoes a transmission we never made */
    p->stats.malformed++;
    return TOUCH_EMALFORMED;
  }
  unsigned nacked = 0;
  if (s != NULL && s->state == SLOT_INFLIGHT) {
    /* the named transmission: an exact RTT sample */
    uint64_t sent = s->sent_at[xmit];
    rtt_sample(p, now > sent ? now - sent : 0);
    resolve_acked(p, s, sent, now, &nacked);
  }
  advance_tail(p);
  const uint8_t *r = f + OFF_NRANGES + 1;
  for (unsigned k = 0; k < nranges; k++)
    ack_range(p, be32(r + k * RANGE_LEN),
              (unsigned)r[k * RANGE_LEN + 4] << 8 | r[k * RANGE_LEN + 5], now, &nacked);
  if (nacked == 0) {
    p->stats.stale_acks++; /* a duplicate ack of resolved messages */
    return TOUCH_OK;
  }
  fast_retransmit(p, p->acked_sent, nacked, now);
  release(p, now);
  return TOUCH_OK;
}

/* ---- receiver ---- */

static void bit_set(rx_filter *f, uint32_t id) {
  uint32_t b = id & WINDOW_MASK;
  f->bits[b / 64] |= (uint64_t)1 << (b % 64);
}

static void bit_clear(rx_filter *f, uint32_t id) {
  uint32_t b = id & WINDOW_MASK;
  f->bits[b / 64] &= ~((uint64_t)1 << (b % 64));
}

/* Move base up to new_base; the ids leaving the window count as done. */
static void window_slide(rx_filter *f, uint32_t new_base) {
  uint32_t shift = new_base - f->base;
  if (shift >= TOUCH_WINDOW) {
    memset(f->bits, 0, sizeof f->bits);
  } else {
    for (uint32_t k = 0; k < shift; k++) bit_clear(f, f->base + k);
  }
  f->base = new_base;
}

static rx_filter *filter_for(touch_peer *p, uint32_t epoch, uint32_t id) {
  if (p->cur.valid && p->cur.epoch == epoch) return &p->cur;
  if (p->prev.valid && p->prev.epoch == epoch) return &p->prev;
  if (p->cur.valid) p->stats.epoch_changes++;
  p->prev = p->cur;
  memset(&p->cur, 0, sizeof p->cur);
  p->cur.valid = 1;
  p->cur.epoch = epoch;
  /* The first id seen is the top of the window: ids below it by
   * TOUCH_WINDOW or more were resolved by the sender before it sent this
   * one (its in-flight bound), whatever order they arrive in. */
  p->cur.base = id - (TOUCH_WINDOW - 1);
  return &p->cur;
}

static int free_rx_buf(const touch_peer *p) {
  for (int i = 0; i < TOUCH_RX_BUFS; i++)
    if (!p->rx_used[i]) return i;
  return -1;
}

static int input_data(touch_peer *p, const uint8_t *f, size_t len) {
  uint32_t epoch = be32(f + OFF_EPOCH);
  uint32_t id = be32(f + OFF_ID);
  uint8_t xmit = f[OFF_XMIT];
  size_t plen = len - TOUCH_HEADER_LEN;
  if (id == 0 || plen > p->cfg.max_payload) {
    p->stats.malformed++;
    return TOUCH_EMALFORMED;
  }
  rx_filter *flt = filter_for(p, epoch, id);
  uint32_t diff = id - flt->base;
  if (diff >= SERIAL_HALF) {
    /* Below the window: resolved long ago.  Ack so a confused sender stops. */
    p->stats.too_old++;
    owe_ack(flt, id, xmit, len);
    return TOUCH_OK;
  }
  if (diff < TOUCH_WINDOW && bit_get(flt, id)) {
    p->stats.duplicates++;
    owe_ack(flt, id, xmit, len); /* our earlier ack may have been lost */
    return TOUCH_OK;
  }
  int rb = free_rx_buf(p);
  if (rb < 0) {
    /* No ack: the sender retransmits once the application has popped. */
    p->stats.rx_busy++;
    return TOUCH_EBUSY;
  }
  if (diff >= TOUCH_WINDOW) window_slide(flt, id - (TOUCH_WINDOW - 1));
  bit_set(flt, id);
  if (!flt->has_top || (uint32_t)(id - flt->top) < SERIAL_HALF) {
    flt->top = id;
    flt->has_top = 1;
  }
  p->rx_used[rb] = 1;
  p->rx_len[rb] = plen;
  if (plen > 0) memcpy(p->rx_buf + (size_t)rb * p->cfg.max_payload, f + TOUCH_HEADER_LEN, plen);
  enqueue(p, Q_DELIVER, (unsigned)rb, id);
  p->stats.delivered++;
  owe_ack(flt, id, xmit, len);
  return TOUCH_OK;
}

int touch_input(touch_peer *p, uint64_t now, const uint8_t *frame, size_t len) {
  if (frame == NULL || len < TOUCH_HEADER_LEN) {
    p->stats.malformed++;
    return TOUCH_EMALFORMED;
  }
  if (frame[0] == WIRE_TOUCH) return input_data(p, frame, len);
  if (frame[0] == WIRE_TOUCH_ACK) return input_ack(p, now, frame, len);
  p->stats.malformed++;
  return TOUCH_EMALFORMED;
}

int touch_idle(const touch_peer *p) {
  return p->slots_used == 0 && p->qcount == 0 && !touch_acks_due(p);
}

const touch_stats *touch_counters(const touch_peer *p) {
  return &p->stats;
}

void touch_get_stats(const touch_peer *p, touch_stats *out) {
  *out = p->stats;
  out->srtt_ms = p->have_rtt ? (uint32_t)((p->srtt_us + 500) / 1000) : 0;
  out->rttvar_ms = p->have_rtt ? (uint32_t)((p->rttvar_us + 500) / 1000) : 0;
  out->rto_ms = current_rto_ms(p);
  out->in_flight = p->slots_used;
  out->cwnd = p->cwnd;
  out->ssthresh = p->ssthresh;
}
