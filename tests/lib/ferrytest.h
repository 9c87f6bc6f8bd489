/* ferrytest.h: the test library: temp dirs, real ferryd processes, raw framed connections, seeds, subprocesses. */
#ifndef FERRYTEST_H
#define FERRYTEST_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ferry.h"

/*
 * Conventions: functions return 0 on success and -1 on failure with errmsg (when not NULL) saying
 * what failed; nothing here calls Criterion, so benchmarks link the library too. Test files use
 * the FT_ASSERT macros at the bottom, which print the stderr of every live broker before failing.
 *
 * Environment:
 *   FERRY_BUILD              absolute build dir (the Makefile exports it): ferryd, ferryctl, certs/
 *   FERRY_TEST_TIMEOUT_MULT  scales every wait of the library (default 1; e.g. 3 under sanitizers)
 *   FERRY_TEST_SEED          replays a randomized test (the seed is printed on first use)
 *   FERRY_TEST_KEEP          1 = keep temp dirs (for post-mortems)
 */

#define FT_ERRMSG 512

/* ------------------------------------------------------------------------------------------ */
/* Environment, time, randomness                                                               */
/* ------------------------------------------------------------------------------------------ */

/* $FERRY_BUILD, or "./build" made absolute when unset. Static storage. */
const char *ft_build_dir(void);
/* "$FERRY_BUILD/certs/<name>" into out (e.g. "ca.crt"). Returns out. */
const char *ft_cert(const char *name, char *out, size_t out_len);
/* The timeout multiplier (>= 1.0). */
double ft_timeout_mult(void);
/* ms scaled by the multiplier. */
int ft_ms(int ms);
/* CLOCK_MONOTONIC in ms, and the wall clock in ms since the epoch. */
int64_t ft_now_ms(void);
int64_t ft_wall_ms(void);
void ft_sleep_ms(int ms);
/* Name of an error code from the shared table ("UNKNOWN_API"), "?" if unknown; no libferry needed. */
const char *ft_err_name(int code);

/*
 * Seeded randomness. ft_seed() fixes the seed on first call (FERRY_TEST_SEED or a fresh one) and
 * prints "ferrytest: seed=N (replay with FERRY_TEST_SEED=N)" to stderr. ft_seed_reset() re-seeds
 * the generator from that seed (call at the start of each test so a test replays alone).
 */
uint64_t ft_seed(void);
void ft_seed_reset(void);
uint64_t ft_rand(void);
/* Uniform in [lo, hi] (inclusive). */
int64_t ft_rand_range(int64_t lo, int64_t hi);
/* Deterministic bytes for record id (so content can be checked later without storing it). */
void ft_fill_pattern(uint8_t *buf, size_t len, uint64_t id);

/* ------------------------------------------------------------------------------------------ */
/* Files                                                                                       */
/* ------------------------------------------------------------------------------------------ */

/* mkdtemp "<$TMPDIR or /tmp>/ferry-<tag>-XXXXXX" into out. */
int ft_tmpdir_make(const char *tag, char *out, size_t out_len, char *errmsg, size_t errmsg_len);
/* Recursive removal (no symlink following). Honors FERRY_TEST_KEEP. Returns 0 or -1. */
int ft_rmrf(const char *path);
/* Whole file into a malloc'd NUL-terminated buffer (*len without the NUL). NULL on error. */
char *ft_read_file(const char *path, size_t *len);
int ft_write_file(const char *path, const void *data, size_t len);

/* ------------------------------------------------------------------------------------------ */
/* A real broker process                                                                       */
/* ------------------------------------------------------------------------------------------ */

enum ft_security { FT_TLS = 0, FT_PLAINTEXT = 1, FT_MTLS = 2 /* tls.client.auth=required */ };

struct ft_broker_opts {
    enum ft_security security;
    const char *extra; /* more config lines "key = value\n..." (NULL = none) */
    int node_id;       /* node.id (0 by default) */
};

/*
 * One ferryd process with its own temp dir <root>: config <root>/ferryd.conf, data <root>/data,
 * ready file <root>/ready, stderr+stdout in <root>/ferryd.log (appended across restarts).
 * listen = 127.0.0.1:0 at first start; restarts rebind the same port (libferry clients then
 * reconnect by themselves) and fall back to a fresh port if that one is taken.
 */
