/* ft_raw.c: raw framed connections (blocking TCP, optional TLS via OpenSSL) and msgpack requests for tests. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "ferrytest.h"
#include "proto/batch.h"

static void ssl_errmsg(const char *what, char *errmsg, size_t errmsg_len)
{
    char reason[256] = "unknown";
    unsigned long e = ERR_get_error();
    if (e)
        ERR_error_string_n(e, reason, sizeof(reason));
    ERR_clear_error();
    snprintf(errmsg, errmsg_len, "%s: %s", what, reason);
}

int ft_raw_connect(struct ft_raw *c, const char *host, int port, const struct ft_raw_tls *tls, int timeout_ms,
                   char *errmsg, size_t errmsg_len)
{
    memset(c, 0, sizeof(*c));
    c->fd = -1;
    c->timeout_ms = ft_ms(timeout_ms);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        snprintf(errmsg, errmsg_len, "not an IPv4 address: %s", host);
        return -1;
    }
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        snprintf(errmsg, errmsg_len, "socket: %s", strerror(errno));
        return -1;
    }
    struct timeval tv = {c->timeout_ms / 1000, (c->timeout_ms % 1000) * 1000};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        snprintf(errmsg, errmsg_len, "connect %s:%d: %s", host, port, strerror(errno));
        goto err_fd;
    }
    if (!tls)
        return 0;

    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        ssl_errmsg("SSL_CTX_new", errmsg, errmsg_len);
        goto err_fd;
    }
    c->ssl_ctx = ctx;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    if (tls->ca_file) {
        if (SSL_CTX_load_verify_locations(ctx, tls->ca_file, NULL) != 1) {
            ssl_errmsg(tls->ca_file, errmsg, errmsg_len);
            goto err_ctx;
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    }
    if (tls->cert_file) {
        if (SSL_CTX_use_certificate_chain_file(ctx, tls->cert_file) != 1) {
            ssl_errmsg(tls->cert_file, errmsg, errmsg_len);
            goto err_ctx;
        }
        if (SSL_CTX_use_PrivateKey_file(ctx, tls->key_file, SSL_FILETYPE_PEM) != 1) {
            ssl_errmsg(tls->key_file ? tls->key_file : "(no key file)", errmsg, errmsg_len);
            goto err_ctx;
        }
    }
    SSL *ssl = SSL_new(ctx);
    if (!ssl) {
        ssl_errmsg("SSL_new", errmsg, errmsg_len);
        goto err_ctx;
    }
    c->ssl = ssl;
    if (tls->ca_file) {
        SSL_set1_host(ssl, host); /* the server certificate carries IP:127.0.0.1 */
    }
    SSL_set_fd(ssl, c->fd);
    if (SSL_connect(ssl) != 1) {
        long vr = SSL_get_verify_result(ssl);
        char what[160];
        snprintf(what, sizeof(what), "TLS handshake with %s:%d (verify: %s)", host, port,
                 X509_verify_cert_error_string(vr));
        ssl_errmsg(what, errmsg, errmsg_len);
        goto err_ssl;
    }
    return 0;

err_ssl:
    SSL_free(ssl);
    c->ssl = NULL;
err_ctx:
    SSL_CTX_free(ctx);
    c->ssl_ctx = NULL;
err_fd:
    close(c->fd);
    c->fd = -1;
    return -1;
}

int ft_raw_connect_broker(struct ft_raw *c, const struct ft_broker *b, char *errmsg, size_t errmsg_len)
{
    char ca[400], cert[400], key[400];
    struct ft_raw_tls tls = {ft_cert("ca.crt", ca, sizeof(ca)), NULL, NULL};
    if (b->opts.security == FT_MTLS) {
        tls.cert_file = ft_cert("client.crt", cert, sizeof(cert));
        tls.key_file = ft_cert("client.key", key, sizeof(key));
    }
    return ft_raw_connect(c, b->host, b->port, b->opts.security == FT_PLAINTEXT ? NULL : &tls, 5000, errmsg,
                          errmsg_len);
}

void ft_raw_close(struct ft_raw *c)
{
    if (c->ssl) {
        SSL_free(c->ssl); /* no close_notify: tests often close abruptly on purpose */
        c->ssl = NULL;
    }
    if (c->ssl_ctx) {
        SSL_CTX_free(c->ssl_ctx);
        c->ssl_ctx = NULL;
    }
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
}

