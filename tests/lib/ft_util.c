/* ft_util.c: test library basics: environment, timeout multiplier, clocks, seeded randomness, temp files. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ferrytest.h"

const char *ft_build_dir(void)
{
    static char dir[PATH_MAX];
    if (dir[0])
        return dir;
    const char *env = getenv("FERRY_BUILD");
    if (env && env[0]) {
        snprintf(dir, sizeof(dir), "%s", env);
    } else {
        char cwd[PATH_MAX - 16];
        if (!getcwd(cwd, sizeof(cwd)))
            snprintf(cwd, sizeof(cwd), ".");
        snprintf(dir, sizeof(dir), "%s/build", cwd);
    }
    return dir;
}

const char *ft_cert(const char *name, char *out, size_t out_len)
{
    snprintf(out, out_len, "%s/certs/%s", ft_build_dir(), name);
    return out;
}

double ft_timeout_mult(void)
{
    static double mult = 0;
    if (mult > 0)
        return mult;
    mult = 1.0;
    const char *env = getenv("FERRY_TEST_TIMEOUT_MULT");
    if (env && env[0]) {
        char *end = NULL;
        double v = strtod(env, &end);
        if (end != env && *end == '\0' && v >= 1.0 && v <= 100.0)
            mult = v;
        else
            fprintf(stderr, "ferrytest: ignoring FERRY_TEST_TIMEOUT_MULT=%s (want a number in [1, 100])\n", env);
    }
    return mult;
}

int ft_ms(int ms)
{
    double v = (double)ms * ft_timeout_mult();
    return v > (double)INT_MAX ? INT_MAX : (int)v;
}

int64_t ft_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t ft_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void ft_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* ---- seeded randomness: splitmix64 seeding an xorshift64* stream ---- */

static uint64_t seed_value;
static int seed_set;
static uint64_t rng_state;

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

uint64_t ft_seed(void)
{
    if (seed_set)
        return seed_value;
    const char *env = getenv("FERRY_TEST_SEED");
    char *end = NULL;
    if (env && env[0] && (errno = 0, seed_value = strtoull(env, &end, 0), errno == 0 && *end == '\0')) {
        /* replaying */
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t x = (uint64_t)ts.tv_sec * 1000000007ULL ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32);
        seed_value = splitmix64(&x) % 1000000000000ULL; /* short enough to type */
    }
    seed_set = 1;
    fprintf(stderr, "ferrytest: seed=%llu (replay with FERRY_TEST_SEED=%llu)\n", (unsigned long long)seed_value,
            (unsigned long long)seed_value);
    ft_seed_reset();
    return seed_value;
}

void ft_seed_reset(void)
{
    uint64_t x = ft_seed();
    rng_state = splitmix64(&x) | 1;
}

uint64_t ft_rand(void)
{
    if (!seed_set)
        ft_seed();
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dULL;
}

int64_t ft_rand_range(int64_t lo, int64_t hi)
{
    if (hi <= lo)
        return lo;
    uint64_t span = (uint64_t)(hi - lo) + 1;
    return lo + (int64_t)(ft_rand() % span);
}

void ft_fill_pattern(uint8_t *buf, size_t len, uint64_t id)
{
    uint64_t x = id * 0x9e3779b97f4a7c15ULL + 0x632be59bd9b4e019ULL;
    for (size_t i = 0; i < len; i += 8) {
        uint64_t v = splitmix64(&x);
        for (size_t j = 0; j < 8 && i + j < len; j++)
            buf[i + j] = (uint8_t)(v >> (8 * j));
    }
}

/* ---- files ---- */

int ft_tmpdir_make(const char *tag, char *out, size_t out_len, char *errmsg, size_t errmsg_len)
{
    const char *base = getenv("TMPDIR");
    if (!base || !base[0])
        base = "/tmp";
    int n = snprintf(out, out_len, "%s/ferry-%s-XXXXXX", base, tag);
    if (n < 0 || (size_t)n >= out_len) {
        snprintf(errmsg, errmsg_len, "temp dir path too long under %s", base);
        return -1;
    }
    if (!mkdtemp(out)) {
        snprintf(errmsg, errmsg_len, "mkdtemp %s: %s", out, strerror(errno));
        return -1;
    }
    return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    if (remove(path) != 0 && errno != ENOENT)
        return -1;
    return 0;
}

int ft_rmrf(const char *path)
{
    if (!path || !path[0])
        return 0;
    const char *keep = getenv("FERRY_TEST_KEEP");
    if (keep && strcmp(keep, "1") == 0) {
        fprintf(stderr, "ferrytest: keeping %s (FERRY_TEST_KEEP=1)\n", path);
        return 0;
    }
    /* A path that does not exist is already removed. */
    struct stat st;
    if (lstat(path, &st) != 0)
        return errno == ENOENT ? 0 : -1;
    return nftw(path, rm_entry, 32, FTW_DEPTH | FTW_PHYS) == 0 ? 0 : -1;
}

char *ft_read_file(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    if (!buf)
        goto err_fd;
    for (;;) {
        if (n + 1 >= cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb)
                goto err_buf;
            buf = nb;
            cap *= 2;
        }
        ssize_t r = read(fd, buf + n, cap - n - 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            goto err_buf;
        if (r == 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;

err_buf:
    free(buf);
err_fd:
    close(fd);
    return NULL;
}

int ft_write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    const uint8_t *p = data;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            close(fd);
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return close(fd) == 0 ? 0 : -1;
}

const char *ft_err_name(int code)
{
    switch (code) {
#define FT_ERR_CASE_(name, value, retriable, desc)                                                                     \
    case value:                                                                                                        \
        return #name;
        FERRY_ERROR_TABLE(FT_ERR_CASE_)
#undef FT_ERR_CASE_
    }
    return "?";
}
