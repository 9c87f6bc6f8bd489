/* test_libraft_wraps.c: the sliced CRC that replaces raft_uv's byteCrc32 (raft/libraft_wraps.c) computes
 * exactly what the library's own function does, on random data, lengths, alignments and initial values. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>

unsigned __real_byteCrc32(const void *buf, size_t size, unsigned init);
unsigned __wrap_byteCrc32(const void *buf, size_t size, unsigned init);

static uint64_t rng_state = 0x9e3779b97f4a7c15u;
static uint32_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

Test(libraft_wraps, crc_matches_the_library_on_random_inputs)
{
    enum { MAX = 4096 + 16 };
    uint8_t *buf = malloc(MAX);
    cr_assert_not_null(buf);
    for (int round = 0; round < 3000; round++) {
        size_t off = rng() % 8;
        size_t len = round < 300 ? (size_t)round : rng() % (MAX - off);
        unsigned init = round % 3 == 0 ? 0 : rng();
        for (size_t i = 0; i < off + len; i++)
            buf[i] = (uint8_t)rng();
        unsigned want = __real_byteCrc32(buf + off, len, init);
        unsigned got = __wrap_byteCrc32(buf + off, len, init);
        cr_assert_eq(got, want, "len %zu off %zu init %08x: got %08x, library %08x", len, off, init, got, want);
    }
    free(buf);
}

Test(libraft_wraps, crc_of_a_known_vector)
{
    /* CRC-32/MPEG-2 of "123456789" with initial value 0xFFFFFFFF is 0x0376E6E7 (its published check value). */
    cr_assert_eq(__wrap_byteCrc32("123456789", 9, 0xFFFFFFFFu), 0x0376E6E7u);
    cr_assert_eq(__real_byteCrc32("123456789", 9, 0xFFFFFFFFu), 0x0376E6E7u);
}

Test(libraft_wraps, crc_is_chainable)
{
    uint8_t data[100];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)(i * 7 + 3);
    unsigned whole = __wrap_byteCrc32(data, sizeof(data), 0);
    unsigned part = __wrap_byteCrc32(data, 37, 0);
    cr_assert_eq(__wrap_byteCrc32(data + 37, sizeof(data) - 37, part), whole);
}
