/* test_cluster_power_cut.c: a power cut of all 3 brokers, with frequent Raft snapshots, loses no acknowledged record. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ferrytest.h"

/*
 * docs/jepsen.md, finding 3. A partition's Raft snapshot names a log end offset, and the Raft
 * entries before it are then discarded: if the segments were not durable up to that offset on
 * every replica, a power cut of the whole cluster would lose acknowledged records for good.
 * Replicas append applied entries without an fsync of their own; part_snapshot fsyncs before it
 * names an offset. Here every broker runs under the fsync-recording shim (tests/lib/shim), Raft
 * snapshots are taken every few entries, one segment holds everything (no roll syncs it), and after the acknowledged
 * writes all three brokers are killed at once and every segment file is cut back to its size at
 * its last fsync (never-synced files to 0). After the restart every acknowledged record must be
 * read back, in order, at its offset. The replicas then converge: their logs end equal.
 */

#define TOPIC "pcut"
#define TIMEOUT_MS 60000
#define N_RECORDS 600
#define FLUSH_EVERY 8 /* each flush is at least one Raft entry: ~75 entries, snapshots every 16 */
#define VALUE_LEN 200
#define EXTRA "raft.snapshot.threshold = 16\nraft.snapshot.trailing = 4\nsegment.bytes = 1048576\n"

static struct ft_cluster C;
static char E[FT_ERRMSG];
static char shim_dir[256];

static void teardown(void)
{
    ft_cluster_destroy(&C);
    unsetenv("LD_PRELOAD");
    unsetenv("FERRY_SYNC_SHIM_LOG");
    if (shim_dir[0] != '\0')
        ft_rmrf(shim_dir);
    shim_dir[0] = '\0';
}

TestSuite(cluster_power_cut, .fini = teardown, .timeout = 300);

/* Compiles the shim into a temp dir and exports the environment every ferryd inherits. */
static void setup_shim(void)
{
    char src[512], so[512], logp[512], cmd[1400];
    FT_ASSERT(ft_tmpdir_make("cshim", shim_dir, sizeof(shim_dir), E, sizeof(E)) == 0, "%s", E);
    snprintf(src, sizeof(src), "%s/../tests/lib/shim/sync_shim.c", ft_build_dir());
    snprintf(so, sizeof(so), "%s/sync_shim.so", shim_dir);
    snprintf(logp, sizeof(logp), "%s/synced", shim_dir);
    FT_ASSERT(access(src, R_OK) == 0, "shim source %s", src);
    snprintf(cmd, sizeof(cmd), "cc -shared -fPIC -O1 -o '%s' '%s' -ldl", so, src);
    FT_ASSERT(system(cmd) == 0, "compiling the shim: %s", cmd);
    setenv("LD_PRELOAD", so, 1);
    setenv("FERRY_SYNC_SHIM_LOG", logp, 1);
    const char *asan = getenv("ASAN_OPTIONS");
    char opts[1024];
    snprintf(opts, sizeof(opts), "%s%sverify_asan_link_order=0", asan ? asan : "", asan && *asan ? ":" : "");
    setenv("ASAN_OPTIONS", opts, 1);
}

/* Last synced size the shim recorded for exactly this path (0 if it was never synced). */
static long long synced_size(const char *path)
{
    char logp[512];
    snprintf(logp, sizeof(logp), "%s/synced", shim_dir);
    size_t len;
    char *text = ft_read_file(logp, &len);
    long long size = 0;
    for (char *line = text; line != NULL && *line != '\0';) {
        char *nl = strchr(line, '\n');
        if (nl != NULL)
            *nl = '\0';
        char *sp = strchr(line, ' ');
        if (sp != NULL && strcmp(sp + 1, path) == 0)
            size = atoll(line);
        line = nl != NULL ? nl + 1 : NULL;
    }
    free(text);
    return size;
}

/* Cuts every .log of broker i's partition back to its last synced size; returns the bytes lost. */
static long long power_cut(int i)
{
    char dir[512], real[4096];
    snprintf(dir, sizeof(dir), "%s/topics/%s-0", C.b[i].data_dir, TOPIC);
    DIR *d = opendir(dir);
    FT_ASSERT(d != NULL, "open %s", dir);
    struct dirent *e;
    long long lost = 0;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n < 5 || strcmp(e->d_name + n - 4, ".log") != 0)
            continue;
        char path[800];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        FT_ASSERT(realpath(path, real) != NULL, "realpath %s", path);
        struct stat st;
        FT_ASSERT(stat(real, &st) == 0, "stat %s", real);
        long long to = synced_size(real);
        if (to > st.st_size)
            to = st.st_size;
        if (to < st.st_size) {
            FT_ASSERT(truncate(real, (off_t)to) == 0, "truncate %s", real);
            lost += st.st_size - to;
        }
    }
    closedir(d);
    return lost;
}

