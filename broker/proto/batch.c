/* batch.c: record batch header codec, validation, builder (with compression) and reader. */
#include "proto/batch.h"

#include <errno.h>
#include <lz4frame.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "ferry_errors.h"
#include "proto/limits.h"
#include "proto/varint.h"

/* Smallest possible record: length, attributes, timestamp_delta, offset_delta, key_length,
 * value_length, header_count, one byte each. Lets validation bound record_count by area size. */
#define MIN_RECORD_BYTES 7
#define ZSTD_DEFAULT_LEVEL 3
/* zstd window cap for decoding: 2^26 = 64 MiB = FERRY_MAX_DECOMPRESSED_BYTES. */
#define ZSTD_WINDOW_LOG_MAX 26

__attribute__((format(printf, 3, 4))) static void set_err(char *errmsg, size_t errmsg_len, const char *fmt, ...)
{
    if (!errmsg || !errmsg_len)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errmsg, errmsg_len, fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------------------------------------ */
/* header                                                                                      */

void ferry_batch_header_encode(const struct ferry_batch_header *h, uint8_t out[FERRY_BATCH_HEADER_SIZE])
{
    ferry_be64_put(out + 0, (uint64_t)h->base_offset);
    ferry_be32_put(out + 8, h->batch_length);
    ferry_be32_put(out + 12, h->leader_epoch);
    ferry_be32_put(out + 16, h->crc);
    ferry_be16_put(out + 20, h->magic);
    ferry_be16_put(out + 22, h->attributes);
    ferry_be32_put(out + 24, h->last_offset_delta);
    ferry_be64_put(out + 28, (uint64_t)h->first_timestamp);
    ferry_be64_put(out + 36, (uint64_t)h->max_timestamp);
    ferry_be64_put(out + 44, (uint64_t)h->producer_id);
    ferry_be16_put(out + 52, (uint16_t)h->producer_epoch);
    ferry_be32_put(out + 54, (uint32_t)h->base_sequence);
    ferry_be32_put(out + 58, h->record_count);
    ferry_be16_put(out + 62, 0);
}

void ferry_batch_header_decode(const uint8_t in[FERRY_BATCH_HEADER_SIZE], struct ferry_batch_header *h)
{
    h->base_offset = (int64_t)ferry_be64_get(in + 0);
    h->batch_length = ferry_be32_get(in + 8);
    h->leader_epoch = ferry_be32_get(in + 12);
    h->crc = ferry_be32_get(in + 16);
    h->magic = ferry_be16_get(in + 20);
    h->attributes = ferry_be16_get(in + 22);
    h->last_offset_delta = ferry_be32_get(in + 24);
    h->first_timestamp = (int64_t)ferry_be64_get(in + 28);
    h->max_timestamp = (int64_t)ferry_be64_get(in + 36);
    h->producer_id = (int64_t)ferry_be64_get(in + 44);
    h->producer_epoch = (int16_t)ferry_be16_get(in + 52);
    h->base_sequence = (int32_t)ferry_be32_get(in + 54);
    h->record_count = ferry_be32_get(in + 58);
}

void ferry_batch_set_base_offset(uint8_t *batch, int64_t base_offset)
{
    ferry_be64_put(batch + FERRY_BATCH_OFF_BASE_OFFSET, (uint64_t)base_offset);
}

void ferry_batch_set_leader_epoch(uint8_t *batch, uint32_t epoch)
{
    ferry_be32_put(batch + FERRY_BATCH_OFF_LEADER_EPOCH, epoch);
}

int ferry_batch_peek_length(const uint8_t *buf, size_t len, size_t *batch_len)
{
    if (len < FERRY_BATCH_OFF_LENGTH + 4)
        return -1;
    *batch_len = ferry_be32_get(buf + FERRY_BATCH_OFF_LENGTH);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* validation                                                                                  */

int ferry_batch_validate(const uint8_t *buf, size_t len, size_t max_bytes, struct ferry_batch_header *out,
                         char *errmsg, size_t errmsg_len)
{
    struct ferry_batch_header h;

    if (len < FERRY_BATCH_HEADER_SIZE) {
        set_err(errmsg, errmsg_len, "batch of %zu bytes is shorter than its %d-byte header", len,
                FERRY_BATCH_HEADER_SIZE);
        return FERRY_ERR_CORRUPT_BATCH;
    }
    ferry_batch_header_decode(buf, &h);
    if (out)
        *out = h;
    if (h.batch_length != len) {
        set_err(errmsg, errmsg_len, "batch_length %u does not match the %zu bytes received", h.batch_length, len);
        return FERRY_ERR_CORRUPT_BATCH;
    }
    if (len > max_bytes) {
        set_err(errmsg, errmsg_len, "batch of %zu bytes exceeds the limit of %zu", len, max_bytes);
        return FERRY_ERR_BATCH_TOO_LARGE;
    }
    if (h.magic != FERRY_BATCH_MAGIC) {
        set_err(errmsg, errmsg_len, "batch magic %u, expected %d", h.magic, FERRY_BATCH_MAGIC);
        return FERRY_ERR_CORRUPT_BATCH;
    }
    uint32_t crc = ferry_crc32c(0, buf + FERRY_BATCH_CRC_START, len - FERRY_BATCH_CRC_START);
    if (crc != h.crc) {
        set_err(errmsg, errmsg_len, "batch CRC32C mismatch: header 0x%08x, computed 0x%08x", h.crc, crc);
        return FERRY_ERR_CORRUPT_BATCH;
    }
    if (h.attributes & ~FERRY_BATCH_COMPRESSION_MASK) {
        set_err(errmsg, errmsg_len, "batch attributes 0x%04x set reserved bits", h.attributes);
        return FERRY_ERR_CORRUPT_BATCH;
    }
    unsigned comp = h.attributes & FERRY_BATCH_COMPRESSION_MASK;
    if (comp > FERRY_COMPRESSION_ZSTD) {
        set_err(errmsg, errmsg_len, "batch compression %u is not supported", comp);
        return FERRY_ERR_UNSUPPORTED_COMPRESSION;
    }
    if (h.record_count == 0 || h.record_count > FERRY_MAX_RECORDS_PER_BATCH) {
        set_err(errmsg, errmsg_len, "batch record_count %u not in [1, %u]", h.record_count,
                FERRY_MAX_RECORDS_PER_BATCH);
        return FERRY_ERR_CORRUPT_BATCH;
    }
    if (h.last_offset_delta != h.record_count - 1) {
        set_err(errmsg, errmsg_len, "batch last_offset_delta %u does not match record_count %u",
                h.last_offset_delta, h.record_count);
        return FERRY_ERR_CORRUPT_BATCH;
    }
    size_t area = len - FERRY_BATCH_HEADER_SIZE;
    if (comp == FERRY_COMPRESSION_NONE && area / MIN_RECORD_BYTES < h.record_count) {
        set_err(errmsg, errmsg_len, "batch record area of %zu bytes cannot hold %u records", area, h.record_count);
        return FERRY_ERR_CORRUPT_BATCH;
    }
    if (comp != FERRY_COMPRESSION_NONE && area == 0) {
        set_err(errmsg, errmsg_len, "compressed batch has an empty record area");
        return FERRY_ERR_CORRUPT_BATCH;
    }
    if (h.max_timestamp < h.first_timestamp) {
        set_err(errmsg, errmsg_len, "batch max_timestamp %lld is before first_timestamp %lld",
                (long long)h.max_timestamp, (long long)h.first_timestamp);
        return FERRY_ERR_CORRUPT_BATCH;
    }
    uint16_t reserved = ferry_be16_get(buf + 62);
    if (reserved != 0) {
        set_err(errmsg, errmsg_len, "batch reserved field is 0x%04x, expected 0", reserved);
        return FERRY_ERR_CORRUPT_BATCH;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* builder                                                                                     */

struct ferry_batch_builder {
    int compression;
    int level;
    int64_t producer_id;
    int16_t producer_epoch;
    int32_t base_sequence;
    uint8_t *buf; /* [0, 64) reserved for the header, then the uncompressed record area */
    size_t len;
    size_t cap;
    uint32_t count;
    int64_t first_ts;
    int64_t max_ts;
    char errmsg[256];
};

struct ferry_batch_builder *ferry_batch_builder_new(int compression, int64_t producer_id, int16_t producer_epoch,
                                                    int32_t base_sequence)
{
    if (compression < FERRY_COMPRESSION_NONE || compression > FERRY_COMPRESSION_ZSTD)
        return NULL;
    struct ferry_batch_builder *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->compression = compression;
    b->level = compression == FERRY_COMPRESSION_ZSTD ? ZSTD_DEFAULT_LEVEL : 0;
    b->producer_id = producer_id;
    b->producer_epoch = producer_epoch;
    b->base_sequence = base_sequence;
    b->cap = 4096;
    b->buf = malloc(b->cap);
    if (!b->buf) {
        free(b);
        return NULL;
    }
    b->len = FERRY_BATCH_HEADER_SIZE;
    return b;
}

void ferry_batch_builder_set_level(struct ferry_batch_builder *b, int level)
{
    b->level = level;
}

const char *ferry_batch_builder_error(const struct ferry_batch_builder *b)
{
    return b->errmsg;
}

size_t ferry_batch_builder_size(const struct ferry_batch_builder *b)
{
    return b->len;
}

uint32_t ferry_batch_builder_count(const struct ferry_batch_builder *b)
{
    return b->count;
}

void ferry_batch_builder_free(struct ferry_batch_builder *b)
{
    if (!b)
        return;
    free(b->buf);
    free(b);
}

/* Bytes of a length-prefixed field: svarint length (-1 = null) then the bytes. */
static uint64_t nullable_field_size(ssize_t n)
{
    return n < 0 ? 1 : ferry_svarint_size(n) + (uint64_t)n;
}

static uint8_t *put_nullable(uint8_t *p, const void *data, ssize_t n)
{
    if (n < 0)
        return p + ferry_svarint_put(p, -1);
    p += ferry_svarint_put(p, n);
    if (n)
        memcpy(p, data, (size_t)n);
    return p + n;
}

int ferry_batch_builder_add(struct ferry_batch_builder *b, int64_t timestamp, const void *key, ssize_t key_len,
                            const void *value, ssize_t value_len, const struct ferry_header_view *headers,
                            uint32_t header_count)
{
    const uint64_t max = FERRY_MAX_BATCH_BYTES;

    if (b->count >= FERRY_MAX_RECORDS_PER_BATCH) {
        set_err(b->errmsg, sizeof b->errmsg, "batch already holds %u records", b->count);
        return -1;
    }
    if (header_count > FERRY_MAX_HEADERS_PER_RECORD || (header_count && !headers)) {
        set_err(b->errmsg, sizeof b->errmsg, "%u headers (limit %d)", header_count, FERRY_MAX_HEADERS_PER_RECORD);
        return -1;
    }
    if (key_len < -1 || value_len < -1 || (key_len > 0 && !key) || (value_len > 0 && !value) ||
        (uint64_t)(key_len < 0 ? 0 : key_len) > max || (uint64_t)(value_len < 0 ? 0 : value_len) > max) {
        set_err(b->errmsg, sizeof b->errmsg, "invalid key/value length (%zd/%zd)", key_len, value_len);
        return -1;
    }
    int64_t first = b->count ? b->first_ts : timestamp;
    int64_t delta;
    if (__builtin_sub_overflow(timestamp, first, &delta)) {
        set_err(b->errmsg, sizeof b->errmsg, "timestamp %lld too far from the batch's first %lld",
                (long long)timestamp, (long long)first);
        return -1;
    }

    /* Size the record body first so the buffer grows at most once and nothing is copied twice. */
    uint64_t body = 1 + ferry_svarint_size(delta) + ferry_uvarint_size(b->count) + nullable_field_size(key_len) +
                    nullable_field_size(value_len) + ferry_uvarint_size(header_count);
    for (uint32_t i = 0; i < header_count; i++) {
        const struct ferry_header_view *h = &headers[i];
        if (h->name_len > max || h->value_len > max || (h->name_len && !h->name)) {
            set_err(b->errmsg, sizeof b->errmsg, "header %u: invalid name/value", i);
            return -1;
        }
        body += ferry_uvarint_size(h->name_len) + h->name_len +
                nullable_field_size(h->value ? (ssize_t)h->value_len : -1);
    }
    uint64_t total = ferry_uvarint_size(body) + body;
    if (b->len + total > max) {
        set_err(b->errmsg, sizeof b->errmsg, "record of %llu bytes would grow the batch past %llu bytes",
                (unsigned long long)total, (unsigned long long)max);
        return -1;
    }
    if (b->len + total > b->cap) {
        size_t cap = b->cap;
        while (cap < b->len + total)
            cap *= 2;
        uint8_t *nb = realloc(b->buf, cap);
        if (!nb) {
            set_err(b->errmsg, sizeof b->errmsg, "out of memory growing the batch to %zu bytes", cap);
            return -1;
        }
        b->buf = nb;
        b->cap = cap;
    }

    uint8_t *p = b->buf + b->len;
    p += ferry_uvarint_put(p, body);
    *p++ = 0; /* attributes */
    p += ferry_svarint_put(p, delta);
    p += ferry_uvarint_put(p, b->count);
    p = put_nullable(p, key, key_len);
    p = put_nullable(p, value, value_len);
    p += ferry_uvarint_put(p, header_count);
    for (uint32_t i = 0; i < header_count; i++) {
        const struct ferry_header_view *h = &headers[i];
        p += ferry_uvarint_put(p, h->name_len);
        if (h->name_len)
            memcpy(p, h->name, h->name_len);
        p += h->name_len;
        p = put_nullable(p, h->value, h->value ? (ssize_t)h->value_len : -1);
    }
    b->len = (size_t)(p - b->buf);

    if (!b->count)
        b->first_ts = b->max_ts = timestamp;
    else if (timestamp > b->max_ts)
        b->max_ts = timestamp;
    b->count++;
    return 0;
}

/* Compresses src into dst (capacity dst_cap); returns the compressed size, or 0 if it failed or
 * would not fit (the caller then stores the area uncompressed). */
static size_t compress_area(int compression, int level, const uint8_t *src, size_t len, uint8_t *dst, size_t dst_cap)
{
    if (compression == FERRY_COMPRESSION_ZSTD) {
        size_t n = ZSTD_compress(dst, dst_cap, src, len, level);
        return ZSTD_isError(n) ? 0 : n;
    }
    LZ4F_preferences_t prefs;
    memset(&prefs, 0, sizeof prefs);
    prefs.frameInfo.contentSize = len;
    prefs.compressionLevel = level;
    size_t n = LZ4F_compressFrame(dst, dst_cap, src, len, &prefs);
    return LZ4F_isError(n) ? 0 : n;
}

static size_t compress_bound(int compression, size_t len)
{
    if (compression == FERRY_COMPRESSION_ZSTD)
        return ZSTD_compressBound(len);
    LZ4F_preferences_t prefs;
    memset(&prefs, 0, sizeof prefs);
    prefs.frameInfo.contentSize = len;
    return LZ4F_compressFrameBound(len, &prefs);
}

int ferry_batch_builder_seal(struct ferry_batch_builder *b, uint8_t **out, size_t *out_len)
{
    int rc = 0;
    uint8_t *batch = NULL;
    size_t len = 0;
    uint16_t attributes = FERRY_COMPRESSION_NONE;

    if (!b->count) {
        rc = FERRY_ERR__INVALID_ARG;
        goto out_free_builder;
    }
    size_t area = b->len - FERRY_BATCH_HEADER_SIZE;
    if (b->compression != FERRY_COMPRESSION_NONE) {
        /* LZ4F_compressFrame needs the full bound as capacity; kept only if it shrinks the area. */
        size_t cap = compress_bound(b->compression, area);
        batch = malloc(FERRY_BATCH_HEADER_SIZE + cap);
        if (!batch) {
            rc = FERRY_ERR__NO_MEMORY;
            goto out_free_builder;
        }
        size_t n = compress_area(b->compression, b->level, b->buf + FERRY_BATCH_HEADER_SIZE, area,
                                 batch + FERRY_BATCH_HEADER_SIZE, cap);
        if (n && n < area) {
            len = FERRY_BATCH_HEADER_SIZE + n;
            attributes = (uint16_t)b->compression;
        } else {
            free(batch);
            batch = NULL;
        }
    }
    if (!batch) {
        /* Hand over the builder's buffer, trimmed when it is mostly slack. */
        len = b->len;
        batch = b->buf;
        b->buf = NULL;
        if (b->cap > len + len / 4) {
            uint8_t *nb = realloc(batch, len);
            if (nb)
                batch = nb;
        }
    }

    struct ferry_batch_header h = {
        .base_offset = 0,
        .batch_length = (uint32_t)len,
        .leader_epoch = 0,
        .crc = 0,
        .magic = FERRY_BATCH_MAGIC,
        .attributes = attributes,
        .last_offset_delta = b->count - 1,
        .first_timestamp = b->first_ts,
        .max_timestamp = b->max_ts,
        .producer_id = b->producer_id,
        .producer_epoch = b->producer_epoch,
        .base_sequence = b->base_sequence,
        .record_count = b->count,
    };
    ferry_batch_header_encode(&h, batch);
    ferry_be32_put(batch + FERRY_BATCH_OFF_CRC,
                   ferry_crc32c(0, batch + FERRY_BATCH_CRC_START, len - FERRY_BATCH_CRC_START));
    *out = batch;
    *out_len = len;

out_free_builder:
    ferry_batch_builder_free(b);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* reader                                                                                      */

/* Grows *buf (capacity *cap) towards limit; returns 0, or -1 when already at the limit or OOM. */
static int grow_scratch(uint8_t **buf, size_t *cap, size_t limit)
{
    if (*cap >= limit)
        return -1;
    size_t ncap = *cap * 2 < limit ? *cap * 2 : limit;
    uint8_t *nb = realloc(*buf, ncap);
    if (!nb)
        return -1;
    *buf = nb;
    *cap = ncap;
    return 0;
}

static size_t initial_scratch(size_t src_len, size_t limit)
{
    size_t guess = src_len > limit / 4 ? limit : src_len * 4;
    if (guess < 65536)
        guess = 65536;
    return guess < limit ? guess : limit;
}

/* Decodes exactly one zstd frame of src into a new buffer of at most limit bytes. */
static int decompress_zstd(const uint8_t *src, size_t src_len, size_t limit, uint8_t **out, size_t *out_len,
                           char *errmsg, size_t errmsg_len)
{
    int rc = FERRY_ERR_CORRUPT_BATCH;
    uint8_t *buf = NULL;
    ZSTD_DCtx *dctx = NULL;

    size_t frame_len = ZSTD_findFrameCompressedSize(src, src_len);
    if (ZSTD_isError(frame_len) || frame_len != src_len) {
        set_err(errmsg, errmsg_len, "zstd: record area is not exactly one complete frame");
        return rc;
    }
    unsigned long long content = ZSTD_getFrameContentSize(src, src_len);
    if (content == ZSTD_CONTENTSIZE_ERROR) {
        set_err(errmsg, errmsg_len, "zstd: bad frame header");
        return rc;
    }
    if (content != ZSTD_CONTENTSIZE_UNKNOWN && content > limit) {
        set_err(errmsg, errmsg_len, "zstd: declared content of %llu bytes exceeds the %zu-byte limit", content,
                limit);
        return FERRY_ERR_LIMIT_EXCEEDED;
    }
    dctx = ZSTD_createDCtx();
    if (!dctx) {
        set_err(errmsg, errmsg_len, "zstd: out of memory");
        return FERRY_ERR__NO_MEMORY;
    }
    ZSTD_DCtx_setParameter(dctx, ZSTD_d_windowLogMax, ZSTD_WINDOW_LOG_MAX);

    size_t cap = content != ZSTD_CONTENTSIZE_UNKNOWN ? (size_t)content : initial_scratch(src_len, limit);
    buf = malloc(cap ? cap : 1);
    if (!buf) {
        rc = FERRY_ERR__NO_MEMORY;
        set_err(errmsg, errmsg_len, "zstd: out of memory for %zu bytes", cap);
        goto err_free_dctx;
    }
    if (content != ZSTD_CONTENTSIZE_UNKNOWN) {
        size_t n = ZSTD_decompressDCtx(dctx, buf, cap, src, src_len);
        if (ZSTD_isError(n) || n != cap) {
            set_err(errmsg, errmsg_len, "zstd: %s", ZSTD_isError(n) ? ZSTD_getErrorName(n) : "content size mismatch");
            goto err_free_buf;
        }
        *out_len = n;
    } else {
        ZSTD_inBuffer in = {src, src_len, 0};
        ZSTD_outBuffer ob = {buf, cap, 0};
        for (;;) {
            if (ob.pos == ob.size) {
                if (grow_scratch(&buf, &cap, limit) < 0) {
                    rc = cap >= limit ? FERRY_ERR_LIMIT_EXCEEDED : FERRY_ERR__NO_MEMORY;
                    set_err(errmsg, errmsg_len, "zstd: decompressed size exceeds the %zu-byte limit", limit);
                    goto err_free_buf;
                }
                ob.dst = buf;
                ob.size = cap;
            }
            size_t r = ZSTD_decompressStream(dctx, &ob, &in);
            if (ZSTD_isError(r)) {
                set_err(errmsg, errmsg_len, "zstd: %s", ZSTD_getErrorName(r));
                goto err_free_buf;
            }
            if (r == 0)
                break; /* frame complete; findFrameCompressedSize guaranteed it is all of src */
            if (in.pos == in.size && ob.pos < ob.size) {
                set_err(errmsg, errmsg_len, "zstd: truncated frame");
                goto err_free_buf;
            }
        }
        *out_len = ob.pos;
    }
    ZSTD_freeDCtx(dctx);
    *out = buf;
    return 0;

err_free_buf:
    free(buf);
err_free_dctx:
    ZSTD_freeDCtx(dctx);
    return rc;
}

/* Decodes exactly one lz4 frame of src into a new buffer of at most limit bytes. */
static int decompress_lz4(const uint8_t *src, size_t src_len, size_t limit, uint8_t **out, size_t *out_len,
                          char *errmsg, size_t errmsg_len)
{
    int rc = FERRY_ERR_CORRUPT_BATCH;
    uint8_t *buf = NULL;
    LZ4F_dctx *dctx = NULL;

    if (LZ4F_isError(LZ4F_createDecompressionContext(&dctx, LZ4F_VERSION))) {
        set_err(errmsg, errmsg_len, "lz4: out of memory");
        return FERRY_ERR__NO_MEMORY;
    }
    LZ4F_frameInfo_t info;
    size_t consumed = src_len;
    size_t hint = LZ4F_getFrameInfo(dctx, &info, src, &consumed);
    if (LZ4F_isError(hint)) {
        set_err(errmsg, errmsg_len, "lz4: %s", LZ4F_getErrorName(hint));
        goto err_free_dctx;
    }
    if (info.contentSize > limit) {
        rc = FERRY_ERR_LIMIT_EXCEEDED;
        set_err(errmsg, errmsg_len, "lz4: declared content of %llu bytes exceeds the %zu-byte limit",
                (unsigned long long)info.contentSize, limit);
        goto err_free_dctx;
    }
    /* contentSize is only a hint (it may lie); the cap below is what bounds memory. */
    size_t cap = info.contentSize ? (size_t)info.contentSize : initial_scratch(src_len, limit);
    buf = malloc(cap);
    if (!buf) {
        rc = FERRY_ERR__NO_MEMORY;
        set_err(errmsg, errmsg_len, "lz4: out of memory for %zu bytes", cap);
        goto err_free_dctx;
    }
    size_t in_pos = consumed, out_pos = 0;
    for (;;) {
        if (out_pos == cap && grow_scratch(&buf, &cap, limit) < 0) {
            rc = cap >= limit ? FERRY_ERR_LIMIT_EXCEEDED : FERRY_ERR__NO_MEMORY;
            set_err(errmsg, errmsg_len, "lz4: decompressed size exceeds the %zu-byte limit", limit);
            goto err_free_buf;
        }
        size_t dst_n = cap - out_pos, src_n = src_len - in_pos;
        size_t r = LZ4F_decompress(dctx, buf + out_pos, &dst_n, src + in_pos, &src_n, NULL);
        if (LZ4F_isError(r)) {
            set_err(errmsg, errmsg_len, "lz4: %s", LZ4F_getErrorName(r));
            goto err_free_buf;
        }
        in_pos += src_n;
        out_pos += dst_n;
        if (r == 0)
            break;
        if (in_pos == src_len && out_pos < cap) {
            set_err(errmsg, errmsg_len, "lz4: truncated frame");
            goto err_free_buf;
        }
    }
    if (in_pos != src_len) {
        set_err(errmsg, errmsg_len, "lz4: %zu trailing bytes after the frame", src_len - in_pos);
        goto err_free_buf;
    }
    LZ4F_freeDecompressionContext(dctx);
    *out = buf;
    *out_len = out_pos;
    return 0;

err_free_buf:
    free(buf);
err_free_dctx:
    LZ4F_freeDecompressionContext(dctx);
    return rc;
}

/* Points r at the (decompressed) record area of a batch whose header r->header holds, validated. */
static int reader_open_area(struct ferry_batch_reader *r, const uint8_t *batch, size_t len)
{
    int rc;
    const uint8_t *area = batch + FERRY_BATCH_HEADER_SIZE;
    size_t area_len = len - FERRY_BATCH_HEADER_SIZE;
    switch (r->header.attributes & FERRY_BATCH_COMPRESSION_MASK) {
    case FERRY_COMPRESSION_NONE:
        r->area = area;
        r->area_len = area_len;
        return 0;
    case FERRY_COMPRESSION_LZ4:
        rc = decompress_lz4(area, area_len, FERRY_MAX_DECOMPRESSED_BYTES, &r->scratch, &r->area_len, r->errmsg,
                            sizeof r->errmsg);
        break;
    default:
        rc = decompress_zstd(area, area_len, FERRY_MAX_DECOMPRESSED_BYTES, &r->scratch, &r->area_len, r->errmsg,
                             sizeof r->errmsg);
        break;
    }
    if (rc)
        return rc;
    r->area = r->scratch;
    return 0;
}

int ferry_batch_reader_init(struct ferry_batch_reader *r, const uint8_t *batch, size_t len)
{
    memset(r, 0, sizeof *r);
    int rc = ferry_batch_validate(batch, len, FERRY_MAX_BATCH_BYTES, &r->header, r->errmsg, sizeof r->errmsg);
    if (rc)
        return rc;
    return reader_open_area(r, batch, len);
}

int ferry_batch_check_records(const uint8_t *batch, size_t len, const struct ferry_batch_header *h, char *errmsg,
                              size_t errmsg_len)
{
    struct ferry_batch_reader r;
    struct ferry_record_view rec;
    memset(&r, 0, sizeof r);
    r.header = *h;
    int rc = reader_open_area(&r, batch, len);
    if (rc == 0) {
        while ((rc = ferry_batch_reader_next(&r, &rec)) == 1)
            ;
        rc = rc < 0 ? -rc : 0; /* 0: exactly record_count records, nothing after them */
    }
    if (rc < 0) /* a local code (out of memory) is not the producer's fault */
        set_err(errmsg, errmsg_len, "checking the batch's records: %s", r.errmsg[0] ? r.errmsg : "out of memory");
    else if (rc > 0)
        set_err(errmsg, errmsg_len, "batch records do not match its header: %s", r.errmsg);
    ferry_batch_reader_free(&r);
    return rc < 0 ? FERRY_ERR_UNKNOWN : rc;
}

void ferry_batch_reader_free(struct ferry_batch_reader *r)
{
    free(r->scratch);
    r->scratch = NULL;
    r->area = NULL;
    r->area_len = 0;
}

/* Reads a nullable length-prefixed field from [*p, end); returns 0 or -1 (message in errmsg). */
static int get_nullable(const uint8_t **p, const uint8_t *end, const uint8_t **data, size_t *len, const char *what,
                        char *errmsg, size_t errmsg_len)
{
    int64_t n;
    size_t k = ferry_svarint_get(*p, (size_t)(end - *p), &n);
    if (!k) {
        set_err(errmsg, errmsg_len, "%s length: bad varint", what);
        return -1;
    }
    *p += k;
    if (n == -1) {
        *data = NULL;
        *len = 0;
        return 0;
    }
    if (n < 0 || (uint64_t)n > (uint64_t)(end - *p)) {
        set_err(errmsg, errmsg_len, "%s length %lld: %s", what, (long long)n,
                n < 0 ? "negative" : "past the end of the record");
        return -1;
    }
    *data = *p;
    *len = (size_t)n;
    *p += n;
    return 0;
}

/* Parses one header at [*p, end). */
static int get_header(const uint8_t **p, const uint8_t *end, struct ferry_header_view *h, char *errmsg,
                      size_t errmsg_len)
{
    uint64_t n;
    if (*p == end) {
        set_err(errmsg, errmsg_len, "missing: the record ends first");
        return -1;
    }
    size_t k = ferry_uvarint_get(*p, (size_t)(end - *p), &n);
    if (!k) {
        set_err(errmsg, errmsg_len, "name length: bad varint");
        return -1;
    }
    *p += k;
    if (n > (uint64_t)(end - *p)) {
        set_err(errmsg, errmsg_len, "name length %llu past the end of the record", (unsigned long long)n);
        return -1;
    }
    h->name = *p;
    h->name_len = (size_t)n;
    *p += n;
    return get_nullable(p, end, &h->value, &h->value_len, "value", errmsg, errmsg_len);
}

int ferry_batch_reader_next(struct ferry_batch_reader *r, struct ferry_record_view *rec)
{
    char why[192];
    const struct ferry_batch_header *bh = &r->header;

    if (r->pos > r->area_len)
        return -FERRY_ERR_INVALID_RECORD; /* an earlier call failed; errmsg says why */
    if (r->index == bh->record_count) {
        if (r->pos != r->area_len) {
            snprintf(why, sizeof why, "%zu bytes after the last of %u records", r->area_len - r->pos,
                     bh->record_count);
            goto fail;
        }
        return 0;
    }
    if (r->pos == r->area_len) {
        snprintf(why, sizeof why, "record area ends after %u of %u records", r->index, bh->record_count);
        goto fail;
    }

    const uint8_t *p = r->area + r->pos;
    const uint8_t *area_end = r->area + r->area_len;
    uint64_t rec_len;
    size_t k = ferry_uvarint_get(p, (size_t)(area_end - p), &rec_len);
    if (!k) {
        snprintf(why, sizeof why, "bad length varint");
        goto fail;
    }
    p += k;
    if (rec_len > (uint64_t)(area_end - p) || rec_len < MIN_RECORD_BYTES - 1) {
        snprintf(why, sizeof why, "length %llu does not fit the %zu bytes left", (unsigned long long)rec_len,
                 (size_t)(area_end - p));
        goto fail;
    }
    const uint8_t *end = p + rec_len;
    p++; /* attributes: unused in magic 1 */
    int64_t ts_delta;
    uint64_t off_delta, hcount;
    if (!(k = ferry_svarint_get(p, (size_t)(end - p), &ts_delta))) {
        snprintf(why, sizeof why, "bad timestamp_delta varint");
        goto fail;
    }
    p += k;
    if (__builtin_add_overflow(bh->first_timestamp, ts_delta, &rec->timestamp)) {
        snprintf(why, sizeof why, "timestamp_delta %lld overflows", (long long)ts_delta);
        goto fail;
    }
    if (!(k = ferry_uvarint_get(p, (size_t)(end - p), &off_delta))) {
        snprintf(why, sizeof why, "bad offset_delta varint");
        goto fail;
    }
    p += k;
    if (off_delta != r->index) {
        snprintf(why, sizeof why, "offset_delta %llu, expected %u", (unsigned long long)off_delta, r->index);
        goto fail;
    }
    rec->offset = bh->base_offset + (int64_t)off_delta;
    if (get_nullable(&p, end, &rec->key, &rec->key_len, "key", why, sizeof why) < 0 ||
        get_nullable(&p, end, &rec->value, &rec->value_len, "value", why, sizeof why) < 0)
        goto fail;
    if (!(k = ferry_uvarint_get(p, (size_t)(end - p), &hcount))) {
        snprintf(why, sizeof why, "bad header_count varint");
        goto fail;
    }
    p += k;
    /* Each header takes at least 2 bytes (name length, value length). */
    if (hcount > FERRY_MAX_HEADERS_PER_RECORD || hcount * 2 > (uint64_t)(end - p)) {
        snprintf(why, sizeof why, "header_count %llu exceeds the limit or the record", (unsigned long long)hcount);
        goto fail;
    }
    rec->header_count = (uint32_t)hcount;
    rec->headers_raw = p;
    for (uint64_t i = 0; i < hcount; i++) {
        struct ferry_header_view h;
        char hw[160];
        if (get_header(&p, end, &h, hw, sizeof hw) < 0) {
            snprintf(why, sizeof why, "header %llu: %s", (unsigned long long)i, hw);
            goto fail;
        }
    }
    rec->headers_raw_len = (size_t)(p - rec->headers_raw);
    if (p != end) {
        snprintf(why, sizeof why, "%zu unused bytes at the end of the record", (size_t)(end - p));
        goto fail;
    }
    r->pos = (size_t)(end - r->area);
    r->index++;
    return 1;

fail:
    snprintf(r->errmsg, sizeof r->errmsg, "record %u (offset %lld): %s", r->index,
             (long long)(bh->base_offset + r->index), why);
    r->pos = r->area_len + 1; /* sticky */
    return -FERRY_ERR_INVALID_RECORD;
}

int ferry_record_next_header(const struct ferry_record_view *rec, size_t *pos, struct ferry_header_view *h)
{
    if (*pos == rec->headers_raw_len)
        return 0;
    if (*pos > rec->headers_raw_len)
        return -FERRY_ERR_INVALID_RECORD;
    const uint8_t *p = rec->headers_raw + *pos;
    if (get_header(&p, rec->headers_raw + rec->headers_raw_len, h, NULL, 0) < 0)
        return -FERRY_ERR_INVALID_RECORD;
    *pos = (size_t)(p - rec->headers_raw);
    return 1;
}
