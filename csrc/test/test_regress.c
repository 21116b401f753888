/*
 * test_regress.c - the bug shapes other STUN stacks shipped, pinned down
 * for this codec and its answer path:
 *  - pjnath CVE-2021-37706: ERROR-CODE shorter than its 4-byte head (a
 *    reason length of vlen - 4 underflowed);
 *  - headers shorter than 20 bytes, attribute length 0xFFFF, 1-3 trailing
 *    bytes, padding cut off;
 *  - over-long USERNAME (64 KiB; RFC 5389 caps it at 512 bytes) and text
 *    attributes (763 bytes);
 *  - coturn CVE-2020-26262: 0.0.0.0, :: and port 0 sources are never
 *    answered; ::1 and 0.0.0.0 carried in attributes decode exactly, for
 *    the candidate filter above to judge;
 *  - pjnath CVE-2020-4067 (uninitialised bytes sent in a response): every
 *    answer and every padding byte is written, shown by encoding into
 *    buffers pre-filled with two different patterns.
 * Every message is decoded from an exact-size heap copy (ASan sees a read
 * one byte past it).
 */
#include "check.h"
#include "stun.h"
#include "vectors.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

static suite su;

static const uint8_t tid[12] = {0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34,
                                0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae};

/* Header (type, cookie, tid) followed by attrs; returns the length. */
static size_t craft(uint8_t *buf, uint16_t type, const uint8_t *attrs, size_t alen) {
  buf[0] = (uint8_t)(type >> 8);
  buf[1] = (uint8_t)type;
  buf[2] = (uint8_t)(alen >> 8);
  buf[3] = (uint8_t)alen;
  buf[4] = 0x21, buf[5] = 0x12, buf[6] = 0xa4, buf[7] = 0x42;
  memcpy(buf + 8, tid, 12);
  if (alen) memcpy(buf + 20, attrs, alen);
  return 20 + alen;
}

static int read_exact(const uint8_t *p, size_t len, struct stun_msg *m) {
  uint8_t *c = malloc(len ? len : 1);
  memcpy(c, p, len);
  int r = stun_read(c, len, m);
  free(c);
  return r;
}

static struct sockaddr_storage sa(const char *ip, uint16_t port) {
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  if (strchr(ip, ':')) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(port);
    inet_pton(AF_INET6, ip, &a->sin6_addr);
  } else {
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    a->sin_family = AF_INET;
    a->sin_port = htons(port);
    inet_pton(AF_INET, ip, &a->sin_addr);
  }
  return ss;
}

static int answer(const uint8_t *req, size_t len, const char *ip, uint16_t port, uint8_t *out,
                  size_t cap) {
  struct sockaddr_storage from = sa(ip, port);
  uint8_t *c = malloc(len ? len : 1);
  memcpy(c, req, len);
  int r = stun_answer_binding(c, len, (struct sockaddr *)&from, "natpunch", out, cap);
  free(c);
  return r;
}

static void test_error_code_short(void) {
  uint8_t buf[64], attr[8] = {0x00, 0x09, 0x00, 0x00, 0, 0, 4, 20};
  struct stun_msg m;
  for (uint8_t vlen = 0; vlen < 4; vlen++) {
    attr[3] = vlen; /* value padded to 4 bytes: the message stays well formed */
    size_t n = craft(buf, 0x0111, attr, vlen ? 8 : 4);
    CHECK(&su, read_exact(buf, n, &m) == STUN_EATTRLEN);
  }
  attr[3] = 4; /* the shortest valid one: no reason at all */
  size_t n = craft(buf, 0x0111, attr, 8);
  CHECK(&su, read_exact(buf, n, &m) == 0 && m.error_code == 420 && m.error_reason.len == 0);
}

