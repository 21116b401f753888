/*
 * hmac.c - HMAC (RFC 2104) over SHA-1 and SHA-256.
 *
 * HMAC(K, m) = H((K' ^ opad) || H((K' ^ ipad) || m)), where K' is the key
 * zero-padded to the block size, or first hashed when longer than a block.
 */
#include "crypto.h"

#include <string.h>

#define IPAD 0x36
#define OPAD 0x5c

/* K' ^ ipad and K' ^ opad; `hash` shortens a key longer than a block. */
static void key_pads(const void *key, size_t keylen, void (*hash)(const void *, size_t, uint8_t *),
                     uint8_t ipad[NP_HASH_BLOCK], uint8_t opad[NP_HASH_BLOCK]) {
  uint8_t k[NP_HASH_BLOCK] = {0};
  if (keylen > NP_HASH_BLOCK)
    hash(key, keylen, k);
  else if (keylen > 0)
    memcpy(k, key, keylen);
  for (int i = 0; i < NP_HASH_BLOCK; i++) {
    ipad[i] = k[i] ^ IPAD;
    opad[i] = k[i] ^ OPAD;
  }
  np_wipe(k, sizeof k);
}

void np_hmac_sha1_init(struct np_hmac_sha1 *c, const void *key, size_t keylen) {
  uint8_t ipad[NP_HASH_BLOCK], opad[NP_HASH_BLOCK];
  key_pads(key, keylen, np_sha1, ipad, opad);
  np_sha1_init(&c->inner);
  np_sha1_update(&c->inner, ipad, sizeof ipad);
  np_sha1_init(&c->outer);
  np_sha1_update(&c->outer, opad, sizeof opad);
  np_wipe(ipad, sizeof ipad);
  np_wipe(opad, sizeof opad);
}

void np_hmac_sha1_update(struct np_hmac_sha1 *c, const void *data, size_t len) {
  np_sha1_update(&c->inner, data, len);
}

void np_hmac_sha1_final(struct np_hmac_sha1 *c, uint8_t out[NP_SHA1_LEN]) {
  uint8_t ih[NP_SHA1_LEN];
  np_sha1_final(&c->inner, ih);
  np_sha1_update(&c->outer, ih, sizeof ih);
  np_sha1_final(&c->outer, out);
  np_wipe(ih, sizeof ih);
}

void np_hmac_sha1(const void *key, size_t keylen, const void *data, size_t len,
                  uint8_t out[NP_SHA1_LEN]) {
  struct np_hmac_sha1 c;
  np_hmac_sha1_init(&c, key, keylen);
  np_hmac_sha1_update(&c, data, len);
  np_hmac_sha1_final(&c, out);
}

void np_hmac_sha256_init(struct np_hmac_sha256 *c, const void *key, size_t keylen) {
  uint8_t ipad[NP_HASH_BLOCK], opad[NP_HASH_BLOCK];
  key_pads(key, keylen, np_sha256, ipad, opad);
  np_sha256_init(&c->inner);
  np_sha256_update(&c->inner, ipad, sizeof ipad);
  np_sha256_init(&c->outer);
  np_sha256_update(&c->outer, opad, sizeof opad);
  np_wipe(ipad, sizeof ipad);
  np_wipe(opad, sizeof opad);
}

void np_hmac_sha256_update(struct np_hmac_sha256 *c, const void *data, size_t len) {
  np_sha256_update(&c->inner, data, len);
}

void np_hmac_sha256_final(struct np_hmac_sha256 *c, uint8_t out[NP_SHA256_LEN]) {
  uint8_t ih[NP_SHA256_LEN];
  np_sha256_final(&c->inner, ih);
  np_sha256_update(&c->outer, ih, sizeof ih);
  np_sha256_final(&c->outer, out);
  np_wipe(ih, sizeof ih);
}

void np_hmac_sha256(const void *key, size_t keylen, const void *data, size_t len,
                    uint8_t out[NP_SHA256_LEN]) {
  struct np_hmac_sha256 c;
  np_hmac_sha256_init(&c, key, keylen);
  np_hmac_sha256_update(&c, data, len);
  np_hmac_sha256_final(&c, out);
}
