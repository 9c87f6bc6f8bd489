/* config.c: the table of ferryd settings: defaults, parsing, range checks, the config file and the docs. */
#include "config.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#include "logging.h"
#include "proto/batch.h"
#include "proto/limits.h"

enum cfg_type { CFG_INT, CFG_BOOL, CFG_STRING, CFG_ENUM, CFG_SIZE, CFG_DURATION };

static const char *const cfg_type_names[] = {"int", "bool", "string", "enum", "size", "duration"};

/* A string checker: returns 0 or -1 with errmsg saying why (the key is added by the caller). */
typedef int (*cfg_check_fn)(const char *value, char *errmsg, size_t errmsg_len);

struct cfg_entry {
    const char *name;
    enum cfg_type type;
    const char *def; /* default of bool/string/enum settings, in text form */
    int64_t def_num; /* default of int/size/duration settings */
    int64_t min, max;
    const char *values; /* enum: the accepted values, '|'-separated, index = stored value */
    const char *unit;   /* for the docs: "bytes", "ms" */
    int topic;          /* 1 = may be overridden per topic (CreateTopics configs) */
    size_t off;         /* where the value lives in struct ferryd_config */
    cfg_check_fn check; /* extra check of string values, or NULL */
    const char *doc;
};

#define OFF(field) offsetof(struct ferryd_config, field)
#define DAY_MS ((int64_t)24 * 3600 * 1000)
#define GIB ((int64_t)1024 * 1024 * 1024)

static int check_listen(const char *v, char *errmsg, size_t errmsg_len);
static int check_advertised(const char *v, char *errmsg, size_t errmsg_len);
static int check_members(const char *v, char *errmsg, size_t errmsg_len);

