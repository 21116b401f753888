/*
 * np_udp_touch.c - natdemo's touch (reliable send) on a UDP socket.
 *
 * The protocol is the pure state machine of touch.c; this file keeps one
 * touch_peer per remote endpoint in a bounded hash map, turns its actions
 * into sends, deliveries and Lua callbacks, and drives its deadlines with
 * the socket's one timer.
 *
 *   id = udp:touch(host, port, data, cb)   cb(err, id, rtt_ms) once
 *   id = udp:touch(host, port, data)       with on_touch_done set
 *   udp:touch_config{initial_rto=, min_rto=, max_rto=, max_retries=,
 *                    max_in_flight=, max_payload=, max_peers=, accept=}
 *   udp:touch_info(host, port) -> {srtt_ms=, rto_ms=, in_flight=, ...} | nil
 *   udp:on_touch_batch(fn | nil)   fn({ {data=, host=, port=}, ... })
 *   udp:on_touch_done(fn | nil)    fn({ {id=, host=, port=, rtt_ms=, err=}, ... })
 * Received messages reach the receive callback with kind "touch", once, or
 * with on_touch_batch set, that function: every message of a receive batch
 * in one call at the end of the batch.  Outcomes of touches sent without a
 * callback reach on_touch_done the same way (per receive batch, per timer
 * tick).
 * An engine of the UDP hub (np_udp.h): frames TOUCH and TOUCH_ACK.
 *
 * Batching: inside a receive batch the acks are held back (the state
 * machine's TOUCH_POP_HOLD_ACKS) and popped by the flush hook at its end,
 * so one ack answers every frame of the batch; every frame (data, acks,
 * retransmissions) goes through np_udp_send_soon, so what one batch, one
 * udp:touch loop or one timer tick sends leaves in one sendmmsg.
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
 *
 * Authenticated frames: udp:touch_key(host, port, key32) gives that
 * endpoint's state a key (natpunch.peer derives one per pair of peers,
 * docs/SECURITY.md); from then on every TOUCH and TOUCH_ACK to it carries
 * a 16-byte keyed BLAKE2b after the frame (np_crypto.h), and a frame from
 * it without a valid one is dropped before the state machine sees it
 * (touch_bad_mac): no forged ack, no forged or replayed delivery.
 */
#include <stdlib.h>
#include <string.h>
#include "np_udp.h"
#include "addr.h"
#include "touch.h"
#include "wire.h"
#include "np_crypto.h"

extern const np_udp_engine np_udp_touch_engine;

enum {
  C_DELIVERED,
  C_DUPLICATES,
  C_ACKED,
  C_FAILED,
  C_RETRANSMITS,
  C_MALFORMED,
  C_EVICTED,
  C_REFUSED,
  C_UNSOLICITED,
  C_BAD_MAC
};
static const char *const counters[] = {"touch_delivered",
                                       "touch_duplicates",
                                       "touch_acked",
                                       "touch_failed",
                                       "touch_retransmits",
                                       "touch_malformed",
                                       "touch_peers_evicted",
                                       "touch_refused",
                                       "touch_unsolicited",
                                       "touch_bad_mac",
                                       NULL};

#define TM_BUCKETS           256
#define TM_DEFAULT_MAX_PEERS 4096

typedef struct tm_cb {
  uint32_t id;
  int ref;
} tm_cb;

typedef struct tm_entry {
  struct tm_entry *next;                /* hash chain */
  struct tm_entry *lru_prev, *lru_next; /* all states, most recently used first */
  struct tm_entry *act_prev, *act_next; /* states with work pending */
  int active;
  struct sockaddr_storage addr;
  touch_peer *peer;
  uint64_t last_used;
  int busy; /* actions being processed: never evict */
  unsigned ncb, cbcap;
  tm_cb *cbs;  /* cbcap = max_in_flight slots */
  int has_key; /* frames to and from it carry a MAC (udp:touch_key) */
  uint8_t key[NP_MAC_KEY];
  int acks_held; /* on the flush list: acks held for the batch end */
  struct tm_entry *held_next;
  char host[INET6_ADDRSTRLEN]; /* its address as text, for the callbacks */
  int port;
} tm_entry;

typedef struct np_touchmap {
  tm_entry *buckets[TM_BUCKETS];
  tm_entry *lru_head, *lru_tail;
  tm_entry *act_head;
  int accept_known; /* TOUCH frames only from endpoints with a state */
  unsigned count, max_peers;
  uint32_t seed;
  touch_config cfg;
  uint64_t idle_ms;          /* an idle peer older than this is dropped */
  tm_entry *held;            /* entries with acks held until the batch ends */
  int batch_cb, done_cb;     /* on_touch_batch, on_touch_done */
  int batch_list, done_list; /* arrays being filled, LUA_NOREF when empty */
  int nbatch, ndone;
} np_touchmap;

