/* membership.c: brokers joining a running cluster, registration by request to the controller leader, and
 * producer id blocks from the controller (docs/replication.md, "Joining and registration"). */
#include <assert.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cluster_int.h"
#include "ferry_errors.h"
#include "logging.h"
#include "proto/codec.h"

/*
 * Requests (fr_node_request bodies, msgpack maps) and their answers:
 *   {"op": "register", "id", "host", "port", "peer_host", "peer_port"}  -> {"err"[, "leader"]}
 *   {"op": "pids", "count"}                                             -> {"err"[, "leader"], "base"}
 * Only the controller leader serves them; another broker answers err = NOT_CONTROLLER and
 * "leader" = the controller leader's broker id as it knows it (-1 unknown): the requester asks that
 * one next (a redirect, not a forward: a broker that is not yet a peer of the leader's can still be
 * reached back). A register body is validated and proposed as is (it is also the controller
 * command); a broker may register only itself (the id must be the sender's node).
 */

#define REG_RETRY_MS 500       /* between registration attempts while not registered */
#define REG_SETTLE_MS 1500     /* after an accepted registration, before asking again */
#define RPC_TIMEOUT_MS 2000    /* one request to the controller */
#define PIDS_WAIT_MS 10000     /* an InitProducerId waits this long for a block at most */
#define PIDS_RETRY_MS 300      /* between block requests after a failure */
/* Voters the controller group gets from joiners; see docs/replication.md for brokers beyond it. */
#define CTL_TARGET_VOTERS 5
/* First id of the controller's counter: ids below it may have been handed out by the per-broker
 * allocator of earlier versions (local x 64 + slot) and may still sit in producer states. */
#define PID_FIRST ((int64_t)1 << 48)

struct pid_waiter {
    struct pid_waiter *next;
    ferryd_cluster_pid_cb cb;
    void *arg;
    uint64_t since_ms;
};

struct cl_membership {
    int joiner;
    char peer_host[256]; /* advertised peer address: peer.listen's host and the bound port */
    int peer_port;
    /* registration */
    int reg_in_flight;
    uint64_t next_reg_ms;
    int64_t hint; /* controller leader named by the last redirect, -1 = none */
    unsigned rr;  /* round robin over cluster.members while no leader is known */
    int logged_registered;
    /* controller leader: adding a registered broker to the controller group; a broker whose
     * promotion failed (it stays a non-voter, which gets no log) is removed, then added again */
    int adding;
    uint64_t adding_rid, stuck_rid;
    /* producer ids: [pid_next, pid_end) is this broker's current block */
    int64_t pid_next, pid_end;
    int pids_in_flight;
    uint64_t pids_retry_ms;
    struct pid_waiter *waiters, **wtail;
};

/* A request served on the controller leader, answered when its proposal commits. */
struct served {
    struct ferryd_cluster *c;
    struct fr_rpc_from from;
    int pids;
};

int cl_mb_is_joiner(const struct ferryd_cluster *c)
{
    for (int i = 0; i < c->nmembers; i++)
        if (c->members[i].id == c->self)
            return 0;
    return 1;
}

int cl_mb_init(struct ferryd_cluster *c, char *errmsg, size_t errmsg_len)
{
    char host[256];
    int port;
    struct cl_membership *mb = calloc(1, sizeof(*mb));
    if (mb == NULL) {
        snprintf(errmsg, errmsg_len, "membership: out of memory");
        return -1;
    }
    if (ferryd_split_hostport(c->b->cfg->peer_listen, host, sizeof(host), &port) != 0) {
        snprintf(errmsg, errmsg_len, "peer.listen: bad address");
        free(mb);
        return -1;
    }
    mb->joiner = cl_mb_is_joiner(c);
    /* The peer address others dial: peer.listen's host, or when that is a wildcard (0.0.0.0, ::)
     * this broker's own host in cluster.members (a DNS name under Kubernetes); the bound port. */
    if (strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0) {
        host[0] = '\0';
        for (int i = 0; i < c->nmembers; i++)
            if (c->members[i].id == c->self)
                snprintf(host, sizeof(host), "%s", c->members[i].host);
    }
    if (host[0] == '\0') {
        snprintf(errmsg, errmsg_len, "peer.listen %s: a joining broker needs a peer address the others can dial "
                 "(not a wildcard)", c->b->cfg->peer_listen);
        free(mb);
        return -1;
    }
    snprintf(mb->peer_host, sizeof(mb->peer_host), "%s", host);
    mb->peer_port = fr_node_port(c->node);
    mb->hint = -1;
    mb->wtail = &mb->waiters;
    c->mb = mb;
    return 0;
}

