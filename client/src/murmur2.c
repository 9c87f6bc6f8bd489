/* murmur2.c: the keyed partitioner, bit-compatible with Kafka's Java client (Utils.murmur2). */
#include <string.h>

#include "ferry_int.h"

/*
 * MurmurHash2 as Kafka's Java client computes it: seed 0x9747b28c, 32-bit arithmetic, 4-byte
 * little-endian blocks, the 1-3 trailing bytes folded in little-endian order. All arithmetic is
 * unsigned (wrapping) and the result is reinterpreted as Java's signed int.
 */
FERRY_API int32_t ferry_murmur2(const void *key, size_t len)
{
    const uint32_t seed = 0x9747b28cu;
    const uint32_t m = 0x5bd1e995u;
    const int r = 24;
    const uint8_t *p = key;
    /* Java hashes an int-length array; keys beyond 2 GiB cannot occur there. */
    uint32_t h = seed ^ (uint32_t)len;

    size_t blocks = len / 4;
    for (size_t i = 0; i < blocks; i++) {
        const uint8_t *b = p + 4 * i;
        uint32_t k = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
        k *= m;
        k ^= k >> r;
        k *= m;
        h *= m;
        h ^= k;
    }

    const uint8_t *tail = p + 4 * blocks;
    switch (len % 4) {
    case 3:
        h ^= (uint32_t)tail[2] << 16;
        /* fall through */
    case 2:
        h ^= (uint32_t)tail[1] << 8;
        /* fall through */
    case 1:
        h ^= tail[0];
        h *= m;
    }

    h ^= h >> 13;
    h *= m;
    h ^= h >> 15;

    int32_t out;
    memcpy(&out, &h, sizeof out); /* two's complement reinterpretation, as Java's int */
    return out;
}

FERRY_API int32_t ferry_partition_for_key(const void *key, size_t len, int32_t partition_count)
{
    if (partition_count <= 0)
        return -1;
    /* Kafka's toPositive(): clear the sign bit (not abs(), which fails for INT_MIN). */
    uint32_t positive = (uint32_t)ferry_murmur2(key, len) & 0x7fffffffu;
    return (int32_t)(positive % (uint32_t)partition_count);
}
