/*
 * fuzz_stun_read.c - the STUN decoder (stun_read) and the header checks
 * that share its rules (stun_is_stun, stun_frame_size).
 *
 * Invariants: no read outside the exact-size copy (ASan); every byte run
 * the decoder returns lies inside the message; an accepted message has the
 * size its header says, and the other two header functions agree with it;
 * every error is one of the named codes; text attributes stay within their
 * RFC caps.
 */
#include "fuzz.h"
#include "stun.h"

#include <string.h>

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
