/* metadata.c: Metadata requests, the client's topic/leader cache, and the ferry_metadata_t accessors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry_int.h"

struct md_part {
    int32_t id;
    int32_t leader;
    ferry_err_t err;
    size_t replica_count;
    int32_t *replicas;
};

struct md_topic {
    char *name;
    ferry_err_t err;
    char *errstr;
    size_t part_count;
    struct md_part *parts;
    size_t config_count;
    char **config_keys;
    char **config_values;
};

struct md_broker {
    int32_t id;
    char *host;
    int port;
};

struct ferry_metadata {
    int32_t controller_id;
    size_t broker_count;
    struct md_broker *brokers;
    size_t topic_count;
    struct md_topic *topics;
};

/* ---- the topic cache (I/O thread) ---- */

struct ctopic *ferry_topic_get(struct ferry_client *cl, const char *name, bool create)
{
    for (struct ctopic *t = cl->topics; t; t = t->next)
        if (strcmp(t->name, name) == 0)
            return t;
    if (!create)
        return NULL;
    struct ctopic *t = calloc(1, sizeof *t);
    if (t == NULL)
        return NULL;
    t->name = strdup(name);
    if (t->name == NULL) {
        free(t);
        return NULL;
    }
    t->state = TOPIC_UNKNOWN;
    t->first_used_ms = ferry_now_ms();
    t->sticky = -1;
    t->sticky_prev = -1;
    t->next = cl->topics;
    cl->topics = t;
    cl->md_needed = true;
    return t;
}

int32_t ferry_topic_leader(const struct ctopic *t, int32_t partition)
{
    if (t->state != TOPIC_KNOWN || partition < 0 || partition >= t->partition_count)
        return -1;
    return t->leaders[partition];
}

void ferry_topics_free(struct ferry_client *cl)
{
    struct ctopic *t = cl->topics;
    while (t) {
        struct ctopic *next = t->next;
        if (t->pparts) {
            for (int32_t i = 0; i < t->partition_count; i++)
                ferry_ppart_free(t->pparts[i]);
        }
        while (t->pending) {
            struct precord *r = t->pending->next;
            ferry_precord_free(t->pending);
            t->pending = r;
        }
        free(t->pparts);
        free(t->leaders);
        free(t->name);
        free(t);
        t = next;
    }
    cl->topics = NULL;
}

void ferry_metadata_refresh(struct ferry_client *cl, const char *why)
{
    if (!cl->md_needed)
        ferry_log(cl, FERRY_LOG_DEBUG, "metadata refresh: %s", why);
    cl->md_needed = true;
}

/* Grows a topic's per-partition arrays to n partitions (partition counts only grow). */
static int topic_resize(struct ctopic *t, int32_t n)
{
    if (n <= t->partition_count)
        return 0;
    int32_t *leaders = realloc(t->leaders, (size_t)n * sizeof *leaders);
    if (leaders == NULL)
        return -1;
    t->leaders = leaders;
    for (int32_t i = t->partition_count; i < n; i++)
        leaders[i] = -1;
    struct ppart **pp = realloc(t->pparts, (size_t)n * sizeof *pp);
    if (pp == NULL)
        return -1;
    for (int32_t i = t->partition_count; i < n; i++)
        pp[i] = NULL;
    t->pparts = pp;
    t->partition_count = n;
    return 0;
}

/* Applies one parsed topic to the cache if the client follows it. */
static void cache_update(struct ferry_client *cl, const struct md_topic *mt)
{
    struct ctopic *t = ferry_topic_get(cl, mt->name, false);
    if (t == NULL)
        return;
    t->topic_err = mt->err;
    if (mt->err == FERRY_ERR_UNKNOWN_TOPIC_OR_PARTITION && t->pending != NULL && t->state != TOPIC_KNOWN &&
        ferry_now_ms() - t->first_used_ms < cl->s.topic_propagation_max_ms)
        return; /* maybe just created and not on this broker yet: records wait, metadata is asked again */
    if (mt->err == FERRY_ERR_UNKNOWN_TOPIC_OR_PARTITION || mt->err == FERRY_ERR_INVALID_TOPIC) {
        t->state = TOPIC_NOT_EXIST;
    } else if (mt->err == FERRY_ERR_NONE) {
        int32_t n = 0;
        for (size_t i = 0; i < mt->part_count; i++)
            if (mt->parts[i].id >= n)
                n = mt->parts[i].id + 1;
        if (topic_resize(t, n) != 0) {
            ferry_log(cl, FERRY_LOG_ERR, "out of memory updating metadata of %s", t->name);
            return;
        }
        for (int32_t i = 0; i < t->partition_count; i++)
            t->leaders[i] = -1;
        for (size_t i = 0; i < mt->part_count; i++)
            t->leaders[mt->parts[i].id] = mt->parts[i].err == FERRY_ERR_NONE ? mt->parts[i].leader : -1;
        t->state = n > 0 ? TOPIC_KNOWN : TOPIC_NOT_EXIST;
    } else {
        return; /* a transient topic error: keep what we knew */
    }
    if (cl->type == FERRY_PRODUCER)
        ferry_producer_topic_updated(cl, t);
}

