/* controller.c: the controller state machine (brokers, topics, placement), broker registration, and which
 * partition groups this broker opens. */
#include <assert.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cluster_int.h"
#include "ferry_errors.h"
#include "logging.h"
#include "proto/codec.h"

struct cl_topic *cl_find_topic(const struct ferryd_cluster *c, const char *name, size_t len)
{
    for (unsigned i = 0; i < c->ntopics; i++)
        if (strlen(c->topics[i]->name) == len && memcmp(c->topics[i]->name, name, len) == 0)
            return c->topics[i];
    return NULL;
}

static int is_replica(const struct cl_topic *t, int32_t i, int64_t broker)
{
    const int64_t *reps = &t->replicas[(size_t)i * (size_t)t->rf];
    for (int k = 0; k < t->rf; k++)
        if (reps[k] == broker)
            return 1;
    return 0;
}

/*
 * Registers t in the local topic registry with a log for each partition this broker replicates
 * (only those: the others are answered from the controller state), then opens their groups.
 */
static void ensure_local(struct ferryd_cluster *c, struct cl_topic *t)
{
    char msg[512];
    uint8_t local[FERRY_MAX_PARTITIONS_PER_TOPIC];
    size_t nlen = strlen(t->name);
    assert(t->np >= 1 && t->np <= FERRY_MAX_PARTITIONS_PER_TOPIC);
    for (int32_t i = 0; i < t->np; i++)
        local[i] = (uint8_t)is_replica(t, i, c->self);
    int rc = ferryd_topics_create_local(c->b->topics, t->name, nlen, t->np, &t->tc, local, NULL, 0, msg, sizeof(msg));
    if (rc != 0 && rc != FERRY_ERR_TOPIC_ALREADY_EXISTS) {
        LOG_ERROR("topic %s: creating the local logs failed: %s", t->name, msg);
        return;
    }
    struct ferryd_topic *lt = ferryd_topics_find(c->b->topics, t->name, nlen);
    if (lt == NULL)
        return;
    for (int32_t i = 0; i < t->np; i++) {
        if (!local[i] || t->parts[i] != NULL)
            continue;
        if (ferryd_topic_partition(lt, i) == NULL) {
            LOG_ERROR("topic %s: partition %d has no local log (registered before as a non-replica?)", t->name, i);
            continue;
        }
        cl_part_open(c, t, i, lt);
    }
}

void cl_topic_free(struct cl_topic *t)
{
    if (t == NULL)
        return;
    free(t->replicas);
    free(t->gids);
    free(t->parts);
    free(t);
}

static void drop_local(struct ferryd_cluster *c, struct cl_topic *t)
{
    char msg[512];
    for (int32_t i = 0; i < t->np; i++) {
        if (t->parts[i] == NULL)
            continue;
        cl_part_close(t->parts[i]);
        t->parts[i] = NULL;
    }
    if (ferryd_topics_delete(c->b->topics, t->name, strlen(t->name), msg, sizeof(msg)) != 0)
        LOG_WARN("topic %s: deleting the local logs: %s", t->name, msg);
}

/* ================================ controller state machine ================================ */

/*
 * Commands (msgpack maps):
 *   {"op": "register", "id": int, "host": str, "port": int, "peer_host": str?, "peer_port": int?}
 *                                     the peer address (membership.c) points every broker's peer
 *                                     table at the broker; entries without it keep the config's
 *   {"op": "pids", "count": int}      a block of producer ids [next_pid, next_pid + count): the
 *                                     result is the block's base (membership.c)
 *   {"op": "create", "name": str, "partitions": int, "rf": int, "replicas": [[int]...],
 *    "configs": {key: int}, "token": str?}   group ids are assigned at apply from next_gid; the
 *                                     token stays with the topic (snapshots too): a create of an
 *                                     existing topic with its token is a success, not a conflict
 *   {"op": "delete", "name": str}
 * The result of create/delete is an error code (0 = done).
 */

