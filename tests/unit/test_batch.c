/* test_batch.c: record batch builder/reader round trips, validation and malformed-input rejection. */
#include <criterion/criterion.h>
#include <lz4frame.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "ferry_errors.h"
#include "proto/batch.h"
#include "proto/limits.h"
#include "proto/varint.h"

/* ---- helpers ---- */

/* Wraps a hand-made record area in a header with a correct CRC; caller frees. */
static uint8_t *make_batch(const uint8_t *area, size_t area_len, uint32_t count, uint16_t attributes, size_t *len)
{
    *len = FERRY_BATCH_HEADER_SIZE + area_len;
    uint8_t *b = malloc(*len);
    cr_assert_not_null(b);
    struct ferry_batch_header h = {.batch_length = (uint32_t)*len,
                                   .magic = FERRY_BATCH_MAGIC,
                                   .attributes = attributes,
                                   .last_offset_delta = count - 1,
                                   .first_timestamp = 1000,
                                   .max_timestamp = 1000,
                                   .producer_id = -1,
                                   .producer_epoch = -1,
                                   .base_sequence = -1,
                                   .record_count = count};
    ferry_batch_header_encode(&h, b);
    memcpy(b + FERRY_BATCH_HEADER_SIZE, area, area_len);
    ferry_be32_put(b + FERRY_BATCH_OFF_CRC, ferry_crc32c(0, b + FERRY_BATCH_CRC_START, *len - FERRY_BATCH_CRC_START));
    return b;
}

static void recrc(uint8_t *b, size_t len)
{
    ferry_be32_put(b + FERRY_BATCH_OFF_CRC, ferry_crc32c(0, b + FERRY_BATCH_CRC_START, len - FERRY_BATCH_CRC_START));
}

/* One record: 0 attributes, timestamp_delta 0, given offset delta, key/value/headers appended raw. */
static size_t put_simple_record(uint8_t *p, uint64_t offset_delta, const char *value)
{
    uint8_t body[256];
    size_t n = 0;
    body[n++] = 0;
    n += ferry_svarint_put(body + n, 0);
    n += ferry_uvarint_put(body + n, offset_delta);
    n += ferry_svarint_put(body + n, -1); /* null key */
    size_t vl = strlen(value);
    n += ferry_svarint_put(body + n, (int64_t)vl);
    memcpy(body + n, value, vl);
    n += vl;
    n += ferry_uvarint_put(body + n, 0);
    size_t k = ferry_uvarint_put(p, n);
    memcpy(p + k, body, n);
    return k + n;
}

/* Expects reader_init to succeed and the first next() to fail with INVALID_RECORD. */
static void expect_bad_record(const uint8_t *area, size_t area_len, uint32_t count, const char *what)
{
    size_t len;
    uint8_t *b = make_batch(area, area_len, count, 0, &len);
    struct ferry_batch_reader r;
    cr_assert_eq(ferry_batch_reader_init(&r, b, len), 0, "%s: init: %s", what, r.errmsg);
    struct ferry_record_view rec;
    int rc;
    while ((rc = ferry_batch_reader_next(&r, &rec)) == 1)
        ;
    cr_assert_eq(rc, -FERRY_ERR_INVALID_RECORD, "%s: got %d", what, rc);
    cr_assert_neq(r.errmsg[0], '\0');
    cr_log_info("%s -> %s", what, r.errmsg);
    /* sticky */
    cr_assert_eq(ferry_batch_reader_next(&r, &rec), -FERRY_ERR_INVALID_RECORD);
    ferry_batch_reader_free(&r);
    free(b);
}

/* ---- varints and header ---- */

Test(varint, round_trip_edges)
{
    const uint64_t u[] = {0, 1, 127, 128, 16383, 16384, (1ull << 35) - 1, UINT64_MAX};
    uint8_t buf[FERRY_VARINT_MAX];
    for (size_t i = 0; i < sizeof u / sizeof u[0]; i++) {
        size_t n = ferry_uvarint_put(buf, u[i]);
        cr_assert_eq(n, ferry_uvarint_size(u[i]));
        uint64_t got;
        cr_assert_eq(ferry_uvarint_get(buf, n, &got), n);
        cr_assert_eq(got, u[i]);
        if (n > 1)
            cr_assert_eq(ferry_uvarint_get(buf, n - 1, &got), 0, "truncated must fail");
    }
    const int64_t s[] = {0, -1, 1, -64, 64, INT64_MIN, INT64_MAX};
    for (size_t i = 0; i < sizeof s / sizeof s[0]; i++) {
        size_t n = ferry_svarint_put(buf, s[i]);
        int64_t got;
        cr_assert_eq(ferry_svarint_get(buf, n, &got), n);
        cr_assert_eq(got, s[i]);
    }
    cr_assert_eq(ferry_zigzag(-1), 1u);
    cr_assert_eq(ferry_zigzag(1), 2u);
    cr_assert_eq(ferry_zigzag(-2), 3u);
}

