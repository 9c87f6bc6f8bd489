/* wire.c: the peer protocol's frames (docs/peer-protocol.md): hello, Raft messages tagged with a group id, ping, quiesce. */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fr_int.h"

/*
 * Every integer is big-endian. A frame is the transport's 4-byte length then:
 *   hello: kind=1 u8, version=1 u8, flags=0 u16, cluster_id u64, node_id u64
 *   raft:  kind=2 u8, raft message type u8, message version u8, 0 u8, group_id u64, body by type
 *   ping:  kind=3 u8, 0 u8, 0 u16
 *   quiesce: kind=4 u8, op u8, 0 u16, count u32, entries (see fr_wire_encode_quiesce)
 *   rpc:   kind=5 u8, type u8 (1 request, 2 response), status u16, request id u64, body (rpc.c)
 * The bodies are listed in docs/peer-protocol.md and in the encoders below, field for field.
 */

#define ENTRY_HDR_LEN 13 /* term u64, type u8, length u32 */

static void put8(uint8_t **p, uint8_t v)
{
    *(*p)++ = v;
}
static void put16(uint8_t **p, uint16_t v)
{
    (*p)[0] = (uint8_t)(v >> 8);
    (*p)[1] = (uint8_t)v;
    *p += 2;
}
static void put32(uint8_t **p, uint32_t v)
{
    for (int i = 3; i >= 0; i--)
        *(*p)++ = (uint8_t)(v >> (8 * i));
}
static void put64(uint8_t **p, uint64_t v)
{
    for (int i = 7; i >= 0; i--)
        *(*p)++ = (uint8_t)(v >> (8 * i));
}

/* A bounded reader: the first short read sets err and every later read returns 0. */
struct rd {
    const uint8_t *p, *end;
    int err;
};
static int need(struct rd *r, size_t n)
{
    if (r->err || (size_t)(r->end - r->p) < n) {
        r->err = 1;
        return 0;
    }
    return 1;
}
static uint8_t get8(struct rd *r)
{
    return need(r, 1) ? *r->p++ : 0;
}
static uint16_t get16(struct rd *r)
{
    if (!need(r, 2))
        return 0;
    uint16_t v = (uint16_t)((r->p[0] << 8) | r->p[1]);
    r->p += 2;
    return v;
}
static uint32_t get32(struct rd *r)
{
    if (!need(r, 4))
        return 0;
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v = (v << 8) | r->p[i];
    r->p += 4;
    return v;
}
static uint64_t get64(struct rd *r)
{
    if (!need(r, 8))
        return 0;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | r->p[i];
    r->p += 8;
    return v;
}

static int scratch_reserve(struct fr_node *n, size_t len)
{
    if (len <= n->scratch_cap)
        return FR_OK;
    size_t cap = n->scratch_cap ? n->scratch_cap : 4096;
    while (cap < len)
        cap *= 2;
    uint8_t *p = realloc(n->scratch, cap);
    if (p == NULL)
        return FR_ERR_NOMEM;
    n->scratch = p;
    n->scratch_cap = cap;
    return FR_OK;
}

void fr_wire_put_hello_flags(uint8_t *out, uint64_t cluster_id, uint64_t node_id, uint16_t flags)
{
    uint8_t *p = out;
    put32(&p, FR_HELLO_LEN);
    put8(&p, FR_FRAME_HELLO);
    put8(&p, FR_PROTO_VERSION);
    put16(&p, flags);
    put64(&p, cluster_id);
    put64(&p, node_id);
    assert(p == out + 4 + FR_HELLO_LEN);
}

void fr_wire_put_hello(uint8_t *out, uint64_t cluster_id, uint64_t node_id)
{
    fr_wire_put_hello_flags(out, cluster_id, node_id, 0);
}

/* ping: kind=3 u8, flags=0 u8, reserved=0 u16. */
void fr_wire_put_ping(uint8_t *out)
{
    uint8_t *p = out;
    put32(&p, FR_PING_LEN);
    put8(&p, FR_FRAME_PING);
    put8(&p, 0);
    put16(&p, 0);
    assert(p == out + 4 + FR_PING_LEN);
}

