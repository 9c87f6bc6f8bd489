/* test_limits.c: per-connection resource limits of a real ferryd: output cap, handshake/idle deadlines, max.connections. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferrytest.h"
#include "proto/batch.h"
#include "proto/limits.h"

#define TOPIC "limits"

static struct ft_broker B;
static char E[FT_ERRMSG];

static void teardown(void) { ft_broker_destroy(&B); }

TestSuite(limits, .fini = teardown, .timeout = 240);

static void start(enum ft_security sec, const char *extra)
{
    struct ft_broker_opts o = {.security = sec, .extra = extra};
    FT_ASSERT(ft_broker_start(&B, &o, E, sizeof(E)) == 0, "%s", E);
}

static void raw_connect(struct ft_raw *c)
{
    FT_ASSERT(ft_raw_connect_broker(c, &B, E, sizeof(E)) == 0, "%s", E);
}

static void roundtrip(struct ft_raw *c, struct ft_req *req, struct ft_resp *resp)
{
    size_t len;
    const uint8_t *f = ft_req_frame(req, &len);
    FT_ASSERT(ft_raw_roundtrip(c, f, len, resp, E, sizeof(E)) == 0, "%s", E);
}

/* ApiVersions on c answers with its correlation id. */
static void assert_api_versions(struct ft_raw *c, uint32_t corr)
{
    struct ft_req req;
    struct ft_resp resp;
    ft_req_api_versions(&req, corr);
    roundtrip(c, &req, &resp);
    FT_ASSERT_EQ(resp.correlation_id, corr, "ApiVersions correlation id");
    FT_ASSERT_EQ(resp.error, 0, "ApiVersions: %s", resp.error_message);
    ft_resp_free(&resp);
    ft_req_free(&req);
}

/* The broker closes c: the next read sees EOF/reset, never a frame. */
static void expect_closed(struct ft_raw *c, const char *what)
{
    uint8_t *p = NULL;
    size_t n = 0;
    int r = ft_raw_recv_frame(c, &p, &n, FERRY_MAX_FRAME_BYTES);
    free(p);
    FT_ASSERT(r == FT_RAW_CLOSED, "%s: expected the broker to close the connection, got result %d", what, r);
}

/* "VmRSS:" or "VmHWM:" of pid in KiB, from /proc/<pid>/status. */
static long proc_kib(pid_t pid, const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    FT_ASSERT(f != NULL, "open %s", path);
    long v = -1;
    size_t fl = strlen(field);
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, field, fl) == 0) {
            v = strtol(line + fl, NULL, 10);
            break;
        }
    }
    fclose(f);
    FT_ASSERT(v >= 0, "%s in %s", field, path);
    return v;
}

static int log_contains(const char *needle)
{
    size_t len;
    char *log = ft_read_file(B.log_path, &len);
    int found = log != NULL && strstr(log, needle) != NULL;
    free(log);
    return found;
}

static void create_topic(struct ft_raw *c)
{
    struct ft_req req;
    struct ft_resp resp;
    ft_req_create_topic(&req, 1, TOPIC, 1);
    roundtrip(c, &req, &resp);
    FT_ASSERT_EQ(resp.error, 0, "CreateTopics: %s", resp.error_message);
    const msgpack_object *t = ft_resp_topic(&resp, 0);
    FT_ASSERT(t != NULL, "CreateTopics response without topics[0]");
    FT_ASSERT_ERR(ft_mp_int(t, "error", -999), FERRY_ERR_NONE, "create topic");
    ft_resp_free(&resp);
    ft_req_free(&req);
}

/* Stored data per fetch: DATA_BATCHES batches of ~1 MiB. */
#define DATA_BATCHES 4
#define BATCH_RECORDS 256
#define RECORD_BYTES 4096
/* Fetches pipelined without reading: about 2 GiB of responses if the broker queued them all. */
#define PIPELINED 500
/* Peak memory the broker may gain meanwhile: the cap, one response, buffer doubling, and room for
 * AddressSanitizer's quarantine of freed response buffers (256 MiB by default). */
#define MAX_GROWTH_KIB (600L * 1024)

