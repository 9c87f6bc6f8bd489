/* rpc.c: requests and responses between brokers on the peer port (frame kind 5, docs/peer-protocol.md). */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fr_int.h"

/*
 * A request is one rpc frame (type 1) carrying the caller's id for it and an opaque body (the
 * broker's msgpack); the answer is one rpc frame (type 2) with the same id, a status and a body.
 *
 * Which connection: the peer's ordinary link when it is ready (and the peer said it speaks rpc);
 * otherwise a request-only link this node dials to the peer's address. That second kind exists for
 * a broker that joins a running cluster: the members do not know its id or address yet, so it
 * cannot wait to be dialled, and the ordinary acceptor refuses unknown ids. Its hello carries flag
 * FR_HELLO_F_RPC_ONLY; the acceptor checks the cluster id (and the peer TLS has checked the
 * certificate), answers hello and then takes only rpc frames on it (a raft, ping or quiesce frame
 * closes it). The answer to a request goes back on the connection the request came on.
 *
 * Requests wait in n->rpc_pending (a short list: a broker has a few in flight at most). A sweep
 * every FR_RPC_SWEEP_MS sends those still waiting for a connection and fails the ones past their
 * deadline with FR_ERR_IO; a late answer finds nothing and is ignored.
 */

#define FR_RPC_SWEEP_MS 50
#define FR_RPC_REQUEST 1
#define FR_RPC_RESPONSE 2

struct fr_rpc_req {
    struct fr_rpc_req *next;
    uint64_t id;
    uint64_t peer;
    uint64_t deadline_ms;
    fr_rpc_cb cb;
    void *arg;
    uint8_t *frame; /* whole frame while not yet sent (NULL once queued on a connection) */
    size_t frame_len;
};

/* Whole frame (length prefix included) into a malloc'd buffer. NULL when out of memory. */
static uint8_t *rpc_frame(uint8_t type, uint16_t status, uint64_t id, const void *body, size_t len, size_t *out_len)
{
    size_t total = 4 + FR_RPC_HDR_LEN + len;
    uint8_t *f = malloc(total);
    if (f == NULL)
        return NULL;
    uint32_t flen = (uint32_t)(total - 4);
    for (int i = 0; i < 4; i++)
        f[i] = (uint8_t)(flen >> (8 * (3 - i)));
    f[4] = FR_FRAME_RPC;
    f[5] = type;
    f[6] = (uint8_t)(status >> 8);
    f[7] = (uint8_t)status;
    for (int i = 0; i < 8; i++)
        f[8 + i] = (uint8_t)(id >> (8 * (7 - i)));
    if (len > 0)
        memcpy(f + 4 + FR_RPC_HDR_LEN, body, len);
    *out_len = total;
    return f;
}

/* A ready connection that can carry a request to peer id now, or NULL. */
static struct fr_link *rpc_link(struct fr_node *n, uint64_t id)
{
    struct fr_link *l = fr_node_live_link(n, id);
    if (l != NULL && (l->peer_flags & FR_HELLO_F_RPC))
        return l;
    for (l = n->links; l != NULL; l = l->next)
        if (l->rpc_only && l->ready && l->rpc_peer == id)
            return l;
    return NULL;
}

static bool rpc_dialing(const struct fr_node *n, uint64_t id)
{
    for (const struct fr_link *l = n->links; l != NULL; l = l->next)
        if (l->rpc_only && l->dialer && l->rpc_peer == id)
            return true;
    return false;
}

/* Sends r if a connection is there; dials a request-only one when none is (and none is dialling). */
static void rpc_try_send(struct fr_node *n, struct fr_rpc_req *r)
{
    assert(r->frame != NULL);
    struct fr_peer *p = fr_node_find_peer(n, r->peer);
    if (p != NULL && p->muted)
        return; /* test hook (fr_node_test_mute_peer): cut off, requests included; they time out */
    struct fr_link *l = rpc_link(n, r->peer);
    if (l != NULL) {
        if (fr_link_send(l, r->frame, r->frame_len) == 0) {
            free(r->frame);
            r->frame = NULL;
        }
        return;
    }
    if (p != NULL && p->port > 0 && !rpc_dialing(n, r->peer))
        (void)fr_node_dial_rpc(n, p); /* on failure the next sweep tries again */
}