/* ---- parsing ---- */

static char *dup_field(const char *s, size_t n)
{
    return s ? strndup(s, n) : NULL;
}

static int cmp_part(const void *a, const void *b)
{
    const struct md_part *x = a, *y = b;
    return (x->id > y->id) - (x->id < y->id);
}

static int parse_topic(struct md_topic *mt, const msgpack_object *tm, struct ferry_mp_reader *rd)
{
    size_t n;
    const char *s = ferry_mp_str(rd, tm, "name", &n, 1);
    if (rd->err || (mt->name = strndup(s, n)) == NULL)
        return -1;
    mt->err = (ferry_err_t)ferry_mp_int(rd, tm, "error", 0, 0);
    s = ferry_mp_str(rd, tm, "error_message", &n, 0);
    if (s != NULL && (mt->errstr = dup_field(s, n)) == NULL)
        return -1;
    const msgpack_object_array *parts = ferry_mp_array(rd, tm, "partitions", 0);
    if (rd->err)
        return -1;
    if (parts != NULL && parts->size > 0) {
        mt->parts = calloc(parts->size, sizeof *mt->parts);
        if (mt->parts == NULL)
            return -1;
        for (uint32_t i = 0; i < parts->size; i++) {
            const msgpack_object *pm = ferry_mp_elem_map(rd, parts, i, "partitions");
            if (rd->err)
                return -1;
            struct md_part *p = &mt->parts[mt->part_count++];
            p->id = (int32_t)ferry_mp_int_range(rd, pm, "partition", 0, 1, 0, FERRY_MAX_PARTITIONS_PER_TOPIC - 1);
            p->leader = (int32_t)ferry_mp_int_range(rd, pm, "leader", -1, 0, -1, INT32_MAX);
            p->err = (ferry_err_t)ferry_mp_int(rd, pm, "error", 0, 0);
            const msgpack_object_array *reps = ferry_mp_array(rd, pm, "replicas", 0);
            if (rd->err)
                return -1;
            if (reps != NULL && reps->size > 0) {
                p->replicas = calloc(reps->size, sizeof *p->replicas);
                if (p->replicas == NULL)
                    return -1;
                for (uint32_t r = 0; r < reps->size; r++) {
                    const msgpack_object *o = &reps->ptr[r];
                    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER || o->via.u64 > INT32_MAX)
                        continue;
                    p->replicas[p->replica_count++] = (int32_t)o->via.u64;
                }
            }
        }
        qsort(mt->parts, mt->part_count, sizeof *mt->parts, cmp_part);
        for (size_t i = 1; i < mt->part_count; i++) {
            if (mt->parts[i].id == mt->parts[i - 1].id) {
                rd->err = FERRY_ERR_INVALID_REQUEST;
                snprintf(rd->errmsg, sizeof rd->errmsg, "topic %s: partition %d listed twice", mt->name,
                         (int)mt->parts[i].id);
                return -1;
            }
        }
    }
    const msgpack_object *cfg = ferry_mp_map(rd, tm, "configs", 0);
    if (rd->err)
        return -1;
    if (cfg != NULL && cfg->via.map.size > 0) {
        uint32_t cn = cfg->via.map.size;
        mt->config_keys = calloc(cn, sizeof(char *));
        mt->config_values = calloc(cn, sizeof(char *));
        if (mt->config_keys == NULL || mt->config_values == NULL)
            return -1;
        for (uint32_t i = 0; i < cn; i++) {
            const msgpack_object_kv *kv = &cfg->via.map.ptr[i];
            if (kv->key.type != MSGPACK_OBJECT_STR || kv->val.type != MSGPACK_OBJECT_STR)
                continue;
            char *k = strndup(kv->key.via.str.ptr, kv->key.via.str.size);
            char *v = strndup(kv->val.via.str.ptr, kv->val.via.str.size);
            if (k == NULL || v == NULL) {
                free(k);
                free(v);
                return -1;
            }
            mt->config_keys[mt->config_count] = k;
            mt->config_values[mt->config_count++] = v;
        }
    }
    return 0;
}

