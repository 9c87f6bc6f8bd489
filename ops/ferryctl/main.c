/* main.c: ferryctl entry point: global flags, environment, command table, dispatch, help, exit codes. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferryctl.h"

#define FERRYCTL_VERSION "0.1.0"

/* Global option ids (commands use ids below 1000). */
enum {
    G_BROKERS = 1000,
    G_CA,
    G_CERT,
    G_KEY,
    G_PLAINTEXT,
    G_SET,
    G_FORMAT,
    G_TIMEOUT,
    G_PROFILE,
    G_HELP,
    G_VERSION,
    G_VERBOSE,
};

static const struct optdef global_opts[] = {
    {"brokers", 'b', 1, G_BROKERS, "HOST:PORT[,..]",
     "brokers to bootstrap from (default $FERRY_BROKERS or " CTL_DEFAULT_BROKERS ")"},
    {"ca", 0, 1, G_CA, "FILE", "CA certificate(s) (PEM) that verify the brokers"},
    {"cert", 0, 1, G_CERT, "FILE", "client certificate (PEM) for mutual TLS"},
    {"key", 0, 1, G_KEY, "FILE", "client private key (PEM) for mutual TLS"},
    {"plaintext", 0, 0, G_PLAINTEXT, NULL, "connect without TLS (a broker listening in plaintext)"},
    {"set", 'X', 1, G_SET, "KEY=VALUE", "any libferry setting, e.g. -X linger.ms=5 (repeatable)"},
    {"format", 0, 1, G_FORMAT, "text|json", "output format (default text)"},
    {"timeout", 0, 1, G_TIMEOUT, "MS", "deadline for each broker operation (default 10000)"},
    {"profile", 0, 1, G_PROFILE, "NAME", "use a saved connection profile (see `ferryctl profile`)"},
    {"verbose", 'v', 0, G_VERBOSE, NULL, "print libferry's connection log on stderr"},
    {"help", 'h', 0, G_HELP, NULL, "show help for the command"},
    {"version", 0, 0, G_VERSION, NULL, "print versions and exit"},
    {0},
};

const struct optdef *ctl_global_opts(void) { return global_opts; }

static int cmd_version(struct ctl *ctl, const struct parsed *p);
static const struct optdef no_opts[] = {{0}};