/* quiesce: kind=4 u8, op u8 (1 quiet, 2 wake), reserved=0 u16, count u32, then count entries:
 *   quiet: group_id u64, term u64, commit_index u64, last_index u64
 *   wake:  group_id u64 */
static size_t quiesce_entry_len(enum fr_quiesce_op op)
{
    return op == FR_QOP_QUIET ? FR_QUIET_ENTRY_LEN : FR_WAKE_ENTRY_LEN;
}

int fr_wire_encode_quiesce(struct fr_node *n, enum fr_quiesce_op op, const struct fr_q_entry *e, unsigned count,
                           const uint8_t **frame, size_t *len)
{
    assert(count >= 1 && count <= FR_QUIESCE_MAX_ENTRIES);
    assert(op == FR_QOP_QUIET || op == FR_QOP_WAKE);
    size_t total = 4 + FR_QUIESCE_HDR_LEN + (size_t)count * quiesce_entry_len(op);
    int rc = scratch_reserve(n, total);
    if (rc != FR_OK)
        return rc;
    uint8_t *p = n->scratch;
    put32(&p, (uint32_t)(total - 4));
    put8(&p, FR_FRAME_QUIESCE);
    put8(&p, (uint8_t)op);
    put16(&p, 0);
    put32(&p, count);
    for (unsigned i = 0; i < count; i++) {
        put64(&p, e[i].group_id);
        if (op == FR_QOP_QUIET) {
            put64(&p, e[i].term);
            put64(&p, e[i].commit);
            put64(&p, e[i].last);
        }
    }
    assert((size_t)(p - n->scratch) == total);
    *frame = n->scratch;
    *len = total;
    return FR_OK;
}

int fr_wire_check_quiesce(const uint8_t *p, size_t len, enum fr_quiesce_op *op, unsigned *count, char *errmsg,
                          size_t errmsg_len)
{
    struct rd r = {.p = p, .end = p + len};
    uint8_t kind = get8(&r);
    uint8_t o = get8(&r);
    (void)get16(&r);
    uint32_t c = get32(&r);
    if (r.err || kind != FR_FRAME_QUIESCE || (o != FR_QOP_QUIET && o != FR_QOP_WAKE)) {
        snprintf(errmsg, errmsg_len, "quiesce frame: bad header");
        return FR_ERR_INVALID;
    }
    if (c == 0 || c > FR_QUIESCE_MAX_ENTRIES ||
        (uint64_t)c * quiesce_entry_len((enum fr_quiesce_op)o) != (uint64_t)(r.end - r.p)) {
        snprintf(errmsg, errmsg_len, "quiesce frame: %u entries in %zu bytes", c, (size_t)(r.end - r.p));
        return FR_ERR_INVALID;
    }
    *op = (enum fr_quiesce_op)o;
    *count = c;
    return FR_OK;
}

void fr_wire_get_quiesce_entry(const uint8_t *p, enum fr_quiesce_op op, unsigned i, struct fr_q_entry *e)
{
    const uint8_t *q = p + FR_QUIESCE_HDR_LEN + (size_t)i * quiesce_entry_len(op);
    struct rd r = {.p = q, .end = q + quiesce_entry_len(op)};
    memset(e, 0, sizeof(*e));
    e->group_id = get64(&r);
    if (op == FR_QOP_QUIET) {
        e->term = get64(&r);
        e->commit = get64(&r);
        e->last = get64(&r);
    }
    assert(!r.err);
}