ferry_metadata_t *ferry_metadata_parse(struct ferry_client *cl, const msgpack_object *body, char *errmsg,
                                       size_t errmsg_len)
{
    struct ferry_mp_reader rd = {0};
    ferry_metadata_t *md = calloc(1, sizeof *md);
    if (md == NULL) {
        ferry_set_errstr(errmsg, errmsg_len, "out of memory");
        return NULL;
    }
    if (body == NULL) {
        ferry_set_errstr(errmsg, errmsg_len, "metadata response without a body");
        goto err_free;
    }
    md->controller_id = (int32_t)ferry_mp_int_range(&rd, body, "controller_id", -1, 0, -1, INT32_MAX);
    const msgpack_object_array *brokers = ferry_mp_array(&rd, body, "brokers", 1);
    const msgpack_object_array *topics = ferry_mp_array(&rd, body, "topics", 0);
    if (rd.err)
        goto err_parse;
    if (brokers->size > 0) {
        md->brokers = calloc(brokers->size, sizeof *md->brokers);
        if (md->brokers == NULL)
            goto err_oom;
    }
    for (uint32_t i = 0; i < brokers->size; i++) {
        const msgpack_object *bm = ferry_mp_elem_map(&rd, brokers, i, "brokers");
        if (rd.err)
            goto err_parse;
        struct md_broker *b = &md->brokers[md->broker_count];
        b->id = (int32_t)ferry_mp_int_range(&rd, bm, "id", 0, 1, 0, INT32_MAX);
        size_t hl;
        const char *h = ferry_mp_str(&rd, bm, "host", &hl, 1);
        b->port = (int)ferry_mp_int_range(&rd, bm, "port", 0, 1, 1, 65535);
        if (rd.err)
            goto err_parse;
        if ((b->host = strndup(h, hl)) == NULL)
            goto err_oom;
        md->broker_count++;
    }
    if (topics != NULL && topics->size > 0) {
        md->topics = calloc(topics->size, sizeof *md->topics);
        if (md->topics == NULL)
            goto err_oom;
        for (uint32_t i = 0; i < topics->size; i++) {
            const msgpack_object *tm = ferry_mp_elem_map(&rd, topics, i, "topics");
            if (rd.err)
                goto err_parse;
            int rc = parse_topic(&md->topics[md->topic_count++], tm, &rd);
            if (rd.err)
                goto err_parse;
            if (rc != 0)
                goto err_oom;
        }
    }

    /* Update the client's view: brokers, controller, followed topics. */
    if (cl != NULL) {
        for (struct broker *b = cl->brokers; b; b = b->next)
            if (b->id >= 0)
                b->in_metadata = false;
        for (size_t i = 0; i < md->broker_count; i++) {
            struct md_broker *mb = &md->brokers[i];
            if (ferry_broker_upsert(cl, mb->id, mb->host, strlen(mb->host), mb->port) == NULL)
                goto err_oom;
        }
        cl->controller_id = md->controller_id;
        for (size_t i = 0; i < md->topic_count; i++)
            cache_update(cl, &md->topics[i]);
    }
    return md;

err_parse:
    ferry_set_errstr(errmsg, errmsg_len, "malformed metadata response: %s", rd.errmsg);
    goto err_free;
err_oom:
    ferry_set_errstr(errmsg, errmsg_len, "out of memory parsing metadata");
err_free:
    ferry_metadata_destroy(md);
    return NULL;
}

void ferry_metadata_pack_request(msgpack_packer *pk, const char *const *topics, size_t n)
{
    msgpack_pack_map(pk, 1);
    ferry_pack_key(pk, "topics");
    if (topics == NULL) {
        msgpack_pack_nil(pk);
        return;
    }
    msgpack_pack_array(pk, n);
    for (size_t i = 0; i < n; i++)
        ferry_pack_str(pk, topics[i]);
}

/* ---- background refresh ---- */

