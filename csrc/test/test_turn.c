/*
 * test_turn.c - the TURN parts of the codec: ChannelData framing
 * (RFC 8656 §12.4) and the STUN attributes TURN adds (RFC 8656 §18),
 * encoded and decoded by the same code as every other attribute.
 */
#include <string.h>

#include "check.h"
#include "stun.h"
#include "turn.h"

static void test_channel_data(suite *su) {
  uint8_t buf[64];
  const uint8_t payload[5] = {1, 2, 3, 4, 5};
  long n = turn_channel_write(buf, sizeof buf, 0x4001, payload, sizeof payload);
  CHECK(su, n == 9);
  CHECK(su, buf[0] == 0x40 && buf[1] == 0x01 && buf[2] == 0 && buf[3] == 5);
  uint16_t ch = 0;
  const uint8_t *d = NULL;
  size_t dl = 0;
  CHECK(su, turn_channel_parse(buf, (size_t)n, &ch, &d, &dl) == 0);
  CHECK(su, ch == 0x4001 && dl == 5 && memcmp(d, payload, 5) == 0);
  /* padding up to 3 bytes is accepted (RFC 8656 §12.5), 4 is not */
  CHECK(su, turn_channel_parse(buf, (size_t)n + 3, &ch, &d, &dl) == 0 && dl == 5);
  CHECK(su, turn_channel_parse(buf, (size_t)n + 4, &ch, &d, &dl) < 0);
  /* length past the end, header short, channel out of range */
  CHECK(su, turn_channel_parse(buf, (size_t)n - 1, &ch, &d, &dl) < 0);
  CHECK(su, turn_channel_parse(buf, 3, &ch, &d, &dl) < 0);
  buf[0] = 0x50;
  CHECK(su, turn_channel_parse(buf, (size_t)n, &ch, &d, &dl) < 0);
  buf[0] = 0x3F;
  CHECK(su, turn_channel_parse(buf, (size_t)n, &ch, &d, &dl) < 0);
  CHECK(su, turn_channel_write(buf, sizeof buf, 0x3FFF, payload, 5) < 0);
  CHECK(su, turn_channel_write(buf, sizeof buf, 0x5000, payload, 5) < 0);
  CHECK(su, turn_channel_write(buf, 8, 0x4000, payload, 5) < 0);
  /* empty data is a valid message */
  CHECK(su, turn_channel_write(buf, sizeof buf, 0x4FFF, NULL, 0) == 4);
  CHECK(su, turn_channel_parse(buf, 4, &ch, &d, &dl) == 0 && ch == 0x4FFF && dl == 0);
}

