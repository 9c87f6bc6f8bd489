/* cluster.c: raft_fixture with recording state machines and a safety check after every step. */
#include "cluster.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RC_PAYLOAD_LEN 16 /* u64 term, u64 id (host order: never leaves the process) */

static void rc_violation(struct rc_cluster *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void rc_violation(struct rc_cluster *c, const char *fmt, ...)
{
    va_list ap;

    if (c->violation[0] != '\0') {
        return; /* keep the first one: later ones are consequences */
    }
    va_start(ap, fmt);
    vsnprintf(c->violation, sizeof(c->violation), fmt, ap);
    va_end(ap);
    fprintf(stderr, "raft safety violation at t=%llu ms (step %lu): %s\n",
            (unsigned long long)raft_fixture_time(&c->f), c->steps, c->violation);
}

/* Checks one (index, term, id) that server i now holds as applied against the record of everything
 * ever applied anywhere, and records it if it is the first at that index. */
static void rc_note_applied(struct rc_cluster *c, unsigned i, const struct rc_entry *e)
{
    if (e->index == 0 || e->index >= RC_MAX_INDEX) {
        rc_violation(c, "S%u applied index %" PRIu64 ", outside the test's range", i + 1, e->index);
        return;
    }
    if (!c->recorded[e->index]) {
        c->record[e->index] = *e;
        c->recorded_by[e->index] = i;
        c->recorded[e->index] = true;
        return;
    }
    const struct rc_entry *r = &c->record[e->index];
    if (r->term != e->term || r->id != e->id) {
        rc_violation(c,
                     "index %" PRIu64 " applied on S%u as (term %" PRIu64 ", id %" PRIu64
                     ") but S%u applied (term %" PRIu64 ", id %" PRIu64 ") there: a committed "
                     "entry was replaced",
                     e->index, i + 1, e->term, e->id, c->recorded_by[e->index] + 1, r->term, r->id);
    }
}

static int rc_fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result)
{
    struct rc_fsm_state *st = fsm->data;
    struct rc_cluster *c = st->cluster;
    struct rc_entry e;

    *result = NULL;
    /* Both library versions set last_applied only after apply returns: this is the entry's index. */
    e.index = raft_last_applied(rc_raft(c, st->i)) + 1;
    if (buf->len != RC_PAYLOAD_LEN) {
        rc_violation(c, "S%u applied a %zu-byte command at %" PRIu64, st->i + 1, buf->len, e.index);
        return 0;
    }
    memcpy(&e.term, buf->base, 8);
    memcpy(&e.id, (const char *)buf->base + 8, 8);
    if (st->n_applied > 0 && st->applied[st->n_applied - 1].index >= e.index) {
        rc_violation(c, "S%u applied index %" PRIu64 " after %" PRIu64, st->i + 1, e.index,
                     st->applied[st->n_applied - 1].index);
    }
    if (st->n_applied >= RC_MAX_INDEX) {
        rc_violation(c, "S%u applied more than %d commands", st->i + 1, RC_MAX_INDEX);
        return 0;
    }
    if (c->verbose) {
        fprintf(stderr, "t=%llu S%u applies index %" PRIu64 " (term %" PRIu64 ", id %" PRIu64 ")\n",
                (unsigned long long)raft_fixture_time(&c->f), st->i + 1, e.index, e.term, e.id);
    }
    rc_note_applied(c, st->i, &e);
    st->applied[st->n_applied++] = e;
    return 0;
}

/* Snapshot = the applied list: u64 count, then count x (index, term, id). Raft owns the buffers. */
static int rc_fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
    struct rc_fsm_state *st = fsm->data;
    uint64_t count = st->n_applied;
    size_t len = 8 + (size_t)count * sizeof(struct rc_entry);

    *bufs = raft_malloc(sizeof(**bufs));
    if (*bufs == NULL) {
        return RAFT_NOMEM;
    }
    (*bufs)[0].len = len;
    (*bufs)[0].base = raft_malloc(len);
    if ((*bufs)[0].base == NULL) {
        raft_free(*bufs);
        *bufs = NULL;
        return RAFT_NOMEM;
    }
    memcpy((*bufs)[0].base, &count, 8);
    memcpy((char *)(*bufs)[0].base + 8, st->applied, (size_t)count * sizeof(struct rc_entry));
    *n_bufs = 1;
    return 0;
}

