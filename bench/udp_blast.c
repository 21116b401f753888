/*
 * udp_blast.c - raw C UDP baselines for the touch rows of `make bench`: the
 * best one core does with plain blocking sockets, recvmmsg/sendmmsg and no
 * event loop, no Lua, no protocol.
 *
 *   udp_blast --sink --listen 127.0.0.1:PORT [--seconds N] [--idle S]
 *       receive datagrams; answer each with an 8-byte ack (its sequence
 *       number), in batches (recvmmsg, then one sendmmsg).  With --idle it
 *       stops S seconds after the last datagram (once one came) and prints
 *       one JSON line: datagrams, distinct sequence numbers, payload bytes
 *       and the span from the first to the last.
 *   udp_blast --blast --server 127.0.0.1:PORT [--count N] [--size B] [--window W]
 *       send N datagrams of B bytes, at most W not yet acknowledged; a
 *       datagram whose ack does not come within 200 ms is counted lost and
 *       its slot reused (no retransmission: this is the baseline's upper
 *       bound).  Prints one JSON line.
 *   udp_blast --blast --oneway --server IP:PORT [--count N] [--size B] [--rate BIT/S]
 *       send N datagrams, paced at BIT/S (IP+UDP headers counted; default
 *       unpaced), ignoring acks: the sink's line says what arrived.
 *   udp_blast --echo --listen 127.0.0.1:PORT [--seconds N]
 *       send every datagram back
 *   udp_blast --ping --server 127.0.0.1:PORT [--count N] [--size B]
 *       one datagram at a time, wait for its echo: round trip p50/p99.
 *   --epoll (with --echo and --ping): wait in epoll_wait, then read without
 *       blocking, as an event loop does (libuv: epoll_wait, then recvmmsg),
 *       instead of sleeping in recv: the kernel's wake-up through epoll
 *       costs more than a blocked recv's, and this shows how much.
 *
 * The sockets keep the kernel's default buffer sizes, as natpunch's do.
 * Every mode is bounded (--seconds, default 60; --count).  Loopback or the
 * NAT lab's own ranges only (127.0.0.1, 203.0.113.0/24, 198.51.100.0/24,
 * 198.18.0.0/15): bench/touch_wire.lua runs it inside lab namespaces.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "ipv4_port.h"

#define BATCH 64
#define MAXSZ 65536

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int parse(const char *text, struct sockaddr_in *sa) {
  if (parse_ipv4_port(text, sa) != 0) return -1;
  uint32_t a = ntohl(sa->sin_addr.s_addr);
  /* loopback or the lab's ranges only */
  if (a == 0x7f000001u || (a >> 8) == 0xcb0071u || (a >> 8) == 0xc63364u ||
      (a >> 17) == (0xc6120000u >> 17))
    return 0;
  return -1;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* --epoll: an epoll instance watching fd for input, or -1 */
static int watch(int fd) {
  int ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
  if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
    perror("epoll");
    if (ep >= 0) close(ep);
    return -1;
  }
  return ep;
}

/* --epoll: wait until fd is readable (at most ms); 0 when it is */
static int await_input(int ep, int ms) {
  struct epoll_event ev;
  return epoll_wait(ep, &ev, 1, ms) == 1 ? 0 : -1;
}

