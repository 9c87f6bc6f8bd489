/* test_log.c: partition log: append/read, rolls, indexes, time lookup, retention, group commit. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log_test_util.h"

static struct tdir T;
static void setup(void)
{
    tdir_make(&T);
}
static void teardown(void)
{
    tdir_remove(&T);
}
TestSuite(log, .init = setup, .fini = teardown);

/* Appends a batch and keeps the stored copy (base offset patched in by the append). */
static uint8_t *append_keep(struct ferry_log *log, uint32_t count, int64_t ts, size_t value_len, uint32_t tag,
                            int64_t now_ms, size_t *len, int64_t *base)
{
    uint8_t *b = make_batch(count, ts, value_len, tag, len);
    char err[256] = "";
    cr_assert_eq(ferry_log_append(log, b, *len, now_ms, base, err, sizeof(err)), 0, "append: %s", err);
    return b;
}

static uint8_t *read_ok(struct ferry_log *log, int64_t offset, int64_t limit, size_t max_bytes, size_t *len)
{
    uint8_t *out = (uint8_t *)1;
    char err[256] = "";
    int rc = ferry_log_read(log, offset, limit, max_bytes, &out, len, err, sizeof(err));
    cr_assert_eq(rc, 0, "read %lld: %s", (long long)offset, err);
    cr_assert((out == NULL) == (*len == 0));
    return out;
}

static int file_exists(const char *path)
{
    return access(path, F_OK) == 0;
}

Test(log, append_and_read_back)
{
    struct ferry_log_config cfg = test_cfg();
    struct ferry_log *log = open_log(T.log, &cfg);
    cr_assert_eq(ferry_log_end_offset(log), 0);
    cr_assert_eq(ferry_log_start_offset(log), 0);
    cr_assert_eq(ferry_log_segment_count(log), 1);
    uint8_t *copies[10];
    size_t lens[10], total = 0;
    for (uint32_t i = 0; i < 10; i++) {
        int64_t base;
        copies[i] = append_keep(log, 3, 1000 + i, 100, i, 0, &lens[i], &base);
        cr_assert_eq(base, 3 * i);
        total += lens[i];
    }
    cr_assert_eq(ferry_log_end_offset(log), 30);
    cr_assert_eq(ferry_log_size_bytes(log), total);
    cr_assert_eq(sync_all(log), 30);
    cr_assert_eq(ferry_log_durable_offset(log), 30);

    for (int64_t off = 0; off < 30; off++) { /* every offset, including the middle of a batch */
        size_t len;
        uint8_t *out = read_ok(log, off, 30, 1, &len);
        cr_assert_eq(len, lens[off / 3]);
        cr_assert_arr_eq(out, copies[off / 3], len);
        free(out);
    }
    size_t len;
    uint8_t *all = read_ok(log, 0, 30, SIZE_MAX, &len);
    cr_assert_eq(len, total);
    for (size_t i = 0, p = 0; i < 10; p += lens[i++])
        cr_assert_arr_eq(all + p, copies[i], lens[i]);
    free(all);
    cr_assert_null(read_ok(log, 30, 30, 1000, &len)); /* the end: nothing yet */
    for (int i = 0; i < 10; i++)
        free(copies[i]);
    ferry_log_close(log);
}