int ft_raw_send(struct ft_raw *c, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t w;
        if (c->ssl) {
            int n = len > (size_t)(1 << 30) ? (1 << 30) : (int)len;
            w = SSL_write(c->ssl, p, n);
            if (w <= 0) {
                ERR_clear_error();
                return -1;
            }
        } else {
            w = send(c->fd, p, len, MSG_NOSIGNAL);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

int ft_raw_send_frame(struct ft_raw *c, const void *payload, size_t len)
{
    uint8_t hdr[4] = {(uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8), (uint8_t)len};
    if (ft_raw_send(c, hdr, 4) != 0)
        return -1;
    return ft_raw_send(c, payload, len);
}

/* Reads exactly len bytes. Returns FT_RAW_FRAME (ok), FT_RAW_CLOSED, FT_RAW_TIMEOUT or FT_RAW_ERROR. */
static int read_full(struct ft_raw *c, uint8_t *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        if (c->ssl) {
            size_t want = len - got > (size_t)(1 << 30) ? (size_t)(1 << 30) : len - got;
            int r = SSL_read(c->ssl, buf + got, (int)want);
            if (r > 0) {
                got += (size_t)r;
                continue;
            }
            int e = SSL_get_error(c->ssl, r);
            int saved = errno;
            ERR_clear_error();
            if (e == SSL_ERROR_ZERO_RETURN)
                return FT_RAW_CLOSED;
            if (e == SSL_ERROR_SYSCALL && (saved == EAGAIN || saved == EWOULDBLOCK))
                return FT_RAW_TIMEOUT;
            /* EOF without close_notify, reset, or a fatal alert from the peer: the peer closed us. */
            if (e == SSL_ERROR_SYSCALL || e == SSL_ERROR_SSL)
                return FT_RAW_CLOSED;
            return FT_RAW_ERROR;
        }
        ssize_t r = recv(c->fd, buf + got, len - got, 0);
        if (r > 0) {
            got += (size_t)r;
            continue;
        }
        if (r == 0)
            return FT_RAW_CLOSED;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return FT_RAW_TIMEOUT;
        if (errno == ECONNRESET || errno == EPIPE)
            return FT_RAW_CLOSED;
        return FT_RAW_ERROR;
    }
    return FT_RAW_FRAME;
}

int ft_raw_recv_frame(struct ft_raw *c, uint8_t **payload, size_t *len, size_t max_len)
{
    *payload = NULL;
    *len = 0;
    uint8_t hdr[4];
    int r = read_full(c, hdr, 4);
    if (r != FT_RAW_FRAME)
        return r;
    size_t n = ((size_t)hdr[0] << 24) | ((size_t)hdr[1] << 16) | ((size_t)hdr[2] << 8) | hdr[3];
    if (n == 0 || n > max_len)
        return FT_RAW_BAD;
    uint8_t *buf = malloc(n);
    if (!buf)
        return FT_RAW_ERROR;
    r = read_full(c, buf, n);
    if (r != FT_RAW_FRAME) {
        free(buf);
        return r;
    }
    *payload = buf;
    *len = n;
    return FT_RAW_FRAME;
}

/* ---- requests ---- */

void ft_req_begin_raw(struct ft_req *r)
{
    msgpack_sbuffer_init(&r->sb);
    msgpack_packer_init(&r->pk, &r->sb, msgpack_sbuffer_write);
    static const char zero[4] = {0};
    msgpack_sbuffer_write(&r->sb, zero, 4);
}

void ft_req_begin(struct ft_req *r, uint32_t api, uint32_t version, uint32_t correlation_id)
{
    ft_req_begin_raw(r);
    msgpack_pack_array(&r->pk, 5);
    msgpack_pack_uint32(&r->pk, api);
    msgpack_pack_uint32(&r->pk, version);
    msgpack_pack_uint32(&r->pk, correlation_id);
    ft_pack_str(&r->pk, "ferrytest");
}

const uint8_t *ft_req_frame(struct ft_req *r, size_t *len)
{
    size_t n = r->sb.size - 4;
    uint8_t *p = (uint8_t *)r->sb.data;
    p[0] = (uint8_t)(n >> 24);
    p[1] = (uint8_t)(n >> 16);
    p[2] = (uint8_t)(n >> 8);
    p[3] = (uint8_t)n;
    *len = r->sb.size;
    return p;
}

void ft_req_free(struct ft_req *r) { msgpack_sbuffer_destroy(&r->sb); }

void ft_pack_str(msgpack_packer *pk, const char *s)
{
    if (!s) {
        msgpack_pack_nil(pk);
        return;
    }
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

void ft_pack_bin(msgpack_packer *pk, const void *p, size_t n)
{
    msgpack_pack_bin(pk, n);
    msgpack_pack_bin_body(pk, p, n);
}

void ft_req_api_versions(struct ft_req *r, uint32_t corr)
{
    ft_req_begin(r, 0, 0, corr);
    msgpack_pack_map(&r->pk, 0);
}

void ft_req_metadata(struct ft_req *r, uint32_t corr, const char *topic)
{
    ft_req_begin(r, 1, 0, corr);
    if (!topic) {
        msgpack_pack_map(&r->pk, 0);
        return;
    }
    msgpack_pack_map(&r->pk, 1);
    ft_pack_str(&r->pk, "topics");
    msgpack_pack_array(&r->pk, 1);
    ft_pack_str(&r->pk, topic);
}

void ft_req_create_topic(struct ft_req *r, uint32_t corr, const char *name, int64_t partitions)
{
    ft_req_begin(r, 2, 0, corr);
    msgpack_pack_map(&r->pk, 1);
    ft_pack_str(&r->pk, "topics");
    msgpack_pack_array(&r->pk, 1);
    msgpack_pack_map(&r->pk, 2);
    ft_pack_str(&r->pk, "name");
    ft_pack_str(&r->pk, name);
    ft_pack_str(&r->pk, "partitions");
    msgpack_pack_int64(&r->pk, partitions);
}

void ft_req_produce(struct ft_req *r, uint32_t corr, const char *topic, int64_t partition, const void *batch,
                    size_t batch_len)
{
    ft_req_begin(r, 4, 0, corr);
    msgpack_pack_map(&r->pk, 3);
    ft_pack_str(&r->pk, "acks");
    msgpack_pack_int(&r->pk, -1);
    ft_pack_str(&r->pk, "timeout_ms");
    msgpack_pack_int(&r->pk, 10000);
    ft_pack_str(&r->pk, "topics");
    msgpack_pack_array(&r->pk, 1);
    msgpack_pack_map(&r->pk, 2);
    ft_pack_str(&r->pk, "name");
    ft_pack_str(&r->pk, topic);
    ft_pack_str(&r->pk, "partitions");
    msgpack_pack_array(&r->pk, 1);
    msgpack_pack_map(&r->pk, 2);
    ft_pack_str(&r->pk, "partition");
    msgpack_pack_int64(&r->pk, partition);
    ft_pack_str(&r->pk, "batch");
    ft_pack_bin(&r->pk, batch, batch_len);
}

void ft_req_fetch(struct ft_req *r, uint32_t corr, const char *topic, int64_t partition, int64_t offset,
                  int64_t max_wait_ms)
{
    ft_req_begin(r, 5, 0, corr);
    msgpack_pack_map(&r->pk, 2);
    ft_pack_str(&r->pk, "max_wait_ms");
    msgpack_pack_int64(&r->pk, max_wait_ms);
    ft_pack_str(&r->pk, "topics");
    msgpack_pack_array(&r->pk, 1);
    msgpack_pack_map(&r->pk, 2);
    ft_pack_str(&r->pk, "name");
    ft_pack_str(&r->pk, topic);
    ft_pack_str(&r->pk, "partitions");
    msgpack_pack_array(&r->pk, 1);
    msgpack_pack_map(&r->pk, 2);
    ft_pack_str(&r->pk, "partition");
    msgpack_pack_int64(&r->pk, partition);
    ft_pack_str(&r->pk, "offset");
    msgpack_pack_int64(&r->pk, offset);
}

/* ---- responses ---- */

static int obj_int(const msgpack_object *o, int64_t *out)
{
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= (uint64_t)INT64_MAX) {
        *out = (int64_t)o->via.u64;
        return 0;
    }
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        *out = o->via.i64;
        return 0;
    }
    return -1;
}

