/*
 * wipe.c - np_wipe: overwrite secrets (keys, hash states) so they do not
 * linger on the stack.  Its own file so that the hashes and HMAC, which all
 * use it, depend on it one way (tools/cycles.lua).
 */
#include "crypto.h"

void np_wipe(void *p, size_t len) {
  /* the volatile pointer keeps the compiler from dropping the stores */
  volatile uint8_t *v = p;
  while (len--) *v++ = 0;
}
