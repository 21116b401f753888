/*
 * np_crypto.h - the libsodium binding shared by np_crypto.c (the Lua table
 * core.crypto) and the frame paths that authenticate datagrams in C
 * (np_udp_punch.c: PUNCH frames carry a 16-byte tag).
 */
#ifndef NP_SODIUM_H
#define NP_SODIUM_H

#include <stddef.h>
#include <stdint.h>

#define NP_MAC_KEY 32
#define NP_MAC_TAG 16

/* Keyed BLAKE2b-128 of data (libsodium crypto_generichash). */
void np_mac16(const uint8_t key[NP_MAC_KEY], const void *data, size_t len, uint8_t tag[NP_MAC_TAG]);
/* 1 when tag is the MAC of data, in constant time. */
int np_mac16_ok(const uint8_t key[NP_MAC_KEY], const void *data, size_t len,
                const uint8_t tag[NP_MAC_TAG]);

#endif
