/* mr_harness.c: several fr_node brokers on one libuv loop in one test process, with recording state machines. */
#include "mr_harness.h"

#include <criterion/criterion.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net/conn.h"

static double mult(void)
{
    const char *e = getenv("FERRY_TEST_TIMEOUT_MULT");
    double v = e ? strtod(e, NULL) : 1.0;
    return v >= 1.0 && v <= 100.0 ? v : 1.0;
}

/* ---- recording state machine ---- */

static int sm_apply(void *data, uint64_t index, const uint8_t *buf, size_t len, void **result)
{
    struct mr_sm *sm = data;
    *result = NULL;
    if (len != 8) {
        snprintf(sm->violation, sizeof(sm->violation), "entry %llu of %zu bytes", (unsigned long long)index, len);
        return 0;
    }
    if (index <= sm->last_index && sm->violation[0] == '\0')
        snprintf(sm->violation, sizeof(sm->violation), "index %llu applied after %llu", (unsigned long long)index,
                 (unsigned long long)sm->last_index);
    if (sm->n == sm->cap) {
        unsigned cap = sm->cap ? sm->cap * 2 : 64;
        struct mr_applied *a = realloc(sm->log, cap * sizeof(*a));
        if (a == NULL)
            return 1;
        sm->log = a;
        sm->cap = cap;
    }
    uint64_t id;
    memcpy(&id, buf, 8);
    sm->log[sm->n++] = (struct mr_applied){.index = index, .id = id};
    sm->last_index = index;
    return 0;
}

static int sm_snapshot(void *data, uint8_t **buf, size_t *len)
{
    struct mr_sm *sm = data;
    *len = (size_t)sm->n * sizeof(struct mr_applied);
    *buf = malloc(*len ? *len : 1);
    if (*buf == NULL)
        return 1;
    if (*len)
        memcpy(*buf, sm->log, *len);
    return 0;
}

static int sm_restore(void *data, uint64_t index, const uint8_t *buf, size_t len)
{
    struct mr_sm *sm = data;
    if (len % sizeof(struct mr_applied) != 0)
        return 1;
    unsigned n = (unsigned)(len / sizeof(struct mr_applied));
    struct mr_applied *a = malloc(len ? len : 1);
    if (a == NULL)
        return 1;
    if (len)
        memcpy(a, buf, len);
    free(sm->log);
    sm->log = a;
    sm->n = sm->cap = n;
    if (n > 0 && a[n - 1].index > index && sm->violation[0] == '\0')
        snprintf(sm->violation, sizeof(sm->violation), "snapshot at %llu holds index %llu",
                 (unsigned long long)index, (unsigned long long)a[n - 1].index);
    sm->last_index = index;
    sm->restores++;
    return 0;
}

static void sm_reset(struct mr_sm *sm)
{
    free(sm->log);
    memset(sm, 0, sizeof(*sm));
}

/* ---- cluster ---- */

static void on_wake(uv_timer_t *t)
{
    (void)t;
}

static const char *cert_dir(struct mr_cluster *c, char *out, size_t out_len)
{
    const char *b = getenv("FERRY_BUILD");
    if (b != NULL) {
        snprintf(out, out_len, "%s/certs", b);
        char ca[600];
        snprintf(ca, sizeof(ca), "%s/ca.crt", out);
        if (access(ca, R_OK) == 0)
            return out;
    }
    /* No built certificates: generate a set into the test's temp dir (needs the repo as cwd). */
    snprintf(out, out_len, "%s/certs", c->dir);
    char cmd[800];
    snprintf(cmd, sizeof(cmd), "ops/gen-certs.sh '%s' >/dev/null 2>&1", out);
    cr_assert(system(cmd) == 0, "ops/gen-certs.sh failed (run from the repository root, or set FERRY_BUILD)");
    return out;
}

