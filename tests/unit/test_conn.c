/* test_conn.c: the framed transport (broker/net/conn.h) over loopback, plaintext and TLS, in one loop. */
#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <limits.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <uv.h>

#include "net/conn.h"

/* ---- certificates: generated once per run by ops/gen-certs.sh, or $FERRY_CERTS ---- */

#define CERTS_ENV "FERRY_TEST_CONN_CERTS"
static char made_certs_dir[PATH_MAX]; /* set in the runner process when we generated them */

ReportHook(PRE_ALL)(struct criterion_test_set *set)
{
    (void)set;
    const char *given = getenv("FERRY_CERTS");
    if (given != NULL && given[0] != '\0') {
        setenv(CERTS_ENV, given, 1);
        return;
    }
    char tmpl[] = "/tmp/ferry-test-conn-XXXXXX";
    if (mkdtemp(tmpl) == NULL) {
        perror("mkdtemp");
        exit(1);
    }
    snprintf(made_certs_dir, sizeof made_certs_dir, "%s/certs", tmpl);
    char cmd[PATH_MAX + 64];
    snprintf(cmd, sizeof cmd, "ops/gen-certs.sh '%s' >/dev/null", made_certs_dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "test_conn: '%s' failed (tests run from the repository root)\n", cmd);
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpl);
        if (system(cmd) != 0)
            fprintf(stderr, "test_conn: could not remove %s\n", tmpl);
        exit(1);
    }
    setenv(CERTS_ENV, made_certs_dir, 1);
}

ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
    (void)stats;
    if (made_certs_dir[0] == '\0')
        return;
    char cmd[PATH_MAX + 64];
    char *slash = strrchr(made_certs_dir, '/');
    *slash = '\0'; /* the mkdtemp directory */
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", made_certs_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "test_conn: could not remove %s\n", made_certs_dir);
}

/* Path of a certificate file; four rotating buffers so a config can use several at once. */
static const char *cert(const char *name)
{
    static char paths[4][PATH_MAX];
    static int next;
    const char *dir = getenv(CERTS_ENV);
    cr_assert_not_null(dir, "certificates were not generated");
    char *p = paths[next++ % 4];
    snprintf(p, PATH_MAX, "%s/%s", dir, name);
    return p;
}

/* ---- fixture: a loop, a listener, a server conn and a client conn ---- */

struct fx;
struct side {
    struct fx *fx;
    struct ferry_conn *c;
    int opened;
    int closed;
    int status;
    char reason[256];
    char peer[128];
    char cn[128];
    size_t frames;
    uint64_t bytes;
    void (*on_open)(struct side *s);
    void (*on_frame)(struct side *s, const uint8_t *p, size_t len);
    void (*on_close)(struct side *s);
};

struct fx {
    uv_loop_t loop;
    uv_tcp_t listener;
    uv_timer_t watchdog;
    uv_timer_t step; /* for tests that act later (pause checks) */
    int port;
    size_t srv_max_frame;
    size_t cli_max_frame;
    struct ferry_tls_ctx *stls;
    struct ferry_tls_ctx *ctls;
    struct side srv;
    struct side cli;
    void *test; /* per-test state */
};

static void side_open(struct ferry_conn *c)
{
    struct side *s = ferry_conn_data(c);
    cr_assert_eq(s->c, c);
    cr_assert_eq(s->opened, 0, "on_open twice");
    cr_assert_eq(s->closed, 0, "on_open after on_close");
    s->opened = 1;
    snprintf(s->peer, sizeof s->peer, "%s", ferry_conn_peer(c));
    const char *cn = ferry_conn_peer_cn(c);
    snprintf(s->cn, sizeof s->cn, "%s", cn != NULL ? cn : "");
    if (s->on_open != NULL)
        s->on_open(s);
}

static void side_frame(struct ferry_conn *c, const uint8_t *p, size_t len)
{
    struct side *s = ferry_conn_data(c);
    cr_assert(s->opened && !s->closed, "frame outside open..close");
    cr_assert_gt(len, 0);
    s->frames++;
    s->bytes += len;
    if (s->on_frame != NULL)
        s->on_frame(s, p, len);
}

static void side_close(struct ferry_conn *c, int status, const char *reason)
{
    struct side *s = ferry_conn_data(c);
    cr_assert_eq(s->c, c);
    cr_assert_eq(s->closed, 0, "on_close twice");
    cr_assert_not_null(reason);
    s->closed = 1;
    s->status = status;
    snprintf(s->reason, sizeof s->reason, "%s", reason);
    if (s->on_close != NULL)
        s->on_close(s);
    s->c = NULL;
}

