/* test_produce_fetch.c: libferry over TLS against a real ferryd: records round-trip exactly, survive restarts. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "ferrytest.h"

#define TIMEOUT_MS 20000

static struct ft_broker B;
static char E[FT_ERRMSG];

static void teardown(void) { ft_broker_destroy(&B); }

TestSuite(produce_fetch, .fini = teardown, .timeout = 180);

static void start_broker(void)
{
    ft_seed_reset();
    FT_ASSERT(ft_broker_start(&B, NULL, E, sizeof(E)) == 0, "%s", E);
}

static void restart_broker(void)
{
    FT_ASSERT_EQ(ft_broker_stop(&B), 0, "ferryd exits 0 on SIGTERM");
    FT_ASSERT(ft_broker_restart(&B, E, sizeof(E)) == 0, "%s", E);
}

static ferry_client_t *admin(void)
{
    ferry_client_t *c = ft_client(&B, FERRY_ADMIN, NULL, E, sizeof(E));
    FT_ASSERT(c != NULL, "%s", E);
    return c;
}

static void create_topic(const char *name, int32_t partitions)
{
    ferry_client_t *c = admin();
    ferry_err_t e = ferry_admin_create_topic(c, name, partitions, -1, NULL, NULL, 0, ft_ms(TIMEOUT_MS), E, sizeof(E));
    FT_ASSERT_ERR(e, FERRY_ERR_NONE, "create %s: %s", name, E);
    ferry_client_destroy(c);
}

/* ---- the records of a round trip: a pure function of (seed, i), regenerated to check ---- */

#define MAX_HEADERS 3

struct spec {
    int null_key;
    char key[32];
    int null_value;
    size_t value_len;
    int64_t timestamp; /* 0 = let the library stamp it */
    size_t header_count;
    char hname[MAX_HEADERS][48];
    uint8_t hval[MAX_HEADERS][24];
    size_t hlen[MAX_HEADERS];
    int hnull[MAX_HEADERS];
};

static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static const int64_t T0 = 1700000000000LL; /* fixed record timestamps: Nov 2023 */

static void make_spec(uint64_t i, struct spec *s)
{
    uint64_t r = mix(ft_seed() ^ (i * 0x100000001b3ULL));
    memset(s, 0, sizeof(*s));
    s->null_key = i % 7 == 3;
    snprintf(s->key, sizeof(s->key), "key-%llu", (unsigned long long)i);
    s->null_value = i % 97 == 5;
    /* Mostly small values, some empty, a few large (up to 200 KiB). */
    switch (r % 10) {
    case 0:
        s->value_len = 0;
        break;
    case 1:
        s->value_len = 50000 + (size_t)(mix(r) % 150000);
        break;
    default:
        s->value_len = 1 + (size_t)(mix(r) % 3000);
    }
    if (s->null_value)
        s->value_len = 0;
    s->timestamp = i % 2 ? 0 : T0 + (int64_t)i;
    s->header_count = (size_t)(mix(r + 1) % (MAX_HEADERS + 1));
    for (size_t h = 0; h < s->header_count; h++) {
        snprintf(s->hname[h], sizeof(s->hname[h]), "h%zu-%llu", h, (unsigned long long)(i % 5));
        s->hnull[h] = h == 2;
        s->hlen[h] = s->hnull[h] ? 0 : (size_t)(mix(r + 2 + h) % sizeof(s->hval[h]));
        ft_fill_pattern(s->hval[h], s->hlen[h], i * 10 + h);
    }
}

