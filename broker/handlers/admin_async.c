/* admin_async.c: CreateTopics/DeleteTopics in a cluster: one controller proposal per topic, one answer when all end. */
#include <stdlib.h>
#include <string.h>

#include "ferry_errors.h"
#include "handlers/handlers.h"
#include "logging.h"

struct ferryd_admin_item {
    struct ferryd_admin *a;
    char *name;
    size_t len;
    int err;
    char *msg; /* malloc'd, only on error */
};

struct ferryd_admin {
    struct ferryd_req *req;
    const char *what; /* "CreateTopics" or "DeleteTopics", for logs */
    uint32_t n, pending;
    struct ferryd_admin_item *items;
};

struct ferryd_admin *ferryd_admin_new(struct ferryd_req *req, const char *what, uint32_t n)
{
    struct ferryd_admin *a = calloc(1, sizeof(*a));
    if (a == NULL || (n > 0 && (a->items = calloc(n, sizeof(*a->items))) == NULL)) {
        free(a);
        return NULL;
    }
    a->req = req;
    a->what = what;
    a->n = n;
    a->pending = 1; /* held until ferryd_admin_release */
    return a;
}

static void admin_free(struct ferryd_admin *a)
{
    for (uint32_t i = 0; i < a->n; i++) {
        free(a->items[i].name);
        free(a->items[i].msg);
    }
    free(a->items);
    free(a);
}

static void finish(struct ferryd_admin *a)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    ferryd_resp_begin(a->req, &sb, &pk);
    msgpack_pack_map(&pk, 1);
    ferry_pack_key(&pk, "topics");
    msgpack_pack_array(&pk, a->n);
    for (uint32_t i = 0; i < a->n; i++) {
        const struct ferryd_admin_item *it = &a->items[i];
        msgpack_pack_map(&pk, 3);
        ferry_pack_key(&pk, "name");
        ferry_pack_strn(&pk, it->name != NULL ? it->name : "", it->name != NULL ? it->len : 0);
        ferry_pack_key(&pk, "error");
        msgpack_pack_int(&pk, it->err);
        ferry_pack_key(&pk, "error_message");
        ferryd_pack_errmsg(&pk, it->err != 0 ? it->msg : NULL);
    }
    ferryd_req_reply(a->req, &sb);
    admin_free(a);
}

static void release(struct ferryd_admin *a)
{
    if (--a->pending == 0)
        finish(a);
}

static void set_result(struct ferryd_admin_item *it, int err, const char *msg)
{
    it->err = err;
    if (err != 0) {
        free(it->msg);
        it->msg = strdup(msg != NULL ? msg : "");
        LOG_INFO("%s %.*s: refused (error %d): %s", it->a->what, (int)it->len, it->name ? it->name : "", err,
                 msg != NULL ? msg : "");
    }
}

void *ferryd_admin_item(struct ferryd_admin *a, uint32_t i, const char *name, size_t len)
{
    struct ferryd_admin_item *it = &a->items[i];
    it->a = a;
    it->name = malloc(len + 1);
    if (it->name != NULL) {
        memcpy(it->name, name, len);
        it->name[len] = '\0';
        it->len = len;
    }
    return it;
}

void ferryd_admin_result(void *item, int err, const char *msg)
{
    set_result(item, err, msg);
}

void ferryd_admin_begin_wait(void *item)
{
    ((struct ferryd_admin_item *)item)->a->pending++;
}

void ferryd_admin_done(void *item, int err, const char *msg)
{
    struct ferryd_admin_item *it = item;
    set_result(it, err, msg);
    release(it->a);
}

void ferryd_admin_release(struct ferryd_admin *a)
{
    release(a);
}
