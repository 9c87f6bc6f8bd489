/* test_groups.c: consumer groups through libferry on 3 real brokers: rebalancing, crashes, fan-out, failover, fencing. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferrytest.h"

/*
 * Consumers are libferry clients in this process, polled round-robin from the test thread. A
 * "crash" of a consumer is ferry_client_destroy without ferry_consumer_close: it sends no leave,
 * so the coordinator only learns of it by the session timeout, exactly as after kill -9.
 */

#define TOPIC "orders"
#define PARTS 12
#define WAIT_MS 60000
#define SESSION_MS "3000"
#define MAX_MEMBERS 6
#define MAX_IDS 20000

/* Broker settings: quick heartbeats, few offsets partitions (fewer Raft groups on 2 cores). */
static const struct ft_broker_opts OPTS = {
    .security = FT_PLAINTEXT,
    .extra = "group.heartbeat.interval.ms = 200\noffsets.topic.num.partitions = 3\n",
};

static struct ft_cluster C;
static struct ft_broker B; /* the standalone test's one broker (C unused then) */
static char E[FT_ERRMSG];

static void teardown(void)
{
    ft_cluster_destroy(&C);
    ft_broker_destroy(&B);
}

/* A client conf for the cluster, or for the standalone broker when no cluster runs. */
static ferry_conf_t *test_conf(const char *const *kv)
{
    return C.n > 0 ? ft_cluster_conf(&C, kv, E, sizeof E) : ft_conf(&B, kv, E, sizeof E);
}

TestSuite(groups, .fini = teardown, .timeout = 400);

/* ---- members ---- */

struct member {
    ferry_client_t *c;
    int idx;
    int64_t last_off[PARTS]; /* last offset seen per partition while owned (-1 = none since assigned) */
    bool revoked[PARTS];     /* revoked or lost since the last phase_reset */
    bool assigned_ev[PARTS]; /* assigned since the last phase_reset */
    size_t events;           /* rebalance events since the last phase_reset */
    size_t gaps;             /* a partition kept across a rebalance skipped an offset */
    int64_t first_off[PARTS]; /* first offset received per partition (-1) */
};

static uint8_t seen[MAX_IDS];
static size_t seen_count;

static void on_rebalance(ferry_client_t *c, ferry_rebalance_event_t ev, const ferry_topic_partition_t *parts, size_t n,
                         void *opaque)
{
    (void)c;
    struct member *m = opaque;
    m->events++;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(parts[i].topic, TOPIC) != 0 || parts[i].partition < 0 || parts[i].partition >= PARTS)
            continue;
        int32_t p = parts[i].partition;
        if (ev == FERRY_REBALANCE_ASSIGNED)
            m->assigned_ev[p] = true;
        else
            m->revoked[p] = true;
        m->last_off[p] = -1;
    }
}

static void phase_reset(struct member *m)
{
    memset(m->revoked, 0, sizeof m->revoked);
    memset(m->assigned_ev, 0, sizeof m->assigned_ev);
    m->events = 0;
}

/* FERRY_TEST_CLIENT_LOG=1 prints libferry's log (with the member's index) for post-mortems. */
static void log_cb(const ferry_client_t *c, int level, const char *msg, void *opaque)
{
    (void)c; /* opaque is not read: a failed test may leave clients running after its members are gone */
    fprintf(stderr, "%lld member %p libferry[%d]: %s\n", (long long)ft_now_ms(), opaque, level, msg);
}

/* When set, the log callback of the next members (instead of FERRY_TEST_CLIENT_LOG's). */
static ferry_log_cb_t *member_log_cb;

static ferry_client_t *member_client(struct member *m, const char *group, const char *const *extra)
{
    const char *kv[32] = {"group.id", group, "session.timeout.ms", SESSION_MS, "fetch.max.wait.ms", "100",
                          "auto.offset.reset", "earliest", "retry.backoff.ms", "50"};
    size_t k = 10;
    for (size_t i = 0; extra && extra[i] && k < 30; i++)
        kv[k++] = extra[i];
    kv[k] = NULL;
    ferry_conf_t *conf = test_conf(kv);
    FT_ASSERT(conf != NULL, "conf: %s", E);
    ferry_conf_set_opaque(conf, m);
    ferry_conf_set_rebalance_cb(conf, on_rebalance);
    const char *log = getenv("FERRY_TEST_CLIENT_LOG");
    if (log != NULL && strcmp(log, "1") == 0)
        ferry_conf_set_log_cb(conf, log_cb);
    if (member_log_cb != NULL)
        ferry_conf_set_log_cb(conf, member_log_cb);
    ferry_client_t *c = ferry_client_new(FERRY_CONSUMER, conf, E, sizeof E);
    FT_ASSERT(c != NULL, "consumer: %s", E);
    return c;
}

static void member_start(struct member *m, int idx, const char *group, const char *topic, const char *const *extra)
{
    memset(m, 0, sizeof *m);
    m->idx = idx;
    for (int p = 0; p < PARTS; p++)
        m->last_off[p] = m->first_off[p] = -1;
    m->c = member_client(m, group, extra);
    FT_ASSERT_ERR(ferry_subscribe(m->c, &topic, 1), FERRY_ERR_NONE, "subscribe member %d", idx);
}

/* The id in a record key "id-N", or -1. */
static int64_t key_id(const ferry_message_t *msg)
{
    size_t kl = 0;
    const char *k = ferry_message_key(msg, &kl);
    if (k == NULL || kl < 4 || kl > 20 || memcmp(k, "id-", 3) != 0)
        return -1;
    char buf[24];
    memcpy(buf, k + 3, kl - 3);
    buf[kl - 3] = '\0';
    return strtoll(buf, NULL, 10);
}

/* Polls every live member once (up to `each_ms` each); returns the records received. */
static size_t pump(struct member *ms, size_t n, int each_ms)
{
    size_t got = 0;
    for (size_t i = 0; i < n; i++) {
        struct member *m = &ms[i];
        if (m->c == NULL)
            continue;
        for (int burst = 0; burst < 500; burst++) {
            ferry_message_t *msg = ferry_consumer_poll(m->c, burst == 0 ? each_ms : 0);
            if (msg == NULL)
                break;
            FT_ASSERT_ERR(ferry_message_err(msg), FERRY_ERR_NONE, "member %d event: %s", m->idx,
                          ferry_message_errstr(msg) ? ferry_message_errstr(msg) : "");
            int32_t p = ferry_message_partition(msg);
            int64_t off = ferry_message_offset(msg);
            if (strcmp(ferry_message_topic(msg), TOPIC) == 0 && p >= 0 && p < PARTS) {
                if (m->last_off[p] >= 0 && off > m->last_off[p] + 1)
                    m->gaps++;
                m->last_off[p] = off;
                if (m->first_off[p] < 0)
                    m->first_off[p] = off;
            }
            int64_t id = key_id(msg);
            if (id >= 0 && id < MAX_IDS && !seen[id]) {
                seen[id] = 1;
                seen_count++;
            }
            got++;
            ferry_message_destroy(msg);
        }
    }
    return got;
}

