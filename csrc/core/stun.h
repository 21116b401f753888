/*
 * stun.h - STUN message codec: RFC 8489 (STUN), RFC 5780 (NAT behaviour
 * discovery attributes), RFC 8445 (ICE attributes) and the RFC 3489
 * "classic" messages that have no magic cookie.
 *
 * Pure: bytes in, struct out, and struct in, bytes out.  No I/O, no
 * allocation, no global state.  The decoder never reads outside the
 * buffer it is given; every way a message can be malformed has its own
 * negative error code (see STUN_ERRNO_MAP and stun_strerror).
 *
 *  0                   1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |0 0|     STUN Message Type     |         Message Length        |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |                         Magic Cookie                          |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |                                                               |
 * |                     Transaction ID (96 bits)                  |
 * |                                                               |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *                 RFC 8489 §5, Figure 2: Format of STUN Message Header
 *
 * In an RFC 3489 message the cookie word is the first 32 bits of a
 * 128-bit transaction id; such messages are decoded with classic = true
 * and a 16-byte transaction id.
 */
#ifndef NP_STUN_H
#define NP_STUN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define STUN_HEADER_SIZE      20          /* RFC 8489 §5 */
#define STUN_MAGIC_COOKIE     0x2112A442u /* RFC 8489 §5 */
#define STUN_TID_SIZE         12          /* RFC 8489 §5: 96 bits */
#define STUN_CLASSIC_TID_SIZE 16          /* RFC 3489 §11.1: 128 bits */
#define STUN_FINGERPRINT_XOR  0x5354554eu /* RFC 8489 §14.7: "STUN" */
#define STUN_ANSWER_MAX       128         /* our cap on a fast-path answer */
#define STUN_MAX_LISTED       16          /* attribute types kept per list */
/* USERNAME: "fewer than 513 bytes" (RFC 5389 §15.3; RFC 8489 §14.3 says
 * fewer than 509: the older, larger bound is kept for RFC 5389 clients).
 * REALM, NONCE, SOFTWARE and the ERROR-CODE reason: fewer than 128
 * characters, "as long as 763 bytes" (RFC 5389 §15.6-15.8, §15.10).  Longer
 * ones make the message malformed (STUN_EATTRLEN). */
#define STUN_MAX_USERNAME 512
#define STUN_MAX_TEXT     763

/* RFC 8489 §5, Figure 3: the class is two bits spread over the type;
 * these are the values of those bits in place (C1 = 0x100, C0 = 0x010). */
enum stun_class {
  STUN_CLASS_REQUEST = 0x000,
  STUN_CLASS_INDICATION = 0x010,
  STUN_CLASS_SUCCESS = 0x100,
  STUN_CLASS_ERROR = 0x110,
};
#define STUN_CLASS_MASK 0x0110

enum stun_method {
  STUN_METHOD_BINDING = 0x001,       /* RFC 8489 §18.2 */
  STUN_METHOD_SHARED_SECRET = 0x002, /* RFC 3489 §11.1, reserved in 8489 */
  /* TURN, RFC 8656 §17 */
  STUN_METHOD_ALLOCATE = 0x003,
  STUN_METHOD_REFRESH = 0x004,
  STUN_METHOD_SEND = 0x006, /* indication only */
  STUN_METHOD_DATA = 0x007, /* indication only */
  STUN_METHOD_CREATE_PERMISSION = 0x008,
  STUN_METHOD_CHANNEL_BIND = 0x009,
};
#define STUN_METHOD_MAX 0xFFF /* 12 bits */

/* Attribute types.  Below 0x8000 comprehension-required, above optional
 * (RFC 8489 §14). */
