/* jp_producer.c: Jepsen workload producer: unique values round-robin over partitions, every outcome logged. */
/*
 * One process = one history "process" (--process p1). Value i (from 1) is "<process>-<i>" and goes
 * to partition (i - 1) % partitions, explicitly. Each send is logged as an invoke line before
 * ferry_produce, then completed from its delivery report:
 *   ok    (offset; null when the broker answered DUPLICATE_SEQUENCE and no longer knew it)
 *   fail  the record was definitely not written: ferry_produce refused it, or the broker rejected
 *         its content (an error every attempt would have had, see definite_failure)
 *   info  anything else (timeouts, transport errors, purged at close): the outcome is unknown.
 * At the end the producer flushes for --flush-timeout, closes, and logs every send still without
 * an outcome as info. Sends are open loop at --rate per second for --duration seconds.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "jp_common.h"

/* A bound on the sends one run may make: the outcome table is allocated up front (1 byte a send). */
#define JP_MAX_SENDS (64LL * 1024 * 1024)

enum send_state { SEND_NONE = 0, SEND_PENDING = 1, SEND_DONE = 2 };

struct producer {
    struct jp_hist hist;
    const char *process;
    const char *topic;
    int32_t partitions;
    uint8_t *state; /* state[i] for value i (1-based), SEND_* */
    int64_t capacity;
    int64_t sent, ok, failed, unknown;
};

/*
 * 1 if a delivery error proves the record was never written. Only errors about the batch's own
 * content qualify: any earlier attempt of the same batch got the same answer. Errors that depend on
 * timing (NOT_LEADER, timeouts, fencing, OUT_OF_ORDER_SEQUENCE, purge) may follow an attempt that
 * was written, so they are unknown outcomes.
 */
static int definite_failure(ferry_err_t err)
{
    switch (err) {
    case FERRY_ERR_CORRUPT_BATCH:
    case FERRY_ERR_INVALID_REQUEST:
    case FERRY_ERR_BATCH_TOO_LARGE:
    case FERRY_ERR_UNSUPPORTED_COMPRESSION:
    case FERRY_ERR_INVALID_TIMESTAMP:
    case FERRY_ERR_INVALID_RECORD:
    case FERRY_ERR_LIMIT_EXCEEDED:
    case FERRY_ERR_UNKNOWN_TOPIC_OR_PARTITION:
        return 1;
    default:
        return 0;
    }
}

static void value_of(const struct producer *p, int64_t i, char *buf, size_t len)
{
    snprintf(buf, len, "%s-%" PRId64, p->process, i);
}

static int32_t partition_of(const struct producer *p, int64_t i)
{
    return (int32_t)((i - 1) % p->partitions);
}

/* Writes the common fields of a send line; returns the line stream or NULL. */
static FILE *send_line(struct producer *p, const char *type, int64_t i)
{
    char value[256];
    FILE *f = jp_line_begin(&p->hist, jp_now(), p->process, type, "send");
    if (f == NULL)
        return NULL;
    value_of(p, i, value, sizeof value);
    fprintf(f, ",\"partition\":%" PRId32 ",\"value\":", partition_of(p, i));
    jp_json_str(f, value, strlen(value));
    return f;
}

static void complete(struct producer *p, int64_t i, ferry_err_t err, const char *msg, int64_t offset)
{
    if (i < 1 || i > p->capacity || p->state[i] != SEND_PENDING) {
        fprintf(stderr, "jp_producer: delivery report for unknown send %" PRId64 "\n", i);
        return;
    }
    p->state[i] = SEND_DONE;
    const char *type = err == FERRY_ERR_NONE ? "ok" : definite_failure(err) ? "fail" : "info";
    FILE *f = send_line(p, type, i);
    if (f != NULL) {
        if (err == FERRY_ERR_NONE) {
            if (offset >= 0)
                fprintf(f, ",\"offset\":%" PRId64, offset);
            else
                fputs(",\"offset\":null", f);
        } else {
            fputs(",\"error\":", f);
            jp_json_err(f, err, msg);
        }
        jp_line_end(&p->hist);
    }
    if (err == FERRY_ERR_NONE)
        p->ok++;
    else if (definite_failure(err))
        p->failed++;
    else
        p->unknown++;
}

static void on_delivery(ferry_client_t *client, const ferry_delivery_t *d, void *opaque)
{
    (void)client;
    complete(opaque, (int64_t)(uintptr_t)d->opaque, d->err, d->error_message, d->offset);
}

/* Logs invoke, then queues value i; a refused record is completed as fail at once. */
static void send_one(struct producer *p, ferry_client_t *client, int64_t i)
{
    char value[256];
    value_of(p, i, value, sizeof value);
    FILE *f = send_line(p, "invoke", i);
    if (f != NULL)
        jp_line_end(&p->hist);
    p->state[i] = SEND_PENDING;
    p->sent++;
    ferry_record_t rec;
    memset(&rec, 0, sizeof rec);
    rec.topic = p->topic;
    rec.partition = partition_of(p, i);
    rec.value = value;
    rec.value_len = strlen(value);
    rec.opaque = (void *)(uintptr_t)i;
    ferry_err_t err = ferry_produce(client, &rec, FERRY_F_NONBLOCK);
    if (err != FERRY_ERR_NONE)
        complete(p, i, err, "refused by ferry_produce", -1); /* not queued: never sent */
}

