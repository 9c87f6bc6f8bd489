/* producer.c: ferry_produce, partitioning, per-partition batching, Produce requests, retries, reports. */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry_int.h"

/*
 * Ordering: with enable.idempotence=false each partition has at most ONE batch in flight. A batch
 * that fails with a retriable error goes back to its place (by seal order) in its partition's queue
 * and is resent (unchanged) after retry.backoff.ms, before anything newer of that partition, so a
 * failure never reorders records within a partition. Pipelining comes from many partitions sharing
 * a request and up to max.in.flight.requests.per.connection requests per broker. A retry after a
 * lost response may then duplicate a batch (at-least-once).
 *
 * Idempotence (enable.idempotence=true, the default; docs/protocol.md "Idempotent produce"):
 * the client first gets a producer id (InitProducerId, epoch 0; nothing is sent before). Each
 * partition has its own (epoch, next_seq) stream: a batch gets its base_sequence the first time it is
 * sent (not when sealed: the id may not be known yet; batches leave the queue in seal order, so
 * this is the same numbering), next_seq += record count, wrapping from INT32_MAX to 0. The header
 * is stamped in place and its CRC recomputed. A sequenced batch keeps its sequence for every retry:
 * it may have been written, and only its original numbering lets the leader recognise it. Up to
 * min(5, max.in.flight.requests.per.connection) batches of a partition are in flight, all on the
 * connection to its leader, which appends requests of a connection in order.
 *
 * Per partition, the state machine on each batch result:
 *   OK, or DUPLICATE_SEQUENCE (stored earlier; offset -1): delivered.
 *   retriable error (transport, timeout, NOT_LEADER, ...): the batch goes back to the queue at its
 *     seal-order place; the partition is HELD (sends nothing) until every batch still in flight
 *     has answered, then resends from the queue head in order, with the original sequences. The
 *     later in-flight batches answer meanwhile with the same retriable error (a closed connection
 *     fails them all), with success (the failed one had been written after all: its retry is then a
 *     duplicate, acknowledged with its original offset), or with OUT_OF_ORDER_SEQUENCE (the failed
 *     one was not written, so they left a gap): that last case is EXPECTED while an earlier batch of
 *     the partition is unacknowledged, and handled as retriable.
 *   OUT_OF_ORDER_SEQUENCE with no earlier batch outstanding (the leader lost our state, e.g. an
 *     unsynced tail after a power cut), or any permanent failure of a sequenced batch (a
 *     non-retriable error, delivery.timeout.ms): the sequence stream has a gap that nothing will
 *     fill. The partition is held until its in-flight batches answer, then BUMPS its epoch
 *     (epoch + 1, next_seq 0; the leader accepts sequence 0 of a newer epoch) and re-sequences
 *     every queued batch. A batch re-sequenced after it may have been written can be stored
 *     twice: that needs a permanent failure of an earlier batch of the same partition.
 *   INVALID_PRODUCER_EPOCH (fenced): the batch fails; the partition bumps as above.
 *
 * Batching (as Kafka's accumulator): each partition has one open batch that keeps filling until
 * it is SENT, i.e. it is sealed only when a Produce request takes it (or when it reaches
 * batch.size). A partition sends its open batch when nothing of it is in flight, linger.ms has
 * passed since the batch began (or a flush is running), and its leader has room for another
 * request; sealed batches (full ones, retries) may go while others are in flight, up to the
 * partition's in-flight cap (1, or 5 with idempotence).
 * So records arriving one at a time while the partition (or the connection) is busy accumulate
 * into the next batch instead of queueing as many tiny ones; with linger.ms=0 a lone record still
 * goes out at once.
 */

/* What a delivery report needs of one record once it is inside a batch. */
struct pdr {
    void *opaque;
    int64_t timestamp;
    size_t size; /* charged against queue.buffering.max.kbytes */
};

struct pbatch {
    struct pbatch *next;
    struct ppart *pp;
    uint8_t *buf; /* sealed batch */
    size_t len;
    struct pdr *drs;
    uint32_t n;
    int64_t first_enqueued_ms;
    int attempts;
    uint64_t order;  /* seal order within the partition: retries go back to this place */
    bool sequenced;  /* idempotent: base_seq/epoch stamped into buf (kept for every retry) */
    int32_t base_seq;
};

struct ppart {
    struct ctopic *topic;
    int32_t id;
    /* the open batch: fills until it is sent (or reaches batch.size) */
    struct ferry_batch_builder *builder;
    struct pdr *drs;
    uint32_t n, cap;
    int64_t created_ms;
    int64_t first_enqueued_ms;
    /* sealed batches not yet sent, oldest first (a retried batch, or batches sealed full), and the
     * one in flight */
    struct pbatch *queue, *queue_tail;
    struct pbatch *inflight, *inflight_tail; /* in send order */
    int n_inflight;
    int64_t retry_at_ms;
    uint64_t next_order;
    /* idempotence (see the state machine above) */
    int32_t next_seq;
    int16_t epoch;
    bool hold; /* a batch is being retried: send nothing until the in-flight ones have answered */
    bool bump; /* the sequence stream has a gap: bump the epoch once nothing is in flight */
};

/* A Produce request's batches, in request order. */
struct preq {
    size_t n;
    struct pbatch *batches[];
};

/* ---- delivery reports ---- */

void ferry_report_free(struct delivery_report *r)
{
    free(r);
}

/*
 * The reports of n records of one partition in one allocation: n views, then the topic name and
 * the error message they share. n <= FERRY_MAX_RECORDS_PER_BATCH, so the size cannot overflow.
 */
static struct delivery_report *report_new(const char *topic, int32_t partition, int64_t base_offset,
                                          const struct pdr *drs, uint32_t n, ferry_err_t err, const char *errmsg)
{
    assert(n >= 1 && n <= FERRY_MAX_RECORDS_PER_BATCH);
    size_t tl = strlen(topic) + 1;
    size_t el = err != FERRY_ERR_NONE && errmsg != NULL ? strlen(errmsg) + 1 : 0;
    struct delivery_report *r = malloc(sizeof *r + n * sizeof r->d[0] + tl + el);
    if (r == NULL)
        return NULL;
    char *p = (char *)&r->d[n];
    memcpy(p, topic, tl);
    const char *msg = NULL;
    if (el > 0) {
        memcpy(p + tl, errmsg, el);
        msg = p + tl;
    }
    r->next = NULL;
    r->n = n;
    for (uint32_t i = 0; i < n; i++) {
        r->d[i] = (ferry_delivery_t){
            .err = err,
            .error_message = msg,
            .topic = p,
            .partition = partition,
            .offset = base_offset >= 0 && err == FERRY_ERR_NONE ? base_offset + i : -1,
            .timestamp = drs[i].timestamp,
            .opaque = drs[i].opaque,
        };
    }
    return r;
}

/*
 * Completes n records: queues their reports (if a delivery callback is set) and releases their
 * queue space. base_offset < 0 means no offsets (error or acks=0).
 */
