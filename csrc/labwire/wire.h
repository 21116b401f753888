/*
 * wire.h - natpunch-wire: a userspace link emulator for the natpunch lab.
 *
 * The lab's kernel may lack netem (sch_netem), so an impaired link is two
 * TAP devices, one in each network namespace, joined by this program: it
 * reads Ethernet frames from one TAP and writes them to the other after the
 * configured delay and jitter, dropping, duplicating or reordering them as
 * asked, under an optional token-bucket rate.  Both directions get the same
 * impairment, as netem on both ends of a veth would.
 *
 * Files, one concern each:
 *   rng.c     seeded pseudo-random numbers (reproducible runs)
 *   engine.c  the impairment of one direction: frames and a clock in,
 *             frames and the next deadline out; no I/O
 *   opts.c    command line: durations, percentages, rates
 *   tap.c     open a TAP device inside a named network namespace
 *   sim.c     --simulate: the engine on a virtual clock, for tests
 *   main.c    the poll loop, signals and counters
 */
#ifndef NATPUNCH_LABWIRE_H
#define NATPUNCH_LABWIRE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* An Ethernet frame read from a TAP (IFF_NO_PI) with MTU 1500 is at most
 * 1514 bytes; 2048 leaves room for VLAN tags and jumbo-free headroom. */
#define WIRE_MAX_FRAME 2048

/* Default bound on the frames one direction holds (delay line plus rate
 * queue); beyond it frames are dropped and counted as qdrop. */
#define WIRE_DEFAULT_LIMIT 1000

#define WIRE_NS_PER_S 1000000000ull
#define WIRE_PPM      1000000u

/* ---- rng.c ---- */

/* splitmix64: small, fast, and good enough for drop decisions. */
struct wire_rng {
  uint64_t state;
};

void wire_rng_seed(struct wire_rng *r, uint64_t seed);
uint64_t wire_rng_next(struct wire_rng *r);
/* 1 with probability ppm / 1e6. */
int wire_rng_chance(struct wire_rng *r, uint32_t ppm);
/* Uniform in [-span, +span]. */
int64_t wire_rng_spread(struct wire_rng *r, uint64_t span);

/* ---- engine.c ---- */

struct wire_params {
  uint64_t delay_ns;
  uint64_t jitter_ns; /* delay varies uniformly by +-jitter */
  uint32_t loss_ppm;  /* parts per million */
  uint32_t dup_ppm;
  uint32_t reorder_ppm; /* sent at once, overtaking delayed frames */
  uint64_t rate_bps;    /* 0: unlimited */
  uint32_t limit;       /* frames held at most */
};

struct wire_counters {
  uint64_t rx; /* frames offered */
  uint64_t tx; /* frames handed out */
  uint64_t tx_bytes;
  uint64_t lost;      /* dropped by --loss */
  uint64_t dup;       /* extra copies made by --dup */
  uint64_t reordered; /* sent ahead by --reorder */
  uint64_t qdrop;     /* dropped because the queue was full */
  uint64_t oversize;  /* longer than WIRE_MAX_FRAME */
  uint64_t write_err; /* filled in by the caller */
  uint64_t qmax;      /* most frames held at once since the last counter line */
};

struct wire_slot {
  uint64_t due; /* when the delay line releases it (ns) */
  uint64_t seq; /* arrival order: ties leave in order */
  uint32_t len;
  unsigned char data[WIRE_MAX_FRAME];
};

struct wire_dir {
  struct wire_params p;
  struct wire_rng *rng;
  struct wire_counters c;
  struct wire_slot *slots; /* limit slots */
  uint32_t *free_list;     /* indices of free slots */
  uint32_t nfree;
  uint32_t *heap; /* delay line: min-heap on (due, seq) */
  uint32_t nheap;
  uint32_t *fifo; /* rate queue: ring of slot indices */
  uint32_t fifo_head;
  uint32_t nfifo;
  uint64_t next_seq;
  double tokens;      /* token bucket, bytes */
  double burst;       /* bucket size, bytes */
  uint64_t tokens_at; /* time of the last refill (ns) */
};

int wire_dir_init(struct wire_dir *d, const struct wire_params *p, struct wire_rng *rng);
void wire_dir_free(struct wire_dir *d);
/* Offer a frame that arrived at now. */
void wire_dir_push(struct wire_dir *d, uint64_t now, const void *buf, size_t len);
/* Take the next frame due at now into out (cap bytes).  Returns its length,
 * 0 when none is due. */
size_t wire_dir_pop(struct wire_dir *d, uint64_t now, void *out, size_t cap);
/* Absolute time of the next frame release, UINT64_MAX if none is held. */
uint64_t wire_dir_next(const struct wire_dir *d, uint64_t now);
/* Frames held. */
uint32_t wire_dir_held(const struct wire_dir *d);
/* One line "label rx=.. tx=.. ..." for logs and tests. */
void wire_print_counters(FILE *out, const char *label, const struct wire_counters *c);

/* ---- opts.c ---- */

struct wire_tap_spec {
  char name[16];     /* interface name (IFNAMSIZ) */
  const char *netns; /* ip-netns name or path, NULL: ours */
};

struct wire_opts {
  struct wire_params params;
  struct wire_tap_spec tap[2];
  int ntap;
  uint64_t seed;
  int seed_set;
  uint64_t simulate; /* frames, 0: run on TAPs */
  uint64_t sim_interval_ns;
  uint32_t sim_size;
};

/* Parse argv; on error writes a message to err and returns -1.  Returns 1
 * when --help was asked (usage already printed to out). */
int wire_opts_parse(struct wire_opts *o, int argc, char **argv, FILE *out, char *err,
                    size_t errlen);
int wire_parse_duration(const char *s, uint64_t *ns);
int wire_parse_percent(const char *s, uint32_t *ppm);
int wire_parse_rate(const char *s, uint64_t *bps);

/* ---- tap.c ---- */

/* Create TAP `name` inside network namespace `netns` (an `ip netns` name,
 * a path, or NULL for the current one) and return its fd (non-blocking),
 * or -1 with a message in err.  The fd stays tied to the device wherever
 * the device lives; the device goes away when the fd is closed. */
int wire_tap_open(const struct wire_tap_spec *spec, char *err, size_t errlen);

/* ---- sim.c ---- */

int wire_simulate(const struct wire_opts *o, FILE *out);

#endif
