/* recover.c: open-time scan of one segment: batch checks, torn-tail truncation, index verification. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ferry_errors.h"
#include "proto/limits.h"
#include "proto/varint.h"
#include "storage/segment.h"

/* Reads the segment in chunks; grows up to one whole batch (FERRY_MAX_BATCH_BYTES) when needed. */
#define SCAN_CHUNK (1u << 20)

struct scanner {
    int fd;
    uint64_t file_size;
    uint8_t *buf;
    size_t cap;
    uint64_t buf_pos; /* file position of buf[0] */
    size_t buf_len;
};

/* Makes bytes [pos, pos + len) available in *p (len <= FERRY_MAX_BATCH_BYTES).
 * Returns 0, 1 when they extend past the end of the file, or -1 on a read error (errno). */
static int scan_get(struct scanner *sc, uint64_t pos, size_t len, const uint8_t **p)
{
    if (pos > sc->file_size || len > sc->file_size - pos)
        return 1;
    if (pos >= sc->buf_pos && pos + len <= sc->buf_pos + sc->buf_len) {
        *p = sc->buf + (pos - sc->buf_pos);
        return 0;
    }
    if (len > sc->cap) {
        uint8_t *nb = realloc(sc->buf, len);
        if (nb == NULL) {
            errno = ENOMEM;
            return -1;
        }
        sc->buf = nb;
        sc->cap = len;
    }
    size_t want = sc->file_size - pos < sc->cap ? (size_t)(sc->file_size - pos) : sc->cap;
    sc->buf_len = 0;
    if (ferry_pread_full(sc->fd, sc->buf, want, pos) != 0)
        return -1;
    sc->buf_pos = pos;
    sc->buf_len = want;
    *p = sc->buf;
    return 0;
}

/*
 * Checks the batch at pos: complete, sane length, CRC and header valid, and a base offset equal to
 * min_base (exact) or at least min_base. Returns 0 (h filled), 1 bad (why says how), -1 read error.
 */
static int check_batch(struct scanner *sc, uint64_t pos, int64_t min_base, int exact, struct ferry_batch_header *h,
                       char *why, size_t why_len)
{
    const uint8_t *p;
    int rc = scan_get(sc, pos, FERRY_BATCH_HEADER_SIZE, &p);
    if (rc != 0) {
        if (rc > 0)
            snprintf(why, why_len, "truncated header (%" PRIu64 " bytes left)", sc->file_size - pos);
        return rc;
    }
    uint32_t len = ferry_be32_get(p + FERRY_BATCH_OFF_LENGTH);
    int64_t base = (int64_t)ferry_be64_get(p + FERRY_BATCH_OFF_BASE_OFFSET);
    if (len < FERRY_BATCH_HEADER_SIZE || len > FERRY_MAX_BATCH_BYTES) {
        snprintf(why, why_len, "bad batch length %" PRIu32, len);
        return 1;
    }
    if (exact ? base != min_base : base < min_base) {
        snprintf(why, why_len, "base offset %" PRId64 ", expected %s%" PRId64, base, exact ? "" : ">= ", min_base);
        return 1;
    }
    rc = scan_get(sc, pos, len, &p);
    if (rc != 0) {
        if (rc > 0)
            snprintf(why, why_len, "truncated batch (length %" PRIu32 ", %" PRIu64 " bytes left)", len,
                     sc->file_size - pos);
        return rc;
    }
    if (ferry_batch_validate(p, len, FERRY_MAX_BATCH_BYTES, h, why, why_len) != 0)
        return 1;
    return 0;
}

/* Looks for a valid batch with base offset >= min_base starting at any byte from `from` on.
 * Returns 1 (found, *at set), 0 (none), -1 read error. */
