/* producer_state.c: the idempotent-producer table: check, update, LRU eviction, msgpack snapshots. */
#include "producer_state.h"

#include <assert.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/codec.h"
#include "proto/limits.h"

#define SEQ_SPACE ((int64_t)INT32_MAX + 1)

void ferryd_pstate_init(struct ferryd_pstate *s)
{
    memset(s, 0, sizeof(*s));
}

void ferryd_pstate_free(struct ferryd_pstate *s)
{
    free(s->v);
    s->v = NULL;
    s->n = s->cap = 0;
}

int32_t ferryd_pstate_seq_add(int32_t seq, uint32_t count)
{
    assert(seq >= 0 && count >= 1);
    return (int32_t)(((int64_t)seq + (int64_t)count) % SEQ_SPACE);
}

/* Index of pid, or -(insertion point) - 1. */
static long find_index(const struct ferryd_pstate *s, int64_t pid)
{
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->v[mid].pid == pid)
            return (long)mid;
        if (s->v[mid].pid < pid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -(long)lo - 1;
}

const struct ferryd_pstate_producer *ferryd_pstate_find(const struct ferryd_pstate *s, int64_t pid)
{
    long i = find_index(s, pid);
    return i >= 0 ? &s->v[i] : NULL;
}

enum ferryd_pstate_verdict ferryd_pstate_check(const struct ferryd_pstate *s, const struct ferry_batch_header *h,
                                               int64_t *dup_base_offset, uint32_t *dup_count)
{
    if (h->producer_id < 0)
        return FERRYD_PSTATE_ACCEPT;
    const struct ferryd_pstate_producer *p = ferryd_pstate_find(s, h->producer_id);
    if (p == NULL || p->nbatches == 0)
        return FERRYD_PSTATE_ACCEPT; /* unknown here: nothing to compare with */
    if (h->producer_epoch < p->epoch)
        return FERRYD_PSTATE_FENCED;
    if (h->base_sequence < 0 || h->record_count == 0)
        return FERRYD_PSTATE_OUT_OF_ORDER;
    if (h->producer_epoch > p->epoch)
        return h->base_sequence == 0 ? FERRYD_PSTATE_ACCEPT : FERRYD_PSTATE_OUT_OF_ORDER;
    int32_t last = (int32_t)(((int64_t)h->base_sequence + (int64_t)h->record_count - 1) % SEQ_SPACE);
    for (uint8_t i = 0; i < p->nbatches; i++) {
        const struct ferryd_pstate_batch *b = &p->batches[i];
        if (b->first_seq == h->base_sequence && b->last_seq == last) {
            *dup_base_offset = b->base_offset;
            *dup_count = b->count;
            return FERRYD_PSTATE_DUPLICATE;
        }
    }
    int32_t expected = ferryd_pstate_seq_add(p->batches[p->nbatches - 1].last_seq, 1);
    if (h->base_sequence == expected)
        return FERRYD_PSTATE_ACCEPT;
    /* How far behind the expected sequence this batch starts, modulo the sequence space. */
    int64_t behind = ((int64_t)expected - (int64_t)h->base_sequence + SEQ_SPACE) % SEQ_SPACE;
    int64_t window_start = p->batches[0].first_seq;
    int64_t window = ((int64_t)expected - window_start + SEQ_SPACE) % SEQ_SPACE;
    if (behind > window && behind <= SEQ_SPACE / 2)
        return FERRYD_PSTATE_DUPLICATE_OLD; /* before the remembered batches: stored long ago */
    return FERRYD_PSTATE_OUT_OF_ORDER;
}

/* Drops the least recently used producer (the table is full). */
static void evict_lru(struct ferryd_pstate *s)
{
    assert(s->n > 0);
    size_t victim = 0;
    for (size_t i = 1; i < s->n; i++)
        if (s->v[i].last_used < s->v[victim].last_used)
            victim = i;
    memmove(&s->v[victim], &s->v[victim + 1], (s->n - victim - 1) * sizeof(*s->v));
    s->n--;
    s->evictions++;
}

