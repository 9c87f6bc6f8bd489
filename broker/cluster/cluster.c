/* cluster.c: the controller state machine (brokers, topics, placement) and the partition groups' apply path. */
#include "cluster/cluster.h"

#include <assert.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "../../raft/ferry_raft.h"
#include "broker.h"
#include "cluster/catchup.h"
#include "ferry_errors.h"
#include "logging.h"
#include "proto/batch.h"
#include "proto/codec.h"

#define CONTROLLER_GROUP 1
#define FIRST_PARTITION_GROUP 2
#define DEFAULT_RF 3
#define TICK_MS 300
/* The controller leader hands leadership to an unregistered member at most this often (that member
 * then registers its own client address; see docs/replication.md). */
#define HANDOFF_EVERY_MS 3000
/* A graceful stop waits this long at most for its leadership transfers (each one gives up after an
 * election timeout by itself; they run in parallel). */
#define HANDOFF_MAX_MS 5000
/* Committed entries a catching-up replica holds in memory until its segments reach the snapshot
 * (docs/replication.md, "A replica that lacks segment data"); past it the group stops applying. */
#define CATCHUP_QUEUE_MAX_BYTES ((size_t)256 * 1024 * 1024)

/* A committed entry applied later, once the catch-up is done. */
struct cl_entry {
    struct cl_entry *next;
    uint64_t index;
    size_t len;
    uint8_t data[];
};

struct cl_part {
    struct ferryd_cluster *c;
    char label[FERRY_MAX_TOPIC_NAME + 16];
    char topic[FERRY_MAX_TOPIC_NAME + 1];
    int32_t idx;
    struct fr_group *g;
    struct ferryd_partition *p;
    int64_t cursor; /* offset the next applied entry gets: dedupes entries replayed after a restart */
    /* Catch-up: restored from a snapshot whose log end (target) is past our log's end. Entries
     * committed meanwhile wait in the queue; the segments are fetched from the leader (catchup.c). */
    int catching_up;
    int broken; /* a queued entry failed to apply: the group stops applying here */
    int64_t target;
    struct cl_catchup *cu; /* the fetch running, or NULL (the tick starts one) */
    struct cl_entry *qhead, *qtail;
    size_t qbytes;
};

struct cl_topic {
    char name[FERRY_MAX_TOPIC_NAME + 1];
    int32_t np, rf;
    int64_t *replicas;  /* np * rf broker ids */
    uint64_t *gids;     /* np group ids */
    struct ferryd_topic_config tc;
    struct cl_part **parts; /* np, NULL where this broker is not a replica (or not opened yet) */
};

struct cl_broker {
    int64_t id;
    char host[256];
    int port;
};

struct ferryd_cluster {
    struct ferryd *b;
    struct fr_node *node;
    struct fr_group *ctl;
    struct ferry_tls_ctx *tls_server, *tls_client; /* peer port; NULL in plaintext */
    struct ferry_tls_ctx *tls_fetch; /* catch-up Fetches to other brokers' client listeners; NULL in plaintext */
    int64_t self;
    struct ferryd_member members[FERRYD_MAX_MEMBERS];
    int nmembers;
    /* replicated metadata */
    struct cl_broker brokers[FERRYD_MAX_MEMBERS];
    unsigned nbrokers;
    struct cl_topic **topics;
    unsigned ntopics;
    uint64_t next_gid;
    /* local */
    uv_timer_t tick;
    uv_timer_t handoff_timer; /* bounds ferryd_cluster_handoff */
    unsigned handoffs;        /* transfers still running */
    void (*handoff_cb)(void *arg);
    void *handoff_arg;
    int reg_in_flight;
    uint64_t last_handoff_ms;
    void (*stop_cb)(void *arg);
    void *stop_arg;
};

static uint64_t rid(int64_t broker_id)
{
    return (uint64_t)broker_id + 1;
}

/* ---- result encoding: apply returns small integers through the void * result ---- */
static void *enc(int64_t v)
{
    return (void *)(uintptr_t)((uint64_t)v + 1);
}
static int64_t dec(void *r)
{
    return (int64_t)((uint64_t)(uintptr_t)r - 1);
}

/* ================================ partition groups ================================ */

/*
 * An entry replayed after a restart while the segments already hold batches past the cursor: if
 * the stored batch at the cursor is this entry (same bytes after the fields the broker rewrites:
 * base_offset, batch_length, leader_epoch), it was applied before the restart and is skipped. Any
 * other entry was not stored when first applied (an idempotent duplicate, or refused): skip it too.
 */