enum stun_attr_type {
  STUN_ATTR_MAPPED_ADDRESS = 0x0001,            /* RFC 8489 §14.1 */
  STUN_ATTR_RESPONSE_ADDRESS = 0x0002,          /* RFC 3489 §11.2.2, never honoured */
  STUN_ATTR_CHANGE_REQUEST = 0x0003,            /* RFC 5780 §7.2 */
  STUN_ATTR_SOURCE_ADDRESS = 0x0004,            /* RFC 3489 §11.2.5 */
  STUN_ATTR_CHANGED_ADDRESS = 0x0005,           /* RFC 3489 §11.2.3 */
  STUN_ATTR_USERNAME = 0x0006,                  /* RFC 8489 §14.3 */
  STUN_ATTR_MESSAGE_INTEGRITY = 0x0008,         /* RFC 8489 §14.5 */
  STUN_ATTR_ERROR_CODE = 0x0009,                /* RFC 8489 §14.8 */
  STUN_ATTR_UNKNOWN_ATTRIBUTES = 0x000A,        /* RFC 8489 §14.13 */
  STUN_ATTR_CHANNEL_NUMBER = 0x000C,            /* RFC 8656 §18.1 */
  STUN_ATTR_LIFETIME = 0x000D,                  /* RFC 8656 §18.2 */
  STUN_ATTR_XOR_PEER_ADDRESS = 0x0012,          /* RFC 8656 §18.3 */
  STUN_ATTR_DATA = 0x0013,                      /* RFC 8656 §18.4 */
  STUN_ATTR_REALM = 0x0014,                     /* RFC 8489 §14.9 */
  STUN_ATTR_NONCE = 0x0015,                     /* RFC 8489 §14.10 */
  STUN_ATTR_MESSAGE_INTEGRITY_SHA256 = 0x001C,  /* RFC 8489 §14.6 */
  STUN_ATTR_XOR_RELAYED_ADDRESS = 0x0016,       /* RFC 8656 §18.5 */
  STUN_ATTR_REQUESTED_ADDRESS_FAMILY = 0x0017,  /* RFC 8656 §18.10 */
  STUN_ATTR_REQUESTED_TRANSPORT = 0x0019,       /* RFC 8656 §18.7 */
  STUN_ATTR_DONT_FRAGMENT = 0x001A,             /* RFC 8656 §18.8 */
  STUN_ATTR_XOR_MAPPED_ADDRESS = 0x0020,        /* RFC 8489 §14.2 */
  STUN_ATTR_PRIORITY = 0x0024,                  /* RFC 8445 §16.1 */
  STUN_ATTR_USE_CANDIDATE = 0x0025,             /* RFC 8445 §16.1 */
  STUN_ATTR_PADDING = 0x0026,                   /* RFC 5780 §7.6 */
  STUN_ATTR_RESPONSE_PORT = 0x0027,             /* RFC 5780 §7.5 */
  STUN_ATTR_ADDITIONAL_ADDRESS_FAMILY = 0x8000, /* RFC 8656 §18.11 */
  STUN_ATTR_ADDRESS_ERROR_CODE = 0x8001,        /* RFC 8656 §18.12 */
  STUN_ATTR_SOFTWARE = 0x8022,                  /* RFC 8489 §14.14 */
  STUN_ATTR_FINGERPRINT = 0x8028,               /* RFC 8489 §14.7 */
  STUN_ATTR_ICE_CONTROLLED = 0x8029,            /* RFC 8445 §16.1 */
  STUN_ATTR_ICE_CONTROLLING = 0x802A,           /* RFC 8445 §16.1 */
  STUN_ATTR_RESPONSE_ORIGIN = 0x802B,           /* RFC 5780 §7.3 */
  STUN_ATTR_OTHER_ADDRESS = 0x802C,             /* RFC 5780 §7.4 */
};

#define STUN_FAMILY_IPV4 0x01 /* RFC 8489 §14.1 */
#define STUN_FAMILY_IPV6 0x02

/* RFC 5780 §7.2: CHANGE-REQUEST flag bits. */
#define STUN_CHANGE_IP   0x04
#define STUN_CHANGE_PORT 0x02

#define STUN_MI_SIZE    20 /* RFC 8489 §14.5: HMAC-SHA1 */
#define STUN_MI256_MIN  16 /* RFC 8489 §14.6: may be truncated to 16 */
#define STUN_MI256_SIZE 32

