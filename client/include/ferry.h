/* ferry.h: libferry, the C client of the Ferry event broker: configuration, producer, consumer, admin. */
#ifndef FERRY_H
#define FERRY_H

#include <stddef.h>
#include <stdint.h>

#include "ferry_errors.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * ABI rules (the library keeps a stable ABI; link with `pkg-config --libs ferry`):
 *   - Handles are opaque (ferry_conf_t, ferry_client_t, ferry_message_t, ferry_metadata_t).
 *   - The public structs the application fills (ferry_header_t, ferry_record_t,
 *     ferry_topic_partition_t) are frozen: they never change; new fields come with new functions.
 *   - ferry_delivery_t is a view the library fills and only lends: fields may be appended, never
 *     removed or reordered, so the application must never allocate or copy one by value.
 *   - Only ferry_* symbols are exported.
 *
 * Threading: every function is thread-safe unless said otherwise. Each client runs one I/O thread
 * with its own event loop; calls from application threads hand it work and wait (bounded by a
 * timeout) or return at once. Callbacks run on the thread that calls ferry_poll()/ferry_flush().
 *
 * Ownership: the library copies everything it keeps from the arguments of a call; pointers the
 * library returns stay valid as long as the object they came from (message, metadata, delivery
 * view during its callback), as stated on each function.
 */

#if defined(FERRY_BUILDING_LIB) && defined(__GNUC__)
#define FERRY_API __attribute__((visibility("default")))
#else
#define FERRY_API
#endif

#define FERRY_VERSION_MAJOR 0
#define FERRY_VERSION_MINOR 1
#define FERRY_VERSION_PATCH 0
/* 0xMMmmpp; compare with ferry_version() to detect a header/library mismatch. */
#define FERRY_VERSION ((FERRY_VERSION_MAJOR << 16) | (FERRY_VERSION_MINOR << 8) | FERRY_VERSION_PATCH)

FERRY_API int ferry_version(void);
FERRY_API const char *ferry_version_str(void); /* "0.1.0" */

/* ------------------------------------------------------------------------------------------ */
/* Errors                                                                                      */
/* ------------------------------------------------------------------------------------------ */

/* Human-readable description ("broker is not the leader of this partition"); never NULL. */
FERRY_API const char *ferry_err_str(ferry_err_t err);
/* The code's name as in the table: "NOT_LEADER", "_TIMED_OUT"; "?" for an unknown code. */
FERRY_API const char *ferry_err_name(ferry_err_t err);
/* 1 if the same operation may succeed when retried later, unchanged. */
FERRY_API int ferry_err_is_retriable(ferry_err_t err);

/* ------------------------------------------------------------------------------------------ */
/* Opaque types and constants                                                                  */
/* ------------------------------------------------------------------------------------------ */

typedef struct ferry_conf ferry_conf_t;
typedef struct ferry_client ferry_client_t;
typedef struct ferry_message ferry_message_t;
typedef struct ferry_metadata ferry_metadata_t;

typedef enum ferry_type {
    FERRY_PRODUCER = 1,
    FERRY_CONSUMER = 2,
    FERRY_ADMIN = 3, /* metadata, topics, offsets only (the producer/consumer have these too) */
} ferry_type_t;

#define FERRY_PARTITION_ANY (-1)    /* ferry_record_t.partition: let the partitioner choose */
#define FERRY_OFFSET_BEGINNING (-2) /* the earliest offset still in the log */
#define FERRY_OFFSET_END (-1)       /* the high watermark: only records produced from now on */

/* ListOffsets timestamps (ferry_admin_list_offsets): the same values as the offsets above. */
#define FERRY_TIMESTAMP_EARLIEST (-2)
#define FERRY_TIMESTAMP_LATEST (-1)

/* ferry_produce flags */
#define FERRY_F_NONBLOCK 0x1 /* return FERRY_ERR__QUEUE_FULL at once instead of blocking */

/* ------------------------------------------------------------------------------------------ */
/* Configuration                                                                               */
/* ------------------------------------------------------------------------------------------ */

/*
 * A configuration is a set of string settings (Kafka's names where the meaning matches), plus
 * typed callbacks. ferry_conf_describe() lists every setting with its type, default, range and
 * documentation. Not thread-safe: one thread builds a conf, then hands it to ferry_client_new.
 */
