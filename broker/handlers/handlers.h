/* handlers.h: the request dispatcher and one handler per api (one file each in broker/handlers/). */
#ifndef FERRYD_HANDLERS_H
#define FERRYD_HANDLERS_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

#include "broker.h"
#include "proto/codec.h"

/* Version string sent in ApiVersions. */
#define FERRYD_VERSION "0.1.0"

/*
 * Routes a decoded request to its handler: UNKNOWN_API for an api we do not have,
 * UNSUPPORTED_VERSION outside [min, max] (ApiVersions is answered at any version), INVALID_REQUEST
 * when the body is not a map. The request is ended (now or later) by the handler.
 */
void ferryd_dispatch(struct ferryd_req *req, const struct ferry_request_header *h);

/* The dispatch table, for ApiVersions: entry i (i < ferryd_api_count()). */
size_t ferryd_api_count(void);
void ferryd_api_at(size_t i, uint32_t *api, uint32_t *min_version, uint32_t *max_version);

/*
 * Handlers. body is the request's body map, valid only during the call; a handler copies what it
 * keeps and ends req with ferryd_req_reply / ferryd_req_error / ferryd_req_drop (broker.h).
 */
void ferryd_handle_api_versions(struct ferryd_req *req, const msgpack_object *body);
void ferryd_handle_metadata(struct ferryd_req *req, const msgpack_object *body);
void ferryd_handle_create_topics(struct ferryd_req *req, const msgpack_object *body);
void ferryd_handle_delete_topics(struct ferryd_req *req, const msgpack_object *body);
void ferryd_handle_produce(struct ferryd_req *req, const msgpack_object *body);
void ferryd_handle_fetch(struct ferryd_req *req, const msgpack_object *body);
void ferryd_handle_list_offsets(struct ferryd_req *req, const msgpack_object *body);
void ferryd_handle_init_producer_id(struct ferryd_req *req, const msgpack_object *body);
/* Consumer groups (docs/consumer-groups.md; state in broker/groups/). */
void ferryd_handle_find_coordinator(struct ferryd_req *req, const msgpack_object *body);
void ferryd_handle_group_heartbeat(struct ferryd_req *req, const msgpack_object *body);
void ferryd_handle_offset_commit(struct ferryd_req *req, const msgpack_object *body);
void ferryd_handle_offset_fetch(struct ferryd_req *req, const msgpack_object *body);
void ferryd_handle_list_groups(struct ferryd_req *req, const msgpack_object *body);
void ferryd_handle_describe_groups(struct ferryd_req *req, const msgpack_object *body);
void ferryd_handle_delete_groups(struct ferryd_req *req, const msgpack_object *body);
void ferryd_handle_reset_offsets(struct ferryd_req *req, const msgpack_object *body);

/*
 * CreateTopics / DeleteTopics in a cluster (admin_async.c): an answer {"topics": [{name, error,
 * error_message}]} sent once every topic has its result. new() holds the answer; item() registers
 * topic i; either result() now, or begin_wait() then done() later (a ferryd_cluster_done_cb with
 * the item as arg); release() drops the hold. new() returns NULL when out of memory.
 */
struct ferryd_admin;
struct ferryd_admin *ferryd_admin_new(struct ferryd_req *req, const char *what, uint32_t n);
void *ferryd_admin_item(struct ferryd_admin *a, uint32_t i, const char *name, size_t len);
void ferryd_admin_result(void *item, int err, const char *msg);
void ferryd_admin_begin_wait(void *item);
void ferryd_admin_done(void *item, int err, const char *msg);
void ferryd_admin_release(struct ferryd_admin *a);

/* Packs the optional error_message field: a str, or nil when msg is NULL or empty. */
void ferryd_pack_errmsg(msgpack_packer *pk, const char *msg);

#endif
