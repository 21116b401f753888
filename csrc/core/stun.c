/*
 * stun.c - STUN decoder: header, attributes, FINGERPRINT and integrity
 * checks.  The encoder and the server fast path are in stun_write.c.
 *
 * Every read is bounds-checked against the message end, which is itself
 * checked against the buffer length before any attribute is looked at.
 */
#include "bytes.h"
#include "stun.h"

#include "crypto.h"

#include <string.h>

const char *stun_errname(int err) {
  switch (err) {
#define XX(name, value, msg) \
  case value: return #name;
    STUN_ERRNO_MAP(XX)
#undef XX
  }
  return "UNKNOWN";
}

const char *stun_strerror(int err) {
  switch (err) {
#define XX(name, value, msg) \
  case value: return msg;
    STUN_ERRNO_MAP(XX)
#undef XX
  }
  return "unknown STUN error";
}

/*
 *  0                 1
 *  2  3  4 5 6 7 8 9 0 1 2 3 4 5
 * +--+--+-+-+-+-+-+-+-+-+-+-+-+-+
 * |M |M |M|M|M|C|M|M|M|C|M|M|M|M|
 * |11|10|9|8|7|1|6|5|4|0|3|2|1|0|
 * +--+--+-+-+-+-+-+-+-+-+-+-+-+-+
 *   RFC 8489 §5, Figure 3: Format of STUN Message Type Field
 */
uint16_t stun_type(uint16_t method, uint16_t cls) {
  return (uint16_t)((method & 0x000F) | (method & 0x0070) << 1 | (method & 0x0F80) << 2 |
                    (cls & STUN_CLASS_MASK));
}

uint16_t stun_type_method(uint16_t type) {
  return (uint16_t)((type & 0x000F) | (type & 0x00E0) >> 1 | (type & 0x3E00) >> 2);
}

uint16_t stun_type_class(uint16_t type) {
  return type & STUN_CLASS_MASK;
}

/* RFC 3489 §11.1 defines only these six types; a cookie-less message with
 * any other type is not taken for a classic one. */
static bool classic_type(uint16_t type) {
  switch (type) {
  case 0x0001: /* Binding request, response, error response */
  case 0x0101:
  case 0x0111:
  case 0x0002: /* Shared Secret request, response, error response */
  case 0x0102:
  case 0x0112: return true;
  }
  return false;
}

/* The header checks shared by stun_read, stun_is_stun and stun_frame_size,
 * except the comparison of the length field with the buffer length. */
static int check_header(const uint8_t *data, size_t len) {
  if (len < STUN_HEADER_SIZE) return STUN_ETRUNCATED;
  /* RFC 8489 §5: the most significant 2 bits of every STUN message
   * are zeroes. */
  if (data[0] & 0xC0) return STUN_ENOTSTUN;
  /* RFC 8489 §5: all attributes are padded, so the length is a
   * multiple of 4. */
  if (be16(data + 2) % 4 != 0) return STUN_EBADLENGTH;
  if (be32(data + 4) != STUN_MAGIC_COOKIE && !classic_type(be16(data))) return STUN_EBADCOOKIE;
  return 0;
}

bool stun_is_stun(const uint8_t *data, size_t len) {
  /* RFC 7983 §7: a first byte in 0..3 is STUN. */
  if (data == NULL || check_header(data, len) < 0 || data[0] > 3) return false;
  return (size_t)be16(data + 2) + STUN_HEADER_SIZE == len;
}

long stun_frame_size(const uint8_t *data, size_t len) {
  if (len < STUN_HEADER_SIZE) return 0;
  int r = check_header(data, len);
  if (r < 0) return r;
  return (long)be16(data + 2) + STUN_HEADER_SIZE;
}

