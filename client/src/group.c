/* group.c: consumer-group membership on the I/O thread: coordinator lookup, heartbeats, reconciliation, commits. */
#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "group_int.h"

/*
 * The member (docs/consumer-groups.md) lives on the I/O thread:
 *
 *   FindCoordinator -> GroupHeartbeat(epoch 0, subscription) -> assignment -> OffsetFetch of the
 *   new partitions -> fetching (consumer.c) ... heartbeat every heartbeat_interval_ms ...
 *
 * A heartbeat answer may carry the full set of partitions to own now. Partitions no longer in it
 * are revoked at once: removed from the fetch assignment (queued messages dropped), committed
 * when enable.auto.commit is on, and only then left out of "owned" in the next heartbeat, which
 * is the acknowledgement the coordinator waits for before giving them to another member.
 * Partitions new in it start at their committed offset (OffsetFetch) or per auto.offset.reset.
 *
 * Application threads only touch the shared part of struct ferry_group under cl->lock: the
 * subscription, poll times, commit requests, admin requests in, and callback events out. Events
 * are served by ferry_consumer_poll (and ferry_consumer_close) on the application's thread.
 *
 * Every request callback here runs exactly once (broker.c); on FERRY_ERR__DESTROYED it only
 * releases its argument.
 */

/* ---- topic-partition lists ---- */

void grp_tpl_free(struct tplist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i].topic);
    free(l->v);
    memset(l, 0, sizeof *l);
}

struct tp *grp_tpl_find(const struct tplist *l, const char *topic, int32_t partition)
{
    for (size_t i = 0; i < l->n; i++)
        if (l->v[i].partition == partition && strcmp(l->v[i].topic, topic) == 0)
            return &l->v[i];
    return NULL;
}

/* Appends a copy; returns the entry or NULL when out of memory. */
struct tp *grp_tpl_add(struct tplist *l, const char *topic, size_t topic_len, int32_t partition, int64_t offset)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        struct tp *v = realloc(l->v, cap * sizeof *v);
        if (v == NULL)
            return NULL;
        l->v = v;
        l->cap = cap;
    }
    char *t = strndup(topic, topic_len);
    if (t == NULL)
        return NULL;
    struct tp *e = &l->v[l->n++];
    memset(e, 0, sizeof *e);
    e->topic = t;
    e->partition = partition;
    e->offset = offset;
    return e;
}

void grp_tpl_remove(struct tplist *l, struct tp *e)
{
    size_t i = (size_t)(e - l->v);
    assert(i < l->n);
    free(e->topic);
    l->v[i] = l->v[--l->n];
}

void grp_pack_tp_topics(msgpack_packer *pk, const struct tplist *l, enum pack_form form)
{
    size_t ntopics = 0;
    for (size_t i = 0; i < l->n; i++) {
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = strcmp(l->v[j].topic, l->v[i].topic) == 0;
        ntopics += !seen;
    }
    msgpack_pack_array(pk, ntopics);
    for (size_t i = 0; i < l->n; i++) {
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = strcmp(l->v[j].topic, l->v[i].topic) == 0;
        if (seen)
            continue;
        size_t n = 0;
        for (size_t j = i; j < l->n; j++)
            n += strcmp(l->v[j].topic, l->v[i].topic) == 0;
        msgpack_pack_map(pk, 2);
        ferry_pack_key(pk, form == PACK_OWNED ? "topic" : "name");
        ferry_pack_str(pk, l->v[i].topic);
        ferry_pack_key(pk, "partitions");
        msgpack_pack_array(pk, n);
        for (size_t j = i; j < l->n; j++) {
            const struct tp *e = &l->v[j];
            if (strcmp(e->topic, l->v[i].topic) != 0)
                continue;
            if (form != PACK_COMMIT) {
                msgpack_pack_int32(pk, e->partition);
                continue;
            }
            msgpack_pack_map(pk, e->rewind ? 3 : 2);
            ferry_pack_key(pk, "partition");
            msgpack_pack_int32(pk, e->partition);
            ferry_pack_key(pk, "offset");
            msgpack_pack_int64(pk, e->offset);
            if (e->rewind) {
                ferry_pack_key(pk, "rewind");
                msgpack_pack_true(pk);
            }
        }
    }
}

/* ---- events for the application (served by ferry_consumer_poll) ---- */

/* One allocation holding a copy of l (revoking entries excluded unless all). NULL when out of memory. */
struct gevent *grp_event_new(const struct tplist *l)
{
    size_t bytes = 0;
    for (size_t i = 0; i < l->n; i++)
        bytes += strlen(l->v[i].topic) + 1;
    struct gevent *ev = calloc(1, sizeof *ev + l->n * sizeof ev->parts[0] + bytes);
    if (ev == NULL)
        return NULL;
    char *p = (char *)&ev->parts[l->n];
    for (size_t i = 0; i < l->n; i++) {
        size_t tl = strlen(l->v[i].topic) + 1;
        memcpy(p, l->v[i].topic, tl);
        ev->parts[i] = (ferry_topic_partition_t){.topic = p, .partition = l->v[i].partition, .offset = l->v[i].offset};
        p += tl;
    }
    ev->n = l->n;
    return ev;
}

/* ---- requests from application threads ---- */

void grp_gcommit_free(struct gcommit *c)
{
    if (c == NULL)
        return;
    grp_tpl_free(&c->parts);
    free(c);
}

void grp_gop_free(struct gop *op)
{
    if (op == NULL)
        return;
    free(op->group_id);
    free(op->body);
    free(op->resp);
    free(op);
}

/* ---- the group state ---- */

struct ferry_group *grp_group_get_locked(struct ferry_client *cl)
{
    if (cl->grp == NULL) {
        struct ferry_group *g = calloc(1, sizeof *g);
        if (g == NULL)
            return NULL;
        g->coord_id = -1;
        g->last_poll_ms = ferry_now_ms();
        cl->grp = g;
    }
    return cl->grp;
}

void grp_strv_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void ferry_group_free(struct ferry_client *cl)
{
    struct ferry_group *g = cl->grp;
    if (g == NULL)
        return;
    grp_strv_free(g->sub, g->nsub);
    grp_strv_free(g->io_sub, g->io_nsub);
    grp_tpl_free(&g->owned);
    struct gcommit *lists[] = {g->commits_in, g->commits};
    for (size_t i = 0; i < 2; i++) {
        while (lists[i]) {
            struct gcommit *next = lists[i]->next;
            grp_gcommit_free(lists[i]);
            lists[i] = next;
        }
    }
    struct gop *ops[] = {g->ops_in, g->ops};
    for (size_t i = 0; i < 2; i++) {
        while (ops[i]) {
            struct gop *next = ops[i]->next;
            grp_gop_free(ops[i]);
            ops[i] = next;
        }
    }
    while (g->events) {
        struct gevent *next = g->events->next;
        free(g->events);
        g->events = next;
    }
    free(g);
    cl->grp = NULL;
}

