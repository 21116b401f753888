/*
 * np_udp_punch.c - UDP hole punching on a socket: the pure checks of
 * punch.c (a punch_set of sessions keyed by the introduction's nonce) glued
 * to the socket, its deadline timer and Lua callbacks.
 *
 *   udp:punch({nonce=, candidates={{ip, port, "private"|"public"}, ...},
 *              timeout=ms, interval=ms, max_interval=ms}, cb) -> true | nil, err, code
 *   cb(nil, ip, port, kind, rtt_ms) once on success (kind: "private",
 *   "public" or "peer-reflexive"), or cb(err) on failure: "ETIMEDOUT: ..."
 *   (nothing heard) or "EONEWAY: ..." (their requests came, ours unanswered).  After success the session keeps answering the peer's
 *   requests until its timeout, so the peer can finish too.
 *   udp:punch_cancel(nonce)
 *   With key = 32 bytes, every frame of the session carries a 16-byte MAC
 *   after its 22 bytes (np_crypto.h; the core ignores bytes after byte 22),
 *   and frames for the session without a valid one are dropped and counted
 *   (punch_bad_mac).  Requests that arrive before their session exists are
 *   cached with their MAC (punch_early; at most PUNCH_EARLY_MAX, for
 *   PUNCH_EARLY_MAX_AGE_MS: punch_early_dropped) and checked under the key
 *   when the session starts, before anything acts on them
 *   (punch_early_bad_mac).  Requests seen before (same tie-breaker and seq:
 *   a replay or a duplicate) are dropped with no answer (punch_replayed).
 * An engine of the UDP hub (np_udp.h): frame PUNCH.
 */
#include <stdlib.h>
#include <string.h>
#include "np_udp.h"
#include "addr.h"
#include "punch.h"
#include "wire.h"
#include "np_crypto.h"

extern const np_udp_engine np_udp_punch_engine;

enum { C_MALFORMED, C_UNMATCHED, C_BAD_MAC, C_REPLAYED, C_EARLY, C_EARLY_DROPPED, C_EARLY_BAD_MAC };
static const char *const counters[] = {
    "punch_malformed", "punch_unmatched",     "punch_bad_mac",       "punch_replayed",
    "punch_early",     "punch_early_dropped", "punch_early_bad_mac", NULL};

#define NP_PUNCH_MAX 64

typedef struct np_punch_entry {
  punch_session *s;
  int cb_ref; /* LUA_NOREF once called */
  int has_key;
  uint8_t key[NP_MAC_KEY];
} np_punch_entry;

typedef struct np_punch {
  punch_set *set;
  unsigned n;
  np_punch_entry e[NP_PUNCH_MAX];
} np_punch;

static np_udp_slot *slot(np_udp *u) {
  return np_udp_slot_of(u, &np_udp_punch_engine);
}

static np_punch *punchctx(np_udp *u) {
  np_udp_slot *sl = slot(u);
  if (sl->state) return sl->state;
  np_punch *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  p->set = punch_set_new(NP_PUNCH_MAX);
  if (!p->set) {
    free(p);
    return NULL;
  }
  sl->state = p;
  return p;
}

static lua_State *state_of(np_udp *u) {
  return u->h.ctx->closing ? NULL : u->h.ctx->L;
}

static void punch_engine_free(np_udp *u) {
  np_punch *p = slot(u)->state;
  if (!p) return;
  for (unsigned i = 0; i < p->n; i++) np_unref(state_of(u), &p->e[i].cb_ref);
  punch_set_free(p->set);
  free(p);
  slot(u)->state = NULL;
}

static np_punch_entry *entry_of(np_punch *p, punch_session *s) {
  for (unsigned i = 0; i < p->n; i++)
    if (p->e[i].s == s) return &p->e[i];
  return NULL;
}

static void remove_at(np_udp *u, np_punch *p, unsigned i) {
  np_unref(state_of(u), &p->e[i].cb_ref);
  punch_set_remove(p->set, p->e[i].s);
  p->e[i] = p->e[--p->n];
}

