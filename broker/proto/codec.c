/* codec.c: msgpack envelopes: bounded pre-scan, unpack, typed field access, frame and header packing. */
#include "proto/codec.h"

#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "ferry_errors.h"
#include "proto/limits.h"
#include "proto/varint.h"

__attribute__((format(printf, 3, 4))) static void set_err(char *errmsg, size_t errmsg_len, const char *fmt, ...)
{
    if (!errmsg || !errmsg_len)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errmsg, errmsg_len, fmt, ap);
    va_end(ap);
}

const char *ferry_api_name(int api)
{
    switch (api) {
    case FERRY_API_API_VERSIONS:
        return "ApiVersions";
    case FERRY_API_METADATA:
        return "Metadata";
    case FERRY_API_CREATE_TOPICS:
        return "CreateTopics";
    case FERRY_API_DELETE_TOPICS:
        return "DeleteTopics";
    case FERRY_API_PRODUCE:
        return "Produce";
    case FERRY_API_FETCH:
        return "Fetch";
    case FERRY_API_LIST_OFFSETS:
        return "ListOffsets";
    case FERRY_API_INIT_PRODUCER_ID:
        return "InitProducerId";
    case FERRY_API_FIND_COORDINATOR:
        return "FindCoordinator";
    case FERRY_API_GROUP_HEARTBEAT:
        return "GroupHeartbeat";
    case FERRY_API_OFFSET_COMMIT:
        return "OffsetCommit";
    case FERRY_API_OFFSET_FETCH:
        return "OffsetFetch";
    case FERRY_API_LIST_GROUPS:
        return "ListGroups";
    case FERRY_API_DESCRIBE_GROUPS:
        return "DescribeGroups";
    case FERRY_API_DELETE_GROUPS:
        return "DeleteGroups";
    case FERRY_API_RESET_OFFSETS:
        return "ResetOffsets";
    default:
        return "Unknown";
    }
}

/* ------------------------------------------------------------------------------------------ */
/* pre-scan                                                                                    */

/* Reads an n-byte big-endian length at p (n = 1, 2 or 4). */
static uint32_t be_len(const uint8_t *p, int n)
{
    return n == 1 ? p[0] : n == 2 ? ferry_be16_get(p) : ferry_be32_get(p);
}

/*
 * Walks the value iteratively. stack[d] counts the items still to read in the container open at
 * depth d+1 (stack[0] is the top level, which holds exactly one value). No allocation.
 */
