/* find_coordinator.c: FindCoordinator (api 8): which broker coordinates a group (its offsets partition's leader). */
#include <string.h>

#include "cluster/cluster.h"
#include "ferry_errors.h"
#include "groups/groups_int.h"
#include "handlers/handlers.h"

void ferryd_handle_find_coordinator(struct ferryd_req *req, const msgpack_object *body)
{
    struct ferryd *b = req->broker;
    struct ferry_mp_reader rd = {0};
    char msg[FERRY_MAX_ERROR_MESSAGE];
    size_t len;
    const char *group = ferry_mp_str(&rd, body, "group_id", &len, 1);
    if (rd.err) {
        ferryd_req_error(req, FERRY_ERR_INVALID_REQUEST, "%s", rd.errmsg);
        return;
    }
    int rc = fg_check_group_id(group, len, msg, sizeof(msg));
    if (rc != 0) {
        ferryd_req_error(req, rc, "%s", msg);
        return;
    }
    struct ferryd_topic *t = ferryd_topics_find(b->topics, FG_OFFSETS_TOPIC, strlen(FG_OFFSETS_TOPIC));
    if (t == NULL || t->npartitions == 0) {
        ferryd_coord_want_offsets_topic(b->coord);
        ferryd_req_error(req, FERRY_ERR_COORDINATOR_NOT_AVAILABLE, "the offsets topic %s does not exist yet",
                         FG_OFFSETS_TOPIC);
        return;
    }
    int32_t part = fg_group_partition(group, len, (int32_t)t->npartitions);
    int64_t id = b->cfg->node_id;
    const char *host = b->advertised_host;
    int port = b->advertised_port;
    if (b->cluster != NULL) {
        const int64_t *replicas;
        int rf;
        if (ferryd_cluster_partition(b->cluster, FG_OFFSETS_TOPIC, strlen(FG_OFFSETS_TOPIC), part, &id, &replicas,
                                     &rf) != 0)
            id = -1;
        host = NULL;
        for (unsigned i = 0; id >= 0 && i < ferryd_cluster_broker_count(b->cluster); i++) {
            int64_t bid;
            const char *bh;
            int bp;
            ferryd_cluster_broker_at(b->cluster, i, &bid, &bh, &bp);
            if (bid == id) {
                host = bh;
                port = bp;
            }
        }
        if (host == NULL) {
            ferryd_req_error(req, FERRY_ERR_COORDINATOR_NOT_AVAILABLE,
                             "offsets partition %d has no known leader (or its address is not registered yet)", part);
            return;
        }
    }
    msgpack_sbuffer sb;
    msgpack_packer pk;
    ferryd_resp_begin(req, &sb, &pk);
    msgpack_pack_map(&pk, 4);
    ferry_pack_key(&pk, "coordinator_id");
    msgpack_pack_int64(&pk, id);
    ferry_pack_key(&pk, "host");
    ferry_pack_str(&pk, host);
    ferry_pack_key(&pk, "port");
    msgpack_pack_int(&pk, port);
    ferry_pack_key(&pk, "partition");
    msgpack_pack_int32(&pk, part);
    ferryd_req_reply(req, &sb);
}
