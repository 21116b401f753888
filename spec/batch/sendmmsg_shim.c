/*
 * sendmmsg_shim.c - fault injection for spec/batch_spec.lua, loaded with
 * LD_PRELOAD into a child process: sendmmsg(2) sends at most 5 datagrams
 * per call and fails with EAGAIN when 6 to 10 are left, the two answers a
 * nearly full socket buffer gives.  Loopback never does either (its skbs
 * leave the send buffer at once), so without this np_udp_batch.c's
 * fallback to libuv's send queue would go untested.  Stateless on purpose.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <sys/socket.h>

typedef int sendmmsg_fn(int, struct mmsghdr *, unsigned int, int);

int sendmmsg(int fd, struct mmsghdr *msgs, unsigned int n, int flags) {
  sendmmsg_fn *real = (sendmmsg_fn *)dlsym(RTLD_NEXT, "sendmmsg");
  if (!real) {
    errno = ENOSYS;
    return -1;
  }
  if (n >= 6 && n <= 10) {
    errno = EAGAIN;
    return -1;
  }
  return real(fd, msgs, n < 5 ? n : 5, flags);
}
