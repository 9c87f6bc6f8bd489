/* libraft_wraps.c: replacements for two raft_uv internals on the hot path, linked with -Wl,--wrap (raft.mk). */
/*
 * Both were found by profiling a 3-broker cluster under produce load (docs/replication.md, "Storage"):
 *
 * - UvOsIoDestroy: raft_uv tears down a closed segment's kernel AIO context with io_destroy(2) on the
 *   loop thread; the kernel waits for an RCU grace period there (25-35 ms measured), which stalls the
 *   whole broker (every partition, every client). Here one reaper thread does the real teardown. The
 *   context is idle by then (raft_uv waited for its writes), so nothing depends on when it goes; until
 *   then it counts against fs.aio-max-nr. If the thread cannot start or the queue is full, the call is
 *   made in place, as before.
 *
 * - byteCrc32: the library checksums every entry it writes and loads with a byte-at-a-time table CRC
 *   (CRC-32/MPEG-2 form: polynomial 0x04C11DB7, MSB first, caller's initial value, no final xor): 31% of
 *   a broker's CPU at full produce rate. This is the same function computed 8 bytes per step (slicing by
 *   8); tests/raft/test_libraft_wraps.c checks it against the library's own on random inputs.
 *
 * The library is pinned (ops/raft-lib.sh, 0.22.1); both symbols are checked to exist at build time by
 * the link itself (--wrap of a missing symbol would leave __real_* undefined).
 */
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

int __real_UvOsIoDestroy(unsigned long ctx);
int __wrap_UvOsIoDestroy(unsigned long ctx);
unsigned __real_byteCrc32(const void *buf, size_t size, unsigned init);
unsigned __wrap_byteCrc32(const void *buf, size_t size, unsigned init);

/* ---- io_destroy off the loop ---- */

#define IO_REAP_MAX 256
static pthread_mutex_t io_reap_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t io_reap_cv = PTHREAD_COND_INITIALIZER;
static unsigned long io_reap_q[IO_REAP_MAX];
static unsigned io_reap_n;
static int io_reap_started; /* 0 not yet, 1 running, -1 could not start */

static void *io_reaper(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&io_reap_mu);
    for (;;) {
        while (io_reap_n == 0)
            pthread_cond_wait(&io_reap_cv, &io_reap_mu);
        unsigned long ctx = io_reap_q[--io_reap_n];
        pthread_mutex_unlock(&io_reap_mu);
        (void)__real_UvOsIoDestroy(ctx);
        pthread_mutex_lock(&io_reap_mu);
    }
    return NULL;
}

int __wrap_UvOsIoDestroy(unsigned long ctx)
{
    pthread_mutex_lock(&io_reap_mu);
    if (io_reap_started == 0) {
        pthread_t t;
        pthread_attr_t a;
        io_reap_started = -1;
        if (pthread_attr_init(&a) == 0) {
            if (pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED) == 0 &&
                pthread_create(&t, &a, io_reaper, NULL) == 0)
                io_reap_started = 1;
            pthread_attr_destroy(&a);
        }
    }
    if (io_reap_started == 1 && io_reap_n < IO_REAP_MAX) {
        io_reap_q[io_reap_n++] = ctx;
        pthread_cond_signal(&io_reap_cv);
        pthread_mutex_unlock(&io_reap_mu);
        return 0;
    }
    pthread_mutex_unlock(&io_reap_mu);
    return __real_UvOsIoDestroy(ctx);
}

/* ---- CRC-32/MPEG-2, sliced by 8 ---- */

#define CRC_POLY 0x04C11DB7u
/* crc_table[k][b]: the CRC step of byte b followed by k zero bytes. */
static uint32_t crc_table[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
    for (uint32_t b = 0; b < 256; b++) {
        uint32_t c = b << 24;
        for (int i = 0; i < 8; i++)
            c = (c & 0x80000000u) ? (c << 1) ^ CRC_POLY : c << 1;
        crc_table[0][b] = c;
    }
    for (int k = 1; k < 8; k++)
        for (uint32_t b = 0; b < 256; b++) {
            uint32_t p = crc_table[k - 1][b];
            crc_table[k][b] = (p << 8) ^ crc_table[0][p >> 24];
        }
}

static inline uint32_t load_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

unsigned __wrap_byteCrc32(const void *buf, size_t size, unsigned init)
{
    const uint8_t *p = buf;
    uint32_t crc = init;
    pthread_once(&crc_once, crc_init);
    while (size >= 8) {
        uint32_t hi = crc ^ load_be32(p);
        uint32_t lo = load_be32(p + 4);
        crc = crc_table[7][hi >> 24] ^ crc_table[6][(hi >> 16) & 0xff] ^ crc_table[5][(hi >> 8) & 0xff] ^
              crc_table[4][hi & 0xff] ^ crc_table[3][lo >> 24] ^ crc_table[2][(lo >> 16) & 0xff] ^
              crc_table[1][(lo >> 8) & 0xff] ^ crc_table[0][lo & 0xff];
        p += 8;
        size -= 8;
    }
    while (size-- > 0)
        crc = (crc << 8) ^ crc_table[0][(crc >> 24) ^ *p++];
    return crc;
}
