/* offsets_log.h: the records of the offsets topic __consumer_offsets: keys and values in msgpack. */
#ifndef FERRYD_GROUPS_OFFSETS_LOG_H
#define FERRYD_GROUPS_OFFSETS_LOG_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/codec.h"

/*
 * docs/consumer-groups.md, "Records of the offsets topic". Key and value are msgpack; a record with
 * a null value is a tombstone for its key (the latest record for a key wins on replay):
 *   ["offset", group, topic, partition]  {"offset", "metadata"?, "member_epoch", "commit_ms"}
 *   ["member", group, member_id]         {"instance_id"?, "client_id", "host", "subscribed": [str],
 *                                         "member_epoch", "assigned": [[topic, [partition]]],
 *                                         "session_timeout_ms", "rebalance_timeout_ms"}
 *   ["group", group]                     {"group_epoch", "assignment_epoch"}
 * Encoders write one key or value into an sbuffer (initialised by the caller, appended to).
 */

#define FG_OFFSETS_TOPIC "__consumer_offsets"

enum fg_rec_type { FG_REC_OFFSET = 1, FG_REC_MEMBER = 2, FG_REC_GROUP = 3 };

struct fg_offset_value {
    int64_t offset;
    const char *metadata; /* NULL = none */
    size_t metadata_len;
    int64_t member_epoch;
    int64_t commit_ms;
};

struct fg_topic_parts {
    const char *topic;
    const int32_t *partitions;
    uint32_t n;
};

struct fg_member_value {
    const char *instance_id; /* NULL = dynamic member */
    const char *client_id;
    const char *host;
    const char *const *subscribed;
    uint32_t nsubscribed;
    int64_t member_epoch;
    const struct fg_topic_parts *assigned;
    uint32_t nassigned;
    int64_t session_timeout_ms;
    int64_t rebalance_timeout_ms;
};

struct fg_group_value {
    int64_t group_epoch;
    int64_t assignment_epoch;
};

void fg_key_offset(msgpack_sbuffer *sb, const char *group, size_t group_len, const char *topic, int32_t partition);
void fg_key_member(msgpack_sbuffer *sb, const char *group, size_t group_len, const char *member_id);
void fg_key_group(msgpack_sbuffer *sb, const char *group, size_t group_len);
void fg_value_offset(msgpack_sbuffer *sb, const struct fg_offset_value *v);
void fg_value_member(msgpack_sbuffer *sb, const struct fg_member_value *v);
void fg_value_group(msgpack_sbuffer *sb, const struct fg_group_value *v);

/*
 * A decoded record. Strings point into the decoded messages (not NUL-terminated); they live as long
 * as the struct fg_record_msgs given to fg_record_decode. For a member value, `subscribed` is an
 * array of str and `assigned` an array of [str, [int32 >= 0]] (both checked by the decoder).
 */
struct fg_record {
    int type;      /* enum fg_rec_type */
    int tombstone; /* null value */
    const char *group;
    size_t group_len;
    const char *topic; /* offset */
    size_t topic_len;
    int32_t partition;
    const char *member_id; /* member */
    size_t member_id_len;
    struct {
        int64_t offset, member_epoch, commit_ms;
        const char *metadata; /* NULL = none */
        size_t metadata_len;
    } off;
    struct {
        const char *instance_id, *client_id, *host; /* instance_id NULL = none */
        size_t instance_id_len, client_id_len, host_len;
        const msgpack_object_array *subscribed;
        const msgpack_object_array *assigned;
        int64_t member_epoch, session_timeout_ms, rebalance_timeout_ms;
    } mem;
    struct fg_group_value grp;
};

struct fg_record_msgs {
    struct ferry_msg key, value;
    int have_key, have_value;
};

/*
 * Decodes one record of the offsets topic (value NULL = tombstone). Returns 0, or -1 with errmsg for
 * a record that is not one of ours (replay skips it with a warning). fg_record_msgs_free(msgs)
 * afterwards, whatever the result.
 */
int fg_record_decode(const uint8_t *key, size_t key_len, const uint8_t *value, size_t value_len,
                     struct fg_record_msgs *msgs, struct fg_record *out, char *errmsg, size_t errmsg_len);
void fg_record_msgs_free(struct fg_record_msgs *msgs);

/* murmur2(group) mod partitions, positive part: the offsets partition of a group (same as libferry's keys). */
int32_t fg_group_partition(const char *group, size_t len, int32_t partitions);

#endif
