/*
 * mkseeds.c - writes the seed corpora of the fuzz targets: the RFC 5769
 * vectors (csrc/test/vectors.h), the bug shapes of other STUN stacks that
 * csrc/test/test_regress.c pins down, frames built by the encoders, and
 * short scripts for the touch and punch targets.
 *
 *   build/fuzz/mkseeds DIR   ->  DIR/<target>/<name> files
 */
#include "crypto.h"
#include "punch.h"
#include "stun.h"
#include "touch.h"
#include "vectors.h"
#include "wire.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *root;

static void put(const char *target, const char *name, const void *p, size_t n) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", root, target);
  if (mkdir(path, 0755) != 0 && errno != EEXIST) {
    perror(path);
    exit(1);
  }
  snprintf(path, sizeof path, "%s/%s/%s", root, target, name);
  FILE *f = fopen(path, "wb");
  if (f == NULL || fwrite(p, 1, n, f) != n || fclose(f) != 0) {
    perror(path);
    exit(1);
  }
}

/* A message: header for `type` with the cookie, then attrs. */
static size_t craft(uint8_t *buf, uint16_t type, const uint8_t *attrs, size_t alen) {
  static const uint8_t hdr[20] = {0, 0, 0, 0, 0x21, 0x12, 0xa4, 0x42, 1,  2,
                                  3, 4, 5, 6, 7,    8,    9,    10,   11, 12};
  memcpy(buf, hdr, 20);
  buf[0] = (uint8_t)(type >> 8);
  buf[1] = (uint8_t)type;
  buf[2] = (uint8_t)(alen >> 8);
  buf[3] = (uint8_t)alen;
  memcpy(buf + 20, attrs, alen);
  return 20 + alen;
}

static const struct {
  const char *name;
  const uint8_t *p;
  size_t len;
} vecs[] = {
    {"rfc5769-2.1", req21, sizeof req21},
    {"rfc5769-2.2", resp22, sizeof resp22},
    {"rfc5769-2.3", resp23, sizeof resp23},
    {"rfc5769-2.4", req24, sizeof req24},
    {"rfc3489-request", classic_req, sizeof classic_req},
};
#define N_VECS (sizeof vecs / sizeof vecs[0])

/* TURN over IPv6 (RFC 8656 §7.3, §18.10-18.12): an Allocate asking for
 * an IPv6 relayed address (and a dual one), its answer with two
 * XOR-RELAYED-ADDRESS, one whose IPv6 half failed, and a ChannelBind
 * toward an IPv6 peer. */
