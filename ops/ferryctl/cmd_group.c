/* cmd_group.c: `ferryctl group list|describe|seek|delete`: consumer groups over libferry's group requests. */
#include <inttypes.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ferryctl.h"

/*
 * Requests are msgpack bodies of docs/consumer-groups.md sent with ferry_admin_group_request (to
 * the group's coordinator, or to one broker for ListGroups); answers are decoded here with
 * msgpack-c. Group requests are serviced by consumer clients, so every command opens one
 * (it never subscribes).
 */

/* Api numbers of docs/consumer-groups.md (the wire protocol; stable). */
enum { API_OFFSET_FETCH = 11, API_LIST_GROUPS = 12, API_DESCRIBE_GROUPS = 13, API_DELETE_GROUPS = 14,
       API_RESET_OFFSETS = 15 };

/* Partitions one seek plan may hold (a topic has at most 10,000; a group a few topics). */
#define SEEK_MAX_PLAN 100000

enum { G_TO = 1, G_TOPIC, G_EXECUTE, G_DRY_RUN };

const struct optdef group_list_opts[] = {{0}};
const struct optdef group_describe_opts[] = {{0}};
const struct optdef group_delete_opts[] = {{0}};
const struct optdef group_seek_opts[] = {
    {"to", 0, 1, G_TO, "WHERE",
     "earliest|latest|OFFSET|@TIMESTAMP_MS|time:RFC3339|shift:N (N may be negative) (required)"},
    {"topic", 't', 1, G_TOPIC, "TOPIC[:P,P..]",
     "reset this topic (or these partitions of it); repeatable; default: every partition with a committed offset"},
    {"execute", 0, 0, G_EXECUTE, NULL, "apply the plan (without it ferryctl only prints the plan)"},
    {"dry-run", 0, 0, G_DRY_RUN, NULL, "print the plan only (the default)"},
    {0},
};

/* ---- msgpack helpers ---- */

static const msgpack_object *mp_get(const msgpack_object *map, const char *key)
{
    if (map == NULL || map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    size_t kl = strlen(key);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == kl && memcmp(k->via.str.ptr, key, kl) == 0)
            return &map->via.map.ptr[i].val;
    }
    return NULL;
}