static const struct command commands[] = {
    {"topic", "create", "NAME...", "create topics",
     "Creates each NAME with the given partition count, replication factor and configs.\n"
     "Topic configs: retention.ms, retention.bytes, segment.bytes, segment.ms.",
     topic_create_opts, cmd_topic_create, false},
    {"topic", "list", "", "list topics with their partition counts", NULL, topic_list_opts,
     cmd_topic_list, false},
    {"topic", "describe", "NAME...", "partitions, leaders, replicas, log start/end offsets, configs",
     NULL, topic_describe_opts, cmd_topic_describe, false},
    {"topic", "delete", "NAME...", "delete topics and all their records (needs --yes)",
     "Without --yes nothing is deleted: ferryctl prints what would be deleted (partitions, records)\n"
     "and exits 2; with --dry-run it prints the same and exits 0.",
     topic_delete_opts, cmd_topic_delete, false},
    {"produce", NULL, "TOPIC", "publish records read from stdin, one per line",
     "Each line of stdin (without its newline) becomes one record's value. With --key-sep SEP a\n"
     "line is KEY<SEP>VALUE (a line without SEP has no key; SEP may be written '\\t'). Waits for\n"
     "every delivery (bounded by --timeout) before it exits; exit 1 if any record was not delivered.",
     produce_opts, cmd_produce, false},
    {"topic", "produce", "TOPIC", "same as `ferryctl produce`", NULL, produce_opts, cmd_produce, true},
    {"consume", NULL, "TOPIC", "read records and print them",
     "Reads the given partitions (default all) from --from (default start) and prints each record:\n"
     "text prints the value per line (or --print TEMPLATE), json one object per line. Stops after\n"
     "-n records, or after --timeout ms without a new record; without either it follows the topic\n"
     "until interrupted (Ctrl-C ends it cleanly, exit 0).\n"
     "--print templates: %t topic, %p partition, %o offset, %k key, %v value, %T timestamp (ms),\n"
     "%d timestamp (RFC 3339, UTC), %h headers (name=value, comma-separated), %% a percent sign;\n"
     "\\n \\t \\r \\\\ escapes. Here --timeout is the idle timeout; the deadline of the metadata and\n"
     "offset requests is FERRYCTL_TIMEOUT (default 10000 ms).",
     consume_opts, cmd_consume, false},
    {"topic", "consume", "TOPIC", "same as `ferryctl consume`", NULL, consume_opts, cmd_consume, true},
    {"cluster", "info", "", "brokers, controller, topic and partition counts, leaders per broker", NULL,
     cluster_info_opts, cmd_cluster_info, false},
    {"group", "list", "", "consumer groups of every broker: state and member count", NULL, group_list_opts,
     cmd_group_list, false},
    {"group", "describe", "GROUP", "members, client ids, assignments, committed offsets, log end and lag",
     "Asks the group's coordinator. Per partition: the committed offset, the log end offset and\n"
     "the lag (log end - committed; log end - log start when nothing is committed); then the total lag.",
     group_describe_opts, cmd_group_describe, false},
    {"group", "seek", "GROUP", "reset a group's committed offsets (dry run unless --execute)",
     "Resolves --to for each partition (--topic, else every partition with a committed offset) and\n"
     "prints the plan: current committed offset, new offset (clamped to the log), log end. Nothing\n"
     "changes without --execute. Allowed on an active group: the coordinator writes the offsets and\n"
     "the members owning those partitions seek to them before their next fetch.\n"
     "Example: ferryctl group seek billing --to shift:-100 --topic orders:0,1 --execute",
     group_seek_opts, cmd_group_seek, false},
    {"group", "reset", "GROUP", "same as `ferryctl group seek`", NULL, group_seek_opts, cmd_group_seek, true},
    {"group", "delete", "GROUP...", "delete groups and their committed offsets (only empty groups)", NULL,
     group_delete_opts, cmd_group_delete, false},
    {"profile", "create", "NAME", "save the global flags given here as a named profile",
     "Example: ferryctl profile create dev --brokers 127.0.0.1:9700 --ca build/certs/ca.crt --use",
     profile_create_opts, cmd_profile_create, false},
    {"profile", "list", "", "list saved profiles (* marks the current one)", NULL, profile_plain_opts,
     cmd_profile_list, false},
    {"profile", "show", "[NAME]", "print a profile's settings (default: the current one)", NULL,
     profile_plain_opts, cmd_profile_show, false},
    {"profile", "use", "NAME", "make NAME the current profile", NULL, profile_plain_opts,
     cmd_profile_use, false},
    {"profile", "delete", "NAME", "delete a saved profile", NULL, profile_delete_opts,
     cmd_profile_delete, false},
    {"version", NULL, "", "print ferryctl's and libferry's versions", NULL, no_opts, cmd_version, false},
};
#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static const char exit_codes_help[] =
    "Exit codes: 0 ok, 1 operation failed, 2 usage error, 3 partial failure (some items failed).\n";

static void print_opts(FILE *out, const struct optdef *o)
{
    for (; o->lng; o++) {
        char left[64];
        int n;
        if (o->shrt)
            n = snprintf(left, sizeof(left), "-%c, --%s%s%s", o->shrt, o->lng, o->argname ? " " : "",
                         o->argname ? o->argname : "");
        else
            n = snprintf(left, sizeof(left), "    --%s%s%s", o->lng, o->argname ? " " : "",
                         o->argname ? o->argname : "");
        if (n < 30)
            fprintf(out, "  %-30s %s\n", left, o->help);
        else
            fprintf(out, "  %s\n  %-30s %s\n", left, "", o->help);
    }
}

