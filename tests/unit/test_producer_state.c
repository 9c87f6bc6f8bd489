/* test_producer_state.c: the idempotent-producer table: accept, duplicates, gaps, fencing, wrap, eviction, replay, snapshots. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "producer_state.h"

static struct ferry_batch_header hdr(int64_t pid, int16_t epoch, int32_t seq, uint32_t count)
{
    struct ferry_batch_header h;
    memset(&h, 0, sizeof(h));
    h.producer_id = pid;
    h.producer_epoch = epoch;
    h.base_sequence = seq;
    h.record_count = count;
    h.last_offset_delta = count - 1;
    return h;
}

/* check then, on ACCEPT, update at *end (a log's end offset), advancing it. Returns the verdict. */
static enum ferryd_pstate_verdict produce(struct ferryd_pstate *s, int64_t *end, int64_t pid, int16_t epoch,
                                          int32_t seq, uint32_t count, int64_t *dup)
{
    struct ferry_batch_header h = hdr(pid, epoch, seq, count);
    uint32_t dup_count = 0;
    enum ferryd_pstate_verdict v = ferryd_pstate_check(s, &h, dup, &dup_count);
    if (v == FERRYD_PSTATE_ACCEPT) {
        cr_assert_eq(ferryd_pstate_update(s, &h, *end), 0);
        *end += count;
    } else if (v == FERRYD_PSTATE_DUPLICATE) {
        cr_assert_eq(dup_count, count);
    }
    return v;
}

Test(producer_state, non_idempotent_batches_are_always_accepted)
{
    struct ferryd_pstate s;
    ferryd_pstate_init(&s);
    int64_t end = 0, dup;
    for (int i = 0; i < 3; i++)
        cr_assert_eq(produce(&s, &end, -1, -1, -1, 2, &dup), FERRYD_PSTATE_ACCEPT);
    cr_assert_eq(s.n, 0, "nothing is remembered for producer id -1");
    ferryd_pstate_free(&s);
}

Test(producer_state, accept_in_order_and_duplicate_of_each_of_the_last_five)
{
    struct ferryd_pstate s;
    ferryd_pstate_init(&s);
    int64_t end = 100, dup = -1;
    int32_t seq = 0;
    int64_t bases[7];
    for (int i = 0; i < 7; i++) {
        bases[i] = end;
        cr_assert_eq(produce(&s, &end, 42, 0, seq, (uint32_t)(i + 1), &dup), FERRYD_PSTATE_ACCEPT, "batch %d", i);
        seq += i + 1;
    }
    /* The last five (batches 2..6) are duplicates answered with their original base offsets. */
    int32_t first = 3; /* batches 0 and 1 took sequences 0..2 */
    for (int i = 2; i < 7; i++) {
        dup = -1;
        cr_assert_eq(produce(&s, &end, 42, 0, first, (uint32_t)(i + 1), &dup), FERRYD_PSTATE_DUPLICATE, "batch %d",
                     i);
        cr_assert_eq(dup, bases[i], "batch %d: original base offset", i);
        first += i + 1;
    }
    /* Older than the window: stored long ago, offset unknown. */
    cr_assert_eq(produce(&s, &end, 42, 0, 0, 1, &dup), FERRYD_PSTATE_DUPLICATE_OLD);
    cr_assert_eq(produce(&s, &end, 42, 0, 1, 2, &dup), FERRYD_PSTATE_DUPLICATE_OLD);
    int64_t before = end;
    cr_assert_eq(produce(&s, &end, 42, 0, seq, 1, &dup), FERRYD_PSTATE_ACCEPT, "the next sequence is accepted");
    cr_assert_eq(end, before + 1);
    ferryd_pstate_free(&s);
}

Test(producer_state, gap_and_overlap_are_out_of_order)
{
    struct ferryd_pstate s;
    ferryd_pstate_init(&s);
    int64_t end = 0, dup;
    cr_assert_eq(produce(&s, &end, 7, 0, 0, 10, &dup), FERRYD_PSTATE_ACCEPT);
    cr_assert_eq(produce(&s, &end, 7, 0, 11, 1, &dup), FERRYD_PSTATE_OUT_OF_ORDER, "a gap of one");
    cr_assert_eq(produce(&s, &end, 7, 0, 5, 10, &dup), FERRYD_PSTATE_OUT_OF_ORDER, "overlap, not a duplicate");
    cr_assert_eq(produce(&s, &end, 7, 0, 0, 5, &dup), FERRYD_PSTATE_OUT_OF_ORDER, "same start, other length");
    cr_assert_eq(end, 10, "nothing refused was recorded");
    cr_assert_eq(produce(&s, &end, 7, 0, 10, 1, &dup), FERRYD_PSTATE_ACCEPT);
    ferryd_pstate_free(&s);
}

