/* main.c: ferryd's entry point: arguments, configuration, signals, and the event loop. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "broker.h"
#include "config.h"
#include "handlers/handlers.h"
#include "logging.h"

/* Exit codes: 0 clean stop, 1 runtime failure, 2 bad usage or configuration. */
#define EXIT_RUNTIME 1
#define EXIT_USAGE 2

static void usage(FILE *out)
{
    fprintf(out, "usage: ferryd [--config FILE] [--set key=value]... [--check-config] [--print-config-doc]\n"
                 "              [--help] [--version]\n"
                 "\n"
                 "  --config FILE       read settings from FILE (key = value lines, # comments)\n"
                 "  --set key=value     override one setting (repeatable; applied after the file)\n"
                 "  --check-config      validate the configuration, print the effective settings, exit\n"
                 "  --print-config-doc  print the settings reference (docs/configuration.md) as markdown\n"
                 "  --help, --version\n"
                 "\n"
                 "SIGINT/SIGTERM stop the broker gracefully (in-flight syncs finish and are answered).\n");
}

struct signals {
    uv_signal_t sigint;
    uv_signal_t sigterm;
    struct ferryd *broker;
};

static void on_signal(uv_signal_t *h, int signum)
{
    struct signals *s = h->data;
    LOG_INFO("received %s: stopping gracefully", signum == SIGINT ? "SIGINT" : "SIGTERM");
    /* Closing the handles restores the default action: a second signal stops the broker at once. */
    uv_close((uv_handle_t *)&s->sigint, NULL);
    uv_close((uv_handle_t *)&s->sigterm, NULL);
    ferryd_stop(s->broker);
}

int main(int argc, char **argv)
{
    const char *config_file = NULL;
    const char **sets = calloc((size_t)argc, sizeof(*sets));
    int nsets = 0, check_only = 0;
    char errmsg[1024];
    struct ferryd_config cfg;
    struct ferryd broker;
    struct signals sig;
    uv_loop_t loop;
    int status = EXIT_USAGE;

    if (sets == NULL) {
        fprintf(stderr, "ferryd: out of memory\n");
        return EXIT_RUNTIME;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            status = 0;
            goto out_args;
        } else if (strcmp(a, "--version") == 0) {
            printf("ferryd %s\n", FERRYD_VERSION);
            status = 0;
            goto out_args;
        } else if (strcmp(a, "--print-config-doc") == 0) {
            ferryd_config_print_doc(stdout);
            status = 0;
            goto out_args;
        } else if (strcmp(a, "--check-config") == 0) {
            check_only = 1;
        } else if (strcmp(a, "--config") == 0 && i + 1 < argc) {
            config_file = argv[++i];
        } else if (strncmp(a, "--config=", 9) == 0) {
            config_file = a + 9;
        } else if (strcmp(a, "--set") == 0 && i + 1 < argc) {
            sets[nsets++] = argv[++i];
        } else if (strncmp(a, "--set=", 6) == 0) {
            sets[nsets++] = a + 6;
        } else {
            fprintf(stderr, "ferryd: unknown or incomplete argument '%s'\n", a);
            usage(stderr);
            goto out_args;
        }
    }

    if (ferryd_config_init(&cfg, errmsg, sizeof(errmsg)) != 0) {
        fprintf(stderr, "ferryd: %s\n", errmsg);
        goto out_args;
    }
    if (config_file != NULL && ferryd_config_load_file(&cfg, config_file, errmsg, sizeof(errmsg)) != 0) {
        fprintf(stderr, "ferryd: configuration: %s\n", errmsg);
        goto out_config;
    }
    for (int i = 0; i < nsets; i++) {
        if (ferryd_config_set_arg(&cfg, sets[i], errmsg, sizeof(errmsg)) != 0) {
            fprintf(stderr, "ferryd: configuration: %s\n", errmsg);
            goto out_config;
        }
    }
    if (ferryd_config_validate(&cfg, errmsg, sizeof(errmsg)) != 0) {
        fprintf(stderr, "ferryd: configuration: %s\n", errmsg);
        goto out_config;
    }
    if (check_only) {
        ferryd_config_print(&cfg, stdout);
        status = 0;
        goto out_config;
    }

    ferryd_log_setup(cfg.log_level, cfg.log_format, cfg.node_id);
    signal(SIGPIPE, SIG_IGN); /* a peer that vanishes mid-write is an error return, not a signal */
    status = EXIT_RUNTIME;
    if (uv_loop_init(&loop) != 0) {
        LOG_ERROR("cannot initialize the event loop");
        goto out_config;
    }
    if (ferryd_start(&broker, &loop, &cfg, errmsg, sizeof(errmsg)) != 0) {
        LOG_ERROR("start-up failed: %s", errmsg);
        uv_run(&loop, UV_RUN_DEFAULT); /* lets handles opened before the failure close */
        uv_loop_close(&loop);
        goto out_config;
    }
    sig.broker = &broker;
    uv_signal_init(&loop, &sig.sigint);
    uv_signal_init(&loop, &sig.sigterm);
    sig.sigint.data = sig.sigterm.data = &sig;
    uv_signal_start(&sig.sigint, on_signal, SIGINT);
    uv_signal_start(&sig.sigterm, on_signal, SIGTERM);

    uv_run(&loop, UV_RUN_DEFAULT);

    int rc = uv_loop_close(&loop);
    if (rc != 0) {
        LOG_ERROR("event loop did not close cleanly: %s", uv_strerror(rc));
        goto out_config;
    }
    status = 0;
out_config:
    ferryd_config_free(&cfg);
out_args:
    free(sets);
    return status;
}