static int64_t mp_int(const msgpack_object *map, const char *key, int64_t def)
{
    const msgpack_object *v = mp_get(map, key);
    if (v == NULL)
        return def;
    if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        return v->via.u64 > INT64_MAX ? INT64_MAX : (int64_t)v->via.u64;
    if (v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        return v->via.i64;
    return def;
}

/* A string field copied into buf ("" when absent). */
static const char *mp_str(const msgpack_object *map, const char *key, char *buf, size_t len)
{
    const msgpack_object *v = mp_get(map, key);
    buf[0] = '\0';
    if (v != NULL && v->type == MSGPACK_OBJECT_STR)
        snprintf(buf, len, "%.*s", (int)v->via.str.size, v->via.str.ptr);
    return buf;
}

static bool mp_has_str(const msgpack_object *map, const char *key)
{
    const msgpack_object *v = mp_get(map, key);
    return v != NULL && v->type == MSGPACK_OBJECT_STR;
}

static const msgpack_object_array *mp_arr(const msgpack_object *map, const char *key)
{
    const msgpack_object *v = mp_get(map, key);
    static const msgpack_object_array empty = {0, NULL};
    return v != NULL && v->type == MSGPACK_OBJECT_ARRAY ? &v->via.array : &empty;
}

static void pack_str(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

/* A decoded answer: free with answer_free. */
struct answer {
    void *buf;
    msgpack_unpacked up;
    const msgpack_object *body;
};

static void answer_free(struct answer *a)
{
    if (a->buf != NULL)
        msgpack_unpacked_destroy(&a->up);
    free(a->buf);
    memset(a, 0, sizeof *a);
}

/* Sends body (sb) and decodes the answer into a. Reports errors itself; returns FERRY_ERR_*. */
static ferry_err_t group_call(const struct ctl *ctl, ferry_client_t *c, int api, const char *group, int32_t broker,
                              msgpack_sbuffer *sb, struct answer *a, bool report)
{
    char err[512] = "";
    size_t len = 0;
    memset(a, 0, sizeof *a);
    ferry_err_t e = ferry_admin_group_request(c, api, group, broker, sb->data, sb->size, &a->buf, &len, ctl->timeout_ms,
                                              err, sizeof err);
    if (e != FERRY_ERR_NONE) {
        if (report)
            report_error(ctl, e, "%s%s%s", group ? group : "", group ? ": " : "", err[0] ? err : ferry_err_str(e));
        return e;
    }
    msgpack_unpacked_init(&a->up);
    size_t off = 0;
    if (msgpack_unpack_next(&a->up, a->buf, len, &off) != MSGPACK_UNPACK_SUCCESS ||
        a->up.data.type != MSGPACK_OBJECT_MAP) {
        if (report)
            report_error(ctl, FERRY_ERR__BAD_RESPONSE, "malformed answer from the broker");
        answer_free(a);
        return FERRY_ERR__BAD_RESPONSE;
    }
    a->body = &a->up.data;
    return FERRY_ERR_NONE;
}

static void json_head(struct jw *w, const struct ctl *ctl, bool ok)
{
    jw_doc_begin(w, stdout);
    jw_kstr(w, "command", ctl->command);
    jw_kbool(w, "ok", ok);
}

/* ---- list ---- */

struct glist_item {
    char id[256];
    char state[32];
    int64_t members;
    int32_t coordinator;
};

int cmd_group_list(struct ctl *ctl, const struct parsed *p)
{
    if (p->npos != 0) {
        usage_error(ctl, "group list takes no arguments");
        return EXIT_USAGE;
    }
    ferry_client_t *c = NULL;
    ferry_metadata_t *md = NULL;
    struct glist_item *items = NULL;
    size_t n = 0, failed = 0;
    int rc = ctl_connect(ctl, FERRY_CONSUMER, &c);
    if (rc)
        return rc;
    char err[512] = "";
    ferry_err_t e = ferry_admin_describe_cluster(c, NULL, 0, &md, ctl->timeout_ms, err, sizeof err);
    if (e != FERRY_ERR_NONE) {
        report_error(ctl, e, "metadata: %s", err[0] ? err : ferry_err_str(e));
        rc = EXIT_FAIL;
        goto out;
    }
    size_t nb = ferry_metadata_broker_count(md);
    for (size_t b = 0; b < nb; b++) {
        int32_t id = ferry_metadata_broker_id(md, b);
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 0);
        struct answer a;
        e = group_call(ctl, c, API_LIST_GROUPS, NULL, id, &sb, &a, false);
        msgpack_sbuffer_destroy(&sb);
        if (e != FERRY_ERR_NONE) {
            fprintf(stderr, "ferryctl group list: broker %" PRId32 ": %s\n", id, ferry_err_str(e));
            failed++;
            continue;
        }
        const msgpack_object_array *groups = mp_arr(a.body, "groups");
        struct glist_item *grown = realloc(items, (n + groups->size + 1) * sizeof *items);
        if (grown == NULL) {
            answer_free(&a);
            rc = EXIT_FAIL;
            goto out;
        }
        items = grown;
        for (uint32_t i = 0; i < groups->size; i++) {
            struct glist_item *it = &items[n++];
            mp_str(&groups->ptr[i], "group_id", it->id, sizeof it->id);
            mp_str(&groups->ptr[i], "state", it->state, sizeof it->state);
            it->members = mp_int(&groups->ptr[i], "members", 0);
            it->coordinator = id;
        }
        answer_free(&a);
    }
    if (ctl->format == FMT_JSON) {
        struct jw w;
        json_head(&w, ctl, failed == 0);
        jw_key(&w, "groups");
        jw_arr_begin(&w);
        for (size_t i = 0; i < n; i++) {
            jw_obj_begin(&w);
            jw_kstr(&w, "group_id", items[i].id);
            jw_kstr(&w, "state", items[i].state);
            jw_kint(&w, "members", items[i].members);
            jw_kint(&w, "coordinator", items[i].coordinator);
            jw_obj_end(&w);
        }
        jw_arr_end(&w);
        jw_doc_end(&w);
    } else {
        printf("%-32s %-10s %7s %11s\n", "GROUP", "STATE", "MEMBERS", "COORDINATOR");
        for (size_t i = 0; i < n; i++)
            printf("%-32s %-10s %7" PRId64 " %11" PRId32 "\n", items[i].id, items[i].state, items[i].members,
                   items[i].coordinator);
    }
    rc = failed == 0 ? EXIT_OK : failed == nb ? EXIT_FAIL : EXIT_PARTIAL;
out:
    free(items);
    ferry_metadata_destroy(md);
    ferry_client_close(c, 1000);
    ferry_client_destroy(c);
    return rc;
}

/* ---- describe ---- */

static void text_tps(const msgpack_object_array *a)
{
    bool any = false;
    for (uint32_t i = 0; i < a->size; i++) {
        char topic[256];
        mp_str(&a->ptr[i], "topic", topic, sizeof topic);
        const msgpack_object_array *ps = mp_arr(&a->ptr[i], "partitions");
        printf("%s%s:", any ? " " : "", topic);
        for (uint32_t j = 0; j < ps->size; j++)
            printf("%s%" PRId64, j ? "," : "", ps->ptr[j].type == MSGPACK_OBJECT_POSITIVE_INTEGER ? (int64_t)ps->ptr[j].via.u64 : -1);
        any = true;
    }
    if (!any)
        printf("-");
}

static void json_tps(struct jw *w, const char *key, const msgpack_object_array *a)
{
    jw_key(w, key);
    jw_arr_begin(w);
    for (uint32_t i = 0; i < a->size; i++) {
        char topic[256];
        jw_obj_begin(w);
        jw_kstr(w, "topic", mp_str(&a->ptr[i], "topic", topic, sizeof topic));
        jw_key(w, "partitions");
        jw_arr_begin(w);
        const msgpack_object_array *ps = mp_arr(&a->ptr[i], "partitions");
        for (uint32_t j = 0; j < ps->size; j++)
            jw_int(w, ps->ptr[j].type == MSGPACK_OBJECT_POSITIVE_INTEGER ? (int64_t)ps->ptr[j].via.u64 : -1);
        jw_arr_end(w);
        jw_obj_end(w);
    }
    jw_arr_end(w);
}

/* v as text, or none when v is negative (unknown). */
static const char *num_or(char *buf, size_t len, int64_t v, const char *none)
{
    if (v < 0)
        snprintf(buf, len, "%s", none);
    else
        snprintf(buf, len, "%" PRId64, v);
    return buf;
}

/* One row of a group's offsets. */
struct orow {
    char topic[256];
    int64_t partition, committed, log_end, lag;
};

/*
 * The offsets rows of a DescribeGroups item. The coordinator knows the log end only of partitions it
 * replicates (-1 otherwise): those are asked of the partition's leader here (ListOffsets), and the
 * lag computed as the protocol defines it. A row stays -1 if that fails. NULL when out of memory.
 */
static struct orow *offset_rows(const struct ctl *ctl, ferry_client_t *c, const msgpack_object_array *offsets)
{
    struct orow *rows = calloc(offsets->size + 1, sizeof *rows);
    if (rows == NULL)
        return NULL;
    for (uint32_t i = 0; i < offsets->size; i++) {
        const msgpack_object *o = &offsets->ptr[i];
        struct orow *r = &rows[i];
        mp_str(o, "topic", r->topic, sizeof r->topic);
        r->partition = mp_int(o, "partition", -1);
        r->committed = mp_int(o, "committed", -1);
        r->log_end = mp_int(o, "log_end", -1);
        r->lag = mp_int(o, "lag", -1);
        if (r->log_end >= 0 || r->partition < 0 || r->partition > INT32_MAX)
            continue;
        int64_t hi = -1, lo = -1;
        if (ferry_admin_list_offsets(c, r->topic, (int32_t)r->partition, FERRY_TIMESTAMP_LATEST, &hi, ctl->timeout_ms,
                                     NULL, 0) != FERRY_ERR_NONE)
            continue;
        r->log_end = hi;
        if (r->committed >= 0)
            r->lag = hi - r->committed;
        else if (ferry_admin_list_offsets(c, r->topic, (int32_t)r->partition, FERRY_TIMESTAMP_EARLIEST, &lo,
                                          ctl->timeout_ms, NULL, 0) == FERRY_ERR_NONE)
            r->lag = hi - lo;
    }
    return rows;
}

static void describe_print(const struct ctl *ctl, const msgpack_object *g, const struct orow *rows)
{
    char buf[512], state[32];
    const msgpack_object_array *members = mp_arr(g, "members");
    const msgpack_object_array *offsets = mp_arr(g, "offsets");
    int64_t total = 0;
    for (uint32_t i = 0; i < offsets->size; i++)
        total += rows[i].lag > 0 ? rows[i].lag : 0;
    mp_str(g, "state", state, sizeof state);
    if (ctl->format == FMT_JSON) {
        struct jw w;
        json_head(&w, ctl, true);
        jw_kstr(&w, "group_id", mp_str(g, "group_id", buf, sizeof buf));
        jw_kstr(&w, "state", state);
        jw_kint(&w, "group_epoch", mp_int(g, "group_epoch", 0));
        jw_kstr(&w, "assignor", mp_str(g, "assignor", buf, sizeof buf));
        jw_key(&w, "members");
        jw_arr_begin(&w);
        for (uint32_t i = 0; i < members->size; i++) {
            const msgpack_object *m = &members->ptr[i];
            jw_obj_begin(&w);
            jw_kstr(&w, "member_id", mp_str(m, "member_id", buf, sizeof buf));
            jw_key(&w, "instance_id");
            if (mp_has_str(m, "instance_id"))
                jw_str(&w, mp_str(m, "instance_id", buf, sizeof buf));
            else
                jw_null(&w);
            jw_kstr(&w, "client_id", mp_str(m, "client_id", buf, sizeof buf));
            jw_kstr(&w, "host", mp_str(m, "host", buf, sizeof buf));
            jw_kint(&w, "member_epoch", mp_int(m, "member_epoch", 0));
            jw_key(&w, "subscribed");
            jw_arr_begin(&w);
            const msgpack_object_array *sub = mp_arr(m, "subscribed");
            for (uint32_t j = 0; j < sub->size; j++)
                if (sub->ptr[j].type == MSGPACK_OBJECT_STR)
                    jw_strn(&w, sub->ptr[j].via.str.ptr, sub->ptr[j].via.str.size);
            jw_arr_end(&w);
            json_tps(&w, "assigned", mp_arr(m, "assigned"));
            json_tps(&w, "revoking", mp_arr(m, "revoking"));
            jw_obj_end(&w);
        }
        jw_arr_end(&w);
        jw_key(&w, "offsets");
        jw_arr_begin(&w);
        for (uint32_t i = 0; i < offsets->size; i++) {
            jw_obj_begin(&w);
            jw_kstr(&w, "topic", rows[i].topic);
            jw_kint(&w, "partition", rows[i].partition);
            jw_kint(&w, "committed", rows[i].committed);
            jw_kint(&w, "log_end", rows[i].log_end);
            jw_kint(&w, "lag", rows[i].lag);
            jw_obj_end(&w);
        }
        jw_arr_end(&w);
        jw_kint(&w, "total_lag", total);
        jw_doc_end(&w);
        return;
    }
    printf("group %s: %s, epoch %" PRId64 ", %u member(s), total lag %" PRId64 "\n", mp_str(g, "group_id", buf, sizeof buf),
           state, mp_int(g, "group_epoch", 0), members->size, total);
    if (members->size > 0) {
        printf("\n%-34s %-16s %-16s %-16s %6s  %s\n", "MEMBER", "INSTANCE", "CLIENT", "HOST", "EPOCH", "ASSIGNED");
        for (uint32_t i = 0; i < members->size; i++) {
            const msgpack_object *m = &members->ptr[i];
            char inst[256], client[256], host[256];
            printf("%-34s %-16s %-16s %-16s %6" PRId64 "  ", mp_str(m, "member_id", buf, sizeof buf),
                   mp_has_str(m, "instance_id") ? mp_str(m, "instance_id", inst, sizeof inst) : "-",
                   mp_str(m, "client_id", client, sizeof client), mp_str(m, "host", host, sizeof host),
                   mp_int(m, "member_epoch", 0));
            text_tps(mp_arr(m, "assigned"));
            const msgpack_object_array *rv = mp_arr(m, "revoking");
            if (rv->size > 0) {
                printf("  (revoking ");
                text_tps(rv);
                printf(")");
            }
            printf("\n");
        }
    }
    if (offsets->size > 0) {
        printf("\n%-32s %9s %12s %12s %10s\n", "TOPIC", "PARTITION", "COMMITTED", "LOG-END", "LAG");
        for (uint32_t i = 0; i < offsets->size; i++) {
            const struct orow *r = &rows[i];
            char cbuf[32], ebuf[32], lbuf[32];
            printf("%-32s %9" PRId64 " %12s %12s %10s\n", r->topic, r->partition,
                   num_or(cbuf, sizeof cbuf, r->committed, "-"), num_or(ebuf, sizeof ebuf, r->log_end, "?"),
                   num_or(lbuf, sizeof lbuf, r->lag, "?"));
        }
    }
}

int cmd_group_describe(struct ctl *ctl, const struct parsed *p)
{
    if (p->npos != 1) {
        usage_error(ctl, "group describe needs exactly one GROUP");
        return EXIT_USAGE;
    }
    const char *group = p->pos[0];
    ferry_client_t *c = NULL;
    int rc = ctl_connect(ctl, FERRY_CONSUMER, &c);
    if (rc)
        return rc;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    pack_str(&pk, "groups");
    msgpack_pack_array(&pk, 1);
    pack_str(&pk, group);
    struct answer a;
    ferry_err_t e = group_call(ctl, c, API_DESCRIBE_GROUPS, group, -1, &sb, &a, true);
    msgpack_sbuffer_destroy(&sb);
    rc = EXIT_FAIL;
    if (e == FERRY_ERR_NONE) {
        const msgpack_object_array *groups = mp_arr(a.body, "groups");
        if (groups->size < 1) {
            report_error(ctl, FERRY_ERR__BAD_RESPONSE, "%s: no group in the answer", group);
        } else {
            const msgpack_object *g = &groups->ptr[0];
            int64_t ge = mp_int(g, "error", 0);
            char msg[600];
            if (ge != 0) {
                mp_str(g, "error_message", msg, sizeof msg);
                report_error(ctl, (ferry_err_t)ge, "%s: %s", group, msg[0] ? msg : ferry_err_str((ferry_err_t)ge));
            } else {
                struct orow *rows = offset_rows(ctl, c, mp_arr(g, "offsets"));
                if (rows == NULL) {
                    report_error(ctl, FERRY_ERR__NO_MEMORY, "%s: out of memory", group);
                } else {
                    describe_print(ctl, g, rows);
                    rc = EXIT_OK;
                }
                free(rows);
            }
        }
        answer_free(&a);
    }
    ferry_client_close(c, 1000);
    ferry_client_destroy(c);
    return rc;
}

/* ---- delete ---- */

int cmd_group_delete(struct ctl *ctl, const struct parsed *p)
{
    if (p->npos < 1) {
        usage_error(ctl, "group delete needs at least one GROUP");
        return EXIT_USAGE;
    }
    ferry_client_t *c = NULL;
    int rc = ctl_connect(ctl, FERRY_CONSUMER, &c);
    if (rc)
        return rc;
    struct jw w;
    if (ctl->format == FMT_JSON) {
        jw_doc_begin(&w, stdout);
        jw_kstr(&w, "command", ctl->command);
        jw_key(&w, "groups");
        jw_arr_begin(&w);
    }
    size_t failed = 0;
    for (size_t i = 0; i < p->npos; i++) {
        const char *group = p->pos[i];
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 1);
        pack_str(&pk, "groups");
        msgpack_pack_array(&pk, 1);
        pack_str(&pk, group);
        struct answer a;
        char err[512] = "";
        ferry_err_t e = group_call(ctl, c, API_DELETE_GROUPS, group, -1, &sb, &a, false);
        msgpack_sbuffer_destroy(&sb);
        if (e == FERRY_ERR_NONE) {
            const msgpack_object_array *groups = mp_arr(a.body, "groups");
            e = groups->size < 1 ? FERRY_ERR__BAD_RESPONSE : (ferry_err_t)mp_int(&groups->ptr[0], "error", 0);
            if (groups->size >= 1)
                mp_str(&groups->ptr[0], "error_message", err, sizeof err);
            answer_free(&a);
        }
        if (e != FERRY_ERR_NONE) {
            failed++;
            fprintf(stderr, "ferryctl group delete: %s: %s (%s)\n", group, err[0] ? err : ferry_err_str(e),
                    ferry_err_name(e));
        } else if (ctl->format != FMT_JSON) {
            printf("deleted group %s\n", group);
        }
        if (ctl->format == FMT_JSON) {
            jw_obj_begin(&w);
            jw_kstr(&w, "group_id", group);
            jw_kbool(&w, "ok", e == FERRY_ERR_NONE);
            if (e != FERRY_ERR_NONE) {
                jw_key(&w, "error");
                jw_error(&w, e, err[0] ? err : ferry_err_str(e));
            }
            jw_obj_end(&w);
        }
    }
    if (ctl->format == FMT_JSON) {
        jw_arr_end(&w);
        jw_kbool(&w, "ok", failed == 0);
        jw_doc_end(&w);
    }
    ferry_client_close(c, 1000);
    ferry_client_destroy(c);
    return failed == 0 ? EXIT_OK : failed == p->npos ? EXIT_FAIL : EXIT_PARTIAL;
}