struct ft_broker {
    char root[256];
    char conf_path[320];
    char data_dir[320];
    char ready_path[320];
    char log_path[320];
    struct ft_broker_opts opts;
    char extra[4096];
    pid_t pid; /* 0 = not running */
    char host[64];
    int port;
    char addr[96]; /* "host:port" */
    int starts;
    int last_status; /* wait status of the last exit (-1 = none yet) */
    int registered;
};

/*
 * Creates the temp dir, writes the config and starts the broker; returns once it is ready (the
 * ready file names its address) or fails (timeout or early exit; its log is printed to stderr).
 */
int ft_broker_start(struct ft_broker *b, const struct ft_broker_opts *o, char *errmsg, size_t errmsg_len);
/* Starts the stopped broker again with the same data dir (and port if possible). */
int ft_broker_restart(struct ft_broker *b, char *errmsg, size_t errmsg_len);
/*
 * SIGTERM, wait up to 10 s (scaled), then SIGKILL. Reaps by pid. Returns the exit code (0 = clean),
 * 128+signal if it died of a signal, or -1 if it was not running.
 */
int ft_broker_stop(struct ft_broker *b);
/* SIGKILL and reap. Returns 0, or -1 if it was not running. */
int ft_broker_kill(struct ft_broker *b);
/* 1 if the process is running (reaps it and records its status if it has exited). */
int ft_broker_alive(struct ft_broker *b);
/* Stops it if running, removes the temp dir. Safe on a zeroed or already destroyed struct. */
void ft_broker_destroy(struct ft_broker *b);
/* Prints the broker's log (last max_bytes) to stderr with a banner. */
void ft_broker_dump_log(const struct ft_broker *b, size_t max_bytes);
/* Dumps every broker of this process that has not been destroyed (used by FT_ASSERT). */
void ft_dump_all_brokers(void);

/* ------------------------------------------------------------------------------------------ */
/* A cluster of real ferryd processes (tests/lib/ft_cluster.c)                                  */
/* ------------------------------------------------------------------------------------------ */

#define FT_CLUSTER_MAX 5

/*
 * n brokers (node ids 0..n-1) on 127.0.0.1: ephemeral client ports, peer ports picked free at
 * start (kept across restarts), cluster.members naming all of them, mutual TLS between brokers on
 * the peer port (server.crt / client.crt of $FERRY_BUILD/certs). b[i] are ordinary fixture
 * brokers: ft_broker_kill / ft_broker_restart / ft_broker_stop work on them (a restart keeps the
 * client port, so the broker's registered address stays valid).
 */
struct ft_cluster {
    int n;
    struct ft_broker b[FT_CLUSTER_MAX];
    int peer_port[FT_CLUSTER_MAX];
    char bootstrap[FT_CLUSTER_MAX * 100]; /* "host:port,..." of every broker */
};

/*
 * Starts the brokers (o: security and extra config for all; node_id is ignored) and waits until
 * the controller's metadata lists all n (every broker registered). Returns 0 or -1 (errmsg).
 */
int ft_cluster_start(struct ft_cluster *c, int n, const struct ft_broker_opts *o, char *errmsg, size_t errmsg_len);
/* Every stored batch of partition topic/part in a (stopped) broker's data dir, read with the storage API.
 * On success *out is malloc'd (NULL when empty), *len its size and *end the log end offset; returns 0,
 * or -1 with errmsg filled. */
int ft_read_replica_log(const char *data_dir, const char *topic, int32_t part, uint8_t **out, size_t *len,
                        int64_t *end, char *errmsg, size_t errmsg_len);
/* Stops every broker and removes their temp dirs. Safe on a zeroed struct. */
void ft_cluster_destroy(struct ft_cluster *c);
/* ft_conf against broker 0 with bootstrap.servers = every broker of the cluster. */
ferry_conf_t *ft_cluster_conf(const struct ft_cluster *c, const char *const *kv, char *errmsg, size_t errmsg_len);
ferry_client_t *ft_cluster_client(const struct ft_cluster *c, ferry_type_t type, const char *const *kv, char *errmsg,
                                  size_t errmsg_len);
/*
 * Waits (up to timeout_ms, scaled) until a broker that is alive reports a live leader for
 * topic/partition, and returns its index in c->b, or -1 (errmsg).
 */
int ft_cluster_leader(const struct ft_cluster *c, const char *topic, int32_t partition, int timeout_ms, char *errmsg,
                      size_t errmsg_len);
