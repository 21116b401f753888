/*
 * np_udp_relay.c - TURN relaying under every other engine of a socket: a
 * route says "datagrams for peer P go to TURN server S on channel N", so
 * touch, punch, data and control traffic toward P leave as ChannelData
 * (RFC 8656 §12) to S, and ChannelData that S sends on N comes back into
 * the demux as if P had sent it.  The engines above never know a path is
 * relayed.  The TURN client (lua/natpunch/turn.lua) allocates, binds the
 * channel on the server and then adds the route here.
 *
 *   udp:relay_add(peer_host, peer_port, server_host, server_port, channel)
 *     -> true | nil, err, code         channel 0x4000..0x43FF
 *   udp:relay_remove(peer_host, peer_port) -> boolean
 *   udp:relay_input(data, peer_host, peer_port)   a datagram the server
 *     relayed in a Data indication, handled as if received from the peer
 *
 * Channel numbers are kept to 0x4000..0x43FF so that their first bytes
 * (0x40..0x43) fit the hub's frame table; the client picks them.
 * An engine of the UDP hub (np_udp.h): frames 0x40..0x43.
 */
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "np_udp.h"
#include "stun.h"
#include "turn.h"

extern const np_udp_engine np_udp_relay_engine;

enum { C_IN, C_OUT, C_UNKNOWN, C_NESTED, C_ERRORS };
static const char *const counters[] = {"relay_in",     "relay_out",    "relay_unknown",
                                       "relay_nested", "relay_errors", NULL};

#define RELAY_MAX_ROUTES   16
#define RELAY_CHANNEL_LAST 0x43FF
#define RELAY_BUF          (TURN_CHANNEL_HEADER + 65535)

typedef struct route {
  struct sockaddr_storage peer, server;
  uint16_t channel;
} route;

typedef struct relay {
  unsigned n;
  route r[RELAY_MAX_ROUTES];
  uint8_t buf[RELAY_BUF];
} relay;

static np_udp_slot *slot(np_udp *u) {
  return np_udp_slot_of(u, &np_udp_relay_engine);
}

static relay *state(np_udp *u, int create) {
  np_udp_slot *sl = slot(u);
  if (!sl->state && create) sl->state = calloc(1, sizeof(relay));
  return sl->state;
}

static route *by_peer(relay *rl, const struct sockaddr *peer) {
  for (unsigned i = 0; rl && i < rl->n; i++)
    if (addr_equal((struct sockaddr *)&rl->r[i].peer, peer)) return &rl->r[i];
  return NULL;
}

static int relay_route(np_udp *u, const struct sockaddr *to, int prefix, const void *data,
                       size_t len) {
  relay *rl = state(u, 0);
  route *r = by_peer(rl, to);
  if (!r) return 0;
  size_t total = len + (prefix >= 0);
  np_udp_slot *sl = slot(u);
  if (total > 0xFFFF) {
    sl->counters[C_ERRORS]++;
    return 1;
  }
  uint8_t *p = rl->buf;
  if (prefix >= 0) p[TURN_CHANNEL_HEADER] = (uint8_t)prefix;
  memcpy(p + TURN_CHANNEL_HEADER + (prefix >= 0), data, len);
  long n = turn_channel_write(p, sizeof rl->buf, r->channel, p + TURN_CHANNEL_HEADER, total);
  sl->counters[C_OUT]++;
  /* to the server, which no route names: this comes back with 0 */
  if (n < 0 || np_udp_sendto(u, (struct sockaddr *)&r->server, -1, p, (size_t)n) < 0)
    sl->counters[C_ERRORS]++;
  return 1;
}

static void relay_pass_on(np_udp *u, const uint8_t *p, size_t n, const struct sockaddr *peer) {
  np_udp_slot *sl = slot(u);
  /* ChannelData inside ChannelData would recurse once per 4 bytes */
  if (n > 0 && p[0] >= 0x40 && p[0] <= 0x4F) {
    sl->counters[C_NESTED]++;
    return;
  }
  sl->counters[C_IN]++;
  struct sockaddr_storage from;
  memcpy(&from, peer, sizeof from); /* the route may go while it runs */
  np_udp_input(u, p, n, (struct sockaddr *)&from);
}