void ferry_metadata_leaderless(struct ferry_client *cl, bool any)
{
    if (!any) {
        cl->md_backoff_ms = 0;
        cl->md_leaderless = false;
        return;
    }
    cl->md_leaderless = true;
    ferry_metadata_refresh(cl, "partition without a reachable leader");
}

static void on_metadata(struct ferry_client *cl, struct broker *b, int err, const char *errmsg,
                        const struct ferry_response_header *rh, void *arg)
{
    (void)arg;
    cl->md_inflight = false;
    if (cl->stopping)
        return;
    int64_t now = ferry_now_ms();
    if (err == 0 && rh->error != 0) {
        err = rh->error;
        errmsg = ferry_err_str(rh->error);
    }
    if (err != 0) {
        ferry_log(cl, FERRY_LOG_WARNING, "metadata from %s:%d failed: %s", b->host, b->port, errmsg);
        cl->md_needed = true;
        cl->md_retry_at_ms = now + cl->s.retry_backoff_ms;
        ferry_kick(cl);
        return;
    }
    char msg[256];
    ferry_metadata_t *md = ferry_metadata_parse(cl, rh->body, msg, sizeof msg);
    if (md == NULL) {
        ferry_log(cl, FERRY_LOG_ERR, "metadata from %s:%d: %s", b->host, b->port, msg);
        cl->md_needed = true;
        cl->md_retry_at_ms = now + cl->s.retry_backoff_ms;
    } else {
        ferry_metadata_destroy(md);
        cl->md_last_ms = now;
        int64_t wait = cl->s.retry_backoff_ms; /* throttles refresh requests */
        if (cl->md_req_leaderless) {
            /* Still leaderless after this one (the producer says so again): wait longer each time. */
            int64_t cap = cl->s.retry_backoff_max_ms > wait ? cl->s.retry_backoff_max_ms : wait;
            wait = cl->md_backoff_ms == 0 ? wait : cl->md_backoff_ms * 2 > cap ? cap : cl->md_backoff_ms * 2;
            cl->md_backoff_ms = wait;
        }
        cl->md_retry_at_ms = now + wait;
    }
    cl->md_req_leaderless = false;
    ferry_kick(cl);
}

void ferry_metadata_service(struct ferry_client *cl, int64_t now)
{
    if (cl->md_inflight || cl->stopping)
        return;
    bool need = cl->md_needed || cl->md_last_ms == 0 || now - cl->md_last_ms >= cl->s.metadata_max_age_ms;
    for (struct ctopic *t = cl->topics; t && !need; t = t->next)
        need = t->state == TOPIC_UNKNOWN;
    if (!need || now < cl->md_retry_at_ms)
        return;
    struct broker *b = ferry_broker_any_up(cl);
    if (b == NULL)
        return;
    size_t n = 0;
    for (struct ctopic *t = cl->topics; t; t = t->next)
        n++;
    const char **names = NULL;
    if (n > 0) {
        names = calloc(n, sizeof *names);
        if (names == NULL)
            return;
        size_t i = 0;
        for (struct ctopic *t = cl->topics; t; t = t->next)
            names[i++] = t->name;
    }
    msgpack_sbuffer sb;
    msgpack_packer pk;
    uint32_t corr = ferry_request_begin(cl, &sb, &pk, FERRY_API_METADATA);
    /* No followed topics: an empty list asks for brokers only. */
    ferry_metadata_pack_request(&pk, n ? names : (const char *const[]){NULL}, n);
    free(names);
    if (ferry_request_send(cl, b, &sb, corr, FERRY_API_METADATA, 0, on_metadata, NULL) == 0) {
        cl->md_inflight = true;
        cl->md_needed = false;
        cl->md_req_leaderless = cl->md_leaderless;
        cl->md_leaderless = false;
    } else {
        cl->md_retry_at_ms = now + cl->s.retry_backoff_ms;
    }
}

/* ---- public accessors ---- */

FERRY_API void ferry_metadata_destroy(ferry_metadata_t *md)
{
    if (md == NULL)
        return;
    for (size_t i = 0; i < md->broker_count; i++)
        free(md->brokers[i].host);
    free(md->brokers);
    for (size_t t = 0; t < md->topic_count; t++) {
        struct md_topic *mt = &md->topics[t];
        for (size_t p = 0; p < mt->part_count; p++)
            free(mt->parts[p].replicas);
        free(mt->parts);
        for (size_t c = 0; c < mt->config_count; c++) {
            free(mt->config_keys[c]);
            free(mt->config_values[c]);
        }
        free(mt->config_keys);
        free(mt->config_values);
        free(mt->name);
        free(mt->errstr);
    }
    free(md->topics);
    free(md);
}

