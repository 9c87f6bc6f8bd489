/* topics.c: the topic registry: create/delete/find topics, persisted atomically in data.dir/meta. */
#include "topics.h"

#include <assert.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stddef.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "ferry_errors.h"
#include "logging.h"
#include "proto/codec.h"

#define META_FILE "topics.msgpack"
#define MARKER_PREFIX "del."

const char *const ferryd_topic_config_keys[FERRYD_TOPIC_CONFIG_COUNT] = {"retention.ms", "retention.bytes",
                                                                         "segment.bytes", "segment.ms"};

struct ferryd_topics {
    char data_dir[PATH_MAX];
    char meta_dir[PATH_MAX];
    char topics_dir[PATH_MAX];
    struct ferry_log_config defaults;
    struct ferryd_partition_env env;
    struct ferryd_topic **v; /* sorted by name */
    size_t n, cap;
    struct ferryd_topic *deleting; /* topics whose partitions are still being removed */
};

/* ---- small file-system helpers ---- */

/* out = dir/name[suffix]; returns 0, or -ENAMETOOLONG (out then holds a truncated path). */
static int path_join(char *out, size_t out_len, const char *dir, const char *name, const char *suffix)
{
    int n = snprintf(out, out_len, "%s/%s%s", dir, name, suffix ? suffix : "");
    return n < 0 || (size_t)n >= out_len ? -ENAMETOOLONG : 0;
}

static int fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) != 0 ? -errno : 0;
    close(fd);
    return rc;
}

static int mkdir_p(const char *path)
{
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
        return -ENAMETOOLONG;
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        return -errno;
    return 0;
}

/* Removes a directory and everything below it. A missing directory is success. Returns 0 or -errno. */
static int remove_tree(const char *path)
{
    char child[PATH_MAX];
    int rc = 0;
    DIR *d = opendir(path);
    if (d == NULL)
        return errno == ENOENT ? 0 : -errno;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (snprintf(child, sizeof(child), "%s/%s", path, de->d_name) >= (int)sizeof(child)) {
            rc = -ENAMETOOLONG;
            continue;
        }
        if (de->d_type == DT_DIR) {
            int r = remove_tree(child);
            if (r != 0)
                rc = r;
        } else if (unlink(child) != 0 && errno != ENOENT) {
            rc = -errno;
        }
    }
    closedir(d);
    if (rmdir(path) != 0 && errno != ENOENT && rc == 0)
        rc = -errno;
    return rc;
}

/* Writes data to path atomically: path.tmp, fsync, rename, fsync the directory. Returns 0 or -errno. */
static int write_atomic(const char *dir, const char *path, const void *data, size_t len)
{
    char tmp[PATH_MAX];
    int rc;
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
        return -ENAMETOOLONG;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    const char *p = data;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            rc = -errno;
            goto err_after_open;
        }
        p += w;
        len -= (size_t)w;
    }
    if (fsync(fd) != 0) {
        rc = -errno;
        goto err_after_open;
    }
    if (close(fd) != 0) {
        rc = -errno;
        goto err_after_close;
    }
    if (rename(tmp, path) != 0) {
        rc = -errno;
        goto err_after_close;
    }
    return fsync_dir(dir);

err_after_open:
    close(fd);
err_after_close:
    unlink(tmp);
    return rc;
}

/* ---- names and configs ---- */

int ferryd_topic_name_check(const char *name, size_t len, char *errmsg, size_t errmsg_len)
{
    if (len == 0 || len > FERRY_MAX_TOPIC_NAME) {
        snprintf(errmsg, errmsg_len, "topic name must have 1 to %d characters, got %zu", FERRY_MAX_TOPIC_NAME, len);
        return FERRY_ERR_INVALID_TOPIC;
    }
    if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.')) {
        snprintf(errmsg, errmsg_len, "topic name must not be '.' or '..'");
        return FERRY_ERR_INVALID_TOPIC;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)name[i];
        if (!(isalnum(ch) && ch < 0x80) && ch != '.' && ch != '_' && ch != '-') {
            snprintf(errmsg, errmsg_len, "topic name has invalid character 0x%02x at %zu (allowed: [A-Za-z0-9._-])",
                     ch, i);
            return FERRY_ERR_INVALID_TOPIC;
        }
    }
    return 0;
}

