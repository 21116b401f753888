/*
 * ctlmsg.c - the control-message decoder, ported from msg.decode in
 * lua/natpunch/msg.lua (see ctlmsg.h).
 */
#include "ctlmsg.h"

#include <string.h>

static int key_is(const ctlmsg_field *f, const char *key) {
  size_t n = strlen(key);
  return f->key_len == n && memcmp(f->key, key, n) == 0;
}

static int same_key(const ctlmsg_field *a, const uint8_t *key, size_t len) {
  return a->key_len == len && memcmp(a->key, key, len) == 0;
}

const ctlmsg_field *ctlmsg_get(const ctlmsg *m, const char *key) {
  for (size_t i = 0; i < m->n; i++)
    if (key_is(&m->fields[i], key)) return &m->fields[i];
  return NULL;
}

static int fail(const char **reason, const char *why) {
  if (reason) *reason = why;
  return -1;
}

int ctlmsg_decode(const uint8_t *body, size_t len, ctlmsg *m, const char **reason) {
  memset(m, 0, sizeof *m);
  if (body == NULL) return fail(reason, "not a string");
  if (len < 1 || len > CTLMSG_MAX_SIZE) return fail(reason, "bad size");
  if (body[0] != CTLMSG_VERSION) return fail(reason, "unsupported version");
  size_t pos = 1, count = 0;
  while (pos < len) {
    if (++count > CTLMSG_MAX_FIELDS) return fail(reason, "too many fields");
    /* string.unpack(">s1s2"): u8 length, key, u16 length, value */
    size_t klen = body[pos];
    if (len - pos - 1 < klen) return fail(reason, "truncated field");
    const uint8_t *key = body + pos + 1;
    pos += 1 + klen;
    if (len - pos < 2) return fail(reason, "truncated field");
    size_t vlen = (size_t)body[pos] << 8 | body[pos + 1];
    if (len - pos - 2 < vlen) return fail(reason, "truncated field");
    const uint8_t *value = body + pos + 2;
    pos += 2 + vlen;
    size_t i = 0;
    while (i < m->n && !same_key(&m->fields[i], key, klen)) i++;
    if (i == m->n) m->n++; /* count <= MAX_FIELDS keeps i in range */
    m->fields[i] = (ctlmsg_field){key, value, klen, vlen};
  }
  if (ctlmsg_get(m, "t") == NULL) return fail(reason, "no message type");
  for (size_t i = 0; i < m->n; i++) {
    if (key_is(&m->fields[i], "_")) {
      m->fields[i] = m->fields[m->n - 1];
      m->n--;
      break;
    }
  }
  return 0;
}
