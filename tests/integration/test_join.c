/* test_join.c: a broker joins a running 3-broker cluster; a restart re-registers a new client port; producer ids stay unique across a wiped data dir. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ferrytest.h"

#define BEFORE "before"
#define AFTER "after"
#define AFTER_PARTITIONS 4
#define PER_PARTITION 200
#define TIMEOUT_MS 60000
#define MAX_IDS 64

static struct ft_cluster C;
static char E[FT_ERRMSG];

static void teardown(void) { ft_cluster_destroy(&C); }

TestSuite(join, .fini = teardown, .timeout = 400);

/* InitProducerId (api 7) on broker b over a raw connection, retried while the answer is a
 * retriable error (a broker that just restarted may still be fetching its first id block). */
static int64_t init_producer_id(const struct ft_broker *b)
{
    int64_t deadline = ft_now_ms() + ft_ms(TIMEOUT_MS);
    char last[FT_ERRMSG] = "no answer";
    static uint32_t corr = 1;
    while (ft_now_ms() < deadline) {
        struct ft_raw raw;
        if (ft_raw_connect_broker(&raw, b, last, sizeof(last)) != 0) {
            ft_sleep_ms(200);
            continue;
        }
        struct ft_req r;
        size_t len;
        ft_req_begin(&r, 7, 0, corr++);
        msgpack_pack_map(&r.pk, 0);
        const uint8_t *frame = ft_req_frame(&r, &len);
        int64_t id = -1;
        if (ft_raw_send(&raw, frame, len) == 0) {
            struct ft_resp resp;
            if (ft_raw_recv_resp(&raw, &resp, last, sizeof(last)) == FT_RAW_FRAME) {
                if (resp.error == 0 && resp.body != NULL)
                    id = ft_mp_int(resp.body, "producer_id", -1);
                else
                    snprintf(last, sizeof(last), "error %" PRId64 ": %.400s", resp.error, resp.error_message);
            }
            ft_resp_free(&resp);
        }
        ft_req_free(&r);
        ft_raw_close(&raw);
        if (id >= 0)
            return id;
        ft_sleep_ms(200);
    }
    FT_ASSERT(0, "InitProducerId on %s: %s", b->addr, last);
    return -1;
}

static int64_t ids[MAX_IDS];
static size_t nids;

/* Takes one more id from b; fails if it was handed out before (by any broker). */
static void take_unique_id(const struct ft_broker *b)
{
    int64_t id = init_producer_id(b);
    FT_ASSERT(id >= 0, "producer id %" PRId64, id);
    for (size_t i = 0; i < nids; i++)
        FT_ASSERT(ids[i] != id, "producer id %" PRId64 " handed out twice (now by %s)", id, b->addr);
    FT_ASSERT(nids < MAX_IDS, "too many ids");
    ids[nids++] = id;
}

/*
 * Counts the partitions of topic with a replica on `broker`, from the metadata of a broker that
 * lists all `want` partitions (a broker answers from its copy of the controller state, which may
 * lag the create by a moment: retried for up to TIMEOUT_MS).
 */
static int partitions_on(int32_t broker, const char *topic, size_t want)
{
    ferry_client_t *adm = ft_cluster_client(&C, FERRY_ADMIN, NULL, E, sizeof(E));
    FT_ASSERT(adm != NULL, "%s", E);
    const char *topics[] = {topic};
    int64_t deadline = ft_now_ms() + ft_ms(TIMEOUT_MS);
    size_t np = 0;
    int on = -1;
    while (on < 0) {
        FT_ASSERT(ft_now_ms() < deadline, "%s: %zu partition(s) listed, not %zu", topic, np, want);
        ferry_metadata_t *md = NULL;
        if (ferry_admin_describe_cluster(adm, topics, 1, &md, ft_ms(5000), E, sizeof(E)) != FERRY_ERR_NONE) {
            ft_sleep_ms(100);
            continue;
        }
        for (size_t t = 0; t < ferry_metadata_topic_count(md); t++) {
            np = ferry_metadata_partition_count(md, t);
            if (np != want)
                continue;
            on = 0;
            for (size_t p = 0; p < np; p++) {
                FT_ASSERT_EQ(ferry_metadata_partition_replica_count(md, t, p), (size_t)3, "%s/%zu replicas", topic,
                             p);
                for (size_t r = 0; r < 3; r++)
                    on += ferry_metadata_partition_replica(md, t, p, r) == broker;
            }
        }
        ferry_metadata_destroy(md);
        if (on < 0)
            ft_sleep_ms(100);
    }
    ferry_client_destroy(adm);
    return on;
}

