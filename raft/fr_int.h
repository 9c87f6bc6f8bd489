/* fr_int.h: internals shared by the raft/ sources (node, peer links, wire codec, groups); includes the library's headers. */
#ifndef FERRY_RAFT_FR_INT_H
#define FERRY_RAFT_FR_INT_H

#include <limits.h>
#include <raft.h>
#include <raft/uv.h>
#include <stdbool.h>

#include "ferry_raft.h"
#include "net/conn.h"

#define FR_HOST_MAX 255
#define FR_ADDR_MAX (FR_HOST_MAX + 8)
#define FR_IDSTR_MAX 24

/* Reconnect backoff of a dialer: doubles from MIN to MAX, reset once a hello completes. */
#define FR_REDIAL_MIN_MS 50
#define FR_REDIAL_MAX_MS 1000
/* A peer whose connection holds more than this unsent is not given new messages (they are dropped
 * and Raft resends); keeps a slow or stuck peer from pinning memory. */
#define FR_PEER_MAX_BACKLOG (64u * 1024 * 1024)
/* An accepted connection must say hello within this long. */
#define FR_HELLO_TIMEOUT_MS 5000

enum fr_frame_kind {
    FR_FRAME_HELLO = 1,
    FR_FRAME_RAFT = 2,
    FR_FRAME_PING = 3,    /* liveness: one per link per half heartbeat interval (quiesce.c) */
    FR_FRAME_QUIESCE = 4, /* groups going quiet / waking up, coalesced per peer (quiesce.c) */
    FR_FRAME_RPC = 5,     /* requests and responses between brokers (rpc.c) */
};
/* hello flags (u16): what the sender speaks. Peers that predate them send 0. */
#define FR_HELLO_F_LIVENESS 0x1 /* sends and understands ping and quiesce frames */
#define FR_HELLO_F_RPC 0x2      /* understands rpc frames (rpc.c) */
#define FR_HELLO_F_RPC_ONLY 0x4 /* this connection carries rpc frames only (rpc.c: a joining broker) */
#define FR_RPC_HDR_LEN 12       /* kind, type, status u16, request id u64 */
#define FR_PING_LEN 4           /* kind, flags = 0, reserved u16 = 0 */
#define FR_QUIESCE_HDR_LEN 8    /* kind, op, reserved u16, count u32 */
#define FR_QUIET_ENTRY_LEN 32   /* group id, term, commit index, last index (u64 each) */
#define FR_WAKE_ENTRY_LEN 8     /* group id */
enum fr_quiesce_op {
    FR_QOP_QUIET = 1, /* leader -> follower: these groups send no heartbeats from now on */
    FR_QOP_WAKE = 2,  /* either way: these groups are awake again (or refused to go quiet) */
};
/* A leader's group goes quiet after this many node ticks (half heartbeat intervals) without a
 * change of term, last index or commit index: three heartbeat intervals. */
#define FR_QUIET_AFTER_TICKS 6
/* Each refusal by a follower doubles that wait, up to 2^this times. */
#define FR_QUIET_MAX_BACKOFF 5
/* A follower that answers AppendEntries this many times in a row with a last index below what it
 * had acknowledged in this term has lost its log (wiped data dir): see quiesce.c. */
#define FR_STUCK_REJECTS 2
#define FR_PROTO_VERSION 1
#define FR_HELLO_LEN 20 /* kind, version, flags(2), cluster id (8), node id (8) */
#define FR_RAFT_HDR_LEN 12 /* kind, type, msg version, reserved, group id (8) */

struct fr_link;

/* One group in a quiesce frame (term, commit and last are 0 in a wake). */
struct fr_q_entry {
    uint64_t group_id, term, commit, last;
};

struct fr_peer {
    struct fr_node *node;
    uint64_t id;
    bool muted; /* test hook (fr_node_test_mute_peer): frames to and from it vanish */
    char idstr[FR_IDSTR_MAX]; /* the Raft address: the id in decimal */
    char host[FR_HOST_MAX + 1];
    int port;
    char addr[FR_ADDR_MAX]; /* "host:port" */
    struct fr_link *link;   /* the connection that carries our traffic (hello done), or NULL */
    struct fr_link *dialing; /* dialer side: the attempt in progress, or NULL */
    uv_timer_t redial;       /* dialer side: next attempt */
    unsigned backoff_ms;
    bool redial_closed;
    /* quiesce.c: entries waiting to leave in one coalesced quiesce frame per op (fr_q flush). */
    struct fr_q_entry *q_wake, *q_quiet;
    unsigned n_wake, cap_wake, n_quiet, cap_quiet;
};

