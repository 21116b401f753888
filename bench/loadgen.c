/*
 * loadgen.c - STUN Binding load generator for `make bench` (bench/run.lua).
 *
 * Closed loop: S source sockets, each keeps at most W requests outstanding
 * and sends a new one when an answer comes back or a request is given up
 * (after --timeout-ms).  Sends and receives go through sendmmsg/recvmmsg.
 * It stops sending after --requests requests or --duration seconds,
 * whichever comes first, waits up to --timeout-ms for the answers still
 * out, then prints one result line (or JSON).  The sockets are connected
 * to the server, which spares the kernel a route lookup per datagram on
 * this side.
 *
 * Every answer is checked: a Binding success response (RFC 8489 §6.3.1)
 * whose transaction id is one of this socket's outstanding requests and
 * whose XOR-MAPPED-ADDRESS (or MAPPED-ADDRESS, RFC 3489 servers) is the
 * socket's own address - on loopback there is no NAT in between.
 *
 * The transaction id (RFC 8489 §5, 96 bits) carries what is needed to match
 * an answer without a lookup table:
 *   bytes 0-1  socket index     2-3  window slot
 *   bytes 4-7  sequence number  8-11 random per run
 *
 * Latency is the time from sendmmsg() to recvmmsg() of each answer, so
 * under load it includes the wait in the server's queue (Little's law:
 * about outstanding requests / throughput).  --window 1 --sockets 1
 * measures an idle round trip instead.
 *
 * Only numeric loopback addresses are accepted.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "ipv4_port.h"
#include "stun.h"

#define MAX_SOCKETS 64
#define MAX_WINDOW  4096
#define IO_BATCH    64               /* datagrams per sendmmsg / recvmmsg call */
#define REQ_SIZE    STUN_HEADER_SIZE /* a Binding request with no attributes */
#define ANSWER_CAP  1500

struct slot {
  uint64_t sent_ns;
  uint32_t seq;
  uint8_t busy;
};

struct src {
  int fd;
  struct stun_addr self; /* what the server must report back */
  struct slot *slots;
  uint16_t *free_slots; /* stack of free slot indices */
  unsigned nfree;
};

struct opts {
  struct sockaddr_in server;
  uint64_t requests;
  unsigned sockets, window, timeout_ms;
  double duration;
  int json, probe;
  const char *label;
};

struct result {
  uint64_t sent, answered, lost, unmatched, bad_answer, send_errors;
  uint64_t t0_ns, t1_ns; /* first request sent, last answer received */
  uint32_t *lat_ns;      /* one per answer */
  double cpu_s;
};

struct gen {
  struct opts o;
  struct src src[MAX_SOCKETS];
  uint32_t nonce;
  uint32_t next_seq;
  struct result r;
  int ep;
};

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void put16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}
static void put32(uint8_t *p, uint32_t v) {
  put16(p, (uint16_t)(v >> 16));
  put16(p + 2, (uint16_t)v);
}
static uint16_t get16(const uint8_t *p) {
  return (uint16_t)(p[0] << 8 | p[1]);
}
static uint32_t get32(const uint8_t *p) {
  return (uint32_t)get16(p) << 16 | get16(p + 2);
}

static int usage(void) {
  fprintf(stderr,
          "usage: loadgen --server 127.0.0.1:PORT [--requests N] [--sockets S] [--window W]\n"
          "               [--duration SECONDS] [--timeout-ms MS] [--label NAME] [--json]\n"
          "       loadgen --server 127.0.0.1:PORT --probe   (exit 0 once one answer came)\n");
  return 2;
}

static int parse_server(const char *s, struct sockaddr_in *sa) {
  if (parse_ipv4_port(s, sa) != 0 || sa->sin_port == 0) return -1;
  return ipv4_is_loopback(sa) ? 0 : -1; /* loopback only: this tool floods its target */
}