/* The one table: every setting the broker has. docs/configuration.md is generated from it. */
static const struct cfg_entry cfg_table[] = {
    {"node.id", CFG_INT, NULL, 0, 0, INT32_MAX, NULL, NULL, 0, OFF(node_id), NULL,
     "Id of this broker: returned in Metadata as the broker, the controller and every partition's leader."},
    {"listen", CFG_STRING, "127.0.0.1:9700", 0, 0, 0, NULL, NULL, 0, OFF(listen), check_listen,
     "Address the broker listens on, `ip:port` (IPv6 as `[ip]:port`). Port 0 picks a free port "
     "(see `ready.file`)."},
    {"advertised.listen", CFG_STRING, "", 0, 0, 0, NULL, NULL, 0, OFF(advertised_listen), check_advertised,
     "`host:port` that clients are told to connect to (Metadata). Empty = the address actually bound."},
    {"data.dir", CFG_STRING, "./data", 0, 0, 0, NULL, NULL, 0, OFF(data_dir), NULL,
     "Directory of the topic metadata (`meta/`) and the partition logs (`topics/<topic>-<partition>/`)."},
    {"security.protocol", CFG_ENUM, "tls", 0, 0, 0, "tls|plaintext", NULL, 0, OFF(security_protocol), NULL,
     "`tls` (the default) or `plaintext`. Plaintext is only used when set explicitly."},
    {"tls.cert.file", CFG_STRING, "", 0, 0, 0, NULL, NULL, 0, OFF(tls_cert_file), NULL,
     "PEM certificate chain of the broker. Required when `security.protocol=tls`."},
    {"tls.key.file", CFG_STRING, "", 0, 0, 0, NULL, NULL, 0, OFF(tls_key_file), NULL,
     "PEM private key of the broker. Required when `security.protocol=tls`."},
    {"tls.ca.file", CFG_STRING, "", 0, 0, 0, NULL, NULL, 0, OFF(tls_ca_file), NULL,
     "PEM CA bundle that verifies client certificates. Required when `tls.client.auth=required`."},
    {"tls.client.auth", CFG_ENUM, "none", 0, 0, 0, "none|required", NULL, 0, OFF(tls_client_auth), NULL,
     "`required` = mutual TLS: clients must present a certificate signed by `tls.ca.file`."},
    {"tls.min.version", CFG_ENUM, "1.3", 0, 0, 0, "1.3|1.2", NULL, 0, OFF(tls_min_version), NULL,
     "Oldest TLS version accepted."},
    {"max.connections", CFG_INT, NULL, 1024, 1, FERRY_MAX_CONNECTIONS, NULL, NULL, 0, OFF(max_connections), NULL,
     "Client connections served at once (at most FERRY_MAX_CONNECTIONS). Past it a new connection is accepted "
     "and closed at once, without a response, with a logged reason."},
    {"connections.handshake.timeout.ms", CFG_DURATION, NULL, 10000, 10, 3600000, NULL, "ms", 0,
     OFF(connections_handshake_timeout_ms), NULL,
     "A connection that has not completed its TLS handshake and sent its first request this long after "
     "being accepted is closed, with a logged reason."},
    {"connections.max.idle.ms", CFG_DURATION, NULL, 600000, 10, 7 * DAY_MS, NULL, "ms", 0,
     OFF(connections_max_idle_ms), NULL,
     "A connection with no request in flight and no response queued is closed after this long without "
     "traffic (a parked long-poll Fetch is not idle), with a logged reason."},
    {"num.partitions", CFG_INT, NULL, 1, 1, FERRY_MAX_PARTITIONS_PER_TOPIC, NULL, NULL, 0, OFF(num_partitions), NULL,
     "Partitions of a topic created with `partitions = -1`."},
    {"segment.bytes", CFG_SIZE, NULL, GIB, 4096, INT32_MAX, NULL, "bytes", 1, OFF(segment_bytes), NULL,
     "A partition rolls to a new segment file when the active one would exceed this size."},
    {"segment.ms", CFG_DURATION, NULL, 7 * DAY_MS, 1, INT64_MAX / 2, NULL, "ms", 1, OFF(segment_ms), NULL,
     "A partition rolls to a new segment when the active one's first batch is older than this "
     "(checked on append and once a second)."},
    {"retention.ms", CFG_DURATION, NULL, 7 * DAY_MS, -1, INT64_MAX / 2, NULL, "ms", 1, OFF(retention_ms), NULL,
     "Whole segments whose newest record is older than this are deleted. -1 = keep forever."},
    {"retention.bytes", CFG_SIZE, NULL, -1, -1, INT64_MAX / 2, NULL, "bytes", 1, OFF(retention_bytes), NULL,
     "Oldest segments of a partition are deleted while it is larger than this. -1 = no size limit."},
    {"retention.check.interval.ms", CFG_DURATION, NULL, 300000, 100, DAY_MS, NULL, "ms", 0,
     OFF(retention_check_interval_ms), NULL, "How often retention is applied to every partition."},
    {"log.index.interval.bytes", CFG_SIZE, NULL, 4096, 1, 16 * 1024 * 1024, NULL, "bytes", 0,
     OFF(log_index_interval_bytes), NULL, "Bytes of log between two entries of the sparse offset and time indexes."},
    {"batch.max.bytes", CFG_SIZE, NULL, FERRY_MAX_BATCH_BYTES, FERRY_BATCH_HEADER_SIZE, FERRY_MAX_BATCH_BYTES, NULL,
     "bytes", 0, OFF(batch_max_bytes), NULL,
     "Largest record batch a Produce may carry (BATCH_TOO_LARGE above it). At most FERRY_MAX_BATCH_BYTES."},
    {"flush.before.ack", CFG_BOOL, "true", 0, 0, 0, NULL, NULL, 0, OFF(flush_before_ack), NULL,
     "`true`: a Produce with acks -1 or 1 is answered only once its batch is fsync'd (group commit). "
     "`false` is WEAKER: the broker acknowledges right after the write to the page cache and syncs in the "
     "background, so a machine crash or power loss can lose acknowledged records."},
    {"ready.file", CFG_STRING, "", 0, 0, 0, NULL, NULL, 0, OFF(ready_file), NULL,
     "When set, once the listener is bound the broker writes `host:port` and a newline to this file "
     "atomically (temporary file + rename), and removes it at a clean stop."},
    {"cluster.id", CFG_INT, NULL, 1, 1, INT32_MAX, NULL, NULL, 0, OFF(cluster_id), NULL,
     "Id of the cluster: brokers refuse peer connections from another cluster id."},
    {"peer.listen", CFG_STRING, "127.0.0.1:9800", 0, 0, 0, NULL, NULL, 0, OFF(peer_listen), check_listen,
     "Address of the peer port (Raft traffic between brokers), `ip:port`. Port 0 picks a free port; "
     "`ready.file` then reports it on its second line (`peer host:port`). Used only in a cluster "
     "(`cluster.members` set)."},
    {"cluster.members", CFG_STRING, "", 0, 0, 0, NULL, NULL, 0, OFF(cluster_members), check_members,
     "Static initial members, `id@host:port` (peer addresses) separated by commas, e.g. "
     "`0@127.0.0.1:9800,1@127.0.0.1:9801,2@127.0.0.1:9802`. Every member must be given the same list; a "
     "broker whose `node.id` is not in it joins the running cluster through these members. Empty = a standalone broker without replication (no Raft)."},
    {"peer.security.protocol", CFG_ENUM, "tls", 0, 0, 0, "tls|plaintext", NULL, 0, OFF(peer_security_protocol), NULL,
     "`tls` (the default): brokers talk over mutual TLS on the peer port (each side verifies the other "
     "against `tls.ca.file`). `plaintext` only when set explicitly. Used only in a cluster."},
    {"peer.tls.cert.file", CFG_STRING, "", 0, 0, 0, NULL, NULL, 0, OFF(peer_tls_cert_file), NULL,
     "PEM certificate the peer port presents (serverAuth; its SAN must match the peer host in "
     "`cluster.members`). Required when `peer.security.protocol=tls`."},
    {"peer.tls.key.file", CFG_STRING, "", 0, 0, 0, NULL, NULL, 0, OFF(peer_tls_key_file), NULL,
     "PEM private key of `peer.tls.cert.file`."},
    {"peer.tls.client.cert.file", CFG_STRING, "", 0, 0, 0, NULL, NULL, 0, OFF(peer_tls_client_cert_file), NULL,
     "PEM certificate this broker presents when it dials a peer (clientAuth). Required when "
     "`peer.security.protocol=tls`."},
    {"peer.tls.client.key.file", CFG_STRING, "", 0, 0, 0, NULL, NULL, 0, OFF(peer_tls_client_key_file), NULL,
     "PEM private key of `peer.tls.client.cert.file`."},
    {"offsets.topic.num.partitions", CFG_INT, NULL, 12, 1, 1000, NULL, NULL, 0, OFF(offsets_topic_num_partitions),
     NULL,
     "Partitions of the internal topic `__consumer_offsets` that holds consumer groups and their committed "
     "offsets (docs/consumer-groups.md); a group lives on partition murmur2(group id) mod this, and its "
     "coordinator is that partition's leader. Read when the topic is created (once, by the controller "
     "leader); changing it later has no effect."},
    {"offsets.topic.replication.factor", CFG_INT, NULL, -1, -1, 16, NULL, NULL, 0,
     OFF(offsets_topic_replication_factor), NULL,
     "Replicas of each `__consumer_offsets` partition; -1 = min(3, brokers). The topic is created once that "
     "many brokers registered. Used only in a cluster (a standalone broker keeps one copy)."},
    {"group.min.session.timeout.ms", CFG_DURATION, NULL, 1000, 1, 3600000, NULL, "ms", 0,
     OFF(group_min_session_timeout_ms), NULL,
     "Smallest `session_timeout_ms` a group member may ask for; a member asking less gets this. A member that "
     "sends no heartbeat for its session timeout is removed and its partitions reassigned."},
    {"group.max.session.timeout.ms", CFG_DURATION, NULL, 1800000, 1, 86400000, NULL, "ms", 0,
     OFF(group_max_session_timeout_ms), NULL,
     "Largest `session_timeout_ms` a group member may ask for; a member asking more gets this (when below "
     "`group.min.session.timeout.ms`, the minimum wins)."},
    {"group.heartbeat.interval.ms", CFG_DURATION, NULL, 3000, 50, 3600000, NULL, "ms", 0,
     OFF(group_heartbeat_interval_ms), NULL,
     "Heartbeat interval the coordinator tells group members to use (`heartbeat_interval_ms` of "
     "GroupHeartbeat); keep it well below the session timeouts members use."},
    {"raft.snapshot.threshold", CFG_INT, NULL, 1024, 2, 1 << 20, NULL, NULL, 0, OFF(raft_snapshot_threshold), NULL,
     "Committed entries of a partition's Raft group between two snapshots (a snapshot is the partition's "
     "log end offset; the entries before it leave the Raft log). Smaller keeps less in memory; a replica "
     "that falls further behind than the log kept then refills its segments from the leader "
     "(docs/replication.md). Used only in a cluster."},
    {"raft.snapshot.trailing", CFG_INT, NULL, 256, 1, 1 << 20, NULL, NULL, 0, OFF(raft_snapshot_trailing), NULL,
     "Entries a partition's Raft group keeps after a snapshot, so a replica slightly behind catches up "
     "from the log instead of a snapshot. Used only in a cluster."},
    {"raft.quiescence.enable", CFG_BOOL, "true", 0, 0, 0, NULL, NULL, 0, OFF(raft_quiescence_enable), NULL,
     "Idle Raft groups stop their heartbeats; one ping per broker pair stands in for them "
     "(docs/replication.md, \"Heartbeats\"). Used only in a cluster."},
    {"raft.election.timeout.ms", CFG_DURATION, NULL, 1000, 20, 60000, NULL, "ms", 0, OFF(raft_election_timeout_ms),
     NULL,
     "Raft election timeout of every group (randomised between 1x and 2x), and how long a silent peer "
     "link may stay quiet before its groups elect without it. A peer whose connection closes is given "
     "up at once (docs/replication.md, \"Failover\"). Must exceed `raft.heartbeat.interval.ms`. Used only "
     "in a cluster."},
    {"raft.heartbeat.interval.ms", CFG_DURATION, NULL, 100, 10, 10000, NULL, "ms", 0,
     OFF(raft_heartbeat_interval_ms), NULL,
     "Raft heartbeat interval of every group; brokers ping each other every half interval. Used only in a "
     "cluster."},
    {"leader.rebalance.enable", CFG_BOOL, "true", 0, 0, 0, NULL, NULL, 0, OFF(leader_rebalance_enable), NULL,
     "Preferred-leader balancer: a broker leading a partition whose preferred replica (the first of its "
     "replica set) is a live voter hands the leadership back to it, a few at a time "
     "(docs/replication.md). Used only in a cluster."},
    {"leader.rebalance.interval.ms", CFG_DURATION, NULL, 30000, 100, DAY_MS, NULL, "ms", 0,
     OFF(leader_rebalance_interval_ms), NULL,
     "How often the preferred-leader balancer looks for partitions led away from their preferred replica."},
    {"log.level", CFG_ENUM, "info", 0, 0, 0, "error|warn|info|debug", NULL, 0, OFF(log_level), NULL,
     "Least severe level written to stderr."},
    {"log.format", CFG_ENUM, "text", 0, 0, 0, "text|json", NULL, 0, OFF(log_format), NULL,
     "`text` lines or one JSON object a line (fields ts, level, broker_id, msg)."},
    {"raft.segment.bytes", CFG_SIZE, NULL, 8 * 1024 * 1024, 64 * 1024, GIB, NULL, "bytes", 0, OFF(raft_segment_bytes),
     NULL,
     "Largest size of the segment files of a partition's Raft log (the write-ahead log under "
     "`data.dir/raft/`). Closing a full segment costs the broker's loop tens of milliseconds (the "
     "kernel's AIO context teardown), so small segments cap replicated produce throughput; but every "
     "partition replica keeps about three segments pre-allocated on disk. A broker hosting so many "
     "partitions that 3 x this x partitions would pass 3 GiB uses smaller segments (not below 1 MiB). "
     "Read when a partition's group opens. Used only in a cluster."},
    {"raft.snapshot.bytes", CFG_SIZE, NULL, 64 * 1024 * 1024, 4096, 64 * GIB, NULL, "bytes", 0,
     OFF(raft_snapshot_bytes), NULL,
     "A partition's Raft group also snapshots once the entries applied since its last snapshot hold this "
     "many bytes, before `raft.snapshot.threshold` entries (the Raft library keeps those entries in "
     "memory: this bounds it for large batches). Used only in a cluster."},
#ifdef FERRY_BUG_SWITCHES
    {"debug.bug", CFG_ENUM, "none", 0, 0, 0, "none|ack-before-commit|drop-entry|no-dedupe", NULL, 0, OFF(debug_bug),
     NULL,
     "FAULT-INJECTION BUILDS ONLY (-DFERRY_BUG_SWITCHES, build-bugs/ferryd): a deliberate bug the "
     "fault-injection suite must catch. ack-before-commit: a replicated produce is acknowledged once "
     "proposed, before commit; drop-entry: the broker with node.id 1 skips applying every 50th committed "
     "batch of each partition; no-dedupe: idempotent duplicates are stored again."},
#endif
};

