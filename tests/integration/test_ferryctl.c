/* test_ferryctl.c: build/ferryctl as a subprocess against a real ferryd: topics, produce, consume, exit codes. */
#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "ferrytest.h"

#define RUN_TIMEOUT_MS 30000

static struct ft_broker B;
static char E[FT_ERRMSG];
static char cfgdir[256];

static void teardown(void)
{
    ft_broker_destroy(&B);
    if (cfgdir[0])
        ft_rmrf(cfgdir);
}

TestSuite(ferryctl, .fini = teardown, .timeout = 180);

static void start(void)
{
    ft_seed_reset();
    FT_ASSERT(ft_broker_start(&B, NULL, E, sizeof(E)) == 0, "%s", E);
    /* Profiles of the user running the tests must not leak in (nor be touched). */
    FT_ASSERT(ft_tmpdir_make("ctlcfg", cfgdir, sizeof(cfgdir), E, sizeof(E)) == 0, "%s", E);
}

/*
 * Runs ferryctl with the broker's --brokers/--ca, then the given args (NULL-terminated), feeding
 * stdin_text. connect = 0 leaves out --brokers/--ca (for tests that give their own).
 */
static struct ft_proc_result ctl_in(const char *stdin_text, int connect, ...)
{
    char ferryctl[600], ca[400];
    snprintf(ferryctl, sizeof(ferryctl), "%s/ferryctl", ft_build_dir());
    ft_cert("ca.crt", ca, sizeof(ca));
    char *argv[64];
    int n = 0;
    argv[n++] = ferryctl;
    if (connect) {
        argv[n++] = "--brokers";
        argv[n++] = B.addr;
        argv[n++] = "--ca";
        argv[n++] = ca;
    }
    va_list ap;
    va_start(ap, connect);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL && n < 63)
        argv[n++] = (char *)a;
    va_end(ap);
    argv[n] = NULL;
    char envdir[300];
    snprintf(envdir, sizeof(envdir), "FERRYCTL_CONFIG_DIR=%s", cfgdir);
    /* Clear the connection variables a developer may have exported. */
    const char *env[] = {envdir, "FERRY_BROKERS=", "FERRYCTL_BROKERS=", "FERRYCTL_CA=", "FERRYCTL_FORMAT=",
                         "FERRYCTL_PROFILE=", "FERRYCTL_TIMEOUT=", NULL};
    struct ft_proc_result r;
    int rc = ft_run(argv, env, stdin_text, stdin_text ? strlen(stdin_text) : 0, RUN_TIMEOUT_MS, &r, E, sizeof(E));
    FT_ASSERT(rc == 0, "running ferryctl: %s", E);
    if (r.exit_code == -1)
        fprintf(stderr, "ferryctl timed out; stderr:\n%s\n", r.err);
    return r;
}

#define CTL(...) ctl_in(NULL, 1, __VA_ARGS__, NULL)
#define CTL_STDIN(text, ...) ctl_in(text, 1, __VA_ARGS__, NULL)
#define CTL_RAW(...) ctl_in(NULL, 0, __VA_ARGS__, NULL)

static void expect_exit(struct ft_proc_result *r, int code, const char *what)
{
    if (r->exit_code != code)
        fprintf(stderr, "---- ferryctl (%s) stdout ----\n%s---- stderr ----\n%s----\n", what, r->out, r->err);
    FT_ASSERT_EQ(r->exit_code, code, "ferryctl %s: exit code", what);
}

/* ---- a minimal reader for the flat fields of one JSON line ---- */

/*
 * Finds "key": in json (the first occurrence at or after from) and copies its scalar value: a string
 * (unescaped; \uXXXX below 0x80 only), or the raw token (number, true, false, null). Returns a pointer
 * just after the value, or NULL if the key is absent. *is_null set for null.
 */
static const char *json_field(const char *json, const char *key, char *out, size_t out_len, int *is_null)
{
    char pat[96];
    snprintf(pat, sizeof(pat), "\"%s\":", key);
    const char *p = strstr(json, pat);
    if (!p)
        return NULL;
    p += strlen(pat);
    while (*p == ' ')
        p++;
    size_t n = 0;
    if (is_null)
        *is_null = strncmp(p, "null", 4) == 0;
    if (*p == '"') {
        p++;
        while (*p && *p != '"') {
            char c = *p++;
            if (c == '\\') {
                c = *p++;
                switch (c) {
                case 'n':
                    c = '\n';
                    break;
                case 't':
                    c = '\t';
                    break;
                case 'r':
                    c = '\r';
                    break;
                case 'u': {
                    char hex[5] = {0};
                    memcpy(hex, p, 4);
                    p += 4;
                    c = (char)strtol(hex, NULL, 16);
                    break;
                }
                default:
                    break; /* \" \\ \/ */
                }
            }
            if (n + 1 < out_len)
                out[n++] = c;
        }
        if (*p == '"')
            p++;
    } else {
        while (*p && *p != ',' && *p != '}' && *p != ']' && *p != ' ') {
            if (n + 1 < out_len)
                out[n++] = *p;
            p++;
        }
    }
    out[n] = '\0';
    return p;
}

