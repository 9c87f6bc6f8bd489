/* test_election.c: leader election, leader failover and minority partitions on raft_fixture. */
#include <criterion/criterion.h>

#include "cluster.h"

/* Every alive server agrees on who leads: returns the leader's index, or fails the test. */
static unsigned agreed_leader(struct rc_cluster *c)
{
    unsigned leader = rc_leader(c);
    unsigned n_leaders = 0;

    cr_assert_lt(leader, c->n, "no leader");
    for (unsigned i = 0; i < c->n; i++) {
        raft_id id = 0;
        const char *address = NULL;

        if (!raft_fixture_alive(&c->f, i)) {
            continue;
        }
        if (raft_state(rc_raft(c, i)) == RAFT_LEADER && rc_term(c, i) == rc_term(c, leader)) {
            n_leaders++;
        }
        raft_leader(rc_raft(c, i), &id, &address);
        cr_assert_eq(id, (raft_id)leader + 1, "S%u follows %llu, not S%u", i + 1,
                     (unsigned long long)id, leader + 1);
        cr_assert_eq(rc_term(c, i), rc_term(c, leader), "S%u is in another term", i + 1);
    }
    cr_assert_eq(n_leaders, 1, "two leaders in one term");
    return leader;
}

static bool all_alive_follow(struct rc_cluster *c, void *arg)
{
    unsigned leader = rc_leader(c);
    (void)arg;
    if (leader >= c->n) {
        return false;
    }
    for (unsigned i = 0; i < c->n; i++) {
        raft_id id = 0;
        const char *address = NULL;
        if (raft_fixture_alive(&c->f, i)) {
            raft_leader(rc_raft(c, i), &id, &address);
            if (id != (raft_id)leader + 1 || rc_term(c, i) != rc_term(c, leader)) {
                return false;
            }
        }
    }
    return true;
}

Test(election, three_servers_elect_exactly_one_leader, .timeout = 30)
{
    struct rc_cluster *c = rc_setup(3, NULL);

    cr_assert(rc_step_until(c, all_alive_follow, NULL, 5000), "no leader within 5 s");
    unsigned leader = agreed_leader(c);
    cr_assert_eq(leader, 0, "S1 has the shortest election timeout");
    cr_assert_eq(rc_term(c, leader), 2, "one election after the bootstrap term");
    uint64_t id = rc_propose(c, leader);
    cr_assert(rc_heal_and_converge(c, 5000));
    cr_assert_eq(rc_applied_index(c, id), 2, "the first command follows the bootstrap entry");
    rc_teardown(c);
}

Test(election, leader_crash_elects_a_new_leader_in_a_higher_term, .timeout = 30)
{
    struct rc_cluster *c = rc_setup(3, NULL);

    cr_assert(rc_step_until(c, all_alive_follow, NULL, 5000));
    unsigned old = agreed_leader(c);
    raft_term old_term = rc_term(c, old);
    (void)rc_propose(c, old);
    cr_assert(rc_step_until_committed(c, old, raft_last_index(rc_raft(c, old)), 1000));
    raft_fixture_kill(&c->f, old);

    cr_assert(rc_step_until(c, all_alive_follow, NULL, 5000), "no new leader after the crash");
    unsigned fresh = agreed_leader(c);
    cr_assert_neq(fresh, old);
    cr_assert_gt(rc_term(c, fresh), old_term);
    (void)rc_propose(c, fresh);
    cr_assert(rc_heal_and_converge(c, 10000), "the old leader did not catch up");
    rc_teardown(c);
}

/* S1 leads; S1+S2 are cut off from S3..S5. The minority commits nothing, the majority elects its own
 * leader and commits; after healing, the minority's uncommitted command is gone everywhere. */
Test(election, minority_partition_commits_nothing, .timeout = 30)
{
    struct rc_cluster *c = rc_setup(5, NULL);

    cr_assert(rc_step_until(c, all_alive_follow, NULL, 5000));
    cr_assert_eq(agreed_leader(c), 0);
    for (unsigned i = 0; i < 2; i++) {
        for (unsigned j = 2; j < 5; j++) {
            raft_fixture_saturate(&c->f, i, j);
            raft_fixture_saturate(&c->f, j, i);
        }
    }
    raft_index before = rc_commit(c, 0);
    uint64_t lost = rc_propose(c, 0);
    rc_step_for(c, 3000);
    cr_assert_eq(rc_commit(c, 0), before, "a 2-of-5 minority committed");
    unsigned majority_leader = rc_leader(c);
    for (unsigned i = 0; i < c->n; i++) {
        if (i >= 2 && raft_state(rc_raft(c, i)) == RAFT_LEADER) {
            majority_leader = i;
        }
    }
    cr_assert(majority_leader >= 2 && majority_leader < 5, "the majority side elected no leader");
    uint64_t kept = rc_propose(c, majority_leader);
    cr_assert(rc_step_until_committed(c, majority_leader, raft_last_index(rc_raft(c, majority_leader)),
                                      1000));
    cr_assert(rc_heal_and_converge(c, 20000));
    cr_assert_eq(rc_applied_index(c, lost), 0, "the minority's command was applied");
    cr_assert_neq(rc_applied_index(c, kept), 0, "the majority's committed command is missing");
    rc_teardown(c);
}