static void test_header_short(void) {
  struct stun_msg m;
  uint8_t out[STUN_ANSWER_MAX];
  for (size_t n = 0; n < STUN_HEADER_SIZE; n++) {
    CHECK(&su, read_exact(req21, n, &m) == STUN_ETRUNCATED);
    CHECK(&su, !stun_is_stun(req21, n));
    CHECK(&su, stun_frame_size(req21, n) == 0);
    CHECK(&su, answer(req21, n, "203.0.113.1", 5000, out, sizeof out) == STUN_ETRUNCATED);
  }
  CHECK(&su, stun_read(NULL, 0, &m) == STUN_ETRUNCATED);
}

static void test_attr_ffff(void) {
  struct stun_msg m;
  uint8_t buf[64];
  static const uint8_t a[] = {0x80, 0x22, 0xff, 0xff, 'a', 'b', 'c', 'd'};
  size_t n = craft(buf, 0x0001, a, sizeof a);
  CHECK(&su, read_exact(buf, n, &m) == STUN_EATTRTRUNC);
  /* the largest message there is: length 0xFFFC, one attribute claiming
   * 0xFFFF bytes (padded 0x10000) in 0xFFF8 bytes of room */
  size_t big = STUN_HEADER_SIZE + 0xFFFC;
  uint8_t *p = calloc(1, big);
  craft(p, 0x0001, NULL, 0);
  p[2] = 0xff, p[3] = 0xfc;
  p[20] = 0x80, p[21] = 0x22, p[22] = 0xff, p[23] = 0xff;
  CHECK(&su, read_exact(p, big, &m) == STUN_EATTRTRUNC);
  p[22] = 0xff, p[23] = 0xf8; /* exactly filling it: SOFTWARE far too long */
  CHECK(&su, read_exact(p, big, &m) == STUN_EATTRLEN);
  p[20] = 0x80, p[21] = 0x42; /* an unknown optional type may be that long */
  CHECK(&su, read_exact(p, big, &m) == 0 && m.n_unknown_required == 0);
  free(p);
}

static void test_trailing(void) {
  struct stun_msg m;
  uint8_t buf[sizeof req21 + 3];
  memcpy(buf, req21, sizeof req21);
  memset(buf + sizeof req21, 0, 3);
  for (size_t extra = 1; extra <= 3; extra++)
    CHECK(&su, read_exact(buf, sizeof req21 + extra, &m) == STUN_ETRAILING);
  /* length field not a multiple of 4 */
  for (uint8_t d = 1; d <= 3; d++) {
    buf[3] = (uint8_t)(req21[3] + d);
    CHECK(&su, read_exact(buf, sizeof req21 + d, &m) == STUN_EBADLENGTH);
  }
  /* an attribute whose padding is cut off by the message end */
  uint8_t p[64];
  static const uint8_t a[] = {0x00, 0x06, 0x00, 0x05, 'a', 'b', 'c', 'd'};
  size_t n = craft(p, 0x0001, a, sizeof a);
  CHECK(&su, read_exact(p, n, &m) == STUN_EATTRTRUNC);
}

