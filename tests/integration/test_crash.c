/* test_crash.c: kill -9 ferryd under a produce stream; every acknowledged record must survive with its content. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "ferrytest.h"

#define TOPIC "crash"
#define PARTITIONS 2
#define ROUNDS 3
#define TIMEOUT_MS 30000
#define PACE_PER_MS 150

static struct ft_broker B;
static char E[FT_ERRMSG];

static void teardown(void) { ft_broker_destroy(&B); }

TestSuite(crash, .fini = teardown, .timeout = 300);

/* One acknowledged record: where the broker said it is, and which record it was. */
struct acked {
    int32_t partition;
    int64_t offset;
    uint64_t id;
};

static size_t value_len_of(uint64_t id) { return 100 + (size_t)(id % 400); }

/* Record id's content: key "id-<id>", value pattern(id), header "id" = decimal id. */
static void record_of(uint64_t id, char key[32], size_t *key_len, uint8_t *value, char idstr[24])
{
    *key_len = (size_t)snprintf(key, 32, "id-%" PRIu64, id);
    ft_fill_pattern(value, value_len_of(id), id);
    snprintf(idstr, 24, "%" PRIu64, id);
}

/*
 * Produces records (ids from *next_id) as fast as the producer takes them for run_ms, then
 * kill -9s the broker, restarts it and lets the producer deliver or fail what it still holds.
 * Appends every successful delivery to *acked.
 */
static void produce_and_crash(int run_ms, uint64_t *next_id, struct acked **acked, size_t *nacked, size_t *cap,
                              size_t *acked_before_kill)
{
    const char *kv[] = {"linger.ms", "2", "batch.size", "65536", "max.in.flight.requests.per.connection", "32",
                        "request.timeout.ms", "5000", "delivery.timeout.ms", "30000", "retry.backoff.ms", "50",
                        "queue.buffering.max.messages", "20000", NULL};
    struct ft_deliveries log = {0};
    ferry_conf_t *conf = ft_conf(&B, kv, E, sizeof(E));
    FT_ASSERT(conf != NULL, "%s", E);
    ft_conf_record_deliveries(conf, &log);
    char err[512];
    ferry_client_t *p = ferry_client_new(FERRY_PRODUCER, conf, err, sizeof(err));
    FT_ASSERT(p != NULL, "%s", err);

    uint8_t value[512];
    int64_t end = ft_now_ms() + run_ms;
    size_t produced = 0;
    int64_t t0 = ft_now_ms();
    while (ft_now_ms() < end) {
        /* Paced to PACE_PER_MS records per ms: enough batches in flight, bounded memory to verify. */
        if ((int64_t)produced > (ft_now_ms() - t0 + 1) * PACE_PER_MS) {
            ferry_poll(p, 1);
            continue;
        }
        uint64_t id = *next_id;
        char key[32], idstr[24];
        size_t kl;
        record_of(id, key, &kl, value, idstr);
        ferry_header_t h = {"id", idstr, strlen(idstr)};
        ferry_record_t rec = {.topic = TOPIC, .partition = (int32_t)(id % PARTITIONS), .key = key, .key_len = kl,
                              .value = value, .value_len = value_len_of(id), .headers = &h, .header_count = 1,
                              .opaque = (void *)(uintptr_t)(id + 1)};
        ferry_err_t e = ferry_produce(p, &rec, FERRY_F_NONBLOCK);
        if (e == FERRY_ERR__QUEUE_FULL) {
            ferry_poll(p, 5);
            continue;
        }
        FT_ASSERT_ERR(e, FERRY_ERR_NONE, "produce id %" PRIu64, id);
        (*next_id)++;
        produced++;
        ferry_poll(p, 0);
    }
    ferry_poll(p, 0);
    size_t reports_before_kill = log.n;
    FT_ASSERT_EQ(ft_broker_kill(&B), 0, "kill -9 the broker");
    for (size_t i = 0; i < reports_before_kill; i++)
        if (log.v[i].err == FERRY_ERR_NONE)
            (*acked_before_kill)++;
    FT_ASSERT(ft_broker_restart(&B, E, sizeof(E)) == 0, "%s", E);
    /* In-flight records are retried against the restarted broker, or fail: both are fine. */
    ferry_err_t fe = ferry_flush(p, ft_ms(TIMEOUT_MS + 10000));
    if (fe != FERRY_ERR_NONE)
        fprintf(stderr, "crash: flush after restart: %s (%zu still queued)\n", ferry_err_name(fe), ferry_outq_len(p));
    ferry_client_destroy(p);

    size_t ok = 0;
    for (size_t i = 0; i < log.n; i++) {
        if (log.v[i].err != FERRY_ERR_NONE)
            continue;
        FT_ASSERT(log.v[i].offset >= 0, "an acknowledged record has an offset");
        if (*nacked == *cap) {
            *cap = *cap ? *cap * 2 : 4096;
            *acked = realloc(*acked, *cap * sizeof(**acked));
            FT_ASSERT(*acked != NULL, "realloc");
        }
        (*acked)[(*nacked)++] =
            (struct acked){log.v[i].partition, log.v[i].offset, (uint64_t)(uintptr_t)log.v[i].opaque - 1};
        ok++;
    }
    fprintf(stderr, "crash: ran %d ms: %zu produced, %zu reports before kill, %zu acknowledged, %zu failed\n", run_ms,
            produced, reports_before_kill, ok, log.failed);
    ft_deliveries_free(&log);
}

