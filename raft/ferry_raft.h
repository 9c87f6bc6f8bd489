/* ferry_raft.h: many Raft groups per broker process over one peer connection per broker pair (our only Raft API). */
#ifndef FERRY_RAFT_H
#define FERRY_RAFT_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/*
 * Only raft/ includes the Raft library's headers; the broker talks to this interface.
 * docs/replication.md explains the design, docs/peer-protocol.md the wire format.
 *
 *  - struct fr_node: one per broker process. It owns a libuv listener on the peer port and ONE framed
 *    connection (broker/net/conn.h, plaintext or TLS, mutual TLS between brokers) per broker pair:
 *    the node with the lower id dials the higher one, reconnecting with backoff; a hello frame
 *    carries the cluster id and node id. Every group's Raft messages travel on that connection,
 *    tagged with the group id.
 *  - struct fr_group: one Raft group (a partition or the controller) with its own raft_uv log under
 *    data_dir/g<group id>/ and a state machine given by struct fr_fsm.
 *
 * Threading: everything runs on the node's loop thread; every call must be made there and every
 * callback runs there.
 *
 * Callbacks: a function taking a callback either returns an error (the callback never runs) or
 * returns FR_OK and the callback runs exactly once, later (never from inside the call), with
 * FR_ERR_SHUTDOWN if the group closed first.
 *
 * Node and group ids are >= 1. A node's Raft "address" inside group configurations is its id in
 * decimal (stable across restarts and address changes); the network address lives only in the
 * node's peer table (fr_node_set_peer).
 */

/* Status codes (ours; the library's codes never leave raft/). */
enum fr_status {
    FR_OK = 0,
    FR_ERR_INVALID = 1,     /* bad argument or call in the wrong state (a caller bug, or a bad config) */
    FR_ERR_NOMEM,           /* out of memory */
    FR_ERR_IO,              /* disk or socket error (errmsg says which) */
    FR_ERR_NOT_LEADER,      /* this replica is not the group leader */
    FR_ERR_LEADERSHIP_LOST, /* was leader, lost leadership before the entry committed (outcome unknown) */
    FR_ERR_SHUTDOWN,        /* the group closed before the request completed */
    FR_ERR_BUSY,            /* another membership change or transfer is in progress */
    FR_ERR_EXISTS,          /* bootstrap: the group already has Raft state on disk (not an error on restart) */
    FR_ERR_TOO_BIG,         /* entry larger than FR_MAX_ENTRY_BYTES */
    FR_ERR_NOT_FOUND,       /* unknown member / peer */
    FR_ERR_CORRUPT,         /* Raft data on disk is corrupt */
    FR_ERR_INTERNAL,        /* any other library error (errmsg has the library's message) */
};
const char *fr_strerror(int status);

/* Largest frame on a peer connection. An AppendEntries frame carries every entry Raft sends in one
 * message; the log is kept short (snapshot threshold) so this bounds a catch-up burst. Peers are
 * other brokers of the same cluster (mutual TLS), but lengths are still checked before allocating. */
#define FR_PEER_MAX_FRAME_BYTES (256u * 1024 * 1024)
/* Largest single entry (a produce request's batches are far smaller: FERRY_MAX_FRAME_BYTES). */
#define FR_MAX_ENTRY_BYTES (64u * 1024 * 1024)
#define FR_GROUP_NAME_MAX 128

struct ferry_tls_ctx;
struct fr_node;
struct fr_group;

/* Who sent a request (raft/rpc.c): copy it to answer later with fr_node_respond. */
struct fr_rpc_from {
    uint64_t peer_id;    /* the sender's node id (authenticated by the peer TLS and the hello) */
    uint64_t link;       /* the connection it came on (the answer goes back on it) */
    uint64_t request_id; /* the sender's id for it */
};

