/* ft_broker.c: a real ferryd process for integration tests: config, start, readiness, stop/kill/restart, logs. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ferrytest.h"

/* Bounds (scaled by the multiplier): start-up to the ready file, and a graceful stop. */
#define READY_TIMEOUT_MS 15000
#define STOP_TIMEOUT_MS 10000

/* Live brokers of this process, for ft_dump_all_brokers(). */
#define MAX_REGISTERED 16
static struct ft_broker *registered[MAX_REGISTERED];

static void reg_add(struct ft_broker *b)
{
    if (b->registered)
        return;
    for (int i = 0; i < MAX_REGISTERED; i++) {
        if (!registered[i]) {
            registered[i] = b;
            b->registered = 1;
            return;
        }
    }
}

static void reg_del(struct ft_broker *b)
{
    for (int i = 0; i < MAX_REGISTERED; i++)
        if (registered[i] == b)
            registered[i] = NULL;
    b->registered = 0;
}

void ft_broker_dump_log(const struct ft_broker *b, size_t max_bytes)
{
    size_t len = 0;
    char *log = ft_read_file(b->log_path, &len);
    fprintf(stderr, "---- ferryd log %s (pid %d, %s) ----\n", b->log_path, (int)b->pid, b->addr);
    if (!log) {
        fprintf(stderr, "(unreadable: %s)\n", strerror(errno));
    } else {
        const char *p = log;
        if (len > max_bytes) {
            p = log + (len - max_bytes);
            fprintf(stderr, "[... %zu earlier bytes ...]\n", len - max_bytes);
        }
        fputs(p, stderr);
        if (len && log[len - 1] != '\n')
            fputc('\n', stderr);
    }
    fprintf(stderr, "---- end of ferryd log ----\n");
    free(log);
}

void ft_dump_all_brokers(void)
{
    for (int i = 0; i < MAX_REGISTERED; i++)
        if (registered[i])
            ft_broker_dump_log(registered[i], 16384);
}

/* Writes the config; port 0 = ephemeral. */
static int write_config(struct ft_broker *b, int port, char *errmsg, size_t errmsg_len)
{
    char ca[400], cert[400], key[400];
    ft_cert("ca.crt", ca, sizeof(ca));
    ft_cert("server.crt", cert, sizeof(cert));
    ft_cert("server.key", key, sizeof(key));

    FILE *f = fopen(b->conf_path, "w");
    if (!f) {
        snprintf(errmsg, errmsg_len, "create %s: %s", b->conf_path, strerror(errno));
        return -1;
    }
    fprintf(f, "# written by the ferrytest fixture\n");
    fprintf(f, "node.id = %d\nlisten = 127.0.0.1:%d\ndata.dir = %s\nready.file = %s\n", b->opts.node_id, port,
            b->data_dir, b->ready_path);
    if (b->opts.security == FT_PLAINTEXT) {
        fprintf(f, "security.protocol = plaintext\n");
    } else {
        fprintf(f, "security.protocol = tls\ntls.cert.file = %s\ntls.key.file = %s\ntls.ca.file = %s\n", cert, key,
                ca);
        if (b->opts.security == FT_MTLS)
            fprintf(f, "tls.client.auth = required\n");
    }
    if (b->extra[0])
        fprintf(f, "%s%s", b->extra, b->extra[strlen(b->extra) - 1] == '\n' ? "" : "\n");
    if (fclose(f) != 0) {
        snprintf(errmsg, errmsg_len, "write %s: %s", b->conf_path, strerror(errno));
        return -1;
    }
    return 0;
}

static void record_exit(struct ft_broker *b, int status)
{
    b->last_status = status;
    b->pid = 0;
}

static int exit_code_of(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return -1;
}

int ft_broker_alive(struct ft_broker *b)
{
    if (b->pid <= 0)
        return 0;
    int status;
    pid_t r = waitpid(b->pid, &status, WNOHANG);
    if (r == b->pid) {
        record_exit(b, status);
        return 0;
    }
    return r == 0;
}