static void test_username_cap(void) {
  struct stun_msg m;
  uint8_t out[STUN_ANSWER_MAX];
  size_t cap = STUN_HEADER_SIZE + 0xFFFC;
  uint8_t *buf = malloc(cap), *name = malloc(0xFFF8);
  memset(name, 'u', 0xFFF8);
  static const size_t lens[] = {1, 508, 512, 513, 1024, 0xFFF8};
  for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
    struct stun_writer w;
    stun_writer_init(&w, buf, cap, STUN_METHOD_BINDING, STUN_CLASS_REQUEST, tid, 12);
    stun_put(&w, STUN_ATTR_USERNAME, name, lens[i]);
    int n = stun_writer_finish(&w);
    CHECK(&su, n > 0);
    int r = read_exact(buf, (size_t)n, &m);
    int a = answer(buf, (size_t)n, "203.0.113.1", 5000, out, sizeof out);
    if (lens[i] <= STUN_MAX_USERNAME) {
      CHECK(&su, r == 0 && m.username.len == lens[i]);
      CHECK(&su, a > 0);
    } else {
      CHECK(&su, r == STUN_EATTRLEN);
      CHECK(&su, a == STUN_EATTRLEN); /* not answered */
    }
  }
  /* REALM, NONCE, SOFTWARE and an ERROR-CODE reason: 763 bytes */
  static const uint16_t texts[] = {STUN_ATTR_REALM, STUN_ATTR_NONCE, STUN_ATTR_SOFTWARE};
  for (size_t i = 0; i < 3; i++) {
    for (size_t len = STUN_MAX_TEXT; len <= STUN_MAX_TEXT + 1; len++) {
      struct stun_writer w;
      stun_writer_init(&w, buf, cap, STUN_METHOD_BINDING, STUN_CLASS_SUCCESS, tid, 12);
      stun_put(&w, texts[i], name, len);
      int n = stun_writer_finish(&w);
      CHECK(&su, (read_exact(buf, (size_t)n, &m) == 0) == (len == STUN_MAX_TEXT));
    }
  }
  uint8_t *e = malloc(4 + STUN_MAX_TEXT + 1);
  memset(e, 'r', 4 + STUN_MAX_TEXT + 1);
  e[0] = e[1] = 0, e[2] = 4, e[3] = 20;
  for (size_t len = STUN_MAX_TEXT; len <= STUN_MAX_TEXT + 1; len++) {
    struct stun_writer w;
    stun_writer_init(&w, buf, cap, STUN_METHOD_BINDING, STUN_CLASS_ERROR, tid, 12);
    stun_put(&w, STUN_ATTR_ERROR_CODE, e, 4 + len);
    int n = stun_writer_finish(&w);
    CHECK(&su, (read_exact(buf, (size_t)n, &m) == 0) == (len == STUN_MAX_TEXT));
  }
  free(e);
  free(buf);
  free(name);
}

static void test_unroutable_sources(void) {
  uint8_t out[STUN_ANSWER_MAX];
  struct stun_msg m;
  /* never answered: no datagram comes from there */
  CHECK(&su, answer(req21, sizeof req21, "0.0.0.0", 5000, out, sizeof out) == STUN_EINVAL);
  CHECK(&su, answer(req21, sizeof req21, "::", 5000, out, sizeof out) == STUN_EINVAL);
  CHECK(&su, answer(req21, sizeof req21, "::ffff:0.0.0.0", 5000, out, sizeof out) == STUN_EINVAL);
  CHECK(&su, answer(req21, sizeof req21, "203.0.113.1", 0, out, sizeof out) == STUN_EINVAL);
  CHECK(&su, answer(classic_req, sizeof classic_req, "0.0.0.0", 1, out, sizeof out) == STUN_EINVAL);
  /* loopback sources (tests, local clients) are answered, and exactly */
  int n = answer(req21, sizeof req21, "::1", 5000, out, sizeof out);
  CHECK(&su, n > 0 && stun_read(out, (size_t)n, &m) == 0);
  static const uint8_t lo6[16] = {[15] = 1};
  CHECK(&su, m.xor_mapped.family == STUN_FAMILY_IPV6 && memcmp(m.xor_mapped.ip, lo6, 16) == 0 &&
                 m.xor_mapped.port == 5000);
  n = answer(req21, sizeof req21, "127.0.0.1", 5001, out, sizeof out);
  CHECK(&su, n > 0 && stun_read(out, (size_t)n, &m) == 0 && m.xor_mapped.port == 5001);
  /* a response carrying 0.0.0.0 or ::1 decodes to exactly that, so the
   * candidate filter (not the codec) decides what to do with it */
  static const char *ips[] = {"0.0.0.0", "::1", "::", "255.255.255.255"};
  for (size_t i = 0; i < 4; i++) {
    struct stun_addr a;
    uint8_t buf[128];
    struct stun_writer w;
    CHECK(&su, stun_addr_parse(ips[i], 9, &a) == 0);
    stun_writer_init(&w, buf, sizeof buf, STUN_METHOD_BINDING, STUN_CLASS_SUCCESS, tid, 12);
    stun_put_addr(&w, STUN_ATTR_XOR_MAPPED_ADDRESS, &a);
    stun_put_addr(&w, STUN_ATTR_MAPPED_ADDRESS, &a);
    int len = stun_writer_finish(&w);
    CHECK(&su, len > 0 && read_exact(buf, (size_t)len, &m) == 0);
    CHECK(&su, memcmp(&m.xor_mapped, &a, sizeof a) == 0 && memcmp(&m.mapped, &a, sizeof a) == 0);
  }
}