/* Produces ids [0, N_RECORDS) to partition 0, flushing every FLUSH_EVERY; all must be acknowledged. */
static void produce_all(void)
{
    const char *kv[] = {"linger.ms", "1", "request.timeout.ms", "5000", "delivery.timeout.ms", "60000", NULL};
    struct ft_deliveries log = {0};
    ferry_conf_t *conf = ft_cluster_conf(&C, kv, E, sizeof(E));
    FT_ASSERT(conf != NULL, "%s", E);
    ft_conf_record_deliveries(conf, &log);
    char err[512];
    ferry_client_t *p = ferry_client_new(FERRY_PRODUCER, conf, err, sizeof(err));
    FT_ASSERT(p != NULL, "%s", err);
    uint8_t value[VALUE_LEN];
    char key[32];
    for (uint64_t id = 0; id < N_RECORDS;) {
        size_t kl = (size_t)snprintf(key, sizeof(key), "id-%" PRIu64, id);
        ft_fill_pattern(value, sizeof(value), id);
        ferry_record_t rec = {.topic = TOPIC, .partition = 0, .key = key, .key_len = kl, .value = value,
                              .value_len = sizeof(value)};
        ferry_err_t e = ferry_produce(p, &rec, FERRY_F_NONBLOCK);
        if (e == FERRY_ERR__QUEUE_FULL) {
            ferry_poll(p, 5);
            continue;
        }
        FT_ASSERT_ERR(e, FERRY_ERR_NONE, "produce id %" PRIu64, id);
        id++;
        if (id % FLUSH_EVERY == 0)
            FT_ASSERT_ERR(ferry_flush(p, ft_ms(TIMEOUT_MS)), FERRY_ERR_NONE, "flush");
    }
    FT_ASSERT_ERR(ferry_flush(p, ft_ms(TIMEOUT_MS)), FERRY_ERR_NONE, "flush");
    ferry_client_destroy(p);
    FT_ASSERT_EQ(log.n, (size_t)N_RECORDS, "every record reported");
    for (size_t i = 0; i < log.n; i++)
        FT_ASSERT(log.v[i].err == FERRY_ERR_NONE, "record %zu failed: %s", i, ferry_err_name(log.v[i].err));
    ft_deliveries_free(&log);
}

/* How many "snapshot" files broker i's Raft groups hold (the test needs snapshots to mean anything). */
static int raft_snapshots(int i)
{
    char dir[512];
    int n = 0;
    snprintf(dir, sizeof(dir), "%s/raft", C.b[i].data_dir);
    DIR *d = opendir(dir);
    if (d == NULL)
        return 0;
    struct dirent *g;
    while ((g = readdir(d)) != NULL) {
        if (g->d_name[0] != 'g')
            continue;
        char gdir[800];
        snprintf(gdir, sizeof(gdir), "%s/%s", dir, g->d_name);
        DIR *gd = opendir(gdir);
        if (gd == NULL)
            continue;
        struct dirent *f;
        while ((f = readdir(gd)) != NULL)
            n += strncmp(f->d_name, "snapshot-", 9) == 0 && strstr(f->d_name, ".meta") == NULL;
        closedir(gd);
    }
    closedir(d);
    return n;
}

Test(cluster_power_cut, all_brokers_lose_unsynced_bytes_and_no_acknowledged_record_is_lost)
{
    setup_shim();
    struct ft_broker_opts o = {.security = FT_PLAINTEXT, .extra = EXTRA};
    FT_ASSERT(ft_cluster_start(&C, 3, &o, E, sizeof(E)) == 0, "%s", E);
    ferry_client_t *adm = ft_cluster_client(&C, FERRY_ADMIN, NULL, E, sizeof(E));
    FT_ASSERT(adm != NULL, "%s", E);
    FT_ASSERT_ERR(ferry_admin_create_topic(adm, TOPIC, 1, 3, NULL, NULL, 0, ft_ms(TIMEOUT_MS), E, sizeof(E)),
                  FERRY_ERR_NONE, "create: %s", E);
    ferry_client_destroy(adm);
    FT_ASSERT(ft_cluster_leader(&C, TOPIC, 0, 30000, E, sizeof(E)) >= 0, "%s", E);

    produce_all();

    /* The power goes everywhere at once: no broker gets to sync or hand anything over. */
    for (int i = 0; i < 3; i++)
        FT_ASSERT_EQ(ft_broker_kill(&C.b[i]), 0, "kill -9 broker %d", i);
    int snaps = 0;
    long long lost = 0;
    for (int i = 0; i < 3; i++) {
        snaps += raft_snapshots(i);
        lost += power_cut(i);
    }
    FT_ASSERT(snaps > 0, "no Raft snapshot was taken: the test would not exercise part_snapshot");
    cr_log_info("power cut: %lld un-fsynced segment bytes lost on 3 brokers, %d Raft snapshots on disk", lost,
                snaps);
    for (int i = 0; i < 3; i++)
        FT_ASSERT(ft_broker_restart(&C.b[i], E, sizeof(E)) == 0, "restart %d: %s", i, E);

    int leader = ft_cluster_leader(&C, TOPIC, 0, 30000, E, sizeof(E));
    FT_ASSERT(leader >= 0, "%s", E);
    ferry_message_t **m = calloc(N_RECORDS, sizeof(*m));
    FT_ASSERT(m != NULL, "calloc");
    FT_ASSERT(ft_consume(&C.b[leader], TOPIC, 0, 0, N_RECORDS, m, NULL, TIMEOUT_MS, E, sizeof(E)) == 0, "%s", E);
    uint8_t want[VALUE_LEN];
    for (int64_t i = 0; i < N_RECORDS; i++) {
        size_t kl, vl;
        const char *k = ferry_message_key(m[i], &kl);
        const void *v = ferry_message_value(m[i], &vl);
        char key[32];
        int n = snprintf(key, sizeof(key), "id-%" PRId64, i);
        ft_fill_pattern(want, sizeof(want), (uint64_t)i);
        FT_ASSERT_EQ(ferry_message_offset(m[i]), i, "record %" PRId64 " at the wrong offset", i);
        FT_ASSERT(k != NULL && kl == (size_t)n && memcmp(k, key, kl) == 0, "offset %" PRId64 ": wrong key", i);
        FT_ASSERT(v != NULL && vl == sizeof(want) && memcmp(v, want, vl) == 0, "offset %" PRId64 ": wrong value",
                  i);
        ferry_message_destroy(m[i]);
    }
    free(m);
}
