/*
 * opts.c - natpunch-wire's command line.
 *
 *   natpunch-wire --tap NAME@NETNS --tap NAME@NETNS [impairment] [--seed N]
 *   natpunch-wire --simulate N [--interval D] [--size B] [impairment]
 *
 * Units follow tc(8): durations 50ms / 1.5s / 200us, percentages 5% /
 * 0.25%, rates 10mbit / 512kbit / 1gbit / 100kbps (bytes).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "wire.h"

static const char usage[] =
    "usage: natpunch-wire --tap NAME[@NETNS] --tap NAME[@NETNS] [options]\n"
    "       natpunch-wire --simulate N [--interval D] [--size B] [options]\n"
    "Joins two TAP devices (created here, each inside its network namespace:\n"
    "an `ip netns` name or a path) and forwards Ethernet frames both ways,\n"
    "impaired alike in each direction.  Prints READY once the TAPs exist and\n"
    "counters per direction on SIGTERM/SIGINT.\n"
    "  --delay D      one-way delay (50ms)          --jitter D   +- uniform\n"
    "  --loss P       drop share (5%)               --dup P      duplicate\n"
    "  --reorder P    share sent at once, ahead of delayed frames\n"
    "  --rate R       token-bucket rate (10mbit)    --limit N    frames held\n"
    "  --seed N       random seed (default: time and pid)\n"
    "  --simulate N   no TAPs: push N frames through one direction on a\n"
    "                 virtual clock, --interval D apart (1ms), --size B (100)\n";

/* Parse a decimal number with an optional fraction into value * 10^scale,
 * returning the rest of the string in *rest.  No floating point, so "0.1%"
 * is exact. */
static int fixed(const char *s, unsigned scale, uint64_t *v, const char **rest) {
  uint64_t whole = 0, frac = 0;
  unsigned digits = 0;
  const char *p = s;
  if (*p < '0' || *p > '9') return -1;
  while (*p >= '0' && *p <= '9') {
    if (whole > UINT64_MAX / 100) return -1;
    whole = whole * 10 + (uint64_t)(*p++ - '0');
  }
  if (*p == '.') {
    p++;
    while (*p >= '0' && *p <= '9') {
      if (digits < scale) {
        frac = frac * 10 + (uint64_t)(*p - '0');
        digits++;
      }
      p++;
    }
  }
  for (; digits < scale; digits++) frac *= 10;
  uint64_t mul = 1;
  for (unsigned i = 0; i < scale; i++) mul *= 10;
  if (whole > UINT64_MAX / mul) return -1;
  *v = whole * mul + frac;
  *rest = p;
  return 0;
}

int wire_parse_duration(const char *s, uint64_t *ns) {
  uint64_t v; /* in units of 1e-9 */
  const char *unit;
  if (fixed(s, 9, &v, &unit) < 0) return -1;
  uint64_t div;
  if (strcmp(unit, "s") == 0)
    div = 1;
  else if (strcmp(unit, "ms") == 0)
    div = 1000;
  else if (strcmp(unit, "us") == 0)
    div = 1000000;
  else if (strcmp(unit, "ns") == 0)
    div = 1000000000;
  else
    return -1;
  *ns = v / div;
  if (*ns > 60 * WIRE_NS_PER_S) /* a minute of delay is a typo */
    return -1;
  return 0;
}

int wire_parse_percent(const char *s, uint32_t *ppm) {
  uint64_t v; /* percent * 1e4 = ppm */
  const char *unit;
  if (fixed(s, 4, &v, &unit) < 0) return -1;
  if (strcmp(unit, "%") != 0 && *unit != '\0') return -1;
  if (v > WIRE_PPM) return -1;
  *ppm = (uint32_t)v;
  return 0;
}

