/* admin.c: blocking operations run by the I/O thread: metadata, create/delete topic, list offsets. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "ferry_int.h"

/*
 * An op waits in cl->ops until a suitable broker is up, is sent once, and completes when its
 * response (or failure) arrives. Ops not yet sent fail at their deadline; a sent op always waits
 * for its request (bounded by request.timeout.ms) so the callback never sees a freed op. The
 * caller stops waiting at its own deadline regardless (ferry_op_run abandons the op).
 */

/* ---- I/O thread ---- */

static void on_op_response(struct ferry_client *cl, struct broker *b, int err, const char *errmsg,
                           const struct ferry_response_header *rh, void *arg);

static void op_retry_or_fail(struct ferry_client *cl, struct op *op, int err, const char *errmsg, int64_t now)
{
    if (ferry_err_is_retriable((ferry_err_t)err) && now + cl->s.retry_backoff_ms < op->deadline_ms) {
        op->retry_at_ms = now + cl->s.retry_backoff_ms;
        ferry_kick(cl);
        return;
    }
    ferry_op_complete(cl, op, (ferry_err_t)err, "%s", errmsg);
}

static void op_send(struct ferry_client *cl, struct op *op, struct broker *b)
{
    static const int apis[] = {
        [OP_METADATA] = FERRY_API_METADATA,
        [OP_CREATE_TOPIC] = FERRY_API_CREATE_TOPICS,
        [OP_DELETE_TOPIC] = FERRY_API_DELETE_TOPICS,
        [OP_LIST_OFFSETS] = FERRY_API_LIST_OFFSETS,
    };
    int api = apis[op->type];
    int64_t left = op->deadline_ms == INT64_MAX ? cl->s.request_timeout_ms : op->deadline_ms - ferry_now_ms();
    if (left < 0)
        left = 0;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    uint32_t corr = ferry_request_begin(cl, &sb, &pk, api);
    switch (op->type) {
    case OP_METADATA:
        ferry_metadata_pack_request(&pk, (const char *const *)op->topics, op->topic_count);
        break;
    case OP_CREATE_TOPIC: {
        char token[17];
        snprintf(token, sizeof(token), "%016" PRIx64, (uint64_t)op->timestamp);
        msgpack_pack_map(&pk, 2);
        ferry_pack_key(&pk, "topics");
        msgpack_pack_array(&pk, 1);
        msgpack_pack_map(&pk, 5);
        ferry_pack_key(&pk, "request_token"); /* the same in every attempt: a retry is not a conflict */
        ferry_pack_str(&pk, token);
        ferry_pack_key(&pk, "name");
        ferry_pack_str(&pk, op->topics[0]);
        ferry_pack_key(&pk, "partitions");
        msgpack_pack_int32(&pk, op->partitions);
        ferry_pack_key(&pk, "replication_factor");
        msgpack_pack_int32(&pk, op->replication_factor);
        ferry_pack_key(&pk, "configs");
        msgpack_pack_map(&pk, op->config_count);
        for (size_t i = 0; i < op->config_count; i++) {
            ferry_pack_str(&pk, op->config_keys[i]);
            ferry_pack_str(&pk, op->config_values[i]);
        }
        ferry_pack_key(&pk, "timeout_ms");
        msgpack_pack_int64(&pk, left);
        break;
    }
    case OP_DELETE_TOPIC:
        msgpack_pack_map(&pk, 2);
        ferry_pack_key(&pk, "topics");
        msgpack_pack_array(&pk, 1);
        ferry_pack_str(&pk, op->topics[0]);
        ferry_pack_key(&pk, "timeout_ms");
        msgpack_pack_int64(&pk, left);
        break;
    case OP_LIST_OFFSETS:
        msgpack_pack_map(&pk, 1);
        ferry_pack_key(&pk, "topics");
        msgpack_pack_array(&pk, 1);
        msgpack_pack_map(&pk, 2);
        ferry_pack_key(&pk, "name");
        ferry_pack_str(&pk, op->topics[0]);
        ferry_pack_key(&pk, "partitions");
        msgpack_pack_array(&pk, 1);
        msgpack_pack_map(&pk, 2);
        ferry_pack_key(&pk, "partition");
        msgpack_pack_int32(&pk, op->partition);
        ferry_pack_key(&pk, "timestamp");
        msgpack_pack_int64(&pk, op->timestamp);
        break;
    }
    int err = ferry_request_send(cl, b, &sb, corr, api, 0, on_op_response, op);
    if (err != 0) {
        op_retry_or_fail(cl, op, err, "sending the request failed", ferry_now_ms());
        return;
    }
    op->sent = true;
}

