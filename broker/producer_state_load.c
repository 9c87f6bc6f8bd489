/* producer_state_load.c: rebuilds a partition's producer table by replaying its stored batch headers. */
#include "producer_state_load.h"

#include <stdio.h>
#include <stdlib.h>

#include "ferry_errors.h"
#include "proto/batch.h"

/* Bytes read per step of the scan: whole batches, so at least one batch (<= 8 MiB) per read. */
#define SCAN_CHUNK_BYTES (4u << 20)

int ferryd_pstate_load_from_log(struct ferryd_pstate *s, struct ferry_log *log, char *errmsg, size_t errmsg_len)
{
    char why[256];
    int64_t off = ferry_log_start_offset(log);
    int64_t end = ferry_log_end_offset(log);
    while (off < end) {
        uint8_t *buf = NULL;
        size_t len = 0;
        int rc = ferry_log_read(log, off, end, SCAN_CHUNK_BYTES, &buf, &len, why, sizeof(why));
        if (rc != 0) {
            snprintf(errmsg, errmsg_len, "rebuilding producer state at offset %lld: %s", (long long)off, why);
            return rc;
        }
        if (len == 0) {
            free(buf);
            break;
        }
        size_t pos = 0;
        while (pos + FERRY_BATCH_HEADER_SIZE <= len) {
            struct ferry_batch_header h;
            size_t blen;
            if (ferry_batch_peek_length(buf + pos, len - pos, &blen) != 0 || blen < FERRY_BATCH_HEADER_SIZE ||
                blen > len - pos)
                break;
            ferry_batch_header_decode(buf + pos, &h);
            int64_t next = h.base_offset + (int64_t)h.record_count;
            if (next > off) { /* the first batch may start before off */
                if (ferryd_pstate_update(s, &h, h.base_offset) != 0) {
                    free(buf);
                    snprintf(errmsg, errmsg_len, "rebuilding producer state: out of memory");
                    return FERRY_ERR_STORAGE_ERROR;
                }
                off = next;
            }
            pos += blen;
        }
        free(buf);
    }
    return 0;
}