/* Reads "host:port\n" from the ready file. Returns 1 when read, 0 when not there yet. */
static int read_ready(struct ft_broker *b)
{
    size_t len = 0;
    char *s = ft_read_file(b->ready_path, &len);
    if (!s)
        return 0;
    int ok = 0;
    char *nl = strchr(s, '\n');
    if (nl) { /* written atomically with its newline; without one it is not complete */
        *nl = '\0';
        char *colon = strrchr(s, ':');
        if (colon && colon != s) {
            *colon = '\0';
            int port = atoi(colon + 1);
            const char *host = s;
            size_t hl = strlen(host);
            if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') { /* [v6] */
                host++;
                s[hl - 1] = '\0';
            }
            if (port > 0 && port < 65536 && strlen(host) < sizeof(b->host)) {
                snprintf(b->host, sizeof(b->host), "%s", host);
                b->port = port;
                snprintf(b->addr, sizeof(b->addr), "%s:%d", b->host, b->port);
                ok = 1;
            }
        }
    }
    free(s);
    return ok;
}

/* Forks and execs ferryd --config <conf>, output appended to the log, then waits for readiness. */
static int spawn_and_wait(struct ft_broker *b, char *errmsg, size_t errmsg_len)
{
    char ferryd[600];
    snprintf(ferryd, sizeof(ferryd), "%s/ferryd", ft_build_dir());
    if (access(ferryd, X_OK) != 0) {
        snprintf(errmsg, errmsg_len, "%s: %s (build it: make)", ferryd, strerror(errno));
        return -1;
    }
    /* A ready file left by a kill -9 must not be mistaken for the new process's. */
    if (unlink(b->ready_path) != 0 && errno != ENOENT) {
        snprintf(errmsg, errmsg_len, "unlink %s: %s", b->ready_path, strerror(errno));
        return -1;
    }
    int logfd = open(b->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (logfd < 0) {
        snprintf(errmsg, errmsg_len, "open %s: %s", b->log_path, strerror(errno));
        return -1;
    }
    char banner[128];
    int bn = snprintf(banner, sizeof(banner), "==== ferrytest: start #%d ====\n", b->starts + 1);
    if (write(logfd, banner, (size_t)bn) < 0) {
        /* the log is best effort */
    }
    fflush(NULL); /* nothing buffered may be written twice by the child */
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(errmsg, errmsg_len, "fork: %s", strerror(errno));
        close(logfd);
        return -1;
    }
    if (pid == 0) {
        /* Child: die with the test process (a test killed by its timeout leaves no broker behind). */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0)
            dup2(devnull, 0);
        dup2(logfd, 1);
        dup2(logfd, 2);
        char *argv[] = {ferryd, "--config", b->conf_path, NULL};
        execv(ferryd, argv);
        dprintf(2, "ferrytest: exec %s: %s\n", ferryd, strerror(errno));
        _exit(127);
    }
    close(logfd);
    b->pid = pid;
    b->starts++;
    reg_add(b);

    int64_t deadline = ft_now_ms() + ft_ms(READY_TIMEOUT_MS);
    for (;;) {
        if (read_ready(b))
            return 0;
        if (!ft_broker_alive(b)) {
            snprintf(errmsg, errmsg_len, "ferryd exited before it was ready (exit %d); log: %s",
                     exit_code_of(b->last_status), b->log_path);
            ft_broker_dump_log(b, 8192);
            return -1;
        }
        if (ft_now_ms() > deadline) {
            snprintf(errmsg, errmsg_len, "ferryd not ready after %d ms (no %s); log: %s", ft_ms(READY_TIMEOUT_MS),
                     b->ready_path, b->log_path);
            ft_broker_dump_log(b, 8192);
            ft_broker_kill(b);
            return -1;
        }
        ft_sleep_ms(10);
    }
}

