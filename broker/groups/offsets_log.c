/* offsets_log.c: encoding and decoding of the offsets topic's records, and the group -> partition hash. */
#include "groups/offsets_log.h"

#include <stdio.h>
#include <string.h>

#include "ferry_errors.h"

static void pack_strn(msgpack_packer *pk, const char *s, size_t n)
{
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

void fg_key_offset(msgpack_sbuffer *sb, const char *group, size_t group_len, const char *topic, int32_t partition)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 4);
    ferry_pack_str(&pk, "offset");
    pack_strn(&pk, group, group_len);
    ferry_pack_str(&pk, topic);
    msgpack_pack_int32(&pk, partition);
}

void fg_key_member(msgpack_sbuffer *sb, const char *group, size_t group_len, const char *member_id)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 3);
    ferry_pack_str(&pk, "member");
    pack_strn(&pk, group, group_len);
    ferry_pack_str(&pk, member_id);
}

void fg_key_group(msgpack_sbuffer *sb, const char *group, size_t group_len)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 2);
    ferry_pack_str(&pk, "group");
    pack_strn(&pk, group, group_len);
}

void fg_value_offset(msgpack_sbuffer *sb, const struct fg_offset_value *v)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4);
    ferry_pack_key(&pk, "offset");
    msgpack_pack_int64(&pk, v->offset);
    ferry_pack_key(&pk, "metadata");
    if (v->metadata == NULL)
        msgpack_pack_nil(&pk);
    else
        pack_strn(&pk, v->metadata, v->metadata_len);
    ferry_pack_key(&pk, "member_epoch");
    msgpack_pack_int64(&pk, v->member_epoch);
    ferry_pack_key(&pk, "commit_ms");
    msgpack_pack_int64(&pk, v->commit_ms);
}

void fg_value_member(msgpack_sbuffer *sb, const struct fg_member_value *v)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 8);
    ferry_pack_key(&pk, "instance_id");
    ferry_pack_str(&pk, v->instance_id);
    ferry_pack_key(&pk, "client_id");
    ferry_pack_str(&pk, v->client_id ? v->client_id : "");
    ferry_pack_key(&pk, "host");
    ferry_pack_str(&pk, v->host ? v->host : "");
    ferry_pack_key(&pk, "subscribed");
    msgpack_pack_array(&pk, v->nsubscribed);
    for (uint32_t i = 0; i < v->nsubscribed; i++)
        ferry_pack_str(&pk, v->subscribed[i]);
    ferry_pack_key(&pk, "member_epoch");
    msgpack_pack_int64(&pk, v->member_epoch);
    ferry_pack_key(&pk, "assigned");
    msgpack_pack_array(&pk, v->nassigned);
    for (uint32_t i = 0; i < v->nassigned; i++) {
        msgpack_pack_array(&pk, 2);
        ferry_pack_str(&pk, v->assigned[i].topic);
        msgpack_pack_array(&pk, v->assigned[i].n);
        for (uint32_t k = 0; k < v->assigned[i].n; k++)
            msgpack_pack_int32(&pk, v->assigned[i].partitions[k]);
    }
    ferry_pack_key(&pk, "session_timeout_ms");
    msgpack_pack_int64(&pk, v->session_timeout_ms);
    ferry_pack_key(&pk, "rebalance_timeout_ms");
    msgpack_pack_int64(&pk, v->rebalance_timeout_ms);
}

void fg_value_group(msgpack_sbuffer *sb, const struct fg_group_value *v)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    ferry_pack_key(&pk, "group_epoch");
    msgpack_pack_int64(&pk, v->group_epoch);
    ferry_pack_key(&pk, "assignment_epoch");
    msgpack_pack_int64(&pk, v->assignment_epoch);
}

static int is_str(const msgpack_object *o)
{
    return o->type == MSGPACK_OBJECT_STR;
}

