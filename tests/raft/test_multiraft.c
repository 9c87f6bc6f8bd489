/* test_multiraft.c: raft/ over real sockets: 3 nodes, 1, 20 and 50 groups; elections, commits, failover (fast, link flaps), restart, transfer, membership. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

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

/* ---- quiescence (docs/replication.md, "Heartbeats") ---- */

struct quiet_want {
    unsigned total; /* groups quiet, summed over the up nodes */
};

static bool all_quiet(struct mr_cluster *c, void *arg)
{
    const struct quiet_want *w = arg;
    unsigned sum = 0;
    for (unsigned i = 0; i < c->n_nodes; i++)
        if (c->nodes[i].up)
            sum += mr_quiet(c, i);
    return sum == w->total;
}

static void sum_stats(struct mr_cluster *c, struct fr_node_stats *sum)
{
    memset(sum, 0, sizeof(*sum));
    for (unsigned i = 0; i < c->n_nodes; i++) {
        if (!c->nodes[i].up)
            continue;
        struct fr_node_stats st;
        fr_node_stats(c->nodes[i].node, &st);
        sum->heartbeats_sent += st.heartbeats_sent;
        sum->frames_sent += st.frames_sent;
        sum->heartbeats_synthesized += st.heartbeats_synthesized;
        sum->kind_sent[3] += st.kind_sent[3];
        sum->woken += st.woken;
    }
}

#define QG 4

/* Idle groups go quiet on all three replicas: no Raft frames at all, only pings; a proposal wakes
 * its group, commits, and the group goes quiet again. */
Test(multiraft, quiescence_idle_groups_stop_heartbeats_and_wake_on_proposal, .timeout = 60)
{
    struct mr_cluster c;
    mr_init(&c, 3, false);
    for (unsigned i = 0; i < 3; i++)
        mr_node_start(&c, i);
    for (unsigned i = 0; i < 3; i++)
        mr_open_groups(&c, i, 0, QG, ALL3, 3);
    cr_assert(mr_wait_leaders(&c, 0, QG, 10000));
    for (unsigned g = 0; g < QG; g++)
        cr_assert_eq(mr_propose(&c, g, 5, 10000), 5);
    struct quiet_want w = {QG * 3};
    cr_assert(mr_run_until(&c, all_quiet, &w, 10000), "idle groups did not all go quiet");

    struct fr_node_stats a, b;
    sum_stats(&c, &a);
    mr_run_for(&c, 1000); /* two election timeouts */
    sum_stats(&c, &b);
    cr_assert_eq(b.frames_sent - a.frames_sent, 0, "quiet groups sent %llu Raft frames",
                 (unsigned long long)(b.frames_sent - a.frames_sent));
    cr_assert_gt(b.kind_sent[3], a.kind_sent[3], "no pings between the nodes");
    cr_assert_gt(b.heartbeats_synthesized, a.heartbeats_synthesized, "Raft's timers were not fed");
    cr_assert(all_quiet(&c, &w), "a group woke up while idle");
    for (unsigned g = 0; g < QG; g++) {
        int l = mr_leader(&c, g);
        cr_assert(l >= 0);
        cr_assert(fr_group_is_leader(c.nodes[l].groups[g]));
    }

    /* A proposal wakes group 0 (and only it), commits everywhere, then it goes quiet again. */
    cr_assert_eq(mr_propose(&c, 0, 10, 10000), 10);
    cr_assert(mr_wait_converged(&c, 0, 15, 10000));
    sum_stats(&c, &b);
    cr_assert_gt(b.woken, a.woken, "the proposal did not wake its group");
    cr_assert(mr_run_until(&c, all_quiet, &w, 10000), "group 0 did not go quiet again");
    for (unsigned g = 0; g < QG; g++) {
        cr_assert(mr_wait_converged(&c, g, 5, 10000));
        mr_check_prefixes(&c, g);
    }
    mr_teardown(&c);
}

struct new_leader {
    unsigned gi;
    int old;
    uint64_t old_term;
};

static bool other_leader(struct mr_cluster *c, void *arg)
{
    const struct new_leader *w = arg;
    for (unsigned i = 0; i < c->n_nodes; i++) {
        struct fr_group *g = c->nodes[i].groups[w->gi];
        if ((int)i != w->old && c->nodes[i].up && g != NULL && fr_group_is_leader(g) &&
            fr_group_term(g) > w->old_term)
            return true;
    }
    return false;
}

static bool old_stepped_down(struct mr_cluster *c, void *arg)
{
    const struct new_leader *w = arg;
    return !fr_group_is_leader(c->nodes[w->old].groups[w->gi]);
}