static const struct ferry_conn_callbacks side_cb = {
    .on_open = side_open,
    .on_frame = side_frame,
    .on_close = side_close,
};

static void on_watchdog(uv_timer_t *t)
{
    (void)t;
    cr_assert_fail("test did not finish in time");
}

static void fx_init(struct fx *fx)
{
    memset(fx, 0, sizeof *fx);
    cr_assert_eq(uv_loop_init(&fx->loop), 0);
    fx->srv.fx = fx;
    fx->cli.fx = fx;
    fx->srv_max_frame = 8u << 20;
    fx->cli_max_frame = 8u << 20;
    uv_timer_init(&fx->loop, &fx->watchdog);
    uv_timer_init(&fx->loop, &fx->step);
    fx->watchdog.data = fx;
    fx->step.data = fx;
    uv_timer_start(&fx->watchdog, on_watchdog, 60000, 0);
    uv_unref((uv_handle_t *)&fx->watchdog);
}

/* Server TLS: default certs; mtls = require a client certificate. */
static void fx_tls(struct fx *fx, const char *server_cert, const char *server_key, int mtls, const char *client_ca,
                   const char *client_cert, const char *client_key)
{
    char err[256];
    struct ferry_tls_config s = {
        .ca_file = mtls ? cert("ca.crt") : NULL,
        .cert_file = cert(server_cert),
        .key_file = cert(server_key),
        .require_client_cert = mtls,
        .min_version_tls13 = 1,
    };
    fx->stls = ferry_tls_server_ctx_new(&s, err, sizeof err);
    cr_assert_not_null(fx->stls, "server ctx: %s", err);
    struct ferry_tls_config c = {
        .ca_file = cert(client_ca),
        .cert_file = client_cert != NULL ? cert(client_cert) : NULL,
        .key_file = client_key != NULL ? cert(client_key) : NULL,
        .min_version_tls13 = 1,
    };
    fx->ctls = ferry_tls_client_ctx_new(&c, err, sizeof err);
    cr_assert_not_null(fx->ctls, "client ctx: %s", err);
}

static void fx_tls_default(struct fx *fx)
{
    fx_tls(fx, "server.crt", "server.key", 0, "ca.crt", NULL, NULL);
}

static void on_connection(uv_stream_t *listener, int status)
{
    struct fx *fx = listener->data;
    cr_assert_eq(status, 0);
    cr_assert_null(fx->srv.c, "one connection per test");
    int rc = ferry_conn_accept(listener, fx->stls, &side_cb, fx->srv_max_frame, &fx->srv, &fx->srv.c);
    cr_assert_eq(rc, 0, "accept: %s", uv_strerror(rc));
    cr_assert_not_null(fx->srv.c);
    uv_close((uv_handle_t *)listener, NULL);
}

static void fx_listen(struct fx *fx)
{
    struct sockaddr_in sin;
    struct sockaddr_storage ss;
    int n = sizeof ss;
    cr_assert_eq(uv_tcp_init(&fx->loop, &fx->listener), 0);
    fx->listener.data = fx;
    cr_assert_eq(uv_ip4_addr("127.0.0.1", 0, &sin), 0);
    cr_assert_eq(uv_tcp_bind(&fx->listener, (const struct sockaddr *)&sin, 0), 0);
    cr_assert_eq(uv_listen((uv_stream_t *)&fx->listener, 16, on_connection), 0);
    cr_assert_eq(uv_tcp_getsockname(&fx->listener, (struct sockaddr *)&ss, &n), 0);
    fx->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void fx_connect(struct fx *fx, const char *host, const char *server_name)
{
    int rc = ferry_conn_connect(&fx->loop, host, fx->port, fx->ctls, server_name, &side_cb, fx->cli_max_frame,
                                &fx->cli, &fx->cli.c);
    cr_assert_eq(rc, 0, "connect: %s", uv_strerror(rc));
    cr_assert_not_null(fx->cli.c);
}

static void close_cb_noop(uv_handle_t *h)
{
    (void)h;
}

/* Runs the loop until every conn and the listener closed; then checks nothing is left. */
static void fx_run(struct fx *fx)
{
    uv_run(&fx->loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&fx->watchdog, close_cb_noop);
    if (!uv_is_closing((uv_handle_t *)&fx->step))
        uv_close((uv_handle_t *)&fx->step, close_cb_noop);
    uv_run(&fx->loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(&fx->loop), 0, "handles left open");
    ferry_tls_ctx_free(fx->stls);
    ferry_tls_ctx_free(fx->ctls);
}

/* ---- frames ---- */

static uint8_t pattern(size_t k, size_t i)
{
    return (uint8_t)(i * 31 + k * 7 + (i >> 9));
}

/* Sends payload as one frame; returns ferry_conn_send's result. */
static int send_payload(struct ferry_conn *c, const uint8_t *p, size_t len)
{
    uint8_t *f = malloc(len + 4);
    cr_assert_not_null(f);
    f[0] = (uint8_t)(len >> 24);
    f[1] = (uint8_t)(len >> 16);
    f[2] = (uint8_t)(len >> 8);
    f[3] = (uint8_t)len;
    memcpy(f + 4, p, len);
    int rc = ferry_conn_send(c, f, len + 4);
    free(f);
    return rc;
}

static void send_pattern(struct ferry_conn *c, size_t k, size_t len)
{
    uint8_t *p = malloc(len);
    cr_assert_not_null(p);
    for (size_t i = 0; i < len; i++)
        p[i] = pattern(k, i);
    cr_assert_eq(send_payload(c, p, len), 0);
    free(p);
}

static void check_pattern(size_t k, const uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (p[i] != pattern(k, i))
            cr_assert_fail("frame %zu byte %zu: got %u want %u", k, i, p[i], pattern(k, i));
    }
}

