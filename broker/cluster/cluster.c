/* cluster.c: the broker as a cluster member: start and stop, graceful leadership hand-off, metadata
 * queries answered from the replicated state, and proposals to a group. The controller state machine is in
 * controller.c, the partition groups in partition_group.c (docs/replication.md). */
#include <assert.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cluster_int.h"
#include "ferry_errors.h"
#include "logging.h"

/* ================================ life cycle ================================ */

static void rebalance_tick(struct ferryd_cluster *c);

/* Every TICK_MS: catch-ups to start, the controller leader's registration duties, the balancer. */
static void on_tick(uv_timer_t *h)
{
    struct ferryd_cluster *c = h->data;
    cl_catchup_tick(c);
    cl_ctl_tick(c);
    rebalance_tick(c);
}

static void free_tls(struct ferryd_cluster *c)
{
    if (c->tls_server != NULL)
        ferry_tls_ctx_free(c->tls_server);
    if (c->tls_client != NULL)
        ferry_tls_ctx_free(c->tls_client);
    if (c->tls_fetch != NULL)
        ferry_tls_ctx_free(c->tls_fetch);
    c->tls_server = c->tls_client = c->tls_fetch = NULL;
}

static void on_start_failed_stopped(void *arg)
{
    struct ferryd_cluster *c = arg;
    cl_mb_stop(c);
    free_tls(c);
    free(c);
}