/* Every partition owned by exactly one live member, counts balanced (differ by at most one). */
static bool balanced(struct member *ms, size_t n, int owner[PARTS])
{
    int count[MAX_MEMBERS] = {0};
    size_t live = 0;
    for (int p = 0; p < PARTS; p++)
        owner[p] = -1;
    for (size_t i = 0; i < n; i++) {
        if (ms[i].c == NULL)
            continue;
        live++;
        ferry_topic_partition_t *tp = NULL;
        size_t np = 0;
        FT_ASSERT_ERR(ferry_assignment(ms[i].c, &tp, &np), FERRY_ERR_NONE, "assignment");
        for (size_t j = 0; j < np; j++) {
            int32_t p = tp[j].partition;
            if (p < 0 || p >= PARTS || owner[p] != -1) {
                ferry_topic_partitions_destroy(tp);
                return false; /* owned twice (a hand-over in progress) */
            }
            owner[p] = (int)i;
            count[i]++;
        }
        ferry_topic_partitions_destroy(tp);
    }
    if (live == 0)
        return false;
    for (int p = 0; p < PARTS; p++)
        if (owner[p] < 0)
            return false;
    int lo = PARTS, hi = 0;
    for (size_t i = 0; i < n; i++) {
        if (ms[i].c == NULL)
            continue;
        lo = count[i] < lo ? count[i] : lo;
        hi = count[i] > hi ? count[i] : hi;
    }
    return hi - lo <= 1;
}

/* Pumps until the assignment is balanced; owner[] gets the final owners. */
static void wait_balanced(struct member *ms, size_t n, int owner[PARTS], const char *what)
{
    int64_t deadline = ft_now_ms() + ft_ms(WAIT_MS);
    while (!balanced(ms, n, owner)) {
        FT_ASSERT(ft_now_ms() < deadline, "%s: the group did not settle", what);
        pump(ms, n, 20);
    }
}

static size_t delivery_failed;
static char delivery_error[300];
static int64_t failed_ids[MAX_IDS];

static void on_delivery(ferry_client_t *c, const ferry_delivery_t *d, void *opaque)
{
    (void)c;
    (void)opaque;
    if (d->err == FERRY_ERR_NONE)
        return;
    if (delivery_failed < MAX_IDS)
        failed_ids[delivery_failed] = (int64_t)(uintptr_t)d->opaque - 1;
    if (delivery_failed++ == 0)
        snprintf(delivery_error, sizeof delivery_error, "%s: %s", ferry_err_name(d->err),
                 d->error_message ? d->error_message : "");
}

static ferry_client_t *producer_new(void)
{
    ferry_conf_t *conf = test_conf(NULL);
    FT_ASSERT(conf != NULL, "%s", E);
    ferry_conf_set_delivery_cb(conf, on_delivery);
    ferry_client_t *p = ferry_client_new(FERRY_PRODUCER, conf, E, sizeof E);
    FT_ASSERT(p != NULL, "producer: %s", E);
    delivery_failed = 0;
    return p;
}

static void produce_one(ferry_client_t *p, int64_t id)
{
    char key[32], val[64];
    size_t kl = (size_t)snprintf(key, sizeof key, "id-%" PRId64, id);
    size_t vl = (size_t)snprintf(val, sizeof val, "order %" PRId64, id);
    ferry_record_t rec = {.topic = TOPIC, .partition = FERRY_PARTITION_ANY, .key = key, .key_len = kl,
                          .value = val, .value_len = vl, .opaque = (void *)(uintptr_t)(id + 1)};
    ferry_err_t e;
    while ((e = ferry_produce(p, &rec, FERRY_F_NONBLOCK)) == FERRY_ERR__QUEUE_FULL)
        ferry_poll(p, 5);
    FT_ASSERT_ERR(e, FERRY_ERR_NONE, "produce %" PRId64, id);
}

/*
 * Produces keyed records id-from .. id-(to-1) and waits until every one is acknowledged. A record
 * refused because a broker did not know the new topic yet (its metadata lags the controller's
 * by a moment) is produced again.
 */
static void produce_ids(ferry_client_t *p, int64_t from, int64_t to)
{
    for (int64_t id = from; id < to; id++)
        produce_one(p, id);
    int64_t deadline = ft_now_ms() + ft_ms(WAIT_MS);
    for (;;) {
        FT_ASSERT_ERR(ferry_flush(p, ft_ms(WAIT_MS)), FERRY_ERR_NONE, "flush");
        if (delivery_failed == 0)
            return;
        FT_ASSERT(ft_now_ms() < deadline && delivery_failed <= MAX_IDS, "records not delivered; the first: %s",
                  delivery_error);
        size_t n = delivery_failed;
        delivery_failed = 0;
        ft_sleep_ms(200);
        for (size_t i = 0; i < n; i++)
            produce_one(p, failed_ids[i]);
    }
}

/* Pumps until every id in [0, to) was seen. */
static void wait_seen(struct member *ms, size_t n, int64_t to, const char *what)
{
    int64_t deadline = ft_now_ms() + ft_ms(WAIT_MS);
    while (true) {
        int64_t missing = -1;
        for (int64_t id = 0; id < to && missing < 0; id++)
            if (!seen[id])
                missing = id;
        if (missing < 0)
            return;
        FT_ASSERT(ft_now_ms() < deadline, "%s: record id %" PRId64 " never consumed (%zu seen)", what, missing,
                  seen_count);
        pump(ms, n, 20);
    }
}

static void start_cluster_with_topic(const char *topic, int partitions)
{
    FT_ASSERT(ft_cluster_start(&C, 3, &OPTS, E, sizeof E) == 0, "%s", E);
    ferry_client_t *adm = ft_cluster_client(&C, FERRY_ADMIN, NULL, E, sizeof E);
    FT_ASSERT(adm != NULL, "%s", E);
    FT_ASSERT_ERR(ferry_admin_create_topic(adm, topic, partitions, 3, NULL, NULL, 0, ft_ms(WAIT_MS), E, sizeof E),
                  FERRY_ERR_NONE, "create %s: %s", topic, E);
    ferry_client_destroy(adm);
    memset(seen, 0, sizeof seen);
    seen_count = 0;
}

static void member_stop(struct member *m, bool graceful)
{
    if (graceful)
        FT_ASSERT_ERR(ferry_consumer_close(m->c, ft_ms(10000)), FERRY_ERR_NONE, "consumer close %d", m->idx);
    ferry_client_destroy(m->c);
    m->c = NULL;
}

/* ---- the scenarios ---- */

