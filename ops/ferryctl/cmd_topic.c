/* cmd_topic.c: `ferryctl topic create|list|describe|delete`, on libferry's admin API. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferryctl.h"

enum { T_PARTITIONS = 1, T_REPLICAS, T_CONFIG, T_IF_NOT_EXISTS, T_YES, T_DRY_RUN };

const struct optdef topic_create_opts[] = {
    {"partitions", 'p', 1, T_PARTITIONS, "N", "partition count (default: the broker's num.partitions)"},
    {"replicas", 'r', 1, T_REPLICAS, "N", "replication factor (default: the broker's default)"},
    {"config", 'c', 1, T_CONFIG, "KEY=VALUE", "topic config, e.g. -c retention.ms=86400000 (repeatable)"},
    {"if-not-exists", 0, 0, T_IF_NOT_EXISTS, NULL, "succeed if the topic already exists"},
    {0},
};
const struct optdef topic_list_opts[] = {{0}};
const struct optdef topic_describe_opts[] = {{0}};
const struct optdef topic_delete_opts[] = {
    {"yes", 'y', 0, T_YES, NULL, "really delete (without it ferryctl only shows what would go)"},
    {"dry-run", 0, 0, T_DRY_RUN, NULL, "show what would be deleted and exit 0"},
    {0},
};

/* The exit code for n items of which failed failed. */
static int items_exit(size_t n, size_t failed)
{
    if (failed == 0)
        return EXIT_OK;
    return failed == n ? EXIT_FAIL : EXIT_PARTIAL;
}

static void json_head(struct jw *w, const struct ctl *ctl, bool ok)
{
    jw_doc_begin(w, stdout);
    jw_kstr(w, "command", ctl->command);
    jw_kbool(w, "ok", ok);
}

/* ---- create ---- */

