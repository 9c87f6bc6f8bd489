/* nfq_delay.c: NFQUEUE helper that holds queued packets for a seeded random delay (delay, jitter, reordering). */
/*
 * netem does not exist on this kernel, so the nemesis sends the packets of chosen links to an NFQUEUE
 * (`... queue num Q bypass` in the testbed bridge's nft table) and this program, run in the bridge's
 * namespace, decides when each is let through:
 *
 *   nfq_delay --queue Q --delay-ms D [--jitter-ms J] [--reorder-pct P] [--seed S] [--max-held N]
 *
 * Each packet is held D + uniform(0, J) ms, so a jitter larger than the gap between two packets
 * reorders them; P percent of the packets (chosen at random) pass at once, overtaking every held one.
 * Only the verdict is sent back (metadata copy mode: no payload crosses to user space). Past N held
 * packets (default 8192) new ones pass at once, and the kernel side fails open when its queue is full,
 * so the helper can slow a link but never cut it. SIGTERM/SIGINT releases every held packet, then exits 0.
 * Prints one line "nfq_delay: queue Q ready" on stdout once bound, and a count line at exit.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <linux/netfilter.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libnetfilter_queue/libnetfilter_queue.h>

#define HELD_MAX_LIMIT 65536

struct held {
    uint64_t release_ns;
    uint32_t id;
};

struct opts {
    unsigned queue;
    uint64_t delay_ns;
    uint64_t jitter_ns;
    unsigned reorder_pct;
    uint64_t seed;
    size_t max_held;
};

struct helper {
    struct opts o;
    struct nfq_q_handle *qh;
    struct held *heap; /* min-heap on release_ns */
    size_t n;
    uint64_t rng;
    uint64_t seen, delayed, passed_now, verdict_errors;
};

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* xorshift64*: the schedule of delays replays from --seed (given the same packet arrivals). */
static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

static void heap_push(struct helper *h, struct held e)
{
    size_t i = h->n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h->heap[p].release_ns <= e.release_ns)
            break;
        h->heap[i] = h->heap[p];
        i = p;
    }
    h->heap[i] = e;
}

static struct held heap_pop(struct helper *h)
{
    struct held top = h->heap[0], last = h->heap[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && h->heap[c + 1].release_ns < h->heap[c].release_ns)
            c++;
        if (last.release_ns <= h->heap[c].release_ns)
            break;
        h->heap[i] = h->heap[c];
        i = c;
    }
    if (h->n > 0)
        h->heap[i] = last;
    return top;
}

static void accept_packet(struct helper *h, uint32_t id)
{
    if (nfq_set_verdict(h->qh, id, NF_ACCEPT, 0, NULL) < 0)
        h->verdict_errors++;
}

/* Lets through every held packet whose time has come (all of them when `all`). */
static void release_due(struct helper *h, int all)
{
    uint64_t t = now_ns();
    while (h->n > 0 && (all || h->heap[0].release_ns <= t))
        accept_packet(h, heap_pop(h).id);
}

static int on_packet(struct nfq_q_handle *qh, struct nfgenmsg *msg, struct nfq_data *nfa, void *data)
{
    struct helper *h = data;
    struct nfqnl_msg_packet_hdr *ph = nfq_get_msg_packet_hdr(nfa);
    (void)qh;
    (void)msg;
    if (ph == NULL)
        return 0;
    uint32_t id = ntohl(ph->packet_id);
    h->seen++;
    uint64_t r = rng_next(&h->rng);
    if (h->n >= h->o.max_held || (h->o.reorder_pct > 0 && r % 100 < h->o.reorder_pct)) {
        h->passed_now++;
        accept_packet(h, id);
        return 0;
    }
    uint64_t jitter = h->o.jitter_ns > 0 ? rng_next(&h->rng) % (h->o.jitter_ns + 1) : 0;
    heap_push(h, (struct held){now_ns() + h->o.delay_ns + jitter, id});
    h->delayed++;
    return 0;
}

static int parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v > max)
        return -1;
    *out = v;
    return 0;
}