FERRY_API ferry_conf_t *ferry_conf_new(void); /* all defaults; NULL only when out of memory */
FERRY_API void ferry_conf_destroy(ferry_conf_t *conf); /* NULL is a no-op */
FERRY_API ferry_conf_t *ferry_conf_dup(const ferry_conf_t *conf);

/*
 * Sets key to value after validating it. Returns FERRY_ERR_NONE, FERRY_ERR__UNKNOWN_CONFIG or
 * FERRY_ERR__INVALID_CONFIG_VALUE; on error errstr (if not NULL) gets a message naming the key,
 * e.g. "linger.ms: 'abc' is not an integer in [0, 900000]". The conf is unchanged on error.
 */
FERRY_API ferry_err_t ferry_conf_set(ferry_conf_t *conf, const char *key, const char *value, char *errstr,
                                     size_t errstr_size);

/*
 * Reads a setting as a string (the default if it was never set). *dest_size is set to the size
 * needed, NUL included. If dest is not NULL and dest_size was large enough the value is copied;
 * if it was too small, dest is left untouched and FERRY_ERR__INVALID_ARG is returned. An unknown
 * key returns FERRY_ERR__UNKNOWN_CONFIG.
 */
FERRY_API ferry_err_t ferry_conf_get(const ferry_conf_t *conf, const char *key, char *dest, size_t *dest_size);

/*
 * The i-th setting of the configuration table (i from 0): returns its name, or NULL past the end.
 * Each out-pointer may be NULL. type: "string", "int", "enum" or "path"; range: "[0, 900000]",
 * "tls|plaintext" or "" ; def: the default as a string ("" = unset). All strings are static.
 */
FERRY_API const char *ferry_conf_describe(size_t i, const char **type, const char **def, const char **range,
                                          const char **doc);

/* ---- callbacks ---- */

/*
 * The outcome of one produced record, lent to the delivery callback for the duration of the call.
 * Append-only view (see ABI rules): never allocate or copy it; copy the fields you keep.
 */
typedef struct ferry_delivery {
    ferry_err_t err;           /* FERRY_ERR_NONE = durably written (per acks) */
    const char *error_message; /* broker's or library's detail when err != 0; else NULL */
    const char *topic;
    int32_t partition;         /* chosen partition; -1 if none could be chosen */
    int64_t offset;            /* assigned offset; -1 if unknown (error, or acks=0) */
    int64_t timestamp;         /* the record's timestamp (ms since the epoch) */
    void *opaque;              /* ferry_record_t.opaque of this record */
} ferry_delivery_t;

/* opaque is the conf's opaque (ferry_conf_set_opaque). Runs inside ferry_poll/ferry_flush/close. */
typedef void ferry_delivery_cb_t(ferry_client_t *client, const ferry_delivery_t *d, void *opaque);

/* Log levels as syslog: 3 error, 4 warning, 6 info, 7 debug. */
#define FERRY_LOG_ERR 3
#define FERRY_LOG_WARNING 4
#define FERRY_LOG_INFO 6
#define FERRY_LOG_DEBUG 7
/*
 * Called from the client's I/O thread (and from ferry_client_new) for connection events and
 * errors the application does not otherwise see; msg has no trailing newline. Must be
 * thread-safe, quick, and must not call libferry functions on the same client. Default: no logs.
 */
typedef void ferry_log_cb_t(const ferry_client_t *client, int level, const char *msg, void *opaque);

FERRY_API void ferry_conf_set_delivery_cb(ferry_conf_t *conf, ferry_delivery_cb_t *cb);
FERRY_API void ferry_conf_set_log_cb(ferry_conf_t *conf, ferry_log_cb_t *cb);
/* The opaque passed to every callback of the client. */
FERRY_API void ferry_conf_set_opaque(ferry_conf_t *conf, void *opaque);

/* ------------------------------------------------------------------------------------------ */
/* Client lifecycle                                                                            */
/* ------------------------------------------------------------------------------------------ */

/*
 * Creates a client and starts its I/O thread. conf is consumed in every case (do not use or
 * destroy it afterwards). Validates the configuration and loads the TLS files synchronously;
 * connecting to the brokers happens in the background (no broker need be up yet). Returns NULL
 * with errstr filled on failure ("bootstrap.servers is not set", "ssl.ca.location: ...").
 */
FERRY_API ferry_client_t *ferry_client_new(ferry_type_t type, ferry_conf_t *conf, char *errstr,
                                           size_t errstr_size);

