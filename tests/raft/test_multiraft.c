/* test_multiraft.c: raft/ over real sockets: 3 nodes, 1 and 50 groups; elections, commits, failover, restart, transfer, membership. */
#include <criterion/criterion.h>
#include <stdio.h>

#include "mr_harness.h"

static const unsigned ALL3[] = {0, 1, 2};

/* Elect, commit, kill the leader's node, elect again, commit, restart it: it catches up. */
static void failover_and_restart(bool tls)
{
    struct mr_cluster c;
    mr_init(&c, 3, tls);
    for (unsigned i = 0; i < 3; i++)
        mr_node_start(&c, i);
    for (unsigned i = 0; i < 3; i++)
        mr_open_groups(&c, i, 0, 1, ALL3, 3);

    cr_assert(mr_wait_leader(&c, 0, 10000), "no leader elected");
    cr_assert_eq(mr_propose(&c, 0, 100, 10000), 100);
    cr_assert(mr_wait_converged(&c, 0, 100, 10000), "replicas did not apply the same 100 entries");
    mr_check_prefixes(&c, 0);

    int old = mr_leader(&c, 0);
    cr_assert(old >= 0);
    uint64_t old_term = fr_group_term(c.nodes[old].groups[0]);
    mr_node_stop(&c, (unsigned)old);
    cr_assert(mr_wait_leader(&c, 0, 10000), "no new leader after the leader's node stopped");
    int now = mr_leader(&c, 0);
    cr_assert_neq(now, old);
    cr_assert_gt(fr_group_term(c.nodes[now].groups[0]), old_term);
    cr_assert_eq(mr_propose(&c, 0, 100, 10000), 100);
    cr_assert(mr_wait_converged(&c, 0, 200, 10000));

    /* Restart with its data: the log (and snapshots: threshold 64) replays, then it catches up. */
    mr_node_start(&c, (unsigned)old);
    mr_open_groups(&c, (unsigned)old, 0, 1, ALL3, 3);
    cr_assert(mr_wait_converged(&c, 0, 200, 15000), "restarted replica did not catch up");
    mr_check_prefixes(&c, 0);
    cr_assert_eq(mr_propose(&c, 0, 10, 10000), 10);
    cr_assert(mr_wait_converged(&c, 0, 210, 10000));
    mr_check_prefixes(&c, 0);
    mr_teardown(&c);
}

Test(multiraft, one_group_failover_restart_plaintext, .timeout = 60)
{
    failover_and_restart(false);
}

Test(multiraft, one_group_failover_restart_mutual_tls, .timeout = 60)
{
    failover_and_restart(true);
}

#define NG 50

Test(multiraft, fifty_groups_one_connection_per_pair, .timeout = 90)
{
    struct mr_cluster c;
    mr_init(&c, 3, false);
    for (unsigned i = 0; i < 3; i++)
        mr_node_start(&c, i);
    for (unsigned i = 0; i < 3; i++)
        mr_open_groups(&c, i, 0, NG, ALL3, 3);
    cr_assert(mr_wait_leaders(&c, 0, NG, 20000), "not every group elected a leader");

    /* One connection per broker pair carries all 50 groups. */
    for (unsigned i = 0; i < 3; i++) {
        struct fr_node_stats st;
        fr_node_stats(c.nodes[i].node, &st);
        cr_assert_eq(st.peers_up, 2, "node %u has %u peers up", i + 1, st.peers_up);
        cr_assert_eq(st.connects, 2, "node %u made %llu connections", i + 1, (unsigned long long)st.connects);
    }
    for (unsigned g = 0; g < NG; g++)
        cr_assert_eq(mr_propose(&c, g, 5, 10000), 5, "group %u", g);
    for (unsigned g = 0; g < NG; g++) {
        cr_assert(mr_wait_converged(&c, g, 5, 10000), "group %u did not converge", g);
        mr_check_prefixes(&c, g);
    }

    /* Stop node 1: every group it led elects another leader and keeps committing. */
    mr_node_stop(&c, 0);
    cr_assert(mr_wait_leaders(&c, 0, NG, 20000), "not every group re-elected after a node stopped");
    for (unsigned g = 0; g < NG; g++)
        cr_assert_eq(mr_propose(&c, g, 3, 10000), 3, "group %u after failover", g);
    mr_node_start(&c, 0);
    mr_open_groups(&c, 0, 0, NG, ALL3, 3);
    for (unsigned g = 0; g < NG; g++) {
        cr_assert(mr_wait_converged(&c, g, 8, 15000), "group %u: restarted node did not catch up", g);
        mr_check_prefixes(&c, g);
    }
    mr_teardown(&c);
}

struct done {
    int calls;
    int status;
};

static void on_done(void *arg, int status)
{
    struct done *d = arg;
    d->calls++;
    d->status = status;
}

static bool done_called(struct mr_cluster *c, void *arg)
{
    (void)c;
    return ((struct done *)arg)->calls > 0;
}

struct want_leader {
    unsigned gi;
    int node;
};

