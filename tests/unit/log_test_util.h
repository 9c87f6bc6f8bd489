/* log_test_util.h: helpers shared by the storage tests (temp dirs, batches, file access). */
#ifndef FERRY_LOG_TEST_UTIL_H
#define FERRY_LOG_TEST_UTIL_H

#include <criterion/criterion.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ferry_errors.h"
#include "proto/batch.h"
#include "storage/log.h"

/* A fresh temp dir per test; the log lives in <tmp>/p (created by ferry_log_open). */
struct tdir {
    char root[64];
    char log[96];
};

static inline void tdir_make(struct tdir *t)
{
    snprintf(t->root, sizeof(t->root), "/tmp/ferry-log-test-XXXXXX");
    cr_assert_not_null(mkdtemp(t->root));
    snprintf(t->log, sizeof(t->log), "%s/p", t->root);
}

static inline int rm_entry_(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static inline void tdir_remove(struct tdir *t)
{
    nftw(t->root, rm_entry_, 16, FTW_DEPTH | FTW_PHYS);
}

static inline struct ferry_log_config test_cfg(void)
{
    return (struct ferry_log_config){
        .segment_bytes = 1u << 20, .segment_ms = -1, .retention_ms = -1, .retention_bytes = -1,
        .index_interval_bytes = 4096};
}

/* A batch of count records, all with timestamp ts except the last (max_ts); values of value_len
 * bytes filled from tag, so batches are distinguishable. Caller frees. */
static inline uint8_t *make_batch_ts(uint32_t count, int64_t ts, int64_t max_ts, size_t value_len, uint32_t tag,
                                     size_t *len)
{
    struct ferry_batch_builder *b = ferry_batch_builder_new(FERRY_COMPRESSION_NONE, -1, -1, -1);
    cr_assert_not_null(b);
    uint8_t *value = malloc(value_len + 1);
    cr_assert_not_null(value);
    for (size_t i = 0; i < value_len; i++)
        value[i] = (uint8_t)(tag * 31 + i);
    for (uint32_t i = 0; i < count; i++) {
        int64_t t = i + 1 == count ? max_ts : ts;
        cr_assert_eq(ferry_batch_builder_add(b, t, &tag, sizeof(tag), value, (ssize_t)value_len, NULL, 0), 0);
    }
    free(value);
    uint8_t *out;
    cr_assert_eq(ferry_batch_builder_seal(b, &out, len), 0);
    return out;
}

static inline uint8_t *make_batch(uint32_t count, int64_t ts, size_t value_len, uint32_t tag, size_t *len)
{
    return make_batch_ts(count, ts, ts, value_len, tag, len);
}

/* Appends a fresh batch; returns its base offset. Optionally hands back a copy as stored. */
static inline int64_t append_batch(struct ferry_log *log, uint32_t count, int64_t ts, size_t value_len,
                                   uint32_t tag, int64_t now_ms)
{
    size_t len;
    uint8_t *b = make_batch(count, ts, value_len, tag, &len);
    char err[256] = "";
    int64_t base = -1;
    int rc = ferry_log_append(log, b, len, now_ms, &base, err, sizeof(err));
    cr_assert_eq(rc, 0, "append: %s", err);
    free(b);
    return base;
}

/* Runs a whole group commit on the calling thread; returns the covered offset (-1 if none). */
static inline int64_t sync_all(struct ferry_log *log)
{
    struct ferry_log_sync *s = ferry_log_sync_begin(log);
    if (s == NULL)
        return -1;
    int64_t off = ferry_log_sync_offset(s);
    int rc = ferry_log_sync_run(s);
    cr_assert_eq(rc, 0);
    ferry_log_sync_end(log, s, rc);
    return off;
}

static inline struct ferry_log *open_log(const char *dir, const struct ferry_log_config *cfg)
{
    struct ferry_log *log = NULL;
    char err[256] = "";
    int rc = ferry_log_open(dir, cfg, &log, err, sizeof(err));
    cr_assert_eq(rc, 0, "open: %s", err);
    return log;
}

/* Whole-file helpers. */
static inline uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)n + 1);
    cr_assert_not_null(buf);
    cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static inline void write_file(const char *path, const uint8_t *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "create %s", path);
    cr_assert_eq(fwrite(data, 1, len, f), len);
    fclose(f);
}

/* Sends stderr to <tmp>/stderr.txt until captured_stderr (recovery logs a line per repair). */
static int saved_stderr_ = -1;
static inline void capture_stderr(const struct tdir *t)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/stderr.txt", t->root);
    fflush(stderr);
    saved_stderr_ = dup(2);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    cr_assert_geq(fd, 0);
    dup2(fd, 2);
    close(fd);
}

/* Restores stderr; returns what was written meanwhile (malloc'd, NUL-terminated). */
static inline char *captured_stderr(const struct tdir *t)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/stderr.txt", t->root);
    fflush(stderr);
    dup2(saved_stderr_, 2);
    close(saved_stderr_);
    size_t len;
    uint8_t *data = read_file(path, &len);
    data[len] = '\0';
    return (char *)data;
}

static inline char *seg_path(const char *dir, int64_t base, const char *suffix)
{
    static char buf[4][256];
    static int next;
    char *p = buf[next++ % 4];
    snprintf(p, sizeof(buf[0]), "%s/%020lld.%s", dir, (long long)base, suffix);
    return p;
}

static inline uint64_t be32_at(const uint8_t *p)
{
    return (uint64_t)p[0] << 24 | (uint64_t)p[1] << 16 | (uint64_t)p[2] << 8 | p[3];
}

/* Walks concatenated batches: returns the number, and fills bases/counts when given. */
static inline size_t walk_batches(const uint8_t *buf, size_t len, int64_t *bases, uint32_t *counts, size_t max)
{
    size_t n = 0;
    for (size_t p = 0; p < len;) {
        struct ferry_batch_header h;
        cr_assert(p + FERRY_BATCH_HEADER_SIZE <= len);
        ferry_batch_header_decode(buf + p, &h);
        cr_assert(h.batch_length >= FERRY_BATCH_HEADER_SIZE && p + h.batch_length <= len);
        if (n < max) {
            if (bases)
                bases[n] = h.base_offset;
            if (counts)
                counts[n] = h.record_count;
        }
        n++;
        p += h.batch_length;
    }
    return n;
}

#endif
