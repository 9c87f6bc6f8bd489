/* partition.c: a partition's log with group commit (one fsync for many appends) and durable-offset waiters. */
#include "partition.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "ferry_errors.h"
#include "logging.h"
#include "proto/batch.h"
#include "proto/clock.h"
#include "producer_state_load.h"

int ferryd_partition_open(struct ferryd_partition_env *env, const char *dir, const char *label, int32_t id,
                          const struct ferry_log_config *cfg, struct ferryd_partition **out, char *errmsg,
                          size_t errmsg_len)
{
    char why[256];
    struct ferryd_partition *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        snprintf(errmsg, errmsg_len, "partition %s: out of memory", label);
        return FERRY_ERR_STORAGE_ERROR;
    }
    int rc = ferry_log_open(dir, cfg, &p->log, why, sizeof(why));
    if (rc != 0) {
        snprintf(errmsg, errmsg_len, "partition %s: %s", label, why);
        free(p);
        return rc;
    }
    p->env = env;
    p->id = id;
    snprintf(p->label, sizeof(p->label), "%s", label);
    ferryd_pstate_init(&p->pstate);
    rc = ferryd_pstate_load_from_log(&p->pstate, p->log, why, sizeof(why));
    if (rc != 0) {
        snprintf(errmsg, errmsg_len, "partition %s: %s", label, why);
        ferryd_pstate_free(&p->pstate);
        ferry_log_close(p->log);
        free(p);
        return rc;
    }
    *out = p;
    return 0;
}

/* Answers queued waiters: those durable now with 0, or all of them with error. */
static void complete_waiters(struct ferryd_partition *p, int error, const char *errmsg)
{
    int64_t durable = ferry_log_durable_offset(p->log);
    while (p->wait_head != NULL && (error != 0 || p->wait_head->offset <= durable)) {
        struct ferryd_waiter *w = p->wait_head;
        p->wait_head = w->next;
        if (p->wait_head == NULL)
            p->wait_tail = NULL;
        w->next = NULL;
        w->cb(w, error, errmsg);
    }
}

/*
 * Calls every watcher once. The list is detached first (each watch unregistered), so callbacks may
 * unwatch anything; they must not re-watch synchronously (fetch re-arms from a timer).
 */
static void notify_watchers(struct ferryd_partition *p)
{
    struct ferryd_watch *list = p->watchers;
    p->watchers = NULL;
    for (struct ferryd_watch *x = list; x != NULL; x = x->next)
        x->p = NULL;
    while (list != NULL) {
        struct ferryd_watch *x = list;
        list = x->next;
        x->next = x->prev = NULL;
        x->cb(x);
    }
}

static void destroy_dead(struct ferryd_partition *p)
{
    char why[256];
    complete_waiters(p, FERRY_ERR_UNKNOWN_TOPIC_OR_PARTITION, "topic deleted");
    if (ferry_log_destroy(p->log, why, sizeof(why)) != 0)
        LOG_ERROR("partition %s: removing its directory failed: %s", p->label, why);
    p->log = NULL;
    ferryd_pstate_free(&p->pstate);
    if (p->on_deleted != NULL)
        p->on_deleted(p, p->on_deleted_arg);
    free(p);
}

static void sync_work(uv_work_t *work)
{
    struct ferryd_partition *p = work->data;
    p->sync_status = ferry_log_sync_run(p->sync);
}

static void sync_after(uv_work_t *work, int status)
{
    struct ferryd_partition *p = work->data;
    struct ferryd_partition_env *env = p->env;
    int rc = status != 0 ? status : p->sync_status;
    int64_t before = ferry_log_durable_offset(p->log);

    assert(p->sync != NULL);
    ferry_log_sync_end(p->log, p->sync, rc);
    p->sync = NULL;
    assert(env->syncs_in_flight > 0);
    env->syncs_in_flight--;

    if (rc != 0 && ferry_log_failed(p->log)) {
        /* An fsync was attempted and failed: the page cache may have dropped what it covered. */
        char msg[512];
        snprintf(msg, sizeof(msg), "partition %s: fsync failed: %s", p->label, uv_strerror(rc));
        p->read_only = 1;
        LOG_ERROR("%s; the partition is now READ-ONLY (produces fail with STORAGE_ERROR until the broker is "
                  "restarted and recovers the log from disk)",
                  msg);
        complete_waiters(p, FERRY_ERR_STORAGE_ERROR, msg);
    } else if (rc != 0) {
        /* Nothing was fsynced (dup of a descriptor failed, the pool refused the work): the log kept its
         * dirtiness, so waiters stay queued and the housekeeping timer retries within a second. */
        LOG_WARN("partition %s: could not start an fsync (%s); retrying within a second", p->label, uv_strerror(rc));
    } else {
        complete_waiters(p, 0, NULL);
        if (ferry_log_durable_offset(p->log) > before)
            notify_watchers(p);
    }
    if (p->dead)
        destroy_dead(p);
    else if (rc == 0)
        ferryd_partition_kick(p); /* after a failure the timer retries: no busy loop */
    if (env->syncs_in_flight == 0 && env->on_sync_idle != NULL)
        env->on_sync_idle(env->on_sync_idle_arg);
}