/* A quiet group's leader is cut off (frames vanish, sockets open: a firewall cut or a SIGSTOPped
 * process as its peers see it): the followers stop getting local heartbeats and elect a new
 * leader; the old leader, without contact to a majority, steps down. Reconnected, it rejoins. */
static void quiet_leader_cut_off(unsigned n_groups)
{
    struct mr_cluster c;
    mr_init(&c, 3, false);
    for (unsigned i = 0; i < 3; i++)
        mr_node_start(&c, i);
    for (unsigned i = 0; i < 3; i++)
        mr_open_groups(&c, i, 0, n_groups, ALL3, 3);
    cr_assert(mr_wait_leaders(&c, 0, n_groups, 10000));
    for (unsigned g = 0; g < n_groups; g++)
        cr_assert_eq(mr_propose(&c, g, 5, 10000), 5);
    struct quiet_want w = {n_groups * 3};
    cr_assert(mr_run_until(&c, all_quiet, &w, 10000), "idle groups did not all go quiet");

    struct new_leader nl = {.gi = 0, .old = mr_leader(&c, 0)};
    cr_assert(nl.old >= 0);
    nl.old_term = fr_group_term(c.nodes[nl.old].groups[0]);
    mr_isolate(&c, (unsigned)nl.old, true);
    cr_assert(mr_run_until(&c, other_leader, &nl, 10000), "the followers of a cut-off quiet leader did not elect");
    cr_assert(mr_run_until(&c, old_stepped_down, &nl, 10000), "a quiet leader cut off from the majority stayed leader");
    cr_assert_eq(mr_propose(&c, 0, 10, 10000), 10, "the majority side did not commit");

    mr_isolate(&c, (unsigned)nl.old, false);
    cr_assert_eq(mr_propose(&c, 0, 10, 10000), 10);
    cr_assert(mr_wait_converged(&c, 0, 25, 15000), "the reconnected old leader did not catch up");
    mr_check_prefixes(&c, 0);
    mr_teardown(&c);
}

Test(multiraft, quiescence_leader_cut_off_one_group, .timeout = 60)
{
    quiet_leader_cut_off(1);
}

Test(multiraft, quiescence_leader_cut_off_four_groups, .timeout = 60)
{
    quiet_leader_cut_off(QG);
}

/* A quiet follower cut off: the leader keeps its majority (no step down, no new term), the
 * follower cannot win an election (pre-vote), and reconnected it catches up. */
Test(multiraft, quiescence_follower_cut_off_leader_stays, .timeout = 60)
{
    struct mr_cluster c;
    mr_init(&c, 3, false);
    for (unsigned i = 0; i < 3; i++)
        mr_node_start(&c, i);
    for (unsigned i = 0; i < 3; i++)
        mr_open_groups(&c, i, 0, 1, ALL3, 3);
    cr_assert(mr_wait_leader(&c, 0, 10000));
    cr_assert_eq(mr_propose(&c, 0, 5, 10000), 5);
    struct quiet_want w = {3};
    cr_assert(mr_run_until(&c, all_quiet, &w, 10000));
    int l = mr_leader(&c, 0);
    uint64_t term = fr_group_term(c.nodes[l].groups[0]);
    unsigned f = ((unsigned)l + 1) % 3;
    mr_isolate(&c, f, true);
    mr_run_for(&c, 2000); /* four election timeouts */
    cr_assert(fr_group_is_leader(c.nodes[l].groups[0]), "the leader lost leadership to a cut-off follower");
    cr_assert_eq(fr_group_term(c.nodes[l].groups[0]), term);
    cr_assert_eq(mr_propose(&c, 0, 10, 10000), 10);
    mr_isolate(&c, f, false);
    cr_assert(mr_wait_converged(&c, 0, 15, 15000), "the reconnected follower did not catch up");
    mr_check_prefixes(&c, 0);
    mr_teardown(&c);
}

/* ---- a replica wiped and restarted empty (the stuck follower) ---- */

/*
 * The leader keeps its progress for the follower while it restarts (the restart is faster than a
 * heartbeat interval, so the leader's contact check never saw it gone and its progress stays in
 * pipeline mode at the old match index). The empty follower rejects every AppendEntries with a
 * last index below that match index, which the library ignores as stale: without the transport's
 * fix it is never refilled. Slow timeouts (500 ms heartbeat) make "faster than a heartbeat" certain.
 */
