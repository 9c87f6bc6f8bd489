/* test_idempotence.c: lost Produce acks (a proxy drops them) are retried and stored exactly once, also across restarts. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferrytest.h"

/* IDEM_DEBUG=1 prints libferry's log and every misplaced record or report (post-mortems). */

#define TIMEOUT_MS 30000
#define TOPIC "idem"

static struct ft_broker B;
static struct ft_proxy *P;
static char E[FT_ERRMSG];
static char PADDR[64];

static void teardown(void)
{
    ft_proxy_stop(P);
    P = NULL;
    ft_broker_destroy(&B);
}

TestSuite(idempotence, .fini = teardown, .timeout = 240);

/* A plaintext broker reachable by clients only through the proxy (it advertises the proxy). */
static void start(void)
{
    char extra[128];
    ft_seed_reset();
    FT_ASSERT(ft_proxy_start(&P, 0, E, sizeof(E)) == 0, "%s", E);
    snprintf(PADDR, sizeof(PADDR), "127.0.0.1:%d", ft_proxy_port(P));
    snprintf(extra, sizeof(extra), "advertised.listen = %s\n", PADDR);
    struct ft_broker_opts o = {.security = FT_PLAINTEXT, .extra = extra};
    FT_ASSERT(ft_broker_start(&B, &o, E, sizeof(E)) == 0, "%s", E);
    ft_proxy_set_upstream(P, B.port);

    ferry_client_t *a = ft_client(&B, FERRY_ADMIN, NULL, E, sizeof(E));
    FT_ASSERT(a != NULL, "%s", E);
    ferry_err_t e = ferry_admin_create_topic(a, TOPIC, 1, -1, NULL, NULL, 0, ft_ms(TIMEOUT_MS), E, sizeof(E));
    FT_ASSERT_ERR(e, FERRY_ERR_NONE, "create: %s", E);
    ferry_client_destroy(a);
}

static void dbg_log(const ferry_client_t *client, int level, const char *msg, void *opaque)
{
    (void)client;
    (void)opaque;
    fprintf(stderr, "libferry[%d]: %s\n", level, msg);
}

static ferry_client_t *producer(const char *idempotence, struct ft_deliveries *log)
{
    const char *kv[] = {"bootstrap.servers", PADDR, "enable.idempotence", idempotence, "linger.ms", "0",
                        "batch.size", "1024", "retry.backoff.ms", "50", NULL};
    ferry_conf_t *c = ft_conf(&B, kv, E, sizeof(E));
    FT_ASSERT(c != NULL, "%s", E);
    ft_conf_record_deliveries(c, log);
    if (getenv("IDEM_DEBUG"))
        ferry_conf_set_log_cb(c, dbg_log);
    char err[256];
    ferry_client_t *p = ferry_client_new(FERRY_PRODUCER, c, err, sizeof(err));
    FT_ASSERT(p != NULL, "%s", err);
    return p;
}

/* Produces records [from, to) of partition 0, values "rec-<i>" of ~100 bytes (several per batch). */
static void produce_range(ferry_client_t *p, int from, int to)
{
    char v[128];
    for (int i = from; i < to; i++) {
        int n = snprintf(v, sizeof(v), "rec-%06d-%090d", i, 0);
        ferry_record_t r = {.topic = TOPIC, .partition = 0, .value = v, .value_len = (size_t)n,
                            .opaque = (void *)(intptr_t)i};
        FT_ASSERT_ERR(ferry_produce(p, &r, 0), FERRY_ERR_NONE, "record %d", i);
    }
}

static int64_t log_end(void)
{
    int64_t end = -1;
    ferry_client_t *a = ft_client(&B, FERRY_ADMIN, NULL, E, sizeof(E));
    FT_ASSERT(a != NULL, "%s", E);
    ferry_err_t e = ferry_admin_list_offsets(a, TOPIC, 0, FERRY_TIMESTAMP_LATEST, &end, ft_ms(TIMEOUT_MS), E,
                                             sizeof(E));
    FT_ASSERT_ERR(e, FERRY_ERR_NONE, "list offsets: %s", E);
    ferry_client_destroy(a);
    return end;
}

/* Reads n records from offset 0; returns how many hold "rec-<i>" at offset i. */
static int count_in_order(int n)
{
    ferry_message_t **m = calloc((size_t)n, sizeof(*m));
    FT_ASSERT(m != NULL, "oom");
    FT_ASSERT(ft_consume(&B, TOPIC, 0, 0, (size_t)n, m, NULL, TIMEOUT_MS, E, sizeof(E)) == 0, "%s", E);
    int ok = 0;
    for (int i = 0; i < n; i++) {
        char want[16];
        size_t len;
        const char *v = ferry_message_value(m[i], &len);
        snprintf(want, sizeof(want), "rec-%06d", i);
        if (v != NULL && len >= 10 && memcmp(v, want, 10) == 0 && ferry_message_offset(m[i]) == i)
            ok++;
        else if (getenv("IDEM_DEBUG"))
            fprintf(stderr, "offset %lld: %.10s\n", (long long)ferry_message_offset(m[i]), v ? v : "(null)");
        ferry_message_destroy(m[i]);
    }
    free(m);
    return ok;
}

static void wait_for_drop(void)
{
    int64_t deadline = ft_now_ms() + ft_ms(TIMEOUT_MS);
    while (ft_proxy_dropped(P) < 1 && ft_now_ms() < deadline)
        ft_sleep_ms(10);
    FT_ASSERT_EQ(ft_proxy_dropped(P), 1, "a produce acknowledgement was dropped");
}

/* Every record delivered without error, record i at offset i (the delivery report of a retried
 * duplicate carries the original offset). */
