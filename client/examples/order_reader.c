/* order_reader.c: example consumer: one reader of the orders topic (all partitions, or as a consumer group member). */
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry.h"

/*
 * Usage: order_reader --name email --brokers 127.0.0.1:9700 --ca certs/ca.crt [--topic orders]
 *                     [--expect N] [--timeout-ms 15000]
 *
 * Each reader assigns itself every partition of the topic from the beginning, so every reader
 * sees every event, independently of the others (no consumer group: nothing is shared). With
 * --group G it joins consumer group G instead: the group's coordinator assigns the partitions, it
 * starts at the group's committed offsets (the beginning for a new group), commits what it handled
 * and leaves the group at exit; readers with different groups each see every event (fan-out),
 * readers sharing a group share the partitions (run one per group to see all events here). It reads
 * until it has caught up with the high watermarks it measured at start (and, with --expect, seen
 * at least N events), then prints a summary line "<name>: received N events" and exits 0;
 * exit 1 if it could not catch up before --timeout-ms.
 */

#define READER_MAX_PARTITIONS 1024

static void usage(void)
{
    fprintf(stderr, "usage: order_reader --name NAME --brokers HOST:PORT --ca CA.crt [--cert C --key K] "
                    "[--topic orders] [--group G] [--expect N] [--timeout-ms MS]\n");
}

/* What each example reader does with an event (the "business logic"). */
static const char *action_for(const char *name)
{
    if (strcmp(name, "email") == 0)
        return "send confirmation email for";
    if (strcmp(name, "inventory") == 0)
        return "reserve stock for";
    if (strcmp(name, "analytics") == 0)
        return "record revenue of";
    return "handle";
}

/* Copies header name's value as text into buf ("-" if absent). */
static const char *header_text(const ferry_message_t *m, const char *name, char *buf, size_t len)
{
    const void *v = NULL;
    size_t vlen = 0;
    if (ferry_message_header_find(m, name, &v, &vlen) != FERRY_ERR_NONE || !v)
        return "-";
    if (vlen >= len)
        vlen = len - 1;
    memcpy(buf, v, vlen);
    buf[vlen] = '\0';
    return buf;
}

