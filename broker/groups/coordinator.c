/* coordinator.c: the group coordinator's life, its offsets partitions, lookups and the periodic work. */
#include "groups/groups_int.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cluster.h"
#include "groups/coordinator.h"
#include "ferry_errors.h"
#include "logging.h"

/* The coordinator's tick: loads, offsets topic creation and session expiry are checked this often. */
#define TICK_MS 200
#define NBUCKETS 4096
/* Partition counts of subscribed topics are compared this often (ticks): a change rebalances the group. */
#define METADATA_EVERY_TICKS 5

uint64_t fg_now(const struct ferryd_coord *co)
{
    return uv_now(co->b->loop);
}

static size_t hash_id(const char *s, size_t len)
{
    size_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}

int fg_check_group_id(const char *id, size_t len, char *msg, size_t msg_len)
{
    if (id == NULL || len == 0) {
        snprintf(msg, msg_len, "group_id must not be empty");
        return FERRY_ERR_INVALID_GROUP_ID;
    }
    if (len > FG_MAX_GROUP_ID) {
        snprintf(msg, msg_len, "group_id is %zu bytes, above the limit %d", len, FG_MAX_GROUP_ID);
        return FERRY_ERR_INVALID_GROUP_ID;
    }
    return 0;
}

int ferryd_coord_internal_topic(const char *name, size_t len, const char *action, char *errmsg, size_t errmsg_len)
{
    if (name == NULL || len != strlen(FG_OFFSETS_TOPIC) || memcmp(name, FG_OFFSETS_TOPIC, len) != 0)
        return 0;
    snprintf(errmsg, errmsg_len,
             "topic %s is internal to the group coordinator: clients may not %s it (commit offsets with "
             "OffsetCommit, remove groups with DeleteGroups)",
             FG_OFFSETS_TOPIC, action);
    return 1;
}

int64_t fg_session_timeout(const struct ferryd_coord *co, int64_t requested)
{
    const struct ferryd_config *cfg = co->b->cfg;
    int64_t v = requested > 0 ? requested : FG_DEFAULT_SESSION_MS;
    if (v > cfg->group_max_session_timeout_ms)
        v = cfg->group_max_session_timeout_ms;
    if (v < cfg->group_min_session_timeout_ms)
        v = cfg->group_min_session_timeout_ms;
    return v;
}

/* ---- slots ---- */

/* Makes sure slots[] matches the local offsets topic (created by the controller's apply, or by us). */
static int ensure_slots(struct ferryd_coord *co)
{
    if (co->slots != NULL)
        return 0;
    struct ferryd_topic *t = ferryd_topics_find(co->b->topics, FG_OFFSETS_TOPIC, strlen(FG_OFFSETS_TOPIC));
    if (t == NULL || t->npartitions == 0)
        return -1;
    co->slots = calloc(t->npartitions, sizeof(*co->slots));
    if (co->slots == NULL)
        return -1;
    co->nslots = (int32_t)t->npartitions;
    return 0;
}

static struct ferryd_partition *slot_partition(struct ferryd_coord *co, int32_t slot)
{
    struct ferryd_topic *t = ferryd_topics_find(co->b->topics, FG_OFFSETS_TOPIC, strlen(FG_OFFSETS_TOPIC));
    return t == NULL ? NULL : ferryd_topic_partition(t, slot);
}

/* Drops every group of slot (leadership lost). */
static void slot_drop(struct ferryd_coord *co, int32_t slot)
{
    for (size_t i = 0; i < co->nbuckets; i++) {
        struct fg_group **pp = &co->buckets[i];
        while (*pp != NULL) {
            struct fg_group *g = *pp;
            if (g->slot == slot)
                fg_group_remove(co, g); /* unlinks *pp */
            else
                pp = &g->next;
        }
    }
}

static void on_role(void *arg, const char *topic, int32_t partition, int is_leader)
{
    struct ferryd_coord *co = arg;
    if (strcmp(topic, FG_OFFSETS_TOPIC) != 0 || co->stopped)
        return;
    if (ensure_slots(co) != 0 || partition < 0 || partition >= co->nslots)
        return;
    struct fg_slot *s = &co->slots[partition];
    s->gen++;
    if (s->state != FG_SLOT_NONE)
        slot_drop(co, partition);
    s->state = is_leader ? FG_SLOT_WANT_LOAD : FG_SLOT_NONE;
    LOG_INFO("groups: %s offsets partition %d", is_leader ? "leading (loading)" : "no longer leading", partition);
}

