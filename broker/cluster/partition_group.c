/* partition_group.c: a partition's Raft group on this broker: committed batches applied into the segment
 * log, snapshots of the log end, and the catch-up of a replica restored past its local data. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cluster_int.h"
#include "ferry_errors.h"
#include "logging.h"
#include "proto/batch.h"

/*
 * Snapshot policy (docs/replication.md, "Storage"). The Raft library asks for a snapshot after every
 * apply once this many entries (or raft.snapshot.threshold, if smaller) followed the last one;
 * part_snapshot takes it only once raft.snapshot.threshold entries or raft.snapshot.bytes bytes were
 * applied since. A snapshot costs the loop a segment fsync and the library closes its open segment
 * for it, so snapshots are kept rare rather than frequent.
 */
#define SNAPSHOT_POLL_ENTRIES 64
/* A due snapshot first waits for up to this many background syncs of the segments (thread pool), so
 * the fsync it finally does on the loop covers only what was applied meanwhile. */
#define SNAPSHOT_PRESYNCS 2

/*
 * Raft segment size of a partition group: raft.segment.bytes, unless this broker hosts so many
 * partitions that their pre-allocated segments (raft_uv keeps about three per group on disk) would
 * pass SEGMENT_BUDGET_BYTES; then smaller, but not below SEGMENT_MIN_BYTES. Big segments matter for
 * throughput: closing one blocks the loop for tens of ms (docs/replication.md, "Storage").
 */
#define SEGMENT_BUDGET_BYTES ((uint64_t)3 << 30)
#define SEGMENT_MIN_BYTES ((uint64_t)1 << 20)
#define SEGMENTS_PER_GROUP 3

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
        *result = cl_enc(cp->cursor);
        cp->cursor += (int64_t)h->record_count;
    }
    free(stored);
    return 0;
}


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

void cl_part_cancel_fetch(struct cl_part *cp)
{
    if (cp->cu != NULL)
        cl_catchup_cancel(cp->cu);
    cp->cu = NULL;
}

void cl_part_free(struct cl_part *cp)
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
    cp->snap_entries++;
    cp->snap_bytes += len;
    if (ferry_batch_validate(buf, len, len, &h, msg, sizeof(msg)) != 0) {
        LOG_ERROR("partition %s: committed entry %" PRIu64 " is not a batch: %s", cp->label, index, msg);
        return 0; /* deterministic on every replica: skipped everywhere */
    }
#ifdef FERRY_BUG_SWITCHES
    /* debug.bug=drop-entry: broker 1 silently loses every 50th committed batch (replica divergence). */
    if (cp->c->b->cfg->debug_bug == FERRYD_BUG_DROP_ENTRY && cp->c->self == 1 && ++cp->bug_applied % 50 == 0) {
        LOG_DEBUG("partition %s: debug.bug=drop-entry: entry %" PRIu64 " not applied", cp->label, index);
        (void)ferryd_pstate_update(&cp->p->pstate, &h, cp->cursor); /* later batches still fit */
        *result = cl_enc(cp->cursor);
        return 0;
    }
#endif
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
        /* Deterministic on every replica (same log, same producer state). The proposer answers with rc:
         * an OUT_OF_ORDER_SEQUENCE after an earlier batch of the producer failed is retriable. */
        LOG_WARN("partition %s: committed batch refused at apply (error %d): %s", cp->label, rc, msg);
        *result = cl_enc(-(int64_t)rc);
        return 0;
    }
    (void)next;
    /* A duplicate of a remembered idempotent batch is not stored: base is the original's offset. */
    cp->cursor = ferry_log_end_offset(cp->p->log);
    *result = cl_enc(base);
    return 0;
}

