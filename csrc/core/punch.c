/*
 * punch.c - UDP hole punching connectivity checks (see punch.h and the
 * "Punch" section of docs/PROTOCOL.md).
 */
#include "punch.h"
#include "addr.h"
#include "wire.h"

#include <stdlib.h>
#include <string.h>

/*
 *   0      1      2                     10            14                    22
 *  +------+------+---------------------+-------------+---------------------+
 *  | 0x08 | kind |   nonce (8 bytes)   |  seq (u32)  |  tie-breaker (u64)  |
 *  +------+------+---------------------+-------------+---------------------+
 */
#define OFF_KIND  1
#define OFF_NONCE 2
#define OFF_SEQ   10
#define OFF_TIE   14

#define NO_CAND 0xff

typedef struct cand {
  struct sockaddr_storage addr;
  uint8_t kind;
  uint32_t priority;
  uint64_t last_triggered; /* rate limit of triggered checks */
  int triggered_once;
} cand;

typedef struct sent_req {
  uint32_t seq; /* 0: empty */
  uint8_t cand;
  uint8_t answered; /* a response came: the next one is a replay */
  uint64_t at;
} sent_req;

/* Request seqs seen from one peer tie-breaker: the highest and a bitmap of
 * the PUNCH_REPLAY_WINDOW below it (bit k: top - k seen). */
typedef struct replay_win {
  int used;
  uint64_t tie;
  uint32_t top;
  uint64_t bits[PUNCH_REPLAY_WINDOW / 64];
  uint64_t last; /* when it last accepted a seq (oldest is reused) */
} replay_win;

typedef struct qent {
  uint8_t kind;
  uint8_t cand_kind;
  int reason;
  uint32_t rtt_ms;
  struct sockaddr_storage addr;
  uint8_t frame[PUNCH_FRAME_LEN];
} qent;

struct punch_session {
  punch_config cfg;
  uint8_t nonce[PUNCH_NONCE_LEN];
  uint64_t tie;
  uint64_t peer_tie;
  int have_peer_tie;
  punch_state state;
  void *user;

  uint64_t started_at, next_round_at, deadline_at;
  uint32_t interval;
  uint32_t next_seq;
  int heard_request;
  int lingered; /* succeeded and start + timeout has passed */

  cand cands[PUNCH_MAX_CANDIDATES];
  unsigned ncands;
  sent_req hist[PUNCH_HISTORY]; /* indexed by seq % PUNCH_HISTORY */
  replay_win win[PUNCH_REPLAY_TIES];

  unsigned selected;
  uint32_t selected_rtt;

  qent q[PUNCH_QUEUE];
  unsigned qhead, qcount;
  punch_stats stats;
};

const char *punch_errname(int err) {
  switch (err) {
#define XX(name, value, msg) \
  case value: return #name;
    PUNCH_ERRNO_MAP(XX)
#undef XX
  }
  return "UNKNOWN";
}

const char *punch_strerror(int err) {
  switch (err) {
#define XX(name, value, msg) \
  case value: return msg;
    PUNCH_ERRNO_MAP(XX)
#undef XX
  }
  return "unknown punch error";
}

const char *punch_cand_kind_name(int kind) {
  switch (kind) {
  case PUNCH_CAND_PRIVATE: return "private";
  case PUNCH_CAND_PUBLIC: return "public";
  case PUNCH_CAND_PEER_REFLEXIVE: return "peer-reflexive";
  default: return "unknown";
  }
}

/*
 * Defaults: the first round goes out at once and the second 20 ms later, so
 * a request lost to a hole that was not open yet is repeated well within a
 * typical Internet RTT; doubling to 200 ms keeps a failing attempt to about
 * 5 packets per second per candidate.  5 s covers introductions that reach
 * the two peers seconds apart, and is short enough for a fallback.
 */
void punch_config_default(punch_config *cfg) {
  cfg->initial_interval_ms = 20;
  cfg->max_interval_ms = 200;
  cfg->backoff = 2;
  cfg->timeout_ms = 5000;
}

