/* quiesce.c: node liveness (pings per peer link) and quiescence of idle groups: no per-group heartbeats while nothing happens. */
#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fr_int.h"

/*
 * Liveness. Every ping_ms (half a heartbeat interval) the node sends a 4-byte ping on each ready
 * link whose peer speaks it (hello flag FR_HELLO_F_LIVENESS). Any frame received refreshes the
 * link's last_recv_ms (node.c); a link with nothing for link_timeout_ms is "silent". The socket is
 * not closed for silence (TCP may recover; a closed socket would add a reconnect for nothing): a
 * silent link only stops standing in for heartbeats, and every group with that peer wakes.
 *
 * Quiescence. A group led here whose (term, last index, commit index) did not change for
 * FR_QUIET_AFTER_TICKS node ticks, with everything committed and applied, no transfer or promotion
 * running, and every follower that gets heartbeats (voters, standbys) at match index = last index,
 * answering recently and behind a live link that accepts quiescence, goes quiet: the node sends
 * each follower one coalesced QUIET frame (group, term, commit, last) per tick and from then on
 * drops the group's empty AppendEntries (fr_q_filter_send).
 *
 * A follower accepts QUIET for a group only if its own state is exactly that: follower in that
 * term, that leader, same last and commit index, and its last real AppendEntries from that leader
 * ended at that index (so it knows the term of the entry there). Otherwise it answers WAKE (also
 * when quiescence is off on its node); the leader then waits twice as long before it tries again
 * (up to 2^FR_QUIET_MAX_BACKOFF times).
 *
 * While quiet, Raft's timers are fed locally, and only from pings, i.e. only while the peer is
 * demonstrably alive and reachable:
 *  - follower: on a ping from the leader's node (at most once per ~heartbeat), the library gets a
 *    heartbeat replaying the last real one (same term, prev index/term, commit); its answer is
 *    dropped. No ping, no heartbeat: the election timer runs out exactly as without quiescence.
 *  - leader: on a ping from a follower's node, the library gets a successful
 *    AppendEntriesResult from that follower at the last index (it sets the progress' last_recv,
 *    which checkContactQuorum reads each tick). No pings from a majority: the leader steps down
 *    after an election timeout, as without quiescence. Pings come twice per heartbeat interval so
 *    every library tick sees one (a tick without contact would drop the follower to probe mode);
 *    a result is fed only if none was since the library's last tick reset its election timer.
 *
 * Waking. Any real traffic of the group wakes it on the side that sees it: a message sent other
 * than a quiet heartbeat (entries, votes, TimeoutNow, snapshots), a message received other than a
 * late result at the quiet index, a change of role / term / leader / indexes (checked each tick), a
 * link to a member that closes, is re-established, turns silent or live again, a refused or
 * explicit WAKE, the group closing. The side that wakes tells the other (leader -> every
 * follower, follower -> leader) with a coalesced WAKE frame; the leader's library then heartbeats
 * again on its next tick. Frames on one link are ordered, so a follower never sees a QUIET that is
 * older than traffic it already got.
 *
 * The stuck follower. A follower that acknowledged index i in this term and then answers with a
 * last index below i has lost its log (its data dir was wiped): the library treats its rejections
 * as stale while the progress is in pipeline mode and never resends below the match index (in
 * probe or snapshot mode it crawls, one message per heartbeat, or waits for the snapshot timeout). After FR_STUCK_REJECTS of them the leader
 * hands leadership to the most up-to-date other voter behind a live link (a new leader starts with
 * fresh progress and refills the follower from its log or a snapshot); at most once per election
 * timeout per group.
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

static void q_log(const struct fr_group *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void q_log(const struct fr_group *g, const char *fmt, ...)
{
    if (!verbose())
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "raft node %llu group %s: ", (unsigned long long)g->node->id, g->name);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static uint64_t leader_of(struct fr_group *g)
{
    raft_id id = 0;
    const char *addr = NULL;
    raft_leader(&g->raft, &id, &addr);
    return id;
}

/* The member's role, or -1 if it is not in the configuration. */
static int member_role(const struct fr_group *g, uint64_t id)
{
    const struct raft_configuration *c = &g->raft.configuration;
    for (unsigned i = 0; i < c->n; i++)
        if (c->servers[i].id == id)
            return c->servers[i].role;
    return -1;
}

