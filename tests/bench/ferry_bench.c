/* ferry_bench.c: libferry benchmarks against ferryd: produce throughput, open-loop latency, consume, failover, groups. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <pthread.h>
#include <unistd.h>
#include <time.h>

#include "ferry.h"
#include "ferrytest.h"

/*
 * Usage: ferry_bench MODE --brokers HOST:PORT --ca FILE [options]
 *   produce   --records N --size B --linger MS [--partitions P]      closed loop, as fast as possible
 *   latency   --rate R --seconds S --warmup S --size B [--linger MS]  open loop at R records/s
 *   consume   --bytes N --size B                                      fill N bytes, then read them back
 *   failover  --kill-pid PID [--victim ID --survivors HOST:PORT,...]  kill -9 PID (broker ID, the leader of
 *             partition 0 of bench-failover) right after an acknowledgement, time the kill to the next
 *             acknowledgement (and to the new leader in the metadata of the survivors)
 *   leaders   --topic T --partitions P [--create 1] --seconds S        (scale section) optionally create T with
 *             P partitions, then poll the metadata until every partition of T has a leader; times both from
 *             the start of this process (brokers that are still starting are retried until S seconds)
 *   group-rebalance --partitions P --members N [--session MS]         (groups.sh) rebalance times of a group
 *             of N members over P partitions: initial join, one more joins, it leaves, one killed (SIGKILL)
 *   group-consume --partitions P --bytes N --members M                 (groups.sh) fill, then read everything
 *             with a group of 1 and a group of M consumers (threads)
 *   group-commit --partitions P --seconds S [--inflight W]             (groups.sh) commit rate, sync one at a
 *             time and async with up to W in flight
 *   group-member --topic T --group G [--session MS]                    the member group-rebalance kills
 * Every mode takes --replicas RF (default -1: the broker's default) for the topics it creates; produce and
 * latency take --conf KEY=VALUE (repeatable, at most 16) for further producer settings (batch.size, ...).
 * Each mode prints human lines and one machine line "RESULT mode=... key=value ..." for run.sh.
 * Value bytes are counted as payload (MB = 10^6 bytes).
 */