/* ================================ replicated state ================================ */

void cl_mb_apply_peer(struct ferryd_cluster *c, struct cl_broker *b, int is_new, const msgpack_object *m)
{
    char why[256];
    struct ferry_mp_reader rd = {0};
    size_t hl = 0;
    const char *host = ferry_mp_str(&rd, m, "peer_host", &hl, 0);
    int64_t port = ferry_mp_int_range(&rd, m, "peer_port", 0, 0, 0, 65535);
    if (rd.err || host == NULL || hl == 0 || hl >= sizeof(b->peer_host) || port == 0) {
        if (is_new) { /* an entry without a peer address: the config's (cluster.members) stays in use */
            b->peer_host[0] = '\0';
            b->peer_port = 0;
        }
        return;
    }
    memcpy(b->peer_host, host, hl);
    b->peer_host[hl] = '\0';
    b->peer_port = (int)port;
    if (b->id == c->self || c->node == NULL)
        return;
    if (fr_node_set_peer(c->node, cl_rid(b->id), b->peer_host, b->peer_port, why, sizeof(why)) != FR_OK)
        LOG_WARN("cluster: broker %" PRId64 " peer address %s:%d: %s", b->id, b->peer_host, b->peer_port, why);
}

int cl_mb_apply_pids(struct ferryd_cluster *c, const msgpack_object *m, int64_t *base)
{
    struct ferry_mp_reader rd = {0};
    int64_t count = ferry_mp_int_range(&rd, m, "count", 0, 1, 1, CL_PID_BLOCK_MAX);
    if (rd.err)
        return FERRY_ERR_INVALID_REQUEST;
    if (c->next_pid < PID_FIRST)
        c->next_pid = PID_FIRST;
    if (c->next_pid > INT64_MAX - count)
        return FERRY_ERR_LIMIT_EXCEEDED;
    *base = c->next_pid;
    c->next_pid += count;
    return 0;
}

/* ================================ registration ================================ */

static int is_registered(const struct ferryd_cluster *c)
{
    const struct cl_broker *me = cl_find_broker(c, c->self);
    const struct ferryd *b = c->b;
    return me != NULL && me->port == b->advertised_port && strcmp(me->host, b->advertised_host) == 0 &&
           me->peer_port == c->mb->peer_port && strcmp(me->peer_host, c->mb->peer_host) == 0;
}

static void pack_register(const struct ferryd_cluster *c, msgpack_sbuffer *sb)
{
    msgpack_packer pk;
    msgpack_sbuffer_init(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 6);
    ferry_pack_key(&pk, "op");
    ferry_pack_str(&pk, "register");
    ferry_pack_key(&pk, "id");
    msgpack_pack_int64(&pk, c->self);
    ferry_pack_key(&pk, "host");
    ferry_pack_str(&pk, c->b->advertised_host);
    ferry_pack_key(&pk, "port");
    msgpack_pack_int(&pk, c->b->advertised_port);
    ferry_pack_key(&pk, "peer_host");
    ferry_pack_str(&pk, c->mb->peer_host);
    ferry_pack_key(&pk, "peer_port");
    msgpack_pack_int(&pk, c->mb->peer_port);
}

