/*
 * test_punch.c - plain C tests of punch.c: peers behind simulated NATs
 * (full cone, restricted, port-restricted, symmetric) with a simulated
 * clock and latency, plus unit tests of the frame, the session and the set.
 * Prints "N passed, N failed"; exits non-zero on failure.
 */
#include "addr.h"
#include "punch.h"
#include "wire.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

static uint32_t ip4(unsigned a, unsigned b, unsigned c, unsigned d) {
  return (uint32_t)(a << 24 | b << 16 | c << 8 | d);
}

static void sa_set(struct sockaddr_storage *ss, uint32_t ip, uint16_t port) {
  struct sockaddr_in in;
  memset(ss, 0, sizeof *ss);
  memset(&in, 0, sizeof in);
  in.sin_family = AF_INET;
  in.sin_addr.s_addr = htonl(ip);
  in.sin_port = htons(port);
  memcpy(ss, &in, sizeof in);
}

static uint32_t sa_ip(const struct sockaddr_storage *ss) {
  struct sockaddr_in in;
  memcpy(&in, ss, sizeof in);
  return ntohl(in.sin_addr.s_addr);
}

#define SA(ss) ((const struct sockaddr *)(ss))

/* ---- simulated Internet with NATs (RFC 4787 vocabulary in comments) ---- */

#define LAN_MS   1
#define MAP_MAX  64
#define PERM_MAX 256
#define PKT_MAX  4096
#define NAT_MAX  5
#define HOST_MAX 6
#define PAIR_MAX 4

typedef enum nat_type {
  NAT_FULL_CONE,       /* endpoint-independent mapping and filtering */
  NAT_RESTRICTED,      /* EIM, address-dependent filtering */
  NAT_PORT_RESTRICTED, /* EIM, address-and-port-dependent filtering */
  NAT_SYMMETRIC        /* address-and-port-dependent mapping and filtering */
} nat_type;

static const char *nat_name(nat_type t) {
  static const char *const names[] = {"full-cone", "restricted", "port-restricted", "symmetric"};
  return names[t];
}

typedef struct mapping {
  uint32_t in_ip, to_ip;
  uint16_t in_port, to_port, ext_port;
} mapping;

typedef struct perm {
  uint16_t ext_port, port;
  uint32_t ip;
} perm;

typedef struct nat {
  nat_type type;
  uint32_t pub_ip;
  uint32_t lan; /* /24 prefix of its LAN */
  int hairpin;
  uint16_t next_port;
  mapping map[MAP_MAX];
  unsigned nmap;
  perm perm[PERM_MAX];
  unsigned nperm;
} nat;

typedef struct host {
  uint32_t ip;
  uint16_t port;
  int nat; /* -1: on the public Internet */
  uint64_t tie;
  punch_set *set;
} host;

typedef struct pkt {
  uint64_t at;
  int lan; /* delivered inside this NAT's LAN, or -1 */
  uint32_t src_ip, dst_ip;
  uint16_t src_port, dst_port;
  size_t len;
  uint8_t data[PUNCH_FRAME_LEN];
} pkt;

/* What one side of a pairing saw. */
typedef struct outcome {
  uint64_t start_at;
  int started;
  unsigned successes, failures;
  uint64_t at;
  struct sockaddr_storage addr;
  int kind, reason;
  uint32_t rtt;
  unsigned req_after; /* requests transmitted after success */
  struct sockaddr_storage cand[4];
  int ckind[4];
  unsigned ncand;
  punch_session *sess;
} outcome;

typedef struct pairing {
  int host[2];
  uint8_t nonce[PUNCH_NONCE_LEN];
  struct sockaddr_storage srflx[2]; /* as the rendezvous server saw each */
  outcome side[2];
} pairing;

typedef struct world {
  uint64_t now;
  uint32_t wan_ms; /* one way across the Internet */
  punch_config cfg;
  nat nats[NAT_MAX];
  unsigned nnat;
  host hosts[HOST_MAX];
  unsigned nhost;
  pairing pairs[PAIR_MAX];
  unsigned npair;
  pkt q[PKT_MAX];
  unsigned nq;
  unsigned filtered, unroutable, overflow, self_rejects;
} world;

static const uint32_t server_ip = 0xc6336401; /* 198.51.100.1, rendezvous */
#define SERVER_PORT 3478

static world *world_new(uint32_t wan_ms) {
  world *w = calloc(1, sizeof *w);
  w->wan_ms = wan_ms;
  punch_config_default(&w->cfg);
  return w;
}

static void world_free(world *w) {
  for (unsigned i = 0; i < w->nhost; i++) punch_set_free(w->hosts[i].set);
  free(w);
}

static int add_nat(world *w, nat_type t, uint32_t pub_ip, uint32_t lan, int hairpin) {
  nat *n = &w->nats[w->nnat];
  n->type = t;
  n->pub_ip = pub_ip;
  n->lan = lan;
  n->hairpin = hairpin;
  n->next_port = (uint16_t)(40000 + 1000 * w->nnat);
  return (int)w->nnat++;
}

static int add_host(world *w, int nat_idx, uint32_t ip, uint16_t port) {
  host *h = &w->hosts[w->nhost];
  h->ip = ip;
  h->port = port;
  h->nat = nat_idx;
  h->tie = 0x9e3779b97f4a7c15ull * (w->nhost + 1);
  h->set = punch_set_new(8);
  return (int)w->nhost++;
}

/* Outbound translation: the mapping's external port (created if needed,
 * RFC 4787 section 4.1) and a filter permission for the destination. */
static uint16_t nat_out(world *w, nat *n, uint32_t ip, uint16_t port, uint32_t dip,
                        uint16_t dport) {
  mapping *m = NULL;
  for (unsigned i = 0; i < n->nmap && m == NULL; i++) {
    mapping *c = &n->map[i];
    if (c->in_ip != ip || c->in_port != port) continue;
    if (n->type == NAT_SYMMETRIC && (c->to_ip != dip || c->to_port != dport)) continue;
    m = c;
  }
  if (m == NULL) {
    if (n->nmap == MAP_MAX) {
      w->overflow++;
      return 0;
    }
    m = &n->map[n->nmap++];
    m->in_ip = ip;
    m->in_port = port;
    m->to_ip = dip;
    m->to_port = dport;
    m->ext_port = n->next_port++;
  }
  for (unsigned i = 0; i < n->nperm; i++) {
    perm *p = &n->perm[i];
    if (p->ext_port == m->ext_port && p->ip == dip && p->port == dport) return m->ext_port;
  }
  if (n->nperm == PERM_MAX) {
    w->overflow++;
  } else {
    n->perm[n->nperm++] = (perm){m->ext_port, dport, dip};
  }
  return m->ext_port;
}

/* Inbound filtering (RFC 4787 section 5); 1 and the internal endpoint if
 * the packet may pass. */
static int nat_in(const nat *n, uint32_t sip, uint16_t sport, uint16_t dport, uint32_t *ip,
                  uint16_t *port) {
  const mapping *m = NULL;
  for (unsigned i = 0; i < n->nmap; i++)
    if (n->map[i].ext_port == dport) m = &n->map[i];
  if (m == NULL) return 0;
  int ok = n->type == NAT_FULL_CONE;
  for (unsigned i = 0; i < n->nperm && !ok; i++) {
    const perm *p = &n->perm[i];
    if (p->ext_port != dport || p->ip != sip) continue;
    ok = n->type == NAT_RESTRICTED || p->port == sport;
  }
  if (!ok) return 0;
  *ip = m->in_ip;
  *port = m->in_port;
  return 1;
}

