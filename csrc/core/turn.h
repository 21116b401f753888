/*
 * turn.h - TURN ChannelData framing (RFC 8656 §12.4).  Pure: bytes in,
 * bytes out; the STUN methods and attributes TURN adds are in stun.h.
 *
 *  0                   1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |         Channel Number        |            Length             |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |                                                               |
 * /                       Application Data                        /
 * /                                                               /
 * |                                                               |
 * |                               +-------------------------------+
 * |                               |
 * +-------------------------------+
 *                RFC 8656 §12.4, Figure 5: ChannelData Message
 *
 * Over UDP the padding to a multiple of 4 is optional (RFC 8656 §12.5):
 * it is accepted, never written.
 */
#ifndef NP_TURN_H
#define NP_TURN_H

#include <stddef.h>
#include <stdint.h>

#define TURN_CHANNEL_HEADER 4

/* The application data of a ChannelData message: 0 and *channel, *data,
 * *dlen set, or -1 when the bytes are not one (channel outside
 * 0x4000..0x4FFF, length past the end, more than 3 bytes of padding). */
int turn_channel_parse(const uint8_t *p, size_t len, uint16_t *channel, const uint8_t **data,
                       size_t *dlen);

/* Writes a ChannelData message into out; its size, or -1 when the channel
 * is out of range, dlen over 0xFFFF, or cap too small. */
long turn_channel_write(uint8_t *out, size_t cap, uint16_t channel, const uint8_t *data,
                        size_t dlen);

#endif