static void complete_records(struct ferry_client *cl, const char *topic, int32_t partition, const struct pdr *drs,
                             uint32_t n, int64_t base_offset, ferry_err_t err, const char *errmsg)
{
    size_t bytes = 0;
    for (uint32_t i = 0; i < n; i++)
        bytes += drs[i].size;
    struct delivery_report *r = NULL;
    if (cl->delivery_cb != NULL && n > 0) {
        r = report_new(topic, partition, base_offset, drs, n, err, errmsg);
        if (r == NULL)
            ferry_log(cl, FERRY_LOG_ERR, "out of memory: %u delivery reports of %s/%d dropped", (unsigned)n, topic,
                      (int)partition);
    }
    pthread_mutex_lock(&cl->lock);
    if (r != NULL) {
        if (cl->drs_tail)
            cl->drs_tail->next = r;
        else
            cl->drs = r;
        cl->drs_tail = r;
    } else {
        cl->outq -= n; /* records without a queued report are done now */
    }
    cl->q_msgs -= n;
    cl->q_bytes -= bytes;
    pthread_cond_broadcast(&cl->cond);
    pthread_mutex_unlock(&cl->lock);
}

static void fail_precord(struct ferry_client *cl, struct precord *r, ferry_err_t err, const char *errmsg)
{
    struct pdr d = {.opaque = r->opaque, .timestamp = r->timestamp, .size = r->size};
    complete_records(cl, r->topic_name, r->partition, &d, 1, -1, err, errmsg);
    ferry_precord_free(r);
}

void ferry_precord_free(struct precord *r)
{
    if (!r->in_chunk)
        free(r);
}

static void chunks_free(struct rchunk *ch)
{
    while (ch) {
        struct rchunk *next = ch->next;
        free(ch);
        ch = next;
    }
}

void ferry_producer_free_incoming(struct ferry_client *cl)
{
    while (cl->in_recs) {
        struct precord *next = cl->in_recs->next;
        ferry_precord_free(cl->in_recs);
        cl->in_recs = next;
    }
    cl->in_recs_tail = NULL;
    chunks_free(cl->in_chunks);
    cl->in_chunks = cl->in_chunk_tail = NULL;
}

/* Takes the records produced so far and the chunks holding them (I/O thread). */
static struct precord *take_incoming(struct ferry_client *cl, struct rchunk **chunks)
{
    pthread_mutex_lock(&cl->lock);
    struct precord *r = cl->in_recs;
    *chunks = cl->in_chunks;
    cl->in_recs = cl->in_recs_tail = NULL;
    cl->in_chunks = cl->in_chunk_tail = NULL;
    cl->io_flushing = cl->flushing > 0;
    pthread_mutex_unlock(&cl->lock);
    return r;
}

/* Where p (inside from's block) lies in the copy `to` of that block. */
static void *relocate(const struct precord *from, struct precord *to, const void *p)
{
    return p == NULL ? NULL : (uint8_t *)to + ((const uint8_t *)p - (const uint8_t *)from);
}

/* A copy of r in an allocation of its own (r stays valid), for records that outlive their chunk.
 * NULL when out of memory. */
static struct precord *precord_detach(const struct precord *r)
{
    struct precord *c = malloc(r->alloc);
    if (c == NULL)
        return NULL;
    memcpy(c, r, r->alloc);
    c->in_chunk = false;
    c->next = NULL;
    c->topic_name = relocate(r, c, r->topic_name);
    c->key = relocate(r, c, r->key);
    c->value = relocate(r, c, r->value);
    c->headers = relocate(r, c, r->headers);
    for (uint32_t i = 0; i < c->header_count; i++) {
        c->headers[i].name = relocate(r, c, r->headers[i].name);
        c->headers[i].value = relocate(r, c, r->headers[i].value);
    }
    return c;
}

static void batch_free(struct pbatch *b)
{
    free(b->buf);
    free(b->drs);
    free(b);
}

static void complete_batch(struct ferry_client *cl, struct pbatch *b, int64_t base_offset, ferry_err_t err,
                           const char *errmsg)
{
    complete_records(cl, b->pp->topic->name, b->pp->id, b->drs, b->n, base_offset, err, errmsg);
    batch_free(b);
}

/* ---- partitions and batches ---- */

void ferry_ppart_free(struct ppart *pp)
{
    if (pp == NULL)
        return;
    ferry_batch_builder_free(pp->builder);
    free(pp->drs);
    while (pp->queue) {
        struct pbatch *next = pp->queue->next;
        batch_free(pp->queue);
        pp->queue = next;
    }
    assert(pp->inflight == NULL);
    free(pp);
}

static struct ppart *ppart_get(struct ctopic *t, int32_t partition)
{
    assert(partition >= 0 && partition < t->partition_count);
    if (t->pparts[partition] == NULL) {
        struct ppart *pp = calloc(1, sizeof *pp);
        if (pp == NULL)
            return NULL;
        pp->topic = t;
        pp->id = partition;
        t->pparts[partition] = pp;
    }
    return t->pparts[partition];
}

/* Seals the open batch of pp onto the tail of its send queue: it is being sent, or it is full. */
static void ppart_close_batch(struct ferry_client *cl, struct ppart *pp)
{
    if (pp->builder == NULL)
        return;
    if (pp->topic->sticky == pp->id) {
        pp->topic->sticky_prev = pp->id;
        pp->topic->sticky = -1; /* the sticky partition's batch is done: move on */
    }
    struct pbatch *b = calloc(1, sizeof *b);
    struct ferry_batch_builder *builder = pp->builder;
    pp->builder = NULL;
    struct pdr *drs = pp->drs;
    uint32_t n = pp->n;
    pp->drs = NULL;
    pp->n = pp->cap = 0;
    if (b == NULL) {
        ferry_batch_builder_free(builder);
        complete_records(cl, pp->topic->name, pp->id, drs, n, -1, FERRY_ERR__NO_MEMORY, "out of memory");
        free(drs);
        return;
    }
    int rc = ferry_batch_builder_seal(builder, &b->buf, &b->len); /* frees the builder */
    b->pp = pp;
    b->drs = drs;
    b->n = n;
    b->first_enqueued_ms = pp->first_enqueued_ms;
    b->order = pp->next_order++;
    if (rc != 0) {
        char msg[128];
        snprintf(msg, sizeof msg, "sealing the batch failed: %s", ferry_err_str(rc));
        complete_batch(cl, b, -1, (ferry_err_t)rc, msg);
        return;
    }
    if (pp->queue_tail)
        pp->queue_tail->next = b;
    else
        pp->queue = b;
    pp->queue_tail = b;
}

/* Fails the records of pp's open batch (if any) with err and drops the batch. */
static void ppart_drop_open(struct ferry_client *cl, struct ppart *pp, ferry_err_t err, const char *why)
{
    if (pp->builder == NULL)
        return;
    ferry_batch_builder_free(pp->builder);
    pp->builder = NULL;
    complete_records(cl, pp->topic->name, pp->id, pp->drs, pp->n, -1, err, why);
    free(pp->drs);
    pp->drs = NULL;
    pp->n = pp->cap = 0;
}

