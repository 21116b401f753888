/*
 * stun_write.c - STUN encoder, address helpers and the Binding fast path.
 *
 * The writer keeps the header's length field current after every
 * attribute, which is exactly what MESSAGE-INTEGRITY and FINGERPRINT need
 * (RFC 8489 §14.5, §14.7: the length counts the attribute being added).
 */
#include "addr.h"
#include "bytes.h"
#include "stun.h"

#include "crypto.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#define STUN_MAX_VALUE 0xFFFF /* 16-bit attribute and message lengths */

static size_t pad4(size_t n) {
  return (n + 3) & ~(size_t)3;
}

static void fail(struct stun_writer *w, int err) {
  if (w->err == 0) w->err = err;
}

void stun_writer_init(struct stun_writer *w, uint8_t *buf, size_t cap, uint16_t method,
                      uint16_t cls, const uint8_t *tid, size_t tid_len) {
  memset(w, 0, sizeof *w);
  w->buf = buf;
  w->cap = cap;
  w->classic = tid_len == STUN_CLASSIC_TID_SIZE;
  if (buf == NULL || tid == NULL || method > STUN_METHOD_MAX || (cls & ~STUN_CLASS_MASK) != 0 ||
      (tid_len != STUN_TID_SIZE && tid_len != STUN_CLASSIC_TID_SIZE)) {
    fail(w, STUN_EINVAL);
    return;
  }
  if (cap < STUN_HEADER_SIZE) {
    fail(w, STUN_ENOSPACE);
    return;
  }
  put_be16(buf, stun_type(method, cls));
  put_be16(buf + 2, 0);
  if (!w->classic) put_be32(buf + 4, STUN_MAGIC_COOKIE);
  memcpy(buf + STUN_HEADER_SIZE - tid_len, tid, tid_len);
  w->len = STUN_HEADER_SIZE;
}

/* Append an attribute header and zeroed, padded room for its value;
 * returns where the value goes, or NULL with w->err set. */
static uint8_t *reserve(struct stun_writer *w, uint16_t type, size_t vlen) {
  if (w->err != 0) return NULL;
  if (w->sealed || vlen > STUN_MAX_VALUE) {
    fail(w, STUN_EINVAL);
    return NULL;
  }
  size_t need = 4 + pad4(vlen);
  if (w->cap - w->len < need || w->len + need - STUN_HEADER_SIZE > STUN_MAX_VALUE) {
    fail(w, STUN_ENOSPACE);
    return NULL;
  }
  uint8_t *p = w->buf + w->len;
  put_be16(p, type);
  put_be16(p + 2, (uint16_t)vlen);
  memset(p + 4, 0, pad4(vlen));
  w->len += need;
  put_be16(w->buf + 2, (uint16_t)(w->len - STUN_HEADER_SIZE));
  return p + 4;
}

/* Whether an attribute of vlen bytes still fits, for optional ones. */
static bool fits(const struct stun_writer *w, size_t vlen) {
  return w->err == 0 && !w->sealed && vlen <= STUN_MAX_VALUE && w->cap - w->len >= 4 + pad4(vlen);
}

void stun_put(struct stun_writer *w, uint16_t type, const void *value, size_t len) {
  if (value == NULL && len > 0) {
    fail(w, STUN_EINVAL);
    return;
  }
  uint8_t *p = reserve(w, type, len);
  if (p != NULL && len > 0) memcpy(p, value, len);
}

void stun_put_u32(struct stun_writer *w, uint16_t type, uint32_t v) {
  uint8_t *p = reserve(w, type, 4);
  if (p != NULL) put_be32(p, v);
}

void stun_put_u64(struct stun_writer *w, uint16_t type, uint64_t v) {
  uint8_t *p = reserve(w, type, 8);
  if (p != NULL) {
    put_be32(p, (uint32_t)(v >> 32));
    put_be32(p + 4, (uint32_t)v);
  }
}

