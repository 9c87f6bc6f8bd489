/* node.c: one node per broker process: the peer listener, one connection per broker pair, routing by group id. */
#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fr_int.h"

/*
 * Connections. The node with the lower id dials the higher (so a pair never races two sockets);
 * the dialer sends hello at once, the acceptor checks it (cluster id, a known peer with a lower
 * id) and answers with its own; the dialer checks the answer names the node it dialled. Only then
 * is the link "ready" and carries Raft frames. A dialer whose link closes (or never opens) redials
 * after a backoff (FR_REDIAL_MIN_MS doubling to FR_REDIAL_MAX_MS). An acceptor that gets a second
 * hello from a peer replaces the old link (the peer restarted or its old socket is half dead).
 *
 * Sends. raft's io->send is ours (group.c): the message is encoded into one frame and queued on
 * the peer's connection (ferry_conn_send copies it; frames queued in one loop pass leave in one
 * write). raft's send callback only releases memory, so it is fired from an idle handle on the next
 * loop pass, never from inside send (raft does not expect re-entrance), with status 0 when the
 * bytes were queued and RAFT_NOCONNECTION when there was no ready link (Raft resends on its own).
 *
 * Liveness and quiescence (quiesce.c) hook in at four places: a link becoming ready or closing,
 * every received frame (it refreshes the link's last_recv_ms; pings and quiesce frames go to
 * quiesce.c), every Raft message before and after delivery, and every send (a quiet group's
 * heartbeats are dropped there).
 */

static void node_maybe_finish(struct fr_node *n);
static void peer_dial(struct fr_peer *p);

static void link_on_open(struct ferry_conn *c);
static void link_on_frame(struct ferry_conn *c, const uint8_t *payload, size_t len);
static void link_on_close(struct ferry_conn *c, int status, const char *reason);
static const struct ferry_conn_callbacks link_cbs = {
    .on_open = link_on_open,
    .on_frame = link_on_frame,
    .on_close = link_on_close,
};

static int verbose(void)
{
    static int v = -1;
    if (v < 0) {
        const char *e = getenv("FERRY_RAFT_VERBOSE");
        v = e != NULL && *e != '\0' && strcmp(e, "0") != 0;
    }
    return v;
}

static void node_log(const struct fr_node *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void node_log(const struct fr_node *n, const char *fmt, ...)
{
    if (!verbose())
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "raft node %llu: ", (unsigned long long)n->id);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int fr_mkdir_p(const char *path, char *errmsg, size_t errmsg_len)
{
    char buf[PATH_MAX];
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof(buf)) {
        snprintf(errmsg, errmsg_len, "bad directory path '%s'", path);
        return FR_ERR_INVALID;
    }
    memcpy(buf, path, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (buf[i] == '/' || buf[i] == '\0') {
            char c = buf[i];
            buf[i] = '\0';
            if (mkdir(buf, 0755) != 0 && errno != EEXIST) {
                snprintf(errmsg, errmsg_len, "mkdir %s: %s", buf, strerror(errno));
                return FR_ERR_IO;
            }
            buf[i] = c;
        }
    }
    return FR_OK;
}

/* ---- peers ---- */

struct fr_peer *fr_node_find_peer(const struct fr_node *n, uint64_t id)
{
    for (unsigned i = 0; i < n->n_peers; i++)
        if (n->peers[i]->id == id)
            return n->peers[i];
    return NULL;
}

static void on_redial(uv_timer_t *t)
{
    peer_dial(t->data);
}

static void peer_schedule_redial(struct fr_peer *p)
{
    struct fr_node *n = p->node;
    if (n->stopping || p->id < n->id || p->link != NULL || p->dialing != NULL)
        return;
    unsigned delay = p->backoff_ms;
    p->backoff_ms = p->backoff_ms * 2 > FR_REDIAL_MAX_MS ? FR_REDIAL_MAX_MS : p->backoff_ms * 2;
    uv_timer_start(&p->redial, on_redial, delay, 0);
}