int wire_parse_rate(const char *s, uint64_t *bps) {
  static const struct {
    const char *unit;
    uint64_t mul;
  } units[] = {
      {"bit", 1}, {"kbit", 1000}, {"mbit", 1000000}, {"gbit", 1000000000},
      {"bps", 8}, {"kbps", 8000}, {"mbps", 8000000},
  };
  uint64_t v; /* in units of 1e-3 */
  const char *unit;
  if (fixed(s, 3, &v, &unit) < 0) return -1;
  for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
    if (strcasecmp(unit, units[i].unit) == 0) {
      if (v > UINT64_MAX / units[i].mul) return -1;
      *bps = v * units[i].mul / 1000;
      return *bps > 0 ? 0 : -1;
    }
  }
  return -1;
}

static int number(const char *s, uint64_t *v) {
  char *end;
  errno = 0;
  unsigned long long x = strtoull(s, &end, 10);
  if (errno || end == s || *end || *s == '-') return -1;
  *v = x;
  return 0;
}

static int tap_spec(const char *s, struct wire_tap_spec *t) {
  const char *at = strchr(s, '@');
  /* IFNAMSIZ is 16 with the terminating NUL */
  size_t n = at ? (size_t)(at - s) : strlen(s);
  if (n == 0 || n > 15) return -1;
  memcpy(t->name, s, n);
  t->name[n] = '\0';
  t->netns = at && at[1] ? at + 1 : NULL;
  return 0;
}

int wire_opts_parse(struct wire_opts *o, int argc, char **argv, FILE *out, char *err,
                    size_t errlen) {
  memset(o, 0, sizeof(*o));
  o->params.limit = WIRE_DEFAULT_LIMIT;
  o->sim_interval_ns = WIRE_NS_PER_S / 1000;
  o->sim_size = 100;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      fputs(usage, out);
      return 1;
    }
    if (i + 1 >= argc) {
      snprintf(err, errlen, "%s: missing value (try --help)", a);
      return -1;
    }
    const char *v = argv[++i];
    uint64_t n = 0;
    int bad = 0;
    if (strcmp(a, "--tap") == 0) {
      if (o->ntap == 2 || tap_spec(v, &o->tap[o->ntap]) < 0)
        bad = 1;
      else
        o->ntap++;
    } else if (strcmp(a, "--delay") == 0) {
      bad = wire_parse_duration(v, &o->params.delay_ns);
    } else if (strcmp(a, "--jitter") == 0) {
      bad = wire_parse_duration(v, &o->params.jitter_ns);
    } else if (strcmp(a, "--loss") == 0) {
      bad = wire_parse_percent(v, &o->params.loss_ppm);
    } else if (strcmp(a, "--dup") == 0) {
      bad = wire_parse_percent(v, &o->params.dup_ppm);
    } else if (strcmp(a, "--reorder") == 0) {
      bad = wire_parse_percent(v, &o->params.reorder_ppm);
    } else if (strcmp(a, "--rate") == 0) {
      bad = wire_parse_rate(v, &o->params.rate_bps);
    } else if (strcmp(a, "--limit") == 0) {
      bad = number(v, &n) || n == 0 || n > 1000000;
      o->params.limit = (uint32_t)n;
    } else if (strcmp(a, "--seed") == 0) {
      bad = number(v, &o->seed);
      o->seed_set = 1;
    } else if (strcmp(a, "--simulate") == 0) {
      bad = number(v, &o->simulate) || o->simulate == 0 || o->simulate > 10000000;
    } else if (strcmp(a, "--interval") == 0) {
      bad = wire_parse_duration(v, &o->sim_interval_ns);
    } else if (strcmp(a, "--size") == 0) {
      bad = number(v, &n) || n < 16 || n > WIRE_MAX_FRAME;
      o->sim_size = (uint32_t)n;
    } else {
      snprintf(err, errlen, "unknown option %s (try --help)", a);
      return -1;
    }
    if (bad) {
      snprintf(err, errlen, "%s: bad value '%s'", a, v);
      return -1;
    }
  }
  if (o->params.jitter_ns > o->params.delay_ns) {
    snprintf(err, errlen, "--jitter is larger than --delay");
    return -1;
  }
  if (!o->simulate && o->ntap != 2) {
    snprintf(err, errlen, "needs two --tap (or --simulate)");
    return -1;
  }
  return 0;
}
