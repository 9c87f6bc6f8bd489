/* test_figure8.c: the Raft paper's Figure 8 (section 5.4.2) replayed on raft_fixture; no committed entry may be lost. */
#include <criterion/criterion.h>

#include "cluster.h"

/* Servers S1..S5 are fixture indexes 0..4. Election timeouts order who stands first:
 * S1 (1000 ms) < S5 (1500) < S3, S4 (1900) < S2 (2000). */
enum { S1, S2, S3, S4, S5 };
static const unsigned figure8_timeouts[5] = {1000, 2000, 1900, 1900, 1500};

/*
 * The scenario (the paper's panels a-e, with its log indexes shifted by our bootstrap entry):
 *  (a) S1 leads term 2 and replicates E2 to S2 only; S1 crashes.
 *  (b) S5 is elected for term 3 by S3, S4 and itself, appends E3 locally only, and crashes.
 *  (c) S1 restarts, is elected for term 4 (S3, S4: S2 still follows the old S1 and refuses votes) and
 *      replicates E2 to S3 but not S4: E2 is now on a majority (S1, S2, S3).
 *      A leader that counts replicas of an earlier term's entry reports E2 committed here (the bug
 *      in canonical/raft <= 0.16; fixed by 524f735 and 29bb302, both in cowsql/raft 0.22). S1
 *      crashes right after.
 *  (d) S5 restarts. If E2 is all that S1 got onto a majority, S5 (last log term 3, newer than E2's 2)
 *      can be elected by S2, S3, S4 in a later term and overwrite E2 with E3: a committed entry
 *      replaced. With the barrier of term 4 on S1, S2, S3, they refuse S5.
 *  (e) Everything heals; one more command commits; every server must hold the same applied history.
 * Every fixture step (the hook in cluster.c) checks that no index is ever applied with two
 * different entries anywhere and that commit indexes never go back.
 */
Test(figure8, committed_entry_of_older_term_is_never_replaced, .timeout = 60)
{
    struct rc_cluster *c = rc_setup(5, figure8_timeouts);

    /* (a) S3, S4 and S5 never hear from S1 in term 2 (saturated links drop messages on delivery). */
    cr_assert(rc_step_until_leader(c, S1, 3000), "S1 was not elected first");
    cr_assert_eq(rc_term(c, S1), 2);
    raft_fixture_saturate(&c->f, S1, S3);
    raft_fixture_saturate(&c->f, S1, S4);
    raft_fixture_saturate(&c->f, S1, S5);
    uint64_t e2 = rc_propose(c, S1);
    raft_index e2_index = raft_last_index(rc_raft(c, S1));
    cr_assert(rc_step_until_stored(c, S2, e2_index, 500), "E2 did not reach S2");
    cr_assert_lt(rc_commit(c, S1), e2_index, "E2 cannot be committed on two of five servers");
    raft_fixture_kill(&c->f, S1); /* isolates S1 both ways until revived */

    /* (b) S2 still follows S1 (a follower that has a leader refuses votes), so S3, S4 elect S5. */
    cr_assert(rc_step_until_leader(c, S5, 3000), "S5 was not elected in term 3");
    cr_assert_eq(rc_term(c, S5), 3);
    rc_mute(c, S5, true);
    uint64_t e3 = rc_propose(c, S5);
    raft_index e3_index = raft_last_index(rc_raft(c, S5));
    cr_assert_eq(e3_index, e2_index, "E3 must sit where E2 is on S1 and S2");
    cr_assert(rc_step_until_stored(c, S5, e3_index, 500));
    raft_fixture_kill(&c->f, S5);

    /* (c) S1 comes back as a stale term-2 leader, steps down, and wins term 4 with S3 and S4; then
     * S4 is cut off again so that E2 reaches a majority (S1, S2, S3) only. */
    raft_fixture_revive(&c->f, S1);
    cr_assert(rc_step_until_not_leader(c, S1, 1000), "S1 (stale leader of term 2) kept leading");
    cr_assert(rc_step_until_leader(c, S1, 3000), "S1 was not re-elected");
    cr_assert_eq(rc_term(c, S1), 4);
    raft_fixture_saturate(&c->f, S1, S4);
    cr_assert(rc_step_until_committed(c, S1, e2_index, 1000), "S1 never committed E2");
    /* The Figure 8 rule: an entry of an older term is committed only together with one of the
     * leader's own term (here the no-op barrier a new leader appends). Expect, not assert, so that
     * a library without the rule goes on to show the consequence below. */
    cr_expect_gt(rc_commit(c, S1), e2_index,
                 "S1 (term 4) committed the term-2 entry at %llu by counting replicas",
                 (unsigned long long)e2_index);
    cr_assert(rc_applied_somewhere(c, e2_index, e2), "S1 reported E2 committed without applying it");
    raft_fixture_kill(&c->f, S1);

    /* (d) S5 comes back; it must never overwrite E2 (the step hook fails the test if it does). */
    raft_fixture_revive(&c->f, S5);
    cr_assert(rc_step_until_not_leader(c, S5, 1000), "S5 (stale leader of term 3) kept leading");
    rc_step_for(c, 8000);

    /* (e) */
    cr_assert(rc_heal_and_converge(c, 20000), "the healed cluster did not converge");
    cr_assert(rc_applied_somewhere(c, e2_index, e2), "E2 was reported committed and then lost");
    cr_assert_eq(rc_applied_index(c, e3), 0, "E3 (never committed) was applied");
    rc_teardown(c);
}
