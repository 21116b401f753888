/*
 * addr.c - socket address helpers (see addr.h).
 */
#define _POSIX_C_SOURCE 200112L

#include "addr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ::ffff:0:0/96, RFC 4291 section 2.5.5.2 */
static const uint8_t v4mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

int addr_view_of(const struct sockaddr *sa, addr_view *v) {
  *v = (addr_view){0, NULL, 0, 0};
  if (sa == NULL) return -1;
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
    v->family = AF_INET;
    v->ip = (const uint8_t *)&in->sin_addr;
    v->ip_len = 4;
    v->port = ntohs(in->sin_port);
    return 0;
  }
  if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
    const uint8_t *b = in6->sin6_addr.s6_addr;
    v->port = ntohs(in6->sin6_port);
    if (memcmp(b, v4mapped_prefix, sizeof v4mapped_prefix) == 0) {
      v->family = AF_INET;
      v->ip = b + 12;
      v->ip_len = 4;
    } else {
      v->family = AF_INET6;
      v->ip = b;
      v->ip_len = 16;
    }
    return 0;
  }
  return -1;
}

static addr_view view_of(const struct sockaddr *sa) {
  addr_view v;
  addr_view_of(sa, &v);
  return v;
}

int addr_make(int family, const uint8_t *ip, uint16_t port, struct sockaddr_storage *out) {
  memset(out, 0, sizeof *out);
  if (family == AF_INET) {
    struct sockaddr_in *in = (struct sockaddr_in *)out;
    in->sin_family = AF_INET;
    in->sin_port = htons(port);
    memcpy(&in->sin_addr, ip, 4);
    return 0;
  }
  if (family == AF_INET6) {
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)out;
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(port);
    memcpy(&in6->sin6_addr, ip, 16);
    return 0;
  }
  return -1;
}

/* Dotted quad without inet_ntop, which formats IPv4 with sprintf: this
 * runs for every datagram handed to Lua.  Same text ("%u.%u.%u.%u"). */
static int ipv4_text(const uint8_t *b, char *buf, size_t size) {
  char tmp[16], *p = tmp;
  for (int i = 0; i < 4; i++) {
    unsigned v = b[i];
    if (v >= 100) *p++ = (char)('0' + v / 100);
    if (v >= 10) *p++ = (char)('0' + v / 10 % 10);
    *p++ = (char)('0' + v % 10);
    *p++ = i < 3 ? '.' : '\0';
  }
  if ((size_t)(p - tmp) > size) return -1;
  memcpy(buf, tmp, (size_t)(p - tmp));
  return 0;
}

int addr_ip_text(const struct sockaddr *sa, char *buf, size_t size) {
  if (size > 0) buf[0] = '\0';
  if (sa == NULL || size > 0x7fffffff) return -1;
  if (sa->sa_family == AF_INET)
    return ipv4_text((const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr, buf, size);
  if (sa->sa_family != AF_INET6) return -1;
  if (inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, buf, (socklen_t)size) ==
      NULL) {
    if (size > 0) buf[0] = '\0';
    return -1;
  }
  return 0;
}

socklen_t addr_len(const struct sockaddr *sa) {
  if (sa == NULL) return 0;
  if (sa->sa_family == AF_INET) return (socklen_t)sizeof(struct sockaddr_in);
  if (sa->sa_family == AF_INET6) return (socklen_t)sizeof(struct sockaddr_in6);
  return 0;
}

uint16_t addr_port(const struct sockaddr *sa) {
  return view_of(sa).port;
}

int addr_copy(struct sockaddr_storage *dst, const struct sockaddr *src) {
  socklen_t len = addr_len(src);
  memset(dst, 0, sizeof *dst);
  if (len == 0) return -1;
  memcpy(dst, src, len);
  return 0;
}

void addr_normalize(struct sockaddr_storage *ss) {
  addr_view v = view_of((const struct sockaddr *)ss);
  if (v.family == AF_INET && ss->ss_family == AF_INET6) {
    uint8_t ip[4];
    memcpy(ip, v.ip, 4); /* v.ip points into *ss */
    addr_make(AF_INET, ip, v.port, ss);
  }
}

int addr_to_mapped(const struct sockaddr *sa, struct sockaddr_storage *out) {
  addr_view v = view_of(sa);
  if (v.family == AF_INET) {
    uint8_t ip[16];
    memcpy(ip, v4mapped_prefix, sizeof v4mapped_prefix);
    memcpy(ip + 12, v.ip, 4);
    return addr_make(AF_INET6, ip, v.port, out);
  }
  return addr_copy(out, sa);
}

int addr_equal(const struct sockaddr *a, const struct sockaddr *b) {
  addr_view va = view_of(a), vb = view_of(b);
  return va.family != 0 && va.family == vb.family && va.port == vb.port &&
         memcmp(va.ip, vb.ip, va.ip_len) == 0;
}