static void wiped_follower(bool quiesce)
{
    struct mr_cluster c;
    mr_init(&c, 3, false);
    c.no_quiesce = !quiesce;
    c.gcfg.heartbeat_timeout_ms = 500;
    c.gcfg.election_timeout_ms = 5000;
    for (unsigned i = 0; i < 3; i++)
        mr_node_start(&c, i);
    for (unsigned i = 0; i < 3; i++)
        mr_open_groups(&c, i, 0, 1, ALL3, 3);
    cr_assert(mr_wait_leader(&c, 0, 20000));
    cr_assert_eq(mr_propose(&c, 0, 100, 10000), 100); /* past the snapshot threshold (64) */
    cr_assert(mr_wait_converged(&c, 0, 100, 10000));

    int l = mr_leader(&c, 0);
    unsigned f = ((unsigned)l + 1) % 3;
    mr_node_stop(&c, f);
    mr_node_wipe(&c, f);
    /* Restarted at once with an empty data dir: bootstraps afresh (index 1), then must be refilled. */
    mr_node_start(&c, f);
    mr_open_groups(&c, f, 0, 1, ALL3, 3);
    cr_assert_eq(mr_propose(&c, 0, 20, 20000), 20);
    cr_assert(mr_wait_converged(&c, 0, 120, 30000), "the wiped follower was never refilled");
    mr_check_prefixes(&c, 0);
    cr_assert_eq(mr_propose(&c, 0, 10, 20000), 10);
    cr_assert(mr_wait_converged(&c, 0, 130, 20000));
    mr_check_prefixes(&c, 0);
    struct fr_node_stats st;
    fr_node_stats(c.nodes[l].node, &st);
    printf("wiped follower (quiescence %s): leader made %llu stuck-follower transfers\n", quiesce ? "on" : "off",
           (unsigned long long)st.stuck_transfers);
    mr_teardown(&c);
}

Test(multiraft, wiped_follower_is_refilled, .timeout = 90)
{
    wiped_follower(true);
}

Test(multiraft, wiped_follower_is_refilled_without_quiescence, .timeout = 90)
{
    wiped_follower(false);
}

/* ---- fast failover (raft/failover.c) ---- */

#define FG 20

struct fo_state {
    int old;                 /* the stopped node */
    int leader[FG];          /* leader of each group before */
    uint64_t term[FG];       /* its term before */
};

/* Every group has a leader on an up node, in a term above the one it had before the stop. */
static bool all_reelected(struct mr_cluster *c, void *arg)
{
    const struct fo_state *s = arg;
    for (unsigned g = 0; g < FG; g++) {
        int l = mr_leader(c, g);
        if (l < 0 || (s->leader[g] == s->old && fr_group_term(c->nodes[l].groups[g]) <= s->term[g]))
            return false;
    }
    return true;
}

static void fo_snapshot(struct mr_cluster *c, struct fo_state *s)
{
    for (unsigned g = 0; g < FG; g++) {
        s->leader[g] = mr_leader(c, g);
        cr_assert(s->leader[g] >= 0);
        s->term[g] = fr_group_term(c->nodes[s->leader[g]].groups[g]);
    }
}

/*
 * The node leading most of 20 groups stops (its sockets close, as on kill -9): every group it led
 * has a new leader far sooner than an election timeout (1 s) plus its random part (up to 1 s),
 * in one round (term + 1: no split vote), and the groups led elsewhere keep leader and term.
 */
static void failover_fast(bool quiesce)
{
    struct mr_cluster c;
    mr_init(&c, 3, false);
    c.no_quiesce = !quiesce;
    for (unsigned i = 0; i < 3; i++)
        mr_node_start(&c, i);
    for (unsigned i = 0; i < 3; i++)
        mr_open_groups(&c, i, 0, FG, ALL3, 3);
    cr_assert(mr_wait_leaders(&c, 0, FG, 20000));
    for (unsigned g = 0; g < FG; g++)
        cr_assert_eq(mr_propose(&c, g, 5, 10000), 5);
    for (unsigned g = 0; g < FG; g++)
        cr_assert(mr_wait_converged(&c, g, 5, 10000));
    mr_run_for(&c, 600); /* idle long enough to go quiet (when on) */

    struct fo_state s;
    fo_snapshot(&c, &s);
    unsigned led[3] = {0};
    for (unsigned g = 0; g < FG; g++)
        led[s.leader[g]]++;
    s.old = 0;
    for (int i = 1; i < 3; i++)
        if (led[i] > led[s.old])
            s.old = i;
    cr_assert_gt(led[s.old], 0);

    uint64_t t0 = uv_hrtime();
    mr_node_stop(&c, (unsigned)s.old);
    cr_assert(mr_run_until(&c, all_reelected, &s, 10000), "not every group re-elected");
    double ms = (double)(uv_hrtime() - t0) / 1e6;
    printf("failover (quiescence %s): %u of %u groups led by node %d re-elected in %.1f ms\n",
           quiesce ? "on" : "off", led[s.old], FG, s.old + 1, ms);
    cr_assert_lt(ms, 1000.0, "failover took %.1f ms (election timeout 1000 ms + random up to 1000 ms)", ms);
    for (unsigned g = 0; g < FG; g++) {
        int l = mr_leader(&c, g);
        uint64_t term = fr_group_term(c.nodes[l].groups[g]);
        if (s.leader[g] == s.old)
            cr_assert_eq(term, s.term[g] + 1, "group %u: term %llu -> %llu (split vote?)", g,
                         (unsigned long long)s.term[g], (unsigned long long)term);
        else
            cr_assert(l == s.leader[g] && term == s.term[g], "group %u: a healthy leader was disrupted", g);
    }
    for (unsigned g = 0; g < FG; g++)
        cr_assert_eq(mr_propose(&c, g, 3, 10000), 3, "group %u after failover", g);
    for (unsigned g = 0; g < FG; g++) {
        cr_assert(mr_wait_converged(&c, g, 8, 10000));
        mr_check_prefixes(&c, g);
    }
    struct fr_node_stats st;
    unsigned failovers = 0;
    for (unsigned i = 0; i < 3; i++) {
        if (!c.nodes[i].up)
            continue;
        fr_node_stats(c.nodes[i].node, &st);
        failovers += (unsigned)st.failovers;
    }
    cr_assert_geq(failovers, led[s.old], "the survivors did not give up on the stopped leader");
    mr_teardown(&c);
}