/* Restore replaces the applied list; on success the buffer is ours to free (library contract). */
static int rc_fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
    struct rc_fsm_state *st = fsm->data;
    uint64_t count;

    if (buf->len < 8) {
        return RAFT_MALFORMED;
    }
    memcpy(&count, buf->base, 8);
    if (count > RC_MAX_INDEX || buf->len != 8 + count * sizeof(struct rc_entry)) {
        return RAFT_MALFORMED;
    }
    memcpy(st->applied, (const char *)buf->base + 8, (size_t)count * sizeof(struct rc_entry));
    st->n_applied = (unsigned)count;
    st->n_restores++;
    for (unsigned k = 0; k < st->n_applied; k++) {
        rc_note_applied(st->cluster, st->i, &st->applied[k]);
    }
    if (st->cluster->verbose) {
        fprintf(stderr, "t=%llu S%u restores a snapshot of %u commands\n",
                (unsigned long long)raft_fixture_time(&st->cluster->f), st->i + 1, st->n_applied);
    }
    raft_free(buf->base);
    return 0;
}

/* After every fixture step (whoever steps): per-server invariants, then fail on any violation. */
static void rc_check(struct rc_cluster *c)
{
    for (unsigned i = 0; i < c->n; i++) {
        struct raft *r = rc_raft(c, i);
        raft_index commit = r->commit_index;

        if (commit < c->max_commit_seen[i]) {
            rc_violation(c, "S%u's commit index went back from %llu to %llu", i + 1,
                         (unsigned long long)c->max_commit_seen[i], (unsigned long long)commit);
        }
        if (commit > c->max_commit_seen[i]) {
            c->max_commit_seen[i] = commit;
        }
        if (raft_last_applied(r) > commit) {
            rc_violation(c, "S%u applied %llu beyond its commit index %llu", i + 1,
                         (unsigned long long)raft_last_applied(r), (unsigned long long)commit);
        }
    }
    if (c->violation[0] != '\0') {
        cr_assert_fail("raft safety violation: %s", c->violation);
    }
}

static void rc_hook(struct raft_fixture *f, struct raft_fixture_event *event)
{
    struct rc_cluster *c = (struct rc_cluster *)f; /* f is the first member */
    (void)event;
    c->steps++;
    rc_check(c);
}

struct rc_cluster *rc_setup(unsigned n, const unsigned *timeouts)
{
    struct raft_configuration conf;
    struct rc_cluster *c;
    const char *verbose = getenv("FERRY_RAFT_VERBOSE");

    cr_assert(n >= 1 && n <= RC_MAX_SERVERS);
    c = calloc(1, sizeof(*c));
    cr_assert_not_null(c);
    c->n = n;
    c->verbose = verbose != NULL && verbose[0] == '1';
    cr_assert_eq(raft_fixture_initialize(&c->f), 0);
    for (unsigned i = 0; i < n; i++) {
        c->sm[i].cluster = c;
        c->sm[i].i = i;
        c->fsms[i].version = 1;
        c->fsms[i].data = &c->sm[i];
        c->fsms[i].apply = rc_fsm_apply;
        c->fsms[i].snapshot = rc_fsm_snapshot;
        c->fsms[i].restore = rc_fsm_restore;
        cr_assert_eq(raft_fixture_grow(&c->f, &c->fsms[i]), 0);
#ifdef RAFT_VERSION_NUMBER /* 0.17+: the fixture traces every event to stderr; NULL is allowed */
        if (!c->verbose) {
            rc_raft(c, i)->tracer = NULL;
        }
#endif
        if (timeouts != NULL) {
            raft_fixture_set_randomized_election_timeout(&c->f, i, timeouts[i]);
        }
    }
    cr_assert_eq(raft_fixture_configuration(&c->f, n, &conf), 0);
    cr_assert_eq(raft_fixture_bootstrap(&c->f, &conf), 0);
    raft_configuration_close(&conf);
    cr_assert_eq(raft_fixture_start(&c->f), 0);
    raft_fixture_hook(&c->f, rc_hook);
    return c;
}