/* Call the session's callback once.  The entry may move if the callback
 * starts or cancels other sessions, so take the ref out first. */
static void report(np_udp *u, np_punch *p, punch_session *s, const punch_action *a) {
  np_punch_entry *e = entry_of(p, s);
  if (!e || e->cb_ref == LUA_NOREF) return;
  int ref = e->cb_ref;
  e->cb_ref = LUA_NOREF;
  lua_State *L = np_cb_push(u->h.ctx, ref);
  if (!L) return;
  luaL_unref(L, LUA_REGISTRYINDEX, ref);
  if (a->kind == PUNCH_SUCCEEDED) {
    lua_pushnil(L);
    np_push_addr(L, (const struct sockaddr *)&a->addr);
    lua_pushstring(L, punch_cand_kind_name(a->cand_kind));
    lua_pushinteger(L, a->rtt_ms);
    np_call(u->h.ctx, 5);
  } else {
    np_push_cb_error(L, punch_errname(a->reason), punch_strerror(a->reason));
    np_call(u->h.ctx, 1);
  }
}

static void drain(np_udp *u, np_punch *p) {
  punch_action a;
  while (punch_set_pop(p->set, &a)) {
    if (a.kind == PUNCH_TRANSMIT) {
      np_punch_entry *e = entry_of(p, a.session);
      if (e && e->has_key && a.len == PUNCH_FRAME_LEN) {
        uint8_t buf[PUNCH_FRAME_LEN + NP_MAC_TAG];
        memcpy(buf, a.data, PUNCH_FRAME_LEN);
        np_mac16(e->key, buf, PUNCH_FRAME_LEN, buf + PUNCH_FRAME_LEN);
        np_udp_sendto(u, (const struct sockaddr *)&a.addr, -1, buf, sizeof buf);
      } else {
        np_udp_sendto(u, (const struct sockaddr *)&a.addr, -1, a.data, a.len);
      }
    } else {
      report(u, p, a.session, &a);
      if (slot(u)->state != p) return;
    }
  }
  uint64_t d = punch_set_next_deadline(p->set);
  if (d != UINT64_MAX) np_udp_arm(u, d);
}

/* The set's early-cache figures, as counters of the socket. */
static void sync_early(np_udp *u, np_punch *p) {
  punch_set_stats st;
  punch_set_get_stats(p->set, &st);
  slot(u)->counters[C_EARLY_DROPPED] = st.evicted + st.expired;
  slot(u)->counters[C_EARLY_BAD_MAC] = st.early_rejected;
}

/* punch_verify_fn: an early request's MAC under the new session's key. */
static int early_mac_ok(void *arg, const uint8_t *frame, size_t len) {
  const uint8_t *key = arg;
  return len >= PUNCH_FRAME_LEN + NP_MAC_TAG &&
         np_mac16_ok(key, frame, PUNCH_FRAME_LEN, frame + PUNCH_FRAME_LEN);
}

static void punch_engine_input(np_udp *u, const uint8_t *frame, size_t len,
                               const struct sockaddr *from) {
  np_punch *p = punchctx(u);
  if (!p) return;
  if (len >= PUNCH_FRAME_LEN) {
    punch_session *s = punch_set_find(p->set, frame + 2); /* nonce: bytes 2..9 */
    np_punch_entry *e = s ? entry_of(p, s) : NULL;
    if (e && e->has_key &&
        (len < PUNCH_FRAME_LEN + NP_MAC_TAG ||
         !np_mac16_ok(e->key, frame, PUNCH_FRAME_LEN, frame + PUNCH_FRAME_LEN))) {
      slot(u)->counters[C_BAD_MAC]++;
      return;
    }
  }
  int rc = punch_set_input(p->set, np_now_ms(u->h.ctx), from, frame, len);
  if (rc == PUNCH_EMALFORMED)
    slot(u)->counters[C_MALFORMED]++;
  else if (rc == PUNCH_EREPLAY)
    slot(u)->counters[C_REPLAYED]++;
  else if (rc == PUNCH_CACHED)
    slot(u)->counters[C_EARLY]++;
  else if (rc < 0)
    slot(u)->counters[C_UNMATCHED]++;
  sync_early(u, p);
  drain(u, p);
}