static struct fr_link *link_new(struct fr_node *n, bool dialer)
{
    struct fr_link *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return NULL;
    l->node = n;
    l->dialer = dialer;
    l->opened_ms = uv_now(n->loop);
    l->next = n->links;
    if (n->links != NULL)
        n->links->prev = l;
    n->links = l;
    return l;
}

static void link_unlink(struct fr_link *l)
{
    struct fr_node *n = l->node;
    if (l->prev != NULL)
        l->prev->next = l->next;
    else
        n->links = l->next;
    if (l->next != NULL)
        l->next->prev = l->prev;
    l->prev = l->next = NULL;
}

static uint16_t node_hello_flags(const struct fr_node *n)
{
    (void)n;
    return FR_HELLO_F_LIVENESS | FR_HELLO_F_RPC;
}

int fr_link_send(struct fr_link *l, const uint8_t *frame, size_t len)
{
    assert(len > 4);
    int rc = ferry_conn_send(l->conn, frame, len);
    if (rc == 0 && frame[4] < FR_FRAME_KIND_SLOTS)
        l->node->stats.kind_sent[frame[4]]++;
    return rc;
}

struct fr_link *fr_node_live_link(struct fr_node *n, uint64_t id)
{
    struct fr_peer *p = fr_node_find_peer(n, id);
    if (p == NULL || p->muted || p->link == NULL || !p->link->ready)
        return NULL;
    return p->link;
}

int fr_node_test_mute_peer(struct fr_node *n, uint64_t id, int muted)
{
    struct fr_peer *p = fr_node_find_peer(n, id);
    if (p == NULL)
        return FR_ERR_NOT_FOUND;
    p->muted = muted != 0;
    node_log(n, "peer %llu %s", (unsigned long long)id, p->muted ? "muted" : "unmuted");
    if (!p->muted && p->link != NULL)
        p->link->last_recv_ms = uv_now(n->loop); /* a fresh start for its silence clock */
    return FR_OK;
}

static void peer_dial(struct fr_peer *p)
{
    struct fr_node *n = p->node;
    if (n->stopping || p->id < n->id || p->link != NULL || p->dialing != NULL || p->port <= 0)
        return;
    struct fr_link *l = link_new(n, true);
    if (l == NULL) {
        peer_schedule_redial(p);
        return;
    }
    l->peer = p;
    const char *sni = n->has_tls_server_name ? n->tls_server_name : NULL;
    int rc = ferry_conn_connect(n->loop, p->host, p->port, n->tls_client, sni, &link_cbs, FR_PEER_MAX_FRAME_BYTES,
                                l, &l->conn);
    if (rc != 0) {
        node_log(n, "dial %llu at %s: %s", (unsigned long long)p->id, p->addr, uv_strerror(rc));
        link_unlink(l);
        free(l);
        peer_schedule_redial(p);
        return;
    }
    p->dialing = l;
    uint8_t hello[4 + FR_HELLO_LEN];
    fr_wire_put_hello_flags(hello, n->cluster_id, n->id, node_hello_flags(n));
    if (fr_link_send(l, hello, sizeof(hello)) != 0)
        ferry_conn_close(l->conn, "hello not queued");
}