/* Produces n spec'd records to topic/0 with the given compression; checks offsets 0..n-1 in order. */
static void produce_specs(const char *topic, size_t n, const char *compression, int64_t *before, int64_t *after)
{
    const char *kv[] = {"compression.type", compression, "linger.ms", "5", NULL};
    struct ft_deliveries log = {0};
    ferry_conf_t *conf = ft_conf(&B, kv, E, sizeof(E));
    FT_ASSERT(conf != NULL, "%s", E);
    ft_conf_record_deliveries(conf, &log);
    char err[512];
    ferry_client_t *p = ferry_client_new(FERRY_PRODUCER, conf, err, sizeof(err));
    FT_ASSERT(p != NULL, "ferry_client_new: %s", err);

    uint8_t *value = malloc(200000);
    FT_ASSERT(value != NULL, "malloc");
    *before = ft_wall_ms();
    for (size_t i = 0; i < n; i++) {
        struct spec s;
        make_spec(i, &s);
        ferry_header_t hs[MAX_HEADERS];
        for (size_t h = 0; h < s.header_count; h++)
            hs[h] = (ferry_header_t){s.hname[h], s.hnull[h] ? NULL : s.hval[h], s.hlen[h]};
        ft_fill_pattern(value, s.value_len, i);
        ferry_record_t rec = {0};
        rec.topic = topic;
        rec.partition = 0;
        rec.key = s.null_key ? NULL : s.key;
        rec.key_len = s.null_key ? 0 : strlen(s.key);
        rec.value = s.null_value ? NULL : value;
        rec.value_len = s.value_len;
        rec.headers = s.header_count ? hs : NULL;
        rec.header_count = s.header_count;
        rec.timestamp = s.timestamp;
        rec.opaque = (void *)(uintptr_t)(i + 1);
        ferry_err_t e = ferry_produce(p, &rec, 0);
        FT_ASSERT_ERR(e, FERRY_ERR_NONE, "produce record %zu", i);
        ferry_poll(p, 0);
    }
    free(value);
    FT_ASSERT_ERR(ferry_flush(p, ft_ms(TIMEOUT_MS)), FERRY_ERR_NONE, "flush");
    *after = ft_wall_ms();
    FT_ASSERT_EQ(log.n, n, "one delivery report per record");
    FT_ASSERT_EQ(log.failed, 0, "failed deliveries (first: %s)", log.n ? ferry_err_name(log.v[0].err) : "-");
    for (size_t i = 0; i < n; i++) {
        FT_ASSERT_EQ((uintptr_t)log.v[i].opaque, i + 1, "reports in produce order");
        FT_ASSERT_EQ(log.v[i].partition, 0, "partition of record %zu", i);
        FT_ASSERT_EQ(log.v[i].offset, (int64_t)i, "offset of record %zu", i);
    }
    FT_ASSERT_ERR(ferry_client_close(p, ft_ms(TIMEOUT_MS)), FERRY_ERR_NONE, "close producer");
    ferry_client_destroy(p);
    ft_deliveries_free(&log);
}