static void echo_frame(struct side *s, const uint8_t *p, size_t len)
{
    cr_assert_eq(send_payload(s->c, p, len), 0);
}

/* ---- echo of many frames of varied sizes ---- */

#define ECHO_FRAMES 340
static size_t echo_sizes[ECHO_FRAMES];

static void echo_sizes_init(void)
{
    static const size_t fixed[] = {1,     2,     3,     4,      5,      7,       100,     1000,           4095, 4096,
                                   4097,  16383, 16384, 16385,  65535,  65536,   65537,   100000,         1 << 20,
                                   2,     (3u << 20) + 7,       5,      16384 * 3 + 1,    (5u << 20) + 3, 1};
    size_t nfixed = sizeof fixed / sizeof fixed[0];
    uint32_t seed = 12345; /* fixed: a failure replays */
    for (size_t k = 0; k < ECHO_FRAMES; k++) {
        if (k < nfixed) {
            echo_sizes[k] = fixed[k];
        } else {
            seed = seed * 1103515245u + 12345u;
            echo_sizes[k] = 1 + (seed >> 8) % 3000;
        }
    }
}

static void echo_client_open(struct side *s)
{
    size_t total = 0;
    for (size_t k = 0; k < ECHO_FRAMES; k++) {
        send_pattern(s->c, k, echo_sizes[k]);
        total += echo_sizes[k] + 4;
    }
    /* Nothing can have been written yet: sends are flushed from the loop. */
    cr_assert_geq(ferry_conn_pending_bytes(s->c), total);
}

static void echo_client_frame(struct side *s, const uint8_t *p, size_t len)
{
    size_t k = s->frames - 1;
    cr_assert_lt(k, ECHO_FRAMES);
    cr_assert_eq(len, echo_sizes[k], "frame %zu: %zu bytes, want %zu", k, len, echo_sizes[k]);
    check_pattern(k, p, len);
    if (s->frames == ECHO_FRAMES)
        ferry_conn_close(s->c, "done");
}

static void run_echo(int tls)
{
    struct fx fx;
    fx_init(&fx);
    echo_sizes_init();
    if (tls)
        fx_tls_default(&fx);
    fx_listen(&fx);
    fx.srv.on_frame = echo_frame;
    fx.cli.on_open = echo_client_open;
    fx.cli.on_frame = echo_client_frame;
    fx_connect(&fx, "127.0.0.1", NULL);
    fx_run(&fx);

    cr_assert(fx.srv.opened && fx.cli.opened);
    cr_assert_eq(fx.cli.frames, ECHO_FRAMES);
    cr_assert_eq(fx.srv.frames, ECHO_FRAMES);
    cr_assert_eq(fx.srv.bytes, fx.cli.bytes);
    cr_assert_eq(fx.cli.status, 0);
    cr_assert_str_eq(fx.cli.reason, "done");
    cr_assert_eq(fx.srv.status, UV_EOF, "server: %d %s", fx.srv.status, fx.srv.reason);
    char want[64];
    snprintf(want, sizeof want, "127.0.0.1:%d", fx.port);
    cr_assert_str_eq(fx.cli.peer, want);
    cr_assert(strncmp(fx.srv.peer, "127.0.0.1:", 10) == 0, "server peer %s", fx.srv.peer);
    if (tls)
        cr_assert_str_eq(fx.cli.cn, "localhost");
    cr_assert_str_eq(fx.srv.cn, "", "no client certificate, no CN");
}

Test(conn, tls_echo_varied_sizes)
{
    run_echo(1);
}

Test(conn, plaintext_echo_varied_sizes)
{
    run_echo(0);
}

