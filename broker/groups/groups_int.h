/* groups_int.h: the coordinator's state (groups, members, offsets, offsets partitions) shared by
 * broker/groups/ and the group api handlers in broker/handlers/. */
#ifndef FERRYD_GROUPS_INT_H
#define FERRYD_GROUPS_INT_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "broker.h"
#include "groups/assignor.h"
#include "groups/coordinator.h"
#include "groups/offsets_log.h"
#include "proto/batch.h"

/* Limits of docs/consumer-groups.md. */
#define FG_MAX_GROUP_ID 255
#define FG_MAX_MEMBERS 1000
#define FG_MAX_SUBSCRIBED 1000
#define FG_MAX_METADATA 4096
#define FG_MAX_GROUPS 100000
/* Member ids, instance ids, client ids and hosts longer than this are refused (INVALID_REQUEST). */
#define FG_MAX_ID 255
#define FG_DEFAULT_SESSION_MS 45000
#define FG_DEFAULT_REBALANCE_MS 300000

struct fg_records;

enum fg_slot_state { FG_SLOT_NONE = 0, FG_SLOT_WANT_LOAD, FG_SLOT_LOADING, FG_SLOT_READY };

/* One partition of the offsets topic, as seen by this broker. */
struct fg_slot {
    int state;    /* enum fg_slot_state */
    uint64_t gen; /* bumped on every leadership change: stale callbacks see a different value */
};

struct fg_offset {
    uint32_t topic; /* index into the group's topic table */
    int32_t partition;
    int64_t offset;
    char *metadata; /* NULL = none */
    int64_t member_epoch;
    int64_t commit_ms;
};

struct fg_reset {
    uint32_t topic;
    int32_t partition;
    int64_t offset;
};

struct fg_member {
    char *id;
    char *instance_id; /* NULL = dynamic */
    char *client_id;
    char *host;
    uint32_t *subs; /* subscribed topic indexes, sorted, no duplicates */
    uint32_t nsubs;
    int64_t epoch;
    int64_t prev_epoch; /* the epoch before the last bump (its answer may have been lost) */
    struct fg_tp *assigned; /* current assignment (what the member may own), sorted */
    uint32_t nassigned;
    struct fg_tp *revoking; /* removed from `assigned`, not yet acknowledged by the member; sorted */
    uint32_t nrevoking;
    struct fg_tp *target; /* the assignor's answer, sorted */
    uint32_t ntarget;
    int64_t session_timeout_ms, rebalance_timeout_ms;
    uint64_t deadline;      /* uv_now() after which the member is removed */
    uint64_t revoke_since;  /* uv_now() when `revoking` became non-empty (0 = empty) */
    int left;               /* static member that left with epoch -2: reserved until the deadline */
    int send_assignment;    /* the next heartbeat answer carries the full assignment */
    struct fg_reset *resets; /* offsets to hand out in the next heartbeat answer */
    uint32_t nresets;
};

struct fg_group {
    struct fg_group *next; /* hash chain */
    char *id;              /* NUL-terminated, id_len bytes */
    size_t id_len;
    int32_t slot;
    int64_t group_epoch, assignment_epoch;
    char **topics; /* topic table: names referenced by index from subscriptions, assignments, offsets */
    uint32_t ntopics, captopics;
    struct fg_member **members; /* sorted by id */
    uint32_t nmembers;
    struct fg_offset *offsets;
    uint32_t noffsets, capoffsets;
    uint64_t parts_sig; /* partition counts of the subscribed topics at the last target computation */
};

struct ferryd_coord {
    struct ferryd *b;
    uv_timer_t timer;
    int stopped;
    struct fg_slot *slots;
    int32_t nslots; /* partitions of the offsets topic (0 until it exists here) */
    struct fg_group **buckets;
    size_t nbuckets;
    size_t ngroups;
    int creating;  /* CreateTopics of the offsets topic in flight */
    int wanted;    /* standalone: a group request arrived, so the offsets topic is created (lazily, as
                    * Kafka does: a broker that never sees a group has none) */
    int nmembers;  /* cluster.members count (0 standalone) */
    uint64_t ticks;
};

/* ---- lookups (coordinator.c) ---- */
/*
 * Where group lives and whether this broker serves it now: 0 with *slot; or NOT_COORDINATOR,
 * COORDINATOR_NOT_AVAILABLE (offsets topic or partition not ready), INVALID_GROUP_ID, with msg.
 */