static void pack_pids(msgpack_sbuffer *sb, int64_t count)
{
    msgpack_packer pk;
    msgpack_sbuffer_init(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    ferry_pack_key(&pk, "op");
    ferry_pack_str(&pk, "pids");
    ferry_pack_key(&pk, "count");
    msgpack_pack_int64(&pk, count);
}

/* The broker to ask: the controller leader as known here, the last redirect, or the next initial
 * member (round robin). -1 when there is none (a cluster of one being this broker). */
static int64_t pick_target(struct ferryd_cluster *c)
{
    struct cl_membership *mb = c->mb;
    int64_t l = ferryd_cluster_controller_id(c);
    if (l >= 0 && l != c->self)
        return l;
    if (mb->hint >= 0 && mb->hint != c->self)
        return mb->hint;
    for (int k = 0; k < c->nmembers; k++) {
        const struct ferryd_member *m = &c->members[mb->rr++ % (unsigned)c->nmembers];
        if (m->id != c->self)
            return m->id;
    }
    return -1;
}

/* Reads an answer {"err", "leader"?, "base"?}. Returns 0 or -1 (malformed). */
static int parse_answer(const uint8_t *body, size_t len, int64_t *err, int64_t *leader, int64_t *base)
{
    msgpack_unpacked u;
    size_t off = 0;
    int rc = -1;
    msgpack_unpacked_init(&u);
    if (msgpack_unpack_next(&u, (const char *)body, len, &off) == MSGPACK_UNPACK_SUCCESS &&
        u.data.type == MSGPACK_OBJECT_MAP) {
        struct ferry_mp_reader rd = {0};
        *err = ferry_mp_int(&rd, &u.data, "err", 0, 1);
        *leader = ferry_mp_int(&rd, &u.data, "leader", -1, 0);
        *base = ferry_mp_int(&rd, &u.data, "base", -1, 0);
        rc = rd.err ? -1 : 0;
    }
    msgpack_unpacked_destroy(&u);
    return rc;
}

/* After an answer: NOT_CONTROLLER names the leader to ask next. */
static void note_redirect(struct cl_membership *mb, int64_t err, int64_t leader)
{
    mb->hint = err == FERRY_ERR_NOT_CONTROLLER && leader >= 0 ? leader : -1;
}

static void on_reg_reply(void *arg, int status, const uint8_t *body, size_t len)
{
    struct ferryd_cluster *c = arg;
    struct cl_membership *mb = c->mb;
    int64_t err = -1, leader = -1, base = -1;
    if (mb == NULL)
        return; /* the cluster is stopping */
    mb->reg_in_flight = 0;
    if (status != FR_OK || parse_answer(body, len, &err, &leader, &base) != 0) {
        LOG_DEBUG("cluster: registration request: %s", status != FR_OK ? fr_strerror(status) : "malformed answer");
        mb->hint = -1;
        return;
    }
    note_redirect(mb, err, leader);
    if (err == FERRY_ERR_NOT_CONTROLLER) {
        mb->next_reg_ms = 0; /* ask the named leader at the next tick */
    } else if (err == 0) {
        /* Accepted: the entry (and, for a joiner, the controller group) reaches us by replication. */
        mb->next_reg_ms = uv_now(c->b->loop) + REG_SETTLE_MS;
    } else {
        LOG_WARN("cluster: registration refused by the controller (error %" PRId64 ")", err);
    }
}

static void on_reg_proposed(void *arg, int status, uint64_t index, void *result)
{
    struct ferryd_cluster *c = arg;
    (void)index;
    (void)result;
    if (c->mb == NULL)
        return;
    c->mb->reg_in_flight = 0;
    if (status != FR_OK)
        LOG_DEBUG("cluster: registration not committed: %s", fr_strerror(status));
}

static void register_tick(struct ferryd_cluster *c, uint64_t now)
{
    struct cl_membership *mb = c->mb;
    char why[256];
    if (is_registered(c)) {
        if (!mb->logged_registered)
            LOG_INFO("cluster: broker %" PRId64 " registered (client %s:%d, peer %s:%d)", c->self,
                     c->b->advertised_host, c->b->advertised_port, mb->peer_host, mb->peer_port);
        mb->logged_registered = 1;
        return;
    }
    mb->logged_registered = 0;
    if (mb->reg_in_flight || now < mb->next_reg_ms)
        return;
    mb->next_reg_ms = now + REG_RETRY_MS;
    msgpack_sbuffer sb;
    pack_register(c, &sb);
    if (fr_group_is_leader(c->ctl)) {
        if (fr_group_propose(c->ctl, sb.data, sb.size, on_reg_proposed, c, why, sizeof(why)) == FR_OK)
            mb->reg_in_flight = 1;
    } else {
        int64_t target = pick_target(c);
        if (target >= 0) {
            int rc = fr_node_request(c->node, cl_rid(target), sb.data, sb.size, RPC_TIMEOUT_MS, on_reg_reply, c, why,
                                     sizeof(why));
            LOG_DEBUG("cluster: asking broker %" PRId64 " to register broker %" PRId64 ": %s", target, c->self,
                      rc == FR_OK ? "sent" : why);
            if (rc == FR_OK)
                mb->reg_in_flight = 1;
            else
                mb->hint = -1; /* e.g. a redirect to a broker this one has no address for */
        }
    }
    msgpack_sbuffer_destroy(&sb);
}

/* ================================ the controller group's members ================================ */

static void on_member_added(void *arg, int status)
{
    struct ferryd_cluster *c = arg;
    if (c->mb == NULL)
        return;
    c->mb->adding = 0;
    if (status != FR_OK && status != FR_ERR_SHUTDOWN) {
        LOG_WARN("cluster: adding broker %" PRIu64 " to the controller group: %s (retried)", c->mb->adding_rid - 1,
                 fr_strerror(status));
        c->mb->stuck_rid = c->mb->adding_rid;
    } else if (status == FR_OK) {
        LOG_INFO("cluster: broker %" PRIu64 " is a controller voter", c->mb->adding_rid - 1);
    }
}

static void on_member_removed(void *arg, int status)
{
    struct ferryd_cluster *c = arg;
    if (c->mb == NULL)
        return;
    c->mb->adding = 0;
    if (status == FR_OK)
        c->mb->stuck_rid = 0;
}

static int ctl_has_member(uint64_t rid, const uint64_t *ids, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        if (ids[i] == rid)
            return 1;
    return 0;
}

/*
 * Controller leader: a registered broker with a peer address that is not in the controller group
 * (it joined) is added, one at a time (Raft changes membership one server at a time): as a
 * non-voter that catches up, then promoted to voter (fr_group_add_member).
 */
static void reconcile_ctl(struct ferryd_cluster *c)
{
    struct cl_membership *mb = c->mb;
    uint64_t ids[FERRYD_MAX_MEMBERS + 8];
    unsigned voters = 0;
    char why[256];
    if (mb->adding)
        return;
    unsigned n = fr_group_members(c->ctl, ids, FERRYD_MAX_MEMBERS + 8, &voters);
    if (n > FERRYD_MAX_MEMBERS + 8)
        n = FERRYD_MAX_MEMBERS + 8;
    if (mb->stuck_rid != 0) {
        /* Only while a non-voter is there (it may have been promoted after all by a later leader). */
        if (voters == n || !ctl_has_member(mb->stuck_rid, ids, n)) {
            mb->stuck_rid = 0;
        } else if (fr_group_remove_member(c->ctl, mb->stuck_rid, on_member_removed, c, why, sizeof(why)) == FR_OK) {
            LOG_INFO("cluster: removing non-voter %" PRIu64 " from the controller group to add it again",
                     mb->stuck_rid - 1);
            mb->adding = 1;
            return;
        }
    }
    for (unsigned i = 0; i < c->nbrokers; i++) {
        const struct cl_broker *b = &c->brokers[i];
        if (b->peer_port == 0 || ctl_has_member(cl_rid(b->id), ids, n))
            continue;
        if (voters >= CTL_TARGET_VOTERS)
            LOG_DEBUG("cluster: controller group has %u voters; broker %" PRId64 " joins as one more voter (see "
                      "docs/replication.md)", voters, b->id);
        if (fr_group_add_member(c->ctl, cl_rid(b->id), on_member_added, c, why, sizeof(why)) == FR_OK) {
            mb->adding = 1;
            mb->adding_rid = cl_rid(b->id);
            LOG_INFO("cluster: adding broker %" PRId64 " (peer %s:%d) to the controller group", b->id, b->peer_host,
                     b->peer_port);
        } else {
            LOG_DEBUG("cluster: adding broker %" PRId64 " to the controller group: %s", b->id, why);
        }
        return;
    }
}

/* ================================ producer ids ================================ */

static void pids_fetch(struct ferryd_cluster *c);

/* Serves waiting InitProducerIds from the block (or fails them all with error). */
static void pids_serve(struct ferryd_cluster *c, int error, const char *msg)
{
    struct cl_membership *mb = c->mb;
    while (mb->waiters != NULL && (error != 0 || mb->pid_next < mb->pid_end)) {
        struct pid_waiter *w = mb->waiters;
        mb->waiters = w->next;
        if (mb->waiters == NULL)
            mb->wtail = &mb->waiters;
        if (error != 0)
            w->cb(w->arg, error, -1, msg);
        else
            w->cb(w->arg, 0, mb->pid_next++, "");
        free(w);
    }
}

static void pids_got(struct ferryd_cluster *c, int64_t base)
{
    struct cl_membership *mb = c->mb;
    mb->pid_next = base;
    mb->pid_end = base + CL_PID_BLOCK;
    LOG_INFO("cluster: producer ids [%" PRId64 ", %" PRId64 ") from the controller", mb->pid_next, mb->pid_end);
    pids_serve(c, 0, NULL);
    if (mb->waiters != NULL)
        pids_fetch(c);
}

static void pids_failed(struct ferryd_cluster *c, const char *why)
{
    struct cl_membership *mb = c->mb;
    mb->pids_retry_ms = uv_now(c->b->loop) + PIDS_RETRY_MS;
    LOG_DEBUG("cluster: producer id block: %s (retrying)", why);
}

static void on_pids_proposed(void *arg, int status, uint64_t index, void *result)
{
    struct ferryd_cluster *c = arg;
    (void)index;
    if (c->mb == NULL)
        return;
    c->mb->pids_in_flight = 0;
    int64_t v = result != NULL ? cl_dec(result) : -1;
    if (status != FR_OK || v < 0)
        pids_failed(c, status != FR_OK ? fr_strerror(status) : "refused by the controller");
    else
        pids_got(c, v);
}

static void on_pids_reply(void *arg, int status, const uint8_t *body, size_t len)
{
    struct ferryd_cluster *c = arg;
    int64_t err = -1, leader = -1, base = -1;
    if (c->mb == NULL)
        return;
    c->mb->pids_in_flight = 0;
    if (status != FR_OK || parse_answer(body, len, &err, &leader, &base) != 0) {
        c->mb->hint = -1;
        pids_failed(c, status != FR_OK ? fr_strerror(status) : "malformed answer");
        return;
    }
    note_redirect(c->mb, err, leader);
    if (err == FERRY_ERR_NOT_CONTROLLER) {
        pids_fetch(c); /* at once, from the named leader (or the next candidate) */
    } else if (err != 0 || base < 0) {
        pids_failed(c, "refused by the controller");
    } else {
        pids_got(c, base);
    }
}

/* Asks for a block: a proposal on the controller leader, a request elsewhere. */
static void pids_fetch(struct ferryd_cluster *c)
{
    struct cl_membership *mb = c->mb;
    char why[256];
    if (mb->pids_in_flight)
        return;
    msgpack_sbuffer sb;
    pack_pids(&sb, CL_PID_BLOCK);
    int rc = -1;
    if (fr_group_is_leader(c->ctl)) {
        rc = fr_group_propose(c->ctl, sb.data, sb.size, on_pids_proposed, c, why, sizeof(why));
    } else {
        int64_t target = pick_target(c);
        if (target >= 0) {
            rc = fr_node_request(c->node, cl_rid(target), sb.data, sb.size, RPC_TIMEOUT_MS, on_pids_reply, c, why,
                                 sizeof(why));
            if (rc != FR_OK)
                mb->hint = -1;
        } else {
            snprintf(why, sizeof(why), "no controller known");
        }
    }
    msgpack_sbuffer_destroy(&sb);
    if (rc == FR_OK)
        mb->pids_in_flight = 1;
    else
        pids_failed(c, why);
}

static void pids_tick(struct ferryd_cluster *c, uint64_t now)
{
    struct cl_membership *mb = c->mb;
    if (mb->waiters == NULL)
        return;
    if (now - mb->waiters->since_ms >= PIDS_WAIT_MS) {
        pids_serve(c, FERRY_ERR_BROKER_NOT_AVAILABLE, "no producer id block from the controller in time; retry");
        return;
    }
    if (!mb->pids_in_flight && now >= mb->pids_retry_ms)
        pids_fetch(c);
}

int ferryd_cluster_next_producer_id(struct ferryd_cluster *c, int64_t *id, ferryd_cluster_pid_cb cb, void *arg,
                                    char *msg, size_t msg_len)
{
    struct cl_membership *mb = c->mb;
    if (mb->pid_next < mb->pid_end && mb->waiters == NULL) {
        *id = mb->pid_next++;
        return 0;
    }
    struct pid_waiter *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        snprintf(msg, msg_len, "out of memory");
        return FERRY_ERR_UNKNOWN;
    }
    w->cb = cb;
    w->arg = arg;
    w->since_ms = uv_now(c->b->loop);
    *mb->wtail = w;
    mb->wtail = &w->next;
    pids_fetch(c); /* its answer always comes later (a proposal's or a request's callback) */
    return FERRYD_PID_PENDING;
}

