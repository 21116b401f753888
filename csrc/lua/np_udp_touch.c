/*
 * np_udp_touch.c - natdemo's touch (reliable send) on a UDP socket.
 *
 * The protocol is the pure state machine of touch.c; this file keeps one
 * touch_peer per remote endpoint in a bounded hash map, turns its actions
 * into sends, deliveries and Lua callbacks, and drives its deadlines with
 * the socket's one timer.
 *
 *   id = udp:touch(host, port, data, cb)   cb(err, id, rtt_ms) once
 *   udp:touch_config{initial_rto=, min_rto=, max_rto=, max_retries=,
 *                    max_in_flight=, max_payload=, max_peers=, accept=}
 *   udp:touch_info(host, port) -> {srtt_ms=, rto_ms=, in_flight=, ...} | nil
 * Received messages reach the receive callback with kind "touch", once.
 * An engine of the UDP hub (np_udp.h): frames TOUCH and TOUCH_ACK.
 *
 * Bounded state (no re-delivery): peer states are kept in an LRU list.  A
 * receiver must remember the ids it delivered for as long as a sender may
 * still retransmit them (idle_ms), so a state is only ever dropped once it
 * has been idle that long; when the map is full and the least recently
 * used state is younger, a new endpoint is refused (touch_refused), never
 * served by forgetting another one.  Expiry and the room check look at the
 * LRU tail only: O(1).  The timer walks only the states with work pending
 * (the active list).  With accept = "known", a TOUCH frame from an endpoint
 * that has no state is dropped (touch_unsolicited): states exist only for
 * endpoints this side chose (touch, touch_seed: a punched session), so a
 * spoofed source costs nothing.
 */
#include <stdlib.h>
#include <string.h>
#include "np_udp.h"
#include "addr.h"
#include "touch.h"
#include "wire.h"

extern const np_udp_engine np_udp_touch_engine;

enum { C_DELIVERED, C_DUPLICATES, C_ACKED, C_FAILED, C_RETRANSMITS, C_MALFORMED, C_EVICTED,
       C_REFUSED, C_UNSOLICITED };
static const char *const counters[] = {"touch_delivered", "touch_duplicates", "touch_acked",
                                       "touch_failed", "touch_retransmits", "touch_malformed",
                                       "touch_peers_evicted", "touch_refused", "touch_unsolicited",
                                       NULL};

#define TM_BUCKETS 256
#define TM_DEFAULT_MAX_PEERS 4096

typedef struct tm_cb {
  uint32_t id;
  int ref;
} tm_cb;

typedef struct tm_entry {
  struct tm_entry *next;                 /* hash chain */
  struct tm_entry *lru_prev, *lru_next;  /* all states, most recently used first */
  struct tm_entry *act_prev, *act_next;  /* states with work pending */
  int active;
  struct sockaddr_storage addr;
  touch_peer *peer;
  uint64_t last_used;
  int busy;             /* actions being processed: never evict */
  unsigned ncb;
  tm_cb *cbs;           /* max_in_flight slots */
} tm_entry;

typedef struct np_touchmap {
  tm_entry *buckets[TM_BUCKETS];
  tm_entry *lru_head, *lru_tail;
  tm_entry *act_head;
  int accept_known;     /* TOUCH frames only from endpoints with a state */
  unsigned count, max_peers;
  uint32_t seed;
  touch_config cfg;
  uint64_t idle_ms;     /* an idle peer older than this is dropped */
} np_touchmap;

static np_udp_slot *slot(np_udp *u) {
  return np_udp_slot_of(u, &np_udp_touch_engine);
}

static void lru_unlink(np_touchmap *m, tm_entry *e) {
  if (e->lru_prev) e->lru_prev->lru_next = e->lru_next; else m->lru_head = e->lru_next;
  if (e->lru_next) e->lru_next->lru_prev = e->lru_prev; else m->lru_tail = e->lru_prev;
  e->lru_prev = e->lru_next = NULL;
}

static void lru_push_front(np_touchmap *m, tm_entry *e) {
  e->lru_prev = NULL;
  e->lru_next = m->lru_head;
  if (m->lru_head) m->lru_head->lru_prev = e; else m->lru_tail = e;
  m->lru_head = e;
}