#define REWRITTEN_PREFIX 16
static int replay_one(struct cl_part *cp, const uint8_t *buf, size_t len, const struct ferry_batch_header *h,
                      int64_t end, void **result)
{
    uint8_t *stored = NULL;
    size_t slen = 0;
    char msg[256];
    int rc = ferry_log_read(cp->p->log, cp->cursor, end, 1, &stored, &slen, msg, sizeof(msg));
    if (rc != 0) {
        LOG_ERROR("partition %s: replay: reading offset %" PRId64 ": %s", cp->label, cp->cursor, msg);
        return -1;
    }
    if (stored != NULL && slen >= len && len > REWRITTEN_PREFIX &&
        memcmp(stored + REWRITTEN_PREFIX, buf + REWRITTEN_PREFIX, len - REWRITTEN_PREFIX) == 0) {
        *result = enc(cp->cursor);
        cp->cursor += (int64_t)h->record_count;
    }
    free(stored);
    return 0;
}

static const struct cl_broker *find_broker(const struct ferryd_cluster *c, int64_t id);

static void queue_free(struct cl_part *cp)
{
    while (cp->qhead != NULL) {
        struct cl_entry *e = cp->qhead;
        cp->qhead = e->next;
        free(e);
    }
    cp->qtail = NULL;
    cp->qbytes = 0;
}

/* Keeps a committed entry for later (the replica is catching up). 0, or -1 past the bound. */
static int queue_entry(struct cl_part *cp, uint64_t index, const uint8_t *buf, size_t len)
{
    if (cp->qbytes + len > CATCHUP_QUEUE_MAX_BYTES) {
        LOG_ERROR("partition %s: %zu bytes of entries wait for the catch-up: entry %" PRIu64
                  " cannot be kept; this replica stops applying",
                  cp->label, cp->qbytes, index);
        return -1;
    }
    struct cl_entry *e = malloc(sizeof(*e) + len);
    if (e == NULL)
        return -1;
    e->next = NULL;
    e->index = index;
    e->len = len;
    memcpy(e->data, buf, len);
    if (cp->qtail != NULL)
        cp->qtail->next = e;
    else
        cp->qhead = e;
    cp->qtail = e;
    cp->qbytes += len;
    return 0;
}

/* Stops a catch-up and forgets its queue (the part closes, or a newer snapshot replaces it). */
static void catchup_stop(struct cl_part *cp)
{
    if (cp->cu != NULL)
        cl_catchup_cancel(cp->cu);
    cp->cu = NULL;
    queue_free(cp);
    cp->catching_up = 0;
}

static void catchup_cancel_fetch(struct cl_part *cp)
{
    if (cp->cu != NULL)
        cl_catchup_cancel(cp->cu);
    cp->cu = NULL;
}

static void part_free(struct cl_part *cp)
{
    catchup_stop(cp);
    free(cp);
}

static int part_apply(void *data, uint64_t index, const uint8_t *buf, size_t len, void **result)
{
    struct cl_part *cp = data;
    struct ferry_batch_header h;
    char msg[256];
    (void)index;
    *result = NULL;
    if (cp->broken || cp->p == NULL) {
        LOG_ERROR("partition %s: cannot apply entry %" PRIu64 ": %s", cp->label, index,
                  cp->broken ? "an earlier entry failed to apply" : "no log");
        return -1;
    }
    if (cp->catching_up)
        return queue_entry(cp, index, buf, len);
    if (ferry_batch_validate(buf, len, len, &h, msg, sizeof(msg)) != 0) {
        LOG_ERROR("partition %s: committed entry %" PRIu64 " is not a batch: %s", cp->label, index, msg);
        return 0; /* deterministic on every replica: skipped everywhere */
    }
    int64_t end = ferry_log_end_offset(cp->p->log);
    if (cp->cursor < end)
        return replay_one(cp, buf, len, &h, end, result);
    if (cp->cursor > end) {
        LOG_ERROR("partition %s: log ends at %" PRId64 " but entry %" PRIu64 " belongs at %" PRId64, cp->label, end,
                  index, cp->cursor);
        return -1;
    }
    uint8_t *copy = malloc(len);
    if (copy == NULL)
        return -1;
    memcpy(copy, buf, len);
    int64_t base, next;
    int rc = ferryd_partition_append(cp->p, copy, len, len, &base, &next, msg, sizeof(msg));
    free(copy);
    if (rc == FERRY_ERR_STORAGE_ERROR) {
        LOG_ERROR("partition %s: apply of entry %" PRIu64 " failed: %s", cp->label, index, msg);
        return -1;
    }
    if (rc != 0) {
        LOG_WARN("partition %s: committed batch refused at apply (error %d): %s", cp->label, rc, msg);
        return 0;
    }
    (void)next;
    /* A duplicate of a remembered idempotent batch is not stored: base is the original's offset. */
    cp->cursor = ferry_log_end_offset(cp->p->log);
    *result = enc(base);
    return 0;
}

