/* test_power_cut.c: simulated power cuts (un-fsynced .log bytes lost): acknowledged records survive, start-up succeeds. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ferrytest.h"
#include "proto/batch.h"
#include "proto/limits.h"

/*
 * ferryd runs with LD_PRELOAD=tests/lib/shim/sync_shim.c (compiled here with cc), which logs each
 * .log file's size at every successful fsync/fdatasync. After kill -9 every .log is cut back:
 *   - "lost":      to its last synced size (the page cache is gone, nothing was written back);
 *   - "writeback": to a random size between that and its current size (the kernel wrote back part
 *                  of the dirty pages on its own before the cut, in any order across files).
 * Then the broker restarts and every acknowledged batch must read back intact. The negative
 * control runs flush.before.ack=false under "lost" with slow fsyncs and must lose acked records,
 * which shows the test catches a broker that acknowledges before its fsync completes.
 */

#define TOPIC "power"
#define WINDOW 8      /* produce requests pipelined per round trip */
#define ROUNDS 12
#define RECORDS 4
#define VALUE_LEN 300 /* ~1.3 KiB batches: segment.bytes 4096 rolls every ~3 batches */

static struct ft_broker B;
static char E[FT_ERRMSG];
static char shim_dir[256];

static void teardown(void)
{
    ft_broker_destroy(&B);
    unsetenv("LD_PRELOAD");
    unsetenv("FERRY_SYNC_SHIM_LOG");
    unsetenv("FERRY_SYNC_SHIM_DELAY_MS");
    if (shim_dir[0] != '\0')
        ft_rmrf(shim_dir);
    shim_dir[0] = '\0';
}

TestSuite(power_cut, .fini = teardown, .timeout = 240);

/* Compiles the shim into a temp dir and exports the environment ferryd inherits. */
static void setup_shim(int delay_ms)
{
    char src[512], so[512], logp[512], cmd[1400];
    FT_ASSERT(ft_tmpdir_make("shim", shim_dir, sizeof(shim_dir), E, sizeof(E)) == 0, "%s", E);
    snprintf(src, sizeof(src), "%s/../tests/lib/shim/sync_shim.c", ft_build_dir());
    snprintf(so, sizeof(so), "%s/sync_shim.so", shim_dir);
    snprintf(logp, sizeof(logp), "%s/synced", shim_dir);
    FT_ASSERT(access(src, R_OK) == 0, "shim source %s", src);
    snprintf(cmd, sizeof(cmd), "cc -shared -fPIC -O1 -o '%s' '%s' -ldl", so, src);
    FT_ASSERT(system(cmd) == 0, "compiling the shim: %s", cmd);
    setenv("LD_PRELOAD", so, 1);
    setenv("FERRY_SYNC_SHIM_LOG", logp, 1);
    char d[32];
    snprintf(d, sizeof(d), "%d", delay_ms);
    setenv("FERRY_SYNC_SHIM_DELAY_MS", d, 1);
    /* Under AddressSanitizer the shim is loaded before its runtime; tell it that is fine. */
    const char *asan = getenv("ASAN_OPTIONS");
    char opts[1024];
    snprintf(opts, sizeof(opts), "%s%sverify_asan_link_order=0", asan ? asan : "", asan && *asan ? ":" : "");
    setenv("ASAN_OPTIONS", opts, 1);
}

struct acked {
    int64_t base;
    uint64_t id0;
};

/* Last synced size of the .log whose path ends with "<dir>/<file>" (0 if never synced). */
static long long synced_size(const char *tail)
{
    char logp[512];
    snprintf(logp, sizeof(logp), "%s/synced", shim_dir);
    size_t len;
    char *text = ft_read_file(logp, &len);
    long long size = 0;
    size_t tl = strlen(tail);
    for (char *line = text; line != NULL && *line != '\0';) {
        char *nl = strchr(line, '\n');
        if (nl != NULL)
            *nl = '\0';
        char *sp = strchr(line, ' ');
        size_t ll = strlen(line);
        if (sp != NULL && ll >= tl && strcmp(line + ll - tl, tail) == 0)
            size = atoll(line);
        line = nl != NULL ? nl + 1 : NULL;
    }
    free(text);
    return size;
}