/* A state was used now: most recently used. */
static void lru_touch(np_touchmap *m, tm_entry *e, uint64_t now) {
  e->last_used = now;
  if (m->lru_head == e) return;
  lru_unlink(m, e);
  lru_push_front(m, e);
}

static void act_set(np_touchmap *m, tm_entry *e, int on) {
  if (on == e->active) return;
  if (on) {
    e->act_prev = NULL;
    e->act_next = m->act_head;
    if (m->act_head) m->act_head->act_prev = e;
    m->act_head = e;
  } else {
    if (e->act_prev) e->act_prev->act_next = e->act_next; else m->act_head = e->act_next;
    if (e->act_next) e->act_next->act_prev = e->act_prev;
    e->act_prev = e->act_next = NULL;
  }
  e->active = on;
}

/* The socket's map, created on first use; NULL with *err a uv error. */
static np_touchmap *touchmap(np_udp *u, int *err) {
  np_udp_slot *sl = slot(u);
  if (sl->state) return sl->state;
  np_touchmap *m = calloc(1, sizeof *m);
  if (!m) {
    *err = UV_ENOMEM;
    return NULL;
  }
  touch_config_default(&m->cfg);
  m->max_peers = TM_DEFAULT_MAX_PEERS;
  /* the hash seed keeps remote endpoints from choosing their buckets */
  int rc = uv_random(NULL, NULL, &m->seed, sizeof m->seed, 0, NULL);
  if (rc < 0) {
    free(m);
    *err = rc;
    return NULL;
  }
  /* A receiver must remember ids as long as a sender may retransmit them. */
  m->idle_ms = 2 * touch_config_lifetime_ms(&m->cfg) + 1000;
  sl->state = m;
  return m;
}

static void entry_free(np_udp *u, tm_entry *e) {
  lua_State *L = u->h.ctx->closing ? NULL : u->h.ctx->L;
  for (unsigned i = 0; i < e->ncb; i++) np_unref(L, &e->cbs[i].ref);
  touch_peer_free(e->peer);
  free(e->cbs);
  free(e);
}

static void touch_engine_free(np_udp *u) {
  np_touchmap *m = slot(u)->state;
  if (!m) return;
  for (int b = 0; b < TM_BUCKETS; b++) {
    tm_entry *e = m->buckets[b];
    while (e) {
      tm_entry *n = e->next;
      entry_free(u, e);
      e = n;
    }
  }
  free(m);
  slot(u)->state = NULL;
}

static tm_entry **slot_of(np_touchmap *m, const struct sockaddr *sa) {
  tm_entry **pe = &m->buckets[addr_hash(sa, m->seed) % TM_BUCKETS];
  while (*pe && !addr_equal((struct sockaddr *)&(*pe)->addr, sa)) pe = &(*pe)->next;
  return pe;
}

/* Forget one state (it is idle and not in use). */
static void entry_remove(np_udp *u, np_touchmap *m, tm_entry *e) {
  tm_entry **pe = slot_of(m, (struct sockaddr *)&e->addr);
  if (*pe == e) *pe = e->next;
  lru_unlink(m, e);
  act_set(m, e, 0);
  entry_free(u, e);
  m->count--;
}

/* May this state be forgotten now without breaking exactly-once? */
static int expired(const np_touchmap *m, const tm_entry *e, uint64_t now) {
  return !e->busy && !e->ncb && touch_idle(e->peer) && now - e->last_used > m->idle_ms;
}

/* Drop the least recently used states that have been idle for idle_ms:
 * only the LRU tail is looked at (O(1) per state dropped). */
static unsigned expire_lru(np_udp *u, np_touchmap *m, uint64_t now, unsigned limit) {
  unsigned n = 0;
  while (n < limit && m->lru_tail && expired(m, m->lru_tail, now)) {
    entry_remove(u, m, m->lru_tail);
    n++;
  }
  return n;
}

/* The entry of sa, created if asked; NULL with *err a uv error (UV_ENOBUFS:
 * too many peers) or 0 when it does not exist. */
