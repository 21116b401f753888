/*
 * fuzz_stun_read.c - the STUN decoder (stun_read) and the header checks
 * that share its rules (stun_is_stun, stun_frame_size).
 *
 * Invariants: no read outside the exact-size copy (ASan); every byte run
 * the decoder returns lies inside the message; an accepted message has the
 * size its header says, and the other two header functions agree with it;
 * every error is one of the named codes; text attributes stay within their
 * RFC caps.  The TURN XOR addresses (IPv4 and IPv6, RFC 8656 §18.3,
 * §18.5) written again with the message's own transaction id read back
 * the same: the writer's XOR undoes the reader's.
 */
#include "fuzz.h"
#include "stun.h"

#include <string.h>

/* The decoded XOR addresses, written into a message with the same header
 * and decoded again: equal, including the second relayed address. */
static void xor_round_trip(const struct stun_msg *m) {
  uint8_t buf[256];
  struct stun_writer w;
  struct stun_msg back;
  stun_writer_init(&w, buf, sizeof buf, m->method, m->cls, m->tid, m->tid_len);
  if (m->has & STUN_HAS_XOR_PEER) stun_put_addr(&w, STUN_ATTR_XOR_PEER_ADDRESS, &m->xor_peer);
  if (m->has & STUN_HAS_XOR_RELAYED)
    stun_put_addr(&w, STUN_ATTR_XOR_RELAYED_ADDRESS, &m->xor_relayed);
  if (m->n_relayed == 2) stun_put_addr(&w, STUN_ATTR_XOR_RELAYED_ADDRESS, &m->xor_relayed2);
  int n = stun_writer_finish(&w);
  FUZZ_ASSERT(n > 0);
  FUZZ_ASSERT(stun_read(buf, (size_t)n, &back) == 0);
  FUZZ_ASSERT(back.n_relayed == m->n_relayed);
  if (m->has & STUN_HAS_XOR_PEER)
    FUZZ_ASSERT(memcmp(&back.xor_peer, &m->xor_peer, sizeof back.xor_peer) == 0);
  if (m->has & STUN_HAS_XOR_RELAYED)
    FUZZ_ASSERT(memcmp(&back.xor_relayed, &m->xor_relayed, sizeof back.xor_relayed) == 0);
  if (m->n_relayed == 2)
    FUZZ_ASSERT(memcmp(&back.xor_relayed2, &m->xor_relayed2, sizeof back.xor_relayed2) == 0);
}

static void inside(const uint8_t *data, size_t len, struct stun_bytes b) {
  if (b.len == 0) return;
  FUZZ_ASSERT(b.ptr >= data && b.ptr + b.len <= data + len);
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t len) {
  uint8_t *data = fuzz_dup(in, len);
  struct stun_msg m;
  int r = stun_read(data, len, &m);
  FUZZ_ASSERT(r <= 0);
  FUZZ_ASSERT(strcmp(stun_errname(r), "UNKNOWN") != 0 || r == 0);
  long fs = stun_frame_size(data, len);
  if (r == 0) {
    FUZZ_ASSERT(m.size == len);
    FUZZ_ASSERT(fs == (long)len);
    FUZZ_ASSERT(m.tid_len == STUN_TID_SIZE || m.tid_len == STUN_CLASSIC_TID_SIZE);
    FUZZ_ASSERT(stun_type(m.method, m.cls) == m.type);
    if (data[0] <= 3) FUZZ_ASSERT(stun_is_stun(data, len));
    inside(data, len, m.username);
    inside(data, len, m.software);
    inside(data, len, m.realm);
    inside(data, len, m.nonce);
    inside(data, len, m.error_reason);
    FUZZ_ASSERT(m.username.len <= STUN_MAX_USERNAME);
    FUZZ_ASSERT(m.realm.len <= STUN_MAX_TEXT && m.nonce.len <= STUN_MAX_TEXT);
    FUZZ_ASSERT(m.software.len <= STUN_MAX_TEXT && m.error_reason.len <= STUN_MAX_TEXT);
    FUZZ_ASSERT(m.n_unknown_attributes <= STUN_MAX_LISTED);
    if (m.has & STUN_HAS_ERROR_CODE) FUZZ_ASSERT(m.error_code >= 100 && m.error_code <= 699);
    inside(data, len, m.address_error_reason);
    FUZZ_ASSERT(m.address_error_reason.len <= STUN_MAX_TEXT);
    if (m.has & STUN_HAS_ADDRESS_ERROR)
      FUZZ_ASSERT(m.address_error_code >= 300 && m.address_error_code <= 699);
    FUZZ_ASSERT(m.n_relayed <= 2 && ((m.has & STUN_HAS_XOR_RELAYED) != 0) == (m.n_relayed > 0));
    if (!m.classic) xor_round_trip(&m);
    if (m.has & STUN_HAS_INTEGRITY)
      FUZZ_ASSERT(m.mi_offset >= STUN_HEADER_SIZE && m.mi_offset + 4 + STUN_MI_SIZE <= len);
    if (m.has & STUN_HAS_INTEGRITY_SHA256)
      FUZZ_ASSERT(m.mi256_offset >= STUN_HEADER_SIZE && m.mi256_offset + 4 + m.mi256_len <= len);
  } else {
    if (stun_is_stun(data, len)) FUZZ_ASSERT(r != STUN_ETRUNCATED && r != STUN_ETRAILING);
  }
  /* A stream reader sees the message arrive byte by byte. */
  for (size_t cut = 0; cut < len && cut < 24; cut++) {
    long f = stun_frame_size(data, cut);
    FUZZ_ASSERT(cut < STUN_HEADER_SIZE ? f == 0 : (f < 0 || f >= STUN_HEADER_SIZE));
  }
  free(data);
  return 0;
}
