/* group.c: one Raft group: raft_uv for the disk, our node for the network, our fsm table for the state machine. */
#include <assert.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fr_int.h"

/*
 * Each group has its own raft_io from raft_uv_init (the on-disk log and snapshots under
 * data_dir/g<id>/), created with a transport that never listens or connects, and five of its
 * methods replaced:
 *   start  captures raft's receive callback (the node delivers this group's frames to io_recv,
 *          which passes them on to it);
 *   send   encodes the message onto the node's connection to the destination (node.c);
 *   close  first fires every deferred send callback of the group, then closes raft_uv;
 *   time   raft_uv's clock plus the group's time_skew (failover.c moves it forward);
 *   snapshot_put  marks a snapshot take in flight (io_recv holds an InstallSnapshot meanwhile).
 * Entries are copied into raft_malloc'd memory on propose (raft frees them); the snapshot the
 * library stores is our 8-byte big-endian applied index followed by the fsm's bytes, so restore
 * can tell the fsm which index it restores (the legacy fsm API does not).
 */

#define container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

#define SNAP_HDR 8
/* Most members a bootstrap takes: far above any replication factor, and it bounds the copy a deferred
 * group keeps until its real open. */
#define FR_MAX_MEMBERS 64

/* One caller request; the raft request is the first member (raft's callbacks get its address). */
struct fr_req {
    union {
        struct raft_apply apply;
        struct raft_barrier barrier;
        struct raft_transfer transfer;
        struct raft_change change;
    } u;
    struct fr_group *g;
    union {
        fr_propose_cb propose;
        fr_done_cb done;
    } cb;
    void *arg;
    uint64_t member; /* add_member: the node being added */
};

const char *fr_strerror(int status)
{
    switch (status) {
    case FR_OK: return "ok";
    case FR_ERR_INVALID: return "invalid argument or state";
    case FR_ERR_NOMEM: return "out of memory";
    case FR_ERR_IO: return "I/O error";
    case FR_ERR_NOT_LEADER: return "not the leader";
    case FR_ERR_LEADERSHIP_LOST: return "leadership lost before commit";
    case FR_ERR_SHUTDOWN: return "group closed";
    case FR_ERR_BUSY: return "busy (another change or transfer in progress)";
    case FR_ERR_EXISTS: return "already bootstrapped";
    case FR_ERR_TOO_BIG: return "entry too big";
    case FR_ERR_NOT_FOUND: return "not found";
    case FR_ERR_CORRUPT: return "corrupt Raft data";
    default: return "internal Raft error";
    }
}

int fr_status_from_raft(int rv)
{
    switch (rv) {
    case 0: return FR_OK;
    case RAFT_NOMEM: return FR_ERR_NOMEM;
    case RAFT_NOTLEADER: return FR_ERR_NOT_LEADER;
    case RAFT_LEADERSHIPLOST: return FR_ERR_LEADERSHIP_LOST;
    case RAFT_SHUTDOWN:
    case RAFT_CANCELED: return FR_ERR_SHUTDOWN;
    case RAFT_CANTBOOTSTRAP: return FR_ERR_EXISTS;
    case RAFT_CANTCHANGE:
    case RAFT_BUSY: return FR_ERR_BUSY;
    case RAFT_CORRUPT:
    case RAFT_MALFORMED: return FR_ERR_CORRUPT;
    case RAFT_TOOBIG: return FR_ERR_TOO_BIG;
    case RAFT_IOERR:
    case RAFT_NOSPACE: return FR_ERR_IO;
    case RAFT_BADID:
    case RAFT_NOTFOUND: return FR_ERR_NOT_FOUND;
    case RAFT_INVALID:
    case RAFT_BADROLE:
    case RAFT_DUPLICATEID:
    case RAFT_DUPLICATEADDRESS: return FR_ERR_INVALID;
    default: return FR_ERR_INTERNAL;
    }
}

static int raft_error(struct fr_group *g, int rv, const char *what, char *errmsg, size_t errmsg_len)
{
    snprintf(errmsg, errmsg_len, "raft group %s: %s: %s (%s)", g->name, what, raft_strerror(rv),
             raft_errmsg(&g->raft));
    return fr_status_from_raft(rv);
}

static int verbose(void)
{
    const char *e = getenv("FERRY_RAFT_VERBOSE");
    return e != NULL && *e != '\0' && strcmp(e, "0") != 0;
}

/* ---- the transport raft_uv is given: never used for traffic ---- */

static int tr_init(struct raft_uv_transport *t, raft_id id, const char *address)
{
    (void)t;
    (void)id;
    (void)address;
    return 0;
}

static int tr_listen(struct raft_uv_transport *t, raft_uv_accept_cb cb)
{
    (void)t;
    (void)cb;
    return 0;
}

static int tr_connect(struct raft_uv_transport *t, struct raft_uv_connect *req, raft_id id, const char *address,
                      raft_uv_connect_cb cb)
{
    (void)req;
    (void)id;
    (void)address;
    (void)cb;
    snprintf(t->errmsg, sizeof(t->errmsg), "raft/ sends through the node's peer connections");
    return RAFT_NOCONNECTION;
}

static void tr_close(struct raft_uv_transport *t, raft_uv_transport_close_cb cb)
{
    cb(t);
}