int main(int argc, char **argv)
{
    const char *name = "reader", *brokers = getenv("FERRY_BROKERS"), *ca = NULL, *cert = NULL, *key = NULL;
    const char *topic = "orders", *group = NULL;
    long expect = 0, timeout_ms = 15000;
    static const struct option opts[] = {
        {"name", required_argument, NULL, 'N'},   {"brokers", required_argument, NULL, 'b'},
        {"ca", required_argument, NULL, 'a'},     {"cert", required_argument, NULL, 'c'},
        {"key", required_argument, NULL, 'k'},    {"topic", required_argument, NULL, 't'},
        {"expect", required_argument, NULL, 'e'}, {"timeout-ms", required_argument, NULL, 'T'},
        {"group", required_argument, NULL, 'g'},  {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'N': name = optarg; break;
        case 'b': brokers = optarg; break;
        case 'a': ca = optarg; break;
        case 'c': cert = optarg; break;
        case 'k': key = optarg; break;
        case 't': topic = optarg; break;
        case 'e': expect = atol(optarg); break;
        case 'T': timeout_ms = atol(optarg); break;
        case 'g': group = optarg; break;
        default: usage(); return 2;
        }
    }
    if (!brokers || timeout_ms < 1) {
        usage();
        return 2;
    }

    char err[512];
    ferry_conf_t *conf = ferry_conf_new();
    if (!conf)
        return 1;
    if (ferry_conf_set(conf, "bootstrap.servers", brokers, err, sizeof(err)) ||
        (ca && ferry_conf_set(conf, "ssl.ca.location", ca, err, sizeof(err))) ||
        (cert && ferry_conf_set(conf, "ssl.certificate.location", cert, err, sizeof(err))) ||
        (key && ferry_conf_set(conf, "ssl.key.location", key, err, sizeof(err))) ||
        ferry_conf_set(conf, "client.id", name, err, sizeof(err)) ||
        (group && ferry_conf_set(conf, "group.id", group, err, sizeof(err)))) {
        fprintf(stderr, "%s: %s\n", name, err);
        ferry_conf_destroy(conf);
        return 2;
    }
    ferry_client_t *consumer = ferry_client_new(FERRY_CONSUMER, conf, err, sizeof(err));
    if (!consumer) {
        fprintf(stderr, "%s: %s\n", name, err);
        return 1;
    }

    int rc = 1;
    ferry_metadata_t *md = NULL;
    /* 1. Which partitions does the topic have? */
    ferry_err_t e = ferry_admin_describe_cluster(consumer, &topic, 1, &md, (int)timeout_ms, err, sizeof(err));
    if (e != FERRY_ERR_NONE || ferry_metadata_topic_err(md, 0) != FERRY_ERR_NONE) {
        fprintf(stderr, "%s: topic %s: %s\n", name, topic,
                e != FERRY_ERR_NONE ? err : ferry_err_str(ferry_metadata_topic_err(md, 0)));
        goto out;
    }
    size_t np = ferry_metadata_partition_count(md, 0);
    if (np == 0 || np > READER_MAX_PARTITIONS) {
        fprintf(stderr, "%s: topic %s has %zu partitions\n", name, topic, np);
        goto out;
    }

    /* 2. Where does each partition end now? Reading up to there = having seen everything so far. */
    ferry_topic_partition_t parts[READER_MAX_PARTITIONS];
    int64_t end[READER_MAX_PARTITIONS], next[READER_MAX_PARTITIONS];
    for (size_t i = 0; i < np; i++) {
        int32_t p = ferry_metadata_partition_id(md, 0, i);
        int64_t lo = 0;
        e = ferry_watermarks(consumer, topic, p, &lo, &end[i], (int)timeout_ms);
        if (e != FERRY_ERR_NONE) {
            fprintf(stderr, "%s: watermarks of %s/%" PRId32 ": %s\n", name, topic, p, ferry_err_str(e));
            goto out;
        }
        next[i] = lo;
        parts[i] = (ferry_topic_partition_t){topic, p, FERRY_OFFSET_BEGINNING};
    }

    /* 3. Read every partition from the beginning, or join the group (which says where to start). */
    e = group ? ferry_subscribe(consumer, &topic, 1) : ferry_assign(consumer, parts, np);
    if (e != FERRY_ERR_NONE) {
        fprintf(stderr, "%s: %s: %s\n", name, group ? "subscribe" : "assign", ferry_err_str(e));
        goto out;
    }
    long received = 0, waited = 0;
    for (;;) {
        if (group) {
            /* A member starts at the committed offsets: count those as read. */
            ferry_topic_partition_t pos[READER_MAX_PARTITIONS];
            memcpy(pos, parts, np * sizeof(pos[0]));
            if (ferry_position(consumer, pos, np) == FERRY_ERR_NONE)
                for (size_t i = 0; i < np; i++)
                    if (pos[i].offset > next[i])
                        next[i] = pos[i].offset;
        }
        bool caught_up = received >= expect;
        for (size_t i = 0; i < np && caught_up; i++)
            caught_up = next[i] >= end[i];
        if (caught_up) {
            rc = 0;
            break;
        }
        if (waited >= timeout_ms) {
            fprintf(stderr, "%s: timed out after %ld ms with %ld events\n", name, timeout_ms, received);
            break;
        }
        ferry_message_t *m = ferry_consumer_poll(consumer, 100);
        if (!m) {
            waited += 100;
            continue;
        }
        if (ferry_message_err(m) != FERRY_ERR_NONE) {
            fprintf(stderr, "%s: %s\n", name, ferry_message_errstr(m) ? ferry_message_errstr(m)
                                                                     : ferry_err_str(ferry_message_err(m)));
            ferry_message_destroy(m);
            continue;
        }
        size_t klen = 0;
        const char *k = ferry_message_key(m, &klen);
        char type[64], corr[64], evt[64];
        printf("%-9s %s/%" PRId32 "@%-3" PRId64 " %-12s %.*s (event-id %s, correlation-id %s): %s %.*s\n", name,
               ferry_message_topic(m), ferry_message_partition(m), ferry_message_offset(m),
               header_text(m, "event-type", type, sizeof(type)), (int)klen, k ? k : "",
               header_text(m, "event-id", evt, sizeof(evt)), header_text(m, "correlation-id", corr, sizeof(corr)),
               action_for(name), (int)klen, k ? k : "");
        for (size_t i = 0; i < np; i++)
            if (parts[i].partition == ferry_message_partition(m))
                next[i] = ferry_message_offset(m) + 1;
        received++;
        ferry_message_destroy(m);
    }
    printf("%s: received %ld events\n", name, received);

out:
    ferry_metadata_destroy(md);
    if (group) /* commit what was handled and leave, so the partitions move at once */
        ferry_consumer_close(consumer, 2000);
    ferry_client_close(consumer, 2000);
    ferry_client_destroy(consumer);
    return rc;
}