/* Snapshot = 8-byte big-endian log end offset, taken only when the segments are durable up to it. */
static int part_snapshot(void *data, uint8_t **buf, size_t *len)
{
    struct cl_part *cp = data;
    if (cp->p == NULL || cp->catching_up || cp->broken || ferryd_partition_sync_now(cp->p) != 0)
        return -1; /* Raft tries again after a later apply */
    uint8_t *out = malloc(8);
    if (out == NULL)
        return -1;
    uint64_t v = (uint64_t)cp->cursor;
    for (int i = 0; i < 8; i++)
        out[i] = (uint8_t)(v >> (56 - 8 * i));
    *buf = out;
    *len = 8;
    return 0;
}

static int part_restore(void *data, uint64_t index, const uint8_t *buf, size_t len)
{
    struct cl_part *cp = data;
    if (len != 8)
        return -1;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | buf[i];
    cp->cursor = (int64_t)v;
    catchup_stop(cp); /* the new snapshot covers every queued entry */
    if (cp->p != NULL && cp->cursor > ferry_log_end_offset(cp->p->log)) {
        cp->catching_up = 1;
        cp->target = cp->cursor;
        LOG_WARN("partition %s: snapshot at entry %" PRIu64 " ends at offset %" PRId64
                 " but the local log ends at %" PRId64 ": catching up from the leader before applying further",
                 cp->label, index, cp->cursor, ferry_log_end_offset(cp->p->log));
    }
    return 0;
}

static void on_catchup_transfer(void *arg, int status)
{
    (void)arg;
    (void)status; /* the tick tries again while this replica still leads */
}

/* The segments reached the snapshot: applies the entries that waited, in order. */
static void on_catchup_done(void *arg, int status, const char *msg)
{
    struct cl_part *cp = arg;
    cp->cu = NULL;
    if (status != 0) {
        LOG_WARN("partition %s: catch-up at offset %" PRId64 " of %" PRId64 ": %s; retrying", cp->label,
                 cp->p != NULL ? ferry_log_end_offset(cp->p->log) : -1, cp->target, msg);
        return;
    }
    LOG_INFO("partition %s: caught up to offset %" PRId64 "; applying %zu bytes of waiting entries", cp->label,
             cp->target, cp->qbytes);
    cp->catching_up = 0;
    while (cp->qhead != NULL && !cp->broken) {
        struct cl_entry *e = cp->qhead;
        void *result;
        cp->qhead = e->next;
        cp->qbytes -= e->len;
        if (part_apply(cp, e->index, e->data, e->len, &result) != 0)
            cp->broken = 1;
        free(e);
    }
    queue_free(cp);
}

/* Starts the catch-up of cp from its group's leader (on the tick, never inside a Raft callback). */
static void catchup_drive(struct ferryd_cluster *c, struct cl_part *cp)
{
    char msg[256];
    if (!cp->catching_up || cp->cu != NULL || cp->p == NULL)
        return;
    if (c->b->cfg->security_protocol == FERRYD_SECURITY_TLS && c->tls_fetch == NULL)
        return; /* logged at start */
    if (fr_group_is_leader(cp->g)) {
        /* A replica without the data must not lead: hand the group to an up-to-date voter. */
        fr_group_transfer(cp->g, 0, on_catchup_transfer, NULL, msg, sizeof(msg));
        return;
    }
    uint64_t l = fr_group_leader(cp->g, NULL);
    const struct cl_broker *lb = l == 0 ? NULL : find_broker(c, (int64_t)l - 1);
    if (lb == NULL)
        return; /* no known leader (or its client address) yet */
    struct cl_catchup_req r = {.loop = c->b->loop,
                               .host = lb->host,
                               .port = lb->port,
                               .tls = c->tls_fetch,
                               .topic = cp->topic,
                               .partition = cp->idx,
                               .p = cp->p,
                               .target = cp->target};
    if (cl_catchup_start(&r, on_catchup_done, cp, &cp->cu, msg, sizeof(msg)) != 0)
        LOG_WARN("partition %s: catch-up from broker %" PRId64 ": %s", cp->label, lb->id, msg);
}

