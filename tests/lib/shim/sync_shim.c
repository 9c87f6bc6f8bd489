/* sync_shim.c: LD_PRELOAD shim for crash tests: records each .log file's size at its last successful fsync. */
/*
 * Not part of libferrytest (it lives outside the tests/lib/ wildcard): the power-cut test compiles it with
 * cc -shared and runs ferryd with LD_PRELOAD pointing at it. For every fsync/fdatasync that
 * succeeds on a file whose name ends in ".log", it appends one line "<size> <path>\n" to the file
 * named by $FERRY_SYNC_SHIM_LOG (one O_APPEND write per line, so lines from the loop thread and the
 * thread pool never interleave, and every line survives a SIGKILL). After killing the broker the
 * test truncates each .log back towards its last synced size, as a power cut would.
 * $FERRY_SYNC_SHIM_DELAY_MS (optional) delays every fsync/fdatasync of a .log file, widening the
 * window in which appended data is not yet durable.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int fsync(int fd);
int fdatasync(int fd);

static int shim_is_log(int fd, char *path, size_t path_len);

/* Slows the fsync of a .log file only: the window that matters is the segment data's; metadata
 * fsyncs (directories, topic files) stay fast so requests around them do not time out. */
static void shim_delay(int fd)
{
    char path[4096];
    const char *d = getenv("FERRY_SYNC_SHIM_DELAY_MS");
    if (d == NULL || !shim_is_log(fd, path, sizeof path))
        return;
    long ms = d != NULL ? strtol(d, NULL, 10) : 0;
    if (ms > 0) {
        struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0)
            ;
    }
}

/* 1 if fd is a ".log" file (its path in path). */
static int shim_is_log(int fd, char *path, size_t path_len)
{
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, path_len - 1);
    if (n <= 4)
        return 0;
    path[n] = '\0';
    return strcmp(path + n - 4, ".log") == 0;
}

/* The size of fd when it is a .log file, else -1: taken BEFORE the fsync, because bytes appended
 * while it runs (another thread) are not covered by it. */
static long long shim_size_before(int fd)
{
    char path[4096];
    struct stat st;
    if (getenv("FERRY_SYNC_SHIM_LOG") == NULL || !shim_is_log(fd, path, sizeof path) || fstat(fd, &st) != 0)
        return -1;
    return (long long)st.st_size;
}

static void shim_record(int fd, long long size)
{
    const char *out = getenv("FERRY_SYNC_SHIM_LOG");
    char path[4096], line[4200];
    if (out == NULL || size < 0 || !shim_is_log(fd, path, sizeof path))
        return;
    int len = snprintf(line, sizeof line, "%lld %s\n", size, path);
    int o = open(out, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (o < 0)
        return;
    ssize_t w = write(o, line, (size_t)len);
    (void)w;
    close(o);
}

int fsync(int fd)
{
    static int (*real)(int);
    if (real == NULL)
        real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    long long size = shim_size_before(fd); /* the slow fsync below covers what was written before it */
    shim_delay(fd);
    int rc = real(fd);
    if (rc == 0)
        shim_record(fd, size);
    return rc;
}

int fdatasync(int fd)
{
    static int (*real)(int);
    if (real == NULL)
        real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    long long size = shim_size_before(fd); /* the slow fsync below covers what was written before it */
    shim_delay(fd);
    int rc = real(fd);
    if (rc == 0)
        shim_record(fd, size);
    return rc;
}
