/* log_int.h: the partition log's state, shared by log.c, log_write.c and log_read.c (internal). */
#ifndef FERRY_STORAGE_LOG_INT_H
#define FERRY_STORAGE_LOG_INT_H

#include <stdint.h>

#include "storage/log.h"
#include "storage/segment.h"

/*
 * Invariants (checked by assertions):
 *   nsegs >= 1; segs[] ascending by base_offset; segs[i]->next_offset == segs[i+1]->base_offset;
 *   only segs[nsegs-1] (the active segment) may be empty and only it has its index fds open;
 *   start (segs[0]->base_offset) <= durable_offset <= end_offset == segs[nsegs-1]->next_offset.
 * Memory: the struct, one pointer per segment, and each segment's sparse indexes (segment.h).
 * File descriptors: the directory, one .log per segment, and the active segment's two index files.
 */
struct ferry_log {
    char *dir;
    int dir_fd;
    struct ferry_log_config cfg;
    struct ferry_segment **segs;
    uint32_t nsegs, segs_cap;
    int64_t end_offset;
    int64_t durable_offset;
    uint64_t size_bytes; /* sum of the segments' sizes */
    int dir_dirty;       /* a segment file was created since the last sync_begin */
    int sync_inflight;
    int64_t sync_mark; /* end_offset captured by the last sync_begin (segments wholly below are clean) */
    int failed;        /* an fsync failed: the page cache may have dropped data; refuse appends */
    char failmsg[256];
};

static inline struct ferry_segment *ferry_log_active(const struct ferry_log *log)
{
    return log->segs[log->nsegs - 1];
}

#define ferry_log_msg(log, level, ...) ferry_storage_msg(&(log)->cfg, (level), __VA_ARGS__)

/* Appends s to segs (growing the array) and points s->cfg at the log's config. Returns 0 or -1 on
 * OOM (s is not taken then). */
int ferry_log_push_segment(struct ferry_log *log, struct ferry_segment *s);

#endif