int punch_config_check(const punch_config *cfg) {
  if (cfg == NULL || cfg->initial_interval_ms == 0 || cfg->backoff == 0) return PUNCH_EINVAL;
  if (cfg->max_interval_ms < cfg->initial_interval_ms || cfg->timeout_ms == 0) return PUNCH_EINVAL;
  return PUNCH_OK;
}

int punch_parse(const uint8_t *buf, size_t len, punch_frame *out) {
  if (buf == NULL || len < PUNCH_FRAME_LEN || buf[0] != WIRE_PUNCH) return PUNCH_EMALFORMED;
  if (buf[OFF_KIND] != PUNCH_REQUEST && buf[OFF_KIND] != PUNCH_RESPONSE) return PUNCH_EMALFORMED;
  out->kind = buf[OFF_KIND];
  memcpy(out->nonce, buf + OFF_NONCE, PUNCH_NONCE_LEN);
  out->seq = be32(buf + OFF_SEQ);
  out->tie = be64(buf + OFF_TIE);
  if (out->seq == 0) return PUNCH_EMALFORMED; /* seqs start at 1 */
  return PUNCH_OK;
}

size_t punch_build(uint8_t *buf, const punch_frame *f) {
  buf[0] = WIRE_PUNCH;
  buf[OFF_KIND] = f->kind;
  memcpy(buf + OFF_NONCE, f->nonce, PUNCH_NONCE_LEN);
  put_be32(buf + OFF_SEQ, f->seq);
  put_be64(buf + OFF_TIE, f->tie);
  return PUNCH_FRAME_LEN;
}

/* ---- session ---- */

punch_session *punch_session_new(const punch_config *cfg, const uint8_t nonce[PUNCH_NONCE_LEN],
                                 uint64_t tie_breaker) {
  if (punch_config_check(cfg) != PUNCH_OK || nonce == NULL) return NULL;
  punch_session *s = calloc(1, sizeof *s);
  if (s == NULL) return NULL;
  s->cfg = *cfg;
  memcpy(s->nonce, nonce, PUNCH_NONCE_LEN);
  s->tie = tie_breaker;
  s->state = PUNCH_STATE_NEW;
  s->next_seq = 1;
  s->selected = NO_CAND;
  return s;
}

void punch_session_free(punch_session *s) {
  free(s);
}

/* Transmits may be dropped when the queue is full (UDP loses packets
 * anyway); the last entry is kept for the one SUCCEEDED/FAILED. */
static qent *enqueue(punch_session *s, uint8_t kind) {
  unsigned limit = kind == PUNCH_TRANSMIT ? PUNCH_QUEUE - 1 : PUNCH_QUEUE;
  if (s->qcount >= limit) {
    s->stats.actions_dropped++;
    return NULL;
  }
  qent *e = &s->q[(s->qhead + s->qcount) % PUNCH_QUEUE];
  s->qcount++;
  memset(e, 0, sizeof *e);
  e->kind = kind;
  return e;
}

static void queue_frame(punch_session *s, const struct sockaddr_storage *to, uint8_t kind,
                        uint32_t seq) {
  qent *e = enqueue(s, PUNCH_TRANSMIT);
  if (e == NULL) return;
  punch_frame f;
  f.kind = kind;
  memcpy(f.nonce, s->nonce, PUNCH_NONCE_LEN);
  f.seq = seq;
  f.tie = s->tie;
  punch_build(e->frame, &f);
  e->addr = *to;
}

static void send_request(punch_session *s, uint64_t now, unsigned ci) {
  uint32_t seq = s->next_seq++;
  if (s->next_seq == 0) s->next_seq = 1;
  sent_req *h = &s->hist[seq % PUNCH_HISTORY];
  h->seq = seq;
  h->cand = (uint8_t)ci;
  h->answered = 0;
  h->at = now;
  s->stats.requests_sent++;
  queue_frame(s, &s->cands[ci].addr, PUNCH_REQUEST, seq);
}

static void send_triggered(punch_session *s, uint64_t now, unsigned ci) {
  cand *c = &s->cands[ci];
  /* One triggered check per candidate per initial interval: two peers that
   * trigger each other cannot ping-pong faster than that. */
  if (c->triggered_once && now - c->last_triggered < s->cfg.initial_interval_ms) return;
  c->triggered_once = 1;
  c->last_triggered = now;
  s->stats.triggered++;
  send_request(s, now, ci);
}

