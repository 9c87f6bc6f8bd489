/* delete_groups.c: DeleteGroups (api 14): removes empty groups and their committed offsets (tombstones). */
#include <stdlib.h>
#include <string.h>

#include "ferry_errors.h"
#include "groups/groups_int.h"
#include "handlers/handlers.h"

struct del_item {
    char *copy;
    size_t len;
    int error;
    char *msg;
};

struct del_state {
    struct ferryd_req *req;
    uint32_t n, pending;
    struct del_item *items;
};

static void finish(struct del_state *st)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    ferryd_resp_begin(st->req, &sb, &pk);
    msgpack_pack_map(&pk, 1);
    ferry_pack_key(&pk, "groups");
    msgpack_pack_array(&pk, st->n);
    for (uint32_t i = 0; i < st->n; i++) {
        msgpack_pack_map(&pk, 3);
        ferry_pack_key(&pk, "group_id");
        ferry_pack_strn(&pk, st->items[i].copy, st->items[i].len);
        ferry_pack_key(&pk, "error");
        msgpack_pack_int(&pk, st->items[i].error);
        ferry_pack_key(&pk, "error_message");
        ferryd_pack_errmsg(&pk, st->items[i].msg);
        free(st->items[i].copy);
        free(st->items[i].msg);
    }
    ferryd_req_reply(st->req, &sb);
    free(st->items);
    free(st);
}

struct del_write {
    struct del_state *st;
    uint32_t i;
};

static void on_written(void *arg, int error, const char *msg)
{
    struct del_write *w = arg;
    struct del_item *it = &w->st->items[w->i];
    if (error != 0) {
        it->error = error;
        free(it->msg);
        it->msg = strdup(msg ? msg : "write failed");
    }
    if (--w->st->pending == 0)
        finish(w->st);
    free(w);
}

static void delete_one(struct ferryd_coord *co, struct del_state *st, uint32_t i)
{
    struct del_item *it = &st->items[i];
    char msg[FERRY_MAX_ERROR_MESSAGE];
    int32_t slot;
    it->error = fg_route(co, it->copy, it->len, &slot, msg, sizeof(msg));
    struct fg_group *g = it->error == 0 ? fg_group_find(co, it->copy, it->len) : NULL;
    if (it->error == 0 && g == NULL) {
        it->error = FERRY_ERR_GROUP_ID_NOT_FOUND;
        snprintf(msg, sizeof(msg), "no group %s", it->copy);
    } else if (g != NULL && g->nmembers > 0) {
        it->error = FERRY_ERR_GROUP_NOT_EMPTY;
        snprintf(msg, sizeof(msg), "group %s has %u member(s)", g->id, g->nmembers);
    }
    if (it->error != 0) {
        it->msg = strdup(msg);
        return;
    }
    struct fg_records recs;
    fg_records_init(&recs);
    for (uint32_t k = 0; k < g->noffsets; k++)
        fg_rec_offset_tombstone(&recs, g, g->offsets[k].topic, g->offsets[k].partition);
    fg_rec_group_tombstone(&recs, g);
    fg_group_remove(co, g);
    struct del_write *w = malloc(sizeof(*w));
    if (w == NULL) {
        fg_records_free(&recs);
        it->error = FERRY_ERR_UNKNOWN;
        it->msg = strdup("out of memory");
        return;
    }
    w->st = st;
    w->i = i;
    st->pending++;
    fg_write(co, slot, &recs, on_written, w);
}

void ferryd_handle_delete_groups(struct ferryd_req *req, const msgpack_object *body)
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
    struct del_state *st = calloc(1, sizeof(*st));
    if (st == NULL || (st->items = calloc(groups->size ? groups->size : 1, sizeof(*st->items))) == NULL)
        goto err_nomem;
    st->req = req;
    st->n = groups->size;
    for (uint32_t i = 0; i < st->n; i++) {
        st->items[i].len = groups->ptr[i].via.str.size;
        st->items[i].copy = malloc(st->items[i].len + 1);
        if (st->items[i].copy == NULL)
            goto err_nomem;
        if (st->items[i].len > 0)
            memcpy(st->items[i].copy, groups->ptr[i].via.str.ptr, st->items[i].len);
        st->items[i].copy[st->items[i].len] = '\0';
    }
    st->pending = 1; /* held while the items are started */
    for (uint32_t i = 0; i < st->n; i++)
        delete_one(co, st, i);
    if (--st->pending == 0)
        finish(st);
    return;

err_nomem:
    if (st != NULL) {
        for (uint32_t i = 0; st->items != NULL && i < st->n; i++)
            free(st->items[i].copy);
        free(st->items);
    }
    free(st);
    ferryd_req_error(req, FERRY_ERR_UNKNOWN, "broker out of memory");
}
