/* log_read.c: reading whole batches by offset, and offset lookup by timestamp. */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry_errors.h"
#include "proto/limits.h"
#include "storage/log_int.h"

/* Index of the segment holding offset: the last one whose base_offset <= offset. */
static uint32_t find_segment(const struct ferry_log *log, int64_t offset)
{
    uint32_t lo = 0, hi = log->nsegs; /* first segment with base > offset is in [lo, hi] */
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (log->segs[mid]->base_offset <= offset)
            lo = mid + 1;
        else
            hi = mid;
    }
    assert(lo > 0);
    return lo - 1;
}

struct out_buf {
    uint8_t *p;
    size_t len, cap;
};

static int reserve(struct out_buf *b, size_t need)
{
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 65536;
    while (cap < need)
        cap *= 2;
    uint8_t *p = realloc(b->p, cap);
    if (p == NULL)
        return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

/*
 * Copies whole batches of s from pos into b while they stay below limit and within max_bytes
 * (the very first batch of the read is taken whatever its size). Reads a window of up to the
 * remaining budget with one pread, then walks the headers inside it. Sets *stop when a limit
 * was reached; otherwise the segment was exhausted.
 */
static int copy_batches(const struct ferry_segment *s, uint64_t pos, int64_t limit, size_t max_bytes,
                        struct out_buf *b, int *stop, char *errmsg, size_t errmsg_len)
{
    *stop = 0;
    while (pos < s->size) {
        if (b->len > 0 && (b->len >= max_bytes || max_bytes - b->len < FERRY_BATCH_HEADER_SIZE)) {
            *stop = 1;
            return 0;
        }
        size_t room = b->len == 0 ? (max_bytes > FERRY_BATCH_HEADER_SIZE ? max_bytes : FERRY_BATCH_HEADER_SIZE)
                                  : max_bytes - b->len;
        size_t want = s->size - pos < room ? (size_t)(s->size - pos) : room;
        if (reserve(b, b->len + want) != 0)
            goto oom;
        if (ferry_pread_full(s->log_fd, b->p + b->len, want, pos) != 0)
            goto err_read;
        size_t p = 0;
        while (p + FERRY_BATCH_HEADER_SIZE <= want) {
            struct ferry_batch_header h;
            ferry_batch_header_decode(b->p + b->len + p, &h);
            if (h.batch_length < FERRY_BATCH_HEADER_SIZE || h.batch_length > FERRY_MAX_BATCH_BYTES ||
                h.batch_length > s->size - pos - p) {
                snprintf(errmsg, errmsg_len, "%s: unexpected batch header at byte %" PRIu64, s->log_path, pos + p);
                return FERRY_ERR_STORAGE_ERROR;
            }
            if (h.base_offset + (int64_t)h.record_count > limit ||
                (b->len + p > 0 && b->len + p + h.batch_length > max_bytes)) {
                *stop = 1;
                break;
            }
            if (p + h.batch_length > want) { /* only the first batch may exceed the window */
                size_t more = p + h.batch_length - want;
                if (reserve(b, b->len + want + more) != 0)
                    goto oom;
                if (ferry_pread_full(s->log_fd, b->p + b->len + want, more, pos + want) != 0)
                    goto err_read;
                want += more;
            }
            p += h.batch_length;
        }
        b->len += p;
        pos += p;
        if (*stop || p == 0) { /* p == 0: a window smaller than a header, the budget is spent */
            *stop = 1;
            return 0;
        }
    }
    return 0;

oom:
    snprintf(errmsg, errmsg_len, "out of memory reading %s", s->log_path);
    return FERRY_ERR_STORAGE_ERROR;
err_read:
    snprintf(errmsg, errmsg_len, "read %s: %s", s->log_path, strerror(errno));
    return FERRY_ERR_STORAGE_ERROR;
}

int ferry_log_read(struct ferry_log *log, int64_t offset, int64_t limit_offset, size_t max_bytes, uint8_t **out,
                   size_t *out_len, char *errmsg, size_t errmsg_len)
{
    *out = NULL;
    *out_len = 0;
    int64_t start = ferry_log_start_offset(log);
    if (offset < start || offset > log->end_offset) {
        snprintf(errmsg, errmsg_len, "offset %" PRId64 " outside the log [%" PRId64 ", %" PRId64 "]", offset, start,
                 log->end_offset);
        return FERRY_ERR_OFFSET_OUT_OF_RANGE;
    }
    if (limit_offset > log->end_offset)
        limit_offset = log->end_offset;
    if (offset >= limit_offset)
        return 0;
    if (max_bytes > FERRY_MAX_FETCH_BYTES)
        max_bytes = FERRY_MAX_FETCH_BYTES; /* bounds the buffer: max_bytes plus at most one batch */

    uint32_t i = find_segment(log, offset);
    uint64_t pos;
    int rc = ferry_segment_locate(log->segs[i], offset, &pos, errmsg, errmsg_len);
    if (rc != 0)
        return rc;
    struct out_buf b = {0};
    for (int stop = 0; i < log->nsegs && !stop; i++, pos = 0) {
        rc = copy_batches(log->segs[i], pos, limit_offset, max_bytes, &b, &stop, errmsg, errmsg_len);
        if (rc != 0) {
            free(b.p);
            return rc;
        }
    }
    if (b.len == 0) {
        free(b.p);
        return 0;
    }
    *out = b.p;
    *out_len = b.len;
    return 0;
}

int ferry_log_offset_for_time(struct ferry_log *log, int64_t ts, int64_t *offset, char *errmsg,
                              size_t errmsg_len)
{
    /* Segments' max timestamps need not increase, so the first segment reaching ts holds the answer. */
    for (uint32_t i = 0; i < log->nsegs; i++) {
        const struct ferry_segment *s = log->segs[i];
        if (s->size > 0 && s->max_timestamp >= ts)
            return ferry_segment_find_time(s, ts, offset, errmsg, errmsg_len);
    }
    *offset = log->end_offset;
    return 0;
}