static int parse_opts(int argc, char **argv, struct opts *o) {
  *o = (struct opts){.requests = 200000,
                     .sockets = 4,
                     .window = 32,
                     .timeout_ms = 500,
                     .duration = 3.0,
                     .label = "server"};
  int have_server = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--json"))
      o->json = 1;
    else if (!strcmp(a, "--probe"))
      o->probe = 1;
    else if (!v)
      return -1;
    else if (!strcmp(a, "--server"))
      have_server = parse_server(v, &o->server) == 0, i++;
    else if (!strcmp(a, "--requests"))
      o->requests = strtoull(v, NULL, 10), i++;
    else if (!strcmp(a, "--sockets"))
      o->sockets = (unsigned)strtoul(v, NULL, 10), i++;
    else if (!strcmp(a, "--window"))
      o->window = (unsigned)strtoul(v, NULL, 10), i++;
    else if (!strcmp(a, "--duration"))
      o->duration = strtod(v, NULL), i++;
    else if (!strcmp(a, "--timeout-ms"))
      o->timeout_ms = (unsigned)strtoul(v, NULL, 10), i++;
    else if (!strcmp(a, "--label"))
      o->label = v, i++;
    else
      return -1;
  }
  if (!have_server || o->sockets < 1 || o->sockets > MAX_SOCKETS || o->window < 1 ||
      o->window > MAX_WINDOW || o->requests < 1 || o->requests > 100000000 ||
      !(o->duration > 0 && o->duration <= 60) || o->timeout_ms < 1 || o->timeout_ms > 10000)
    return -1;
  if (o->probe) {
    o->sockets = 1;
    o->window = 1;
    o->requests = 30; /* one every 100 ms: 3 s */
    o->timeout_ms = 100;
    o->duration = 3.5;
  }
  return 0;
}

static int open_sources(struct gen *g) {
  for (unsigned i = 0; i < g->o.sockets; i++) {
    struct src *s = &g->src[i];
    s->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->fd < 0) return -1;
    struct sockaddr_in self = {.sin_family = AF_INET};
    self.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof self;
    if (bind(s->fd, (struct sockaddr *)&self, sizeof self) < 0 ||
        getsockname(s->fd, (struct sockaddr *)&self, &len) < 0 ||
        stun_addr_from_sockaddr((struct sockaddr *)&self, &s->self) < 0 ||
        connect(s->fd, (struct sockaddr *)&g->o.server, sizeof g->o.server) < 0)
      return -1;
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i};
    if (epoll_ctl(g->ep, EPOLL_CTL_ADD, s->fd, &ev) < 0) return -1;
    s->slots = calloc(g->o.window, sizeof *s->slots);
    s->free_slots = malloc(g->o.window * sizeof *s->free_slots);
    if (!s->slots || !s->free_slots) return -1;
    for (unsigned k = 0; k < g->o.window; k++) s->free_slots[k] = (uint16_t)(g->o.window - 1 - k);
    s->nfree = g->o.window;
  }
  return 0;
}

/* Fill socket i's window with new requests, one sendmmsg per IO_BATCH. */
static void send_some(struct gen *g, unsigned i) {
  struct src *s = &g->src[i];
  while (s->nfree > 0 && g->r.sent < g->o.requests) {
    uint8_t buf[IO_BATCH][REQ_SIZE];
    struct iovec iov[IO_BATCH];
    struct mmsghdr msgs[IO_BATCH];
    uint16_t used[IO_BATCH];
    unsigned n = 0;
    while (n < IO_BATCH && s->nfree > 0 && g->r.sent + n < g->o.requests) {
      uint16_t k = s->free_slots[--s->nfree];
      uint8_t tid[STUN_TID_SIZE];
      put16(tid, (uint16_t)i);
      put16(tid + 2, k);
      put32(tid + 4, g->next_seq + n);
      put32(tid + 8, g->nonce);
      struct stun_writer w;
      stun_writer_init(&w, buf[n], REQ_SIZE, STUN_METHOD_BINDING, STUN_CLASS_REQUEST, tid,
                       STUN_TID_SIZE);
      stun_writer_finish(&w);
      iov[n] = (struct iovec){.iov_base = buf[n], .iov_len = REQ_SIZE};
      msgs[n] = (struct mmsghdr){.msg_hdr = {.msg_iov = &iov[n], .msg_iovlen = 1}};
      used[n++] = k;
    }
    int r = sendmmsg(s->fd, msgs, n, 0);
    unsigned ok = r > 0 ? (unsigned)r : 0;
    uint64_t t = now_ns();
    for (unsigned m = 0; m < ok; m++) {
      struct slot *sl = &s->slots[used[m]];
      sl->busy = 1;
      sl->sent_ns = t;
      sl->seq = g->next_seq + m;
    }
    g->next_seq += ok;
    g->r.sent += ok;
    for (unsigned m = n; m-- > ok;) s->free_slots[s->nfree++] = used[m]; /* not sent */
    if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) g->r.send_errors++;
    if (ok < n) return; /* send buffer full: wait for answers */
  }
}