/* ---- seek / reset ---- */

enum to_kind { TO_EARLIEST, TO_LATEST, TO_OFFSET, TO_TIME, TO_SHIFT };

struct plan_item {
    char *topic;
    int32_t partition;
    int64_t current; /* committed, -1 none */
    int64_t lo, hi;  /* log start and end */
    int64_t target;
    ferry_err_t err; /* of resolving or applying */
    char errmsg[512];
};

struct topic_sel {
    const char *name; /* points into argv */
    char *copy;
    int32_t *parts;   /* NULL = all */
    size_t nparts;
};

static int parse_to(const char *s, enum to_kind *kind, int64_t *val)
{
    if (strcmp(s, "earliest") == 0 || strcmp(s, "start") == 0) {
        *kind = TO_EARLIEST;
        return 0;
    }
    if (strcmp(s, "latest") == 0 || strcmp(s, "end") == 0) {
        *kind = TO_LATEST;
        return 0;
    }
    if (strncmp(s, "shift:", 6) == 0) {
        *kind = TO_SHIFT;
        return parse_i64(s + 6, INT64_MIN / 2, INT64_MAX / 2, val);
    }
    if (s[0] == '@') {
        *kind = TO_TIME;
        return parse_i64(s + 1, 0, INT64_MAX, val);
    }
    if (strncmp(s, "time:", 5) == 0) {
        struct tm tm;
        memset(&tm, 0, sizeof tm);
        const char *e = strptime(s + 5, "%Y-%m-%dT%H:%M:%S", &tm);
        if (e == NULL || (*e != 'Z' && *e != 'z') || e[1] != '\0')
            return -1; /* UTC only here: 2024-05-01T12:00:00Z */
        time_t t = timegm(&tm);
        if (t == (time_t)-1)
            return -1;
        *kind = TO_TIME;
        *val = (int64_t)t * 1000;
        return 0;
    }
    *kind = TO_OFFSET;
    return parse_i64(s, 0, INT64_MAX, val);
}

