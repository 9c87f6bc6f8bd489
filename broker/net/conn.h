/* conn.h: one framed connection over libuv, plaintext or TLS (OpenSSL over memory BIOs). */
#ifndef FERRY_NET_CONN_H
#define FERRY_NET_CONN_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/*
 * The transport is the same for both ends and both modes: the broker accepts, libferry's I/O
 * thread connects, and each hands whole frames to its protocol code. Framing: 4-byte big-endian
 * length then the payload; a length of 0 or above max_frame_bytes closes the connection with a
 * reason *before* anything is allocated for the payload.
 *
 * Threading: a conn belongs to the loop it was created on; every call must be made on that loop's
 * thread. Callbacks run on that thread.
 *
 * Lifecycle: ferry_conn_close() starts an asynchronous close; on_close runs exactly once, after
 * which the conn is freed by the transport (do not touch it afterwards). A conn closed by the peer,
 * by an error or by a protocol violation also ends in exactly one on_close, with the reason.
 */

struct ferry_tls_ctx; /* an SSL_CTX plus our settings; shared by many conns, freed after them */
struct ferry_conn;

struct ferry_tls_config {
    const char *ca_file;    /* CA bundle that verifies the peer (required for clients; for servers
                               required when require_client_cert) */
    const char *cert_file;  /* our certificate chain (required for servers; optional client cert) */
    const char *key_file;   /* our private key */
    int require_client_cert; /* server: mutual TLS */
    int min_version_tls13;   /* 1 = TLS 1.3 only (default); 0 = allow TLS 1.2 */
};

/* Returns NULL with errmsg filled (OpenSSL's reason included) on failure. */
struct ferry_tls_ctx *ferry_tls_server_ctx_new(const struct ferry_tls_config *cfg, char *errmsg, size_t errmsg_len);
struct ferry_tls_ctx *ferry_tls_client_ctx_new(const struct ferry_tls_config *cfg, char *errmsg, size_t errmsg_len);
void ferry_tls_ctx_free(struct ferry_tls_ctx *ctx);

struct ferry_conn_callbacks {
    /* Connection ready: TLS handshake done (or TCP connected, plaintext). */
    void (*on_open)(struct ferry_conn *c);
    /* One whole frame payload; the buffer is valid only during the call and is the receiver's scratch
     * until it returns (the broker rewrites batch base offsets in place instead of copying). */
    void (*on_frame)(struct ferry_conn *c, const uint8_t *payload, size_t len);
    /* Exactly once per conn. status 0 = closed by ferry_conn_close; otherwise a UV error or -1 for
     * protocol/TLS failures; reason is human-readable ("frame of 99999999 bytes exceeds limit 67108864",
     * "TLS: certificate verify failed"). */
    void (*on_close)(struct ferry_conn *c, int status, const char *reason);
    /* Optional (NULL = not told): runs after a socket write completes once ferry_conn_pending_bytes()
     * is at or below the drain mark (ferry_conn_set_drain_mark, default 0), so an owner that stopped
     * reading because too much output was queued can resume. Not called after a close request. */
    void (*on_drain)(struct ferry_conn *c);
};

/*
 * Server side: accept one pending connection from a listening uv_tcp_t. tls may be NULL for
 * plaintext. Returns 0 or a UV error (the pending connection is then dropped).
 */
int ferry_conn_accept(uv_stream_t *listener, struct ferry_tls_ctx *tls, const struct ferry_conn_callbacks *cb,
                      size_t max_frame_bytes, void *data, struct ferry_conn **out);

/*
 * Client side: connect to host:port (numeric address or name; resolution is asynchronous).
 * server_name is verified against the certificate (SAN/CN) when tls is set; NULL = host; "" = no
 * name check (the chain is still verified against the CA: ssl.endpoint.identification=none).
 * Returns 0 (then exactly one on_open or on_close follows) or a UV error (no callbacks).
 */
int ferry_conn_connect(uv_loop_t *loop, const char *host, int port, struct ferry_tls_ctx *tls,
                       const char *server_name, const struct ferry_conn_callbacks *cb, size_t max_frame_bytes,
                       void *data, struct ferry_conn **out);

/*
 * Queues one frame, given as the complete frame bytes (4-byte length prefix included, as built by
 * ferry_frame_begin/finish). The bytes are copied (or encrypted into a transport buffer); the caller
 * keeps ownership. Frames queued in one loop pass are written with one write. Returns 0 or a UV error.
 */
int ferry_conn_send(struct ferry_conn *c, const void *frame, size_t len);

/* Bytes queued but not yet written to the socket (for backpressure). */
size_t ferry_conn_pending_bytes(const struct ferry_conn *c);
/* on_drain runs when pending bytes are at or below mark after a write (default 0). */
void ferry_conn_set_drain_mark(struct ferry_conn *c, size_t mark);

/* Stop / restart delivering frames (e.g. too many requests in flight). */
void ferry_conn_pause(struct ferry_conn *c);
void ferry_conn_resume(struct ferry_conn *c);

/* Asynchronous close; pending writes are flushed first when possible. Idempotent. */
void ferry_conn_close(struct ferry_conn *c, const char *reason);

void *ferry_conn_data(const struct ferry_conn *c);
void ferry_conn_set_data(struct ferry_conn *c, void *data);
/* "ip:port" of the peer, for logs. */
const char *ferry_conn_peer(const struct ferry_conn *c);
/* TLS: subject CN of a verified client certificate, or NULL. */
const char *ferry_conn_peer_cn(const struct ferry_conn *c);

#endif