/*
 * Snapshot = 8-byte big-endian log end offset, taken only when the segments are durable up to it.
 * Every refusal (-1) is retried by the library after a later apply: not due yet (SNAPSHOT_POLL_ENTRIES
 * above), a background sync of the segments running or just started (the first SNAPSHOT_PRESYNCS
 * times), a catch-up. Then the rest is fsync'd here, on the loop: it is what was applied while the
 * last background sync ran, so the loop pays about one fdatasync, not the whole interval's data.
 */
static int part_snapshot(void *data, uint8_t **buf, size_t *len)
{
    struct cl_part *cp = data;
    const struct ferryd_config *cfg = cp->c->b->cfg;
    if (cp->snap_entries < (uint64_t)cfg->raft_snapshot_threshold &&
        cp->snap_bytes < (uint64_t)cfg->raft_snapshot_bytes)
        return -1;
    if (cp->p == NULL || cp->catching_up || cp->broken || cp->p->sync != NULL)
        return -1;
    if (ferry_log_durable_offset(cp->p->log) < ferry_log_end_offset(cp->p->log) &&
        cp->presyncs < SNAPSHOT_PRESYNCS) {
        cp->presyncs++;
        ferryd_partition_kick(cp->p);
        return -1;
    }
    if (ferryd_partition_sync_now(cp->p) != 0)
        return -1;
    uint8_t *out = malloc(8);
    if (out == NULL)
        return -1;
    uint64_t v = (uint64_t)cp->cursor;
    for (int i = 0; i < 8; i++)
        out[i] = (uint8_t)(v >> (56 - 8 * i));
    *buf = out;
    *len = 8;
    cp->snap_entries = cp->snap_bytes = 0;
    cp->presyncs = 0;
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
    cp->snap_entries = cp->snap_bytes = 0;
    cp->presyncs = 0;
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
    const struct cl_broker *lb = l == 0 ? NULL : cl_find_broker(c, (int64_t)l - 1);
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

void cl_catchup_tick(struct ferryd_cluster *c)
{
    for (unsigned i = 0; i < c->ntopics; i++)
        for (int32_t k = 0; k < c->topics[i]->np; k++)
            if (c->topics[i]->parts[k] != NULL)
                catchup_drive(c, c->topics[i]->parts[k]);
}

/* Partition replicas this broker hosts in the controller's state, t's included. */
static uint64_t hosted_partitions(const struct ferryd_cluster *c, const struct cl_topic *t)
{
    uint64_t n = 0;
    int seen = 0;
    for (unsigned k = 0; k <= c->ntopics; k++) {
        const struct cl_topic *x = k < c->ntopics ? c->topics[k] : (seen ? NULL : t);
        if (x == NULL)
            continue;
        seen |= x == t;
        for (int64_t i = 0; i < (int64_t)x->np * x->rf; i++)
            n += x->replicas[i] == c->self;
    }
    return n;
}

static size_t group_segment_bytes(const struct ferryd_cluster *c, const struct cl_topic *t)
{
    uint64_t max = (uint64_t)c->b->cfg->raft_segment_bytes;
    uint64_t n = hosted_partitions(c, t);
    uint64_t seg = SEGMENT_BUDGET_BYTES / (SEGMENTS_PER_GROUP * (n > 0 ? n : 1));
    if (seg > max)
        seg = max;
    if (seg < SEGMENT_MIN_BYTES)
        seg = max < SEGMENT_MIN_BYTES ? max : SEGMENT_MIN_BYTES;
    return (size_t)(seg & ~(uint64_t)4095); /* raft_uv wants a multiple of its 4 KiB block; min is 64 KiB */
}

static void part_closed(void *arg)
{
    cl_part_free(arg);
}

static void part_on_role(void *data, int is_leader, uint64_t leader_id, uint64_t term)
{
    struct cl_part *cp = data;
    (void)leader_id;
    (void)term;
    if (cp->is_leader == is_leader)
        return;
    cp->is_leader = is_leader;
    /* A new leader serves once every entry its log held at the election is applied into its segments
     * (those include everything an earlier leader could have acknowledged): ferryd_cluster_check_leader. */
    if (is_leader)
        cp->ready_index = fr_group_last_index(cp->g);
    if (cp->c->role_cb != NULL)
        cp->c->role_cb(cp->c->role_arg, cp->topic, cp->idx, is_leader);
}

static void part_open_failed(void *data, int status, const char *errmsg)
{
    struct cl_part *cp = data;
    LOG_ERROR("partition %s: opening its Raft group failed (%s): %s; this replica does not serve it", cp->label,
              fr_strerror(status), errmsg);
}

void cl_part_open(struct ferryd_cluster *c, struct cl_topic *t, int32_t i, struct ferryd_topic *lt)
{
    char msg[512];
    const int64_t *reps = &t->replicas[(size_t)i * (size_t)t->rf];
    uint64_t ids[16];
    for (int k = 0; k < t->rf && k < 16; k++)
        ids[k] = cl_rid(reps[k]);
    struct cl_part *cp = calloc(1, sizeof(*cp));
    if (cp == NULL) {
        LOG_ERROR("topic %s: out of memory opening partition %d", t->name, i);
        return;
    }
    cp->c = c;
    cp->idx = i;
    cp->p = ferryd_topic_partition(lt, i);
    snprintf(cp->topic, sizeof(cp->topic), "%s", t->name);
    snprintf(cp->label, sizeof(cp->label), "%s/%d", t->name, i);
    struct fr_group_config gc = {
        .group_id = t->gids[i],
        .name = cp->label,
        .fsm = {.data = cp,
                .apply = part_apply,
                .snapshot = part_snapshot,
                .restore = part_restore,
                .on_role = part_on_role},
        /* part_snapshot decides; the library only asks (SNAPSHOT_POLL_ENTRIES). */
        .snapshot_threshold = (unsigned)(c->b->cfg->raft_snapshot_threshold < SNAPSHOT_POLL_ENTRIES
                                             ? c->b->cfg->raft_snapshot_threshold
                                             : SNAPSHOT_POLL_ENTRIES),
        .snapshot_trailing = (unsigned)c->b->cfg->raft_snapshot_trailing,
        .election_timeout_ms = (unsigned)c->b->cfg->raft_election_timeout_ms,
        .heartbeat_timeout_ms = (unsigned)c->b->cfg->raft_heartbeat_interval_ms,
        .segment_bytes = group_segment_bytes(c, t),
        /* Opening costs ~32 ms of waiting in the library (docs/replication.md, "Scale"): one group per
         * loop pass, so a broker with many partitions serves while they open. */
        .defer_open = 1,
        .on_open_failed = part_open_failed,
    };
    if (fr_group_open(c->node, &gc, &cp->g, msg, sizeof(msg)) != FR_OK) {
        LOG_ERROR("partition %s: opening its Raft group failed: %s", cp->label, msg);
        free(cp);
        return;
    }
    int rc = fr_group_bootstrap(cp->g, ids, (unsigned)t->rf, msg, sizeof(msg));
    if (rc != FR_OK && rc != FR_ERR_EXISTS)
        LOG_ERROR("partition %s: bootstrap failed: %s", cp->label, msg);
    if (cp->p != NULL)
        cp->p->replica = cp;
#ifdef FERRY_BUG_SWITCHES
    if (cp->p != NULL)
        cp->p->bug_no_dedupe = c->b->cfg->debug_bug == FERRYD_BUG_NO_DEDUPE;
#endif
    t->parts[i] = cp;
    if (fr_group_start(cp->g, msg, sizeof(msg)) != FR_OK)
        LOG_ERROR("partition %s: starting its Raft group failed: %s", cp->label, msg);
}

void cl_part_close(struct cl_part *cp)
{
    if (cp->p != NULL)
        cp->p->replica = NULL;
    catchup_stop(cp); /* before the log goes */
    cp->p = NULL;
    fr_group_close(cp->g, part_closed, cp);
}
