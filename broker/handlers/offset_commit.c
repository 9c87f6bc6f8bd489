/* offset_commit.c: OffsetCommit (api 10): fenced, monotonic commits written through the offsets partition. */
#include <stdlib.h>
#include <string.h>

#include "ferry_errors.h"
#include "groups/groups_int.h"
#include "handlers/handlers.h"
#include "proto/clock.h"

static int parse(const msgpack_object *body, char *msg, size_t msg_len)
{
    struct ferry_mp_reader rd = {0};
    size_t len;
    ferry_mp_str(&rd, body, "group_id", &len, 1);
    ferry_mp_str(&rd, body, "member_id", &len, 0);
    ferry_mp_int(&rd, body, "member_epoch", -1, 0);
    const msgpack_object_array *topics = ferry_mp_array(&rd, body, "topics", 1);
    for (uint32_t i = 0; !rd.err && i < topics->size; i++) {
        const msgpack_object *tm = ferry_mp_elem_map(&rd, topics, i, "topics");
        if (tm == NULL)
            break;
        ferry_mp_str(&rd, tm, "name", &len, 1);
        const msgpack_object_array *parts = ferry_mp_array(&rd, tm, "partitions", 1);
        for (uint32_t k = 0; !rd.err && k < parts->size; k++) {
            const msgpack_object *pm = ferry_mp_elem_map(&rd, parts, k, "partitions");
            if (pm == NULL)
                break;
            ferry_mp_int_range(&rd, pm, "partition", 0, 1, 0, INT32_MAX);
            ferry_mp_int_range(&rd, pm, "offset", 0, 1, 0, INT64_MAX);
            ferry_mp_str(&rd, pm, "metadata", &len, 0);
            const msgpack_object *rw = ferry_mp_get(pm, "rewind");
            if (rw != NULL && rw->type != MSGPACK_OBJECT_NIL && rw->type != MSGPACK_OBJECT_BOOLEAN) {
                snprintf(msg, msg_len, "field 'rewind': expected bool");
                return FERRY_ERR_INVALID_REQUEST;
            }
        }
    }
    if (rd.err) {
        snprintf(msg, msg_len, "%s", rd.errmsg);
        return FERRY_ERR_INVALID_REQUEST;
    }
    return 0;
}

/* Checks and applies one partition's commit; returns its error (0: applied, record added). */
static int commit_one(struct ferryd_coord *co, struct fg_group *g, struct fg_member *m, int64_t epoch,
                      const char *topic, size_t topic_len, const msgpack_object *pm, struct fg_records *recs,
                      char *msg, size_t msg_len)
{
    struct ferry_mp_reader rd = {0};
    size_t mdlen = 0;
    int32_t partition = (int32_t)ferry_mp_int(&rd, pm, "partition", 0, 1);
    int64_t offset = ferry_mp_int(&rd, pm, "offset", 0, 1);
    const char *md = ferry_mp_str(&rd, pm, "metadata", &mdlen, 0);
    const msgpack_object *rw = ferry_mp_get(pm, "rewind");
    int rewind = rw != NULL && rw->type == MSGPACK_OBJECT_BOOLEAN && rw->via.boolean;
    char name[FERRY_MAX_TOPIC_NAME + 1];

    if (topic_len == 0 || topic_len > FERRY_MAX_TOPIC_NAME) {
        snprintf(msg, msg_len, "no such topic");
        return FERRY_ERR_UNKNOWN_TOPIC_OR_PARTITION;
    }
    memcpy(name, topic, topic_len);
    name[topic_len] = '\0';
    if (m != NULL && epoch < m->prev_epoch) {
        snprintf(msg, msg_len, "member %s: epoch %lld is older than its current epoch %lld", m->id, (long long)epoch,
                 (long long)m->epoch);
        return FERRY_ERR_FENCED_MEMBER_EPOCH;
    }
    if (m != NULL && epoch > m->epoch) {
        snprintf(msg, msg_len, "member %s: epoch %lld is not its current epoch %lld", m->id, (long long)epoch,
                 (long long)m->epoch);
        return FERRY_ERR_FENCED_MEMBER_EPOCH;
    }
    int32_t np = fg_topic_partitions(co, name);
    if (np < 0 || partition >= np) {
        snprintf(msg, msg_len, "no such topic or partition: %s/%d", name, partition);
        return FERRY_ERR_UNKNOWN_TOPIC_OR_PARTITION;
    }
    uint32_t t = fg_topic_index(g, topic, topic_len);
    if (t == UINT32_MAX) {
        snprintf(msg, msg_len, "out of memory");
        return FERRY_ERR_UNKNOWN;
    }
    /* A partition being revoked may still be committed until the member acknowledges giving it up. */
    if (m != NULL && !fg_tp_in(m->assigned, m->nassigned, t, partition) &&
        !fg_tp_in(m->revoking, m->nrevoking, t, partition)) {
        snprintf(msg, msg_len, "%s/%d is not assigned to member %s", name, partition, m->id);
        return FERRY_ERR_PARTITION_NOT_ASSIGNED;
    }
    if (mdlen > FG_MAX_METADATA) {
        snprintf(msg, msg_len, "metadata is %zu bytes, above the limit %d", mdlen, FG_MAX_METADATA);
        return FERRY_ERR_LIMIT_EXCEEDED;
    }
    struct fg_offset *cur = fg_offset_find(g, t, partition);
    if (cur != NULL && offset < cur->offset && !rewind) {
        snprintf(msg, msg_len, "%s/%d: offset %lld is below the committed %lld (set rewind to move back)", name,
                 partition, (long long)offset, (long long)cur->offset);
        return FERRY_ERR_OFFSET_BEHIND_COMMITTED;
    }
    if (fg_offset_set(g, t, partition, offset, md, mdlen, m ? m->epoch : -1, ferry_wallclock_ms()) != 0) {
        snprintf(msg, msg_len, "out of memory");
        return FERRY_ERR_UNKNOWN;
    }
    fg_rec_offset(recs, g, fg_offset_find(g, t, partition));
    return 0;
}