int ferryd_topic_config_set(struct ferryd_topic_config *tc, const char *key, size_t key_len, const char *value,
                            size_t value_len, char *errmsg, size_t errmsg_len)
{
    char k[64], v[64], why[256];
    int64_t num;
    if (key_len >= sizeof(k) || value_len >= sizeof(v)) {
        snprintf(errmsg, errmsg_len, "topic config '%.*s': key or value too long", (int)(key_len < 64 ? key_len : 64),
                 key);
        return FERRY_ERR_INVALID_CONFIG;
    }
    memcpy(k, key, key_len);
    k[key_len] = '\0';
    memcpy(v, value, value_len);
    v[value_len] = '\0';
    if (ferryd_config_topic_value(k, v, &num, why, sizeof(why)) != 0) {
        snprintf(errmsg, errmsg_len, "%s", why);
        return FERRY_ERR_INVALID_CONFIG;
    }
    for (int i = 0; i < FERRYD_TOPIC_CONFIG_COUNT; i++) {
        if (strcmp(k, ferryd_topic_config_keys[i]) == 0) {
            tc->set[i] = 1;
            tc->value[i] = num;
            return 0;
        }
    }
    snprintf(errmsg, errmsg_len, "unknown topic config '%s'", k);
    return FERRY_ERR_INVALID_CONFIG;
}

/* ---- the sorted array ---- */

static int name_cmp(const char *a, size_t alen, const char *b)
{
    size_t blen = strlen(b);
    int r = memcmp(a, b, alen < blen ? alen : blen);
    if (r != 0)
        return r;
    return alen < blen ? -1 : alen > blen ? 1 : 0;
}

/* Index of name, or -(insertion point) - 1. */
static long find_index(const struct ferryd_topics *t, const char *name, size_t len)
{
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int r = name_cmp(name, len, t->v[mid]->name);
        if (r == 0)
            return (long)mid;
        if (r < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return -(long)lo - 1;
}

static int insert_topic(struct ferryd_topics *t, struct ferryd_topic *topic)
{
    long idx = find_index(t, topic->name, strlen(topic->name));
    assert(idx < 0);
    size_t at = (size_t)(-idx - 1);
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        struct ferryd_topic **v = realloc(t->v, cap * sizeof(*v));
        if (v == NULL)
            return -1;
        t->v = v;
        t->cap = cap;
    }
    memmove(&t->v[at + 1], &t->v[at], (t->n - at) * sizeof(*t->v));
    t->v[at] = topic;
    t->n++;
    return 0;
}

static void remove_topic_at(struct ferryd_topics *t, size_t at)
{
    memmove(&t->v[at], &t->v[at + 1], (t->n - at - 1) * sizeof(*t->v));
    t->n--;
}

struct ferryd_topic *ferryd_topics_find(struct ferryd_topics *t, const char *name, size_t len)
{
    long idx = find_index(t, name, len);
    return idx >= 0 ? t->v[idx] : NULL;
}

size_t ferryd_topics_count(const struct ferryd_topics *t)
{
    return t->n;
}

struct ferryd_topic *ferryd_topics_at(struct ferryd_topics *t, size_t i)
{
    assert(i < t->n);
    return t->v[i];
}

struct ferryd_partition *ferryd_topic_partition(struct ferryd_topic *topic, int64_t id)
{
    if (id < 0 || id >= (int64_t)topic->npartitions)
        return NULL;
    return topic->partitions[id];
}

struct ferryd_partition_env *ferryd_topics_env(struct ferryd_topics *t)
{
    return &t->env;
}

/* ---- persistence ---- */