/* Probe order of a round: private candidates first (peers behind the same
 * NAT then settle on the LAN path), then by priority, then by age. */
static int probes_before(const cand *a, unsigned ia, const cand *b, unsigned ib) {
  int pa = a->kind == PUNCH_CAND_PRIVATE, pb = b->kind == PUNCH_CAND_PRIVATE;
  if (pa != pb) return pa;
  if (a->priority != b->priority) return a->priority > b->priority;
  return ia < ib;
}

static void send_round(punch_session *s, uint64_t now) {
  unsigned order[PUNCH_MAX_CANDIDATES];
  for (unsigned i = 0; i < s->ncands; i++) {
    unsigned j = i;
    while (j > 0 && probes_before(&s->cands[i], i, &s->cands[order[j - 1]], order[j - 1])) {
      order[j] = order[j - 1];
      j--;
    }
    order[j] = i;
  }
  for (unsigned k = 0; k < s->ncands; k++) send_request(s, now, order[k]);
  s->stats.rounds++;
}

static int find_cand(const punch_session *s, const struct sockaddr *addr) {
  for (unsigned i = 0; i < s->ncands; i++)
    if (addr_equal((const struct sockaddr *)&s->cands[i].addr, addr)) return (int)i;
  return -1;
}

/* Index of the candidate, added if new; -1 if the table is full. */
static int upsert_cand(punch_session *s, const struct sockaddr *addr, int kind, uint32_t prio,
                       int *added) {
  int i = find_cand(s, addr);
  *added = 0;
  if (i >= 0) {
    cand *c = &s->cands[i];
    if (c->kind == PUNCH_CAND_PEER_REFLEXIVE && kind != PUNCH_CAND_PEER_REFLEXIVE) {
      c->kind = (uint8_t)kind;
      c->priority = prio;
    }
    return i;
  }
  if (s->ncands == PUNCH_MAX_CANDIDATES) return -1;
  cand *c = &s->cands[s->ncands];
  memset(c, 0, sizeof *c);
  addr_copy(&c->addr, addr);
  c->kind = (uint8_t)kind;
  c->priority = prio;
  *added = 1;
  s->stats.candidates = ++s->ncands;
  return (int)(s->ncands - 1);
}

int punch_session_add_candidate(punch_session *s, uint64_t now, const struct sockaddr *addr,
                                punch_cand_kind kind, uint32_t priority) {
  int added;
  if (addr == NULL || addr_len(addr) == 0) return PUNCH_EINVAL;
  if (kind != PUNCH_CAND_PRIVATE && kind != PUNCH_CAND_PUBLIC && kind != PUNCH_CAND_PEER_REFLEXIVE)
    return PUNCH_EINVAL;
  int i = upsert_cand(s, addr, kind, priority, &added);
  if (i < 0) return PUNCH_EFULL;
  if (added && s->state == PUNCH_STATE_RUNNING) send_request(s, now, (unsigned)i);
  return PUNCH_OK;
}

int punch_session_start(punch_session *s, uint64_t now) {
  if (s->state != PUNCH_STATE_NEW) return PUNCH_EINVAL;
  s->state = PUNCH_STATE_RUNNING;
  s->started_at = now;
  s->deadline_at = now + s->cfg.timeout_ms;
  s->interval = s->cfg.initial_interval_ms;
  s->next_round_at = now + s->interval;
  send_round(s, now);
  return PUNCH_OK;
}

static void fail(punch_session *s) {
  s->state = PUNCH_STATE_FAILED;
  qent *e = enqueue(s, PUNCH_FAILED);
  if (e != NULL) e->reason = s->heard_request ? PUNCH_FAIL_ONE_WAY : PUNCH_FAIL_TIMEOUT;
}