Test(log, read_stops_at_limit_and_max_bytes)
{
    struct ferry_log_config cfg = test_cfg();
    struct ferry_log *log = open_log(T.log, &cfg);
    size_t blen = 0;
    for (uint32_t i = 0; i < 5; i++) {
        size_t l;
        int64_t base;
        free(append_keep(log, 2, 1000, 200, i, 0, &l, &base));
        blen = l;
    }
    size_t len;
    cr_assert_null(read_ok(log, 0, ferry_log_durable_offset(log), SIZE_MAX, &len)); /* nothing durable */
    cr_assert_eq(sync_all(log), 10);
    append_batch(log, 2, 1000, 200, 5, 0);
    append_batch(log, 2, 1000, 200, 6, 0);
    cr_assert_eq(ferry_log_end_offset(log), 14);

    uint8_t *out = read_ok(log, 0, ferry_log_durable_offset(log), SIZE_MAX, &len);
    cr_assert_eq(walk_batches(out, len, NULL, NULL, 0), 5);
    free(out);
    out = read_ok(log, 0, ferry_log_end_offset(log), SIZE_MAX, &len);
    cr_assert_eq(walk_batches(out, len, NULL, NULL, 0), 7);
    free(out);
    out = read_ok(log, 0, 3, SIZE_MAX, &len); /* the batch [2, 3] reaches limit 3 */
    cr_assert_eq(walk_batches(out, len, NULL, NULL, 0), 1);
    free(out);
    cr_assert_null(read_ok(log, 10, 10, SIZE_MAX, &len));

    out = read_ok(log, 0, 10, 0, &len); /* the first batch comes whatever max_bytes says */
    cr_assert_eq(len, blen);
    free(out);
    out = read_ok(log, 1, 10, blen * 2 + blen / 2, &len);
    cr_assert_eq(len, 2 * blen);
    free(out);
    out = read_ok(log, 4, 10, blen * 3, &len);
    int64_t bases[3];
    cr_assert_eq(walk_batches(out, len, bases, NULL, 3), 3);
    cr_assert_eq(bases[0], 4);
    cr_assert_eq(bases[2], 8);
    free(out);
    ferry_log_close(log);
}

Test(log, offset_out_of_range)
{
    struct ferry_log_config cfg = test_cfg();
    struct ferry_log *log = open_log(T.log, &cfg);
    append_batch(log, 4, 1000, 10, 0, 0);
    sync_all(log);
    uint8_t *out;
    size_t len;
    char err[256] = "";
    cr_assert_eq(ferry_log_read(log, 5, 4, 100, &out, &len, err, sizeof(err)), FERRY_ERR_OFFSET_OUT_OF_RANGE);
    cr_assert_null(out);
    cr_assert_neq(strstr(err, "offset 5"), NULL, "%s", err);
    cr_assert_eq(ferry_log_read(log, -1, 4, 100, &out, &len, err, sizeof(err)), FERRY_ERR_OFFSET_OUT_OF_RANGE);
    cr_assert_eq(ferry_log_read(log, 4, 4, 100, &out, &len, err, sizeof(err)), 0);
    cr_assert_null(out);
    cr_assert_eq(len, 0);
    ferry_log_close(log);
}

Test(log, roll_by_size)
{
    size_t l;
    free(make_batch(1, 1000, 1000, 0, &l));
    struct ferry_log_config cfg = test_cfg();
    cfg.segment_bytes = 3 * l;
    struct ferry_log *log = open_log(T.log, &cfg);
    for (uint32_t i = 0; i < 7; i++)
        append_batch(log, 1, 1000, 1000, i, 0);
    cr_assert_eq(ferry_log_segment_count(log), 3);
    cr_assert(file_exists(seg_path(T.log, 3, "log")));
    cr_assert(file_exists(seg_path(T.log, 6, "index")));
    cr_assert(file_exists(seg_path(T.log, 6, "timeindex")));
    cr_assert_not(file_exists(seg_path(T.log, 5, "log")));
    /* a batch larger than segment_bytes goes alone into a fresh segment */
    cr_assert_eq(append_batch(log, 1, 1000, 5000, 7, 0), 7);
    cr_assert_eq(ferry_log_segment_count(log), 4);
    cr_assert(file_exists(seg_path(T.log, 7, "log")));
    cr_assert_eq(append_batch(log, 1, 1000, 1000, 8, 0), 8);
    cr_assert_eq(ferry_log_segment_count(log), 5);
    cr_assert(file_exists(seg_path(T.log, 8, "log")));

    sync_all(log);
    size_t len;
    uint8_t *all = read_ok(log, 0, 9, SIZE_MAX, &len); /* one read spans the segments */
    int64_t bases[9];
    cr_assert_eq(walk_batches(all, len, bases, NULL, 9), 9);
    for (int i = 0; i < 9; i++)
        cr_assert_eq(bases[i], i);
    free(all);
    ferry_log_close(log);
}

