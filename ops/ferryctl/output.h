/* output.h: ferryctl's printers: a streaming JSON writer with strict escaping, UTF-8 checks, base64. */
#ifndef FERRYCTL_OUTPUT_H
#define FERRYCTL_OUTPUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Every top-level JSON object ferryctl prints carries "schema": FERRYCTL_SCHEMA (docs/cli.md). */
#define FERRYCTL_SCHEMA "ferry.cli/v1"

/* Nesting the JSON writer supports; ferryctl's deepest shape is 4 levels. */
#define JW_MAX_DEPTH 16

/*
 * A JSON writer that streams to a FILE. It tracks commas itself: callers emit keys and values in
 * order. Strings are escaped per RFC 8259; bytes that are not valid UTF-8 become U+FFFD, so the
 * output is always valid JSON. Misuse (a value without a key inside an object, unbalanced ends)
 * is a programmer error and asserts.
 */
struct jw {
    FILE *out;
    int depth;
    bool first[JW_MAX_DEPTH];  /* no element written yet at this level */
    bool is_obj[JW_MAX_DEPTH]; /* level is an object (keys expected) */
    bool have_key;             /* a key was written, its value is next */
};

void jw_init(struct jw *w, FILE *out);
void jw_obj_begin(struct jw *w);
void jw_obj_end(struct jw *w);
void jw_arr_begin(struct jw *w);
void jw_arr_end(struct jw *w);
void jw_key(struct jw *w, const char *key);
void jw_str(struct jw *w, const char *s); /* NULL writes null */
void jw_strn(struct jw *w, const void *s, size_t len);
void jw_int(struct jw *w, int64_t v);
/* A string value holding the base64 of buf. */
void jw_base64(struct jw *w, const void *buf, size_t len);
void jw_bool(struct jw *w, bool v);
void jw_null(struct jw *w);
/* Opens the top-level object of one ferryctl JSON document: {"schema":"ferry.cli/v1" ... */
void jw_doc_begin(struct jw *w, FILE *out);
/* Closes it and writes the newline that ends a JSON line. */
void jw_doc_end(struct jw *w);

/* Convenience: key + value. */
void jw_kstr(struct jw *w, const char *key, const char *s);
void jw_kint(struct jw *w, const char *key, int64_t v);
void jw_kbool(struct jw *w, const char *key, bool v);

/* Writes s as the body of a JSON string (no quotes), escaped, to out. */
void json_escape_to(FILE *out, const void *s, size_t len);

/* 1 if buf[0..len) is well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
bool utf8_valid(const void *buf, size_t len);

/* Standard base64 (RFC 4648, with padding) of buf written to out. */
void base64_to(FILE *out, const void *buf, size_t len);

/* Writes bytes to out as text for a terminal/pipe: as is (raw). */
void write_bytes(FILE *out, const void *buf, size_t len);

#endif