int ferryd_cluster_start(struct ferryd *b, struct ferryd_cluster **out, char *errmsg, size_t errmsg_len)
{
    char host[256], dir[4200], why[512];
    int port;
    struct ferryd_cluster *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        snprintf(errmsg, errmsg_len, "cluster: out of memory");
        return -1;
    }
    c->b = b;
    c->self = b->cfg->node_id;
    c->next_gid = FIRST_PARTITION_GROUP;
    c->nmembers = ferryd_parse_members(b->cfg->cluster_members, c->members, FERRYD_MAX_MEMBERS, why, sizeof(why));
    if (c->nmembers <= 0 || ferryd_split_hostport(b->cfg->peer_listen, host, sizeof(host), &port) != 0) {
        snprintf(errmsg, errmsg_len, "cluster.members / peer.listen: %s", c->nmembers <= 0 ? why : "bad address");
        goto err_after_alloc;
    }
    if (b->cfg->peer_security_protocol == FERRYD_SECURITY_TLS) {
        struct ferry_tls_config sc = {.ca_file = b->cfg->tls_ca_file,
                                      .cert_file = b->cfg->peer_tls_cert_file,
                                      .key_file = b->cfg->peer_tls_key_file,
                                      .require_client_cert = 1,
                                      .min_version_tls13 = 1};
        struct ferry_tls_config cc = {.ca_file = b->cfg->tls_ca_file,
                                      .cert_file = b->cfg->peer_tls_client_cert_file,
                                      .key_file = b->cfg->peer_tls_client_key_file,
                                      .min_version_tls13 = 1};
        if ((c->tls_server = ferry_tls_server_ctx_new(&sc, why, sizeof(why))) == NULL ||
            (c->tls_client = ferry_tls_client_ctx_new(&cc, why, sizeof(why))) == NULL) {
            snprintf(errmsg, errmsg_len, "peer TLS: %s", why);
            goto err_after_tls;
        }
    } else {
        LOG_WARN("peer.security.protocol=plaintext: Raft traffic between brokers is neither encrypted nor "
                 "authenticated");
    }
    if (b->cfg->security_protocol == FERRYD_SECURITY_TLS) {
        /* Catch-up Fetches go to the leader's client listener: verified against tls.ca.file, with
         * the peer client certificate (accepted when that listener requires mutual TLS). */
        int has_cert = b->cfg->peer_tls_client_cert_file != NULL && b->cfg->peer_tls_client_cert_file[0] != '\0';
        struct ferry_tls_config fc = {.ca_file = b->cfg->tls_ca_file,
                                      .cert_file = has_cert ? b->cfg->peer_tls_client_cert_file : NULL,
                                      .key_file = has_cert ? b->cfg->peer_tls_client_key_file : NULL,
                                      .min_version_tls13 = b->cfg->tls_min_version == FERRYD_TLS_13};
        if ((c->tls_fetch = ferry_tls_client_ctx_new(&fc, why, sizeof(why))) == NULL)
            LOG_WARN("catch-up TLS client (tls.ca.file): %s; a replica that lacks segment data cannot catch up",
                     why);
    }
    snprintf(dir, sizeof(dir), "%s/raft", b->cfg->data_dir);
    struct fr_node_config nc = {
        .tls_server = c->tls_server,
        .tls_client = c->tls_client,
        .loop = b->loop,
        .node_id = cl_rid(c->self),
        .cluster_id = (uint64_t)b->cfg->cluster_id,
        .listen_host = host,
        .listen_port = port,
        .data_dir = dir,
        .rpc_handler = cl_mb_on_request, /* membership.c: registration, producer id blocks */
        .rpc_arg = c,
        /* Raft timing (raft.*): the node's pings and silence match every group's. */
        .disable_quiescence = !b->cfg->raft_quiescence_enable,
        .heartbeat_ms = (unsigned)b->cfg->raft_heartbeat_interval_ms,
        .link_timeout_ms = (unsigned)b->cfg->raft_election_timeout_ms,
    };
    if (b->cfg->raft_heartbeat_interval_ms >= b->cfg->raft_election_timeout_ms) {
        snprintf(errmsg, errmsg_len,
                 "raft.heartbeat.interval.ms (%" PRId64 ") must be below raft.election.timeout.ms (%" PRId64 ")",
                 b->cfg->raft_heartbeat_interval_ms, b->cfg->raft_election_timeout_ms);
        goto err_after_tls;
    }
    if (fr_node_start(&nc, &c->node, why, sizeof(why)) != FR_OK) {
        snprintf(errmsg, errmsg_len, "peer node: %s", why);
        goto err_after_tls;
    }
    if (cl_mb_init(c, errmsg, errmsg_len) != 0)
        goto err_after_node;
    uint64_t ids[FERRYD_MAX_MEMBERS];
    for (int i = 0; i < c->nmembers; i++) {
        ids[i] = cl_rid(c->members[i].id);
        if (c->members[i].id != c->self &&
            fr_node_set_peer(c->node, ids[i], c->members[i].host, c->members[i].port, why, sizeof(why)) != FR_OK) {
            snprintf(errmsg, errmsg_len, "peer %" PRId64 ": %s", c->members[i].id, why);
            goto err_after_node;
        }
    }
    struct fr_group_config gc = {
        .group_id = CONTROLLER_GROUP,
        .name = "controller",
        .fsm = {.data = c, .apply = cl_ctl_apply, .snapshot = cl_ctl_snapshot, .restore = cl_ctl_restore},
        .election_timeout_ms = (unsigned)b->cfg->raft_election_timeout_ms,
        .heartbeat_timeout_ms = (unsigned)b->cfg->raft_heartbeat_interval_ms,
    };
    if (fr_group_open(c->node, &gc, &c->ctl, why, sizeof(why)) != FR_OK) {
        snprintf(errmsg, errmsg_len, "controller group: %s", why);
        goto err_after_node;
    }
    /* A joiner (node.id not in cluster.members) starts the controller group empty: the leader adds
     * it once it registered (membership.c). */
    int rc = cl_mb_is_joiner(c) ? FR_OK : fr_group_bootstrap(c->ctl, ids, (unsigned)c->nmembers, why, sizeof(why));
    if ((rc != FR_OK && rc != FR_ERR_EXISTS) || fr_group_start(c->ctl, why, sizeof(why)) != FR_OK) {
        snprintf(errmsg, errmsg_len, "controller group: %s", why);
        goto err_after_node;
    }
    uv_timer_init(b->loop, &c->tick);
    c->tick.data = c;
    uv_timer_init(b->loop, &c->handoff_timer);
    c->handoff_timer.data = c;
    c->next_rebalance_ms = uv_now(b->loop) + (uint64_t)b->cfg->leader_rebalance_interval_ms;
    uv_timer_start(&c->tick, on_tick, TICK_MS, TICK_MS);
    LOG_INFO("cluster %" PRId64 ": node %" PRId64 " %s %d initial member(s), peer port %d", b->cfg->cluster_id, c->self,
             cl_mb_is_joiner(c) ? "joining" : "one of", c->nmembers, fr_node_port(c->node));
    *out = c;
    return 0;