bool ferry_group_subscribed_locked(struct ferry_client *cl)
{
    return cl->grp != NULL && cl->grp->subscribed;
}

bool ferry_group_events_pending_locked(struct ferry_client *cl)
{
    return cl->grp != NULL && cl->grp->events != NULL;
}

/* I/O thread: queues an event for the application (takes ev; NULL is ignored). */
void grp_event_push(struct ferry_client *cl, struct gevent *ev)
{
    if (ev == NULL)
        return;
    struct ferry_group *g = cl->grp;
    pthread_mutex_lock(&cl->lock);
    if (g->events_tail)
        g->events_tail->next = ev;
    else
        g->events = ev;
    g->events_tail = ev;
    pthread_cond_broadcast(&cl->cond);
    pthread_mutex_unlock(&cl->lock);
}

static void rebalance_event(struct ferry_client *cl, ferry_rebalance_event_t rb, const struct tplist *l)
{
    if (l->n == 0 || cl->s.rebalance_cb == NULL)
        return;
    struct gevent *ev = grp_event_new(l);
    if (ev != NULL) {
        ev->rb = rb;
        for (size_t i = 0; i < ev->n; i++)
            ev->parts[i].offset = -1;
    }
    grp_event_push(cl, ev);
}

/* ---- coordinator ---- */

/* The coordinator moved, is loading, or cannot be reached: find it again after a backoff (doubling
 * from retry.backoff.ms up to GROUP_COORD_BACKOFF_MAX_MS; reset by a successful heartbeat). */
static void coordinator_lost(struct ferry_client *cl, const char *why)
{
    struct ferry_group *g = cl->grp;
    int64_t now = ferry_now_ms();
    if (g->coord_id >= 0)
        ferry_log(cl, FERRY_LOG_INFO, "group %s: looking for the coordinator again in %lld ms (%s)", cl->s.group_id,
                  (long long)g->coord_backoff_ms, why);
    g->coord_id = -1;
    if (g->coord_backoff_ms < cl->s.retry_backoff_ms)
        g->coord_backoff_ms = cl->s.retry_backoff_ms;
    if (g->coord_retry_at_ms < now + g->coord_backoff_ms)
        g->coord_retry_at_ms = now + g->coord_backoff_ms;
    g->coord_backoff_ms = g->coord_backoff_ms * 2 > GROUP_COORD_BACKOFF_MAX_MS ? GROUP_COORD_BACKOFF_MAX_MS
                                                                              : g->coord_backoff_ms * 2;
}

bool grp_coordinator_error(int err)
{
    return err == FERRY_ERR_NOT_COORDINATOR || err == FERRY_ERR_COORDINATOR_NOT_AVAILABLE ||
           err == FERRY_ERR__TRANSPORT || err == FERRY_ERR__TIMED_OUT || err == FERRY_ERR_BROKER_NOT_AVAILABLE ||
           err == FERRY_ERR_NOT_LEADER || err == FERRY_ERR__TLS;
}

/* The answer of FindCoordinator: records the broker, returns its id or -1 (errmsg). */
int32_t grp_parse_coordinator(struct ferry_client *cl, int err, const char *errmsg,
                                 const struct ferry_response_header *rh, char *out, size_t out_len)
{
    if (err != 0) {
        snprintf(out, out_len, "%s", errmsg);
        return -1;
    }
    if (rh->error != 0) {
        snprintf(out, out_len, "%s: %.*s", ferry_err_name(rh->error),
                 rh->error_message ? (int)rh->error_message_len : 0, rh->error_message ? rh->error_message : "");
        return -1;
    }
    struct ferry_mp_reader rd = {0};
    int64_t id = ferry_mp_int_range(&rd, rh->body, "coordinator_id", -1, 1, 0, INT32_MAX);
    size_t hl = 0;
    const char *host = ferry_mp_str(&rd, rh->body, "host", &hl, 1);
    int64_t port = ferry_mp_int_range(&rd, rh->body, "port", 0, 1, 1, 65535);
    if (rd.err) {
        snprintf(out, out_len, "bad FindCoordinator response: %s", rd.errmsg);
        return -1;
    }
    struct broker *b = ferry_broker_upsert(cl, (int32_t)id, host, hl, (int)port);
    if (b == NULL) {
        snprintf(out, out_len, "out of memory");
        return -1;
    }
    ferry_broker_want(cl, b);
    return (int32_t)id;
}

/* Packs and sends FindCoordinator for group_id to any broker that is up. 0, or -1 (nothing up yet). */
int grp_send_find_coordinator(struct ferry_client *cl, const char *group_id, request_cb_t *cb, void *arg)
{
    struct broker *b = ferry_broker_any_up(cl);
    if (b == NULL)
        return -1;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    uint32_t corr = ferry_request_begin(cl, &sb, &pk, FERRY_API_FIND_COORDINATOR);
    msgpack_pack_map(&pk, 1);
    ferry_pack_key(&pk, "group_id");
    ferry_pack_str(&pk, group_id);
    return ferry_request_send(cl, b, &sb, corr, FERRY_API_FIND_COORDINATOR, 0, cb, arg) == 0 ? 0 : -1;
}

static void on_member_coordinator(struct ferry_client *cl, struct broker *b, int err, const char *errmsg,
                                  const struct ferry_response_header *rh, void *arg)
{
    (void)b;
    (void)arg;
    struct ferry_group *g = cl->grp;
    g->coord_finding = false;
    if (err == FERRY_ERR__DESTROYED || cl->stopping)
        return;
    char msg[300];
    int32_t id = grp_parse_coordinator(cl, err, errmsg, rh, msg, sizeof msg);
    int64_t now = ferry_now_ms();
    if (id < 0) {
        ferry_log(cl, FERRY_LOG_DEBUG, "group %s: FindCoordinator: %s", cl->s.group_id, msg);
        g->coord_retry_at_ms = now + g->coord_backoff_ms;
        g->coord_backoff_ms = g->coord_backoff_ms * 2 > GROUP_COORD_BACKOFF_MAX_MS ? GROUP_COORD_BACKOFF_MAX_MS
                                                                                  : g->coord_backoff_ms * 2;
        return;
    }
    g->coord_id = id;
    ferry_log(cl, FERRY_LOG_DEBUG, "group %s: coordinator is broker %d", cl->s.group_id, (int)id);
    ferry_kick(cl);
}