Test(producer_state, unknown_producer_is_accepted_at_any_sequence)
{
    struct ferryd_pstate s;
    ferryd_pstate_init(&s);
    int64_t end = 0, dup;
    cr_assert_eq(produce(&s, &end, 9, 0, 500, 3, &dup), FERRYD_PSTATE_ACCEPT);
    cr_assert_eq(produce(&s, &end, 9, 0, 503, 1, &dup), FERRYD_PSTATE_ACCEPT);
    cr_assert_eq(produce(&s, &end, 9, 0, 505, 1, &dup), FERRYD_PSTATE_OUT_OF_ORDER);
    ferryd_pstate_free(&s);
}

Test(producer_state, stale_epoch_is_fenced_and_new_epoch_restarts_at_zero)
{
    struct ferryd_pstate s;
    ferryd_pstate_init(&s);
    int64_t end = 0, dup;
    cr_assert_eq(produce(&s, &end, 3, 1, 0, 2, &dup), FERRYD_PSTATE_ACCEPT);
    cr_assert_eq(produce(&s, &end, 3, 0, 2, 1, &dup), FERRYD_PSTATE_FENCED);
    cr_assert_eq(produce(&s, &end, 3, 2, 5, 1, &dup), FERRYD_PSTATE_OUT_OF_ORDER, "new epoch must start at 0");
    cr_assert_eq(produce(&s, &end, 3, 2, 0, 1, &dup), FERRYD_PSTATE_ACCEPT);
    cr_assert_eq(produce(&s, &end, 3, 1, 2, 1, &dup), FERRYD_PSTATE_FENCED, "the old epoch is now fenced");
    cr_assert_eq(produce(&s, &end, 3, 2, 0, 1, &dup), FERRYD_PSTATE_DUPLICATE);
    cr_assert_eq(dup, 2);
    ferryd_pstate_free(&s);
}

Test(producer_state, sequence_wraps_at_int32_max)
{
    struct ferryd_pstate s;
    ferryd_pstate_init(&s);
    int64_t end = 0, dup;
    cr_assert_eq(ferryd_pstate_seq_add(INT32_MAX, 1), 0);
    cr_assert_eq(ferryd_pstate_seq_add(INT32_MAX - 1, 3), 1);
    cr_assert_eq(produce(&s, &end, 5, 0, INT32_MAX - 2, 2, &dup), FERRYD_PSTATE_ACCEPT);
    /* INT32_MAX, 0, 1: a batch across the wrap */
    cr_assert_eq(produce(&s, &end, 5, 0, INT32_MAX, 3, &dup), FERRYD_PSTATE_ACCEPT);
    cr_assert_eq(produce(&s, &end, 5, 0, INT32_MAX, 3, &dup), FERRYD_PSTATE_DUPLICATE, "duplicate across the wrap");
    cr_assert_eq(dup, 2);
    cr_assert_eq(produce(&s, &end, 5, 0, 3, 1, &dup), FERRYD_PSTATE_OUT_OF_ORDER);
    cr_assert_eq(produce(&s, &end, 5, 0, 2, 1, &dup), FERRYD_PSTATE_ACCEPT, "continues after the wrap");
    cr_assert_eq(produce(&s, &end, 5, 0, INT32_MAX - 2, 2, &dup), FERRYD_PSTATE_DUPLICATE);
    cr_assert_eq(dup, 0);
    ferryd_pstate_free(&s);
}

Test(producer_state, least_recently_used_producer_is_evicted_at_the_cap)
{
    struct ferryd_pstate s;
    ferryd_pstate_init(&s);
    s.max = 3;
    int64_t end = 0, dup;
    for (int64_t pid = 1; pid <= 3; pid++)
        cr_assert_eq(produce(&s, &end, pid, 0, 0, 1, &dup), FERRYD_PSTATE_ACCEPT);
    cr_assert_eq(produce(&s, &end, 1, 0, 1, 1, &dup), FERRYD_PSTATE_ACCEPT, "1 is now the most recent");
    cr_assert_eq(produce(&s, &end, 4, 0, 0, 1, &dup), FERRYD_PSTATE_ACCEPT);
    cr_assert_eq(s.n, 3);
    cr_assert_eq(s.evictions, 1);
    cr_assert_null(ferryd_pstate_find(&s, 2), "2 was the least recently used");
    cr_assert_not_null(ferryd_pstate_find(&s, 1));
    cr_assert_not_null(ferryd_pstate_find(&s, 3));
    cr_assert_not_null(ferryd_pstate_find(&s, 4));
    /* An evicted producer is unknown again: accepted at whatever sequence it continues with. */
    cr_assert_eq(produce(&s, &end, 2, 0, 1, 1, &dup), FERRYD_PSTATE_ACCEPT);
    cr_assert_eq(s.n, 3);
    ferryd_pstate_free(&s);
}