static int apply_register(struct ferryd_cluster *c, const msgpack_object *m)
{
    struct ferry_mp_reader rd = {0};
    size_t hl;
    int64_t id = ferry_mp_int_range(&rd, m, "id", 0, 1, 0, INT32_MAX);
    const char *host = ferry_mp_str(&rd, m, "host", &hl, 1);
    int64_t port = ferry_mp_int_range(&rd, m, "port", 0, 1, 1, 65535);
    if (rd.err || hl >= sizeof(c->brokers[0].host))
        return FERRY_ERR_INVALID_REQUEST;
    unsigned i = 0;
    while (i < c->nbrokers && c->brokers[i].id != id)
        i++;
    int is_new = i == c->nbrokers;
    if (is_new) {
        if (c->nbrokers == FERRYD_MAX_MEMBERS)
            return FERRY_ERR_LIMIT_EXCEEDED;
        /* keep sorted by id: placement depends on the order */
        while (i > 0 && c->brokers[i - 1].id > id) {
            c->brokers[i] = c->brokers[i - 1];
            i--;
        }
        c->nbrokers++;
    }
    c->brokers[i].id = id;
    memcpy(c->brokers[i].host, host, hl);
    c->brokers[i].host[hl] = '\0';
    c->brokers[i].port = (int)port;
    cl_mb_apply_peer(c, &c->brokers[i], is_new, m); /* membership.c: peer address, peer table */
    LOG_INFO("cluster: broker %" PRId64 " at %s:%d (peer %s:%d)", id, c->brokers[i].host, (int)port,
             c->brokers[i].peer_port ? c->brokers[i].peer_host : "from config", c->brokers[i].peer_port);
    return 0;
}

/* Parses a topic (command or snapshot entry); group ids from "gids" when present, else from next_gid. */
static int parse_topic(struct ferryd_cluster *c, const msgpack_object *m, struct cl_topic **out)
{
    struct ferry_mp_reader rd = {0};
    size_t nl;
    const char *name = ferry_mp_str(&rd, m, "name", &nl, 1);
    int64_t np = ferry_mp_int_range(&rd, m, "partitions", 0, 1, 1, FERRY_MAX_PARTITIONS_PER_TOPIC);
    int64_t rf = ferry_mp_int_range(&rd, m, "rf", 0, 1, 1, 16);
    const msgpack_object_array *reps = ferry_mp_array(&rd, m, "replicas", 1);
    const msgpack_object_array *gids = ferry_mp_array(&rd, m, "gids", 0);
    const msgpack_object *configs = ferry_mp_map(&rd, m, "configs", 0);
    size_t tl = 0;
    const char *token = ferry_mp_str(&rd, m, "token", &tl, 0);
    if (rd.err || nl > FERRY_MAX_TOPIC_NAME || reps->size != (uint32_t)np || (gids && gids->size != (uint32_t)np) ||
        tl > FERRYD_MAX_REQUEST_TOKEN)
        return FERRY_ERR_INVALID_REQUEST;
    struct cl_topic *t = calloc(1, sizeof(*t));
    if (t == NULL || (t->replicas = calloc((size_t)(np * rf), sizeof(int64_t))) == NULL ||
        (t->gids = calloc((size_t)np, sizeof(uint64_t))) == NULL ||
        (t->parts = calloc((size_t)np, sizeof(*t->parts))) == NULL) {
        cl_topic_free(t);
        return FERRY_ERR_UNKNOWN;
    }
    memcpy(t->name, name, nl);
    if (token != NULL)
        memcpy(t->token, token, tl);
    t->np = (int32_t)np;
    t->rf = (int32_t)rf;
    for (uint32_t i = 0; i < reps->size; i++) {
        const msgpack_object *r = &reps->ptr[i];
        if (r->type != MSGPACK_OBJECT_ARRAY || r->via.array.size != (uint32_t)rf)
            goto err_bad;
        for (uint32_t k = 0; k < r->via.array.size; k++) {
            if (r->via.array.ptr[k].type != MSGPACK_OBJECT_POSITIVE_INTEGER)
                goto err_bad;
            t->replicas[i * (uint32_t)rf + k] = (int64_t)r->via.array.ptr[k].via.u64;
        }
        if (gids != NULL) {
            if (gids->ptr[i].type != MSGPACK_OBJECT_POSITIVE_INTEGER)
                goto err_bad;
            t->gids[i] = gids->ptr[i].via.u64;
        }
    }
    for (uint32_t i = 0; configs != NULL && i < configs->via.map.size; i++) {
        const msgpack_object_kv *kv = &configs->via.map.ptr[i];
        if (kv->key.type != MSGPACK_OBJECT_STR)
            goto err_bad;
        for (int k = 0; k < FERRYD_TOPIC_CONFIG_COUNT; k++) {
            if (strlen(ferryd_topic_config_keys[k]) == kv->key.via.str.size &&
                memcmp(ferryd_topic_config_keys[k], kv->key.via.str.ptr, kv->key.via.str.size) == 0) {
                t->tc.set[k] = 1;
                t->tc.value[k] = kv->val.type == MSGPACK_OBJECT_NEGATIVE_INTEGER ? kv->val.via.i64
                                                                                  : (int64_t)kv->val.via.u64;
            }
        }
    }
    if (gids == NULL) {
        for (int32_t i = 0; i < t->np; i++)
            t->gids[i] = c->next_gid++;
    }
    *out = t;
    return 0;
err_bad:
    cl_topic_free(t);
    return FERRY_ERR_INVALID_REQUEST;
}