struct load_ctx {
    struct ferryd_coord *co;
    int32_t slot;
    uint64_t gen;
};

static void slot_load_now(struct ferryd_coord *co, int32_t slot)
{
    char msg[512];
    if (fg_slot_replay(co, slot, msg, sizeof(msg)) != 0) {
        LOG_ERROR("groups: loading offsets partition %d failed (retrying): %s", slot, msg);
        slot_drop(co, slot);
        co->slots[slot].state = FG_SLOT_WANT_LOAD;
        return;
    }
    co->slots[slot].state = FG_SLOT_READY;
}

static void on_barrier(void *arg, int error)
{
    struct load_ctx *lc = arg;
    struct ferryd_coord *co = lc->co;
    if (!co->stopped && co->slots[lc->slot].gen == lc->gen && co->slots[lc->slot].state == FG_SLOT_LOADING) {
        struct ferryd_partition *p = slot_partition(co, lc->slot);
        int64_t leader;
        char msg[256];
        /* A replica still catching up on segment data must not replay a log that lacks it. */
        if (error == 0 && p != NULL && ferryd_cluster_check_leader(co->b->cluster, p, &leader, msg, sizeof(msg)) == 0)
            slot_load_now(co, lc->slot);
        else
            co->slots[lc->slot].state = FG_SLOT_WANT_LOAD; /* retried; a role change says if we lost it */
    }
    free(lc);
}

static void start_loads(struct ferryd_coord *co)
{
    char msg[256];
    for (int32_t i = 0; i < co->nslots; i++) {
        struct fg_slot *s = &co->slots[i];
        if (s->state != FG_SLOT_WANT_LOAD)
            continue;
        struct ferryd_partition *p = slot_partition(co, i);
        if (p == NULL)
            continue;
        if (co->b->cluster == NULL) {
            slot_load_now(co, i);
            continue;
        }
        struct load_ctx *lc = malloc(sizeof(*lc));
        if (lc == NULL)
            return;
        *lc = (struct load_ctx){co, i, s->gen};
        s->state = FG_SLOT_LOADING;
        if (p->replica == NULL || ferryd_cluster_barrier(p, on_barrier, lc, msg, sizeof(msg)) != 0) {
            free(lc);
            s->state = FG_SLOT_WANT_LOAD;
        }
    }
}

/* ---- the offsets topic ---- */

static void on_offsets_topic_created(void *arg, int error, const char *msg)
{
    struct ferryd_coord *co = arg;
    co->creating = 0;
    if (error == 0)
        LOG_INFO("groups: created the offsets topic %s", FG_OFFSETS_TOPIC);
    else if (error != FERRY_ERR_TOPIC_ALREADY_EXISTS)
        LOG_WARN("groups: creating the offsets topic failed (error %d, retrying): %s", error, msg);
}

static void offsets_topic_config(struct ferryd_topic_config *tc)
{
    char msg[256];
    memset(tc, 0, sizeof(*tc));
    /* unlimited retention: the state lives in the log (compaction is future work) */
    ferryd_topic_config_set(tc, "retention.ms", 12, "-1", 2, msg, sizeof(msg));
    ferryd_topic_config_set(tc, "retention.bytes", 15, "-1", 2, msg, sizeof(msg));
}