/* A broker whose last connection attempt (or connection) failed and waits for its backoff. */
bool grp_coordinator_unreachable(const struct broker *b, int64_t now)
{
    return b->state == BROKER_DOWN && now < b->next_attempt_ms;
}

/* The coordinator's broker when it is known and up; else starts finding/connecting and returns NULL. */
static struct broker *member_coordinator(struct ferry_client *cl, int64_t now)
{
    struct ferry_group *g = cl->grp;
    if (g->coord_id < 0) {
        if (!g->coord_finding && now >= g->coord_retry_at_ms) {
            if (g->coord_backoff_ms == 0)
                g->coord_backoff_ms = cl->s.retry_backoff_ms;
            if (grp_send_find_coordinator(cl, cl->s.group_id, on_member_coordinator, NULL) == 0)
                g->coord_finding = true;
        }
        return NULL;
    }
    struct broker *b = ferry_broker_by_id(cl, g->coord_id);
    if (b == NULL) {
        g->coord_id = -1;
        return NULL;
    }
    if (grp_coordinator_unreachable(b, now)) {
        coordinator_lost(cl, "its connection failed"); /* it has probably moved (failover) */
        return NULL;
    }
    if (b->state != BROKER_UP) {
        ferry_broker_want(cl, b);
        return NULL;
    }
    return b;
}

/* ---- partitions in and out of the fetch assignment ---- */

/* Stops fetching l's partitions; fills each entry's offset with the application's position. */
static void fetch_stop(struct ferry_client *cl, struct tplist *l)
{
    pthread_mutex_lock(&cl->lock);
    for (size_t i = 0; i < l->n; i++) {
        struct cpart *cp = ferry_consumer_find_locked(cl, l->v[i].topic, l->v[i].partition);
        l->v[i].offset = -1;
        if (cp == NULL)
            continue;
        l->v[i].offset = cp->app_position;
        l->v[i].rewind = cp->rewind;
        ferry_consumer_remove_locked(cl, cp);
    }
    pthread_mutex_unlock(&cl->lock);
}

/* Lose everything owned now (fenced, session or deadline expired): a LOST event, no commit. */
static void lose_all(struct ferry_client *cl, const char *why)
{
    struct ferry_group *g = cl->grp;
    if (g->owned.n > 0)
        ferry_log(cl, FERRY_LOG_WARNING, "group %s: lost %zu partition(s): %s", cl->s.group_id, g->owned.n, why);
    fetch_stop(cl, &g->owned);
    rebalance_event(cl, FERRY_REBALANCE_LOST, &g->owned);
    grp_tpl_free(&g->owned);
    g->ofetch_inflight = false; /* a late answer finds nothing to apply */
}

static void publish_member(struct ferry_client *cl)
{
    struct ferry_group *g = cl->grp;
    pthread_mutex_lock(&cl->lock);
    ferry_strlcpy(g->pub_member_id, g->member_id, sizeof g->pub_member_id);
    g->pub_epoch = g->member_epoch;
    pthread_mutex_unlock(&cl->lock);
}

/* ---- commits ---- */

static void commit_finished(struct ferry_client *cl, struct gcommit *c, ferry_err_t err, const char *msg);

static void unlink_commit(struct ferry_group *g, struct gcommit *c)
{
    for (struct gcommit **pp = &g->commits; *pp; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    }
    c->next = NULL;
}

static void on_commit(struct ferry_client *cl, struct broker *b, int err, const char *errmsg,
                      const struct ferry_response_header *rh, void *arg)
{
    (void)b;
    struct gcommit *c = arg;
    struct ferry_group *g = cl->grp;
    c->sent = false;
    if (err == FERRY_ERR__DESTROYED || cl->stopping) {
        commit_finished(cl, c, FERRY_ERR__DESTROYED, "client is closing");
        return;
    }
    int64_t now = ferry_now_ms();
    char msg[FERRY_MAX_ERROR_MESSAGE + 64];
    if (err == 0 && rh->error != 0) {
        err = rh->error;
        snprintf(msg, sizeof msg, "%.*s", rh->error_message ? (int)rh->error_message_len : 0,
                 rh->error_message ? rh->error_message : "");
        errmsg = msg[0] ? msg : ferry_err_str(err);
    }
    if (err != 0) {
        if (grp_coordinator_error(err)) {
            coordinator_lost(cl, errmsg);
            if (now < c->deadline_ms) {
                ferry_kick(cl);
                return; /* sent again once the coordinator is known */
            }
        }
        commit_finished(cl, c, (ferry_err_t)err, errmsg);
        return;
    }
    /* Per-partition results. */
    struct ferry_mp_reader rd = {0};
    ferry_err_t first = FERRY_ERR_NONE;
    char first_msg[FERRY_MAX_ERROR_MESSAGE + 64] = "";
    const msgpack_object_array *topics = ferry_mp_array(&rd, rh->body, "topics", 1);
    for (uint32_t ti = 0; !rd.err && ti < topics->size; ti++) {
        const msgpack_object *tm = ferry_mp_elem_map(&rd, topics, ti, "topics");
        size_t nl = 0;
        const char *name = ferry_mp_str(&rd, tm, "name", &nl, 1);
        const msgpack_object_array *parts = rd.err ? NULL : ferry_mp_array(&rd, tm, "partitions", 1);
        for (uint32_t pi = 0; !rd.err && pi < parts->size; pi++) {
            const msgpack_object *pm = ferry_mp_elem_map(&rd, parts, pi, "partitions");
            int32_t part = (int32_t)ferry_mp_int(&rd, pm, "partition", -1, 1);
            int perr = (int)ferry_mp_int(&rd, pm, "error", 0, 0);
            size_t ml = 0;
            const char *m = ferry_mp_str(&rd, pm, "error_message", &ml, 0);
            if (rd.err)
                break;
            char topic[FERRY_MAX_TOPIC_NAME + 1];
            snprintf(topic, sizeof topic, "%.*s", (int)nl, name);
            struct tp *e = grp_tpl_find(&c->parts, topic, part);
            if (perr != 0) {
                if (first == FERRY_ERR_NONE) {
                    first = (ferry_err_t)perr;
                    snprintf(first_msg, sizeof first_msg, "%s/%d: %s: %.*s", topic, (int)part, ferry_err_name(perr),
                             m ? (int)ml : 0, m ? m : "");
                }
                continue;
            }
            if (e == NULL)
                continue;
            struct tp *o = grp_tpl_find(&g->owned, topic, part);
            if (o != NULL)
                o->offset = e->offset;
            if (e->rewind) {
                pthread_mutex_lock(&cl->lock);
                struct cpart *cp = ferry_consumer_find_locked(cl, topic, part);
                if (cp != NULL)
                    cp->rewind = false;
                pthread_mutex_unlock(&cl->lock);
            }
        }
    }
    if (rd.err) {
        commit_finished(cl, c, FERRY_ERR__BAD_RESPONSE, rd.errmsg);
        return;
    }
    if (first == FERRY_ERR_NOT_COORDINATOR && now < c->deadline_ms) {
        coordinator_lost(cl, "commit: not coordinator");
        ferry_kick(cl);
        return;
    }
    if (first == FERRY_ERR_UNKNOWN_MEMBER_ID || first == FERRY_ERR_FENCED_MEMBER_EPOCH)
        g->next_hb_ms = now; /* the heartbeat learns what happened and rejoins */
    commit_finished(cl, c, first, first == FERRY_ERR_NONE ? NULL : first_msg);
}