static void catchup_tick(struct ferryd_cluster *c)
{
    for (unsigned i = 0; i < c->ntopics; i++)
        for (int32_t k = 0; k < c->topics[i]->np; k++)
            if (c->topics[i]->parts[k] != NULL)
                catchup_drive(c, c->topics[i]->parts[k]);
}

static void part_closed(void *arg)
{
    part_free(arg);
}

static struct cl_topic *find_topic(const struct ferryd_cluster *c, const char *name, size_t len)
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
        uint64_t ids[16];
        int mine = 0;
        for (int k = 0; k < t->rf && k < 16; k++) {
            ids[k] = rid(reps[k]);
            mine |= reps[k] == c->self;
        }
        if (!mine || t->parts[i] != NULL)
            continue;
        struct cl_part *cp = calloc(1, sizeof(*cp));
        if (cp == NULL)
            return;
        cp->c = c;
        cp->idx = i;
        cp->p = ferryd_topic_partition(lt, i);
        snprintf(cp->topic, sizeof(cp->topic), "%s", t->name);
        snprintf(cp->label, sizeof(cp->label), "%s/%d", t->name, i);
        struct fr_group_config gc = {
            .group_id = t->gids[i],
            .name = cp->label,
            .fsm = {.data = cp, .apply = part_apply, .snapshot = part_snapshot, .restore = part_restore},
            .snapshot_threshold = (unsigned)c->b->cfg->raft_snapshot_threshold,
            .snapshot_trailing = (unsigned)c->b->cfg->raft_snapshot_trailing,
        };
        if (fr_group_open(c->node, &gc, &cp->g, msg, sizeof(msg)) != FR_OK) {
            LOG_ERROR("partition %s: opening its Raft group failed: %s", cp->label, msg);
            free(cp);
            continue;
        }
        rc = fr_group_bootstrap(cp->g, ids, (unsigned)t->rf, msg, sizeof(msg));
        if (rc != FR_OK && rc != FR_ERR_EXISTS)
            LOG_ERROR("partition %s: bootstrap failed: %s", cp->label, msg);
        if (cp->p != NULL)
            cp->p->replica = cp;
        t->parts[i] = cp;
        if (fr_group_start(cp->g, msg, sizeof(msg)) != FR_OK)
            LOG_ERROR("partition %s: starting its Raft group failed: %s", cp->label, msg);
    }
}

static void topic_free(struct cl_topic *t)
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
        struct cl_part *cp = t->parts[i];
        if (cp == NULL)
            continue;
        if (cp->p != NULL)
            cp->p->replica = NULL;
        catchup_stop(cp); /* before the log goes */
        cp->p = NULL;
        fr_group_close(cp->g, part_closed, cp);
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
        topic_free(t);
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
    topic_free(t);
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
    if (find_topic(c, name, nl) != NULL)
        return FERRY_ERR_TOPIC_ALREADY_EXISTS;
    struct cl_topic *t;
    int rc = parse_topic(c, m, &t);
    if (rc != 0)
        return rc;
    LOG_INFO("cluster: topic %s created (%d partitions, replication factor %d)", t->name, t->np, t->rf);
    rc = add_topic(c, t);
    if (rc != 0)
        topic_free(t);
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
        topic_free(t);
        return 0;
    }
    return FERRY_ERR_UNKNOWN_TOPIC_OR_PARTITION;
}

static int ctl_apply(void *data, uint64_t index, const uint8_t *buf, size_t len, void **result)
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
    *result = enc(rc);
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
static int ctl_snapshot(void *data, uint8_t **buf, size_t *len)
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
static int ctl_restore(void *data, uint64_t index, const uint8_t *buf, size_t len)
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
        if (r2.err || find_topic(c, name, nl) != NULL)
            continue;
        if (parse_topic(c, &topics->ptr[i], &t) == 0 && add_topic(c, t) != 0)
            topic_free(t);
    }
    rc = 0;
out:
    msgpack_unpacked_destroy(&u);
    if (rc != 0)
        LOG_ERROR("cluster: controller snapshot is malformed");
    return rc;
}

/* ================================ registration ================================ */

