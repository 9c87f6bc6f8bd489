/* test_snapshot.c: a follower that missed entries compacted into a snapshot catches up via InstallSnapshot. */
#include <criterion/criterion.h>

#include "cluster.h"

#ifdef RAFT_VERSION_NUMBER
#define MSG_INSTALL_SNAPSHOT RAFT_INSTALL_SNAPSHOT /* 0.17+ */
#else
#define MSG_INSTALL_SNAPSHOT RAFT_IO_INSTALL_SNAPSHOT
#endif

enum { SNAP_THRESHOLD = 8, SNAP_TRAILING = 2, N_COMMANDS = 40 };

Test(snapshot, lagging_follower_catches_up_from_a_snapshot, .timeout = 30)
{
    struct rc_cluster *c = rc_setup(3, NULL);

    for (unsigned i = 0; i < c->n; i++) {
        raft_set_snapshot_threshold(rc_raft(c, i), SNAP_THRESHOLD);
        raft_set_snapshot_trailing(rc_raft(c, i), SNAP_TRAILING);
    }
    cr_assert(rc_step_until_leader(c, 0, 5000));
    raft_fixture_kill(&c->f, 2);

    /* S1 and S2 commit N_COMMANDS on their own, snapshotting every SNAP_THRESHOLD entries. */
    for (unsigned k = 0; k < N_COMMANDS; k++) {
        (void)rc_propose(c, 0);
        cr_assert(rc_step_until_committed(c, 0, raft_last_index(rc_raft(c, 0)), 1000),
                  "command %u did not commit on S1+S2", k);
    }
    cr_assert_eq(c->sm[2].n_applied, 0, "S3 was down");
    unsigned sent_before = raft_fixture_n_send(&c->f, 0, MSG_INSTALL_SNAPSHOT);

    /* S3's log ends at 1; the leader kept only SNAP_TRAILING entries: it must send a snapshot. */
    raft_fixture_revive(&c->f, 2);
    cr_assert(rc_heal_and_converge(c, 10000), "S3 did not catch up");
    cr_assert_gt(raft_fixture_n_send(&c->f, 0, MSG_INSTALL_SNAPSHOT), sent_before);
    cr_assert_geq(raft_fixture_n_recv(&c->f, 2, MSG_INSTALL_SNAPSHOT), 1);
    cr_assert_geq(c->sm[2].n_restores, 1, "S3's state machine was never restored");
    cr_assert_eq(c->sm[2].n_applied, c->sm[0].n_applied);
    cr_assert_geq(c->sm[2].n_applied, N_COMMANDS + 1, "S3 applied %u", c->sm[2].n_applied);
    rc_teardown(c);
}
