/* test_cluster.c: 3 real brokers; kill -9 a partition leader under produce: no acknowledged record lost, replicas identical. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ferrytest.h"
#include "storage/log.h"

#define TOPIC "repl"
#define PARTITIONS 2
#define PER_PHASE 1500
#define TIMEOUT_MS 60000

static struct ft_cluster C;
static char E[FT_ERRMSG];

static void teardown(void) { ft_cluster_destroy(&C); }

TestSuite(cluster, .fini = teardown, .timeout = 300);

static size_t value_len_of(uint64_t id) { return 50 + (size_t)(id % 200); }

/* Produces ids [from, to) to partition 0 (and every 4th to partition 1), polling as it goes. */
static void produce_range(ferry_client_t *p, uint64_t from, uint64_t to)
{
    uint8_t value[256];
    char key[32];
    for (uint64_t id = from; id < to;) {
        size_t kl = (size_t)snprintf(key, sizeof(key), "id-%" PRIu64, id);
        ft_fill_pattern(value, value_len_of(id), id);
        ferry_record_t rec = {.topic = TOPIC, .partition = id % 4 == 3 ? 1 : 0, .key = key, .key_len = kl,
                              .value = value, .value_len = value_len_of(id), .opaque = (void *)(uintptr_t)(id + 1)};
        ferry_err_t e = ferry_produce(p, &rec, FERRY_F_NONBLOCK);
        if (e == FERRY_ERR__QUEUE_FULL) {
            ferry_poll(p, 5);
            continue;
        }
        FT_ASSERT_ERR(e, FERRY_ERR_NONE, "produce id %" PRIu64, id);
        id++;
        if (id % 64 == 0)
            ferry_poll(p, 1); /* paced: batches keep flowing while the leader dies */
    }
}

/* Reads partition `part` from offset 0 to hi through the cluster; checks ids strictly increase
 * (in order, no duplicate) and counts how many of the acknowledged ids were seen. */
static void consume_check(int32_t part, int64_t hi, const uint8_t *acked, uint64_t max_id, size_t *seen_acked)
{
    ferry_client_t *c = ft_cluster_client(&C, FERRY_CONSUMER, NULL, E, sizeof(E));
    FT_ASSERT(c != NULL, "%s", E);
    ferry_topic_partition_t tp = {TOPIC, part, 0};
    FT_ASSERT_ERR(ferry_assign(c, &tp, 1), FERRY_ERR_NONE, "assign");
    int64_t next = 0, deadline = ft_now_ms() + ft_ms(TIMEOUT_MS);
    int64_t last_id = -1;
    uint8_t want[256];
    while (next < hi) {
        FT_ASSERT(ft_now_ms() < deadline, "partition %d: stuck at offset %" PRId64 " of %" PRId64, part, next, hi);
        ferry_message_t *m = ferry_consumer_poll(c, 200);
        if (m == NULL)
            continue;
        FT_ASSERT_ERR(ferry_message_err(m), FERRY_ERR_NONE, "consumer event: %s",
                      ferry_message_errstr(m) ? ferry_message_errstr(m) : "");
        FT_ASSERT_EQ(ferry_message_offset(m), next, "partition %d: offsets dense and in order", part);
        size_t kl, vl;
        const char *k = ferry_message_key(m, &kl);
        FT_ASSERT(k != NULL && kl > 3 && kl < 30 && memcmp(k, "id-", 3) == 0, "key of offset %" PRId64, next);
        char kbuf[32];
        memcpy(kbuf, k + 3, kl - 3);
        kbuf[kl - 3] = '\0';
        uint64_t id = strtoull(kbuf, NULL, 10);
        FT_ASSERT((int64_t)id > last_id, "partition %d offset %" PRId64 ": id %" PRIu64 " after %" PRId64
                                         " (a record duplicated or reordered)",
                  part, next, id, last_id);
        last_id = (int64_t)id;
        const void *v = ferry_message_value(m, &vl);
        ft_fill_pattern(want, value_len_of(id), id);
        FT_ASSERT(v != NULL && vl == value_len_of(id) && memcmp(v, want, vl) == 0, "value of id %" PRIu64, id);
        if (id < max_id && acked[id])
            (*seen_acked)++;
        ferry_message_destroy(m);
        next++;
        deadline = ft_now_ms() + ft_ms(TIMEOUT_MS);
    }
    ferry_client_destroy(c);
}

/* Sum of the sizes of the partition's segment files in broker i's data dir. */
static long long segment_bytes(int i, int32_t part)
{
    char path[512];
    long long total = 0;
    for (int64_t base = 0; base < 1; base++) { /* one segment: the test writes far below segment.bytes */
        snprintf(path, sizeof(path), "%s/topics/%s-%d/%020" PRId64 ".log", C.b[i].data_dir, TOPIC, (int)part, base);
        struct stat st;
        if (stat(path, &st) == 0)
            total += (long long)st.st_size;
    }
    return total;
}