/* Layout in stun.c above read_addr (RFC 8489 §14.1, §14.2). */
void stun_put_addr(struct stun_writer *w, uint16_t type, const struct stun_addr *a) {
  size_t iplen;
  if (a == NULL)
    iplen = 0;
  else if (a->family == STUN_FAMILY_IPV4)
    iplen = 4;
  else if (a->family == STUN_FAMILY_IPV6)
    iplen = 16;
  else
    iplen = 0;
  if (iplen == 0) {
    fail(w, STUN_EINVAL);
    return;
  }
  uint8_t *p = reserve(w, type, 4 + iplen);
  if (p == NULL) return;
  p[1] = a->family;
  put_be16(p + 2, a->port);
  memcpy(p + 4, a->ip, iplen);
  if (stun_attr_is_xor_addr(type)) {
    p[2] ^= w->buf[4];
    p[3] ^= w->buf[5];
    for (size_t i = 0; i < iplen; i++) p[4 + i] ^= w->buf[4 + i];
  }
}

bool stun_attr_is_xor_addr(uint16_t type) {
  return type == STUN_ATTR_XOR_MAPPED_ADDRESS || type == STUN_ATTR_XOR_PEER_ADDRESS ||
         type == STUN_ATTR_XOR_RELAYED_ADDRESS;
}

void stun_put_channel_number(struct stun_writer *w, uint16_t channel) {
  if (channel < STUN_CHANNEL_MIN || channel > STUN_CHANNEL_MAX) {
    fail(w, STUN_EINVAL);
    return;
  }
  stun_put_u32(w, STUN_ATTR_CHANNEL_NUMBER, (uint32_t)channel << 16);
}

void stun_put_requested_transport(struct stun_writer *w, uint8_t protocol) {
  stun_put_u32(w, STUN_ATTR_REQUESTED_TRANSPORT, (uint32_t)protocol << 24);
}

/* Layout in stun.c above read_error (RFC 8489 §14.8). */
void stun_put_error(struct stun_writer *w, int code, const char *reason) {
  int lowest = w->classic ? 100 : 300;
  if (code < lowest || code > 699) {
    fail(w, STUN_EINVAL);
    return;
  }
  size_t rlen = reason != NULL ? strlen(reason) : 0;
  uint8_t *p = reserve(w, STUN_ATTR_ERROR_CODE, 4 + rlen);
  if (p == NULL) return;
  p[2] = (uint8_t)(code / 100);
  p[3] = (uint8_t)(code % 100);
  if (rlen > 0) memcpy(p + 4, reason, rlen);
}

void stun_put_address_family(struct stun_writer *w, uint16_t type, uint8_t family) {
  if ((type != STUN_ATTR_REQUESTED_ADDRESS_FAMILY && type != STUN_ATTR_ADDITIONAL_ADDRESS_FAMILY) ||
      (family != STUN_FAMILY_IPV4 && family != STUN_FAMILY_IPV6)) {
    fail(w, STUN_EINVAL);
    return;
  }
  stun_put_u32(w, type, (uint32_t)family << 24);
}

void stun_put_address_error(struct stun_writer *w, uint8_t family, int code, const char *reason) {
  size_t rlen = reason != NULL ? strlen(reason) : 0;
  if (code < 300 || code > 699 || rlen > STUN_MAX_TEXT ||
      (family != STUN_FAMILY_IPV4 && family != STUN_FAMILY_IPV6)) {
    fail(w, STUN_EINVAL);
    return;
  }
  uint8_t *p = reserve(w, STUN_ATTR_ADDRESS_ERROR_CODE, 4 + rlen);
  if (p == NULL) return;
  p[0] = family;
  p[2] = (uint8_t)(code / 100);
  p[3] = (uint8_t)(code % 100);
  if (rlen > 0) memcpy(p + 4, reason, rlen);
}