static int add_topic(struct ferryd_cluster *c, struct cl_topic *t)
{
    struct cl_topic **nt = realloc(c->topics, (c->ntopics + 1) * sizeof(*nt));
    if (nt == NULL)
        return FERRY_ERR_UNKNOWN;
    c->topics = nt;
    c->topics[c->ntopics++] = t;
    ensure_local(c, t);
    return 0;
}

static int apply_create(struct ferryd_cluster *c, const msgpack_object *m)
{
    struct ferry_mp_reader rd = {0};
    size_t nl;
    const char *name = ferry_mp_str(&rd, m, "name", &nl, 1);
    if (rd.err)
        return FERRY_ERR_INVALID_REQUEST;
    const struct cl_topic *have = cl_find_topic(c, name, nl);
    if (have != NULL) {
        /* A retry of the create that made it (same token): success, nothing changes. */
        size_t tl = 0;
        const char *token = ferry_mp_str(&rd, m, "token", &tl, 0);
        if (!rd.err && token != NULL && tl > 0 && strlen(have->token) == tl && memcmp(have->token, token, tl) == 0)
            return 0;
        return FERRY_ERR_TOPIC_ALREADY_EXISTS;
    }
    struct cl_topic *t;
    int rc = parse_topic(c, m, &t);
    if (rc != 0)
        return rc;
    LOG_INFO("cluster: topic %s created (%d partitions, replication factor %d)", t->name, t->np, t->rf);
    rc = add_topic(c, t);
    if (rc != 0)
        cl_topic_free(t);
    return rc;
}

static int apply_delete(struct ferryd_cluster *c, const msgpack_object *m)
{
    struct ferry_mp_reader rd = {0};
    size_t nl;
    const char *name = ferry_mp_str(&rd, m, "name", &nl, 1);
    if (rd.err)
        return FERRY_ERR_INVALID_REQUEST;
    for (unsigned i = 0; i < c->ntopics; i++) {
        struct cl_topic *t = c->topics[i];
        if (strlen(t->name) != nl || memcmp(t->name, name, nl) != 0)
            continue;
        drop_local(c, t);
        memmove(&c->topics[i], &c->topics[i + 1], (c->ntopics - i - 1) * sizeof(*c->topics));
        c->ntopics--;
        LOG_INFO("cluster: topic %s deleted", t->name);
        cl_topic_free(t);
        return 0;
    }
    return FERRY_ERR_UNKNOWN_TOPIC_OR_PARTITION;
}

