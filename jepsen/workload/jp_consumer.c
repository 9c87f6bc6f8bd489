/* jp_consumer.c: Jepsen workload consumer: assign mode over every partition from the start, each poll logged. */
/*
 * Assigns partitions 0..N-1 of --topic from FERRY_OFFSET_BEGINNING and polls for --duration seconds.
 * Each batch of messages that ferry_consumer_poll hands over at once (the first waited for up to
 * --poll-ms, the rest taken while immediately available, at most --max-records) is one history
 * line {"f":"poll","type":"ok","mode":"assign","group":null,"records":[[partition,offset,value],...]}.
 *
 * auto.offset.reset defaults to "error": when a fetch position is out of range (a new leader whose
 * high watermark lags for a moment) the partition stops instead of silently jumping, the event is
 * logged as {"type":"info","f":"poll",...,"error":...}, and after 500 ms the consumer seeks back to
 * the offset after the last record it saw there. So every rewind or skip in its history is the
 * broker's doing, which is what the checker looks for.
 *
 * --group G (group mode with commits) is reserved for when consumer groups exist: it fails now.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "jp_common.h"

#define JP_RESEEK_MS 500

struct part_pos {
    int64_t next;        /* offset after the last record seen; FERRY_OFFSET_BEGINNING before any */
    double reseek_at;    /* > 0: seek to next at this time (after an error event) */
};

static void usage(FILE *f)
{
    fprintf(f, "usage: jp_consumer --brokers H:P,... --topic T --partitions N [options]\n"
               "  --process NAME      history process name (default c1)\n"
               "  --duration S        seconds of polling (default 10)\n"
               "  --poll-ms MS        wait for the first message of a poll (default 100)\n"
               "  --max-records N     records per logged poll at most (default 500)\n"
               "  --group G           group mode with commits: not supported yet (exits 2)\n"
               "  --history FILE      history file, appended to (default - = stdout)\n" JP_CONN_USAGE);
}

