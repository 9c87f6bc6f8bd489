/* cmd_consume.c: `ferryctl consume TOPIC`: assign partitions (or join a group), read from a position, print records. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ferryctl.h"

enum { C_PARTITION = 1, C_FROM, C_COUNT, C_TIMEOUT, C_PRINT, C_GROUP };

const struct optdef consume_opts[] = {
    {"partition", 'p', 1, C_PARTITION, "N[,N..]", "read only these partitions (repeatable; default all)"},
    {"from", 0, 1, C_FROM, "WHERE",
     "start|end|OFFSET|@TIMESTAMP_MS|time:RFC3339 (default start; end = only new records)"},
    {"count", 'n', 1, C_COUNT, "N", "stop after N records"},
    {"timeout", 0, 1, C_TIMEOUT, "MS", "stop after MS without a new record (default: follow forever)"},
    {"print", 0, 1, C_PRINT, "TEMPLATE", "text format per record, e.g. '%p/%o %k=%v' (newline added)"},
    {"group", 'g', 1, C_GROUP, "GROUP",
     "consume as a member of consumer group GROUP: partitions come from the group, reading starts at the "
     "group's committed offsets (else --from start|end), positions are committed at exit"},
    {0},
};

/* Partitions one invocation may name with -p (the protocol's per-topic maximum). */
#define CONSUME_MAX_PARTITIONS 10000
/* How often the poll loop wakes to notice Ctrl-C. */
#define CONSUME_POLL_SLICE_MS 200

enum from_kind { FROM_START, FROM_END, FROM_OFFSET, FROM_TIME };

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Parses an RFC 3339 date-time ("2024-05-01T12:00:00Z", "...T12:00:00.250+02:00"; a space may
 * replace the T) into ms since the epoch. Returns 0 or -1.
 */
static int parse_rfc3339(const char *s, int64_t *out)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    const char *p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!p)
        p = strptime(s, "%Y-%m-%d %H:%M:%S", &tm);
    if (!p)
        return -1;
    int64_t ms = 0;
    if (*p == '.') {
        int digits = 0;
        p++;
        while (*p >= '0' && *p <= '9') {
            if (digits < 3)
                ms = ms * 10 + (*p - '0');
            digits++;
            p++;
        }
        if (digits == 0)
            return -1;
        for (; digits < 3; digits++)
            ms *= 10;
    }
    int64_t offset_s = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p == '-' ? -1 : 1;
        int hh, mm;
        if (sscanf(p + 1, "%2d:%2d", &hh, &mm) != 2 || strlen(p + 1) != 5 || hh > 23 || mm > 59)
            return -1;
        offset_s = sign * (hh * 3600 + mm * 60);
        p += 6;
    } else {
        return -1; /* RFC 3339 requires a zone */
    }
    if (*p)
        return -1;
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return -1;
    *out = ((int64_t)t - offset_s) * 1000 + ms;
    return 0;
}

static int parse_from(const char *s, enum from_kind *kind, int64_t *val)
{
    if (strcmp(s, "start") == 0 || strcmp(s, "beginning") == 0 || strcmp(s, "earliest") == 0) {
        *kind = FROM_START;
        return 0;
    }
    if (strcmp(s, "end") == 0 || strcmp(s, "latest") == 0) {
        *kind = FROM_END;
        return 0;
    }
    if (s[0] == '@') {
        *kind = FROM_TIME;
        return parse_i64(s + 1, 0, INT64_MAX, val);
    }
    if (strncmp(s, "time:", 5) == 0) {
        *kind = FROM_TIME;
        return parse_rfc3339(s + 5, val);
    }
    *kind = FROM_OFFSET;
    return parse_i64(s, 0, INT64_MAX, val);
}

/* Checks a --print template: only known % directives and \ escapes. 0 or -1 with *bad set. */
static int template_check(const char *t, char *bad)
{
    for (const char *c = t; *c; c++) {
        if (*c == '%') {
            c++;
            if (!*c || !strchr("tpokvhTd%", *c)) {
                *bad = *c ? *c : '%';
                return -1;
            }
        } else if (*c == '\\') {
            c++;
            if (!*c || !strchr("nt\\r0", *c)) {
                *bad = *c ? *c : '\\';
                return -1;
            }
        }
    }
    return 0;
}

