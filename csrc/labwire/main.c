/*
 * main.c - natpunch-wire: join two TAPs through the impairment engine.
 *
 * One thread, one ppoll(2) loop over the two TAP fds and a signalfd (so a
 * signal is just another readable fd and no handler needs global state).
 * Each pass: release every frame now due in both directions, then sleep
 * until a TAP is readable, a signal comes, or the next frame falls due.
 * On SIGTERM/SIGINT the counters of each direction are printed and the
 * program exits 0; the TAPs vanish with their fds.  SIGUSR1 prints the
 * same counter lines (a snapshot) and the wire goes on.
 */
/* ppoll(2) and setns(2) are GNU extensions */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "wire.h"

/* Frames read from one TAP per pass before looking at the other, so a
 * flood in one direction cannot starve the other. */
#define READ_BURST 64

struct wire {
  int fd[2];
  struct wire_dir dir[2]; /* dir[i]: frames read from fd[i] */
  struct wire_rng rng;
  char label[2][80];
};

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * WIRE_NS_PER_S + (uint64_t)ts.tv_nsec;
}

static void release(struct wire *w, int i, uint64_t now) {
  unsigned char buf[WIRE_MAX_FRAME];
  size_t len;
  while ((len = wire_dir_pop(&w->dir[i], now, buf, sizeof(buf))) > 0) {
    /* A TAP write hands the frame to the kernel at once; if the
     * kernel refuses it (device down), the frame is lost, as on
     * a wire. */
    if (write(w->fd[1 - i], buf, len) != (ssize_t)len) w->dir[i].c.write_err++;
  }
}

static void receive(struct wire *w, int i) {
  /* One byte more than the largest frame: a longer read is oversize */
  unsigned char buf[WIRE_MAX_FRAME + 1];
  for (int n = 0; n < READ_BURST; n++) {
    ssize_t len = read(w->fd[i], buf, sizeof(buf));
    if (len <= 0) return;
    wire_dir_push(&w->dir[i], now_ns(), buf, (size_t)len);
  }
}

static void print_counters(struct wire *w) {
  char label[200];
  snprintf(label, sizeof(label), "%s->%s", w->label[0], w->label[1]);
  wire_print_counters(stdout, label, &w->dir[0].c);
  snprintf(label, sizeof(label), "%s->%s", w->label[1], w->label[0]);
  wire_print_counters(stdout, label, &w->dir[1].c);
  fflush(stdout);
  w->dir[0].c.qmax = w->dir[1].c.qmax = 0; /* the high-water mark restarts */
}

static int run(struct wire *w, int sigfd) {
  struct pollfd pfd[3] = {
      {.fd = w->fd[0], .events = POLLIN},
      {.fd = w->fd[1], .events = POLLIN},
      {.fd = sigfd, .events = POLLIN},
  };
  for (;;) {
    uint64_t now = now_ns();
    release(w, 0, now);
    release(w, 1, now);
    uint64_t next = wire_dir_next(&w->dir[0], now);
    uint64_t n1 = wire_dir_next(&w->dir[1], now);
    if (n1 < next) next = n1;
    struct timespec ts, *tsp = NULL;
    if (next != UINT64_MAX) {
      uint64_t wait = next > now ? next - now : 0;
      ts.tv_sec = (time_t)(wait / WIRE_NS_PER_S);
      ts.tv_nsec = (long)(wait % WIRE_NS_PER_S);
      tsp = &ts;
    }
    if (ppoll(pfd, 3, tsp, NULL) < 0) {
      if (errno == EINTR) continue;
      perror("natpunch-wire: ppoll");
      return 1;
    }
    if (pfd[2].revents & POLLIN) {
      struct signalfd_siginfo si;
      if (read(sigfd, &si, sizeof si) == (ssize_t)sizeof si && si.ssi_signo == SIGUSR1) {
        print_counters(w); /* a snapshot; the wire goes on */
        continue;
      }
      return 0;
    }
    for (int i = 0; i < 2; i++) {
      if (pfd[i].revents & (POLLERR | POLLHUP | POLLNVAL)) {
        /* the device went away (its namespace was
         * deleted): nothing left to join */
        fprintf(stderr, "natpunch-wire: %s gone\n", w->label[i]);
        return 0;
      }
      if (pfd[i].revents & POLLIN) receive(w, i);
    }
  }
}

int main(int argc, char **argv) {
  struct wire_opts o;
  char err[256];
  int r = wire_opts_parse(&o, argc, argv, stdout, err, sizeof(err));
  if (r != 0) {
    if (r > 0) return 0;
    fprintf(stderr, "natpunch-wire: %s\n", err);
    return 2;
  }
  if (!o.seed_set) o.seed = (uint64_t)time(NULL) * 1000003u ^ (uint64_t)getpid();
  if (o.simulate) return wire_simulate(&o, stdout);

  /* Block the signals before anything else, so one that arrives while
   * we set up is not lost but read from the signalfd. */
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGHUP);
  sigaddset(&mask, SIGUSR1);
  sigprocmask(SIG_BLOCK, &mask, NULL);
  int sigfd = signalfd(-1, &mask, SFD_CLOEXEC);
  if (sigfd < 0) {
    perror("natpunch-wire: signalfd");
    return 1;
  }

  struct wire *w = calloc(1, sizeof(*w));
  if (!w) {
    fprintf(stderr, "natpunch-wire: out of memory\n");
    return 1;
  }
  wire_rng_seed(&w->rng, o.seed);
  int status = 1;
  w->fd[0] = w->fd[1] = -1;
  for (int i = 0; i < 2; i++) {
    snprintf(w->label[i], sizeof(w->label[i]), "%s@%s", o.tap[i].name,
             o.tap[i].netns ? o.tap[i].netns : "-");
    w->fd[i] = wire_tap_open(&o.tap[i], err, sizeof(err));
    if (w->fd[i] < 0) {
      fprintf(stderr, "natpunch-wire: %s\n", err);
      goto out;
    }
    if (wire_dir_init(&w->dir[i], &o.params, &w->rng) < 0) {
      fprintf(stderr, "natpunch-wire: out of memory\n");
      goto out;
    }
  }
  printf("READY %s %s seed=%llu\n", w->label[0], w->label[1], (unsigned long long)o.seed);
  fflush(stdout);

  status = run(w, sigfd);
  print_counters(w);
out:
  for (int i = 0; i < 2; i++) {
    if (w->fd[i] >= 0) close(w->fd[i]);
    wire_dir_free(&w->dir[i]);
  }
  free(w);
  close(sigfd);
  return status;
}
