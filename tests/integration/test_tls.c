/* test_tls.c: TLS against a real ferryd: untrusted peers and missing client certificates are refused, and
 * libferry reports such refusals at once with a specific error instead of timing out. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "ferrytest.h"

static struct ft_broker B;
static char E[FT_ERRMSG];

static void teardown(void) { ft_broker_destroy(&B); }

TestSuite(tls, .fini = teardown, .timeout = 120);

static void start(enum ft_security sec)
{
    ft_seed_reset();
    struct ft_broker_opts o = {.security = sec};
    FT_ASSERT(ft_broker_start(&B, &o, E, sizeof(E)) == 0, "%s", E);
}

/* ApiVersions on c: FT_RAW_FRAME with error 0 when served; otherwise the FT_RAW_* result. */
static int try_api_versions(struct ft_raw *c)
{
    struct ft_req req;
    struct ft_resp resp;
    size_t len;
    ft_req_api_versions(&req, 1);
    const uint8_t *f = ft_req_frame(&req, &len);
    int r = FT_RAW_CLOSED;
    if (ft_raw_send(c, f, len) == 0) {
        r = ft_raw_recv_resp(c, &resp, E, sizeof(E));
        if (r == FT_RAW_FRAME)
            FT_ASSERT_EQ(resp.error, 0, "ApiVersions error");
        ft_resp_free(&resp);
    }
    ft_req_free(&req);
    return r;
}

/* A correctly configured raw client is served (the broker is fine after whatever came before). */
static void assert_good_client_served(void)
{
    FT_ASSERT(ft_broker_alive(&B), "ferryd is alive");
    struct ft_raw c;
    FT_ASSERT(ft_raw_connect_broker(&c, &B, E, sizeof(E)) == 0, "%s", E);
    FT_ASSERT_EQ(try_api_versions(&c), FT_RAW_FRAME, "good client served");
    ft_raw_close(&c);
}

/* A libferry admin call with extra conf; returns its error (the call is bounded). */
static ferry_err_t libferry_describe(const char *const *kv, char *errstr, size_t errlen)
{
    ferry_conf_t *conf = ft_conf(&B, kv, E, sizeof(E));
    FT_ASSERT(conf != NULL, "%s", E);
    char err[512] = "";
    ferry_client_t *c = ferry_client_new(FERRY_ADMIN, conf, err, sizeof(err));
    FT_ASSERT(c != NULL, "ferry_client_new: %s", err);
    ferry_metadata_t *md = NULL;
    int64_t t0 = ft_now_ms();
    ferry_err_t e = ferry_admin_describe_cluster(c, NULL, 0, &md, ft_ms(4000), errstr, errlen);
    int64_t took = ft_now_ms() - t0;
    fprintf(stderr, "tls: describe -> %s after %lld ms: %s\n", ferry_err_name(e), (long long)took, errstr);
    ferry_metadata_destroy(md);
    ferry_client_destroy(c);
    return e;
}

/*
 * A refusal that retrying cannot fix fails the call with code `want` well before its timeout (a
 * wait until the timeout would give _TIMED_OUT), and the message names the broker and the cause:
 * "127.0.0.1:PORT: <cause>...".
 */
static void assert_refused(ferry_err_t e, const char *errstr, ferry_err_t want, const char *cause, const char *what)
{
    FT_ASSERT_ERR(e, want, "%s: %s", what, errstr);
    char prefix[128];
    snprintf(prefix, sizeof(prefix), "%s: ", B.addr);
    FT_ASSERT(strncmp(errstr, prefix, strlen(prefix)) == 0, "%s: message names the broker: %s", what, errstr);
    FT_ASSERT(strstr(errstr, cause) != NULL, "%s: message says '%s': %s", what, cause, errstr);
}

static const char *const FAST[] = {"socket.connection.setup.timeout.ms", "1500", NULL};

