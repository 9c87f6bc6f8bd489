/* catchup.h: refills a replica's segment log from the partition leader with Fetch requests (docs/replication.md). */
#ifndef FERRYD_CLUSTER_CATCHUP_H
#define FERRYD_CLUSTER_CATCHUP_H

#include <stdint.h>
#include <uv.h>

struct ferry_tls_ctx;
struct ferryd_partition;
struct cl_catchup;

/*
 * Where to fetch from and what to fill: the leader's CLIENT listener (host:port, tls NULL =
 * plaintext), the partition (topic, index) and the local partition p whose log end must reach
 * target. Batches are fetched from p's log end and appended unchanged (their stored base offsets
 * must equal the local log end: anything else stops the catch-up with an error); a batch at or
 * past target is not appended (the Raft entries after the snapshot fill that part).
 */
struct cl_catchup_req {
    uv_loop_t *loop;
    const char *host;
    int port;
    struct ferry_tls_ctx *tls; /* borrowed: must outlive the catch-up */
    const char *topic;
    int32_t partition;
    struct ferryd_partition *p;
    int64_t target;
};

/*
 * done(arg, status, msg): status 0 = p's log end reached target; -1 = failed (msg says why; the
 * caller may start again later): an error answer, a closed connection, or no answer within
 * CATCHUP_REQUEST_TIMEOUT_MS (catchup.c) to the connect or to a Fetch. When the leader's log starts
 * past p's end (its retention removed what p lacks), p's log restarts empty at the leader's log
 * start (ferryd_topics_restart_log; at target if that is lower) and the catch-up goes on from there.
 */
typedef void (*cl_catchup_cb)(void *arg, int status, const char *msg);

/*
 * Starts a catch-up. Returns 0 (cb runs exactly once later, unless cl_catchup_cancel is called
 * first) or -1 with errmsg (cb never runs). *out is the handle for cancel.
 */
int cl_catchup_start(const struct cl_catchup_req *r, cl_catchup_cb cb, void *arg, struct cl_catchup **out,
                     char *errmsg, size_t errmsg_len);

/* Stops a catch-up still running: cb never runs; the connection closes asynchronously and the
 * handle frees itself. p is not touched after this returns. */
void cl_catchup_cancel(struct cl_catchup *cu);

#endif