/* ---- one tick timer per node and interval ---- */

/*
 * raft_uv gives every group its own repeating tick timer. Groups started at different moments (the
 * deferred open starts one per loop iteration) then tick in different loop iterations, and every
 * iteration also runs each group's raft_uv prepare and check handles: at 1,000 groups the idle CPU
 * tripled. So raft_uv's timer is parked (started with TICK_PARKED_MS) and one timer per (node,
 * interval) ticks every started group of that node in one callback. Raft's tick is time-based
 * (it compares io->time() with its deadlines), so an extra or shifted tick is harmless. A ticker
 * lives while a group uses it; like the openers, the list is per process and assumes one loop thread.
 */
#define TICK_PARKED_MS (3600u * 1000u)

struct fr_ticker {
    struct fr_ticker *next;
    struct fr_node *node;
    unsigned msecs;
    unsigned users; /* groups ticking from it */
    uv_timer_t timer;
};
static struct fr_ticker *tickers;

static void on_ticker(uv_timer_t *t)
{
    struct fr_ticker *k = t->data;
    struct fr_node *n = k->node;
    /* By index: a tick may open or close groups (the array may move; a group ticked twice or
     * skipped once in this pass is harmless). */
    for (unsigned i = 0; i < n->n_groups; i++) {
        struct fr_group *g = n->groups[i];
        if (g->ticking && g->tick_ms == k->msecs)
            g->tick_cb(&g->io);
    }
}

static void on_ticker_closed(uv_handle_t *h)
{
    free(h->data);
}

static int ticker_join(struct fr_group *g, unsigned msecs)
{
    struct fr_ticker *k = tickers;
    while (k != NULL && (k->node != g->node || k->msecs != msecs))
        k = k->next;
    if (k == NULL) {
        k = calloc(1, sizeof(*k));
        if (k == NULL)
            return RAFT_NOMEM;
        k->node = g->node;
        k->msecs = msecs;
        uv_timer_init(g->node->loop, &k->timer);
        k->timer.data = k;
        uv_timer_start(&k->timer, on_ticker, msecs, msecs);
        k->next = tickers;
        tickers = k;
    }
    k->users++;
    g->tick_ms = msecs;
    g->ticking = true;
    return 0;
}

static void ticker_leave(struct fr_group *g)
{
    if (!g->ticking)
        return;
    g->ticking = false;
    for (struct fr_ticker **pp = &tickers; *pp != NULL; pp = &(*pp)->next) {
        struct fr_ticker *k = *pp;
        if (k->node != g->node || k->msecs != g->tick_ms)
            continue;
        assert(k->users > 0);
        if (--k->users == 0) {
            *pp = k->next;
            uv_close((uv_handle_t *)&k->timer, on_ticker_closed);
        }
        return;
    }
    assert(0 && "a ticking group without its ticker");
}

/* ---- raft_io methods we replace ---- */

/*
 * InstallSnapshot while a snapshot is being taken (docs/jepsen.md, finding 1). libraft 0.22.1
 * (src/legacy.c) parks an InstallSnapshot that arrives while the replica's own snapshot_put is in
 * flight as legacy.snapshot_pending, and takeSnapshotCb then resumes it with
 *     r->legacy.snapshot_pending = NULL; persist = r->legacy.snapshot_pending;
 *     legacyPersistSnapshotStart(persist);
 * a NULL dereference (SIGSEGV on the loop thread). Both functions are static, so --wrap cannot
 * reach them; instead the library never sees that state: io_recv holds such a message (the newest
 * one; an older held one is freed) and hands it to Raft once the take completes, as a network delay
 * would. A take is the only snapshot_put with trailing > 0 (group_init_raft sets it non-zero; the
 * install's own put passes 0).
 */
static void held_drop(struct fr_group *g)
{
    if (!g->has_held)
        return;
    raft_free(g->held.install_snapshot.data.base);
    raft_configuration_close(&g->held.install_snapshot.conf);
    g->has_held = false;
}

/* The receive entry point node.c, quiesce.c and failover.c call (g->recv_cb). Takes ownership of msg's buffers. */
static void io_recv(struct raft_io *io, struct raft_message *msg)
{
    struct fr_group *g = container_of(io, struct fr_group, io);
    if (msg->type == RAFT_INSTALL_SNAPSHOT && g->taking) {
        held_drop(g);
        g->held = *msg;
        g->has_held = true;
        return;
    }
    g->lib_recv(io, msg);
}

static void on_take_done(struct raft_io_snapshot_put *req, int status)
{
    struct fr_group *g = req->data;
    assert(g->taking && g->take_cb != NULL);
    req->data = g->take_data;
    raft_io_snapshot_put_cb cb = g->take_cb;
    g->taking = false;
    g->take_cb = NULL;
    cb(req, status); /* may free req */
    if (!g->has_held || g->taking)
        return; /* nothing held, or the library started another take: still held */
    if (g->recv_cb == NULL || g->raft.legacy.snapshot_taking) {
        held_drop(g); /* closing (or a take we did not see): the leader sends it again */
        return;
    }
    struct raft_message m = g->held;
    g->has_held = false;
    g->lib_recv(&g->io, &m);
}