Test(log, roll_by_age)
{
    struct ferry_log_config cfg = test_cfg();
    cfg.segment_ms = 1000;
    struct ferry_log *log = open_log(T.log, &cfg);
    char err[256];
    cr_assert_eq(ferry_log_maybe_roll(log, 50000, err, sizeof(err)), 0);
    cr_assert_eq(ferry_log_segment_count(log), 1); /* an empty segment never rolls */
    append_batch(log, 1, 1, 10, 0, 10000);
    append_batch(log, 1, 1, 10, 1, 10500);
    append_batch(log, 1, 1, 10, 2, 11000); /* exactly segment_ms old: not older */
    cr_assert_eq(ferry_log_segment_count(log), 1);
    cr_assert_eq(append_batch(log, 1, 1, 10, 3, 11001), 3);
    cr_assert_eq(ferry_log_segment_count(log), 2);
    cr_assert_eq(ferry_log_maybe_roll(log, 11500, err, sizeof(err)), 0);
    cr_assert_eq(ferry_log_segment_count(log), 2);
    cr_assert_eq(sync_all(log), 4);
    cr_assert_null(ferry_log_sync_begin(log));
    cr_assert_eq(ferry_log_maybe_roll(log, 12002, err, sizeof(err)), 0);
    cr_assert_eq(ferry_log_segment_count(log), 3);
    cr_assert(file_exists(seg_path(T.log, 4, "log")));
    /* the new file makes the directory dirty: the next sync has work even without appends */
    struct ferry_log_sync *s = ferry_log_sync_begin(log);
    cr_assert_not_null(s);
    cr_assert_eq(ferry_log_sync_offset(s), 4);
    int rc = ferry_log_sync_run(s);
    cr_assert_eq(rc, 0);
    ferry_log_sync_end(log, s, rc);
    cr_assert_eq(ferry_log_maybe_roll(log, 90000, err, sizeof(err)), 0);
    cr_assert_eq(ferry_log_segment_count(log), 3);
    ferry_log_close(log);
}

/* Deterministic generator for sizes and counts (xorshift). */
static uint32_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return (uint32_t)*s;
}

static void check_every_offset(struct ferry_log *log, const int64_t *bases, const uint32_t *counts, size_t n)
{
    int64_t end = ferry_log_end_offset(log);
    for (size_t i = 0; i < n; i++) {
        for (uint32_t k = 0; k < counts[i]; k++) {
            size_t len;
            uint8_t *out = read_ok(log, bases[i] + k, end, 1, &len);
            int64_t b;
            uint32_t c;
            cr_assert_eq(walk_batches(out, len, &b, &c, 1), 1);
            cr_assert_eq(b, bases[i], "offset %lld: got batch %lld", (long long)(bases[i] + k), (long long)b);
            cr_assert_eq(c, counts[i]);
            free(out);
        }
    }
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (24 - 8 * i));
}

/* Recomputes a segment's .index and .timeindex from its .log by the documented rule
 * (docs/disk-format.md) and compares them with the files byte for byte. Returns the entry count. */
static size_t check_index_files(const char *dir, int64_t seg_base, uint32_t interval)
{
    size_t loglen, ilen, tlen;
    uint8_t *log = read_file(seg_path(dir, seg_base, "log"), &loglen);
    uint8_t *idx = read_file(seg_path(dir, seg_base, "index"), &ilen);
    uint8_t *tim = read_file(seg_path(dir, seg_base, "timeindex"), &tlen);
    uint8_t *want_i = malloc(loglen / 8 + 8), *want_t = malloc(loglen / 4 + 12);
    size_t ni = 0, nt = 0;
    uint64_t since = 0;
    int64_t run_max = INT64_MIN, last_t = INT64_MIN;
    for (size_t p = 0; p < loglen;) {
        struct ferry_batch_header h;
        ferry_batch_header_decode(log + p, &h);
        uint32_t rel = (uint32_t)(h.base_offset - seg_base);
        if (h.max_timestamp > run_max)
            run_max = h.max_timestamp;
        if (p > 0 && since >= interval) {
            put32(want_i + 8 * ni, rel);
            put32(want_i + 8 * ni + 4, (uint32_t)p);
            ni++;
            since = 0;
            if (run_max > last_t) {
                put32(want_t + 12 * nt, (uint32_t)((uint64_t)run_max >> 32));
                put32(want_t + 12 * nt + 4, (uint32_t)run_max);
                put32(want_t + 12 * nt + 8, rel);
                nt++;
                last_t = run_max;
            }
        }
        since += h.batch_length;
        p += h.batch_length;
    }
    cr_assert_eq(ilen, 8 * ni, "segment %lld", (long long)seg_base);
    cr_assert_eq(tlen, 12 * nt);
    cr_assert_arr_eq(idx, want_i, ilen);
    cr_assert_arr_eq(tim, want_t, tlen);
    free(log);
    free(idx);
    free(tim);
    free(want_i);
    free(want_t);
    return ni;
}

