/* topics.h: the topic registry: topics, their partitions and per-topic configs, persisted under data.dir. */
#ifndef FERRYD_TOPICS_H
#define FERRYD_TOPICS_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "partition.h"
#include "proto/limits.h"
#include "storage/log.h"

/*
 * On disk (data.dir):
 *   meta/topics.msgpack       {"version": 1, "topics": [{"name": str, "partitions": int,
 *                              "configs": {str: str}, "local": [int]?, "token": str?}]} -- the source of truth,
 *                              replaced atomically (write tmp, fsync, rename, fsync meta/). "local"
 *                              lists the partitions that have a log here (absent = all of them)
 *   meta/del.<topic>          deletion marker (empty file): created and fsync'd before the topic
 *                              leaves topics.msgpack, removed once its directories are gone. Found at
 *                              start-up, the deletion is finished (topic dropped from topics.msgpack,
 *                              every topics/<topic>-<digits>/ removed). The short prefix keeps
 *                              "del." + a 249-character name within NAME_MAX.
 *   topics/<topic>-<p>/       partition p's log (storage/log.h)
 * A partition directory that exists when its topic is created (a crash between creating it and
 * writing topics.msgpack) is emptied first.
 */

/*
 * Request tokens make CreateTopics safe to retry (docs/protocol.md): a create carries the client's
 * token, the topic keeps it (in the controller's state in a cluster, in topics.msgpack standalone),
 * and a create of an existing topic with the same token succeeds. A random 64-bit value in hex
 * needs 16 bytes; the bound keeps the (replicated) metadata small.
 */
#define FERRYD_MAX_REQUEST_TOKEN 64

#define FERRYD_TOPIC_CONFIG_COUNT 4
/* Keys of per-topic overrides, in the order of struct ferryd_topic_config's arrays. */
extern const char *const ferryd_topic_config_keys[FERRYD_TOPIC_CONFIG_COUNT];

struct ferryd_topic_config {
    int set[FERRYD_TOPIC_CONFIG_COUNT];
    int64_t value[FERRYD_TOPIC_CONFIG_COUNT];
};

/* Sets one override from strings (not NUL-terminated), range-checked by the broker config table.
 * Returns 0 or FERRY_ERR_INVALID_CONFIG with errmsg. */
int ferryd_topic_config_set(struct ferryd_topic_config *tc, const char *key, size_t key_len, const char *value,
                            size_t value_len, char *errmsg, size_t errmsg_len);

struct ferryd_topic {
    char name[FERRY_MAX_TOPIC_NAME + 1];
    uint32_t npartitions;
    struct ferryd_partition **partitions;
    /* Which partitions have a log on this broker (in a cluster, those it replicates): npartitions
     * flags, or NULL when every partition does. partitions[i] is NULL where local[i] is 0. */
    uint8_t *local;
    char token[FERRYD_MAX_REQUEST_TOKEN + 1]; /* the creating request's token ("" = none) */
    struct ferryd_topic_config overrides;
    struct ferry_log_config log_config; /* broker defaults with the overrides applied */
    uint32_t deleting;                  /* partitions still being deleted */
    struct ferryd_topic *next_deleting;
    struct ferryd_topics *registry;
};

struct ferryd_topics;

/* 0 if name is a valid topic name (1..249 of [A-Za-z0-9._-], not "." or ".."), else
 * FERRY_ERR_INVALID_TOPIC with errmsg saying why. */
int ferryd_topic_name_check(const char *name, size_t len, char *errmsg, size_t errmsg_len);

/*
 * Opens the registry under data_dir (creating meta/ and topics/), finishes interrupted deletions,
 * loads topics.msgpack and opens (recovers) every partition log. Returns 0 or a ferry_err_t with
 * errmsg (a corrupt log names its file and offset).
 */
int ferryd_topics_open(uv_loop_t *loop, const char *data_dir, const struct ferry_log_config *defaults,
                       struct ferryd_topics **out, char *errmsg, size_t errmsg_len);

/* Closes every log and frees. Requires no sync in flight (ferryd_topics_syncs_in_flight() == 0);
 * the caller flushes first (ferryd_topics_flush_all, then waits for idle). */
void ferryd_topics_close(struct ferryd_topics *t);

struct ferryd_topic *ferryd_topics_find(struct ferryd_topics *t, const char *name, size_t len);
size_t ferryd_topics_count(const struct ferryd_topics *t);
/* Topics sorted by name; i < count. */
struct ferryd_topic *ferryd_topics_at(struct ferryd_topics *t, size_t i);
/* NULL if id is out of range or the partition has no log on this broker (ferryd_topics_create_local). */
struct ferryd_partition *ferryd_topic_partition(struct ferryd_topic *topic, int64_t id);

/*
 * Creates a topic with npartitions (1..FERRY_MAX_PARTITIONS_PER_TOPIC) and overrides (may be NULL),
 * opens its logs and persists the registry. Returns 0 or TOPIC_ALREADY_EXISTS, INVALID_TOPIC,
 * INVALID_PARTITIONS, LIMIT_EXCEEDED (FERRY_MAX_TOPICS), STORAGE_ERROR (nothing is left behind).
 */
int ferryd_topics_create(struct ferryd_topics *t, const char *name, size_t len, int64_t npartitions,
                         const struct ferryd_topic_config *overrides, char *errmsg, size_t errmsg_len);

/*
 * The same, with two options. local: only the partitions i with local[i] != 0 get a log here (in a
 * cluster, the ones this broker replicates); the others are known by count only
 * (ferryd_topic_partition answers NULL); NULL = all. token (token_len <= FERRYD_MAX_REQUEST_TOKEN,
 * 0 = none) is kept with the topic; a create of an existing topic whose token is the same returns 0.
 */
int ferryd_topics_create_local(struct ferryd_topics *t, const char *name, size_t len, int64_t npartitions,
                               const struct ferryd_topic_config *overrides, const uint8_t *local, const char *token,
                               size_t token_len, char *errmsg, size_t errmsg_len);

/*
 * Deletes a topic: marker, registry without it, then every partition (waiters of a sync in flight
 * are answered first). The name can be reused once the directories are gone (until then create
 * returns STORAGE_ERROR "still being deleted", retriable). Returns 0, UNKNOWN_TOPIC_OR_PARTITION or
 * STORAGE_ERROR.
 */
int ferryd_topics_delete(struct ferryd_topics *t, const char *name, size_t len, char *errmsg, size_t errmsg_len);

/*
 * Restarts p's log empty at offset `start` (a replica whose leader's retention already removed the
 * offsets it lacks: its log then begins where the leader's does, as in Kafka). p must belong to a
 * registry opened by ferryd_topics_open, have no sync in flight (else -1 "busy", retry later) and no
 * waiters. The files go, an empty first segment named after `start` is created, the log is reopened
 * and the producer state emptied. Returns 0, or a ferry_err_t with errmsg (STORAGE_ERROR: p is then
 * read-only until a restart, its old log closed or gone).
 */
int ferryd_topics_restart_log(struct ferryd_partition *p, int64_t start, char *errmsg, size_t errmsg_len);

/* Starts a sync on every partition that has unsynced appends (graceful stop). */
void ferryd_topics_flush_all(struct ferryd_topics *t);
/* Calls fn on every live partition (the broker's roll and retention timers). */
void ferryd_topics_for_each_partition(struct ferryd_topics *t, void (*fn)(struct ferryd_partition *p, void *arg),
                                      void *arg);

/* The environment all partitions share: syncs in flight, and the hook that runs when they reach 0. */
struct ferryd_partition_env *ferryd_topics_env(struct ferryd_topics *t);

#endif