static int is_lab_private(uint32_t ip) {
  return (ip >> 17) == (ip4(198, 18, 0, 0) >> 17);
}

static void enqueue(world *w, uint64_t at, int lan, uint32_t sip, uint16_t sport, uint32_t dip,
                    uint16_t dport, const uint8_t *data, size_t len) {
  if (w->nq == PKT_MAX || len > PUNCH_FRAME_LEN) {
    w->overflow++;
    return;
  }
  pkt *p = &w->q[w->nq++];
  *p = (pkt){at, lan, sip, dip, sport, dport, len, {0}};
  memcpy(p->data, data, len);
}

static void host_send(world *w, const host *h, uint32_t dip, uint16_t dport, const uint8_t *data,
                      size_t len) {
  if (h->nat < 0) {
    enqueue(w, w->now + w->wan_ms, -1, h->ip, h->port, dip, dport, data, len);
    return;
  }
  nat *n = &w->nats[h->nat];
  if ((dip & 0xffffff00u) == n->lan) { /* same LAN: straight there */
    enqueue(w, w->now + LAN_MS, h->nat, h->ip, h->port, dip, dport, data, len);
    return;
  }
  if (is_lab_private(dip)) { /* another LAN's private address */
    w->unroutable++;
    return;
  }
  uint16_t ext = nat_out(w, n, h->ip, h->port, dip, dport);
  if (dip == n->pub_ip) { /* hairpinning, RFC 4787 section 6 */
    if (n->hairpin)
      enqueue(w, w->now + 2 * LAN_MS, -1, n->pub_ip, ext, dip, dport, data, len);
    else
      w->unroutable++;
    return;
  }
  enqueue(w, w->now + w->wan_ms, -1, n->pub_ip, ext, dip, dport, data, len);
}

static outcome *outcome_of(world *w, const punch_action *a) {
  (void)w;
  return (outcome *)punch_session_user(a->session);
}

static void drain(world *w, int hi) {
  host *h = &w->hosts[hi];
  punch_action a;
  while (punch_set_pop(h->set, &a)) {
    outcome *o = outcome_of(w, &a);
    if (a.kind == PUNCH_TRANSMIT) {
      struct sockaddr_in in;
      memcpy(&in, &a.addr, sizeof in);
      if (o != NULL && o->successes > 0 && a.data[1] == PUNCH_REQUEST) o->req_after++;
      host_send(w, h, ntohl(in.sin_addr.s_addr), ntohs(in.sin_port), a.data, a.len);
    } else if (a.kind == PUNCH_SUCCEEDED && o != NULL) {
      if (o->successes++ == 0) {
        o->at = w->now;
        o->addr = a.addr;
        o->kind = a.cand_kind;
        o->rtt = a.rtt_ms;
      }
    } else if (a.kind == PUNCH_FAILED && o != NULL) {
      if (o->failures++ == 0) {
        o->at = w->now;
        o->reason = a.reason;
      }
    }
  }
}

static void deliver(world *w, const pkt *p) {
  uint32_t ip = p->dst_ip;
  uint16_t port = p->dst_port;
  int lan = p->lan;
  if (lan < 0) {
    for (unsigned i = 0; i < w->nnat; i++) {
      if (w->nats[i].pub_ip != ip) continue;
      if (!nat_in(&w->nats[i], p->src_ip, p->src_port, port, &ip, &port)) {
        w->filtered++;
        return;
      }
      lan = (int)i;
    }
  }
  for (unsigned i = 0; i < w->nhost; i++) {
    host *h = &w->hosts[i];
    if (h->ip != ip || h->port != port || h->nat != lan) continue;
    struct sockaddr_storage from;
    sa_set(&from, p->src_ip, p->src_port);
    if (punch_set_input(h->set, w->now, SA(&from), p->data, p->len) == PUNCH_ESELF)
      w->self_rejects++;
    drain(w, (int)i);
    return;
  }
  w->unroutable++;
}

/* The rendezvous server's introduction: each side learns the other's
 * private endpoint (if behind a NAT) and public endpoint as the server saw
 * it (the mapping towards the server). */
static pairing *introduce(world *w, int ha, int hb, uint64_t start_a, uint64_t start_b) {
  pairing *p = &w->pairs[w->npair];
  p->host[0] = ha;
  p->host[1] = hb;
  for (int k = 0; k < PUNCH_NONCE_LEN; k++) p->nonce[k] = (uint8_t)(0xa0 + w->npair * 16 + k);
  for (int s = 0; s < 2; s++) {
    host *h = &w->hosts[p->host[s]];
    if (h->nat < 0) {
      sa_set(&p->srflx[s], h->ip, h->port);
    } else {
      nat *n = &w->nats[h->nat];
      sa_set(&p->srflx[s], n->pub_ip, nat_out(w, n, h->ip, h->port, server_ip, SERVER_PORT));
    }
  }
  for (int s = 0; s < 2; s++) {
    outcome *o = &p->side[s];
    const host *peer = &w->hosts[p->host[1 - s]];
    o->start_at = s == 0 ? start_a : start_b;
    if (peer->nat >= 0) {
      sa_set(&o->cand[o->ncand], peer->ip, peer->port);
      o->ckind[o->ncand++] = PUNCH_CAND_PRIVATE;
    }
    o->cand[o->ncand] = p->srflx[1 - s];
    o->ckind[o->ncand++] = PUNCH_CAND_PUBLIC;
  }
  w->npair++;
  return p;
}

static void start_side(world *w, pairing *p, int s) {
  outcome *o = &p->side[s];
  host *h = &w->hosts[p->host[s]];
  int err;
  o->started = 1;
  o->sess = punch_set_add(h->set, w->now, &w->cfg, p->nonce, h->tie, &err);
  if (o->sess == NULL) return;
  punch_session_set_user(o->sess, o);
  for (unsigned i = 0; i < o->ncand; i++)
    punch_session_add_candidate(o->sess, w->now, SA(&o->cand[i]), (punch_cand_kind)o->ckind[i],
                                o->ckind[i] == PUNCH_CAND_PRIVATE ? 200 : 100);
  punch_session_start(o->sess, w->now);
  drain(w, p->host[s]);
}

static int all_resolved(const world *w) {
  for (unsigned i = 0; i < w->npair; i++)
    for (int s = 0; s < 2; s++) {
      const outcome *o = &w->pairs[i].side[s];
      if (!o->started || (o->successes == 0 && o->failures == 0)) return 0;
    }
  return 1;
}

/* Run until every side succeeded or failed and the network is empty, or
 * until `limit`.  Returns 1 if it ended by itself. */
static int sim_run(world *w, uint64_t limit) {
  for (unsigned step = 0; step < 100000; step++) {
    for (unsigned i = 0; i < w->npair; i++)
      for (int s = 0; s < 2; s++)
        if (!w->pairs[i].side[s].started && w->now >= w->pairs[i].side[s].start_at)
          start_side(w, &w->pairs[i], s);
    for (;;) {
      unsigned best = w->nq;
      for (unsigned i = 0; i < w->nq; i++)
        if (w->q[i].at <= w->now && (best == w->nq || w->q[i].at < w->q[best].at)) best = i;
      if (best == w->nq) break;
      pkt p = w->q[best];
      memmove(&w->q[best], &w->q[best + 1], (w->nq - best - 1) * sizeof *w->q);
      w->nq--;
      deliver(w, &p);
    }
    for (unsigned i = 0; i < w->nhost; i++) {
      punch_set_tick(w->hosts[i].set, w->now);
      drain(w, (int)i);
    }
    if (all_resolved(w) && w->nq == 0) return 1;
    if (w->now >= limit) return 0;
    uint64_t next = UINT64_MAX;
    for (unsigned i = 0; i < w->nq; i++)
      if (w->q[i].at < next) next = w->q[i].at;
    for (unsigned i = 0; i < w->nhost; i++) {
      uint64_t d = punch_set_next_deadline(w->hosts[i].set);
      if (d < next) next = d;
    }
    for (unsigned i = 0; i < w->npair; i++)
      for (int s = 0; s < 2; s++)
        if (!w->pairs[i].side[s].started && w->pairs[i].side[s].start_at < next)
          next = w->pairs[i].side[s].start_at;
    if (next > limit) next = limit;
    w->now = next > w->now ? next : w->now + 1;
  }
  return 0;
}

