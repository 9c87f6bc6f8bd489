/* records.c: building the offsets topic's records of one change, and writing them through the partition. */
#include "groups/groups_int.h"

#include <stdlib.h>
#include <string.h>

#include "cluster/cluster.h"
#include "ferry_errors.h"
#include "logging.h"
#include "proto/clock.h"

void fg_records_init(struct fg_records *r)
{
    memset(r, 0, sizeof(*r));
}

void fg_records_free(struct fg_records *r)
{
    if (r->bb != NULL)
        ferry_batch_builder_free(r->bb);
    memset(r, 0, sizeof(*r));
}

/* Adds one record; key and value sbuffers are destroyed. vnull: a tombstone. */
static void add(struct fg_records *r, msgpack_sbuffer *key, msgpack_sbuffer *val, int vnull)
{
    if (!r->failed && r->bb == NULL) {
        r->bb = ferry_batch_builder_new(FERRY_COMPRESSION_NONE, -1, -1, -1);
        if (r->bb == NULL)
            r->failed = 1;
    }
    if (!r->failed && ferry_batch_builder_add(r->bb, ferry_wallclock_ms(), key->data, (ssize_t)key->size,
                                              vnull ? NULL : val->data, vnull ? -1 : (ssize_t)val->size, NULL,
                                              0) != 0)
        r->failed = 1;
    if (!r->failed)
        r->n++;
    msgpack_sbuffer_destroy(key);
    msgpack_sbuffer_destroy(val);
}

void fg_rec_offset(struct fg_records *r, const struct fg_group *g, const struct fg_offset *o)
{
    msgpack_sbuffer k, v;
    msgpack_sbuffer_init(&k);
    msgpack_sbuffer_init(&v);
    fg_key_offset(&k, g->id, g->id_len, g->topics[o->topic], o->partition);
    struct fg_offset_value ov = {o->offset, o->metadata, o->metadata ? strlen(o->metadata) : 0, o->member_epoch,
                                 o->commit_ms};
    fg_value_offset(&v, &ov);
    add(r, &k, &v, 0);
}

void fg_rec_offset_tombstone(struct fg_records *r, const struct fg_group *g, uint32_t topic, int32_t partition)
{
    msgpack_sbuffer k, v;
    msgpack_sbuffer_init(&k);
    msgpack_sbuffer_init(&v);
    fg_key_offset(&k, g->id, g->id_len, g->topics[topic], partition);
    add(r, &k, &v, 1);
}

/*
 * The record's "assigned" is what the member may still hold: its assignment plus what it has not yet
 * acknowledged giving up. After a failover the new coordinator then hands none of those partitions to
 * another member before the old owner's acknowledgement (at the cost of revoking them once more).
 */
void fg_rec_member(struct fg_records *r, const struct fg_group *g, const struct fg_member *m)
{
    msgpack_sbuffer k, v;
    uint32_t nheld = m->nassigned + m->nrevoking;
    const char **subs = calloc(m->nsubs ? m->nsubs : 1, sizeof(*subs));
    struct fg_tp *held = calloc(nheld ? nheld : 1, sizeof(*held));
    struct fg_topic_parts *tps = calloc(nheld ? nheld : 1, sizeof(*tps));
    int32_t *parts = calloc(nheld ? nheld : 1, sizeof(*parts));
    if (subs == NULL || held == NULL || tps == NULL || parts == NULL) {
        r->failed = 1;
        goto out;
    }
    for (uint32_t i = 0; i < m->nsubs; i++)
        subs[i] = g->topics[m->subs[i]];
    if (m->nassigned > 0)
        memcpy(held, m->assigned, m->nassigned * sizeof(*held));
    if (m->nrevoking > 0)
        memcpy(held + m->nassigned, m->revoking, m->nrevoking * sizeof(*held));
    qsort(held, nheld, sizeof(*held), fg_tp_cmp);
    uint32_t nt = 0;
    for (uint32_t i = 0; i < nheld; i++) {
        parts[i] = held[i].partition;
        if (i == 0 || held[i].topic != held[i - 1].topic) {
            tps[nt].topic = g->topics[held[i].topic];
            tps[nt].partitions = &parts[i];
            tps[nt].n = 0;
            nt++;
        }
        tps[nt - 1].n++;
    }
    struct fg_member_value mv = {
        .instance_id = m->instance_id,
        .client_id = m->client_id,
        .host = m->host,
        .subscribed = subs,
        .nsubscribed = m->nsubs,
        .member_epoch = m->epoch,
        .assigned = tps,
        .nassigned = nt,
        .session_timeout_ms = m->session_timeout_ms,
        .rebalance_timeout_ms = m->rebalance_timeout_ms,
    };
    msgpack_sbuffer_init(&k);
    msgpack_sbuffer_init(&v);
    fg_key_member(&k, g->id, g->id_len, m->id);
    fg_value_member(&v, &mv);
    add(r, &k, &v, 0);
out:
    free(subs);
    free(held);
    free(tps);
    free(parts);
}

void fg_rec_member_tombstone(struct fg_records *r, const struct fg_group *g, const char *member_id)
{
    msgpack_sbuffer k, v;
    msgpack_sbuffer_init(&k);
    msgpack_sbuffer_init(&v);
    fg_key_member(&k, g->id, g->id_len, member_id);
    add(r, &k, &v, 1);
}

