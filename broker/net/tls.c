/* tls.c: OpenSSL 3 contexts for the transport: TLS 1.3 (1.2 on request), verified peers, optional mTLS. */
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "conn_int.h"

/* errmsg = the formatted context, then ": " and the first error OpenSSL queued (its reason). */
__attribute__((format(printf, 3, 4))) static void tls_ctx_error(char *errmsg, size_t errmsg_len, const char *fmt, ...)
{
    if (errmsg == NULL || errmsg_len == 0) {
        ERR_clear_error();
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(errmsg, errmsg_len, fmt, ap);
    va_end(ap);
    unsigned long err = ERR_peek_error();
    if (err != 0 && n >= 0 && (size_t)n + 3 < errmsg_len) {
        char reason[256];
        ERR_error_string_n(err, reason, sizeof reason);
        snprintf(errmsg + n, errmsg_len - (size_t)n, ": %s", reason);
    }
    ERR_clear_error();
}

/* Settings both sides share. Returns a new SSL_CTX or NULL with errmsg. */
static SSL_CTX *tls_ctx_base(const SSL_METHOD *method, const struct ferry_tls_config *cfg, char *errmsg,
                             size_t errmsg_len)
{
    SSL_CTX *ctx = SSL_CTX_new(method);
    if (ctx == NULL) {
        tls_ctx_error(errmsg, errmsg_len, "TLS: create context");
        return NULL;
    }
    int min_version = cfg->min_version_tls13 ? TLS1_3_VERSION : TLS1_2_VERSION;
    if (SSL_CTX_set_min_proto_version(ctx, min_version) != 1) {
        tls_ctx_error(errmsg, errmsg_len, "TLS: set minimum protocol version");
        SSL_CTX_free(ctx);
        return NULL;
    }
    /* No renegotiation (TLS 1.2), no compression; we never resume sessions, so keep no cache. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    return ctx;
}

/* Loads our certificate chain and key and checks they belong together. Returns 0 or -1 with errmsg. */
static int tls_ctx_load_identity(SSL_CTX *ctx, const char *cert_file, const char *key_file, char *errmsg,
                                 size_t errmsg_len)
{
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
        tls_ctx_error(errmsg, errmsg_len, "TLS: load certificate chain %s", cert_file);
        return -1;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
        tls_ctx_error(errmsg, errmsg_len, "TLS: load private key %s", key_file);
        return -1;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        tls_ctx_error(errmsg, errmsg_len, "TLS: private key %s does not match certificate %s", key_file, cert_file);
        return -1;
    }
    return 0;
}

static int tls_ctx_load_ca(SSL_CTX *ctx, const char *ca_file, char *errmsg, size_t errmsg_len)
{
    if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
        tls_ctx_error(errmsg, errmsg_len, "TLS: load CA bundle %s", ca_file);
        return -1;
    }
    return 0;
}

static struct ferry_tls_ctx *tls_ctx_wrap(SSL_CTX *ctx, int is_server, char *errmsg, size_t errmsg_len)
{
    struct ferry_tls_ctx *t = calloc(1, sizeof *t);
    if (t == NULL) {
        snprintf(errmsg, errmsg_len, "TLS: out of memory");
        SSL_CTX_free(ctx);
        return NULL;
    }
    t->ssl_ctx = ctx;
    t->is_server = is_server;
    return t;
}

struct ferry_tls_ctx *ferry_tls_server_ctx_new(const struct ferry_tls_config *cfg, char *errmsg, size_t errmsg_len)
{
    if (cfg == NULL || cfg->cert_file == NULL) {
        snprintf(errmsg, errmsg_len, "TLS: a server needs a certificate (cert_file)");
        return NULL;
    }
    if (cfg->require_client_cert && cfg->ca_file == NULL) {
        snprintf(errmsg, errmsg_len, "TLS: requiring client certificates needs a CA bundle (ca_file)");
        return NULL;
    }
    SSL_CTX *ctx = tls_ctx_base(TLS_server_method(), cfg, errmsg, errmsg_len);
    if (ctx == NULL)
        return NULL;
    const char *key_file = cfg->key_file != NULL ? cfg->key_file : cfg->cert_file;
    if (tls_ctx_load_identity(ctx, cfg->cert_file, key_file, errmsg, errmsg_len) != 0)
        goto err_after_ctx;
    if (cfg->ca_file != NULL) {
        /* With a CA, client certificates are verified when sent; required with require_client_cert. */
        if (tls_ctx_load_ca(ctx, cfg->ca_file, errmsg, errmsg_len) != 0)
            goto err_after_ctx;
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cfg->ca_file);
        if (names == NULL) {
            tls_ctx_error(errmsg, errmsg_len, "TLS: read CA names from %s", cfg->ca_file);
            goto err_after_ctx;
        }
        SSL_CTX_set_client_CA_list(ctx, names);
        int mode = SSL_VERIFY_PEER;
        if (cfg->require_client_cert)
            mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
        SSL_CTX_set_verify(ctx, mode, NULL);
    }
    /* No TLS 1.3 session tickets: clients never resume, so they would be wasted work and bytes. */
    SSL_CTX_set_num_tickets(ctx, 0);
    return tls_ctx_wrap(ctx, 1, errmsg, errmsg_len);

err_after_ctx:
    SSL_CTX_free(ctx);
    return NULL;
}

struct ferry_tls_ctx *ferry_tls_client_ctx_new(const struct ferry_tls_config *cfg, char *errmsg, size_t errmsg_len)
{
    if (cfg == NULL || cfg->ca_file == NULL) {
        /* Never connect without verifying the server. */
        snprintf(errmsg, errmsg_len, "TLS: a client needs a CA bundle (ca_file) to verify the server");
        return NULL;
    }
    if (cfg->key_file != NULL && cfg->cert_file == NULL) {
        snprintf(errmsg, errmsg_len, "TLS: key_file given without cert_file");
        return NULL;
    }
    SSL_CTX *ctx = tls_ctx_base(TLS_client_method(), cfg, errmsg, errmsg_len);
    if (ctx == NULL)
        return NULL;
    if (tls_ctx_load_ca(ctx, cfg->ca_file, errmsg, errmsg_len) != 0)
        goto err_after_ctx;
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (cfg->cert_file != NULL) {
        const char *key_file = cfg->key_file != NULL ? cfg->key_file : cfg->cert_file;
        if (tls_ctx_load_identity(ctx, cfg->cert_file, key_file, errmsg, errmsg_len) != 0)
            goto err_after_ctx;
    }
    return tls_ctx_wrap(ctx, 0, errmsg, errmsg_len);

err_after_ctx:
    SSL_CTX_free(ctx);
    return NULL;
}

void ferry_tls_ctx_free(struct ferry_tls_ctx *ctx)
{
    if (ctx == NULL)
        return;
    SSL_CTX_free(ctx->ssl_ctx);
    free(ctx);
}