/* The same answer into buffers filled with 0x00 and 0xFF: identical
 * output, nothing written past it. */
static int two_patterns(const uint8_t *req, size_t len, const char *ip,
                        const struct stun_answer_opts *opts) {
  uint8_t a[256], b[256];
  struct sockaddr_storage from = sa(ip, 40000);
  memset(a, 0x00, sizeof a);
  memset(b, 0xFF, sizeof b);
  int ra = stun_answer_binding_ex(req, len, (struct sockaddr *)&from, opts, a, sizeof a);
  int rb = stun_answer_binding_ex(req, len, (struct sockaddr *)&from, opts, b, sizeof b);
  if (ra <= 0 || ra != rb || memcmp(a, b, (size_t)ra) != 0) return 0;
  for (size_t i = (size_t)ra; i < sizeof a; i++)
    if (a[i] != 0x00 || b[i] != 0xFF) return 0;
  return 1;
}

static void test_initialised_answers(void) {
  struct sockaddr_storage o4 = sa("203.0.113.9", 3479), o6 = sa("2001:db8::9", 3479);
  struct stun_answer_opts none = {0}, soft = {.software = "natpunch 0.1.0"},
                          odd = {.software = "abcde"}, /* padding after 5 bytes */
      full = {.software = "x", .origin = (struct sockaddr *)&o4, .other = (struct sockaddr *)&o6};
  const struct stun_answer_opts *opts[] = {&none, &soft, &odd, &full};
  const struct {
    const uint8_t *p;
    size_t len;
  } reqs[] = {{req21, sizeof req21}, {req24, sizeof req24}, {classic_req, sizeof classic_req}};
  for (size_t i = 0; i < 3; i++)
    for (size_t j = 0; j < 4; j++) {
      CHECK(&su, two_patterns(reqs[i].p, reqs[i].len, "198.51.100.7", opts[j]));
      CHECK(&su, two_patterns(reqs[i].p, reqs[i].len, "2001:db8::7", opts[j]));
    }
  /* a 420 answer (unknown comprehension-required attributes), odd count */
  uint8_t buf[64];
  static const uint8_t unk[] = {0x00, 0x42, 0x00, 0x00, 0x00, 0x43,
                                0x00, 0x00, 0x00, 0x44, 0x00, 0x00};
  size_t n = craft(buf, 0x0001, unk, sizeof unk);
  CHECK(&su, two_patterns(buf, n, "198.51.100.7", &soft));
  /* the writer's padding bytes are zeros whatever the buffer held */
  uint8_t w1[64];
  memset(w1, 0xA5, sizeof w1);
  struct stun_writer w;
  stun_writer_init(&w, w1, sizeof w1, STUN_METHOD_BINDING, STUN_CLASS_REQUEST, tid, 12);
  stun_put(&w, STUN_ATTR_USERNAME, "abcde", 5);
  CHECK(&su, stun_writer_finish(&w) == 32 && w1[29] == 0 && w1[30] == 0 && w1[31] == 0);
}

int main(void) {
  test_error_code_short();
  test_header_short();
  test_attr_ffff();
  test_trailing();
  test_username_cap();
  test_unroutable_sources();
  test_initialised_answers();
  printf("%d passed, %d failed\n", su.passed, su.failed);
  return su.failed != 0;
}
