/* test_codec.c: msgpack envelopes: round trips, the worked frame example, pre-scan rejections, accessors. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "ferry_errors.h"
#include "proto/codec.h"
#include "proto/limits.h"

/* ---- helpers ---- */

static void expect_check(const uint8_t *buf, size_t len, int want, const char *needle, const char *what)
{
    char err[256] = "";
    int rc = ferry_msgpack_check(buf, len, err, sizeof err);
    cr_assert_eq(rc, want, "%s: rc %d (%s)", what, rc, err);
    if (want) {
        cr_assert_neq(err[0], '\0', "%s: no message", what);
        if (needle)
            cr_assert_not_null(strstr(err, needle), "%s: '%s' lacks '%s'", what, err, needle);
        /* ferry_msg_unpack runs the same check first */
        struct ferry_msg m;
        cr_assert_eq(ferry_msg_unpack(buf, len, &m, err, sizeof err), want, "%s (unpack)", what);
    }
}

/* Builds a request frame with a typical Produce-like body; returns the sbuffer (caller destroys). */
static void build_request(msgpack_sbuffer *sb)
{
    msgpack_packer pk;
    ferry_frame_begin(sb, &pk);
    ferry_pack_request_header(&pk, FERRY_API_PRODUCE, 0, 0xfffffffe, "client-1");
    msgpack_pack_map(&pk, 3);
    ferry_pack_key(&pk, "acks");
    msgpack_pack_int(&pk, -1);
    ferry_pack_key(&pk, "timeout_ms");
    msgpack_pack_uint32(&pk, 30000);
    ferry_pack_key(&pk, "topics");
    msgpack_pack_array(&pk, 1);
    msgpack_pack_map(&pk, 2);
    ferry_pack_key(&pk, "name");
    ferry_pack_str(&pk, "orders");
    ferry_pack_key(&pk, "partitions");
    msgpack_pack_array(&pk, 2);
    for (int p = 0; p < 2; p++) {
        msgpack_pack_map(&pk, 2);
        ferry_pack_key(&pk, "partition");
        msgpack_pack_int(&pk, p);
        ferry_pack_key(&pk, "batch");
        ferry_pack_bin(&pk, "\x01\x02\x03", 3);
    }
    cr_assert_eq(ferry_frame_finish(sb), 0);
}

/* ---- round trips ---- */

Test(codec, request_round_trip)
{
    msgpack_sbuffer sb;
    build_request(&sb);
    const uint8_t *f = (const uint8_t *)sb.data;
    uint32_t n = (uint32_t)f[0] << 24 | (uint32_t)f[1] << 16 | (uint32_t)f[2] << 8 | f[3];
    cr_assert_eq(n, sb.size - 4);

    struct ferry_msg m;
    char err[256];
    cr_assert_eq(ferry_msg_unpack(f + 4, n, &m, err, sizeof err), 0, "%s", err);
    struct ferry_request_header h;
    cr_assert_eq(ferry_request_header_decode(&m.root, &h, err, sizeof err), 0, "%s", err);
    cr_assert_eq(h.api, FERRY_API_PRODUCE);
    cr_assert_eq(h.version, 0u);
    cr_assert_eq(h.correlation_id, 0xfffffffeu);
    cr_assert_eq(h.client_id_len, 8u);
    cr_assert_eq(memcmp(h.client_id, "client-1", 8), 0);
    /* str points into the frame buffer (no copy) */
    cr_assert(h.client_id >= sb.data && h.client_id < sb.data + sb.size);

    struct ferry_mp_reader rd = {0};
    cr_assert_eq(ferry_mp_int(&rd, h.body, "acks", 1, 1), -1);
    cr_assert_eq(ferry_mp_int_range(&rd, h.body, "timeout_ms", 0, 0, 0, 60000), 30000);
    cr_assert_eq(ferry_mp_int(&rd, h.body, "absent", 42, 0), 42);
    const msgpack_object_array *topics = ferry_mp_array(&rd, h.body, "topics", 1);
    cr_assert_not_null(topics);
    const msgpack_object *t = ferry_mp_elem_map(&rd, topics, 0, "topics");
    size_t len;
    const char *name = ferry_mp_str(&rd, t, "name", &len, 1);
    cr_assert_eq(len, 6u);
    cr_assert_eq(memcmp(name, "orders", 6), 0);
    const msgpack_object_array *parts = ferry_mp_array(&rd, t, "partitions", 1);
    cr_assert_eq(parts->size, 2u);
    for (uint32_t i = 0; i < 2; i++) {
        const msgpack_object *p = ferry_mp_elem_map(&rd, parts, i, "partitions");
        cr_assert_eq(ferry_mp_int(&rd, p, "partition", -1, 1), (int64_t)i);
        const uint8_t *bin = ferry_mp_bin(&rd, p, "batch", &len, 1);
        cr_assert_eq(len, 3u);
        cr_assert_eq(memcmp(bin, "\x01\x02\x03", 3), 0);
    }
    cr_assert_eq(rd.err, 0, "%s", rd.errmsg);
    ferry_msg_destroy(&m);
    msgpack_sbuffer_destroy(&sb);
}

