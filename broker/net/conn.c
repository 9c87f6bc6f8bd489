/* conn.c: one framed connection over libuv: lifecycle, frame reassembly, coalesced writes, plaintext. */
#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn_int.h"
#include "proto/varint.h"

/*
 * How the pieces fit (the contract is in conn.h):
 *  - Input: socket bytes -> transport (plaintext: as is; TLS: conn_tls.c) -> conn_feed, which
 *    checks each 4-byte length before allocating, delivers frames lying whole in the read buffer
 *    from there, and accumulates the others in a buffer of exactly the frame's size.
 *  - Output: ferry_conn_send copies into the transport's queue and starts the idle handle; its
 *    callback (next loop pass) makes one uv_write of everything queued. One write is in flight at
 *    a time; what is queued meanwhile goes out as one write when it completes.
 *  - Frames may be sent before on_open: they are queued and written once the connection is up.
 *  - on_open for a plaintext accept comes from the loop, never from inside ferry_conn_accept.
 *  - Pause stops reading (uv_read_stop) and delivery; resume delivers what was held from the loop,
 *    never from inside ferry_conn_resume. A pause before a TLS handshake ends holds the handshake.
 *  - Close: close_requested stops input, sends and on_open at once; queued output is flushed (at
 *    most CONN_LINGER_MS), then every handle is closed; on_close runs when the last one is, and
 *    the conn is freed after it. Nothing is freed earlier, so on_frame may close its own conn.
 */

/* One socket read. The buffer is per thread: libuv (unix) calls alloc_cb, read(2) and read_cb
 * back to back, and a loop belongs to one thread, so no two reads ever share it. */
#define CONN_READ_CHUNK 65536
/* A flushing close (ferry_conn_close, or an error that sends an alert) waits at most this long
 * for the peer to take our bytes before the socket is closed anyway. */
#define CONN_LINGER_MS 5000
#define CONN_KEEPALIVE_SECONDS 60
/* Once a conn's output has drained, buffers grown beyond this are released: a burst does not pin
 * memory, while a steady stream keeps its buffers (re-growing them costs page faults). */
#define CONN_BUF_KEEP (4u * 1024 * 1024)
/* One uv_write carries at most CONN_WRITE_BUFS pieces of CONN_WRITE_PIECE bytes (8 GiB). */
#define CONN_WRITE_PIECE ((size_t)1 << 30)
#define CONN_WRITE_BUFS 8

static _Thread_local uint8_t read_chunk[CONN_READ_CHUNK];

static void conn_flush(struct ferry_conn *c);
static void on_idle(uv_idle_t *h);

/* ---- buffers ---- */

int conn_buf_reserve(struct conn_buf *b, size_t extra)
{
    if (extra > SIZE_MAX - b->len)
        return UV_ENOMEM;
    size_t need = b->len + extra;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    uint8_t *p = realloc(b->base, cap);
    if (p == NULL)
        return UV_ENOMEM;
    b->base = p;
    b->cap = cap;
    return 0;
}

int conn_buf_append(struct conn_buf *b, const void *p, size_t n)
{
    int rc = conn_buf_reserve(b, n);
    if (rc != 0)
        return rc;
    memcpy(b->base + b->len, p, n);
    b->len += n;
    return 0;
}

void conn_buf_release(struct conn_buf *b)
{
    free(b->base);
    b->base = NULL;
    b->len = 0;
    b->cap = 0;
}

/* ---- lifecycle ---- */

static void conn_free(struct ferry_conn *c)
{
    if (c->ops != NULL && c->ops->destroy != NULL)
        c->ops->destroy(c);
    conn_buf_release(&c->held);
    conn_buf_release(&c->out);
    conn_buf_release(&c->wr);
    conn_buf_release(&c->stage);
    free(c->frame);
    free(c->peer_cn);
    free(c);
}

/* The end: every handle closed and no request outstanding. on_close runs, then the conn is freed. */
static void conn_maybe_finish(struct ferry_conn *c)
{
    if (!c->closing || c->handles_open > 0 || c->gai_active)
        return;
    if (!c->silent && c->cb.on_close != NULL)
        c->cb.on_close(c, c->close_status, c->close_reason);
    conn_free(c);
}

