/* produce.c: Produce (api 4): validate and append each batch, answer once every partition is durable. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ferry_errors.h"
#include "cluster/cluster.h"
#include "groups/coordinator.h"
#include "handlers/handlers.h"
#include "logging.h"
#include "proto/batch.h"

struct produce_state;

/* One partition of the request: its result, and its place in the partition's durable queue. */
struct produce_part {
    struct ferryd_waiter waiter;
    struct produce_state *st;
    int64_t partition;
    int error;
    char *errmsg; /* malloc'd, only on error */
    int64_t base_offset;
    int64_t log_start_offset;
    int64_t leader_id; /* with NOT_LEADER: the leader as known here (-1 unknown) */
};

struct produce_topic {
    char *name; /* malloc'd copy, name_len bytes */
    size_t name_len;
    uint32_t nparts;
    struct produce_part *parts;
};

struct produce_state {
    struct ferryd_req *req;
    int acks;
    uint32_t pending; /* partitions not yet durable, +1 while the request is being processed */
    uint32_t ntopics;
    struct produce_topic *topics;
};

static void state_free(struct produce_state *st)
{
    for (uint32_t i = 0; st->topics != NULL && i < st->ntopics; i++) {
        for (uint32_t k = 0; st->topics[i].parts != NULL && k < st->topics[i].nparts; k++)
            free(st->topics[i].parts[k].errmsg);
        free(st->topics[i].parts);
        free(st->topics[i].name);
    }
    free(st->topics);
    free(st);
}

static void part_fail(struct produce_part *pp, int error, const char *msg)
{
    pp->error = error;
    free(pp->errmsg);
    pp->errmsg = strdup(msg != NULL ? msg : "");
}

/* Every partition is done: answer (or not, for acks=0) and free the state. */
static void finish(struct produce_state *st)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    if (st->acks == 0) {
        ferryd_req_drop(st->req);
        state_free(st);
        return;
    }
    ferryd_resp_begin(st->req, &sb, &pk);
    msgpack_pack_map(&pk, 1);
    ferry_pack_key(&pk, "topics");
    msgpack_pack_array(&pk, st->ntopics);
    for (uint32_t i = 0; i < st->ntopics; i++) {
        const struct produce_topic *t = &st->topics[i];
        msgpack_pack_map(&pk, 2);
        ferry_pack_key(&pk, "name");
        ferry_pack_strn(&pk, t->name, t->name_len);
        ferry_pack_key(&pk, "partitions");
        msgpack_pack_array(&pk, t->nparts);
        for (uint32_t k = 0; k < t->nparts; k++) {
            const struct produce_part *pp = &t->parts[k];
            msgpack_pack_map(&pk, 6);
            ferry_pack_key(&pk, "partition");
            msgpack_pack_int64(&pk, pp->partition);
            ferry_pack_key(&pk, "error");
            msgpack_pack_int(&pk, pp->error);
            ferry_pack_key(&pk, "error_message");
            ferryd_pack_errmsg(&pk, pp->errmsg);
            ferry_pack_key(&pk, "base_offset");
            msgpack_pack_int64(&pk, pp->error ? -1 : pp->base_offset);
            ferry_pack_key(&pk, "log_start_offset");
            msgpack_pack_int64(&pk, pp->log_start_offset);
            ferry_pack_key(&pk, "leader_id");
            msgpack_pack_int64(&pk, pp->error == FERRY_ERR_NOT_LEADER ? pp->leader_id : -1);
        }
    }
    ferryd_req_reply(st->req, &sb);
    state_free(st);
}

static void part_done(struct produce_state *st)
{
    if (--st->pending == 0)
        finish(st);
}

static void on_durable(struct ferryd_waiter *w, int error, const char *errmsg)
{
    struct produce_part *pp = (struct produce_part *)(void *)((char *)w - offsetof(struct produce_part, waiter));
    if (error != 0)
        part_fail(pp, error, errmsg);
    part_done(pp->st);
}

static void on_committed(void *arg, int error, int64_t base_offset, const char *msg)
{
    struct produce_part *pp = arg;
    if (error != 0)
        part_fail(pp, error, msg);
    else
        pp->base_offset = base_offset;
    part_done(pp->st);
}

static void on_committed_acks0(void *arg, int error, int64_t base_offset, const char *msg)
{
    (void)arg;
    (void)base_offset;
    if (error != 0)
        LOG_DEBUG("produce with acks=0 not committed (error %d): %s", error, msg);
}

