/*
 * ctlmsg_dump.c - decodes control messages with ctlmsg.c for the
 * differential spec (spec/fuzz_spec.lua), which decodes the same bodies
 * with msg.decode and compares.
 *
 * stdin: records [u16 big-endian length][body]; stdout: one line per
 * record, "ok" and the fields as " hexkey=hexvalue" sorted by key, or
 * "err " and the reason.
 */
#include "ctlmsg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void hex(char *out, const uint8_t *p, size_t n) {
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = digits[p[i] >> 4];
    out[2 * i + 1] = digits[p[i] & 15];
  }
  out[2 * n] = '\0';
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(void) {
  static uint8_t body[65536];
  int hi, lo;
  while ((hi = getchar()) != EOF && (lo = getchar()) != EOF) {
    size_t len = (size_t)hi << 8 | (size_t)lo;
    if (fread(body, 1, len, stdin) != len) return 1;
    ctlmsg m;
    const char *why;
    if (ctlmsg_decode(body, len, &m, &why) != 0) {
      printf("err %s\n", why);
      continue;
    }
    char *lines[CTLMSG_MAX_FIELDS];
    for (size_t i = 0; i < m.n; i++) {
      const ctlmsg_field *f = &m.fields[i];
      lines[i] = malloc(2 * f->key_len + 2 * f->value_len + 2);
      if (lines[i] == NULL) return 1;
      hex(lines[i], f->key, f->key_len);
      strcat(lines[i], "=");
      hex(lines[i] + 2 * f->key_len + 1, f->value, f->value_len);
    }
    qsort(lines, m.n, sizeof *lines, cmp_str);
    fputs("ok", stdout);
    for (size_t i = 0; i < m.n; i++) {
      printf(" %s", lines[i]);
      free(lines[i]);
    }
    putchar('\n');
  }
  return 0;
}