struct fr_link {
    struct fr_node *node;
    struct fr_peer *peer; /* acceptor: NULL until the hello names it */
    struct ferry_conn *conn;
    bool dialer;
    bool ready; /* hello exchanged: raft frames may flow */
    uint64_t opened_ms;
    uint64_t last_recv_ms;  /* when any frame last arrived (liveness) */
    uint64_t last_synth_ms; /* when quiet groups led by this peer last got a local heartbeat */
    uint16_t peer_flags;    /* the peer's hello flags (FR_HELLO_F_*) */
    bool silent;            /* liveness peer: nothing arrived for the link timeout */
    struct fr_link *prev, *next; /* node->links */
    /* rpc.c (added for requests between brokers): a request-only connection (peer stays NULL,
     * rpc_peer names the other end), and the serial that fr_rpc_from.link refers to (0 = none yet). */
    bool rpc_only;
    uint64_t rpc_peer;
    uint64_t serial;
};

/* A send whose bytes were queued (or dropped): raft's callback runs later from the loop. */
struct fr_send_done {
    struct fr_group *group;
    struct raft_io_send *req;
    raft_io_send_cb cb;
    int status;
};

struct fr_node {
    uv_loop_t *loop;
    uint64_t id;
    uint64_t cluster_id;
    char idstr[FR_IDSTR_MAX];
    char host[FR_HOST_MAX + 1];
    int port;
    char addr[FR_ADDR_MAX];
    char data_dir[PATH_MAX];
    struct ferry_tls_ctx *tls_server, *tls_client;
    char tls_server_name[FR_HOST_MAX + 1];
    bool has_tls_server_name;

    uv_tcp_t listener;
    uv_idle_t done_idle; /* fires queued send callbacks */
    uv_timer_t hello_timer; /* closes accepted connections that never said hello */

    struct fr_peer **peers;
    unsigned n_peers, cap_peers;
    struct fr_link *links; /* every live connection (accepted, dialled) */

    /* Groups by id: a sorted array (binary search; inserts are rare). */
    struct fr_group **groups;
    unsigned n_groups, cap_groups;

    struct fr_send_done *done;
    unsigned n_done, cap_done;

    /* Scratch buffer for encoding one frame. */
    uint8_t *scratch;
    size_t scratch_cap;

    struct fr_node_stats stats;

    /* Liveness and quiescence (quiesce.c). */
    uv_timer_t q_timer;        /* every ping_ms: pings, silence checks, quiescence decisions */
    unsigned ping_ms;          /* half the heartbeat interval */
    unsigned hb_ms;            /* heartbeat interval */
    unsigned link_timeout_ms;  /* a liveness link with nothing received for this long is silent */
    bool quiesce;              /* this node quiesces idle groups and accepts quiet groups */
    struct fr_group *synth;    /* the group a local heartbeat is being fed to (its answer is dropped) */
    bool synth_rejected;       /* that heartbeat was rejected: the group wakes */
    bool fo_due;               /* failover.c: a group's own round is due; run from the done idle */

    bool stopping;
    unsigned closing; /* handles, links and groups still closing during stop */
    fr_node_stop_cb stop_cb;
    void *stop_arg;

    /* rpc.c (added for requests between brokers): the handler, requests awaiting an answer (a
     * list; few at a time), and a sweep timer for their timeouts and for sending the ones that
     * wait for a connection. */
    void (*rpc_handler)(void *arg, const struct fr_rpc_from *from, const uint8_t *body, size_t len);
    void *rpc_arg;
    struct fr_rpc_req *rpc_pending;
    uint64_t rpc_next_id;
    uint64_t link_serial;
    uv_timer_t rpc_timer;
};

enum fr_group_state {
    FR_GROUP_OPEN,    /* raft_init done, not started */
    FR_GROUP_STARTED, /* raft_start done */
    FR_GROUP_CLOSING,
};

/* Quiescence state of a group (quiesce.c); zero = awake, nothing tracked. */
enum fr_q_state {
    FR_Q_AWAKE = 0,
    FR_Q_LEADER,   /* quiet, led here: heartbeats are not sent, live followers' results synthesized */
    FR_Q_FOLLOWER, /* quiet, followed here: the leader's heartbeat is synthesized while its link is live */
};