/*
 * A replicated partition (this broker leads its group): validate, propose, and answer when the
 * batch is committed by a majority and applied here (acks=-1/1 alike: Raft has no weaker ack).
 */
static void produce_replicated(struct ferryd *b, struct produce_state *st, struct ferryd_partition *p,
                               struct produce_part *pp, const uint8_t *batch, size_t len)
{
    char msg[FERRY_MAX_ERROR_MESSAGE];
    struct ferry_batch_header h;
#ifdef FERRY_BUG_SWITCHES
    /* debug.bug=ack-before-commit: answered once proposed, with a guessed offset (loses acked writes
     * when the leader dies before the commit). */
    const int early = st->acks != 0 && b->cfg->debug_bug == FERRYD_BUG_ACK_BEFORE_COMMIT;
#else
    const int early = 0;
#endif
    int rc = ferry_batch_validate(batch, len, (size_t)b->cfg->batch_max_bytes, &h, msg, sizeof(msg));
    if (rc == 0)
        rc = ferry_batch_check_records(batch, len, &h, msg, sizeof(msg));
    if (rc == 0)
        rc = ferryd_cluster_produce(p, batch, len, st->acks == 0 || early ? on_committed_acks0 : on_committed,
                                    st->acks == 0 || early ? NULL : pp, msg, sizeof(msg));
    if (rc != 0) {
        LOG_DEBUG("produce to %s refused (error %d): %s", p->label, rc, msg);
        part_fail(pp, rc, msg);
        return;
    }
#ifdef FERRY_BUG_SWITCHES
    if (early) {
        int64_t end = ferry_log_end_offset(p->log);
        pp->base_offset = p->bug_next_offset > end ? p->bug_next_offset : end;
        p->bug_next_offset = pp->base_offset + (int64_t)h.record_count;
        return;
    }
#endif
    if (st->acks != 0 && !early)
        st->pending++;
}

/* Appends one partition's batch; leaves pp->error set, or a waiter queued (pending counted). */
static void produce_one(struct ferryd *b, struct produce_state *st, struct ferryd_topic *topic,
                        struct produce_part *pp, const uint8_t *batch, size_t len)
{
    char msg[FERRY_MAX_ERROR_MESSAGE];
    int64_t next;
    int rc;
    pp->log_start_offset = -1;
    pp->leader_id = -1;
    if (topic == NULL) {
        part_fail(pp, FERRY_ERR_UNKNOWN_TOPIC_OR_PARTITION, "no such topic");
        return;
    }
    struct ferryd_partition *p = ferryd_topic_partition(topic, pp->partition);
    if (p == NULL) { /* in a cluster: NOT_LEADER when the partition lives on other brokers */
        rc = ferryd_cluster_check_absent(b->cluster, topic->name, strlen(topic->name), pp->partition, &pp->leader_id,
                                         msg, sizeof(msg));
        part_fail(pp, rc, msg);
        return;
    }
    pp->log_start_offset = ferry_log_start_offset(p->log);
    rc = ferryd_cluster_check_leader(b->cluster, p, &pp->leader_id, msg, sizeof(msg));
    if (rc != 0) {
        part_fail(pp, rc, msg);
        return;
    }
    if (p->replica != NULL) {
        produce_replicated(b, st, p, pp, batch, len);
        return;
    }
    /*
     * The batch points into the request frame, which the transport discards after on_frame
     * (server.c): the log rewrites base_offset in that buffer rather than in a copy.
     */
    rc = ferryd_partition_append(p, (uint8_t *)(uintptr_t)batch, len, (size_t)b->cfg->batch_max_bytes,
                                     &pp->base_offset, &next, msg, sizeof(msg));
    pp->log_start_offset = ferry_log_start_offset(p->log);
    if (rc != 0) {
        LOG_DEBUG("produce to %s refused (error %d): %s", p->label, rc, msg);
        part_fail(pp, rc, msg);
        return;
    }
    if (st->acks == 0 || !b->cfg->flush_before_ack)
        return; /* answered now; the sync the append started runs in the background */
    pp->waiter.offset = next;
    pp->waiter.cb = on_durable;
    st->pending++;
    if (ferryd_partition_wait(p, &pp->waiter) == 1)
        st->pending--;
}