int cl_ctl_apply(void *data, uint64_t index, const uint8_t *buf, size_t len, void **result)
{
    struct ferryd_cluster *c = data;
    msgpack_unpacked u;
    size_t off = 0;
    int rc = FERRY_ERR_INVALID_REQUEST;
    int is_pids = 0;
    int64_t pids_base = -1;
    msgpack_unpacked_init(&u);
    if (msgpack_unpack_next(&u, (const char *)buf, len, &off) == MSGPACK_UNPACK_SUCCESS &&
        u.data.type == MSGPACK_OBJECT_MAP) {
        struct ferry_mp_reader rd = {0};
        size_t ol;
        const char *op = ferry_mp_str(&rd, &u.data, "op", &ol, 1);
        if (rd.err)
            rc = FERRY_ERR_INVALID_REQUEST;
        else if (ol == 8 && memcmp(op, "register", 8) == 0)
            rc = apply_register(c, &u.data);
        else if (ol == 6 && memcmp(op, "create", 6) == 0)
            rc = apply_create(c, &u.data);
        else if (ol == 6 && memcmp(op, "delete", 6) == 0)
            rc = apply_delete(c, &u.data);
        else if ((is_pids = ol == 4 && memcmp(op, "pids", 4) == 0))
            rc = cl_mb_apply_pids(c, &u.data, &pids_base); /* membership.c */
    }
    msgpack_unpacked_destroy(&u);
    if (rc == FERRY_ERR_INVALID_REQUEST)
        LOG_ERROR("cluster: controller entry %" PRIu64 " is malformed (skipped on every broker)", index);
    /* pids: the block's base (>= 0), or minus the error code. */
    *result = is_pids ? cl_enc(rc == 0 ? pids_base : -rc) : cl_enc(rc);
    return 0;
}

static void pack_topic(msgpack_packer *pk, const struct cl_topic *t, int with_gids)
{
    unsigned nconf = 0;
    for (int k = 0; k < FERRYD_TOPIC_CONFIG_COUNT; k++)
        nconf += t->tc.set[k] ? 1u : 0u;
    msgpack_pack_map(pk, 5u + (with_gids ? 1u : 0u) + (t->token[0] != '\0' ? 1u : 0u));
    ferry_pack_key(pk, "name");
    ferry_pack_str(pk, t->name);
    ferry_pack_key(pk, "partitions");
    msgpack_pack_int32(pk, t->np);
    ferry_pack_key(pk, "rf");
    msgpack_pack_int32(pk, t->rf);
    ferry_pack_key(pk, "replicas");
    msgpack_pack_array(pk, (uint32_t)t->np);
    for (int32_t i = 0; i < t->np; i++) {
        msgpack_pack_array(pk, (uint32_t)t->rf);
        for (int32_t k = 0; k < t->rf; k++)
            msgpack_pack_int64(pk, t->replicas[i * t->rf + k]);
    }
    ferry_pack_key(pk, "configs");
    msgpack_pack_map(pk, nconf);
    for (int k = 0; k < FERRYD_TOPIC_CONFIG_COUNT; k++) {
        if (!t->tc.set[k])
            continue;
        ferry_pack_key(pk, ferryd_topic_config_keys[k]);
        msgpack_pack_int64(pk, t->tc.value[k]);
    }
    if (t->token[0] != '\0') {
        ferry_pack_key(pk, "token");
        ferry_pack_str(pk, t->token);
    }
    if (with_gids) {
        ferry_pack_key(pk, "gids");
        msgpack_pack_array(pk, (uint32_t)t->np);
        for (int32_t i = 0; i < t->np; i++)
            msgpack_pack_uint64(pk, t->gids[i]);
    }
}

/* Snapshot: {"next_gid": int, "brokers": [{"id", "host", "port", "peer_host", "peer_port"}], "topics": [topic
 * with gids], "next_pid": int}. */
int cl_ctl_snapshot(void *data, uint8_t **buf, size_t *len)
{
    struct ferryd_cluster *c = data;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4);
    ferry_pack_key(&pk, "next_pid");
    msgpack_pack_int64(&pk, c->next_pid);
    ferry_pack_key(&pk, "next_gid");
    msgpack_pack_uint64(&pk, c->next_gid);
    ferry_pack_key(&pk, "brokers");
    msgpack_pack_array(&pk, c->nbrokers);
    for (unsigned i = 0; i < c->nbrokers; i++) {
        msgpack_pack_map(&pk, 5);
        ferry_pack_key(&pk, "id");
        msgpack_pack_int64(&pk, c->brokers[i].id);
        ferry_pack_key(&pk, "host");
        ferry_pack_str(&pk, c->brokers[i].host);
        ferry_pack_key(&pk, "port");
        msgpack_pack_int(&pk, c->brokers[i].port);
        ferry_pack_key(&pk, "peer_host");
        ferry_pack_str(&pk, c->brokers[i].peer_host);
        ferry_pack_key(&pk, "peer_port");
        msgpack_pack_int(&pk, c->brokers[i].peer_port);
    }
    ferry_pack_key(&pk, "topics");
    msgpack_pack_array(&pk, c->ntopics);
    for (unsigned i = 0; i < c->ntopics; i++)
        pack_topic(&pk, c->topics[i], 1);
    *buf = (uint8_t *)sb.data; /* malloc'd by the sbuffer; raft/ frees it */
    *len = sb.size;
    return 0;
}

