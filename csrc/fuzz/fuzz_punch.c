/*
 * fuzz_punch.c - punch frames (connectivity checks, punch.h) and the set of
 * sessions that routes them.
 *
 * The input is a script: create/remove sessions (four nonces, so frames
 * meet their session), add candidates from a pool of IPv4, IPv6 and
 * IPv4-mapped addresses, start, advance time, and feed frames that are
 * either raw fuzzer bytes or built from fuzzed fields, from pool addresses.
 * Invariants: a frame that parses rebuilds to the same 22 bytes; every
 * TRANSMIT is a well-formed frame of its own session to an address of a
 * known family; SUCCEEDED only from a session that says so, with the
 * selected address; the early-request verifier sees the frame and at most
 * PUNCH_TAG_MAX bytes after it; nothing crashes or leaks.
 */
#include "fuzz.h"
#include "punch.h"
#include "wire.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#define POOL 8

static struct sockaddr_storage pool[POOL];

static void init_pool(void) {
  static int done;
  if (done) return;
  done = 1;
  for (int i = 0; i < POOL; i++) {
    memset(&pool[i], 0, sizeof pool[i]);
    if (i < 4) {
      struct sockaddr_in *a = (struct sockaddr_in *)&pool[i];
      a->sin_family = AF_INET;
      a->sin_port = htons((uint16_t)(40000 + i));
      a->sin_addr.s_addr = htonl(0xC6336400u + (uint32_t)(i % 2)); /* 198.51.100.0/1 */
    } else {
      struct sockaddr_in6 *a = (struct sockaddr_in6 *)&pool[i];
      a->sin6_family = AF_INET6;
      a->sin6_port = htons((uint16_t)(40000 + i % 6));
      if (i < 6) { /* ::ffff:198.51.100.x, the same endpoints as 0 and 1 */
        a->sin6_addr.s6_addr[10] = a->sin6_addr.s6_addr[11] = 0xff;
        a->sin6_addr.s6_addr[12] = 198, a->sin6_addr.s6_addr[13] = 51;
        a->sin6_addr.s6_addr[14] = 100, a->sin6_addr.s6_addr[15] = (uint8_t)(i - 4);
      } else { /* 2001:db8::x */
        a->sin6_addr.s6_addr[0] = 0x20, a->sin6_addr.s6_addr[1] = 0x01;
        a->sin6_addr.s6_addr[2] = 0x0d, a->sin6_addr.s6_addr[3] = 0xb8;
        a->sin6_addr.s6_addr[15] = (uint8_t)i;
      }
    }
  }
}

/* The early cache hands its verifier the frame and at most PUNCH_TAG_MAX
 * bytes after it; half of the requests pass. */
static int verify_early(void *arg, const uint8_t *frame, size_t len) {
  (void)arg;
  FUZZ_ASSERT(len >= PUNCH_FRAME_LEN && len <= PUNCH_FRAME_LEN + PUNCH_TAG_MAX);
  FUZZ_ASSERT(frame[0] == WIRE_PUNCH && frame[1] == PUNCH_REQUEST);
  return frame[len - 1] & 1;
}