/*
 * Starts b[c->n], a broker with node.id node_id whose cluster.members names only b[0..members-1]
 * (with their peer ports): it joins the running cluster (docs/replication.md, "Joining and
 * registration"). o as for ft_cluster_start. Waits until the metadata lists every broker, c->n
 * included; c->n grows by one. Returns 0 or -1 (errmsg).
 */
int ft_cluster_join(struct ft_cluster *c, int node_id, int members, const struct ft_broker_opts *o, char *errmsg,
                    size_t errmsg_len);
/* Waits (up to timeout_ms, scaled) until the metadata lists broker id with client port `port`
 * (0 = any port). Returns 0 or -1 (errmsg). */
int ft_cluster_wait_broker(const struct ft_cluster *c, int32_t id, int port, int timeout_ms, char *errmsg,
                           size_t errmsg_len);

/* ------------------------------------------------------------------------------------------ */
/* libferry clients against a fixture broker                                                   */
/* ------------------------------------------------------------------------------------------ */

/*
 * A conf with bootstrap.servers = b->addr and TLS set up like the broker (security.protocol,
 * ssl.ca.location = ca.crt, and for FT_MTLS the client certificate and key). Then each of
 * kv[0..] "key", "value" pairs (NULL-terminated list) is applied. NULL on error.
 */
ferry_conf_t *ft_conf(const struct ft_broker *b, const char *const *kv, char *errmsg, size_t errmsg_len);
/* ferry_client_new(type, ft_conf(b, kv)). NULL on error. */
ferry_client_t *ft_client(const struct ft_broker *b, ferry_type_t type, const char *const *kv, char *errmsg,
                          size_t errmsg_len);

/*
 * Delivery reports, recorded: set ft_delivery_cb as the delivery callback and a struct
 * ft_deliveries * as the conf opaque (ft_conf_record_deliveries does both). Callbacks run on the
 * thread that polls, so no lock is needed as long as one thread polls.
 */
struct ft_delivery {
    ferry_err_t err;
    int32_t partition;
    int64_t offset;
    void *opaque;
};
struct ft_deliveries {
    struct ft_delivery *v;
    size_t n, cap;
    size_t failed; /* reports with err != NONE */
};
void ft_delivery_cb(ferry_client_t *client, const ferry_delivery_t *d, void *opaque);
void ft_conf_record_deliveries(ferry_conf_t *conf, struct ft_deliveries *log);
void ft_deliveries_free(struct ft_deliveries *log);

/*
 * Reads n messages of topic/partition from offset `from` with a new consumer (extra conf kv as for
 * ft_conf), waiting up to timeout_ms (scaled) in total. On success out[0..n-1] are the caller's
 * (free each with ferry_message_destroy). Fails on an error event, a timeout or a message of
 * another partition; messages already read are then destroyed.
 */
int ft_consume(const struct ft_broker *b, const char *topic, int32_t partition, int64_t from, size_t n,
               ferry_message_t **out, const char *const *kv, int timeout_ms, char *errmsg, size_t errmsg_len);

/* ------------------------------------------------------------------------------------------ */
/* Raw framed connections (bad-input tests)                                                    */
/* ------------------------------------------------------------------------------------------ */

struct ft_raw_tls {
    const char *ca_file;   /* NULL = no verification at all (insecure; for tests only) */
    const char *cert_file; /* client certificate (NULL = none) */
    const char *key_file;
};

struct ft_raw {
    int fd;
    void *ssl_ctx; /* SSL_CTX *, NULL for plaintext */
    void *ssl;     /* SSL * */
    int timeout_ms;
};

enum { FT_RAW_FRAME = 0, FT_RAW_CLOSED = 1, FT_RAW_TIMEOUT = 2, FT_RAW_BAD = 3, FT_RAW_ERROR = 4 };

/*
 * Blocking TCP connect to host:port with every read/write bounded by timeout_ms (scaled); tls NULL
 * = plaintext, else a TLS 1.2+ handshake (a handshake failure returns -1 with OpenSSL's reason).
 */
int ft_raw_connect(struct ft_raw *c, const char *host, int port, const struct ft_raw_tls *tls, int timeout_ms,
                   char *errmsg, size_t errmsg_len);
