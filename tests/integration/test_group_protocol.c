/* test_group_protocol.c: the consumer-group apis over the raw protocol on real brokers (3-broker cluster,
 * standalone): bad input, incremental rebalance, static members, zombies, resets, lag, coordinator failover. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferrytest.h"

#define API_FIND_COORDINATOR 8
#define API_GROUP_HEARTBEAT 9
#define API_OFFSET_COMMIT 10
#define API_OFFSET_FETCH 11
#define API_LIST_GROUPS 12
#define API_DESCRIBE_GROUPS 13
#define API_DELETE_GROUPS 14
#define API_RESET_OFFSETS 15

#define TOPIC "gt"
#define WAIT_MS 60000
/* Short sessions so that expiry tests stay quick; heartbeats are sent by the test itself. */
#define GROUP_CONF "group.min.session.timeout.ms = 500\ngroup.heartbeat.interval.ms = 200\n" \
                   "offsets.topic.num.partitions = 6\n"

static struct ft_cluster C;
static struct ft_broker S;
static char E[FT_ERRMSG];
static uint32_t corr = 1;

static void teardown(void)
{
    ft_cluster_destroy(&C);
    ft_broker_destroy(&S);
}

TestSuite(group_protocol, .fini = teardown, .timeout = 300);

/* ---- a tiny raw client ---- */

/* Sends r to broker b and reads the answer into resp (the caller frees it). r is freed. */
static void call(const struct ft_broker *b, struct ft_req *r, struct ft_resp *resp)
{
    struct ft_raw c;
    size_t len;
    FT_ASSERT(ft_raw_connect_broker(&c, b, E, sizeof(E)) == 0, "connect %s: %s", b->addr, E);
    const uint8_t *f = ft_req_frame(r, &len);
    FT_ASSERT(ft_raw_roundtrip(&c, f, len, resp, E, sizeof(E)) == 0, "round trip with %s: %s", b->addr, E);
    ft_raw_close(&c);
    ft_req_free(r);
}

static void begin(struct ft_req *r, uint32_t api, uint32_t nfields)
{
    ft_req_begin(r, api, 0, corr++);
    msgpack_pack_map(&r->pk, nfields);
}

static void kv_str(struct ft_req *r, const char *k, const char *v)
{
    ft_pack_str(&r->pk, k);
    if (v == NULL)
        msgpack_pack_nil(&r->pk);
    else
        ft_pack_str(&r->pk, v);
}

static void kv_int(struct ft_req *r, const char *k, int64_t v)
{
    ft_pack_str(&r->pk, k);
    msgpack_pack_int64(&r->pk, v);
}

static void find_coordinator(const struct ft_broker *b, const char *group, struct ft_resp *resp)
{
    struct ft_req r;
    begin(&r, API_FIND_COORDINATOR, 1);
    kv_str(&r, "group_id", group);
    call(b, &r, resp);
}

/* Packs "owned"/"assignment"-style [{"topic": TOPIC, "partitions": [bits of mask]}]. */
static void pack_mask(struct ft_req *r, uint32_t mask)
{
    uint32_t n = (uint32_t)__builtin_popcount(mask);
    msgpack_pack_array(&r->pk, 1);
    msgpack_pack_map(&r->pk, 2);
    kv_str(r, "topic", TOPIC);
    ft_pack_str(&r->pk, "partitions");
    msgpack_pack_array(&r->pk, n);
    for (int i = 0; i < 32; i++)
        if (mask & (1u << i))
            msgpack_pack_int(&r->pk, i);
}

/* GroupHeartbeat. member NULL and epoch 0 = join; owned_mask < 0 = no "owned" field. */
static void heartbeat(const struct ft_broker *b, const char *group, const char *member, const char *instance,
                      int64_t epoch, int64_t owned_mask, int64_t session_ms, struct ft_resp *resp)
{
    struct ft_req r;
    uint32_t n = 3 + (member != NULL) + (instance != NULL) + (owned_mask >= 0) + (session_ms > 0) + (epoch == 0);
    begin(&r, API_GROUP_HEARTBEAT, n);
    kv_str(&r, "group_id", group);
    kv_int(&r, "member_epoch", epoch);
    kv_int(&r, "rebalance_timeout_ms", 60000);
    if (member != NULL)
        kv_str(&r, "member_id", member);
    if (instance != NULL)
        kv_str(&r, "instance_id", instance);
    if (owned_mask >= 0) {
        ft_pack_str(&r.pk, "owned");
        pack_mask(&r, (uint32_t)owned_mask);
    }
    if (session_ms > 0)
        kv_int(&r, "session_timeout_ms", session_ms);
    if (epoch == 0) {
        ft_pack_str(&r.pk, "subscribed_topics");
        msgpack_pack_array(&r.pk, 1);
        ft_pack_str(&r.pk, TOPIC);
    }
    call(b, &r, resp);
}

/* The assignment of a heartbeat answer as a bit mask of TOPIC's partitions; -1 when absent. */
static int64_t assignment_mask(const struct ft_resp *resp)
{
    const msgpack_object *a = ft_mp_get(resp->body, "assignment");
    if (a == NULL || a->type != MSGPACK_OBJECT_ARRAY)
        return -1;
    int64_t mask = 0;
    for (uint32_t i = 0; i < a->via.array.size; i++) {
        const msgpack_object *ps = ft_mp_get(&a->via.array.ptr[i], "partitions");
        FT_ASSERT(ps != NULL && ps->type == MSGPACK_OBJECT_ARRAY, "assignment item without partitions");
        for (uint32_t k = 0; k < ps->via.array.size; k++)
            mask |= (int64_t)1 << ps->via.array.ptr[k].via.u64;
    }
    return mask;
}

