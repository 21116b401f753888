/*
 * check.h - the tiny harness of the plain C tests: a suite counts checks,
 * CHECK reports each failure with its place and keeps going.
 */
#ifndef NP_TEST_CHECK_H
#define NP_TEST_CHECK_H

#include <stdio.h>
#include <string.h>

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

/* An error table XX(name, value, msg) (TOUCH_ERRNO_MAP, PUNCH_ERRNO_MAP):
 * every code is negative, has its own name and a message, and a value not
 * in the table is "UNKNOWN". */
#define CHECK_ERRNO_MAP(su, MAP, errname, strerror)                                          \
  do {                                                                                       \
    static const int codes_[] = {MAP(CHECK_ERRNO_VALUE_)};                                   \
    static const char *const names_[] = {MAP(CHECK_ERRNO_NAME_)};                            \
    size_t n_ = sizeof codes_ / sizeof codes_[0];                                            \
    int ok_ = 1;                                                                             \
    for (size_t i_ = 0; i_ < n_; i_++) {                                                     \
      if (codes_[i_] >= 0 || strcmp(errname(codes_[i_]), names_[i_]) != 0 ||                 \
          strerror(codes_[i_])[0] == 0)                                                      \
        ok_ = 0;                                                                             \
      for (size_t j_ = 0; j_ < i_; j_++)                                                     \
        if (codes_[i_] == codes_[j_]) ok_ = 0;                                               \
    }                                                                                        \
    CHECK(su, ok_);                                                                          \
    CHECK(su, strcmp(errname(-9999), "UNKNOWN") == 0 && strcmp(errname(0), "UNKNOWN") == 0); \
  } while (0)
#define CHECK_ERRNO_VALUE_(name, value, msg) value,
#define CHECK_ERRNO_NAME_(name, value, msg)  #name,

#endif
