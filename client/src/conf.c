/* conf.c: the client configuration table: validation, defaults, typed settings, descriptions. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry_int.h"

enum conf_type { CT_STR, CT_PATH, CT_INT, CT_ENUM };

/* One setting. Enums list their choices "a|b|c" and the value each choice stores. */
struct conf_prop {
    const char *name;
    enum conf_type type;
    const char *def;
    int64_t min, max;
    const char *choices;
    int64_t choice_values[6];
    size_t offset; /* into struct ferry_settings */
    const char *doc;
};

#define OFF(field) offsetof(struct ferry_settings, field)
#define KB 1024LL

/* The one table of client settings; docs and validation both come from it. Append only. */
static const struct conf_prop props[] = {
    {"bootstrap.servers", CT_STR, "", 0, 0, NULL, {0}, OFF(bootstrap_servers),
     "Comma-separated host:port list of brokers to learn the cluster from ([v6addr]:port for IPv6). Required."},
    {"client.id", CT_STR, "libferry", 0, 0, NULL, {0}, OFF(client_id),
     "Name sent with every request, for broker logs."},
    {"security.protocol", CT_ENUM, "tls", 0, 0, "tls|plaintext", {1, 0}, OFF(tls),
     "Transport to the brokers. tls requires ssl.ca.location."},
    {"ssl.ca.location", CT_PATH, "", 0, 0, NULL, {0}, OFF(ca_location),
     "PEM file of the CA(s) that verify broker certificates. Required with security.protocol=tls."},
    {"ssl.certificate.location", CT_PATH, "", 0, 0, NULL, {0}, OFF(cert_location),
     "PEM client certificate (chain) for mutual TLS; needs ssl.key.location."},
    {"ssl.key.location", CT_PATH, "", 0, 0, NULL, {0}, OFF(key_location),
     "PEM private key of ssl.certificate.location."},
    {"ssl.endpoint.identification", CT_ENUM, "https", 0, 0, "https|none", {1, 0}, OFF(verify_name),
     "https: the broker certificate must name the host connected to. none is accepted for compatibility but "
     "the transport still verifies the name (a warning is logged)."},
    {"acks", CT_ENUM, "all", 0, 0, "all|-1|1|0", {-1, -1, 1, 0}, OFF(acks),
     "Producer: all/-1 = acknowledged once durable, 1 = once the leader wrote it, 0 = no acknowledgement "
     "(delivery is reported when the request is written; no offset)."},
    {"linger.ms", CT_INT, "5", 0, 900000, NULL, {0}, OFF(linger_ms),
     "Producer: how long a batch waits for more records before it is sent. A partition's batch also "
     "keeps filling, up to batch.size, while its previous batch is in flight."},
    {"batch.size", CT_INT, "1048576", 1024, FERRY_MAX_BATCH_BYTES, NULL, {0}, OFF(batch_size),
     "Producer: a partition's batch is sent once it holds this many (uncompressed) bytes."},
    {"compression.type", CT_ENUM, "none", 0, 0, "none|lz4|zstd",
     {FERRY_COMPRESSION_NONE, FERRY_COMPRESSION_LZ4, FERRY_COMPRESSION_ZSTD}, OFF(compression),
     "Producer: compression of each batch's record area."},
    {"max.in.flight.requests.per.connection", CT_INT, "5", 1, 1000, NULL, {0}, OFF(max_inflight),
     "Producer: produce requests awaiting a response per broker connection (each partition has at most "
     "one batch in flight, so order is kept through retries)."},
    {"queue.buffering.max.messages", CT_INT, "100000", 1, 10000000, NULL, {0}, OFF(queue_max_msgs),
     "Producer: records produced but not yet delivered, at most."},
    {"queue.buffering.max.kbytes", CT_INT, "1048576", 1, 2097151, NULL, {0}, OFF(queue_max_kbytes),
     "Producer: KiB of records produced but not yet delivered, at most."},
    {"max.block.ms", CT_INT, "60000", 0, 3600000, NULL, {0}, OFF(max_block_ms),
     "Producer: how long ferry_produce blocks when the queue is full (FERRY_F_NONBLOCK: not at all)."},
    {"request.timeout.ms", CT_INT, "30000", 100, 900000, NULL, {0}, OFF(request_timeout_ms),
     "How long a request may wait for its response before the connection is considered broken."},
    {"delivery.timeout.ms", CT_INT, "120000", 1, 3600000, NULL, {0}, OFF(delivery_timeout_ms),
     "Producer: a record not delivered this long after ferry_produce fails (retries stop)."},
    {"retry.backoff.ms", CT_INT, "100", 1, 300000, NULL, {0}, OFF(retry_backoff_ms),
     "Wait before retrying a failed request; also the first reconnect backoff (doubling to 10 s)."},
    {"retry.backoff.max.ms", CT_INT, "1000", 1, 300000, NULL, {0}, OFF(retry_backoff_max_ms),
     "Producer: while a partition with queued records has no reachable leader, metadata is refreshed "
     "after retry.backoff.ms, then twice as long each time up to this (not below retry.backoff.ms)."},
    {"topic.metadata.propagation.max.ms", CT_INT, "30000", 0, 3600000, NULL, {0}, OFF(topic_propagation_max_ms),
     "Producer: a topic created moments ago may not have reached every broker yet, so for this long after "
     "the client first used a topic, metadata saying it does not exist only makes its records wait and "
     "metadata be asked again; after it they fail with UNKNOWN_TOPIC_OR_PARTITION (as librdkafka's "
     "setting of the same name). 0 = fail at once."},
    {"metadata.max.age.ms", CT_INT, "300000", 1000, 86400000, NULL, {0}, OFF(metadata_max_age_ms),
     "Metadata is refreshed at least this often."},
    {"fetch.max.wait.ms", CT_INT, "500", 0, FERRY_MAX_FETCH_WAIT_MS, NULL, {0}, OFF(fetch_max_wait_ms),
     "Consumer: how long the broker may hold a fetch waiting for fetch.min.bytes."},
    {"fetch.min.bytes", CT_INT, "1", 1, 100000000, NULL, {0}, OFF(fetch_min_bytes),
     "Consumer: the broker answers a fetch once this many bytes are available."},
    {"fetch.max.bytes", CT_INT, "52428800", 1024, 2147483647, NULL, {0}, OFF(fetch_max_bytes),
     "Consumer: bytes per fetch response (the broker caps it at 32 MiB); also bounds the prefetch queue."},
    {"max.partition.fetch.bytes", CT_INT, "1048576", 1, FERRY_MAX_FETCH_BYTES, NULL, {0},
     OFF(max_partition_fetch_bytes), "Consumer: bytes per partition per fetch response."},
    {"auto.offset.reset", CT_ENUM, "earliest", 0, 0, "earliest|latest|error",
     {FERRY_RESET_EARLIEST, FERRY_RESET_LATEST, FERRY_RESET_ERROR}, OFF(auto_offset_reset),
     "Consumer: where to go when the position is out of range, or (consumer group) when an assigned "
     "partition has no committed offset; error = deliver an error event and stop the partition until "
     "ferry_seek."},
    {"socket.connection.setup.timeout.ms", CT_INT, "10000", 100, 300000, NULL, {0},
     OFF(conn_setup_timeout_ms), "Time to connect, finish TLS and ApiVersions before giving up on a broker."},
    {"enable.idempotence", CT_ENUM, "true", 0, 0, "true|false", {1, 0}, OFF(idempotence),
     "Producer: exactly-once per partition across retries. The producer gets an id (InitProducerId) and "
     "numbers each partition's batches; the leader stores a retried batch once and acknowledges it with "
     "its original offset. Allows up to min(5, max.in.flight.requests.per.connection) batches in flight "
     "per partition, kept in order through retries. Requires acks=all: setting it to true with acks 0 or 1 "
     "is an error; left at its default, acks 0 or 1 turn it off. false: one batch in flight per partition "
     "(order kept) and a retry after a lost acknowledgement may store a batch twice."},
    {"group.id", CT_STR, "", 0, 0, NULL, {0}, OFF(group_id),
     "Consumer: the consumer group to join with ferry_subscribe (1..255 bytes); also the group of "
     "ferry_commit_* and ferry_committed. Empty: no group (ferry_assign only)."},
    {"group.instance.id", CT_STR, "", 0, 0, NULL, {0}, OFF(group_instance_id),
     "Consumer: static membership (e.g. the pod name). A member that restarts with the same instance id "
     "within session.timeout.ms gets its partitions back without a rebalance; close then leaves "
     "temporarily (epoch -2) instead of for good."},
    {"enable.auto.commit", CT_ENUM, "true", 0, 0, "true|false", {1, 0}, OFF(enable_auto_commit),
     "Consumer group: commit the position of every owned partition every auto.commit.interval.ms, before a "
     "partition is revoked, and at ferry_consumer_close. The position is the offset after the last "
     "message ferry_consumer_poll returned (at-least-once)."},
    {"auto.commit.interval.ms", CT_INT, "5000", 100, 86400000, NULL, {0}, OFF(auto_commit_interval_ms),
     "Consumer group: how often enable.auto.commit commits positions that moved."},
    {"session.timeout.ms", CT_INT, "45000", 1000, 3600000, NULL, {0}, OFF(session_timeout_ms),
     "Consumer group: a member not heard from for this long is removed and its partitions move (the "
     "broker bounds it with group.min/max.session.timeout.ms). Heartbeats come from libferry's I/O "
     "thread, not from ferry_consumer_poll."},
    {"heartbeat.interval.ms", CT_INT, "3000", 100, 3600000, NULL, {0}, OFF(heartbeat_interval_ms),
     "Consumer group: heartbeat interval until the coordinator names its own (the broker's value wins)."},
    {"max.poll.interval.ms", CT_INT, "300000", 1000, 86400000, NULL, {0}, OFF(max_poll_interval_ms),
     "Consumer group: the processing deadline. If the application neither polls nor calls "
     "ferry_consumer_extend_deadline for this long, libferry leaves the group (its partitions move; a "
     "LOST event follows) and rejoins at the next poll."},
};