/* The broker a list-offsets op must go to, or NULL: then it waits, or, with *completed set, it has
 * been completed (and may already be freed by its caller). */
static struct broker *op_leader(struct ferry_client *cl, struct op *op, bool *completed)
{
    struct ctopic *t = ferry_topic_get(cl, op->topics[0], true);
    if (t == NULL)
        return NULL;
    if (t->state == TOPIC_UNKNOWN)
        return NULL;
    if (t->state == TOPIC_NOT_EXIST || op->partition >= t->partition_count) {
        ferry_op_complete(cl, op, FERRY_ERR_UNKNOWN_TOPIC_OR_PARTITION, "%s/%d does not exist", op->topics[0],
                          (int)op->partition);
        *completed = true;
        return NULL;
    }
    int32_t leader = ferry_topic_leader(t, op->partition);
    struct broker *b = leader >= 0 ? ferry_broker_by_id(cl, leader) : NULL;
    if (b == NULL) {
        ferry_metadata_refresh(cl, "list offsets: no leader");
        return NULL;
    }
    if (b->state != BROKER_UP) {
        ferry_broker_want(cl, b);
        return NULL;
    }
    return b;
}

/* Create/delete go to the controller when metadata named one (a cluster answers NOT_CONTROLLER
 * elsewhere); until it is connected they wait. Otherwise any broker that is up. */
static struct broker *op_controller(struct ferry_client *cl)
{
    struct broker *ctrl = cl->controller_id >= 0 ? ferry_broker_by_id(cl, cl->controller_id) : NULL;
    if (ctrl == NULL || ctrl->state == BROKER_UP)
        return ctrl != NULL ? ctrl : ferry_broker_any_up(cl);
    ferry_broker_want(cl, ctrl);
    return NULL;
}

void ferry_ops_service(struct ferry_client *cl, int64_t now)
{
    struct op *next;
    for (struct op *op = cl->ops; op; op = next) {
        next = op->next;
        if (op->sent)
            continue;
        if (now >= op->deadline_ms) {
            ferry_op_complete(cl, op, FERRY_ERR__TIMED_OUT, "timed out waiting for a broker%s%s",
                              cl->last_error[0] ? "; last error: " : "", cl->last_error);
            continue;
        }
        if (now < op->retry_at_ms)
            continue;
        bool completed = false;
        struct broker *b = op->type == OP_LIST_OFFSETS                                      ? op_leader(cl, op, &completed)
                           : op->type == OP_CREATE_TOPIC || op->type == OP_DELETE_TOPIC ? op_controller(cl)
                                                                                        : ferry_broker_any_up(cl);
        if (b != NULL) {
            op_send(cl, op, b);
        } else if (cl->unreachable_err != FERRY_ERR_NONE && !completed) {
            /* Every broker refused us in a way retrying cannot fix (TLS): fail now, not at the
             * deadline. Connection attempts go on with backoff for later calls. */
            ferry_op_complete(cl, op, cl->unreachable_err, "%s", cl->unreachable_msg);
        }
    }
}