static uint64_t punch_engine_tick(np_udp *u, uint64_t now) {
  np_punch *p = slot(u)->state;
  if (!p) return UINT64_MAX;
  punch_set_tick(p->set, now);
  sync_early(u, p);
  drain(u, p);
  for (unsigned i = 0; i < p->n;) {
    if (punch_session_finished(p->e[i].s, now) && p->e[i].cb_ref == LUA_NOREF)
      remove_at(u, p, i);
    else
      i++;
  }
  return punch_set_next_deadline(p->set);
}

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* nonce: 8 raw bytes or 16 hex digits */
static void get_nonce(lua_State *L, int idx, uint8_t out[PUNCH_NONCE_LEN]) {
  size_t n;
  lua_getfield(L, idx, "nonce");
  const char *s = lua_tolstring(L, -1, &n);
  if (s && n == PUNCH_NONCE_LEN) {
    memcpy(out, s, n);
  } else if (s && n == 2 * PUNCH_NONCE_LEN) {
    for (int i = 0; i < PUNCH_NONCE_LEN; i++) {
      int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
      if (hi < 0 || lo < 0) luaL_error(L, "punch: nonce must be 8 bytes or 16 hex digits");
      out[i] = (uint8_t)(hi << 4 | lo);
    }
  } else {
    luaL_error(L, "punch: nonce must be 8 bytes or 16 hex digits");
  }
  lua_pop(L, 1);
}

static uint32_t opt_ms(lua_State *L, int idx, const char *name, uint32_t dflt) {
  lua_getfield(L, idx, name);
  uint32_t v = dflt;
  if (!lua_isnil(L, -1)) {
    lua_Number n = luaL_checknumber(L, -1);
    if (!(n >= 1 && n <= 3600000)) luaL_error(L, "punch: %s must be 1..3600000 ms", name);
    v = (uint32_t)n;
  }
  lua_pop(L, 1);
  return v;
}