/*
 * Graceful shutdown, bounded by timeout_ms: a producer flushes (serving delivery callbacks on the
 * calling thread); records still undelivered at the deadline are reported with FERRY_ERR__PURGED.
 * Then the I/O thread stops and every connection is closed. Returns FERRY_ERR_NONE, or
 * FERRY_ERR__TIMED_OUT if records had to be purged. Later calls on the client (other than
 * ferry_client_destroy and message/metadata accessors) return FERRY_ERR__DESTROYED. Idempotent.
 */
FERRY_API ferry_err_t ferry_client_close(ferry_client_t *client, int timeout_ms);

/*
 * Frees the client. If it was not closed, closes it with timeout 0 first: undelivered records
 * are dropped without delivery reports. Messages and metadata obtained from the client stay
 * valid and must still be destroyed by the application. NULL is a no-op.
 */
FERRY_API void ferry_client_destroy(ferry_client_t *client);

FERRY_API ferry_type_t ferry_client_type(const ferry_client_t *client);

/* ------------------------------------------------------------------------------------------ */
/* Producer                                                                                    */
/* ------------------------------------------------------------------------------------------ */

/* One record header. name is NUL-terminated; value == NULL is a null value. Frozen struct. */
typedef struct ferry_header {
    const char *name;
    const void *value;
    size_t value_len;
} ferry_header_t;

/*
 * A record to produce. Input only: the library copies what it keeps during ferry_produce, so
 * every buffer may be reused when it returns. Frozen struct: zero it, then fill it.
 *   key == NULL is a null key (keyless: sticky partitioning); value == NULL a null value.
 *   partition: FERRY_PARTITION_ANY, or a partition number (checked against metadata later).
 *   timestamp: ms since the epoch; 0 = now.
 */
typedef struct ferry_record {
    const char *topic;
    int32_t partition;
    const void *key;
    size_t key_len;
    const void *value;
    size_t value_len;
    const ferry_header_t *headers;
    size_t header_count;
    int64_t timestamp;
    void *opaque; /* handed back in the delivery report */
} ferry_record_t;

/*
 * Queues one record for sending. On FERRY_ERR_NONE exactly one delivery report follows (if a
 * delivery callback is set) from ferry_poll/ferry_flush/ferry_client_close. On any other return
 * the record was not queued and no report follows:
 *   FERRY_ERR__QUEUE_FULL    queue.buffering.max.{messages,kbytes} reached: at once with
 *                            FERRY_F_NONBLOCK, else after blocking up to max.block.ms
 *   FERRY_ERR__INVALID_ARG   NULL/empty/too long topic, partition < -1, more than 256 headers,
 *                            a header without a name
 *   FERRY_ERR_BATCH_TOO_LARGE  the record alone cannot fit in one batch (FERRY_MAX_BATCH_BYTES)
 *   FERRY_ERR__WRONG_CLIENT_TYPE, FERRY_ERR__DESTROYED
 * Partitioning: a record with a key goes to ferry_partition_for_key(key, n); a keyless record
 * sticks to one partition until that partition's batch is sent, then another is picked.
 * Ordering: records of one partition are delivered in produce order (see docs in client/src).
 */
FERRY_API ferry_err_t ferry_produce(ferry_client_t *client, const ferry_record_t *rec, int flags);

/*
 * Serves queued callbacks (delivery reports) on the calling thread, waiting up to timeout_ms
 * (0 = do not wait, -1 = wait forever) for the first one. Returns the number of callbacks served.
 */
FERRY_API int ferry_poll(ferry_client_t *client, int timeout_ms);

/*
 * Sends everything queued now (linger is cut short) and waits until every record produced so far
 * has its delivery report served, serving them on the calling thread. Returns FERRY_ERR_NONE, or
 * FERRY_ERR__TIMED_OUT with records still outstanding, or at once, with records still outstanding,
 * the error that makes every broker unreachable (FERRY_ERR__TLS, FERRY_ERR__TRANSPORT for a
 * plaintext client against TLS; see the admin calls). Outstanding records stay queued (they may
 * still go if a broker becomes reachable) until delivery.timeout.ms or close.
 */
FERRY_API ferry_err_t ferry_flush(ferry_client_t *client, int timeout_ms);

/* Records produced whose delivery report has not been served yet. */
FERRY_API size_t ferry_outq_len(ferry_client_t *client);