/* ---- coalesced quiesce frames ---- */

static void q_append(struct fr_q_entry **a, unsigned *n, unsigned *cap, const struct fr_q_entry *e)
{
    if (*n == *cap) {
        unsigned c = *cap ? *cap * 2 : 16;
        struct fr_q_entry *p = realloc(*a, c * sizeof(*p));
        if (p == NULL)
            return; /* lost: the other side falls back to plain Raft by its timers (safe) */
        *a = p;
        *cap = c;
    }
    (*a)[(*n)++] = *e;
}

static void q_queue(struct fr_node *n, uint64_t to, enum fr_quiesce_op op, const struct fr_q_entry *e)
{
    struct fr_peer *p = fr_node_find_peer(n, to);
    if (p == NULL || n->stopping)
        return;
    if (op == FR_QOP_WAKE)
        q_append(&p->q_wake, &p->n_wake, &p->cap_wake, e);
    else
        q_append(&p->q_quiet, &p->n_quiet, &p->cap_quiet, e);
}

static void q_send(struct fr_node *n, struct fr_link *l, enum fr_quiesce_op op, const struct fr_q_entry *e,
                   unsigned count)
{
    while (count > 0) {
        unsigned k = count < FR_QUIESCE_MAX_ENTRIES ? count : FR_QUIESCE_MAX_ENTRIES;
        const uint8_t *frame;
        size_t len;
        if (fr_wire_encode_quiesce(n, op, e, k, &frame, &len) != FR_OK)
            return; /* out of memory: as a lost frame (see q_append) */
        (void)fr_link_send(l, frame, len);
        e += k;
        count -= k;
    }
}

/* Sends every queued entry: one WAKE then one QUIET frame per peer at most. */
static void q_flush(struct fr_node *n)
{
    for (unsigned i = 0; i < n->n_peers; i++) {
        struct fr_peer *p = n->peers[i];
        if (p->n_wake == 0 && p->n_quiet == 0)
            continue;
        struct fr_link *l = fr_node_live_link(n, p->id);
        if (l != NULL && (l->peer_flags & FR_HELLO_F_LIVENESS) && !n->stopping) {
            q_send(n, l, FR_QOP_WAKE, p->q_wake, p->n_wake);
            q_send(n, l, FR_QOP_QUIET, p->q_quiet, p->n_quiet);
        }
        p->n_wake = p->n_quiet = 0;
    }
}

/* ---- state changes ---- */

static void q_set(struct fr_group *g, enum fr_q_state s)
{
    struct fr_node *n = g->node;
    if (g->q.state == FR_Q_AWAKE && s != FR_Q_AWAKE) {
        n->stats.groups_quiescent++;
        n->stats.quiesced++;
    } else if (g->q.state != FR_Q_AWAKE && s == FR_Q_AWAKE) {
        assert(n->stats.groups_quiescent > 0);
        n->stats.groups_quiescent--;
        n->stats.woken++;
    }
    g->q.state = s;
}

/* Wakes g (no-op if awake) and queues a WAKE for the other side(s); the caller flushes. */
static void group_wake(struct fr_group *g, const char *why)
{
    enum fr_q_state was = g->q.state;
    g->q.stable_ticks = 0;
    if (was == FR_Q_AWAKE)
        return;
    q_set(g, FR_Q_AWAKE);
    q_log(g, "wakes (%s)", why);
    struct fr_q_entry e = {.group_id = g->id};
    if (was == FR_Q_LEADER) {
        /* The followers it told (all tracked: each acknowledged the last index). Not the
         * configuration: this also runs once the library has closed and freed it. */
        for (unsigned i = 0; i < g->q.n_fol; i++)
            q_queue(g->node, g->q.fol[i].id, FR_QOP_WAKE, &e);
    } else {
        q_queue(g->node, g->q.leader, FR_QOP_WAKE, &e);
    }
}

