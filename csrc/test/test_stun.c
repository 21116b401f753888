/*
 * test_stun.c - the STUN codec and its crypto on fixed vectors (FIPS 180,
 * RFC 1321, RFC 2202, RFC 4231, RFC 5769), plus robustness: every
 * truncation of every vector and 200k seeded random mutations, decoded from
 * exact-size heap copies so AddressSanitizer sees any read past the end.
 *
 * Prints one line per group and a final "N passed, N failed" line; exits
 * non-zero when any check failed.
 */
#include "crypto.h"
#include "stun.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tally {
  int passed, failed;
  int group_failed;
};

static void check(struct tally *t, int ok, const char *what, int line) {
  if (ok) {
    t->passed++;
  } else {
    t->failed++;
    t->group_failed++;
    printf("  FAIL line %d: %s\n", line, what);
  }
}

#define CHECK(cond)    check(t, (cond) ? 1 : 0, #cond, __LINE__)
#define CHECK_EQ(a, b) check(t, (long long)(a) == (long long)(b), #a " == " #b, __LINE__)

static void run_group(struct tally *t, const char *name, void (*fn)(struct tally *)) {
  int before = t->passed + t->failed;
  t->group_failed = 0;
  fn(t);
  int n = t->passed + t->failed - before;
  printf("%-28s %s (%d checks, %d failed)\n", name, t->group_failed ? "FAIL" : "ok", n,
         t->group_failed);
}

/* xorshift64*: deterministic, state in a local struct. */
struct prng {
  uint64_t s;
};

static uint64_t prng_next(struct prng *p) {
  p->s ^= p->s >> 12;
  p->s ^= p->s << 25;
  p->s ^= p->s >> 27;
  return p->s * 0x2545F4914F6CDD1DULL;
}

static uint32_t prng_below(struct prng *p, uint32_t n) {
  return (uint32_t)(prng_next(p) % n);
}

static int hex_eq(const uint8_t *got, const char *hex) {
  size_t n = strlen(hex) / 2;
  for (size_t i = 0; i < n; i++) {
    unsigned v;
    if (sscanf(hex + 2 * i, "%2x", &v) != 1 || got[i] != v) return 0;
  }
  return 1;
}

static int bytes_eq(struct stun_bytes b, const char *s) {
  return b.len == strlen(s) && memcmp(b.ptr, s, b.len) == 0;
}

/* Exact-size heap copy: any read past len is an ASan error. */
static uint8_t *dup_exact(const uint8_t *p, size_t len) {
  uint8_t *c = malloc(len ? len : 1);
  if (c == NULL) {
    perror("malloc");
    exit(2);
  }
  if (len) memcpy(c, p, len);
  return c;
}

#include "vectors.h"

struct vector {
  const char *name;
  const uint8_t *p;
  size_t len;
};

static const struct vector vectors[] = {
    {"rfc5769 2.1", req21, sizeof req21},
    {"rfc5769 2.2", resp22, sizeof resp22},
    {"rfc5769 2.3", resp23, sizeof resp23},
    {"rfc5769 2.4", req24, sizeof req24},
    {"rfc3489 request", classic_req, sizeof classic_req},
};
#define N_VECTORS (sizeof vectors / sizeof vectors[0])

static int read_copy(const uint8_t *p, size_t len, struct stun_msg *m, uint8_t **keep) {
  *keep = dup_exact(p, len);
  return stun_read(*keep, len, m);
}

/* ------------------------------------------------------------------ */

