/* list_groups.c: ListGroups (api 12): the groups this broker coordinates now. */
#include "groups/groups_int.h"
#include "handlers/handlers.h"

void ferryd_handle_list_groups(struct ferryd_req *req, const msgpack_object *body)
{
    struct ferryd_coord *co = req->broker->coord;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    (void)body;
    uint32_t n = 0;
    for (size_t i = 0; co != NULL && co->buckets != NULL && i < co->nbuckets; i++)
        for (const struct fg_group *g = co->buckets[i]; g != NULL; g = g->next)
            n += co->slots[g->slot].state == FG_SLOT_READY;
    ferryd_resp_begin(req, &sb, &pk);
    msgpack_pack_map(&pk, 1);
    ferry_pack_key(&pk, "groups");
    msgpack_pack_array(&pk, n);
    for (size_t i = 0; co != NULL && co->buckets != NULL && i < co->nbuckets; i++) {
        for (const struct fg_group *g = co->buckets[i]; g != NULL; g = g->next) {
            if (co->slots[g->slot].state != FG_SLOT_READY)
                continue;
            msgpack_pack_map(&pk, 3);
            ferry_pack_key(&pk, "group_id");
            ferry_pack_strn(&pk, g->id, g->id_len);
            ferry_pack_key(&pk, "state");
            ferry_pack_str(&pk, fg_group_state(g));
            ferry_pack_key(&pk, "members");
            msgpack_pack_uint32(&pk, g->nmembers);
        }
    }
    ferryd_req_reply(req, &sb);
}
