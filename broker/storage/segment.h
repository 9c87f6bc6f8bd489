/* segment.h: one log segment (internal to broker/storage): its .log, .index and .timeindex files. */
#ifndef FERRY_STORAGE_SEGMENT_H
#define FERRY_STORAGE_SEGMENT_H

#include <stddef.h>
#include <stdint.h>

#include "proto/batch.h"
#include "storage/log.h"

/*
 * On-disk index entries (docs/disk-format.md), big-endian:
 *   .index      8 bytes  {u32 offset relative to base_offset, u32 byte position in .log}
 *   .timeindex 12 bytes  {i64 max timestamp of the segment up to and including that batch,
 *                         u32 relative offset of that batch}
 * Both are sparse: an entry is added for the batch that starts at or after index_interval_bytes
 * since the previous entry (none for the batch at position 0). A time entry is added at the same
 * points, only when the running max timestamp grew, so both files are strictly increasing.
 * The index files are derived data: never fsynced, verified against the .log at every open and
 * rewritten when they differ (recover.c).
 *
 * Memory: 8 bytes per offset entry + 16 per time entry, at most size/index_interval_bytes + 1 of
 * each: about 24 bytes per index_interval_bytes of log (6 MiB for a 1 GiB segment at 4 KiB).
 */
#define FERRY_INDEX_ENTRY_SIZE 8
#define FERRY_TIME_ENTRY_SIZE 12

struct ferry_index_entry {
    uint32_t rel_offset;
    uint32_t position;
};

struct ferry_time_entry {
    int64_t timestamp;
    uint32_t rel_offset;
};

void ferry_index_entry_encode(const struct ferry_index_entry *e, uint8_t out[FERRY_INDEX_ENTRY_SIZE]);
void ferry_time_entry_encode(const struct ferry_time_entry *e, uint8_t out[FERRY_TIME_ENTRY_SIZE]);

struct ferry_segment {
    int64_t base_offset;
    int64_t next_offset;      /* offset after the last batch (== base_offset when empty) */
    uint64_t size;            /* bytes of whole batches in .log */
    int64_t max_timestamp;    /* largest batch max_timestamp; INT64_MIN when empty */
    int64_t first_append_ms;  /* broker time of the first append, -1 when unknown (after reopen) */
    uint64_t bytes_since_entry; /* log bytes since the last index entry (or the segment start) */
    int log_fd;
    int index_fd; /* -1 unless active: the index files are complete once a segment rolls */
    int time_fd;
    int index_files_broken; /* a write to an index file failed: stop writing, rebuilt at next open */
    int dirty;              /* .log written since the last sync_begin */
    struct ferry_index_entry *index;
    uint32_t index_len, index_cap;
    struct ferry_time_entry *times;
    uint32_t times_len, times_cap;
    char *log_path; /* "<dir>/<20-digit base>.log"; the index paths differ only in the suffix */
    const struct ferry_log_config *cfg; /* the owning log's (for messages); NULL before it is pushed */
};

/* Reports a message through cfg->msg_fn, or on stderr when cfg or msg_fn is NULL. */
void ferry_storage_msg(const struct ferry_log_config *cfg, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* pread/pwrite of exactly len bytes, retrying EINTR and short transfers. 0 or -1 with errno set
 * (EIO for an unexpected end of file). */
int ferry_pread_full(int fd, void *buf, size_t len, uint64_t pos);
int ferry_pwrite_full(int fd, const void *buf, size_t len, uint64_t pos);

/* File name helpers: path of the segment's file with the given suffix ("log", "index", "timeindex");
 * malloc'd, NULL on OOM. */
char *ferry_segment_path(const char *dir, int64_t base_offset, const char *suffix);
/* The path of s's file with another suffix ("index", "timeindex"); malloc'd, NULL on OOM. */
char *ferry_segment_sibling_path(const struct ferry_segment *s, const char *suffix);
/* Parses "<20 digits>.log" into *base; returns 0, or -1 when the name is not a segment's log. */
int ferry_segment_parse_name(const char *name, int64_t *base);

/* Creates an empty segment (O_EXCL on the .log; fresh index files), active: index fds open. */
int ferry_segment_create(const char *dir, int64_t base_offset, struct ferry_segment **out, char *errmsg,
                         size_t errmsg_len);
/* Opens an existing .log for recovery (recover.c fills in size, offsets and indexes). */
int ferry_segment_open(const char *dir, int64_t base_offset, struct ferry_segment **out, char *errmsg,
                       size_t errmsg_len);
/* Closes fds and frees; files stay. NULL is fine. */
void ferry_segment_free(struct ferry_segment *s);
/* Unlinks the index files, then the .log (so a crash in between leaves only rebuildable state). */
int ferry_segment_unlink(const struct ferry_segment *s, char *errmsg, size_t errmsg_len);
/* Called when the segment stops being active: closes its index fds. */
void ferry_segment_deactivate(struct ferry_segment *s);

/*
 * Appends one batch whose base offset is already s->next_offset (header decoded in h): pwrite at
 * s->size, then index entries in memory and in the index files. A failed or short write is cut
 * back with ftruncate and reported (STORAGE_ERROR); index file errors only mark the files broken.
 */
int ferry_segment_append(struct ferry_segment *s, const uint8_t *batch, size_t len,
                         const struct ferry_batch_header *h, uint32_t index_interval, char *errmsg,
                         size_t errmsg_len);
/* Adds the index entries for a batch at `position` (shared by append and recovery). Memory only. */
int ferry_segment_index_batch(struct ferry_segment *s, const struct ferry_batch_header *h, uint64_t position,
                              uint32_t index_interval, int *added_offset, int *added_time);

/* Reads and sanity-checks the batch header at pos (must be a batch boundary below s->size). */
int ferry_segment_read_header(const struct ferry_segment *s, uint64_t pos, struct ferry_batch_header *h,
                              char *errmsg, size_t errmsg_len);
/* Position of the batch containing offset (base_offset <= offset < next_offset). */
int ferry_segment_locate(const struct ferry_segment *s, int64_t offset, uint64_t *pos, char *errmsg,
                         size_t errmsg_len);
/* Base offset of the first batch whose max_timestamp >= ts; s->next_offset when none. */
int ferry_segment_find_time(const struct ferry_segment *s, int64_t ts, int64_t *offset, char *errmsg,
                            size_t errmsg_len);

/* ---- recover.c ---- */
/*
 * Scans every batch of s (length, CRC, contiguous offsets from s->base_offset) and rebuilds its
 * indexes in memory. A bad batch fails with FERRY_ERR_CORRUPT_BATCH naming file and byte offset,
 * unless is_last and no valid batch begins anywhere after it: then the tail is truncated (and
 * logged on stderr). The index files are then compared with the rebuilt indexes and rewritten
 * when they differ (always for the last segment, which stays active with its index fds open).
 */
int ferry_segment_recover(struct ferry_segment *s, int is_last, uint32_t index_interval, char *errmsg,
                          size_t errmsg_len);

#endif