struct opts {
    const char *mode;
    const char *brokers;
    const char *ca;
    long records;
    long size;
    long linger;
    long partitions;
    long rate;
    long seconds;
    long warmup;
    long long bytes;
    long replicas;
    long kill_pid;
    long victim;
    const char *survivors;
    const char *topic; /* leaders */
    long create;       /* leaders: 1 = create the topic first */
    /* --conf KEY=VALUE (repeatable): producer settings on top of the bench's own (produce, latency) */
    const char *conf[16];
    int nconf;
    /* consumer-group modes */
    long members;    /* group-rebalance: members (10); group-consume: members of the second group (3) */
    long session_ms; /* session.timeout.ms of the members (10000) */
    long inflight;   /* group-commit: async commits outstanding at most (64) */
    const char *group; /* group-member */
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "ferry_bench: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

static ferry_conf_t *base_conf(const struct opts *o)
{
    ferry_conf_t *c = ferry_conf_new();
    char err[512];
    if (!c)
        die("out of memory");
    if (ferry_conf_set(c, "bootstrap.servers", o->brokers, err, sizeof(err)) ||
        ferry_conf_set(c, "security.protocol", "tls", err, sizeof(err)) ||
        ferry_conf_set(c, "ssl.ca.location", o->ca, err, sizeof(err)))
        die("conf: %s", err);
    return c;
}

static void conf_set(ferry_conf_t *c, const char *k, const char *v)
{
    char err[512];
    if (ferry_conf_set(c, k, v, err, sizeof(err)) != FERRY_ERR_NONE)
        die("conf %s=%s: %s", k, v, err);
}

static void conf_set_long(ferry_conf_t *c, const char *k, long v)
{
    char buf[32];
    snprintf(buf, sizeof(buf), "%ld", v);
    conf_set(c, k, buf);
}

static void create_topic(const struct opts *o, const char *name, int32_t partitions)
{
    char err[512] = "";
    ferry_conf_t *conf = base_conf(o);
    ferry_client_t *a = ferry_client_new(FERRY_ADMIN, conf, err, sizeof(err));
    if (!a)
        die("admin client: %s", err);
    ferry_err_t e = ferry_admin_create_topic(a, name, partitions, (int32_t)o->replicas, NULL, NULL, 0, 10000, err,
                                             sizeof(err));
    if (e != FERRY_ERR_NONE && e != FERRY_ERR_TOPIC_ALREADY_EXISTS)
        die("create topic %s: %s: %s", name, ferry_err_name(e), err);
    /* In a cluster each partition elects its leader after the create returns: wait for all of them. */
    double deadline = now_s() + 60;
    for (;;) {
        ferry_metadata_t *md = NULL;
        const char *topics[] = {name};
        size_t led = 0, n = 0;
        if (ferry_admin_describe_cluster(a, topics, 1, &md, 10000, err, sizeof(err)) == FERRY_ERR_NONE &&
            ferry_metadata_topic_count(md) == 1 && ferry_metadata_topic_err(md, 0) == FERRY_ERR_NONE) {
            n = ferry_metadata_partition_count(md, 0);
            for (size_t p = 0; p < n; p++)
                if (ferry_metadata_partition_leader(md, 0, p) >= 0 &&
                    ferry_metadata_partition_err(md, 0, p) == FERRY_ERR_NONE)
                    led++;
        }
        ferry_metadata_destroy(md);
        if (n == (size_t)partitions && led == n)
            break;
        if (now_s() > deadline)
            die("topic %s: %zu of %d partitions have a leader after 60 s", name, led, (int)partitions);
        struct timespec ts = {0, 100000000};
        nanosleep(&ts, NULL);
    }
    ferry_client_destroy(a);
}

/* ---- produce (closed loop) ---- */

struct counts {
    size_t ok, failed;
    ferry_err_t first_err;
};

static void count_cb(ferry_client_t *c, const ferry_delivery_t *d, void *opaque)
{
    (void)c;
    struct counts *n = opaque;
    if (d->err == FERRY_ERR_NONE) {
        n->ok++;
    } else {
        if (!n->failed)
            n->first_err = d->err;
        n->failed++;
    }
}

/*
 * The producer settings a Kafka user would pick for the test (linger.ms, then every --conf KEY=VALUE),
 * printed as one "producer:" line so the figures say what they were measured with.
 */
static void producer_conf(const struct opts *o, ferry_conf_t *conf, long linger)
{
    char line[1024];
    size_t off = 0;
    conf_set_long(conf, "linger.ms", linger);
    off += (size_t)snprintf(line, sizeof(line), "producer: acks=all enable.idempotence=true linger.ms=%ld", linger);
    for (int i = 0; i < o->nconf; i++) {
        char key[128];
        const char *eq = strchr(o->conf[i], '=');
        if (eq == NULL || eq == o->conf[i] || (size_t)(eq - o->conf[i]) >= sizeof(key))
            die("--conf %s: expected KEY=VALUE", o->conf[i]);
        memcpy(key, o->conf[i], (size_t)(eq - o->conf[i]));
        key[eq - o->conf[i]] = '\0';
        conf_set(conf, key, eq + 1);
        if (off < sizeof(line))
            off += (size_t)snprintf(line + off, sizeof(line) - off, " %s", o->conf[i]);
    }
    printf("%s\n", line);
}

/*
 * Produces n records of size bytes to topic as fast as the producer takes them; returns seconds. Before
 * the clock starts, one 1-byte record goes to each of the topic's `partitions` partitions (so start-up
 * is not timed: connections, metadata, producer id, and in a cluster every partition's freshly created
 * Raft group has taken its first entry).
 */
static double produce_n(const struct opts *o, const char *topic, long partitions, long n, long linger,
                        struct counts *cnt)
{
    ferry_conf_t *conf = base_conf(o);
    producer_conf(o, conf, linger);
    conf_set(conf, "queue.buffering.max.messages", "200000");
    conf_set(conf, "delivery.timeout.ms", "120000");
    ferry_conf_set_delivery_cb(conf, count_cb);
    ferry_conf_set_opaque(conf, cnt);
    char err[512] = "";
    ferry_client_t *p = ferry_client_new(FERRY_PRODUCER, conf, err, sizeof(err));
    if (!p)
        die("producer: %s", err);
    uint8_t *value = malloc((size_t)o->size);
    if (!value)
        die("out of memory");
    ft_fill_pattern(value, (size_t)o->size, 42);
    for (long k = 0; k < partitions; k++) {
        ferry_record_t warm = {.topic = topic, .partition = (int32_t)k, .value = value, .value_len = 1};
        if (ferry_produce(p, &warm, 0) != FERRY_ERR_NONE)
            die("warm-up produce failed");
    }
    if (ferry_flush(p, 30000) != FERRY_ERR_NONE)
        die("warm-up produce failed");
    memset(cnt, 0, sizeof(*cnt));
    double t0 = now_s();
    for (long i = 0; i < n;) {
        ferry_record_t rec = {.topic = topic, .partition = FERRY_PARTITION_ANY, .value = value,
                              .value_len = (size_t)o->size};
        ferry_err_t e = ferry_produce(p, &rec, FERRY_F_NONBLOCK);
        if (e == FERRY_ERR__QUEUE_FULL) {
            ferry_poll(p, 1);
            continue;
        }
        if (e != FERRY_ERR_NONE)
            die("produce: %s", ferry_err_name(e));
        i++;
        if ((i & 255) == 0)
            ferry_poll(p, 0);
    }
    ferry_err_t fe = ferry_flush(p, 120000);
    double t = now_s() - t0;
    if (fe != FERRY_ERR_NONE)
        die("flush: %s", ferry_err_name(fe));
    ferry_client_destroy(p);
    free(value);
    return t;
}

static int mode_produce(const struct opts *o)
{
    char topic[64];
    snprintf(topic, sizeof(topic), "bench-produce-l%ld-p%ld", o->linger, o->partitions);
    create_topic(o, topic, (int32_t)o->partitions);
    struct counts cnt;
    double t = produce_n(o, topic, o->partitions, o->records, o->linger, &cnt);
    double rps = (double)cnt.ok / t, mbps = (double)cnt.ok * (double)o->size / t / 1e6;
    printf("produce: %ld records of %ld B, linger.ms=%ld, %ld partition(s): %.2f s, %.0f records/s, %.1f MB/s, "
           "%zu failed%s%s\n",
           o->records, o->size, o->linger, o->partitions, t, rps, mbps, cnt.failed, cnt.failed ? " first: " : "",
           cnt.failed ? ferry_err_name(cnt.first_err) : "");
    printf("RESULT mode=produce linger=%ld partitions=%ld records=%zu failed=%zu seconds=%.3f rps=%.0f mbps=%.2f\n",
           o->linger, o->partitions, cnt.ok, cnt.failed, t, rps, mbps);
    return cnt.failed ? 1 : 0;
}

/* ---- latency (open loop) ---- */

struct lat {
    int64_t *intended; /* ns, per record */
    double *ms;        /* latency per record (ms), NAN until acknowledged */
    size_t acked, failed;
};

static void lat_cb(ferry_client_t *c, const ferry_delivery_t *d, void *opaque)
{
    (void)c;
    struct lat *l = opaque;
    size_t i = (size_t)(uintptr_t)d->opaque;
    if (d->err != FERRY_ERR_NONE) {
        l->failed++;
        return;
    }
    l->ms[i] = (double)(now_ns() - l->intended[i]) / 1e6;
    l->acked++;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(const double *sorted, size_t n, double p)
{
    if (n == 0)
        return NAN;
    size_t i = (size_t)ceil(p / 100.0 * (double)n);
    return sorted[i ? i - 1 : 0];
}

static int mode_latency(const struct opts *o)
{
    const char *topic = "bench-latency";
    create_topic(o, topic, (int32_t)o->partitions);
    size_t total = (size_t)(o->rate * (o->seconds + o->warmup));
    size_t warm = (size_t)(o->rate * o->warmup);
    struct lat l = {calloc(total, sizeof(int64_t)), calloc(total, sizeof(double)), 0, 0};
    if (!l.intended || !l.ms)
        die("out of memory");
    for (size_t i = 0; i < total; i++)
        l.ms[i] = NAN;
    ferry_conf_t *conf = base_conf(o);
    producer_conf(o, conf, o->linger);
    ferry_conf_set_delivery_cb(conf, lat_cb);
    ferry_conf_set_opaque(conf, &l);
    char err[512] = "";
    ferry_client_t *p = ferry_client_new(FERRY_PRODUCER, conf, err, sizeof(err));
    if (!p)
        die("producer: %s", err);
    uint8_t *value = malloc((size_t)o->size);
    if (!value)
        die("out of memory");
    ft_fill_pattern(value, (size_t)o->size, 7);
    ferry_record_t warmrec = {.topic = topic, .partition = FERRY_PARTITION_ANY, .value = value, .value_len = 1,
                              .opaque = NULL};
    l.intended[0] = now_ns(); /* index 0 doubles as the warm-up record: overwritten below */
    if (ferry_produce(p, &warmrec, 0) != FERRY_ERR_NONE || ferry_flush(p, 10000) != FERRY_ERR_NONE)
        die("warm-up produce failed");
    l.acked = 0;
    l.ms[0] = NAN;

    const int64_t interval = 1000000000LL / o->rate;
    const int64_t t0 = now_ns() + 1000000;
    size_t late = 0;
    for (size_t i = 0; i < total;) {
        int64_t due = t0 + (int64_t)i * interval, now = now_ns();
        if (now < due) {
            ferry_poll(p, 0);
            int64_t wait = due - now_ns();
            if (wait > 0) {
                struct timespec ts = {0, wait > 200000 ? 200000 : wait};
                nanosleep(&ts, NULL);
            }
            continue;
        }
        if (now - due > 1000000)
            late++;
        l.intended[i] = due; /* latency counts from when the record should have been sent */
        ferry_record_t rec = {.topic = topic, .partition = FERRY_PARTITION_ANY, .value = value,
                              .value_len = (size_t)o->size, .opaque = (void *)(uintptr_t)i};
        ferry_err_t e = ferry_produce(p, &rec, 0);
        if (e != FERRY_ERR_NONE)
            die("produce: %s", ferry_err_name(e));
        i++;
        ferry_poll(p, 0);
    }
    if (ferry_flush(p, 60000) != FERRY_ERR_NONE)
        die("flush timed out");
    ferry_client_destroy(p);
    free(value);

    size_t n = 0;
    double *v = malloc((total - warm + 1) * sizeof(double));
    if (!v)
        die("out of memory");
    for (size_t i = warm; i < total; i++)
        if (!isnan(l.ms[i]))
            v[n++] = l.ms[i];
    qsort(v, n, sizeof(double), cmp_double);
    double p50 = pct(v, n, 50), p99 = pct(v, n, 99), p999 = pct(v, n, 99.9), mx = n ? v[n - 1] : NAN;
    printf("latency: %ld records/s open loop for %ld s (+%ld s warm-up), %ld B, linger.ms=%ld: %zu measured, "
           "p50 %.2f ms, p99 %.2f ms, p99.9 %.2f ms, max %.2f ms; %zu failed; %zu sends more than 1 ms late\n",
           o->rate, o->seconds, o->warmup, o->size, o->linger, n, p50, p99, p999, mx, l.failed, late);
    printf("RESULT mode=latency rate=%ld measured=%zu failed=%zu p50=%.3f p99=%.3f p999=%.3f max=%.3f late=%zu\n",
           o->rate, n, l.failed, p50, p99, p999, mx, late);
    free(v);
    free(l.intended);
    free(l.ms);
    return l.failed ? 1 : 0;
}

/* ---- consume ---- */

static int mode_consume(const struct opts *o)
{
    const char *topic = "bench-consume";
    create_topic(o, topic, 1);
    long n = (long)(o->bytes / o->size);
    if (n < 1)
        n = 1;
    struct counts cnt;
    double tf = produce_n(o, topic, 1, n, 5, &cnt);
    if (cnt.failed)
        die("fill: %zu records failed (%s)", cnt.failed, ferry_err_name(cnt.first_err));
    printf("consume: filled %ld records (%.0f MB) in %.2f s (%.0f records/s)\n", n,
           (double)n * (double)o->size / 1e6, tf, (double)n / tf);

    ferry_conf_t *conf = base_conf(o);
    conf_set(conf, "max.partition.fetch.bytes", "4194304");
    char err[512] = "";
    ferry_client_t *c = ferry_client_new(FERRY_CONSUMER, conf, err, sizeof(err));
    if (!c)
        die("consumer: %s", err);
    ferry_topic_partition_t tp = {topic, 0, FERRY_OFFSET_BEGINNING};
    double t0 = now_s();
    if (ferry_assign(c, &tp, 1) != FERRY_ERR_NONE)
        die("assign failed");
    long got = 0;
    long long bytes = 0;
    double last = t0;
    /* n + 1: the warm-up record of produce_n is in the topic too. */
    while (got < n + 1) {
        ferry_message_t *m = ferry_consumer_poll(c, 1000);
        if (!m) {
            if (now_s() - last > 30)
                die("consume stalled at %ld of %ld records", got, n + 1);
            continue;
        }
        if (ferry_message_err(m) != FERRY_ERR_NONE)
            die("consume: %s", ferry_err_name(ferry_message_err(m)));
        size_t vl;
        ferry_message_value(m, &vl);
        bytes += (long long)vl;
        got++;
        last = now_s();
        ferry_message_destroy(m);
    }
    double t = now_s() - t0;
    ferry_client_destroy(c);
    double rps = (double)got / t, mbps = (double)bytes / t / 1e6;
    printf("consume: read %ld records (%.0f MB) in %.2f s: %.0f records/s, %.1f MB/s\n", got, (double)bytes / 1e6, t,
           rps, mbps);
    printf("RESULT mode=consume records=%ld seconds=%.3f rps=%.0f mbps=%.2f fill_rps=%.0f\n", got, t, rps, mbps,
           (double)n / tf);
    return 0;
}

/* ---- failover ---- */

struct one {
    int done;
    ferry_err_t err;
};

static void one_cb(ferry_client_t *c, const ferry_delivery_t *d, void *opaque)
{
    (void)c;
    (void)opaque;
    struct one *r = d->opaque;
    r->err = d->err;
    r->done = 1;
}

/* Watches the metadata for a new leader of partition 0 while the probe waits for its acknowledgement. */
struct watch {
    ferry_client_t *admin; /* bootstrapped from the surviving brokers only */
    const char *topic;
    int32_t victim;
    double next, seen; /* now_s() of the next look, of the first look that saw a new leader (0 = none) */
    int32_t leader;
};

/* The leader of partition 0 of topic as the cluster reports it now, -1 if none or on error. */
static int32_t leader_of(ferry_client_t *a, const char *topic, int timeout_ms)
{
    char err[512] = "";
    ferry_metadata_t *md = NULL;
    const char *topics[] = {topic};
    int32_t leader = -1;
    if (ferry_admin_describe_cluster(a, topics, 1, &md, timeout_ms, err, sizeof(err)) == FERRY_ERR_NONE &&
        ferry_metadata_topic_count(md) == 1 && ferry_metadata_partition_count(md, 0) >= 1 &&
        ferry_metadata_partition_err(md, 0, 0) == FERRY_ERR_NONE)
        leader = ferry_metadata_partition_leader(md, 0, 0);
    ferry_metadata_destroy(md);
    return leader;
}

static void watch_step(struct watch *w)
{
    double t = now_s();
    if (!w || !w->admin || w->seen > 0 || t < w->next)
        return;
    w->next = t + 0.02;
    int32_t l = leader_of(w->admin, w->topic, 1000);
    if (l >= 0 && l != w->victim) {
        w->seen = now_s();
        w->leader = l;
    }
}

/*
 * Produces one record to partition 0 of topic and waits for its delivery report, producing it again after
 * every failed report, until one is acknowledged or deadline (now_s() clock) passes. Returns 0 when
 * acknowledged, -1 at the deadline; *errors counts the failed reports and sets *last_err to the last one.
 * w (NULL for none) is stepped while waiting.
 */
static int send_acked(ferry_client_t *p, const char *topic, const uint8_t *value, size_t len, double deadline,
                      size_t *errors, ferry_err_t *last_err, struct watch *w)
{
    while (now_s() < deadline) {
        struct one r = {0, FERRY_ERR_NONE};
        ferry_record_t rec = {.topic = topic, .partition = 0, .value = value, .value_len = len, .opaque = &r};
        ferry_err_t e = ferry_produce(p, &rec, 0);
        if (e != FERRY_ERR_NONE) {
            (*errors)++;
            *last_err = e;
            ferry_poll(p, 10);
            continue;
        }
        while (!r.done) {
            ferry_poll(p, 1);
            watch_step(w);
            if (now_s() > deadline + 60)
                die("no delivery report 60 s past the deadline");
        }
        if (r.err == FERRY_ERR_NONE)
            return 0;
        (*errors)++;
        *last_err = r.err;
    }
    return -1;
}

static int mode_failover(const struct opts *o)
{
    const char *topic = "bench-failover";
    if (o->kill_pid <= 1)
        die("failover needs --kill-pid PID");
    create_topic(o, topic, 1);
    ferry_conf_t *conf = base_conf(o);
    conf_set(conf, "linger.ms", "0");
    conf_set(conf, "delivery.timeout.ms", "30000");
    ferry_conf_set_delivery_cb(conf, one_cb);
    char err[512] = "";
    ferry_client_t *p = ferry_client_new(FERRY_PRODUCER, conf, err, sizeof(err));
    if (!p)
        die("producer: %s", err);
    uint8_t *value = malloc((size_t)o->size);
    if (!value)
        die("out of memory");
    ft_fill_pattern(value, (size_t)o->size, 9);
    size_t errors = 0;
    ferry_err_t last = FERRY_ERR_NONE;
    /* Steady state first: the connection, metadata and leader are warm when the leader dies. */
    double warm_t0 = now_s();
    for (int i = 0; i < 20; i++)
        if (send_acked(p, topic, value, (size_t)o->size, now_s() + 30, &errors, &last, NULL) != 0)
            die("warm-up produce not acknowledged in 30 s (%s)", ferry_err_name(last));
    double warm_ms = (now_s() - warm_t0) * 1e3 / 20;
    errors = 0;
    struct watch w = {NULL, topic, (int32_t)o->victim, 0, 0, -1};
    if (o->survivors) {
        ferry_conf_t *ac = base_conf(o);
        conf_set(ac, "bootstrap.servers", o->survivors);
        w.admin = ferry_client_new(FERRY_ADMIN, ac, err, sizeof(err));
        if (!w.admin)
            die("admin client: %s", err);
        int32_t now_leader = leader_of(w.admin, topic, 10000);
        if (now_leader != w.victim) { /* leadership moved since the caller looked: no kill this time */
            printf("failover: broker %d is not the leader of %s/0 (%d is): skipped\n", (int)w.victim, topic,
                   (int)now_leader);
            printf("RESULT mode=failover skipped=1\n");
            ferry_client_destroy(w.admin);
            ferry_client_destroy(p);
            free(value);
            return 0;
        }
    }
    /* The previous record is acknowledged and none is in flight: every acknowledgement from here on
     * comes from a live leader, hence not the killed one. */
    if (kill((pid_t)o->kill_pid, SIGKILL) != 0)
        die("kill -9 %ld: %s", o->kill_pid, strerror(errno));
    double tk = now_s();
    if (send_acked(p, topic, value, (size_t)o->size, tk + 60, &errors, &last, &w) != 0)
        die("no acknowledgement within 60 s of the kill (%zu failed reports, last %s)", errors,
            ferry_err_name(last));
    double ms = (now_s() - tk) * 1e3;
    ferry_client_destroy(p);
    free(value);
    int32_t leader = w.leader;
    double seen_ms = w.seen > 0 ? (w.seen - tk) * 1e3 : NAN;
    if (w.admin) {
        if (leader < 0)
            leader = leader_of(w.admin, topic, 10000);
        ferry_client_destroy(w.admin);
    }
    printf("failover: killed pid %ld (broker %ld, leader of %s/0): new leader %d in the metadata after %.0f ms, "
           "first acknowledgement after %.0f ms; %zu failed attempts in between%s%s (steady state: %.1f ms per "
           "acknowledged record)\n",
           o->kill_pid, o->victim, topic, (int)leader, seen_ms, ms, errors, errors ? ", last " : "",
           errors ? ferry_err_name(last) : "", warm_ms);
    printf("RESULT mode=failover ms=%.1f leader_ms=%.1f victim=%ld leader=%d errors=%zu\n", ms, seen_ms, o->victim,
           (int)leader, errors);
    if (o->victim >= 0 && leader == o->victim)
        die("the killed broker %ld is still reported as the leader", o->victim);
    return 0;
}

/* ---- leaders (scale section of cluster.sh) ---- */

/* How many partitions of topic have a leader now; *n gets the partition count (0 if unknown). */
static size_t count_led(ferry_client_t *a, const char *topic, size_t *n)
{
    char err[512] = "";
    ferry_metadata_t *md = NULL;
    const char *topics[] = {topic};
    size_t led = 0;
    *n = 0;
    if (ferry_admin_describe_cluster(a, topics, 1, &md, 5000, err, sizeof(err)) == FERRY_ERR_NONE &&
        ferry_metadata_topic_count(md) == 1 && ferry_metadata_topic_err(md, 0) == FERRY_ERR_NONE) {
        *n = ferry_metadata_partition_count(md, 0);
        for (size_t p = 0; p < *n; p++)
            if (ferry_metadata_partition_leader(md, 0, p) >= 0 &&
                ferry_metadata_partition_err(md, 0, p) == FERRY_ERR_NONE)
                led++;
    }
    ferry_metadata_destroy(md);
    return led;
}

/*
 * Times, from the start of this process, the create of topic (with --create 1; a create that times out is
 * not fatal: the brokers may still be opening the groups, the metadata tells) and the moment every one of
 * its partitions has a leader. Never asserts a figure: exits 1 only when the deadline passes first.
 */
static int mode_leaders(const struct opts *o)
{
    char err[512] = "";
    if (!o->topic)
        die("leaders: --topic is required");
    double t0 = now_s(), deadline = t0 + (double)o->seconds;
    ferry_conf_t *conf = base_conf(o);
    ferry_client_t *a = ferry_client_new(FERRY_ADMIN, conf, err, sizeof(err));
    if (!a)
        die("admin client: %s", err);
    double create_ms = -1;
    if (o->create) {
        ferry_err_t e;
        for (;;) {
            int left_ms = (int)((deadline - now_s()) * 1000);
            e = ferry_admin_create_topic(a, o->topic, (int32_t)o->partitions, (int32_t)o->replicas, NULL, NULL, 0,
                                         left_ms > 1000 ? left_ms : 1000, err, sizeof(err));
            if (e == FERRY_ERR_NONE || e == FERRY_ERR_TOPIC_ALREADY_EXISTS || e == FERRY_ERR_REQUEST_TIMED_OUT ||
                e == FERRY_ERR__TIMED_OUT || now_s() > deadline)
                break;
            struct timespec ts = {0, 200000000};
            nanosleep(&ts, NULL);
        }
        create_ms = (now_s() - t0) * 1000;
        if (e != FERRY_ERR_NONE)
            printf("create %s: %s: %s (polling the metadata anyway)\n", o->topic, ferry_err_name(e), err);
    }
    size_t led = 0, n = 0, best = 0;
    for (;;) {
        led = count_led(a, o->topic, &n);
        best = led > best ? led : best;
        if (n == (size_t)o->partitions && led == n)
            break;
        if (now_s() > deadline) {
            ferry_client_destroy(a);
            die("topic %s: %zu of %ld partitions had a leader at most, after %ld s", o->topic, best, o->partitions,
                o->seconds);
        }
        struct timespec ts = {0, 100000000};
        nanosleep(&ts, NULL);
    }
    double all_ms = (now_s() - t0) * 1000;
    printf("%s: %zu partitions, all with a leader %.0f ms after start\n", o->topic, n, all_ms);
    printf("RESULT mode=leaders partitions=%zu create_ms=%.0f leaders_ms=%.0f\n", n, create_ms, all_ms);
    ferry_client_destroy(a);
    return 0;
}

/* ---- consumer groups (tests/bench/groups.sh) ---- */

/*
 * The group modes use libferry's defaults except where a line says otherwise; the broker's
 * group.heartbeat.interval.ms (default 3 s) paces every rebalance, and is printed by groups.sh.
 */
static ferry_conf_t *group_conf(const struct opts *o, const char *group, long idx)
{
    ferry_conf_t *conf = base_conf(o);
    char id[48];
    snprintf(id, sizeof(id), "bench-member-%ld", idx);
    conf_set(conf, "group.id", group);
    conf_set(conf, "client.id", id);
    conf_set(conf, "auto.offset.reset", "earliest");
    conf_set_long(conf, "session.timeout.ms", o->session_ms);
    return conf;
}

static ferry_client_t *group_member_new(const struct opts *o, const char *group, const char *topic, long idx,
                                        ferry_conf_t *conf)
{
    char err[512] = "";
    if (conf == NULL)
        conf = group_conf(o, group, idx);
    ferry_client_t *c = ferry_client_new(FERRY_CONSUMER, conf, err, sizeof(err));
    if (!c)
        die("consumer %ld: %s", idx, err);
    if (ferry_subscribe(c, &topic, 1) != FERRY_ERR_NONE)
        die("subscribe of member %ld failed", idx);
    return c;
}

/*
 * Whether the n in-process members cs[0..n) hold the assignment a group of n + outside members
 * settles on for `parts` partitions: no partition twice, every member's count within one of
 * parts / (n + outside), and exactly `parts` minus what the outside members can hold covered (all
 * of them when outside == 0). The assignment is what each member has in effect (ferry_assignment).
 */
static int group_settled(ferry_client_t **cs, size_t n, size_t outside, long parts, uint8_t *owned)
{
    size_t members = n + outside, lo = (size_t)parts / members, hi = lo + ((size_t)parts % members ? 1 : 0);
    size_t covered = 0;
    int ok = 1;
    memset(owned, 0, (size_t)parts);
    for (size_t i = 0; i < n && ok; i++) {
        ferry_topic_partition_t *tp = NULL;
        size_t k = 0;
        if (ferry_assignment(cs[i], &tp, &k) != FERRY_ERR_NONE)
            die("ferry_assignment failed");
        if (k < lo || k > hi)
            ok = 0;
        for (size_t j = 0; j < k && ok; j++) {
            int32_t p = tp[j].partition;
            if (p < 0 || p >= parts || owned[p])
                ok = 0;
            else
                owned[p] = 1;
        }
        covered += k;
        ferry_topic_partitions_destroy(tp);
    }
    if (!ok)
        return 0;
    if (outside == 0)
        return covered == (size_t)parts;
    return covered + outside * lo <= (size_t)parts && covered + outside * hi >= (size_t)parts;
}

/* Polls cs[0..n) round-robin until group_settled holds (returns the seconds waited) or timeout_s. */
static double group_wait_settled(ferry_client_t **cs, size_t n, size_t outside, long parts, double timeout_s,
                                 const char *what)
{
    uint8_t *owned = malloc((size_t)parts);
    if (!owned)
        die("out of memory");
    double t0 = now_s();
    for (;;) {
        for (size_t i = 0; i < n; i++) {
            ferry_message_t *m = ferry_consumer_poll(cs[i], 0);
            if (m)
                ferry_message_destroy(m);
        }
        if (group_settled(cs, n, outside, parts, owned))
            break;
        if (now_s() - t0 > timeout_s)
            die("%s: the group of %zu members did not settle within %.0f s", what, n + outside, timeout_s);
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
    free(owned);
    return now_s() - t0;
}

/* Starts `ferry_bench group-member` (this binary) as a separate process; returns its pid. */
static pid_t spawn_member(const struct opts *o, const char *group, const char *topic)
{
    char session[32];
    snprintf(session, sizeof(session), "%ld", o->session_ms);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0) {
        /* never outlives the bench, whatever way the bench ends */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
            _exit(1);
        const char *argv[] = {"ferry_bench", "group-member", "--brokers", o->brokers, "--ca", o->ca,
                              "--topic", topic, "--group", group, "--session", session, NULL};
        execv("/proc/self/exe", (char *const *)(uintptr_t)argv);
        _exit(127);
    }
    return pid;
}

/* group-member (the process group-rebalance kills): joins --group on --topic and polls for up to 300 s. */
static int mode_group_member(const struct opts *o)
{
    if (!o->topic || !o->group)
        die("group-member: --topic and --group are required");
    ferry_client_t *c = group_member_new(o, o->group, o->topic, 99, NULL);
    double t0 = now_s();
    while (now_s() - t0 < 300) {
        ferry_message_t *m = ferry_consumer_poll(c, 100);
        if (m)
            ferry_message_destroy(m);
    }
    ferry_consumer_close(c, 5000);
    ferry_client_destroy(c);
    return 0;
}

/*
 * group-rebalance: --members N (10) members of one group on a topic of --partitions P (100). Times,
 * until the new assignment is in effect on every member (group_settled): the initial join of the N at
 * once, one more member joining, that member leaving (ferry_consumer_close), and a member in another
 * process killed with SIGKILL (reassigned after its session timeout, --session MS).
 */
static int mode_group_rebalance(const struct opts *o)
{
    const char *topic = "bench-groups-rebalance", *group = "bench-rebalance";
    size_t n = (size_t)o->members;
    if (n < 1 || n > 100)
        die("--members must be in [1, 100]");
    create_topic(o, topic, (int32_t)o->partitions);
    ferry_client_t **cs = calloc(n + 1, sizeof(*cs));
    if (!cs)
        die("out of memory");
    double t0 = now_s();
    for (size_t i = 0; i < n; i++)
        cs[i] = group_member_new(o, group, topic, (long)i, NULL);
    group_wait_settled(cs, n, 0, o->partitions, 120, "initial join");
    double initial = now_s() - t0; /* from the first subscribe */
    printf("group-rebalance: %zu members joined at once, %ld partitions in effect after %.0f ms\n", n, o->partitions,
           initial * 1e3);

    t0 = now_s();
    cs[n] = group_member_new(o, group, topic, (long)n, NULL);
    group_wait_settled(cs, n + 1, 0, o->partitions, 120, "join");
    double join = now_s() - t0;
    printf("group-rebalance: member %zu joined: new assignment in effect on all %zu members after %.0f ms\n", n + 1,
           n + 1, join * 1e3);

    t0 = now_s();
    if (ferry_consumer_close(cs[n], 10000) != FERRY_ERR_NONE)
        die("close of the extra member failed");
    group_wait_settled(cs, n, 0, o->partitions, 120, "leave");
    double leave = now_s() - t0;
    ferry_client_destroy(cs[n]);
    cs[n] = NULL;
    printf("group-rebalance: member %zu closed: new assignment in effect on the %zu others after %.0f ms\n", n + 1, n,
           leave * 1e3);

    /* The victim lives in its own process so that SIGKILL is a real crash: no leave, no goodbye. */
    pid_t victim = spawn_member(o, group, topic);
    group_wait_settled(cs, n, 1, o->partitions, 120, "join of the victim");
    int status;
    if (waitpid(victim, &status, WNOHANG) != 0)
        die("the victim member exited early");
    if (kill(victim, SIGKILL) != 0)
        die("kill -9 %d: %s", (int)victim, strerror(errno));
    t0 = now_s();
    waitpid(victim, &status, 0);
    group_wait_settled(cs, n, 0, o->partitions, 120 + (double)o->session_ms / 1e3, "kill");
    double killed = now_s() - t0;
    printf("group-rebalance: member in pid %d killed (SIGKILL): its partitions in effect on the %zu others after "
           "%.0f ms (session.timeout.ms=%ld)\n",
           (int)victim, n, killed * 1e3, o->session_ms);

    for (size_t i = 0; i < n; i++) {
        ferry_consumer_close(cs[i], 10000);
        ferry_client_destroy(cs[i]);
    }
    free(cs);
    printf("RESULT mode=group-rebalance members=%zu partitions=%ld initial_ms=%.0f join_ms=%.0f leave_ms=%.0f "
           "kill_ms=%.0f session_ms=%ld\n",
           n, o->partitions, initial * 1e3, join * 1e3, leave * 1e3, killed * 1e3, o->session_ms);
    return 0;
}

/* One consumer thread of group-consume; the threads share the counters under `lock`. */
struct gc_shared {
    pthread_mutex_t lock;
    const struct opts *o;
    const char *group, *topic;
    long long want, got, bytes;
    double first, last; /* now_s() of the first and the last record */
    int stalled;
};

struct gc_thread {
    struct gc_shared *sh;
    long idx;
    pthread_t tid;
};

static void *gc_run(void *arg)
{
    struct gc_thread *t = arg;
    struct gc_shared *sh = t->sh;
    ferry_conf_t *conf = group_conf(sh->o, sh->group, t->idx);
    conf_set(conf, "max.partition.fetch.bytes", "4194304");
    ferry_client_t *c = group_member_new(sh->o, sh->group, sh->topic, t->idx, conf);
    double idle_since = now_s();
    for (;;) {
        pthread_mutex_lock(&sh->lock);
        int done = sh->got >= sh->want || sh->stalled;
        pthread_mutex_unlock(&sh->lock);
        if (done)
            break;
        ferry_message_t *m = ferry_consumer_poll(c, 100);
        if (!m) {
            if (now_s() - idle_since > 60) {
                pthread_mutex_lock(&sh->lock);
                sh->stalled = 1;
                pthread_mutex_unlock(&sh->lock);
            }
            continue;
        }
        if (ferry_message_err(m) != FERRY_ERR_NONE)
            die("group consume: %s", ferry_err_name(ferry_message_err(m)));
        size_t vl = 0;
        ferry_message_value(m, &vl);
        ferry_message_destroy(m);
        double now = now_s();
        idle_since = now;
        pthread_mutex_lock(&sh->lock);
        if (sh->got == 0)
            sh->first = now;
        sh->got++;
        sh->bytes += (long long)vl;
        sh->last = now;
        pthread_mutex_unlock(&sh->lock);
    }
    ferry_consumer_close(c, 10000);
    ferry_client_destroy(c);
    return NULL;
}

/* Reads the whole topic with a fresh group of `members` consumers (threads); fills *sh with the figures. */
static double group_consume_all(const struct opts *o, const char *topic, const char *group, long members,
                                long long want, struct gc_shared *sh)
{
    struct gc_thread th[16];
    if (members < 1 || members > 16)
        die("group consume: 1..16 members");
    memset(sh, 0, sizeof(*sh));
    pthread_mutex_init(&sh->lock, NULL);
    sh->o = o;
    sh->group = group;
    sh->topic = topic;
    sh->want = want;
    double t0 = now_s();
    for (long i = 0; i < members; i++) {
        th[i].sh = sh;
        th[i].idx = i;
        if (pthread_create(&th[i].tid, NULL, gc_run, &th[i]) != 0)
            die("pthread_create failed");
    }
    for (long i = 0; i < members; i++)
        pthread_join(th[i].tid, NULL);
    double t = sh->last - t0;
    pthread_mutex_destroy(&sh->lock);
    if (sh->got < want)
        die("group %s: read %lld of %lld records before stalling for 60 s", group, sh->got, want);
    return t;
}

/*
 * group-consume: fills a topic of --partitions P (12) with --bytes of records, then reads all of it
 * with a group of one consumer and with a group of --members M (3) consumers (threads of this
 * process, each a libferry client). Reports records/s and MB/s from the first record to the last
 * (and from subscribe, so the joins count too).
 */
static int mode_group_consume(const struct opts *o)
{
    const char *topic = "bench-groups-consume";
    create_topic(o, topic, (int32_t)o->partitions);
    long n = (long)(o->bytes / o->size);
    if (n < 1)
        n = 1;
    struct counts cnt;
    double tf = produce_n(o, topic, o->partitions, n, 5, &cnt);
    if (cnt.failed)
        die("fill: %zu records failed (%s)", cnt.failed, ferry_err_name(cnt.first_err));
    long long want = n + o->partitions; /* produce_n's warm-up records too */
    printf("group-consume: filled %ld records (%.0f MB) over %ld partitions in %.2f s\n", n,
           (double)n * (double)o->size / 1e6, o->partitions, tf);
    struct gc_shared one, many;
    double t1 = group_consume_all(o, topic, "bench-consume-1", 1, want, &one);
    double s1 = one.last - one.first;
    double tm = group_consume_all(o, topic, "bench-consume-n", o->members, want, &many);
    double sm = many.last - many.first;
    double r1 = (double)one.got / s1, rm = (double)many.got / sm;
    printf("group-consume: 1 consumer: %lld records in %.2f s from the first record (%.2f s from subscribe): "
           "%.0f records/s, %.1f MB/s\n",
           one.got, s1, t1, r1, (double)one.bytes / s1 / 1e6);
    printf("group-consume: group of %ld: %lld records in %.2f s from the first record (%.2f s from subscribe): "
           "%.0f records/s, %.1f MB/s; %.2fx the single consumer\n",
           o->members, many.got, sm, tm, rm, (double)many.bytes / sm / 1e6, rm / r1);
    printf("RESULT mode=group-consume records=%lld rps1=%.0f mbps1=%.2f total1_s=%.3f rpsn=%.0f mbpsn=%.2f "
           "totaln_s=%.3f members=%ld ratio=%.2f\n",
           want, r1, (double)one.bytes / s1 / 1e6, t1, rm, (double)many.bytes / sm / 1e6, tm, o->members, rm / r1);
    return 0;
}

struct commit_counts {
    long done, failed;
    ferry_err_t first_err;
};

static void commit_count_cb(ferry_client_t *c, ferry_err_t err, const ferry_topic_partition_t *offsets, size_t n,
                            void *opaque)
{
    (void)c;
    (void)offsets;
    (void)n;
    struct commit_counts *cc = opaque;
    cc->done++;
    if (err != FERRY_ERR_NONE) {
        if (!cc->failed)
            cc->first_err = err;
        cc->failed++;
    }
}

/*
 * group-commit: one member owning every partition of an empty topic of --partitions P commits one
 * partition's offset per call, round-robin, for --seconds S each: with ferry_commit_sync (one at a
 * time) and with ferry_commit_async keeping --inflight W commits outstanding. Offsets only grow.
 */
static int mode_group_commit(const struct opts *o)
{
    const char *topic = "bench-groups-commit";
    create_topic(o, topic, (int32_t)o->partitions);
    struct commit_counts cc = {0, 0, FERRY_ERR_NONE};
    ferry_conf_t *conf = group_conf(o, "bench-commit", 0);
    conf_set(conf, "enable.auto.commit", "false");
    ferry_conf_set_commit_cb(conf, commit_count_cb);
    ferry_conf_set_opaque(conf, &cc);
    ferry_client_t *c = group_member_new(o, "bench-commit", topic, 0, conf);
    group_wait_settled(&c, 1, 0, o->partitions, 120, "commit member join");
    int64_t *next = calloc((size_t)o->partitions, sizeof(*next));
    if (!next)
        die("out of memory");
    long k = 0;
    /* sync */
    long sync_n = 0;
    double t0 = now_s();
    while (now_s() - t0 < (double)o->seconds) {
        int32_t p = (int32_t)(k++ % o->partitions);
        ferry_topic_partition_t tp = {topic, p, ++next[p]};
        ferry_err_t e = ferry_commit_sync(c, &tp, 1, 10000);
        if (e != FERRY_ERR_NONE)
            die("commit_sync: %s", ferry_err_name(e));
        sync_n++;
    }
    double ts = now_s() - t0;
    /* async, up to --inflight outstanding (only these reach the commit callback) */
    cc = (struct commit_counts){0, 0, FERRY_ERR_NONE};
    long issued = 0;
    t0 = now_s();
    while (now_s() - t0 < (double)o->seconds) {
        if (issued - cc.done < o->inflight) {
            int32_t p = (int32_t)(k++ % o->partitions);
            ferry_topic_partition_t tp = {topic, p, ++next[p]};
            ferry_err_t e = ferry_commit_async(c, &tp, 1);
            if (e != FERRY_ERR_NONE)
                die("commit_async: %s", ferry_err_name(e));
            issued++;
            continue;
        }
        ferry_message_t *m = ferry_consumer_poll(c, 1);
        if (m)
            ferry_message_destroy(m);
    }
    while (cc.done < issued && now_s() - t0 < (double)o->seconds + 30) {
        ferry_message_t *m = ferry_consumer_poll(c, 10);
        if (m)
            ferry_message_destroy(m);
    }
    double ta = now_s() - t0;
    if (cc.done < issued)
        die("commit_async: %ld of %ld results after 30 s", cc.done, issued);
    free(next);
    ferry_consumer_close(c, 10000);
    ferry_client_destroy(c);
    double rs = (double)sync_n / ts, ra = (double)cc.done / ta;
    printf("group-commit: sync, one at a time: %ld commits in %.2f s: %.0f commits/s (%.2f ms each)\n", sync_n, ts, rs,
           ts * 1e3 / (double)sync_n);
    printf("group-commit: async, up to %ld in flight: %ld commits in %.2f s: %.0f commits/s, %ld failed%s%s; "
           "%.1fx sync\n",
           o->inflight, cc.done, ta, ra, cc.failed, cc.failed ? " first: " : "",
           cc.failed ? ferry_err_name(cc.first_err) : "", ra / rs);
    printf("RESULT mode=group-commit sync=%ld sync_rps=%.0f sync_ms=%.2f async=%ld async_rps=%.0f inflight=%ld "
           "failed=%ld\n",
           sync_n, rs, ts * 1e3 / (double)sync_n, cc.done, ra, o->inflight, cc.failed);
    return cc.failed ? 1 : 0;
}

static long num(const char *s, const char *what)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || !end || *end || v < 0)
        die("%s: not a non-negative integer: %s", what, s);
    return (long)v;
}