/* Error codes: XX(name, value, message).  Negative, like libuv's. */
#define STUN_ERRNO_MAP(XX)                                               \
  XX(ETRUNCATED, -1, "message shorter than its header or length field")  \
  XX(ENOTSTUN, -2, "first two bits are not zero: not a STUN message")    \
  XX(EBADLENGTH, -3, "message length is not a multiple of 4")            \
  XX(ETRAILING, -4, "bytes after the end given by the length field")     \
  XX(EBADCOOKIE, -5, "no magic cookie and not an RFC 3489 message type") \
  XX(EATTRTRUNC, -6, "attribute runs past the end of the message")       \
  XX(EATTRLEN, -7, "attribute length is wrong for its type")             \
  XX(EBADFAMILY, -8, "unknown address family in an address attribute")   \
  XX(EBADERRCODE, -9, "ERROR-CODE class or number out of range")         \
  XX(EFPNOTLAST, -10, "attribute after FINGERPRINT")                     \
  XX(EBADFINGERPRINT, -11, "FINGERPRINT does not match")                 \
  XX(EINTEGRITY, -12, "MESSAGE-INTEGRITY does not verify")               \
  XX(ENOINTEGRITY, -13, "no MESSAGE-INTEGRITY attribute")                \
  XX(ENOSPACE, -14, "output buffer too small")                           \
  XX(EINVAL, -15, "invalid argument")                                    \
  XX(ENOTREQUEST, -16, "not a request: never answered")                  \
  XX(EMETHOD, -17, "request for a method other than Binding")            \
  XX(ECHANGE, -18, "CHANGE-REQUEST asks for another source address")     \
  XX(ERESPPORT, -19, "RESPONSE-PORT asks for another destination port")  \
  XX(EAFNOSUPPORT, -20, "address family not supported")

enum stun_errno {
#define XX(name, value, msg) STUN_##name = value,
  STUN_ERRNO_MAP(XX)
#undef XX
};

/* "ETRUNCATED" etc.; "UNKNOWN" for a value not in the map. */
const char *stun_errname(int err);
const char *stun_strerror(int err);

/* An address as carried in the attributes, in network byte order. */
struct stun_addr {
  uint8_t family; /* STUN_FAMILY_IPV4 or STUN_FAMILY_IPV6 */
  uint16_t port;  /* host byte order */
  uint8_t ip[16]; /* 4 or 16 bytes used */
};

/* A run of bytes inside the decoded buffer (not copied, not terminated). */
struct stun_bytes {
  const uint8_t *ptr;
  size_t len;
};

/* Bits of stun_msg.has: which attributes were decoded. */
enum stun_has {
  STUN_HAS_MAPPED = 1u << 0,
  STUN_HAS_XOR_MAPPED = 1u << 1,
  STUN_HAS_RESPONSE_ORIGIN = 1u << 2,
  STUN_HAS_OTHER_ADDRESS = 1u << 3,
  STUN_HAS_SOURCE_ADDRESS = 1u << 4,
  STUN_HAS_CHANGED_ADDRESS = 1u << 5,
  STUN_HAS_USERNAME = 1u << 6,
  STUN_HAS_SOFTWARE = 1u << 7,
  STUN_HAS_REALM = 1u << 8,
  STUN_HAS_NONCE = 1u << 9,
  STUN_HAS_ERROR_CODE = 1u << 10,
  STUN_HAS_UNKNOWN_ATTRIBUTES = 1u << 11,
  STUN_HAS_CHANGE_REQUEST = 1u << 12,
  STUN_HAS_RESPONSE_PORT = 1u << 13,
  STUN_HAS_PADDING = 1u << 14,
  STUN_HAS_PRIORITY = 1u << 15,
  STUN_HAS_USE_CANDIDATE = 1u << 16,
  STUN_HAS_ICE_CONTROLLED = 1u << 17,
  STUN_HAS_ICE_CONTROLLING = 1u << 18,
  STUN_HAS_INTEGRITY = 1u << 19,
  STUN_HAS_INTEGRITY_SHA256 = 1u << 20,
  STUN_HAS_FINGERPRINT = 1u << 21,
  STUN_HAS_XOR_PEER = 1u << 22, /* TURN (RFC 8656 §18) from here */
  STUN_HAS_XOR_RELAYED = 1u << 23,
  STUN_HAS_DATA = 1u << 24,
  STUN_HAS_LIFETIME = 1u << 25,
  STUN_HAS_CHANNEL_NUMBER = 1u << 26,
  STUN_HAS_REQUESTED_TRANSPORT = 1u << 27,
  STUN_HAS_DONT_FRAGMENT = 1u << 28,
  STUN_HAS_REQUESTED_FAMILY = 1u << 29, /* REQUESTED-ADDRESS-FAMILY */
  STUN_HAS_ADDITIONAL_FAMILY = 1u << 30,
  STUN_HAS_ADDRESS_ERROR = 1u << 31,
};

