/* test_murmur2.c: ferry_murmur2 / ferry_partition_for_key against Kafka's published Java vectors. */
#include <criterion/criterion.h>
#include <string.h>

#include "ferry.h"

struct vector {
    const char *key;
    int32_t hash;
};

/* Kafka's UtilsTest.testMurmur2, plus librdkafka's rdmurmur2.c unit-test inputs (which cover every
 * tail length 0-3), as Java signed ints. */
static const struct vector vectors[] = {
    {"21", -973932308},
    {"foobar", -790332482},
    {"a-little-bit-long-string", -985981536},
    {"a-little-bit-longer-string", -1486304829},
    {"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971},
    {"abc", 479470107},
    {"", 275646681},
    {"kafka", (int32_t)0xd067cf64},
    {"giberish123456789", (int32_t)0x8f552b0c},
    {"1234", (int32_t)0x9fc97b14},
    {"234", (int32_t)0xe7c009ca},
    {"34", (int32_t)0x873930da},
    {"4", 0x5a4b5ca1},
    {"PreAmbleWillBeRemoved,ThePrePartThatIs", 0x78424f1c},
    {"reAmbleWillBeRemoved,ThePrePartThatIs", 0x4a62b377},
    {"eAmbleWillBeRemoved,ThePrePartThatIs", (int32_t)0xe0e4e09e},
    {"AmbleWillBeRemoved,ThePrePartThatIs", 0x62b8b43f},
};

Test(murmur2, matches_kafka_java_vectors)
{
    for (size_t i = 0; i < sizeof vectors / sizeof vectors[0]; i++) {
        const struct vector *v = &vectors[i];
        cr_expect_eq(ferry_murmur2(v->key, strlen(v->key)), v->hash, "murmur2(\"%s\") = %d, want %d", v->key,
                     ferry_murmur2(v->key, strlen(v->key)), v->hash);
    }
}

Test(murmur2, partition_is_sign_bit_cleared_modulo)
{
    /* (h & 0x7fffffff) % n, not abs(h) % n: "foobar" hashes negative. Kafka: partition 16 of 50. */
    cr_expect_eq(ferry_partition_for_key("foobar", 6, 50), 16);
    for (size_t i = 0; i < sizeof vectors / sizeof vectors[0]; i++) {
        const struct vector *v = &vectors[i];
        int32_t want = (int32_t)(((uint32_t)v->hash & 0x7fffffffu) % 12u);
        cr_expect_eq(ferry_partition_for_key(v->key, strlen(v->key), 12), want, "key %s", v->key);
    }
}

Test(murmur2, partition_count_bounds)
{
    cr_expect_eq(ferry_partition_for_key("abc", 3, 0), -1);
    cr_expect_eq(ferry_partition_for_key("abc", 3, -4), -1);
    cr_expect_eq(ferry_partition_for_key("abc", 3, 1), 0);
    for (int n = 1; n < 64; n++) {
        int32_t p = ferry_partition_for_key("a-little-bit-long-string", 24, n);
        cr_expect(p >= 0 && p < n, "partition %d of %d", p, n);
    }
}
