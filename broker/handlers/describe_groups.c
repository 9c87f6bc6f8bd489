/* describe_groups.c: DescribeGroups (api 13): state, members, assignments, committed offsets and lag. */
#include <stdlib.h>
#include <string.h>

#include "ferry_errors.h"
#include "groups/groups_int.h"
#include "handlers/handlers.h"

/* Log end and start of a partition as known here; -1 when this broker does not hold its data. */
static void log_bounds(struct ferryd *b, const char *topic, int32_t partition, int64_t *end, int64_t *start)
{
    struct ferryd_topic *t = ferryd_topics_find(b->topics, topic, strlen(topic));
    struct ferryd_partition *p = t == NULL ? NULL : ferryd_topic_partition(t, partition);
    *end = *start = -1;
    if (p == NULL || (b->cluster != NULL && p->replica == NULL))
        return;
    *end = ferryd_partition_high_watermark(p);
    *start = ferry_log_start_offset(p->log);
}

static void pack_offsets(struct ferryd *b, msgpack_packer *pk, const struct fg_group *g)
{
    /* The union of committed partitions and assigned ones, sorted. */
    size_t cap = g->noffsets, n = 0;
    for (uint32_t i = 0; i < g->nmembers; i++)
        cap += g->members[i]->nassigned;
    struct fg_tp *all = malloc((cap ? cap : 1) * sizeof(*all));
    if (all == NULL) {
        msgpack_pack_array(pk, 0);
        return;
    }
    for (uint32_t i = 0; i < g->noffsets; i++)
        all[n++] = (struct fg_tp){g->offsets[i].topic, g->offsets[i].partition};
    for (uint32_t i = 0; i < g->nmembers; i++)
        for (uint32_t k = 0; k < g->members[i]->nassigned; k++)
            all[n++] = g->members[i]->assigned[k];
    qsort(all, n, sizeof(*all), fg_tp_cmp);
    size_t u = 0;
    for (size_t i = 0; i < n; i++)
        if (u == 0 || fg_tp_cmp(&all[u - 1], &all[i]) != 0)
            all[u++] = all[i];
    msgpack_pack_array(pk, (uint32_t)u);
    for (size_t i = 0; i < u; i++) {
        const struct fg_offset *o = fg_offset_find(g, all[i].topic, all[i].partition);
        int64_t end, start;
        log_bounds(b, g->topics[all[i].topic], all[i].partition, &end, &start);
        int64_t committed = o ? o->offset : -1;
        int64_t lag = end < 0 ? -1 : committed >= 0 ? end - committed : end - start;
        if (lag < -1)
            lag = 0;
        msgpack_pack_map(pk, 5);
        ferry_pack_key(pk, "topic");
        ferry_pack_str(pk, g->topics[all[i].topic]);
        ferry_pack_key(pk, "partition");
        msgpack_pack_int32(pk, all[i].partition);
        ferry_pack_key(pk, "committed");
        msgpack_pack_int64(pk, committed);
        ferry_pack_key(pk, "log_end");
        msgpack_pack_int64(pk, end);
        ferry_pack_key(pk, "lag");
        msgpack_pack_int64(pk, lag);
    }
    free(all);
}

static void pack_member(msgpack_packer *pk, const struct fg_group *g, const struct fg_member *m)
{
    msgpack_pack_map(pk, 8);
    ferry_pack_key(pk, "member_id");
    ferry_pack_str(pk, m->id);
    ferry_pack_key(pk, "instance_id");
    ferry_pack_str(pk, m->instance_id);
    ferry_pack_key(pk, "client_id");
    ferry_pack_str(pk, m->client_id ? m->client_id : "");
    ferry_pack_key(pk, "host");
    ferry_pack_str(pk, m->host ? m->host : "");
    ferry_pack_key(pk, "member_epoch");
    msgpack_pack_int64(pk, m->epoch);
    ferry_pack_key(pk, "subscribed");
    msgpack_pack_array(pk, m->nsubs);
    for (uint32_t i = 0; i < m->nsubs; i++)
        ferry_pack_str(pk, g->topics[m->subs[i]]);
    ferry_pack_key(pk, "assigned");
    fg_pack_tp_set(pk, g, m->assigned, m->nassigned);
    ferry_pack_key(pk, "revoking");
    fg_pack_tp_set(pk, g, m->revoking, m->nrevoking);
}

static void pack_error_item(msgpack_packer *pk, const char *id, size_t len, int err, const char *msg)
{
    msgpack_pack_map(pk, 4);
    ferry_pack_key(pk, "group_id");
    ferry_pack_strn(pk, id, len);
    ferry_pack_key(pk, "error");
    msgpack_pack_int(pk, err);
    ferry_pack_key(pk, "error_message");
    ferryd_pack_errmsg(pk, msg);
    ferry_pack_key(pk, "state");
    ferry_pack_str(pk, "dead");
}

void ferryd_handle_describe_groups(struct ferryd_req *req, const msgpack_object *body)
{
    struct ferryd_coord *co = req->broker->coord;
    struct ferry_mp_reader rd = {0};
    const msgpack_object_array *groups = ferry_mp_array(&rd, body, "groups", 1);
    for (uint32_t i = 0; !rd.err && i < groups->size; i++)
        if (groups->ptr[i].type != MSGPACK_OBJECT_STR) {
            ferryd_req_error(req, FERRY_ERR_INVALID_REQUEST, "field 'groups'[%u]: expected str", i);
            return;
        }
    if (rd.err) {
        ferryd_req_error(req, FERRY_ERR_INVALID_REQUEST, "%s", rd.errmsg);
        return;
    }
    msgpack_sbuffer sb;
    msgpack_packer pk;
    ferryd_resp_begin(req, &sb, &pk);
    msgpack_pack_map(&pk, 1);
    ferry_pack_key(&pk, "groups");
    msgpack_pack_array(&pk, groups->size);
    for (uint32_t i = 0; i < groups->size; i++) {
        const char *id = groups->ptr[i].via.str.ptr;
        size_t len = groups->ptr[i].via.str.size;
        char msg[FERRY_MAX_ERROR_MESSAGE];
        int32_t slot;
        int rc = fg_route(co, id, len, &slot, msg, sizeof(msg));
        const struct fg_group *g = rc == 0 ? fg_group_find(co, id, len) : NULL;
        if (rc == 0 && g == NULL) {
            rc = FERRY_ERR_GROUP_ID_NOT_FOUND;
            snprintf(msg, sizeof(msg), "no group %.*s", (int)len, id);
        }
        if (rc != 0) {
            pack_error_item(&pk, id, len, rc, msg);
            continue;
        }
        msgpack_pack_map(&pk, 8);
        ferry_pack_key(&pk, "group_id");
        ferry_pack_strn(&pk, g->id, g->id_len);
        ferry_pack_key(&pk, "error");
        msgpack_pack_int(&pk, 0);
        ferry_pack_key(&pk, "error_message");
        msgpack_pack_nil(&pk);
        ferry_pack_key(&pk, "state");
        ferry_pack_str(&pk, fg_group_state(g));
        ferry_pack_key(&pk, "group_epoch");
        msgpack_pack_int64(&pk, g->group_epoch);
        ferry_pack_key(&pk, "assignor");
        ferry_pack_str(&pk, "sticky");
        ferry_pack_key(&pk, "members");
        msgpack_pack_array(&pk, g->nmembers);
        for (uint32_t k = 0; k < g->nmembers; k++)
            pack_member(&pk, g, g->members[k]);
        ferry_pack_key(&pk, "offsets");
        pack_offsets(req->broker, &pk, g);
    }
    ferryd_req_reply(req, &sb);
}