/* Reads the n records back from offset 0 and compares every field with its spec. */
static void check_specs(const char *topic, size_t n, int64_t before, int64_t after)
{
    ferry_message_t **msgs = calloc(n, sizeof(*msgs));
    FT_ASSERT(msgs != NULL, "calloc");
    FT_ASSERT(ft_consume(&B, topic, 0, FERRY_OFFSET_BEGINNING, n, msgs, NULL, TIMEOUT_MS, E, sizeof(E)) == 0, "%s",
              E);
    uint8_t *want = malloc(200000);
    FT_ASSERT(want != NULL, "malloc");
    for (size_t i = 0; i < n; i++) {
        struct spec s;
        make_spec(i, &s);
        ferry_message_t *m = msgs[i];
        FT_ASSERT_EQ(ferry_message_offset(m), (int64_t)i, "offset order");
        size_t kl, vl;
        const void *k = ferry_message_key(m, &kl);
        if (s.null_key)
            FT_ASSERT(k == NULL && kl == 0, "record %zu: null key", i);
        else
            FT_ASSERT(k && kl == strlen(s.key) && memcmp(k, s.key, kl) == 0, "record %zu: key", i);
        const void *v = ferry_message_value(m, &vl);
        if (s.null_value) {
            FT_ASSERT(v == NULL && vl == 0, "record %zu: null value", i);
        } else {
            ft_fill_pattern(want, s.value_len, i);
            FT_ASSERT(vl == s.value_len, "record %zu: value length %zu, want %zu", i, vl, s.value_len);
            FT_ASSERT(vl == 0 || (v && memcmp(v, want, vl) == 0), "record %zu: value bytes", i);
            FT_ASSERT(v != NULL, "record %zu: an empty value is not null", i);
        }
        int64_t ts = ferry_message_timestamp(m);
        if (s.timestamp)
            FT_ASSERT_EQ(ts, s.timestamp, "record %zu: timestamp", i);
        else
            FT_ASSERT(ts >= before - 1000 && ts <= after + 1000, "record %zu: stamped %lld not in [%lld, %lld]", i,
                      (long long)ts, (long long)before, (long long)after);
        FT_ASSERT_EQ(ferry_message_header_count(m), s.header_count, "record %zu: header count", i);
        for (size_t h = 0; h < s.header_count; h++) {
            const char *name;
            const void *hv;
            size_t hl;
            FT_ASSERT_ERR(ferry_message_header(m, h, &name, &hv, &hl), FERRY_ERR_NONE, "header %zu", h);
            FT_ASSERT(strcmp(name, s.hname[h]) == 0, "record %zu header %zu name %s, want %s", i, h, name,
                      s.hname[h]);
            if (s.hnull[h])
                FT_ASSERT(hv == NULL, "record %zu header %zu: null value", i, h);
            else
                FT_ASSERT(hl == s.hlen[h] && (hl == 0 || memcmp(hv, s.hval[h], hl) == 0) && hv != NULL,
                          "record %zu header %zu value", i, h);
        }
        ferry_message_destroy(m);
    }
    free(want);
    free(msgs);
}

static void roundtrip(const char *compression)
{
    start_broker();
    create_topic("rt", 1);
    const size_t n = 600;
    int64_t before, after;
    produce_specs("rt", n, compression, &before, &after);
    check_specs("rt", n, before, after);
    restart_broker();
    check_specs("rt", n, before, after);
    /* kill -9 after a clean restart: what was durable before stays readable. */
    FT_ASSERT_EQ(ft_broker_kill(&B), 0, "kill -9");
    FT_ASSERT(ft_broker_restart(&B, E, sizeof(E)) == 0, "%s", E);
    check_specs("rt", n, before, after);
    FT_ASSERT_EQ(ft_broker_stop(&B), 0, "clean stop");
}

Test(produce_fetch, roundtrip_uncompressed) { roundtrip("none"); }
Test(produce_fetch, roundtrip_lz4) { roundtrip("lz4"); }
Test(produce_fetch, roundtrip_zstd) { roundtrip("zstd"); }

/* ---- offsets ---- */

static int64_t list_offset(ferry_client_t *c, int64_t ts)
{
    int64_t off = -99;
    ferry_err_t e = ferry_admin_list_offsets(c, "times", 0, ts, &off, ft_ms(TIMEOUT_MS), E, sizeof(E));
    FT_ASSERT_ERR(e, FERRY_ERR_NONE, "list offsets at %lld: %s", (long long)ts, E);
    return off;
}

