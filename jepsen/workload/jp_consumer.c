/* jp_consumer.c: Jepsen workload consumer: assign mode, or a consumer-group member with logged commits. */
/*
 * Assign mode (default): assigns partitions 0..N-1 of --topic from FERRY_OFFSET_BEGINNING and polls
 * for --duration seconds. Each batch of messages that ferry_consumer_poll hands over at once (the
 * first waited for up to --poll-ms, the rest taken while immediately available, at most
 * --max-records) is one history line
 * {"f":"poll","type":"ok","mode":"assign","group":null,"records":[[partition,offset,value],...]}.
 * auto.offset.reset defaults to "error": when a fetch position is out of range (a new leader whose
 * high watermark lags for a moment) the partition stops instead of silently jumping, the event is
 * logged as {"type":"info","f":"poll",...,"error":...}, and after 500 ms the consumer seeks back to
 * the offset after the last record it saw there. So every rewind or skip in its history is the
 * broker's doing, which is what the checker looks for.
 *
 * Group mode (--group G): subscribes to --topic in group G and polls the same way (poll lines with
 * "mode":"group","group":G). Every --commit-every polls or --commit-ms, it commits synchronously
 * the offset after the last record it logged of each partition it owns (moved since its last
 * commit), logging "commit" invoke and ok/fail/info lines. Assignment changes are "assign" lines.
 * At revocation the partitions' positions are committed before the revocation is acknowledged
 * (--revoke-commit auto: libferry's enable.auto.commit, whose results arrive through the commit
 * callback and are logged with "kind":"auto"; app: a commit_sync inside the rebalance callback).
 * At the end: a last commit, then ferry_consumer_close (leaves the group).
 *
 * --final-committed with --group G: reads the group's committed offsets of every partition once
 * (ferry_committed, retried for up to --duration) and logs one "committed" line; no subscription.
 * Line formats: jepsen/workload/README.md and docs/jepsen-checker.md.
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

/* The program's options. */
struct opts {
    struct jp_conn conn;
    const char *topic, *process, *history, *group;
    int64_t partitions, poll_ms, max_records, commit_every, commit_ms, commit_timeout_ms;
    double duration;
    int app_revoke_commit; /* --revoke-commit app */
    int final_committed;   /* --final-committed */
};

static void usage(FILE *f)
{
    fprintf(f, "usage: jp_consumer --brokers H:P,... --topic T --partitions N [options]\n"
               "  --process NAME      history process name (default c1)\n"
               "  --duration S        seconds of polling (default 10); with --final-committed the bound on it\n"
               "  --poll-ms MS        wait for the first message of a poll (default 100)\n"
               "  --max-records N     records per logged poll at most (default 500)\n"
               "  --history FILE      history file, appended to (default - = stdout)\n"
               "  --group G           group mode: subscribe in group G, commit what was logged\n"
               "  --commit-every N    group mode: commit after every N polls with records (default 10)\n"
               "  --commit-ms MS      group mode: and at least every MS ms when records moved (default 1000)\n"
               "  --commit-timeout-ms MS  group mode: bound on one commit_sync (default 5000)\n"
               "  --revoke-commit auto|app  group mode: who commits at revocation (default auto = libferry,\n"
               "                      before the revocation is acknowledged; app = commit_sync in the callback)\n"
               "  --final-committed   with --group: log the group's committed offsets once, then exit\n" JP_CONN_USAGE);
}

/* ------------------------------------------------------------------------------------------ */
/* Assign mode                                                                                 */
/* ------------------------------------------------------------------------------------------ */

/* Logs one error event of the consumer as an info poll line. */
static void log_event(struct jp_hist *h, const char *process, const char *group, const ferry_message_t *m)
{
    FILE *f = jp_line_begin(h, jp_now(), process, "info", "poll");
    if (f == NULL)
        return;
    fprintf(f, ",\"mode\":\"%s\",\"group\":", group ? "group" : "assign");
    jp_json_str(f, group, group ? strlen(group) : 0);
    fprintf(f, ",\"partition\":%" PRId32 ",\"records\":[],\"error\":", ferry_message_partition(m));
    jp_json_err(f, ferry_message_err(m), ferry_message_errstr(m));
    jp_line_end(h);
}

