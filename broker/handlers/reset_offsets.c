/* reset_offsets.c: ResetOffsets (api 15): an explicit move of committed offsets, also on an active group. */
#include <stdlib.h>
#include <string.h>

#include "ferry_errors.h"
#include "groups/groups_int.h"
#include "handlers/handlers.h"
#include "proto/clock.h"

/* Hands the new offset to the member that owns the partition (in its next heartbeat answer). */
static int tell_owner(struct fg_group *g, uint32_t t, int32_t partition, int64_t offset)
{
    for (uint32_t i = 0; i < g->nmembers; i++) {
        struct fg_member *m = g->members[i];
        if (!fg_tp_in(m->assigned, m->nassigned, t, partition))
            continue;
        for (uint32_t k = 0; k < m->nresets; k++)
            if (m->resets[k].topic == t && m->resets[k].partition == partition) {
                m->resets[k].offset = offset;
                return 0;
            }
        struct fg_reset *n = realloc(m->resets, (m->nresets + 1) * sizeof(*n));
        if (n == NULL)
            return -1;
        m->resets = n;
        m->resets[m->nresets++] = (struct fg_reset){t, partition, offset};
    }
    return 0;
}

static int reset_one(struct ferryd_coord *co, struct fg_group *g, const char *topic, size_t tlen, int32_t partition,
                     int64_t offset, struct fg_records *recs, char *msg, size_t msg_len)
{
    char name[FERRY_MAX_TOPIC_NAME + 1];
    if (tlen == 0 || tlen > FERRY_MAX_TOPIC_NAME) {
        snprintf(msg, msg_len, "no such topic");
        return FERRY_ERR_UNKNOWN_TOPIC_OR_PARTITION;
    }
    memcpy(name, topic, tlen);
    name[tlen] = '\0';
    int32_t np = fg_topic_partitions(co, name);
    if (np < 0 || partition >= np) {
        snprintf(msg, msg_len, "no such topic or partition: %s/%d", name, partition);
        return FERRY_ERR_UNKNOWN_TOPIC_OR_PARTITION;
    }
    uint32_t t = fg_topic_index(g, topic, tlen);
    if (t == UINT32_MAX || fg_offset_set(g, t, partition, offset, NULL, 0, -1, ferry_wallclock_ms()) != 0 ||
        tell_owner(g, t, partition, offset) != 0) {
        snprintf(msg, msg_len, "out of memory");
        return FERRY_ERR_UNKNOWN;
    }
    fg_rec_offset(recs, g, fg_offset_find(g, t, partition));
    return 0;
}