Test(log, index_lookup_over_many_batches_and_segments)
{
    enum { N = 1500 };
    static int64_t bases[N];
    static uint32_t counts[N];
    struct ferry_log_config cfg = test_cfg();
    cfg.segment_bytes = 64 * 1024;
    cfg.index_interval_bytes = 700;
    struct ferry_log *log = open_log(T.log, &cfg);
    uint64_t seed = 0x9e3779b97f4a7c15u;
    for (uint32_t i = 0; i < N; i++) {
        counts[i] = 1 + rnd(&seed) % 5;
        bases[i] = append_batch(log, counts[i], 1000 + i, 10 + rnd(&seed) % 400, i, 0);
    }
    cr_assert_gt(ferry_log_segment_count(log), 5);
    sync_all(log);
    check_every_offset(log, bases, counts, N);
    ferry_log_close(log);
    size_t entries = 0, segments = 0; /* the files written by appends follow the format */
    for (size_t i = 0; i < N; i++) {
        if (file_exists(seg_path(T.log, bases[i], "log"))) {
            entries += check_index_files(T.log, bases[i], cfg.index_interval_bytes);
            segments++;
        }
    }
    cr_assert_gt(segments, 5);
    cr_assert_gt(entries, N / 10);
    log = open_log(T.log, &cfg); /* the same through indexes recovered from disk */
    check_every_offset(log, bases, counts, N);
    ferry_log_close(log);
}

static int64_t brute_time(const int64_t *bases, const int64_t *maxts, size_t n, int64_t ts, int64_t end)
{
    for (size_t i = 0; i < n; i++)
        if (maxts[i] >= ts)
            return bases[i];
    return end;
}

