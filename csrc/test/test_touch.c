/*
 * test_touch.c - plain C tests of touch.c: two touch_peers wired through a
 * simulated lossy, duplicating, reordering channel on a simulated clock.
 * Prints "N passed, N failed"; exits non-zero on failure.
 */
#include "touch.h"
#include "wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

/* xorshift64*: deterministic, local state. */
typedef struct rng {
  uint64_t s;
} rng;

static uint64_t rng_next(rng *r) {
  r->s ^= r->s >> 12;
  r->s ^= r->s << 25;
  r->s ^= r->s >> 27;
  return r->s * 2685821657736338717ull;
}

static unsigned rng_below(rng *r, unsigned n) {
  return (unsigned)(rng_next(r) % n);
}

/* ---- simulated channel between peer 0 and peer 1 ---- */

#define CHAN_MAX 8192
#define PKT_MAX  1300

typedef struct packet {
  uint64_t at;
  int to;
  size_t len;
  uint8_t bytes[PKT_MAX];
} packet;

typedef struct channel {
  rng r;
  unsigned loss_pct, dup_pct;
  uint32_t latency_ms, jitter_ms; /* jitter > 0 reorders */
  int cut;                        /* drop everything */
  int in_batch;                   /* run() is handing over the packets due now */
  unsigned count;
  uint64_t sent, lost, duplicated;
  packet *q; /* CHAN_MAX entries, unordered */
} channel;

static void chan_init(channel *c, uint64_t seed, unsigned loss, unsigned dup, uint32_t latency,
                      uint32_t jitter) {
  memset(c, 0, sizeof *c);
  c->r.s = seed;
  c->loss_pct = loss;
  c->dup_pct = dup;
  c->latency_ms = latency;
  c->jitter_ms = jitter;
  c->q = calloc(CHAN_MAX, sizeof *c->q);
}

static void chan_free(channel *c) {
  free(c->q);
}

static void chan_put(channel *c, uint64_t now, int to, const uint8_t *b, size_t len) {
  if (c->count == CHAN_MAX || len > PKT_MAX) {
    c->lost++;
    return;
  }
  packet *p = &c->q[c->count++];
  p->at = now + c->latency_ms + (c->jitter_ms ? rng_below(&c->r, c->jitter_ms + 1) : 0);
  p->to = to;
  p->len = len;
  memcpy(p->bytes, b, len);
}

static void chan_send(channel *c, uint64_t now, int to, const uint8_t *b, size_t len) {
  c->sent++;
  if (c->cut || rng_below(&c->r, 100) < c->loss_pct) {
    c->lost++;
    return;
  }
  chan_put(c, now, to, b, len);
  if (rng_below(&c->r, 100) < c->dup_pct) {
    c->duplicated++;
    chan_put(c, now, to, b, len);
  }
}

static uint64_t chan_next(const channel *c) {
  uint64_t t = UINT64_MAX;
  for (unsigned i = 0; i < c->count; i++)
    if (c->q[i].at < t) t = c->q[i].at;
  return t;
}

/* Remove one packet due at or before now into *out; 0 if none. */
static int chan_take(channel *c, uint64_t now, packet *out) {
  for (unsigned i = 0; i < c->count; i++) {
    if (c->q[i].at <= now) {
      *out = c->q[i];
      c->q[i] = c->q[--c->count];
      return 1;
    }
  }
  return 0;
}

/* ---- bookkeeping of a test run ---- */

#define MSG_MAX 4096

typedef struct side {
  touch_peer *tp;
  unsigned nmsg;           /* messages this side must send */
  unsigned next;           /* next message index to send */
  uint32_t id_of[MSG_MAX]; /* index -> touch id */
  uint8_t acked[MSG_MAX], failed[MSG_MAX];
  unsigned delivered[MSG_MAX]; /* deliveries received from the other side */
  unsigned corrupt;            /* delivered payloads that did not match */
  unsigned efull, max_in_flight_seen;
  unsigned acked_n, failed_n, outcome_twice;
  int batch; /* hold acks until every due packet is in */
} side;

/* Payload of message i from side s: index, origin, then filler bytes
 * derived from the index so the receiver can check every byte. */
static size_t make_payload(unsigned s, unsigned i, uint8_t *buf) {
  size_t len = 8 + (i * 7u) % 200u;
  put_be32(buf, i);
  put_be32(buf + 4, s);
  for (size_t k = 8; k < len; k++) buf[k] = (uint8_t)(i * 31u + k);
  return len;
}

static int payload_ok(const uint8_t *b, size_t len, unsigned from, unsigned *idx) {
  uint8_t want[256];
  if (len < 8) return 0;
  unsigned i = be32(b);
  if (i >= MSG_MAX || be32(b + 4) != from) return 0;
  size_t wl = make_payload(from, i, want);
  *idx = i;
  return wl == len && memcmp(want, b, len) == 0;
}

static unsigned index_of_id(const side *s, uint32_t id) {
  for (unsigned i = 0; i < s->next; i++)
    if (s->id_of[i] == id) return i;
  return MSG_MAX;
}

static void drain(side *sd, int me, side *other, channel *c, uint64_t now) {
  touch_action a;
  (void)other;
  unsigned flags = sd[me].batch && c->in_batch ? TOUCH_POP_HOLD_ACKS : 0;
  while (touch_pop_ex(sd[me].tp, &a, flags)) {
    side *s = &sd[me];
    if (a.kind == TOUCH_TRANSMIT) {
      chan_send(c, now, 1 - me, a.data, a.len);
    } else if (a.kind == TOUCH_DELIVER) {
      unsigned idx;
      if (payload_ok(a.data, a.len, (unsigned)(1 - me), &idx))
        s->delivered[idx]++;
      else
        s->corrupt++;
    } else {
      unsigned idx = index_of_id(s, a.id);
      if (idx == MSG_MAX) {
        s->corrupt++;
      } else if (s->acked[idx] || s->failed[idx]) {
        s->outcome_twice++;
      } else if (a.kind == TOUCH_ACKED) {
        s->acked[idx] = 1;
        s->acked_n++;
      } else {
        s->failed[idx] = 1;
        s->failed_n++;
      }
    }
  }
}

static void try_send(side *s, int me, uint64_t now) {
  uint8_t buf[256];
  while (s->next < s->nmsg) {
    size_t len = make_payload((unsigned)me, s->next, buf);
    uint32_t id;
    int rc = touch_send(s->tp, now, buf, len, &id);
    if (rc == TOUCH_EFULL) {
      s->efull++;
      break;
    }
    if (rc != TOUCH_OK) break;
    s->id_of[s->next++] = id;
  }
  touch_stats st;
  touch_get_stats(s->tp, &st);
  if (st.in_flight > s->max_in_flight_seen) s->max_in_flight_seen = st.in_flight;
}

