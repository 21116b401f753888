/*
 * wire.h - how one UDP socket tells its protocols apart.
 *
 * natpunch sends STUN, its own frames and application data from the same
 * UDP socket (the NAT mapping being punched belongs to that one socket), so
 * every datagram is classified by its first byte, as RFC 7983 section 7
 * does for STUN/DTLS/RTP and RFC 9443 does for QUIC:
 *
 *   first byte   owner                         why natpunch may use it
 *   ----------   ---------------------------   --------------------------
 *   0..3         STUN (RFC 8489 section 5:     -
 *                the top two bits are 0)
 *   4..15        unassigned by RFC 7983/9443   natpunch takes 4..8
 *   16..19       ZRTP                          -
 *   20..63       DTLS                          -
 *   64..79       TURN channels (RFC 8656)      -
 *   80..127      QUIC (RFC 9443)               -
 *   128..191     RTP / RTCP                    -
 *   192..255     QUIC long header (RFC 9443)   -
 *
 * Using only 4..15 keeps a natpunch socket able to share its port with any
 * of those protocols later (e.g. DTLS or QUIC over the punched path).
 *
 *   byte   frame        body
 *   0x04   CONTROL      rendezvous control message (defined in Lua)
 *   0x05   DATA         [0x05][payload], unreliable application data
 *   0x06   TOUCH        reliable message, see touch.h
 *   0x07   TOUCH_ACK    acknowledgement of a TOUCH, see touch.h
 *   0x08   PUNCH        connectivity check request/response, see punch.h
 *
 * Anything else is dropped (and counted) by the socket.  All multi-byte
 * integers on the wire are big-endian (network order): bytes.h.
 */
#ifndef NATPUNCH_WIRE_H
#define NATPUNCH_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "bytes.h"

enum wire_type {
  WIRE_STUN_FIRST = 0x00,
  WIRE_STUN_LAST = 0x03,
  WIRE_CONTROL = 0x04,
  WIRE_DATA = 0x05,
  WIRE_TOUCH = 0x06,
  WIRE_TOUCH_ACK = 0x07,
  WIRE_PUNCH = 0x08,
  WIRE_STUN = 0x100, /* wire_classify() result for 0x00..0x03 */
  WIRE_UNKNOWN = -1  /* wire_classify() result: drop and count */
};

/* Which protocol owns a datagram: WIRE_STUN, WIRE_CONTROL .. WIRE_PUNCH, or
 * WIRE_UNKNOWN (including an empty datagram). */
static inline int wire_classify(const uint8_t *p, size_t len) {
  if (len == 0) return WIRE_UNKNOWN;
  if (p[0] <= WIRE_STUN_LAST) return WIRE_STUN;
  if (p[0] >= WIRE_CONTROL && p[0] <= WIRE_PUNCH) return p[0];
  return WIRE_UNKNOWN;
}

#endif
