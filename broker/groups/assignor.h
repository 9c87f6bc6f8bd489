/* assignor.h: the sticky assignor of consumer groups (docs/consumer-groups.md), as pure functions. */
#ifndef FERRYD_GROUPS_ASSIGNOR_H
#define FERRYD_GROUPS_ASSIGNOR_H

#include <stdint.h>

/* A partition of topic number `topic` (an index into the caller's topic table). */
struct fg_tp {
    uint32_t topic;
    int32_t partition;
};

/* One member as the assignor sees it. Members are passed in a fixed order (the coordinator sorts them by
 * member id), which makes the result deterministic. */
struct fg_assign_member {
    const uint32_t *topics; /* subscribed topic indexes, each < ntopics (duplicates allowed) */
    uint32_t ntopics;
    const struct fg_tp *current; /* what the member owns now (its current assignment), any order */
    uint32_t ncurrent;
};

/*
 * Computes the target assignment. partitions[t] is the partition count of topic t (0 or less: the
 * topic does not exist, nothing of it is assigned). Every partition of a topic someone subscribes to
 * goes to exactly one member subscribing to it. With P such partitions and N members, N - P % N
 * members get at most P / N and the others P / N + 1 (the "+1" go to the members that own the most
 * now), so with identical subscriptions counts differ by at most one. A partition stays with its
 * current owner while that owner subscribes to its topic and is within its share; the others go, in
 * (topic, partition) order, to the eligible member with the fewest (below its share when one is).
 * out[i] receives a malloc'd array (NULL when empty) of nout[i] partitions sorted by (topic,
 * partition); the caller frees each. Returns 0, or -1 when out of memory (nothing to free).
 */
int fg_assign_sticky(const struct fg_assign_member *members, uint32_t nmembers, const int32_t *partitions,
                     uint32_t ntopics, struct fg_tp **out, uint32_t *nout);

/* Orders by (topic, partition), for qsort and bsearch. */
int fg_tp_cmp(const void *a, const void *b);

#endif