#define NPROPS (sizeof props / sizeof props[0])

static const struct conf_prop *prop_find(const char *key, size_t *index)
{
    for (size_t i = 0; i < NPROPS; i++) {
        if (strcmp(props[i].name, key) == 0) {
            *index = i;
            return &props[i];
        }
    }
    return NULL;
}

static const char *type_name(enum conf_type t)
{
    switch (t) {
    case CT_STR:
        return "string";
    case CT_PATH:
        return "path";
    case CT_INT:
        return "int";
    case CT_ENUM:
        return "enum";
    }
    return "?";
}

/* Parses a whole decimal integer. Returns 0 or -1. */
static int parse_int(const char *s, int64_t *out)
{
    if (*s == '\0')
        return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0' || end == s)
        return -1;
    *out = v;
    return 0;
}

/* Position of value among "a|b|c", or -1. */
static int enum_index(const char *choices, const char *value)
{
    size_t vlen = strlen(value);
    int i = 0;
    const char *p = choices;
    for (;;) {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        if (n == vlen && strncmp(p, value, n) == 0)
            return i;
        if (bar == NULL)
            return -1;
        p = bar + 1;
        i++;
    }
}

/* Validates value for prop; on success *ival holds the int/enum value. */
static ferry_err_t prop_validate(const struct conf_prop *p, const char *value, int64_t *ival, char *errstr,
                                 size_t errstr_size)
{
    switch (p->type) {
    case CT_STR:
    case CT_PATH:
        if (strlen(value) > 4096) {
            ferry_set_errstr(errstr, errstr_size, "%s: value longer than 4096 bytes", p->name);
            return FERRY_ERR__INVALID_CONFIG_VALUE;
        }
        if (strcmp(p->name, "client.id") == 0 && strlen(value) > FERRY_MAX_CLIENT_ID) {
            ferry_set_errstr(errstr, errstr_size, "client.id: longer than %d bytes", FERRY_MAX_CLIENT_ID);
            return FERRY_ERR__INVALID_CONFIG_VALUE;
        }
        if ((strcmp(p->name, "group.id") == 0 || strcmp(p->name, "group.instance.id") == 0) &&
            strlen(value) > FERRY_MAX_GROUP_ID) {
            ferry_set_errstr(errstr, errstr_size, "%s: longer than %d bytes", p->name, FERRY_MAX_GROUP_ID);
            return FERRY_ERR__INVALID_CONFIG_VALUE;
        }
        return FERRY_ERR_NONE;
    case CT_INT:
        if (parse_int(value, ival) != 0 || *ival < p->min || *ival > p->max) {
            ferry_set_errstr(errstr, errstr_size, "%s: '%s' is not an integer in [%lld, %lld]", p->name, value,
                             (long long)p->min, (long long)p->max);
            return FERRY_ERR__INVALID_CONFIG_VALUE;
        }
        return FERRY_ERR_NONE;
    case CT_ENUM: {
        int i = enum_index(p->choices, value);
        if (i < 0) {
            ferry_set_errstr(errstr, errstr_size, "%s: '%s' is not one of %s", p->name, value, p->choices);
            return FERRY_ERR__INVALID_CONFIG_VALUE;
        }
        *ival = p->choice_values[i];
        return FERRY_ERR_NONE;
    }
    }
    return FERRY_ERR__INVALID_CONFIG_VALUE;
}

