/* logging.c: leveled text/JSON logging to stderr for ferryd. */
#include "logging.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int log_level = FERRYD_LOG_INFO;
static int log_format = FERRYD_LOG_TEXT;
static int64_t log_broker_id = 0;

static const char *const level_names[] = {"error", "warn", "info", "debug"};
static const char *const level_upper[] = {"ERROR", "WARN", "INFO", "DEBUG"};

void ferryd_log_setup(int level, int format, int64_t broker_id)
{
    log_level = level;
    log_format = format;
    log_broker_id = broker_id;
}

int ferryd_log_enabled(int level)
{
    return level <= log_level;
}

/* Appends s to out[*pos..cap) as the inside of a JSON string; stops (truncates) when full. */
static void json_escape(char *out, size_t cap, size_t *pos, const char *s)
{
    for (; *s && *pos + 7 < cap; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') {
            out[(*pos)++] = '\\';
            out[(*pos)++] = (char)ch;
        } else if (ch == '\n') {
            out[(*pos)++] = '\\';
            out[(*pos)++] = 'n';
        } else if (ch < 0x20) {
            *pos += (size_t)snprintf(out + *pos, cap - *pos, "\\u%04x", ch);
        } else {
            out[(*pos)++] = (char)ch;
        }
    }
    out[*pos] = '\0';
}

void ferryd_log(int level, const char *fmt, ...)
{
    char msg[2048];
    char line[4608];
    char ts[64];
    struct timespec now;
    struct tm tm;
    va_list ap;

    if (level > log_level)
        return;
    if (level < FERRYD_LOG_ERROR)
        level = FERRYD_LOG_ERROR;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    size_t tl = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + tl, sizeof(ts) - tl, ".%03ldZ", now.tv_nsec / 1000000);

    size_t pos;
    if (log_format == FERRYD_LOG_JSON) {
        pos = (size_t)snprintf(line, sizeof(line), "{\"ts\":\"%s\",\"level\":\"%s\",\"broker_id\":%" PRId64 ",\"msg\":\"",
                               ts, level_names[level], log_broker_id);
        json_escape(line, sizeof(line) - 3, &pos, msg);
        line[pos++] = '"';
        line[pos++] = '}';
    } else {
        int n = snprintf(line, sizeof(line) - 1, "%s %-5s broker=%" PRId64 " %s", ts, level_upper[level],
                         log_broker_id, msg);
        pos = n < 0 ? 0 : (size_t)n < sizeof(line) - 1 ? (size_t)n : sizeof(line) - 2;
    }
    line[pos++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, pos);
    (void)w; /* nowhere to report a failure to write the log */
}

void ferryd_log_storage_msg(void *opaque, int level, const char *msg)
{
    (void)opaque;
    ferryd_log(level, "storage: %s", msg);
}