static int parse_topic_sel(const char *s, struct topic_sel *sel)
{
    memset(sel, 0, sizeof *sel);
    sel->copy = strdup(s);
    if (sel->copy == NULL)
        return -1;
    char *colon = strchr(sel->copy, ':');
    sel->name = sel->copy;
    if (colon == NULL)
        return sel->copy[0] ? 0 : -1;
    *colon = '\0';
    char *save = NULL;
    for (char *tok = strtok_r(colon + 1, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        int64_t v;
        if (parse_i64(tok, 0, INT32_MAX, &v) != 0)
            return -1;
        int32_t *grown = realloc(sel->parts, (sel->nparts + 1) * sizeof *grown);
        if (grown == NULL)
            return -1;
        sel->parts = grown;
        sel->parts[sel->nparts++] = (int32_t)v;
    }
    return sel->copy[0] && sel->nparts > 0 ? 0 : -1;
}

static int plan_add(struct plan_item **plan, size_t *n, const char *topic, size_t tl, int32_t partition)
{
    for (size_t i = 0; i < *n; i++)
        if ((*plan)[i].partition == partition && strlen((*plan)[i].topic) == tl && memcmp((*plan)[i].topic, topic, tl) == 0)
            return 0;
    if (*n >= SEEK_MAX_PLAN)
        return -1;
    struct plan_item *grown = realloc(*plan, (*n + 1) * sizeof **plan);
    if (grown == NULL)
        return -1;
    *plan = grown;
    struct plan_item *it = &(*plan)[*n];
    memset(it, 0, sizeof *it);
    it->topic = strndup(topic, tl);
    if (it->topic == NULL)
        return -1;
    it->partition = partition;
    it->current = -1;
    (*n)++;
    return 0;
}

/* Fills current committed offsets of the plan (and, with all = true, the plan itself). */
static ferry_err_t plan_committed(const struct ctl *ctl, ferry_client_t *c, const char *group, struct plan_item **plan,
                                  size_t *n, bool all)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, all ? 1 : 2);
    pack_str(&pk, "group_id");
    pack_str(&pk, group);
    if (!all) {
        pack_str(&pk, "topics");
        msgpack_pack_array(&pk, *n);
        for (size_t i = 0; i < *n; i++) {
            msgpack_pack_map(&pk, 2);
            pack_str(&pk, "name");
            pack_str(&pk, (*plan)[i].topic);
            pack_str(&pk, "partitions");
            msgpack_pack_array(&pk, 1);
            msgpack_pack_int32(&pk, (*plan)[i].partition);
        }
    }
    struct answer a;
    ferry_err_t e = group_call(ctl, c, API_OFFSET_FETCH, group, -1, &sb, &a, true);
    msgpack_sbuffer_destroy(&sb);
    if (e != FERRY_ERR_NONE)
        return e;
    const msgpack_object_array *topics = mp_arr(a.body, "topics");
    for (uint32_t t = 0; t < topics->size; t++) {
        const msgpack_object *name = mp_get(&topics->ptr[t], "name");
        if (name == NULL || name->type != MSGPACK_OBJECT_STR)
            continue;
        const msgpack_object_array *ps = mp_arr(&topics->ptr[t], "partitions");
        for (uint32_t i = 0; i < ps->size; i++) {
            int32_t part = (int32_t)mp_int(&ps->ptr[i], "partition", -1);
            int64_t off = mp_int(&ps->ptr[i], "offset", -1);
            if (all && off >= 0 && plan_add(plan, n, name->via.str.ptr, name->via.str.size, part) != 0) {
                answer_free(&a);
                return FERRY_ERR__NO_MEMORY;
            }
            for (size_t j = 0; j < *n; j++) {
                struct plan_item *it = &(*plan)[j];
                if (it->partition == part && strlen(it->topic) == name->via.str.size &&
                    memcmp(it->topic, name->via.str.ptr, name->via.str.size) == 0)
                    it->current = off;
            }
        }
    }
    answer_free(&a);
    return FERRY_ERR_NONE;
}