static void on_handle_closed(uv_handle_t *h)
{
    struct ferry_conn *c = h->data;
    assert(c->handles_open > 0);
    c->handles_open--;
    conn_maybe_finish(c);
}

/* Closes every handle now (pending writes get UV_ECANCELED first, per libuv). */
static void conn_close_handles(struct ferry_conn *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    c->close_requested = 1;
    if (c->gai_active)
        (void)uv_cancel((uv_req_t *)&c->gai); /* its callback still runs, with UV_EAI_CANCELED */
    c->handles_open = 3;
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
    uv_close((uv_handle_t *)&c->idle, on_handle_closed);
    uv_close((uv_handle_t *)&c->linger, on_handle_closed);
}

static void on_linger(uv_timer_t *t)
{
    conn_close_handles(t->data);
}

static int conn_has_output(const struct ferry_conn *c)
{
    return c->writing || c->out.len > 0 || c->ops->queued(c) > 0;
}

static void conn_read_stop(struct ferry_conn *c)
{
    if (c->reading) {
        (void)uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    }
}

void conn_fail(struct ferry_conn *c, int status, int flush, const char *fmt, ...)
{
    if (c->closing)
        return;
    if (c->close_requested) {
        /* Already flushing towards a close: an error now ends the flush. */
        if (!flush)
            conn_close_handles(c);
        return;
    }
    c->close_requested = 1;
    c->close_status = status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->close_reason, sizeof c->close_reason, fmt, ap);
    va_end(ap);
    conn_read_stop(c);
    if (flush && c->state >= CONN_CONNECTED && conn_has_output(c)) {
        (void)uv_timer_start(&c->linger, on_linger, CONN_LINGER_MS, 0);
        conn_schedule(c);
        return;
    }
    conn_close_handles(c);
}

static struct ferry_conn *conn_new(uv_loop_t *loop, struct ferry_tls_ctx *tls, const struct ferry_conn_callbacks *cb,
                                   size_t max_frame_bytes, void *data)
{
    struct ferry_conn *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->ops = tls != NULL ? &conn_tls_transport : &conn_plain_transport;
    if (cb != NULL)
        c->cb = *cb;
    c->data = data;
    c->max_frame = max_frame_bytes;
    /* These cannot fail on unix once the loop exists. */
    (void)uv_tcp_init(loop, &c->tcp);
    (void)uv_idle_init(loop, &c->idle);
    (void)uv_timer_init(loop, &c->linger);
    c->tcp.data = c;
    c->idle.data = c;
    c->linger.data = c;
    c->gai.data = c;
    c->connect_req.data = c;
    c->write_req.data = c;
    return c;
}

/* Drops a conn whose creation failed before the caller saw it: no callbacks. */
static void conn_abort(struct ferry_conn *c)
{
    c->silent = 1;
    conn_close_handles(c);
}

static void conn_set_peer(struct ferry_conn *c)
{
    struct sockaddr_storage ss;
    int n = sizeof ss;
    char ip[INET6_ADDRSTRLEN];
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &n) != 0)
        return;
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)&ss;
        uv_ip4_name(sin, ip, sizeof ip);
        snprintf(c->peer, sizeof c->peer, "%s:%u", ip, (unsigned)ntohs(sin->sin_port));
    } else if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&ss;
        uv_ip6_name(sin6, ip, sizeof ip);
        snprintf(c->peer, sizeof c->peer, "[%s]:%u", ip, (unsigned)ntohs(sin6->sin6_port));
    }
}

static void conn_tune_socket(struct ferry_conn *c)
{
    /* Latency matters more than segment count (we coalesce ourselves); keepalive finds dead peers. */
    (void)uv_tcp_nodelay(&c->tcp, 1);
    (void)uv_tcp_keepalive(&c->tcp, 1, CONN_KEEPALIVE_SECONDS);
    conn_set_peer(c);
}