/*
 * The partitioner, bit-compatible with Kafka's Java client: (murmur2(key) & 0x7fffffff) % count.
 * Returns -1 if partition_count <= 0.
 */
FERRY_API int32_t ferry_partition_for_key(const void *key, size_t len, int32_t partition_count);
/* Kafka's murmur2 (seed 0x9747b28c) as a signed 32-bit value, for tests and other languages. */
FERRY_API int32_t ferry_murmur2(const void *key, size_t len);

/* ------------------------------------------------------------------------------------------ */
/* Consumer (manual assignment)                                                                */
/* ------------------------------------------------------------------------------------------ */

/* A topic partition with an offset (or FERRY_OFFSET_BEGINNING / FERRY_OFFSET_END). Frozen struct. */
typedef struct ferry_topic_partition {
    const char *topic;
    int32_t partition;
    int64_t offset;
} ferry_topic_partition_t;

/*
 * Replaces the assignment: the consumer fetches exactly these partitions from these positions
 * (parts == NULL / n == 0 unassigns everything). Prefetched messages of partitions no longer
 * assigned, or assigned again, are dropped. Returns at once; FERRY_ERR__INVALID_ARG for a bad
 * entry (nothing changes), FERRY_ERR__WRONG_CLIENT_TYPE unless a consumer.
 * While subscribed to a group (ferry_subscribe) the group owns the assignment: FERRY_ERR__INVALID_ARG.
 */
FERRY_API ferry_err_t ferry_assign(ferry_client_t *client, const ferry_topic_partition_t *parts, size_t n);

/*
 * Moves an assigned partition to offset (>= 0, FERRY_OFFSET_BEGINNING or FERRY_OFFSET_END).
 * Prefetched messages of the partition are dropped; the next message of it that
 * ferry_consumer_poll returns has offset >= the new position (a stopped partition resumes).
 * Does not block today (timeout_ms is reserved for positions that need the broker).
 * FERRY_ERR__NOT_ASSIGNED if the partition is not assigned.
 */
FERRY_API ferry_err_t ferry_seek(ferry_client_t *client, const char *topic, int32_t partition, int64_t offset,
                                 int timeout_ms);

/*
 * Moves an assigned partition to the first offset whose record timestamp is >= ts_ms (the end of
 * the log if none is), found with ListOffsets; blocks up to timeout_ms for the broker's answer.
 */
FERRY_API ferry_err_t ferry_seek_time(ferry_client_t *client, const char *topic, int32_t partition, int64_t ts_ms,
                                      int timeout_ms);

/*
 * The next message, waiting up to timeout_ms (0 = do not wait, -1 = forever); NULL on timeout.
 * Messages of one partition come in offset order. A message whose ferry_message_err() is not
 * FERRY_ERR_NONE is an event about a partition (e.g. OFFSET_OUT_OF_RANGE with
 * auto.offset.reset=error: the partition stops until ferry_seek), not a record.
 * The caller owns the message: free it with ferry_message_destroy (any thread, any time).
 */
FERRY_API ferry_message_t *ferry_consumer_poll(ferry_client_t *client, int timeout_ms);

FERRY_API void ferry_message_destroy(ferry_message_t *msg); /* NULL is a no-op */
FERRY_API ferry_err_t ferry_message_err(const ferry_message_t *msg);
/* Detail of an error event; NULL for records. */
FERRY_API const char *ferry_message_errstr(const ferry_message_t *msg);
FERRY_API const char *ferry_message_topic(const ferry_message_t *msg);
FERRY_API int32_t ferry_message_partition(const ferry_message_t *msg);
FERRY_API int64_t ferry_message_offset(const ferry_message_t *msg); /* -1 for error events */
FERRY_API int64_t ferry_message_timestamp(const ferry_message_t *msg);
/* NULL for a null key/value (*len then 0); pointers valid until ferry_message_destroy. */
FERRY_API const void *ferry_message_key(const ferry_message_t *msg, size_t *len);
FERRY_API const void *ferry_message_value(const ferry_message_t *msg, size_t *len);
FERRY_API size_t ferry_message_header_count(const ferry_message_t *msg);
/*
 * Header i (0-based, in record order): *name is NUL-terminated (the library's copy), *value is NULL
 * for a null value. Any out-pointer may be NULL. FERRY_ERR__INVALID_ARG if i is out of range.
 */