static int io_snapshot_put(struct raft_io *io, unsigned trailing, struct raft_io_snapshot_put *req,
                           const struct raft_snapshot *snapshot, raft_io_snapshot_put_cb cb)
{
    struct fr_group *g = container_of(io, struct fr_group, io);
    if (trailing == 0)
        return g->uv_snapshot_put(io, trailing, req, snapshot, cb); /* an InstallSnapshot's persist */
    assert(!g->taking);
    g->take_cb = cb;
    g->take_data = req->data; /* raft_uv does not read req->data; the library's callback does */
    req->data = g;
    g->taking = true;
    int rv = g->uv_snapshot_put(io, trailing, req, snapshot, on_take_done);
    if (rv != 0) { /* the callback never runs */
        req->data = g->take_data;
        g->taking = false;
        g->take_cb = NULL;
    }
    return rv;
}

static int io_start(struct raft_io *io, unsigned msecs, raft_io_tick_cb tick, raft_io_recv_cb recv)
{
    struct fr_group *g = container_of(io, struct fr_group, io);
    assert(msecs > 0 && !g->ticking);
    g->lib_recv = recv;
    g->recv_cb = io_recv;
    g->tick_cb = tick;
    int rv = ticker_join(g, msecs);
    if (rv != 0)
        return rv;
    rv = g->uv_start(io, TICK_PARKED_MS, tick, recv);
    if (rv != 0)
        ticker_leave(g);
    return rv;
}

/* Raft's clock: raft_uv's, plus a skew that only grows (failover.c moves it forward). */
static raft_time io_time(struct raft_io *io)
{
    struct fr_group *g = container_of(io, struct fr_group, io);
    return g->uv_time(io) + g->time_skew;
}

static int io_send(struct raft_io *io, struct raft_io_send *req, const struct raft_message *msg, raft_io_send_cb cb)
{
    struct fr_group *g = container_of(io, struct fr_group, io);
    return fr_node_send(g->node, g, req, msg, cb);
}

static void io_close(struct raft_io *io, raft_io_close_cb cb)
{
    struct fr_group *g = container_of(io, struct fr_group, io);
    ticker_leave(g);
    g->recv_cb = NULL;
    held_drop(g);
    fr_node_flush_sends(g->node, g);
    g->uv_close(io, cb);
}

/* ---- fsm adapter ---- */

#define ENTRY_HDR 8

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result)
{
    struct fr_group *g = fsm->data;
    /* The legacy layer sets last_applied after apply returns, so this entry is the next one. */
    uint64_t index = raft_last_applied(&g->raft) + 1;
    *result = NULL;
    /* Entry = 8-byte header (u32 big-endian payload length, u32 zero), payload, zero padding to a
     * multiple of 8 (raft_uv refuses entries whose length is not 8-byte aligned). */
    const uint8_t *p = buf->base;
    if (buf->len < ENTRY_HDR)
        return RAFT_IOERR;
    size_t len = ((size_t)p[0] << 24) | ((size_t)p[1] << 16) | ((size_t)p[2] << 8) | p[3];
    if (len > buf->len - ENTRY_HDR)
        return RAFT_IOERR;
    int rc = g->user.apply(g->user.data, index, p + ENTRY_HDR, len, result);
    return rc == 0 ? 0 : RAFT_IOERR;
}

static int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
    struct fr_group *g = fsm->data;
    uint8_t *data = NULL;
    size_t len = 0;
    if (g->user.snapshot(g->user.data, &data, &len) != 0)
        return RAFT_IOERR;
    *bufs = raft_malloc(sizeof(**bufs));
    uint8_t *p = raft_malloc(SNAP_HDR + len);
    if (*bufs == NULL || p == NULL) {
        raft_free(*bufs);
        raft_free(p);
        free(data);
        return RAFT_NOMEM;
    }
    /* Taken at the commit index, which the legacy layer has applied in full. */
    uint64_t index = raft_last_applied(&g->raft);
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(index >> (56 - 8 * i));
    if (len > 0)
        memcpy(p + SNAP_HDR, data, len);
    free(data);
    (*bufs)[0].base = p;
    (*bufs)[0].len = SNAP_HDR + len;
    *n_bufs = 1;
    return 0;
}

/* On success the buffer is ours to free (the library's contract for restore). */
static int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
    struct fr_group *g = fsm->data;
    const uint8_t *p = buf->base;
    if (buf->len < SNAP_HDR)
        return RAFT_MALFORMED;
    uint64_t index = 0;
    for (int i = 0; i < 8; i++)
        index = (index << 8) | p[i];
    if (g->user.restore(g->user.data, index, p + SNAP_HDR, buf->len - SNAP_HDR) != 0)
        return RAFT_MALFORMED;
    raft_free(buf->base);
    return 0;
}

/* After every raft step: report role and leader changes. */
static void on_step(struct raft *r)
{
    struct fr_group *g = container_of(r, struct fr_group, raft);
    if (g->user.on_role == NULL || g->state != FR_GROUP_STARTED)
        return;
    raft_id leader = 0;
    const char *addr = NULL;
    raft_leader(r, &leader, &addr);
    int is_leader = raft_state(r) == RAFT_LEADER;
    uint64_t term = raft_current_term(r);
    if (is_leader == g->last_is_leader && leader == g->last_leader && (!is_leader || term == g->last_term))
        return;
    g->last_is_leader = is_leader;
    g->last_leader = leader;
    g->last_term = term;
    g->user.on_role(g->user.data, is_leader, leader, term);
}