/* What a leader knows of one follower in its current term. */
struct fr_q_follower {
    uint64_t id;
    uint64_t acked;       /* highest last_log_index it acknowledged (successful results, this term) */
    uint64_t last_ok_ms;  /* when a successful result last arrived */
    unsigned stuck;       /* rejections below `acked` in a row */
    uint64_t synth_ms;    /* when a result was last synthesized for it (quiet leader) */
    uint16_t features, capacity; /* from its last result, replayed in synthesized results */
    uint8_t version;
};

struct fr_group_q {
    enum fr_q_state state;
    unsigned stable_ticks; /* node ticks with (term, last, commit) unchanged */
    unsigned quiet_ticks;  /* FR_Q_LEADER: node ticks since it went quiet */
    unsigned refusals;     /* recent WAKEs from followers of a quiet leader (backoff exponent) */
    uint64_t term, last, commit; /* snapshot (awake) or the quiet values */
    uint64_t leader;             /* FR_Q_FOLLOWER: the leader's node id */
    /* Follower side: the leader's log position as its last AppendEntries told (index, term). */
    uint64_t seen_index, seen_term;
    uint64_t seen_by, seen_msg_term; /* the sender and term of that AppendEntries */
    uint8_t ae_version;
    /* Leader side: per-follower tracking for this term. */
    uint64_t track_term;
    struct fr_q_follower *fol;
    unsigned n_fol, cap_fol;
    uint64_t last_stuck_transfer_ms;
};

/* Failover state of a group (failover.c): set while this replica has given up on a leader whose
 * node is gone, until a leader is known again. Zero = nothing in progress. */
struct fr_group_fo {
    uint64_t leader;   /* the leader given up on (0 = none) */
    uint64_t term;     /* the term it was given up in */
    bool campaign;     /* first by rank: its pre-vote goes out at once */
    bool suppress;     /* another voter goes first: its pre-vote requests of that term are not sent */
    uint64_t retry_ms; /* when (uv_now) to run its own pre-vote round if still no leader (0 = never) */
    int rank;          /* among the surviving voters (0 = first) */
    uint64_t since_ms; /* when it first gave up on that leader */
    uint64_t round_ms; /* when its last pre-vote round started (campaigning) */
    /* When it last refused a pre-vote because it still had a leader, and in which term: giving up
     * soon after, it campaigns whatever its rank (that candidate's round already failed). */
    uint64_t refused_ms, refused_term;
};

struct fr_group {
    struct fr_node *node;
    uint64_t id;
    char name[FR_GROUP_NAME_MAX];
    char dir[PATH_MAX];
    struct fr_fsm user;
    enum fr_group_state state;

    struct raft_uv_transport transport;
    struct raft_io io;
    struct raft_fsm fsm;
    struct raft raft;
    struct raft_tracer *tracer; /* FERRY_RAFT_VERBOSE only */

    /* raft_uv's own methods, wrapped. */
    int (*uv_start)(struct raft_io *io, unsigned msecs, raft_io_tick_cb tick, raft_io_recv_cb recv);
    void (*uv_close)(struct raft_io *io, raft_io_close_cb cb);
    raft_io_recv_cb recv_cb; /* raft's receive entry point, captured at start */

    /* Role reporting (fr_fsm.on_role). */
    int last_is_leader;
    uint64_t last_leader;
    uint64_t last_term;

    fr_group_close_cb close_cb;
    void *close_arg;
    bool close_requested;

    struct fr_group_q q; /* quiesce.c; zeroed by calloc */

