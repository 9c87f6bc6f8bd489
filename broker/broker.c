/* broker.c: the broker's life: start-up (registry, TLS, listener, timers) and the graceful stop sequence. */
#include "broker.h"

#include <string.h>
#include <unistd.h>

#include "cluster/cluster.h"
#include "groups/coordinator.h"
#include "logging.h"

/* Segment age is checked once a second: segment.ms has one-second granularity. */
#define ROLL_CHECK_MS 1000

static void for_roll(struct ferryd_partition *p, void *arg)
{
    (void)arg;
    ferryd_partition_housekeeping(p, 0);
}

static void for_retention(struct ferryd_partition *p, void *arg)
{
    (void)arg;
    ferryd_partition_housekeeping(p, 1);
}

static void on_roll_timer(uv_timer_t *t)
{
    struct ferryd *b = t->data;
    ferryd_topics_for_each_partition(b->topics, for_roll, NULL);
}

static void on_retention_timer(uv_timer_t *t)
{
    struct ferryd *b = t->data;
    ferryd_topics_for_each_partition(b->topics, for_retention, NULL);
}

static void on_sync_idle(void *arg)
{
    ferryd_stop_progress(arg);
}

static void on_cluster_abandoned(void *arg)
{
    (void)arg;
}

static void on_cluster_stopped(void *arg)
{
    struct ferryd *b = arg;
    b->cluster = NULL;
    b->cluster_stopped = 1;
    ferryd_stop_progress(b);
}

int ferryd_start(struct ferryd *b, uv_loop_t *loop, const struct ferryd_config *cfg, char *errmsg,
                 size_t errmsg_len)
{
    struct ferry_log_config lc;
    char why[512];

    memset(b, 0, sizeof(*b));
    b->loop = loop;
    b->cfg = cfg;
    ferryd_config_log_config(cfg, &lc);
    if (ferryd_topics_open(loop, cfg->data_dir, &lc, &b->topics, why, sizeof(why)) != 0) {
        snprintf(errmsg, errmsg_len, "data.dir %s: %s", cfg->data_dir, why);
        return -1;
    }
    struct ferryd_partition_env *env = ferryd_topics_env(b->topics);
    env->on_sync_idle = on_sync_idle;
    env->on_sync_idle_arg = b;

    if (cfg->security_protocol == FERRYD_SECURITY_TLS) {
        struct ferry_tls_config tc = {
            .ca_file = cfg->tls_ca_file[0] ? cfg->tls_ca_file : NULL,
            .cert_file = cfg->tls_cert_file,
            .key_file = cfg->tls_key_file,
            .require_client_cert = cfg->tls_client_auth == FERRYD_CLIENT_AUTH_REQUIRED,
            .min_version_tls13 = cfg->tls_min_version == FERRYD_TLS_13,
        };
        b->tls = ferry_tls_server_ctx_new(&tc, why, sizeof(why));
        if (b->tls == NULL) {
            snprintf(errmsg, errmsg_len, "%s", why);
            goto err_after_topics;
        }
    } else {
        LOG_WARN("security.protocol=plaintext: connections are neither encrypted nor authenticated");
    }

    if (ferryd_server_listen(b, why, sizeof(why)) != 0) {
        snprintf(errmsg, errmsg_len, "%s", why);
        goto err_after_listen;
    }

    if (cfg->cluster_members[0] != '\0') {
        char peer_host[256];
        int peer_port;
        if (ferryd_cluster_start(b, &b->cluster, why, sizeof(why)) != 0) {
            snprintf(errmsg, errmsg_len, "%s", why);
            goto err_after_listen;
        }
        ferryd_split_hostport(cfg->peer_listen, peer_host, sizeof(peer_host), &peer_port);
        if (ferryd_server_write_ready(b, peer_host, ferryd_cluster_peer_port(b->cluster), why, sizeof(why)) != 0) {
            snprintf(errmsg, errmsg_len, "%s", why);
            goto err_after_cluster;
        }
    } else if (ferryd_server_write_ready(b, NULL, 0, why, sizeof(why)) != 0) {
        snprintf(errmsg, errmsg_len, "%s", why);
        goto err_after_listen;
    }

    if (ferryd_coord_create(b, &b->coord, why, sizeof(why)) != 0) {
        snprintf(errmsg, errmsg_len, "%s", why);
        goto err_after_cluster_or_listen;
    }

    uv_timer_init(loop, &b->roll_timer);
    b->roll_timer.data = b;
    uv_timer_start(&b->roll_timer, on_roll_timer, ROLL_CHECK_MS, ROLL_CHECK_MS);
    uv_timer_init(loop, &b->retention_timer);
    b->retention_timer.data = b;
    uv_timer_start(&b->retention_timer, on_retention_timer, (uint64_t)cfg->retention_check_interval_ms,
                   (uint64_t)cfg->retention_check_interval_ms);

    LOG_INFO("ferryd listening on %s:%d (%s), advertised %s:%d, data.dir %s, %zu topic(s), flush.before.ack=%s",
             b->bound_host, b->bound_port, b->tls ? "tls" : "plaintext", b->advertised_host, b->advertised_port,
             cfg->data_dir, ferryd_topics_count(b->topics), cfg->flush_before_ack ? "true" : "false");
    return 0;

err_after_cluster_or_listen:
    if (b->cluster == NULL)
        goto err_after_listen;
err_after_cluster:
    ferryd_cluster_stop(b->cluster, on_cluster_abandoned, NULL);
    b->cluster = NULL;
err_after_listen:
    ferryd_server_stop_accepting(b); /* the handle closes on the next loop run */
    if (b->tls != NULL)
        ferry_tls_ctx_free(b->tls);
    b->tls = NULL;
err_after_topics:
    ferryd_topics_close(b->topics);
    b->topics = NULL;
    return -1;
}

