/* test_assignor.c: the sticky assignor and the offsets topic's records (broker/groups/), as pure functions. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "ferry_errors.h"
#include "groups/assignor.h"
#include "groups/offsets_log.h"

#define MAXM 8

struct plan {
    struct fg_tp *out[MAXM];
    uint32_t n[MAXM];
};

static void plan_free(struct plan *p, uint32_t nm)
{
    for (uint32_t i = 0; i < nm; i++)
        free(p->out[i]);
}

/* Every partition of the subscribed topics is assigned exactly once; each member's list is sorted. */
static void check_cover(const struct plan *p, uint32_t nm, const int32_t *parts, uint32_t ntopics,
                        const uint8_t *wanted)
{
    int seen[4][64] = {{0}};
    for (uint32_t i = 0; i < nm; i++)
        for (uint32_t k = 0; k < p->n[i]; k++) {
            const struct fg_tp *tp = &p->out[i][k];
            cr_assert_lt(tp->topic, ntopics);
            cr_assert(tp->partition >= 0 && tp->partition < parts[tp->topic]);
            seen[tp->topic][tp->partition]++;
            if (k > 0)
                cr_assert_lt(fg_tp_cmp(&p->out[i][k - 1], tp), 0, "member %u output not sorted", i);
        }
    for (uint32_t t = 0; t < ntopics; t++)
        for (int32_t q = 0; q < parts[t]; q++)
            cr_assert_eq(seen[t][q], wanted[t] ? 1 : 0, "topic %u partition %d assigned %d times", t, q, seen[t][q]);
}

static const uint32_t T0[] = {0};
static const uint32_t T1[] = {1};
static const uint32_t T01[] = {0, 1};

Test(assignor, three_members_share_twelve_partitions_evenly)
{
    int32_t parts[] = {12};
    struct fg_assign_member m[3] = {{T0, 1, NULL, 0}, {T0, 1, NULL, 0}, {T0, 1, NULL, 0}};
    struct plan p;
    cr_assert_eq(fg_assign_sticky(m, 3, parts, 1, p.out, p.n), 0);
    check_cover(&p, 3, parts, 1, (const uint8_t[]){1});
    for (int i = 0; i < 3; i++)
        cr_assert_eq(p.n[i], 4, "member %d got %u", i, p.n[i]);
    plan_free(&p, 3);
}

Test(assignor, uneven_counts_differ_by_at_most_one)
{
    int32_t parts[] = {10, 3};
    struct fg_assign_member m[3] = {{T01, 2, NULL, 0}, {T01, 2, NULL, 0}, {T01, 2, NULL, 0}};
    struct plan p;
    cr_assert_eq(fg_assign_sticky(m, 3, parts, 2, p.out, p.n), 0);
    check_cover(&p, 3, parts, 2, (const uint8_t[]){1, 1});
    uint32_t lo = 99, hi = 0;
    for (int i = 0; i < 3; i++) {
        lo = p.n[i] < lo ? p.n[i] : lo;
        hi = p.n[i] > hi ? p.n[i] : hi;
    }
    cr_assert_leq(hi - lo, 1, "counts %u..%u", lo, hi);
    plan_free(&p, 3);
}

Test(assignor, a_fourth_member_takes_only_what_must_move)
{
    int32_t parts[] = {12};
    struct fg_assign_member m[4] = {{T0, 1, NULL, 0}, {T0, 1, NULL, 0}, {T0, 1, NULL, 0}, {T0, 1, NULL, 0}};
    struct plan before, after;
    cr_assert_eq(fg_assign_sticky(m, 3, parts, 1, before.out, before.n), 0);
    for (int i = 0; i < 3; i++) {
        m[i].current = before.out[i];
        m[i].ncurrent = before.n[i];
    }
    cr_assert_eq(fg_assign_sticky(m, 4, parts, 1, after.out, after.n), 0);
    check_cover(&after, 4, parts, 1, (const uint8_t[]){1});
    uint32_t moved = 0;
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(after.n[i], 3);
        /* what an old member has now, it had before */
        for (uint32_t k = 0; k < after.n[i]; k++) {
            int had = 0;
            for (uint32_t j = 0; j < before.n[i]; j++)
                had |= fg_tp_cmp(&before.out[i][j], &after.out[i][k]) == 0;
            cr_assert(had, "member %d gained partition %d", i, after.out[i][k].partition);
        }
        moved += before.n[i] - after.n[i];
    }
    cr_assert_eq(after.n[3], 3);
    cr_assert_eq(moved, 3, "only the new member's share moves");
    plan_free(&before, 3);
    plan_free(&after, 4);
}

