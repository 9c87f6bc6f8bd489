/* api_versions.c: ApiVersions (api 0): the apis and versions this broker speaks (any request version). */
#include "handlers/handlers.h"

void ferryd_handle_api_versions(struct ferryd_req *req, const msgpack_object *body)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    (void)body;
    ferryd_resp_begin(req, &sb, &pk);
    msgpack_pack_map(&pk, 2);
    ferry_pack_key(&pk, "apis");
    msgpack_pack_array(&pk, (uint32_t)ferryd_api_count());
    for (size_t i = 0; i < ferryd_api_count(); i++) {
        uint32_t api, min, max;
        ferryd_api_at(i, &api, &min, &max);
        msgpack_pack_array(&pk, 3);
        msgpack_pack_uint32(&pk, api);
        msgpack_pack_uint32(&pk, min);
        msgpack_pack_uint32(&pk, max);
    }
    ferry_pack_key(&pk, "broker_version");
    ferry_pack_str(&pk, "ferryd " FERRYD_VERSION);
    ferryd_req_reply(req, &sb);
}
