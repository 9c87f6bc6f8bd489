/* cluster.h: the broker as a cluster member: the peer node, the controller group and one Raft group per partition. */
#ifndef FERRYD_CLUSTER_H
#define FERRYD_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

#include "topics.h"

/*
 * Active when cluster.members is set (docs/replication.md, "The broker as a cluster"):
 *  - the controller group (Raft group id 1) on the initial members replicates the metadata: brokers
 *    (id, client host:port) and topics (partitions, replica sets, the Raft group id of each
 *    partition, per-topic configs); its snapshot is the whole metadata in msgpack;
 *  - every partition is a Raft group (ids 2, 3, ... assigned by the controller at creation) on its
 *    replica set; the apply callback appends the committed batch to the partition's segment log.
 * Raft ids are node.id + 1 (the Raft layer reserves 0). Everything runs on the broker's loop.
 */

struct ferryd;
struct ferryd_cluster;

/* Starts the peer node and the controller group. Returns 0, or -1 with errmsg (nothing to undo). */
int ferryd_cluster_start(struct ferryd *b, struct ferryd_cluster **out, char *errmsg, size_t errmsg_len);
/* Asynchronous stop: closes every group and the node; cb runs once after, then c is freed. */
void ferryd_cluster_stop(struct ferryd_cluster *c, void (*cb)(void *arg), void *arg);
int ferryd_cluster_peer_port(const struct ferryd_cluster *c);
/*
 * Graceful stop, first step: transfers every leadership this broker holds (partitions and the
 * controller) to another voter, while the broker keeps serving (its produces then answer
 * NOT_LEADER and clients move). cb(arg) runs once every transfer ended, or after 5 s at most.
 * Call at most once, before ferryd_cluster_stop (which abandons a hand-off still running: cb then
 * never runs).
 */
void ferryd_cluster_handoff(struct ferryd_cluster *c, void (*cb)(void *arg), void *arg);

/*
 * A producer id unique in the whole cluster, even after a broker's data dir is wiped
 * (membership.c): taken from a block of ids this broker obtained from the controller (a replicated
 * counter). Returns 0 with *id set when the current block has one; FERRYD_PID_PENDING when a block
 * must be fetched first: cb(arg, error, id, msg) then runs exactly once, later (error 0 with the
 * id, or BROKER_NOT_AVAILABLE when no block came within 10 s or the broker stops); or another
 * error code with msg (cb never runs).
 */
#define FERRYD_PID_PENDING (-1)
typedef void (*ferryd_cluster_pid_cb)(void *arg, int error, int64_t id, const char *msg);
int ferryd_cluster_next_producer_id(struct ferryd_cluster *c, int64_t *id, ferryd_cluster_pid_cb cb, void *arg,
                                    char *msg, size_t msg_len);

/* ---- metadata (answered from the replicated state on every broker) ---- */
/* Broker id of the controller leader as known here, -1 when unknown. */
int64_t ferryd_cluster_controller_id(const struct ferryd_cluster *c);
int ferryd_cluster_is_controller(const struct ferryd_cluster *c);
unsigned ferryd_cluster_broker_count(const struct ferryd_cluster *c);
/* Broker i (i < count): id, client host and port. */
void ferryd_cluster_broker_at(const struct ferryd_cluster *c, unsigned i, int64_t *id, const char **host, int *port);
/*
 * Replica set of a partition of a topic the controller knows: *rf ids in *replicas (borrowed), and
 * the leader: the group's leader when this broker replicates it, else the preferred (first) replica.
 * Returns 0, or -1 when the topic or partition is unknown to the controller.
 */
int ferryd_cluster_partition(const struct ferryd_cluster *c, const char *topic, size_t len, int32_t partition,
                             int64_t *leader, const int64_t **replicas, int *rf);

/* ---- partitions ---- */
/*
 * For a handler about to serve p (c = the broker's cluster, NULL standalone): 0 when standalone or
 * this broker leads p's group; else (also for a partition whose group is not open here)
 * FERRY_ERR_NOT_LEADER with *leader_id (-1 unknown) and msg naming it.
 */