void ferryd_handle_offset_commit(struct ferryd_req *req, const msgpack_object *body)
{
    struct ferryd_coord *co = req->broker->coord;
    struct ferry_mp_reader rd = {0};
    char msg[FERRY_MAX_ERROR_MESSAGE];
    size_t glen, mlen = 0;
    int32_t slot;
    int limit;
    int rc = parse(body, msg, sizeof(msg));
    const char *group = rc == 0 ? ferry_mp_str(&rd, body, "group_id", &glen, 1) : NULL;
    if (rc == 0)
        rc = fg_route(co, group, glen, &slot, msg, sizeof(msg));
    if (rc != 0) {
        ferryd_req_error(req, rc, "%s", msg);
        return;
    }
    const char *mid = ferry_mp_str(&rd, body, "member_id", &mlen, 0);
    int64_t epoch = ferry_mp_int(&rd, body, "member_epoch", -1, 0);
    const msgpack_object_array *topics = ferry_mp_array(&rd, body, "topics", 1);
    if (mid != NULL && mlen == 0)
        mid = NULL;
    struct fg_group *g = fg_group_find(co, group, glen);
    if (mid != NULL && g == NULL) {
        ferryd_req_error(req, FERRY_ERR_GROUP_ID_NOT_FOUND, "no group %.*s on this coordinator", (int)glen, group);
        return;
    }
    int created = 0;
    if (g == NULL) {
        g = fg_group_create(co, group, glen, slot, &limit);
        if (g == NULL) {
            ferryd_req_error(req, limit ? FERRY_ERR_LIMIT_EXCEEDED : FERRY_ERR_UNKNOWN, "%s",
                             limit ? "this coordinator has too many groups" : "broker out of memory");
            return;
        }
        created = 1;
    }
    struct fg_member *m = mid != NULL ? fg_member_find(g, mid, mlen) : NULL;
    /* Who may commit at all: a known member, or anyone while the group has no members. */
    int whole_err = 0;
    if (mid != NULL && m == NULL) {
        whole_err = FERRY_ERR_UNKNOWN_MEMBER_ID;
        snprintf(msg, sizeof(msg), "member %.*s is not in group %s (removed, or never joined)", (int)mlen, mid, g->id);
    } else if (mid == NULL && g->nmembers > 0) {
        whole_err = FERRY_ERR_UNKNOWN_MEMBER_ID;
        snprintf(msg, sizeof(msg), "group %s has members: a commit needs member_id and member_epoch", g->id);
    }

    struct fg_records recs;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    fg_records_init(&recs);
    if (created)
        fg_rec_group(&recs, g);
    ferryd_resp_begin(req, &sb, &pk);
    msgpack_pack_map(&pk, 1);
    ferry_pack_key(&pk, "topics");
    msgpack_pack_array(&pk, topics->size);
    for (uint32_t i = 0; i < topics->size; i++) {
        size_t tlen;
        const char *tname = ferry_mp_str(&rd, &topics->ptr[i], "name", &tlen, 1);
        const msgpack_object_array *parts = ferry_mp_array(&rd, &topics->ptr[i], "partitions", 1);
        msgpack_pack_map(&pk, 2);
        ferry_pack_key(&pk, "name");
        ferry_pack_strn(&pk, tname, tlen);
        ferry_pack_key(&pk, "partitions");
        msgpack_pack_array(&pk, parts->size);
        for (uint32_t k = 0; k < parts->size; k++) {
            char pmsg[FERRY_MAX_ERROR_MESSAGE] = "";
            int err = whole_err;
            if (err != 0)
                snprintf(pmsg, sizeof(pmsg), "%s", msg);
            else
                err = commit_one(co, g, m, epoch, tname, tlen, &parts->ptr[k], &recs, pmsg, sizeof(pmsg));
            msgpack_pack_map(&pk, 3);
            ferry_pack_key(&pk, "partition");
            msgpack_pack_int64(&pk, ferry_mp_int(&rd, &parts->ptr[k], "partition", 0, 1));
            ferry_pack_key(&pk, "error");
            msgpack_pack_int(&pk, err);
            ferry_pack_key(&pk, "error_message");
            ferryd_pack_errmsg(&pk, err ? pmsg : NULL);
        }
    }
    if (created && recs.n == 1) {
        /* nothing committed: do not keep an empty group behind */
        fg_records_free(&recs);
        fg_group_remove(co, g);
    }
    fg_write_then_reply(co, slot, &recs, req, &sb);
}
