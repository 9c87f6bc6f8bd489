/* conn_tls.c: the TLS transport: one SSL object over two memory BIOs, driven by the socket's bytes. */
#include <arpa/inet.h>
#include <assert.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn_int.h"

/*
 * Data flow. In: socket bytes -> BIO_write(rbio) -> SSL_do_handshake / SSL_read -> frame reassembler
 * (SSL_read goes straight into the frame buffer while a large frame is being accumulated). Out:
 * small frames are staged as plaintext and encrypted together at flush time (fewer, fuller
 * records); a frame of TLS_DIRECT_BYTES or more is encrypted at once (no plaintext copy). The
 * ciphertext is drained from wbio into the conn's output buffer as it is made, and all of it is
 * written with one uv_write per loop pass.
 */

/* A TLS record carries at most 16 KiB of plaintext: frames this large gain nothing from staging. */
#define TLS_DIRECT_BYTES 16384
/* SSL_read returns at most one record. */
#define TLS_SCRATCH_BYTES 16384
/* Plaintext handed to one SSL_write: four full records. */
#define TLS_PIECE_BYTES 65536

static _Thread_local uint8_t tls_scratch[TLS_SCRATCH_BYTES];

static void tls_pump(struct ferry_conn *c);

/* Closes c with OpenSSL's reason for the failure of the SSL call that returned ret. */
static void tls_fail(struct ferry_conn *c, int ret)
{
    int e = SSL_get_error(c->ssl, ret);
    long vr = SSL_get_verify_result(c->ssl);
    unsigned long err = ERR_peek_error();
    char why[200];
    if (vr != X509_V_OK) {
        snprintf(why, sizeof why, "certificate verify failed: %s", X509_verify_cert_error_string(vr));
    } else if (err != 0) {
        const char *reason = ERR_reason_error_string(err);
        if (reason != NULL)
            snprintf(why, sizeof why, "%s", reason);
        else
            ERR_error_string_n(err, why, sizeof why);
    } else if (e == SSL_ERROR_SYSCALL) {
        snprintf(why, sizeof why, "unexpected end of stream");
    } else {
        snprintf(why, sizeof why, "SSL error %d", e);
    }
    ERR_clear_error();
    c->tls_dead = 1;
    /* flush = 1: an alert OpenSSL queued in wbio still reaches the peer. */
    conn_fail(c, -1, 1, "TLS: %s", why);
}

int conn_tls_init(struct ferry_conn *c, struct ferry_tls_ctx *tls, const char *server_name)
{
    int rc = UV_ENOMEM;
    SSL *ssl = SSL_new(tls->ssl_ctx);
    if (ssl == NULL)
        goto err;
    BIO *rbio = BIO_new(BIO_s_mem());
    BIO *wbio = BIO_new(BIO_s_mem());
    if (rbio == NULL || wbio == NULL) {
        BIO_free(rbio);
        BIO_free(wbio);
        goto err_after_ssl;
    }
    /* An empty BIO means "wait for more", not end of stream. */
    BIO_set_mem_eof_return(rbio, -1);
    BIO_set_mem_eof_return(wbio, -1);
    SSL_set_bio(ssl, rbio, wbio); /* ssl owns both now */
    if (tls->is_server) {
        SSL_set_accept_state(ssl);
    } else {
        assert(server_name != NULL);
        SSL_set_connect_state(ssl);
        unsigned char addr[16];
        rc = UV_EINVAL;
        if (server_name[0] == '\0') {
            /* Name checks off by request (ssl.endpoint.identification=none): chain still verified. */
        } else if (inet_pton(AF_INET, server_name, addr) == 1 || inet_pton(AF_INET6, server_name, addr) == 1) {
            if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), server_name) != 1)
                goto err_after_ssl;
        } else {
            SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
            if (SSL_set1_host(ssl, server_name) != 1 || SSL_set_tlsext_host_name(ssl, server_name) != 1)
                goto err_after_ssl;
        }
    }
    c->ssl = ssl;
    c->rbio = rbio;
    c->wbio = wbio;
    return 0;

err_after_ssl:
    SSL_free(ssl);
err:
    ERR_clear_error();
    return rc;
}

/* The subject CN of the verified peer certificate, for ferry_conn_peer_cn. */
static void tls_take_peer_cn(struct ferry_conn *c)
{
    X509 *peer = SSL_get0_peer_certificate(c->ssl);
    if (peer == NULL || SSL_get_verify_result(c->ssl) != X509_V_OK)
        return;
    X509_NAME *name = X509_get_subject_name(peer);
    int i = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
    if (i < 0)
        return;
    unsigned char *utf8 = NULL;
    int n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i)));
    if (n >= 0 && memchr(utf8, '\0', (size_t)n) == NULL)
        c->peer_cn = strndup((const char *)utf8, (size_t)n);
    OPENSSL_free(utf8);
}

/* Decrypts what rbio holds into frames while delivery is allowed. */
static void tls_read_app(struct ferry_conn *c)
{
    while (conn_deliverable(c) && c->held_off >= c->held.len) {
        uint8_t *dst = tls_scratch;
        size_t cap = sizeof tls_scratch;
        if (c->frame != NULL) {
            dst = c->frame + c->frame_have; /* a large frame: decrypt straight into it */
            cap = c->frame_len - c->frame_have;
        }
        size_t got = 0;
        int r = SSL_read_ex(c->ssl, dst, cap, &got);
        if (r != 1) {
            int e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_READ)
                return;
            if (e == SSL_ERROR_ZERO_RETURN) {
                ERR_clear_error();
                conn_fail(c, UV_EOF, 0,
                          c->frame != NULL || c->hdr_have > 0
                              ? "connection closed by peer in the middle of a frame"
                              : "connection closed by peer");
                return;
            }
            tls_fail(c, r);
            return;
        }
        if (dst == tls_scratch)
            conn_feed_hold(c, tls_scratch, got);
        else
            conn_frame_filled(c, got);
    }
}