static struct fr_q_follower *follower(struct fr_group *g, uint64_t id, bool create)
{
    uint64_t term = raft_current_term(&g->raft);
    if (g->q.track_term != term) {
        g->q.track_term = term; /* a new term: nothing a follower acknowledged before counts */
        g->q.n_fol = 0;
    }
    for (unsigned i = 0; i < g->q.n_fol; i++)
        if (g->q.fol[i].id == id)
            return &g->q.fol[i];
    if (!create)
        return NULL;
    if (g->q.n_fol == g->q.cap_fol) {
        unsigned c = g->q.cap_fol ? g->q.cap_fol * 2 : 4;
        struct fr_q_follower *a = realloc(g->q.fol, c * sizeof(*a));
        if (a == NULL)
            return NULL; /* untracked: the group just never quiesces */
        g->q.fol = a;
        g->q.cap_fol = c;
    }
    struct fr_q_follower *f = &g->q.fol[g->q.n_fol++];
    memset(f, 0, sizeof(*f));
    f->id = id;
    return f;
}

/* ---- the library's inputs, synthesized ---- */

/* Quiet follower g: the leader's node pinged; replay its last heartbeat. */
static void synth_heartbeat(struct fr_group *g, struct fr_link *l)
{
    struct fr_node *n = g->node;
    struct raft_message m;
    memset(&m, 0, sizeof(m));
    m.type = RAFT_APPEND_ENTRIES;
    m.server_id = l->peer->id;
    m.server_address = l->peer->idstr;
    m.append_entries.version = g->q.ae_version;
    m.append_entries.term = g->q.term;
    m.append_entries.prev_log_index = g->q.last;
    m.append_entries.prev_log_term = g->q.seen_term;
    m.append_entries.leader_commit = g->q.commit;
    assert(n->synth == NULL);
    n->synth = g;
    n->synth_rejected = false;
    g->recv_cb(&g->io, &m);
    n->synth = NULL;
    n->stats.heartbeats_synthesized++;
    if (n->synth_rejected)
        group_wake(g, "local heartbeat rejected");
}

/* Quiet leader g: follower l->peer's node pinged; it acknowledges the last index again. */
static void synth_result(struct fr_group *g, struct fr_link *l)
{
    struct fr_node *n = g->node;
    struct fr_q_follower *f = follower(g, l->peer->id, false);
    if (f == NULL) {
        group_wake(g, "follower no longer tracked");
        return;
    }
    /* One per library tick is enough: the tick that found a contact quorum moved
     * election_timer_start, and a result fed since then already counts for the next one. But at
     * least one per heartbeat, whatever the library did. */
    uint64_t now = uv_now(n->loop);
    /* (Raft's clock runs g->time_skew ahead of uv_now: group.c.) */
    if (f->synth_ms + g->time_skew >= g->raft.election_timer_start && now - f->synth_ms < n->hb_ms)
        return;
    f->synth_ms = now;
    struct raft_message m;
    memset(&m, 0, sizeof(m));
    m.type = RAFT_APPEND_ENTRIES_RESULT;
    m.server_id = l->peer->id;
    m.server_address = l->peer->idstr;
    m.append_entries_result.version = f->version;
    m.append_entries_result.term = g->q.term;
    m.append_entries_result.rejected = 0;
    m.append_entries_result.last_log_index = g->q.last;
    m.append_entries_result.features = f->features;
    m.append_entries_result.capacity = f->capacity;
    assert(n->synth == NULL);
    n->synth = g;
    g->recv_cb(&g->io, &m);
    n->synth = NULL;
    n->stats.heartbeats_synthesized++;
}

/* Does a quiet group still look exactly as when it went quiet? */
static bool quiet_still_valid(struct fr_group *g)
{
    struct raft *r = &g->raft;
    if (g->state != FR_GROUP_STARTED || g->recv_cb == NULL)
        return false;
    if (raft_current_term(r) != g->q.term || raft_last_index(r) != g->q.last || raft_commit_index(r) != g->q.commit)
        return false;
    if (g->q.state == FR_Q_LEADER)
        return raft_state(r) == RAFT_LEADER;
    return raft_state(r) == RAFT_FOLLOWER && leader_of(g) == g->q.leader;
}