static void check_answer(struct gen *g, unsigned i, const uint8_t *p, size_t len, uint64_t t) {
  struct src *s = &g->src[i];
  struct stun_msg m;
  if (stun_read(p, len, &m) < 0 || m.tid_len != STUN_TID_SIZE) {
    g->r.bad_answer++;
    return;
  }
  unsigned k = get16(m.tid + 2);
  if (get16(m.tid) != i || k >= g->o.window || get32(m.tid + 8) != g->nonce || !s->slots[k].busy ||
      s->slots[k].seq != get32(m.tid + 4)) {
    g->r.unmatched++; /* late (given up already), duplicated or foreign */
    return;
  }
  const struct stun_addr *mapped = (m.has & STUN_HAS_XOR_MAPPED) ? &m.xor_mapped
                                   : (m.has & STUN_HAS_MAPPED)   ? &m.mapped
                                                                 : NULL;
  if (m.cls != STUN_CLASS_SUCCESS || m.method != STUN_METHOD_BINDING || !mapped ||
      mapped->family != s->self.family || mapped->port != s->self.port ||
      memcmp(mapped->ip, s->self.ip, 4) != 0) {
    g->r.bad_answer++; /* the request is still given up by its timeout */
    return;
  }
  uint64_t rtt = t - s->slots[k].sent_ns;
  g->r.lat_ns[g->r.answered++] = rtt > UINT32_MAX ? UINT32_MAX : (uint32_t)rtt;
  g->r.t1_ns = t;
  s->slots[k].busy = 0;
  s->free_slots[s->nfree++] = (uint16_t)k;
}

static void recv_some(struct gen *g, unsigned i) {
  static_assert(IO_BATCH * ANSWER_CAP <= 128 * 1024, "receive buffers live on the stack");
  uint8_t buf[IO_BATCH][ANSWER_CAP];
  struct iovec iov[IO_BATCH];
  struct mmsghdr msgs[IO_BATCH];
  for (;;) {
    for (unsigned m = 0; m < IO_BATCH; m++) {
      iov[m] = (struct iovec){.iov_base = buf[m], .iov_len = ANSWER_CAP};
      msgs[m] = (struct mmsghdr){.msg_hdr = {.msg_iov = &iov[m], .msg_iovlen = 1}};
    }
    int r = recvmmsg(g->src[i].fd, msgs, IO_BATCH, MSG_DONTWAIT, NULL);
    if (r <= 0) return;
    uint64_t t = now_ns();
    for (int m = 0; m < r; m++) check_answer(g, i, buf[m], msgs[m].msg_len, t);
    if (r < IO_BATCH) return;
  }
}

static void expire(struct gen *g, uint64_t t, int all) {
  uint64_t limit = (uint64_t)g->o.timeout_ms * 1000000u;
  for (unsigned i = 0; i < g->o.sockets; i++) {
    struct src *s = &g->src[i];
    for (unsigned k = 0; k < g->o.window; k++) {
      if (s->slots[k].busy && (all || t - s->slots[k].sent_ns > limit)) {
        s->slots[k].busy = 0;
        s->free_slots[s->nfree++] = (uint16_t)k;
        g->r.lost++;
      }
    }
  }
}

static uint64_t outstanding(const struct gen *g) {
  return g->r.sent - g->r.answered - g->r.lost;
}