void punch_session_tick(punch_session *s, uint64_t now) {
  if (s->state == PUNCH_STATE_SUCCEEDED && now >= s->deadline_at) s->lingered = 1;
  if (s->state != PUNCH_STATE_RUNNING) return;
  if (now >= s->deadline_at) {
    fail(s);
    return;
  }
  if (now < s->next_round_at) return;
  send_round(s, now);
  uint64_t next = (uint64_t)s->interval * s->cfg.backoff;
  s->interval = next > s->cfg.max_interval_ms ? s->cfg.max_interval_ms : (uint32_t)next;
  s->next_round_at = now + s->interval;
}

uint64_t punch_session_next_deadline(const punch_session *s) {
  if (s->state == PUNCH_STATE_RUNNING)
    return s->next_round_at < s->deadline_at ? s->next_round_at : s->deadline_at;
  if (s->state == PUNCH_STATE_SUCCEEDED && !s->lingered) return s->deadline_at;
  return UINT64_MAX;
}

static void learn_peer_tie(punch_session *s, uint64_t tie) {
  if (!s->have_peer_tie) {
    s->peer_tie = tie;
    s->have_peer_tie = 1;
  }
}

static int win_bit(const replay_win *w, uint32_t back) {
  return (int)((w->bits[back / 64] >> (back % 64)) & 1);
}

static void win_set(replay_win *w, uint32_t back) {
  w->bits[back / 64] |= 1ull << (back % 64);
}

/* Shift the bitmap by n (a new top n above the old one). */
static void win_shift(replay_win *w, uint32_t n) {
  const unsigned words = PUNCH_REPLAY_WINDOW / 64;
  if (n >= PUNCH_REPLAY_WINDOW) {
    memset(w->bits, 0, sizeof w->bits);
    return;
  }
  unsigned ws = n / 64, bs = n % 64;
  for (unsigned i = words; i-- > 0;) {
    uint64_t v = i >= ws ? w->bits[i - ws] << bs : 0;
    if (bs && i >= ws + 1) v |= w->bits[i - ws - 1] >> (64 - bs);
    w->bits[i] = v;
  }
}

/* 1 if (tie, seq) is new (and remember it), 0 if seen or too old. */
static int replay_accept(punch_session *s, uint64_t now, uint64_t tie, uint32_t seq) {
  replay_win *w = NULL, *spare = NULL;
  for (unsigned i = 0; i < PUNCH_REPLAY_TIES; i++) {
    replay_win *c = &s->win[i];
    if (c->used && c->tie == tie) {
      w = c;
      break;
    }
    if (spare == NULL || !c->used || (spare->used && c->last < spare->last)) spare = c;
  }
  if (w == NULL) {
    w = spare;
    memset(w, 0, sizeof *w);
    w->used = 1;
    w->tie = tie;
    w->top = seq;
    win_set(w, 0);
    w->last = now;
    return 1;
  }
  if (seq > w->top) {
    win_shift(w, seq - w->top);
    w->top = seq;
    win_set(w, 0);
  } else {
    uint32_t back = w->top - seq;
    if (back >= PUNCH_REPLAY_WINDOW || win_bit(w, back)) return 0;
    win_set(w, back);
  }
  w->last = now;
  return 1;
}

static int input_request(punch_session *s, uint64_t now, const struct sockaddr *from,
                         const punch_frame *f) {
  if (!replay_accept(s, now, f->tie, f->seq)) {
    s->stats.replayed++;
    s->stats.rejected++;
    return PUNCH_EREPLAY;
  }
  s->stats.requests_received++;
  s->heard_request = 1;
  learn_peer_tie(s, f->tie);
  struct sockaddr_storage to;
  addr_copy(&to, from);
  queue_frame(s, &to, PUNCH_RESPONSE, f->seq);
  s->stats.responses_sent++;
  if (s->state == PUNCH_STATE_SUCCEEDED) return PUNCH_OK;
  /* A source we did not know is the peer's mapping towards us: with a
   * symmetric NAT the only one that works. */
  int added;
  int i = upsert_cand(s, from, PUNCH_CAND_PEER_REFLEXIVE, 0, &added);
  if (i >= 0 && s->state == PUNCH_STATE_RUNNING) send_triggered(s, now, (unsigned)i);
  return PUNCH_OK;
}