/*
 *  0                   1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |0 0 0 0 0 0 0 0|    Family     |           Port                |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |                                                               |
 * |                 Address (32 bits or 128 bits)                 |
 * |                                                               |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *          RFC 8489 §14.1, Figure 5: Format of MAPPED-ADDRESS
 *
 * XOR-MAPPED-ADDRESS (§14.2) has the same layout with the port XORed with
 * the top 16 bits of the cookie and the address with the cookie (IPv4) or
 * cookie || transaction id (IPv6): i.e. with header bytes 4..19.  In a
 * classic message those bytes are the transaction id, which is what old
 * XOR-MAPPED-ADDRESS drafts did too.
 */
static int read_addr(const uint8_t *hdr, const uint8_t *v, size_t vlen, bool xored,
                     struct stun_addr *a) {
  if (vlen < 4) return STUN_EATTRLEN;
  size_t iplen;
  switch (v[1]) {
  case STUN_FAMILY_IPV4: iplen = 4; break;
  case STUN_FAMILY_IPV6: iplen = 16; break;
  default: return STUN_EBADFAMILY;
  }
  if (vlen != 4 + iplen) return STUN_EATTRLEN;
  memset(a, 0, sizeof *a);
  a->family = v[1];
  a->port = be16(v + 2);
  memcpy(a->ip, v + 4, iplen);
  if (xored) {
    a->port ^= be16(hdr + 4);
    for (size_t i = 0; i < iplen; i++) a->ip[i] ^= hdr[4 + i];
  }
  return 0;
}

/*
 *  0                   1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |           Reserved, should be 0         |Class|     Number    |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |      Reason Phrase (variable)                                ..
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *              RFC 8489 §14.8, Figure 7: ERROR-CODE Attribute
 */
/* The class and number of ERROR-CODE (RFC 8489 §14.8, Figure 7) and
 * ADDRESS-ERROR-CODE (RFC 8656 §18.12: the same with the family in the
 * first byte), and the reason after them. */
static int read_code(const uint8_t *v, size_t vlen, bool classic, uint16_t *code,
                     struct stun_bytes *reason) {
  /* pjnath's CVE-2021-37706 was a reason length computed as vlen - 4
   * on a shorter attribute: check before subtracting. */
  if (vlen < 4 || vlen - 4 > STUN_MAX_TEXT) return STUN_EATTRLEN;
  unsigned cls = v[2] & 0x07, num = v[3];
  /* RFC 8489 §14.8: class 3..6, number 0..99; RFC 3489 §11.2.9
   * allowed classes 1..6. */
  if (cls < (classic ? 1u : 3u) || cls > 6 || num > 99) return STUN_EBADERRCODE;
  *code = (uint16_t)(cls * 100 + num);
  reason->ptr = v + 4;
  reason->len = vlen - 4;
  return 0;
}

static int read_error(const uint8_t *v, size_t vlen, bool classic, struct stun_msg *m) {
  return read_code(v, vlen, classic, &m->error_code, &m->error_reason);
}

static void note_unknown_required(struct stun_msg *m, uint16_t type) {
  for (size_t i = 0; i < m->n_unknown_required && i < STUN_MAX_LISTED; i++)
    if (m->unknown_required[i] == type) return;
  if (m->n_unknown_required < STUN_MAX_LISTED) m->unknown_required[m->n_unknown_required] = type;
  m->n_unknown_required++;
}

static int need_len(size_t vlen, size_t want) {
  return vlen == want ? 0 : STUN_EATTRLEN;
}

/* A text attribute, at most max bytes (STUN_MAX_USERNAME, STUN_MAX_TEXT). */
static int set_text(struct stun_bytes *b, const uint8_t *v, size_t vlen, size_t max) {
  if (vlen > max) return STUN_EATTRLEN;
  b->ptr = v;
  b->len = vlen;
  return 0;
}

/* Decode one attribute that is to be processed (not ignored, not a
 * duplicate).  `has` is the bit it sets, or 0 for unknown types. */