FERRY_API ferry_err_t ferry_message_header(const ferry_message_t *msg, size_t i, const char **name,
                                           const void **value, size_t *value_len);
/* The last header named name; FERRY_ERR__INVALID_ARG if there is none. */
FERRY_API ferry_err_t ferry_message_header_find(const ferry_message_t *msg, const char *name, const void **value,
                                                size_t *value_len);

/*
 * Low (log start) and high (high watermark) offsets of a partition, asked of its leader with
 * ListOffsets; any client type. Blocks up to timeout_ms.
 */
FERRY_API ferry_err_t ferry_watermarks(ferry_client_t *client, const char *topic, int32_t partition, int64_t *lo,
                                       int64_t *hi, int timeout_ms);

/* ------------------------------------------------------------------------------------------ */
/* Consumer groups (docs/consumer-groups.md)                                                    */
/* ------------------------------------------------------------------------------------------ */

/*
 * With group.id set, ferry_subscribe joins the group: the coordinator (a broker) assigns partitions
 * of the subscribed topics to the members, and libferry applies the changes itself: a partition
 * given up stops being fetched (its position is committed first when enable.auto.commit is on)
 * and the revocation is acknowledged in the next heartbeat; a partition received starts at its
 * committed offset (else auto.offset.reset). Partitions that do not move keep being fetched through
 * every rebalance. Heartbeats run on libferry's I/O thread; the application must poll (or call
 * ferry_consumer_extend_deadline) at least every max.poll.interval.ms.
 */

typedef enum ferry_rebalance_event {
    FERRY_REBALANCE_ASSIGNED = 1, /* these partitions were added to the assignment */
    FERRY_REBALANCE_REVOKING = 2, /* these are being given up: fetching stopped (auto-commit: committed) */
    FERRY_REBALANCE_LOST = 3,     /* these were lost without an orderly hand-over (session or processing
                                     deadline expired, member fenced): others may own them already */
} ferry_rebalance_event_t;

/*
 * Observes assignment changes (optional). parts[0..n) are lent for the call; offsets are -1.
 * Runs inside ferry_consumer_poll on the polling thread; it may call libferry (commit, position).
 */
typedef void ferry_rebalance_cb_t(ferry_client_t *client, ferry_rebalance_event_t ev,
                                  const ferry_topic_partition_t *parts, size_t n, void *opaque);
/*
 * Result of an asynchronous commit (and of auto-commits): err is FERRY_ERR_NONE or the first
 * error (request-level or per partition); offsets[0..n) are what was asked to be committed, lent
 * for the call. Runs inside ferry_consumer_poll.
 */
typedef void ferry_commit_cb_t(ferry_client_t *client, ferry_err_t err, const ferry_topic_partition_t *offsets,
                               size_t n, void *opaque);

FERRY_API void ferry_conf_set_rebalance_cb(ferry_conf_t *conf, ferry_rebalance_cb_t *cb);
FERRY_API void ferry_conf_set_commit_cb(ferry_conf_t *conf, ferry_commit_cb_t *cb);

/*
 * Joins group.id with this subscription (topic names; replaces an earlier one; at most 1,000).
 * Returns at once; the assignment arrives in the background. FERRY_ERR_INVALID_GROUP_ID without a
 * group.id, FERRY_ERR__INVALID_ARG for a bad topic list or after ferry_assign (the two modes do not
 * mix), FERRY_ERR__WRONG_CLIENT_TYPE unless a consumer.
 */
FERRY_API ferry_err_t ferry_subscribe(ferry_client_t *client, const char *const *topics, size_t n);
/* Leaves the group (partitions are given up at once; auto-commit commits them first). */
FERRY_API ferry_err_t ferry_unsubscribe(ferry_client_t *client);

/*
 * The partitions this group member owns now, copied: *parts is one allocation (topics included),
 * freed with ferry_topic_partitions_destroy; offsets are the positions (-1 unknown). *n may be 0.
 */
FERRY_API ferry_err_t ferry_assignment(ferry_client_t *client, ferry_topic_partition_t **parts, size_t *n);
FERRY_API void ferry_topic_partitions_destroy(ferry_topic_partition_t *parts); /* NULL is a no-op */