static int input_response(punch_session *s, uint64_t now, const struct sockaddr *from,
                          const punch_frame *f) {
  s->stats.responses_received++;
  if (s->state != PUNCH_STATE_RUNNING) return PUNCH_OK; /* late: ignored */
  sent_req *h = &s->hist[f->seq % PUNCH_HISTORY];
  if (h->seq != f->seq) {
    s->stats.rejected++;
    return PUNCH_ESTALE;
  }
  if (h->answered) {
    s->stats.replayed++;
    s->stats.rejected++;
    return PUNCH_EREPLAY;
  }
  h->answered = 1;
  if (!addr_equal((const struct sockaddr *)&s->cands[h->cand].addr, from)) {
    /* The request got through but the answer left by another mapping: the
     * path is not symmetric (RFC 8445 section 7.2.5.2.1), so check the
     * address it came from instead. */
    int added;
    int i = upsert_cand(s, from, PUNCH_CAND_PEER_REFLEXIVE, 0, &added);
    if (i >= 0) send_triggered(s, now, (unsigned)i);
    s->stats.rejected++;
    return PUNCH_EPATH;
  }
  learn_peer_tie(s, f->tie);
  s->state = PUNCH_STATE_SUCCEEDED;
  s->selected = h->cand;
  uint64_t rtt = now > h->at ? now - h->at : 0;
  s->selected_rtt = rtt > UINT32_MAX ? UINT32_MAX : (uint32_t)rtt;
  qent *e = enqueue(s, PUNCH_SUCCEEDED);
  if (e != NULL) {
    e->addr = s->cands[h->cand].addr;
    e->cand_kind = s->cands[h->cand].kind;
    e->rtt_ms = s->selected_rtt;
  }
  return PUNCH_OK;
}

int punch_session_input_frame(punch_session *s, uint64_t now, const struct sockaddr *from,
                              const punch_frame *f) {
  int rc;
  if (from == NULL || addr_len(from) == 0) {
    rc = PUNCH_EINVAL;
  } else if (memcmp(f->nonce, s->nonce, PUNCH_NONCE_LEN) != 0) {
    rc = PUNCH_ENONCE;
  } else if (s->state == PUNCH_STATE_FAILED) {
    rc = PUNCH_ECLOSED; /* do not let the peer believe in a path we gave up */
  } else if (f->tie == s->tie) {
    rc = PUNCH_ESELF; /* e.g. a candidate that is our own address */
  } else if (f->kind == PUNCH_REQUEST) {
    return input_request(s, now, from, f);
  } else {
    return input_response(s, now, from, f);
  }
  s->stats.rejected++;
  return rc;
}

int punch_session_input(punch_session *s, uint64_t now, const struct sockaddr *from,
                        const uint8_t *frame, size_t len) {
  punch_frame f;
  if (punch_parse(frame, len, &f) != PUNCH_OK) {
    s->stats.rejected++;
    return PUNCH_EMALFORMED;
  }
  return punch_session_input_frame(s, now, from, &f);
}

int punch_session_pop(punch_session *s, punch_action *out) {
  if (s->qcount == 0) return 0;
  qent *e = &s->q[s->qhead];
  s->qhead = (s->qhead + 1) % PUNCH_QUEUE;
  s->qcount--;
  memset(out, 0, sizeof *out);
  out->kind = (punch_action_kind)e->kind;
  out->session = s;
  out->addr = e->addr;
  if (e->kind == PUNCH_TRANSMIT) {
    /* The entry is reused by the next enqueue, i.e. the next call. */
    out->data = e->frame;
    out->len = PUNCH_FRAME_LEN;
  }
  out->cand_kind = e->cand_kind;
  out->rtt_ms = e->rtt_ms;
  out->reason = e->reason;
  return 1;
}

punch_state punch_session_state(const punch_session *s) {
  return s->state;
}

int punch_session_finished(const punch_session *s, uint64_t now) {
  return s->state == PUNCH_STATE_FAILED ||
         (s->state == PUNCH_STATE_SUCCEEDED && (s->lingered || now >= s->deadline_at));
}

const uint8_t *punch_session_nonce(const punch_session *s) {
  return s->nonce;
}