int cmd_topic_create(struct ctl *ctl, const struct parsed *p)
{
    int64_t partitions = -1, replicas = -1;
    bool if_not_exists = false;
    size_t ncfg = 0;
    int rc = EXIT_USAGE;
    char **keys = calloc(p->nopts + 1, sizeof(*keys));
    char **vals = calloc(p->nopts + 1, sizeof(*vals));
    ferry_client_t *client = NULL;
    if (!keys || !vals) {
        rc = EXIT_FAIL;
        goto out;
    }
    for (size_t i = 0; i < p->nopts; i++) {
        const struct parsed_opt *o = &p->opts[i];
        switch (o->id) {
        case T_PARTITIONS:
            if (parse_i64(o->val, 1, INT32_MAX, &partitions) != 0) {
                usage_error(ctl, "--partitions wants a positive integer, got '%s'", o->val);
                goto out;
            }
            break;
        case T_REPLICAS:
            if (parse_i64(o->val, 1, INT32_MAX, &replicas) != 0) {
                usage_error(ctl, "--replicas wants a positive integer, got '%s'", o->val);
                goto out;
            }
            break;
        case T_CONFIG:
            if (split_kv(o->val, &keys[ncfg], &vals[ncfg]) != 0) {
                usage_error(ctl, "-c wants KEY=VALUE, got '%s'", o->val);
                goto out;
            }
            ncfg++;
            break;
        case T_IF_NOT_EXISTS: if_not_exists = true; break;
        default: break;
        }
    }
    if (p->npos == 0) {
        usage_error(ctl, "topic create needs at least one topic NAME");
        goto out;
    }
    rc = ctl_connect(ctl, FERRY_ADMIN, &client);
    if (rc)
        goto out;

    struct jw w;
    size_t failed = 0;
    ferry_err_t *errs = calloc(p->npos, sizeof(*errs));
    char (*msgs)[512] = calloc(p->npos, sizeof(*msgs));
    if (!errs || !msgs) {
        free(errs);
        free(msgs);
        rc = EXIT_FAIL;
        goto out;
    }
    for (size_t i = 0; i < p->npos; i++) {
        errs[i] = ferry_admin_create_topic(client, p->pos[i], (int32_t)partitions, (int32_t)replicas,
                                           (const char *const *)keys, (const char *const *)vals, ncfg,
                                           ctl->timeout_ms, msgs[i], sizeof(msgs[i]));
        if (errs[i] == FERRY_ERR_TOPIC_ALREADY_EXISTS && if_not_exists)
            continue;
        if (errs[i] != FERRY_ERR_NONE)
            failed++;
    }
    if (ctl->format == FMT_JSON) {
        json_head(&w, ctl, failed == 0);
        jw_key(&w, "topics");
        jw_arr_begin(&w);
        for (size_t i = 0; i < p->npos; i++) {
            bool exists = errs[i] == FERRY_ERR_TOPIC_ALREADY_EXISTS && if_not_exists;
            jw_obj_begin(&w);
            jw_kstr(&w, "name", p->pos[i]);
            jw_kbool(&w, "ok", errs[i] == FERRY_ERR_NONE || exists);
            jw_kbool(&w, "created", errs[i] == FERRY_ERR_NONE);
            jw_kint(&w, "partitions", partitions);
            jw_kint(&w, "replicas", replicas);
            jw_key(&w, "error");
            if (errs[i] == FERRY_ERR_NONE || exists)
                jw_null(&w);
            else
                jw_error(&w, errs[i], msgs[i][0] ? msgs[i] : ferry_err_str(errs[i]));
            jw_obj_end(&w);
        }
        jw_arr_end(&w);
        jw_doc_end(&w);
    } else {
        for (size_t i = 0; i < p->npos; i++) {
            if (errs[i] == FERRY_ERR_NONE)
                printf("created topic %s\n", p->pos[i]);
            else if (errs[i] == FERRY_ERR_TOPIC_ALREADY_EXISTS && if_not_exists)
                printf("topic %s already exists\n", p->pos[i]);
            else
                fprintf(stderr, "ferryctl topic create: %s: %s (%s)\n", p->pos[i],
                        msgs[i][0] ? msgs[i] : ferry_err_str(errs[i]), ferry_err_name(errs[i]));
        }
    }
    rc = items_exit(p->npos, failed);
    free(errs);
    free(msgs);

out:
    ferry_client_destroy(client);
    for (size_t i = 0; keys && i < ncfg; i++) {
        free(keys[i]);
        free(vals[i]);
    }
    free(keys);
    free(vals);
    return rc;
}

/* ---- list ---- */

/* Fetches metadata for names (NULL = all topics); reports the error itself. */
static int fetch_metadata(const struct ctl *ctl, ferry_client_t *client, const char *const *names, size_t n,
                          ferry_metadata_t **md)
{
    char err[512] = "";
    ferry_err_t e = ferry_admin_describe_cluster(client, names, n, md, ctl->timeout_ms, err, sizeof(err));
    if (e != FERRY_ERR_NONE) {
        report_error(ctl, e, "metadata from %s: %s", ctl->brokers, err[0] ? err : ferry_err_str(e));
        return EXIT_FAIL;
    }
    return EXIT_OK;
}

static size_t topic_replicas(const ferry_metadata_t *md, size_t t)
{
    return ferry_metadata_partition_count(md, t) ? ferry_metadata_partition_replica_count(md, t, 0) : 0;
}

static int cmp_topic_idx(const void *a, const void *b, void *arg)
{
    const ferry_metadata_t *md = arg;
    return strcmp(ferry_metadata_topic_name(md, *(const size_t *)a), ferry_metadata_topic_name(md, *(const size_t *)b));
}