/* RFC 8656 §12: channel numbers 0x4000 through 0x4FFF. */
#define STUN_CHANNEL_MIN 0x4000
#define STUN_CHANNEL_MAX 0x4FFF
/* RFC 8656 §18.7: the protocol number of UDP (IANA). */
#define STUN_TRANSPORT_UDP 17

/* A decoded message.  Byte runs point into the buffer given to stun_read,
 * which must outlive the struct. */
struct stun_msg {
  uint16_t type;   /* raw 14-bit message type */
  uint16_t method; /* 12-bit method */
  uint16_t cls;    /* enum stun_class */
  size_t size;     /* whole message, header included */
  bool classic;    /* RFC 3489: no magic cookie */
  uint8_t tid[STUN_CLASSIC_TID_SIZE];
  size_t tid_len; /* STUN_TID_SIZE or STUN_CLASSIC_TID_SIZE */
  uint32_t has;   /* enum stun_has bits */

  struct stun_addr mapped, xor_mapped, response_origin, other_address;
  struct stun_addr source_address, changed_address;
  struct stun_bytes username, software, realm, nonce;
  uint16_t error_code; /* 100 * class + number, e.g. 420 */
  struct stun_bytes error_reason;
  uint16_t unknown_attributes[STUN_MAX_LISTED]; /* from UNKNOWN-ATTRIBUTES */
  size_t n_unknown_attributes;
  uint32_t change_request; /* STUN_CHANGE_IP | STUN_CHANGE_PORT */
  uint16_t response_port;
  size_t padding_len;
  uint32_t priority;
  uint64_t ice_controlled, ice_controlling; /* tie-breakers */
  /* TURN: the first XOR-PEER-ADDRESS only (a CreatePermission may list
   * several; natpunch sends one per request). */
  struct stun_addr xor_peer, xor_relayed;
  /* A dual allocation (ADDITIONAL-ADDRESS-FAMILY, RFC 8656 §7.3) answers
   * with two XOR-RELAYED-ADDRESS: the second goes here, n_relayed = 2. */
  struct stun_addr xor_relayed2;
  uint8_t n_relayed;
  /* RFC 8656 §18.10-18.12: the family bytes as sent (STUN_FAMILY_IPV4,
   * STUN_FAMILY_IPV6; any other value is kept for the server to refuse
   * with 440), and ADDRESS-ERROR-CODE: the family whose allocation
   * failed, its code (100 * class + number) and reason. */
  uint8_t requested_family, additional_family, address_error_family;
  uint16_t address_error_code;
  struct stun_bytes address_error_reason;
  struct stun_bytes data;
  uint32_t lifetime;           /* seconds */
  uint16_t channel_number;     /* 0x4000..0x4FFF */
  uint8_t requested_transport; /* protocol number, 17 = UDP */

  /* Comprehension-required types this decoder does not know (RFC 8489
   * §6.3.1: a server answers 420 listing them).  The first
   * STUN_MAX_LISTED are kept; n_unknown_required counts them all. */
  uint16_t unknown_required[STUN_MAX_LISTED];
  size_t n_unknown_required;