/* Drops pp's open batch if it holds no record (a first record was refused): never send it empty. */
static void ppart_drop_if_empty(struct ppart *pp)
{
    if (pp->builder != NULL && pp->n == 0) {
        ferry_batch_builder_free(pp->builder);
        pp->builder = NULL;
    }
}

/* Batches of one partition that may be in flight at once (see the top of the file). */
static int ppart_max_inflight(const struct ferry_client *cl)
{
    if (!cl->s.idempotence)
        return 1;
    return cl->s.max_inflight < 5 ? (int)cl->s.max_inflight : 5;
}

/* Whether pp has room for one more batch in flight (idempotence: id known, not held). */
static bool ppart_can_send(const struct ferry_client *cl, const struct ppart *pp)
{
    if (pp->n_inflight >= ppart_max_inflight(cl))
        return false;
    if (cl->s.idempotence && (cl->pid_state != PID_READY || ((pp->hold || pp->bump) && pp->n_inflight > 0)))
        return false;
    return true;
}

/* Whether pp may put a batch into a request now: room in flight, no retry backoff pending, and a
 * sealed batch waiting or an open one whose linger is over (or a flush runs). */
static bool ppart_sendable(const struct ferry_client *cl, const struct ppart *pp, int64_t now)
{
    if (pp == NULL || !ppart_can_send(cl, pp) || now < pp->retry_at_ms)
        return false;
    if (pp->queue != NULL)
        return true; /* sealed batches (full ones, retries) pipeline up to the in-flight cap */
    if (pp->n_inflight > 0)
        return false; /* the open batch keeps filling behind the ones in flight */
    return pp->builder != NULL && (cl->io_flushing || now - pp->created_ms >= cl->s.linger_ms);
}

static int32_t pick_partition(struct ferry_client *cl, struct ctopic *t, const struct precord *r)
{
    if (r->partition >= 0)
        return r->partition;
    if (r->key != NULL)
        return ferry_partition_for_key(r->key, r->key_len, t->partition_count);
    if (t->sticky >= 0 && t->sticky < t->partition_count)
        return t->sticky;
    /* A new sticky partition: a random one that has a leader, avoiding the previous choice. */
    uint64_t x = (uint64_t)cl->next_partition_seed;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    cl->next_partition_seed = (int64_t)x;
    int32_t n = t->partition_count;
    int32_t start = (int32_t)(x % (uint64_t)n);
    int32_t choice = -1;
    for (int32_t i = 0; i < n && choice < 0; i++) {
        int32_t p = (start + i) % n;
        if (t->leaders[p] >= 0 && (p != t->sticky_prev || n == 1))
            choice = p;
    }
    if (choice < 0)
        choice = start; /* no leader anywhere: wait on any partition */
    t->sticky = choice;
    return choice;
}

/* Adds a record to its partition's open batch (the topic's metadata is known). Consumes r. */
static void place_record(struct ferry_client *cl, struct precord *r, int64_t now)
{
    struct ctopic *t = r->topic;
    int32_t p = pick_partition(cl, t, r);
    if (p < 0 || p >= t->partition_count) {
        char msg[160];
        snprintf(msg, sizeof msg, "partition %d of topic %s does not exist (%d partitions)", (int)r->partition,
                 t->name, (int)t->partition_count);
        fail_precord(cl, r, FERRY_ERR_UNKNOWN_TOPIC_OR_PARTITION, msg);
        return;
    }
    r->partition = p;
    struct ppart *pp = ppart_get(t, p);
    if (pp == NULL) {
        fail_precord(cl, r, FERRY_ERR__NO_MEMORY, "out of memory");
        return;
    }
    size_t est = r->size;
    if (pp->builder != NULL && ferry_batch_builder_size(pp->builder) + est > (size_t)cl->s.batch_size)
        ppart_close_batch(cl, pp);
    for (int attempt = 0; attempt < 2; attempt++) {
        if (pp->builder == NULL) {
            pp->builder = ferry_batch_builder_new((int)cl->s.compression, -1, -1, -1);
            if (pp->builder == NULL) {
                fail_precord(cl, r, FERRY_ERR__NO_MEMORY, "out of memory");
                return;
            }
            pp->created_ms = now;
            pp->first_enqueued_ms = r->enqueued_ms;
        }
        if (pp->n == pp->cap) {
            uint32_t cap = pp->cap ? pp->cap * 2 : 64;
            struct pdr *d = realloc(pp->drs, cap * sizeof *d);
            if (d == NULL) {
                ppart_drop_if_empty(pp);
                fail_precord(cl, r, FERRY_ERR__NO_MEMORY, "out of memory");
                return;
            }
            pp->drs = d;
            pp->cap = cap;
        }
        int rc = ferry_batch_builder_add(pp->builder, r->timestamp, r->key, r->key ? (ssize_t)r->key_len : -1,
                                         r->value, r->value ? (ssize_t)r->value_len : -1, r->headers,
                                         r->header_count);
        if (rc == 0) {
            pp->drs[pp->n++] = (struct pdr){.opaque = r->opaque, .timestamp = r->timestamp, .size = r->size};
            if (r->enqueued_ms < pp->first_enqueued_ms)
                pp->first_enqueued_ms = r->enqueued_ms;
            ferry_precord_free(r);
            if (ferry_batch_builder_size(pp->builder) >= (size_t)cl->s.batch_size)
                ppart_close_batch(cl, pp);
            return;
        }
        if (pp->n == 0 || attempt == 1) {
            ppart_drop_if_empty(pp);
            fail_precord(cl, r, FERRY_ERR_INVALID_RECORD, "record rejected by the batch builder");
            return;
        }
        ppart_close_batch(cl, pp); /* full (record count or timestamp span): start a new batch */
    }
}

void ferry_producer_topic_updated(struct ferry_client *cl, struct ctopic *t)
{
    if (t->state == TOPIC_UNKNOWN)
        return;
    struct precord *r = t->pending;
    t->pending = t->pending_tail = NULL;
    int64_t now = ferry_now_ms();
    while (r) {
        struct precord *next = r->next;
        r->next = NULL;
        if (t->state == TOPIC_KNOWN) {
            place_record(cl, r, now);
        } else {
            char msg[640];
            snprintf(msg, sizeof msg, "topic %s does not exist", t->name);
            fail_precord(cl, r, t->topic_err ? (ferry_err_t)t->topic_err : FERRY_ERR_UNKNOWN_TOPIC_OR_PARTITION,
                         msg);
        }
        r = next;
    }
    ferry_kick(cl);
}

/* ---- Produce requests ---- */

/* Unlinks b from pp's in-flight list; the hold ends once nothing is in flight. */
static void inflight_remove(struct ppart *pp, struct pbatch *b)
{
    struct pbatch **bp = &pp->inflight, *prev = NULL;
    while (*bp != NULL && *bp != b) {
        prev = *bp;
        bp = &(*bp)->next;
    }
    assert(*bp == b);
    *bp = b->next;
    if (pp->inflight_tail == b)
        pp->inflight_tail = prev;
    b->next = NULL;
    pp->n_inflight--;
    if (pp->n_inflight == 0)
        pp->hold = false;
}