/* ================================ serving requests (controller leader) ================================ */

static void answer(struct ferryd_cluster *c, const struct fr_rpc_from *to, int64_t err, int64_t base)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, err == FERRY_ERR_NOT_CONTROLLER || base >= 0 ? 2 : 1);
    ferry_pack_key(&pk, "err");
    msgpack_pack_int64(&pk, err);
    if (err == FERRY_ERR_NOT_CONTROLLER) {
        ferry_pack_key(&pk, "leader");
        msgpack_pack_int64(&pk, ferryd_cluster_controller_id(c));
    } else if (base >= 0) {
        ferry_pack_key(&pk, "base");
        msgpack_pack_int64(&pk, base);
    }
    if (fr_node_respond(c->node, to, FR_OK, sb.data, sb.size) != FR_OK)
        LOG_DEBUG("cluster: answer to broker %" PRIu64 " not sent (its connection closed)", to->peer_id - 1);
    msgpack_sbuffer_destroy(&sb);
}

static void on_served(void *arg, int status, uint64_t index, void *result)
{
    struct served *s = arg;
    struct ferryd_cluster *c = s->c;
    (void)index;
    if (status != FR_OK) {
        if (status != FR_ERR_SHUTDOWN)
            answer(c, &s->from, FERRY_ERR_NOT_CONTROLLER, -1);
    } else {
        int64_t v = result != NULL ? cl_dec(result) : FERRY_ERR_UNKNOWN;
        if (s->pids)
            answer(c, &s->from, v >= 0 ? 0 : -v, v >= 0 ? v : -1);
        else
            answer(c, &s->from, v, -1);
        if (!s->pids && v == 0 && c->mb != NULL && fr_group_is_leader(c->ctl))
            reconcile_ctl(c); /* a joiner enters the controller group without waiting for the tick */
    }
    free(s);
}