#define CFG_COUNT (sizeof(cfg_table) / sizeof(cfg_table[0]))
_Static_assert(CFG_COUNT <= sizeof(((struct ferryd_config *)0)->file_line) / sizeof(int),
               "file_line must have a slot per setting");

static const struct cfg_entry *cfg_find(const char *key)
{
    for (size_t i = 0; i < CFG_COUNT; i++)
        if (strcmp(cfg_table[i].name, key) == 0)
            return &cfg_table[i];
    return NULL;
}

static int64_t *slot_i64(struct ferryd_config *c, const struct cfg_entry *e)
{
    return (int64_t *)(void *)((char *)c + e->off);
}
static int *slot_int(struct ferryd_config *c, const struct cfg_entry *e)
{
    return (int *)(void *)((char *)c + e->off);
}
static char **slot_str(struct ferryd_config *c, const struct cfg_entry *e)
{
    return (char **)(void *)((char *)c + e->off);
}
static const int64_t *cslot_i64(const struct ferryd_config *c, const struct cfg_entry *e)
{
    return (const int64_t *)(const void *)((const char *)c + e->off);
}
static const int *cslot_int(const struct ferryd_config *c, const struct cfg_entry *e)
{
    return (const int *)(const void *)((const char *)c + e->off);
}
static char *const *cslot_str(const struct ferryd_config *c, const struct cfg_entry *e)
{
    return (char *const *)(const void *)((const char *)c + e->off);
}

