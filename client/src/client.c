/* client.c: client lifecycle, the I/O thread and its service pass, waits, and blocking operations. */
#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ferry_int.h"

/* ---- small helpers ---- */

int64_t ferry_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void ferry_strlcpy(char *dst, const char *src, size_t size)
{
    if (size == 0)
        return;
    size_t n = strlen(src);
    if (n >= size)
        n = size - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

void ferry_set_errstr(char *errstr, size_t size, const char *fmt, ...)
{
    if (errstr == NULL || size == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errstr, size, fmt, ap);
    va_end(ap);
}

void ferry_log(struct ferry_client *cl, int level, const char *fmt, ...)
{
    if (cl->log_cb == NULL)
        return;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    cl->log_cb(cl, level, buf, cl->opaque);
}

int64_t ferry_deadline(int timeout_ms)
{
    if (timeout_ms < 0)
        return -1;
    return ferry_now_ms() + timeout_ms;
}

int ferry_cond_wait_until(struct ferry_client *cl, int64_t deadline_ms)
{
    if (deadline_ms < 0)
        return pthread_cond_wait(&cl->cond, &cl->lock);
    struct timespec ts = {.tv_sec = deadline_ms / 1000, .tv_nsec = (deadline_ms % 1000) * 1000000};
    return pthread_cond_timedwait(&cl->cond, &cl->lock, &ts);
}

void ferry_wake_locked(struct ferry_client *cl)
{
    if (!cl->io_stopped)
        uv_async_send(&cl->wake);
}

/* ---- the service pass (I/O thread) ---- */

static void service(struct ferry_client *cl);

static void on_timer(uv_timer_t *t)
{
    service(t->data);
}

static void on_wake(uv_async_t *a)
{
    service(a->data);
}

static void on_kick(uv_idle_t *h)
{
    uv_idle_stop(h);
    service(h->data);
}

/*
 * Schedules a service pass on the next loop iteration (an idle handle: a 0 ms timer restarted from
 * a timer callback would make libuv run it again in the same timer phase, forever). Only events
 * call this (responses, connection changes), never the pass itself unconditionally, so the loop
 * cannot spin.
 */
void ferry_kick(struct ferry_client *cl)
{
    if (cl->stopping)
        return;
    uv_idle_start(&cl->kick, on_kick);
}

static void on_handle_closed(uv_handle_t *h)
{
    (void)h;
}

/* Stops everything: fails queued work, closes connections and the loop's own handles; uv_run
 * then returns once the last connection's on_close has run. */
static void begin_shutdown(struct ferry_client *cl)
{
    cl->stopping = true;
    ferry_ops_fail_all(cl, FERRY_ERR__DESTROYED, "client is closing");
    if (cl->type == FERRY_PRODUCER)
        ferry_producer_purge(cl, FERRY_ERR__PURGED);
    ferry_brokers_close_all(cl);
    pthread_mutex_lock(&cl->lock);
    cl->io_stopped = true;
    pthread_mutex_unlock(&cl->lock);
    uv_timer_stop(&cl->timer);
    uv_idle_stop(&cl->kick);
    uv_close((uv_handle_t *)&cl->timer, on_handle_closed);
    uv_close((uv_handle_t *)&cl->kick, on_handle_closed);
    uv_close((uv_handle_t *)&cl->wake, on_handle_closed);
}

static void service(struct ferry_client *cl)
{
    if (cl->stopping)
        return;
    int64_t now = ferry_now_ms();

    pthread_mutex_lock(&cl->lock);
    bool stop = cl->stop_io;
    /* Take submitted ops (append, keeping submission order). */
    struct op **tail = &cl->ops;
    while (*tail)
        tail = &(*tail)->next;
    *tail = cl->ops_in;
    cl->ops_in = NULL;
    pthread_mutex_unlock(&cl->lock);

    if (stop) {
        begin_shutdown(cl);
        return;
    }

    ferry_brokers_service(cl, now);
    if (cl->type == FERRY_PRODUCER)
        ferry_producer_service(cl, now);
    if (cl->type == FERRY_CONSUMER)
        ferry_consumer_service(cl, now);
    ferry_group_service(cl, now); /* group membership and group admin requests (any client type) */
    ferry_ops_service(cl, now);
    ferry_metadata_service(cl, now);

    if (cl->stopping)
        return;
    /* Next pass: the earliest future deadline; past ones wait for an event (a kick). */
    int64_t due = now + FERRY_HOUSEKEEPING_MS;
    if (cl->type == FERRY_PRODUCER) {
        int64_t p = ferry_producer_next_due(cl, now);
        if (p < due)
            due = p;
    }
    if (cl->md_needed && cl->md_retry_at_ms > now && cl->md_retry_at_ms < due)
        due = cl->md_retry_at_ms;
    int64_t delay = due > now ? due - now : 1; /* never 0: see ferry_kick */
    uv_timer_start(&cl->timer, on_timer, (uint64_t)delay, 0);
}

static void *io_main(void *arg)
{
    struct ferry_client *cl = arg;
    uv_idle_start(&cl->kick, on_kick);
    uv_run(&cl->loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&cl->loop);
    if (rc != 0)
        ferry_log(cl, FERRY_LOG_ERR, "event loop closed with handles still open: %s", uv_strerror(rc));
    assert(rc == 0);
    return NULL;
}

/* ---- lifecycle ---- */

static int client_validate(struct ferry_client *cl, char *errstr, size_t errstr_size)
{
    struct ferry_settings *s = &cl->s;
    if (s->bootstrap_servers[0] == '\0') {
        ferry_set_errstr(errstr, errstr_size, "bootstrap.servers is not set");
        return -1;
    }
    if (s->tls && s->ca_location[0] == '\0') {
        ferry_set_errstr(errstr, errstr_size,
                         "ssl.ca.location is required with security.protocol=tls (or set security.protocol=plaintext)");
        return -1;
    }
    if ((s->cert_location[0] == '\0') != (s->key_location[0] == '\0')) {
        ferry_set_errstr(errstr, errstr_size, "ssl.certificate.location and ssl.key.location go together");
        return -1;
    }
    return 0;
}

FERRY_API ferry_client_t *ferry_client_new(ferry_type_t type, ferry_conf_t *conf, char *errstr, size_t errstr_size)
{
    ferry_set_errstr(errstr, errstr_size, "%s", "");
    if (conf == NULL) {
        ferry_set_errstr(errstr, errstr_size, "conf must not be NULL");
        return NULL;
    }
    if (type != FERRY_PRODUCER && type != FERRY_CONSUMER && type != FERRY_ADMIN) {
        ferry_set_errstr(errstr, errstr_size, "unknown client type %d", (int)type);
        ferry_conf_destroy(conf);
        return NULL;
    }
    struct ferry_client *cl = calloc(1, sizeof *cl);
    if (cl == NULL) {
        ferry_set_errstr(errstr, errstr_size, "out of memory");
        ferry_conf_destroy(conf);
        return NULL;
    }
    cl->type = type;
    cl->delivery_cb = conf->delivery_cb;
    cl->log_cb = conf->log_cb;
    cl->opaque = conf->opaque;
    cl->controller_id = -1;
    cl->next_corr = 1;
    cl->next_partition_seed = ferry_wallclock_ms();
    int rc = ferry_settings_load(conf, &cl->s, errstr, errstr_size);
    ferry_conf_destroy(conf);
    if (rc != 0)
        goto err_free_client;
    if (client_validate(cl, errstr, errstr_size) != 0)
        goto err_free_settings;
    if (ferry_brokers_bootstrap(cl, cl->s.bootstrap_servers, errstr, errstr_size) != 0)
        goto err_free_brokers;

    if (cl->s.tls) {
        struct ferry_tls_config tc = {
            .ca_file = cl->s.ca_location,
            .cert_file = cl->s.cert_location[0] ? cl->s.cert_location : NULL,
            .key_file = cl->s.key_location[0] ? cl->s.key_location : NULL,
            .min_version_tls13 = 0,
        };
        char msg[256];
        cl->tls = ferry_tls_client_ctx_new(&tc, msg, sizeof msg);
        if (cl->tls == NULL) {
            ferry_set_errstr(errstr, errstr_size, "TLS setup: %s", msg);
            goto err_free_brokers;
        }
    }

    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    rc = pthread_cond_init(&cl->cond, &ca);
    pthread_condattr_destroy(&ca);
    if (rc != 0) {
        ferry_set_errstr(errstr, errstr_size, "pthread_cond_init: %s", strerror(rc));
        goto err_free_tls;
    }
    rc = pthread_mutex_init(&cl->lock, NULL);
    if (rc != 0) {
        ferry_set_errstr(errstr, errstr_size, "pthread_mutex_init: %s", strerror(rc));
        goto err_destroy_cond;
    }
    rc = uv_loop_init(&cl->loop);
    if (rc != 0) {
        ferry_set_errstr(errstr, errstr_size, "uv_loop_init: %s", uv_strerror(rc));
        goto err_destroy_mutex;
    }
    rc = uv_async_init(&cl->loop, &cl->wake, on_wake);
    if (rc != 0) {
        ferry_set_errstr(errstr, errstr_size, "uv_async_init: %s", uv_strerror(rc));
        goto err_close_loop;
    }
    cl->wake.data = cl;
    uv_timer_init(&cl->loop, &cl->timer);
    cl->timer.data = cl;
    uv_idle_init(&cl->loop, &cl->kick);
    cl->kick.data = cl;

    rc = pthread_create(&cl->thread, NULL, io_main, cl);
    if (rc != 0) {
        ferry_set_errstr(errstr, errstr_size, "pthread_create: %s", strerror(rc));
        goto err_close_handles;
    }
    cl->thread_started = true;
    return cl;

err_close_handles:
    uv_close((uv_handle_t *)&cl->wake, NULL);
    uv_close((uv_handle_t *)&cl->timer, NULL);
    uv_close((uv_handle_t *)&cl->kick, NULL);
    uv_run(&cl->loop, UV_RUN_DEFAULT);
err_close_loop:
    uv_loop_close(&cl->loop);
err_destroy_mutex:
    pthread_mutex_destroy(&cl->lock);
err_destroy_cond:
    pthread_cond_destroy(&cl->cond);
err_free_tls:
    ferry_tls_ctx_free(cl->tls);
err_free_brokers:
    ferry_brokers_free(cl);
err_free_settings:
    ferry_settings_free(&cl->s);
err_free_client:
    free(cl);
    return NULL;
}

/* Stops the I/O thread and joins it. serve: run remaining delivery callbacks here. */
static ferry_err_t client_close(struct ferry_client *cl, int timeout_ms, bool serve)
{
    pthread_mutex_lock(&cl->lock);
    if (cl->closed || cl->closing) {
        pthread_mutex_unlock(&cl->lock);
        return FERRY_ERR_NONE;
    }
    pthread_mutex_unlock(&cl->lock);

    ferry_err_t err = FERRY_ERR_NONE;
    if (cl->type == FERRY_PRODUCER && timeout_ms != 0)
        err = ferry_flush(cl, timeout_ms);
    if (cl->type == FERRY_CONSUMER && timeout_ms != 0)
        (void)ferry_consumer_close(cl, timeout_ms); /* leave the group now, not by session timeout */

    pthread_mutex_lock(&cl->lock);
    cl->closing = true;
    cl->stop_io = true;
    if (cl->outq > 0 && cl->type == FERRY_PRODUCER)
        err = FERRY_ERR__TIMED_OUT;
    ferry_wake_locked(cl);
    pthread_cond_broadcast(&cl->cond);
    pthread_mutex_unlock(&cl->lock);

    if (cl->thread_started) {
        pthread_join(cl->thread, NULL);
        cl->thread_started = false;
    }

    /* The I/O thread is gone: purged records' reports are queued; serve or drop them. */
    if (serve) {
        while (ferry_poll(cl, 0) > 0) {
        }
    }
    pthread_mutex_lock(&cl->lock);
    struct delivery_report *dr = cl->drs;
    cl->drs = cl->drs_tail = NULL;
    cl->outq = 0;
    cl->closed = true;
    pthread_cond_broadcast(&cl->cond);
    pthread_mutex_unlock(&cl->lock);
    while (dr) {
        struct delivery_report *next = dr->next;
        ferry_report_free(dr);
        dr = next;
    }
    return err;
}

FERRY_API ferry_err_t ferry_client_close(ferry_client_t *cl, int timeout_ms)
{
    if (cl == NULL)
        return FERRY_ERR__INVALID_ARG;
    return client_close(cl, timeout_ms, true);
}

FERRY_API void ferry_client_destroy(ferry_client_t *cl)
{
    if (cl == NULL)
        return;
    client_close(cl, 0, false);
    /* Nothing runs on the loop any more; free what the I/O thread owned. */
    struct op *ops = cl->ops;
    while (ops) {
        struct op *next = ops->next;
        ferry_op_free(ops);
        ops = next;
    }
    ferry_consumer_free(cl);
    ferry_topics_free(cl);
    ferry_brokers_free(cl);
    ferry_tls_ctx_free(cl->tls);
    ferry_producer_free_incoming(cl);
    ferry_settings_free(&cl->s);
    pthread_mutex_destroy(&cl->lock);
    pthread_cond_destroy(&cl->cond);
    free(cl);
}

FERRY_API ferry_type_t ferry_client_type(const ferry_client_t *cl)
{
    return cl->type;
}

/* ---- blocking operations ---- */

ferry_err_t ferry_op_run(struct ferry_client *cl, struct op *op, int timeout_ms, char *errstr, size_t errstr_size)
{
    int64_t deadline = ferry_deadline(timeout_ms);
    op->deadline_ms = deadline < 0 ? INT64_MAX : deadline;
    pthread_mutex_lock(&cl->lock);
    if (cl->closing || cl->closed) {
        pthread_mutex_unlock(&cl->lock);
        ferry_set_errstr(errstr, errstr_size, "client is closing");
        ferry_op_free(op);
        return FERRY_ERR__DESTROYED;
    }
    op->next = cl->ops_in;
    cl->ops_in = op;
    ferry_wake_locked(cl);
    while (!op->done) {
        if (ferry_cond_wait_until(cl, deadline) == ETIMEDOUT && !op->done) {
            /* The I/O thread frees the op when it completes it. */
            op->abandoned = true;
            ferry_set_errstr(errstr, errstr_size, "timed out after %d ms%s%s", timeout_ms,
                             cl->last_error[0] ? "; last connection error: " : "", cl->last_error);
            pthread_mutex_unlock(&cl->lock);
            return FERRY_ERR__TIMED_OUT;
        }
    }
    pthread_mutex_unlock(&cl->lock);
    ferry_err_t err = op->err;
    if (err != FERRY_ERR_NONE)
        ferry_set_errstr(errstr, errstr_size, "%s", op->errstr[0] ? op->errstr : ferry_err_str(err));
    else
        ferry_set_errstr(errstr, errstr_size, "%s", ""); /* no stale message from an earlier call */
    if (err == FERRY_ERR__TIMED_OUT || err == FERRY_ERR__DESTROYED)
        ferry_op_free(op); /* keeps the contract: on these two the op is gone */
    return err;
}

void ferry_op_complete(struct ferry_client *cl, struct op *op, ferry_err_t err, const char *fmt, ...)
{
    /* Unlink from the I/O thread's list. */
    for (struct op **pp = &cl->ops; *pp; pp = &(*pp)->next) {
        if (*pp == op) {
            *pp = op->next;
            break;
        }
    }
    op->next = NULL;
    pthread_mutex_lock(&cl->lock);
    if (op->abandoned) {
        pthread_mutex_unlock(&cl->lock);
        ferry_op_free(op);
        return;
    }
    op->err = err;
    if (fmt != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(op->errstr, sizeof op->errstr, fmt, ap);
        va_end(ap);
    } else {
        op->errstr[0] = '\0';
    }
    op->done = true;
    pthread_cond_broadcast(&cl->cond);
    pthread_mutex_unlock(&cl->lock);
}

void ferry_op_free(struct op *op)
{
    if (op == NULL)
        return;
    for (size_t i = 0; i < op->topic_count; i++)
        free(op->topics[i]);
    free(op->topics);
    for (size_t i = 0; i < op->config_count; i++) {
        free(op->config_keys[i]);
        free(op->config_values[i]);
    }
    free(op->config_keys);
    free(op->config_values);
    ferry_metadata_destroy(op->md);
    free(op);
}