int fr_node_set_peer(struct fr_node *n, uint64_t id, const char *host, int port, char *errmsg, size_t errmsg_len)
{
    if (id == 0 || id == n->id || host == NULL || strlen(host) == 0 || strlen(host) > FR_HOST_MAX || port <= 0 ||
        port > 65535) {
        snprintf(errmsg, errmsg_len, "peer %llu: bad id or address", (unsigned long long)id);
        return FR_ERR_INVALID;
    }
    if (n->stopping) {
        snprintf(errmsg, errmsg_len, "node is stopping");
        return FR_ERR_INVALID;
    }
    struct fr_peer *p = fr_node_find_peer(n, id);
    if (p == NULL) {
        if (n->n_peers == n->cap_peers) {
            unsigned cap = n->cap_peers ? n->cap_peers * 2 : 8;
            struct fr_peer **a = realloc(n->peers, cap * sizeof(*a));
            if (a == NULL) {
                snprintf(errmsg, errmsg_len, "out of memory");
                return FR_ERR_NOMEM;
            }
            n->peers = a;
            n->cap_peers = cap;
        }
        p = calloc(1, sizeof(*p));
        if (p == NULL) {
            snprintf(errmsg, errmsg_len, "out of memory");
            return FR_ERR_NOMEM;
        }
        p->node = n;
        p->id = id;
        snprintf(p->idstr, sizeof(p->idstr), "%llu", (unsigned long long)id);
        uv_timer_init(n->loop, &p->redial);
        p->redial.data = p;
        n->peers[n->n_peers++] = p;
    } else if (strcmp(p->host, host) == 0 && p->port == port) {
        return FR_OK;
    }
    snprintf(p->host, sizeof(p->host), "%s", host);
    p->port = port;
    snprintf(p->addr, sizeof(p->addr), "%s:%d", host, port);
    p->backoff_ms = FR_REDIAL_MIN_MS;
    /* A new address: drop the old connection; the dialer redials at once. */
    if (p->link != NULL)
        ferry_conn_close(p->link->conn, "peer address changed");
    if (p->dialing != NULL)
        ferry_conn_close(p->dialing->conn, "peer address changed");
    uv_timer_stop(&p->redial);
    if (p->id > n->id && p->link == NULL && p->dialing == NULL)
        peer_dial(p);
    return FR_OK;
}

/* ---- links ---- */

static void link_on_open(struct ferry_conn *c)
{
    struct fr_link *l = ferry_conn_data(c);
    if (l->dialer)
        node_log(l->node, "connected to %llu (%s)%s",
                 (unsigned long long)(l->peer != NULL ? l->peer->id : l->rpc_peer), ferry_conn_peer(c),
                 l->rpc_only ? ", requests only" : "");
}

static void link_ready(struct fr_link *l, struct fr_peer *p)
{
    struct fr_node *n = l->node;
    l->ready = true;
    l->peer = p;
    l->last_recv_ms = uv_now(n->loop);
    p->link = l;
    p->backoff_ms = FR_REDIAL_MIN_MS;
    n->stats.connects++;
    node_log(n, "link to %llu ready (%s, flags %#x)", (unsigned long long)p->id, l->dialer ? "dialled" : "accepted",
             l->peer_flags);
    /* A new link: the peer may have restarted; every group with it runs plain Raft again. */
    fr_q_peer_changed(n, p->id);
}

static void link_on_hello(struct fr_link *l, const uint8_t *payload, size_t len)
{
    struct fr_node *n = l->node;
    if (len != FR_HELLO_LEN || payload[1] != FR_PROTO_VERSION) {
        ferry_conn_close(l->conn, "bad hello");
        return;
    }
    uint64_t cluster = 0, id = 0;
    l->peer_flags = (uint16_t)((payload[2] << 8) | payload[3]);
    for (int i = 0; i < 8; i++) {
        cluster = (cluster << 8) | payload[4 + i];
        id = (id << 8) | payload[12 + i];
    }
    if (cluster != n->cluster_id) {
        node_log(n, "hello from %s: cluster %llu is not ours", ferry_conn_peer(l->conn), (unsigned long long)cluster);
        ferry_conn_close(l->conn, "hello: wrong cluster id");
        return;
    }
    if (l->ready) {
        ferry_conn_close(l->conn, "second hello");
        return;
    }
    /* rpc.c: a request-only link (we dialled one, or a broker we may not know yet did). */
    if (l->rpc_only || (!l->dialer && (l->peer_flags & FR_HELLO_F_RPC_ONLY))) {
        fr_rpc_on_hello(l, id);
        return;
    }
    if (l->dialer) {
        struct fr_peer *p = l->peer;
        if (id != p->id) {
            node_log(n, "dialled %llu at %s but node %llu answered", (unsigned long long)p->id, p->addr,
                     (unsigned long long)id);
            ferry_conn_close(l->conn, "hello: unexpected node id");
            return;
        }
        assert(p->dialing == l);
        p->dialing = NULL;
        link_ready(l, p);
        return;
    }
    struct fr_peer *p = fr_node_find_peer(n, id);
    if (p == NULL || id >= n->id) {
        node_log(n, "hello from %s: node %llu is not a peer that dials us", ferry_conn_peer(l->conn),
                 (unsigned long long)id);
        ferry_conn_close(l->conn, "hello: unknown node id");
        return;
    }
    if (p->link != NULL && p->link != l) {
        struct fr_link *old = p->link;
        p->link = NULL;
        old->peer = NULL;
        old->ready = false;
        ferry_conn_close(old->conn, "replaced by a new connection from the same peer");
    }
    uint8_t hello[4 + FR_HELLO_LEN];
    fr_wire_put_hello_flags(hello, n->cluster_id, n->id, node_hello_flags(n));
    if (fr_link_send(l, hello, sizeof(hello)) != 0) {
        ferry_conn_close(l->conn, "hello not queued");
        return;
    }
    link_ready(l, p);
}