/* ---- lifecycle ---- */

static void on_raft_closed(struct raft *r);

/*
 * The library's part of an open: raft_uv_init (cheap: allocation) and raft_init, which runs raft_uv's
 * disk probe: it writes a probe file with O_DIRECT through a kernel AIO context and destroys the
 * context; io_destroy waits for an RCU grace period, ~32 ms here, whatever the disk. Then our settings.
 * On failure nothing of the library is left (g->has_raft stays false).
 */
static int group_init_raft(struct fr_group *g, char *errmsg, size_t errmsg_len)
{
    struct fr_node *n = g->node;
    const struct fr_group_config *cfg = &g->cfg;
    assert(!g->has_raft);
    g->transport.version = 1; /* 0.22 rejects 0 */
    g->transport.init = tr_init;
    g->transport.listen = tr_listen;
    g->transport.connect = tr_connect;
    g->transport.close = tr_close;
    int rc = raft_uv_init(&g->io, n->loop, g->dir, &g->transport);
    if (rc != 0) {
        snprintf(errmsg, errmsg_len, "raft group %s: raft_uv_init %s: %s", g->name, g->dir, g->io.errmsg);
        return fr_status_from_raft(rc);
    }
    raft_uv_set_segment_size(&g->io, cfg->segment_bytes ? cfg->segment_bytes : 1024 * 1024);
    g->uv_start = g->io.start;
    g->uv_close = g->io.close;
    g->uv_time = g->io.time;
    g->uv_snapshot_put = g->io.snapshot_put;
    g->io.snapshot_put = io_snapshot_put;
    g->io.time = io_time;
    g->io.start = io_start;
    g->io.send = io_send;
    g->io.close = io_close;

    g->fsm.version = 1;
    g->fsm.data = g;
    g->fsm.apply = fsm_apply;
    g->fsm.snapshot = fsm_snapshot;
    g->fsm.restore = fsm_restore;
    rc = raft_init(&g->raft, &g->io, &g->fsm, n->id, n->idstr);
    if (rc != 0) {
        snprintf(errmsg, errmsg_len, "raft group %s: raft_init: %s", g->name, raft_errmsg(&g->raft));
        raft_uv_close(&g->io);
        return fr_status_from_raft(rc);
    }
    if (!verbose())
        g->raft.tracer = NULL;
    raft_set_election_timeout(&g->raft, cfg->election_timeout_ms ? cfg->election_timeout_ms : 1000);
    raft_set_heartbeat_timeout(&g->raft, cfg->heartbeat_timeout_ms ? cfg->heartbeat_timeout_ms : 100);
    raft_set_snapshot_threshold(&g->raft, cfg->snapshot_threshold ? cfg->snapshot_threshold : 1024);
    raft_set_snapshot_trailing(&g->raft, cfg->snapshot_trailing ? cfg->snapshot_trailing : 256);
    /* The legacy layer refuses proposals (RAFT_NOSPACE) while a majority reports less than 4 MiB of
     * prepared segment space, sized for the library's 8 MiB segments; with our small segments that
     * would refuse everything. Disk full is then an append error (the leader steps down). */
    raft_set_capacity_threshold(&g->raft, 0);
    /* A replica that was cut off must not disrupt a healthy leader when it returns. */
    raft_set_pre_vote(&g->raft, true);
    g->raft.legacy.step_cb = on_step;
    g->has_raft = true;
    return FR_OK;
}

int fr_group_open(struct fr_node *n, const struct fr_group_config *cfg, struct fr_group **out, char *errmsg,
                  size_t errmsg_len)
{
    *out = NULL;
    if (n->stopping || cfg->group_id == 0 || cfg->fsm.apply == NULL || cfg->fsm.snapshot == NULL ||
        cfg->fsm.restore == NULL) {
        snprintf(errmsg, errmsg_len, "raft group: bad configuration");
        return FR_ERR_INVALID;
    }
    if (fr_node_find_group(n, cfg->group_id) != NULL) {
        snprintf(errmsg, errmsg_len, "raft group %llu is already open", (unsigned long long)cfg->group_id);
        return FR_ERR_INVALID;
    }
    struct fr_group *g = calloc(1, sizeof(*g));
    if (g == NULL) {
        snprintf(errmsg, errmsg_len, "out of memory");
        return FR_ERR_NOMEM;
    }
    g->node = n;
    g->id = cfg->group_id;
    g->user = cfg->fsm;
    g->cfg = *cfg;
    g->cfg.name = NULL; /* borrowed by the caller: g->name is our copy */
    if (cfg->name != NULL)
        snprintf(g->name, sizeof(g->name), "%s", cfg->name);
    else
        snprintf(g->name, sizeof(g->name), "g%llu", (unsigned long long)g->id);
    /* data_dir is shorter than PATH_MAX - 32 (fr_node_start checks), so this always fits. */
    int rc = snprintf(g->dir, sizeof(g->dir), "%.*s/g%llu", PATH_MAX - 32, n->data_dir,
                      (unsigned long long)g->id) < (int)sizeof(g->dir)
                 ? FR_OK
                 : FR_ERR_INVALID;
    if (rc == FR_OK)
        rc = fr_mkdir_p(g->dir, errmsg, errmsg_len);
    if (rc != FR_OK)
        goto err_after_alloc;
    if (!cfg->defer_open) {
        rc = group_init_raft(g, errmsg, errmsg_len);
        if (rc != FR_OK)
            goto err_after_alloc;
    }

    rc = fr_node_add_group(n, g);
    if (rc != FR_OK) {
        snprintf(errmsg, errmsg_len, "out of memory");
        if (!g->has_raft)
            goto err_after_alloc;
        /* Only out of memory gets here (duplicates were checked); raft needs an async close. */
        g->close_requested = true;
        g->state = FR_GROUP_CLOSING;
        raft_close(&g->raft, on_raft_closed);
        return rc;
    }
    g->state = FR_GROUP_OPEN;
    *out = g;
    return FR_OK;

err_after_alloc:
    free(g);
    return rc;
}