static tm_entry *lookup(np_udp *u, const struct sockaddr *sa, int create, int *err) {
  *err = 0;
  np_touchmap *m = touchmap(u, err);
  if (!m) return NULL;
  tm_entry **pe = slot_of(m, sa);
  if (*pe || !create) return *pe;
  if (m->count >= m->max_peers) {
    /* room only from a state idle for idle_ms; never from a younger one,
     * whose sender might still retransmit (it would be delivered again) */
    if (expire_lru(u, m, np_now_ms(u->h.ctx), 1) == 0) {
      slot(u)->counters[C_REFUSED]++;
      *err = UV_ENOBUFS;
      return NULL;
    }
    slot(u)->counters[C_EVICTED]++;
    pe = slot_of(m, sa);
  }
  /* a fresh sender epoch per peer state: if this endpoint's state was
   * evicted and is created again, ids restart at 1, and a receiver that
   * still remembers an old epoch would take them for duplicates */
  uint32_t epoch = 0;
  int rc = uv_random(NULL, NULL, &epoch, sizeof epoch, 0, NULL);
  if (rc < 0) {
    *err = rc;
    return NULL;
  }
  *err = UV_ENOMEM;
  tm_entry *e = calloc(1, sizeof *e);
  if (!e) return NULL;
  e->cbs = calloc(m->cfg.max_in_flight, sizeof *e->cbs);
  e->peer = touch_peer_new(&m->cfg, epoch ? epoch : 1);
  if (!e->cbs || !e->peer) {
    free(e->cbs);
    touch_peer_free(e->peer);
    free(e);
    return NULL;
  }
  *err = 0;
  addr_copy(&e->addr, sa);
  e->last_used = np_now_ms(u->h.ctx);
  *pe = e;
  lru_push_front(m, e);
  m->count++;
  return e;
}

static int take_cb(tm_entry *e, uint32_t id) {
  for (unsigned i = 0; i < e->ncb; i++) {
    if (e->cbs[i].id == id) {
      int ref = e->cbs[i].ref;
      e->cbs[i] = e->cbs[--e->ncb];
      return ref;
    }
  }
  return LUA_NOREF;
}

static void call_result(np_udp *u, int ref, uint32_t id, int failed, uint32_t rtt) {
  lua_State *L = np_cb_push(u->h.ctx, ref);
  if (!L) return;
  if (failed) np_push_cb_error(L, touch_errname(TOUCH_ETIMEDOUT), touch_strerror(TOUCH_ETIMEDOUT));
  else lua_pushnil(L);
  lua_pushinteger(L, id);
  if (failed) lua_pushnil(L);
  else lua_pushinteger(L, rtt);
  luaL_unref(L, LUA_REGISTRYINDEX, ref);
  np_call(u->h.ctx, 3);
}

/* Carry out every pending action.  Lua callbacks may re-enter (touch
 * again, even close the socket): memory stays valid until the close
 * callback, and `busy` keeps this entry from being evicted meanwhile. */
static void drain(np_udp *u, tm_entry *e) {
  touch_action a;
  e->busy++;
  while (touch_pop(e->peer, &a)) {
    switch (a.kind) {
    case TOUCH_TRANSMIT:
      np_udp_sendto(u, (struct sockaddr *)&e->addr, -1, a.data, a.len);
      break;
    case TOUCH_DELIVER:
      slot(u)->counters[C_DELIVERED]++;
      np_udp_deliver(u, "touch", a.data, a.len, (struct sockaddr *)&e->addr);
      break;
    case TOUCH_ACKED:
      slot(u)->counters[C_ACKED]++;
      call_result(u, take_cb(e, a.id), a.id, 0, a.rtt_ms);
      break;
    case TOUCH_FAILED:
      slot(u)->counters[C_FAILED]++;
      call_result(u, take_cb(e, a.id), a.id, 1, 0);
      break;
    }
  }
  e->busy--;
  uint64_t d = touch_next_deadline(e->peer);
  np_touchmap *m = slot(u)->state;
  if (m) act_set(m, e, !touch_idle(e->peer) || d != UINT64_MAX);
  if (d != UINT64_MAX) np_udp_arm(u, d);   /* only ever moves the timer earlier */
}

