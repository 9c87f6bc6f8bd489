/* broker.c: broker connections (connect, ApiVersions, reconnect backoff) and request/response matching. */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry_int.h"

static void conn_on_open(struct ferry_conn *conn);
static void conn_on_frame(struct ferry_conn *conn, const uint8_t *payload, size_t len);
static void conn_on_close(struct ferry_conn *conn, int status, const char *reason);

static const struct ferry_conn_callbacks conn_callbacks = {
    .on_open = conn_on_open,
    .on_frame = conn_on_frame,
    .on_close = conn_on_close,
};

/* ---- the broker list ---- */

static struct broker *broker_new(struct ferry_client *cl, int32_t id, const char *host, size_t host_len, int port)
{
    struct broker *b = calloc(1, sizeof *b);
    if (b == NULL)
        return NULL;
    b->host = strndup(host, host_len);
    if (b->host == NULL) {
        free(b);
        return NULL;
    }
    b->cl = cl;
    b->id = id;
    b->port = port;
    b->in_metadata = true;
    b->state = BROKER_DOWN;
    b->backoff_ms = cl->s.retry_backoff_ms;
    /* Append: bootstrap addresses are tried in the order given. */
    struct broker **tail = &cl->brokers;
    while (*tail)
        tail = &(*tail)->next;
    *tail = b;
    return b;
}

/* Parses "host:port" or "[v6]:port" (leading/trailing blanks ignored). Returns 0 or -1. */
static int parse_hostport(const char *s, size_t n, const char **host, size_t *host_len, int *port)
{
    while (n > 0 && (*s == ' ' || *s == '\t')) {
        s++;
        n--;
    }
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    const char *colon;
    if (n > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (close == NULL || close + 1 >= s + n || close[1] != ':')
            return -1;
        *host = s + 1;
        *host_len = (size_t)(close - s - 1);
        colon = close + 1;
    } else {
        colon = NULL;
        for (size_t i = 0; i < n; i++)
            if (s[i] == ':')
                colon = s + i;
        if (colon == NULL)
            return -1;
        *host = s;
        *host_len = (size_t)(colon - s);
    }
    if (*host_len == 0 || *host_len > 253)
        return -1;
    const char *p = colon + 1;
    const char *end = s + n;
    if (p >= end)
        return -1;
    long v = 0;
    for (; p < end; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (*p - '0');
        if (v > 65535)
            return -1;
    }
    if (v == 0)
        return -1;
    *port = (int)v;
    return 0;
}

int ferry_brokers_bootstrap(struct ferry_client *cl, const char *servers, char *errstr, size_t errstr_size)
{
    int32_t next_id = -1;
    const char *p = servers;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        const char *host;
        size_t host_len;
        int port;
        if (parse_hostport(p, n, &host, &host_len, &port) != 0) {
            ferry_set_errstr(errstr, errstr_size, "bootstrap.servers: '%.*s' is not host:port", (int)n, p);
            return -1;
        }
        if (broker_new(cl, next_id--, host, host_len, port) == NULL) {
            ferry_set_errstr(errstr, errstr_size, "out of memory");
            return -1;
        }
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    return 0;
}

struct broker *ferry_broker_by_id(struct ferry_client *cl, int32_t id)
{
    for (struct broker *b = cl->brokers; b; b = b->next)
        if (b->id == id)
            return b;
    return NULL;
}

struct broker *ferry_broker_upsert(struct ferry_client *cl, int32_t id, const char *host, size_t host_len, int port)
{
    struct broker *b = ferry_broker_by_id(cl, id);
    if (b == NULL)
        return broker_new(cl, id, host, host_len, port);
    b->in_metadata = true;
    if (strlen(b->host) != host_len || memcmp(b->host, host, host_len) != 0 || b->port != port) {
        /* The broker moved: reconnect to the new address. */
        char *h = strndup(host, host_len);
        if (h == NULL)
            return NULL;
        free(b->host);
        b->host = h;
        b->port = port;
        b->setup_err = 0; /* a new address: its attempts start afresh */
        b->setup_refusals = 0;
        if (b->conn != NULL) {
            b->close_err = FERRY_ERR__TRANSPORT;
            ferry_conn_close(b->conn, "broker address changed");
        }
    }
    return b;
}

void ferry_brokers_free(struct ferry_client *cl)
{
    struct broker *b = cl->brokers;
    while (b) {
        struct broker *next = b->next;
        assert(b->conn == NULL && b->inflight == NULL);
        free(b->host);
        free(b);
        b = next;
    }
    cl->brokers = NULL;
}

