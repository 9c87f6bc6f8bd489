/* ferry_int.h: libferry internals shared by the files of client/src: settings, client state, brokers, requests. */
#ifndef FERRY_INT_H
#define FERRY_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "ferry.h"
#include "net/conn.h"
#include "proto/clock.h"
#include "proto/batch.h"
#include "proto/codec.h"
#include "proto/limits.h"

/*
 * Threading model (one client):
 *
 *   application threads                      I/O thread (owns loop, brokers, topics, batches)
 *   ------------------                       -------------------------------------------------
 *   ferry_produce  -> cl->in_recs  --lock-->  drains in_recs, partitions, batches, sends
 *   ferry_admin_*  -> cl->ops_in   --lock-->  dispatches ops, completes them (cond broadcast)
 *   ferry_assign/seek -> cl->asg   --lock-->  syncs fetch state from cl->asg when its epoch moved
 *   ferry_poll     <- cl->drs      <-lock---  delivery reports
 *   consumer_poll  <- cl->msgs     <-lock---  fetched messages (epoch-checked under the lock)
 *
 * Everything under "shared" in struct ferry_client is protected by cl->lock; everything under
 * "I/O thread only" is touched only on the loop thread (and by close after the thread is joined).
 * uv_async_send is only called with cl->lock held and while !cl->io_stopped, so it never races
 * with the async handle being closed.
 */

/* Reconnect backoff doubles from retry.backoff.ms up to this. */
#define FERRY_RECONNECT_BACKOFF_MAX_MS 10000
/* The I/O thread wakes at least this often for timeouts. */
#define FERRY_HOUSEKEEPING_MS 100
/* Bytes a record costs beyond key, value and header payloads (varints, attributes), an upper bound. */
#define FERRY_RECORD_OVERHEAD 64

/* ---- settings (conf.c) ---- */

enum { FERRY_RESET_EARLIEST = 0, FERRY_RESET_LATEST = 1, FERRY_RESET_ERROR = 2 };

/* Typed view of a validated configuration, built at ferry_client_new. Strings are owned. */
struct ferry_settings {
    char *bootstrap_servers;
    char *client_id;
    int64_t tls; /* 1 = tls, 0 = plaintext */
    char *ca_location;
    char *cert_location;
    char *key_location;
    int64_t verify_name; /* ssl.endpoint.identification: 1 = https, 0 = none */
    int64_t acks;
    int64_t linger_ms;
    int64_t batch_size;
    int64_t compression;
    int64_t max_inflight;
    int64_t queue_max_msgs;
    int64_t queue_max_kbytes;
    int64_t max_block_ms;
    int64_t request_timeout_ms;
    int64_t delivery_timeout_ms;
    int64_t retry_backoff_ms;
    int64_t retry_backoff_max_ms; /* cap of the leaderless metadata refresh backoff (metadata.c) */
    int64_t topic_propagation_max_ms; /* topic.metadata.propagation.max.ms (metadata.c cache_update) */
    int64_t metadata_max_age_ms;
    int64_t fetch_max_wait_ms;
    int64_t fetch_min_bytes;
    int64_t fetch_max_bytes;
    int64_t max_partition_fetch_bytes;
    int64_t auto_offset_reset;
    int64_t conn_setup_timeout_ms;
    int64_t idempotence; /* enable.idempotence, after the acks rule (conf.c): 1 = on */
    /* consumer groups (group.c) */
    char *group_id;          /* "" = no group */
    char *group_instance_id; /* "" = dynamic member */
    int64_t enable_auto_commit;
    int64_t auto_commit_interval_ms;
    int64_t session_timeout_ms;
    int64_t heartbeat_interval_ms;
    int64_t max_poll_interval_ms;
    ferry_rebalance_cb_t *rebalance_cb; /* copied from the conf (not table settings) */
    ferry_commit_cb_t *commit_cb;
};

struct ferry_conf {
    char **values; /* one per table entry; NULL = default */
    ferry_delivery_cb_t *delivery_cb;
    ferry_log_cb_t *log_cb;
    void *opaque;
    ferry_rebalance_cb_t *rebalance_cb;
    ferry_commit_cb_t *commit_cb;
};

