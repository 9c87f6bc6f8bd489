/* log.c: opening (recovery of every segment), closing and destroying a partition log. */
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ferry_errors.h"
#include "storage/log_int.h"

int ferry_log_push_segment(struct ferry_log *log, struct ferry_segment *s)
{
    if (log->nsegs == log->segs_cap) {
        uint32_t cap = log->segs_cap ? log->segs_cap * 2 : 8;
        void *p = realloc(log->segs, (size_t)cap * sizeof(*log->segs));
        if (p == NULL)
            return -1;
        log->segs = p;
        log->segs_cap = cap;
    }
    s->cfg = &log->cfg;
    log->segs[log->nsegs++] = s;
    return 0;
}

/* fsyncs the directory holding path (after creating path in it). */
static int fsync_parent(const char *path, char *errmsg, size_t errmsg_len)
{
    char *copy = strdup(path);
    if (copy == NULL) {
        snprintf(errmsg, errmsg_len, "out of memory");
        return -1;
    }
    char *slash = strrchr(copy, '/');
    const char *parent = slash == NULL ? "." : slash == copy ? "/" : (*slash = '\0', copy);
    int fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = fd < 0 ? -1 : fsync(fd);
    if (rc != 0)
        snprintf(errmsg, errmsg_len, "fsync %s: %s", parent, strerror(errno));
    if (fd >= 0)
        close(fd);
    free(copy);
    return rc;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Lists the base offsets of the segment .log files in dir, ascending. *bases is malloc'd. */
static int list_segments(const char *dir, int64_t **bases, size_t *n, char *errmsg, size_t errmsg_len)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        snprintf(errmsg, errmsg_len, "opendir %s: %s", dir, strerror(errno));
        return -1;
    }
    int64_t *v = NULL;
    size_t len = 0, cap = 0;
    struct dirent *e;
    errno = 0;
    while ((e = readdir(d)) != NULL) {
        int64_t base;
        if (ferry_segment_parse_name(e->d_name, &base) != 0)
            continue;
        if (len == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            int64_t *nv = realloc(v, ncap * sizeof(*v));
            if (nv == NULL) {
                snprintf(errmsg, errmsg_len, "out of memory");
                goto err;
            }
            v = nv;
            cap = ncap;
        }
        v[len++] = base;
    }
    if (errno != 0) {
        snprintf(errmsg, errmsg_len, "readdir %s: %s", dir, strerror(errno));
        goto err;
    }
    closedir(d);
    if (len > 0)
        qsort(v, len, sizeof(*v), cmp_i64);
    *bases = v;
    *n = len;
    return 0;
err:
    free(v);
    closedir(d);
    return -1;
}

/*
 * Opens every segment, drops trailing empty ones (a crash right after a roll, possibly before the
 * previous segment's tail reached disk), recovers each (only the last may lose a torn tail) and
 * checks that offsets continue from one segment to the next.
 */
static int recover_segments(struct ferry_log *log, const int64_t *bases, size_t n, char *errmsg, size_t errmsg_len)
{
    for (size_t i = 0; i < n; i++) {
        struct ferry_segment *s;
        int rc = ferry_segment_open(log->dir, bases[i], &s, errmsg, errmsg_len);
        if (rc != 0)
            return rc;
        if (ferry_log_push_segment(log, s) != 0) {
            ferry_segment_free(s);
            snprintf(errmsg, errmsg_len, "out of memory");
            return FERRY_ERR_STORAGE_ERROR;
        }
    }
    while (log->nsegs > 1 && ferry_log_active(log)->size == 0) {
        struct ferry_segment *s = ferry_log_active(log);
        ferry_log_msg(log, FERRY_LOG_MSG_WARN, "%s: removing empty trailing segment", s->log_path);
        int rc = ferry_segment_unlink(s, errmsg, errmsg_len);
        if (rc != 0)
            return rc;
        ferry_segment_free(s);
        log->nsegs--;
    }
    for (uint32_t i = 0; i < log->nsegs; i++) {
        struct ferry_segment *s = log->segs[i];
        int is_last = i + 1 == log->nsegs;
        int rc = ferry_segment_recover(s, is_last, log->cfg.index_interval_bytes, errmsg, errmsg_len);
        if (rc != 0)
            return rc;
        if (i > 0 && s->base_offset != log->segs[i - 1]->next_offset) {
            snprintf(errmsg, errmsg_len,
                     "%s: base offset %" PRId64 " at byte 0 does not follow %s, which ends at %" PRId64,
                     s->log_path, s->base_offset, log->segs[i - 1]->log_path, log->segs[i - 1]->next_offset);
            return FERRY_ERR_CORRUPT_BATCH;
        }
        if (!is_last)
            ferry_segment_deactivate(s);
        log->size_bytes += s->size;
    }
    return 0;
}

/* Recovered bytes may still be only in the page cache (a kill -9 leaves them there): flush them,
 * and the directory, so that everything below end_offset is durable as ferry_log_open promises. */