void ferry_ops_fail_all(struct ferry_client *cl, ferry_err_t err, const char *why)
{
    pthread_mutex_lock(&cl->lock);
    struct op *in = cl->ops_in;
    cl->ops_in = NULL;
    pthread_mutex_unlock(&cl->lock);
    while (in) {
        struct op *next = in->next;
        in->next = cl->ops;
        cl->ops = in;
        in = next;
    }
    struct op *next;
    for (struct op *op = cl->ops; op; op = next) {
        next = op->next;
        if (!op->sent) /* sent ones complete through their request's failure */
            ferry_op_complete(cl, op, err, "%s", why);
    }
}

/* Reads {"topics": [{"name", "error", "error_message"}]} of Create/DeleteTopics. */
static void topic_result(struct ferry_client *cl, struct op *op, const msgpack_object *body)
{
    struct ferry_mp_reader rd = {0};
    const msgpack_object_array *topics = ferry_mp_array(&rd, body, "topics", 1);
    if (!rd.err && topics->size >= 1) {
        const msgpack_object *tm = ferry_mp_elem_map(&rd, topics, 0, "topics");
        int err = (int)ferry_mp_int(&rd, tm, "error", 0, 0);
        size_t ml = 0;
        const char *m = ferry_mp_str(&rd, tm, "error_message", &ml, 0);
        if (!rd.err && err == FERRY_ERR_NOT_CONTROLLER) {
            /* Sent to a broker that is not (or no longer) the controller: learn the new one, retry. */
            ferry_metadata_refresh(cl, "admin: not controller");
            op_retry_or_fail(cl, op, err, m ? m : ferry_err_str(err), ferry_now_ms());
            return;
        }
        if (!rd.err) {
            if (m != NULL)
                ferry_op_complete(cl, op, (ferry_err_t)err, "%.*s", (int)ml, m);
            else
                ferry_op_complete(cl, op, (ferry_err_t)err, "%s", err ? ferry_err_str(err) : "");
            return;
        }
    }
    ferry_op_complete(cl, op, FERRY_ERR__BAD_RESPONSE, "malformed response: %s",
                      rd.err ? rd.errmsg : "no topic result");
}

static void offsets_result(struct ferry_client *cl, struct op *op, const msgpack_object *body, int64_t now)
{
    struct ferry_mp_reader rd = {0};
    const msgpack_object_array *topics = ferry_mp_array(&rd, body, "topics", 1);
    const msgpack_object *tm = rd.err || topics->size < 1 ? NULL : ferry_mp_elem_map(&rd, topics, 0, "topics");
    const msgpack_object_array *parts = tm && !rd.err ? ferry_mp_array(&rd, tm, "partitions", 1) : NULL;
    const msgpack_object *pm = parts && !rd.err && parts->size >= 1 ? ferry_mp_elem_map(&rd, parts, 0, "partitions")
                                                                     : NULL;
    if (pm == NULL || rd.err) {
        ferry_op_complete(cl, op, FERRY_ERR__BAD_RESPONSE, "malformed response: %s",
                          rd.err ? rd.errmsg : "no partition result");
        return;
    }
    int err = (int)ferry_mp_int(&rd, pm, "error", 0, 0);
    size_t ml = 0;
    const char *m = ferry_mp_str(&rd, pm, "error_message", &ml, 0);
    int64_t off = ferry_mp_int(&rd, pm, "offset", -1, 0);
    if (rd.err) {
        ferry_op_complete(cl, op, FERRY_ERR__BAD_RESPONSE, "malformed response: %s", rd.errmsg);
        return;
    }
    if (err == FERRY_ERR_NOT_LEADER) {
        ferry_metadata_refresh(cl, "list offsets: not leader");
        op_retry_or_fail(cl, op, err, m ? m : ferry_err_str(err), now);
        return;
    }
    if (err != 0) {
        ferry_op_complete(cl, op, (ferry_err_t)err, "%.*s", m ? (int)ml : (int)strlen(ferry_err_str(err)),
                          m ? m : ferry_err_str(err));
        return;
    }
    op->offset = off;
    ferry_op_complete(cl, op, FERRY_ERR_NONE, NULL);
}

