/*
 * np_crypto.c - core.crypto: the few libsodium primitives natpunch's
 * protocol uses (docs/SECURITY.md).  Binary strings in, binary strings out.
 *
 *   pk, sk = crypto.keypair([seed32])       Ed25519 (crypto_sign_seed_keypair)
 *   sig = crypto.sign(sk, msg)              detached Ed25519 signature (64 bytes)
 *   ok = crypto.verify(pk, msg, sig)
 *   k = crypto.kx(sk, pk)                   X25519 between two Ed25519 keys
 *                                           (converted), 32 bytes; nil, err on a
 *                                           low-order point
 *   h = crypto.hash(data [, key [, len]])   BLAKE2b, len 16..64 (default 32)
 *   h = crypto.hmac_sha256(key, data)       HMAC-SHA-256 (any key length)
 *   ok = crypto.equal(a, b)                 constant time (false if sizes differ)
 *   c = crypto.seal(key32, nonce24, plain [, ad])   XChaCha20-Poly1305 (IETF)
 *   p = crypto.open(key32, nonce24, c [, ad])       nil when forged or corrupt
 *   b = crypto.random(n)                    n <= 4096 bytes (randombytes_buf)
 * Bad argument types or sizes raise; a failed check returns false or nil.
 */
#include <string.h>
#include <sodium.h>
#include "natpunch.h"
#include "np_crypto.h"

void np_mac16(const uint8_t key[NP_MAC_KEY], const void *data, size_t len,
              uint8_t tag[NP_MAC_TAG]) {
  crypto_generichash(tag, NP_MAC_TAG, data, len, key, NP_MAC_KEY);
}

int np_mac16_ok(const uint8_t key[NP_MAC_KEY], const void *data, size_t len,
                const uint8_t tag[NP_MAC_TAG]) {
  uint8_t want[NP_MAC_TAG];
  np_mac16(key, data, len, want);
  return crypto_verify_16(want, tag) == 0;
}

static const uint8_t *check_len(lua_State *L, int idx, size_t want, const char *what) {
  size_t n;
  const char *s = luaL_checklstring(L, idx, &n);
  if (n != want) luaL_error(L, "crypto: %s must be %d bytes (got %d)", what, (int)want, (int)n);
  return (const uint8_t *)s;
}

static int c_keypair(lua_State *L) {
  uint8_t pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
  if (lua_isnoneornil(L, 1)) {
    crypto_sign_keypair(pk, sk);
  } else {
    crypto_sign_seed_keypair(pk, sk, check_len(L, 1, crypto_sign_SEEDBYTES, "seed"));
  }
  lua_pushlstring(L, (const char *)pk, sizeof pk);
  lua_pushlstring(L, (const char *)sk, sizeof sk);
  sodium_memzero(sk, sizeof sk);
  return 2;
}

static int c_sign(lua_State *L) {
  const uint8_t *sk = check_len(L, 1, crypto_sign_SECRETKEYBYTES, "secret key");
  size_t n;
  const uint8_t *m = (const uint8_t *)luaL_checklstring(L, 2, &n);
  uint8_t sig[crypto_sign_BYTES];
  crypto_sign_detached(sig, NULL, m, n, sk);
  lua_pushlstring(L, (const char *)sig, sizeof sig);
  return 1;
}

static int c_verify(lua_State *L) {
  size_t pn, n, sn;
  const uint8_t *pk = (const uint8_t *)luaL_checklstring(L, 1, &pn);
  const uint8_t *m = (const uint8_t *)luaL_checklstring(L, 2, &n);
  const uint8_t *sig = (const uint8_t *)luaL_checklstring(L, 3, &sn);
  lua_pushboolean(L, pn == crypto_sign_PUBLICKEYBYTES && sn == crypto_sign_BYTES &&
                         crypto_sign_verify_detached(sig, m, n, pk) == 0);
  return 1;
}

static int c_kx(lua_State *L) {
  const uint8_t *sk = check_len(L, 1, crypto_sign_SECRETKEYBYTES, "secret key");
  size_t pn;
  const uint8_t *pk = (const uint8_t *)luaL_checklstring(L, 2, &pn);
  uint8_t xs[crypto_scalarmult_BYTES], xp[crypto_scalarmult_BYTES], out[crypto_scalarmult_BYTES];
  int rc = -1;
  if (pn == crypto_sign_PUBLICKEYBYTES && crypto_sign_ed25519_pk_to_curve25519(xp, pk) == 0) {
    crypto_sign_ed25519_sk_to_curve25519(xs, sk);
    rc = crypto_scalarmult(out, xs, xp); /* -1 for a low-order point */
    sodium_memzero(xs, sizeof xs);
  }
  if (rc != 0) return np_push_fail(L, "EKEY", "invalid public key");
  lua_pushlstring(L, (const char *)out, sizeof out);
  sodium_memzero(out, sizeof out);
  return 1;
}

