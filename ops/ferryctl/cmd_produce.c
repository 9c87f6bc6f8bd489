/* cmd_produce.c: `ferryctl produce TOPIC`: stdin lines -> records, with per-record delivery results. */
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ferryctl.h"

enum { PR_KEY = 1, PR_KEY_SEP, PR_HEADER, PR_PARTITION, PR_ACKS };

/* Headers per record follow the protocol's limit (broker/proto/limits.h: 256). */
#define PRODUCE_MAX_HEADERS 256
/* Partitions whose counts the text summary keeps. */
#define PRODUCE_SUMMARY_PARTITIONS 10000

const struct optdef produce_opts[] = {
    {"key", 'k', 1, PR_KEY, "KEY", "the same key on every record"},
    {"key-sep", 0, 1, PR_KEY_SEP, "SEP", "split each line at the first SEP into KEY and VALUE"},
    {"header", 'H', 1, PR_HEADER, "NAME=VALUE", "a header on every record (repeatable)"},
    {"partition", 'p', 1, PR_PARTITION, "N", "write to partition N (default: by key, or sticky if no key)"},
    {"acks", 0, 1, PR_ACKS, "all|1|0", "all (default): acknowledged once durable; 1: by the leader; 0: none"},
    {0},
};

static volatile sig_atomic_t stop_reading;

static void on_signal(int sig)
{
    (void)sig;
    stop_reading = 1;
}

struct produce_state {
    const struct ctl *ctl;
    uint64_t delivered, failed;
    uint64_t *per_partition; /* delivered count by partition, for the summary */
    int32_t max_partition;
    bool acks0;
};

/* Delivery callback: runs inside ferry_poll/ferry_flush/ferry_client_close on this thread. */
static void on_delivery(ferry_client_t *client, const ferry_delivery_t *d, void *opaque)
{
    (void)client;
    struct produce_state *st = opaque;
    uint64_t line = (uint64_t)(uintptr_t)d->opaque;
    if (d->err == FERRY_ERR_NONE) {
        st->delivered++;
        if (d->partition >= 0 && d->partition < PRODUCE_SUMMARY_PARTITIONS && st->per_partition) {
            st->per_partition[d->partition]++;
            if (d->partition > st->max_partition)
                st->max_partition = d->partition;
        }
    } else {
        st->failed++;
    }
    const char *msg = d->error_message ? d->error_message : ferry_err_str(d->err);
    if (st->ctl->format == FMT_JSON) {
        struct jw w;
        jw_doc_begin(&w, stdout);
        jw_kstr(&w, "type", "delivery");
        jw_kint(&w, "line", (int64_t)line);
        jw_kstr(&w, "topic", d->topic);
        jw_kint(&w, "partition", d->partition);
        jw_key(&w, "offset");
        if (d->offset >= 0)
            jw_int(&w, d->offset);
        else
            jw_null(&w);
        jw_kint(&w, "timestamp", d->timestamp);
        jw_kbool(&w, "ok", d->err == FERRY_ERR_NONE);
        jw_key(&w, "error");
        if (d->err == FERRY_ERR_NONE)
            jw_null(&w);
        else
            jw_error(&w, d->err, msg);
        jw_doc_end(&w);
    } else if (d->err != FERRY_ERR_NONE) {
        fprintf(stderr, "ferryctl produce: line %" PRIu64 ": not delivered: %s (%s)\n", line, msg,
                ferry_err_name(d->err));
    }
}