Test(codec, response_round_trip)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    char err[256];
    struct ferry_msg m;
    struct ferry_response_header h;

    /* error, message and nil body */
    ferry_frame_begin(&sb, &pk);
    ferry_pack_response_header(&pk, 7, FERRY_ERR_UNSUPPORTED_VERSION, "version 9 of Fetch is not supported");
    msgpack_pack_nil(&pk);
    cr_assert_eq(ferry_frame_finish(&sb), 0);
    cr_assert_eq(ferry_msg_unpack((uint8_t *)sb.data + 4, sb.size - 4, &m, err, sizeof err), 0, "%s", err);
    cr_assert_eq(ferry_response_header_decode(&m.root, &h, err, sizeof err), 0, "%s", err);
    cr_assert_eq(h.correlation_id, 7u);
    cr_assert_eq(h.error, FERRY_ERR_UNSUPPORTED_VERSION);
    cr_assert_eq(h.error_message_len, strlen("version 9 of Fetch is not supported"));
    cr_assert_null(h.body);
    ferry_msg_destroy(&m);
    msgpack_sbuffer_destroy(&sb);

    /* success with a body, negative error codes also decode */
    ferry_frame_begin(&sb, &pk);
    ferry_pack_response_header(&pk, 0, -1, NULL);
    msgpack_pack_map(&pk, 1);
    ferry_pack_key(&pk, "broker_version");
    ferry_pack_strn(&pk, "0.1.0-extra", 5);
    cr_assert_eq(ferry_frame_finish(&sb), 0);
    cr_assert_eq(ferry_msg_unpack((uint8_t *)sb.data + 4, sb.size - 4, &m, err, sizeof err), 0, "%s", err);
    cr_assert_eq(ferry_response_header_decode(&m.root, &h, err, sizeof err), 0, "%s", err);
    cr_assert_eq(h.error, -1);
    cr_assert_null(h.error_message);
    cr_assert_not_null(h.body);
    struct ferry_mp_reader rd = {0};
    size_t len;
    const char *v = ferry_mp_str(&rd, h.body, "broker_version", &len, 1);
    cr_assert_eq(len, 5u);
    cr_assert_eq(memcmp(v, "0.1.0", 5), 0);
    ferry_msg_destroy(&m);
    msgpack_sbuffer_destroy(&sb);
}

