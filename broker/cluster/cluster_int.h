/* cluster_int.h: the cluster's internal state, shared by cluster.c (life cycle, queries, proposals),
 * controller.c (the controller state machine, registration, topic placement) and partition_group.c (each
 * partition's Raft group: apply, snapshots, catch-up). Nothing outside broker/cluster/ includes it. */
#ifndef FERRYD_CLUSTER_INT_H
#define FERRYD_CLUSTER_INT_H

#include <stdint.h>
#include <msgpack.h>

#include "../../raft/ferry_raft.h"
#include "broker.h"
#include "cluster/catchup.h"
#include "cluster/cluster.h"
#include "proto/limits.h"

#define CONTROLLER_GROUP 1
#define FIRST_PARTITION_GROUP 2
#define DEFAULT_RF 3
#define TICK_MS 300
/* A graceful stop waits this long at most for its leadership transfers (each one gives up after an
 * election timeout by itself; they run in parallel). */
#define HANDOFF_MAX_MS 5000
/* Committed entries a catching-up replica holds in memory until its segments reach the snapshot
 * (docs/replication.md, "A replica that lacks segment data"); past it the group stops applying. */
#define CATCHUP_QUEUE_MAX_BYTES ((size_t)256 * 1024 * 1024)
/* Leadership transfers the balancer runs at once on one broker: a partition refuses produces while
 * its transfer runs (clients retry), so a few at a time keeps the hiccup small and spread out. */
#define REBALANCE_MAX_TRANSFERS 4
/* After a failed transfer the balancer waits interval << failures (capped at this shift). */
#define REBALANCE_MAX_BACKOFF_SHIFT 4

/* A committed entry applied later, once the catch-up is done. */
struct cl_entry {
    struct cl_entry *next;
    uint64_t index;
    size_t len;
    uint8_t data[];
};

struct cl_part {
    struct ferryd_cluster *c;
    char label[FERRY_MAX_TOPIC_NAME + 16];
    char topic[FERRY_MAX_TOPIC_NAME + 1];
    int32_t idx;
    struct fr_group *g;
    struct ferryd_partition *p;
    int64_t cursor; /* offset the next applied entry gets: dedupes entries replayed after a restart */
    /* Catch-up: restored from a snapshot whose log end (target) is past our log's end. Entries
     * committed meanwhile wait in the queue; the segments are fetched from the leader (catchup.c). */
    int catching_up;
    int broken; /* a queued entry failed to apply: the group stops applying here */
    int is_leader; /* as last reported by on_role */
    uint64_t ready_index; /* as leader: the last Raft index at its election; it serves once applied up to it */
    int64_t target;
    struct cl_catchup *cu; /* the fetch running, or NULL (the tick starts one) */
    struct cl_entry *qhead, *qtail;
    size_t qbytes;
    /* Snapshot policy (partition_group.c part_snapshot): entries and bytes applied since the last
     * snapshot, and background syncs started for the next one. */
    uint64_t snap_entries, snap_bytes;
    unsigned presyncs;
#ifdef FERRY_BUG_SWITCHES
    uint64_t bug_applied; /* debug.bug=drop-entry: committed batches seen by apply */
#endif
    /* Preferred-leader balancer (cluster.c): a transfer to the preferred replica is running; after a
     * failed one (or one the preferred replica handed straight back) no attempt before after_ms. */
    int rebalancing;
    unsigned rebalance_failures;
    uint64_t rebalance_after_ms;
    uint64_t rebalanced_ms; /* loop time of the last transfer that succeeded, 0 = none pending */
};

struct cl_topic {
    char name[FERRY_MAX_TOPIC_NAME + 1];
    int32_t np, rf;
    int64_t *replicas;  /* np * rf broker ids */
    uint64_t *gids;     /* np group ids */
    struct ferryd_topic_config tc;
    char token[FERRYD_MAX_REQUEST_TOKEN + 1]; /* the creating request's token ("" = none) */
    struct cl_part **parts; /* np, NULL where this broker is not a replica (or not opened yet) */
};

struct cl_broker {
    int64_t id;
    char host[256];
    int port;
    /* membership.c: the peer address from the register entry ("" / 0 = not given: entries written
     * before the peer address was replicated); every broker points its peer table at it. */
    char peer_host[256];
    int peer_port;
};

struct ferryd_cluster {
    struct ferryd *b;
    struct fr_node *node;
    struct fr_group *ctl;
    struct ferry_tls_ctx *tls_server, *tls_client; /* peer port; NULL in plaintext */
    struct ferry_tls_ctx *tls_fetch; /* catch-up Fetches to other brokers' client listeners; NULL in plaintext */
    int64_t self;
    struct ferryd_member members[FERRYD_MAX_MEMBERS];
    int nmembers;
    /* replicated metadata */
    struct cl_broker brokers[FERRYD_MAX_MEMBERS];
    unsigned nbrokers;
    struct cl_topic **topics;
    unsigned ntopics;
    uint64_t next_gid;
    /* local */
    uv_timer_t tick;
    uv_timer_t handoff_timer; /* bounds ferryd_cluster_handoff */
    unsigned handoffs;        /* transfers still running */
    void (*handoff_cb)(void *arg);
    void *handoff_arg;
    void (*stop_cb)(void *arg);
    void *stop_arg;
    ferryd_cluster_role_cb role_cb; /* leadership observer (ferryd_cluster_set_role_observer) */
    void *role_arg;
    /* Preferred-leader balancer (cluster.c), driven by the tick: a pass starts every
     * leader.rebalance.interval.ms and runs until every candidate was tried, at most
     * REBALANCE_MAX_TRANSFERS transfers at a time. */
    uint64_t next_rebalance_ms;
    int rebalance_pass;
    unsigned rebalances; /* transfers running */
    /* membership.c (joining, registration by request, producer id blocks). next_pid is replicated
     * controller state (snapshots too); mb is this broker's local side of it. */
    int64_t next_pid;
    struct cl_membership *mb;
};