static int find_valid_after(struct scanner *sc, uint64_t from, int64_t min_base, uint64_t *at)
{
    char why[256];
    for (uint64_t q = from; q + FERRY_BATCH_HEADER_SIZE <= sc->file_size; q++) {
        const uint8_t *p;
        if (scan_get(sc, q, FERRY_BATCH_HEADER_SIZE, &p) != 0)
            return -1;
        if (p[20] != 0 || p[21] != FERRY_BATCH_MAGIC) /* cheap filter before the CRC */
            continue;
        struct ferry_batch_header h;
        int rc = check_batch(sc, q, min_base, 0, &h, why, sizeof(why));
        if (rc < 0)
            return -1;
        if (rc == 0) {
            *at = q;
            return 1;
        }
    }
    return 0;
}

/* Scans the .log: fills s from its batches; handles a bad batch as the header comment says. */
static int scan_log(struct ferry_segment *s, int is_last, uint32_t index_interval, char *errmsg, size_t errmsg_len)
{
    struct scanner sc = {.fd = s->log_fd, .file_size = s->size};
    int ret = 0;
    char why[256];
    if (sc.file_size > UINT32_MAX) {
        snprintf(errmsg, errmsg_len, "%s: larger than 4 GiB, positions do not fit the index", s->log_path);
        return FERRY_ERR_CORRUPT_BATCH;
    }
    sc.buf = malloc(SCAN_CHUNK);
    if (sc.buf == NULL) {
        snprintf(errmsg, errmsg_len, "out of memory");
        return FERRY_ERR_STORAGE_ERROR;
    }
    sc.cap = SCAN_CHUNK;
    s->size = 0;
    uint64_t pos = 0;
    while (pos < sc.file_size) {
        struct ferry_batch_header h;
        int rc = check_batch(&sc, pos, s->next_offset, 1, &h, why, sizeof(why));
        if (rc < 0)
            goto err_read;
        if (rc > 0) {
            if (!is_last) {
                snprintf(errmsg, errmsg_len, "%s: corrupt batch at byte %" PRIu64 ": %s", s->log_path, pos, why);
                ret = FERRY_ERR_CORRUPT_BATCH;
                goto out;
            }
            uint64_t at;
            rc = find_valid_after(&sc, pos + 1, s->next_offset, &at);
            if (rc < 0)
                goto err_read;
            if (rc > 0) {
                snprintf(errmsg, errmsg_len,
                         "%s: corrupt batch at byte %" PRIu64 " (%s) followed by a valid batch at byte %" PRIu64,
                         s->log_path, pos, why, at);
                ret = FERRY_ERR_CORRUPT_BATCH;
                goto out;
            }
            ferry_storage_msg(s->cfg, FERRY_LOG_MSG_WARN,
                              "%s: truncating torn tail at byte %" PRIu64 " (%" PRIu64 " bytes: %s)", s->log_path, pos,
                              sc.file_size - pos, why);
            if (ftruncate(s->log_fd, (off_t)pos) != 0 || fdatasync(s->log_fd) != 0) {
                snprintf(errmsg, errmsg_len, "truncate %s to %" PRIu64 ": %s", s->log_path, pos, strerror(errno));
                ret = FERRY_ERR_STORAGE_ERROR;
            }
            goto out;
        }
        if (h.base_offset - s->base_offset + h.record_count > UINT32_MAX) {
            snprintf(errmsg, errmsg_len, "%s: batch at byte %" PRIu64 " overflows relative offsets", s->log_path,
                     pos);
            ret = FERRY_ERR_CORRUPT_BATCH;
            goto out;
        }
        int added_offset, added_time;
        if (ferry_segment_index_batch(s, &h, pos, index_interval, &added_offset, &added_time) != 0) {
            snprintf(errmsg, errmsg_len, "out of memory");
            ret = FERRY_ERR_STORAGE_ERROR;
            goto out;
        }
        pos += h.batch_length;
    }
    goto out;

err_read:
    snprintf(errmsg, errmsg_len, "read %s: %s", s->log_path, strerror(errno));
    ret = FERRY_ERR_STORAGE_ERROR;
out:
    free(sc.buf);
    return ret;
}