Test(tls, server_signed_by_another_ca_is_refused)
{
    start(FT_TLS);
    char other[400], sys[] = "/etc/ssl/certs/ca-certificates.crt";
    struct ft_raw c;
    struct ft_raw_tls t = {ft_cert("other-ca.crt", other, sizeof(other)), NULL, NULL};
    FT_ASSERT(ft_raw_connect(&c, B.host, B.port, &t, 5000, E, sizeof(E)) != 0, "handshake trusting other-ca");
    FT_ASSERT(strstr(E, "certificate verify failed") != NULL, "reason: %s", E);
    /* The system trust store does not know the development CA either. */
    struct ft_raw_tls t2 = {sys, NULL, NULL};
    FT_ASSERT(ft_raw_connect(&c, B.host, B.port, &t2, 5000, E, sizeof(E)) != 0, "handshake with the system CAs");

    /* libferry: wrong CA, and no CA (system default). */
    const char *kv[] = {"ssl.ca.location", other, "socket.connection.setup.timeout.ms", "1500", NULL};
    char errstr[512] = "";
    ferry_err_t e = libferry_describe(kv, errstr, sizeof(errstr));
    assert_refused(e, errstr, FERRY_ERR__TLS, "TLS: certificate verify failed: ", "libferry trusting other-ca");
    const char *kv2[] = {"ssl.ca.location", sys, "socket.connection.setup.timeout.ms", "1500", NULL};
    e = libferry_describe(kv2, errstr, sizeof(errstr));
    assert_refused(e, errstr, FERRY_ERR__TLS, "TLS: certificate verify failed: ", "libferry with the system CAs");

    /* And the right CA works, through both; success clears the earlier call's message. */
    assert_good_client_served();
    e = libferry_describe(FAST, errstr, sizeof(errstr));
    FT_ASSERT_ERR(e, FERRY_ERR_NONE, "libferry with ca.crt: %s", errstr);
    FT_ASSERT_EQ(errstr[0], '\0', "errstr cleared on success, still holds: %s", errstr);
    FT_ASSERT_EQ(ft_broker_stop(&B), 0, "clean stop");
}

Test(tls, mutual_tls_requires_a_client_certificate)
{
    start(FT_MTLS);
    char ca[400], cert[400], key[400], ocert[400], okey[400];
    ft_cert("ca.crt", ca, sizeof(ca));
    ft_cert("client.crt", cert, sizeof(cert));
    ft_cert("client.key", key, sizeof(key));
    ft_cert("other-server.crt", ocert, sizeof(ocert));
    ft_cert("other-server.key", okey, sizeof(okey));

    /* No certificate: refused (in TLS 1.3 the refusal may come after the client's handshake ends). */
    struct ft_raw c;
    struct ft_raw_tls none = {ca, NULL, NULL};
    if (ft_raw_connect(&c, B.host, B.port, &none, 5000, E, sizeof(E)) == 0) {
        int r = try_api_versions(&c);
        FT_ASSERT(r != FT_RAW_FRAME, "a client without a certificate was served");
        ft_raw_close(&c);
    }
    /* A certificate from another CA: refused. */
    struct ft_raw_tls other = {ca, ocert, okey};
    if (ft_raw_connect(&c, B.host, B.port, &other, 5000, E, sizeof(E)) == 0) {
        int r = try_api_versions(&c);
        FT_ASSERT(r != FT_RAW_FRAME, "a client certificate from another CA was accepted");
        ft_raw_close(&c);
    }
    /* client.crt: served. */
    struct ft_raw_tls good = {ca, cert, key};
    FT_ASSERT(ft_raw_connect(&c, B.host, B.port, &good, 5000, E, sizeof(E)) == 0, "%s", E);
    FT_ASSERT_EQ(try_api_versions(&c), FT_RAW_FRAME, "client with client.crt");
    ft_raw_close(&c);

    /* libferry: with the certificate (ft_conf adds it for FT_MTLS) it works ... */
    char errstr[512] = "";
    ferry_err_t e = libferry_describe(FAST, errstr, sizeof(errstr));
    FT_ASSERT_ERR(e, FERRY_ERR_NONE, "libferry with client.crt: %s", errstr);
    /* ... and without one it fails cleanly. */
    B.opts.security = FT_TLS; /* ft_conf then leaves the certificate out */
    e = libferry_describe(FAST, errstr, sizeof(errstr));
    B.opts.security = FT_MTLS;
    /* TLS 1.3: the broker refuses after the client's side of the handshake, with an alert. */
    assert_refused(e, errstr, FERRY_ERR__TLS, "TLS: ", "libferry without a certificate");

    assert_good_client_served();
    FT_ASSERT_EQ(ft_broker_stop(&B), 0, "clean stop");
}