/* docs/protocol.md, "Worked example": this exact frame. */
Test(codec, worked_example_api_versions_frame)
{
    static const uint8_t want[] = {
        0x00, 0x00, 0x00, 0x0a,                  /* length 10 */
        0x95,                                    /* array(5) */
        0x00,                                    /* api 0 = ApiVersions */
        0x00,                                    /* version 0 */
        0x07,                                    /* correlation_id 7 */
        0xa4, 0x64, 0x65, 0x6d, 0x6f,            /* client_id "demo" */
        0x80,                                    /* body {} */
    };
    msgpack_sbuffer sb;
    msgpack_packer pk;
    ferry_frame_begin(&sb, &pk);
    ferry_pack_request_header(&pk, FERRY_API_API_VERSIONS, 0, 7, "demo");
    msgpack_pack_map(&pk, 0);
    cr_assert_eq(ferry_frame_finish(&sb), 0);
    cr_assert_eq(sb.size, sizeof want);
    cr_assert_arr_eq(sb.data, want, sizeof want);
    msgpack_sbuffer_destroy(&sb);

    /* and the response example: [7, 0, nil, {"apis": [[0, 0, 0]], "broker_version": "0.1.0"}] */
    static const uint8_t resp[] = {
        0x00, 0x00, 0x00, 0x24, 0x94, 0x07, 0x00, 0xc0, 0x82, 0xa4, 'a', 'p', 'i', 's', 0x91, 0x93, 0x00, 0x00,
        0x00, 0xae, 'b', 'r', 'o', 'k', 'e', 'r', '_', 'v', 'e', 'r', 's', 'i', 'o', 'n', 0xa5, '0', '.', '1',
        '.', '0',
    };
    ferry_frame_begin(&sb, &pk);
    ferry_pack_response_header(&pk, 7, 0, NULL);
    msgpack_pack_map(&pk, 2);
    ferry_pack_key(&pk, "apis");
    msgpack_pack_array(&pk, 1);
    msgpack_pack_array(&pk, 3);
    msgpack_pack_int(&pk, 0);
    msgpack_pack_int(&pk, 0);
    msgpack_pack_int(&pk, 0);
    ferry_pack_key(&pk, "broker_version");
    ferry_pack_str(&pk, "0.1.0");
    cr_assert_eq(ferry_frame_finish(&sb), 0);
    cr_assert_eq(sb.size, sizeof resp);
    cr_assert_arr_eq(sb.data, resp, sizeof resp);
    msgpack_sbuffer_destroy(&sb);
}

Test(codec, frame_too_large)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    size_t n = FERRY_MAX_FRAME_BYTES; /* bin32 header (5) pushes the payload over the limit */
    char *big = calloc(1, n);
    ferry_frame_begin(&sb, &pk);
    ferry_pack_bin(&pk, big, n);
    cr_assert_eq(ferry_frame_finish(&sb), FERRY_ERR_LIMIT_EXCEEDED);
    msgpack_sbuffer_destroy(&sb);
    free(big);
}

Test(codec, api_names)
{
    cr_assert_str_eq(ferry_api_name(FERRY_API_API_VERSIONS), "ApiVersions");
    cr_assert_str_eq(ferry_api_name(FERRY_API_FETCH), "Fetch");
    cr_assert_str_eq(ferry_api_name(FERRY_API_LIST_OFFSETS), "ListOffsets");
    cr_assert_str_eq(ferry_api_name(FERRY_API_COUNT_), "Unknown");
    cr_assert_str_eq(ferry_api_name(-1), "Unknown");
}

/* ---- pre-scan ---- */

Test(prescan, accepts_all_scalar_forms)
{
    static const uint8_t ok[] = {
        0xdc, 0x00, 0x11,                         /* array16(17) */
        0x00, 0x7f, 0xe0, 0xff, 0xc0, 0xc2, 0xc3, /* fixints, nil, bools */
        0xcc, 0x01, 0xcd, 0x00, 0x01,             /* uint8, uint16 */
        0xd2, 0, 0, 0, 1,                         /* int32 */
        0xcf, 0, 0, 0, 0, 0, 0, 0, 1,             /* uint64 */
        0xca, 0, 0, 0, 0,                         /* float32 */
        0xcb, 0, 0, 0, 0, 0, 0, 0, 0,             /* float64 */
        0xd9, 0x01, 'a',                          /* str8 */
        0xc4, 0x00,                               /* bin8 empty */
        0xdc, 0x00, 0x00,                         /* array16 empty */
        0xde, 0x00, 0x01, 0xa0, 0x90,             /* map16 {"": []} */
    };
    expect_check(ok, sizeof ok, 0, NULL, "all forms");
}

Test(prescan, nesting_depth)
{
    uint8_t buf[FERRY_MAX_NESTING_DEPTH + 3];
    for (int i = 0; i < FERRY_MAX_NESTING_DEPTH; i++)
        buf[i] = 0x91; /* array(1) */
    buf[FERRY_MAX_NESTING_DEPTH] = 0xc0;
    expect_check(buf, FERRY_MAX_NESTING_DEPTH + 1, 0, NULL, "depth at the limit");
    char at[32];
    snprintf(at, sizeof(at), "byte %d", FERRY_MAX_NESTING_DEPTH);
    buf[FERRY_MAX_NESTING_DEPTH] = 0x90; /* one (empty) container too many */
    expect_check(buf, FERRY_MAX_NESTING_DEPTH + 1, FERRY_ERR_LIMIT_EXCEEDED, at, "too deep (empty)");
    buf[FERRY_MAX_NESTING_DEPTH] = 0x81; /* map(1) */
    buf[FERRY_MAX_NESTING_DEPTH + 1] = 0xa0;
    buf[FERRY_MAX_NESTING_DEPTH + 2] = 0xc0;
    expect_check(buf, FERRY_MAX_NESTING_DEPTH + 3, FERRY_ERR_LIMIT_EXCEEDED, "nested deeper", "too deep");

    /* siblings do not accumulate depth */
    static const uint8_t wide[] = {0x93, 0x91, 0x91, 0xc0, 0x91, 0x91, 0xc0, 0x91, 0x91, 0xc0};
    expect_check(wide, sizeof wide, 0, NULL, "siblings");
}

