/* consumer.c: the assignment (manual or from the group), seeking, fetching into a bounded prefetch queue, messages. */
#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry_int.h"

/*
 * Positions and epochs: ferry_assign/ferry_seek set a partition's wanted offset and bump its epoch
 * under cl->lock, and drop its queued messages. The I/O thread fetches with the epoch it last
 * synced; fetched messages are queued only if that epoch is still current (checked under the
 * lock), so nothing fetched before a seek is returned after it.
 */

/* A topic that does not exist (yet) is asked about again this often. */
#define CONSUMER_MISSING_TOPIC_RETRY_MS 1000

struct fitem {
    struct cpart *cp;
    uint64_t epoch;
    int64_t offset; /* fetch: position asked; list offsets: the timestamp asked */
};

struct freq {
    size_t n;
    struct fitem items[];
};

static size_t prefetch_limit(const struct ferry_client *cl)
{
    size_t lim = (size_t)cl->s.fetch_max_bytes;
    return lim > FERRY_MAX_FETCH_BYTES ? FERRY_MAX_FETCH_BYTES : lim;
}

/* ---- messages ---- */

static void queue_drop_partition_locked(struct ferry_client *cl, struct cpart *cp)
{
    struct ferry_message **pp = &cl->msgs;
    cl->msgs_tail = NULL;
    while (*pp) {
        struct ferry_message *m = *pp;
        if (m->cp == cp) {
            *pp = m->next;
            cl->msgs_bytes -= m->size;
            cl->msgs_count--;
            free(m);
            continue;
        }
        cl->msgs_tail = m;
        pp = &m->next;
    }
}

/* Builds a message from a record (one allocation). NULL when out of memory or headers are bad. */
static struct ferry_message *message_new(const struct cpart *cp, const struct ferry_record_view *rec)
{
    size_t tl = strlen(cp->topic) + 1;
    size_t hbytes = 0;
    size_t pos = 0;
    struct ferry_header_view h;
    int rc;
    while ((rc = ferry_record_next_header(rec, &pos, &h)) == 1)
        hbytes += h.name_len + 1 + h.value_len;
    if (rc < 0)
        return NULL;
    size_t size = sizeof(struct ferry_message) + rec->header_count * sizeof(struct msg_header) + tl + rec->key_len +
                  rec->value_len + hbytes;
    struct ferry_message *m = malloc(size);
    if (m == NULL)
        return NULL;
    memset(m, 0, sizeof *m);
    uint8_t *p = (uint8_t *)(m + 1);
    m->headers = rec->header_count ? (struct msg_header *)p : NULL;
    p += rec->header_count * sizeof(struct msg_header);
    pos = 0;
    while (ferry_record_next_header(rec, &pos, &h) == 1 && m->header_count < rec->header_count) {
        struct msg_header *mh = &m->headers[m->header_count++];
        mh->name = (char *)p;
        memcpy(p, h.name, h.name_len);
        p[h.name_len] = '\0';
        p += h.name_len + 1;
        mh->value = NULL;
        mh->value_len = 0;
        if (h.value != NULL) {
            mh->value = p;
            mh->value_len = h.value_len;
            memcpy(p, h.value, h.value_len);
            p += h.value_len;
        }
    }
    m->topic = (char *)p;
    memcpy(p, cp->topic, tl);
    p += tl;
    if (rec->key != NULL) {
        m->key = p;
        m->key_len = rec->key_len;
        memcpy(p, rec->key, rec->key_len);
        p += rec->key_len;
    }
    if (rec->value != NULL) {
        m->value = p;
        m->value_len = rec->value_len;
        memcpy(p, rec->value, rec->value_len);
    }
    m->err = FERRY_ERR_NONE;
    m->partition = cp->partition;
    m->offset = rec->offset;
    m->timestamp = rec->timestamp;
    m->size = size;
    return m;
}

static struct ferry_message *error_message_new(const struct cpart *cp, ferry_err_t err, const char *errstr)
{
    size_t tl = strlen(cp->topic) + 1, el = strlen(errstr) + 1;
    struct ferry_message *m = calloc(1, sizeof *m + tl + el);
    if (m == NULL)
        return NULL;
    m->topic = (char *)(m + 1);
    memcpy(m->topic, cp->topic, tl);
    m->errstr = m->topic + tl;
    memcpy(m->errstr, errstr, el);
    m->err = err;
    m->partition = cp->partition;
    m->offset = -1;
    m->size = sizeof *m + tl + el;
    return m;
}

