/* order_service.c: example producer: an order service publishing OrderPlaced events with libferry. */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ferry.h"

/*
 * Usage: order_service --brokers 127.0.0.1:9700 --ca certs/ca.crt [--topic orders] [--count 9]
 *
 * Publishes --count OrderPlaced events. Each event:
 *   key      the order id ("order-1001"): all events of one order land in one partition, in order
 *   value    the order as JSON
 *   headers  event-id (unique per event), event-type = OrderPlaced, source = order-service,
 *            correlation-id (ties the events of one customer request together)
 * Every record gets a delivery report; the program exits 0 only if all were acknowledged.
 */

struct stats {
    int delivered;
    int failed;
};

/* Runs inside ferry_poll()/ferry_flush() on this thread, once per produced record. */
static void on_delivery(ferry_client_t *client, const ferry_delivery_t *d, void *opaque)
{
    (void)client;
    struct stats *st = opaque;
    const char *order_id = d->opaque; /* the key we passed as the record's opaque */
    if (d->err != FERRY_ERR_NONE) {
        st->failed++;
        fprintf(stderr, "order-service: %s NOT delivered: %s\n", order_id,
                d->error_message ? d->error_message : ferry_err_str(d->err));
        return;
    }
    st->delivered++;
    printf("order-service: OrderPlaced %s -> %s partition %" PRId32 " offset %" PRId64 "\n", order_id, d->topic,
           d->partition, d->offset);
}

static void usage(void)
{
    fprintf(stderr, "usage: order_service --brokers HOST:PORT --ca CA.crt [--cert C --key K] "
                    "[--topic orders] [--count N]\n");
}

int main(int argc, char **argv)
{
    const char *brokers = getenv("FERRY_BROKERS"), *ca = NULL, *cert = NULL, *key = NULL;
    const char *topic = "orders";
    int count = 9;
    static const struct option opts[] = {
        {"brokers", required_argument, NULL, 'b'}, {"ca", required_argument, NULL, 'a'},
        {"cert", required_argument, NULL, 'c'},    {"key", required_argument, NULL, 'k'},
        {"topic", required_argument, NULL, 't'},   {"count", required_argument, NULL, 'n'},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'b': brokers = optarg; break;
        case 'a': ca = optarg; break;
        case 'c': cert = optarg; break;
        case 'k': key = optarg; break;
        case 't': topic = optarg; break;
        case 'n': count = atoi(optarg); break;
        default: usage(); return 2;
        }
    }
    if (!brokers || count < 1 || count > 100000) {
        usage();
        return 2;
    }

    /* 1. Configuration: string settings with Kafka's names. */
    char err[512];
    struct stats st = {0};
    ferry_conf_t *conf = ferry_conf_new();
    if (!conf)
        return 1;
    if (ferry_conf_set(conf, "bootstrap.servers", brokers, err, sizeof(err)) ||
        (ca && ferry_conf_set(conf, "ssl.ca.location", ca, err, sizeof(err))) ||
        (cert && ferry_conf_set(conf, "ssl.certificate.location", cert, err, sizeof(err))) ||
        (key && ferry_conf_set(conf, "ssl.key.location", key, err, sizeof(err))) ||
        ferry_conf_set(conf, "client.id", "order-service", err, sizeof(err)) ||
        ferry_conf_set(conf, "acks", "all", err, sizeof(err))) { /* durable: acknowledged once fsync'd */
        fprintf(stderr, "order-service: %s\n", err);
        ferry_conf_destroy(conf);
        return 2;
    }
    ferry_conf_set_delivery_cb(conf, on_delivery);
    ferry_conf_set_opaque(conf, &st);

    /* 2. The producer (consumes conf). */
    ferry_client_t *producer = ferry_client_new(FERRY_PRODUCER, conf, err, sizeof(err));
    if (!producer) {
        fprintf(stderr, "order-service: %s\n", err);
        return 1;
    }

    /* 3. Publish. The library copies key, value and headers, so stack buffers are fine; the
     *    order id strings live until the end because they are the delivery reports' opaque. */
    char (*order_ids)[32] = calloc((size_t)count, sizeof(*order_ids));
    if (!order_ids) {
        ferry_client_destroy(producer);
        return 1;
    }
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    unsigned run = (unsigned)rand() % 100000;
    static const char *customers[] = {"alice", "bob", "carol", "dave"};
    int rc = 0;
    for (int i = 0; i < count; i++) {
        snprintf(order_ids[i], sizeof(order_ids[i]), "order-%d", 1001 + i);
        char value[256], event_id[48], correlation_id[48];
        snprintf(value, sizeof(value),
                 "{\"order_id\":\"%s\",\"customer\":\"%s\",\"items\":%d,\"total_cents\":%d}", order_ids[i],
                 customers[i % 4], 1 + i % 3, 1250 + 375 * i);
        snprintf(event_id, sizeof(event_id), "evt-%05u-%04d", run, i + 1);
        snprintf(correlation_id, sizeof(correlation_id), "req-%05u-%s", run, customers[i % 4]);
        ferry_header_t headers[] = {
            {"event-id", event_id, strlen(event_id)},
            {"event-type", "OrderPlaced", strlen("OrderPlaced")},
            {"source", "order-service", strlen("order-service")},
            {"correlation-id", correlation_id, strlen(correlation_id)},
        };
        ferry_record_t rec;
        memset(&rec, 0, sizeof(rec)); /* frozen struct: zero it, then fill it */
        rec.topic = topic;
        rec.partition = FERRY_PARTITION_ANY; /* by key: murmur2(key) % partitions */
        rec.key = order_ids[i];
        rec.key_len = strlen(order_ids[i]);
        rec.value = value;
        rec.value_len = strlen(value);
        rec.headers = headers;
        rec.header_count = sizeof(headers) / sizeof(headers[0]);
        rec.opaque = order_ids[i];
        ferry_err_t e = ferry_produce(producer, &rec, 0); /* blocks if the local queue is full */
        if (e != FERRY_ERR_NONE) {
            fprintf(stderr, "order-service: produce %s: %s\n", order_ids[i], ferry_err_str(e));
            rc = 1;
            break;
        }
        ferry_poll(producer, 0); /* serve delivery reports that are ready */
    }

    /* 4. Wait for every delivery report (bounded), then close. */
    if (ferry_flush(producer, 15000) != FERRY_ERR_NONE)
        fprintf(stderr, "order-service: flush timed out\n");
    ferry_client_close(producer, 5000);
    ferry_client_destroy(producer);
    printf("order-service: published %d OrderPlaced events to %s (%d failed)\n", st.delivered, topic, st.failed);
    free(order_ids);
    if (st.failed || st.delivered != count)
        rc = 1;
    return rc;
}