Test(prescan, array_and_map_too_long)
{
    uint8_t a[5] = {0xdd};
    uint32_t n = FERRY_MAX_ARRAY_LEN + 1;
    a[1] = (uint8_t)(n >> 24), a[2] = (uint8_t)(n >> 16), a[3] = (uint8_t)(n >> 8), a[4] = (uint8_t)n;
    expect_check(a, sizeof a, FERRY_ERR_LIMIT_EXCEEDED, "exceeds the limit", "array32 too long");
    uint8_t m[3] = {0xde, 0x00, FERRY_MAX_MAP_LEN + 1};
    expect_check(m, sizeof m, FERRY_ERR_LIMIT_EXCEEDED, "exceeds the limit", "map16 too long");

    /* exactly at the limits is fine */
    size_t alen = 5 + FERRY_MAX_ARRAY_LEN;
    uint8_t *big = calloc(1, alen);
    n = FERRY_MAX_ARRAY_LEN;
    big[0] = 0xdd, big[1] = (uint8_t)(n >> 24), big[2] = (uint8_t)(n >> 16), big[3] = (uint8_t)(n >> 8);
    big[4] = (uint8_t)n;
    expect_check(big, alen, 0, NULL, "array at limit");
    free(big);
    uint8_t mm[3 + 2 * FERRY_MAX_MAP_LEN] = {0xde, 0x00, FERRY_MAX_MAP_LEN};
    expect_check(mm, sizeof mm, 0, NULL, "map at limit");
}

Test(prescan, too_many_values)
{
    /* 43 arrays of 100000 nils: 4.3M values, over FERRY_MAX_MSGPACK_OBJECTS */
    size_t per = 5 + FERRY_MAX_ARRAY_LEN, outer = 43;
    size_t len = 3 + outer * per;
    uint8_t *buf = malloc(len);
    cr_assert_not_null(buf);
    buf[0] = 0xdc, buf[1] = 0, buf[2] = (uint8_t)outer; /* array16(43) */
    for (size_t i = 0; i < outer; i++) {
        uint8_t *p = buf + 3 + i * per;
        p[0] = 0xdd, p[1] = 0, p[2] = (uint8_t)(FERRY_MAX_ARRAY_LEN >> 16), p[3] = (uint8_t)(FERRY_MAX_ARRAY_LEN >> 8);
        p[4] = (uint8_t)FERRY_MAX_ARRAY_LEN;
        memset(p + 5, 0xc0, FERRY_MAX_ARRAY_LEN);
    }
    expect_check(buf, len, FERRY_ERR_LIMIT_EXCEEDED, "values in one message", "too many values");
    free(buf);
}

Test(prescan, lengths_past_end)
{
    static const uint8_t str8[] = {0xd9, 10, 'a', 'b'};
    expect_check(str8, sizeof str8, FERRY_ERR_INVALID_REQUEST, "byte 0: str of 10 bytes", "str8 past end");
    static const uint8_t fixstr[] = {0x91, 0xa5, 'a'};
    expect_check(fixstr, sizeof fixstr, FERRY_ERR_INVALID_REQUEST, "byte 1", "fixstr past end");
    static const uint8_t bin32[] = {0xc6, 0xff, 0xff, 0xff, 0xff, 0};
    expect_check(bin32, sizeof bin32, FERRY_ERR_INVALID_REQUEST, "bin of 4294967295 bytes", "bin32 past end");
    static const uint8_t arr[] = {0xdc, 0x00, 0x05, 0xc0, 0xc0};
    expect_check(arr, sizeof arr, FERRY_ERR_INVALID_REQUEST, "needs at least 5 bytes", "array needs n bytes");
    static const uint8_t map[] = {0x83, 0xa0, 0xc0, 0xa0, 0xc0};
    expect_check(map, sizeof map, FERRY_ERR_INVALID_REQUEST, "needs at least 6 bytes", "map needs 2n bytes");
    static const uint8_t lenfield[] = {0xdb, 0x00, 0x00};
    expect_check(lenfield, sizeof lenfield, FERRY_ERR_INVALID_REQUEST, "str length at byte 0", "cut length field");
    static const uint8_t scalar[] = {0x92, 0xc0, 0xcf, 0, 0};
    expect_check(scalar, sizeof scalar, FERRY_ERR_INVALID_REQUEST, "byte 2", "cut uint64");
}