static long long json_int(const char *json, const char *key)
{
    char v[64];
    FT_ASSERT(json_field(json, key, v, sizeof(v), NULL) != NULL, "field %s in %s", key, json);
    return strtoll(v, NULL, 10);
}

static void json_str(const char *json, const char *key, char *out, size_t out_len)
{
    int is_null = 0;
    FT_ASSERT(json_field(json, key, out, out_len, &is_null) != NULL, "field %s in %s", key, json);
    FT_ASSERT(!is_null, "field %s is null in %s", key, json);
}

/* Splits out into lines in place; returns the count (at most max). */
static size_t lines_of(char *out, char **lines, size_t max)
{
    size_t n = 0;
    for (char *save = NULL, *l = strtok_r(out, "\n", &save); l && n < max; l = strtok_r(NULL, "\n", &save))
        lines[n++] = l;
    return n;
}

/* ---- tests ---- */

Test(ferryctl, topic_create_list_describe_delete)
{
    start();
    struct ft_proc_result r = CTL("topic", "create", "orders", "--partitions", "3", "-c", "retention.ms=86400000",
                                  "--format", "json");
    expect_exit(&r, 0, "topic create");
    FT_ASSERT(strstr(r.out, "\"schema\":\"ferry.cli/v1\"") && strstr(r.out, "\"created\":true"), "create output: %s",
              r.out);
    ft_proc_result_free(&r);

    r = CTL("topic", "create", "orders", "--partitions", "3", "--format", "json");
    expect_exit(&r, 1, "topic create of an existing topic");
    FT_ASSERT(strstr(r.out, "TOPIC_ALREADY_EXISTS") != NULL, "error named in: %s", r.out);
    ft_proc_result_free(&r);
    r = CTL("topic", "create", "orders", "--if-not-exists");
    expect_exit(&r, 0, "topic create --if-not-exists");
    ft_proc_result_free(&r);
    r = CTL("topic", "create", "audit");
    expect_exit(&r, 0, "topic create audit (text)");
    ft_proc_result_free(&r);

    r = CTL("topic", "list", "--format", "json");
    expect_exit(&r, 0, "topic list");
    const char *o = strstr(r.out, "\"name\":\"orders\"");
    FT_ASSERT(o != NULL, "orders listed: %s", r.out);
    FT_ASSERT_EQ(json_int(o, "partitions"), 3, "orders partitions");
    const char *a = strstr(r.out, "\"name\":\"audit\"");
    FT_ASSERT(a != NULL && a < o, "audit listed before orders (sorted): %s", r.out);
    ft_proc_result_free(&r);

    r = CTL("topic", "describe", "orders", "--format", "json");
    expect_exit(&r, 0, "topic describe");
    FT_ASSERT_EQ(json_int(r.out, "partition_count"), 3, "partition_count");
    char v[64];
    json_str(r.out, "retention.ms", v, sizeof(v));
    FT_ASSERT(strcmp(v, "86400000") == 0, "retention.ms = %s", v);
    FT_ASSERT_EQ(json_int(r.out, "log_end_offset"), 0, "empty partitions");
    ft_proc_result_free(&r);

    r = CTL("topic", "delete", "orders");
    expect_exit(&r, 2, "topic delete without --yes");
    ft_proc_result_free(&r);
    r = CTL("topic", "describe", "orders");
    expect_exit(&r, 0, "orders still there after a delete without --yes");
    ft_proc_result_free(&r);
    r = CTL("topic", "delete", "orders", "--yes", "--format", "json");
    expect_exit(&r, 0, "topic delete --yes");
    FT_ASSERT(strstr(r.out, "\"deleted\":true") != NULL, "delete output: %s", r.out);
    ft_proc_result_free(&r);

    r = CTL("topic", "list", "--format", "json");
    expect_exit(&r, 0, "topic list");
    FT_ASSERT(strstr(r.out, "\"orders\"") == NULL && strstr(r.out, "\"audit\"") != NULL, "after delete: %s", r.out);
    ft_proc_result_free(&r);

    r = CTL("topic", "describe", "orders", "--format", "json");
    expect_exit(&r, 1, "describe a deleted topic");
    FT_ASSERT(strstr(r.out, "UNKNOWN_TOPIC_OR_PARTITION") != NULL, "error: %s", r.out);
    ft_proc_result_free(&r);
    FT_ASSERT_EQ(ft_broker_stop(&B), 0, "clean stop");
}

