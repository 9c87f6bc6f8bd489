/* test_snapshot_race.c: an InstallSnapshot that arrives while the replica takes its own snapshot (jepsen finding 1). */
#include <criterion/criterion.h>
#include <string.h>

#include "../../raft/fr_int.h"
#include "mr_harness.h"

/*
 * libraft 0.22.1 parks an InstallSnapshot received during a snapshot take and resumes it from the
 * take's callback through a NULL pointer (src/legacy.c, takeSnapshotCb): SIGSEGV. group.c holds the
 * message until the take completes. This test makes the state happen deterministically: a uv_check
 * handle runs after the poll phase of the loop iteration in which the take started, before the
 * thread pool's completion can be delivered (the next poll), and injects an InstallSnapshot from a
 * newer term there. Without group.c's hold the test process crashes.
 */

#define GI 0
#define SNAP_INDEX 200 /* far past what the group has: the install must replace its state */

struct inject {
    struct mr_cluster *c;
    uv_check_t check;
    bool seen_taking; /* a take was in flight at a check */
    bool injected;
};

/* The state a snapshot from "node 2" carries: 3 applied entries, as the harness's state machine stores them. */
static const struct mr_applied SNAP_LOG[3] = {{2, 0x51}, {3, 0x52}, {SNAP_INDEX, 0x53}};

static void inject_install_snapshot(struct fr_group *g)
{
    struct raft_message m;
    memset(&m, 0, sizeof(m));
    m.type = RAFT_INSTALL_SNAPSHOT;
    m.server_id = 2;
    m.server_address = "2";
    struct raft_install_snapshot *is = &m.install_snapshot;
    is->version = 0;
    is->term = raft_current_term(&g->raft) + 5;
    is->last_index = SNAP_INDEX;
    is->last_term = is->term;
    is->conf_index = 1;
    raft_configuration_init(&is->conf);
    cr_assert_eq(raft_configuration_add(&is->conf, 1, "1", RAFT_VOTER), 0);
    cr_assert_eq(raft_configuration_add(&is->conf, 2, "2", RAFT_VOTER), 0);
    /* Our snapshot format (group.c): 8-byte big-endian applied index, then the fsm's bytes. */
    size_t len = 8 + sizeof(SNAP_LOG);
    uint8_t *data = raft_malloc(len);
    cr_assert_not_null(data);
    for (int i = 0; i < 8; i++)
        data[i] = (uint8_t)((uint64_t)SNAP_INDEX >> (56 - 8 * i));
    memcpy(data + 8, SNAP_LOG, sizeof(SNAP_LOG));
    is->data.base = data;
    is->data.len = len;
    g->recv_cb(&g->io, &m); /* Raft (or group.c's hold) owns data and conf now */
}

static void on_check(uv_check_t *h)
{
    struct inject *in = h->data;
    struct fr_group *g = in->c->nodes[0].groups[GI];
    if (in->injected || g == NULL || !g->taking)
        return;
    in->seen_taking = true;
    in->injected = true;
    inject_install_snapshot(g);
}

static bool installed(struct mr_cluster *c, void *arg)
{
    (void)arg;
    return c->nodes[0].sm[GI].last_index >= SNAP_INDEX;
}

Test(snapshot_race, install_snapshot_during_a_take_is_held_then_installed, .timeout = 60)
{
    struct mr_cluster c;
    mr_init(&c, 1, false);
    c.gcfg.snapshot_threshold = 4;
    c.gcfg.snapshot_trailing = 2;
    mr_node_start(&c, 0);
    const unsigned self[] = {0};
    mr_open_groups(&c, 0, GI, 1, self, 1);
    cr_assert(mr_wait_leader(&c, GI, 10000));

    struct inject in = {.c = &c};
    cr_assert_eq(uv_check_init(&c.loop, &in.check), 0);
    in.check.data = &in;
    cr_assert_eq(uv_check_start(&in.check, on_check), 0);

    /* Entries one by one until a take is seen in flight (threshold 4: within a few proposals). */
    for (unsigned k = 0; k < 64 && !in.injected; k++) {
        unsigned ok = mr_propose(&c, GI, 1, 10000);
        cr_assert(ok == 1 || in.injected, "proposal %u failed", k); /* the injection deposes the leader */
    }
    cr_assert(in.seen_taking, "no snapshot take was ever in flight at a check");

    /* The held message reaches Raft after the take: the snapshot is installed, the process lives. */
    cr_assert(mr_run_until(&c, installed, NULL, 10000), "the held InstallSnapshot was never installed");
    struct mr_sm *sm = &c.nodes[0].sm[GI];
    cr_assert_geq(sm->restores, 1);
    cr_assert_eq(sm->n, 3);
    cr_assert_eq(sm->log[2].index, SNAP_INDEX);
    cr_assert_eq(sm->log[2].id, 0x53);
    cr_assert_eq(sm->violation[0], '\0', "%s", sm->violation);
    struct fr_group *g = c.nodes[0].groups[GI];
    cr_assert(!g->has_held && !g->taking);
    cr_assert_geq(raft_last_applied(&g->raft), SNAP_INDEX);

    uv_close((uv_handle_t *)&in.check, NULL);
    mr_teardown(&c);
}
