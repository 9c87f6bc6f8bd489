/* catchup.c: one replica's segment catch-up: Fetch from the leader's client listener, append the batches as stored. */
#include "cluster/catchup.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry_errors.h"
#include "logging.h"
#include "net/conn.h"
#include "partition.h"
#include "proto/batch.h"
#include "proto/codec.h"
#include "proto/limits.h"
#include "storage/log.h"
#include "topics.h"

/* Bytes asked for per Fetch: large enough to amortise a round trip, small enough that one
 * response never holds the loop long (the leader returns at least one whole batch anyway). */
#define CATCHUP_FETCH_BYTES (4 * 1024 * 1024)

/*
 * The connect (TLS handshake included) and every Fetch must be answered within this long, or the
 * attempt fails (a hung leader: the connection is accepted but nothing comes back) and the cluster
 * tick starts another one, from the leader of the moment. 4 MiB on loopback take milliseconds; 10 s
 * leaves room for a loaded or distant leader.
 */
#define CATCHUP_REQUEST_TIMEOUT_MS 10000

struct cl_catchup {
    struct ferry_conn *conn;    /* NULL once on_close ran */
    struct ferryd_partition *p; /* NULL once finished or cancelled */
    uv_timer_t timer;           /* bounds the connect and every request */
    int timer_closing;
    int handles; /* conn and timer not closed yet: freed when both are */
    char topic[FERRY_MAX_TOPIC_NAME + 1];
    int32_t partition;
    int64_t target;
    uint32_t corr;
    cl_catchup_cb cb; /* NULL once it ran or the catch-up was cancelled */
    void *arg;
};

static void release(struct cl_catchup *cu)
{
    assert(cu->handles > 0);
    if (--cu->handles == 0)
        free(cu);
}

static void on_timer_closed(uv_handle_t *h)
{
    release(h->data);
}

static void close_timer(struct cl_catchup *cu)
{
    if (cu->timer_closing)
        return;
    cu->timer_closing = 1;
    uv_timer_stop(&cu->timer);
    uv_close((uv_handle_t *)&cu->timer, on_timer_closed);
}

/* Runs the callback once and closes the connection and the timer (the handle is freed after both). */
static void finish(struct cl_catchup *cu, int status, const char *msg)
{
    cl_catchup_cb cb = cu->cb;
    cu->cb = NULL;
    cu->p = NULL;
    if (cu->conn != NULL)
        ferry_conn_close(cu->conn, status == 0 ? "catch-up done" : msg);
    close_timer(cu);
    if (cb != NULL)
        cb(cu->arg, status, msg);
}

static void on_timeout(uv_timer_t *h)
{
    struct cl_catchup *cu = h->data;
    char msg[128];
    snprintf(msg, sizeof(msg), "no answer from the leader within %d ms", CATCHUP_REQUEST_TIMEOUT_MS);
    finish(cu, -1, msg);
}

static int send_fetch(struct cl_catchup *cu)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    ferry_frame_begin(&sb, &pk);
    ferry_pack_request_header(&pk, FERRY_API_FETCH, 0, ++cu->corr, "ferryd-catchup");
    msgpack_pack_map(&pk, 4);
    ferry_pack_key(&pk, "max_wait_ms");
    msgpack_pack_int64(&pk, 0);
    ferry_pack_key(&pk, "max_bytes");
    msgpack_pack_int64(&pk, CATCHUP_FETCH_BYTES);
    ferry_pack_key(&pk, "min_bytes");
    msgpack_pack_int64(&pk, 1);
    ferry_pack_key(&pk, "topics");
    msgpack_pack_array(&pk, 1);
    msgpack_pack_map(&pk, 2);
    ferry_pack_key(&pk, "name");
    ferry_pack_str(&pk, cu->topic);
    ferry_pack_key(&pk, "partitions");
    msgpack_pack_array(&pk, 1);
    msgpack_pack_map(&pk, 3);
    ferry_pack_key(&pk, "partition");
    msgpack_pack_int32(&pk, cu->partition);
    ferry_pack_key(&pk, "offset");
    msgpack_pack_int64(&pk, ferry_log_end_offset(cu->p->log));
    ferry_pack_key(&pk, "max_bytes");
    msgpack_pack_int64(&pk, CATCHUP_FETCH_BYTES);
    int rc = ferry_frame_finish(&sb);
    if (rc == 0)
        rc = ferry_conn_send(cu->conn, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    if (rc == 0)
        uv_timer_start(&cu->timer, on_timeout, CATCHUP_REQUEST_TIMEOUT_MS, 0);
    return rc == 0 ? 0 : -1;
}

/*
 * Appends the concatenated batches of one Fetch response below target. Each batch must start at
 * the local log end (the leader's log and ours are the same sequence of batches). Returns 0 or -1
 * with msg.
 */