/* --sink and --echo: one loop, answer every datagram (ack or echo). */
static int serve(const struct sockaddr_in *listen_at, int echo, double seconds, double idle,
                 int use_epoll) {
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0 || bind(fd, (const struct sockaddr *)listen_at, sizeof *listen_at) < 0) {
    perror("bind");
    return 1;
  }
  int ep = use_epoll ? watch(fd) : -1;
  if (use_epoll && ep < 0) return 1;
  static char bufs[BATCH][MAXSZ];
  static char acks[BATCH][8];
  struct mmsghdr in[BATCH], out[BATCH];
  struct iovec iin[BATCH], iout[BATCH];
  struct sockaddr_in from[BATCH];
  uint64_t end = now_ns() + (uint64_t)(seconds * 1e9), n = 0;
  uint64_t first = 0, last = 0, bytes = 0, distinct = 0, maxseq = 0;
  size_t seen_cap = 1u << 24; /* sequence numbers tracked for "distinct" */
  unsigned char *seen = idle > 0 ? calloc(seen_cap / 8, 1) : NULL;
  struct timeval tv = {0, 50000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  printf("ready\n");
  fflush(stdout);
  while (now_ns() < end) {
    for (int i = 0; i < BATCH; i++) {
      iin[i] = (struct iovec){bufs[i], MAXSZ};
      in[i].msg_hdr = (struct msghdr){
          .msg_name = &from[i], .msg_namelen = sizeof from[i], .msg_iov = &iin[i], .msg_iovlen = 1};
    }
    int got = ep >= 0
                  ? (await_input(ep, 50) == 0 ? recvmmsg(fd, in, BATCH, MSG_DONTWAIT, NULL) : -1)
                  : recvmmsg(fd, in, BATCH, MSG_WAITFORONE, NULL);
    if (got <= 0) {
      if (idle > 0 && n > 0 && now_ns() - last > (uint64_t)(idle * 1e9)) break;
      continue;
    }
    last = now_ns();
    if (!first) first = last;
    for (int i = 0; i < got; i++) {
      bytes += in[i].msg_len;
      if (seen && in[i].msg_len >= 8) {
        uint64_t seq;
        memcpy(&seq, bufs[i], 8);
        if (seq < seen_cap && !(seen[seq / 8] & (1u << (seq % 8)))) {
          seen[seq / 8] |= (unsigned char)(1u << (seq % 8));
          distinct++;
          if (seq > maxseq) maxseq = seq;
        }
      }
      if (echo) {
        iout[i] = (struct iovec){bufs[i], in[i].msg_len};
      } else {
        memcpy(acks[i], bufs[i], in[i].msg_len >= 8 ? 8 : in[i].msg_len);
        iout[i] = (struct iovec){acks[i], 8};
      }
      out[i].msg_hdr = (struct msghdr){.msg_name = &from[i],
                                       .msg_namelen = sizeof from[i],
                                       .msg_iov = &iout[i],
                                       .msg_iovlen = 1};
    }
    int sent = 0;
    while (sent < got) {
      int r = sendmmsg(fd, out + sent, (unsigned)(got - sent), 0);
      if (r <= 0) break;
      sent += r;
    }
    n += (uint64_t)got;
  }
  fprintf(stderr, "udp_blast: answered %llu datagrams\n", (unsigned long long)n);
  if (idle > 0) {
    double span = (double)(last - first) / 1e9;
    printf("{\"mode\":\"sink\",\"received\":%llu,\"distinct\":%llu,\"bytes\":%llu,\"span_s\":%.6f,"
           "\"mbit_per_s\":%.3f}\n",
           (unsigned long long)n, (unsigned long long)distinct, (unsigned long long)bytes, span,
           span > 0 ? (double)bytes * 8 / span / 1e6 : 0.0);
    fflush(stdout);
  }
  free(seen);
  if (ep >= 0) close(ep);
  close(fd);
  return 0;
}

/* --blast --oneway: count datagrams paced at rate bit/s (28 bytes of IP and
 * UDP header counted), acks ignored. */
static int oneway(const struct sockaddr_in *to, long count, size_t size, double rate) {
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0 || connect(fd, (const struct sockaddr *)to, sizeof *to) < 0) {
    perror("connect");
    return 1;
  }
  static char payload[MAXSZ];
  memset(payload, 'b', size);
  double gap_ns = rate > 0 ? (double)(size + 28) * 8 / rate * 1e9 : 0;
  uint64_t t0 = now_ns(), deadline = t0 + 60ull * 1000000000u;
  long sent = 0, errs = 0;
  for (long i = 1; i <= count && now_ns() < deadline; i++) {
    uint64_t due = t0 + (uint64_t)(gap_ns * (double)(i - 1));
    for (uint64_t t = now_ns(); t < due; t = now_ns()) {
      uint64_t d = due - t;
      struct timespec ts = {0, (long)(d > 200000 ? d - 100000 : 0)};
      if (ts.tv_nsec) nanosleep(&ts, NULL);
    }
    uint64_t seq = (uint64_t)i;
    memcpy(payload, &seq, 8);
    if (send(fd, payload, size, 0) < 0)
      errs++;
    else
      sent++;
  }
  double secs = (double)(now_ns() - t0) / 1e9;
  printf("{\"mode\":\"oneway\",\"count\":%ld,\"size\":%zu,\"sent\":%ld,\"send_errors\":%ld,"
         "\"seconds\":%.6f,\"offered_mbit_per_s\":%.3f}\n",
         count, size, sent, errs, secs,
         secs > 0 ? (double)sent * (double)(size + 28) * 8 / secs / 1e6 : 0.0);
  close(fd);
  return 0;
}

