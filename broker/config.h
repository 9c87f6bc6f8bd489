/* config.h: ferryd's settings, one table (config.c) that validates input and generates docs/configuration.md. */
#ifndef FERRYD_CONFIG_H
#define FERRYD_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "storage/log.h"

enum ferryd_security { FERRYD_SECURITY_TLS = 0, FERRYD_SECURITY_PLAINTEXT = 1 };
enum ferryd_client_auth { FERRYD_CLIENT_AUTH_NONE = 0, FERRYD_CLIENT_AUTH_REQUIRED = 1 };
enum ferryd_tls_version { FERRYD_TLS_13 = 0, FERRYD_TLS_12 = 1 };
enum ferryd_log_level { FERRYD_LOG_ERROR = 0, FERRYD_LOG_WARN = 1, FERRYD_LOG_INFO = 2, FERRYD_LOG_DEBUG = 3 };
enum ferryd_log_format { FERRYD_LOG_TEXT = 0, FERRYD_LOG_JSON = 1 };
#ifdef FERRY_BUG_SWITCHES
/* debug.bug, only in a build with -DFERRY_BUG_SWITCHES (build-bugs/ferryd): see config.c. */
enum ferryd_bug { FERRYD_BUG_NONE = 0, FERRYD_BUG_ACK_BEFORE_COMMIT, FERRYD_BUG_DROP_ENTRY, FERRYD_BUG_NO_DEDUPE };
#endif

/*
 * Every setting, already validated. Strings are malloc'd and owned by the config (never NULL after
 * ferryd_config_init; "" means unset). Enums hold the index of the value in the table's list.
 */
struct ferryd_config {
    int64_t node_id;
    char *listen;
    char *advertised_listen;
    char *data_dir;
    int security_protocol; /* enum ferryd_security */
    char *tls_cert_file;
    char *tls_key_file;
    char *tls_ca_file;
    int tls_client_auth; /* enum ferryd_client_auth */
    int tls_min_version; /* enum ferryd_tls_version */
    int64_t max_connections;
    int64_t connections_handshake_timeout_ms;
    int64_t connections_max_idle_ms;
    int64_t num_partitions;
    int64_t segment_bytes;
    int64_t segment_ms;
    int64_t retention_ms;
    int64_t retention_bytes;
    int64_t retention_check_interval_ms;
    int64_t log_index_interval_bytes;
    int64_t batch_max_bytes;
    int flush_before_ack;
    char *ready_file;
    int64_t cluster_id;
    char *peer_listen;
    char *cluster_members; /* "" = standalone */
    int peer_security_protocol; /* enum ferryd_security */
    char *peer_tls_cert_file;
    char *peer_tls_key_file;
    char *peer_tls_client_cert_file;
    char *peer_tls_client_key_file;
    int64_t raft_snapshot_threshold;
    int64_t raft_snapshot_trailing;
    int raft_quiescence_enable;         /* fr_node_config.disable_quiescence = !this */
    int64_t raft_election_timeout_ms;   /* groups' election timeout = the node's link timeout */
    int64_t raft_heartbeat_interval_ms; /* groups' heartbeat = the node's heartbeat */
    int leader_rebalance_enable;
    int64_t leader_rebalance_interval_ms;
    int64_t offsets_topic_num_partitions;     /* consumer groups (docs/consumer-groups.md) */
    int64_t offsets_topic_replication_factor; /* -1 = min(3, brokers) */
    int64_t group_min_session_timeout_ms;
    int64_t group_max_session_timeout_ms;
    int64_t group_heartbeat_interval_ms;
    int64_t raft_segment_bytes;  /* partition groups' raft_uv segment size (docs/replication.md, "Storage") */
    int64_t raft_snapshot_bytes; /* a partition snapshots once this many entry bytes were applied */
#ifdef FERRY_BUG_SWITCHES
    int debug_bug; /* enum ferryd_bug: a deliberate bug for the fault-injection suite (docs/jepsen.md) */
#endif
    int log_level;  /* enum ferryd_log_level */
    int log_format; /* enum ferryd_log_format */
    /* Line of the config file that set each table entry (0 = not from the file), to refuse duplicates. */
    int file_line[64];
};

/* Fills every setting with its default. Returns 0, or -1 when out of memory (errmsg filled). */
int ferryd_config_init(struct ferryd_config *c, char *errmsg, size_t errmsg_len);
void ferryd_config_free(struct ferryd_config *c);

/*
 * Sets one key from its text form, validating type and range. Returns 0, or -1 with errmsg naming
 * the key and saying what is wrong ("unknown key 'foo'", "segment.bytes: 12 is below the minimum 4096").
 */
int ferryd_config_set(struct ferryd_config *c, const char *key, const char *value, char *errmsg, size_t errmsg_len);

/* Applies a "key=value" argument (as given to --set). Same returns as ferryd_config_set. */
int ferryd_config_set_arg(struct ferryd_config *c, const char *arg, char *errmsg, size_t errmsg_len);

/*
 * Reads a file of `key = value` lines (# comments, blank lines). Errors name the file and line
 * ("ferryd.conf:7: unknown key 'segment.byte'"). A key set twice in the file is refused.
 */
int ferryd_config_load_file(struct ferryd_config *c, const char *path, char *errmsg, size_t errmsg_len);

/* Checks rules that span several keys (TLS files required under security.protocol=tls). */
int ferryd_config_validate(const struct ferryd_config *c, char *errmsg, size_t errmsg_len);

/* Writes the markdown reference of every setting (the content of docs/configuration.md). */
void ferryd_config_print_doc(FILE *out);

/* Writes "key = value" for every setting (the effective configuration, for logs and --check-config). */
void ferryd_config_print(const struct ferryd_config *c, FILE *out);

/* The partition log settings the config implies (topic overrides are applied on top, topics.c). */
void ferryd_config_log_config(const struct ferryd_config *c, struct ferry_log_config *out);

/*
 * Topic-level overrides (CreateTopics `configs`): key is one of retention.ms, retention.bytes,
 * segment.bytes, segment.ms; value is parsed and range-checked against the broker's table.
 * Returns 0 with *out set, or -1 with errmsg ("unknown topic config 'x'", "... out of range").
 */
int ferryd_config_topic_value(const char *key, const char *value, int64_t *out, char *errmsg, size_t errmsg_len);
/* Applies one checked topic override to a log config. Returns -1 for a key that is not a topic config. */
int ferryd_config_apply_topic_value(struct ferry_log_config *lc, const char *key, int64_t value);

/* One entry of cluster.members. */
#define FERRYD_MAX_MEMBERS 64
struct ferryd_member {
    int64_t id;
    char host[256];
    int port;
};
/* Parses cluster.members ("id@host:port,..."). Returns the count (0 for "") or -1 with errmsg. */
int ferryd_parse_members(const char *v, struct ferryd_member *out, int cap, char *errmsg, size_t errmsg_len);

/* Splits "host:port" or "[v6]:port"; host is copied into host (NUL-terminated). Returns 0 or -1. */
int ferryd_split_hostport(const char *s, char *host, size_t host_len, int *port);

#endif