/* A log of stored headers (with their base offsets) and the table built while appending them. */
Test(producer_state, rebuild_by_replaying_headers_gives_the_same_table)
{
    struct ferryd_pstate live, replay;
    ferryd_pstate_init(&live);
    ferryd_pstate_init(&replay);
    struct ferry_batch_header logh[64];
    size_t n = 0;
    int64_t end = 0, dup;
    int32_t seq[4] = {0};
    uint64_t x = 12345;
    for (int i = 0; i < 60; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        int64_t pid = (int64_t)((x >> 33) % 4);
        uint32_t count = (uint32_t)((x >> 40) % 5) + 1;
        int64_t base = end;
        if (pid == 3) { /* a non-idempotent writer interleaved */
            cr_assert_eq(produce(&live, &end, -1, -1, -1, count, &dup), FERRYD_PSTATE_ACCEPT);
            logh[n] = hdr(-1, -1, -1, count);
        } else {
            cr_assert_eq(produce(&live, &end, pid, 0, seq[pid], count, &dup), FERRYD_PSTATE_ACCEPT);
            logh[n] = hdr(pid, 0, seq[pid], count);
            seq[pid] += (int32_t)count;
        }
        logh[n++].base_offset = base;
    }
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(ferryd_pstate_update(&replay, &logh[i], logh[i].base_offset), 0);
    cr_assert_eq(replay.n, live.n);
    cr_assert_eq(replay.clock, live.clock);
    cr_assert_eq(memcmp(replay.v, live.v, live.n * sizeof(*live.v)), 0, "same producers, batches and LRU clock");
    ferryd_pstate_free(&live);
    ferryd_pstate_free(&replay);
}

Test(producer_state, serialize_round_trip_and_malformed_input)
{
    struct ferryd_pstate s, t;
    ferryd_pstate_init(&s);
    ferryd_pstate_init(&t);
    int64_t end = 0, dup;
    for (int64_t pid = 10; pid < 20; pid++)
        for (int k = 0; k < 7; k++)
            cr_assert_eq(produce(&s, &end, pid, (int16_t)(pid % 3), k * 2, 2, &dup), FERRYD_PSTATE_ACCEPT);
    uint8_t *buf;
    size_t len;
    char err[256];
    cr_assert_eq(ferryd_pstate_serialize(&s, &buf, &len), 0);
    cr_assert_eq(ferryd_pstate_deserialize(&t, buf, len, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(t.n, s.n);
    cr_assert_eq(t.clock, s.clock);
    cr_assert_eq(memcmp(t.v, s.v, s.n * sizeof(*s.v)), 0);
    /* The restored table answers like the original. */
    cr_assert_eq(produce(&t, &end, 15, 0, 12, 2, &dup), FERRYD_PSTATE_DUPLICATE);
    cr_assert_eq(produce(&t, &end, 15, 0, 16, 2, &dup), FERRYD_PSTATE_OUT_OF_ORDER);
    /* Truncations and a corrupted byte fail cleanly (and leave the table empty). */
    for (size_t cut = 1; cut < len; cut += 7) {
        cr_assert_neq(ferryd_pstate_deserialize(&t, buf, cut, err, sizeof(err)), 0, "cut at %zu", cut);
        cr_assert_eq(t.n, 0);
    }
    uint8_t empty[] = {0x80};
    cr_assert_neq(ferryd_pstate_deserialize(&t, empty, sizeof(empty), err, sizeof(err)), 0);
    free(buf);
    /* An empty table round-trips too. */
    struct ferryd_pstate e;
    ferryd_pstate_init(&e);
    cr_assert_eq(ferryd_pstate_serialize(&e, &buf, &len), 0);
    cr_assert_eq(ferryd_pstate_deserialize(&t, buf, len, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(t.n, 0);
    free(buf);
    ferryd_pstate_free(&s);
    ferryd_pstate_free(&t);
}
