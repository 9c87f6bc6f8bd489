/* replay.c: rebuilding the groups of one offsets partition from its log (on becoming its leader). */
#include "groups/groups_int.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "ferry_errors.h"
#include "logging.h"

#define READ_CHUNK ((size_t)1 << 20)

static char *dupn(const char *s, size_t n)
{
    if (s == NULL)
        return NULL;
    char *d = malloc(n + 1);
    if (d != NULL) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

static int set_str(char **dst, const char *s, size_t n)
{
    char *d = dupn(s, n);
    if (s != NULL && d == NULL)
        return -1;
    free(*dst);
    *dst = d;
    return 0;
}

static int fold_member(struct fg_group *g, const struct fg_record *r)
{
    struct fg_member *m = fg_member_find(g, r->member_id, r->member_id_len);
    if (r->tombstone) {
        if (m != NULL)
            fg_member_remove(g, m);
        return 0;
    }
    if (m == NULL && (m = fg_member_add(g, r->member_id, r->member_id_len)) == NULL)
        return -1;
    if (set_str(&m->instance_id, r->mem.instance_id, r->mem.instance_id_len) != 0 ||
        set_str(&m->client_id, r->mem.client_id ? r->mem.client_id : "", r->mem.client_id_len) != 0 ||
        set_str(&m->host, r->mem.host ? r->mem.host : "", r->mem.host_len) != 0)
        return -1;
    const msgpack_object_array *subs = r->mem.subscribed;
    uint32_t *ns = calloc(subs->size ? subs->size : 1, sizeof(*ns));
    if (ns == NULL)
        return -1;
    uint32_t nn = 0;
    for (uint32_t i = 0; i < subs->size; i++) {
        uint32_t t = fg_topic_index(g, subs->ptr[i].via.str.ptr, subs->ptr[i].via.str.size);
        if (t == UINT32_MAX) {
            free(ns);
            return -1;
        }
        int dup = 0;
        for (uint32_t k = 0; k < nn; k++)
            dup |= ns[k] == t;
        if (!dup)
            ns[nn++] = t;
    }
    free(m->subs);
    m->subs = ns;
    m->nsubs = nn;
    uint32_t total = 0;
    const msgpack_object_array *as = r->mem.assigned;
    for (uint32_t i = 0; i < as->size; i++)
        total += as->ptr[i].via.array.ptr[1].via.array.size;
    struct fg_tp *na = calloc(total ? total : 1, sizeof(*na));
    if (na == NULL)
        return -1;
    uint32_t n = 0;
    for (uint32_t i = 0; i < as->size; i++) {
        const msgpack_object *e = as->ptr[i].via.array.ptr;
        uint32_t t = fg_topic_index(g, e[0].via.str.ptr, e[0].via.str.size);
        if (t == UINT32_MAX) {
            free(na);
            return -1;
        }
        for (uint32_t k = 0; k < e[1].via.array.size; k++)
            na[n++] = (struct fg_tp){t, (int32_t)e[1].via.array.ptr[k].via.u64};
    }
    qsort(na, n, sizeof(*na), fg_tp_cmp);
    free(m->assigned);
    m->assigned = na;
    m->nassigned = n;
    m->epoch = r->mem.member_epoch;
    m->prev_epoch = r->mem.member_epoch;
    m->session_timeout_ms = r->mem.session_timeout_ms;
    m->rebalance_timeout_ms = r->mem.rebalance_timeout_ms;
    return 0;
}

/* Applies one record to the state of slot. Returns 0, or -1 when out of memory. */
static int fold(struct ferryd_coord *co, int32_t slot, const struct fg_record *r)
{
    struct fg_group *g = fg_group_find(co, r->group, r->group_len);
    int limit;
    if (r->type == FG_REC_GROUP && r->tombstone) {
        if (g != NULL)
            fg_group_remove(co, g);
        return 0;
    }
    if (g == NULL) {
        if (r->tombstone)
            return 0;
        g = fg_group_create(co, r->group, r->group_len, slot, &limit);
        if (g == NULL)
            return limit ? 0 : -1; /* beyond the group limit: skipped */
    }
    if (r->type == FG_REC_GROUP) {
        g->group_epoch = r->grp.group_epoch;
        g->assignment_epoch = r->grp.assignment_epoch;
        return 0;
    }
    if (r->type == FG_REC_MEMBER)
        return fold_member(g, r);
    uint32_t t = fg_topic_index(g, r->topic, r->topic_len);
    if (t == UINT32_MAX)
        return -1;
    if (r->tombstone) {
        struct fg_offset *o = fg_offset_find(g, t, r->partition);
        if (o != NULL) {
            free(o->metadata);
            *o = g->offsets[--g->noffsets];
        }
        return 0;
    }
    return fg_offset_set(g, t, r->partition, r->off.offset, r->off.metadata, r->off.metadata_len,
                         r->off.member_epoch, r->off.commit_ms);
}

static int fold_batch(struct ferryd_coord *co, int32_t slot, const uint8_t *batch, size_t len, int64_t *next,
                      char *msg, size_t msg_len)
{
    struct ferry_batch_reader rd;
    struct ferry_record_view rec;
    char why[256];
    int rc = ferry_batch_reader_init(&rd, batch, len);
    if (rc != 0) {
        snprintf(msg, msg_len, "batch at offset %" PRId64 ": %s", *next, rd.errmsg);
        ferry_batch_reader_free(&rd);
        return -1;
    }
    *next = rd.header.base_offset + (int64_t)rd.header.record_count;
    while ((rc = ferry_batch_reader_next(&rd, &rec)) == 1) {
        struct fg_record_msgs msgs;
        struct fg_record r;
        if (fg_record_decode(rec.key, rec.key_len, rec.value, rec.value_len, &msgs, &r, why, sizeof(why)) != 0) {
            LOG_WARN("groups: %s/%d offset %" PRId64 ": skipping a record that is not a group record: %s",
                     FG_OFFSETS_TOPIC, slot, rec.offset, why);
        } else if (fold(co, slot, &r) != 0) {
            fg_record_msgs_free(&msgs);
            ferry_batch_reader_free(&rd);
            snprintf(msg, msg_len, "out of memory");
            return -1;
        }
        fg_record_msgs_free(&msgs);
    }
    ferry_batch_reader_free(&rd);
    if (rc < 0) {
        snprintf(msg, msg_len, "malformed record in the batch at offset %" PRId64, *next);
        return -1;
    }
    return 0;
}

int fg_slot_replay(struct ferryd_coord *co, int32_t slot, char *msg, size_t msg_len)
{
    struct ferryd_topic *t = ferryd_topics_find(co->b->topics, FG_OFFSETS_TOPIC, strlen(FG_OFFSETS_TOPIC));
    struct ferryd_partition *p = t == NULL ? NULL : ferryd_topic_partition(t, slot);
    char why[256];
    if (p == NULL) {
        snprintf(msg, msg_len, "no local log");
        return -1;
    }
    int64_t off = ferry_log_start_offset(p->log);
    int64_t end = ferryd_partition_high_watermark(p);
    uint64_t records = 0;
    while (off < end) {
        uint8_t *buf = NULL;
        size_t len = 0;
        int rc = ferry_log_read(p->log, off, end, READ_CHUNK, &buf, &len, why, sizeof(why));
        if (rc != 0) {
            snprintf(msg, msg_len, "reading offset %" PRId64 ": %s", off, why);
            return -1;
        }
        if (len == 0) {
            free(buf);
            break;
        }
        size_t pos = 0;
        while (pos < len) {
            size_t blen;
            if (ferry_batch_peek_length(buf + pos, len - pos, &blen) != 0 || blen < FERRY_BATCH_HEADER_SIZE ||
                blen > len - pos) {
                free(buf);
                snprintf(msg, msg_len, "truncated batch near offset %" PRId64, off);
                return -1;
            }
            int64_t next = off;
            if (fold_batch(co, slot, buf + pos, blen, &next, msg, msg_len) != 0) {
                free(buf);
                return -1;
            }
            records += (uint64_t)(next - off);
            off = next > off ? next : off + 1;
            pos += blen;
        }
        free(buf);
    }
    /* Every member known gets a fresh session from now; targets are recomputed (no epoch bump). */
    uint64_t now = fg_now(co);
    size_t ngroups = 0;
    for (size_t i = 0; i < co->nbuckets; i++) {
        for (struct fg_group *g = co->buckets[i]; g != NULL; g = g->next) {
            if (g->slot != slot)
                continue;
            ngroups++;
            for (uint32_t k = 0; k < g->nmembers; k++) {
                struct fg_member *m = g->members[k];
                m->deadline = now + (uint64_t)m->session_timeout_ms;
                m->send_assignment = 1;
            }
            if (fg_group_compute_targets(co, g) != 0) {
                snprintf(msg, msg_len, "out of memory");
                return -1;
            }
        }
    }
    LOG_INFO("groups: offsets partition %d loaded: %zu group(s) from %" PRIu64 " record(s) up to offset %" PRId64,
             slot, ngroups, records, end);
    return 0;
}