/* Logs one error event of the consumer as an info poll line. */
static void log_event(struct jp_hist *h, const char *process, const ferry_message_t *m)
{
    FILE *f = jp_line_begin(h, jp_now(), process, "info", "poll");
    if (f == NULL)
        return;
    fprintf(f, ",\"mode\":\"assign\",\"group\":null,\"partition\":%" PRId32 ",\"records\":[],\"error\":",
            ferry_message_partition(m));
    jp_json_err(f, ferry_message_err(m), ferry_message_errstr(m));
    jp_line_end(h);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"topic", required_argument, NULL, 't'},       {"partitions", required_argument, NULL, 'n'},
        {"process", required_argument, NULL, 'p'},     {"duration", required_argument, NULL, 'd'},
        {"poll-ms", required_argument, NULL, 'P'},     {"max-records", required_argument, NULL, 'm'},
        {"group", required_argument, NULL, 'g'},       {"history", required_argument, NULL, 'H'},
        {"help", no_argument, NULL, 'h'},              JP_CONN_LONGOPTS,
        {NULL, 0, NULL, 0},
    };
    struct jp_conn conn;
    struct jp_hist hist;
    char errmsg[512];
    const char *topic = NULL, *process = "c1", *history = "-", *group = NULL;
    int64_t partitions = 0, poll_ms = 100, max_records = 500;
    double duration = 10;
    int opt, li = 0, rc = 1;
    memset(&conn, 0, sizeof conn);
    while ((opt = getopt_long(argc, argv, "h", longopts, &li)) != -1) {
        int c = jp_conn_opt(&conn, opt, optarg, errmsg, sizeof errmsg);
        if (c < 0) {
            fprintf(stderr, "jp_consumer: %s\n", errmsg);
            return 2;
        }
        if (c > 0)
            continue;
        int bad = 0;
        switch (opt) {
        case 't': topic = optarg; break;
        case 'p': process = optarg; break;
        case 'H': history = optarg; break;
        case 'g': group = optarg; break;
        case 'n': bad = jp_parse_i64(optarg, 1, 100000, &partitions); break;
        case 'P': bad = jp_parse_i64(optarg, 0, 60000, &poll_ms); break;
        case 'm': bad = jp_parse_i64(optarg, 1, 1000000, &max_records); break;
        case 'd': bad = jp_parse_seconds(optarg, 86400, &duration); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
        if (bad) {
            fprintf(stderr, "jp_consumer: bad value '%s' for --%s\n", optarg, longopts[li].name);
            return 2;
        }
    }
    if (group != NULL) {
        fprintf(stderr, "jp_consumer: --group %s: group mode is not supported yet (libferry has no consumer "
                        "groups); use assign mode\n", group);
        return 2;
    }
    if (topic == NULL || partitions == 0 || optind != argc) {
        usage(stderr);
        return 2;
    }
    struct part_pos *pos = calloc((size_t)partitions, sizeof *pos);
    ferry_topic_partition_t *tps = calloc((size_t)partitions, sizeof *tps);
    if (pos == NULL || tps == NULL) {
        fprintf(stderr, "jp_consumer: out of memory\n");
        goto err_after_alloc;
    }
    for (int64_t p = 0; p < partitions; p++) {
        pos[p].next = FERRY_OFFSET_BEGINNING;
        tps[p] = (ferry_topic_partition_t){.topic = topic, .partition = (int32_t)p, .offset = FERRY_OFFSET_BEGINNING};
    }
    if (jp_hist_open(&hist, history, errmsg, sizeof errmsg) != 0) {
        fprintf(stderr, "jp_consumer: %s\n", errmsg);
        goto err_after_alloc;
    }
    static const char *const defaults[] = {
        "auto.offset.reset", "error", "request.timeout.ms", "5000", "fetch.max.wait.ms", "200",
        "client.id", "jp_consumer", NULL,
    };
    ferry_conf_t *conf = jp_conf_new(&conn, defaults, errmsg, sizeof errmsg);
    if (conf == NULL) {
        fprintf(stderr, "jp_consumer: %s\n", errmsg);
        goto err_after_hist;
    }
    ferry_client_t *client = ferry_client_new(FERRY_CONSUMER, conf, errmsg, sizeof errmsg);
    if (client == NULL) {
        fprintf(stderr, "jp_consumer: %s\n", errmsg);
        goto err_after_hist;
    }
    ferry_err_t ferr = ferry_assign(client, tps, (size_t)partitions);
    if (ferr != FERRY_ERR_NONE) {
        fprintf(stderr, "jp_consumer: assign: %s\n", ferry_err_str(ferr));
        goto err_after_client;
    }
    jp_install_signals();

    int64_t polls = 0, records = 0, events = 0;
    double end = jp_now() + duration;
    while (!jp_stop && jp_now() < end) {
        double now = jp_now();
        for (int64_t p = 0; p < partitions; p++) {
            if (pos[p].reseek_at > 0 && now >= pos[p].reseek_at) {
                pos[p].reseek_at = 0;
                ferr = ferry_seek(client, topic, (int32_t)p, pos[p].next, 0);
                if (ferr != FERRY_ERR_NONE)
                    fprintf(stderr, "jp_consumer: seek %" PRId64 ": %s\n", p, ferry_err_str(ferr));
            }
        }
        ferry_message_t *m = ferry_consumer_poll(client, (int)poll_ms);
        if (m == NULL)
            continue;
        FILE *f = NULL;
        int64_t n = 0;
        while (m != NULL) {
            if (ferry_message_err(m) != FERRY_ERR_NONE) {
                if (f != NULL) { /* close the records line first: lines stay in arrival order */
                    fputs("]", f);
                    jp_line_end(&hist);
                    f = NULL;
                }
                log_event(&hist, process, m);
                events++;
                int32_t p = ferry_message_partition(m);
                if (p >= 0 && p < partitions)
                    pos[p].reseek_at = jp_now() + JP_RESEEK_MS / 1000.0;
            } else {
                if (f == NULL) {
                    f = jp_line_begin(&hist, jp_now(), process, "ok", "poll");
                    if (f != NULL)
                        fputs(",\"mode\":\"assign\",\"group\":null,\"records\":[", f);
                    n = 0;
                    polls++;
                }
                int32_t p = ferry_message_partition(m);
                int64_t o = ferry_message_offset(m);
                size_t vl;
                const void *v = ferry_message_value(m, &vl);
                if (f != NULL) {
                    fprintf(f, "%s[%" PRId32 ",%" PRId64 ",", n > 0 ? "," : "", p, o);
                    jp_json_str(f, v, vl);
                    fputc(']', f);
                }
                if (p >= 0 && p < partitions)
                    pos[p].next = o + 1;
                n++;
                records++;
            }
            ferry_message_destroy(m);
            m = n < max_records ? ferry_consumer_poll(client, 0) : NULL;
        }
        if (f != NULL) {
            fputs("]", f);
            jp_line_end(&hist);
        }
    }
    fprintf(stderr, "jp_consumer %s: %" PRId64 " polls, %" PRId64 " records, %" PRId64 " error events\n", process,
            polls, records, events);
    rc = 0;

err_after_client:
    ferry_client_close(client, 1000);
    ferry_client_destroy(client);
err_after_hist:
    if (jp_hist_close(&hist, errmsg, sizeof errmsg) != 0) {
        fprintf(stderr, "jp_consumer: %s\n", errmsg);
        rc = 1;
    }
err_after_alloc:
    free(tps);
    free(pos);
    return rc;
}