static void check_deliveries(const struct ft_deliveries *log, int n)
{
    FT_ASSERT_EQ(log->n, n, "every record reported");
    FT_ASSERT_EQ(log->failed, 0, "no delivery failed");
    for (size_t k = 0; k < log->n; k++) {
        intptr_t i = (intptr_t)log->v[k].opaque;
        if (getenv("IDEM_DEBUG") && log->v[k].offset != i)
            fprintf(stderr, "report %zu: record %d at %lld\n", k, (int)i, (long long)log->v[k].offset);
        FT_ASSERT_EQ(log->v[k].offset, i, "record %d delivered at its offset", (int)i);
    }
}

enum restart { NO_RESTART, RESTART_SIGTERM, RESTART_KILL9 };

static void lost_ack_scenario(enum restart how)
{
    const int N = 400;
    struct ft_deliveries log = {0};
    start();
    ferry_client_t *p = producer("true", &log);
    produce_range(p, 0, 100);
    FT_ASSERT_ERR(ferry_flush(p, ft_ms(TIMEOUT_MS)), FERRY_ERR_NONE, "flush before the fault");
    ft_proxy_drop_produce_responses(P, 1, how != NO_RESTART);
    produce_range(p, 100, N);
    if (how != NO_RESTART) {
        wait_for_drop();
        if (how == RESTART_SIGTERM)
            FT_ASSERT_EQ(ft_broker_stop(&B), 0, "ferryd exits 0 on SIGTERM");
        else
            FT_ASSERT_EQ(ft_broker_kill(&B), 0, "kill -9");
        FT_ASSERT(ft_broker_restart(&B, E, sizeof(E)) == 0, "%s", E);
        ft_proxy_set_upstream(P, B.port);
        ft_proxy_set_reject(P, 0);
    }
    FT_ASSERT_ERR(ferry_flush(p, ft_ms(TIMEOUT_MS)), FERRY_ERR_NONE, "flush after the fault");
    ferry_poll(p, 0);
    FT_ASSERT_EQ(ft_proxy_dropped(P), 1, "the acknowledgement of a written batch was lost");
    if (getenv("IDEM_DEBUG"))
        fprintf(stderr, "log end %lld, in order %d\n", (long long)log_end(), count_in_order(N));
    check_deliveries(&log, N);
    FT_ASSERT_EQ(log_end(), N, "no record stored twice");
    FT_ASSERT_EQ(count_in_order(N), N, "every record once, in order");
    ferry_client_destroy(p);
    ft_deliveries_free(&log);
}

Test(idempotence, lost_ack_is_retried_and_stored_once)
{
    lost_ack_scenario(NO_RESTART);
}

Test(idempotence, lost_ack_then_sigterm_restart_before_the_retry)
{
    lost_ack_scenario(RESTART_SIGTERM);
}

Test(idempotence, lost_ack_then_kill9_restart_before_the_retry)
{
    lost_ack_scenario(RESTART_KILL9);
}

/* Negative control: the same fault without idempotence stores the unacknowledged batch twice. */
Test(idempotence, without_idempotence_a_lost_ack_duplicates)
{
    const int N = 200;
    struct ft_deliveries log = {0};
    start();
    ferry_client_t *p = producer("false", &log);
    produce_range(p, 0, 50);
    FT_ASSERT_ERR(ferry_flush(p, ft_ms(TIMEOUT_MS)), FERRY_ERR_NONE, "flush before the fault");
    ft_proxy_drop_produce_responses(P, 1, 0);
    produce_range(p, 50, N);
    FT_ASSERT_ERR(ferry_flush(p, ft_ms(TIMEOUT_MS)), FERRY_ERR_NONE, "flush after the fault");
    ferry_poll(p, 0);
    FT_ASSERT_EQ(ft_proxy_dropped(P), 1, "the acknowledgement of a written batch was lost");
    FT_ASSERT_EQ(log.n, N, "every record reported");
    FT_ASSERT_EQ(log.failed, 0, "no delivery failed");
    int64_t end = log_end();
    FT_ASSERT(end > N, "the retried batch was stored again: log end %lld, %d records produced", (long long)end, N);
    FT_ASSERT(count_in_order((int)end) < (int)end, "some record is out of place (a duplicate)");
    ferry_client_destroy(p);
    ft_deliveries_free(&log);
}

/* enable.idempotence=true with acks other than all is refused at creation, with a clear message. */
Test(idempotence, explicit_idempotence_requires_acks_all)
{
    const char *acks[] = {"1", "0"};
    for (int i = 0; i < 2; i++) {
        ferry_conf_t *c = ferry_conf_new();
        char err[256] = "";
        cr_assert_eq(ferry_conf_set(c, "bootstrap.servers", "127.0.0.1:1", NULL, 0), FERRY_ERR_NONE);
        cr_assert_eq(ferry_conf_set(c, "security.protocol", "plaintext", NULL, 0), FERRY_ERR_NONE);
        cr_assert_eq(ferry_conf_set(c, "acks", acks[i], NULL, 0), FERRY_ERR_NONE);
        ferry_conf_t *d = ferry_conf_dup(c);
        cr_assert_eq(ferry_conf_set(c, "enable.idempotence", "true", NULL, 0), FERRY_ERR_NONE);
        ferry_client_t *p = ferry_client_new(FERRY_PRODUCER, c, err, sizeof(err));
        cr_assert_null(p, "acks=%s with enable.idempotence=true must be refused", acks[i]);
        cr_assert(strstr(err, "enable.idempotence") != NULL && strstr(err, "acks") != NULL, "message: %s", err);
        /* Left at its default, idempotence gives way to acks 0/1. */
        p = ferry_client_new(FERRY_PRODUCER, d, err, sizeof(err));
        cr_assert_not_null(p, "%s", err);
        ferry_client_destroy(p);
    }
}