static uint8_t *read_replica(int i, int32_t part, size_t *len, int64_t *end)
{
    uint8_t *out = NULL;
    FT_ASSERT_EQ(ft_read_replica_log(C.b[i].data_dir, TOPIC, part, &out, len, end, E, sizeof(E)), 0,
                 "read replica %d: %s", i, E);
    return out;
}

Test(cluster, kill9_partition_leader_loses_nothing_and_replicas_match)
{
    struct ft_broker_opts o = {.security = FT_PLAINTEXT};
    FT_ASSERT(ft_cluster_start(&C, 3, &o, E, sizeof(E)) == 0, "%s", E);

    ferry_client_t *adm = ft_cluster_client(&C, FERRY_ADMIN, NULL, E, sizeof(E));
    FT_ASSERT(adm != NULL, "%s", E);
    FT_ASSERT_ERR(ferry_admin_create_topic(adm, TOPIC, PARTITIONS, 3, NULL, NULL, 0, ft_ms(TIMEOUT_MS), E, sizeof(E)),
                  FERRY_ERR_NONE, "create: %s", E);
    ferry_client_destroy(adm);
    FT_ASSERT(ft_cluster_leader(&C, TOPIC, 0, 30000, E, sizeof(E)) >= 0, "%s", E);
    FT_ASSERT(ft_cluster_leader(&C, TOPIC, 1, 30000, E, sizeof(E)) >= 0, "%s", E);

    /* acks=all (the default), retries until delivery.timeout.ms. */
    const char *kv[] = {"linger.ms", "2", "request.timeout.ms", "3000", "delivery.timeout.ms", "60000",
                        "retry.backoff.ms", "50", NULL};
    struct ft_deliveries log = {0};
    ferry_conf_t *conf = ft_cluster_conf(&C, kv, E, sizeof(E));
    FT_ASSERT(conf != NULL, "%s", E);
    ft_conf_record_deliveries(conf, &log);
    char err[512];
    ferry_client_t *p = ferry_client_new(FERRY_PRODUCER, conf, err, sizeof(err));
    FT_ASSERT(p != NULL, "%s", err);

    produce_range(p, 0, PER_PHASE);
    FT_ASSERT_ERR(ferry_flush(p, ft_ms(TIMEOUT_MS)), FERRY_ERR_NONE, "flush before the kill");
    int leader = ft_cluster_leader(&C, TOPIC, 0, 30000, E, sizeof(E));
    FT_ASSERT(leader >= 0, "%s", E);
    produce_range(p, PER_PHASE, PER_PHASE + PER_PHASE / 2);
    fprintf(stderr, "cluster: kill -9 broker %d, the leader of %s/0\n", leader, TOPIC);
    FT_ASSERT_EQ(ft_broker_kill(&C.b[leader]), 0, "kill -9 the leader");
    produce_range(p, PER_PHASE + PER_PHASE / 2, 2 * PER_PHASE);
    FT_ASSERT_ERR(ferry_flush(p, ft_ms(TIMEOUT_MS)), FERRY_ERR_NONE, "flush after the kill (the producer resumes)");
    int new_leader = ft_cluster_leader(&C, TOPIC, 0, 30000, E, sizeof(E));
    FT_ASSERT(new_leader >= 0 && new_leader != leader, "a new leader took over (%d): %s", new_leader, E);
    ferry_client_destroy(p);

    uint64_t max_id = 2 * PER_PHASE;
    uint8_t *acked = calloc(max_id, 1);
    FT_ASSERT(acked != NULL, "calloc");
    size_t nacked = 0;
    for (size_t i = 0; i < log.n; i++) {
        uint64_t id = (uint64_t)(uintptr_t)log.v[i].opaque - 1;
        FT_ASSERT(log.v[i].err == FERRY_ERR_NONE, "id %" PRIu64 " failed: %s", id, ferry_err_name(log.v[i].err));
        acked[id] = 1;
        nacked++;
    }
    FT_ASSERT_EQ(nacked, (size_t)max_id, "every record acknowledged");
    ft_deliveries_free(&log);

    FT_ASSERT(ft_broker_restart(&C.b[leader], E, sizeof(E)) == 0, "%s", E);

    /* Every acknowledged record, in order, exactly once (read through the current leaders). */
    size_t seen = 0;
    ferry_client_t *adm2 = ft_cluster_client(&C, FERRY_ADMIN, NULL, E, sizeof(E));
    FT_ASSERT(adm2 != NULL, "%s", E);
    for (int32_t part = 0; part < PARTITIONS; part++) {
        int64_t lo = -1, hi = -1;
        FT_ASSERT_ERR(ferry_watermarks(adm2, TOPIC, part, &lo, &hi, ft_ms(TIMEOUT_MS)), FERRY_ERR_NONE, "watermarks");
        consume_check(part, hi, acked, max_id, &seen);
    }
    ferry_client_destroy(adm2);
    FT_ASSERT_EQ(seen, nacked, "every acknowledged record is present exactly once");
    free(acked);

    /* The restarted replica catches up: wait until the three segment files have the same size. */
    int64_t deadline = ft_now_ms() + ft_ms(TIMEOUT_MS);
    for (;;) {
        int same = 1;
        for (int32_t part = 0; part < PARTITIONS; part++)
            for (int i = 1; i < 3; i++)
                same &= segment_bytes(i, part) == segment_bytes(0, part);
        if (same)
            break;
        FT_ASSERT(ft_now_ms() < deadline, "replicas did not converge: %lld/%lld/%lld bytes", segment_bytes(0, 0),
                  segment_bytes(1, 0), segment_bytes(2, 0));
        ft_sleep_ms(100);
    }
    /* Stop all (clean), then compare the replicas' stored batches byte for byte. */
    for (int i = 0; i < 3; i++)
        FT_ASSERT_EQ(ft_broker_stop(&C.b[i]), 0, "broker %d stops cleanly", i);
    for (int32_t part = 0; part < PARTITIONS; part++) {
        size_t len0, len;
        int64_t end0, end;
        uint8_t *r0 = read_replica(0, part, &len0, &end0);
        FT_ASSERT(end0 > 0, "partition %d has records", part);
        for (int i = 1; i < 3; i++) {
            uint8_t *r = read_replica(i, part, &len, &end);
            FT_ASSERT_EQ(end, end0, "partition %d: replica %d ends at the same offset", part, i);
            FT_ASSERT(len == len0 && memcmp(r, r0, len) == 0, "partition %d: replica %d holds the same batches", part,
                      i);
            free(r);
        }
        free(r0);
    }
}