static int persist(struct ferryd_topics *t, char *errmsg, size_t errmsg_len)
{
    char path[PATH_MAX];
    char num[32];
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str_with_body(&pk, "version", 7);
    msgpack_pack_int(&pk, 1);
    msgpack_pack_str_with_body(&pk, "topics", 6);
    msgpack_pack_array(&pk, (uint32_t)t->n);
    for (size_t i = 0; i < t->n; i++) {
        const struct ferryd_topic *topic = t->v[i];
        uint32_t nconf = 0;
        for (int k = 0; k < FERRYD_TOPIC_CONFIG_COUNT; k++)
            nconf += topic->overrides.set[k] ? 1 : 0;
        msgpack_pack_map(&pk, 3u + (topic->local != NULL ? 1u : 0u) + (topic->token[0] != '\0' ? 1u : 0u));
        if (topic->token[0] != '\0') {
            msgpack_pack_str_with_body(&pk, "token", 5);
            msgpack_pack_str_with_body(&pk, topic->token, strlen(topic->token));
        }
        msgpack_pack_str_with_body(&pk, "name", 4);
        msgpack_pack_str_with_body(&pk, topic->name, strlen(topic->name));
        msgpack_pack_str_with_body(&pk, "partitions", 10);
        msgpack_pack_uint32(&pk, topic->npartitions);
        msgpack_pack_str_with_body(&pk, "configs", 7);
        msgpack_pack_map(&pk, nconf);
        for (int k = 0; k < FERRYD_TOPIC_CONFIG_COUNT; k++) {
            if (!topic->overrides.set[k])
                continue;
            int l = snprintf(num, sizeof(num), "%" PRId64, topic->overrides.value[k]);
            msgpack_pack_str_with_body(&pk, ferryd_topic_config_keys[k], strlen(ferryd_topic_config_keys[k]));
            msgpack_pack_str_with_body(&pk, num, (size_t)l);
        }
        if (topic->local != NULL) {
            uint32_t nlocal = 0;
            for (uint32_t k = 0; k < topic->npartitions; k++)
                nlocal += topic->local[k] ? 1u : 0u;
            msgpack_pack_str_with_body(&pk, "local", 5);
            msgpack_pack_array(&pk, nlocal);
            for (uint32_t k = 0; k < topic->npartitions; k++)
                if (topic->local[k])
                    msgpack_pack_uint32(&pk, k);
        }
    }
    if (path_join(path, sizeof(path), t->meta_dir, META_FILE, NULL) != 0) {
        msgpack_sbuffer_destroy(&sb);
        snprintf(errmsg, errmsg_len, "%s: path too long", t->meta_dir);
        return FERRY_ERR_STORAGE_ERROR;
    }
    int rc = write_atomic(t->meta_dir, path, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    if (rc != 0) {
        snprintf(errmsg, errmsg_len, "writing %s: %s", path, strerror(-rc));
        return FERRY_ERR_STORAGE_ERROR;
    }
    return 0;
}

/* local: npartitions flags copied into the topic, or NULL (every partition has a log here). */
static struct ferryd_topic *topic_new(struct ferryd_topics *t, const char *name, size_t len, uint32_t npartitions,
                                      const struct ferryd_topic_config *overrides, const uint8_t *local)
{
    struct ferryd_topic *topic = calloc(1, sizeof(*topic));
    if (topic == NULL)
        return NULL;
    topic->partitions = calloc(npartitions, sizeof(*topic->partitions));
    if (topic->partitions == NULL) {
        free(topic);
        return NULL;
    }
    if (local != NULL) {
        topic->local = malloc(npartitions);
        if (topic->local == NULL) {
            free(topic->partitions);
            free(topic);
            return NULL;
        }
        memcpy(topic->local, local, npartitions);
    }
    memcpy(topic->name, name, len);
    topic->name[len] = '\0';
    topic->npartitions = npartitions;
    topic->registry = t;
    if (overrides != NULL)
        topic->overrides = *overrides;
    topic->log_config = t->defaults;
    for (int k = 0; k < FERRYD_TOPIC_CONFIG_COUNT; k++)
        if (topic->overrides.set[k])
            ferryd_config_apply_topic_value(&topic->log_config, ferryd_topic_config_keys[k],
                                            topic->overrides.value[k]);
    return topic;
}

/* Frees a topic whose partitions are closed, deleted or were never opened. */
static void topic_free(struct ferryd_topic *topic)
{
    free(topic->local);
    free(topic->partitions);
    free(topic);
}

static int partition_dir(const struct ferryd_topics *t, const char *topic, uint32_t i, char *out, size_t out_len)
{
    return snprintf(out, out_len, "%s/%s-%" PRIu32, t->topics_dir, topic, i) >= (int)out_len ? -1 : 0;
}

/* Opens every partition of topic; create=1 empties leftover directories first. */
static int open_partitions(struct ferryd_topics *t, struct ferryd_topic *topic, int create, char *errmsg,
                           size_t errmsg_len)
{
    char dir[PATH_MAX];
    char label[FERRY_MAX_TOPIC_NAME + 16];
    struct stat st;
    int rc;
    for (uint32_t i = 0; i < topic->npartitions; i++) {
        if (topic->local != NULL && !topic->local[i])
            continue;
        if (partition_dir(t, topic->name, i, dir, sizeof(dir)) != 0) {
            snprintf(errmsg, errmsg_len, "partition directory path too long");
            return FERRY_ERR_STORAGE_ERROR;
        }
        if (create && stat(dir, &st) == 0) {
            LOG_WARN("topic %s: removing leftover directory %s (crash before the topic was recorded?)", topic->name,
                     dir);
            if ((rc = remove_tree(dir)) != 0) {
                snprintf(errmsg, errmsg_len, "removing leftover %s: %s", dir, strerror(-rc));
                return FERRY_ERR_STORAGE_ERROR;
            }
        }
        if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
            snprintf(errmsg, errmsg_len, "mkdir %s: %s", dir, strerror(errno));
            return FERRY_ERR_STORAGE_ERROR;
        }
        snprintf(label, sizeof(label), "%s/%" PRIu32, topic->name, i);
        rc = ferryd_partition_open(&t->env, dir, label, (int32_t)i, &topic->log_config, &topic->partitions[i],
                                   errmsg, errmsg_len);
        if (rc != 0)
            return rc;
    }
    if ((rc = fsync_dir(t->topics_dir)) != 0) {
        snprintf(errmsg, errmsg_len, "fsync %s: %s", t->topics_dir, strerror(-rc));
        return FERRY_ERR_STORAGE_ERROR;
    }
    return 0;
}