/* ---- reading ---- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    buf->base = (char *)read_chunk;
    buf->len = sizeof read_chunk;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct ferry_conn *c = s->data;
    if (nread > 0) {
        c->ops->input(c, (const uint8_t *)buf->base, (size_t)nread);
        return;
    }
    if (nread == 0)
        return;
    if (nread == UV_EOF) {
        if (c->frame != NULL || c->hdr_have > 0)
            conn_fail(c, UV_EOF, 0, "connection closed by peer in the middle of a frame");
        else
            conn_fail(c, UV_EOF, 0, "connection closed by peer");
        return;
    }
    conn_fail(c, (int)nread, 0, "read from %s: %s", c->peer, uv_strerror((int)nread));
}

void conn_read_start(struct ferry_conn *c)
{
    if (c->reading || c->paused || c->close_requested || c->state < CONN_CONNECTED)
        return;
    int rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (rc != 0) {
        conn_fail(c, rc, 0, "read from %s: %s", c->peer, uv_strerror(rc));
        return;
    }
    c->reading = 1;
}

int conn_deliverable(const struct ferry_conn *c)
{
    return !c->paused && !c->close_requested;
}

static void conn_deliver(struct ferry_conn *c, const uint8_t *p, size_t len)
{
    if (c->cb.on_frame != NULL)
        c->cb.on_frame(c, p, len);
}

/* A complete header announced len: check it, then allocate exactly the frame. Returns 0 or -1 (closed). */
static int conn_frame_begin(struct ferry_conn *c, uint32_t len)
{
    assert(c->frame == NULL);
    c->frame = malloc(len);
    if (c->frame == NULL) {
        conn_fail(c, UV_ENOMEM, 0, "no memory for a frame of %u bytes", (unsigned)len);
        return -1;
    }
    c->frame_len = len;
    c->frame_have = 0;
    return 0;
}

/* Before anything is allocated for a frame: 1 <= len <= max_frame. Returns 0 or -1 (closing). */
static int conn_frame_check(struct ferry_conn *c, uint32_t len)
{
    if (len == 0) {
        conn_fail(c, -1, 1, "frame of 0 bytes from %s", c->peer);
        return -1;
    }
    if (len > c->max_frame) {
        conn_fail(c, -1, 1, "frame of %u bytes exceeds limit %zu", (unsigned)len, c->max_frame);
        return -1;
    }
    return 0;
}

void conn_frame_filled(struct ferry_conn *c, size_t n)
{
    assert(c->frame != NULL && n <= c->frame_len - c->frame_have);
    c->frame_have += n;
    if (c->frame_have < c->frame_len)
        return;
    uint8_t *frame = c->frame;
    size_t len = c->frame_len;
    c->frame = NULL; /* before on_frame, which may close or pause the conn */
    c->frame_len = 0;
    c->frame_have = 0;
    conn_deliver(c, frame, len);
    free(frame);
}

size_t conn_feed(struct ferry_conn *c, const uint8_t *p, size_t n)
{
    size_t used = 0;
    while (used < n && conn_deliverable(c)) {
        const uint8_t *q = p + used;
        size_t left = n - used;
        if (c->frame != NULL) {
            size_t take = c->frame_len - c->frame_have;
            if (take > left)
                take = left;
            memcpy(c->frame + c->frame_have, q, take);
            used += take;
            conn_frame_filled(c, take);
            continue;
        }
        if (c->hdr_have == 0 && left >= 4) {
            uint32_t len = ferry_be32_get(q);
            if (conn_frame_check(c, len) != 0)
                return used;
            if (left - 4 >= len) {
                /* The whole frame is in the buffer: deliver it from there. */
                used += 4 + (size_t)len;
                conn_deliver(c, q + 4, len);
                continue;
            }
            used += 4;
            if (conn_frame_begin(c, len) != 0)
                return used;
            continue;
        }
        size_t take = 4 - c->hdr_have;
        if (take > left)
            take = left;
        memcpy(c->hdr + c->hdr_have, q, take);
        c->hdr_have += take;
        used += take;
        if (c->hdr_have == 4) {
            uint32_t len = ferry_be32_get(c->hdr);
            c->hdr_have = 0;
            if (conn_frame_check(c, len) != 0 || conn_frame_begin(c, len) != 0)
                return used;
        }
    }
    return used;
}

