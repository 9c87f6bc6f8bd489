/* server.c: the listener, accepted connections, frame decoding and the life of a request. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker.h"
#include "ferry_errors.h"
#include "handlers/handlers.h"
#include "logging.h"
#include "proto/codec.h"
#include "proto/limits.h"

/* One accepted connection. Freed in on_close; its pending requests then outlive it (client NULL). */
struct ferryd_client {
    struct ferryd *b;
    struct ferry_conn *conn;
    struct ferryd_client *prev, *next;
    struct ferryd_req *reqs; /* requests not yet answered */
    uint32_t inflight;
    int paused;  /* reads stopped: too many requests in flight, too much output queued, or stopping */
    int served;  /* counted against max.connections */
    int closing; /* ferry_conn_close called: nothing more is sent */
    int got_request;       /* a first frame arrived (ends the handshake deadline) */
    uint64_t accepted_ms;  /* uv_now at accept */
    uint64_t last_active_ms; /* uv_now of the last frame received or response sent */
    char peer[64];
};

/*
 * Reads stop while the connection has FERRY_MAX_INFLIGHT_PER_CONNECTION unanswered requests or more
 * than FERRY_MAX_PENDING_OUTPUT_BYTES of responses queued for the socket, and resume when both are
 * below (output: on_drain once half of the cap is written). Never resumed once the broker stops.
 */
static int client_must_pause(const struct ferryd_client *cl)
{
    return cl->inflight >= FERRY_MAX_INFLIGHT_PER_CONNECTION ||
           ferry_conn_pending_bytes(cl->conn) > FERRY_MAX_PENDING_OUTPUT_BYTES;
}

static void client_update_pause(struct ferryd_client *cl)
{
    if (cl->closing || cl->conn == NULL || cl->b->stopping)
        return;
    int want = client_must_pause(cl);
    if (want && !cl->paused) {
        LOG_DEBUG("connection %s: %u requests in flight, %zu response bytes queued; pausing reads", cl->peer,
                  cl->inflight, ferry_conn_pending_bytes(cl->conn));
        cl->paused = 1;
        ferry_conn_pause(cl->conn);
    } else if (!want && cl->paused) {
        cl->paused = 0;
        ferry_conn_resume(cl->conn);
    }
}

/* ---- requests ---- */

static struct ferryd_req *req_new(struct ferryd_client *cl, uint32_t api, uint32_t version, uint32_t correlation_id)
{
    struct ferryd_req *req = calloc(1, sizeof(*req));
    if (req == NULL)
        return NULL;
    req->broker = cl->b;
    req->client = cl;
    req->api = api;
    req->version = version;
    req->correlation_id = correlation_id;
    req->next = cl->reqs;
    if (cl->reqs != NULL)
        cl->reqs->prev = req;
    cl->reqs = req;
    cl->inflight++;
    return req;
}

/* Unlinks and frees req; resumes a connection paused by the in-flight cap (if its output allows). */
static void req_end(struct ferryd_req *req)
{
    struct ferryd_client *cl = req->client;
    if (cl != NULL) {
        if (req->prev != NULL)
            req->prev->next = req->next;
        else
            cl->reqs = req->next;
        if (req->next != NULL)
            req->next->prev = req->prev;
        cl->inflight--;
        if (cl->paused)
            client_update_pause(cl);
    }
    free(req);
}

static void client_close(struct ferryd_client *cl, const char *reason)
{
    if (cl->closing || cl->conn == NULL)
        return;
    cl->closing = 1;
    ferry_conn_close(cl->conn, reason);
}

/* Sends a finished frame on req's connection if it is still open. */
static void req_send(struct ferryd_req *req, const msgpack_sbuffer *sb)
{
    struct ferryd_client *cl = req->client;
    if (cl == NULL || cl->closing || cl->conn == NULL)
        return;
    cl->last_active_ms = uv_now(cl->b->loop);
    int rc = ferry_conn_send(cl->conn, sb->data, sb->size);
    if (rc != 0) {
        LOG_WARN("connection %s: send failed: %s; closing it", cl->peer, uv_strerror(rc));
        client_close(cl, "send failed");
    }
}

