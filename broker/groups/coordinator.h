/* coordinator.h: the group coordinator of a broker: its life with the broker (the apis use groups_int.h). */
#ifndef FERRYD_GROUPS_COORDINATOR_H
#define FERRYD_GROUPS_COORDINATOR_H

#include <stddef.h>

struct ferryd;
struct ferryd_coord;

/*
 * Creates the coordinator of broker b (after the cluster started, if any): a timer that creates the
 * offsets topic when needed (controller leader in a cluster, the broker itself standalone), loads the
 * offsets partitions this broker leads and expires member sessions; in a cluster, the leadership
 * observer. Returns 0 or -1 with errmsg.
 */
int ferryd_coord_create(struct ferryd *b, struct ferryd_coord **out, char *errmsg, size_t errmsg_len);
/*
 * Whether name[0..len) is an internal topic (the offsets topic, written only by the coordinator's own
 * path): 1 with errmsg saying that a client may not `action` it ("produce to", "delete", "create"),
 * else 0. The Produce, CreateTopics and DeleteTopics handlers refuse such a topic.
 */
int ferryd_coord_internal_topic(const char *name, size_t len, const char *action, char *errmsg, size_t errmsg_len);
/* Graceful stop, first step: no more timer work, leadership observer cleared. Idempotent. */
void ferryd_coord_stop(struct ferryd_coord *co);
/* Frees every group (after the cluster stopped: no callback of a write may come later; writes still in
 * flight hold no pointer to the coordinator). The timer handle closes on the next loop run. */
void ferryd_coord_destroy(struct ferryd_coord *co);

/* A group request arrived while the offsets topic does not exist: a standalone broker creates it on
 * its next tick (lazily, as Kafka does); in a cluster the controller leader creates it anyway. */
void ferryd_coord_want_offsets_topic(struct ferryd_coord *co);

#endif
