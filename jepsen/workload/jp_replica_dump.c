/* jp_replica_dump.c: Jepsen replica dump: every record of a stopped node's partition logs, from its segment files. */
/*
 * Offline and read-only: opens no broker code and changes nothing in the data dir (the storage
 * layer's open would repair a torn tail; this program must show the tail as it was). For each
 * partition of --topic, the segment files data.dir/topics/<topic>-<p>/<20-digit base>.log are read in
 * base-offset order, batch by batch (length, header and CRC checked with ferry_batch_validate;
 * records walked with the wire library's batch reader), and one line is written:
 *   {"type":"ok","f":"replica-read","source":NAME,"node_id":ID,"partition":P,
 *    "records":[[offset,value],...],"segments":K}
 * plus "torn_bytes":B when the last segment ends with an incomplete batch (what recovery would cut),
 * "error":"..." when a batch before the last segment's tail is corrupt or a file unreadable (records =
 * those before it; the checker treats such a replica read as incomplete),
 * "missing":true when the partition directory does not exist (the node never had the partition).
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "jp_common.h"
#include "proto/batch.h"

/* A segment is bounded by segment.bytes (default 1 GiB); refuse anything past 4 GiB before reading it. */
#define JP_MAX_SEGMENT_BYTES (4ULL << 30)
#define JP_MAX_SEGMENTS 100000

struct dump {
    struct jp_hist hist;
    FILE *line;
    size_t n_records;
    int64_t torn_bytes;
    char error[8704]; /* room for a full path and a reason */
};

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Segment file names of dir, sorted (20-digit names sort by base offset). *names is malloc'd. */
static int list_segments(const char *dir, char ***names, size_t *n, char *errmsg, size_t errmsg_len)
{
    *names = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (d == NULL) {
        snprintf(errmsg, errmsg_len, "%s: %s", dir, strerror(errno));
        return -1;
    }
    size_t cap = 0;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        if (l != 24 || strcmp(e->d_name + 20, ".log") != 0 || strspn(e->d_name, "0123456789") != 20)
            continue;
        if (*n == cap) {
            if (cap >= JP_MAX_SEGMENTS) {
                snprintf(errmsg, errmsg_len, "%s: more than %d segments", dir, JP_MAX_SEGMENTS);
                rc = -1;
                break;
            }
            cap = cap ? cap * 2 : 16;
            char **nn = realloc(*names, cap * sizeof *nn);
            if (nn == NULL) {
                snprintf(errmsg, errmsg_len, "out of memory");
                rc = -1;
                break;
            }
            *names = nn;
        }
        if (((*names)[*n] = strdup(e->d_name)) == NULL) {
            snprintf(errmsg, errmsg_len, "out of memory");
            rc = -1;
            break;
        }
        (*n)++;
    }
    closedir(d);
    if (*n > 1)
        qsort(*names, *n, sizeof **names, cmp_str);
    return rc;
}

static int read_file(const char *path, uint8_t **out, size_t *len, char *errmsg, size_t errmsg_len)
{
    *out = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(errmsg, errmsg_len, "%s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || st.st_size < 0 || (unsigned long long)st.st_size > JP_MAX_SEGMENT_BYTES) {
        snprintf(errmsg, errmsg_len, "%s: cannot size it or larger than %llu bytes", path, JP_MAX_SEGMENT_BYTES);
        goto err_after_open;
    }
    if (st.st_size > 0) {
        *out = malloc((size_t)st.st_size);
        if (*out == NULL) {
            snprintf(errmsg, errmsg_len, "%s: out of memory", path);
            goto err_after_open;
        }
        if (fread(*out, 1, (size_t)st.st_size, f) != (size_t)st.st_size) {
            snprintf(errmsg, errmsg_len, "%s: short read", path);
            goto err_after_buf;
        }
    }
    *len = (size_t)st.st_size;
    fclose(f);
    return 0;

err_after_buf:
    free(*out);
    *out = NULL;
err_after_open:
    fclose(f);
    return -1;
}

