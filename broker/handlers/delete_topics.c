/* delete_topics.c: DeleteTopics (api 3): delete each named topic, answer per topic. */
#include "ferry_errors.h"
#include "cluster/cluster.h"
#include "groups/coordinator.h"
#include "handlers/handlers.h"
#include "logging.h"

void ferryd_handle_delete_topics(struct ferryd_req *req, const msgpack_object *body)
{
    struct ferryd *b = req->broker;
    struct ferry_mp_reader rd = {0};
    msgpack_sbuffer sb;
    msgpack_packer pk;
    char msg[FERRY_MAX_ERROR_MESSAGE];

    const msgpack_object_array *names = ferry_mp_array(&rd, body, "topics", 1);
    ferry_mp_int(&rd, body, "timeout_ms", 0, 0); /* accepted; deletion is immediate on one broker */
    if (rd.err) {
        ferryd_req_error(req, FERRY_ERR_INVALID_REQUEST, "%s", rd.errmsg);
        return;
    }
    for (uint32_t i = 0; i < names->size; i++) {
        if (names->ptr[i].type != MSGPACK_OBJECT_STR) {
            ferryd_req_error(req, FERRY_ERR_INVALID_REQUEST, "field 'topics': element %u is not a string", i);
            return;
        }
    }
    if (b->cluster != NULL) {
        struct ferryd_admin *a = ferryd_admin_new(req, "DeleteTopics", names->size);
        if (a == NULL) {
            ferryd_req_error(req, FERRY_ERR_UNKNOWN, "broker out of memory");
            return;
        }
        for (uint32_t i = 0; i < names->size; i++) {
            const char *name = names->ptr[i].via.str.ptr;
            size_t len = names->ptr[i].via.str.size;
            void *it = ferryd_admin_item(a, i, name, len);
            ferryd_admin_begin_wait(it);
            int err = ferryd_topic_name_check(name, len, msg, sizeof(msg));
            if (err == 0 && ferryd_coord_internal_topic(name, len, "delete", msg, sizeof(msg)))
                err = FERRY_ERR_INVALID_REQUEST;
            if (err == 0)
                err = ferryd_cluster_delete_topic(b->cluster, name, len, ferryd_admin_done, it, msg, sizeof(msg));
            if (err != 0)
                ferryd_admin_done(it, err, msg);
        }
        ferryd_admin_release(a);
        return;
    }
    ferryd_resp_begin(req, &sb, &pk);
    msgpack_pack_map(&pk, 1);
    ferry_pack_key(&pk, "topics");
    msgpack_pack_array(&pk, names->size);
    for (uint32_t i = 0; i < names->size; i++) {
        const char *name = names->ptr[i].via.str.ptr;
        size_t len = names->ptr[i].via.str.size;
        int err = ferryd_topic_name_check(name, len, msg, sizeof(msg));
        if (err == 0 && ferryd_coord_internal_topic(name, len, "delete", msg, sizeof(msg)))
            err = FERRY_ERR_INVALID_REQUEST;
        if (err == 0)
            err = ferryd_topics_delete(b->topics, name, len, msg, sizeof(msg));
        if (err != 0)
            LOG_INFO("DeleteTopics %.*s: refused (error %d): %s", (int)len, name, err, msg);
        msgpack_pack_map(&pk, 3);
        ferry_pack_key(&pk, "name");
        ferry_pack_strn(&pk, name, len);
        ferry_pack_key(&pk, "error");
        msgpack_pack_int(&pk, err);
        ferry_pack_key(&pk, "error_message");
        ferryd_pack_errmsg(&pk, err != 0 ? msg : NULL);
    }
    ferryd_req_reply(req, &sb);
}
