/* partition.h: one topic partition: its log, group commit of appends, and waiters on the durable offset. */
#ifndef FERRYD_PARTITION_H
#define FERRYD_PARTITION_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "producer_state.h"
#include "storage/log.h"

/*
 * Group commit: an append writes to the page cache (ferry_log_append) and makes sure a sync is
 * running. A sync captures what is dirty (ferry_log_sync_begin, loop thread), fsyncs it on the
 * libuv thread pool (ferry_log_sync_run) and, back on the loop (ferry_log_sync_end), completes every
 * waiter whose offset is now durable, wakes the watchers, and starts the next sync if more was
 * appended meanwhile. Many produces therefore share one fsync; at most one sync per partition.
 *
 * A failed append, or a sync whose fsync was attempted and failed, makes the partition read-only (later produces get STORAGE_ERROR) and is
 * logged as such: the page cache may hold bytes the disk does not, so only a restart (which
 * recovers the log from disk) can make it writable again. A sync that could not start (no memory
 * for its handle, a failed dup of a descriptor) leaves the partition writable and its waiters
 * queued; ferryd_partition_kick, called every second by the housekeeping timer, retries it.
 */

/* What every partition of a broker shares. */
struct ferryd_partition_env {
    uv_loop_t *loop;
    uint32_t syncs_in_flight;
    /* Called (if set) whenever syncs_in_flight drops to 0: graceful stop waits for it. */
    void (*on_sync_idle)(void *arg);
    void *on_sync_idle_arg;
};

/* A produce waiting for offsets below `offset` to be durable. Owned by the caller; queued FIFO. */
struct ferryd_waiter {
    struct ferryd_waiter *next;
    int64_t offset;
    /* Runs exactly once: error 0 (durable), FERRY_ERR_STORAGE_ERROR (sync failed) or
     * FERRY_ERR_UNKNOWN_TOPIC_OR_PARTITION (deleted or closed first), with a message. */
    void (*cb)(struct ferryd_waiter *w, int error, const char *errmsg);
};

/* A reader (Fetch long poll) that wants to know when the durable offset advances. Owned by the caller. */
struct ferryd_watch {
    struct ferryd_watch *prev, *next;
    struct ferryd_partition *p; /* NULL when not registered */
    /* Runs once when the durable offset advanced or the partition goes away; the watch is then
     * already unregistered (w->p NULL). Must not free partitions nor re-watch synchronously. */
    void (*cb)(struct ferryd_watch *w);
};

struct ferryd_partition {
    struct ferryd_partition_env *env;
    char label[272]; /* "topic/3", for logs */
    int32_t id;
    struct ferry_log *log;
    uv_work_t work;
    struct ferry_log_sync *sync; /* the sync in flight, or NULL */
    int sync_status;             /* result of ferry_log_sync_run, written by the pool thread */
    int read_only;
    int dead; /* deleted while a sync was in flight: destroyed when it ends */
    struct ferryd_waiter *wait_head, *wait_tail;
    struct ferryd_watch *watchers;
    void (*on_deleted)(struct ferryd_partition *p, void *arg);
    void *on_deleted_arg;
    /*
     * Set by the cluster (cluster/partition_group.c) when the partition is a Raft group replica: appends
     * happen only in the group's apply callback and start no sync of their own (Raft's log is the
     * durable copy; the segments are synced by the housekeeping timer and before every snapshot),
     * and the high watermark is the applied end (ferryd_partition_high_watermark). NULL standalone.
     */
    void *replica;
    struct ferryd_pstate pstate; /* idempotent producers (producer_state.h), rebuilt from the log at open */
#ifdef FERRY_BUG_SWITCHES
    int bug_no_dedupe;       /* debug.bug=no-dedupe (set by the cluster): duplicates are stored again */
    int64_t bug_next_offset; /* debug.bug=ack-before-commit: the offset the next proposal is guessed to get */
#endif
};

/* Opens (recovering) the log in dir. Returns 0, or a ferry_err_t with errmsg naming the partition. */
int ferryd_partition_open(struct ferryd_partition_env *env, const char *dir, const char *label, int32_t id,
                          const struct ferry_log_config *cfg, struct ferryd_partition **out, char *errmsg,
                          size_t errmsg_len);

/*
 * Validates one record batch (ferry_batch_validate with max_bytes, then every record with
 * ferry_batch_check_records) and appends it; the batch's header is rewritten in place with its base
 * offset and leader epoch 0. Starts a sync if none is running.
 * Returns 0 with *base_offset and *next_offset (offset after its last record), or a ferry_err_t
 * (CORRUPT_BATCH, BATCH_TOO_LARGE, ..., STORAGE_ERROR) with errmsg filled.
 * Idempotent batches (producer_id >= 0) pass ferryd_pstate_check first: a duplicate of one of the
 * producer's last 5 batches is not stored and returns 0 with the ORIGINAL base and next offsets (so
 * the caller's durability wait covers the original); a gap is OUT_OF_ORDER_SEQUENCE, an older
 * duplicate DUPLICATE_SEQUENCE, a stale epoch INVALID_PRODUCER_EPOCH.
 */
int ferryd_partition_append(struct ferryd_partition *p, uint8_t *batch, size_t len, size_t max_bytes,
                            int64_t *base_offset, int64_t *next_offset, char *errmsg, size_t errmsg_len);

/* What readers may see: the durable offset standalone, the applied end (= committed) when replicated. */
int64_t ferryd_partition_high_watermark(const struct ferryd_partition *p);

/*
 * Syncs the log now, on the calling thread (a replicated partition's snapshot callback: a snapshot
 * may only name offsets that are on disk). Returns 0 when everything appended is durable, -1 when
 * a background sync is in flight or the fsync failed (the caller retries later).
 */
int ferryd_partition_sync_now(struct ferryd_partition *p);

/* Queues w until w->offset is durable. Returns 1 (w not queued, cb not called) if it already is. */
int ferryd_partition_wait(struct ferryd_partition *p, struct ferryd_waiter *w);

void ferryd_partition_watch(struct ferryd_partition *p, struct ferryd_watch *w);
void ferryd_partition_unwatch(struct ferryd_watch *w); /* no-op if not registered */

/* Starts a sync if something is dirty and none is running (no-op when read-only or dead). */
void ferryd_partition_kick(struct ferryd_partition *p);

/* Segment roll by age and retention, called from the broker's timers. Errors are logged. */
void ferryd_partition_housekeeping(struct ferryd_partition *p, int retention);

/* Closes the log (no sync: the caller synced first) and frees. Requires no sync in flight.
 * Waiters still queued get UNKNOWN_TOPIC_OR_PARTITION; watchers are told the partition is gone. */
void ferryd_partition_close(struct ferryd_partition *p);

/*
 * Deletes the partition: watchers are told at once; the log and its directory are destroyed now,
 * or when the sync in flight ends (its waiters are answered first). on_deleted(p, arg) runs after
 * the directory is gone (possibly before this returns), then p is freed.
 */
void ferryd_partition_delete(struct ferryd_partition *p, void (*on_deleted)(struct ferryd_partition *p, void *arg),
                             void *arg);

#endif