static void print_overview(FILE *out)
{
    fprintf(out, "ferryctl %s: the command line for Ferry brokers\n\n"
                 "Usage: ferryctl [GLOBAL FLAGS] COMMAND [ARGS] [FLAGS]\n\nCommands:\n",
            FERRYCTL_VERSION);
    for (size_t i = 0; i < NCOMMANDS; i++) {
        const struct command *c = &commands[i];
        if (c->hidden)
            continue;
        char name[64];
        snprintf(name, sizeof(name), "%s%s%s %s", c->noun, c->verb ? " " : "", c->verb ? c->verb : "",
                 c->args);
        fprintf(out, "  %-28s %s\n", name, c->summary);
    }
    fprintf(out, "\nGlobal flags (accepted by every command, anywhere on the line):\n");
    print_opts(out, global_opts);
    fprintf(out, "\nEnvironment: FERRYCTL_BROKERS (or FERRY_BROKERS), FERRYCTL_CA, FERRYCTL_CERT,\n"
                 "FERRYCTL_KEY, FERRYCTL_PLAINTEXT=1, FERRYCTL_FORMAT, FERRYCTL_TIMEOUT,\n"
                 "FERRYCTL_PROFILE, and FERRYCTL_X_<KEY> for -X (FERRYCTL_X_LINGER_MS=5 is -X linger.ms=5).\n"
                 "Precedence: flag > environment > profile > default.\n\n%s"
                 "\nRun `ferryctl COMMAND --help` for a command's flags. Docs: docs/cli.md\n",
            exit_codes_help);
}

void print_command_help(const struct command *cmd)
{
    printf("Usage: ferryctl %s%s%s %s [FLAGS]\n\n%s.\n", cmd->noun, cmd->verb ? " " : "",
           cmd->verb ? cmd->verb : "", cmd->args, cmd->summary);
    if (cmd->details)
        printf("\n%s\n", cmd->details);
    if (cmd->opts && cmd->opts[0].lng) {
        printf("\nFlags:\n");
        print_opts(stdout, cmd->opts);
    }
    printf("\nGlobal flags:\n");
    print_opts(stdout, global_opts);
    printf("\n%s", exit_codes_help);
}

static void print_noun_help(FILE *out, const char *noun)
{
    fprintf(out, "Usage: ferryctl %s VERB [ARGS] [FLAGS]\n\nVerbs:\n", noun);
    for (size_t i = 0; i < NCOMMANDS; i++) {
        const struct command *c = &commands[i];
        if (strcmp(c->noun, noun) == 0 && c->verb) {
            char name[48];
            snprintf(name, sizeof(name), "%s %s", c->verb, c->args);
            fprintf(out, "  %-22s %s\n", name, c->summary);
        }
    }
    fprintf(out, "\nRun `ferryctl %s VERB --help` for details.\n%s", noun, exit_codes_help);
}

/* ---- helpers shared by the commands ---- */

int parse_i64(const char *s, int64_t min, int64_t max, int64_t *out)
{
    if (!s || !*s)
        return -1;
    errno = 0;
    char *end = NULL;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || end == s || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

int split_kv(const char *s, char **key, char **val)
{
    const char *eq = strchr(s, '=');
    if (!eq || eq == s)
        return -1;
    char *k = strndup(s, (size_t)(eq - s));
    char *v = strdup(eq + 1);
    if (!k || !v) {
        free(k);
        free(v);
        return -1;
    }
    *key = k;
    *val = v;
    return 0;
}

void usage_error(const struct ctl *ctl, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "ferryctl%s%s: usage error: ", ctl && ctl->command ? " " : "",
            ctl && ctl->command ? ctl->command : "");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n(run with --help for usage)\n");
    va_end(ap);
}

void jw_error(struct jw *w, ferry_err_t err, const char *message)
{
    jw_obj_begin(w);
    jw_kint(w, "code", err);
    jw_kstr(w, "name", ferry_err_name(err));
    jw_kstr(w, "message", message);
    jw_obj_end(w);
}