/* ---- TLS verification ---- */

static void send_hello(struct side *s)
{
    cr_assert_eq(send_payload(s->c, (const uint8_t *)"hello", 5), 0);
}

static void close_on_first(struct side *s, const uint8_t *p, size_t len)
{
    cr_assert_eq(len, 5);
    cr_assert(memcmp(p, "hello", 5) == 0);
    ferry_conn_close(s->c, "done");
}

Test(conn, mtls_accepts_client_certificate)
{
    struct fx fx;
    fx_init(&fx);
    fx_tls(&fx, "server.crt", "server.key", 1, "ca.crt", "client.crt", "client.key");
    fx_listen(&fx);
    fx.srv.on_frame = echo_frame;
    fx.cli.on_open = send_hello;
    fx.cli.on_frame = close_on_first;
    fx_connect(&fx, "127.0.0.1", NULL);
    fx_run(&fx);
    cr_assert(fx.srv.opened && fx.cli.opened);
    cr_assert_eq(fx.cli.frames, 1);
    cr_assert_str_eq(fx.srv.cn, "ferry-client");
    cr_assert_str_eq(fx.cli.cn, "localhost");
    cr_assert_eq(fx.cli.status, 0);
}

/* The server must refuse: no on_open, a TLS reason; the client ends too. */
static void run_server_refuses(const char *client_cert, const char *client_key, const char *want_reason)
{
    struct fx fx;
    fx_init(&fx);
    fx_tls(&fx, "server.crt", "server.key", 1, "ca.crt", client_cert, client_key);
    fx_listen(&fx);
    fx.srv.on_frame = echo_frame;
    fx.cli.on_open = send_hello;
    fx_connect(&fx, "127.0.0.1", NULL);
    fx_run(&fx);
    cr_log_info("server: %d %s | client: %d %s", fx.srv.status, fx.srv.reason, fx.cli.status, fx.cli.reason);
    cr_assert_eq(fx.srv.opened, 0);
    cr_assert_eq(fx.srv.frames, 0);
    cr_assert(fx.srv.closed && fx.cli.closed);
    cr_assert_eq(fx.srv.status, -1, "server: %d %s", fx.srv.status, fx.srv.reason);
    cr_assert(strstr(fx.srv.reason, want_reason) != NULL, "server reason: %s", fx.srv.reason);
    cr_assert_neq(fx.cli.status, 0);
    cr_assert_eq(fx.cli.frames, 0);
}

Test(conn, mtls_refuses_client_without_certificate)
{
    run_server_refuses(NULL, NULL, "TLS: peer did not return a certificate");
}

Test(conn, mtls_refuses_untrusted_client_certificate)
{
    run_server_refuses("other-server.crt", "other-server.key", "TLS: certificate verify failed: ");
}

/* The client must refuse: no on_open on either side, the client's reason says why. */
static void run_client_refuses(const char *server_cert, const char *server_key, const char *client_ca,
                               const char *host, const char *server_name, const char *want_reason)
{
    struct fx fx;
    fx_init(&fx);
    fx_tls(&fx, server_cert, server_key, 0, client_ca, NULL, NULL);
    fx_listen(&fx);
    fx.cli.on_open = send_hello;
    fx_connect(&fx, host, server_name);
    fx_run(&fx);
    cr_log_info("server: %d %s | client: %d %s", fx.srv.status, fx.srv.reason, fx.cli.status, fx.cli.reason);
    cr_assert_eq(fx.cli.opened, 0);
    cr_assert_eq(fx.srv.opened, 0);
    cr_assert_eq(fx.cli.status, -1, "client: %d %s", fx.cli.status, fx.cli.reason);
    cr_assert_str_eq(fx.cli.reason, want_reason);
    cr_assert(fx.srv.closed);
    cr_assert_eq(fx.srv.status, -1, "server: %d %s", fx.srv.status, fx.srv.reason);
    cr_assert(strncmp(fx.srv.reason, "TLS: ", 5) == 0, "server reason: %s", fx.srv.reason);
}

Test(conn, client_refuses_server_from_other_ca)
{
    run_client_refuses("server.crt", "server.key", "other-ca.crt", "127.0.0.1", NULL,
                       "TLS: certificate verify failed: unable to get local issuer certificate");
}

Test(conn, client_refuses_untrusted_server_certificate)
{
    run_client_refuses("other-server.crt", "other-server.key", "ca.crt", "127.0.0.1", NULL,
                       "TLS: certificate verify failed: unable to get local issuer certificate");
}

Test(conn, client_refuses_server_name_mismatch)
{
    run_client_refuses("server.crt", "server.key", "ca.crt", "127.0.0.1", "broker-9.example",
                       "TLS: certificate verify failed: hostname mismatch");
}