/* Produces PER_PARTITION records to every partition of AFTER through broker b only, then reads each
 * partition back through b. */
static void produce_consume_through(const struct ft_broker *b)
{
    struct ft_deliveries log = {0};
    ferry_conf_t *conf = ft_conf(b, NULL, E, sizeof(E));
    FT_ASSERT(conf != NULL, "%s", E);
    ft_conf_record_deliveries(conf, &log);
    ferry_client_t *p = ferry_client_new(FERRY_PRODUCER, conf, E, sizeof(E));
    FT_ASSERT(p != NULL, "%s", E);
    char value[64];
    for (int32_t part = 0; part < AFTER_PARTITIONS; part++) {
        for (int i = 0; i < PER_PARTITION; i++) {
            size_t vl = (size_t)snprintf(value, sizeof(value), "p%d-r%d", (int)part, i);
            ferry_record_t rec = {.topic = AFTER, .partition = part, .value = value, .value_len = vl};
            ferry_err_t e;
            while ((e = ferry_produce(p, &rec, FERRY_F_NONBLOCK)) == FERRY_ERR__QUEUE_FULL)
                ferry_poll(p, 5);
            FT_ASSERT_ERR(e, FERRY_ERR_NONE, "produce");
        }
    }
    FT_ASSERT_ERR(ferry_flush(p, ft_ms(TIMEOUT_MS)), FERRY_ERR_NONE, "flush");
    FT_ASSERT_EQ(log.n, (size_t)(AFTER_PARTITIONS * PER_PARTITION), "delivery reports");
    for (size_t i = 0; i < log.n; i++)
        FT_ASSERT_ERR(log.v[i].err, FERRY_ERR_NONE, "delivery %zu (partition %d) through %s", i, (int)log.v[i].partition,
                      b->addr);
    ferry_client_destroy(p);
    ft_deliveries_free(&log);

    for (int32_t part = 0; part < AFTER_PARTITIONS; part++) {
        ferry_message_t *msgs[PER_PARTITION];
        FT_ASSERT(ft_consume(b, AFTER, part, 0, PER_PARTITION, msgs, NULL, TIMEOUT_MS, E, sizeof(E)) == 0,
                  "consume %s/%d through %s: %s", AFTER, (int)part, b->addr, E);
        for (int i = 0; i < PER_PARTITION; i++) {
            size_t vl;
            const char *v = ferry_message_value(msgs[i], &vl);
            size_t wl = (size_t)snprintf(value, sizeof(value), "p%d-r%d", (int)part, i);
            FT_ASSERT(v != NULL && vl == wl && memcmp(v, value, vl) == 0, "%s/%d offset %d", AFTER, (int)part, i);
            ferry_message_destroy(msgs[i]);
        }
    }
}

/* Listens on 127.0.0.1:port so that a restarting broker cannot get it back. Returns the fd or -1. */
static int hold_port(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(fd, 1) != 0)) {
        close(fd);
        return -1;
    }
    return fd;
}

