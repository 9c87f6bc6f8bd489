/* test_catchup.c: a replica restored from a Raft snapshot refills its segments from the leader; logs end byte-identical. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ferrytest.h"
#include "storage/log.h"

#define TOPIC "catchup"
#define TIMEOUT_MS 60000
/* Small snapshots so the leader's Raft log soon starts past what a returning replica has. */
#define RAFT_EXTRA "raft.snapshot.threshold = 16\nraft.snapshot.trailing = 4\n"

static struct ft_cluster C;
static char E[FT_ERRMSG];

static void teardown(void) { ft_cluster_destroy(&C); }

TestSuite(catchup, .fini = teardown, .timeout = 300);

/* Produces n records of value_len bytes (ids from..from+n) to partition 0, flushing every `every`
 * records (so each flush is at least one Raft entry) and at the end; all acknowledged. idem is
 * enable.idempotence ("true" / "false"). */
static void produce_n(uint64_t from, uint64_t n, size_t value_len, uint64_t every, const char *idem)
{
    const char *kv[] = {"linger.ms",           "5",     "request.timeout.ms", "5000",
                        "delivery.timeout.ms", "60000", "enable.idempotence", idem, NULL};
    struct ft_deliveries log = {0};
    ferry_conf_t *conf = ft_cluster_conf(&C, kv, E, sizeof(E));
    FT_ASSERT(conf != NULL, "%s", E);
    ft_conf_record_deliveries(conf, &log);
    char err[512];
    ferry_client_t *p = ferry_client_new(FERRY_PRODUCER, conf, err, sizeof(err));
    FT_ASSERT(p != NULL, "%s", err);
    uint8_t *value = malloc(value_len);
    FT_ASSERT(value != NULL, "malloc");
    char key[32];
    for (uint64_t id = from; id < from + n;) {
        size_t kl = (size_t)snprintf(key, sizeof(key), "id-%" PRIu64, id);
        ft_fill_pattern(value, value_len, id);
        ferry_record_t rec = {.topic = TOPIC, .partition = 0, .key = key, .key_len = kl, .value = value,
                              .value_len = value_len};
        ferry_err_t e = ferry_produce(p, &rec, FERRY_F_NONBLOCK);
        if (e == FERRY_ERR__QUEUE_FULL) {
            ferry_poll(p, 5);
            continue;
        }
        FT_ASSERT_ERR(e, FERRY_ERR_NONE, "produce id %" PRIu64, id);
        id++;
        if ((id - from) % every == 0)
            FT_ASSERT_ERR(ferry_flush(p, ft_ms(TIMEOUT_MS)), FERRY_ERR_NONE, "flush");
        else if (id % 64 == 0)
            ferry_poll(p, 0);
    }
    FT_ASSERT_ERR(ferry_flush(p, ft_ms(TIMEOUT_MS)), FERRY_ERR_NONE, "flush");
    ferry_client_destroy(p);
    free(value);
    FT_ASSERT_EQ(log.n, (size_t)n, "every record reported");
    for (size_t i = 0; i < log.n; i++)
        FT_ASSERT(log.v[i].err == FERRY_ERR_NONE, "record %zu failed: %s", i, ferry_err_name(log.v[i].err));
    ft_deliveries_free(&log);
}

static void create_topic(void)
{
    ferry_client_t *adm = ft_cluster_client(&C, FERRY_ADMIN, NULL, E, sizeof(E));
    FT_ASSERT(adm != NULL, "%s", E);
    FT_ASSERT_ERR(ferry_admin_create_topic(adm, TOPIC, 1, 3, NULL, NULL, 0, ft_ms(TIMEOUT_MS), E, sizeof(E)),
                  FERRY_ERR_NONE, "create: %s", E);
    ferry_client_destroy(adm);
    FT_ASSERT(ft_cluster_leader(&C, TOPIC, 0, 30000, E, sizeof(E)) >= 0, "%s", E);
}