Test(conn, client_refuses_ip_mismatch)
{
    run_client_refuses("server.crt", "server.key", "ca.crt", "127.0.0.1", "127.0.0.2",
                       "TLS: certificate verify failed: IP address mismatch");
}

Test(conn, tls_verifies_dns_name_through_resolver)
{
    struct fx fx;
    fx_init(&fx);
    fx_tls_default(&fx);
    fx_listen(&fx);
    fx.srv.on_frame = echo_frame;
    fx.cli.on_open = send_hello;
    fx.cli.on_frame = close_on_first;
    fx_connect(&fx, "localhost", NULL); /* uv_getaddrinfo, then the name checked against DNS:localhost */
    fx_run(&fx);
    cr_assert(fx.cli.opened && fx.srv.opened);
    cr_assert_eq(fx.cli.frames, 1);
    cr_assert_eq(fx.cli.status, 0);
    cr_assert(strncmp(fx.cli.peer, "127.0.0.1:", 10) == 0, "peer %s", fx.cli.peer);
}

Test(conn, tls_ctx_errors)
{
    char err[256];
    struct ferry_tls_config no_ca = {.min_version_tls13 = 1};
    cr_assert_null(ferry_tls_client_ctx_new(&no_ca, err, sizeof err));
    cr_assert(strstr(err, "CA bundle") != NULL, "%s", err);

    struct ferry_tls_config mismatch = {.cert_file = cert("server.crt"), .key_file = cert("client.key")};
    cr_assert_null(ferry_tls_server_ctx_new(&mismatch, err, sizeof err));
    cr_assert(strstr(err, "mismatch") != NULL || strstr(err, "does not match") != NULL, "%s", err);
    cr_assert(strstr(err, "error:") != NULL, "OpenSSL's reason in: %s", err);

    struct ferry_tls_config missing = {.cert_file = "/nonexistent/ferry.crt", .key_file = cert("server.key")};
    cr_assert_null(ferry_tls_server_ctx_new(&missing, err, sizeof err));
    cr_assert(strstr(err, "load certificate chain /nonexistent/ferry.crt: error:") != NULL, "%s", err);

    struct ferry_tls_config mtls_no_ca = {.cert_file = cert("server.crt"), .require_client_cert = 1};
    cr_assert_null(ferry_tls_server_ctx_new(&mtls_no_ca, err, sizeof err));

    struct ferry_tls_config tls12 = {.ca_file = cert("ca.crt"), .min_version_tls13 = 0};
    struct ferry_tls_ctx *ctx = ferry_tls_client_ctx_new(&tls12, err, sizeof err);
    cr_assert_not_null(ctx, "%s", err);
    ferry_tls_ctx_free(ctx);
}

/* ---- frame limits, with a raw TCP peer writing chosen bytes ---- */

struct raw {
    uv_tcp_t tcp;
    uv_connect_t connect_req;
    uv_write_t write_req;
    uv_timer_t timer;
    const uint8_t *chunks[8];
    size_t lens[8];
    int nchunks;
    int next;
    int closes; /* handles closed */
};

static void raw_closed(uv_handle_t *h)
{
    struct raw *r = h->data;
    r->closes++;
}

static void raw_close(struct raw *r)
{
    if (!uv_is_closing((uv_handle_t *)&r->tcp)) {
        uv_close((uv_handle_t *)&r->tcp, raw_closed);
        uv_close((uv_handle_t *)&r->timer, raw_closed);
    }
}

static void raw_alloc(uv_handle_t *h, size_t n, uv_buf_t *b)
{
    (void)h;
    static char buf[4096];
    (void)n;
    *b = uv_buf_init(buf, sizeof buf);
}

static void raw_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    (void)b;
    if (n < 0)
        raw_close(s->data);
}

static void raw_write_next(struct raw *r);

static void raw_tick(uv_timer_t *t)
{
    raw_write_next(t->data);
}

static void raw_written(uv_write_t *w, int status)
{
    struct raw *r = w->data;
    if (status < 0 || r->next == r->nchunks) {
        /* All written: a NULL last chunk means "then close"; otherwise wait for the server. */
        raw_close(r);
        return;
    }
    /* A pause between chunks so they arrive in separate reads (not required for correctness). */
    uv_timer_start(&r->timer, raw_tick, 5, 0);
}

static void raw_write_next(struct raw *r)
{
    if (uv_is_closing((uv_handle_t *)&r->tcp))
        return;
    int i = r->next++;
    uv_buf_t b = uv_buf_init((char *)r->chunks[i], (unsigned)r->lens[i]);
    cr_assert_eq(uv_write(&r->write_req, (uv_stream_t *)&r->tcp, &b, 1, raw_written), 0);
}

