/* failover.c: fast elections once a group's leader's node is gone (its peer link closed or turned silent). */
#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fr_int.h"

/*
 * Without help, a follower notices a dead leader only when its election timer runs out (1x-2x the
 * election timeout, random), and with pre-vote the first follower to time out is refused by the
 * others, which still trust the dead leader until their own timers run out; two followers timing
 * out together split the vote and cost a round. The node knows sooner: a kill -9 closes the peer
 * link at once, a stopped or cut-off node turns its link silent after link_timeout_ms.
 *
 * Then, for every group followed here whose leader is that peer, this replica "gives up" on the
 * leader: raft's clock for the group (io->time, group.c) is moved forward to the end of its
 * election timer and the group is ticked, so the library itself converts it to a pre-vote
 * candidate, which forgets the leader. The surviving voters are ranked by id (the lost leader
 * and voters this node cannot reach left out). Rank 0 campaigns: its pre-vote requests go out.
 * The others stand by: their pre-vote requests of that term are dropped here (a lost message, as
 * far as Raft knows), so they are candidates that grant others' pre-votes by the library's rules
 * and never compete. A replica that has not yet seen the leader go when rank 0's vote request
 * arrives gives up first, standing by (fr_fo_before_recv). So one candidate runs one round.
 *
 * Fallbacks. The peers do not see a kill at the same instant: rank 0's pre-vote may reach a
 * replica that still trusts the leader and refuses it; that replica, giving up on the leader
 * shortly after, campaigns itself whatever its rank (rank 0's round has failed and waits out its
 * random timer, so it grants). A replica failing over that refuses a pre-vote as a leaderless
 * candidate (its log is more up to date: that candidate cannot win with its vote) runs its own
 * round on the next loop iteration (from the node's send-callback idle, outside Raft's step). A standing-by replica runs its own round after rank x half an
 * election timeout without a leader (rank 0 is gone too). Rank 0, campaigning, repeats a failed
 * pre-vote round every heartbeat interval for two election timeouts (a voter that could not
 * answer, e.g. a restarted broker still opening its groups, may answer now); pre-votes change no
 * term, so this disrupts nothing. If the library kept the group a follower (entries still being
 * persisted), the next node tick tries again.
 *
 * Safety: only time moves, and only forward; dropping a message is what a network may do. Votes,
 * terms and logs are the library's business. A follower whose link to a healthy leader flaps
 * gives up on it, but its pre-vote is refused by the leader and by every follower that still
 * hears from it, so no term changes; the leader's next heartbeat (the link event wakes quiet
 * groups) makes it a follower again.
 */

static int verbose(void)
{
    static int v = -1;
    if (v < 0) {
        const char *e = getenv("FERRY_RAFT_VERBOSE");
        v = e != NULL && *e != '\0' && strcmp(e, "0") != 0;
    }
    return v;
}

