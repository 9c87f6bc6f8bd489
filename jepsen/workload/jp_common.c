/* jp_common.c: history lines, the monotonic clock and client options shared by the workload programs. */
#include "jp_common.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

volatile sig_atomic_t jp_stop;

static void on_stop_signal(int sig)
{
    (void)sig;
    jp_stop = 1;
}

void jp_install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

double jp_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void jp_sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR && !jp_stop) {
    }
}

int jp_hist_open(struct jp_hist *h, const char *path, char *errmsg, size_t errmsg_len)
{
    memset(h, 0, sizeof *h);
    if (path == NULL || strcmp(path, "-") == 0) {
        h->out = stdout;
        return 0;
    }
    h->out = fopen(path, "a");
    if (h->out == NULL) {
        snprintf(errmsg, errmsg_len, "history %s: %s", path, strerror(errno));
        return -1;
    }
    h->owned = 1;
    return 0;
}

int jp_hist_close(struct jp_hist *h, char *errmsg, size_t errmsg_len)
{
    if (h->out == NULL)
        return 0;
    if (fflush(h->out) != 0)
        h->failed = 1;
    if (h->owned && fclose(h->out) != 0)
        h->failed = 1;
    h->out = NULL;
    if (h->failed) {
        snprintf(errmsg, errmsg_len, "history: a write failed; the history is incomplete");
        return -1;
    }
    return 0;
}

FILE *jp_line_begin(struct jp_hist *h, double t, const char *process, const char *type, const char *f)
{
    h->buf = NULL;
    h->buf_len = 0;
    h->line = open_memstream(&h->buf, &h->buf_len);
    if (h->line == NULL) {
        h->failed = 1;
        return NULL;
    }
    fprintf(h->line, "{\"time\":%.6f,\"process\":", t);
    jp_json_str(h->line, process, strlen(process));
    fprintf(h->line, ",\"type\":\"%s\",\"f\":\"%s\"", type, f);
    return h->line;
}

void jp_line_end(struct jp_hist *h)
{
    if (h->line == NULL)
        return;
    fputs("}\n", h->line);
    if (fclose(h->line) != 0) {
        h->failed = 1;
    } else if (fwrite(h->buf, 1, h->buf_len, h->out) != h->buf_len || fflush(h->out) != 0) {
        h->failed = 1;
    }
    free(h->buf);
    h->buf = NULL;
    h->line = NULL;
}

void jp_json_str(FILE *f, const void *s, size_t len)
{
    if (s == NULL) {
        fputs("null", f);
        return;
    }
    const unsigned char *p = s;
    fputc('"', f);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = p[i];
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c >= 0x20 && c < 0x7f)
            fputc(c, f);
        else
            fprintf(f, "\\u%04x", c);
    }
    fputc('"', f);
}

void jp_json_err(FILE *f, ferry_err_t err, const char *msg)
{
    char buf[1024];
    snprintf(buf, sizeof buf, "%s: %s", ferry_err_name(err), msg && msg[0] ? msg : ferry_err_str(err));
    jp_json_str(f, buf, strlen(buf));
}

int jp_parse_i64(const char *s, int64_t min, int64_t max, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

int jp_parse_seconds(const char *s, double max, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !isfinite(v) || v < 0 || v > max)
        return -1;
    *out = v;
    return 0;
}

int jp_conn_opt(struct jp_conn *c, int opt, const char *arg, char *errmsg, size_t errmsg_len)
{
    switch (opt) {
    case JP_OPT_BROKERS:
        c->brokers = arg;
        return 1;
    case JP_OPT_CA:
        c->ca = arg;
        return 1;
    case JP_OPT_CERT:
        c->cert = arg;
        return 1;
    case JP_OPT_KEY:
        c->key = arg;
        return 1;
    case JP_OPT_PLAINTEXT:
        c->plaintext = 1;
        return 1;
    case JP_OPT_DEBUG:
        c->debug = 1;
        return 1;
    case JP_OPT_SET:
        if (strchr(arg, '=') == NULL) {
            snprintf(errmsg, errmsg_len, "--set %s: expected KEY=VALUE", arg);
            return -1;
        }
        if (c->n_sets >= JP_MAX_SETS) {
            snprintf(errmsg, errmsg_len, "--set: at most %d settings", JP_MAX_SETS);
            return -1;
        }
        c->sets[c->n_sets++] = arg;
        return 1;
    default:
        return 0;
    }
}

static void on_log(const ferry_client_t *client, int level, const char *msg, void *opaque)
{
    (void)client;
    (void)opaque;
    fprintf(stderr, "libferry[%d]: %s\n", level, msg);
}

static int conf_set(ferry_conf_t *conf, const char *key, const char *value, char *errmsg, size_t errmsg_len)
{
    char err[512];
    if (ferry_conf_set(conf, key, value, err, sizeof err) != FERRY_ERR_NONE) {
        snprintf(errmsg, errmsg_len, "%s", err);
        return -1;
    }
    return 0;
}

ferry_conf_t *jp_conf_new(const struct jp_conn *c, const char *const *defaults, char *errmsg, size_t errmsg_len)
{
    if (c->brokers == NULL) {
        snprintf(errmsg, errmsg_len, "--brokers is required");
        return NULL;
    }
    ferry_conf_t *conf = ferry_conf_new();
    if (conf == NULL) {
        snprintf(errmsg, errmsg_len, "out of memory");
        return NULL;
    }
    if (conf_set(conf, "bootstrap.servers", c->brokers, errmsg, errmsg_len) != 0 ||
        conf_set(conf, "security.protocol", c->plaintext ? "plaintext" : "tls", errmsg, errmsg_len) != 0)
        goto err_after_conf;
    if (c->ca && conf_set(conf, "ssl.ca.location", c->ca, errmsg, errmsg_len) != 0)
        goto err_after_conf;
    if (c->cert && conf_set(conf, "ssl.certificate.location", c->cert, errmsg, errmsg_len) != 0)
        goto err_after_conf;
    if (c->key && conf_set(conf, "ssl.key.location", c->key, errmsg, errmsg_len) != 0)
        goto err_after_conf;
    for (size_t i = 0; defaults && defaults[i] && defaults[i + 1]; i += 2)
        if (conf_set(conf, defaults[i], defaults[i + 1], errmsg, errmsg_len) != 0)
            goto err_after_conf;
    for (int i = 0; i < c->n_sets; i++) {
        char key[256];
        const char *eq = strchr(c->sets[i], '=');
        size_t kl = (size_t)(eq - c->sets[i]);
        if (kl == 0 || kl >= sizeof key) {
            snprintf(errmsg, errmsg_len, "--set %s: bad key", c->sets[i]);
            goto err_after_conf;
        }
        memcpy(key, c->sets[i], kl);
        key[kl] = '\0';
        if (conf_set(conf, key, eq + 1, errmsg, errmsg_len) != 0)
            goto err_after_conf;
    }
    if (c->debug)
        ferry_conf_set_log_cb(conf, on_log);
    return conf;

err_after_conf:
    ferry_conf_destroy(conf);
    return NULL;
}