/* Restore: brokers replaced; topics added when unknown (a topic already open keeps its groups). */
int cl_ctl_restore(void *data, uint64_t index, const uint8_t *buf, size_t len)
{
    struct ferryd_cluster *c = data;
    msgpack_unpacked u;
    size_t off = 0;
    int rc = -1;
    (void)index;
    msgpack_unpacked_init(&u);
    if (msgpack_unpack_next(&u, (const char *)buf, len, &off) != MSGPACK_UNPACK_SUCCESS ||
        u.data.type != MSGPACK_OBJECT_MAP)
        goto out;
    struct ferry_mp_reader rd = {0};
    int64_t next = ferry_mp_int(&rd, &u.data, "next_gid", FIRST_PARTITION_GROUP, 1);
    int64_t next_pid = ferry_mp_int_range(&rd, &u.data, "next_pid", 0, 0, 0, INT64_MAX); /* absent: older */
    const msgpack_object_array *brokers = ferry_mp_array(&rd, &u.data, "brokers", 1);
    const msgpack_object_array *topics = ferry_mp_array(&rd, &u.data, "topics", 1);
    if (rd.err)
        goto out;
    c->nbrokers = 0;
    for (uint32_t i = 0; i < brokers->size; i++)
        if (brokers->ptr[i].type == MSGPACK_OBJECT_MAP)
            apply_register(c, &brokers->ptr[i]);
    c->next_gid = (uint64_t)next;
    c->next_pid = next_pid;
    for (uint32_t i = 0; i < topics->size; i++) {
        struct cl_topic *t;
        size_t nl;
        struct ferry_mp_reader r2 = {0};
        const char *name = ferry_mp_str(&r2, &topics->ptr[i], "name", &nl, 1);
        if (r2.err || cl_find_topic(c, name, nl) != NULL)
            continue;
        if (parse_topic(c, &topics->ptr[i], &t) == 0 && add_topic(c, t) != 0)
            cl_topic_free(t);
    }
    rc = 0;
out:
    msgpack_unpacked_destroy(&u);
    if (rc != 0)
        LOG_ERROR("cluster: controller snapshot is malformed");
    return rc;
}

/* ================================ registration ================================ */

const struct cl_broker *cl_find_broker(const struct ferryd_cluster *c, int64_t id)
{
    for (unsigned i = 0; i < c->nbrokers; i++)
        if (c->brokers[i].id == id)
            return &c->brokers[i];
    return NULL;
}

/* Registration (every broker asks the controller leader; the leader adds joiners to the controller
 * group) and producer id blocks live in membership.c. */
void cl_ctl_tick(struct ferryd_cluster *c)
{
    cl_mb_tick(c);
}

static int ctl_propose(struct ferryd_cluster *c, msgpack_sbuffer *sb, ferryd_cluster_done_cb cb, void *arg, char *msg,
                       size_t msg_len)
{
    int rc = cl_propose(c->ctl, sb->data, sb->size, NULL, cb, arg, FERRY_ERR_NOT_CONTROLLER, msg, msg_len);
    msgpack_sbuffer_destroy(sb);
    return rc;
}

static int not_controller(const struct ferryd_cluster *c, char *msg, size_t msg_len)
{
    if (fr_group_is_leader(c->ctl))
        return 0;
    snprintf(msg, msg_len, "broker %" PRId64 " is not the controller; controller_id=%" PRId64, c->self,
             ferryd_cluster_controller_id(c));
    return FERRY_ERR_NOT_CONTROLLER;
}

int ferryd_cluster_create_topic(struct ferryd_cluster *c, const char *name, size_t len, int64_t partitions,
                                int64_t rf, const struct ferryd_topic_config *tc, ferryd_cluster_done_cb cb, void *arg,
                                char *msg, size_t msg_len)
{
    int done = 0;
    return ferryd_cluster_create_topic_token(c, name, len, partitions, rf, tc, NULL, 0, &done, cb, arg, msg, msg_len);
}

