/*
 * stun_raw.c - the baseline of `make bench`: a STUN Binding server with
 * nothing but the system calls and natpunch's codec.  One thread, one
 * blocking socket: recvmmsg(2) a batch, answer each request with
 * stun_answer_binding() (the function natpunch's sockets call), send the
 * answers with one sendmmsg(2).  No event loop, no Lua, no demux: the best
 * one core does with this codec, so other servers are shown relative to it.
 *
 *   stun_raw --listen 127.0.0.1:PORT [--seconds N]
 *
 * Prints "ready" once bound; stops after N seconds (default 60), printing
 * what it answered, or when killed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include "ipv4_port.h"
#include "stun.h"

#define BATCH 64
#define SLOT  1500 /* requests larger than an Ethernet MTU are not ours to answer */

struct server {
  int fd;
  uint64_t received, answered, rejected, send_errors;
  uint8_t in[BATCH][SLOT];
  uint8_t out[BATCH][STUN_ANSWER_MAX];
  struct sockaddr_storage from[BATCH];
  struct iovec in_iov[BATCH], out_iov[BATCH];
  struct mmsghdr in_msg[BATCH], out_msg[BATCH];
};

static int parse_listen(const char *s, struct sockaddr_in *sa) {
  if (parse_ipv4_port(s, sa) != 0) return -1;
  return ipv4_is_loopback(sa) ? 0 : -1; /* loopback only */
}

/* One recvmmsg batch in, one sendmmsg batch out.  The receive blocks for
 * the first datagram, up to the socket's SO_RCVTIMEO. */
static int serve_batch(struct server *s) {
  for (int i = 0; i < BATCH; i++) {
    s->in_iov[i] = (struct iovec){.iov_base = s->in[i], .iov_len = SLOT};
    s->in_msg[i] = (struct mmsghdr){.msg_hdr = {.msg_name = &s->from[i],
                                                .msg_namelen = sizeof s->from[i],
                                                .msg_iov = &s->in_iov[i],
                                                .msg_iovlen = 1}};
  }
  int n = recvmmsg(s->fd, s->in_msg, BATCH, MSG_WAITFORONE, NULL);
  if (n < 0) return errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
  int out = 0;
  for (int i = 0; i < n; i++) {
    s->received++;
    const struct sockaddr *from = (const struct sockaddr *)&s->from[i];
    int len = stun_answer_binding(s->in[i], s->in_msg[i].msg_len, from, NULL, s->out[out],
                                  sizeof s->out[out]);
    if (len <= 0) {
      s->rejected++;
      continue;
    }
    s->out_iov[out] = (struct iovec){.iov_base = s->out[out], .iov_len = (size_t)len};
    s->out_msg[out] = (struct mmsghdr){.msg_hdr = {.msg_name = &s->from[i],
                                                   .msg_namelen = s->in_msg[i].msg_hdr.msg_namelen,
                                                   .msg_iov = &s->out_iov[out],
                                                   .msg_iovlen = 1}};
    out++;
  }
  for (int sent = 0; sent < out;) {
    int r = sendmmsg(s->fd, s->out_msg + sent, (unsigned)(out - sent), 0);
    if (r > 0) {
      s->answered += (uint64_t)r;
      sent += r;
    } else if (errno != EINTR) {
      s->send_errors++; /* blocking socket: a real error, skip that datagram */
      sent++;
    }
  }
  return 0;
}

int main(int argc, char **argv) {
  struct sockaddr_in addr;
  long seconds = 60;
  int have_listen = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--listen"))
      have_listen = parse_listen(argv[i + 1], &addr) == 0;
    else if (!strcmp(argv[i], "--seconds"))
      seconds = strtol(argv[i + 1], NULL, 10);
  }
  if (!have_listen || argc % 2 == 0 || seconds < 1 || seconds > 3600) {
    fprintf(stderr, "usage: stun_raw --listen 127.0.0.1:PORT [--seconds N]\n");
    return 2;
  }
  struct server *s = calloc(1, sizeof *s);
  if (!s) return 1;
  s->fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s->fd < 0 || bind(s->fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
    perror("stun_raw: bind");
    return 1;
  }
  /* wake up now and then when idle, to see the time limit */
  struct timeval idle = {.tv_usec = 200000};
  setsockopt(s->fd, SOL_SOCKET, SO_RCVTIMEO, &idle, sizeof idle);
  struct timespec t0, t;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  printf("ready\n");
  fflush(stdout);
  do {
    if (serve_batch(s) < 0) {
      perror("stun_raw: recvmmsg");
      break;
    }
    clock_gettime(CLOCK_MONOTONIC, &t);
  } while (t.tv_sec - t0.tv_sec < seconds);
  printf("stun_raw: received %" PRIu64 ", answered %" PRIu64 ", rejected %" PRIu64
         ", send errors %" PRIu64 "\n",
         s->received, s->answered, s->rejected, s->send_errors);
  close(s->fd);
  free(s);
  return 0;
}