    /* group.c: the settings applied at the real open, and the deferred open (defer_open). */
    struct fr_group_config cfg; /* copy; name and fsm are not used from it */
    bool has_raft;              /* raft_uv_init and raft_init done (g->io and g->raft are live) */
    bool start_requested;       /* deferred: fr_group_start was called */
    uint64_t *boot_ids;         /* deferred: fr_group_bootstrap's members (malloc'd), or NULL */
    unsigned n_boot;
    struct fr_group *open_next; /* deferred: the node's open queue (group.c) */
    bool queued;
    /* group.c: raft's tick, driven by the node's shared ticker instead of raft_uv's own timer. */
    raft_io_tick_cb tick_cb;
    unsigned tick_ms;
    bool ticking;
    /* group.c: raft's clock is raft_uv's (uv_now) plus this skew, which only grows: failover.c
     * moves it forward so the election timer of a replica whose leader is gone runs out now. */
    raft_time (*uv_time)(struct raft_io *io);
    uint64_t time_skew;
    struct fr_group_fo fo; /* failover.c; zeroed by calloc */
    /* group.c: an InstallSnapshot that arrives while this replica takes a snapshot of its own waits
     * until the take completes (libraft 0.22.1 dereferences NULL otherwise; docs/jepsen.md, finding 1).
     * recv_cb above is then group.c's filter and lib_recv raft's own entry point. */
    raft_io_recv_cb lib_recv;
    int (*uv_snapshot_put)(struct raft_io *io, unsigned trailing, struct raft_io_snapshot_put *req,
                           const struct raft_snapshot *snapshot, raft_io_snapshot_put_cb cb);
    raft_io_snapshot_put_cb take_cb; /* the library's callback of the take in flight */
    void *take_data;                 /* its req->data, restored before that callback */
    bool taking;                     /* a take's snapshot_put is in flight */
    bool has_held;
    struct raft_message held; /* owns the decoder's buffers while has_held */
};

/* wire.c */
/* Encodes msg for `group_id` as one whole frame (length prefix included) into the node's scratch
 * buffer; returns FR_OK with *frame and *len set, FR_ERR_TOO_BIG or FR_ERR_NOMEM. */
int fr_wire_encode(struct fr_node *n, uint64_t group_id, const struct raft_message *msg, const uint8_t **frame,
                   size_t *len);
/* Decodes the body of a RAFT frame (payload after the 4-byte length) into msg; every buffer Raft
 * takes ownership of (entries array, entry batch, snapshot data, configuration) comes from
 * raft_malloc. On error nothing is left allocated; errmsg says why. */
int fr_wire_decode(const uint8_t *p, size_t len, struct raft_message *msg, uint64_t *group_id, char *errmsg,
                   size_t errmsg_len);
void fr_wire_put_hello(uint8_t *out /* 4 + FR_HELLO_LEN */, uint64_t cluster_id, uint64_t node_id);
/* The same with hello flags (FR_HELLO_F_*). */
void fr_wire_put_hello_flags(uint8_t *out /* 4 + FR_HELLO_LEN */, uint64_t cluster_id, uint64_t node_id,
                             uint16_t flags);
void fr_wire_put_ping(uint8_t *out /* 4 + FR_PING_LEN */);
/* Most groups in one quiesce frame (a longer list is sent as several frames). */
#define FR_QUIESCE_MAX_ENTRIES 65536u
/* Encodes a quiesce frame (length prefix included) into the node's scratch buffer; count must be
 * 1..FR_QUIESCE_MAX_ENTRIES. FR_OK or FR_ERR_NOMEM. */
int fr_wire_encode_quiesce(struct fr_node *n, enum fr_quiesce_op op, const struct fr_q_entry *e, unsigned count,
                           const uint8_t **frame, size_t *len);
/* Checks a quiesce frame's payload (after the length) exactly: known op, count matching the bytes.
 * FR_OK with *op and *count set, or FR_ERR_INVALID with errmsg. */
int fr_wire_check_quiesce(const uint8_t *p, size_t len, enum fr_quiesce_op *op, unsigned *count, char *errmsg,
                          size_t errmsg_len);
/* Entry i of a checked quiesce frame. */
void fr_wire_get_quiesce_entry(const uint8_t *p, enum fr_quiesce_op op, unsigned i, struct fr_q_entry *e);

/* node.c */
struct fr_group *fr_node_find_group(struct fr_node *n, uint64_t id);
int fr_node_add_group(struct fr_node *n, struct fr_group *g);
void fr_node_remove_group(struct fr_node *n, struct fr_group *g);
/* Queues msg to its destination; the send callback is always deferred (status 0 or RAFT_NOCONNECTION). */
int fr_node_send(struct fr_node *n, struct fr_group *g, struct raft_io_send *req, const struct raft_message *msg,
                 raft_io_send_cb cb);
/* Fires now, with status 0, every deferred send callback of g (its log is about to close). */
void fr_node_flush_sends(struct fr_node *n, struct fr_group *g);
struct fr_peer *fr_node_find_peer(const struct fr_node *n, uint64_t id);
/* mkdir -p path (mode 0755). */
int fr_mkdir_p(const char *path, char *errmsg, size_t errmsg_len);
/* A group finished closing during a node stop. */
void fr_node_group_closed(struct fr_node *n);