void fr_q_on_ping(struct fr_link *l, const uint8_t *payload, size_t len)
{
    struct fr_node *n = l->node;
    (void)payload;
    if (len != FR_PING_LEN) {
        ferry_conn_close(l->conn, "malformed ping frame");
        return;
    }
    uint64_t now = uv_now(n->loop);
    uint64_t peer = l->peer->id;
    /* Followers need one heartbeat per interval; pings come twice as often. */
    bool feed_followers = now - l->last_synth_ms >= (uint64_t)n->hb_ms * 3 / 4;
    if (feed_followers)
        l->last_synth_ms = now;
    /* By index: a callback of the library may open a group (the array may move; a group seen twice
     * or skipped once is harmless). */
    for (unsigned i = 0; i < n->n_groups; i++) {
        struct fr_group *g = n->groups[i];
        if (g->q.state == FR_Q_AWAKE)
            continue;
        bool mine = g->q.state == FR_Q_FOLLOWER ? g->q.leader == peer : member_role(g, peer) >= 0;
        if (!mine || (g->q.state == FR_Q_FOLLOWER && !feed_followers))
            continue;
        if (!quiet_still_valid(g)) {
            group_wake(g, "state changed");
            continue;
        }
        if (g->q.state == FR_Q_FOLLOWER)
            synth_heartbeat(g, l);
        else if (member_role(g, peer) != RAFT_SPARE)
            synth_result(g, l);
    }
    q_flush(n);
}

/* ---- quiesce frames ---- */

static bool follower_accepts(struct fr_group *g, uint64_t from, const struct fr_q_entry *e)
{
    struct raft *r = &g->raft;
    return g->node->quiesce && g->state == FR_GROUP_STARTED && g->recv_cb != NULL &&
           (g->q.state == FR_Q_AWAKE || (g->q.state == FR_Q_FOLLOWER && g->q.leader == from)) &&
           raft_state(r) == RAFT_FOLLOWER && raft_current_term(r) == e->term && leader_of(g) == from &&
           raft_last_index(r) == e->last && raft_commit_index(r) == e->commit && g->q.seen_by == from &&
           g->q.seen_msg_term == e->term && g->q.seen_index == e->last && g->q.seen_term > 0;
}

void fr_q_on_quiesce(struct fr_link *l, const uint8_t *payload, size_t len)
{
    struct fr_node *n = l->node;
    enum fr_quiesce_op op;
    unsigned count;
    char err[128];
    if (fr_wire_check_quiesce(payload, len, &op, &count, err, sizeof(err)) != FR_OK) {
        ferry_conn_close(l->conn, "malformed quiesce frame");
        return;
    }
    uint64_t from = l->peer->id;
    for (unsigned i = 0; i < count; i++) {
        struct fr_q_entry e;
        fr_wire_get_quiesce_entry(payload, op, i, &e);
        struct fr_group *g = fr_node_find_group(n, e.group_id);
        if (op == FR_QOP_QUIET) {
            if (g != NULL && follower_accepts(g, from, &e)) {
                q_set(g, FR_Q_FOLLOWER);
                g->q.leader = from;
                g->q.term = e.term;
                g->q.last = e.last;
                g->q.commit = e.commit;
                q_log(g, "quiet (leader %llu, term %llu, index %llu)", (unsigned long long)from,
                      (unsigned long long)e.term, (unsigned long long)e.last);
            } else {
                struct fr_q_entry w = {.group_id = e.group_id};
                q_queue(n, from, FR_QOP_WAKE, &w); /* refused: the leader heartbeats again */
            }
        } else if (g != NULL) {
            if (g->q.state == FR_Q_LEADER && member_role(g, from) >= 0) {
                /* Refused (or the follower woke): try again later, backing off. */
                if (g->q.refusals < FR_QUIET_MAX_BACKOFF)
                    g->q.refusals++;
                group_wake(g, "woken by a follower");
            } else if (g->q.state == FR_Q_FOLLOWER && g->q.leader == from) {
                group_wake(g, "woken by the leader");
            }
        }
    }
    q_flush(n);
}

