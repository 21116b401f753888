/*
 * fuzz_stun_integrity.c - MESSAGE-INTEGRITY (HMAC-SHA1) and
 * MESSAGE-INTEGRITY-SHA256 checks, on arbitrary messages and on messages
 * the writer signs.
 *
 * Input: [key length u8][key][flip position u16][flip mask u8][rest].  The
 * rest is first decoded as a message and both checks run on it (no crash,
 * no read outside it).  Then it is carried as USERNAME/SOFTWARE/PADDING of
 * a message the writer signs with the key: that one must verify with the
 * key, fail with another key, and fail (or not decode) once any single
 * byte of it is changed.
 */
#include "fuzz.h"
#include "stun.h"

#include <string.h>

static const uint8_t tid[STUN_TID_SIZE] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t len) {
  fuzz_in c = {in, len};
  size_t klen;
  const uint8_t *key = fuzz_bytes(&c, fuzz_u8(&c), &klen);
  uint16_t flip_at = fuzz_u16(&c);
  uint8_t flip = fuzz_u8(&c);
  if (flip == 0) flip = 1;
  size_t rlen;
  const uint8_t *rest = fuzz_bytes(&c, c.left, &rlen);

  /* 1. whatever comes in */
  uint8_t *data = fuzz_dup(rest, rlen);
  struct stun_msg m;
  if (stun_read(data, rlen, &m) == 0) {
    int a = stun_check_integrity(data, &m, key, klen);
    int b = stun_check_integrity_sha256(data, &m, key, klen);
    FUZZ_ASSERT(a == 0 || a == STUN_EINTEGRITY || a == STUN_ENOINTEGRITY);
    FUZZ_ASSERT(b == 0 || b == STUN_EINTEGRITY || b == STUN_ENOINTEGRITY);
    FUZZ_ASSERT((a == STUN_ENOINTEGRITY) == !(m.has & STUN_HAS_INTEGRITY));
    FUZZ_ASSERT((b == STUN_ENOINTEGRITY) == !(m.has & STUN_HAS_INTEGRITY_SHA256));
  }
  free(data);

  /* 2. a message we sign ourselves */
  uint8_t buf[2048];
  struct stun_writer w;
  size_t ulen = rlen < STUN_MAX_USERNAME ? rlen : STUN_MAX_USERNAME;
  stun_writer_init(&w, buf, sizeof buf, STUN_METHOD_BINDING, STUN_CLASS_REQUEST, tid, sizeof tid);
  stun_put(&w, STUN_ATTR_USERNAME, rest, ulen);
  stun_put_padding(&w, rlen - ulen < 512 ? rlen - ulen : 512);
  stun_put_integrity(&w, key, klen);
  stun_put_integrity_sha256(&w, key, klen);
  stun_put_fingerprint(&w);
  int n = stun_writer_finish(&w);
  FUZZ_ASSERT(n > 0);
  uint8_t *msg = fuzz_dup(buf, (size_t)n);
  FUZZ_ASSERT(stun_read(msg, (size_t)n, &m) == 0);
  FUZZ_ASSERT(m.fingerprint_ok);
  FUZZ_ASSERT(stun_check_integrity(msg, &m, key, klen) == 0);
  FUZZ_ASSERT(stun_check_integrity_sha256(msg, &m, key, klen) == 0);
  uint8_t other[256];
  memcpy(other, key, klen);
  other[klen] = 'x'; /* a longer key is another key (HMAC pads with zeros, not 'x') */
  FUZZ_ASSERT(stun_check_integrity(msg, &m, other, klen + 1) == STUN_EINTEGRITY);
  FUZZ_ASSERT(stun_check_integrity_sha256(msg, &m, other, klen + 1) == STUN_EINTEGRITY);

  /* 3. one byte changed anywhere before FINGERPRINT's value */
  size_t at = flip_at % ((size_t)n - 4);
  msg[at] ^= flip;
  if (stun_read(msg, (size_t)n, &m) == 0) {
    int a = stun_check_integrity(msg, &m, key, klen);
    int b = stun_check_integrity_sha256(msg, &m, key, klen);
    FUZZ_ASSERT(!m.fingerprint_ok || a != 0 || b != 0);
    /* The two MACs cover everything up to themselves: a change there
     * must break the MAC that covers it. */
    if (at < m.mi_offset && (m.has & STUN_HAS_INTEGRITY)) FUZZ_ASSERT(a != 0);
  }
  free(msg);
  return 0;
}
