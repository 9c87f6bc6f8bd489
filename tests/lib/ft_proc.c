/* ft_proc.c: runs a subprocess (ferryctl) with stdin data, collects stdout/stderr and the exit code, bounded. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ferrytest.h"

extern char **environ;

struct sink {
    char *buf;
    size_t len, cap;
};

static int sink_add(struct sink *s, const char *p, size_t n)
{
    if (s->len + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 4096;
        while (cap < s->len + n + 1)
            cap *= 2;
        char *nb = realloc(s->buf, cap);
        if (!nb)
            return -1;
        s->buf = nb;
        s->cap = cap;
    }
    memcpy(s->buf + s->len, p, n);
    s->len += n;
    s->buf[s->len] = '\0';
    return 0;
}

/* Builds environ + extra into a malloc'd array (strings borrowed). */
static char **make_env(const char *const *extra)
{
    size_t n = 0, m = 0;
    while (environ[n])
        n++;
    while (extra && extra[m])
        m++;
    char **env = calloc(n + m + 1, sizeof(*env));
    if (!env)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        /* An extra "K=V" replaces the inherited K. */
        int replaced = 0;
        const char *eq = strchr(environ[i], '=');
        size_t kl = eq ? (size_t)(eq - environ[i]) + 1 : strlen(environ[i]);
        for (size_t j = 0; j < m; j++)
            if (strncmp(extra[j], environ[i], kl) == 0)
                replaced = 1;
        if (!replaced)
            env[k++] = environ[i];
    }
    for (size_t j = 0; j < m; j++)
        env[k++] = (char *)extra[j];
    env[k] = NULL;
    return env;
}

int ft_run(char *const argv[], const char *const *envp_extra, const void *stdin_data, size_t stdin_len,
           int timeout_ms, struct ft_proc_result *res, char *errmsg, size_t errmsg_len)
{
    memset(res, 0, sizeof(*res));
    int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
    char **env = make_env(envp_extra);
    if (!env) {
        snprintf(errmsg, errmsg_len, "out of memory");
        return -1;
    }
    if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC)) {
        snprintf(errmsg, errmsg_len, "pipe: %s", strerror(errno));
        goto err_pipes;
    }
    fflush(NULL);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(errmsg, errmsg_len, "fork: %s", strerror(errno));
        goto err_pipes;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        dup2(in[0], 0);
        dup2(out[1], 1);
        dup2(err[1], 2);
        execve(argv[0], argv, env);
        dprintf(2, "ft_run: exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    close(err[1]);
    in[0] = out[1] = err[1] = -1;
    fcntl(in[1], F_SETFL, O_NONBLOCK);
    signal(SIGPIPE, SIG_IGN); /* a child that exits without reading stdin must not kill us */

    struct sink so = {0}, se = {0};
    sink_add(&so, "", 0);
    sink_add(&se, "", 0);
    size_t in_off = 0;
    if (!stdin_data || stdin_len == 0) {
        close(in[1]);
        in[1] = -1;
    }
    int64_t deadline = ft_now_ms() + ft_ms(timeout_ms);
    int timed_out = 0;
    while (out[0] >= 0 || err[0] >= 0) {
        struct pollfd p[3];
        int np = 0, iout = -1, ierr = -1, iin = -1;
        if (out[0] >= 0) {
            p[np] = (struct pollfd){out[0], POLLIN, 0};
            iout = np++;
        }
        if (err[0] >= 0) {
            p[np] = (struct pollfd){err[0], POLLIN, 0};
            ierr = np++;
        }
        if (in[1] >= 0) {
            p[np] = (struct pollfd){in[1], POLLOUT, 0};
            iin = np++;
        }
        int64_t left = deadline - ft_now_ms();
        if (left <= 0) {
            timed_out = 1;
            break;
        }
        int r = poll(p, (nfds_t)np, (int)(left > 1000 ? 1000 : left));
        if (r < 0 && errno != EINTR)
            break;
        if (r <= 0)
            continue;
        char buf[8192];
        if (iout >= 0 && p[iout].revents) {
            ssize_t n = read(out[0], buf, sizeof(buf));
            if (n > 0)
                sink_add(&so, buf, (size_t)n);
            else if (n == 0 || errno != EINTR) {
                close(out[0]);
                out[0] = -1;
            }
        }
        if (ierr >= 0 && p[ierr].revents) {
            ssize_t n = read(err[0], buf, sizeof(buf));
            if (n > 0)
                sink_add(&se, buf, (size_t)n);
            else if (n == 0 || errno != EINTR) {
                close(err[0]);
                err[0] = -1;
            }
        }
        if (iin >= 0 && p[iin].revents) {
            ssize_t n = write(in[1], (const uint8_t *)stdin_data + in_off, stdin_len - in_off);
            if (n > 0)
                in_off += (size_t)n;
            if ((n < 0 && errno != EAGAIN && errno != EINTR) || in_off == stdin_len) {
                close(in[1]);
                in[1] = -1;
            }
        }
    }
    if (timed_out)
        kill(pid, SIGKILL);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (timed_out)
        res->exit_code = -1;
    else if (WIFEXITED(status))
        res->exit_code = WEXITSTATUS(status);
    else if (WIFSIGNALED(status))
        res->exit_code = 128 + WTERMSIG(status);
    else
        res->exit_code = -1;
    res->out = so.buf;
    res->out_len = so.len;
    res->err = se.buf;
    res->err_len = se.len;
    for (int i = 0; i < 2; i++) {
        if (in[i] >= 0)
            close(in[i]);
        if (out[i] >= 0)
            close(out[i]);
        if (err[i] >= 0)
            close(err[i]);
    }
    free(env);
    return 0;

err_pipes:
    for (int i = 0; i < 2; i++) {
        if (in[i] >= 0)
            close(in[i]);
        if (out[i] >= 0)
            close(out[i]);
        if (err[i] >= 0)
            close(err[i]);
    }
    free(env);
    return -1;
}

void ft_proc_result_free(struct ft_proc_result *res)
{
    free(res->out);
    free(res->err);
    res->out = res->err = NULL;
}