static const struct cl_broker *find_broker(const struct ferryd_cluster *c, int64_t id)
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
static void on_tick(uv_timer_t *h)
{
    struct ferryd_cluster *c = h->data;
    struct ferryd *b = c->b;
    char msg[256];
    catchup_tick(c);
    if (c->ctl == NULL || !fr_group_is_leader(c->ctl) || c->reg_in_flight)
        return;
    const struct cl_broker *me = find_broker(c, c->self);
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
        if (find_broker(c, c->members[i].id) != NULL)
            continue;
        c->last_handoff_ms = now;
        LOG_INFO("cluster: handing controller leadership to unregistered broker %" PRId64, c->members[i].id);
        fr_group_transfer(c->ctl, rid(c->members[i].id), on_handoff, c, msg, sizeof(msg));
        return;
    }
}

/* ================================ life cycle ================================ */

static void free_tls(struct ferryd_cluster *c)
{
    if (c->tls_server != NULL)
        ferry_tls_ctx_free(c->tls_server);
    if (c->tls_client != NULL)
        ferry_tls_ctx_free(c->tls_client);
    if (c->tls_fetch != NULL)
        ferry_tls_ctx_free(c->tls_fetch);
    c->tls_server = c->tls_client = c->tls_fetch = NULL;
}

static void on_start_failed_stopped(void *arg)
{
    struct ferryd_cluster *c = arg;
    free_tls(c);
    free(c);
}

int ferryd_cluster_start(struct ferryd *b, struct ferryd_cluster **out, char *errmsg, size_t errmsg_len)
{
    char host[256], dir[4200], why[512];
    int port;
    struct ferryd_cluster *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        snprintf(errmsg, errmsg_len, "cluster: out of memory");
        return -1;
    }
    c->b = b;
    c->self = b->cfg->node_id;
    c->next_gid = FIRST_PARTITION_GROUP;
    c->nmembers = ferryd_parse_members(b->cfg->cluster_members, c->members, FERRYD_MAX_MEMBERS, why, sizeof(why));
    if (c->nmembers <= 0 || ferryd_split_hostport(b->cfg->peer_listen, host, sizeof(host), &port) != 0) {
        snprintf(errmsg, errmsg_len, "cluster.members / peer.listen: %s", c->nmembers <= 0 ? why : "bad address");
        goto err_after_alloc;
    }
    if (b->cfg->peer_security_protocol == FERRYD_SECURITY_TLS) {
        struct ferry_tls_config sc = {.ca_file = b->cfg->tls_ca_file,
                                      .cert_file = b->cfg->peer_tls_cert_file,
                                      .key_file = b->cfg->peer_tls_key_file,
                                      .require_client_cert = 1,
                                      .min_version_tls13 = 1};
        struct ferry_tls_config cc = {.ca_file = b->cfg->tls_ca_file,
                                      .cert_file = b->cfg->peer_tls_client_cert_file,
                                      .key_file = b->cfg->peer_tls_client_key_file,
                                      .min_version_tls13 = 1};
        if ((c->tls_server = ferry_tls_server_ctx_new(&sc, why, sizeof(why))) == NULL ||
            (c->tls_client = ferry_tls_client_ctx_new(&cc, why, sizeof(why))) == NULL) {
            snprintf(errmsg, errmsg_len, "peer TLS: %s", why);
            goto err_after_tls;
        }
    } else {
        LOG_WARN("peer.security.protocol=plaintext: Raft traffic between brokers is neither encrypted nor "
                 "authenticated");
    }
    if (b->cfg->security_protocol == FERRYD_SECURITY_TLS) {
        /* Catch-up Fetches go to the leader's client listener: verified against tls.ca.file, with
         * the peer client certificate (accepted when that listener requires mutual TLS). */
        int has_cert = b->cfg->peer_tls_client_cert_file != NULL && b->cfg->peer_tls_client_cert_file[0] != '\0';
        struct ferry_tls_config fc = {.ca_file = b->cfg->tls_ca_file,
                                      .cert_file = has_cert ? b->cfg->peer_tls_client_cert_file : NULL,
                                      .key_file = has_cert ? b->cfg->peer_tls_client_key_file : NULL,
                                      .min_version_tls13 = b->cfg->tls_min_version == FERRYD_TLS_13};
        if ((c->tls_fetch = ferry_tls_client_ctx_new(&fc, why, sizeof(why))) == NULL)
            LOG_WARN("catch-up TLS client (tls.ca.file): %s; a replica that lacks segment data cannot catch up",
                     why);
    }
    snprintf(dir, sizeof(dir), "%s/raft", b->cfg->data_dir);
    struct fr_node_config nc = {
        .tls_server = c->tls_server,
        .tls_client = c->tls_client,
        .loop = b->loop,
        .node_id = rid(c->self),
        .cluster_id = (uint64_t)b->cfg->cluster_id,
        .listen_host = host,
        .listen_port = port,
        .data_dir = dir,
    };
    if (fr_node_start(&nc, &c->node, why, sizeof(why)) != FR_OK) {
        snprintf(errmsg, errmsg_len, "peer node: %s", why);
        goto err_after_tls;
    }
    uint64_t ids[FERRYD_MAX_MEMBERS];
    for (int i = 0; i < c->nmembers; i++) {
        ids[i] = rid(c->members[i].id);
        if (c->members[i].id != c->self &&
            fr_node_set_peer(c->node, ids[i], c->members[i].host, c->members[i].port, why, sizeof(why)) != FR_OK) {
            snprintf(errmsg, errmsg_len, "peer %" PRId64 ": %s", c->members[i].id, why);
            goto err_after_node;
        }
    }
    struct fr_group_config gc = {
        .group_id = CONTROLLER_GROUP,
        .name = "controller",
        .fsm = {.data = c, .apply = ctl_apply, .snapshot = ctl_snapshot, .restore = ctl_restore},
    };
    if (fr_group_open(c->node, &gc, &c->ctl, why, sizeof(why)) != FR_OK) {
        snprintf(errmsg, errmsg_len, "controller group: %s", why);
        goto err_after_node;
    }
    int rc = fr_group_bootstrap(c->ctl, ids, (unsigned)c->nmembers, why, sizeof(why));
    if ((rc != FR_OK && rc != FR_ERR_EXISTS) || fr_group_start(c->ctl, why, sizeof(why)) != FR_OK) {
        snprintf(errmsg, errmsg_len, "controller group: %s", why);
        goto err_after_node;
    }
    uv_timer_init(b->loop, &c->tick);
    c->tick.data = c;
    uv_timer_init(b->loop, &c->handoff_timer);
    c->handoff_timer.data = c;
    uv_timer_start(&c->tick, on_tick, TICK_MS, TICK_MS);
    LOG_INFO("cluster %" PRId64 ": node %" PRId64 " of %d, peer port %d", b->cfg->cluster_id, c->self, c->nmembers,
             fr_node_port(c->node));
    *out = c;
    return 0;