/* Run until both sides have sent and resolved everything and the channel is
 * empty, or until `limit` ms of simulated time.  Returns the end time. */
static uint64_t run(side *sd, channel *c, uint64_t start, uint64_t limit) {
  uint64_t now = start;
  for (unsigned step = 0; step < 2000000; step++) {
    packet pk;
    c->in_batch = 1; /* the packets due now form one receive batch */
    while (chan_take(c, now, &pk)) {
      touch_input(sd[pk.to].tp, now, pk.bytes, pk.len);
      drain(sd, pk.to, &sd[1 - pk.to], c, now); /* as the socket glue does */
    }
    c->in_batch = 0;
    for (int i = 0; i < 2; i++) {
      touch_tick(sd[i].tp, now);
      drain(sd, i, &sd[1 - i], c, now);
      try_send(&sd[i], i, now);
      drain(sd, i, &sd[1 - i], c, now);
    }
    int done = c->count == 0;
    for (int i = 0; i < 2; i++) done = done && sd[i].next == sd[i].nmsg && touch_idle(sd[i].tp);
    if (done || now >= start + limit) break;
    uint64_t next = chan_next(c);
    for (int i = 0; i < 2; i++) {
      uint64_t d = touch_next_deadline(sd[i].tp);
      if (d < next) next = d;
    }
    if (next == UINT64_MAX || next > start + limit) next = start + limit;
    now = next > now ? next : now + 1;
  }
  return now;
}

static side *sides_new(const touch_config *cfg, unsigned n0, unsigned n1) {
  side *sd = calloc(2, sizeof *sd);
  sd[0].tp = touch_peer_new(cfg, 0x1111aaaau);
  sd[1].tp = touch_peer_new(cfg, 0x2222bbbbu);
  sd[0].nmsg = n0;
  sd[1].nmsg = n1;
  return sd;
}

static void sides_free(side *sd) {
  touch_peer_free(sd[0].tp);
  touch_peer_free(sd[1].tp);
  free(sd);
}

/* ---- tests ---- */

static void test_config(suite *su) {
  touch_config c;
  touch_config_default(&c);
  CHECK(su, touch_config_check(&c) == TOUCH_OK);
  CHECK(su, c.max_in_flight == 64 && c.max_payload == 1200);
  CHECK(su, touch_config_lifetime_ms(&c) == (uint64_t)(c.max_retries + 1) * c.max_rto_ms);
  touch_config bad = c;
  bad.max_in_flight = 0;
  CHECK(su, touch_config_check(&bad) == TOUCH_EINVAL && touch_peer_new(&bad, 1) == NULL);
  bad = c;
  bad.max_in_flight = TOUCH_WINDOW + 1;
  CHECK(su, touch_config_check(&bad) == TOUCH_EINVAL);
  bad = c;
  bad.min_rto_ms = 5000;
  CHECK(su, touch_config_check(&bad) == TOUCH_EINVAL);
  bad = c;
  bad.max_retries = TOUCH_MAX_RETRIES + 1;
  CHECK(su, touch_config_check(&bad) == TOUCH_EINVAL);
  bad = c;
  bad.max_payload = TOUCH_PAYLOAD_LIMIT + 1;
  CHECK(su, touch_config_check(&bad) == TOUCH_EINVAL);
  CHECK(su, strcmp(touch_errname(TOUCH_EFULL), "EFULL") == 0);
  CHECK(su, strcmp(touch_errname(TOUCH_E2BIG), "E2BIG") == 0);
  CHECK_ERRNO_MAP(su, TOUCH_ERRNO_MAP, touch_errname, touch_strerror);
}

static void test_roundtrip(suite *su) {
  touch_config cfg;
  touch_config_default(&cfg);
  touch_peer *a = touch_peer_new(&cfg, 7), *b = touch_peer_new(&cfg, 9);
  touch_action act;
  uint32_t id = 0;
  const uint8_t msg[] = "hello";
  CHECK(su, touch_next_deadline(a) == UINT64_MAX && touch_idle(a));
  /* Before its first send a peer has no sender slots: all of this is safe. */
  uint8_t early_ack[TOUCH_ACK_LEN] = {WIRE_TOUCH_ACK, 0, 0, 0, 0, 7, 0, 0, 0, 1, 0};
  CHECK(su, touch_input(a, 900, early_ack, sizeof early_ack) == TOUCH_OK);
  touch_tick(a, 950);
  CHECK(su, touch_pop(a, &act) == 0 && touch_idle(a) && touch_next_deadline(a) == UINT64_MAX);
  CHECK(su, touch_send(a, 1000, msg, 5, &id) == TOUCH_OK && id == 1);
  CHECK(su, !touch_idle(a));
  CHECK(su, touch_next_deadline(a) == 1000 + cfg.initial_rto_ms);
  CHECK(su, touch_pop(a, &act) == 1 && act.kind == TOUCH_TRANSMIT);
  uint8_t frame[64];
  size_t flen = act.len;
  memcpy(frame, act.data, flen);
  CHECK(su, flen == TOUCH_HEADER_LEN + 5 && frame[0] == WIRE_TOUCH && frame[1] == 0);
  CHECK(su, be32(frame + 2) == 7 && be32(frame + 6) == 1 && frame[10] == 0);
  CHECK(su, touch_pop(a, &act) == 0);
  /* 40 ms one way */
  CHECK(su, touch_input(b, 1040, frame, flen) == TOUCH_OK);
  int got_deliver = 0, got_ack = 0;
  uint8_t ack[TOUCH_ACK_MAX];
  size_t alen = 0;
  while (touch_pop(b, &act)) {
    if (act.kind == TOUCH_DELIVER)
      got_deliver = act.len == 5 && memcmp(act.data, msg, 5) == 0 && act.id == 1;
    if (act.kind == TOUCH_TRANSMIT && act.data[0] == WIRE_TOUCH_ACK) {
      memcpy(ack, act.data, alen = act.len);
      got_ack = 1;
    }
  }
  CHECK(su, got_deliver && got_ack);
  CHECK(su, ack[0] == WIRE_TOUCH_ACK && be32(ack + 2) == 7 && be32(ack + 6) == 1);
  /* never larger than the 16-byte frame it answers: room for the range
   * count, not for a range */
  CHECK(su, alen == TOUCH_ACK_LEN + 1 && ack[1] == TOUCH_ACK_F_RANGES && ack[11] == 0);
  CHECK(su, touch_input(a, 1080, ack, alen) == TOUCH_OK);
  CHECK(su, touch_pop(a, &act) == 1 && act.kind == TOUCH_ACKED && act.id == 1 && act.rtt_ms == 80);
  CHECK(su, touch_idle(a) && touch_next_deadline(a) == UINT64_MAX);
  /* A duplicate ack is harmless. */
  CHECK(su, touch_input(a, 1090, ack, alen) == TOUCH_OK && touch_pop(a, &act) == 0);
  touch_stats st;
  touch_get_stats(a, &st);
  CHECK(su, st.acked == 1 && st.srtt_ms == 80 && st.stale_acks == 2);
  /* RFC 6298 (2.2): RTO = SRTT + 4 * SRTT/2 = 240 ms */
  CHECK(su, st.rto_ms == 240);
  touch_get_stats(b, &st);
  CHECK(su, st.delivered == 1 && st.acks_sent == 1);
  /* touch_counters: the same counters in place, the derived fields left 0 */
  CHECK(su, touch_counters(b)->delivered == 1 && touch_counters(b)->acks_sent == 1);
  CHECK(su, touch_counters(a)->acked == 1 && touch_counters(a)->stale_acks == 2);
  CHECK(su, touch_counters(a)->srtt_ms == 0 && touch_counters(a)->rto_ms == 0);
  /* Payload limits. */
  uint8_t big[1201];
  memset(big, 0x5a, sizeof big);
  CHECK(su, touch_send(a, 2000, big, 1201, &id) == TOUCH_E2BIG);
  CHECK(su, touch_send(a, 2000, big, 1200, &id) == TOUCH_OK && id == 2);
  CHECK(su, touch_send(a, 2000, NULL, 0, &id) == TOUCH_OK && id == 3);
  CHECK(su, touch_send(a, 2000, NULL, 3, &id) == TOUCH_EINVAL);
  touch_peer_free(a);
  touch_peer_free(b);
}

