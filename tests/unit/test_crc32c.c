/* test_crc32c.c: CRC32C known vectors, incremental use, and hardware vs software agreement. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proto/batch.h"

Test(crc32c, check_vector)
{
    cr_assert_eq(ferry_crc32c(0, "123456789", 9), 0xE3069283u);
    cr_assert_eq(ferry_crc32c_sw(0, "123456789", 9), 0xE3069283u);
    cr_assert_eq(ferry_crc32c_hw(0, "123456789", 9), 0xE3069283u);
}

Test(crc32c, empty_is_zero)
{
    cr_assert_eq(ferry_crc32c(0, "", 0), 0u);
}

/* RFC 3720 (iSCSI) appendix B.4 vectors. */
Test(crc32c, rfc3720_vectors)
{
    uint8_t buf[32];
    memset(buf, 0, sizeof buf);
    cr_assert_eq(ferry_crc32c(0, buf, 32), 0x8A9136AAu);
    memset(buf, 0xff, sizeof buf);
    cr_assert_eq(ferry_crc32c(0, buf, 32), 0x62A8AB43u);
    for (int i = 0; i < 32; i++)
        buf[i] = (uint8_t)i;
    cr_assert_eq(ferry_crc32c(0, buf, 32), 0x46DD794Eu);
    for (int i = 0; i < 32; i++)
        buf[i] = (uint8_t)(31 - i);
    cr_assert_eq(ferry_crc32c(0, buf, 32), 0x113FDB5Cu);
}

Test(crc32c, incremental_equals_whole)
{
    const char *s = "The quick brown fox jumps over the lazy dog";
    size_t n = strlen(s);
    uint32_t whole = ferry_crc32c(0, s, n);
    for (size_t cut = 0; cut <= n; cut++)
        cr_assert_eq(ferry_crc32c(ferry_crc32c(0, s, cut), s + cut, n - cut), whole, "cut at %zu", cut);
}

Test(crc32c, hw_and_sw_agree_on_random_data)
{
    unsigned seed = (unsigned)time(NULL);
    cr_log_info("seed %u (hw %d)", seed, ferry_crc32c_have_hw());
    srand(seed);
    enum { MAX = 4099 };
    uint8_t *buf = malloc(MAX + 8);
    cr_assert_not_null(buf);
    for (int i = 0; i < MAX + 8; i++)
        buf[i] = (uint8_t)rand();
    for (int iter = 0; iter < 2000; iter++) {
        size_t off = (size_t)rand() % 8; /* unaligned starts exercise the head loop */
        size_t len = (size_t)rand() % MAX;
        uint32_t init = (iter & 1) ? (uint32_t)rand() : 0;
        cr_assert_eq(ferry_crc32c_hw(init, buf + off, len), ferry_crc32c_sw(init, buf + off, len),
                     "seed %u off %zu len %zu", seed, off, len);
    }
    free(buf);
}