static int blast(const struct sockaddr_in *to, long count, size_t size, int window) {
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0 || connect(fd, (const struct sockaddr *)to, sizeof *to) < 0) {
    perror("connect");
    return 1;
  }
  uint64_t *sent_at = calloc((size_t)count + 1, sizeof *sent_at);
  char *acked = calloc((size_t)count + 1, 1);
  static char payload[BATCH][MAXSZ];
  static char abuf[BATCH][64];
  if (!sent_at || !acked) return 1;
  long next = 1, done = 0, lost = 0, inflight = 0, oldest = 1;
  uint64_t t0 = now_ns(), deadline = t0 + 60ull * 1000000000u;
  struct mmsghdr out[BATCH], in[BATCH];
  struct iovec io[BATCH], ii[BATCH];
  while (done + lost < count && now_ns() < deadline) {
    int k = 0;
    while (k < BATCH && inflight < window && next <= count) {
      uint64_t seq = (uint64_t)next;
      memcpy(payload[k], &seq, 8);
      io[k] = (struct iovec){payload[k], size};
      out[k].msg_hdr = (struct msghdr){.msg_iov = &io[k], .msg_iovlen = 1};
      sent_at[next] = now_ns();
      next++;
      inflight++;
      k++;
    }
    int s = 0;
    while (s < k) {
      int r = sendmmsg(fd, out + s, (unsigned)(k - s), 0);
      if (r <= 0) {
        if (errno == EAGAIN || errno == ENOBUFS) continue;
        perror("sendmmsg");
        return 1;
      }
      s += r;
    }
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, inflight >= window || next > count ? 10 : 0) > 0) {
      for (int i = 0; i < BATCH; i++) {
        ii[i] = (struct iovec){abuf[i], sizeof abuf[i]};
        in[i].msg_hdr = (struct msghdr){.msg_iov = &ii[i], .msg_iovlen = 1};
      }
      int got = recvmmsg(fd, in, BATCH, MSG_DONTWAIT, NULL);
      for (int i = 0; i < got; i++) {
        uint64_t seq;
        if (in[i].msg_len < 8) continue;
        memcpy(&seq, abuf[i], 8);
        if (seq >= 1 && seq < (uint64_t)next && !acked[seq]) {
          acked[seq] = 1;
          done++;
          inflight--;
        }
      }
    }
    /* the oldest unacknowledged ones that waited 200 ms: lost */
    uint64_t now = now_ns();
    while (oldest < next && (acked[oldest] || now - sent_at[oldest] > 200000000u)) {
      if (!acked[oldest]) {
        acked[oldest] = 2;
        lost++;
        inflight--;
      }
      oldest++;
    }
  }
  double secs = (double)(now_ns() - t0) / 1e9;
  printf("{\"mode\":\"blast\",\"count\":%ld,\"size\":%zu,\"window\":%d,\"acked\":%ld,\"lost\":%ld,"
         "\"seconds\":%.6f,\"msgs_per_s\":%.1f,\"mbit_per_s\":%.2f}\n",
         count, size, window, done, lost, secs, done / secs, done * (double)size * 8 / secs / 1e6);
  free(sent_at);
  free(acked);
  close(fd);
  return 0;
}

