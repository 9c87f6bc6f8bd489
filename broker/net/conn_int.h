/* conn_int.h: internals shared by the connection core (conn.c) and its TLS transport (conn_tls.c). */
#ifndef FERRY_NET_CONN_INT_H
#define FERRY_NET_CONN_INT_H

#include <openssl/ssl.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "net/conn.h"

/* An SSL_CTX plus the side it serves; immutable once built, so many conns share it. */
struct ferry_tls_ctx {
    SSL_CTX *ssl_ctx;
    int is_server;
};

/* A growable byte buffer; the conn owns base. */
struct conn_buf {
    uint8_t *base;
    size_t len;
    size_t cap;
};

enum conn_state {
    CONN_RESOLVING,  /* client: uv_getaddrinfo in flight */
    CONN_CONNECTING, /* client: uv_tcp_connect in flight */
    CONN_CONNECTED,  /* TCP up; TLS handshake running, or plaintext on_open not yet delivered */
    CONN_OPEN,       /* on_open delivered: frames flow both ways */
};

/*
 * The transport below the frame layer (STYLE.md item 11): plaintext passes bytes through, TLS
 * runs them through an SSL object over memory BIOs. The core owns the socket, the frame
 * reassembler and the write queue; a transport only turns socket bytes into frame bytes and
 * frame bytes into socket bytes.
 */
struct conn_transport {
    /* TCP is connected (client) or accepted (server): begin the session. */
    void (*start)(struct ferry_conn *c);
    /* Bytes read from the socket. */
    void (*input)(struct ferry_conn *c, const uint8_t *p, size_t n);
    /* After a pause: deliver what is buffered below the socket (held plaintext, SSL records). */
    void (*resume)(struct ferry_conn *c);
    /* Queue one whole frame (already validated). Returns 0 or a UV error. */
    int (*send)(struct ferry_conn *c, const uint8_t *p, size_t n);
    /* Move every byte ready for the socket into c->out. Returns 0, or -1 after closing the conn. */
    int (*collect)(struct ferry_conn *c);
    /* Bytes queued inside the transport and not yet in c->out. */
    size_t (*queued)(const struct ferry_conn *c);
    /* Orderly close requested: queue what is staged plus a close_notify. */
    void (*shutdown)(struct ferry_conn *c);
    /* Free transport state (at the very end). */
    void (*destroy)(struct ferry_conn *c);
};

struct ferry_conn {
    uv_tcp_t tcp;
    uv_idle_t idle;   /* deferred work for this loop pass: flush, on_open, resume */
    uv_timer_t linger; /* bounds a flushing close */
    uv_getaddrinfo_t gai;
    uv_connect_t connect_req;
    uv_write_t write_req;

    const struct conn_transport *ops;
    struct ferry_conn_callbacks cb;
    void *data;
    size_t max_frame;
    size_t drain_mark; /* on_drain when pending bytes fall to this */
    enum conn_state state;

    unsigned close_requested : 1; /* no more input, sends or on_open; output may still flush */
    unsigned closing : 1;         /* uv_close issued on every handle */
    unsigned silent : 1;          /* no on_close (accept/connect failed synchronously) */
    unsigned gai_active : 1;
    unsigned writing : 1;
    unsigned reading : 1;
    unsigned paused : 1;
    unsigned open_pending : 1;
    unsigned resume_pending : 1;
    int handles_open;

    /* Frame reassembly: a partial header, or a payload being accumulated into frame. */
    uint8_t hdr[4];
    size_t hdr_have;
    uint8_t *frame;
    size_t frame_len;
    size_t frame_have;
    /* Plaintext received but not delivered because the conn was paused. */
    struct conn_buf held;
    size_t held_off;

    /* Output: out accumulates socket bytes; wr is the buffer of the uv_write in flight. */
    struct conn_buf out;
    struct conn_buf wr;

    /* TLS (NULL for plaintext). rbio: socket -> SSL; wbio: SSL -> socket. */
    SSL *ssl;
    BIO *rbio;
    BIO *wbio;
    struct conn_buf stage; /* small plaintext frames, encrypted together at flush time */
    int tls_dead;          /* a fatal TLS error: nothing more may be written through SSL */

    int close_status;
    char close_reason[256];
    char peer[128]; /* "ip:port" once connected; "host:port" before */
    char *peer_cn;
};

extern const struct conn_transport conn_plain_transport;
extern const struct conn_transport conn_tls_transport;

/* TLS session setup on a new conn (conn_tls.c). server_name: NULL for a server conn. */
int conn_tls_init(struct ferry_conn *c, struct ferry_tls_ctx *tls, const char *server_name);

/* Core helpers used by transports (conn.c). */
int conn_buf_append(struct conn_buf *b, const void *p, size_t n);
int conn_buf_reserve(struct conn_buf *b, size_t extra);
void conn_buf_release(struct conn_buf *b);
/* 1 while frames may be delivered: not paused and no close requested. */
int conn_deliverable(const struct ferry_conn *c);
/* Feeds plaintext to the frame reassembler; returns the bytes consumed (fewer than n when the
 * conn paused or closed on the way). */
size_t conn_feed(struct ferry_conn *c, const uint8_t *p, size_t n);
/* conn_feed, keeping whatever a pause left undelivered in c->held. */
void conn_feed_hold(struct ferry_conn *c, const uint8_t *p, size_t n);
/* Delivers what c->held keeps; returns 1 if it is empty afterwards. */
int conn_feed_held(struct ferry_conn *c);
/* n bytes were written straight into c->frame + c->frame_have; delivers the frame if complete. */
void conn_frame_filled(struct ferry_conn *c, size_t n);
/* Starts reading from the socket unless paused, closing or not yet connected. */
void conn_read_start(struct ferry_conn *c);
/* Connection established: state OPEN, on_open, flush what was queued. */
void conn_opened(struct ferry_conn *c);
/* Ask for a flush (and other deferred work) in this loop pass. */
void conn_schedule(struct ferry_conn *c);
/*
 * Closes the conn because of status (0, a UV error, or -1 for protocol/TLS failures). flush: write
 * what is queued first (bounded by a linger timer). The first reason recorded is the one reported.
 */
void conn_fail(struct ferry_conn *c, int status, int flush, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