void stun_put_unknown(struct stun_writer *w, const uint16_t *types, size_t n) {
  if (types == NULL && n > 0) {
    fail(w, STUN_EINVAL);
    return;
  }
  /* RFC 3489 §11.2.10 repeats one type to fill an odd count to 32
   * bits; RFC 8489 §14.13 pads with zeros instead. */
  size_t count = (w->classic && n % 2 == 1) ? n + 1 : n;
  if (count > STUN_MAX_VALUE / 2) {
    fail(w, STUN_EINVAL);
    return;
  }
  uint8_t *p = reserve(w, STUN_ATTR_UNKNOWN_ATTRIBUTES, 2 * count);
  if (p == NULL) return;
  for (size_t i = 0; i < n; i++) put_be16(p + 2 * i, types[i]);
  if (count > n) put_be16(p + 2 * n, types[n - 1]);
}

void stun_put_change_request(struct stun_writer *w, uint32_t flags) {
  stun_put_u32(w, STUN_ATTR_CHANGE_REQUEST, flags & (STUN_CHANGE_IP | STUN_CHANGE_PORT));
}

void stun_put_response_port(struct stun_writer *w, uint16_t port) {
  /* RFC 5780 §7.5: the port, then 16 bits of padding. */
  stun_put_u32(w, STUN_ATTR_RESPONSE_PORT, (uint32_t)port << 16);
}

void stun_put_padding(struct stun_writer *w, size_t len) {
  reserve(w, STUN_ATTR_PADDING, len);
}

void stun_put_integrity(struct stun_writer *w, const void *key, size_t keylen) {
  if (key == NULL && keylen > 0) {
    fail(w, STUN_EINVAL);
    return;
  }
  size_t off = w->len;
  uint8_t *p = reserve(w, STUN_ATTR_MESSAGE_INTEGRITY, STUN_MI_SIZE);
  if (p == NULL) return;
  /* RFC 8489 §14.5: HMAC over the message up to the attribute, with the
   * length already counting it, which reserve() has done. */
  struct np_hmac_sha1 h;
  np_hmac_sha1_init(&h, key, keylen);
  np_hmac_sha1_update(&h, w->buf, off);
  if (w->classic && off % 64 != 0) {
    static const uint8_t zeros[64]; /* RFC 3489 §11.2.8 */
    np_hmac_sha1_update(&h, zeros, 64 - off % 64);
  }
  np_hmac_sha1_final(&h, p);
  np_wipe(&h, sizeof h);
}

void stun_put_integrity_sha256(struct stun_writer *w, const void *key, size_t keylen) {
  if (key == NULL && keylen > 0) {
    fail(w, STUN_EINVAL);
    return;
  }
  size_t off = w->len;
  uint8_t *p = reserve(w, STUN_ATTR_MESSAGE_INTEGRITY_SHA256, STUN_MI256_SIZE);
  if (p == NULL) return;
  np_hmac_sha256(key, keylen, w->buf, off, p); /* RFC 8489 §14.6 */
}

void stun_put_fingerprint(struct stun_writer *w) {
  size_t off = w->len;
  uint8_t *p = reserve(w, STUN_ATTR_FINGERPRINT, 4);
  if (p == NULL) return;
  put_be32(p, np_crc32(w->buf, off) ^ STUN_FINGERPRINT_XOR); /* RFC 8489 §14.7 */
  w->sealed = true;
}

int stun_writer_finish(struct stun_writer *w) {
  return w->err != 0 ? w->err : (int)w->len;
}

/* Through addr.c, the one sockaddr converter (IPv4-mapped rule included:
 * a dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d, and the peer
 * should learn its IPv4 address). */
int stun_addr_from_sockaddr(const struct sockaddr *sa, struct stun_addr *a) {
  memset(a, 0, sizeof *a);
  if (sa == NULL) return STUN_EINVAL;
  addr_view v;
  if (addr_view_of(sa, &v) < 0) return STUN_EAFNOSUPPORT;
  a->family = v.family == AF_INET ? STUN_FAMILY_IPV4 : STUN_FAMILY_IPV6;
  a->port = v.port;
  memcpy(a->ip, v.ip, v.ip_len);
  return 0;
}