static void check_offsets(void)
{
    ferry_client_t *c = admin();
    FT_ASSERT_EQ(list_offset(c, FERRY_TIMESTAMP_EARLIEST), 0, "earliest");
    FT_ASSERT_EQ(list_offset(c, FERRY_TIMESTAMP_LATEST), 30, "latest");
    FT_ASSERT_EQ(list_offset(c, T0 - 5000), 0, "before everything");
    FT_ASSERT_EQ(list_offset(c, T0), 0, "first timestamp");
    FT_ASSERT_EQ(list_offset(c, T0 + 9), 0, "max timestamp of group 0");
    FT_ASSERT_EQ(list_offset(c, T0 + 10), 10, "just after group 0");
    FT_ASSERT_EQ(list_offset(c, T0 + 10000), 10, "group 1");
    FT_ASSERT_EQ(list_offset(c, T0 + 20005), 20, "inside group 2's batch");
    FT_ASSERT_EQ(list_offset(c, T0 + 20010), 30, "after everything: the high watermark");
    int64_t lo = -1, hi = -1;
    FT_ASSERT_ERR(ferry_watermarks(c, "times", 0, &lo, &hi, ft_ms(TIMEOUT_MS)), FERRY_ERR_NONE, "watermarks");
    FT_ASSERT_EQ(lo, 0, "low watermark");
    FT_ASSERT_EQ(hi, 30, "high watermark");
    int64_t off;
    FT_ASSERT_ERR(ferry_admin_list_offsets(c, "times", 5, FERRY_TIMESTAMP_LATEST, &off, ft_ms(TIMEOUT_MS), E,
                                           sizeof(E)),
                  FERRY_ERR_UNKNOWN_TOPIC_OR_PARTITION, "missing partition");
    ferry_client_destroy(c);
}

Test(produce_fetch, list_offsets_earliest_latest_and_by_time)
{
    start_broker();
    create_topic("times", 1);
    /* Three groups of 10 records, each flushed on its own (so in batches of its own), group g at
     * timestamps T0 + g*10000 + i. */
    struct ft_deliveries log = {0};
    ferry_conf_t *conf = ft_conf(&B, NULL, E, sizeof(E));
    FT_ASSERT(conf != NULL, "%s", E);
    ft_conf_record_deliveries(conf, &log);
    char err[512];
    ferry_client_t *p = ferry_client_new(FERRY_PRODUCER, conf, err, sizeof(err));
    FT_ASSERT(p != NULL, "%s", err);
    for (int g = 0; g < 3; g++) {
        for (int i = 0; i < 10; i++) {
            char v[16];
            int vl = snprintf(v, sizeof(v), "g%d-%d", g, i);
            ferry_record_t rec = {.topic = "times", .partition = 0, .value = v, .value_len = (size_t)vl,
                                  .timestamp = T0 + g * 10000 + i};
            FT_ASSERT_ERR(ferry_produce(p, &rec, 0), FERRY_ERR_NONE, "produce");
        }
        FT_ASSERT_ERR(ferry_flush(p, ft_ms(TIMEOUT_MS)), FERRY_ERR_NONE, "flush group %d", g);
    }
    FT_ASSERT_EQ(log.n, 30, "reports");
    FT_ASSERT_EQ(log.failed, 0, "failed reports");
    ferry_client_destroy(p);
    ft_deliveries_free(&log);

    check_offsets();
    restart_broker();
    check_offsets();

    /* A consumer seeking by time lands on the same offset. */
    ferry_client_t *c = ft_client(&B, FERRY_CONSUMER, NULL, E, sizeof(E));
    FT_ASSERT(c != NULL, "%s", E);
    ferry_topic_partition_t tp = {"times", 0, FERRY_OFFSET_BEGINNING};
    FT_ASSERT_ERR(ferry_assign(c, &tp, 1), FERRY_ERR_NONE, "assign");
    FT_ASSERT_ERR(ferry_seek_time(c, "times", 0, T0 + 10000, ft_ms(TIMEOUT_MS)), FERRY_ERR_NONE, "seek_time");
    ferry_message_t *m = NULL;
    int64_t deadline = ft_now_ms() + ft_ms(TIMEOUT_MS);
    while (!m && ft_now_ms() < deadline)
        m = ferry_consumer_poll(c, 200);
    FT_ASSERT(m != NULL, "a message after seek_time");
    FT_ASSERT_ERR(ferry_message_err(m), FERRY_ERR_NONE, "message error: %s",
                  ferry_message_errstr(m) ? ferry_message_errstr(m) : "");
    FT_ASSERT_EQ(ferry_message_offset(m), 10, "offset after seek_time");
    size_t vl;
    const char *v = ferry_message_value(m, &vl);
    FT_ASSERT(vl == 4 && memcmp(v, "g1-0", 4) == 0, "value after seek_time");
    ferry_message_destroy(m);
    ferry_client_destroy(c);
}

