/* ferry_errors.h: every Ferry error code, one table shared by the wire protocol, ferryd and libferry. */
#ifndef FERRY_ERRORS_H
#define FERRY_ERRORS_H

/*
 * FERRY_ERROR_TABLE(X): X(NAME, code, retriable, description)
 *
 * Codes >= 0 travel on the wire (docs/protocol.md lists them); they never change meaning.
 * Codes < 0 are local to libferry (never sent by a broker); librdkafka's "__" convention marks them.
 * "retriable" means the same request may succeed if retried later, unchanged.
 */
#define FERRY_ERROR_TABLE(X)                                                                       \
    X(NONE, 0, 0, "success")                                                                       \
    X(UNKNOWN, 1, 0, "unexpected broker error")                                                    \
    X(CORRUPT_BATCH, 2, 0, "record batch failed its CRC or format validation")                     \
    X(UNKNOWN_TOPIC_OR_PARTITION, 3, 0, "no such topic or partition")                              \
    X(OFFSET_OUT_OF_RANGE, 4, 0, "offset outside the partition's log")                             \
    X(INVALID_REQUEST, 5, 0, "malformed request")                                                  \
    X(UNSUPPORTED_VERSION, 6, 0, "api version not supported by this broker")                       \
    X(UNKNOWN_API, 7, 0, "unknown api")                                                            \
    X(BATCH_TOO_LARGE, 8, 0, "record batch larger than the broker accepts")                       \
    X(TOPIC_ALREADY_EXISTS, 9, 0, "topic already exists")                                          \
    X(INVALID_TOPIC, 10, 0, "invalid topic name")                                                  \
    X(INVALID_PARTITIONS, 11, 0, "invalid partition count")                                        \
    X(REQUEST_TIMED_OUT, 12, 1, "request timed out on the broker")                                 \
    X(NOT_LEADER, 13, 1, "broker is not the leader of this partition")                             \
    X(STORAGE_ERROR, 14, 1, "broker storage error")                                                \
    X(LIMIT_EXCEEDED, 15, 0, "a hard limit was exceeded")                                          \
    X(INVALID_CONFIG, 16, 0, "invalid configuration value")                                        \
    X(BROKER_NOT_AVAILABLE, 17, 1, "broker not available")                                         \
    X(UNSUPPORTED_COMPRESSION, 18, 0, "unsupported compression type")                              \
    X(INVALID_TIMESTAMP, 19, 0, "invalid timestamp")                                               \
    X(INVALID_RECORD, 20, 0, "record inside a batch is malformed")                                 \
    X(TOO_MANY_CONNECTIONS, 21, 1, "broker connection limit reached")                              \
    X(OUT_OF_ORDER_SEQUENCE, 22, 0, "producer sequence gap")                                       \
    X(DUPLICATE_SEQUENCE, 23, 0, "duplicate producer sequence")                                    \
    X(NOT_CONTROLLER, 24, 1, "this broker is not the controller")                                  \
    X(INVALID_PRODUCER_EPOCH, 25, 0, "producer fenced: a newer epoch of this producer id exists")   \
    X(NOT_COORDINATOR, 26, 1, "this broker is not the group's coordinator")                        \
    X(COORDINATOR_NOT_AVAILABLE, 27, 1, "the offsets topic or its partition leader is not ready")  \
    X(INVALID_GROUP_ID, 28, 0, "empty or too long group id")                                       \
    X(UNKNOWN_MEMBER_ID, 29, 0, "no such member in this group (removed or never joined)")          \
    X(FENCED_MEMBER_EPOCH, 30, 0, "the member epoch is older than the member's current one")       \
    X(UNRELEASED_INSTANCE_ID, 31, 0, "a live member already uses this group.instance.id")          \
    X(PARTITION_NOT_ASSIGNED, 32, 0, "commit of a partition not assigned to this member")          \
    X(OFFSET_BEHIND_COMMITTED, 33, 0, "commit below the committed offset without rewind")          \
    X(GROUP_NOT_EMPTY, 34, 0, "the group still has members")                                       \
    X(GROUP_ID_NOT_FOUND, 35, 0, "no such group")                                                  \
    X(_TRANSPORT, -1, 1, "connection to broker failed or was lost")                                \
    X(_TIMED_OUT, -2, 1, "local timeout")                                                          \
    X(_QUEUE_FULL, -3, 1, "local producer queue is full")                                          \
    X(_INVALID_ARG, -4, 0, "invalid argument")                                                     \
    X(_UNKNOWN_CONFIG, -5, 0, "unknown configuration key")                                         \
    X(_INVALID_CONFIG_VALUE, -6, 0, "invalid configuration value")                                 \
    X(_PURGED, -7, 0, "record purged before delivery")                                             \
    X(_NO_MEMORY, -8, 1, "out of memory")                                                          \
    X(_TLS, -9, 0, "TLS handshake or certificate verification failed")                             \
    X(_WRONG_CLIENT_TYPE, -10, 0, "operation not valid for this client type")                      \
    X(_BAD_RESPONSE, -11, 0, "malformed response from broker")                                     \
    X(_DESTROYED, -12, 0, "client is closing")                                                     \
    X(_NO_BROKERS, -13, 1, "no broker could be reached")                                           \
    X(_NOT_ASSIGNED, -14, 0, "partition is not assigned to this consumer")                         \
    X(_RESOLVE, -15, 1, "host name resolution failed")

typedef enum ferry_err {
#define FERRY_ERR_ENUM_(name, code, retriable, desc) FERRY_ERR_##name = (code),
    FERRY_ERROR_TABLE(FERRY_ERR_ENUM_)
#undef FERRY_ERR_ENUM_
} ferry_err_t;

#endif