static np_udp_slot *slot(np_udp *u) {
  return np_udp_slot_of(u, &np_udp_touch_engine);
}

static void lru_unlink(np_touchmap *m, tm_entry *e) {
  if (e->lru_prev)
    e->lru_prev->lru_next = e->lru_next;
  else
    m->lru_head = e->lru_next;
  if (e->lru_next)
    e->lru_next->lru_prev = e->lru_prev;
  else
    m->lru_tail = e->lru_prev;
  e->lru_prev = e->lru_next = NULL;
}

static void lru_push_front(np_touchmap *m, tm_entry *e) {
  e->lru_prev = NULL;
  e->lru_next = m->lru_head;
  if (m->lru_head)
    m->lru_head->lru_prev = e;
  else
    m->lru_tail = e;
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
    if (e->act_prev)
      e->act_prev->act_next = e->act_next;
    else
      m->act_head = e->act_next;
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
  m->batch_cb = m->done_cb = m->batch_list = m->done_list = LUA_NOREF;
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
  for (unsigned i = 0; i < e->cbcap; i++) np_unref(L, &e->cbs[i].ref);
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
  lua_State *L = u->h.ctx->closing ? NULL : u->h.ctx->L;
  np_unref(L, &m->batch_cb);
  np_unref(L, &m->done_cb);
  np_unref(L, &m->batch_list);
  np_unref(L, &m->done_list);
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
  for (tm_entry **ph = &m->held; *ph; ph = &(*ph)->held_next)
    if (*ph == e) {
      *ph = e->held_next;
      break;
    }
  lru_unlink(m, e);
  act_set(m, e, 0);
  entry_free(u, e);
  m->count--;
}

/* May this state be forgotten now without breaking exactly-once? */
static int expired(const np_touchmap *m, const tm_entry *e, uint64_t now) {
  return !e->busy && !e->ncb && !e->acks_held && touch_idle(e->peer) &&
         now - e->last_used > m->idle_ms;
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
  e->cbcap = m->cfg.max_in_flight;
  for (unsigned i = 0; i < e->cbcap; i++) e->cbs[i].ref = LUA_NOREF;
  addr_copy(&e->addr, sa);
  if (addr_ip_text(sa, e->host, sizeof e->host) < 0) e->host[0] = 0;
  e->port = addr_port(sa);
  e->last_used = np_now_ms(u->h.ctx);
  *pe = e;
  lru_push_front(m, e);
  m->count++;
  return e;
}

/* Callbacks sit at id % max_in_flight: the state machine never has two
 * unresolved ids there (its ring of slots, touch.c).  ncb counts them. */
static int take_cb(tm_entry *e, uint32_t id) {
  tm_cb *c = &e->cbs[id % e->cbcap];
  if (c->id != id || c->ref == LUA_NOREF) return LUA_NOREF;
  int ref = c->ref;
  c->ref = LUA_NOREF;
  c->id = 0;
  e->ncb--;
  return ref;
}

static void call_result(np_udp *u, int ref, uint32_t id, int failed, uint32_t rtt) {
  lua_State *L = np_cb_push(u->h.ctx, ref);
  if (!L) return;
  if (failed)
    np_push_cb_error(L, touch_errname(TOUCH_ETIMEDOUT), touch_strerror(TOUCH_ETIMEDOUT));
  else
    lua_pushnil(L);
  lua_pushinteger(L, id);
  if (failed)
    lua_pushnil(L);
  else
    lua_pushinteger(L, rtt);
  luaL_unref(L, LUA_REGISTRYINDEX, ref);
  np_call(u->h.ctx, 3);
}

/* Append one record to the array list_ref (created if needed); the
 * record's fields are pushed by fill(), which leaves the record on top. */
static lua_State *list_append(np_udp *u, int *list_ref, int *n) {
  lua_State *L = u->h.ctx->closing ? NULL : u->h.ctx->L;
  if (!L) return NULL;
  if (*list_ref == LUA_NOREF) {
    lua_createtable(L, 16, 0);
    *list_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    *n = 0;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, *list_ref);
  lua_createtable(L, 0, 5);
  return L;
}

static void list_push_peer(lua_State *L, const tm_entry *e) {
  lua_pushstring(L, e->host);
  lua_setfield(L, -2, "host");
  lua_pushinteger(L, e->port);
  lua_setfield(L, -2, "port");
}