const msgpack_object *ft_mp_get(const msgpack_object *map, const char *key)
{
    if (!map || map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    size_t kl = strlen(key);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == kl && memcmp(k->via.str.ptr, key, kl) == 0)
            return &map->via.map.ptr[i].val;
    }
    return NULL;
}

int64_t ft_mp_int(const msgpack_object *map, const char *key, int64_t def)
{
    const msgpack_object *o = ft_mp_get(map, key);
    int64_t v;
    if (!o || obj_int(o, &v) != 0)
        return def;
    return v;
}

static const msgpack_object *array_elem(const msgpack_object *a, uint32_t i)
{
    if (!a || a->type != MSGPACK_OBJECT_ARRAY || i >= a->via.array.size)
        return NULL;
    return &a->via.array.ptr[i];
}

const msgpack_object *ft_resp_topic(const struct ft_resp *r, uint32_t ti)
{
    return array_elem(ft_mp_get(r->body, "topics"), ti);
}

const msgpack_object *ft_resp_partition(const struct ft_resp *r, uint32_t ti, uint32_t pi)
{
    return array_elem(ft_mp_get(ft_resp_topic(r, ti), "partitions"), pi);
}

int ft_raw_recv_resp(struct ft_raw *c, struct ft_resp *r, char *errmsg, size_t errmsg_len)
{
    memset(r, 0, sizeof(*r));
    msgpack_unpacked_init(&r->up);
    size_t len = 0;
    int rc = ft_raw_recv_frame(c, &r->frame, &len, 128u * 1024 * 1024);
    if (rc != FT_RAW_FRAME) {
        static const char *names[] = {"frame", "closed", "timeout", "bad frame length", "error"};
        snprintf(errmsg, errmsg_len, "receiving a response: %s", names[rc]);
        return rc;
    }
    size_t off = 0;
    if (msgpack_unpack_next(&r->up, (const char *)r->frame, len, &off) != MSGPACK_UNPACK_SUCCESS || off != len) {
        snprintf(errmsg, errmsg_len, "response is not exactly one msgpack value (%zu bytes)", len);
        return FT_RAW_BAD;
    }
    const msgpack_object *root = &r->up.data;
    int64_t corr, err;
    if (root->type != MSGPACK_OBJECT_ARRAY || root->via.array.size != 4 || obj_int(&root->via.array.ptr[0], &corr) ||
        obj_int(&root->via.array.ptr[1], &err)) {
        snprintf(errmsg, errmsg_len, "response is not [corr, error, message, body]");
        return FT_RAW_BAD;
    }
    r->correlation_id = (uint32_t)corr;
    r->error = err;
    const msgpack_object *m = &root->via.array.ptr[2];
    if (m->type == MSGPACK_OBJECT_STR) {
        size_t n = m->via.str.size < sizeof(r->error_message) - 1 ? m->via.str.size : sizeof(r->error_message) - 1;
        memcpy(r->error_message, m->via.str.ptr, n);
        r->error_message[n] = '\0';
    } else if (m->type != MSGPACK_OBJECT_NIL) {
        snprintf(errmsg, errmsg_len, "response error_message is neither str nor nil");
        return FT_RAW_BAD;
    }
    const msgpack_object *body = &root->via.array.ptr[3];
    if (body->type == MSGPACK_OBJECT_MAP)
        r->body = body;
    else if (body->type != MSGPACK_OBJECT_NIL) {
        snprintf(errmsg, errmsg_len, "response body is neither map nor nil");
        return FT_RAW_BAD;
    }
    return FT_RAW_FRAME;
}

