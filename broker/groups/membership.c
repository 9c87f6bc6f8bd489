/* membership.c: target assignment (through the sticky assignor), incremental reconciliation, removal. */
#include "groups/groups_int.h"

#include <stdlib.h>
#include <string.h>

#include "logging.h"

int fg_group_compute_targets(struct ferryd_coord *co, struct fg_group *g)
{
    int rc = -1;
    struct fg_assign_member *am = calloc(g->nmembers ? g->nmembers : 1, sizeof(*am));
    struct fg_tp **out = calloc(g->nmembers ? g->nmembers : 1, sizeof(*out));
    uint32_t *nout = calloc(g->nmembers ? g->nmembers : 1, sizeof(*nout));
    int32_t *parts = calloc(g->ntopics ? g->ntopics : 1, sizeof(*parts));
    struct fg_tp **cur = calloc(g->nmembers ? g->nmembers : 1, sizeof(*cur));
    if (am == NULL || out == NULL || nout == NULL || parts == NULL || cur == NULL)
        goto out_free;
    for (uint32_t t = 0; t < g->ntopics; t++)
        parts[t] = fg_topic_partitions(co, g->topics[t]);
    for (uint32_t i = 0; i < g->nmembers; i++) {
        const struct fg_member *m = g->members[i];
        /* What the member holds: its assignment and what it is still giving up (it keeps the latter
         * only if the assignor gives it back, which saves a move). */
        uint32_t n = m->nassigned + m->nrevoking;
        if (n > 0) {
            cur[i] = malloc(n * sizeof(**cur));
            if (cur[i] == NULL)
                goto out_free;
            if (m->nassigned > 0)
                memcpy(cur[i], m->assigned, m->nassigned * sizeof(**cur));
            if (m->nrevoking > 0)
                memcpy(cur[i] + m->nassigned, m->revoking, m->nrevoking * sizeof(**cur));
        }
        am[i] = (struct fg_assign_member){m->subs, m->nsubs, cur[i], n};
    }
    if (fg_assign_sticky(am, g->nmembers, parts, g->ntopics, out, nout) != 0)
        goto out_free;
    for (uint32_t i = 0; i < g->nmembers; i++) {
        free(g->members[i]->target);
        g->members[i]->target = out[i];
        g->members[i]->ntarget = nout[i];
    }
    uint64_t sig = 1469598103934665603ull;
    for (uint32_t t = 0; t < g->ntopics; t++)
        sig = (sig ^ (uint64_t)(uint32_t)parts[t]) * 1099511628211ull;
    g->parts_sig = sig;
    rc = 0;
out_free:
    for (uint32_t i = 0; cur != NULL && i < g->nmembers; i++)
        free(cur[i]);
    free(cur);
    free(am);
    free(out);
    free(nout);
    free(parts);
    if (rc != 0)
        LOG_ERROR("groups: group %s: out of memory computing the assignment", g->id);
    return rc;
}

int fg_group_rebalance(struct ferryd_coord *co, struct fg_group *g)
{
    g->group_epoch++;
    g->assignment_epoch = g->group_epoch;
    return fg_group_compute_targets(co, g);
}

/* 1 if a member other than m holds tp (assigned or still revoking). */
static int held_by_other(const struct fg_group *g, const struct fg_member *m, const struct fg_tp *tp)
{
    for (uint32_t i = 0; i < g->nmembers; i++) {
        const struct fg_member *o = g->members[i];
        if (o == m)
            continue;
        if (fg_tp_in(o->assigned, o->nassigned, tp->topic, tp->partition) ||
            fg_tp_in(o->revoking, o->nrevoking, tp->topic, tp->partition))
            return 1;
    }
    return 0;
}

int fg_member_reconcile(struct fg_group *g, struct fg_member *m, uint64_t now, int *changed)
{
    uint32_t cap = m->nassigned + m->ntarget + 1;
    uint32_t rcap = m->nrevoking + m->nassigned + 1;
    struct fg_tp *na = malloc(cap * sizeof(*na));
    struct fg_tp *nr = malloc(rcap * sizeof(*nr));
    uint32_t nna = 0, nnr = 0;
    int shrunk = 0, grew = 0;
    *changed = 0;
    if (na == NULL || nr == NULL) {
        free(na);
        free(nr);
        return -1;
    }
    /* Revoke first: what the target no longer has goes to `revoking` (the member acknowledges). */
    for (uint32_t i = 0; i < m->nrevoking; i++)
        if (!fg_tp_in(m->target, m->ntarget, m->revoking[i].topic, m->revoking[i].partition))
            nr[nnr++] = m->revoking[i];
    for (uint32_t i = 0; i < m->nassigned; i++) {
        if (fg_tp_in(m->target, m->ntarget, m->assigned[i].topic, m->assigned[i].partition)) {
            na[nna++] = m->assigned[i];
        } else {
            nr[nnr++] = m->assigned[i];
            shrunk = 1;
        }
    }
    /* Then add what nobody else holds any more. */
    for (uint32_t i = 0; i < m->ntarget; i++) {
        const struct fg_tp *tp = &m->target[i];
        if (fg_tp_in(m->assigned, m->nassigned, tp->topic, tp->partition))
            continue;
        if (held_by_other(g, m, tp))
            continue;
        na[nna++] = *tp;
        grew = 1;
    }
    qsort(na, nna, sizeof(*na), fg_tp_cmp);
    qsort(nr, nnr, sizeof(*nr), fg_tp_cmp);
    if (nnr == 0)
        m->revoke_since = 0;
    else if (m->nrevoking == 0 || m->revoke_since == 0)
        m->revoke_since = now;
    free(m->assigned);
    free(m->revoking);
    m->assigned = na;
    m->nassigned = nna;
    m->revoking = nr;
    m->nrevoking = nnr;
    if (grew) {
        m->prev_epoch = m->epoch;
        m->epoch = m->epoch + 1 > g->assignment_epoch ? m->epoch + 1 : g->assignment_epoch;
    }
    if (shrunk || grew) {
        m->send_assignment = 1;
        *changed = 1;
    }
    return 0;
}

int fg_member_expel(struct ferryd_coord *co, struct fg_group *g, struct fg_member *m, struct fg_records *recs)
{
    fg_rec_member_tombstone(recs, g, m->id);
    fg_member_remove(g, m);
    int rc = fg_group_rebalance(co, g);
    fg_rec_group(recs, g);
    return rc;
}