void report_error(const struct ctl *ctl, ferry_err_t err, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (ctl->format == FMT_JSON) {
        struct jw w;
        fflush(stdout);
        jw_doc_begin(&w, stdout);
        jw_kstr(&w, "command", ctl->command);
        jw_kbool(&w, "ok", false);
        jw_key(&w, "error");
        jw_error(&w, err, msg);
        jw_doc_end(&w);
    }
    fprintf(stderr, "ferryctl %s: error: %s\n", ctl->command ? ctl->command : "", msg);
    if (err == FERRY_ERR__TLS && !ctl->ca)
        fprintf(stderr, "hint: a broker with a private CA needs --ca FILE (or FERRYCTL_CA); "
                        "a plaintext broker needs --plaintext\n");
    else if (err == FERRY_ERR__NO_BROKERS || err == FERRY_ERR__TRANSPORT || err == FERRY_ERR__TIMED_OUT)
        fprintf(stderr, "hint: is a broker running at %s? (--brokers, FERRY_BROKERS)\n",
                ctl->brokers ? ctl->brokers : CTL_DEFAULT_BROKERS);
}

/* ---- settings and precedence ---- */

/* Replaces *slot with a copy of val if source is at least as strong as *src. 0 or EXIT_FAIL (OOM). */
static int set_str(char **slot, int *src, const char *val, int source)
{
    if (*src > source)
        return 0;
    char *copy = strdup(val);
    if (!copy)
        return EXIT_FAIL;
    free(*slot);
    *slot = copy;
    *src = source;
    return 0;
}

static int ctl_add_setting(struct ctl *ctl, const char *key, const char *val, int source)
{
    for (size_t i = 0; i < ctl->nsettings; i++) {
        struct ctl_setting *s = &ctl->settings[i];
        if (strcmp(s->key, key) == 0) {
            if (s->source > source)
                return 0;
            char *v = strdup(val);
            if (!v)
                return EXIT_FAIL;
            free(s->val);
            s->val = v;
            s->source = source;
            return 0;
        }
    }
    if (ctl->nsettings == CTL_MAX_SETTINGS) {
        usage_error(ctl, "more than %d -X settings", CTL_MAX_SETTINGS);
        return EXIT_USAGE;
    }
    struct ctl_setting *s = &ctl->settings[ctl->nsettings];
    s->key = strdup(key);
    s->val = strdup(val);
    if (!s->key || !s->val) {
        free(s->key);
        free(s->val);
        return EXIT_FAIL;
    }
    s->source = source;
    ctl->nsettings++;
    return 0;
}

int ctl_apply_global(struct ctl *ctl, int id, const char *val, int source)
{
    int64_t n;
    switch (id) {
    case G_BROKERS:
        if (!*val) {
            usage_error(ctl, "--brokers needs HOST:PORT[,HOST:PORT..]");
            return EXIT_USAGE;
        }
        return set_str(&ctl->brokers, &ctl->brokers_src, val, source);
    case G_CA: return set_str(&ctl->ca, &ctl->ca_src, val, source);
    case G_CERT: return set_str(&ctl->cert, &ctl->cert_src, val, source);
    case G_KEY: return set_str(&ctl->key, &ctl->key_src, val, source);
    case G_PLAINTEXT:
        if (ctl->plaintext_src <= source) {
            /* a switch on the command line; "1/true/yes" or "0/false/no" from env and profiles */
            ctl->plaintext = !val || strcmp(val, "1") == 0 || strcmp(val, "true") == 0 ||
                             strcmp(val, "yes") == 0;
            ctl->plaintext_src = source;
        }
        return 0;
    case G_SET: {
        char *k, *v;
        if (split_kv(val, &k, &v) != 0) {
            usage_error(ctl, "-X wants KEY=VALUE, got '%s'", val);
            return EXIT_USAGE;
        }
        int rc = ctl_add_setting(ctl, k, v, source);
        free(k);
        free(v);
        return rc;
    }
    case G_FORMAT:
        if (ctl->format_src > source)
            return 0;
        if (strcmp(val, "text") == 0)
            ctl->format = FMT_TEXT;
        else if (strcmp(val, "json") == 0)
            ctl->format = FMT_JSON;
        else {
            usage_error(ctl, "--format must be text or json, got '%s'", val);
            return EXIT_USAGE;
        }
        ctl->format_src = source;
        return 0;
    case G_TIMEOUT:
        if (parse_i64(val, 1, INT_MAX, &n) != 0) {
            usage_error(ctl, "--timeout wants milliseconds (a positive integer), got '%s'", val);
            return EXIT_USAGE;
        }
        if (ctl->timeout_src <= source) {
            ctl->timeout_ms = (int)n;
            ctl->timeout_src = source;
        }
        return 0;
    case G_VERBOSE:
        ctl->verbose = true;
        return 0;
    case G_PROFILE: {
        if (ctl->profile && source == SRC_ENV)
            return 0; /* --profile wins over FERRYCTL_PROFILE */
        char *copy = strdup(val);
        if (!copy)
            return EXIT_FAIL;
        free(ctl->profile);
        ctl->profile = copy;
        return 0;
    }
    default: return 0;
    }
}