static void test_hashes(struct tally *t) {
  uint8_t out[32];
  const char *abc = "abc";
  const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";

  /* FIPS 180-2 appendix A/B examples */
  np_sha1(abc, 3, out);
  CHECK(hex_eq(out, "a9993e364706816aba3e25717850c26c9cd0d89d"));
  np_sha1("", 0, out);
  CHECK(hex_eq(out, "da39a3ee5e6b4b0d3255bfef95601890afd80709"));
  np_sha1(two, strlen(two), out);
  CHECK(hex_eq(out, "84983e441c3bd26ebaae4aa1f95129e5e54670f1"));
  np_sha256(abc, 3, out);
  CHECK(hex_eq(out, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
  np_sha256("", 0, out);
  CHECK(hex_eq(out, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
  np_sha256(two, strlen(two), out);
  CHECK(hex_eq(out, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"));

  /* one million 'a', fed in uneven pieces to exercise buffering */
  static uint8_t as[1000];
  memset(as, 'a', sizeof as);
  struct np_sha1 s1;
  struct np_sha256 s2;
  np_sha1_init(&s1);
  np_sha256_init(&s2);
  for (size_t done = 0, step = 1; done < 1000000; step = step % 997 + 1) {
    size_t n = 1000000 - done < step ? 1000000 - done : step;
    np_sha1_update(&s1, as, n);
    np_sha256_update(&s2, as, n);
    done += n;
  }
  np_sha1_final(&s1, out);
  CHECK(hex_eq(out, "34aa973cd4c4daa4f61eeb2bdbad27316534016f"));
  np_sha256_final(&s2, out);
  CHECK(hex_eq(out, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"));

  /* RFC 1321 §A.5 test suite */
  static const struct {
    const char *in, *md5;
  } md5v[] = {
      {"", "d41d8cd98f00b204e9800998ecf8427e"},
      {"a", "0cc175b9c0f1b6a831c399e269772661"},
      {"abc", "900150983cd24fb0d6963f7d28e17f72"},
      {"message digest", "f96b697d7cb7938d525a2f31aaf161d0"},
      {"abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b"},
      {"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
       "d174ab98d277d9f5a5611c2c9f419d9f"},
      {"12345678901234567890123456789012345678901234567890123456789012345678901234567890",
       "57edf4a22be3c955ac49da2e2107b67a"},
  };
  for (size_t i = 0; i < sizeof md5v / sizeof md5v[0]; i++) {
    np_md5(md5v[i].in, strlen(md5v[i].in), out);
    CHECK(hex_eq(out, md5v[i].md5));
  }

  /* CRC-32 check value (the "123456789" catalogue entry) and friends */
  CHECK_EQ(np_crc32("123456789", 9), 0xCBF43926u);
  CHECK_EQ(np_crc32("", 0), 0);
  CHECK_EQ(np_crc32("The quick brown fox jumps over the lazy dog", 43), 0x414FA339u);
  CHECK_EQ(np_crc32_update(np_crc32("1234", 4), "56789", 5), 0xCBF43926u);
}

static void test_hmac(struct tally *t) {
  uint8_t out[32], k20[20], kaa80[80], kaa131[131], dd50[50];
  memset(k20, 0x0b, sizeof k20);
  memset(kaa80, 0xaa, sizeof kaa80);
  memset(kaa131, 0xaa, sizeof kaa131);
  memset(dd50, 0xdd, sizeof dd50);
  const char *jefe = "what do ya want for nothing?";
  const char *big1 = "Test Using Larger Than Block-Size Key - Hash Key First";
  const char *big2 = "Test Using Larger Than Block-Size Key and Larger Than One Block-Size Data";
  const char *big3 = "This is a test using a larger than block-size key and a larger than "
                     "block-size data. The key needs to be hashed before being used by the "
                     "HMAC algorithm.";

  /* RFC 2202 §3: test cases 1, 2, 3, 6, 7 */
  np_hmac_sha1(k20, 20, "Hi There", 8, out);
  CHECK(hex_eq(out, "b617318655057264e28bc0b6fb378c8ef146be00"));
  np_hmac_sha1("Jefe", 4, jefe, strlen(jefe), out);
  CHECK(hex_eq(out, "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"));
  memset(k20, 0xaa, sizeof k20);
  np_hmac_sha1(k20, 20, dd50, 50, out);
  CHECK(hex_eq(out, "125d7342b9ac11cd91a39af48aa17b4f63f175d3"));
  np_hmac_sha1(kaa80, 80, big1, strlen(big1), out);
  CHECK(hex_eq(out, "aa4ae5e15272d00e95705637ce8a3b55ed402112"));
  np_hmac_sha1(kaa80, 80, big2, strlen(big2), out);
  CHECK(hex_eq(out, "e8e99d0f45237d786d6bbaa7965c7808bbff1a91"));

  /* RFC 4231 §4: test cases 1, 2, 3, 6, 7 */
  memset(k20, 0x0b, sizeof k20);
  np_hmac_sha256(k20, 20, "Hi There", 8, out);
  CHECK(hex_eq(out, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"));
  np_hmac_sha256("Jefe", 4, jefe, strlen(jefe), out);
  CHECK(hex_eq(out, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"));
  memset(k20, 0xaa, sizeof k20);
  np_hmac_sha256(k20, 20, dd50, 50, out);
  CHECK(hex_eq(out, "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"));
  np_hmac_sha256(kaa131, 131, big1, strlen(big1), out);
  CHECK(hex_eq(out, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"));
  np_hmac_sha256(kaa131, 131, big3, strlen(big3), out);
  CHECK(hex_eq(out, "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"));
}

static void test_rfc5769_request(struct tally *t) {
  struct stun_msg m;
  uint8_t *c;
  CHECK_EQ(read_copy(req21, sizeof req21, &m, &c), 0);
  CHECK_EQ(m.method, STUN_METHOD_BINDING);
  CHECK_EQ(m.cls, STUN_CLASS_REQUEST);
  CHECK(!m.classic);
  CHECK_EQ(m.tid_len, 12);
  CHECK(hex_eq(m.tid, "b7e7a701bc34d686fa87dfae"));
  CHECK(bytes_eq(m.software, "STUN test client"));
  CHECK(m.has & STUN_HAS_PRIORITY);
  CHECK_EQ(m.priority, 0x6e0001ffu);
  CHECK(m.has & STUN_HAS_ICE_CONTROLLED);
  CHECK(m.ice_controlled == 0x932ff9b151263b36ULL);
  CHECK(bytes_eq(m.username, "evtj:h6vY"));
  CHECK_EQ(m.n_unknown_required, 0);
  CHECK(m.has & STUN_HAS_FINGERPRINT);
  CHECK(m.fingerprint_ok);
  CHECK_EQ(stun_check_integrity(c, &m, pass21, strlen(pass21)), 0);
  CHECK_EQ(stun_check_integrity(c, &m, "wrong", 5), STUN_EINTEGRITY);
  CHECK_EQ(stun_check_integrity_sha256(c, &m, pass21, strlen(pass21)), STUN_ENOINTEGRITY);
  CHECK(stun_is_stun(c, sizeof req21));
  CHECK_EQ(stun_frame_size(c, sizeof req21), sizeof req21);
  /* a flipped bit in the tie-breaker breaks both checks */
  c[55] ^= 1;
  CHECK_EQ(stun_read(c, sizeof req21, &m), 0);
  CHECK(!m.fingerprint_ok);
  CHECK_EQ(stun_check_integrity(c, &m, pass21, strlen(pass21)), STUN_EINTEGRITY);
  free(c);
}

static void test_rfc5769_responses(struct tally *t) {
  struct stun_msg m;
  uint8_t *c;
  char ip[64];

  CHECK_EQ(read_copy(resp22, sizeof resp22, &m, &c), 0);
  CHECK_EQ(m.cls, STUN_CLASS_SUCCESS);
  CHECK_EQ(m.method, STUN_METHOD_BINDING);
  CHECK(bytes_eq(m.software, "test vector"));
  CHECK(m.has & STUN_HAS_XOR_MAPPED);
  CHECK_EQ(m.xor_mapped.family, STUN_FAMILY_IPV4);
  CHECK_EQ(m.xor_mapped.port, 32853);
  CHECK_EQ(stun_addr_format(&m.xor_mapped, ip, sizeof ip), 0);
  CHECK(strcmp(ip, "192.0.2.1") == 0);
  CHECK(m.fingerprint_ok);
  CHECK_EQ(stun_check_integrity(c, &m, pass21, strlen(pass21)), 0);
  free(c);

  CHECK_EQ(read_copy(resp23, sizeof resp23, &m, &c), 0);
  CHECK_EQ(m.xor_mapped.family, STUN_FAMILY_IPV6);
  CHECK_EQ(m.xor_mapped.port, 32853);
  CHECK_EQ(stun_addr_format(&m.xor_mapped, ip, sizeof ip), 0);
  CHECK(strcmp(ip, "2001:db8:1234:5678:11:2233:4455:6677") == 0);
  CHECK(m.fingerprint_ok);
  CHECK_EQ(stun_check_integrity(c, &m, pass21, strlen(pass21)), 0);
  free(c);
}

static void test_rfc5769_long_term(struct tally *t) {
  struct stun_msg m;
  uint8_t *c, key[16];
  CHECK_EQ(read_copy(req24, sizeof req24, &m, &c), 0);
  CHECK_EQ(m.cls, STUN_CLASS_REQUEST);
  CHECK(hex_eq(m.tid, "78ad3433c6ad72c029da412e"));
  CHECK(bytes_eq(m.username, user24));
  CHECK(bytes_eq(m.nonce, "f//499k954d6OL34oL9FSTvy64sA"));
  CHECK(bytes_eq(m.realm, "example.org"));
  CHECK(!(m.has & STUN_HAS_FINGERPRINT));
  stun_long_term_key(user24, strlen(user24), "example.org", 11, "TheMatrIX", 9, key);
  CHECK_EQ(stun_check_integrity(c, &m, key, sizeof key), 0);
  CHECK_EQ(stun_check_integrity(c, &m, "TheMatrIX", 9), STUN_EINTEGRITY);
  free(c);
}

/* Build a message header by hand: type, attribute bytes. */
static size_t craft(uint8_t *buf, uint16_t type, const uint8_t *attrs, size_t alen) {
  buf[0] = (uint8_t)(type >> 8);
  buf[1] = (uint8_t)type;
  buf[2] = (uint8_t)(alen >> 8);
  buf[3] = (uint8_t)alen;
  buf[4] = 0x21, buf[5] = 0x12, buf[6] = 0xa4, buf[7] = 0x42;
  for (int i = 8; i < 20; i++) buf[i] = (uint8_t)i;
  memcpy(buf + 20, attrs, alen);
  return 20 + alen;
}

static int read_crafted(uint16_t type, const uint8_t *attrs, size_t alen) {
  uint8_t buf[256];
  struct stun_msg m;
  size_t n = craft(buf, type, attrs, alen);
  uint8_t *c = dup_exact(buf, n);
  int r = stun_read(c, n, &m);
  free(c);
  return r;
}

static void test_errors(struct tally *t) {
  uint8_t buf[64];
  struct stun_msg m;

  CHECK_EQ(stun_read(NULL, 0, &m), STUN_ETRUNCATED);
  CHECK_EQ(stun_read(req21, 19, &m), STUN_ETRUNCATED);
  memcpy(buf, req21, 20);
  buf[0] = 0x40;
  CHECK_EQ(stun_read(buf, 20, &m), STUN_ENOTSTUN);
  memcpy(buf, req21, 20);
  buf[3] = 0; /* length 0 */
  CHECK_EQ(stun_read(buf, 20, &m), 0);
  buf[3] = 2;
  CHECK_EQ(stun_read(buf, 22, &m), STUN_EBADLENGTH);
  buf[3] = 4;
  CHECK_EQ(stun_read(buf, 20, &m), STUN_ETRUNCATED);
  buf[3] = 0;
  CHECK_EQ(stun_read(buf, 24, &m), STUN_ETRAILING);
  buf[0] = 0x00, buf[1] = 0x03, buf[4] = 0; /* no cookie, not a 3489 type */
  CHECK_EQ(stun_read(buf, 20, &m), STUN_EBADCOOKIE);
  buf[1] = 0x01;
  CHECK_EQ(stun_read(buf, 20, &m), 0);
  CHECK(m.classic);

  static const uint8_t attr_trunc[] = {0x80, 0x22, 0x00, 0x05, 'a', 'b', 'c', 'd'};
  CHECK_EQ(read_crafted(0x0001, attr_trunc, sizeof attr_trunc), STUN_EATTRTRUNC);
  static const uint8_t attr_big[] = {0x80, 0x22, 0x01, 0x00, 'a', 'b', 'c', 'd'};
  CHECK_EQ(read_crafted(0x0001, attr_big, sizeof attr_big), STUN_EATTRTRUNC);
  static const uint8_t addr_short[] = {0x00, 0x01, 0x00, 0x04, 0x00, 0x01, 0x12, 0x34};
  CHECK_EQ(read_crafted(0x0101, addr_short, sizeof addr_short), STUN_EATTRLEN);
  static const uint8_t addr_v6len[] = {0x00, 0x20, 0x00, 0x08, 0x00, 0x02, 0x12, 0x34, 1, 2, 3, 4};
  CHECK_EQ(read_crafted(0x0101, addr_v6len, sizeof addr_v6len), STUN_EATTRLEN);
  static const uint8_t addr_fam[] = {0x00, 0x01, 0x00, 0x08, 0x00, 0x03, 0x12, 0x34, 1, 2, 3, 4};
  CHECK_EQ(read_crafted(0x0101, addr_fam, sizeof addr_fam), STUN_EBADFAMILY);
  static const uint8_t err_cls[] = {0x00, 0x09, 0x00, 0x04, 0x00, 0x00, 0x07, 0x00};
  CHECK_EQ(read_crafted(0x0111, err_cls, sizeof err_cls), STUN_EBADERRCODE);
  static const uint8_t err_num[] = {0x00, 0x09, 0x00, 0x04, 0x00, 0x00, 0x04, 100};
  CHECK_EQ(read_crafted(0x0111, err_num, sizeof err_num), STUN_EBADERRCODE);
  static const uint8_t err_short[] = {0x00, 0x09, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00};
  CHECK_EQ(read_crafted(0x0111, err_short, sizeof err_short), STUN_EATTRLEN);
  static const uint8_t fp_len[] = {0x80, 0x28, 0x00, 0x08, 0, 0, 0, 0, 0, 0, 0, 0};
  CHECK_EQ(read_crafted(0x0001, fp_len, sizeof fp_len), STUN_EATTRLEN);
  static const uint8_t fp_mid[] = {0x80, 0x28, 0x00, 0x04, 0, 0, 0, 0, 0x80, 0x22, 0x00, 0x00};
  CHECK_EQ(read_crafted(0x0001, fp_mid, sizeof fp_mid), STUN_EFPNOTLAST);
  static const uint8_t mi_len[] = {0x00, 0x08, 0x00, 0x04, 0, 0, 0, 0};
  CHECK_EQ(read_crafted(0x0001, mi_len, sizeof mi_len), STUN_EATTRLEN);
  static const uint8_t mi256_len[] = {0x00, 0x1c, 0x00, 0x0c, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  CHECK_EQ(read_crafted(0x0001, mi256_len, sizeof mi256_len), STUN_EATTRLEN);
  /* RESPONSE-PORT: length 4 (RFC 5780 §7.5) or 2 (seen in the wild) */
  static const uint8_t rp2[] = {0x00, 0x27, 0x00, 0x02, 0x9c, 0x40, 0, 0};
  static const uint8_t rp3[] = {0x00, 0x27, 0x00, 0x03, 0x9c, 0x40, 0, 0};
  static const uint8_t rp8[] = {0x00, 0x27, 0x00, 0x08, 0x9c, 0x40, 0, 0, 0, 0, 0, 0};
  CHECK_EQ(read_crafted(0x0001, rp2, sizeof rp2), 0);
  CHECK_EQ(read_crafted(0x0001, rp3, sizeof rp3), STUN_EATTRLEN);
  CHECK_EQ(read_crafted(0x0001, rp8, sizeof rp8), STUN_EATTRLEN);
  {
    uint8_t rpbuf[64];
    size_t rn = craft(rpbuf, 0x0001, rp2, sizeof rp2);
    CHECK_EQ(stun_read(rpbuf, rn, &m), 0);
    CHECK_EQ(m.response_port, 40000);
  }
  static const uint8_t ua_odd[] = {0x00, 0x0a, 0x00, 0x03, 0, 1, 0, 0};
  CHECK_EQ(read_crafted(0x0111, ua_odd, sizeof ua_odd), STUN_EATTRLEN);
  static const uint8_t chg_len[] = {0x00, 0x03, 0x00, 0x08, 0, 0, 0, 6, 0, 0, 0, 0};
  CHECK_EQ(read_crafted(0x0001, chg_len, sizeof chg_len), STUN_EATTRLEN);
  static const uint8_t prio_len[] = {0x00, 0x24, 0x00, 0x08, 0, 0, 0, 6, 0, 0, 0, 0};
  CHECK_EQ(read_crafted(0x0001, prio_len, sizeof prio_len), STUN_EATTRLEN);
  static const uint8_t usecand_len[] = {0x00, 0x25, 0x00, 0x04, 0, 0, 0, 0};
  CHECK_EQ(read_crafted(0x0001, usecand_len, sizeof usecand_len), STUN_EATTRLEN);

  /* a bad value in an ignored attribute (after MESSAGE-INTEGRITY, or a
   * duplicate) is not looked at */
  static const uint8_t dup_bad[] = {0x00, 0x24, 0x00, 0x04, 0, 0, 0, 6, 0x00, 0x24,
                                    0x00, 0x08, 0,    0,    0, 0, 0, 0, 0,    0};
  CHECK_EQ(read_crafted(0x0001, dup_bad, sizeof dup_bad), 0);

  /* unknown comprehension-required types are listed once, optional ones not */
  static const uint8_t unk[] = {0x00, 0x42, 0x00, 0x00, 0x80, 0x42, 0x00, 0x00,
                                0x00, 0x42, 0x00, 0x00, 0x7f, 0xff, 0x00, 0x00};
  size_t n = craft(buf, 0x0001, unk, sizeof unk);
  CHECK_EQ(stun_read(buf, n, &m), 0);
  CHECK_EQ(m.n_unknown_required, 2);
  CHECK_EQ(m.unknown_required[0], 0x0042);
  CHECK_EQ(m.unknown_required[1], 0x7fff);

  /* names: distinct, and every code has one */
  int codes[] = {
#define XX(name, value, msg) value,
      STUN_ERRNO_MAP(XX)
#undef XX
  };
  size_t nc = sizeof codes / sizeof codes[0];
  int distinct = 1;
  for (size_t i = 0; i < nc; i++) {
    if (strcmp(stun_errname(codes[i]), "UNKNOWN") == 0 || stun_strerror(codes[i])[0] == 0)
      distinct = 0;
    for (size_t j = 0; j < i; j++)
      if (codes[i] == codes[j] || strcmp(stun_errname(codes[i]), stun_errname(codes[j])) == 0)
        distinct = 0;
  }
  CHECK(distinct);
  CHECK(strcmp(stun_errname(STUN_ETRUNCATED), "ETRUNCATED") == 0);
  CHECK(strcmp(stun_errname(-999), "UNKNOWN") == 0);
  CHECK(strcmp(stun_errname(0), "UNKNOWN") == 0);
}

static void test_type_bits(struct tally *t) {
  /* RFC 8489 §5: Binding request 0x0001, success 0x0101, error 0x0111,
   * indication 0x0011 */
  CHECK_EQ(stun_type(STUN_METHOD_BINDING, STUN_CLASS_REQUEST), 0x0001);
  CHECK_EQ(stun_type(STUN_METHOD_BINDING, STUN_CLASS_SUCCESS), 0x0101);
  CHECK_EQ(stun_type(STUN_METHOD_BINDING, STUN_CLASS_ERROR), 0x0111);
  CHECK_EQ(stun_type(STUN_METHOD_BINDING, STUN_CLASS_INDICATION), 0x0011);
  int ok = 1;
  for (uint16_t m = 0; m <= STUN_METHOD_MAX; m++)
    for (uint16_t c = 0; c < 4; c++) {
      uint16_t cls = (uint16_t)((c & 1) << 4 | (c & 2) << 7);
      uint16_t ty = stun_type(m, cls);
      if (stun_type_method(ty) != m || stun_type_class(ty) != cls || ty > 0x3fff) ok = 0;
    }
  CHECK(ok);
}

static void test_integrity_rules(struct tally *t) {
  uint8_t buf[512], tid[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  struct stun_writer w;
  struct stun_msg m;
  const char *key = "secret";

  /* RFC 8489 §14.5: what follows MESSAGE-INTEGRITY is ignored, except
   * MESSAGE-INTEGRITY-SHA256 and FINGERPRINT */
  stun_writer_init(&w, buf, sizeof buf, STUN_METHOD_BINDING, STUN_CLASS_REQUEST, tid, 12);
  stun_put(&w, STUN_ATTR_USERNAME, "alice", 5);
  stun_put_integrity(&w, key, strlen(key));
  stun_put(&w, 0x0042, "x", 1);
  stun_put(&w, STUN_ATTR_SOFTWARE, "late", 4);
  stun_put_integrity_sha256(&w, key, strlen(key));
  stun_put(&w, STUN_ATTR_REALM, "later", 5);
  stun_put_fingerprint(&w);
  int n = stun_writer_finish(&w);
  CHECK(n > 0);
  uint8_t *c = dup_exact(buf, (size_t)n);
  CHECK_EQ(stun_read(c, (size_t)n, &m), 0);
  CHECK(bytes_eq(m.username, "alice"));
  CHECK_EQ(m.n_unknown_required, 0);
  CHECK(!(m.has & STUN_HAS_SOFTWARE));
  CHECK(!(m.has & STUN_HAS_REALM));
  CHECK(m.fingerprint_ok);
  CHECK_EQ(stun_check_integrity(c, &m, key, strlen(key)), 0);
  CHECK_EQ(stun_check_integrity_sha256(c, &m, key, strlen(key)), 0);
  CHECK_EQ(stun_check_integrity_sha256(c, &m, "other", 5), STUN_EINTEGRITY);
  CHECK_EQ(m.mi256_len, 32);
  free(c);

  /* a truncated MESSAGE-INTEGRITY-SHA256 (RFC 8489 §14.6 allows 16..32) */
  stun_writer_init(&w, buf, sizeof buf, STUN_METHOD_BINDING, STUN_CLASS_REQUEST, tid, 12);
  stun_put_integrity_sha256(&w, key, strlen(key));
  n = stun_writer_finish(&w);
  CHECK_EQ(n, 20 + 36);
  buf[3] = 16 + 4; /* shrink attribute to 16 bytes, recompute as a sender would */
  buf[22] = 0, buf[23] = 16;
  {
    uint8_t mac[32];
    np_hmac_sha256(key, strlen(key), buf, 20, mac);
    memcpy(buf + 24, mac, 16);
  }
  CHECK_EQ(stun_read(buf, 40, &m), 0);
  CHECK_EQ(m.mi256_len, 16);
  CHECK_EQ(stun_check_integrity_sha256(buf, &m, key, strlen(key)), 0);

  /* MESSAGE-INTEGRITY with an empty key and ENOINTEGRITY */
  stun_writer_init(&w, buf, sizeof buf, STUN_METHOD_BINDING, STUN_CLASS_INDICATION, tid, 12);
  stun_put_integrity(&w, NULL, 0);
  n = stun_writer_finish(&w);
  CHECK_EQ(stun_read(buf, (size_t)n, &m), 0);
  CHECK_EQ(stun_check_integrity(buf, &m, "", 0), 0);
  CHECK_EQ(stun_check_integrity_sha256(buf, &m, "", 0), STUN_ENOINTEGRITY);

  /* classic (RFC 3489 §11.2.8) integrity round trip */
  uint8_t ctid[16];
  memset(ctid, 0x5a, sizeof ctid);
  stun_writer_init(&w, buf, sizeof buf, STUN_METHOD_BINDING, STUN_CLASS_REQUEST, ctid, 16);
  stun_put(&w, STUN_ATTR_USERNAME, "user", 4);
  stun_put_integrity(&w, key, strlen(key));
  n = stun_writer_finish(&w);
  CHECK_EQ(stun_read(buf, (size_t)n, &m), 0);
  CHECK(m.classic);
  CHECK_EQ(stun_check_integrity(buf, &m, key, strlen(key)), 0);
  CHECK_EQ(stun_check_integrity(buf, &m, "nope", 4), STUN_EINTEGRITY);
}

/* Encode every attribute, decode, compare. */
static void test_round_trip(struct tally *t) {
  uint8_t buf[1024],
      tid[12] = {0x9a, 0x1b, 0x2c, 0x3d, 0x4e, 0x5f, 0x60, 0x71, 0x82, 0x93, 0xa4, 0xb5};
  struct stun_writer w;
  struct stun_msg m;
  struct stun_addr a4, a6, b4, b6;
  const char *key = "k3y";
  uint16_t unk[3] = {0x0031, 0x0042, 0x7000};

  CHECK_EQ(stun_addr_parse("203.0.113.1", 3478, &a4), 0);
  CHECK_EQ(stun_addr_parse("2001:db8::1", 65535, &a6), 0);
  CHECK_EQ(stun_addr_parse("198.51.100.7", 1, &b4), 0);
  CHECK_EQ(stun_addr_parse("::1", 0, &b6), 0);
  CHECK_EQ(stun_addr_parse("not an ip", 0, &b6), STUN_EINVAL);
  CHECK_EQ(stun_addr_parse("::1", 0, &b6), 0);

  stun_writer_init(&w, buf, sizeof buf, 0x0ABC, STUN_CLASS_ERROR, tid, 12);
  stun_put_addr(&w, STUN_ATTR_XOR_MAPPED_ADDRESS, &a6);
  stun_put_addr(&w, STUN_ATTR_MAPPED_ADDRESS, &a4);
  stun_put_addr(&w, STUN_ATTR_RESPONSE_ORIGIN, &b4);
  stun_put_addr(&w, STUN_ATTR_OTHER_ADDRESS, &b6);
  stun_put_addr(&w, STUN_ATTR_SOURCE_ADDRESS, &a6);
  stun_put_addr(&w, STUN_ATTR_CHANGED_ADDRESS, &b4);
  stun_put(&w, STUN_ATTR_USERNAME, "user:name", 9);
  stun_put(&w, STUN_ATTR_SOFTWARE, "natpunch test", 13);
  stun_put(&w, STUN_ATTR_REALM, "example.org", 11);
  stun_put(&w, STUN_ATTR_NONCE, "n0nce", 5);
  stun_put_error(&w, 438, "Stale Nonce");
  stun_put_unknown(&w, unk, 3);
  stun_put_change_request(&w, STUN_CHANGE_IP | STUN_CHANGE_PORT);
  stun_put_response_port(&w, 40000);
  stun_put_padding(&w, 13);
  stun_put_u32(&w, STUN_ATTR_PRIORITY, 0x7effffff);
  stun_put(&w, STUN_ATTR_USE_CANDIDATE, NULL, 0);
  stun_put_u64(&w, STUN_ATTR_ICE_CONTROLLING, 0x0123456789abcdefULL);
  stun_put_u64(&w, STUN_ATTR_ICE_CONTROLLED, 0xfedcba9876543210ULL);
  stun_put_integrity(&w, key, 3);
  stun_put_integrity_sha256(&w, key, 3);
  stun_put_fingerprint(&w);
  int n = stun_writer_finish(&w);
  CHECK(n > 0);
  uint8_t *c = dup_exact(buf, (size_t)n);
  CHECK_EQ(stun_read(c, (size_t)n, &m), 0);
  CHECK_EQ(m.method, 0x0ABC);
  CHECK_EQ(m.cls, STUN_CLASS_ERROR);
  CHECK(memcmp(m.tid, tid, 12) == 0);
  CHECK(memcmp(&m.xor_mapped, &a6, sizeof a6) == 0);
  CHECK(memcmp(&m.mapped, &a4, sizeof a4) == 0);
  CHECK(memcmp(&m.response_origin, &b4, sizeof b4) == 0);
  CHECK(memcmp(&m.other_address, &b6, sizeof b6) == 0);
  CHECK(memcmp(&m.source_address, &a6, sizeof a6) == 0);
  CHECK(memcmp(&m.changed_address, &b4, sizeof b4) == 0);
  CHECK(bytes_eq(m.username, "user:name"));
  CHECK(bytes_eq(m.software, "natpunch test"));
  CHECK(bytes_eq(m.realm, "example.org"));
  CHECK(bytes_eq(m.nonce, "n0nce"));
  CHECK_EQ(m.error_code, 438);
  CHECK(bytes_eq(m.error_reason, "Stale Nonce"));
  CHECK_EQ(m.n_unknown_attributes, 3);
  CHECK_EQ(m.unknown_attributes[2], 0x7000);
  CHECK_EQ(m.change_request, STUN_CHANGE_IP | STUN_CHANGE_PORT);
  CHECK_EQ(m.response_port, 40000);
  CHECK_EQ(m.padding_len, 13);
  CHECK_EQ(m.priority, 0x7effffff);
  CHECK(m.has & STUN_HAS_USE_CANDIDATE);
  CHECK(m.ice_controlling == 0x0123456789abcdefULL);
  CHECK(m.ice_controlled == 0xfedcba9876543210ULL);
  CHECK(m.fingerprint_ok);
  CHECK_EQ(stun_check_integrity(c, &m, key, 3), 0);
  CHECK_EQ(stun_check_integrity_sha256(c, &m, key, 3), 0);
  CHECK_EQ(m.n_unknown_required, 0);
  free(c);

  /* the wire form of XOR-MAPPED-ADDRESS matches RFC 5769 §2.2 */
  uint8_t tid22[12];
  memcpy(tid22, resp22 + 8, 12);
  struct stun_addr x;
  CHECK_EQ(stun_addr_parse("192.0.2.1", 32853, &x), 0);
  stun_writer_init(&w, buf, sizeof buf, STUN_METHOD_BINDING, STUN_CLASS_SUCCESS, tid22, 12);
  stun_put(&w, STUN_ATTR_SOFTWARE, "test vector", 11);
  stun_put_addr(&w, STUN_ATTR_XOR_MAPPED_ADDRESS, &x);
  stun_put_integrity(&w, pass21, strlen(pass21));
  stun_put_fingerprint(&w);
  n = stun_writer_finish(&w);
  CHECK_EQ(n, sizeof resp22);
  /* RFC 5769 pads SOFTWARE with a space, the writer with a zero */
  buf[35] = 0x20;
  /* so MI and FINGERPRINT differ; the address bytes must not */
  CHECK(memcmp(buf + 36, resp22 + 36, 12) == 0);

  /* writer misuse */
  stun_writer_init(&w, buf, sizeof buf, 0x1000, STUN_CLASS_REQUEST, tid, 12);
  CHECK_EQ(stun_writer_finish(&w), STUN_EINVAL);
  stun_writer_init(&w, buf, sizeof buf, 1, 0x0001, tid, 12);
  CHECK_EQ(stun_writer_finish(&w), STUN_EINVAL);
  stun_writer_init(&w, buf, sizeof buf, 1, 0, tid, 13);
  CHECK_EQ(stun_writer_finish(&w), STUN_EINVAL);
  stun_writer_init(&w, buf, sizeof buf, 1, 0, tid, 12);
  stun_put_error(&w, 299, "x");
  CHECK_EQ(stun_writer_finish(&w), STUN_EINVAL);
  stun_writer_init(&w, buf, sizeof buf, 1, 0, tid, 12);
  struct stun_addr bad = {0};
  stun_put_addr(&w, STUN_ATTR_MAPPED_ADDRESS, &bad);
  CHECK_EQ(stun_writer_finish(&w), STUN_EINVAL);
  stun_writer_init(&w, buf, sizeof buf, 1, 0, tid, 12);
  stun_put_fingerprint(&w);
  stun_put(&w, STUN_ATTR_SOFTWARE, "x", 1);
  CHECK_EQ(stun_writer_finish(&w), STUN_EINVAL);
  stun_writer_init(&w, buf, sizeof buf, 1, 0, tid, 12);
  stun_put(&w, STUN_ATTR_SOFTWARE, buf, 70000);
  CHECK_EQ(stun_writer_finish(&w), STUN_EINVAL);

  /* every capacity below the needed size fails with ENOSPACE, and the
   * writer stays inside an exact-size heap buffer */
  int full = 0, all_nospace = 1;
  for (size_t cap = 0;; cap++) {
    uint8_t *o = malloc(cap ? cap : 1);
    stun_writer_init(&w, o, cap, 1, STUN_CLASS_SUCCESS, tid, 12);
    stun_put_addr(&w, STUN_ATTR_XOR_MAPPED_ADDRESS, &a6);
    stun_put(&w, STUN_ATTR_SOFTWARE, "abcde", 5);
    stun_put_unknown(&w, unk, 3);
    stun_put_integrity(&w, key, 3);
    stun_put_fingerprint(&w);
    int r = stun_writer_finish(&w);
    free(o);
    if (r > 0) {
      full = (size_t)r == cap;
      break;
    }
    if (r != STUN_ENOSPACE) all_nospace = 0;
  }
  CHECK(full);
  CHECK(all_nospace);
}

/* Random well-formed messages: encode, decode, compare. */
static void test_random_round_trips(struct tally *t) {
  struct prng rng = {0x9E3779B97F4A7C15ULL};
  int bad = 0;
  for (int iter = 0; iter < 5000; iter++) {
    uint8_t buf[600], tid[16];
    for (int i = 0; i < 16; i++) tid[i] = (uint8_t)prng_next(&rng);
    size_t tlen = prng_below(&rng, 4) == 0 ? 16 : 12;
    if (tlen == 16 && tid[0] == 0x21) tid[0] = 0x20; /* keep it cookie-less */
    uint16_t method = tlen == 16 ? 1 : (uint16_t)prng_below(&rng, 0x1000);
    uint16_t cls = tlen == 16 ? STUN_CLASS_SUCCESS
                              : (uint16_t)((prng_below(&rng, 2) << 4) | (prng_below(&rng, 2) << 8));
    struct stun_writer w;
    stun_writer_init(&w, buf, sizeof buf, method, cls, tid, tlen);
    struct stun_addr a;
    memset(&a, 0, sizeof a);
    a.family = prng_below(&rng, 2) ? STUN_FAMILY_IPV4 : STUN_FAMILY_IPV6;
    a.port = (uint16_t)prng_next(&rng);
    for (int i = 0; i < (a.family == STUN_FAMILY_IPV4 ? 4 : 16); i++)
      a.ip[i] = (uint8_t)prng_next(&rng);
    char text[80];
    size_t tl = prng_below(&rng, 60);
    for (size_t i = 0; i < tl; i++) text[i] = (char)('a' + prng_below(&rng, 26));
    text[tl] = 0;
    uint32_t prio = (uint32_t)prng_next(&rng);
    stun_put_addr(&w, STUN_ATTR_XOR_MAPPED_ADDRESS, &a);
    stun_put(&w, STUN_ATTR_SOFTWARE, text, tl);
    stun_put_u32(&w, STUN_ATTR_PRIORITY, prio);
    stun_put_error(&w, 300 + (int)prng_below(&rng, 400), text);
    int with_mi = (int)prng_below(&rng, 2), with_fp = (int)prng_below(&rng, 2);
    if (with_mi) stun_put_integrity(&w, text, tl);
    if (with_fp) stun_put_fingerprint(&w);
    int n = stun_writer_finish(&w);
    if (n <= 0) {
      bad++;
      continue;
    }
    struct stun_msg m;
    uint8_t *c = dup_exact(buf, (size_t)n);
    int r = stun_read(c, (size_t)n, &m);
    if (r != 0 || m.method != method || m.cls != cls || m.tid_len != tlen ||
        memcmp(m.tid, tid, tlen) != 0 || memcmp(&m.xor_mapped, &a, sizeof a) != 0 ||
        !bytes_eq(m.software, text) || m.priority != prio || m.classic != (tlen == 16) ||
        (with_fp && !m.fingerprint_ok) || (with_mi && stun_check_integrity(c, &m, text, tl) != 0))
      bad++;
    free(c);
  }
  CHECK_EQ(bad, 0);
}

static struct sockaddr_in sin4(const char *ip, uint16_t port) {
  struct sockaddr_in s;
  memset(&s, 0, sizeof s);
  s.sin_family = AF_INET;
  s.sin_port = htons(port);
  inet_pton(AF_INET, ip, &s.sin_addr);
  return s;
}

static struct sockaddr_in6 sin6(const char *ip, uint16_t port) {
  struct sockaddr_in6 s;
  memset(&s, 0, sizeof s);
  s.sin6_family = AF_INET6;
  s.sin6_port = htons(port);
  inet_pton(AF_INET6, ip, &s.sin6_addr);
  return s;
}

static void test_answer(struct tally *t) {
  uint8_t out[512], req[128], tid[12] = {9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 1, 2};
  struct stun_msg m;
  struct stun_writer w;
  char ip[64];
  struct sockaddr_in from4 = sin4("203.0.113.9", 40001);
  struct sockaddr_in6 from6 = sin6("2001:db8::9", 40002);
  struct sockaddr_in6 mapped = sin6("::ffff:198.51.100.3", 5);

  /* plain RFC 8489 request */
  stun_writer_init(&w, req, sizeof req, STUN_METHOD_BINDING, STUN_CLASS_REQUEST, tid, 12);
  int rl = stun_writer_finish(&w);
  int n =
      stun_answer_binding(req, (size_t)rl, (struct sockaddr *)&from4, "natpunch", out, sizeof out);
  CHECK(n > 0 && n <= STUN_ANSWER_MAX);
  CHECK_EQ(stun_read(out, (size_t)n, &m), 0);
  CHECK_EQ(m.cls, STUN_CLASS_SUCCESS);
  CHECK(memcmp(m.tid, tid, 12) == 0);
  CHECK_EQ(stun_addr_format(&m.xor_mapped, ip, sizeof ip), 0);
  CHECK(strcmp(ip, "203.0.113.9") == 0);
  CHECK_EQ(m.xor_mapped.port, 40001);
  CHECK(memcmp(&m.mapped, &m.xor_mapped, sizeof m.mapped) == 0);
  CHECK(bytes_eq(m.software, "natpunch"));
  CHECK(!(m.has & STUN_HAS_FINGERPRINT));

  /* IPv6, and the RFC 5769 request (FINGERPRINT, ICE attributes, MI) */
  n = stun_answer_binding(req21, sizeof req21, (struct sockaddr *)&from6, NULL, out, sizeof out);
  CHECK(n > 0 && n <= STUN_ANSWER_MAX);
  CHECK_EQ(stun_read(out, (size_t)n, &m), 0);
  CHECK_EQ(stun_addr_format(&m.xor_mapped, ip, sizeof ip), 0);
  CHECK(strcmp(ip, "2001:db8::9") == 0);
  CHECK_EQ(m.xor_mapped.port, 40002);
  CHECK(m.has & STUN_HAS_FINGERPRINT);
  CHECK(m.fingerprint_ok);
  CHECK(!(m.has & STUN_HAS_SOFTWARE));
  CHECK(hex_eq(m.tid, "b7e7a701bc34d686fa87dfae"));

  /* a dual-stack socket's v4-mapped peer is answered as IPv4 */
  n = stun_answer_binding(req, (size_t)rl, (struct sockaddr *)&mapped, NULL, out, sizeof out);
  CHECK_EQ(stun_read(out, (size_t)n, &m), 0);
  CHECK_EQ(m.xor_mapped.family, STUN_FAMILY_IPV4);
  CHECK_EQ(stun_addr_format(&m.xor_mapped, ip, sizeof ip), 0);
  CHECK(strcmp(ip, "198.51.100.3") == 0);

  /* RFC 3489 request: MAPPED-ADDRESS only, 16-byte id echoed */
  n = stun_answer_binding(classic_req, sizeof classic_req, (struct sockaddr *)&from4, "np", out,
                          sizeof out);
  CHECK(n > 0);
  CHECK_EQ(stun_read(out, (size_t)n, &m), 0);
  CHECK(m.classic);
  CHECK_EQ(m.tid_len, 16);
  CHECK(memcmp(m.tid, classic_req + 4, 16) == 0);
  CHECK(memcmp(out + 4, classic_req + 4, 16) == 0);
  CHECK(m.has & STUN_HAS_MAPPED);
  CHECK(!(m.has & STUN_HAS_XOR_MAPPED));
  CHECK_EQ(stun_addr_format(&m.mapped, ip, sizeof ip), 0);
  CHECK(strcmp(ip, "203.0.113.9") == 0);
  CHECK_EQ(m.mapped.port, 40001);

  /* with origin and alternate: SOURCE-/CHANGED-ADDRESS, and RFC 5780's */
  struct sockaddr_in origin = sin4("127.0.0.1", 3478), other = sin4("127.0.0.2", 3479);
  struct stun_answer_opts opts = {.software = "natpunch",
                                  .origin = (struct sockaddr *)&origin,
                                  .other = (struct sockaddr *)&other};
  n = stun_answer_binding_ex(classic_req, sizeof classic_req, (struct sockaddr *)&from4, &opts, out,
                             sizeof out);
  CHECK_EQ(stun_read(out, (size_t)n, &m), 0);
  CHECK(m.has & STUN_HAS_SOURCE_ADDRESS);
  CHECK(m.has & STUN_HAS_CHANGED_ADDRESS);
  CHECK_EQ(m.changed_address.port, 3479);
  n = stun_answer_binding_ex(req, (size_t)rl, (struct sockaddr *)&from4, &opts, out, sizeof out);
  CHECK_EQ(stun_read(out, (size_t)n, &m), 0);
  CHECK(m.has & STUN_HAS_OTHER_ADDRESS);
  CHECK(m.has & STUN_HAS_RESPONSE_ORIGIN);
  CHECK_EQ(m.response_origin.port, 3478);

  /* never more than 128 bytes, whatever the software string and family */
  static const char longsw[] = "a software name that is far too long to fit into one small "
                               "answer, so it must be left out of it entirely";
  struct sockaddr_in6 o6 = sin6("2001:db8::1", 1), x6 = sin6("2001:db8::2", 2);
  struct stun_answer_opts big = {
      .software = longsw, .origin = (struct sockaddr *)&o6, .other = (struct sockaddr *)&x6};
  n = stun_answer_binding_ex(req21, sizeof req21, (struct sockaddr *)&from6, &big, out, sizeof out);
  CHECK(n > 0 && n <= STUN_ANSWER_MAX);
  CHECK_EQ(stun_read(out, (size_t)n, &m), 0);
  CHECK(m.fingerprint_ok);
  CHECK(m.has & STUN_HAS_XOR_MAPPED);
  n = stun_answer_binding(req21, sizeof req21, (struct sockaddr *)&from6, longsw, out, sizeof out);
  CHECK(n > 0 && n <= STUN_ANSWER_MAX);
  CHECK_EQ(stun_answer_binding(req21, sizeof req21, (struct sockaddr *)&from6, NULL, out, 27),
           STUN_ENOSPACE);

  /* unknown comprehension-required attribute: 420 + UNKNOWN-ATTRIBUTES */
  stun_writer_init(&w, req, sizeof req, STUN_METHOD_BINDING, STUN_CLASS_REQUEST, tid, 12);
  stun_put(&w, 0x0031, "abcd", 4);
  stun_put(&w, 0x8031, "abcd", 4); /* optional: not listed */
  stun_put(&w, 0x0032, NULL, 0);
  stun_put_fingerprint(&w);
  int ul = stun_writer_finish(&w);
  n = stun_answer_binding(req, (size_t)ul, (struct sockaddr *)&from4, "sw", out, sizeof out);
  CHECK(n > 0 && n <= STUN_ANSWER_MAX);
  CHECK_EQ(stun_read(out, (size_t)n, &m), 0);
  CHECK_EQ(m.cls, STUN_CLASS_ERROR);
  CHECK_EQ(m.error_code, 420);
  CHECK_EQ(m.n_unknown_attributes, 2);
  CHECK_EQ(m.unknown_attributes[0], 0x0031);
  CHECK_EQ(m.unknown_attributes[1], 0x0032);
  CHECK(m.fingerprint_ok);
  CHECK(!(m.has & STUN_HAS_XOR_MAPPED));

  /* never answered: responses, indications, other methods, bad fingerprint */
  CHECK_EQ(
      stun_answer_binding(resp22, sizeof resp22, (struct sockaddr *)&from4, NULL, out, sizeof out),
      STUN_ENOTREQUEST);
  stun_writer_init(&w, req, sizeof req, STUN_METHOD_BINDING, STUN_CLASS_INDICATION, tid, 12);
  rl = stun_writer_finish(&w);
  CHECK_EQ(stun_answer_binding(req, (size_t)rl, (struct sockaddr *)&from4, NULL, out, sizeof out),
           STUN_ENOTREQUEST);
  stun_writer_init(&w, req, sizeof req, 0x003, STUN_CLASS_REQUEST, tid, 12);
  rl = stun_writer_finish(&w);
  CHECK_EQ(stun_answer_binding(req, (size_t)rl, (struct sockaddr *)&from4, NULL, out, sizeof out),
           STUN_EMETHOD);
  uint8_t *c = dup_exact(req21, sizeof req21);
  c[sizeof req21 - 1] ^= 0xff;
  CHECK_EQ(stun_answer_binding(c, sizeof req21, (struct sockaddr *)&from4, NULL, out, sizeof out),
           STUN_EBADFINGERPRINT);
  free(c);
  CHECK_EQ(stun_answer_binding(req21, 30, (struct sockaddr *)&from4, NULL, out, sizeof out),
           STUN_ETRUNCATED);
  c = malloc(sizeof req21 + 4);
  memcpy(c, req21, sizeof req21);
  memset(c + sizeof req21, 0, 4);
  CHECK_EQ(
      stun_answer_binding(c, sizeof req21 + 4, (struct sockaddr *)&from4, NULL, out, sizeof out),
      STUN_ETRAILING);
  free(c);
  CHECK_EQ(stun_answer_binding(req21, 10, (struct sockaddr *)&from4, NULL, out, sizeof out),
           STUN_ETRUNCATED);
  struct sockaddr unix_sa = {.sa_family = AF_UNIX};
  CHECK_EQ(stun_answer_binding(req21, sizeof req21, &unix_sa, NULL, out, sizeof out),
           STUN_EAFNOSUPPORT);

  /* CHANGE-REQUEST with flags and RESPONSE-PORT need the caller */
  stun_writer_init(&w, req, sizeof req, STUN_METHOD_BINDING, STUN_CLASS_REQUEST, tid, 12);
  stun_put_change_request(&w, STUN_CHANGE_PORT);
  rl = stun_writer_finish(&w);
  CHECK_EQ(stun_answer_binding(req, (size_t)rl, (struct sockaddr *)&from4, NULL, out, sizeof out),
           STUN_ECHANGE);
  struct stun_answer_opts chg = {.flags = STUN_ANSWER_CHANGE_OK};
  CHECK(stun_answer_binding_ex(req, (size_t)rl, (struct sockaddr *)&from4, &chg, out, sizeof out) >
        0);
  stun_writer_init(&w, req, sizeof req, STUN_METHOD_BINDING, STUN_CLASS_REQUEST, tid, 12);
  stun_put_response_port(&w, 9999);
  rl = stun_writer_finish(&w);
  CHECK_EQ(stun_answer_binding(req, (size_t)rl, (struct sockaddr *)&from4, NULL, out, sizeof out),
           STUN_ERESPPORT);
  struct stun_answer_opts rp = {.flags = STUN_ANSWER_RESPONSE_PORT_OK};
  CHECK(stun_answer_binding_ex(req, (size_t)rl, (struct sockaddr *)&from4, &rp, out, sizeof out) >
        0);

  /* a classic request with an unknown mandatory attribute: RFC 3489
   * §11.2.10 repeats the single type to fill 32 bits */
  uint8_t creq[32];
  memcpy(creq, classic_req, sizeof classic_req);
  creq[3] = 12;
  memcpy(creq + 28, "\x00\x02\x00\x00", 4); /* RESPONSE-ADDRESS, never honoured */
  n = stun_answer_binding(creq, 32, (struct sockaddr *)&from4, NULL, out, sizeof out);
  CHECK_EQ(stun_read(out, (size_t)n, &m), 0);
  CHECK(m.classic);
  CHECK_EQ(m.error_code, 420);
  CHECK_EQ(m.n_unknown_attributes, 2);
  CHECK_EQ(m.unknown_attributes[1], 0x0002);
}

static void test_is_stun(struct tally *t) {
  uint8_t buf[64];
  CHECK(stun_is_stun(req21, sizeof req21));
  CHECK(stun_is_stun(classic_req, sizeof classic_req));
  CHECK(!stun_is_stun(req21, sizeof req21 - 4));
  CHECK(!stun_is_stun(req21, 10));
  CHECK(!stun_is_stun(NULL, 0));
  memcpy(buf, req21, 20);
  buf[3] = 0;
  CHECK(stun_is_stun(buf, 20));
  buf[0] = 0x04; /* RFC 7983: 4..19 is not STUN */
  CHECK(!stun_is_stun(buf, 20));
  buf[0] = 0x16; /* a DTLS record */
  CHECK(!stun_is_stun(buf, 20));
  buf[0] = 0;
  buf[4] = 0;
  buf[1] = 0x09; /* no cookie, not a 3489 type */
  CHECK(!stun_is_stun(buf, 20));
  CHECK_EQ(stun_frame_size(req21, 10), 0);
  CHECK_EQ(stun_frame_size(req21, 20), sizeof req21);
  CHECK_EQ(stun_frame_size(buf, 20), STUN_EBADCOOKIE);
}

/* Every prefix of every vector is rejected, and decoding a prefix whose
 * length field was patched to fit never crashes. */
static void test_truncations(struct tally *t) {
  int bad = 0, count = 0;
  for (size_t v = 0; v < N_VECTORS; v++) {
    for (size_t len = 0; len < vectors[v].len; len++) {
      struct stun_msg m;
      uint8_t *c = dup_exact(vectors[v].p, len);
      int r = stun_read(c, len, &m);
      if (r >= 0 || (r != STUN_ETRUNCATED && r != STUN_EBADLENGTH)) {
        printf("  %s prefix %zu: %d\n", vectors[v].name, len, r);
        bad++;
      }
      if (len >= 20) {
        size_t body = (len - 20) & ~(size_t)3;
        c[2] = (uint8_t)(body >> 8);
        c[3] = (uint8_t)body;
        r = stun_read(c, 20 + body, &m);
        if (r == 0 && (m.has & STUN_HAS_INTEGRITY)) (void)stun_check_integrity(c, &m, "k", 1);
        uint8_t out[STUN_ANSWER_MAX];
        struct sockaddr_in from = sin4("127.0.0.1", 1);
        (void)stun_answer_binding(c, 20 + body, (struct sockaddr *)&from, "x", out, sizeof out);
      }
      free(c);
      count++;
    }
  }
  CHECK_EQ(bad, 0);
  CHECK(count > 400);
}

/* Seeded random mutations of the vectors and of fresh messages; nothing
 * may crash, read out of bounds, or give an answer over the cap. */
static void test_mutations(struct tally *t) {
  struct prng rng = {0xD1B54A32D192ED03ULL};
  const int iterations = 200000;
  int decoded = 0, failed_sanity = 0, answered = 0;
  uint8_t work[512];
  for (int iter = 0; iter < iterations; iter++) {
    const struct vector *v = &vectors[prng_below(&rng, N_VECTORS)];
    size_t len = v->len;
    memcpy(work, v->p, len);
    int edits = 1 + (int)prng_below(&rng, 4);
    for (int e = 0; e < edits; e++) {
      switch (prng_below(&rng, 6)) {
      case 0: /* flip a bit */
        if (len) work[prng_below(&rng, (uint32_t)len)] ^= (uint8_t)(1u << prng_below(&rng, 8));
        break;
      case 1: /* random byte */
        if (len) work[prng_below(&rng, (uint32_t)len)] = (uint8_t)prng_next(&rng);
        break;
      case 2: /* attack a length field: header or some attribute's */
        if (len >= 24) {
          size_t at = prng_below(&rng, 2) ? 2 : 20 + 4 * prng_below(&rng, (uint32_t)(len - 20) / 4);
          if (at + 1 < len) {
            work[at] = (uint8_t)prng_next(&rng);
            work[at + 1] = (uint8_t)prng_next(&rng);
          }
        }
        break;
      case 3: /* cut */ len = prng_below(&rng, (uint32_t)len + 1); break;
      case 4: /* grow with random bytes */
        if (len < sizeof work - 16) {
          size_t add = 1 + prng_below(&rng, 16);
          for (size_t i = 0; i < add; i++) work[len + i] = (uint8_t)prng_next(&rng);
          len += add;
        }
        break;
      default: /* fix the header length so attribute parsing is reached */
        if (len >= 20) {
          size_t body = (len - 20) & ~(size_t)3;
          len = 20 + body;
          work[2] = (uint8_t)(body >> 8);
          work[3] = (uint8_t)body;
        }
        break;
      }
    }
    uint8_t *c = dup_exact(work, len);
    struct stun_msg m;
    if (stun_read(c, len, &m) == 0) {
      decoded++;
      const uint8_t *end = c + len;
      const struct stun_bytes *runs[] = {&m.username, &m.software, &m.realm, &m.nonce,
                                         &m.error_reason};
      for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++)
        if (runs[i]->len && (runs[i]->ptr < c || runs[i]->ptr + runs[i]->len > end))
          failed_sanity++;
      if (m.size != len || m.n_unknown_attributes > STUN_MAX_LISTED) failed_sanity++;
      if (m.has & STUN_HAS_INTEGRITY) (void)stun_check_integrity(c, &m, pass21, strlen(pass21));
      if (m.has & STUN_HAS_INTEGRITY_SHA256)
        (void)stun_check_integrity_sha256(c, &m, pass21, strlen(pass21));
    }
    (void)stun_is_stun(c, len);
    (void)stun_frame_size(c, len);
    uint8_t out[STUN_ANSWER_MAX + 64];
    struct sockaddr_in6 from = sin6("2001:db8::77", 7);
    int n = stun_answer_binding(c, len, (struct sockaddr *)&from, "natpunch", out, sizeof out);
    if (n > 0) {
      answered++;
      struct stun_msg a;
      if (n > STUN_ANSWER_MAX || stun_read(out, (size_t)n, &a) != 0 || a.cls == STUN_CLASS_REQUEST)
        failed_sanity++;
    }
    free(c);
  }
  printf("  %d mutations: %d decoded, %d answered\n", iterations, decoded, answered);
  CHECK_EQ(failed_sanity, 0);
  CHECK(decoded > 1000);
  CHECK(answered > 100);
}

static void test_addr_helpers(struct tally *t) {
  struct stun_addr a;
  struct sockaddr_storage ss;
  socklen_t sl;
  char ip[64];
  CHECK_EQ(stun_addr_parse("198.51.100.20", 999, &a), 0);
  CHECK_EQ(stun_addr_to_sockaddr(&a, &ss, &sl), 0);
  CHECK_EQ(sl, sizeof(struct sockaddr_in));
  struct stun_addr back;
  CHECK_EQ(stun_addr_from_sockaddr((struct sockaddr *)&ss, &back), 0);
  CHECK(memcmp(&a, &back, sizeof a) == 0);
  CHECK_EQ(stun_addr_parse("2001:db8::20", 998, &a), 0);
  CHECK_EQ(stun_addr_to_sockaddr(&a, &ss, &sl), 0);
  CHECK_EQ(sl, sizeof(struct sockaddr_in6));
  CHECK_EQ(stun_addr_from_sockaddr((struct sockaddr *)&ss, &back), 0);
  CHECK(memcmp(&a, &back, sizeof a) == 0);
  CHECK_EQ(stun_addr_format(&a, ip, sizeof ip), 0);
  CHECK(strcmp(ip, "2001:db8::20") == 0);
  CHECK_EQ(stun_addr_format(&a, ip, 5), STUN_EINVAL);
  CHECK_EQ(stun_addr_parse("1.2.3", 1, &a), STUN_EINVAL);
  CHECK_EQ(stun_addr_parse("[::1]", 1, &a), STUN_EINVAL);
  a.family = 9;
  CHECK_EQ(stun_addr_to_sockaddr(&a, &ss, &sl), STUN_EAFNOSUPPORT);
}

int main(void) {
  struct tally t = {0, 0, 0};
  run_group(&t, "sha1/sha256/md5/crc32", test_hashes);
  run_group(&t, "hmac (rfc2202, rfc4231)", test_hmac);
  run_group(&t, "rfc5769 2.1 request", test_rfc5769_request);
  run_group(&t, "rfc5769 2.2/2.3 responses", test_rfc5769_responses);
  run_group(&t, "rfc5769 2.4 long-term", test_rfc5769_long_term);
  run_group(&t, "message type bits", test_type_bits);
  run_group(&t, "malformed -> error codes", test_errors);
  run_group(&t, "integrity rules", test_integrity_rules);
  run_group(&t, "encode/decode round trip", test_round_trip);
  run_group(&t, "random round trips", test_random_round_trips);
  run_group(&t, "answer_binding", test_answer);
  run_group(&t, "is_stun/frame_size", test_is_stun);
  run_group(&t, "address helpers", test_addr_helpers);
  run_group(&t, "every truncation", test_truncations);
  run_group(&t, "random mutations", test_mutations);
  printf("%d passed, %d failed\n", t.passed, t.failed);
  return t.failed == 0 ? 0 : 1;
}