FERRY_API ferry_conf_t *ferry_conf_new(void)
{
    ferry_conf_t *conf = calloc(1, sizeof *conf);
    if (conf == NULL)
        return NULL;
    conf->values = calloc(NPROPS, sizeof *conf->values);
    if (conf->values == NULL) {
        free(conf);
        return NULL;
    }
    return conf;
}

FERRY_API void ferry_conf_destroy(ferry_conf_t *conf)
{
    if (conf == NULL)
        return;
    for (size_t i = 0; i < NPROPS; i++)
        free(conf->values[i]);
    free(conf->values);
    free(conf);
}

FERRY_API ferry_conf_t *ferry_conf_dup(const ferry_conf_t *conf)
{
    if (conf == NULL)
        return NULL;
    ferry_conf_t *copy = ferry_conf_new();
    if (copy == NULL)
        return NULL;
    for (size_t i = 0; i < NPROPS; i++) {
        if (conf->values[i] == NULL)
            continue;
        copy->values[i] = strdup(conf->values[i]);
        if (copy->values[i] == NULL) {
            ferry_conf_destroy(copy);
            return NULL;
        }
    }
    copy->delivery_cb = conf->delivery_cb;
    copy->log_cb = conf->log_cb;
    copy->opaque = conf->opaque;
    copy->rebalance_cb = conf->rebalance_cb;
    copy->commit_cb = conf->commit_cb;
    return copy;
}

