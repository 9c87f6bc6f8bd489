/* segment.c: one log segment: file creation, append with sparse indexes, offset and time lookup. */
#include "storage/segment.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ferry_errors.h"
#include "proto/limits.h"
#include "proto/varint.h"

#define SEGMENT_NAME_DIGITS 20

void ferry_storage_msg(const struct ferry_log_config *cfg, int level, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (cfg != NULL && cfg->msg_fn != NULL)
        cfg->msg_fn(cfg->msg_opaque, level, msg);
    else
        fprintf(stderr, "ferry: %s\n", msg);
}

void ferry_index_entry_encode(const struct ferry_index_entry *e, uint8_t out[FERRY_INDEX_ENTRY_SIZE])
{
    ferry_be32_put(out, e->rel_offset);
    ferry_be32_put(out + 4, e->position);
}

void ferry_time_entry_encode(const struct ferry_time_entry *e, uint8_t out[FERRY_TIME_ENTRY_SIZE])
{
    ferry_be64_put(out, (uint64_t)e->timestamp);
    ferry_be32_put(out + 8, e->rel_offset);
}

char *ferry_segment_path(const char *dir, int64_t base_offset, const char *suffix)
{
    assert(base_offset >= 0);
    size_t n = strlen(dir) + 1 + SEGMENT_NAME_DIGITS + 1 + strlen(suffix) + 1;
    char *p = malloc(n);
    if (p != NULL)
        snprintf(p, n, "%s/%020" PRId64 ".%s", dir, base_offset, suffix);
    return p;
}

int ferry_segment_parse_name(const char *name, int64_t *base)
{
    uint64_t v = 0;
    for (int i = 0; i < SEGMENT_NAME_DIGITS; i++) {
        if (name[i] < '0' || name[i] > '9')
            return -1;
        uint64_t d = (uint64_t)(name[i] - '0');
        if (v > (UINT64_C(0x7fffffffffffffff) - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    if (strcmp(name + SEGMENT_NAME_DIGITS, ".log") != 0)
        return -1;
    *base = (int64_t)v;
    return 0;
}

int ferry_pwrite_full(int fd, const void *buf, size_t len, uint64_t pos)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = pwrite(fd, p, len, (off_t)pos);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0)
                errno = EIO;
            return -1;
        }
        p += n;
        len -= (size_t)n;
        pos += (uint64_t)n;
    }
    return 0;
}

int ferry_pread_full(int fd, void *buf, size_t len, uint64_t pos)
{
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = pread(fd, p, len, (off_t)pos);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0)
                errno = EIO; /* the file is shorter than we know it to be */
            return -1;
        }
        p += n;
        len -= (size_t)n;
        pos += (uint64_t)n;
    }
    return 0;
}

static struct ferry_segment *segment_alloc(const char *dir, int64_t base_offset)
{
    struct ferry_segment *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->base_offset = base_offset;
    s->next_offset = base_offset;
    s->max_timestamp = INT64_MIN;
    s->first_append_ms = -1;
    s->log_fd = s->index_fd = s->time_fd = -1;
    s->log_path = ferry_segment_path(dir, base_offset, "log");
    if (s->log_path == NULL) {
        free(s);
        return NULL;
    }
    return s;
}

static int open_file(const char *dir, int64_t base, const char *suffix, int flags, char *errmsg, size_t errmsg_len)
{
    char *path = ferry_segment_path(dir, base, suffix);
    if (path == NULL) {
        snprintf(errmsg, errmsg_len, "out of memory");
        return -1;
    }
    int fd = open(path, flags | O_CLOEXEC, 0644);
    if (fd < 0)
        snprintf(errmsg, errmsg_len, "open %s: %s", path, strerror(errno));
    free(path);
    return fd;
}