static int udp_punch(lua_State *L) {
  np_udp *u = np_udp_check(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  luaL_checktype(L, 3, LUA_TFUNCTION);
  uint8_t nonce[PUNCH_NONCE_LEN];
  get_nonce(L, 2, nonce);
  punch_config cfg;
  punch_config_default(&cfg);
  cfg.timeout_ms = opt_ms(L, 2, "timeout", cfg.timeout_ms);
  cfg.initial_interval_ms = opt_ms(L, 2, "interval", cfg.initial_interval_ms);
  cfg.max_interval_ms = opt_ms(L, 2, "max_interval", cfg.max_interval_ms);
  if (cfg.max_interval_ms < cfg.initial_interval_ms) cfg.max_interval_ms = cfg.initial_interval_ms;
  size_t keylen = 0;
  lua_getfield(L, 2, "key");
  const char *key = lua_isnil(L, -1) ? NULL : luaL_checklstring(L, -1, &keylen);
  if (key && keylen != NP_MAC_KEY) return luaL_error(L, "punch: key must be %d bytes", NP_MAC_KEY);
  uint8_t keybuf[NP_MAC_KEY];
  if (key) memcpy(keybuf, key, NP_MAC_KEY);
  lua_pop(L, 1);

  /* candidates are checked before anything is created */
  lua_getfield(L, 2, "candidates");
  luaL_argcheck(L, lua_istable(L, -1), 2, "punch: candidates must be a list");
  int cands = lua_gettop(L);
  lua_Integer nc = luaL_len(L, cands);
  luaL_argcheck(L, nc >= 1 && nc <= PUNCH_MAX_CANDIDATES, 2, "punch: 1..16 candidates needed");
  struct sockaddr_storage addrs[PUNCH_MAX_CANDIDATES];
  int kinds[PUNCH_MAX_CANDIDATES];
  for (lua_Integer i = 1; i <= nc; i++) {
    lua_rawgeti(L, cands, i);
    int c = lua_gettop(L);
    luaL_argcheck(L, lua_istable(L, c), 2, "punch: each candidate is {ip, port, kind}");
    lua_rawgeti(L, c, 1);
    lua_rawgeti(L, c, 2);
    np_parse_addr(L, c + 1, c + 2, &addrs[i - 1]);
    lua_rawgeti(L, c, 3);
    const char *k = luaL_optstring(L, -1, "public");
    if (strcmp(k, "private") == 0)
      kinds[i - 1] = PUNCH_CAND_PRIVATE;
    else if (strcmp(k, "public") == 0)
      kinds[i - 1] = PUNCH_CAND_PUBLIC;
    else
      return luaL_error(L, "punch: candidate kind must be 'private' or 'public'");
    lua_settop(L, cands);
  }

  if (!u->receiving)
    return np_push_fail(L, "ENOTCONN",
                        "socket is not receiving (call recv_start first: answers arrive there)");
  np_punch *p = punchctx(u);
  if (!p) return luaL_error(L, "out of memory");
  if (p->n >= NP_PUNCH_MAX)
    return np_push_fail(L, "EFULL", "too many punch sessions on this socket");
  uint64_t tie; /* ICE-like tie-breaker (RFC 8445 section 7.3.1.1) */
  int rr = uv_random(NULL, NULL, &tie, sizeof tie, 0, NULL);
  if (rr < 0) return np_push_error(L, rr);
  uint64_t now = np_now_ms(u->h.ctx);
  int err = 0;
  punch_session *s =
      key ? punch_set_add_verified(p->set, now, &cfg, nonce, tie, early_mac_ok, keybuf, &err)
          : punch_set_add(p->set, now, &cfg, nonce, tie, &err);
  sync_early(u, p);
  if (!s) return np_push_fail(L, punch_errname(err), punch_strerror(err));
  for (lua_Integer i = 0; i < nc; i++)
    punch_session_add_candidate(s, now, (struct sockaddr *)&addrs[i], (punch_cand_kind)kinds[i],
                                (uint32_t)(nc - i));
  lua_pushvalue(L, 3);
  p->e[p->n].s = s;
  p->e[p->n].cb_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  p->e[p->n].has_key = key != NULL;
  if (key) memcpy(p->e[p->n].key, keybuf, NP_MAC_KEY);
  p->n++;
  int rc = punch_session_start(s, now);
  if (rc < 0) {
    remove_at(u, p, p->n - 1);
    return np_push_fail(L, punch_errname(rc), punch_strerror(rc));
  }
  drain(u, p);
  lua_pushboolean(L, 1);
  return 1;
}

static int udp_punch_cancel(lua_State *L) {
  np_udp *u = np_udp_check(L, 1);
  lua_settop(L, 2);
  lua_newtable(L);
  lua_pushvalue(L, 2);
  lua_setfield(L, -2, "nonce");
  uint8_t nonce[PUNCH_NONCE_LEN];
  get_nonce(L, 3, nonce);
  np_punch *p = slot(u)->state;
  punch_session *s = p ? punch_set_find(p->set, nonce) : NULL;
  np_punch_entry *e = s ? entry_of(p, s) : NULL;
  if (e) remove_at(u, p, (unsigned)(e - p->e));
  lua_pushboolean(L, e != NULL);
  return 1;
}

static const luaL_Reg methods[] = {
    {"punch", udp_punch}, {"punch_cancel", udp_punch_cancel}, {NULL, NULL}};

const np_udp_engine np_udp_punch_engine = {
    .name = "punch",
    .frames = {WIRE_PUNCH},
    .nframes = 1,
    .counters = counters,
    .methods = methods,
    .input = punch_engine_input,
    .tick = punch_engine_tick,
    .free = punch_engine_free,
};