static void rpc_remove(struct fr_node *n, struct fr_rpc_req *r)
{
    for (struct fr_rpc_req **pp = &n->rpc_pending; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == r) {
            *pp = r->next;
            return;
        }
    }
    assert(0 && "request not pending");
}

static void on_sweep(uv_timer_t *t)
{
    struct fr_node *n = t->data;
    uint64_t now = uv_now(n->loop);
    struct fr_rpc_req *expired = NULL;
    /* Unlink the expired ones first: their callbacks may add requests (or stop the node). */
    for (struct fr_rpc_req **pp = &n->rpc_pending; *pp != NULL;) {
        struct fr_rpc_req *r = *pp;
        if (now >= r->deadline_ms) {
            *pp = r->next;
            r->next = expired;
            expired = r;
        } else {
            if (r->frame != NULL)
                rpc_try_send(n, r);
            pp = &r->next;
        }
    }
    if (n->rpc_pending == NULL)
        uv_timer_stop(&n->rpc_timer);
    while (expired != NULL) {
        struct fr_rpc_req *r = expired;
        expired = r->next;
        free(r->frame);
        r->cb(r->arg, FR_ERR_IO, NULL, 0);
        free(r);
    }
}

void fr_rpc_init(struct fr_node *n, const struct fr_node_config *cfg)
{
    n->rpc_handler = cfg->rpc_handler;
    n->rpc_arg = cfg->rpc_arg;
    uv_timer_init(n->loop, &n->rpc_timer);
    n->rpc_timer.data = n;
}

void fr_rpc_stop(struct fr_node *n)
{
    uv_timer_stop(&n->rpc_timer);
    while (n->rpc_pending != NULL) {
        struct fr_rpc_req *r = n->rpc_pending;
        n->rpc_pending = r->next;
        free(r->frame);
        r->cb(r->arg, FR_ERR_SHUTDOWN, NULL, 0); /* fr_node_request refuses new ones: stopping */
        free(r);
    }
}

int fr_node_request(struct fr_node *n, uint64_t peer_id, const void *body, size_t len, unsigned timeout_ms,
                    fr_rpc_cb cb, void *arg, char *errmsg, size_t errmsg_len)
{
    if (n->stopping || peer_id == 0 || peer_id == n->id || cb == NULL || (len > 0 && body == NULL)) {
        snprintf(errmsg, errmsg_len, "request to %llu: %s", (unsigned long long)peer_id,
                 n->stopping ? "node is stopping" : "bad argument");
        return FR_ERR_INVALID;
    }
    if (len > FR_RPC_MAX_BODY) {
        snprintf(errmsg, errmsg_len, "request of %zu bytes (at most %u)", len, FR_RPC_MAX_BODY);
        return FR_ERR_TOO_BIG;
    }
    if (fr_node_find_peer(n, peer_id) == NULL) {
        snprintf(errmsg, errmsg_len, "request to %llu: not a peer", (unsigned long long)peer_id);
        return FR_ERR_NOT_FOUND;
    }
    struct fr_rpc_req *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        snprintf(errmsg, errmsg_len, "out of memory");
        return FR_ERR_NOMEM;
    }
    r->id = ++n->rpc_next_id;
    r->frame = rpc_frame(FR_RPC_REQUEST, 0, r->id, body, len, &r->frame_len);
    if (r->frame == NULL) {
        free(r);
        snprintf(errmsg, errmsg_len, "out of memory");
        return FR_ERR_NOMEM;
    }
    r->peer = peer_id;
    r->deadline_ms = uv_now(n->loop) + (timeout_ms ? timeout_ms : 1);
    r->cb = cb;
    r->arg = arg;
    r->next = n->rpc_pending;
    n->rpc_pending = r;
    rpc_try_send(n, r); /* the answer arrives from the loop, never from inside this call */
    if (!uv_is_active((uv_handle_t *)&n->rpc_timer))
        uv_timer_start(&n->rpc_timer, on_sweep, FR_RPC_SWEEP_MS, FR_RPC_SWEEP_MS);
    return FR_OK;
}