void ferryd_resp_begin(struct ferryd_req *req, msgpack_sbuffer *sb, msgpack_packer *pk)
{
    msgpack_sbuffer_init(sb);
    msgpack_packer_init(pk, sb, msgpack_sbuffer_write);
    ferry_frame_begin(sb, pk);
    ferry_pack_response_header(pk, req->correlation_id, 0, NULL);
}

void ferryd_req_reply(struct ferryd_req *req, msgpack_sbuffer *sb)
{
    if (ferry_frame_finish(sb) != 0) {
        size_t size = sb->size;
        msgpack_sbuffer_destroy(sb);
        LOG_ERROR("response to %s (correlation id %u) of %zu bytes exceeds the frame limit", ferry_api_name((int)req->api),
                  req->correlation_id, size);
        ferryd_req_error(req, FERRY_ERR_LIMIT_EXCEEDED, "response of %zu bytes exceeds the frame limit %u", size,
                         FERRY_MAX_FRAME_BYTES);
        return;
    }
    req_send(req, sb);
    msgpack_sbuffer_destroy(sb);
    req_end(req);
}

void ferryd_req_error(struct ferryd_req *req, int error, const char *fmt, ...)
{
    char msg[FERRY_MAX_ERROR_MESSAGE];
    msgpack_sbuffer sb;
    msgpack_packer pk;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    LOG_DEBUG("%s %s (correlation id %u): error %d: %s", req->client ? req->client->peer : "(closed)",
              ferry_api_name((int)req->api), req->correlation_id, error, msg);
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    ferry_frame_begin(&sb, &pk);
    ferry_pack_response_header(&pk, req->correlation_id, error, msg);
    msgpack_pack_nil(&pk);
    if (ferry_frame_finish(&sb) == 0)
        req_send(req, &sb);
    msgpack_sbuffer_destroy(&sb);
    req_end(req);
}

void ferryd_req_drop(struct ferryd_req *req)
{
    req_end(req);
}

/* ---- connections ---- */

/* The correlation id of a request whose header failed to decode, if it is there to be read. */
static int peek_correlation_id(const msgpack_object *root, uint32_t *out)
{
    if (root->type != MSGPACK_OBJECT_ARRAY || root->via.array.size < 3)
        return 0;
    const msgpack_object *o = &root->via.array.ptr[2];
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER || o->via.u64 > UINT32_MAX)
        return 0;
    *out = (uint32_t)o->via.u64;
    return 1;
}

static void on_open(struct ferry_conn *c)
{
    struct ferryd_client *cl = ferry_conn_data(c);
    const char *cn = ferry_conn_peer_cn(c);
    cl->conn = c;
    LOG_DEBUG("connection %s open%s%s", cl->peer, cn ? ", client certificate CN=" : "", cn ? cn : "");
}

/*
 * One request frame. Handlers run before this returns and copy what they keep; the frame buffer is
 * the transport's and is not read again after on_frame returns, which lets Produce rewrite batch
 * headers (base_offset) in place instead of copying each batch.
 */
static void on_frame(struct ferry_conn *c, const uint8_t *payload, size_t len)
{
    struct ferryd_client *cl = ferry_conn_data(c);
    struct ferryd *b = cl->b;
    struct ferry_msg m;
    struct ferry_request_header h;
    char why[256];
    uint32_t cid;

    if (cl->closing)
        return;
    cl->got_request = 1;
    cl->last_active_ms = uv_now(b->loop);
    if (ferry_msg_unpack(payload, len, &m, why, sizeof(why)) != 0) {
        LOG_WARN("connection %s: closing: undecodable frame of %zu bytes: %s", cl->peer, len, why);
        client_close(cl, why);
        return;
    }
    memset(&h, 0, sizeof(h));
    if (ferry_request_header_decode(&m.root, &h, why, sizeof(why)) != 0) {
        if (!peek_correlation_id(&m.root, &cid)) {
            LOG_WARN("connection %s: closing: request without a readable correlation id: %s", cl->peer, why);
            client_close(cl, why);
        } else {
            struct ferryd_req *req = req_new(cl, h.api, h.version, cid);
            if (req != NULL)
                ferryd_req_error(req, FERRY_ERR_INVALID_REQUEST, "bad request header: %s", why);
        }
        ferry_msg_destroy(&m);
        return;
    }
    struct ferryd_req *req = req_new(cl, h.api, h.version, h.correlation_id);
    if (req == NULL) {
        LOG_ERROR("connection %s: out of memory; closing it", cl->peer);
        client_close(cl, "out of memory");
    } else if (b->stopping) {
        ferryd_req_error(req, FERRY_ERR_BROKER_NOT_AVAILABLE, "broker is stopping");
    } else {
        ferryd_dispatch(req, &h);
    }
    ferry_msg_destroy(&m);
    /* Pausing here stops delivery at once, even of frames already read in the same chunk. */
    if (!cl->paused)
        client_update_pause(cl);
}