int ferry_segment_create(const char *dir, int64_t base_offset, struct ferry_segment **out, char *errmsg,
                         size_t errmsg_len)
{
    struct ferry_segment *s = segment_alloc(dir, base_offset);
    if (s == NULL) {
        snprintf(errmsg, errmsg_len, "out of memory");
        return FERRY_ERR_STORAGE_ERROR;
    }
    s->log_fd = open_file(dir, base_offset, "log", O_RDWR | O_CREAT | O_EXCL, errmsg, errmsg_len);
    if (s->log_fd < 0)
        goto err_free;
    s->index_fd = open_file(dir, base_offset, "index", O_RDWR | O_CREAT | O_TRUNC, errmsg, errmsg_len);
    if (s->index_fd < 0)
        goto err_unlink_log;
    s->time_fd = open_file(dir, base_offset, "timeindex", O_RDWR | O_CREAT | O_TRUNC, errmsg, errmsg_len);
    if (s->time_fd < 0)
        goto err_unlink_log;
    *out = s;
    return 0;

err_unlink_log:
    unlink(s->log_path); /* an empty .log would be harmless, but leave no debris */
err_free:
    ferry_segment_free(s);
    return FERRY_ERR_STORAGE_ERROR;
}

int ferry_segment_open(const char *dir, int64_t base_offset, struct ferry_segment **out, char *errmsg,
                       size_t errmsg_len)
{
    struct ferry_segment *s = segment_alloc(dir, base_offset);
    if (s == NULL) {
        snprintf(errmsg, errmsg_len, "out of memory");
        return FERRY_ERR_STORAGE_ERROR;
    }
    s->log_fd = open_file(dir, base_offset, "log", O_RDWR, errmsg, errmsg_len);
    if (s->log_fd < 0)
        goto err_free;
    struct stat st;
    if (fstat(s->log_fd, &st) != 0) {
        snprintf(errmsg, errmsg_len, "stat %s: %s", s->log_path, strerror(errno));
        goto err_free;
    }
    s->size = (uint64_t)st.st_size; /* raw file size until ferry_segment_recover scans it */
    *out = s;
    return 0;

err_free:
    ferry_segment_free(s);
    return FERRY_ERR_STORAGE_ERROR;
}

void ferry_segment_deactivate(struct ferry_segment *s)
{
    if (s->index_fd >= 0)
        close(s->index_fd);
    if (s->time_fd >= 0)
        close(s->time_fd);
    s->index_fd = s->time_fd = -1;
}

void ferry_segment_free(struct ferry_segment *s)
{
    if (s == NULL)
        return;
    ferry_segment_deactivate(s);
    if (s->log_fd >= 0)
        close(s->log_fd);
    free(s->index);
    free(s->times);
    free(s->log_path);
    free(s);
}

char *ferry_segment_sibling_path(const struct ferry_segment *s, const char *suffix)
{
    size_t stem = strlen(s->log_path) - strlen("log"); /* keeps the trailing '.' */
    size_t n = stem + strlen(suffix) + 1;
    char *p = malloc(n);
    if (p != NULL)
        snprintf(p, n, "%.*s%s", (int)stem, s->log_path, suffix);
    return p;
}

int ferry_segment_unlink(const struct ferry_segment *s, char *errmsg, size_t errmsg_len)
{
    static const char *const suffixes[] = {"index", "timeindex"};
    for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
        char *path = ferry_segment_sibling_path(s, suffixes[i]);
        if (path == NULL) {
            snprintf(errmsg, errmsg_len, "out of memory");
            return FERRY_ERR_STORAGE_ERROR;
        }
        if (unlink(path) != 0 && errno != ENOENT) {
            snprintf(errmsg, errmsg_len, "unlink %s: %s", path, strerror(errno));
            free(path);
            return FERRY_ERR_STORAGE_ERROR;
        }
        free(path);
    }
    if (unlink(s->log_path) != 0 && errno != ENOENT) {
        snprintf(errmsg, errmsg_len, "unlink %s: %s", s->log_path, strerror(errno));
        return FERRY_ERR_STORAGE_ERROR;
    }
    return 0;
}