void conn_feed_hold(struct ferry_conn *c, const uint8_t *p, size_t n)
{
    size_t used = conn_feed(c, p, n);
    if (used == n || c->close_requested)
        return;
    /* Paused: keep the rest until ferry_conn_resume. (Reading stopped, so held was empty.) */
    assert(c->held.len == c->held_off);
    c->held.len = 0;
    c->held_off = 0;
    int rc = conn_buf_append(&c->held, p + used, n - used);
    if (rc != 0)
        conn_fail(c, rc, 0, "no memory to hold %zu received bytes", n - used);
}

int conn_feed_held(struct ferry_conn *c)
{
    if (c->held_off < c->held.len) {
        /* conn_feed may reach on_frame, which must not see held change under it: it cannot, since
         * held only grows in conn_feed_hold, reached from socket reads, which are stopped now. */
        c->held_off += conn_feed(c, c->held.base + c->held_off, c->held.len - c->held_off);
    }
    if (c->held_off < c->held.len)
        return 0;
    conn_buf_release(&c->held);
    c->held_off = 0;
    return 1;
}

/* ---- writing ---- */

void conn_schedule(struct ferry_conn *c)
{
    if (!c->closing)
        (void)uv_idle_start(&c->idle, on_idle);
}

static void on_write(uv_write_t *req, int status)
{
    struct ferry_conn *c = req->data;
    c->writing = 0;
    if (status < 0) {
        if (!c->closing)
            conn_fail(c, status, 0, "write to %s: %s", c->peer, uv_strerror(status));
        return;
    }
    c->wr.len = 0;
    if (c->out.len == 0 && c->stage.len == 0) {
        if (c->wr.cap > CONN_BUF_KEEP)
            conn_buf_release(&c->wr);
        if (c->out.cap > CONN_BUF_KEEP)
            conn_buf_release(&c->out);
        if (c->stage.cap > CONN_BUF_KEEP)
            conn_buf_release(&c->stage);
    }
    /* Everything queued while this write was in flight goes out as the next single write. */
    conn_flush(c);
    if (c->cb.on_drain != NULL && !c->close_requested && ferry_conn_pending_bytes(c) <= c->drain_mark)
        c->cb.on_drain(c);
}

static void conn_flush(struct ferry_conn *c)
{
    if (c->closing || c->writing || c->state < CONN_CONNECTED)
        return;
    /* A failed collect closed the conn, or (during a flushing close) left out to be written as is. */
    if (c->ops->collect(c) != 0 && c->closing)
        return;
    if (c->out.len == 0) {
        if (c->close_requested)
            conn_close_handles(c); /* flushing close: everything is written */
        return;
    }
    struct conn_buf t = c->wr;
    c->wr = c->out;
    c->out = t;
    /* uv_buf_t lengths are unsigned int: cut a (pathological) multi-GiB queue into pieces. */
    uv_buf_t bufs[CONN_WRITE_BUFS];
    unsigned nbufs = 0;
    for (size_t off = 0; off < c->wr.len; off += CONN_WRITE_PIECE) {
        size_t n = c->wr.len - off < CONN_WRITE_PIECE ? c->wr.len - off : CONN_WRITE_PIECE;
        if (nbufs == CONN_WRITE_BUFS) {
            conn_fail(c, UV_ENOBUFS, 0, "write to %s: %zu bytes queued", c->peer, c->wr.len);
            return;
        }
        bufs[nbufs++] = uv_buf_init((char *)c->wr.base + off, (unsigned)n);
    }
    int rc = uv_write(&c->write_req, (uv_stream_t *)&c->tcp, bufs, nbufs, on_write);
    if (rc != 0) {
        conn_fail(c, rc, 0, "write to %s: %s", c->peer, uv_strerror(rc));
        return;
    }
    c->writing = 1;
}