static void plan_free(struct plan_item *plan, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(plan[i].topic);
    free(plan);
}

/* Resolves every target offset; items that fail keep err set. Returns how many failed. */
static size_t plan_resolve(const struct ctl *ctl, ferry_client_t *c, struct plan_item *plan, size_t n,
                           enum to_kind kind, int64_t val)
{
    size_t failed = 0;
    for (size_t i = 0; i < n; i++) {
        struct plan_item *it = &plan[i];
        char err[512] = "";
        ferry_err_t e = ferry_admin_list_offsets(c, it->topic, it->partition, FERRY_TIMESTAMP_EARLIEST, &it->lo,
                                                 ctl->timeout_ms, err, sizeof err);
        if (e == FERRY_ERR_NONE)
            e = ferry_admin_list_offsets(c, it->topic, it->partition, FERRY_TIMESTAMP_LATEST, &it->hi, ctl->timeout_ms,
                                         err, sizeof err);
        if (e == FERRY_ERR_NONE && kind == TO_TIME)
            e = ferry_admin_list_offsets(c, it->topic, it->partition, val, &it->target, ctl->timeout_ms, err,
                                         sizeof err);
        if (e != FERRY_ERR_NONE) {
            it->err = e;
            snprintf(it->errmsg, sizeof it->errmsg, "%s", err[0] ? err : ferry_err_str(e));
            failed++;
            continue;
        }
        switch (kind) {
        case TO_EARLIEST: it->target = it->lo; break;
        case TO_LATEST: it->target = it->hi; break;
        case TO_OFFSET: it->target = val; break;
        case TO_TIME: break;
        case TO_SHIFT: it->target = (it->current >= 0 ? it->current : it->lo) + val; break;
        }
        /* Outside the log, the consumer would reset anyway: clamp so the plan says where it really goes. */
        if (it->target < it->lo)
            it->target = it->lo;
        if (it->target > it->hi)
            it->target = it->hi;
    }
    return failed;
}

