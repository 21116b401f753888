/*
 * test_addr.c - addr_ip_text, which formats IPv4 itself (every datagram
 * handed to Lua goes through it): the same text as inet_ntop for every
 * value of every byte, and the short-buffer contract of addr.h (-1 and
 * buf "" when the text and its NUL do not fit).
 */
#include "addr.h"
#include "check.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

static suite su;

static struct sockaddr_storage v4(const uint8_t b[4]) {
  struct sockaddr_storage ss;
  addr_make(AF_INET, b, 9, &ss);
  return ss;
}

/* Every byte value in every position (the others 0, then 255), against
 * inet_ntop. */
static void test_ipv4_like_inet_ntop(void) {
  int same = 1;
  for (int pos = 0; pos < 4; pos++)
    for (int fill = 0; fill <= 255; fill += 255)
      for (int v = 0; v < 256; v++) {
        uint8_t b[4] = {(uint8_t)fill, (uint8_t)fill, (uint8_t)fill, (uint8_t)fill};
        b[pos] = (uint8_t)v;
        struct sockaddr_storage ss = v4(b);
        char want[INET_ADDRSTRLEN], got[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, b, want, sizeof want);
        if (addr_ip_text((struct sockaddr *)&ss, got, sizeof got) != 0 || strcmp(got, want) != 0)
          same = 0;
      }
  CHECK(&su, same);
}

static void test_ipv4_short_buffer(void) {
  static const uint8_t b[4] = {203, 0, 113, 7};
  struct sockaddr_storage ss = v4(b);
  char buf[32];
  CHECK(&su, addr_ip_text((struct sockaddr *)&ss, buf, 12) == 0 && strcmp(buf, "203.0.113.7") == 0);
  memset(buf, 'x', sizeof buf);
  CHECK(&su, addr_ip_text((struct sockaddr *)&ss, buf, 11) == -1 && buf[0] == '\0');
  CHECK(&su, buf[1] == 'x'); /* nothing written past what it was given */
  CHECK(&su, addr_ip_text((struct sockaddr *)&ss, buf, 0) == -1 && buf[1] == 'x');
  static const uint8_t top[4] = {255, 255, 255, 255};
  ss = v4(top);
  CHECK(&su, addr_ip_text((struct sockaddr *)&ss, buf, INET_ADDRSTRLEN) == 0 &&
                 strcmp(buf, "255.255.255.255") == 0);
}

static void test_ipv6_and_others(void) {
  static const uint8_t b6[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 1};
  struct sockaddr_storage ss;
  addr_make(AF_INET6, b6, 9, &ss);
  char buf[INET6_ADDRSTRLEN];
  CHECK(&su, addr_ip_text((struct sockaddr *)&ss, buf, sizeof buf) == 0 &&
                 strcmp(buf, "2001:db8::1") == 0);
  CHECK(&su, addr_ip_text((struct sockaddr *)&ss, buf, 5) == -1 && buf[0] == '\0');
  memset(&ss, 0, sizeof ss);
  ss.ss_family = AF_UNIX;
  CHECK(&su, addr_ip_text((struct sockaddr *)&ss, buf, sizeof buf) == -1 && buf[0] == '\0');
  CHECK(&su, addr_ip_text(NULL, buf, sizeof buf) == -1);
}

int main(void) {
  test_ipv4_like_inet_ntop();
  test_ipv4_short_buffer();
  test_ipv6_and_others();
  printf("%d passed, %d failed\n", su.passed, su.failed);
  return su.failed != 0;
}