static int read_attr(const uint8_t *hdr, uint16_t type, const uint8_t *v, size_t vlen, size_t off,
                     struct stun_msg *m) {
  int r = 0;
  switch (type) {
  case STUN_ATTR_MAPPED_ADDRESS: return read_addr(hdr, v, vlen, false, &m->mapped);
  case STUN_ATTR_XOR_MAPPED_ADDRESS: return read_addr(hdr, v, vlen, true, &m->xor_mapped);
  case STUN_ATTR_RESPONSE_ORIGIN: return read_addr(hdr, v, vlen, false, &m->response_origin);
  case STUN_ATTR_OTHER_ADDRESS: return read_addr(hdr, v, vlen, false, &m->other_address);
  case STUN_ATTR_SOURCE_ADDRESS: return read_addr(hdr, v, vlen, false, &m->source_address);
  case STUN_ATTR_CHANGED_ADDRESS: return read_addr(hdr, v, vlen, false, &m->changed_address);
  case STUN_ATTR_USERNAME: return set_text(&m->username, v, vlen, STUN_MAX_USERNAME);
  case STUN_ATTR_SOFTWARE: return set_text(&m->software, v, vlen, STUN_MAX_TEXT);
  case STUN_ATTR_REALM: return set_text(&m->realm, v, vlen, STUN_MAX_TEXT);
  case STUN_ATTR_NONCE: return set_text(&m->nonce, v, vlen, STUN_MAX_TEXT);
  case STUN_ATTR_ERROR_CODE: return read_error(v, vlen, m->classic, m);
  case STUN_ATTR_UNKNOWN_ATTRIBUTES:
    /* RFC 8489 §14.13: a list of 16-bit types. */
    if (vlen % 2 != 0) return STUN_EATTRLEN;
    for (size_t i = 0; i < vlen / 2 && i < STUN_MAX_LISTED; i++)
      m->unknown_attributes[m->n_unknown_attributes++] = be16(v + 2 * i);
    return 0;
  case STUN_ATTR_CHANGE_REQUEST:
    /* RFC 5780 §7.2: 32 bits, only the A and B flags used. */
    if ((r = need_len(vlen, 4)) == 0)
      m->change_request = be32(v) & (STUN_CHANGE_IP | STUN_CHANGE_PORT);
    return r;
  case STUN_ATTR_RESPONSE_PORT:
    /* RFC 5780 §7.5: 16-bit port then 16 bits of padding; some
     * implementations send the port alone (length 2), so both are
     * accepted. */
    if (vlen != 2 && vlen != 4) return STUN_EATTRLEN;
    m->response_port = be16(v);
    return 0;
  case STUN_ATTR_PADDING: m->padding_len = vlen; return 0;
  case STUN_ATTR_XOR_PEER_ADDRESS: return read_addr(hdr, v, vlen, true, &m->xor_peer);
  case STUN_ATTR_XOR_RELAYED_ADDRESS: return read_addr(hdr, v, vlen, true, &m->xor_relayed);
  case STUN_ATTR_DATA:
    m->data.ptr = v;
    m->data.len = vlen;
    return 0;
  case STUN_ATTR_LIFETIME:
    if ((r = need_len(vlen, 4)) == 0) m->lifetime = be32(v);
    return r;
  case STUN_ATTR_CHANNEL_NUMBER:
    /* RFC 8656 §18.1: 16-bit number, 16 reserved bits */
    if ((r = need_len(vlen, 4)) == 0) m->channel_number = be16(v);
    return r;
  case STUN_ATTR_REQUESTED_TRANSPORT:
    if ((r = need_len(vlen, 4)) == 0) m->requested_transport = v[0];
    return r;
  case STUN_ATTR_DONT_FRAGMENT: return need_len(vlen, 0);
  case STUN_ATTR_REQUESTED_ADDRESS_FAMILY:
    /* RFC 8656 §18.10, §18.11: family then 24 reserved bits */
    if ((r = need_len(vlen, 4)) == 0) m->requested_family = v[0];
    return r;
  case STUN_ATTR_ADDITIONAL_ADDRESS_FAMILY:
    if ((r = need_len(vlen, 4)) == 0) m->additional_family = v[0];
    return r;
  case STUN_ATTR_ADDRESS_ERROR_CODE:
    if (vlen >= 1) m->address_error_family = v[0];
    return read_code(v, vlen, false, &m->address_error_code, &m->address_error_reason);
  case STUN_ATTR_PRIORITY:
    if ((r = need_len(vlen, 4)) == 0) m->priority = be32(v);
    return r;
  case STUN_ATTR_USE_CANDIDATE: return need_len(vlen, 0);
  case STUN_ATTR_ICE_CONTROLLED:
  case STUN_ATTR_ICE_CONTROLLING:
    if ((r = need_len(vlen, 8)) == 0) {
      uint64_t t = (uint64_t)be32(v) << 32 | be32(v + 4);
      if (type == STUN_ATTR_ICE_CONTROLLED)
        m->ice_controlled = t;
      else
        m->ice_controlling = t;
    }
    return r;
  case STUN_ATTR_MESSAGE_INTEGRITY:
    if ((r = need_len(vlen, STUN_MI_SIZE)) == 0) m->mi_offset = off;
    return r;
  case STUN_ATTR_MESSAGE_INTEGRITY_SHA256:
    /* RFC 8489 §14.6: 16 to 32 bytes, a multiple of 4. */
    if (vlen < STUN_MI256_MIN || vlen > STUN_MI256_SIZE || vlen % 4 != 0) return STUN_EATTRLEN;
    m->mi256_offset = off;
    m->mi256_len = vlen;
    return 0;
  }
  return 0;
}