Test(ferryctl, produce_from_stdin_and_consume_json)
{
    start();
    struct ft_proc_result r = CTL("topic", "create", "ev", "--partitions", "1");
    expect_exit(&r, 0, "topic create");
    ft_proc_result_free(&r);

    const char *input = "k1\tvalue one\n"
                        "k2\t{\"x\": \"q\\\"uote\"}\n"
                        "no key here\n"
                        "\n"
                        "k5\ttab\tinside\n";
    r = CTL_STDIN(input, "produce", "ev", "--key-sep", "\t", "-H", "event-type=Test", "-H", "src=ferryctl",
                  "--format", "json");
    expect_exit(&r, 0, "produce");
    char *lines[32];
    size_t nl = lines_of(r.out, lines, 32);
    FT_ASSERT_EQ(nl, 6, "5 delivery lines and a summary");
    for (size_t i = 0; i < 5; i++) {
        FT_ASSERT(strstr(lines[i], "\"type\":\"delivery\"") && strstr(lines[i], "\"ok\":true"), "delivery: %s",
                  lines[i]);
        FT_ASSERT_EQ(json_int(lines[i], "partition"), 0, "partition");
        /* One partition, one producer: delivery order is line order. */
        FT_ASSERT_EQ(json_int(lines[i], "offset"), (long long)i, "offset of line %zu", i + 1);
        FT_ASSERT_EQ(json_int(lines[i], "line"), (long long)i + 1, "line number");
    }
    FT_ASSERT(strstr(lines[5], "\"type\":\"summary\""), "summary: %s", lines[5]);
    FT_ASSERT_EQ(json_int(lines[5], "delivered"), 5, "delivered");
    FT_ASSERT_EQ(json_int(lines[5], "failed"), 0, "failed");
    ft_proc_result_free(&r);

    r = CTL("consume", "ev", "--from", "start", "-n", "5", "--format", "json");
    expect_exit(&r, 0, "consume");
    nl = lines_of(r.out, lines, 32);
    FT_ASSERT_EQ(nl, 5, "5 records");
    static const char *keys[] = {"k1", "k2", NULL, "", "k5"};
    static const char *values[] = {"value one", "{\"x\": \"q\\\"uote\"}", "no key here", "", "tab\tinside"};
    for (size_t i = 0; i < 5; i++) {
        char k[128], v[128];
        int knull = 0;
        FT_ASSERT_EQ(json_int(lines[i], "offset"), (long long)i, "offset");
        FT_ASSERT(strstr(lines[i], "\"encoding\"") == NULL, "text records are not base64: %s", lines[i]);
        FT_ASSERT(json_field(lines[i], "key", k, sizeof(k), &knull) != NULL, "key field: %s", lines[i]);
        if (i == 2 || i == 3) {
            /* A line without the separator has no key (the empty line included). */
            FT_ASSERT(knull, "record %zu: null key, got '%s'", i, k);
        } else {
            FT_ASSERT(!knull && strcmp(k, keys[i]) == 0, "record %zu key '%s'", i, k);
        }
        json_str(lines[i], "value", v, sizeof(v));
        FT_ASSERT(strcmp(v, values[i]) == 0, "record %zu value '%s', want '%s'", i, v, values[i]);
        char h[64];
        json_str(lines[i], "event-type", h, sizeof(h));
        FT_ASSERT(strcmp(h, "Test") == 0, "header event-type: %s", h);
        json_str(lines[i], "src", h, sizeof(h));
        FT_ASSERT(strcmp(h, "ferryctl") == 0, "header src: %s", h);
    }
    ft_proc_result_free(&r);

    /* From an offset, with a text template. */
    r = CTL("consume", "ev", "--from", "3", "-n", "2", "--print", "%p/%o %k=%v");
    expect_exit(&r, 0, "consume --from 3");
    FT_ASSERT(strcmp(r.out, "0/3 =\n0/4 k5=tab\tinside\n") == 0, "template output: '%s'", r.out);
    ft_proc_result_free(&r);

    /* Fewer records than -n: the idle timeout ends it. */
    r = CTL("consume", "ev", "--from", "4", "-n", "10", "--timeout", "1500", "--format", "json");
    FT_ASSERT(r.exit_code == 0, "consume with an idle timeout: exit %d: %s", r.exit_code, r.err);
    nl = lines_of(r.out, lines, 32);
    FT_ASSERT_EQ(nl, 1, "one record from offset 4");
    ft_proc_result_free(&r);

    /* The records are also what a libferry consumer sees. */
    ferry_message_t *m[5];
    FT_ASSERT(ft_consume(&B, "ev", 0, 0, 5, m, NULL, 20000, E, sizeof(E)) == 0, "%s", E);
    size_t vl;
    const char *val = ferry_message_value(m[0], &vl);
    FT_ASSERT(vl == 9 && memcmp(val, "value one", 9) == 0, "libferry sees value one");
    FT_ASSERT_EQ(ferry_message_header_count(m[0]), 2, "two headers");
    for (int i = 0; i < 5; i++)
        ferry_message_destroy(m[i]);
    FT_ASSERT_EQ(ft_broker_stop(&B), 0, "clean stop");
}

