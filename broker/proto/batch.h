/* batch.h: the record batch, Ferry's one format on the wire and on disk (docs/protocol.md §Record batch). */
#ifndef FERRY_BATCH_H
#define FERRY_BATCH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/*
 * Batch header, 64 bytes, all integers big-endian:
 *
 *   off size field
 *     0    8 base_offset        i64  assigned by the broker on append (clients send 0)
 *     8    4 batch_length       u32  total bytes of the batch, header included (>= 64)
 *    12    4 leader_epoch       u32  set by the broker (0 on a single broker; Raft term later)
 *    16    4 crc                u32  CRC32C (Castagnoli) of bytes [20, batch_length)
 *    20    2 magic              u16  format version, FERRY_BATCH_MAGIC
 *    22    2 attributes         u16  bits 0-2 compression (0 none, 1 lz4 frame, 2 zstd); others 0
 *    24    4 last_offset_delta  u32  record_count - 1
 *    28    8 first_timestamp    i64  ms since the Unix epoch, of the first record
 *    36    8 max_timestamp      i64  largest record timestamp in the batch
 *    44    8 producer_id        i64  -1 when not idempotent
 *    52    2 producer_epoch     i16  -1 when not idempotent
 *    54    4 base_sequence      i32  -1 when not idempotent
 *    58    4 record_count       u32  1 .. FERRY_MAX_RECORDS_PER_BATCH
 *    62    2 reserved           u16  0
 *    64    . records            the record area, compressed as one block when attributes say so
 *
 * Fields before the CRC (base_offset, batch_length, leader_epoch) are what the broker may rewrite;
 * the CRC covers everything the producer wrote, so the broker never re-checksums or recompresses.
 *
 * Record (uncompressed record area; varints are LEB128, "s" = zigzag-signed):
 *   uvarint length        bytes of the record after this field
 *   u8      attributes    0
 *   svarint timestamp_delta  timestamp - first_timestamp
 *   uvarint offset_delta  offset - base_offset (records are in offset order, 0..count-1)
 *   svarint key_length    -1 = null key
 *   bytes   key
 *   svarint value_length  -1 = null value
 *   bytes   value
 *   uvarint header_count
 *   header_count x { uvarint name_length, bytes name, svarint value_length (-1 null), bytes value }
 */

#define FERRY_BATCH_HEADER_SIZE 64
#define FERRY_BATCH_MAGIC 1
#define FERRY_BATCH_COMPRESSION_MASK 0x7
enum ferry_compression { FERRY_COMPRESSION_NONE = 0, FERRY_COMPRESSION_LZ4 = 1, FERRY_COMPRESSION_ZSTD = 2 };

/* Byte offsets of header fields, for code that patches them in place. */
#define FERRY_BATCH_OFF_BASE_OFFSET 0
#define FERRY_BATCH_OFF_LENGTH 8
#define FERRY_BATCH_OFF_LEADER_EPOCH 12
#define FERRY_BATCH_OFF_CRC 16
#define FERRY_BATCH_CRC_START 20

struct ferry_batch_header {
    int64_t base_offset;
    uint32_t batch_length;
    uint32_t leader_epoch;
    uint32_t crc;
    uint16_t magic;
    uint16_t attributes;
    uint32_t last_offset_delta;
    int64_t first_timestamp;
    int64_t max_timestamp;
    int64_t producer_id;
    int16_t producer_epoch;
    int32_t base_sequence;
    uint32_t record_count;
};

/* A header (name -> bytes) of one record. Pointers borrow from the decoded buffer. */
struct ferry_header_view {
    const uint8_t *name;
    size_t name_len;
    const uint8_t *value; /* NULL for a null value */
    size_t value_len;
};

/* One record as read from a batch. Pointers borrow from the (decompressed) record area. */
struct ferry_record_view {
    int64_t offset;
    int64_t timestamp;
    const uint8_t *key; /* NULL = null key */
    size_t key_len;
    const uint8_t *value; /* NULL = null value */
    size_t value_len;
    uint32_t header_count;
    const uint8_t *headers_raw; /* encoded headers; walk with ferry_record_next_header() */
    size_t headers_raw_len;
};

/* ---- CRC32C ---- */
uint32_t ferry_crc32c(uint32_t crc, const void *buf, size_t len);
/* Start with crc 0; pass a previous result to continue it. The _sw/_hw variants force one
 * implementation (for tests; _hw falls back to _sw when the CPU lacks SSE4.2). */
uint32_t ferry_crc32c_sw(uint32_t crc, const void *buf, size_t len);
uint32_t ferry_crc32c_hw(uint32_t crc, const void *buf, size_t len);
int ferry_crc32c_have_hw(void); /* 1 if SSE4.2 crc32 is used */