/* raft_bootstrap with these voters; FR_ERR_EXISTS when the group has state on disk already. */
static int group_bootstrap_now(struct fr_group *g, const uint64_t *members, unsigned n_members, char *errmsg,
                               size_t errmsg_len)
{
    assert(g->has_raft && g->state == FR_GROUP_OPEN);
    struct raft_configuration conf;
    raft_configuration_init(&conf);
    int rc = 0;
    for (unsigned i = 0; i < n_members && rc == 0; i++) {
        char idstr[FR_IDSTR_MAX];
        snprintf(idstr, sizeof(idstr), "%llu", (unsigned long long)members[i]);
        rc = raft_configuration_add(&conf, members[i], idstr, RAFT_VOTER);
    }
    if (rc != 0) {
        raft_configuration_close(&conf);
        snprintf(errmsg, errmsg_len, "raft group %s: bad member list: %s", g->name, raft_strerror(rc));
        return fr_status_from_raft(rc);
    }
    rc = raft_bootstrap(&g->raft, &conf);
    raft_configuration_close(&conf);
    if (rc == RAFT_CANTBOOTSTRAP)
        return FR_ERR_EXISTS;
    if (rc != 0)
        return raft_error(g, rc, "bootstrap", errmsg, errmsg_len);
    return FR_OK;
}

int fr_group_bootstrap(struct fr_group *g, const uint64_t *members, unsigned n_members, char *errmsg,
                       size_t errmsg_len)
{
    if (g->state != FR_GROUP_OPEN || n_members == 0 || n_members > FR_MAX_MEMBERS || g->start_requested ||
        g->boot_ids != NULL) {
        snprintf(errmsg, errmsg_len, "raft group %s: bootstrap needs an unstarted group and 1..%u members", g->name,
                 FR_MAX_MEMBERS);
        return FR_ERR_INVALID;
    }
    if (g->has_raft)
        return group_bootstrap_now(g, members, n_members, errmsg, errmsg_len);
    /* Deferred: kept for the real open (where CANTBOOTSTRAP, a restart, is normal and silent). */
    g->boot_ids = malloc(n_members * sizeof(*g->boot_ids));
    if (g->boot_ids == NULL) {
        snprintf(errmsg, errmsg_len, "out of memory");
        return FR_ERR_NOMEM;
    }
    memcpy(g->boot_ids, members, n_members * sizeof(*g->boot_ids));
    g->n_boot = n_members;
    return FR_OK;
}

static int group_start_now(struct fr_group *g, char *errmsg, size_t errmsg_len)
{
    assert(g->has_raft && g->state == FR_GROUP_OPEN);
    g->state = FR_GROUP_STARTED;
    int rc = raft_start(&g->raft);
    if (rc != 0) {
        g->state = FR_GROUP_OPEN;
        return raft_error(g, rc, "start", errmsg, errmsg_len);
    }
    return FR_OK;
}

/* ---- deferred open ---- */

/*
 * A node's queue of deferred groups waiting for their real open (fr_group_config.defer_open), driven
 * by a timer that fires every loop iteration while the queue is not empty: each firing first finishes
 * the closes of queued groups that were closed before they opened, then opens one group (raft_init,
 * bootstrap, start), so the loop polls for I/O between two opens. The queues live here, not in the
 * node (whose struct belongs to node.c), keyed by node; ferryd and the tests run every node of a
 * process on one loop thread, which is what makes the static list safe. An opener disappears (its
 * timer closed) as soon as its queue is empty.
 */
struct fr_opener {
    struct fr_opener *next;
    struct fr_node *node;
    uv_timer_t timer;
    struct fr_group *head, *tail;
};
static struct fr_opener *openers;

static void open_failed(struct fr_group *g, int status, const char *msg)
{
    if (g->cfg.on_open_failed != NULL)
        g->cfg.on_open_failed(g->user.data, status, msg);
    else
        fprintf(stderr, "raft group %s: deferred open failed: %s\n", g->name, msg);
}

