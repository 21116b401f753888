/*
 * crypto.h - the small hash and checksum primitives STUN needs.
 *
 *   SHA-1   (FIPS 180-4)  for MESSAGE-INTEGRITY         (RFC 8489 §14.5)
 *   SHA-256 (FIPS 180-4)  for MESSAGE-INTEGRITY-SHA256  (RFC 8489 §14.6)
 *   HMAC    (RFC 2104)    over both
 *   MD5     (RFC 1321)    for the long-term credential key (RFC 8489 §9.2.2)
 *   CRC-32  (ITU-T V.42, the zlib/Ethernet one) for FINGERPRINT (RFC 8489 §14.7)
 *
 * The hashes and HMAC are Nettle's (hash.c wraps them, as libjuice's
 * hash.c can): a well-kept library instead of our own compression
 * functions.  CRC-32 stays in crc32.c: Nettle has none, and zlib would be
 * one more library for a 16-entry table.  All state lives in caller-owned
 * contexts; nothing is global.  core.so exports none of these
 * (-fvisibility=hidden), so they cannot clash with a library of the process
 * that loads it (zlib's crc32, say).
 */
#ifndef NP_CRYPTO_H
#define NP_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#include <nettle/hmac.h>
#include <nettle/md5.h>
#include <nettle/sha1.h>
#include <nettle/sha2.h>

#define NP_SHA1_LEN   20
#define NP_SHA256_LEN 32
#define NP_MD5_LEN    16

struct np_sha1 {
  struct sha1_ctx c;
};

struct np_sha256 {
  struct sha256_ctx c;
};

struct np_md5 {
  struct md5_ctx c;
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
  struct hmac_sha1_ctx c;
};
struct np_hmac_sha256 {
  struct hmac_sha256_ctx c;
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
