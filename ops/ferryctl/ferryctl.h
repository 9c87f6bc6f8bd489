/* ferryctl.h: ferryctl's internal interface: global settings, option parsing, command table, exits. */
#ifndef FERRYCTL_H
#define FERRYCTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ferry.h"
#include "output.h"

/* Exit codes, a stable contract (docs/cli.md). */
enum {
    EXIT_OK = 0,      /* everything succeeded */
    EXIT_FAIL = 1,    /* the operation failed (broker error, connection, delivery failure) */
    EXIT_USAGE = 2,   /* bad flags or arguments; nothing was attempted */
    EXIT_PARTIAL = 3, /* some items succeeded and some failed (see the per-item output) */
};

enum out_format { FMT_TEXT = 0, FMT_JSON = 1 };

#define CTL_DEFAULT_BROKERS "127.0.0.1:9700"
#define CTL_DEFAULT_TIMEOUT_MS 10000
/* -X settings one invocation may carry (flags, env and profile together). */
#define CTL_MAX_SETTINGS 128

struct ctl_setting {
    char *key;
    char *val;
    int source; /* SRC_*: a flag overrides env, env overrides a profile */
};

enum { SRC_PROFILE = 1, SRC_ENV = 2, SRC_FLAG = 3 };

/* Everything the global flags, FERRYCTL_* variables and the profile decide. Strings are owned. */
struct ctl {
    char *brokers;
    int brokers_src;
    char *ca, *cert, *key;
    int ca_src, cert_src, key_src;
    bool plaintext;
    int plaintext_src;
    enum out_format format;
    int format_src;
    int timeout_ms;
    int timeout_src;
    bool verbose;  /* libferry's log to stderr */
    char *profile; /* name of the profile in use, NULL = none */
    struct ctl_setting settings[CTL_MAX_SETTINGS];
    size_t nsettings;
    const char *command; /* "topic create": printed as "command" in JSON */
};

/* ---- option parsing ---- */

/* One flag a command accepts. has_arg: 0 = switch, 1 = takes a value. */
struct optdef {
    const char *lng;     /* "partitions" for --partitions */
    char shrt;           /* 'p' for -p, 0 = none */
    int has_arg;
    int id;              /* command-defined, > 0 */
    const char *argname; /* for help: "N" */
    const char *help;
};

struct parsed_opt {
    int id;
    const char *val; /* NULL for switches */
    const char *name; /* as written, for error messages */
};

/* The result of parsing one command's argv: its own options in order, then positionals. */
struct parsed {
    struct parsed_opt *opts;
    size_t nopts;
    const char **pos;
    size_t npos;
    bool help;
};

/* The command table entry. run returns an EXIT_* code. */
struct command {
    const char *noun;
    const char *verb; /* NULL: the noun alone is the command (produce, consume) */
    const char *args; /* positional synopsis: "NAME" */
    const char *summary;
    const char *details; /* extra help text, may be NULL */
    const struct optdef *opts; /* terminated by {0} */
    int (*run)(struct ctl *ctl, const struct parsed *p);
    bool hidden; /* alias: not listed in the overview */
};

/*
 * Parses argv (after the noun/verb were removed) against cmd's options plus the global ones, which
 * are applied to ctl as they are seen. Returns 0, or EXIT_USAGE with a message printed to stderr.
 * out is freed with parsed_free().
 */
int args_parse(struct ctl *ctl, const struct command *cmd, int argc, char **argv, struct parsed *out);
void parsed_free(struct parsed *p);

/* Global option handling shared with main.c (returns 0 or EXIT_USAGE). */
int ctl_apply_global(struct ctl *ctl, int id, const char *val, int source);
const struct optdef *ctl_global_opts(void);

/* Number parsing: the whole string must be a decimal integer within [min, max]. 0 or -1. */
int parse_i64(const char *s, int64_t min, int64_t max, int64_t *out);

/* Splits "key=value" at the first '='. Returns 0 or -1 (no '=' or empty key). Pointers into a copy. */
int split_kv(const char *s, char **key, char **val);

/* ---- output helpers ---- */
void usage_error(const struct ctl *ctl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Reports a failed operation: text to stderr, or a JSON error document on stdout in json mode. */
void report_error(const struct ctl *ctl, ferry_err_t err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void print_command_help(const struct command *cmd);
/* Writes {"code":..,"name":..,"message":..} as the value of the current key. */
void jw_error(struct jw *w, ferry_err_t err, const char *message);

/* ---- connecting ---- */

/* Builds a libferry configuration from ctl (brokers, TLS files, -X settings). NULL + message on error. */
ferry_conf_t *ctl_make_conf(const struct ctl *ctl, char *errmsg, size_t errlen);
/*
 * Creates a client of the given type from ctl into *out. Returns EXIT_OK, EXIT_USAGE (a bad -X or
 * flag value) or EXIT_FAIL (TLS files, ...), having reported the error itself.
 */
int ctl_connect(const struct ctl *ctl, ferry_type_t type, ferry_client_t **out);
/* Same from a conf built with ctl_make_conf (callbacks set); conf is consumed. */
int ctl_client_new(const struct ctl *ctl, ferry_type_t type, ferry_conf_t *conf, ferry_client_t **out);

void ctl_free(struct ctl *ctl);

/* ---- profiles (profile.c) ---- */
/* Loads the profile named by --profile / FERRYCTL_PROFILE / the current one, at SRC_PROFILE. */
int profile_load(struct ctl *ctl, char *errmsg, size_t errlen);

/* ---- commands ---- */
int cmd_topic_create(struct ctl *ctl, const struct parsed *p);
int cmd_topic_list(struct ctl *ctl, const struct parsed *p);
int cmd_topic_describe(struct ctl *ctl, const struct parsed *p);
int cmd_topic_delete(struct ctl *ctl, const struct parsed *p);
int cmd_produce(struct ctl *ctl, const struct parsed *p);
int cmd_consume(struct ctl *ctl, const struct parsed *p);
int cmd_cluster_info(struct ctl *ctl, const struct parsed *p);
int cmd_group_list(struct ctl *ctl, const struct parsed *p);
int cmd_group_describe(struct ctl *ctl, const struct parsed *p);
int cmd_group_seek(struct ctl *ctl, const struct parsed *p);
int cmd_group_delete(struct ctl *ctl, const struct parsed *p);
int cmd_profile_create(struct ctl *ctl, const struct parsed *p);
int cmd_profile_list(struct ctl *ctl, const struct parsed *p);
int cmd_profile_show(struct ctl *ctl, const struct parsed *p);
int cmd_profile_use(struct ctl *ctl, const struct parsed *p);
int cmd_profile_delete(struct ctl *ctl, const struct parsed *p);

extern const struct optdef topic_create_opts[], topic_list_opts[], topic_describe_opts[],
    topic_delete_opts[], produce_opts[], consume_opts[], cluster_info_opts[], profile_create_opts[],
    profile_plain_opts[], profile_delete_opts[], group_list_opts[], group_describe_opts[], group_seek_opts[],
    group_delete_opts[];

#endif
