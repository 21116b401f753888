/*
 * ctlmsg.h - a C port of the control-message decoder of
 * lua/natpunch/msg.lua (frame 0x04, docs/PROTOCOL.md "Control messages"),
 * for fuzzing.  The rendezvous and peers decode in Lua; this port follows
 * msg.decode step for step (same limits, same order of checks, same reason
 * strings) and spec/fuzz_spec.lua checks that both give the same result on
 * the same inputs, so what the fuzzer finds here holds for the Lua parser.
 *
 * Body: [version u8 = 1] then up to CTLMSG_MAX_FIELDS pairs of
 *   [key: u8 length + bytes][value: u16 length (big-endian) + bytes]
 * A later field with the same key replaces an earlier one; "t" (the message
 * type) must be there; the padding field "_" is dropped.
 */
#ifndef NP_CTLMSG_H
#define NP_CTLMSG_H

#include <stddef.h>
#include <stdint.h>

#define CTLMSG_VERSION    1
#define CTLMSG_MAX_SIZE   1200 /* msg.MAX_SIZE */
#define CTLMSG_MAX_FIELDS 32   /* msg.MAX_FIELDS */

typedef struct ctlmsg_field {
  const uint8_t *key, *value; /* into the decoded body */
  size_t key_len, value_len;
} ctlmsg_field;

typedef struct ctlmsg {
  ctlmsg_field fields[CTLMSG_MAX_FIELDS];
  size_t n; /* distinct keys, "_" removed */
} ctlmsg;

/* 0, or -1 with *reason set to msg.decode's reason ("bad size",
 * "unsupported version", "too many fields", "truncated field",
 * "no message type"). */
int ctlmsg_decode(const uint8_t *body, size_t len, ctlmsg *out, const char **reason);

/* The field with this key, or NULL. */
const ctlmsg_field *ctlmsg_get(const ctlmsg *m, const char *key);

#endif