/* Finishes the close of a group that never got its Raft state (closed while queued, or its open
 * failed): nothing of the library to close. Runs from the opener, never inside fr_group_close. */
static void finish_close_without_raft(struct fr_group *g)
{
    struct fr_node *n = g->node;
    assert(!g->has_raft && g->state == FR_GROUP_CLOSING);
    fr_node_remove_group(n, g);
    fr_group_close_cb cb = g->close_cb;
    void *arg = g->close_arg;
    if (cb != NULL)
        cb(arg);
    free(g->boot_ids);
    free(g);
    fr_node_group_closed(n);
}

/* The real open of a deferred group that was taken off its queue. */
static void open_deferred(struct fr_group *g)
{
    char msg[512];
    assert(g->state == FR_GROUP_OPEN && !g->has_raft);
    int rc = group_init_raft(g, msg, sizeof(msg));
    if (rc != FR_OK) {
        open_failed(g, rc, msg);
        return;
    }
    if (g->boot_ids != NULL) {
        uint64_t *ids = g->boot_ids;
        unsigned n_ids = g->n_boot;
        g->boot_ids = NULL;
        g->n_boot = 0;
        rc = group_bootstrap_now(g, ids, n_ids, msg, sizeof(msg));
        free(ids);
        if (rc != FR_OK && rc != FR_ERR_EXISTS)
            open_failed(g, rc, msg);
    }
    if (g->start_requested && !g->node->stopping) {
        rc = group_start_now(g, msg, sizeof(msg));
        if (rc != FR_OK)
            open_failed(g, rc, msg);
    }
}

static void on_opener_closed(uv_handle_t *h)
{
    free(h->data);
}

static void opener_unlink(struct fr_opener *o)
{
    for (struct fr_opener **pp = &openers; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == o) {
            *pp = o->next;
            break;
        }
    }
}

static void on_opener_timer(uv_timer_t *t)
{
    struct fr_opener *o = t->data;
    /* Take every group off the queue first that closed while queued (they are at the front), then
     * one to open. Callbacks may queue or close more groups: the queue is consistent before each. */
    for (;;) {
        struct fr_group *g = o->head;
        if (g == NULL)
            break;
        o->head = g->open_next;
        if (o->head == NULL)
            o->tail = NULL;
        g->open_next = NULL;
        g->queued = false;
        if (g->state == FR_GROUP_CLOSING) {
            finish_close_without_raft(g); /* may free the node (last group of a stop) */
            continue;
        }
        open_deferred(g);
        break;
    }
    if (o->head == NULL) {
        opener_unlink(o);
        uv_close((uv_handle_t *)&o->timer, on_opener_closed);
    }
}

/* Queues g (at the front when it is closing: that needs no open first). */
static int opener_queue(struct fr_group *g, bool front)
{
    struct fr_opener *o = openers;
    while (o != NULL && o->node != g->node)
        o = o->next;
    if (o == NULL) {
        o = calloc(1, sizeof(*o));
        if (o == NULL)
            return FR_ERR_NOMEM;
        o->node = g->node;
        uv_timer_init(g->node->loop, &o->timer);
        o->timer.data = o;
        /* Repeat 1 ms: libuv re-arms a due timer only after the loop polled again. */
        uv_timer_start(&o->timer, on_opener_timer, 0, 1);
        o->next = openers;
        openers = o;
    }
    assert(!g->queued);
    g->queued = true;
    if (front) {
        g->open_next = o->head;
        o->head = g;
        if (o->tail == NULL)
            o->tail = g;
    } else {
        g->open_next = NULL;
        if (o->tail != NULL)
            o->tail->open_next = g;
        else
            o->head = g;
        o->tail = g;
    }
    return FR_OK;
}

/* Takes g off its queue (it is closing): it goes back at the front, to be finished first. */
static int opener_requeue_front(struct fr_group *g)
{
    struct fr_opener *o = openers;
    while (o != NULL && o->node != g->node)
        o = o->next;
    if (o != NULL && g->queued) {
        struct fr_group *prev = NULL;
        for (struct fr_group *x = o->head; x != NULL; prev = x, x = x->open_next) {
            if (x != g)
                continue;
            if (prev != NULL)
                prev->open_next = g->open_next;
            else
                o->head = g->open_next;
            if (o->tail == g)
                o->tail = prev;
            break;
        }
        g->queued = false;
        g->open_next = NULL;
    }
    return opener_queue(g, true);
}

int fr_group_start(struct fr_group *g, char *errmsg, size_t errmsg_len)
{
    if (g->state != FR_GROUP_OPEN || g->start_requested) {
        snprintf(errmsg, errmsg_len, "raft group %s: already started or closing", g->name);
        return FR_ERR_INVALID;
    }
    if (g->has_raft)
        return group_start_now(g, errmsg, errmsg_len);
    if (opener_queue(g, false) != FR_OK) {
        snprintf(errmsg, errmsg_len, "out of memory");
        return FR_ERR_NOMEM;
    }
    g->start_requested = true;
    return FR_OK;
}

static void on_raft_closed(struct raft *r)
{
    struct fr_group *g = container_of(r, struct fr_group, raft);
    struct fr_node *n = g->node;
    raft_uv_close(&g->io);
    fr_node_remove_group(n, g);
    fr_group_close_cb cb = g->close_cb;
    void *arg = g->close_arg;
    if (cb != NULL)
        cb(arg);
    free(g->boot_ids);
    free(g);
    fr_node_group_closed(n);
}