static void drain(punch_set *set) {
  punch_action act;
  while (punch_set_pop(set, &act)) {
    FUZZ_ASSERT(act.session != NULL);
    if (act.kind == PUNCH_TRANSMIT) {
      punch_frame f;
      FUZZ_ASSERT(act.len == PUNCH_FRAME_LEN);
      FUZZ_ASSERT(punch_parse(act.data, act.len, &f) == PUNCH_OK);
      FUZZ_ASSERT(memcmp(f.nonce, punch_session_nonce(act.session), PUNCH_NONCE_LEN) == 0);
      FUZZ_ASSERT(act.addr.ss_family == AF_INET || act.addr.ss_family == AF_INET6);
    } else if (act.kind == PUNCH_SUCCEEDED) {
      struct sockaddr_storage sel;
      int kind;
      uint32_t rtt;
      FUZZ_ASSERT(punch_session_state(act.session) == PUNCH_STATE_SUCCEEDED);
      FUZZ_ASSERT(punch_session_selected(act.session, &sel, &kind, &rtt) == PUNCH_OK);
      FUZZ_ASSERT(sel.ss_family == AF_INET || sel.ss_family == AF_INET6);
    } else {
      FUZZ_ASSERT(act.kind == PUNCH_FAILED);
      FUZZ_ASSERT(act.reason == PUNCH_FAIL_TIMEOUT || act.reason == PUNCH_FAIL_ONE_WAY);
    }
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t len) {
  init_pool();
  /* 1. the frame codec on the input as a whole */
  punch_frame f;
  uint8_t *whole = fuzz_dup(in, len);
  if (punch_parse(whole, len, &f) == PUNCH_OK) {
    uint8_t re[PUNCH_FRAME_LEN];
    FUZZ_ASSERT(punch_build(re, &f) == PUNCH_FRAME_LEN);
    FUZZ_ASSERT(memcmp(re, whole, PUNCH_FRAME_LEN) == 0);
  }
  free(whole);

  /* 2. the input as a script */
  fuzz_in c = {in, len};
  punch_config cfg;
  punch_config_default(&cfg);
  punch_set *set = punch_set_new(3);
  FUZZ_ASSERT(set != NULL);
  uint64_t now = 1000;
  uint8_t nonces[4][PUNCH_NONCE_LEN];
  for (int i = 0; i < 4; i++) memset(nonces[i], 0x10 * (i + 1), PUNCH_NONCE_LEN);
  for (int step = 0; step < 2048 && c.left > 0; step++) {
    uint8_t op = fuzz_u8(&c);
    uint8_t arg = fuzz_u8(&c);
    punch_session *s = punch_set_find(set, nonces[arg % 4]);
    switch (op % 7) {
    case 0: {
      int err = 0;
      if (s == NULL && (op & 8))
        punch_set_add_verified(set, now, &cfg, nonces[arg % 4], fuzz_u32(&c), verify_early, NULL,
                               &err);
      else if (s == NULL)
        punch_set_add(set, now, &cfg, nonces[arg % 4], fuzz_u32(&c), &err);
      break;
    }
    case 1:
      if (s)
        punch_session_add_candidate(s, now, (struct sockaddr *)&pool[(arg >> 2) % POOL],
                                    (punch_cand_kind)((arg >> 5) % 4), fuzz_u32(&c));
      break;
    case 2:
      if (s) punch_session_start(s, now);
      break;
    case 3:
      now += fuzz_u16(&c) % 3000;
      punch_set_tick(set, now);
      break;
    case 4: {
      size_t n;
      const uint8_t *raw = fuzz_bytes(&c, arg % 40, &n);
      uint8_t *fr = fuzz_dup(raw, n);
      if (n > 0 && (op & 8)) fr[0] = WIRE_PUNCH;
      punch_set_input(set, now, (struct sockaddr *)&pool[op % POOL], fr, n);
      free(fr);
      break;
    }
    case 5: {
      punch_frame g = {.kind = (uint8_t)((op >> 3) & 1), .seq = fuzz_u32(&c), .tie = fuzz_u32(&c)};
      if (op & 0x40) g.tie |= (uint64_t)fuzz_u32(&c) << 32;
      memcpy(g.nonce, nonces[arg % 4], PUNCH_NONCE_LEN);
      uint8_t fr[PUNCH_FRAME_LEN];
      punch_build(fr, &g);
      punch_set_input(set, now, (struct sockaddr *)&pool[(arg >> 2) % POOL], fr, sizeof fr);
      break;
    }
    case 6:
      if (s && (op & 8)) punch_set_remove(set, s);
      break;
    }
    drain(set);
    FUZZ_ASSERT(punch_set_count(set) <= 3);
  }
  punch_set_free(set);
  return 0;
}