static bool leader_is(struct mr_cluster *c, void *arg)
{
    const struct want_leader *w = arg;
    return mr_leader(c, w->gi) == w->node;
}

Test(multiraft, leadership_transfer, .timeout = 60)
{
    struct mr_cluster c;
    mr_init(&c, 3, false);
    for (unsigned i = 0; i < 3; i++)
        mr_node_start(&c, i);
    for (unsigned i = 0; i < 3; i++)
        mr_open_groups(&c, i, 0, 1, ALL3, 3);
    cr_assert(mr_wait_leader(&c, 0, 10000));
    cr_assert_eq(mr_propose(&c, 0, 10, 10000), 10);
    cr_assert(mr_wait_converged(&c, 0, 10, 10000));

    for (int round = 0; round < 2; round++) {
        int from = mr_leader(&c, 0);
        unsigned target = ((unsigned)from + 1) % 3;
        struct done d = {0};
        char err[256];
        cr_assert_eq(fr_group_transfer(c.nodes[from].groups[0], c.nodes[target].id, on_done, &d, err, sizeof(err)),
                     FR_OK, "%s", err);
        cr_assert(mr_run_until(&c, done_called, &d, 10000));
        cr_assert_eq(d.status, FR_OK, "transfer: %s", fr_strerror(d.status));
        struct want_leader w = {0, (int)target};
        cr_assert(mr_run_until(&c, leader_is, &w, 10000), "node %u did not become leader", target + 1);
        const char *addr = NULL;
        cr_assert_eq(fr_group_leader(c.nodes[from].groups[0], &addr), c.nodes[target].id);
        cr_assert(addr != NULL);
        cr_assert_eq(mr_propose(&c, 0, 10, 10000), 10);
    }
    cr_assert(mr_wait_converged(&c, 0, 30, 10000));
    mr_check_prefixes(&c, 0);

    /* A follower cannot propose; the error names no callback. */
    int l = mr_leader(&c, 0);
    unsigned f = ((unsigned)l + 1) % 3;
    uint64_t id = 7;
    char err[256];
    cr_assert_eq(fr_group_propose(c.nodes[f].groups[0], &id, 8, NULL, NULL, err, sizeof(err)), FR_ERR_NOT_LEADER);
    mr_teardown(&c);
}

struct members {
    unsigned gi, node, want;
};

static bool member_count(struct mr_cluster *c, void *arg)
{
    const struct members *m = arg;
    uint64_t ids[8];
    unsigned voters = 0;
    fr_group_members(c->nodes[m->node].groups[m->gi], ids, 8, &voters);
    return voters == m->want;
}

Test(multiraft, membership_add_fourth_then_remove_one, .timeout = 60)
{
    struct mr_cluster c;
    mr_init(&c, 4, false);
    for (unsigned i = 0; i < 4; i++)
        mr_node_start(&c, i);
    for (unsigned i = 0; i < 3; i++)
        mr_open_groups(&c, i, 0, 1, ALL3, 3);
    mr_open_groups(&c, 3, 0, 1, NULL, 0); /* the joiner: no bootstrap */
    cr_assert(mr_wait_leader(&c, 0, 10000));
    cr_assert_eq(mr_propose(&c, 0, 100, 10000), 100); /* past the snapshot threshold */

    int l = mr_leader(&c, 0);
    struct done d = {0};
    char err[256];
    cr_assert_eq(fr_group_add_member(c.nodes[l].groups[0], 4, on_done, &d, err, sizeof(err)), FR_OK, "%s", err);
    cr_assert(mr_run_until(&c, done_called, &d, 15000), "add member never completed");
    cr_assert_eq(d.status, FR_OK, "add member: %s", fr_strerror(d.status));
    struct members want4 = {0, (unsigned)l, 4};
    cr_assert(member_count(&c, &want4));
    cr_assert_eq(mr_propose(&c, 0, 10, 10000), 10);
    cr_assert(mr_wait_converged(&c, 0, 110, 15000), "the new member did not catch up");
    mr_check_prefixes(&c, 0);

    /* Remove a follower that is not the new member. */
    l = mr_leader(&c, 0);
    unsigned victim = ((unsigned)l + 1) % 3;
    d = (struct done){0};
    cr_assert_eq(fr_group_remove_member(c.nodes[l].groups[0], c.nodes[victim].id, on_done, &d, err, sizeof(err)),
                 FR_OK, "%s", err);
    cr_assert(mr_run_until(&c, done_called, &d, 10000));
    cr_assert_eq(d.status, FR_OK, "remove member: %s", fr_strerror(d.status));
    struct members want3 = {0, (unsigned)l, 3};
    cr_assert(mr_run_until(&c, member_count, &want3, 5000));
    /* The removed replica stops receiving; the three others keep committing. */
    mr_node_stop(&c, victim);
    cr_assert_eq(mr_propose(&c, 0, 10, 10000), 10);
    cr_assert(mr_wait_converged(&c, 0, 120, 10000));
    mr_check_prefixes(&c, 0);
    mr_teardown(&c);
}
