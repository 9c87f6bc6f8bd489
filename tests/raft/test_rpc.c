/* test_rpc.c: requests between raft/ nodes (raft/rpc.c, frame kind 5): answers, errors, timeouts, request-only links, the wire format. */
#include <criterion/criterion.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../raft/ferry_raft.h"
#include "net/conn.h"

#define CLUSTER 42

struct node {
    struct fr_node *n;
    char dir[64];
    /* handler behaviour and what it saw */
    int mode; /* 0 echo reversed, 1 keep (answer later), 2 never answer */
    unsigned calls;
    struct fr_rpc_from last;
    uint8_t body[64];
    size_t len;
};

struct reply {
    bool done;
    unsigned calls;
    int status;
    uint8_t body[64];
    size_t len;
};

static uv_loop_t loop;
static struct node A, B;

static void on_guard(uv_timer_t *t) { (void)t; }

/* Runs the loop until *flag or ms elapsed; returns *flag. */
static bool run_until(const bool *flag, int ms)
{
    uv_timer_t t;
    uv_timer_init(&loop, &t);
    uv_timer_start(&t, on_guard, (uint64_t)ms, 0);
    while (!*flag && uv_is_active((uv_handle_t *)&t))
        uv_run(&loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    return *flag;
}

static void handler(void *arg, const struct fr_rpc_from *from, const uint8_t *body, size_t len)
{
    struct node *x = arg;
    x->calls++;
    x->last = *from;
    cr_assert(len <= sizeof(x->body));
    memcpy(x->body, body, len);
    x->len = len;
    if (x->mode != 0)
        return;
    uint8_t out[64];
    for (size_t i = 0; i < len; i++)
        out[i] = body[len - 1 - i];
    cr_assert_eq(fr_node_respond(x->n, from, FR_OK, out, len), FR_OK);
}

static void on_reply(void *arg, int status, const uint8_t *body, size_t len)
{
    struct reply *r = arg;
    r->calls++;
    r->done = true;
    r->status = status;
    cr_assert(len <= sizeof(r->body));
    if (len > 0)
        memcpy(r->body, body, len);
    r->len = len;
}

static void start(struct node *x, uint64_t id, bool with_handler)
{
    char err[256];
    memset(x, 0, sizeof(*x));
    snprintf(x->dir, sizeof(x->dir), "/tmp/ferry-rpc-XXXXXX");
    cr_assert(mkdtemp(x->dir) != NULL);
    struct fr_node_config cfg = {
        .loop = &loop,
        .node_id = id,
        .cluster_id = CLUSTER,
        .listen_host = "127.0.0.1",
        .data_dir = x->dir,
        .rpc_handler = with_handler ? handler : NULL,
        .rpc_arg = x,
    };
    cr_assert_eq(fr_node_start(&cfg, &x->n, err, sizeof(err)), FR_OK, "%s", err);
}

static void on_stopped(void *arg) { *(bool *)arg = true; }

static void stop(struct node *x)
{
    if (x->n == NULL)
        return;
    bool done = false;
    fr_node_stop(x->n, on_stopped, &done);
    cr_assert(run_until(&done, 5000), "node stop");
    x->n = NULL;
    rmdir(x->dir);
}

static void setup(void)
{
    cr_assert_eq(uv_loop_init(&loop), 0);
}

static void teardown(void)
{
    stop(&A);
    stop(&B);
    uv_run(&loop, UV_RUN_NOWAIT);
    cr_assert_eq(uv_loop_close(&loop), 0, "every handle closed");
}

TestSuite(rpc, .init = setup, .fini = teardown, .timeout = 60);

static void peer_each_other(void)
{
    char err[256];
    cr_assert_eq(fr_node_set_peer(A.n, 2, "127.0.0.1", fr_node_port(B.n), err, sizeof(err)), FR_OK, "%s", err);
    cr_assert_eq(fr_node_set_peer(B.n, 1, "127.0.0.1", fr_node_port(A.n), err, sizeof(err)), FR_OK, "%s", err);
}

Test(rpc, request_answer_and_errors)
{
    char err[256];
    start(&A, 1, true);
    start(&B, 2, true);
    peer_each_other();

    struct reply r = {0};
    cr_assert_eq(fr_node_request(A.n, 2, "hello", 5, 5000, on_reply, &r, err, sizeof(err)), FR_OK, "%s", err);
    cr_assert(!r.done, "the callback never runs from inside the call");
    cr_assert(run_until(&r.done, 5000), "no answer");
    cr_assert_eq(r.status, FR_OK);
    cr_assert_eq(r.len, 5);
    cr_assert(memcmp(r.body, "olleh", 5) == 0);
    cr_assert_eq(B.calls, 1);
    cr_assert_eq(B.last.peer_id, 1, "the handler sees the sender's node id");

    /* The other direction, an empty body. */
    struct reply r2 = {0};
    cr_assert_eq(fr_node_request(B.n, 1, NULL, 0, 5000, on_reply, &r2, err, sizeof(err)), FR_OK, "%s", err);
    cr_assert(run_until(&r2.done, 5000));
    cr_assert_eq(r2.status, FR_OK);
    cr_assert_eq(r2.len, 0);
    cr_assert_eq(A.last.peer_id, 2);

    /* Refused at once (the callback never runs). */
    uint8_t *big = calloc(1, FR_RPC_MAX_BODY + 1);
    cr_assert_eq(fr_node_request(A.n, 1, "x", 1, 1000, on_reply, &r, err, sizeof(err)), FR_ERR_INVALID);
    cr_assert_eq(fr_node_request(A.n, 9, "x", 1, 1000, on_reply, &r, err, sizeof(err)), FR_ERR_NOT_FOUND);
    cr_assert_eq(fr_node_request(A.n, 2, big, FR_RPC_MAX_BODY + 1, 1000, on_reply, &r, err, sizeof(err)),
                 FR_ERR_TOO_BIG);
    free(big);
    cr_assert_eq(r.calls, 1, "refused requests never call back");
}

Test(rpc, answer_later_timeout_and_no_handler)
{
    char err[256];
    start(&A, 1, true);
    start(&B, 2, true);
    peer_each_other();

    /* B keeps the request and answers after the handler returned. */
    B.mode = 1;
    struct reply r = {0};
    cr_assert_eq(fr_node_request(A.n, 2, "abc", 3, 5000, on_reply, &r, err, sizeof(err)), FR_OK);
    for (int i = 0; i < 100 && B.calls == 0 && !r.done; i++)
        run_until(&r.done, 50);
    cr_assert_eq(B.calls, 1, "handler not called");
    cr_assert(!r.done, "answered before the handler answered");
    struct fr_rpc_from kept = B.last;
    cr_assert_eq(fr_node_respond(B.n, &kept, FR_ERR_BUSY, "no", 2), FR_OK);
    cr_assert(run_until(&r.done, 5000));
    cr_assert_eq(r.status, FR_ERR_BUSY, "the responder's status reaches the requester");
    cr_assert(memcmp(r.body, "no", 2) == 0 && r.len == 2);

    /* No answer in time: FR_ERR_IO once; a late answer is ignored. */
    B.mode = 2;
    struct reply t = {0};
    cr_assert_eq(fr_node_request(A.n, 2, "late", 4, 200, on_reply, &t, err, sizeof(err)), FR_OK);
    cr_assert(run_until(&t.done, 5000));
    cr_assert_eq(t.status, FR_ERR_IO);
    cr_assert_eq(B.calls, 2);
    kept = B.last;
    cr_assert_eq(fr_node_respond(B.n, &kept, FR_OK, "x", 1), FR_OK);
    bool never = false;
    run_until(&never, 300);
    cr_assert_eq(t.calls, 1, "a late answer does not call back again");

    /* A node without a handler answers FR_ERR_NOT_FOUND. */
    stop(&B);
    start(&B, 2, false);
    char e2[256];
    cr_assert_eq(fr_node_set_peer(A.n, 2, "127.0.0.1", fr_node_port(B.n), e2, sizeof(e2)), FR_OK);
    cr_assert_eq(fr_node_set_peer(B.n, 1, "127.0.0.1", fr_node_port(A.n), e2, sizeof(e2)), FR_OK);
    struct reply nh = {0};
    cr_assert_eq(fr_node_request(A.n, 2, "q", 1, 5000, on_reply, &nh, err, sizeof(err)), FR_OK);
    cr_assert(run_until(&nh.done, 5000));
    cr_assert_eq(nh.status, FR_ERR_NOT_FOUND);
}

Test(rpc, request_only_link_from_an_unknown_node)
{
    char err[256];
    start(&A, 1, true);
    start(&B, 7, true);
    /* B knows A's address; A has never heard of 7 (a joining broker). 7 > 1: A would be the
     * dialer, but it has no address: B dials a request-only connection. */
    cr_assert_eq(fr_node_set_peer(B.n, 1, "127.0.0.1", fr_node_port(A.n), err, sizeof(err)), FR_OK);
    struct reply r = {0};
    cr_assert_eq(fr_node_request(B.n, 1, "join", 4, 5000, on_reply, &r, err, sizeof(err)), FR_OK, "%s", err);
    cr_assert(run_until(&r.done, 5000), "no answer over the request-only connection");
    cr_assert_eq(r.status, FR_OK);
    cr_assert(memcmp(r.body, "nioj", 4) == 0);
    cr_assert_eq(A.last.peer_id, 7);
    struct fr_node_stats st;
    fr_node_stats(A.n, &st);
    cr_assert_eq(st.peers_up, 0, "a request-only connection is no peer link");

    /* A second request reuses it. */
    struct reply r2 = {0};
    cr_assert_eq(fr_node_request(B.n, 1, "ab", 2, 5000, on_reply, &r2, err, sizeof(err)), FR_OK);
    cr_assert(run_until(&r2.done, 5000));
    cr_assert_eq(r2.status, FR_OK);
    cr_assert_eq(A.calls, 2);
}

Test(rpc, pending_requests_fail_when_the_node_stops)
{
    char err[256];
    start(&A, 1, true);
    start(&B, 2, true);
    peer_each_other();
    B.mode = 2;
    struct reply r = {0};
    cr_assert_eq(fr_node_request(A.n, 2, "x", 1, 30000, on_reply, &r, err, sizeof(err)), FR_OK);
    bool never = false;
    run_until(&never, 200);
    cr_assert(!r.done);
    stop(&A);
    cr_assert(r.done);
    cr_assert_eq(r.calls, 1);
    cr_assert_eq(r.status, FR_ERR_SHUTDOWN);
}

/* ---- the wire format, byte for byte, from a raw connection ---- */

struct raw {
    struct ferry_conn *c;
    bool open, closed, got;
    uint8_t frame[128];
    size_t len;
};

static void raw_open(struct ferry_conn *c) { ((struct raw *)ferry_conn_data(c))->open = true; }
static void raw_frame(struct ferry_conn *c, const uint8_t *p, size_t len)
{
    struct raw *r = ferry_conn_data(c);
    cr_assert(len <= sizeof(r->frame));
    memcpy(r->frame, p, len);
    r->len = len;
    r->got = true;
}
static void raw_close(struct ferry_conn *c, int status, const char *reason)
{
    (void)status;
    (void)reason;
    ((struct raw *)ferry_conn_data(c))->closed = true;
}
static const struct ferry_conn_callbacks raw_cbs = {.on_open = raw_open, .on_frame = raw_frame, .on_close = raw_close};

static void put_be(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
}

Test(rpc, wire_format_and_malformed_frames)
{
    start(&A, 1, true);
    struct raw r = {0};
    cr_assert_eq(ferry_conn_connect(&loop, "127.0.0.1", fr_node_port(A.n), NULL, NULL, &raw_cbs, 1 << 20, &r, &r.c),
                 0);
    cr_assert(run_until(&r.open, 5000));
    /* hello: len 20 | kind 1, version 1, flags 0x0006 (rpc, request-only), cluster 42, node 9 */
    uint8_t hello[24];
    put_be(hello, 20, 4);
    hello[4] = 1;
    hello[5] = 1;
    put_be(hello + 6, 0x6, 2);
    put_be(hello + 8, CLUSTER, 8);
    put_be(hello + 16, 9, 8);
    cr_assert_eq(ferry_conn_send(r.c, hello, sizeof(hello)), 0);
    cr_assert(run_until(&r.got, 5000), "no hello back");
    cr_assert_eq(r.len, 20);
    cr_assert_eq(r.frame[0], 1);
    uint64_t id = 0;
    for (int i = 0; i < 8; i++)
        id = (id << 8) | r.frame[12 + i];
    cr_assert_eq(id, 1, "the acceptor names itself");
    cr_assert(r.frame[3] & 0x2, "the acceptor speaks rpc");

    /* request: len 15 | kind 5, type 1, status 0, request id 0x0102030405060708, body "xyz" */
    uint8_t req[19];
    put_be(req, 15, 4);
    req[4] = 5;
    req[5] = 1;
    put_be(req + 6, 0, 2);
    put_be(req + 8, 0x0102030405060708ULL, 8);
    memcpy(req + 16, "xyz", 3);
    r.got = false;
    cr_assert_eq(ferry_conn_send(r.c, req, sizeof(req)), 0);
    cr_assert(run_until(&r.got, 5000), "no response");
    const uint8_t want[] = {5, 2, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 'z', 'y', 'x'};
    cr_assert_eq(r.len, sizeof(want));
    cr_assert(memcmp(r.frame, want, sizeof(want)) == 0, "response bytes");
    cr_assert_eq(A.last.peer_id, 9);

    /* A raft frame on a request-only connection closes it. */
    uint8_t raft[16];
    put_be(raft, 12, 4);
    memset(raft + 4, 0, 12);
    raft[4] = 2;
    cr_assert_eq(ferry_conn_send(r.c, raft, sizeof(raft)), 0);
    cr_assert(run_until(&r.closed, 5000), "raft frame on a request-only connection accepted");

    /* An rpc frame of an unknown type closes the connection too. */
    struct raw r2 = {0};
    cr_assert_eq(ferry_conn_connect(&loop, "127.0.0.1", fr_node_port(A.n), NULL, NULL, &raw_cbs, 1 << 20, &r2,
                                    &r2.c),
                 0);
    cr_assert(run_until(&r2.open, 5000));
    cr_assert_eq(ferry_conn_send(r2.c, hello, sizeof(hello)), 0);
    cr_assert(run_until(&r2.got, 5000));
    req[5] = 3;
    cr_assert_eq(ferry_conn_send(r2.c, req, sizeof(req)), 0);
    cr_assert(run_until(&r2.closed, 5000), "rpc frame of type 3 accepted");
    /* And a hello from another cluster is refused. */
    struct raw r3 = {0};
    cr_assert_eq(ferry_conn_connect(&loop, "127.0.0.1", fr_node_port(A.n), NULL, NULL, &raw_cbs, 1 << 20, &r3,
                                    &r3.c),
                 0);
    cr_assert(run_until(&r3.open, 5000));
    put_be(hello + 8, CLUSTER + 1, 8);
    cr_assert_eq(ferry_conn_send(r3.c, hello, sizeof(hello)), 0);
    cr_assert(run_until(&r3.closed, 5000), "hello of another cluster accepted");
    cr_assert(!r3.got);
}
