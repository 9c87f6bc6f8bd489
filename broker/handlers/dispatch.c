/* dispatch.c: api -> supported versions -> handler, and the checks every request passes first. */
#include "handlers/handlers.h"

#include <string.h>

#include "ferry_errors.h"

typedef void (*handler_fn)(struct ferryd_req *req, const msgpack_object *body);

struct api_entry {
    uint32_t api;
    uint32_t min_version, max_version;
    handler_fn fn;
};

/* Indexed by api number. */
static const struct api_entry api_table[] = {
    {FERRY_API_API_VERSIONS, 0, 0, ferryd_handle_api_versions},
    {FERRY_API_METADATA, 0, 0, ferryd_handle_metadata},
    {FERRY_API_CREATE_TOPICS, 0, 0, ferryd_handle_create_topics},
    {FERRY_API_DELETE_TOPICS, 0, 0, ferryd_handle_delete_topics},
    {FERRY_API_PRODUCE, 0, 0, ferryd_handle_produce},
    {FERRY_API_FETCH, 0, 0, ferryd_handle_fetch},
    {FERRY_API_LIST_OFFSETS, 0, 0, ferryd_handle_list_offsets},
    {FERRY_API_INIT_PRODUCER_ID, 0, 0, ferryd_handle_init_producer_id},
    {FERRY_API_FIND_COORDINATOR, 0, 0, ferryd_handle_find_coordinator},
    {FERRY_API_GROUP_HEARTBEAT, 0, 0, ferryd_handle_group_heartbeat},
    {FERRY_API_OFFSET_COMMIT, 0, 0, ferryd_handle_offset_commit},
    {FERRY_API_OFFSET_FETCH, 0, 0, ferryd_handle_offset_fetch},
    {FERRY_API_LIST_GROUPS, 0, 0, ferryd_handle_list_groups},
    {FERRY_API_DESCRIBE_GROUPS, 0, 0, ferryd_handle_describe_groups},
    {FERRY_API_DELETE_GROUPS, 0, 0, ferryd_handle_delete_groups},
    {FERRY_API_RESET_OFFSETS, 0, 0, ferryd_handle_reset_offsets},
};
#define API_COUNT (sizeof(api_table) / sizeof(api_table[0]))
_Static_assert(API_COUNT == FERRY_API_COUNT_, "every api in codec.h has a handler");

size_t ferryd_api_count(void)
{
    return API_COUNT;
}

void ferryd_api_at(size_t i, uint32_t *api, uint32_t *min_version, uint32_t *max_version)
{
    *api = api_table[i].api;
    *min_version = api_table[i].min_version;
    *max_version = api_table[i].max_version;
}

void ferryd_dispatch(struct ferryd_req *req, const struct ferry_request_header *h)
{
    if (h->api >= API_COUNT) {
        ferryd_req_error(req, FERRY_ERR_UNKNOWN_API, "unknown api %u", h->api);
        return;
    }
    const struct api_entry *e = &api_table[h->api];
    if (e->api != FERRY_API_API_VERSIONS && (h->version < e->min_version || h->version > e->max_version)) {
        ferryd_req_error(req, FERRY_ERR_UNSUPPORTED_VERSION, "%s version %u not supported (versions %u..%u)",
                         ferry_api_name((int)h->api), h->version, e->min_version, e->max_version);
        return;
    }
    if (h->body == NULL || h->body->type != MSGPACK_OBJECT_MAP) {
        ferryd_req_error(req, FERRY_ERR_INVALID_REQUEST, "request body must be a map");
        return;
    }
    req->client_id = h->client_id;
    req->client_id_len = h->client_id_len;
    e->fn(req, h->body);
}

void ferryd_pack_errmsg(msgpack_packer *pk, const char *msg)
{
    if (msg == NULL || msg[0] == '\0')
        msgpack_pack_nil(pk);
    else
        ferry_pack_str(pk, msg);
}