Test(varint, rejects_overlong)
{
    uint8_t eleven[11];
    memset(eleven, 0x80, sizeof eleven);
    eleven[10] = 0;
    uint64_t v;
    cr_assert_eq(ferry_uvarint_get(eleven, sizeof eleven, &v), 0);
    uint8_t big[10];
    memset(big, 0xff, 9);
    big[9] = 0x02; /* bit 64 */
    cr_assert_eq(ferry_uvarint_get(big, sizeof big, &v), 0);
}

Test(batch_header, encode_decode_is_big_endian)
{
    struct ferry_batch_header h = {.base_offset = 0x0102030405060708,
                                   .batch_length = 0x11223344,
                                   .leader_epoch = 7,
                                   .crc = 0xdeadbeef,
                                   .magic = 1,
                                   .attributes = 2,
                                   .last_offset_delta = 9,
                                   .first_timestamp = -5,
                                   .max_timestamp = 1700000000000,
                                   .producer_id = -1,
                                   .producer_epoch = -1,
                                   .base_sequence = -1,
                                   .record_count = 10};
    uint8_t b[FERRY_BATCH_HEADER_SIZE];
    memset(b, 0xaa, sizeof b);
    ferry_batch_header_encode(&h, b);
    const uint8_t head[] = {1, 2, 3, 4, 5, 6, 7, 8, 0x11, 0x22, 0x33, 0x44, 0, 0, 0, 7, 0xde, 0xad, 0xbe, 0xef, 0, 1, 0, 2};
    cr_assert_arr_eq(b, head, sizeof head);
    cr_assert_eq(b[62], 0);
    cr_assert_eq(b[63], 0);
    struct ferry_batch_header d;
    ferry_batch_header_decode(b, &d);
    cr_assert_eq(d.base_offset, h.base_offset);
    cr_assert_eq(d.batch_length, h.batch_length);
    cr_assert_eq(d.leader_epoch, h.leader_epoch);
    cr_assert_eq(d.crc, h.crc);
    cr_assert_eq(d.magic, h.magic);
    cr_assert_eq(d.attributes, h.attributes);
    cr_assert_eq(d.last_offset_delta, h.last_offset_delta);
    cr_assert_eq(d.first_timestamp, h.first_timestamp);
    cr_assert_eq(d.max_timestamp, h.max_timestamp);
    cr_assert_eq(d.producer_id, h.producer_id);
    cr_assert_eq(d.producer_epoch, h.producer_epoch);
    cr_assert_eq(d.base_sequence, h.base_sequence);
    cr_assert_eq(d.record_count, h.record_count);
    ferry_batch_set_base_offset(b, 42);
    ferry_batch_set_leader_epoch(b, 3);
    ferry_batch_header_decode(b, &d);
    cr_assert_eq(d.base_offset, 42);
    cr_assert_eq(d.leader_epoch, 3u);
    cr_assert_eq(d.crc, 0xdeadbeefu);
    size_t bl;
    cr_assert_eq(ferry_batch_peek_length(b, 12, &bl), 0);
    cr_assert_eq(bl, 0x11223344u);
    cr_assert_eq(ferry_batch_peek_length(b, 11, &bl), -1);
}

/* ---- round trips ---- */

struct rt_rec {
    int64_t ts;
    const char *key;   /* NULL = null */
    const char *value; /* NULL = null */
    int nh;
};

static const struct rt_rec rt_recs[] = {
    {1700000000000, "k1", "hello", 0},
    {1700000000005, NULL, "null key", 2},
    {1699999999990, "k3", NULL, 1}, /* earlier than the first: negative delta */
    {1700000000001, "", "", 3},     /* empty (not null) key and value */
};

static void fill_headers(struct ferry_header_view *hv, int nh)
{
    static const char *names[] = {"event-type", "trace", "empty"};
    static const char *values[] = {"OrderPlaced", NULL, ""};
    for (int i = 0; i < nh; i++) {
        hv[i].name = (const uint8_t *)names[i];
        hv[i].name_len = strlen(names[i]);
        hv[i].value = (const uint8_t *)values[i];
        hv[i].value_len = values[i] ? strlen(values[i]) : 0;
    }
}