int punch_session_selected(const punch_session *s, struct sockaddr_storage *addr, int *kind,
                           uint32_t *rtt_ms) {
  if (s->state != PUNCH_STATE_SUCCEEDED) return PUNCH_EINVAL;
  if (addr != NULL) *addr = s->cands[s->selected].addr;
  if (kind != NULL) *kind = s->cands[s->selected].kind;
  if (rtt_ms != NULL) *rtt_ms = s->selected_rtt;
  return PUNCH_OK;
}

int punch_session_controlling(const punch_session *s) {
  if (!s->have_peer_tie || s->peer_tie == s->tie) return -1;
  return s->tie > s->peer_tie;
}

void punch_session_set_user(punch_session *s, void *user) {
  s->user = user;
}

void *punch_session_user(const punch_session *s) {
  return s->user;
}

void punch_session_get_stats(const punch_session *s, punch_stats *out) {
  *out = s->stats;
}

/* ---- set of sessions sharing a socket ---- */

typedef struct early_req {
  int used;
  uint64_t at;
  struct sockaddr_storage from;
  punch_frame f;
  uint8_t raw[PUNCH_FRAME_LEN + PUNCH_TAG_MAX]; /* the frame and its tag, for the check */
  uint8_t rawlen;
} early_req;

struct punch_set {
  punch_session **sessions;
  unsigned cap, count;
  unsigned pop_next; /* round-robin start of punch_set_pop */
  early_req early[PUNCH_EARLY_MAX];
  punch_set_stats stats;
};

punch_set *punch_set_new(unsigned max_sessions) {
  if (max_sessions == 0) return NULL;
  punch_set *set = calloc(1, sizeof *set);
  if (set == NULL) return NULL;
  set->sessions = calloc(max_sessions, sizeof *set->sessions);
  if (set->sessions == NULL) {
    free(set);
    return NULL;
  }
  set->cap = max_sessions;
  return set;
}

void punch_set_free(punch_set *set) {
  if (set == NULL) return;
  for (unsigned i = 0; i < set->count; i++) punch_session_free(set->sessions[i]);
  free(set->sessions);
  free(set);
}

punch_session *punch_set_find(const punch_set *set, const uint8_t nonce[PUNCH_NONCE_LEN]) {
  for (unsigned i = 0; i < set->count; i++)
    if (memcmp(set->sessions[i]->nonce, nonce, PUNCH_NONCE_LEN) == 0) return set->sessions[i];
  return NULL;
}

unsigned punch_set_count(const punch_set *set) {
  return set->count;
}

static void early_expire(punch_set *set, uint64_t now) {
  for (unsigned i = 0; i < PUNCH_EARLY_MAX; i++) {
    early_req *e = &set->early[i];
    if (e->used && now - e->at > PUNCH_EARLY_MAX_AGE_MS) {
      e->used = 0;
      set->stats.expired++;
    }
  }
}

/* Keep the latest request per (nonce, source): replaying one is enough to
 * answer the peer, which keeps retransmitting with fresh seqs. */
static void early_store(punch_set *set, uint64_t now, const struct sockaddr *from,
                        const punch_frame *f, const uint8_t *frame, size_t len) {
  early_req *slot = NULL, *oldest = NULL;
  early_expire(set, now);
  for (unsigned i = 0; i < PUNCH_EARLY_MAX; i++) {
    early_req *e = &set->early[i];
    if (!e->used) {
      if (slot == NULL) slot = e;
      continue;
    }
    if (memcmp(e->f.nonce, f->nonce, PUNCH_NONCE_LEN) == 0 &&
        addr_equal((const struct sockaddr *)&e->from, from)) {
      slot = e;
      break;
    }
    if (oldest == NULL || e->at < oldest->at) oldest = e;
  }
  if (slot == NULL) {
    slot = oldest;
    set->stats.evicted++;
  }
  slot->used = 1;
  slot->at = now;
  addr_copy(&slot->from, from);
  slot->f = *f;
  if (len > sizeof slot->raw) len = sizeof slot->raw;
  memcpy(slot->raw, frame, len);
  slot->rawlen = (uint8_t)len;
  set->stats.cached++;
}