int ferryd_split_hostport(const char *s, char *host, size_t host_len, int *port)
{
    const char *colon;
    const char *h = s;
    size_t hl;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':')
            return -1;
        h = s + 1;
        hl = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL)
            return -1;
        hl = (size_t)(colon - s);
    }
    if (hl == 0 || hl >= host_len)
        return -1;
    const char *p = colon + 1;
    if (*p == '\0' || strlen(p) > 5)
        return -1;
    long v = 0;
    for (; *p; p++) {
        if (!isdigit((unsigned char)*p))
            return -1;
        v = v * 10 + (*p - '0');
    }
    if (v > 65535)
        return -1;
    memcpy(host, h, hl);
    host[hl] = '\0';
    *port = (int)v;
    return 0;
}

static int check_listen(const char *v, char *errmsg, size_t errmsg_len)
{
    char host[256];
    int port;
    struct sockaddr_in a4;
    struct sockaddr_in6 a6;
    if (ferryd_split_hostport(v, host, sizeof(host), &port) != 0) {
        snprintf(errmsg, errmsg_len, "'%s' is not ip:port (port 0..65535)", v);
        return -1;
    }
    if (uv_ip4_addr(host, port, &a4) != 0 && uv_ip6_addr(host, port, &a6) != 0) {
        snprintf(errmsg, errmsg_len, "'%s' is not a numeric IPv4 or IPv6 address", host);
        return -1;
    }
    return 0;
}

static int check_advertised(const char *v, char *errmsg, size_t errmsg_len)
{
    char host[256];
    int port;
    if (v[0] == '\0')
        return 0;
    if (ferryd_split_hostport(v, host, sizeof(host), &port) != 0 || port == 0) {
        snprintf(errmsg, errmsg_len, "'%s' is not host:port (port 1..65535)", v);
        return -1;
    }
    return 0;
}