/* ---- hooks on Raft traffic ---- */

void fr_q_before_recv(struct fr_group *g, uint64_t from, const struct raft_message *msg)
{
    struct fr_node *n = g->node;
    struct raft *r = &g->raft;
    if (msg->type == RAFT_APPEND_ENTRIES) {
        /* Follower side: where the sender's log ends, as far as this message tells. */
        const struct raft_append_entries *a = &msg->append_entries;
        if (a->term >= raft_current_term(r)) {
            g->q.seen_by = from;
            g->q.seen_msg_term = a->term;
            g->q.ae_version = (uint8_t)a->version;
            if (a->n_entries == 0) {
                g->q.seen_index = a->prev_log_index;
                g->q.seen_term = a->prev_log_term;
            } else {
                g->q.seen_index = a->prev_log_index + a->n_entries;
                g->q.seen_term = a->entries[a->n_entries - 1].term;
            }
        }
    } else if (msg->type == RAFT_APPEND_ENTRIES_RESULT && raft_state(r) == RAFT_LEADER &&
               msg->append_entries_result.term == raft_current_term(r)) {
        /* Leader side: what this follower acknowledged in this term. */
        const struct raft_append_entries_result *res = &msg->append_entries_result;
        struct fr_q_follower *f = follower(g, from, true);
        if (f != NULL) {
            if (res->last_log_index < f->acked) {
                /* Its log is shorter than what it acknowledged in this term: it lost it. Both a
                 * rejection and a success (after the library fell back to probing it from a low
                 * index or a snapshot below the old match index) count. */
                f->stuck++;
                q_log(g, "follower %llu answers (rejected %llu) with last index %llu below the %llu it acknowledged (%u)",
                      (unsigned long long)from, (unsigned long long)res->rejected,
                      (unsigned long long)res->last_log_index, (unsigned long long)f->acked, f->stuck);
            } else if (res->rejected == 0) {
                f->acked = res->last_log_index;
                f->last_ok_ms = uv_now(n->loop);
                f->stuck = 0;
                f->features = res->features;
                f->capacity = res->capacity;
                f->version = (uint8_t)res->version;
            } else {
                f->stuck = 0;
            }
        }
    }
    if (g->q.state == FR_Q_AWAKE)
        return;
    /* A late answer to a heartbeat sent before the group went quiet changes nothing. */
    if (g->q.state == FR_Q_LEADER && msg->type == RAFT_APPEND_ENTRIES_RESULT &&
        msg->append_entries_result.rejected == 0 && msg->append_entries_result.term == g->q.term &&
        msg->append_entries_result.last_log_index == g->q.last)
        return;
    group_wake(g, "message received");
    q_flush(n);
}

static void on_stuck_transfer(void *arg, int status)
{
    (void)arg;
    (void)status; /* the next rejections retry after an election timeout if it did not work */
}

