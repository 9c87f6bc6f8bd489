/* fetch.c: Fetch (api 5): read durable batches, long-polling until min_bytes or max_wait_ms. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ferry_errors.h"
#include "cluster/cluster.h"
#include "handlers/handlers.h"
#include "logging.h"

/*
 * A fetch is evaluated when it arrives; if fewer than min_bytes are available (and no partition
 * has an error) it parks: one watch per partition (woken when its durable offset advances) and one
 * timer for max_wait_ms. A wake-up re-arms the timer at 0 ms, so every re-evaluation runs from the
 * timer callback, never from inside a partition's notification loop. The answer is built from the
 * reads of the evaluation that satisfies it (or the last one, at the deadline).
 */

struct fetch_state;

struct fetch_part {
    struct ferryd_watch watch;
    struct fetch_state *st;
    int64_t partition;
    int64_t offset;
    int64_t max_bytes;
    /* result of the last evaluation */
    int error;
    char errmsg[128];
    int64_t high_watermark;
    int64_t log_start_offset;
    uint8_t *records; /* malloc'd by ferry_log_read */
    size_t records_len;
};

struct fetch_topic {
    char *name;
    size_t name_len;
    uint32_t nparts;
    struct fetch_part *parts;
};

struct fetch_state {
    struct ferryd_req *req; /* NULL once answered or dropped */
    struct ferryd *b;
    int64_t min_bytes;
    int64_t max_bytes;
    uint64_t deadline; /* uv_now() value after which we answer with what there is */
    uint32_t ntopics;
    struct fetch_topic *topics;
    uv_timer_t timer;
    int timer_init;
};

static void clear_results(struct fetch_state *st)
{
    for (uint32_t i = 0; i < st->ntopics; i++) {
        for (uint32_t k = 0; k < st->topics[i].nparts; k++) {
            struct fetch_part *fp = &st->topics[i].parts[k];
            free(fp->records);
            fp->records = NULL;
            fp->records_len = 0;
            fp->error = 0;
            fp->errmsg[0] = '\0';
        }
    }
}

static void state_free(struct fetch_state *st)
{
    clear_results(st);
    for (uint32_t i = 0; i < st->ntopics; i++) {
        free(st->topics[i].parts);
        free(st->topics[i].name);
    }
    free(st->topics);
    free(st);
}

static void on_timer_closed(uv_handle_t *h)
{
    state_free(h->data);
}

/* Unregisters everything; frees the state (after the timer closes, if it was opened). */
static void release(struct fetch_state *st)
{
    for (uint32_t i = 0; i < st->ntopics; i++)
        for (uint32_t k = 0; k < st->topics[i].nparts; k++)
            ferryd_partition_unwatch(&st->topics[i].parts[k].watch);
    if (st->timer_init)
        uv_close((uv_handle_t *)&st->timer, on_timer_closed);
    else
        state_free(st);
}

/* Reads every partition into its result. Returns the bytes read; *any_error is set if one failed. */
static size_t read_all(struct fetch_state *st, int *any_error)
{
    size_t total = 0;
    size_t budget = (size_t)st->max_bytes;
    *any_error = 0;
    clear_results(st);
    for (uint32_t i = 0; i < st->ntopics; i++) {
        struct fetch_topic *t = &st->topics[i];
        struct ferryd_topic *topic = ferryd_topics_find(st->b->topics, t->name, t->name_len);
        for (uint32_t k = 0; k < t->nparts; k++) {
            struct fetch_part *fp = &t->parts[k];
            struct ferryd_partition *p = topic ? ferryd_topic_partition(topic, fp->partition) : NULL;
            fp->high_watermark = fp->log_start_offset = -1;
            if (p == NULL) { /* in a cluster: NOT_LEADER when the partition lives on other brokers */
                int64_t leader;
                fp->error = FERRY_ERR_UNKNOWN_TOPIC_OR_PARTITION;
                snprintf(fp->errmsg, sizeof(fp->errmsg), topic ? "no such partition" : "no such topic");
                if (topic != NULL)
                    fp->error = ferryd_cluster_check_absent(st->b->cluster, topic->name, strlen(topic->name),
                                                            fp->partition, &leader, fp->errmsg, sizeof(fp->errmsg));
                *any_error = 1;
                continue;
            }
            int64_t leader;
            int nl = ferryd_cluster_check_leader(st->b->cluster, p, &leader, fp->errmsg, sizeof(fp->errmsg));
            if (nl != 0) {
                fp->error = nl; /* the message names leader_id */
                *any_error = 1;
                continue;
            }
            int64_t start = ferry_log_start_offset(p->log);
            int64_t end = ferry_log_end_offset(p->log);
            fp->high_watermark = ferryd_partition_high_watermark(p);
            fp->log_start_offset = start;
            if (fp->offset < start || fp->offset > end) {
                fp->error = FERRY_ERR_OFFSET_OUT_OF_RANGE;
                snprintf(fp->errmsg, sizeof(fp->errmsg), "offset %lld outside [%lld, %lld]", (long long)fp->offset,
                         (long long)start, (long long)end);
                *any_error = 1;
                continue;
            }
            if (fp->offset >= fp->high_watermark || budget == 0)
                continue;
            size_t want = fp->max_bytes > 0 && (size_t)fp->max_bytes < budget ? (size_t)fp->max_bytes : budget;
            int rc = ferry_log_read(p->log, fp->offset, fp->high_watermark, want, &fp->records, &fp->records_len,
                                    fp->errmsg, sizeof(fp->errmsg));
            if (rc != 0) {
                fp->error = rc;
                fp->records = NULL;
                fp->records_len = 0;
                *any_error = 1;
                if (rc == FERRY_ERR_STORAGE_ERROR)
                    LOG_ERROR("fetch from %s: %s", p->label, fp->errmsg);
                continue;
            }
            total += fp->records_len;
            budget = fp->records_len >= budget ? 0 : budget - fp->records_len;
        }
    }
    return total;
}