/* Applies FERRYCTL_* (and FERRY_BROKERS) variables at SRC_ENV. */
static int ctl_apply_env(struct ctl *ctl)
{
    static const struct {
        const char *var;
        int id;
    } vars[] = {
        {"FERRY_BROKERS", G_BROKERS}, {"FERRYCTL_BROKERS", G_BROKERS}, {"FERRYCTL_CA", G_CA},
        {"FERRYCTL_CERT", G_CERT},    {"FERRYCTL_KEY", G_KEY},         {"FERRYCTL_PLAINTEXT", G_PLAINTEXT},
        {"FERRYCTL_FORMAT", G_FORMAT}, {"FERRYCTL_TIMEOUT", G_TIMEOUT}, {"FERRYCTL_PROFILE", G_PROFILE},
    };
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
        const char *v = getenv(vars[i].var);
        if (v && *v) {
            int rc = ctl_apply_global(ctl, vars[i].id, v, SRC_ENV);
            if (rc)
                return rc;
        }
    }
    /* FERRYCTL_X_LINGER_MS=5 -> -X linger.ms=5 */
    extern char **environ;
    for (char **e = environ; *e; e++) {
        if (strncmp(*e, "FERRYCTL_X_", 11) != 0)
            continue;
        const char *eq = strchr(*e, '=');
        if (!eq || eq == *e + 11)
            continue;
        char key[256];
        size_t n = (size_t)(eq - (*e + 11));
        if (n >= sizeof(key))
            continue;
        for (size_t j = 0; j < n; j++) {
            char c = (*e)[11 + j];
            key[j] = c == '_' ? '.' : (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
        }
        key[n] = '\0';
        int rc = ctl_add_setting(ctl, key, eq + 1, SRC_ENV);
        if (rc)
            return rc;
    }
    return 0;
}

void ctl_free(struct ctl *ctl)
{
    free(ctl->brokers);
    free(ctl->ca);
    free(ctl->cert);
    free(ctl->key);
    free(ctl->profile);
    for (size_t i = 0; i < ctl->nsettings; i++) {
        free(ctl->settings[i].key);
        free(ctl->settings[i].val);
    }
    memset(ctl, 0, sizeof(*ctl));
}

/* ---- option parsing ---- */

static const struct optdef *find_long(const struct optdef *defs, const char *name, size_t len)
{
    for (const struct optdef *o = defs; o && o->lng; o++)
        if (strlen(o->lng) == len && strncmp(o->lng, name, len) == 0)
            return o;
    return NULL;
}

static const struct optdef *find_short(const struct optdef *defs, char c)
{
    for (const struct optdef *o = defs; o && o->lng; o++)
        if (o->shrt == c)
            return o;
    return NULL;
}

void parsed_free(struct parsed *p)
{
    free(p->opts);
    free(p->pos);
    memset(p, 0, sizeof(*p));
}