static void close_partitions(struct ferryd_topic *topic)
{
    for (uint32_t i = 0; i < topic->npartitions; i++) {
        if (topic->partitions[i] != NULL)
            ferryd_partition_close(topic->partitions[i]);
        topic->partitions[i] = NULL;
    }
}

/* Parses topics.msgpack into t->v (partitions not opened). */
static int load_meta(struct ferryd_topics *t, char *errmsg, size_t errmsg_len)
{
    char path[PATH_MAX];
    char why[256];
    struct ferry_msg m;
    struct stat st;
    uint8_t *buf = NULL;
    int rc = FERRY_ERR_STORAGE_ERROR;

    if (path_join(path, sizeof(path), t->meta_dir, META_FILE, NULL) != 0) {
        snprintf(errmsg, errmsg_len, "%s: path too long", t->meta_dir);
        return rc;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return 0;
        snprintf(errmsg, errmsg_len, "%s: %s", path, strerror(errno));
        return rc;
    }
    if (fstat(fd, &st) != 0 || st.st_size <= 0 || st.st_size > (off_t)FERRY_MAX_FRAME_BYTES) {
        snprintf(errmsg, errmsg_len, "%s: unexpected size %lld", path, (long long)st.st_size);
        goto out_close;
    }
    buf = malloc((size_t)st.st_size);
    if (buf == NULL) {
        snprintf(errmsg, errmsg_len, "%s: out of memory", path);
        goto out_close;
    }
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
        if (r <= 0) {
            if (r < 0 && errno == EINTR)
                continue;
            snprintf(errmsg, errmsg_len, "%s: read failed", path);
            goto out_free;
        }
        got += (size_t)r;
    }
    if (ferry_msg_unpack(buf, got, &m, why, sizeof(why)) != 0) {
        snprintf(errmsg, errmsg_len, "%s: corrupt: %s", path, why);
        goto out_free;
    }
    struct ferry_mp_reader rd = {0};
    if (m.root.type != MSGPACK_OBJECT_MAP) {
        snprintf(errmsg, errmsg_len, "%s: corrupt: not a map", path);
        goto out_msg;
    }
    int64_t version = ferry_mp_int_range(&rd, &m.root, "version", 0, 1, 1, 1);
    const msgpack_object_array *arr = ferry_mp_array(&rd, &m.root, "topics", 1);
    if (rd.err) {
        snprintf(errmsg, errmsg_len, "%s: corrupt: %s", path, rd.errmsg);
        goto out_msg;
    }
    (void)version;
    if (arr->size > FERRY_MAX_TOPICS) {
        snprintf(errmsg, errmsg_len, "%s: %u topics exceed the limit %d", path, arr->size, FERRY_MAX_TOPICS);
        goto out_msg;
    }
    for (uint32_t i = 0; i < arr->size; i++) {
        struct ferryd_topic_config tc = {0};
        size_t nlen = 0;
        const msgpack_object *tm = ferry_mp_elem_map(&rd, arr, i, "topics");
        const char *name = tm ? ferry_mp_str(&rd, tm, "name", &nlen, 1) : NULL;
        int64_t np = tm ? ferry_mp_int_range(&rd, tm, "partitions", 0, 1, 1, FERRY_MAX_PARTITIONS_PER_TOPIC) : 0;
        const msgpack_object *cm = tm ? ferry_mp_map(&rd, tm, "configs", 0) : NULL;
        const msgpack_object_array *la = tm ? ferry_mp_array(&rd, tm, "local", 0) : NULL;
        size_t tokl = 0;
        const char *tok = tm ? ferry_mp_str(&rd, tm, "token", &tokl, 0) : NULL;
        if (!rd.err && tokl > FERRYD_MAX_REQUEST_TOKEN) {
            snprintf(errmsg, errmsg_len, "%s: corrupt: topic %u: token too long", path, i);
            goto out_msg;
        }
        if (rd.err) {
            snprintf(errmsg, errmsg_len, "%s: corrupt: topic %u: %s", path, i, rd.errmsg);
            goto out_msg;
        }
        if (ferryd_topic_name_check(name, nlen, why, sizeof(why)) != 0 || ferryd_topics_find(t, name, nlen)) {
            snprintf(errmsg, errmsg_len, "%s: corrupt: topic %u: bad or duplicate name", path, i);
            goto out_msg;
        }
        for (uint32_t k = 0; cm != NULL && k < cm->via.map.size; k++) {
            const msgpack_object_kv *kv = &cm->via.map.ptr[k];
            if (kv->key.type != MSGPACK_OBJECT_STR || kv->val.type != MSGPACK_OBJECT_STR ||
                ferryd_topic_config_set(&tc, kv->key.via.str.ptr, kv->key.via.str.size, kv->val.via.str.ptr,
                                        kv->val.via.str.size, why, sizeof(why)) != 0) {
                snprintf(errmsg, errmsg_len, "%s: corrupt: topic %s: bad config", path, name);
                goto out_msg;
            }
        }
        uint8_t local[FERRY_MAX_PARTITIONS_PER_TOPIC];
        if (la != NULL) {
            memset(local, 0, (size_t)np);
            for (uint32_t k = 0; k < la->size; k++) {
                const msgpack_object *o = &la->ptr[k];
                if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER || o->via.u64 >= (uint64_t)np) {
                    snprintf(errmsg, errmsg_len, "%s: corrupt: topic %s: bad \"local\" partition", path, name);
                    goto out_msg;
                }
                local[o->via.u64] = 1;
            }
        }
        struct ferryd_topic *topic = topic_new(t, name, nlen, (uint32_t)np, &tc, la != NULL ? local : NULL);
        if (topic != NULL && tok != NULL)
            memcpy(topic->token, tok, tokl);
        if (topic == NULL || insert_topic(t, topic) != 0) {
            if (topic)
                topic_free(topic);
            snprintf(errmsg, errmsg_len, "%s: out of memory", path);
            goto out_msg;
        }
    }
    rc = 0;
