/* producer_ids.h: allocation of producer ids that stay unique across restarts (InitProducerId, api 7). */
#ifndef FERRYD_PRODUCER_IDS_H
#define FERRYD_PRODUCER_IDS_H

#include <stddef.h>
#include <stdint.h>

/*
 * Ids are handed out from blocks of FERRYD_PID_BLOCK. Before the first id of a block is given out,
 * the block's end is written to <data.dir>/meta/producer_ids (msgpack {"version": 1,
 * "reserved_until": int}) atomically: tmp file, fsync, rename, fsync meta/. After a restart
 * allocation resumes at reserved_until, so an id is never given twice even after a crash; at most
 * one block per run is skipped. The write is synchronous (one small fsync per 1000 producers).
 */
#define FERRYD_PID_BLOCK 1000

struct ferryd_pids;

/* Reads the high-water mark (a missing file means 0). Returns 0 or -1 with errmsg. */
int ferryd_pids_open(const char *data_dir, struct ferryd_pids **out, char *errmsg, size_t errmsg_len);
void ferryd_pids_close(struct ferryd_pids *p);
/* Next id (>= 0), reserving a new block on disk when needed. Returns 0 or -1 with errmsg. */
int ferryd_pids_next(struct ferryd_pids *p, int64_t *id, char *errmsg, size_t errmsg_len);

#endif
