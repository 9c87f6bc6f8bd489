/* test_log_recovery.c: opening a damaged log: torn tails, corruption, garbage, lost or bad index files. */
#include <criterion/criterion.h>
#include <fcntl.h>
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
TestSuite(recovery, .init = setup, .fini = teardown);

/* One-segment log of n batches of 2 records; pos[i] is where batch i starts, pos[n] the end. */
static void build_log(size_t n, uint64_t *pos)
{
    struct ferry_log_config cfg = test_cfg();
    cfg.index_interval_bytes = 100;
    struct ferry_log *log = open_log(T.log, &cfg);
    pos[0] = 0;
    for (uint32_t i = 0; i < n; i++) {
        size_t len;
        uint8_t *b = make_batch(2, 1000 + i, 40, i, &len);
        int64_t base;
        char err[256];
        cr_assert_eq(ferry_log_append(log, b, len, 0, &base, err, sizeof(err)), 0);
        pos[i + 1] = pos[i] + len;
        free(b);
    }
    cr_assert_eq(sync_all(log), (int64_t)(2 * n));
    ferry_log_close(log);
}

static int open_fails(const struct ferry_log_config *cfg, char *err, size_t err_len)
{
    struct ferry_log *log = NULL;
    int rc = ferry_log_open(T.log, cfg, &log, err, err_len);
    cr_assert_null(log);
    return rc;
}