static void link_on_raft(struct fr_link *l, const uint8_t *payload, size_t len)
{
    struct fr_node *n = l->node;
    if (len < FR_RAFT_HDR_LEN) {
        ferry_conn_close(l->conn, "short raft frame");
        return;
    }
    uint64_t gid = 0;
    for (int i = 0; i < 8; i++)
        gid = (gid << 8) | payload[4 + i];
    struct fr_group *g = fr_node_find_group(n, gid);
    if (g == NULL || g->state != FR_GROUP_STARTED || g->recv_cb == NULL) {
        /* Not (or no longer) a replica here: Raft on the sender retries or gives up by itself. */
        return;
    }
    struct raft_message msg;
    char err[128];
    int rc = fr_wire_decode(payload, len, &msg, &gid, err, sizeof(err));
    if (rc != FR_OK) {
        node_log(n, "from %llu: %s", (unsigned long long)l->peer->id, err);
        if (rc == FR_ERR_INVALID)
            ferry_conn_close(l->conn, "malformed raft frame");
        return;
    }
    msg.server_id = l->peer->id;
    msg.server_address = l->peer->idstr;
    n->stats.frames_recv++;
    n->stats.bytes_recv += len + 4;
    uint64_t from = l->peer->id;
    fr_q_before_recv(g, from, &msg);
    fr_fo_before_recv(g, from, &msg);
    struct raft_message seen = msg; /* the scalar fields, for after delivery */
    /* Raft now owns what the decoder allocated (entries, batch, snapshot data, configuration). */
    g->recv_cb(&g->io, &msg);
    fr_q_after_recv(g, from, &seen);
}

static void link_on_frame(struct ferry_conn *c, const uint8_t *payload, size_t len)
{
    struct fr_link *l = ferry_conn_data(c);
    struct fr_node *n = l->node;
    if (len < 1) {
        ferry_conn_close(c, "empty frame");
        return;
    }
    if (l->ready && l->peer != NULL) {
        if (l->peer->muted)
            return; /* test hook: the frame never arrived */
        l->last_recv_ms = uv_now(n->loop);
        if (l->silent) {
            l->silent = false;
            node_log(n, "link to %llu is live again", (unsigned long long)l->peer->id);
            fr_q_peer_changed(n, l->peer->id);
        }
    }
    if (payload[0] < FR_FRAME_KIND_SLOTS)
        n->stats.kind_recv[payload[0]]++;
    switch (payload[0]) {
    case FR_FRAME_HELLO:
        link_on_hello(l, payload, len);
        break;
    case FR_FRAME_RAFT:
        if (!l->ready || l->peer == NULL) {
            ferry_conn_close(c, "raft frame before hello");
            return;
        }
        link_on_raft(l, payload, len);
        break;
    case FR_FRAME_PING:
    case FR_FRAME_QUIESCE:
        if (!l->ready || l->peer == NULL) {
            ferry_conn_close(c, "ping or quiesce frame before hello");
            return;
        }
        if (payload[0] == FR_FRAME_PING)
            fr_q_on_ping(l, payload, len);
        else
            fr_q_on_quiesce(l, payload, len);
        break;
    case FR_FRAME_RPC: /* rpc.c */
        if (!l->ready || (l->peer == NULL && !l->rpc_only)) {
            ferry_conn_close(c, "rpc frame before hello");
            return;
        }
        fr_rpc_on_frame(l, payload, len);
        break;
    default:
        ferry_conn_close(c, "unknown frame kind");
        break;
    }
}