Test(tls, plaintext_client_against_tls_broker_fails_cleanly)
{
    start(FT_TLS);
    /* Raw: a plaintext request gets no response frame; the broker closes (possibly after an alert). */
    struct ft_raw c;
    FT_ASSERT(ft_raw_connect(&c, B.host, B.port, NULL, 5000, E, sizeof(E)) == 0, "%s", E);
    int r = try_api_versions(&c);
    FT_ASSERT(r == FT_RAW_CLOSED || r == FT_RAW_BAD, "plaintext request to a TLS broker: result %d", r);
    ft_raw_close(&c);

    /* libferry configured for plaintext: an error within the call's timeout, no hang, no crash. */
    B.opts.security = FT_PLAINTEXT;
    char errstr[512] = "";
    ferry_err_t e = libferry_describe(FAST, errstr, sizeof(errstr));
    B.opts.security = FT_TLS;
    assert_refused(e, errstr, FERRY_ERR__TRANSPORT, "connection closed during handshake: is the broker using TLS?",
                   "libferry plaintext against TLS");

    assert_good_client_served();
    FT_ASSERT_EQ(ft_broker_stop(&B), 0, "clean stop");
}

Test(tls, tls_client_against_plaintext_broker_fails_cleanly)
{
    start(FT_PLAINTEXT);
    char ca[400];
    struct ft_raw c;
    struct ft_raw_tls t = {ft_cert("ca.crt", ca, sizeof(ca)), NULL, NULL};
    FT_ASSERT(ft_raw_connect(&c, B.host, B.port, &t, 5000, E, sizeof(E)) != 0, "TLS handshake with a plaintext broker");
    /* A plaintext client is served. */
    FT_ASSERT(ft_raw_connect(&c, B.host, B.port, NULL, 5000, E, sizeof(E)) == 0, "%s", E);
    FT_ASSERT_EQ(try_api_versions(&c), FT_RAW_FRAME, "plaintext client served");
    ft_raw_close(&c);
    FT_ASSERT_EQ(ft_broker_stop(&B), 0, "clean stop");
}

/* flush fails at once with the refusal, leaving the record queued; close then purges it. */
Test(tls, flush_fails_fast_when_every_broker_refuses_tls)
{
    start(FT_TLS);
    char other[400];
    const char *kv[] = {"ssl.ca.location", ft_cert("other-ca.crt", other, sizeof(other)), "linger.ms", "0", NULL};
    ferry_conf_t *conf = ft_conf(&B, kv, E, sizeof(E));
    FT_ASSERT(conf != NULL, "%s", E);
    struct ft_deliveries log = {0};
    ft_conf_record_deliveries(conf, &log);
    char err[512] = "";
    ferry_client_t *p = ferry_client_new(FERRY_PRODUCER, conf, err, sizeof(err));
    FT_ASSERT(p != NULL, "ferry_client_new: %s", err);
    ferry_record_t rec = {.topic = "tls-refused", .partition = FERRY_PARTITION_ANY, .value = "v", .value_len = 1};
    FT_ASSERT_ERR(ferry_produce(p, &rec, 0), FERRY_ERR_NONE, "produce");
    FT_ASSERT_ERR(ferry_flush(p, ft_ms(4000)), FERRY_ERR__TLS, "flush against a broker whose certificate is refused");
    FT_ASSERT_EQ(ferry_outq_len(p), 1, "the record is still queued");
    FT_ASSERT_ERR(ferry_client_close(p, 0), FERRY_ERR__TIMED_OUT, "close without waiting, a record outstanding");
    FT_ASSERT_EQ(log.n, 1, "one report");
    FT_ASSERT_ERR(log.v[0].err, FERRY_ERR__PURGED, "the record is purged by close");
    ferry_client_destroy(p);
    ft_deliveries_free(&log);
    FT_ASSERT_EQ(ft_broker_stop(&B), 0, "clean stop");
}

/* A retriable failure (nothing listening) is retried until the call's timeout. */
Test(tls, refused_tcp_connections_are_retried_until_the_timeout)
{
    start(FT_TLS);
    FT_ASSERT_EQ(ft_broker_stop(&B), 0, "clean stop");
    char errstr[512] = "";
    ferry_err_t e = libferry_describe(FAST, errstr, sizeof(errstr));
    FT_ASSERT_ERR(e, FERRY_ERR__TIMED_OUT, "describe with the broker down: %s", errstr);
    FT_ASSERT(strstr(errstr, "connection refused") != NULL, "the message carries the last error: %s", errstr);
}
