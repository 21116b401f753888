/*
 * engine.c - the impairment of one direction of a link.
 *
 * Frames and the current time go in, frames and the next deadline come
 * out; there is no I/O here, so the same code runs on TAPs (main.c) and on
 * a virtual clock (sim.c).
 *
 * A frame goes through two stages, as in netem:
 *  1. the delay line: loss, duplication, then a release time of
 *     arrival + delay +- jitter, or arrival itself for the --reorder share
 *     (which so overtakes the frames still delayed).  A min-heap on
 *     (release time, arrival order) releases them; jitter may reorder
 *     frames, as netem's does.
 *  2. the rate queue (only with --rate): a FIFO drained by a token bucket.
 * Both stages share one pool of `limit` slots: when it is full a new frame
 * is dropped and counted (qdrop), so memory is bounded.
 */
#include <stdlib.h>
#include <string.h>

#include "wire.h"

/* The bucket holds at least two full frames (so any frame can pass) or
 * 10 ms worth of rate, whichever is more. */
#define BURST_MIN_BYTES (2.0 * WIRE_MAX_FRAME)
#define BURST_SECONDS   0.010

int wire_dir_init(struct wire_dir *d, const struct wire_params *p, struct wire_rng *rng) {
  memset(d, 0, sizeof(*d));
  d->p = *p;
  if (d->p.limit == 0) d->p.limit = WIRE_DEFAULT_LIMIT;
  d->rng = rng;
  d->slots = calloc(d->p.limit, sizeof(*d->slots));
  d->free_list = calloc(d->p.limit, sizeof(*d->free_list));
  d->heap = calloc(d->p.limit, sizeof(*d->heap));
  d->fifo = calloc(d->p.limit, sizeof(*d->fifo));
  if (!d->slots || !d->free_list || !d->heap || !d->fifo) {
    wire_dir_free(d);
    return -1;
  }
  for (uint32_t i = 0; i < d->p.limit; i++) d->free_list[i] = d->p.limit - 1 - i;
  d->nfree = d->p.limit;
  if (d->p.rate_bps) {
    double b = (double)d->p.rate_bps / 8.0 * BURST_SECONDS;
    d->burst = b > BURST_MIN_BYTES ? b : BURST_MIN_BYTES;
    d->tokens = d->burst;
  }
  return 0;
}

void wire_dir_free(struct wire_dir *d) {
  free(d->slots);
  free(d->free_list);
  free(d->heap);
  free(d->fifo);
  d->slots = NULL;
  d->free_list = d->heap = d->fifo = NULL;
}

uint32_t wire_dir_held(const struct wire_dir *d) {
  return d->p.limit - d->nfree;
}

static int earlier(const struct wire_dir *d, uint32_t a, uint32_t b) {
  const struct wire_slot *x = &d->slots[a], *y = &d->slots[b];
  return x->due < y->due || (x->due == y->due && x->seq < y->seq);
}

static void heap_push(struct wire_dir *d, uint32_t slot) {
  uint32_t i = d->nheap++;
  d->heap[i] = slot;
  while (i > 0) {
    uint32_t parent = (i - 1) / 2;
    if (!earlier(d, d->heap[i], d->heap[parent])) break;
    uint32_t t = d->heap[i];
    d->heap[i] = d->heap[parent];
    d->heap[parent] = t;
    i = parent;
  }
}

static uint32_t heap_pop(struct wire_dir *d) {
  uint32_t top = d->heap[0];
  d->heap[0] = d->heap[--d->nheap];
  uint32_t i = 0;
  for (;;) {
    uint32_t l = 2 * i + 1, r = l + 1, m = i;
    if (l < d->nheap && earlier(d, d->heap[l], d->heap[m])) m = l;
    if (r < d->nheap && earlier(d, d->heap[r], d->heap[m])) m = r;
    if (m == i) break;
    uint32_t t = d->heap[i];
    d->heap[i] = d->heap[m];
    d->heap[m] = t;
    i = m;
  }
  return top;
}