static int str_eq(const msgpack_object *o, const char *s)
{
    return is_str(o) && o->via.str.size == strlen(s) && memcmp(o->via.str.ptr, s, o->via.str.size) == 0;
}

/* assigned: [[str, [int 0..INT32_MAX]]] */
static int check_assigned(const msgpack_object_array *a)
{
    for (uint32_t i = 0; i < a->size; i++) {
        const msgpack_object *e = &a->ptr[i];
        if (e->type != MSGPACK_OBJECT_ARRAY || e->via.array.size != 2 || !is_str(&e->via.array.ptr[0]) ||
            e->via.array.ptr[1].type != MSGPACK_OBJECT_ARRAY)
            return -1;
        const msgpack_object_array *ps = &e->via.array.ptr[1].via.array;
        for (uint32_t k = 0; k < ps->size; k++)
            if (ps->ptr[k].type != MSGPACK_OBJECT_POSITIVE_INTEGER || ps->ptr[k].via.u64 > INT32_MAX)
                return -1;
    }
    return 0;
}

static int decode_value(const msgpack_object *v, struct fg_record *out, char *errmsg, size_t errmsg_len)
{
    struct ferry_mp_reader rd = {0};
    size_t len;
    if (v->type != MSGPACK_OBJECT_MAP) {
        snprintf(errmsg, errmsg_len, "value is not a map");
        return -1;
    }
    if (out->type == FG_REC_OFFSET) {
        out->off.offset = ferry_mp_int(&rd, v, "offset", 0, 1);
        out->off.metadata = ferry_mp_str(&rd, v, "metadata", &len, 0);
        out->off.metadata_len = out->off.metadata ? len : 0;
        out->off.member_epoch = ferry_mp_int(&rd, v, "member_epoch", -1, 0);
        out->off.commit_ms = ferry_mp_int(&rd, v, "commit_ms", 0, 0);
    } else if (out->type == FG_REC_GROUP) {
        out->grp.group_epoch = ferry_mp_int(&rd, v, "group_epoch", 0, 1);
        out->grp.assignment_epoch = ferry_mp_int(&rd, v, "assignment_epoch", 0, 1);
    } else {
        out->mem.instance_id = ferry_mp_str(&rd, v, "instance_id", &out->mem.instance_id_len, 0);
        out->mem.client_id = ferry_mp_str(&rd, v, "client_id", &out->mem.client_id_len, 0);
        out->mem.host = ferry_mp_str(&rd, v, "host", &out->mem.host_len, 0);
        out->mem.subscribed = ferry_mp_array(&rd, v, "subscribed", 1);
        out->mem.member_epoch = ferry_mp_int(&rd, v, "member_epoch", 0, 1);
        out->mem.assigned = ferry_mp_array(&rd, v, "assigned", 1);
        out->mem.session_timeout_ms = ferry_mp_int(&rd, v, "session_timeout_ms", 45000, 0);
        out->mem.rebalance_timeout_ms = ferry_mp_int(&rd, v, "rebalance_timeout_ms", 300000, 0);
        if (!rd.err) {
            for (uint32_t i = 0; i < out->mem.subscribed->size; i++)
                if (!is_str(&out->mem.subscribed->ptr[i])) {
                    snprintf(errmsg, errmsg_len, "member value: subscribed[%u] is not a str", i);
                    return -1;
                }
            if (check_assigned(out->mem.assigned) != 0) {
                snprintf(errmsg, errmsg_len, "member value: malformed 'assigned'");
                return -1;
            }
        }
    }
    if (rd.err) {
        snprintf(errmsg, errmsg_len, "%s", rd.errmsg);
        return -1;
    }
    return 0;
}