static void send_commit(struct ferry_client *cl, struct gcommit *c, struct broker *b)
{
    struct ferry_group *g = cl->grp;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    uint32_t corr = ferry_request_begin(cl, &sb, &pk, FERRY_API_OFFSET_COMMIT);
    bool member = g->joined && g->member_id[0] != '\0';
    msgpack_pack_map(&pk, member ? 4 : 2);
    ferry_pack_key(&pk, "group_id");
    ferry_pack_str(&pk, cl->s.group_id);
    if (member) {
        ferry_pack_key(&pk, "member_id");
        ferry_pack_str(&pk, g->member_id);
        ferry_pack_key(&pk, "member_epoch");
        msgpack_pack_int32(&pk, g->member_epoch);
    }
    ferry_pack_key(&pk, "topics");
    grp_pack_tp_topics(&pk, &c->parts, PACK_COMMIT);
    if (ferry_request_send(cl, b, &sb, corr, FERRY_API_OFFSET_COMMIT, 0, on_commit, c) == 0)
        c->sent = true;
}

/* I/O thread: a commit is over (err NONE or the first error): report, and continue what waited. */
static void commit_finished(struct ferry_client *cl, struct gcommit *c, ferry_err_t err, const char *msg)
{
    struct ferry_group *g = cl->grp;
    unlink_commit(g, c);
    if (err != FERRY_ERR_NONE && err != FERRY_ERR__DESTROYED)
        ferry_log(cl, FERRY_LOG_WARNING, "group %s: commit failed: %s", cl->s.group_id, msg ? msg : ferry_err_str(err));
    switch (c->kind) {
    case COMMIT_REVOKE:
        /* Acknowledge now: drop the revoked partitions from what we own. */
        for (size_t i = 0; i < c->parts.n; i++) {
            struct tp *o = grp_tpl_find(&g->owned, c->parts.v[i].topic, c->parts.v[i].partition);
            if (o != NULL && o->revoking)
                grp_tpl_remove(&g->owned, o);
        }
        g->next_hb_ms = ferry_now_ms();
        break;
    case COMMIT_LEAVE:
        if (g->leave == LEAVE_COMMIT)
            g->leave = LEAVE_SEND;
        break;
    case COMMIT_AUTO:
        g->autocommit_inflight = false;
        break;
    default:
        break;
    }
    if (c->kind == COMMIT_APP_SYNC) {
        pthread_mutex_lock(&cl->lock);
        if (c->abandoned) {
            pthread_mutex_unlock(&cl->lock);
            grp_gcommit_free(c);
        } else {
            c->err = err;
            snprintf(c->errstr, sizeof c->errstr, "%s", msg ? msg : (err ? ferry_err_str(err) : ""));
            c->done = true;
            pthread_cond_broadcast(&cl->cond);
            pthread_mutex_unlock(&cl->lock);
        }
    } else {
        if (cl->s.commit_cb != NULL && err != FERRY_ERR__DESTROYED) {
            struct gevent *ev = grp_event_new(&c->parts);
            if (ev != NULL) {
                ev->commit = true;
                ev->err = err;
            }
            grp_event_push(cl, ev);
        }
        grp_gcommit_free(c);
    }
    ferry_kick(cl);
}

/* I/O thread: a commit of the current positions of l's partitions (those that moved), or NULL. */
static struct gcommit *commit_positions(struct ferry_client *cl, const struct tplist *l, enum commit_kind kind,
                                        bool from_list_offsets)
{
    struct gcommit *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->kind = kind;
    c->deadline_ms = ferry_now_ms() + cl->s.request_timeout_ms;
    pthread_mutex_lock(&cl->lock);
    for (size_t i = 0; i < l->n; i++) {
        const struct tp *e = &l->v[i];
        int64_t pos = e->offset;
        bool rewind = e->rewind;
        if (!from_list_offsets) {
            struct cpart *cp = ferry_consumer_find_locked(cl, e->topic, e->partition);
            if (cp == NULL || e->revoking || e->offset_fetch)
                continue;
            pos = cp->app_position;
            rewind = cp->rewind;
            if (pos < 0 || (pos == e->offset && !rewind))
                continue; /* unknown, or already committed */
        } else if (pos < 0) {
            continue;
        }
        struct tp *n = grp_tpl_add(&c->parts, e->topic, strlen(e->topic), e->partition, pos);
        if (n == NULL)
            break;
        n->rewind = rewind;
    }
    pthread_mutex_unlock(&cl->lock);
    if (c->parts.n == 0) {
        grp_gcommit_free(c);
        return NULL;
    }
    c->next = cl->grp->commits;
    cl->grp->commits = c;
    return c;
}

/* ---- reconciliation ---- */

static void send_offset_fetch(struct ferry_client *cl, struct broker *b);