static void ensure_offsets_topic(struct ferryd_coord *co)
{
    const struct ferryd_config *cfg = co->b->cfg;
    struct ferryd_topic_config tc;
    char msg[512];
    size_t nlen = strlen(FG_OFFSETS_TOPIC);
    offsets_topic_config(&tc);
    if (co->b->cluster == NULL) {
        if (!co->wanted || ferryd_topics_find(co->b->topics, FG_OFFSETS_TOPIC, nlen) != NULL)
            return;
        int rc = ferryd_topics_create(co->b->topics, FG_OFFSETS_TOPIC, nlen, cfg->offsets_topic_num_partitions, &tc,
                                      msg, sizeof(msg));
        if (rc != 0)
            LOG_WARN("groups: creating the offsets topic failed (error %d, retrying): %s", rc, msg);
        return;
    }
    struct ferryd_cluster *c = co->b->cluster;
    int64_t leader;
    const int64_t *replicas;
    int rf;
    if (co->creating || !ferryd_cluster_is_controller(c) ||
        ferryd_cluster_partition(c, FG_OFFSETS_TOPIC, nlen, 0, &leader, &replicas, &rf) == 0)
        return;
    int64_t want = cfg->offsets_topic_replication_factor;
    int64_t need = want > 0 ? want : (co->nmembers < 3 ? co->nmembers : 3);
    if ((int64_t)ferryd_cluster_broker_count(c) < need)
        return; /* not enough brokers registered yet */
    if (ferryd_cluster_create_topic(c, FG_OFFSETS_TOPIC, nlen, cfg->offsets_topic_num_partitions, want, &tc,
                                    on_offsets_topic_created, co, msg, sizeof(msg)) == 0)
        co->creating = 1;
    else
        LOG_DEBUG("groups: creating the offsets topic: %s", msg);
}

/* ---- sessions ---- */

static void expire_sessions(struct ferryd_coord *co)
{
    uint64_t now = fg_now(co);
    for (size_t i = 0; i < co->nbuckets; i++) {
        for (struct fg_group *g = co->buckets[i]; g != NULL; g = g->next) {
            if (co->slots == NULL || co->slots[g->slot].state != FG_SLOT_READY)
                continue;
            struct fg_records recs;
            fg_records_init(&recs);
            for (uint32_t k = 0; k < g->nmembers;) {
                struct fg_member *m = g->members[k];
                int gone = now >= m->deadline;
                /* A member that keeps partitions it must give up past its rebalance timeout is fenced too. */
                if (!gone && m->nrevoking > 0 && m->revoke_since != 0 &&
                    now >= m->revoke_since + (uint64_t)m->rebalance_timeout_ms)
                    gone = 1;
                if (!gone) {
                    k++;
                    continue;
                }
                LOG_INFO("groups: group %s: member %s %s; removing it", g->id, m->id,
                         now >= m->deadline ? "session timed out" : "did not release partitions in time");
                fg_member_expel(co, g, m, &recs);
            }
            if (recs.n > 0)
                fg_write(co, g->slot, &recs, NULL, NULL);
            else
                fg_records_free(&recs);
        }
    }
}

/* Topics whose partition count changed since the last target computation: rebalance. */
static uint64_t parts_signature(struct ferryd_coord *co, const struct fg_group *g)
{
    uint64_t sig = 1469598103934665603ull;
    for (uint32_t t = 0; t < g->ntopics; t++)
        sig = (sig ^ (uint64_t)(uint32_t)fg_topic_partitions(co, g->topics[t])) * 1099511628211ull;
    return sig;
}

static void check_metadata(struct ferryd_coord *co)
{
    for (size_t i = 0; i < co->nbuckets; i++) {
        for (struct fg_group *g = co->buckets[i]; g != NULL; g = g->next) {
            if (g->nmembers == 0 || co->slots[g->slot].state != FG_SLOT_READY)
                continue;
            if (parts_signature(co, g) == g->parts_sig)
                continue;
            struct fg_records recs;
            fg_records_init(&recs);
            if (fg_group_rebalance(co, g) == 0)
                fg_rec_group(&recs, g);
            fg_write(co, g->slot, &recs, NULL, NULL);
        }
    }
}

static void on_tick(uv_timer_t *t)
{
    struct ferryd_coord *co = t->data;
    if (co->stopped || co->b->stopping)
        return;
    ensure_offsets_topic(co);
    if (ensure_slots(co) != 0)
        return;
    if (co->b->cluster == NULL) {
        for (int32_t i = 0; i < co->nslots; i++)
            if (co->slots[i].state == FG_SLOT_NONE)
                co->slots[i].state = FG_SLOT_WANT_LOAD;
    }
    start_loads(co);
    expire_sessions(co);
    if (++co->ticks % METADATA_EVERY_TICKS == 0)
        check_metadata(co);
}