static void round_trip(int compression, int repeat, int expect_compressed)
{
    struct ferry_batch_builder *b = ferry_batch_builder_new(compression, 77, 3, 100);
    cr_assert_not_null(b);
    int n = 0;
    for (int rep = 0; rep < repeat; rep++) {
        for (size_t i = 0; i < sizeof rt_recs / sizeof rt_recs[0]; i++, n++) {
            const struct rt_rec *t = &rt_recs[i];
            struct ferry_header_view hv[3];
            fill_headers(hv, t->nh);
            cr_assert_eq(ferry_batch_builder_add(b, t->ts, t->key, t->key ? (ssize_t)strlen(t->key) : -1, t->value,
                                                 t->value ? (ssize_t)strlen(t->value) : -1, hv, (uint32_t)t->nh),
                         0, "%s", ferry_batch_builder_error(b));
        }
    }
    cr_assert_eq(ferry_batch_builder_count(b), (uint32_t)n);
    size_t unsealed = ferry_batch_builder_size(b);
    uint8_t *batch;
    size_t len;
    cr_assert_eq(ferry_batch_builder_seal(b, &batch, &len), 0);
    if (expect_compressed)
        cr_assert_lt(len, unsealed);
    else
        cr_assert_eq(len, unsealed);

    struct ferry_batch_header h;
    char err[256];
    cr_assert_eq(ferry_batch_validate(batch, len, FERRY_MAX_BATCH_BYTES, &h, err, sizeof err), 0, "%s", err);
    cr_assert_eq(h.attributes, expect_compressed ? compression : 0);
    cr_assert_eq(h.record_count, (uint32_t)n);
    cr_assert_eq(h.last_offset_delta, (uint32_t)n - 1);
    cr_assert_eq(h.first_timestamp, 1700000000000);
    cr_assert_eq(h.max_timestamp, 1700000000005);
    cr_assert_eq(h.producer_id, 77);
    cr_assert_eq(h.producer_epoch, 3);
    cr_assert_eq(h.base_sequence, 100);
    cr_assert_eq(h.base_offset, 0);

    /* The broker's rewrite keeps the CRC valid. */
    ferry_batch_set_base_offset(batch, 1000);
    ferry_batch_set_leader_epoch(batch, 5);
    cr_assert_eq(ferry_batch_validate(batch, len, FERRY_MAX_BATCH_BYTES, &h, err, sizeof err), 0, "%s", err);

    struct ferry_batch_reader r;
    cr_assert_eq(ferry_batch_reader_init(&r, batch, len), 0, "%s", r.errmsg);
    struct ferry_record_view rec;
    for (int i = 0; i < n; i++) {
        const struct rt_rec *t = &rt_recs[i % 4];
        cr_assert_eq(ferry_batch_reader_next(&r, &rec), 1, "record %d: %s", i, r.errmsg);
        cr_assert_eq(rec.offset, 1000 + i);
        cr_assert_eq(rec.timestamp, t->ts);
        if (t->key) {
            cr_assert_not_null(rec.key);
            cr_assert_eq(rec.key_len, strlen(t->key));
            cr_assert_eq(memcmp(rec.key, t->key, rec.key_len), 0);
        } else {
            cr_assert_null(rec.key);
        }
        if (t->value) {
            cr_assert_not_null(rec.value);
            cr_assert_eq(rec.value_len, strlen(t->value));
            cr_assert_eq(memcmp(rec.value, t->value, rec.value_len), 0);
        } else {
            cr_assert_null(rec.value);
        }
        cr_assert_eq(rec.header_count, (uint32_t)t->nh);
        struct ferry_header_view want[3], got;
        fill_headers(want, t->nh);
        size_t pos = 0;
        for (int j = 0; j < t->nh; j++) {
            cr_assert_eq(ferry_record_next_header(&rec, &pos, &got), 1);
            cr_assert_eq(got.name_len, want[j].name_len);
            cr_assert_eq(memcmp(got.name, want[j].name, got.name_len), 0);
            if (want[j].value) {
                cr_assert_not_null(got.value);
                cr_assert_eq(got.value_len, want[j].value_len);
                cr_assert_eq(memcmp(got.value, want[j].value, got.value_len), 0);
            } else {
                cr_assert_null(got.value);
            }
        }
        cr_assert_eq(ferry_record_next_header(&rec, &pos, &got), 0);
    }
    cr_assert_eq(ferry_batch_reader_next(&r, &rec), 0);
    cr_assert_eq(ferry_batch_reader_next(&r, &rec), 0);
    ferry_batch_reader_free(&r);
    free(batch);
}

Test(batch_round_trip, none)
{
    round_trip(FERRY_COMPRESSION_NONE, 1, 0);
    round_trip(FERRY_COMPRESSION_NONE, 300, 0);
}

Test(batch_round_trip, lz4_compressible)
{
    round_trip(FERRY_COMPRESSION_LZ4, 300, 1);
}

Test(batch_round_trip, zstd_compressible)
{
    round_trip(FERRY_COMPRESSION_ZSTD, 300, 1);
}

/* One tiny record does not shrink under compression: stored with attributes 0. */
Test(batch_round_trip, incompressible_stored_plain)
{
    for (int comp = FERRY_COMPRESSION_LZ4; comp <= FERRY_COMPRESSION_ZSTD; comp++) {
        struct ferry_batch_builder *b = ferry_batch_builder_new(comp, -1, -1, -1);
        cr_assert_eq(ferry_batch_builder_add(b, 1, "k", 1, "xyz", 3, NULL, 0), 0);
        size_t unsealed = ferry_batch_builder_size(b), len;
        uint8_t *batch;
        cr_assert_eq(ferry_batch_builder_seal(b, &batch, &len), 0);
        cr_assert_eq(len, unsealed);
        struct ferry_batch_reader r;
        cr_assert_eq(ferry_batch_reader_init(&r, batch, len), 0, "%s", r.errmsg);
        cr_assert_eq(r.header.attributes, 0);
        struct ferry_record_view rec;
        cr_assert_eq(ferry_batch_reader_next(&r, &rec), 1);
        cr_assert_eq(memcmp(rec.value, "xyz", 3), 0);
        ferry_batch_reader_free(&r);
        free(batch);
    }
}

