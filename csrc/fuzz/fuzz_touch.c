/*
 * fuzz_touch.c - touch frames (reliable messages, touch.h).
 *
 * The input is a script.  Peers A and B talk through a fuzzer-driven link
 * that drops, duplicates and reorders (but does not alter) frames, with
 * time advancing by fuzzed steps; a third peer C gets raw fuzzer bytes as
 * frames while it has messages of its own in flight.  B may hold its acks
 * back for a few steps (TOUCH_POP_HOLD_ACKS, as the socket glue does inside
 * a receive batch), so one ack answers several frames with ranges.
 * Invariants: B delivers only what A sent, each message at most once and
 * intact; A sees ACKED only for a message B has delivered, and ACKED or
 * FAILED at most once per message; C never delivers more than its
 * max_payload and nothing crashes or leaks.
 */
#include "fuzz.h"
#include "touch.h"
#include "wire.h"

#include <string.h>

#define MAX_SENT 512
#define LINK_CAP 128

typedef struct frame {
  uint8_t *p;
  size_t len;
} frame;

typedef struct link {
  frame q[LINK_CAP];
  size_t n;
} link;

typedef struct world {
  touch_peer *a, *b, *c;
  uint64_t now;
  link a2b, b2a;
  uint32_t ids[MAX_SENT];
  size_t lens[MAX_SENT];
  uint8_t delivered[MAX_SENT], resolved[MAX_SENT];
  size_t sent;
} world;

static void link_push(link *l, const uint8_t *p, size_t len) {
  if (l->n == LINK_CAP) return; /* a full link drops */
  l->q[l->n].p = fuzz_dup(p, len);
  l->q[l->n].len = len;
  l->n++;
}

static frame link_take(link *l, size_t i) {
  frame f = l->q[i];
  memmove(l->q + i, l->q + i + 1, (l->n - i - 1) * sizeof *l->q);
  l->n--;
  return f;
}

static long counter_of(const world *w, uint32_t id) {
  for (size_t i = 0; i < w->sent; i++)
    if (w->ids[i] == id) return (long)i;
  return -1;
}

static void drain(world *w, int hold) {
  touch_action act;
  while (touch_pop(w->a, &act)) {
    long k;
    switch (act.kind) {
    case TOUCH_TRANSMIT: link_push(&w->a2b, act.data, act.len); break;
    case TOUCH_ACKED:
      k = counter_of(w, act.id);
      FUZZ_ASSERT(k >= 0 && w->delivered[k] && !w->resolved[k]);
      w->resolved[k] = 1;
      break;
    case TOUCH_FAILED:
      k = counter_of(w, act.id);
      FUZZ_ASSERT(k >= 0 && !w->resolved[k]);
      w->resolved[k] = 1;
      break;
    case TOUCH_DELIVER: FUZZ_ASSERT(!"A was sent no data"); break;
    }
  }
  while (touch_pop_ex(w->b, &act, hold ? TOUCH_POP_HOLD_ACKS : 0)) {
    if (act.kind == TOUCH_TRANSMIT) {
      link_push(&w->b2a, act.data, act.len);
    } else {
      FUZZ_ASSERT(act.kind == TOUCH_DELIVER && act.len >= 4);
      uint32_t k = be32(act.data);
      FUZZ_ASSERT(k < w->sent && !w->delivered[k] && act.len == w->lens[k]);
      for (size_t i = 4; i < act.len; i++) FUZZ_ASSERT(act.data[i] == (uint8_t)(k + i));
      w->delivered[k] = 1;
    }
  }
  while (touch_pop(w->c, &act))
    if (act.kind == TOUCH_DELIVER) FUZZ_ASSERT(act.len <= 1200);
}

static void deliver(world *w, link *l, size_t i, int keep) {
  if (l->n == 0) return;
  i %= l->n;
  frame f = keep ? l->q[i] : link_take(l, i);
  touch_peer *to = l == &w->a2b ? w->b : w->a;
  int r = touch_input(to, w->now, f.p, f.len);
  FUZZ_ASSERT(r <= 0 && r != TOUCH_EMALFORMED);
  if (!keep) free(f.p);
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t len) {
  fuzz_in c = {in, len};
  touch_config cfg;
  touch_config_default(&cfg);
  static world w;
  memset(&w, 0, sizeof w);
  w.now = 1000;
  w.a = touch_peer_new(&cfg, 1);
  w.b = touch_peer_new(&cfg, 2);
  w.c = touch_peer_new(&cfg, 3);
  FUZZ_ASSERT(w.a && w.b && w.c);
  uint8_t payload[256];
  uint32_t id;
  for (int step = 0; step < 4096 && c.left > 0; step++) {
    uint8_t op = fuzz_u8(&c);
    switch (op % 8) {
    case 0:
      if (w.sent < MAX_SENT) {
        size_t n = 4 + fuzz_u8(&c) % 64;
        put_be32(payload, (uint32_t)w.sent);
        for (size_t i = 4; i < n; i++) payload[i] = (uint8_t)(w.sent + i);
        if (touch_send(w.a, w.now, payload, n, &id) == 0) {
          w.ids[w.sent] = id;
          w.lens[w.sent] = n;
          w.sent++;
        }
      }
      break;
    case 1:
      w.now += fuzz_u16(&c) % 4000;
      touch_tick(w.a, w.now);
      touch_tick(w.b, w.now);
      touch_tick(w.c, w.now);
      break;
    case 2: deliver(&w, &w.a2b, 0, 0); break;
    case 3: deliver(&w, &w.b2a, 0, 0); break;
    case 4: deliver(&w, (op & 8) ? &w.a2b : &w.b2a, fuzz_u8(&c), 0); break;
    case 5: deliver(&w, (op & 8) ? &w.a2b : &w.b2a, fuzz_u8(&c), 1); break;
    case 6: {
      link *l = (op & 8) ? &w.a2b : &w.b2a;
      if (l->n > 0) free(link_take(l, fuzz_u8(&c) % l->n).p);
      break;
    }
    case 7: {
      if (op & 8) touch_send(w.c, w.now, payload, 4 + op % 32, &id);
      size_t n;
      const uint8_t *raw = fuzz_bytes(&c, fuzz_u8(&c), &n);
      uint8_t *f = fuzz_dup(raw, n);
      if (n > 0 && (op & 16)) f[0] = (op & 32) ? WIRE_TOUCH_ACK : WIRE_TOUCH;
      FUZZ_ASSERT(touch_input(w.c, w.now, f, n) <= 0);
      free(f);
      break;
    }
    }
    drain(&w, (op & 64) != 0);
  }
  for (size_t i = 0; i < w.a2b.n; i++) free(w.a2b.q[i].p);
  for (size_t i = 0; i < w.b2a.n; i++) free(w.b2a.q[i].p);
  touch_peer_free(w.a);
  touch_peer_free(w.b);
  touch_peer_free(w.c);
  return 0;
}