static int same(const char *a, size_t alen, const char *b, size_t blen)
{
    return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

/* Response topics: entries grouped by topic name, in order of first appearance. */
static void pack_response(msgpack_packer *pk, const msgpack_object_array *offs, const int *errs, char **msgs)
{
    struct ferry_mp_reader rd = {0};
    size_t len, len2;
    uint32_t ntopics = 0;
    for (uint32_t i = 0; i < offs->size; i++) {
        const char *t = ferry_mp_str(&rd, &offs->ptr[i], "topic", &len, 1);
        int seen = 0;
        for (uint32_t k = 0; k < i && !seen; k++) {
            const char *u = ferry_mp_str(&rd, &offs->ptr[k], "topic", &len2, 1);
            seen = same(t, len, u, len2);
        }
        ntopics += !seen;
    }
    msgpack_pack_map(pk, 1);
    ferry_pack_key(pk, "topics");
    msgpack_pack_array(pk, ntopics);
    for (uint32_t i = 0; i < offs->size; i++) {
        const char *t = ferry_mp_str(&rd, &offs->ptr[i], "topic", &len, 1);
        int seen = 0;
        for (uint32_t k = 0; k < i && !seen; k++) {
            const char *u = ferry_mp_str(&rd, &offs->ptr[k], "topic", &len2, 1);
            seen = same(t, len, u, len2);
        }
        if (seen)
            continue;
        uint32_t n = 0;
        for (uint32_t k = i; k < offs->size; k++) {
            const char *u = ferry_mp_str(&rd, &offs->ptr[k], "topic", &len2, 1);
            n += same(t, len, u, len2);
        }
        msgpack_pack_map(pk, 2);
        ferry_pack_key(pk, "name");
        ferry_pack_strn(pk, t, len);
        ferry_pack_key(pk, "partitions");
        msgpack_pack_array(pk, n);
        for (uint32_t k = i; k < offs->size; k++) {
            const char *u = ferry_mp_str(&rd, &offs->ptr[k], "topic", &len2, 1);
            if (!same(t, len, u, len2))
                continue;
            msgpack_pack_map(pk, 3);
            ferry_pack_key(pk, "partition");
            msgpack_pack_int64(pk, ferry_mp_int(&rd, &offs->ptr[k], "partition", 0, 1));
            ferry_pack_key(pk, "error");
            msgpack_pack_int(pk, errs[k]);
            ferry_pack_key(pk, "error_message");
            ferryd_pack_errmsg(pk, errs[k] ? msgs[k] : NULL);
        }
    }
}

void ferryd_handle_reset_offsets(struct ferryd_req *req, const msgpack_object *body)
{
    struct ferryd_coord *co = req->broker->coord;
    struct ferry_mp_reader rd = {0};
    char msg[FERRY_MAX_ERROR_MESSAGE];
    size_t glen, len;
    int32_t slot;
    int limit;
    const char *group = ferry_mp_str(&rd, body, "group_id", &glen, 1);
    const msgpack_object_array *offs = ferry_mp_array(&rd, body, "offsets", 1);
    for (uint32_t i = 0; !rd.err && i < offs->size; i++) {
        const msgpack_object *om = ferry_mp_elem_map(&rd, offs, i, "offsets");
        if (om == NULL)
            break;
        ferry_mp_str(&rd, om, "topic", &len, 1);
        ferry_mp_int_range(&rd, om, "partition", 0, 1, 0, INT32_MAX);
        ferry_mp_int_range(&rd, om, "offset", 0, 1, 0, INT64_MAX);
    }
    if (rd.err) {
        ferryd_req_error(req, FERRY_ERR_INVALID_REQUEST, "%s", rd.errmsg);
        return;
    }
    int rc = fg_route(co, group, glen, &slot, msg, sizeof(msg));
    if (rc != 0) {
        ferryd_req_error(req, rc, "%s", msg);
        return;
    }
    int *errs = calloc(offs->size ? offs->size : 1, sizeof(*errs));
    char **msgs = calloc(offs->size ? offs->size : 1, sizeof(*msgs));
    struct fg_group *g = fg_group_find(co, group, glen);
    int created = 0;
    if (errs == NULL || msgs == NULL)
        goto err_nomem;
    if (g == NULL) {
        g = fg_group_create(co, group, glen, slot, &limit);
        if (g == NULL) {
            free(errs);
            free(msgs);
            ferryd_req_error(req, limit ? FERRY_ERR_LIMIT_EXCEEDED : FERRY_ERR_UNKNOWN, "%s",
                             limit ? "this coordinator has too many groups" : "broker out of memory");
            return;
        }
        created = 1;
    }
    struct fg_records recs;
    fg_records_init(&recs);
    if (created)
        fg_rec_group(&recs, g);
    for (uint32_t i = 0; i < offs->size; i++) {
        const char *t = ferry_mp_str(&rd, &offs->ptr[i], "topic", &len, 1);
        int32_t p = (int32_t)ferry_mp_int(&rd, &offs->ptr[i], "partition", 0, 1);
        int64_t o = ferry_mp_int(&rd, &offs->ptr[i], "offset", 0, 1);
        errs[i] = reset_one(co, g, t, len, p, o, &recs, msg, sizeof(msg));
        if (errs[i] != 0)
            msgs[i] = strdup(msg);
    }
    if (created && recs.n == 1) {
        fg_records_free(&recs);
        fg_group_remove(co, g);
    }
    msgpack_sbuffer sb;
    msgpack_packer pk;
    ferryd_resp_begin(req, &sb, &pk);
    pack_response(&pk, offs, errs, msgs);
    for (uint32_t i = 0; i < offs->size; i++)
        free(msgs[i]);
    free(msgs);
    free(errs);
    fg_write_then_reply(co, slot, &recs, req, &sb);
    return;

err_nomem:
    free(errs);
    free(msgs);
    ferryd_req_error(req, FERRY_ERR_UNKNOWN, "broker out of memory");
}