static void touch_engine_input(np_udp *u, const uint8_t *frame, size_t len,
                               const struct sockaddr *from) {
  uint64_t *c = slot(u)->counters;
  /* Only data creates receiver state; a stray ack for an unknown peer is
   * dropped without allocating anything. */
  int err = 0;
  np_touchmap *m = touchmap(u, &err);
  if (!m) return;
  int create = frame[0] == WIRE_TOUCH && !m->accept_known;
  tm_entry *e = lookup(u, from, create, &err);
  if (!e) {
    if (frame[0] == WIRE_TOUCH && m->accept_known) c[C_UNSOLICITED]++;
    else if (err != UV_ENOBUFS) c[C_MALFORMED]++;
    return;
  }
  touch_stats before;
  touch_get_stats(e->peer, &before);
  int rc = touch_input(e->peer, np_now_ms(u->h.ctx), frame, len);
  touch_stats after;
  touch_get_stats(e->peer, &after);
  c[C_DUPLICATES] += (after.duplicates - before.duplicates) + (after.too_old - before.too_old);
  if (rc == TOUCH_EMALFORMED) c[C_MALFORMED]++;
  lru_touch(m, e, np_now_ms(u->h.ctx));
  drain(u, e);
}

static uint64_t touch_engine_tick(np_udp *u, uint64_t now) {
  np_touchmap *m = slot(u)->state;
  uint64_t next = UINT64_MAX;
  if (!m) return next;
  /* only the states with work pending; drain() may take one off the list
   * (or a callback may add others at its head), so keep the next first */
  for (tm_entry *e = m->act_head, *n; e; e = n) {
    n = e->act_next;
    if (touch_next_deadline(e->peer) <= now) {
      touch_stats before, after;
      touch_get_stats(e->peer, &before);
      touch_tick(e->peer, now);
      touch_get_stats(e->peer, &after);
      slot(u)->counters[C_RETRANSMITS] += after.retransmitted - before.retransmitted;
      drain(u, e);
      if (!e->active) continue;
    }
    uint64_t d = touch_next_deadline(e->peer);
    if (d < next) next = d;
  }
  expire_lru(u, m, now, 1024);
  /* wake up when the least recently used state can be forgotten */
  if (m->lru_tail) {
    uint64_t at = m->lru_tail->last_used + m->idle_ms + 1;
    if (at < next) next = at > now ? at : now + 1;
  }
  return next;
}

static int push_lookup_error(lua_State *L, int err) {
  if (err == UV_ENOBUFS) return np_push_fail(L, "ENOBUFS", "too many touch peers on this socket");
  return np_push_error(L, err);
}

/* udp:touch(host, port, data, cb) -> id | nil, err, code */
static int udp_touch(lua_State *L) {
  np_udp *u = np_udp_check(L, 1);
  struct sockaddr_storage ss;
  np_parse_addr(L, 2, 3, &ss);
  size_t len;
  const char *data = luaL_checklstring(L, 4, &len);
  luaL_checktype(L, 5, LUA_TFUNCTION);
  if (!u->receiving)
    return np_push_fail(L, "ENOTCONN", "socket is not receiving (call recv_start first: acks arrive there)");
  int err;
  tm_entry *e = lookup(u, (struct sockaddr *)&ss, 1, &err);
  if (!e) return push_lookup_error(L, err);
  uint32_t id = 0;
  int rc = touch_send(e->peer, np_now_ms(u->h.ctx), (const uint8_t *)data, len, &id);
  if (rc < 0) return np_push_fail(L, touch_errname(rc), touch_strerror(rc));
  lua_pushvalue(L, 5);
  e->cbs[e->ncb].id = id;
  e->cbs[e->ncb].ref = luaL_ref(L, LUA_REGISTRYINDEX);
  e->ncb++;
  lru_touch(slot(u)->state, e, np_now_ms(u->h.ctx));
  drain(u, e);
  lua_pushinteger(L, id);
  return 1;
}

static int opt_uint(lua_State *L, int idx, const char *name, unsigned long dflt, unsigned long max) {
  lua_getfield(L, idx, name);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return (int)dflt;
  }
  lua_Integer v = luaL_checkinteger(L, -1);
  if (v < 0 || (unsigned long)v > max) luaL_error(L, "touch_config: %s out of range (0..%lu)", name, max);
  lua_pop(L, 1);
  return (int)v;
}

