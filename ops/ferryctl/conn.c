/* conn.c: turns ferryctl's global settings into a libferry configuration and a client. */
#include <stdio.h>
#include <string.h>

#include "ferryctl.h"

/* libferry setting names ferryctl fills from its flags (client/src/conf.c, ferry_conf_describe). */
#define KEY_BROKERS "bootstrap.servers"
#define KEY_SECURITY "security.protocol"
#define KEY_CA "ssl.ca.location"
#define KEY_CERT "ssl.certificate.location"
#define KEY_KEY "ssl.key.location"
#define KEY_CLIENT_ID "client.id"

static int conf_set(ferry_conf_t *conf, const char *key, const char *val, char *errmsg, size_t errlen)
{
    char err[512];
    ferry_err_t e = ferry_conf_set(conf, key, val, err, sizeof(err));
    if (e != FERRY_ERR_NONE) {
        snprintf(errmsg, errlen, "%s", err[0] ? err : ferry_err_str(e));
        return -1;
    }
    return 0;
}

/* --verbose: libferry's log lines, from its I/O thread; one fprintf per line keeps them whole. */
static void log_to_stderr(const ferry_client_t *client, int level, const char *msg, void *opaque)
{
    (void)client;
    (void)opaque;
    const char *lv = level <= FERRY_LOG_ERR ? "error" : level <= FERRY_LOG_WARNING ? "warning"
                     : level <= FERRY_LOG_INFO ? "info" : "debug";
    fprintf(stderr, "libferry %s: %s\n", lv, msg);
}

ferry_conf_t *ctl_make_conf(const struct ctl *ctl, char *errmsg, size_t errlen)
{
    ferry_conf_t *conf = ferry_conf_new();
    if (!conf) {
        snprintf(errmsg, errlen, "out of memory");
        return NULL;
    }
    if (conf_set(conf, KEY_BROKERS, ctl->brokers, errmsg, errlen) != 0)
        goto err_conf;
    if (conf_set(conf, KEY_SECURITY, ctl->plaintext ? "plaintext" : "tls", errmsg, errlen) != 0)
        goto err_conf;
    if (ctl->ca && conf_set(conf, KEY_CA, ctl->ca, errmsg, errlen) != 0)
        goto err_conf;
    if (ctl->cert && conf_set(conf, KEY_CERT, ctl->cert, errmsg, errlen) != 0)
        goto err_conf;
    if (ctl->key && conf_set(conf, KEY_KEY, ctl->key, errmsg, errlen) != 0)
        goto err_conf;
    if (ctl->verbose)
        ferry_conf_set_log_cb(conf, log_to_stderr);
    /* Best effort: a library without client.id is still usable. */
    (void)ferry_conf_set(conf, KEY_CLIENT_ID, "ferryctl", NULL, 0);
    /* -X last: it may override anything above. */
    for (size_t i = 0; i < ctl->nsettings; i++)
        if (conf_set(conf, ctl->settings[i].key, ctl->settings[i].val, errmsg, errlen) != 0)
            goto err_conf;
    return conf;

err_conf:
    ferry_conf_destroy(conf);
    return NULL;
}

int ctl_connect(const struct ctl *ctl, ferry_type_t type, ferry_client_t **out)
{
    char err[512];
    ferry_conf_t *conf = ctl_make_conf(ctl, err, sizeof(err));
    if (!conf) {
        usage_error(ctl, "%s", err);
        return EXIT_USAGE;
    }
    return ctl_client_new(ctl, type, conf, out);
}

int ctl_client_new(const struct ctl *ctl, ferry_type_t type, ferry_conf_t *conf, ferry_client_t **out)
{
    char err[512] = "";
    ferry_client_t *c = ferry_client_new(type, conf, err, sizeof(err));
    if (!c) {
        report_error(ctl, FERRY_ERR__INVALID_ARG, "cannot create the client: %s", err);
        return EXIT_FAIL;
    }
    *out = c;
    return EXIT_OK;
}