/* Queues messages of cp if epoch is still current; frees them otherwise. Returns true if queued. */
static bool queue_messages(struct ferry_client *cl, struct cpart *cp, uint64_t epoch, struct ferry_message *head)
{
    if (head == NULL)
        return true;
    pthread_mutex_lock(&cl->lock);
    bool current = !cp->removed && cp->epoch == epoch;
    if (current) {
        struct ferry_message *last = head;
        for (struct ferry_message *m = head; m; m = m->next) {
            m->cp = cp;
            m->epoch = epoch;
            cl->msgs_bytes += m->size;
            cl->msgs_count++;
            last = m;
        }
        if (cl->msgs_tail)
            cl->msgs_tail->next = head;
        else
            cl->msgs = head;
        cl->msgs_tail = last;
        pthread_cond_broadcast(&cl->cond);
    }
    pthread_mutex_unlock(&cl->lock);
    if (!current) {
        while (head) {
            struct ferry_message *next = head->next;
            free(head);
            head = next;
        }
    }
    return current;
}

static void report_error(struct ferry_client *cl, struct cpart *cp, ferry_err_t err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void report_error(struct ferry_client *cl, struct cpart *cp, ferry_err_t err, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    ferry_log(cl, FERRY_LOG_WARNING, "%s/%d: %s", cp->topic, (int)cp->partition, buf);
    struct ferry_message *m = error_message_new(cp, err, buf);
    if (m != NULL)
        queue_messages(cl, cp, cp->io_epoch, m);
}

/* ---- fetch responses ---- */

/*
 * Decodes the concatenated batches of one partition into messages at or after cp->position,
 * advancing the position. Returns 0, or an error code with errmsg (a corrupt batch).
 */
static int decode_records(struct cpart *cp, const uint8_t *buf, size_t len, struct ferry_message **head,
                          char *errmsg, size_t errmsg_len)
{
    struct ferry_message **tail = head;
    while (len >= FERRY_BATCH_HEADER_SIZE) {
        struct ferry_batch_header bh;
        ferry_batch_header_decode(buf, &bh);
        if (bh.batch_length < FERRY_BATCH_HEADER_SIZE)
            return snprintf(errmsg, errmsg_len, "batch at offset %lld: length %u", (long long)bh.base_offset,
                            bh.batch_length),
                   FERRY_ERR_CORRUPT_BATCH;
        if (bh.batch_length > len)
            break; /* a truncated last batch: fetched again next time */
        int64_t last = bh.base_offset + (int64_t)bh.last_offset_delta;
        if (last >= cp->position) {
            struct ferry_batch_reader rd;
            int rc = ferry_batch_reader_init(&rd, buf, bh.batch_length);
            if (rc != 0) {
                snprintf(errmsg, errmsg_len, "batch at offset %lld: %s", (long long)bh.base_offset, rd.errmsg);
                ferry_batch_reader_free(&rd);
                return rc;
            }
            struct ferry_record_view rec;
            while ((rc = ferry_batch_reader_next(&rd, &rec)) == 1) {
                if (rec.offset < cp->position)
                    continue; /* the fetch starts at the batch holding our offset */
                struct ferry_message *m = message_new(cp, &rec);
                if (m == NULL) {
                    snprintf(errmsg, errmsg_len, "offset %lld: out of memory or bad headers",
                             (long long)rec.offset);
                    ferry_batch_reader_free(&rd);
                    return FERRY_ERR__NO_MEMORY;
                }
                *tail = m;
                tail = &m->next;
                cp->position = rec.offset + 1;
            }
            if (rc < 0) {
                snprintf(errmsg, errmsg_len, "%s", rd.errmsg);
                ferry_batch_reader_free(&rd);
                return -rc;
            }
            ferry_batch_reader_free(&rd);
            if (last + 1 > cp->position)
                cp->position = last + 1;
        }
        buf += bh.batch_length;
        len -= bh.batch_length;
    }
    return 0;
}

/* Finds the map of (topic, partition) in a Fetch/ListOffsets response body. */
static const msgpack_object *find_partition(struct ferry_mp_reader *rd, const msgpack_object *body, const char *topic,
                                            int32_t partition)
{
    const msgpack_object_array *topics = ferry_mp_array(rd, body, "topics", 1);
    size_t tlen = strlen(topic);
    for (uint32_t ti = 0; !rd->err && topics && ti < topics->size; ti++) {
        const msgpack_object *tm = ferry_mp_elem_map(rd, topics, ti, "topics");
        size_t nl;
        const char *name = ferry_mp_str(rd, tm, "name", &nl, 1);
        if (rd->err || nl != tlen || memcmp(name, topic, nl) != 0)
            continue;
        const msgpack_object_array *parts = ferry_mp_array(rd, tm, "partitions", 1);
        for (uint32_t pi = 0; !rd->err && pi < parts->size; pi++) {
            const msgpack_object *pm = ferry_mp_elem_map(rd, parts, pi, "partitions");
            if (!rd->err && ferry_mp_int(rd, pm, "partition", -1, 1) == partition)
                return pm;
        }
    }
    return NULL;
}

/* A failed fetch or list-offsets of cp: decide between retry, reset and an error event. */
static void partition_failed(struct ferry_client *cl, struct cpart *cp, int err, const char *msg, int64_t now)
{
    ferry_log(cl, FERRY_LOG_DEBUG, "%s/%d: fetch or list offsets at %lld failed: %s (%s)", cp->topic,
              (int)cp->partition, (long long)cp->position, msg, ferry_err_name((ferry_err_t)err));
    if (err == FERRY_ERR_OFFSET_OUT_OF_RANGE) {
        switch (cl->s.auto_offset_reset) {
        case FERRY_RESET_EARLIEST:
            ferry_log(cl, FERRY_LOG_INFO, "%s/%d: offset %lld out of range, resetting to earliest", cp->topic,
                      (int)cp->partition, (long long)cp->position);
            cp->position = FERRY_OFFSET_BEGINNING;
            return;
        case FERRY_RESET_LATEST:
            ferry_log(cl, FERRY_LOG_INFO, "%s/%d: offset %lld out of range, resetting to latest", cp->topic,
                      (int)cp->partition, (long long)cp->position);
            cp->position = FERRY_OFFSET_END;
            return;
        default:
            report_error(cl, cp, (ferry_err_t)err, "offset %lld is out of range (auto.offset.reset=error): %s",
                         (long long)cp->position, msg);
            cp->stopped = true;
            return;
        }
    }
    if (err == FERRY_ERR_NOT_LEADER || err == FERRY_ERR_UNKNOWN_TOPIC_OR_PARTITION || err == FERRY_ERR__TRANSPORT ||
        err == FERRY_ERR__TIMED_OUT || err == FERRY_ERR_BROKER_NOT_AVAILABLE || err == FERRY_ERR__TLS)
        ferry_metadata_refresh(cl, "fetch failed");
    if (ferry_err_is_retriable((ferry_err_t)err) || err == FERRY_ERR__TLS) {
        cp->retry_at_ms = now + cl->s.retry_backoff_ms;
        return;
    }
    if (err == FERRY_ERR_UNKNOWN_TOPIC_OR_PARTITION) {
        report_error(cl, cp, (ferry_err_t)err, "%s", msg);
        cp->retry_at_ms = now + CONSUMER_MISSING_TOPIC_RETRY_MS;
        return;
    }
    report_error(cl, cp, (ferry_err_t)err, "%s (partition stopped until ferry_seek)", msg);
    cp->stopped = true;
}

static void on_fetch(struct ferry_client *cl, struct broker *b, int err, const char *errmsg,
                     const struct ferry_response_header *rh, void *arg)
{
    struct freq *fr = arg;
    b->fetch_inflight = false;
    int64_t now = ferry_now_ms();
    if (err == 0 && rh->error != 0) {
        err = rh->error;
        errmsg = rh->error_message ? rh->error_message : ferry_err_str(rh->error);
    }
    for (size_t i = 0; i < fr->n; i++) {
        struct fitem *it = &fr->items[i];
        struct cpart *cp = it->cp;
        cp->fetching = false;
        if (cl->stopping || cp->removed || cp->io_epoch != it->epoch || cp->position != it->offset)
            continue; /* repositioned meanwhile */
        if (err != 0) {
            partition_failed(cl, cp, err, errmsg, now);
            continue;
        }
        struct ferry_mp_reader rd = {0};
        const msgpack_object *pm = find_partition(&rd, rh->body, cp->topic, cp->partition);
        if (pm == NULL) {
            partition_failed(cl, cp, FERRY_ERR__BAD_RESPONSE, rd.err ? rd.errmsg : "partition missing from the fetch response", now);
            continue;
        }
        int perr = (int)ferry_mp_int(&rd, pm, "error", 0, 0);
        size_t ml = 0;
        const char *m = ferry_mp_str(&rd, pm, "error_message", &ml, 0);
        size_t rlen = 0;
        const uint8_t *recs = ferry_mp_bin(&rd, pm, "records", &rlen, 0);
        if (rd.err) {
            partition_failed(cl, cp, FERRY_ERR__BAD_RESPONSE, rd.errmsg, now);
            continue;
        }
        if (perr != 0) {
            char msg[FERRY_MAX_ERROR_MESSAGE + 1];
            snprintf(msg, sizeof msg, "%.*s", m ? (int)ml : 0, m ? m : "");
            partition_failed(cl, cp, perr, m ? msg : ferry_err_str(perr), now);
            continue;
        }
        struct ferry_message *head = NULL;
        char emsg[300];
        int64_t before = cp->position;
        int rc = recs ? decode_records(cp, recs, rlen, &head, emsg, sizeof emsg) : 0;
        queue_messages(cl, cp, it->epoch, head);
        if (rc != 0) {
            report_error(cl, cp, (ferry_err_t)rc, "%s (partition stopped until ferry_seek)", emsg);
            cp->stopped = true;
        } else if (recs && rlen > 0 && cp->position == before && rlen >= FERRY_BATCH_HEADER_SIZE) {
            /* A batch that did not fit max.partition.fetch.bytes was cut short: nothing gained. */
            ferry_log(cl, FERRY_LOG_DEBUG, "%s/%d: fetch made no progress at %lld", cp->topic, (int)cp->partition,
                      (long long)cp->position);
        }
    }
    free(fr);
    ferry_kick(cl);
}

static void on_list_offsets(struct ferry_client *cl, struct broker *b, int err, const char *errmsg,
                            const struct ferry_response_header *rh, void *arg)
{
    struct freq *fr = arg;
    b->offsets_inflight = false;
    int64_t now = ferry_now_ms();
    if (err == 0 && rh->error != 0) {
        err = rh->error;
        errmsg = rh->error_message ? rh->error_message : ferry_err_str(rh->error);
    }
    for (size_t i = 0; i < fr->n; i++) {
        struct fitem *it = &fr->items[i];
        struct cpart *cp = it->cp;
        cp->fetching = false;
        if (cl->stopping || cp->removed || cp->io_epoch != it->epoch || cp->position != it->offset)
            continue;
        if (err != 0) {
            partition_failed(cl, cp, err, errmsg, now);
            continue;
        }
        struct ferry_mp_reader rd = {0};
        const msgpack_object *pm = find_partition(&rd, rh->body, cp->topic, cp->partition);
        int perr = pm ? (int)ferry_mp_int(&rd, pm, "error", 0, 0) : FERRY_ERR__BAD_RESPONSE;
        int64_t off = pm ? ferry_mp_int(&rd, pm, "offset", -1, 0) : -1;
        if (rd.err || (perr == 0 && off < 0)) {
            partition_failed(cl, cp, FERRY_ERR__BAD_RESPONSE, rd.err ? rd.errmsg : "no offset in the response", now);
            continue;
        }
        if (perr != 0) {
            partition_failed(cl, cp, perr, ferry_err_str(perr), now);
            continue;
        }
        cp->position = off;
        ferry_log(cl, FERRY_LOG_DEBUG, "%s/%d: starts at offset %lld", cp->topic, (int)cp->partition, (long long)off);
    }
    free(fr);
    ferry_kick(cl);
}

/* ---- requests ---- */

/* Packs {"name":..., "partitions":[...]} groups for items (grouped by topic, first-seen order). */
static void pack_topics(msgpack_packer *pk, const struct freq *fr, bool fetch, int64_t part_max_bytes)
{
    size_t ntopics = 0;
    for (size_t i = 0; i < fr->n; i++) {
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = strcmp(fr->items[j].cp->topic, fr->items[i].cp->topic) == 0;
        ntopics += !seen;
    }
    msgpack_pack_array(pk, ntopics);
    for (size_t i = 0; i < fr->n; i++) {
        const char *topic = fr->items[i].cp->topic;
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = strcmp(fr->items[j].cp->topic, topic) == 0;
        if (seen)
            continue;
        size_t n = 0;
        for (size_t j = i; j < fr->n; j++)
            n += strcmp(fr->items[j].cp->topic, topic) == 0;
        msgpack_pack_map(pk, 2);
        ferry_pack_key(pk, "name");
        ferry_pack_str(pk, topic);
        ferry_pack_key(pk, "partitions");
        msgpack_pack_array(pk, n);
        for (size_t j = i; j < fr->n; j++) {
            if (strcmp(fr->items[j].cp->topic, topic) != 0)
                continue;
            msgpack_pack_map(pk, fetch ? 3 : 2);
            ferry_pack_key(pk, "partition");
            msgpack_pack_int32(pk, fr->items[j].cp->partition);
            ferry_pack_key(pk, fetch ? "offset" : "timestamp");
            msgpack_pack_int64(pk, fr->items[j].offset);
            if (fetch) {
                ferry_pack_key(pk, "max_bytes");
                msgpack_pack_int64(pk, part_max_bytes);
            }
        }
    }
}

/* Sends a Fetch (fetch=true) or ListOffsets for the partitions of b that need one. */
static void send_requests(struct ferry_client *cl, struct broker *b, bool fetch, size_t nparts, int64_t now)
{
    struct freq *fr = malloc(sizeof *fr + nparts * sizeof fr->items[0]);
    if (fr == NULL)
        return;
    fr->n = 0;
    for (struct cpart *cp = cl->asg; cp; cp = cp->next) {
        if (cp->removed || cp->stopped || cp->fetching || now < cp->retry_at_ms || (cp->position >= 0) != fetch)
            continue;
        struct ctopic *t = ferry_topic_get(cl, cp->topic, false);
        if (t == NULL || ferry_topic_leader(t, cp->partition) != b->id || fr->n == nparts)
            continue;
        fr->items[fr->n++] = (struct fitem){.cp = cp, .epoch = cp->io_epoch, .offset = cp->position};
    }
    if (fr->n == 0) {
        free(fr);
        return;
    }
    msgpack_sbuffer sb;
    msgpack_packer pk;
    int api = fetch ? FERRY_API_FETCH : FERRY_API_LIST_OFFSETS;
    uint32_t corr = ferry_request_begin(cl, &sb, &pk, api);
    if (fetch) {
        msgpack_pack_map(&pk, 4);
        ferry_pack_key(&pk, "max_wait_ms");
        msgpack_pack_int64(&pk, cl->s.fetch_max_wait_ms);
        ferry_pack_key(&pk, "min_bytes");
        msgpack_pack_int64(&pk, cl->s.fetch_min_bytes);
        ferry_pack_key(&pk, "max_bytes");
        msgpack_pack_int64(&pk, (int64_t)prefetch_limit(cl));
    } else {
        msgpack_pack_map(&pk, 1);
    }
    ferry_pack_key(&pk, "topics");
    pack_topics(&pk, fr, fetch, cl->s.max_partition_fetch_bytes);
    int err = ferry_request_send(cl, b, &sb, corr, api, fetch ? cl->s.fetch_max_wait_ms : 0,
                                 fetch ? on_fetch : on_list_offsets, fr);
    if (err != 0) {
        free(fr);
        return;
    }
    for (size_t i = 0; i < fr->n; i++)
        fr->items[i].cp->fetching = true;
    if (fetch)
        b->fetch_inflight = true;
    else
        b->offsets_inflight = true;
}

/* ---- the service pass ---- */

void ferry_consumer_service(struct ferry_client *cl, int64_t now)
{
    /* Group membership first: it adds and removes partitions of the assignment. (client.c calls
     * only this for consumers; ferry_group_service is safe to call more than once a pass.) */
    ferry_group_service(cl, now);
    /* Sync with assign/seek and sweep removed partitions nobody references any more. */
    pthread_mutex_lock(&cl->lock);
    for (struct cpart **pp = &cl->asg; *pp;) {
        struct cpart *cp = *pp;
        if (cp->removed) {
            if (!cp->fetching) {
                *pp = cp->next;
                free(cp->topic);
                free(cp);
                continue;
            }
        } else if (cp->io_epoch != cp->epoch) {
            cp->io_epoch = cp->epoch;
            cp->position = cp->want_offset;
            cp->stopped = false;
            cp->retry_at_ms = 0;
            if (cp->start_error) {
                cp->start_error = false;
                struct ferry_message *m = error_message_new(
                    cp, FERRY_ERR_OFFSET_OUT_OF_RANGE,
                    "no committed offset and auto.offset.reset=error (partition stopped until ferry_seek)");
                if (m != NULL) {
                    m->cp = cp;
                    m->epoch = cp->epoch;
                    if (cl->msgs_tail)
                        cl->msgs_tail->next = m;
                    else
                        cl->msgs = m;
                    cl->msgs_tail = m;
                    cl->msgs_bytes += m->size;
                    cl->msgs_count++;
                    pthread_cond_broadcast(&cl->cond);
                }
                cp->stopped = true;
            }
        }
        pp = &cp->next;
    }
    cl->io_asg_epoch = cl->asg_epoch;
    bool starved = cl->msgs_bytes >= prefetch_limit(cl);
    cl->fetch_starved = starved;
    pthread_mutex_unlock(&cl->lock);

    /* Metadata and connections for every active partition. */
    size_t nparts = 0;
    for (struct cpart *cp = cl->asg; cp; cp = cp->next) {
        if (cp->removed || cp->stopped)
            continue;
        nparts++;
        struct ctopic *t = ferry_topic_get(cl, cp->topic, true);
        if (t == NULL)
            continue;
        if (t->state == TOPIC_UNKNOWN)
            continue; /* the next metadata request includes it */
        if (t->state == TOPIC_NOT_EXIST || cp->partition >= t->partition_count) {
            if (now >= cp->retry_at_ms) {
                report_error(cl, cp, FERRY_ERR_UNKNOWN_TOPIC_OR_PARTITION, "%s/%d does not exist (yet)", cp->topic,
                             (int)cp->partition);
                cp->retry_at_ms = now + CONSUMER_MISSING_TOPIC_RETRY_MS;
                ferry_metadata_refresh(cl, "assigned partition does not exist");
            }
            continue;
        }
        int32_t leader = ferry_topic_leader(t, cp->partition);
        struct broker *b = leader >= 0 ? ferry_broker_by_id(cl, leader) : NULL;
        if (b == NULL)
            ferry_metadata_refresh(cl, "assigned partition without a leader");
        else
            ferry_broker_want(cl, b);
    }
    if (nparts == 0)
        return;
    for (struct broker *b = cl->brokers; b; b = b->next) {
        if (b->state != BROKER_UP || b->id < 0)
            continue;
        if (!b->offsets_inflight)
            send_requests(cl, b, false, nparts, now);
        if (!b->fetch_inflight && !starved)
            send_requests(cl, b, true, nparts, now);
    }
}

static void cpart_list_free(struct cpart *cp)
{
    while (cp) {
        struct cpart *next = cp->next;
        free(cp->topic);
        free(cp);
        cp = next;
    }
}

void ferry_consumer_free(struct ferry_client *cl)
{
    ferry_group_free(cl);
    while (cl->msgs) {
        struct ferry_message *next = cl->msgs->next;
        free(cl->msgs);
        cl->msgs = next;
    }
    cl->msgs_tail = NULL;
    cpart_list_free(cl->asg);
    cl->asg = NULL;
}

/* ---- application API ---- */

static struct cpart *find_assigned_locked(struct ferry_client *cl, const char *topic, int32_t partition)
{
    for (struct cpart *cp = cl->asg; cp; cp = cp->next)
        if (!cp->removed && cp->partition == partition && strcmp(cp->topic, topic) == 0)
            return cp;
    return NULL;
}

struct cpart *ferry_consumer_find_locked(struct ferry_client *cl, const char *topic, int32_t partition)
{
    return find_assigned_locked(cl, topic, partition);
}

struct cpart *ferry_consumer_add_locked(struct ferry_client *cl, const char *topic, int32_t partition,
                                        int64_t offset, int64_t app_position)
{
    assert(offset >= FERRY_OFFSET_BEGINNING);
    struct cpart *cp = calloc(1, sizeof *cp);
    char *t = strdup(topic);
    if (cp == NULL || t == NULL) {
        free(cp);
        free(t);
        return NULL;
    }
    cp->topic = t;
    cp->partition = partition;
    cp->want_offset = offset;
    cp->epoch = 1;
    cp->group_owned = true;
    cp->app_position = app_position;
    cp->next = cl->asg;
    cl->asg = cp;
    cl->asg_epoch++;
    ferry_wake_locked(cl);
    return cp;
}

void ferry_consumer_remove_locked(struct ferry_client *cl, struct cpart *cp)
{
    if (cp->removed)
        return;
    cp->removed = true;
    queue_drop_partition_locked(cl, cp);
    cl->asg_epoch++;
    ferry_wake_locked(cl);
}

void ferry_consumer_seek_locked(struct ferry_client *cl, struct cpart *cp, int64_t offset)
{
    cp->want_offset = offset;
    cp->epoch++;
    cp->app_position = offset >= 0 ? offset : -1;
    cp->rewind = false;
    cl->asg_epoch++;
    queue_drop_partition_locked(cl, cp);
    ferry_wake_locked(cl);
}

bool ferry_consumer_is_assigned(struct ferry_client *cl, const char *topic, int32_t partition)
{
    pthread_mutex_lock(&cl->lock);
    bool yes = find_assigned_locked(cl, topic, partition) != NULL;
    pthread_mutex_unlock(&cl->lock);
    return yes;
}

FERRY_API ferry_err_t ferry_assign(ferry_client_t *cl, const ferry_topic_partition_t *parts, size_t n)
{
    if (cl == NULL || (n > 0 && parts == NULL))
        return FERRY_ERR__INVALID_ARG;
    if (cl->type != FERRY_CONSUMER)
        return FERRY_ERR__WRONG_CLIENT_TYPE;
    if (n > FERRY_MAX_ARRAY_LEN)
        return FERRY_ERR__INVALID_ARG;
    for (size_t i = 0; i < n; i++) {
        const ferry_topic_partition_t *tp = &parts[i];
        if (tp->topic == NULL || tp->topic[0] == '\0' || strlen(tp->topic) > FERRY_MAX_TOPIC_NAME ||
            tp->partition < 0 || tp->offset < FERRY_OFFSET_BEGINNING)
            return FERRY_ERR__INVALID_ARG;
        for (size_t j = 0; j < i; j++)
            if (parts[j].partition == tp->partition && strcmp(parts[j].topic, tp->topic) == 0)
                return FERRY_ERR__INVALID_ARG;
    }
    /* Allocate everything before touching the shared state. */
    struct cpart *head = NULL, **tail = &head;
    for (size_t i = 0; i < n; i++) {
        struct cpart *cp = calloc(1, sizeof *cp);
        char *topic = strdup(parts[i].topic);
        if (cp == NULL || topic == NULL) {
            free(cp);
            free(topic);
            cpart_list_free(head);
            return FERRY_ERR__NO_MEMORY;
        }
        cp->topic = topic;
        cp->partition = parts[i].partition;
        cp->want_offset = parts[i].offset;
        cp->epoch = 1;
        cp->app_position = parts[i].offset >= 0 ? parts[i].offset : -1;
        *tail = cp;
        tail = &cp->next;
    }
    pthread_mutex_lock(&cl->lock);
    if (cl->closing || cl->closed) {
        pthread_mutex_unlock(&cl->lock);
        cpart_list_free(head);
        return FERRY_ERR__DESTROYED;
    }
    if (ferry_group_subscribed_locked(cl)) {
        pthread_mutex_unlock(&cl->lock);
        cpart_list_free(head);
        return FERRY_ERR__INVALID_ARG; /* the group owns the assignment */
    }
    for (struct cpart *cp = cl->asg; cp; cp = cp->next) {
        if (!cp->removed) {
            cp->removed = true;
            queue_drop_partition_locked(cl, cp);
        }
    }
    *tail = cl->asg;
    cl->asg = head;
    cl->asg_epoch++;
    ferry_wake_locked(cl);
    pthread_mutex_unlock(&cl->lock);
    return FERRY_ERR_NONE;
}

FERRY_API ferry_err_t ferry_seek(ferry_client_t *cl, const char *topic, int32_t partition, int64_t offset,
                                 int timeout_ms)
{
    (void)timeout_ms; /* seeking only records the position; it never waits */
    if (cl == NULL || topic == NULL || partition < 0 || offset < FERRY_OFFSET_BEGINNING)
        return FERRY_ERR__INVALID_ARG;
    if (cl->type != FERRY_CONSUMER)
        return FERRY_ERR__WRONG_CLIENT_TYPE;
    pthread_mutex_lock(&cl->lock);
    if (cl->closing || cl->closed) {
        pthread_mutex_unlock(&cl->lock);
        return FERRY_ERR__DESTROYED;
    }
    struct cpart *cp = find_assigned_locked(cl, topic, partition);
    if (cp == NULL) {
        pthread_mutex_unlock(&cl->lock);
        return FERRY_ERR__NOT_ASSIGNED;
    }
    bool back = offset >= 0 && (cp->app_position < 0 || offset < cp->app_position);
    ferry_consumer_seek_locked(cl, cp, offset);
    cp->rewind = back; /* the next commit of it may go below the committed offset */
    pthread_mutex_unlock(&cl->lock);
    return FERRY_ERR_NONE;
}

FERRY_API ferry_message_t *ferry_consumer_poll(ferry_client_t *cl, int timeout_ms)
{
    if (cl == NULL || cl->type != FERRY_CONSUMER)
        return NULL;
    int64_t deadline = ferry_deadline(timeout_ms);
    ferry_group_poll_begin(cl); /* serves rebalance/commit callbacks */
    pthread_mutex_lock(&cl->lock);
    while (cl->msgs == NULL && timeout_ms != 0) {
        if (ferry_group_events_pending_locked(cl)) {
            pthread_mutex_unlock(&cl->lock);
            ferry_group_serve(cl);
            pthread_mutex_lock(&cl->lock);
            continue;
        }
        if (cl->closing || cl->closed || ferry_cond_wait_until(cl, deadline) == ETIMEDOUT)
            break;
    }
    struct ferry_message *m = cl->msgs;
    if (m != NULL) {
        cl->msgs = m->next;
        if (cl->msgs == NULL)
            cl->msgs_tail = NULL;
        cl->msgs_bytes -= m->size;
        cl->msgs_count--;
        m->next = NULL;
        if (m->err == FERRY_ERR_NONE && m->cp != NULL)
            m->cp->app_position = m->offset + 1;
        m->cp = NULL;
        if (cl->fetch_starved && cl->msgs_bytes < prefetch_limit(cl) / 2) {
            cl->fetch_starved = false;
            ferry_wake_locked(cl);
        }
    }
    pthread_mutex_unlock(&cl->lock);
    ferry_group_poll_end(cl);
    return m;
}

/* ---- message accessors ---- */

FERRY_API void ferry_message_destroy(ferry_message_t *m)
{
    free(m);
}

FERRY_API ferry_err_t ferry_message_err(const ferry_message_t *m)
{
    return m ? m->err : FERRY_ERR__INVALID_ARG;
}

FERRY_API const char *ferry_message_errstr(const ferry_message_t *m)
{
    return m ? m->errstr : NULL;
}

FERRY_API const char *ferry_message_topic(const ferry_message_t *m)
{
    return m ? m->topic : NULL;
}

FERRY_API int32_t ferry_message_partition(const ferry_message_t *m)
{
    return m ? m->partition : -1;
}

FERRY_API int64_t ferry_message_offset(const ferry_message_t *m)
{
    return m ? m->offset : -1;
}

FERRY_API int64_t ferry_message_timestamp(const ferry_message_t *m)
{
    return m ? m->timestamp : -1;
}

FERRY_API const void *ferry_message_key(const ferry_message_t *m, size_t *len)
{
    if (len)
        *len = m ? m->key_len : 0;
    return m ? m->key : NULL;
}

FERRY_API const void *ferry_message_value(const ferry_message_t *m, size_t *len)
{
    if (len)
        *len = m ? m->value_len : 0;
    return m ? m->value : NULL;
}

FERRY_API size_t ferry_message_header_count(const ferry_message_t *m)
{
    return m ? m->header_count : 0;
}

FERRY_API ferry_err_t ferry_message_header(const ferry_message_t *m, size_t i, const char **name,
                                           const void **value, size_t *value_len)
{
    if (m == NULL || i >= m->header_count)
        return FERRY_ERR__INVALID_ARG;
    if (name)
        *name = m->headers[i].name;
    if (value)
        *value = m->headers[i].value;
    if (value_len)
        *value_len = m->headers[i].value_len;
    return FERRY_ERR_NONE;
}

FERRY_API ferry_err_t ferry_message_header_find(const ferry_message_t *m, const char *name, const void **value,
                                                size_t *value_len)
{
    if (m == NULL || name == NULL)
        return FERRY_ERR__INVALID_ARG;
    for (size_t i = m->header_count; i-- > 0;) {
        if (strcmp(m->headers[i].name, name) == 0) {
            if (value)
                *value = m->headers[i].value;
            if (value_len)
                *value_len = m->headers[i].value_len;
            return FERRY_ERR_NONE;
        }
    }
    return FERRY_ERR__INVALID_ARG;
}
