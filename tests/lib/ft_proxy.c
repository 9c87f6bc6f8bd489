/* ft_proxy.c: a frame-aware TCP proxy on 127.0.0.1 that can lose Produce acknowledgements (plaintext brokers). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ferrytest.h"

#define MAX_PAIRS 32
#define MAX_PENDING 1024                /* produce correlation ids remembered per connection */
#define MAX_FRAME (64u * 1024 * 1024 + 4) /* FERRY_MAX_FRAME_BYTES and its prefix */
#define API_PRODUCE 4

/* One direction of a connection pair: bytes read but not yet a whole frame. */
struct dir {
    uint8_t *buf;
    size_t len, cap;
};

struct pair {
    int cfd, ufd; /* client side, upstream (broker) side; -1 = unused */
    struct dir req, resp;
    uint32_t produce_corr[MAX_PENDING];
    size_t nproduce;
};

struct ft_proxy {
    int lfd;
    int port;
    int wake[2];
    pthread_t thread;
    pthread_mutex_t lock;
    /* under lock */
    int up_port;
    int drop; /* produce responses still to drop */
    int reject_after_drop;
    int reject; /* close new connections at once */
    int dropped;
    int forwarded_produce;
    int stop;
    /* proxy thread only */
    struct pair pairs[MAX_PAIRS];
};

static void pair_close(struct pair *p)
{
    if (p->cfd >= 0)
        close(p->cfd);
    if (p->ufd >= 0)
        close(p->ufd);
    free(p->req.buf);
    free(p->resp.buf);
    memset(p, 0, sizeof(*p));
    p->cfd = p->ufd = -1;
}

static int write_all(int fd, const uint8_t *b, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

/* A msgpack unsigned integer at *p (fixint, uint8..64); -1 if it is not one. */
static int mp_uint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    if (*p >= end)
        return -1;
    uint8_t t = *(*p)++;
    size_t n = 0;
    if (t < 0x80) {
        *v = t;
        return 0;
    }
    if (t == 0xcc)
        n = 1;
    else if (t == 0xcd)
        n = 2;
    else if (t == 0xce)
        n = 4;
    else if (t == 0xcf)
        n = 8;
    else
        return -1;
    if ((size_t)(end - *p) < n)
        return -1;
    *v = 0;
    for (size_t i = 0; i < n; i++)
        *v = (*v << 8) | *(*p)++;
    return 0;
}