void fr_q_after_recv(struct fr_group *g, uint64_t from, const struct raft_message *msg)
{
    struct fr_node *n = g->node;
    struct raft *r = &g->raft;
    if (msg->type != RAFT_APPEND_ENTRIES_RESULT || g->state != FR_GROUP_STARTED || raft_state(r) != RAFT_LEADER)
        return;
    struct fr_q_follower *f = follower(g, from, false);
    if (f == NULL || f->stuck < FR_STUCK_REJECTS || raft_transferee(r) != 0)
        return;
    uint64_t now = uv_now(n->loop);
    if (g->q.last_stuck_transfer_ms != 0 && now - g->q.last_stuck_transfer_ms < r->election_timeout)
        return;
    /* The most up-to-date other voter that is reachable now. */
    uint64_t target = 0, best = 0;
    const struct raft_configuration *c = &r->configuration;
    for (unsigned i = 0; i < c->n; i++) {
        uint64_t id = c->servers[i].id;
        raft_index mi = 0;
        if (id == n->id || id == from || c->servers[i].role != RAFT_VOTER)
            continue;
        struct fr_link *l = fr_node_live_link(n, id);
        if (l == NULL || l->silent || raft_match_index(r, id, &mi) != 0)
            continue;
        if (target == 0 || mi > best) {
            target = id;
            best = mi;
        }
    }
    g->q.last_stuck_transfer_ms = now;
    if (target == 0) {
        q_log(g, "follower %llu lost its log; no other voter to hand leadership to", (unsigned long long)from);
        return;
    }
    char err[256];
    if (fr_group_transfer(g, target, on_stuck_transfer, NULL, err, sizeof(err)) != FR_OK) {
        q_log(g, "transfer for follower %llu: %s", (unsigned long long)from, err);
        return;
    }
    f->stuck = 0;
    n->stats.stuck_transfers++;
    q_log(g, "follower %llu lost its log: leadership to %llu (a new leader refills it)", (unsigned long long)from,
          (unsigned long long)target);
}

bool fr_q_filter_send(struct fr_group *g, const struct raft_message *msg)
{
    struct fr_node *n = g->node;
    if (fr_fo_filter_send(g, msg))
        return true; /* failover.c: a standing-by candidate's pre-vote request */
    if (n->synth == g && msg->type == RAFT_APPEND_ENTRIES_RESULT) {
        /* The answer to a synthesized heartbeat: the leader does not expect it. */
        if (msg->append_entries_result.rejected != 0)
            n->synth_rejected = true;
        return true;
    }
    switch (g->q.state) {
    case FR_Q_AWAKE:
        return false;
    case FR_Q_LEADER: {
        const struct raft_append_entries *a = &msg->append_entries;
        if (msg->type == RAFT_APPEND_ENTRIES && a->n_entries == 0 && a->term == g->q.term &&
            a->prev_log_index == g->q.last && a->leader_commit == g->q.commit) {
            n->stats.heartbeats_suppressed++;
            return true;
        }
        break;
    }
    case FR_Q_FOLLOWER:
        break;
    }
    group_wake(g, "message sent");
    q_flush(n);
    return false;
}

void fr_q_group_gone(struct fr_group *g)
{
    group_wake(g, "group closed");
    q_flush(g->node);
    free(g->q.fol);
    g->q.fol = NULL;
    g->q.n_fol = g->q.cap_fol = 0;
}

/* ---- links and the node tick ---- */

void fr_q_peer_changed(struct fr_node *n, uint64_t peer_id)
{
    for (unsigned i = 0; i < n->n_groups; i++) {
        struct fr_group *g = n->groups[i];
        if (member_role(g, peer_id) < 0)
            continue;
        g->q.stable_ticks = 0;
        if (g->q.state == FR_Q_LEADER || (g->q.state == FR_Q_FOLLOWER && g->q.leader == peer_id))
            group_wake(g, "link to a member changed");
    }
    q_flush(n);
}

/* May leader group g go quiet now? (Its indexes have been stable for FR_QUIET_AFTER_TICKS.) */
static bool leader_may_quiesce(struct fr_group *g, uint64_t now)
{
    struct fr_node *n = g->node;
    struct raft *r = &g->raft;
    uint64_t last = g->q.last;
    if (g->q.commit != last || raft_last_applied(r) != last || raft_transferee(r) != 0 ||
        r->leader_state.promotee_id != 0 || r->election_timeout < 2 * n->hb_ms)
        return false;
    const struct raft_configuration *c = &r->configuration;
    for (unsigned i = 0; i < c->n; i++) {
        uint64_t id = c->servers[i].id;
        if (id == n->id || c->servers[i].role == RAFT_SPARE)
            continue; /* spares get no heartbeats anyway */
        struct fr_link *l = fr_node_live_link(n, id);
        if (l == NULL || l->silent || now - l->last_recv_ms > (uint64_t)n->hb_ms)
            return false;
        raft_index mi = 0;
        if (raft_match_index(r, id, &mi) != 0 || mi != last)
            return false;
        struct fr_q_follower *f = follower(g, id, false);
        if (f == NULL || f->acked != last || now - f->last_ok_ms > 2 * (uint64_t)r->heartbeat_timeout + n->ping_ms)
            return false;
    }
    return true;
}

