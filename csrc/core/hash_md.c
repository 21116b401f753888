/*
 * hash_md.c - what SHA-1, SHA-256 and MD5 share: buffering input into
 * 64-byte blocks and the final padding (Merkle-Damgard strengthening).
 * Each hash supplies only its compression function and byte order.
 */
#include <string.h>
#include "crypto.h"

void np_md_update(uint32_t *h, struct np_md_buf *m, np_md_compress f, const void *data,
                  size_t len) {
  const uint8_t *p = data;
  m->total += len;
  while (len > 0) {
    if (m->used == 0 && len >= NP_HASH_BLOCK) {
      f(h, p);
      p += NP_HASH_BLOCK;
      len -= NP_HASH_BLOCK;
      continue;
    }
    size_t n = NP_HASH_BLOCK - m->used;
    if (n > len) n = len;
    memcpy(m->buf + m->used, p, n);
    m->used += n;
    p += n;
    len -= n;
    if (m->used == NP_HASH_BLOCK) {
      f(h, m->buf);
      m->used = 0;
    }
  }
}

void np_md_pad(uint32_t *h, struct np_md_buf *m, np_md_compress f, int big_endian) {
  uint64_t bits = m->total * 8;
  m->buf[m->used++] = 0x80;
  if (m->used > NP_HASH_BLOCK - 8) {
    memset(m->buf + m->used, 0, NP_HASH_BLOCK - m->used);
    f(h, m->buf);
    m->used = 0;
  }
  memset(m->buf + m->used, 0, NP_HASH_BLOCK - 8 - m->used);
  for (int i = 0; i < 8; i++) {
    int shift = big_endian ? 8 * (7 - i) : 8 * i;
    m->buf[NP_HASH_BLOCK - 8 + i] = (uint8_t)(bits >> shift);
  }
  f(h, m->buf);
}