/* ---- scenario tests ---- */

#define WAN 20
#define RTT (2 * WAN)

/* Two peers on different NATs, both starting at 0. */
static world *two_nats(nat_type ta, nat_type tb, pairing **pp, uint64_t sa, uint64_t sb) {
  world *w = world_new(WAN);
  int na = add_nat(w, ta, ip4(203, 0, 113, 1), ip4(198, 18, 0, 0), 1);
  int nb = add_nat(w, tb, ip4(203, 0, 113, 2), ip4(198, 18, 1, 0), 1);
  int a = add_host(w, na, ip4(198, 18, 0, 10), 5000);
  int b = add_host(w, nb, ip4(198, 18, 1, 10), 5000);
  *pp = introduce(w, a, b, sa, sb);
  return w;
}

static void test_cone_pairs(suite *su) {
  nat_type cones[] = {NAT_FULL_CONE, NAT_RESTRICTED, NAT_PORT_RESTRICTED};
  unsigned ok = 0, fast = 0, consistent = 0, quiet = 0;
  for (int i = 0; i < 3; i++)
    for (int j = 0; j < 3; j++) {
      pairing *p;
      world *w = two_nats(cones[i], cones[j], &p, 0, 0);
      int ended = sim_run(w, 60000);
      outcome *A = &p->side[0], *B = &p->side[1];
      int good = ended && A->successes == 1 && B->successes == 1 && !A->failures && !B->failures &&
                 A->kind == PUNCH_CAND_PUBLIC && B->kind == PUNCH_CAND_PUBLIC;
      ok += good;
      fast += good && A->at <= RTT && B->at <= RTT && A->rtt == RTT;
      consistent += good && addr_equal(SA(&A->addr), SA(&p->srflx[1])) &&
                    addr_equal(SA(&B->addr), SA(&p->srflx[0]));
      quiet += A->req_after == 0 && B->req_after == 0;
      if (!good)
        printf("  %s + %s: A %u/%u B %u/%u\n", nat_name(cones[i]), nat_name(cones[j]), A->successes,
               A->failures, B->successes, B->failures);
      world_free(w);
    }
  CHECK(su, ok == 9);
  CHECK(su, fast == 9);       /* success one RTT after the start */
  CHECK(su, consistent == 9); /* both picked the same flow */
  CHECK(su, quiet == 9);      /* no probing after success */
}

/* Symmetric NAT on one side: the cone side learns the symmetric side's new
 * port from its request (peer-reflexive) and checks it at once. */
static void test_symmetric_cone(suite *su) {
  nat_type cones[] = {NAT_FULL_CONE, NAT_RESTRICTED};
  for (int i = 0; i < 2; i++)
    for (int sym_side = 0; sym_side < 2; sym_side++) {
      pairing *p;
      world *w = sym_side == 0 ? two_nats(NAT_SYMMETRIC, cones[i], &p, 0, 0)
                               : two_nats(cones[i], NAT_SYMMETRIC, &p, 0, 0);
      int ended = sim_run(w, 60000);
      outcome *S = &p->side[sym_side], *C = &p->side[1 - sym_side];
      CHECK(su, ended && S->successes == 1 && C->successes == 1);
      CHECK(su, C->kind == PUNCH_CAND_PEER_REFLEXIVE);
      CHECK(su, !addr_equal(SA(&C->addr), SA(&p->srflx[sym_side])));
      CHECK(su,
            S->kind == PUNCH_CAND_PUBLIC && addr_equal(SA(&S->addr), SA(&p->srflx[1 - sym_side])));
      /* sym side: one RTT; cone side: its triggered check adds half. */
      CHECK(su, S->at <= RTT && C->at <= RTT + RTT / 2);
      printf("  symmetric + %s (sym side %c): sym ok at %llu ms, cone ok at %llu ms via %s\n",
             nat_name(cones[i]), sym_side ? 'B' : 'A', (unsigned long long)S->at,
             (unsigned long long)C->at, punch_cand_kind_name(C->kind));
      world_free(w);
    }
}

/* Symmetric against port-restricted or symmetric cannot be punched without
 * port prediction: both sides report FAILED exactly at the timeout. */
static void test_hopeless(suite *su) {
  nat_type others[] = {NAT_SYMMETRIC, NAT_PORT_RESTRICTED};
  for (int i = 0; i < 2; i++) {
    pairing *p;
    world *w = two_nats(NAT_SYMMETRIC, others[i], &p, 0, 0);
    int ended = sim_run(w, 60000);
    outcome *A = &p->side[0], *B = &p->side[1];
    CHECK(su, ended && w->now < 60000); /* never hangs */
    CHECK(su, A->failures == 1 && B->failures == 1 && A->successes == 0 && B->successes == 0);
    CHECK(su, A->at == w->cfg.timeout_ms && B->at == w->cfg.timeout_ms);
    /* Each side's requests die at the other's NAT: the symmetric side
     * writes from a port the other never addressed, and only the server
     * may use the symmetric side's known mapping. */
    CHECK(su, A->reason == PUNCH_FAIL_TIMEOUT && B->reason == PUNCH_FAIL_TIMEOUT);
    CHECK(su, w->filtered > 0);
    punch_stats st;
    punch_session_get_stats(A->sess, &st);
    CHECK(su, st.rounds > 10 && st.rounds < 40); /* backed off to 200 ms */
    CHECK(su, punch_session_finished(A->sess, w->now) &&
                  punch_set_next_deadline(w->hosts[0].set) == UINT64_MAX);
    world_free(w);
  }
}

/* Both peers behind the same NAT: the private path answers first. */
static void test_same_nat(suite *su) {
  for (int hairpin = 0; hairpin < 2; hairpin++) {
    world *w = world_new(WAN);
    int n = add_nat(w, NAT_PORT_RESTRICTED, ip4(203, 0, 113, 1), ip4(198, 18, 0, 0), hairpin);
    int a = add_host(w, n, ip4(198, 18, 0, 10), 5000);
    int b = add_host(w, n, ip4(198, 18, 0, 11), 6000);
    pairing *p = introduce(w, a, b, 0, 0);
    int ended = sim_run(w, 60000);
    outcome *A = &p->side[0], *B = &p->side[1];
    CHECK(su, ended && A->successes == 1 && B->successes == 1);
    CHECK(su, A->kind == PUNCH_CAND_PRIVATE && B->kind == PUNCH_CAND_PRIVATE);
    CHECK(su, A->at <= 2 * LAN_MS && B->at <= 2 * LAN_MS);
    struct sockaddr_storage b_priv;
    sa_set(&b_priv, ip4(198, 18, 0, 11), 6000);
    CHECK(su, addr_equal(SA(&A->addr), SA(&b_priv)));
    world_free(w);
  }
  /* Hairpin only (no private candidates exchanged): the public path via
   * the NAT's hairpin works. */
  world *w = world_new(WAN);
  int n = add_nat(w, NAT_PORT_RESTRICTED, ip4(203, 0, 113, 1), ip4(198, 18, 0, 0), 1);
  int a = add_host(w, n, ip4(198, 18, 0, 10), 5000);
  int b = add_host(w, n, ip4(198, 18, 0, 11), 6000);
  pairing *p = introduce(w, a, b, 0, 0);
  for (int s = 0; s < 2; s++) { /* drop the private candidate */
    p->side[s].cand[0] = p->side[s].cand[1];
    p->side[s].ckind[0] = p->side[s].ckind[1];
    p->side[s].ncand = 1;
  }
  CHECK(su, sim_run(w, 60000) && p->side[0].successes == 1 && p->side[1].successes == 1 &&
                p->side[0].kind == PUNCH_CAND_PUBLIC);
  world_free(w);
}