Test(batch_round_trip, zstd_level_setting)
{
    struct ferry_batch_builder *b = ferry_batch_builder_new(FERRY_COMPRESSION_ZSTD, -1, -1, -1);
    ferry_batch_builder_set_level(b, 19);
    char v[4096];
    memset(v, 'x', sizeof v);
    cr_assert_eq(ferry_batch_builder_add(b, 1, NULL, -1, v, sizeof v, NULL, 0), 0);
    uint8_t *batch;
    size_t len;
    cr_assert_eq(ferry_batch_builder_seal(b, &batch, &len), 0);
    struct ferry_batch_reader r;
    cr_assert_eq(ferry_batch_reader_init(&r, batch, len), 0, "%s", r.errmsg);
    cr_assert_eq(r.header.attributes, FERRY_COMPRESSION_ZSTD);
    struct ferry_record_view rec;
    cr_assert_eq(ferry_batch_reader_next(&r, &rec), 1);
    cr_assert_eq(rec.value_len, sizeof v);
    cr_assert_eq(memcmp(rec.value, v, sizeof v), 0);
    ferry_batch_reader_free(&r);
    free(batch);
}

/* ---- builder limits ---- */

Test(batch_builder, rejects_bad_arguments)
{
    cr_assert_null(ferry_batch_builder_new(3, -1, -1, -1));
    struct ferry_batch_builder *b = ferry_batch_builder_new(FERRY_COMPRESSION_NONE, -1, -1, -1);
    cr_assert_eq(ferry_batch_builder_add(b, 1, "k", -2, "v", 1, NULL, 0), -1);
    cr_assert_eq(ferry_batch_builder_add(b, 1, NULL, 5, "v", 1, NULL, 0), -1);
    cr_assert_eq(ferry_batch_builder_add(b, 1, "k", 1, "v", 1, NULL, FERRY_MAX_HEADERS_PER_RECORD + 1), -1);
    cr_assert_eq(ferry_batch_builder_add(b, 1, NULL, -1, "v", FERRY_MAX_BATCH_BYTES, NULL, 0), -1);
    cr_assert_neq(ferry_batch_builder_error(b)[0], '\0');
    cr_assert_eq(ferry_batch_builder_add(b, INT64_MIN, NULL, -1, "v", 1, NULL, 0), 0);
    cr_assert_eq(ferry_batch_builder_add(b, INT64_MAX, NULL, -1, "v", 1, NULL, 0), -1, "delta overflows");
    cr_assert_eq(ferry_batch_builder_count(b), 1u);
    ferry_batch_builder_free(b);

    b = ferry_batch_builder_new(FERRY_COMPRESSION_NONE, -1, -1, -1);
    uint8_t *out = NULL;
    size_t len = 0;
    cr_assert_eq(ferry_batch_builder_seal(b, &out, &len), FERRY_ERR__INVALID_ARG, "empty batch");
    cr_assert_null(out);
}

Test(batch_builder, size_limit)
{
    struct ferry_batch_builder *b = ferry_batch_builder_new(FERRY_COMPRESSION_NONE, -1, -1, -1);
    size_t vlen = 1024 * 1024;
    char *v = calloc(1, vlen);
    int added = 0;
    while (ferry_batch_builder_add(b, 1, NULL, -1, v, (ssize_t)vlen, NULL, 0) == 0)
        added++;
    cr_assert_eq(added, 7, "8 MiB holds 7 one-MiB records plus overhead");
    cr_assert_leq(ferry_batch_builder_size(b), FERRY_MAX_BATCH_BYTES);
    uint8_t *batch;
    size_t len;
    cr_assert_eq(ferry_batch_builder_seal(b, &batch, &len), 0);
    cr_assert_eq(ferry_batch_validate(batch, len, FERRY_MAX_BATCH_BYTES, NULL, NULL, 0), 0);
    free(batch);
    free(v);
}

/* ---- validation ---- */

static uint8_t *good_batch(size_t *len)
{
    struct ferry_batch_builder *b = ferry_batch_builder_new(FERRY_COMPRESSION_NONE, -1, -1, -1);
    cr_assert_eq(ferry_batch_builder_add(b, 5, "k", 1, "value", 5, NULL, 0), 0);
    cr_assert_eq(ferry_batch_builder_add(b, 6, "k", 1, "value", 5, NULL, 0), 0);
    uint8_t *batch;
    cr_assert_eq(ferry_batch_builder_seal(b, &batch, len), 0);
    return batch;
}

static void expect_invalid(const uint8_t *b, size_t len, size_t max, int want, const char *what)
{
    char err[256] = "";
    int rc = ferry_batch_validate(b, len, max, NULL, err, sizeof err);
    cr_assert_eq(rc, want, "%s: rc %d (%s)", what, rc, err);
    cr_assert_neq(err[0], '\0', "%s: no message", what);
    cr_log_info("%s -> %s", what, err);
}

