/* group_heartbeat.c: GroupHeartbeat (api 9): join, leave, liveness and incremental assignment of a member. */
#include <stdlib.h>
#include <string.h>

#include "ferry_errors.h"
#include "groups/groups_int.h"
#include "handlers/handlers.h"

/* The parsed request; strings borrow from the request frame. */
struct hb_req {
    const char *group, *member_id, *instance_id;
    size_t group_len, member_id_len, instance_id_len;
    int64_t epoch;
    const msgpack_object_array *subs;  /* NULL = unchanged */
    const msgpack_object_array *owned; /* NULL = not said */
    int64_t session_timeout_ms, rebalance_timeout_ms; /* -1 = not given */
};

static int parse(const msgpack_object *body, struct hb_req *r, char *msg, size_t msg_len)
{
    struct ferry_mp_reader rd = {0};
    size_t len;
    memset(r, 0, sizeof(*r));
    r->group = ferry_mp_str(&rd, body, "group_id", &r->group_len, 1);
    r->member_id = ferry_mp_str(&rd, body, "member_id", &r->member_id_len, 0);
    r->instance_id = ferry_mp_str(&rd, body, "instance_id", &r->instance_id_len, 0);
    r->epoch = ferry_mp_int_range(&rd, body, "member_epoch", 0, 1, -2, INT32_MAX);
    r->subs = ferry_mp_array(&rd, body, "subscribed_topics", 0);
    r->owned = ferry_mp_array(&rd, body, "owned", 0);
    r->session_timeout_ms = ferry_mp_int_range(&rd, body, "session_timeout_ms", -1, 0, 1, INT32_MAX);
    r->rebalance_timeout_ms = ferry_mp_int_range(&rd, body, "rebalance_timeout_ms", -1, 0, 1, INT32_MAX);
    if (rd.err) {
        snprintf(msg, msg_len, "%s", rd.errmsg);
        return FERRY_ERR_INVALID_REQUEST;
    }
    if (r->member_id_len > FG_MAX_ID || r->instance_id_len > FG_MAX_ID) {
        snprintf(msg, msg_len, "member_id and instance_id are at most %d bytes", FG_MAX_ID);
        return FERRY_ERR_INVALID_REQUEST;
    }
    if (r->member_id != NULL && r->member_id_len == 0)
        r->member_id = NULL;
    if (r->instance_id != NULL && r->instance_id_len == 0)
        r->instance_id = NULL;
    if (r->subs != NULL) {
        if (r->subs->size > FG_MAX_SUBSCRIBED) {
            snprintf(msg, msg_len, "%u subscribed topics, above the limit %d", r->subs->size, FG_MAX_SUBSCRIBED);
            return FERRY_ERR_LIMIT_EXCEEDED;
        }
        for (uint32_t i = 0; i < r->subs->size; i++) {
            const msgpack_object *o = &r->subs->ptr[i];
            if (o->type != MSGPACK_OBJECT_STR || o->via.str.size == 0 || o->via.str.size > FERRY_MAX_TOPIC_NAME) {
                snprintf(msg, msg_len, "field 'subscribed_topics'[%u]: expected a topic name", i);
                return FERRY_ERR_INVALID_REQUEST;
            }
        }
    }
    for (uint32_t i = 0; r->owned != NULL && i < r->owned->size; i++) {
        const msgpack_object *om = ferry_mp_elem_map(&rd, r->owned, i, "owned");
        if (om == NULL)
            break;
        ferry_mp_str(&rd, om, "topic", &len, 1);
        const msgpack_object_array *ps = ferry_mp_array(&rd, om, "partitions", 1);
        for (uint32_t k = 0; !rd.err && k < ps->size; k++)
            if (ps->ptr[k].type != MSGPACK_OBJECT_POSITIVE_INTEGER || ps->ptr[k].via.u64 > INT32_MAX) {
                snprintf(msg, msg_len, "field 'owned'[%u].partitions[%u]: expected a partition number", i, k);
                return FERRY_ERR_INVALID_REQUEST;
            }
    }
    if (rd.err) {
        snprintf(msg, msg_len, "%s", rd.errmsg);
        return FERRY_ERR_INVALID_REQUEST;
    }
    if (r->epoch == 0 && r->subs == NULL) {
        snprintf(msg, msg_len, "field 'subscribed_topics' is required to join (member_epoch 0)");
        return FERRY_ERR_INVALID_REQUEST;
    }
    return 0;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* Sets m's subscriptions from the request; *changed when they differ. Returns 0 or -1 (out of memory). */
static int set_subs(struct fg_group *g, struct fg_member *m, const msgpack_object_array *subs, int *changed)
{
    uint32_t *ns = calloc(subs->size ? subs->size : 1, sizeof(*ns));
    uint32_t n = 0;
    if (ns == NULL)
        return -1;
    for (uint32_t i = 0; i < subs->size; i++) {
        uint32_t t = fg_topic_index(g, subs->ptr[i].via.str.ptr, subs->ptr[i].via.str.size);
        if (t == UINT32_MAX) {
            free(ns);
            return -1;
        }
        ns[n++] = t;
    }
    qsort(ns, n, sizeof(*ns), cmp_u32);
    uint32_t u = 0;
    for (uint32_t i = 0; i < n; i++)
        if (u == 0 || ns[u - 1] != ns[i])
            ns[u++] = ns[i];
    if (u == m->nsubs && (u == 0 || memcmp(ns, m->subs, u * sizeof(*ns)) == 0)) {
        free(ns);
        return 0;
    }
    free(m->subs);
    m->subs = ns;
    m->nsubs = u;
    *changed = 1;
    return 0;
}

/* The member acknowledged revocations: keep in `revoking` only what it still says it owns. */
static void ack_revocations(struct fg_group *g, struct fg_member *m, const msgpack_object_array *owned)
{
    uint32_t keep = 0;
    for (uint32_t i = 0; i < m->nrevoking; i++) {
        const struct fg_tp *tp = &m->revoking[i];
        const char *name = g->topics[tp->topic];
        int still = 0;
        for (uint32_t k = 0; !still && k < owned->size; k++) {
            size_t len;
            struct ferry_mp_reader rd = {0};
            const char *t = ferry_mp_str(&rd, &owned->ptr[k], "topic", &len, 1);
            const msgpack_object_array *ps = ferry_mp_array(&rd, &owned->ptr[k], "partitions", 1);
            if (rd.err || len != strlen(name) || memcmp(t, name, len) != 0)
                continue;
            for (uint32_t j = 0; j < ps->size; j++)
                still |= (int64_t)ps->ptr[j].via.u64 == tp->partition;
        }
        if (still)
            m->revoking[keep++] = *tp;
    }
    m->nrevoking = keep;
    if (keep == 0)
        m->revoke_since = 0;
}

static int random_member_id(char out[33])
{
    unsigned char raw[16];
    static const char hex[] = "0123456789abcdef";
    if (uv_random(NULL, NULL, raw, sizeof(raw), 0, NULL) != 0)
        return -1;
    for (int i = 0; i < 16; i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 15];
    }
    out[32] = '\0';
    return 0;
}