/* FNV-1a (32-bit) over family, port and address bytes, then the murmur3
 * finalizer so that nearby ports land in unrelated buckets. */
uint32_t addr_hash(const struct sockaddr *sa, uint32_t seed) {
  addr_view v = view_of(sa);
  uint32_t h = 2166136261u ^ seed;
  uint8_t head[3] = {(uint8_t)v.family, (uint8_t)(v.port >> 8), (uint8_t)v.port};
  for (size_t i = 0; i < sizeof head; i++) h = (h ^ head[i]) * 16777619u;
  for (size_t i = 0; i < v.ip_len; i++) h = (h ^ v.ip[i]) * 16777619u;
  h ^= h >> 16;
  h *= 0x85ebca6bu;
  h ^= h >> 13;
  h *= 0xc2b2ae35u;
  h ^= h >> 16;
  return h;
}

int addr_to_text(const struct sockaddr *sa, char *buf, size_t size) {
  char ip[INET6_ADDRSTRLEN];
  if (size > 0) buf[0] = '\0';
  if (addr_ip_text(sa, ip, sizeof ip) < 0) return -1;
  unsigned port = sa->sa_family == AF_INET ? ntohs(((const struct sockaddr_in *)sa)->sin_port)
                                           : ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
  int n = snprintf(buf, size, sa->sa_family == AF_INET ? "%s:%u" : "[%s]:%u", ip, port);
  if (n < 0 || (size_t)n >= size) {
    if (size > 0) buf[0] = '\0';
    return -1;
  }
  return n;
}

int addr_from_ip(const char *ip, uint16_t port, struct sockaddr_storage *out) {
  uint8_t b[16];
  memset(out, 0, sizeof *out);
  if (ip == NULL) return -1;
  if (inet_pton(AF_INET, ip, b) == 1) return addr_make(AF_INET, b, port, out);
  if (inet_pton(AF_INET6, ip, b) == 1) return addr_make(AF_INET6, b, port, out);
  return -1;
}

/* Strict decimal port: 1 to 5 digits, value <= 65535, nothing after. */
static int parse_port(const char *s, uint16_t *port) {
  unsigned long v = 0;
  size_t n = 0;
  for (; s[n] != '\0'; n++) {
    if (s[n] < '0' || s[n] > '9' || n >= 5) return -1;
    v = v * 10 + (unsigned long)(s[n] - '0');
  }
  if (n == 0 || v > 65535) return -1;
  *port = (uint16_t)v;
  return 0;
}

int addr_parse(const char *text, struct sockaddr_storage *out) {
  char ip[INET6_ADDRSTRLEN];
  const char *port_text;
  size_t ip_len;
  uint16_t port;
  memset(out, 0, sizeof *out);
  if (text == NULL) return -1;
  if (text[0] == '[') {
    const char *close = strchr(text, ']');
    if (close == NULL || close[1] != ':') return -1;
    ip_len = (size_t)(close - (text + 1));
    if (ip_len == 0 || ip_len >= sizeof ip) return -1;
    memcpy(ip, text + 1, ip_len);
    ip[ip_len] = '\0';
    if (strchr(ip, ':') == NULL) return -1; /* brackets are for IPv6 only */
    port_text = close + 2;
  } else {
    const char *colon = strrchr(text, ':');
    if (colon == NULL) return -1;
    ip_len = (size_t)(colon - text);
    if (ip_len == 0 || ip_len >= sizeof ip) return -1;
    memcpy(ip, text, ip_len);
    ip[ip_len] = '\0';
    if (strchr(ip, ':') != NULL) return -1; /* bare IPv6 needs brackets */
    port_text = colon + 1;
  }
  if (parse_port(port_text, &port) != 0) return -1;
  return addr_from_ip(ip, port, out);
}

static int ipv4_is_private(const uint8_t *b) {
  return b[0] == 10 ||                           /* RFC 1918 */
         (b[0] == 172 && (b[1] & 0xf0) == 16) || /* RFC 1918 */
         (b[0] == 192 && b[1] == 168) ||         /* RFC 1918 */
         (b[0] == 100 && (b[1] & 0xc0) == 64) || /* RFC 6598 */
         (b[0] == 169 && b[1] == 254) ||         /* RFC 3927 */
         b[0] == 127 ||                          /* RFC 1122 */
         (b[0] == 198 && (b[1] & 0xfe) == 18);   /* RFC 2544 */
}

int addr_is_private(const struct sockaddr *sa) {
  static const uint8_t loopback6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  addr_view v = view_of(sa);
  if (v.family == AF_INET) return ipv4_is_private(v.ip);
  if (v.family == AF_INET6) {
    return (v.ip[0] & 0xfe) == 0xfc ||                      /* RFC 4193 ULA */
           (v.ip[0] == 0xfe && (v.ip[1] & 0xc0) == 0x80) || /* RFC 4291 link-local */
           memcmp(v.ip, loopback6, 16) == 0;
  }
  return 0;
}