int fr_wire_encode(struct fr_node *n, uint64_t group_id, const struct raft_message *msg, const uint8_t **frame,
                   size_t *len)
{
    uint64_t body = 0; /* bytes after the raft header */
    struct raft_buffer conf = {0};
    int rc;

    switch (msg->type) {
    case RAFT_APPEND_ENTRIES: {
        const struct raft_append_entries *a = &msg->append_entries;
        body = 4 * 8 + 4 + (uint64_t)a->n_entries * ENTRY_HDR_LEN;
        for (unsigned i = 0; i < a->n_entries; i++) {
            if (a->entries[i].buf.len > UINT32_MAX)
                return FR_ERR_TOO_BIG;
            body += a->entries[i].buf.len;
        }
        break;
    }
    case RAFT_APPEND_ENTRIES_RESULT:
        body = 3 * 8 + 2 + 2;
        break;
    case RAFT_REQUEST_VOTE:
        body = 4 * 8 + 1;
        break;
    case RAFT_REQUEST_VOTE_RESULT:
        body = 8 + 1 + 2 + 2;
        break;
    case RAFT_INSTALL_SNAPSHOT:
        rc = raft_configuration_encode(&msg->install_snapshot.conf, &conf);
        if (rc != 0)
            return FR_ERR_NOMEM;
        if (conf.len > UINT32_MAX) {
            raft_free(conf.base);
            return FR_ERR_TOO_BIG;
        }
        body = 4 * 8 + 4 + conf.len + 8 + msg->install_snapshot.data.len;
        break;
    case RAFT_TIMEOUT_NOW:
        body = 3 * 8;
        break;
    default:
        return FR_ERR_INVALID;
    }
    if (body > FR_PEER_MAX_FRAME_BYTES - FR_RAFT_HDR_LEN) {
        raft_free(conf.base);
        return FR_ERR_TOO_BIG;
    }
    size_t total = 4 + FR_RAFT_HDR_LEN + (size_t)body;
    rc = scratch_reserve(n, total);
    if (rc != FR_OK) {
        raft_free(conf.base);
        return rc;
    }

    uint8_t *p = n->scratch;
    put32(&p, (uint32_t)(total - 4));
    put8(&p, FR_FRAME_RAFT);
    put8(&p, (uint8_t)msg->type);
    uint8_t version = 0;
    switch (msg->type) {
    case RAFT_APPEND_ENTRIES: version = msg->append_entries.version; break;
    case RAFT_APPEND_ENTRIES_RESULT: version = msg->append_entries_result.version; break;
    case RAFT_REQUEST_VOTE: version = msg->request_vote.version; break;
    case RAFT_REQUEST_VOTE_RESULT: version = msg->request_vote_result.version; break;
    case RAFT_INSTALL_SNAPSHOT: version = msg->install_snapshot.version; break;
    case RAFT_TIMEOUT_NOW: version = msg->timeout_now.version; break;
    }
    put8(&p, version);
    put8(&p, 0);
    put64(&p, group_id);

    switch (msg->type) {
    case RAFT_APPEND_ENTRIES: {
        const struct raft_append_entries *a = &msg->append_entries;
        put64(&p, a->term);
        put64(&p, a->prev_log_index);
        put64(&p, a->prev_log_term);
        put64(&p, a->leader_commit);
        put32(&p, a->n_entries);
        for (unsigned i = 0; i < a->n_entries; i++) {
            put64(&p, a->entries[i].term);
            put8(&p, (uint8_t)a->entries[i].type);
            put32(&p, (uint32_t)a->entries[i].buf.len);
        }
        for (unsigned i = 0; i < a->n_entries; i++) {
            if (a->entries[i].buf.len > 0)
                memcpy(p, a->entries[i].buf.base, a->entries[i].buf.len);
            p += a->entries[i].buf.len;
        }
        break;
    }
    case RAFT_APPEND_ENTRIES_RESULT: {
        const struct raft_append_entries_result *r = &msg->append_entries_result;
        put64(&p, r->term);
        put64(&p, r->rejected);
        put64(&p, r->last_log_index);
        put16(&p, r->features);
        put16(&p, r->capacity);
        break;
    }
    case RAFT_REQUEST_VOTE: {
        const struct raft_request_vote *v = &msg->request_vote;
        put64(&p, v->term);
        put64(&p, v->candidate_id);
        put64(&p, v->last_log_index);
        put64(&p, v->last_log_term);
        put8(&p, (uint8_t)((v->disrupt_leader ? 1 : 0) | (v->pre_vote ? 2 : 0)));
        break;
    }
    case RAFT_REQUEST_VOTE_RESULT: {
        const struct raft_request_vote_result *v = &msg->request_vote_result;
        put64(&p, v->term);
        put8(&p, (uint8_t)((v->vote_granted ? 1 : 0) | (v->pre_vote ? 2 : 0)));
        put16(&p, v->features);
        put16(&p, v->capacity);
        break;
    }
    case RAFT_INSTALL_SNAPSHOT: {
        const struct raft_install_snapshot *s = &msg->install_snapshot;
        put64(&p, s->term);
        put64(&p, s->last_index);
        put64(&p, s->last_term);
        put64(&p, s->conf_index);
        put32(&p, (uint32_t)conf.len);
        memcpy(p, conf.base, conf.len);
        p += conf.len;
        put64(&p, s->data.len);
        if (s->data.len > 0)
            memcpy(p, s->data.base, s->data.len);
        p += s->data.len;
        raft_free(conf.base);
        break;
    }
    case RAFT_TIMEOUT_NOW: {
        const struct raft_timeout_now *t = &msg->timeout_now;
        put64(&p, t->term);
        put64(&p, t->last_log_index);
        put64(&p, t->last_log_term);
        break;
    }
    }
    assert((size_t)(p - n->scratch) == total);
    *frame = n->scratch;
    *len = total;
    return FR_OK;
}