static void tls_pump(struct ferry_conn *c)
{
    if (c->tls_dead || c->closing)
        return;
    ERR_clear_error();
    if (!SSL_is_init_finished(c->ssl)) {
        int r = SSL_do_handshake(c->ssl);
        if (r != 1) {
            int e = SSL_get_error(c->ssl, r);
            if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
                tls_fail(c, r);
                return;
            }
            if (BIO_ctrl_pending(c->wbio) > 0)
                conn_schedule(c);
            return;
        }
        tls_take_peer_cn(c);
        conn_opened(c); /* schedules the flush of our last handshake bytes and anything staged */
        if (c->close_requested)
            return;
    }
    tls_read_app(c);
    if (!c->closing && BIO_ctrl_pending(c->wbio) > 0)
        conn_schedule(c); /* post-handshake messages (key updates) may need an answer */
}

static void tls_start(struct ferry_conn *c)
{
    conn_read_start(c);
    if (!SSL_is_server(c->ssl))
        tls_pump(c); /* writes the ClientHello */
}

static void tls_input(struct ferry_conn *c, const uint8_t *p, size_t n)
{
    if (c->tls_dead)
        return;
    assert(n <= INT_MAX);
    if (BIO_write(c->rbio, p, (int)n) != (int)n) {
        ERR_clear_error();
        conn_fail(c, UV_ENOMEM, 0, "TLS: no memory for %zu received bytes", n);
        return;
    }
    tls_pump(c);
}

static void tls_resume(struct ferry_conn *c)
{
    if (conn_feed_held(c))
        tls_pump(c);
}

/* Moves the ciphertext wbio holds into c->out. Returns 0, or -1 after closing the conn. */
static int tls_drain(struct ferry_conn *c)
{
    size_t n;
    while ((n = BIO_ctrl_pending(c->wbio)) > 0) {
        if (n > INT_MAX / 2)
            n = INT_MAX / 2;
        if (conn_buf_reserve(&c->out, n) != 0) {
            conn_fail(c, UV_ENOMEM, 0, "TLS: no memory for %zu bytes to send", n);
            return -1;
        }
        int r = BIO_read(c->wbio, c->out.base + c->out.len, (int)n);
        if (r <= 0)
            break;
        c->out.len += (size_t)r;
    }
    return 0;
}

/*
 * Encrypts p[0, n) into c->out, TLS_PIECE_BYTES at a time so wbio never holds more than one piece
 * (a memory BIO grows by copying and cleansing its buffer: a multi-MB frame in one SSL_write would
 * cost more in BIO growth than in AES). Returns 0, or UV_EPROTO/UV_ENOMEM after closing the conn.
 */
static int tls_encrypt(struct ferry_conn *c, const uint8_t *p, size_t n)
{
    for (size_t off = 0; off < n;) {
        size_t piece = n - off < TLS_PIECE_BYTES ? n - off : TLS_PIECE_BYTES;
        size_t written = 0;
        ERR_clear_error();
        int r = SSL_write_ex(c->ssl, p + off, piece, &written);
        if (r != 1 || written != piece) {
            tls_fail(c, r);
            return UV_EPROTO;
        }
        off += piece;
        if (tls_drain(c) != 0)
            return UV_ENOMEM;
    }
    return 0;
}

static int tls_encrypt_stage(struct ferry_conn *c)
{
    if (c->stage.len == 0)
        return 0;
    int rc = tls_encrypt(c, c->stage.base, c->stage.len);
    c->stage.len = 0; /* its memory is released by the core once output drains */
    return rc;
}

static int tls_send(struct ferry_conn *c, const uint8_t *p, size_t n)
{
    if (c->tls_dead)
        return UV_EPIPE;
    if (n < TLS_DIRECT_BYTES || !SSL_is_init_finished(c->ssl))
        return conn_buf_append(&c->stage, p, n);
    int rc = tls_encrypt_stage(c); /* keeps frame order */
    if (rc != 0)
        return rc;
    return tls_encrypt(c, p, n);
}

static int tls_collect(struct ferry_conn *c)
{
    if (!c->tls_dead && SSL_is_init_finished(c->ssl) && tls_encrypt_stage(c) != 0)
        return -1;
    return tls_drain(c); /* handshake messages, alerts, close_notify */
}

static size_t tls_queued(const struct ferry_conn *c)
{
    return c->stage.len + (c->wbio != NULL ? BIO_ctrl_pending(c->wbio) : 0);
}

static void tls_shutdown(struct ferry_conn *c)
{
    if (c->tls_dead || !SSL_is_init_finished(c->ssl))
        return;
    if (tls_encrypt_stage(c) != 0)
        return;
    ERR_clear_error();
    (void)SSL_shutdown(c->ssl); /* queues close_notify; we do not wait for the peer's */
    ERR_clear_error();
}

static void tls_destroy(struct ferry_conn *c)
{
    SSL_free(c->ssl); /* frees both BIOs */
    c->ssl = NULL;
    c->rbio = NULL;
    c->wbio = NULL;
}

const struct conn_transport conn_tls_transport = {
    .start = tls_start,
    .input = tls_input,
    .resume = tls_resume,
    .send = tls_send,
    .collect = tls_collect,
    .queued = tls_queued,
    .shutdown = tls_shutdown,
    .destroy = tls_destroy,
};