static void run(struct gen *g) {
  uint64_t deadline = now_ns() + (uint64_t)(g->o.duration * 1e9);
  uint64_t drain_end = deadline + (uint64_t)g->o.timeout_ms * 1000000u;
  uint64_t next_expire = 0;
  uint64_t next_probe = 0;
  g->r.t0_ns = now_ns();
  for (;;) {
    uint64_t t = now_ns();
    if (t >= deadline) { /* time is up: no more requests, wait for the last answers */
      if (outstanding(g) == 0 || t >= drain_end || g->o.probe) break;
    } else if (g->o.probe) {
      if (g->r.answered > 0) break;
      if (t >= next_probe && outstanding(g) == 0) { /* one request per 100 ms */
        send_some(g, 0);
        next_probe = t + 100000000u;
      }
    } else {
      if (g->r.sent >= g->o.requests && outstanding(g) == 0) break;
      for (unsigned i = 0; i < g->o.sockets; i++) send_some(g, i);
    }
    struct epoll_event ev[MAX_SOCKETS];
    int n = epoll_wait(g->ep, ev, MAX_SOCKETS, 1);
    for (int e = 0; e < n; e++) recv_some(g, ev[e].data.u32);
    t = now_ns();
    if (t >= next_expire) {
      expire(g, t, 0);
      next_expire = t + 10000000u; /* every 10 ms */
    }
  }
  if (g->r.answered == 0) g->r.t1_ns = now_ns();
  expire(g, 0, 1); /* what is still out when time is up counts as lost */
}

static int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return (x > y) - (x < y);
}

static double pct_us(const struct result *r, double p) {
  if (r->answered == 0) return 0;
  uint64_t idx = (uint64_t)(p * (double)(r->answered - 1) + 0.5);
  return r->lat_ns[idx] / 1000.0;
}

static void report(const struct gen *g) {
  const struct result *r = &g->r;
  double secs = (double)(r->t1_ns - r->t0_ns) / 1e9;
  double rps = secs > 0 ? (double)r->answered / secs : 0;
  double p50 = pct_us(r, 0.50), p99 = pct_us(r, 0.99);
  double load = secs > 0 ? 100.0 * r->cpu_s / secs : 0;
  if (g->o.json) {
    printf("{\"label\":\"%s\",\"sent\":%" PRIu64 ",\"answered\":%" PRIu64 ",\"lost\":%" PRIu64
           ",\"unmatched\":%" PRIu64 ",\"bad_answer\":%" PRIu64 ",\"send_errors\":%" PRIu64
           ",\"seconds\":%.4f,\"rps\":%.1f,\"p50_us\":%.1f,\"p99_us\":%.1f,\"sockets\":%u"
           ",\"window\":%u,\"loadgen_cpu_pct\":%.1f}\n",
           g->o.label, r->sent, r->answered, r->lost, r->unmatched, r->bad_answer, r->send_errors,
           secs, rps, p50, p99, g->o.sockets, g->o.window, load);
  } else {
    printf("%s: %" PRIu64 "/%" PRIu64 " answered in %.3f s: %.0f req/s, p50 %.1f us, p99 %.1f us"
           " (lost %" PRIu64 ", unmatched %" PRIu64 ", bad %" PRIu64 ", loadgen cpu %.0f%%)\n",
           g->o.label, r->answered, r->sent, secs, rps, p50, p99, r->lost, r->unmatched,
           r->bad_answer, load);
  }
}

static double cpu_seconds(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
         ru.ru_stime.tv_usec / 1e6;
}

static void free_gen(struct gen *g) {
  for (unsigned i = 0; i < MAX_SOCKETS; i++) {
    if (g->src[i].fd >= 0) close(g->src[i].fd);
    free(g->src[i].slots);
    free(g->src[i].free_slots);
  }
  if (g->ep >= 0) close(g->ep);
  free(g->r.lat_ns);
  free(g);
}

int main(int argc, char **argv) {
  struct opts o;
  if (parse_opts(argc, argv, &o) < 0) return usage();
  struct gen *g = calloc(1, sizeof *g);
  if (!g) return 1;
  g->o = o;
  for (unsigned i = 0; i < MAX_SOCKETS; i++) g->src[i].fd = -1;
  uint8_t rnd[4];
  g->ep = epoll_create1(EPOLL_CLOEXEC);
  g->r.lat_ns = malloc(g->o.requests * sizeof *g->r.lat_ns);
  if (g->ep < 0 || !g->r.lat_ns || getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd ||
      open_sources(g) < 0) {
    perror("loadgen: setup");
    free_gen(g);
    return 1;
  }
  g->nonce = get32(rnd);
  double cpu0 = cpu_seconds();
  run(g);
  g->r.cpu_s = cpu_seconds() - cpu0;
  int rc = 0;
  if (g->o.probe) {
    rc = g->r.answered > 0 ? 0 : 1;
  } else {
    qsort(g->r.lat_ns, g->r.answered, sizeof *g->r.lat_ns, cmp_u32);
    report(g);
  }
  free_gen(g);
  return rc;
}