static void enqueue(struct wire_dir *d, uint64_t now, const void *buf, size_t len) {
  if (d->nfree == 0) {
    d->c.qdrop++;
    return;
  }
  uint32_t s = d->free_list[--d->nfree];
  if (d->p.limit - d->nfree > d->c.qmax) d->c.qmax = d->p.limit - d->nfree;
  struct wire_slot *slot = &d->slots[s];
  slot->seq = d->next_seq++;
  slot->len = (uint32_t)len;
  memcpy(slot->data, buf, len);
  if (wire_rng_chance(d->rng, d->p.reorder_ppm) && d->p.delay_ns > 0) {
    slot->due = now;
    d->c.reordered++;
  } else {
    int64_t j = wire_rng_spread(d->rng, d->p.jitter_ns);
    int64_t delay = (int64_t)d->p.delay_ns + j;
    slot->due = now + (uint64_t)(delay > 0 ? delay : 0);
  }
  heap_push(d, s);
}

void wire_dir_push(struct wire_dir *d, uint64_t now, const void *buf, size_t len) {
  d->c.rx++;
  if (len > WIRE_MAX_FRAME) {
    d->c.oversize++;
    return;
  }
  if (wire_rng_chance(d->rng, d->p.loss_ppm)) {
    d->c.lost++;
    return;
  }
  enqueue(d, now, buf, len);
  if (wire_rng_chance(d->rng, d->p.dup_ppm)) {
    d->c.dup++;
    enqueue(d, now, buf, len);
  }
}

static void refill(struct wire_dir *d, uint64_t now) {
  if (now <= d->tokens_at) return;
  uint64_t dt = now - d->tokens_at;
  d->tokens_at = now;
  /* A long idle spell only ever fills the bucket. */
  if (dt > WIRE_NS_PER_S) dt = WIRE_NS_PER_S;
  d->tokens += (double)dt * (double)d->p.rate_bps / 8.0 / 1e9;
  if (d->tokens > d->burst) d->tokens = d->burst;
}

static size_t hand_out(struct wire_dir *d, uint32_t s, void *out, size_t cap) {
  struct wire_slot *slot = &d->slots[s];
  size_t len = slot->len < cap ? slot->len : cap;
  memcpy(out, slot->data, len);
  d->free_list[d->nfree++] = s;
  d->c.tx++;
  d->c.tx_bytes += len;
  return len;
}

size_t wire_dir_pop(struct wire_dir *d, uint64_t now, void *out, size_t cap) {
  if (!d->p.rate_bps) {
    if (d->nheap && d->slots[d->heap[0]].due <= now) return hand_out(d, heap_pop(d), out, cap);
    return 0;
  }
  while (d->nheap && d->slots[d->heap[0]].due <= now) {
    uint32_t s = heap_pop(d);
    d->fifo[(d->fifo_head + d->nfifo++) % d->p.limit] = s;
  }
  if (!d->nfifo) return 0;
  refill(d, now);
  uint32_t s = d->fifo[d->fifo_head];
  if (d->tokens < (double)d->slots[s].len) return 0;
  d->tokens -= (double)d->slots[s].len;
  d->fifo_head = (d->fifo_head + 1) % d->p.limit;
  d->nfifo--;
  return hand_out(d, s, out, cap);
}

uint64_t wire_dir_next(const struct wire_dir *d, uint64_t now) {
  uint64_t next = UINT64_MAX;
  if (d->nheap) next = d->slots[d->heap[0]].due;
  if (d->p.rate_bps && d->nfifo) {
    double need = (double)d->slots[d->fifo[d->fifo_head]].len - d->tokens;
    /* tokens were last counted at tokens_at, not now */
    uint64_t at = d->tokens_at;
    if (need > 0) at += (uint64_t)(need * 8.0 * 1e9 / (double)d->p.rate_bps) + 1;
    if (at < now) at = now;
    if (at < next) next = at;
  }
  return next;
}

void wire_print_counters(FILE *out, const char *label, const struct wire_counters *c) {
  fprintf(out,
          "%s rx=%llu tx=%llu tx_bytes=%llu lost=%llu dup=%llu "
          "reordered=%llu qdrop=%llu oversize=%llu write_err=%llu qmax=%llu\n",
          label, (unsigned long long)c->rx, (unsigned long long)c->tx,
          (unsigned long long)c->tx_bytes, (unsigned long long)c->lost, (unsigned long long)c->dup,
          (unsigned long long)c->reordered, (unsigned long long)c->qdrop,
          (unsigned long long)c->oversize, (unsigned long long)c->write_err,
          (unsigned long long)c->qmax);
}
