/*
 * fuzz_addr.c - endpoint text parsing (addr_parse, addr_from_ip,
 * stun_addr_parse) and the helpers that must agree with it.
 *
 * Invariants: a parsed address formats to text that parses back to an
 * equal address and formats the same again; addr_equal and addr_hash treat
 * an IPv4 address and its IPv4-mapped IPv6 form as one endpoint; the STUN
 * and socket-address parsers accept the same IP texts; a failed parse
 * leaves a zeroed result.
 */
#include "addr.h"
#include "fuzz.h"
#include "stun.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

static int all_zero(const void *p, size_t n) {
  const uint8_t *b = p;
  for (size_t i = 0; i < n; i++)
    if (b[i]) return 0;
  return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t len) {
  char text[256];
  if (len >= sizeof text) len = sizeof text - 1;
  memcpy(text, in, len);
  text[len] = '\0';

  struct sockaddr_storage a, b;
  if (addr_parse(text, &a) == 0) {
    char t1[ADDR_TEXT_MAX], t2[ADDR_TEXT_MAX];
    FUZZ_ASSERT(a.ss_family == AF_INET || a.ss_family == AF_INET6);
    int n1 = addr_to_text((struct sockaddr *)&a, t1, sizeof t1);
    FUZZ_ASSERT(n1 > 0 && (size_t)n1 < sizeof t1);
    FUZZ_ASSERT(addr_parse(t1, &b) == 0);
    FUZZ_ASSERT(addr_equal((struct sockaddr *)&a, (struct sockaddr *)&b));
    FUZZ_ASSERT(addr_hash((struct sockaddr *)&a, 7) == addr_hash((struct sockaddr *)&b, 7));
    FUZZ_ASSERT(addr_to_text((struct sockaddr *)&b, t2, sizeof t2) == n1 && strcmp(t1, t2) == 0);
    FUZZ_ASSERT(addr_len((struct sockaddr *)&a) > 0);
    /* the same endpoint as IPv4-mapped IPv6 */
    if (a.ss_family == AF_INET) {
      struct sockaddr_in *v4 = (struct sockaddr_in *)&a;
      struct sockaddr_in6 m;
      memset(&m, 0, sizeof m);
      m.sin6_family = AF_INET6;
      m.sin6_port = v4->sin_port;
      m.sin6_addr.s6_addr[10] = m.sin6_addr.s6_addr[11] = 0xff;
      memcpy(m.sin6_addr.s6_addr + 12, &v4->sin_addr, 4);
      FUZZ_ASSERT(addr_equal((struct sockaddr *)&a, (struct sockaddr *)&m));
      FUZZ_ASSERT(addr_hash((struct sockaddr *)&a, 9) == addr_hash((struct sockaddr *)&m, 9));
      FUZZ_ASSERT(addr_is_private((struct sockaddr *)&a) == addr_is_private((struct sockaddr *)&m));
      struct sockaddr_storage n;
      memcpy(&n, &m, sizeof m);
      memset((char *)&n + sizeof m, 0, sizeof n - sizeof m);
      addr_normalize(&n);
      FUZZ_ASSERT(n.ss_family == AF_INET &&
                  addr_equal((struct sockaddr *)&n, (struct sockaddr *)&a));
    }
    struct stun_addr sa;
    FUZZ_ASSERT(stun_addr_from_sockaddr((struct sockaddr *)&a, &sa) == 0);
    FUZZ_ASSERT(sa.port == addr_port((struct sockaddr *)&a));
  } else {
    FUZZ_ASSERT(all_zero(&a, sizeof a));
  }

  /* bare IP text: both parsers agree */
  struct stun_addr s;
  int r1 = addr_from_ip(text, 3478, &a);
  int r2 = stun_addr_parse(text, 3478, &s);
  FUZZ_ASSERT((r1 == 0) == (r2 == 0));
  if (r1 == 0) {
    char t[64];
    FUZZ_ASSERT(stun_addr_format(&s, t, sizeof t) == 0);
    FUZZ_ASSERT(stun_addr_parse(t, 3478, &s) == 0);
    struct sockaddr_storage back;
    socklen_t sl;
    FUZZ_ASSERT(stun_addr_to_sockaddr(&s, &back, &sl) == 0);
    FUZZ_ASSERT(addr_equal((struct sockaddr *)&back, (struct sockaddr *)&a));
  } else {
    FUZZ_ASSERT(all_zero(&a, sizeof a));
  }
  return 0;
}