/*
 * Commits offsets (the offset of the NEXT message to read, as Kafka) for the group, with this
 * member's id and epoch (so a fenced member is refused). offsets == NULL / n == 0: the current
 * positions of every owned partition. A partition ferry_seek'ed backwards is sent with "rewind";
 * otherwise the broker refuses to go backwards (OFFSET_BEHIND_COMMITTED).
 * Sync: blocks up to timeout_ms; returns FERRY_ERR_NONE or the first error (FERRY_ERR_UNKNOWN_MEMBER_ID,
 * FERRY_ERR_FENCED_MEMBER_EPOCH, FERRY_ERR_PARTITION_NOT_ASSIGNED, ...). Nothing to commit: NONE.
 * Async: returns at once; the commit callback reports the result from ferry_consumer_poll.
 */
FERRY_API ferry_err_t ferry_commit_sync(ferry_client_t *client, const ferry_topic_partition_t *offsets, size_t n,
                                        int timeout_ms);
FERRY_API ferry_err_t ferry_commit_async(ferry_client_t *client, const ferry_topic_partition_t *offsets, size_t n);

/* The group's committed offsets of parts[0..n), asked of the coordinator: parts[i].offset is set
 * (-1 = nothing committed). Blocks up to timeout_ms. */
FERRY_API ferry_err_t ferry_committed(ferry_client_t *client, ferry_topic_partition_t *parts, size_t n,
                                      int timeout_ms);
/* The positions (offset after the last message returned, or where a seek put it) of parts[0..n):
 * parts[i].offset is set, -1 when unknown or not assigned. Never blocks. */
FERRY_API ferry_err_t ferry_position(ferry_client_t *client, ferry_topic_partition_t *parts, size_t n);

/* Restarts the processing deadline (max.poll.interval.ms) without polling, for a long job. */
FERRY_API ferry_err_t ferry_consumer_extend_deadline(ferry_client_t *client);

/*
 * Leaves the group promptly, bounded by timeout_ms: commits positions (enable.auto.commit), stops
 * fetching, and sends the leave heartbeat (epoch -1: partitions move at once; with
 * group.instance.id epoch -2: they stay reserved for session.timeout.ms so a restart gets them back).
 * Serves pending callbacks. Call before ferry_client_close (which, without it, leaves the group by
 * session timeout). Idempotent; FERRY_ERR_NONE without a subscription.
 */
FERRY_API ferry_err_t ferry_consumer_close(ferry_client_t *client, int timeout_ms);

/* The member id the coordinator gave (copied into buf, "" before joining) and the member epoch. */
FERRY_API ferry_err_t ferry_group_member(ferry_client_t *client, char *buf, size_t buf_size, int32_t *epoch);

/* ------------------------------------------------------------------------------------------ */
/* Admin (any client type)                                                                     */
/* ------------------------------------------------------------------------------------------ */

/*
 * Every admin call blocks up to timeout_ms and returns FERRY_ERR_NONE (errstr, if not NULL, is then
 * set to "") or the error code, with errstr holding the broker's message or the library's
 * explanation. When every broker refused the connection in a way retrying cannot fix, the call
 * fails at once instead of at timeout_ms: FERRY_ERR__TLS ("127.0.0.1:9092: TLS: certificate verify
 * failed: ..."), or FERRY_ERR__TRANSPORT for a plaintext client talking to a TLS listener
 * ("...: connection closed during handshake: is the broker using TLS? ..."). Retriable failures
 * (connection refused) are retried until timeout_ms.
 */

/*
 * Creates a topic. partitions -1 = the broker's num.partitions; replication_factor -1 = default.
 * configs: config_count pairs config_keys[i] = config_values[i] (e.g. "retention.ms" = "3600000").
 */
FERRY_API ferry_err_t ferry_admin_create_topic(ferry_client_t *client, const char *name, int32_t partitions,
                                               int32_t replication_factor, const char *const *config_keys,
                                               const char *const *config_values, size_t config_count,
                                               int timeout_ms, char *errstr, size_t errstr_size);

FERRY_API ferry_err_t ferry_admin_delete_topic(ferry_client_t *client, const char *name, int timeout_ms,
                                               char *errstr, size_t errstr_size);

/*
 * Fetches cluster metadata: brokers, controller, and the given topics (topics == NULL or
 * topic_count == 0 = all topics). On success *mdp is the caller's, freed with
 * ferry_metadata_destroy. A requested topic that does not exist is listed with
 * FERRY_ERR_UNKNOWN_TOPIC_OR_PARTITION as its error (the call itself succeeds).
 */