/* Command options shadow global ones of the same name (consume's --timeout is its idle timeout). */
int args_parse(struct ctl *ctl, const struct command *cmd, int argc, char **argv, struct parsed *out)
{
    memset(out, 0, sizeof(*out));
    size_t cap = argc > 0 ? (size_t)argc : 1;
    out->opts = calloc(cap, sizeof(*out->opts));
    out->pos = calloc(cap, sizeof(*out->pos));
    if (!out->opts || !out->pos) {
        parsed_free(out);
        return EXIT_FAIL;
    }
    bool only_pos = false;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (only_pos || a[0] != '-' || a[1] == '\0') {
            out->pos[out->npos++] = a;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            only_pos = true;
            continue;
        }
        const struct optdef *o;
        const char *val = NULL;
        bool inline_val = false;
        if (a[1] == '-') {
            const char *name = a + 2;
            const char *eq = strchr(name, '=');
            size_t len = eq ? (size_t)(eq - name) : strlen(name);
            o = find_long(cmd->opts, name, len);
            if (!o)
                o = find_long(global_opts, name, len);
            if (eq) {
                val = eq + 1;
                inline_val = true;
            }
        } else {
            o = find_short(cmd->opts, a[1]);
            if (!o)
                o = find_short(global_opts, a[1]);
            if (o && a[2]) {
                val = a + 2;
                inline_val = true;
            }
        }
        if (!o) {
            usage_error(ctl, "unknown flag '%s'", a);
            parsed_free(out);
            return EXIT_USAGE;
        }
        if (o->has_arg && !inline_val) {
            if (i + 1 >= argc) {
                usage_error(ctl, "flag '%s' needs a value (%s)", a, o->argname ? o->argname : "VALUE");
                parsed_free(out);
                return EXIT_USAGE;
            }
            val = argv[++i];
        } else if (!o->has_arg && inline_val) {
            usage_error(ctl, "flag '%s' takes no value", a);
            parsed_free(out);
            return EXIT_USAGE;
        }
        if (o->id == G_HELP) {
            out->help = true;
            continue;
        }
        if (o->id >= G_BROKERS) {
            if (o->id == G_VERSION)
                continue; /* handled before dispatch */
            int rc = ctl_apply_global(ctl, o->id, val, SRC_FLAG);
            if (rc) {
                parsed_free(out);
                return rc;
            }
            continue;
        }
        out->opts[out->nopts].id = o->id;
        out->opts[out->nopts].val = val;
        out->opts[out->nopts].name = a;
        out->nopts++;
    }
    return 0;
}

/* ---- version ---- */

static int cmd_version(struct ctl *ctl, const struct parsed *p)
{
    if (p->npos) {
        usage_error(ctl, "version takes no arguments");
        return EXIT_USAGE;
    }
    if (ctl->format == FMT_JSON) {
        struct jw w;
        jw_doc_begin(&w, stdout);
        jw_kstr(&w, "command", "version");
        jw_kbool(&w, "ok", true);
        jw_kstr(&w, "ferryctl", FERRYCTL_VERSION);
        jw_kstr(&w, "libferry", ferry_version_str());
        jw_doc_end(&w);
    } else {
        printf("ferryctl %s (libferry %s)\n", FERRYCTL_VERSION, ferry_version_str());
    }
    return EXIT_OK;
}

/* ---- dispatch ---- */

/* True if argv[i] is a global flag that consumes the next token as its value. */
static bool global_takes_next(const char *a)
{
    const struct optdef *o = NULL;
    if (a[0] != '-' || a[1] == '\0')
        return false;
    if (a[1] == '-') {
        if (strchr(a, '='))
            return false;
        o = find_long(global_opts, a + 2, strlen(a + 2));
    } else if (a[2] == '\0') {
        o = find_short(global_opts, a[1]);
    }
    return o && o->has_arg;
}