int ferryd_pstate_update(struct ferryd_pstate *s, const struct ferry_batch_header *h, int64_t base_offset)
{
    if (h->producer_id < 0 || h->base_sequence < 0 || h->record_count == 0)
        return 0;
    size_t max = s->max ? s->max : FERRYD_PSTATE_MAX_PRODUCERS;
    long idx = find_index(s, h->producer_id);
    if (idx < 0) {
        if (s->n >= max) {
            evict_lru(s);
            idx = find_index(s, h->producer_id);
        }
        if (s->n == s->cap) {
            size_t cap = s->cap ? s->cap * 2 : 4;
            if (cap > max)
                cap = max;
            struct ferryd_pstate_producer *v = realloc(s->v, cap * sizeof(*v));
            if (v == NULL)
                return -1;
            s->v = v;
            s->cap = cap;
        }
        size_t at = (size_t)(-idx - 1);
        memmove(&s->v[at + 1], &s->v[at], (s->n - at) * sizeof(*s->v));
        memset(&s->v[at], 0, sizeof(s->v[at]));
        s->v[at].pid = h->producer_id;
        s->v[at].epoch = h->producer_epoch;
        s->n++;
        idx = (long)at;
    }
    struct ferryd_pstate_producer *p = &s->v[idx];
    if (h->producer_epoch != p->epoch) {
        p->epoch = h->producer_epoch; /* a new epoch: earlier batches no longer count as duplicates */
        p->nbatches = 0;
    }
    if (p->nbatches == FERRYD_PSTATE_BATCHES) {
        memmove(&p->batches[0], &p->batches[1], (FERRYD_PSTATE_BATCHES - 1) * sizeof(p->batches[0]));
        p->nbatches--;
    }
    p->batches[p->nbatches++] = (struct ferryd_pstate_batch){
        .first_seq = h->base_sequence,
        .last_seq = (int32_t)(((int64_t)h->base_sequence + (int64_t)h->record_count - 1) % SEQ_SPACE),
        .base_offset = base_offset,
        .count = h->record_count,
    };
    p->last_used = ++s->clock;
    return 0;
}

int ferryd_pstate_serialize(const struct ferryd_pstate *s, uint8_t **out, size_t *out_len)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    ferry_pack_key(&pk, "version");
    msgpack_pack_int(&pk, 1);
    ferry_pack_key(&pk, "clock");
    msgpack_pack_uint64(&pk, s->clock);
    ferry_pack_key(&pk, "producers");
    msgpack_pack_array(&pk, (uint32_t)s->n);
    for (size_t i = 0; i < s->n; i++) {
        const struct ferryd_pstate_producer *p = &s->v[i];
        msgpack_pack_array(&pk, 4);
        msgpack_pack_int64(&pk, p->pid);
        msgpack_pack_int16(&pk, p->epoch);
        msgpack_pack_uint64(&pk, p->last_used);
        msgpack_pack_array(&pk, p->nbatches);
        for (uint8_t k = 0; k < p->nbatches; k++) {
            msgpack_pack_array(&pk, 4);
            msgpack_pack_int32(&pk, p->batches[k].first_seq);
            msgpack_pack_int32(&pk, p->batches[k].last_seq);
            msgpack_pack_int64(&pk, p->batches[k].base_offset);
            msgpack_pack_uint32(&pk, p->batches[k].count);
        }
    }
    if (sb.data == NULL) { /* msgpack_sbuffer_write failed to allocate */
        msgpack_sbuffer_destroy(&sb);
        return -1;
    }
    *out = (uint8_t *)sb.data;
    *out_len = sb.size;
    return 0;
}

/* Integer of a msgpack object within [min, max]; sets *bad otherwise. */
static int64_t obj_int(const msgpack_object *o, int64_t min, int64_t max, int *bad)
{
    int64_t v;
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= (uint64_t)INT64_MAX)
        v = (int64_t)o->via.u64;
    else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        v = o->via.i64;
    else {
        *bad = 1;
        return 0;
    }
    if (v < min || v > max)
        *bad = 1;
    return v;
}