static void on_op_response(struct ferry_client *cl, struct broker *b, int err, const char *errmsg,
                           const struct ferry_response_header *rh, void *arg)
{
    struct op *op = arg;
    (void)b;
    op->sent = false;
    int64_t now = ferry_now_ms();
    if (cl->stopping) {
        ferry_op_complete(cl, op, FERRY_ERR__DESTROYED, "client is closing");
        return;
    }
    if (err != 0) {
        /* Delete is not retried after a lost response: the broker may have done it. Create is: its
         * request token makes a retry of a create that happened a success. */
        if (op->type == OP_DELETE_TOPIC)
            ferry_op_complete(cl, op, (ferry_err_t)err, "%s", errmsg);
        else
            op_retry_or_fail(cl, op, err, errmsg, now);
        return;
    }
    if (rh->error != 0) {
        if (rh->error_message)
            ferry_op_complete(cl, op, (ferry_err_t)rh->error, "%.*s", (int)rh->error_message_len,
                              rh->error_message);
        else
            ferry_op_complete(cl, op, (ferry_err_t)rh->error, "%s", ferry_err_str(rh->error));
        return;
    }
    switch (op->type) {
    case OP_METADATA: {
        char msg[256];
        op->md = ferry_metadata_parse(cl, rh->body, msg, sizeof msg);
        if (op->md == NULL)
            ferry_op_complete(cl, op, FERRY_ERR__BAD_RESPONSE, "%s", msg);
        else
            ferry_op_complete(cl, op, FERRY_ERR_NONE, NULL);
        ferry_kick(cl); /* the cache may have learned leaders */
        break;
    }
    case OP_CREATE_TOPIC:
    case OP_DELETE_TOPIC:
        topic_result(cl, op, rh->body);
        ferry_metadata_refresh(cl, "topics changed");
        break;
    case OP_LIST_OFFSETS:
        offsets_result(cl, op, rh->body, now);
        break;
    }
}

/* ---- application API ---- */

static struct op *op_new(enum op_type type, const char *topic)
{
    struct op *op = calloc(1, sizeof *op);
    if (op == NULL)
        return NULL;
    op->type = type;
    if (topic != NULL) {
        op->topics = calloc(1, sizeof *op->topics);
        if (op->topics == NULL || (op->topics[0] = strdup(topic)) == NULL) {
            ferry_op_free(op);
            return NULL;
        }
        op->topic_count = 1;
    }
    return op;
}

/*
 * A CreateTopics request token (docs/protocol.md): 64 random bits, sent with every attempt of one
 * ferry_admin_create_topic call, so a retry after a controller change or a lost response is not
 * mistaken for a conflicting create. Without getrandom, time, pid and a counter still differ per call.
 */