Test(join, joiner_restart_wipe)
{
    FT_ASSERT(ft_cluster_start(&C, 3, NULL, E, sizeof(E)) == 0, "%s", E);
    ferry_client_t *adm = ft_cluster_client(&C, FERRY_ADMIN, NULL, E, sizeof(E));
    FT_ASSERT(adm != NULL, "%s", E);
    FT_ASSERT_ERR(ferry_admin_create_topic(adm, BEFORE, 2, 3, NULL, NULL, 0, ft_ms(TIMEOUT_MS), E, sizeof(E)),
                  FERRY_ERR_NONE, "create %s: %s", BEFORE, E);
    ferry_client_destroy(adm);
    for (int i = 0; i < 3; i++) {
        take_unique_id(&C.b[i]);
        take_unique_id(&C.b[i]);
    }

    /* A 4th broker, node.id 3, not in cluster.members: it joins (bounded by ft_cluster_join's wait). */
    struct ft_broker_opts joiner = {.extra = "log.level = debug\n"}; /* its log says how the join went */
    FT_ASSERT(ft_cluster_join(&C, 3, 3, &joiner, E, sizeof(E)) == 0, "join: %s", E);
    FT_ASSERT(ft_cluster_wait_broker(&C, 3, C.b[3].port, 30000, E, sizeof(E)) == 0, "%s", E);
    FT_ASSERT_EQ(partitions_on(3, BEFORE, 2), 0, "existing partitions do not move to the new broker");

    /* A new topic places replicas on it (4 brokers, RF 3: it holds 3 of the 4 partitions). */
    adm = ft_cluster_client(&C, FERRY_ADMIN, NULL, E, sizeof(E));
    FT_ASSERT(adm != NULL, "%s", E);
    FT_ASSERT_ERR(ferry_admin_create_topic(adm, AFTER, AFTER_PARTITIONS, 3, NULL, NULL, 0, ft_ms(TIMEOUT_MS), E,
                                           sizeof(E)),
                  FERRY_ERR_NONE, "create %s: %s", AFTER, E);
    ferry_client_destroy(adm);
    /* Placement rotates 3 consecutive brokers of 4 (sorted by id): broker 3 holds 3 of the 4. */
    FT_ASSERT_EQ(partitions_on(3, AFTER, AFTER_PARTITIONS), 3, "replicas of %s on the new broker", AFTER);
    for (int32_t part = 0; part < AFTER_PARTITIONS; part++)
        FT_ASSERT(ft_cluster_leader(&C, AFTER, part, 30000, E, sizeof(E)) >= 0, "%s", E);
    produce_consume_through(&C.b[3]);
    take_unique_id(&C.b[3]);

    /* Broker 1 restarts on another client port: it registers the new one. */
    int old_port = C.b[1].port;
    FT_ASSERT_EQ(ft_broker_stop(&C.b[1]), 0, "broker 1 stops cleanly");
    int held = hold_port(old_port);
    C.b[1].port = 0; /* ft_broker_restart rebinds b->port: 0 = a fresh ephemeral port */
    int rc = ft_broker_restart(&C.b[1], E, sizeof(E));
    if (held >= 0)
        close(held);
    FT_ASSERT(rc == 0, "restart broker 1: %s", E);
    FT_ASSERT(C.b[1].port != old_port, "broker 1 got its old port %d back", old_port);
    FT_ASSERT(ft_cluster_wait_broker(&C, 1, C.b[1].port, 30000, E, sizeof(E)) == 0, "%s", E);

    /* Broker 2 loses its disk: the producer ids handed out after that never repeat an earlier one. */
    FT_ASSERT_EQ(ft_broker_stop(&C.b[2]), 0, "broker 2 stops cleanly");
    FT_ASSERT(ft_rmrf(C.b[2].data_dir) == 0, "wipe %s", C.b[2].data_dir);
    FT_ASSERT(ft_broker_restart(&C.b[2], E, sizeof(E)) == 0, "restart broker 2: %s", E);
    for (int i = 0; i < 4; i++)
        take_unique_id(&C.b[2]);
    for (int i = 0; i < 4; i++)
        take_unique_id(&C.b[i]);

    /* The joined broker restarts with its data: it is an ordinary member now (no second join). */
    FT_ASSERT_EQ(ft_broker_stop(&C.b[3]), 0, "broker 3 stops cleanly");
    FT_ASSERT(ft_broker_restart(&C.b[3], E, sizeof(E)) == 0, "restart broker 3: %s", E);
    FT_ASSERT(ft_cluster_wait_broker(&C, 3, C.b[3].port, 30000, E, sizeof(E)) == 0, "%s", E);
    produce_consume_through(&C.b[3]); /* the first PER_PARTITION records of each partition are read back */
    take_unique_id(&C.b[3]);
}