/* Sends ResetOffsets for the items without an error; per-partition results land in the items. */
static ferry_err_t plan_apply(const struct ctl *ctl, ferry_client_t *c, const char *group, struct plan_item *plan,
                              size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += plan[i].err == FERRY_ERR_NONE;
    if (k == 0)
        return FERRY_ERR_NONE;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    pack_str(&pk, "group_id");
    pack_str(&pk, group);
    pack_str(&pk, "offsets");
    msgpack_pack_array(&pk, k);
    for (size_t i = 0; i < n; i++) {
        if (plan[i].err != FERRY_ERR_NONE)
            continue;
        msgpack_pack_map(&pk, 3);
        pack_str(&pk, "topic");
        pack_str(&pk, plan[i].topic);
        pack_str(&pk, "partition");
        msgpack_pack_int32(&pk, plan[i].partition);
        pack_str(&pk, "offset");
        msgpack_pack_int64(&pk, plan[i].target);
    }
    struct answer a;
    ferry_err_t e = group_call(ctl, c, API_RESET_OFFSETS, group, -1, &sb, &a, true);
    msgpack_sbuffer_destroy(&sb);
    if (e != FERRY_ERR_NONE)
        return e;
    const msgpack_object_array *topics = mp_arr(a.body, "topics");
    for (uint32_t t = 0; t < topics->size; t++) {
        const msgpack_object *name = mp_get(&topics->ptr[t], "name");
        if (name == NULL || name->type != MSGPACK_OBJECT_STR)
            continue;
        const msgpack_object_array *ps = mp_arr(&topics->ptr[t], "partitions");
        for (uint32_t i = 0; i < ps->size; i++) {
            int32_t part = (int32_t)mp_int(&ps->ptr[i], "partition", -1);
            int64_t pe = mp_int(&ps->ptr[i], "error", 0);
            if (pe == 0)
                continue;
            for (size_t j = 0; j < n; j++) {
                if (plan[j].partition == part && strlen(plan[j].topic) == name->via.str.size &&
                    memcmp(plan[j].topic, name->via.str.ptr, name->via.str.size) == 0) {
                    plan[j].err = (ferry_err_t)pe;
                    mp_str(&ps->ptr[i], "error_message", plan[j].errmsg, sizeof plan[j].errmsg);
                    if (!plan[j].errmsg[0])
                        snprintf(plan[j].errmsg, sizeof plan[j].errmsg, "%s", ferry_err_str((ferry_err_t)pe));
                }
            }
        }
    }
    answer_free(&a);
    return FERRY_ERR_NONE;
}

