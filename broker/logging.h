/* logging.h: ferryd's leveled logger: one line per event on stderr, as text or JSON. */
#ifndef FERRYD_LOGGING_H
#define FERRYD_LOGGING_H

#include <stdint.h>

#include "config.h"

/* Sets the threshold (enum ferryd_log_level), the format (enum ferryd_log_format) and the broker id
 * every line carries. Before the first call the logger writes info and above as text, broker 0. */
void ferryd_log_setup(int level, int format, int64_t broker_id);

/* 1 if a message at level would be written (to skip building expensive messages). */
int ferryd_log_enabled(int level);

/*
 * Writes one line: text "2024-05-01T12:00:00.123Z INFO broker=0 msg" or JSON
 * {"ts":"...","level":"info","broker_id":0,"msg":"..."}. Messages longer than 2 KiB are cut.
 * Single-threaded use expected (the broker loop); each line is one write(2) so lines never interleave.
 */
void ferryd_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A struct ferry_log_config msg_fn: storage messages go through ferryd_log at their level. */
void ferryd_log_storage_msg(void *opaque, int level, const char *msg);

#define LOG_ERROR(...) ferryd_log(FERRYD_LOG_ERROR, __VA_ARGS__)
#define LOG_WARN(...) ferryd_log(FERRYD_LOG_WARN, __VA_ARGS__)
#define LOG_INFO(...) ferryd_log(FERRYD_LOG_INFO, __VA_ARGS__)
#define LOG_DEBUG(...) ferryd_log(FERRYD_LOG_DEBUG, __VA_ARGS__)

#endif