int ferryd_parse_members(const char *v, struct ferryd_member *out, int cap, char *errmsg, size_t errmsg_len)
{
    int n = 0;
    const char *p = v;
    while (*p != '\0') {
        char item[300];
        const char *comma = strchr(p, ',');
        size_t len = comma != NULL ? (size_t)(comma - p) : strlen(p);
        if (len == 0 || len >= sizeof(item)) {
            snprintf(errmsg, errmsg_len, "member %d: empty or too long", n);
            return -1;
        }
        memcpy(item, p, len);
        item[len] = '\0';
        char *at = strchr(item, '@');
        char *end = NULL;
        long id = at != NULL ? strtol(item, &end, 10) : -1;
        if (at == NULL || end != at || id < 0 || id > INT32_MAX) {
            snprintf(errmsg, errmsg_len, "'%s' is not id@host:port", item);
            return -1;
        }
        if (n >= cap) {
            snprintf(errmsg, errmsg_len, "more than %d members", cap);
            return -1;
        }
        struct ferryd_member *m = &out[n];
        if (ferryd_split_hostport(at + 1, m->host, sizeof(m->host), &m->port) != 0 || m->port == 0) {
            snprintf(errmsg, errmsg_len, "'%s' is not id@host:port (port 1..65535)", item);
            return -1;
        }
        m->id = id;
        for (int k = 0; k < n; k++) {
            if (out[k].id == id) {
                snprintf(errmsg, errmsg_len, "member id %ld listed twice", id);
                return -1;
            }
        }
        n++;
        p += len;
        if (*p == ',')
            p++;
    }
    return n;
}

static int check_members(const char *v, char *errmsg, size_t errmsg_len)
{
    struct ferryd_member m[FERRYD_MAX_MEMBERS];
    return ferryd_parse_members(v, m, FERRYD_MAX_MEMBERS, errmsg, errmsg_len) < 0 ? -1 : 0;
}

struct unit_suffix {
    const char *name;
    int64_t mult;
};
static const struct unit_suffix size_units[] = {
    {"", 1}, {"b", 1}, {"kib", 1024}, {"mib", 1024 * 1024}, {"gib", GIB}, {"tib", GIB * 1024}, {NULL, 0}};
static const struct unit_suffix duration_units[] = {
    {"", 1}, {"ms", 1}, {"s", 1000}, {"min", 60000}, {"h", 3600000}, {"d", DAY_MS}, {NULL, 0}};
static const struct unit_suffix no_units[] = {{"", 1}, {NULL, 0}};

/* Parses a decimal integer with an optional unit suffix. Returns 0 or -1 (errmsg says why). */
static int parse_number(const char *s, const struct unit_suffix *units, int64_t *out, char *errmsg,
                        size_t errmsg_len)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || isspace((unsigned char)s[0])) {
        snprintf(errmsg, errmsg_len, "'%s' is not an integer", s);
        return -1;
    }
    if (errno == ERANGE) {
        snprintf(errmsg, errmsg_len, "'%s' is out of the 64-bit range", s);
        return -1;
    }
    while (*end == ' ' || *end == '\t')
        end++;
    for (const struct unit_suffix *u = units; u->name != NULL; u++) {
        if (strcasecmp(end, u->name) != 0)
            continue;
        if (v > INT64_MAX / u->mult || v < INT64_MIN / u->mult) {
            snprintf(errmsg, errmsg_len, "'%s' is out of the 64-bit range", s);
            return -1;
        }
        *out = (int64_t)v * u->mult;
        return 0;
    }
    if (units == no_units)
        snprintf(errmsg, errmsg_len, "'%s' is not an integer", s);
    else if (units == size_units)
        snprintf(errmsg, errmsg_len, "'%s': unknown unit '%s' (use B, KiB, MiB, GiB, TiB or none)", s, end);
    else
        snprintf(errmsg, errmsg_len, "'%s': unknown unit '%s' (use ms, s, min, h, d or none)", s, end);
    return -1;
}

/* Returns the index of value in a '|'-separated list, or -1. */
static int enum_index(const char *values, const char *value)
{
    size_t vl = strlen(value);
    int idx = 0;
    const char *p = values;
    while (1) {
        const char *bar = strchr(p, '|');
        size_t l = bar ? (size_t)(bar - p) : strlen(p);
        if (l == vl && memcmp(p, value, l) == 0)
            return idx;
        if (bar == NULL)
            return -1;
        p = bar + 1;
        idx++;
    }
}