int stun_addr_to_sockaddr(const struct stun_addr *a, struct sockaddr_storage *ss,
                          socklen_t *sslen) {
  int af = a->family == STUN_FAMILY_IPV4 ? AF_INET : a->family == STUN_FAMILY_IPV6 ? AF_INET6 : -1;
  if (addr_make(af, a->ip, a->port, ss) < 0) return STUN_EAFNOSUPPORT;
  *sslen = addr_len((const struct sockaddr *)ss);
  return 0;
}

int stun_addr_parse(const char *ip, uint16_t port, struct stun_addr *a) {
  memset(a, 0, sizeof *a);
  if (ip == NULL) return STUN_EINVAL;
  a->port = port;
  if (inet_pton(AF_INET, ip, a->ip) == 1) {
    a->family = STUN_FAMILY_IPV4;
    return 0;
  }
  if (inet_pton(AF_INET6, ip, a->ip) == 1) {
    a->family = STUN_FAMILY_IPV6;
    return 0;
  }
  return STUN_EINVAL;
}

int stun_addr_format(const struct stun_addr *a, char *buf, size_t cap) {
  int af = a->family == STUN_FAMILY_IPV4 ? AF_INET : a->family == STUN_FAMILY_IPV6 ? AF_INET6 : -1;
  if (af < 0 || cap > 0x7fffffff || inet_ntop(af, a->ip, buf, (socklen_t)cap) == NULL)
    return STUN_EINVAL;
  return 0;
}

/* Optional address attribute: written when given and when it fits. */
static int put_optional_addr(struct stun_writer *w, uint16_t type, const struct sockaddr *sa) {
  struct stun_addr a;
  if (sa == NULL) return 0;
  int r = stun_addr_from_sockaddr(sa, &a);
  if (r < 0) return r;
  if (fits(w, a.family == STUN_FAMILY_IPV4 ? 8 : 20)) stun_put_addr(w, type, &a);
  return 0;
}

static void put_optional_software(struct stun_writer *w, const char *software) {
  if (software == NULL) return;
  size_t len = strlen(software);
  /* RFC 3489 parsers (Vovida's, in Debian's `stun`) reject text whose
   * length is not a multiple of 4 (RFC 3489 §11.2.6), so a classic
   * answer pads it with spaces inside the value. */
  size_t vlen = w->classic ? pad4(len) : len;
  if (!fits(w, vlen)) return;
  uint8_t *p = reserve(w, STUN_ATTR_SOFTWARE, vlen);
  if (p != NULL) {
    memcpy(p, software, len);
    memset(p + len, ' ', vlen - len);
  }
}

static bool unspecified(const struct stun_addr *a) {
  size_t n = a->family == STUN_FAMILY_IPV4 ? 4 : 16;
  for (size_t i = 0; i < n; i++)
    if (a->ip[i] != 0) return false;
  return true;
}

