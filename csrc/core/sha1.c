/*
 * sha1.c - SHA-1 (FIPS 180-4 §6.1), for STUN MESSAGE-INTEGRITY.
 *
 * SHA-1 is broken for collisions but HMAC-SHA1 is still what RFC 8489
 * §14.5 mandates on the wire, and HMAC does not rely on collision
 * resistance.
 */
#include "bytes.h"
#include "crypto.h"

#include <string.h>

static uint32_t rol(uint32_t x, int n) {
  return (x << n) | (x >> (32 - n));
}

static void sha1_block(uint32_t h[5], const uint8_t *blk) {
  uint32_t w[80];
  for (int t = 0; t < 16; t++) w[t] = be32(blk + 4 * t);
  for (int t = 16; t < 80; t++) w[t] = rol(w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16], 1);

  uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
  for (int t = 0; t < 80; t++) {
    uint32_t f, k;
    if (t < 20) {
      f = (b & c) | (~b & d);
      k = 0x5A827999;
    } else if (t < 40) {
      f = b ^ c ^ d;
      k = 0x6ED9EBA1;
    } else if (t < 60) {
      f = (b & c) | (b & d) | (c & d);
      k = 0x8F1BBCDC;
    } else {
      f = b ^ c ^ d;
      k = 0xCA62C1D6;
    }
    uint32_t tmp = rol(a, 5) + f + e + k + w[t];
    e = d;
    d = c;
    c = rol(b, 30);
    b = a;
    a = tmp;
  }
  h[0] += a;
  h[1] += b;
  h[2] += c;
  h[3] += d;
  h[4] += e;
}

void np_sha1_init(struct np_sha1 *c) {
  /* FIPS 180-4 §5.3.1 */
  static const uint32_t iv[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
  memcpy(c->h, iv, sizeof iv);
  c->md.total = 0;
  c->md.used = 0;
}

void np_sha1_update(struct np_sha1 *c, const void *data, size_t len) {
  np_md_update(c->h, &c->md, sha1_block, data, len);
}

void np_sha1_final(struct np_sha1 *c, uint8_t out[NP_SHA1_LEN]) {
  /* FIPS 180-4 §5.1.1: 0x80, zeros, then the bit length big-endian. */
  np_md_pad(c->h, &c->md, sha1_block, 1);
  for (int i = 0; i < 5; i++) put_be32(out + 4 * i, c->h[i]);
  np_wipe(c, sizeof *c);
}

void np_sha1(const void *data, size_t len, uint8_t out[NP_SHA1_LEN]) {
  struct np_sha1 c;
  np_sha1_init(&c);
  np_sha1_update(&c, data, len);
  np_sha1_final(&c, out);
}