static void str_field(const msgpack_object *map, const char *key, char *out, size_t out_len)
{
    const msgpack_object *o = ft_mp_get(map, key);
    FT_ASSERT(o != NULL && o->type == MSGPACK_OBJECT_STR && o->via.str.size < out_len, "field %s", key);
    memcpy(out, o->via.str.ptr, o->via.str.size);
    out[o->via.str.size] = '\0';
}

/* OffsetCommit of one partition; returns the partition's error (the top-level one when set). */
static int commit(const struct ft_broker *b, const char *group, const char *member, int64_t epoch, int32_t partition,
                  int64_t offset, int rewind, const char *metadata)
{
    struct ft_req r;
    struct ft_resp resp;
    begin(&r, API_OFFSET_COMMIT, 2 + (member != NULL ? 2 : 0));
    kv_str(&r, "group_id", group);
    if (member != NULL) {
        kv_str(&r, "member_id", member);
        kv_int(&r, "member_epoch", epoch);
    }
    ft_pack_str(&r.pk, "topics");
    msgpack_pack_array(&r.pk, 1);
    msgpack_pack_map(&r.pk, 2);
    kv_str(&r, "name", TOPIC);
    ft_pack_str(&r.pk, "partitions");
    msgpack_pack_array(&r.pk, 1);
    msgpack_pack_map(&r.pk, 2 + (rewind ? 1 : 0) + (metadata != NULL));
    kv_int(&r, "partition", partition);
    kv_int(&r, "offset", offset);
    if (rewind) {
        ft_pack_str(&r.pk, "rewind");
        msgpack_pack_true(&r.pk);
    }
    if (metadata != NULL)
        kv_str(&r, "metadata", metadata);
    call(b, &r, &resp);
    int err = (int)resp.error;
    if (err == 0) {
        const msgpack_object *p = ft_resp_partition(&resp, 0, 0);
        FT_ASSERT(p != NULL, "commit answer without the partition");
        err = (int)ft_mp_int(p, "error", -1);
    }
    ft_resp_free(&resp);
    return err;
}

/* OffsetFetch of one partition: 0 with *offset (-1 = none), or the top-level error. */
static int fetch_offset(const struct ft_broker *b, const char *group, int32_t partition, int64_t *offset,
                        char *metadata, size_t metadata_len)
{
    struct ft_req r;
    struct ft_resp resp;
    begin(&r, API_OFFSET_FETCH, 2);
    kv_str(&r, "group_id", group);
    ft_pack_str(&r.pk, "topics");
    msgpack_pack_array(&r.pk, 1);
    msgpack_pack_map(&r.pk, 2);
    kv_str(&r, "name", TOPIC);
    ft_pack_str(&r.pk, "partitions");
    msgpack_pack_array(&r.pk, 1);
    msgpack_pack_int(&r.pk, partition);
    call(b, &r, &resp);
    int err = (int)resp.error;
    if (err == 0) {
        const msgpack_object *p = ft_resp_partition(&resp, 0, 0);
        FT_ASSERT(p != NULL, "offset fetch answer without the partition");
        *offset = ft_mp_int(p, "offset", -2);
        if (metadata != NULL) {
            const msgpack_object *md = ft_mp_get(p, "metadata");
            metadata[0] = '\0';
            if (md != NULL && md->type == MSGPACK_OBJECT_STR && md->via.str.size < metadata_len) {
                memcpy(metadata, md->via.str.ptr, md->via.str.size);
                metadata[md->via.str.size] = '\0';
            }
        }
    }
    ft_resp_free(&resp);
    return err;
}

static void describe(const struct ft_broker *b, const char *group, struct ft_resp *resp)
{
    struct ft_req r;
    begin(&r, API_DESCRIBE_GROUPS, 1);
    ft_pack_str(&r.pk, "groups");
    msgpack_pack_array(&r.pk, 1);
    ft_pack_str(&r.pk, group);
    call(b, &r, resp);
    FT_ASSERT_ERR(resp->error, 0, "describe %s: %s", group, resp->error_message);
}

static const msgpack_object *described_group(const struct ft_resp *resp)
{
    const msgpack_object *gs = ft_mp_get(resp->body, "groups");
    FT_ASSERT(gs != NULL && gs->type == MSGPACK_OBJECT_ARRAY && gs->via.array.size == 1, "describe: one group");
    return &gs->via.array.ptr[0];
}

static int state_is(const msgpack_object *g, const char *state)
{
    const msgpack_object *s = ft_mp_get(g, "state");
    return s != NULL && s->type == MSGPACK_OBJECT_STR && s->via.str.size == strlen(state) &&
           memcmp(s->via.str.ptr, state, s->via.str.size) == 0;
}

/*
 * The index (in c->b) of the broker that coordinates group and answers for it now: asks the live
 * brokers with FindCoordinator, then checks the named one serves (OffsetFetch answers without
 * NOT_COORDINATOR / COORDINATOR_NOT_AVAILABLE). Retries until WAIT_MS.
 */
static int coordinator_of(struct ft_cluster *c, const char *group)
{
    int64_t deadline = ft_now_ms() + ft_ms(WAIT_MS);
    char last[FT_ERRMSG] = "no answer";
    while (ft_now_ms() < deadline) {
        for (int i = 0; i < c->n; i++) {
            if (!ft_broker_alive(&c->b[i]))
                continue;
            struct ft_resp resp;
            find_coordinator(&c->b[i], group, &resp);
            int64_t id = resp.error == 0 ? ft_mp_int(resp.body, "coordinator_id", -1) : -1;
            if (resp.error != 0)
                snprintf(last, sizeof(last), "FindCoordinator: %s %.200s", ft_err_name((int)resp.error),
                         resp.error_message);
            ft_resp_free(&resp);
            if (id < 0 || id >= c->n || !ft_broker_alive(&c->b[id]))
                continue;
            int64_t off;
            int err = fetch_offset(&c->b[id], group, 0, &off, NULL, 0);
            if (err == 0)
                return (int)id;
            snprintf(last, sizeof(last), "broker %d: OffsetFetch %s", (int)id, ft_err_name(err));
        }
        ft_sleep_ms(100);
    }
    FT_ASSERT(0, "no coordinator for group %s: %s", group, last);
    return -1;
}