struct fr_node_config {
    uv_loop_t *loop;
    uint64_t node_id;        /* >= 1, unique in the cluster */
    uint64_t cluster_id;     /* peers with another cluster id are refused at hello */
    const char *listen_host; /* numeric address to bind the peer port on, e.g. "127.0.0.1" */
    int listen_port;         /* 0 = an ephemeral port (see fr_node_port) */
    const char *data_dir;    /* groups store their Raft logs in data_dir/g<group id>/ (created) */
    /* NULL/NULL = plaintext. Otherwise both: the listener's (server certificate, require_client_cert
     * for mutual TLS) and the dialer's (client certificate). Borrowed: they must outlive the node. */
    struct ferry_tls_ctx *tls_server;
    struct ferry_tls_ctx *tls_client;
    const char *tls_server_name; /* name checked on the peers' certificates; NULL = the peer's host */
    /* Idle groups (docs/replication.md, "Heartbeats"). 0 (the default): a group led here with no new
     * entries for three heartbeat intervals, every follower up to date and reachable, goes quiet: no
     * AppendEntries heartbeats at all; node-level pings stand in for them. Non-zero: every group
     * heartbeats all the time (the library's own behaviour), and this node refuses quiet groups. */
    int disable_quiescence;
    /* Node-level liveness: a ping per peer link every heartbeat_ms / 2; a link from which nothing
     * arrived for link_timeout_ms is "silent" and every group with that peer wakes. Set them to the
     * groups' heartbeat and election timeouts. 0 = 100 and 1000. A group quiesces only if its own
     * election timeout is at least 2 x heartbeat_ms. When a link closes or turns silent, the groups
     * followed here that the peer led elect a new leader at once, in one round, without waiting for
     * their election timers (raft/failover.c; docs/replication.md, "Failover"). */
    unsigned heartbeat_ms;
    unsigned link_timeout_ms;
    /* Requests between brokers (raft/rpc.c; fr_node_request below). NULL: requests from peers
     * are answered with status FR_ERR_NOT_FOUND. Runs on the loop for every request frame. */
    void (*rpc_handler)(void *arg, const struct fr_rpc_from *from, const uint8_t *body, size_t len);
    void *rpc_arg;
};

/*
 * Creates the node and starts listening on the peer port. Peers are added with fr_node_set_peer.
 * Returns FR_OK with *out set, or an error with errmsg filled (nothing to free).
 */
int fr_node_start(const struct fr_node_config *cfg, struct fr_node **out, char *errmsg, size_t errmsg_len);

/* The bound peer port (useful with listen_port = 0). */
int fr_node_port(const struct fr_node *n);
uint64_t fr_node_id(const struct fr_node *n);

/*
 * Adds a peer or updates its address. The lower id of a pair dials the higher one; an update
 * closes the current connection to that peer (it is redialled at the new address at once).
 * host is a numeric address or a name. Returns FR_OK, FR_ERR_INVALID (id 0, own id, bad host) or
 * FR_ERR_NOMEM.
 */
int fr_node_set_peer(struct fr_node *n, uint64_t id, const char *host, int port, char *errmsg, size_t errmsg_len);

/*
 * Asynchronous stop: closes every group still open (their fr_group_close callbacks run if one was
 * requested; pending requests fail with FR_ERR_SHUTDOWN), every peer connection and the listener.
 * cb runs once when all of it is closed; the node is freed right after cb returns. Do not use the
 * node or any of its groups once this is called. Idempotent (a second call is ignored).
 */
typedef void (*fr_node_stop_cb)(void *arg);
void fr_node_stop(struct fr_node *n, fr_node_stop_cb cb, void *arg);

/* Counters for tests, metrics and benchmarks (monotonic since start). */
#define FR_FRAME_KIND_SLOTS 8
struct fr_node_stats {
    uint64_t frames_sent;   /* Raft message frames queued on peer connections */
    uint64_t frames_recv;   /* Raft message frames received and delivered to a group */
    uint64_t bytes_sent;    /* bytes of those frames, length prefixes included */
    uint64_t bytes_recv;
    uint64_t heartbeats_sent; /* AppendEntries without entries among frames_sent */
    uint64_t msgs_dropped;    /* messages not sent (no connection to that peer yet, or backlog) */
    uint64_t connects;        /* peer connections that completed the hello */
    unsigned peers_up;        /* peers with a live connection now */
    /* Every frame by kind (index: 1 hello, 2 raft, 3 ping, 4 quiesce; docs/peer-protocol.md). */
    uint64_t kind_sent[FR_FRAME_KIND_SLOTS];
    uint64_t kind_recv[FR_FRAME_KIND_SLOTS];
    uint64_t heartbeats_suppressed;  /* heartbeats of quiet groups not sent */
    uint64_t heartbeats_synthesized; /* local heartbeats (followers) and results (leaders) fed to Raft */
    uint64_t quiesced;               /* times a group went quiet here (as leader or follower) */
    uint64_t woken;                  /* times a quiet group woke up here */
    uint64_t links_silent;           /* times a link turned silent */
    uint64_t stuck_transfers;        /* leadership transfers away from a follower that lost its log */
    unsigned groups_quiescent;       /* groups quiet here now (led or followed) */
    unsigned peers_silent;           /* peers whose link is silent now */
    uint64_t failovers; /* times a group here gave up on a leader whose node is gone (failover.c) */
};
void fr_node_stats(const struct fr_node *n, struct fr_node_stats *out);

/*
 * Turns quiescence on or off at run time (fr_node_config.disable_quiescence sets it at start).
 * Off: every quiet group here wakes at once, no group led here goes quiet again, and this node
 * refuses to follow quiet groups (their leaders back off and retry later).
 */
void fr_node_set_quiescence(struct fr_node *n, int on);