/* Asserts the log holds exactly the first `bytes` of content, as batches up to offset end. */
static void expect_prefix(struct ferry_log *log, const uint8_t *content, size_t bytes, int64_t end)
{
    cr_assert_eq(ferry_log_end_offset(log), end);
    cr_assert_eq(ferry_log_durable_offset(log), end);
    cr_assert_eq(ferry_log_size_bytes(log), bytes);
    uint8_t *out;
    size_t len;
    char err[256] = "";
    cr_assert_eq(ferry_log_read(log, 0, end, SIZE_MAX, &out, &len, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(len, bytes);
    if (bytes > 0)
        cr_assert_arr_eq(out, content, bytes);
    free(out);
}

Test(recovery, torn_tail_at_every_byte_of_the_last_batch)
{
    uint64_t pos[6];
    build_log(5, pos);
    const char *path = seg_path(T.log, 0, "log");
    size_t size;
    uint8_t *content = read_file(path, &size);
    cr_assert_eq(size, pos[5]);
    struct ferry_log_config cfg = test_cfg();
    capture_stderr(&T);
    for (uint64_t cut = pos[4]; cut <= pos[5]; cut++) {
        write_file(path, content, cut);
        struct ferry_log *log = open_log(T.log, &cfg);
        int whole = cut == pos[5];
        expect_prefix(log, content, whole ? pos[5] : pos[4], whole ? 10 : 8);
        struct stat st;
        cr_assert_eq(stat(path, &st), 0);
        cr_assert_eq((uint64_t)st.st_size, whole ? pos[5] : pos[4]); /* the tail is cut on disk */
        ferry_log_close(log);
    }
    free(captured_stderr(&T));
    free(content);
}

Test(recovery, corrupt_crc_in_the_tail_is_truncated_and_logged)
{
    uint64_t pos[6];
    build_log(5, pos);
    const char *path = seg_path(T.log, 0, "log");
    size_t size;
    uint8_t *content = read_file(path, &size);
    content[pos[4] + 70] ^= 0x40; /* inside the last batch's records */
    write_file(path, content, size);
    content[pos[4] + 70] ^= 0x40;
    struct ferry_log_config cfg = test_cfg();
    capture_stderr(&T);
    struct ferry_log *log = open_log(T.log, &cfg);
    char *msg = captured_stderr(&T);
    expect_prefix(log, content, pos[4], 8);
    char want[64];
    snprintf(want, sizeof(want), "at byte %llu", (unsigned long long)pos[4]);
    cr_assert_neq(strstr(msg, "00000000000000000000.log"), NULL, "%s", msg);
    cr_assert_neq(strstr(msg, want), NULL, "%s", msg);
    cr_assert_eq(append_batch(log, 1, 2000, 10, 9, 0), 8); /* appends continue after the cut */
    free(msg);
    free(content);
    ferry_log_close(log);
}

Test(recovery, garbage_after_the_last_batch_is_truncated)
{
    uint64_t pos[6];
    build_log(5, pos);
    const char *path = seg_path(T.log, 0, "log");
    size_t size;
    uint8_t *content = read_file(path, &size);
    uint8_t *bad = malloc(size + 4096);
    memcpy(bad, content, size);
    uint64_t seed = 12345;
    struct ferry_log_config cfg = test_cfg();
    capture_stderr(&T);
    for (int variant = 0; variant < 3; variant++) {
        size_t extra = 0;
        if (variant == 0) { /* random bytes */
            for (; extra < 3000; extra++) {
                seed = seed * 6364136223846793005u + 1442695040888963407u;
                bad[size + extra] = (uint8_t)(seed >> 56);
            }
        } else if (variant == 1) { /* zeros, as a power loss can leave */
            memset(bad + size, 0, 4096);
            extra = 4096;
        } else { /* a stale copy of the first batch: valid CRC, but an old offset */
            memcpy(bad + size, content, pos[1]);
            extra = pos[1];
        }
        write_file(path, bad, size + extra);
        struct ferry_log *log = open_log(T.log, &cfg);
        expect_prefix(log, content, size, 10);
        ferry_log_close(log);
    }
    free(captured_stderr(&T));
    free(bad);
    free(content);
}

/* Corrupts content at byte `at` (xor), writes it back, and checks the open fails naming file and pos. */
static void expect_corrupt_open(const struct ferry_log_config *cfg, const char *path, uint64_t at, uint8_t xor_mask,
                                uint64_t named_pos)
{
    size_t size;
    uint8_t *content = read_file(path, &size);
    content[at] ^= xor_mask;
    write_file(path, content, size);
    char err[512] = "";
    cr_assert_eq(open_fails(cfg, err, sizeof(err)), FERRY_ERR_CORRUPT_BATCH, "%s", err);
    const char *name = strrchr(path, '/') + 1;
    char want[64];
    snprintf(want, sizeof(want), "at byte %llu", (unsigned long long)named_pos);
    cr_assert_neq(strstr(err, name), NULL, "%s", err);
    cr_assert_neq(strstr(err, want), NULL, "%s", err);
    size_t after;
    free(read_file(path, &after));
    cr_assert_eq(after, size); /* nothing was truncated */
    free(content);
}

Test(recovery, corrupt_crc_in_the_middle_fails)
{
    uint64_t pos[6];
    build_log(5, pos);
    struct ferry_log_config cfg = test_cfg();
    expect_corrupt_open(&cfg, seg_path(T.log, 0, "log"), pos[1] + 80, 0x01, pos[1]);
}

Test(recovery, corrupt_length_in_the_middle_fails)
{
    uint64_t pos[6];
    build_log(5, pos);
    struct ferry_log_config cfg = test_cfg();
    expect_corrupt_open(&cfg, seg_path(T.log, 0, "log"), pos[2] + FERRY_BATCH_OFF_LENGTH, 0x80, pos[2]);
}

Test(recovery, non_contiguous_offsets_fail)
{
    uint64_t pos[6];
    build_log(5, pos); /* the CRC does not cover base_offset: only the offset check catches this */
    struct ferry_log_config cfg = test_cfg();
    expect_corrupt_open(&cfg, seg_path(T.log, 0, "log"), pos[2] + 7, 0x10, pos[2]);
}

/* Three segments of three 1-record batches and an active one: bases 0, 3, 6, 9. */
static void build_segments(struct ferry_log_config *cfg, uint64_t *blen)
{
    size_t l;
    free(make_batch(1, 0, 200, 0, &l));
    *blen = l;
    *cfg = test_cfg();
    cfg->segment_bytes = 3 * l;
    cfg->index_interval_bytes = 1;
    struct ferry_log *log = open_log(T.log, cfg);
    for (uint32_t i = 0; i < 10; i++)
        append_batch(log, 1, 1000 + i, 200, i, 0);
    cr_assert_eq(ferry_log_segment_count(log), 4);
    sync_all(log);
    ferry_log_close(log);
}

Test(recovery, corruption_in_a_non_last_segment_fails)
{
    struct ferry_log_config cfg;
    uint64_t l;
    build_segments(&cfg, &l);
    /* even its last batch: only the last segment may have a torn tail */
    expect_corrupt_open(&cfg, seg_path(T.log, 3, "log"), 2 * l + 100, 0x04, 2 * l);
}

Test(recovery, torn_non_last_segment_fails)
{
    struct ferry_log_config cfg;
    uint64_t l;
    build_segments(&cfg, &l);
    const char *path = seg_path(T.log, 3, "log");
    size_t size;
    uint8_t *content = read_file(path, &size);
    write_file(path, content, size - 10);
    char err[512] = "";
    cr_assert_eq(open_fails(&cfg, err, sizeof(err)), FERRY_ERR_CORRUPT_BATCH);
    cr_assert_neq(strstr(err, "00000000000000000003.log"), NULL, "%s", err);
    free(content);
}

Test(recovery, missing_segment_fails)
{
    struct ferry_log_config cfg;
    uint64_t l;
    build_segments(&cfg, &l);
    cr_assert_eq(unlink(seg_path(T.log, 3, "log")), 0);
    char err[512] = "";
    cr_assert_eq(open_fails(&cfg, err, sizeof(err)), FERRY_ERR_CORRUPT_BATCH);
    cr_assert_neq(strstr(err, "00000000000000000006.log"), NULL, "%s", err);
    cr_assert_neq(strstr(err, "does not follow"), NULL, "%s", err);
}

Test(recovery, empty_trailing_segment_after_a_roll)
{
    struct ferry_log_config cfg;
    uint64_t l;
    build_segments(&cfg, &l);
    /* a crash right after rolling to 10, before the tail of segment 9 reached the disk */
    write_file(seg_path(T.log, 10, "log"), (const uint8_t *)"", 0);
    const char *last = seg_path(T.log, 9, "log");
    size_t size;
    uint8_t *content = read_file(last, &size);
    write_file(last, content, size / 2);
    capture_stderr(&T);
    struct ferry_log *log = open_log(T.log, &cfg);
    free(captured_stderr(&T));
    cr_assert_eq(ferry_log_segment_count(log), 4);
    cr_assert_eq(ferry_log_end_offset(log), 9);
    cr_assert_eq(access(seg_path(T.log, 10, "log"), F_OK), -1);
    cr_assert_eq(append_batch(log, 1, 2000, 200, 9, 0), 9);
    ferry_log_close(log);
    free(content);

    /* and an intact log with an empty trailing segment simply continues */
    write_file(seg_path(T.log, 10, "log"), (const uint8_t *)"", 0);
    capture_stderr(&T);
    log = open_log(T.log, &cfg);
    free(captured_stderr(&T));
    cr_assert_eq(ferry_log_end_offset(log), 10);
    cr_assert_eq(ferry_log_segment_count(log), 4);
    ferry_log_close(log);
}

Test(recovery, deleted_and_garbled_index_files_are_rebuilt)
{
    struct ferry_log_config cfg;
    uint64_t l;
    build_segments(&cfg, &l);
    const int64_t bases[] = {0, 3, 6, 9};
    const char *sfx[] = {"index", "timeindex"};
    uint8_t *saved[4][2];
    size_t saved_len[4][2];
    for (int s = 0; s < 4; s++)
        for (int k = 0; k < 2; k++)
            saved[s][k] = read_file(seg_path(T.log, bases[s], sfx[k]), &saved_len[s][k]);
    cr_assert_eq(saved_len[0][0], 2 * 8); /* batches 1 and 2 of the segment are indexed */
    cr_assert_eq(saved_len[0][1], 2 * 12);

    unlink(seg_path(T.log, 0, "index"));
    uint8_t junk[24];
    memset(junk, 0x5a, sizeof(junk));
    write_file(seg_path(T.log, 0, "timeindex"), junk, sizeof(junk)); /* right size, wrong bytes */
    write_file(seg_path(T.log, 3, "index"), saved[1][0], saved_len[1][0] - 3); /* mis-sized */
    uint8_t *shifted = malloc(saved_len[2][0]);
    memcpy(shifted, saved[2][0], saved_len[2][0]);
    shifted[saved_len[2][0] - 1] ^= 1; /* last entry no longer at a batch boundary */
    write_file(seg_path(T.log, 6, "index"), shifted, saved_len[2][0]);
    free(shifted);
    unlink(seg_path(T.log, 9, "timeindex"));

    capture_stderr(&T);
    struct ferry_log *log = open_log(T.log, &cfg);
    char *msg = captured_stderr(&T);
    cr_assert_neq(strstr(msg, "00000000000000000000.index"), NULL, "%s", msg);
    free(msg);
    for (int s = 0; s < 4; s++) {
        for (int k = 0; k < 2; k++) {
            size_t len;
            uint8_t *now = read_file(seg_path(T.log, bases[s], sfx[k]), &len);
            cr_assert_eq(len, saved_len[s][k], "segment %d %s", s, sfx[k]);
            cr_assert_arr_eq(now, saved[s][k], len);
            free(now);
            free(saved[s][k]);
        }
    }
    for (int64_t off = 0; off < 10; off++) {
        uint8_t *out;
        size_t len;
        char err[256];
        cr_assert_eq(ferry_log_read(log, off, 10, 1, &out, &len, err, sizeof(err)), 0);
        int64_t b;
        cr_assert_eq(walk_batches(out, len, &b, NULL, 1), 1);
        cr_assert_eq(b, off);
        free(out);
        int64_t t;
        cr_assert_eq(ferry_log_offset_for_time(log, 1000 + off, &t, err, sizeof(err)), 0);
        cr_assert_eq(t, off);
    }
    ferry_log_close(log);
}