/* Parses value for entry e into *num (numbers, bools, enums). Strings are handled by the caller. */
static int parse_value(const struct cfg_entry *e, const char *value, int64_t *num, char *errmsg, size_t errmsg_len)
{
    char why[200];
    switch (e->type) {
    case CFG_BOOL:
        if (strcmp(value, "true") == 0)
            *num = 1;
        else if (strcmp(value, "false") == 0)
            *num = 0;
        else {
            snprintf(errmsg, errmsg_len, "%s: '%s' is not a bool (true or false)", e->name, value);
            return -1;
        }
        return 0;
    case CFG_ENUM: {
        int idx = enum_index(e->values, value);
        if (idx < 0) {
            snprintf(errmsg, errmsg_len, "%s: '%s' is not one of %s", e->name, value, e->values);
            return -1;
        }
        *num = idx;
        return 0;
    }
    case CFG_INT:
    case CFG_SIZE:
    case CFG_DURATION: {
        const struct unit_suffix *u = e->type == CFG_SIZE       ? size_units
                                      : e->type == CFG_DURATION ? duration_units
                                                                : no_units;
        if (parse_number(value, u, num, why, sizeof(why)) != 0) {
            snprintf(errmsg, errmsg_len, "%s: %s", e->name, why);
            return -1;
        }
        if (*num < e->min) {
            snprintf(errmsg, errmsg_len, "%s: %" PRId64 " is below the minimum %" PRId64, e->name, *num, e->min);
            return -1;
        }
        if (*num > e->max) {
            snprintf(errmsg, errmsg_len, "%s: %" PRId64 " is above the maximum %" PRId64, e->name, *num, e->max);
            return -1;
        }
        return 0;
    }
    case CFG_STRING:
        break;
    }
    assert(0 && "parse_value: string entries are handled by the caller");
    return -1;
}

static int set_entry(struct ferryd_config *c, const struct cfg_entry *e, const char *value, char *errmsg,
                     size_t errmsg_len)
{
    int64_t num = 0;
    if (e->type == CFG_STRING) {
        char why[200];
        if (e->check != NULL && e->check(value, why, sizeof(why)) != 0) {
            snprintf(errmsg, errmsg_len, "%s: %s", e->name, why);
            return -1;
        }
        char *copy = strdup(value);
        if (copy == NULL) {
            snprintf(errmsg, errmsg_len, "%s: out of memory", e->name);
            return -1;
        }
        char **slot = slot_str(c, e);
        free(*slot);
        *slot = copy;
        return 0;
    }
    if (parse_value(e, value, &num, errmsg, errmsg_len) != 0)
        return -1;
    if (e->type == CFG_BOOL || e->type == CFG_ENUM)
        *slot_int(c, e) = (int)num;
    else
        *slot_i64(c, e) = num;
    return 0;
}

int ferryd_config_init(struct ferryd_config *c, char *errmsg, size_t errmsg_len)
{
    memset(c, 0, sizeof(*c));
    for (size_t i = 0; i < CFG_COUNT; i++) {
        const struct cfg_entry *e = &cfg_table[i];
        if (e->type == CFG_INT || e->type == CFG_SIZE || e->type == CFG_DURATION) {
            assert(e->def_num >= e->min && e->def_num <= e->max);
            *slot_i64(c, e) = e->def_num;
        } else if (set_entry(c, e, e->def, errmsg, errmsg_len) != 0) {
            ferryd_config_free(c);
            return -1;
        }
    }
    return 0;
}

void ferryd_config_free(struct ferryd_config *c)
{
    for (size_t i = 0; i < CFG_COUNT; i++) {
        if (cfg_table[i].type == CFG_STRING) {
            char **slot = slot_str(c, &cfg_table[i]);
            free(*slot);
            *slot = NULL;
        }
    }
}

int ferryd_config_set(struct ferryd_config *c, const char *key, const char *value, char *errmsg, size_t errmsg_len)
{
    const struct cfg_entry *e = cfg_find(key);
    if (e == NULL) {
        snprintf(errmsg, errmsg_len, "unknown key '%s' (ferryd --print-config-doc lists them)", key);
        return -1;
    }
    return set_entry(c, e, value, errmsg, errmsg_len);
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

int ferryd_config_set_arg(struct ferryd_config *c, const char *arg, char *errmsg, size_t errmsg_len)
{
    char buf[4096];
    char why[512];
    if (strlen(arg) >= sizeof(buf)) {
        snprintf(errmsg, errmsg_len, "--set: argument longer than %zu bytes", sizeof(buf) - 1);
        return -1;
    }
    strcpy(buf, arg);
    char *eq = strchr(buf, '=');
    if (eq == NULL) {
        snprintf(errmsg, errmsg_len, "--set %s: expected key=value", arg);
        return -1;
    }
    *eq = '\0';
    if (ferryd_config_set(c, trim(buf), trim(eq + 1), why, sizeof(why)) != 0) {
        snprintf(errmsg, errmsg_len, "--set %s: %s", arg, why);
        return -1;
    }
    return 0;
}

int ferryd_config_load_file(struct ferryd_config *c, const char *path, char *errmsg, size_t errmsg_len)
{
    char line[4096];
    char why[512];
    int lineno = 0;
    int rc = -1;
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(errmsg, errmsg_len, "%s: %s", path, strerror(errno));
        return -1;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        lineno++;
        size_t n = strlen(line);
        if (n == sizeof(line) - 1 && line[n - 1] != '\n' && !feof(f)) {
            snprintf(errmsg, errmsg_len, "%s:%d: line longer than %zu bytes", path, lineno, sizeof(line) - 2);
            goto out;
        }
        /* '#' starts a comment at the start of a line or after whitespace (paths may contain '#'). */
        for (char *p = line; *p; p++) {
            if (*p == '#' && (p == line || isspace((unsigned char)p[-1]))) {
                *p = '\0';
                break;
            }
        }
        char *s = trim(line);
        if (*s == '\0')
            continue;
        char *eq = strchr(s, '=');
        if (eq == NULL) {
            snprintf(errmsg, errmsg_len, "%s:%d: expected 'key = value', got '%s'", path, lineno, s);
            goto out;
        }
        *eq = '\0';
        char *key = trim(s);
        char *value = trim(eq + 1);
        const struct cfg_entry *e = cfg_find(key);
        if (e == NULL) {
            snprintf(errmsg, errmsg_len, "%s:%d: unknown key '%s' (ferryd --print-config-doc lists them)", path,
                     lineno, key);
            goto out;
        }
        size_t idx = (size_t)(e - cfg_table);
        if (c->file_line[idx] != 0) {
            snprintf(errmsg, errmsg_len, "%s:%d: key '%s' already set at line %d", path, lineno, key,
                     c->file_line[idx]);
            goto out;
        }
        if (set_entry(c, e, value, why, sizeof(why)) != 0) {
            snprintf(errmsg, errmsg_len, "%s:%d: %s", path, lineno, why);
            goto out;
        }
        c->file_line[idx] = lineno;
    }
    if (ferror(f)) {
        snprintf(errmsg, errmsg_len, "%s: read error", path);
        goto out;
    }
    rc = 0;
out:
    fclose(f);
    return rc;
}