static void collect_delivery(np_udp *u, np_touchmap *m, tm_entry *e, const uint8_t *data,
                             size_t len) {
  lua_State *L = list_append(u, &m->batch_list, &m->nbatch);
  if (!L) return;
  lua_pushlstring(L, (const char *)data, len);
  lua_setfield(L, -2, "data");
  list_push_peer(L, e);
  lua_rawseti(L, -2, ++m->nbatch);
  lua_pop(L, 1);
}

static void collect_outcome(np_udp *u, np_touchmap *m, tm_entry *e, uint32_t id, int failed,
                            uint32_t rtt) {
  lua_State *L = list_append(u, &m->done_list, &m->ndone);
  if (!L) return;
  lua_pushinteger(L, id);
  lua_setfield(L, -2, "id");
  list_push_peer(L, e);
  if (failed) {
    np_push_cb_error(L, touch_errname(TOUCH_ETIMEDOUT), touch_strerror(TOUCH_ETIMEDOUT));
    lua_setfield(L, -2, "err");
  } else {
    lua_pushinteger(L, rtt);
    lua_setfield(L, -2, "rtt_ms");
  }
  lua_rawseti(L, -2, ++m->ndone);
  lua_pop(L, 1);
}

/* Hand the collected arrays to on_touch_batch / on_touch_done: at the end
 * of a receive batch (before its acks leave), or outside one.  A callback
 * may touch again or close the socket. */
static void emit_lists(np_udp *u, int batch_end) {
  np_touchmap *m = slot(u)->state;
  while (m && (batch_end || !u->in_batch) &&
         (m->batch_list != LUA_NOREF || m->done_list != LUA_NOREF)) {
    int *list = m->batch_list != LUA_NOREF ? &m->batch_list : &m->done_list;
    int cb = list == &m->batch_list ? m->batch_cb : m->done_cb;
    int ref = *list;
    *list = LUA_NOREF;
    lua_State *L = np_cb_push(u->h.ctx, cb);
    if (!L) {
      np_unref(u->h.ctx->closing ? NULL : u->h.ctx->L, &ref);
      continue;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    np_call(u->h.ctx, 1);
    if (uv_is_closing(&u->h.u.handle)) return; /* closed from the callback */
    m = slot(u)->state;
  }
}

/* Send one frame to the entry's endpoint, with its MAC when it has a key. */
static void send_frame(np_udp *u, tm_entry *e, const uint8_t *data, size_t len) {
  if (!e->has_key) {
    np_udp_send_soon(u, (struct sockaddr *)&e->addr, -1, data, len);
    return;
  }
  uint8_t small[1536]; /* every default-sized frame; larger ones on the heap */
  uint8_t *buf = len + NP_MAC_TAG <= sizeof small ? small : malloc(len + NP_MAC_TAG);
  if (!buf) return;
  memcpy(buf, data, len);
  np_mac16(e->key, buf, len, buf + len);
  np_udp_send_soon(u, (struct sockaddr *)&e->addr, -1, buf, len + NP_MAC_TAG);
  if (buf != small) free(buf);
}

/* Carry out every pending action (with hold, not the owed acks: the entry
 * goes on the flush list).  Lua callbacks may re-enter (touch again, even
 * close the socket): memory stays valid until the close callback, and
 * `busy` keeps this entry from being evicted meanwhile. */
static void drain(np_udp *u, tm_entry *e, int hold) {
  touch_action a;
  np_touchmap *m = slot(u)->state;
  e->busy++;
  while (touch_pop_ex(e->peer, &a, hold ? TOUCH_POP_HOLD_ACKS : 0)) {
    switch (a.kind) {
    case TOUCH_TRANSMIT: send_frame(u, e, a.data, a.len); break;
    case TOUCH_DELIVER:
      slot(u)->counters[C_DELIVERED]++;
      if (m && m->batch_cb != LUA_NOREF)
        collect_delivery(u, m, e, a.data, a.len);
      else if (e->host[0])
        np_udp_deliver_named(u, "touch", a.data, a.len, e->host, e->port);
      else
        np_udp_deliver(u, "touch", a.data, a.len, (struct sockaddr *)&e->addr);
      break;
    case TOUCH_ACKED:
    case TOUCH_FAILED: {
      int failed = a.kind == TOUCH_FAILED;
      slot(u)->counters[failed ? C_FAILED : C_ACKED]++;
      int ref = take_cb(e, a.id);
      if (ref != LUA_NOREF)
        call_result(u, ref, a.id, failed, a.rtt_ms);
      else if (m && m->done_cb != LUA_NOREF)
        collect_outcome(u, m, e, a.id, failed, a.rtt_ms);
      break;
    }
    }
    m = slot(u)->state;
  }
  e->busy--;
  if (m && hold && !e->acks_held && touch_acks_due(e->peer)) {
    e->acks_held = 1;
    e->held_next = m->held;
    m->held = e;
  }
  uint64_t d = touch_next_deadline(e->peer);
  if (m) act_set(m, e, !touch_idle(e->peer) || d != UINT64_MAX);
  if (d != UINT64_MAX) np_udp_arm(u, d); /* only ever moves the timer earlier */
}

/* The flush hook: the acks held for the batch leave now (one per entry and
 * epoch, each answering every frame the batch brought). */
static void touch_engine_flush(np_udp *u) {
  np_touchmap *m = slot(u)->state;
  while (m && m->held) {
    tm_entry *e = m->held;
    m->held = e->held_next;
    e->held_next = NULL;
    e->acks_held = 0;
    drain(u, e, 0);
    m = slot(u)->state;
  }
}

/* The acks owed to e leave now: what the application sends to a peer (say,
 * a reply from a callback inside the batch, even while e's actions are
 * being carried out) never overtakes them.  Only acks are popped here. */
static void release_acks(np_udp *u, tm_entry *e) {
  touch_action a;
  np_touchmap *m = slot(u)->state;
  if (m && m->batch_list != LUA_NOREF) return; /* deliveries not handed over yet */
  while (touch_pop_ex(e->peer, &a, TOUCH_POP_ONLY_ACKS)) send_frame(u, e, a.data, a.len);
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
    if (frame[0] == WIRE_TOUCH && m->accept_known)
      c[C_UNSOLICITED]++;
    else if (err != UV_ENOBUFS)
      c[C_MALFORMED]++;
    return;
  }
  if (e->has_key) {
    if (len < TOUCH_HEADER_LEN + NP_MAC_TAG ||
        !np_mac16_ok(e->key, frame, len - NP_MAC_TAG, frame + len - NP_MAC_TAG)) {
      c[C_BAD_MAC]++;
      return;
    }
    len -= NP_MAC_TAG;
  }
  const touch_stats *ts = touch_counters(e->peer); /* read in place, before and after */
  uint64_t redundant = ts->duplicates + ts->too_old;
  int rc = touch_input(e->peer, np_now_ms(u->h.ctx), frame, len);
  c[C_DUPLICATES] += ts->duplicates + ts->too_old - redundant;
  if (rc == TOUCH_EMALFORMED) c[C_MALFORMED]++;
  lru_touch(m, e, np_now_ms(u->h.ctx));
  /* the acks leave after the deliveries have reached Lua: at the end of the
   * batch (batch_end hook, then the flush hook), or here */
  drain(u, e, 1);
  if (u->in_batch) return;
  emit_lists(u, 0);
  if (!uv_is_closing(&u->h.u.handle)) touch_engine_flush(u);
}