int ferryd_coord_create(struct ferryd *b, struct ferryd_coord **out, char *errmsg, size_t errmsg_len)
{
    struct ferryd_coord *co = calloc(1, sizeof(*co));
    if (co == NULL)
        goto err_nomem;
    co->b = b;
    co->nbuckets = NBUCKETS;
    co->buckets = calloc(co->nbuckets, sizeof(*co->buckets));
    if (co->buckets == NULL)
        goto err_after_co;
    if (b->cfg->cluster_members[0] != '\0') {
        struct ferryd_member m[FERRYD_MAX_MEMBERS];
        char why[256];
        int n = ferryd_parse_members(b->cfg->cluster_members, m, FERRYD_MAX_MEMBERS, why, sizeof(why));
        co->nmembers = n > 0 ? n : 1;
    }
    uv_timer_init(b->loop, &co->timer);
    co->timer.data = co;
    uv_timer_start(&co->timer, on_tick, TICK_MS, TICK_MS);
    if (b->cluster != NULL)
        ferryd_cluster_set_role_observer(b->cluster, on_role, co);
    *out = co;
    return 0;

err_after_co:
    free(co);
err_nomem:
    snprintf(errmsg, errmsg_len, "group coordinator: out of memory");
    return -1;
}

void ferryd_coord_stop(struct ferryd_coord *co)
{
    if (co == NULL || co->stopped)
        return;
    co->stopped = 1;
    uv_timer_stop(&co->timer);
    if (co->b->cluster != NULL)
        ferryd_cluster_set_role_observer(co->b->cluster, NULL, NULL);
}

static void on_timer_closed(uv_handle_t *h)
{
    free(h->data);
}

void ferryd_coord_destroy(struct ferryd_coord *co)
{
    if (co == NULL)
        return;
    ferryd_coord_stop(co);
    for (size_t i = 0; i < co->nbuckets; i++)
        while (co->buckets[i] != NULL)
            fg_group_remove(co, co->buckets[i]);
    free(co->buckets);
    free(co->slots);
    co->buckets = NULL;
    co->slots = NULL;
    uv_close((uv_handle_t *)&co->timer, on_timer_closed);
}

/* ---- lookups ---- */

int fg_route(struct ferryd_coord *co, const char *group, size_t len, int32_t *slot, char *msg, size_t msg_len)
{
    int rc = fg_check_group_id(group, len, msg, msg_len);
    if (rc != 0)
        return rc;
    if (co == NULL || co->stopped || ensure_slots(co) != 0) {
        if (co != NULL)
            co->wanted = 1; /* standalone: created on the next tick */
        snprintf(msg, msg_len, "the offsets topic %s does not exist yet", FG_OFFSETS_TOPIC);
        return FERRY_ERR_COORDINATOR_NOT_AVAILABLE;
    }
    *slot = fg_group_partition(group, len, co->nslots);
    const struct fg_slot *s = &co->slots[*slot];
    if (s->state == FG_SLOT_READY)
        return 0;
    if (s->state == FG_SLOT_WANT_LOAD || s->state == FG_SLOT_LOADING) {
        snprintf(msg, msg_len, "offsets partition %d is loading", *slot);
        return FERRY_ERR_COORDINATOR_NOT_AVAILABLE;
    }
    int64_t leader = -1;
    if (co->b->cluster != NULL) {
        const int64_t *replicas;
        int rf;
        if (ferryd_cluster_partition(co->b->cluster, FG_OFFSETS_TOPIC, strlen(FG_OFFSETS_TOPIC), *slot, &leader,
                                     &replicas, &rf) != 0)
            leader = -1;
    }
    snprintf(msg, msg_len, "broker %" PRId64 " is not the coordinator of group %.*s (offsets partition %d); "
             "coordinator_id=%" PRId64, co->b->cfg->node_id, (int)len, group, *slot, leader);
    return FERRY_ERR_NOT_COORDINATOR;
}

struct fg_group *fg_group_find(struct ferryd_coord *co, const char *id, size_t len)
{
    if (co->buckets == NULL)
        return NULL;
    for (struct fg_group *g = co->buckets[hash_id(id, len) % co->nbuckets]; g != NULL; g = g->next)
        if (g->id_len == len && memcmp(g->id, id, len) == 0)
            return g;
    return NULL;
}