/* Cuts every .log of the partition back as a power cut would (see the top). Returns files cut. */
static int power_cut(int writeback)
{
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/topics/%s-0", B.data_dir, TOPIC);
    DIR *d = opendir(dir);
    FT_ASSERT(d != NULL, "open %s", dir);
    struct dirent *e;
    int cut = 0;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n < 5 || strcmp(e->d_name + n - 4, ".log") != 0)
            continue;
        char path[800], tail[400];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        snprintf(tail, sizeof(tail), "/%s-0/%s", TOPIC, e->d_name);
        struct stat st;
        FT_ASSERT(stat(path, &st) == 0, "stat %s", path);
        long long synced = synced_size(tail);
        FT_ASSERT(synced <= st.st_size, "%s: synced %lld > size %lld", path, synced, (long long)st.st_size);
        long long to = synced;
        if (writeback && st.st_size > synced)
            to = synced + (long long)ft_rand_range(0, st.st_size - synced);
        if (to < st.st_size) {
            FT_ASSERT(truncate(path, (off_t)to) == 0, "truncate %s", path);
            cut++;
        }
    }
    closedir(d);
    return cut;
}

static void roundtrip(struct ft_raw *c, struct ft_req *req, struct ft_resp *resp)
{
    size_t len;
    const uint8_t *f = ft_req_frame(req, &len);
    FT_ASSERT(ft_raw_roundtrip(c, f, len, resp, E, sizeof(E)) == 0, "%s", E);
}

/*
 * Produces ROUNDS windows of WINDOW pipelined batches, recording each acknowledgement, then sends
 * one more window and kills the broker without waiting for it. Returns the acknowledged batches.
 */
static struct acked *produce_then_kill(size_t *nacked)
{
    struct ft_raw c;
    FT_ASSERT(ft_raw_connect_broker(&c, &B, E, sizeof(E)) == 0, "%s", E);
    struct ft_req req;
    struct ft_resp resp;
    ft_req_create_topic(&req, 1, TOPIC, 1);
    roundtrip(&c, &req, &resp);
    FT_ASSERT_ERR(ft_mp_int(ft_resp_topic(&resp, 0), "error", -999), FERRY_ERR_NONE, "create topic");
    ft_resp_free(&resp);
    ft_req_free(&req);

    struct acked *acked = calloc((ROUNDS + 1) * WINDOW, sizeof(*acked));
    FT_ASSERT(acked != NULL, "calloc");
    *nacked = 0;
    uint64_t id = 0;
    for (int round = 0; round <= ROUNDS; round++) {
        for (int k = 0; k < WINDOW; k++, id += RECORDS) {
            uint8_t *batch;
            size_t len;
            FT_ASSERT(ft_make_batch(RECORDS, VALUE_LEN, id, FERRY_COMPRESSION_NONE, &batch, &len, E, sizeof(E)) == 0,
                      "%s", E);
            ft_req_produce(&req, (uint32_t)(id / RECORDS), TOPIC, 0, batch, len);
            size_t flen;
            const uint8_t *f = ft_req_frame(&req, &flen);
            FT_ASSERT(ft_raw_send(&c, f, flen) == 0, "send produce");
            ft_req_free(&req);
            free(batch);
        }
        if (round == ROUNDS) {
            /* The power goes while the last window is being appended and synced (fsyncs are
             * slowed by the shim, so this lands inside one; if not, the test is only weaker). */
            ft_sleep_ms(30);
            break;
        }
        for (int k = 0; k < WINDOW; k++) {
            FT_ASSERT_EQ(ft_raw_recv_resp(&c, &resp, E, sizeof(E)), FT_RAW_FRAME, "%s", E);
            const msgpack_object *p = ft_resp_partition(&resp, 0, 0);
            FT_ASSERT_ERR(ft_mp_int(p, "error", -999), FERRY_ERR_NONE, "produce");
            acked[*nacked].base = ft_mp_int(p, "base_offset", -1);
            acked[*nacked].id0 = (uint64_t)resp.correlation_id * RECORDS;
            (*nacked)++;
            ft_resp_free(&resp);
        }
    }
    FT_ASSERT_EQ(ft_broker_kill(&B), 0, "kill -9 the broker");
    ft_raw_close(&c);
    return acked;
}