  /* Offsets of the integrity attributes' headers, for verification. */
  size_t mi_offset, mi256_offset;
  size_t mi256_len;    /* 16..32 (truncation allowed, RFC 8489 §14.6) */
  bool fingerprint_ok; /* meaningful when has & STUN_HAS_FINGERPRINT */
};

/* Message type <-> method and class (RFC 8489 §5, Figure 3). */
uint16_t stun_type(uint16_t method, uint16_t cls);
uint16_t stun_type_method(uint16_t type);
uint16_t stun_type_class(uint16_t type);

/* Decode one whole datagram.  Returns 0 or a negative STUN_E* code. */
int stun_read(const uint8_t *data, size_t len, struct stun_msg *msg);

/* RFC 7983 demultiplexing plus a sane header: first byte 0..3, length a
 * multiple of 4 that matches len, and a cookie or an RFC 3489 type. */
bool stun_is_stun(const uint8_t *data, size_t len);

/* For stream transports: the size of the message that starts at data,
 * 0 when fewer than 20 bytes are there yet, or a negative code. */
long stun_frame_size(const uint8_t *data, size_t len);

/* Verify MESSAGE-INTEGRITY (HMAC-SHA1) or MESSAGE-INTEGRITY-SHA256 of a
 * message stun_read accepted, with the same data.  Returns 0,
 * STUN_ENOINTEGRITY when the attribute is absent, or STUN_EINTEGRITY. */
int stun_check_integrity(const uint8_t *data, const struct stun_msg *msg, const void *key,
                         size_t keylen);
int stun_check_integrity_sha256(const uint8_t *data, const struct stun_msg *msg, const void *key,
                                size_t keylen);

/* Long-term credential key, MD5(username ":" realm ":" password)
 * (RFC 8489 §9.2.2).  The caller applies OpaqueString first. */
void stun_long_term_key(const char *username, size_t ulen, const char *realm, size_t rlen,
                        const char *password, size_t plen, uint8_t key[16]);

/* --- encoder (stun_write.c) --- */

/* Builds a message into a caller's buffer.  The first failure is kept in
 * err and later calls do nothing, so a sequence of puts needs one check,
 * at stun_writer_finish. */
struct stun_writer {
  uint8_t *buf;
  size_t cap;
  size_t len;
  int err;
  bool classic;
  bool sealed; /* after FINGERPRINT nothing may follow (RFC 8489 §14.7) */
};

/* tid_len 12 writes the magic cookie; 16 writes an RFC 3489 message. */
void stun_writer_init(struct stun_writer *w, uint8_t *buf, size_t cap, uint16_t method,
                      uint16_t cls, const uint8_t *tid, size_t tid_len);
void stun_put(struct stun_writer *w, uint16_t type, const void *value, size_t len);
void stun_put_u32(struct stun_writer *w, uint16_t type, uint32_t v);
void stun_put_u64(struct stun_writer *w, uint16_t type, uint64_t v);
/* XOR-MAPPED-ADDRESS, XOR-PEER-ADDRESS and XOR-RELAYED-ADDRESS are
 * obfuscated here (RFC 8489 §14.2, RFC 8656 §18.3, §18.5); other address
 * types are written plain. */
void stun_put_addr(struct stun_writer *w, uint16_t type, const struct stun_addr *a);
void stun_put_error(struct stun_writer *w, int code, const char *reason);
void stun_put_unknown(struct stun_writer *w, const uint16_t *types, size_t n);
void stun_put_change_request(struct stun_writer *w, uint32_t flags);
void stun_put_response_port(struct stun_writer *w, uint16_t port);
void stun_put_padding(struct stun_writer *w, size_t len);
/* RFC 8656 §18.1: channel number then 16 reserved bits. */
void stun_put_channel_number(struct stun_writer *w, uint16_t channel);
/* RFC 8656 §18.7: protocol number then 24 reserved bits. */
void stun_put_requested_transport(struct stun_writer *w, uint8_t protocol);
/* REQUESTED-ADDRESS-FAMILY or ADDITIONAL-ADDRESS-FAMILY (RFC 8656 §18.10,
 * §18.11): family then 24 reserved bits; STUN_EINVAL for another type or
 * a family other than STUN_FAMILY_IPV4/IPV6. */