/* The main property test: both directions over 30% loss, duplication and
 * reordering; 2000 messages one way, 500 the other. */
static void test_lossy(suite *su, uint64_t seed, int batch) {
  touch_config cfg;
  touch_config_default(&cfg);
  channel c;
  chan_init(&c, seed, 30, 10, 20, 40);
  side *sd = sides_new(&cfg, 2000, 500);
  sd[0].batch = sd[1].batch = batch;
  uint64_t end = run(sd, &c, 1, 3600 * 1000);
  (void)end;
  unsigned twice = 0, unresolved = 0, acked_not_delivered = 0, delivered = 0;
  for (int s = 0; s < 2; s++) {
    side *me = &sd[s], *peer = &sd[1 - s];
    for (unsigned i = 0; i < me->nmsg; i++) {
      unsigned d = peer->delivered[i];
      if (d > 1) twice++;
      if (d == 1) delivered++;
      if (!me->acked[i] && !me->failed[i]) unresolved++;
      if (me->acked[i] && d != 1) acked_not_delivered++;
    }
    CHECK(su, me->corrupt == 0 && me->outcome_twice == 0);
    CHECK(su, me->max_in_flight_seen <= cfg.max_in_flight);
    CHECK(su, me->next == me->nmsg);
  }
  CHECK(su, twice == 0);
  CHECK(su, unresolved == 0);
  CHECK(su, acked_not_delivered == 0);
  /* Sanity of the simulation itself: it was lossy, duplicating, and most
   * messages still got through (P(fail) = 0.51^7 ~ 1% per message). */
  touch_stats st0, st1;
  touch_get_stats(sd[0].tp, &st0);
  touch_get_stats(sd[1].tp, &st1);
  CHECK(su, c.lost > c.sent / 5 && c.duplicated > 0);
  CHECK(su, sd[0].acked_n > 1900 && sd[1].acked_n > 470);
  CHECK(su, sd[0].acked_n + sd[0].failed_n == 2000 && sd[1].acked_n + sd[1].failed_n == 500);
  CHECK(su, st0.retransmitted > 0 && st1.duplicates > 0);
  CHECK(su, sd[0].efull > 0);
  CHECK(su, st0.delivered + st1.delivered == delivered);
  if (batch) CHECK(su, st1.acks_sent < st0.delivered + st1.delivered + st1.duplicates);
  printf("  lossy seed %llu%s: sent %llu lost %llu dup %llu; A acked %u failed %u, "
         "B acked %u failed %u; srtt %u ms rto %u ms; dups filtered %llu\n",
         (unsigned long long)seed, batch ? " (acks per batch)" : "", (unsigned long long)c.sent,
         (unsigned long long)c.lost, (unsigned long long)c.duplicated, sd[0].acked_n,
         sd[0].failed_n, sd[1].acked_n, sd[1].failed_n, st0.srtt_ms, st0.rto_ms,
         (unsigned long long)(st0.duplicates + st1.duplicates));
  sides_free(sd);
  chan_free(&c);
}

/* Cut channel: the retransmission intervals double up to max_rto and the
 * message fails after max_retries retransmissions. */
static void test_backoff_and_fail(suite *su) {
  touch_config cfg;
  touch_config_default(&cfg);
  touch_peer *a = touch_peer_new(&cfg, 1);
  touch_action act;
  uint64_t tx_at[32];
  unsigned ntx = 0, failed = 0;
  uint64_t now = 0, failed_at = 0;
  uint32_t id;
  CHECK(su, touch_send(a, now, (const uint8_t *)"x", 1, &id) == TOUCH_OK);
  for (int step = 0; step < 100; step++) {
    while (touch_pop(a, &act)) {
      if (act.kind == TOUCH_TRANSMIT && ntx < 32) {
        CHECK(su, act.data[10] == ntx); /* xmit counts transmissions */
        tx_at[ntx++] = now;
      }
      if (act.kind == TOUCH_FAILED && act.id == id) {
        failed++;
        failed_at = now;
      }
    }
    uint64_t d = touch_next_deadline(a);
    if (d == UINT64_MAX) break;
    now = d;
    touch_tick(a, now);
  }
  CHECK(su, ntx == cfg.max_retries + 1);
  CHECK(su, failed == 1);
  /* 250, 500, 1000, 2000, 3000 (clamped), 3000 */
  uint64_t want[] = {250, 500, 1000, 2000, 3000, 3000};
  int grows = 1;
  for (unsigned i = 1; i < ntx && i <= 6; i++)
    if (tx_at[i] - tx_at[i - 1] != want[i - 1]) grows = 0;
  CHECK(su, grows);
  CHECK(su, failed_at == tx_at[ntx - 1] + 3000);
  CHECK(su, failed_at <= touch_config_lifetime_ms(&cfg));
  CHECK(su, touch_idle(a) && touch_next_deadline(a) == UINT64_MAX);
  touch_stats st;
  touch_get_stats(a, &st);
  CHECK(su, st.failed == 1 && st.retransmitted == cfg.max_retries && st.acked == 0);
  touch_peer_free(a);
}