int ft_broker_start(struct ft_broker *b, const struct ft_broker_opts *o, char *errmsg, size_t errmsg_len)
{
    memset(b, 0, sizeof(*b));
    b->last_status = -1;
    if (o)
        b->opts = *o;
    if (b->opts.extra) {
        if (strlen(b->opts.extra) >= sizeof(b->extra)) {
            snprintf(errmsg, errmsg_len, "extra config longer than %zu bytes", sizeof(b->extra) - 1);
            return -1;
        }
        snprintf(b->extra, sizeof(b->extra), "%s", b->opts.extra);
        b->opts.extra = NULL; /* the copy is used from now on */
    }
    if (b->opts.security != FT_PLAINTEXT) {
        char ca[400];
        if (access(ft_cert("ca.crt", ca, sizeof(ca)), R_OK) != 0) {
            snprintf(errmsg, errmsg_len, "%s missing (run: make certs)", ca);
            return -1;
        }
    }
    if (ft_tmpdir_make("broker", b->root, sizeof(b->root), errmsg, errmsg_len) != 0)
        return -1;
    snprintf(b->conf_path, sizeof(b->conf_path), "%s/ferryd.conf", b->root);
    snprintf(b->data_dir, sizeof(b->data_dir), "%s/data", b->root);
    snprintf(b->ready_path, sizeof(b->ready_path), "%s/ready", b->root);
    snprintf(b->log_path, sizeof(b->log_path), "%s/ferryd.log", b->root);
    if (write_config(b, 0, errmsg, errmsg_len) != 0)
        goto err_dir;
    if (spawn_and_wait(b, errmsg, errmsg_len) != 0)
        goto err_dir;
    return 0;

err_dir:
    reg_del(b);
    ft_rmrf(b->root);
    b->root[0] = '\0';
    return -1;
}

int ft_broker_restart(struct ft_broker *b, char *errmsg, size_t errmsg_len)
{
    if (ft_broker_alive(b)) {
        snprintf(errmsg, errmsg_len, "broker pid %d is still running", (int)b->pid);
        return -1;
    }
    int old_port = b->port;
    if (write_config(b, old_port, errmsg, errmsg_len) != 0)
        return -1;
    if (spawn_and_wait(b, errmsg, errmsg_len) == 0)
        return 0;
    /* The old port may have been taken meanwhile: one more try on a fresh one. */
    fprintf(stderr, "ferrytest: restart on port %d failed (%s); retrying on a fresh port\n", old_port, errmsg);
    if (write_config(b, 0, errmsg, errmsg_len) != 0)
        return -1;
    return spawn_and_wait(b, errmsg, errmsg_len);
}

/* Waits up to ms for the process to exit. Returns 1 if it exited (status recorded), 0 if not. */
static int wait_exit(struct ft_broker *b, int ms)
{
    int64_t deadline = ft_now_ms() + ms;
    for (;;) {
        int status;
        pid_t r = waitpid(b->pid, &status, WNOHANG);
        if (r == b->pid || (r < 0 && errno == ECHILD)) {
            record_exit(b, r == b->pid ? status : -1);
            return 1;
        }
        if (ft_now_ms() > deadline)
            return 0;
        ft_sleep_ms(5);
    }
}

int ft_broker_stop(struct ft_broker *b)
{
    if (!ft_broker_alive(b))
        return -1;
    kill(b->pid, SIGTERM);
    if (!wait_exit(b, ft_ms(STOP_TIMEOUT_MS))) {
        fprintf(stderr, "ferrytest: ferryd pid %d ignored SIGTERM for %d ms: SIGKILL\n", (int)b->pid,
                ft_ms(STOP_TIMEOUT_MS));
        kill(b->pid, SIGKILL);
        while (!wait_exit(b, 1000)) {
        }
    }
    return b->last_status == -1 ? -1 : exit_code_of(b->last_status);
}

int ft_broker_kill(struct ft_broker *b)
{
    if (!ft_broker_alive(b))
        return -1;
    kill(b->pid, SIGKILL);
    while (!wait_exit(b, 1000)) {
    }
    return 0;
}

void ft_broker_destroy(struct ft_broker *b)
{
    if (ft_broker_alive(b)) {
        int code = ft_broker_stop(b);
        if (code != 0) {
            fprintf(stderr, "ferrytest: ferryd did not stop cleanly (exit %d)\n", code);
            ft_broker_dump_log(b, 8192);
        }
    }
    reg_del(b);
    if (b->root[0]) {
        if (ft_rmrf(b->root) != 0)
            fprintf(stderr, "ferrytest: could not remove %s\n", b->root);
        b->root[0] = '\0';
    }
}