/* Polls in assign mode for o->duration; returns 0 (errors are in the history) or -1 if assign failed. */
static int run_assign(const struct opts *o, ferry_client_t *client, struct jp_hist *hist)
{
    int rc = -1;
    struct part_pos *pos = calloc((size_t)o->partitions, sizeof *pos);
    ferry_topic_partition_t *tps = calloc((size_t)o->partitions, sizeof *tps);
    if (pos == NULL || tps == NULL) {
        fprintf(stderr, "jp_consumer: out of memory\n");
        goto out;
    }
    for (int64_t p = 0; p < o->partitions; p++) {
        pos[p].next = FERRY_OFFSET_BEGINNING;
        tps[p] = (ferry_topic_partition_t){.topic = o->topic, .partition = (int32_t)p,
                                           .offset = FERRY_OFFSET_BEGINNING};
    }
    ferry_err_t ferr = ferry_assign(client, tps, (size_t)o->partitions);
    if (ferr != FERRY_ERR_NONE) {
        fprintf(stderr, "jp_consumer: assign: %s\n", ferry_err_str(ferr));
        goto out;
    }
    int64_t polls = 0, records = 0, events = 0;
    double end = jp_now() + o->duration;
    while (!jp_stop && jp_now() < end) {
        double now = jp_now();
        for (int64_t p = 0; p < o->partitions; p++) {
            if (pos[p].reseek_at > 0 && now >= pos[p].reseek_at) {
                pos[p].reseek_at = 0;
                ferr = ferry_seek(client, o->topic, (int32_t)p, pos[p].next, 0);
                if (ferr != FERRY_ERR_NONE)
                    fprintf(stderr, "jp_consumer: seek %" PRId64 ": %s\n", p, ferry_err_str(ferr));
            }
        }
        ferry_message_t *m = ferry_consumer_poll(client, (int)o->poll_ms);
        if (m == NULL)
            continue;
        FILE *f = NULL;
        int64_t n = 0;
        while (m != NULL) {
            if (ferry_message_err(m) != FERRY_ERR_NONE) {
                if (f != NULL) { /* close the records line first: lines stay in arrival order */
                    fputs("]", f);
                    jp_line_end(hist);
                    f = NULL;
                }
                log_event(hist, o->process, NULL, m);
                events++;
                int32_t p = ferry_message_partition(m);
                if (p >= 0 && p < o->partitions)
                    pos[p].reseek_at = jp_now() + JP_RESEEK_MS / 1000.0;
            } else {
                if (f == NULL) {
                    f = jp_line_begin(hist, jp_now(), o->process, "ok", "poll");
                    if (f != NULL)
                        fputs(",\"mode\":\"assign\",\"group\":null,\"records\":[", f);
                    n = 0;
                    polls++;
                }
                int32_t p = ferry_message_partition(m);
                int64_t off = ferry_message_offset(m);
                size_t vl;
                const void *v = ferry_message_value(m, &vl);
                if (f != NULL) {
                    fprintf(f, "%s[%" PRId32 ",%" PRId64 ",", n > 0 ? "," : "", p, off);
                    jp_json_str(f, v, vl);
                    fputc(']', f);
                }
                if (p >= 0 && p < o->partitions)
                    pos[p].next = off + 1;
                n++;
                records++;
            }
            ferry_message_destroy(m);
            m = n < o->max_records ? ferry_consumer_poll(client, 0) : NULL;
        }
        if (f != NULL) {
            fputs("]", f);
            jp_line_end(hist);
        }
    }
    fprintf(stderr, "jp_consumer %s: %" PRId64 " polls, %" PRId64 " records, %" PRId64 " error events\n",
            o->process, polls, records, events);
    rc = 0;
out:
    free(tps);
    free(pos);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Group mode                                                                                  */
/* ------------------------------------------------------------------------------------------ */

/* A group member's bookkeeping; the rebalance and commit callbacks get it as their opaque. */
struct member {
    const struct opts *o;
    struct jp_hist *hist;
    ferry_client_t *client;
    unsigned char *owned;    /* [partitions] 1 while assigned to this member */
    int64_t *next;           /* [partitions] offset after the last record logged since assigned; -1 none */
    int64_t *committed;      /* [partitions] the last offset this member committed with ok since assigned; -1 */
    ferry_topic_partition_t *tps; /* [partitions] scratch list for commits */
    /* Begin times of the previous and of the current libferry call that may run callbacks: a libferry
     * commit reported now was sent after the previous call began (callbacks queued before that ran then). */
    double prev_call_t, call_t;
    int64_t polls, records, events, rebalances;
    int64_t commits[3];      /* ok, fail, info (of every kind) */
};

static void member_call(struct member *mb)
{
    mb->prev_call_t = mb->call_t;
    mb->call_t = jp_now();
}

/* Broker refusals that no earlier attempt can have overturned: the commit was not applied. */
static int commit_refused(ferry_err_t err)
{
    switch (err) {
    case FERRY_ERR_UNKNOWN_MEMBER_ID:
    case FERRY_ERR_FENCED_MEMBER_EPOCH:
    case FERRY_ERR_PARTITION_NOT_ASSIGNED:
    case FERRY_ERR_OFFSET_BEHIND_COMMITTED:
    case FERRY_ERR_INVALID_GROUP_ID:
    case FERRY_ERR__INVALID_ARG:
        return 1;
    default:
        return 0;
    }
}

static const char *commit_type(ferry_err_t err)
{
    return err == FERRY_ERR_NONE ? "ok" : commit_refused(err) ? "fail" : "info";
}

/* Writes ,"offsets":[[p,o],...] of tps[0..n). */
static void put_offsets(FILE *f, const ferry_topic_partition_t *tps, size_t n)
{
    fputs(",\"offsets\":[", f);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%s[%" PRId32 ",%" PRId64 "]", i > 0 ? "," : "", tps[i].partition, tps[i].offset);
    fputc(']', f);
}

/* One commit line: type "invoke"/"ok"/"fail"/"info", kind periodic|revoke|final|auto; since >= 0 adds
 * "since" (the earliest the commit can have been sent, for commits logged without an invoke). */
static void log_commit(struct member *mb, const char *type, const char *kind, const ferry_topic_partition_t *tps,
                       size_t n, ferry_err_t err, double since)
{
    FILE *f = jp_line_begin(mb->hist, jp_now(), mb->o->process, type, "commit");
    if (f == NULL)
        return;
    fputs(",\"group\":", f);
    jp_json_str(f, mb->o->group, strlen(mb->o->group));
    fprintf(f, ",\"kind\":\"%s\"", kind);
    put_offsets(f, tps, n);
    if (since >= 0)
        fprintf(f, ",\"since\":%.6f", since);
    if (strcmp(type, "invoke") != 0 && err != FERRY_ERR_NONE) {
        fputs(",\"error\":", f);
        jp_json_err(f, err, NULL);
    }
    jp_line_end(mb->hist);
}

/*
 * Commits synchronously, for the partitions in want[] (NULL = every owned one), the offset after the
 * last record logged, where it moved past this member's last ok commit; logs invoke and outcome.
 * Callbacks cannot run inside ferry_commit_sync (libferry serves them only in poll and close).
 */
static void member_commit(struct member *mb, const char *kind, const unsigned char *want)
{
    size_t n = 0;
    for (int64_t p = 0; p < mb->o->partitions; p++) {
        if (!(want ? want[p] : mb->owned[p]) || mb->next[p] < 0 || mb->next[p] <= mb->committed[p])
            continue;
        mb->tps[n++] = (ferry_topic_partition_t){.topic = mb->o->topic, .partition = (int32_t)p,
                                                 .offset = mb->next[p]};
    }
    if (n == 0)
        return;
    log_commit(mb, "invoke", kind, mb->tps, n, FERRY_ERR_NONE, -1);
    ferry_err_t err = ferry_commit_sync(mb->client, mb->tps, n, (int)mb->o->commit_timeout_ms);
    log_commit(mb, commit_type(err), kind, mb->tps, n, err, -1);
    mb->commits[err == FERRY_ERR_NONE ? 0 : commit_refused(err) ? 1 : 2]++;
    if (err == FERRY_ERR_NONE)
        for (size_t i = 0; i < n; i++)
            mb->committed[mb->tps[i].partition] = mb->tps[i].offset;
}

static void on_rebalance(ferry_client_t *client, ferry_rebalance_event_t ev, const ferry_topic_partition_t *parts,
                         size_t n, void *opaque)
{
    (void)client;
    struct member *mb = opaque;
    const struct opts *o = mb->o;
    const char *name = ev == FERRY_REBALANCE_ASSIGNED ? "assigned" : ev == FERRY_REBALANCE_REVOKING ? "revoking"
                                                                                                    : "lost";
    mb->rebalances++;
    unsigned char *these = calloc((size_t)o->partitions, 1);
    if (these == NULL) {
        fprintf(stderr, "jp_consumer %s: rebalance: out of memory\n", o->process);
        return;
    }
    for (size_t i = 0; i < n; i++)
        if (strcmp(parts[i].topic, o->topic) == 0 && parts[i].partition >= 0 && parts[i].partition < o->partitions)
            these[parts[i].partition] = 1;
    if (ev == FERRY_REBALANCE_REVOKING && o->app_revoke_commit)
        member_commit(mb, "revoke", these);
    for (int64_t p = 0; p < o->partitions; p++) {
        if (!these[p])
            continue;
        mb->owned[p] = ev == FERRY_REBALANCE_ASSIGNED;
        mb->next[p] = mb->committed[p] = -1; /* a new owner starts wherever the group's commit is */
    }
    FILE *f = jp_line_begin(mb->hist, jp_now(), o->process, "ok", "assign");
    if (f != NULL) {
        fputs(",\"mode\":\"group\",\"group\":", f);
        jp_json_str(f, o->group, strlen(o->group));
        fprintf(f, ",\"event\":\"%s\",\"partitions\":[", name);
        int k = 0;
        for (int64_t p = 0; p < o->partitions; p++)
            if (these[p])
                fprintf(f, "%s%" PRId64, k++ ? "," : "", p);
        fputs("],\"assignment\":[", f);
        k = 0;
        for (int64_t p = 0; p < o->partitions; p++)
            if (mb->owned[p])
                fprintf(f, "%s%" PRId64, k++ ? "," : "", p);
        fputc(']', f);
        jp_line_end(mb->hist);
    }
    free(these);
}

/* libferry's own commits (enable.auto.commit: before a revocation is acknowledged, and at close). */
static void on_commit(ferry_client_t *client, ferry_err_t err, const ferry_topic_partition_t *offsets, size_t n,
                      void *opaque)
{
    (void)client;
    struct member *mb = opaque;
    log_commit(mb, commit_type(err), "auto", offsets, n, err, mb->prev_call_t);
    mb->commits[err == FERRY_ERR_NONE ? 0 : commit_refused(err) ? 1 : 2]++;
}

/* Writes the poll line of msgs[0..n) (records only) and counts them. */
static void log_records(struct member *mb, ferry_message_t **msgs, size_t n)
{
    if (n == 0)
        return;
    FILE *f = jp_line_begin(mb->hist, jp_now(), mb->o->process, "ok", "poll");
    if (f != NULL) {
        fputs(",\"mode\":\"group\",\"group\":", f);
        jp_json_str(f, mb->o->group, strlen(mb->o->group));
        fputs(",\"records\":[", f);
    }
    for (size_t i = 0; i < n; i++) {
        int32_t p = ferry_message_partition(msgs[i]);
        int64_t off = ferry_message_offset(msgs[i]);
        size_t vl;
        const void *v = ferry_message_value(msgs[i], &vl);
        if (f != NULL) {
            fprintf(f, "%s[%" PRId32 ",%" PRId64 ",", i > 0 ? "," : "", p, off);
            jp_json_str(f, v, vl);
            fputc(']', f);
        }
        if (p >= 0 && p < mb->o->partitions && mb->owned[p])
            mb->next[p] = off + 1;
    }
    if (f != NULL) {
        fputc(']', f);
        jp_line_end(mb->hist);
    }
    mb->polls++;
    mb->records += (int64_t)n;
}

/*
 * Group mode for o->duration: subscribe, poll, commit, close. Messages of one poll are gathered
 * first and logged after: the callbacks that run inside ferry_consumer_poll write lines of their
 * own, and a history line is built one at a time. Returns 0, or -1 if the subscription failed.
 */
static int run_group(const struct opts *o, ferry_client_t *client, struct jp_hist *hist, struct member *mb)
{
    int rc = -1;
    size_t np = (size_t)o->partitions;
    mb->owned = calloc(np, 1);
    mb->next = malloc(np * sizeof *mb->next);
    mb->committed = malloc(np * sizeof *mb->committed);
    mb->tps = calloc(np, sizeof *mb->tps);
    ferry_message_t **msgs = calloc((size_t)o->max_records, sizeof *msgs);
    if (mb->owned == NULL || mb->next == NULL || mb->committed == NULL || mb->tps == NULL || msgs == NULL) {
        fprintf(stderr, "jp_consumer: out of memory\n");
        goto out;
    }
    for (size_t p = 0; p < np; p++)
        mb->next[p] = mb->committed[p] = -1;
    mb->hist = hist;
    mb->client = client;
    mb->prev_call_t = mb->call_t = jp_now();
    ferry_err_t ferr = ferry_subscribe(client, &o->topic, 1);
    if (ferr != FERRY_ERR_NONE) {
        fprintf(stderr, "jp_consumer: subscribe: %s\n", ferry_err_str(ferr));
        goto out;
    }
    int64_t since_commit = 0;
    double end = jp_now() + o->duration, last_commit = jp_now();
    while (!jp_stop && jp_now() < end) {
        size_t n = 0;
        member_call(mb);
        ferry_message_t *m = ferry_consumer_poll(client, (int)o->poll_ms);
        while (m != NULL) {
            if (ferry_message_err(m) != FERRY_ERR_NONE) {
                log_records(mb, msgs, n); /* lines stay in arrival order */
                for (size_t i = 0; i < n; i++)
                    ferry_message_destroy(msgs[i]);
                n = 0;
                log_event(hist, o->process, o->group, m);
                mb->events++;
                ferry_message_destroy(m);
            } else {
                msgs[n++] = m;
            }
            if (n >= (size_t)o->max_records)
                break;
            member_call(mb);
            m = ferry_consumer_poll(client, 0);
        }
        if (n > 0)
            since_commit++;
        log_records(mb, msgs, n);
        for (size_t i = 0; i < n; i++)
            ferry_message_destroy(msgs[i]);
        if (since_commit >= o->commit_every || (since_commit > 0 && jp_now() - last_commit >= o->commit_ms / 1000.0)) {
            member_commit(mb, "periodic", NULL);
            since_commit = 0;
            last_commit = jp_now();
        }
    }
    member_commit(mb, "final", NULL);
    member_call(mb);
    ferr = ferry_consumer_close(client, (int)o->commit_timeout_ms);
    if (ferr != FERRY_ERR_NONE)
        fprintf(stderr, "jp_consumer %s: leaving the group: %s\n", o->process, ferry_err_str(ferr));
    fprintf(stderr,
            "jp_consumer %s: group %s: %" PRId64 " polls, %" PRId64 " records, %" PRId64 " error events, %" PRId64
            " rebalance events, commits %" PRId64 " ok %" PRId64 " fail %" PRId64 " info\n",
            o->process, o->group, mb->polls, mb->records, mb->events, mb->rebalances, mb->commits[0], mb->commits[1],
            mb->commits[2]);
    rc = 0;
out:
    free(msgs);
    return rc;
}

static void member_free(struct member *mb)
{
    free(mb->owned);
    free(mb->next);
    free(mb->committed);
    free(mb->tps);
}

/*
 * --final-committed: one "committed" line with the group's committed offset of every partition
 * (-1 = none), retried until o->duration has passed. Returns 0 if read, 1 if not (an info line).
 */
static int run_final_committed(const struct opts *o, ferry_client_t *client, struct jp_hist *hist)
{
    size_t np = (size_t)o->partitions;
    ferry_topic_partition_t *tps = calloc(np, sizeof *tps);
    if (tps == NULL) {
        fprintf(stderr, "jp_consumer: out of memory\n");
        return 1;
    }
    ferry_err_t err = FERRY_ERR__TIMED_OUT;
    double end = jp_now() + o->duration;
    do {
        for (size_t p = 0; p < np; p++)
            tps[p] = (ferry_topic_partition_t){.topic = o->topic, .partition = (int32_t)p, .offset = -1};
        double left = end - jp_now();
        int wait_ms = left > 5 ? 5000 : left > 0.5 ? (int)(left * 1000) : 500;
        err = ferry_committed(client, tps, np, wait_ms);
        if (err != FERRY_ERR_NONE && !jp_stop && jp_now() < end) {
            fprintf(stderr, "jp_consumer %s: committed: %s; retrying\n", o->process, ferry_err_str(err));
            jp_sleep_ms(500);
        }
    } while (err != FERRY_ERR_NONE && !jp_stop && jp_now() < end);
    FILE *f = jp_line_begin(hist, jp_now(), o->process, err == FERRY_ERR_NONE ? "ok" : "info", "committed");
    if (f != NULL) {
        fputs(",\"group\":", f);
        jp_json_str(f, o->group, strlen(o->group));
        if (err == FERRY_ERR_NONE) {
            put_offsets(f, tps, np);
        } else {
            fputs(",\"offsets\":[],\"error\":", f);
            jp_json_err(f, err, NULL);
        }
        jp_line_end(hist);
    }
    free(tps);
    return err == FERRY_ERR_NONE ? 0 : 1;
}

/* ------------------------------------------------------------------------------------------ */

/* Parses argv into o; returns 0, 1 after --help, 2 on a usage error (message printed). */
static int parse_opts(int argc, char **argv, struct opts *o)
{
    static const struct option longopts[] = {
        {"topic", required_argument, NULL, 't'},       {"partitions", required_argument, NULL, 'n'},
        {"process", required_argument, NULL, 'p'},     {"duration", required_argument, NULL, 'd'},
        {"poll-ms", required_argument, NULL, 'P'},     {"max-records", required_argument, NULL, 'm'},
        {"group", required_argument, NULL, 'g'},       {"history", required_argument, NULL, 'H'},
        {"commit-every", required_argument, NULL, 'e'}, {"commit-ms", required_argument, NULL, 'M'},
        {"commit-timeout-ms", required_argument, NULL, 'T'}, {"revoke-commit", required_argument, NULL, 'r'},
        {"final-committed", no_argument, NULL, 'F'},   {"help", no_argument, NULL, 'h'},
        JP_CONN_LONGOPTS,                              {NULL, 0, NULL, 0},
    };
    char errmsg[512];
    int opt, li = 0;
    memset(o, 0, sizeof *o);
    o->process = "c1";
    o->history = "-";
    o->poll_ms = 100;
    o->max_records = 500;
    o->commit_every = 10;
    o->commit_ms = 1000;
    o->commit_timeout_ms = 5000;
    o->duration = 10;
    while ((opt = getopt_long(argc, argv, "h", longopts, &li)) != -1) {
        int c = jp_conn_opt(&o->conn, opt, optarg, errmsg, sizeof errmsg);
        if (c < 0) {
            fprintf(stderr, "jp_consumer: %s\n", errmsg);
            return 2;
        }
        if (c > 0)
            continue;
        int bad = 0;
        switch (opt) {
        case 't': o->topic = optarg; break;
        case 'p': o->process = optarg; break;
        case 'H': o->history = optarg; break;
        case 'g': o->group = optarg; break;
        case 'F': o->final_committed = 1; break;
        case 'n': bad = jp_parse_i64(optarg, 1, 100000, &o->partitions); break;
        case 'P': bad = jp_parse_i64(optarg, 0, 60000, &o->poll_ms); break;
        case 'm': bad = jp_parse_i64(optarg, 1, 1000000, &o->max_records); break;
        case 'e': bad = jp_parse_i64(optarg, 1, 1000000, &o->commit_every); break;
        case 'M': bad = jp_parse_i64(optarg, 1, 3600000, &o->commit_ms); break;
        case 'T': bad = jp_parse_i64(optarg, 1, 600000, &o->commit_timeout_ms); break;
        case 'd': bad = jp_parse_seconds(optarg, 86400, &o->duration); break;
        case 'r':
            bad = strcmp(optarg, "auto") != 0 && strcmp(optarg, "app") != 0;
            o->app_revoke_commit = strcmp(optarg, "app") == 0;
            break;
        case 'h': usage(stdout); return 1;
        default: usage(stderr); return 2;
        }
        if (bad) {
            fprintf(stderr, "jp_consumer: bad value '%s' for --%s\n", optarg, longopts[li].name);
            return 2;
        }
    }
    if (o->topic == NULL || o->partitions == 0 || optind != argc) {
        usage(stderr);
        return 2;
    }
    if (o->final_committed && o->group == NULL) {
        fprintf(stderr, "jp_consumer: --final-committed needs --group\n");
        return 2;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct opts o;
    struct jp_hist hist;
    struct member mb;
    char errmsg[512];
    int rc = parse_opts(argc, argv, &o);
    if (rc != 0)
        return rc == 1 ? 0 : rc;
    rc = 1;
    memset(&mb, 0, sizeof mb);
    mb.o = &o;
    if (jp_hist_open(&hist, o.history, errmsg, sizeof errmsg) != 0) {
        fprintf(stderr, "jp_consumer: %s\n", errmsg);
        return 1;
    }
    /* Group members: libferry commits only before acknowledging a revocation and at close (the
     * interval is the maximum, a day), unless --revoke-commit app takes that over. */
    const char *const assign_defaults[] = {
        "auto.offset.reset", "error", "request.timeout.ms", "5000", "fetch.max.wait.ms", "200",
        "client.id", "jp_consumer", NULL,
    };
    const char *const group_defaults[] = {
        "group.id", o.group, "auto.offset.reset", "earliest", "request.timeout.ms", "5000",
        "fetch.max.wait.ms", "200", "client.id", "jp_consumer", "session.timeout.ms", "10000",
        "enable.auto.commit", o.app_revoke_commit ? "false" : "true", "auto.commit.interval.ms", "86400000",
        NULL,
    };
    ferry_conf_t *conf = jp_conf_new(&o.conn, o.group ? group_defaults : assign_defaults, errmsg, sizeof errmsg);
    if (conf == NULL) {
        fprintf(stderr, "jp_consumer: %s\n", errmsg);
        goto err_after_hist;
    }
    if (o.group != NULL && !o.final_committed) {
        ferry_conf_set_opaque(conf, &mb);
        ferry_conf_set_rebalance_cb(conf, on_rebalance);
        ferry_conf_set_commit_cb(conf, on_commit);
    }
    ferry_client_t *client = ferry_client_new(FERRY_CONSUMER, conf, errmsg, sizeof errmsg);
    if (client == NULL) {
        fprintf(stderr, "jp_consumer: %s\n", errmsg);
        goto err_after_hist;
    }
    jp_install_signals();
    if (o.final_committed)
        rc = run_final_committed(&o, client, &hist);
    else if (o.group != NULL)
        rc = run_group(&o, client, &hist, &mb) == 0 ? 0 : 1;
    else
        rc = run_assign(&o, client, &hist) == 0 ? 0 : 1;

    ferry_client_close(client, 1000);
    ferry_client_destroy(client);
err_after_hist:
    member_free(&mb);
    if (jp_hist_close(&hist, errmsg, sizeof errmsg) != 0) {
        fprintf(stderr, "jp_consumer: %s\n", errmsg);
        rc = 1;
    }
    return rc;
}