/* Retry limit with many messages over a cut channel: all FAILED, nothing
 * delivered, then the channel heals and new messages go through. */
static void test_cut_channel(suite *su) {
  touch_config cfg;
  touch_config_default(&cfg);
  cfg.max_retries = 3;
  channel c;
  chan_init(&c, 42, 0, 0, 5, 0);
  c.cut = 1;
  side *sd = sides_new(&cfg, 50, 0);
  run(sd, &c, 0, 600 * 1000);
  unsigned delivered = 0;
  for (unsigned i = 0; i < 50; i++) delivered += sd[1].delivered[i];
  CHECK(su, sd[0].failed_n == 50 && sd[0].acked_n == 0 && delivered == 0);
  CHECK(su, c.sent == 50u * (cfg.max_retries + 1));
  c.cut = 0;
  sd[0].nmsg = 60;
  run(sd, &c, 700 * 1000, 60 * 1000);
  CHECK(su, sd[0].acked_n == 10);
  for (unsigned i = 50; i < 60; i++) delivered += sd[1].delivered[i];
  CHECK(su, delivered == 10);
  sides_free(sd);
  chan_free(&c);
}

/* In-flight bound: max_in_flight slots, and no id more than max_in_flight
 * above the oldest unresolved one. */
static void test_in_flight_bound(suite *su) {
  touch_config cfg;
  touch_config_default(&cfg);
  cfg.max_in_flight = 4;
  touch_peer *a = touch_peer_new(&cfg, 5), *b = touch_peer_new(&cfg, 6);
  touch_action act;
  uint8_t frames[8][TOUCH_HEADER_LEN + 1];
  uint32_t id;
  for (int i = 0; i < 4; i++) CHECK(su, touch_send(a, 0, (const uint8_t *)"m", 1, &id) == TOUCH_OK);
  CHECK(su, touch_send(a, 0, (const uint8_t *)"m", 1, &id) == TOUCH_EFULL);
  int n = 0;
  while (touch_pop(a, &act))
    if (act.kind == TOUCH_TRANSMIT && n < 8) memcpy(frames[n++], act.data, act.len);
  CHECK(su, n == 4);
  /* Deliver 2, 3, 4 (1 is lost) and return the acks. */
  for (int i = 1; i < 4; i++)
    CHECK(su, touch_input(b, 10, frames[i], sizeof frames[i]) == TOUCH_OK);
  int acks = 0;
  while (touch_pop(b, &act))
    if (act.kind == TOUCH_TRANSMIT) {
      CHECK(su, touch_input(a, 20, act.data, act.len) == TOUCH_OK);
      acks++;
    }
  CHECK(su, acks == 1); /* one ack answers the three frames */
  int acked = 0;
  while (touch_pop(a, &act)) acked += act.kind == TOUCH_ACKED;
  CHECK(su, acked == 3);
  touch_stats st;
  touch_get_stats(a, &st);
  CHECK(su, st.in_flight == 1);
  /* Three slots are free, but id 5 would be 4 above the unresolved id 1. */
  CHECK(su, touch_send(a, 30, (const uint8_t *)"m", 1, &id) == TOUCH_EFULL);
  CHECK(su, touch_input(b, 40, frames[0], sizeof frames[0]) == TOUCH_OK);
  while (touch_pop(b, &act))
    if (act.kind == TOUCH_TRANSMIT) touch_input(a, 50, act.data, act.len);
  while (touch_pop(a, &act)) {}
  CHECK(su, touch_send(a, 60, (const uint8_t *)"m", 1, &id) == TOUCH_OK && id == 5);
  /* An unpopped outcome still holds its slot: the bound covers the queue. */
  touch_peer *s = touch_peer_new(&cfg, 77);
  for (int i = 0; i < 4; i++) touch_send(s, 0, (const uint8_t *)"m", 1, &id);
  for (uint64_t t = 0; t < 100000 && touch_next_deadline(s) != UINT64_MAX;)
    touch_tick(s, t = touch_next_deadline(s));
  CHECK(su, touch_send(s, 200000, (const uint8_t *)"m", 1, &id) == TOUCH_EFULL);
  int fails = 0;
  while (touch_pop(s, &act)) fails += act.kind == TOUCH_FAILED;
  CHECK(su, fails == 4 && touch_idle(s));
  CHECK(su, touch_send(s, 200000, (const uint8_t *)"m", 1, &id) == TOUCH_OK);
  touch_peer_free(s);
  touch_peer_free(a);
  touch_peer_free(b);
}

static size_t make_frame(uint8_t *f, uint8_t type, uint32_t epoch, uint32_t id, uint8_t xmit,
                         const char *payload) {
  size_t plen = payload ? strlen(payload) : 0;
  f[0] = type;
  f[1] = 0;
  put_be32(f + 2, epoch);
  put_be32(f + 6, id);
  f[10] = xmit;
  if (plen) memcpy(f + 11, payload, plen);
  return 11 + plen;
}

/* Count DELIVER actions (and drop the rest) of a peer. */
static int deliveries(touch_peer *p) {
  touch_action act;
  int n = 0;
  while (touch_pop(p, &act)) n += act.kind == TOUCH_DELIVER;
  return n;
}