Test(prescan, truncated_at_every_byte)
{
    msgpack_sbuffer sb;
    build_request(&sb);
    const uint8_t *p = (const uint8_t *)sb.data + 4;
    size_t n = sb.size - 4;
    expect_check(p, n, 0, NULL, "whole");
    for (size_t cut = 0; cut < n; cut++) {
        char err[256];
        int rc = ferry_msgpack_check(p, cut, err, sizeof err);
        cr_assert_eq(rc, FERRY_ERR_INVALID_REQUEST, "cut at %zu: rc %d", cut, rc);
    }
    msgpack_sbuffer_destroy(&sb);
}

Test(prescan, trailing_bytes)
{
    static const uint8_t t[] = {0x91, 0xc0, 0xc0, 0xc0};
    expect_check(t, sizeof t, FERRY_ERR_INVALID_REQUEST, "2 trailing bytes after the value, at byte 2", "trailing");
}

Test(prescan, reserved_c1)
{
    static const uint8_t top[] = {0xc1};
    expect_check(top, sizeof top, FERRY_ERR_INVALID_REQUEST, "byte 0: reserved type byte 0xc1", "c1 top");
    static const uint8_t nested[] = {0x82, 0xa1, 'a', 0xc0, 0xa1, 'b', 0xc1};
    expect_check(nested, sizeof nested, FERRY_ERR_INVALID_REQUEST, "byte 6", "c1 nested");
}

Test(prescan, ext_rejected)
{
    static const uint8_t types[] = {0xc7, 0xc8, 0xc9, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8};
    for (size_t i = 0; i < sizeof types; i++) {
        uint8_t buf[40] = {0x91, types[i]}; /* enough zero bytes after for any ext body */
        expect_check(buf, sizeof buf, FERRY_ERR_INVALID_REQUEST, "byte 1: ext type", "ext");
    }
}

Test(prescan, empty_input)
{
    expect_check((const uint8_t *)"", 0, FERRY_ERR_INVALID_REQUEST, "truncated: value expected at byte 0", "empty");
}

/* ---- envelope decode errors ---- */

static void unpack_bytes(const uint8_t *b, size_t n, struct ferry_msg *m)
{
    char err[256];
    cr_assert_eq(ferry_msg_unpack(b, n, m, err, sizeof err), 0, "%s", err);
}

