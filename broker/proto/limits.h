/* limits.h: every hard limit of the protocol and the broker, each with the reason for its value. */
#ifndef FERRY_LIMITS_H
#define FERRY_LIMITS_H

/*
 * Limits are checked before anything is allocated for the thing they bound: a frame's length is
 * checked when its 4-byte header arrives; msgpack arrays, maps, strings and binaries are checked
 * against these limits *and* against the bytes that remain in the frame before msgpack-c unpacks.
 */

/* A request frame carries at most a few record batches (FERRY_MAX_BATCH_BYTES each) plus headers;
 * a fetch response at most fetch.max.bytes (capped below). 64 MiB bounds per-connection memory. */
#define FERRY_MAX_FRAME_BYTES (64u * 1024 * 1024)

/* Counted in containers (arrays and maps). The deepest message we define is a DescribeGroups response:
 * envelope > body > groups[] > group{} > members[] > member{} > assigned[] > assignment{} > partitions[]:
 * 9 levels. 10 leaves headroom for new versions while stopping stack/heap blow-up from hostile nesting. */
#define FERRY_MAX_NESTING_DEPTH 10

/* Arrays: one element per topic/partition/offset request. 100k covers a 10k-partition metadata
 * response with room to spare; each element must also fit in the remaining frame bytes. */
#define FERRY_MAX_ARRAY_LEN 100000

/* Values (scalars and containers) in one message. msgpack-c spends 24 bytes per value (48 per map
 * entry) when unpacking, so a 64 MiB frame of 1-byte nils would cost 1.5 GiB; 4M values bound the
 * unpacked form to ~100-200 MiB while leaving a 10k-partition metadata response far below it. */
#define FERRY_MAX_MSGPACK_OBJECTS (1u << 22)

/* Maps are request/response bodies and per-item structures with a handful of named fields. */
#define FERRY_MAX_MAP_LEN 64

/* One record batch as sent and stored. 8 MiB (Kafka defaults to 1 MiB) lets a client batch
 * generously while keeping a fetch of one batch, and the decoder's scratch, bounded. */
#define FERRY_MAX_BATCH_BYTES (8u * 1024 * 1024)

/* A compressed batch may not expand beyond this when the consumer or broker decompresses it:
 * stops decompression bombs. 64 MiB = 8x the largest batch. */
#define FERRY_MAX_DECOMPRESSED_BYTES (64u * 1024 * 1024)

/* Records per batch: a record takes at least 7 bytes, so an 8 MiB batch cannot hold more than
 * about 1.2M; the cap keeps per-batch offset arithmetic within 32 bits with margin. */
#define FERRY_MAX_RECORDS_PER_BATCH (1u << 21)

/* Headers per record: event metadata (id, type, source, correlation id, trace) is a few; 256 is
 * generous and bounds the per-record header array a consumer allocates. */
#define FERRY_MAX_HEADERS_PER_RECORD 256

/* Topic names: Kafka's 249 characters (room for "-<partition>" in a 255-byte file name),
 * characters [A-Za-z0-9._-]. */
#define FERRY_MAX_TOPIC_NAME 249

/* Client ids and other free-form strings in request headers. */
#define FERRY_MAX_CLIENT_ID 256

/* Error messages the broker sends. */
#define FERRY_MAX_ERROR_MESSAGE 512

/* Partitions per topic and topics per broker: bound metadata size and open files. */
#define FERRY_MAX_PARTITIONS_PER_TOPIC 10000
#define FERRY_MAX_TOPICS 10000

/* Requests a connection may have in flight on the broker (parsed, not yet answered). Past it the
 * broker stops reading that connection until responses drain (backpressure, not an error). */
#define FERRY_MAX_INFLIGHT_PER_CONNECTION 1024

/* Response bytes the broker queues on one connection before it stops reading that connection's
 * requests (reading resumes once half of it has been written). A client that pipelines requests
 * without reading answers would otherwise make the broker buffer without bound. 16 MiB keeps
 * several large fetch responses in the pipe; per connection the queue stays below this plus one
 * response (at most FERRY_MAX_FRAME_BYTES) plus the answers of requests already parked. */
#define FERRY_MAX_PENDING_OUTPUT_BYTES (16u * 1024 * 1024)

/* Connections a broker serves at once (the maximum of max.connections). Each costs a descriptor,
 * about 1 KiB of state, up to ~70 KiB of TLS state and its buffers; 65536 stays far below common
 * descriptor limits and keeps the per-second idle sweep over every connection cheap. */
#define FERRY_MAX_CONNECTIONS 65536

/* Fetch responses are capped regardless of what the client asks for. */
#define FERRY_MAX_FETCH_BYTES (32u * 1024 * 1024)

/* Long-poll wait cap for Fetch (ms): a client asking for more gets this. */
#define FERRY_MAX_FETCH_WAIT_MS 30000

#endif
