/* jp_final_read.c: Jepsen final read: every partition from its start to its high watermark, through the cluster. */
/*
 * For each partition of --topic (0..N-1): asks the leader for the watermarks, reads from the log
 * start with an assign-mode consumer until the record at high watermark - 1 has arrived, then asks
 * again and goes on if the watermark moved. Errors (no leader, timeouts, error events) make it
 * retry from the next offset it lacks, until --timeout seconds in all have passed (every partition
 * gets at least 2 s, so one unavailable partition does not hide the state of the others).
 * One line per partition:
 *   {"type":"ok","f":"final-read","source":"cluster","partition":P,"records":[[offset,value],...],
 *    "log_start":L,"high_watermark":H,"leader":ID,"replicas":[ID,...]}
 * or, when the bound passed first, the same with "type":"info" and an "error" (records = what was read).
 * Records are logged as served, gaps included (the checker judges them). Exit 0 when every
 * partition was read completely, 1 otherwise, 2 on usage errors.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "jp_common.h"

struct recs {
    int64_t *offsets;
    char **values; /* NUL-free copies; NULL for a null value */
    size_t *lens;
    size_t n, cap;
};

static void recs_free(struct recs *r)
{
    for (size_t i = 0; i < r->n; i++)
        free(r->values[i]);
    free(r->offsets);
    free(r->values);
    free(r->lens);
    memset(r, 0, sizeof *r);
}

static int recs_add(struct recs *r, int64_t offset, const void *v, size_t len)
{
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 1024;
        int64_t *o = realloc(r->offsets, cap * sizeof *o);
        if (o == NULL)
            return -1;
        r->offsets = o;
        char **vs = realloc(r->values, cap * sizeof *vs);
        if (vs == NULL)
            return -1;
        r->values = vs;
        size_t *ls = realloc(r->lens, cap * sizeof *ls);
        if (ls == NULL)
            return -1;
        r->lens = ls;
        r->cap = cap;
    }
    char *copy = NULL;
    if (v != NULL) {
        copy = malloc(len ? len : 1);
        if (copy == NULL)
            return -1;
        memcpy(copy, v, len);
    }
    r->offsets[r->n] = offset;
    r->values[r->n] = copy;
    r->lens[r->n] = len;
    r->n++;
    return 0;
}

struct placement {
    int32_t leader;
    int32_t replicas[64];
    size_t n_replicas;
};

/* The partition's leader and replica set from cluster metadata (leader -1 / none on failure). */
static void get_placement(ferry_client_t *client, const char *topic, int32_t part, int timeout_ms,
                          struct placement *pl)
{
    ferry_metadata_t *md = NULL;
    char err[256];
    pl->leader = -1;
    pl->n_replicas = 0;
    if (ferry_admin_describe_cluster(client, &topic, 1, &md, timeout_ms, err, sizeof err) != FERRY_ERR_NONE)
        return;
    for (size_t t = 0; t < ferry_metadata_topic_count(md); t++) {
        if (strcmp(ferry_metadata_topic_name(md, t), topic) != 0)
            continue;
        for (size_t p = 0; p < ferry_metadata_partition_count(md, t); p++) {
            if (ferry_metadata_partition_id(md, t, p) != part)
                continue;
            pl->leader = ferry_metadata_partition_leader(md, t, p);
            size_t n = ferry_metadata_partition_replica_count(md, t, p);
            for (size_t r = 0; r < n && r < sizeof pl->replicas / sizeof pl->replicas[0]; r++)
                pl->replicas[pl->n_replicas++] = ferry_metadata_partition_replica(md, t, p, r);
        }
    }
    ferry_metadata_destroy(md);
}

/*
 * Reads partition part into r until the deadline. Returns 0 when complete (*lo, *hi set) or -1
 * with errmsg saying what was missing.
 */