static void reply(struct fetch_state *st)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    struct ferryd_req *req = st->req;
    st->req = NULL;
    req->abort = NULL;
    ferryd_resp_begin(req, &sb, &pk);
    msgpack_pack_map(&pk, 1);
    ferry_pack_key(&pk, "topics");
    msgpack_pack_array(&pk, st->ntopics);
    for (uint32_t i = 0; i < st->ntopics; i++) {
        const struct fetch_topic *t = &st->topics[i];
        msgpack_pack_map(&pk, 2);
        ferry_pack_key(&pk, "name");
        ferry_pack_strn(&pk, t->name, t->name_len);
        ferry_pack_key(&pk, "partitions");
        msgpack_pack_array(&pk, t->nparts);
        for (uint32_t k = 0; k < t->nparts; k++) {
            const struct fetch_part *fp = &t->parts[k];
            msgpack_pack_map(&pk, 6);
            ferry_pack_key(&pk, "partition");
            msgpack_pack_int64(&pk, fp->partition);
            ferry_pack_key(&pk, "error");
            msgpack_pack_int(&pk, fp->error);
            ferry_pack_key(&pk, "error_message");
            ferryd_pack_errmsg(&pk, fp->error ? fp->errmsg : NULL);
            ferry_pack_key(&pk, "high_watermark");
            msgpack_pack_int64(&pk, fp->high_watermark);
            ferry_pack_key(&pk, "log_start_offset");
            msgpack_pack_int64(&pk, fp->log_start_offset);
            ferry_pack_key(&pk, "records");
            ferry_pack_bin(&pk, fp->records_len ? fp->records : (const uint8_t *)"", fp->records_len);
        }
    }
    ferryd_req_reply(req, &sb);
}

static void on_timer(uv_timer_t *timer);

/* Answers if satisfied (or final); otherwise parks until a wake-up or the deadline. */
static void evaluate(struct fetch_state *st, int final)
{
    int any_error;
    size_t got = read_all(st, &any_error);
    if (final || any_error || (int64_t)got >= st->min_bytes) {
        reply(st);
        release(st);
        return;
    }
    clear_results(st);
    struct ferryd_topics *reg = st->b->topics;
    for (uint32_t i = 0; i < st->ntopics; i++) {
        struct fetch_topic *t = &st->topics[i];
        struct ferryd_topic *topic = ferryd_topics_find(reg, t->name, t->name_len);
        for (uint32_t k = 0; k < t->nparts; k++) {
            struct fetch_part *fp = &t->parts[k];
            struct ferryd_partition *p = topic ? ferryd_topic_partition(topic, fp->partition) : NULL;
            if (p != NULL && fp->watch.p == NULL)
                ferryd_partition_watch(p, &fp->watch);
        }
    }
    if (!st->timer_init) {
        uv_timer_init(st->b->loop, &st->timer);
        st->timer.data = st;
        st->timer_init = 1;
    }
    uint64_t now = uv_now(st->b->loop);
    uv_timer_start(&st->timer, on_timer, st->deadline > now ? st->deadline - now : 0, 0);
}

static void on_timer(uv_timer_t *timer)
{
    struct fetch_state *st = timer->data;
    if (st->req == NULL)
        return;
    evaluate(st, uv_now(st->b->loop) >= st->deadline);
}