/* Connects to a fixture broker the way it expects (TLS with ca.crt, client cert for FT_MTLS). */
int ft_raw_connect_broker(struct ft_raw *c, const struct ft_broker *b, char *errmsg, size_t errmsg_len);
/* Writes all bytes. Returns 0, or -1 (peer closed / error / timeout). */
int ft_raw_send(struct ft_raw *c, const void *buf, size_t len);
/* Sends a 4-byte big-endian length then payload. */
int ft_raw_send_frame(struct ft_raw *c, const void *payload, size_t len);
/*
 * Reads one frame: FT_RAW_FRAME with *payload malloc'd (caller frees), FT_RAW_CLOSED (EOF or reset,
 * TLS alert included), FT_RAW_TIMEOUT, FT_RAW_BAD (length 0 or above max_len), FT_RAW_ERROR.
 */
int ft_raw_recv_frame(struct ft_raw *c, uint8_t **payload, size_t *len, size_t max_len);
void ft_raw_close(struct ft_raw *c);

/* ---- requests (msgpack-c directly, independent of broker/proto) ---- */

/*
 * Builds a request frame: ft_req_begin packs the 4-byte placeholder and the envelope
 * [api, version, correlation_id, "ferrytest", <body>]; the caller packs exactly one body value with
 * r->pk; ft_req_frame patches the length and returns the whole frame (valid until ft_req_free).
 */
struct ft_req {
    msgpack_sbuffer sb;
    msgpack_packer pk;
};
void ft_req_begin(struct ft_req *r, uint32_t api, uint32_t version, uint32_t correlation_id);
/* An empty request for raw building: only the placeholder, the caller packs the whole value. */
void ft_req_begin_raw(struct ft_req *r);
const uint8_t *ft_req_frame(struct ft_req *r, size_t *len);
void ft_req_free(struct ft_req *r);
void ft_pack_str(msgpack_packer *pk, const char *s);
void ft_pack_bin(msgpack_packer *pk, const void *p, size_t n);

/* Common bodies. Each packs the whole request into r (begin included). */
void ft_req_api_versions(struct ft_req *r, uint32_t corr);
void ft_req_metadata(struct ft_req *r, uint32_t corr, const char *topic /* NULL = all */);
void ft_req_create_topic(struct ft_req *r, uint32_t corr, const char *name, int64_t partitions);
void ft_req_produce(struct ft_req *r, uint32_t corr, const char *topic, int64_t partition, const void *batch,
                    size_t batch_len);
void ft_req_fetch(struct ft_req *r, uint32_t corr, const char *topic, int64_t partition, int64_t offset,
                  int64_t max_wait_ms);

/* ---- responses ---- */

struct ft_resp {
    uint8_t *frame;
    msgpack_unpacked up;
    uint32_t correlation_id;
    int64_t error;
    char error_message[FT_ERRMSG];
    const msgpack_object *body; /* map or NULL */
};
/*
 * Receives and decodes one response frame [corr, error, message, body]. Returns FT_RAW_FRAME on
 * success, another FT_RAW_* on transport failure, or FT_RAW_BAD when the
 * frame is not a well-formed response (errmsg says why). Call ft_resp_free(r) in every case.
 */
int ft_raw_recv_resp(struct ft_raw *c, struct ft_resp *r, char *errmsg, size_t errmsg_len);
void ft_resp_free(struct ft_resp *r);

/* Field access on msgpack maps (NULL / def when absent or of another type). */
const msgpack_object *ft_mp_get(const msgpack_object *map, const char *key);
int64_t ft_mp_int(const msgpack_object *map, const char *key, int64_t def);
/* body.topics[ti].partitions[pi] for Produce/Fetch/ListOffsets responses, or NULL. */
const msgpack_object *ft_resp_partition(const struct ft_resp *r, uint32_t ti, uint32_t pi);
/* body.topics[ti] (CreateTopics, DeleteTopics, Metadata), or NULL. */
const msgpack_object *ft_resp_topic(const struct ft_resp *r, uint32_t ti);

/*
 * One request, one response on a new connection to b: sends frame, reads the answer. Returns 0 with
 * *r filled, or -1 with errmsg.
 */
int ft_raw_roundtrip(struct ft_raw *c, const uint8_t *frame, size_t len, struct ft_resp *r, char *errmsg,
                     size_t errmsg_len);

/* A record batch of n records ("key-<i>" / value pattern(id0+i, value_len)) built with the wire code. */
int ft_make_batch(uint32_t n, size_t value_len, uint64_t id0, int compression, uint8_t **out, size_t *out_len,
                  char *errmsg, size_t errmsg_len);

/* ------------------------------------------------------------------------------------------ */
/* A fault-injecting proxy (idempotence tests)                                                 */
/* ------------------------------------------------------------------------------------------ */

