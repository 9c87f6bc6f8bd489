/* group_api.c: the consumer-group calls of application threads: subscribe, commit, position, close. */
#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "group_int.h"

/* ---- application API ---- */

ferry_err_t grp_group_check(ferry_client_t *cl, bool need_group)
{
    if (cl == NULL)
        return FERRY_ERR__INVALID_ARG;
    if (cl->type != FERRY_CONSUMER)
        return FERRY_ERR__WRONG_CLIENT_TYPE;
    if (need_group && cl->s.group_id[0] == '\0')
        return FERRY_ERR_INVALID_GROUP_ID;
    return FERRY_ERR_NONE;
}

FERRY_API ferry_err_t ferry_subscribe(ferry_client_t *cl, const char *const *topics, size_t n)
{
    ferry_err_t err = grp_group_check(cl, true);
    if (err != FERRY_ERR_NONE)
        return err;
    if (n == 0 || topics == NULL || n > FERRY_MAX_SUBSCRIBED_TOPICS)
        return FERRY_ERR__INVALID_ARG;
    for (size_t i = 0; i < n; i++)
        if (topics[i] == NULL || topics[i][0] == '\0' || strlen(topics[i]) > FERRY_MAX_TOPIC_NAME)
            return FERRY_ERR__INVALID_ARG;
    char **copy = calloc(n, sizeof *copy);
    if (copy == NULL)
        return FERRY_ERR__NO_MEMORY;
    for (size_t i = 0; i < n; i++) {
        if ((copy[i] = strdup(topics[i])) == NULL) {
            grp_strv_free(copy, i);
            return FERRY_ERR__NO_MEMORY;
        }
    }
    pthread_mutex_lock(&cl->lock);
    struct ferry_group *g = grp_group_get_locked(cl);
    if (cl->closing || cl->closed || g == NULL || (g->close_requested && !g->close_done)) {
        pthread_mutex_unlock(&cl->lock);
        grp_strv_free(copy, n);
        return g == NULL ? FERRY_ERR__NO_MEMORY : FERRY_ERR__DESTROYED;
    }
    for (struct cpart *cp = cl->asg; cp; cp = cp->next) {
        if (!cp->removed && !cp->group_owned) {
            pthread_mutex_unlock(&cl->lock);
            grp_strv_free(copy, n);
            return FERRY_ERR__INVALID_ARG; /* ferry_assign'ed: unassign first */
        }
    }
    grp_strv_free(g->sub, g->nsub);
    g->sub = copy;
    g->nsub = n;
    g->sub_epoch++;
    g->subscribed = true;
    g->close_requested = false;
    g->close_done = false;
    g->last_poll_ms = ferry_now_ms();
    ferry_wake_locked(cl);
    pthread_mutex_unlock(&cl->lock);
    return FERRY_ERR_NONE;
}

FERRY_API ferry_err_t ferry_unsubscribe(ferry_client_t *cl)
{
    ferry_err_t err = grp_group_check(cl, false);
    if (err != FERRY_ERR_NONE)
        return err;
    pthread_mutex_lock(&cl->lock);
    if (cl->grp != NULL && cl->grp->subscribed) {
        cl->grp->subscribed = false;
        cl->grp->sub_epoch++;
        ferry_wake_locked(cl);
    }
    pthread_mutex_unlock(&cl->lock);
    return FERRY_ERR_NONE;
}

void ferry_group_poll_begin(struct ferry_client *cl)
{
    pthread_mutex_lock(&cl->lock);
    struct ferry_group *g = cl->grp;
    if (g != NULL) {
        g->in_poll++;
        g->last_poll_ms = ferry_now_ms();
        if (g->poll_expired) {
            g->poll_expired = false; /* rejoin */
            ferry_wake_locked(cl);
        }
    }
    pthread_mutex_unlock(&cl->lock);
    ferry_group_serve(cl);
}

void ferry_group_poll_end(struct ferry_client *cl)
{
    pthread_mutex_lock(&cl->lock);
    if (cl->grp != NULL) {
        cl->grp->in_poll--;
        cl->grp->last_poll_ms = ferry_now_ms();
    }
    pthread_mutex_unlock(&cl->lock);
}

void ferry_group_serve(struct ferry_client *cl)
{
    pthread_mutex_lock(&cl->lock);
    struct gevent *ev = cl->grp ? cl->grp->events : NULL;
    if (cl->grp)
        cl->grp->events = cl->grp->events_tail = NULL;
    pthread_mutex_unlock(&cl->lock);
    while (ev) {
        struct gevent *next = ev->next;
        if (ev->commit) {
            if (cl->s.commit_cb)
                cl->s.commit_cb(cl, ev->err, ev->parts, ev->n, cl->opaque);
        } else if (cl->s.rebalance_cb) {
            cl->s.rebalance_cb(cl, ev->rb, ev->parts, ev->n, cl->opaque);
        }
        free(ev);
        ev = next;
    }
}

