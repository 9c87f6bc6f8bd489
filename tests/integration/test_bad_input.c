/* test_bad_input.c: hostile and malformed input over raw connections to a real ferryd; it must keep serving. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ferrytest.h"
#include "proto/batch.h"
#include "proto/limits.h"

#define TOPIC "events"
#define TOPIC_PARTITIONS 2
#define SEED_RECORDS 10
#define SEED_VALUE_LEN 100

static struct ft_broker B;
static char E[FT_ERRMSG];

/* ---- helpers ---- */

static void raw_connect(struct ft_raw *c)
{
    FT_ASSERT(ft_raw_connect_broker(c, &B, E, sizeof(E)) == 0, "%s", E);
}

/* Sends a built request on c and reads its response (asserting one arrives). */
static void rt(struct ft_raw *c, struct ft_req *req, struct ft_resp *resp)
{
    size_t len;
    const uint8_t *f = ft_req_frame(req, &len);
    FT_ASSERT(ft_raw_roundtrip(c, f, len, resp, E, sizeof(E)) == 0, "%s", E);
}

/* The broker closes c: the next read sees EOF/reset, never a frame, within the raw timeout. */
static void expect_closed(struct ft_raw *c, const char *what)
{
    uint8_t *p = NULL;
    size_t n = 0;
    int r = ft_raw_recv_frame(c, &p, &n, FERRY_MAX_FRAME_BYTES);
    free(p);
    FT_ASSERT(r == FT_RAW_CLOSED, "%s: expected the broker to close the connection, got result %d", what, r);
}

/* Item-level error of body.topics[0].partitions[0] (Produce/Fetch/ListOffsets). */
static int64_t part_error(const struct ft_resp *r)
{
    const msgpack_object *p = ft_resp_partition(r, 0, 0);
    FT_ASSERT(p != NULL, "response has no topics[0].partitions[0] (top-level error %lld: %s)", (long long)r->error,
              r->error_message);
    return ft_mp_int(p, "error", -999);
}

/* An INVALID_REQUEST either for the whole request or for its first item. */
static void expect_invalid_request(const struct ft_resp *r, const char *what)
{
    if (r->error == FERRY_ERR_INVALID_REQUEST)
        return;
    FT_ASSERT_EQ(r->error, 0, "%s: top-level error", what);
    const msgpack_object *item = ft_resp_partition(r, 0, 0);
    if (!item)
        item = ft_resp_topic(r, 0);
    FT_ASSERT(item != NULL, "%s: no top-level error and no item", what);
    FT_ASSERT_ERR(ft_mp_int(item, "error", -999), FERRY_ERR_INVALID_REQUEST, "%s", what);
}

static void create_topic(const char *name, int64_t partitions, int64_t want_error)
{
    struct ft_raw c;
    struct ft_req req;
    struct ft_resp resp;
    raw_connect(&c);
    ft_req_create_topic(&req, 1, name, partitions);
    rt(&c, &req, &resp);
    FT_ASSERT_EQ(resp.error, 0, "CreateTopics top-level: %s", resp.error_message);
    const msgpack_object *t = ft_resp_topic(&resp, 0);
    FT_ASSERT(t != NULL, "CreateTopics response without topics[0]");
    FT_ASSERT_ERR(ft_mp_int(t, "error", -999), want_error, "create topic '%.40s' partitions %lld", name,
                  (long long)partitions);
    ft_resp_free(&resp);
    ft_req_free(&req);
    ft_raw_close(&c);
}

/* Produces one batch with raw; returns the partition-level error and the base offset. */
static int64_t produce_batch(const char *topic, int64_t partition, const uint8_t *batch, size_t len, int64_t *base)
{
    struct ft_raw c;
    struct ft_req req;
    struct ft_resp resp;
    raw_connect(&c);
    ft_req_produce(&req, 7, topic, partition, batch, len);
    rt(&c, &req, &resp);
    FT_ASSERT_EQ(resp.correlation_id, 7, "correlation id echoed");
    FT_ASSERT_EQ(resp.error, 0, "Produce top-level: %s", resp.error_message);
    int64_t err = part_error(&resp);
    if (base)
        *base = ft_mp_int(ft_resp_partition(&resp, 0, 0), "base_offset", -1);
    ft_resp_free(&resp);
    ft_req_free(&req);
    ft_raw_close(&c);
    return err;
}