Test(limits, pipelined_fetches_without_reading_keep_broker_memory_bounded)
{
    start(FT_PLAINTEXT, NULL);
    struct ft_raw c;
    raw_connect(&c);
    create_topic(&c);
    size_t stored = 0;
    for (uint32_t i = 0; i < DATA_BATCHES; i++) {
        uint8_t *batch;
        size_t len;
        FT_ASSERT(ft_make_batch(BATCH_RECORDS, RECORD_BYTES, (uint64_t)i * BATCH_RECORDS, FERRY_COMPRESSION_NONE,
                                &batch, &len, E, sizeof(E)) == 0,
                  "%s", E);
        struct ft_req req;
        struct ft_resp resp;
        ft_req_produce(&req, 10 + i, TOPIC, 0, batch, len);
        roundtrip(&c, &req, &resp);
        FT_ASSERT_EQ(resp.error, 0, "Produce: %s", resp.error_message);
        FT_ASSERT_ERR(ft_mp_int(ft_resp_partition(&resp, 0, 0), "error", -999), FERRY_ERR_NONE, "produce %u", i);
        ft_resp_free(&resp);
        ft_req_free(&req);
        stored += len;
        free(batch);
    }
    long base_kib = proc_kib(B.pid, "VmRSS:");

    /* The greedy client: many whole-log fetches, nothing read. */
    struct ft_raw greedy;
    raw_connect(&greedy);
    for (uint32_t i = 0; i < PIPELINED; i++) {
        struct ft_req req;
        size_t len;
        ft_req_fetch(&req, 1000 + i, TOPIC, 0, 0, 0);
        const uint8_t *f = ft_req_frame(&req, &len);
        FT_ASSERT(ft_raw_send(&greedy, f, len) == 0, "send fetch %u", i);
        ft_req_free(&req);
    }
    /* Give the broker time to answer as much as it will; others must be served meanwhile. */
    ft_sleep_ms(ft_ms(1500));
    struct ft_raw other;
    raw_connect(&other);
    assert_api_versions(&other, 77);
    {
        struct ft_req req;
        struct ft_resp resp;
        ft_req_fetch(&req, 78, TOPIC, 0, 0, 0);
        roundtrip(&other, &req, &resp);
        FT_ASSERT_EQ(resp.error, 0, "Fetch from another client: %s", resp.error_message);
        const msgpack_object *rec = ft_mp_get(ft_resp_partition(&resp, 0, 0), "records");
        FT_ASSERT(rec != NULL && rec->type == MSGPACK_OBJECT_BIN && rec->via.bin.size == stored,
                  "another client fetches the whole log (%zu bytes)", stored);
        ft_resp_free(&resp);
        ft_req_free(&req);
    }
    ft_raw_close(&other);

    /* Now read every answer, in order, complete. */
    for (uint32_t i = 0; i < PIPELINED; i++) {
        struct ft_resp resp;
        int r = ft_raw_recv_resp(&greedy, &resp, E, sizeof(E));
        FT_ASSERT_EQ(r, FT_RAW_FRAME, "response %u of %u: %s", i, PIPELINED, E);
        FT_ASSERT_EQ(resp.correlation_id, 1000 + i, "responses in order");
        FT_ASSERT_EQ(resp.error, 0, "Fetch %u: %s", i, resp.error_message);
        const msgpack_object *rec = ft_mp_get(ft_resp_partition(&resp, 0, 0), "records");
        FT_ASSERT(rec != NULL && rec->type == MSGPACK_OBJECT_BIN && rec->via.bin.size == stored,
                  "fetch %u returns the whole log", i);
        ft_resp_free(&resp);
    }
    long peak_kib = proc_kib(B.pid, "VmHWM:");
    FT_ASSERT(peak_kib - base_kib < MAX_GROWTH_KIB,
              "broker peak RSS grew by %ld KiB (from %ld KiB) while %d responses of %zu bytes were pipelined; "
              "the output cap is %u bytes",
              peak_kib - base_kib, base_kib, PIPELINED, stored, FERRY_MAX_PENDING_OUTPUT_BYTES);
    assert_api_versions(&greedy, 2);
    ft_raw_close(&greedy);
    ft_raw_close(&c);
    FT_ASSERT_EQ(ft_broker_stop(&B), 0, "ferryd exits 0 on SIGTERM");
}

Test(limits, silent_connection_is_closed_after_the_handshake_timeout)
{
    start(FT_TLS, "connections.handshake.timeout.ms = 300\n");
    /* Plain TCP to a TLS listener, saying nothing: no ClientHello, no request. */
    struct ft_raw silent;
    FT_ASSERT(ft_raw_connect(&silent, B.host, B.port, NULL, 10000, E, sizeof(E)) == 0, "%s", E);
    expect_closed(&silent, "silent TCP connection");
    ft_raw_close(&silent);
    FT_ASSERT(log_contains("connections.handshake.timeout.ms=300"), "the broker logs why it closed the connection");

    /* A client that completes TLS and sends its request in time is served. */
    struct ft_raw c;
    raw_connect(&c);
    assert_api_versions(&c, 5);
    ft_raw_close(&c);
    FT_ASSERT_EQ(ft_broker_stop(&B), 0, "ferryd exits 0 on SIGTERM");
}

Test(limits, idle_connection_is_closed_after_max_idle)
{
    start(FT_PLAINTEXT, "connections.max.idle.ms = 300\n");
    struct ft_raw c;
    raw_connect(&c);
    assert_api_versions(&c, 1);
    expect_closed(&c, "idle connection");
    ft_raw_close(&c);
    FT_ASSERT(log_contains("connections.max.idle.ms=300"), "the broker logs why it closed the connection");
    FT_ASSERT_EQ(ft_broker_stop(&B), 0, "ferryd exits 0 on SIGTERM");
}

Test(limits, connection_past_max_connections_is_closed_and_the_others_work)
{
    start(FT_PLAINTEXT, "max.connections = 2\n");
    struct ft_raw a, b, extra;
    raw_connect(&a);
    assert_api_versions(&a, 1);
    raw_connect(&b);
    assert_api_versions(&b, 2);
    raw_connect(&extra);
    expect_closed(&extra, "connection past max.connections");
    ft_raw_close(&extra);
    FT_ASSERT(log_contains("max.connections=2 reached"), "the broker logs why it refused the connection");
    assert_api_versions(&a, 3);
    assert_api_versions(&b, 4);
    /* A slot freed by a close is available again. */
    ft_raw_close(&a);
    int served = 0;
    for (int attempt = 0; attempt < 50 && !served; attempt++) {
        struct ft_raw again;
        raw_connect(&again);
        struct ft_req req;
        size_t len;
        ft_req_api_versions(&req, 9);
        const uint8_t *f = ft_req_frame(&req, &len);
        struct ft_resp resp;
        served = ft_raw_roundtrip(&again, f, len, &resp, E, sizeof(E)) == 0;
        ft_resp_free(&resp);
        ft_req_free(&req);
        ft_raw_close(&again);
        if (!served)
            ft_sleep_ms(50); /* the broker may not have seen a's close yet */
    }
    FT_ASSERT(served, "a new connection is served once one of the two closed");
    ft_raw_close(&b);
    FT_ASSERT_EQ(ft_broker_stop(&B), 0, "ferryd exits 0 on SIGTERM");
}
