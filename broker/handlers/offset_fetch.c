/* offset_fetch.c: OffsetFetch (api 11): a group's committed offsets, from the coordinator's state. */
#include <string.h>

#include "ferry_errors.h"
#include "groups/groups_int.h"
#include "handlers/handlers.h"

static void pack_part(msgpack_packer *pk, int32_t partition, const struct fg_offset *o)
{
    msgpack_pack_map(pk, 4);
    ferry_pack_key(pk, "partition");
    msgpack_pack_int32(pk, partition);
    ferry_pack_key(pk, "offset");
    msgpack_pack_int64(pk, o ? o->offset : -1);
    ferry_pack_key(pk, "metadata");
    ferry_pack_str(pk, o ? o->metadata : NULL);
    ferry_pack_key(pk, "error");
    msgpack_pack_int(pk, 0);
}

/* Every committed partition of g, grouped by topic. */
static void pack_all(msgpack_packer *pk, const struct fg_group *g)
{
    uint32_t ntopics = 0;
    for (uint32_t t = 0; g != NULL && t < g->ntopics; t++)
        for (uint32_t i = 0; i < g->noffsets; i++)
            if (g->offsets[i].topic == t) {
                ntopics++;
                break;
            }
    msgpack_pack_array(pk, ntopics);
    for (uint32_t t = 0; g != NULL && t < g->ntopics; t++) {
        uint32_t n = 0;
        for (uint32_t i = 0; i < g->noffsets; i++)
            n += g->offsets[i].topic == t;
        if (n == 0)
            continue;
        msgpack_pack_map(pk, 2);
        ferry_pack_key(pk, "name");
        ferry_pack_str(pk, g->topics[t]);
        ferry_pack_key(pk, "partitions");
        msgpack_pack_array(pk, n);
        for (uint32_t i = 0; i < g->noffsets; i++)
            if (g->offsets[i].topic == t)
                pack_part(pk, g->offsets[i].partition, &g->offsets[i]);
    }
}

void ferryd_handle_offset_fetch(struct ferryd_req *req, const msgpack_object *body)
{
    struct ferryd_coord *co = req->broker->coord;
    struct ferry_mp_reader rd = {0};
    char msg[FERRY_MAX_ERROR_MESSAGE];
    size_t glen, len;
    int32_t slot;
    const char *group = ferry_mp_str(&rd, body, "group_id", &glen, 1);
    const msgpack_object_array *topics = ferry_mp_array(&rd, body, "topics", 0);
    for (uint32_t i = 0; !rd.err && topics != NULL && i < topics->size; i++) {
        const msgpack_object *tm = ferry_mp_elem_map(&rd, topics, i, "topics");
        if (tm == NULL)
            break;
        ferry_mp_str(&rd, tm, "name", &len, 1);
        const msgpack_object_array *ps = ferry_mp_array(&rd, tm, "partitions", 1);
        for (uint32_t k = 0; !rd.err && k < ps->size; k++)
            if (ps->ptr[k].type != MSGPACK_OBJECT_POSITIVE_INTEGER || ps->ptr[k].via.u64 > INT32_MAX) {
                ferryd_req_error(req, FERRY_ERR_INVALID_REQUEST, "field 'partitions'[%u]: expected a partition", k);
                return;
            }
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
    const struct fg_group *g = fg_group_find(co, group, glen);
    msgpack_sbuffer sb;
    msgpack_packer pk;
    ferryd_resp_begin(req, &sb, &pk);
    msgpack_pack_map(&pk, 1);
    ferry_pack_key(&pk, "topics");
    if (topics == NULL) {
        pack_all(&pk, g);
        ferryd_req_reply(req, &sb);
        return;
    }
    msgpack_pack_array(&pk, topics->size);
    for (uint32_t i = 0; i < topics->size; i++) {
        const char *name = ferry_mp_str(&rd, &topics->ptr[i], "name", &len, 1);
        const msgpack_object_array *ps = ferry_mp_array(&rd, &topics->ptr[i], "partitions", 1);
        uint32_t t = UINT32_MAX;
        for (uint32_t k = 0; g != NULL && k < g->ntopics; k++)
            if (strlen(g->topics[k]) == len && memcmp(g->topics[k], name, len) == 0)
                t = k;
        msgpack_pack_map(&pk, 2);
        ferry_pack_key(&pk, "name");
        ferry_pack_strn(&pk, name, len);
        ferry_pack_key(&pk, "partitions");
        msgpack_pack_array(&pk, ps->size);
        for (uint32_t k = 0; k < ps->size; k++) {
            int32_t p = (int32_t)ps->ptr[k].via.u64;
            pack_part(&pk, p, t == UINT32_MAX ? NULL : fg_offset_find(g, t, p));
        }
    }
    ferryd_req_reply(req, &sb);
}