static int decode_append_entries(struct rd *r, struct raft_append_entries *a, char *errmsg, size_t errmsg_len)
{
    a->term = get64(r);
    a->prev_log_index = get64(r);
    a->prev_log_term = get64(r);
    a->leader_commit = get64(r);
    uint32_t n = get32(r);
    a->entries = NULL;
    a->n_entries = 0;
    if (r->err) {
        snprintf(errmsg, errmsg_len, "append entries: truncated header");
        return FR_ERR_INVALID;
    }
    /* Bound the count by the bytes present before allocating anything. */
    if ((uint64_t)n * ENTRY_HDR_LEN > (uint64_t)(r->end - r->p)) {
        snprintf(errmsg, errmsg_len, "append entries: %u entries do not fit in %zu bytes", n,
                 (size_t)(r->end - r->p));
        return FR_ERR_INVALID;
    }
    if (n == 0)
        return r->p == r->end ? FR_OK : FR_ERR_INVALID;

    struct raft_entry *e = raft_calloc(n, sizeof(*e));
    if (e == NULL)
        return FR_ERR_NOMEM;
    uint64_t total = 0;
    for (uint32_t i = 0; i < n; i++) {
        e[i].term = get64(r);
        uint8_t type = get8(r);
        e[i].buf.len = get32(r);
        if (type < RAFT_COMMAND || type > RAFT_CHANGE) {
            snprintf(errmsg, errmsg_len, "append entries: entry %u has unknown type %u", i, type);
            raft_free(e);
            return FR_ERR_INVALID;
        }
        e[i].type = (enum raft_entry_type)type;
        total += e[i].buf.len;
    }
    if (r->err || total != (uint64_t)(r->end - r->p)) {
        snprintf(errmsg, errmsg_len, "append entries: entry data of %llu bytes, %zu present",
                 (unsigned long long)total, (size_t)(r->end - r->p));
        raft_free(e);
        return FR_ERR_INVALID;
    }
    /* All entries share one raft_malloc'd batch, as raft_uv does: Raft frees it when the last
     * entry referring to it is released. */
    uint8_t *batch = NULL;
    if (total > 0) {
        batch = raft_malloc((size_t)total);
        if (batch == NULL) {
            raft_free(e);
            return FR_ERR_NOMEM;
        }
        memcpy(batch, r->p, (size_t)total);
        r->p += total;
    }
    size_t off = 0;
    for (uint32_t i = 0; i < n; i++) {
        e[i].batch = batch;
        e[i].buf.base = e[i].buf.len > 0 ? batch + off : NULL;
        off += e[i].buf.len;
    }
    a->entries = e;
    a->n_entries = n;
    return FR_OK;
}