/*
 * A TCP proxy on 127.0.0.1:<ephemeral> in front of a PLAINTEXT broker on 127.0.0.1:up_port, run by
 * a thread of its own. It forwards whole frames both ways and remembers the correlation ids of
 * Produce requests; when a drop is armed, the response to a Produce is not forwarded: the proxy
 * closes that client connection (and its broker side) instead, so the broker has written the batch
 * but the client never learns it and retries. Start the broker with
 * "advertised.listen = 127.0.0.1:<ft_proxy_port>" so that clients reach it only through the proxy.
 * A new connection is closed at once while rejecting (paused), or when the broker cannot be reached.
 */
struct ft_proxy;
int ft_proxy_start(struct ft_proxy **out, int up_port, char *errmsg, size_t errmsg_len);
int ft_proxy_port(const struct ft_proxy *px);
/* Where new connections go (after a broker restart on another port). */
void ft_proxy_set_upstream(struct ft_proxy *px, int up_port);
/* Drops the next n Produce responses; then_reject: after a drop, reject new connections until
 * ft_proxy_set_reject(px, 0) (so the test can restart the broker before the client retries). */
void ft_proxy_drop_produce_responses(struct ft_proxy *px, int n, int then_reject);
void ft_proxy_set_reject(struct ft_proxy *px, int reject);
int ft_proxy_dropped(struct ft_proxy *px);           /* Produce responses dropped so far */
int ft_proxy_forwarded_produce(struct ft_proxy *px); /* Produce responses forwarded so far */
void ft_proxy_stop(struct ft_proxy *px);             /* closes everything, joins, frees; NULL is a no-op */

/* ------------------------------------------------------------------------------------------ */
/* Subprocesses (ferryctl)                                                                     */
/* ------------------------------------------------------------------------------------------ */

struct ft_proc_result {
    int exit_code; /* 0..255, 128+signal if killed, -1 if it timed out (then killed) */
    char *out;     /* stdout, NUL-terminated, malloc'd */
    size_t out_len;
    char *err; /* stderr */
    size_t err_len;
};
/*
 * Runs argv[0] (a path) with argv, feeding stdin_data (may be NULL) and collecting stdout/stderr,
 * bounded by timeout_ms (scaled); envp_extra: NULL-terminated "K=V" strings added to the environment
 * (NULL = none). Returns 0 (see res->exit_code) or -1 if it could not be run.
 */
int ft_run(char *const argv[], const char *const *envp_extra, const void *stdin_data, size_t stdin_len,
           int timeout_ms, struct ft_proc_result *res, char *errmsg, size_t errmsg_len);
void ft_proc_result_free(struct ft_proc_result *res);

/* ------------------------------------------------------------------------------------------ */
/* Assertions for Criterion tests (macros only: the library itself does not use Criterion)     */
/* ------------------------------------------------------------------------------------------ */

/* Like cr_assert(cond, fmt, ...) but first prints the log of every live broker. A format is required. */
#define FT_ASSERT(cond, fmt, ...)                                                                        \
    do {                                                                                                 \
        if (!(cond)) {                                                                                   \
            ft_dump_all_brokers();                                                                       \
            cr_assert_fail("assertion failed: %s: " fmt, #cond, ##__VA_ARGS__);                          \
        }                                                                                                \
    } while (0)

/* Integer equality, printing both sides. */
#define FT_ASSERT_EQ(a, b, fmt, ...)                                                                     \
    do {                                                                                                 \
        long long ft_a_ = (long long)(a), ft_b_ = (long long)(b);                                        \
        if (ft_a_ != ft_b_) {                                                                            \
            ft_dump_all_brokers();                                                                       \
            cr_assert_fail("%s == %s failed: %lld != %lld: " fmt, #a, #b, ft_a_, ft_b_, ##__VA_ARGS__);   \
        }                                                                                                \
    } while (0)

/* ferry_err_t equality, printing names. */
#define FT_ASSERT_ERR(got, want, fmt, ...)                                                               \
    do {                                                                                                 \
        long long ft_g_ = (long long)(got), ft_w_ = (long long)(want);                             \
        if (ft_g_ != ft_w_) {                                                                            \
            ft_dump_all_brokers();                                                                       \
            cr_assert_fail("%s: got %s (%lld), want %s (%lld): " fmt, #got, ft_err_name((int)ft_g_), ft_g_, \
                           ft_err_name((int)ft_w_), ft_w_, ##__VA_ARGS__);                               \
        }                                                                                                \
    } while (0)

#endif