int fg_route(struct ferryd_coord *co, const char *group, size_t len, int32_t *slot, char *msg, size_t msg_len);
struct fg_group *fg_group_find(struct ferryd_coord *co, const char *id, size_t len);
/* A new empty group (epoch 0) in slot; NULL when out of memory or at FG_MAX_GROUPS (*limit set). */
struct fg_group *fg_group_create(struct ferryd_coord *co, const char *id, size_t len, int32_t slot, int *limit);
void fg_group_remove(struct ferryd_coord *co, struct fg_group *g);
/* Index of topic name in g's table, added when absent; UINT32_MAX when out of memory. */
uint32_t fg_topic_index(struct fg_group *g, const char *name, size_t len);
/* Partition count of a topic known to the broker, -1 when unknown. */
int32_t fg_topic_partitions(struct ferryd_coord *co, const char *name);
struct fg_member *fg_member_find(const struct fg_group *g, const char *id, size_t len);
struct fg_member *fg_member_find_instance(const struct fg_group *g, const char *iid, size_t len);
/* Adds a member (sorted by id); NULL when out of memory. Takes ownership of nothing: copies id. */
struct fg_member *fg_member_add(struct fg_group *g, const char *id, size_t len);
void fg_member_remove(struct fg_group *g, struct fg_member *m);
struct fg_offset *fg_offset_find(const struct fg_group *g, uint32_t topic, int32_t partition);
/* Sets (adding when absent) a committed offset; metadata copied. Returns 0 or -1 (out of memory). */
int fg_offset_set(struct fg_group *g, uint32_t topic, int32_t partition, int64_t offset, const char *metadata,
                  size_t metadata_len, int64_t member_epoch, int64_t commit_ms);
/* "empty", "assigning" or "stable". */
const char *fg_group_state(const struct fg_group *g);
int fg_tp_in(const struct fg_tp *set, uint32_t n, uint32_t topic, int32_t partition);

/* ---- membership (membership.c) ---- */
/* Bumps the group epoch and recomputes every member's target. Returns 0 or -1 (out of memory). */
int fg_group_rebalance(struct ferryd_coord *co, struct fg_group *g);
/* Recomputes every member's target without bumping (after a replay). Returns 0 or -1 (out of memory). */
int fg_group_compute_targets(struct ferryd_coord *co, struct fg_group *g);
/* Moves m's current assignment toward its target (revoke first, add what nobody owns; now = uv_now()).
 * Sets *changed when m's assignment or epoch changed (then its member record must be written).
 * Returns 0 or -1 (out of memory, nothing changed). */
int fg_member_reconcile(struct fg_group *g, struct fg_member *m, uint64_t now, int *changed);
/* Removes m after a leave or an expired session: its record's tombstone into recs, rebalance. */
int fg_member_expel(struct ferryd_coord *co, struct fg_group *g, struct fg_member *m, struct fg_records *recs);

/* ---- records and writes (records.c) ---- */
/* Records of one write, appended to one offsets partition as one batch. */
struct fg_records {
    struct ferry_batch_builder *bb;
    uint32_t n;
    int failed; /* an add failed (out of memory / limit): the write fails */
};
void fg_records_init(struct fg_records *r);
void fg_records_free(struct fg_records *r);
void fg_rec_offset(struct fg_records *r, const struct fg_group *g, const struct fg_offset *o);
void fg_rec_offset_tombstone(struct fg_records *r, const struct fg_group *g, uint32_t topic, int32_t partition);
void fg_rec_member(struct fg_records *r, const struct fg_group *g, const struct fg_member *m);
void fg_rec_member_tombstone(struct fg_records *r, const struct fg_group *g, const char *member_id);
void fg_rec_group(struct fg_records *r, const struct fg_group *g);
void fg_rec_group_tombstone(struct fg_records *r, const struct fg_group *g);

/*
 * Appends recs (consumed) to the slot's offsets partition: replicated (answered after commit) or
 * local (answered once durable). cb(arg, error, msg) runs exactly once, possibly before this
 * returns (no records: error 0 at once). Errors: NOT_COORDINATOR (leadership lost), STORAGE_ERROR,
 * UNKNOWN. cb must not rely on the coordinator still existing.
 */
typedef void (*fg_write_cb)(void *arg, int error, const char *msg);
void fg_write(struct ferryd_coord *co, int32_t slot, struct fg_records *recs, fg_write_cb cb, void *arg);
/* The common case: answer req with the response in sb (ferryd_resp_begin'd) once recs are written,
 * or with the write's error. */
void fg_write_then_reply(struct ferryd_coord *co, int32_t slot, struct fg_records *recs, struct ferryd_req *req,
                         msgpack_sbuffer *sb);

/* ---- replay (replay.c) ---- */
/* Rebuilds the groups of slot from its partition's log (after a barrier in a cluster). Returns 0 or -1
 * with msg (the partition could not be read). */
int fg_slot_replay(struct ferryd_coord *co, int32_t slot, char *msg, size_t msg_len);

/* ---- request helpers (coordinator.c) ---- */
/* Packs [{"topic", "partitions": [int]}] from a sorted fg_tp set. */
void fg_pack_tp_set(msgpack_packer *pk, const struct fg_group *g, const struct fg_tp *set, uint32_t n);
/* Checks a group id field: 0, or INVALID_GROUP_ID with msg. */
int fg_check_group_id(const char *id, size_t len, char *msg, size_t msg_len);
/* Clamps a requested session timeout to the broker's bounds (-1 = default). */
int64_t fg_session_timeout(const struct ferryd_coord *co, int64_t requested);
uint64_t fg_now(const struct ferryd_coord *co);

#endif