void conn_opened(struct ferry_conn *c)
{
    if (c->close_requested)
        return;
    c->state = CONN_OPEN;
    if (c->cb.on_open != NULL)
        c->cb.on_open(c);
    conn_schedule(c);
}

/* Deferred work, run once per loop pass while scheduled: on_open (plaintext accept), resume, flush. */
static void on_idle(uv_idle_t *h)
{
    struct ferry_conn *c = h->data;
    (void)uv_idle_stop(h);
    if (c->open_pending) {
        c->open_pending = 0;
        conn_opened(c);
        conn_read_start(c);
    }
    if (c->resume_pending && !c->closing) {
        c->resume_pending = 0;
        if (conn_deliverable(c)) {
            c->ops->resume(c);
            conn_read_start(c);
        }
    }
    conn_flush(c);
}

/* ---- plaintext transport: socket bytes are frame bytes ---- */

static void plain_start(struct ferry_conn *c)
{
    /* on_open from the loop, not from inside ferry_conn_accept; reading starts after it. */
    c->open_pending = 1;
    conn_schedule(c);
}

static void plain_input(struct ferry_conn *c, const uint8_t *p, size_t n)
{
    conn_feed_hold(c, p, n);
}

static void plain_resume(struct ferry_conn *c)
{
    (void)conn_feed_held(c);
}

static int plain_send(struct ferry_conn *c, const uint8_t *p, size_t n)
{
    return conn_buf_append(&c->out, p, n);
}

static int plain_collect(struct ferry_conn *c)
{
    (void)c;
    return 0;
}

static size_t plain_queued(const struct ferry_conn *c)
{
    (void)c;
    return 0;
}

static void plain_nothing(struct ferry_conn *c)
{
    (void)c;
}

const struct conn_transport conn_plain_transport = {
    .start = plain_start,
    .input = plain_input,
    .resume = plain_resume,
    .send = plain_send,
    .collect = plain_collect,
    .queued = plain_queued,
    .shutdown = plain_nothing,
    .destroy = plain_nothing,
};

/* ---- accept / connect ---- */

int ferry_conn_accept(uv_stream_t *listener, struct ferry_tls_ctx *tls, const struct ferry_conn_callbacks *cb,
                      size_t max_frame_bytes, void *data, struct ferry_conn **out)
{
    assert(listener != NULL && out != NULL);
    *out = NULL;
    struct ferry_conn *c = conn_new(listener->loop, tls, cb, max_frame_bytes, data);
    if (c == NULL)
        return UV_ENOMEM;
    int rc = uv_accept(listener, (uv_stream_t *)&c->tcp);
    if (rc != 0)
        goto err_after_conn;
    if (tls != NULL) {
        assert(tls->is_server);
        rc = conn_tls_init(c, tls, NULL);
        if (rc != 0)
            goto err_after_conn; /* closing the accepted socket drops the connection */
    }
    conn_tune_socket(c);
    c->state = CONN_CONNECTED;
    *out = c;
    c->ops->start(c); /* no callback runs from here: on_open comes from the loop */
    return 0;

err_after_conn:
    conn_abort(c);
    return rc;
}

static void on_connect(uv_connect_t *req, int status)
{
    struct ferry_conn *c = req->data;
    if (c->closing)
        return; /* UV_ECANCELED: closed while connecting */
    if (status < 0) {
        conn_fail(c, status, 0, "connect to %s: %s", c->peer, uv_strerror(status));
        return;
    }
    conn_tune_socket(c);
    c->state = CONN_CONNECTED;
    c->ops->start(c);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct ferry_conn *c = req->data;
    c->gai_active = 0;
    if (c->closing) {
        uv_freeaddrinfo(res);
        conn_maybe_finish(c);
        return;
    }
    if (status < 0) {
        conn_fail(c, status, 0, "resolve %s: %s", c->peer, uv_strerror(status));
        return;
    }
    /* One attempt: the first IPv4 address if any (brokers listen on IPv4), else the first. */
    const struct addrinfo *pick = res;
    for (const struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        if (ai->ai_family == AF_INET) {
            pick = ai;
            break;
        }
    }
    c->state = CONN_CONNECTING;
    int rc = uv_tcp_connect(&c->connect_req, &c->tcp, pick->ai_addr, on_connect);
    uv_freeaddrinfo(res);
    if (rc != 0)
        conn_fail(c, rc, 0, "connect to %s: %s", c->peer, uv_strerror(rc));
}