size_t ferryd_req_peer_host(const struct ferryd_req *req, char *buf, size_t buf_size)
{
    /* cl->peer is "ip:port" or "[ip6]:port" (net/conn.c) */
    const char *p = req->client != NULL ? req->client->peer : "";
    const char *colon = strrchr(p, ':');
    size_t n = colon != NULL ? (size_t)(colon - p) : strlen(p);
    if (n >= 2 && p[0] == '[' && p[n - 1] == ']') {
        p++;
        n -= 2;
    }
    if (buf_size == 0)
        return 0;
    if (n >= buf_size)
        n = buf_size - 1;
    memcpy(buf, p, n);
    buf[n] = '\0';
    return n;
}

/* Enough of the queued output was written: reading may resume (unless requests still pile up). */
static void on_drain(struct ferry_conn *c)
{
    struct ferryd_client *cl = ferry_conn_data(c);
    if (cl->paused)
        client_update_pause(cl);
}

static void on_close(struct ferry_conn *c, int status, const char *reason)
{
    struct ferryd_client *cl = ferry_conn_data(c);
    struct ferryd *b = cl->b;

    if (status != 0 && status != UV_EOF && cl->served)
        LOG_INFO("connection %s closed: %s", cl->peer, reason ? reason : uv_strerror(status));
    else
        LOG_DEBUG("connection %s closed%s%s", cl->peer, reason ? ": " : "", reason ? reason : "");
    cl->conn = NULL;
    cl->closing = 1;
    if (cl->prev != NULL)
        cl->prev->next = cl->next;
    else
        b->clients = cl->next;
    if (cl->next != NULL)
        cl->next->prev = cl->prev;
    b->nconns--;
    if (cl->served)
        b->nserved--;
    /* Requests still pending lose their connection; parked ones are released now. */
    struct ferryd_req *req = cl->reqs;
    cl->reqs = NULL;
    while (req != NULL) {
        struct ferryd_req *next = req->next;
        req->client = NULL;
        req->prev = req->next = NULL;
        if (req->abort != NULL) {
            void (*abort_fn)(struct ferryd_req *) = req->abort;
            req->abort = NULL;
            abort_fn(req);
        }
        req = next;
    }
    free(cl);
    ferryd_stop_progress(b);
}

static const struct ferry_conn_callbacks conn_callbacks = {
    .on_open = on_open, .on_frame = on_frame, .on_close = on_close, .on_drain = on_drain};