/* ---- header ---- */
void ferry_batch_header_encode(const struct ferry_batch_header *h, uint8_t out[FERRY_BATCH_HEADER_SIZE]);
void ferry_batch_header_decode(const uint8_t in[FERRY_BATCH_HEADER_SIZE], struct ferry_batch_header *h);
/* Rewrites base_offset (and leader_epoch) in place; the CRC stays valid. */
void ferry_batch_set_base_offset(uint8_t *batch, int64_t base_offset);
void ferry_batch_set_leader_epoch(uint8_t *batch, uint32_t epoch);
/* Reads batch_length from the first 12 bytes of buf (for splitting concatenated batches, e.g. a
 * Fetch response's records or a segment file). Returns 0, or -1 if len < 12. Not validated. */
int ferry_batch_peek_length(const uint8_t *buf, size_t len, size_t *batch_len);

/*
 * Validates a batch as the broker must before storing it: buffer length equals batch_length, header
 * sane (magic, attributes, counts, last_offset_delta == count-1, max_ts >= first_ts), CRC matches,
 * size <= max_bytes. Does not decompress. Returns 0 or a ferry_err_t code (> 0) with errmsg filled.
 */
int ferry_batch_validate(const uint8_t *buf, size_t len, size_t max_bytes, struct ferry_batch_header *out,
                         char *errmsg, size_t errmsg_len);

/*
 * The broker's second check, after ferry_batch_validate filled h: decompresses the record area
 * (bounded by FERRY_MAX_DECOMPRESSED_BYTES; one scratch buffer for the batch) and walks every
 * record exactly as a consumer will (ferry_batch_reader_next, no allocation per record): exactly
 * h->record_count records with offset deltas 0..count-1, each well formed, nothing after them.
 * Returns 0, or CORRUPT_BATCH / INVALID_RECORD / LIMIT_EXCEEDED (UNKNOWN when out of memory)
 * with errmsg saying which record and why.
 */
int ferry_batch_check_records(const uint8_t *batch, size_t len, const struct ferry_batch_header *h, char *errmsg,
                              size_t errmsg_len);

/* ---- building (client side) ---- */
struct ferry_batch_builder; /* opaque: accumulates records, then seals into one batch buffer */
struct ferry_batch_builder *ferry_batch_builder_new(int compression, int64_t producer_id,
                                                    int16_t producer_epoch, int32_t base_sequence);
/* Appends one record; returns 0 or -1 if it would exceed FERRY_MAX_RECORDS_PER_BATCH / limits. */
int ferry_batch_builder_add(struct ferry_batch_builder *b, int64_t timestamp, const void *key, ssize_t key_len,
                            const void *value, ssize_t value_len, const struct ferry_header_view *headers,
                            uint32_t header_count);
/* Uncompressed bytes the sealed batch would take now (for batch.size decisions). */
size_t ferry_batch_builder_size(const struct ferry_batch_builder *b);
uint32_t ferry_batch_builder_count(const struct ferry_batch_builder *b);
/* Compresses if asked, writes the header and CRC. On success *out is malloc'd, owned by the caller.
 * Returns 0 or a ferry_err_t. The builder is freed in every case. */
int ferry_batch_builder_seal(struct ferry_batch_builder *b, uint8_t **out, size_t *out_len);
void ferry_batch_builder_free(struct ferry_batch_builder *b);
/* Compression level (zstd default 3, lz4 default 0 = fast); call before seal. */
void ferry_batch_builder_set_level(struct ferry_batch_builder *b, int level);
/* Why the last ferry_batch_builder_add returned -1 ("" if it never failed). */
const char *ferry_batch_builder_error(const struct ferry_batch_builder *b);

/* ---- reading (consumer side) ---- */
/*
 * Iterates the records of one validated batch. ferry_batch_reader_init decompresses if needed
 * (bounded by FERRY_MAX_DECOMPRESSED_BYTES; the reader owns that scratch until _free). Records are
 * returned in order; each record's fields are bounds-checked against the record area.
 * Returns 0 / ferry_err_t (FERRY_ERR_CORRUPT_BATCH, FERRY_ERR_INVALID_RECORD) with errmsg filled.
 */
struct ferry_batch_reader {
    struct ferry_batch_header header;
    const uint8_t *area; /* record area (decompressed) */
    size_t area_len;
    size_t pos;
    uint32_t index;
    uint8_t *scratch; /* owned decompression buffer or NULL */
    char errmsg[256];
};
int ferry_batch_reader_init(struct ferry_batch_reader *r, const uint8_t *batch, size_t len);
/* Returns 1 and fills rec, 0 at the end, or -(ferry_err_t) on a malformed record. */
int ferry_batch_reader_next(struct ferry_batch_reader *r, struct ferry_record_view *rec);
/* Walks a record's headers: *pos starts at 0; returns 1 with h filled, 0 at the end, <0 malformed. */
int ferry_record_next_header(const struct ferry_record_view *rec, size_t *pos, struct ferry_header_view *h);
void ferry_batch_reader_free(struct ferry_batch_reader *r);

#endif