/* Makes room for one more entry in each index array (so accounting a batch cannot fail). */
static int reserve_entries(struct ferry_segment *s)
{
    if (s->index_len == s->index_cap) {
        uint32_t cap = s->index_cap ? s->index_cap * 2 : 64;
        void *p = realloc(s->index, (size_t)cap * sizeof(*s->index));
        if (p == NULL)
            return -1;
        s->index = p;
        s->index_cap = cap;
    }
    if (s->times_len == s->times_cap) {
        uint32_t cap = s->times_cap ? s->times_cap * 2 : 64;
        void *p = realloc(s->times, (size_t)cap * sizeof(*s->times));
        if (p == NULL)
            return -1;
        s->times = p;
        s->times_cap = cap;
    }
    return 0;
}

int ferry_segment_index_batch(struct ferry_segment *s, const struct ferry_batch_header *h, uint64_t position,
                              uint32_t index_interval, int *added_offset, int *added_time)
{
    assert(h->base_offset == s->next_offset);
    assert(position == s->size);
    assert(h->base_offset - s->base_offset <= (int64_t)UINT32_MAX && position <= UINT32_MAX);
    if (reserve_entries(s) != 0)
        return -1;
    uint32_t rel = (uint32_t)(h->base_offset - s->base_offset);
    int64_t running_max = h->max_timestamp > s->max_timestamp ? h->max_timestamp : s->max_timestamp;
    *added_offset = *added_time = 0;
    if (position > 0 && s->bytes_since_entry >= index_interval) {
        s->index[s->index_len++] = (struct ferry_index_entry){rel, (uint32_t)position};
        s->bytes_since_entry = 0;
        *added_offset = 1;
        if (s->times_len == 0 || running_max > s->times[s->times_len - 1].timestamp) {
            s->times[s->times_len++] = (struct ferry_time_entry){running_max, rel};
            *added_time = 1;
        }
    }
    s->bytes_since_entry += h->batch_length;
    s->max_timestamp = running_max;
    s->next_offset = h->base_offset + h->record_count;
    s->size = position + h->batch_length;
    return 0;
}

/* Writes the newest index entries to the index files; a failure only marks them for rebuild. */
static void write_index_entries(struct ferry_segment *s, int added_offset, int added_time)
{
    if (s->index_files_broken || s->index_fd < 0)
        return;
    uint8_t buf[FERRY_TIME_ENTRY_SIZE];
    if (added_offset) {
        ferry_index_entry_encode(&s->index[s->index_len - 1], buf);
        if (ferry_pwrite_full(s->index_fd, buf, FERRY_INDEX_ENTRY_SIZE,
                        (uint64_t)(s->index_len - 1) * FERRY_INDEX_ENTRY_SIZE) != 0)
            goto broken;
    }
    if (added_time) {
        ferry_time_entry_encode(&s->times[s->times_len - 1], buf);
        if (ferry_pwrite_full(s->time_fd, buf, FERRY_TIME_ENTRY_SIZE,
                        (uint64_t)(s->times_len - 1) * FERRY_TIME_ENTRY_SIZE) != 0)
            goto broken;
    }
    return;

broken:
    ferry_storage_msg(s->cfg, FERRY_LOG_MSG_WARN, "%s: index file write failed (%s); indexes rebuilt at next open",
                      s->log_path, strerror(errno));
    s->index_files_broken = 1;
}

int ferry_segment_append(struct ferry_segment *s, const uint8_t *batch, size_t len,
                         const struct ferry_batch_header *h, uint32_t index_interval, char *errmsg,
                         size_t errmsg_len)
{
    assert(len == h->batch_length);
    if (reserve_entries(s) != 0) {
        snprintf(errmsg, errmsg_len, "%s: out of memory for index entries", s->log_path);
        return FERRY_ERR_STORAGE_ERROR;
    }
    if (ferry_pwrite_full(s->log_fd, batch, len, s->size) != 0) {
        snprintf(errmsg, errmsg_len, "write %s at byte %" PRIu64 ": %s", s->log_path, s->size, strerror(errno));
        if (ftruncate(s->log_fd, (off_t)s->size) != 0) {
            /* the partial bytes stay past s->size: overwritten by the next append, or cut by recovery */
        }
        return FERRY_ERR_STORAGE_ERROR;
    }
    int added_offset, added_time;
    int rc = ferry_segment_index_batch(s, h, s->size, index_interval, &added_offset, &added_time);
    assert(rc == 0); /* capacity was reserved above */
    (void)rc;
    write_index_entries(s, added_offset, added_time);
    s->dirty = 1;
    return 0;
}