static void early_replay(punch_set *set, punch_session *s, uint64_t now, punch_verify_fn verify,
                         void *arg) {
  early_expire(set, now);
  for (;;) {
    early_req *first = NULL;
    for (unsigned i = 0; i < PUNCH_EARLY_MAX; i++) {
      early_req *e = &set->early[i];
      if (e->used && memcmp(e->f.nonce, s->nonce, PUNCH_NONCE_LEN) == 0 &&
          (first == NULL || e->at < first->at))
        first = e;
    }
    if (first == NULL) return;
    first->used = 0;
    if (verify != NULL && !verify(arg, first->raw, first->rawlen)) {
      set->stats.early_rejected++;
      continue;
    }
    set->stats.replayed++;
    punch_session_input_frame(s, now, (const struct sockaddr *)&first->from, &first->f);
  }
}

punch_session *punch_set_add(punch_set *set, uint64_t now, const punch_config *cfg,
                             const uint8_t nonce[PUNCH_NONCE_LEN], uint64_t tie_breaker, int *err) {
  return punch_set_add_verified(set, now, cfg, nonce, tie_breaker, NULL, NULL, err);
}

punch_session *punch_set_add_verified(punch_set *set, uint64_t now, const punch_config *cfg,
                                      const uint8_t nonce[PUNCH_NONCE_LEN], uint64_t tie_breaker,
                                      punch_verify_fn verify, void *arg, int *err) {
  int dummy;
  if (err == NULL) err = &dummy;
  if (nonce == NULL || punch_config_check(cfg) != PUNCH_OK) {
    *err = PUNCH_EINVAL;
    return NULL;
  }
  if (punch_set_find(set, nonce) != NULL) {
    *err = PUNCH_EEXIST;
    return NULL;
  }
  if (set->count == set->cap) {
    *err = PUNCH_EFULL;
    return NULL;
  }
  punch_session *s = punch_session_new(cfg, nonce, tie_breaker);
  if (s == NULL) {
    *err = PUNCH_EINVAL;
    return NULL;
  }
  set->sessions[set->count++] = s;
  early_replay(set, s, now, verify, arg);
  *err = PUNCH_OK;
  return s;
}

void punch_set_remove(punch_set *set, punch_session *s) {
  for (unsigned i = 0; i < set->count; i++) {
    if (set->sessions[i] != s) continue;
    set->sessions[i] = set->sessions[--set->count];
    punch_session_free(s);
    return;
  }
}

int punch_set_input(punch_set *set, uint64_t now, const struct sockaddr *from, const uint8_t *frame,
                    size_t len) {
  punch_frame f;
  if (punch_parse(frame, len, &f) != PUNCH_OK) {
    set->stats.malformed++;
    return PUNCH_EMALFORMED;
  }
  if (from == NULL || addr_len(from) == 0) return PUNCH_EINVAL;
  punch_session *s = punch_set_find(set, f.nonce);
  if (s != NULL) return punch_session_input_frame(s, now, from, &f);
  if (f.kind == PUNCH_REQUEST) {
    early_store(set, now, from, &f, frame, len);
    return PUNCH_CACHED;
  }
  set->stats.unknown++;
  return PUNCH_ENONCE;
}

void punch_set_tick(punch_set *set, uint64_t now) {
  for (unsigned i = 0; i < set->count; i++) punch_session_tick(set->sessions[i], now);
  early_expire(set, now);
}

uint64_t punch_set_next_deadline(const punch_set *set) {
  uint64_t next = UINT64_MAX;
  for (unsigned i = 0; i < set->count; i++) {
    uint64_t d = punch_session_next_deadline(set->sessions[i]);
    if (d < next) next = d;
  }
  return next;
}

int punch_set_pop(punch_set *set, punch_action *out) {
  for (unsigned k = 0; k < set->count; k++) {
    unsigned i = (set->pop_next + k) % set->count;
    if (punch_session_pop(set->sessions[i], out)) {
      set->pop_next = (i + 1) % set->count;
      return 1;
    }
  }
  return 0;
}

void punch_set_get_stats(const punch_set *set, punch_set_stats *out) {
  *out = set->stats;
}
