/*
 * punch.h - UDP hole punching: connectivity checks between two peers that a
 * rendezvous server introduced to each other.
 *
 * Both peers learn each other's candidates (private/LAN endpoint, public
 * endpoint seen by the server) plus a shared 8-byte session nonce, and send
 * PUNCH requests to all of them at once; the first request that gets a
 * response wins, and only that path is reported.  Outgoing requests open
 * the holes in our own NAT; the peer's requests that come through reveal its
 * real mapping (a peer-reflexive candidate: how a symmetric NAT's new port
 * is learned), which we check at once ("triggered check", RFC 8445 section
 * 7.3.1.4).  Like touch.h this is a pure state machine: frames and time in,
 * actions and a next deadline out.
 *
 * Wire (big-endian, 22 bytes; receivers ignore anything after byte 22):
 *   [0x08][kind u8: 0 request, 1 response][nonce 8][seq u32][tie-breaker u64]
 * A response echoes the request's seq and carries the responder's own
 * tie-breaker.  See docs/PROTOCOL.md, "Punch".
 */
#ifndef NATPUNCH_PUNCH_H
#define NATPUNCH_PUNCH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define PUNCH_NONCE_LEN        8
#define PUNCH_FRAME_LEN        22
#define PUNCH_MAX_CANDIDATES   16
#define PUNCH_HISTORY          256 /* requests remembered to match responses */
#define PUNCH_QUEUE            64  /* pending actions per session */
#define PUNCH_EARLY_MAX        16  /* punch_set: cached early requests */
#define PUNCH_EARLY_MAX_AGE_MS 3000
#define PUNCH_TAG_MAX          16  /* bytes after the frame kept with an early request (a MAC) */
#define PUNCH_REPLAY_WINDOW    256 /* request seqs remembered per peer tie-breaker */
#define PUNCH_REPLAY_TIES      4   /* peer tie-breakers (peer sessions) remembered */

/* Error codes: XX(name, value, message), negative like libuv's (the same
 * X-macro pattern as STUN_ERRNO_MAP).  The last two are also the reasons
 * a session fails (punch_action.reason).
 *   EINVAL     bad argument or configuration
 *   EMALFORMED not a PUNCH frame, truncated, unknown kind
 *   ENONCE     another session's nonce / no such session
 *   ESELF      our own request came back (our tie-breaker)
 *   ESTALE     response to no outstanding request
 *   EPATH      response from another address than asked
 *   EFULL      candidate table or session set full
 *   ECLOSED    the session has failed
 *   EEXIST     a session with this nonce exists
 *   ETIMEDOUT  failed: nothing heard from the peer
 *   EONEWAY    failed: the peer's requests came in, ours got no answer
 *   EREPLAY    a request seq (or a response to one of ours) seen before */
#define PUNCH_ERRNO_MAP(XX)                                                    \
  XX(EINVAL, -1, "invalid argument")                                           \
  XX(EMALFORMED, -2, "malformed punch frame")                                  \
  XX(ENONCE, -3, "unknown session nonce")                                      \
  XX(ESELF, -4, "our own request came back")                                   \
  XX(ESTALE, -5, "response to no outstanding request")                         \
  XX(EPATH, -6, "response from an unexpected address")                         \
  XX(EFULL, -7, "table full")                                                  \
  XX(ECLOSED, -8, "session failed")                                            \
  XX(EEXIST, -9, "session exists")                                             \
  XX(ETIMEDOUT, -10, "timeout: nothing heard from the peer")                   \
  XX(EONEWAY, -11, "one-way: the peer's requests came in, ours got no answer") \
  XX(EREPLAY, -12, "replayed frame")

enum punch_error {
  PUNCH_OK = 0,
#define XX(name, value, msg) PUNCH_##name = value,
  PUNCH_ERRNO_MAP(XX)
#undef XX
};
#define PUNCH_CACHED 1 /* punch_set_input: request kept for later */

/* "ENONCE" etc.; "UNKNOWN" for a value not in the map. */
const char *punch_errname(int err);
const char *punch_strerror(int err);

typedef enum punch_cand_kind {
  PUNCH_CAND_PRIVATE = 0,       /* LAN address the peer reported */
  PUNCH_CAND_PUBLIC = 1,        /* server-reflexive: as the server saw it */
  PUNCH_CAND_PEER_REFLEXIVE = 2 /* learned from a request that came in */
} punch_cand_kind;
const char *punch_cand_kind_name(int kind); /* "private", "public", "peer-reflexive" */