static const struct md_topic *md_topic(const ferry_metadata_t *md, size_t t)
{
    return md != NULL && t < md->topic_count ? &md->topics[t] : NULL;
}

static const struct md_part *md_part(const ferry_metadata_t *md, size_t t, size_t p)
{
    const struct md_topic *mt = md_topic(md, t);
    return mt != NULL && p < mt->part_count ? &mt->parts[p] : NULL;
}

FERRY_API int32_t ferry_metadata_controller_id(const ferry_metadata_t *md)
{
    return md ? md->controller_id : -1;
}

FERRY_API size_t ferry_metadata_broker_count(const ferry_metadata_t *md)
{
    return md ? md->broker_count : 0;
}

FERRY_API int32_t ferry_metadata_broker_id(const ferry_metadata_t *md, size_t b)
{
    return md && b < md->broker_count ? md->brokers[b].id : -1;
}

FERRY_API const char *ferry_metadata_broker_host(const ferry_metadata_t *md, size_t b)
{
    return md && b < md->broker_count ? md->brokers[b].host : NULL;
}

FERRY_API int ferry_metadata_broker_port(const ferry_metadata_t *md, size_t b)
{
    return md && b < md->broker_count ? md->brokers[b].port : -1;
}

FERRY_API size_t ferry_metadata_topic_count(const ferry_metadata_t *md)
{
    return md ? md->topic_count : 0;
}

FERRY_API const char *ferry_metadata_topic_name(const ferry_metadata_t *md, size_t t)
{
    const struct md_topic *mt = md_topic(md, t);
    return mt ? mt->name : NULL;
}

FERRY_API ferry_err_t ferry_metadata_topic_err(const ferry_metadata_t *md, size_t t)
{
    const struct md_topic *mt = md_topic(md, t);
    return mt ? mt->err : FERRY_ERR__INVALID_ARG;
}

FERRY_API const char *ferry_metadata_topic_errstr(const ferry_metadata_t *md, size_t t)
{
    const struct md_topic *mt = md_topic(md, t);
    return mt ? mt->errstr : NULL;
}

FERRY_API size_t ferry_metadata_topic_config_count(const ferry_metadata_t *md, size_t t)
{
    const struct md_topic *mt = md_topic(md, t);
    return mt ? mt->config_count : 0;
}

FERRY_API const char *ferry_metadata_topic_config(const ferry_metadata_t *md, size_t t, size_t i, const char **value)
{
    const struct md_topic *mt = md_topic(md, t);
    if (mt == NULL || i >= mt->config_count)
        return NULL;
    if (value)
        *value = mt->config_values[i];
    return mt->config_keys[i];
}

FERRY_API size_t ferry_metadata_partition_count(const ferry_metadata_t *md, size_t t)
{
    const struct md_topic *mt = md_topic(md, t);
    return mt ? mt->part_count : 0;
}

FERRY_API int32_t ferry_metadata_partition_id(const ferry_metadata_t *md, size_t t, size_t p)
{
    const struct md_part *mp = md_part(md, t, p);
    return mp ? mp->id : -1;
}

FERRY_API int32_t ferry_metadata_partition_leader(const ferry_metadata_t *md, size_t t, size_t p)
{
    const struct md_part *mp = md_part(md, t, p);
    return mp ? mp->leader : -1;
}

FERRY_API ferry_err_t ferry_metadata_partition_err(const ferry_metadata_t *md, size_t t, size_t p)
{
    const struct md_part *mp = md_part(md, t, p);
    return mp ? mp->err : FERRY_ERR__INVALID_ARG;
}

FERRY_API size_t ferry_metadata_partition_replica_count(const ferry_metadata_t *md, size_t t, size_t p)
{
    const struct md_part *mp = md_part(md, t, p);
    return mp ? mp->replica_count : 0;
}

FERRY_API int32_t ferry_metadata_partition_replica(const ferry_metadata_t *md, size_t t, size_t p, size_t r)
{
    const struct md_part *mp = md_part(md, t, p);
    return mp && r < mp->replica_count ? mp->replicas[r] : -1;
}