/* ---- topics ---- */

/* Index of topic name in md, or -1. */
static long find_topic(const ferry_metadata_t *md, const char *name)
{
    for (size_t t = 0; t < ferry_metadata_topic_count(md); t++)
        if (strcmp(ferry_metadata_topic_name(md, t), name) == 0)
            return (long)t;
    return -1;
}

static const char *topic_config(const ferry_metadata_t *md, size_t t, const char *key)
{
    for (size_t i = 0; i < ferry_metadata_topic_config_count(md, t); i++) {
        const char *v;
        const char *k = ferry_metadata_topic_config(md, t, i, &v);
        if (k && strcmp(k, key) == 0)
            return v;
    }
    return NULL;
}

/* alpha (3 partitions, retention.ms=3600000) exists, beta does not. */
static void check_topics(ferry_client_t *c)
{
    ferry_metadata_t *md = NULL;
    FT_ASSERT_ERR(ferry_admin_describe_cluster(c, NULL, 0, &md, ft_ms(TIMEOUT_MS), E, sizeof(E)), FERRY_ERR_NONE,
                  "describe: %s", E);
    FT_ASSERT_EQ(ferry_metadata_broker_count(md), 1, "brokers");
    FT_ASSERT_EQ(ferry_metadata_broker_id(md, 0), 0, "broker id");
    FT_ASSERT_EQ(ferry_metadata_broker_port(md, 0), B.port, "broker port");
    long a = find_topic(md, "alpha");
    FT_ASSERT(a >= 0, "alpha listed");
    FT_ASSERT(find_topic(md, "beta") < 0, "beta not listed");
    FT_ASSERT_ERR(ferry_metadata_topic_err(md, (size_t)a), FERRY_ERR_NONE, "alpha error");
    FT_ASSERT_EQ(ferry_metadata_partition_count(md, (size_t)a), 3, "alpha partitions");
    for (size_t p = 0; p < 3; p++) {
        FT_ASSERT_EQ(ferry_metadata_partition_id(md, (size_t)a, p), (int32_t)p, "partition ids sorted");
        FT_ASSERT_EQ(ferry_metadata_partition_leader(md, (size_t)a, p), 0, "leader");
        FT_ASSERT_EQ(ferry_metadata_partition_replica_count(md, (size_t)a, p), 1, "replicas");
    }
    const char *ret = topic_config(md, (size_t)a, "retention.ms");
    FT_ASSERT(ret && strcmp(ret, "3600000") == 0, "alpha retention.ms = %s", ret ? ret : "(absent)");
    ferry_metadata_destroy(md);

    /* Asking for a missing topic by name lists it with its error. */
    const char *names[] = {"beta"};
    FT_ASSERT_ERR(ferry_admin_describe_cluster(c, names, 1, &md, ft_ms(TIMEOUT_MS), E, sizeof(E)), FERRY_ERR_NONE,
                  "describe beta: %s", E);
    FT_ASSERT_EQ(ferry_metadata_topic_count(md), 1, "one topic");
    FT_ASSERT_ERR(ferry_metadata_topic_err(md, 0), FERRY_ERR_UNKNOWN_TOPIC_OR_PARTITION, "beta's error");
    ferry_metadata_destroy(md);
}