Test(batch_validate, accepts_good)
{
    size_t len;
    uint8_t *b = good_batch(&len);
    cr_assert_eq(ferry_batch_validate(b, len, len, NULL, NULL, 0), 0);
    free(b);
}

Test(batch_validate, rejects_bad_crc)
{
    size_t len;
    uint8_t *b = good_batch(&len);
    b[len - 1] ^= 1;
    expect_invalid(b, len, FERRY_MAX_BATCH_BYTES, FERRY_ERR_CORRUPT_BATCH, "payload bit flip");
    b[len - 1] ^= 1;
    b[30] ^= 0x40; /* first_timestamp is covered too */
    expect_invalid(b, len, FERRY_MAX_BATCH_BYTES, FERRY_ERR_CORRUPT_BATCH, "header bit flip");
    free(b);
}

Test(batch_validate, rejects_bad_magic)
{
    size_t len;
    uint8_t *b = good_batch(&len);
    ferry_be16_put(b + 20, 2);
    recrc(b, len);
    expect_invalid(b, len, FERRY_MAX_BATCH_BYTES, FERRY_ERR_CORRUPT_BATCH, "magic 2");
    free(b);
}

Test(batch_validate, rejects_bad_length)
{
    size_t len;
    uint8_t *b = good_batch(&len);
    ferry_be32_put(b + FERRY_BATCH_OFF_LENGTH, (uint32_t)len + 1);
    expect_invalid(b, len, FERRY_MAX_BATCH_BYTES, FERRY_ERR_CORRUPT_BATCH, "batch_length > buffer");
    ferry_be32_put(b + FERRY_BATCH_OFF_LENGTH, (uint32_t)len);
    expect_invalid(b, len - 1, FERRY_MAX_BATCH_BYTES, FERRY_ERR_CORRUPT_BATCH, "truncated");
    expect_invalid(b, 63, FERRY_MAX_BATCH_BYTES, FERRY_ERR_CORRUPT_BATCH, "shorter than header");
    expect_invalid(b, 0, FERRY_MAX_BATCH_BYTES, FERRY_ERR_CORRUPT_BATCH, "empty");
    free(b);
}

Test(batch_validate, rejects_oversized)
{
    size_t len;
    uint8_t *b = good_batch(&len);
    expect_invalid(b, len, len - 1, FERRY_ERR_BATCH_TOO_LARGE, "over max_bytes");
    free(b);
}

Test(batch_validate, rejects_count_mismatch)
{
    size_t len;
    uint8_t *b = good_batch(&len);
    ferry_be32_put(b + 24, 5); /* last_offset_delta, record_count stays 2 */
    recrc(b, len);
    expect_invalid(b, len, FERRY_MAX_BATCH_BYTES, FERRY_ERR_CORRUPT_BATCH, "last_offset_delta");
    ferry_be32_put(b + 24, 0);
    ferry_be32_put(b + 58, 0);
    ferry_be32_put(b + 24, UINT32_MAX);
    recrc(b, len);
    expect_invalid(b, len, FERRY_MAX_BATCH_BYTES, FERRY_ERR_CORRUPT_BATCH, "zero records");
    ferry_be32_put(b + 58, FERRY_MAX_RECORDS_PER_BATCH + 1);
    ferry_be32_put(b + 24, FERRY_MAX_RECORDS_PER_BATCH);
    recrc(b, len);
    expect_invalid(b, len, FERRY_MAX_BATCH_BYTES, FERRY_ERR_CORRUPT_BATCH, "too many records");
    ferry_be32_put(b + 58, 100);
    ferry_be32_put(b + 24, 99);
    recrc(b, len);
    expect_invalid(b, len, FERRY_MAX_BATCH_BYTES, FERRY_ERR_CORRUPT_BATCH, "count larger than the area holds");
    free(b);
}

Test(batch_validate, rejects_bad_attributes_and_fields)
{
    size_t len;
    uint8_t *b = good_batch(&len);
    ferry_be16_put(b + 22, 3);
    recrc(b, len);
    expect_invalid(b, len, FERRY_MAX_BATCH_BYTES, FERRY_ERR_UNSUPPORTED_COMPRESSION, "compression 3");
    ferry_be16_put(b + 22, 0x10);
    recrc(b, len);
    expect_invalid(b, len, FERRY_MAX_BATCH_BYTES, FERRY_ERR_CORRUPT_BATCH, "reserved attribute bit");
    ferry_be16_put(b + 22, 0);
    ferry_be16_put(b + 62, 1);
    recrc(b, len);
    expect_invalid(b, len, FERRY_MAX_BATCH_BYTES, FERRY_ERR_CORRUPT_BATCH, "reserved field");
    ferry_be16_put(b + 62, 0);
    ferry_be64_put(b + 36, 4); /* max_timestamp < first_timestamp (5) */
    recrc(b, len);
    expect_invalid(b, len, FERRY_MAX_BATCH_BYTES, FERRY_ERR_CORRUPT_BATCH, "max_ts < first_ts");
    free(b);
}

