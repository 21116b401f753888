/*
 * crc32.c - CRC-32 (ISO-HDLC / ITU-T V.42), as used by STUN FINGERPRINT
 * (RFC 8489 §14.7, which points to the same CRC as Ethernet and zlib).
 *
 * Table-driven four bits at a time: a 16-entry const table keeps the file
 * free of mutable state (no lazily built 1 KiB table) and is fast enough
 * for packets of at most a few hundred bytes.
 */
#include "crypto.h"

/* Entries i * x^28 mod P for the reflected polynomial 0xEDB88320. */
static const uint32_t nibble_table[16] = {
    0x00000000, 0x1DB71064, 0x3B6E20C8, 0x26D930AC, 0x76DC4190, 0x6B6B51F4, 0x4DB26158, 0x5005713C,
    0xEDB88320, 0xF00F9344, 0xD6D6A3E8, 0xCB61B38C, 0x9B64C2B0, 0x86D3D2D4, 0xA00AE278, 0xBDBDF21C,
};

uint32_t np_crc32_update(uint32_t crc, const void *data, size_t len) {
  const uint8_t *p = data;
  crc = ~crc;
  while (len--) {
    crc ^= *p++;
    crc = (crc >> 4) ^ nibble_table[crc & 0x0F];
    crc = (crc >> 4) ^ nibble_table[crc & 0x0F];
  }
  return ~crc;
}

uint32_t np_crc32(const void *data, size_t len) {
  return np_crc32_update(0, data, len);
}
