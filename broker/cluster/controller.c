/* controller.c: the controller state machine (brokers, topics, placement), broker registration, and which
 * partition groups this broker opens. */
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

/* Opens the groups of t's partitions this broker replicates, creating the local logs first. */
static void ensure_local(struct ferryd_cluster *c, struct cl_topic *t)
{
    char msg[512];
    size_t nlen = strlen(t->name);
    int rc = ferryd_topics_create(c->b->topics, t->name, nlen, t->np, &t->tc, msg, sizeof(msg));
    if (rc != 0 && rc != FERRY_ERR_TOPIC_ALREADY_EXISTS) {
        LOG_ERROR("topic %s: creating the local logs failed: %s", t->name, msg);
        return;
    }
    struct ferryd_topic *lt = ferryd_topics_find(c->b->topics, t->name, nlen);
    if (lt == NULL)
        return;
    for (int32_t i = 0; i < t->np; i++) {
        const int64_t *reps = &t->replicas[(size_t)i * (size_t)t->rf];
        int mine = 0;
        for (int k = 0; k < t->rf; k++)
            mine |= reps[k] == c->self;
        if (mine && t->parts[i] == NULL)
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
 *   {"op": "register", "id": int, "host": str, "port": int}
 *   {"op": "create", "name": str, "partitions": int, "rf": int, "replicas": [[int]...],
 *    "configs": {key: int}}           group ids are assigned at apply from next_gid
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
    if (i == c->nbrokers) {
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
    LOG_INFO("cluster: broker %" PRId64 " at %s:%d", id, c->brokers[i].host, (int)port);
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
    if (rd.err || nl > FERRY_MAX_TOPIC_NAME || reps->size != (uint32_t)np || (gids && gids->size != (uint32_t)np))
        return FERRY_ERR_INVALID_REQUEST;
    struct cl_topic *t = calloc(1, sizeof(*t));
    if (t == NULL || (t->replicas = calloc((size_t)(np * rf), sizeof(int64_t))) == NULL ||
        (t->gids = calloc((size_t)np, sizeof(uint64_t))) == NULL ||
        (t->parts = calloc((size_t)np, sizeof(*t->parts))) == NULL) {
        cl_topic_free(t);
        return FERRY_ERR_UNKNOWN;
    }
    memcpy(t->name, name, nl);
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
    if (cl_find_topic(c, name, nl) != NULL)
        return FERRY_ERR_TOPIC_ALREADY_EXISTS;
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
    }
    msgpack_unpacked_destroy(&u);
    if (rc == FERRY_ERR_INVALID_REQUEST)
        LOG_ERROR("cluster: controller entry %" PRIu64 " is malformed (skipped on every broker)", index);
    *result = cl_enc(rc);
    return 0;
}

static void pack_topic(msgpack_packer *pk, const struct cl_topic *t, int with_gids)
{
    unsigned nconf = 0;
    for (int k = 0; k < FERRYD_TOPIC_CONFIG_COUNT; k++)
        nconf += t->tc.set[k] ? 1u : 0u;
    msgpack_pack_map(pk, with_gids ? 6 : 5);
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
    if (with_gids) {
        ferry_pack_key(pk, "gids");
        msgpack_pack_array(pk, (uint32_t)t->np);
        for (int32_t i = 0; i < t->np; i++)
            msgpack_pack_uint64(pk, t->gids[i]);
    }
}

/* Snapshot: {"next_gid": int, "brokers": [{"id", "host", "port"}], "topics": [topic with gids]}. */
int cl_ctl_snapshot(void *data, uint8_t **buf, size_t *len)
{
    struct ferryd_cluster *c = data;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    ferry_pack_key(&pk, "next_gid");
    msgpack_pack_uint64(&pk, c->next_gid);
    ferry_pack_key(&pk, "brokers");
    msgpack_pack_array(&pk, c->nbrokers);
    for (unsigned i = 0; i < c->nbrokers; i++) {
        msgpack_pack_map(&pk, 3);
        ferry_pack_key(&pk, "id");
        msgpack_pack_int64(&pk, c->brokers[i].id);
        ferry_pack_key(&pk, "host");
        ferry_pack_str(&pk, c->brokers[i].host);
        ferry_pack_key(&pk, "port");
        msgpack_pack_int(&pk, c->brokers[i].port);
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
    const msgpack_object_array *brokers = ferry_mp_array(&rd, &u.data, "brokers", 1);
    const msgpack_object_array *topics = ferry_mp_array(&rd, &u.data, "topics", 1);
    if (rd.err)
        goto out;
    c->nbrokers = 0;
    for (uint32_t i = 0; i < brokers->size; i++)
        if (brokers->ptr[i].type == MSGPACK_OBJECT_MAP)
            apply_register(c, &brokers->ptr[i]);
    c->next_gid = (uint64_t)next;
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

static void on_registered(void *arg, int status, uint64_t index, void *result)
{
    struct ferryd_cluster *c = arg;
    (void)index;
    (void)result;
    c->reg_in_flight = 0;
    if (status != FR_OK)
        LOG_DEBUG("cluster: registration not committed: %s", fr_strerror(status));
}

static void on_handoff(void *arg, int status)
{
    (void)arg;
    (void)status;
}

/*
 * Registration: only the controller leader can propose, so the leader registers its own client
 * address; when a member is still unregistered it hands leadership to it (at most every
 * HANDOFF_EVERY_MS), and that member registers itself in turn. No extra RPC is needed.
 */
void cl_ctl_tick(struct ferryd_cluster *c)
{
    struct ferryd *b = c->b;
    char msg[256];
    if (c->ctl == NULL || !fr_group_is_leader(c->ctl) || c->reg_in_flight)
        return;
    const struct cl_broker *me = cl_find_broker(c, c->self);
    if (me == NULL || me->port != b->advertised_port || strcmp(me->host, b->advertised_host) != 0) {
        msgpack_sbuffer sb;
        msgpack_packer pk;
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 4);
        ferry_pack_key(&pk, "op");
        ferry_pack_str(&pk, "register");
        ferry_pack_key(&pk, "id");
        msgpack_pack_int64(&pk, c->self);
        ferry_pack_key(&pk, "host");
        ferry_pack_str(&pk, b->advertised_host);
        ferry_pack_key(&pk, "port");
        msgpack_pack_int(&pk, b->advertised_port);
        if (fr_group_propose(c->ctl, sb.data, sb.size, on_registered, c, msg, sizeof(msg)) == FR_OK)
            c->reg_in_flight = 1;
        msgpack_sbuffer_destroy(&sb);
        return;
    }
    uint64_t now = uv_now(b->loop);
    if (now - c->last_handoff_ms < HANDOFF_EVERY_MS)
        return;
    for (int i = 0; i < c->nmembers; i++) {
        if (cl_find_broker(c, c->members[i].id) != NULL)
            continue;
        c->last_handoff_ms = now;
        LOG_INFO("cluster: handing controller leadership to unregistered broker %" PRId64, c->members[i].id);
        fr_group_transfer(c->ctl, cl_rid(c->members[i].id), on_handoff, c, msg, sizeof(msg));
        return;
    }
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
    int rc = not_controller(c, msg, msg_len);
    if (rc != 0)
        return rc;
    if (cl_find_topic(c, name, len) != NULL) {
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
    msgpack_pack_map(&pk, 6);
    ferry_pack_key(&pk, "op");
    ferry_pack_str(&pk, "create");
    msgpack_sbuffer_write(&sb, tb.data + 1, tb.size - 1); /* the topic map's five pairs (fixmap header skipped) */
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