/*
 * Test hook: while muted, every frame to and from peer `id` vanishes (sent ones are counted as
 * sent, received ones are ignored before anything looks at them) and the socket stays open: a
 * network cut by firewall rules, or a SIGSTOPped peer, as this node sees it. FR_ERR_NOT_FOUND for
 * an unknown peer.
 */
int fr_node_test_mute_peer(struct fr_node *n, uint64_t id, int muted);

/* ---- groups ---- */

struct fr_fsm {
    void *data;
    /* Applies committed entry `index` (same entries, same order on every replica). *result is handed
     * to the proposer's callback on the replica that proposed it (may be NULL). Non-zero = a fatal
     * error for this replica of the group (Raft stops applying). The bytes are valid only during
     * the call. Required. */
    int (*apply)(void *data, uint64_t index, const uint8_t *buf, size_t len, void **result);
    /* Serialises the state machine's small metadata as of the last applied entry into *buf
     * (malloc'd by the callee, freed by raft/). Required. Taken at applied indexes only: the caller's
     * record store must be durable up to there (docs/replication.md, "Storage"). */
    int (*snapshot)(void *data, uint8_t **buf, size_t *len);
    /* Replaces the state with a snapshot (as produced by snapshot() on some replica) whose last
     * entry is `index`. The bytes are valid only during the call. Required. */
    int (*restore)(void *data, uint64_t index, const uint8_t *buf, size_t len);
    /* Optional: this replica became or stopped being leader, or learnt of another leader.
     * leader_id 0 = unknown. Runs on the loop, after Raft's step, never re-entrantly. */
    void (*on_role)(void *data, int is_leader, uint64_t leader_id, uint64_t term);
};

struct fr_group_config {
    uint64_t group_id;        /* >= 1, unique on the node */
    const char *name;         /* for messages, e.g. "orders/3"; NULL = "g<id>" */
    struct fr_fsm fsm;
    unsigned election_timeout_ms;  /* 0 = 1000 (randomised by Raft between 1x and 2x) */
    unsigned heartbeat_timeout_ms; /* 0 = 100 */
    unsigned snapshot_threshold;   /* entries between snapshots; 0 = 1024 */
    unsigned snapshot_trailing;    /* entries kept after a snapshot; 0 = 256 */
    size_t segment_bytes;          /* raft_uv segment size; 0 = 1 MiB */
    /* Deferred open (docs/replication.md, "Scale"). Non-zero: fr_group_open, fr_group_bootstrap and
     * fr_group_start return at once and the group's real open (the library's raft_init, which blocks
     * ~32 ms, then bootstrap and start) runs later on the loop, one group per loop iteration in call
     * order, so opening a batch of groups never blocks the loop for the whole batch. Until then the
     * group is registered (frames for it are dropped; it is not leader; propose answers
     * FR_ERR_INVALID), fr_group_bootstrap never answers FR_ERR_EXISTS (an existing state is kept,
     * as on a restart), and a failure of the real open is reported through on_open_failed (or on
     * stderr when NULL): the group then stays unstarted until closed. */
    int defer_open;
    void (*on_open_failed)(void *data /* fsm.data */, int status, const char *errmsg);
};

/*
 * Opens a group's Raft state (data_dir/g<id>/, created), without starting it. This blocks for the
 * library's disk probe (~30 ms on ext4; docs/replication.md). Returns FR_OK with *out set, or an
 * error with errmsg (nothing to free).
 */
int fr_group_open(struct fr_node *n, const struct fr_group_config *cfg, struct fr_group **out, char *errmsg,
                  size_t errmsg_len);

/*
 * Writes the initial configuration (these node ids, all voters) to a pristine group before its
 * first start. Every initial member must bootstrap the same list. Returns FR_OK, FR_ERR_EXISTS if
 * the group already has state on disk (normal on restart), or an error.
 * A replica that joins later (fr_group_add_member on the leader) starts without bootstrapping.
 */
int fr_group_bootstrap(struct fr_group *g, const uint64_t *members, unsigned n_members, char *errmsg,
                       size_t errmsg_len);

/* Loads the log and snapshot, replays committed entries lazily through apply, and joins the group. */
int fr_group_start(struct fr_group *g, char *errmsg, size_t errmsg_len);

/*
 * Proposes one entry (copied). On the leader only: otherwise FR_ERR_NOT_LEADER at once.
 * cb(arg, status, index, result) runs once the entry is committed and applied locally (status
 * FR_OK, its index, apply's result), or with FR_ERR_LEADERSHIP_LOST / FR_ERR_SHUTDOWN.
 */
typedef void (*fr_propose_cb)(void *arg, int status, uint64_t index, void *result);
int fr_group_propose(struct fr_group *g, const void *buf, size_t len, fr_propose_cb cb, void *arg, char *errmsg,
                     size_t errmsg_len);