void fg_rec_group(struct fg_records *r, const struct fg_group *g)
{
    msgpack_sbuffer k, v;
    msgpack_sbuffer_init(&k);
    msgpack_sbuffer_init(&v);
    fg_key_group(&k, g->id, g->id_len);
    struct fg_group_value gv = {g->group_epoch, g->assignment_epoch};
    fg_value_group(&v, &gv);
    add(r, &k, &v, 0);
}

void fg_rec_group_tombstone(struct fg_records *r, const struct fg_group *g)
{
    msgpack_sbuffer k, v;
    msgpack_sbuffer_init(&k);
    msgpack_sbuffer_init(&v);
    fg_key_group(&k, g->id, g->id_len);
    add(r, &k, &v, 1);
}

/* ---- writes ---- */

/* A write in flight. Holds no pointer to the coordinator: the callbacks may come after it is gone. */
struct write_ctx {
    struct ferryd_waiter waiter; /* standalone: durability of the appended batch */
    fg_write_cb cb;
    void *arg;
    char label[64];
};

static void write_done(struct write_ctx *w, int error, const char *msg)
{
    if (error == FERRY_ERR_NOT_LEADER)
        error = FERRY_ERR_NOT_COORDINATOR;
    if (error != 0)
        LOG_WARN("groups: write to %s failed (error %d): %s", w->label, error, msg ? msg : "");
    if (w->cb != NULL)
        w->cb(w->arg, error, msg);
    free(w);
}

static void on_committed(void *arg, int error, int64_t base_offset, const char *msg)
{
    (void)base_offset;
    write_done(arg, error, msg);
}

static void on_durable(struct ferryd_waiter *wt, int error, const char *msg)
{
    write_done((struct write_ctx *)(void *)wt, error, msg);
}

void fg_write(struct ferryd_coord *co, int32_t slot, struct fg_records *recs, fg_write_cb cb, void *arg)
{
    char msg[FERRY_MAX_ERROR_MESSAGE];
    uint8_t *batch = NULL;
    size_t len = 0;
    int64_t base, next;
    int rc;

    if (recs->n == 0 && !recs->failed) {
        fg_records_free(recs);
        if (cb != NULL)
            cb(arg, 0, NULL);
        return;
    }
    struct write_ctx *w = calloc(1, sizeof(*w));
    if (w == NULL || recs->failed) {
        free(w);
        fg_records_free(recs);
        if (cb != NULL)
            cb(arg, FERRY_ERR_UNKNOWN, "out of memory building the group records");
        return;
    }
    w->cb = cb;
    w->arg = arg;
    snprintf(w->label, sizeof(w->label), "%s/%d", FG_OFFSETS_TOPIC, slot);
    rc = ferry_batch_builder_seal(recs->bb, &batch, &len);
    recs->bb = NULL;
    fg_records_free(recs);
    if (rc != 0) {
        write_done(w, FERRY_ERR_UNKNOWN, "sealing the group records failed");
        return;
    }
    struct ferryd_topic *t = ferryd_topics_find(co->b->topics, FG_OFFSETS_TOPIC, strlen(FG_OFFSETS_TOPIC));
    struct ferryd_partition *p = t == NULL ? NULL : ferryd_topic_partition(t, slot);
    if (p == NULL) {
        free(batch);
        write_done(w, FERRY_ERR_NOT_COORDINATOR, "the offsets partition is gone");
        return;
    }
    if (p->replica != NULL) {
        rc = ferryd_cluster_produce(p, batch, len, on_committed, w, msg, sizeof(msg));
        free(batch); /* proposals are copied */
        if (rc != 0)
            write_done(w, rc, msg);
        return;
    }
    if (co->b->cluster != NULL) {
        free(batch);
        write_done(w, FERRY_ERR_NOT_COORDINATOR, "this broker does not replicate the offsets partition");
        return;
    }
    rc = ferryd_partition_append(p, batch, len, FERRY_MAX_BATCH_BYTES, &base, &next, msg, sizeof(msg));
    free(batch);
    if (rc != 0) {
        write_done(w, rc, msg);
        return;
    }
    w->waiter.offset = next;
    w->waiter.cb = on_durable;
    if (ferryd_partition_wait(p, &w->waiter) == 1)
        write_done(w, 0, NULL);
}

struct reply_ctx {
    struct ferryd_req *req;
    msgpack_sbuffer sb;
};

static void on_reply_written(void *arg, int error, const char *msg)
{
    struct reply_ctx *rc = arg;
    if (error == 0) {
        ferryd_req_reply(rc->req, &rc->sb);
    } else {
        msgpack_sbuffer_destroy(&rc->sb);
        ferryd_req_error(rc->req, error, "writing the group state: %s", msg ? msg : "failed");
    }
    free(rc);
}

void fg_write_then_reply(struct ferryd_coord *co, int32_t slot, struct fg_records *recs, struct ferryd_req *req,
                         msgpack_sbuffer *sb)
{
    struct reply_ctx *rc = malloc(sizeof(*rc));
    if (rc == NULL) {
        fg_records_free(recs);
        msgpack_sbuffer_destroy(sb);
        ferryd_req_error(req, FERRY_ERR_UNKNOWN, "broker out of memory");
        return;
    }
    rc->req = req;
    rc->sb = *sb;
    fg_write(co, slot, recs, on_reply_written, rc);
}