out_msg:
    ferry_msg_destroy(&m);
out_free:
    free(buf);
out_close:
    close(fd);
    return rc;
}

/* Removes topics/<name>-<digits> directories. */
static int remove_topic_dirs(struct ferryd_topics *t, const char *name, char *errmsg, size_t errmsg_len)
{
    char dir[PATH_MAX];
    size_t nl = strlen(name);
    int rc = 0;
    DIR *d = opendir(t->topics_dir);
    if (d == NULL) {
        snprintf(errmsg, errmsg_len, "%s: %s", t->topics_dir, strerror(errno));
        return FERRY_ERR_STORAGE_ERROR;
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        const char *n = de->d_name;
        if (strncmp(n, name, nl) != 0 || n[nl] != '-' || n[nl + 1] == '\0')
            continue;
        const char *p = n + nl + 1;
        while (isdigit((unsigned char)*p))
            p++;
        if (*p != '\0')
            continue;
        int r = path_join(dir, sizeof(dir), t->topics_dir, n, NULL);
        if (r == 0)
            r = remove_tree(dir);
        if (r != 0) {
            snprintf(errmsg, errmsg_len, "removing %s: %s", dir, strerror(-r));
            rc = FERRY_ERR_STORAGE_ERROR;
        }
    }
    closedir(d);
    if (rc == 0)
        fsync_dir(t->topics_dir);
    return rc;
}

/* Finishes deletions interrupted by a crash (markers meta/del.<topic>). */
static int finish_deletions(struct ferryd_topics *t, char *errmsg, size_t errmsg_len)
{
    char path[PATH_MAX];
    int dirty = 0, rc = 0;
    DIR *d = opendir(t->meta_dir);
    if (d == NULL) {
        snprintf(errmsg, errmsg_len, "%s: %s", t->meta_dir, strerror(errno));
        return FERRY_ERR_STORAGE_ERROR;
    }
    struct dirent *de;
    /* Pass 1: drop the topics from the registry and remove their directories. */
    while ((de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, MARKER_PREFIX, strlen(MARKER_PREFIX)) != 0)
            continue;
        const char *name = de->d_name + strlen(MARKER_PREFIX);
        LOG_WARN("topic %s: finishing a deletion interrupted by a stop or crash", name);
        long idx = find_index(t, name, strlen(name));
        if (idx >= 0) {
            topic_free(t->v[idx]);
            remove_topic_at(t, (size_t)idx);
            dirty = 1;
        }
        if ((rc = remove_topic_dirs(t, name, errmsg, errmsg_len)) != 0)
            goto out;
    }
    if (dirty && (rc = persist(t, errmsg, errmsg_len)) != 0)
        goto out;
    /* Pass 2: the registry no longer names them; the markers can go. */
    rewinddir(d);
    while ((de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, MARKER_PREFIX, strlen(MARKER_PREFIX)) != 0)
            continue;
        if (path_join(path, sizeof(path), t->meta_dir, de->d_name, NULL) == 0)
            unlink(path);
    }
    fsync_dir(t->meta_dir);