static void create_topic(struct ft_cluster *c, int32_t partitions)
{
    ferry_client_t *adm = ft_cluster_client(c, FERRY_ADMIN, NULL, E, sizeof(E));
    FT_ASSERT(adm != NULL, "%s", E);
    FT_ASSERT_ERR(ferry_admin_create_topic(adm, TOPIC, partitions, 3, NULL, NULL, 0, ft_ms(WAIT_MS), E, sizeof(E)),
                  FERRY_ERR_NONE, "create: %s", E);
    ferry_client_destroy(adm);
}

/* ---- the offsets topic is internal ---- */

struct delivery {
    int done;
    ferry_err_t err;
    char msg[FT_ERRMSG];
};

static void on_delivery(ferry_client_t *c, const ferry_delivery_t *d, void *opaque)
{
    (void)c;
    struct delivery *r = opaque;
    r->err = d->err;
    snprintf(r->msg, sizeof(r->msg), "%s", d->error_message ? d->error_message : "");
    r->done = 1;
}

/*
 * Clients may not create, delete or produce to __consumer_offsets (conf: a client conf for the
 * broker(s), consumed). Its log end does not move, and the coordinator keeps committing through it.
 */
static void check_offsets_topic_is_internal(ferry_conf_t *admin_conf, ferry_conf_t *prod_conf)
{
    const char *OT = "__consumer_offsets";
    ferry_client_t *adm = ferry_client_new(FERRY_ADMIN, admin_conf, E, sizeof(E));
    FT_ASSERT(adm != NULL, "%s", E);
    int64_t lo, hi0 = -1, hi1 = -1;
    FT_ASSERT_ERR(ferry_watermarks(adm, OT, 0, &lo, &hi0, ft_ms(10000)), FERRY_ERR_NONE, "watermarks of %s/0", OT);
    FT_ASSERT_ERR(ferry_admin_create_topic(adm, OT, 1, -1, NULL, NULL, 0, ft_ms(10000), E, sizeof(E)),
                  FERRY_ERR_INVALID_TOPIC, "create %s", OT);
    FT_ASSERT(strstr(E, "internal") != NULL, "create: says why: %s", E);
    FT_ASSERT_ERR(ferry_admin_delete_topic(adm, OT, ft_ms(10000), E, sizeof(E)), FERRY_ERR_INVALID_REQUEST,
                  "delete %s", OT);
    FT_ASSERT(strstr(E, "internal") != NULL, "delete: says why: %s", E);

    struct delivery r = {0, FERRY_ERR_NONE, ""};
    ferry_conf_set_delivery_cb(prod_conf, on_delivery);
    ferry_conf_set_opaque(prod_conf, &r);
    ferry_client_t *prod = ferry_client_new(FERRY_PRODUCER, prod_conf, E, sizeof(E));
    FT_ASSERT(prod != NULL, "%s", E);
    ferry_record_t rec = {.topic = OT, .partition = 0, .value = "forged", .value_len = 6};
    FT_ASSERT_ERR(ferry_produce(prod, &rec, 0), FERRY_ERR_NONE, "produce queued");
    ferry_flush(prod, ft_ms(30000));
    FT_ASSERT(r.done, "no delivery report for the produce to %s", OT);
    FT_ASSERT_ERR(r.err, FERRY_ERR_INVALID_REQUEST, "produce to %s: %s", OT, r.msg);
    FT_ASSERT(strstr(r.msg, "internal") != NULL, "produce: says why: %s", r.msg);
    ferry_client_destroy(prod);
    FT_ASSERT_ERR(ferry_watermarks(adm, OT, 0, &lo, &hi1, ft_ms(10000)), FERRY_ERR_NONE, "watermarks of %s/0", OT);
    FT_ASSERT_EQ(hi1, hi0, "nothing was appended to %s/0", OT);
    ferry_client_destroy(adm);
}

/* ---- tests ---- */