static int append_records(struct cl_catchup *cu, const uint8_t *rec, size_t len, char *msg, size_t msg_len)
{
    struct ferryd_partition *p = cu->p;
    while (len > 0) {
        size_t blen;
        struct ferry_batch_header h;
        char why[256];
        if (ferry_batch_peek_length(rec, len, &blen) != 0 || blen > len) {
            snprintf(msg, msg_len, "truncated batch in the leader's Fetch response");
            return -1;
        }
        if (ferry_batch_validate(rec, blen, blen, &h, why, sizeof(why)) != 0) {
            snprintf(msg, msg_len, "bad batch from the leader: %s", why);
            return -1;
        }
        int64_t end = ferry_log_end_offset(p->log);
        if (h.base_offset >= cu->target)
            return 0;
        if (h.base_offset != end) {
            snprintf(msg, msg_len, "leader's batch at offset %" PRId64 " but the local log ends at %" PRId64,
                     h.base_offset, end);
            return -1;
        }
        uint8_t *copy = malloc(blen);
        if (copy == NULL) {
            snprintf(msg, msg_len, "out of memory");
            return -1;
        }
        memcpy(copy, rec, blen);
        int64_t base, next;
        int rc = ferryd_partition_append(p, copy, blen, blen, &base, &next, why, sizeof(why));
        free(copy);
        if (rc != 0 || base != h.base_offset || ferry_log_end_offset(p->log) != next) {
            snprintf(msg, msg_len, "appending the leader's batch at offset %" PRId64 " failed: %s", h.base_offset,
                     rc != 0 ? why : "not stored (taken for a duplicate)");
            return -1;
        }
        rec += blen;
        len -= blen;
    }
    return 0;
}

/*
 * The leader answered OFFSET_OUT_OF_RANGE for our log end and its log starts at leader_start, past
 * our end: its retention already removed offsets this replica lacks, which no replica has any more.
 * The local log restarts empty at the leader's log start (or at the target, if that comes first: the
 * entries queued since the snapshot hold the data from there), as Kafka does. Returns 0 or -1 with msg.
 */
static int adopt_leader_start(struct cl_catchup *cu, int64_t leader_start, char *msg, size_t msg_len)
{
    int64_t end = ferry_log_end_offset(cu->p->log);
    int64_t start = leader_start < cu->target ? leader_start : cu->target;
    char why[512];
    if (leader_start <= end) {
        snprintf(msg, msg_len, "the leader refused offset %" PRId64 " although its log starts at %" PRId64, end,
                 leader_start);
        return -1;
    }
    if (ferryd_topics_restart_log(cu->p, start, why, sizeof(why)) != 0) {
        snprintf(msg, msg_len, "%s", why);
        return -1;
    }
    LOG_WARN("partition %s/%d: the leader's log starts at offset %" PRId64 ", past this replica's end %" PRId64
             " (its retention removed the offsets in between): the local log restarts empty at %" PRId64,
             cu->topic, (int)cu->partition, leader_start, end, start);
    return 0;
}

/* Parses a Fetch response and appends its batches. Returns 0 or -1 with msg. */
static int handle_response(struct cl_catchup *cu, const uint8_t *buf, size_t len, char *msg, size_t msg_len)
{
    struct ferry_msg m;
    struct ferry_response_header rh;
    struct ferry_mp_reader rd = {0};
    char why[256];
    int ret = -1;
    if (ferry_msg_unpack(buf, len, &m, why, sizeof(why)) != 0) {
        snprintf(msg, msg_len, "leader's response: %s", why);
        return -1;
    }
    if (ferry_response_header_decode(&m.root, &rh, why, sizeof(why)) != 0) {
        snprintf(msg, msg_len, "leader's response: %s", why);
        goto out;
    }
    if (rh.error != 0 || rh.body == NULL || rh.correlation_id != cu->corr) {
        snprintf(msg, msg_len, "leader's Fetch failed: error %d %.*s", (int)rh.error,
                 (int)(rh.error_message ? rh.error_message_len : 0), rh.error_message ? rh.error_message : "");
        goto out;
    }
    const msgpack_object_array *topics = ferry_mp_array(&rd, rh.body, "topics", 1);
    if (rd.err || topics->size != 1) {
        snprintf(msg, msg_len, "leader's Fetch response: %s", rd.err ? rd.errmsg : "not one topic");
        goto out;
    }
    const msgpack_object *t = ferry_mp_elem_map(&rd, topics, 0, "topics");
    const msgpack_object_array *parts = rd.err ? NULL : ferry_mp_array(&rd, t, "partitions", 1);
    if (rd.err || parts->size != 1) {
        snprintf(msg, msg_len, "leader's Fetch response: %s", rd.err ? rd.errmsg : "not one partition");
        goto out;
    }
    const msgpack_object *pm = ferry_mp_elem_map(&rd, parts, 0, "partitions");
    int64_t err = rd.err ? 0 : ferry_mp_int(&rd, pm, "error", 0, 1);
    size_t rl = 0;
    const uint8_t *rec = rd.err ? NULL : ferry_mp_bin(&rd, pm, "records", &rl, 0);
    if (rd.err) {
        snprintf(msg, msg_len, "leader's Fetch response: %s", rd.errmsg);
        goto out;
    }
    if (err == FERRY_ERR_OFFSET_OUT_OF_RANGE) {
        int64_t leader_start = ferry_mp_int(&rd, pm, "log_start_offset", -1, 0);
        if (!rd.err && leader_start > ferry_log_end_offset(cu->p->log)) {
            ret = adopt_leader_start(cu, leader_start, msg, msg_len);
            goto out;
        }
    }
    if (err != 0) {
        size_t el = 0;
        const char *em = ferry_mp_str(&rd, pm, "error_message", &el, 0);
        snprintf(msg, msg_len, "leader's Fetch: partition error %d %.*s", (int)err, (int)(em ? el : 0),
                 em ? em : "");
        goto out;
    }
    if (rl == 0) {
        snprintf(msg, msg_len, "the leader has no data at offset %" PRId64 " (its high watermark is behind)",
                 ferry_log_end_offset(cu->p->log));
        goto out;
    }
    ret = append_records(cu, rec, rl, msg, msg_len);
out:
    ferry_msg_destroy(&m);
    return ret;
}