static int connect_up(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

/*
 * Reads what fd has into d and handles each whole frame: requests are forwarded (Produce
 * correlation ids remembered); a response to a Produce is dropped when a drop is armed, which
 * closes the whole pair. Returns 0, or -1 when the pair must close.
 */
static int pump(struct ft_proxy *px, struct pair *p, int from_client)
{
    struct dir *d = from_client ? &p->req : &p->resp;
    int from = from_client ? p->cfd : p->ufd, to = from_client ? p->ufd : p->cfd;
    if (d->cap - d->len < 65536) {
        size_t cap = d->cap ? d->cap * 2 : 131072;
        uint8_t *nb = realloc(d->buf, cap);
        if (nb == NULL)
            return -1;
        d->buf = nb;
        d->cap = cap;
    }
    ssize_t r = recv(from, d->buf + d->len, d->cap - d->len, 0);
    if (r < 0 && errno == EINTR)
        return 0;
    if (r <= 0)
        return -1;
    d->len += (size_t)r;
    size_t pos = 0;
    while (d->len - pos >= 4) {
        const uint8_t *f = d->buf + pos;
        size_t n = ((size_t)f[0] << 24) | ((size_t)f[1] << 16) | ((size_t)f[2] << 8) | f[3];
        if (n + 4 > MAX_FRAME)
            return -1;
        if (d->len - pos < n + 4)
            break;
        const uint8_t *q = f + 4, *end = f + 4 + n;
        uint64_t api = 0, ver = 0, corr = 0;
        int drop = 0;
        if (from_client) {
            if (n > 0 && *q == 0x95 && (q++, mp_uint(&q, end, &api) == 0) && mp_uint(&q, end, &ver) == 0 &&
                mp_uint(&q, end, &corr) == 0 && api == API_PRODUCE && p->nproduce < MAX_PENDING)
                p->produce_corr[p->nproduce++] = (uint32_t)corr;
        } else if (n > 0 && *q == 0x94 && (q++, mp_uint(&q, end, &corr) == 0)) {
            for (size_t i = 0; i < p->nproduce; i++) {
                if (p->produce_corr[i] != (uint32_t)corr)
                    continue;
                p->produce_corr[i] = p->produce_corr[--p->nproduce];
                pthread_mutex_lock(&px->lock);
                if (px->drop > 0) {
                    px->drop--;
                    px->dropped++;
                    if (px->reject_after_drop)
                        px->reject = 1;
                    drop = 1;
                } else {
                    px->forwarded_produce++;
                }
                pthread_mutex_unlock(&px->lock);
                break;
            }
        }
        if (drop)
            return -1; /* the acknowledgement is lost with the connection */
        if (write_all(to, f, n + 4) != 0)
            return -1;
        pos += n + 4;
    }
    memmove(d->buf, d->buf + pos, d->len - pos);
    d->len -= pos;
    return 0;
}

static void accept_one(struct ft_proxy *px)
{
    int cfd = accept4(px->lfd, NULL, NULL, SOCK_CLOEXEC);
    if (cfd < 0)
        return;
    pthread_mutex_lock(&px->lock);
    int reject = px->reject, up = px->up_port;
    pthread_mutex_unlock(&px->lock);
    struct pair *slot = NULL;
    for (int i = 0; i < MAX_PAIRS && slot == NULL; i++)
        if (px->pairs[i].cfd < 0)
            slot = &px->pairs[i];
    int ufd = reject || slot == NULL || up <= 0 ? -1 : connect_up(up);
    if (ufd < 0) {
        close(cfd); /* paused, full, or the broker is down: the client sees a closed connection */
        return;
    }
    int one = 1;
    setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    slot->cfd = cfd;
    slot->ufd = ufd;
}

static void *proxy_main(void *arg)
{
    struct ft_proxy *px = arg;
    struct pollfd pf[2 + 2 * MAX_PAIRS];
    int owner[2 + 2 * MAX_PAIRS];
    for (;;) {
        pthread_mutex_lock(&px->lock);
        int stop = px->stop;
        pthread_mutex_unlock(&px->lock);
        if (stop)
            break;
        int n = 0;
        pf[n++] = (struct pollfd){.fd = px->wake[0], .events = POLLIN};
        pf[n++] = (struct pollfd){.fd = px->lfd, .events = POLLIN};
        for (int i = 0; i < MAX_PAIRS; i++) {
            if (px->pairs[i].cfd < 0)
                continue;
            owner[n] = i;
            pf[n++] = (struct pollfd){.fd = px->pairs[i].cfd, .events = POLLIN};
            owner[n] = i;
            pf[n++] = (struct pollfd){.fd = px->pairs[i].ufd, .events = POLLIN};
        }
        if (poll(pf, (nfds_t)n, 200) < 0 && errno != EINTR)
            break;
        if (pf[0].revents) {
            char c[16];
            if (read(px->wake[0], c, sizeof(c)) < 0) { /* nothing: only a wake-up */
            }
        }
        if (pf[1].revents & POLLIN)
            accept_one(px);
        for (int k = 2; k < n; k++) {
            struct pair *p = &px->pairs[owner[k]];
            if (!(pf[k].revents & (POLLIN | POLLHUP | POLLERR)) || p->cfd < 0)
                continue;
            int from_client = pf[k].fd == p->cfd;
            if (!from_client && pf[k].fd != p->ufd)
                continue; /* the pair was closed and its slot reused in this pass */
            if (pump(px, p, from_client) != 0)
                pair_close(p);
        }
    }
    for (int i = 0; i < MAX_PAIRS; i++)
        if (px->pairs[i].cfd >= 0)
            pair_close(&px->pairs[i]);
    return NULL;
}

int ft_proxy_start(struct ft_proxy **out, int up_port, char *errmsg, size_t errmsg_len)
{
    struct ft_proxy *px = calloc(1, sizeof(*px));
    if (px == NULL) {
        snprintf(errmsg, errmsg_len, "proxy: out of memory");
        return -1;
    }
    for (int i = 0; i < MAX_PAIRS; i++)
        px->pairs[i].cfd = px->pairs[i].ufd = -1;
    px->up_port = up_port;
    pthread_mutex_init(&px->lock, NULL);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    socklen_t alen = sizeof(a);
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    px->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (px->lfd < 0 || bind(px->lfd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(px->lfd, 64) != 0 ||
        getsockname(px->lfd, (struct sockaddr *)&a, &alen) != 0) {
        snprintf(errmsg, errmsg_len, "proxy: listen on 127.0.0.1: %s", strerror(errno));
        goto err_after_socket;
    }
    px->port = ntohs(a.sin_port);
    if (pipe2(px->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
        snprintf(errmsg, errmsg_len, "proxy: pipe: %s", strerror(errno));
        goto err_after_socket;
    }
    if (pthread_create(&px->thread, NULL, proxy_main, px) != 0) {
        snprintf(errmsg, errmsg_len, "proxy: thread: %s", strerror(errno));
        goto err_after_pipe;
    }
    *out = px;
    return 0;

err_after_pipe:
    close(px->wake[0]);
    close(px->wake[1]);
err_after_socket:
    if (px->lfd >= 0)
        close(px->lfd);
    pthread_mutex_destroy(&px->lock);
    free(px);
    return -1;
}

int ft_proxy_port(const struct ft_proxy *px)
{
    return px->port;
}

void ft_proxy_set_upstream(struct ft_proxy *px, int up_port)
{
    pthread_mutex_lock(&px->lock);
    px->up_port = up_port;
    pthread_mutex_unlock(&px->lock);
}

void ft_proxy_drop_produce_responses(struct ft_proxy *px, int n, int then_reject)
{
    pthread_mutex_lock(&px->lock);
    px->drop = n;
    px->reject_after_drop = then_reject;
    pthread_mutex_unlock(&px->lock);
}

void ft_proxy_set_reject(struct ft_proxy *px, int reject)
{
    pthread_mutex_lock(&px->lock);
    px->reject = reject;
    pthread_mutex_unlock(&px->lock);
}

int ft_proxy_dropped(struct ft_proxy *px)
{
    pthread_mutex_lock(&px->lock);
    int n = px->dropped;
    pthread_mutex_unlock(&px->lock);
    return n;
}

int ft_proxy_forwarded_produce(struct ft_proxy *px)
{
    pthread_mutex_lock(&px->lock);
    int n = px->forwarded_produce;
    pthread_mutex_unlock(&px->lock);
    return n;
}

void ft_proxy_stop(struct ft_proxy *px)
{
    if (px == NULL)
        return;
    pthread_mutex_lock(&px->lock);
    px->stop = 1;
    pthread_mutex_unlock(&px->lock);
    if (write(px->wake[1], "x", 1) < 0) { /* the poll timeout notices stop anyway */
    }
    pthread_join(px->thread, NULL);
    close(px->wake[0]);
    close(px->wake[1]);
    close(px->lfd);
    pthread_mutex_destroy(&px->lock);
    free(px);
}
