/* create_topics.c: CreateTopics (api 2): validate each topic, create it, answer per topic. */
#include <inttypes.h>
#include <stdio.h>

#include "ferry_errors.h"
#include "cluster/cluster.h"
#include "groups/coordinator.h"
#include "handlers/handlers.h"
#include "logging.h"

/*
 * Creates one topic described by item; returns its error code with msg filled. In a cluster the
 * topic is proposed to the controller instead: 0 with *waiting set means adm_item's result comes
 * later through ferryd_admin_done.
 */
static int create_one(struct ferryd *b, const msgpack_object *item, void *adm_item, int *waiting, char *msg,
                      size_t msg_len)
{
    struct ferry_mp_reader rd = {0};
    struct ferryd_topic_config tc = {0};
    size_t nlen = 0;
    const char *name = ferry_mp_str(&rd, item, "name", &nlen, 1);
    int64_t partitions = ferry_mp_int(&rd, item, "partitions", 0, 1);
    int64_t rf = ferry_mp_int(&rd, item, "replication_factor", -1, 0);
    const msgpack_object *configs = ferry_mp_map(&rd, item, "configs", 0);
    size_t tl = 0;
    const char *token = ferry_mp_str(&rd, item, "request_token", &tl, 0);
    /* name is validated by the caller's first pass, and so is the token */

    msg[0] = '\0';
    if (ferryd_coord_internal_topic(name, nlen, "create", msg, msg_len))
        return FERRY_ERR_INVALID_TOPIC; /* the coordinator creates it through its own path */
    if (partitions == -1)
        partitions = b->cfg->num_partitions;
    if (partitions < 1 || partitions > FERRY_MAX_PARTITIONS_PER_TOPIC) {
        snprintf(msg, msg_len, "partitions %" PRId64 " not in [1, %d] (or -1 for num.partitions)", partitions,
                 FERRY_MAX_PARTITIONS_PER_TOPIC);
        return FERRY_ERR_INVALID_PARTITIONS;
    }
    if (b->cluster == NULL && rf != -1 && rf != 1) {
        snprintf(msg, msg_len, "replication_factor %" PRId64 ": this cluster has 1 broker", rf);
        return FERRY_ERR_INVALID_CONFIG;
    }
    for (uint32_t i = 0; configs != NULL && i < configs->via.map.size; i++) {
        const msgpack_object_kv *kv = &configs->via.map.ptr[i];
        if (kv->key.type != MSGPACK_OBJECT_STR || kv->val.type != MSGPACK_OBJECT_STR) {
            snprintf(msg, msg_len, "configs: keys and values must be strings");
            return FERRY_ERR_INVALID_CONFIG;
        }
        int rc = ferryd_topic_config_set(&tc, kv->key.via.str.ptr, kv->key.via.str.size, kv->val.via.str.ptr,
                                         kv->val.via.str.size, msg, msg_len);
        if (rc != 0)
            return rc;
    }
    if (b->cluster != NULL) {
        int rc = ferryd_topic_name_check(name, nlen, msg, msg_len);
        int done = 0;
        if (rc == 0)
            rc = ferryd_cluster_create_topic_token(b->cluster, name, nlen, partitions, rf, &tc, token, tl, &done,
                                                   ferryd_admin_done, adm_item, msg, msg_len);
        *waiting = rc == 0 && !done;
        return rc;
    }
    return ferryd_topics_create_local(b->topics, name, nlen, partitions, &tc, NULL, token, tl, msg, msg_len);
}

void ferryd_handle_create_topics(struct ferryd_req *req, const msgpack_object *body)
{
    struct ferryd *b = req->broker;
    struct ferry_mp_reader rd = {0};
    msgpack_sbuffer sb;
    msgpack_packer pk;
    char msg[FERRY_MAX_ERROR_MESSAGE];

    const msgpack_object_array *topics = ferry_mp_array(&rd, body, "topics", 1);
    ferry_mp_int(&rd, body, "timeout_ms", 0, 0); /* accepted; creation is synchronous on one broker */
    for (uint32_t i = 0; !rd.err && i < topics->size; i++) {
        const msgpack_object *item = ferry_mp_elem_map(&rd, topics, i, "topics");
        size_t nlen;
        if (item == NULL)
            break;
        ferry_mp_str(&rd, item, "name", &nlen, 1);
        ferry_mp_int(&rd, item, "partitions", 0, 1);
        ferry_mp_int(&rd, item, "replication_factor", -1, 0);
        ferry_mp_map(&rd, item, "configs", 0);
        size_t tl = 0;
        ferry_mp_str(&rd, item, "request_token", &tl, 0);
        if (!rd.err && tl > FERRYD_MAX_REQUEST_TOKEN) {
            ferryd_req_error(req, FERRY_ERR_INVALID_REQUEST, "topics[%u].request_token: longer than %d bytes", i,
                             FERRYD_MAX_REQUEST_TOKEN);
            return;
        }
    }
    if (rd.err) {
        ferryd_req_error(req, FERRY_ERR_INVALID_REQUEST, "%s", rd.errmsg);
        return;
    }

    if (b->cluster != NULL) {
        struct ferryd_admin *a = ferryd_admin_new(req, "CreateTopics", topics->size);
        if (a == NULL) {
            ferryd_req_error(req, FERRY_ERR_UNKNOWN, "broker out of memory");
            return;
        }
        for (uint32_t i = 0; i < topics->size; i++) {
            size_t nlen;
            const char *name = ferry_mp_str(&rd, &topics->ptr[i], "name", &nlen, 1);
            void *it = ferryd_admin_item(a, i, name, nlen);
            int waiting = 0;
            ferryd_admin_begin_wait(it);
            int err = create_one(b, &topics->ptr[i], it, &waiting, msg, sizeof(msg));
            if (!waiting)
                ferryd_admin_done(it, err, msg);
        }
        ferryd_admin_release(a);
        return;
    }
    ferryd_resp_begin(req, &sb, &pk);
    msgpack_pack_map(&pk, 1);
    ferry_pack_key(&pk, "topics");
    msgpack_pack_array(&pk, topics->size);
    for (uint32_t i = 0; i < topics->size; i++) {
        const msgpack_object *item = &topics->ptr[i];
        size_t nlen;
        const char *name = ferry_mp_str(&rd, item, "name", &nlen, 1);
        int waiting = 0;
        int err = create_one(b, item, NULL, &waiting, msg, sizeof(msg));
        if (err != 0)
            LOG_INFO("CreateTopics %.*s: refused (error %d): %s", (int)nlen, name, err, msg);
        msgpack_pack_map(&pk, 3);
        ferry_pack_key(&pk, "name");
        ferry_pack_strn(&pk, name, nlen);
        ferry_pack_key(&pk, "error");
        msgpack_pack_int(&pk, err);
        ferry_pack_key(&pk, "error_message");
        ferryd_pack_errmsg(&pk, err != 0 ? msg : NULL);
    }
    ferryd_req_reply(req, &sb);
}
