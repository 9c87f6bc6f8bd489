/* varint.h: LEB128 varints (unsigned and zigzag-signed) and big-endian fixed-width integers. */
#ifndef FERRY_VARINT_H
#define FERRY_VARINT_H

#include <stddef.h>
#include <stdint.h>

/*
 * uvarint: 7 bits per byte, least significant group first; the high bit (0x80) of a byte says
 * another byte follows. A 64-bit value takes 1..10 bytes. svarint: zigzag first
 * ((v << 1) ^ (v >> 63)), so -1 -> 1, 1 -> 2, -2 -> 3 and small magnitudes stay short.
 * Decoders reject truncation, more than 10 bytes, and a 10th byte carrying bits above 2^64.
 * Non-minimal encodings (e.g. 0x80 0x00 for 0) are accepted, as in protobuf and Kafka.
 */

#define FERRY_VARINT_MAX 10

static inline size_t ferry_uvarint_size(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static inline uint64_t ferry_zigzag(int64_t v)
{
    return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

static inline int64_t ferry_unzigzag(uint64_t u)
{
    return (int64_t)(u >> 1) ^ -(int64_t)(u & 1);
}

static inline size_t ferry_svarint_size(int64_t v)
{
    return ferry_uvarint_size(ferry_zigzag(v));
}

/* Writes v at p (room for FERRY_VARINT_MAX bytes, or ferry_uvarint_size(v)); returns bytes written. */
static inline size_t ferry_uvarint_put(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

static inline size_t ferry_svarint_put(uint8_t *p, int64_t v)
{
    return ferry_uvarint_put(p, ferry_zigzag(v));
}

/* Reads a uvarint from p[0, len); returns bytes consumed, or 0 if truncated or overlong. */
static inline size_t ferry_uvarint_get(const uint8_t *p, size_t len, uint64_t *out)
{
    uint64_t v = 0;
    for (size_t i = 0; i < len && i < FERRY_VARINT_MAX; i++) {
        uint8_t b = p[i];
        if (i == FERRY_VARINT_MAX - 1 && b > 1)
            return 0; /* bits beyond 64 */
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            *out = v;
            return i + 1;
        }
    }
    return 0;
}

static inline size_t ferry_svarint_get(const uint8_t *p, size_t len, int64_t *out)
{
    uint64_t u;
    size_t n = ferry_uvarint_get(p, len, &u);
    if (n)
        *out = ferry_unzigzag(u);
    return n;
}

/* ---- big-endian fixed width ---- */
static inline void ferry_be16_put(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static inline void ferry_be32_put(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static inline void ferry_be64_put(uint8_t *p, uint64_t v)
{
    ferry_be32_put(p, (uint32_t)(v >> 32));
    ferry_be32_put(p + 4, (uint32_t)v);
}

static inline uint16_t ferry_be16_get(const uint8_t *p)
{
    return (uint16_t)((uint16_t)p[0] << 8 | p[1]);
}

static inline uint32_t ferry_be32_get(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline uint64_t ferry_be64_get(const uint8_t *p)
{
    return (uint64_t)ferry_be32_get(p) << 32 | ferry_be32_get(p + 4);
}

#endif