/* ---- malformed records ---- */

Test(batch_reader, well_formed_hand_made)
{
    uint8_t area[64];
    size_t n = put_simple_record(area, 0, "a");
    n += put_simple_record(area + n, 1, "bc");
    size_t len;
    uint8_t *b = make_batch(area, n, 2, 0, &len);
    struct ferry_batch_reader r;
    cr_assert_eq(ferry_batch_reader_init(&r, b, len), 0, "%s", r.errmsg);
    struct ferry_record_view rec;
    cr_assert_eq(ferry_batch_reader_next(&r, &rec), 1);
    cr_assert_eq(ferry_batch_reader_next(&r, &rec), 1);
    cr_assert_eq(rec.value_len, 2u);
    cr_assert_eq(ferry_batch_reader_next(&r, &rec), 0);
    ferry_batch_reader_free(&r);
    free(b);
}

Test(batch_reader, rejects_record_length_past_end)
{
    uint8_t area[64];
    size_t n = put_simple_record(area, 0, "abcdefgh");
    area[0] = (uint8_t)(area[0] + 1); /* claims one more byte than there is */
    expect_bad_record(area, n, 1, "record length past end");
    memset(area, 0xff, 7); /* unterminated varint running to the end of the area */
    expect_bad_record(area, 7, 1, "truncated varint");
}

Test(batch_reader, rejects_count_lies)
{
    uint8_t area[128];
    size_t n = put_simple_record(area, 0, "abcdefgh");
    expect_bad_record(area, n, 2, "fewer records than record_count");
    size_t m = n + put_simple_record(area + n, 1, "x");
    expect_bad_record(area, m, 1, "bytes after the last record");
    m = n + put_simple_record(area + n, 5, "x");
    expect_bad_record(area, m, 2, "offset_delta out of order");
}

/* A record with value "v" and the given raw header section (header_count + headers). */
static size_t record_with_headers(uint8_t *p, const uint8_t *hdr, size_t hdr_len)
{
    uint8_t body[128];
    size_t n = 0;
    body[n++] = 0;
    body[n++] = 0;   /* ts delta */
    body[n++] = 0;   /* offset delta */
    body[n++] = 1;   /* key_length -1 */
    body[n++] = 2;   /* value_length 1 */
    body[n++] = 'v'; /* value */
    memcpy(body + n, hdr, hdr_len);
    n += hdr_len;
    size_t k = ferry_uvarint_put(p, n);
    memcpy(p + k, body, n);
    return k + n;
}

Test(batch_reader, rejects_header_lies)
{
    uint8_t area[128];
    /* header_count 3 but one header present */
    const uint8_t count_lie[] = {3, 1, 'a', 2, 'b', 0, 0};
    expect_bad_record(area, record_with_headers(area, count_lie, sizeof count_lie), 1, "header_count lie");
    /* header_count 1, name length 9 with 1 byte present */
    const uint8_t name_past[] = {1, 9, 'a', 1};
    expect_bad_record(area, record_with_headers(area, name_past, sizeof name_past), 1, "header name past end");
    /* header value length 5 with 1 byte */
    const uint8_t value_past[] = {1, 1, 'a', 10, 'b'};
    expect_bad_record(area, record_with_headers(area, value_past, sizeof value_past), 1, "header value past end");
    /* header value length -2 */
    const uint8_t value_neg[] = {1, 1, 'a', 3};
    expect_bad_record(area, record_with_headers(area, value_neg, sizeof value_neg), 1, "header value -2");
    /* header_count above the limit */
    uint8_t many[8];
    size_t k = ferry_uvarint_put(many, FERRY_MAX_HEADERS_PER_RECORD + 1);
    expect_bad_record(area, record_with_headers(area, many, k), 1, "header_count over limit");
    /* good: null header value */
    const uint8_t ok[] = {1, 1, 'a', 1};
    size_t n = record_with_headers(area, ok, sizeof ok), len;
    uint8_t *b = make_batch(area, n, 1, 0, &len);
    struct ferry_batch_reader r;
    cr_assert_eq(ferry_batch_reader_init(&r, b, len), 0);
    struct ferry_record_view rec;
    cr_assert_eq(ferry_batch_reader_next(&r, &rec), 1, "%s", r.errmsg);
    struct ferry_header_view h;
    size_t pos = 0;
    cr_assert_eq(ferry_record_next_header(&rec, &pos, &h), 1);
    cr_assert_null(h.value);
    cr_assert_eq(ferry_record_next_header(&rec, &pos, &h), 0);
    /* next_header bounds-checks a view it is handed, too */
    struct ferry_record_view cut = rec;
    cut.headers_raw_len = 2;
    pos = 0;
    cr_assert_lt(ferry_record_next_header(&cut, &pos, &h), 0);
    ferry_batch_reader_free(&r);
    free(b);
}

