/*
 * np_udp_recv.c - a UDP socket's receive path: one recvmmsg(2) per
 * readable event.
 *
 * libuv 1.44's own path (uv_udp_recv_start with UV_UDP_RECVMMSG) reads
 * until the socket is empty: after every batch one more recvmmsg that
 * answers EAGAIN, a system call per round trip for nothing when messages
 * come one at a time (a touch and its ack).  Here a uv_poll_t watches the
 * socket and each readable event reads one batch (up to NP_RECV_BATCH
 * datagrams); epoll is level-triggered, so what is still queued wakes the
 * loop again at once, after timers and the other handles had their turn.
 *
 * The poll watches a duplicate of the socket's fd (same socket, own epoll
 * registration): libuv keeps the socket's fd for its own send queue
 * (POLLOUT while a send waits) and refuses two watchers of one fd.  The
 * duplicate is closed at once when the socket closes (np_recv_close), so
 * the port is free as soon as udp:close() returns, as before.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* recvmmsg */
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include "np_udp_recv.h"

struct np_recv {
  /* not first: walk_close (np_core.c) takes a handle whose data is its own
   * address for a natpunch handle */
  int fd; /* the duplicate; -1 once closed */
  int active;
  np_ctx *ctx;
  np_recv_cb cb;
  void *arg;
  uv_poll_t poll; /* data: this struct */
};

/* One recvmmsg: hand over each datagram, then the end of the batch. */
static void read_batch(np_recv *r) {
  struct mmsghdr msgs[NP_RECV_BATCH];
  struct iovec iov[NP_RECV_BATCH];
  struct sockaddr_storage from[NP_RECV_BATCH];
  for (unsigned k = 0; k < NP_RECV_BATCH; k++) {
    iov[k] = (struct iovec){.iov_base = r->ctx->recv_buf + (size_t)k * NP_RECV_SLOT,
                            .iov_len = NP_RECV_SLOT};
    msgs[k] = (struct mmsghdr){.msg_hdr = {.msg_name = &from[k],
                                           .msg_namelen = sizeof from[k],
                                           .msg_iov = &iov[k],
                                           .msg_iovlen = 1}};
  }
  int n;
  do n = recvmmsg(r->fd, msgs, NP_RECV_BATCH, 0, NULL);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    int err = errno;
    r->cb(r->arg, err == EAGAIN || err == EWOULDBLOCK ? 0 : uv_translate_sys_error(err), NULL, NULL,
          0);
    return;
  }
  for (int k = 0; k < n; k++) {
    /* the callback may stop or close: r stays valid until libuv's close
     * callback, after this returns */
    int more =
        r->cb(r->arg, (ssize_t)msgs[k].msg_len, iov[k].iov_base, (const struct sockaddr *)&from[k],
              (msgs[k].msg_hdr.msg_flags & MSG_TRUNC) != 0);
    if (!more || !r->active) return;
  }
  r->cb(r->arg, 0, NULL, NULL, 0);
}

static void on_readable(uv_poll_t *p, int status, int events) {
  (void)events;
  np_recv *r = p->data;
  if (!r->active) return;
  /* POLLERR: libuv has stopped the poll (status UV_EBADF); the pending
   * socket error is read (and cleared) by the recvmmsg below, reported to
   * the callback, and the socket is watched again */
  read_batch(r);
  if (status < 0 && r->active) uv_poll_start(&r->poll, UV_READABLE, on_readable);
}

int np_recv_start(np_recv **pr, np_ctx *ctx, int fd, np_recv_cb cb, void *arg) {
  np_recv *r = *pr;
  if (!r) {
    r = calloc(1, sizeof *r);
    if (!r) return UV_ENOMEM;
    r->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (r->fd < 0) {
      int err = uv_translate_sys_error(errno);
      free(r);
      return err;
    }
    int rc = uv_poll_init(&ctx->loop, &r->poll, r->fd);
    if (rc < 0) {
      close(r->fd);
      free(r);
      return rc;
    }
    r->poll.data = r;
    r->ctx = ctx;
    *pr = r;
  }
  r->cb = cb;
  r->arg = arg;
  int rc = uv_poll_start(&r->poll, UV_READABLE, on_readable);
  r->active = rc == 0;
  return rc;
}

void np_recv_stop(np_recv *r) {
  if (!r || !r->active) return;
  r->active = 0;
  uv_poll_stop(&r->poll);
}

static void on_closed(uv_handle_t *h) {
  free(h->data);
}

void np_recv_close(np_recv **pr) {
  np_recv *r = *pr;
  if (!r) return;
  *pr = NULL;
  r->active = 0;
  /* uv_close takes the duplicate out of epoll at once (uv__poll_stop) and
   * never touches the fd again: it can be closed now */
  uv_close((uv_handle_t *)&r->poll, on_closed);
  close(r->fd);
  r->fd = -1;
}