static void print_headers_text(FILE *out, const ferry_message_t *m)
{
    size_t n = ferry_message_header_count(m);
    for (size_t i = 0; i < n; i++) {
        const char *name = NULL;
        const void *v = NULL;
        size_t vlen = 0;
        if (ferry_message_header(m, i, &name, &v, &vlen) != FERRY_ERR_NONE)
            continue;
        fprintf(out, "%s%s=", i ? "," : "", name);
        write_bytes(out, v, v ? vlen : 0);
    }
}

static void print_template(FILE *out, const char *t, const ferry_message_t *m)
{
    size_t klen = 0, vlen = 0;
    const void *k = ferry_message_key(m, &klen);
    const void *v = ferry_message_value(m, &vlen);
    for (const char *c = t; *c; c++) {
        if (*c == '\\') {
            c++;
            fputc(*c == 'n' ? '\n' : *c == 't' ? '\t' : *c == 'r' ? '\r' : *c == '0' ? '\0' : '\\', out);
            continue;
        }
        if (*c != '%') {
            fputc(*c, out);
            continue;
        }
        c++;
        switch (*c) {
        case 't': fputs(ferry_message_topic(m), out); break;
        case 'p': fprintf(out, "%" PRId32, ferry_message_partition(m)); break;
        case 'o': fprintf(out, "%" PRId64, ferry_message_offset(m)); break;
        case 'k': write_bytes(out, k, k ? klen : 0); break;
        case 'v': write_bytes(out, v, v ? vlen : 0); break;
        case 'h': print_headers_text(out, m); break;
        case 'T': fprintf(out, "%" PRId64, ferry_message_timestamp(m)); break;
        case 'd': {
            int64_t ts = ferry_message_timestamp(m);
            time_t secs = (time_t)(ts / 1000);
            struct tm tm;
            char buf[40];
            gmtime_r(&secs, &tm);
            strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
            fprintf(out, "%s.%03dZ", buf, (int)(ts % 1000));
            break;
        }
        default: fputc('%', out); break;
        }
    }
    fputc('\n', out);
}

/* Writes bytes as a JSON string, or base64 when b64; NULL as null. */
static void jw_bytes(struct jw *w, const void *b, size_t len, bool b64)
{
    if (!b)
        jw_null(w);
    else if (b64)
        jw_base64(w, b, len);
    else
        jw_strn(w, b, len);
}

/*
 * One JSON line per record. key, value and header values are UTF-8 strings; if any of them is not
 * valid UTF-8, all of them are base64 and the object has "encoding":"base64" (docs/cli.md).
 */
static void print_json(const ferry_message_t *m)
{
    size_t klen = 0, vlen = 0;
    const void *k = ferry_message_key(m, &klen);
    const void *v = ferry_message_value(m, &vlen);
    size_t nh = ferry_message_header_count(m);
    bool b64 = (k && !utf8_valid(k, klen)) || (v && !utf8_valid(v, vlen));
    for (size_t i = 0; i < nh && !b64; i++) {
        const void *hv = NULL;
        size_t hlen = 0;
        if (ferry_message_header(m, i, NULL, &hv, &hlen) == FERRY_ERR_NONE && hv && !utf8_valid(hv, hlen))
            b64 = true;
    }
    struct jw w;
    jw_doc_begin(&w, stdout);
    jw_kstr(&w, "topic", ferry_message_topic(m));
    jw_kint(&w, "partition", ferry_message_partition(m));
    jw_kint(&w, "offset", ferry_message_offset(m));
    jw_kint(&w, "timestamp", ferry_message_timestamp(m));
    jw_key(&w, "key");
    jw_bytes(&w, k, klen, b64);
    jw_key(&w, "value");
    jw_bytes(&w, v, vlen, b64);
    jw_key(&w, "headers");
    jw_obj_begin(&w);
    for (size_t i = 0; i < nh; i++) {
        const char *name = NULL;
        const void *hv = NULL;
        size_t hlen = 0;
        if (ferry_message_header(m, i, &name, &hv, &hlen) != FERRY_ERR_NONE)
            continue;
        jw_key(&w, name);
        jw_bytes(&w, hv, hlen, b64);
    }
    jw_obj_end(&w);
    if (b64)
        jw_kstr(&w, "encoding", "base64");
    jw_doc_end(&w);
}