/* A barrier: cb runs when every entry before it is applied (leader only). */
typedef void (*fr_done_cb)(void *arg, int status);
int fr_group_barrier(struct fr_group *g, fr_done_cb cb, void *arg, char *errmsg, size_t errmsg_len);

/*
 * Leadership transfer to node `target` (0 = the most up-to-date voter). Leader only. cb runs when
 * leadership moved (FR_OK) or the attempt timed out after an election timeout (FR_ERR_BUSY: this
 * replica is still leader).
 */
int fr_group_transfer(struct fr_group *g, uint64_t target, fr_done_cb cb, void *arg, char *errmsg,
                      size_t errmsg_len);

/*
 * Membership (leader only, one change at a time). add_member adds node `id` as a non-voting
 * replica, lets it catch up, then promotes it to voter; cb runs when the promotion is committed.
 * The new node must be a peer of the leader's node and have the group open and started (not
 * bootstrapped). remove_member removes a member (cb after the change commits; if it removes the
 * leader itself, the leader steps down afterwards).
 */
int fr_group_add_member(struct fr_group *g, uint64_t id, fr_done_cb cb, void *arg, char *errmsg,
                        size_t errmsg_len);
int fr_group_remove_member(struct fr_group *g, uint64_t id, fr_done_cb cb, void *arg, char *errmsg,
                           size_t errmsg_len);

/* State. */
int fr_group_is_leader(const struct fr_group *g);
/* Known leader's id (0 = unknown) and, if address != NULL, its "host:port" from the peer table
 * (or this node's listen address, or NULL when the peer's address is unknown). */
uint64_t fr_group_leader(const struct fr_group *g, const char **address);
uint64_t fr_group_id(const struct fr_group *g);
const char *fr_group_name(const struct fr_group *g);
uint64_t fr_group_term(const struct fr_group *g);
uint64_t fr_group_commit_index(const struct fr_group *g);
uint64_t fr_group_applied_index(const struct fr_group *g);
uint64_t fr_group_last_index(const struct fr_group *g);
/* Members of the current configuration: fills up to cap ids (voters and non-voters), returns
 * how many there are. *voters (optional) gets the number of voters. */
unsigned fr_group_members(const struct fr_group *g, uint64_t *ids, unsigned cap, unsigned *voters);

/*
 * Asynchronous close: pending requests fail with FR_ERR_SHUTDOWN, the log is closed; cb runs once
 * after that, and the group is freed right after cb returns. Idempotent.
 */
typedef void (*fr_group_close_cb)(void *arg);
void fr_group_close(struct fr_group *g, fr_group_close_cb cb, void *arg);

/* ---- requests between brokers (raft/rpc.c; frame kind 5 in docs/peer-protocol.md) ---- */

/* Largest request or response body. Bodies are small msgpack maps (registration, producer id
 * blocks); the bound is checked before anything is allocated. */
#define FR_RPC_MAX_BODY (64u * 1024)

/*
 * Sends one request (body copied, opaque to raft/: the broker's msgpack) to node peer_id and
 * calls cb(arg, status, body, len) exactly once, later: FR_OK with the answer's body (valid only
 * during the call), the status the other side answered with (fr_node_respond; FR_ERR_NOT_FOUND
 * when it has no handler), FR_ERR_IO when no answer came within timeout_ms (the request may or
 * may not have been handled), or FR_ERR_SHUTDOWN when the node stopped first.
 * The request travels on the peer's connection when it is up; otherwise (a broker that is not
 * yet in the peer's table, i.e. joining, or the lower id waiting to be dialled) this node dials a
 * request-only connection to the peer's address (hello flag bit 2). Returns FR_OK, or
 * FR_ERR_INVALID (stopping, own id), FR_ERR_NOT_FOUND (no such peer), FR_ERR_TOO_BIG or
 * FR_ERR_NOMEM with errmsg (cb never runs).
 */
typedef void (*fr_rpc_cb)(void *arg, int status, const uint8_t *body, size_t len);
int fr_node_request(struct fr_node *n, uint64_t peer_id, const void *body, size_t len, unsigned timeout_ms,
                    fr_rpc_cb cb, void *arg, char *errmsg, size_t errmsg_len);

/*
 * Answers a request (now or later, at most once per request): status FR_OK with a body, or an
 * error status (the body may be empty). Returns FR_OK when queued, FR_ERR_NOT_FOUND when the
 * connection it came on is gone (the requester times out), FR_ERR_TOO_BIG, FR_ERR_NOMEM, or
 * FR_ERR_INVALID once the node is stopping. Safe to call until the node's stop callback ran.
 */
int fr_node_respond(struct fr_node *n, const struct fr_rpc_from *to, int status, const void *body, size_t len);

#endif