static void check_times(struct ferry_log *log, const int64_t *bases, const int64_t *maxts, size_t n)
{
    for (int64_t ts = 900; ts < 1000 + 10 * (int64_t)n + 700; ts += 3) {
        int64_t off = -1;
        char err[256] = "";
        cr_assert_eq(ferry_log_offset_for_time(log, ts, &off, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(off, brute_time(bases, maxts, n, ts, ferry_log_end_offset(log)), "ts %lld", (long long)ts);
    }
}

Test(log, offset_for_time)
{
    enum { N = 400 };
    int64_t bases[N], maxts[N];
    struct ferry_log_config cfg = test_cfg();
    cfg.segment_bytes = 8 * 1024;
    cfg.index_interval_bytes = 300;
    struct ferry_log *log = open_log(T.log, &cfg);
    for (uint32_t i = 0; i < N; i++) {
        int64_t ts = 1000 + 10 * (int64_t)i;
        if (i % 11 == 5)
            ts -= 300; /* late records */
        maxts[i] = i % 7 == 3 ? ts + 500 : ts; /* and some from the future */
        size_t len;
        uint8_t *b = make_batch_ts(2, ts, maxts[i], 60, i, &len);
        char err[256];
        cr_assert_eq(ferry_log_append(log, b, len, 0, &bases[i], err, sizeof(err)), 0);
        free(b);
    }
    cr_assert_gt(ferry_log_segment_count(log), 3);
    check_times(log, bases, maxts, N);
    sync_all(log);
    ferry_log_close(log);
    log = open_log(T.log, &cfg);
    check_times(log, bases, maxts, N);
    ferry_log_close(log);
}

/* 10 one-record batches, timestamps i * 1000, three per segment: [0-2] [3-5] [6-8] [9]. */
static struct ferry_log *four_segments(struct ferry_log_config *cfg, size_t *blen)
{
    free(make_batch(1, 0, 100, 0, blen));
    *cfg = test_cfg();
    cfg->segment_bytes = 3 * *blen;
    struct ferry_log *log = open_log(T.log, cfg);
    for (uint32_t i = 0; i < 10; i++)
        append_batch(log, 1, i * 1000, 100, i, 0);
    cr_assert_eq(ferry_log_segment_count(log), 4);
    return log;
}

Test(log, retention_by_time)
{
    struct ferry_log_config cfg;
    size_t blen;
    struct ferry_log *log = four_segments(&cfg, &blen);
    char err[256] = "";
    cfg.retention_ms = 1000;
    ferry_log_set_config(log, &cfg);
    cr_assert_eq(ferry_log_apply_retention(log, 1000000, err, sizeof(err)), 0); /* nothing durable yet */
    sync_all(log);
    cr_assert_eq(ferry_log_apply_retention(log, 5500, err, sizeof(err)), 1, "%s", err); /* max 2000 < 4500 */
    cr_assert_eq(ferry_log_start_offset(log), 3);
    cr_assert_not(file_exists(seg_path(T.log, 0, "log")));
    cr_assert_not(file_exists(seg_path(T.log, 0, "index")));
    cr_assert_not(file_exists(seg_path(T.log, 0, "timeindex")));
    cr_assert_eq(ferry_log_size_bytes(log), 7 * blen);
    cr_assert_eq(ferry_log_apply_retention(log, 5500, err, sizeof(err)), 0); /* max 5000 is recent */
    cr_assert_eq(ferry_log_apply_retention(log, 1000000, err, sizeof(err)), 2); /* never the active one */
    cr_assert_eq(ferry_log_segment_count(log), 1);
    cr_assert_eq(ferry_log_start_offset(log), 9);
    uint8_t *out;
    size_t len;
    cr_assert_eq(ferry_log_read(log, 8, 10, 100, &out, &len, err, sizeof(err)), FERRY_ERR_OFFSET_OUT_OF_RANGE);
    out = read_ok(log, 9, 10, 100, &len);
    cr_assert_eq(len, blen);
    free(out);
    ferry_log_close(log);
    log = open_log(T.log, &cfg); /* the start offset survives a reopen */
    cr_assert_eq(ferry_log_start_offset(log), 9);
    cr_assert_eq(ferry_log_end_offset(log), 10);
    ferry_log_close(log);
}

Test(log, retention_by_bytes)
{
    struct ferry_log_config cfg;
    size_t blen;
    struct ferry_log *log = four_segments(&cfg, &blen);
    sync_all(log);
    char err[256] = "";
    cfg.retention_bytes = (int64_t)(4 * blen + 1);
    ferry_log_set_config(log, &cfg);
    cr_assert_eq(ferry_log_apply_retention(log, 0, err, sizeof(err)), 2, "%s", err);
    cr_assert_eq(ferry_log_start_offset(log), 6);
    cr_assert_eq(ferry_log_size_bytes(log), 4 * blen);
    cfg.retention_bytes = 0;
    ferry_log_set_config(log, &cfg);
    cr_assert_eq(ferry_log_apply_retention(log, 0, err, sizeof(err)), 1);
    cr_assert_eq(ferry_log_segment_count(log), 1);
    cr_assert_eq(ferry_log_start_offset(log), 9);
    ferry_log_close(log);
}

static void *run_sync(void *arg)
{
    return (void *)(intptr_t)ferry_log_sync_run(arg);
}

Test(log, group_commit_advances_durable_offset)
{
    struct ferry_log_config cfg = test_cfg();
    struct ferry_log *log = open_log(T.log, &cfg);
    cr_assert_null(ferry_log_sync_begin(log)); /* open left everything durable */
    append_batch(log, 2, 1000, 50, 0, 0);
    struct ferry_log_sync *s = ferry_log_sync_begin(log);
    cr_assert_not_null(s);
    cr_assert_eq(ferry_log_sync_offset(s), 2);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, run_sync, s), 0);
    append_batch(log, 3, 1000, 50, 1, 0); /* the loop keeps appending during the sync */
    void *res;
    pthread_join(th, &res);
    cr_assert_eq((intptr_t)res, 0);
    cr_assert_eq(ferry_log_durable_offset(log), 0);
    ferry_log_sync_end(log, s, 0);
    cr_assert_eq(ferry_log_durable_offset(log), 2); /* not 5: the second batch came after begin */
    size_t len;
    uint8_t *out = read_ok(log, 0, ferry_log_durable_offset(log), SIZE_MAX, &len);
    cr_assert_eq(walk_batches(out, len, NULL, NULL, 0), 1);
    free(out);
    cr_assert_eq(sync_all(log), 5);
    cr_assert_eq(ferry_log_durable_offset(log), 5);
    cr_assert_null(ferry_log_sync_begin(log));
    ferry_log_close(log);
}