Test(groups, three_members_then_a_fourth_then_a_crash_then_restart_resumes)
{
    start_cluster_with_topic(TOPIC, PARTS);
    ferry_client_t *prod = producer_new();
    struct member ms[4];
    const char *manual[] = {"enable.auto.commit", "false", NULL};
    for (int i = 0; i < 3; i++)
        member_start(&ms[i], i, "billing", TOPIC, manual);
    int owner[PARTS], before[PARTS];
    wait_balanced(ms, 3, owner, "3 members");
    produce_ids(prod, 0, 600);
    wait_seen(ms, 3, 600, "3 members");

    /* A 4th member: only the partitions that move are revoked; the others keep flowing gap-free. */
    memcpy(before, owner, sizeof before);
    for (int i = 0; i < 3; i++)
        phase_reset(&ms[i]);
    member_start(&ms[3], 3, "billing", TOPIC, manual);
    produce_ids(prod, 600, 1200);
    wait_balanced(ms, 4, owner, "4 members");
    wait_seen(ms, 4, 1200, "4 members");
    int moved = 0;
    for (int p = 0; p < PARTS; p++) {
        if (owner[p] == before[p]) {
            FT_ASSERT(!ms[before[p]].revoked[p], "partition %d stayed with member %d but was revoked", p, before[p]);
        } else {
            moved++;
            /* The event reaches the application in its next polls (callbacks run inside
             * ferry_consumer_poll): give the old owner a bounded number of them. */
            for (int k = 0; k < 50 && !ms[before[p]].revoked[p]; k++)
                pump(&ms[before[p]], 1, 20);
            FT_ASSERT(ms[before[p]].revoked[p], "partition %d moved from member %d without a revocation", p,
                      before[p]);
            FT_ASSERT_EQ(owner[p], 3, "partition %d moved to a member other than the new one", p);
        }
    }
    FT_ASSERT_EQ(moved, 3, "a 4th member takes exactly its fair share (12/4), nothing else moves");
    for (int i = 0; i < 4; i++)
        FT_ASSERT_EQ(ms[i].gaps, 0, "member %d skipped offsets of a partition it kept", i);

    /* Crash of member 1: its partitions go to the others after the session timeout. */
    memcpy(before, owner, sizeof before);
    member_stop(&ms[1], false);
    produce_ids(prod, 1200, 1800);
    wait_balanced(ms, 4, owner, "after a crash");
    for (int p = 0; p < PARTS; p++)
        FT_ASSERT(owner[p] != 1, "partition %d still with the crashed member", p);
    wait_seen(ms, 4, 1800, "after a crash");

    /* Commits after processing; everyone leaves; a restart resumes at the commits. */
    for (int i = 0; i < 4; i++)
        if (ms[i].c != NULL)
            FT_ASSERT_ERR(ferry_commit_sync(ms[i].c, NULL, 0, ft_ms(10000)), FERRY_ERR_NONE, "commit member %d", i);
    int64_t committed[PARTS];
    for (int i = 0; i < 4; i++) {
        if (ms[i].c == NULL)
            continue;
        for (int p = 0; p < PARTS; p++) {
            if (owner[p] != i)
                continue;
            ferry_topic_partition_t tp = {TOPIC, p, -1};
            FT_ASSERT_ERR(ferry_committed(ms[i].c, &tp, 1, ft_ms(10000)), FERRY_ERR_NONE, "committed");
            ferry_topic_partition_t pos = {TOPIC, p, -1};
            FT_ASSERT_ERR(ferry_position(ms[i].c, &pos, 1), FERRY_ERR_NONE, "position");
            FT_ASSERT_EQ(tp.offset, pos.offset, "partition %d: committed == position after commit_sync", p);
            committed[p] = tp.offset;
        }
    }
    for (int i = 0; i < 4; i++)
        if (ms[i].c != NULL)
            member_stop(&ms[i], true);
    produce_ids(prod, 1800, 1900);
    struct member again;
    member_start(&again, 9, "billing", TOPIC, manual);
    wait_balanced(&again, 1, owner, "restart");
    wait_seen(&again, 1, 1900, "restart");
    for (int p = 0; p < PARTS; p++)
        FT_ASSERT(again.first_off[p] < 0 || again.first_off[p] == committed[p],
                  "partition %d: restart began at %" PRId64 ", committed %" PRId64, p, again.first_off[p],
                  committed[p]);
    member_stop(&again, true);
    ferry_client_destroy(prod);
}

Test(groups, three_groups_each_receive_every_record)
{
    start_cluster_with_topic(TOPIC, 4);
    ferry_client_t *prod = producer_new();
    produce_ids(prod, 0, 400);
    const char *groups[] = {"email", "inventory", "analytics"};
    for (int g = 0; g < 3; g++) {
        memset(seen, 0, sizeof seen);
        seen_count = 0;
        struct member ms[2];
        member_start(&ms[0], 0, groups[g], TOPIC, NULL);
        member_start(&ms[1], 1, groups[g], TOPIC, NULL);
        wait_seen(ms, 2, 400, groups[g]);
        member_stop(&ms[0], true);
        member_stop(&ms[1], true);
    }
    ferry_client_destroy(prod);
}

/* The coordinator of group (an index into C.b), from FindCoordinator. */
static int coordinator_of(ferry_client_t *c, const char *group)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    ft_pack_str(&pk, "group_id");
    ft_pack_str(&pk, group);
    void *resp = NULL;
    size_t len = 0;
    int64_t deadline = ft_now_ms() + ft_ms(WAIT_MS);
    ferry_err_t e;
    while ((e = ferry_admin_group_request(c, 8, NULL, -1, sb.data, sb.size, &resp, &len, ft_ms(5000), E, sizeof E)) !=
           FERRY_ERR_NONE) {
        FT_ASSERT(ferry_err_is_retriable(e) && ft_now_ms() < deadline, "FindCoordinator: %s", E);
        ft_sleep_ms(200);
    }
    msgpack_sbuffer_destroy(&sb);
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0;
    FT_ASSERT(msgpack_unpack_next(&up, resp, len, &off) == MSGPACK_UNPACK_SUCCESS, "FindCoordinator answer");
    int64_t port = ft_mp_int(&up.data, "port", -1);
    msgpack_unpacked_destroy(&up);
    free(resp);
    for (int i = 0; i < C.n; i++)
        if (C.b[i].port == port)
            return i;
    FT_ASSERT(false, "coordinator port %" PRId64 " is none of the cluster's", port);
    return -1;
}