/* Both LANs use the same private addresses: our request to the peer's
 * "private" endpoint reaches ourselves and is refused (ESELF). */
static void test_same_private_addresses(suite *su) {
  world *w = world_new(WAN);
  int na = add_nat(w, NAT_RESTRICTED, ip4(203, 0, 113, 1), ip4(198, 18, 0, 0), 1);
  int nb = add_nat(w, NAT_PORT_RESTRICTED, ip4(203, 0, 113, 2), ip4(198, 18, 0, 0), 1);
  int a = add_host(w, na, ip4(198, 18, 0, 10), 5000);
  int b = add_host(w, nb, ip4(198, 18, 0, 10), 5000);
  pairing *p = introduce(w, a, b, 0, 0);
  CHECK(su, sim_run(w, 60000));
  CHECK(su, p->side[0].successes == 1 && p->side[1].successes == 1);
  CHECK(su, p->side[0].kind == PUNCH_CAND_PUBLIC && p->side[1].kind == PUNCH_CAND_PUBLIC);
  CHECK(su, w->self_rejects > 0);
  world_free(w);
}

/* B starts 30 ms after A: A's first requests die at B's NAT; B succeeds
 * one RTT after its start, A with its first request that reaches B after
 * B's start, or B's request's triggered check, whichever is first. */
static void test_skewed_start(suite *su) {
  /* At +85 ms A's rounds (0, 20, 60, 140 ms) all reach B's NAT before B
   * opened it or too late: only the triggered check gives 85 + 1.5 RTT. */
  uint64_t skews[] = {30, 85};
  for (int i = 0; i < 2; i++) {
    pairing *p;
    uint64_t k = skews[i];
    world *w = two_nats(NAT_PORT_RESTRICTED, NAT_PORT_RESTRICTED, &p, 0, k);
    CHECK(su, sim_run(w, 60000));
    outcome *A = &p->side[0], *B = &p->side[1];
    CHECK(su, A->successes == 1 && B->successes == 1);
    CHECK(su, B->at == k + RTT);
    CHECK(su, A->at <= k + RTT + RTT / 2);
    CHECK(su, w->filtered > 0); /* A's first round died at B's NAT */
    printf("  skewed start (B +%llu ms, RTT %d): A ok at %llu ms, B at %llu ms\n",
           (unsigned long long)k, RTT, (unsigned long long)A->at, (unsigned long long)B->at);
    world_free(w);
  }
}

/* The peer's request arrives before our session exists: the set caches it
 * and replays it when the session is added. */
static void test_early_cache_sim(suite *su) {
  world *w = world_new(WAN);
  int na = add_nat(w, NAT_PORT_RESTRICTED, ip4(203, 0, 113, 1), ip4(198, 18, 0, 0), 1);
  int a = add_host(w, na, ip4(198, 18, 0, 10), 5000);
  int b = add_host(w, -1, ip4(203, 0, 113, 50), 7000);
  pairing *p = introduce(w, a, b, 0, 30);
  CHECK(su, sim_run(w, 60000));
  outcome *A = &p->side[0], *B = &p->side[1];
  punch_set_stats st;
  punch_set_get_stats(w->hosts[b].set, &st);
  CHECK(su, st.cached >= 1 && st.replayed == 1);
  /* The replayed request (sent at 0) is answered at 30: A succeeds at 50,
   * before its 20 ms retransmission could (60). */
  CHECK(su, A->successes == 1 && A->at == 30 + WAN && A->rtt == 30 + WAN);
  CHECK(su, B->successes == 1 && B->at == 30 + RTT);
  world_free(w);
}

/* One socket punching to three peers at once. */
static void test_multi_peer(suite *su) {
  world *w = world_new(WAN);
  int nh = add_nat(w, NAT_RESTRICTED, ip4(203, 0, 113, 1), ip4(198, 18, 0, 0), 1);
  int h = add_host(w, nh, ip4(198, 18, 0, 10), 5000);
  nat_type types[3] = {NAT_FULL_CONE, NAT_RESTRICTED, NAT_SYMMETRIC};
  int peers[3];
  for (int i = 0; i < 3; i++) {
    int n = add_nat(w, types[i], ip4(203, 0, 113, (unsigned)(2 + i)),
                    ip4(198, 18, (unsigned)(1 + i), 0), 1);
    peers[i] = add_host(w, n, ip4(198, 18, (unsigned)(1 + i), 10), 5000);
  }
  pairing *p[3];
  for (int i = 0; i < 3; i++) p[i] = introduce(w, h, peers[i], (uint64_t)i * 5, (uint64_t)i * 7);
  int ended = sim_run(w, 60000);
  int ok = 0;
  for (int i = 0; i < 3; i++) {
    outcome *H = &p[i]->side[0], *P = &p[i]->side[1];
    const nat *pn = &w->nats[w->hosts[peers[i]].nat];
    int good = H->successes == 1 && P->successes == 1 && sa_ip(&H->addr) == pn->pub_ip &&
               sa_ip(&P->addr) == ip4(203, 0, 113, 1);
    char t1[ADDR_TEXT_MAX], t2[ADDR_TEXT_MAX];
    addr_to_text(SA(&H->addr), t1, sizeof t1);
    addr_to_text(SA(&P->addr), t2, sizeof t2);
    if (!good)
      printf("  multi %d: H %u/%u %s, P %u/%u %s\n", i, H->successes, H->failures, t1, P->successes,
             P->failures, t2);
    ok += good;
  }
  CHECK(su, ended && ok == 3);
  CHECK(su, punch_set_count(w->hosts[h].set) == 3);
  world_free(w);
}

/* ---- addr.c ---- */

static int parses(const char *text) {
  struct sockaddr_storage ss;
  return addr_parse(text, &ss) == 0;
}

static int roundtrips(const char *text) {
  struct sockaddr_storage ss;
  char buf[ADDR_TEXT_MAX];
  return addr_parse(text, &ss) == 0 &&
         addr_to_text(SA(&ss), buf, sizeof buf) == (int)strlen(text) && strcmp(buf, text) == 0;
}

static int private_text(const char *text) {
  struct sockaddr_storage ss;
  if (addr_parse(text, &ss) != 0) return -1;
  return addr_is_private(SA(&ss));
}