void rc_teardown(struct rc_cluster *c)
{
    raft_fixture_close(&c->f);
    free(c);
}

static void rc_apply_cb(struct raft_apply *req, int status, void *result)
{
    struct rc_proposal *p = (struct rc_proposal *)req; /* req is the first member */
    (void)result;
    p->status = status;
}

uint64_t rc_propose(struct rc_cluster *c, unsigned i)
{
    struct raft *r = rc_raft(c, i);
    struct raft_buffer buf;
    struct rc_proposal *p;
    uint64_t term = r->current_term;
    uint64_t id = ++c->next_id;
    int rv;

    cr_assert_eq(raft_state(r), RAFT_LEADER, "S%u is not the leader", i + 1);
    cr_assert_lt(c->n_proposals, RC_MAX_PROPOSALS);
    buf.len = RC_PAYLOAD_LEN;
    buf.base = raft_malloc(buf.len);
    cr_assert_not_null(buf.base);
    memcpy(buf.base, &term, 8);
    memcpy((char *)buf.base + 8, &id, 8);
    p = &c->proposals[c->n_proposals++];
    p->status = 1;
    rv = raft_apply(r, &p->req, &buf, 1, rc_apply_cb);
    if (rv != 0) {
        raft_free(buf.base);
        cr_assert_fail("raft_apply on S%u: %s", i + 1, raft_strerror(rv));
    }
    return id;
}

void rc_step(struct rc_cluster *c)
{
    raft_fixture_step(&c->f);
}

bool rc_step_until(struct rc_cluster *c, bool (*pred)(struct rc_cluster *, void *), void *arg,
                   unsigned max_ms)
{
    raft_time start = raft_fixture_time(&c->f);

    while (!pred(c, arg)) {
        if (raft_fixture_time(&c->f) - start >= max_ms) {
            return false;
        }
        rc_step(c);
    }
    return true;
}

static bool rc_never(struct rc_cluster *c, void *arg)
{
    (void)c;
    (void)arg;
    return false;
}

void rc_step_for(struct rc_cluster *c, unsigned ms)
{
    (void)rc_step_until(c, rc_never, NULL, ms);
}

static bool rc_is_leader(struct rc_cluster *c, void *arg)
{
    unsigned i = *(unsigned *)arg;
    return raft_state(rc_raft(c, i)) == RAFT_LEADER;
}

static bool rc_is_not_leader(struct rc_cluster *c, void *arg)
{
    return !rc_is_leader(c, arg);
}

bool rc_step_until_leader(struct rc_cluster *c, unsigned i, unsigned max_ms)
{
    return rc_step_until(c, rc_is_leader, &i, max_ms);
}

bool rc_step_until_not_leader(struct rc_cluster *c, unsigned i, unsigned max_ms)
{
    return rc_step_until(c, rc_is_not_leader, &i, max_ms);
}

struct rc_at {
    unsigned i;
    raft_index index;
};

static bool rc_is_stored(struct rc_cluster *c, void *arg)
{
    struct rc_at *at = arg;
    return rc_raft(c, at->i)->last_stored >= at->index;
}

bool rc_step_until_stored(struct rc_cluster *c, unsigned i, raft_index index, unsigned max_ms)
{
    struct rc_at at = {i, index};
    return rc_step_until(c, rc_is_stored, &at, max_ms);
}

static bool rc_is_committed(struct rc_cluster *c, void *arg)
{
    struct rc_at *at = arg;
    return rc_commit(c, at->i) >= at->index;
}

bool rc_step_until_committed(struct rc_cluster *c, unsigned i, raft_index index, unsigned max_ms)
{
    struct rc_at at = {i, index};
    return rc_step_until(c, rc_is_committed, &at, max_ms);
}

