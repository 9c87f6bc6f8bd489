/* test_cluster_admin.c: 3 real brokers: logs only on replicas (NOT_LEADER elsewhere), CreateTopics request tokens. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "ferrytest.h"

#define TIMEOUT_MS 60000

static struct ft_cluster C;
static char E[FT_ERRMSG];

static struct ft_broker SOLO; /* the standalone test's broker */

static void teardown(void)
{
    ft_cluster_destroy(&C);
    ft_broker_destroy(&SOLO);
}

TestSuite(cluster_admin, .fini = teardown, .timeout = 300);

static int dir_exists(int broker, const char *topic, int part)
{
    char path[1024];
    struct stat st;
    snprintf(path, sizeof(path), "%s/topics/%s-%d", C.b[broker].data_dir, topic, part);
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* One raw request to broker i; the response is the caller's (ft_resp_free). */
static void roundtrip(int i, struct ft_req *rq, struct ft_resp *rs)
{
    struct ft_raw raw;
    size_t len;
    const uint8_t *frame = ft_req_frame(rq, &len);
    FT_ASSERT(ft_raw_connect_broker(&raw, &C.b[i], E, sizeof(E)) == 0, "connect to broker %d: %s", i, E);
    FT_ASSERT(ft_raw_roundtrip(&raw, frame, len, rs, E, sizeof(E)) == 0, "broker %d: %s", i, E);
    ft_raw_close(&raw);
    ft_req_free(rq);
}

/* Replica sets of topic's partitions from the cluster's metadata (waits until every partition has a leader). */
static void replica_sets(ferry_client_t *adm, const char *topic, int nparts, int reps[][3], int *rf)
{
    const char *topics[] = {topic};
    int64_t deadline = ft_now_ms() + ft_ms(TIMEOUT_MS);
    for (;;) {
        ferry_metadata_t *md = NULL;
        int ok = 0;
        char err[512];
        if (ferry_admin_describe_cluster(adm, topics, 1, &md, ft_ms(2000), err, sizeof(err)) == FERRY_ERR_NONE &&
            ferry_metadata_topic_count(md) == 1 && ferry_metadata_partition_count(md, 0) == (size_t)nparts) {
            ok = 1;
            for (int p = 0; p < nparts; p++) {
                size_t k = (size_t)p;
                ok &= ferry_metadata_partition_leader(md, 0, k) >= 0;
                *rf = (int)ferry_metadata_partition_replica_count(md, 0, k);
                int32_t id = ferry_metadata_partition_id(md, 0, k);
                for (int r = 0; r < *rf && r < 3 && id >= 0 && id < nparts; r++)
                    reps[id][r] = ferry_metadata_partition_replica(md, 0, k, (size_t)r);
            }
        }
        ferry_metadata_destroy(md);
        if (ok)
            return;
        FT_ASSERT(ft_now_ms() < deadline, "%s: no leader for every partition", topic);
        ft_sleep_ms(100);
    }
}

Test(cluster_admin, logs_only_on_replicas_and_not_leader_elsewhere)
{
    struct ft_broker_opts o = {.security = FT_PLAINTEXT};
    FT_ASSERT(ft_cluster_start(&C, 3, &o, E, sizeof(E)) == 0, "%s", E);
    ferry_client_t *adm = ft_cluster_client(&C, FERRY_ADMIN, NULL, E, sizeof(E));
    FT_ASSERT(adm != NULL, "%s", E);
    FT_ASSERT_ERR(ferry_admin_create_topic(adm, "placed", 3, 2, NULL, NULL, 0, ft_ms(TIMEOUT_MS), E, sizeof(E)),
                  FERRY_ERR_NONE, "create: %s", E);
    int reps[3][3], rf = 0;
    replica_sets(adm, "placed", 3, reps, &rf);
    FT_ASSERT_EQ(rf, 2, "replication factor 2");

    for (int p = 0; p < 3; p++) {
        int outsider = -1;
        for (int b = 0; b < 3; b++) {
            int replica = reps[p][0] == b || reps[p][1] == b;
            FT_ASSERT_EQ(dir_exists(b, "placed", p), replica, "broker %d has a log of placed/%d iff it replicates it",
                         b, p);
            if (!replica)
                outsider = b;
        }
        FT_ASSERT(outsider >= 0, "placed/%d: one broker is not a replica", p);

        /* Produce to the broker without the partition: NOT_LEADER naming a replica. */
        uint8_t *batch;
        size_t blen;
        FT_ASSERT(ft_make_batch(1, 10, 0, 0, &batch, &blen, E, sizeof(E)) == 0, "%s", E);
        struct ft_req rq;
        struct ft_resp rs;
        ft_req_produce(&rq, 1, "placed", p, batch, blen);
        free(batch);
        roundtrip(outsider, &rq, &rs);
        const msgpack_object *pr = ft_resp_partition(&rs, 0, 0);
        FT_ASSERT(pr != NULL, "produce response has the partition");
        FT_ASSERT_EQ(ft_mp_int(pr, "error", -1), 13, "produce placed/%d on broker %d: NOT_LEADER", p, outsider);
        int64_t named = ft_mp_int(pr, "leader_id", -2);
        FT_ASSERT(named == reps[p][0] || named == reps[p][1], "leader_id %" PRId64 " is a replica of placed/%d",
                  named, p);
        ft_resp_free(&rs);

        ft_req_fetch(&rq, 2, "placed", p, 0, 0);
        roundtrip(outsider, &rq, &rs);
        pr = ft_resp_partition(&rs, 0, 0);
        FT_ASSERT(pr != NULL && ft_mp_int(pr, "error", -1) == 13, "fetch placed/%d on broker %d: NOT_LEADER", p,
                  outsider);
        ft_resp_free(&rs);

        /* Its Metadata still lists every partition, from the controller's state. */
        ft_req_metadata(&rq, 3, "placed");
        roundtrip(outsider, &rq, &rs);
        const msgpack_object *tm = ft_resp_topic(&rs, 0);
        const msgpack_object *parts = tm ? ft_mp_get(tm, "partitions") : NULL;
        FT_ASSERT(parts != NULL && parts->type == MSGPACK_OBJECT_ARRAY && parts->via.array.size == 3,
                  "broker %d lists the 3 partitions", outsider);
        ft_resp_free(&rs);
    }

    /* Produce and read back through the client: it goes to the leaders only. */
    ferry_client_t *pr = ft_cluster_client(&C, FERRY_PRODUCER, NULL, E, sizeof(E));
    FT_ASSERT(pr != NULL, "%s", E);
    for (int p = 0; p < 3; p++) {
        ferry_record_t rec = {.topic = "placed", .partition = p, .value = "x", .value_len = 1};
        FT_ASSERT_ERR(ferry_produce(pr, &rec, 0), FERRY_ERR_NONE, "produce");
    }
    FT_ASSERT_ERR(ferry_flush(pr, ft_ms(TIMEOUT_MS)), FERRY_ERR_NONE, "flush");
    ferry_client_destroy(pr);

    /* Delete: every broker drops its logs. */
    FT_ASSERT_ERR(ferry_admin_delete_topic(adm, "placed", ft_ms(TIMEOUT_MS), E, sizeof(E)), FERRY_ERR_NONE,
                  "delete: %s", E);
    int64_t deadline = ft_now_ms() + ft_ms(TIMEOUT_MS);
    for (;;) {
        int left = 0;
        for (int b = 0; b < 3; b++)
            for (int p = 0; p < 3; p++)
                left += dir_exists(b, "placed", p);
        if (left == 0)
            break;
        FT_ASSERT(ft_now_ms() < deadline, "%d partition logs left after the delete", left);
        ft_sleep_ms(100);
    }
    ferry_client_destroy(adm);
}

/* A raw CreateTopics of `name` (1 partition) with request_token (NULL = none); returns the topic's error. */
static int64_t create_with_token(int broker, const char *name, const char *token)
{
    struct ft_req rq;
    struct ft_resp rs;
    ft_req_begin(&rq, 2, 0, 7);
    msgpack_pack_map(&rq.pk, 1);
    ft_pack_str(&rq.pk, "topics");
    msgpack_pack_array(&rq.pk, 1);
    msgpack_pack_map(&rq.pk, token ? 3 : 2);
    ft_pack_str(&rq.pk, "name");
    ft_pack_str(&rq.pk, name);
    ft_pack_str(&rq.pk, "partitions");
    msgpack_pack_int64(&rq.pk, 1);
    if (token) {
        ft_pack_str(&rq.pk, "request_token");
        ft_pack_str(&rq.pk, token);
    }
    roundtrip(broker, &rq, &rs);
    const msgpack_object *tm = ft_resp_topic(&rs, 0);
    FT_ASSERT(tm != NULL, "CreateTopics answer names the topic");
    int64_t err = ft_mp_int(tm, "error", -1);
    ft_resp_free(&rs);
    return err;
}

/* The controller as the cluster's metadata tells (a live broker), waiting for one. */
static int controller(ferry_client_t *adm)
{
    int64_t deadline = ft_now_ms() + ft_ms(TIMEOUT_MS);
    for (;;) {
        ferry_metadata_t *md = NULL;
        char err[512];
        int id = -1;
        if (ferry_admin_describe_cluster(adm, NULL, 0, &md, ft_ms(2000), err, sizeof(err)) == FERRY_ERR_NONE)
            id = ferry_metadata_controller_id(md);
        ferry_metadata_destroy(md);
        if (id >= 0 && id < 3 && C.b[id].pid > 0 && ft_broker_alive(&C.b[id]))
            return id;
        FT_ASSERT(ft_now_ms() < deadline, "no live controller");
        ft_sleep_ms(100);
    }
}

Test(cluster_admin, create_retried_with_its_token_is_a_success)
{
    struct ft_broker_opts o = {.security = FT_PLAINTEXT};
    FT_ASSERT(ft_cluster_start(&C, 3, &o, E, sizeof(E)) == 0, "%s", E);
    ferry_client_t *adm = ft_cluster_client(&C, FERRY_ADMIN, NULL, E, sizeof(E));
    FT_ASSERT(adm != NULL, "%s", E);

    int ctl = controller(adm);
    FT_ASSERT_EQ(create_with_token(ctl, "tok", "a1b2c3"), 0, "first create");
    FT_ASSERT_EQ(create_with_token(ctl, "tok", "a1b2c3"), 0, "the same request again: a success");
    FT_ASSERT_EQ(create_with_token(ctl, "tok", "ffff"), 9, "another token: TOPIC_ALREADY_EXISTS");
    FT_ASSERT_EQ(create_with_token(ctl, "tok", NULL), 9, "no token: TOPIC_ALREADY_EXISTS");

    /* The token is replicated state: a new controller honours it too. */
    FT_ASSERT_EQ(ft_broker_kill(&C.b[ctl]), 0, "kill -9 the controller %d", ctl);
    int64_t deadline = ft_now_ms() + ft_ms(TIMEOUT_MS);
    int now = -1;
    int64_t err = -1;
    while (err != 0) {
        now = controller(adm);
        err = create_with_token(now, "tok", "a1b2c3");
        FT_ASSERT(err == 0 || err == 24, "retry on broker %d: error %" PRId64, now, err);
        FT_ASSERT(ft_now_ms() < deadline, "no controller accepted the retry");
        if (err != 0)
            ft_sleep_ms(100);
    }
    FT_ASSERT(now != ctl, "a new controller (%d) answered", now);
    FT_ASSERT_EQ(create_with_token(now, "tok", "0000"), 9, "another token still conflicts");

    /* The killed broker comes back (it replays the token from its controller log). */
    FT_ASSERT(ft_broker_restart(&C.b[ctl], E, sizeof(E)) == 0, "%s", E);
    /* libferry sends a fresh token per call: a second create of an existing topic is a conflict. */
    FT_ASSERT_ERR(ferry_admin_create_topic(adm, "lib", 1, -1, NULL, NULL, 0, ft_ms(TIMEOUT_MS), E, sizeof(E)),
                  FERRY_ERR_NONE, "libferry create: %s", E);
    FT_ASSERT_ERR(ferry_admin_create_topic(adm, "lib", 1, -1, NULL, NULL, 0, ft_ms(TIMEOUT_MS), E, sizeof(E)),
                  FERRY_ERR_TOPIC_ALREADY_EXISTS, "libferry create again");
    ferry_client_destroy(adm);
}

/* A raw CreateTopics with a token straight to one standalone broker; returns the topic's error. */
static int64_t create_on(struct ft_broker *b, const char *name, const char *token)
{
    struct ft_req rq;
    struct ft_resp rs;
    struct ft_raw raw;
    size_t len;
    ft_req_begin(&rq, 2, 0, 9);
    msgpack_pack_map(&rq.pk, 1);
    ft_pack_str(&rq.pk, "topics");
    msgpack_pack_array(&rq.pk, 1);
    msgpack_pack_map(&rq.pk, 3);
    ft_pack_str(&rq.pk, "name");
    ft_pack_str(&rq.pk, name);
    ft_pack_str(&rq.pk, "partitions");
    msgpack_pack_int64(&rq.pk, 2);
    ft_pack_str(&rq.pk, "request_token");
    ft_pack_str(&rq.pk, token);
    const uint8_t *frame = ft_req_frame(&rq, &len);
    FT_ASSERT(ft_raw_connect_broker(&raw, b, E, sizeof(E)) == 0, "connect: %s", E);
    FT_ASSERT(ft_raw_roundtrip(&raw, frame, len, &rs, E, sizeof(E)) == 0, "%s", E);
    ft_raw_close(&raw);
    ft_req_free(&rq);
    const msgpack_object *tm = ft_resp_topic(&rs, 0);
    FT_ASSERT(tm != NULL, "CreateTopics answer names the topic");
    int64_t err = ft_mp_int(tm, "error", -1);
    ft_resp_free(&rs);
    return err;
}

Test(cluster_admin, standalone_broker_keeps_the_token_across_a_restart)
{
    struct ft_broker *b = &SOLO;
    FT_ASSERT(ft_broker_start(b, &(struct ft_broker_opts){.security = FT_PLAINTEXT}, E, sizeof(E)) == 0, "%s", E);
    FT_ASSERT_EQ(create_on(b, "solo", "7e57"), 0, "first create");
    FT_ASSERT_EQ(create_on(b, "solo", "7e57"), 0, "the same request again");
    FT_ASSERT_EQ(ft_broker_stop(b), 0, "clean stop");
    FT_ASSERT(ft_broker_restart(b, E, sizeof(E)) == 0, "%s", E);
    FT_ASSERT_EQ(create_on(b, "solo", "7e57"), 0, "after a restart (topics.msgpack keeps the token)");
    FT_ASSERT_EQ(create_on(b, "solo", "0ther"), 9, "another token: TOPIC_ALREADY_EXISTS");
}
