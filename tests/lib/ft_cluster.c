/* ft_cluster.c: the test library's cluster: n real ferryd processes on 127.0.0.1 forming one Raft cluster. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ferrytest.h"
#include "storage/log.h"

/* Registration: each broker asks the controller leader (peer request) once elections settled: seconds. */
#define CLUSTER_READY_MS 30000

/* A port that was free a moment ago (bind to 0, read it, close). Returns it, or -1. */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 && getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

ferry_conf_t *ft_cluster_conf(const struct ft_cluster *c, const char *const *kv, char *errmsg, size_t errmsg_len)
{
    char err[512];
    ferry_conf_t *conf = ft_conf(&c->b[0], kv, errmsg, errmsg_len);
    if (conf == NULL)
        return NULL;
    if (ferry_conf_set(conf, "bootstrap.servers", c->bootstrap, err, sizeof(err)) != FERRY_ERR_NONE) {
        snprintf(errmsg, errmsg_len, "bootstrap.servers: %s", err);
        ferry_conf_destroy(conf);
        return NULL;
    }
    return conf;
}

ferry_client_t *ft_cluster_client(const struct ft_cluster *c, ferry_type_t type, const char *const *kv, char *errmsg,
                                  size_t errmsg_len)
{
    ferry_conf_t *conf = ft_cluster_conf(c, kv, errmsg, errmsg_len);
    if (conf == NULL)
        return NULL;
    ferry_client_t *cl = ferry_client_new(type, conf, errmsg, errmsg_len);
    if (cl == NULL)
        ferry_conf_destroy(conf);
    return cl;
}

/* Waits until the metadata lists all n brokers. */
static int wait_registered(const struct ft_cluster *c, char *errmsg, size_t errmsg_len)
{
    char err[512];
    ferry_client_t *adm = ft_cluster_client(c, FERRY_ADMIN, NULL, errmsg, errmsg_len);
    if (adm == NULL)
        return -1;
    int64_t deadline = ft_now_ms() + ft_ms(CLUSTER_READY_MS);
    size_t seen = 0;
    int rc = -1;
    while (ft_now_ms() < deadline) {
        ferry_metadata_t *md = NULL;
        if (ferry_admin_describe_cluster(adm, NULL, 0, &md, ft_ms(2000), err, sizeof(err)) == FERRY_ERR_NONE) {
            seen = ferry_metadata_broker_count(md);
            int ctl = ferry_metadata_controller_id(md);
            ferry_metadata_destroy(md);
            if (seen == (size_t)c->n && ctl >= 0) {
                rc = 0;
                break;
            }
        }
        ft_sleep_ms(100);
    }
    if (rc != 0)
        snprintf(errmsg, errmsg_len, "cluster of %d: only %zu broker(s) registered after %d ms", c->n, seen,
                 ft_ms(CLUSTER_READY_MS));
    ferry_client_destroy(adm);
    return rc;
}

