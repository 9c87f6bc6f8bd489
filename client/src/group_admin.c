/* group_admin.c: group admin requests (ferry_admin_group_request, ferry_committed) routed to coordinators. */
#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "group_int.h"

/* ---- group admin requests ---- */

static void gop_complete(struct ferry_client *cl, struct gop *op, ferry_err_t err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void gop_complete(struct ferry_client *cl, struct gop *op, ferry_err_t err, const char *fmt, ...)
{
    struct ferry_group *g = cl->grp;
    for (struct gop **pp = &g->ops; *pp; pp = &(*pp)->next) {
        if (*pp == op) {
            *pp = op->next;
            break;
        }
    }
    op->next = NULL;
    pthread_mutex_lock(&cl->lock);
    if (op->abandoned) {
        pthread_mutex_unlock(&cl->lock);
        grp_gop_free(op);
        return;
    }
    op->err = err;
    op->errstr[0] = '\0';
    if (fmt != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(op->errstr, sizeof op->errstr, fmt, ap);
        va_end(ap);
    }
    op->done = true;
    pthread_cond_broadcast(&cl->cond);
    pthread_mutex_unlock(&cl->lock);
}

static void gop_retry_or_fail(struct ferry_client *cl, struct gop *op, int err, const char *msg)
{
    int64_t now = ferry_now_ms();
    if ((ferry_err_is_retriable((ferry_err_t)err) || grp_coordinator_error(err)) &&
        now + cl->s.retry_backoff_ms < op->deadline_ms) {
        op->retry_at_ms = now + cl->s.retry_backoff_ms;
        if (grp_coordinator_error(err))
            op->coord_id = -1;
        ferry_kick(cl);
        return;
    }
    gop_complete(cl, op, (ferry_err_t)err, "%s", msg);
}

static void on_gop_coordinator(struct ferry_client *cl, struct broker *b, int err, const char *errmsg,
                               const struct ferry_response_header *rh, void *arg)
{
    (void)b;
    struct gop *op = arg;
    op->finding = false;
    if (err == FERRY_ERR__DESTROYED || cl->stopping) {
        gop_complete(cl, op, FERRY_ERR__DESTROYED, "client is closing");
        return;
    }
    char msg[300];
    int32_t id = grp_parse_coordinator(cl, err, errmsg, rh, msg, sizeof msg);
    if (id < 0) {
        int e = err ? err : rh->error ? rh->error : FERRY_ERR__BAD_RESPONSE;
        gop_retry_or_fail(cl, op, e, msg);
        return;
    }
    op->coord_id = id;
    ferry_kick(cl);
}

/* The top-level error of a response, or of its first "groups" item when it says NOT_COORDINATOR. */
static int gop_coordinator_item_error(const msgpack_object *body)
{
    const msgpack_object *groups = body ? ferry_mp_get(body, "groups") : NULL;
    if (groups == NULL || groups->type != MSGPACK_OBJECT_ARRAY || groups->via.array.size == 0)
        return 0;
    const msgpack_object *first = &groups->via.array.ptr[0];
    if (first->type != MSGPACK_OBJECT_MAP)
        return 0;
    struct ferry_mp_reader rd = {0};
    int e = (int)ferry_mp_int(&rd, first, "error", 0, 0);
    return e == FERRY_ERR_NOT_COORDINATOR || e == FERRY_ERR_COORDINATOR_NOT_AVAILABLE ? e : 0;
}

static void on_gop_response(struct ferry_client *cl, struct broker *b, int err, const char *errmsg,
                            const struct ferry_response_header *rh, void *arg)
{
    (void)b;
    struct gop *op = arg;
    op->sent = false;
    if (err == FERRY_ERR__DESTROYED || cl->stopping) {
        gop_complete(cl, op, FERRY_ERR__DESTROYED, "client is closing");
        return;
    }
    if (err != 0) {
        gop_retry_or_fail(cl, op, err, errmsg);
        return;
    }
    if (rh->error != 0) {
        char msg[FERRY_MAX_ERROR_MESSAGE + 1];
        snprintf(msg, sizeof msg, "%.*s", rh->error_message ? (int)rh->error_message_len : 0,
                 rh->error_message ? rh->error_message : ferry_err_str(rh->error));
        if (op->group_id != NULL && grp_coordinator_error(rh->error)) {
            gop_retry_or_fail(cl, op, rh->error, msg);
            return;
        }
        gop_complete(cl, op, (ferry_err_t)rh->error, "%s", msg);
        return;
    }
    int ie = op->group_id != NULL ? gop_coordinator_item_error(rh->body) : 0;
    if (ie != 0 && ferry_now_ms() + cl->s.retry_backoff_ms < op->deadline_ms) {
        gop_retry_or_fail(cl, op, ie, ferry_err_str(ie));
        return;
    }
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    if (rh->body != NULL)
        msgpack_pack_object(&pk, *rh->body);
    else
        msgpack_pack_map(&pk, 0);
    pthread_mutex_lock(&cl->lock);
    bool abandoned = op->abandoned;
    if (!abandoned) {
        op->resp = (uint8_t *)sb.data; /* ownership moves to the op */
        op->resp_len = sb.size;
        sb.data = NULL;
    }
    pthread_mutex_unlock(&cl->lock);
    msgpack_sbuffer_destroy(&sb);
    gop_complete(cl, op, FERRY_ERR_NONE, NULL);
}

void grp_gops_service(struct ferry_client *cl, int64_t now)
{
    struct ferry_group *g = cl->grp;
    struct gop *next;
    for (struct gop *op = g->ops; op; op = next) {
        next = op->next;
        if (op->sent || op->finding)
            continue;
        if (now >= op->deadline_ms) {
            gop_complete(cl, op, FERRY_ERR__TIMED_OUT, "timed out%s%s",
                         cl->last_error[0] ? "; last connection error: " : "", cl->last_error);
            continue;
        }
        if (now < op->retry_at_ms)
            continue;
        struct broker *b = NULL;
        if (op->group_id != NULL) {
            if (op->coord_id < 0) {
                if (grp_send_find_coordinator(cl, op->group_id, on_gop_coordinator, op) == 0)
                    op->finding = true;
                continue;
            }
            b = ferry_broker_by_id(cl, op->coord_id);
            if (b == NULL || grp_coordinator_unreachable(b, now)) {
                op->coord_id = -1; /* moved (failover): find it again after a pause */
                op->retry_at_ms = now + cl->s.retry_backoff_ms * 5;
                continue;
            }
        } else if (op->broker_id >= 0) {
            b = ferry_broker_by_id(cl, op->broker_id);
            if (b == NULL) {
                ferry_metadata_refresh(cl, "group request to an unknown broker");
                continue;
            }
        } else {
            b = ferry_broker_any_up(cl);
        }
        if (b == NULL)
            continue;
        if (b->state != BROKER_UP) {
            ferry_broker_want(cl, b);
            continue;
        }
        msgpack_sbuffer sb;
        msgpack_packer pk;
        uint32_t corr = ferry_request_begin(cl, &sb, &pk, op->api);
        msgpack_sbuffer_write(&sb, (const char *)op->body, op->body_len);
        int err = ferry_request_send(cl, b, &sb, corr, op->api, 0, on_gop_response, op);
        if (err != 0)
            gop_retry_or_fail(cl, op, err, "sending the request failed");
        else
            op->sent = true;
    }
}

/* Runs a group admin request and waits (see ferry_admin_group_request). On NONE *op_out is the
 * caller's (free with grp_gop_free); otherwise the op is gone. */
static ferry_err_t gop_run(struct ferry_client *cl, struct gop *op, int timeout_ms, char *errstr, size_t errstr_size,
                           struct gop **op_out)
{
    *op_out = NULL;
    int64_t deadline = ferry_deadline(timeout_ms);
    op->deadline_ms = deadline < 0 ? INT64_MAX : deadline;
    op->coord_id = -1;
    pthread_mutex_lock(&cl->lock);
    struct ferry_group *g = grp_group_get_locked(cl);
    if (g == NULL || cl->closing || cl->closed) {
        pthread_mutex_unlock(&cl->lock);
        grp_gop_free(op);
        ferry_set_errstr(errstr, errstr_size, "%s", g == NULL ? "out of memory" : "client is closing");
        return g == NULL ? FERRY_ERR__NO_MEMORY : FERRY_ERR__DESTROYED;
    }
    op->next = g->ops_in;
    g->ops_in = op;
    ferry_wake_locked(cl);
    while (!op->done) {
        bool closing = cl->closing || cl->closed;
        if (closing || (ferry_cond_wait_until(cl, deadline) == ETIMEDOUT && !op->done)) {
            op->abandoned = true;
            ferry_set_errstr(errstr, errstr_size, "%s", closing ? "client is closing" : "timed out");
            pthread_mutex_unlock(&cl->lock);
            return closing ? FERRY_ERR__DESTROYED : FERRY_ERR__TIMED_OUT;
        }
    }
    pthread_mutex_unlock(&cl->lock);
    ferry_err_t err = op->err;
    if (err != FERRY_ERR_NONE) {
        ferry_set_errstr(errstr, errstr_size, "%s", op->errstr[0] ? op->errstr : ferry_err_str(err));
        grp_gop_free(op);
        return err;
    }
    ferry_set_errstr(errstr, errstr_size, "%s", "");
    *op_out = op;
    return FERRY_ERR_NONE;
}

static struct gop *gop_new(int api, const char *group_id, int32_t broker_id, const void *body, size_t len)
{
    struct gop *op = calloc(1, sizeof *op);
    if (op == NULL)
        return NULL;
    op->api = api;
    op->broker_id = broker_id;
    op->body = malloc(len ? len : 1);
    if (op->body == NULL || (group_id != NULL && (op->group_id = strdup(group_id)) == NULL)) {
        grp_gop_free(op);
        return NULL;
    }
    memcpy(op->body, body, len);
    op->body_len = len;
    return op;
}

FERRY_API ferry_err_t ferry_admin_group_request(ferry_client_t *cl, int api, const char *group_id, int32_t broker_id,
                                                const void *body, size_t body_len, void **resp, size_t *resp_len,
                                                int timeout_ms, char *errstr, size_t errstr_size)
{
    if (resp != NULL)
        *resp = NULL;
    if (resp_len != NULL)
        *resp_len = 0;
    if (cl != NULL && cl->type != FERRY_CONSUMER) {
        /* Group requests are serviced by the consumer's pass (see ferry_group_service). */
        ferry_set_errstr(errstr, errstr_size, "group requests need a consumer client (FERRY_CONSUMER)");
        return FERRY_ERR__WRONG_CLIENT_TYPE;
    }
    if (cl == NULL || api < FERRY_API_FIND_COORDINATOR || api > FERRY_API_RESET_OFFSETS || body == NULL ||
        body_len == 0 || body_len > FERRY_MAX_FRAME_BYTES / 2 || resp == NULL || resp_len == NULL ||
        (group_id != NULL && (group_id[0] == '\0' || strlen(group_id) > FERRY_MAX_GROUP_ID))) {
        ferry_set_errstr(errstr, errstr_size, "invalid argument (api, group id, body or result pointers)");
        return FERRY_ERR__INVALID_ARG;
    }
    /* The body must be exactly one msgpack map: the frame would be garbage otherwise. */
    struct ferry_msg m;
    char msg[256];
    if (ferry_msg_unpack(body, body_len, &m, msg, sizeof msg) != 0) {
        ferry_set_errstr(errstr, errstr_size, "body: %s", msg);
        return FERRY_ERR__INVALID_ARG;
    }
    bool is_map = m.root.type == MSGPACK_OBJECT_MAP;
    ferry_msg_destroy(&m);
    if (!is_map) {
        ferry_set_errstr(errstr, errstr_size, "body: not a msgpack map");
        return FERRY_ERR__INVALID_ARG;
    }
    struct gop *op = gop_new(api, group_id, broker_id, body, body_len);
    if (op == NULL) {
        ferry_set_errstr(errstr, errstr_size, "out of memory");
        return FERRY_ERR__NO_MEMORY;
    }
    ferry_err_t err = gop_run(cl, op, timeout_ms, errstr, errstr_size, &op);
    if (err != FERRY_ERR_NONE)
        return err;
    *resp = op->resp;
    *resp_len = op->resp_len;
    op->resp = NULL;
    grp_gop_free(op);
    return FERRY_ERR_NONE;
}

FERRY_API ferry_err_t ferry_committed(ferry_client_t *cl, ferry_topic_partition_t *parts, size_t n, int timeout_ms)
{
    ferry_err_t err = grp_group_check(cl, true);
    if (err != FERRY_ERR_NONE)
        return err;
    if (n == 0 || parts == NULL || n > FERRY_MAX_ARRAY_LEN)
        return FERRY_ERR__INVALID_ARG;
    struct tplist l = {0};
    for (size_t i = 0; i < n; i++) {
        if (parts[i].topic == NULL || parts[i].topic[0] == '\0' || strlen(parts[i].topic) > FERRY_MAX_TOPIC_NAME ||
            parts[i].partition < 0) {
            grp_tpl_free(&l);
            return FERRY_ERR__INVALID_ARG;
        }
        if (grp_tpl_add(&l, parts[i].topic, strlen(parts[i].topic), parts[i].partition, -1) == NULL) {
            grp_tpl_free(&l);
            return FERRY_ERR__NO_MEMORY;
        }
        parts[i].offset = -1;
    }
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    ferry_pack_key(&pk, "group_id");
    ferry_pack_str(&pk, cl->s.group_id);
    ferry_pack_key(&pk, "topics");
    grp_pack_tp_topics(&pk, &l, PACK_FETCH);
    grp_tpl_free(&l);
    void *resp = NULL;
    size_t rlen = 0;
    err = ferry_admin_group_request(cl, FERRY_API_OFFSET_FETCH, cl->s.group_id, -1, sb.data, sb.size, &resp, &rlen,
                                    timeout_ms, NULL, 0);
    msgpack_sbuffer_destroy(&sb);
    if (err != FERRY_ERR_NONE)
        return err;
    struct ferry_msg m;
    char msg[256];
    if (ferry_msg_unpack(resp, rlen, &m, msg, sizeof msg) != 0) {
        free(resp);
        return FERRY_ERR__BAD_RESPONSE;
    }
    struct ferry_mp_reader rd = {0};
    const msgpack_object_array *topics = ferry_mp_array(&rd, &m.root, "topics", 1);
    for (uint32_t ti = 0; !rd.err && ti < topics->size; ti++) {
        const msgpack_object *tm = ferry_mp_elem_map(&rd, topics, ti, "topics");
        size_t nl = 0;
        const char *name = ferry_mp_str(&rd, tm, "name", &nl, 1);
        const msgpack_object_array *ps = rd.err ? NULL : ferry_mp_array(&rd, tm, "partitions", 1);
        for (uint32_t pi = 0; !rd.err && pi < ps->size; pi++) {
            const msgpack_object *pm = ferry_mp_elem_map(&rd, ps, pi, "partitions");
            int32_t part = (int32_t)ferry_mp_int(&rd, pm, "partition", -1, 1);
            int64_t off = ferry_mp_int(&rd, pm, "offset", -1, 0);
            int perr = (int)ferry_mp_int(&rd, pm, "error", 0, 0);
            if (rd.err)
                break;
            for (size_t i = 0; i < n; i++) {
                if (parts[i].partition == part && strlen(parts[i].topic) == nl &&
                    memcmp(parts[i].topic, name, nl) == 0) {
                    parts[i].offset = perr == 0 && off >= 0 ? off : -1;
                    if (perr != 0 && perr != FERRY_ERR_UNKNOWN_TOPIC_OR_PARTITION && err == FERRY_ERR_NONE)
                        err = (ferry_err_t)perr;
                }
            }
        }
    }
    if (rd.err)
        err = FERRY_ERR__BAD_RESPONSE;
    ferry_msg_destroy(&m);
    free(resp);
    return err;
}