/* Raft ids are node.id + 1 (the Raft layer reserves 0). */
static inline uint64_t cl_rid(int64_t broker_id)
{
    return (uint64_t)broker_id + 1;
}

/* Apply results are small integers carried through the void * result (0 means "none"). */
static inline void *cl_enc(int64_t v)
{
    return (void *)(uintptr_t)((uint64_t)v + 1);
}
static inline int64_t cl_dec(void *r)
{
    return (int64_t)((uint64_t)(uintptr_t)r - 1);
}

/* ---- controller.c ---- */
int cl_ctl_apply(void *data, uint64_t index, const uint8_t *buf, size_t len, void **result);
int cl_ctl_snapshot(void *data, uint8_t **buf, size_t *len);
int cl_ctl_restore(void *data, uint64_t index, const uint8_t *buf, size_t len);
/* On the cluster tick: registration and producer id blocks (membership.c, cl_mb_tick). */
void cl_ctl_tick(struct ferryd_cluster *c);
const struct cl_broker *cl_find_broker(const struct ferryd_cluster *c, int64_t id);
struct cl_topic *cl_find_topic(const struct ferryd_cluster *c, const char *name, size_t len);
void cl_topic_free(struct cl_topic *t);

/* ---- membership.c (docs/replication.md, "Joining and registration") ---- */
struct cl_membership;
/* Producer ids per block a broker takes from the controller. */
#define CL_PID_BLOCK 1000
/* Largest block one "pids" command may take (its count is checked at apply). */
#define CL_PID_BLOCK_MAX 100000
/* A broker is a joiner when its node.id is not in cluster.members. */
int cl_mb_is_joiner(const struct ferryd_cluster *c);
/* Allocates c->mb (0, or -1 with errmsg). Called before the node starts. */
int cl_mb_init(struct ferryd_cluster *c, char *errmsg, size_t errmsg_len);
/* The node's request handler (fr_node_config.rpc_handler, arg = c). */
void cl_mb_on_request(void *arg, const struct fr_rpc_from *from, const uint8_t *body, size_t len);
/* On the cluster tick: registration (by request to the controller leader, or a proposal when this
 * broker leads it) and, on the leader, adding registered brokers to the controller group. */
void cl_mb_tick(struct ferryd_cluster *c);
/* Cluster stop: waiters for producer ids get an error; c->mb is freed. */
void cl_mb_stop(struct ferryd_cluster *c);
/* From apply_register: the entry's optional "peer_host"/"peer_port" into b (kept when absent and the
 * broker was known), and the peer table pointed at it. */
void cl_mb_apply_peer(struct ferryd_cluster *c, struct cl_broker *b, int is_new, const msgpack_object *m);
/* Applies {"op": "pids", "count": N}: *base = next_pid, next_pid += N. 0 or an error code. */
int cl_mb_apply_pids(struct ferryd_cluster *c, const msgpack_object *m, int64_t *base);

/* ---- partition_group.c ---- */
/* Opens, bootstraps (first time) and starts the Raft group of partition i of t on this broker (a
 * replica of it), over lt's local log. Sets t->parts[i]; logs and leaves it NULL on failure. */
void cl_part_open(struct ferryd_cluster *c, struct cl_topic *t, int32_t i, struct ferryd_topic *lt);
/* Closes the group asynchronously (the part is freed when it is closed); t->parts[i] is the caller's. */
void cl_part_close(struct cl_part *cp);
/* Frees a part whose group is already gone (the node stopped). */
void cl_part_free(struct cl_part *cp);
/* Cancels a running catch-up fetch (its connection closes while the loop runs). */
void cl_part_cancel_fetch(struct cl_part *cp);
/* On the cluster tick: starts the catch-up fetches of replicas that lack segment data. */
void cl_catchup_tick(struct ferryd_cluster *c);

/* ---- cluster.c ---- */
/*
 * Proposes buf to g. Exactly one of produce_cb / done_cb is set: produce_cb gets (error, base offset)
 * from a partition's apply; done_cb gets the controller's result code. not_leader is the error code
 * used when g has no leadership here (NOT_LEADER or NOT_CONTROLLER). Returns 0 (the callback runs
 * once) or an error code with msg (it never runs).
 */
int cl_propose(struct fr_group *g, const void *buf, size_t len, ferryd_cluster_produce_cb produce_cb,
               ferryd_cluster_done_cb done_cb, void *arg, int not_leader, char *msg, size_t msg_len);

#endif
