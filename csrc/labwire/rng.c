/*
 * rng.c - seeded pseudo-random numbers for the wire's drop, duplicate,
 * reorder and jitter decisions.  A seed makes a lab run repeatable.
 *
 * splitmix64 (Steele, Lea, Flood: "Fast splittable pseudorandom number
 * generators", OOPSLA 2014): one 64-bit word of state, full period.
 */
#include "wire.h"

void wire_rng_seed(struct wire_rng *r, uint64_t seed) {
  r->state = seed;
}

uint64_t wire_rng_next(struct wire_rng *r) {
  uint64_t z = (r->state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

int wire_rng_chance(struct wire_rng *r, uint32_t ppm) {
  if (ppm == 0) return 0;
  /* The modulo bias over 2^64 is below 1e-13: irrelevant here. */
  return wire_rng_next(r) % WIRE_PPM < ppm;
}

int64_t wire_rng_spread(struct wire_rng *r, uint64_t span) {
  if (span == 0) return 0;
  return (int64_t)(wire_rng_next(r) % (2 * span + 1)) - (int64_t)span;
}
