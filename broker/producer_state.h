/* producer_state.h: per-partition idempotent-producer table (pid -> epoch, last 5 batches); pure, no I/O. */
#ifndef FERRYD_PRODUCER_STATE_H
#define FERRYD_PRODUCER_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "proto/batch.h"

/*
 * What a partition remembers about each idempotent producer that wrote to it: its epoch and the
 * sequence ranges and base offsets of its last FERRYD_PSTATE_BATCHES batches. The leader consults it
 * before appending a batch whose producer_id >= 0 (ferryd_pstate_check) and records the batch after
 * the append (ferryd_pstate_update). Replaying every stored batch header through ferryd_pstate_update,
 * in log order, rebuilds the same table (the table is a function of the log), so a restart, a new
 * leader applying the same log, or a snapshot (ferryd_pstate_serialize) all agree.
 *
 * Sequence rules (docs/protocol.md, "Idempotent produce"): sequences are int32 in [0, INT32_MAX] and
 * wrap to 0 after INT32_MAX (as Kafka). For a batch of producer p, epoch e, base_sequence s, n records
 * (last = s + n - 1, wrapped):
 *   - p unknown here (never seen, evicted, or older than the log): ACCEPT whatever s is.
 *   - e < p's epoch: FENCED (INVALID_PRODUCER_EPOCH).
 *   - e > p's epoch: ACCEPT only if s == 0 (a new epoch restarts sequences), else OUT_OF_ORDER.
 *   - same epoch, (s, last) equal to one of the remembered batches: DUPLICATE, answered with that
 *     batch's base offset (nothing is stored again).
 *   - same epoch, s == last remembered last_seq + 1: ACCEPT.
 *   - same epoch, s behind the next expected sequence (older than the remembered window): DUPLICATE_OLD
 *     (DUPLICATE_SEQUENCE on the wire: it was stored, but its offset is no longer known).
 *   - otherwise (a gap, or a range overlapping a remembered batch differently): OUT_OF_ORDER.
 *
 * Memory is bounded: at most FERRYD_PSTATE_MAX_PRODUCERS producers per partition, each ~136 bytes;
 * recording a new producer beyond that evicts the least recently used one (whose next batch is then
 * "unknown" and accepted: with 1024 producers per partition that needs a producer idle while 1024
 * others wrote, so a retry of its lost ack is long over).
 */

#define FERRYD_PSTATE_BATCHES 5
/* Producers remembered per partition: 1024 x ~136 B = ~140 KiB at worst per partition. */
#define FERRYD_PSTATE_MAX_PRODUCERS 1024

enum ferryd_pstate_verdict {
    FERRYD_PSTATE_ACCEPT = 0,
    FERRYD_PSTATE_DUPLICATE,     /* one of the last 5 batches: ack with its base offset */
    FERRYD_PSTATE_DUPLICATE_OLD, /* older than the remembered batches: DUPLICATE_SEQUENCE */
    FERRYD_PSTATE_OUT_OF_ORDER,  /* a gap: OUT_OF_ORDER_SEQUENCE */
    FERRYD_PSTATE_FENCED,        /* stale epoch: INVALID_PRODUCER_EPOCH */
};

struct ferryd_pstate_batch {
    int32_t first_seq;
    int32_t last_seq;
    int64_t base_offset;
    uint32_t count;
};

struct ferryd_pstate_producer {
    int64_t pid;
    int16_t epoch;
    uint8_t nbatches; /* 0..FERRYD_PSTATE_BATCHES valid entries, oldest first */
    struct ferryd_pstate_batch batches[FERRYD_PSTATE_BATCHES];
    uint64_t last_used; /* logical clock of the last update (LRU eviction) */
};

/* The table: producers sorted by pid. Zero-initialised is an empty, valid table. */
struct ferryd_pstate {
    struct ferryd_pstate_producer *v;
    size_t n, cap;
    size_t max; /* 0 = FERRYD_PSTATE_MAX_PRODUCERS (tests set smaller caps) */
    uint64_t clock;
    uint64_t evictions;
};

void ferryd_pstate_init(struct ferryd_pstate *s);
void ferryd_pstate_free(struct ferryd_pstate *s); /* frees the array; s is empty and reusable after */

/* The sequence after `seq + count - 1`, wrapped at INT32_MAX (count >= 1). */
int32_t ferryd_pstate_seq_add(int32_t seq, uint32_t count);

/*
 * Decides what to do with a batch before it is stored (h from ferry_batch_validate). A batch with
 * producer_id < 0 is always ACCEPT. On DUPLICATE *dup_base_offset is the original base offset and
 * *dup_count its record count. Does not change s.
 */
enum ferryd_pstate_verdict ferryd_pstate_check(const struct ferryd_pstate *s, const struct ferry_batch_header *h,
                                               int64_t *dup_base_offset, uint32_t *dup_count);

/*
 * Records a stored batch (producer_id < 0 is ignored): after a successful append, and when
 * replaying stored headers in log order to rebuild. May evict the least recently used producer.
 * Returns 0, or -1 when out of memory (s unchanged).
 */
int ferryd_pstate_update(struct ferryd_pstate *s, const struct ferry_batch_header *h, int64_t base_offset);

/* The entry of pid, or NULL (for tests and diagnostics). */
const struct ferryd_pstate_producer *ferryd_pstate_find(const struct ferryd_pstate *s, int64_t pid);

/*
 * Snapshot format (msgpack): {"version": 1, "clock": int, "producers": [[pid, epoch, last_used,
 * [[first_seq, last_seq, base_offset, count], ...]], ...]} in pid order.
 * serialize: *out malloc'd (caller frees). Returns 0 or -1 (out of memory).
 * deserialize: replaces s's content; returns 0, or -1 with errmsg (malformed; s left empty).
 */
int ferryd_pstate_serialize(const struct ferryd_pstate *s, uint8_t **out, size_t *out_len);
int ferryd_pstate_deserialize(struct ferryd_pstate *s, const uint8_t *buf, size_t len, char *errmsg,
                              size_t errmsg_len);

#endif
