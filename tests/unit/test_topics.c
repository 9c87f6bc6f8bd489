/* test_topics.c: the topic registry: name validation, create/delete, persistence across reopen, recovery. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "ferry_errors.h"
#include "topics.h"

static char root[64];
static char err[512];
static uv_loop_t loop;

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static void setup(void)
{
    snprintf(root, sizeof(root), "/tmp/ferryd-topics-XXXXXX");
    cr_assert_not_null(mkdtemp(root));
    cr_assert_eq(uv_loop_init(&loop), 0);
}

static void teardown(void)
{
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(&loop), 0, "every handle and request closed");
    nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(topics, .init = setup, .fini = teardown);

static struct ferry_log_config defaults(void)
{
    return (struct ferry_log_config){.segment_bytes = 1 << 20,
                                     .segment_ms = 3600000,
                                     .retention_ms = -1,
                                     .retention_bytes = -1,
                                     .index_interval_bytes = 4096};
}

static struct ferryd_topics *open_reg(void)
{
    struct ferry_log_config d = defaults();
    struct ferryd_topics *t = NULL;
    int rc = ferryd_topics_open(&loop, root, &d, &t, err, sizeof(err));
    cr_assert_eq(rc, 0, "open: %s", err);
    return t;
}

static int exists(const char *rel)
{
    char p[256];
    snprintf(p, sizeof(p), "%s/%s", root, rel);
    return access(p, F_OK) == 0;
}

static int name_ok(const char *s)
{
    return ferryd_topic_name_check(s, strlen(s), err, sizeof(err));
}

Test(topics, name_validation)
{
    char longest[FERRY_MAX_TOPIC_NAME + 2];
    memset(longest, 'a', sizeof(longest));
    longest[FERRY_MAX_TOPIC_NAME] = '\0';
    cr_assert_eq(name_ok("a"), 0);
    cr_assert_eq(name_ok("orders.v1_EU-2"), 0);
    cr_assert_eq(name_ok("..."), 0, "only '.' and '..' are reserved");
    cr_assert_eq(name_ok(longest), 0, "249 characters are allowed");
    longest[FERRY_MAX_TOPIC_NAME] = 'a';
    longest[FERRY_MAX_TOPIC_NAME + 1] = '\0';
    cr_assert_eq(name_ok(longest), FERRY_ERR_INVALID_TOPIC, "250 characters are not");
    cr_assert_eq(name_ok(""), FERRY_ERR_INVALID_TOPIC);
    cr_assert_eq(name_ok("."), FERRY_ERR_INVALID_TOPIC);
    cr_assert_eq(name_ok(".."), FERRY_ERR_INVALID_TOPIC);
    cr_assert_eq(name_ok("a/b"), FERRY_ERR_INVALID_TOPIC);
    cr_assert(strstr(err, "0x2f") != NULL, "%s", err);
    cr_assert_eq(name_ok("a b"), FERRY_ERR_INVALID_TOPIC);
    cr_assert_eq(name_ok("caf\xc3\xa9"), FERRY_ERR_INVALID_TOPIC, "ASCII only");
    cr_assert_eq(ferryd_topic_name_check("ab\0c", 4, err, sizeof(err)), FERRY_ERR_INVALID_TOPIC, "embedded NUL");
}

Test(topics, persistence_round_trip)
{
    struct ferryd_topics *t = open_reg();
    struct ferryd_topic_config tc = {0};
    cr_assert_eq(ferryd_topic_config_set(&tc, "retention.ms", 12, "1000", 4, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(ferryd_topics_create(t, "orders", 6, 3, &tc, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(ferryd_topics_create(t, "audit", 5, 1, NULL, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(ferryd_topics_count(t), 2);
    cr_assert_str_eq(ferryd_topics_at(t, 0)->name, "audit", "sorted by name");
    cr_assert(exists("topics/orders-2") && exists("meta/topics.msgpack"));
    ferryd_topics_close(t);

    t = open_reg();
    cr_assert_eq(ferryd_topics_count(t), 2);
    struct ferryd_topic *o = ferryd_topics_find(t, "orders", 6);
    cr_assert_not_null(o);
    cr_assert_eq(o->npartitions, 3);
    cr_assert(o->overrides.set[0] && o->overrides.value[0] == 1000);
    cr_assert_eq(o->log_config.retention_ms, 1000, "override applied");
    cr_assert_eq(o->log_config.segment_bytes, 1 << 20, "default kept");
    cr_assert_not_null(ferryd_topic_partition(o, 2));
    cr_assert_null(ferryd_topic_partition(o, 3));
    cr_assert_null(ferryd_topic_partition(o, -1));
    struct ferryd_topic *a = ferryd_topics_find(t, "audit", 5);
    cr_assert(a != NULL && a->npartitions == 1 && !a->overrides.set[0]);
    cr_assert_null(ferryd_topics_find(t, "order", 5), "prefix is not a match");
    ferryd_topics_close(t);
}

Test(topics, create_refusals)
{
    struct ferryd_topics *t = open_reg();
    cr_assert_eq(ferryd_topics_create(t, "x", 1, 1, NULL, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(ferryd_topics_create(t, "x", 1, 1, NULL, err, sizeof(err)), FERRY_ERR_TOPIC_ALREADY_EXISTS);
    cr_assert_eq(ferryd_topics_create(t, "y", 1, 0, NULL, err, sizeof(err)), FERRY_ERR_INVALID_PARTITIONS);
    cr_assert_eq(ferryd_topics_create(t, "y", 1, FERRY_MAX_PARTITIONS_PER_TOPIC + 1, NULL, err, sizeof(err)),
                 FERRY_ERR_INVALID_PARTITIONS);
    cr_assert_eq(ferryd_topics_create(t, "a/b", 3, 1, NULL, err, sizeof(err)), FERRY_ERR_INVALID_TOPIC);
    cr_assert_eq(ferryd_topics_count(t), 1);
    cr_assert(!exists("topics/y-0"), "a refused topic leaves nothing behind");

    struct ferryd_topic_config tc = {0};
    cr_assert_eq(ferryd_topic_config_set(&tc, "segment.bytes", 13, "100", 3, err, sizeof(err)),
                 FERRY_ERR_INVALID_CONFIG);
    cr_assert_eq(ferryd_topic_config_set(&tc, "node.id", 7, "1", 1, err, sizeof(err)), FERRY_ERR_INVALID_CONFIG);
    ferryd_topics_close(t);
}

Test(topics, delete_persists_and_removes_dirs)
{
    struct ferryd_topics *t = open_reg();
    cr_assert_eq(ferryd_topics_create(t, "gone", 4, 2, NULL, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(ferryd_topics_create(t, "gone-0", 6, 1, NULL, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(ferryd_topics_delete(t, "gone", 4, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(ferryd_topics_delete(t, "gone", 4, err, sizeof(err)), FERRY_ERR_UNKNOWN_TOPIC_OR_PARTITION);
    cr_assert(!exists("topics/gone-0") && !exists("topics/gone-1") && !exists("meta/del.gone"));
    cr_assert(exists("topics/gone-0-0"), "topic 'gone-0' is another topic");
    ferryd_topics_close(t);

    t = open_reg();
    cr_assert_null(ferryd_topics_find(t, "gone", 4));
    cr_assert_not_null(ferryd_topics_find(t, "gone-0", 6));
    cr_assert_eq(ferryd_topics_create(t, "gone", 4, 1, NULL, err, sizeof(err)), 0, "name reusable: %s", err);
    ferryd_topics_close(t);
}

Test(topics, interrupted_deletion_is_finished_at_open)
{
    struct ferryd_topics *t = open_reg();
    cr_assert_eq(ferryd_topics_create(t, "half", 4, 2, NULL, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(ferryd_topics_create(t, "keep", 4, 1, NULL, err, sizeof(err)), 0, "%s", err);
    ferryd_topics_close(t);

    /* A crash right after the marker was written: the topic is still in topics.msgpack. */
    char p[256];
    snprintf(p, sizeof(p), "%s/meta/del.half", root);
    int fd = open(p, O_WRONLY | O_CREAT, 0644);
    cr_assert(fd >= 0);
    close(fd);

    t = open_reg();
    cr_assert_null(ferryd_topics_find(t, "half", 4));
    cr_assert_not_null(ferryd_topics_find(t, "keep", 4));
    cr_assert(!exists("topics/half-0") && !exists("topics/half-1") && !exists("meta/del.half"));
    ferryd_topics_close(t);

    t = open_reg();
    cr_assert_eq(ferryd_topics_count(t), 1, "the finished deletion was persisted");
    ferryd_topics_close(t);
}