void ferryd_handle_produce(struct ferryd_req *req, const msgpack_object *body)
{
    struct ferryd *b = req->broker;
    struct ferry_mp_reader rd = {0};
    size_t len;

    int64_t acks = ferry_mp_int_range(&rd, body, "acks", -1, 0, -1, 1);
    if (rd.err) {
        ferryd_req_error(req, FERRY_ERR_INVALID_REQUEST, "%s", rd.errmsg);
        return;
    }
    ferry_mp_int(&rd, body, "timeout_ms", 0, 0); /* accepted; a single broker has no replicas to wait for */
    const msgpack_object_array *topics = ferry_mp_array(&rd, body, "topics", 1);
    for (uint32_t i = 0; !rd.err && i < topics->size; i++) {
        const msgpack_object *tm = ferry_mp_elem_map(&rd, topics, i, "topics");
        const msgpack_object_array *parts = tm ? ferry_mp_array(&rd, tm, "partitions", 1) : NULL;
        if (tm != NULL)
            ferry_mp_str(&rd, tm, "name", &len, 1);
        for (uint32_t k = 0; !rd.err && parts != NULL && k < parts->size; k++) {
            const msgpack_object *pm = ferry_mp_elem_map(&rd, parts, k, "partitions");
            if (pm == NULL)
                break;
            ferry_mp_int_range(&rd, pm, "partition", 0, 1, 0, INT32_MAX);
            ferry_mp_bin(&rd, pm, "batch", &len, 1);
        }
    }
    if (rd.err) {
        if (acks == 0) {
            LOG_WARN("produce with acks=0 dropped (no response is sent): %s", rd.errmsg);
            ferryd_req_drop(req);
        } else {
            ferryd_req_error(req, FERRY_ERR_INVALID_REQUEST, "%s", rd.errmsg);
        }
        return;
    }

    struct produce_state *st = calloc(1, sizeof(*st));
    if (st == NULL || (topics->size > 0 && (st->topics = calloc(topics->size, sizeof(*st->topics))) == NULL))
        goto err_nomem;
    st->req = req;
    st->acks = (int)acks;
    st->ntopics = topics->size;
    for (uint32_t i = 0; i < topics->size; i++) {
        const msgpack_object *tm = &topics->ptr[i];
        const char *name = ferry_mp_str(&rd, tm, "name", &len, 1);
        const msgpack_object_array *parts = ferry_mp_array(&rd, tm, "partitions", 1);
        struct produce_topic *t = &st->topics[i];
        t->name = malloc(len + 1);
        if (t->name == NULL || (parts->size > 0 && (t->parts = calloc(parts->size, sizeof(*t->parts))) == NULL))
            goto err_nomem;
        memcpy(t->name, name, len);
        t->name[len] = '\0';
        t->name_len = len;
        t->nparts = parts->size;
    }

    st->pending = 1; /* held until every partition below has been handed to its log */
    for (uint32_t i = 0; i < st->ntopics; i++) {
        struct produce_topic *t = &st->topics[i];
        const msgpack_object_array *parts = ferry_mp_array(&rd, &topics->ptr[i], "partitions", 1);
        struct ferryd_topic *topic = ferryd_topics_find(b->topics, t->name, t->name_len);
        char imsg[FERRY_MAX_ERROR_MESSAGE];
        int internal = ferryd_coord_internal_topic(t->name, t->name_len, "produce to", imsg, sizeof(imsg));
        for (uint32_t k = 0; k < t->nparts; k++) {
            struct produce_part *pp = &t->parts[k];
            size_t blen;
            pp->st = st;
            pp->partition = ferry_mp_int(&rd, &parts->ptr[k], "partition", 0, 1);
            if (internal) { /* the coordinator appends its records through its own path (groups/records.c) */
                pp->log_start_offset = -1;
                pp->leader_id = -1;
                part_fail(pp, FERRY_ERR_INVALID_REQUEST, imsg);
                continue;
            }
            const uint8_t *batch = ferry_mp_bin(&rd, &parts->ptr[k], "batch", &blen, 1);
            produce_one(b, st, topic, pp, batch, blen);
        }
    }
    part_done(st);
    return;

err_nomem:
    if (st != NULL)
        state_free(st);
    LOG_ERROR("produce: out of memory");
    ferryd_req_error(req, FERRY_ERR_UNKNOWN, "broker out of memory");
}
