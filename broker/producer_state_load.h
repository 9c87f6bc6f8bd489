/* producer_state_load.h: rebuild of the producer table from a partition log (the I/O side of producer_state). */
#ifndef FERRYD_PRODUCER_STATE_LOAD_H
#define FERRYD_PRODUCER_STATE_LOAD_H

#include <stddef.h>

#include "producer_state.h"
#include "storage/log.h"

/*
 * Replays the header of every stored batch, in offset order, into s (ferryd_pstate_update). Reads
 * the whole log in 4 MiB steps of whole batches (the batch bodies are read too: the log has no
 * header-only read). Returns 0 or a ferry_err_t with errmsg.
 */
int ferryd_pstate_load_from_log(struct ferryd_pstate *s, struct ferry_log *log, char *errmsg, size_t errmsg_len);

#endif