/* Applies a new target set (the heartbeat's "assignment"). */
static void reconcile(struct ferry_client *cl, struct tplist *target)
{
    struct ferry_group *g = cl->grp;
    /* Revocations: owned (and not already revoking) but not in the target. */
    struct tplist revoked = {0};
    for (size_t i = 0; i < g->owned.n; i++) {
        struct tp *o = &g->owned.v[i];
        if (!o->revoking && grp_tpl_find(target, o->topic, o->partition) == NULL) {
            if (grp_tpl_add(&revoked, o->topic, strlen(o->topic), o->partition, -1) == NULL)
                break;
        }
    }
    if (revoked.n > 0) {
        ferry_log(cl, FERRY_LOG_INFO, "group %s: %zu partition(s) revoked", cl->s.group_id, revoked.n);
        fetch_stop(cl, &revoked); /* offsets now hold the positions */
        rebalance_event(cl, FERRY_REBALANCE_REVOKING, &revoked);
        struct tplist commit = {0};
        for (size_t i = 0; i < revoked.n; i++) {
            struct tp *r = &revoked.v[i];
            struct tp *o = grp_tpl_find(&g->owned, r->topic, r->partition);
            bool moved = o != NULL && !o->offset_fetch && r->offset >= 0 && (r->offset != o->offset || r->rewind);
            if (cl->s.enable_auto_commit && moved) {
                o->revoking = true;
                struct tp *e = grp_tpl_add(&commit, r->topic, strlen(r->topic), r->partition, r->offset);
                if (e != NULL)
                    e->rewind = r->rewind;
            } else if (o != NULL) {
                grp_tpl_remove(&g->owned, o);
            }
        }
        if (commit.n > 0) {
            struct gcommit *c = commit_positions(cl, &commit, COMMIT_REVOKE, true);
            if (c == NULL) { /* out of memory: acknowledge without committing */
                for (size_t i = 0; i < commit.n; i++) {
                    struct tp *o = grp_tpl_find(&g->owned, commit.v[i].topic, commit.v[i].partition);
                    if (o != NULL)
                        grp_tpl_remove(&g->owned, o);
                }
            }
        }
        grp_tpl_free(&commit);
        g->next_hb_ms = ferry_now_ms(); /* acknowledge (or keep the coordinator informed) soon */
    }
    grp_tpl_free(&revoked);

    /* Additions: in the target, not owned (or being revoked: then it simply stays). */
    struct tplist added = {0};
    for (size_t i = 0; i < target->n; i++) {
        struct tp *t = &target->v[i];
        struct tp *o = grp_tpl_find(&g->owned, t->topic, t->partition);
        if (o != NULL) {
            if (o->revoking) {
                /* Given back before the revocation finished: fetch it again from the committed offset. */
                o->revoking = false;
                o->offset_fetch = true;
                g->ofetch_inflight = false;
            }
            continue;
        }
        o = grp_tpl_add(&g->owned, t->topic, strlen(t->topic), t->partition, -1);
        if (o == NULL)
            break;
        o->offset_fetch = true;
        g->ofetch_inflight = false; /* ask again, including the new ones */
        grp_tpl_add(&added, t->topic, strlen(t->topic), t->partition, -1);
    }
    if (added.n > 0) {
        ferry_log(cl, FERRY_LOG_INFO, "group %s: %zu partition(s) assigned", cl->s.group_id, added.n);
        rebalance_event(cl, FERRY_REBALANCE_ASSIGNED, &added);
    }
    grp_tpl_free(&added);
}

struct ofetch_req {
    struct tplist parts;
};

static void on_offset_fetch(struct ferry_client *cl, struct broker *b, int err, const char *errmsg,
                            const struct ferry_response_header *rh, void *arg)
{
    (void)b;
    struct ofetch_req *req = arg;
    struct ferry_group *g = cl->grp;
    if (err == FERRY_ERR__DESTROYED || cl->stopping)
        goto out;
    g->ofetch_inflight = false;
    int64_t now = ferry_now_ms();
    if (err == 0 && rh->error != 0)
        err = rh->error, errmsg = ferry_err_str(rh->error);
    if (err != 0) {
        ferry_log(cl, FERRY_LOG_DEBUG, "group %s: OffsetFetch failed: %s", cl->s.group_id, errmsg);
        if (grp_coordinator_error(err))
            coordinator_lost(cl, errmsg);
        g->ofetch_retry_at_ms = now + cl->s.retry_backoff_ms;
        goto out;
    }
    struct ferry_mp_reader rd = {0};
    const msgpack_object_array *topics = ferry_mp_array(&rd, rh->body, "topics", 1);
    for (uint32_t ti = 0; !rd.err && ti < topics->size; ti++) {
        const msgpack_object *tm = ferry_mp_elem_map(&rd, topics, ti, "topics");
        size_t nl = 0;
        const char *name = ferry_mp_str(&rd, tm, "name", &nl, 1);
        const msgpack_object_array *parts = rd.err ? NULL : ferry_mp_array(&rd, tm, "partitions", 1);
        for (uint32_t pi = 0; !rd.err && pi < parts->size; pi++) {
            const msgpack_object *pm = ferry_mp_elem_map(&rd, parts, pi, "partitions");
            int32_t part = (int32_t)ferry_mp_int(&rd, pm, "partition", -1, 1);
            int64_t off = ferry_mp_int(&rd, pm, "offset", -1, 0);
            int perr = (int)ferry_mp_int(&rd, pm, "error", 0, 0);
            if (rd.err)
                break;
            char topic[FERRY_MAX_TOPIC_NAME + 1];
            snprintf(topic, sizeof topic, "%.*s", (int)nl, name);
            struct tp *o = grp_tpl_find(&g->owned, topic, part);
            if (o == NULL || !o->offset_fetch || grp_tpl_find(&req->parts, topic, part) == NULL)
                continue; /* revoked or reassigned meanwhile */
            ferry_log(cl, FERRY_LOG_DEBUG, "group %s: %s/%d committed offset %lld (%s)", cl->s.group_id, topic,
                      (int)part, (long long)off, ferry_err_name(perr));
            if (perr != 0 && perr != FERRY_ERR_UNKNOWN_TOPIC_OR_PARTITION) {
                g->ofetch_retry_at_ms = now + cl->s.retry_backoff_ms;
                continue;
            }
            o->offset_fetch = false;
            o->offset = off >= 0 ? off : -1;
            int64_t start = off;
            bool start_error = false;
            if (off < 0) {
                start = cl->s.auto_offset_reset == FERRY_RESET_LATEST ? FERRY_OFFSET_END : FERRY_OFFSET_BEGINNING;
                start_error = cl->s.auto_offset_reset == FERRY_RESET_ERROR;
            }
            pthread_mutex_lock(&cl->lock);
            struct cpart *cp = ferry_consumer_find_locked(cl, topic, part);
            if (cp == NULL)
                cp = ferry_consumer_add_locked(cl, topic, part, start, off >= 0 ? off : -1);
            else
                ferry_consumer_seek_locked(cl, cp, start);
            if (cp != NULL)
                cp->start_error = start_error;
            pthread_mutex_unlock(&cl->lock);
            if (cp == NULL)
                o->offset_fetch = true; /* out of memory: try again */
        }
    }
    if (rd.err) {
        ferry_log(cl, FERRY_LOG_WARNING, "group %s: bad OffsetFetch response: %s", cl->s.group_id, rd.errmsg);
        g->ofetch_retry_at_ms = now + cl->s.retry_backoff_ms;
    }
    ferry_kick(cl);
out:
    grp_tpl_free(&req->parts);
    free(req);
}