static void on_wake(struct ferryd_watch *w)
{
    struct fetch_part *fp = (struct fetch_part *)(void *)((char *)w - offsetof(struct fetch_part, watch));
    struct fetch_state *st = fp->st;
    if (st->req != NULL && st->timer_init)
        uv_timer_start(&st->timer, on_timer, 0, 0);
}

/* Connection closed (drop) or broker stopping (answer with what there is now). */
static void on_abort(struct ferryd_req *req)
{
    struct fetch_state *st = req->state;
    if (req->client == NULL) {
        st->req = NULL;
        ferryd_req_drop(req);
        release(st);
        return;
    }
    evaluate(st, 1);
}

void ferryd_handle_fetch(struct ferryd_req *req, const msgpack_object *body)
{
    struct ferryd *b = req->broker;
    struct ferry_mp_reader rd = {0};
    size_t len;

    int64_t max_wait = ferry_mp_int_range(&rd, body, "max_wait_ms", 0, 0, 0, INT32_MAX);
    int64_t min_bytes = ferry_mp_int_range(&rd, body, "min_bytes", 1, 0, 0, INT32_MAX);
    int64_t max_bytes = ferry_mp_int_range(&rd, body, "max_bytes", FERRY_MAX_FETCH_BYTES, 0, 1, INT32_MAX);
    const msgpack_object_array *topics = ferry_mp_array(&rd, body, "topics", 1);
    for (uint32_t i = 0; !rd.err && i < topics->size; i++) {
        const msgpack_object *tm = ferry_mp_elem_map(&rd, topics, i, "topics");
        const msgpack_object_array *parts = tm ? ferry_mp_array(&rd, tm, "partitions", 1) : NULL;
        if (tm != NULL)
            ferry_mp_str(&rd, tm, "name", &len, 1);
        for (uint32_t k = 0; !rd.err && parts != NULL && k < parts->size; k++) {
            const msgpack_object *pm = ferry_mp_elem_map(&rd, parts, k, "partitions");
            if (pm == NULL)
                break;
            ferry_mp_int_range(&rd, pm, "partition", 0, 1, 0, INT32_MAX);
            ferry_mp_int(&rd, pm, "offset", 0, 1);
            ferry_mp_int_range(&rd, pm, "max_bytes", 0, 0, 1, INT32_MAX);
        }
    }
    if (rd.err) {
        ferryd_req_error(req, FERRY_ERR_INVALID_REQUEST, "%s", rd.errmsg);
        return;
    }

    struct fetch_state *st = calloc(1, sizeof(*st));
    if (st == NULL || (topics->size > 0 && (st->topics = calloc(topics->size, sizeof(*st->topics))) == NULL))
        goto err_nomem;
    st->b = b;
    st->min_bytes = min_bytes;
    st->max_bytes = max_bytes < FERRY_MAX_FETCH_BYTES ? max_bytes : FERRY_MAX_FETCH_BYTES;
    if (max_wait > FERRY_MAX_FETCH_WAIT_MS)
        max_wait = FERRY_MAX_FETCH_WAIT_MS;
    st->deadline = uv_now(b->loop) + (uint64_t)max_wait;
    st->ntopics = topics->size;
    for (uint32_t i = 0; i < topics->size; i++) {
        const msgpack_object *tm = &topics->ptr[i];
        const char *name = ferry_mp_str(&rd, tm, "name", &len, 1);
        const msgpack_object_array *parts = ferry_mp_array(&rd, tm, "partitions", 1);
        struct fetch_topic *t = &st->topics[i];
        t->name = malloc(len + 1);
        if (t->name == NULL || (parts->size > 0 && (t->parts = calloc(parts->size, sizeof(*t->parts))) == NULL))
            goto err_nomem;
        memcpy(t->name, name, len);
        t->name[len] = '\0';
        t->name_len = len;
        t->nparts = parts->size;
        for (uint32_t k = 0; k < parts->size; k++) {
            struct fetch_part *fp = &t->parts[k];
            fp->st = st;
            fp->watch.cb = on_wake;
            fp->partition = ferry_mp_int(&rd, &parts->ptr[k], "partition", 0, 1);
            fp->offset = ferry_mp_int(&rd, &parts->ptr[k], "offset", 0, 1);
            fp->max_bytes = ferry_mp_int(&rd, &parts->ptr[k], "max_bytes", 0, 0);
        }
    }
    st->req = req;
    req->state = st;
    req->abort = on_abort;
    evaluate(st, max_wait == 0);
    return;

err_nomem:
    if (st != NULL)
        state_free(st);
    LOG_ERROR("fetch: out of memory");
    ferryd_req_error(req, FERRY_ERR_UNKNOWN, "broker out of memory");
}