err_after_node:
    /* The node frees itself (and the controller group) in its stop callback, then c. */
    fr_node_stop(c->node, on_start_failed_stopped, c);
    return -1;
err_after_tls:
    free_tls(c);
err_after_alloc:
    free(c);
    return -1;
}

int ferryd_cluster_peer_port(const struct ferryd_cluster *c)
{
    return fr_node_port(c->node);
}

static void on_node_stopped(void *arg)
{
    struct ferryd_cluster *c = arg;
    void (*cb)(void *) = c->stop_cb;
    void *cb_arg = c->stop_arg;
    for (unsigned i = 0; i < c->ntopics; i++) {
        struct cl_topic *t = c->topics[i];
        for (int32_t k = 0; k < t->np; k++) {
            if (t->parts[k] == NULL)
                continue;
            if (t->parts[k]->p != NULL)
                t->parts[k]->p->replica = NULL;
            cl_part_free(t->parts[k]);
        }
        cl_topic_free(t);
    }
    free(c->topics);
    free_tls(c); /* the node that borrowed them is gone */
    free(c);
    cb(cb_arg);
}

static void on_handoff_timer_closed(uv_handle_t *h)
{
    struct ferryd_cluster *c = h->data;
    fr_node_stop(c->node, on_node_stopped, c);
}

static void on_tick_closed(uv_handle_t *h)
{
    struct ferryd_cluster *c = h->data;
    uv_timer_stop(&c->handoff_timer);
    uv_close((uv_handle_t *)&c->handoff_timer, on_handoff_timer_closed);
}

void ferryd_cluster_stop(struct ferryd_cluster *c, void (*cb)(void *arg), void *arg)
{
    c->stop_cb = cb;
    c->stop_arg = arg;
    c->handoff_cb = NULL; /* a hand-off still running is abandoned */
    cl_mb_stop(c);        /* producer id waiters fail now */
    for (unsigned i = 0; i < c->ntopics; i++)
        for (int32_t k = 0; k < c->topics[i]->np; k++)
            if (c->topics[i]->parts[k] != NULL)
                cl_part_cancel_fetch(c->topics[i]->parts[k]); /* its connection closes while the loop runs */
    uv_timer_stop(&c->tick);
    uv_close((uv_handle_t *)&c->tick, on_tick_closed);
}

static void handoff_done(struct ferryd_cluster *c)
{
    void (*cb)(void *) = c->handoff_cb;
    c->handoff_cb = NULL;
    uv_timer_stop(&c->handoff_timer);
    if (cb != NULL)
        cb(c->handoff_arg);
}

static void on_handed_off(void *arg, int status)
{
    struct ferryd_cluster *c = arg;
    (void)status; /* FR_ERR_BUSY: still leader after an election timeout; the stop goes on anyway */
    assert(c->handoffs > 0);
    if (--c->handoffs == 0 && c->handoff_cb != NULL)
        handoff_done(c);
}

static void on_handoff_timeout(uv_timer_t *h)
{
    struct ferryd_cluster *c = h->data;
    LOG_WARN("cluster: %u leadership transfer(s) still running at shutdown; stopping anyway", c->handoffs);
    handoff_done(c);
}

static void handoff_group(struct ferryd_cluster *c, struct fr_group *g)
{
    char msg[256];
    if (g == NULL || !fr_group_is_leader(g))
        return;
    if (fr_group_transfer(g, 0, on_handed_off, c, msg, sizeof(msg)) == FR_OK)
        c->handoffs++;
    else
        LOG_WARN("cluster: %s: leadership transfer refused: %s", fr_group_name(g), msg);
}