static void relay_input(np_udp *u, const uint8_t *p, size_t n, const struct sockaddr *from) {
  relay *rl = state(u, 0);
  uint16_t ch;
  const uint8_t *data;
  size_t dlen;
  route *r = NULL;
  if (rl && turn_channel_parse(p, n, &ch, &data, &dlen) == 0)
    for (unsigned i = 0; i < rl->n && !r; i++)
      if (rl->r[i].channel == ch && addr_equal((struct sockaddr *)&rl->r[i].server, from))
        r = &rl->r[i];
  if (!r) {
    slot(u)->counters[C_UNKNOWN]++;
    return;
  }
  relay_pass_on(u, data, dlen, (struct sockaddr *)&r->peer);
}

static void relay_free(np_udp *u) {
  np_udp_slot *sl = slot(u);
  free(sl->state);
  sl->state = NULL;
}

static int udp_relay_add(lua_State *L) {
  np_udp *u = np_udp_check(L, 1);
  struct sockaddr_storage peer, server;
  np_parse_addr(L, 2, 3, &peer);
  np_parse_addr(L, 4, 5, &server);
  lua_Integer ch = luaL_checkinteger(L, 6);
  luaL_argcheck(L, ch >= STUN_CHANNEL_MIN && ch <= RELAY_CHANNEL_LAST, 6,
                "channel number out of range 0x4000..0x43FF");
  luaL_argcheck(L, !addr_equal((struct sockaddr *)&peer, (struct sockaddr *)&server), 2,
                "the peer is the relay server itself");
  relay *rl = state(u, 1);
  if (!rl) return np_push_error(L, UV_ENOMEM);
  route *r = by_peer(rl, (struct sockaddr *)&peer);
  for (unsigned i = 0; i < rl->n && !r; i++)
    if (rl->r[i].channel == ch &&
        addr_equal((struct sockaddr *)&rl->r[i].server, (struct sockaddr *)&server))
      return luaL_error(L, "relay_add: channel 0x%04x is bound to another peer", (int)ch);
  if (!r) {
    if (rl->n == RELAY_MAX_ROUTES) return np_push_error(L, UV_ENOSPC);
    r = &rl->r[rl->n++];
  }
  r->peer = peer;
  r->server = server;
  r->channel = (uint16_t)ch;
  lua_pushboolean(L, 1);
  return 1;
}

static int udp_relay_remove(lua_State *L) {
  np_udp *u = np_udp_check(L, 1);
  struct sockaddr_storage peer;
  np_parse_addr(L, 2, 3, &peer);
  relay *rl = state(u, 0);
  route *r = by_peer(rl, (struct sockaddr *)&peer);
  if (r) *r = rl->r[--rl->n];
  lua_pushboolean(L, r != NULL);
  return 1;
}

static int udp_relay_input(lua_State *L) {
  np_udp *u = np_udp_check(L, 1);
  size_t n;
  const uint8_t *p = (const uint8_t *)luaL_checklstring(L, 2, &n);
  struct sockaddr_storage peer;
  np_parse_addr(L, 3, 4, &peer);
  relay_pass_on(u, p, n, (struct sockaddr *)&peer);
  return 0;
}

static const luaL_Reg methods[] = {
    {"relay_add", udp_relay_add},
    {"relay_remove", udp_relay_remove},
    {"relay_input", udp_relay_input},
    {NULL, NULL},
};

const np_udp_engine np_udp_relay_engine = {
    .name = "relay",
    .frames = {0x40, 0x41, 0x42, 0x43},
    .nframes = 4,
    .counters = counters,
    .methods = methods,
    .input = relay_input,
    .route = relay_route,
    .free = relay_free,
};
