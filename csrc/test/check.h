/*
 * check.h - the tiny harness of the plain C tests: a suite counts checks,
 * CHECK reports each failure with its place and keeps going.
 */
#ifndef NP_TEST_CHECK_H
#define NP_TEST_CHECK_H

#include <stdio.h>

typedef struct suite {
  int passed, failed;
} suite;

#define CHECK(su, cond) check((su), (cond), #cond, __FILE__, __LINE__)

static inline int check(suite *su, int ok, const char *what, const char *file, int line) {
  if (ok) {
    su->passed++;
  } else {
    su->failed++;
    printf("FAIL %s:%d: %s\n", file, line, what);
  }
  return ok;
}

#endif