/* ---- connecting ---- */

static void set_state(struct broker *b, enum broker_state st)
{
    b->state = st;
    b->state_since_ms = ferry_now_ms();
}

/*
 * Recomputes cl->unreachable_err after b's connection state changed: the error of b (or of another
 * failed broker) when every candidate broker (one listed by metadata, or a bootstrap address) failed
 * its last connection attempt with a non-retriable error, else FERRY_ERR_NONE. Wakes waiters when
 * it changes.
 */
static void update_unreachable(struct ferry_client *cl, const struct broker *b)
{
    const struct broker *src = NULL;
    bool all_failed = true;
    for (const struct broker *x = cl->brokers; x && all_failed; x = x->next) {
        if (!x->in_metadata)
            continue;
        if (x->setup_err == 0)
            all_failed = false;
        else if (src == NULL || x == b)
            src = x;
    }
    ferry_err_t err = all_failed && src != NULL ? (ferry_err_t)src->setup_err : FERRY_ERR_NONE;
    pthread_mutex_lock(&cl->lock);
    if (err != cl->unreachable_err || err != FERRY_ERR_NONE) {
        cl->unreachable_err = err;
        ferry_strlcpy(cl->unreachable_msg, err != FERRY_ERR_NONE ? src->setup_errmsg : "",
                      sizeof cl->unreachable_msg);
        pthread_cond_broadcast(&cl->cond);
    }
    pthread_mutex_unlock(&cl->lock);
}

void ferry_broker_want(struct ferry_client *cl, struct broker *b)
{
    if (cl->stopping || b->state != BROKER_DOWN)
        return;
    int64_t now = ferry_now_ms();
    if (now < b->next_attempt_ms)
        return;
    const char *server_name = cl->s.verify_name ? b->host : ""; /* "": chain only, no name check */
    struct ferry_conn *conn = NULL;
    int rc = ferry_conn_connect(&cl->loop, b->host, b->port, cl->tls, server_name, &conn_callbacks,
                                FERRY_MAX_FRAME_BYTES, b, &conn);
    if (rc != 0) {
        pthread_mutex_lock(&cl->lock);
        snprintf(cl->last_error, sizeof cl->last_error, "%s:%d: %s", b->host, b->port, uv_strerror(rc));
        pthread_mutex_unlock(&cl->lock);
        ferry_log(cl, FERRY_LOG_WARNING, "connect %s", cl->last_error);
        b->setup_err = 0; /* retriable */
        b->setup_refusals = 0;
        update_unreachable(cl, b);
        b->next_attempt_ms = now + b->backoff_ms;
        b->backoff_ms = b->backoff_ms * 2 > FERRY_RECONNECT_BACKOFF_MAX_MS ? FERRY_RECONNECT_BACKOFF_MAX_MS
                                                                          : b->backoff_ms * 2;
        return;
    }
    b->conn = conn;
    b->close_err = 0;
    set_state(b, BROKER_CONNECTING);
    ferry_log(cl, FERRY_LOG_DEBUG, "connecting to broker %d at %s:%d", (int)b->id, b->host, b->port);
}

struct broker *ferry_broker_any_up(struct ferry_client *cl)
{
    struct broker *ctrl = cl->controller_id >= 0 ? ferry_broker_by_id(cl, cl->controller_id) : NULL;
    if (ctrl && ctrl->state == BROKER_UP)
        return ctrl;
    struct broker *boot_up = NULL;
    bool connecting = false;
    for (struct broker *b = cl->brokers; b; b = b->next) {
        if (b->state == BROKER_UP) {
            if (b->id >= 0 && b->in_metadata)
                return b;
            if (boot_up == NULL)
                boot_up = b;
        } else if (b->state != BROKER_DOWN) {
            connecting = true;
        }
    }
    if (boot_up)
        return boot_up;
    if (connecting)
        return NULL;
    /* Nothing up or on its way: start the candidate whose backoff ends first (brokers from metadata
     * first, then bootstrap addresses). */
    struct broker *best = NULL;
    for (int pass = 0; pass < 2 && best == NULL; pass++) {
        for (struct broker *b = cl->brokers; b; b = b->next) {
            if (!b->in_metadata || (pass == 0) != (b->id >= 0))
                continue;
            if (best == NULL || b->next_attempt_ms < best->next_attempt_ms)
                best = b;
        }
    }
    if (best)
        ferry_broker_want(cl, best);
    return NULL;
}