Test(batch_reader, rejects_negative_lengths)
{
    uint8_t area[64];
    /* key_length -2 (zigzag 3) */
    uint8_t body[] = {0, 0, 0, 3, 2, 'v', 0};
    area[0] = sizeof body;
    memcpy(area + 1, body, sizeof body);
    expect_bad_record(area, 1 + sizeof body, 1, "key length -2");
    /* value_length -5 (zigzag 9) */
    uint8_t body2[] = {0, 0, 0, 1, 9, 'v', 0};
    memcpy(area + 1, body2, sizeof body2);
    expect_bad_record(area, 1 + sizeof body2, 1, "value length -5");
    /* value_length 40 past the record */
    uint8_t body3[] = {0, 0, 0, 1, 80, 'v', 0};
    memcpy(area + 1, body3, sizeof body3);
    expect_bad_record(area, 1 + sizeof body3, 1, "value past end");
    /* unused bytes inside the record */
    uint8_t body4[] = {0, 0, 0, 1, 2, 'v', 0, 0};
    area[0] = sizeof body4;
    memcpy(area + 1, body4, sizeof body4);
    expect_bad_record(area, 1 + sizeof body4, 1, "slack inside record");
}

/* ---- compressed input ---- */

static void expect_init_fails(const uint8_t *area, size_t area_len, uint16_t comp, int want, const char *what)
{
    size_t len;
    uint8_t *b = make_batch(area, area_len, 1, comp, &len);
    struct ferry_batch_reader r;
    int rc = ferry_batch_reader_init(&r, b, len);
    cr_assert_eq(rc, want, "%s: rc %d (%s)", what, rc, r.errmsg);
    cr_log_info("%s -> %s", what, r.errmsg);
    ferry_batch_reader_free(&r);
    free(b);
}

#define BOMB_BYTES ((size_t)FERRY_MAX_DECOMPRESSED_BYTES + 1)

Test(batch_reader, zstd_bomb_with_content_size)
{
    uint8_t *zeros = calloc(1, BOMB_BYTES);
    size_t cap = ZSTD_compressBound(BOMB_BYTES);
    uint8_t *z = malloc(cap);
    size_t n = ZSTD_compress(z, cap, zeros, BOMB_BYTES, 1);
    cr_assert(!ZSTD_isError(n));
    free(zeros);
    expect_init_fails(z, n, FERRY_COMPRESSION_ZSTD, FERRY_ERR_LIMIT_EXCEEDED, "zstd bomb (declared size)");
    free(z);
}

Test(batch_reader, zstd_bomb_without_content_size)
{
    uint8_t *zeros = calloc(1, BOMB_BYTES);
    size_t cap = ZSTD_compressBound(BOMB_BYTES);
    uint8_t *z = malloc(cap);
    ZSTD_CCtx *cc = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(cc, ZSTD_c_contentSizeFlag, 0);
    ZSTD_CCtx_setParameter(cc, ZSTD_c_windowLog, 20);
    size_t n = ZSTD_compress2(cc, z, cap, zeros, BOMB_BYTES);
    cr_assert(!ZSTD_isError(n));
    cr_assert_eq(ZSTD_getFrameContentSize(z, n), ZSTD_CONTENTSIZE_UNKNOWN);
    ZSTD_freeCCtx(cc);
    free(zeros);
    expect_init_fails(z, n, FERRY_COMPRESSION_ZSTD, FERRY_ERR_LIMIT_EXCEEDED, "zstd bomb (streamed)");
    free(z);
}

Test(batch_reader, lz4_bomb)
{
    uint8_t *zeros = calloc(1, BOMB_BYTES);
    LZ4F_preferences_t prefs;
    memset(&prefs, 0, sizeof prefs); /* contentSize 0: unknown, so only the cap can stop it */
    size_t cap = LZ4F_compressFrameBound(BOMB_BYTES, &prefs);
    uint8_t *z = malloc(cap);
    size_t n = LZ4F_compressFrame(z, cap, zeros, BOMB_BYTES, &prefs);
    cr_assert(!LZ4F_isError(n));
    free(zeros);
    cr_assert_leq(n + FERRY_BATCH_HEADER_SIZE, FERRY_MAX_BATCH_BYTES);
    expect_init_fails(z, n, FERRY_COMPRESSION_LZ4, FERRY_ERR_LIMIT_EXCEEDED, "lz4 bomb");
    free(z);
}

Test(batch_reader, lz4_declared_size_over_limit)
{
    uint8_t src[100] = {0};
    LZ4F_preferences_t prefs;
    memset(&prefs, 0, sizeof prefs);
    prefs.frameInfo.contentSize = sizeof src;
    uint8_t z[512];
    size_t n = LZ4F_compressFrame(z, sizeof z, src, sizeof src, &prefs);
    cr_assert(!LZ4F_isError(n));
    /* Rewrite the declared content size (8 bytes LE after magic+FLG+BD) to the limit + 1; the header
     * checksum byte then mismatches unless recomputed, so either error is a rejection. */
    uint64_t big = (uint64_t)FERRY_MAX_DECOMPRESSED_BYTES + 1;
    for (int i = 0; i < 8; i++)
        z[6 + i] = (uint8_t)(big >> (8 * i));
    size_t len;
    uint8_t *b = make_batch(z, n, 1, FERRY_COMPRESSION_LZ4, &len);
    struct ferry_batch_reader r;
    cr_assert_neq(ferry_batch_reader_init(&r, b, len), 0);
    ferry_batch_reader_free(&r);
    free(b);
}