static void raw_connected(uv_connect_t *req, int status)
{
    struct raw *r = req->data;
    cr_assert_eq(status, 0);
    uv_read_start((uv_stream_t *)&r->tcp, raw_alloc, raw_read);
    raw_write_next(r);
}

static void raw_start(struct fx *fx, struct raw *r)
{
    struct sockaddr_in sin;
    r->tcp.data = r;
    r->connect_req.data = r;
    r->write_req.data = r;
    r->timer.data = r;
    uv_tcp_init(&fx->loop, &r->tcp);
    uv_timer_init(&fx->loop, &r->timer);
    uv_ip4_addr("127.0.0.1", fx->port, &sin);
    cr_assert_eq(uv_tcp_connect(&r->connect_req, &r->tcp, (const struct sockaddr *)&sin, raw_connected), 0);
}

static size_t srv_hblkhd_at_close;
static void record_heap_at_close(struct side *s)
{
    (void)s;
    srv_hblkhd_at_close = mallinfo2().hblkhd;
}

Test(conn, oversized_frame_closes_before_allocating)
{
    static const uint8_t hdr[] = {0x7f, 0xff, 0xff, 0xff, 'x', 'y'};
    struct fx fx;
    struct raw r = {.chunks = {hdr}, .lens = {sizeof hdr}, .nchunks = 1};
    fx_init(&fx);
    fx.srv_max_frame = 1u << 20;
    fx_listen(&fx);
    fx.srv.on_close = record_heap_at_close;
    size_t heap_before = mallinfo2().hblkhd;
    raw_start(&fx, &r);
    fx_run(&fx);
    cr_assert_eq(r.closes, 2);
    cr_assert(fx.srv.closed);
    cr_assert_eq(fx.srv.frames, 0);
    cr_assert_eq(fx.srv.status, -1);
    cr_assert_str_eq(fx.srv.reason, "frame of 2147483647 bytes exceeds limit 1048576");
    /* A buffer for the frame would still be alive in on_close (freed after it): none was made. */
    cr_assert_lt(srv_hblkhd_at_close, heap_before + (64u << 20), "memory was allocated for the frame");
}

Test(conn, zero_length_frame_closes)
{
    static const uint8_t f[] = {0, 0, 0, 1, 'a', 0, 0, 0, 0};
    struct fx fx;
    struct raw r = {.chunks = {f}, .lens = {sizeof f}, .nchunks = 1};
    fx_init(&fx);
    fx_listen(&fx);
    raw_start(&fx, &r);
    fx_run(&fx);
    cr_assert_eq(fx.srv.frames, 1, "the valid frame before it is delivered");
    cr_assert_eq(fx.srv.status, -1);
    cr_assert(strncmp(fx.srv.reason, "frame of 0 bytes", 16) == 0, "%s", fx.srv.reason);
}