static void on_connection(uv_stream_t *server, int status)
{
    struct ferryd *b = server->data;
    if (status < 0) {
        LOG_WARN("accept failed: %s", uv_strerror(status));
        return;
    }
    struct ferryd_client *cl = calloc(1, sizeof(*cl));
    if (cl == NULL) {
        LOG_ERROR("accept: out of memory");
        return;
    }
    cl->b = b;
    int rc = ferry_conn_accept(server, b->tls, &conn_callbacks, FERRY_MAX_FRAME_BYTES, cl, &cl->conn);
    if (rc != 0) {
        LOG_WARN("accept failed: %s", uv_strerror(rc));
        free(cl);
        return;
    }
    snprintf(cl->peer, sizeof(cl->peer), "%s", ferry_conn_peer(cl->conn));
    ferry_conn_set_drain_mark(cl->conn, FERRY_MAX_PENDING_OUTPUT_BYTES / 2);
    cl->accepted_ms = uv_now(b->loop);
    cl->last_active_ms = cl->accepted_ms;
    cl->next = b->clients;
    if (b->clients != NULL)
        b->clients->prev = cl;
    b->clients = cl;
    b->nconns++;
    if (b->stopping) {
        client_close(cl, "broker is stopping");
        return;
    }
    if (b->nserved >= (uint32_t)b->cfg->max_connections) {
        /* Closed without a response: nothing has been read, so there is no request to answer. */
        LOG_WARN("connection %s refused: max.connections=%lld reached", cl->peer, (long long)b->cfg->max_connections);
        client_close(cl, "too many connections (max.connections)");
        return;
    }
    cl->served = 1;
    b->nserved++;
    LOG_DEBUG("connection %s accepted (%u open)", cl->peer, b->nserved);
}

/*
 * Connection deadlines, checked by one sweep over every connection (cheaper than a timer each):
 *  - connections.handshake.timeout.ms from accept until the first request frame (so it covers the
 *    TLS handshake too);
 *  - connections.max.idle.ms since the last frame in or response out, for a connection with no
 *    request in flight and no output queued (a parked long poll is not idle).
 */
static void on_conn_sweep(uv_timer_t *t)
{
    struct ferryd *b = t->data;
    uint64_t now = uv_now(b->loop);
    uint64_t hs = (uint64_t)b->cfg->connections_handshake_timeout_ms;
    uint64_t idle = (uint64_t)b->cfg->connections_max_idle_ms;
    struct ferryd_client *cl = b->clients;
    while (cl != NULL) {
        struct ferryd_client *next = cl->next; /* client_close never frees synchronously */
        if (cl->closing || cl->conn == NULL) {
            cl = next;
            continue;
        }
        if (!cl->got_request && now - cl->accepted_ms >= hs) {
            LOG_INFO("connection %s closed: no request within connections.handshake.timeout.ms=%llu (TLS handshake "
                     "or first request not completed)",
                     cl->peer, (unsigned long long)hs);
            client_close(cl, "handshake timeout");
        } else if (cl->got_request && cl->inflight == 0 && ferry_conn_pending_bytes(cl->conn) == 0 &&
                   now - cl->last_active_ms >= idle) {
            LOG_INFO("connection %s closed: idle for connections.max.idle.ms=%llu", cl->peer,
                     (unsigned long long)idle);
            client_close(cl, "idle timeout");
        }
        cl = next;
    }
}

/* The sweep runs at a quarter of the shorter deadline, between 10 ms and 1 s. */
static uint64_t conn_sweep_interval(const struct ferryd_config *cfg)
{
    int64_t shortest = cfg->connections_handshake_timeout_ms < cfg->connections_max_idle_ms
                           ? cfg->connections_handshake_timeout_ms
                           : cfg->connections_max_idle_ms;
    int64_t every = shortest / 4;
    return (uint64_t)(every < 10 ? 10 : every > 1000 ? 1000 : every);
}