Test(topics, leftover_partition_dir_is_emptied_on_create)
{
    struct ferryd_topics *t = open_reg();
    char p[256];
    snprintf(p, sizeof(p), "%s/topics/fresh-0", root);
    cr_assert_eq(mkdir(p, 0755), 0);
    snprintf(p, sizeof(p), "%s/topics/fresh-0/junk", root);
    int fd = open(p, O_WRONLY | O_CREAT, 0644);
    cr_assert(fd >= 0);
    close(fd);
    cr_assert_eq(ferryd_topics_create(t, "fresh", 5, 1, NULL, err, sizeof(err)), 0, "%s", err);
    cr_assert(!exists("topics/fresh-0/junk"));
    ferryd_topics_close(t);
}

Test(topics, corrupt_metadata_refused_with_file_name)
{
    struct ferryd_topics *t = open_reg();
    ferryd_topics_close(t);
    char p[256];
    snprintf(p, sizeof(p), "%s/meta/topics.msgpack", root);
    FILE *f = fopen(p, "w");
    cr_assert_not_null(f);
    fputs("\x82\xa7version", f); /* a map cut short */
    fclose(f);
    struct ferry_log_config d = defaults();
    cr_assert_neq(ferryd_topics_open(&loop, root, &d, &t, err, sizeof(err)), 0);
    cr_assert(strstr(err, "topics.msgpack") != NULL, "%s", err);
}