Test(conn, peer_closes_mid_frame)
{
    static const uint8_t part[] = {0, 0, 0, 100, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    struct fx fx;
    struct raw r = {.chunks = {part}, .lens = {sizeof part}, .nchunks = 1};
    fx_init(&fx);
    fx_listen(&fx);
    raw_start(&fx, &r);
    fx_run(&fx);
    cr_assert_eq(fx.srv.frames, 0);
    cr_assert_eq(fx.srv.status, UV_EOF);
    cr_assert_str_eq(fx.srv.reason, "connection closed by peer in the middle of a frame");
}

static void check_split_frame(struct side *s, const uint8_t *p, size_t len)
{
    static const char *want[] = {"hello", "xy", "0123456789"};
    cr_assert_leq(s->frames, 3);
    cr_assert_eq(len, strlen(want[s->frames - 1]));
    cr_assert(memcmp(p, want[s->frames - 1], len) == 0);
}

Test(conn, frames_split_across_reads)
{
    /* "hello" with its header split 2+2, then "xy" whole plus half the next header, then the rest. */
    static const uint8_t c0[] = {0, 0};
    static const uint8_t c1[] = {0, 5, 'h'};
    static const uint8_t c2[] = {'e', 'l', 'l', 'o', 0, 0, 0, 2, 'x', 'y', 0, 0, 0};
    static const uint8_t c3[] = {10, '0', '1', '2', '3', '4'};
    static const uint8_t c4[] = {'5', '6', '7', '8', '9'};
    struct fx fx;
    struct raw r = {.chunks = {c0, c1, c2, c3, c4},
                    .lens = {sizeof c0, sizeof c1, sizeof c2, sizeof c3, sizeof c4},
                    .nchunks = 5};
    fx_init(&fx);
    fx_listen(&fx);
    fx.srv.on_frame = check_split_frame;
    raw_start(&fx, &r);
    fx_run(&fx);
    cr_assert_eq(fx.srv.frames, 3);
    cr_assert_eq(fx.srv.status, UV_EOF);
    cr_assert_str_eq(fx.srv.reason, "connection closed by peer");
}

/* A TLS peer sending a frame above the server's limit. */
static void send_big(struct side *s)
{
    send_pattern(s->c, 0, (1u << 20) + 1);
}

Test(conn, tls_oversized_frame_closes)
{
    struct fx fx;
    fx_init(&fx);
    fx_tls_default(&fx);
    fx.srv_max_frame = 1u << 20;
    fx_listen(&fx);
    fx.cli.on_open = send_big;
    fx_connect(&fx, "127.0.0.1", NULL);
    fx_run(&fx);
    cr_assert_eq(fx.srv.frames, 0);
    cr_assert_eq(fx.srv.status, -1);
    cr_assert_str_eq(fx.srv.reason, "frame of 1048577 bytes exceeds limit 1048576");
    cr_assert_neq(fx.cli.status, 0);
}

/* ---- closing from inside on_frame ---- */

static void send_three(struct side *s)
{
    for (size_t k = 0; k < 3; k++)
        send_pattern(s->c, k, 10 + k);
}

static void close_inside_frame(struct side *s, const uint8_t *p, size_t len)
{
    cr_assert_eq(s->frames, 1, "no frame after close");
    check_pattern(0, p, len);
    ferry_conn_close(s->c, "closing inside on_frame");
    ferry_conn_close(s->c, "twice is fine");
    cr_assert_eq(send_payload(s->c, p, len), UV_EPIPE);
    ferry_conn_pause(s->c);
    ferry_conn_resume(s->c);
}

static void run_close_inside_frame(int tls)
{
    struct fx fx;
    fx_init(&fx);
    if (tls)
        fx_tls_default(&fx);
    fx_listen(&fx);
    fx.cli.on_open = send_three;
    fx.srv.on_frame = close_inside_frame;
    fx_connect(&fx, "127.0.0.1", NULL);
    fx_run(&fx);
    cr_assert_eq(fx.srv.frames, 1);
    cr_assert_eq(fx.srv.status, 0);
    cr_assert_str_eq(fx.srv.reason, "closing inside on_frame");
    cr_assert(fx.cli.closed);
    cr_assert_neq(fx.cli.status, 0);
}

Test(conn, close_inside_on_frame_plaintext)
{
    run_close_inside_frame(0);
}

Test(conn, close_inside_on_frame_tls)
{
    run_close_inside_frame(1);
}

/* ---- pending bytes, pause and resume ---- */

#define PAUSE_FRAMES 20
#define PAUSE_LEN 100

struct pause_test {
    int tls;
    size_t seen_while_paused; /* frames seen when the paused check ran */
    int checks;
};

static void pause_client_open(struct side *s)
{
    struct pause_test *t = s->fx->test;
    size_t before = ferry_conn_pending_bytes(s->c); /* TLS: the client's Finished may still be queued */
    if (!t->tls)
        cr_assert_eq(before, 0);
    for (size_t k = 0; k < PAUSE_FRAMES; k++)
        send_pattern(s->c, k, PAUSE_LEN);
    size_t want = PAUSE_FRAMES * (PAUSE_LEN + 4);
    if (t->tls)
        cr_assert_geq(ferry_conn_pending_bytes(s->c), before + want);
    else
        cr_assert_eq(ferry_conn_pending_bytes(s->c), want);
}

static void pause_client_frame(struct side *s, const uint8_t *p, size_t len)
{
    cr_assert_eq(len, 3);
    cr_assert(memcmp(p, "ack", 3) == 0);
    /* The server saw every byte, so every write completed. */
    cr_assert_eq(ferry_conn_pending_bytes(s->c), 0);
    ferry_conn_close(s->c, "done");
}

static void pause_check(uv_timer_t *timer)
{
    struct fx *fx = timer->data;
    struct pause_test *t = fx->test;
    t->checks++;
    /* Several loop passes went by while paused: nothing may have been delivered. */
    cr_assert_eq(fx->srv.frames, t->seen_while_paused);
    ferry_conn_resume(fx->srv.c);
    ferry_conn_resume(fx->srv.c); /* idempotent */
}

static void pause_server_frame(struct side *s, const uint8_t *p, size_t len)
{
    struct pause_test *t = s->fx->test;
    check_pattern(s->frames - 1, p, len);
    if (s->frames == 1 || s->frames == 10 || s->frames == 11) {
        ferry_conn_pause(s->c);
        t->seen_while_paused = s->frames;
        uv_timer_start(&s->fx->step, pause_check, 20, 0);
    }
    if (s->frames == PAUSE_FRAMES)
        cr_assert_eq(send_payload(s->c, (const uint8_t *)"ack", 3), 0);
}

static void run_pause(int tls)
{
    struct fx fx;
    struct pause_test t = {.tls = tls};
    fx_init(&fx);
    fx.test = &t;
    if (tls)
        fx_tls_default(&fx);
    fx_listen(&fx);
    fx.cli.on_open = pause_client_open;
    fx.cli.on_frame = pause_client_frame;
    fx.srv.on_frame = pause_server_frame;
    fx_connect(&fx, "127.0.0.1", NULL);
    fx_run(&fx);
    cr_assert_eq(t.checks, 3);
    cr_assert_eq(fx.srv.frames, PAUSE_FRAMES);
    cr_assert_eq(fx.cli.frames, 1);
    cr_assert_eq(fx.cli.status, 0);
    cr_assert_eq(fx.srv.status, UV_EOF);
}

Test(conn, pending_bytes_pause_resume_plaintext)
{
    run_pause(0);
}

Test(conn, pending_bytes_pause_resume_tls)
{
    run_pause(1);
}

/* ---- connect failures and early close ---- */

Test(conn, connect_refused)
{
    struct fx fx;
    fx_init(&fx);
    fx_listen(&fx); /* find a free port, then stop listening on it */
    uv_close((uv_handle_t *)&fx.listener, NULL);
    uv_run(&fx.loop, UV_RUN_NOWAIT);
    fx_connect(&fx, "127.0.0.1", NULL);
    fx_run(&fx);
    cr_assert_eq(fx.cli.opened, 0);
    cr_assert_eq(fx.cli.status, UV_ECONNREFUSED, "%d %s", fx.cli.status, fx.cli.reason);
}

static void run_close_before_open(const char *host, int tls)
{
    struct fx fx;
    fx_init(&fx);
    if (tls)
        fx_tls_default(&fx);
    fx_listen(&fx);
    uv_close((uv_handle_t *)&fx.listener, NULL);
    fx_connect(&fx, host, NULL);
    cr_assert_eq(send_payload(fx.cli.c, (const uint8_t *)"early", 5), 0);
    ferry_conn_close(fx.cli.c, "never mind");
    fx_run(&fx);
    cr_assert_eq(fx.cli.opened, 0);
    cr_assert(fx.cli.closed);
    cr_assert_eq(fx.cli.status, 0);
    cr_assert_str_eq(fx.cli.reason, "never mind");
}

Test(conn, close_while_connecting)
{
    run_close_before_open("127.0.0.1", 0);
    run_close_before_open("127.0.0.1", 1);
}

Test(conn, close_while_resolving)
{
    run_close_before_open("localhost", 0);
}

Test(conn, send_rejects_malformed_frame)
{
    struct fx fx;
    fx_init(&fx);
    fx_listen(&fx);
    uv_close((uv_handle_t *)&fx.listener, NULL);
    fx_connect(&fx, "127.0.0.1", NULL);
    static const uint8_t bad_len[] = {0, 0, 0, 9, 'a'};
    static const uint8_t empty[] = {0, 0, 0, 0};
    cr_assert_eq(ferry_conn_send(fx.cli.c, bad_len, sizeof bad_len), UV_EINVAL);
    cr_assert_eq(ferry_conn_send(fx.cli.c, empty, sizeof empty), UV_EINVAL);
    cr_assert_eq(ferry_conn_pending_bytes(fx.cli.c), 0);
    ferry_conn_close(fx.cli.c, "bye");
    fx_run(&fx);
    cr_assert_eq(fx.cli.status, 0);
}

/* Server-initiated frames before the client says anything, and data sent before on_open. */
static void greet(struct side *s)
{
    cr_assert_eq(send_payload(s->c, (const uint8_t *)"hello", 5), 0);
}

Test(conn, early_send_queued_until_open)
{
    for (int tls = 0; tls <= 1; tls++) {
        struct fx fx;
        fx_init(&fx);
        if (tls)
            fx_tls_default(&fx);
        fx_listen(&fx);
        fx.srv.on_frame = echo_frame;
        fx.cli.on_frame = close_on_first;
        fx_connect(&fx, "127.0.0.1", NULL);
        greet(&fx.cli); /* before on_open: queued, sent once connected */
        fx_run(&fx);
        cr_assert_eq(fx.srv.frames, 1);
        cr_assert_eq(fx.cli.frames, 1);
        cr_assert_eq(fx.cli.status, 0);
    }
}