void ferryd_cluster_handoff(struct ferryd_cluster *c, void (*cb)(void *arg), void *arg)
{
    assert(c->handoff_cb == NULL);
    c->handoff_cb = cb;
    c->handoff_arg = arg;
    uv_timer_stop(&c->tick); /* no more registrations or controller hand-offs */
    for (unsigned i = 0; i < c->ntopics; i++)
        for (int32_t k = 0; k < c->topics[i]->np; k++)
            if (c->topics[i]->parts[k] != NULL)
                handoff_group(c, c->topics[i]->parts[k]->g);
    handoff_group(c, c->ctl);
    if (c->handoffs == 0) {
        handoff_done(c);
        return;
    }
    LOG_INFO("cluster: transferring %u leadership(s) before stopping", c->handoffs);
    uv_timer_start(&c->handoff_timer, on_handoff_timeout, HANDOFF_MAX_MS, 0);
}

/* ================================ preferred-leader balancer ================================ */

/*
 * The first replica of a partition is its preferred leader (placement rotates it across brokers).
 * Every leader.rebalance.interval.ms a broker looks at the partitions it leads whose preferred
 * replica is another broker, a voter of the group, and hands each back with fr_group_transfer, at
 * most REBALANCE_MAX_TRANSFERS at a time (the rest on the following ticks).
 *
 * Live and caught up: ferry_raft.h does not expose per-follower progress, so a pass runs only while
 * this broker's peer connections to every other member are up (a dead broker's connection is
 * closed), and Raft's transfer itself first brings the target's log up to date (it gives up after
 * an election timeout: FR_ERR_BUSY). A replica still refilling its segments (catch-up) hands a
 * leadership it gets straight back; both cases back the partition off: interval << failures.
 */
static void rebalance_backoff(struct ferryd_cluster *c, struct cl_part *cp, uint64_t now)
{
    if (cp->rebalance_failures < REBALANCE_MAX_BACKOFF_SHIFT)
        cp->rebalance_failures++;
    cp->rebalance_after_ms = now + ((uint64_t)c->b->cfg->leader_rebalance_interval_ms << cp->rebalance_failures);
}

static void on_rebalanced(void *arg, int status)
{
    struct cl_part *cp = arg;
    struct ferryd_cluster *c = cp->c;
    uint64_t now = uv_now(c->b->loop);
    assert(c->rebalances > 0 && cp->rebalancing);
    c->rebalances--;
    cp->rebalancing = 0;
    if (status == FR_OK) {
        cp->rebalanced_ms = now;
        LOG_INFO("partition %s: leadership handed back to its preferred replica", cp->label);
    } else if (status != FR_ERR_SHUTDOWN) {
        rebalance_backoff(c, cp, now);
        LOG_INFO("partition %s: leadership transfer to the preferred replica failed (%s); next try in %" PRIu64
                 " ms",
                 cp->label, fr_strerror(status), cp->rebalance_after_ms - now);
    }
}

/* Every broker (initial members and registered joiners) has a live link to this one. */
static int all_peers_up(const struct ferryd_cluster *c)
{
    struct fr_node_stats st;
    fr_node_stats(c->node, &st);
    unsigned brokers = c->nbrokers > (unsigned)c->nmembers ? c->nbrokers : (unsigned)c->nmembers;
    return st.peers_up + 1 >= brokers;
}

static int is_voter(const struct cl_part *cp, int64_t broker)
{
    uint64_t ids[16];
    unsigned voters = 0;
    unsigned n = fr_group_members(cp->g, ids, 16, &voters);
    if (voters != n) /* a membership change is under way: leave the group alone */
        return 0;
    for (unsigned i = 0; i < n && i < 16; i++)
        if (ids[i] == cl_rid(broker))
            return 1;
    return 0;
}