static int read_partition(ferry_client_t *client, const char *topic, int32_t part, double deadline, struct recs *r,
                          int64_t *lo, int64_t *hi, char *errmsg, size_t errmsg_len)
{
    int64_t next = -1; /* the offset to read from; -1 until the log start is known */
    int assigned = 0;
    if (deadline < jp_now() + 2) /* a partition that comes after a slow one still gets a try */
        deadline = jp_now() + 2;
    snprintf(errmsg, errmsg_len, "deadline passed before the first attempt");
    while (!jp_stop && jp_now() < deadline) {
        double left_ms = (deadline - jp_now()) * 1000.0;
        int wait_ms = left_ms > 5000 ? 5000 : left_ms < 100 ? 100 : (int)left_ms;
        ferry_err_t err = ferry_watermarks(client, topic, part, lo, hi, wait_ms);
        if (err != FERRY_ERR_NONE) {
            snprintf(errmsg, errmsg_len, "watermarks: %s: %s", ferry_err_name(err), ferry_err_str(err));
            jp_sleep_ms(500);
            continue;
        }
        if (next < 0)
            next = *lo;
        if (next >= *hi)
            return 0; /* everything below the high watermark was read */
        if (!assigned) {
            ferry_topic_partition_t tp = {.topic = topic, .partition = part, .offset = next};
            if ((err = ferry_assign(client, &tp, 1)) != FERRY_ERR_NONE) {
                snprintf(errmsg, errmsg_len, "assign: %s", ferry_err_str(err));
                return -1;
            }
            assigned = 1;
        }
        /* Read up to the watermark; 10 s without a message means this attempt stalled. */
        double idle_until = jp_now() + 10;
        while (next < *hi && !jp_stop && jp_now() < deadline && jp_now() < idle_until) {
            ferry_message_t *m = ferry_consumer_poll(client, 200);
            if (m == NULL)
                continue;
            if (ferry_message_err(m) != FERRY_ERR_NONE) {
                snprintf(errmsg, errmsg_len, "at offset %" PRId64 ": %s: %s", next,
                         ferry_err_name(ferry_message_err(m)),
                         ferry_message_errstr(m) ? ferry_message_errstr(m) : "");
                ferry_message_destroy(m);
                jp_sleep_ms(500);
                ferry_seek(client, topic, part, next, 0);
                idle_until = jp_now() + 10;
                continue;
            }
            size_t vl;
            const void *v = ferry_message_value(m, &vl);
            int64_t o = ferry_message_offset(m);
            if (o >= next) { /* a duplicate delivery after a seek is not logged twice */
                if (recs_add(r, o, v, vl) != 0) {
                    ferry_message_destroy(m);
                    snprintf(errmsg, errmsg_len, "out of memory");
                    return -1;
                }
                next = o + 1;
                idle_until = jp_now() + 10;
            }
            ferry_message_destroy(m);
        }
        if (next < *hi) {
            snprintf(errmsg, errmsg_len, "stalled at offset %" PRId64 " of high watermark %" PRId64, next, *hi);
            ferry_seek(client, topic, part, next, 0);
        }
    }
    if (jp_stop)
        snprintf(errmsg, errmsg_len, "interrupted");
    return -1;
}