static int ping(const struct sockaddr_in *to, long count, size_t size, int use_epoll) {
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0 || connect(fd, (const struct sockaddr *)to, sizeof *to) < 0) {
    perror("connect");
    return 1;
  }
  int ep = use_epoll ? watch(fd) : -1;
  if (use_epoll && ep < 0) return 1;
  uint64_t *rtt = calloc((size_t)count, sizeof *rtt);
  char buf[MAXSZ];
  memset(buf, 'p', size);
  long n = 0, lost = 0;
  struct timeval tv = {0, 200000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  for (long i = 0; i < count; i++) {
    uint64_t t = now_ns();
    if (send(fd, buf, size, 0) < 0) return 1;
    char r[MAXSZ];
    if (ep >= 0 ? (await_input(ep, 200) < 0 || recv(fd, r, sizeof r, MSG_DONTWAIT) < 0)
                : recv(fd, r, sizeof r, 0) < 0) {
      lost++;
      continue;
    }
    rtt[n++] = now_ns() - t;
  }
  qsort(rtt, (size_t)n, sizeof *rtt, cmp_u64);
  printf("{\"mode\":\"ping\",\"epoll\":%s,\"count\":%ld,\"size\":%zu,\"answered\":%ld,"
         "\"lost\":%ld,\"p50_us\":%.2f,\"p99_us\":%.2f}\n",
         ep >= 0 ? "true" : "false", count, size, n, lost, n ? rtt[n / 2] / 1e3 : -1.0,
         n ? rtt[(n * 99) / 100] / 1e3 : -1.0);
  free(rtt);
  if (ep >= 0) close(ep);
  close(fd);
  return 0;
}

int main(int argc, char **argv) {
  const char *mode = NULL, *where = NULL;
  long count = 200000;
  size_t size = 1200;
  int window = 64, one_way = 0, use_epoll = 0;
  double seconds = 60, idle = 0, rate = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--sink") || !strcmp(a, "--blast") || !strcmp(a, "--echo") ||
        !strcmp(a, "--ping")) {
      mode = a + 2;
    } else if ((!strcmp(a, "--listen") || !strcmp(a, "--server")) && v) {
      where = v;
      i++;
    } else if (!strcmp(a, "--count") && v) {
      count = atol(v);
      i++;
    } else if (!strcmp(a, "--size") && v) {
      size = (size_t)atol(v);
      i++;
    } else if (!strcmp(a, "--window") && v) {
      window = atoi(v);
      i++;
    } else if (!strcmp(a, "--seconds") && v) {
      seconds = atof(v);
      i++;
    } else if (!strcmp(a, "--idle") && v) {
      idle = atof(v);
      i++;
    } else if (!strcmp(a, "--rate") && v) {
      rate = atof(v);
      i++;
    } else if (!strcmp(a, "--oneway")) {
      one_way = 1;
    } else if (!strcmp(a, "--epoll")) {
      use_epoll = 1;
    } else {
      fprintf(stderr,
              "usage: udp_blast --sink|--echo --listen IP:PORT [--seconds N] [--idle S]\n"
              "       udp_blast --blast --server IP:PORT [--count N] [--size B] [--window W]\n"
              "       udp_blast --blast --oneway --server IP:PORT [--count N] [--size B] [--rate "
              "BIT/S]\n"
              "       udp_blast --ping --server 127.0.0.1:PORT [--count N] [--size B]\n"
              "       (--echo and --ping: [--epoll])\n");
      return 2;
    }
  }
  struct sockaddr_in sa;
  if (!mode || !where || parse(where, &sa) < 0 || count < 1 || count > 10000000 || size < 8 ||
      size > 65000 || window < 1 || window > 100000 || seconds <= 0 || seconds > 600 || idle < 0 ||
      idle > 60 || rate < 0) {
    fprintf(stderr, "udp_blast: bad arguments (address: 127.0.0.1 or the lab's ranges)\n");
    return 2;
  }
  if (!strcmp(mode, "sink")) return serve(&sa, 0, seconds, idle, 0);
  if (!strcmp(mode, "echo")) return serve(&sa, 1, seconds, 0, use_epoll);
  if (!strcmp(mode, "blast"))
    return one_way ? oneway(&sa, count, size, rate) : blast(&sa, count, size, window);
  return ping(&sa, count, size, use_epoll);
}