int ferry_msgpack_check(const uint8_t *buf, size_t len, char *errmsg, size_t errmsg_len)
{
    uint64_t stack[FERRY_MAX_NESTING_DEPTH + 1];
    int depth = 0;
    size_t pos = 0;
    uint64_t objects = 0;

    stack[0] = 1;
    for (;;) {
        while (depth > 0 && stack[depth] == 0)
            depth--;
        if (stack[depth] == 0)
            break; /* depth 0: the one value is complete */
        stack[depth]--;

        size_t at = pos;
        if (pos >= len) {
            set_err(errmsg, errmsg_len, "truncated: value expected at byte %zu", at);
            return FERRY_ERR_INVALID_REQUEST;
        }
        if (++objects > FERRY_MAX_MSGPACK_OBJECTS) {
            set_err(errmsg, errmsg_len, "byte %zu: more than %u values in one message", at, FERRY_MAX_MSGPACK_OBJECTS);
            return FERRY_ERR_LIMIT_EXCEEDED;
        }
        uint8_t b = buf[pos++];
        size_t fixed = 0;    /* payload bytes of a fixed-size scalar */
        int lenbytes = 0;    /* width of an explicit length field */
        int kind = 0;        /* 0 scalar, 1 str/bin, 2 array, 3 map */
        uint64_t count = 0;  /* for containers and str/bin from fix types */
        const char *what = "";

        if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) {
            /* fixint, nil, bool */
        } else if (b <= 0x8f) {
            kind = 3, count = b & 0x0f, what = "map";
        } else if (b <= 0x9f) {
            kind = 2, count = b & 0x0f, what = "array";
        } else if (b <= 0xbf) {
            kind = 1, count = b & 0x1f, what = "str";
        } else {
            switch (b) {
            case 0xc1:
                set_err(errmsg, errmsg_len, "byte %zu: reserved type byte 0xc1", at);
                return FERRY_ERR_INVALID_REQUEST;
            case 0xc4: case 0xc5: case 0xc6:
                kind = 1, lenbytes = 1 << (b - 0xc4), what = "bin";
                break;
            case 0xc7: case 0xc8: case 0xc9:
            case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8:
                set_err(errmsg, errmsg_len, "byte %zu: ext type 0x%02x is not used by the protocol", at, b);
                return FERRY_ERR_INVALID_REQUEST;
            case 0xca: fixed = 4; break; /* float32 */
            case 0xcb: fixed = 8; break; /* float64 */
            case 0xcc: case 0xd0: fixed = 1; break;
            case 0xcd: case 0xd1: fixed = 2; break;
            case 0xce: case 0xd2: fixed = 4; break;
            case 0xcf: case 0xd3: fixed = 8; break;
            case 0xd9: case 0xda: case 0xdb:
                kind = 1, lenbytes = 1 << (b - 0xd9), what = "str";
                break;
            case 0xdc: case 0xdd:
                kind = 2, lenbytes = b == 0xdc ? 2 : 4, what = "array";
                break;
            default: /* 0xde, 0xdf */
                kind = 3, lenbytes = b == 0xde ? 2 : 4, what = "map";
                break;
            }
        }
        if (lenbytes) {
            if ((size_t)lenbytes > len - pos) {
                set_err(errmsg, errmsg_len, "truncated: %s length at byte %zu", what, at);
                return FERRY_ERR_INVALID_REQUEST;
            }
            count = be_len(buf + pos, lenbytes);
            pos += (size_t)lenbytes;
        }
        size_t left = len - pos;
        if (fixed) {
            if (fixed > left) {
                set_err(errmsg, errmsg_len, "truncated: %zu-byte scalar at byte %zu, %zu bytes remain", fixed, at, left);
                return FERRY_ERR_INVALID_REQUEST;
            }
            pos += fixed;
        } else if (kind == 1) {
            if (count > left) {
                set_err(errmsg, errmsg_len, "byte %zu: %s of %" PRIu64 " bytes, only %zu bytes remain", at, what,
                        count, left);
                return FERRY_ERR_INVALID_REQUEST;
            }
            pos += (size_t)count;
        } else if (kind >= 2) {
            uint64_t limit = kind == 2 ? FERRY_MAX_ARRAY_LEN : FERRY_MAX_MAP_LEN;
            uint64_t need = kind == 2 ? count : 2 * count;
            if (count > limit) {
                set_err(errmsg, errmsg_len, "byte %zu: %s of %" PRIu64 " entries exceeds the limit of %" PRIu64, at,
                        what, count, limit);
                return FERRY_ERR_LIMIT_EXCEEDED;
            }
            if (need > left) {
                set_err(errmsg, errmsg_len, "byte %zu: %s of %" PRIu64 " entries needs at least %" PRIu64
                        " bytes, only %zu remain", at, what, count, need, left);
                return FERRY_ERR_INVALID_REQUEST;
            }
            if (depth + 1 > FERRY_MAX_NESTING_DEPTH) {
                set_err(errmsg, errmsg_len, "byte %zu: %s nested deeper than %d levels", at, what,
                        FERRY_MAX_NESTING_DEPTH);
                return FERRY_ERR_LIMIT_EXCEEDED;
            }
            if (need) {
                depth++;
                stack[depth] = need;
            }
        }
    }
    if (pos != len) {
        set_err(errmsg, errmsg_len, "%zu trailing bytes after the value, at byte %zu", len - pos, pos);
        return FERRY_ERR_INVALID_REQUEST;
    }
    return 0;
}

int ferry_msg_unpack(const uint8_t *buf, size_t len, struct ferry_msg *m, char *errmsg, size_t errmsg_len)
{
    int rc = ferry_msgpack_check(buf, len, errmsg, errmsg_len);
    if (rc)
        return rc;
    if (!msgpack_zone_init(&m->zone, MSGPACK_ZONE_CHUNK_SIZE)) {
        set_err(errmsg, errmsg_len, "out of memory");
        return FERRY_ERR__NO_MEMORY;
    }
    size_t off = 0;
    msgpack_unpack_return ur = msgpack_unpack((const char *)buf, len, &off, &m->zone, &m->root);
    if (ur != MSGPACK_UNPACK_SUCCESS || off != len) {
        /* Only out of memory can get here after a clean pre-scan. */
        msgpack_zone_destroy(&m->zone);
        set_err(errmsg, errmsg_len, "msgpack unpack failed (%d) at byte %zu", (int)ur, off);
        return ur == MSGPACK_UNPACK_NOMEM_ERROR ? FERRY_ERR__NO_MEMORY : FERRY_ERR_INVALID_REQUEST;
    }
    return 0;
}