/* Considers cp (led here) for a transfer to preferred. Returns 1 when a transfer started. */
static int rebalance_one(struct ferryd_cluster *c, struct cl_part *cp, int64_t preferred, uint64_t now)
{
    char msg[256];
    uint64_t interval = (uint64_t)c->b->cfg->leader_rebalance_interval_ms;
    if (cp->rebalanced_ms != 0) {
        /* Led here again although a transfer succeeded: recently = the preferred replica gave it back. */
        if (now - cp->rebalanced_ms < 2 * interval)
            rebalance_backoff(c, cp, now);
        else
            cp->rebalance_failures = 0;
        cp->rebalanced_ms = 0;
    }
    if (now < cp->rebalance_after_ms || !is_voter(cp, preferred))
        return 0;
    int rc = fr_group_transfer(cp->g, cl_rid(preferred), on_rebalanced, cp, msg, sizeof(msg));
    if (rc != FR_OK) {
        rebalance_backoff(c, cp, now);
        LOG_DEBUG("partition %s: transfer to broker %" PRId64 " refused: %s", cp->label, preferred, msg);
        return 0;
    }
    LOG_INFO("partition %s: handing leadership to its preferred replica, broker %" PRId64, cp->label, preferred);
    cp->rebalancing = 1;
    c->rebalances++;
    return 1;
}

static void rebalance_tick(struct ferryd_cluster *c)
{
    const struct ferryd_config *cfg = c->b->cfg;
    uint64_t now = uv_now(c->b->loop);
    if (!cfg->leader_rebalance_enable)
        return;
    if (!c->rebalance_pass) {
        if (now < c->next_rebalance_ms)
            return;
        c->next_rebalance_ms = now + (uint64_t)cfg->leader_rebalance_interval_ms;
        c->rebalance_pass = 1;
    }
    if (!all_peers_up(c)) {
        c->rebalance_pass = 0; /* a member is down (or its link is): wait for the next interval */
        return;
    }
    for (unsigned i = 0; i < c->ntopics; i++) {
        struct cl_topic *t = c->topics[i];
        for (int32_t k = 0; k < t->np; k++) {
            struct cl_part *cp = t->parts[k];
            int64_t preferred = t->replicas[(size_t)k * (size_t)t->rf];
            if (cp == NULL || cp->rebalancing || cp->catching_up || preferred == c->self || !fr_group_is_leader(cp->g))
                continue;
            if (c->rebalances >= REBALANCE_MAX_TRANSFERS)
                return; /* the pass goes on at the next tick */
            rebalance_one(c, cp, preferred, now);
        }
    }
    c->rebalance_pass = 0;
}

/* ================================ queries ================================ */

int64_t ferryd_cluster_controller_id(const struct ferryd_cluster *c)
{
    uint64_t l = fr_group_leader(c->ctl, NULL);
    return l == 0 ? -1 : (int64_t)l - 1;
}

int ferryd_cluster_is_controller(const struct ferryd_cluster *c)
{
    return fr_group_is_leader(c->ctl);
}

unsigned ferryd_cluster_broker_count(const struct ferryd_cluster *c)
{
    return c->nbrokers;
}

void ferryd_cluster_broker_at(const struct ferryd_cluster *c, unsigned i, int64_t *id, const char **host, int *port)
{
    assert(i < c->nbrokers);
    *id = c->brokers[i].id;
    *host = c->brokers[i].host;
    *port = c->brokers[i].port;
}

int ferryd_cluster_partition(const struct ferryd_cluster *c, const char *topic, size_t len, int32_t partition,
                             int64_t *leader, const int64_t **replicas, int *rf)
{
    const struct cl_topic *t = cl_find_topic(c, topic, len);
    if (t == NULL || partition < 0 || partition >= t->np)
        return -1;
    *replicas = &t->replicas[partition * t->rf];
    *rf = t->rf;
    *leader = (*replicas)[0];
    if (t->parts[partition] != NULL) {
        uint64_t l = fr_group_leader(t->parts[partition]->g, NULL);
        *leader = l == 0 ? -1 : (int64_t)l - 1;
    }
    return 0;
}