/* ---- requests ---- */

uint32_t ferry_request_begin(struct ferry_client *cl, msgpack_sbuffer *sb, msgpack_packer *pk, int api)
{
    uint32_t corr = cl->next_corr++;
    msgpack_sbuffer_init(sb);
    msgpack_packer_init(pk, sb, msgpack_sbuffer_write);
    ferry_frame_begin(sb, pk);
    ferry_pack_request_header(pk, (uint32_t)api, 0, corr, cl->s.client_id);
    return corr;
}

/* Sends without checking the handshake state (ApiVersions goes out before the broker is UP). */
static int request_send_raw(struct ferry_client *cl, struct broker *b, msgpack_sbuffer *sb, uint32_t corr, int api,
                            int64_t extra_timeout_ms, request_cb_t *cb, void *arg)
{
    int err = 0;
    struct request *rq = NULL;
    if (b->conn == NULL) {
        err = FERRY_ERR__TRANSPORT;
        goto out;
    }
    if (ferry_frame_finish(sb) != 0) {
        err = FERRY_ERR_LIMIT_EXCEEDED;
        goto out;
    }
    if (cb != NULL) {
        rq = calloc(1, sizeof *rq);
        if (rq == NULL) {
            err = FERRY_ERR__NO_MEMORY;
            goto out;
        }
    }
    int rc = ferry_conn_send(b->conn, sb->data, sb->size);
    if (rc != 0) {
        free(rq);
        err = FERRY_ERR__TRANSPORT;
        goto out;
    }
    if (rq != NULL) {
        rq->corr = corr;
        rq->api = api;
        rq->deadline_ms = ferry_now_ms() + cl->s.request_timeout_ms + extra_timeout_ms;
        rq->cb = cb;
        rq->arg = arg;
        if (b->inflight_tail)
            b->inflight_tail->next = rq;
        else
            b->inflight = rq;
        b->inflight_tail = rq;
        b->n_inflight++;
    }
out:
    msgpack_sbuffer_destroy(sb);
    return err;
}

int ferry_request_send(struct ferry_client *cl, struct broker *b, msgpack_sbuffer *sb, uint32_t corr, int api,
                       int64_t extra_timeout_ms, request_cb_t *cb, void *arg)
{
    if (b->state != BROKER_UP) {
        msgpack_sbuffer_destroy(sb);
        return FERRY_ERR__TRANSPORT;
    }
    return request_send_raw(cl, b, sb, corr, api, extra_timeout_ms, cb, arg);
}

/* Fails every in-flight request of b (the connection is gone). */
static void fail_inflight(struct ferry_client *cl, struct broker *b, int err, const char *why)
{
    struct request *rq = b->inflight;
    b->inflight = b->inflight_tail = NULL;
    b->n_inflight = 0;
    while (rq) {
        struct request *next = rq->next;
        rq->cb(cl, b, err, why, NULL, rq->arg);
        free(rq);
        rq = next;
    }
}

/* ---- ApiVersions ---- */