static void send_offset_fetch(struct ferry_client *cl, struct broker *b)
{
    struct ferry_group *g = cl->grp;
    struct ofetch_req *req = calloc(1, sizeof *req);
    if (req == NULL)
        return;
    for (size_t i = 0; i < g->owned.n; i++) {
        struct tp *o = &g->owned.v[i];
        if (o->offset_fetch && grp_tpl_add(&req->parts, o->topic, strlen(o->topic), o->partition, -1) == NULL)
            break;
    }
    if (req->parts.n == 0) {
        free(req);
        return;
    }
    msgpack_sbuffer sb;
    msgpack_packer pk;
    uint32_t corr = ferry_request_begin(cl, &sb, &pk, FERRY_API_OFFSET_FETCH);
    msgpack_pack_map(&pk, 2);
    ferry_pack_key(&pk, "group_id");
    ferry_pack_str(&pk, cl->s.group_id);
    ferry_pack_key(&pk, "topics");
    grp_pack_tp_topics(&pk, &req->parts, PACK_FETCH);
    if (ferry_request_send(cl, b, &sb, corr, FERRY_API_OFFSET_FETCH, 0, on_offset_fetch, req) != 0) {
        grp_tpl_free(&req->parts);
        free(req);
        return;
    }
    g->ofetch_inflight = true;
    ferry_log(cl, FERRY_LOG_DEBUG, "group %s: OffsetFetch of %zu partition(s) to broker %d", cl->s.group_id,
              req->parts.n, (int)b->id);
}

/* ---- heartbeats ---- */

/* Parses [{"topic": str, "partitions": [int]}] into l. 0, or -1 with rd set. */
static int parse_assignment(struct ferry_mp_reader *rd, const msgpack_object_array *a, struct tplist *l)
{
    for (uint32_t i = 0; !rd->err && i < a->size; i++) {
        const msgpack_object *m = ferry_mp_elem_map(rd, a, i, "assignment");
        size_t tl = 0;
        const char *t = ferry_mp_str(rd, m, "topic", &tl, 1);
        const msgpack_object_array *parts = rd->err ? NULL : ferry_mp_array(rd, m, "partitions", 1);
        if (rd->err)
            break;
        if (tl == 0 || tl > FERRY_MAX_TOPIC_NAME) {
            rd->err = FERRY_ERR_INVALID_REQUEST;
            snprintf(rd->errmsg, sizeof rd->errmsg, "assignment: bad topic name");
            break;
        }
        for (uint32_t j = 0; j < parts->size; j++) {
            const msgpack_object *p = &parts->ptr[j];
            if (p->type != MSGPACK_OBJECT_POSITIVE_INTEGER || p->via.u64 > INT32_MAX) {
                rd->err = FERRY_ERR_INVALID_REQUEST;
                snprintf(rd->errmsg, sizeof rd->errmsg, "assignment: bad partition");
                break;
            }
            if (grp_tpl_add(l, t, tl, (int32_t)p->via.u64, -1) == NULL) {
                rd->err = FERRY_ERR__NO_MEMORY;
                snprintf(rd->errmsg, sizeof rd->errmsg, "out of memory");
                break;
            }
        }
    }
    return rd->err ? -1 : 0;
}

/* The member left or must rejoin: forget id/epoch as the protocol says. */
static void member_reset(struct ferry_client *cl, bool keep_id)
{
    struct ferry_group *g = cl->grp;
    if (!keep_id)
        g->member_id[0] = '\0';
    g->member_epoch = 0;
    g->joined = false;
    g->send_sub = true;
    publish_member(cl);
}

struct hb_req {
    int32_t epoch_sent;
};