/* FERRY_RAFT_VERBOSE only: one line per decision, stamped with the loop's clock (ms). */
static void fo_log(const struct fr_group *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fo_log(const struct fr_group *g, const char *fmt, ...)
{
    if (!verbose())
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "raft node %llu group %s failover @%llu: ", (unsigned long long)g->node->id, g->name,
            (unsigned long long)uv_now(g->node->loop));
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static bool reachable(struct fr_node *n, uint64_t id)
{
    struct fr_link *l = fr_node_live_link(n, id);
    return l != NULL && !l->silent;
}

/* Rank of this node among the voters that may take over from `leader` (lower ids first; the
 * leader and voters this node cannot reach are left out), or -1 if this node is not a voter. */
static int voter_rank(struct fr_group *g, uint64_t leader)
{
    struct fr_node *n = g->node;
    const struct raft_configuration *c = &g->raft.configuration;
    bool voter = false;
    int rank = 0;
    for (unsigned i = 0; i < c->n; i++) {
        uint64_t id = c->servers[i].id;
        if (c->servers[i].role != RAFT_VOTER || id == leader)
            continue;
        if (id == n->id)
            voter = true;
        else if (id < n->id && reachable(n, id))
            rank++;
    }
    return voter ? rank : -1;
}

static uint64_t current_leader(struct fr_group *g)
{
    raft_id id = 0;
    const char *addr = NULL;
    raft_leader(&g->raft, &id, &addr);
    return id;
}

static bool usable(const struct fr_group *g)
{
    return g->state == FR_GROUP_STARTED && g->has_raft && g->recv_cb != NULL && g->ticking && g->tick_cb != NULL;
}

/* Moves g's clock to the end of its election timer (follower or candidate) and ticks it. */
static void expire_now(struct fr_group *g)
{
    struct raft *r = &g->raft;
    assert(r->state == RAFT_FOLLOWER || r->state == RAFT_CANDIDATE);
    unsigned timeout = r->state == RAFT_FOLLOWER ? r->follower_state.randomized_election_timeout
                                                 : r->candidate_state.randomized_election_timeout;
    raft_time now = g->io.time(&g->io);
    raft_time expiry = r->election_timer_start + timeout;
    if (expiry > now)
        g->time_skew += expiry - now;
    g->tick_cb(&g->io);
}

/* Failover over (a leader is known, or the library's own election took over). A recent refusal
 * is kept: it still tells give_up that a candidate's round failed. */
static void fo_clear(struct fr_group *g)
{
    uint64_t refused_ms = g->fo.refused_ms, refused_term = g->fo.refused_term;
    memset(&g->fo, 0, sizeof(g->fo));
    g->fo.refused_ms = refused_ms;
    g->fo.refused_term = refused_term;
}

static void fo_done(struct fr_group *g)
{
    uint64_t leader = current_leader(g);
    fo_log(g, "over: %s, leader %llu, term %llu", raft_state_name(raft_state(&g->raft)), (unsigned long long)leader,
           (unsigned long long)raft_current_term(&g->raft));
    fo_clear(g);
}

/* g follows `leader`, whose node is gone: become a candidate now (campaigning if allowed and
 * first by rank, else standing by). */
static void give_up(struct fr_group *g, uint64_t leader, bool may_campaign, uint64_t now_ms)
{
    struct fr_node *n = g->node;
    assert(usable(g) && raft_state(&g->raft) == RAFT_FOLLOWER);
    int rank = voter_rank(g, leader);
    if (rank < 0)
        return; /* not a voter: nothing to elect */
    uint64_t term = raft_current_term(&g->raft);
    bool first = g->fo.leader != leader || g->fo.term != term;
    bool refused = g->fo.refused_term == term && g->fo.refused_ms != 0 &&
                   now_ms - g->fo.refused_ms < (uint64_t)g->raft.election_timeout;
    g->fo.leader = leader;
    g->fo.term = term;
    g->fo.rank = rank;
    if (first)
        g->fo.since_ms = now_ms;
    g->fo.round_ms = now_ms;
    g->fo.campaign = may_campaign && (rank == 0 || refused);
    g->fo.suppress = !g->fo.campaign;
    if (g->fo.suppress && (first || g->fo.retry_ms == 0)) {
        unsigned stagger = g->raft.election_timeout / 2;
        g->fo.retry_ms = now_ms + (uint64_t)(rank > 0 ? rank : 1) * (stagger ? stagger : 1);
    }
    if (first)
        n->stats.failovers++;
    fo_log(g, "gives up on leader %llu (term %llu, rank %d, %s)", (unsigned long long)leader,
           (unsigned long long)term, rank, g->fo.campaign ? "campaigns" : "stands by");
    expire_now(g);
    fo_log(g, "now %s", raft_state_name(raft_state(&g->raft)));
}

void fr_fo_peer_lost(struct fr_node *n, uint64_t peer_id)
{
    if (n->stopping)
        return;
    uint64_t now = uv_now(n->loop);
    /* By index: a step's callbacks may open or close groups (a skipped group retries next tick). */
    for (unsigned i = 0; i < n->n_groups; i++) {
        struct fr_group *g = n->groups[i];
        if (usable(g) && raft_state(&g->raft) == RAFT_FOLLOWER && current_leader(g) == peer_id)
            give_up(g, peer_id, true, now);
    }
}

void fr_fo_before_recv(struct fr_group *g, uint64_t from, const struct raft_message *msg)
{
    if (msg->type != RAFT_REQUEST_VOTE || msg->request_vote.disrupt_leader || !usable(g) ||
        raft_state(&g->raft) != RAFT_FOLLOWER)
        return;
    uint64_t leader = current_leader(g);
    if (leader == 0 || leader == from || leader == g->node->id || reachable(g->node, leader))
        return;
    give_up(g, leader, false, uv_now(g->node->loop));
}

bool fr_fo_filter_send(struct fr_group *g, const struct raft_message *msg)
{
    if (!g->has_raft)
        return false;
    const struct raft *r = &g->raft;
    bool pre_vote_candidate = g->fo.leader != 0 && r->state == RAFT_CANDIDATE && r->candidate_state.in_pre_vote &&
                              r->current_term == g->fo.term;
    if (msg->type == RAFT_REQUEST_VOTE && msg->request_vote.pre_vote && pre_vote_candidate && g->fo.suppress)
        return true;
    if (msg->type != RAFT_REQUEST_VOTE_RESULT || !msg->request_vote_result.pre_vote ||
        msg->request_vote_result.vote_granted)
        return false;
    if (pre_vote_candidate) {
        /* Refused as a candidate without a leader: our log is more up to date than that
         * candidate's, which therefore cannot win with our vote. Run our own round on the next
         * loop iteration (its round has failed by then, so it grants ours). */
        fo_log(g, "refused a pre-vote from %llu as a candidate: runs its own round next",
               (unsigned long long)msg->server_id);
        g->fo.retry_ms = uv_now(g->node->loop);
        g->node->fo_due = true; /* this answer is being queued: the done idle runs it next */
    } else if (r->state == RAFT_FOLLOWER) {
        /* Refused because we still have a leader: if we give up on it soon, that candidate's round
         * has failed and waits out its timer, so we campaign instead of standing by. */
        fo_log(g, "refused a pre-vote from %llu (has a leader)", (unsigned long long)msg->server_id);
        g->fo.refused_ms = uv_now(g->node->loop);
        g->fo.refused_term = r->current_term;
    }
    return false;
}

void fr_fo_tick(struct fr_node *n, uint64_t now)
{
    if (n->stopping)
        return;
    for (unsigned i = 0; i < n->n_groups; i++) {
        struct fr_group *g = n->groups[i];
        if (g->fo.leader == 0)
            continue;
        if (!usable(g)) {
            fo_clear(g);
            continue;
        }
        struct raft *r = &g->raft;
        switch (raft_state(r)) {
        case RAFT_FOLLOWER: {
            uint64_t leader = current_leader(g);
            if (leader == g->fo.leader && r->current_term == g->fo.term && !reachable(n, leader))
                give_up(g, leader, g->fo.campaign, now); /* the library kept it a follower: again */
            else
                fo_done(g); /* a leader is known, or a real election moved the term on */
            break;
        }
        case RAFT_CANDIDATE:
            if (!r->candidate_state.in_pre_vote || r->current_term != g->fo.term) {
                fo_done(g); /* a real election is under way: the library's timers from here */
            } else if (g->fo.retry_ms != 0 && now >= g->fo.retry_ms) {
                g->fo.suppress = false;
                g->fo.retry_ms = 0;
                g->fo.round_ms = now;
                fo_log(g, "runs its own pre-vote round");
                expire_now(g);
            } else if (g->fo.campaign && g->fo.rank == 0 && now - g->fo.round_ms >= n->hb_ms &&
                       now - g->fo.since_ms < 2 * (uint64_t)r->election_timeout) {
                /* Its round failed: a voter that did not answer (a restarted broker whose group
                 * was not open yet) may answer now. A pre-vote changes no term: retrying is safe. */
                g->fo.round_ms = now;
                fo_log(g, "pre-vote round again");
                expire_now(g);
            }
            break;
        default:
            fo_done(g);
            break;
        }
    }
}
