/* test_client_conf.c: the client configuration table: unknown keys, bad values, defaults, dup, describe. */
#include <criterion/criterion.h>
#include <stdbool.h>
#include <string.h>

#include "ferry.h"

static char *get(const ferry_conf_t *c, const char *key)
{
    static char buf[256];
    size_t n = sizeof buf;
    cr_assert_eq(ferry_conf_get(c, key, buf, &n), FERRY_ERR_NONE, "get %s", key);
    return buf;
}

Test(client_conf, defaults)
{
    ferry_conf_t *c = ferry_conf_new();
    cr_assert_not_null(c);
    cr_expect_str_eq(get(c, "security.protocol"), "tls");
    cr_expect_str_eq(get(c, "acks"), "all");
    cr_expect_str_eq(get(c, "linger.ms"), "5");
    cr_expect_str_eq(get(c, "batch.size"), "1048576");
    cr_expect_str_eq(get(c, "compression.type"), "none");
    cr_expect_str_eq(get(c, "max.in.flight.requests.per.connection"), "5");
    cr_expect_str_eq(get(c, "queue.buffering.max.messages"), "100000");
    cr_expect_str_eq(get(c, "max.block.ms"), "60000");
    cr_expect_str_eq(get(c, "delivery.timeout.ms"), "120000");
    cr_expect_str_eq(get(c, "fetch.max.bytes"), "52428800");
    cr_expect_str_eq(get(c, "auto.offset.reset"), "earliest");
    cr_expect_str_eq(get(c, "ssl.endpoint.identification"), "https");
    cr_expect_str_eq(get(c, "bootstrap.servers"), "");
    ferry_conf_destroy(c);
}

Test(client_conf, unknown_key_is_named)
{
    ferry_conf_t *c = ferry_conf_new();
    char err[256] = "";
    cr_expect_eq(ferry_conf_set(c, "linger.mss", "5", err, sizeof err), FERRY_ERR__UNKNOWN_CONFIG);
    cr_expect(strstr(err, "linger.mss") != NULL, "message names the key: %s", err);
    size_t n = 0;
    cr_expect_eq(ferry_conf_get(c, "nope", NULL, &n), FERRY_ERR__UNKNOWN_CONFIG);
    ferry_conf_destroy(c);
}

Test(client_conf, bad_values_are_rejected_and_leave_the_conf_unchanged)
{
    static const char *const bad[][2] = {
        {"linger.ms", "abc"},          {"linger.ms", "-1"},         {"linger.ms", "5x"},
        {"linger.ms", ""},             {"batch.size", "8388609"},   {"batch.size", "99999999999999999999"},
        {"acks", "2"},                 {"acks", "ALL"},             {"security.protocol", "ssl"},
        {"compression.type", "gzip"},  {"auto.offset.reset", "smallest"},
        {"ssl.endpoint.identification", "yes"}, {"max.in.flight.requests.per.connection", "0"},
        {"fetch.max.wait.ms", "30001"},
    };
    ferry_conf_t *c = ferry_conf_new();
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char err[256] = "";
        char before[64];
        strcpy(before, get(c, bad[i][0]));
        cr_expect_eq(ferry_conf_set(c, bad[i][0], bad[i][1], err, sizeof err), FERRY_ERR__INVALID_CONFIG_VALUE,
                     "%s=%s accepted", bad[i][0], bad[i][1]);
        cr_expect(strncmp(err, bad[i][0], strlen(bad[i][0])) == 0, "message names the key: %s", err);
        cr_expect_str_eq(get(c, bad[i][0]), before);
    }
    ferry_conf_destroy(c);
}

Test(client_conf, good_values_round_trip)
{
    ferry_conf_t *c = ferry_conf_new();
    cr_assert_eq(ferry_conf_set(c, "acks", "1", NULL, 0), FERRY_ERR_NONE);
    cr_assert_eq(ferry_conf_set(c, "linger.ms", "0", NULL, 0), FERRY_ERR_NONE);
    cr_assert_eq(ferry_conf_set(c, "batch.size", "8388608", NULL, 0), FERRY_ERR_NONE);
    cr_assert_eq(ferry_conf_set(c, "compression.type", "zstd", NULL, 0), FERRY_ERR_NONE);
    cr_assert_eq(ferry_conf_set(c, "bootstrap.servers", "127.0.0.1:9700,[::1]:9701", NULL, 0), FERRY_ERR_NONE);
    cr_expect_str_eq(get(c, "acks"), "1");
    cr_expect_str_eq(get(c, "linger.ms"), "0");
    cr_expect_str_eq(get(c, "compression.type"), "zstd");
    cr_expect_str_eq(get(c, "bootstrap.servers"), "127.0.0.1:9700,[::1]:9701");

    ferry_conf_t *d = ferry_conf_dup(c);
    cr_assert_not_null(d);
    cr_assert_eq(ferry_conf_set(c, "acks", "0", NULL, 0), FERRY_ERR_NONE);
    cr_expect_str_eq(get(d, "acks"), "1", "the copy is independent");
    ferry_conf_destroy(c);
    ferry_conf_destroy(d);
}