static uint32_t has_bit(uint16_t type) {
  switch (type) {
  case STUN_ATTR_MAPPED_ADDRESS: return STUN_HAS_MAPPED;
  case STUN_ATTR_XOR_MAPPED_ADDRESS: return STUN_HAS_XOR_MAPPED;
  case STUN_ATTR_RESPONSE_ORIGIN: return STUN_HAS_RESPONSE_ORIGIN;
  case STUN_ATTR_OTHER_ADDRESS: return STUN_HAS_OTHER_ADDRESS;
  case STUN_ATTR_SOURCE_ADDRESS: return STUN_HAS_SOURCE_ADDRESS;
  case STUN_ATTR_CHANGED_ADDRESS: return STUN_HAS_CHANGED_ADDRESS;
  case STUN_ATTR_USERNAME: return STUN_HAS_USERNAME;
  case STUN_ATTR_SOFTWARE: return STUN_HAS_SOFTWARE;
  case STUN_ATTR_REALM: return STUN_HAS_REALM;
  case STUN_ATTR_NONCE: return STUN_HAS_NONCE;
  case STUN_ATTR_ERROR_CODE: return STUN_HAS_ERROR_CODE;
  case STUN_ATTR_UNKNOWN_ATTRIBUTES: return STUN_HAS_UNKNOWN_ATTRIBUTES;
  case STUN_ATTR_CHANGE_REQUEST: return STUN_HAS_CHANGE_REQUEST;
  case STUN_ATTR_RESPONSE_PORT: return STUN_HAS_RESPONSE_PORT;
  case STUN_ATTR_PADDING: return STUN_HAS_PADDING;
  case STUN_ATTR_PRIORITY: return STUN_HAS_PRIORITY;
  case STUN_ATTR_USE_CANDIDATE: return STUN_HAS_USE_CANDIDATE;
  case STUN_ATTR_ICE_CONTROLLED: return STUN_HAS_ICE_CONTROLLED;
  case STUN_ATTR_ICE_CONTROLLING: return STUN_HAS_ICE_CONTROLLING;
  case STUN_ATTR_MESSAGE_INTEGRITY: return STUN_HAS_INTEGRITY;
  case STUN_ATTR_MESSAGE_INTEGRITY_SHA256: return STUN_HAS_INTEGRITY_SHA256;
  case STUN_ATTR_FINGERPRINT: return STUN_HAS_FINGERPRINT;
  case STUN_ATTR_XOR_PEER_ADDRESS: return STUN_HAS_XOR_PEER;
  case STUN_ATTR_XOR_RELAYED_ADDRESS: return STUN_HAS_XOR_RELAYED;
  case STUN_ATTR_DATA: return STUN_HAS_DATA;
  case STUN_ATTR_LIFETIME: return STUN_HAS_LIFETIME;
  case STUN_ATTR_CHANNEL_NUMBER: return STUN_HAS_CHANNEL_NUMBER;
  case STUN_ATTR_REQUESTED_TRANSPORT: return STUN_HAS_REQUESTED_TRANSPORT;
  case STUN_ATTR_DONT_FRAGMENT: return STUN_HAS_DONT_FRAGMENT;
  case STUN_ATTR_REQUESTED_ADDRESS_FAMILY: return STUN_HAS_REQUESTED_FAMILY;
  case STUN_ATTR_ADDITIONAL_ADDRESS_FAMILY: return STUN_HAS_ADDITIONAL_FAMILY;
  case STUN_ATTR_ADDRESS_ERROR_CODE: return STUN_HAS_ADDRESS_ERROR;
  }
  return 0;
}

