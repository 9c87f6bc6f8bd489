/* list_offsets.c: ListOffsets (api 6): earliest (-2), latest (-1, the high watermark) or by timestamp. */
#include <stdio.h>

#include "ferry_errors.h"
#include "cluster/cluster.h"
#include "handlers/handlers.h"

#define TS_EARLIEST (-2)
#define TS_LATEST (-1)

/* Looks up one partition's offset; returns its error code (msg filled) or 0 with *offset. */
static int lookup(const struct ferryd *b, struct ferryd_topic *topic, int64_t partition, int64_t ts, int64_t *offset,
                  char *msg, size_t msg_len)
{
    int64_t leader;
    struct ferryd_partition *p = topic ? ferryd_topic_partition(topic, partition) : NULL;
    if (p == NULL) { /* in a cluster: NOT_LEADER when the partition lives on other brokers */
        if (topic != NULL)
            return ferryd_cluster_check_absent(b->cluster, topic->name, strlen(topic->name), partition, &leader, msg,
                                               msg_len);
        snprintf(msg, msg_len, "no such topic");
        return FERRY_ERR_UNKNOWN_TOPIC_OR_PARTITION;
    }
    int nl = ferryd_cluster_check_leader(b->cluster, p, &leader, msg, msg_len);
    if (nl != 0)
        return nl; /* the message names leader_id */
    int64_t hw = ferryd_partition_high_watermark(p);
    if (ts == TS_EARLIEST) {
        *offset = ferry_log_start_offset(p->log);
        return 0;
    }
    if (ts == TS_LATEST) {
        *offset = hw;
        return 0;
    }
    if (ts < 0) {
        snprintf(msg, msg_len, "timestamp %lld: use -2 (earliest), -1 (latest) or milliseconds since the epoch",
                 (long long)ts);
        return FERRY_ERR_INVALID_TIMESTAMP;
    }
    int rc = ferry_log_offset_for_time(p->log, ts, offset, msg, msg_len);
    if (rc != 0)
        return rc;
    if (*offset > hw) /* never point past what readers may see */
        *offset = hw;
    return 0;
}

void ferryd_handle_list_offsets(struct ferryd_req *req, const msgpack_object *body)
{
    struct ferryd *b = req->broker;
    struct ferry_mp_reader rd = {0};
    msgpack_sbuffer sb;
    msgpack_packer pk;
    char msg[FERRY_MAX_ERROR_MESSAGE];
    size_t len;

    const msgpack_object_array *topics = ferry_mp_array(&rd, body, "topics", 1);
    for (uint32_t i = 0; !rd.err && i < topics->size; i++) {
        const msgpack_object *tm = ferry_mp_elem_map(&rd, topics, i, "topics");
        const msgpack_object_array *parts = tm ? ferry_mp_array(&rd, tm, "partitions", 1) : NULL;
        if (tm != NULL)
            ferry_mp_str(&rd, tm, "name", &len, 1);
        for (uint32_t k = 0; !rd.err && parts != NULL && k < parts->size; k++) {
            const msgpack_object *pm = ferry_mp_elem_map(&rd, parts, k, "partitions");
            if (pm == NULL)
                break;
            ferry_mp_int_range(&rd, pm, "partition", 0, 1, 0, INT32_MAX);
            ferry_mp_int(&rd, pm, "timestamp", 0, 1);
        }
    }
    if (rd.err) {
        ferryd_req_error(req, FERRY_ERR_INVALID_REQUEST, "%s", rd.errmsg);
        return;
    }

    ferryd_resp_begin(req, &sb, &pk);
    msgpack_pack_map(&pk, 1);
    ferry_pack_key(&pk, "topics");
    msgpack_pack_array(&pk, topics->size);
    for (uint32_t i = 0; i < topics->size; i++) {
        const msgpack_object *tm = &topics->ptr[i];
        const char *name = ferry_mp_str(&rd, tm, "name", &len, 1);
        const msgpack_object_array *parts = ferry_mp_array(&rd, tm, "partitions", 1);
        struct ferryd_topic *topic = ferryd_topics_find(b->topics, name, len);
        msgpack_pack_map(&pk, 2);
        ferry_pack_key(&pk, "name");
        ferry_pack_strn(&pk, name, len);
        ferry_pack_key(&pk, "partitions");
        msgpack_pack_array(&pk, parts->size);
        for (uint32_t k = 0; k < parts->size; k++) {
            int64_t partition = ferry_mp_int(&rd, &parts->ptr[k], "partition", 0, 1);
            int64_t ts = ferry_mp_int(&rd, &parts->ptr[k], "timestamp", 0, 1);
            int64_t offset = -1;
            int err = lookup(b, topic, partition, ts, &offset, msg, sizeof(msg));
            msgpack_pack_map(&pk, 4);
            ferry_pack_key(&pk, "partition");
            msgpack_pack_int64(&pk, partition);
            ferry_pack_key(&pk, "error");
            msgpack_pack_int(&pk, err);
            ferry_pack_key(&pk, "error_message");
            ferryd_pack_errmsg(&pk, err ? msg : NULL);
            ferry_pack_key(&pk, "offset");
            msgpack_pack_int64(&pk, err ? -1 : offset);
        }
    }
    ferryd_req_reply(req, &sb);
}
