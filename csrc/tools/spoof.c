/*
 * spoof.c - natpunch-spoof: send UDP datagrams with forged IPv4 source
 * addresses through a raw socket, for the spoofing specs
 * (spec/spoof_spec.lua, spec/amplification_spec.lua).  Test tool only: it
 * is built by the Makefile (build/natpunch-spoof) but never installed.
 *
 *   natpunch-spoof [--max N] < LINES
 *   LINE: SRC_IP:PORT DST_IP:PORT HEX_PAYLOAD     (one datagram per line)
 *
 * Each line becomes one IPv4 + UDP packet built here (IP_HDRINCL: the
 * kernel takes the source address as given), with the UDP checksum over
 * the pseudo-header and the IP header checksum.  At the end it prints one
 * line on stdout: {"sent":N,"bytes":B} (B counts whole IP packets).
 *
 * Where it refuses to send (exit 2, nothing sent after that line):
 *   - either address outside the test ranges of docs/LAB.md: 203.0.113.0/24,
 *     198.51.100.0/24 (the lab's internet), 198.18.0.0/15 (its LANs), or
 *     127.0.0.0/8;
 *   - a destination off loopback from a network namespace that is not one
 *     of `ip netns add` (a file in /run/netns, as the lab's are): forged
 *     packets leave only inside lab namespaces;
 *   - a loopback destination with a source that is not loopback, or the
 *     other way round;
 *   - more than --max datagrams (default 100000), a payload over 1472 bytes.
 * Why by hand: raw sockets are the point, and no Debian package offers a
 * library call that builds a UDP/IPv4 packet; the checksums are RFC 768/791's
 * one's-complement sums.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_PAYLOAD  1472
#define LINE_MAX_LEN (2 * MAX_PAYLOAD + 128)

typedef struct endpoint {
  uint32_t ip; /* host order */
  uint16_t port;
} endpoint;

static int in_net(uint32_t ip, uint32_t net, int bits) {
  uint32_t mask = bits == 0 ? 0 : 0xffffffffu << (32 - bits);
  return (ip & mask) == (net & mask);
}

static int is_loopback(uint32_t ip) {
  return in_net(ip, 0x7f000000u, 8);
}

/* The address ranges the project may use (GUIDE.md, "Networks"). */
static int allowed(uint32_t ip) {
  return in_net(ip, 0xcb007100u, 24) || /* 203.0.113.0/24 */
         in_net(ip, 0xc6336400u, 24) || /* 198.51.100.0/24 */
         in_net(ip, 0xc6120000u, 15) || /* 198.18.0.0/15 */
         is_loopback(ip);
}

static int parse_endpoint(const char *s, endpoint *out) {
  char ip[32];
  const char *colon = strrchr(s, ':');
  if (colon == NULL || (size_t)(colon - s) >= sizeof ip) return -1;
  memcpy(ip, s, (size_t)(colon - s));
  ip[colon - s] = '\0';
  struct in_addr a;
  if (inet_pton(AF_INET, ip, &a) != 1) return -1;
  char *end;
  long port = strtol(colon + 1, &end, 10);
  if (*end != '\0' || port < 1 || port > 65535) return -1;
  out->ip = ntohl(a.s_addr);
  out->port = (uint16_t)port;
  return 0;
}

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static long parse_hex(const char *s, uint8_t *out, size_t cap) {
  size_t n = strlen(s);
  if (n % 2 != 0 || n / 2 > cap) return -1;
  for (size_t i = 0; i < n / 2; i++) {
    int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
    if (hi < 0 || lo < 0) return -1;
    out[i] = (uint8_t)(hi << 4 | lo);
  }
  return (long)(n / 2);
}

static uint32_t sum16(uint32_t acc, const uint8_t *p, size_t len) {
  for (size_t i = 0; i + 1 < len; i += 2) acc += (uint32_t)(p[i] << 8 | p[i + 1]);
  if (len % 2) acc += (uint32_t)(p[len - 1] << 8);
  return acc;
}

static uint16_t fold(uint32_t acc) {
  while (acc >> 16) acc = (acc & 0xffff) + (acc >> 16);
  return (uint16_t)~acc;
}

static void put16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v) {
  put16(p, (uint16_t)(v >> 16));
  put16(p + 2, (uint16_t)v);
}

/* IPv4 header (20 bytes, no options) + UDP header + payload into pkt. */
static size_t build(uint8_t *pkt, const endpoint *src, const endpoint *dst, const uint8_t *data,
                    size_t len, uint16_t id) {
  size_t total = 20 + 8 + len;
  memset(pkt, 0, 28);
  pkt[0] = 0x45; /* version 4, IHL 5 */
  put16(pkt + 2, (uint16_t)total);
  put16(pkt + 4, id);
  pkt[8] = 64; /* TTL */
  pkt[9] = IPPROTO_UDP;
  put32(pkt + 12, src->ip);
  put32(pkt + 16, dst->ip);
  put16(pkt + 10, fold(sum16(0, pkt, 20)));
  uint8_t *udp = pkt + 20;
  put16(udp, src->port);
  put16(udp + 2, dst->port);
  put16(udp + 4, (uint16_t)(8 + len));
  memcpy(udp + 8, data, len);
  /* pseudo-header: source, destination, zero, protocol, UDP length */
  uint8_t pseudo[12];
  put32(pseudo, src->ip);
  put32(pseudo + 4, dst->ip);
  pseudo[8] = 0;
  pseudo[9] = IPPROTO_UDP;
  put16(pseudo + 10, (uint16_t)(8 + len));
  uint16_t ck = fold(sum16(sum16(0, pseudo, sizeof pseudo), udp, 8 + len));
  put16(udp + 6, ck == 0 ? 0xffff : ck);
  return total;
}