Test(log, failed_fsync_stops_appends)
{
    struct ferry_log_config cfg = test_cfg();
    struct ferry_log *log = open_log(T.log, &cfg);
    append_batch(log, 1, 1000, 50, 0, 0);
    struct ferry_log_sync *s = ferry_log_sync_begin(log);
    cr_assert_eq(ferry_log_sync_run(s), 0);
    capture_stderr(&T);
    ferry_log_sync_end(log, s, -5 /* -EIO, as if fdatasync had failed */);
    char *msg = captured_stderr(&T);
    cr_assert_neq(strstr(msg, "fsync failed"), NULL, "%s", msg);
    free(msg);
    cr_assert_eq(ferry_log_durable_offset(log), 0);
    size_t len;
    uint8_t *b = make_batch(1, 1000, 50, 1, &len);
    int64_t base;
    char err[256] = "";
    cr_assert_eq(ferry_log_append(log, b, len, 0, &base, err, sizeof(err)), FERRY_ERR_STORAGE_ERROR);
    cr_assert_neq(strstr(err, "fsync failed"), NULL, "%s", err);
    free(b);
    ferry_log_close(log);
    log = open_log(T.log, &cfg); /* reopening recovers (and fsyncs) what is on disk */
    cr_assert_eq(ferry_log_durable_offset(log), 1);
    ferry_log_close(log);
}

Test(log, reopen_restores_end_offset_and_data)
{
    size_t l;
    free(make_batch(2, 1000, 300, 0, &l));
    struct ferry_log_config cfg = test_cfg();
    cfg.segment_bytes = 4 * l;
    cfg.index_interval_bytes = 500;
    struct ferry_log *log = open_log(T.log, &cfg);
    for (uint32_t i = 0; i < 20; i++)
        append_batch(log, 2, 1000 + i, 300, i, 0);
    sync_all(log);
    size_t len;
    uint8_t *before = read_ok(log, 0, 40, SIZE_MAX, &len);
    uint32_t nsegs = ferry_log_segment_count(log);
    ferry_log_close(log);

    log = open_log(T.log, &cfg);
    cr_assert_eq(ferry_log_end_offset(log), 40);
    cr_assert_eq(ferry_log_durable_offset(log), 40);
    cr_assert_eq(ferry_log_start_offset(log), 0);
    cr_assert_eq(ferry_log_segment_count(log), nsegs);
    cr_assert_eq(ferry_log_size_bytes(log), 20 * l);
    size_t len2;
    uint8_t *after = read_ok(log, 0, 40, SIZE_MAX, &len2);
    cr_assert_eq(len2, len);
    cr_assert_arr_eq(after, before, len);
    cr_assert_eq(append_batch(log, 2, 2000, 300, 99, 0), 40); /* appends continue where they stopped */
    free(before);
    free(after);
    ferry_log_close(log);
}

Test(log, destroy_removes_directory)
{
    struct ferry_log_config cfg = test_cfg();
    struct ferry_log *log = open_log(T.log, &cfg);
    append_batch(log, 1, 1000, 50, 0, 0);
    char err[256] = "";
    cr_assert_eq(ferry_log_destroy(log, err, sizeof(err)), 0, "%s", err);
    cr_assert_not(file_exists(T.log));
}