static char *dupn(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d != NULL) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

static void reply_leave(struct ferryd_coord *co, struct ferryd_req *req, int32_t slot, struct fg_records *recs,
                        const char *member_id, int64_t epoch)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    ferryd_resp_begin(req, &sb, &pk);
    msgpack_pack_map(&pk, 3);
    ferry_pack_key(&pk, "member_id");
    ferry_pack_str(&pk, member_id);
    ferry_pack_key(&pk, "member_epoch");
    msgpack_pack_int64(&pk, epoch);
    ferry_pack_key(&pk, "heartbeat_interval_ms");
    msgpack_pack_int64(&pk, co->b->cfg->group_heartbeat_interval_ms);
    fg_write_then_reply(co, slot, recs, req, &sb);
}

/* A leave (epoch -1) or temporary leave (-2, static members). */
static void leave(struct ferryd_coord *co, struct ferryd_req *req, int32_t slot, struct fg_group *g,
                  const struct hb_req *r)
{
    struct fg_member *m = NULL;
    struct fg_records recs;
    char id[FG_MAX_ID + 1];
    if (g != NULL && r->member_id != NULL)
        m = fg_member_find(g, r->member_id, r->member_id_len);
    if (g != NULL && m == NULL && r->instance_id != NULL)
        m = fg_member_find_instance(g, r->instance_id, r->instance_id_len);
    if (m == NULL) {
        ferryd_req_error(req, FERRY_ERR_UNKNOWN_MEMBER_ID, "no such member in group %s", g ? g->id : "(unknown)");
        return;
    }
    fg_records_init(&recs);
    snprintf(id, sizeof(id), "%s", m->id);
    if (r->epoch == -2 && m->instance_id != NULL) {
        /* Reserved for its session timeout: a member with the same instance id takes it over. */
        m->left = 1;
        m->deadline = fg_now(co) + (uint64_t)m->session_timeout_ms;
        reply_leave(co, req, slot, &recs, id, -2);
        return;
    }
    fg_member_expel(co, g, m, &recs);
    reply_leave(co, req, slot, &recs, id, -1);
}