Test(group_protocol, bad_input_each_gets_its_error)
{
    struct ft_broker_opts o = {.security = FT_PLAINTEXT, .extra = GROUP_CONF};
    FT_ASSERT(ft_cluster_start(&C, 3, &o, E, sizeof(E)) == 0, "%s", E);
    create_topic(&C, 4);
    char big[300];
    memset(big, 'g', 256);
    big[256] = '\0';
    struct ft_resp resp;

    find_coordinator(&C.b[0], "", &resp);
    FT_ASSERT_ERR(resp.error, FERRY_ERR_INVALID_GROUP_ID, "FindCoordinator with an empty group id");
    ft_resp_free(&resp);
    find_coordinator(&C.b[1], big, &resp);
    FT_ASSERT_ERR(resp.error, FERRY_ERR_INVALID_GROUP_ID, "FindCoordinator with a 256-byte group id");
    ft_resp_free(&resp);

    int k = coordinator_of(&C, "g-bad");
    heartbeat(&C.b[k], "", NULL, NULL, 0, -1, 0, &resp);
    FT_ASSERT_ERR(resp.error, FERRY_ERR_INVALID_GROUP_ID, "join with an empty group id");
    ft_resp_free(&resp);
    heartbeat(&C.b[k], big, NULL, NULL, 0, -1, 0, &resp);
    FT_ASSERT_ERR(resp.error, FERRY_ERR_INVALID_GROUP_ID, "join with a 256-byte group id");
    ft_resp_free(&resp);

    check_offsets_topic_is_internal(ft_cluster_conf(&C, NULL, E, sizeof(E)), ft_cluster_conf(&C, NULL, E, sizeof(E)));

    /* a member commit to a group the coordinator does not know */
    FT_ASSERT_ERR(commit(&C.b[k], "g-bad", "nobody", 1, 0, 5, 0, NULL), FERRY_ERR_GROUP_ID_NOT_FOUND, "unknown group");

    /* a broker that is not the coordinator says so */
    int other = (k + 1) % C.n;
    heartbeat(&C.b[other], "g-bad", NULL, NULL, 0, -1, 0, &resp);
    FT_ASSERT_ERR(resp.error, FERRY_ERR_NOT_COORDINATOR, "join at broker %d (coordinator %d)", other, k);
    FT_ASSERT(strstr(resp.error_message, "coordinator_id=") != NULL, "%s", resp.error_message);
    ft_resp_free(&resp);

    /* join, then commit a partition not assigned to the member (the other member holds it) */
    char a[64], bm[64];
    heartbeat(&C.b[k], "g-bad", NULL, NULL, 0, -1, 10000, &resp);
    FT_ASSERT_ERR(resp.error, 0, "join A: %s", resp.error_message);
    str_field(resp.body, "member_id", a, sizeof(a));
    int64_t ea = ft_mp_int(resp.body, "member_epoch", -1);
    FT_ASSERT_EQ(assignment_mask(&resp), 0xF, "a lone member gets every partition");
    ft_resp_free(&resp);
    heartbeat(&C.b[k], "g-bad", NULL, NULL, 0, -1, 10000, &resp);
    FT_ASSERT_ERR(resp.error, 0, "join B: %s", resp.error_message);
    str_field(resp.body, "member_id", bm, sizeof(bm));
    int64_t eb = ft_mp_int(resp.body, "member_epoch", -1);
    FT_ASSERT_EQ(assignment_mask(&resp), 0, "B gets nothing while A still owns everything");
    ft_resp_free(&resp);
    FT_ASSERT_ERR(commit(&C.b[k], "g-bad", bm, eb, 0, 5, 0, NULL), FERRY_ERR_PARTITION_NOT_ASSIGNED, "B commits t/0");
    FT_ASSERT_ERR(commit(&C.b[k], "g-bad", a, ea, 9, 5, 0, NULL), FERRY_ERR_UNKNOWN_TOPIC_OR_PARTITION,
                  "no partition 9");
    FT_ASSERT_ERR(commit(&C.b[k], "g-bad", "ghost", 1, 0, 5, 0, NULL), FERRY_ERR_UNKNOWN_MEMBER_ID, "unknown member");
    FT_ASSERT_ERR(commit(&C.b[k], "g-bad", NULL, 0, 0, 5, 0, NULL), FERRY_ERR_UNKNOWN_MEMBER_ID,
                  "a commit without member id while the group has members");
    FT_ASSERT_ERR(commit(&C.b[k], "g-bad", a, ea - 1, 0, 5, 0, NULL), FERRY_ERR_FENCED_MEMBER_EPOCH, "old epoch");
    FT_ASSERT_ERR(commit(&C.b[k], "g-bad", a, ea, 0, 5, 0, NULL), 0, "A commits t/0");
    FT_ASSERT_ERR(commit(&C.b[k], "g-bad", a, ea, 0, 4, 0, NULL), FERRY_ERR_OFFSET_BEHIND_COMMITTED, "backwards");
    FT_ASSERT_ERR(commit(&C.b[k], "g-bad", a, ea, 0, 4, 1, NULL), 0, "backwards with rewind");

    heartbeat(&C.b[k], "g-bad", a, NULL, 77, -1, 0, &resp);
    FT_ASSERT_ERR(resp.error, FERRY_ERR_FENCED_MEMBER_EPOCH, "heartbeat with a wrong epoch");
    ft_resp_free(&resp);

    struct ft_req r;
    begin(&r, API_DELETE_GROUPS, 1);
    ft_pack_str(&r.pk, "groups");
    msgpack_pack_array(&r.pk, 2);
    ft_pack_str(&r.pk, "g-bad");
    ft_pack_str(&r.pk, "g-never");
    call(&C.b[k], &r, &resp);
    FT_ASSERT_ERR(resp.error, 0, "delete groups: %s", resp.error_message);
    const msgpack_object *gs = ft_mp_get(resp.body, "groups");
    FT_ASSERT(gs != NULL && gs->via.array.size == 2, "two answers");
    FT_ASSERT_ERR(ft_mp_int(&gs->via.array.ptr[0], "error", -1), FERRY_ERR_GROUP_NOT_EMPTY, "g-bad has members");
    int64_t e2 = ft_mp_int(&gs->via.array.ptr[1], "error", -1);
    /* g-never hashes to some offsets partition: unknown there, led elsewhere, or (fresh cluster) still loading */
    FT_ASSERT(e2 == FERRY_ERR_GROUP_ID_NOT_FOUND || e2 == FERRY_ERR_NOT_COORDINATOR ||
                  e2 == FERRY_ERR_COORDINATOR_NOT_AVAILABLE,
              "g-never: %s", ft_err_name((int)e2));
    ft_resp_free(&resp);
}