void stun_put_address_family(struct stun_writer *w, uint16_t type, uint8_t family);
/* ADDRESS-ERROR-CODE (RFC 8656 §18.12): like ERROR-CODE, with the family
 * in the first byte. */
void stun_put_address_error(struct stun_writer *w, uint8_t family, int code, const char *reason);
void stun_put_integrity(struct stun_writer *w, const void *key, size_t keylen);
void stun_put_integrity_sha256(struct stun_writer *w, const void *key, size_t keylen);
void stun_put_fingerprint(struct stun_writer *w);
/* Returns the message length, or the first error. */
int stun_writer_finish(struct stun_writer *w);

/* --- addresses and ids (stun_write.c) --- */

/* IPv4-mapped IPv6 peers (dual-stack sockets) come out as IPv4. */
int stun_addr_from_sockaddr(const struct sockaddr *sa, struct stun_addr *a);
int stun_addr_to_sockaddr(const struct stun_addr *a, struct sockaddr_storage *ss, socklen_t *sslen);
/* Numeric text only ("203.0.113.1", "::1"); STUN_EINVAL otherwise. */
int stun_addr_parse(const char *ip, uint16_t port, struct stun_addr *a);
/* Needs cap >= 46 (INET6_ADDRSTRLEN); returns 0 or STUN_EINVAL. */
int stun_addr_format(const struct stun_addr *a, char *buf, size_t cap);

/* --- the server fast path (stun_write.c) --- */

enum stun_answer_flags {
  /* The caller sends the answer from the address CHANGE-REQUEST asked
   * for; without this a request with change flags is not answered
   * (STUN_ECHANGE), because answering from the same address would make
   * an RFC 3489 client conclude it has no NAT. */
  STUN_ANSWER_CHANGE_OK = 1,
  /* The caller sends the answer to RESPONSE-PORT (RFC 5780 §7.5). */
  STUN_ANSWER_RESPONSE_PORT_OK = 2,
};

struct stun_answer_opts {
  const char *software;          /* SOFTWARE, or NULL */
  const struct sockaddr *origin; /* RESPONSE-ORIGIN / SOURCE-ADDRESS, or NULL */
  const struct sockaddr *other;  /* OTHER-ADDRESS / CHANGED-ADDRESS, or NULL */
  unsigned flags;                /* enum stun_answer_flags */
};

/* Answer a Binding request received from `from`.  Returns the response
 * length (> 0, never more than STUN_ANSWER_MAX) or a negative code when
 * the packet must not be answered: responses and indications are never
 * answered, so two servers cannot loop; a source of 0.0.0.0, :: or port 0
 * gets STUN_EINVAL.
 *
 * RFC 8489 request: XOR-MAPPED-ADDRESS, then as room allows OTHER-ADDRESS,
 * RESPONSE-ORIGIN, MAPPED-ADDRESS, SOFTWARE; FINGERPRINT when the request
 * had one.  RFC 3489 request: MAPPED-ADDRESS, SOURCE-ADDRESS,
 * CHANGED-ADDRESS, SOFTWARE.  Unknown comprehension-required attributes
 * give a 420 error response with UNKNOWN-ATTRIBUTES. */
int stun_answer_binding_ex(const uint8_t *req, size_t len, const struct sockaddr *from,
                           const struct stun_answer_opts *opts, uint8_t *out, size_t outcap);
int stun_answer_binding(const uint8_t *req, size_t len, const struct sockaddr *from,
                        const char *software, uint8_t *out, size_t outcap);

/* True for the address attributes that are XORed (RFC 8489 §14.2). */
bool stun_attr_is_xor_addr(uint16_t type);

#endif