static void on_api_versions(struct ferry_client *cl, struct broker *b, int err, const char *errmsg,
                            const struct ferry_response_header *rh, void *arg)
{
    (void)arg;
    if (err != 0)
        return; /* the connection is closing; on_close handles the rest */
    if (rh->error != 0 || rh->body == NULL) {
        b->close_err = rh->error ? rh->error : FERRY_ERR__BAD_RESPONSE;
        ferry_conn_close(b->conn, "ApiVersions failed");
        return;
    }
    struct ferry_mp_reader rd = {0};
    const msgpack_object_array *apis = ferry_mp_array(&rd, rh->body, "apis", 1);
    unsigned have = 0;
    for (uint32_t i = 0; apis && i < apis->size && !rd.err; i++) {
        const msgpack_object *e = &apis->ptr[i];
        if (e->type != MSGPACK_OBJECT_ARRAY || e->via.array.size < 3)
            continue;
        const msgpack_object *v = e->via.array.ptr;
        if (v[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER || v[1].type != MSGPACK_OBJECT_POSITIVE_INTEGER)
            continue;
        if (v[0].via.u64 < FERRY_API_COUNT_ && v[1].via.u64 == 0)
            have |= 1u << v[0].via.u64;
    }
    if (rd.err) {
        b->close_err = FERRY_ERR__BAD_RESPONSE;
        ferry_log(cl, FERRY_LOG_ERR, "broker %s:%d: bad ApiVersions response: %s", b->host, b->port, rd.errmsg);
        ferry_conn_close(b->conn, "bad ApiVersions response");
        return;
    }
    unsigned need = (1u << FERRY_API_COUNT_) - 1;
    if ((have & need) != need)
        ferry_log(cl, FERRY_LOG_WARNING, "broker %s:%d lacks version 0 of some apis (mask 0x%x)", b->host, b->port,
                  have);
    (void)errmsg;
    set_state(b, BROKER_UP);
    b->backoff_ms = cl->s.retry_backoff_ms;
    b->setup_err = 0;
    b->setup_refusals = 0;
    update_unreachable(cl, b);
    ferry_log(cl, FERRY_LOG_DEBUG, "broker %d at %s:%d is up", (int)b->id, b->host, b->port);
    ferry_kick(cl);
}

/* ---- connection callbacks ---- */

static void conn_on_open(struct ferry_conn *conn)
{
    struct broker *b = ferry_conn_data(conn);
    struct ferry_client *cl = b->cl;
    set_state(b, BROKER_HANDSHAKE);
    msgpack_sbuffer sb;
    msgpack_packer pk;
    uint32_t corr = ferry_request_begin(cl, &sb, &pk, FERRY_API_API_VERSIONS);
    msgpack_pack_map(&pk, 0);
    int err = request_send_raw(cl, b, &sb, corr, FERRY_API_API_VERSIONS, 0, on_api_versions, NULL);
    if (err != 0) {
        b->close_err = err;
        ferry_conn_close(conn, "cannot send ApiVersions");
    }
}

static void conn_on_frame(struct ferry_conn *conn, const uint8_t *payload, size_t len)
{
    struct broker *b = ferry_conn_data(conn);
    struct ferry_client *cl = b->cl;
    struct ferry_msg msg;
    char errmsg[256];
    if (ferry_msg_unpack(payload, len, &msg, errmsg, sizeof errmsg) != 0) {
        ferry_log(cl, FERRY_LOG_ERR, "broker %s:%d: undecodable response: %s", b->host, b->port, errmsg);
        b->close_err = FERRY_ERR__BAD_RESPONSE;
        ferry_conn_close(conn, "undecodable response");
        return;
    }
    struct ferry_response_header rh;
    if (ferry_response_header_decode(&msg.root, &rh, errmsg, sizeof errmsg) != 0) {
        ferry_log(cl, FERRY_LOG_ERR, "broker %s:%d: bad response envelope: %s", b->host, b->port, errmsg);
        ferry_msg_destroy(&msg);
        b->close_err = FERRY_ERR__BAD_RESPONSE;
        ferry_conn_close(conn, "bad response envelope");
        return;
    }
    struct request **pp = &b->inflight, *prev = NULL;
    while (*pp && (*pp)->corr != rh.correlation_id) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    struct request *rq = *pp;
    if (rq == NULL) {
        ferry_log(cl, FERRY_LOG_ERR, "broker %s:%d: response to unknown correlation id %u", b->host, b->port,
                  (unsigned)rh.correlation_id);
        ferry_msg_destroy(&msg);
        b->close_err = FERRY_ERR__BAD_RESPONSE;
        ferry_conn_close(conn, "response to an unknown request");
        return;
    }
    *pp = rq->next;
    if (b->inflight_tail == rq)
        b->inflight_tail = prev;
    b->n_inflight--;
    rq->cb(cl, b, 0, NULL, &rh, rq->arg);
    free(rq);
    ferry_msg_destroy(&msg);
}

/* Refusals that only count once they repeat on consecutive attempts (see classify_setup_failure). */
#define FERRY_SETUP_REFUSALS_FATAL 2

/*
 * Classifies a connection that closed before the broker was up: sets b->setup_err and its message
 * (see struct broker) and returns the reason to report (why, or reason itself). Only failures that
 * retrying cannot fix count:
 *   - at once, a refusal that only a misconfiguration explains: the broker's certificate failed
 *     verification, or the broker sent a TLS alert (e.g. "certificate required" under mutual TLS);
 *   - on the second consecutive attempt, one that a broker going down mid-handshake could also
 *     cause: another TLS failure (end of stream during the handshake), or a plaintext connection
 *     the broker closed while the client waited for its ApiVersions answer (what a TLS listener
 *     does with plaintext).
 * Our own closes (setup timeout, bad response) and TCP errors (refused, reset) stay retriable.
 */
static const char *classify_setup_failure(struct ferry_client *cl, struct broker *b, enum broker_state st,
                                          const char *reason, char *why, size_t why_size)
{
    b->setup_err = 0;
    if (b->close_err != 0 || reason == NULL) {
        b->setup_refusals = 0;
        return reason;
    }
    int err;
    bool definite = false;
    if (strncmp(reason, "TLS", 3) == 0) {
        err = FERRY_ERR__TLS;
        definite = strstr(reason, "certificate verify failed") != NULL || strstr(reason, "alert") != NULL;
        snprintf(why, why_size, "%s", reason);
    } else if (cl->tls == NULL && st == BROKER_HANDSHAKE) {
        err = FERRY_ERR__TRANSPORT;
        snprintf(why, why_size, "connection closed during handshake: is the broker using TLS? (%s)", reason);
    } else {
        b->setup_refusals = 0;
        return reason;
    }
    b->setup_refusals++;
    if (definite || b->setup_refusals >= FERRY_SETUP_REFUSALS_FATAL) {
        b->setup_err = err;
        snprintf(b->setup_errmsg, sizeof b->setup_errmsg, "%s:%d: %s", b->host, b->port, why);
    }
    return why;
}

static void conn_on_close(struct ferry_conn *conn, int status, const char *reason)
{
    struct broker *b = ferry_conn_data(conn);
    struct ferry_client *cl = b->cl;
    char why[200];
    enum broker_state st = b->state;
    bool was_up = st == BROKER_UP;
    int err = b->close_err;
    if (err == 0)
        err = reason != NULL && strncmp(reason, "TLS", 3) == 0 ? FERRY_ERR__TLS : FERRY_ERR__TRANSPORT;
    if (cl->stopping)
        err = FERRY_ERR__DESTROYED;
    b->conn = NULL;
    set_state(b, BROKER_DOWN);
    b->fetch_inflight = false;
    b->offsets_inflight = false;
    if (!cl->stopping) {
        if (was_up) {
            b->setup_err = 0; /* it was reachable: losing it is retriable */
            b->setup_refusals = 0;
        } else {
            reason = classify_setup_failure(cl, b, st, reason, why, sizeof why);
        }
        pthread_mutex_lock(&cl->lock);
        snprintf(cl->last_error, sizeof cl->last_error, "%s:%d: %s", b->host, b->port,
                 reason ? reason : uv_strerror(status));
        pthread_mutex_unlock(&cl->lock);
        ferry_log(cl, was_up ? FERRY_LOG_WARNING : FERRY_LOG_INFO, "connection to broker %d closed: %s", (int)b->id,
                  cl->last_error);
        b->next_attempt_ms = ferry_now_ms() + b->backoff_ms;
        b->backoff_ms = b->backoff_ms * 2 > FERRY_RECONNECT_BACKOFF_MAX_MS ? FERRY_RECONNECT_BACKOFF_MAX_MS
                                                                          : b->backoff_ms * 2;
        update_unreachable(cl, b);
    }
    fail_inflight(cl, b, err, reason ? reason : "connection closed");
    b->n_produce_inflight = 0;
    if (!cl->stopping) {
        if (was_up)
            ferry_metadata_refresh(cl, "connection lost");
        else if (b->id >= 0) /* a known broker is unreachable: its partitions may have new leaders */
            ferry_metadata_refresh(cl, "broker unreachable");
        ferry_kick(cl);
    }
}

/* ---- housekeeping ---- */

void ferry_brokers_service(struct ferry_client *cl, int64_t now)
{
    for (struct broker *b = cl->brokers; b; b = b->next) {
        if (b->conn == NULL)
            continue;
        if (b->state != BROKER_UP && now - b->state_since_ms > cl->s.conn_setup_timeout_ms) {
            b->close_err = FERRY_ERR__TRANSPORT;
            ferry_conn_close(b->conn, "connection setup timed out");
            continue;
        }
        for (struct request *rq = b->inflight; rq; rq = rq->next) {
            if (now > rq->deadline_ms) {
                ferry_log(cl, FERRY_LOG_WARNING, "broker %s:%d: %s request timed out; reconnecting", b->host,
                          b->port, ferry_api_name(rq->api));
                b->close_err = FERRY_ERR__TIMED_OUT;
                ferry_conn_close(b->conn, "request timed out");
                break;
            }
        }
    }
}

void ferry_brokers_close_all(struct ferry_client *cl)
{
    for (struct broker *b = cl->brokers; b; b = b->next) {
        if (b->conn != NULL) {
            b->close_err = FERRY_ERR__DESTROYED;
            ferry_conn_close(b->conn, "client closing");
        }
    }
}
