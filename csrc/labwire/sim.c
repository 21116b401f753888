/*
 * sim.c - --simulate: push frames through one direction of the engine on a
 * virtual clock, and report what came out.  It lets the specs check the
 * impairment arithmetic (loss share, delay spread, rate, queue bound)
 * without root, TAPs or real time.
 *
 * Output, one line:
 *   sim sent=N rx=.. tx=.. lost=.. dup=.. reordered=.. qdrop=..
 *       delay_min_ms=.. delay_avg_ms=.. delay_max_ms=.. out_of_order=..
 *       rate_bps=..
 */
#include <stdlib.h>
#include <string.h>

#include "wire.h"

struct stamp {
  uint64_t seq;
  uint64_t sent;
};

int wire_simulate(const struct wire_opts *o, FILE *out) {
  struct wire_rng rng;
  struct wire_dir d;
  wire_rng_seed(&rng, o->seed);
  if (wire_dir_init(&d, &o->params, &rng) < 0) {
    fprintf(stderr, "natpunch-wire: out of memory\n");
    return 1;
  }
  unsigned char frame[WIRE_MAX_FRAME], got[WIRE_MAX_FRAME];
  memset(frame, 0xab, sizeof(frame));
  uint64_t now = 0, pushed = 0, next_push = 0;
  uint64_t delivered = 0, dmin = UINT64_MAX, dmax = 0, last_seq = 0;
  uint64_t out_of_order = 0, first_tx = 0, last_tx = 0, bytes = 0;
  size_t first_len = 0;
  double dsum = 0;
  for (;;) {
    uint64_t next = wire_dir_next(&d, now);
    if (pushed < o->simulate && next_push < next) next = next_push;
    if (next == UINT64_MAX) break;
    if (next > now) now = next;
    if (pushed < o->simulate && next_push <= now) {
      struct stamp s = {pushed + 1, now};
      memcpy(frame, &s, sizeof(s));
      wire_dir_push(&d, now, frame, o->sim_size);
      pushed++;
      next_push = now + o->sim_interval_ns;
    }
    size_t len;
    while ((len = wire_dir_pop(&d, now, got, sizeof(got))) > 0) {
      struct stamp s;
      memcpy(&s, got, sizeof(s));
      uint64_t delay = now - s.sent;
      dmin = delay < dmin ? delay : dmin;
      dmax = delay > dmax ? delay : dmax;
      dsum += (double)delay;
      if (s.seq < last_seq)
        out_of_order++;
      else
        last_seq = s.seq;
      if (!delivered) {
        first_tx = now;
        first_len = len;
      }
      last_tx = now;
      bytes += len;
      delivered++;
    }
  }
  double span = (double)(last_tx - first_tx) / 1e9;
  char label[64];
  snprintf(label, sizeof(label), "sim sent=%llu", (unsigned long long)pushed);
  wire_print_counters(out, label, &d.c);
  fprintf(out,
          "sim delay_min_ms=%.3f delay_avg_ms=%.3f "
          "delay_max_ms=%.3f out_of_order=%llu rate_bps=%.0f\n",
          delivered ? (double)dmin / 1e6 : 0.0, delivered ? dsum / (double)delivered / 1e6 : 0.0,
          (double)dmax / 1e6, (unsigned long long)out_of_order,
          /* the first frame opens the span: count what came after it */
          span > 0 ? (double)(bytes - first_len) * 8.0 / span : 0.0);
  wire_dir_free(&d);
  return 0;
}