static void test_epoch(suite *su) {
  touch_config cfg;
  touch_config_default(&cfg);
  touch_peer *b = touch_peer_new(&cfg, 100);
  uint8_t f[64];
  int n = 0;
  for (uint32_t id = 1; id <= 5; id++) {
    touch_input(b, 0, f, make_frame(f, WIRE_TOUCH, 0xaaaa, id, 0, "old"));
    n += deliveries(b);
  }
  CHECK(su, n == 5);
  /* Retransmissions of the same epoch: filtered. */
  n = 0;
  for (uint32_t id = 1; id <= 5; id++) {
    touch_input(b, 1, f, make_frame(f, WIRE_TOUCH, 0xaaaa, id, 1, "old"));
    n += deliveries(b);
  }
  CHECK(su, n == 0);
  /* The sender restarts with a new epoch: ids 1..5 are new messages. */
  n = 0;
  for (uint32_t id = 1; id <= 5; id++) {
    touch_input(b, 2, f, make_frame(f, WIRE_TOUCH, 0xbbbb, id, 0, "new"));
    n += deliveries(b);
  }
  CHECK(su, n == 5);
  /* A straggler of the old epoch: still filtered (previous epoch kept). */
  touch_input(b, 3, f, make_frame(f, WIRE_TOUCH, 0xaaaa, 3, 2, "old"));
  CHECK(su, deliveries(b) == 0);
  /* ... and it did not disturb the new epoch's filter. */
  touch_input(b, 4, f, make_frame(f, WIRE_TOUCH, 0xbbbb, 2, 1, "new"));
  CHECK(su, deliveries(b) == 0);
  touch_input(b, 4, f, make_frame(f, WIRE_TOUCH, 0xbbbb, 6, 0, "new"));
  CHECK(su, deliveries(b) == 1);
  touch_stats st;
  touch_get_stats(b, &st);
  CHECK(su, st.epoch_changes == 1 && st.duplicates == 7 && st.delivered == 11);
  /* Acks for another epoch of ours are stale. */
  touch_peer *a = touch_peer_new(&cfg, 0x1234);
  uint32_t id;
  touch_send(a, 0, (const uint8_t *)"x", 1, &id);
  CHECK(su,
        touch_input(a, 5, f, make_frame(f, WIRE_TOUCH_ACK, 0x9999, id, 0, NULL)) == TOUCH_ESTALE);
  touch_action act;
  CHECK(su, touch_pop(a, &act) == 1 && act.kind == TOUCH_TRANSMIT && touch_pop(a, &act) == 0);
  CHECK(su, touch_input(a, 5, f, make_frame(f, WIRE_TOUCH_ACK, 0x1234, id, 0, NULL)) == TOUCH_OK);
  CHECK(su, touch_pop(a, &act) == 1 && act.kind == TOUCH_ACKED);
  touch_peer_free(a);
  touch_peer_free(b);
}

static void test_malformed(suite *su) {
  touch_config cfg;
  touch_config_default(&cfg);
  touch_peer *p = touch_peer_new(&cfg, 1);
  touch_action act;
  uint8_t f[1300];
  size_t len = make_frame(f, WIRE_TOUCH, 2, 1, 0, "payload");
  int rejected = 0;
  for (size_t l = 0; l < TOUCH_HEADER_LEN; l++)
    rejected += touch_input(p, 0, f, l) == TOUCH_EMALFORMED;
  CHECK(su, rejected == TOUCH_HEADER_LEN);
  CHECK(su, touch_input(p, 0, NULL, 20) == TOUCH_EMALFORMED);
  f[0] = WIRE_PUNCH;
  CHECK(su, touch_input(p, 0, f, len) == TOUCH_EMALFORMED);
  f[0] = 0xff;
  CHECK(su, touch_input(p, 0, f, len) == TOUCH_EMALFORMED);
  CHECK(su, touch_input(p, 0, f, make_frame(f, WIRE_TOUCH, 2, 0, 0, "id0")) == TOUCH_EMALFORMED);
  CHECK(su, touch_input(p, 0, f, make_frame(f, WIRE_TOUCH_ACK, 1, 0, 0, NULL)) == TOUCH_EMALFORMED);
  make_frame(f, WIRE_TOUCH, 2, 1, 0, NULL);
  CHECK(su, touch_input(p, 0, f, TOUCH_HEADER_LEN + cfg.max_payload + 1) == TOUCH_EMALFORMED);
  CHECK(su, touch_pop(p, &act) == 0);
  /* An ack echoing a transmission that never happened. */
  uint32_t id;
  touch_send(p, 0, (const uint8_t *)"x", 1, &id);
  while (touch_pop(p, &act)) {}
  CHECK(su,
        touch_input(p, 1, f, make_frame(f, WIRE_TOUCH_ACK, 1, id, 3, NULL)) == TOUCH_EMALFORMED);
  CHECK(su, touch_pop(p, &act) == 0);
  touch_stats st;
  touch_get_stats(p, &st);
  CHECK(su, st.malformed == TOUCH_HEADER_LEN + 7 && st.delivered == 0);
  touch_peer_free(p);
}

/* Ids far ahead slide the window; ids behind it are acked, never
 * delivered; random garbage never crashes (run under ASan/UBSan). */
static void test_window(suite *su) {
  touch_config cfg;
  touch_config_default(&cfg);
  touch_peer *p = touch_peer_new(&cfg, 1);
  uint8_t f[1400];
  touch_input(p, 0, f, make_frame(f, WIRE_TOUCH, 9, 10, 0, "a"));
  CHECK(su, deliveries(p) == 1);
  /* 10 - 1023 .. 10 is the window now; id 5 is inside and new. */
  touch_input(p, 0, f, make_frame(f, WIRE_TOUCH, 9, 5, 0, "a"));
  CHECK(su, deliveries(p) == 1);
  touch_input(p, 0, f, make_frame(f, WIRE_TOUCH, 9, 100000, 0, "a"));
  CHECK(su, deliveries(p) == 1);
  /* Far below the window now: acked, not delivered. */
  CHECK(su, touch_input(p, 0, f, make_frame(f, WIRE_TOUCH, 9, 11, 0, "a")) == TOUCH_OK);
  touch_action act;
  int tx = 0, dl = 0;
  while (touch_pop(p, &act)) {
    tx += act.kind == TOUCH_TRANSMIT;
    dl += act.kind == TOUCH_DELIVER;
  }
  CHECK(su, tx == 1 && dl == 0);
  /* Just inside the slid window: new. */
  touch_input(p, 0, f, make_frame(f, WIRE_TOUCH, 9, 100000 - TOUCH_WINDOW + 1, 0, "a"));
  CHECK(su, deliveries(p) == 1);
  touch_input(p, 0, f, make_frame(f, WIRE_TOUCH, 9, 100000 - TOUCH_WINDOW, 0, "a"));
  CHECK(su, deliveries(p) == 0);
  /* Wrap-around of the id space (RFC 1982 arithmetic). */
  touch_input(p, 0, f, make_frame(f, WIRE_TOUCH, 9, 0xfffffff0u, 0, "a"));
  CHECK(su, deliveries(p) == 0); /* more than 2^31 ahead = behind */
  touch_input(p, 0, f, make_frame(f, WIRE_TOUCH, 10, 0xfffffffeu, 0, "a"));
  touch_input(p, 0, f, make_frame(f, WIRE_TOUCH, 10, 0xffffffffu, 0, "a"));
  touch_input(p, 0, f, make_frame(f, WIRE_TOUCH, 10, 1, 0, "a"));
  touch_input(p, 0, f, make_frame(f, WIRE_TOUCH, 10, 0xffffffffu, 1, "a"));
  CHECK(su, deliveries(p) == 3);
  touch_stats st;
  touch_get_stats(p, &st);
  CHECK(su, st.too_old == 3 && st.duplicates == 1);
  /* Garbage. */
  rng r = {0x9e3779b97f4a7c15ull};
  int bad_rc = 0;
  for (int i = 0; i < 20000; i++) {
    size_t len = rng_below(&r, sizeof f);
    for (size_t k = 0; k < len; k++) f[k] = (uint8_t)rng_next(&r);
    if (i % 2) f[0] = (uint8_t)(WIRE_TOUCH + (i % 4 == 1));
    int rc = touch_input(p, (uint64_t)i, f, len);
    if (rc > 0 || rc < TOUCH_EBUSY) bad_rc++; /* ENOMEM is touch_send's only */
    touch_tick(p, (uint64_t)i);
    while (touch_pop(p, &act)) {}
  }
  CHECK(su, bad_rc == 0);
  touch_peer_free(p);
}