static int make_durable(struct ferry_log *log, char *errmsg, size_t errmsg_len)
{
    for (uint32_t i = 0; i < log->nsegs; i++) {
        if (fdatasync(log->segs[i]->log_fd) != 0) {
            snprintf(errmsg, errmsg_len, "fdatasync %s: %s", log->segs[i]->log_path, strerror(errno));
            return FERRY_ERR_STORAGE_ERROR;
        }
    }
    if (fsync(log->dir_fd) != 0) {
        snprintf(errmsg, errmsg_len, "fsync %s: %s", log->dir, strerror(errno));
        return FERRY_ERR_STORAGE_ERROR;
    }
    return 0;
}

int ferry_log_open(const char *dir, const struct ferry_log_config *cfg, struct ferry_log **out, char *errmsg,
                   size_t errmsg_len)
{
    int64_t *bases = NULL;
    size_t n = 0;
    int rc = FERRY_ERR_STORAGE_ERROR;
    struct ferry_log *log = calloc(1, sizeof(*log));
    if (log == NULL || (log->dir = strdup(dir)) == NULL) {
        snprintf(errmsg, errmsg_len, "out of memory");
        free(log);
        return FERRY_ERR_STORAGE_ERROR;
    }
    log->cfg = *cfg;
    log->dir_fd = -1;
    if (mkdir(dir, 0755) == 0) {
        if (fsync_parent(dir, errmsg, errmsg_len) != 0)
            goto err_close;
    } else if (errno != EEXIST) {
        snprintf(errmsg, errmsg_len, "mkdir %s: %s", dir, strerror(errno));
        goto err_close;
    }
    log->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (log->dir_fd < 0) {
        snprintf(errmsg, errmsg_len, "open %s: %s", dir, strerror(errno));
        goto err_close;
    }
    if (list_segments(dir, &bases, &n, errmsg, errmsg_len) != 0)
        goto err_close;
    if (n == 0) {
        struct ferry_segment *s;
        rc = ferry_segment_create(dir, 0, &s, errmsg, errmsg_len);
        if (rc != 0)
            goto err_close;
        if (ferry_log_push_segment(log, s) != 0) {
            ferry_segment_free(s);
            snprintf(errmsg, errmsg_len, "out of memory");
            rc = FERRY_ERR_STORAGE_ERROR;
            goto err_close;
        }
    } else {
        rc = recover_segments(log, bases, n, errmsg, errmsg_len);
        if (rc != 0)
            goto err_close;
    }
    rc = make_durable(log, errmsg, errmsg_len);
    if (rc != 0)
        goto err_close;
    free(bases);
    log->end_offset = ferry_log_active(log)->next_offset;
    log->durable_offset = log->sync_mark = log->end_offset;
    *out = log;
    return 0;

err_close:
    free(bases);
    ferry_log_close(log);
    return rc;
}

void ferry_log_close(struct ferry_log *log)
{
    if (log == NULL)
        return;
    assert(!log->sync_inflight); /* sync_end must run before close: it uses the log */
    for (uint32_t i = 0; i < log->nsegs; i++)
        ferry_segment_free(log->segs[i]);
    if (log->dir_fd >= 0)
        close(log->dir_fd);
    free(log->segs);
    free(log->dir);
    free(log);
}

void ferry_log_set_config(struct ferry_log *log, const struct ferry_log_config *cfg)
{
    log->cfg = *cfg;
}

int64_t ferry_log_start_offset(const struct ferry_log *log)
{
    return log->segs[0]->base_offset;
}

int64_t ferry_log_end_offset(const struct ferry_log *log)
{
    return log->end_offset;
}

int64_t ferry_log_durable_offset(const struct ferry_log *log)
{
    return log->durable_offset;
}

uint64_t ferry_log_size_bytes(const struct ferry_log *log)
{
    return log->size_bytes;
}

uint32_t ferry_log_segment_count(const struct ferry_log *log)
{
    return log->nsegs;
}

/* Our file names: 20 digits then .log, .index or .timeindex. */
static int is_segment_file(const char *name)
{
    size_t n = strspn(name, "0123456789");
    return n == 20 && (strcmp(name + n, ".log") == 0 || strcmp(name + n, ".index") == 0 ||
                       strcmp(name + n, ".timeindex") == 0);
}

int ferry_log_destroy(struct ferry_log *log, char *errmsg, size_t errmsg_len)
{
    char *dir = strdup(log->dir);
    ferry_log_close(log);
    if (dir == NULL) {
        snprintf(errmsg, errmsg_len, "out of memory");
        return FERRY_ERR_STORAGE_ERROR;
    }
    int rc = FERRY_ERR_STORAGE_ERROR;
    DIR *d = opendir(dir);
    if (d == NULL) {
        snprintf(errmsg, errmsg_len, "opendir %s: %s", dir, strerror(errno));
        goto out;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (is_segment_file(e->d_name) && unlinkat(dirfd(d), e->d_name, 0) != 0) {
            snprintf(errmsg, errmsg_len, "unlink %s/%s: %s", dir, e->d_name, strerror(errno));
            closedir(d);
            goto out;
        }
    }
    closedir(d);
    if (rmdir(dir) != 0) { /* fails, on purpose, when files that are not ours are left */
        snprintf(errmsg, errmsg_len, "rmdir %s: %s", dir, strerror(errno));
        goto out;
    }
    rc = 0;
out:
    free(dir);
    return rc;
}

int ferry_log_failed(const struct ferry_log *log)
{
    return log->failed;
}