static bool has_flag(int argc, char **argv, const char *lng, const char *shrt)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            return false;
        if (strcmp(argv[i], lng) == 0 || (shrt && strcmp(argv[i], shrt) == 0))
            return true;
        if (global_takes_next(argv[i]))
            i++;
    }
    return false;
}

int main(int argc, char **argv)
{
    struct ctl ctl = {0};
    ctl.timeout_ms = CTL_DEFAULT_TIMEOUT_MS;
    int rc = EXIT_USAGE;

    /* Find the noun and verb: the first positionals, skipping global flags and their values. */
    int noun_i = -1, verb_i = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0)
            break;
        if (a[0] == '-' && a[1] != '\0') {
            if (global_takes_next(a))
                i++;
            continue;
        }
        if (noun_i < 0) {
            noun_i = i;
            bool has_verbs = false;
            for (size_t c = 0; c < NCOMMANDS; c++)
                if (strcmp(commands[c].noun, a) == 0 && commands[c].verb)
                    has_verbs = true;
            if (!has_verbs)
                break;
        } else {
            verb_i = i;
            break;
        }
    }

    if (noun_i < 0) {
        if (has_flag(argc, argv, "--version", NULL)) {
            printf("ferryctl %s (libferry %s)\n", FERRYCTL_VERSION, ferry_version_str());
            return EXIT_OK;
        }
        if (has_flag(argc, argv, "--help", "-h")) {
            print_overview(stdout);
            return EXIT_OK;
        }
        print_overview(stderr);
        return EXIT_USAGE;
    }

    const char *noun = argv[noun_i];
    const char *verb = verb_i >= 0 ? argv[verb_i] : NULL;
    const struct command *cmd = NULL;
    bool noun_known = false;
    for (size_t c = 0; c < NCOMMANDS; c++) {
        if (strcmp(commands[c].noun, noun) != 0)
            continue;
        noun_known = true;
        if (!commands[c].verb || (verb && strcmp(commands[c].verb, verb) == 0)) {
            cmd = &commands[c];
            break;
        }
    }
    if (!noun_known) {
        usage_error(NULL, "unknown command '%s'", noun);
        return EXIT_USAGE;
    }
    if (!cmd) {
        bool help = has_flag(argc, argv, "--help", "-h");
        if (verb)
            fprintf(stderr, "ferryctl: usage error: unknown verb '%s %s'\n\n", noun, verb);
        print_noun_help(help && !verb ? stdout : stderr, noun);
        return help && !verb ? EXIT_OK : EXIT_USAGE;
    }

    char cmdname[64];
    snprintf(cmdname, sizeof(cmdname), "%s%s%s", cmd->noun, cmd->verb ? " " : "", cmd->verb ? cmd->verb : "");
    ctl.command = cmdname;

    /* The command's argv: everything but the program name, noun and verb. */
    char **rest = calloc((size_t)argc, sizeof(*rest));
    if (!rest)
        return EXIT_FAIL;
    int nrest = 0;
    for (int i = 1; i < argc; i++)
        if (i != noun_i && i != verb_i)
            rest[nrest++] = argv[i];

    struct parsed p;
    rc = args_parse(&ctl, cmd, nrest, rest, &p);
    if (rc)
        goto out_rest;
    if (p.help) {
        print_command_help(cmd);
        rc = EXIT_OK;
        goto out_parsed;
    }
    rc = ctl_apply_env(&ctl);
    if (rc)
        goto out_parsed;
    if (strcmp(cmd->noun, "profile") != 0) {
        char err[512];
        if (profile_load(&ctl, err, sizeof(err)) != 0) {
            usage_error(&ctl, "%s", err);
            rc = EXIT_USAGE;
            goto out_parsed;
        }
    }
    if (!ctl.brokers) {
        rc = ctl_apply_global(&ctl, G_BROKERS, CTL_DEFAULT_BROKERS, 0);
        if (rc)
            goto out_parsed;
    }
    rc = cmd->run(&ctl, &p);
    fflush(stdout);

out_parsed:
    parsed_free(&p);
out_rest:
    free(rest);
    ctl_free(&ctl);
    return rc;
}