static void test_addr(suite *su) {
  CHECK(su, roundtrips("203.0.113.5:3478"));
  CHECK(su, roundtrips("0.0.0.0:0") && roundtrips("255.255.255.255:65535"));
  CHECK(su, roundtrips("[2001:db8::1]:443") && roundtrips("[::1]:1") &&
                roundtrips("[::ffff:1.2.3.4]:9"));
  const char *bad[] = {"",
                       ":",
                       "1.2.3.4",
                       "1.2.3.4:",
                       "1.2.3.4:65536",
                       "1.2.3.4:-1",
                       "1.2.3.4:80x",
                       "1.2.3.4: 80",
                       "1.2.3.256:80",
                       "host:80",
                       "::1:80",
                       "[::1]",
                       "[::1]:",
                       "[::1]80",
                       "[1.2.3.4]:80",
                       "[::1]:123456",
                       "[]:80",
                       "[::1:80",
                       "1.2.3.4:100000"};
  int rejected = 0;
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) rejected += !parses(bad[i]);
  CHECK(su, rejected == (int)(sizeof bad / sizeof *bad));
  struct sockaddr_storage a, b, m;
  addr_parse("203.0.113.5:3478", &a);
  addr_parse("[::ffff:203.0.113.5]:3478", &m);
  addr_parse("203.0.113.5:3479", &b);
  CHECK(su, addr_equal(SA(&a), SA(&m)) && addr_hash(SA(&a), 7) == addr_hash(SA(&m), 7));
  CHECK(su, !addr_equal(SA(&a), SA(&b)) && addr_hash(SA(&a), 7) != addr_hash(SA(&b), 7));
  CHECK(su, addr_hash(SA(&a), 7) != addr_hash(SA(&a), 8));
  CHECK(su, addr_port(SA(&m)) == 3478 && addr_len(SA(&a)) == sizeof(struct sockaddr_in) &&
                addr_len(SA(&m)) == sizeof(struct sockaddr_in6));
  addr_normalize(&m);
  CHECK(su, m.ss_family == AF_INET && addr_equal(SA(&a), SA(&m)) && memcmp(&a, &m, sizeof a) == 0);
  struct sockaddr_storage c;
  CHECK(su, addr_copy(&c, SA(&a)) == 0 && addr_equal(SA(&c), SA(&a)));
  struct sockaddr_storage none;
  memset(&none, 0, sizeof none);
  none.ss_family = AF_UNIX;
  char buf[ADDR_TEXT_MAX];
  CHECK(su, addr_copy(&c, SA(&none)) == -1 && addr_len(SA(&none)) == 0 &&
                !addr_equal(SA(&none), SA(&none)));
  CHECK(su, addr_to_text(SA(&none), buf, sizeof buf) == -1 && buf[0] == '\0');
  CHECK(su, addr_to_text(SA(&a), buf, 8) == -1 && buf[0] == '\0');
  CHECK(su, addr_from_ip("198.18.0.1", 80, &c) == 0 && addr_port(SA(&c)) == 80);
  CHECK(su, addr_from_ip("[::1]", 80, &c) == -1);
  /* Private vs public labels. */
  const char *priv[] = {"10.1.2.3:1",    "172.16.0.1:1",          "172.31.255.255:1",
                        "192.168.1.1:1", "198.18.0.10:1",         "198.19.255.1:1",
                        "127.0.0.1:1",   "169.254.9.9:1",         "100.64.0.1:1",
                        "[fc00::1]:1",   "[fd12:3456::1]:1",      "[fe80::1]:1",
                        "[::1]:1",       "[::ffff:192.168.0.1]:1"};
  const char *pub[] = {
      "203.0.113.1:1",   "198.51.100.7:1",   "172.32.0.1:1",          "172.15.255.255:1",
      "198.20.0.1:1",    "198.17.255.255:1", "100.128.0.1:1",         "8.8.8.8:1",
      "[2001:db8::1]:1", "[fec0::1]:1",      "[::ffff:203.0.113.1]:1"};
  int np = 0, nq = 0;
  for (size_t i = 0; i < sizeof priv / sizeof *priv; i++) np += private_text(priv[i]) == 1;
  for (size_t i = 0; i < sizeof pub / sizeof *pub; i++) nq += private_text(pub[i]) == 0;
  CHECK(su, np == (int)(sizeof priv / sizeof *priv));
  CHECK(su, nq == (int)(sizeof pub / sizeof *pub));
}

/* ---- unit tests ---- */

static const uint8_t nonce1[PUNCH_NONCE_LEN] = {1, 2, 3, 4, 5, 6, 7, 8};
static const uint8_t nonce2[PUNCH_NONCE_LEN] = {8, 7, 6, 5, 4, 3, 2, 1};

static size_t frame(uint8_t *buf, uint8_t kind, const uint8_t *nonce, uint32_t seq, uint64_t tie) {
  punch_frame f;
  f.kind = kind;
  memcpy(f.nonce, nonce, PUNCH_NONCE_LEN);
  f.seq = seq;
  f.tie = tie;
  return punch_build(buf, &f);
}

static int count_actions(punch_session *s, int kind) {
  punch_action a;
  int n = 0;
  while (punch_session_pop(s, &a)) n += (int)a.kind == kind;
  return n;
}

static void test_frame(suite *su) {
  uint8_t b[64];
  punch_frame f;
  size_t len = frame(b, PUNCH_RESPONSE, nonce1, 0x01020304, 0x1122334455667788ull);
  CHECK(su, len == PUNCH_FRAME_LEN && b[0] == WIRE_PUNCH && b[1] == 1);
  CHECK(su, memcmp(b + 2, nonce1, 8) == 0 && b[10] == 1 && b[13] == 4 && b[14] == 0x11 &&
                b[21] == 0x88);
  CHECK(su, punch_parse(b, len, &f) == PUNCH_OK && f.kind == PUNCH_RESPONSE &&
                f.seq == 0x01020304 && f.tie == 0x1122334455667788ull);
  CHECK(su, punch_parse(b, len + 10, &f) == PUNCH_OK); /* trailing bytes ignored */
  int bad = 0;
  for (size_t l = 0; l < PUNCH_FRAME_LEN; l++) bad += punch_parse(b, l, &f) == PUNCH_EMALFORMED;
  CHECK(su, bad == PUNCH_FRAME_LEN);
  b[1] = 2;
  CHECK(su, punch_parse(b, len, &f) == PUNCH_EMALFORMED);
  b[1] = 0;
  b[0] = WIRE_TOUCH;
  CHECK(su, punch_parse(b, len, &f) == PUNCH_EMALFORMED);
  frame(b, PUNCH_REQUEST, nonce1, 0, 1);
  CHECK(su, punch_parse(b, len, &f) == PUNCH_EMALFORMED); /* seq 0 */
  CHECK(su, strcmp(punch_errname(PUNCH_ENONCE), "ENONCE") == 0);
  CHECK(su, strcmp(punch_errname(PUNCH_FAIL_TIMEOUT), "ETIMEDOUT") == 0);
  CHECK(su, strcmp(punch_errname(PUNCH_FAIL_ONE_WAY), "EONEWAY") == 0);
  CHECK_ERRNO_MAP(su, PUNCH_ERRNO_MAP, punch_errname, punch_strerror);
  punch_config c;
  punch_config_default(&c);
  CHECK(su, punch_config_check(&c) == PUNCH_OK && c.initial_interval_ms == 20 &&
                c.max_interval_ms == 200);
  c.max_interval_ms = 10;
  CHECK(su, punch_config_check(&c) == PUNCH_EINVAL && punch_session_new(&c, nonce1, 1) == NULL);
}