int ferryd_cluster_check_leader(const struct ferryd_cluster *c, struct ferryd_partition *p, int64_t *leader_id,
                                char *msg, size_t msg_len)
{
    struct cl_part *cp = p->replica;
    *leader_id = -1;
    if (c == NULL)
        return 0;
    if (cp == NULL) {
        snprintf(msg, msg_len, "broker %" PRId64 " does not replicate %s (yet); leader_id=-1", c->self, p->label);
        return FERRY_ERR_NOT_LEADER;
    }
    if (cp->catching_up) {
        snprintf(msg, msg_len, "broker %" PRId64 " is catching up on %s (its segments lack the leader's data); "
                 "leader_id=-1", cp->c->self, cp->label);
        return FERRY_ERR_NOT_LEADER;
    }
    if (fr_group_is_leader(cp->g)) {
        if (fr_group_applied_index(cp->g) >= cp->ready_index)
            return 0;
        /* A new leader's segments may still lack entries committed in earlier terms (applied behind
         * the commit index): serving now would answer fetches at the old leader's high watermark
         * with OFFSET_OUT_OF_RANGE. Ready once everything its log held at the election is applied. */
        *leader_id = c->self;
        snprintf(msg, msg_len, "broker %" PRId64 " just became the leader of %s and is applying its log; retry; "
                 "leader_id=%" PRId64, c->self, cp->label, c->self);
        return FERRY_ERR_NOT_LEADER;
    }
    uint64_t l = fr_group_leader(cp->g, NULL);
    *leader_id = l == 0 ? -1 : (int64_t)l - 1;
    snprintf(msg, msg_len, "broker %" PRId64 " is not the leader of %s; leader_id=%" PRId64, cp->c->self, cp->label,
             *leader_id);
    return FERRY_ERR_NOT_LEADER;
}

int ferryd_cluster_check_absent(const struct ferryd_cluster *c, const char *topic, size_t len, int64_t partition,
                                int64_t *leader_id, char *msg, size_t msg_len)
{
    const int64_t *replicas;
    int rf;
    *leader_id = -1;
    if (c != NULL && cl_find_broker(c, c->self) == NULL) {
        /* membership.c: this broker's copy of the controller state is not loaded yet (replay after a
         * start, or a joiner not yet in the controller group): retriable, not "unknown". */
        snprintf(msg, msg_len, "broker %" PRId64 " has not loaded the cluster metadata yet; leader_id=-1", c->self);
        return FERRY_ERR_NOT_LEADER;
    }
    if (c == NULL || partition < 0 || partition > INT32_MAX ||
        ferryd_cluster_partition(c, topic, len, (int32_t)partition, leader_id, &replicas, &rf) != 0) {
        snprintf(msg, msg_len, "no such topic or partition");
        return FERRY_ERR_UNKNOWN_TOPIC_OR_PARTITION;
    }
    snprintf(msg, msg_len, "broker %" PRId64 " is not a replica of %.*s/%" PRId64 "; leader_id=%" PRId64, c->self,
             (int)len, topic, partition, *leader_id);
    return FERRY_ERR_NOT_LEADER;
}

/* ================================ proposals ================================ */

struct pending {
    ferryd_cluster_produce_cb produce_cb;
    ferryd_cluster_done_cb done_cb;
    void *arg;
};