/* Puts b back into pp's queue at its seal-order place. */
static void queue_insert_ordered(struct ppart *pp, struct pbatch *b)
{
    struct pbatch **bp = &pp->queue;
    while (*bp != NULL && (*bp)->order < b->order)
        bp = &(*bp)->next;
    b->next = *bp;
    *bp = b;
    if (b->next == NULL)
        pp->queue_tail = b;
}

/* Whether a batch of pp sealed before b is still unacknowledged (queued or in flight). */
static bool earlier_outstanding(const struct ppart *pp, const struct pbatch *b)
{
    for (const struct pbatch *x = pp->inflight; x; x = x->next)
        if (x->order < b->order)
            return true;
    for (const struct pbatch *x = pp->queue; x; x = x->next)
        if (x->order < b->order)
            return true;
    return false;
}

static void handle_batch_result(struct ferry_client *cl, struct pbatch *b, int64_t base_offset, int err,
                                const char *errmsg)
{
    struct ppart *pp = b->pp;
    inflight_remove(pp, b);
    int64_t now = ferry_now_ms();
    bool idem = cl->s.idempotence != 0;
    if (err == FERRY_ERR_NONE || (idem && err == FERRY_ERR_DUPLICATE_SEQUENCE)) {
        /* DUPLICATE_SEQUENCE: stored by an earlier attempt whose offset the leader no longer knows. */
        complete_batch(cl, b, err == FERRY_ERR_NONE ? base_offset : -1, FERRY_ERR_NONE, NULL);
        return;
    }
    if (cl->stopping) {
        complete_batch(cl, b, -1, FERRY_ERR__PURGED, "client closed before the broker answered");
        return;
    }
    if (err == FERRY_ERR_NOT_LEADER || err == FERRY_ERR_UNKNOWN_TOPIC_OR_PARTITION || err == FERRY_ERR__TRANSPORT ||
        err == FERRY_ERR__TIMED_OUT || err == FERRY_ERR_BROKER_NOT_AVAILABLE)
        ferry_metadata_refresh(cl, "produce failed");
    bool retriable = ferry_err_is_retriable((ferry_err_t)err);
    if (idem && err == FERRY_ERR_OUT_OF_ORDER_SEQUENCE) {
        /* Expected after an earlier batch failed: it leaves a gap until it is resent. Otherwise the
         * leader lost our sequence state: bump the epoch and resend under the new one. */
        if (!earlier_outstanding(pp, b) && !pp->bump) {
            ferry_log(cl, FERRY_LOG_WARNING,
                      "produce to %s/%d: sequence %d out of order with nothing earlier outstanding (%s); "
                      "restarting the partition's sequence under a new epoch",
                      pp->topic->name, (int)pp->id, (int)b->base_seq, errmsg ? errmsg : "");
            pp->bump = true;
        }
        retriable = true;
    }
    bool expired = now - b->first_enqueued_ms >= cl->s.delivery_timeout_ms;
    if (retriable && !expired) {
        b->attempts++;
        ferry_log(cl, FERRY_LOG_INFO, "produce to %s/%d failed (%s), retry %d", pp->topic->name, (int)pp->id,
                  errmsg ? errmsg : ferry_err_str(err), b->attempts);
        queue_insert_ordered(pp, b);
        if (pp->n_inflight > 0)
            pp->hold = true; /* resend in order once every later batch has answered */
        pp->retry_at_ms = now + cl->s.retry_backoff_ms;
        return;
    }
    if (idem && b->sequenced)
        pp->bump = true; /* its sequence range stays a gap: start a new epoch */
    char msg[640];
    snprintf(msg, sizeof msg, "%s%s", expired && retriable ? "delivery.timeout.ms expired; last error: " : "",
             errmsg ? errmsg : ferry_err_str(err));
    complete_batch(cl, b, -1, (ferry_err_t)err, msg);
}

static void on_produce(struct ferry_client *cl, struct broker *br, int err, const char *errmsg,
                       const struct ferry_response_header *rh, void *arg)
{
    struct preq *rq = arg;
    br->n_produce_inflight--;
    if (err == 0 && rh->error != 0) {
        err = rh->error;
        errmsg = rh->error_message ? rh->error_message : ferry_err_str(rh->error);
    }
    if (err != 0) {
        for (size_t i = 0; i < rq->n; i++)
            handle_batch_result(cl, rq->batches[i], -1, err, errmsg);
        free(rq);
        ferry_kick(cl);
        return;
    }
    /* Match each batch to its topic/partition result. */
    struct ferry_mp_reader rd = {0};
    const msgpack_object_array *topics = ferry_mp_array(&rd, rh->body, "topics", 1);
    for (size_t i = 0; i < rq->n; i++) {
        struct pbatch *b = rq->batches[i];
        int perr = FERRY_ERR__BAD_RESPONSE;
        const char *pmsg = "no result for this partition in the produce response";
        char msgbuf[FERRY_MAX_ERROR_MESSAGE + 1];
        int64_t base = -1;
        int64_t leader_hint = -1;
        for (uint32_t ti = 0; !rd.err && topics && ti < topics->size; ti++) {
            const msgpack_object *tm = ferry_mp_elem_map(&rd, topics, ti, "topics");
            size_t nl;
            const char *name = ferry_mp_str(&rd, tm, "name", &nl, 1);
            if (rd.err || nl != strlen(b->pp->topic->name) || memcmp(name, b->pp->topic->name, nl) != 0)
                continue;
            const msgpack_object_array *parts = ferry_mp_array(&rd, tm, "partitions", 1);
            for (uint32_t pi = 0; !rd.err && pi < parts->size; pi++) {
                const msgpack_object *pm = ferry_mp_elem_map(&rd, parts, pi, "partitions");
                int64_t pid = ferry_mp_int(&rd, pm, "partition", -1, 1);
                if (rd.err || pid != b->pp->id)
                    continue;
                perr = (int)ferry_mp_int(&rd, pm, "error", 0, 0);
                base = ferry_mp_int(&rd, pm, "base_offset", -1, 0);
                leader_hint = ferry_mp_int(&rd, pm, "leader_id", -1, 0);
                size_t ml;
                const char *m = ferry_mp_str(&rd, pm, "error_message", &ml, 0);
                if (m != NULL) {
                    snprintf(msgbuf, sizeof msgbuf, "%.*s", (int)ml, m);
                    pmsg = msgbuf;
                } else {
                    pmsg = NULL;
                }
            }
        }
        if (rd.err) {
            perr = FERRY_ERR__BAD_RESPONSE;
            pmsg = rd.errmsg;
        }
        if (perr == FERRY_ERR_NONE && base < 0) {
            perr = FERRY_ERR__BAD_RESPONSE;
            pmsg = "produce response without base_offset";
        }
        /* NOT_LEADER naming another known broker: the retry goes there at once, without waiting for
         * metadata or the retry backoff (order is kept: it is requeued at its place, held until
         * the batches after it answered). */
        struct ppart *pp = b->pp;
        bool redirect = perr == FERRY_ERR_NOT_LEADER && leader_hint >= 0 && leader_hint <= INT32_MAX &&
                        leader_hint != br->id && pp->id < pp->topic->partition_count &&
                        ferry_broker_by_id(cl, (int32_t)leader_hint) != NULL;
        if (redirect)
            pp->topic->leaders[pp->id] = (int32_t)leader_hint;
        handle_batch_result(cl, b, base, perr, pmsg); /* may free b */
        if (redirect)
            pp->retry_at_ms = 0;
    }
    free(rq);
    ferry_kick(cl);
}