Test(client_conf, get_reports_the_size_needed)
{
    ferry_conf_t *c = ferry_conf_new();
    size_t n = 0;
    cr_assert_eq(ferry_conf_get(c, "security.protocol", NULL, &n), FERRY_ERR_NONE);
    cr_expect_eq(n, 4);
    char small[2] = "x";
    n = sizeof small;
    cr_expect_eq(ferry_conf_get(c, "security.protocol", small, &n), FERRY_ERR__INVALID_ARG);
    cr_expect_eq(n, 4);
    cr_expect_str_eq(small, "x", "too small a buffer is left untouched");
    ferry_conf_destroy(c);
}

Test(client_conf, describe_lists_every_setting)
{
    size_t count = 0;
    const char *name, *type, *def, *range, *doc;
    bool saw_linger = false;
    while ((name = ferry_conf_describe(count, &type, &def, &range, &doc)) != NULL) {
        cr_expect(doc[0] != '\0', "%s has documentation", name);
        ferry_conf_t *c = ferry_conf_new();
        size_t n = 0;
        cr_expect_eq(ferry_conf_get(c, name, NULL, &n), FERRY_ERR_NONE, "%s is gettable", name);
        ferry_conf_destroy(c);
        if (strcmp(name, "linger.ms") == 0) {
            saw_linger = true;
            cr_expect_str_eq(type, "int");
            cr_expect_str_eq(def, "5");
            cr_expect_str_eq(range, "[0, 900000]");
        }
        count++;
    }
    cr_expect(saw_linger);
    cr_expect_geq(count, 25);
}

Test(client_conf, client_new_rejects_incomplete_configs)
{
    char err[256];
    /* conf is consumed even on failure (ASan would report a leak otherwise). */
    ferry_conf_t *c = ferry_conf_new();
    cr_expect_null(ferry_client_new(FERRY_PRODUCER, c, err, sizeof err));
    cr_expect(strstr(err, "bootstrap.servers") != NULL, "%s", err);

    c = ferry_conf_new();
    ferry_conf_set(c, "bootstrap.servers", "127.0.0.1:9700", NULL, 0);
    cr_expect_null(ferry_client_new(FERRY_PRODUCER, c, err, sizeof err));
    cr_expect(strstr(err, "ssl.ca.location") != NULL, "TLS needs a CA: %s", err);

    c = ferry_conf_new();
    ferry_conf_set(c, "bootstrap.servers", "127.0.0.1", NULL, 0);
    ferry_conf_set(c, "security.protocol", "plaintext", NULL, 0);
    cr_expect_null(ferry_client_new(FERRY_CONSUMER, c, err, sizeof err));
    cr_expect(strstr(err, "host:port") != NULL, "%s", err);

    c = ferry_conf_new();
    ferry_conf_set(c, "bootstrap.servers", "127.0.0.1:9700", NULL, 0);
    ferry_conf_set(c, "security.protocol", "tls", NULL, 0);
    ferry_conf_set(c, "ssl.ca.location", "/nonexistent/ca.pem", NULL, 0);
    cr_expect_null(ferry_client_new(FERRY_ADMIN, c, err, sizeof err));
    cr_expect(strstr(err, "TLS") != NULL, "%s", err);
}

Test(client_conf, client_starts_and_stops_without_a_broker)
{
    char err[256];
    ferry_conf_t *c = ferry_conf_new();
    ferry_conf_set(c, "bootstrap.servers", "127.0.0.1:1", NULL, 0);
    ferry_conf_set(c, "security.protocol", "plaintext", NULL, 0);
    ferry_client_t *cl = ferry_client_new(FERRY_ADMIN, c, err, sizeof err);
    cr_assert_not_null(cl, "%s", err);
    cr_expect_eq(ferry_client_type(cl), FERRY_ADMIN);
    ferry_metadata_t *md = NULL;
    cr_expect_eq(ferry_admin_describe_cluster(cl, NULL, 0, &md, 300, err, sizeof err), FERRY_ERR__TIMED_OUT);
    cr_expect_null(md);
    cr_expect_eq(ferry_produce(cl, &(ferry_record_t){.topic = "t"}, 0), FERRY_ERR__WRONG_CLIENT_TYPE);
    cr_expect_eq(ferry_client_close(cl, 1000), FERRY_ERR_NONE);
    ferry_client_destroy(cl);
}

Test(client_conf, error_table_accessors)
{
    cr_expect_str_eq(ferry_err_name(FERRY_ERR_NOT_LEADER), "NOT_LEADER");
    cr_expect_str_eq(ferry_err_name(FERRY_ERR__TIMED_OUT), "_TIMED_OUT");
    cr_expect_str_eq(ferry_err_name((ferry_err_t)12345), "?");
    cr_expect(ferry_err_is_retriable(FERRY_ERR_NOT_LEADER));
    cr_expect(!ferry_err_is_retriable(FERRY_ERR_TOPIC_ALREADY_EXISTS));
    cr_expect_str_eq(ferry_err_str(FERRY_ERR_NONE), "success");
}