static int decode_install_snapshot(struct rd *r, struct raft_install_snapshot *s, char *errmsg, size_t errmsg_len)
{
    s->term = get64(r);
    s->last_index = get64(r);
    s->last_term = get64(r);
    s->conf_index = get64(r);
    uint32_t conf_len = get32(r);
    if (r->err || conf_len > (size_t)(r->end - r->p)) {
        snprintf(errmsg, errmsg_len, "install snapshot: truncated configuration");
        return FR_ERR_INVALID;
    }
    struct raft_buffer cb = {.base = (void *)r->p, .len = conf_len};
    r->p += conf_len;
    uint64_t data_len = get64(r);
    if (r->err || data_len != (uint64_t)(r->end - r->p)) {
        snprintf(errmsg, errmsg_len, "install snapshot: data length %llu, %zu bytes present",
                 (unsigned long long)data_len, (size_t)(r->end - r->p));
        return FR_ERR_INVALID;
    }
    raft_configuration_init(&s->conf);
    if (raft_configuration_decode(&cb, &s->conf) != 0) {
        snprintf(errmsg, errmsg_len, "install snapshot: bad configuration");
        return FR_ERR_INVALID;
    }
    s->data.len = (size_t)data_len;
    s->data.base = NULL;
    if (data_len > 0) {
        s->data.base = raft_malloc((size_t)data_len);
        if (s->data.base == NULL) {
            raft_configuration_close(&s->conf);
            return FR_ERR_NOMEM;
        }
        memcpy(s->data.base, r->p, (size_t)data_len);
        r->p += data_len;
    }
    return FR_OK;
}

int fr_wire_decode(const uint8_t *p, size_t len, struct raft_message *msg, uint64_t *group_id, char *errmsg,
                   size_t errmsg_len)
{
    struct rd r = {.p = p, .end = p + len};
    memset(msg, 0, sizeof(*msg));
    uint8_t kind = get8(&r);
    uint8_t type = get8(&r);
    uint8_t version = get8(&r);
    (void)get8(&r);
    *group_id = get64(&r);
    if (r.err || kind != FR_FRAME_RAFT) {
        snprintf(errmsg, errmsg_len, "raft frame: bad header");
        return FR_ERR_INVALID;
    }
    msg->type = (enum raft_message_type)type;
    int rc = FR_OK;
    switch (type) {
    case RAFT_APPEND_ENTRIES:
        msg->append_entries.version = version;
        rc = decode_append_entries(&r, &msg->append_entries, errmsg, errmsg_len);
        break;
    case RAFT_APPEND_ENTRIES_RESULT: {
        struct raft_append_entries_result *a = &msg->append_entries_result;
        a->version = version;
        a->term = get64(&r);
        a->rejected = get64(&r);
        a->last_log_index = get64(&r);
        a->features = get16(&r);
        a->capacity = get16(&r);
        break;
    }
    case RAFT_REQUEST_VOTE: {
        struct raft_request_vote *v = &msg->request_vote;
        v->version = version;
        v->term = get64(&r);
        v->candidate_id = get64(&r);
        v->last_log_index = get64(&r);
        v->last_log_term = get64(&r);
        uint8_t flags = get8(&r);
        v->disrupt_leader = (flags & 1) != 0;
        v->pre_vote = (flags & 2) != 0;
        break;
    }
    case RAFT_REQUEST_VOTE_RESULT: {
        struct raft_request_vote_result *v = &msg->request_vote_result;
        v->version = version;
        v->term = get64(&r);
        uint8_t flags = get8(&r);
        v->vote_granted = (flags & 1) != 0;
        v->pre_vote = (flags & 2) != 0;
        v->features = get16(&r);
        v->capacity = get16(&r);
        break;
    }
    case RAFT_INSTALL_SNAPSHOT:
        msg->install_snapshot.version = version;
        rc = decode_install_snapshot(&r, &msg->install_snapshot, errmsg, errmsg_len);
        break;
    case RAFT_TIMEOUT_NOW: {
        struct raft_timeout_now *t = &msg->timeout_now;
        t->version = version;
        t->term = get64(&r);
        t->last_log_index = get64(&r);
        t->last_log_term = get64(&r);
        break;
    }
    default:
        snprintf(errmsg, errmsg_len, "raft frame: unknown message type %u", type);
        return FR_ERR_INVALID;
    }
    if (rc != FR_OK)
        return rc;
    if (r.err || r.p != r.end) {
        snprintf(errmsg, errmsg_len, "raft frame: message type %u of %zu bytes is malformed", type, len);
        if (type == RAFT_APPEND_ENTRIES && msg->append_entries.n_entries > 0) {
            raft_free(msg->append_entries.entries[0].batch);
            raft_free(msg->append_entries.entries);
        }
        return FR_ERR_INVALID;
    }
    return FR_OK;
}