int ft_cluster_start(struct ft_cluster *c, int n, const struct ft_broker_opts *o, char *errmsg, size_t errmsg_len)
{
    char members[FT_CLUSTER_MAX * 40] = "";
    char extra[4096];
    size_t off = 0;
    memset(c, 0, sizeof(*c));
    if (n < 1 || n > FT_CLUSTER_MAX) {
        snprintf(errmsg, errmsg_len, "cluster size %d not in [1, %d]", n, FT_CLUSTER_MAX);
        return -1;
    }
    c->n = n;
    for (int i = 0; i < n; i++) {
        c->peer_port[i] = free_port();
        if (c->peer_port[i] < 0) {
            snprintf(errmsg, errmsg_len, "no free port: %s", strerror(errno));
            return -1;
        }
        off += (size_t)snprintf(members + off, sizeof(members) - off, "%s%d@127.0.0.1:%d", i ? "," : "", i,
                                c->peer_port[i]);
    }
    char ca[400], crt[400], key[400], ccrt[400], ckey[400];
    ft_cert("ca.crt", ca, sizeof(ca));
    ft_cert("server.crt", crt, sizeof(crt));
    ft_cert("server.key", key, sizeof(key));
    ft_cert("client.crt", ccrt, sizeof(ccrt));
    ft_cert("client.key", ckey, sizeof(ckey));
    off = 0;
    for (int i = 0; i < n; i++) {
        struct ft_broker_opts bo = {.security = o ? o->security : FT_TLS, .node_id = i, .extra = extra};
        /* Brokers always talk mutual TLS on the peer port (server.crt listens, client.crt dials). */
        int len = snprintf(extra, sizeof(extra),
                           "cluster.members = %s\npeer.listen = 127.0.0.1:%d\npeer.tls.cert.file = %s\n"
                           "peer.tls.key.file = %s\npeer.tls.client.cert.file = %s\npeer.tls.client.key.file = %s\n"
                           "%s%s%s%s",
                           members, c->peer_port[i], crt, key, ccrt, ckey,
                           bo.security == FT_PLAINTEXT ? "tls.ca.file = " : "", bo.security == FT_PLAINTEXT ? ca : "",
                           bo.security == FT_PLAINTEXT ? "\n" : "", o && o->extra ? o->extra : "");
        if (len < 0 || (size_t)len >= sizeof(extra)) {
            snprintf(errmsg, errmsg_len, "extra config too long");
            goto err_after_start;
        }
        if (ft_broker_start(&c->b[i], &bo, errmsg, errmsg_len) != 0)
            goto err_after_start;
        off += (size_t)snprintf(c->bootstrap + off, sizeof(c->bootstrap) - off, "%s%s", i ? "," : "", c->b[i].addr);
    }
    if (wait_registered(c, errmsg, errmsg_len) != 0)
        goto err_after_start;
    return 0;

err_after_start:
    ft_dump_all_brokers();
    ft_cluster_destroy(c);
    return -1;
}

void ft_cluster_destroy(struct ft_cluster *c)
{
    for (int i = 0; i < c->n && i < FT_CLUSTER_MAX; i++)
        ft_broker_destroy(&c->b[i]);
    c->n = 0;
}

int ft_cluster_leader(const struct ft_cluster *c, const char *topic, int32_t partition, int timeout_ms, char *errmsg,
                      size_t errmsg_len)
{
    char err[512];
    const char *topics[] = {topic};
    ferry_client_t *adm = ft_cluster_client(c, FERRY_ADMIN, NULL, errmsg, errmsg_len);
    if (adm == NULL)
        return -1;
    int64_t deadline = ft_now_ms() + ft_ms(timeout_ms);
    int found = -1;
    snprintf(err, sizeof(err), "no answer");
    while (found < 0 && ft_now_ms() < deadline) {
        ferry_metadata_t *md = NULL;
        if (ferry_admin_describe_cluster(adm, topics, 1, &md, ft_ms(2000), err, sizeof(err)) == FERRY_ERR_NONE) {
            for (size_t t = 0; t < ferry_metadata_topic_count(md); t++) {
                for (size_t p = 0; p < ferry_metadata_partition_count(md, t); p++) {
                    if (ferry_metadata_partition_id(md, t, p) != partition)
                        continue;
                    int32_t l = ferry_metadata_partition_leader(md, t, p);
                    /* A dead broker may still be named until the followers' election timeout. */
                    if (l >= 0 && l < c->n && c->b[l].pid > 0 && ft_broker_alive((struct ft_broker *)&c->b[l]))
                        found = l;
                }
            }
            ferry_metadata_destroy(md);
        }
        if (found < 0)
            ft_sleep_ms(100);
    }
    ferry_client_destroy(adm);
    if (found < 0)
        snprintf(errmsg, errmsg_len, "%s/%d: no live leader after %d ms (%s)", topic, (int)partition,
                 ft_ms(timeout_ms), err);
    return found;
}

int ft_read_replica_log(const char *data_dir, const char *topic, int32_t part, uint8_t **out, size_t *len,
                        int64_t *end, char *errmsg, size_t errmsg_len)
{
    char dir[1024];
    struct ferry_log_config lc = {
        .segment_bytes = 1 << 30,
        .segment_ms = INT64_MAX / 4,
        .retention_ms = -1,
        .retention_bytes = -1,
        .index_interval_bytes = 4096,
    };
    struct ferry_log *log = NULL;
    *out = NULL;
    *len = 0;
    snprintf(dir, sizeof(dir), "%s/topics/%s-%d", data_dir, topic, (int)part);
    if (ferry_log_open(dir, &lc, &log, errmsg, errmsg_len) != 0)
        return -1;
    *end = ferry_log_end_offset(log);
    int rc = 0;
    if (*end > 0 && ferry_log_read(log, 0, *end, (size_t)1 << 30, out, len, errmsg, errmsg_len) != 0)
        rc = -1;
    ferry_log_close(log);
    return rc;
}