Test(assignor, a_leaving_member_frees_only_its_partitions)
{
    int32_t parts[] = {12};
    struct fg_assign_member m[4] = {{T0, 1, NULL, 0}, {T0, 1, NULL, 0}, {T0, 1, NULL, 0}, {T0, 1, NULL, 0}};
    struct plan before, after;
    cr_assert_eq(fg_assign_sticky(m, 4, parts, 1, before.out, before.n), 0);
    /* member 1 leaves: the others, in order, are 0, 2, 3 */
    struct fg_assign_member rest[3] = {{T0, 1, before.out[0], before.n[0]},
                                       {T0, 1, before.out[2], before.n[2]},
                                       {T0, 1, before.out[3], before.n[3]}};
    cr_assert_eq(fg_assign_sticky(rest, 3, parts, 1, after.out, after.n), 0);
    check_cover(&after, 3, parts, 1, (const uint8_t[]){1});
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(after.n[i], 4);
        for (uint32_t j = 0; j < rest[i].ncurrent; j++) {
            int kept = 0;
            for (uint32_t k = 0; k < after.n[i]; k++)
                kept |= fg_tp_cmp(&rest[i].current[j], &after.out[i][k]) == 0;
            cr_assert(kept, "member %d lost partition %d it owned", i, rest[i].current[j].partition);
        }
    }
    plan_free(&before, 4);
    plan_free(&after, 3);
}

Test(assignor, subscriptions_are_respected_and_stale_ownership_dropped)
{
    int32_t parts[] = {4, 2, -1};
    /* member 0 claims t1/0 (not subscribed), t0/9 (no such partition) and t2/0 (no such topic) */
    struct fg_tp stale[] = {{1, 0}, {0, 9}, {2, 0}, {0, 1}};
    const uint32_t t02[] = {0, 2};
    struct fg_assign_member m[2] = {{t02, 2, stale, 4}, {T1, 1, NULL, 0}};
    struct plan p;
    cr_assert_eq(fg_assign_sticky(m, 2, parts, 3, p.out, p.n), 0);
    check_cover(&p, 2, parts, 3, (const uint8_t[]){1, 1, 0});
    cr_assert_eq(p.n[0], 4, "member 0 gets all of t0");
    cr_assert_eq(p.n[1], 2, "member 1 gets all of t1");
    for (uint32_t k = 0; k < p.n[0]; k++)
        cr_assert_eq(p.out[0][k].topic, 0);
    for (uint32_t k = 0; k < p.n[1]; k++)
        cr_assert_eq(p.out[1][k].topic, 1);
    plan_free(&p, 2);
}

Test(assignor, deterministic_and_no_members_is_fine)
{
    int32_t parts[] = {7, 5};
    struct fg_tp cur[] = {{0, 3}, {1, 4}, {0, 0}};
    struct fg_assign_member m[3] = {{T01, 2, cur, 3}, {T0, 1, NULL, 0}, {T1, 1, NULL, 0}};
    struct plan a, b;
    cr_assert_eq(fg_assign_sticky(m, 3, parts, 2, a.out, a.n), 0);
    cr_assert_eq(fg_assign_sticky(m, 3, parts, 2, b.out, b.n), 0);
    check_cover(&a, 3, parts, 2, (const uint8_t[]){1, 1});
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(a.n[i], b.n[i]);
        cr_assert(a.n[i] == 0 || memcmp(a.out[i], b.out[i], a.n[i] * sizeof(struct fg_tp)) == 0);
    }
    /* member 0 keeps what it owned (within its share of 4) */
    int kept = 0;
    for (uint32_t k = 0; k < a.n[0]; k++)
        kept += fg_tp_cmp(&a.out[0][k], &cur[0]) == 0 || fg_tp_cmp(&a.out[0][k], &cur[1]) == 0 ||
                fg_tp_cmp(&a.out[0][k], &cur[2]) == 0;
    cr_assert_eq(kept, 3);
    plan_free(&a, 3);
    plan_free(&b, 3);
    cr_assert_eq(fg_assign_sticky(NULL, 0, parts, 2, NULL, NULL), 0);
}

/* ---- records ---- */