int ferryd_config_validate(const struct ferryd_config *c, char *errmsg, size_t errmsg_len)
{
    if (c->security_protocol == FERRYD_SECURITY_TLS) {
        if (c->tls_cert_file[0] == '\0' || c->tls_key_file[0] == '\0') {
            snprintf(errmsg, errmsg_len,
                     "tls.cert.file and tls.key.file are required when security.protocol=tls "
                     "(or set security.protocol=plaintext explicitly)");
            return -1;
        }
        if (c->tls_client_auth == FERRYD_CLIENT_AUTH_REQUIRED && c->tls_ca_file[0] == '\0') {
            snprintf(errmsg, errmsg_len, "tls.ca.file is required when tls.client.auth=required");
            return -1;
        }
    }
    if (c->data_dir[0] == '\0') {
        snprintf(errmsg, errmsg_len, "data.dir: must not be empty");
        return -1;
    }
    if (c->cluster_members[0] != '\0') {
        struct ferryd_member m[FERRYD_MAX_MEMBERS];
        char why[256];
        int n = ferryd_parse_members(c->cluster_members, m, FERRYD_MAX_MEMBERS, why, sizeof(why));
        if (n < 0) {
            snprintf(errmsg, errmsg_len, "cluster.members: %s", why);
            return -1;
        }
        /* A node.id that is not one of the members is a broker joining the running cluster
         * (docs/replication.md, "Joining and registration"). */
        if (c->peer_security_protocol == FERRYD_SECURITY_TLS &&
            (c->peer_tls_cert_file[0] == '\0' || c->peer_tls_key_file[0] == '\0' ||
             c->peer_tls_client_cert_file[0] == '\0' || c->peer_tls_client_key_file[0] == '\0' ||
             c->tls_ca_file[0] == '\0')) {
            snprintf(errmsg, errmsg_len,
                     "peer.security.protocol=tls (the default) needs peer.tls.cert.file, peer.tls.key.file, "
                     "peer.tls.client.cert.file, peer.tls.client.key.file and tls.ca.file "
                     "(or set peer.security.protocol=plaintext explicitly)");
            return -1;
        }
    }
    return 0;
}

static void print_num(FILE *out, const struct cfg_entry *e, int64_t v)
{
    fprintf(out, "%" PRId64, v);
    if (e->type == CFG_SIZE && v > 0 && v % 1024 == 0) {
        const char *u[] = {"KiB", "MiB", "GiB", "TiB"};
        int i = -1;
        while (v % 1024 == 0 && i < 3) {
            v /= 1024;
            i++;
        }
        fprintf(out, " (%" PRId64 " %s)", v, u[i]);
    } else if (e->type == CFG_DURATION && v >= 1000) {
        if (v % DAY_MS == 0)
            fprintf(out, " (%" PRId64 " d)", v / DAY_MS);
        else if (v % 3600000 == 0)
            fprintf(out, " (%" PRId64 " h)", v / 3600000);
        else if (v % 60000 == 0)
            fprintf(out, " (%" PRId64 " min)", v / 60000);
        else if (v % 1000 == 0)
            fprintf(out, " (%" PRId64 " s)", v / 1000);
    }
}