Test(groups, coordinator_failover_keeps_the_group_and_its_offsets)
{
    start_cluster_with_topic(TOPIC, 4);
    ferry_client_t *prod = producer_new();
    produce_ids(prod, 0, 300);
    struct member m;
    const char *manual[] = {"enable.auto.commit", "false", NULL};
    member_start(&m, 0, "failover", TOPIC, manual);
    wait_seen(&m, 1, 300, "before failover");
    FT_ASSERT_ERR(ferry_commit_sync(m.c, NULL, 0, ft_ms(10000)), FERRY_ERR_NONE, "commit");
    ferry_topic_partition_t tps[4], after[4];
    for (int p = 0; p < 4; p++)
        tps[p] = after[p] = (ferry_topic_partition_t){TOPIC, p, -1};
    FT_ASSERT_ERR(ferry_committed(m.c, tps, 4, ft_ms(10000)), FERRY_ERR_NONE, "committed before");
    int64_t sum = 0;
    for (int p = 0; p < 4; p++)
        sum += tps[p].offset;
    FT_ASSERT_EQ(sum, 300, "every consumed record is committed");

    int k = coordinator_of(m.c, "failover");
    FT_ASSERT_EQ(ft_broker_kill(&C.b[k]), 0, "kill -9 the coordinator (broker %d)", k);
    FT_ASSERT_ERR(ferry_committed(m.c, after, 4, ft_ms(WAIT_MS)), FERRY_ERR_NONE, "committed after failover");
    for (int p = 0; p < 4; p++)
        FT_ASSERT_EQ(after[p].offset, tps[p].offset, "partition %d: committed offset survives failover", p);
    /* The group goes on: new records reach the member, and it commits at the new coordinator. */
    produce_ids(prod, 300, 400);
    wait_seen(&m, 1, 400, "after failover");
    FT_ASSERT_ERR(ferry_commit_sync(m.c, NULL, 0, ft_ms(WAIT_MS)), FERRY_ERR_NONE, "commit after failover");
    FT_ASSERT_ERR(ferry_committed(m.c, after, 4, ft_ms(WAIT_MS)), FERRY_ERR_NONE, "committed");
    sum = 0;
    for (int p = 0; p < 4; p++)
        sum += after[p].offset;
    FT_ASSERT_EQ(sum, 400, "commits after failover");
    member_stop(&m, true);
    ferry_client_destroy(prod);
}

Test(groups, static_member_restart_within_session_keeps_its_partitions)
{
    start_cluster_with_topic(TOPIC, 4);
    struct member a, b;
    const char *stat[] = {"group.instance.id", "pod-a", "session.timeout.ms", "20000", NULL};
    member_start(&a, 0, "static", TOPIC, stat);
    member_start(&b, 1, "static", TOPIC, NULL);
    int64_t deadline = ft_now_ms() + ft_ms(WAIT_MS);
    ferry_topic_partition_t *ta = NULL, *tb = NULL;
    size_t na = 0, nb = 0;
    for (;;) {
        pump(&a, 1, 20);
        pump(&b, 1, 20);
        ferry_topic_partitions_destroy(ta);
        ferry_topic_partitions_destroy(tb);
        FT_ASSERT_ERR(ferry_assignment(a.c, &ta, &na), FERRY_ERR_NONE, "a");
        FT_ASSERT_ERR(ferry_assignment(b.c, &tb, &nb), FERRY_ERR_NONE, "b");
        if (na == 2 && nb == 2)
            break;
        FT_ASSERT(ft_now_ms() < deadline, "not settled: %zu + %zu", na, nb);
    }
    int32_t a_parts[2] = {ta[0].partition, ta[1].partition};
    ferry_topic_partitions_destroy(ta);
    ferry_topic_partitions_destroy(tb);
    ta = tb = NULL;
    phase_reset(&b);
    member_stop(&a, true); /* temporary leave (epoch -2): the partitions stay reserved */
    member_start(&a, 2, "static", TOPIC, stat);
    deadline = ft_now_ms() + ft_ms(WAIT_MS);
    for (;;) {
        pump(&a, 1, 20);
        pump(&b, 1, 20);
        ferry_topic_partitions_destroy(ta);
        FT_ASSERT_ERR(ferry_assignment(a.c, &ta, &na), FERRY_ERR_NONE, "a");
        if (na == 2)
            break;
        FT_ASSERT(ft_now_ms() < deadline, "the restarted static member got %zu partitions", na);
    }
    bool same = (ta[0].partition == a_parts[0] && ta[1].partition == a_parts[1]) ||
                (ta[0].partition == a_parts[1] && ta[1].partition == a_parts[0]);
    ferry_topic_partitions_destroy(ta);
    FT_ASSERT(same, "the static member got other partitions back");
    pump(&b, 1, 500);
    FT_ASSERT_EQ(b.events, 0, "the other member saw a rebalance");
    member_stop(&a, false);
    member_stop(&b, true);
}