static void on_heartbeat(struct ferry_client *cl, struct broker *b, int err, const char *errmsg,
                         const struct ferry_response_header *rh, void *arg)
{
    (void)b;
    struct hb_req *req = arg;
    int32_t epoch_sent = req->epoch_sent;
    free(req);
    struct ferry_group *g = cl->grp;
    g->hb_inflight = false;
    if (err == FERRY_ERR__DESTROYED || cl->stopping)
        return;
    ferry_log(cl, FERRY_LOG_DEBUG, "group %s: heartbeat answer: %s", cl->s.group_id,
              err ? errmsg : ferry_err_name(rh->error));
    int64_t now = ferry_now_ms();
    bool leaving = epoch_sent < 0;
    char msg[FERRY_MAX_ERROR_MESSAGE + 64];
    if (err == 0 && rh->error != 0) {
        err = rh->error;
        snprintf(msg, sizeof msg, "%s: %.*s", ferry_err_name(err), rh->error_message ? (int)rh->error_message_len : 0,
                 rh->error_message ? rh->error_message : "");
        errmsg = msg;
    }
    if (leaving) {
        /* Answered or not, we are out: a lost leave is covered by the session timeout. */
        if (err != 0 && grp_coordinator_error(err) && g->leave == LEAVE_INFLIGHT && now < g->leave_deadline_ms) {
            coordinator_lost(cl, errmsg);
            g->leave = LEAVE_SEND; /* one more try at the new coordinator within the leave's budget */
            ferry_kick(cl);
            return;
        }
        member_reset(cl, cl->s.group_instance_id[0] != '\0');
        g->leave = LEAVE_NONE;
        pthread_mutex_lock(&cl->lock);
        if (g->close_requested)
            g->close_done = true;
        pthread_cond_broadcast(&cl->cond);
        pthread_mutex_unlock(&cl->lock);
        ferry_kick(cl);
        return;
    }
    if (err != 0) {
        if (grp_coordinator_error(err)) {
            coordinator_lost(cl, errmsg);
            g->next_hb_ms = now + cl->s.retry_backoff_ms;
        } else if (err == FERRY_ERR_UNKNOWN_MEMBER_ID || err == FERRY_ERR_FENCED_MEMBER_EPOCH) {
            lose_all(cl, errmsg);
            member_reset(cl, err == FERRY_ERR_FENCED_MEMBER_EPOCH || cl->s.group_instance_id[0] != '\0');
            g->next_hb_ms = now;
        } else {
            ferry_log(cl, FERRY_LOG_ERR, "group %s: heartbeat failed: %s", cl->s.group_id, errmsg);
            if (!g->joined)
                g->join_retry_at_ms = now + GROUP_JOIN_RETRY_MS;
            g->next_hb_ms = now + GROUP_JOIN_RETRY_MS;
        }
        ferry_kick(cl);
        return;
    }
    struct ferry_mp_reader rd = {0};
    size_t ml = 0;
    const char *mid = ferry_mp_str(&rd, rh->body, "member_id", &ml, 1);
    int64_t epoch = ferry_mp_int_range(&rd, rh->body, "member_epoch", 0, 1, 0, INT32_MAX);
    int64_t interval = ferry_mp_int_range(&rd, rh->body, "heartbeat_interval_ms", 0, 0, 0, 3600000);
    const msgpack_object_array *asg = rd.err ? NULL : ferry_mp_array(&rd, rh->body, "assignment", 0);
    const msgpack_object_array *resets = rd.err ? NULL : ferry_mp_array(&rd, rh->body, "resets", 0);
    struct tplist target = {0};
    if (!rd.err && (ml == 0 || ml > GROUP_MEMBER_ID_MAX)) {
        rd.err = FERRY_ERR_INVALID_REQUEST;
        snprintf(rd.errmsg, sizeof rd.errmsg, "member_id of %zu bytes", ml);
    }
    if (!rd.err && asg != NULL)
        parse_assignment(&rd, asg, &target);
    if (rd.err) {
        ferry_log(cl, FERRY_LOG_ERR, "group %s: bad heartbeat response: %s", cl->s.group_id, rd.errmsg);
        grp_tpl_free(&target);
        g->next_hb_ms = now + cl->s.retry_backoff_ms;
        return;
    }
    g->coord_backoff_ms = cl->s.retry_backoff_ms;
    bool was_joined = g->joined;
    snprintf(g->member_id, sizeof g->member_id, "%.*s", (int)ml, mid);
    g->member_epoch = (int32_t)epoch;
    g->joined = true;
    if (epoch_sent == 0 || g->send_sub)
        g->send_sub = false;
    if (interval > 0)
        g->hb_interval_ms = interval;
    /* The broker's interval wins, also over the one this heartbeat was scheduled with. */
    int64_t next = now + (g->hb_interval_ms > 0 ? g->hb_interval_ms : cl->s.heartbeat_interval_ms);
    if (g->next_hb_ms <= now || g->next_hb_ms > next)
        g->next_hb_ms = next;
    publish_member(cl);
    if (!was_joined)
        ferry_log(cl, FERRY_LOG_INFO, "group %s: joined as %s (epoch %d)", cl->s.group_id, g->member_id,
                  (int)g->member_epoch);
    if (asg != NULL)
        reconcile(cl, &target);
    grp_tpl_free(&target);
    /* Offset resets on an active group (ResetOffsets): seek before the next fetch. */
    for (uint32_t i = 0; resets != NULL && i < resets->size; i++) {
        struct ferry_mp_reader r2 = {0};
        const msgpack_object *m = ferry_mp_elem_map(&r2, resets, i, "resets");
        size_t tl = 0;
        const char *t = ferry_mp_str(&r2, m, "topic", &tl, 1);
        int32_t part = (int32_t)ferry_mp_int(&r2, m, "partition", -1, 1);
        int64_t off = ferry_mp_int(&r2, m, "offset", -1, 1);
        if (r2.err || off < 0 || tl > FERRY_MAX_TOPIC_NAME)
            continue;
        char topic[FERRY_MAX_TOPIC_NAME + 1];
        snprintf(topic, sizeof topic, "%.*s", (int)tl, t);
        struct tp *o = grp_tpl_find(&g->owned, topic, part);
        if (o == NULL || o->revoking)
            continue;
        o->offset = off;
        if (o->offset_fetch)
            continue; /* the OffsetFetch in flight (or next) reads the new value */
        pthread_mutex_lock(&cl->lock);
        struct cpart *cp = ferry_consumer_find_locked(cl, topic, part);
        if (cp != NULL)
            ferry_consumer_seek_locked(cl, cp, off);
        pthread_mutex_unlock(&cl->lock);
        ferry_log(cl, FERRY_LOG_INFO, "group %s: %s/%d reset to %lld by the coordinator", cl->s.group_id, topic,
                  (int)part, (long long)off);
    }
    ferry_kick(cl);
}

static void send_heartbeat(struct ferry_client *cl, struct broker *b, int32_t epoch, int64_t now)
{
    struct ferry_group *g = cl->grp;
    struct hb_req *req = malloc(sizeof *req);
    if (req == NULL)
        return;
    req->epoch_sent = epoch;
    bool join = epoch == 0;
    bool with_sub = join || g->send_sub;
    bool static_member = cl->s.group_instance_id[0] != '\0';
    msgpack_sbuffer sb;
    msgpack_packer pk;
    uint32_t corr = ferry_request_begin(cl, &sb, &pk, FERRY_API_GROUP_HEARTBEAT);
    size_t fields = 2 + (g->member_id[0] != '\0') + static_member + with_sub + (epoch > 0) + (join ? 2 : 0);
    msgpack_pack_map(&pk, fields);
    ferry_pack_key(&pk, "group_id");
    ferry_pack_str(&pk, cl->s.group_id);
    if (g->member_id[0] != '\0') {
        ferry_pack_key(&pk, "member_id");
        ferry_pack_str(&pk, g->member_id);
    }
    if (static_member) {
        ferry_pack_key(&pk, "instance_id");
        ferry_pack_str(&pk, cl->s.group_instance_id);
    }
    ferry_pack_key(&pk, "member_epoch");
    msgpack_pack_int32(&pk, epoch);
    if (with_sub) {
        ferry_pack_key(&pk, "subscribed_topics");
        msgpack_pack_array(&pk, g->io_nsub);
        for (size_t i = 0; i < g->io_nsub; i++)
            ferry_pack_str(&pk, g->io_sub[i]);
    }
    if (epoch > 0) {
        ferry_pack_key(&pk, "owned"); /* revoking ones included until their commit is done */
        grp_pack_tp_topics(&pk, &g->owned, PACK_OWNED);
    }
    if (join) {
        ferry_pack_key(&pk, "session_timeout_ms");
        msgpack_pack_int64(&pk, cl->s.session_timeout_ms);
        ferry_pack_key(&pk, "rebalance_timeout_ms");
        msgpack_pack_int64(&pk, cl->s.max_poll_interval_ms);
    }
    if (ferry_request_send(cl, b, &sb, corr, FERRY_API_GROUP_HEARTBEAT, 0, on_heartbeat, req) != 0) {
        free(req);
        return;
    }
    g->hb_inflight = true;
    g->next_hb_ms = now + (g->hb_interval_ms > 0 ? g->hb_interval_ms : cl->s.heartbeat_interval_ms);
    ferry_log(cl, FERRY_LOG_DEBUG, "group %s: heartbeat epoch %d to broker %d (owned %zu)", cl->s.group_id,
              (int)epoch, (int)b->id, g->owned.n);
}