void ferryd_config_print_doc(FILE *out)
{
    fprintf(out, "# ferryd configuration\n\n"
                 "<!-- Generated by `ferryd --print-config-doc` (`make docs`) from the table in broker/config.c. "
                 "Do not edit by hand. -->\n\n"
                 "ferryd reads `--config FILE`, then applies each `--set key=value` in order (they override the "
                 "file). The file holds `key = value` lines; `#` starts a comment (at the start of a line or "
                 "after a space); blank lines are ignored. Unknown keys, keys set twice in the file, mistyped "
                 "and out-of-range values are refused at start-up with a message naming the key (and the "
                 "file:line). `ferryd --check-config` validates and prints the effective configuration.\n\n"
                 "Types: `int` decimal integer; `size` bytes, optionally with a unit `B`, `KiB`, `MiB`, `GiB`, "
                 "`TiB` (`segment.bytes = 512MiB`); `duration` milliseconds, optionally with a unit `ms`, `s`, "
                 "`min`, `h`, `d` (`retention.ms = 3d`); `bool` `true` or `false`; `enum` one of the listed "
                 "values; `string` the rest of the line, surrounding spaces removed.\n\n"
                 "Settings marked *topic* can be overridden per topic in CreateTopics `configs` "
                 "(values as decimal strings, same ranges).\n\n"
                 "| key | type | default | valid values | description |\n"
                 "|---|---|---|---|---|\n");
    for (size_t i = 0; i < CFG_COUNT; i++) {
        const struct cfg_entry *e = &cfg_table[i];
        fprintf(out, "| `%s` | %s%s | ", e->name, cfg_type_names[e->type], e->topic ? ", topic" : "");
        switch (e->type) {
        case CFG_INT:
        case CFG_SIZE:
        case CFG_DURATION:
            print_num(out, e, e->def_num);
            fprintf(out, " | %" PRId64 " .. %" PRId64 "%s%s |", e->min, e->max, e->unit ? " " : "",
                    e->unit ? e->unit : "");
            break;
        case CFG_BOOL:
            fprintf(out, "`%s` | `true`, `false` |", e->def);
            break;
        case CFG_ENUM: {
            fprintf(out, "`%s` | ", e->def);
            for (const char *p = e->values; *p;) {
                const char *bar = strchr(p, '|');
                int l = bar ? (int)(bar - p) : (int)strlen(p);
                fprintf(out, "%s`%.*s`", p == e->values ? "" : ", ", l, p);
                p = bar ? bar + 1 : p + l;
            }
            fprintf(out, " |");
            break;
        }
        case CFG_STRING:
            fprintf(out, "%s%s%s | %s |", e->def[0] ? "`" : "(empty)", e->def, e->def[0] ? "`" : "",
                    e->check == check_listen ? "`ip:port`" : e->check == check_advertised ? "`host:port`" : "text");
            break;
        }
        fprintf(out, " %s |\n", e->doc);
    }
}

void ferryd_config_print(const struct ferryd_config *c, FILE *out)
{
    for (size_t i = 0; i < CFG_COUNT; i++) {
        const struct cfg_entry *e = &cfg_table[i];
        switch (e->type) {
        case CFG_INT:
        case CFG_SIZE:
        case CFG_DURATION:
            fprintf(out, "%s = %" PRId64 "\n", e->name, *cslot_i64(c, e));
            break;
        case CFG_BOOL:
            fprintf(out, "%s = %s\n", e->name, *cslot_int(c, e) ? "true" : "false");
            break;
        case CFG_ENUM: {
            int idx = *cslot_int(c, e);
            const char *p = e->values;
            for (int k = 0; k < idx; k++)
                p = strchr(p, '|') + 1;
            const char *bar = strchr(p, '|');
            fprintf(out, "%s = %.*s\n", e->name, bar ? (int)(bar - p) : (int)strlen(p), p);
            break;
        }
        case CFG_STRING:
            fprintf(out, "%s = %s\n", e->name, *cslot_str(c, e));
            break;
        }
    }
}

void ferryd_config_log_config(const struct ferryd_config *c, struct ferry_log_config *out)
{
    out->segment_bytes = (uint64_t)c->segment_bytes;
    out->segment_ms = c->segment_ms;
    out->retention_ms = c->retention_ms;
    out->retention_bytes = c->retention_bytes;
    out->index_interval_bytes = (uint32_t)c->log_index_interval_bytes;
    out->msg_fn = ferryd_log_storage_msg; /* storage messages follow log.level and log.format */
    out->msg_opaque = NULL;
}

int ferryd_config_topic_value(const char *key, const char *value, int64_t *out, char *errmsg, size_t errmsg_len)
{
    const struct cfg_entry *e = cfg_find(key);
    if (e == NULL || !e->topic) {
        snprintf(errmsg, errmsg_len,
                 "unknown topic config '%s' (retention.ms, retention.bytes, segment.bytes, segment.ms)", key);
        return -1;
    }
    return parse_value(e, value, out, errmsg, errmsg_len);
}

int ferryd_config_apply_topic_value(struct ferry_log_config *lc, const char *key, int64_t value)
{
    if (strcmp(key, "retention.ms") == 0)
        lc->retention_ms = value;
    else if (strcmp(key, "retention.bytes") == 0)
        lc->retention_bytes = value;
    else if (strcmp(key, "segment.bytes") == 0)
        lc->segment_bytes = (uint64_t)value;
    else if (strcmp(key, "segment.ms") == 0)
        lc->segment_ms = value;
    else
        return -1;
    return 0;
}
