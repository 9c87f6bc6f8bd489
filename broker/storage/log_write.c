/* log_write.c: append, segment roll, group-commit sync and retention of a partition log. */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ferry_errors.h"
#include "proto/limits.h"
#include "storage/log_int.h"

/* ts < now - ms, without overflow. */
static int older_than(int64_t ts, int64_t now, int64_t ms)
{
    if (ms < 0 || now < INT64_MIN + ms)
        return 0;
    return ts < now - ms;
}

static int aged(const struct ferry_log *log, const struct ferry_segment *s, int64_t now_ms)
{
    return log->cfg.segment_ms > 0 && s->size > 0 && s->first_append_ms >= 0 &&
           older_than(s->first_append_ms, now_ms, log->cfg.segment_ms);
}

/* Whether a batch of len bytes and count records must go into a fresh segment. An empty active
 * segment takes any batch, so a batch larger than segment_bytes ends up alone in its segment. */
static int must_roll(const struct ferry_log *log, const struct ferry_segment *s, size_t len, uint32_t count,
                     int64_t now_ms)
{
    if (s->size == 0)
        return 0;
    return s->size + len > log->cfg.segment_bytes || s->size + len > UINT32_MAX /* index positions are u32 */
           || (uint64_t)(s->next_offset - s->base_offset) + count > UINT32_MAX /* relative offsets too */
           || aged(log, s, now_ms);
}

/*
 * Starts a new active segment at end_offset; the directory must be fsynced by the next sync.
 * The old segment is fdatasync'd first, before anything is written to the new one: otherwise the
 * page cache could write the new segment back before the old one's tail, and a power cut would
 * leave a torn tail in a segment that is no longer the last, which recovery rightly refuses
 * (docs/disk-format.md). Costs one fdatasync on the loop thread per roll.
 */
static int roll(struct ferry_log *log, char *errmsg, size_t errmsg_len)
{
    struct ferry_segment *old = ferry_log_active(log), *s;
    assert(old->size > 0);
    if (fdatasync(old->log_fd) != 0) {
        int e = errno;
        /* As for a failed group-commit fsync: the page cache may have dropped the data. */
        log->failed = 1;
        snprintf(log->failmsg, sizeof(log->failmsg), "%s: fdatasync before roll failed (%s); log refuses appends "
                 "until reopened", old->log_path, strerror(e));
        ferry_log_msg(log, FERRY_LOG_MSG_ERROR, "%s", log->failmsg);
        snprintf(errmsg, errmsg_len, "%s", log->failmsg);
        return FERRY_ERR_STORAGE_ERROR;
    }
    int rc = ferry_segment_create(log->dir, log->end_offset, &s, errmsg, errmsg_len);
    if (rc != 0)
        return rc;
    if (ferry_log_push_segment(log, s) != 0) {
        ferry_segment_unlink(s, errmsg, errmsg_len);
        ferry_segment_free(s);
        snprintf(errmsg, errmsg_len, "out of memory");
        return FERRY_ERR_STORAGE_ERROR;
    }
    ferry_segment_deactivate(old);
    log->dir_dirty = 1;
    return 0;
}

int ferry_log_maybe_roll(struct ferry_log *log, int64_t now_ms, char *errmsg, size_t errmsg_len)
{
    struct ferry_segment *s = ferry_log_active(log);
    if (s->size > 0 && s->first_append_ms < 0)
        s->first_append_ms = now_ms; /* reopened: the segment's age counts from now */
    return aged(log, s, now_ms) ? roll(log, errmsg, errmsg_len) : 0;
}

int ferry_log_append(struct ferry_log *log, uint8_t *batch, size_t len, int64_t now_ms, int64_t *base_offset,
                     char *errmsg, size_t errmsg_len)
{
    if (log->failed) {
        snprintf(errmsg, errmsg_len, "%s", log->failmsg);
        return FERRY_ERR_STORAGE_ERROR;
    }
    assert(len >= FERRY_BATCH_HEADER_SIZE && len <= FERRY_MAX_BATCH_BYTES); /* recovery rejects larger */
    struct ferry_batch_header h;
    ferry_batch_header_decode(batch, &h);
    assert(h.batch_length == len && h.record_count > 0); /* the caller ran ferry_batch_validate */
    struct ferry_segment *s = ferry_log_active(log);
    if (must_roll(log, s, len, h.record_count, now_ms)) {
        int rc = roll(log, errmsg, errmsg_len);
        if (rc != 0)
            return rc;
        s = ferry_log_active(log);
    }
    ferry_batch_set_base_offset(batch, log->end_offset);
    h.base_offset = log->end_offset;
    int rc = ferry_segment_append(s, batch, len, &h, log->cfg.index_interval_bytes, errmsg, errmsg_len);
    if (rc != 0)
        return rc;
    if (s->first_append_ms < 0)
        s->first_append_ms = now_ms;
    log->end_offset = s->next_offset;
    log->size_bytes += len;
    *base_offset = h.base_offset;
    return 0;
}

