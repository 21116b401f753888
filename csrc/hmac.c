/*
 * hmac.c - HMAC (RFC 2104) over SHA-1 and SHA-256, plus np_wipe.
 *
 * HMAC(K, m) = H((K' ^ opad) || H((K' ^ ipad) || m)), where K' is the key
 * zero-padded to the block size, or first hashed when longer than a block.
 */
#include "crypto.h"

#include <string.h>

#define IPAD 0x36
#define OPAD 0x5c

void np_wipe(void *p, size_t len) {
  volatile uint8_t *v = p;
  while (len--)
    *v++ = 0;
}

void np_hmac_sha1_init(struct np_hmac_sha1 *c, const void *key, size_t keylen) {
  uint8_t k[NP_HASH_BLOCK] = {0};
  uint8_t pad[NP_HASH_BLOCK];
  if (keylen > NP_HASH_BLOCK)
    np_sha1(key, keylen, k);
  else if (keylen > 0)
    memcpy(k, key, keylen);

  for (int i = 0; i < NP_HASH_BLOCK; i++)
    pad[i] = k[i] ^ IPAD;
  np_sha1_init(&c->inner);
  np_sha1_update(&c->inner, pad, sizeof pad);
  for (int i = 0; i < NP_HASH_BLOCK; i++)
    pad[i] = k[i] ^ OPAD;
  np_sha1_init(&c->outer);
  np_sha1_update(&c->outer, pad, sizeof pad);
  np_wipe(k, sizeof k);
  np_wipe(pad, sizeof pad);
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
  uint8_t k[NP_HASH_BLOCK] = {0};
  uint8_t pad[NP_HASH_BLOCK];
  if (keylen > NP_HASH_BLOCK)
    np_sha256(key, keylen, k);
  else if (keylen > 0)
    memcpy(k, key, keylen);

  for (int i = 0; i < NP_HASH_BLOCK; i++)
    pad[i] = k[i] ^ IPAD;
  np_sha256_init(&c->inner);
  np_sha256_update(&c->inner, pad, sizeof pad);
  for (int i = 0; i < NP_HASH_BLOCK; i++)
    pad[i] = k[i] ^ OPAD;
  np_sha256_init(&c->outer);
  np_sha256_update(&c->outer, pad, sizeof pad);
  np_wipe(k, sizeof k);
  np_wipe(pad, sizeof pad);
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