/*
 *  0                   1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |         Type                  |            Length             |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |                         Value (variable)                ....
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *                RFC 8489 §14, Figure 4: Format of STUN Attributes
 *
 * Length excludes the padding to a multiple of 4, which must be there.
 */
int stun_read(const uint8_t *data, size_t len, struct stun_msg *m) {
  memset(m, 0, sizeof *m);
  if (data == NULL) return STUN_ETRUNCATED;
  int r = check_header(data, len);
  if (r < 0) return r;
  size_t end = STUN_HEADER_SIZE + (size_t)be16(data + 2);
  if (end > len) return STUN_ETRUNCATED;
  if (end < len) return STUN_ETRAILING;

  m->type = be16(data);
  m->method = stun_type_method(m->type);
  m->cls = stun_type_class(m->type);
  m->size = end;
  m->classic = be32(data + 4) != STUN_MAGIC_COOKIE;
  m->tid_len = m->classic ? STUN_CLASSIC_TID_SIZE : STUN_TID_SIZE;
  memcpy(m->tid, data + STUN_HEADER_SIZE - m->tid_len, m->tid_len);

  size_t pos = STUN_HEADER_SIZE;
  while (pos < end) {
    if (end - pos < 4) return STUN_EATTRTRUNC;
    uint16_t type = be16(data + pos);
    size_t vlen = be16(data + pos + 2);
    size_t padded = (vlen + 3) & ~(size_t)3;
    if (padded > end - pos - 4) return STUN_EATTRTRUNC;
    const uint8_t *v = data + pos + 4;
    size_t off = pos;
    pos += 4 + padded;

    if (m->has & STUN_HAS_FINGERPRINT) return STUN_EFPNOTLAST; /* RFC 8489 §14.7: it is the last */
    if (type == STUN_ATTR_FINGERPRINT) {
      if (vlen != 4) return STUN_EATTRLEN;
      uint32_t crc = np_crc32(data, off) ^ STUN_FINGERPRINT_XOR;
      m->fingerprint_ok = crc == be32(v);
      m->has |= STUN_HAS_FINGERPRINT;
      continue;
    }
    /* RFC 8489 §14.5, §14.6: after MESSAGE-INTEGRITY only
     * MESSAGE-INTEGRITY-SHA256 and FINGERPRINT count, after
     * MESSAGE-INTEGRITY-SHA256 only FINGERPRINT; the rest is ignored
     * (an attacker could append it). */
    if (m->has & STUN_HAS_INTEGRITY_SHA256) continue;
    if ((m->has & STUN_HAS_INTEGRITY) && type != STUN_ATTR_MESSAGE_INTEGRITY_SHA256) continue;

    uint32_t bit = has_bit(type);
    if (bit == 0) {
      /* RFC 8489 §14: 0x0000-0x7FFF are comprehension-required. */
      if (type < 0x8000) note_unknown_required(m, type);
      continue;
    }
    /* RFC 8489 §14: only the first occurrence is processed; but a dual
     * allocation answers with two XOR-RELAYED-ADDRESS (RFC 8656 §7.3). */
    if (bit == STUN_HAS_XOR_RELAYED && (m->has & bit) && m->n_relayed == 1) {
      if ((r = read_addr(data, v, vlen, true, &m->xor_relayed2)) < 0) return r;
      m->n_relayed = 2;
      continue;
    }
    if (m->has & bit) continue;
    if ((r = read_attr(data, type, v, vlen, off, m)) < 0) return r;
    m->has |= bit;
    if (bit == STUN_HAS_XOR_RELAYED) m->n_relayed = 1;
  }
  return 0;
}