int ft_cluster_join(struct ft_cluster *c, int node_id, int members, const struct ft_broker_opts *o, char *errmsg,
                    size_t errmsg_len)
{
    char list[FT_CLUSTER_MAX * 40] = "";
    char extra[4096];
    size_t off = 0;
    if (c->n >= FT_CLUSTER_MAX || members < 1 || members > c->n) {
        snprintf(errmsg, errmsg_len, "join: cluster of %d, members %d (at most %d brokers)", c->n, members,
                 FT_CLUSTER_MAX);
        return -1;
    }
    for (int i = 0; i < members; i++)
        off += (size_t)snprintf(list + off, sizeof(list) - off, "%s%d@127.0.0.1:%d", i ? "," : "",
                                c->b[i].opts.node_id, c->peer_port[i]);
    int k = c->n;
    c->peer_port[k] = free_port();
    if (c->peer_port[k] < 0) {
        snprintf(errmsg, errmsg_len, "no free port: %s", strerror(errno));
        return -1;
    }
    char ca[400], crt[400], key[400], ccrt[400], ckey[400];
    ft_cert("ca.crt", ca, sizeof(ca));
    ft_cert("server.crt", crt, sizeof(crt));
    ft_cert("server.key", key, sizeof(key));
    ft_cert("client.crt", ccrt, sizeof(ccrt));
    ft_cert("client.key", ckey, sizeof(ckey));
    struct ft_broker_opts bo = {.security = o ? o->security : FT_TLS, .node_id = node_id, .extra = extra};
    int len = snprintf(extra, sizeof(extra),
                       "cluster.members = %s\npeer.listen = 127.0.0.1:%d\npeer.tls.cert.file = %s\n"
                       "peer.tls.key.file = %s\npeer.tls.client.cert.file = %s\npeer.tls.client.key.file = %s\n"
                       "%s%s%s%s",
                       list, c->peer_port[k], crt, key, ccrt, ckey, bo.security == FT_PLAINTEXT ? "tls.ca.file = " : "",
                       bo.security == FT_PLAINTEXT ? ca : "", bo.security == FT_PLAINTEXT ? "\n" : "",
                       o && o->extra ? o->extra : "");
    if (len < 0 || (size_t)len >= sizeof(extra)) {
        snprintf(errmsg, errmsg_len, "extra config too long");
        return -1;
    }
    if (ft_broker_start(&c->b[k], &bo, errmsg, errmsg_len) != 0)
        return -1;
    c->n++;
    size_t bl = strlen(c->bootstrap);
    snprintf(c->bootstrap + bl, sizeof(c->bootstrap) - bl, ",%s", c->b[k].addr);
    return wait_registered(c, errmsg, errmsg_len);
}

int ft_cluster_wait_broker(const struct ft_cluster *c, int32_t id, int port, int timeout_ms, char *errmsg,
                           size_t errmsg_len)
{
    char err[512];
    ferry_client_t *adm = ft_cluster_client(c, FERRY_ADMIN, NULL, errmsg, errmsg_len);
    if (adm == NULL)
        return -1;
    int64_t deadline = ft_now_ms() + ft_ms(timeout_ms);
    int seen = -1, rc = -1;
    while (rc != 0 && ft_now_ms() < deadline) {
        ferry_metadata_t *md = NULL;
        if (ferry_admin_describe_cluster(adm, NULL, 0, &md, ft_ms(2000), err, sizeof(err)) == FERRY_ERR_NONE) {
            for (size_t i = 0; i < ferry_metadata_broker_count(md); i++) {
                if (ferry_metadata_broker_id(md, i) != id)
                    continue;
                seen = ferry_metadata_broker_port(md, i);
                if (port == 0 || seen == port)
                    rc = 0;
            }
            ferry_metadata_destroy(md);
        }
        if (rc != 0)
            ft_sleep_ms(100);
    }
    ferry_client_destroy(adm);
    if (rc != 0)
        snprintf(errmsg, errmsg_len, "broker %d: metadata shows port %d, not %d, after %d ms", (int)id, seen, port,
                 ft_ms(timeout_ms));
    return rc;
}
