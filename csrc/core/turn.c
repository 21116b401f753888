/* turn.c - TURN ChannelData framing; layout and rules in turn.h. */
#include "turn.h"

#include <string.h>

#include "stun.h"

int turn_channel_parse(const uint8_t *p, size_t len, uint16_t *channel, const uint8_t **data,
                       size_t *dlen) {
  if (p == NULL || len < TURN_CHANNEL_HEADER) return -1;
  uint16_t ch = (uint16_t)(p[0] << 8 | p[1]);
  size_t n = (size_t)(p[2] << 8 | p[3]);
  if (ch < STUN_CHANNEL_MIN || ch > STUN_CHANNEL_MAX) return -1;
  if (n > len - TURN_CHANNEL_HEADER || len - TURN_CHANNEL_HEADER - n > 3) return -1;
  *channel = ch;
  *data = p + TURN_CHANNEL_HEADER;
  *dlen = n;
  return 0;
}

long turn_channel_write(uint8_t *out, size_t cap, uint16_t channel, const uint8_t *data,
                        size_t dlen) {
  if (channel < STUN_CHANNEL_MIN || channel > STUN_CHANNEL_MAX || dlen > 0xFFFF || out == NULL ||
      (data == NULL && dlen > 0) || cap < TURN_CHANNEL_HEADER + dlen)
    return -1;
  out[0] = (uint8_t)(channel >> 8);
  out[1] = (uint8_t)channel;
  out[2] = (uint8_t)(dlen >> 8);
  out[3] = (uint8_t)dlen;
  if (dlen > 0) memmove(out + TURN_CHANNEL_HEADER, data, dlen);
  return (long)(TURN_CHANNEL_HEADER + dlen);
}