static void turn6_seeds(uint8_t *buf, size_t cap) {
  static const uint8_t tid[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  struct stun_writer w;
  struct stun_addr r4, r6;
  stun_addr_parse("198.51.100.2", 49152, &r4);
  stun_addr_parse("2001:db8::12", 49153, &r6);
  stun_writer_init(&w, buf, cap, STUN_METHOD_ALLOCATE, STUN_CLASS_REQUEST, tid, 12);
  stun_put_requested_transport(&w, STUN_TRANSPORT_UDP);
  stun_put_address_family(&w, STUN_ATTR_REQUESTED_ADDRESS_FAMILY, STUN_FAMILY_IPV6);
  stun_put_fingerprint(&w);
  put("stun_read", "turn-allocate-v6", buf, (size_t)stun_writer_finish(&w));
  stun_writer_init(&w, buf, cap, STUN_METHOD_ALLOCATE, STUN_CLASS_REQUEST, tid, 12);
  stun_put_requested_transport(&w, STUN_TRANSPORT_UDP);
  stun_put_address_family(&w, STUN_ATTR_ADDITIONAL_ADDRESS_FAMILY, STUN_FAMILY_IPV6);
  put("stun_read", "turn-allocate-dual", buf, (size_t)stun_writer_finish(&w));
  stun_writer_init(&w, buf, cap, STUN_METHOD_ALLOCATE, STUN_CLASS_SUCCESS, tid, 12);
  stun_put_addr(&w, STUN_ATTR_XOR_RELAYED_ADDRESS, &r4);
  stun_put_addr(&w, STUN_ATTR_XOR_RELAYED_ADDRESS, &r6);
  stun_put_addr(&w, STUN_ATTR_XOR_MAPPED_ADDRESS, &r6);
  stun_put_u32(&w, STUN_ATTR_LIFETIME, 600);
  put("stun_read", "turn-allocated-dual", buf, (size_t)stun_writer_finish(&w));
  stun_writer_init(&w, buf, cap, STUN_METHOD_ALLOCATE, STUN_CLASS_SUCCESS, tid, 12);
  stun_put_addr(&w, STUN_ATTR_XOR_RELAYED_ADDRESS, &r4);
  stun_put_address_error(&w, STUN_FAMILY_IPV6, 440, "Address Family not Supported");
  put("stun_read", "turn-allocated-v6-failed", buf, (size_t)stun_writer_finish(&w));
  stun_writer_init(&w, buf, cap, STUN_METHOD_CHANNEL_BIND, STUN_CLASS_REQUEST, tid, 12);
  stun_put_channel_number(&w, 0x4000);
  stun_put_addr(&w, STUN_ATTR_XOR_PEER_ADDRESS, &r6);
  put("stun_read", "turn-channel-bind-v6", buf, (size_t)stun_writer_finish(&w));
}

static void stun_seeds(void) {
  uint8_t buf[2048];
  for (size_t i = 0; i < N_VECS; i++) put("stun_read", vecs[i].name, vecs[i].p, vecs[i].len);
  /* pjnath CVE-2021-37706: ERROR-CODE shorter than its 4-byte head */
  static const uint8_t err2[] = {0x00, 0x09, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00};
  put("stun_read", "error-code-2", buf, craft(buf, 0x0111, err2, sizeof err2));
  static const uint8_t ffff[] = {0x80, 0x22, 0xff, 0xff, 'a', 'b', 'c', 'd'};
  put("stun_read", "attr-len-ffff", buf, craft(buf, 0x0001, ffff, sizeof ffff));
  put("stun_read", "header-19", req21, 19);
  size_t n = craft(buf, 0x0001, NULL, 0);
  buf[n] = 0xAA;
  put("stun_read", "trailing-1", buf, n + 1);
  turn6_seeds(buf, sizeof buf);

  /* integrity: [klen][key][flip u16][mask u8][message] */
  uint8_t in[2048];
  size_t kl = strlen(pass21);
  in[0] = (uint8_t)kl;
  memcpy(in + 1, pass21, kl);
  memcpy(in + 1 + kl, "\x00\x30\x01", 3);
  memcpy(in + 4 + kl, req21, sizeof req21);
  put("stun_integrity", "rfc5769-2.1", in, 4 + kl + sizeof req21);
  memcpy(in + 4 + kl, resp22, sizeof resp22);
  put("stun_integrity", "rfc5769-2.2", in, 4 + kl + sizeof resp22);
  uint8_t lt[16];
  stun_long_term_key(user24, strlen(user24), "example.org", 11, "TheMatrIX", 9, lt);
  in[0] = 16;
  memcpy(in + 1, lt, 16);
  memcpy(in + 17, "\x00\x10\x80", 3);
  memcpy(in + 20, req24, sizeof req24);
  put("stun_integrity", "rfc5769-2.4", in, 20 + sizeof req24);

  /* answer: [flags][outcap][ip 16][port u16][swlen][software][request] */
  static const uint8_t v4[] = {0x8f, 200, 203, 0, 113, 7, 0, 0,    0,    0, 0,
                               0,    0,   0,   0, 0,   0, 0, 0x0d, 0x96, 8};
  static const uint8_t v6[] = {0x0b, 128, 0x20, 0x01, 0x0d, 0xb8, 0, 0,    0,    0, 0,
                               0,    0,   0,    0,    0,    0,    1, 0xc3, 0x50, 8};
  struct stun_writer w;
  static const uint8_t tid[12] = {9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 1, 2};
  stun_writer_init(&w, buf, sizeof buf, STUN_METHOD_BINDING, STUN_CLASS_REQUEST, tid, 12);
  stun_put_fingerprint(&w);
  int fl = stun_writer_finish(&w);
  const struct {
    const char *name;
    const uint8_t *p;
    size_t len;
  } reqs[] = {{"rfc5769-2.1", req21, sizeof req21},
              {"rfc5769-2.4", req24, sizeof req24},
              {"rfc3489", classic_req, sizeof classic_req},
              {"binding-fp", buf, (size_t)fl}};
  for (size_t i = 0; i < sizeof reqs / sizeof reqs[0]; i++) {
    char name[64];
    for (int fam = 0; fam < 2; fam++) {
      const uint8_t *h = fam ? v6 : v4;
      memcpy(in, h, sizeof v4);
      memcpy(in + sizeof v4, "natpunch", 8);
      memcpy(in + sizeof v4 + 8, reqs[i].p, reqs[i].len);
      snprintf(name, sizeof name, "%s-%s", reqs[i].name, fam ? "v6" : "v4");
      put("stun_answer", name, in, sizeof v4 + 8 + reqs[i].len);
    }
  }
}

static void frame_seeds(void) {
  /* touch: scripts of ops (see fuzz_touch.c): send, deliver, ack back, tick */
  static const uint8_t t1[] = {0, 10, 2, 3, 0, 20, 0, 5, 1, 0, 200, 2, 2, 3, 3, 1, 3, 232};
  put("touch", "send-ack", t1, sizeof t1);
  static const uint8_t t2[] = {0, 1, 0, 2, 12, 5, 0, 2, 6, 0, 1, 1, 244, 3, 3, 1, 15, 160, 2, 3};
  put("touch", "dup-drop", t2, sizeof t2);
  uint8_t t3[4 + TOUCH_HEADER_LEN + 4] = {15, 0, 0x1f, TOUCH_HEADER_LEN + 4};
  memcpy(t3 + 4,
         "\x06\x00\x00\x00\x00\x09\x00\x00\x00\x01\x01"
         "abcd",
         TOUCH_HEADER_LEN + 4);
  put("touch", "raw-data", t3, sizeof t3);

  /* punch: a frame, and a script: two sessions, candidates, start, frames */
  punch_frame f = {.kind = PUNCH_REQUEST, .seq = 1, .tie = 0x0102030405060708ull};
  memset(f.nonce, 0x10, PUNCH_NONCE_LEN);
  uint8_t fr[PUNCH_FRAME_LEN];
  punch_build(fr, &f);
  put("punch", "request", fr, sizeof fr);
  static const uint8_t p1[] = {0, 0, 1, 2, 3, 4, 1, 4, 0, 0, 0, 0,  1, 20, 0,  0,
                               0, 1, 2, 0, 5, 4, 0, 0, 0, 1, 0, 0,  0, 9,  13, 4,
                               0, 0, 0, 1, 0, 0, 0, 9, 3, 0, 0, 50, 3, 0,  19, 136};
  put("punch", "script", p1, sizeof p1);
}

static void text_seeds(void) {
  static const char *addrs[] = {"203.0.113.7:3478",        "[2001:db8::1]:3478", "1.2.3.4.5:80",
                                "[::ffff:198.51.100.1]:0", "0.0.0.0:0",          "[::1]:65535",
                                "198.18.0.7:40312",        "[fe80::1%eth0]:1"};
  for (size_t i = 0; i < sizeof addrs / sizeof addrs[0]; i++) {
    char name[16];
    snprintf(name, sizeof name, "a%zu", i);
    put("addr", name, addrs[i], strlen(addrs[i]));
  }
  /* control messages as msg.encode writes them (keys sorted) */
  static const uint8_t reg[] = "\x01"
                               "\x02id\x00\x03"
                               "bob"
                               "\x07private\x00\x1f"
                               "198.18.0.7:40312,127.0.0.1:4031"
                               "\x01t\x00\x08"
                               "register"
                               "\x02tx\x00\x01"
                               "1";
  put("ctlmsg", "register", reg, sizeof reg - 1);
  static const uint8_t con[] = "\x01"
                               "\x01t\x00\x07"
                               "connect"
                               "\x06target\x00\x03"
                               "bob"
                               "\x02tx\x00\x01"
                               "2"
                               "\x01_\x00\x04"
                               "\0\0\0\0";
  put("ctlmsg", "connect", con, sizeof con - 1);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: mkseeds DIR\n");
    return 2;
  }
  root = argv[1];
  if (mkdir(root, 0755) != 0 && errno != EEXIST) {
    perror(root);
    return 1;
  }
  stun_seeds();
  frame_seeds();
  text_seeds();
  return 0;
}