/* Why a session failed: an error code of the map (punch_errname). */
typedef enum punch_fail_reason {
  PUNCH_FAIL_TIMEOUT = PUNCH_ETIMEDOUT,
  PUNCH_FAIL_ONE_WAY = PUNCH_EONEWAY
} punch_fail_reason;

typedef struct punch_config {
  uint32_t initial_interval_ms; /* between the first two rounds */
  uint32_t max_interval_ms;
  unsigned backoff;    /* interval multiplier per round, >= 1 */
  uint32_t timeout_ms; /* from start to FAILED */
} punch_config;

/* 20 ms doubling to 200 ms, 5000 ms timeout. */
void punch_config_default(punch_config *cfg);
int punch_config_check(const punch_config *cfg); /* 0 or PUNCH_EINVAL */

typedef enum punch_frame_kind { PUNCH_REQUEST = 0, PUNCH_RESPONSE = 1 } punch_frame_kind;

typedef struct punch_frame {
  uint8_t kind;
  uint8_t nonce[PUNCH_NONCE_LEN];
  uint32_t seq;
  uint64_t tie;
} punch_frame;

int punch_parse(const uint8_t *buf, size_t len, punch_frame *out); /* 0 or PUNCH_EMALFORMED */
size_t punch_build(uint8_t *buf, const punch_frame *f);            /* PUNCH_FRAME_LEN bytes */

typedef enum punch_state {
  PUNCH_STATE_NEW = 0, /* created, not started: answers requests */
  PUNCH_STATE_RUNNING,
  PUNCH_STATE_SUCCEEDED, /* answers requests, probes no more */
  PUNCH_STATE_FAILED     /* silent */
} punch_state;

typedef struct punch_session punch_session;

typedef enum punch_action_kind {
  PUNCH_TRANSMIT = 1, /* send data/len to addr */
  PUNCH_SUCCEEDED,    /* addr answered first: cand_kind, rtt_ms */
  PUNCH_FAILED        /* reason */
} punch_action_kind;

typedef struct punch_action {
  punch_action_kind kind;
  punch_session *session;
  struct sockaddr_storage addr;
  const uint8_t *data; /* valid until the next call on the session/set */
  size_t len;
  int cand_kind;
  uint32_t rtt_ms;
  int reason;
} punch_action;

typedef struct punch_stats {
  uint64_t requests_sent; /* rounds and triggered checks */
  uint64_t triggered;     /* of which triggered checks */
  uint64_t responses_sent;
  uint64_t requests_received;
  uint64_t responses_received;
  uint64_t rejected;        /* frames refused with an error code */
  uint64_t replayed;        /* of which requests/responses seen before (EREPLAY) */
  uint64_t actions_dropped; /* transmits not queued: PUNCH_QUEUE full */
  unsigned candidates;
  unsigned rounds;
} punch_stats;

/* NULL if cfg is invalid or memory is short.  tie_breaker: our random
 * 64-bit value; it tells our own reflected requests apart and gives the two
 * sides distinct roles (punch_session_controlling). */
punch_session *punch_session_new(const punch_config *cfg, const uint8_t nonce[PUNCH_NONCE_LEN],
                                 uint64_t tie_breaker);
void punch_session_free(punch_session *s);

/* Requests carry a seq that the peer never reuses (every retransmission
 * is a new request), so a request whose (tie-breaker, seq) was seen before
 * is a network duplicate or a replay: dropped (PUNCH_EREPLAY) with no
 * response and no triggered check.  The last PUNCH_REPLAY_WINDOW seqs of
 * the last PUNCH_REPLAY_TIES peer tie-breakers are remembered (a peer that
 * punches again with the same nonce has a new tie-breaker); older seqs are
 * dropped too.  Likewise only the first response to each of our requests
 * counts. */

/* Add a candidate of the peer; an address already known keeps its first
 * kind unless it was peer-reflexive.  While running, the new candidate is
 * checked at once.  0, PUNCH_EFULL or PUNCH_EINVAL. */
int punch_session_add_candidate(punch_session *s, uint64_t now, const struct sockaddr *addr,
                                punch_cand_kind kind, uint32_t priority);

/* First round now: a request to every candidate, private ones first. */
int punch_session_start(punch_session *s, uint64_t now);

