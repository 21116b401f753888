/*
 * tap.c - create a TAP device inside a named network namespace.
 *
 * A tun/tap file is bound to the network namespace current when
 * /dev/net/tun was opened, so we step into the target namespace
 * (setns(2)), open and attach the TAP there, and step back.  The device
 * needs no moving afterwards and never appears in our own namespace, so
 * two labs can use the same interface names.  The TAP is not persistent:
 * when this program exits its fd closes and the device disappears.
 */
/* ppoll(2) and setns(2) are GNU extensions */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <linux/if.h>
#include <linux/if_tun.h>

#include "wire.h"

static int open_netns(const char *netns, char *err, size_t errlen) {
  char path[256];
  if (strchr(netns, '/'))
    snprintf(path, sizeof(path), "%s", netns);
  else
    snprintf(path, sizeof(path), "/run/netns/%s", netns);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) snprintf(err, errlen, "netns %s: %s", path, strerror(errno));
  return fd;
}

static int attach(const char *name, char *err, size_t errlen) {
  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    snprintf(err, errlen, "/dev/net/tun: %s", strerror(errno));
    return -1;
  }
  struct ifreq ifr;
  memset(&ifr, 0, sizeof(ifr));
  /* IFF_NO_PI: plain Ethernet frames, no packet-information header */
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
  snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    snprintf(err, errlen, "TUNSETIFF %s: %s", name, strerror(errno));
    close(fd);
    return -1;
  }
  return fd;
}

int wire_tap_open(const struct wire_tap_spec *spec, char *err, size_t errlen) {
  const char *name = spec->name;
  if (!spec->netns) return attach(name, err, errlen);

  int home = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
  if (home < 0) {
    snprintf(err, errlen, "/proc/self/ns/net: %s", strerror(errno));
    return -1;
  }
  int target = open_netns(spec->netns, err, errlen);
  if (target < 0) {
    close(home);
    return -1;
  }
  int fd = -1;
  if (setns(target, CLONE_NEWNET) < 0) {
    snprintf(err, errlen, "setns %s: %s", spec->netns, strerror(errno));
  } else {
    fd = attach(name, err, errlen);
    if (setns(home, CLONE_NEWNET) < 0) {
      /* Staying in a lab namespace would be wrong for the
       * next TAP: give up. */
      snprintf(err, errlen, "setns back: %s", strerror(errno));
      if (fd >= 0) close(fd);
      fd = -1;
    }
  }
  close(target);
  close(home);
  return fd;
}