static int parse_opts(int argc, char **argv, struct opts *o, char *errmsg, size_t errlen)
{
    *o = (struct opts){.max_held = 8192, .seed = 1};
    for (int i = 1; i < argc; i++) {
        uint64_t v;
        const char *name = argv[i];
        if (i + 1 >= argc) {
            snprintf(errmsg, errlen, "%s needs a value", name);
            return -1;
        }
        const char *val = argv[++i];
        if (strcmp(name, "--queue") == 0 && parse_u64(val, 65535, &v) == 0)
            o->queue = (unsigned)v;
        else if (strcmp(name, "--delay-ms") == 0 && parse_u64(val, 60000, &v) == 0)
            o->delay_ns = v * 1000000u;
        else if (strcmp(name, "--jitter-ms") == 0 && parse_u64(val, 60000, &v) == 0)
            o->jitter_ns = v * 1000000u;
        else if (strcmp(name, "--reorder-pct") == 0 && parse_u64(val, 100, &v) == 0)
            o->reorder_pct = (unsigned)v;
        else if (strcmp(name, "--seed") == 0 && parse_u64(val, UINT64_MAX, &v) == 0)
            o->seed = v != 0 ? v : 1;
        else if (strcmp(name, "--max-held") == 0 && parse_u64(val, HELD_MAX_LIMIT, &v) == 0 && v > 0)
            o->max_held = (size_t)v;
        else {
            snprintf(errmsg, errlen, "bad option or value: %s %s", name, val);
            return -1;
        }
    }
    return 0;
}

/* Receives and schedules packets until a signal; 0 on a clean stop, -1 (errmsg) on a socket error. */
static int run(struct helper *h, struct nfq_handle *nh, char *errmsg, size_t errlen)
{
    char buf[4096] __attribute__((aligned));
    int fd = nfq_fd(nh);
    while (!stop_requested) {
        int timeout = 100;
        if (h->n > 0) {
            uint64_t t = now_ns(), due = h->heap[0].release_ns;
            timeout = due <= t ? 0 : (int)((due - t) / 1000000u) + 1;
            if (timeout > 100)
                timeout = 100;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int pr = poll(&p, 1, timeout);
        if (pr < 0 && errno != EINTR) {
            snprintf(errmsg, errlen, "poll: %s", strerror(errno));
            return -1;
        }
        if (pr > 0) {
            ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
            if (n >= 0)
                nfq_handle_packet(nh, buf, (int)n);
            else if (errno != EAGAIN && errno != EINTR && errno != ENOBUFS) {
                snprintf(errmsg, errlen, "recv: %s", strerror(errno));
                return -1;
            }
        }
        release_due(h, 0);
    }
    return 0;
}

int main(int argc, char **argv)
{
    char errmsg[256];
    struct helper h = {0};
    int rc = 1;
    if (parse_opts(argc, argv, &h.o, errmsg, sizeof errmsg) != 0) {
        fprintf(stderr, "nfq_delay: %s\nusage: nfq_delay --queue Q --delay-ms D [--jitter-ms J] "
                        "[--reorder-pct P] [--seed S] [--max-held N]\n", errmsg);
        return 2;
    }
    h.rng = h.o.seed;
    h.heap = calloc(h.o.max_held, sizeof *h.heap);
    if (h.heap == NULL) {
        fprintf(stderr, "nfq_delay: out of memory\n");
        return 1;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    struct nfq_handle *nh = nfq_open();
    if (nh == NULL) {
        fprintf(stderr, "nfq_delay: nfq_open: %s\n", strerror(errno));
        goto err_after_heap;
    }
    h.qh = nfq_create_queue(nh, (uint16_t)h.o.queue, on_packet, &h);
    if (h.qh == NULL) {
        fprintf(stderr, "nfq_delay: bind queue %u: %s\n", h.o.queue, strerror(errno));
        goto err_after_open;
    }
    if (nfq_set_mode(h.qh, NFQNL_COPY_META, 0) < 0 || nfq_set_queue_maxlen(h.qh, 16384) < 0 ||
        nfq_set_queue_flags(h.qh, NFQA_CFG_F_FAIL_OPEN, NFQA_CFG_F_FAIL_OPEN) < 0) {
        fprintf(stderr, "nfq_delay: configure queue %u: %s\n", h.o.queue, strerror(errno));
        goto err_after_queue;
    }
    printf("nfq_delay: queue %u ready\n", h.o.queue);
    fflush(stdout);
    if (run(&h, nh, errmsg, sizeof errmsg) != 0)
        fprintf(stderr, "nfq_delay: %s\n", errmsg);
    else
        rc = 0;
    release_due(&h, 1);
    printf("nfq_delay: queue %u: %" PRIu64 " packets, %" PRIu64 " delayed, %" PRIu64 " passed at once, %" PRIu64
           " verdict errors\n", h.o.queue, h.seen, h.delayed, h.passed_now, h.verdict_errors);
err_after_queue:
    nfq_destroy_queue(h.qh);
err_after_open:
    nfq_close(nh);
err_after_heap:
    free(h.heap);
    return rc;
}
