/* test_multiraft_scale.c: figures (printed, never asserted): 100 idle groups x 3 nodes, and one group's commit rate. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "mr_harness.h"

static const unsigned ALL3[] = {0, 1, 2};

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static double cpu_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void totals(struct mr_cluster *c, struct fr_node_stats *sum)
{
    memset(sum, 0, sizeof(*sum));
    for (unsigned i = 0; i < c->n_nodes; i++) {
        if (!c->nodes[i].up)
            continue;
        struct fr_node_stats st;
        fr_node_stats(c->nodes[i].node, &st);
        sum->frames_sent += st.frames_sent;
        sum->bytes_sent += st.bytes_sent;
        sum->heartbeats_sent += st.heartbeats_sent;
        sum->connects += st.connects;
    }
}

#define NG 100

Test(multiraft_scale, idle_traffic_100_groups, .timeout = 120)
{
    struct mr_cluster c;
    mr_init(&c, 3, false);
    /* Production timeouts (the harness default is faster for the functional tests). */
    c.gcfg.election_timeout_ms = 1000;
    c.gcfg.heartbeat_timeout_ms = 100;
    for (unsigned i = 0; i < 3; i++)
        mr_node_start(&c, i);
    double t0 = now_s();
    for (unsigned i = 0; i < 3; i++)
        mr_open_groups(&c, i, 0, NG, ALL3, 3);
    double t1 = now_s();
    cr_assert(mr_wait_leaders(&c, 0, NG, 30000), "not every group elected a leader");
    double t2 = now_s();
    mr_run_for(&c, 1500); /* let the elections' traffic settle */

    struct fr_node_stats a, b;
    totals(&c, &a);
    double w0 = now_s(), c0 = cpu_s();
    mr_run_for(&c, 3000);
    double w1 = now_s(), c1 = cpu_s();
    totals(&c, &b);
    double secs = w1 - w0;
    printf("multiraft idle: %u groups x 3 nodes: open %.2f s (%.1f ms/group/node), all leaders %.2f s later; "
           "idle: %.0f frames/s (%.0f heartbeats/s, %.0f KB/s) over %llu connections, CPU %.1f%% of a core\n",
           NG, t1 - t0, (t1 - t0) * 1000 / (3 * NG), t2 - t1, (double)(b.frames_sent - a.frames_sent) / secs,
           (double)(b.heartbeats_sent - a.heartbeats_sent) / secs, (double)(b.bytes_sent - a.bytes_sent) / secs / 1000,
           (unsigned long long)b.connects / 2, 100 * (c1 - c0) / secs);
    cr_assert_eq(b.connects, 6, "3 nodes should hold one connection per pair (each end counts it)");
    mr_teardown(&c);
}

struct rate {
    unsigned inflight, ok, failed;
    struct fr_group *g;
    uint64_t next;
};

static void on_committed(void *arg, int status, uint64_t index, void *result)
{
    struct rate *r = arg;
    (void)index;
    (void)result;
    r->inflight--;
    if (status == FR_OK)
        r->ok++;
    else
        r->failed++;
}

Test(multiraft_scale, commit_rate_one_group, .timeout = 60)
{
    struct mr_cluster c;
    mr_init(&c, 3, false);
    c.gcfg.snapshot_threshold = 1024;
    c.gcfg.snapshot_trailing = 256;
    c.gcfg.segment_bytes = 1024 * 1024;
    for (unsigned i = 0; i < 3; i++)
        mr_node_start(&c, i);
    for (unsigned i = 0; i < 3; i++)
        mr_open_groups(&c, i, 0, 1, ALL3, 3);
    cr_assert(mr_wait_leader(&c, 0, 10000));
    int l = mr_leader(&c, 0);
    struct rate r = {.g = c.nodes[l].groups[0], .next = 1u << 30};

    for (unsigned window = 1; window <= 64; window *= 8) {
        r.ok = r.failed = 0;
        double w0 = now_s(), c0 = cpu_s();
        while (now_s() - w0 < 2.0) {
            while (r.inflight < window) {
                uint64_t id = r.next++;
                char err[256];
                cr_assert_eq(fr_group_propose(r.g, &id, sizeof(id), on_committed, &r, err, sizeof(err)), FR_OK, "%s",
                             err);
                r.inflight++;
            }
            uv_run(&c.loop, UV_RUN_ONCE);
        }
        while (r.inflight > 0)
            uv_run(&c.loop, UV_RUN_ONCE);
        double secs = now_s() - w0, cpu = cpu_s() - c0;
        printf("multiraft commit rate: 1 group x 3 nodes, 8-byte entries, %u in flight: %.0f commits/s "
               "(fsync before ack), CPU %.0f%% of a core (all 3 nodes)\n",
               window, r.ok / secs, 100 * cpu / secs);
        cr_assert_gt(r.ok, 0);
        cr_assert_eq(r.failed, 0);
    }
    mr_teardown(&c);
}
