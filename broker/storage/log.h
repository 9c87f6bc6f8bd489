/* log.h: one partition's segmented, append-only record log (docs/disk-format.md). */
#ifndef FERRY_STORAGE_LOG_H
#define FERRY_STORAGE_LOG_H

#include <stddef.h>
#include <stdint.h>

/*
 * A log is a directory of segments, each named after its base offset (20 digits):
 *   00000000000000000000.log        record batches exactly as they travel on the wire (proto/batch.h)
 *   00000000000000000000.index      sparse offset index: {u32 relative offset, u32 file position}
 *   00000000000000000000.timeindex  sparse time index:   {i64 max timestamp so far, u32 relative offset}
 * The highest-based segment is the active one; only it is appended to.
 *
 * Durability contract: ferry_log_append() writes to the page cache only. Bytes become durable
 * through a sync (begin on the loop thread, run on any thread, end on the loop thread), which
 * lets the broker group-commit: one fdatasync covers every batch appended before sync_begin.
 * durable_offset is the offset below which every record is on disk; readers are never shown
 * records at or above it (ferry_log_read's limit), so nothing a consumer saw can vanish in a crash.
 *
 * Threading: all calls on one thread (the broker loop) except ferry_log_sync_run.
 * Time is passed in (now_ms) so tests control it.
 */

/* Severity of a storage message, numbered like ferryd's log levels (error, warn, info). */
enum ferry_log_msg_level { FERRY_LOG_MSG_ERROR = 0, FERRY_LOG_MSG_WARN = 1, FERRY_LOG_MSG_INFO = 2 };

/* Where the log reports what it repairs or fails on (msg has no trailing newline). Called on the
 * loop thread only. NULL = "ferry: <msg>" lines on stderr (the storage unit tests use that). */
typedef void (*ferry_log_msg_fn)(void *opaque, int level, const char *msg);

struct ferry_log_config {
    uint64_t segment_bytes;     /* roll when the active segment would exceed this */
    int64_t segment_ms;         /* roll when the active segment's first batch is older than this */
    int64_t retention_ms;       /* delete segments whose newest record is older; -1 = forever */
    int64_t retention_bytes;    /* delete oldest segments while the log is larger; -1 = unbounded */
    uint32_t index_interval_bytes; /* one index entry per this many log bytes */
    ferry_log_msg_fn msg_fn;       /* NULL = stderr */
    void *msg_opaque;
};

struct ferry_log;

/*
 * Opens (creating if needed) the log in dir and recovers it: every segment's batches are checked
 * by length and CRC; in the last segment a torn or corrupt tail is truncated (logged with file and
 * offset); a bad batch in the middle of the log (followed by valid data, or in a non-last segment)
 * fails the open with FERRY_ERR_CORRUPT_BATCH and an errmsg naming the file and byte offset.
 * Indexes that are missing or inconsistent are rebuilt. Returns 0 or a ferry_err_t.
 * After open, durable_offset == end_offset (recovered data is on disk).
 */
int ferry_log_open(const char *dir, const struct ferry_log_config *cfg, struct ferry_log **out, char *errmsg,
                   size_t errmsg_len);
/* Closes files and frees. Does not sync: callers sync first if they care. */
void ferry_log_close(struct ferry_log *log);
/* Changes segment/retention settings of an open log. */
void ferry_log_set_config(struct ferry_log *log, const struct ferry_log_config *cfg);

/*
 * Appends one validated batch (proto/batch.h; caller ran ferry_batch_validate). Assigns its base
 * offset by rewriting the header in batch[] (the CRC does not cover it), rolls the segment first
 * if size or age says so, writes it, and updates the indexes. On success *base_offset is set and
 * end_offset advances by record_count. Returns 0 or FERRY_ERR_STORAGE_ERROR (errmsg names file).
 */
int ferry_log_append(struct ferry_log *log, uint8_t *batch, size_t len, int64_t now_ms, int64_t *base_offset,
                     char *errmsg, size_t errmsg_len);

int64_t ferry_log_start_offset(const struct ferry_log *log); /* first offset still stored */
int64_t ferry_log_end_offset(const struct ferry_log *log);   /* next offset to be assigned */
int64_t ferry_log_durable_offset(const struct ferry_log *log);
uint64_t ferry_log_size_bytes(const struct ferry_log *log);
uint32_t ferry_log_segment_count(const struct ferry_log *log);

/* 1 once an fsync failed (or the fdatasync before a roll): the log refuses appends until reopened. */
int ferry_log_failed(const struct ferry_log *log);

/* Group commit. begin captures what must be synced (dup'd fds of dirty segments and, after a
 * roll or create, the directory) and the end offset they cover; returns NULL if nothing is dirty
 * or on out of memory (the dirtiness is kept: a later begin covers it). A dup failure is reported
 * by run (status != 0) without ferry_log_failed: nothing was attempted, so a later sync may retry.
 * run performs the fdatasync/fsync calls (any thread); end releases the handle and, if status is 0,
 * advances durable_offset. Only one sync may be in flight per log. */
struct ferry_log_sync;
struct ferry_log_sync *ferry_log_sync_begin(struct ferry_log *log);
int ferry_log_sync_run(struct ferry_log_sync *s); /* 0 or -errno */
/* Offset the sync covers (everything below it is durable after a successful run). */
int64_t ferry_log_sync_offset(const struct ferry_log_sync *s);
void ferry_log_sync_end(struct ferry_log *log, struct ferry_log_sync *s, int status);

/*
 * Reads whole stored batches, starting with the batch that contains `offset`, stopping before
 * any batch that reaches limit_offset (callers pass the durable offset) and once max_bytes is
 * reached; the first batch is returned even if larger than max_bytes, so a reader always
 * progresses. *out is malloc'd (caller frees) or NULL with *out_len 0 when there is nothing yet.
 * Returns 0, FERRY_ERR_OFFSET_OUT_OF_RANGE (offset < start or offset > end), or STORAGE_ERROR.
 */
int ferry_log_read(struct ferry_log *log, int64_t offset, int64_t limit_offset, size_t max_bytes, uint8_t **out,
                   size_t *out_len, char *errmsg, size_t errmsg_len);

/* First offset whose batch max_timestamp >= ts (the time index's granularity is the batch);
 * end_offset if none. Returns 0 or STORAGE_ERROR. */
int ferry_log_offset_for_time(struct ferry_log *log, int64_t ts, int64_t *offset, char *errmsg,
                              size_t errmsg_len);

/* Rolls the active segment if it is older than segment_ms (called by a timer as well as by append). */
int ferry_log_maybe_roll(struct ferry_log *log, int64_t now_ms, char *errmsg, size_t errmsg_len);

/* Deletes whole non-active segments by retention_ms and retention_bytes; only segments entirely
 * below durable_offset are deleted. Returns the number of segments deleted, or -1 (errmsg). */
int ferry_log_apply_retention(struct ferry_log *log, int64_t now_ms, char *errmsg, size_t errmsg_len);

/* Closes the log and removes its directory and files. */
int ferry_log_destroy(struct ferry_log *log, char *errmsg, size_t errmsg_len);

#endif