void ferryd_partition_kick(struct ferryd_partition *p)
{
    if (p->sync != NULL || p->read_only || p->dead)
        return;
    p->sync = ferry_log_sync_begin(p->log);
    if (p->sync == NULL) {
        /* Nothing dirty, or no memory for the handle (dirtiness is then kept, and the housekeeping
         * timer kicks again within a second; queued waiters wait for it). */
        if (ferry_log_durable_offset(p->log) < ferry_log_end_offset(p->log))
            LOG_WARN("partition %s: out of memory starting an fsync; retrying within a second", p->label);
        complete_waiters(p, 0, NULL);
        return;
    }
    p->work.data = p;
    p->env->syncs_in_flight++;
    int rc = uv_queue_work(p->env->loop, &p->work, sync_work, sync_after);
    if (rc != 0) {
        /* Only fails on invalid arguments; treat it like a failed fsync rather than hang the waiters. */
        p->sync_status = rc;
        sync_after(&p->work, 0);
    }
}

/*
 * The idempotence check before an append (producer_state.h). Returns 0 to store the batch, -1 for a
 * duplicate of a remembered batch (*base_offset and *next_offset are the original ones), or a ferry_err_t.
 */
static int check_producer(struct ferryd_partition *p, const struct ferry_batch_header *h, int64_t *base_offset,
                          int64_t *next_offset, char *errmsg, size_t errmsg_len)
{
    int64_t dup_base = -1;
    uint32_t dup_count = 0;
    const struct ferryd_pstate_producer *pr;
    switch (ferryd_pstate_check(&p->pstate, h, &dup_base, &dup_count)) {
    case FERRYD_PSTATE_ACCEPT:
        return 0;
    case FERRYD_PSTATE_DUPLICATE:
        LOG_DEBUG("partition %s: producer %lld sequence %d is a duplicate of offset %lld; not stored again",
                  p->label, (long long)h->producer_id, (int)h->base_sequence, (long long)dup_base);
        *base_offset = dup_base;
        *next_offset = dup_base + (int64_t)dup_count;
        return -1;
    case FERRYD_PSTATE_DUPLICATE_OLD:
        snprintf(errmsg, errmsg_len, "partition %s: producer %lld sequence %d was already written (older than its "
                 "last %d batches)", p->label, (long long)h->producer_id, (int)h->base_sequence, FERRYD_PSTATE_BATCHES);
        return FERRY_ERR_DUPLICATE_SEQUENCE;
    case FERRYD_PSTATE_OUT_OF_ORDER:
        pr = ferryd_pstate_find(&p->pstate, h->producer_id);
        snprintf(errmsg, errmsg_len, "partition %s: producer %lld epoch %d: sequence %d, expected %d",
                 p->label, (long long)h->producer_id, (int)h->producer_epoch, (int)h->base_sequence,
                 pr != NULL && pr->nbatches > 0
                     ? (int)ferryd_pstate_seq_add(pr->batches[pr->nbatches - 1].last_seq, 1)
                     : 0);
        return FERRY_ERR_OUT_OF_ORDER_SEQUENCE;
    case FERRYD_PSTATE_FENCED:
        pr = ferryd_pstate_find(&p->pstate, h->producer_id);
        snprintf(errmsg, errmsg_len, "partition %s: producer %lld epoch %d is fenced by epoch %d", p->label,
                 (long long)h->producer_id, (int)h->producer_epoch, pr != NULL ? (int)pr->epoch : -1);
        return FERRY_ERR_INVALID_PRODUCER_EPOCH;
    }
    return 0;
}

int ferryd_partition_append(struct ferryd_partition *p, uint8_t *batch, size_t len, size_t max_bytes,
                            int64_t *base_offset, int64_t *next_offset, char *errmsg, size_t errmsg_len)
{
    struct ferry_batch_header h;
    char why[256];
    if (p->read_only) {
        snprintf(errmsg, errmsg_len, "partition %s is read-only after a storage error", p->label);
        return FERRY_ERR_STORAGE_ERROR;
    }
    int rc = ferry_batch_validate(batch, len, max_bytes, &h, errmsg, errmsg_len);
    if (rc != 0)
        return rc;
    /* Every record must parse and match the header (count, offset deltas): a stored batch that does
     * not would stop every consumer at it. One pass, no allocation per record. */
    rc = ferry_batch_check_records(batch, len, &h, errmsg, errmsg_len);
    if (rc != 0)
        return rc;
    rc = check_producer(p, &h, base_offset, next_offset, errmsg, errmsg_len);
    int remember = 1;
#ifdef FERRY_BUG_SWITCHES
    if (rc < 0 && p->bug_no_dedupe) { /* debug.bug=no-dedupe: stored again (the state keeps the original) */
        rc = 0;
        remember = 0;
    }
#endif
    if (rc != 0)
        return rc < 0 ? 0 : rc; /* < 0: a duplicate, answered with the original offsets */
    ferry_batch_set_leader_epoch(batch, 0); /* a single broker: epoch 0 (docs/protocol.md) */
    rc = ferry_log_append(p->log, batch, len, ferry_wallclock_ms(), base_offset, why, sizeof(why));
    if (rc != 0) {
        p->read_only = 1;
        LOG_ERROR("partition %s: append failed: %s; the partition is now READ-ONLY until a restart", p->label, why);
        snprintf(errmsg, errmsg_len, "partition %s: %s", p->label, why);
        return FERRY_ERR_STORAGE_ERROR;
    }
    *next_offset = *base_offset + (int64_t)h.record_count;
    if (remember && ferryd_pstate_update(&p->pstate, &h, *base_offset) != 0)
        LOG_WARN("partition %s: out of memory recording producer %lld; its next batch is accepted unchecked",
                 p->label, (long long)h.producer_id);
    if (p->replica != NULL)
        notify_watchers(p); /* committed already: readers may see it now */
    else
        ferryd_partition_kick(p);
    return 0;
}

