/* produce_consume.c: libferry example: create a topic, produce keyed records, read them back. */
/*
 * Usage: produce_consume [bootstrap] [topic] [count]
 * Connection settings come from the environment:
 *   FERRY_BROKERS   host:port list (default 127.0.0.1:9700, or the first argument)
 *   FERRY_CA        CA file for TLS; if unset the example connects in plaintext
 *   FERRY_DEBUG     set to print libferry's connection logs to stderr
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry.h"

/* Called from libferry's I/O thread: keep it short and thread-safe. */
static void on_log(const ferry_client_t *client, int level, const char *msg, void *opaque)
{
    (void)client;
    (void)opaque;
    fprintf(stderr, "libferry[%d]: %s\n", level, msg);
}

static ferry_conf_t *make_conf(const char *brokers)
{
    char err[256];
    ferry_conf_t *conf = ferry_conf_new();
    const char *ca = getenv("FERRY_CA");
    if (ferry_conf_set(conf, "bootstrap.servers", brokers, err, sizeof err) != FERRY_ERR_NONE ||
        ferry_conf_set(conf, "security.protocol", ca ? "tls" : "plaintext", err, sizeof err) != FERRY_ERR_NONE ||
        (ca && ferry_conf_set(conf, "ssl.ca.location", ca, err, sizeof err) != FERRY_ERR_NONE) ||
        ferry_conf_set(conf, "client.id", "produce_consume", err, sizeof err) != FERRY_ERR_NONE) {
        fprintf(stderr, "config: %s\n", err);
        ferry_conf_destroy(conf);
        return NULL;
    }
    if (getenv("FERRY_DEBUG") != NULL)
        ferry_conf_set_log_cb(conf, on_log);
    return conf;
}

/* Runs inside ferry_poll / ferry_flush on the application's thread, once per record. */
static void on_delivery(ferry_client_t *client, const ferry_delivery_t *d, void *opaque)
{
    (void)client;
    int *failures = opaque;
    if (d->err != FERRY_ERR_NONE) {
        if (++*failures > 3)
            return; /* the first few say enough */
        fprintf(stderr, "delivery of record %" PRIuPTR " failed: %s (%s)\n", (uintptr_t)d->opaque,
                ferry_err_name(d->err), d->error_message ? d->error_message : ferry_err_str(d->err));
    }
}

static int produce(const char *brokers, const char *topic, int count)
{
    char err[256];
    int failures = 0;
    ferry_conf_t *conf = make_conf(brokers);
    if (conf == NULL)
        return -1;
    ferry_conf_set_delivery_cb(conf, on_delivery);
    ferry_conf_set_opaque(conf, &failures);
    ferry_client_t *p = ferry_client_new(FERRY_PRODUCER, conf, err, sizeof err); /* takes conf */
    if (p == NULL) {
        fprintf(stderr, "producer: %s\n", err);
        return -1;
    }

    for (int i = 0; i < count; i++) {
        char key[32], value[64];
        snprintf(key, sizeof key, "customer-%d", i % 5);
        int vlen = snprintf(value, sizeof value, "{\"order\": %d, \"total\": %d}", i, 10 * i);
        ferry_header_t hdr = {.name = "event-type", .value = "OrderPlaced", .value_len = 11};
        ferry_record_t rec = {
            .topic = topic,
            .partition = FERRY_PARTITION_ANY, /* keyed: murmur2(key) picks the partition */
            .key = key,
            .key_len = strlen(key),
            .value = value,
            .value_len = (size_t)vlen,
            .headers = &hdr,
            .header_count = 1,
            .opaque = (void *)(uintptr_t)i,
        };
        ferry_err_t e = ferry_produce(p, &rec, 0); /* copies the record; blocks if the queue is full */
        if (e != FERRY_ERR_NONE) {
            fprintf(stderr, "produce: %s\n", ferry_err_str(e));
            failures++;
        }
        ferry_poll(p, 0); /* serve delivery reports as we go */
    }

    ferry_err_t e = ferry_flush(p, 10000);
    if (e != FERRY_ERR_NONE)
        fprintf(stderr, "flush: %s, %zu records outstanding\n", ferry_err_str(e), ferry_outq_len(p));
    ferry_client_close(p, 5000);
    ferry_client_destroy(p);
    printf("produced %d records, %d failed\n", count, failures);
    return failures == 0 && e == FERRY_ERR_NONE ? 0 : -1;
}