static void plan_print(const struct ctl *ctl, const char *group, const struct plan_item *plan, size_t n, bool execute)
{
    if (ctl->format == FMT_JSON) {
        size_t failed = 0;
        for (size_t i = 0; i < n; i++)
            failed += plan[i].err != FERRY_ERR_NONE;
        struct jw w;
        json_head(&w, ctl, failed == 0);
        jw_kstr(&w, "group_id", group);
        jw_kbool(&w, "executed", execute);
        jw_key(&w, "plan");
        jw_arr_begin(&w);
        for (size_t i = 0; i < n; i++) {
            const struct plan_item *it = &plan[i];
            jw_obj_begin(&w);
            jw_kstr(&w, "topic", it->topic);
            jw_kint(&w, "partition", it->partition);
            jw_key(&w, "current");
            if (it->current >= 0)
                jw_int(&w, it->current);
            else
                jw_null(&w);
            if (it->err == FERRY_ERR_NONE || it->target >= 0) {
                jw_kint(&w, "log_start", it->lo);
                jw_kint(&w, "log_end", it->hi);
                jw_kint(&w, "new", it->target);
            }
            if (it->err != FERRY_ERR_NONE) {
                jw_key(&w, "error");
                jw_error(&w, it->err, it->errmsg);
            }
            jw_obj_end(&w);
        }
        jw_arr_end(&w);
        jw_doc_end(&w);
        return;
    }
    printf("%s group %s:\n", execute ? "Reset" : "Plan (dry run; --execute applies it) for", group);
    printf("%-32s %9s %12s %12s %12s\n", "TOPIC", "PARTITION", "CURRENT", "NEW", "LOG-END");
    for (size_t i = 0; i < n; i++) {
        const struct plan_item *it = &plan[i];
        char cur[32];
        if (it->current >= 0)
            snprintf(cur, sizeof cur, "%" PRId64, it->current);
        else
            snprintf(cur, sizeof cur, "-");
        if (it->err != FERRY_ERR_NONE)
            printf("%-32s %9" PRId32 " %12s  error: %s (%s)\n", it->topic, it->partition, cur, it->errmsg,
                   ferry_err_name(it->err));
        else
            printf("%-32s %9" PRId32 " %12s %12" PRId64 " %12" PRId64 "\n", it->topic, it->partition, cur, it->target,
                   it->hi);
    }
}