err_after_node:
    /* The node frees itself (and the controller group) in its stop callback, then c. */
    fr_node_stop(c->node, on_start_failed_stopped, c);
    return -1;
err_after_tls:
    free_tls(c);
err_after_alloc:
    free(c);
    return -1;
}

int ferryd_cluster_peer_port(const struct ferryd_cluster *c)
{
    return fr_node_port(c->node);
}

static void on_node_stopped(void *arg)
{
    struct ferryd_cluster *c = arg;
    void (*cb)(void *) = c->stop_cb;
    void *cb_arg = c->stop_arg;
    for (unsigned i = 0; i < c->ntopics; i++) {
        struct cl_topic *t = c->topics[i];
        for (int32_t k = 0; k < t->np; k++) {
            if (t->parts[k] == NULL)
                continue;
            if (t->parts[k]->p != NULL)
                t->parts[k]->p->replica = NULL;
            part_free(t->parts[k]);
        }
        topic_free(t);
    }
    free(c->topics);
    free_tls(c); /* the node that borrowed them is gone */
    free(c);
    cb(cb_arg);
}

static void on_handoff_timer_closed(uv_handle_t *h)
{
    struct ferryd_cluster *c = h->data;
    fr_node_stop(c->node, on_node_stopped, c);
}

static void on_tick_closed(uv_handle_t *h)
{
    struct ferryd_cluster *c = h->data;
    uv_timer_stop(&c->handoff_timer);
    uv_close((uv_handle_t *)&c->handoff_timer, on_handoff_timer_closed);
}

void ferryd_cluster_stop(struct ferryd_cluster *c, void (*cb)(void *arg), void *arg)
{
    c->stop_cb = cb;
    c->stop_arg = arg;
    c->handoff_cb = NULL; /* a hand-off still running is abandoned */
    for (unsigned i = 0; i < c->ntopics; i++)
        for (int32_t k = 0; k < c->topics[i]->np; k++)
            if (c->topics[i]->parts[k] != NULL)
                catchup_cancel_fetch(c->topics[i]->parts[k]); /* its connection closes while the loop runs */
    uv_timer_stop(&c->tick);
    uv_close((uv_handle_t *)&c->tick, on_tick_closed);
}