out:
    closedir(d);
    return rc;
}

int ferryd_topics_open(uv_loop_t *loop, const char *data_dir, const struct ferry_log_config *defaults,
                       struct ferryd_topics **out, char *errmsg, size_t errmsg_len)
{
    int rc = FERRY_ERR_STORAGE_ERROR;
    struct ferryd_topics *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        snprintf(errmsg, errmsg_len, "out of memory");
        return rc;
    }
    t->env.loop = loop;
    t->defaults = *defaults;
    if (snprintf(t->data_dir, sizeof(t->data_dir), "%s", data_dir) >= (int)sizeof(t->data_dir) - 16) {
        snprintf(errmsg, errmsg_len, "data.dir path too long");
        goto err_after_alloc;
    }
    snprintf(t->meta_dir, sizeof(t->meta_dir), "%s/meta", data_dir);
    snprintf(t->topics_dir, sizeof(t->topics_dir), "%s/topics", data_dir);
    const char *dirs[] = {t->data_dir, t->meta_dir, t->topics_dir};
    for (int i = 0; i < 3; i++) {
        int r = mkdir_p(dirs[i]);
        if (r != 0) {
            snprintf(errmsg, errmsg_len, "creating %s: %s", dirs[i], strerror(-r));
            goto err_after_alloc;
        }
    }
    fsync_dir(t->data_dir);
    if ((rc = load_meta(t, errmsg, errmsg_len)) != 0)
        goto err_after_topics;
    if ((rc = finish_deletions(t, errmsg, errmsg_len)) != 0)
        goto err_after_topics;
    for (size_t i = 0; i < t->n; i++) {
        if ((rc = open_partitions(t, t->v[i], 0, errmsg, errmsg_len)) != 0)
            goto err_after_topics;
    }
    *out = t;
    return 0;

err_after_topics:
    for (size_t i = 0; i < t->n; i++) {
        close_partitions(t->v[i]);
        topic_free(t->v[i]);
    }
    free(t->v);
err_after_alloc:
    free(t);
    return rc;
}

void ferryd_topics_close(struct ferryd_topics *t)
{
    assert(t->env.syncs_in_flight == 0);
    assert(t->deleting == NULL);
    for (size_t i = 0; i < t->n; i++) {
        close_partitions(t->v[i]);
        topic_free(t->v[i]);
    }
    free(t->v);
    free(t);
}

static int is_deleting(const struct ferryd_topics *t, const char *name, size_t len)
{
    for (const struct ferryd_topic *d = t->deleting; d != NULL; d = d->next_deleting)
        if (name_cmp(name, len, d->name) == 0)
            return 1;
    return 0;
}

int ferryd_topics_create(struct ferryd_topics *t, const char *name, size_t len, int64_t npartitions,
                         const struct ferryd_topic_config *overrides, char *errmsg, size_t errmsg_len)
{
    return ferryd_topics_create_local(t, name, len, npartitions, overrides, NULL, NULL, 0, errmsg, errmsg_len);
}