static void write_line(struct jp_hist *h, const char *process, int complete, int32_t part, const struct recs *r,
                       int64_t lo, int64_t hi, const struct placement *pl, const char *errmsg)
{
    FILE *f = jp_line_begin(h, jp_now(), process, complete ? "ok" : "info", "final-read");
    if (f == NULL)
        return;
    fprintf(f, ",\"source\":\"cluster\",\"partition\":%" PRId32 ",\"records\":[", part);
    for (size_t i = 0; i < r->n; i++) {
        fprintf(f, "%s[%" PRId64 ",", i ? "," : "", r->offsets[i]);
        jp_json_str(f, r->values[i], r->lens[i]);
        fputc(']', f);
    }
    fprintf(f, "],\"log_start\":%" PRId64 ",\"high_watermark\":%" PRId64 ",\"leader\":%" PRId32 ",\"replicas\":[",
            lo, hi, pl->leader);
    for (size_t i = 0; i < pl->n_replicas; i++)
        fprintf(f, "%s%" PRId32, i ? "," : "", pl->replicas[i]);
    fputc(']', f);
    if (!complete) {
        fputs(",\"error\":", f);
        jp_json_str(f, errmsg, strlen(errmsg));
    }
    jp_line_end(h);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: jp_final_read --brokers H:P,... --topic T --partitions N [options]\n"
               "  --process NAME      history process name (default final)\n"
               "  --timeout S         bound on the whole read, retries included (default 60)\n"
               "  --history FILE      history file, appended to (default - = stdout)\n" JP_CONN_USAGE);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"topic", required_argument, NULL, 't'},   {"partitions", required_argument, NULL, 'n'},
        {"process", required_argument, NULL, 'p'}, {"timeout", required_argument, NULL, 'T'},
        {"history", required_argument, NULL, 'H'}, {"help", no_argument, NULL, 'h'},
        JP_CONN_LONGOPTS,                          {NULL, 0, NULL, 0},
    };
    struct jp_conn conn;
    struct jp_hist hist;
    char errmsg[512];
    const char *topic = NULL, *process = "final", *history = "-";
    int64_t partitions = 0;
    double timeout = 60;
    int opt, li = 0, rc = 1;
    memset(&conn, 0, sizeof conn);
    while ((opt = getopt_long(argc, argv, "h", longopts, &li)) != -1) {
        int c = jp_conn_opt(&conn, opt, optarg, errmsg, sizeof errmsg);
        if (c < 0) {
            fprintf(stderr, "jp_final_read: %s\n", errmsg);
            return 2;
        }
        if (c > 0)
            continue;
        int bad = 0;
        switch (opt) {
        case 't': topic = optarg; break;
        case 'p': process = optarg; break;
        case 'H': history = optarg; break;
        case 'n': bad = jp_parse_i64(optarg, 1, 100000, &partitions); break;
        case 'T': bad = jp_parse_seconds(optarg, 86400, &timeout); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
        if (bad) {
            fprintf(stderr, "jp_final_read: bad value '%s' for --%s\n", optarg, longopts[li].name);
            return 2;
        }
    }
    if (topic == NULL || partitions == 0 || optind != argc) {
        usage(stderr);
        return 2;
    }
    if (jp_hist_open(&hist, history, errmsg, sizeof errmsg) != 0) {
        fprintf(stderr, "jp_final_read: %s\n", errmsg);
        return 1;
    }
    static const char *const defaults[] = {
        "auto.offset.reset", "error", "request.timeout.ms", "5000", "fetch.max.wait.ms", "200",
        "client.id", "jp_final_read", NULL,
    };
    ferry_conf_t *conf = jp_conf_new(&conn, defaults, errmsg, sizeof errmsg);
    if (conf == NULL) {
        fprintf(stderr, "jp_final_read: %s\n", errmsg);
        goto err_after_hist;
    }
    ferry_client_t *client = ferry_client_new(FERRY_CONSUMER, conf, errmsg, sizeof errmsg);
    if (client == NULL) {
        fprintf(stderr, "jp_final_read: %s\n", errmsg);
        goto err_after_hist;
    }
    jp_install_signals();
    double deadline = jp_now() + timeout;
    int incomplete = 0;
    int64_t total = 0;
    for (int32_t p = 0; p < (int32_t)partitions; p++) {
        struct recs r;
        struct placement pl;
        int64_t lo = -1, hi = -1;
        memset(&r, 0, sizeof r);
        int ok = read_partition(client, topic, p, deadline, &r, &lo, &hi, errmsg, sizeof errmsg) == 0;
        get_placement(client, topic, p, ok ? 5000 : 1000, &pl); /* past the bound: a short last look */
        write_line(&hist, process, ok, p, &r, lo, hi, &pl, errmsg);
        if (!ok) {
            fprintf(stderr, "jp_final_read: %s/%d incomplete: %s\n", topic, (int)p, errmsg);
            incomplete++;
        }
        total += (int64_t)r.n;
        recs_free(&r);
        ferry_assign(client, NULL, 0);
    }
    fprintf(stderr, "jp_final_read: %" PRId64 " partitions, %" PRId64 " records, %d incomplete\n", partitions, total,
            incomplete);
    rc = incomplete ? 1 : 0;
    ferry_client_close(client, 1000);
    ferry_client_destroy(client);

err_after_hist:
    if (jp_hist_close(&hist, errmsg, sizeof errmsg) != 0) {
        fprintf(stderr, "jp_final_read: %s\n", errmsg);
        rc = 1;
    }
    return rc;
}