static void stop_now(struct ferryd *b);

static void on_handoff_done(void *arg)
{
    stop_now(arg);
}

void ferryd_stop(struct ferryd *b)
{
    if (b->stopping || b->handing_off)
        return;
    if (b->cluster != NULL) {
        /* Move leaderships away first (the Kubernetes rolling restart depends on it), serving meanwhile. */
        b->handing_off = 1;
        ferryd_cluster_handoff(b->cluster, on_handoff_done, b);
        return;
    }
    stop_now(b);
}

static void stop_now(struct ferryd *b)
{
    if (b->stopping)
        return;
    LOG_INFO("stopping: no new connections or requests; finishing in-flight syncs");
    b->stopping = 1;
    ferryd_server_stop_accepting(b);
    uv_timer_stop(&b->roll_timer);
    uv_timer_stop(&b->retention_timer);
    uv_close((uv_handle_t *)&b->roll_timer, NULL);
    uv_close((uv_handle_t *)&b->retention_timer, NULL);
    ferryd_coord_stop(b->coord);
    /* Hold progress while walking connections and partitions: nothing may be freed under us. */
    b->stop_hold = 1;
    ferryd_server_quiesce(b);
    ferryd_topics_flush_all(b->topics);
    b->stop_hold = 0;
    ferryd_stop_progress(b);
}

void ferryd_stop_progress(struct ferryd *b)
{
    if (!b->stopping || b->stop_hold || b->topics_closed)
        return;
    if (ferryd_topics_env(b->topics)->syncs_in_flight > 0)
        return; /* their produces are answered when they end */
    if (!b->closing_conns) {
        b->closing_conns = 1;
        ferryd_server_close_all(b);
    }
    if (b->nconns > 0)
        return;
    if (b->cluster != NULL && !b->cluster_stopped) {
        /* Groups apply into the partitions: close them (and the peer node) before the logs. */
        if (!b->cluster_stopping) {
            b->cluster_stopping = 1;
            ferryd_cluster_stop(b->cluster, on_cluster_stopped, b);
        }
        return;
    }
    /* After the cluster: no write of the coordinator can complete later (its standalone waiters were
     * answered when the syncs drained). */
    ferryd_coord_destroy(b->coord);
    b->coord = NULL;
    ferryd_topics_close(b->topics);
    b->topics = NULL;
    b->topics_closed = 1;
    if (b->pids != NULL)
        ferryd_pids_close(b->pids);
    b->pids = NULL;
    if (b->tls != NULL)
        ferry_tls_ctx_free(b->tls);
    b->tls = NULL;
    if (b->cfg->ready_file[0] != '\0')
        unlink(b->cfg->ready_file);
    LOG_INFO("stopped: logs closed");
}