FERRY_API ferry_err_t ferry_conf_set(ferry_conf_t *conf, const char *key, const char *value, char *errstr,
                                     size_t errstr_size)
{
    if (conf == NULL || key == NULL || value == NULL) {
        ferry_set_errstr(errstr, errstr_size, "conf, key and value must not be NULL");
        return FERRY_ERR__INVALID_ARG;
    }
    size_t i;
    const struct conf_prop *p = prop_find(key, &i);
    if (p == NULL) {
        ferry_set_errstr(errstr, errstr_size, "%s: unknown configuration key", key);
        return FERRY_ERR__UNKNOWN_CONFIG;
    }
    int64_t ival = 0;
    ferry_err_t err = prop_validate(p, value, &ival, errstr, errstr_size);
    if (err != FERRY_ERR_NONE)
        return err;
    char *copy = strdup(value);
    if (copy == NULL) {
        ferry_set_errstr(errstr, errstr_size, "%s: out of memory", key);
        return FERRY_ERR__NO_MEMORY;
    }
    free(conf->values[i]);
    conf->values[i] = copy;
    return FERRY_ERR_NONE;
}

FERRY_API ferry_err_t ferry_conf_get(const ferry_conf_t *conf, const char *key, char *dest, size_t *dest_size)
{
    if (conf == NULL || key == NULL || dest_size == NULL)
        return FERRY_ERR__INVALID_ARG;
    size_t i;
    const struct conf_prop *p = prop_find(key, &i);
    if (p == NULL)
        return FERRY_ERR__UNKNOWN_CONFIG;
    const char *v = conf->values[i] ? conf->values[i] : p->def;
    size_t need = strlen(v) + 1;
    size_t have = *dest_size;
    *dest_size = need;
    if (dest == NULL)
        return FERRY_ERR_NONE;
    if (have < need)
        return FERRY_ERR__INVALID_ARG;
    memcpy(dest, v, need);
    return FERRY_ERR_NONE;
}