/* Size of broker i's first segment file of the partition (segment.bytes default: one segment). */
static long long segment_size(int i)
{
    char path[512];
    struct stat st;
    snprintf(path, sizeof(path), "%s/topics/%s-0/%020d.log", C.b[i].data_dir, TOPIC, 0);
    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

/* Waits until every replica's segment file has the leader's size. */
static void wait_converged(int leader)
{
    int64_t deadline = ft_now_ms() + ft_ms(TIMEOUT_MS);
    for (;;) {
        long long want = segment_size(leader);
        int same = want > 0;
        for (int i = 0; i < 3; i++)
            same &= segment_size(i) == want;
        if (same)
            return;
        FT_ASSERT(ft_now_ms() < deadline, "replicas did not converge: %lld/%lld/%lld bytes", segment_size(0),
                  segment_size(1), segment_size(2));
        ft_sleep_ms(100);
    }
}

/* Stops every broker cleanly and checks the three replicas hold the same batches, ending at want_end. */
static uint8_t *read_replica(int i, size_t *len, int64_t *end)
{
    uint8_t *out = NULL;
    FT_ASSERT_EQ(ft_read_replica_log(C.b[i].data_dir, TOPIC, 0, &out, len, end, E, sizeof(E)), 0,
                 "read replica %d: %s", i, E);
    return out;
}

static void stop_and_compare(int64_t want_end)
{
    for (int i = 0; i < 3; i++)
        FT_ASSERT_EQ(ft_broker_stop(&C.b[i]), 0, "broker %d stops cleanly", i);
    size_t len0, len;
    int64_t end0, end;
    uint8_t *r0 = read_replica(0, &len0, &end0);
    FT_ASSERT_EQ(end0, want_end, "replica 0 holds every record");
    for (int i = 1; i < 3; i++) {
        uint8_t *r = read_replica(i, &len, &end);
        FT_ASSERT_EQ(end, end0, "replica %d ends at the same offset", i);
        FT_ASSERT(len == len0 && memcmp(r, r0, len) == 0, "replica %d holds the same bytes (%zu vs %zu)", i, len,
                  len0);
        free(r);
    }
    free(r0);
}

/* 1 if broker i's log says it caught a partition up from the leader. */
static int logged_catchup(int i)
{
    size_t len = 0;
    char *text = ft_read_file(C.b[i].log_path, &len);
    int found = text != NULL && strstr(text, "caught up to offset") != NULL;
    free(text);
    return found;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

Test(catchup, empty_data_dir_is_refilled_from_the_leader)
{
    struct ft_broker_opts o = {.security = FT_MTLS, .extra = RAFT_EXTRA};
    FT_ASSERT(ft_cluster_start(&C, 3, &o, E, sizeof(E)) == 0, "%s", E);
    create_topic();
    produce_n(0, 2000, 200, 20, "true");
    int leader = ft_cluster_leader(&C, TOPIC, 0, 30000, E, sizeof(E));
    FT_ASSERT(leader >= 0, "%s", E);
    int f = (leader + 1) % 3;
    FT_ASSERT_EQ(ft_broker_stop(&C.b[f]), 0, "follower %d stops cleanly", f);
    FT_ASSERT_EQ(nftw(C.b[f].data_dir, rm_one, 16, FTW_DEPTH | FTW_PHYS), 0, "wipe %s", C.b[f].data_dir);
    FT_ASSERT_EQ(mkdir(C.b[f].data_dir, 0700), 0, "recreate %s", C.b[f].data_dir);
    produce_n(2000, 500, 200, 20, "true"); /* the survivors snapshot again past anything the empty replica has */
    fprintf(stderr, "catchup: broker %d restarts with an empty data dir\n", f);
    FT_ASSERT(ft_broker_restart(&C.b[f], E, sizeof(E)) == 0, "%s", E);
    /* The leaders still hold their replication progress for the wiped replica (its old match index)
     * and, like the Raft library assumes, never resend below it; a new leader starts afresh. So the
     * two survivors restart (an operator's rolling restart does the same); the groups' new leaders
     * then send the wiped replica their snapshots, and it refills its segments. */
    for (int k = 1; k <= 2; k++)
        FT_ASSERT_EQ(ft_broker_stop(&C.b[(f + k) % 3]), 0, "broker %d stops cleanly", (f + k) % 3);
    for (int k = 1; k <= 2; k++)
        FT_ASSERT(ft_broker_restart(&C.b[(f + k) % 3], E, sizeof(E)) == 0, "%s", E);
    /* Clients bootstrap through broker 0, which may be the wiped one: wait until it knows the topic. */
    char dir[512];
    struct stat st;
    snprintf(dir, sizeof(dir), "%s/topics/%s-0", C.b[f].data_dir, TOPIC);
    int64_t deadline = ft_now_ms() + ft_ms(TIMEOUT_MS);
    while (stat(dir, &st) != 0) {
        FT_ASSERT(ft_now_ms() < deadline, "broker %d never learnt the topic from the controller", f);
        ft_sleep_ms(50);
    }
    /* Not idempotent: the wiped broker lost its producer-id counter and may hand out an id used
     * before (producer ids are allocated per broker, not replicated), whose sequence 0 the
     * partition already holds. */
    produce_n(2500, 300, 200, 20, "false"); /* entries committed while it catches up are applied after it */
    leader = ft_cluster_leader(&C, TOPIC, 0, 30000, E, sizeof(E));
    FT_ASSERT(leader >= 0, "%s", E);
    wait_converged(leader);
    FT_ASSERT(logged_catchup(f), "broker %d refilled its segments from the leader (its log says so)", f);
    stop_and_compare(2800);
}

Test(catchup, replica_down_during_bulk_write_catches_up)
{
    const char *env = getenv("FERRY_TEST_CATCHUP_MB");
    long mb = env != NULL ? strtol(env, NULL, 10) : 20;
    FT_ASSERT(mb >= 1 && mb <= 4096, "FERRY_TEST_CATCHUP_MB=%s: 1..4096", env);
    const size_t value_len = 8192;
    uint64_t n = (uint64_t)mb * 1024 * 1024 / value_len;
    struct ft_broker_opts o = {.security = FT_PLAINTEXT, .extra = RAFT_EXTRA};
    FT_ASSERT(ft_cluster_start(&C, 3, &o, E, sizeof(E)) == 0, "%s", E);
    create_topic();
    produce_n(0, 100, value_len, 10, "true");
    int leader = ft_cluster_leader(&C, TOPIC, 0, 30000, E, sizeof(E));
    FT_ASSERT(leader >= 0, "%s", E);
    int f = (leader + 2) % 3;
    FT_ASSERT_EQ(ft_broker_stop(&C.b[f]), 0, "follower %d stops cleanly", f);
    fprintf(stderr, "catchup: %ld MB written while broker %d is down\n", mb, f);
    produce_n(100, n, value_len, n, "true");
    FT_ASSERT(ft_broker_restart(&C.b[f], E, sizeof(E)) == 0, "%s", E);
    leader = ft_cluster_leader(&C, TOPIC, 0, 30000, E, sizeof(E));
    FT_ASSERT(leader >= 0, "%s", E);
    wait_converged(leader);
    FT_ASSERT(logged_catchup(f), "broker %d fetched the missing segments from the leader (its log says so)", f);
    stop_and_compare((int64_t)(100 + n));
}

/* Start and end offsets of broker i's (stopped) log and its batches from `from` to the end. */
static uint8_t *read_from(int i, int64_t *start, int64_t *end, int64_t from, size_t *len)
{
    char dir[1024];
    struct ferry_log_config lc = {.segment_bytes = 1 << 30, .segment_ms = INT64_MAX / 4, .retention_ms = -1,
                                  .retention_bytes = -1, .index_interval_bytes = 4096};
    struct ferry_log *log = NULL;
    uint8_t *out = NULL;
    *len = 0;
    snprintf(dir, sizeof(dir), "%s/topics/%s-0", C.b[i].data_dir, TOPIC);
    FT_ASSERT_EQ(ferry_log_open(dir, &lc, &log, E, sizeof(E)), 0, "open broker %d's log: %s", i, E);
    *start = ferry_log_start_offset(log);
    *end = ferry_log_end_offset(log);
    if (from >= 0 && from < *end)
        FT_ASSERT_EQ(ferry_log_read(log, from, *end, (size_t)1 << 30, &out, len, E, sizeof(E)), 0,
                     "read broker %d from %" PRId64 ": %s", i, from, E);
    ferry_log_close(log);
    return out;
}

/* 1 if one of the segment files of broker i's partition contains the bytes of s. */
static int segments_hold(int i, const char *s)
{
    char dir[1024], path[1400];
    int found = 0;
    snprintf(dir, sizeof(dir), "%s/topics/%s-0", C.b[i].data_dir, TOPIC);
    DIR *d = opendir(dir);
    if (d == NULL)
        return 0;
    struct dirent *de;
    while (!found && (de = readdir(d)) != NULL) {
        size_t nl = strlen(de->d_name);
        if (nl < 5 || strcmp(de->d_name + nl - 4, ".log") != 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        size_t len = 0;
        char *text = ft_read_file(path, &len);
        found = text != NULL && memmem(text, len, s, strlen(s)) != NULL;
        free(text);
    }
    closedir(d);
    return found;
}

static int log_says(int i, const char *what)
{
    size_t len = 0;
    char *text = ft_read_file(C.b[i].log_path, &len);
    int found = text != NULL && strstr(text, what) != NULL;
    free(text);
    return found;
}

Test(catchup, leader_retention_past_the_replica_restarts_its_log_at_the_leader_start)
{
    /* Small segments and a byte limit: the leader's log start moves up while a follower is away. */
    struct ft_broker_opts o = {.security = FT_PLAINTEXT,
                               .extra = RAFT_EXTRA "retention.check.interval.ms = 100\n"};
    FT_ASSERT(ft_cluster_start(&C, 3, &o, E, sizeof(E)) == 0, "%s", E);
    ferry_client_t *adm = ft_cluster_client(&C, FERRY_ADMIN, NULL, E, sizeof(E));
    FT_ASSERT(adm != NULL, "%s", E);
    const char *keys[] = {"segment.bytes", "retention.bytes"}, *values[] = {"4096", "16384"};
    FT_ASSERT_ERR(ferry_admin_create_topic(adm, TOPIC, 1, 3, keys, values, 2, ft_ms(TIMEOUT_MS), E, sizeof(E)),
                  FERRY_ERR_NONE, "create: %s", E);
    ferry_client_destroy(adm);
    FT_ASSERT(ft_cluster_leader(&C, TOPIC, 0, 30000, E, sizeof(E)) >= 0, "%s", E);
    produce_n(0, 50, 200, 10, "true");
    int leader = ft_cluster_leader(&C, TOPIC, 0, 30000, E, sizeof(E));
    FT_ASSERT(leader >= 0, "%s", E);
    int f = (leader + 1) % 3;
    FT_ASSERT_EQ(ft_broker_stop(&C.b[f]), 0, "follower %d stops cleanly", f);
    size_t len;
    int64_t fstart, fend_before;
    free(read_from(f, &fstart, &fend_before, -1, &len));
    fprintf(stderr, "catchup: broker %d stopped at offset %" PRId64 "; 600 records while it is away\n", f,
            fend_before);
    produce_n(50, 600, 200, 10, "true"); /* ~130 KB through 4 KiB segments kept to 16 KiB */
    FT_ASSERT(ft_broker_restart(&C.b[f], E, sizeof(E)) == 0, "%s", E);
    int64_t deadline = ft_now_ms() + ft_ms(TIMEOUT_MS);
    while (!log_says(f, "caught up to offset")) {
        FT_ASSERT(ft_now_ms() < deadline, "broker %d never caught up", f);
        ft_sleep_ms(100);
    }
    FT_ASSERT(log_says(f, "the local log restarts empty at"), "broker %d adopted the leader's log start", f);
    produce_n(650, 50, 200, 10, "true"); /* and it keeps applying */
    leader = ft_cluster_leader(&C, TOPIC, 0, 30000, E, sizeof(E));
    FT_ASSERT(leader >= 0, "%s", E);
    /* Acknowledged means on a majority: wait until the returning replica stored the last record too
     * (its key is in a segment file as written: no compression). */
    deadline = ft_now_ms() + ft_ms(TIMEOUT_MS);
    while (!segments_hold(f, "id-699")) {
        FT_ASSERT(ft_now_ms() < deadline, "broker %d never stored the last record", f);
        ft_sleep_ms(100);
    }
    for (int i = 0; i < 3; i++)
        FT_ASSERT_EQ(ft_broker_stop(&C.b[i]), 0, "broker %d stops cleanly", i);

    int64_t lstart, lend, fend;
    free(read_from(leader, &lstart, &lend, -1, &len));
    free(read_from(f, &fstart, &fend, -1, &len));
    fprintf(stderr, "catchup: leader %d holds [%" PRId64 ", %" PRId64 "), broker %d [%" PRId64 ", %" PRId64 ")\n",
            leader, lstart, lend, f, fstart, fend);
    FT_ASSERT_EQ(lend, 700, "the leader holds every offset up to 700");
    FT_ASSERT_EQ(fend, lend, "the returning replica ends where the leader does");
    FT_ASSERT(fstart > fend_before, "its log restarted past its old end %" PRId64 " (starts at %" PRId64 ")",
              fend_before, fstart);
    int64_t from = fstart > lstart ? fstart : lstart;
    size_t llen, flen;
    uint8_t *l = read_from(leader, &lstart, &lend, from, &llen);
    uint8_t *r = read_from(f, &fstart, &fend, from, &flen);
    FT_ASSERT(llen > 0 && llen == flen && memcmp(l, r, llen) == 0,
              "same batches from offset %" PRId64 " (%zu vs %zu bytes)", from, llen, flen);
    free(l);
    free(r);
}