int fg_record_decode(const uint8_t *key, size_t key_len, const uint8_t *value, size_t value_len,
                     struct fg_record_msgs *msgs, struct fg_record *out, char *errmsg, size_t errmsg_len)
{
    char why[256];
    memset(out, 0, sizeof(*out));
    msgs->have_key = msgs->have_value = 0;
    if (key == NULL || ferry_msg_unpack(key, key_len, &msgs->key, why, sizeof(why)) != 0) {
        snprintf(errmsg, errmsg_len, "key: %s", key == NULL ? "null" : why);
        return -1;
    }
    msgs->have_key = 1;
    const msgpack_object *k = &msgs->key.root;
    if (k->type != MSGPACK_OBJECT_ARRAY || k->via.array.size < 2 || !is_str(&k->via.array.ptr[1]) ||
        k->via.array.ptr[1].via.str.size == 0) {
        snprintf(errmsg, errmsg_len, "key is not [kind, group, ...]");
        return -1;
    }
    const msgpack_object *e = k->via.array.ptr;
    out->group = e[1].via.str.ptr;
    out->group_len = e[1].via.str.size;
    if (str_eq(&e[0], "offset") && k->via.array.size == 4 && is_str(&e[2]) &&
        e[3].type == MSGPACK_OBJECT_POSITIVE_INTEGER && e[3].via.u64 <= INT32_MAX) {
        out->type = FG_REC_OFFSET;
        out->topic = e[2].via.str.ptr;
        out->topic_len = e[2].via.str.size;
        out->partition = (int32_t)e[3].via.u64;
    } else if (str_eq(&e[0], "member") && k->via.array.size == 3 && is_str(&e[2]) && e[2].via.str.size > 0) {
        out->type = FG_REC_MEMBER;
        out->member_id = e[2].via.str.ptr;
        out->member_id_len = e[2].via.str.size;
    } else if (str_eq(&e[0], "group") && k->via.array.size == 2) {
        out->type = FG_REC_GROUP;
    } else {
        snprintf(errmsg, errmsg_len, "unknown key kind");
        return -1;
    }
    if (value == NULL) {
        out->tombstone = 1;
        return 0;
    }
    if (ferry_msg_unpack(value, value_len, &msgs->value, why, sizeof(why)) != 0) {
        snprintf(errmsg, errmsg_len, "value: %s", why);
        return -1;
    }
    msgs->have_value = 1;
    return decode_value(&msgs->value.root, out, errmsg, errmsg_len);
}

void fg_record_msgs_free(struct fg_record_msgs *msgs)
{
    if (msgs->have_key)
        ferry_msg_destroy(&msgs->key);
    if (msgs->have_value)
        ferry_msg_destroy(&msgs->value);
    msgs->have_key = msgs->have_value = 0;
}

/* MurmurHash2 with Kafka's seed and tail handling (the key partitioner of libferry, client/src/murmur2.c). */
static uint32_t murmur2(const uint8_t *p, size_t len)
{
    const uint32_t m = 0x5bd1e995u;
    uint32_t h = 0x9747b28cu ^ (uint32_t)len;
    size_t i = 0;
    for (; i + 4 <= len; i += 4) {
        uint32_t k = (uint32_t)p[i] | (uint32_t)p[i + 1] << 8 | (uint32_t)p[i + 2] << 16 | (uint32_t)p[i + 3] << 24;
        k *= m;
        k ^= k >> 24;
        k *= m;
        h = h * m ^ k;
    }
    size_t rest = len - i;
    if (rest >= 3)
        h ^= (uint32_t)p[i + 2] << 16;
    if (rest >= 2)
        h ^= (uint32_t)p[i + 1] << 8;
    if (rest >= 1) {
        h ^= p[i];
        h *= m;
    }
    h ^= h >> 13;
    h *= m;
    h ^= h >> 15;
    return h;
}

int32_t fg_group_partition(const char *group, size_t len, int32_t partitions)
{
    if (partitions <= 0)
        return -1;
    return (int32_t)((murmur2((const uint8_t *)group, len) & 0x7fffffffu) % (uint32_t)partitions);
}