void mr_init(struct mr_cluster *c, unsigned n_nodes, bool tls)
{
    memset(c, 0, sizeof(*c));
    cr_assert(n_nodes <= MR_MAX_NODES);
    cr_assert(uv_loop_init(&c->loop) == 0);
    uv_timer_init(&c->loop, &c->wake);
    const char *tmp = getenv("TMPDIR");
    snprintf(c->dir, sizeof(c->dir), "%s/ferry-mr.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    cr_assert(mkdtemp(c->dir) != NULL);
    c->n_nodes = n_nodes;
    for (unsigned i = 0; i < n_nodes; i++) {
        c->nodes[i].id = i + 1;
        snprintf(c->nodes[i].dir, sizeof(c->nodes[i].dir), "%s/node%u", c->dir, i + 1);
    }
    c->tls = tls;
    if (tls) {
        char dir[300], ca[400], crt[400], key[400], ccrt[400], ckey[400], err[256];
        cert_dir(c, dir, sizeof(dir));
        snprintf(ca, sizeof(ca), "%s/ca.crt", dir);
        snprintf(crt, sizeof(crt), "%s/server.crt", dir);
        snprintf(key, sizeof(key), "%s/server.key", dir);
        snprintf(ccrt, sizeof(ccrt), "%s/client.crt", dir);
        snprintf(ckey, sizeof(ckey), "%s/client.key", dir);
        struct ferry_tls_config s = {.ca_file = ca, .cert_file = crt, .key_file = key, .require_client_cert = 1,
                                     .min_version_tls13 = 1};
        struct ferry_tls_config cl = {.ca_file = ca, .cert_file = ccrt, .key_file = ckey, .min_version_tls13 = 1};
        c->tls_server = ferry_tls_server_ctx_new(&s, err, sizeof(err));
        cr_assert(c->tls_server != NULL, "%s", err);
        c->tls_client = ferry_tls_client_ctx_new(&cl, err, sizeof(err));
        cr_assert(c->tls_client != NULL, "%s", err);
    }
    c->gcfg.election_timeout_ms = 500;
    c->gcfg.heartbeat_timeout_ms = 50;
    c->gcfg.snapshot_threshold = 64;
    c->gcfg.snapshot_trailing = 16;
    c->gcfg.segment_bytes = 256 * 1024;
    c->next_id = 1;
}

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void on_node_stopped(void *arg)
{
    struct mr_cluster *c = arg;
    c->stopping--;
}

void mr_teardown(struct mr_cluster *c)
{
    for (unsigned i = 0; i < c->n_nodes; i++)
        if (c->nodes[i].up)
            mr_node_stop(c, i);
    uv_close((uv_handle_t *)&c->wake, NULL);
    uv_run(&c->loop, UV_RUN_DEFAULT);
    if (c->tls_server)
        ferry_tls_ctx_free(c->tls_server);
    if (c->tls_client)
        ferry_tls_ctx_free(c->tls_client);
    int rc = uv_loop_close(&c->loop);
    for (unsigned i = 0; i < c->n_nodes; i++)
        for (unsigned g = 0; g < MR_MAX_GROUPS; g++)
            sm_reset(&c->nodes[i].sm[g]);
    nftw(c->dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    cr_assert_eq(rc, 0, "uv_loop_close: handles left open");
}

void mr_node_start(struct mr_cluster *c, unsigned i)
{
    struct mr_node *m = &c->nodes[i];
    cr_assert(!m->up);
    char err[256];
    struct fr_node_config cfg = {
        .loop = &c->loop,
        .node_id = m->id,
        .cluster_id = 0xfe77,
        .listen_host = "127.0.0.1",
        .listen_port = 0,
        .data_dir = m->dir,
        .tls_server = c->tls_server,
        .tls_client = c->tls_client,
        .disable_quiescence = c->no_quiesce,
        .heartbeat_ms = c->gcfg.heartbeat_timeout_ms,
        .link_timeout_ms = c->gcfg.election_timeout_ms,
    };
    int rc = fr_node_start(&cfg, &m->node, err, sizeof(err));
    cr_assert_eq(rc, FR_OK, "node %u: %s", i + 1, err);
    m->port = fr_node_port(m->node);
    m->up = true;
    for (unsigned j = 0; j < c->n_nodes; j++) {
        struct mr_node *o = &c->nodes[j];
        if (j == i || !o->up)
            continue;
        cr_assert_eq(fr_node_set_peer(m->node, o->id, "127.0.0.1", o->port, err, sizeof(err)), FR_OK, "%s", err);
        cr_assert_eq(fr_node_set_peer(o->node, m->id, "127.0.0.1", m->port, err, sizeof(err)), FR_OK, "%s", err);
    }
}

void mr_node_stop(struct mr_cluster *c, unsigned i)
{
    struct mr_node *m = &c->nodes[i];
    cr_assert(m->up);
    c->stopping++;
    fr_node_stop(m->node, on_node_stopped, c);
    m->node = NULL;
    m->up = false;
    memset(m->groups, 0, sizeof(m->groups));
    while (c->stopping > 0)
        uv_run(&c->loop, UV_RUN_ONCE);
    for (unsigned g = 0; g < MR_MAX_GROUPS; g++)
        sm_reset(&m->sm[g]);
}

void mr_open_groups(struct mr_cluster *c, unsigned i, unsigned first, unsigned count, const unsigned *members,
                    unsigned n_members)
{
    struct mr_node *m = &c->nodes[i];
    cr_assert(first + count <= MR_MAX_GROUPS);
    uint64_t ids[MR_MAX_NODES];
    for (unsigned k = 0; k < n_members; k++)
        ids[k] = c->nodes[members[k]].id;
    for (unsigned gi = first; gi < first + count; gi++) {
        struct fr_group_config cfg = c->gcfg;
        char name[32];
        snprintf(name, sizeof(name), "test/%u", gi);
        cfg.group_id = 1000 + gi;
        cfg.name = name;
        cfg.fsm = (struct fr_fsm){.data = &m->sm[gi], .apply = sm_apply, .snapshot = sm_snapshot,
                                  .restore = sm_restore};
        char err[256];
        int rc = fr_group_open(m->node, &cfg, &m->groups[gi], err, sizeof(err));
        cr_assert_eq(rc, FR_OK, "node %u group %u: %s", i + 1, gi, err);
        if (n_members > 0) {
            rc = fr_group_bootstrap(m->groups[gi], ids, n_members, err, sizeof(err));
            cr_assert(rc == FR_OK || rc == FR_ERR_EXISTS, "bootstrap: %s", err);
        }
        rc = fr_group_start(m->groups[gi], err, sizeof(err));
        cr_assert_eq(rc, FR_OK, "start: %s", err);
    }
}

bool mr_run_until(struct mr_cluster *c, bool (*pred)(struct mr_cluster *, void *), void *arg, int timeout_ms)
{
    uint64_t deadline = uv_now(&c->loop) + (uint64_t)(timeout_ms * mult());
    uv_timer_start(&c->wake, on_wake, 5, 5);
    bool ok;
    while (!(ok = pred(c, arg))) {
        uv_update_time(&c->loop);
        if (uv_now(&c->loop) >= deadline)
            break;
        uv_run(&c->loop, UV_RUN_ONCE);
    }
    uv_timer_stop(&c->wake);
    return ok;
}

static bool never(struct mr_cluster *c, void *arg)
{
    (void)c;
    (void)arg;
    return false;
}

void mr_run_for(struct mr_cluster *c, int ms)
{
    uint64_t deadline = uv_now(&c->loop) + (uint64_t)ms;
    uv_timer_start(&c->wake, on_wake, 5, 5);
    while (uv_now(&c->loop) < deadline) {
        uv_run(&c->loop, UV_RUN_ONCE);
        uv_update_time(&c->loop);
    }
    uv_timer_stop(&c->wake);
    (void)never;
}

int mr_leader(struct mr_cluster *c, unsigned gi)
{
    int best = -1;
    uint64_t term = 0;
    for (unsigned i = 0; i < c->n_nodes; i++) {
        struct mr_node *m = &c->nodes[i];
        if (!m->up || m->groups[gi] == NULL || !fr_group_is_leader(m->groups[gi]))
            continue;
        if (best < 0 || fr_group_term(m->groups[gi]) > term) {
            best = (int)i;
            term = fr_group_term(m->groups[gi]);
        }
    }
    return best;
}

static bool has_leader(struct mr_cluster *c, void *arg)
{
    return mr_leader(c, (unsigned)(uintptr_t)arg) >= 0;
}

bool mr_wait_leader(struct mr_cluster *c, unsigned gi, int timeout_ms)
{
    return mr_run_until(c, has_leader, (void *)(uintptr_t)gi, timeout_ms);
}

struct range {
    unsigned first, count;
};

static bool all_have_leaders(struct mr_cluster *c, void *arg)
{
    const struct range *r = arg;
    for (unsigned g = r->first; g < r->first + r->count; g++)
        if (mr_leader(c, g) < 0)
            return false;
    return true;
}

bool mr_wait_leaders(struct mr_cluster *c, unsigned first, unsigned count, int timeout_ms)
{
    struct range r = {first, count};
    return mr_run_until(c, all_have_leaders, &r, timeout_ms);
}

/* ---- proposals ---- */

struct prop_state {
    unsigned ok, inflight, failed;
};
static struct prop_state props;

static void on_proposed(void *arg, int status, uint64_t index, void *result)
{
    (void)arg;
    (void)result;
    props.inflight--;
    if (status == FR_OK && index > 0)
        props.ok++;
    else
        props.failed++;
}

unsigned mr_propose(struct mr_cluster *c, unsigned gi, unsigned count, int timeout_ms)
{
    memset(&props, 0, sizeof(props));
    uint64_t deadline = uv_now(&c->loop) + (uint64_t)(timeout_ms * mult());
    uv_timer_start(&c->wake, on_wake, 5, 5);
    while (props.ok < count) {
        uv_update_time(&c->loop);
        if (uv_now(&c->loop) >= deadline)
            break;
        int l = mr_leader(c, gi);
        while (l >= 0 && props.inflight < 32 && props.ok + props.inflight < count) {
            uint64_t id = c->next_id++;
            char err[256];
            int rc = fr_group_propose(c->nodes[l].groups[gi], &id, sizeof(id), on_proposed, NULL, err, sizeof(err));
            if (rc != FR_OK) {
                if (rc != FR_ERR_NOT_LEADER)
                    fprintf(stderr, "propose: %s\n", err);
                break;
            }
            props.inflight++;
        }
        uv_run(&c->loop, UV_RUN_ONCE);
    }
    /* Let every callback run before the state is reused (they all come, with an error at worst). */
    while (props.inflight > 0 && uv_now(&c->loop) < deadline + 5000) {
        uv_run(&c->loop, UV_RUN_ONCE);
        uv_update_time(&c->loop);
    }
    uv_timer_stop(&c->wake);
    cr_assert_eq(props.inflight, 0, "proposal callbacks missing");
    if (props.ok < count) {
        fprintf(stderr, "mr_propose group %u: %u of %u committed, %u failed\n", gi, props.ok, count, props.failed);
        for (unsigned i = 0; i < c->n_nodes; i++) {
            struct fr_group *g = c->nodes[i].groups[gi];
            if (c->nodes[i].up && g != NULL)
                fprintf(stderr, "  node %u: leader=%d term=%llu commit=%llu applied=%llu last=%llu\n", i + 1,
                        fr_group_is_leader(g), (unsigned long long)fr_group_term(g),
                        (unsigned long long)fr_group_commit_index(g), (unsigned long long)fr_group_applied_index(g),
                        (unsigned long long)fr_group_last_index(g));
        }
    }
    return props.ok;
}

static bool records_equal(const struct mr_sm *a, const struct mr_sm *b)
{
    return a->n == b->n && (a->n == 0 || memcmp(a->log, b->log, a->n * sizeof(*a->log)) == 0);
}

struct conv {
    unsigned gi, min;
};

static bool converged(struct mr_cluster *c, void *arg)
{
    const struct conv *cv = arg;
    const struct mr_sm *ref = NULL;
    for (unsigned i = 0; i < c->n_nodes; i++) {
        struct mr_node *m = &c->nodes[i];
        if (!m->up || m->groups[cv->gi] == NULL)
            continue;
        if (m->sm[cv->gi].n < cv->min)
            return false;
        if (ref == NULL)
            ref = &m->sm[cv->gi];
        else if (!records_equal(ref, &m->sm[cv->gi]))
            return false;
    }
    return ref != NULL;
}

bool mr_wait_converged(struct mr_cluster *c, unsigned gi, unsigned min_entries, int timeout_ms)
{
    struct conv cv = {gi, min_entries};
    return mr_run_until(c, converged, &cv, timeout_ms);
}

void mr_check_prefixes(struct mr_cluster *c, unsigned gi)
{
    for (unsigned i = 0; i < c->n_nodes; i++) {
        const struct mr_sm *a = &c->nodes[i].sm[gi];
        cr_assert(a->violation[0] == '\0', "node %u group %u: %s", i + 1, gi, a->violation);
        for (unsigned j = i + 1; j < c->n_nodes; j++) {
            const struct mr_sm *b = &c->nodes[j].sm[gi];
            unsigned n = a->n < b->n ? a->n : b->n;
            for (unsigned k = 0; k < n; k++)
                cr_assert(a->log[k].index == b->log[k].index && a->log[k].id == b->log[k].id,
                          "group %u: node %u applied (%llu, id %llu) at position %u, node %u (%llu, id %llu)", gi,
                          i + 1, (unsigned long long)a->log[k].index, (unsigned long long)a->log[k].id, k, j + 1,
                          (unsigned long long)b->log[k].index, (unsigned long long)b->log[k].id);
        }
    }
}

void mr_isolate(struct mr_cluster *c, unsigned i, bool on)
{
    struct mr_node *m = &c->nodes[i];
    cr_assert(m->up);
    for (unsigned j = 0; j < c->n_nodes; j++) {
        struct mr_node *o = &c->nodes[j];
        if (j == i || !o->up)
            continue;
        cr_assert_eq(fr_node_test_mute_peer(m->node, o->id, on), FR_OK);
        cr_assert_eq(fr_node_test_mute_peer(o->node, m->id, on), FR_OK);
    }
}

void mr_node_wipe(struct mr_cluster *c, unsigned i)
{
    struct mr_node *m = &c->nodes[i];
    cr_assert(!m->up);
    nftw(m->dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    cr_assert(access(m->dir, F_OK) != 0, "%s still exists", m->dir);
}

unsigned mr_quiet(struct mr_cluster *c, unsigned i)
{
    struct fr_node_stats st;
    cr_assert(c->nodes[i].up);
    fr_node_stats(c->nodes[i].node, &st);
    return st.groups_quiescent;
}