int cmd_topic_list(struct ctl *ctl, const struct parsed *p)
{
    if (p->npos) {
        usage_error(ctl, "topic list takes no arguments");
        return EXIT_USAGE;
    }
    ferry_client_t *client = NULL;
    ferry_metadata_t *md = NULL;
    int rc = ctl_connect(ctl, FERRY_ADMIN, &client);
    if (rc)
        return rc;
    rc = fetch_metadata(ctl, client, NULL, 0, &md);
    if (rc)
        goto out;
    size_t n = ferry_metadata_topic_count(md);
    size_t *idx = calloc(n + 1, sizeof(*idx));
    if (!idx) {
        rc = EXIT_FAIL;
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        idx[i] = i;
    qsort_r(idx, n, sizeof(*idx), cmp_topic_idx, md);
    if (ctl->format == FMT_JSON) {
        struct jw w;
        json_head(&w, ctl, true);
        jw_key(&w, "topics");
        jw_arr_begin(&w);
        for (size_t i = 0; i < n; i++) {
            jw_obj_begin(&w);
            jw_kstr(&w, "name", ferry_metadata_topic_name(md, idx[i]));
            jw_kint(&w, "partitions", (int64_t)ferry_metadata_partition_count(md, idx[i]));
            jw_kint(&w, "replicas", (int64_t)topic_replicas(md, idx[i]));
            jw_obj_end(&w);
        }
        jw_arr_end(&w);
        jw_doc_end(&w);
    } else if (n == 0) {
        printf("no topics\n");
    } else {
        printf("%-40s %10s %8s\n", "NAME", "PARTITIONS", "REPLICAS");
        for (size_t i = 0; i < n; i++)
            printf("%-40s %10zu %8zu\n", ferry_metadata_topic_name(md, idx[i]),
                   ferry_metadata_partition_count(md, idx[i]), topic_replicas(md, idx[i]));
    }
    free(idx);
out:
    ferry_metadata_destroy(md);
    ferry_client_destroy(client);
    return rc;
}

/* ---- describe ---- */

/* Log start/end of every partition of topic t, asked with ListOffsets; -1 where it failed. */
struct part_offsets {
    int64_t lo, hi;
    ferry_err_t err;
    char msg[256];
};

static struct part_offsets *topic_offsets(const struct ctl *ctl, ferry_client_t *client,
                                          const ferry_metadata_t *md, size_t t, size_t *failed)
{
    size_t np = ferry_metadata_partition_count(md, t);
    struct part_offsets *po = calloc(np + 1, sizeof(*po));
    if (!po)
        return NULL;
    const char *name = ferry_metadata_topic_name(md, t);
    for (size_t i = 0; i < np; i++) {
        int32_t part = ferry_metadata_partition_id(md, t, i);
        po[i].lo = po[i].hi = -1;
        po[i].err = ferry_admin_list_offsets(client, name, part, FERRY_TIMESTAMP_EARLIEST, &po[i].lo,
                                             ctl->timeout_ms, po[i].msg, sizeof(po[i].msg));
        if (po[i].err == FERRY_ERR_NONE)
            po[i].err = ferry_admin_list_offsets(client, name, part, FERRY_TIMESTAMP_LATEST, &po[i].hi,
                                                 ctl->timeout_ms, po[i].msg, sizeof(po[i].msg));
        if (po[i].err != FERRY_ERR_NONE)
            (*failed)++;
    }
    return po;
}

static void describe_json(struct jw *w, const ferry_metadata_t *md, size_t t, const struct part_offsets *po)
{
    ferry_err_t terr = ferry_metadata_topic_err(md, t);
    jw_obj_begin(w);
    jw_kstr(w, "name", ferry_metadata_topic_name(md, t));
    jw_kbool(w, "ok", terr == FERRY_ERR_NONE);
    jw_key(w, "error");
    if (terr == FERRY_ERR_NONE) {
        jw_null(w);
    } else {
        const char *m = ferry_metadata_topic_errstr(md, t);
        jw_error(w, terr, m ? m : ferry_err_str(terr));
    }
    if (terr == FERRY_ERR_NONE) {
        size_t np = ferry_metadata_partition_count(md, t);
        int64_t total = 0;
        jw_kint(w, "partition_count", (int64_t)np);
        jw_kint(w, "replicas", (int64_t)topic_replicas(md, t));
        jw_key(w, "partitions");
        jw_arr_begin(w);
        for (size_t i = 0; i < np; i++) {
            jw_obj_begin(w);
            jw_kint(w, "partition", ferry_metadata_partition_id(md, t, i));
            jw_kint(w, "leader", ferry_metadata_partition_leader(md, t, i));
            jw_key(w, "replicas");
            jw_arr_begin(w);
            for (size_t r = 0; r < ferry_metadata_partition_replica_count(md, t, i); r++)
                jw_int(w, ferry_metadata_partition_replica(md, t, i, r));
            jw_arr_end(w);
            jw_kint(w, "log_start_offset", po[i].lo);
            jw_kint(w, "log_end_offset", po[i].hi);
            if (po[i].lo >= 0 && po[i].hi >= po[i].lo) {
                jw_kint(w, "records", po[i].hi - po[i].lo);
                total += po[i].hi - po[i].lo;
            } else {
                jw_key(w, "records");
                jw_null(w);
            }
            ferry_err_t perr = ferry_metadata_partition_err(md, t, i);
            if (perr == FERRY_ERR_NONE)
                perr = po[i].err;
            jw_key(w, "error");
            if (perr == FERRY_ERR_NONE)
                jw_null(w);
            else
                jw_error(w, perr, po[i].msg[0] ? po[i].msg : ferry_err_str(perr));
            jw_obj_end(w);
        }
        jw_arr_end(w);
        jw_kint(w, "records", total);
        jw_key(w, "configs");
        jw_obj_begin(w);
        for (size_t i = 0; i < ferry_metadata_topic_config_count(md, t); i++) {
            const char *v = NULL;
            const char *k = ferry_metadata_topic_config(md, t, i, &v);
            if (k)
                jw_kstr(w, k, v);
        }
        jw_obj_end(w);
    }
    jw_obj_end(w);
}

static void describe_text(const ferry_metadata_t *md, size_t t, const struct part_offsets *po)
{
    const char *name = ferry_metadata_topic_name(md, t);
    size_t np = ferry_metadata_partition_count(md, t);
    printf("TOPIC       %s\nPARTITIONS  %zu\nREPLICAS    %zu\n", name, np, topic_replicas(md, t));
    size_t nc = ferry_metadata_topic_config_count(md, t);
    printf("CONFIGS    ");
    if (nc == 0)
        printf(" (broker defaults)");
    for (size_t i = 0; i < nc; i++) {
        const char *v = NULL;
        const char *k = ferry_metadata_topic_config(md, t, i, &v);
        printf(" %s=%s", k ? k : "?", v ? v : "");
    }
    printf("\n\n%-10s %-7s %-10s %-12s %-12s %-10s %s\n", "PARTITION", "LEADER", "REPLICAS", "LOG-START",
           "LOG-END", "RECORDS", "ERROR");
    for (size_t i = 0; i < np; i++) {
        char reps[128] = "";
        size_t off = 0;
        for (size_t r = 0; r < ferry_metadata_partition_replica_count(md, t, i) && off < sizeof(reps) - 16; r++)
            off += (size_t)snprintf(reps + off, sizeof(reps) - off, "%s%" PRId32, r ? "," : "",
                                    ferry_metadata_partition_replica(md, t, i, r));
        ferry_err_t perr = ferry_metadata_partition_err(md, t, i);
        if (perr == FERRY_ERR_NONE)
            perr = po[i].err;
        char recs[24] = "-";
        if (po[i].lo >= 0 && po[i].hi >= po[i].lo)
            snprintf(recs, sizeof(recs), "%" PRId64, po[i].hi - po[i].lo);
        printf("%-10" PRId32 " %-7" PRId32 " %-10s %-12" PRId64 " %-12" PRId64 " %-10s %s\n",
               ferry_metadata_partition_id(md, t, i), ferry_metadata_partition_leader(md, t, i), reps,
               po[i].lo, po[i].hi, recs, perr == FERRY_ERR_NONE ? "-" : ferry_err_name(perr));
    }
}

int cmd_topic_describe(struct ctl *ctl, const struct parsed *p)
{
    if (p->npos == 0) {
        usage_error(ctl, "topic describe needs at least one topic NAME");
        return EXIT_USAGE;
    }
    ferry_client_t *client = NULL;
    ferry_metadata_t *md = NULL;
    struct part_offsets **po = NULL;
    size_t nt = 0, failed = 0;
    int rc = ctl_connect(ctl, FERRY_ADMIN, &client);
    if (rc)
        return rc;
    rc = fetch_metadata(ctl, client, p->pos, p->npos, &md);
    if (rc)
        goto out;
    nt = ferry_metadata_topic_count(md);
    po = calloc(nt + 1, sizeof(*po));
    if (!po) {
        rc = EXIT_FAIL;
        goto out;
    }
    for (size_t t = 0; t < nt; t++) {
        if (ferry_metadata_topic_err(md, t) != FERRY_ERR_NONE) {
            failed++;
            continue;
        }
        size_t pfailed = 0;
        po[t] = topic_offsets(ctl, client, md, t, &pfailed);
        if (!po[t]) {
            rc = EXIT_FAIL;
            goto out;
        }
        if (pfailed)
            failed++;
    }
    if (ctl->format == FMT_JSON) {
        struct jw w;
        json_head(&w, ctl, failed == 0);
        jw_key(&w, "topics");
        jw_arr_begin(&w);
        for (size_t t = 0; t < nt; t++)
            describe_json(&w, md, t, po[t]);
        jw_arr_end(&w);
        jw_doc_end(&w);
    } else {
        bool first = true;
        for (size_t t = 0; t < nt; t++) {
            ferry_err_t terr = ferry_metadata_topic_err(md, t);
            if (terr != FERRY_ERR_NONE) {
                const char *m = ferry_metadata_topic_errstr(md, t);
                fprintf(stderr, "ferryctl topic describe: %s: %s (%s)\n", ferry_metadata_topic_name(md, t),
                        m ? m : ferry_err_str(terr), ferry_err_name(terr));
                continue;
            }
            if (!first)
                printf("\n");
            first = false;
            describe_text(md, t, po[t]);
        }
    }
    rc = items_exit(nt, failed);
out:
    for (size_t t = 0; po && t < nt; t++)
        free(po[t]);
    free(po);
    ferry_metadata_destroy(md);
    ferry_client_destroy(client);
    return rc;
}

/* ---- delete ---- */

int cmd_topic_delete(struct ctl *ctl, const struct parsed *p)
{
    bool yes = false, dry_run = false;
    for (size_t i = 0; i < p->nopts; i++) {
        if (p->opts[i].id == T_YES)
            yes = true;
        else if (p->opts[i].id == T_DRY_RUN)
            dry_run = true;
    }
    if (p->npos == 0) {
        usage_error(ctl, "topic delete needs at least one topic NAME");
        return EXIT_USAGE;
    }
    if (yes && dry_run) {
        usage_error(ctl, "--yes and --dry-run contradict each other");
        return EXIT_USAGE;
    }
    ferry_client_t *client = NULL;
    ferry_metadata_t *md = NULL;
    ferry_err_t *errs = NULL;
    char(*msgs)[512] = NULL;
    size_t nt = 0, failed = 0;
    int rc = ctl_connect(ctl, FERRY_ADMIN, &client);
    if (rc)
        return rc;
    /* What would go: each topic's partitions and record count. */
    rc = fetch_metadata(ctl, client, p->pos, p->npos, &md);
    if (rc)
        goto out;
    nt = ferry_metadata_topic_count(md);
    errs = calloc(nt + 1, sizeof(*errs));
    msgs = calloc(nt + 1, sizeof(*msgs));
    if (!errs || !msgs) {
        rc = EXIT_FAIL;
        goto out;
    }
    int64_t *records = calloc(nt + 1, sizeof(*records));
    if (!records) {
        rc = EXIT_FAIL;
        goto out;
    }
    for (size_t t = 0; t < nt; t++) {
        errs[t] = ferry_metadata_topic_err(md, t);
        if (errs[t] != FERRY_ERR_NONE) {
            const char *m = ferry_metadata_topic_errstr(md, t);
            snprintf(msgs[t], sizeof(msgs[t]), "%s", m ? m : ferry_err_str(errs[t]));
            failed++;
            continue;
        }
        size_t pf = 0;
        struct part_offsets *po = topic_offsets(ctl, client, md, t, &pf);
        records[t] = po ? 0 : -1;
        for (size_t i = 0; po && i < ferry_metadata_partition_count(md, t); i++) {
            if (po[i].lo < 0 || po[i].hi < po[i].lo) {
                records[t] = -1;
                break;
            }
            records[t] += po[i].hi - po[i].lo;
        }
        free(po);
    }
    bool act = yes;
    if (act) {
        for (size_t t = 0; t < nt; t++) {
            if (errs[t] != FERRY_ERR_NONE)
                continue;
            errs[t] = ferry_admin_delete_topic(client, ferry_metadata_topic_name(md, t), ctl->timeout_ms,
                                               msgs[t], sizeof(msgs[t]));
            if (errs[t] != FERRY_ERR_NONE)
                failed++;
        }
    }
    if (ctl->format == FMT_JSON) {
        struct jw w;
        json_head(&w, ctl, failed == 0 && (act || dry_run));
        jw_kbool(&w, "dry_run", !act);
        jw_key(&w, "topics");
        jw_arr_begin(&w);
        for (size_t t = 0; t < nt; t++) {
            jw_obj_begin(&w);
            jw_kstr(&w, "name", ferry_metadata_topic_name(md, t));
            jw_kbool(&w, "deleted", act && errs[t] == FERRY_ERR_NONE);
            jw_kint(&w, "partitions", (int64_t)ferry_metadata_partition_count(md, t));
            jw_kint(&w, "records", records[t]);
            jw_key(&w, "error");
            if (errs[t] == FERRY_ERR_NONE)
                jw_null(&w);
            else
                jw_error(&w, errs[t], msgs[t]);
            jw_obj_end(&w);
        }
        jw_arr_end(&w);
        jw_doc_end(&w);
    }
    for (size_t t = 0; t < nt; t++) {
        const char *name = ferry_metadata_topic_name(md, t);
        if (errs[t] != FERRY_ERR_NONE) {
            fprintf(stderr, "ferryctl topic delete: %s: %s (%s)\n", name, msgs[t], ferry_err_name(errs[t]));
            continue;
        }
        if (ctl->format == FMT_JSON)
            continue;
        char recs[32] = "an unknown number of";
        if (records[t] >= 0)
            snprintf(recs, sizeof(recs), "%" PRId64, records[t]);
        printf("%s topic %s (%zu partitions, %s records)\n", act ? "deleted" : "would delete", name,
               ferry_metadata_partition_count(md, t), recs);
    }
    free(records);
    if (!act) {
        if (dry_run) {
            rc = items_exit(nt, failed);
        } else {
            fprintf(stderr, "ferryctl topic delete: refusing to delete without --yes (nothing was deleted)\n");
            rc = EXIT_USAGE;
        }
    } else {
        rc = items_exit(nt, failed);
    }
out:
    free(errs);
    free(msgs);
    ferry_metadata_destroy(md);
    ferry_client_destroy(client);
    return rc;
}