/* The receive batch is over: hand the collected messages and outcomes to
 * Lua; the flush hook sends the acks next. */
static void touch_engine_batch_end(np_udp *u) {
  emit_lists(u, 1);
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
      const touch_stats *ts = touch_counters(e->peer);
      uint64_t before = ts->retransmitted;
      touch_tick(e->peer, now);
      slot(u)->counters[C_RETRANSMITS] += ts->retransmitted - before;
      drain(u, e, 0);
      if (!e->active) continue;
    }
    uint64_t d = touch_next_deadline(e->peer);
    if (d < next) next = d;
  }
  expire_lru(u, m, now, 1024);
  emit_lists(u, 0);
  if (uv_is_closing(&u->h.u.handle) || !(m = slot(u)->state)) return UINT64_MAX;
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
  np_touchmap *mm = slot(u)->state;
  int has_cb = !lua_isnoneornil(L, 5);
  if (has_cb || !mm || mm->done_cb == LUA_NOREF) luaL_checktype(L, 5, LUA_TFUNCTION);
  if (!u->receiving)
    return np_push_fail(L, "ENOTCONN",
                        "socket is not receiving (call recv_start first: acks arrive there)");
  int err;
  tm_entry *e = lookup(u, (struct sockaddr *)&ss, 1, &err);
  if (!e) return push_lookup_error(L, err);
  release_acks(u, e); /* e may stay on the held list: nothing left to pop */
  uint32_t id = 0;
  int rc = touch_send(e->peer, np_now_ms(u->h.ctx), (const uint8_t *)data, len, &id);
  if (rc < 0) return np_push_fail(L, touch_errname(rc), touch_strerror(rc));
  if (has_cb) {
    tm_cb *c = &e->cbs[id % e->cbcap]; /* free: see take_cb */
    lua_pushvalue(L, 5);
    c->id = id;
    c->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    e->ncb++;
  }
  lru_touch(slot(u)->state, e, np_now_ms(u->h.ctx));
  drain(u, e, u->in_batch);
  emit_lists(u, 0);
  lua_pushinteger(L, id);
  return 1;
}