int ferryd_cluster_create_topic_token(struct ferryd_cluster *c, const char *name, size_t len, int64_t partitions,
                                      int64_t rf, const struct ferryd_topic_config *tc, const char *token,
                                      size_t token_len, int *done, ferryd_cluster_done_cb cb, void *arg, char *msg,
                                      size_t msg_len)
{
    *done = 0;
    int rc = not_controller(c, msg, msg_len);
    if (rc != 0)
        return rc;
    if (token_len > FERRYD_MAX_REQUEST_TOKEN) {
        snprintf(msg, msg_len, "request_token longer than %d bytes", FERRYD_MAX_REQUEST_TOKEN);
        return FERRY_ERR_INVALID_REQUEST;
    }
    const struct cl_topic *have = cl_find_topic(c, name, len);
    if (have != NULL) {
        if (token_len > 0 && strlen(have->token) == token_len && memcmp(have->token, token, token_len) == 0) {
            *done = 1; /* an earlier attempt of this request created it */
            msg[0] = '\0';
            return 0;
        }
        snprintf(msg, msg_len, "topic already exists");
        return FERRY_ERR_TOPIC_ALREADY_EXISTS;
    }
    int64_t n = c->nbrokers;
    if (rf == -1)
        rf = n < DEFAULT_RF ? n : DEFAULT_RF;
    if (rf < 1 || rf > n || rf > 16) {
        snprintf(msg, msg_len, "replication_factor %" PRId64 ": %" PRId64 " broker(s) registered", rf, n);
        return FERRY_ERR_INVALID_CONFIG;
    }
    /* Placement: partition i's replicas are consecutive brokers starting at (topics + i) mod n, so
     * replicas and preferred leaders (the first replica) rotate evenly across brokers. */
    struct cl_topic t = {0};
    memcpy(t.name, name, len);
    t.np = (int32_t)partitions;
    t.rf = (int32_t)rf;
    t.tc = *tc;
    if (token_len > 0)
        memcpy(t.token, token, token_len);
    t.replicas = calloc((size_t)(partitions * rf), sizeof(int64_t));
    if (t.replicas == NULL) {
        snprintf(msg, msg_len, "out of memory");
        return FERRY_ERR_UNKNOWN;
    }
    for (int64_t i = 0; i < partitions; i++)
        for (int64_t k = 0; k < rf; k++)
            t.replicas[i * rf + k] = c->brokers[(c->ntopics + (uint64_t)i + (uint64_t)k) % (uint64_t)n].id;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    /* {"op": "create", + the topic's five fields}: pack the topic map with one extra key in front. */
    msgpack_sbuffer tb;
    msgpack_packer tp;
    msgpack_sbuffer_init(&tb);
    msgpack_packer_init(&tp, &tb, msgpack_sbuffer_write);
    pack_topic(&tp, &t, 0);
    free(t.replicas);
    assert(tb.size > 1 && (tb.data[0] & 0xf0) == 0x80); /* a fixmap of 5 or 6 pairs */
    msgpack_pack_map(&pk, 1u + ((uint8_t)tb.data[0] & 0x0fu));
    ferry_pack_key(&pk, "op");
    ferry_pack_str(&pk, "create");
    msgpack_sbuffer_write(&sb, tb.data + 1, tb.size - 1); /* the topic map's pairs (fixmap header skipped) */
    msgpack_sbuffer_destroy(&tb);
    return ctl_propose(c, &sb, cb, arg, msg, msg_len);
}

int ferryd_cluster_delete_topic(struct ferryd_cluster *c, const char *name, size_t len, ferryd_cluster_done_cb cb,
                                void *arg, char *msg, size_t msg_len)
{
    int rc = not_controller(c, msg, msg_len);
    if (rc != 0)
        return rc;
    if (cl_find_topic(c, name, len) == NULL) {
        snprintf(msg, msg_len, "no such topic");
        return FERRY_ERR_UNKNOWN_TOPIC_OR_PARTITION;
    }
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    ferry_pack_key(&pk, "op");
    ferry_pack_str(&pk, "delete");
    ferry_pack_key(&pk, "name");
    ferry_pack_strn(&pk, name, len);
    return ctl_propose(c, &sb, cb, arg, msg, msg_len);
}