int ferryd_topics_create_local(struct ferryd_topics *t, const char *name, size_t len, int64_t npartitions,
                               const struct ferryd_topic_config *overrides, const uint8_t *local, const char *token,
                               size_t token_len, char *errmsg, size_t errmsg_len)
{
    int rc = ferryd_topic_name_check(name, len, errmsg, errmsg_len);
    if (rc != 0)
        return rc;
    if (npartitions < 1 || npartitions > FERRY_MAX_PARTITIONS_PER_TOPIC) {
        snprintf(errmsg, errmsg_len, "partitions %" PRId64 " not in [1, %d]", npartitions,
                 FERRY_MAX_PARTITIONS_PER_TOPIC);
        return FERRY_ERR_INVALID_PARTITIONS;
    }
    if (token_len > FERRYD_MAX_REQUEST_TOKEN) {
        snprintf(errmsg, errmsg_len, "request_token longer than %d bytes", FERRYD_MAX_REQUEST_TOKEN);
        return FERRY_ERR_INVALID_REQUEST;
    }
    const struct ferryd_topic *have = ferryd_topics_find(t, name, len);
    if (have != NULL) {
        if (token_len > 0 && strlen(have->token) == token_len && memcmp(have->token, token, token_len) == 0)
            return 0; /* a retry of the request that created it */
        snprintf(errmsg, errmsg_len, "topic '%.*s' already exists", (int)len, name);
        return FERRY_ERR_TOPIC_ALREADY_EXISTS;
    }
    if (is_deleting(t, name, len)) {
        snprintf(errmsg, errmsg_len, "topic '%.*s' is still being deleted; retry", (int)len, name);
        return FERRY_ERR_STORAGE_ERROR;
    }
    if (t->n >= FERRY_MAX_TOPICS) {
        snprintf(errmsg, errmsg_len, "the broker already has %d topics (FERRY_MAX_TOPICS)", FERRY_MAX_TOPICS);
        return FERRY_ERR_LIMIT_EXCEEDED;
    }
    struct ferryd_topic *topic = topic_new(t, name, len, (uint32_t)npartitions, overrides, local);
    if (topic == NULL) {
        snprintf(errmsg, errmsg_len, "out of memory");
        return FERRY_ERR_STORAGE_ERROR;
    }
    if (token_len > 0)
        memcpy(topic->token, token, token_len);
    if ((rc = open_partitions(t, topic, 1, errmsg, errmsg_len)) != 0)
        goto err_after_open;
    if (insert_topic(t, topic) != 0) {
        snprintf(errmsg, errmsg_len, "out of memory");
        rc = FERRY_ERR_STORAGE_ERROR;
        goto err_after_open;
    }
    if ((rc = persist(t, errmsg, errmsg_len)) != 0)
        goto err_after_insert;
    if (local == NULL) {
        LOG_INFO("topic %s: created with %" PRIu32 " partition(s)", topic->name, topic->npartitions);
    } else {
        uint32_t nlocal = 0;
        for (uint32_t i = 0; i < topic->npartitions; i++)
            nlocal += local[i] ? 1u : 0u;
        LOG_INFO("topic %s: created with %" PRIu32 " partition(s), %" PRIu32 " of them with a log here", topic->name,
                 topic->npartitions, nlocal);
    }
    return 0;

err_after_insert:
    remove_topic_at(t, (size_t)find_index(t, topic->name, strlen(topic->name)));
err_after_open:
    /* Nothing was appended, so no sync is in flight: deletion is immediate. */
    for (uint32_t i = 0; i < topic->npartitions; i++) {
        if (topic->partitions[i] != NULL)
            ferryd_partition_delete(topic->partitions[i], NULL, NULL);
        topic->partitions[i] = NULL;
    }
    topic_free(topic);
    return rc;
}

static void finish_topic_deletion(struct ferryd_topic *topic)
{
    struct ferryd_topics *t = topic->registry;
    char path[PATH_MAX];
    fsync_dir(t->topics_dir);
    if (path_join(path, sizeof(path), t->meta_dir, MARKER_PREFIX, topic->name) != 0 || unlink(path) != 0)
        LOG_WARN("topic %s: removing deletion marker %s: %s", topic->name, path, strerror(errno));
    fsync_dir(t->meta_dir);
    for (struct ferryd_topic **pp = &t->deleting; *pp != NULL; pp = &(*pp)->next_deleting) {
        if (*pp == topic) {
            *pp = topic->next_deleting;
            break;
        }
    }
    LOG_INFO("topic %s: deleted", topic->name);
    topic_free(topic);
}

static void on_partition_deleted(struct ferryd_partition *p, void *arg)
{
    struct ferryd_topic *topic = arg;
    (void)p;
    assert(topic->deleting > 0);
    if (--topic->deleting == 0)
        finish_topic_deletion(topic);
}

int ferryd_topics_delete(struct ferryd_topics *t, const char *name, size_t len, char *errmsg, size_t errmsg_len)
{
    char path[PATH_MAX];
    long idx = find_index(t, name, len);
    if (idx < 0) {
        snprintf(errmsg, errmsg_len, "topic '%.*s' does not exist", (int)len, name);
        return FERRY_ERR_UNKNOWN_TOPIC_OR_PARTITION;
    }
    struct ferryd_topic *topic = t->v[idx];
    if (path_join(path, sizeof(path), t->meta_dir, MARKER_PREFIX, topic->name) != 0) {
        snprintf(errmsg, errmsg_len, "%s: path too long", t->meta_dir);
        return FERRY_ERR_STORAGE_ERROR;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || fsync(fd) != 0 || fsync_dir(t->meta_dir) != 0) {
        snprintf(errmsg, errmsg_len, "writing deletion marker %s: %s", path, strerror(errno));
        if (fd >= 0) {
            close(fd);
            unlink(path);
        }
        return FERRY_ERR_STORAGE_ERROR;
    }
    close(fd);
    remove_topic_at(t, (size_t)idx);
    int rc = persist(t, errmsg, errmsg_len);
    if (rc != 0) {
        insert_topic(t, topic); /* cannot fail: the array had room for it a moment ago */
        unlink(path);
        return rc;
    }
    topic->next_deleting = t->deleting;
    t->deleting = topic;
    topic->deleting = topic->npartitions + 1; /* +1: stay alive while this loop runs */
    for (uint32_t i = 0; i < topic->npartitions; i++) {
        struct ferryd_partition *p = topic->partitions[i];
        topic->partitions[i] = NULL;
        if (p != NULL)
            ferryd_partition_delete(p, on_partition_deleted, topic);
        else
            topic->deleting--; /* no log here */
    }
    on_partition_deleted(NULL, topic);
    return 0;
}