/* Gives b the partition's next sequence under the producer id and the partition's epoch: patches
 * producer_id, producer_epoch and base_sequence in the sealed header and recomputes the CRC. */
static void batch_stamp(struct ferry_client *cl, struct ppart *pp, struct pbatch *b)
{
    struct ferry_batch_header h;
    assert(b->len >= FERRY_BATCH_HEADER_SIZE && cl->pid_state == PID_READY);
    ferry_batch_header_decode(b->buf, &h);
    h.producer_id = cl->producer_id;
    h.producer_epoch = pp->epoch;
    h.base_sequence = pp->next_seq;
    ferry_batch_header_encode(&h, b->buf);
    uint32_t crc = ferry_crc32c(0, b->buf + FERRY_BATCH_CRC_START, b->len - FERRY_BATCH_CRC_START);
    b->buf[FERRY_BATCH_OFF_CRC] = (uint8_t)(crc >> 24);
    b->buf[FERRY_BATCH_OFF_CRC + 1] = (uint8_t)(crc >> 16);
    b->buf[FERRY_BATCH_OFF_CRC + 2] = (uint8_t)(crc >> 8);
    b->buf[FERRY_BATCH_OFF_CRC + 3] = (uint8_t)crc;
    b->base_seq = pp->next_seq;
    b->sequenced = true;
    /* Sequences wrap from INT32_MAX to 0 (as Kafka). */
    pp->next_seq = (int32_t)(((int64_t)pp->next_seq + (int64_t)b->n) % ((int64_t)INT32_MAX + 1));
}

/* After a gap (see the top of the file), once nothing of pp is in flight: a new epoch, sequences
 * from 0, every queued batch numbered again when it is sent. */
static void ppart_maybe_bump(struct ferry_client *cl, struct ppart *pp)
{
    if (!pp->bump || pp->n_inflight > 0)
        return;
    pp->bump = false;
    if (pp->epoch == INT16_MAX) {
        ferry_log(cl, FERRY_LOG_ERR, "produce to %s/%d: producer epoch exhausted; asking for a new producer id",
                  pp->topic->name, (int)pp->id);
        cl->pid_state = PID_NONE; /* every partition restarts under the new id (epochs and sequences reset) */
        return;
    }
    pp->epoch++;
    pp->next_seq = 0;
    for (struct pbatch *x = pp->queue; x; x = x->next)
        x->sequenced = false;
    ferry_log(cl, FERRY_LOG_INFO, "produce to %s/%d: sequences restart at 0 under epoch %d", pp->topic->name,
              (int)pp->id, (int)pp->epoch);
}

/*
 * Sends one Produce request to b with one batch of every partition it leads that can send (bounded
 * by the frame size): the partition's oldest sealed batch, else its open batch, sealed now.
 * Returns the number of batches sent.
 */
static size_t send_produce(struct ferry_client *cl, struct broker *b, int64_t now)
{
    /* Leave room for the envelope and per-partition keys. */
    const size_t budget = FERRY_MAX_FRAME_BYTES - 256 * 1024;
    size_t count = 0, bytes = 0;
    for (struct ctopic *t = cl->topics; t; t = t->next) {
        for (int32_t p = 0; t->pparts && p < t->partition_count; p++) {
            if (t->leaders[p] == b->id && ppart_sendable(cl, t->pparts[p], now))
                count++;
        }
    }
    if (count == 0)
        return 0;
    struct preq *rq = malloc(sizeof *rq + count * sizeof rq->batches[0]);
    if (rq == NULL)
        return 0;
    rq->n = 0;
    size_t ntopics = 0;
    for (struct ctopic *t = cl->topics; t; t = t->next) {
        bool any = false;
        for (int32_t p = 0; t->pparts && p < t->partition_count && rq->n < count; p++) {
            struct ppart *pp = t->pparts[p];
            if (t->leaders[p] != b->id || !ppart_sendable(cl, pp, now))
                continue;
            size_t len = pp->queue ? pp->queue->len : ferry_batch_builder_size(pp->builder);
            if (rq->n > 0 && bytes + len > budget)
                continue; /* the next request takes it */
            if (pp->queue == NULL) {
                ppart_close_batch(cl, pp); /* sealed at send time */
                if (pp->queue == NULL)
                    continue; /* sealing failed: its records are completed with the error */
            }
            if (cl->s.idempotence && !pp->queue->sequenced)
                batch_stamp(cl, pp, pp->queue);
            bytes += pp->queue->len + 32;
            rq->batches[rq->n++] = pp->queue;
            any = true;
        }
        ntopics += any;
    }
    if (rq->n == 0) {
        free(rq);
        return 0;
    }

    msgpack_sbuffer sb;
    msgpack_packer pk;
    uint32_t corr = ferry_request_begin(cl, &sb, &pk, FERRY_API_PRODUCE);
    /* Size the frame once: the batches are copied in a single time, not through repeated growth. */
    size_t want = sb.size + bytes + 256 + ntopics * (FERRY_MAX_TOPIC_NAME + 16);
    if (want > sb.alloc) {
        char *d = realloc(sb.data, want);
        if (d != NULL) {
            sb.data = d;
            sb.alloc = want;
        }
    }
    msgpack_pack_map(&pk, 3);
    ferry_pack_key(&pk, "acks");
    msgpack_pack_int64(&pk, cl->s.acks);
    ferry_pack_key(&pk, "timeout_ms");
    msgpack_pack_int64(&pk, cl->s.request_timeout_ms);
    ferry_pack_key(&pk, "topics");
    msgpack_pack_array(&pk, ntopics);
    size_t i = 0;
    while (i < rq->n) {
        struct ctopic *t = rq->batches[i]->pp->topic;
        size_t j = i;
        while (j < rq->n && rq->batches[j]->pp->topic == t)
            j++;
        msgpack_pack_map(&pk, 2);
        ferry_pack_key(&pk, "name");
        ferry_pack_str(&pk, t->name);
        ferry_pack_key(&pk, "partitions");
        msgpack_pack_array(&pk, j - i);
        for (size_t k = i; k < j; k++) {
            msgpack_pack_map(&pk, 2);
            ferry_pack_key(&pk, "partition");
            msgpack_pack_int32(&pk, rq->batches[k]->pp->id);
            ferry_pack_key(&pk, "batch");
            ferry_pack_bin(&pk, rq->batches[k]->buf, rq->batches[k]->len);
        }
        i = j;
    }

    /* Move the batches from their queues to in flight. */
    for (size_t k = 0; k < rq->n; k++) {
        struct pbatch *bt = rq->batches[k];
        struct ppart *pp = bt->pp;
        pp->queue = bt->next;
        if (pp->queue == NULL)
            pp->queue_tail = NULL;
        bt->next = NULL;
        if (pp->inflight_tail)
            pp->inflight_tail->next = bt;
        else
            pp->inflight = bt;
        pp->inflight_tail = bt;
        pp->n_inflight++;
    }

    bool acks0 = cl->s.acks == 0;
    int err = ferry_request_send(cl, b, &sb, corr, FERRY_API_PRODUCE, 0, acks0 ? NULL : on_produce, rq);
    if (err != 0) {
        for (size_t k = 0; k < rq->n; k++)
            handle_batch_result(cl, rq->batches[k], -1, err, "sending the produce request failed");
        free(rq);
        return 0;
    }
    size_t sent = rq->n;
    if (acks0) {
        /* No response will come: the records are delivered once written. */
        for (size_t k = 0; k < rq->n; k++)
            handle_batch_result(cl, rq->batches[k], -1, FERRY_ERR_NONE, NULL);
        free(rq);
        return sent;
    }
    b->n_produce_inflight++;
    return sent;
}