/* 1 if the bytes after a bad batch at pos (of claimed length blen) start with a valid batch. */
static int valid_batch_follows(const uint8_t *buf, size_t len, size_t pos, size_t blen)
{
    struct ferry_batch_header h;
    char err[256];
    size_t next = pos + blen, nlen = 0;
    if (blen < FERRY_BATCH_HEADER_SIZE || blen > len - pos || next >= len)
        return 0;
    if (ferry_batch_peek_length(buf + next, len - next, &nlen) != 0 || nlen < FERRY_BATCH_HEADER_SIZE ||
        nlen > len - next)
        return 0;
    return ferry_batch_validate(buf + next, nlen, nlen, &h, err, sizeof err) == 0;
}

/*
 * Appends the records of one segment to the line. A torn tail (an incomplete or invalid last
 * batch) is counted in torn_bytes when last is set; anywhere else it is an error. Returns 0 or -1.
 */
static int dump_segment(struct dump *d, const char *path, const uint8_t *buf, size_t len, int last)
{
    size_t pos = 0;
    while (pos < len) {
        size_t blen = 0;
        struct ferry_batch_header h;
        char verr[256] = "";
        int bad = ferry_batch_peek_length(buf + pos, len - pos, &blen) != 0 || blen < FERRY_BATCH_HEADER_SIZE ||
                  blen > len - pos;
        if (!bad && ferry_batch_validate(buf + pos, blen, blen, &h, verr, sizeof verr) != 0)
            bad = 1;
        if (bad) {
            /* Recovery cuts a bad tail of the last segment; a bad batch followed by a valid one is
             * corruption in the middle of the log, as in any other segment. */
            if (last && !valid_batch_follows(buf, len, pos, blen)) {
                d->torn_bytes = (int64_t)(len - pos);
                return 0;
            }
            snprintf(d->error, sizeof d->error, "%s: bad batch at byte %zu%s%s", path, pos, verr[0] ? ": " : "",
                     verr);
            return -1;
        }
        struct ferry_batch_reader r;
        if (ferry_batch_reader_init(&r, buf + pos, blen) != 0) {
            snprintf(d->error, sizeof d->error, "%s: batch at byte %zu: %s", path, pos, r.errmsg);
            ferry_batch_reader_free(&r);
            return -1;
        }
        struct ferry_record_view rec;
        int rc;
        while ((rc = ferry_batch_reader_next(&r, &rec)) == 1) {
            fprintf(d->line, "%s[%" PRId64 ",", d->n_records ? "," : "", rec.offset);
            jp_json_str(d->line, rec.value, rec.value_len);
            fputc(']', d->line);
            d->n_records++;
        }
        if (rc < 0) {
            snprintf(d->error, sizeof d->error, "%s: batch at byte %zu: %s", path, pos, r.errmsg);
            ferry_batch_reader_free(&r);
            return -1;
        }
        ferry_batch_reader_free(&r);
        pos += blen;
    }
    return 0;
}