/* 1 if this process runs in a network namespace made by `ip netns add`
 * (as the lab makes them: a file in /run/netns is that namespace), 0 if
 * not (the host's namespace, or one we cannot tell). */
static int in_lab_netns(void) {
  struct stat self;
  if (stat("/proc/self/ns/net", &self) != 0) return 0;
  DIR *d = opendir("/run/netns");
  if (d == NULL) return 0;
  int found = 0;
  struct dirent *e;
  while (!found && (e = readdir(d)) != NULL) {
    char path[512];
    struct stat st;
    if (e->d_name[0] == '.') continue;
    snprintf(path, sizeof path, "/run/netns/%s", e->d_name);
    if (stat(path, &st) == 0 && st.st_dev == self.st_dev && st.st_ino == self.st_ino) found = 1;
  }
  closedir(d);
  return found;
}

static int refuse(unsigned lineno, const char *why) {
  fprintf(stderr, "natpunch-spoof: line %u: %s\n", lineno, why);
  return 2;
}

int main(int argc, char **argv) {
  unsigned long max = 100000;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--max") == 0 && i + 1 < argc) {
      max = strtoul(argv[++i], NULL, 10);
    } else {
      fprintf(stderr, "usage: natpunch-spoof [--max N] < 'SRC_IP:PORT DST_IP:PORT HEX' lines\n");
      return 2;
    }
  }
  int lab_ns = in_lab_netns();
  int fd = socket(AF_INET, SOCK_RAW, IPPROTO_RAW); /* implies IP_HDRINCL */
  if (fd < 0) {
    fprintf(stderr, "natpunch-spoof: raw socket: %s (needs CAP_NET_RAW)\n", strerror(errno));
    return 1;
  }
  static char line[LINE_MAX_LEN];
  static uint8_t data[MAX_PAYLOAD], pkt[28 + MAX_PAYLOAD];
  unsigned long sent = 0, bytes = 0;
  unsigned lineno = 0;
  int rc = 0;
  while (fgets(line, sizeof line, stdin) != NULL) {
    lineno++;
    char s_src[64], s_dst[64], s_hex[2 * MAX_PAYLOAD + 2];
    if (line[0] == '\n') continue;
    if (sscanf(line, "%63s %63s %2945s", s_src, s_dst, s_hex) != 3) {
      rc = refuse(lineno, "expected SRC_IP:PORT DST_IP:PORT HEX");
      break;
    }
    endpoint src, dst;
    if (parse_endpoint(s_src, &src) != 0 || parse_endpoint(s_dst, &dst) != 0) {
      rc = refuse(lineno, "addresses are IPv4 IP:PORT, port 1..65535");
      break;
    }
    if (!allowed(src.ip) || !allowed(dst.ip)) {
      rc = refuse(lineno,
                  "address outside 203.0.113.0/24, 198.51.100.0/24, 198.18.0.0/15, 127.0.0.0/8");
      break;
    }
    if (is_loopback(src.ip) != is_loopback(dst.ip)) {
      rc = refuse(lineno, "loopback and lab addresses do not mix");
      break;
    }
    if (!is_loopback(dst.ip) && !lab_ns) {
      rc = refuse(lineno, "forged packets off loopback only inside a lab network namespace");
      break;
    }
    long len = parse_hex(s_hex, data, sizeof data);
    if (len < 0) {
      rc = refuse(lineno, "payload: an even number of hex digits, at most 1472 bytes");
      break;
    }
    if (sent >= max) {
      rc = refuse(lineno, "more datagrams than --max");
      break;
    }
    size_t n = build(pkt, &src, &dst, data, (size_t)len, (uint16_t)(lineno & 0xffff));
    struct sockaddr_in to;
    memset(&to, 0, sizeof to);
    to.sin_family = AF_INET;
    to.sin_addr.s_addr = htonl(dst.ip);
    if (sendto(fd, pkt, n, 0, (struct sockaddr *)&to, sizeof to) != (ssize_t)n) {
      fprintf(stderr, "natpunch-spoof: line %u: sendto: %s\n", lineno, strerror(errno));
      rc = 1;
      break;
    }
    sent++;
    bytes += n;
  }
  close(fd);
  printf("{\"sent\":%lu,\"bytes\":%lu}\n", sent, bytes);
  return rc;
}