static int c_hash(lua_State *L) {
  size_t n, kn = 0;
  const uint8_t *m = (const uint8_t *)luaL_checklstring(L, 1, &n);
  const uint8_t *k = (const uint8_t *)luaL_optlstring(L, 2, NULL, &kn);
  lua_Integer len = luaL_optinteger(L, 3, 32);
  luaL_argcheck(L, len >= crypto_generichash_BYTES_MIN && len <= crypto_generichash_BYTES_MAX, 3,
                "hash length must be 16..64");
  luaL_argcheck(L, kn <= crypto_generichash_KEYBYTES_MAX, 2, "hash key longer than 64 bytes");
  uint8_t out[crypto_generichash_BYTES_MAX];
  crypto_generichash(out, (size_t)len, m, n, kn ? k : NULL, kn);
  lua_pushlstring(L, (const char *)out, (size_t)len);
  return 1;
}

static int c_hmac_sha256(lua_State *L) {
  size_t kn, n;
  const uint8_t *k = (const uint8_t *)luaL_checklstring(L, 1, &kn);
  const uint8_t *m = (const uint8_t *)luaL_checklstring(L, 2, &n);
  crypto_auth_hmacsha256_state st;
  uint8_t out[crypto_auth_hmacsha256_BYTES];
  crypto_auth_hmacsha256_init(&st, k, kn);
  crypto_auth_hmacsha256_update(&st, m, n);
  crypto_auth_hmacsha256_final(&st, out);
  lua_pushlstring(L, (const char *)out, sizeof out);
  return 1;
}

static int c_equal(lua_State *L) {
  size_t an, bn;
  const char *a = luaL_checklstring(L, 1, &an);
  const char *b = luaL_checklstring(L, 2, &bn);
  lua_pushboolean(L, an == bn && sodium_memcmp(a, b, an) == 0);
  return 1;
}

static int c_seal(lua_State *L) {
  const uint8_t *k = check_len(L, 1, crypto_aead_xchacha20poly1305_ietf_KEYBYTES, "key");
  const uint8_t *nonce = check_len(L, 2, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, "nonce");
  size_t n, adn = 0;
  const uint8_t *m = (const uint8_t *)luaL_checklstring(L, 3, &n);
  const uint8_t *ad = (const uint8_t *)luaL_optlstring(L, 4, NULL, &adn);
  luaL_argcheck(L, n <= 65536, 3, "plaintext larger than 64 KiB");
  luaL_Buffer b;
  uint8_t *out = (uint8_t *)luaL_buffinitsize(L, &b, n + crypto_aead_xchacha20poly1305_ietf_ABYTES);
  unsigned long long clen = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt(out, &clen, m, n, ad, adn, NULL, nonce, k);
  luaL_pushresultsize(&b, (size_t)clen);
  return 1;
}

static int c_open(lua_State *L) {
  const uint8_t *k = check_len(L, 1, crypto_aead_xchacha20poly1305_ietf_KEYBYTES, "key");
  const uint8_t *nonce = check_len(L, 2, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, "nonce");
  size_t n, adn = 0;
  const uint8_t *c = (const uint8_t *)luaL_checklstring(L, 3, &n);
  const uint8_t *ad = (const uint8_t *)luaL_optlstring(L, 4, NULL, &adn);
  if (n < crypto_aead_xchacha20poly1305_ietf_ABYTES || n > 65536 + 16) {
    lua_pushnil(L);
    return 1;
  }
  luaL_Buffer b;
  uint8_t *out = (uint8_t *)luaL_buffinitsize(L, &b, n);
  unsigned long long mlen = 0;
  if (crypto_aead_xchacha20poly1305_ietf_decrypt(out, &mlen, NULL, c, n, ad, adn, nonce, k) != 0) {
    luaL_pushresultsize(&b, 0);
    lua_pop(L, 1);
    lua_pushnil(L);
    return 1;
  }
  luaL_pushresultsize(&b, (size_t)mlen);
  return 1;
}

static int c_random(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  luaL_argcheck(L, n >= 0 && n <= 4096, 1, "0..4096 bytes");
  luaL_Buffer b;
  uint8_t *out = (uint8_t *)luaL_buffinitsize(L, &b, (size_t)n);
  randombytes_buf(out, (size_t)n);
  luaL_pushresultsize(&b, (size_t)n);
  return 1;
}

/* Pushes the crypto table (no argument). */
int np_crypto_open(lua_State *L) {
  if (sodium_init() < 0) return luaL_error(L, "libsodium: sodium_init failed");
  static const luaL_Reg funcs[] = {
      {"keypair", c_keypair}, {"sign", c_sign}, {"verify", c_verify},
      {"kx", c_kx},           {"hash", c_hash}, {"hmac_sha256", c_hmac_sha256},
      {"equal", c_equal},     {"seal", c_seal}, {"open", c_open},
      {"random", c_random},   {NULL, NULL},
  };
  luaL_newlib(L, funcs);
  return 1;
}