static void on_proposed(void *arg, int status, uint64_t index, void *result)
{
    struct pending *pd = arg;
    char msg[128];
    int err = 0;
    int64_t v = -1;
    (void)index;
    if (status != FR_OK) {
        snprintf(msg, sizeof(msg), "not committed: %s (leadership changed; retry)", fr_strerror(status));
        err = pd->done_cb != NULL ? FERRY_ERR_NOT_CONTROLLER : FERRY_ERR_NOT_LEADER;
    } else if (result == NULL) {
        snprintf(msg, sizeof(msg), "the batch was refused when applied");
        err = FERRY_ERR_CORRUPT_BATCH;
    } else {
        v = cl_dec(result);
        msg[0] = '\0';
        if (pd->produce_cb != NULL && v < 0) { /* a partition's apply refused it with error -v */
            err = (int)-v;
            snprintf(msg, sizeof(msg), "refused when applied (error %d; the leader's log says why)", err);
            v = -1;
        }
    }
    if (pd->produce_cb != NULL) {
        pd->produce_cb(pd->arg, err, v, msg);
    } else {
        if (err == 0 && v != 0) {
            err = (int)v;
            snprintf(msg, sizeof(msg), "%s", err == FERRY_ERR_TOPIC_ALREADY_EXISTS ? "topic already exists"
                                             : err == FERRY_ERR_UNKNOWN_TOPIC_OR_PARTITION ? "no such topic"
                                                                                           : "refused by the controller");
        }
        pd->done_cb(pd->arg, err, msg);
    }
    free(pd);
}

int cl_propose(struct fr_group *g, const void *buf, size_t len, ferryd_cluster_produce_cb produce_cb,
               ferryd_cluster_done_cb done_cb, void *arg, int not_leader, char *msg, size_t msg_len)
{
    char why[256];
    struct pending *pd = calloc(1, sizeof(*pd));
    if (pd == NULL) {
        snprintf(msg, msg_len, "out of memory");
        return FERRY_ERR_UNKNOWN;
    }
    pd->produce_cb = produce_cb;
    pd->done_cb = done_cb;
    pd->arg = arg;
    int rc = fr_group_propose(g, buf, len, on_proposed, pd, why, sizeof(why));
    if (rc == FR_OK)
        return 0;
    free(pd);
    snprintf(msg, msg_len, "%s", why);
    return rc == FR_ERR_NOT_LEADER || rc == FR_ERR_LEADERSHIP_LOST ? not_leader : FERRY_ERR_UNKNOWN;
}

int ferryd_cluster_produce(struct ferryd_partition *p, const uint8_t *batch, size_t len, ferryd_cluster_produce_cb cb,
                           void *arg, char *msg, size_t msg_len)
{
    struct cl_part *cp = p->replica;
    assert(cp != NULL);
    return cl_propose(cp->g, batch, len, cb, NULL, arg, FERRY_ERR_NOT_LEADER, msg, msg_len);
}

void ferryd_cluster_set_role_observer(struct ferryd_cluster *c, ferryd_cluster_role_cb cb, void *arg)
{
    c->role_cb = cb;
    c->role_arg = arg;
}

struct barrier_req {
    ferryd_cluster_barrier_cb cb;
    void *arg;
};

static void on_barrier(void *arg, int status)
{
    struct barrier_req *r = arg;
    r->cb(r->arg, status == FR_OK ? 0 : FERRY_ERR_NOT_LEADER);
    free(r);
}

int ferryd_cluster_barrier(struct ferryd_partition *p, ferryd_cluster_barrier_cb cb, void *arg, char *msg,
                           size_t msg_len)
{
    struct cl_part *cp = p->replica;
    if (cp == NULL || !fr_group_is_leader(cp->g)) {
        snprintf(msg, msg_len, "not the leader of %s", p->label);
        return FERRY_ERR_NOT_LEADER;
    }
    struct barrier_req *r = malloc(sizeof(*r));
    if (r == NULL) {
        snprintf(msg, msg_len, "out of memory");
        return FERRY_ERR_UNKNOWN;
    }
    r->cb = cb;
    r->arg = arg;
    char why[256];
    int rc = fr_group_barrier(cp->g, on_barrier, r, why, sizeof(why));
    if (rc != FR_OK) {
        free(r);
        snprintf(msg, msg_len, "%s", why);
        return rc == FR_ERR_NOT_LEADER || rc == FR_ERR_LEADERSHIP_LOST ? FERRY_ERR_NOT_LEADER : FERRY_ERR_UNKNOWN;
    }
    return 0;
}

int ferryd_cluster_loaded(const struct ferryd_cluster *c)
{
    return cl_find_broker(c, c->self) != NULL;
}