static uint64_t create_token(void)
{
    static _Atomic uint64_t counter;
    uint64_t v = 0;
    if (getrandom(&v, sizeof(v), 0) == (ssize_t)sizeof(v) && v != 0)
        return v;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    v = ((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec) ^ ((uint64_t)getpid() << 40);
    return v ^ (++counter * 0x9e3779b97f4a7c15u);
}

static bool topic_name_ok(const char *name)
{
    return name != NULL && name[0] != '\0' && strlen(name) <= FERRY_MAX_TOPIC_NAME;
}

/* Ownership after ferry_op_run (see there): the caller frees unless it gave up or the client closed. */
#define OP_RELEASE(op, err)                                                                                          \
    do {                                                                                                             \
        if ((err) != FERRY_ERR__TIMED_OUT && (err) != FERRY_ERR__DESTROYED)                                          \
            ferry_op_free(op);                                                                                       \
    } while (0)

FERRY_API ferry_err_t ferry_admin_create_topic(ferry_client_t *cl, const char *name, int32_t partitions,
                                               int32_t replication_factor, const char *const *config_keys,
                                               const char *const *config_values, size_t config_count,
                                               int timeout_ms, char *errstr, size_t errstr_size)
{
    if (cl == NULL || !topic_name_ok(name) || partitions == 0 || partitions < -1 ||
        partitions > FERRY_MAX_PARTITIONS_PER_TOPIC || replication_factor == 0 || replication_factor < -1 ||
        config_count > FERRY_MAX_MAP_LEN || (config_count > 0 && (config_keys == NULL || config_values == NULL))) {
        ferry_set_errstr(errstr, errstr_size, "invalid argument (topic name, partitions, replication factor or configs)");
        return FERRY_ERR__INVALID_ARG;
    }
    for (size_t i = 0; i < config_count; i++) {
        if (config_keys[i] == NULL || config_values[i] == NULL) {
            ferry_set_errstr(errstr, errstr_size, "config %zu: NULL key or value", i);
            return FERRY_ERR__INVALID_ARG;
        }
    }
    struct op *op = op_new(OP_CREATE_TOPIC, name);
    if (op == NULL)
        goto oom;
    op->timestamp = (int64_t)create_token(); /* unused by creates otherwise: the request token */
    op->partitions = partitions;
    op->replication_factor = replication_factor;
    if (config_count > 0) {
        op->config_keys = calloc(config_count, sizeof(char *));
        op->config_values = calloc(config_count, sizeof(char *));
        if (op->config_keys == NULL || op->config_values == NULL)
            goto oom_free;
        for (size_t i = 0; i < config_count; i++) {
            op->config_keys[i] = strdup(config_keys[i]);
            op->config_values[i] = strdup(config_values[i]);
            op->config_count = i + 1;
            if (op->config_keys[i] == NULL || op->config_values[i] == NULL)
                goto oom_free;
        }
    }
    ferry_err_t err = ferry_op_run(cl, op, timeout_ms, errstr, errstr_size);
    OP_RELEASE(op, err);
    return err;
oom_free:
    ferry_op_free(op);
oom:
    ferry_set_errstr(errstr, errstr_size, "out of memory");
    return FERRY_ERR__NO_MEMORY;
}

FERRY_API ferry_err_t ferry_admin_delete_topic(ferry_client_t *cl, const char *name, int timeout_ms, char *errstr,
                                               size_t errstr_size)
{
    if (cl == NULL || !topic_name_ok(name)) {
        ferry_set_errstr(errstr, errstr_size, "invalid topic name");
        return FERRY_ERR__INVALID_ARG;
    }
    struct op *op = op_new(OP_DELETE_TOPIC, name);
    if (op == NULL) {
        ferry_set_errstr(errstr, errstr_size, "out of memory");
        return FERRY_ERR__NO_MEMORY;
    }
    ferry_err_t err = ferry_op_run(cl, op, timeout_ms, errstr, errstr_size);
    OP_RELEASE(op, err);
    return err;
}

FERRY_API ferry_err_t ferry_admin_describe_cluster(ferry_client_t *cl, const char *const *topics, size_t topic_count,
                                                   ferry_metadata_t **mdp, int timeout_ms, char *errstr,
                                                   size_t errstr_size)
{
    if (mdp != NULL)
        *mdp = NULL;
    if (cl == NULL || mdp == NULL || (topic_count > 0 && topics == NULL) || topic_count > FERRY_MAX_TOPICS) {
        ferry_set_errstr(errstr, errstr_size, "invalid argument");
        return FERRY_ERR__INVALID_ARG;
    }
    struct op *op = op_new(OP_METADATA, NULL);
    if (op == NULL)
        goto oom;
    if (topic_count > 0) {
        op->topics = calloc(topic_count, sizeof *op->topics);
        if (op->topics == NULL)
            goto oom_free;
        for (size_t i = 0; i < topic_count; i++) {
            if (!topic_name_ok(topics[i])) {
                ferry_op_free(op);
                ferry_set_errstr(errstr, errstr_size, "topic %zu: invalid name", i);
                return FERRY_ERR__INVALID_ARG;
            }
            op->topics[i] = strdup(topics[i]);
            op->topic_count = i + 1;
            if (op->topics[i] == NULL)
                goto oom_free;
        }
    }
    ferry_err_t err = ferry_op_run(cl, op, timeout_ms, errstr, errstr_size);
    if (err == FERRY_ERR_NONE) {
        *mdp = op->md;
        op->md = NULL;
    }
    OP_RELEASE(op, err);
    return err;
oom_free:
    ferry_op_free(op);
oom:
    ferry_set_errstr(errstr, errstr_size, "out of memory");
    return FERRY_ERR__NO_MEMORY;
}

FERRY_API ferry_err_t ferry_admin_list_offsets(ferry_client_t *cl, const char *topic, int32_t partition,
                                               int64_t timestamp, int64_t *offset, int timeout_ms, char *errstr,
                                               size_t errstr_size)
{
    if (cl == NULL || !topic_name_ok(topic) || partition < 0 || timestamp < FERRY_TIMESTAMP_EARLIEST ||
        offset == NULL) {
        ferry_set_errstr(errstr, errstr_size, "invalid argument");
        return FERRY_ERR__INVALID_ARG;
    }
    struct op *op = op_new(OP_LIST_OFFSETS, topic);
    if (op == NULL) {
        ferry_set_errstr(errstr, errstr_size, "out of memory");
        return FERRY_ERR__NO_MEMORY;
    }
    op->partition = partition;
    op->timestamp = timestamp;
    ferry_err_t err = ferry_op_run(cl, op, timeout_ms, errstr, errstr_size);
    if (err == FERRY_ERR_NONE)
        *offset = op->offset;
    OP_RELEASE(op, err);
    return err;
}

/* Remaining milliseconds of a deadline for a follow-up call (-1 stays forever). */
static int remaining(int64_t deadline)
{
    if (deadline < 0)
        return -1;
    int64_t left = deadline - ferry_now_ms();
    return left < 0 ? 0 : (int)left;
}

FERRY_API ferry_err_t ferry_watermarks(ferry_client_t *cl, const char *topic, int32_t partition, int64_t *lo,
                                       int64_t *hi, int timeout_ms)
{
    if (lo == NULL || hi == NULL)
        return FERRY_ERR__INVALID_ARG;
    int64_t deadline = ferry_deadline(timeout_ms);
    ferry_err_t err = ferry_admin_list_offsets(cl, topic, partition, FERRY_TIMESTAMP_EARLIEST, lo, timeout_ms, NULL, 0);
    if (err != FERRY_ERR_NONE)
        return err;
    return ferry_admin_list_offsets(cl, topic, partition, FERRY_TIMESTAMP_LATEST, hi, remaining(deadline), NULL, 0);
}

FERRY_API ferry_err_t ferry_seek_time(ferry_client_t *cl, const char *topic, int32_t partition, int64_t ts_ms,
                                      int timeout_ms)
{
    if (cl == NULL || topic == NULL || partition < 0 || ts_ms < 0)
        return FERRY_ERR__INVALID_ARG;
    if (cl->type != FERRY_CONSUMER)
        return FERRY_ERR__WRONG_CLIENT_TYPE;
    int64_t deadline = ferry_deadline(timeout_ms);
    /* Check the assignment first, so a typo fails fast rather than after a round trip. */
    if (!ferry_consumer_is_assigned(cl, topic, partition))
        return FERRY_ERR__NOT_ASSIGNED;
    int64_t offset;
    ferry_err_t err = ferry_admin_list_offsets(cl, topic, partition, ts_ms, &offset, remaining(deadline), NULL, 0);
    if (err != FERRY_ERR_NONE)
        return err;
    return ferry_seek(cl, topic, partition, offset, 0);
}