/* Fills s from conf (values already validated by ferry_conf_set). Returns 0 or -1 (no memory). */
int ferry_settings_load(const ferry_conf_t *conf, struct ferry_settings *s, char *errstr, size_t errstr_size);
void ferry_settings_free(struct ferry_settings *s);

/* ---- small helpers (client.c) ---- */

int64_t ferry_now_ms(void); /* monotonic */
void ferry_strlcpy(char *dst, const char *src, size_t size);
/* snprintf into errstr if errstr != NULL && size > 0. */
void ferry_set_errstr(char *errstr, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---- brokers and requests (broker.c) ---- */

struct ferry_client;
struct broker;

enum broker_state { BROKER_DOWN, BROKER_CONNECTING, BROKER_HANDSHAKE, BROKER_UP };

/*
 * A response (rh != NULL, err == 0) or a failure (err != 0, errmsg says why, rh == NULL): every
 * request's callback runs exactly once, on the I/O thread, also when the client stops (then err is
 * FERRY_ERR__DESTROYED and the callback must only release arg).
 */
typedef void request_cb_t(struct ferry_client *cl, struct broker *b, int err, const char *errmsg,
                          const struct ferry_response_header *rh, void *arg);

struct request {
    struct request *next;
    uint32_t corr;
    int api;
    int64_t deadline_ms;
    request_cb_t *cb;
    void *arg;
};

struct broker {
    struct broker *next;
    struct ferry_client *cl;
    int32_t id;      /* >= 0 from metadata; < 0 for bootstrap addresses */
    char *host;
    int port;
    bool in_metadata; /* listed by the last metadata response (or a bootstrap address) */
    enum broker_state state;
    struct ferry_conn *conn;
    int64_t state_since_ms;
    int64_t next_attempt_ms;
    int64_t backoff_ms;
    struct request *inflight; /* in send order */
    struct request *inflight_tail;
    int n_inflight;
    int n_produce_inflight;
    bool fetch_inflight;
    bool offsets_inflight;
    int close_err; /* error given to in-flight requests when the conn closes */
    /* Non-retriable failure of the last connection attempt, 0 if none: FERRY_ERR__TLS (handshake or
     * certificate refused) or FERRY_ERR__TRANSPORT (a plaintext connection closed by the broker
     * during the ApiVersions handshake: most likely a TLS listener). Cleared when a connection
     * comes up or fails in a retriable way. See classify_setup_failure (broker.c). */
    int setup_err;
    int setup_refusals; /* consecutive attempts that ended in a (possible) refusal */
    char setup_errmsg[256];
};

/* Parses bootstrap.servers into broker entries (ids -1, -2, ...). Returns 0 or -1 with errstr. */
int ferry_brokers_bootstrap(struct ferry_client *cl, const char *servers, char *errstr, size_t errstr_size);
struct broker *ferry_broker_by_id(struct ferry_client *cl, int32_t id);
/* Adds or updates a broker from metadata. Returns NULL when out of memory. */
struct broker *ferry_broker_upsert(struct ferry_client *cl, int32_t id, const char *host, size_t host_len, int port);
/* Starts connecting if the broker is down and its backoff has passed. */
void ferry_broker_want(struct ferry_client *cl, struct broker *b);
/* A broker that is UP for cluster-wide requests (metadata, admin): the controller or any known one,
 * else a bootstrap address. NULL if none is up (and connecting to one has been started). */
struct broker *ferry_broker_any_up(struct ferry_client *cl);
/*
 * Begins a request: returns the correlation id and sets up pk/sb with the frame and request header
 * for api; the caller packs the body map and calls ferry_request_send.
 */
uint32_t ferry_request_begin(struct ferry_client *cl, msgpack_sbuffer *sb, msgpack_packer *pk, int api);
/*
 * Sends the frame built in sb (and destroys sb). With cb == NULL no response is expected (acks=0).
 * Returns 0; or an error code, in which case cb is NOT called and the caller keeps arg.
 * extra_timeout_ms extends the request timeout (the long poll of Fetch).
 */
int ferry_request_send(struct ferry_client *cl, struct broker *b, msgpack_sbuffer *sb, uint32_t corr, int api,
                       int64_t extra_timeout_ms, request_cb_t *cb, void *arg);
/* Per-pass broker housekeeping: connection setup and request timeouts. */
void ferry_brokers_service(struct ferry_client *cl, int64_t now);
/* Starts closing every connection (client stopping). */
void ferry_brokers_close_all(struct ferry_client *cl);
void ferry_brokers_free(struct ferry_client *cl);

/* ---- metadata cache (metadata.c) ---- */

/* A topic the I/O thread knows: the producer's and consumer's topics and those asked about. */
enum topic_state { TOPIC_UNKNOWN, TOPIC_KNOWN, TOPIC_NOT_EXIST };

struct ppart;

struct ctopic {
    struct ctopic *next;
    char *name;
    enum topic_state state;
    int topic_err;         /* error of the last metadata answer about it */
    int32_t partition_count;
    int32_t *leaders;      /* partition_count entries, -1 = no leader */
    struct ppart **pparts; /* producer partitions (partition_count entries), or NULL */
    int32_t sticky;        /* keyless records go here; -1 = pick one */
    int32_t sticky_prev;   /* the previous sticky partition: the next pick avoids it */
    int64_t first_used_ms;        /* when the client first referred to it (topic.metadata.propagation.max.ms) */
    struct precord *pending;      /* producer records waiting for metadata */
    struct precord *pending_tail;
};

struct ctopic *ferry_topic_get(struct ferry_client *cl, const char *name, bool create);
int32_t ferry_topic_leader(const struct ctopic *t, int32_t partition); /* -1 unknown */
/* Asks for a metadata refresh at the next opportunity. */
void ferry_metadata_refresh(struct ferry_client *cl, const char *why);
/* Once per producer pass: whether a partition with queued records has no reachable leader (none
 * known, or its broker is down in its reconnect backoff). While so, metadata is refreshed every
 * retry.backoff.ms, doubling up to retry.backoff.max.ms; a pass without one resets that. */
void ferry_metadata_leaderless(struct ferry_client *cl, bool any);
/* Sends a metadata request when one is due. */
void ferry_metadata_service(struct ferry_client *cl, int64_t now);
/*
 * Parses a Metadata response body into a ferry_metadata_t (and updates the broker list and topic
 * cache). Returns NULL with errmsg on a malformed body.
 */
ferry_metadata_t *ferry_metadata_parse(struct ferry_client *cl, const msgpack_object *body, char *errmsg,
                                       size_t errmsg_len);
/* Packs a Metadata request body for topics (NULL = all). */
void ferry_metadata_pack_request(msgpack_packer *pk, const char *const *topics, size_t n);
void ferry_topics_free(struct ferry_client *cl);

/* ---- blocking operations handed to the I/O thread (admin.c) ---- */

enum op_type { OP_METADATA, OP_CREATE_TOPIC, OP_DELETE_TOPIC, OP_LIST_OFFSETS };

struct op {
    struct op *next;
    enum op_type type;
    int64_t deadline_ms;
    bool sent;      /* a request for it is in flight (I/O thread) */
    bool done;      /* result ready (shared) */
    bool abandoned; /* the caller timed out; whoever completes frees (shared) */
    int64_t retry_at_ms;
    /* arguments */
    char **topics;
    size_t topic_count;
    int32_t partitions;
    int32_t replication_factor;
    char **config_keys;
    char **config_values;
    size_t config_count;
    int32_t partition;
    int64_t timestamp;
    /* results */
    ferry_err_t err;
    char errstr[512];
    ferry_metadata_t *md; /* OP_METADATA result */
    int64_t offset;
};

/* I/O thread: dispatches waiting ops, fails those past their deadline. */
void ferry_ops_service(struct ferry_client *cl, int64_t now);
/* I/O thread: fails every op (client stopping). */
void ferry_ops_fail_all(struct ferry_client *cl, ferry_err_t err, const char *why);
void ferry_op_free(struct op *op);

/* ---- producer (producer.c) ---- */

/* A record as copied by ferry_produce, until it is added to a batch: one block holding the struct
 * and everything it points to, inside a struct rchunk or (when it waits for metadata) its own. */
struct precord {
    struct precord *next;
    struct ctopic *topic; /* resolved on the I/O thread */
    char *topic_name;
    int32_t partition;
    int64_t timestamp;
    int64_t enqueued_ms;
    void *opaque;
    uint8_t *key;   /* NULL = null key */
    size_t key_len;
    uint8_t *value; /* NULL = null value */
    size_t value_len;
    struct ferry_header_view *headers;
    uint32_t header_count;
    size_t size; /* bytes charged against queue.buffering.max.kbytes */
    size_t alloc; /* bytes of the block */
    bool in_chunk; /* lives in a struct rchunk (freed with the chunk), not in an allocation of its own */
};

/*
 * Records on their way from ferry_produce to the I/O thread, packed back to back: one allocation
 * per chunk instead of one per record (and no free of application-thread memory per record on the
 * I/O thread, where glibc's arena lock made that the costliest step of the hand-off). The I/O
 * thread takes every chunk with cl->in_recs and frees them once each record has been added to a
 * batch or completed; a record that must wait for metadata is first copied out of its chunk.
 */
struct rchunk {
    struct rchunk *next;
    size_t used, cap;
    max_align_t data[];
};
/* Capacity of a chunk (a larger record gets a chunk of its own size). */
#define FERRY_RECORD_CHUNK_BYTES (64 * 1024)

/* The reports of one completed batch (or record), one allocation: n views, then the topic name and
 * the error message the views share. ferry_poll serves all n. */
struct delivery_report {
    struct delivery_report *next;
    uint32_t n;
    ferry_delivery_t d[];
};

/* I/O thread: takes new records from the application, partitions, seals and sends batches. */
void ferry_producer_service(struct ferry_client *cl, int64_t now);
/* I/O thread: the topic's metadata changed (known, or gone): place or fail its pending records. */
void ferry_producer_topic_updated(struct ferry_client *cl, struct ctopic *t);
/* I/O thread: fails everything queued or in flight with err (client stopping). */
void ferry_producer_purge(struct ferry_client *cl, ferry_err_t err);
void ferry_ppart_free(struct ppart *pp);
void ferry_precord_free(struct precord *r);
/* Frees records and chunks not yet taken by the I/O thread (client destroy, thread gone). */
void ferry_producer_free_incoming(struct ferry_client *cl);
void ferry_report_free(struct delivery_report *r);
/* Earliest future time (> now) a lingering batch or a retry becomes ready; INT64_MAX if none. */
int64_t ferry_producer_next_due(struct ferry_client *cl, int64_t now);

/* ---- consumer (consumer.c) ---- */

/* One assigned partition. Shared fields are under cl->lock; fetch state is the I/O thread's. */
struct cpart {
    struct cpart *next;
    char *topic;
    int32_t partition;
    /* shared */
    int64_t want_offset; /* position requested by assign/seek */
    uint64_t epoch;      /* bumped by every assign/seek of this partition */
    bool removed;        /* no longer assigned: the I/O thread frees it */
    /* I/O thread only */
    uint64_t io_epoch;   /* epoch the fetch state below follows */
    int64_t position;    /* next offset to fetch; FERRY_OFFSET_BEGINNING/END = to be resolved */
    bool fetching;       /* in a fetch or list-offsets request */
    bool stopped;        /* error reported; waits for a seek */
    int64_t retry_at_ms;
    /* consumer groups (shared, cl->lock) */
    bool group_owned;     /* added by the group membership (group.c), not by ferry_assign */
    bool start_error;     /* no committed offset and auto.offset.reset=error: report and stop */
    int64_t app_position; /* offset after the last message handed out, or where a seek put it; -1 unknown */
    bool rewind;          /* ferry_seek moved it below app_position: the next commit says "rewind" */
};

struct ferry_message {
    struct ferry_message *next;
    struct cpart *cp; /* for epoch checks while queued; NULL once handed out */
    uint64_t epoch;
    size_t size;
    ferry_err_t err;
    char *errstr;
    char *topic;
    int32_t partition;
    int64_t offset;
    int64_t timestamp;
    uint8_t *key;
    size_t key_len;
    uint8_t *value;
    size_t value_len;
    struct msg_header {
        char *name;
        uint8_t *value;
        size_t value_len;
    } *headers;
    size_t header_count;
};

void ferry_consumer_service(struct ferry_client *cl, int64_t now);
/*
 * Group membership helpers (cl->lock held). add: a new group-owned partition fetched from offset
 * (>= 0, FERRY_OFFSET_BEGINNING/END); app_position as given (-1 unknown); NULL when out of memory.
 * remove: stops fetching it and drops its queued messages. find: a live (not removed) entry.
 */
struct cpart *ferry_consumer_add_locked(struct ferry_client *cl, const char *topic, int32_t partition,
                                        int64_t offset, int64_t app_position);
void ferry_consumer_remove_locked(struct ferry_client *cl, struct cpart *cp);
struct cpart *ferry_consumer_find_locked(struct ferry_client *cl, const char *topic, int32_t partition);
/* Seeks a partition (cl->lock held): a reset from the coordinator. */
void ferry_consumer_seek_locked(struct ferry_client *cl, struct cpart *cp, int64_t offset);
bool ferry_consumer_is_assigned(struct ferry_client *cl, const char *topic, int32_t partition);
/* Frees the assignment and queued messages (client destroy, loop stopped). */
void ferry_consumer_free(struct ferry_client *cl);

/* ---- the client ---- */

struct ferry_client {
    ferry_type_t type;
    struct ferry_settings s;
    ferry_delivery_cb_t *delivery_cb;
    ferry_log_cb_t *log_cb;
    void *opaque;
    struct ferry_tls_ctx *tls;

    pthread_t thread;
    bool thread_started;
    pthread_mutex_t lock;
    pthread_cond_t cond; /* broadcast on every change an application thread may wait for */

    /* ---- shared (cl->lock) ---- */
    bool closing;     /* ferry_client_close began: new work is refused */
    bool stop_io;     /* the I/O thread must purge, close everything and exit */
    bool io_stopped;  /* the async handle is closed: do not uv_async_send */
    bool closed;
    int flushing;     /* ferry_flush calls in progress: open batches are sent without lingering */
    struct precord *in_recs, *in_recs_tail; /* in produce order, stored in in_chunks */
    struct rchunk *in_chunks, *in_chunk_tail; /* the tail is the one ferry_produce fills */
    struct op *ops_in; /* submitted, not yet taken by the I/O thread */
    struct delivery_report *drs, *drs_tail;
    size_t outq;       /* produced, report not yet served */
    size_t q_msgs;     /* produced, not yet completed (queue.buffering.max.messages) */
    size_t q_bytes;
    struct cpart *asg; /* assignment, including removed entries until the I/O thread drops them */
    uint64_t asg_epoch; /* bumped by assign/seek: the I/O thread re-syncs */
    struct ferry_message *msgs, *msgs_tail;
    size_t msgs_bytes;
    size_t msgs_count;
    bool fetch_starved; /* the I/O thread stopped fetching for queue space: wake it on poll */

    /* ---- I/O thread only ---- */
    uv_loop_t loop;
    uv_async_t wake;
    uv_timer_t timer; /* the next deadline (linger, retries, housekeeping) */
    uv_idle_t kick;   /* a service pass on the next loop iteration */
    bool stopping;
    uint32_t next_corr;
    struct broker *brokers;
    int32_t controller_id;
    struct ctopic *topics;
    bool md_inflight;
    bool md_needed;
    int64_t md_last_ms;
    int64_t md_retry_at_ms;
    /* metadata.c: while a partition with records has no reachable leader, refreshes every
     * md_backoff_ms (retry.backoff.ms doubling to retry.backoff.max.ms); 0 = not leaderless. */
    int64_t md_backoff_ms;
    bool md_leaderless;     /* the next refresh is for a leaderless partition */
    bool md_req_leaderless; /* the refresh in flight is */
    struct op *ops; /* taken from ops_in, in progress */
    uint64_t io_asg_epoch;
    bool io_flushing; /* cl->flushing > 0 at the start of this pass */
    char last_error[256]; /* last connection failure, for timeout messages (written under cl->lock) */
    /* Written by the I/O thread under cl->lock (broker.c): when every candidate broker's last
     * connection attempt failed with a non-retriable error (broker->setup_err), that error and its
     * message, else FERRY_ERR_NONE; blocking calls (admin ops, flush) then fail at once instead of
     * waiting for their timeout. Connections keep being retried with backoff meanwhile. */
    ferry_err_t unreachable_err;
    char unreachable_msg[256];
    int64_t next_partition_seed;
    /* idempotent producer (producer.c): the id from InitProducerId, once obtained */
    enum { PID_NONE, PID_REQUESTING, PID_READY } pid_state;
    int64_t producer_id;
    int16_t producer_epoch;
    int64_t pid_retry_at_ms;
    /* consumer groups (group.c): created on first use under cl->lock, freed at destroy */
    struct ferry_group *grp;
};

/* ---- consumer groups (group.c) ---- */

/* Group ids: 1..255 bytes (docs/consumer-groups.md, Limits: keys of the offsets topic stay small). */
#define FERRY_MAX_GROUP_ID 255
/* Topics one member may subscribe to (the request size). */
#define FERRY_MAX_SUBSCRIBED_TOPICS 1000

/* I/O thread: coordinator lookup, heartbeats, reconciliation, commits, group admin requests. */
void ferry_group_service(struct ferry_client *cl, int64_t now);
/* Application thread inside ferry_consumer_poll, cl->lock NOT held: restarts the processing
 * deadline, rejoins after it expired, and serves rebalance/commit callbacks. */
void ferry_group_poll_begin(struct ferry_client *cl);
void ferry_group_poll_end(struct ferry_client *cl);
/* Serves queued rebalance/commit callbacks on the calling thread (cl->lock NOT held). */
void ferry_group_serve(struct ferry_client *cl);
/* 1 if callbacks wait to be served (cl->lock held). */
bool ferry_group_events_pending_locked(struct ferry_client *cl);
/* 1 if the consumer is subscribed (cl->lock held). */
bool ferry_group_subscribed_locked(struct ferry_client *cl);
/* Frees the group state (client destroy; the I/O thread is gone). */
void ferry_group_free(struct ferry_client *cl);

/* Logs through the log callback (if any). */
void ferry_log(struct ferry_client *cl, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* I/O thread: runs a service pass soon (on this loop iteration's timer phase). */
void ferry_kick(struct ferry_client *cl);
/* Wakes the I/O thread; call with cl->lock held. */
void ferry_wake_locked(struct ferry_client *cl);
/* Waits on cl->cond until deadline_ms (monotonic; -1 = forever). Returns 0, or ETIMEDOUT. Lock held. */
int ferry_cond_wait_until(struct ferry_client *cl, int64_t deadline_ms);
/* Deadline for a timeout argument: -1 (forever) stays -1. */
int64_t ferry_deadline(int timeout_ms);
/*
 * Submits op to the I/O thread and waits until it is done or timeout_ms passes; returns op->err
 * with errstr filled on failure. On FERRY_ERR__TIMED_OUT and FERRY_ERR__DESTROYED the op is no
 * longer the caller's (freed, or freed by the I/O thread when it completes); on any other result
 * the caller reads the results and frees the op.
 */
ferry_err_t ferry_op_run(struct ferry_client *cl, struct op *op, int timeout_ms, char *errstr, size_t errstr_size);
/* I/O thread: the op finished; wakes its waiter or frees it if abandoned. */
void ferry_op_complete(struct ferry_client *cl, struct op *op, ferry_err_t err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