/* The receiver's application does not pop: deliveries wait in
 * TOUCH_RX_BUFS buffers, further data is dropped unacked (EBUSY) and goes
 * through on retransmission once popped. */
static void test_rx_busy(suite *su) {
  touch_config cfg;
  touch_config_default(&cfg);
  touch_peer *b = touch_peer_new(&cfg, 1);
  uint8_t f[64];
  int ok = 0;
  for (uint32_t id = 1; id <= TOUCH_RX_BUFS; id++)
    ok += touch_input(b, 0, f, make_frame(f, WIRE_TOUCH, 3, id, 0, "z")) == TOUCH_OK;
  CHECK(su, ok == TOUCH_RX_BUFS);
  CHECK(su, touch_input(b, 0, f, make_frame(f, WIRE_TOUCH, 3, TOUCH_RX_BUFS + 1, 0, "z")) ==
                TOUCH_EBUSY);
  /* A duplicate needs no buffer and is still acked. */
  CHECK(su, touch_input(b, 0, f, make_frame(f, WIRE_TOUCH, 3, 1, 1, "z")) == TOUCH_OK);
  touch_action act;
  int dl = 0, acks = 0;
  while (touch_pop(b, &act)) {
    dl += act.kind == TOUCH_DELIVER;
    if (act.kind == TOUCH_TRANSMIT) acks++;
  }
  CHECK(su, dl == TOUCH_RX_BUFS && acks == 1);
  CHECK(su,
        touch_input(b, 1, f, make_frame(f, WIRE_TOUCH, 3, TOUCH_RX_BUFS + 1, 1, "z")) == TOUCH_OK);
  CHECK(su, deliveries(b) == 1);
  touch_peer_free(b);
}

/* RTT samples: each ack names the transmission it answers, so a
 * retransmitted message yields the true RTT (no Karn ambiguity), and the
 * estimator converges per RFC 6298. */
static void test_rtt(suite *su) {
  touch_config cfg;
  touch_config_default(&cfg);
  touch_peer *a = touch_peer_new(&cfg, 1), *b = touch_peer_new(&cfg, 2);
  touch_action act;
  uint8_t frame[64], ackf[TOUCH_ACK_MAX];
  size_t flen = 0, alen = 0;
  uint32_t id;
  touch_send(a, 0, (const uint8_t *)"r", 1, &id);
  while (touch_pop(a, &act)) {} /* first transmission lost */
  touch_tick(a, 250);
  CHECK(su, touch_pop(a, &act) == 1 && act.kind == TOUCH_TRANSMIT && act.data[10] == 1);
  memcpy(frame, act.data, flen = act.len);
  touch_input(b, 280, frame, flen);
  while (touch_pop(b, &act))
    if (act.kind == TOUCH_TRANSMIT) memcpy(ackf, act.data, alen = act.len);
  CHECK(su, ackf[10] == 1);
  touch_input(a, 310, ackf, alen);
  CHECK(su, touch_pop(a, &act) == 1 && act.kind == TOUCH_ACKED && act.rtt_ms == 60);
  /* 30 more exchanges at RTT 100 ms: SRTT -> 100, RTTVAR -> small. */
  uint64_t now = 1000;
  for (int i = 0; i < 30; i++, now += 200) {
    touch_send(a, now, (const uint8_t *)"r", 1, &id);
    while (touch_pop(a, &act))
      if (act.kind == TOUCH_TRANSMIT) memcpy(frame, act.data, flen = act.len);
    touch_input(b, now + 50, frame, flen);
    while (touch_pop(b, &act))
      if (act.kind == TOUCH_TRANSMIT) memcpy(ackf, act.data, alen = act.len);
    touch_input(a, now + 100, ackf, alen);
    while (touch_pop(a, &act)) {}
  }
  touch_stats st;
  touch_get_stats(a, &st);
  CHECK(su, st.srtt_ms >= 99 && st.srtt_ms <= 101);
  CHECK(su, st.rto_ms >= 100 && st.rto_ms <= 130);
  /* touch_seed_rtt only seeds an estimator without samples. */
  touch_peer *c = touch_peer_new(&cfg, 3);
  touch_seed_rtt(c, 20);
  touch_get_stats(c, &st);
  CHECK(su, st.srtt_ms == 20 && st.rto_ms == 60);
  touch_seed_rtt(c, 500);
  touch_get_stats(c, &st);
  CHECK(su, st.srtt_ms == 20);
  touch_seed_rtt(c, 0);
  touch_peer_free(c);
  c = touch_peer_new(&cfg, 4);
  touch_seed_rtt(c, 0); /* loopback: the floor applies */
  touch_get_stats(c, &st);
  CHECK(su, st.rto_ms == cfg.min_rto_ms);
  touch_peer_free(c);
  touch_peer_free(a);
  touch_peer_free(b);
}

/* Frames transmitted by a peer (drops every other action). */
static int transmits(touch_peer *p, uint8_t frames[][TOUCH_HEADER_LEN + 1], int cap) {
  touch_action act;
  int n = 0;
  while (touch_pop(p, &act))
    if (act.kind == TOUCH_TRANSMIT) {
      if (n < cap) memcpy(frames[n], act.data, act.len);
      n++;
    }
  return n;
}

/* The congestion window: 10 messages on the wire at first, one more per ack
 * in slow start, one after a retransmission timeout; the others wait and
 * leave oldest first; nothing is lost or delivered twice on the way. */