static void test_turn_attributes(suite *su) {
  uint8_t tid[STUN_TID_SIZE] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  uint8_t buf[256];
  struct stun_writer w;
  struct stun_addr peer, relayed;
  CHECK(su, stun_addr_parse("198.51.100.7", 40000, &peer) == 0);
  CHECK(su, stun_addr_parse("2001:db8::9", 50000, &relayed) == 0);
  stun_writer_init(&w, buf, sizeof buf, STUN_METHOD_CHANNEL_BIND, STUN_CLASS_REQUEST, tid,
                   sizeof tid);
  stun_put_requested_transport(&w, STUN_TRANSPORT_UDP);
  stun_put_u32(&w, STUN_ATTR_LIFETIME, 600);
  stun_put_channel_number(&w, 0x4123);
  stun_put_addr(&w, STUN_ATTR_XOR_PEER_ADDRESS, &peer);
  stun_put_addr(&w, STUN_ATTR_XOR_RELAYED_ADDRESS, &relayed);
  stun_put(&w, STUN_ATTR_DATA, "hello", 5);
  stun_put(&w, STUN_ATTR_DONT_FRAGMENT, NULL, 0);
  int n = stun_writer_finish(&w);
  CHECK(su, n > 0);
  /* the XOR addresses are obfuscated on the wire: the port is not in clear */
  int clear = 0;
  for (int i = STUN_HEADER_SIZE; i + 1 < n; i++)
    clear |= buf[i] == (40000 >> 8) && buf[i + 1] == (40000 & 0xFF);
  CHECK(su, !clear);
  struct stun_msg m;
  CHECK(su, stun_read(buf, (size_t)n, &m) == 0);
  CHECK(su, m.method == STUN_METHOD_CHANNEL_BIND && m.cls == STUN_CLASS_REQUEST);
  CHECK(su, (m.has & STUN_HAS_REQUESTED_TRANSPORT) && m.requested_transport == 17);
  CHECK(su, (m.has & STUN_HAS_LIFETIME) && m.lifetime == 600);
  CHECK(su, (m.has & STUN_HAS_CHANNEL_NUMBER) && m.channel_number == 0x4123);
  CHECK(su, (m.has & STUN_HAS_XOR_PEER) && memcmp(&m.xor_peer, &peer, sizeof peer) == 0);
  CHECK(su,
        (m.has & STUN_HAS_XOR_RELAYED) && memcmp(&m.xor_relayed, &relayed, sizeof relayed) == 0);
  CHECK(su, (m.has & STUN_HAS_DATA) && m.data.len == 5 && memcmp(m.data.ptr, "hello", 5) == 0);
  CHECK(su, (m.has & STUN_HAS_DONT_FRAGMENT) != 0);
  CHECK(su, m.n_unknown_required == 0);

  /* wrong lengths are malformed */
  stun_writer_init(&w, buf, sizeof buf, STUN_METHOD_ALLOCATE, STUN_CLASS_REQUEST, tid, sizeof tid);
  stun_put(&w, STUN_ATTR_LIFETIME, "ab", 2);
  n = stun_writer_finish(&w);
  CHECK(su, stun_read(buf, (size_t)n, &m) == STUN_EATTRLEN);
  stun_writer_init(&w, buf, sizeof buf, STUN_METHOD_ALLOCATE, STUN_CLASS_REQUEST, tid, sizeof tid);
  stun_put(&w, STUN_ATTR_DONT_FRAGMENT, "x", 1);
  n = stun_writer_finish(&w);
  CHECK(su, stun_read(buf, (size_t)n, &m) == STUN_EATTRLEN);
  /* channel numbers outside 0x4000..0x4FFF are refused by the writer */
  stun_writer_init(&w, buf, sizeof buf, STUN_METHOD_CHANNEL_BIND, STUN_CLASS_REQUEST, tid,
                   sizeof tid);
  stun_put_channel_number(&w, 0x3000);
  CHECK(su, stun_writer_finish(&w) == STUN_EINVAL);
}

/* The IPv6 XOR addresses byte for byte (RFC 8489 §14.2: port XOR the top
 * of the cookie, address XOR cookie || transaction id), both ways. */
static void test_xor_ipv6(suite *su) {
  uint8_t tid[STUN_TID_SIZE] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  /* 2001:db8::9 port 50000 (0xC350) */
  static const uint8_t want[24] = {0x00,        0x12,        0x00,        0x14,        0x00,
                                   0x02,        0xC3 ^ 0x21, 0x50 ^ 0x12, 0x20 ^ 0x21, 0x01 ^ 0x12,
                                   0x0d ^ 0xa4, 0xb8 ^ 0x42, 0x00 ^ 1,    0x00 ^ 2,    0x00 ^ 3,
                                   0x00 ^ 4,    0x00 ^ 5,    0x00 ^ 6,    0x00 ^ 7,    0x00 ^ 8,
                                   0x00 ^ 9,    0x00 ^ 10,   0x00 ^ 11,   0x09 ^ 12};
  uint8_t buf[128];
  struct stun_writer w;
  struct stun_addr a;
  CHECK(su, stun_addr_parse("2001:db8::9", 50000, &a) == 0);
  stun_writer_init(&w, buf, sizeof buf, STUN_METHOD_CREATE_PERMISSION, STUN_CLASS_REQUEST, tid,
                   sizeof tid);
  stun_put_addr(&w, STUN_ATTR_XOR_PEER_ADDRESS, &a);
  int n = stun_writer_finish(&w);
  CHECK(su, n == STUN_HEADER_SIZE + 24);
  CHECK(su, memcmp(buf + STUN_HEADER_SIZE, want, sizeof want) == 0);
  /* and the other way: these bytes, from another writer, decode to it */
  uint8_t msg[STUN_HEADER_SIZE + 24];
  memcpy(msg, buf, STUN_HEADER_SIZE);
  memcpy(msg + STUN_HEADER_SIZE, want, sizeof want);
  msg[STUN_HEADER_SIZE + 1] = 0x16; /* as XOR-RELAYED-ADDRESS too */
  struct stun_msg m;
  CHECK(su, stun_read(msg, sizeof msg, &m) == 0);
  CHECK(su, (m.has & STUN_HAS_XOR_RELAYED) && m.n_relayed == 1);
  CHECK(su, memcmp(&m.xor_relayed, &a, sizeof a) == 0);
  char ip[64];
  CHECK(su, stun_addr_format(&m.xor_relayed, ip, sizeof ip) == 0 && strcmp(ip, "2001:db8::9") == 0);
  /* a transaction id that differs in its last byte changes the last byte only */
  msg[STUN_HEADER_SIZE - 1] ^= 0xFF;
  CHECK(su, stun_read(msg, sizeof msg, &m) == 0);
  CHECK(su, memcmp(m.xor_relayed.ip, a.ip, 15) == 0 && (m.xor_relayed.ip[15] ^ a.ip[15]) == 0xFF);
  /* an IPv6 family with an IPv4 length, and the reverse, are malformed */
  msg[STUN_HEADER_SIZE - 1] ^= 0xFF;
  msg[STUN_HEADER_SIZE + 5] = STUN_FAMILY_IPV4;
  CHECK(su, stun_read(msg, sizeof msg, &m) == STUN_EATTRLEN);
  msg[STUN_HEADER_SIZE + 5] = 0x03;
  CHECK(su, stun_read(msg, sizeof msg, &m) == STUN_EBADFAMILY);
}