void ferry_msg_destroy(struct ferry_msg *m)
{
    msgpack_zone_destroy(&m->zone);
}

/* ------------------------------------------------------------------------------------------ */
/* typed access                                                                                */

static const char *type_name(const msgpack_object *o)
{
    switch (o->type) {
    case MSGPACK_OBJECT_NIL:
        return "nil";
    case MSGPACK_OBJECT_BOOLEAN:
        return "bool";
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return "integer";
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        return "float";
    case MSGPACK_OBJECT_STR:
        return "str";
    case MSGPACK_OBJECT_BIN:
        return "bin";
    case MSGPACK_OBJECT_ARRAY:
        return "array";
    case MSGPACK_OBJECT_MAP:
        return "map";
    default:
        return "ext";
    }
}

__attribute__((format(printf, 2, 3))) static void rd_fail(struct ferry_mp_reader *rd, const char *fmt, ...)
{
    if (rd->err)
        return; /* keep the first error */
    rd->err = FERRY_ERR_INVALID_REQUEST;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rd->errmsg, sizeof rd->errmsg, fmt, ap);
    va_end(ap);
}

const msgpack_object *ferry_mp_get(const msgpack_object *map, const char *key)
{
    if (!map || map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    size_t klen = strlen(key);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == klen && memcmp(k->via.str.ptr, key, klen) == 0)
            return &map->via.map.ptr[i].val;
    }
    return NULL;
}

/* The field's value, or NULL when absent or nil (an error if required). */
static const msgpack_object *field(struct ferry_mp_reader *rd, const msgpack_object *map, const char *key,
                                   int required)
{
    const msgpack_object *o = ferry_mp_get(map, key);
    if (o && o->type == MSGPACK_OBJECT_NIL)
        o = NULL;
    if (!o && required)
        rd_fail(rd, "field '%s': missing", key);
    return o;
}

static void type_error(struct ferry_mp_reader *rd, const char *key, const char *want, const msgpack_object *o)
{
    rd_fail(rd, "field '%s': expected %s, got %s", key, want, type_name(o));
}

/* Reads an integer object into *v; returns 0, or -1 (message in rd) when not an int64. */
static int get_int(struct ferry_mp_reader *rd, const char *key, const msgpack_object *o, int64_t *v)
{
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        *v = o->via.i64;
        return 0;
    }
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        if (o->via.u64 > INT64_MAX) {
            rd_fail(rd, "field '%s': %" PRIu64 " out of range", key, o->via.u64);
            return -1;
        }
        *v = (int64_t)o->via.u64;
        return 0;
    }
    type_error(rd, key, "integer", o);
    return -1;
}

int64_t ferry_mp_int(struct ferry_mp_reader *rd, const msgpack_object *map, const char *key, int64_t def,
                     int required)
{
    int64_t v;
    const msgpack_object *o = field(rd, map, key, required);
    if (!o || get_int(rd, key, o, &v) < 0)
        return def;
    return v;
}

int64_t ferry_mp_int_range(struct ferry_mp_reader *rd, const msgpack_object *map, const char *key, int64_t def,
                           int required, int64_t min, int64_t max)
{
    int64_t v;
    const msgpack_object *o = field(rd, map, key, required);
    if (!o || get_int(rd, key, o, &v) < 0)
        return def;
    if (v < min || v > max) {
        rd_fail(rd, "field '%s': %" PRId64 " not in [%" PRId64 ", %" PRId64 "]", key, v, min, max);
        return def;
    }
    return v;
}

const char *ferry_mp_str(struct ferry_mp_reader *rd, const msgpack_object *map, const char *key, size_t *len,
                         int required)
{
    *len = 0;
    const msgpack_object *o = field(rd, map, key, required);
    if (!o)
        return NULL;
    if (o->type != MSGPACK_OBJECT_STR) {
        type_error(rd, key, "str", o);
        return NULL;
    }
    *len = o->via.str.size;
    return o->via.str.ptr;
}