static void test_cwnd(suite *su) {
  touch_config cfg;
  touch_config_default(&cfg);
  cfg.max_in_flight = 64;
  touch_peer *a = touch_peer_new(&cfg, 9), *b = touch_peer_new(&cfg, 10);
  static uint8_t frames[128][TOUCH_HEADER_LEN + 1];
  uint32_t id;
  for (int i = 0; i < 64; i++)
    CHECK(su, touch_send(a, 0, (const uint8_t *)"c", 1, &id) == TOUCH_OK);
  CHECK(su, touch_send(a, 0, (const uint8_t *)"c", 1, &id) == TOUCH_EFULL);
  int n = transmits(a, frames, 128);
  CHECK(su, n == TOUCH_INITIAL_CWND);
  touch_stats st;
  touch_get_stats(a, &st);
  CHECK(su, st.cwnd == TOUCH_INITIAL_CWND && st.in_flight == 64);
  /* ack the first one: the window grows to 11, two more leave (ids 11, 12) */
  CHECK(su, touch_input(b, 5, frames[0], sizeof frames[0]) == TOUCH_OK);
  touch_action act;
  while (touch_pop(b, &act))
    if (act.kind == TOUCH_TRANSMIT) touch_input(a, 10, act.data, act.len);
  n = transmits(a, frames, 128);
  CHECK(su, n == 2);
  CHECK(su, be32(frames[0] + 6) == 11 && be32(frames[1] + 6) == 12);
  touch_get_stats(a, &st);
  CHECK(su, st.cwnd == TOUCH_INITIAL_CWND + 1);
  /* nothing answers any more: the timeout cuts the window to one */
  touch_tick(a, touch_next_deadline(a));
  touch_get_stats(a, &st);
  CHECK(su, st.cwnd == 1 && st.ssthresh == 5 && st.congestion_events == 1);
  touch_peer_free(a);
  touch_peer_free(b);
  /* and through a lossy channel every message still arrives exactly once */
  side *sd = sides_new(&cfg, 1000, 0);
  channel c;
  chan_init(&c, 42, 20, 5, 10, 10);
  run(sd, &c, 1, 3600 * 1000);
  unsigned twice = 0, acked_not_delivered = 0;
  for (unsigned i = 0; i < 1000; i++) {
    twice += sd[1].delivered[i] > 1;
    acked_not_delivered += sd[0].acked[i] && sd[1].delivered[i] != 1;
  }
  CHECK(su, twice == 0 && acked_not_delivered == 0 && sd[0].corrupt == 0 && sd[1].corrupt == 0);
  CHECK(su, sd[0].acked_n + sd[0].failed_n == 1000 && sd[0].acked_n > 950);
  touch_get_stats(sd[0].tp, &st);
  CHECK(su, st.congestion_events > 0);
  chan_free(&c);
  sides_free(sd);
}

/* Acknowledgements that cover several messages: one ack per batch of
 * frames (TOUCH_POP_HOLD_ACKS), ranges of delivered ids with their gaps, a
 * lost ack repaired by the next one, the old 11-byte ack still understood,
 * and ranged acks that lie or are malformed taken for nothing. */
static size_t one_ack(touch_peer *b, uint8_t *out) {
  touch_action act;
  size_t n = 0;
  int count = 0;
  while (touch_pop(b, &act))
    if (act.kind == TOUCH_TRANSMIT) {
      memcpy(out, act.data, n = act.len);
      count++;
    }
  return count == 1 ? n : 0;
}

static int count_kind(touch_peer *p, touch_action_kind kind) {
  touch_action act;
  int n = 0;
  while (touch_pop(p, &act)) n += act.kind == kind;
  return n;
}