Test(group_protocol, incremental_rebalance_static_members_zombies_resets_and_lag)
{
    struct ft_broker_opts o = {.security = FT_PLAINTEXT, .extra = GROUP_CONF};
    FT_ASSERT(ft_cluster_start(&C, 3, &o, E, sizeof(E)) == 0, "%s", E);
    create_topic(&C, 4);
    struct ft_resp resp;
    const char *G = "g-main";
    int k = coordinator_of(&C, G);
    const struct ft_broker *cb = &C.b[k];

    /* A alone owns all four partitions */
    char a[64], bm[64];
    heartbeat(cb, G, NULL, NULL, 0, -1, 20000, &resp);
    FT_ASSERT_ERR(resp.error, 0, "join A: %s", resp.error_message);
    str_field(resp.body, "member_id", a, sizeof(a));
    int64_t ea = ft_mp_int(resp.body, "member_epoch", -1);
    FT_ASSERT_EQ(assignment_mask(&resp), 0xF, "A owns all");
    ft_resp_free(&resp);

    /* B joins: it gets nothing until A gives up half */
    heartbeat(cb, G, NULL, NULL, 0, -1, 20000, &resp);
    FT_ASSERT_ERR(resp.error, 0, "join B: %s", resp.error_message);
    str_field(resp.body, "member_id", bm, sizeof(bm));
    int64_t eb = ft_mp_int(resp.body, "member_epoch", -1);
    FT_ASSERT_EQ(assignment_mask(&resp), 0, "B waits for the revocation");
    ft_resp_free(&resp);

    heartbeat(cb, G, a, NULL, ea, 0xF, 0, &resp);
    FT_ASSERT_ERR(resp.error, 0, "A heartbeat: %s", resp.error_message);
    int64_t keep = assignment_mask(&resp);
    FT_ASSERT(keep > 0 && __builtin_popcountll((unsigned long long)keep) == 2 && (keep & ~0xF) == 0,
              "A keeps two partitions, got mask %" PRId64, keep);
    FT_ASSERT_EQ(ft_mp_int(resp.body, "member_epoch", -1), ea, "a shrinking assignment keeps the epoch");
    ft_resp_free(&resp);

    describe(cb, G, &resp);
    FT_ASSERT(state_is(described_group(&resp), "assigning"), "revocation pending: assigning");
    ft_resp_free(&resp);

    /* B still gets nothing while A has not acknowledged */
    heartbeat(cb, G, bm, NULL, eb, 0, 0, &resp);
    FT_ASSERT_ERR(resp.error, 0, "B heartbeat: %s", resp.error_message);
    FT_ASSERT(assignment_mask(&resp) <= 0, "B must not get partitions A still owns");
    ft_resp_free(&resp);

    /* A may still commit a partition it is giving up, until it acknowledges */
    int32_t gone = __builtin_ctzll((unsigned long long)(0xF & ~keep));
    FT_ASSERT_ERR(commit(cb, G, a, ea, gone, 3, 0, NULL), 0, "A commits partition %d before releasing it", gone);

    /* A acknowledges (owns only what it kept); then B gets the other two, with a new epoch */
    heartbeat(cb, G, a, NULL, ea, keep, 0, &resp);
    FT_ASSERT_ERR(resp.error, 0, "A ack: %s", resp.error_message);
    ft_resp_free(&resp);
    FT_ASSERT_ERR(commit(cb, G, a, ea, gone, 4, 0, NULL), FERRY_ERR_PARTITION_NOT_ASSIGNED,
                  "A commits partition %d after releasing it", gone);
    heartbeat(cb, G, bm, NULL, eb, 0, 0, &resp);
    FT_ASSERT_ERR(resp.error, 0, "B heartbeat: %s", resp.error_message);
    FT_ASSERT_EQ(assignment_mask(&resp), 0xF & ~keep, "B gets what A released");
    int64_t eb2 = ft_mp_int(resp.body, "member_epoch", -1);
    FT_ASSERT(eb2 > eb, "B's epoch grows with its assignment (%" PRId64 " -> %" PRId64 ")", eb, eb2);
    ft_resp_free(&resp);
    /* B's old epoch is tolerated once (its answer may be lost), an older one is fenced */
    FT_ASSERT_ERR(commit(cb, G, bm, eb2 - 100, __builtin_ctzll((unsigned long long)(0xF & ~keep)), 1, 0, NULL),
                  FERRY_ERR_FENCED_MEMBER_EPOCH, "B with an ancient epoch");

    /* produce 10 records to partition p of A; A commits 4; DescribeGroups: stable, lag 6 */
    int32_t pa = __builtin_ctzll((unsigned long long)keep);
    ferry_client_t *prod = ft_cluster_client(&C, FERRY_PRODUCER, NULL, E, sizeof(E));
    FT_ASSERT(prod != NULL, "%s", E);
    for (int i = 0; i < 10; i++) {
        ferry_record_t rec = {.topic = TOPIC, .partition = pa, .value = "v", .value_len = 1};
        FT_ASSERT_ERR(ferry_produce(prod, &rec, 0), FERRY_ERR_NONE, "produce");
    }
    FT_ASSERT_ERR(ferry_flush(prod, ft_ms(WAIT_MS)), FERRY_ERR_NONE, "flush");
    ferry_client_destroy(prod);
    FT_ASSERT_ERR(commit(cb, G, a, ea, pa, 4, 0, "m-a"), 0, "A commits");

    int64_t deadline = ft_now_ms() + ft_ms(WAIT_MS), lag = -2, log_end = -2;
    while (ft_now_ms() < deadline) {
        describe(cb, G, &resp);
        const msgpack_object *g = described_group(&resp);
        FT_ASSERT(state_is(g, "stable"), "every member reconciled: stable");
        const msgpack_object *ms = ft_mp_get(g, "members");
        FT_ASSERT(ms != NULL && ms->via.array.size == 2, "two members");
        const msgpack_object *offs = ft_mp_get(g, "offsets");
        FT_ASSERT(offs != NULL && offs->via.array.size == 4, "an offsets row per assigned partition");
        for (uint32_t i = 0; i < offs->via.array.size; i++) {
            const msgpack_object *row = &offs->via.array.ptr[i];
            if (ft_mp_int(row, "partition", -1) != pa)
                continue;
            FT_ASSERT_EQ(ft_mp_int(row, "committed", -1), 4, "committed of partition %d", pa);
            lag = ft_mp_int(row, "lag", -2);
            log_end = ft_mp_int(row, "log_end", -2);
        }
        ft_resp_free(&resp);
        if (log_end == 10)
            break;
        ft_sleep_ms(100);
    }
    FT_ASSERT_EQ(log_end, 10, "log end of partition %d", pa);
    FT_ASSERT_EQ(lag, 6, "lag = log end - committed");

    /* ResetOffsets on the active group: the owner is told in its next heartbeat */
    struct ft_req r;
    begin(&r, API_RESET_OFFSETS, 2);
    kv_str(&r, "group_id", G);
    ft_pack_str(&r.pk, "offsets");
    msgpack_pack_array(&r.pk, 1);
    msgpack_pack_map(&r.pk, 3);
    kv_str(&r, "topic", TOPIC);
    kv_int(&r, "partition", pa);
    kv_int(&r, "offset", 1);
    call(cb, &r, &resp);
    FT_ASSERT_ERR(resp.error, 0, "reset: %s", resp.error_message);
    FT_ASSERT_ERR(ft_mp_int(ft_resp_partition(&resp, 0, 0), "error", -1), 0, "reset of partition %d", pa);
    ft_resp_free(&resp);
    heartbeat(cb, G, a, NULL, ea, keep, 0, &resp);
    FT_ASSERT_ERR(resp.error, 0, "A heartbeat: %s", resp.error_message);
    const msgpack_object *resets = ft_mp_get(resp.body, "resets");
    FT_ASSERT(resets != NULL && resets->type == MSGPACK_OBJECT_ARRAY && resets->via.array.size == 1, "one reset");
    FT_ASSERT_EQ(ft_mp_int(&resets->via.array.ptr[0], "partition", -1), pa, "reset partition");
    FT_ASSERT_EQ(ft_mp_int(&resets->via.array.ptr[0], "offset", -1), 1, "reset offset");
    ft_resp_free(&resp);
    int64_t off = -2;
    char md[32];
    FT_ASSERT_ERR(fetch_offset(cb, G, pa, &off, md, sizeof(md)), 0, "offset fetch");
    FT_ASSERT_EQ(off, 1, "the reset offset is committed");

    /* B leaves: A gets everything back once it heartbeats */
    heartbeat(cb, G, bm, NULL, -1, -1, 0, &resp);
    FT_ASSERT_ERR(resp.error, 0, "B leaves: %s", resp.error_message);
    FT_ASSERT_EQ(ft_mp_int(resp.body, "member_epoch", 0), -1, "left");
    ft_resp_free(&resp);
    heartbeat(cb, G, a, NULL, ea, keep, 0, &resp);
    FT_ASSERT_ERR(resp.error, 0, "A heartbeat: %s", resp.error_message);
    FT_ASSERT_EQ(assignment_mask(&resp), 0xF, "A owns all again");
    ft_resp_free(&resp);
    FT_ASSERT_ERR(commit(cb, G, bm, eb2, 0, 9, 0, NULL), FERRY_ERR_UNKNOWN_MEMBER_ID, "B is gone");

    /* Static membership: a temporary leave keeps the assignment; the same instance id takes it over */
    const char *GS = "g-static";
    int ks = coordinator_of(&C, GS);
    char p1[64], p2[64];
    heartbeat(&C.b[ks], GS, NULL, "pod-1", 0, -1, 20000, &resp);
    FT_ASSERT_ERR(resp.error, 0, "join pod-1: %s", resp.error_message);
    str_field(resp.body, "member_id", p1, sizeof(p1));
    int64_t ep1 = ft_mp_int(resp.body, "member_epoch", -1);
    FT_ASSERT_EQ(assignment_mask(&resp), 0xF, "pod-1 owns all");
    ft_resp_free(&resp);
    heartbeat(&C.b[ks], GS, NULL, "pod-1", 0, -1, 20000, &resp);
    FT_ASSERT_ERR(resp.error, FERRY_ERR_UNRELEASED_INSTANCE_ID, "a second live pod-1");
    ft_resp_free(&resp);
    describe(&C.b[ks], GS, &resp);
    int64_t gepoch = ft_mp_int(described_group(&resp), "group_epoch", -1);
    ft_resp_free(&resp);
    heartbeat(&C.b[ks], GS, p1, "pod-1", -2, -1, 0, &resp);
    FT_ASSERT_ERR(resp.error, 0, "pod-1 leaves for a restart: %s", resp.error_message);
    ft_resp_free(&resp);
    heartbeat(&C.b[ks], GS, NULL, "pod-1", 0, -1, 20000, &resp);
    FT_ASSERT_ERR(resp.error, 0, "pod-1 is back: %s", resp.error_message);
    str_field(resp.body, "member_id", p2, sizeof(p2));
    FT_ASSERT(strcmp(p1, p2) == 0, "same member id (%s, %s)", p1, p2);
    FT_ASSERT_EQ(ft_mp_int(resp.body, "member_epoch", -1), ep1, "same epoch");
    FT_ASSERT_EQ(assignment_mask(&resp), 0xF, "same assignment");
    ft_resp_free(&resp);
    describe(&C.b[ks], GS, &resp);
    FT_ASSERT_EQ(ft_mp_int(described_group(&resp), "group_epoch", -1), gepoch, "no rebalance for a static return");
    ft_resp_free(&resp);

    /* Zombie: a member silent beyond its session is removed; when it wakes, its commit is refused */
    const char *GZ = "g-zombie";
    int kz = coordinator_of(&C, GZ);
    char z[64];
    heartbeat(&C.b[kz], GZ, NULL, NULL, 0, -1, 600, &resp);
    FT_ASSERT_ERR(resp.error, 0, "join Z: %s", resp.error_message);
    str_field(resp.body, "member_id", z, sizeof(z));
    int64_t ez = ft_mp_int(resp.body, "member_epoch", -1);
    ft_resp_free(&resp);
    deadline = ft_now_ms() + ft_ms(WAIT_MS);
    int64_t members = -1;
    while (ft_now_ms() < deadline) {
        describe(&C.b[kz], GZ, &resp);
        const msgpack_object *ms = ft_mp_get(described_group(&resp), "members");
        members = ms != NULL && ms->type == MSGPACK_OBJECT_ARRAY ? (int64_t)ms->via.array.size : -1;
        ft_resp_free(&resp);
        if (members == 0)
            break;
        ft_sleep_ms(100);
    }
    FT_ASSERT_EQ(members, 0, "the silent member is removed after its session timeout");
    FT_ASSERT_ERR(commit(&C.b[kz], GZ, z, ez, 0, 3, 0, NULL), FERRY_ERR_UNKNOWN_MEMBER_ID, "the zombie's commit");
    heartbeat(&C.b[kz], GZ, z, NULL, ez, 0xF, 0, &resp);
    FT_ASSERT_ERR(resp.error, FERRY_ERR_UNKNOWN_MEMBER_ID, "the zombie's heartbeat");
    ft_resp_free(&resp);

    /* ListGroups on the coordinator of g-static lists it */
    begin(&r, API_LIST_GROUPS, 0);
    call(&C.b[ks], &r, &resp);
    FT_ASSERT_ERR(resp.error, 0, "list groups");
    const msgpack_object *gl = ft_mp_get(resp.body, "groups");
    int found = 0;
    for (uint32_t i = 0; gl != NULL && i < gl->via.array.size; i++) {
        const msgpack_object *id = ft_mp_get(&gl->via.array.ptr[i], "group_id");
        found |= id != NULL && id->via.str.size == strlen(GS) && memcmp(id->via.str.ptr, GS, id->via.str.size) == 0;
    }
    FT_ASSERT(found, "ListGroups lists %s", GS);
    ft_resp_free(&resp);
}