static int consume(const char *brokers, const char *topic, int count)
{
    char err[256];
    ferry_conf_t *conf = make_conf(brokers);
    if (conf == NULL)
        return -1;
    ferry_client_t *c = ferry_client_new(FERRY_CONSUMER, conf, err, sizeof err);
    if (c == NULL) {
        fprintf(stderr, "consumer: %s\n", err);
        return -1;
    }

    /* Assign every partition of the topic from the beginning. */
    ferry_metadata_t *md = NULL;
    ferry_err_t e = ferry_admin_describe_cluster(c, &topic, 1, &md, 10000, err, sizeof err);
    if (e != FERRY_ERR_NONE || ferry_metadata_topic_err(md, 0) != FERRY_ERR_NONE) {
        fprintf(stderr, "metadata: %s\n", e ? err : ferry_err_str(ferry_metadata_topic_err(md, 0)));
        ferry_metadata_destroy(md);
        ferry_client_destroy(c);
        return -1;
    }
    size_t nparts = ferry_metadata_partition_count(md, 0);
    ferry_topic_partition_t *parts = calloc(nparts, sizeof *parts);
    for (size_t i = 0; i < nparts; i++)
        parts[i] = (ferry_topic_partition_t){topic, ferry_metadata_partition_id(md, 0, i), FERRY_OFFSET_BEGINNING};
    ferry_assign(c, parts, nparts);
    free(parts);
    ferry_metadata_destroy(md);

    int got = 0;
    while (got < count) {
        ferry_message_t *m = ferry_consumer_poll(c, 5000);
        if (m == NULL) {
            fprintf(stderr, "no message within 5 s (%d of %d read)\n", got, count);
            break;
        }
        if (ferry_message_err(m) != FERRY_ERR_NONE) {
            fprintf(stderr, "consumer event: %s\n", ferry_message_errstr(m));
        } else {
            size_t klen, vlen;
            const char *key = ferry_message_key(m, &klen);
            const char *value = ferry_message_value(m, &vlen);
            const void *type;
            size_t tlen = 0;
            ferry_message_header_find(m, "event-type", &type, &tlen);
            if (got < 5 || got == count - 1)
                printf("%s/%d@%" PRId64 " key=%.*s type=%.*s value=%.*s\n", ferry_message_topic(m),
                       ferry_message_partition(m), ferry_message_offset(m), (int)klen, key, (int)tlen,
                       tlen ? (const char *)type : "", (int)vlen, value);
            got++;
        }
        ferry_message_destroy(m);
    }
    ferry_client_close(c, 1000);
    ferry_client_destroy(c);
    printf("consumed %d records\n", got);
    return got == count ? 0 : -1;
}

int main(int argc, char **argv)
{
    const char *brokers = argc > 1 ? argv[1] : getenv("FERRY_BROKERS") ? getenv("FERRY_BROKERS") : "127.0.0.1:9700";
    const char *topic = argc > 2 ? argv[2] : "orders";
    int count = argc > 3 ? atoi(argv[3]) : 1000;
    if (count <= 0)
        count = 1000;

    /* Create the topic (already existing is fine). */
    char err[256];
    ferry_conf_t *conf = make_conf(brokers);
    if (conf == NULL)
        return 1;
    ferry_client_t *admin = ferry_client_new(FERRY_ADMIN, conf, err, sizeof err);
    if (admin == NULL) {
        fprintf(stderr, "admin: %s\n", err);
        return 1;
    }
    ferry_err_t e = ferry_admin_create_topic(admin, topic, 3, -1, NULL, NULL, 0, 10000, err, sizeof err);
    if (e != FERRY_ERR_NONE && e != FERRY_ERR_TOPIC_ALREADY_EXISTS) {
        fprintf(stderr, "create topic %s: %s (%s)\n", topic, ferry_err_name(e), err);
        ferry_client_destroy(admin);
        return 1;
    }
    ferry_client_destroy(admin);

    /* Produce, then read the first count records of the log back (all of ours on a fresh topic). */
    if (produce(brokers, topic, count) != 0)
        return 1;
    return consume(brokers, topic, count) == 0 ? 0 : 1;
}