Test(batch_reader, corrupt_compressed_data)
{
    const uint8_t junk[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    expect_init_fails(junk, sizeof junk, FERRY_COMPRESSION_ZSTD, FERRY_ERR_CORRUPT_BATCH, "zstd junk");
    expect_init_fails(junk, sizeof junk, FERRY_COMPRESSION_LZ4, FERRY_ERR_CORRUPT_BATCH, "lz4 junk");

    uint8_t area[64];
    size_t an = put_simple_record(area, 0, "payload payload payload");
    uint8_t z[256];
    size_t n = ZSTD_compress(z, sizeof z, area, an, 3);
    cr_assert(!ZSTD_isError(n));
    expect_init_fails(z, n - 1, FERRY_COMPRESSION_ZSTD, FERRY_ERR_CORRUPT_BATCH, "zstd truncated");
    z[n] = 0;
    expect_init_fails(z, n + 1, FERRY_COMPRESSION_ZSTD, FERRY_ERR_CORRUPT_BATCH, "zstd trailing byte");

    LZ4F_preferences_t prefs;
    memset(&prefs, 0, sizeof prefs);
    n = LZ4F_compressFrame(z, sizeof z, area, an, &prefs);
    cr_assert(!LZ4F_isError(n));
    expect_init_fails(z, n - 1, FERRY_COMPRESSION_LZ4, FERRY_ERR_CORRUPT_BATCH, "lz4 truncated");
    z[n] = 0;
    expect_init_fails(z, n + 1, FERRY_COMPRESSION_LZ4, FERRY_ERR_CORRUPT_BATCH, "lz4 trailing byte");

    /* a valid compressed area whose records are malformed is caught by next() */
    area[0] = (uint8_t)(area[0] + 3);
    n = ZSTD_compress(z, sizeof z, area, an, 3);
    size_t len;
    uint8_t *b = make_batch(z, n, 1, FERRY_COMPRESSION_ZSTD, &len);
    struct ferry_batch_reader r;
    cr_assert_eq(ferry_batch_reader_init(&r, b, len), 0, "%s", r.errmsg);
    struct ferry_record_view rec;
    cr_assert_eq(ferry_batch_reader_next(&r, &rec), -FERRY_ERR_INVALID_RECORD);
    ferry_batch_reader_free(&r);
    free(b);
}

/* docs/protocol.md, "Record batch" worked example: this exact batch. */
Test(batch_round_trip, worked_example_bytes)
{
    static const uint8_t want[] = {
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* base_offset 0 */
        0x00, 0x00, 0x00, 0x57,                         /* batch_length 87 */
        0x00, 0x00, 0x00, 0x00,                         /* leader_epoch 0 */
        0x54, 0xe7, 0x5b, 0x5a,                         /* crc */
        0x00, 0x01,                                     /* magic 1 */
        0x00, 0x00,                                     /* attributes: no compression */
        0x00, 0x00, 0x00, 0x01,                         /* last_offset_delta 1 */
        0x00, 0x00, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x00, /* first_timestamp 1700000000000 */
        0x00, 0x00, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x02, /* max_timestamp 1700000000002 */
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, /* producer_id -1 */
        0xff, 0xff,                                     /* producer_epoch -1 */
        0xff, 0xff, 0xff, 0xff,                         /* base_sequence -1 */
        0x00, 0x00, 0x00, 0x02,                         /* record_count 2 */
        0x00, 0x00,                                     /* reserved */
        0x0d, 0x00, 0x00, 0x00, 0x02, 0x6b, 0x04, 0x68, 0x69, 0x01, 0x01, 0x68, 0x02, 0x76, /* record 0 */
        0x08, 0x00, 0x04, 0x01, 0x01, 0x04, 0x79, 0x6f, 0x00,                               /* record 1 */
    };
    struct ferry_batch_builder *b = ferry_batch_builder_new(FERRY_COMPRESSION_NONE, -1, -1, -1);
    struct ferry_header_view h = {(const uint8_t *)"h", 1, (const uint8_t *)"v", 1};
    cr_assert_eq(ferry_batch_builder_add(b, 1700000000000, "k", 1, "hi", 2, &h, 1), 0);
    cr_assert_eq(ferry_batch_builder_add(b, 1700000000002, NULL, -1, "yo", 2, NULL, 0), 0);
    uint8_t *batch;
    size_t len;
    cr_assert_eq(ferry_batch_builder_seal(b, &batch, &len), 0);
    cr_assert_eq(len, sizeof want);
    cr_assert_arr_eq(batch, want, sizeof want);
    cr_assert_eq(ferry_crc32c(0, want + 20, sizeof want - 20), 0x54e75b5au);
    free(batch);
}