int ferry_segment_read_header(const struct ferry_segment *s, uint64_t pos, struct ferry_batch_header *h,
                              char *errmsg, size_t errmsg_len)
{
    uint8_t buf[FERRY_BATCH_HEADER_SIZE];
    assert(pos < s->size);
    if (ferry_pread_full(s->log_fd, buf, sizeof(buf), pos) != 0) {
        snprintf(errmsg, errmsg_len, "read %s at byte %" PRIu64 ": %s", s->log_path, pos, strerror(errno));
        return FERRY_ERR_STORAGE_ERROR;
    }
    ferry_batch_header_decode(buf, h);
    if (h->batch_length < FERRY_BATCH_HEADER_SIZE || h->batch_length > s->size - pos || h->record_count == 0 ||
        h->base_offset < s->base_offset || h->base_offset >= s->next_offset ||
        h->record_count > (uint64_t)(s->next_offset - h->base_offset)) {
        snprintf(errmsg, errmsg_len, "%s: unexpected batch header at byte %" PRIu64 " (file changed on disk?)",
                 s->log_path, pos);
        return FERRY_ERR_STORAGE_ERROR;
    }
    return 0;
}

/* Position from the offset index: of the last indexed batch with relative offset <= rel, else 0. */
static uint64_t index_floor(const struct ferry_segment *s, uint32_t rel)
{
    uint32_t lo = 0, hi = s->index_len; /* first entry with rel_offset > rel is in [lo, hi] */
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (s->index[mid].rel_offset <= rel)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo == 0 ? 0 : s->index[lo - 1].position;
}

int ferry_segment_locate(const struct ferry_segment *s, int64_t offset, uint64_t *pos, char *errmsg,
                         size_t errmsg_len)
{
    assert(offset >= s->base_offset && offset < s->next_offset);
    uint64_t p = index_floor(s, (uint32_t)(offset - s->base_offset));
    for (;;) { /* at most index_interval_bytes + one batch of headers */
        struct ferry_batch_header h;
        int rc = ferry_segment_read_header(s, p, &h, errmsg, errmsg_len);
        if (rc != 0)
            return rc;
        if (h.base_offset > offset) {
            snprintf(errmsg, errmsg_len, "%s: index points past offset %" PRId64, s->log_path, offset);
            return FERRY_ERR_STORAGE_ERROR;
        }
        if (offset < h.base_offset + (int64_t)h.record_count) {
            *pos = p;
            return 0;
        }
        p += h.batch_length;
    }
}

int ferry_segment_find_time(const struct ferry_segment *s, int64_t ts, int64_t *offset, char *errmsg,
                            size_t errmsg_len)
{
    if (s->next_offset == s->base_offset || s->max_timestamp < ts) {
        *offset = s->next_offset;
        return 0;
    }
    /* The last time entry below ts: every batch up to and including it has max_timestamp < ts. */
    uint32_t lo = 0, hi = s->times_len;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (s->times[mid].timestamp < ts)
            lo = mid + 1;
        else
            hi = mid;
    }
    uint64_t p = 0;
    if (lo > 0) {
        int rc = ferry_segment_locate(s, s->base_offset + s->times[lo - 1].rel_offset, &p, errmsg, errmsg_len);
        if (rc != 0)
            return rc;
    }
    while (p < s->size) {
        struct ferry_batch_header h;
        int rc = ferry_segment_read_header(s, p, &h, errmsg, errmsg_len);
        if (rc != 0)
            return rc;
        if (h.max_timestamp >= ts) {
            *offset = h.base_offset;
            return 0;
        }
        p += h.batch_length;
    }
    *offset = s->next_offset; /* unreachable while max_timestamp is right; stay safe */
    return 0;
}
