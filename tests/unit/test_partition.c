/* test_partition.c: group commit in broker/partition.c: a sync that cannot start is retried, not fatal. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "ferry_errors.h"
#include "ferrytest.h"
#include "partition.h"
#include "proto/batch.h"
#include "proto/limits.h"

struct got {
    int calls;
    int error;
};

struct waiter_box {
    struct ferryd_waiter w;
    struct got *g;
};

static void on_durable(struct ferryd_waiter *w, int error, const char *errmsg)
{
    (void)errmsg;
    struct got *g = ((struct waiter_box *)(void *)w)->g;
    g->calls++;
    g->error = error;
}

/* Fills the descriptor table so that the next dup (ferry_log_sync_begin) fails with EMFILE. */
static int *exhaust_fds(int *n)
{
    int cap = 1 << 16, *fds = malloc((size_t)cap * sizeof(int));
    cr_assert_not_null(fds);
    *n = 0;
    for (;;) {
        int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            break;
        cr_assert_lt(*n, cap, "could not exhaust the descriptor table");
        fds[(*n)++] = fd;
    }
    return fds;
}

Test(partition, a_sync_that_cannot_start_is_retried_and_the_partition_stays_writable)
{
    char dir[256], err[256];
    cr_assert_eq(ft_tmpdir_make("partition", dir, sizeof(dir), err, sizeof(err)), 0, "%s", err);
    uv_loop_t loop;
    cr_assert_eq(uv_loop_init(&loop), 0);
    struct ferryd_partition_env env = {.loop = &loop};
    struct ferry_log_config cfg = {.segment_bytes = 1u << 20, .segment_ms = -1, .retention_ms = -1,
                                   .retention_bytes = -1, .index_interval_bytes = 4096};
    char logdir[300];
    snprintf(logdir, sizeof(logdir), "%s/t-0", dir);
    struct ferryd_partition *p;
    cr_assert_eq(ferryd_partition_open(&env, logdir, "t/0", 0, &cfg, &p, err, sizeof(err)), 0, "%s", err);

    uint8_t *batch;
    size_t len;
    cr_assert_eq(ft_make_batch(3, 10, 0, FERRY_COMPRESSION_NONE, &batch, &len, err, sizeof(err)), 0, "%s", err);

    /* The append starts a sync whose dup fails: nothing is fsynced, nothing is lost. */
    int nfds;
    int *fds = exhaust_fds(&nfds);
    int64_t base, next;
    int rc = ferryd_partition_append(p, batch, len, FERRY_MAX_BATCH_BYTES, &base, &next, err, sizeof(err));
    struct got g = {0};
    struct waiter_box box = {.w = {.offset = next, .cb = on_durable}, .g = &g};
    int queued = rc == 0 ? ferryd_partition_wait(p, &box.w) : -1;
    uv_run(&loop, UV_RUN_DEFAULT); /* the failed sync ends */
    for (int i = 0; i < nfds; i++)
        close(fds[i]);
    free(fds);
    cr_assert_eq(rc, 0, "append: %s", err);
    cr_assert_eq(queued, 0, "the waiter is queued");
    cr_assert_eq(g.calls, 0, "the waiter is neither answered nor failed while nothing is durable");
    cr_assert_eq(p->read_only, 0, "a sync that never reached fsync does not make the partition read-only");
    cr_assert_eq(ferry_log_durable_offset(p->log), 0);
    free(batch);

    /* The housekeeping timer's kick retries; the waiter is answered with success. */
    ferryd_partition_kick(p);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert_eq(g.calls, 1);
    cr_assert_eq(g.error, 0);
    cr_assert_eq(ferry_log_durable_offset(p->log), 3);

    /* And it still takes appends. */
    cr_assert_eq(ft_make_batch(1, 10, 3, FERRY_COMPRESSION_NONE, &batch, &len, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(ferryd_partition_append(p, batch, len, FERRY_MAX_BATCH_BYTES, &base, &next, err, sizeof(err)), 0,
                 "%s", err);
    free(batch);
    uv_run(&loop, UV_RUN_DEFAULT);
    ferryd_partition_close(p);
    cr_assert_eq(uv_loop_close(&loop), 0);
    ft_rmrf(dir);
}