const uint8_t *ferry_mp_bin(struct ferry_mp_reader *rd, const msgpack_object *map, const char *key, size_t *len,
                            int required)
{
    *len = 0;
    const msgpack_object *o = field(rd, map, key, required);
    if (!o)
        return NULL;
    if (o->type != MSGPACK_OBJECT_BIN) {
        type_error(rd, key, "bin", o);
        return NULL;
    }
    *len = o->via.bin.size;
    return (const uint8_t *)o->via.bin.ptr;
}

const msgpack_object_array *ferry_mp_array(struct ferry_mp_reader *rd, const msgpack_object *map, const char *key,
                                           int required)
{
    const msgpack_object *o = field(rd, map, key, required);
    if (!o)
        return NULL;
    if (o->type != MSGPACK_OBJECT_ARRAY) {
        type_error(rd, key, "array", o);
        return NULL;
    }
    return &o->via.array;
}

const msgpack_object *ferry_mp_map(struct ferry_mp_reader *rd, const msgpack_object *map, const char *key,
                                   int required)
{
    const msgpack_object *o = field(rd, map, key, required);
    if (!o)
        return NULL;
    if (o->type != MSGPACK_OBJECT_MAP) {
        type_error(rd, key, "map", o);
        return NULL;
    }
    return o;
}

const msgpack_object *ferry_mp_elem_map(struct ferry_mp_reader *rd, const msgpack_object_array *a, uint32_t i,
                                        const char *name)
{
    if (!a || i >= a->size) {
        rd_fail(rd, "%s[%u]: no such element", name, i);
        return NULL;
    }
    const msgpack_object *o = &a->ptr[i];
    if (o->type != MSGPACK_OBJECT_MAP) {
        rd_fail(rd, "%s[%u]: expected map, got %s", name, i, type_name(o));
        return NULL;
    }
    return o;
}

/* ------------------------------------------------------------------------------------------ */
/* envelopes                                                                                   */

static int get_u32(const msgpack_object *o, uint32_t *out)
{
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER || o->via.u64 > UINT32_MAX)
        return -1;
    *out = (uint32_t)o->via.u64;
    return 0;
}

int ferry_request_header_decode(const msgpack_object *root, struct ferry_request_header *h, char *errmsg,
                                size_t errmsg_len)
{
    memset(h, 0, sizeof *h);
    if (root->type != MSGPACK_OBJECT_ARRAY || root->via.array.size != 5) {
        set_err(errmsg, errmsg_len, "request: expected array(5), got %s", type_name(root));
        if (root->type == MSGPACK_OBJECT_ARRAY)
            set_err(errmsg, errmsg_len, "request: expected array(5), got array(%u)", root->via.array.size);
        return FERRY_ERR_INVALID_REQUEST;
    }
    const msgpack_object *e = root->via.array.ptr;
    if (get_u32(&e[2], &h->correlation_id) < 0) {
        set_err(errmsg, errmsg_len, "request: correlation_id: expected uint32, got %s", type_name(&e[2]));
        return FERRY_ERR_INVALID_REQUEST;
    }
    if (get_u32(&e[0], &h->api) < 0) {
        set_err(errmsg, errmsg_len, "request: api: expected uint32, got %s", type_name(&e[0]));
        return FERRY_ERR_INVALID_REQUEST;
    }
    if (get_u32(&e[1], &h->version) < 0) {
        set_err(errmsg, errmsg_len, "request: version: expected uint32, got %s", type_name(&e[1]));
        return FERRY_ERR_INVALID_REQUEST;
    }
    if (e[3].type == MSGPACK_OBJECT_STR) {
        if (e[3].via.str.size > FERRY_MAX_CLIENT_ID) {
            set_err(errmsg, errmsg_len, "request: client_id of %u bytes exceeds %d", e[3].via.str.size,
                    FERRY_MAX_CLIENT_ID);
            return FERRY_ERR_INVALID_REQUEST;
        }
        h->client_id = e[3].via.str.ptr;
        h->client_id_len = e[3].via.str.size;
    } else if (e[3].type != MSGPACK_OBJECT_NIL) {
        set_err(errmsg, errmsg_len, "request: client_id: expected str or nil, got %s", type_name(&e[3]));
        return FERRY_ERR_INVALID_REQUEST;
    }
    if (e[4].type != MSGPACK_OBJECT_MAP) {
        set_err(errmsg, errmsg_len, "request: body: expected map, got %s", type_name(&e[4]));
        return FERRY_ERR_INVALID_REQUEST;
    }
    h->body = &e[4];
    return 0;
}

