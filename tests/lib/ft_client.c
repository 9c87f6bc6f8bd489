/* ft_client.c: libferry configurations and clients pointed at a fixture broker. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferrytest.h"

static int set(ferry_conf_t *conf, const char *key, const char *value, char *errmsg, size_t errmsg_len)
{
    char err[512] = "";
    ferry_err_t e = ferry_conf_set(conf, key, value, err, sizeof(err));
    if (e != FERRY_ERR_NONE) {
        snprintf(errmsg, errmsg_len, "ferry_conf_set %s=%s: %s (%s)", key, value, err, ferry_err_name(e));
        return -1;
    }
    return 0;
}

ferry_conf_t *ft_conf(const struct ft_broker *b, const char *const *kv, char *errmsg, size_t errmsg_len)
{
    ferry_conf_t *conf = ferry_conf_new();
    if (!conf) {
        snprintf(errmsg, errmsg_len, "ferry_conf_new: out of memory");
        return NULL;
    }
    char path[400];
    if (set(conf, "bootstrap.servers", b->addr, errmsg, errmsg_len) != 0)
        goto err_conf;
    if (set(conf, "client.id", "ferrytest", errmsg, errmsg_len) != 0)
        goto err_conf;
    if (b->opts.security == FT_PLAINTEXT) {
        if (set(conf, "security.protocol", "plaintext", errmsg, errmsg_len) != 0)
            goto err_conf;
    } else {
        if (set(conf, "security.protocol", "tls", errmsg, errmsg_len) != 0)
            goto err_conf;
        if (set(conf, "ssl.ca.location", ft_cert("ca.crt", path, sizeof(path)), errmsg, errmsg_len) != 0)
            goto err_conf;
        if (b->opts.security == FT_MTLS) {
            if (set(conf, "ssl.certificate.location", ft_cert("client.crt", path, sizeof(path)), errmsg,
                    errmsg_len) != 0)
                goto err_conf;
            if (set(conf, "ssl.key.location", ft_cert("client.key", path, sizeof(path)), errmsg, errmsg_len) != 0)
                goto err_conf;
        }
    }
    for (size_t i = 0; kv && kv[i]; i += 2) {
        if (!kv[i + 1]) {
            snprintf(errmsg, errmsg_len, "ft_conf: key %s without a value", kv[i]);
            goto err_conf;
        }
        if (set(conf, kv[i], kv[i + 1], errmsg, errmsg_len) != 0)
            goto err_conf;
    }
    return conf;

err_conf:
    ferry_conf_destroy(conf);
    return NULL;
}

ferry_client_t *ft_client(const struct ft_broker *b, ferry_type_t type, const char *const *kv, char *errmsg,
                          size_t errmsg_len)
{
    ferry_conf_t *conf = ft_conf(b, kv, errmsg, errmsg_len);
    if (!conf)
        return NULL;
    char err[512] = "";
    ferry_client_t *c = ferry_client_new(type, conf, err, sizeof(err)); /* consumes conf */
    if (!c)
        snprintf(errmsg, errmsg_len, "ferry_client_new: %s", err);
    return c;
}

void ft_delivery_cb(ferry_client_t *client, const ferry_delivery_t *d, void *opaque)
{
    (void)client;
    struct ft_deliveries *log = opaque;
    if (log->n == log->cap) {
        size_t cap = log->cap ? log->cap * 2 : 1024;
        struct ft_delivery *nv = realloc(log->v, cap * sizeof(*nv));
        if (!nv) {
            fprintf(stderr, "ft_delivery_cb: out of memory; report lost\n");
            abort();
        }
        log->v = nv;
        log->cap = cap;
    }
    log->v[log->n++] = (struct ft_delivery){d->err, d->partition, d->offset, d->opaque};
    if (d->err != FERRY_ERR_NONE)
        log->failed++;
}

void ft_conf_record_deliveries(ferry_conf_t *conf, struct ft_deliveries *log)
{
    ferry_conf_set_delivery_cb(conf, ft_delivery_cb);
    ferry_conf_set_opaque(conf, log);
}

void ft_deliveries_free(struct ft_deliveries *log)
{
    free(log->v);
    memset(log, 0, sizeof(*log));
}

int ft_consume(const struct ft_broker *b, const char *topic, int32_t partition, int64_t from, size_t n,
               ferry_message_t **out, const char *const *kv, int timeout_ms, char *errmsg, size_t errmsg_len)
{
    ferry_client_t *c = ft_client(b, FERRY_CONSUMER, kv, errmsg, errmsg_len);
    if (!c)
        return -1;
    size_t got = 0;
    ferry_topic_partition_t tp = {topic, partition, from};
    ferry_err_t e = ferry_assign(c, &tp, 1);
    if (e != FERRY_ERR_NONE) {
        snprintf(errmsg, errmsg_len, "ferry_assign: %s", ferry_err_name(e));
        goto err_client;
    }
    int64_t deadline = ft_now_ms() + ft_ms(timeout_ms);
    while (got < n) {
        int64_t left = deadline - ft_now_ms();
        if (left <= 0) {
            snprintf(errmsg, errmsg_len, "%s/%d from %lld: %zu of %zu messages after %d ms", topic, partition,
                     (long long)from, got, n, ft_ms(timeout_ms));
            goto err_client;
        }
        ferry_message_t *m = ferry_consumer_poll(c, (int)(left > 500 ? 500 : left));
        if (!m)
            continue;
        if (ferry_message_err(m) != FERRY_ERR_NONE) {
            snprintf(errmsg, errmsg_len, "%s/%d: error event %s: %s", topic, partition,
                     ferry_err_name(ferry_message_err(m)),
                     ferry_message_errstr(m) ? ferry_message_errstr(m) : "");
            ferry_message_destroy(m);
            goto err_client;
        }
        if (ferry_message_partition(m) != partition || strcmp(ferry_message_topic(m), topic) != 0) {
            snprintf(errmsg, errmsg_len, "message of %s/%d while reading %s/%d", ferry_message_topic(m),
                     ferry_message_partition(m), topic, partition);
            ferry_message_destroy(m);
            goto err_client;
        }
        out[got++] = m;
    }
    ferry_client_close(c, ft_ms(5000));
    ferry_client_destroy(c);
    return 0;

err_client:
    while (got > 0)
        ferry_message_destroy(out[--got]);
    ferry_client_destroy(c);
    return -1;
}