static int ct_equal(const uint8_t *a, const uint8_t *b, size_t n) {
  uint8_t d = 0;
  for (size_t i = 0; i < n; i++) d |= a[i] ^ b[i];
  return d == 0;
}

/* The header with the length field set as if the message ended right
 * after the attribute whose value ends at `upto` (RFC 8489 §14.5). */
static void adjusted_header(const uint8_t *data, size_t upto, uint8_t hdr[4]) {
  size_t alen = upto - STUN_HEADER_SIZE;
  hdr[0] = data[0];
  hdr[1] = data[1];
  hdr[2] = (uint8_t)(alen >> 8);
  hdr[3] = (uint8_t)alen;
}

int stun_check_integrity(const uint8_t *data, const struct stun_msg *m, const void *key,
                         size_t keylen) {
  if (!(m->has & STUN_HAS_INTEGRITY)) return STUN_ENOINTEGRITY;
  size_t off = m->mi_offset;
  uint8_t mac[NP_SHA1_LEN];
  struct np_hmac_sha1 h;
  np_hmac_sha1_init(&h, key, keylen);
  uint8_t hdr[4];
  adjusted_header(data, off + 4 + STUN_MI_SIZE, hdr);
  np_hmac_sha1_update(&h, hdr, 4);
  np_hmac_sha1_update(&h, data + 4, off - 4);
  if (m->classic && off % 64 != 0) {
    /* RFC 3489 §11.2.8: the text is zero-padded to a multiple of 64
     * bytes.  There MESSAGE-INTEGRITY was last, so the adjusted length
     * above equals the one sent. */
    static const uint8_t zeros[64];
    np_hmac_sha1_update(&h, zeros, 64 - off % 64);
  }
  np_hmac_sha1_final(&h, mac);
  int ok = ct_equal(mac, data + off + 4, STUN_MI_SIZE);
  np_wipe(&h, sizeof h);
  return ok ? 0 : STUN_EINTEGRITY;
}

int stun_check_integrity_sha256(const uint8_t *data, const struct stun_msg *m, const void *key,
                                size_t keylen) {
  if (!(m->has & STUN_HAS_INTEGRITY_SHA256)) return STUN_ENOINTEGRITY;
  size_t off = m->mi256_offset;
  uint8_t mac[NP_SHA256_LEN], hdr[4];
  struct np_hmac_sha256 h;
  adjusted_header(data, off + 4 + m->mi256_len, hdr);
  np_hmac_sha256_init(&h, key, keylen);
  np_hmac_sha256_update(&h, hdr, 4);
  np_hmac_sha256_update(&h, data + 4, off - 4);
  np_hmac_sha256_final(&h, mac);
  int ok = ct_equal(mac, data + off + 4, m->mi256_len);
  np_wipe(&h, sizeof h);
  return ok ? 0 : STUN_EINTEGRITY;
}

void stun_long_term_key(const char *username, size_t ulen, const char *realm, size_t rlen,
                        const char *password, size_t plen, uint8_t key[16]) {
  struct np_md5 c;
  np_md5_init(&c);
  np_md5_update(&c, username, ulen);
  np_md5_update(&c, ":", 1);
  np_md5_update(&c, realm, rlen);
  np_md5_update(&c, ":", 1);
  np_md5_update(&c, password, plen);
  np_md5_final(&c, key);
}
