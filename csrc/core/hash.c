/*
 * hash.c - SHA-1, SHA-256, MD5 and HMAC for STUN (crypto.h), over Nettle.
 *
 * Thin wrappers: the codec keeps its own names and context types, and the
 * secrets Nettle leaves in a context (HMAC keys are kept padded inside it)
 * are wiped once a digest is out.  The RFC 5769 vectors and the FIPS
 * 180-4 / RFC 2202 / RFC 4231 / RFC 1321 vectors in csrc/test/test_stun.c
 * check the result.
 */
#include "crypto.h"

void np_sha1_init(struct np_sha1 *c) {
  sha1_init(&c->c);
}

void np_sha1_update(struct np_sha1 *c, const void *data, size_t len) {
  sha1_update(&c->c, len, data);
}

void np_sha1_final(struct np_sha1 *c, uint8_t out[NP_SHA1_LEN]) {
  sha1_digest(&c->c, NP_SHA1_LEN, out);
  np_wipe(c, sizeof *c);
}

void np_sha1(const void *data, size_t len, uint8_t out[NP_SHA1_LEN]) {
  struct np_sha1 c;
  np_sha1_init(&c);
  np_sha1_update(&c, data, len);
  np_sha1_final(&c, out);
}

void np_sha256_init(struct np_sha256 *c) {
  sha256_init(&c->c);
}

void np_sha256_update(struct np_sha256 *c, const void *data, size_t len) {
  sha256_update(&c->c, len, data);
}

void np_sha256_final(struct np_sha256 *c, uint8_t out[NP_SHA256_LEN]) {
  sha256_digest(&c->c, NP_SHA256_LEN, out);
  np_wipe(c, sizeof *c);
}

void np_sha256(const void *data, size_t len, uint8_t out[NP_SHA256_LEN]) {
  struct np_sha256 c;
  np_sha256_init(&c);
  np_sha256_update(&c, data, len);
  np_sha256_final(&c, out);
}

void np_md5_init(struct np_md5 *c) {
  md5_init(&c->c);
}

void np_md5_update(struct np_md5 *c, const void *data, size_t len) {
  md5_update(&c->c, len, data);
}

void np_md5_final(struct np_md5 *c, uint8_t out[NP_MD5_LEN]) {
  md5_digest(&c->c, NP_MD5_LEN, out);
  np_wipe(c, sizeof *c);
}

void np_md5(const void *data, size_t len, uint8_t out[NP_MD5_LEN]) {
  struct np_md5 c;
  np_md5_init(&c);
  np_md5_update(&c, data, len);
  np_md5_final(&c, out);
}

void np_hmac_sha1_init(struct np_hmac_sha1 *c, const void *key, size_t keylen) {
  hmac_sha1_set_key(&c->c, keylen, key);
}

void np_hmac_sha1_update(struct np_hmac_sha1 *c, const void *data, size_t len) {
  hmac_sha1_update(&c->c, len, data);
}

void np_hmac_sha1_final(struct np_hmac_sha1 *c, uint8_t out[NP_SHA1_LEN]) {
  hmac_sha1_digest(&c->c, NP_SHA1_LEN, out);
  np_wipe(c, sizeof *c);
}

void np_hmac_sha1(const void *key, size_t keylen, const void *data, size_t len,
                  uint8_t out[NP_SHA1_LEN]) {
  struct np_hmac_sha1 c;
  np_hmac_sha1_init(&c, key, keylen);
  np_hmac_sha1_update(&c, data, len);
  np_hmac_sha1_final(&c, out);
}

void np_hmac_sha256_init(struct np_hmac_sha256 *c, const void *key, size_t keylen) {
  hmac_sha256_set_key(&c->c, keylen, key);
}

void np_hmac_sha256_update(struct np_hmac_sha256 *c, const void *data, size_t len) {
  hmac_sha256_update(&c->c, len, data);
}

void np_hmac_sha256_final(struct np_hmac_sha256 *c, uint8_t out[NP_SHA256_LEN]) {
  hmac_sha256_digest(&c->c, NP_SHA256_LEN, out);
  np_wipe(c, sizeof *c);
}

void np_hmac_sha256(const void *key, size_t keylen, const void *data, size_t len,
                    uint8_t out[NP_SHA256_LEN]) {
  struct np_hmac_sha256 c;
  np_hmac_sha256_init(&c, key, keylen);
  np_hmac_sha256_update(&c, data, len);
  np_hmac_sha256_final(&c, out);
}
