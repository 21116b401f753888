/*
 * fuzz_stun_answer.c - the server's Binding fast path
 * (stun_answer_binding_ex), what a rendezvous runs on every STUN datagram.
 *
 * Input: [flags u8][outcap u8][source address 16 bytes][port u16]
 *        [software length u8][software][request].
 * Invariants: never answers a non-request; an answer is no longer than
 * STUN_ANSWER_MAX or the buffer; it is a Binding success or error response
 * for the same transaction that decodes with stun_read; a success tells the
 * source its own address; and every byte of it is written (CVE-2020-4067
 * class: the answer is computed into buffers pre-filled with two patterns,
 * which must come out identical, with nothing written past the answer).
 */
#include "fuzz.h"
#include "stun.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

static void make_addr(struct sockaddr_storage *ss, int v6, const uint8_t ip[16], uint16_t port) {
  memset(ss, 0, sizeof *ss);
  if (v6) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(port);
    memcpy(&a->sin6_addr, ip, 16);
  } else {
    struct sockaddr_in *a = (struct sockaddr_in *)ss;
    a->sin_family = AF_INET;
    a->sin_port = htons(port);
    memcpy(&a->sin_addr, ip, 4);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t len) {
  fuzz_in c = {in, len};
  uint8_t flags = fuzz_u8(&c);
  size_t outcap = fuzz_u8(&c);
  if (flags & 0x80) outcap = 512; /* half of the inputs get plenty of room */
  uint8_t ip[16] = {0};
  size_t got;
  memcpy(ip, fuzz_bytes(&c, 16, &got), got);
  uint16_t port = fuzz_u16(&c);
  size_t swlen;
  const uint8_t *sw = fuzz_bytes(&c, fuzz_u8(&c) % 96, &swlen);
  char software[96];
  memcpy(software, sw, swlen);
  software[swlen] = '\0';
  size_t rlen;
  const uint8_t *rq = fuzz_bytes(&c, c.left, &rlen);
  uint8_t *req = fuzz_dup(rq, rlen);

  struct sockaddr_storage from, origin, other;
  make_addr(&from, flags & 1, ip, port);
  make_addr(&origin, !(flags & 1), ip, (uint16_t)(port + 1));
  make_addr(&other, flags & 1, ip, (uint16_t)(port + 2));
  struct stun_answer_opts opts = {
      .software = (flags & 8) ? software : NULL,
      .origin = (flags & 2) ? (struct sockaddr *)&origin : NULL,
      .other = (flags & 4) ? (struct sockaddr *)&other : NULL,
      .flags = (flags >> 4) & 3,
  };

  uint8_t *out1 = malloc(outcap ? outcap : 1), *out2 = malloc(outcap ? outcap : 1);
  FUZZ_ASSERT(out1 && out2);
  memset(out1, 0x00, outcap);
  memset(out2, 0xA5, outcap);
  int r1 = stun_answer_binding_ex(req, rlen, (struct sockaddr *)&from, &opts, out1, outcap);
  int r2 = stun_answer_binding_ex(req, rlen, (struct sockaddr *)&from, &opts, out2, outcap);
  FUZZ_ASSERT(r1 == r2);

  struct stun_msg qm, am;
  int qr = stun_read(req, rlen, &qm);
  if (r1 > 0) {
    size_t n = (size_t)r1;
    FUZZ_ASSERT(qr == 0 && qm.cls == STUN_CLASS_REQUEST && qm.method == STUN_METHOD_BINDING);
    FUZZ_ASSERT(n <= STUN_ANSWER_MAX && n <= outcap);
    FUZZ_ASSERT(memcmp(out1, out2, n) == 0); /* every byte written */
    for (size_t i = n; i < outcap; i++)      /* and none past the end */
      FUZZ_ASSERT(out1[i] == 0x00 && out2[i] == 0xA5);
    FUZZ_ASSERT(stun_read(out1, n, &am) == 0);
    FUZZ_ASSERT(am.method == STUN_METHOD_BINDING);
    FUZZ_ASSERT(am.cls == STUN_CLASS_SUCCESS || am.cls == STUN_CLASS_ERROR);
    FUZZ_ASSERT(am.tid_len == qm.tid_len && memcmp(am.tid, qm.tid, am.tid_len) == 0);
    FUZZ_ASSERT(am.n_unknown_required == 0);
    if (qm.has & STUN_HAS_FINGERPRINT)
      FUZZ_ASSERT((am.has & STUN_HAS_FINGERPRINT) && am.fingerprint_ok);
    if (am.cls == STUN_CLASS_ERROR) {
      FUZZ_ASSERT(qm.n_unknown_required > 0 && am.error_code == 420);
    } else {
      struct stun_addr want;
      FUZZ_ASSERT(stun_addr_from_sockaddr((struct sockaddr *)&from, &want) == 0);
      const struct stun_addr *got_a = qm.classic ? &am.mapped : &am.xor_mapped;
      FUZZ_ASSERT(am.has & (qm.classic ? STUN_HAS_MAPPED : STUN_HAS_XOR_MAPPED));
      FUZZ_ASSERT(got_a->family == want.family && got_a->port == want.port);
      FUZZ_ASSERT(memcmp(got_a->ip, want.ip, want.family == STUN_FAMILY_IPV4 ? 4 : 16) == 0);
    }
  } else {
    if (qr == 0 && qm.cls != STUN_CLASS_REQUEST) FUZZ_ASSERT(r1 == STUN_ENOTREQUEST);
    if (qr < 0) FUZZ_ASSERT(r1 == qr);
  }
  free(out1);
  free(out2);
  free(req);
  return 0;
}
