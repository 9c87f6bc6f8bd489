/* ferry_bench.c: libferry benchmarks against ferryd: produce throughput, open-loop latency, consume, failover. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/types.h>
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
                     .survivors = NULL};
    if (argc < 2)
        die("usage: ferry_bench produce|latency|consume|failover|leaders --brokers HOST:PORT --ca FILE [options]");
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
    die("unknown mode %s", o.mode);
}