/* Sends a non-Raft frame (whole, length prefix included) on a ready link and counts it by kind.
 * Returns 0 or the transport's error. */
int fr_link_send(struct fr_link *l, const uint8_t *frame, size_t len);
/* The link that carries traffic to peer id if it is ready and not muted, else NULL. */
struct fr_link *fr_node_live_link(struct fr_node *n, uint64_t id);

/* quiesce.c: node liveness (pings, silent links) and quiescence of idle groups. */
/* Starts the node's quiescence timer (from fr_node_start, after the loop handles exist). */
void fr_q_start(struct fr_node *n);
/* A link became ready (hello done) / closed / turned silent or live again: every group with that
 * peer wakes (its leader resumes real heartbeats, its followers stop synthesizing them). */
void fr_q_peer_changed(struct fr_node *n, uint64_t peer_id);
/* A ping frame from l (already counted): feeds quiet groups with that peer. */
void fr_q_on_ping(struct fr_link *l, const uint8_t *payload, size_t len);
/* A quiesce frame from l: closes the link when malformed. */
void fr_q_on_quiesce(struct fr_link *l, const uint8_t *payload, size_t len);
/* Before a received Raft message is delivered to g: wakes g unless the message is benign for a
 * quiet group; records a leader's follower results. */
void fr_q_before_recv(struct fr_group *g, uint64_t from, const struct raft_message *msg);
/* After delivery: acts on a follower that lost its log (leadership transfer). */
void fr_q_after_recv(struct fr_group *g, uint64_t from, const struct raft_message *msg);
/* Before g sends msg. Returns true if the message must be dropped silently (a heartbeat of a quiet
 * leader, or the answer to a synthesized heartbeat); wakes g when msg is real traffic. */
bool fr_q_filter_send(struct fr_group *g, const struct raft_message *msg);
/* g is leaving the node (closed): wakes it and frees its tracking. */
void fr_q_group_gone(struct fr_group *g);

/* failover.c: fast elections once a group's leader's node is known to be gone (docs/replication.md,
 * "Failover"). Liveness only: the library still decides every vote by its own rules. */
/* The link to peer_id closed or turned silent: every group followed here with that leader gives
 * up on it (the first surviving voter by rank starts a pre-vote at once, the others stand by). */
void fr_fo_peer_lost(struct fr_node *n, uint64_t peer_id);
/* Before a received message is delivered to g: a vote request while g's leader is unreachable
 * makes g give up on that leader first (else the library refuses it: "has a leader"). */
void fr_fo_before_recv(struct fr_group *g, uint64_t from, const struct raft_message *msg);
/* From fr_q_filter_send: true if msg must not leave (a standing-by replica's pre-vote request). */
bool fr_fo_filter_send(struct fr_group *g, const struct raft_message *msg);
/* Every node tick (quiesce.c's timer), and on the loop iteration after a group's own round became due
 * (node.c's send-callback idle, n->fo_due): retries and staggered fallbacks of groups failing over. */
void fr_fo_tick(struct fr_node *n, uint64_t now);

/* rpc.c: requests between brokers. */
struct fr_rpc_req;
/* From fr_node_start, after the loop handles exist: the sweep timer (closed by fr_node_stop). */
void fr_rpc_init(struct fr_node *n, const struct fr_node_config *cfg);
/* From fr_node_stop: every pending request fails with FR_ERR_SHUTDOWN (callbacks run now). */
void fr_rpc_stop(struct fr_node *n);
/* A hello on a request-only link: l->rpc_only set (the dialer's), or an accepted link whose hello
 * has FR_HELLO_F_RPC_ONLY. Answers / checks the hello and marks the link ready, or closes it. */
void fr_rpc_on_hello(struct fr_link *l, uint64_t id);
/* An rpc frame on a ready link (a request to the handler, or the answer to a pending request). */
void fr_rpc_on_frame(struct fr_link *l, const uint8_t *payload, size_t len);
/* node.c: dials a request-only link to p (its address); FR_OK, or an error (nothing to undo). */
int fr_node_dial_rpc(struct fr_node *n, struct fr_peer *p);

/* group.c */
int fr_status_from_raft(int rv);
/* Closes g as part of a node stop (no-op if it is already closing); it reports through
 * fr_node_group_closed when done. */
void fr_group_close_for_stop(struct fr_group *g);

#endif
