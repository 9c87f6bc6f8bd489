/* cmd_cluster.c: `ferryctl cluster info`: brokers, controller, topic and partition counts, leaders per broker. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "ferryctl.h"

const struct optdef cluster_info_opts[] = {{0}};

int cmd_cluster_info(struct ctl *ctl, const struct parsed *p)
{
    if (p->npos) {
        usage_error(ctl, "cluster info takes no arguments");
        return EXIT_USAGE;
    }
    ferry_client_t *client = NULL;
    ferry_metadata_t *md = NULL;
    int rc = ctl_connect(ctl, FERRY_ADMIN, &client);
    if (rc)
        return rc;
    char err[512] = "";
    ferry_err_t e = ferry_admin_describe_cluster(client, NULL, 0, &md, ctl->timeout_ms, err, sizeof(err));
    if (e != FERRY_ERR_NONE) {
        report_error(ctl, e, "metadata from %s: %s", ctl->brokers, err[0] ? err : ferry_err_str(e));
        rc = EXIT_FAIL;
        goto out;
    }
    size_t nb = ferry_metadata_broker_count(md), nt = ferry_metadata_topic_count(md), np = 0;
    for (size_t t = 0; t < nt; t++)
        np += ferry_metadata_partition_count(md, t);
    int32_t controller = ferry_metadata_controller_id(md);
    /* Per broker: partitions it leads now and partitions it is the preferred (first) replica of; the
     * preferred-leader balancer brings the first towards the second. */
    int64_t *led = calloc(nb ? nb : 1, sizeof(int64_t)), *preferred = calloc(nb ? nb : 1, sizeof(int64_t));
    if (led == NULL || preferred == NULL) {
        report_error(ctl, FERRY_ERR__NO_MEMORY, "out of memory");
        rc = EXIT_FAIL;
        goto out_counts;
    }
    int64_t leaderless = 0;
    for (size_t t = 0; t < nt; t++) {
        for (size_t k = 0; k < ferry_metadata_partition_count(md, t); k++) {
            int32_t l = ferry_metadata_partition_leader(md, t, k);
            int32_t pref = ferry_metadata_partition_replica_count(md, t, k) > 0
                               ? ferry_metadata_partition_replica(md, t, k, 0)
                               : -1;
            leaderless += l < 0;
            for (size_t b = 0; b < nb; b++) {
                led[b] += ferry_metadata_broker_id(md, b) == l;
                preferred[b] += ferry_metadata_broker_id(md, b) == pref;
            }
        }
    }
    if (ctl->format == FMT_JSON) {
        struct jw w;
        jw_doc_begin(&w, stdout);
        jw_kstr(&w, "command", ctl->command);
        jw_kbool(&w, "ok", true);
        jw_kint(&w, "controller_id", controller);
        jw_key(&w, "brokers");
        jw_arr_begin(&w);
        for (size_t b = 0; b < nb; b++) {
            jw_obj_begin(&w);
            jw_kint(&w, "id", ferry_metadata_broker_id(md, b));
            jw_kstr(&w, "host", ferry_metadata_broker_host(md, b));
            jw_kint(&w, "port", ferry_metadata_broker_port(md, b));
            jw_kbool(&w, "controller", ferry_metadata_broker_id(md, b) == controller);
            jw_kint(&w, "leader_count", led[b]);
            jw_kint(&w, "preferred_leader_count", preferred[b]);
            jw_obj_end(&w);
        }
        jw_arr_end(&w);
        jw_kint(&w, "topic_count", (int64_t)nt);
        jw_kint(&w, "partition_count", (int64_t)np);
        jw_kint(&w, "leaderless_partition_count", leaderless);
        jw_doc_end(&w);
    } else {
        printf("CONTROLLER  %" PRId32 "\nTOPICS      %zu\nPARTITIONS  %zu (%" PRId64 " without a leader)\n\n",
               controller, nt, np, leaderless);
        printf("%-6s %-30s %-10s %-8s %s\n", "ID", "HOST:PORT", "ROLE", "LEADERS", "PREFERRED");
        for (size_t b = 0; b < nb; b++) {
            char hp[300];
            snprintf(hp, sizeof(hp), "%s:%d", ferry_metadata_broker_host(md, b), ferry_metadata_broker_port(md, b));
            printf("%-6" PRId32 " %-30s %-10s %-8" PRId64 " %" PRId64 "\n", ferry_metadata_broker_id(md, b), hp,
                   ferry_metadata_broker_id(md, b) == controller ? "controller" : "-", led[b], preferred[b]);
        }
    }
out_counts:
    free(led);
    free(preferred);
out:
    ferry_metadata_destroy(md);
    ferry_client_destroy(client);
    return rc;
}