/* ---- group commit ---- */

struct ferry_log_sync {
    int64_t offset;
    int err;       /* set by begin when it could not capture everything; run returns it */
    int attempted; /* run called fdatasync: a failure now means lost writes */
    uint32_t nfds;
    int has_dir;   /* fds[nfds - 1] is the directory */
    int fds[];
};

struct ferry_log_sync *ferry_log_sync_begin(struct ferry_log *log)
{
    assert(!log->sync_inflight);
    /* Dirty segments are the newest ones: stop at the first clean one wholly below the last mark. */
    uint32_t first = log->nsegs, ndirty = 0;
    while (first > 0) {
        const struct ferry_segment *s = log->segs[first - 1];
        if (!s->dirty && s->next_offset <= log->sync_mark)
            break;
        ndirty += s->dirty ? 1 : 0;
        first--;
    }
    if (ndirty == 0 && !log->dir_dirty && !log->failed)
        return NULL;
    struct ferry_log_sync *sy = calloc(1, sizeof(*sy) + (ndirty + 1) * sizeof(int));
    if (sy == NULL)
        return NULL; /* dirtiness is kept: the next begin covers it */
    sy->offset = log->end_offset;
    if (log->failed) {
        sy->err = -EIO;
        goto out;
    }
    for (uint32_t i = first; i < log->nsegs && sy->err == 0; i++) {
        if (!log->segs[i]->dirty)
            continue;
        int fd = fcntl(log->segs[i]->log_fd, F_DUPFD_CLOEXEC, 0);
        if (fd < 0)
            sy->err = -errno;
        else
            sy->fds[sy->nfds++] = fd;
    }
    if (log->dir_dirty && sy->err == 0) {
        int fd = fcntl(log->dir_fd, F_DUPFD_CLOEXEC, 0);
        if (fd < 0) {
            sy->err = -errno;
        } else {
            sy->fds[sy->nfds++] = fd;
            sy->has_dir = 1;
        }
    }
    if (sy->err == 0) { /* everything is captured: only now forget the dirtiness */
        for (uint32_t i = first; i < log->nsegs; i++)
            log->segs[i]->dirty = 0;
        log->dir_dirty = 0;
        log->sync_mark = sy->offset;
    }
out:
    log->sync_inflight = 1;
    return sy;
}

int ferry_log_sync_run(struct ferry_log_sync *s)
{
    if (s->err != 0)
        return s->err;
    s->attempted = 1;
    for (uint32_t i = 0; i < s->nfds; i++) {
        int last_is_dir = s->has_dir && i + 1 == s->nfds;
        if ((last_is_dir ? fsync(s->fds[i]) : fdatasync(s->fds[i])) != 0)
            return -errno;
    }
    return 0;
}

int64_t ferry_log_sync_offset(const struct ferry_log_sync *s)
{
    return s->offset;
}

void ferry_log_sync_end(struct ferry_log *log, struct ferry_log_sync *s, int status)
{
    assert(log->sync_inflight);
    for (uint32_t i = 0; i < s->nfds; i++)
        close(s->fds[i]);
    if (status == 0) {
        if (s->offset > log->durable_offset)
            log->durable_offset = s->offset;
    } else if (s->attempted && !log->failed) {
        /* After a failed fsync Linux may have dropped the dirty pages and will not report it
         * again; a retry could "succeed" over lost data. Stop here; reopening re-verifies. */
        log->failed = 1;
        snprintf(log->failmsg, sizeof(log->failmsg), "%s: fsync failed (%s); log refuses appends until reopened",
                 log->dir, strerror(-status));
        ferry_log_msg(log, FERRY_LOG_MSG_ERROR, "%s", log->failmsg);
    }
    free(s);
    log->sync_inflight = 0;
}

/* ---- retention ---- */

int ferry_log_apply_retention(struct ferry_log *log, int64_t now_ms, char *errmsg, size_t errmsg_len)
{
    int deleted = 0;
    while (log->nsegs > 1) {
        struct ferry_segment *s = log->segs[0];
        if (s->next_offset > log->durable_offset)
            break;
        assert(!s->dirty && s->size > 0);
        int by_time = log->cfg.retention_ms >= 0 && older_than(s->max_timestamp, now_ms, log->cfg.retention_ms);
        int by_size = log->cfg.retention_bytes >= 0 && log->size_bytes > (uint64_t)log->cfg.retention_bytes;
        if (!by_time && !by_size)
            break;
        if (ferry_segment_unlink(s, errmsg, errmsg_len) != 0)
            return -1;
        log->size_bytes -= s->size;
        ferry_segment_free(s);
        memmove(&log->segs[0], &log->segs[1], (log->nsegs - 1) * sizeof(*log->segs));
        log->nsegs--;
        deleted++;
    }
    return deleted;
}