static void on_open(struct ferry_conn *c)
{
    struct cl_catchup *cu = ferry_conn_data(c);
    if (cu->p == NULL)
        return;
    uv_timer_stop(&cu->timer);
    if (send_fetch(cu) != 0)
        finish(cu, -1, "sending a Fetch to the leader failed");
}

static void on_frame(struct ferry_conn *c, const uint8_t *payload, size_t len)
{
    struct cl_catchup *cu = ferry_conn_data(c);
    char msg[512];
    if (cu->p == NULL)
        return;
    uv_timer_stop(&cu->timer);
    if (handle_response(cu, payload, len, msg, sizeof(msg)) != 0) {
        finish(cu, -1, msg);
        return;
    }
    if (ferry_log_end_offset(cu->p->log) >= cu->target) {
        finish(cu, 0, "");
        return;
    }
    if (send_fetch(cu) != 0)
        finish(cu, -1, "sending a Fetch to the leader failed");
}

static void on_close(struct ferry_conn *c, int status, const char *reason)
{
    struct cl_catchup *cu = ferry_conn_data(c);
    char msg[300];
    (void)status;
    cu->conn = NULL;
    cu->p = NULL;
    close_timer(cu);
    if (cu->cb != NULL) {
        cl_catchup_cb cb = cu->cb;
        cu->cb = NULL;
        snprintf(msg, sizeof(msg), "connection to the leader closed: %s", reason ? reason : "");
        cb(cu->arg, -1, msg);
    }
    release(cu);
}

int cl_catchup_start(const struct cl_catchup_req *r, cl_catchup_cb cb, void *arg, struct cl_catchup **out,
                     char *errmsg, size_t errmsg_len)
{
    static const struct ferry_conn_callbacks cbs = {.on_open = on_open, .on_frame = on_frame, .on_close = on_close};
    assert(r->p != NULL && cb != NULL);
    if (strlen(r->topic) > FERRY_MAX_TOPIC_NAME) {
        snprintf(errmsg, errmsg_len, "topic name too long");
        return -1;
    }
    struct cl_catchup *cu = calloc(1, sizeof(*cu));
    if (cu == NULL) {
        snprintf(errmsg, errmsg_len, "out of memory");
        return -1;
    }
    snprintf(cu->topic, sizeof(cu->topic), "%s", r->topic);
    cu->partition = r->partition;
    cu->p = r->p;
    cu->target = r->target;
    cu->cb = cb;
    cu->arg = arg;
    int rc = ferry_conn_connect(r->loop, r->host, r->port, r->tls, NULL, &cbs, FERRY_MAX_FRAME_BYTES, cu, &cu->conn);
    if (rc != 0) {
        snprintf(errmsg, errmsg_len, "connect %s:%d: %s", r->host, r->port, uv_strerror(rc));
        free(cu);
        return -1;
    }
    /* Callbacks only run on a later loop pass: the timer is ready before any of them. */
    cu->handles = 2;
    uv_timer_init(r->loop, &cu->timer);
    cu->timer.data = cu;
    uv_timer_start(&cu->timer, on_timeout, CATCHUP_REQUEST_TIMEOUT_MS, 0); /* the connect and handshake */
    *out = cu;
    return 0;
}

void cl_catchup_cancel(struct cl_catchup *cu)
{
    cu->cb = NULL;
    cu->p = NULL;
    if (cu->conn != NULL)
        ferry_conn_close(cu->conn, "catch-up cancelled");
    close_timer(cu);
}