/* Checks a register request; 0 when it may be proposed, 1 when nothing would change, or an error. */
static int check_register(const struct ferryd_cluster *c, const struct fr_rpc_from *from, const msgpack_object *m)
{
    struct ferry_mp_reader rd = {0};
    size_t hl = 0, pl = 0;
    int64_t id = ferry_mp_int_range(&rd, m, "id", 0, 1, 0, INT32_MAX);
    const char *host = ferry_mp_str(&rd, m, "host", &hl, 1);
    int64_t port = ferry_mp_int_range(&rd, m, "port", 0, 1, 1, 65535);
    const char *phost = ferry_mp_str(&rd, m, "peer_host", &pl, 1);
    int64_t pport = ferry_mp_int_range(&rd, m, "peer_port", 0, 1, 1, 65535);
    if (rd.err || hl == 0 || hl >= sizeof(c->brokers[0].host) || pl == 0 || pl >= sizeof(c->brokers[0].peer_host))
        return FERRY_ERR_INVALID_REQUEST;
    if (cl_rid(id) != from->peer_id) {
        LOG_WARN("cluster: node %" PRIu64 " asked to register broker %" PRId64 ": refused", from->peer_id - 1, id);
        return FERRY_ERR_INVALID_REQUEST;
    }
    const struct cl_broker *b = cl_find_broker(c, id);
    if (b == NULL)
        return c->nbrokers >= FERRYD_MAX_MEMBERS ? FERRY_ERR_LIMIT_EXCEEDED : 0;
    if (b->port == port && strlen(b->host) == hl && memcmp(b->host, host, hl) == 0 && b->peer_port == pport &&
        strlen(b->peer_host) == pl && memcmp(b->peer_host, phost, pl) == 0)
        return 1;
    return 0;
}