static void tick_group(struct fr_group *g, uint64_t now)
{
    struct fr_node *n = g->node;
    struct raft *r = &g->raft;
    if (g->q.state != FR_Q_AWAKE) {
        if (!quiet_still_valid(g))
            group_wake(g, "state changed");
        else if (g->q.state == FR_Q_LEADER && ++g->q.quiet_ticks > 2 * FR_QUIET_AFTER_TICKS)
            g->q.refusals = 0; /* its followers accepted */
        return;
    }
    if (g->state != FR_GROUP_STARTED || g->recv_cb == NULL || !n->quiesce || raft_state(r) != RAFT_LEADER) {
        g->q.stable_ticks = 0;
        return;
    }
    uint64_t term = raft_current_term(r), last = raft_last_index(r), commit = raft_commit_index(r);
    if (term != g->q.term || last != g->q.last || commit != g->q.commit) {
        g->q.term = term;
        g->q.last = last;
        g->q.commit = commit;
        g->q.stable_ticks = 0;
        return;
    }
    if (++g->q.stable_ticks < ((unsigned)FR_QUIET_AFTER_TICKS << g->q.refusals) || !leader_may_quiesce(g, now))
        return;
    q_set(g, FR_Q_LEADER);
    g->q.quiet_ticks = 0;
    q_log(g, "quiet (term %llu, index %llu)", (unsigned long long)term, (unsigned long long)last);
    struct fr_q_entry e = {.group_id = g->id, .term = term, .commit = commit, .last = last};
    const struct raft_configuration *c = &r->configuration;
    for (unsigned i = 0; i < c->n; i++)
        if (c->servers[i].id != n->id && c->servers[i].role != RAFT_SPARE)
            q_queue(n, c->servers[i].id, FR_QOP_QUIET, &e);
}

static void on_q_timer(uv_timer_t *t)
{
    struct fr_node *n = t->data;
    uint64_t now = uv_now(n->loop);
    uint8_t ping[4 + FR_PING_LEN];
    fr_wire_put_ping(ping);
    for (unsigned i = 0; i < n->n_peers; i++) {
        struct fr_peer *p = n->peers[i];
        struct fr_link *l = p->link;
        if (l == NULL || !l->ready || !(l->peer_flags & FR_HELLO_F_LIVENESS))
            continue;
        if (!p->muted)
            (void)fr_link_send(l, ping, sizeof(ping));
        if (!l->silent && now - l->last_recv_ms >= n->link_timeout_ms) {
            l->silent = true;
            n->stats.links_silent++;
            if (verbose())
                fprintf(stderr, "raft node %llu: link to %llu is silent (nothing for %llu ms)\n",
                        (unsigned long long)n->id, (unsigned long long)p->id,
                        (unsigned long long)(now - l->last_recv_ms));
            fr_q_peer_changed(n, p->id);
            fr_fo_peer_lost(n, p->id);
        }
    }
    fr_fo_tick(n, now);
    for (unsigned i = 0; i < n->n_groups; i++)
        tick_group(n->groups[i], now);
    q_flush(n);
}

void fr_node_set_quiescence(struct fr_node *n, int on)
{
    n->quiesce = on != 0;
    if (n->quiesce)
        return;
    for (unsigned i = 0; i < n->n_groups; i++)
        group_wake(n->groups[i], "quiescence turned off");
    q_flush(n);
}

void fr_q_start(struct fr_node *n)
{
    uv_timer_init(n->loop, &n->q_timer);
    n->q_timer.data = n;
    uv_timer_start(&n->q_timer, on_q_timer, n->ping_ms, n->ping_ms);
    uv_unref((uv_handle_t *)&n->q_timer);
}