int ferryd_cluster_check_leader(const struct ferryd_cluster *c, struct ferryd_partition *p, int64_t *leader_id,
                                char *msg, size_t msg_len);

/*
 * For a handler that found no local log for `partition` of `topic` (c = the broker's cluster, NULL
 * standalone): when the controller knows the partition (this broker does not replicate it),
 * FERRY_ERR_NOT_LEADER with *leader_id = the leader as known here (the preferred replica when this
 * broker is not in the group: usually right, and otherwise that replica names the real one) and msg;
 * else FERRY_ERR_UNKNOWN_TOPIC_OR_PARTITION with msg.
 */
int ferryd_cluster_check_absent(const struct ferryd_cluster *c, const char *topic, size_t len, int64_t partition,
                                int64_t *leader_id, char *msg, size_t msg_len);

/*
 * Proposes one validated batch to p's group (p must be replicated; leader only). cb(arg, error,
 * base_offset, msg) runs once when it is committed and applied here (error 0), or with NOT_LEADER
 * (leadership lost, outcome unknown: the client retries) or CORRUPT_BATCH. Returns 0, or an error
 * code with msg (cb never runs).
 */
typedef void (*ferryd_cluster_produce_cb)(void *arg, int error, int64_t base_offset, const char *msg);
int ferryd_cluster_produce(struct ferryd_partition *p, const uint8_t *batch, size_t len, ferryd_cluster_produce_cb cb,
                           void *arg, char *msg, size_t msg_len);

/*
 * Observer of partition leadership on this broker (the group coordinator uses it): cb(arg, topic,
 * partition, is_leader) runs when this broker becomes or stops being the leader of a partition it
 * replicates. It runs right after a Raft step: it must not close the group or stop the cluster;
 * proposing is allowed. One observer; NULL clears it.
 */
typedef void (*ferryd_cluster_role_cb)(void *arg, const char *topic, int32_t partition, int is_leader);
void ferryd_cluster_set_role_observer(struct ferryd_cluster *c, ferryd_cluster_role_cb cb, void *arg);

/* A barrier on p's group (leader only): cb(arg, error) once every entry committed before it is
 * applied into p's log (error 0), or NOT_LEADER. Returns 0 (cb runs once) or an error code with msg. */
typedef void (*ferryd_cluster_barrier_cb)(void *arg, int error);
int ferryd_cluster_barrier(struct ferryd_partition *p, ferryd_cluster_barrier_cb cb, void *arg, char *msg,
                           size_t msg_len);

/* 1 once this broker replayed the controller state up to its own registration (after a restart, answers
 * about topics it does not know yet may be stale until then: callers answer retriable errors). */
int ferryd_cluster_loaded(const struct ferryd_cluster *c);

/* ---- admin (controller leader only; others get NOT_CONTROLLER) ---- */
typedef void (*ferryd_cluster_done_cb)(void *arg, int error, const char *msg);
/* rf -1 = min(3, brokers). Returns 0 (cb runs once) or an error code with msg (cb never runs). */
int ferryd_cluster_create_topic(struct ferryd_cluster *c, const char *name, size_t len, int64_t partitions,
                                int64_t rf, const struct ferryd_topic_config *tc, ferryd_cluster_done_cb cb, void *arg,
                                char *msg, size_t msg_len);
/*
 * ferryd_cluster_create_topic with a request token (token_len 0 = none). When the topic already
 * exists with this token (an earlier attempt committed), returns 0 with *done = 1 and cb never runs;
 * otherwise *done = 0 and the contract above holds.
 */
int ferryd_cluster_create_topic_token(struct ferryd_cluster *c, const char *name, size_t len, int64_t partitions,
                                      int64_t rf, const struct ferryd_topic_config *tc, const char *token,
                                      size_t token_len, int *done, ferryd_cluster_done_cb cb, void *arg, char *msg,
                                      size_t msg_len);
int ferryd_cluster_delete_topic(struct ferryd_cluster *c, const char *name, size_t len, ferryd_cluster_done_cb cb,
                                void *arg, char *msg, size_t msg_len);

#endif
