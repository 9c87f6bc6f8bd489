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
};
#define FR_PROTO_VERSION 1
#define FR_HELLO_LEN 20 /* kind, version, flags(2), cluster id (8), node id (8) */
#define FR_RAFT_HDR_LEN 12 /* kind, type, msg version, reserved, group id (8) */

struct fr_link;

struct fr_peer {
    struct fr_node *node;
    uint64_t id;
    char idstr[FR_IDSTR_MAX]; /* the Raft address: the id in decimal */
    char host[FR_HOST_MAX + 1];
    int port;
    char addr[FR_ADDR_MAX]; /* "host:port" */
    struct fr_link *link;   /* the connection that carries our traffic (hello done), or NULL */
    struct fr_link *dialing; /* dialer side: the attempt in progress, or NULL */
    uv_timer_t redial;       /* dialer side: next attempt */
    unsigned backoff_ms;
    bool redial_closed;
};

struct fr_link {
    struct fr_node *node;
    struct fr_peer *peer; /* acceptor: NULL until the hello names it */
    struct ferry_conn *conn;
    bool dialer;
    bool ready; /* hello exchanged: raft frames may flow */
    uint64_t opened_ms;
    struct fr_link *prev, *next; /* node->links */
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

    bool stopping;
    unsigned closing; /* handles, links and groups still closing during stop */
    fr_node_stop_cb stop_cb;
    void *stop_arg;
};

enum fr_group_state {
    FR_GROUP_OPEN,    /* raft_init done, not started */
    FR_GROUP_STARTED, /* raft_start done */
    FR_GROUP_CLOSING,
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

/* group.c */
int fr_status_from_raft(int rv);
/* Closes g as part of a node stop (no-op if it is already closing); it reports through
 * fr_node_group_closed when done. */
void fr_group_close_for_stop(struct fr_group *g);

#endif