void rc_mute(struct rc_cluster *c, unsigned i, bool mute)
{
    for (unsigned j = 0; j < c->n; j++) {
        if (j == i) {
            continue;
        }
        if (mute) {
            raft_fixture_saturate(&c->f, i, j);
        } else {
            raft_fixture_desaturate(&c->f, i, j);
        }
    }
}

unsigned rc_leader(struct rc_cluster *c)
{
    unsigned best = c->n;

    for (unsigned i = 0; i < c->n; i++) {
        if (!raft_fixture_alive(&c->f, i) || raft_state(rc_raft(c, i)) != RAFT_LEADER) {
            continue;
        }
        if (best == c->n || rc_term(c, i) > rc_term(c, best)) {
            best = i;
        }
    }
    return best;
}

bool rc_applied_somewhere(const struct rc_cluster *c, raft_index index, uint64_t id)
{
    return index < RC_MAX_INDEX && c->recorded[index] && c->record[index].id == id;
}

raft_index rc_applied_index(const struct rc_cluster *c, uint64_t id)
{
    for (raft_index k = 1; k < RC_MAX_INDEX; k++) {
        if (c->recorded[k] && c->record[k].id == id) {
            return k;
        }
    }
    return 0;
}

struct rc_final {
    uint64_t id;
    unsigned leader;
};

/* Every server has applied `id`, or the leader that took it lost leadership. */
static bool rc_final_applied_or_lost(struct rc_cluster *c, void *arg)
{
    struct rc_final *fin = arg;
    bool all = true;

    for (unsigned i = 0; i < c->n; i++) {
        const struct rc_fsm_state *st = &c->sm[i];
        if (st->n_applied == 0 || st->applied[st->n_applied - 1].id != fin->id) {
            all = false;
        }
    }
    return all || raft_state(rc_raft(c, fin->leader)) != RAFT_LEADER;
}

static bool rc_has_leader(struct rc_cluster *c, void *arg)
{
    (void)arg;
    return rc_leader(c) < c->n;
}

bool rc_heal_and_converge(struct rc_cluster *c, unsigned max_ms)
{
    raft_time start = raft_fixture_time(&c->f);
    bool done = false;

    for (unsigned i = 0; i < c->n; i++) {
        if (!raft_fixture_alive(&c->f, i)) {
            raft_fixture_revive(&c->f, i);
        }
    }
    for (unsigned i = 0; i < c->n; i++) {
        rc_mute(c, i, false);
        for (unsigned j = 0; j < c->n; j++) {
            if (i != j) {
                raft_fixture_reconnect(&c->f, i, j);
            }
        }
    }
    /* A command of the final leader's own term commits everything before it, everywhere. */
    while (!done && raft_fixture_time(&c->f) - start < max_ms) {
        struct rc_final fin;

        if (!rc_step_until(c, rc_has_leader, NULL, max_ms)) {
            break;
        }
        fin.leader = rc_leader(c);
        fin.id = rc_propose(c, fin.leader);
        (void)rc_step_until(c, rc_final_applied_or_lost, &fin, max_ms);
        done = raft_state(rc_raft(c, fin.leader)) == RAFT_LEADER;
        for (unsigned i = 0; done && i < c->n; i++) {
            const struct rc_fsm_state *st = &c->sm[i];
            done = st->n_applied > 0 && st->applied[st->n_applied - 1].id == fin.id;
        }
    }
    if (!done) {
        return false;
    }
    /* Converged: every server holds exactly the record of everything ever applied anywhere. */
    for (unsigned i = 0; i < c->n; i++) {
        const struct rc_fsm_state *st = &c->sm[i];
        unsigned k = 0;
        for (unsigned index = 1; index < RC_MAX_INDEX; index++) {
            if (!c->recorded[index]) {
                continue;
            }
            cr_assert_lt(k, st->n_applied, "S%u lost applied entries from index %u on", i + 1, index);
            cr_assert_eq(st->applied[k].index, index, "S%u lacks index %u", i + 1, index);
            cr_assert_eq(st->applied[k].id, c->record[index].id, "S%u differs at index %u", i + 1,
                         index);
            k++;
        }
        cr_assert_eq(k, st->n_applied, "S%u applied entries outside the record", i + 1);
    }
    return true;
}