int cmd_produce(struct ctl *ctl, const struct parsed *p)
{
    const char *fixed_key = NULL, *key_sep = NULL, *acks = NULL;
    int64_t partition = FERRY_PARTITION_ANY;
    ferry_header_t headers[PRODUCE_MAX_HEADERS];
    char *hnames[PRODUCE_MAX_HEADERS], *hvals[PRODUCE_MAX_HEADERS];
    size_t nh = 0;
    int rc = EXIT_USAGE;
    ferry_client_t *client = NULL;
    char *line = NULL;
    struct produce_state st = {.ctl = ctl, .max_partition = -1};

    for (size_t i = 0; i < p->nopts; i++) {
        const struct parsed_opt *o = &p->opts[i];
        switch (o->id) {
        case PR_KEY: fixed_key = o->val; break;
        case PR_KEY_SEP:
            if (!*o->val) {
                usage_error(ctl, "--key-sep must not be empty");
                goto out;
            }
            key_sep = strcmp(o->val, "\\t") == 0 ? "\t" : o->val; /* '\t' as typed in a shell */
            break;
        case PR_HEADER:
            if (nh == PRODUCE_MAX_HEADERS) {
                usage_error(ctl, "at most %d headers", PRODUCE_MAX_HEADERS);
                goto out;
            }
            if (split_kv(o->val, &hnames[nh], &hvals[nh]) != 0) {
                usage_error(ctl, "-H wants NAME=VALUE, got '%s'", o->val);
                goto out;
            }
            headers[nh].name = hnames[nh];
            headers[nh].value = hvals[nh];
            headers[nh].value_len = strlen(hvals[nh]);
            nh++;
            break;
        case PR_PARTITION:
            if (parse_i64(o->val, 0, INT32_MAX, &partition) != 0) {
                usage_error(ctl, "--partition wants a partition number >= 0, got '%s'", o->val);
                goto out;
            }
            break;
        case PR_ACKS:
            if (strcmp(o->val, "all") != 0 && strcmp(o->val, "-1") != 0 && strcmp(o->val, "1") != 0 &&
                strcmp(o->val, "0") != 0) {
                usage_error(ctl, "--acks must be all, 1 or 0, got '%s'", o->val);
                goto out;
            }
            acks = strcmp(o->val, "-1") == 0 ? "all" : o->val;
            break;
        default: break;
        }
    }
    if (fixed_key && key_sep) {
        usage_error(ctl, "--key and --key-sep are mutually exclusive");
        goto out;
    }
    if (p->npos != 1) {
        usage_error(ctl, "produce needs exactly one TOPIC");
        goto out;
    }
    const char *topic = p->pos[0];

    char err[512];
    ferry_conf_t *conf = ctl_make_conf(ctl, err, sizeof(err));
    if (!conf) {
        usage_error(ctl, "%s", err);
        goto out;
    }
    if (acks && ferry_conf_set(conf, "acks", acks, err, sizeof(err)) != FERRY_ERR_NONE) {
        ferry_conf_destroy(conf);
        usage_error(ctl, "%s", err);
        goto out;
    }
    st.acks0 = acks && strcmp(acks, "0") == 0;
    st.per_partition = calloc(PRODUCE_SUMMARY_PARTITIONS, sizeof(*st.per_partition));
    if (!st.per_partition) {
        ferry_conf_destroy(conf);
        rc = EXIT_FAIL;
        goto out;
    }
    ferry_conf_set_delivery_cb(conf, on_delivery);
    ferry_conf_set_opaque(conf, &st);
    rc = ctl_client_new(ctl, FERRY_PRODUCER, conf, &client);
    if (rc)
        goto out;

    /* Ctrl-C stops reading (the blocked read returns EINTR: no SA_RESTART), then we flush. */
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    if (isatty(STDIN_FILENO))
        fprintf(stderr, "ferryctl produce: one record per line; Ctrl-D to send and finish\n");

    size_t cap = 0;
    ssize_t len;
    uint64_t lineno = 0, rejected = 0;
    while (!stop_reading && (len = getline(&line, &cap, stdin)) >= 0) {
        lineno++;
        if (len > 0 && line[len - 1] == '\n')
            line[--len] = '\0';
        ferry_record_t rec;
        memset(&rec, 0, sizeof(rec));
        rec.topic = topic;
        rec.partition = (int32_t)partition;
        rec.value = line;
        rec.value_len = (size_t)len;
        rec.headers = nh ? headers : NULL;
        rec.header_count = nh;
        rec.opaque = (void *)(uintptr_t)lineno;
        if (fixed_key) {
            rec.key = fixed_key;
            rec.key_len = strlen(fixed_key);
        } else if (key_sep) {
            char *sep = memmem(line, (size_t)len, key_sep, strlen(key_sep));
            if (sep) {
                rec.key = line;
                rec.key_len = (size_t)(sep - line);
                rec.value = sep + strlen(key_sep);
                rec.value_len = (size_t)len - rec.key_len - strlen(key_sep);
            }
        }
        ferry_err_t e = ferry_produce(client, &rec, 0);
        if (e != FERRY_ERR_NONE) {
            /* not queued: no delivery report will come, report it here */
            rejected++;
            if (ctl->format == FMT_JSON) {
                struct jw w;
                jw_doc_begin(&w, stdout);
                jw_kstr(&w, "type", "delivery");
                jw_kint(&w, "line", (int64_t)lineno);
                jw_kstr(&w, "topic", topic);
                jw_kbool(&w, "ok", false);
                jw_key(&w, "error");
                jw_error(&w, e, ferry_err_str(e));
                jw_doc_end(&w);
            } else {
                fprintf(stderr, "ferryctl produce: line %" PRIu64 ": rejected: %s (%s)\n", lineno,
                        ferry_err_str(e), ferry_err_name(e));
            }
            if (e == FERRY_ERR__DESTROYED)
                break;
            continue;
        }
        ferry_poll(client, 0); /* serve reports as they come, keeps memory flat */
    }
    ferry_err_t fe = ferry_flush(client, ctl->timeout_ms);
    /* Close purges whatever is still undelivered: each gets a failed report. */
    ferry_err_t ce = ferry_client_close(client, 0);
    (void)ce;
    uint64_t failed = st.failed + rejected;
    if (ctl->format == FMT_JSON) {
        struct jw w;
        jw_doc_begin(&w, stdout);
        jw_kstr(&w, "type", "summary");
        jw_kstr(&w, "command", ctl->command);
        jw_kbool(&w, "ok", failed == 0);
        jw_kstr(&w, "topic", topic);
        jw_kint(&w, "records", (int64_t)lineno);
        jw_kint(&w, "delivered", (int64_t)st.delivered);
        jw_kint(&w, "failed", (int64_t)failed);
        jw_kbool(&w, "flush_timed_out", fe != FERRY_ERR_NONE);
        jw_doc_end(&w);
    } else {
        printf("%s %" PRIu64 " of %" PRIu64 " records to %s", st.acks0 ? "sent (acks=0, unconfirmed)" : "produced",
               st.delivered, lineno, topic);
        if (st.max_partition >= 0) {
            printf(" (");
            bool first = true;
            for (int32_t i = 0; i <= st.max_partition; i++) {
                if (!st.per_partition[i])
                    continue;
                printf("%spartition %" PRId32 ": %" PRIu64, first ? "" : ", ", i, st.per_partition[i]);
                first = false;
            }
            printf(")");
        }
        printf("\n");
        if (failed)
            fprintf(stderr, "ferryctl produce: %" PRIu64 " record(s) failed%s\n", failed,
                    fe != FERRY_ERR_NONE ? " (flush timed out: raise --timeout?)" : "");
    }
    rc = failed ? EXIT_FAIL : EXIT_OK;

out:
    ferry_client_destroy(client);
    free(line);
    free(st.per_partition);
    for (size_t i = 0; i < nh; i++) {
        free(hnames[i]);
        free(hvals[i]);
    }
    return rc;
}