FERRY_API ferry_err_t ferry_consumer_extend_deadline(ferry_client_t *cl)
{
    ferry_err_t err = grp_group_check(cl, false);
    if (err != FERRY_ERR_NONE)
        return err;
    pthread_mutex_lock(&cl->lock);
    if (cl->grp != NULL)
        cl->grp->last_poll_ms = ferry_now_ms();
    pthread_mutex_unlock(&cl->lock);
    return FERRY_ERR_NONE;
}

FERRY_API ferry_err_t ferry_consumer_close(ferry_client_t *cl, int timeout_ms)
{
    ferry_err_t err = grp_group_check(cl, false);
    if (err != FERRY_ERR_NONE)
        return err;
    int64_t deadline = ferry_deadline(timeout_ms);
    pthread_mutex_lock(&cl->lock);
    struct ferry_group *g = cl->grp;
    if (g == NULL || cl->closing || cl->closed || (!g->subscribed && !g->close_requested)) {
        pthread_mutex_unlock(&cl->lock);
        return FERRY_ERR_NONE;
    }
    g->close_requested = true;
    g->subscribed = false;
    g->sub_epoch++;
    ferry_wake_locked(cl);
    while (!g->close_done && !cl->closing && !cl->closed) {
        if (g->events != NULL) {
            pthread_mutex_unlock(&cl->lock);
            ferry_group_serve(cl);
            pthread_mutex_lock(&cl->lock);
            continue;
        }
        if (ferry_cond_wait_until(cl, deadline) == ETIMEDOUT) {
            err = FERRY_ERR__TIMED_OUT;
            break;
        }
    }
    pthread_mutex_unlock(&cl->lock);
    ferry_group_serve(cl);
    return err;
}

FERRY_API ferry_err_t ferry_group_member(ferry_client_t *cl, char *buf, size_t buf_size, int32_t *epoch)
{
    ferry_err_t err = grp_group_check(cl, false);
    if (err != FERRY_ERR_NONE)
        return err;
    pthread_mutex_lock(&cl->lock);
    if (buf != NULL)
        ferry_strlcpy(buf, cl->grp ? cl->grp->pub_member_id : "", buf_size);
    if (epoch != NULL)
        *epoch = cl->grp ? cl->grp->pub_epoch : 0;
    pthread_mutex_unlock(&cl->lock);
    return FERRY_ERR_NONE;
}

FERRY_API void ferry_topic_partitions_destroy(ferry_topic_partition_t *parts)
{
    free(parts);
}

FERRY_API ferry_err_t ferry_assignment(ferry_client_t *cl, ferry_topic_partition_t **parts, size_t *n)
{
    ferry_err_t err = grp_group_check(cl, false);
    if (err != FERRY_ERR_NONE)
        return err;
    if (parts == NULL || n == NULL)
        return FERRY_ERR__INVALID_ARG;
    *parts = NULL;
    *n = 0;
    pthread_mutex_lock(&cl->lock);
    size_t count = 0, bytes = 0;
    for (struct cpart *cp = cl->asg; cp; cp = cp->next) {
        if (!cp->removed) {
            count++;
            bytes += strlen(cp->topic) + 1;
        }
    }
    ferry_topic_partition_t *v = malloc(count * sizeof *v + bytes + 1);
    if (v == NULL) {
        pthread_mutex_unlock(&cl->lock);
        return FERRY_ERR__NO_MEMORY;
    }
    char *p = (char *)&v[count];
    size_t i = 0;
    for (struct cpart *cp = cl->asg; cp; cp = cp->next) {
        if (cp->removed)
            continue;
        size_t tl = strlen(cp->topic) + 1;
        memcpy(p, cp->topic, tl);
        v[i++] = (ferry_topic_partition_t){.topic = p, .partition = cp->partition, .offset = cp->app_position};
        p += tl;
    }
    pthread_mutex_unlock(&cl->lock);
    *parts = v;
    *n = count;
    return FERRY_ERR_NONE;
}

FERRY_API ferry_err_t ferry_position(ferry_client_t *cl, ferry_topic_partition_t *parts, size_t n)
{
    ferry_err_t err = grp_group_check(cl, false);
    if (err != FERRY_ERR_NONE)
        return err;
    if (n > 0 && parts == NULL)
        return FERRY_ERR__INVALID_ARG;
    pthread_mutex_lock(&cl->lock);
    for (size_t i = 0; i < n; i++) {
        struct cpart *cp = parts[i].topic ? ferry_consumer_find_locked(cl, parts[i].topic, parts[i].partition) : NULL;
        parts[i].offset = cp ? cp->app_position : -1;
    }
    pthread_mutex_unlock(&cl->lock);
    return FERRY_ERR_NONE;
}

