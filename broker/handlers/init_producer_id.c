/* init_producer_id.c: InitProducerId (api 7): hands an idempotent producer a fresh id, epoch 0. */
#include "handlers/handlers.h"

#include "cluster/cluster.h"
#include "ferry_errors.h"
#include "logging.h"

/*
 * Standalone: ids from producer_ids.c (blocks reserved in data.dir/meta). In a cluster: from a block
 * the broker obtained from the controller (ferryd_cluster_next_producer_id), so ids stay unique
 * across brokers and across a broker whose data dir was wiped; the request may then wait for the
 * block (req stays with us until the callback answers it).
 */

static void reply_id(struct ferryd_req *req, int64_t id)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    LOG_DEBUG("InitProducerId: producer id %lld epoch 0", (long long)id);
    ferryd_resp_begin(req, &sb, &pk);
    msgpack_pack_map(&pk, 2);
    ferry_pack_key(&pk, "producer_id");
    msgpack_pack_int64(&pk, id);
    ferry_pack_key(&pk, "producer_epoch");
    msgpack_pack_int(&pk, 0);
    ferryd_req_reply(req, &sb);
}

static void on_cluster_pid(void *arg, int error, int64_t id, const char *msg)
{
    struct ferryd_req *req = arg;
    if (error != 0)
        ferryd_req_error(req, error, "%s", msg);
    else
        reply_id(req, id);
}

void ferryd_handle_init_producer_id(struct ferryd_req *req, const msgpack_object *body)
{
    struct ferryd *b = req->broker;
    struct ferry_mp_reader rd = {0};
    char why[512];
    size_t len;
    int64_t id;

    /* "transactional_id" is reserved: only nil (or absent) is accepted until transactions exist. */
    if (ferry_mp_str(&rd, body, "transactional_id", &len, 0) != NULL) {
        ferryd_req_error(req, FERRY_ERR_INVALID_REQUEST, "transactional_id is reserved and must be nil");
        return;
    }
    if (rd.err) {
        ferryd_req_error(req, FERRY_ERR_INVALID_REQUEST, "%s", rd.errmsg);
        return;
    }
    if (b->cluster != NULL) {
        int rc = ferryd_cluster_next_producer_id(b->cluster, &id, on_cluster_pid, req, why, sizeof(why));
        if (rc == 0)
            reply_id(req, id);
        else if (rc != FERRYD_PID_PENDING)
            ferryd_req_error(req, rc, "%s", why);
        return;
    }
    if (b->pids == NULL && ferryd_pids_open(b->cfg->data_dir, &b->pids, why, sizeof(why)) != 0) {
        LOG_ERROR("InitProducerId: %s", why);
        ferryd_req_error(req, FERRY_ERR_STORAGE_ERROR, "%s", why);
        return;
    }
    if (ferryd_pids_next(b->pids, &id, why, sizeof(why)) != 0) {
        LOG_ERROR("InitProducerId: %s", why);
        ferryd_req_error(req, FERRY_ERR_STORAGE_ERROR, "%s", why);
        return;
    }
    reply_id(req, id);
}