static void test_multi_ack(suite *su) {
  touch_config cfg;
  touch_config_default(&cfg);
  touch_peer *a = touch_peer_new(&cfg, 0xa1), *b = touch_peer_new(&cfg, 0xb1);
  touch_action act;
  uint8_t frames[64][TOUCH_HEADER_LEN + 1], ack[TOUCH_ACK_MAX];
  uint32_t id;
  for (int i = 0; i < 10; i++) touch_send(a, 0, (const uint8_t *)"m", 1, &id);
  CHECK(su, transmits(a, frames, 64) == 10);
  /* a batch of 1, 2, 4, 5, 7: deliveries at once, the acks held */
  static const int batch1[] = {0, 1, 3, 4, 6};
  int dl = 0, tx = 0;
  for (int k = 0; k < 5; k++) {
    CHECK(su, touch_input(b, 10, frames[batch1[k]], sizeof frames[0]) == TOUCH_OK);
    while (touch_pop_ex(b, &act, TOUCH_POP_HOLD_ACKS)) {
      dl += act.kind == TOUCH_DELIVER;
      tx += act.kind == TOUCH_TRANSMIT;
    }
  }
  CHECK(su, dl == 5 && tx == 0 && touch_acks_due(b) && !touch_idle(b));
  size_t n = one_ack(b, ack);
  CHECK(su, !touch_acks_due(b) && touch_idle(b));
  /* names id 7 (the latest), ranges highest first: [7], [4, 5], [1, 2] */
  CHECK(su, n == TOUCH_ACK_LEN + 1 + 3 * 6 && ack[1] == TOUCH_ACK_F_RANGES && be32(ack + 6) == 7);
  CHECK(su, ack[11] == 3 && be32(ack + 12) == 7 && ack[17] == 1 && be32(ack + 18) == 4 &&
                ack[23] == 2 && be32(ack + 24) == 1 && ack[29] == 2);
  touch_stats st;
  touch_get_stats(b, &st);
  CHECK(su, st.acks_sent == 1 && st.delivered == 5);
  /* this ack is lost; 3 and 6 arrive: the next ack covers everything */
  CHECK(su, touch_input(b, 20, frames[2], sizeof frames[0]) == TOUCH_OK);
  CHECK(su, touch_input(b, 20, frames[5], sizeof frames[0]) == TOUCH_OK);
  n = one_ack(b, ack);
  CHECK(su, n == TOUCH_ACK_LEN + 1 + 6 && ack[11] == 1 && be32(ack + 12) == 1 && ack[17] == 7);
  CHECK(su, touch_input(a, 30, ack, n) == TOUCH_OK);
  CHECK(su, count_kind(a, TOUCH_ACKED) == 7);
  touch_get_stats(a, &st);
  CHECK(su, st.acked == 7 && st.retransmitted == 0 && st.in_flight == 3 && st.srtt_ms == 30);
  /* the same ack again is a harmless duplicate */
  CHECK(su, touch_input(a, 31, ack, n) == TOUCH_OK && touch_pop(a, &act) == 0);
  /* the old format (no flag, 11 bytes) acknowledges its one id */
  uint8_t old[TOUCH_ACK_LEN];
  memcpy(old, ack, TOUCH_ACK_LEN);
  old[1] = 0;
  put_be32(old + 6, 9);
  CHECK(su, touch_input(a, 40, old, sizeof old) == TOUCH_OK);
  CHECK(su, touch_pop(a, &act) == 1 && act.kind == TOUCH_ACKED && act.id == 9 &&
                touch_pop(a, &act) == 0);
  /* malformed ranged acks: nothing taken */
  uint8_t bad[TOUCH_ACK_MAX + 8];
  memcpy(bad, ack, TOUCH_ACK_LEN);
  put_be32(bad + 6, 8);
  bad[11] = 1;
  put_be32(bad + 12, 8);
  bad[16] = 0;
  bad[17] = 0; /* count 0 */
  CHECK(su, touch_input(a, 50, bad, TOUCH_ACK_LEN + 7) == TOUCH_EMALFORMED);
  bad[17] = 1;
  CHECK(su, touch_input(a, 50, bad, TOUCH_ACK_LEN + 6) == TOUCH_EMALFORMED); /* truncated */
  CHECK(su, touch_input(a, 50, bad, TOUCH_ACK_LEN) == TOUCH_EMALFORMED);     /* no count */
  bad[11] = TOUCH_ACK_RANGES + 1;
  CHECK(su, touch_input(a, 50, bad, sizeof bad) == TOUCH_EMALFORMED);
  bad[11] = 1;
  put_be32(bad + 12, 0); /* id 0 */
  CHECK(su, touch_input(a, 50, bad, TOUCH_ACK_LEN + 7) == TOUCH_EMALFORMED);
  bad[16] = (TOUCH_WINDOW + 1) >> 8;
  bad[17] = (TOUCH_WINDOW + 1) & 0xff;
  put_be32(bad + 12, 8);
  CHECK(su, touch_input(a, 50, bad, TOUCH_ACK_LEN + 7) == TOUCH_EMALFORMED);
  CHECK(su, touch_pop(a, &act) == 0);
  touch_get_stats(a, &st);
  CHECK(su, st.acked == 8 && st.in_flight == 2);
  /* a range over ids never transmitted (held back by the window) acks none of them */
  touch_peer *w = touch_peer_new(&cfg, 0xc1);
  for (int i = 0; i < 12; i++) touch_send(w, 0, (const uint8_t *)"m", 1, &id);
  CHECK(su, transmits(w, frames, 64) == TOUCH_INITIAL_CWND);
  uint8_t lie[TOUCH_ACK_LEN + 7] = {
      WIRE_TOUCH_ACK, TOUCH_ACK_F_RANGES, 0, 0, 0, 0xc1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1, 0, 12};
  CHECK(su, touch_input(w, 5, lie, sizeof lie) == TOUCH_OK);
  CHECK(su, count_kind(w, TOUCH_ACKED) == TOUCH_INITIAL_CWND);
  touch_get_stats(w, &st);
  CHECK(su, st.acked == TOUCH_INITIAL_CWND && st.in_flight == 2);
  touch_peer_free(w);
  /* many gaps: at most TOUCH_ACK_RANGES ranges, the highest ids first */
  touch_peer *r = touch_peer_new(&cfg, 0xd1);
  uint8_t f[64];
  for (uint32_t i = 1; i <= 41; i += 2) {
    touch_input(r, 0, f, make_frame(f, WIRE_TOUCH, 0xe1, i, 0, "g"));
    while (touch_pop_ex(r, &act, TOUCH_POP_HOLD_ACKS)) {}
  }
  n = one_ack(r, ack);
  CHECK(su, n == TOUCH_ACK_MAX && ack[11] == TOUCH_ACK_RANGES && be32(ack + 12) == 41 &&
                be32(ack + 12 + 6 * (TOUCH_ACK_RANGES - 1)) == 41 - 2 * (TOUCH_ACK_RANGES - 1));
  /* an ack is never larger than the frames it answers: an empty message
   * (an 11-byte frame) gets the plain 11-byte ack, two 13-byte frames two
   * ranges at most (12 + 2 x 6 <= 26 bytes) */
  CHECK(su, touch_input(r, 0, f, make_frame(f, WIRE_TOUCH, 0xe1, 50, 0, NULL)) == TOUCH_OK);
  n = one_ack(r, ack);
  CHECK(su, n == TOUCH_ACK_LEN && ack[1] == 0 && be32(ack + 6) == 50);
  /* TOUCH_POP_ONLY_ACKS: not while the delivery it covers waits, then the
   * ack alone */
  touch_input(r, 0, f, make_frame(f, WIRE_TOUCH, 0xe1, 51, 0, "c"));
  CHECK(su, touch_pop_ex(r, &act, TOUCH_POP_ONLY_ACKS) == 0);
  CHECK(su, touch_pop_ex(r, &act, TOUCH_POP_HOLD_ACKS) == 1 && act.kind == TOUCH_DELIVER);
  CHECK(su, touch_pop_ex(r, &act, TOUCH_POP_ONLY_ACKS) == 1 && act.kind == TOUCH_TRANSMIT &&
                act.data[0] == WIRE_TOUCH_ACK && be32(act.data + 6) == 51);
  CHECK(su, !touch_acks_due(r) && touch_pop(r, &act) == 0);
  touch_input(r, 0, f, make_frame(f, WIRE_TOUCH, 0xe1, 52, 0, "ab"));
  while (touch_pop_ex(r, &act, TOUCH_POP_HOLD_ACKS)) {}
  touch_input(r, 0, f, make_frame(f, WIRE_TOUCH, 0xe1, 54, 0, "ab"));
  n = one_ack(r, ack);
  CHECK(su, n == TOUCH_ACK_LEN + 1 + 12 && ack[11] == 2 && be32(ack + 12) == 54 &&
                be32(ack + 18) == 50 && ack[23] == 3); /* 50 .. 52 */
  touch_peer_free(r);
  touch_peer_free(a);
  touch_peer_free(b);
}

int main(void) {
  suite su = {0, 0};
  test_cwnd(&su);
  test_config(&su);
  test_roundtrip(&su);
  test_multi_ack(&su);
  test_lossy(&su, 1, 0);
  test_lossy(&su, 0xdeadbeefcafeull, 0);
  test_lossy(&su, 1, 1);
  test_lossy(&su, 0xdeadbeefcafeull, 1);
  test_backoff_and_fail(&su);
  test_cut_channel(&su);
  test_in_flight_bound(&su);
  test_epoch(&su);
  test_malformed(&su);
  test_window(&su);
  test_rx_busy(&su);
  test_rtt(&su);
  printf("%d passed, %d failed\n", su.passed, su.failed);
  return su.failed == 0 ? 0 : 1;
}