/* ---- the producer id (idempotence) ---- */

static void on_init_pid(struct ferry_client *cl, struct broker *br, int err, const char *errmsg,
                        const struct ferry_response_header *rh, void *arg)
{
    (void)br;
    (void)arg;
    if (err == FERRY_ERR__DESTROYED) {
        cl->pid_state = PID_NONE;
        return;
    }
    if (err == 0 && rh->error != 0) {
        err = rh->error;
        errmsg = rh->error_message ? rh->error_message : ferry_err_str(rh->error);
    }
    int64_t pid = -1, epoch = -1;
    if (err == 0) {
        struct ferry_mp_reader rd = {0};
        pid = rh->body ? ferry_mp_int_range(&rd, rh->body, "producer_id", -1, 1, 0, INT64_MAX) : -1;
        epoch = rh->body ? ferry_mp_int_range(&rd, rh->body, "producer_epoch", -1, 1, 0, INT16_MAX) : -1;
        if (rd.err || rh->body == NULL) {
            err = FERRY_ERR__BAD_RESPONSE;
            errmsg = rh->body ? rd.errmsg : "InitProducerId response without a body";
        }
    }
    if (err != 0) {
        ferry_log(cl, FERRY_LOG_WARNING, "InitProducerId failed (%s); retrying", errmsg ? errmsg : ferry_err_str(err));
        cl->pid_state = PID_NONE;
        cl->pid_retry_at_ms = ferry_now_ms() + cl->s.retry_backoff_ms;
        ferry_kick(cl);
        return;
    }
    cl->producer_id = pid;
    cl->producer_epoch = (int16_t)epoch;
    cl->pid_state = PID_READY;
    /* A new id: every partition's sequence stream starts again (also after an epoch ran out). */
    for (struct ctopic *t = cl->topics; t; t = t->next) {
        for (int32_t p = 0; t->pparts && p < t->partition_count; p++) {
            struct ppart *pp = t->pparts[p];
            if (pp == NULL)
                continue;
            pp->epoch = (int16_t)epoch;
            pp->next_seq = 0;
            pp->bump = false;
            for (struct pbatch *x = pp->queue; x; x = x->next)
                x->sequenced = false;
            for (struct pbatch *x = pp->inflight; x; x = x->next)
                x->sequenced = false;
        }
    }
    ferry_log(cl, FERRY_LOG_DEBUG, "idempotent producer: id %lld epoch %d", (long long)pid, (int)epoch);
    ferry_kick(cl);
}

/* Asks any reachable broker for a producer id when there is something to send and none is known. */
static void pid_service(struct ferry_client *cl, int64_t now)
{
    if (cl->pid_state != PID_NONE || now < cl->pid_retry_at_ms)
        return;
    struct broker *b = ferry_broker_any_up(cl);
    if (b == NULL)
        return; /* connecting; the next pass tries again */
    msgpack_sbuffer sb;
    msgpack_packer pk;
    uint32_t corr = ferry_request_begin(cl, &sb, &pk, FERRY_API_INIT_PRODUCER_ID);
    msgpack_pack_map(&pk, 1);
    ferry_pack_key(&pk, "transactional_id");
    msgpack_pack_nil(&pk);
    if (ferry_request_send(cl, b, &sb, corr, FERRY_API_INIT_PRODUCER_ID, 0, on_init_pid, NULL) != 0) {
        cl->pid_retry_at_ms = now + cl->s.retry_backoff_ms;
        return;
    }
    cl->pid_state = PID_REQUESTING;
}

/* ---- the service pass ---- */

/* Fails queued batches and pending records older than delivery.timeout.ms. */
static void expire(struct ferry_client *cl, struct ctopic *t, int64_t now)
{
    int64_t limit = cl->s.delivery_timeout_ms;
    struct precord **rp = &t->pending;
    t->pending_tail = NULL;
    while (*rp) {
        struct precord *r = *rp;
        if (now - r->enqueued_ms >= limit) {
            *rp = r->next;
            char msg[640];
            if (t->topic_err == FERRY_ERR_UNKNOWN_TOPIC_OR_PARTITION) { /* metadata kept saying so */
                snprintf(msg, sizeof msg, "topic %s does not exist (delivery.timeout.ms expired waiting for it)",
                         t->name);
                fail_precord(cl, r, FERRY_ERR_UNKNOWN_TOPIC_OR_PARTITION, msg);
                continue;
            }
            snprintf(msg, sizeof msg, "delivery.timeout.ms expired waiting for metadata of topic %s%s%s", t->name,
                     cl->last_error[0] ? "; last connection error: " : "", cl->last_error);
            fail_precord(cl, r, FERRY_ERR__TIMED_OUT, msg);
            continue;
        }
        t->pending_tail = r;
        rp = &r->next;
    }
    for (int32_t p = 0; t->pparts && p < t->partition_count; p++) {
        struct ppart *pp = t->pparts[p];
        while (pp && pp->queue && now - pp->queue->first_enqueued_ms >= limit) {
            struct pbatch *b = pp->queue;
            pp->queue = b->next;
            if (pp->queue == NULL)
                pp->queue_tail = NULL;
            char msg[640];
            snprintf(msg, sizeof msg, "delivery.timeout.ms expired before the batch could be sent%s%s",
                     cl->last_error[0] ? "; last connection error: " : "", cl->last_error);
            if (b->sequenced)
                pp->bump = true; /* its sequences were used: a gap (see the top of the file) */
            complete_batch(cl, b, -1, FERRY_ERR__TIMED_OUT, msg);
        }
        /* The open batch is newer than any sealed one: it can only expire once they are gone. */
        if (pp && pp->queue == NULL && pp->builder && now - pp->first_enqueued_ms >= limit) {
            char msg[640];
            snprintf(msg, sizeof msg, "delivery.timeout.ms expired before the batch could be sent%s%s",
                     cl->last_error[0] ? "; last connection error: " : "", cl->last_error);
            ppart_drop_open(cl, pp, FERRY_ERR__TIMED_OUT, msg);
        }
    }
}