/* Reads the whole partition and counts the acknowledged batches found intact at their offsets. */
static size_t count_surviving(const struct acked *acked, size_t nacked)
{
    struct ft_raw c;
    FT_ASSERT(ft_raw_connect_broker(&c, &B, E, sizeof(E)) == 0, "%s", E);
    /* Everything fits in one fetch (well below its default max_bytes). */
    struct ft_req req;
    struct ft_resp resp;
    ft_req_fetch(&req, 9, TOPIC, 0, 0, 0);
    roundtrip(&c, &req, &resp);
    const msgpack_object *p = ft_resp_partition(&resp, 0, 0);
    FT_ASSERT_ERR(ft_mp_int(p, "error", -999), FERRY_ERR_NONE, "fetch from 0");
    const msgpack_object *rec = ft_mp_get(p, "records");
    size_t all_len = rec && rec->type == MSGPACK_OBJECT_BIN ? rec->via.bin.size : 0;
    uint8_t *all = malloc(all_len + 1);
    FT_ASSERT(all != NULL, "malloc");
    if (all_len > 0)
        memcpy(all, rec->via.bin.ptr, all_len);
    ft_resp_free(&resp);
    ft_req_free(&req);
    ft_raw_close(&c);

    size_t found = 0;
    for (size_t i = 0; i < nacked; i++) {
        size_t pos = 0;
        while (pos + FERRY_BATCH_HEADER_SIZE <= all_len) {
            struct ferry_batch_header h;
            ferry_batch_header_decode(all + pos, &h);
            if (h.base_offset == acked[i].base) {
                struct ferry_batch_reader rd;
                FT_ASSERT_EQ(ferry_batch_reader_init(&rd, all + pos, h.batch_length), 0, "%s", rd.errmsg);
                struct ferry_record_view r;
                uint32_t k = 0;
                uint8_t want[VALUE_LEN];
                while (ferry_batch_reader_next(&rd, &r) == 1) {
                    ft_fill_pattern(want, sizeof(want), acked[i].id0 + k);
                    FT_ASSERT(r.value_len == VALUE_LEN && memcmp(r.value, want, VALUE_LEN) == 0,
                              "batch at offset %lld record %u holds what was acknowledged", (long long)h.base_offset,
                              k);
                    k++;
                }
                FT_ASSERT_EQ(k, RECORDS, "records of the batch at %lld", (long long)h.base_offset);
                ferry_batch_reader_free(&rd);
                found++;
                break;
            }
            pos += h.batch_length;
        }
    }
    free(all);
    return found;
}

static void run(int flush_before_ack, int writeback, int delay_ms, const char *segment_bytes, size_t *nacked,
                size_t *found)
{
    ft_seed_reset();
    setup_shim(delay_ms);
    char extra[256];
    snprintf(extra, sizeof(extra), "segment.bytes = %s\nflush.before.ack = %s\n", segment_bytes,
             flush_before_ack ? "true" : "false");
    struct ft_broker_opts o = {.security = FT_PLAINTEXT, .extra = extra};
    FT_ASSERT(ft_broker_start(&B, &o, E, sizeof(E)) == 0, "%s", E);
    struct acked *acked = produce_then_kill(nacked);
    int cut = power_cut(writeback);
    fprintf(stderr, "power_cut: %zu batches acknowledged, %d .log files cut back (%s)\n", *nacked, cut,
            writeback ? "writeback" : "lost");
    FT_ASSERT(ft_broker_restart(&B, E, sizeof(E)) == 0, "restart after the power cut: %s", E);
    *found = count_surviving(acked, *nacked);
    free(acked);
    FT_ASSERT_EQ(ft_broker_stop(&B), 0, "ferryd exits 0 on SIGTERM");
}

/* Rolls every ~3 batches, un-fsynced bytes partly written back in any order: start-up must
 * succeed (no torn non-last segment) and every acknowledged batch must be there. */
Test(power_cut, acknowledged_batches_survive_with_partial_writeback)
{
    for (int i = 0; i < 3; i++) {
        size_t nacked, found;
        run(1, 1, 100, "4096", &nacked, &found);
        FT_ASSERT_EQ(found, nacked, "acknowledged batches after the power cut (iteration %d)", i);
        teardown();
    }
}

Test(power_cut, acknowledged_batches_survive_when_nothing_unsynced_is_written)
{
    size_t nacked, found;
    run(1, 0, 100, "4096", &nacked, &found);
    FT_ASSERT_EQ(found, nacked, "acknowledged batches after the power cut");
}

/* Negative control: acknowledging before the fsync (flush.before.ack=false) with fsyncs slowed to
 * 1 s: the last acknowledged window cannot be on disk at the kill, so the test must see losses. */
Test(power_cut, acking_before_fsync_is_caught)
{
    size_t nacked, found;
    run(0, 0, ft_ms(1000), "1073741824", &nacked, &found);
    FT_ASSERT(found < nacked, "flush.before.ack=false must lose acknowledged batches here (%zu of %zu found)",
              found, nacked);
}