int cmd_group_seek(struct ctl *ctl, const struct parsed *p)
{
    enum to_kind kind = TO_EARLIEST;
    int64_t val = 0;
    bool have_to = false, execute = false;
    struct topic_sel *sels = NULL;
    size_t nsel = 0;
    struct plan_item *plan = NULL;
    size_t n = 0;
    ferry_client_t *c = NULL;
    ferry_metadata_t *md = NULL;
    int rc = EXIT_USAGE;
    for (size_t i = 0; i < p->nopts; i++) {
        const struct parsed_opt *o = &p->opts[i];
        switch (o->id) {
        case G_TO:
            if (parse_to(o->val, &kind, &val) != 0) {
                usage_error(ctl, "--to wants earliest, latest, OFFSET, @TIMESTAMP_MS, time:YYYY-MM-DDTHH:MM:SSZ or "
                                 "shift:N, got '%s'", o->val);
                goto out;
            }
            have_to = true;
            break;
        case G_TOPIC: {
            struct topic_sel *grown = realloc(sels, (nsel + 1) * sizeof *sels);
            if (grown == NULL) {
                rc = EXIT_FAIL;
                goto out;
            }
            sels = grown;
            if (parse_topic_sel(o->val, &sels[nsel++]) != 0) {
                usage_error(ctl, "--topic wants TOPIC or TOPIC:P[,P..], got '%s'", o->val);
                goto out;
            }
            break;
        }
        case G_EXECUTE: execute = true; break;
        case G_DRY_RUN: execute = false; break;
        default: break;
        }
    }
    if (p->npos != 1 || !have_to) {
        usage_error(ctl, "group seek needs one GROUP and --to WHERE");
        goto out;
    }
    const char *group = p->pos[0];
    rc = ctl_connect(ctl, FERRY_CONSUMER, &c);
    if (rc)
        goto out;
    rc = EXIT_FAIL;
    /* The plan's partitions: the named ones, else every partition with a committed offset. */
    if (nsel > 0) {
        const char **names = calloc(nsel, sizeof *names);
        if (names == NULL)
            goto out;
        for (size_t i = 0; i < nsel; i++)
            names[i] = sels[i].name;
        char err[512] = "";
        ferry_err_t e = ferry_admin_describe_cluster(c, names, nsel, &md, ctl->timeout_ms, err, sizeof err);
        free(names);
        if (e != FERRY_ERR_NONE) {
            report_error(ctl, e, "metadata: %s", err[0] ? err : ferry_err_str(e));
            goto out;
        }
        for (size_t t = 0; t < ferry_metadata_topic_count(md); t++) {
            const char *tn = ferry_metadata_topic_name(md, t);
            if (ferry_metadata_topic_err(md, t) != FERRY_ERR_NONE) {
                report_error(ctl, ferry_metadata_topic_err(md, t), "topic %s: %s", tn,
                             ferry_err_str(ferry_metadata_topic_err(md, t)));
                goto out;
            }
            for (size_t s = 0; s < nsel; s++) {
                if (strcmp(sels[s].name, tn) != 0)
                    continue;
                size_t np = ferry_metadata_partition_count(md, t);
                for (size_t q = 0; q < np; q++) {
                    int32_t pid = ferry_metadata_partition_id(md, t, q);
                    bool want = sels[s].parts == NULL;
                    for (size_t k = 0; k < sels[s].nparts; k++)
                        want |= sels[s].parts[k] == pid;
                    if (want && plan_add(&plan, &n, tn, strlen(tn), pid) != 0)
                        goto out;
                }
                for (size_t k = 0; k < sels[s].nparts; k++) {
                    if (sels[s].parts[k] >= (int32_t)np) {
                        report_error(ctl, FERRY_ERR_UNKNOWN_TOPIC_OR_PARTITION, "topic %s has no partition %" PRId32,
                                     tn, sels[s].parts[k]);
                        goto out;
                    }
                }
            }
        }
        if (plan_committed(ctl, c, group, &plan, &n, false) != FERRY_ERR_NONE)
            goto out;
    } else if (plan_committed(ctl, c, group, &plan, &n, true) != FERRY_ERR_NONE) {
        goto out;
    }
    if (n == 0) {
        report_error(ctl, FERRY_ERR_GROUP_ID_NOT_FOUND, "group %s has no committed offsets; name partitions with --topic",
                     group);
        goto out;
    }
    size_t failed = plan_resolve(ctl, c, plan, n, kind, val);
    if (execute && failed < n && plan_apply(ctl, c, group, plan, n) != FERRY_ERR_NONE)
        goto out;
    plan_print(ctl, group, plan, n, execute);
    failed = 0;
    for (size_t i = 0; i < n; i++)
        failed += plan[i].err != FERRY_ERR_NONE;
    rc = failed == 0 ? EXIT_OK : failed == n ? EXIT_FAIL : EXIT_PARTIAL;
out:
    for (size_t i = 0; i < nsel; i++) {
        free(sels[i].copy);
        free(sels[i].parts);
    }
    free(sels);
    plan_free(plan, n);
    ferry_metadata_destroy(md);
    if (c != NULL) {
        ferry_client_close(c, 1000);
        ferry_client_destroy(c);
    }
    return rc;
}
