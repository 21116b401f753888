/* "A.B.C.D:PORT" into a sockaddr_in, for the bench tools' address
 * options.  Each tool then applies its own policy on the result (loopback
 * only, port 0 allowed or not): they flood their target. */
#ifndef NATPUNCH_BENCH_IPV4_PORT_H
#define NATPUNCH_BENCH_IPV4_PORT_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* 0, or -1 when s is not an IPv4 address, a colon and a port 0..65535. */
static inline int parse_ipv4_port(const char *s, struct sockaddr_in *sa) {
  char ip[64];
  const char *colon = strrchr(s, ':');
  if (!colon || (size_t)(colon - s) >= sizeof ip) return -1;
  memcpy(ip, s, (size_t)(colon - s));
  ip[colon - s] = 0;
  char *end;
  long port = strtol(colon + 1, &end, 10);
  if (end == colon + 1 || *end || port < 0 || port > 65535) return -1;
  memset(sa, 0, sizeof *sa);
  sa->sin_family = AF_INET;
  sa->sin_port = htons((uint16_t)port);
  return inet_pton(AF_INET, ip, &sa->sin_addr) == 1 ? 0 : -1;
}

/* whether sa is in 127.0.0.0/8 */
static inline int ipv4_is_loopback(const struct sockaddr_in *sa) {
  return (ntohl(sa->sin_addr.s_addr) >> 24) == 127;
}

#endif