/* Writes "host:port\n" (and "peer host:port\n" in a cluster) to path atomically (tmp + rename). */
static int write_ready_file(const char *path, const char *host, int port, int v6, const char *peer_host,
                            int peer_port, char *errmsg, size_t errmsg_len)
{
    char tmp[4200];
    char line[400];
    int n = snprintf(line, sizeof(line), v6 ? "[%s]:%d\n" : "%s:%d\n", host, port);
    if (peer_host != NULL)
        n += snprintf(line + n, sizeof(line) - (size_t)n, "peer %s:%d\n", peer_host, peer_port);
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp)) {
        snprintf(errmsg, errmsg_len, "ready.file: path too long");
        return -1;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(errmsg, errmsg_len, "ready.file %s: %s", tmp, strerror(errno));
        return -1;
    }
    if (write(fd, line, (size_t)n) != n || fsync(fd) != 0) {
        snprintf(errmsg, errmsg_len, "ready.file %s: write failed: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        return -1;
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        snprintf(errmsg, errmsg_len, "ready.file: rename %s -> %s: %s", tmp, path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

int ferryd_server_listen(struct ferryd *b, char *errmsg, size_t errmsg_len)
{
    char host[256];
    int port, rc;
    struct sockaddr_storage ss;
    int namelen = sizeof(ss);

    if (ferryd_split_hostport(b->cfg->listen, host, sizeof(host), &port) != 0) {
        snprintf(errmsg, errmsg_len, "listen: '%s' is not ip:port", b->cfg->listen);
        return -1;
    }
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) != 0 &&
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) != 0) {
        snprintf(errmsg, errmsg_len, "listen: '%s' is not a numeric address", host);
        return -1;
    }
    if ((rc = uv_tcp_init(b->loop, &b->listener)) != 0) {
        snprintf(errmsg, errmsg_len, "listen: %s", uv_strerror(rc));
        return -1;
    }
    b->listener.data = b;
    b->listening = 1;
    uv_timer_init(b->loop, &b->conn_timer);
    b->conn_timer.data = b;
    uint64_t every = conn_sweep_interval(b->cfg);
    uv_timer_start(&b->conn_timer, on_conn_sweep, every, every);
    if ((rc = uv_tcp_bind(&b->listener, (const struct sockaddr *)&ss, 0)) != 0 ||
        (rc = uv_listen((uv_stream_t *)&b->listener, 511, on_connection)) != 0) {
        snprintf(errmsg, errmsg_len, "listen on %s: %s", b->cfg->listen, uv_strerror(rc));
        return -1;
    }
    if ((rc = uv_tcp_getsockname(&b->listener, (struct sockaddr *)&ss, &namelen)) != 0) {
        snprintf(errmsg, errmsg_len, "listen: getsockname: %s", uv_strerror(rc));
        return -1;
    }
    int v6 = ss.ss_family == AF_INET6;
    if (v6) {
        uv_ip6_name((struct sockaddr_in6 *)&ss, b->bound_host, sizeof(b->bound_host));
        b->bound_port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    } else {
        uv_ip4_name((struct sockaddr_in *)&ss, b->bound_host, sizeof(b->bound_host));
        b->bound_port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    }
    if (b->cfg->advertised_listen[0] != '\0') {
        ferryd_split_hostport(b->cfg->advertised_listen, b->advertised_host, sizeof(b->advertised_host),
                              &b->advertised_port);
    } else {
        snprintf(b->advertised_host, sizeof(b->advertised_host), "%s", b->bound_host);
        b->advertised_port = b->bound_port;
    }
    b->bound_v6 = v6;
    return 0;
}

int ferryd_server_write_ready(struct ferryd *b, const char *peer_host, int peer_port, char *errmsg, size_t errmsg_len)
{
    if (b->cfg->ready_file[0] == '\0')
        return 0;
    return write_ready_file(b->cfg->ready_file, b->bound_host, b->bound_port, b->bound_v6, peer_host, peer_port,
                            errmsg, errmsg_len);
}

void ferryd_server_stop_accepting(struct ferryd *b)
{
    if (!b->listening)
        return;
    b->listening = 0;
    uv_close((uv_handle_t *)&b->listener, NULL);
    uv_close((uv_handle_t *)&b->conn_timer, NULL);
}

void ferryd_server_quiesce(struct ferryd *b)
{
    for (struct ferryd_client *cl = b->clients; cl != NULL; cl = cl->next) {
        if (cl->conn != NULL && !cl->paused && !cl->closing) {
            cl->paused = 1;
            ferry_conn_pause(cl->conn);
        }
        struct ferryd_req *req = cl->reqs;
        while (req != NULL) {
            struct ferryd_req *next = req->next; /* abort may end req (and only req) */
            if (req->abort != NULL) {
                void (*abort_fn)(struct ferryd_req *) = req->abort;
                req->abort = NULL;
                abort_fn(req);
            }
            req = next;
        }
    }
}

void ferryd_server_close_all(struct ferryd *b)
{
    for (struct ferryd_client *cl = b->clients; cl != NULL; cl = cl->next)
        client_close(cl, "broker is stopping");
}