static int cmp_acked(const void *a, const void *b)
{
    const struct acked *x = a, *y = b;
    if (x->partition != y->partition)
        return x->partition < y->partition ? -1 : 1;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Checks one message against the acknowledged records at its offset (acked sorted, *k the cursor). */
static void check_message(const ferry_message_t *m, const struct acked *acked, size_t nacked, size_t *k)
{
    int32_t part = ferry_message_partition(m);
    int64_t off = ferry_message_offset(m);
    uint8_t want[512];
    for (; *k < nacked && acked[*k].partition == part && acked[*k].offset == off; (*k)++) {
        const struct acked *a = &acked[*k];
        char key[32], idstr[24];
        size_t kl, gkl, gvl, ghl;
        record_of(a->id, key, &kl, want, idstr);
        const void *gk = ferry_message_key(m, &gkl);
        FT_ASSERT(gk && gkl == kl && memcmp(gk, key, kl) == 0,
                  "acknowledged id %" PRIu64 " at %d/%" PRId64 ": found key '%.*s'", a->id, part, off, (int)gkl,
                  gk ? (const char *)gk : "");
        const void *gv = ferry_message_value(m, &gvl);
        FT_ASSERT(gv && gvl == value_len_of(a->id) && memcmp(gv, want, gvl) == 0, "id %" PRIu64 ": value", a->id);
        const void *gh;
        FT_ASSERT_ERR(ferry_message_header_find(m, "id", &gh, &ghl), FERRY_ERR_NONE, "id header");
        FT_ASSERT(ghl == strlen(idstr) && memcmp(gh, idstr, ghl) == 0, "id %" PRIu64 ": header", a->id);
    }
}

/* Reads both partitions in full, in order, and checks every acknowledged record at its offset. */
static void verify(struct acked *acked, size_t nacked)
{
    qsort(acked, nacked, sizeof(*acked), cmp_acked);
    for (size_t i = 1; i < nacked; i++)
        FT_ASSERT(acked[i - 1].partition != acked[i].partition || acked[i - 1].offset != acked[i].offset,
                  "offset %d/%" PRId64 " acknowledged twice (ids %" PRIu64 " and %" PRIu64 ")", acked[i].partition,
                  acked[i].offset, acked[i - 1].id, acked[i].id);
    ferry_client_t *adm = ft_client(&B, FERRY_ADMIN, NULL, E, sizeof(E));
    FT_ASSERT(adm != NULL, "%s", E);
    size_t k = 0;
    for (int32_t part = 0; part < PARTITIONS; part++) {
        int64_t lo = -1, hi = -1;
        FT_ASSERT_ERR(ferry_watermarks(adm, TOPIC, part, &lo, &hi, ft_ms(TIMEOUT_MS)), FERRY_ERR_NONE, "watermarks");
        FT_ASSERT_EQ(lo, 0, "nothing deleted");
        ferry_client_t *c = ft_client(&B, FERRY_CONSUMER, NULL, E, sizeof(E));
        FT_ASSERT(c != NULL, "%s", E);
        ferry_topic_partition_t tp = {TOPIC, part, 0};
        FT_ASSERT_ERR(ferry_assign(c, &tp, 1), FERRY_ERR_NONE, "assign");
        int64_t next = 0, idle_deadline = ft_now_ms() + ft_ms(TIMEOUT_MS);
        while (next < hi) {
            FT_ASSERT(ft_now_ms() < idle_deadline, "partition %d: stuck at offset %" PRId64 " of %" PRId64, part, next,
                      hi);
            ferry_message_t *m = ferry_consumer_poll(c, 200);
            if (!m)
                continue;
            FT_ASSERT_ERR(ferry_message_err(m), FERRY_ERR_NONE, "consumer event: %s",
                          ferry_message_errstr(m) ? ferry_message_errstr(m) : "");
            FT_ASSERT_EQ(ferry_message_offset(m), next, "partition %d: offsets are dense and in order", part);
            check_message(m, acked, nacked, &k);
            ferry_message_destroy(m);
            next++;
            idle_deadline = ft_now_ms() + ft_ms(TIMEOUT_MS);
        }
        ferry_client_destroy(c);
        FT_ASSERT(k == nacked || acked[k].partition != part,
                  "acknowledged id %" PRIu64 " at %d/%" PRId64 " is at or above the high watermark %" PRId64,
                  acked[k].id, acked[k].partition, acked[k].offset, hi);
    }
    FT_ASSERT_EQ(k, nacked, "every acknowledged record checked");
    ferry_client_destroy(adm);
}

Test(crash, kill9_during_produce_loses_no_acknowledged_record)
{
    ft_seed_reset();
    FT_ASSERT(ft_broker_start(&B, NULL, E, sizeof(E)) == 0, "%s", E);
    ferry_client_t *adm = ft_client(&B, FERRY_ADMIN, NULL, E, sizeof(E));
    FT_ASSERT(adm != NULL, "%s", E);
    FT_ASSERT_ERR(ferry_admin_create_topic(adm, TOPIC, PARTITIONS, -1, NULL, NULL, 0, ft_ms(TIMEOUT_MS), E, sizeof(E)),
                  FERRY_ERR_NONE, "create: %s", E);
    ferry_client_destroy(adm);

    struct acked *acked = NULL;
    size_t nacked = 0, cap = 0, before_kill = 0;
    uint64_t next_id = 0;
    for (int round = 0; round < ROUNDS; round++) {
        int run_ms = (int)ft_rand_range(150, 1500);
        produce_and_crash(run_ms, &next_id, &acked, &nacked, &cap, &before_kill);
        verify(acked, nacked);
    }
    fprintf(stderr, "crash: %zu records acknowledged in %d rounds (%zu before a kill)\n", nacked, ROUNDS, before_kill);
    FT_ASSERT(nacked > 0, "some records were acknowledged");
    free(acked);
    FT_ASSERT_EQ(ft_broker_stop(&B), 0, "clean stop");
}

Test(crash, kill9_while_idle_and_restart_twice)
{
    /* Restart right after a kill, and kill again right after start-up: recovery of a recovered log. */
    ft_seed_reset();
    FT_ASSERT(ft_broker_start(&B, NULL, E, sizeof(E)) == 0, "%s", E);
    ferry_client_t *adm = ft_client(&B, FERRY_ADMIN, NULL, E, sizeof(E));
    FT_ASSERT(adm != NULL, "%s", E);
    FT_ASSERT_ERR(ferry_admin_create_topic(adm, TOPIC, PARTITIONS, -1, NULL, NULL, 0, ft_ms(TIMEOUT_MS), E, sizeof(E)),
                  FERRY_ERR_NONE, "create: %s", E);
    ferry_client_destroy(adm);
    struct acked *acked = NULL;
    size_t nacked = 0, cap = 0, before_kill = 0;
    uint64_t next_id = 0;
    produce_and_crash(300, &next_id, &acked, &nacked, &cap, &before_kill);
    for (int i = 0; i < 2; i++) {
        FT_ASSERT_EQ(ft_broker_kill(&B), 0, "kill -9 just after start");
        FT_ASSERT(ft_broker_restart(&B, E, sizeof(E)) == 0, "%s", E);
    }
    verify(acked, nacked);
    free(acked);
    FT_ASSERT_EQ(ft_broker_stop(&B), 0, "clean stop");
}