/* A received PUNCH frame from `from`.  0 if used, else a negative code. */
int punch_session_input(punch_session *s, uint64_t now, const struct sockaddr *from,
                        const uint8_t *frame, size_t len);
int punch_session_input_frame(punch_session *s, uint64_t now, const struct sockaddr *from,
                              const punch_frame *f);

void punch_session_tick(punch_session *s, uint64_t now);
/* Next round or the timeout while running; after success, once, the end
 * of the linger period (start + timeout); UINT64_MAX otherwise. */
uint64_t punch_session_next_deadline(const punch_session *s);
int punch_session_pop(punch_session *s, punch_action *out); /* 1 or 0 */

punch_state punch_session_state(const punch_session *s);
/* 1 once the session may be freed: FAILED, or SUCCEEDED and start + timeout
 * has passed (until then it answers the peer, which may still be checking). */
int punch_session_finished(const punch_session *s, uint64_t now);
const uint8_t *punch_session_nonce(const punch_session *s);
/* 0 and the winning address/kind/RTT once SUCCEEDED, else PUNCH_EINVAL. */
int punch_session_selected(const punch_session *s, struct sockaddr_storage *addr, int *kind,
                           uint32_t *rtt_ms);
/* 1 if our tie-breaker is the larger, 0 if smaller, -1 if the peer's is
 * not known yet (or equal). */
int punch_session_controlling(const punch_session *s);
void punch_session_set_user(punch_session *s, void *user);
void *punch_session_user(const punch_session *s);
void punch_session_get_stats(const punch_session *s, punch_stats *out);

/*
 * punch_set: the sessions of one socket, keyed by nonce, plus a small cache
 * of requests whose nonce is not known yet (the peer's introduction may
 * arrive before ours); adding the session replays them.
 */
typedef struct punch_set punch_set;

typedef struct punch_set_stats {
  uint64_t cached; /* early requests kept */
  uint64_t replayed;
  uint64_t evicted; /* dropped for room */
  uint64_t expired; /* dropped for age */
  uint64_t unknown; /* responses/… for no session */
  uint64_t malformed;
  uint64_t early_rejected; /* cached requests that failed the session's check */
} punch_set_stats;

/* A check of an early request's bytes (frame and what followed it, at most
 * PUNCH_TAG_MAX bytes) run when its session is added: 1 to replay it, 0
 * to drop it (counted in early_rejected).  E.g. a MAC under the session
 * key, which the set cannot know before the session exists. */
typedef int (*punch_verify_fn)(void *arg, const uint8_t *frame, size_t len);

punch_set *punch_set_new(unsigned max_sessions);
void punch_set_free(punch_set *set); /* frees its sessions */
/* Create and own a session; replays cached requests for its nonce.  NULL and
 * *err (PUNCH_EEXIST, PUNCH_EFULL, PUNCH_EINVAL) on failure. */
punch_session *punch_set_add(punch_set *set, uint64_t now, const punch_config *cfg,
                             const uint8_t nonce[PUNCH_NONCE_LEN], uint64_t tie_breaker, int *err);
/* The same, replaying only the cached requests that verify(arg, ...)
 * accepts (verify is called before this returns, never later). */
punch_session *punch_set_add_verified(punch_set *set, uint64_t now, const punch_config *cfg,
                                      const uint8_t nonce[PUNCH_NONCE_LEN], uint64_t tie_breaker,
                                      punch_verify_fn verify, void *arg, int *err);
void punch_set_remove(punch_set *set, punch_session *s); /* and frees it */
punch_session *punch_set_find(const punch_set *set, const uint8_t nonce[PUNCH_NONCE_LEN]);
unsigned punch_set_count(const punch_set *set);
/* Route a PUNCH frame: the session's result, PUNCH_CACHED, PUNCH_ENONCE
 * (a response for no session) or PUNCH_EMALFORMED.  A cached request keeps
 * its first len - PUNCH_FRAME_LEN bytes after the frame (at most
 * PUNCH_TAG_MAX) for punch_set_add_verified. */
int punch_set_input(punch_set *set, uint64_t now, const struct sockaddr *from, const uint8_t *frame,
                    size_t len);
void punch_set_tick(punch_set *set, uint64_t now);
uint64_t punch_set_next_deadline(const punch_set *set);
int punch_set_pop(punch_set *set, punch_action *out); /* action->session says whose */
void punch_set_get_stats(const punch_set *set, punch_set_stats *out);

#endif