/* udp:on_touch_batch(fn | nil) and udp:on_touch_done(fn | nil): set or
 * clear a batch callback (see the top of this file). */
static int set_batch_cb(lua_State *L, int done) {
  np_udp *u = np_udp_check(L, 1);
  if (!lua_isnil(L, 2)) luaL_checktype(L, 2, LUA_TFUNCTION);
  int err;
  np_touchmap *m = touchmap(u, &err);
  if (!m) return np_push_error(L, err);
  int *ref = done ? &m->done_cb : &m->batch_cb;
  if (lua_isnil(L, 2))
    np_unref(L, ref);
  else
    np_setref(L, ref, 2);
  lua_pushboolean(L, 1);
  return 1;
}

static int udp_on_touch_batch(lua_State *L) {
  return set_batch_cb(L, 0);
}

static int udp_on_touch_done(lua_State *L) {
  return set_batch_cb(L, 1);
}

static int opt_uint(lua_State *L, int idx, const char *name, unsigned long dflt,
                    unsigned long max) {
  lua_getfield(L, idx, name);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return (int)dflt;
  }
  lua_Integer v = luaL_checkinteger(L, -1);
  if (v < 0 || (unsigned long)v > max)
    luaL_error(L, "touch_config: %s out of range (0..%I)", name, (lua_Integer)max);
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
    if (strcmp(acc, "known") == 0)
      accept_known = 1;
    else if (strcmp(acc, "any") == 0)
      accept_known = 0;
    else
      return luaL_error(L, "touch_config: accept must be \"any\" or \"known\"");
  }
  lua_pop(L, 1);
  if (touch_config_check(&c) != 0 || max_peers == 0)
    return luaL_error(L,
                      "touch_config: inconsistent values (need min_rto <= initial_rto <= max_rto, "
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
#define F(name)                              \
  do {                                       \
    lua_pushinteger(L, (lua_Integer)s.name); \
    lua_setfield(L, -2, #name);              \
  } while (0)
  F(sent);
  F(transmissions);
  F(retransmitted);
  F(acked);
  F(failed);
  F(delivered);
  F(duplicates);
  F(too_old);
  F(malformed);
  F(epoch_changes);
  F(srtt_ms);
  F(rttvar_ms);
  F(rto_ms);
  F(in_flight);
  F(cwnd);
  F(ssthresh);
  F(congestion_events);
  F(fast_retransmits);
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

/* udp:touch_key(host, port, key): authenticate the frames of that
 * endpoint's state with a 32-byte key (the state is created if needed). */
static int udp_touch_key(lua_State *L) {
  np_udp *u = np_udp_check(L, 1);
  struct sockaddr_storage ss;
  np_parse_addr(L, 2, 3, &ss);
  size_t n;
  const char *key = luaL_checklstring(L, 4, &n);
  luaL_argcheck(L, n == NP_MAC_KEY, 4, "key must be 32 bytes");
  int err;
  tm_entry *e = lookup(u, (struct sockaddr *)&ss, 1, &err);
  if (!e) return push_lookup_error(L, err);
  memcpy(e->key, key, NP_MAC_KEY);
  e->has_key = 1;
  lua_pushboolean(L, 1);
  return 1;
}

static const luaL_Reg methods[] = {{"touch_seed", udp_touch_seed},
                                   {"touch_key", udp_touch_key},
                                   {"touch", udp_touch},
                                   {"touch_config", udp_touch_config},
                                   {"touch_info", udp_touch_info},
                                   {"on_touch_batch", udp_on_touch_batch},
                                   {"on_touch_done", udp_on_touch_done},
                                   {NULL, NULL}};

const np_udp_engine np_udp_touch_engine = {
    .name = "touch",
    .frames = {WIRE_TOUCH, WIRE_TOUCH_ACK},
    .nframes = 2,
    .counters = counters,
    .methods = methods,
    .input = touch_engine_input,
    .tick = touch_engine_tick,
    .flush = touch_engine_flush,
    .batch_end = touch_engine_batch_end,
    .free = touch_engine_free,
};