void ferryd_handle_group_heartbeat(struct ferryd_req *req, const msgpack_object *body)
{
    struct ferryd_coord *co = req->broker->coord;
    char msg[FERRY_MAX_ERROR_MESSAGE];
    struct hb_req r;
    int32_t slot;
    int rc = parse(body, &r, msg, sizeof(msg));
    if (rc == 0)
        rc = fg_route(co, r.group, r.group_len, &slot, msg, sizeof(msg));
    if (rc != 0) {
        ferryd_req_error(req, rc, "%s", msg);
        return;
    }
    struct fg_group *g = fg_group_find(co, r.group, r.group_len);
    if (r.epoch < 0) {
        leave(co, req, slot, g, &r);
        return;
    }

    struct fg_member *m = NULL;
    int created_group = 0, rebalance = 0, dirty = 0, limit = 0;
    uint64_t now = fg_now(co);
    if (r.epoch == 0) {
        if (g == NULL) {
            g = fg_group_create(co, r.group, r.group_len, slot, &limit);
            if (g == NULL) {
                ferryd_req_error(req, limit ? FERRY_ERR_LIMIT_EXCEEDED : FERRY_ERR_UNKNOWN,
                                 limit ? "this coordinator already has %d groups" : "out of memory (%d)",
                                 FG_MAX_GROUPS);
                return;
            }
            created_group = 1;
        }
        if (r.instance_id != NULL) {
            m = fg_member_find_instance(g, r.instance_id, r.instance_id_len);
            int same = m != NULL && r.member_id != NULL && strlen(m->id) == r.member_id_len &&
                       memcmp(m->id, r.member_id, r.member_id_len) == 0;
            if (m != NULL && !m->left && !same) {
                ferryd_req_error(req, FERRY_ERR_UNRELEASED_INSTANCE_ID,
                                 "instance id %.*s is used by live member %s of group %s", (int)r.instance_id_len,
                                 r.instance_id, m->id, g->id);
                return;
            }
            if (m != NULL && m->left) {
                m->left = 0; /* static member back within its session: same id, epoch and assignment */
                m->send_assignment = 1;
            } else if (m != NULL) {
                m = NULL; /* its own rejoin: handled below */
            }
        }
        if (m == NULL && r.member_id != NULL && (m = fg_member_find(g, r.member_id, r.member_id_len)) != NULL) {
            /* A rejoin: the member gave up everything it owned. */
            m->nassigned = 0;
            m->nrevoking = 0;
            m->revoke_since = 0;
            m->left = 0;
            rebalance = 1;
        }
        if (m == NULL) {
            char fresh[33];
            if (g->nmembers >= FG_MAX_MEMBERS) {
                ferryd_req_error(req, FERRY_ERR_LIMIT_EXCEEDED, "group %s already has %d members", g->id,
                                 FG_MAX_MEMBERS);
                return;
            }
            if (r.member_id == NULL && random_member_id(fresh) != 0)
                goto err_nomem;
            m = r.member_id ? fg_member_add(g, r.member_id, r.member_id_len) : fg_member_add(g, fresh, 32);
            if (m == NULL)
                goto err_nomem;
            if (r.instance_id != NULL && (m->instance_id = dupn(r.instance_id, r.instance_id_len)) == NULL)
                goto err_nomem;
            rebalance = 1;
        }
        if (m->client_id == NULL || strlen(m->client_id) != req->client_id_len ||
            memcmp(m->client_id, req->client_id ? req->client_id : "", req->client_id_len) != 0) {
            free(m->client_id);
            m->client_id = dupn(req->client_id ? req->client_id : "", req->client_id ? req->client_id_len : 0);
            if (m->client_id == NULL)
                goto err_nomem;
        }
        char host[64];
        size_t hl = ferryd_req_peer_host(req, host, sizeof(host));
        if (m->host == NULL || strcmp(m->host, host) != 0) { /* the address it (re)joined from */
            free(m->host);
            if ((m->host = dupn(host, hl)) == NULL)
                goto err_nomem;
        }
        m->send_assignment = 1;
        dirty = 1;
    } else {
        m = g == NULL || r.member_id == NULL ? NULL : fg_member_find(g, r.member_id, r.member_id_len);
        if (m == NULL) {
            ferryd_req_error(req, FERRY_ERR_UNKNOWN_MEMBER_ID, "member %.*s is not in group %.*s (rejoin with epoch 0)",
                             (int)r.member_id_len, r.member_id ? r.member_id : "", (int)r.group_len, r.group);
            return;
        }
        if (r.epoch != m->epoch && r.epoch != m->prev_epoch) {
            ferryd_req_error(req, FERRY_ERR_FENCED_MEMBER_EPOCH,
                             "member %s of group %s: epoch %lld is not its current epoch %lld (rejoin with epoch 0)",
                             m->id, g->id, (long long)r.epoch, (long long)m->epoch);
            return;
        }
        if (r.epoch != m->epoch)
            m->send_assignment = 1; /* the answer that bumped it may have been lost */
        m->left = 0;
    }
    if (r.subs != NULL && set_subs(g, m, r.subs, &rebalance) != 0)
        goto err_nomem;
    if (r.subs != NULL && rebalance)
        dirty = 1;
    int64_t st = r.session_timeout_ms > 0 ? fg_session_timeout(co, r.session_timeout_ms) : m->session_timeout_ms;
    if (r.epoch == 0 && r.session_timeout_ms <= 0)
        st = fg_session_timeout(co, -1);
    if (st != m->session_timeout_ms) {
        m->session_timeout_ms = st;
        dirty = 1;
    }
    if (r.rebalance_timeout_ms > 0 && r.rebalance_timeout_ms != m->rebalance_timeout_ms) {
        m->rebalance_timeout_ms = r.rebalance_timeout_ms;
        dirty = 1;
    }
    m->deadline = now + (uint64_t)m->session_timeout_ms;
    if (r.owned != NULL) {
        uint32_t before = m->nrevoking;
        ack_revocations(g, m, r.owned);
        dirty |= m->nrevoking != before; /* the member record holds what it still owns */
    }

    struct fg_records recs;
    fg_records_init(&recs);
    if (rebalance) {
        if (fg_group_rebalance(co, g) != 0)
            goto err_nomem_recs;
        fg_rec_group(&recs, g);
    }
    int changed = 0;
    if (fg_member_reconcile(g, m, now, &changed) != 0)
        goto err_nomem_recs;
    if (m->epoch <= 0) {
        /* A new member that got nothing yet still needs an epoch: 0 would mean "join" again. */
        m->epoch = g->group_epoch > 0 ? g->group_epoch : 1;
        changed = 1;
    }
    if (r.epoch == 0)
        m->prev_epoch = m->epoch; /* a (re)join starts a new life: no older epoch is tolerated */
    if (changed || dirty)
        fg_rec_member(&recs, g, m);

    msgpack_sbuffer sb;
    msgpack_packer pk;
    ferryd_resp_begin(req, &sb, &pk);
    msgpack_pack_map(&pk, 3 + (m->send_assignment ? 1 : 0) + (m->nresets > 0 ? 1 : 0));
    ferry_pack_key(&pk, "member_id");
    ferry_pack_str(&pk, m->id);
    ferry_pack_key(&pk, "member_epoch");
    msgpack_pack_int64(&pk, m->epoch);
    ferry_pack_key(&pk, "heartbeat_interval_ms");
    msgpack_pack_int64(&pk, co->b->cfg->group_heartbeat_interval_ms);
    if (m->send_assignment) {
        ferry_pack_key(&pk, "assignment");
        fg_pack_tp_set(&pk, g, m->assigned, m->nassigned);
        m->send_assignment = 0;
    }
    if (m->nresets > 0) {
        ferry_pack_key(&pk, "resets");
        msgpack_pack_array(&pk, m->nresets);
        for (uint32_t i = 0; i < m->nresets; i++) {
            msgpack_pack_map(&pk, 3);
            ferry_pack_key(&pk, "topic");
            ferry_pack_str(&pk, g->topics[m->resets[i].topic]);
            ferry_pack_key(&pk, "partition");
            msgpack_pack_int32(&pk, m->resets[i].partition);
            ferry_pack_key(&pk, "offset");
            msgpack_pack_int64(&pk, m->resets[i].offset);
        }
        free(m->resets);
        m->resets = NULL;
        m->nresets = 0;
    }
    fg_write_then_reply(co, slot, &recs, req, &sb);
    return;

err_nomem_recs:
    fg_records_free(&recs);
err_nomem:
    if (created_group && g->nmembers == 0)
        fg_group_remove(co, g);
    ferryd_req_error(req, FERRY_ERR_UNKNOWN, "broker out of memory");
}