struct fg_group *fg_group_create(struct ferryd_coord *co, const char *id, size_t len, int32_t slot, int *limit)
{
    *limit = 0;
    if (co->ngroups >= FG_MAX_GROUPS) {
        *limit = 1;
        return NULL;
    }
    struct fg_group *g = calloc(1, sizeof(*g));
    if (g == NULL || (g->id = malloc(len + 1)) == NULL) {
        free(g);
        return NULL;
    }
    memcpy(g->id, id, len);
    g->id[len] = '\0';
    g->id_len = len;
    g->slot = slot;
    size_t b = hash_id(id, len) % co->nbuckets;
    g->next = co->buckets[b];
    co->buckets[b] = g;
    co->ngroups++;
    return g;
}

static void member_free(struct fg_member *m)
{
    free(m->id);
    free(m->instance_id);
    free(m->client_id);
    free(m->host);
    free(m->subs);
    free(m->assigned);
    free(m->revoking);
    free(m->target);
    free(m->resets);
    free(m);
}

void fg_group_remove(struct ferryd_coord *co, struct fg_group *g)
{
    struct fg_group **pp = &co->buckets[hash_id(g->id, g->id_len) % co->nbuckets];
    while (*pp != g)
        pp = &(*pp)->next;
    *pp = g->next;
    co->ngroups--;
    for (uint32_t i = 0; i < g->nmembers; i++)
        member_free(g->members[i]);
    free(g->members);
    for (uint32_t i = 0; i < g->noffsets; i++)
        free(g->offsets[i].metadata);
    free(g->offsets);
    for (uint32_t i = 0; i < g->ntopics; i++)
        free(g->topics[i]);
    free(g->topics);
    free(g->id);
    free(g);
}

uint32_t fg_topic_index(struct fg_group *g, const char *name, size_t len)
{
    for (uint32_t i = 0; i < g->ntopics; i++)
        if (strlen(g->topics[i]) == len && memcmp(g->topics[i], name, len) == 0)
            return i;
    if (g->ntopics == g->captopics) {
        uint32_t cap = g->captopics ? g->captopics * 2 : 8;
        char **n = realloc(g->topics, cap * sizeof(*n));
        if (n == NULL)
            return UINT32_MAX;
        g->topics = n;
        g->captopics = cap;
    }
    char *s = malloc(len + 1);
    if (s == NULL)
        return UINT32_MAX;
    memcpy(s, name, len);
    s[len] = '\0';
    g->topics[g->ntopics] = s;
    return g->ntopics++;
}

int32_t fg_topic_partitions(struct ferryd_coord *co, const char *name)
{
    struct ferryd_topic *t = ferryd_topics_find(co->b->topics, name, strlen(name));
    return t == NULL ? -1 : (int32_t)t->npartitions;
}

struct fg_member *fg_member_find(const struct fg_group *g, const char *id, size_t len)
{
    for (uint32_t i = 0; i < g->nmembers; i++)
        if (strlen(g->members[i]->id) == len && memcmp(g->members[i]->id, id, len) == 0)
            return g->members[i];
    return NULL;
}

struct fg_member *fg_member_find_instance(const struct fg_group *g, const char *iid, size_t len)
{
    for (uint32_t i = 0; i < g->nmembers; i++) {
        const char *x = g->members[i]->instance_id;
        if (x != NULL && strlen(x) == len && memcmp(x, iid, len) == 0)
            return g->members[i];
    }
    return NULL;
}

struct fg_member *fg_member_add(struct fg_group *g, const char *id, size_t len)
{
    struct fg_member **n = realloc(g->members, (g->nmembers + 1) * sizeof(*n));
    if (n == NULL)
        return NULL;
    g->members = n;
    struct fg_member *m = calloc(1, sizeof(*m));
    if (m == NULL || (m->id = malloc(len + 1)) == NULL) {
        free(m);
        return NULL;
    }
    memcpy(m->id, id, len);
    m->id[len] = '\0';
    m->session_timeout_ms = FG_DEFAULT_SESSION_MS;
    m->rebalance_timeout_ms = FG_DEFAULT_REBALANCE_MS;
    uint32_t at = 0;
    while (at < g->nmembers && strcmp(g->members[at]->id, m->id) < 0)
        at++;
    memmove(&g->members[at + 1], &g->members[at], (g->nmembers - at) * sizeof(*n));
    g->members[at] = m;
    g->nmembers++;
    return m;
}

