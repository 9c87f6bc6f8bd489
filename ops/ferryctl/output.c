/* output.c: ferryctl's JSON writer (RFC 8259 escaping, always-valid UTF-8), UTF-8 check, base64. */
#include "output.h"

#include <assert.h>
#include <inttypes.h>
#include <string.h>

/* Length of the well-formed UTF-8 sequence at s (1..4), or 0 if the bytes there are not one. */
static size_t utf8_seq_len(const uint8_t *s, size_t left)
{
    uint8_t c = s[0];
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        return (left >= 2 && (s[1] & 0xc0) == 0x80) ? 2 : 0;
    if (c >= 0xe0 && c <= 0xef) {
        if (left < 3 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80)
            return 0;
        if (c == 0xe0 && s[1] < 0xa0) /* overlong */
            return 0;
        if (c == 0xed && s[1] >= 0xa0) /* UTF-16 surrogates */
            return 0;
        return 3;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        if (left < 4 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80 || (s[3] & 0xc0) != 0x80)
            return 0;
        if (c == 0xf0 && s[1] < 0x90) /* overlong */
            return 0;
        if (c == 0xf4 && s[1] >= 0x90) /* above U+10FFFF */
            return 0;
        return 4;
    }
    return 0;
}

bool utf8_valid(const void *buf, size_t len)
{
    const uint8_t *s = buf;
    size_t i = 0;
    while (i < len) {
        size_t n = utf8_seq_len(s + i, len - i);
        if (n == 0)
            return false;
        i += n;
    }
    return true;
}

void json_escape_to(FILE *out, const void *buf, size_t len)
{
    const uint8_t *s = buf;
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        switch (c) {
        case '"': fputs("\\\"", out); i++; continue;
        case '\\': fputs("\\\\", out); i++; continue;
        case '\n': fputs("\\n", out); i++; continue;
        case '\r': fputs("\\r", out); i++; continue;
        case '\t': fputs("\\t", out); i++; continue;
        case '\b': fputs("\\b", out); i++; continue;
        case '\f': fputs("\\f", out); i++; continue;
        default: break;
        }
        if (c < 0x20 || c == 0x7f) {
            fprintf(out, "\\u%04x", c);
            i++;
            continue;
        }
        size_t n = utf8_seq_len(s + i, len - i);
        if (n == 0) {
            fputs("\\ufffd", out); /* not UTF-8: replacement character keeps the JSON valid */
            i++;
            continue;
        }
        fwrite(s + i, 1, n, out);
        i += n;
    }
}

void base64_to(FILE *out, const void *buf, size_t len)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const uint8_t *s = buf;
    size_t i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
        char q[4] = {tbl[v >> 18], tbl[(v >> 12) & 63], tbl[(v >> 6) & 63], tbl[v & 63]};
        fwrite(q, 1, 4, out);
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)s[i] << 16;
        char q[4] = {tbl[v >> 18], tbl[(v >> 12) & 63], '=', '='};
        fwrite(q, 1, 4, out);
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8;
        char q[4] = {tbl[v >> 18], tbl[(v >> 12) & 63], tbl[(v >> 6) & 63], '='};
        fwrite(q, 1, 4, out);
    }
}

void write_bytes(FILE *out, const void *buf, size_t len)
{
    if (len)
        fwrite(buf, 1, len, out);
}

void jw_init(struct jw *w, FILE *out)
{
    memset(w, 0, sizeof(*w));
    w->out = out;
    w->depth = 0;
    w->first[0] = true;
}

/* Writes the separator a new element needs at the current level. */
static void jw_pre_value(struct jw *w)
{
    if (w->depth > 0 && w->is_obj[w->depth]) {
        assert(w->have_key && "JSON object value without a key");
        w->have_key = false;
        return;
    }
    if (!w->first[w->depth])
        fputc(',', w->out);
    w->first[w->depth] = false;
}

static void jw_open(struct jw *w, char c, bool obj)
{
    jw_pre_value(w);
    assert(w->depth + 1 < JW_MAX_DEPTH);
    fputc(c, w->out);
    w->depth++;
    w->first[w->depth] = true;
    w->is_obj[w->depth] = obj;
}

static void jw_close(struct jw *w, char c, bool obj)
{
    assert(w->depth > 0 && w->is_obj[w->depth] == obj && !w->have_key);
    (void)obj;
    fputc(c, w->out);
    w->depth--;
}

void jw_obj_begin(struct jw *w) { jw_open(w, '{', true); }
void jw_obj_end(struct jw *w) { jw_close(w, '}', true); }
void jw_arr_begin(struct jw *w) { jw_open(w, '[', false); }
void jw_arr_end(struct jw *w) { jw_close(w, ']', false); }

void jw_key(struct jw *w, const char *key)
{
    assert(w->depth > 0 && w->is_obj[w->depth] && !w->have_key);
    if (!w->first[w->depth])
        fputc(',', w->out);
    w->first[w->depth] = false;
    fputc('"', w->out);
    json_escape_to(w->out, key, strlen(key));
    fputs("\":", w->out);
    w->have_key = true;
}

void jw_strn(struct jw *w, const void *s, size_t len)
{
    jw_pre_value(w);
    fputc('"', w->out);
    json_escape_to(w->out, s, len);
    fputc('"', w->out);
}

void jw_str(struct jw *w, const char *s)
{
    if (!s) {
        jw_null(w);
        return;
    }
    jw_strn(w, s, strlen(s));
}

void jw_base64(struct jw *w, const void *buf, size_t len)
{
    jw_pre_value(w);
    fputc('"', w->out);
    base64_to(w->out, buf, len); /* the base64 alphabet needs no JSON escaping */
    fputc('"', w->out);
}

void jw_int(struct jw *w, int64_t v)
{
    jw_pre_value(w);
    fprintf(w->out, "%" PRId64, v);
}

void jw_bool(struct jw *w, bool v)
{
    jw_pre_value(w);
    fputs(v ? "true" : "false", w->out);
}

void jw_null(struct jw *w)
{
    jw_pre_value(w);
    fputs("null", w->out);
}

void jw_kstr(struct jw *w, const char *key, const char *s)
{
    jw_key(w, key);
    jw_str(w, s);
}

void jw_kint(struct jw *w, const char *key, int64_t v)
{
    jw_key(w, key);
    jw_int(w, v);
}

void jw_kbool(struct jw *w, const char *key, bool v)
{
    jw_key(w, key);
    jw_bool(w, v);
}

void jw_doc_begin(struct jw *w, FILE *out)
{
    jw_init(w, out);
    jw_obj_begin(w);
    jw_kstr(w, "schema", FERRYCTL_SCHEMA);
}

void jw_doc_end(struct jw *w)
{
    jw_obj_end(w);
    assert(w->depth == 0);
    fputc('\n', w->out);
}