/* Adds the partitions listed in s ("0", "0,2") to parts; -1 on a bad number or too many. */
static int add_partitions(const char *s, int32_t *parts, size_t *n)
{
    char *copy = strdup(s), *save = NULL;
    if (!copy)
        return -1;
    int rc = 0;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        int64_t v;
        if (parse_i64(tok, 0, INT32_MAX, &v) != 0 || *n == CONSUME_MAX_PARTITIONS) {
            rc = -1;
            break;
        }
        parts[(*n)++] = (int32_t)v;
    }
    free(copy);
    return rc;
}

struct consume_part {
    int32_t partition;
    int64_t start;
    bool dead; /* an error event stopped it */
};

int cmd_consume(struct ctl *ctl, const struct parsed *p)
{
    enum from_kind from = FROM_START;
    int64_t from_val = 0, count = -1, idle_ms = -1;
    const char *tmpl = NULL;
    const char *group = NULL;
    bool from_given = false;
    int32_t *req = calloc(CONSUME_MAX_PARTITIONS, sizeof(*req));
    size_t nreq = 0;
    int rc = EXIT_USAGE;
    ferry_client_t *client = NULL;
    ferry_metadata_t *md = NULL;
    struct consume_part *parts = NULL;
    ferry_topic_partition_t *tps = NULL;
    size_t nparts = 0;
    if (!req)
        return EXIT_FAIL;

    for (size_t i = 0; i < p->nopts; i++) {
        const struct parsed_opt *o = &p->opts[i];
        char bad = 0;
        switch (o->id) {
        case C_PARTITION:
            if (add_partitions(o->val, req, &nreq) != 0) {
                usage_error(ctl, "-p wants partition numbers (N or N,N,..), got '%s'", o->val);
                goto out;
            }
            break;
        case C_GROUP:
            group = o->val;
            break;
        case C_FROM:
            from_given = true;
            if (parse_from(o->val, &from, &from_val) != 0) {
                usage_error(ctl, "--from wants start, end, OFFSET, @TIMESTAMP_MS or time:RFC3339, got '%s'",
                            o->val);
                goto out;
            }
            break;
        case C_COUNT:
            if (parse_i64(o->val, 1, INT64_MAX, &count) != 0) {
                usage_error(ctl, "-n wants a positive count, got '%s'", o->val);
                goto out;
            }
            break;
        case C_TIMEOUT:
            if (parse_i64(o->val, 1, INT32_MAX, &idle_ms) != 0) {
                usage_error(ctl, "--timeout wants milliseconds (a positive integer), got '%s'", o->val);
                goto out;
            }
            break;
        case C_PRINT:
            if (template_check(o->val, &bad) != 0) {
                usage_error(ctl, "--print: unknown directive near '%c' (known: %%t %%p %%o %%k %%v %%h %%T %%d "
                                 "%%%% \\n \\t \\r \\\\)", bad);
                goto out;
            }
            tmpl = o->val;
            break;
        default: break;
        }
    }
    if (p->npos != 1) {
        usage_error(ctl, "consume needs exactly one TOPIC");
        goto out;
    }
    if (tmpl && ctl->format == FMT_JSON) {
        usage_error(ctl, "--print and --format json exclude each other");
        goto out;
    }
    const char *topic = p->pos[0];
    if (group && (nreq > 0 || (from_given && from != FROM_START && from != FROM_END))) {
        usage_error(ctl, "--group takes its partitions from the group: no -p, and --from only start or end "
                         "(where to begin without a committed offset)");
        goto out;
    }

    char err[512] = "";
    ferry_conf_t *conf = ctl_make_conf(ctl, err, sizeof(err));
    if (!conf) {
        usage_error(ctl, "%s", err);
        rc = EXIT_USAGE;
        goto out;
    }
    /* An explicit --from OFFSET past the log end is an error to show, not a silent reset
     * (unless the user chose a policy with -X auto.offset.reset). */
    bool policy_given = false;
    for (size_t i = 0; i < ctl->nsettings; i++)
        policy_given |= strcmp(ctl->settings[i].key, "auto.offset.reset") == 0;
    if (from == FROM_OFFSET && !policy_given)
        (void)ferry_conf_set(conf, "auto.offset.reset", "error", NULL, 0);
    if (group) {
        if (ferry_conf_set(conf, "group.id", group, err, sizeof(err)) != FERRY_ERR_NONE ||
            (!policy_given && ferry_conf_set(conf, "auto.offset.reset", from == FROM_END ? "latest" : "earliest",
                                             err, sizeof(err)) != FERRY_ERR_NONE)) {
            ferry_conf_destroy(conf);
            usage_error(ctl, "--group: %s", err);
            rc = EXIT_USAGE;
            goto out;
        }
    }
    rc = ctl_client_new(ctl, FERRY_CONSUMER, conf, &client);
    if (rc)
        goto out;
    ferry_err_t e;
    if (group) {
        e = ferry_subscribe(client, &topic, 1);
        if (e != FERRY_ERR_NONE) {
            report_error(ctl, e, "subscribe %s as group %s: %s", topic, group, ferry_err_str(e));
            rc = EXIT_FAIL;
            goto out;
        }
        nparts = SIZE_MAX; /* errors are per partition; the group decides which */
        goto poll;
    }
    e = ferry_admin_describe_cluster(client, &topic, 1, &md, ctl->timeout_ms, err, sizeof(err));
    if (e != FERRY_ERR_NONE) {
        report_error(ctl, e, "metadata from %s: %s", ctl->brokers, err[0] ? err : ferry_err_str(e));
        rc = EXIT_FAIL;
        goto out;
    }
    if (ferry_metadata_topic_count(md) < 1 || ferry_metadata_topic_err(md, 0) != FERRY_ERR_NONE) {
        ferry_err_t te = ferry_metadata_topic_count(md) ? ferry_metadata_topic_err(md, 0)
                                                       : FERRY_ERR_UNKNOWN_TOPIC_OR_PARTITION;
        report_error(ctl, te, "topic %s: %s", topic, ferry_err_str(te));
        rc = EXIT_FAIL;
        goto out;
    }
    size_t np = ferry_metadata_partition_count(md, 0);
    parts = calloc((nreq ? nreq : np) + 1, sizeof(*parts));
    tps = calloc((nreq ? nreq : np) + 1, sizeof(*tps));
    if (!parts || !tps) {
        rc = EXIT_FAIL;
        goto out;
    }
    if (nreq) {
        for (size_t i = 0; i < nreq; i++) {
            bool found = false;
            for (size_t j = 0; j < np; j++)
                found |= ferry_metadata_partition_id(md, 0, j) == req[i];
            bool dup = false;
            for (size_t j = 0; j < nparts; j++)
                dup |= parts[j].partition == req[i];
            if (!found) {
                report_error(ctl, FERRY_ERR_UNKNOWN_TOPIC_OR_PARTITION, "topic %s has no partition %" PRId32
                             " (it has %zu)", topic, req[i], np);
                rc = EXIT_FAIL;
                goto out;
            }
            if (!dup)
                parts[nparts++].partition = req[i];
        }
    } else {
        for (size_t j = 0; j < np; j++)
            parts[nparts++].partition = ferry_metadata_partition_id(md, 0, j);
    }
    for (size_t i = 0; i < nparts; i++) {
        switch (from) {
        case FROM_START: parts[i].start = FERRY_OFFSET_BEGINNING; break;
        case FROM_END: parts[i].start = FERRY_OFFSET_END; break;
        case FROM_OFFSET: parts[i].start = from_val; break;
        case FROM_TIME:
            e = ferry_admin_list_offsets(client, topic, parts[i].partition, from_val, &parts[i].start,
                                         ctl->timeout_ms, err, sizeof(err));
            if (e != FERRY_ERR_NONE) {
                report_error(ctl, e, "%s/%" PRId32 ": offset for time %" PRId64 ": %s", topic,
                             parts[i].partition, from_val, err[0] ? err : ferry_err_str(e));
                rc = EXIT_FAIL;
                goto out;
            }
            break;
        }
        tps[i].topic = topic;
        tps[i].partition = parts[i].partition;
        tps[i].offset = parts[i].start;
    }
    e = ferry_assign(client, tps, nparts);
    if (e != FERRY_ERR_NONE) {
        report_error(ctl, e, "assign %s: %s", topic, ferry_err_str(e));
        rc = EXIT_FAIL;
        goto out;
    }

poll:;

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    int64_t printed = 0, last = now_ms();
    size_t ndead = 0, nerrors = 0;
    rc = EXIT_OK;
    while (!stop_requested && (count < 0 || printed < count) && ndead < nparts) {
        ferry_message_t *m = ferry_consumer_poll(client, 0);
        if (!m) {
            /* nothing ready: show what we have, then wait a slice */
            if (fflush(stdout) != 0 && errno == EPIPE)
                break;
            int wait = CONSUME_POLL_SLICE_MS;
            if (idle_ms > 0) {
                int64_t left = idle_ms - (now_ms() - last);
                if (left <= 0)
                    break;
                if (left < wait)
                    wait = (int)left;
            }
            m = ferry_consumer_poll(client, wait);
            if (!m)
                continue;
        }
        last = now_ms();
        ferry_err_t me = ferry_message_err(m);
        if (me != FERRY_ERR_NONE) {
            int32_t pid = ferry_message_partition(m);
            const char *detail = ferry_message_errstr(m);
            nerrors++;
            for (size_t i = 0; parts != NULL && i < nparts; i++)
                if (parts[i].partition == pid && !parts[i].dead && !ferry_err_is_retriable(me)) {
                    parts[i].dead = true;
                    ndead++;
                }
            if (ctl->format == FMT_JSON) {
                struct jw w;
                jw_doc_begin(&w, stdout);
                jw_kstr(&w, "topic", topic);
                jw_kint(&w, "partition", pid);
                jw_key(&w, "error");
                jw_error(&w, me, detail ? detail : ferry_err_str(me));
                jw_doc_end(&w);
            }
            fprintf(stderr, "ferryctl consume: %s/%" PRId32 ": %s (%s)\n", topic, pid,
                    detail ? detail : ferry_err_str(me), ferry_err_name(me));
            ferry_message_destroy(m);
            continue;
        }
        if (ctl->format == FMT_JSON) {
            print_json(m);
        } else if (tmpl) {
            print_template(stdout, tmpl, m);
        } else {
            size_t vlen = 0;
            const void *v = ferry_message_value(m, &vlen);
            write_bytes(stdout, v, v ? vlen : 0);
            fputc('\n', stdout);
        }
        printed++;
        ferry_message_destroy(m);
        if (ferror(stdout))
            break; /* reader went away (EPIPE) */
    }
    fflush(stdout);
    if (group) {
        /* Commit what was printed and leave, so the partitions move to the other members at once. */
        e = ferry_consumer_close(client, ctl->timeout_ms);
        if (e != FERRY_ERR_NONE) {
            fprintf(stderr, "ferryctl consume: leaving group %s: %s\n", group, ferry_err_str(e));
            nerrors++;
        }
    }
    if (nerrors)
        rc = (printed > 0 || ndead < nparts) ? EXIT_PARTIAL : EXIT_FAIL;

out:
    free(parts);
    free(tps);
    free(req);
    ferry_metadata_destroy(md);
    if (client)
        ferry_client_close(client, 1000);
    ferry_client_destroy(client);
    return rc;
}
