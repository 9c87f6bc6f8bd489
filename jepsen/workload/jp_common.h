/* jp_common.h: shared pieces of the Jepsen workload programs: history lines, clock, client options. */
#ifndef JP_COMMON_H
#define JP_COMMON_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "ferry.h"

/*
 * History format (jepsen/checker, docs/jepsen-checker.md): JSON Lines, one operation per line,
 * "time" = CLOCK_MONOTONIC seconds, the same clock in every namespace and never faked.
 * Every line is built in memory and written with one fwrite + fflush, so a process killed
 * mid-run leaves only whole lines behind.
 */
struct jp_hist {
    FILE *out;   /* the history file (or stdout) */
    int owned;   /* 1 if out must be fclose'd */
    FILE *line;  /* memstream of the line being built, NULL between lines */
    char *buf;
    size_t buf_len;
    int failed;  /* a write failed: the history is incomplete */
};

/* Opens path for appending ("-" = stdout). Returns 0 or -1 with errmsg filled. */
int jp_hist_open(struct jp_hist *h, const char *path, char *errmsg, size_t errmsg_len);
/* Flushes and closes. Returns 0, or -1 if any write failed (errmsg filled). */
int jp_hist_close(struct jp_hist *h, char *errmsg, size_t errmsg_len);
/*
 * Starts a line: returns the stream to fprintf the rest of the object into, already holding
 * {"time":T,"process":"P","type":"TYPE","f":"F" (no closing brace). NULL when out of memory
 * (the line is then dropped and h->failed set). jp_line_end adds "}\n" and writes the line.
 */
FILE *jp_line_begin(struct jp_hist *h, double t, const char *process, const char *type, const char *f);
void jp_line_end(struct jp_hist *h);

/* CLOCK_MONOTONIC in seconds. */
double jp_now(void);
void jp_sleep_ms(int ms);

/* Writes bytes as a JSON string, quotes included (NULL = null). Bytes outside printable ASCII
 * are written as \u00XX so any byte string round-trips as a code point per byte. */
void jp_json_str(FILE *f, const void *s, size_t len);
/* "CODE: message" of an error, as history lines carry it, JSON-quoted. */
void jp_json_err(FILE *f, ferry_err_t err, const char *msg);

/* ---- connection options shared by every client program ---- */
#define JP_MAX_SETS 32
struct jp_conn {
    const char *brokers; /* --brokers host:port,... (required) */
    const char *ca;      /* --ca FILE: TLS, verified against this CA */
    const char *cert;    /* --cert FILE / --key FILE: client certificate (mutual TLS) */
    const char *key;
    int plaintext;       /* --plaintext */
    int debug;           /* --debug: libferry logs on stderr */
    const char *sets[JP_MAX_SETS]; /* --set key=value, applied last */
    int n_sets;
};

/* getopt_long option values of the shared options; programs use values below JP_OPT_BASE. */
enum {
    JP_OPT_BASE = 1000,
    JP_OPT_BROKERS,
    JP_OPT_CA,
    JP_OPT_CERT,
    JP_OPT_KEY,
    JP_OPT_PLAINTEXT,
    JP_OPT_SET,
    JP_OPT_DEBUG,
};
#define JP_CONN_LONGOPTS                                                                                          \
    {"brokers", required_argument, NULL, JP_OPT_BROKERS}, {"ca", required_argument, NULL, JP_OPT_CA},             \
        {"cert", required_argument, NULL, JP_OPT_CERT}, {"key", required_argument, NULL, JP_OPT_KEY},             \
        {"plaintext", no_argument, NULL, JP_OPT_PLAINTEXT}, {"set", required_argument, NULL, JP_OPT_SET},         \
        {"debug", no_argument, NULL, JP_OPT_DEBUG}
#define JP_CONN_USAGE                                                                                             \
    "  --brokers H:P,...   bootstrap servers (required)\n"                                                        \
    "  --ca FILE           CA file to verify the brokers with (TLS is the default)\n"                  \
    "  --cert FILE --key FILE   client certificate for mutual TLS\n"                                              \
    "  --plaintext         no TLS\n"                                                                              \
    "  --set KEY=VALUE     any libferry setting, applied after the program's defaults (repeatable)\n"            \
    "  --debug             libferry's logs on stderr\n"

/* Handles one shared option. Returns 1 if opt was one, 0 if not, -1 on a bad value (errmsg). */
int jp_conn_opt(struct jp_conn *c, int opt, const char *arg, char *errmsg, size_t errmsg_len);
/*
 * A conf for c: bootstrap.servers, TLS settings, then defaults[] ("key", "value", ..., NULL),
 * then every --set. NULL with errmsg on error.
 */
ferry_conf_t *jp_conf_new(const struct jp_conn *c, const char *const *defaults, char *errmsg, size_t errmsg_len);

/* Parses a decimal integer in [min, max]; returns 0 or -1. */
int jp_parse_i64(const char *s, int64_t min, int64_t max, int64_t *out);
/* Parses a non-negative number of seconds ("2.5"); returns 0 or -1. */
int jp_parse_seconds(const char *s, double max, double *out);

/* SIGINT/SIGTERM set jp_stop (installed by jp_install_signals). */
extern volatile sig_atomic_t jp_stop;
void jp_install_signals(void);

#endif