static void link_on_close(struct ferry_conn *c, int status, const char *reason)
{
    struct fr_link *l = ferry_conn_data(c);
    struct fr_node *n = l->node;
    struct fr_peer *p = l->peer;
    node_log(n, "link %s peer %llu closed: %d %s", l->dialer ? "to" : "from", p ? (unsigned long long)p->id : 0ULL,
             status, reason ? reason : "");
    link_unlink(l);
    bool was_link = false;
    if (p != NULL) {
        if (p->link == l) {
            p->link = NULL;
            was_link = true;
        }
        if (p->dialing == l)
            p->dialing = NULL;
    }
    free(l);
    if (was_link && !n->stopping) {
        fr_q_peer_changed(n, p->id);
        fr_fo_peer_lost(n, p->id); /* failover.c: its groups elect without waiting for a timeout */
    }
    if (n->stopping) {
        n->closing--;
        node_maybe_finish(n);
        return;
    }
    if (p != NULL)
        peer_schedule_redial(p);
}

static void on_accept(uv_stream_t *server, int status)
{
    struct fr_node *n = server->data;
    if (status < 0 || n->stopping)
        return;
    struct fr_link *l = link_new(n, false);
    if (l == NULL)
        return;
    int rc = ferry_conn_accept(server, n->tls_server, &link_cbs, FR_PEER_MAX_FRAME_BYTES, l, &l->conn);
    if (rc != 0) {
        link_unlink(l);
        free(l);
    }
}

static void on_hello_timer(uv_timer_t *t)
{
    struct fr_node *n = t->data;
    uint64_t now = uv_now(n->loop);
    for (struct fr_link *l = n->links; l != NULL; l = l->next)
        if (!l->ready && !l->dialer && now - l->opened_ms > FR_HELLO_TIMEOUT_MS)
            ferry_conn_close(l->conn, "no hello in time");
}

/* ---- sends ---- */

static void on_done_idle(uv_idle_t *h)
{
    struct fr_node *n = h->data;
    struct fr_send_done *d = n->done;
    unsigned count = n->n_done;
    n->done = NULL;
    n->n_done = n->cap_done = 0;
    for (unsigned i = 0; i < count; i++)
        d[i].cb(d[i].req, d[i].status);
    free(d);
    if (n->fo_due) { /* failover.c: outside any Raft step, without waiting for the node tick */
        n->fo_due = false;
        fr_fo_tick(n, uv_now(n->loop));
    }
    if (n->n_done == 0)
        uv_idle_stop(&n->done_idle);
}

void fr_node_flush_sends(struct fr_node *n, struct fr_group *g)
{
    unsigned k = 0;
    for (unsigned i = 0; i < n->n_done; i++) {
        if (n->done[i].group == g)
            n->done[i].cb(n->done[i].req, 0);
        else
            n->done[k++] = n->done[i];
    }
    n->n_done = k;
}

