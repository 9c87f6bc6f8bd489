/* broker.h: the broker object shared by the lifecycle (broker.c), connections (server.c) and handlers. */
#ifndef FERRYD_BROKER_H
#define FERRYD_BROKER_H

#include <msgpack.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "net/conn.h"
#include "producer_ids.h"
#include "topics.h"

struct ferryd_client; /* one accepted connection (server.c) */

struct ferryd {
    uv_loop_t *loop;
    const struct ferryd_config *cfg;
    struct ferryd_topics *topics;
    struct ferryd_pids *pids; /* producer id allocator (producer_ids.h); opened on first InitProducerId */
    struct ferry_tls_ctx *tls; /* NULL in plaintext */
    uv_tcp_t listener;
    uv_timer_t roll_timer;
    uv_timer_t retention_timer;
    uv_timer_t conn_timer; /* handshake and idle deadlines of connections (server.c); with the listener */
    char bound_host[64]; /* the address actually bound (listen may ask for port 0) */
    int bound_port;
    int bound_v6;
    char advertised_host[256]; /* what Metadata tells clients */
    int advertised_port;
    struct ferryd_client *clients; /* every connection not yet closed */
    uint32_t nconns;               /* connections in `clients` */
    uint32_t nserved;              /* of which counted against max.connections */
    int listening;
    int stopping;      /* graceful stop started: no new connections or requests */
    int closing_conns; /* every request answered: connections are closing */
    int stop_hold; /* ferryd_stop is walking connections and partitions: make no progress yet */
    int topics_closed;
    struct ferryd_cluster *cluster; /* NULL standalone (cluster.members empty) */
    int cluster_stopping, cluster_stopped;
    int handing_off; /* graceful stop: leaderships are being transferred before the stop proper */
    struct ferryd_coord *coord; /* the group coordinator (groups/coordinator.h) */
};

/*
 * Starts the broker on loop: opens the topic registry (recovering every log), builds the TLS
 * context, binds and listens, writes ready.file, starts the roll and retention timers. cfg must
 * outlive the broker. Returns 0, or -1 with errmsg (the broker is then fully torn down, but
 * handles it initialized may still need a uv_run to close; run the loop once before uv_loop_close).
 */
int ferryd_start(struct ferryd *b, uv_loop_t *loop, const struct ferryd_config *cfg, char *errmsg,
                 size_t errmsg_len);

/*
 * Graceful stop: stop accepting and reading requests, answer parked fetches with what they have,
 * let in-flight syncs finish and answer their produces, close connections (flushing responses),
 * close the logs. Returns at once; uv_run returns when everything is closed. Idempotent.
 */
void ferryd_stop(struct ferryd *b);

/* Called by server.c and the partition env whenever stopping could make progress. */
void ferryd_stop_progress(struct ferryd *b);

/* ---- server.c ---- */
int ferryd_server_listen(struct ferryd *b, char *errmsg, size_t errmsg_len);
/* Writes ready.file (when configured): the client address, and the peer address in a cluster
 * (peer_host NULL standalone). Returns 0 or -1 with errmsg. */
int ferryd_server_write_ready(struct ferryd *b, const char *peer_host, int peer_port, char *errmsg, size_t errmsg_len);
void ferryd_server_stop_accepting(struct ferryd *b);
/* Pauses every connection and makes parked requests (long polls) answer now. */
void ferryd_server_quiesce(struct ferryd *b);
/* Closes every connection (pending responses are flushed first when possible). */
void ferryd_server_close_all(struct ferryd *b);

/*
 * A request being served. Created by server.c for each decoded frame; the handler ends it with
 * exactly one of ferryd_req_reply, ferryd_req_error or ferryd_req_drop, now or later. Until then it
 * counts against the connection's in-flight cap. It never holds pointers into the frame after the
 * handler returns: handlers copy what they keep.
 */
struct ferryd_req {
    struct ferryd *broker;
    struct ferryd_client *client; /* NULL once the connection closed: answers are dropped */
    struct ferryd_req *prev, *next;
    uint32_t api, version, correlation_id;
    /*
     * Set by a handler that parks the request (Fetch long poll). Called at most once, when the
     * connection closes (client is already NULL: release and ferryd_req_drop) or the broker stops
     * (answer now). The handler clears it when it ends the request by itself.
     */
    void (*abort)(struct ferryd_req *req);
    void *state; /* the handler's */
    /* The request's client_id (not NUL-terminated; NULL if nil), valid only during the handler call. */
    const char *client_id;
    size_t client_id_len;
};

/* Starts a response: frame prefix + header (error 0, no message). The handler packs the body map. */
void ferryd_resp_begin(struct ferryd_req *req, msgpack_sbuffer *sb, msgpack_packer *pk);
/* Finishes the frame and sends it if the connection is still open; destroys sb, ends req. */
void ferryd_req_reply(struct ferryd_req *req, msgpack_sbuffer *sb);
/* Answers with a top-level error code, the formatted message and a nil body; ends req. */
void ferryd_req_error(struct ferryd_req *req, int error, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Ends req without an answer (Produce acks=0). */
void ferryd_req_drop(struct ferryd_req *req);
/*
 * The client's address without the port ("127.0.0.1", "::1"; "" once the connection closed), copied
 * into buf (truncated to buf_size - 1 bytes); returns its length. GroupHeartbeat records it as the
 * member's host.
 */
size_t ferryd_req_peer_host(const struct ferryd_req *req, char *buf, size_t buf_size);

#endif
