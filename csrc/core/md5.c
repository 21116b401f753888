/*
 * md5.c - MD5 (RFC 1321), only for the STUN long-term credential key
 * key = MD5(username ":" OpaqueString(realm) ":" OpaqueString(password))
 * (RFC 8489 §9.2.2).  Not used for anything that needs collision resistance.
 */
#include "bytes.h"
#include "crypto.h"

#include <string.h>

static uint32_t rol(uint32_t x, int n) {
  return (x << n) | (x >> (32 - n));
}

/* RFC 1321 §3.4: T[i] = floor(2^32 * abs(sin(i + 1))) and the shifts. */
static const uint32_t T[64] = {
    0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
    0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
    0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
    0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
    0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
    0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
    0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
    0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391,
};
static const uint8_t S[16] = {7, 12, 17, 22, 5, 9, 14, 20, 4, 11, 16, 23, 6, 10, 15, 21};

static void md5_block(uint32_t h[4], const uint8_t *blk) {
  uint32_t x[16];
  for (int i = 0; i < 16; i++) x[i] = le32(blk + 4 * i);

  uint32_t a = h[0], b = h[1], c = h[2], d = h[3];
  for (int i = 0; i < 64; i++) {
    uint32_t f;
    int g;
    switch (i / 16) {
    case 0:
      f = (b & c) | (~b & d);
      g = i;
      break;
    case 1:
      f = (b & d) | (c & ~d);
      g = (5 * i + 1) % 16;
      break;
    case 2:
      f = b ^ c ^ d;
      g = (3 * i + 5) % 16;
      break;
    default:
      f = c ^ (b | ~d);
      g = (7 * i) % 16;
      break;
    }
    uint32_t tmp = d;
    d = c;
    c = b;
    b = b + rol(a + f + T[i] + x[g], S[(i / 16) * 4 + i % 4]);
    a = tmp;
  }
  h[0] += a;
  h[1] += b;
  h[2] += c;
  h[3] += d;
}

void np_md5_init(struct np_md5 *c) {
  c->h[0] = 0x67452301;
  c->h[1] = 0xefcdab89;
  c->h[2] = 0x98badcfe;
  c->h[3] = 0x10325476;
  c->md.total = 0;
  c->md.used = 0;
}

void np_md5_update(struct np_md5 *c, const void *data, size_t len) {
  np_md_update(c->h, &c->md, md5_block, data, len);
}

void np_md5_final(struct np_md5 *c, uint8_t out[NP_MD5_LEN]) {
  /* RFC 1321 §3.1-3.2: like SHA but the bit length is little-endian. */
  np_md_pad(c->h, &c->md, md5_block, 0);
  for (int i = 0; i < 4; i++) put_le32(out + 4 * i, c->h[i]);
  np_wipe(c, sizeof *c);
}

void np_md5(const void *data, size_t len, uint8_t out[NP_MD5_LEN]) {
  struct np_md5 c;
  np_md5_init(&c);
  np_md5_update(&c, data, len);
  np_md5_final(&c, out);
}