static void handoff_done(struct ferryd_cluster *c)
{
    void (*cb)(void *) = c->handoff_cb;
    c->handoff_cb = NULL;
    uv_timer_stop(&c->handoff_timer);
    if (cb != NULL)
        cb(c->handoff_arg);
}

static void on_handed_off(void *arg, int status)
{
    struct ferryd_cluster *c = arg;
    (void)status; /* FR_ERR_BUSY: still leader after an election timeout; the stop goes on anyway */
    assert(c->handoffs > 0);
    if (--c->handoffs == 0 && c->handoff_cb != NULL)
        handoff_done(c);
}

static void on_handoff_timeout(uv_timer_t *h)
{
    struct ferryd_cluster *c = h->data;
    LOG_WARN("cluster: %u leadership transfer(s) still running at shutdown; stopping anyway", c->handoffs);
    handoff_done(c);
}

static void handoff_group(struct ferryd_cluster *c, struct fr_group *g)
{
    char msg[256];
    if (g == NULL || !fr_group_is_leader(g))
        return;
    if (fr_group_transfer(g, 0, on_handed_off, c, msg, sizeof(msg)) == FR_OK)
        c->handoffs++;
    else
        LOG_WARN("cluster: %s: leadership transfer refused: %s", fr_group_name(g), msg);
}

void ferryd_cluster_handoff(struct ferryd_cluster *c, void (*cb)(void *arg), void *arg)
{
    assert(c->handoff_cb == NULL);
    c->handoff_cb = cb;
    c->handoff_arg = arg;
    uv_timer_stop(&c->tick); /* no more registrations or controller hand-offs */
    for (unsigned i = 0; i < c->ntopics; i++)
        for (int32_t k = 0; k < c->topics[i]->np; k++)
            if (c->topics[i]->parts[k] != NULL)
                handoff_group(c, c->topics[i]->parts[k]->g);
    handoff_group(c, c->ctl);
    if (c->handoffs == 0) {
        handoff_done(c);
        return;
    }
    LOG_INFO("cluster: transferring %u leadership(s) before stopping", c->handoffs);
    uv_timer_start(&c->handoff_timer, on_handoff_timeout, HANDOFF_MAX_MS, 0);
}

/* ================================ queries ================================ */

int64_t ferryd_cluster_producer_id(const struct ferryd_cluster *c, int64_t local)
{
    int slot = 0;
    while (slot < c->nmembers && c->members[slot].id != c->self)
        slot++;
    assert(slot < c->nmembers); /* config validation: node.id is a member */
    assert(local >= 0 && local < INT64_MAX / FERRYD_MAX_MEMBERS);
    return local * FERRYD_MAX_MEMBERS + slot;
}

int64_t ferryd_cluster_controller_id(const struct ferryd_cluster *c)
{
    uint64_t l = fr_group_leader(c->ctl, NULL);
    return l == 0 ? -1 : (int64_t)l - 1;
}

int ferryd_cluster_is_controller(const struct ferryd_cluster *c)
{
    return fr_group_is_leader(c->ctl);
}

unsigned ferryd_cluster_broker_count(const struct ferryd_cluster *c)
{
    return c->nbrokers;
}

void ferryd_cluster_broker_at(const struct ferryd_cluster *c, unsigned i, int64_t *id, const char **host, int *port)
{
    assert(i < c->nbrokers);
    *id = c->brokers[i].id;
    *host = c->brokers[i].host;
    *port = c->brokers[i].port;
}

int ferryd_cluster_partition(const struct ferryd_cluster *c, const char *topic, size_t len, int32_t partition,
                             int64_t *leader, const int64_t **replicas, int *rf)
{
    const struct cl_topic *t = find_topic(c, topic, len);
    if (t == NULL || partition < 0 || partition >= t->np)
        return -1;
    *replicas = &t->replicas[partition * t->rf];
    *rf = t->rf;
    *leader = (*replicas)[0];
    if (t->parts[partition] != NULL) {
        uint64_t l = fr_group_leader(t->parts[partition]->g, NULL);
        *leader = l == 0 ? -1 : (int64_t)l - 1;
    }
    return 0;
}