/* Checks that records (concatenated batches from offset 0) hold exactly the seed records. */
static void check_seed_records(const uint8_t *records, size_t len)
{
    uint8_t want[SEED_VALUE_LEN];
    uint32_t seen = 0;
    size_t pos = 0;
    while (pos < len) {
        size_t blen = 0;
        FT_ASSERT(ferry_batch_peek_length(records + pos, len - pos, &blen) == 0 && blen <= len - pos,
                  "whole batches in the fetch response (at %zu of %zu)", pos, len);
        struct ferry_batch_reader rd;
        int rc = ferry_batch_reader_init(&rd, records + pos, blen);
        FT_ASSERT_EQ(rc, 0, "batch at %zu: %s", pos, rd.errmsg);
        struct ferry_record_view rec;
        while ((rc = ferry_batch_reader_next(&rd, &rec)) == 1) {
            if (rec.offset >= SEED_RECORDS)
                continue;
            FT_ASSERT_EQ(rec.offset, seen, "offsets in order");
            char key[32];
            int kl = snprintf(key, sizeof(key), "key-%u", seen);
            FT_ASSERT(rec.key && rec.key_len == (size_t)kl && memcmp(rec.key, key, (size_t)kl) == 0,
                      "record %u key", seen);
            ft_fill_pattern(want, sizeof(want), seen);
            FT_ASSERT(rec.value && rec.value_len == sizeof(want) && memcmp(rec.value, want, sizeof(want)) == 0,
                      "record %u value", seen);
            seen++;
        }
        FT_ASSERT_EQ(rc, 0, "batch at %zu: %s", pos, rd.errmsg);
        ferry_batch_reader_free(&rd);
        pos += blen;
    }
    FT_ASSERT_EQ(seen, SEED_RECORDS, "seed records read back");
}

/* A fresh connection is served: ApiVersions answers, and the seed records read back intact. */
static void assert_serves(void)
{
    FT_ASSERT(ft_broker_alive(&B), "ferryd (pid %d) is alive", (int)B.pid);
    struct ft_raw c;
    struct ft_req req;
    struct ft_resp resp;
    raw_connect(&c);
    ft_req_api_versions(&req, 99);
    rt(&c, &req, &resp);
    FT_ASSERT_EQ(resp.correlation_id, 99, "ApiVersions correlation id");
    FT_ASSERT_EQ(resp.error, 0, "ApiVersions: %s", resp.error_message);
    const msgpack_object *apis = ft_mp_get(resp.body, "apis");
    FT_ASSERT(apis && apis->type == MSGPACK_OBJECT_ARRAY && apis->via.array.size >= 7, "ApiVersions lists 7 apis");
    ft_resp_free(&resp);
    ft_req_free(&req);

    ft_req_fetch(&req, 100, TOPIC, 0, 0, 0);
    rt(&c, &req, &resp);
    FT_ASSERT_EQ(resp.error, 0, "Fetch: %s", resp.error_message);
    FT_ASSERT_ERR(part_error(&resp), FERRY_ERR_NONE, "Fetch of the seed records");
    const msgpack_object *p = ft_resp_partition(&resp, 0, 0);
    FT_ASSERT_EQ(ft_mp_int(p, "high_watermark", -1), SEED_RECORDS, "high watermark");
    const msgpack_object *records = ft_mp_get(p, "records");
    FT_ASSERT(records && records->type == MSGPACK_OBJECT_BIN, "records is bin");
    check_seed_records((const uint8_t *)records->via.bin.ptr, records->via.bin.size);
    ft_resp_free(&resp);
    ft_req_free(&req);
    ft_raw_close(&c);
}

/* Starts the broker, creates the topic and produces the seed records (acknowledged at offset 0). */
static void start(const char *extra)
{
    ft_seed_reset();
    struct ft_broker_opts o = {.security = FT_TLS, .extra = extra};
    FT_ASSERT(ft_broker_start(&B, &o, E, sizeof(E)) == 0, "%s", E);
    create_topic(TOPIC, TOPIC_PARTITIONS, FERRY_ERR_NONE);
    uint8_t *batch;
    size_t len;
    FT_ASSERT(ft_make_batch(SEED_RECORDS, SEED_VALUE_LEN, 0, FERRY_COMPRESSION_NONE, &batch, &len, E, sizeof(E)) == 0,
              "%s", E);
    int64_t base = -1;
    FT_ASSERT_ERR(produce_batch(TOPIC, 0, batch, len, &base), FERRY_ERR_NONE, "seed produce");
    FT_ASSERT_EQ(base, 0, "seed base offset");
    free(batch);
}

