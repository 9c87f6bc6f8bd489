/* test_group_defer.c: deferred group open (fr_group_config.defer_open): elections and commits, a restart, closes and stops before the open. */
#include <criterion/criterion.h>
#include <string.h>

#include "mr_harness.h"

static const unsigned ALL3[] = {0, 1, 2};

/* Open, bootstrap and start return at once; the Raft state appears only on a later loop iteration. */
Test(group_defer, opens_later_then_elects_commits_and_restarts, .timeout = 120)
{
    struct mr_cluster c;
    mr_init(&c, 3, false);
    c.gcfg.defer_open = 1;
    for (unsigned i = 0; i < 3; i++)
        mr_node_start(&c, i);
    for (unsigned i = 0; i < 3; i++)
        mr_open_groups(&c, i, 0, 12, ALL3, 3);
    /* Nothing of the library ran yet: no term, no members, no leader. */
    for (unsigned gi = 0; gi < 12; gi++) {
        cr_assert_eq(fr_group_term(c.nodes[0].groups[gi]), 0);
        cr_assert_eq(fr_group_members(c.nodes[0].groups[gi], NULL, 0, NULL), 0);
        cr_assert_eq(fr_group_leader(c.nodes[0].groups[gi], NULL), 0);
    }
    char err[256];
    cr_assert_eq(fr_group_propose(c.nodes[0].groups[0], "x", 1, NULL, NULL, err, sizeof(err)), FR_ERR_INVALID);
    cr_assert_eq(fr_group_start(c.nodes[0].groups[0], err, sizeof(err)), FR_ERR_INVALID, "started twice");

    cr_assert(mr_wait_leaders(&c, 0, 12, 30000), "every deferred group elects a leader");
    unsigned voters = 0;
    cr_assert_eq(fr_group_members(c.nodes[1].groups[5], NULL, 0, &voters), 3);
    cr_assert_eq(voters, 3);
    cr_assert_eq(mr_propose(&c, 0, 20, 10000), 20);
    cr_assert_eq(mr_propose(&c, 11, 20, 10000), 20);
    cr_assert(mr_wait_converged(&c, 0, 20, 10000));
    cr_assert(mr_wait_converged(&c, 11, 20, 10000));

    /* Restart node 0 with its data: the deferred bootstrap meets existing state (silently) and replays. */
    mr_node_stop(&c, 0);
    mr_node_start(&c, 0);
    mr_open_groups(&c, 0, 0, 12, ALL3, 3);
    cr_assert(mr_wait_converged(&c, 0, 20, 20000), "the restarted replica replays group 0");
    cr_assert(mr_wait_converged(&c, 11, 20, 20000), "the restarted replica replays group 11");
    cr_assert_eq(mr_propose(&c, 3, 5, 10000), 5);
    cr_assert(mr_wait_converged(&c, 3, 5, 20000));
    for (unsigned gi = 0; gi < 12; gi++)
        mr_check_prefixes(&c, gi);
    mr_teardown(&c);
}

static void count_closed(void *arg)
{
    (*(unsigned *)arg)++;
}

/* Groups closed before their open and groups still queued when the node stops: callbacks run once,
 * nothing leaks, the loop closes (mr_teardown checks uv_loop_close). */
Test(group_defer, close_and_stop_before_the_open, .timeout = 60)
{
    struct mr_cluster c;
    mr_init(&c, 1, false);
    c.gcfg.defer_open = 1;
    mr_node_start(&c, 0);
    const unsigned self[] = {0};
    mr_open_groups(&c, 0, 0, 10, self, 1);
    unsigned closed = 0;
    for (unsigned gi = 0; gi < 3; gi++) {
        fr_group_close(c.nodes[0].groups[gi], count_closed, &closed);
        fr_group_close(c.nodes[0].groups[gi], count_closed, &closed); /* idempotent */
        c.nodes[0].groups[gi] = NULL;
    }
    cr_assert_eq(closed, 0, "close callbacks never run inside fr_group_close");
    mr_run_for(&c, 50);
    cr_assert_eq(closed, 3);
    /* A second batch, then the node stops while most of it is still queued. */
    mr_open_groups(&c, 0, 20, 30, self, 1);
    mr_node_stop(&c, 0);
    cr_assert_eq(closed, 3);
    mr_teardown(&c);
}