int ferryd_topics_restart_log(struct ferryd_partition *p, int64_t start, char *errmsg, size_t errmsg_len)
{
    char dir[PATH_MAX], seg[PATH_MAX], why[256];
    /* Every partition's env is its registry's (open_partitions): the registry is the env's container. */
    struct ferryd_topics *t = (struct ferryd_topics *)(void *)((char *)p->env - offsetof(struct ferryd_topics, env));
    const struct ferryd_topic *topic = NULL;
    for (size_t i = 0; i < t->n && topic == NULL; i++)
        if (p->id >= 0 && (uint32_t)p->id < t->v[i]->npartitions && t->v[i]->partitions[p->id] == p)
            topic = t->v[i];
    assert(topic != NULL && start >= 0);
    if (p->sync != NULL || p->wait_head != NULL) {
        snprintf(errmsg, errmsg_len, "partition %s: busy (a sync in flight); retry", p->label);
        return -1;
    }
    if (partition_dir(t, topic->name, (uint32_t)p->id, dir, sizeof(dir)) != 0 ||
        snprintf(seg, sizeof(seg), "%s/%020" PRId64 ".log", dir, start) >= (int)sizeof(seg)) {
        snprintf(errmsg, errmsg_len, "partition %s: path too long", p->label);
        return FERRY_ERR_STORAGE_ERROR;
    }
    ferry_log_close(p->log); /* no sync: everything in it is discarded */
    p->log = NULL;
    p->read_only = 1; /* until the new log is open */
    int rc = remove_tree(dir);
    int fd = -1;
    if (rc == 0 && mkdir(dir, 0755) != 0)
        rc = -errno;
    if (rc == 0 && (fd = open(seg, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0)
        rc = -errno;
    if (fd >= 0 && fsync(fd) != 0)
        rc = -errno;
    if (fd >= 0)
        close(fd);
    if (rc == 0 && (rc = fsync_dir(dir)) == 0)
        rc = fsync_dir(t->topics_dir);
    if (rc != 0) {
        snprintf(errmsg, errmsg_len, "partition %s: restarting its log at offset %" PRId64 ": %s", p->label, start,
                 strerror(-rc));
        goto err_reopen;
    }
    if ((rc = ferry_log_open(dir, &topic->log_config, &p->log, why, sizeof(why))) != 0) {
        snprintf(errmsg, errmsg_len, "partition %s: reopening its log: %s", p->label, why);
        goto err_reopen;
    }
    assert(ferry_log_start_offset(p->log) == start && ferry_log_end_offset(p->log) == start);
    ferryd_pstate_free(&p->pstate); /* the producers' batches are gone with the log */
    ferryd_pstate_init(&p->pstate);
    p->read_only = 0;
    return 0;

err_reopen:
    /* p needs a log object: whatever is on disk now, recovered (an empty dir gets an empty log at
     * 0), and read-only. If even that fails the broker cannot go on serving p: stop here. */
    mkdir(dir, 0755);
    if (ferry_log_open(dir, &topic->log_config, &p->log, why, sizeof(why)) != 0) {
        LOG_ERROR("%s; reopening %s failed too (%s): stopping the broker", errmsg, dir, why);
        abort();
    }
    return FERRY_ERR_STORAGE_ERROR;
}

void ferryd_topics_flush_all(struct ferryd_topics *t)
{
    for (size_t i = 0; i < t->n; i++)
        for (uint32_t k = 0; k < t->v[i]->npartitions; k++)
            if (t->v[i]->partitions[k] != NULL)
                ferryd_partition_kick(t->v[i]->partitions[k]);
}

void ferryd_topics_for_each_partition(struct ferryd_topics *t, void (*fn)(struct ferryd_partition *p, void *arg),
                                      void *arg)
{
    for (size_t i = 0; i < t->n; i++)
        for (uint32_t k = 0; k < t->v[i]->npartitions; k++)
            if (t->v[i]->partitions[k] != NULL)
                fn(t->v[i]->partitions[k], arg);
}