int ferryd_pstate_deserialize(struct ferryd_pstate *s, const uint8_t *buf, size_t len, char *errmsg,
                              size_t errmsg_len)
{
    struct ferry_msg m;
    char why[256];
    int bad = 0;
    size_t max = s->max ? s->max : FERRYD_PSTATE_MAX_PRODUCERS;
    ferryd_pstate_free(s);
    s->clock = 0;
    if (ferry_msg_unpack(buf, len, &m, why, sizeof(why)) != 0) {
        snprintf(errmsg, errmsg_len, "producer state: %s", why);
        return -1;
    }
    struct ferry_mp_reader rd = {0};
    int rc = -1;
    if (m.root.type != MSGPACK_OBJECT_MAP) {
        snprintf(errmsg, errmsg_len, "producer state: not a map");
        goto out;
    }
    ferry_mp_int_range(&rd, &m.root, "version", 0, 1, 1, 1);
    int64_t clock = ferry_mp_int_range(&rd, &m.root, "clock", 0, 1, 0, INT64_MAX);
    const msgpack_object_array *arr = ferry_mp_array(&rd, &m.root, "producers", 1);
    if (rd.err) {
        snprintf(errmsg, errmsg_len, "producer state: %s", rd.errmsg);
        goto out;
    }
    if (arr->size > max) {
        snprintf(errmsg, errmsg_len, "producer state: %u producers exceed the cap %zu", arr->size, max);
        goto out;
    }
    if (arr->size > 0 && (s->v = calloc(arr->size, sizeof(*s->v))) == NULL) {
        snprintf(errmsg, errmsg_len, "producer state: out of memory");
        goto out;
    }
    s->cap = arr->size;
    for (uint32_t i = 0; i < arr->size; i++) {
        const msgpack_object *e = &arr->ptr[i];
        if (e->type != MSGPACK_OBJECT_ARRAY || e->via.array.size != 4 ||
            e->via.array.ptr[3].type != MSGPACK_OBJECT_ARRAY ||
            e->via.array.ptr[3].via.array.size > FERRYD_PSTATE_BATCHES) {
            bad = 1;
            break;
        }
        struct ferryd_pstate_producer *p = &s->v[i];
        p->pid = obj_int(&e->via.array.ptr[0], 0, INT64_MAX, &bad);
        p->epoch = (int16_t)obj_int(&e->via.array.ptr[1], 0, INT16_MAX, &bad);
        p->last_used = (uint64_t)obj_int(&e->via.array.ptr[2], 0, INT64_MAX, &bad);
        const msgpack_object_array *bs = &e->via.array.ptr[3].via.array;
        for (uint32_t k = 0; k < bs->size && !bad; k++) {
            const msgpack_object *b = &bs->ptr[k];
            if (b->type != MSGPACK_OBJECT_ARRAY || b->via.array.size != 4) {
                bad = 1;
                break;
            }
            p->batches[k].first_seq = (int32_t)obj_int(&b->via.array.ptr[0], 0, INT32_MAX, &bad);
            p->batches[k].last_seq = (int32_t)obj_int(&b->via.array.ptr[1], 0, INT32_MAX, &bad);
            p->batches[k].base_offset = obj_int(&b->via.array.ptr[2], 0, INT64_MAX, &bad);
            p->batches[k].count = (uint32_t)obj_int(&b->via.array.ptr[3], 1, FERRY_MAX_RECORDS_PER_BATCH, &bad);
        }
        p->nbatches = (uint8_t)bs->size;
        if (bad || (i > 0 && s->v[i - 1].pid >= p->pid)) { /* must be sorted, no duplicates */
            bad = 1;
            break;
        }
        s->n++;
    }
    if (bad) {
        snprintf(errmsg, errmsg_len, "producer state: malformed producer entry");
        ferryd_pstate_free(s);
        goto out;
    }
    s->clock = (uint64_t)clock;
    rc = 0;
out:
    ferry_msg_destroy(&m);
    return rc;
}