int ferry_response_header_decode(const msgpack_object *root, struct ferry_response_header *h, char *errmsg,
                                 size_t errmsg_len)
{
    memset(h, 0, sizeof *h);
    if (root->type != MSGPACK_OBJECT_ARRAY || root->via.array.size != 4) {
        set_err(errmsg, errmsg_len, "response: expected array(4), got %s", type_name(root));
        if (root->type == MSGPACK_OBJECT_ARRAY)
            set_err(errmsg, errmsg_len, "response: expected array(4), got array(%u)", root->via.array.size);
        return FERRY_ERR__BAD_RESPONSE;
    }
    const msgpack_object *e = root->via.array.ptr;
    if (get_u32(&e[0], &h->correlation_id) < 0) {
        set_err(errmsg, errmsg_len, "response: correlation_id: expected uint32, got %s", type_name(&e[0]));
        return FERRY_ERR__BAD_RESPONSE;
    }
    if (e[1].type == MSGPACK_OBJECT_POSITIVE_INTEGER && e[1].via.u64 <= INT32_MAX) {
        h->error = (int32_t)e[1].via.u64;
    } else if (e[1].type == MSGPACK_OBJECT_NEGATIVE_INTEGER && e[1].via.i64 >= INT32_MIN) {
        h->error = (int32_t)e[1].via.i64;
    } else {
        set_err(errmsg, errmsg_len, "response: error: expected int32, got %s", type_name(&e[1]));
        return FERRY_ERR__BAD_RESPONSE;
    }
    if (e[2].type == MSGPACK_OBJECT_STR) {
        h->error_message = e[2].via.str.ptr;
        h->error_message_len = e[2].via.str.size;
    } else if (e[2].type != MSGPACK_OBJECT_NIL) {
        set_err(errmsg, errmsg_len, "response: error_message: expected str or nil, got %s", type_name(&e[2]));
        return FERRY_ERR__BAD_RESPONSE;
    }
    if (e[3].type == MSGPACK_OBJECT_MAP) {
        h->body = &e[3];
    } else if (e[3].type != MSGPACK_OBJECT_NIL) {
        set_err(errmsg, errmsg_len, "response: body: expected map or nil, got %s", type_name(&e[3]));
        return FERRY_ERR__BAD_RESPONSE;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* encoding                                                                                    */

void ferry_frame_begin(msgpack_sbuffer *sb, msgpack_packer *pk)
{
    static const char placeholder[4] = {0, 0, 0, 0};
    msgpack_sbuffer_init(sb);
    msgpack_packer_init(pk, sb, msgpack_sbuffer_write);
    msgpack_sbuffer_write(sb, placeholder, sizeof placeholder);
}

int ferry_frame_finish(msgpack_sbuffer *sb)
{
    assert(sb->size > 4 && "frame_finish: nothing packed after frame_begin");
    size_t n = sb->size - 4;
    if (n > FERRY_MAX_FRAME_BYTES)
        return FERRY_ERR_LIMIT_EXCEEDED;
    ferry_be32_put((uint8_t *)sb->data, (uint32_t)n);
    return 0;
}

void ferry_pack_request_header(msgpack_packer *pk, uint32_t api, uint32_t version, uint32_t correlation_id,
                               const char *client_id)
{
    msgpack_pack_array(pk, 5);
    msgpack_pack_uint32(pk, api);
    msgpack_pack_uint32(pk, version);
    msgpack_pack_uint32(pk, correlation_id);
    ferry_pack_str(pk, client_id);
}

void ferry_pack_response_header(msgpack_packer *pk, uint32_t correlation_id, int32_t error, const char *error_message)
{
    msgpack_pack_array(pk, 4);
    msgpack_pack_uint32(pk, correlation_id);
    msgpack_pack_int32(pk, error);
    ferry_pack_str(pk, error_message);
}

void ferry_pack_str(msgpack_packer *pk, const char *s)
{
    ferry_pack_strn(pk, s, s ? strlen(s) : 0);
}

void ferry_pack_strn(msgpack_packer *pk, const char *s, size_t n)
{
    if (!s) {
        msgpack_pack_nil(pk);
        return;
    }
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

void ferry_pack_key(msgpack_packer *pk, const char *key)
{
    size_t n = strlen(key);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, key, n);
}

void ferry_pack_bin(msgpack_packer *pk, const void *p, size_t n)
{
    msgpack_pack_bin(pk, n);
    if (n)
        msgpack_pack_bin_body(pk, p, n);
}