int ferry_conn_connect(uv_loop_t *loop, const char *host, int port, struct ferry_tls_ctx *tls,
                       const char *server_name, const struct ferry_conn_callbacks *cb, size_t max_frame_bytes,
                       void *data, struct ferry_conn **out)
{
    assert(loop != NULL && out != NULL);
    *out = NULL;
    if (host == NULL || host[0] == '\0' || port <= 0 || port > 65535)
        return UV_EINVAL;
    struct ferry_conn *c = conn_new(loop, tls, cb, max_frame_bytes, data);
    if (c == NULL)
        return UV_ENOMEM;
    snprintf(c->peer, sizeof c->peer, "%s:%d", host, port);
    int rc = 0;
    if (tls != NULL) {
        assert(!tls->is_server);
        rc = conn_tls_init(c, tls, server_name != NULL ? server_name : host);
        if (rc != 0)
            goto err_after_conn;
    }
    struct sockaddr_storage ss;
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) == 0 ||
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) == 0) {
        c->state = CONN_CONNECTING;
        rc = uv_tcp_connect(&c->connect_req, &c->tcp, (const struct sockaddr *)&ss, on_connect);
        if (rc != 0)
            goto err_after_conn;
    } else {
        char port_str[16];
        snprintf(port_str, sizeof port_str, "%d", port);
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
        c->state = CONN_RESOLVING;
        rc = uv_getaddrinfo(loop, &c->gai, on_resolved, host, port_str, &hints);
        if (rc != 0)
            goto err_after_conn;
        c->gai_active = 1;
    }
    *out = c;
    return 0;

err_after_conn:
    conn_abort(c);
    return rc;
}

/* ---- the rest of the public API ---- */

int ferry_conn_send(struct ferry_conn *c, const void *frame, size_t len)
{
    const uint8_t *p = frame;
    if (c->close_requested)
        return UV_EPIPE;
    if (p == NULL || len < 5 || (uint64_t)ferry_be32_get(p) != (uint64_t)len - 4)
        return UV_EINVAL;
    int rc = c->ops->send(c, p, len);
    if (rc != 0)
        return rc;
    if (c->state >= CONN_CONNECTED)
        conn_schedule(c);
    return 0;
}

size_t ferry_conn_pending_bytes(const struct ferry_conn *c)
{
    return c->out.len + c->wr.len + c->ops->queued(c);
}

void ferry_conn_set_drain_mark(struct ferry_conn *c, size_t mark)
{
    c->drain_mark = mark;
}

void ferry_conn_pause(struct ferry_conn *c)
{
    if (c->close_requested)
        return;
    c->paused = 1;
    c->resume_pending = 0;
    conn_read_stop(c);
}

void ferry_conn_resume(struct ferry_conn *c)
{
    if (!c->paused)
        return;
    c->paused = 0;
    if (c->close_requested)
        return;
    /* Buffered frames are delivered from the loop, never from inside this call. */
    c->resume_pending = 1;
    conn_schedule(c);
}

void ferry_conn_close(struct ferry_conn *c, const char *reason)
{
    if (c == NULL || c->close_requested)
        return;
    if (c->state == CONN_OPEN)
        c->ops->shutdown(c);
    conn_fail(c, 0, 1, "%s", reason != NULL ? reason : "closed");
}

void *ferry_conn_data(const struct ferry_conn *c)
{
    return c->data;
}

void ferry_conn_set_data(struct ferry_conn *c, void *data)
{
    c->data = data;
}

const char *ferry_conn_peer(const struct ferry_conn *c)
{
    return c->peer;
}

const char *ferry_conn_peer_cn(const struct ferry_conn *c)
{
    return c->peer_cn;
}
