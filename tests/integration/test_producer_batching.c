/* test_producer_batching.c: libferry's producer accumulates records behind an in-flight batch (sealed at send time). */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "ferrytest.h"
#include "proto/batch.h"

/*
 * The broker is paused with SIGSTOP to hold a partition's batch in flight deterministically: the
 * connection stays open (the kernel keeps accepting bytes), nothing is answered until SIGCONT.
 */

static struct ft_broker B;
static char E[FT_ERRMSG];
static int paused;

static void teardown(void)
{
    if (paused && B.pid > 0)
        kill(B.pid, SIGCONT);
    paused = 0;
    ft_broker_destroy(&B);
}

TestSuite(batching, .fini = teardown, .timeout = 120);

static void pause_broker(int on)
{
    FT_ASSERT(B.pid > 0, "broker running");
    FT_ASSERT_EQ(kill(B.pid, on ? SIGSTOP : SIGCONT), 0, "kill(%s)", on ? "SIGSTOP" : "SIGCONT");
    paused = on;
}

/* Starts a broker and creates topic with one partition. */
static void start(const char *topic)
{
    ft_seed_reset();
    struct ft_broker_opts o = {.security = FT_TLS};
    FT_ASSERT(ft_broker_start(&B, &o, E, sizeof(E)) == 0, "%s", E);
    ferry_client_t *a = ft_client(&B, FERRY_ADMIN, NULL, E, sizeof(E));
    FT_ASSERT(a != NULL, "%s", E);
    char err[512] = "";
    FT_ASSERT_ERR(ferry_admin_create_topic(a, topic, 1, -1, NULL, NULL, 0, ft_ms(10000), err, sizeof(err)),
                  FERRY_ERR_NONE, "create %s: %s", topic, err);
    ferry_client_destroy(a);
}

static ferry_client_t *producer(const char *const *kv, struct ft_deliveries *log)
{
    ferry_conf_t *conf = ft_conf(&B, kv, E, sizeof(E));
    FT_ASSERT(conf != NULL, "%s", E);
    ft_conf_record_deliveries(conf, log);
    char err[512] = "";
    ferry_client_t *p = ferry_client_new(FERRY_PRODUCER, conf, err, sizeof(err));
    FT_ASSERT(p != NULL, "ferry_client_new: %s", err);
    return p;
}

static void produce(ferry_client_t *p, const char *topic, const char *value, uintptr_t id)
{
    ferry_record_t rec = {.topic = topic, .partition = 0, .value = value, .value_len = strlen(value),
                          .opaque = (void *)id};
    FT_ASSERT_ERR(ferry_produce(p, &rec, 0), FERRY_ERR_NONE, "produce %s", value);
}

/* Counts the stored batches and records of topic/0 from offset 0 (a raw Fetch: batch boundaries
 * are visible there, not through the consumer). */
static void count_stored(const char *topic, size_t *batches, size_t *records)
{
    struct ft_raw c;
    FT_ASSERT(ft_raw_connect_broker(&c, &B, E, sizeof(E)) == 0, "%s", E);
    struct ft_req req;
    struct ft_resp resp;
    size_t len;
    ft_req_fetch(&req, 1, topic, 0, 0, 0);
    const uint8_t *f = ft_req_frame(&req, &len);
    FT_ASSERT(ft_raw_roundtrip(&c, f, len, &resp, E, sizeof(E)) == 0, "%s", E);
    FT_ASSERT_EQ(resp.error, 0, "Fetch: %s", resp.error_message);
    const msgpack_object *p = ft_resp_partition(&resp, 0, 0);
    FT_ASSERT(p != NULL, "a partition result");
    FT_ASSERT_EQ(ft_mp_int(p, "error", -1), 0, "partition error");
    const msgpack_object *recs = ft_mp_get(p, "records");
    FT_ASSERT(recs != NULL && recs->type == MSGPACK_OBJECT_BIN, "records is bin");
    const uint8_t *buf = (const uint8_t *)recs->via.bin.ptr;
    size_t n = recs->via.bin.size, pos = 0;
    *batches = *records = 0;
    while (pos < n) {
        size_t blen = 0;
        FT_ASSERT(ferry_batch_peek_length(buf + pos, n - pos, &blen) == 0 && blen <= n - pos && blen > 0,
                  "whole batches (at %zu of %zu)", pos, n);
        struct ferry_batch_header h;
        ferry_batch_header_decode(buf + pos, &h);
        (*batches)++;
        *records += h.record_count;
        pos += blen;
    }
    ft_resp_free(&resp);
    ft_req_free(&req);
    ft_raw_close(&c);
}

