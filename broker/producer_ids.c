/* producer_ids.c: block allocation of producer ids with an fsync'd high-water mark in data.dir/meta (standalone brokers; a cluster takes blocks from the controller, membership.c). */
#include "producer_ids.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proto/codec.h"

#define PIDS_FILE "producer_ids"

struct ferryd_pids {
    char meta_dir[PATH_MAX];
    char path[PATH_MAX];
    int64_t next;  /* next id to hand out */
    int64_t limit; /* first id not reserved on disk */
};

static int read_all(int fd, uint8_t *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t r = read(fd, buf + got, len - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return 0;
}

int ferryd_pids_open(const char *data_dir, struct ferryd_pids **out, char *errmsg, size_t errmsg_len)
{
    uint8_t buf[256];
    char why[256];
    struct stat st;
    struct ferryd_pids *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        snprintf(errmsg, errmsg_len, "producer ids: out of memory");
        return -1;
    }
    if (snprintf(p->meta_dir, sizeof(p->meta_dir), "%s/meta", data_dir) >= (int)sizeof(p->meta_dir) ||
        snprintf(p->path, sizeof(p->path), "%s/%s", p->meta_dir, PIDS_FILE) >= (int)sizeof(p->path)) {
        snprintf(errmsg, errmsg_len, "producer ids: data.dir path too long");
        goto err_after_alloc;
    }
    int fd = open(p->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) {
            *out = p;
            return 0;
        }
        snprintf(errmsg, errmsg_len, "%s: %s", p->path, strerror(errno));
        goto err_after_alloc;
    }
    if (fstat(fd, &st) != 0 || st.st_size <= 0 || st.st_size > (off_t)sizeof(buf) ||
        read_all(fd, buf, (size_t)st.st_size) != 0) {
        snprintf(errmsg, errmsg_len, "%s: unreadable or of unexpected size", p->path);
        close(fd);
        goto err_after_alloc;
    }
    close(fd);
    struct ferry_msg m;
    if (ferry_msg_unpack(buf, (size_t)st.st_size, &m, why, sizeof(why)) != 0) {
        snprintf(errmsg, errmsg_len, "%s: corrupt: %s", p->path, why);
        goto err_after_alloc;
    }
    struct ferry_mp_reader rd = {0};
    int64_t until = 0;
    if (m.root.type == MSGPACK_OBJECT_MAP) {
        ferry_mp_int_range(&rd, &m.root, "version", 0, 1, 1, 1);
        until = ferry_mp_int_range(&rd, &m.root, "reserved_until", 0, 1, 0, INT64_MAX - FERRYD_PID_BLOCK);
    } else {
        rd.err = 1;
        snprintf(rd.errmsg, sizeof(rd.errmsg), "not a map");
    }
    ferry_msg_destroy(&m);
    if (rd.err) {
        snprintf(errmsg, errmsg_len, "%s: corrupt: %s", p->path, rd.errmsg);
        goto err_after_alloc;
    }
    p->next = p->limit = until;
    *out = p;
    return 0;

err_after_alloc:
    free(p);
    return -1;
}

void ferryd_pids_close(struct ferryd_pids *p)
{
    free(p);
}

/* Writes reserved_until atomically (tmp, fsync, rename, fsync dir). Returns 0 or -errno. */
static int persist(const struct ferryd_pids *p, int64_t until)
{
    char tmp[PATH_MAX + 8];
    msgpack_sbuffer sb;
    msgpack_packer pk;
    int rc = 0;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    ferry_pack_key(&pk, "version");
    msgpack_pack_int(&pk, 1);
    ferry_pack_key(&pk, "reserved_until");
    msgpack_pack_int64(&pk, until);
    snprintf(tmp, sizeof(tmp), "%s.tmp", p->path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = -errno;
        goto out;
    }
    if (sb.data == NULL || write(fd, sb.data, sb.size) != (ssize_t)sb.size || fsync(fd) != 0) {
        rc = errno ? -errno : -EIO;
        close(fd);
        unlink(tmp);
        goto out;
    }
    close(fd);
    if (rename(tmp, p->path) != 0) {
        rc = -errno;
        unlink(tmp);
        goto out;
    }
    int dfd = open(p->meta_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd) != 0)
        rc = -errno;
    if (dfd >= 0)
        close(dfd);
out:
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

int ferryd_pids_next(struct ferryd_pids *p, int64_t *id, char *errmsg, size_t errmsg_len)
{
    if (p->next >= p->limit) {
        if (p->limit > INT64_MAX - FERRYD_PID_BLOCK) {
            snprintf(errmsg, errmsg_len, "producer ids exhausted");
            return -1;
        }
        int rc = persist(p, p->limit + FERRYD_PID_BLOCK);
        if (rc != 0) {
            snprintf(errmsg, errmsg_len, "reserving producer ids in %s: %s", p->path, strerror(-rc));
            return -1;
        }
        p->limit += FERRYD_PID_BLOCK;
    }
    *id = p->next++;
    return 0;
}