static void test_schedule(suite *su) {
  punch_config cfg;
  punch_config_default(&cfg);
  punch_session *s = punch_session_new(&cfg, nonce1, 1);
  struct sockaddr_storage c;
  sa_set(&c, ip4(203, 0, 113, 9), 9);
  CHECK(su, punch_session_add_candidate(s, 0, SA(&c), PUNCH_CAND_PUBLIC, 1) == PUNCH_OK);
  CHECK(su, punch_session_next_deadline(s) == UINT64_MAX);
  CHECK(su, count_actions(s, PUNCH_TRANSMIT) == 0); /* nothing before start */
  punch_session_start(s, 1000);
  uint64_t times[64];
  unsigned n = 0, failed = 0;
  int reason = 0;
  uint64_t now = 1000, failed_at = 0;
  for (int step = 0; step < 200; step++) {
    punch_action a;
    while (punch_session_pop(s, &a)) {
      if (a.kind == PUNCH_TRANSMIT && n < 64) times[n++] = now;
      if (a.kind == PUNCH_FAILED) {
        failed++;
        failed_at = now;
        reason = a.reason;
      }
    }
    uint64_t d = punch_session_next_deadline(s);
    if (d == UINT64_MAX) break;
    now = d;
    punch_session_tick(s, now);
  }
  uint64_t want[] = {1000, 1020, 1060, 1140, 1300, 1500, 1700};
  int sched_ok = n > 7;
  for (int i = 0; i < 7 && sched_ok; i++) sched_ok = times[i] == want[i];
  CHECK(su, sched_ok);
  CHECK(su, n == 7 + (6000 - 1 - 1700) / 200); /* rounds before the timeout */
  CHECK(su, failed == 1 && failed_at == 6000 && reason == PUNCH_FAIL_TIMEOUT);
  CHECK(su, punch_session_state(s) == PUNCH_STATE_FAILED && punch_session_finished(s, now));
  /* A failed session is silent. */
  uint8_t b[PUNCH_FRAME_LEN];
  frame(b, PUNCH_REQUEST, nonce1, 1, 2);
  CHECK(su, punch_session_input(s, now, SA(&c), b, sizeof b) == PUNCH_ECLOSED);
  CHECK(su, count_actions(s, PUNCH_TRANSMIT) == 0);
  punch_session_free(s);
}

static void test_session_rules(suite *su) {
  punch_config cfg;
  punch_config_default(&cfg);
  punch_session *s = punch_session_new(&cfg, nonce1, 100);
  struct sockaddr_storage c1, c2, x, got;
  uint8_t b[PUNCH_FRAME_LEN];
  punch_action a;
  sa_set(&c1, ip4(203, 0, 113, 1), 1000);
  sa_set(&c2, ip4(198, 18, 5, 5), 2000);
  sa_set(&x, ip4(203, 0, 113, 1), 1001);
  punch_session_add_candidate(s, 0, SA(&c1), PUNCH_CAND_PUBLIC, 1);
  punch_session_add_candidate(s, 0, SA(&c2), PUNCH_CAND_PRIVATE, 0);
  CHECK(su, punch_session_add_candidate(s, 0, SA(&c1), PUNCH_CAND_PRIVATE, 5) == PUNCH_OK);
  CHECK(su, punch_session_add_candidate(s, 0, NULL, PUNCH_CAND_PUBLIC, 1) == PUNCH_EINVAL);
  CHECK(su, punch_session_add_candidate(s, 0, SA(&c1), (punch_cand_kind)7, 1) == PUNCH_EINVAL);
  punch_session_start(s, 0);
  /* Private first, although its priority is lower; c1 stayed public. */
  uint32_t seq_c1 = 0;
  int order_ok = punch_session_pop(s, &a) && addr_equal(SA(&a.addr), SA(&c2));
  order_ok = order_ok && punch_session_pop(s, &a) && addr_equal(SA(&a.addr), SA(&c1));
  if (order_ok) seq_c1 = be32(a.data + 10);
  CHECK(su, order_ok && punch_session_pop(s, &a) == 0);
  punch_stats st;
  punch_session_get_stats(s, &st);
  CHECK(su, st.candidates == 2);
  /* Other nonce, our own request, malformed: refused, nothing sent. */
  CHECK(su, punch_session_input(s, 1, SA(&c1), b, frame(b, PUNCH_REQUEST, nonce2, 1, 5)) ==
                PUNCH_ENONCE);
  CHECK(su, punch_session_input(s, 1, SA(&c1), b, frame(b, PUNCH_RESPONSE, nonce2, seq_c1, 5)) ==
                PUNCH_ENONCE);
  CHECK(su, punch_session_input(s, 1, SA(&c1), b, frame(b, PUNCH_REQUEST, nonce1, 1, 100)) ==
                PUNCH_ESELF);
  CHECK(su, punch_session_input(s, 1, SA(&c1), b, 10) == PUNCH_EMALFORMED);
  CHECK(su, punch_session_input(s, 1, SA(&c1), b, frame(b, PUNCH_RESPONSE, nonce1, 999, 5)) ==
                PUNCH_ESTALE);
  CHECK(su, punch_session_pop(s, &a) == 0);
  CHECK(su, punch_session_controlling(s) == -1);
  /* A request from an unknown address X: response to X, X becomes
   * peer-reflexive and gets a triggered check at once. */
  CHECK(su,
        punch_session_input(s, 5, SA(&x), b, frame(b, PUNCH_REQUEST, nonce1, 77, 50)) == PUNCH_OK);
  int resp = 0, req = 0;
  uint32_t trig_seq = 0;
  while (punch_session_pop(s, &a)) {
    CHECK(su, a.kind == PUNCH_TRANSMIT && addr_equal(SA(&a.addr), SA(&x)));
    if (a.data[1] == PUNCH_RESPONSE && be32(a.data + 10) == 77) resp++;
    if (a.data[1] == PUNCH_REQUEST) {
      req++;
      trig_seq = be32(a.data + 10);
    }
  }
  CHECK(su, resp == 1 && req == 1);
  CHECK(su, punch_session_controlling(s) == 1);
  /* The same request again within 20 ms: answered, not re-triggered. */
  punch_session_input(s, 10, SA(&x), b, frame(b, PUNCH_REQUEST, nonce1, 78, 50));
  CHECK(su, count_actions(s, PUNCH_TRANSMIT) == 1);
  /* A response to c1's request arriving from c2: not a success. */
  CHECK(su, punch_session_input(s, 12, SA(&c2), b, frame(b, PUNCH_RESPONSE, nonce1, seq_c1, 50)) ==
                PUNCH_EPATH);
  CHECK(su, count_actions(s, PUNCH_SUCCEEDED) == 0);
  /* The response to the triggered check: success via X. */
  CHECK(su, punch_session_input(s, 25, SA(&x), b, frame(b, PUNCH_RESPONSE, nonce1, trig_seq, 50)) ==
                PUNCH_OK);
  CHECK(su, punch_session_pop(s, &a) == 1 && a.kind == PUNCH_SUCCEEDED);
  CHECK(su, addr_equal(SA(&a.addr), SA(&x)) && a.cand_kind == PUNCH_CAND_PEER_REFLEXIVE &&
                a.rtt_ms == 20);
  int kind;
  uint32_t rtt;
  CHECK(su, punch_session_selected(s, &got, &kind, &rtt) == PUNCH_OK &&
                addr_equal(SA(&got), SA(&x)) && rtt == 20);
  /* After success: answer requests, no probing, one more deadline (the
   * end of the linger period), then finished. */
  punch_session_input(s, 30, SA(&c1), b, frame(b, PUNCH_REQUEST, nonce1, 79, 50));
  CHECK(su,
        punch_session_pop(s, &a) == 1 && a.kind == PUNCH_TRANSMIT && a.data[1] == PUNCH_RESPONSE);
  CHECK(su, punch_session_pop(s, &a) == 0);
  punch_session_input(s, 31, SA(&c1), b, frame(b, PUNCH_RESPONSE, nonce1, seq_c1, 50));
  CHECK(su, count_actions(s, PUNCH_SUCCEEDED) == 0); /* only the winning path */
  CHECK(su, punch_session_next_deadline(s) == cfg.timeout_ms && !punch_session_finished(s, 100));
  punch_session_tick(s, 100);
  CHECK(su, count_actions(s, PUNCH_TRANSMIT) == 0);
  punch_session_tick(s, cfg.timeout_ms);
  CHECK(su,
        punch_session_finished(s, cfg.timeout_ms) && punch_session_next_deadline(s) == UINT64_MAX);
  /* Trickled candidate while running: checked at once. */
  punch_session *t = punch_session_new(&cfg, nonce2, 1);
  punch_session_start(t, 0);
  CHECK(su, count_actions(t, PUNCH_TRANSMIT) == 0);
  punch_session_add_candidate(t, 3, SA(&c1), PUNCH_CAND_PUBLIC, 1);
  CHECK(su, count_actions(t, PUNCH_TRANSMIT) == 1);
  /* Requests come in, our requests are never answered: one-way. */
  for (uint64_t now = 0; punch_session_state(t) == PUNCH_STATE_RUNNING && now <= 6000; now += 100) {
    punch_session_input(t, now, SA(&c1), b, frame(b, PUNCH_REQUEST, nonce2, (uint32_t)now + 1, 9));
    punch_session_tick(t, now);
  }
  int failed = 0;
  while (punch_session_pop(t, &a))
    if (a.kind == PUNCH_FAILED) failed = a.reason;
  CHECK(su, failed == PUNCH_FAIL_ONE_WAY);
  punch_session_free(t);
  punch_session_free(s);
}

