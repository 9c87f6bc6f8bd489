/* test_config.c: ferryd's configuration table: defaults, file parsing, overrides, refusals, generated docs. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "proto/limits.h"

static struct ferryd_config C;
static char path[64];
static char err[1024];

static void setup(void)
{
    cr_assert_eq(ferryd_config_init(&C, err, sizeof(err)), 0, "%s", err);
    path[0] = '\0';
    err[0] = '\0';
}

static void teardown(void)
{
    ferryd_config_free(&C);
    if (path[0])
        unlink(path);
}

TestSuite(config, .init = setup, .fini = teardown);

/* Writes text to a fresh temp file whose name is left in `path`. */
static void write_conf(const char *text)
{
    snprintf(path, sizeof(path), "/tmp/ferryd-conf-XXXXXX");
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

/* Every key the broker documents (the assignment's list); the generated docs must name each one. */
static const char *const all_keys[] = {
    "node.id", "listen", "advertised.listen", "data.dir", "security.protocol", "tls.cert.file", "tls.key.file",
    "tls.ca.file", "tls.client.auth", "tls.min.version", "max.connections", "connections.handshake.timeout.ms",
    "connections.max.idle.ms", "num.partitions", "segment.bytes",
    "segment.ms", "retention.ms", "retention.bytes", "retention.check.interval.ms", "log.index.interval.bytes",
    "batch.max.bytes", "flush.before.ack", "ready.file", "cluster.id", "peer.listen", "cluster.members",
    "peer.security.protocol", "peer.tls.cert.file", "peer.tls.key.file", "peer.tls.client.cert.file",
    "peer.tls.client.key.file", "offsets.topic.num.partitions", "offsets.topic.replication.factor",
    "group.min.session.timeout.ms", "group.max.session.timeout.ms", "group.heartbeat.interval.ms",
    "raft.snapshot.threshold", "raft.snapshot.trailing", "raft.quiescence.enable", "raft.election.timeout.ms",
    "raft.heartbeat.interval.ms",
    "leader.rebalance.enable", "leader.rebalance.interval.ms",
    "log.level", "log.format", "raft.segment.bytes", "raft.snapshot.bytes",
};

Test(config, defaults)
{
    cr_assert_eq(C.node_id, 0);
    cr_assert_str_eq(C.listen, "127.0.0.1:9700");
    cr_assert_str_eq(C.advertised_listen, "");
    cr_assert_str_eq(C.data_dir, "./data");
    cr_assert_eq(C.security_protocol, FERRYD_SECURITY_TLS);
    cr_assert_eq(C.tls_client_auth, FERRYD_CLIENT_AUTH_NONE);
    cr_assert_eq(C.tls_min_version, FERRYD_TLS_13);
    cr_assert_eq(C.max_connections, 1024);
    cr_assert_eq(C.num_partitions, 1);
    cr_assert_eq(C.segment_bytes, 1024LL * 1024 * 1024);
    cr_assert_eq(C.segment_ms, 7LL * 24 * 3600 * 1000);
    cr_assert_eq(C.retention_ms, 7LL * 24 * 3600 * 1000);
    cr_assert_eq(C.retention_bytes, -1);
    cr_assert_eq(C.retention_check_interval_ms, 300000);
    cr_assert_eq(C.log_index_interval_bytes, 4096);
    cr_assert_eq(C.batch_max_bytes, FERRY_MAX_BATCH_BYTES);
    cr_assert_eq(C.flush_before_ack, 1);
    cr_assert_str_eq(C.ready_file, "");
    cr_assert_eq(C.log_level, FERRYD_LOG_INFO);
    cr_assert_eq(C.log_format, FERRYD_LOG_TEXT);
}

Test(config, default_tls_needs_cert_and_key)
{
    cr_assert_neq(ferryd_config_validate(&C, err, sizeof(err)), 0);
    cr_assert(strstr(err, "tls.cert.file") != NULL, "%s", err);
    cr_assert_eq(ferryd_config_set(&C, "security.protocol", "plaintext", err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(ferryd_config_validate(&C, err, sizeof(err)), 0, "%s", err);
}

Test(config, mutual_tls_needs_ca)
{
    cr_assert_eq(ferryd_config_set(&C, "tls.cert.file", "/c.pem", err, sizeof(err)), 0);
    cr_assert_eq(ferryd_config_set(&C, "tls.key.file", "/k.pem", err, sizeof(err)), 0);
    cr_assert_eq(ferryd_config_validate(&C, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(ferryd_config_set(&C, "tls.client.auth", "required", err, sizeof(err)), 0);
    cr_assert_neq(ferryd_config_validate(&C, err, sizeof(err)), 0);
    cr_assert(strstr(err, "tls.ca.file") != NULL, "%s", err);
}

Test(config, file_parsing)
{
    write_conf("# broker settings\n"
               "\n"
               "   node.id   =  7   \n"
               "listen=127.0.0.1:0\n"
               "data.dir = /var/lib/ferry#1   # '#' inside a value is kept\n"
               "segment.bytes = 64MiB\n"
               "retention.ms = 3d\n"
               "retention.bytes = -1\n"
               "flush.before.ack = false\n"
               "security.protocol = plaintext\n"
               "log.format = json\n"
               "\t# indented comment\n");
    cr_assert_eq(ferryd_config_load_file(&C, path, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(C.node_id, 7);
    cr_assert_str_eq(C.listen, "127.0.0.1:0");
    cr_assert_str_eq(C.data_dir, "/var/lib/ferry#1");
    cr_assert_eq(C.segment_bytes, 64LL * 1024 * 1024);
    cr_assert_eq(C.retention_ms, 3LL * 24 * 3600 * 1000);
    cr_assert_eq(C.retention_bytes, -1);
    cr_assert_eq(C.flush_before_ack, 0);
    cr_assert_eq(C.security_protocol, FERRYD_SECURITY_PLAINTEXT);
    cr_assert_eq(C.log_format, FERRYD_LOG_JSON);
}

Test(config, set_overrides_file)
{
    write_conf("segment.bytes = 8192\nnum.partitions = 3\n");
    cr_assert_eq(ferryd_config_load_file(&C, path, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(ferryd_config_set_arg(&C, "segment.bytes=16384", err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(ferryd_config_set_arg(&C, " listen = 127.0.0.1:9999 ", err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(C.segment_bytes, 16384);
    cr_assert_eq(C.num_partitions, 3);
    cr_assert_str_eq(C.listen, "127.0.0.1:9999");
}

Test(config, unknown_key_in_file_names_key_and_line)
{
    write_conf("node.id = 1\n# c\nsegment.byte = 4096\n");
    cr_assert_neq(ferryd_config_load_file(&C, path, err, sizeof(err)), 0);
    cr_assert(strstr(err, "segment.byte'") != NULL, "%s", err);
    char where[80];
    snprintf(where, sizeof(where), "%s:3:", path);
    cr_assert(strstr(err, where) != NULL, "expected '%s' in '%s'", where, err);
}

Test(config, unknown_key_in_set_names_key)
{
    cr_assert_neq(ferryd_config_set_arg(&C, "no.such.key=1", err, sizeof(err)), 0);
    cr_assert(strstr(err, "no.such.key") != NULL, "%s", err);
    cr_assert_neq(ferryd_config_set_arg(&C, "node.id", err, sizeof(err)), 0, "no '=' must be refused");
}

Test(config, out_of_range_refused)
{
    cr_assert_neq(ferryd_config_set(&C, "segment.bytes", "4095", err, sizeof(err)), 0);
    cr_assert(strstr(err, "segment.bytes") && strstr(err, "4096"), "%s", err);
    cr_assert_eq(C.segment_bytes, 1024LL * 1024 * 1024, "a refused value leaves the old one");
    cr_assert_eq(ferryd_config_set(&C, "segment.bytes", "4096", err, sizeof(err)), 0, "the minimum itself is fine");

    char big[32];
    snprintf(big, sizeof(big), "%u", FERRY_MAX_BATCH_BYTES + 1);
    cr_assert_neq(ferryd_config_set(&C, "batch.max.bytes", big, err, sizeof(err)), 0);
    cr_assert(strstr(err, "batch.max.bytes") && strstr(err, "maximum"), "%s", err);
    cr_assert_neq(ferryd_config_set(&C, "retention.ms", "-2", err, sizeof(err)), 0);
    cr_assert_eq(ferryd_config_set(&C, "retention.ms", "-1", err, sizeof(err)), 0, "-1 = forever");
    cr_assert_neq(ferryd_config_set(&C, "max.connections", "0", err, sizeof(err)), 0);
    cr_assert_neq(ferryd_config_set(&C, "listen", "127.0.0.1:65536", err, sizeof(err)), 0);
    cr_assert(strstr(err, "listen") != NULL, "%s", err);
    cr_assert_neq(ferryd_config_set(&C, "segment.ms", "99999999999999999999", err, sizeof(err)), 0);
}

Test(config, out_of_range_in_file_names_line)
{
    write_conf("\n\nnum.partitions = 0\n");
    cr_assert_neq(ferryd_config_load_file(&C, path, err, sizeof(err)), 0);
    cr_assert(strstr(err, ":3:") && strstr(err, "num.partitions"), "%s", err);
}

Test(config, type_errors_refused)
{
    cr_assert_neq(ferryd_config_set(&C, "flush.before.ack", "yes", err, sizeof(err)), 0);
    cr_assert(strstr(err, "flush.before.ack") && strstr(err, "bool"), "%s", err);
    cr_assert_neq(ferryd_config_set(&C, "node.id", "12abc", err, sizeof(err)), 0);
    cr_assert(strstr(err, "node.id") != NULL, "%s", err);
    cr_assert_neq(ferryd_config_set(&C, "node.id", "", err, sizeof(err)), 0);
    cr_assert_neq(ferryd_config_set(&C, "node.id", "1KiB", err, sizeof(err)), 0, "ints take no unit");
    cr_assert_neq(ferryd_config_set(&C, "security.protocol", "ssl", err, sizeof(err)), 0);
    cr_assert(strstr(err, "tls|plaintext") != NULL, "%s", err);
    cr_assert_neq(ferryd_config_set(&C, "segment.bytes", "1 parsec", err, sizeof(err)), 0);
    cr_assert_neq(ferryd_config_set(&C, "segment.ms", "5 GiB", err, sizeof(err)), 0, "a size unit is not a duration");
    cr_assert_neq(ferryd_config_set(&C, "listen", "localhost", err, sizeof(err)), 0);
    cr_assert_neq(ferryd_config_set(&C, "listen", "localhost:9700", err, sizeof(err)), 0, "listen must be numeric");
    cr_assert_eq(ferryd_config_set(&C, "listen", "[::1]:9700", err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(ferryd_config_set(&C, "segment.ms", "2h", err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(C.segment_ms, 2 * 3600 * 1000);
}

Test(config, malformed_file_lines_refused)
{
    write_conf("node.id 3\n");
    cr_assert_neq(ferryd_config_load_file(&C, path, err, sizeof(err)), 0);
    cr_assert(strstr(err, ":1:") != NULL, "%s", err);
}

Test(config, duplicate_key_in_file_refused)
{
    write_conf("node.id = 1\nnode.id = 2\n");
    cr_assert_neq(ferryd_config_load_file(&C, path, err, sizeof(err)), 0);
    cr_assert(strstr(err, "node.id") && strstr(err, ":2:") && strstr(err, "line 1"), "%s", err);
}

Test(config, missing_file_refused)
{
    cr_assert_neq(ferryd_config_load_file(&C, "/nonexistent/ferryd.conf", err, sizeof(err)), 0);
    cr_assert(strstr(err, "/nonexistent/ferryd.conf") != NULL, "%s", err);
}

Test(config, docs_list_every_key)
{
    char *doc = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&doc, &len);
    cr_assert_not_null(f);
    ferryd_config_print_doc(f);
    fclose(f);
    cr_assert(strstr(doc, "| key | type | default |") != NULL);
    for (size_t i = 0; i < sizeof(all_keys) / sizeof(all_keys[0]); i++) {
        char cell[80];
        snprintf(cell, sizeof(cell), "| `%s` |", all_keys[i]);
        cr_assert(strstr(doc, cell) != NULL, "docs lack %s", all_keys[i]);
    }
    cr_assert(strstr(doc, "WEAKER") != NULL, "flush.before.ack=false must be documented as weaker");
    /* one table row per key: no undocumented extra settings either */
    size_t rows = 0;
    for (const char *p = doc; (p = strstr(p, "\n| `")) != NULL; p++)
        rows++;
    cr_assert_eq(rows, sizeof(all_keys) / sizeof(all_keys[0]));
    free(doc);
}

Test(config, print_round_trips_through_set)
{
    char *text = NULL;
    size_t len = 0;
    cr_assert_eq(ferryd_config_set(&C, "segment.bytes", "8192", err, sizeof(err)), 0);
    cr_assert_eq(ferryd_config_set(&C, "log.level", "debug", err, sizeof(err)), 0);
    FILE *f = open_memstream(&text, &len);
    ferryd_config_print(&C, f);
    fclose(f);
    write_conf(text);
    free(text);

    struct ferryd_config d;
    cr_assert_eq(ferryd_config_init(&d, err, sizeof(err)), 0);
    cr_assert_eq(ferryd_config_load_file(&d, path, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(d.segment_bytes, 8192);
    cr_assert_eq(d.log_level, FERRYD_LOG_DEBUG);
    cr_assert_str_eq(d.listen, C.listen);
    ferryd_config_free(&d);
}

Test(config, topic_values)
{
    int64_t v = 0;
    cr_assert_eq(ferryd_config_topic_value("retention.ms", "1000", &v, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(v, 1000);
    cr_assert_eq(ferryd_config_topic_value("retention.bytes", "-1", &v, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(v, -1);
    cr_assert_neq(ferryd_config_topic_value("segment.bytes", "10", &v, err, sizeof(err)), 0);
    cr_assert(strstr(err, "segment.bytes") != NULL, "%s", err);
    cr_assert_neq(ferryd_config_topic_value("node.id", "1", &v, err, sizeof(err)), 0, "not a topic setting");
    cr_assert_neq(ferryd_config_topic_value("bogus", "1", &v, err, sizeof(err)), 0);
}

Test(config, connection_limits)
{
    cr_assert_eq(C.connections_handshake_timeout_ms, 10000);
    cr_assert_eq(C.connections_max_idle_ms, 600000);
    cr_assert_eq(ferryd_config_set(&C, "max.connections", "65536", err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(ferryd_config_set(&C, "max.connections", "65537", err, sizeof(err)), -1,
                 "max.connections is capped by FERRY_MAX_CONNECTIONS");
    cr_assert_eq(ferryd_config_set(&C, "connections.handshake.timeout.ms", "250", err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(C.connections_handshake_timeout_ms, 250);
}

Test(config, cluster_members_are_parsed_and_checked)
{
    char why[256];
    struct ferryd_member m[FERRYD_MAX_MEMBERS];
    int n = ferryd_parse_members("0@127.0.0.1:9800,1@broker-1.ferry:9801,2@[::1]:9802", m, FERRYD_MAX_MEMBERS, err,
                                 sizeof(err));
    cr_assert_eq(n, 3, "%s", why);
    cr_assert_eq(m[1].id, 1);
    cr_assert_str_eq(m[1].host, "broker-1.ferry");
    cr_assert_eq(m[1].port, 9801);
    cr_assert_str_eq(m[2].host, "::1");
    cr_assert_eq(ferryd_parse_members("", m, FERRYD_MAX_MEMBERS, why, sizeof(why)), 0);
    cr_assert_eq(ferryd_parse_members("0@h:1,0@h:2", m, FERRYD_MAX_MEMBERS, why, sizeof(why)), -1);
    cr_assert(strstr(why, "twice") != NULL, "%s", why);
    cr_assert_eq(ferryd_parse_members("x@h:1", m, FERRYD_MAX_MEMBERS, why, sizeof(why)), -1);
    cr_assert_eq(ferryd_parse_members("0@h:0", m, FERRYD_MAX_MEMBERS, why, sizeof(why)), -1);
    cr_assert_eq(ferryd_parse_members("0@h:1,", m, FERRYD_MAX_MEMBERS, why, sizeof(why)), 1);
    cr_assert_eq(ferryd_config_set(&C, "cluster.members", "0@h", why, sizeof(why)), -1);
    /* a node.id that is not one of the members is a joiner: accepted (the peer TLS files are still required) */
    cr_assert_eq(ferryd_config_set(&C, "security.protocol", "plaintext", why, sizeof(why)), 0);
    cr_assert_eq(ferryd_config_set(&C, "cluster.members", "1@127.0.0.1:9801,2@127.0.0.1:9802", why, sizeof(why)), 0);
    cr_assert_eq(ferryd_config_validate(&C, why, sizeof(why)), -1);
    cr_assert(strstr(why, "peer.security.protocol") != NULL, "%s", why);
    cr_assert_eq(ferryd_config_set(&C, "cluster.members", "0@127.0.0.1:9800", why, sizeof(why)), 0);
    /* the peer port is mutual TLS unless set to plaintext explicitly */
    cr_assert_eq(ferryd_config_validate(&C, why, sizeof(why)), -1);
    cr_assert(strstr(why, "peer.security.protocol") != NULL, "%s", why);
    cr_assert_eq(ferryd_config_set(&C, "peer.security.protocol", "plaintext", why, sizeof(why)), 0);
    cr_assert_eq(ferryd_config_validate(&C, why, sizeof(why)), 0, "%s", why);
}