void ferry_producer_service(struct ferry_client *cl, int64_t now)
{
    struct rchunk *chunks;
    struct precord *r = take_incoming(cl, &chunks);

    while (r) {
        struct precord *next = r->next;
        r->next = NULL;
        struct ctopic *t = ferry_topic_get(cl, r->topic_name, true);
        if (t == NULL) {
            fail_precord(cl, r, FERRY_ERR__NO_MEMORY, "out of memory");
        } else {
            r->topic = t;
            if (t->state == TOPIC_NOT_EXIST && t->pending == NULL) {
                t->state = TOPIC_UNKNOWN; /* it may exist by now: ask again */
                ferry_metadata_refresh(cl, "record for an unknown topic");
            }
            if (t->state == TOPIC_KNOWN && t->pending == NULL) {
                place_record(cl, r, now);
            } else {
                /* It waits for metadata: out of its chunk, which is freed below. */
                struct precord *w = r->in_chunk ? precord_detach(r) : r;
                if (w == NULL) {
                    fail_precord(cl, r, FERRY_ERR__NO_MEMORY, "out of memory");
                } else {
                    if (t->pending_tail)
                        t->pending_tail->next = w;
                    else
                        t->pending = w;
                    t->pending_tail = w;
                }
            }
        }
        r = next;
    }
    chunks_free(chunks); /* every record taken is placed, completed or copied out */

    for (struct ctopic *t = cl->topics; t; t = t->next)
        expire(cl, t, now);

    /* Send what is ready; want connections to leaders that have data. */
    bool have_data = false, leaderless = false;
    for (struct ctopic *t = cl->topics; t; t = t->next) {
        for (int32_t p = 0; t->pparts && p < t->partition_count; p++) {
            struct ppart *pp = t->pparts[p];
            if (pp != NULL && cl->s.idempotence)
                ppart_maybe_bump(cl, pp);
            if (pp == NULL || (pp->queue == NULL && pp->builder == NULL))
                continue;
            have_data = true;
            struct broker *b = t->leaders[p] >= 0 ? ferry_broker_by_id(cl, t->leaders[p]) : NULL;
            if (b != NULL)
                ferry_broker_want(cl, b);
            /* No leader, or one we cannot reach before its reconnect backoff ends (it may be dead
             * and the partition led elsewhere by now): ask for metadata instead of waiting. */
            if (b == NULL || (b->state == BROKER_DOWN && now < b->next_attempt_ms))
                leaderless = true;
        }
    }
    ferry_metadata_leaderless(cl, leaderless);
    if (cl->s.idempotence && have_data && !cl->stopping)
        pid_service(cl, now);
    for (struct broker *b = cl->brokers; b; b = b->next) {
        while (b->state == BROKER_UP && b->n_produce_inflight < cl->s.max_inflight) {
            if (send_produce(cl, b, now) == 0)
                break;
        }
    }
}

int64_t ferry_producer_next_due(struct ferry_client *cl, int64_t now)
{
    int64_t due = INT64_MAX;
    for (struct ctopic *t = cl->topics; t; t = t->next) {
        for (int32_t p = 0; t->pparts && p < t->partition_count; p++) {
            struct ppart *pp = t->pparts[p];
            /* A partition that cannot send more now is woken by a response. */
            if (pp == NULL || !ppart_can_send(cl, pp) || (pp->queue == NULL && pp->builder == NULL))
                continue;
            int64_t ready = pp->retry_at_ms;
            if (pp->queue == NULL && !cl->io_flushing && pp->created_ms + cl->s.linger_ms > ready)
                ready = pp->created_ms + cl->s.linger_ms;
            if (ready > now && ready < due)
                due = ready;
        }
    }
    return due;
}

void ferry_producer_purge(struct ferry_client *cl, ferry_err_t err)
{
    const char *why = "client closed before the record was sent";
    struct rchunk *chunks;
    struct precord *r = take_incoming(cl, &chunks);
    while (r) {
        struct precord *next = r->next;
        fail_precord(cl, r, err, why);
        r = next;
    }
    chunks_free(chunks);
    for (struct ctopic *t = cl->topics; t; t = t->next) {
        while (t->pending) {
            struct precord *next = t->pending->next;
            fail_precord(cl, t->pending, err, why);
            t->pending = next;
        }
        t->pending_tail = NULL;
        for (int32_t p = 0; t->pparts && p < t->partition_count; p++) {
            struct ppart *pp = t->pparts[p];
            if (pp == NULL)
                continue;
            ppart_drop_open(cl, pp, err, why);
            while (pp->queue) {
                struct pbatch *b = pp->queue;
                pp->queue = b->next;
                complete_batch(cl, b, -1, err, why);
            }
            pp->queue_tail = NULL;
            /* pp->inflight completes through its request's callback when the connection closes. */
        }
    }
}

/* ---- application API ---- */