/* 1 if the file at path holds exactly want[0, len); 0 otherwise (missing, other size, other bytes). */
static int file_matches(const char *path, const uint8_t *want, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    int same = 0;
    struct stat st;
    if (fstat(fd, &st) != 0 || (uint64_t)st.st_size != len)
        goto out;
    uint8_t chunk[16384];
    for (size_t done = 0; done < len;) {
        size_t n = len - done < sizeof(chunk) ? len - done : sizeof(chunk);
        if (ferry_pread_full(fd, chunk, n, done) != 0 || memcmp(chunk, want + done, n) != 0)
            goto out;
        done += n;
    }
    same = 1;
out:
    close(fd);
    return same;
}

/* Replaces the file's content with data; returns the open fd when keep, else closes it (0). -1 on error. */
static int rewrite_file(const char *path, const uint8_t *data, size_t len, int keep, char *errmsg,
                        size_t errmsg_len)
{
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || ferry_pwrite_full(fd, data, len, 0) != 0) {
        snprintf(errmsg, errmsg_len, "rewrite %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    if (keep)
        return fd;
    close(fd);
    return 0;
}

/* Verifies (or, for the active segment, always rewrites) one index file; sets *fd when active. */
static int sync_index_file(const struct ferry_segment *s, const char *suffix, const uint8_t *data, size_t len,
                           int is_last, int *fd, char *errmsg, size_t errmsg_len)
{
    char *path = ferry_segment_sibling_path(s, suffix);
    if (path == NULL) {
        snprintf(errmsg, errmsg_len, "out of memory");
        return FERRY_ERR_STORAGE_ERROR;
    }
    int ret = 0;
    if (!is_last && file_matches(path, data, len))
        goto out;
    if (!is_last)
        ferry_storage_msg(s->cfg, FERRY_LOG_MSG_INFO, "%s: missing or inconsistent, rebuilt from the log", path);
    int rc = rewrite_file(path, data, len, is_last, errmsg, errmsg_len);
    if (rc < 0)
        ret = FERRY_ERR_STORAGE_ERROR;
    else if (is_last)
        *fd = rc;
out:
    free(path);
    return ret;
}

static int sync_index_files(struct ferry_segment *s, int is_last, char *errmsg, size_t errmsg_len)
{
    size_t ilen = (size_t)s->index_len * FERRY_INDEX_ENTRY_SIZE;
    size_t tlen = (size_t)s->times_len * FERRY_TIME_ENTRY_SIZE;
    uint8_t *ibuf = malloc(ilen + 1), *tbuf = malloc(tlen + 1);
    int ret = FERRY_ERR_STORAGE_ERROR;
    if (ibuf == NULL || tbuf == NULL) {
        snprintf(errmsg, errmsg_len, "out of memory");
        goto out;
    }
    for (uint32_t i = 0; i < s->index_len; i++)
        ferry_index_entry_encode(&s->index[i], ibuf + (size_t)i * FERRY_INDEX_ENTRY_SIZE);
    for (uint32_t i = 0; i < s->times_len; i++)
        ferry_time_entry_encode(&s->times[i], tbuf + (size_t)i * FERRY_TIME_ENTRY_SIZE);
    ret = sync_index_file(s, "index", ibuf, ilen, is_last, &s->index_fd, errmsg, errmsg_len);
    if (ret == 0)
        ret = sync_index_file(s, "timeindex", tbuf, tlen, is_last, &s->time_fd, errmsg, errmsg_len);
out:
    free(ibuf);
    free(tbuf);
    return ret;
}

int ferry_segment_recover(struct ferry_segment *s, int is_last, uint32_t index_interval, char *errmsg,
                          size_t errmsg_len)
{
    int rc = scan_log(s, is_last, index_interval, errmsg, errmsg_len);
    if (rc != 0)
        return rc;
    return sync_index_files(s, is_last, errmsg, errmsg_len);
}