/* Every test ends here: still serving, seed data intact, and a clean stop. */
static void finish(void)
{
    assert_serves();
    FT_ASSERT_EQ(ft_broker_stop(&B), 0, "ferryd exits 0 on SIGTERM");
}

static void teardown(void) { ft_broker_destroy(&B); }

TestSuite(bad_input, .fini = teardown, .timeout = 90);

/* ---- tests ---- */

Test(bad_input, frame_over_the_limit_closes_the_connection)
{
    start(NULL);
    struct ft_raw c;
    raw_connect(&c);
    uint32_t n = FERRY_MAX_FRAME_BYTES + 1;
    uint8_t hdr[8] = {(uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n, 0x90, 0x90, 0x90, 0x90};
    FT_ASSERT(ft_raw_send(&c, hdr, sizeof(hdr)) == 0, "send");
    expect_closed(&c, "frame of FERRY_MAX_FRAME_BYTES + 1");
    ft_raw_close(&c);

    raw_connect(&c);
    static const uint8_t huge[4] = {0xff, 0xff, 0xff, 0xff};
    FT_ASSERT(ft_raw_send(&c, huge, sizeof(huge)) == 0, "send");
    expect_closed(&c, "frame of 4 GiB - 1");
    ft_raw_close(&c);

    raw_connect(&c);
    static const uint8_t zero[4] = {0, 0, 0, 0};
    FT_ASSERT(ft_raw_send(&c, zero, sizeof(zero)) == 0, "send");
    expect_closed(&c, "frame of 0 bytes");
    ft_raw_close(&c);
    finish();
}

Test(bad_input, truncated_frames_then_close)
{
    start(NULL);
    struct ft_raw c;
    /* A header announcing 1000 bytes, 10 of them, then the client goes away. */
    raw_connect(&c);
    uint8_t buf[14] = {0, 0, 0x03, 0xe8, 0x95, 0x00};
    FT_ASSERT(ft_raw_send(&c, buf, sizeof(buf)) == 0, "send");
    ft_raw_close(&c);
    /* Half a length header. */
    raw_connect(&c);
    FT_ASSERT(ft_raw_send(&c, buf, 2) == 0, "send");
    ft_raw_close(&c);
    /* A valid request cut in the middle of its body. */
    struct ft_req req;
    size_t len;
    ft_req_metadata(&req, 5, TOPIC);
    const uint8_t *f = ft_req_frame(&req, &len);
    raw_connect(&c);
    FT_ASSERT(ft_raw_send(&c, f, len - 3) == 0, "send");
    ft_raw_close(&c);
    ft_req_free(&req);
    finish();
}

Test(bad_input, non_msgpack_bytes_close_the_connection)
{
    start(NULL);
    struct ft_raw c;
    static const uint8_t never_used[3] = {0xc1, 0xc1, 0xc1}; /* 0xc1 is never valid msgpack */
    raw_connect(&c);
    FT_ASSERT(ft_raw_send_frame(&c, never_used, sizeof(never_used)) == 0, "send");
    expect_closed(&c, "0xc1 bytes");
    ft_raw_close(&c);

    /* Text where msgpack should be. */
    static const char text[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    raw_connect(&c);
    FT_ASSERT(ft_raw_send(&c, text, sizeof(text) - 1) == 0, "send");
    expect_closed(&c, "HTTP request");
    ft_raw_close(&c);

    /* A msgpack array that claims more elements than the frame holds. */
    static const uint8_t short_array[3] = {0xdd, 0x7f, 0xff}; /* array32 header, truncated */
    raw_connect(&c);
    FT_ASSERT(ft_raw_send_frame(&c, short_array, sizeof(short_array)) == 0, "send");
    expect_closed(&c, "truncated array32");
    ft_raw_close(&c);

    /* Two values in one frame: a frame holds exactly one. */
    struct ft_req req;
    ft_req_begin_raw(&req);
    msgpack_pack_nil(&req.pk);
    msgpack_pack_nil(&req.pk);
    size_t len;
    const uint8_t *f = ft_req_frame(&req, &len);
    raw_connect(&c);
    FT_ASSERT(ft_raw_send(&c, f, len) == 0, "send");
    expect_closed(&c, "two msgpack values in one frame");
    ft_raw_close(&c);
    ft_req_free(&req);

    /* Nesting deeper than FERRY_MAX_NESTING_DEPTH. */
    ft_req_begin_raw(&req);
    for (int i = 0; i < 64; i++)
        msgpack_pack_array(&req.pk, 1);
    msgpack_pack_nil(&req.pk);
    f = ft_req_frame(&req, &len);
    raw_connect(&c);
    FT_ASSERT(ft_raw_send(&c, f, len) == 0, "send");
    expect_closed(&c, "64 nested arrays");
    ft_raw_close(&c);
    ft_req_free(&req);
    finish();
}

Test(bad_input, wrong_field_types_get_invalid_request)
{
    start(NULL);
    struct ft_raw c;
    struct ft_req req;
    struct ft_resp resp;
    raw_connect(&c);

    /* Envelope: api as a string, readable correlation id: answered, connection kept. */
    ft_req_begin_raw(&req);
    msgpack_pack_array(&req.pk, 5);
    ft_pack_str(&req.pk, "metadata");
    msgpack_pack_uint32(&req.pk, 0);
    msgpack_pack_uint32(&req.pk, 42);
    msgpack_pack_nil(&req.pk);
    msgpack_pack_map(&req.pk, 0);
    rt(&c, &req, &resp);
    FT_ASSERT_EQ(resp.correlation_id, 42, "correlation id");
    FT_ASSERT_ERR(resp.error, FERRY_ERR_INVALID_REQUEST, "api as str");
    ft_resp_free(&resp);
    ft_req_free(&req);

    /* Body not a map. */
    ft_req_begin(&req, 1, 0, 43);
    msgpack_pack_array(&req.pk, 0);
    rt(&c, &req, &resp);
    FT_ASSERT_EQ(resp.correlation_id, 43, "correlation id");
    FT_ASSERT_ERR(resp.error, FERRY_ERR_INVALID_REQUEST, "body as array");
    ft_resp_free(&resp);
    ft_req_free(&req);

    /* CreateTopics with partitions as a string. */
    ft_req_begin(&req, 2, 0, 44);
    msgpack_pack_map(&req.pk, 1);
    ft_pack_str(&req.pk, "topics");
    msgpack_pack_array(&req.pk, 1);
    msgpack_pack_map(&req.pk, 2);
    ft_pack_str(&req.pk, "name");
    ft_pack_str(&req.pk, "typed");
    ft_pack_str(&req.pk, "partitions");
    ft_pack_str(&req.pk, "three");
    rt(&c, &req, &resp);
    FT_ASSERT_EQ(resp.correlation_id, 44, "correlation id");
    expect_invalid_request(&resp, "CreateTopics partitions as str");
    ft_resp_free(&resp);
    ft_req_free(&req);

    /* Produce with the batch as a string instead of bin. */
    ft_req_begin(&req, 4, 0, 45);
    msgpack_pack_map(&req.pk, 2);
    ft_pack_str(&req.pk, "acks");
    msgpack_pack_int(&req.pk, -1);
    ft_pack_str(&req.pk, "topics");
    msgpack_pack_array(&req.pk, 1);
    msgpack_pack_map(&req.pk, 2);
    ft_pack_str(&req.pk, "name");
    ft_pack_str(&req.pk, TOPIC);
    ft_pack_str(&req.pk, "partitions");
    msgpack_pack_array(&req.pk, 1);
    msgpack_pack_map(&req.pk, 2);
    ft_pack_str(&req.pk, "partition");
    msgpack_pack_int(&req.pk, 0);
    ft_pack_str(&req.pk, "batch");
    ft_pack_str(&req.pk, "not a batch");
    rt(&c, &req, &resp);
    FT_ASSERT_EQ(resp.correlation_id, 45, "correlation id");
    expect_invalid_request(&resp, "Produce batch as str");
    ft_resp_free(&resp);
    ft_req_free(&req);

    /* Fetch with the offset as a float. */
    ft_req_begin(&req, 5, 0, 46);
    msgpack_pack_map(&req.pk, 1);
    ft_pack_str(&req.pk, "topics");
    msgpack_pack_array(&req.pk, 1);
    msgpack_pack_map(&req.pk, 2);
    ft_pack_str(&req.pk, "name");
    ft_pack_str(&req.pk, TOPIC);
    ft_pack_str(&req.pk, "partitions");
    msgpack_pack_array(&req.pk, 1);
    msgpack_pack_map(&req.pk, 2);
    ft_pack_str(&req.pk, "partition");
    msgpack_pack_int(&req.pk, 0);
    ft_pack_str(&req.pk, "offset");
    msgpack_pack_double(&req.pk, 1.5);
    rt(&c, &req, &resp);
    FT_ASSERT_EQ(resp.correlation_id, 46, "correlation id");
    expect_invalid_request(&resp, "Fetch offset as float");
    ft_resp_free(&resp);
    ft_req_free(&req);

    /* The same connection still works. */
    ft_req_api_versions(&req, 47);
    rt(&c, &req, &resp);
    FT_ASSERT_EQ(resp.error, 0, "ApiVersions after errors");
    ft_resp_free(&resp);
    ft_req_free(&req);
    ft_raw_close(&c);
    finish();
}

Test(bad_input, unknown_api_and_unsupported_version_keep_the_connection)
{
    start(NULL);
    struct ft_raw c;
    struct ft_req req;
    struct ft_resp resp;
    raw_connect(&c);

    ft_req_begin(&req, 99, 0, 1);
    msgpack_pack_map(&req.pk, 0);
    rt(&c, &req, &resp);
    FT_ASSERT_EQ(resp.correlation_id, 1, "correlation id");
    FT_ASSERT_ERR(resp.error, FERRY_ERR_UNKNOWN_API, "api 99");
    ft_resp_free(&resp);
    ft_req_free(&req);

    ft_req_begin(&req, 1, 9, 2);
    msgpack_pack_map(&req.pk, 0);
    rt(&c, &req, &resp);
    FT_ASSERT_EQ(resp.correlation_id, 2, "correlation id");
    FT_ASSERT_ERR(resp.error, FERRY_ERR_UNSUPPORTED_VERSION, "Metadata v9");
    ft_resp_free(&resp);
    ft_req_free(&req);

    /* ApiVersions is answered at any version (with a v0 body). */
    ft_req_begin(&req, 0, 9, 3);
    msgpack_pack_map(&req.pk, 0);
    rt(&c, &req, &resp);
    FT_ASSERT_EQ(resp.correlation_id, 3, "correlation id");
    FT_ASSERT_ERR(resp.error, FERRY_ERR_NONE, "ApiVersions v9");
    FT_ASSERT(ft_mp_get(resp.body, "apis") != NULL, "apis listed");
    ft_resp_free(&resp);
    ft_req_free(&req);

    /* Pipelined: three requests in one write, one of them bad; three answers by correlation id. */
    struct ft_req r1, r2, r3;
    ft_req_api_versions(&r1, 11);
    ft_req_begin(&r2, 77, 0, 12);
    msgpack_pack_map(&r2.pk, 0);
    ft_req_metadata(&r3, 13, TOPIC);
    size_t l1, l2, l3;
    const uint8_t *f1 = ft_req_frame(&r1, &l1), *f2 = ft_req_frame(&r2, &l2), *f3 = ft_req_frame(&r3, &l3);
    uint8_t *all = malloc(l1 + l2 + l3);
    FT_ASSERT(all != NULL, "malloc");
    memcpy(all, f1, l1);
    memcpy(all + l1, f2, l2);
    memcpy(all + l1 + l2, f3, l3);
    FT_ASSERT(ft_raw_send(&c, all, l1 + l2 + l3) == 0, "send pipelined");
    free(all);
    int seen = 0;
    for (int i = 0; i < 3; i++) {
        FT_ASSERT(ft_raw_recv_resp(&c, &resp, E, sizeof(E)) == FT_RAW_FRAME, "pipelined response %d: %s", i, E);
        if (resp.correlation_id == 11) {
            FT_ASSERT_ERR(resp.error, FERRY_ERR_NONE, "pipelined ApiVersions");
        } else if (resp.correlation_id == 12) {
            FT_ASSERT_ERR(resp.error, FERRY_ERR_UNKNOWN_API, "pipelined api 77");
        } else {
            FT_ASSERT_EQ(resp.correlation_id, 13, "unexpected correlation id");
            FT_ASSERT_ERR(resp.error, FERRY_ERR_NONE, "pipelined Metadata");
            const msgpack_object *t = ft_resp_topic(&resp, 0);
            FT_ASSERT_ERR(ft_mp_int(t, "error", -999), FERRY_ERR_NONE, "topic in metadata");
        }
        seen |= 1 << (resp.correlation_id - 11);
        ft_resp_free(&resp);
    }
    FT_ASSERT_EQ(seen, 7, "each correlation id answered once");
    ft_req_free(&r1);
    ft_req_free(&r2);
    ft_req_free(&r3);
    ft_raw_close(&c);
    finish();
}

Test(bad_input, produce_to_missing_topic_and_partition)
{
    start(NULL);
    uint8_t *batch;
    size_t len;
    FT_ASSERT(ft_make_batch(3, 10, 1000, FERRY_COMPRESSION_NONE, &batch, &len, E, sizeof(E)) == 0, "%s", E);
    FT_ASSERT_ERR(produce_batch("no-such-topic", 0, batch, len, NULL), FERRY_ERR_UNKNOWN_TOPIC_OR_PARTITION,
                  "missing topic");
    FT_ASSERT_ERR(produce_batch(TOPIC, TOPIC_PARTITIONS, batch, len, NULL), FERRY_ERR_UNKNOWN_TOPIC_OR_PARTITION,
                  "partition = count");
    FT_ASSERT_ERR(produce_batch(TOPIC, 9999, batch, len, NULL), FERRY_ERR_UNKNOWN_TOPIC_OR_PARTITION,
                  "partition 9999");
    /* Partition 1 exists and takes the batch at offset 0. */
    int64_t base = -1;
    FT_ASSERT_ERR(produce_batch(TOPIC, 1, batch, len, &base), FERRY_ERR_NONE, "partition 1");
    FT_ASSERT_EQ(base, 0, "partition 1 base offset");
    free(batch);
    finish();
}

Test(bad_input, corrupt_batches_are_refused_and_not_stored)
{
    start(NULL);
    uint8_t *batch;
    size_t len;
    FT_ASSERT(ft_make_batch(5, 200, 2000, FERRY_COMPRESSION_NONE, &batch, &len, E, sizeof(E)) == 0, "%s", E);

    /* One flipped bit in the records: the CRC no longer matches. */
    size_t at = FERRY_BATCH_HEADER_SIZE + (size_t)ft_rand_range(0, (int64_t)(len - FERRY_BATCH_HEADER_SIZE - 1));
    batch[at] ^= (uint8_t)(1u << ft_rand_range(0, 7));
    FT_ASSERT_ERR(produce_batch(TOPIC, 0, batch, len, NULL), FERRY_ERR_CORRUPT_BATCH, "bit flip at %zu", at);

    /* Cut short: batch_length says more than the bytes sent. */
    FT_ASSERT_ERR(produce_batch(TOPIC, 0, batch, len - 7, NULL), FERRY_ERR_CORRUPT_BATCH, "truncated batch");

    /* Shorter than a header. */
    FT_ASSERT_ERR(produce_batch(TOPIC, 0, batch, 20, NULL), FERRY_ERR_CORRUPT_BATCH, "20-byte batch");

    /* Random bytes of a plausible size. */
    uint8_t junk[300];
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (uint8_t)ft_rand();
    FT_ASSERT_ERR(produce_batch(TOPIC, 0, junk, sizeof(junk), NULL), FERRY_ERR_CORRUPT_BATCH, "random bytes");
    free(batch);

    /* Nothing was appended: the log still ends after the seed records (assert_serves checks HW). */
    finish();
}

/* Sets record_count (and last_offset_delta to match) in a sealed batch and re-computes its CRC. */
static void set_record_count(uint8_t *batch, size_t len, uint32_t count)
{
    struct ferry_batch_header h;
    ferry_batch_header_decode(batch, &h);
    h.record_count = count;
    h.last_offset_delta = count - 1;
    h.crc = 0;
    ferry_batch_header_encode(&h, batch);
    h.crc = ferry_crc32c(0, batch + FERRY_BATCH_CRC_START, len - FERRY_BATCH_CRC_START);
    ferry_batch_header_encode(&h, batch);
}

/* Produces batch on a fresh connection; returns the partition error and copies its message. */
static int64_t produce_msg(const uint8_t *batch, size_t len, char *msg, size_t msg_len)
{
    struct ft_raw c;
    struct ft_req req;
    struct ft_resp resp;
    raw_connect(&c);
    ft_req_produce(&req, 8, TOPIC, 0, batch, len);
    rt(&c, &req, &resp);
    FT_ASSERT_EQ(resp.error, 0, "Produce top-level: %s", resp.error_message);
    int64_t err = part_error(&resp);
    const msgpack_object *m = ft_mp_get(ft_resp_partition(&resp, 0, 0), "error_message");
    snprintf(msg, msg_len, "%.*s", m && m->type == MSGPACK_OBJECT_STR ? (int)m->via.str.size : 0,
             m && m->type == MSGPACK_OBJECT_STR ? m->via.str.ptr : "");
    ft_resp_free(&resp);
    ft_req_free(&req);
    ft_raw_close(&c);
    return err;
}

/* A batch whose header and CRC are right but whose records do not match record_count. */
static void lying_record_count(int compression)
{
    start(NULL);
    const char *name = compression == FERRY_COMPRESSION_ZSTD ? "zstd" : "none";
    for (int more = 0; more < 2; more++) {
        uint8_t *batch;
        size_t len;
        char msg[FT_ERRMSG];
        FT_ASSERT(ft_make_batch(3, 100, 4000, compression, &batch, &len, E, sizeof(E)) == 0, "%s", E);
        set_record_count(batch, len, more ? 4 : 2); /* claims one record more, then one fewer */
        struct ferry_batch_header h;
        FT_ASSERT_EQ(ferry_batch_validate(batch, len, FERRY_MAX_BATCH_BYTES, &h, E, sizeof(E)), 0,
                     "the header and CRC alone pass (%s): %s", name, E);
        int64_t err = produce_msg(batch, len, msg, sizeof(msg));
        FT_ASSERT(err == FERRY_ERR_INVALID_RECORD || err == FERRY_ERR_CORRUPT_BATCH,
                  "%s batch of 3 records claiming %d: error %lld (%s): %s", name, more ? 4 : 2, (long long)err,
                  ft_err_name((int)err), msg);
        FT_ASSERT(strstr(msg, "record") != NULL, "the message says what is wrong: '%s'", msg);
        free(batch);
    }
    /* Nothing was stored: the log still ends after the seed records (assert_serves checks HW). */
    finish();
}

Test(bad_input, lying_record_count_uncompressed) { lying_record_count(FERRY_COMPRESSION_NONE); }
Test(bad_input, lying_record_count_zstd) { lying_record_count(FERRY_COMPRESSION_ZSTD); }

/* A producer's leader_epoch (outside the CRC) is replaced by 0 when the batch is stored. */
Test(bad_input, leader_epoch_is_set_to_zero_on_append)
{
    start(NULL);
    uint8_t *batch;
    size_t len;
    FT_ASSERT(ft_make_batch(2, 10, 5000, FERRY_COMPRESSION_NONE, &batch, &len, E, sizeof(E)) == 0, "%s", E);
    ferry_batch_set_leader_epoch(batch, 0xdeadbeef);
    FT_ASSERT_ERR(produce_batch(TOPIC, 1, batch, len, NULL), FERRY_ERR_NONE, "produce to partition 1");
    free(batch);
    struct ft_raw c;
    struct ft_req req;
    struct ft_resp resp;
    raw_connect(&c);
    ft_req_fetch(&req, 3, TOPIC, 1, 0, 0);
    rt(&c, &req, &resp);
    const msgpack_object *rec = ft_mp_get(ft_resp_partition(&resp, 0, 0), "records");
    FT_ASSERT(rec && rec->type == MSGPACK_OBJECT_BIN && rec->via.bin.size == len, "the batch reads back");
    struct ferry_batch_header h;
    ferry_batch_header_decode((const uint8_t *)rec->via.bin.ptr, &h);
    FT_ASSERT_EQ(h.leader_epoch, 0, "stored leader_epoch");
    ft_resp_free(&resp);
    ft_req_free(&req);
    ft_raw_close(&c);
    finish();
}

Test(bad_input, batch_over_the_broker_limit)
{
    start("batch.max.bytes = 4096\n");
    uint8_t *batch;
    size_t len;
    FT_ASSERT(ft_make_batch(10, 1000, 3000, FERRY_COMPRESSION_NONE, &batch, &len, E, sizeof(E)) == 0, "%s", E);
    FT_ASSERT(len > 4096, "the batch is over the limit (%zu)", len);
    FT_ASSERT_ERR(produce_batch(TOPIC, 0, batch, len, NULL), FERRY_ERR_BATCH_TOO_LARGE, "batch of %zu bytes", len);
    free(batch);
    finish();
}

Test(bad_input, fetch_out_of_range)
{
    start(NULL);
    struct ft_raw c;
    struct ft_req req;
    struct ft_resp resp;
    raw_connect(&c);
    static const int64_t bad[] = {SEED_RECORDS + 1, 1000000, -3};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ft_req_fetch(&req, (uint32_t)i, TOPIC, 0, bad[i], 0);
        rt(&c, &req, &resp);
        if (bad[i] < 0 && resp.error == FERRY_ERR_INVALID_REQUEST) {
            /* a negative offset may also be refused as malformed */
        } else {
            FT_ASSERT_EQ(resp.error, 0, "Fetch top-level");
            FT_ASSERT_ERR(part_error(&resp), FERRY_ERR_OFFSET_OUT_OF_RANGE, "fetch at %lld", (long long)bad[i]);
        }
        ft_resp_free(&resp);
        ft_req_free(&req);
    }
    /* At the high watermark: valid, nothing yet. */
    ft_req_fetch(&req, 50, TOPIC, 0, SEED_RECORDS, 0);
    rt(&c, &req, &resp);
    FT_ASSERT_ERR(part_error(&resp), FERRY_ERR_NONE, "fetch at the high watermark");
    const msgpack_object *records = ft_mp_get(ft_resp_partition(&resp, 0, 0), "records");
    FT_ASSERT(records == NULL || records->type == MSGPACK_OBJECT_NIL ||
                  (records->type == MSGPACK_OBJECT_BIN && records->via.bin.size == 0),
              "no records at the high watermark");
    ft_resp_free(&resp);
    ft_req_free(&req);
    /* A missing topic. */
    ft_req_fetch(&req, 51, "absent", 0, 0, 0);
    rt(&c, &req, &resp);
    FT_ASSERT_ERR(part_error(&resp), FERRY_ERR_UNKNOWN_TOPIC_OR_PARTITION, "fetch of a missing topic");
    ft_resp_free(&resp);
    ft_req_free(&req);
    ft_raw_close(&c);
    finish();
}

Test(bad_input, create_topic_with_bad_name_or_partitions)
{
    start(NULL);
    char long_name[FERRY_MAX_TOPIC_NAME + 2];
    memset(long_name, 'a', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    static const char *bad_names[] = {"", ".", "..", "bad/name", "with space", "ü"};
    for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++)
        create_topic(bad_names[i], 1, FERRY_ERR_INVALID_TOPIC);
    create_topic(long_name, 1, FERRY_ERR_INVALID_TOPIC);
    long_name[FERRY_MAX_TOPIC_NAME] = '\0'; /* exactly at the limit: fine */
    create_topic(long_name, 1, FERRY_ERR_NONE);

    create_topic("zero-parts", 0, FERRY_ERR_INVALID_PARTITIONS);
    create_topic("neg-parts", -5, FERRY_ERR_INVALID_PARTITIONS);
    create_topic("too-many-parts", FERRY_MAX_PARTITIONS_PER_TOPIC + 1, FERRY_ERR_INVALID_PARTITIONS);
    create_topic(TOPIC, 1, FERRY_ERR_TOPIC_ALREADY_EXISTS);

    /* None of the refused topics exists. */
    struct ft_raw c;
    struct ft_req req;
    struct ft_resp resp;
    raw_connect(&c);
    ft_req_metadata(&req, 9, "zero-parts");
    rt(&c, &req, &resp);
    FT_ASSERT_ERR(ft_mp_int(ft_resp_topic(&resp, 0), "error", -999), FERRY_ERR_UNKNOWN_TOPIC_OR_PARTITION,
                  "refused topic is absent");
    ft_resp_free(&resp);
    ft_req_free(&req);
    ft_raw_close(&c);
    finish();
}

Test(bad_input, many_abrupt_clients_then_service)
{
    start(NULL);
    /* Connections that send a random prefix of a valid request, or random bytes, and vanish. */
    struct ft_req req;
    size_t len;
    ft_req_metadata(&req, 1, TOPIC);
    const uint8_t *f = ft_req_frame(&req, &len);
    for (int i = 0; i < 40; i++) {
        struct ft_raw c;
        raw_connect(&c);
        if (i % 2 == 0) {
            size_t cut = (size_t)ft_rand_range(0, (int64_t)len - 1);
            FT_ASSERT(ft_raw_send(&c, f, cut) == 0, "send prefix");
        } else {
            uint8_t junk[64];
            for (size_t j = 0; j < sizeof(junk); j++)
                junk[j] = (uint8_t)ft_rand();
            junk[0] = 0; /* keep the announced length under the limit */
            if (ft_raw_send(&c, junk, sizeof(junk)) != 0) {
                /* the broker may already have closed us */
            }
        }
        ft_raw_close(&c);
    }
    ft_req_free(&req);
    finish();
}