void fg_member_remove(struct fg_group *g, struct fg_member *m)
{
    for (uint32_t i = 0; i < g->nmembers; i++) {
        if (g->members[i] != m)
            continue;
        memmove(&g->members[i], &g->members[i + 1], (g->nmembers - i - 1) * sizeof(*g->members));
        g->nmembers--;
        member_free(m);
        return;
    }
}

struct fg_offset *fg_offset_find(const struct fg_group *g, uint32_t topic, int32_t partition)
{
    for (uint32_t i = 0; i < g->noffsets; i++)
        if (g->offsets[i].topic == topic && g->offsets[i].partition == partition)
            return &g->offsets[i];
    return NULL;
}

int fg_offset_set(struct fg_group *g, uint32_t topic, int32_t partition, int64_t offset, const char *metadata,
                  size_t metadata_len, int64_t member_epoch, int64_t commit_ms)
{
    char *md = NULL;
    if (metadata != NULL) {
        md = malloc(metadata_len + 1);
        if (md == NULL)
            return -1;
        if (metadata_len > 0)
            memcpy(md, metadata, metadata_len);
        md[metadata_len] = '\0';
    }
    struct fg_offset *o = fg_offset_find(g, topic, partition);
    if (o == NULL) {
        if (g->noffsets == g->capoffsets) {
            uint32_t cap = g->capoffsets ? g->capoffsets * 2 : 8;
            struct fg_offset *n = realloc(g->offsets, cap * sizeof(*n));
            if (n == NULL) {
                free(md);
                return -1;
            }
            g->offsets = n;
            g->capoffsets = cap;
        }
        o = &g->offsets[g->noffsets++];
        o->topic = topic;
        o->partition = partition;
        o->metadata = NULL;
    }
    free(o->metadata);
    o->metadata = md;
    o->offset = offset;
    o->member_epoch = member_epoch;
    o->commit_ms = commit_ms;
    return 0;
}

int fg_tp_in(const struct fg_tp *set, uint32_t n, uint32_t topic, int32_t partition)
{
    struct fg_tp key = {topic, partition};
    return n > 0 && bsearch(&key, set, n, sizeof(*set), fg_tp_cmp) != NULL;
}

const char *fg_group_state(const struct fg_group *g)
{
    if (g->nmembers == 0)
        return "empty";
    for (uint32_t i = 0; i < g->nmembers; i++) {
        const struct fg_member *m = g->members[i];
        if (m->nrevoking > 0 || m->nassigned != m->ntarget ||
            (m->nassigned > 0 && memcmp(m->assigned, m->target, m->nassigned * sizeof(*m->assigned)) != 0))
            return "assigning";
    }
    return "stable";
}

void fg_pack_tp_set(msgpack_packer *pk, const struct fg_group *g, const struct fg_tp *set, uint32_t n)
{
    uint32_t ntopics = 0;
    for (uint32_t i = 0; i < n; i++)
        if (i == 0 || set[i].topic != set[i - 1].topic)
            ntopics++;
    msgpack_pack_array(pk, ntopics);
    for (uint32_t i = 0; i < n;) {
        uint32_t k = i;
        while (k < n && set[k].topic == set[i].topic)
            k++;
        msgpack_pack_map(pk, 2);
        ferry_pack_key(pk, "topic");
        ferry_pack_str(pk, g->topics[set[i].topic]);
        ferry_pack_key(pk, "partitions");
        msgpack_pack_array(pk, k - i);
        for (uint32_t j = i; j < k; j++)
            msgpack_pack_int32(pk, set[j].partition);
        i = k;
    }
}

void ferryd_coord_want_offsets_topic(struct ferryd_coord *co)
{
    if (co != NULL)
        co->wanted = 1;
}