static void usage(FILE *f)
{
    fprintf(f, "usage: jp_producer --brokers H:P,... --topic T --partitions N [options]\n"
               "  --process NAME      history process name and value prefix (default p1)\n"
               "  --rate R            sends per second, open loop (default 100)\n"
               "  --duration S        seconds of sending (default 10)\n"
               "  --flush-timeout S   bound on the final flush (default 30)\n"
               "  --history FILE      history file, appended to (default - = stdout)\n" JP_CONN_USAGE);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"topic", required_argument, NULL, 't'},    {"partitions", required_argument, NULL, 'n'},
        {"process", required_argument, NULL, 'p'},  {"rate", required_argument, NULL, 'r'},
        {"duration", required_argument, NULL, 'd'}, {"flush-timeout", required_argument, NULL, 'F'},
        {"history", required_argument, NULL, 'H'},  {"help", no_argument, NULL, 'h'},
        JP_CONN_LONGOPTS,                           {NULL, 0, NULL, 0},
    };
    struct producer p;
    struct jp_conn conn;
    char errmsg[512];
    int64_t partitions = 0, rate = 100;
    double duration = 10, flush_s = 30;
    const char *history = "-";
    int opt, li = 0, rc = 1;
    memset(&p, 0, sizeof p);
    memset(&conn, 0, sizeof conn);
    p.process = "p1";
    while ((opt = getopt_long(argc, argv, "h", longopts, &li)) != -1) {
        int c = jp_conn_opt(&conn, opt, optarg, errmsg, sizeof errmsg);
        if (c < 0) {
            fprintf(stderr, "jp_producer: %s\n", errmsg);
            return 2;
        }
        if (c > 0)
            continue;
        int bad = 0;
        switch (opt) {
        case 't': p.topic = optarg; break;
        case 'p': p.process = optarg; break;
        case 'H': history = optarg; break;
        case 'n': bad = jp_parse_i64(optarg, 1, 100000, &partitions); break;
        case 'r': bad = jp_parse_i64(optarg, 1, 100000, &rate); break;
        case 'd': bad = jp_parse_seconds(optarg, 86400, &duration); break;
        case 'F': bad = jp_parse_seconds(optarg, 3600, &flush_s); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
        if (bad) {
            fprintf(stderr, "jp_producer: bad value '%s' for --%s\n", optarg, longopts[li].name);
            return 2;
        }
    }
    if (p.topic == NULL || partitions == 0 || optind != argc || strlen(p.process) > 64) {
        usage(stderr);
        return 2;
    }
    p.partitions = (int32_t)partitions;
    /* The table's size is bounded before it is allocated. */
    double want = (double)rate * duration + (double)rate + 16;
    if (want > (double)JP_MAX_SENDS) {
        fprintf(stderr, "jp_producer: --rate x --duration allows more than %lld sends\n", JP_MAX_SENDS);
        return 2;
    }
    p.capacity = (int64_t)want;
    p.state = calloc((size_t)p.capacity + 1, 1);
    if (p.state == NULL) {
        fprintf(stderr, "jp_producer: out of memory\n");
        return 1;
    }
    if (jp_hist_open(&p.hist, history, errmsg, sizeof errmsg) != 0) {
        fprintf(stderr, "jp_producer: %s\n", errmsg);
        goto err_after_state;
    }
    static const char *const defaults[] = {
        "acks", "all", "enable.idempotence", "true", "linger.ms", "2", "request.timeout.ms", "5000",
        "delivery.timeout.ms", "20000", "max.block.ms", "0", "client.id", "jp_producer", NULL,
    };
    ferry_conf_t *conf = jp_conf_new(&conn, defaults, errmsg, sizeof errmsg);
    if (conf == NULL) {
        fprintf(stderr, "jp_producer: %s\n", errmsg);
        goto err_after_hist;
    }
    ferry_conf_set_delivery_cb(conf, on_delivery);
    ferry_conf_set_opaque(conf, &p);
    ferry_client_t *client = ferry_client_new(FERRY_PRODUCER, conf, errmsg, sizeof errmsg);
    if (client == NULL) {
        fprintf(stderr, "jp_producer: %s\n", errmsg);
        goto err_after_hist;
    }
    jp_install_signals();

    double start = jp_now(), end = start + duration, interval = 1.0 / (double)rate, due = start;
    int64_t next = 1;
    for (double now = start; now < end && !jp_stop && next <= p.capacity; now = jp_now()) {
        if (now >= due) {
            send_one(&p, client, next++);
            due += interval;
            if (now - due > 1.0) /* stalled (e.g. paused) for over a second: do not burst to catch up */
                due = now;
            ferry_poll(client, 0);
            continue;
        }
        int wait_ms = (int)((due - now) * 1000.0);
        ferry_poll(client, wait_ms > 100 ? 100 : wait_ms);
    }

    ferry_err_t ferr = ferry_flush(client, (int)(flush_s * 1000.0));
    if (ferr != FERRY_ERR_NONE)
        fprintf(stderr, "jp_producer: flush: %s (%zu still pending)\n", ferry_err_name(ferr), ferry_outq_len(client));
    ferry_client_close(client, 0); /* reports what is left as _PURGED: unknown outcome */
    for (int64_t i = 1; i < next; i++)
        if (p.state[i] == SEND_PENDING)
            complete(&p, i, FERRY_ERR__TIMED_OUT, "no delivery report before exit", -1);
    ferry_client_destroy(client);
    fprintf(stderr, "jp_producer %s: %" PRId64 " sent, %" PRId64 " ok, %" PRId64 " fail, %" PRId64 " info\n",
            p.process, p.sent, p.ok, p.failed, p.unknown);
    rc = 0;

err_after_hist:
    if (jp_hist_close(&p.hist, errmsg, sizeof errmsg) != 0) {
        fprintf(stderr, "jp_producer: %s\n", errmsg);
        rc = 1;
    }
err_after_state:
    free(p.state);
    return rc;
}