int fr_node_send(struct fr_node *n, struct fr_group *g, struct raft_io_send *req, const struct raft_message *msg,
                 raft_io_send_cb cb)
{
    if (n->n_done == n->cap_done) {
        unsigned cap = n->cap_done ? n->cap_done * 2 : 64;
        struct fr_send_done *a = realloc(n->done, cap * sizeof(*a));
        if (a == NULL)
            return RAFT_NOMEM; /* raft frees the message itself on an error return */
        n->done = a;
        n->cap_done = cap;
    }
    if (fr_q_filter_send(g, msg)) {
        /* Not needed on the wire (a quiet group's heartbeat, or the answer to a synthesized one). */
        n->done[n->n_done++] = (struct fr_send_done){.group = g, .req = req, .cb = cb, .status = 0};
        uv_idle_start(&n->done_idle, on_done_idle);
        return 0;
    }
    int status = RAFT_NOCONNECTION;
    struct fr_peer *p = fr_node_find_peer(n, msg->server_id);
    if (p != NULL && p->muted && p->link != NULL && p->link->ready) {
        /* Test hook: the frame is lost on the way, as in a network cut (Raft sees no error). */
        n->done[n->n_done++] = (struct fr_send_done){.group = g, .req = req, .cb = cb, .status = 0};
        uv_idle_start(&n->done_idle, on_done_idle);
        return 0;
    }
    if (p != NULL && p->link != NULL && p->link->ready &&
        ferry_conn_pending_bytes(p->link->conn) < FR_PEER_MAX_BACKLOG) {
        const uint8_t *frame;
        size_t len;
        int rc = fr_wire_encode(n, g->id, msg, &frame, &len);
        if (rc == FR_OK && fr_link_send(p->link, frame, len) == 0) {
            status = 0;
            n->stats.frames_sent++;
            n->stats.bytes_sent += len;
            if (msg->type == RAFT_APPEND_ENTRIES && msg->append_entries.n_entries == 0)
                n->stats.heartbeats_sent++;
        } else if (rc == FR_ERR_TOO_BIG) {
            status = RAFT_TOOBIG;
        } else if (rc == FR_ERR_NOMEM) {
            status = RAFT_NOMEM;
        }
    }
    if (status != 0)
        n->stats.msgs_dropped++;
    n->done[n->n_done++] = (struct fr_send_done){.group = g, .req = req, .cb = cb, .status = status};
    uv_idle_start(&n->done_idle, on_done_idle);
    return 0;
}

/* ---- groups by id ---- */