Test(group_protocol, commits_and_members_survive_coordinator_kill9)
{
    struct ft_broker_opts o = {.security = FT_PLAINTEXT, .extra = GROUP_CONF};
    FT_ASSERT(ft_cluster_start(&C, 3, &o, E, sizeof(E)) == 0, "%s", E);
    create_topic(&C, 4);
    struct ft_resp resp;
    const char *G = "g-failover";
    int k = coordinator_of(&C, G);

    /* an admin commit while the group is empty, then a member that owns everything */
    FT_ASSERT_ERR(commit(&C.b[k], G, NULL, 0, 1, 100, 0, "meta-1"), 0, "admin commit");
    char a[64];
    heartbeat(&C.b[k], G, NULL, NULL, 0, -1, 30000, &resp);
    FT_ASSERT_ERR(resp.error, 0, "join: %s", resp.error_message);
    str_field(resp.body, "member_id", a, sizeof(a));
    int64_t ea = ft_mp_int(resp.body, "member_epoch", -1);
    FT_ASSERT_EQ(assignment_mask(&resp), 0xF, "A owns all");
    ft_resp_free(&resp);
    FT_ASSERT_ERR(commit(&C.b[k], G, a, ea, 2, 42, 0, NULL), 0, "member commit");

    /* the coordinator is the leader of the group's offsets partition */
    find_coordinator(&C.b[k], G, &resp);
    int32_t part = (int32_t)ft_mp_int(resp.body, "partition", -1);
    ft_resp_free(&resp);
    int leader = ft_cluster_leader(&C, "__consumer_offsets", part, WAIT_MS, E, sizeof(E));
    FT_ASSERT_EQ(leader, k, "coordinator = leader of __consumer_offsets/%d", part);

    FT_ASSERT_EQ(ft_broker_kill(&C.b[k]), 0, "kill -9 broker %d", k);
    int k2 = coordinator_of(&C, G);
    FT_ASSERT(k2 != k, "a new coordinator");
    int64_t off = -2;
    char md[32];
    FT_ASSERT_ERR(fetch_offset(&C.b[k2], G, 1, &off, md, sizeof(md)), 0, "offset fetch after failover");
    FT_ASSERT_EQ(off, 100, "admin commit intact");
    FT_ASSERT(strcmp(md, "meta-1") == 0, "metadata intact: '%s'", md);
    FT_ASSERT_ERR(fetch_offset(&C.b[k2], G, 2, &off, NULL, 0), 0, "offset fetch after failover");
    FT_ASSERT_EQ(off, 42, "member commit intact");
    FT_ASSERT_ERR(fetch_offset(&C.b[k2], G, 3, &off, NULL, 0), 0, "offset fetch after failover");
    FT_ASSERT_EQ(off, -1, "nothing committed on partition 3");

    /* the member is known to the new coordinator: same epoch, same assignment; commits continue */
    heartbeat(&C.b[k2], G, a, NULL, ea, 0xF, 0, &resp);
    FT_ASSERT_ERR(resp.error, 0, "heartbeat after failover: %s", resp.error_message);
    FT_ASSERT_EQ(ft_mp_int(resp.body, "member_epoch", -1), ea, "epoch kept");
    FT_ASSERT_EQ(assignment_mask(&resp), 0xF, "assignment kept");
    ft_resp_free(&resp);
    FT_ASSERT_ERR(commit(&C.b[k2], G, a, ea, 2, 41, 0, NULL), FERRY_ERR_OFFSET_BEHIND_COMMITTED, "never backwards");
    FT_ASSERT_ERR(commit(&C.b[k2], G, a, ea, 2, 50, 0, NULL), 0, "commit on the new coordinator");
    FT_ASSERT_ERR(fetch_offset(&C.b[k2], G, 2, &off, NULL, 0), 0, "offset fetch");
    FT_ASSERT_EQ(off, 50, "new commit visible");
}