int ferryd_cluster_check_leader(const struct ferryd_cluster *c, struct ferryd_partition *p, int64_t *leader_id,
                                char *msg, size_t msg_len)
{
    struct cl_part *cp = p->replica;
    *leader_id = -1;
    if (c == NULL)
        return 0;
    if (cp == NULL) {
        snprintf(msg, msg_len, "broker %" PRId64 " does not replicate %s (yet); leader_id=-1", c->self, p->label);
        return FERRY_ERR_NOT_LEADER;
    }
    if (cp->catching_up) {
        snprintf(msg, msg_len, "broker %" PRId64 " is catching up on %s (its segments lack the leader's data); "
                 "leader_id=-1", cp->c->self, cp->label);
        return FERRY_ERR_NOT_LEADER;
    }
    if (fr_group_is_leader(cp->g))
        return 0;
    uint64_t l = fr_group_leader(cp->g, NULL);
    *leader_id = l == 0 ? -1 : (int64_t)l - 1;
    snprintf(msg, msg_len, "broker %" PRId64 " is not the leader of %s; leader_id=%" PRId64, cp->c->self, cp->label,
             *leader_id);
    return FERRY_ERR_NOT_LEADER;
}

/* ================================ proposals ================================ */

struct pending {
    ferryd_cluster_produce_cb produce_cb;
    ferryd_cluster_done_cb done_cb;
    void *arg;
};

static void on_proposed(void *arg, int status, uint64_t index, void *result)
{
    struct pending *pd = arg;
    char msg[128];
    int err = 0;
    int64_t v = -1;
    (void)index;
    if (status != FR_OK) {
        snprintf(msg, sizeof(msg), "not committed: %s (leadership changed; retry)", fr_strerror(status));
        err = pd->done_cb != NULL ? FERRY_ERR_NOT_CONTROLLER : FERRY_ERR_NOT_LEADER;
    } else if (result == NULL) {
        snprintf(msg, sizeof(msg), "the batch was refused when applied");
        err = FERRY_ERR_CORRUPT_BATCH;
    } else {
        v = dec(result);
        msg[0] = '\0';
    }
    if (pd->produce_cb != NULL) {
        pd->produce_cb(pd->arg, err, v, msg);
    } else {
        if (err == 0 && v != 0) {
            err = (int)v;
            snprintf(msg, sizeof(msg), "%s", err == FERRY_ERR_TOPIC_ALREADY_EXISTS ? "topic already exists"
                                             : err == FERRY_ERR_UNKNOWN_TOPIC_OR_PARTITION ? "no such topic"
                                                                                           : "refused by the controller");
        }
        pd->done_cb(pd->arg, err, msg);
    }
    free(pd);
}

static int propose(struct fr_group *g, const void *buf, size_t len, struct pending *pd, int not_leader, char *msg,
                   size_t msg_len)
{
    char why[256];
    int rc = fr_group_propose(g, buf, len, on_proposed, pd, why, sizeof(why));
    if (rc == FR_OK)
        return 0;
    free(pd);
    snprintf(msg, msg_len, "%s", why);
    return rc == FR_ERR_NOT_LEADER || rc == FR_ERR_LEADERSHIP_LOST ? not_leader : FERRY_ERR_UNKNOWN;
}

int ferryd_cluster_produce(struct ferryd_partition *p, const uint8_t *batch, size_t len, ferryd_cluster_produce_cb cb,
                           void *arg, char *msg, size_t msg_len)
{
    struct cl_part *cp = p->replica;
    assert(cp != NULL);
    struct pending *pd = calloc(1, sizeof(*pd));
    if (pd == NULL) {
        snprintf(msg, msg_len, "out of memory");
        return FERRY_ERR_UNKNOWN;
    }
    pd->produce_cb = cb;
    pd->arg = arg;
    return propose(cp->g, batch, len, pd, FERRY_ERR_NOT_LEADER, msg, msg_len);
}

static int ctl_propose(struct ferryd_cluster *c, msgpack_sbuffer *sb, ferryd_cluster_done_cb cb, void *arg, char *msg,
                       size_t msg_len)
{
    struct pending *pd = calloc(1, sizeof(*pd));
    int rc;
    if (pd == NULL) {
        snprintf(msg, msg_len, "out of memory");
        rc = FERRY_ERR_UNKNOWN;
    } else {
        pd->done_cb = cb;
        pd->arg = arg;
        rc = propose(c->ctl, sb->data, sb->size, pd, FERRY_ERR_NOT_CONTROLLER, msg, msg_len);
    }
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
    if (find_topic(c, name, len) != NULL) {
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
    if (find_topic(c, name, len) == NULL) {
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