int stun_answer_binding_ex(const uint8_t *req, size_t len, const struct sockaddr *from,
                           const struct stun_answer_opts *opts, uint8_t *out, size_t outcap) {
  static const struct stun_answer_opts no_opts;
  struct stun_msg m;
  struct stun_addr peer;
  struct stun_writer w;
  int r;

  if (opts == NULL) opts = &no_opts;
  if (out == NULL) return STUN_EINVAL;
  if ((r = stun_read(req, len, &m)) < 0) return r;
  /* Answering anything but a request could make two servers answer
   * each other for ever. */
  if (m.cls != STUN_CLASS_REQUEST) return STUN_ENOTREQUEST;
  if (m.method != STUN_METHOD_BINDING) return STUN_EMETHOD;
  /* RFC 8489 §7.3: a wrong FINGERPRINT means it is not STUN at all. */
  if ((m.has & STUN_HAS_FINGERPRINT) && !m.fingerprint_ok) return STUN_EBADFINGERPRINT;
  if ((r = stun_addr_from_sockaddr(from, &peer)) < 0) return r;
  /* No datagram really comes from 0.0.0.0, :: or port 0, and an answer
   * "to" one would go somewhere else (coturn's CVE-2020-26262 relayed to
   * such addresses). */
  if (peer.port == 0 || unspecified(&peer)) return STUN_EINVAL;

  size_t cap = outcap < STUN_ANSWER_MAX ? outcap : STUN_ANSWER_MAX;
  size_t fp = (m.has & STUN_HAS_FINGERPRINT) ? 8 : 0;
  if (cap < STUN_HEADER_SIZE + fp) return STUN_ENOSPACE;

  if (m.n_unknown_required > 0) {
    /* RFC 8489 §6.3.1: 420 listing what was not understood. */
    size_t n = m.n_unknown_required < STUN_MAX_LISTED ? m.n_unknown_required : STUN_MAX_LISTED;
    stun_writer_init(&w, out, cap - fp, STUN_METHOD_BINDING, STUN_CLASS_ERROR, m.tid, m.tid_len);
    stun_put_error(&w, 420, "Unknown Attribute");
    stun_put_unknown(&w, m.unknown_required, n);
  } else {
    if ((m.change_request & (STUN_CHANGE_IP | STUN_CHANGE_PORT)) &&
        !(opts->flags & STUN_ANSWER_CHANGE_OK))
      return STUN_ECHANGE;
    if ((m.has & STUN_HAS_RESPONSE_PORT) && !(opts->flags & STUN_ANSWER_RESPONSE_PORT_OK))
      return STUN_ERESPPORT;
    stun_writer_init(&w, out, cap - fp, STUN_METHOD_BINDING, STUN_CLASS_SUCCESS, m.tid, m.tid_len);
    if (m.classic) {
      /* RFC 3489 §11.2: what its clients (Debian's `stun`)
       * read; an unknown mandatory attribute would make them
       * drop the answer, so no XOR-MAPPED-ADDRESS. */
      stun_put_addr(&w, STUN_ATTR_MAPPED_ADDRESS, &peer);
      if ((r = put_optional_addr(&w, STUN_ATTR_SOURCE_ADDRESS, opts->origin)) < 0 ||
          (r = put_optional_addr(&w, STUN_ATTR_CHANGED_ADDRESS, opts->other)) < 0)
        return r;
    } else {
      /* RFC 8489 §14.2 requires XOR-MAPPED-ADDRESS; RFC 5780
       * §6.1 adds OTHER-ADDRESS and RESPONSE-ORIGIN; MAPPED-
       * ADDRESS is for clients older than RFC 5389. */
      stun_put_addr(&w, STUN_ATTR_XOR_MAPPED_ADDRESS, &peer);
      if ((r = put_optional_addr(&w, STUN_ATTR_OTHER_ADDRESS, opts->other)) < 0 ||
          (r = put_optional_addr(&w, STUN_ATTR_RESPONSE_ORIGIN, opts->origin)) < 0)
        return r;
      if (fits(&w, peer.family == STUN_FAMILY_IPV4 ? 8 : 20))
        stun_put_addr(&w, STUN_ATTR_MAPPED_ADDRESS, &peer);
    }
  }
  put_optional_software(&w, opts->software);
  if (fp != 0) {
    w.cap = cap; /* the room kept back for it */
    stun_put_fingerprint(&w);
  }
  return stun_writer_finish(&w);
}

int stun_answer_binding(const uint8_t *req, size_t len, const struct sockaddr *from,
                        const char *software, uint8_t *out, size_t outcap) {
  struct stun_answer_opts opts = {.software = software};
  return stun_answer_binding_ex(req, len, from, &opts, out, outcap);
}
