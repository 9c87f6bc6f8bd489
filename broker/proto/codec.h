/* codec.h: request/response envelopes in msgpack, with bounded decoding (docs/protocol.md §Frames). */
#ifndef FERRY_CODEC_H
#define FERRY_CODEC_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

/*
 * A frame is a 4-byte big-endian length N (1 <= N <= FERRY_MAX_FRAME_BYTES) then N bytes holding
 * exactly one msgpack value. (The length prefix is handled by the transport, net/conn.h.)
 *
 *   request  = array(5) [ api: uint, version: uint, correlation_id: uint32, client_id: str|nil, body: map ]
 *   response = array(4) [ correlation_id: uint32, error: int, error_message: str|nil, body: map|nil ]
 *
 * A response's top-level error is for the request as a whole (e.g. UNSUPPORTED_VERSION); errors
 * of individual topics/partitions are inside the body. Bodies are maps with string keys (docs/protocol.md
 * lists them per api and version); unknown keys are ignored so newer clients can add optional fields.
 */

enum ferry_api {
    FERRY_API_API_VERSIONS = 0,
    FERRY_API_METADATA = 1,
    FERRY_API_CREATE_TOPICS = 2,
    FERRY_API_DELETE_TOPICS = 3,
    FERRY_API_PRODUCE = 4,
    FERRY_API_FETCH = 5,
    FERRY_API_LIST_OFFSETS = 6,
    FERRY_API_INIT_PRODUCER_ID = 7,
    /* consumer groups (docs/consumer-groups.md) */
    FERRY_API_FIND_COORDINATOR = 8,
    FERRY_API_GROUP_HEARTBEAT = 9,
    FERRY_API_OFFSET_COMMIT = 10,
    FERRY_API_OFFSET_FETCH = 11,
    FERRY_API_LIST_GROUPS = 12,
    FERRY_API_DESCRIBE_GROUPS = 13,
    FERRY_API_DELETE_GROUPS = 14,
    FERRY_API_RESET_OFFSETS = 15,
    FERRY_API_COUNT_ /* one past the last api number */
};
const char *ferry_api_name(int api);

/* Decoded message: msgpack-c objects allocated in zone; str/bin point into the frame buffer,
 * which must outlive the message. */
struct ferry_msg {
    msgpack_zone zone;
    msgpack_object root;
};

/*
 * Checks that buf[0, len) is exactly one msgpack value within the limits of proto/limits.h
 * (nesting depth, array and map lengths, and every declared length <= the bytes that remain),
 * without allocating. Then unpacks it with msgpack-c. Returns 0, or FERRY_ERR_INVALID_REQUEST
 * (malformed) / FERRY_ERR_LIMIT_EXCEEDED (a limit) with errmsg saying what and where.
 * On success the caller must ferry_msg_destroy(m).
 */
int ferry_msg_unpack(const uint8_t *buf, size_t len, struct ferry_msg *m, char *errmsg, size_t errmsg_len);
void ferry_msg_destroy(struct ferry_msg *m);

/* The pre-scan alone (exposed for tests and fuzzing). Same returns as ferry_msg_unpack. */
int ferry_msgpack_check(const uint8_t *buf, size_t len, char *errmsg, size_t errmsg_len);

struct ferry_request_header {
    uint32_t api;
    uint32_t version;
    uint32_t correlation_id;
    const char *client_id; /* not NUL-terminated; NULL if nil */
    size_t client_id_len;
    const msgpack_object *body; /* a map */
};
/* Returns 0 or FERRY_ERR_INVALID_REQUEST. When the correlation id could be read, *header has it even
 * on error (so the broker can answer the request rather than close the connection). */
int ferry_request_header_decode(const msgpack_object *root, struct ferry_request_header *h, char *errmsg,
                                size_t errmsg_len);

struct ferry_response_header {
    uint32_t correlation_id;
    int32_t error;
    const char *error_message; /* NULL if nil */
    size_t error_message_len;
    const msgpack_object *body; /* a map, or NULL if nil */
};
/* Returns 0 or FERRY_ERR__BAD_RESPONSE (a client-side code) with errmsg filled. */
int ferry_response_header_decode(const msgpack_object *root, struct ferry_response_header *h, char *errmsg,
                                 size_t errmsg_len);

/*
 * Typed field access on a body map, with the first error remembered:
 *   struct ferry_mp_reader rd = {0};
 *   int64_t p = ferry_mp_int(&rd, map, "partition", 0, 1);
 *   if (rd.err) -> rd.errmsg says e.g. "field 'partition': expected integer, got str"
 * required=0 returns the default (or NULL) when the key is absent or nil.
 * Ranges: ferry_mp_int_range also checks min <= v <= max ("field 'partitions': 0 not in [1, 10000]").
 */
struct ferry_mp_reader {
    int err; /* 0 or FERRY_ERR_INVALID_REQUEST */
    char errmsg[256];
};
const msgpack_object *ferry_mp_get(const msgpack_object *map, const char *key);
int64_t ferry_mp_int(struct ferry_mp_reader *rd, const msgpack_object *map, const char *key, int64_t def, int required);
int64_t ferry_mp_int_range(struct ferry_mp_reader *rd, const msgpack_object *map, const char *key, int64_t def,
                           int required, int64_t min, int64_t max);
const char *ferry_mp_str(struct ferry_mp_reader *rd, const msgpack_object *map, const char *key, size_t *len,
                         int required);
const uint8_t *ferry_mp_bin(struct ferry_mp_reader *rd, const msgpack_object *map, const char *key, size_t *len,
                            int required);
const msgpack_object_array *ferry_mp_array(struct ferry_mp_reader *rd, const msgpack_object *map, const char *key,
                                           int required);
const msgpack_object *ferry_mp_map(struct ferry_mp_reader *rd, const msgpack_object *map, const char *key,
                                   int required);
/* Element i of an array as a map (error if it is not one); name is used in the message. */
const msgpack_object *ferry_mp_elem_map(struct ferry_mp_reader *rd, const msgpack_object_array *a, uint32_t i,
                                        const char *name);

/* ---- encoding ---- */
/* Packing helpers over msgpack_packer writing into msgpack_sbuffer. The frame length prefix is
 * reserved at the start of the buffer: begin() writes 4 placeholder bytes, finish() patches them. */
/* begin() initialises *sb (msgpack_sbuffer_init: it must not hold memory) and *pk (writing into sb);
 * after finish() send sb->data/sb->size (length prefix included) and msgpack_sbuffer_destroy(sb). */
void ferry_frame_begin(msgpack_sbuffer *sb, msgpack_packer *pk);
/* Patches the length; returns 0, or FERRY_ERR_LIMIT_EXCEEDED if the frame is too large. */
int ferry_frame_finish(msgpack_sbuffer *sb);
void ferry_pack_request_header(msgpack_packer *pk, uint32_t api, uint32_t version, uint32_t correlation_id,
                               const char *client_id); /* caller then packs the body map */
void ferry_pack_response_header(msgpack_packer *pk, uint32_t correlation_id, int32_t error,
                                const char *error_message); /* caller then packs the body (map or nil) */
void ferry_pack_str(msgpack_packer *pk, const char *s);            /* nil when s is NULL */
void ferry_pack_strn(msgpack_packer *pk, const char *s, size_t n); /* nil when s is NULL */
void ferry_pack_key(msgpack_packer *pk, const char *key);          /* a map key */
void ferry_pack_bin(msgpack_packer *pk, const void *p, size_t n);

#endif
