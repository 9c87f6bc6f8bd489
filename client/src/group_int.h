/* group_int.h: consumer-group internals of libferry shared by group.c, group_api.c and group_admin.c. */
#ifndef FERRY_GROUP_INT_H
#define FERRY_GROUP_INT_H

#include "ferry_int.h"

/* FindCoordinator is retried with a backoff doubling from retry.backoff.ms up to this. */
#define GROUP_COORD_BACKOFF_MAX_MS 5000

/* After an error that retrying at once cannot fix (UNRELEASED_INSTANCE_ID, INVALID_GROUP_ID...). */
#define GROUP_JOIN_RETRY_MS 2000

/* Member ids are 128-bit hex strings; anything longer from a broker is refused. */
#define GROUP_MEMBER_ID_MAX 128

/* ---- topic-partition lists ---- */

struct tp {
    char *topic;
    int32_t partition;
    int64_t offset;    /* commit: the offset; owned: the last committed offset known (-1) */
    bool rewind;       /* commit: allow going backwards */
    bool revoking;     /* owned: given up, its commit is in flight: still listed in "owned" */
    bool offset_fetch; /* owned: its start offset is being asked (OffsetFetch) */
};

struct tplist {
    struct tp *v;
    size_t n, cap;
};

/*
 * Packs l grouped by topic: PACK_OWNED [{"topic": t, "partitions": [p...]}] (heartbeat),
 * PACK_FETCH [{"name": t, "partitions": [p...]}] (OffsetFetch), PACK_COMMIT [{"name": t,
 * "partitions": [{"partition", "offset", "rewind"?}]}] (OffsetCommit).
 */
enum pack_form { PACK_OWNED, PACK_FETCH, PACK_COMMIT };

void grp_tpl_free(struct tplist *l);
struct tp *grp_tpl_find(const struct tplist *l, const char *topic, int32_t partition);
/* Appends a copy; returns the entry or NULL when out of memory. */
struct tp *grp_tpl_add(struct tplist *l, const char *topic, size_t topic_len, int32_t partition, int64_t offset);
void grp_tpl_remove(struct tplist *l, struct tp *e);
void grp_pack_tp_topics(msgpack_packer *pk, const struct tplist *l, enum pack_form form);
void grp_strv_free(char **v, size_t n);

/* ---- events for the application (served by ferry_consumer_poll) ---- */

struct gevent {
    struct gevent *next;
    bool commit;                 /* a commit result, else a rebalance event */
    ferry_rebalance_event_t rb;
    ferry_err_t err;
    size_t n;
    ferry_topic_partition_t parts[]; /* then the topic names */
};

/* One allocation holding a copy of l. NULL when out of memory. */
struct gevent *grp_event_new(const struct tplist *l);
/* I/O thread: queues an event for the application (takes ev; NULL is ignored). */
void grp_event_push(struct ferry_client *cl, struct gevent *ev);

/* ---- requests from application threads ---- */

enum commit_kind{ COMMIT_APP_SYNC, COMMIT_APP_ASYNC, COMMIT_AUTO, COMMIT_REVOKE, COMMIT_LEAVE };

struct gcommit {
    struct gcommit *next;
    enum commit_kind kind;
    struct tplist parts;
    int64_t deadline_ms;
    bool sent;
    /* COMMIT_APP_SYNC (shared): */
    bool done, abandoned;
    ferry_err_t err;
    char errstr[256];
};

/* A group admin request (ferry_admin_group_request, ferry_committed). */
struct gop {
    struct gop *next;
    int api;
    char *group_id; /* NULL: broker_id / any broker */
    int32_t broker_id;
    uint8_t *body;
    size_t body_len;
    int64_t deadline_ms;
    int64_t retry_at_ms;
    int32_t coord_id; /* -1 unknown */
    bool finding, sent;
    /* shared */
    bool done, abandoned;
    ferry_err_t err;
    char errstr[512];
    uint8_t *resp;
    size_t resp_len;
};

void grp_gcommit_free(struct gcommit *c);
void grp_gop_free(struct gop *op);

/* ---- the group state ---- */

struct ferry_group {
    /* ---- shared (cl->lock) ---- */
    bool subscribed;
    char **sub; /* subscription, sorted as given */
    size_t nsub;
    uint64_t sub_epoch;    /* bumped by subscribe/unsubscribe */
    int64_t last_poll_ms;  /* the processing deadline counts from here */
    int in_poll;           /* threads inside ferry_consumer_poll: the application is not stuck */
    bool poll_expired;     /* left for the processing deadline; the next poll rejoins */
    bool close_requested;  /* ferry_consumer_close */
    bool close_done;
    struct gcommit *commits_in;
    struct gop *ops_in;
    struct gevent *events, *events_tail;
    char pub_member_id[GROUP_MEMBER_ID_MAX + 1];
    int32_t pub_epoch;

    /* ---- I/O thread ---- */
    uint64_t io_sub_epoch;
    char **io_sub;
    size_t io_nsub;
    bool io_subscribed;
    bool io_expired;
    bool io_close;
    int32_t coord_id; /* -1 unknown */
    bool coord_finding;
    int64_t coord_retry_at_ms;
    int64_t coord_backoff_ms;
    char member_id[GROUP_MEMBER_ID_MAX + 1];
    int32_t member_epoch; /* 0 = not joined */
    bool joined;          /* a heartbeat with epoch 0 was answered: we are a member */
    int64_t hb_interval_ms;
    int64_t next_hb_ms;
    bool hb_inflight;
    bool send_sub;        /* the subscription changed: send it with the next heartbeat */
    int64_t join_retry_at_ms;
    struct tplist owned;  /* what the member owns now (reported in every heartbeat) */
    bool ofetch_inflight;
    int64_t ofetch_retry_at_ms;
    int64_t next_autocommit_ms;
    bool autocommit_inflight;
    enum { LEAVE_NONE, LEAVE_COMMIT, LEAVE_SEND, LEAVE_INFLIGHT } leave;
    int64_t leave_deadline_ms; /* the leave gives up on the coordinator after this */
    struct gcommit *commits; /* taken from commits_in or made here */
    struct gop *ops;
};

/* The client's group state, created on first use (cl->lock held); NULL when out of memory. */
struct ferry_group *grp_group_get_locked(struct ferry_client *cl);

/* ---- coordinator lookup (group.c) ---- */

/* An error after which the coordinator must be looked up again. */
bool grp_coordinator_error(int err);
/* A broker whose last connection attempt (or connection) failed and waits for its backoff. */
bool grp_coordinator_unreachable(const struct broker *b, int64_t now);
/* The answer of FindCoordinator: records the broker, returns its id or -1 (out says why). */
int32_t grp_parse_coordinator(struct ferry_client *cl, int err, const char *errmsg,
                              const struct ferry_response_header *rh, char *out, size_t out_len);
/* Sends FindCoordinator for group_id to any broker that is up. 0, or -1 (nothing up yet: cb not called). */
int grp_send_find_coordinator(struct ferry_client *cl, const char *group_id, request_cb_t *cb, void *arg);

/* ---- application calls (group_api.c) ---- */

/* The common argument checks: a consumer client (FERRY_ERR__WRONG_CLIENT_TYPE), with a group.id
 * when need_group (FERRY_ERR_INVALID_GROUP_ID). */
ferry_err_t grp_group_check(ferry_client_t *cl, bool need_group);

/* ---- group admin requests (group_admin.c) ---- */

/* I/O thread: sends waiting admin requests, fails those past their deadline. */
void grp_gops_service(struct ferry_client *cl, int64_t now);

#endif