Test(group_protocol, standalone_commits_survive_restart)
{
    struct ft_broker_opts o = {.security = FT_PLAINTEXT, .extra = GROUP_CONF};
    FT_ASSERT(ft_broker_start(&S, &o, E, sizeof(E)) == 0, "%s", E);
    ferry_client_t *adm = ft_client(&S, FERRY_ADMIN, NULL, E, sizeof(E));
    FT_ASSERT(adm != NULL, "%s", E);
    FT_ASSERT_ERR(ferry_admin_create_topic(adm, TOPIC, 2, -1, NULL, NULL, 0, ft_ms(WAIT_MS), E, sizeof(E)),
                  FERRY_ERR_NONE, "create: %s", E);
    ferry_client_destroy(adm);

    /* the broker creates the offsets topic itself and coordinates every group */
    int64_t deadline = ft_now_ms() + ft_ms(WAIT_MS);
    int err = -1;
    int64_t off = -2;
    while (ft_now_ms() < deadline && (err = fetch_offset(&S, "g-solo", 0, &off, NULL, 0)) != 0)
        ft_sleep_ms(100);
    FT_ASSERT_ERR(err, 0, "coordinator ready");
    FT_ASSERT_EQ(off, -1, "nothing committed yet");
    struct ft_resp resp;
    find_coordinator(&S, "g-solo", &resp);
    FT_ASSERT_ERR(resp.error, 0, "find coordinator: %s", resp.error_message);
    FT_ASSERT_EQ(ft_mp_int(resp.body, "port", -1), S.port, "the broker itself");
    ft_resp_free(&resp);

    char a[64];
    heartbeat(&S, "g-solo", NULL, NULL, 0, -1, 30000, &resp);
    FT_ASSERT_ERR(resp.error, 0, "join: %s", resp.error_message);
    str_field(resp.body, "member_id", a, sizeof(a));
    int64_t ea = ft_mp_int(resp.body, "member_epoch", -1);
    FT_ASSERT_EQ(assignment_mask(&resp), 0x3, "both partitions");
    ft_resp_free(&resp);
    FT_ASSERT_ERR(commit(&S, "g-solo", a, ea, 1, 17, 0, NULL), 0, "commit");

    FT_ASSERT_EQ(ft_broker_stop(&S), 0, "clean stop");
    FT_ASSERT(ft_broker_restart(&S, E, sizeof(E)) == 0, "%s", E);
    deadline = ft_now_ms() + ft_ms(WAIT_MS);
    while (ft_now_ms() < deadline && (err = fetch_offset(&S, "g-solo", 1, &off, NULL, 0)) != 0)
        ft_sleep_ms(100);
    FT_ASSERT_ERR(err, 0, "coordinator ready after restart");
    FT_ASSERT_EQ(off, 17, "commit survived the restart");
    heartbeat(&S, "g-solo", a, NULL, ea, 0x3, 0, &resp);
    FT_ASSERT_ERR(resp.error, 0, "the member survived too: %s", resp.error_message);
    ft_resp_free(&resp);
}