/* Serves reports until n have arrived (bounded). */
static void await_reports(ferry_client_t *p, const struct ft_deliveries *log, size_t n)
{
    int64_t deadline = ft_now_ms() + ft_ms(20000);
    while (log->n < n && ft_now_ms() < deadline)
        ferry_poll(p, 50);
    FT_ASSERT_EQ(log->n, n, "delivery reports");
}

/*
 * linger.ms=0: records that arrive one at a time while the partition's batch is in flight are not
 * sent as one tiny batch each; they fill the partition's open batch, which is sealed and sent as
 * one when the in-flight batch is answered.
 */
Test(batching, records_queued_behind_an_inflight_batch_share_the_next_batch)
{
    const char *topic = "accumulate";
    start(topic);
    const char *kv[] = {"linger.ms", "0", NULL};
    struct ft_deliveries log = {0};
    ferry_client_t *p = producer(kv, &log);
    produce(p, topic, "warm-up", 0);
    FT_ASSERT_ERR(ferry_flush(p, ft_ms(10000)), FERRY_ERR_NONE, "warm-up flush");

    pause_broker(1);
    produce(p, topic, "first", 1);
    ft_sleep_ms(100); /* "first" goes out alone and waits for its answer */
    enum { LATE = 9 };
    for (uintptr_t i = 0; i < LATE; i++) {
        char v[32];
        snprintf(v, sizeof(v), "late-%u", (unsigned)i);
        produce(p, topic, v, 2 + i);
        ft_sleep_ms(10); /* one at a time: each would make a service pass of its own */
    }
    pause_broker(0);
    FT_ASSERT_ERR(ferry_flush(p, ft_ms(20000)), FERRY_ERR_NONE, "flush");

    FT_ASSERT_EQ(log.n, 2 + LATE, "every record reported");
    FT_ASSERT_EQ(log.failed, 0, "no failures");
    for (size_t i = 0; i < log.n; i++) {
        FT_ASSERT_EQ((uintptr_t)log.v[i].opaque, i, "reports in produce order");
        FT_ASSERT_EQ(log.v[i].offset, (int64_t)i, "offsets in produce order");
    }
    size_t batches, records;
    count_stored(topic, &batches, &records);
    FT_ASSERT_EQ(records, 2 + LATE, "stored records");
    /* warm-up, "first", and the late records together (fewer if "first" had not gone out yet). */
    FT_ASSERT(batches <= 3, "%zu stored batches for %d records: the late records were not combined", batches,
              2 + LATE);
    ferry_client_destroy(p);
    ft_deliveries_free(&log);
    FT_ASSERT_EQ(ft_broker_stop(&B), 0, "clean stop");
}

/* Records held in the open batch behind an unanswered one still expire at delivery.timeout.ms. */
Test(batching, the_open_batch_expires_at_the_delivery_timeout)
{
    const char *topic = "expire";
    start(topic);
    const char *kv[] = {"linger.ms", "0", "delivery.timeout.ms", "800", NULL};
    struct ft_deliveries log = {0};
    ferry_client_t *p = producer(kv, &log);
    produce(p, topic, "warm-up", 0);
    FT_ASSERT_ERR(ferry_flush(p, ft_ms(10000)), FERRY_ERR_NONE, "warm-up flush");
    FT_ASSERT_EQ(log.n, 1, "warm-up report");

    pause_broker(1);
    produce(p, topic, "in-flight", 1);
    ft_sleep_ms(100);
    produce(p, topic, "held-1", 2);
    produce(p, topic, "held-2", 3);
    await_reports(p, &log, 3); /* the two held records fail; "in-flight" waits for its answer */
    for (size_t i = 1; i < 3; i++) {
        FT_ASSERT_EQ((uintptr_t)log.v[i].opaque, i + 1, "a held record");
        FT_ASSERT_ERR(log.v[i].err, FERRY_ERR__TIMED_OUT, "held record %zu", i);
    }
    pause_broker(0);
    await_reports(p, &log, 4);
    FT_ASSERT_EQ((uintptr_t)log.v[3].opaque, 1, "the in-flight record");
    FT_ASSERT_ERR(log.v[3].err, FERRY_ERR_NONE, "the in-flight record is acknowledged once the broker resumes");
    ferry_client_destroy(p);
    ft_deliveries_free(&log);
    FT_ASSERT_EQ(ft_broker_stop(&B), 0, "clean stop");
}
