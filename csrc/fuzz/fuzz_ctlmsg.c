/*
 * fuzz_ctlmsg.c - control messages (frame 0x04), through ctlmsg.c, the C
 * port of msg.decode (lua/natpunch/msg.lua) that spec/fuzz_spec.lua checks
 * against the Lua decoder.
 *
 * Invariants: every field lies inside the body; keys are distinct, "_" is
 * gone and "t" is there; at most CTLMSG_MAX_FIELDS; a decoded message
 * encoded again the way msg.encode does (version, fields sorted by key)
 * decodes to the same fields, and its encoding is canonical (encoding
 * that again gives the same bytes).
 */
#include "ctlmsg.h"
#include "fuzz.h"

#include <string.h>

static int cmp_field(const void *x, const void *y) {
  const ctlmsg_field *a = x, *b = y;
  size_t n = a->key_len < b->key_len ? a->key_len : b->key_len;
  int c = memcmp(a->key, b->key, n);
  if (c != 0) return c;
  return a->key_len < b->key_len ? -1 : a->key_len > b->key_len;
}

/* msg.encode without padding; returns the length. */
static size_t encode(const ctlmsg *m, uint8_t *out) {
  ctlmsg_field sorted[CTLMSG_MAX_FIELDS];
  memcpy(sorted, m->fields, m->n * sizeof *sorted);
  qsort(sorted, m->n, sizeof *sorted, cmp_field);
  size_t n = 0;
  out[n++] = CTLMSG_VERSION;
  for (size_t i = 0; i < m->n; i++) {
    out[n++] = (uint8_t)sorted[i].key_len;
    memcpy(out + n, sorted[i].key, sorted[i].key_len);
    n += sorted[i].key_len;
    out[n++] = (uint8_t)(sorted[i].value_len >> 8);
    out[n++] = (uint8_t)sorted[i].value_len;
    memcpy(out + n, sorted[i].value, sorted[i].value_len);
    n += sorted[i].value_len;
  }
  return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t len) {
  uint8_t *body = fuzz_dup(in, len);
  ctlmsg m, m2;
  const char *why = NULL;
  if (ctlmsg_decode(body, len, &m, &why) == 0) {
    FUZZ_ASSERT(m.n <= CTLMSG_MAX_FIELDS);
    FUZZ_ASSERT(ctlmsg_get(&m, "t") != NULL && ctlmsg_get(&m, "_") == NULL);
    for (size_t i = 0; i < m.n; i++) {
      const ctlmsg_field *f = &m.fields[i];
      FUZZ_ASSERT(f->key >= body && f->key + f->key_len <= body + len);
      FUZZ_ASSERT(f->value >= body && f->value + f->value_len <= body + len);
      for (size_t j = i + 1; j < m.n; j++) FUZZ_ASSERT(cmp_field(f, &m.fields[j]) != 0);
    }
    static uint8_t enc[CTLMSG_MAX_SIZE], enc2[CTLMSG_MAX_SIZE];
    size_t n = encode(&m, enc);
    FUZZ_ASSERT(n <= len);
    FUZZ_ASSERT(ctlmsg_decode(enc, n, &m2, &why) == 0);
    FUZZ_ASSERT(m2.n == m.n);
    for (size_t i = 0; i < m.n; i++) {
      char key[256];
      memcpy(key, m.fields[i].key, m.fields[i].key_len);
      key[m.fields[i].key_len] = '\0';
      if (strlen(key) != m.fields[i].key_len) continue; /* a NUL inside: ctlmsg_get can't name it */
      const ctlmsg_field *g = ctlmsg_get(&m2, key);
      FUZZ_ASSERT(g && g->value_len == m.fields[i].value_len &&
                  memcmp(g->value, m.fields[i].value, g->value_len) == 0);
    }
    FUZZ_ASSERT(encode(&m2, enc2) == n && memcmp(enc, enc2, n) == 0);
  } else {
    FUZZ_ASSERT(why != NULL);
  }
  free(body);
  return 0;
}