Test(multiraft, failover_twenty_groups_within_a_second, .timeout = 90)
{
    failover_fast(true);
}

Test(multiraft, failover_twenty_groups_within_a_second_without_quiescence, .timeout = 90)
{
    failover_fast(false);
}

/*
 * The link between nodes 1 and 2 closes and comes back at once (a flap): each side gives up on
 * the groups the other leads and asks for pre-votes, which the healthy leaders and node 3
 * refuse. No group changes leader or term; every group still commits.
 */
Test(multiraft, failover_link_flap_does_not_disrupt_leaders, .timeout = 90)
{
    struct mr_cluster c;
    mr_init(&c, 3, false);
    for (unsigned i = 0; i < 3; i++)
        mr_node_start(&c, i);
    for (unsigned i = 0; i < 3; i++)
        mr_open_groups(&c, i, 0, FG, ALL3, 3);
    cr_assert(mr_wait_leaders(&c, 0, FG, 20000));
    for (unsigned g = 0; g < FG; g++)
        cr_assert_eq(mr_propose(&c, g, 5, 10000), 5);
    mr_run_for(&c, 600);
    struct fo_state s;
    fo_snapshot(&c, &s);
    unsigned exposed = 0; /* groups led by node 1 or 2: the other one follows them over the link */
    for (unsigned g = 0; g < FG; g++)
        exposed += s.leader[g] != 2;
    cr_assert_gt(exposed, 0);

    /* Node 2 accepts node 1's connection: a new address for node 1 closes it, the old one set back
     * before node 1 redials; node 1 redials node 2 after its backoff. */
    char err[256];
    struct mr_node *m = &c.nodes[1];
    cr_assert_eq(fr_node_set_peer(m->node, c.nodes[0].id, "127.0.0.1", c.nodes[0].port + 1, err, sizeof(err)),
                 FR_OK, "%s", err);
    cr_assert_eq(fr_node_set_peer(m->node, c.nodes[0].id, "127.0.0.1", c.nodes[0].port, err, sizeof(err)), FR_OK,
                 "%s", err);
    mr_run_for(&c, 2500); /* beyond an election timeout + its random part */

    struct fr_node_stats a, b;
    fr_node_stats(c.nodes[0].node, &a);
    fr_node_stats(c.nodes[1].node, &b);
    cr_assert_gt(a.failovers + b.failovers, 0, "the flap was not seen as a lost leader");
    cr_assert_eq(b.peers_up, 2, "node 2 did not get node 1 back");
    for (unsigned g = 0; g < FG; g++) {
        int l = mr_leader(&c, g);
        cr_assert_eq(l, s.leader[g], "group %u changed leader", g);
        cr_assert_eq(fr_group_term(c.nodes[l].groups[g]), s.term[g], "group %u changed term", g);
    }
    for (unsigned g = 0; g < FG; g++)
        cr_assert_eq(mr_propose(&c, g, 3, 10000), 3, "group %u after the flap", g);
    for (unsigned g = 0; g < FG; g++) {
        cr_assert(mr_wait_converged(&c, g, 8, 10000), "group %u did not converge after the flap", g);
        mr_check_prefixes(&c, g);
    }
    mr_teardown(&c);
}