Test(cluster, sigterm_moves_leadership_away_without_produce_errors)
{
    struct ft_broker_opts o = {.security = FT_PLAINTEXT};
    FT_ASSERT(ft_cluster_start(&C, 3, &o, E, sizeof(E)) == 0, "%s", E);
    ferry_client_t *adm = ft_cluster_client(&C, FERRY_ADMIN, NULL, E, sizeof(E));
    FT_ASSERT(adm != NULL, "%s", E);
    FT_ASSERT_ERR(ferry_admin_create_topic(adm, TOPIC, PARTITIONS, -1, NULL, NULL, 0, ft_ms(TIMEOUT_MS), E, sizeof(E)),
                  FERRY_ERR_NONE, "create: %s", E);
    ferry_client_destroy(adm);
    int leader = ft_cluster_leader(&C, TOPIC, 0, 30000, E, sizeof(E));
    FT_ASSERT(leader >= 0, "%s", E);

    const char *kv[] = {"linger.ms", "2", "request.timeout.ms", "3000", "delivery.timeout.ms", "60000",
                        "retry.backoff.ms", "50", NULL};
    struct ft_deliveries log = {0};
    ferry_conf_t *conf = ft_cluster_conf(&C, kv, E, sizeof(E));
    FT_ASSERT(conf != NULL, "%s", E);
    ft_conf_record_deliveries(conf, &log);
    char err[512];
    ferry_client_t *p = ferry_client_new(FERRY_PRODUCER, conf, err, sizeof(err));
    FT_ASSERT(p != NULL, "%s", err);
    produce_range(p, 0, PER_PHASE / 2);
    /* SIGTERM: the broker hands its leaderships over, then stops cleanly. */
    FT_ASSERT_EQ(ft_broker_stop(&C.b[leader]), 0, "broker %d stops cleanly after handing off", leader);
    produce_range(p, PER_PHASE / 2, PER_PHASE);
    FT_ASSERT_ERR(ferry_flush(p, ft_ms(TIMEOUT_MS)), FERRY_ERR_NONE, "flush after the graceful stop");
    ferry_client_destroy(p);
    size_t ok = 0;
    for (size_t i = 0; i < log.n; i++) {
        FT_ASSERT(log.v[i].err == FERRY_ERR_NONE, "id %" PRIu64 " failed: %s",
                  (uint64_t)(uintptr_t)log.v[i].opaque - 1, ferry_err_name(log.v[i].err));
        ok++;
    }
    FT_ASSERT_EQ(ok, (size_t)PER_PHASE, "every record acknowledged");
    ft_deliveries_free(&log);
    int now = ft_cluster_leader(&C, TOPIC, 0, 30000, E, sizeof(E));
    FT_ASSERT(now >= 0 && now != leader, "partition 0 is led by another broker (%d): %s", now, E);
    /* The stopped broker's log says it transferred before stopping. */
    size_t len = 0;
    char *text = ft_read_file(C.b[leader].log_path, &len);
    FT_ASSERT(text != NULL && strstr(text, "transferring") != NULL, "broker %d logged its hand-off", leader);
    free(text);
}