void cl_mb_on_request(void *arg, const struct fr_rpc_from *from, const uint8_t *body, size_t len)
{
    struct ferryd_cluster *c = arg;
    char why[256];
    msgpack_unpacked u;
    size_t off = 0;
    int64_t err = FERRY_ERR_INVALID_REQUEST;
    msgpack_unpacked_init(&u);
    if (c->mb == NULL || c->ctl == NULL)
        goto out; /* stopping: the requester times out */
    if (msgpack_unpack_next(&u, (const char *)body, len, &off) != MSGPACK_UNPACK_SUCCESS ||
        u.data.type != MSGPACK_OBJECT_MAP || off != len) {
        answer(c, from, err, -1);
        goto out;
    }
    struct ferry_mp_reader rd = {0};
    size_t ol = 0;
    const char *op = ferry_mp_str(&rd, &u.data, "op", &ol, 1);
    int pids = !rd.err && ol == 4 && memcmp(op, "pids", 4) == 0;
    int reg = !rd.err && ol == 8 && memcmp(op, "register", 8) == 0;
    if (!pids && !reg) {
        answer(c, from, FERRY_ERR_INVALID_REQUEST, -1);
        goto out;
    }
    if (!fr_group_is_leader(c->ctl)) {
        answer(c, from, FERRY_ERR_NOT_CONTROLLER, -1);
        goto out;
    }
    if (reg) {
        int rc = check_register(c, from, &u.data);
        if (rc != 0) {
            answer(c, from, rc == 1 ? 0 : rc, -1);
            if (rc == 1)
                reconcile_ctl(c);
            goto out;
        }
    } else {
        ferry_mp_int_range(&rd, &u.data, "count", 0, 1, 1, CL_PID_BLOCK_MAX);
        if (rd.err) {
            answer(c, from, FERRY_ERR_INVALID_REQUEST, -1);
            goto out;
        }
    }
    struct served *s = malloc(sizeof(*s));
    if (s == NULL) {
        answer(c, from, FERRY_ERR_UNKNOWN, -1);
        goto out;
    }
    *s = (struct served){.c = c, .from = *from, .pids = pids};
    /* The checked body is the controller command itself. */
    if (fr_group_propose(c->ctl, body, len, on_served, s, why, sizeof(why)) != FR_OK) {
        free(s);
        answer(c, from, FERRY_ERR_NOT_CONTROLLER, -1);
    }
out:
    msgpack_unpacked_destroy(&u);
}

/* ================================ tick and stop ================================ */

void cl_mb_tick(struct ferryd_cluster *c)
{
    if (c->mb == NULL || c->ctl == NULL)
        return;
    uint64_t now = uv_now(c->b->loop);
    register_tick(c, now);
    if (fr_group_is_leader(c->ctl))
        reconcile_ctl(c);
    pids_tick(c, now);
}

void cl_mb_stop(struct ferryd_cluster *c)
{
    if (c->mb == NULL)
        return;
    pids_serve(c, FERRY_ERR_BROKER_NOT_AVAILABLE, "broker is stopping");
    free(c->mb);
    c->mb = NULL; /* callbacks still to come (requests, proposals) see it and do nothing */
}
