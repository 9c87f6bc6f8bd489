/* assignor.c: the sticky assignor: balanced counts, partitions stay with their owners when they may. */
#include "groups/assignor.h"

#include <stdlib.h>
#include <string.h>

int fg_tp_cmp(const void *a, const void *b)
{
    const struct fg_tp *x = a, *y = b;
    if (x->topic != y->topic)
        return x->topic < y->topic ? -1 : 1;
    return (x->partition > y->partition) - (x->partition < y->partition);
}

static int subscribes(const struct fg_assign_member *m, uint32_t topic)
{
    for (uint32_t i = 0; i < m->ntopics; i++)
        if (m->topics[i] == topic)
            return 1;
    return 0;
}

struct rank {
    uint32_t member;
    uint32_t valid; /* current partitions the member may keep (before the share is applied) */
};

static int rank_cmp(const void *a, const void *b)
{
    const struct rank *x = a, *y = b;
    if (x->valid != y->valid)
        return x->valid > y->valid ? -1 : 1;
    return (x->member > y->member) - (x->member < y->member);
}

int fg_assign_sticky(const struct fg_assign_member *members, uint32_t nmembers, const int32_t *partitions,
                     uint32_t ntopics, struct fg_tp **out, uint32_t *nout)
{
    uint8_t *wanted = NULL;   /* per topic: someone subscribes and it has partitions */
    size_t *first = NULL;     /* per topic: index of its partition 0 in owner[] */
    int64_t *owner = NULL;    /* per partition slot: member index or -1 */
    uint32_t *count = NULL, *share = NULL;
    struct rank *ranks = NULL;
    size_t total = 0, slots = 0;
    int rc = -1;

    for (uint32_t i = 0; i < nmembers; i++) {
        out[i] = NULL;
        nout[i] = 0;
    }
    if (nmembers == 0)
        return 0;
    wanted = calloc(ntopics ? ntopics : 1, 1);
    first = calloc(ntopics ? ntopics : 1, sizeof(*first));
    count = calloc(nmembers, sizeof(*count));
    share = calloc(nmembers, sizeof(*share));
    ranks = calloc(nmembers, sizeof(*ranks));
    if (wanted == NULL || first == NULL || count == NULL || share == NULL || ranks == NULL)
        goto out_free;
    for (uint32_t i = 0; i < nmembers; i++)
        for (uint32_t k = 0; k < members[i].ntopics; k++)
            if (members[i].topics[k] < ntopics && partitions[members[i].topics[k]] > 0)
                wanted[members[i].topics[k]] = 1;
    for (uint32_t t = 0; t < ntopics; t++) {
        first[t] = slots;
        if (partitions[t] > 0)
            slots += (size_t)partitions[t];
        if (wanted[t])
            total += (size_t)partitions[t];
    }
    owner = malloc((slots ? slots : 1) * sizeof(*owner));
    if (owner == NULL)
        goto out_free;
    for (size_t s = 0; s < slots; s++)
        owner[s] = -1;

    /* Shares: base for everyone, +1 for the `extra` members that may keep the most. */
    for (uint32_t i = 0; i < nmembers; i++) {
        ranks[i].member = i;
        for (uint32_t k = 0; k < members[i].ncurrent; k++) {
            const struct fg_tp *tp = &members[i].current[k];
            if (tp->topic < ntopics && wanted[tp->topic] && tp->partition >= 0 &&
                tp->partition < partitions[tp->topic] && subscribes(&members[i], tp->topic))
                ranks[i].valid++;
        }
    }
    qsort(ranks, nmembers, sizeof(*ranks), rank_cmp);
    size_t base = total / nmembers, extra = total % nmembers;
    for (uint32_t r = 0; r < nmembers; r++)
        share[ranks[r].member] = (uint32_t)(base + (r < extra ? 1 : 0));

    /* Keep: current owners keep what they may, up to their share (current sorted for determinism). */
    for (uint32_t i = 0; i < nmembers; i++) {
        struct fg_tp *cur = NULL;
        uint32_t n = members[i].ncurrent;
        if (n > 0) {
            cur = malloc(n * sizeof(*cur));
            if (cur == NULL)
                goto out_free;
            memcpy(cur, members[i].current, n * sizeof(*cur));
            qsort(cur, n, sizeof(*cur), fg_tp_cmp);
        }
        for (uint32_t k = 0; k < n && count[i] < share[i]; k++) {
            const struct fg_tp *tp = &cur[k];
            if (tp->topic >= ntopics || !wanted[tp->topic] || tp->partition < 0 ||
                tp->partition >= partitions[tp->topic] || !subscribes(&members[i], tp->topic))
                continue;
            size_t s = first[tp->topic] + (size_t)tp->partition;
            if (owner[s] != -1)
                continue;
            owner[s] = i;
            count[i]++;
        }
        free(cur);
    }

    /* Move: every partition still free goes to the eligible member with the fewest. */
    for (uint32_t t = 0; t < ntopics; t++) {
        if (!wanted[t])
            continue;
        for (int32_t p = 0; p < partitions[t]; p++) {
            size_t s = first[t] + (size_t)p;
            if (owner[s] != -1)
                continue;
            int64_t best = -1, best_any = -1;
            for (uint32_t i = 0; i < nmembers; i++) {
                if (!subscribes(&members[i], t))
                    continue;
                if (count[i] < share[i] && (best == -1 || count[i] < count[best]))
                    best = i;
                if (best_any == -1 || count[i] < count[best_any])
                    best_any = i;
            }
            if (best == -1)
                best = best_any;
            owner[s] = best;
            count[best]++;
        }
    }

    for (uint32_t i = 0; i < nmembers; i++) {
        if (count[i] == 0)
            continue;
        out[i] = malloc(count[i] * sizeof(**out));
        if (out[i] == NULL)
            goto out_free_results;
    }
    for (uint32_t t = 0; t < ntopics; t++) {
        if (!wanted[t])
            continue;
        for (int32_t p = 0; p < partitions[t]; p++) {
            uint32_t i = (uint32_t)owner[first[t] + (size_t)p];
            out[i][nout[i]].topic = t;
            out[i][nout[i]].partition = p;
            nout[i]++;
        }
    }
    rc = 0;
    goto out_free;

out_free_results:
    for (uint32_t i = 0; i < nmembers; i++) {
        free(out[i]);
        out[i] = NULL;
        nout[i] = 0;
    }
out_free:
    free(wanted);
    free(first);
    free(owner);
    free(count);
    free(share);
    free(ranks);
    return rc;
}