/* Builds a commit request from the application's arguments (NULL/0 = every owned position). */
static ferry_err_t commit_build(struct ferry_client *cl, const ferry_topic_partition_t *offsets, size_t n,
                                enum commit_kind kind, struct gcommit **out)
{
    *out = NULL;
    if (n > FERRY_MAX_ARRAY_LEN || (n > 0 && offsets == NULL))
        return FERRY_ERR__INVALID_ARG;
    for (size_t i = 0; i < n; i++)
        if (offsets[i].topic == NULL || offsets[i].topic[0] == '\0' || strlen(offsets[i].topic) > FERRY_MAX_TOPIC_NAME ||
            offsets[i].partition < 0 || offsets[i].offset < 0)
            return FERRY_ERR__INVALID_ARG;
    struct gcommit *c = calloc(1, sizeof *c);
    if (c == NULL)
        return FERRY_ERR__NO_MEMORY;
    c->kind = kind;
    pthread_mutex_lock(&cl->lock);
    if (n > 0) {
        for (size_t i = 0; i < n; i++) {
            struct tp *e = grp_tpl_add(&c->parts, offsets[i].topic, strlen(offsets[i].topic), offsets[i].partition,
                                   offsets[i].offset);
            if (e == NULL)
                goto oom;
            struct cpart *cp = ferry_consumer_find_locked(cl, e->topic, e->partition);
            e->rewind = cp != NULL && cp->rewind;
        }
    } else {
        for (struct cpart *cp = cl->asg; cp; cp = cp->next) {
            if (cp->removed || cp->app_position < 0)
                continue;
            struct tp *e = grp_tpl_add(&c->parts, cp->topic, strlen(cp->topic), cp->partition, cp->app_position);
            if (e == NULL)
                goto oom;
            e->rewind = cp->rewind;
        }
    }
    pthread_mutex_unlock(&cl->lock);
    if (c->parts.n == 0) {
        grp_gcommit_free(c);
        return FERRY_ERR_NONE; /* nothing to commit */
    }
    *out = c;
    return FERRY_ERR_NONE;
oom:
    pthread_mutex_unlock(&cl->lock);
    grp_gcommit_free(c);
    return FERRY_ERR__NO_MEMORY;
}

/* Hands c to the I/O thread (cl->lock held). */
static ferry_err_t commit_submit_locked(struct ferry_client *cl, struct gcommit *c)
{
    struct ferry_group *g = grp_group_get_locked(cl);
    if (g == NULL)
        return FERRY_ERR__NO_MEMORY;
    if (cl->closing || cl->closed)
        return FERRY_ERR__DESTROYED;
    c->next = g->commits_in;
    g->commits_in = c;
    ferry_wake_locked(cl);
    return FERRY_ERR_NONE;
}

FERRY_API ferry_err_t ferry_commit_sync(ferry_client_t *cl, const ferry_topic_partition_t *offsets, size_t n,
                                        int timeout_ms)
{
    ferry_err_t err = grp_group_check(cl, true);
    if (err != FERRY_ERR_NONE)
        return err;
    struct gcommit *c;
    err = commit_build(cl, offsets, n, COMMIT_APP_SYNC, &c);
    if (err != FERRY_ERR_NONE || c == NULL)
        return err;
    int64_t deadline = ferry_deadline(timeout_ms);
    c->deadline_ms = deadline < 0 ? INT64_MAX : deadline;
    pthread_mutex_lock(&cl->lock);
    err = commit_submit_locked(cl, c);
    if (err != FERRY_ERR_NONE) {
        pthread_mutex_unlock(&cl->lock);
        grp_gcommit_free(c);
        return err;
    }
    while (!c->done) {
        if (cl->closing || cl->closed || (ferry_cond_wait_until(cl, deadline) == ETIMEDOUT && !c->done)) {
            c->abandoned = true; /* the I/O thread (or destroy) frees it */
            pthread_mutex_unlock(&cl->lock);
            return cl->closing || cl->closed ? FERRY_ERR__DESTROYED : FERRY_ERR__TIMED_OUT;
        }
    }
    pthread_mutex_unlock(&cl->lock);
    err = c->err;
    grp_gcommit_free(c);
    return err;
}

FERRY_API ferry_err_t ferry_commit_async(ferry_client_t *cl, const ferry_topic_partition_t *offsets, size_t n)
{
    ferry_err_t err = grp_group_check(cl, true);
    if (err != FERRY_ERR_NONE)
        return err;
    struct gcommit *c;
    err = commit_build(cl, offsets, n, COMMIT_APP_ASYNC, &c);
    if (err != FERRY_ERR_NONE || c == NULL)
        return err;
    c->deadline_ms = ferry_now_ms() + cl->s.request_timeout_ms;
    pthread_mutex_lock(&cl->lock);
    err = commit_submit_locked(cl, c);
    pthread_mutex_unlock(&cl->lock);
    if (err != FERRY_ERR_NONE)
        grp_gcommit_free(c);
    return err;
}