Test(groups, offset_reset_on_an_active_group_reaches_the_member)
{
    start_cluster_with_topic(TOPIC, 2);
    ferry_client_t *prod = producer_new();
    produce_ids(prod, 0, 100);
    struct member m;
    const char *manual[] = {"enable.auto.commit", "false", NULL};
    member_start(&m, 0, "resetme", TOPIC, manual);
    wait_seen(&m, 1, 100, "first pass");
    FT_ASSERT_ERR(ferry_commit_sync(m.c, NULL, 0, ft_ms(10000)), FERRY_ERR_NONE, "commit");

    /* ferryctl group seek: a dry run changes nothing; --execute resets partition 0 to 0. */
    char ctl[600], brokers[600];
    snprintf(ctl, sizeof ctl, "%s/ferryctl", ft_build_dir());
    snprintf(brokers, sizeof brokers, "%s", C.bootstrap);
    char *dry[] = {ctl, "--plaintext", "-b", brokers, "--format", "json", "group", "seek", "resetme", "--to",
                   "earliest", "--topic", TOPIC ":0", NULL};
    struct ft_proc_result r;
    FT_ASSERT(ft_run(dry, NULL, NULL, 0, 30000, &r, E, sizeof E) == 0, "%s", E);
    FT_ASSERT_EQ(r.exit_code, 0, "dry run: %s %s", r.out, r.err);
    FT_ASSERT(strstr(r.out, "\"executed\":false") != NULL && strstr(r.out, "\"new\":0") != NULL, "plan: %s", r.out);
    ft_proc_result_free(&r);
    ferry_topic_partition_t tp = {TOPIC, 0, -1};
    FT_ASSERT_ERR(ferry_committed(m.c, &tp, 1, ft_ms(10000)), FERRY_ERR_NONE, "committed");
    FT_ASSERT(tp.offset > 0, "a dry run must not change the offset (%" PRId64 ")", tp.offset);
    int64_t old0 = tp.offset;

    char *exec[] = {ctl, "--plaintext", "-b", brokers, "group", "seek", "resetme", "--to", "earliest",
                    "--topic", TOPIC ":0", "--execute", NULL};
    FT_ASSERT(ft_run(exec, NULL, NULL, 0, 30000, &r, E, sizeof E) == 0, "%s", E);
    FT_ASSERT_EQ(r.exit_code, 0, "execute: %s %s", r.out, r.err);
    ft_proc_result_free(&r);
    /* The member seeks: partition 0 is read again from offset 0. */
    m.last_off[0] = -1;
    int64_t deadline = ft_now_ms() + ft_ms(WAIT_MS);
    bool again = false;
    while (!again) {
        FT_ASSERT(ft_now_ms() < deadline, "the reset never reached the member");
        ferry_message_t *msg = ferry_consumer_poll(m.c, 100);
        if (msg == NULL)
            continue;
        again = ferry_message_partition(msg) == 0 && ferry_message_offset(msg) == 0;
        ferry_message_destroy(msg);
    }
    FT_ASSERT(old0 > 0, "had progress before the reset");

    /* The other group commands on the same group: list, describe, delete refused while active. */
    char *list[] = {ctl, "--plaintext", "-b", brokers, "--format", "json", "group", "list", NULL};
    FT_ASSERT(ft_run(list, NULL, NULL, 0, 30000, &r, E, sizeof E) == 0, "%s", E);
    FT_ASSERT(r.exit_code == 0 && strstr(r.out, "\"group_id\":\"resetme\"") != NULL, "list: %s %s", r.out, r.err);
    ft_proc_result_free(&r);
    char *del[] = {ctl, "--plaintext", "-b", brokers, "group", "delete", "resetme", NULL};
    FT_ASSERT(ft_run(del, NULL, NULL, 0, 30000, &r, E, sizeof E) == 0, "%s", E);
    FT_ASSERT(r.exit_code == 1 && strstr(r.err, "GROUP_NOT_EMPTY") != NULL, "delete active: %d %s", r.exit_code, r.err);
    ft_proc_result_free(&r);
    member_stop(&m, true);

    /* consume --group commits what it printed: describe shows 30 committed, the group empty. */
    char *cons[] = {ctl, "--plaintext", "-b", brokers, "consume", TOPIC, "--group", "cli", "-n", "30", NULL};
    FT_ASSERT(ft_run(cons, NULL, NULL, 0, 60000, &r, E, sizeof E) == 0, "%s", E);
    FT_ASSERT_EQ(r.exit_code, 0, "consume --group: %s", r.err);
    size_t lines = 0;
    for (const char *q = r.out; *q; q++)
        lines += *q == '\n';
    FT_ASSERT_EQ(lines, 30, "consume --group -n 30 printed");
    ft_proc_result_free(&r);
    char *desc[] = {ctl, "--plaintext", "-b", brokers, "--format", "json", "group", "describe", "cli", NULL};
    FT_ASSERT(ft_run(desc, NULL, NULL, 0, 30000, &r, E, sizeof E) == 0, "%s", E);
    FT_ASSERT(r.exit_code == 0 && strstr(r.out, "\"members\":[]") && strstr(r.out, "\"state\":\"empty\""),
              "describe: %s %s", r.out, r.err);
    long long committed_sum = 0;
    for (const char *q = strstr(r.out, "\"committed\":"); q; q = strstr(q + 1, "\"committed\":"))
        committed_sum += strtoll(q + strlen("\"committed\":"), NULL, 10);
    FT_ASSERT_EQ(committed_sum, 30, "describe: committed offsets of the group: %s", r.out);
    ft_proc_result_free(&r);
    FT_ASSERT(ft_run(del, NULL, NULL, 0, 30000, &r, E, sizeof E) == 0, "%s", E);
    FT_ASSERT_EQ(r.exit_code, 0, "delete the empty group: %s", r.err);
    ft_proc_result_free(&r);
    ferry_client_destroy(prod);
}

/* One raw group request through libferry: returns the top-level error; *body_err the first per-item one. */
static ferry_err_t raw_call(ferry_client_t *c, int api, const char *route, msgpack_sbuffer *sb, int64_t *item_err)
{
    void *resp = NULL;
    size_t len = 0;
    ferry_err_t e = ferry_admin_group_request(c, api, route, -1, sb->data, sb->size, &resp, &len, ft_ms(20000), E,
                                              sizeof E);
    msgpack_sbuffer_destroy(sb);
    *item_err = 0;
    if (e != FERRY_ERR_NONE)
        return e;
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0;
    FT_ASSERT(msgpack_unpack_next(&up, resp, len, &off) == MSGPACK_UNPACK_SUCCESS, "answer");
    const msgpack_object *topics = ft_mp_get(&up.data, "topics");
    if (topics && topics->type == MSGPACK_OBJECT_ARRAY && topics->via.array.size > 0) {
        const msgpack_object *parts = ft_mp_get(&topics->via.array.ptr[0], "partitions");
        if (parts && parts->type == MSGPACK_OBJECT_ARRAY && parts->via.array.size > 0)
            *item_err = ft_mp_int(&parts->via.array.ptr[0], "error", 0);
    }
    msgpack_unpacked_destroy(&up);
    free(resp);
    return e;
}

static void body_begin(msgpack_sbuffer *sb, msgpack_packer *pk)
{
    msgpack_sbuffer_init(sb);
    msgpack_packer_init(pk, sb, msgpack_sbuffer_write);
}

/* OffsetCommit of TOPIC/partition at offset by member (member_id NULL = none). */
static void pack_commit(msgpack_packer *pk, const char *group, const char *member, int32_t epoch, int32_t partition,
                        int64_t offset)
{
    msgpack_pack_map(pk, member ? 4 : 2);
    ft_pack_str(pk, "group_id");
    ft_pack_str(pk, group);
    if (member) {
        ft_pack_str(pk, "member_id");
        ft_pack_str(pk, member);
        ft_pack_str(pk, "member_epoch");
        msgpack_pack_int32(pk, epoch);
    }
    ft_pack_str(pk, "topics");
    msgpack_pack_array(pk, 1);
    msgpack_pack_map(pk, 2);
    ft_pack_str(pk, "name");
    ft_pack_str(pk, TOPIC);
    ft_pack_str(pk, "partitions");
    msgpack_pack_array(pk, 1);
    msgpack_pack_map(pk, 2);
    ft_pack_str(pk, "partition");
    msgpack_pack_int32(pk, partition);
    ft_pack_str(pk, "offset");
    msgpack_pack_int64(pk, offset);
}

static size_t owned_count(struct member *m)
{
    ferry_topic_partition_t *tp = NULL;
    size_t n = 0;
    FT_ASSERT_ERR(ferry_assignment(m->c, &tp, &n), FERRY_ERR_NONE, "assignment");
    ferry_topic_partitions_destroy(tp);
    return n;
}

/* Pumps x (and y) until x owns nx partitions (and y ny). */
static void wait_owned(struct member *x, size_t nx, struct member *y, size_t ny)
{
    int64_t deadline = ft_now_ms() + ft_ms(WAIT_MS);
    while (owned_count(x) != nx || (y != NULL && owned_count(y) != ny)) {
        FT_ASSERT(ft_now_ms() < deadline, "member %d never owned %zu partition(s)", x->idx, nx);
        pump(x, 1, 20);
        if (y != NULL)
            pump(y, 1, 20);
    }
}