static void test_set_cache(suite *su) {
  punch_config cfg;
  punch_config_default(&cfg);
  punch_set *set = punch_set_new(2);
  uint8_t b[PUNCH_FRAME_LEN];
  struct sockaddr_storage from;
  punch_action a;
  int err;
  /* Unknown nonce: requests are cached, responses refused. */
  sa_set(&from, ip4(203, 0, 113, 7), 7000);
  CHECK(su, punch_set_input(set, 0, SA(&from), b, frame(b, PUNCH_RESPONSE, nonce1, 1, 9)) ==
                PUNCH_ENONCE);
  CHECK(su, punch_set_input(set, 0, SA(&from), b, 5) == PUNCH_EMALFORMED);
  /* 5 requests from one source keep one entry (the latest)... */
  for (uint32_t seq = 1; seq <= 5; seq++)
    CHECK(su, punch_set_input(set, seq, SA(&from), b, frame(b, PUNCH_REQUEST, nonce1, seq, 9)) ==
                  PUNCH_CACHED);
  /* ... and 20 other sources overflow the cache: the oldest go first. */
  for (unsigned i = 0; i < 20; i++) {
    struct sockaddr_storage f2;
    sa_set(&f2, ip4(203, 0, 113, 100), (uint16_t)(8000 + i));
    punch_set_input(set, 10 + i, SA(&f2), b, frame(b, PUNCH_REQUEST, nonce1, 100 + i, 9));
  }
  punch_set_stats st;
  punch_set_get_stats(set, &st);
  CHECK(su, st.cached == 25 && st.evicted == 20 + 1 - PUNCH_EARLY_MAX);
  punch_session *s = punch_set_add(set, 40, &cfg, nonce1, 1, &err);
  CHECK(su, s != NULL && err == PUNCH_OK && punch_set_find(set, nonce1) == s);
  int responses = 0, ordered = 1;
  uint32_t last = 0;
  while (punch_set_pop(set, &a)) {
    if (a.kind != PUNCH_TRANSMIT || a.data[1] != PUNCH_RESPONSE) continue;
    uint32_t seq = be32(a.data + 10);
    if (seq < last) ordered = 0;
    last = seq;
    responses++;
    CHECK(su, a.session == s);
  }
  CHECK(su, responses == PUNCH_EARLY_MAX && ordered); /* replayed in arrival order */
  punch_set_get_stats(set, &st);
  CHECK(su, st.replayed == PUNCH_EARLY_MAX);
  punch_stats ss;
  punch_session_get_stats(s, &ss);
  CHECK(su, ss.candidates == PUNCH_EARLY_MAX); /* each became peer-reflexive */
  CHECK(su, punch_set_add(set, 41, &cfg, nonce1, 1, &err) == NULL && err == PUNCH_EEXIST);
  /* Age bound: a request older than PUNCH_EARLY_MAX_AGE_MS is not replayed. */
  CHECK(su, punch_set_input(set, 100, SA(&from), b, frame(b, PUNCH_REQUEST, nonce2, 1, 9)) ==
                PUNCH_CACHED);
  punch_session *s2 = punch_set_add(set, 100 + PUNCH_EARLY_MAX_AGE_MS + 1, &cfg, nonce2, 1, &err);
  CHECK(su, s2 != NULL);
  int n = 0;
  while (punch_set_pop(set, &a)) n++;
  CHECK(su, n == 0);
  punch_set_get_stats(set, &st);
  CHECK(su, st.expired == 1);
  /* Capacity, removal, routing to the right session. */
  uint8_t nonce3[PUNCH_NONCE_LEN] = {3};
  CHECK(su, punch_set_add(set, 200, &cfg, nonce3, 1, &err) == NULL && err == PUNCH_EFULL);
  punch_set_remove(set, s2);
  CHECK(su, punch_set_count(set) == 1 && punch_set_find(set, nonce2) == NULL);
  CHECK(su,
        punch_set_input(set, 201, SA(&from), b, frame(b, PUNCH_REQUEST, nonce1, 1, 9)) == PUNCH_OK);
  CHECK(su, punch_set_pop(set, &a) == 1 && a.session == s && a.data[1] == PUNCH_RESPONSE);
  punch_set_free(set);
}

/* Replays: a request (tie, seq) seen before gets no response and no
 * triggered check, from any source; a response counts once. */
