/* metadata.c: Metadata (api 1): this broker, and the topics with their partitions, leaders and configs. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "ferry_errors.h"
#include "cluster/cluster.h"
#include "handlers/handlers.h"

static void pack_topic(msgpack_packer *pk, const struct ferryd *b, const struct ferryd_topic *t)
{
    char num[32];
    int64_t eff[FERRYD_TOPIC_CONFIG_COUNT] = {t->log_config.retention_ms, t->log_config.retention_bytes,
                                              (int64_t)t->log_config.segment_bytes, t->log_config.segment_ms};
    msgpack_pack_map(pk, 5);
    ferry_pack_key(pk, "name");
    ferry_pack_str(pk, t->name);
    ferry_pack_key(pk, "error");
    msgpack_pack_int(pk, FERRY_ERR_NONE);
    ferry_pack_key(pk, "error_message");
    msgpack_pack_nil(pk);
    ferry_pack_key(pk, "partitions");
    msgpack_pack_array(pk, t->npartitions);
    for (uint32_t i = 0; i < t->npartitions; i++) {
        int64_t leader = b->cfg->node_id;
        const int64_t *replicas = &b->cfg->node_id;
        int rf = 1;
        int err = FERRY_ERR_NONE;
        if (b->cluster != NULL &&
            ferryd_cluster_partition(b->cluster, t->name, strlen(t->name), (int32_t)i, &leader, &replicas, &rf) != 0) {
            leader = -1;
            rf = 0;
        }
        if (leader < 0)
            err = FERRY_ERR_NOT_LEADER; /* no leader known here yet: clients refresh and retry */
        msgpack_pack_map(pk, 4);
        ferry_pack_key(pk, "partition");
        msgpack_pack_uint32(pk, i);
        ferry_pack_key(pk, "leader");
        msgpack_pack_int64(pk, leader);
        ferry_pack_key(pk, "replicas");
        msgpack_pack_array(pk, (uint32_t)rf);
        for (int k = 0; k < rf; k++)
            msgpack_pack_int64(pk, replicas[k]);
        ferry_pack_key(pk, "error");
        msgpack_pack_int(pk, err);
    }
    /* Effective values (broker default or the topic's override) of every per-topic setting. */
    ferry_pack_key(pk, "configs");
    msgpack_pack_map(pk, FERRYD_TOPIC_CONFIG_COUNT);
    for (int k = 0; k < FERRYD_TOPIC_CONFIG_COUNT; k++) {
        snprintf(num, sizeof(num), "%" PRId64, eff[k]);
        ferry_pack_key(pk, ferryd_topic_config_keys[k]);
        ferry_pack_str(pk, num);
    }
}

static void pack_missing(msgpack_packer *pk, const char *name, size_t len, int error, const char *msg)
{
    msgpack_pack_map(pk, 5);
    ferry_pack_key(pk, "name");
    ferry_pack_strn(pk, name, len);
    ferry_pack_key(pk, "error");
    msgpack_pack_int(pk, error);
    ferry_pack_key(pk, "error_message");
    ferry_pack_str(pk, msg);
    ferry_pack_key(pk, "partitions");
    msgpack_pack_array(pk, 0);
    ferry_pack_key(pk, "configs");
    msgpack_pack_map(pk, 0);
}

void ferryd_handle_metadata(struct ferryd_req *req, const msgpack_object *body)
{
    struct ferryd *b = req->broker;
    struct ferry_mp_reader rd = {0};
    msgpack_sbuffer sb;
    msgpack_packer pk;
    char why[256];

    const msgpack_object_array *names = ferry_mp_array(&rd, body, "topics", 0);
    if (rd.err) {
        ferryd_req_error(req, FERRY_ERR_INVALID_REQUEST, "%s", rd.errmsg);
        return;
    }
    for (uint32_t i = 0; names != NULL && i < names->size; i++) {
        if (names->ptr[i].type != MSGPACK_OBJECT_STR) {
            ferryd_req_error(req, FERRY_ERR_INVALID_REQUEST, "field 'topics': element %u is not a string", i);
            return;
        }
    }

    ferryd_resp_begin(req, &sb, &pk);
    msgpack_pack_map(&pk, 3);
    ferry_pack_key(&pk, "brokers");
    if (b->cluster != NULL) {
        /* The registered brokers, from the controller's replicated state. */
        unsigned n = ferryd_cluster_broker_count(b->cluster);
        msgpack_pack_array(&pk, n);
        for (unsigned i = 0; i < n; i++) {
            int64_t id;
            const char *host;
            int port;
            ferryd_cluster_broker_at(b->cluster, i, &id, &host, &port);
            msgpack_pack_map(&pk, 3);
            ferry_pack_key(&pk, "id");
            msgpack_pack_int64(&pk, id);
            ferry_pack_key(&pk, "host");
            ferry_pack_str(&pk, host);
            ferry_pack_key(&pk, "port");
            msgpack_pack_int(&pk, port);
        }
    } else {
        msgpack_pack_array(&pk, 1);
        msgpack_pack_map(&pk, 3);
        ferry_pack_key(&pk, "id");
        msgpack_pack_int64(&pk, b->cfg->node_id);
        ferry_pack_key(&pk, "host");
        ferry_pack_str(&pk, b->advertised_host);
        ferry_pack_key(&pk, "port");
        msgpack_pack_int(&pk, b->advertised_port);
    }
    ferry_pack_key(&pk, "controller_id");
    msgpack_pack_int64(&pk, b->cluster != NULL ? ferryd_cluster_controller_id(b->cluster) : b->cfg->node_id);
    ferry_pack_key(&pk, "topics");
    if (names == NULL) {
        size_t n = ferryd_topics_count(b->topics);
        msgpack_pack_array(&pk, (uint32_t)n);
        for (size_t i = 0; i < n; i++)
            pack_topic(&pk, b, ferryd_topics_at(b->topics, i));
    } else {
        msgpack_pack_array(&pk, names->size);
        for (uint32_t i = 0; i < names->size; i++) {
            const char *name = names->ptr[i].via.str.ptr;
            size_t len = names->ptr[i].via.str.size;
            struct ferryd_topic *t = ferryd_topics_find(b->topics, name, len);
            if (t != NULL)
                pack_topic(&pk, b, t);
            else if (ferryd_topic_name_check(name, len, why, sizeof(why)) != 0)
                pack_missing(&pk, name, len, FERRY_ERR_INVALID_TOPIC, why);
            else if (b->cluster != NULL && !ferryd_cluster_loaded(b->cluster))
                pack_missing(&pk, name, len, FERRY_ERR_BROKER_NOT_AVAILABLE,
                             "this broker has not loaded the cluster metadata yet (just restarted); retry");
            else
                pack_missing(&pk, name, len, FERRY_ERR_UNKNOWN_TOPIC_OR_PARTITION, "no such topic");
        }
    }
    ferryd_req_reply(req, &sb);
}