Test(groups, zombie_fencing_and_bad_input)
{
    start_cluster_with_topic(TOPIC, 2);
    struct member a;
    member_start(&a, 0, "fenced", TOPIC, (const char *[]){"session.timeout.ms", "1500", NULL});
    wait_owned(&a, 2, NULL, 0);
    char member[200];
    int32_t epoch = 0;
    FT_ASSERT_ERR(ferry_group_member(a.c, member, sizeof member, &epoch), FERRY_ERR_NONE, "member");
    FT_ASSERT(member[0] != '\0' && epoch > 0, "joined: '%s' epoch %d", member, (int)epoch);

    /* The member "pauses" (its process dies silently); after the session timeout its commit is refused. */
    member_stop(&a, false);
    ft_sleep_ms(ft_ms(1500) + 2500);
    static struct member idle; /* never subscribes: no callbacks */
    ferry_client_t *adm = member_client(&idle, "fenced", NULL);
    msgpack_sbuffer sb;
    msgpack_packer pk;
    int64_t item = 0;
    body_begin(&sb, &pk);
    pack_commit(&pk, "fenced", member, epoch, 0, 1);
    ferry_err_t e = raw_call(adm, 10, "fenced", &sb, &item);
    FT_ASSERT(e == FERRY_ERR_UNKNOWN_MEMBER_ID || item == FERRY_ERR_UNKNOWN_MEMBER_ID,
              "zombie commit: top %s, item %s (%s)", ferry_err_name(e), ft_err_name((int)item), E);

    /* A partition a live member does not own is refused; so is an epoch two growths old (the
     * coordinator tolerates the previous epoch while a bump is in flight). */
    struct member b, c2;
    member_start(&b, 1, "fenced", TOPIC, NULL);
    wait_owned(&b, 2, NULL, 0);
    int32_t e1 = 0;
    FT_ASSERT_ERR(ferry_group_member(b.c, member, sizeof member, &e1), FERRY_ERR_NONE, "member b");
    for (int cycle = 0; cycle < 2; cycle++) {
        member_start(&c2, 2 + cycle, "fenced", TOPIC, NULL);
        wait_owned(&b, 1, &c2, 1);
        if (cycle == 0) {
            ferry_topic_partition_t *bp = NULL;
            size_t nb = 0;
            FT_ASSERT_ERR(ferry_assignment(b.c, &bp, &nb), FERRY_ERR_NONE, "b");
            int32_t other = bp[0].partition == 0 ? 1 : 0;
            ferry_topic_partitions_destroy(bp);
            ferry_topic_partition_t off = {TOPIC, other, 0};
            FT_ASSERT_ERR(ferry_commit_sync(b.c, &off, 1, ft_ms(10000)), FERRY_ERR_PARTITION_NOT_ASSIGNED,
                          "commit of a partition not assigned");
        }
        member_stop(&c2, true);
        wait_owned(&b, 2, NULL, 0);
    }
    int32_t e3 = 0;
    FT_ASSERT_ERR(ferry_group_member(b.c, member, sizeof member, &e3), FERRY_ERR_NONE, "member b");
    FT_ASSERT(e3 > e1, "b's epoch grew with its assignment (%d -> %d)", (int)e1, (int)e3);
    body_begin(&sb, &pk);
    pack_commit(&pk, "fenced", member, e1, 0, 0);
    e = raw_call(adm, 10, "fenced", &sb, &item);
    FT_ASSERT(e == FERRY_ERR_FENCED_MEMBER_EPOCH || item == FERRY_ERR_FENCED_MEMBER_EPOCH,
              "commit with epoch %d (current %d): %s / %s", (int)e1, (int)e3, ferry_err_name(e),
              ft_err_name((int)item));
    FT_ASSERT_ERR(ferry_commit_sync(b.c, NULL, 0, ft_ms(10000)), FERRY_ERR_NONE, "b's own commit still works");

    /* Bad input: empty and oversized group ids; a member commit to a group nobody knows. */
    const char *t = TOPIC;
    ferry_conf_t *conf = ft_cluster_conf(&C, NULL, E, sizeof E);
    FT_ASSERT(conf != NULL, "%s", E);
    char big[300];
    memset(big, 'g', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    FT_ASSERT_ERR(ferry_conf_set(conf, "group.id", big, NULL, 0), FERRY_ERR__INVALID_CONFIG_VALUE, "oversized group.id");
    ferry_client_t *nog = ferry_client_new(FERRY_CONSUMER, conf, E, sizeof E);
    FT_ASSERT(nog != NULL, "%s", E);
    FT_ASSERT_ERR(ferry_subscribe(nog, &t, 1), FERRY_ERR_INVALID_GROUP_ID, "subscribe without group.id");
    ferry_client_destroy(nog);

    const char *ids[] = {"", big};
    for (int i = 0; i < 2; i++) {
        body_begin(&sb, &pk);
        msgpack_pack_map(&pk, 1);
        ft_pack_str(&pk, "group_id");
        ft_pack_str(&pk, ids[i]);
        e = raw_call(adm, 8, NULL, &sb, &item);
        FT_ASSERT_ERR(e, FERRY_ERR_INVALID_GROUP_ID, "FindCoordinator with a group id of %zu bytes", strlen(ids[i]));
        body_begin(&sb, &pk);
        msgpack_pack_map(&pk, 3);
        ft_pack_str(&pk, "group_id");
        ft_pack_str(&pk, ids[i]);
        ft_pack_str(&pk, "member_epoch");
        msgpack_pack_int32(&pk, 0);
        ft_pack_str(&pk, "subscribed_topics");
        msgpack_pack_array(&pk, 1);
        ft_pack_str(&pk, TOPIC);
        e = raw_call(adm, 9, NULL, &sb, &item);
        FT_ASSERT_ERR(e, FERRY_ERR_INVALID_GROUP_ID, "join with a group id of %zu bytes", strlen(ids[i]));
    }
    body_begin(&sb, &pk);
    pack_commit(&pk, "nobody-knows-me", "0123456789abcdef0123456789abcdef", 1, 0, 5);
    e = raw_call(adm, 10, "nobody-knows-me", &sb, &item);
    FT_ASSERT(e == FERRY_ERR_GROUP_ID_NOT_FOUND || item == FERRY_ERR_GROUP_ID_NOT_FOUND,
              "member commit to an unknown group: %s / %s", ferry_err_name(e), ft_err_name((int)item));

    ferry_client_destroy(adm);
    member_stop(&b, true);
}

Test(groups, auto_commit_commits_a_revoked_partition_before_its_hand_over)
{
    start_cluster_with_topic(TOPIC, 2);
    ferry_client_t *prod = producer_new();
    produce_ids(prod, 0, 200);
    struct member a, b;
    /* Auto-commit only at revocation and close here (the interval is far away). */
    const char *auto_rev[] = {"auto.commit.interval.ms", "600000", NULL};
    member_start(&a, 0, "handover", TOPIC, auto_rev);
    wait_owned(&a, 2, NULL, 0);
    wait_seen(&a, 1, 200, "a alone");
    member_start(&b, 1, "handover", TOPIC, auto_rev);
    wait_owned(&a, 1, &b, 1);
    pump(&b, 1, 500);
    /* a had read everything: the partition it handed over was committed at its end, so b reads nothing of it. */
    for (int p = 0; p < 2; p++)
        FT_ASSERT(b.first_off[p] < 0, "partition %d: b re-read from %" PRId64 " (the revocation commit is missing)", p,
                  b.first_off[p]);
    member_stop(&a, true);
    member_stop(&b, true);
    ferry_client_destroy(prod);
}

Test(groups, processing_deadline_moves_partitions_of_a_stuck_consumer_unless_extended)
{
    start_cluster_with_topic(TOPIC, 2);
    struct member a, b;
    const char *deadline1s[] = {"max.poll.interval.ms", "1500", NULL};
    member_start(&a, 0, "slow", TOPIC, deadline1s);
    member_start(&b, 1, "slow", TOPIC, deadline1s);
    wait_owned(&a, 1, &b, 1);
    /* a works on something long but extends its deadline: it keeps its partition. */
    phase_reset(&b);
    for (int i = 0; i < 8; i++) {
        FT_ASSERT_ERR(ferry_consumer_extend_deadline(a.c), FERRY_ERR_NONE, "extend");
        pump(&b, 1, 400);
    }
    FT_ASSERT_EQ(owned_count(&b), 1, "b took a's partition although a extended its deadline");
    /* a stops polling and extending: libferry leaves the group for it, b gets both. */
    int64_t deadline = ft_now_ms() + ft_ms(WAIT_MS);
    while (owned_count(&b) != 2) {
        FT_ASSERT(ft_now_ms() < deadline, "the stuck member's partition never moved");
        pump(&b, 1, 100);
    }
    /* a polls again: its partition is reported lost, and it rejoins. */
    phase_reset(&a);
    wait_owned(&a, 1, &b, 1);
    bool lost = false;
    for (int p = 0; p < 2; p++)
        lost |= a.revoked[p];
    FT_ASSERT(lost, "a was not told that its partition was lost");
    member_stop(&a, true);
    member_stop(&b, true);
}

Test(groups, a_standalone_broker_coordinates_groups_too)
{
    struct ft_broker_opts o = OPTS;
    FT_ASSERT(ft_broker_start(&B, &o, E, sizeof E) == 0, "%s", E);
    ferry_client_t *adm = ft_client(&B, FERRY_ADMIN, NULL, E, sizeof E);
    FT_ASSERT(adm != NULL, "%s", E);
    FT_ASSERT_ERR(ferry_admin_create_topic(adm, TOPIC, 4, -1, NULL, NULL, 0, ft_ms(WAIT_MS), E, sizeof E),
                  FERRY_ERR_NONE, "create: %s", E);
    ferry_client_destroy(adm);
    memset(seen, 0, sizeof seen);
    seen_count = 0;
    ferry_client_t *prod = producer_new();
    produce_ids(prod, 0, 400);
    struct member ms[2];
    const char *manual[] = {"enable.auto.commit", "false", NULL};
    member_start(&ms[0], 0, "solo", TOPIC, manual);
    member_start(&ms[1], 1, "solo", TOPIC, manual);
    wait_owned(&ms[0], 2, &ms[1], 2);
    wait_seen(ms, 2, 400, "standalone");
    /* A partition that moved while being read is read again by its new owner (no commits yet):
     * commit until both are at the end of what they own. */
    int64_t deadline = ft_now_ms() + ft_ms(WAIT_MS), sum = 0;
    while (sum != 400) {
        FT_ASSERT(ft_now_ms() < deadline, "committed offsets add up to %" PRId64 ", not 400", sum);
        pump(ms, 2, 50);
        for (int i = 0; i < 2; i++)
            FT_ASSERT_ERR(ferry_commit_sync(ms[i].c, NULL, 0, ft_ms(10000)), FERRY_ERR_NONE, "commit %d", i);
        ferry_topic_partition_t tps[4];
        for (int p = 0; p < 4; p++)
            tps[p] = (ferry_topic_partition_t){TOPIC, p, -1};
        FT_ASSERT_ERR(ferry_committed(ms[0].c, tps, 4, ft_ms(10000)), FERRY_ERR_NONE, "committed");
        sum = 0;
        for (int p = 0; p < 4; p++)
            sum += tps[p].offset > 0 ? tps[p].offset : 0;
    }
    member_stop(&ms[0], true);
    member_stop(&ms[1], true);
    ferry_client_destroy(prod);
}

Test(groups, describe_shows_live_members_and_their_assignments)
{
    struct ft_broker_opts o = OPTS;
    FT_ASSERT(ft_broker_start(&B, &o, E, sizeof E) == 0, "%s", E);
    ferry_client_t *adm = ft_client(&B, FERRY_ADMIN, NULL, E, sizeof E);
    FT_ASSERT(adm != NULL, "%s", E);
    FT_ASSERT_ERR(ferry_admin_create_topic(adm, TOPIC, 2, -1, NULL, NULL, 0, ft_ms(WAIT_MS), E, sizeof E),
                  FERRY_ERR_NONE, "create: %s", E);
    ferry_client_destroy(adm);
    struct member m;
    const char *id[] = {"client.id", "describe-me", "group.instance.id", "pod-7", NULL};
    member_start(&m, 0, "shown", TOPIC, id);
    wait_owned(&m, 2, NULL, 0);
    char ctl[600];
    snprintf(ctl, sizeof ctl, "%s/ferryctl", ft_build_dir());
    char *desc[] = {ctl, "--plaintext", "-b", B.addr, "--format", "json", "group", "describe", "shown", NULL};
    struct ft_proc_result r;
    FT_ASSERT(ft_run(desc, NULL, NULL, 0, 30000, &r, E, sizeof E) == 0, "%s", E);
    FT_ASSERT(r.exit_code == 0 && strstr(r.out, "\"client_id\":\"describe-me\"") &&
                  strstr(r.out, "\"instance_id\":\"pod-7\"") && strstr(r.out, "\"host\":\"127.0.0.1\"") &&
                  strstr(r.out, "\"assigned\":[{\"topic\":\"orders\",\"partitions\":["),
              "describe of a live member: exit %d: %s %s", r.exit_code, r.out, r.err);
    ft_proc_result_free(&r);
    member_stop(&m, true);
}

/* Counts libferry log lines naming UNRELEASED_INSTANCE_ID (from the I/O thread, hence atomic). */
static int unreleased_logged;

static void unreleased_log_cb(const ferry_client_t *c, int level, const char *msg, void *opaque)
{
    (void)c;
    (void)level;
    (void)opaque;
    if (strstr(msg, "UNRELEASED_INSTANCE_ID") != NULL)
        __atomic_add_fetch(&unreleased_logged, 1, __ATOMIC_SEQ_CST);
}

static void start_standalone_with_topic(int partitions)
{
    struct ft_broker_opts o = OPTS;
    FT_ASSERT(ft_broker_start(&B, &o, E, sizeof E) == 0, "%s", E);
    ferry_client_t *adm = ft_client(&B, FERRY_ADMIN, NULL, E, sizeof E);
    FT_ASSERT(adm != NULL, "%s", E);
    FT_ASSERT_ERR(ferry_admin_create_topic(adm, TOPIC, partitions, -1, NULL, NULL, 0, ft_ms(WAIT_MS), E, sizeof E),
                  FERRY_ERR_NONE, "create: %s", E);
    ferry_client_destroy(adm);
    memset(seen, 0, sizeof seen);
    seen_count = 0;
}

Test(groups, a_second_live_instance_id_is_refused_until_the_first_leaves)
{
    start_standalone_with_topic(2);
    struct member a, b;
    const char *pod[] = {"group.instance.id", "pod-u", "session.timeout.ms", "20000", NULL};
    member_start(&a, 0, "unreleased", TOPIC, pod);
    wait_owned(&a, 2, NULL, 0);
    char id_a[128];
    int32_t epoch_a = -1;
    FT_ASSERT_ERR(ferry_group_member(a.c, id_a, sizeof id_a, &epoch_a), FERRY_ERR_NONE, "member a");

    /* b claims the same instance id while a is alive: the coordinator refuses it, a keeps everything */
    __atomic_store_n(&unreleased_logged, 0, __ATOMIC_SEQ_CST);
    member_log_cb = unreleased_log_cb;
    member_start(&b, 1, "unreleased", TOPIC, pod);
    member_log_cb = NULL;
    int64_t deadline = ft_now_ms() + ft_ms(WAIT_MS);
    while (__atomic_load_n(&unreleased_logged, __ATOMIC_SEQ_CST) == 0) {
        FT_ASSERT(ft_now_ms() < deadline, "the second pod-u was never refused with UNRELEASED_INSTANCE_ID");
        pump(&a, 1, 20);
        pump(&b, 1, 20);
    }
    char id_b[128];
    int32_t epoch_b = -1;
    FT_ASSERT_ERR(ferry_group_member(b.c, id_b, sizeof id_b, &epoch_b), FERRY_ERR_NONE, "member b");
    FT_ASSERT(id_b[0] == '\0', "the refused member got an id: %s", id_b);
    FT_ASSERT_EQ(owned_count(&b), 0, "the refused member owns nothing");
    FT_ASSERT_EQ(owned_count(&a), 2, "the live pod-u keeps its partitions");

    /* a leaves for a restart (epoch -2): b, retrying, takes over its member id and partitions */
    member_stop(&a, true);
    wait_owned(&b, 2, NULL, 0);
    FT_ASSERT_ERR(ferry_group_member(b.c, id_b, sizeof id_b, &epoch_b), FERRY_ERR_NONE, "member b");
    FT_ASSERT(strcmp(id_a, id_b) == 0, "pod-u's second process continues the member: %s vs %s", id_a, id_b);
    member_stop(&b, true);
}

/*
 * Polls c until `want` records or error events of partition `part` arrived, at most WAIT_MS. Counts
 * records and OFFSET_OUT_OF_RANGE events per partition (other errors fail the test); *first_off
 * (may be NULL) gets the offset of the first record of `part`.
 */
static void poll_until(ferry_client_t *c, int32_t part, bool want_error, int64_t want_records, int64_t records[2],
                       int64_t errors[2], int64_t *first_off)
{
    int64_t deadline = ft_now_ms() + ft_ms(WAIT_MS);
    while (want_error ? errors[part] == 0 : records[part] < want_records) {
        FT_ASSERT(ft_now_ms() < deadline, "partition %d: %" PRId64 " records, %" PRId64 " errors", (int)part,
                  records[part], errors[part]);
        ferry_message_t *m = ferry_consumer_poll(c, 50);
        if (m == NULL)
            continue;
        int32_t p = ferry_message_partition(m);
        FT_ASSERT(p == 0 || p == 1, "partition %d", (int)p);
        if (ferry_message_err(m) != FERRY_ERR_NONE) {
            FT_ASSERT_ERR(ferry_message_err(m), FERRY_ERR_OFFSET_OUT_OF_RANGE, "event of partition %d", (int)p);
            errors[p]++;
        } else {
            if (p == part && records[p] == 0 && first_off != NULL)
                *first_off = ferry_message_offset(m);
            records[p]++;
        }
        ferry_message_destroy(m);
    }
}

Test(groups, auto_offset_reset_error_stops_partitions_without_a_committed_offset)
{
    start_standalone_with_topic(2);
    ferry_client_t *prod = producer_new();
    produce_ids(prod, 0, 60);
    int64_t lo, hi[2];
    for (int p = 0; p < 2; p++)
        FT_ASSERT_ERR(ferry_watermarks(prod, TOPIC, p, &lo, &hi[p], ft_ms(10000)), FERRY_ERR_NONE, "watermarks");
    FT_ASSERT(hi[0] > 5 && hi[1] > 5, "both partitions have records (%" PRId64 ", %" PRId64 ")", hi[0], hi[1]);

    /* nothing committed: each partition reports OFFSET_OUT_OF_RANGE and delivers no record */
    struct member a;
    const char *strict[] = {"auto.offset.reset", "error", "enable.auto.commit", "false", NULL};
    member_start(&a, 0, "strict", TOPIC, strict);
    int64_t records[2] = {0, 0}, errors[2] = {0, 0};
    poll_until(a.c, 0, true, 0, records, errors, NULL);
    poll_until(a.c, 1, true, 0, records, errors, NULL);
    FT_ASSERT(records[0] == 0 && records[1] == 0, "records delivered without a committed offset: %" PRId64
              " + %" PRId64, records[0], records[1]);

    /* a seek restarts partition 0 only; partition 1 stays stopped */
    FT_ASSERT_ERR(ferry_seek(a.c, TOPIC, 0, FERRY_OFFSET_BEGINNING, 0), FERRY_ERR_NONE, "seek");
    int64_t first = -1;
    poll_until(a.c, 0, false, hi[0], records, errors, &first);
    FT_ASSERT_EQ(first, 0, "partition 0 read from the beginning");
    FT_ASSERT_EQ(records[1], 0, "the stopped partition 1 delivered records");

    /* with committed offsets a member starts there, without an error */
    ferry_topic_partition_t offs[2] = {{TOPIC, 0, hi[0]}, {TOPIC, 1, 5}};
    FT_ASSERT_ERR(ferry_commit_sync(a.c, offs, 2, ft_ms(10000)), FERRY_ERR_NONE, "commit");
    member_stop(&a, true);
    member_start(&a, 1, "strict", TOPIC, strict);
    int64_t records2[2] = {0, 0}, errors2[2] = {0, 0};
    first = -1;
    poll_until(a.c, 1, false, hi[1] - 5, records2, errors2, &first);
    FT_ASSERT_EQ(first, 5, "partition 1 resumed at its committed offset");
    FT_ASSERT(errors2[0] == 0 && errors2[1] == 0 && records2[0] == 0,
              "committed partitions: no error event, nothing re-read (%" PRId64 " %" PRId64 " %" PRId64 ")",
              errors2[0], errors2[1], records2[0]);
    member_stop(&a, true);
    ferry_client_destroy(prod);
}