void ft_resp_free(struct ft_resp *r)
{
    msgpack_unpacked_destroy(&r->up);
    free(r->frame);
    r->frame = NULL;
    r->body = NULL;
}

int ft_raw_roundtrip(struct ft_raw *c, const uint8_t *frame, size_t len, struct ft_resp *r, char *errmsg,
                     size_t errmsg_len)
{
    memset(r, 0, sizeof(*r));
    msgpack_unpacked_init(&r->up);
    if (ft_raw_send(c, frame, len) != 0) {
        snprintf(errmsg, errmsg_len, "sending a request of %zu bytes failed", len);
        return -1;
    }
    msgpack_unpacked_destroy(&r->up);
    return ft_raw_recv_resp(c, r, errmsg, errmsg_len) == FT_RAW_FRAME ? 0 : -1;
}

int ft_make_batch(uint32_t n, size_t value_len, uint64_t id0, int compression, uint8_t **out, size_t *out_len,
                  char *errmsg, size_t errmsg_len)
{
    struct ferry_batch_builder *bb = ferry_batch_builder_new(compression, -1, -1, -1);
    if (!bb) {
        snprintf(errmsg, errmsg_len, "ferry_batch_builder_new failed");
        return -1;
    }
    uint8_t *val = malloc(value_len ? value_len : 1);
    if (!val) {
        ferry_batch_builder_free(bb);
        snprintf(errmsg, errmsg_len, "out of memory");
        return -1;
    }
    int64_t ts = ft_wall_ms();
    for (uint32_t i = 0; i < n; i++) {
        char key[32];
        int kl = snprintf(key, sizeof(key), "key-%llu", (unsigned long long)(id0 + i));
        ft_fill_pattern(val, value_len, id0 + i);
        if (ferry_batch_builder_add(bb, ts, key, kl, val, (ssize_t)value_len, NULL, 0) != 0) {
            snprintf(errmsg, errmsg_len, "ferry_batch_builder_add: %s", ferry_batch_builder_error(bb));
            ferry_batch_builder_free(bb);
            free(val);
            return -1;
        }
    }
    free(val);
    int rc = ferry_batch_builder_seal(bb, out, out_len); /* frees bb */
    if (rc != 0) {
        snprintf(errmsg, errmsg_len, "ferry_batch_builder_seal: error %d", rc);
        return -1;
    }
    return 0;
}