Test(envelope, request_errors)
{
    struct ferry_msg m;
    struct ferry_request_header h;
    char err[256];

    static const uint8_t notarr[] = {0x80};
    unpack_bytes(notarr, sizeof notarr, &m);
    cr_assert_eq(ferry_request_header_decode(&m.root, &h, err, sizeof err), FERRY_ERR_INVALID_REQUEST);
    ferry_msg_destroy(&m);

    static const uint8_t four[] = {0x94, 0, 0, 1, 0xc0};
    unpack_bytes(four, sizeof four, &m);
    cr_assert_eq(ferry_request_header_decode(&m.root, &h, err, sizeof err), FERRY_ERR_INVALID_REQUEST);
    cr_assert_not_null(strstr(err, "array(4)"), "%s", err);
    ferry_msg_destroy(&m);

    /* api is a str but the correlation id is readable: the broker can still answer */
    static const uint8_t badapi[] = {0x95, 0xa1, 'x', 0, 0x2a, 0xc0, 0x80};
    unpack_bytes(badapi, sizeof badapi, &m);
    cr_assert_eq(ferry_request_header_decode(&m.root, &h, err, sizeof err), FERRY_ERR_INVALID_REQUEST);
    cr_assert_eq(h.correlation_id, 42u);
    cr_assert_not_null(strstr(err, "api"), "%s", err);
    ferry_msg_destroy(&m);

    static const uint8_t negcorr[] = {0x95, 0, 0, 0xff, 0xc0, 0x80};
    unpack_bytes(negcorr, sizeof negcorr, &m);
    cr_assert_eq(ferry_request_header_decode(&m.root, &h, err, sizeof err), FERRY_ERR_INVALID_REQUEST);
    cr_assert_not_null(strstr(err, "correlation_id"), "%s", err);
    ferry_msg_destroy(&m);

    static const uint8_t bigcorr[] = {0x95, 0, 0, 0xcf, 0, 0, 0, 1, 0, 0, 0, 0, 0xc0, 0x80};
    unpack_bytes(bigcorr, sizeof bigcorr, &m);
    cr_assert_eq(ferry_request_header_decode(&m.root, &h, err, sizeof err), FERRY_ERR_INVALID_REQUEST);
    ferry_msg_destroy(&m);

    static const uint8_t badcid[] = {0x95, 0, 0, 1, 0x05, 0x80};
    unpack_bytes(badcid, sizeof badcid, &m);
    cr_assert_eq(ferry_request_header_decode(&m.root, &h, err, sizeof err), FERRY_ERR_INVALID_REQUEST);
    cr_assert_eq(h.correlation_id, 1u);
    cr_assert_not_null(strstr(err, "client_id"), "%s", err);
    ferry_msg_destroy(&m);

    static const uint8_t nilbody[] = {0x95, 0, 0, 1, 0xc0, 0xc0};
    unpack_bytes(nilbody, sizeof nilbody, &m);
    cr_assert_eq(ferry_request_header_decode(&m.root, &h, err, sizeof err), FERRY_ERR_INVALID_REQUEST);
    cr_assert_not_null(strstr(err, "body"), "%s", err);
    ferry_msg_destroy(&m);

    /* client_id longer than FERRY_MAX_CLIENT_ID */
    uint8_t longcid[8 + FERRY_MAX_CLIENT_ID + 1] = {0x95, 0, 0, 1, 0xda, 0x01, 0x01};
    memset(longcid + 7, 'c', FERRY_MAX_CLIENT_ID + 1);
    longcid[7 + FERRY_MAX_CLIENT_ID + 1] = 0x80;
    unpack_bytes(longcid, sizeof longcid, &m);
    cr_assert_eq(ferry_request_header_decode(&m.root, &h, err, sizeof err), FERRY_ERR_INVALID_REQUEST);
    ferry_msg_destroy(&m);

    /* nil client_id is fine */
    static const uint8_t ok[] = {0x95, 6, 0, 1, 0xc0, 0x80};
    unpack_bytes(ok, sizeof ok, &m);
    cr_assert_eq(ferry_request_header_decode(&m.root, &h, err, sizeof err), 0, "%s", err);
    cr_assert_null(h.client_id);
    cr_assert_eq(h.api, 6u);
    ferry_msg_destroy(&m);
}

Test(envelope, response_errors)
{
    struct ferry_msg m;
    struct ferry_response_header h;
    char err[256];
    static const uint8_t cases[][6] = {
        {0x93, 1, 0, 0xc0},             /* array(3) */
        {0x94, 0xa0, 0, 0xc0, 0xc0},    /* correlation id str */
        {0x94, 1, 0xa0, 0xc0, 0xc0},    /* error str */
        {0x94, 1, 0, 0x01, 0xc0},       /* message int */
        {0x94, 1, 0, 0xc0, 0x90},       /* body array */
    };
    static const size_t lens[] = {4, 5, 5, 5, 5};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        unpack_bytes(cases[i], lens[i], &m);
        cr_assert_eq(ferry_response_header_decode(&m.root, &h, err, sizeof err), FERRY_ERR__BAD_RESPONSE, "case %zu",
                     i);
        ferry_msg_destroy(&m);
    }
    /* error outside int32 */
    static const uint8_t big[] = {0x94, 1, 0xce, 0x80, 0, 0, 0, 0xc0, 0xc0};
    unpack_bytes(big, sizeof big, &m);
    cr_assert_eq(ferry_response_header_decode(&m.root, &h, err, sizeof err), FERRY_ERR__BAD_RESPONSE);
    ferry_msg_destroy(&m);
}

/* ---- accessors ---- */