static void test_replay_window(suite *su) {
  punch_config cfg;
  punch_config_default(&cfg);
  punch_session *s = punch_session_new(&cfg, nonce1, 1);
  struct sockaddr_storage peer, spoof, other;
  sa_set(&peer, ip4(203, 0, 113, 9), 9000);
  sa_set(&spoof, ip4(198, 51, 100, 77), 7777);
  sa_set(&other, ip4(198, 51, 100, 78), 7778);
  punch_session_add_candidate(s, 0, SA(&peer), PUNCH_CAND_PUBLIC, 1);
  punch_session_start(s, 0);
  (void)count_actions(s, PUNCH_TRANSMIT);
  uint8_t b[PUNCH_FRAME_LEN];
  CHECK(su,
        punch_session_input(s, 1, SA(&peer), b, frame(b, PUNCH_REQUEST, nonce1, 5, 9)) == PUNCH_OK);
  CHECK(su, count_actions(s, PUNCH_TRANSMIT) == 2); /* the response and a triggered check */
  /* the same request again, from the peer or a spoofed source: nothing */
  CHECK(su, punch_session_input(s, 2, SA(&peer), b, frame(b, PUNCH_REQUEST, nonce1, 5, 9)) ==
                PUNCH_EREPLAY);
  CHECK(su, punch_session_input(s, 3, SA(&spoof), b, frame(b, PUNCH_REQUEST, nonce1, 5, 9)) ==
                PUNCH_EREPLAY);
  CHECK(su, count_actions(s, PUNCH_TRANSMIT) == 0);
  punch_stats st;
  punch_session_get_stats(s, &st);
  CHECK(su, st.replayed == 2 && st.candidates == 1 && st.triggered == 1);
  /* out of order within the window is fine, once */
  CHECK(su, punch_session_input(s, 4, SA(&peer), b, frame(b, PUNCH_REQUEST, nonce1, 300, 9)) ==
                PUNCH_OK);
  CHECK(su, punch_session_input(s, 5, SA(&peer), b, frame(b, PUNCH_REQUEST, nonce1, 299, 9)) ==
                PUNCH_OK);
  CHECK(su, punch_session_input(s, 6, SA(&peer), b, frame(b, PUNCH_REQUEST, nonce1, 299, 9)) ==
                PUNCH_EREPLAY);
  CHECK(su, punch_session_input(s, 7, SA(&peer), b, frame(b, PUNCH_REQUEST, nonce1, 45, 9)) ==
                PUNCH_OK);
  /* older than the window: dropped (seq 5 and 44 are 295 and 256 below 300) */
  CHECK(su, punch_session_input(s, 8, SA(&peer), b, frame(b, PUNCH_REQUEST, nonce1, 44, 9)) ==
                PUNCH_EREPLAY);
  CHECK(su, punch_session_input(s, 8, SA(&peer), b, frame(b, PUNCH_REQUEST, nonce1, 1000, 9)) ==
                PUNCH_OK);
  CHECK(su, punch_session_input(s, 8, SA(&peer), b, frame(b, PUNCH_REQUEST, nonce1, 300, 9)) ==
                PUNCH_EREPLAY);
  /* a new peer session (another tie-breaker) starts its own window */
  CHECK(su, punch_session_input(s, 9, SA(&peer), b, frame(b, PUNCH_REQUEST, nonce1, 5, 10)) ==
                PUNCH_OK);
  CHECK(su, punch_session_input(s, 9, SA(&peer), b, frame(b, PUNCH_REQUEST, nonce1, 5, 10)) ==
                PUNCH_EREPLAY);
  (void)count_actions(s, PUNCH_TRANSMIT);
  /* a response counts once: a replay of it from elsewhere adds no candidate */
  punch_session_tick(s, 20);
  punch_action a;
  uint32_t seq = 0;
  while (punch_session_pop(s, &a))
    if (a.kind == PUNCH_TRANSMIT && a.data[1] == PUNCH_REQUEST) seq = be32(a.data + 10);
  CHECK(su, seq != 0);
  CHECK(su, punch_session_input(s, 21, SA(&spoof), b, frame(b, PUNCH_RESPONSE, nonce1, seq, 9)) ==
                PUNCH_EPATH);
  CHECK(su, punch_session_input(s, 22, SA(&other), b, frame(b, PUNCH_RESPONSE, nonce1, seq, 9)) ==
                PUNCH_EREPLAY);
  punch_session_get_stats(s, &st);
  CHECK(su, st.candidates == 2); /* peer + the first (EPATH) source only */
  punch_session_free(s);
}

/* The set checks early requests with the session's verifier before
 * replaying them, with the bytes that followed the frame. */
static int verify_tag(void *arg, const uint8_t *frame, size_t len) {
  int *calls = arg;
  (*calls)++;
  return len == PUNCH_FRAME_LEN + 4 && memcmp(frame + PUNCH_FRAME_LEN, "good", 4) == 0;
}

static void test_set_verified(suite *su) {
  punch_config cfg;
  punch_config_default(&cfg);
  punch_set *set = punch_set_new(2);
  uint8_t b[PUNCH_FRAME_LEN + PUNCH_TAG_MAX + 8];
  struct sockaddr_storage good, bad, big;
  sa_set(&good, ip4(203, 0, 113, 7), 7000);
  sa_set(&bad, ip4(203, 0, 113, 8), 7000);
  sa_set(&big, ip4(203, 0, 113, 9), 7000);
  size_t n = frame(b, PUNCH_REQUEST, nonce1, 1, 9);
  memcpy(b + n, "good", 4);
  CHECK(su, punch_set_input(set, 0, SA(&good), b, n + 4) == PUNCH_CACHED);
  memcpy(b + n, "evil", 4);
  CHECK(su, punch_set_input(set, 0, SA(&bad), b, n + 4) == PUNCH_CACHED);
  memset(b + n, 'g', sizeof b - n); /* longer than PUNCH_TAG_MAX: kept truncated */
  CHECK(su, punch_set_input(set, 0, SA(&big), b, sizeof b) == PUNCH_CACHED);
  int calls = 0, err;
  punch_session *s = punch_set_add_verified(set, 10, &cfg, nonce1, 1, verify_tag, &calls, &err);
  CHECK(su, s != NULL && calls == 3);
  punch_action a;
  int to_good = 0, to_other = 0;
  while (punch_set_pop(set, &a)) {
    if (a.kind != PUNCH_TRANSMIT) continue;
    if (addr_equal(SA(&a.addr), SA(&good)))
      to_good++;
    else
      to_other++;
  }
  CHECK(su, to_good == 1 && to_other == 0);
  punch_set_stats st;
  punch_set_get_stats(set, &st);
  CHECK(su, st.replayed == 1 && st.early_rejected == 2);
  punch_stats ss;
  punch_session_get_stats(s, &ss);
  CHECK(su, ss.candidates == 1); /* no peer-reflexive candidate from a forged one */
  punch_set_free(set);
}

/* Random frames never crash a set or a session (ASan/UBSan build). */
static void test_garbage(suite *su) {
  punch_config cfg;
  punch_config_default(&cfg);
  punch_set *set = punch_set_new(4);
  int err;
  punch_session *s = punch_set_add(set, 0, &cfg, nonce1, 1, &err);
  struct sockaddr_storage c;
  sa_set(&c, ip4(203, 0, 113, 1), 1);
  punch_session_add_candidate(s, 0, SA(&c), PUNCH_CAND_PUBLIC, 1);
  punch_session_start(s, 0);
  uint64_t r = 88172645463325252ull;
  uint8_t b[64];
  punch_action a;
  int bad = 0;
  for (int i = 0; i < 20000; i++) {
    size_t len = 0;
    for (; len < sizeof b; len++) {
      r ^= r << 13;
      r ^= r >> 7;
      r ^= r << 17;
      b[len] = (uint8_t)r;
      if ((r >> 40) % 23 == 0) break;
    }
    if (i % 2) {
      b[0] = WIRE_PUNCH;
      if (len > 1) b[1] &= 1;
      if (i % 4 == 1 && len >= 10) memcpy(b + 2, nonce1, 8);
    }
    struct sockaddr_storage f;
    sa_set(&f, ip4(203, 0, 113, (unsigned)(r % 7)), (uint16_t)(r >> 20));
    int rc = punch_set_input(set, (uint64_t)i, SA(&f), b, len);
    if (rc > PUNCH_CACHED || rc < PUNCH_EREPLAY) bad++;
    punch_set_tick(set, (uint64_t)i);
    while (punch_set_pop(set, &a)) {}
  }
  CHECK(su, bad == 0);
  punch_set_free(set);
}

int main(void) {
  suite su = {0, 0};
  test_addr(&su);
  test_frame(&su);
  test_schedule(&su);
  test_session_rules(&su);
  test_set_cache(&su);
  test_replay_window(&su);
  test_set_verified(&su);
  test_garbage(&su);
  test_cone_pairs(&su);
  test_symmetric_cone(&su);
  test_hopeless(&su);
  test_same_nat(&su);
  test_same_private_addresses(&su);
  test_skewed_start(&su);
  test_early_cache_sim(&su);
  test_multi_peer(&su);
  printf("%d passed, %d failed\n", su.passed, su.failed);
  return su.failed == 0 ? 0 : 1;
}
