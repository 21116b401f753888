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

int main(void) {
  suite su = {0, 0};
  test_channel_data(&su);
  test_turn_attributes(&su);
  printf("%d passed, %d failed\n", su.passed, su.failed);
  return su.failed == 0 ? 0 : 1;
}