/* Writes the line of one partition. Returns 0, or -1 if the partition could not be read entirely. */
static int dump_partition(struct dump *d, const char *data_dir, const char *topic, int32_t part, const char *source,
                          int64_t node_id)
{
    char dir[4096], path[4200];
    char **names = NULL;
    size_t n = 0;
    int rc = 0, missing = 0;
    snprintf(dir, sizeof dir, "%s/topics/%s-%d", data_dir, topic, (int)part);
    d->n_records = 0;
    d->torn_bytes = 0;
    d->error[0] = '\0';
    struct stat st;
    if (stat(dir, &st) != 0 && errno == ENOENT)
        missing = 1;
    else if (list_segments(dir, &names, &n, d->error, sizeof d->error) != 0)
        rc = -1;
    FILE *f = jp_line_begin(&d->hist, jp_now(), "final", "ok", "replica-read");
    if (f == NULL) {
        rc = -1;
        goto done;
    }
    d->line = f;
    fputs(",\"source\":", f);
    jp_json_str(f, source, strlen(source));
    if (node_id >= 0)
        fprintf(f, ",\"node_id\":%" PRId64, node_id);
    fprintf(f, ",\"partition\":%" PRId32 ",\"records\":[", part);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        uint8_t *buf;
        size_t len;
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if (read_file(path, &buf, &len, d->error, sizeof d->error) != 0) {
            rc = -1;
            break;
        }
        rc = dump_segment(d, path, buf, len, i + 1 == n);
        free(buf);
    }
    fprintf(f, "],\"segments\":%zu", n);
    if (d->torn_bytes > 0)
        fprintf(f, ",\"torn_bytes\":%" PRId64, d->torn_bytes);
    if (missing)
        fputs(",\"missing\":true", f);
    if (rc != 0) {
        fputs(",\"error\":", f);
        jp_json_str(f, d->error, strlen(d->error));
    }
    jp_line_end(&d->hist);
done:
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: jp_replica_dump --data-dir DIR --topic T --partitions N [options]\n"
               "  --source NAME       the node's name in the history (default: the data dir's name)\n"
               "  --node-id ID        the node's node.id, so the checker knows which replicas hold a partition\n"
               "  --history FILE      history file, appended to (default - = stdout)\n");
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"data-dir", required_argument, NULL, 'D'}, {"topic", required_argument, NULL, 't'},
        {"partitions", required_argument, NULL, 'n'}, {"source", required_argument, NULL, 's'},
        {"node-id", required_argument, NULL, 'i'},  {"history", required_argument, NULL, 'H'},
        {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0},
    };
    struct dump d;
    char errmsg[512];
    const char *data_dir = NULL, *topic = NULL, *source = NULL, *history = "-";
    int64_t partitions = 0, node_id = -1;
    int opt, li = 0;
    memset(&d, 0, sizeof d);
    while ((opt = getopt_long(argc, argv, "h", longopts, &li)) != -1) {
        int bad = 0;
        switch (opt) {
        case 'D': data_dir = optarg; break;
        case 't': topic = optarg; break;
        case 's': source = optarg; break;
        case 'H': history = optarg; break;
        case 'n': bad = jp_parse_i64(optarg, 1, 100000, &partitions); break;
        case 'i': bad = jp_parse_i64(optarg, 0, INT32_MAX, &node_id); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
        if (bad) {
            fprintf(stderr, "jp_replica_dump: bad value '%s' for --%s\n", optarg, longopts[li].name);
            return 2;
        }
    }
    if (data_dir == NULL || topic == NULL || partitions == 0 || optind != argc) {
        usage(stderr);
        return 2;
    }
    if (source == NULL) {
        const char *slash = strrchr(data_dir, '/');
        source = slash && slash[1] ? slash + 1 : data_dir;
    }
    struct stat st;
    int st_rc = stat(data_dir, &st); /* a wrong path must not look like empty logs */
    if (st_rc != 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "jp_replica_dump: --data-dir %s: %s\n", data_dir,
                st_rc != 0 ? strerror(errno) : "not a directory");
        return 1;
    }
    if (jp_hist_open(&d.hist, history, errmsg, sizeof errmsg) != 0) {
        fprintf(stderr, "jp_replica_dump: %s\n", errmsg);
        return 1;
    }
    int failed = 0;
    for (int32_t p = 0; p < (int32_t)partitions; p++) {
        if (dump_partition(&d, data_dir, topic, p, source, node_id) != 0) {
            fprintf(stderr, "jp_replica_dump: %s/%d: %s\n", topic, (int)p, d.error);
            failed++;
        }
    }
    if (jp_hist_close(&d.hist, errmsg, sizeof errmsg) != 0) {
        fprintf(stderr, "jp_replica_dump: %s\n", errmsg);
        return 1;
    }
    return failed ? 1 : 0;
}
