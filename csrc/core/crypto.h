/*
 * crypto.h - the small hash and checksum primitives STUN needs.
 *
 * Own implementations so the codec has no OpenSSL dependency:
 *   SHA-1   (FIPS 180-4)  for MESSAGE-INTEGRITY         (RFC 8489 §14.5)
 *   SHA-256 (FIPS 180-4)  for MESSAGE-INTEGRITY-SHA256  (RFC 8489 §14.6)
 *   HMAC    (RFC 2104)    over both
 *   MD5     (RFC 1321)    for the long-term credential key (RFC 8489 §9.2.2)
 *   CRC-32  (ITU-T V.42, the zlib/Ethernet one) for FINGERPRINT (RFC 8489 §14.7)
 *
 * All state lives in caller-owned contexts; nothing is global.  core.so
 * exports none of these (-fvisibility=hidden), so they cannot clash with a
 * library of the process that loads it (zlib's crc32, say).
 */
#ifndef NP_CRYPTO_H
#define NP_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#define NP_SHA1_LEN   20
#define NP_SHA256_LEN 32
#define NP_MD5_LEN    16
#define NP_HASH_BLOCK 64 /* all three hashes use 512-bit blocks */

/* The buffering shared by the three Merkle-Damgard hashes (hash_md.c). */
struct np_md_buf {
  uint64_t total; /* bytes hashed so far */
  uint8_t buf[NP_HASH_BLOCK];
  size_t used;
};

/* A hash's compression function: one 64-byte block into its state. */
typedef void (*np_md_compress)(uint32_t *h, const uint8_t *block);

/* Feed bytes: whole blocks are compressed straight from the input. */
void np_md_update(uint32_t *h, struct np_md_buf *m, np_md_compress f, const void *data, size_t len);
/* Final padding: 0x80, zeros, the bit length (big-endian for SHA, FIPS
 * 180-4 section 5.1.1; little-endian for MD5, RFC 1321 section 3.2). */
void np_md_pad(uint32_t *h, struct np_md_buf *m, np_md_compress f, int big_endian);

struct np_sha1 {
  uint32_t h[5];
  struct np_md_buf md;
};

struct np_sha256 {
  uint32_t h[8];
  struct np_md_buf md;
};

struct np_md5 {
  uint32_t h[4];
  struct np_md_buf md;
};

void np_sha1_init(struct np_sha1 *c);
void np_sha1_update(struct np_sha1 *c, const void *data, size_t len);
void np_sha1_final(struct np_sha1 *c, uint8_t out[NP_SHA1_LEN]);
void np_sha1(const void *data, size_t len, uint8_t out[NP_SHA1_LEN]);

void np_sha256_init(struct np_sha256 *c);
void np_sha256_update(struct np_sha256 *c, const void *data, size_t len);
void np_sha256_final(struct np_sha256 *c, uint8_t out[NP_SHA256_LEN]);
void np_sha256(const void *data, size_t len, uint8_t out[NP_SHA256_LEN]);

void np_md5_init(struct np_md5 *c);
void np_md5_update(struct np_md5 *c, const void *data, size_t len);
void np_md5_final(struct np_md5 *c, uint8_t out[NP_MD5_LEN]);
void np_md5(const void *data, size_t len, uint8_t out[NP_MD5_LEN]);

/* HMAC (RFC 2104).  Incremental so the STUN codec can feed a header whose
 * length field it adjusted without copying the message. */
struct np_hmac_sha1 {
  struct np_sha1 inner, outer;
};
struct np_hmac_sha256 {
  struct np_sha256 inner, outer;
};

void np_hmac_sha1_init(struct np_hmac_sha1 *c, const void *key, size_t keylen);
void np_hmac_sha1_update(struct np_hmac_sha1 *c, const void *data, size_t len);
void np_hmac_sha1_final(struct np_hmac_sha1 *c, uint8_t out[NP_SHA1_LEN]);
void np_hmac_sha1(const void *key, size_t keylen, const void *data, size_t len,
                  uint8_t out[NP_SHA1_LEN]);

void np_hmac_sha256_init(struct np_hmac_sha256 *c, const void *key, size_t keylen);
void np_hmac_sha256_update(struct np_hmac_sha256 *c, const void *data, size_t len);
void np_hmac_sha256_final(struct np_hmac_sha256 *c, uint8_t out[NP_SHA256_LEN]);
void np_hmac_sha256(const void *key, size_t keylen, const void *data, size_t len,
                    uint8_t out[NP_SHA256_LEN]);

/* CRC-32, reflected polynomial 0xEDB88320, init and final xor 0xFFFFFFFF.
 * np_crc32_update chains: pass 0 first, then the previous result. */
uint32_t np_crc32_update(uint32_t crc, const void *data, size_t len);
uint32_t np_crc32(const void *data, size_t len);

/* Overwrite secrets so keys do not linger on the stack; the volatile
 * pointer keeps the compiler from dropping the stores. */
void np_wipe(void *p, size_t len);

#endif