Test(ferryctl, usage_errors_exit_2)
{
    start();
    struct ft_proc_result r;
    r = CTL("topic", "create", "x", "--bogus-flag");
    expect_exit(&r, 2, "unknown flag");
    FT_ASSERT(r.err_len > 0, "a message on stderr");
    ft_proc_result_free(&r);
    r = CTL("topic", "create");
    expect_exit(&r, 2, "missing topic name");
    ft_proc_result_free(&r);
    r = CTL("topic", "create", "x", "--partitions", "abc");
    expect_exit(&r, 2, "non-numeric partitions");
    ft_proc_result_free(&r);
    r = CTL("frobnicate");
    expect_exit(&r, 2, "unknown command");
    ft_proc_result_free(&r);
    r = CTL("consume");
    expect_exit(&r, 2, "consume without a topic");
    ft_proc_result_free(&r);
    r = CTL("consume", "x", "-n", "-3");
    expect_exit(&r, 2, "negative count");
    ft_proc_result_free(&r);
    r = CTL("topic", "list", "--format", "yaml");
    expect_exit(&r, 2, "unknown format");
    ft_proc_result_free(&r);
    r = CTL("produce", "x", "-X", "linger.ms=notanumber");
    expect_exit(&r, 2, "bad -X value");
    ft_proc_result_free(&r);
    /* Nothing was created by any of them. */
    r = CTL("topic", "list", "--format", "json");
    expect_exit(&r, 0, "topic list");
    FT_ASSERT(strstr(r.out, "\"x\"") == NULL, "no topic x: %s", r.out);
    ft_proc_result_free(&r);
    FT_ASSERT_EQ(ft_broker_stop(&B), 0, "clean stop");
}

Test(ferryctl, failed_operations_exit_1)
{
    start();
    struct ft_proc_result r;
    r = CTL("topic", "describe", "missing", "--format", "json");
    expect_exit(&r, 1, "describe a missing topic");
    FT_ASSERT(strstr(r.out, "\"ok\":false"), "json failure: %s", r.out);
    ft_proc_result_free(&r);

    r = CTL("topic", "delete", "missing", "--yes");
    expect_exit(&r, 1, "delete a missing topic");
    ft_proc_result_free(&r);

    r = CTL_STDIN("a\nb\n", "produce", "missing", "--timeout", "3000", "-X", "delivery.timeout.ms=2000");
    expect_exit(&r, 1, "produce to a missing topic");
    ft_proc_result_free(&r);

    /* Nobody listens there (a port of our own broker, stopped below, would do too). */
    r = CTL_RAW("--brokers", "127.0.0.1:1", "--plaintext", "--timeout", "2000", "topic", "list");
    expect_exit(&r, 1, "unreachable broker");
    ft_proc_result_free(&r);

    /* A CA that does not sign the broker. */
    char other[400];
    r = CTL_RAW("--brokers", B.addr, "--ca", ft_cert("other-ca.crt", other, sizeof(other)), "--timeout", "2000",
                "topic", "list");
    expect_exit(&r, 1, "untrusted broker certificate");
    ft_proc_result_free(&r);

    r = CTL_RAW("--brokers", B.addr, "--ca", "/nonexistent/ca.crt", "topic", "list");
    FT_ASSERT(r.exit_code == 1 || r.exit_code == 2, "a CA file that does not exist: exit %d", r.exit_code);
    ft_proc_result_free(&r);
    FT_ASSERT_EQ(ft_broker_stop(&B), 0, "clean stop");
}
