/*
 * fuzz.h - shared by the libFuzzer targets (csrc/fuzz/fuzz_*.c): a cursor
 * that takes bytes off the fuzzer's input (zeros once it runs out, so every
 * input is a valid script), and FUZZ_ASSERT, which aborts so that libFuzzer
 * records the input as a crash when an invariant does not hold.
 *
 * The targets link csrc/core only (pure code: no Lua, no libuv, no system
 * calls), built with clang -fsanitize=fuzzer,address,undefined.
 */
#ifndef NP_FUZZ_H
#define NP_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define FUZZ_ASSERT(cond)                                                          \
  do {                                                                             \
    if (!(cond)) {                                                                 \
      fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
      abort();                                                                     \
    }                                                                              \
  } while (0)

typedef struct fuzz_in {
  const uint8_t *p;
  size_t left;
} fuzz_in;

static inline uint8_t fuzz_u8(fuzz_in *in) {
  if (in->left == 0) return 0;
  in->left--;
  return *in->p++;
}

static inline uint16_t fuzz_u16(fuzz_in *in) {
  uint16_t hi = fuzz_u8(in);
  return (uint16_t)(hi << 8 | fuzz_u8(in));
}

static inline uint32_t fuzz_u32(fuzz_in *in) {
  uint32_t hi = fuzz_u16(in);
  return hi << 16 | fuzz_u16(in);
}

/* Up to `want` bytes, fewer when the input runs out; *got says how many. */
static inline const uint8_t *fuzz_bytes(fuzz_in *in, size_t want, size_t *got) {
  const uint8_t *p = in->p;
  if (want > in->left) want = in->left;
  in->p += want;
  in->left -= want;
  *got = want;
  return p;
}

/* An exact-size heap copy, so AddressSanitizer sees a read one past it. */
static inline uint8_t *fuzz_dup(const uint8_t *p, size_t n) {
  uint8_t *c = malloc(n ? n : 1);
  FUZZ_ASSERT(c != NULL);
  for (size_t i = 0; i < n; i++) c[i] = p[i];
  return c;
}

#endif
