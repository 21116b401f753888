/*
 * addr.h - helpers on socket addresses (IPv4 and IPv6 UDP endpoints).
 *
 * Functions take `const struct sockaddr *` so they accept what libuv hands
 * to a receive callback as well as a cast `struct sockaddr_storage *`.
 *
 * An IPv4-mapped IPv6 address (::ffff:a.b.c.d, what a dual-stack socket
 * reports for an IPv4 peer) is the same endpoint as a.b.c.d: addr_equal()
 * and addr_hash() agree on that, so a candidate learned as "1.2.3.4:5" still
 * matches a datagram received from "[::ffff:1.2.3.4]:5".  IPv6 scope ids are
 * ignored.
 */
#ifndef NATPUNCH_ADDR_H
#define NATPUNCH_ADDR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* "[" + INET6_ADDRSTRLEN-1 (45) + "]:" + "65535" + NUL */
#define ADDR_TEXT_MAX 56

/* The endpoint an address names, an IPv4-mapped IPv6 address seen as the
 * IPv4 one it carries (the rule above).  ip points into the sockaddr. */
typedef struct addr_view {
  int family;        /* AF_INET, AF_INET6, or 0 */
  const uint8_t *ip; /* 4 or 16 bytes */
  size_t ip_len;
  uint16_t port; /* host order */
} addr_view;

/* The one converter between socket addresses and (family, ip bytes, port):
 * addr_view_of returns 0, or -1 (v zeroed) for another family; addr_make
 * builds an AF_INET (4-byte ip) or AF_INET6 (16-byte ip) address, 0 or -1. */
int addr_view_of(const struct sockaddr *sa, addr_view *v);
int addr_make(int family, const uint8_t *ip, uint16_t port, struct sockaddr_storage *out);

/* The numeric IP text alone ("1.2.3.4", "2001:db8::1", an IPv4-mapped
 * address as "::ffff:1.2.3.4"): 0, or -1 (buf "") on an unknown family or a
 * short buffer. */
int addr_ip_text(const struct sockaddr *sa, char *buf, size_t size);

/* Length to pass to sendto()/bind() for this address, 0 if the family is
 * neither AF_INET nor AF_INET6. */
socklen_t addr_len(const struct sockaddr *sa);

/* Port in host order, 0 for an unknown family. */
uint16_t addr_port(const struct sockaddr *sa);

/* Copy an AF_INET/AF_INET6 address into *dst (zero-filled first).  Returns 0,
 * or -1 (dst zeroed) for another family. */
int addr_copy(struct sockaddr_storage *dst, const struct sockaddr *src);

/* Rewrite an IPv4-mapped IPv6 address as the AF_INET address it carries;
 * other addresses are left as they are. */
void addr_normalize(struct sockaddr_storage *ss);

/* The other way, for a dual-stack (AF_INET6, not IPV6_V6ONLY) socket: an
 * AF_INET address as the IPv4-mapped AF_INET6 one; another address is
 * copied as it is.  Returns 0, or -1 (out zeroed) for an unknown family. */
int addr_to_mapped(const struct sockaddr *sa, struct sockaddr_storage *out);

/* 1 if family, ip and port are equal (after the IPv4-mapped rule above). */
int addr_equal(const struct sockaddr *a, const struct sockaddr *b);

/* Hash for a hash map keyed by endpoint, consistent with addr_equal().
 * `seed` lets a table pick its own secret so that remote peers cannot aim
 * all their addresses at one bucket. */
uint32_t addr_hash(const struct sockaddr *sa, uint32_t seed);

/* "1.2.3.4:5" or "[2001:db8::1]:5" into buf.  Returns the length written
 * (without NUL), or -1 if the family is unknown or buf is too small (buf is
 * then set to "" when size > 0). */
int addr_to_text(const struct sockaddr *sa, char *buf, size_t size);

/* Parse "1.2.3.4:5" or "[2001:db8::1]:5" (port 0..65535, decimal).  Returns
 * 0, or -1 on any syntax error (out is then zeroed). */
int addr_parse(const char *text, struct sockaddr_storage *out);

/* Build an address from numeric ip text ("1.2.3.4" or "2001:db8::1", no
 * brackets) and a port.  Returns 0 or -1. */
int addr_from_ip(const char *ip, uint16_t port, struct sockaddr_storage *out);

/* 1 if the address is not globally routable and so labels a "private" path:
 * IPv4 10/8, 172.16/12, 192.168/16 (RFC 1918), 100.64/10 (RFC 6598 shared
 * CGN space), 169.254/16 (RFC 3927 link-local), 127/8 (loopback),
 * 198.18/15 (RFC 2544 benchmarking, natpunch's lab LANs); IPv6 fc00::/7
 * (RFC 4193 ULA), fe80::/10 (link-local), ::1; an IPv4-mapped address by its
 * IPv4 part.  0 otherwise (including unknown families). */
int addr_is_private(const struct sockaddr *sa);

#endif