void fr_group_close(struct fr_group *g, fr_group_close_cb cb, void *arg)
{
    if (g->close_requested) {
        if (g->close_cb == NULL) {
            g->close_cb = cb;
            g->close_arg = arg;
        }
        return;
    }
    g->close_requested = true;
    g->close_cb = cb;
    g->close_arg = arg;
    g->state = FR_GROUP_CLOSING;
    if (g->has_raft) {
        raft_close(&g->raft, on_raft_closed);
        return;
    }
    /* Never opened (deferred): finished from the opener's next firing. Without memory for an opener
     * (a few dozen bytes) there is no safe way to call back later. */
    if (opener_requeue_front(g) != FR_OK)
        abort();
}

void fr_group_close_for_stop(struct fr_group *g)
{
    if (!g->close_requested)
        fr_group_close(g, NULL, NULL);
}

/* ---- requests ---- */

static struct fr_req *req_new(struct fr_group *g, void *arg, char *errmsg, size_t errmsg_len)
{
    if (g->state != FR_GROUP_STARTED) {
        snprintf(errmsg, errmsg_len, "raft group %s: not started", g->name);
        return NULL;
    }
    struct fr_req *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        snprintf(errmsg, errmsg_len, "out of memory");
        return NULL;
    }
    r->g = g;
    r->arg = arg;
    return r;
}

static int req_fail(struct fr_req *r, int rv, const char *what, char *errmsg, size_t errmsg_len)
{
    int rc = raft_error(r->g, rv, what, errmsg, errmsg_len);
    free(r);
    return rc;
}

static void on_applied(struct raft_apply *req, int status, void *result)
{
    struct fr_req *r = (struct fr_req *)req;
    r->cb.propose(r->arg, fr_status_from_raft(status), status == 0 ? req->index : 0, result);
    free(r);
}

int fr_group_propose(struct fr_group *g, const void *buf, size_t len, fr_propose_cb cb, void *arg, char *errmsg,
                     size_t errmsg_len)
{
    if (len > FR_MAX_ENTRY_BYTES) {
        snprintf(errmsg, errmsg_len, "raft group %s: entry of %zu bytes exceeds %u", g->name, len,
                 FR_MAX_ENTRY_BYTES);
        return FR_ERR_TOO_BIG;
    }
    struct fr_req *r = req_new(g, arg, errmsg, errmsg_len);
    if (r == NULL)
        return g->state != FR_GROUP_STARTED ? FR_ERR_INVALID : FR_ERR_NOMEM;
    if (raft_state(&g->raft) != RAFT_LEADER) {
        free(r);
        snprintf(errmsg, errmsg_len, "raft group %s: not the leader", g->name);
        return FR_ERR_NOT_LEADER;
    }
    r->cb.propose = cb;
    size_t total = ENTRY_HDR + ((len + 7) & ~(size_t)7); /* see fsm_apply */
    struct raft_buffer b = {.base = raft_calloc(1, total), .len = total};
    if (b.base == NULL) {
        free(r);
        snprintf(errmsg, errmsg_len, "out of memory");
        return FR_ERR_NOMEM;
    }
    uint8_t *h = b.base;
    h[0] = (uint8_t)(len >> 24);
    h[1] = (uint8_t)(len >> 16);
    h[2] = (uint8_t)(len >> 8);
    h[3] = (uint8_t)len;
    if (len > 0)
        memcpy(h + ENTRY_HDR, buf, len);
    int rv = raft_apply(&g->raft, &r->u.apply, &b, 1, on_applied);
    if (rv != 0) {
        /* Refused before the entry reached the log (NOTLEADER: a transfer is in progress): the buffer
         * is still ours. Any later failure discards the entry from the log, which frees it. */
        if (rv == RAFT_NOTLEADER)
            raft_free(b.base);
        return req_fail(r, rv, "propose", errmsg, errmsg_len);
    }
    return FR_OK;
}

static void on_barrier(struct raft_barrier *req, int status)
{
    struct fr_req *r = (struct fr_req *)req;
    r->cb.done(r->arg, fr_status_from_raft(status));
    free(r);
}

int fr_group_barrier(struct fr_group *g, fr_done_cb cb, void *arg, char *errmsg, size_t errmsg_len)
{
    struct fr_req *r = req_new(g, arg, errmsg, errmsg_len);
    if (r == NULL)
        return g->state != FR_GROUP_STARTED ? FR_ERR_INVALID : FR_ERR_NOMEM;
    r->cb.done = cb;
    int rv = raft_barrier(&g->raft, &r->u.barrier, on_barrier);
    if (rv != 0)
        return req_fail(r, rv, "barrier", errmsg, errmsg_len);
    return FR_OK;
}

static void on_transfer(struct raft_transfer *req)
{
    struct fr_req *r = (struct fr_req *)req;
    struct fr_group *g = r->g;
    int status = g->state == FR_GROUP_CLOSING           ? FR_ERR_SHUTDOWN
                 : raft_state(&g->raft) != RAFT_LEADER ? FR_OK
                                                       : FR_ERR_BUSY;
    r->cb.done(r->arg, status);
    free(r);
}