/* Integer ranges as text, built once (ferry_conf_describe hands out static strings). */
static char int_ranges[NPROPS][48];
static pthread_once_t ranges_once = PTHREAD_ONCE_INIT;

static void ranges_build(void)
{
    for (size_t i = 0; i < NPROPS; i++) {
        if (props[i].type == CT_INT)
            snprintf(int_ranges[i], sizeof int_ranges[i], "[%lld, %lld]", (long long)props[i].min,
                     (long long)props[i].max);
    }
}

FERRY_API const char *ferry_conf_describe(size_t i, const char **type, const char **def, const char **range,
                                          const char **doc)
{
    pthread_once(&ranges_once, ranges_build);
    if (i >= NPROPS)
        return NULL;
    const struct conf_prop *p = &props[i];
    if (type)
        *type = type_name(p->type);
    if (def)
        *def = p->def;
    if (range)
        *range = p->type == CT_ENUM ? p->choices : p->type == CT_INT ? int_ranges[i] : "";
    if (doc)
        *doc = p->doc;
    return p->name;
}

int ferry_settings_load(const ferry_conf_t *conf, struct ferry_settings *s, char *errstr, size_t errstr_size)
{
    memset(s, 0, sizeof *s);
    for (size_t i = 0; i < NPROPS; i++) {
        const struct conf_prop *p = &props[i];
        const char *v = conf->values[i] ? conf->values[i] : p->def;
        char *field = (char *)s + p->offset;
        if (p->type == CT_STR || p->type == CT_PATH) {
            char *copy = strdup(v);
            if (copy == NULL) {
                ferry_set_errstr(errstr, errstr_size, "out of memory");
                ferry_settings_free(s);
                return -1;
            }
            memcpy(field, &copy, sizeof copy);
        } else {
            int64_t ival = 0;
            if (prop_validate(p, v, &ival, errstr, errstr_size) != FERRY_ERR_NONE) {
                ferry_settings_free(s); /* only a bad default could get here */
                return -1;
            }
            memcpy(field, &ival, sizeof ival);
        }
    }
    /* enable.idempotence needs acks=all: refused when asked for explicitly, else turned off. */
    size_t idem;
    if (prop_find("enable.idempotence", &idem) != NULL && s->idempotence && s->acks != -1) {
        if (conf->values[idem] != NULL) {
            ferry_set_errstr(errstr, errstr_size,
                             "enable.idempotence=true requires acks=all (acks is %lld); set acks=all, or "
                             "enable.idempotence=false for acks 0 or 1",
                             (long long)s->acks);
            ferry_settings_free(s);
            return -1;
        }
        s->idempotence = 0;
    }
    s->rebalance_cb = conf->rebalance_cb;
    s->commit_cb = conf->commit_cb;
    return 0;
}

void ferry_settings_free(struct ferry_settings *s)
{
    free(s->bootstrap_servers);
    free(s->client_id);
    free(s->ca_location);
    free(s->cert_location);
    free(s->key_location);
    free(s->group_id);
    free(s->group_instance_id);
    memset(s, 0, sizeof *s);
}

FERRY_API void ferry_conf_set_delivery_cb(ferry_conf_t *conf, ferry_delivery_cb_t *cb)
{
    if (conf)
        conf->delivery_cb = cb;
}

FERRY_API void ferry_conf_set_log_cb(ferry_conf_t *conf, ferry_log_cb_t *cb)
{
    if (conf)
        conf->log_cb = cb;
}

FERRY_API void ferry_conf_set_opaque(ferry_conf_t *conf, void *opaque)
{
    if (conf)
        conf->opaque = opaque;
}

FERRY_API void ferry_conf_set_rebalance_cb(ferry_conf_t *conf, ferry_rebalance_cb_t *cb)
{
    if (conf)
        conf->rebalance_cb = cb;
}

FERRY_API void ferry_conf_set_commit_cb(ferry_conf_t *conf, ferry_commit_cb_t *cb)
{
    if (conf)
        conf->commit_cb = cb;
}