/* ---- the service pass ---- */

void ferry_group_service(struct ferry_client *cl, int64_t now)
{
    pthread_mutex_lock(&cl->lock);
    struct ferry_group *g = cl->grp;
    if (g == NULL) {
        pthread_mutex_unlock(&cl->lock);
        return;
    }
    /* Take new requests and the shared flags. */
    while (g->commits_in) {
        struct gcommit *c = g->commits_in;
        g->commits_in = c->next;
        c->next = g->commits;
        g->commits = c;
    }
    while (g->ops_in) {
        struct gop *op = g->ops_in;
        g->ops_in = op->next;
        op->next = g->ops;
        g->ops = op;
    }
    if (g->io_sub_epoch != g->sub_epoch) {
        char **copy = g->nsub ? calloc(g->nsub, sizeof *copy) : NULL;
        size_t n = 0;
        for (; copy && n < g->nsub; n++)
            if ((copy[n] = strdup(g->sub[n])) == NULL)
                break;
        if (g->nsub == 0 || (copy != NULL && n == g->nsub)) {
            grp_strv_free(g->io_sub, g->io_nsub);
            g->io_sub = copy;
            g->io_nsub = n;
            g->io_sub_epoch = g->sub_epoch;
            g->send_sub = true;
        } else {
            grp_strv_free(copy, n); /* out of memory: next pass */
        }
    }
    g->io_subscribed = g->subscribed;
    g->io_close = g->close_requested;
    bool expired = false;
    if (g->io_subscribed && !g->poll_expired && g->joined && g->in_poll == 0 &&
        now - g->last_poll_ms > cl->s.max_poll_interval_ms) {
        g->poll_expired = true;
        expired = true;
    }
    g->io_expired = g->poll_expired;
    pthread_mutex_unlock(&cl->lock);

    if (cl->stopping)
        return;
    if (g->ops != NULL)
        grp_gops_service(cl, now);
    if (cl->s.group_id[0] == '\0')
        return;

    if (expired) {
        ferry_log(cl, FERRY_LOG_WARNING,
                  "group %s: the application did not poll for max.poll.interval.ms (%lld ms): leaving the group",
                  cl->s.group_id, (long long)cl->s.max_poll_interval_ms);
        lose_all(cl, "processing deadline (max.poll.interval.ms) expired");
    }

    bool want_member = g->io_subscribed && !g->io_expired && !g->io_close;
    bool is_member = g->joined || g->member_epoch > 0;
    /* Leaving: unsubscribe, close, or the processing deadline. */
    if (!want_member && is_member && g->leave == LEAVE_NONE) {
        if (!expired && !g->io_expired && cl->s.enable_auto_commit &&
            commit_positions(cl, &g->owned, COMMIT_LEAVE, false) != NULL) {
            g->leave = LEAVE_COMMIT;
        } else {
            g->leave = LEAVE_SEND;
        }
        g->leave_deadline_ms = now + cl->s.request_timeout_ms;
    }
    if (g->leave == LEAVE_SEND && !g->hb_inflight) {
        /* Stop fetching and hand everything back before telling the coordinator. */
        if (g->owned.n > 0) {
            fetch_stop(cl, &g->owned);
            rebalance_event(cl, FERRY_REBALANCE_REVOKING, &g->owned);
            grp_tpl_free(&g->owned);
        }
        struct broker *b = member_coordinator(cl, now);
        if (b != NULL) {
            bool temporary = cl->s.group_instance_id[0] != '\0' && g->io_close;
            send_heartbeat(cl, b, temporary ? -2 : -1, now);
            if (g->hb_inflight)
                g->leave = LEAVE_INFLIGHT;
        } else if (now >= g->leave_deadline_ms) {
            /* No coordinator within the budget: the session timeout removes us. */
            member_reset(cl, cl->s.group_instance_id[0] != '\0');
            g->leave = LEAVE_NONE;
            pthread_mutex_lock(&cl->lock);
            if (g->close_requested)
                g->close_done = true;
            pthread_cond_broadcast(&cl->cond);
            pthread_mutex_unlock(&cl->lock);
        }
    }
    if (!want_member && !is_member && g->leave == LEAVE_NONE && g->io_close) {
        pthread_mutex_lock(&cl->lock);
        if (!g->close_done) {
            g->close_done = true;
            pthread_cond_broadcast(&cl->cond);
        }
        pthread_mutex_unlock(&cl->lock);
    }

    bool need_coord = want_member || g->commits != NULL || g->leave != LEAVE_NONE;
    struct broker *coord = need_coord ? member_coordinator(cl, now) : NULL;
    if (coord == NULL)
        return;

    /* Heartbeat: join, acknowledge, or keep alive. */
    if (want_member && g->leave == LEAVE_NONE && !g->hb_inflight) {
        if (!g->joined && g->member_epoch == 0) {
            if (now >= g->join_retry_at_ms)
                send_heartbeat(cl, coord, 0, now);
        } else if (now >= g->next_hb_ms || g->send_sub) {
            send_heartbeat(cl, coord, g->member_epoch, now);
        }
    }
    /* Start offsets of newly assigned partitions. */
    if (g->joined && !g->ofetch_inflight && now >= g->ofetch_retry_at_ms) {
        bool any = false;
        for (size_t i = 0; i < g->owned.n && !any; i++)
            any = g->owned.v[i].offset_fetch;
        if (any)
            send_offset_fetch(cl, coord);
    }
    /* Auto-commit. */
    if (want_member && g->joined && cl->s.enable_auto_commit && g->leave == LEAVE_NONE && !g->autocommit_inflight) {
        if (g->next_autocommit_ms == 0 || g->next_autocommit_ms > now + cl->s.auto_commit_interval_ms)
            g->next_autocommit_ms = now + cl->s.auto_commit_interval_ms;
        if (now >= g->next_autocommit_ms) {
            g->next_autocommit_ms = now + cl->s.auto_commit_interval_ms;
            if (commit_positions(cl, &g->owned, COMMIT_AUTO, false) != NULL)
                g->autocommit_inflight = true;
        }
    }
    /* Commits. */
    struct gcommit *next;
    for (struct gcommit *c = g->commits; c; c = next) {
        next = c->next;
        if (c->sent)
            continue;
        if (now >= c->deadline_ms) {
            commit_finished(cl, c, FERRY_ERR__TIMED_OUT, "commit timed out waiting for the coordinator");
            continue;
        }
        send_commit(cl, c, coord);
    }
}