/* RFC 8656 §18.10-18.12 and the dual allocation of §7.3: the families
 * requested, two XOR-RELAYED-ADDRESS (IPv4 then IPv6) and the
 * ADDRESS-ERROR-CODE of a family that failed. */
static void test_address_families(suite *su) {
  uint8_t tid[STUN_TID_SIZE] = {12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1};
  uint8_t buf[256];
  struct stun_writer w;
  struct stun_msg m;
  stun_writer_init(&w, buf, sizeof buf, STUN_METHOD_ALLOCATE, STUN_CLASS_REQUEST, tid, sizeof tid);
  stun_put_requested_transport(&w, STUN_TRANSPORT_UDP);
  stun_put_address_family(&w, STUN_ATTR_REQUESTED_ADDRESS_FAMILY, STUN_FAMILY_IPV6);
  stun_put_address_family(&w, STUN_ATTR_ADDITIONAL_ADDRESS_FAMILY, STUN_FAMILY_IPV6);
  int n = stun_writer_finish(&w);
  CHECK(su, n == STUN_HEADER_SIZE + 24);
  /* type 0x0017, length 4, family 2, 3 bytes reserved */
  static const uint8_t raf[8] = {0x00, 0x17, 0x00, 0x04, 0x02, 0, 0, 0};
  CHECK(su, memcmp(buf + STUN_HEADER_SIZE + 8, raf, sizeof raf) == 0);
  CHECK(su, stun_read(buf, (size_t)n, &m) == 0);
  CHECK(su, (m.has & STUN_HAS_REQUESTED_FAMILY) && m.requested_family == STUN_FAMILY_IPV6);
  CHECK(su, (m.has & STUN_HAS_ADDITIONAL_FAMILY) && m.additional_family == STUN_FAMILY_IPV6);
  CHECK(su, m.n_unknown_required == 0);
  /* a family other than 1 and 2 is the caller's mistake for the writer,
   * and kept for the server to refuse (440) by the reader */
  stun_writer_init(&w, buf, sizeof buf, STUN_METHOD_ALLOCATE, STUN_CLASS_REQUEST, tid, sizeof tid);
  stun_put_address_family(&w, STUN_ATTR_REQUESTED_ADDRESS_FAMILY, 3);
  CHECK(su, stun_writer_finish(&w) == STUN_EINVAL);
  stun_writer_init(&w, buf, sizeof buf, STUN_METHOD_ALLOCATE, STUN_CLASS_REQUEST, tid, sizeof tid);
  stun_put_address_family(&w, STUN_ATTR_LIFETIME, STUN_FAMILY_IPV4);
  CHECK(su, stun_writer_finish(&w) == STUN_EINVAL);
  stun_writer_init(&w, buf, sizeof buf, STUN_METHOD_ALLOCATE, STUN_CLASS_REQUEST, tid, sizeof tid);
  stun_put_u32(&w, STUN_ATTR_REQUESTED_ADDRESS_FAMILY, 3u << 24);
  n = stun_writer_finish(&w);
  CHECK(su, stun_read(buf, (size_t)n, &m) == 0 && m.requested_family == 3);
  stun_writer_init(&w, buf, sizeof buf, STUN_METHOD_ALLOCATE, STUN_CLASS_REQUEST, tid, sizeof tid);
  stun_put(&w, STUN_ATTR_REQUESTED_ADDRESS_FAMILY, "\x02", 1);
  n = stun_writer_finish(&w);
  CHECK(su, stun_read(buf, (size_t)n, &m) == STUN_EATTRLEN);

  /* the answer to a dual allocation whose IPv6 half failed, and one that
   * got both */
  struct stun_addr r4, r6, third;
  CHECK(su, stun_addr_parse("198.51.100.2", 49152, &r4) == 0);
  CHECK(su, stun_addr_parse("2001:db8::12", 49153, &r6) == 0);
  CHECK(su, stun_addr_parse("2001:db8::13", 49154, &third) == 0);
  stun_writer_init(&w, buf, sizeof buf, STUN_METHOD_ALLOCATE, STUN_CLASS_SUCCESS, tid, sizeof tid);
  stun_put_addr(&w, STUN_ATTR_XOR_RELAYED_ADDRESS, &r4);
  stun_put_address_error(&w, STUN_FAMILY_IPV6, 440, "Address Family not Supported");
  n = stun_writer_finish(&w);
  CHECK(su, stun_read(buf, (size_t)n, &m) == 0);
  CHECK(su, m.n_relayed == 1 && memcmp(&m.xor_relayed, &r4, sizeof r4) == 0);
  CHECK(su, (m.has & STUN_HAS_ADDRESS_ERROR) && m.address_error_family == STUN_FAMILY_IPV6);
  CHECK(su, m.address_error_code == 440 && m.address_error_reason.len == 28 &&
                memcmp(m.address_error_reason.ptr, "Address Family", 14) == 0);
  CHECK(su, m.n_unknown_required == 0);
  stun_writer_init(&w, buf, sizeof buf, STUN_METHOD_ALLOCATE, STUN_CLASS_SUCCESS, tid, sizeof tid);
  stun_put_addr(&w, STUN_ATTR_XOR_RELAYED_ADDRESS, &r4);
  stun_put_addr(&w, STUN_ATTR_XOR_RELAYED_ADDRESS, &r6);
  stun_put_addr(&w, STUN_ATTR_XOR_RELAYED_ADDRESS, &third); /* a third is ignored */
  n = stun_writer_finish(&w);
  CHECK(su, stun_read(buf, (size_t)n, &m) == 0);
  CHECK(su, m.n_relayed == 2 && memcmp(&m.xor_relayed, &r4, sizeof r4) == 0);
  CHECK(su, memcmp(&m.xor_relayed2, &r6, sizeof r6) == 0);
  /* a malformed second one makes the message malformed, as a first would */
  CHECK(su, n == STUN_HEADER_SIZE + 12 + 24 + 24);
  buf[STUN_HEADER_SIZE + 12 + 5] = 0x07;
  CHECK(su, stun_read(buf, (size_t)n, &m) == STUN_EBADFAMILY);
  /* ADDRESS-ERROR-CODE: class below 3, over-long reason, unknown family */
  stun_writer_init(&w, buf, sizeof buf, STUN_METHOD_ALLOCATE, STUN_CLASS_SUCCESS, tid, sizeof tid);
  stun_put_address_error(&w, STUN_FAMILY_IPV6, 299, NULL);
  CHECK(su, stun_writer_finish(&w) == STUN_EINVAL);
  stun_writer_init(&w, buf, sizeof buf, STUN_METHOD_ALLOCATE, STUN_CLASS_SUCCESS, tid, sizeof tid);
  stun_put_address_error(&w, 0, 440, NULL);
  CHECK(su, stun_writer_finish(&w) == STUN_EINVAL);
  stun_writer_init(&w, buf, sizeof buf, STUN_METHOD_ALLOCATE, STUN_CLASS_SUCCESS, tid, sizeof tid);
  stun_put(&w, STUN_ATTR_ADDRESS_ERROR_CODE, "\x02\x00\x02\x00", 4);
  n = stun_writer_finish(&w);
  CHECK(su, stun_read(buf, (size_t)n, &m) == STUN_EBADERRCODE);
  stun_writer_init(&w, buf, sizeof buf, STUN_METHOD_ALLOCATE, STUN_CLASS_SUCCESS, tid, sizeof tid);
  stun_put(&w, STUN_ATTR_ADDRESS_ERROR_CODE, "\x02\x00", 2);
  n = stun_writer_finish(&w);
  CHECK(su, stun_read(buf, (size_t)n, &m) == STUN_EATTRLEN);
}

int main(void) {
  suite su = {0, 0};
  test_channel_data(&su);
  test_turn_attributes(&su);
  test_xor_ipv6(&su);
  test_address_families(&su);
  printf("%d passed, %d failed\n", su.passed, su.failed);
  return su.failed == 0 ? 0 : 1;
}