int main(int argc, char **argv)
{
    struct opts o = {.records = 200000, .size = 1024, .linger = 5, .partitions = 1, .rate = 5000, .seconds = 15,
                     .warmup = 2, .bytes = 1LL << 30, .replicas = -1, .kill_pid = 0, .victim = -1,
                     .survivors = NULL, .members = 10, .session_ms = 10000, .inflight = 64};
    if (argc < 2)
        die("usage: ferry_bench produce|latency|consume|failover|leaders|group-* --brokers HOST:PORT --ca FILE [options]");
    o.mode = argv[1];
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc)
            die("%s needs a value", a);
        const char *v = argv[++i];
        if (!strcmp(a, "--brokers"))
            o.brokers = v;
        else if (!strcmp(a, "--ca"))
            o.ca = v;
        else if (!strcmp(a, "--records"))
            o.records = num(v, a);
        else if (!strcmp(a, "--size"))
            o.size = num(v, a);
        else if (!strcmp(a, "--linger"))
            o.linger = num(v, a);
        else if (!strcmp(a, "--partitions"))
            o.partitions = num(v, a);
        else if (!strcmp(a, "--rate"))
            o.rate = num(v, a);
        else if (!strcmp(a, "--seconds"))
            o.seconds = num(v, a);
        else if (!strcmp(a, "--warmup"))
            o.warmup = num(v, a);
        else if (!strcmp(a, "--bytes"))
            o.bytes = num(v, a);
        else if (!strcmp(a, "--replicas"))
            o.replicas = num(v, a);
        else if (!strcmp(a, "--kill-pid"))
            o.kill_pid = num(v, a);
        else if (!strcmp(a, "--victim"))
            o.victim = num(v, a);
        else if (!strcmp(a, "--survivors"))
            o.survivors = v;
        else if (!strcmp(a, "--topic"))
            o.topic = v;
        else if (!strcmp(a, "--create"))
            o.create = num(v, a);
        else if (!strcmp(a, "--members"))
            o.members = num(v, a);
        else if (!strcmp(a, "--session"))
            o.session_ms = num(v, a);
        else if (!strcmp(a, "--inflight"))
            o.inflight = num(v, a);
        else if (!strcmp(a, "--group"))
            o.group = v;
        else if (!strcmp(a, "--conf") && o.nconf < (int)(sizeof(o.conf) / sizeof(o.conf[0])))
            o.conf[o.nconf++] = v;
        else
            die("unknown option %s", a);
    }
    if (!o.brokers || !o.ca)
        die("--brokers and --ca are required");
    if (o.size < 1 || o.rate < 1 || o.partitions < 1)
        die("--size, --rate and --partitions must be positive");
    if (!strcmp(o.mode, "produce"))
        return mode_produce(&o);
    if (!strcmp(o.mode, "latency"))
        return mode_latency(&o);
    if (!strcmp(o.mode, "consume"))
        return mode_consume(&o);
    if (!strcmp(o.mode, "failover"))
        return mode_failover(&o);
    if (!strcmp(o.mode, "leaders"))
        return mode_leaders(&o);
    if (!strcmp(o.mode, "group-rebalance"))
        return mode_group_rebalance(&o);
    if (!strcmp(o.mode, "group-consume"))
        return mode_group_consume(&o);
    if (!strcmp(o.mode, "group-commit"))
        return mode_group_commit(&o);
    if (!strcmp(o.mode, "group-member"))
        return mode_group_member(&o);
    die("unknown mode %s", o.mode);
}