int fr_node_respond(struct fr_node *n, const struct fr_rpc_from *to, int status, const void *body, size_t len)
{
    if (n->stopping)
        return FR_ERR_INVALID;
    if (len > FR_RPC_MAX_BODY)
        return FR_ERR_TOO_BIG;
    struct fr_link *l = n->links;
    while (l != NULL && !(l->serial == to->link && l->ready))
        l = l->next;
    if (l == NULL || to->link == 0)
        return FR_ERR_NOT_FOUND;
    size_t flen;
    uint8_t *f = rpc_frame(FR_RPC_RESPONSE, (uint16_t)status, to->request_id, body, len, &flen);
    if (f == NULL)
        return FR_ERR_NOMEM;
    int rc = fr_link_send(l, f, flen) == 0 ? FR_OK : FR_ERR_IO;
    free(f);
    return rc;
}

void fr_rpc_on_hello(struct fr_link *l, uint64_t id)
{
    struct fr_node *n = l->node;
    if (l->dialer) {
        assert(l->rpc_only);
        if (id != l->rpc_peer) {
            ferry_conn_close(l->conn, "hello: unexpected node id");
            return;
        }
        l->ready = true;
        l->last_recv_ms = uv_now(n->loop);
        /* Everything that waited for this connection leaves now. */
        for (struct fr_rpc_req *r = n->rpc_pending; r != NULL; r = r->next)
            if (r->frame != NULL && r->peer == id)
                rpc_try_send(n, r);
        return;
    }
    if (id == 0 || id == n->id) {
        ferry_conn_close(l->conn, "hello: bad node id");
        return;
    }
    uint8_t hello[4 + FR_HELLO_LEN];
    fr_wire_put_hello_flags(hello, n->cluster_id, n->id, FR_HELLO_F_RPC);
    if (fr_link_send(l, hello, sizeof(hello)) != 0) {
        ferry_conn_close(l->conn, "hello not queued");
        return;
    }
    l->rpc_only = true;
    l->rpc_peer = id;
    l->ready = true;
    l->last_recv_ms = uv_now(n->loop);
}

void fr_rpc_on_frame(struct fr_link *l, const uint8_t *payload, size_t len)
{
    struct fr_node *n = l->node;
    if (len < FR_RPC_HDR_LEN || (payload[1] != FR_RPC_REQUEST && payload[1] != FR_RPC_RESPONSE) ||
        len - FR_RPC_HDR_LEN > FR_RPC_MAX_BODY) {
        ferry_conn_close(l->conn, "malformed rpc frame");
        return;
    }
    uint16_t status = (uint16_t)((payload[2] << 8) | payload[3]);
    uint64_t id = 0;
    for (int i = 0; i < 8; i++)
        id = (id << 8) | payload[4 + i];
    const uint8_t *body = payload + FR_RPC_HDR_LEN;
    size_t blen = len - FR_RPC_HDR_LEN;
    uint64_t from = l->rpc_only ? l->rpc_peer : l->peer->id;
    if (payload[1] == FR_RPC_RESPONSE) {
        struct fr_rpc_req *r = n->rpc_pending;
        while (r != NULL && !(r->id == id && r->peer == from))
            r = r->next;
        if (r == NULL)
            return; /* timed out already */
        rpc_remove(n, r);
        free(r->frame);
        r->cb(r->arg, status, body, blen);
        free(r);
        return;
    }
    if (l->serial == 0)
        l->serial = ++n->link_serial;
    struct fr_rpc_from f = {.peer_id = from, .link = l->serial, .request_id = id};
    if (n->rpc_handler == NULL) {
        (void)fr_node_respond(n, &f, FR_ERR_NOT_FOUND, NULL, 0);
        return;
    }
    n->rpc_handler(n->rpc_arg, &f, body, blen);
}