/* {"i": "str", "n": nil, "u": 2^64-1, "s": 5, "b": "x", "a": 1, "m": [1], "arr": [1, {}]} */
static const uint8_t acc_msg[] = {
    0x88, 0xa1, 'i', 0xa3, 's', 't', 'r', 0xa1, 'n', 0xc0, 0xa1, 'u', 0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xa1, 's', 0x05, 0xa1, 'b', 0xa1, 'x', 0xa1, 'a', 0x01, 0xa1, 'm', 0x91, 0x01, 0xa3, 'a', 'r', 'r', 0x92,
    0x01, 0x80,
};

Test(accessors, type_errors_and_first_error_kept)
{
    struct ferry_msg m;
    unpack_bytes(acc_msg, sizeof acc_msg, &m);
    const msgpack_object *map = &m.root;
    size_t len;

    struct ferry_mp_reader rd = {0};
    cr_assert_eq(ferry_mp_int(&rd, map, "i", 9, 1), 9);
    cr_assert_eq(rd.err, FERRY_ERR_INVALID_REQUEST);
    cr_assert_str_eq(rd.errmsg, "field 'i': expected integer, got str");
    cr_assert_null(ferry_mp_str(&rd, map, "s", &len, 1)); /* second error: message unchanged */
    cr_assert_str_eq(rd.errmsg, "field 'i': expected integer, got str");

#define EXPECT_ERR(expr, msg)                                                                                         \
    do {                                                                                                              \
        struct ferry_mp_reader r_ = {0};                                                                              \
        struct ferry_mp_reader *rd_ = &r_;                                                                            \
        (void)(expr);                                                                                                 \
        cr_assert_eq(r_.err, FERRY_ERR_INVALID_REQUEST, "%s", #expr);                                                 \
        cr_assert_str_eq(r_.errmsg, msg);                                                                             \
    } while (0)
    EXPECT_ERR(ferry_mp_str(rd_, map, "s", &len, 0), "field 's': expected str, got integer");
    EXPECT_ERR(ferry_mp_bin(rd_, map, "b", &len, 0), "field 'b': expected bin, got str");
    EXPECT_ERR(ferry_mp_array(rd_, map, "a", 0), "field 'a': expected array, got integer");
    EXPECT_ERR(ferry_mp_map(rd_, map, "m", 0), "field 'm': expected map, got array");
    EXPECT_ERR(ferry_mp_int(rd_, map, "u", 0, 0), "field 'u': 18446744073709551615 out of range");
    EXPECT_ERR(ferry_mp_int(rd_, map, "missing", 0, 1), "field 'missing': missing");
    EXPECT_ERR(ferry_mp_int(rd_, map, "n", 0, 1), "field 'n': missing");
    EXPECT_ERR(ferry_mp_int_range(rd_, map, "s", 0, 1, 6, 10), "field 's': 5 not in [6, 10]");
    EXPECT_ERR(ferry_mp_elem_map(rd_, ferry_mp_array(rd_, map, "arr", 1), 0, "arr"), "arr[0]: expected map, got integer");
    EXPECT_ERR(ferry_mp_elem_map(rd_, ferry_mp_array(rd_, map, "arr", 1), 2, "arr"), "arr[2]: no such element");
#undef EXPECT_ERR

    /* optional absent/nil give defaults without error */
    struct ferry_mp_reader ok = {0};
    cr_assert_eq(ferry_mp_int(&ok, map, "n", 3, 0), 3);
    cr_assert_eq(ferry_mp_int_range(&ok, map, "missing", -1, 0, 0, 10), -1, "default is not range-checked");
    cr_assert_null(ferry_mp_str(&ok, map, "missing", &len, 0));
    cr_assert_eq(len, 0u);
    cr_assert_null(ferry_mp_map(&ok, map, "n", 0));
    cr_assert_eq(ferry_mp_int_range(&ok, map, "s", 0, 1, 5, 5), 5);
    cr_assert_not_null(ferry_mp_elem_map(&ok, ferry_mp_array(&ok, map, "arr", 1), 1, "arr"));
    cr_assert_null(ferry_mp_get(map, "ar"), "prefix of a key does not match");
    cr_assert_null(ferry_mp_get(NULL, "x"));
    cr_assert_eq(ok.err, 0, "%s", ok.errmsg);
    ferry_msg_destroy(&m);
}