Test(offsets_log, offset_record_round_trips)
{
    msgpack_sbuffer k, v;
    struct fg_record_msgs msgs;
    struct fg_record r;
    char err[256];
    msgpack_sbuffer_init(&k);
    msgpack_sbuffer_init(&v);
    fg_key_offset(&k, "g1", 2, "orders", 7);
    struct fg_offset_value ov = {42, "meta", 4, 3, 1700000000000};
    fg_value_offset(&v, &ov);
    cr_assert_eq(fg_record_decode((uint8_t *)k.data, k.size, (uint8_t *)v.data, v.size, &msgs, &r, err, sizeof(err)), 0,
                 "%s", err);
    cr_assert_eq(r.type, FG_REC_OFFSET);
    cr_assert_eq(r.tombstone, 0);
    cr_assert(r.group_len == 2 && memcmp(r.group, "g1", 2) == 0);
    cr_assert(r.topic_len == 6 && memcmp(r.topic, "orders", 6) == 0);
    cr_assert_eq(r.partition, 7);
    cr_assert_eq(r.off.offset, 42);
    cr_assert(r.off.metadata_len == 4 && memcmp(r.off.metadata, "meta", 4) == 0);
    cr_assert_eq(r.off.member_epoch, 3);
    cr_assert_eq(r.off.commit_ms, 1700000000000);
    fg_record_msgs_free(&msgs);
    /* tombstone: same key, null value */
    cr_assert_eq(fg_record_decode((uint8_t *)k.data, k.size, NULL, 0, &msgs, &r, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(r.tombstone, 1);
    fg_record_msgs_free(&msgs);
    msgpack_sbuffer_destroy(&k);
    msgpack_sbuffer_destroy(&v);
}

Test(offsets_log, member_and_group_records_round_trip)
{
    msgpack_sbuffer k, v;
    struct fg_record_msgs msgs;
    struct fg_record r;
    char err[256];
    const char *subs[] = {"a", "b"};
    int32_t pa[] = {0, 2}, pb[] = {1};
    struct fg_topic_parts tps[] = {{"a", pa, 2}, {"b", pb, 1}};
    struct fg_member_value mv = {"pod-1", "cli", "10.0.0.1", subs, 2, 5, tps, 2, 30000, 60000};
    msgpack_sbuffer_init(&k);
    msgpack_sbuffer_init(&v);
    fg_key_member(&k, "grp", 3, "m-1");
    fg_value_member(&v, &mv);
    cr_assert_eq(fg_record_decode((uint8_t *)k.data, k.size, (uint8_t *)v.data, v.size, &msgs, &r, err, sizeof(err)), 0,
                 "%s", err);
    cr_assert_eq(r.type, FG_REC_MEMBER);
    cr_assert(r.member_id_len == 3 && memcmp(r.member_id, "m-1", 3) == 0);
    cr_assert(r.mem.instance_id_len == 5 && memcmp(r.mem.instance_id, "pod-1", 5) == 0);
    cr_assert_eq(r.mem.member_epoch, 5);
    cr_assert_eq(r.mem.subscribed->size, 2);
    cr_assert_eq(r.mem.assigned->size, 2);
    cr_assert_eq(r.mem.assigned->ptr[0].via.array.ptr[1].via.array.size, 2);
    cr_assert_eq(r.mem.assigned->ptr[0].via.array.ptr[1].via.array.ptr[1].via.u64, 2);
    cr_assert_eq(r.mem.session_timeout_ms, 30000);
    cr_assert_eq(r.mem.rebalance_timeout_ms, 60000);
    fg_record_msgs_free(&msgs);
    msgpack_sbuffer_destroy(&k);
    msgpack_sbuffer_destroy(&v);

    msgpack_sbuffer_init(&k);
    msgpack_sbuffer_init(&v);
    fg_key_group(&k, "grp", 3);
    struct fg_group_value gv = {9, 8};
    fg_value_group(&v, &gv);
    cr_assert_eq(fg_record_decode((uint8_t *)k.data, k.size, (uint8_t *)v.data, v.size, &msgs, &r, err, sizeof(err)), 0,
                 "%s", err);
    cr_assert_eq(r.type, FG_REC_GROUP);
    cr_assert_eq(r.grp.group_epoch, 9);
    cr_assert_eq(r.grp.assignment_epoch, 8);
    fg_record_msgs_free(&msgs);
    msgpack_sbuffer_destroy(&k);
    msgpack_sbuffer_destroy(&v);
}

Test(offsets_log, foreign_records_are_refused)
{
    struct fg_record_msgs msgs;
    struct fg_record r;
    char err[256];
    /* ["nope", "g"] */
    const uint8_t bad_kind[] = {0x92, 0xa4, 'n', 'o', 'p', 'e', 0xa1, 'g'};
    cr_assert_neq(fg_record_decode(bad_kind, sizeof(bad_kind), NULL, 0, &msgs, &r, err, sizeof(err)), 0);
    fg_record_msgs_free(&msgs);
    /* not msgpack at all */
    const uint8_t junk[] = {0xc1};
    cr_assert_neq(fg_record_decode(junk, sizeof(junk), NULL, 0, &msgs, &r, err, sizeof(err)), 0);
    fg_record_msgs_free(&msgs);
    /* an offset key with a value that lacks "offset" */
    msgpack_sbuffer k;
    msgpack_sbuffer_init(&k);
    fg_key_offset(&k, "g", 1, "t", 0);
    const uint8_t empty_map[] = {0x80};
    cr_assert_neq(fg_record_decode((uint8_t *)k.data, k.size, empty_map, 1, &msgs, &r, err, sizeof(err)), 0);
    cr_assert(strstr(err, "offset") != NULL, "%s", err);
    fg_record_msgs_free(&msgs);
    msgpack_sbuffer_destroy(&k);
}

Test(offsets_log, group_partition_is_kafka_murmur2_positive_mod)
{
    /* Kafka's Utils.murmur2 test vectors: "abc" -> 479470107, "foobar" -> -790332482. */
    cr_assert_eq(fg_group_partition("abc", 3, 1000000007), (int32_t)(479470107u % 1000000007u));
    cr_assert_eq(fg_group_partition("foobar", 6, 50), (int32_t)(((uint32_t)-790332482 & 0x7fffffffu) % 50u));
    cr_assert_eq(fg_group_partition("21", 2, 12), (int32_t)(((uint32_t)-973932308 & 0x7fffffffu) % 12u));
    cr_assert_eq(fg_group_partition("x", 1, 0), -1);
}