Test(group_protocol, standalone_offsets_topic_is_internal_and_members_have_a_host)
{
    struct ft_broker_opts o = {.security = FT_PLAINTEXT, .extra = GROUP_CONF};
    FT_ASSERT(ft_broker_start(&S, &o, E, sizeof(E)) == 0, "%s", E);
    ferry_client_t *adm = ft_client(&S, FERRY_ADMIN, NULL, E, sizeof(E));
    FT_ASSERT(adm != NULL, "%s", E);
    FT_ASSERT_ERR(ferry_admin_create_topic(adm, TOPIC, 2, -1, NULL, NULL, 0, ft_ms(WAIT_MS), E, sizeof(E)),
                  FERRY_ERR_NONE, "create: %s", E);
    ferry_client_destroy(adm);
    int64_t deadline = ft_now_ms() + ft_ms(WAIT_MS), off;
    int err = -1;
    while (ft_now_ms() < deadline && (err = fetch_offset(&S, "g-host", 0, &off, NULL, 0)) != 0)
        ft_sleep_ms(100);
    FT_ASSERT_ERR(err, 0, "coordinator ready");
    check_offsets_topic_is_internal(ft_conf(&S, NULL, E, sizeof(E)), ft_conf(&S, NULL, E, sizeof(E)));

    /* the coordinator still writes it: a join and a commit */
    struct ft_resp resp;
    char a[64];
    heartbeat(&S, "g-host", NULL, NULL, 0, -1, 30000, &resp);
    FT_ASSERT_ERR(resp.error, 0, "join: %s", resp.error_message);
    str_field(resp.body, "member_id", a, sizeof(a));
    int64_t ea = ft_mp_int(resp.body, "member_epoch", -1);
    ft_resp_free(&resp);
    FT_ASSERT_ERR(commit(&S, "g-host", a, ea, 1, 3, 0, NULL), 0, "commit");

    /* DescribeGroups shows the address the member connected from */
    describe(&S, "g-host", &resp);
    const msgpack_object *ms = ft_mp_get(described_group(&resp), "members");
    FT_ASSERT(ms != NULL && ms->type == MSGPACK_OBJECT_ARRAY && ms->via.array.size == 1, "one member");
    char host[64];
    str_field(&ms->via.array.ptr[0], "host", host, sizeof(host));
    FT_ASSERT(strcmp(host, "127.0.0.1") == 0, "member host: '%s'", host);
    ft_resp_free(&resp);
}