int fr_group_transfer(struct fr_group *g, uint64_t target, fr_done_cb cb, void *arg, char *errmsg,
                      size_t errmsg_len)
{
    struct fr_req *r = req_new(g, arg, errmsg, errmsg_len);
    if (r == NULL)
        return g->state != FR_GROUP_STARTED ? FR_ERR_INVALID : FR_ERR_NOMEM;
    r->cb.done = cb;
    int rv = raft_transfer(&g->raft, &r->u.transfer, target, on_transfer);
    if (rv != 0)
        return req_fail(r, rv, "transfer", errmsg, errmsg_len);
    return FR_OK;
}

static void on_change_done(struct raft_change *req, int status)
{
    struct fr_req *r = (struct fr_req *)req;
    r->cb.done(r->arg, fr_status_from_raft(status));
    free(r);
}

/* add_member, step 1 done (added as a spare): promote to voter (raft catches it up first). */
static void on_member_added(struct raft_change *req, int status)
{
    struct fr_req *r = (struct fr_req *)req;
    struct fr_group *g = r->g;
    if (status == 0 && g->state == FR_GROUP_STARTED) {
        memset(&r->u.change, 0, sizeof(r->u.change));
        int rv = raft_assign(&g->raft, &r->u.change, r->member, RAFT_VOTER, on_change_done);
        if (rv == 0)
            return;
        status = rv;
    }
    r->cb.done(r->arg, status == 0 ? FR_ERR_SHUTDOWN : fr_status_from_raft(status));
    free(r);
}

int fr_group_add_member(struct fr_group *g, uint64_t id, fr_done_cb cb, void *arg, char *errmsg,
                        size_t errmsg_len)
{
    struct fr_req *r = req_new(g, arg, errmsg, errmsg_len);
    if (r == NULL)
        return g->state != FR_GROUP_STARTED ? FR_ERR_INVALID : FR_ERR_NOMEM;
    r->cb.done = cb;
    r->member = id;
    char idstr[FR_IDSTR_MAX];
    snprintf(idstr, sizeof(idstr), "%llu", (unsigned long long)id);
    int rv = raft_add(&g->raft, &r->u.change, id, idstr, on_member_added);
    if (rv != 0)
        return req_fail(r, rv, "add member", errmsg, errmsg_len);
    return FR_OK;
}

int fr_group_remove_member(struct fr_group *g, uint64_t id, fr_done_cb cb, void *arg, char *errmsg,
                           size_t errmsg_len)
{
    struct fr_req *r = req_new(g, arg, errmsg, errmsg_len);
    if (r == NULL)
        return g->state != FR_GROUP_STARTED ? FR_ERR_INVALID : FR_ERR_NOMEM;
    r->cb.done = cb;
    int rv = raft_remove(&g->raft, &r->u.change, id, on_change_done);
    if (rv != 0)
        return req_fail(r, rv, "remove member", errmsg, errmsg_len);
    return FR_OK;
}

/* ---- state ---- */

int fr_group_is_leader(const struct fr_group *g)
{
    return g->state == FR_GROUP_STARTED && raft_state((struct raft *)&g->raft) == RAFT_LEADER;
}

uint64_t fr_group_leader(const struct fr_group *g, const char **address)
{
    raft_id id = 0;
    const char *a = NULL;
    if (g->state == FR_GROUP_STARTED)
        raft_leader((struct raft *)&g->raft, &id, &a);
    if (address != NULL) {
        *address = NULL;
        if (id == g->node->id) {
            *address = g->node->addr;
        } else if (id != 0) {
            struct fr_peer *p = fr_node_find_peer(g->node, id);
            if (p != NULL && p->port > 0)
                *address = p->addr;
        }
    }
    return id;
}

uint64_t fr_group_id(const struct fr_group *g)
{
    return g->id;
}

const char *fr_group_name(const struct fr_group *g)
{
    return g->name;
}

/* The state getters answer 0 for a deferred group that is not open yet (no Raft state). */
uint64_t fr_group_term(const struct fr_group *g)
{
    return g->has_raft ? raft_current_term(&g->raft) : 0;
}

uint64_t fr_group_commit_index(const struct fr_group *g)
{
    return g->has_raft ? raft_commit_index(&g->raft) : 0;
}

uint64_t fr_group_applied_index(const struct fr_group *g)
{
    return g->has_raft ? raft_last_applied((struct raft *)&g->raft) : 0;
}

uint64_t fr_group_last_index(const struct fr_group *g)
{
    return g->has_raft ? raft_last_index((struct raft *)&g->raft) : 0;
}

unsigned fr_group_members(const struct fr_group *g, uint64_t *ids, unsigned cap, unsigned *voters)
{
    const struct raft_configuration *c = &g->raft.configuration; /* zeroed until a deferred open */
    unsigned v = 0;
    for (unsigned i = 0; i < c->n; i++) {
        if (i < cap)
            ids[i] = c->servers[i].id;
        if (c->servers[i].role == RAFT_VOTER)
            v++;
    }
    if (voters != NULL)
        *voters = v;
    return c->n;
}
