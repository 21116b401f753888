/*
 * np_udp_path.c - a peer keeps its address while its path changes.  A path
 * says "datagrams for peer P now go to V, and the data and touch frames
 * that come from V are P's".  A relayed session upgraded to a direct path
 * (lua/natpunch/upgrade.lua) keeps everything keyed by the relayed address
 * P: the touch state (sequence space, ids, in-flight touches, the
 * receiver's duplicate window), the session and its keys; only the bytes
 * take the direct path V.  Touches in flight when the path changes are
 * retransmitted on the new one and deduplicated as before.
 *
 *   udp:path_set(peer_host, peer_port, via_host, via_port) -> true | nil, err, code
 *   udp:path_clear(peer_host, peer_port) -> boolean
 *   udp:path_get(peer_host, peer_port) -> via_host, via_port | nil
 *
 * Only DATA, TOUCH and TOUCH_ACK frames from V are taken as P's: punch
 * checks from V stay V's (the punch that found V goes on answering), and
 * STUN and control traffic are never rewritten.  Offered every datagram
 * before the other engines' routes (np_module.c), so a path wins over a
 * TURN channel toward the same peer (np_udp_relay.c), whose inbound
 * ChannelData still lands as P's while the channel stays.
 * An engine of the UDP hub (np_udp.h): no frames of its own.
 */
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "np_udp.h"
#include "wire.h"

extern const np_udp_engine np_udp_path_engine;

enum { C_OUT, C_IN };
static const char *const counters[] = {"path_out", "path_in", NULL};

#define PATH_MAX_ENTRIES 16

typedef struct entry {
  struct sockaddr_storage peer, via;
} entry;

typedef struct paths {
  unsigned n;
  entry e[PATH_MAX_ENTRIES];
} paths;

static np_udp_slot *slot(np_udp *u) {
  return np_udp_slot_of(u, &np_udp_path_engine);
}

static paths *state(np_udp *u, int create) {
  np_udp_slot *sl = slot(u);
  if (!sl->state && create) sl->state = calloc(1, sizeof(paths));
  return sl->state;
}

static entry *by_peer(paths *ps, const struct sockaddr *peer) {
  for (unsigned i = 0; ps && i < ps->n; i++)
    if (addr_equal((struct sockaddr *)&ps->e[i].peer, peer)) return &ps->e[i];
  return NULL;
}

static entry *by_via(paths *ps, const struct sockaddr *via) {
  for (unsigned i = 0; ps && i < ps->n; i++)
    if (addr_equal((struct sockaddr *)&ps->e[i].via, via)) return &ps->e[i];
  return NULL;
}

static int path_route(np_udp *u, const struct sockaddr *to, int prefix, const void *data,
                      size_t len) {
  paths *ps = slot(u)->state;
  if (!ps || ps->n == 0) return 0;
  entry *e = by_peer(ps, to);
  if (!e) return 0;
  slot(u)->counters[C_OUT]++;
  struct sockaddr_storage via;
  memcpy(&via, &e->via, sizeof via);
  /* via is never a peer of another path (path_set), so this does not loop */
  np_udp_sendto(u, (struct sockaddr *)&via, prefix, data, len);
  return 1;
}

static const struct sockaddr *path_source(np_udp *u, const uint8_t *p, size_t n,
                                          const struct sockaddr *from,
                                          struct sockaddr_storage *out) {
  paths *ps = slot(u)->state;
  if (!ps || ps->n == 0 || n == 0) return from;
  if (p[0] != WIRE_DATA && p[0] != WIRE_TOUCH && p[0] != WIRE_TOUCH_ACK) return from;
  entry *e = by_via(ps, from);
  if (!e) return from;
  slot(u)->counters[C_IN]++;
  memcpy(out, &e->peer, sizeof *out); /* the entry may go while the frame is handled */
  return (struct sockaddr *)out;
}

static void path_free(np_udp *u) {
  np_udp_slot *sl = slot(u);
  free(sl->state);
  sl->state = NULL;
}

static int udp_path_set(lua_State *L) {
  np_udp *u = np_udp_check(L, 1);
  struct sockaddr_storage peer, via;
  np_parse_addr(L, 2, 3, &peer);
  np_parse_addr(L, 4, 5, &via);
  luaL_argcheck(L, !addr_equal((struct sockaddr *)&peer, (struct sockaddr *)&via), 4,
                "the path leads to the peer's own address");
  paths *ps = state(u, 1);
  if (!ps) return np_push_error(L, UV_ENOMEM);
  entry *e = by_peer(ps, (struct sockaddr *)&peer);
  /* one peer per via, and no chains: a via is no peer, a peer no via */
  entry *other = by_via(ps, (struct sockaddr *)&via);
  if (other && other != e) return np_push_fail(L, "EEXIST", "that address is another peer's path");
  if (by_peer(ps, (struct sockaddr *)&via) || by_via(ps, (struct sockaddr *)&peer))
    return np_push_fail(L, "EINVAL", "a path cannot lead through another path");
  if (!e) {
    if (ps->n == PATH_MAX_ENTRIES) return np_push_error(L, UV_ENOSPC);
    e = &ps->e[ps->n++];
  }
  e->peer = peer;
  e->via = via;
  lua_pushboolean(L, 1);
  return 1;
}

static int udp_path_clear(lua_State *L) {
  np_udp *u = np_udp_check(L, 1);
  struct sockaddr_storage peer;
  np_parse_addr(L, 2, 3, &peer);
  paths *ps = state(u, 0);
  entry *e = by_peer(ps, (struct sockaddr *)&peer);
  if (e) *e = ps->e[--ps->n];
  lua_pushboolean(L, e != NULL);
  return 1;
}

static int udp_path_get(lua_State *L) {
  np_udp *u = np_udp_check(L, 1);
  struct sockaddr_storage peer;
  np_parse_addr(L, 2, 3, &peer);
  entry *e = by_peer(state(u, 0), (struct sockaddr *)&peer);
  if (!e) {
    lua_pushnil(L);
    return 1;
  }
  return np_push_addr(L, (struct sockaddr *)&e->via);
}

static const luaL_Reg methods[] = {
    {"path_set", udp_path_set},
    {"path_clear", udp_path_clear},
    {"path_get", udp_path_get},
    {NULL, NULL},
};

const np_udp_engine np_udp_path_engine = {
    .name = "path",
    .counters = counters,
    .methods = methods,
    .route = path_route,
    .source = path_source,
    .free = path_free,
};