int64_t ferryd_partition_high_watermark(const struct ferryd_partition *p)
{
    return p->replica != NULL ? ferry_log_end_offset(p->log) : ferry_log_durable_offset(p->log);
}

int ferryd_partition_sync_now(struct ferryd_partition *p)
{
    if (p->sync != NULL || p->read_only || p->dead)
        return -1;
    struct ferry_log_sync *s = ferry_log_sync_begin(p->log);
    if (s == NULL)
        return ferry_log_durable_offset(p->log) == ferry_log_end_offset(p->log) ? 0 : -1;
    int rc = ferry_log_sync_run(s);
    ferry_log_sync_end(p->log, s, rc);
    if (rc != 0 && ferry_log_failed(p->log)) {
        p->read_only = 1;
        LOG_ERROR("partition %s: fsync failed: %s; the partition is now READ-ONLY until a restart", p->label,
                  uv_strerror(rc));
    }
    return rc == 0 ? 0 : -1;
}

int ferryd_partition_wait(struct ferryd_partition *p, struct ferryd_waiter *w)
{
    if (w->offset <= ferry_log_durable_offset(p->log))
        return 1;
    /* Usually the append started a sync; if it could not (out of memory, no descriptor), the
     * housekeeping timer retries and w waits for that. */
    w->next = NULL;
    if (p->wait_tail != NULL)
        p->wait_tail->next = w;
    else
        p->wait_head = w;
    p->wait_tail = w;
    if (p->read_only) /* nothing will ever make it durable */
        complete_waiters(p, FERRY_ERR_STORAGE_ERROR, "partition is read-only after a storage error");
    return 0;
}

void ferryd_partition_watch(struct ferryd_partition *p, struct ferryd_watch *w)
{
    assert(w->p == NULL);
    w->p = p;
    w->prev = NULL;
    w->next = p->watchers;
    if (p->watchers != NULL)
        p->watchers->prev = w;
    p->watchers = w;
}

void ferryd_partition_unwatch(struct ferryd_watch *w)
{
    if (w->p == NULL)
        return;
    if (w->prev != NULL)
        w->prev->next = w->next;
    else
        w->p->watchers = w->next;
    if (w->next != NULL)
        w->next->prev = w->prev;
    w->p = NULL;
    w->prev = w->next = NULL;
}

void ferryd_partition_housekeeping(struct ferryd_partition *p, int retention)
{
    char why[256];
    int64_t now = ferry_wallclock_ms();
    if (p->read_only || p->dead)
        return;
    if (retention) {
        int n = ferry_log_apply_retention(p->log, now, why, sizeof(why));
        if (n < 0)
            LOG_ERROR("partition %s: retention failed: %s", p->label, why);
        else if (n > 0)
            LOG_INFO("partition %s: retention deleted %d segment(s); log starts at offset %lld", p->label, n,
                     (long long)ferry_log_start_offset(p->log));
    } else {
        if (ferry_log_maybe_roll(p->log, now, why, sizeof(why)) != 0)
            LOG_ERROR("partition %s: segment roll failed: %s", p->label, why);
        ferryd_partition_kick(p); /* a new segment makes the directory dirty */
    }
}

void ferryd_partition_close(struct ferryd_partition *p)
{
    assert(p->sync == NULL);
    complete_waiters(p, FERRY_ERR_UNKNOWN_TOPIC_OR_PARTITION, "broker is closing");
    notify_watchers(p);
    ferry_log_close(p->log);
    ferryd_pstate_free(&p->pstate);
    free(p);
}

void ferryd_partition_delete(struct ferryd_partition *p, void (*on_deleted)(struct ferryd_partition *p, void *arg),
                             void *arg)
{
    assert(!p->dead);
    p->dead = 1;
    p->on_deleted = on_deleted;
    p->on_deleted_arg = arg;
    notify_watchers(p);
    if (p->sync == NULL)
        destroy_dead(p);
    /* else: sync_after destroys it once the fsync in flight returns */
}