static unsigned group_slot(const struct fr_node *n, uint64_t id)
{
    unsigned lo = 0, hi = n->n_groups;
    while (lo < hi) {
        unsigned mid = lo + (hi - lo) / 2;
        if (n->groups[mid]->id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

struct fr_group *fr_node_find_group(struct fr_node *n, uint64_t id)
{
    unsigned i = group_slot(n, id);
    return i < n->n_groups && n->groups[i]->id == id ? n->groups[i] : NULL;
}

int fr_node_add_group(struct fr_node *n, struct fr_group *g)
{
    unsigned i = group_slot(n, g->id);
    if (i < n->n_groups && n->groups[i]->id == g->id)
        return FR_ERR_INVALID;
    if (n->n_groups == n->cap_groups) {
        unsigned cap = n->cap_groups ? n->cap_groups * 2 : 16;
        struct fr_group **a = realloc(n->groups, cap * sizeof(*a));
        if (a == NULL)
            return FR_ERR_NOMEM;
        n->groups = a;
        n->cap_groups = cap;
    }
    memmove(&n->groups[i + 1], &n->groups[i], (n->n_groups - i) * sizeof(*n->groups));
    n->groups[i] = g;
    n->n_groups++;
    return FR_OK;
}

void fr_node_remove_group(struct fr_node *n, struct fr_group *g)
{
    fr_q_group_gone(g);
    unsigned i = group_slot(n, g->id);
    if (i < n->n_groups && n->groups[i] == g) {
        memmove(&n->groups[i], &n->groups[i + 1], (n->n_groups - i - 1) * sizeof(*n->groups));
        n->n_groups--;
    }
}

/* ---- node ---- */

static void free_node_on_close(uv_handle_t *h)
{
    free(h->data);
}

int fr_node_start(const struct fr_node_config *cfg, struct fr_node **out, char *errmsg, size_t errmsg_len)
{
    *out = NULL;
    if (cfg->loop == NULL || cfg->node_id == 0 || cfg->listen_host == NULL || cfg->data_dir == NULL ||
        strlen(cfg->listen_host) > FR_HOST_MAX || strlen(cfg->data_dir) >= PATH_MAX - 32 || cfg->listen_port < 0 ||
        cfg->listen_port > 65535 || (cfg->tls_server == NULL) != (cfg->tls_client == NULL)) {
        snprintf(errmsg, errmsg_len, "raft node: bad configuration");
        return FR_ERR_INVALID;
    }
    int rc = fr_mkdir_p(cfg->data_dir, errmsg, errmsg_len);
    if (rc != FR_OK)
        return rc;
    struct fr_node *n = calloc(1, sizeof(*n));
    if (n == NULL) {
        snprintf(errmsg, errmsg_len, "out of memory");
        return FR_ERR_NOMEM;
    }
    n->loop = cfg->loop;
    n->id = cfg->node_id;
    n->cluster_id = cfg->cluster_id;
    snprintf(n->idstr, sizeof(n->idstr), "%llu", (unsigned long long)n->id);
    snprintf(n->host, sizeof(n->host), "%s", cfg->listen_host);
    snprintf(n->data_dir, sizeof(n->data_dir), "%s", cfg->data_dir);
    n->tls_server = cfg->tls_server;
    n->tls_client = cfg->tls_client;
    if (cfg->tls_server_name != NULL) {
        snprintf(n->tls_server_name, sizeof(n->tls_server_name), "%s", cfg->tls_server_name);
        n->has_tls_server_name = true;
    }
    n->quiesce = cfg->disable_quiescence == 0;
    n->hb_ms = cfg->heartbeat_ms ? cfg->heartbeat_ms : 100;
    n->ping_ms = n->hb_ms / 2 ? n->hb_ms / 2 : 1;
    n->link_timeout_ms = cfg->link_timeout_ms ? cfg->link_timeout_ms : 1000;

    struct sockaddr_storage ss;
    int uvrc = uv_ip4_addr(cfg->listen_host, cfg->listen_port, (struct sockaddr_in *)&ss);
    if (uvrc != 0)
        uvrc = uv_ip6_addr(cfg->listen_host, cfg->listen_port, (struct sockaddr_in6 *)&ss);
    if (uvrc != 0) {
        snprintf(errmsg, errmsg_len, "raft node: listen host '%s' is not a numeric address", cfg->listen_host);
        free(n);
        return FR_ERR_INVALID;
    }
    uv_tcp_init(n->loop, &n->listener);
    n->listener.data = n;
    uvrc = uv_tcp_bind(&n->listener, (const struct sockaddr *)&ss, 0);
    if (uvrc == 0)
        uvrc = uv_listen((uv_stream_t *)&n->listener, 128, on_accept);
    if (uvrc != 0) {
        snprintf(errmsg, errmsg_len, "raft node: listen on %s:%d: %s", cfg->listen_host, cfg->listen_port,
                 uv_strerror(uvrc));
        /* The handle must be closed before the memory goes: freed by its close callback (the
         * caller's loop runs it). */
        uv_close((uv_handle_t *)&n->listener, free_node_on_close);
        return FR_ERR_IO;
    }
    struct sockaddr_storage bound;
    int blen = sizeof(bound);
    uv_tcp_getsockname(&n->listener, (struct sockaddr *)&bound, &blen);
    n->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                : ((struct sockaddr_in *)&bound)->sin_port);
    snprintf(n->addr, sizeof(n->addr), "%s:%d", n->host, n->port);

    uv_idle_init(n->loop, &n->done_idle);
    n->done_idle.data = n;
    uv_timer_init(n->loop, &n->hello_timer);
    n->hello_timer.data = n;
    uv_timer_start(&n->hello_timer, on_hello_timer, 1000, 1000);
    uv_unref((uv_handle_t *)&n->hello_timer);
    fr_q_start(n);
    fr_rpc_init(n, cfg);
    node_log(n, "listening on %s", n->addr);
    *out = n;
    return FR_OK;
}

int fr_node_port(const struct fr_node *n)
{
    return n->port;
}

uint64_t fr_node_id(const struct fr_node *n)
{
    return n->id;
}

void fr_node_stats(const struct fr_node *n, struct fr_node_stats *out)
{
    *out = n->stats;
    out->peers_up = 0;
    out->peers_silent = 0;
    for (unsigned i = 0; i < n->n_peers; i++) {
        if (n->peers[i]->link != NULL && n->peers[i]->link->ready) {
            out->peers_up++;
            if (n->peers[i]->link->silent)
                out->peers_silent++;
        }
    }
}

static void node_maybe_finish(struct fr_node *n)
{
    if (n->closing > 0)
        return;
    assert(n->links == NULL && n->n_groups == 0 && n->n_done == 0);
    for (unsigned i = 0; i < n->n_peers; i++) {
        free(n->peers[i]->q_wake);
        free(n->peers[i]->q_quiet);
        free(n->peers[i]);
    }
    free(n->peers);
    free(n->groups);
    free(n->done);
    free(n->scratch);
    fr_node_stop_cb cb = n->stop_cb;
    void *arg = n->stop_arg;
    free(n);
    if (cb != NULL)
        cb(arg);
}

static void on_node_handle_closed(uv_handle_t *h)
{
    struct fr_node *n = h->data;
    n->closing--;
    node_maybe_finish(n);
}

static void on_peer_timer_closed(uv_handle_t *h)
{
    struct fr_peer *p = h->data;
    struct fr_node *n = p->node;
    n->closing--;
    node_maybe_finish(n);
}

void fr_node_stop(struct fr_node *n, fr_node_stop_cb cb, void *arg)
{
    if (n->stopping)
        return;
    n->stopping = true;
    n->stop_cb = cb;
    n->stop_arg = arg;
    node_log(n, "stopping");
    /* Count everything first: a completion below must not see zero before the last is started. */
    n->closing = 1 + 5;
    fr_rpc_stop(n); /* rpc.c: pending requests fail; its timer closes just below */
    uv_close((uv_handle_t *)&n->rpc_timer, on_node_handle_closed);
    uv_close((uv_handle_t *)&n->q_timer, on_node_handle_closed);
    uv_close((uv_handle_t *)&n->listener, on_node_handle_closed);
    uv_close((uv_handle_t *)&n->hello_timer, on_node_handle_closed);
    uv_close((uv_handle_t *)&n->done_idle, on_node_handle_closed);
    for (unsigned i = 0; i < n->n_peers; i++) {
        n->closing++;
        uv_close((uv_handle_t *)&n->peers[i]->redial, on_peer_timer_closed);
    }
    for (struct fr_link *l = n->links; l != NULL; l = l->next) {
        n->closing++;
        ferry_conn_close(l->conn, "node stopping");
    }
    /* Groups leave n->groups as they finish closing; iterate over a copy. */
    unsigned ng = n->n_groups;
    struct fr_group **copy = ng ? malloc(ng * sizeof(*copy)) : NULL;
    if (ng > 0 && copy == NULL)
        abort(); /* cannot stop cleanly without memory for a pointer array */
    if (ng > 0)
        memcpy(copy, n->groups, ng * sizeof(*copy));
    n->closing += ng;
    for (unsigned i = 0; i < ng; i++)
        fr_group_close_for_stop(copy[i]);
    free(copy);
    n->closing--; /* the initial hold */
    node_maybe_finish(n);
}

void fr_node_group_closed(struct fr_node *n)
{
    if (!n->stopping)
        return;
    n->closing--;
    node_maybe_finish(n);
}

/* ---- rpc.c hook: request-only links ---- */

int fr_node_dial_rpc(struct fr_node *n, struct fr_peer *p)
{
    if (n->stopping || p->port <= 0)
        return FR_ERR_INVALID;
    struct fr_link *l = link_new(n, true);
    if (l == NULL)
        return FR_ERR_NOMEM;
    l->rpc_only = true;
    l->rpc_peer = p->id;
    const char *sni = n->has_tls_server_name ? n->tls_server_name : NULL;
    int rc = ferry_conn_connect(n->loop, p->host, p->port, n->tls_client, sni, &link_cbs, FR_PEER_MAX_FRAME_BYTES,
                                l, &l->conn);
    if (rc != 0) {
        node_log(n, "request-only dial %llu at %s: %s", (unsigned long long)p->id, p->addr, uv_strerror(rc));
        link_unlink(l);
        free(l);
        return FR_ERR_IO;
    }
    uint8_t hello[4 + FR_HELLO_LEN];
    fr_wire_put_hello_flags(hello, n->cluster_id, n->id, FR_HELLO_F_RPC | FR_HELLO_F_RPC_ONLY);
    if (fr_link_send(l, hello, sizeof(hello)) != 0)
        ferry_conn_close(l->conn, "hello not queued"); /* freed by link_on_close */
    return FR_OK;
}