/* udp:touch_config{...}: applies to peers created afterwards. */
static int udp_touch_config(lua_State *L) {
  np_udp *u = np_udp_check(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  int err;
  np_touchmap *m = touchmap(u, &err);
  if (!m) return np_push_error(L, err);
  if (m->count) return np_push_fail(L, "EBUSY", "touch_config must be set before the first touch");
  touch_config c = m->cfg;
  c.initial_rto_ms = (uint32_t)opt_uint(L, 2, "initial_rto", c.initial_rto_ms, 600000);
  c.min_rto_ms = (uint32_t)opt_uint(L, 2, "min_rto", c.min_rto_ms, 600000);
  c.max_rto_ms = (uint32_t)opt_uint(L, 2, "max_rto", c.max_rto_ms, 600000);
  c.max_retries = (unsigned)opt_uint(L, 2, "max_retries", c.max_retries, TOUCH_MAX_RETRIES);
  c.max_in_flight = (unsigned)opt_uint(L, 2, "max_in_flight", c.max_in_flight, TOUCH_WINDOW);
  c.max_payload = (size_t)opt_uint(L, 2, "max_payload", c.max_payload, TOUCH_PAYLOAD_LIMIT);
  unsigned max_peers = (unsigned)opt_uint(L, 2, "max_peers", m->max_peers, 1u << 20);
  lua_getfield(L, 2, "accept");
  int accept_known = m->accept_known;
  if (!lua_isnil(L, -1)) {
    const char *acc = luaL_checkstring(L, -1);
    if (strcmp(acc, "known") == 0) accept_known = 1;
    else if (strcmp(acc, "any") == 0) accept_known = 0;
    else return luaL_error(L, "touch_config: accept must be \"any\" or \"known\"");
  }
  lua_pop(L, 1);
  if (touch_config_check(&c) != 0 || max_peers == 0)
    return luaL_error(L, "touch_config: inconsistent values (need min_rto <= initial_rto <= max_rto, "
                         "max_in_flight >= 1, max_peers >= 1)");
  m->cfg = c;
  m->max_peers = max_peers;
  m->accept_known = accept_known;
  m->idle_ms = 2 * touch_config_lifetime_ms(&c) + 1000;
  lua_pushboolean(L, 1);
  return 1;
}

static int udp_touch_info(lua_State *L) {
  np_udp *u = np_udp_check(L, 1);
  struct sockaddr_storage ss;
  np_parse_addr(L, 2, 3, &ss);
  int err;
  tm_entry *e = slot(u)->state ? lookup(u, (struct sockaddr *)&ss, 0, &err) : NULL;
  if (!e) {
    lua_pushnil(L);
    return 1;
  }
  touch_stats s;
  touch_get_stats(e->peer, &s);
  lua_createtable(L, 0, 12);
#define F(name) do { lua_pushinteger(L, (lua_Integer)s.name); lua_setfield(L, -2, #name); } while (0)
  F(sent); F(transmissions); F(retransmitted); F(acked); F(failed); F(delivered);
  F(duplicates); F(too_old); F(malformed); F(epoch_changes); F(srtt_ms); F(rttvar_ms);
  F(rto_ms); F(in_flight); F(cwnd); F(ssthresh); F(congestion_events); F(fast_retransmits);
#undef F
  return 1;
}

/* udp:touch_seed(host, port, rtt_ms): start the RTT estimate of that
 * endpoint from a measured RTT (e.g. the punch's), if it has no sample. */
static int udp_touch_seed(lua_State *L) {
  np_udp *u = np_udp_check(L, 1);
  struct sockaddr_storage ss;
  np_parse_addr(L, 2, 3, &ss);
  lua_Integer rtt = luaL_checkinteger(L, 4);
  luaL_argcheck(L, rtt >= 0 && rtt <= 600000, 4, "rtt must be 0..600000 ms");
  int err;
  tm_entry *e = lookup(u, (struct sockaddr *)&ss, 1, &err);
  if (!e) return push_lookup_error(L, err);
  touch_seed_rtt(e->peer, (uint32_t)rtt);
  lru_touch(slot(u)->state, e, np_now_ms(u->h.ctx));
  lua_pushboolean(L, 1);
  return 1;
}

static const luaL_Reg methods[] = {
  {"touch_seed", udp_touch_seed},
  {"touch", udp_touch},
  {"touch_config", udp_touch_config},
  {"touch_info", udp_touch_info},
  {NULL, NULL}
};

const np_udp_engine np_udp_touch_engine = {
  .name = "touch",
  .frames = {WIRE_TOUCH, WIRE_TOUCH_ACK},
  .nframes = 2,
  .counters = counters,
  .methods = methods,
  .input = touch_engine_input,
  .tick = touch_engine_tick,
  .free = touch_engine_free,
};