FERRY_API ferry_err_t ferry_admin_describe_cluster(ferry_client_t *client, const char *const *topics,
                                                   size_t topic_count, ferry_metadata_t **mdp, int timeout_ms,
                                                   char *errstr, size_t errstr_size);

/*
 * The offset for timestamp in a partition: FERRY_TIMESTAMP_EARLIEST (log start),
 * FERRY_TIMESTAMP_LATEST (high watermark) or ms since the epoch (first offset whose batch has a
 * timestamp >= it; the high watermark if none).
 */
FERRY_API ferry_err_t ferry_admin_list_offsets(ferry_client_t *client, const char *topic, int32_t partition,
                                               int64_t timestamp, int64_t *offset, int timeout_ms, char *errstr,
                                               size_t errstr_size);

/*
 * One request of a consumer-group api (docs/consumer-groups.md: FindCoordinator 8 .. ResetOffsets
 * 15), for administration tools: body is the request body, one msgpack map as documented there
 * (body_len bytes); on FERRY_ERR_NONE *resp is the response body, msgpack (malloc'd: free() it),
 * *resp_len its size. Routing: group_id != NULL sends it to that group's coordinator (found with
 * FindCoordinator, found again after NOT_COORDINATOR / COORDINATOR_NOT_AVAILABLE, whether top-level
 * or in the first item of "groups", until timeout_ms); else broker_id >= 0 sends it to that broker
 * (ListGroups answers for one broker), else to any broker. A top-level error is returned as the
 * result (with errstr); per-item errors stay in the body. Needs a consumer client (it need not
 * subscribe; ferryctl uses one): other types get FERRY_ERR__WRONG_CLIENT_TYPE.
 */
FERRY_API ferry_err_t ferry_admin_group_request(ferry_client_t *client, int api, const char *group_id,
                                                int32_t broker_id, const void *body, size_t body_len, void **resp,
                                                size_t *resp_len, int timeout_ms, char *errstr, size_t errstr_size);

/*
 * Metadata accessors. Indexes are positions (0 .. count-1), not ids; an out-of-range index gives
 * NULL / -1 / 0. Strings live as long as the metadata.
 */
FERRY_API void ferry_metadata_destroy(ferry_metadata_t *md); /* NULL is a no-op */
FERRY_API int32_t ferry_metadata_controller_id(const ferry_metadata_t *md);
FERRY_API size_t ferry_metadata_broker_count(const ferry_metadata_t *md);
FERRY_API int32_t ferry_metadata_broker_id(const ferry_metadata_t *md, size_t b);
FERRY_API const char *ferry_metadata_broker_host(const ferry_metadata_t *md, size_t b);
FERRY_API int ferry_metadata_broker_port(const ferry_metadata_t *md, size_t b);
FERRY_API size_t ferry_metadata_topic_count(const ferry_metadata_t *md);
FERRY_API const char *ferry_metadata_topic_name(const ferry_metadata_t *md, size_t t);
FERRY_API ferry_err_t ferry_metadata_topic_err(const ferry_metadata_t *md, size_t t);
FERRY_API const char *ferry_metadata_topic_errstr(const ferry_metadata_t *md, size_t t); /* NULL if none */
/* The topic's configs (as the broker reports them): returns key i and sets *value; NULL past the end. */
FERRY_API size_t ferry_metadata_topic_config_count(const ferry_metadata_t *md, size_t t);
FERRY_API const char *ferry_metadata_topic_config(const ferry_metadata_t *md, size_t t, size_t i,
                                                  const char **value);
/* Partitions are sorted by partition id. */
FERRY_API size_t ferry_metadata_partition_count(const ferry_metadata_t *md, size_t t);
FERRY_API int32_t ferry_metadata_partition_id(const ferry_metadata_t *md, size_t t, size_t p);
FERRY_API int32_t ferry_metadata_partition_leader(const ferry_metadata_t *md, size_t t, size_t p); /* -1 none */
FERRY_API ferry_err_t ferry_metadata_partition_err(const ferry_metadata_t *md, size_t t, size_t p);
FERRY_API size_t ferry_metadata_partition_replica_count(const ferry_metadata_t *md, size_t t, size_t p);
FERRY_API int32_t ferry_metadata_partition_replica(const ferry_metadata_t *md, size_t t, size_t p, size_t r);

#ifdef __cplusplus
}
#endif

#endif