FERRY_API ferry_err_t ferry_produce(ferry_client_t *cl, const ferry_record_t *rec, int flags)
{
    if (cl == NULL || rec == NULL)
        return FERRY_ERR__INVALID_ARG;
    if (cl->type != FERRY_PRODUCER)
        return FERRY_ERR__WRONG_CLIENT_TYPE;
    if (rec->topic == NULL || rec->topic[0] == '\0' || strlen(rec->topic) > FERRY_MAX_TOPIC_NAME ||
        rec->partition < FERRY_PARTITION_ANY || rec->header_count > FERRY_MAX_HEADERS_PER_RECORD ||
        (rec->header_count > 0 && rec->headers == NULL) || (rec->key == NULL && rec->key_len > 0) ||
        (rec->value == NULL && rec->value_len > 0) || rec->timestamp < 0)
        return FERRY_ERR__INVALID_ARG;

    /* Size and limits first (nothing is allocated for a record that cannot be sent). */
    size_t payload = 0, names = 0;
    uint64_t est = (uint64_t)rec->key_len + rec->value_len + FERRY_RECORD_OVERHEAD;
    for (size_t i = 0; i < rec->header_count; i++) {
        if (rec->headers[i].name == NULL || (rec->headers[i].value == NULL && rec->headers[i].value_len > 0))
            return FERRY_ERR__INVALID_ARG;
        size_t nl = strlen(rec->headers[i].name);
        names += nl + 1;
        payload += rec->headers[i].value_len;
        est += nl + rec->headers[i].value_len + 20;
    }
    if (est > FERRY_MAX_BATCH_BYTES - FERRY_BATCH_HEADER_SIZE)
        return FERRY_ERR_BATCH_TOO_LARGE;
    size_t tl = strlen(rec->topic) + 1;
    size_t total = sizeof(struct precord) + rec->header_count * sizeof(struct ferry_header_view) + tl +
                   rec->key_len + rec->value_len + payload + names;
    const size_t align = _Alignof(max_align_t);
    size_t need = (total + align - 1) / align * align;
    int64_t timestamp = rec->timestamp ? rec->timestamp : ferry_wallclock_ms();
    int64_t enqueued = ferry_now_ms();

    size_t max_msgs = (size_t)cl->s.queue_max_msgs;
    size_t max_bytes = (size_t)cl->s.queue_max_kbytes * 1024;
    int64_t deadline = -2;
    pthread_mutex_lock(&cl->lock);
    for (;;) {
        if (cl->closing || cl->closed) {
            pthread_mutex_unlock(&cl->lock);
            return FERRY_ERR__DESTROYED;
        }
        /* A record larger than the whole byte budget may still go when the queue is empty. */
        bool fits = cl->q_msgs < max_msgs && (cl->q_msgs == 0 || cl->q_bytes + est <= max_bytes);
        if (fits)
            break;
        if (flags & FERRY_F_NONBLOCK) {
            pthread_mutex_unlock(&cl->lock);
            return FERRY_ERR__QUEUE_FULL;
        }
        if (deadline == -2)
            deadline = ferry_now_ms() + cl->s.max_block_ms;
        if (ferry_cond_wait_until(cl, deadline) == ETIMEDOUT) {
            pthread_mutex_unlock(&cl->lock);
            return FERRY_ERR__QUEUE_FULL;
        }
    }

    /* The one copy of the record before the batch: into the chunk the I/O thread takes next. */
    struct rchunk *ch = cl->in_chunk_tail;
    if (ch == NULL || ch->cap - ch->used < need) {
        size_t cap = need > FERRY_RECORD_CHUNK_BYTES ? need : FERRY_RECORD_CHUNK_BYTES;
        ch = malloc(sizeof *ch + cap);
        if (ch == NULL) {
            pthread_mutex_unlock(&cl->lock);
            return FERRY_ERR__NO_MEMORY;
        }
        ch->next = NULL;
        ch->used = 0;
        ch->cap = cap;
        if (cl->in_chunk_tail)
            cl->in_chunk_tail->next = ch;
        else
            cl->in_chunks = ch;
        cl->in_chunk_tail = ch;
    }
    struct precord *r = (struct precord *)((uint8_t *)ch->data + ch->used);
    ch->used += need;
    memset(r, 0, sizeof *r);
    uint8_t *p = (uint8_t *)(r + 1);
    r->headers = rec->header_count ? (struct ferry_header_view *)p : NULL;
    p += rec->header_count * sizeof(struct ferry_header_view);
    r->header_count = (uint32_t)rec->header_count;
    for (size_t i = 0; i < rec->header_count; i++) {
        const ferry_header_t *h = &rec->headers[i];
        size_t nl = strlen(h->name);
        memcpy(p, h->name, nl + 1);
        r->headers[i].name = p;
        r->headers[i].name_len = nl;
        p += nl + 1;
        if (h->value != NULL) {
            memcpy(p, h->value, h->value_len);
            r->headers[i].value = p;
            r->headers[i].value_len = h->value_len;
            p += h->value_len;
        } else {
            r->headers[i].value = NULL;
            r->headers[i].value_len = 0;
        }
    }
    r->topic_name = (char *)p;
    memcpy(p, rec->topic, tl);
    p += tl;
    if (rec->key != NULL) {
        r->key = p;
        r->key_len = rec->key_len;
        memcpy(p, rec->key, rec->key_len);
        p += rec->key_len;
    }
    if (rec->value != NULL) {
        r->value = p;
        r->value_len = rec->value_len;
        memcpy(p, rec->value, rec->value_len);
    }
    r->partition = rec->partition;
    r->timestamp = timestamp;
    r->opaque = rec->opaque;
    r->size = (size_t)est;
    r->enqueued_ms = enqueued;
    r->alloc = total;
    r->in_chunk = true;

    if (cl->in_recs_tail)
        cl->in_recs_tail->next = r;
    else
        cl->in_recs = r;
    cl->in_recs_tail = r;
    cl->q_msgs++;
    cl->q_bytes += r->size;
    cl->outq++;
    ferry_wake_locked(cl);
    pthread_mutex_unlock(&cl->lock);
    return FERRY_ERR_NONE;
}

FERRY_API int ferry_poll(ferry_client_t *cl, int timeout_ms)
{
    if (cl == NULL)
        return 0;
    int64_t deadline = ferry_deadline(timeout_ms);
    pthread_mutex_lock(&cl->lock);
    while (cl->drs == NULL && timeout_ms != 0) {
        if (cl->closed || ferry_cond_wait_until(cl, deadline) == ETIMEDOUT)
            break;
    }
    struct delivery_report *dr = cl->drs;
    cl->drs = cl->drs_tail = NULL;
    pthread_mutex_unlock(&cl->lock);

    int served = 0;
    while (dr) {
        struct delivery_report *next = dr->next;
        for (uint32_t i = 0; i < dr->n && cl->delivery_cb; i++)
            cl->delivery_cb(cl, &dr->d[i], cl->opaque);
        served += (int)dr->n;
        ferry_report_free(dr);
        dr = next;
    }
    if (served > 0) {
        pthread_mutex_lock(&cl->lock);
        cl->outq -= (size_t)served;
        pthread_cond_broadcast(&cl->cond);
        pthread_mutex_unlock(&cl->lock);
    }
    return served;
}

FERRY_API ferry_err_t ferry_flush(ferry_client_t *cl, int timeout_ms)
{
    if (cl == NULL)
        return FERRY_ERR__INVALID_ARG;
    int64_t deadline = ferry_deadline(timeout_ms);
    ferry_err_t err = FERRY_ERR_NONE;
    pthread_mutex_lock(&cl->lock);
    cl->flushing++; /* open batches go without lingering until every flush returns */
    ferry_wake_locked(cl);
    while (cl->outq > 0) {
        if (cl->drs != NULL) {
            pthread_mutex_unlock(&cl->lock);
            ferry_poll(cl, 0);
            pthread_mutex_lock(&cl->lock);
            continue;
        }
        if (cl->unreachable_err != FERRY_ERR_NONE) {
            err = cl->unreachable_err; /* no broker can be reached: waiting cannot help */
            break;
        }
        if (cl->closed || ferry_cond_wait_until(cl, deadline) == ETIMEDOUT) {
            err = cl->outq > 0 ? FERRY_ERR__TIMED_OUT : FERRY_ERR_NONE;
            break;
        }
    }
    cl->flushing--;
    pthread_mutex_unlock(&cl->lock);
    return err;
}

FERRY_API size_t ferry_outq_len(ferry_client_t *cl)
{
    if (cl == NULL)
        return 0;
    pthread_mutex_lock(&cl->lock);
    size_t n = cl->outq;
    pthread_mutex_unlock(&cl->lock);
    return n;
}
