/* test_uv_smoke.c: one-node raft_uv on disk (a silent transport) commits, closes, and reloads its log. */
#include <criterion/criterion.h>
#include <ftw.h>
#include <raft.h>
#include <raft/uv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

/* A transport with no network: a one-node group never connects, and the broker will bring its own
 * peer transport anyway (docs/raft-choice.md). */
static int quiet_init(struct raft_uv_transport *t, raft_id id, const char *address)
{
    (void)t;
    (void)id;
    (void)address;
    return 0;
}

static int quiet_listen(struct raft_uv_transport *t, raft_uv_accept_cb cb)
{
    (void)t;
    (void)cb;
    return 0;
}

static int quiet_connect(struct raft_uv_transport *t, struct raft_uv_connect *req, raft_id id,
                         const char *address, raft_uv_connect_cb cb)
{
    (void)req;
    (void)id;
    (void)address;
    (void)cb;
    snprintf(t->errmsg, sizeof(t->errmsg), "no peers in this test");
    return RAFT_NOCONNECTION;
}

static void quiet_close(struct raft_uv_transport *t, raft_uv_transport_close_cb cb)
{
    cb(t);
}

struct node {
    uv_loop_t loop;
    uv_timer_t deadline;
    struct raft_uv_transport transport;
    struct raft_io io;
    struct raft_fsm fsm;
    struct raft raft;
    struct raft_apply req;
    unsigned applied; /* commands applied by the FSM */
    int apply_status; /* 1 while pending */
    bool closed;
    bool timed_out;
};

static int count_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result)
{
    struct node *n = fsm->data;
    (void)buf;
    *result = NULL;
    n->applied++;
    return 0;
}

static void on_deadline(uv_timer_t *timer)
{
    struct node *n = timer->data;
    n->timed_out = true;
    uv_stop(&n->loop);
}

static void on_raft_closed(struct raft *r)
{
    struct node *n = r->data;
    n->closed = true;
    raft_uv_close(&n->io);
    uv_close((uv_handle_t *)&n->deadline, NULL);
}

static void on_applied(struct raft_apply *req, int status, void *result)
{
    struct node *n = req->data;
    (void)result;
    n->apply_status = status;
    uv_stop(&n->loop);
}

/* Opens node 1 on dir; bootstraps it first when asked. */
static void node_open(struct node *n, const char *dir, bool bootstrap)
{
    memset(n, 0, sizeof(*n));
    cr_assert_eq(uv_loop_init(&n->loop), 0);
    cr_assert_eq(uv_timer_init(&n->loop, &n->deadline), 0);
    n->deadline.data = n;
    cr_assert_eq(uv_timer_start(&n->deadline, on_deadline, 10000, 0), 0);
    n->transport.version = 1; /* 0.22 rejects transports without it (RAFT_INVALID) */
    n->transport.init = quiet_init;
    n->transport.listen = quiet_listen;
    n->transport.connect = quiet_connect;
    n->transport.close = quiet_close;
    cr_assert_eq(raft_uv_init(&n->io, &n->loop, dir, &n->transport), 0, "%s", n->io.errmsg);
    n->fsm.version = 1;
    n->fsm.data = n;
    n->fsm.apply = count_apply;
    cr_assert_eq(raft_init(&n->raft, &n->io, &n->fsm, 1, "1"), 0, "%s", raft_errmsg(&n->raft));
    n->raft.data = n;
    if (bootstrap) {
        struct raft_configuration conf;
        raft_configuration_init(&conf);
        cr_assert_eq(raft_configuration_add(&conf, 1, "1", RAFT_VOTER), 0);
        cr_assert_eq(raft_bootstrap(&n->raft, &conf), 0, "%s", raft_errmsg(&n->raft));
        raft_configuration_close(&conf);
    }
    cr_assert_eq(raft_start(&n->raft), 0, "%s", raft_errmsg(&n->raft));
}

/* Applies one command (the single node elects itself first) and waits for it. */
static void node_apply_one(struct node *n)
{
    struct raft_buffer buf;

    while (raft_state(&n->raft) != RAFT_LEADER && !n->timed_out) {
        uv_run(&n->loop, UV_RUN_ONCE);
    }
    cr_assert(!n->timed_out, "the single node never became leader");
    buf.len = 8;
    buf.base = raft_malloc(buf.len);
    cr_assert_not_null(buf.base);
    memset(buf.base, 0x42, buf.len);
    n->req.data = n;
    n->apply_status = 1;
    cr_assert_eq(raft_apply(&n->raft, &n->req, &buf, 1, on_applied), 0);
    uv_run(&n->loop, UV_RUN_DEFAULT);
    cr_assert(!n->timed_out, "the command was not applied within 10 s");
    cr_assert_eq(n->apply_status, 0, "%s", raft_strerror(n->apply_status));
}

static void node_close(struct node *n)
{
    raft_close(&n->raft, on_raft_closed);
    uv_run(&n->loop, UV_RUN_DEFAULT);
    cr_assert(n->closed);
    cr_assert_eq(uv_loop_close(&n->loop), 0, "handles left open");
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

Test(raft_uv, one_node_commits_closes_and_reloads, .timeout = 60)
{
    char dir[] = "/tmp/ferry-raft-uv-XXXXXX";
    struct node *n = calloc(1, sizeof(*n));

    cr_assert_not_null(n);
    cr_assert_not_null(mkdtemp(dir));
    node_open(n, dir, true);
    node_apply_one(n);
    cr_assert_eq(n->applied, 1);
    node_close(n);

    /* Reload: raft_uv parses the segment and metadata file names it wrote (the sscanf calls that
     * need raft/compat_glibc.c on Debian 12) and replays the committed command into a fresh FSM. */
    node_open(n, dir, false);
    node_apply_one(n);
    cr_assert_eq(n->applied, 2, "the reloaded log did not replay the first command");
    cr_assert_geq(raft_last_index(&n->raft), 3, "bootstrap entry + two commands");
    node_close(n);

    cr_assert_eq(nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS), 0);
    free(n);
}
