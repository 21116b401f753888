/*
 * np_udp_recv.h - a UDP socket's receive path: one recvmmsg(2) per
 * readable event (np_udp_recv.c).
 */
#ifndef NP_UDP_RECV_H
#define NP_UDP_RECV_H

#include <sys/types.h>
#include "natpunch.h"

typedef struct np_recv np_recv;

/* Called for each datagram of a batch (from set, n its length, truncated
 * when it was larger than its NP_RECV_SLOT), then once at the end of the
 * batch (from NULL, n 0; also after a wake-up that found nothing), or for
 * a receive error (from NULL, n a negative uv error).  For a datagram,
 * returning 0 drops the rest of the batch and its end call: the socket
 * closed or stopped receiving from a callback. */
typedef int (*np_recv_cb)(void *arg, ssize_t n, const char *data, const struct sockaddr *from,
                          int truncated);

/* Start (or restart) receiving on the socket fd: *r is created at the first
 * call.  The fd stays the caller's (a duplicate is watched).  The batch is
 * read into ctx->recv_buf.  Returns 0 or a negative uv error. */
int np_recv_start(np_recv **r, np_ctx *ctx, int fd, np_recv_cb cb, void *arg);
/* Stop receiving (also from the callback: the rest of the batch is dropped). */
void np_recv_stop(np_recv *r);
/* Stop, release the duplicate fd now (the port is free once the caller
 * closes its own), free *r once libuv is done with it; *r becomes NULL. */
void np_recv_close(np_recv **r);

#endif