Test(produce_fetch, topics_create_delete_list_persist_across_restart)
{
    start_broker();
    ferry_client_t *c = admin();
    const char *keys[] = {"retention.ms"}, *vals[] = {"3600000"};
    FT_ASSERT_ERR(ferry_admin_create_topic(c, "alpha", 3, -1, keys, vals, 1, ft_ms(TIMEOUT_MS), E, sizeof(E)),
                  FERRY_ERR_NONE, "create alpha: %s", E);
    FT_ASSERT_ERR(ferry_admin_create_topic(c, "beta", 2, 1, NULL, NULL, 0, ft_ms(TIMEOUT_MS), E, sizeof(E)),
                  FERRY_ERR_NONE, "create beta: %s", E);
    FT_ASSERT_ERR(ferry_admin_create_topic(c, "alpha", 1, -1, NULL, NULL, 0, ft_ms(TIMEOUT_MS), E, sizeof(E)),
                  FERRY_ERR_TOPIC_ALREADY_EXISTS, "create alpha again");
    const char *bad_keys[] = {"no.such.config"}, *bad_vals[] = {"1"};
    FT_ASSERT_ERR(
        ferry_admin_create_topic(c, "gamma", 1, -1, bad_keys, bad_vals, 1, ft_ms(TIMEOUT_MS), E, sizeof(E)),
        FERRY_ERR_INVALID_CONFIG, "unknown topic config");
    FT_ASSERT_ERR(ferry_admin_create_topic(c, "gamma", 1, 3, NULL, NULL, 0, ft_ms(TIMEOUT_MS), E, sizeof(E)),
                  FERRY_ERR_INVALID_CONFIG, "replication factor above the broker count");

    /* Records in beta, which is then deleted. */
    struct ft_deliveries log = {0};
    ferry_conf_t *conf = ft_conf(&B, NULL, E, sizeof(E));
    FT_ASSERT(conf != NULL, "%s", E);
    ft_conf_record_deliveries(conf, &log);
    char err[512];
    ferry_client_t *p = ferry_client_new(FERRY_PRODUCER, conf, err, sizeof(err));
    FT_ASSERT(p != NULL, "%s", err);
    for (int i = 0; i < 20; i++) {
        ferry_record_t rec = {.topic = "beta", .partition = i % 2, .value = "v", .value_len = 1};
        FT_ASSERT_ERR(ferry_produce(p, &rec, 0), FERRY_ERR_NONE, "produce");
    }
    FT_ASSERT_ERR(ferry_flush(p, ft_ms(TIMEOUT_MS)), FERRY_ERR_NONE, "flush");
    FT_ASSERT_EQ(log.failed, 0, "deliveries to beta");
    ferry_client_destroy(p);
    ft_deliveries_free(&log);

    FT_ASSERT_ERR(ferry_admin_delete_topic(c, "beta", ft_ms(TIMEOUT_MS), E, sizeof(E)), FERRY_ERR_NONE,
                  "delete beta: %s", E);
    FT_ASSERT_ERR(ferry_admin_delete_topic(c, "beta", ft_ms(TIMEOUT_MS), E, sizeof(E)),
                  FERRY_ERR_UNKNOWN_TOPIC_OR_PARTITION, "delete beta twice");
    check_topics(c);
    ferry_client_destroy(c);

    restart_broker();
    c = admin();
    check_topics(c);
    /* beta comes back empty. */
    FT_ASSERT_ERR(ferry_admin_create_topic(c, "beta", 2, -1, NULL, NULL, 0, ft_ms(TIMEOUT_MS), E, sizeof(E)),
                  FERRY_ERR_NONE, "recreate beta: %s", E);
    int64_t lo = -1, hi = -1;
    FT_ASSERT_ERR(ferry_watermarks(c, "beta", 0, &lo, &hi, ft_ms(TIMEOUT_MS)), FERRY_ERR_NONE, "watermarks");
    FT_ASSERT_EQ(hi, 0, "recreated beta is empty");
    ferry_client_destroy(c);
    FT_ASSERT_EQ(ft_broker_stop(&B), 0, "clean stop");
}
