/* profile.c: named connection profiles: files of global flags under ~/.config/ferryctl/profiles/. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ferryctl.h"

/*
 * A profile is a text file of global flags, one "name = value" per line (long flag names: brokers,
 * ca, cert, key, plaintext, format, timeout, set); '#' starts a comment. The current profile's name
 * is in <dir>/current. <dir> is $FERRYCTL_CONFIG_DIR, else $XDG_CONFIG_HOME/ferryctl, else
 * $HOME/.config/ferryctl.
 */

#define PROFILE_MAX_NAME 64
#define PROFILE_MAX_LINE 4096

enum { P_USE = 1, P_FORCE, P_YES };
const struct optdef profile_create_opts[] = {
    {"use", 0, 0, P_USE, NULL, "also make it the current profile"},
    {"force", 0, 0, P_FORCE, NULL, "overwrite an existing profile of that name"},
    {0},
};
const struct optdef profile_plain_opts[] = {{0}};
const struct optdef profile_delete_opts[] = {
    {"yes", 'y', 0, P_YES, NULL, "really delete it"},
    {0},
};

static int config_dir(char *buf, size_t len)
{
    const char *d = getenv("FERRYCTL_CONFIG_DIR");
    int n;
    if (d && *d)
        n = snprintf(buf, len, "%s", d);
    else if ((d = getenv("XDG_CONFIG_HOME")) && *d)
        n = snprintf(buf, len, "%s/ferryctl", d);
    else if ((d = getenv("HOME")) && *d)
        n = snprintf(buf, len, "%s/.config/ferryctl", d);
    else
        return -1;
    return n > 0 && (size_t)n < len ? 0 : -1;
}

static bool valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > PROFILE_MAX_NAME || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '.' || *s == '_' || *s == '-'))
            return false;
    return true;
}

static int profile_path(const char *name, char *buf, size_t len)
{
    char dir[PATH_MAX];
    if (config_dir(dir, sizeof(dir)) != 0)
        return -1;
    int n = snprintf(buf, len, "%s/profiles/%s.conf", dir, name);
    return n > 0 && (size_t)n < len ? 0 : -1;
}

/* Reads the current profile's name into buf; 0 if found, -1 if none is set. */
static int current_name(char *buf, size_t len)
{
    char dir[PATH_MAX], path[PATH_MAX + 16];
    if (config_dir(dir, sizeof(dir)) != 0)
        return -1;
    snprintf(path, sizeof(path), "%s/current", dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    int rc = -1;
    if (fgets(buf, (int)len, f)) {
        buf[strcspn(buf, "\r\n")] = '\0';
        rc = valid_name(buf) ? 0 : -1;
    }
    fclose(f);
    return rc;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    char *e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n'))
        *--e = '\0';
    return s;
}

/*
 * Calls fn(name, value) for each setting line of the profile file at path. Returns 0, or -1 with
 * errmsg set (missing file, a malformed line, or fn's failure).
 */
static int profile_read(const char *path, int (*fn)(void *arg, const char *k, const char *v), void *arg,
                        char *errmsg, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(errmsg, errlen, "profile %s: %s", path, strerror(errno));
        return -1;
    }
    char line[PROFILE_MAX_LINE];
    int lineno = 0, rc = 0;
    while (fgets(line, sizeof(line), f)) {
        lineno++;
        char *s = trim(line);
        if (*s == '\0' || *s == '#')
            continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            snprintf(errmsg, errlen, "%s:%d: expected 'name = value'", path, lineno);
            rc = -1;
            break;
        }
        *eq = '\0';
        char *k = trim(s), *v = trim(eq + 1);
        if (fn(arg, k, v) != 0) {
            snprintf(errmsg, errlen, "%s:%d: bad setting '%s'", path, lineno, k);
            rc = -1;
            break;
        }
    }
    fclose(f);
    return rc;
}

static int apply_line(void *arg, const char *k, const char *v)
{
    struct ctl *ctl = arg;
    for (const struct optdef *o = ctl_global_opts(); o->lng; o++) {
        if (strcmp(o->lng, k) != 0)
            continue;
        if (strcmp(k, "profile") == 0 || strcmp(k, "help") == 0 || strcmp(k, "version") == 0)
            return -1;
        return ctl_apply_global(ctl, o->id, v, SRC_PROFILE) == 0 ? 0 : -1;
    }
    return -1;
}

int profile_load(struct ctl *ctl, char *errmsg, size_t errlen)
{
    char name[PROFILE_MAX_NAME + 2];
    bool explicit_name = ctl->profile != NULL;
    if (explicit_name) {
        if (!valid_name(ctl->profile)) {
            snprintf(errmsg, errlen, "invalid profile name '%s'", ctl->profile);
            return -1;
        }
        snprintf(name, sizeof(name), "%s", ctl->profile);
    } else if (current_name(name, sizeof(name)) != 0) {
        return 0; /* no profile: defaults and flags only */
    }
    char path[PATH_MAX];
    if (profile_path(name, path, sizeof(path)) != 0) {
        snprintf(errmsg, errlen, "cannot locate the ferryctl config directory (set HOME)");
        return -1;
    }
    if (!explicit_name && access(path, R_OK) != 0)
        return 0; /* a dangling "current": ignore it */
    if (!explicit_name) {
        ctl->profile = strdup(name);
        if (!ctl->profile) {
            snprintf(errmsg, errlen, "out of memory");
            return -1;
        }
    }
    return profile_read(path, apply_line, ctl, errmsg, errlen);
}

static int mkdirs(const char *path)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof(tmp), "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return mkdir(tmp, 0700) != 0 && errno != EEXIST ? -1 : 0;
}

static int write_current(const char *name)
{
    char dir[PATH_MAX], path[PATH_MAX + 16];
    if (config_dir(dir, sizeof(dir)) != 0 || mkdirs(dir) != 0)
        return -1;
    snprintf(path, sizeof(path), "%s/current", dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fprintf(f, "%s\n", name);
    return fclose(f) == 0 ? 0 : -1;
}

/* Writes "name = value" with file paths made absolute, so the profile works from any directory. */
static void write_path_line(FILE *f, const char *name, const char *val)
{
    char abs[PATH_MAX];
    if (val[0] != '/' && realpath(val, abs))
        val = abs;
    fprintf(f, "%s = %s\n", name, val);
}

static void profile_result(const struct ctl *ctl, const char *name, const char *path, const char *action)
{
    if (ctl->format == FMT_JSON) {
        struct jw w;
        jw_doc_begin(&w, stdout);
        jw_kstr(&w, "command", ctl->command);
        jw_kbool(&w, "ok", true);
        jw_kstr(&w, "profile", name);
        jw_kstr(&w, "path", path);
        jw_doc_end(&w);
    } else {
        printf("profile %s %s (%s)\n", name, action, path);
    }
}

int cmd_profile_create(struct ctl *ctl, const struct parsed *p)
{
    bool use = false, force = false;
    for (size_t i = 0; i < p->nopts; i++) {
        if (p->opts[i].id == P_USE)
            use = true;
        else if (p->opts[i].id == P_FORCE)
            force = true;
    }
    if (p->npos != 1 || !valid_name(p->pos[0])) {
        usage_error(ctl, "profile create wants one NAME of [A-Za-z0-9._-], at most %d characters",
                    PROFILE_MAX_NAME);
        return EXIT_USAGE;
    }
    const char *name = p->pos[0];
    char dir[PATH_MAX], path[PATH_MAX];
    if (config_dir(dir, sizeof(dir)) != 0 || profile_path(name, path, sizeof(path)) != 0) {
        report_error(ctl, FERRY_ERR__INVALID_ARG, "cannot locate the ferryctl config directory (set HOME)");
        return EXIT_FAIL;
    }
    char pdir[PATH_MAX + 16];
    snprintf(pdir, sizeof(pdir), "%s/profiles", dir);
    if (mkdirs(pdir) != 0) {
        report_error(ctl, FERRY_ERR__INVALID_ARG, "create %s: %s", pdir, strerror(errno));
        return EXIT_FAIL;
    }
    if (!force && access(path, F_OK) == 0) {
        report_error(ctl, FERRY_ERR__INVALID_ARG, "profile %s exists (use --force to overwrite)", name);
        return EXIT_FAIL;
    }
    FILE *f = fopen(path, "w");
    if (!f) {
        report_error(ctl, FERRY_ERR__INVALID_ARG, "write %s: %s", path, strerror(errno));
        return EXIT_FAIL;
    }
    fprintf(f, "# ferryctl profile \"%s\": global flags, one 'name = value' per line\n", name);
    if (ctl->brokers_src == SRC_FLAG)
        fprintf(f, "brokers = %s\n", ctl->brokers);
    if (ctl->ca_src == SRC_FLAG)
        write_path_line(f, "ca", ctl->ca);
    if (ctl->cert_src == SRC_FLAG)
        write_path_line(f, "cert", ctl->cert);
    if (ctl->key_src == SRC_FLAG)
        write_path_line(f, "key", ctl->key);
    if (ctl->plaintext_src == SRC_FLAG)
        fprintf(f, "plaintext = %s\n", ctl->plaintext ? "true" : "false");
    if (ctl->timeout_src == SRC_FLAG)
        fprintf(f, "timeout = %d\n", ctl->timeout_ms);
    for (size_t i = 0; i < ctl->nsettings; i++)
        if (ctl->settings[i].source == SRC_FLAG)
            fprintf(f, "set = %s=%s\n", ctl->settings[i].key, ctl->settings[i].val);
    if (fclose(f) != 0) {
        report_error(ctl, FERRY_ERR__INVALID_ARG, "write %s: %s", path, strerror(errno));
        return EXIT_FAIL;
    }
    if (use && write_current(name) != 0) {
        report_error(ctl, FERRY_ERR__INVALID_ARG, "could not set the current profile: %s", strerror(errno));
        return EXIT_FAIL;
    }
    profile_result(ctl, name, path, use ? "saved and in use" : "saved");
    return EXIT_OK;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int cmd_profile_list(struct ctl *ctl, const struct parsed *p)
{
    if (p->npos) {
        usage_error(ctl, "profile list takes no arguments");
        return EXIT_USAGE;
    }
    char dir[PATH_MAX], pdir[PATH_MAX + 16], cur[PROFILE_MAX_NAME + 2] = "";
    if (config_dir(dir, sizeof(dir)) != 0) {
        report_error(ctl, FERRY_ERR__INVALID_ARG, "cannot locate the ferryctl config directory (set HOME)");
        return EXIT_FAIL;
    }
    snprintf(pdir, sizeof(pdir), "%s/profiles", dir);
    if (current_name(cur, sizeof(cur)) != 0)
        cur[0] = '\0';
    char *names[1024];
    size_t n = 0;
    DIR *d = opendir(pdir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) && n < sizeof(names) / sizeof(names[0])) {
            size_t l = strlen(e->d_name);
            if (l > 5 && strcmp(e->d_name + l - 5, ".conf") == 0) {
                names[n] = strndup(e->d_name, l - 5);
                if (names[n])
                    n++;
            }
        }
        closedir(d);
    }
    qsort(names, n, sizeof(names[0]), cmp_str);
    if (ctl->format == FMT_JSON) {
        struct jw w;
        jw_doc_begin(&w, stdout);
        jw_kstr(&w, "command", ctl->command);
        jw_kbool(&w, "ok", true);
        jw_key(&w, "current");
        if (cur[0])
            jw_str(&w, cur);
        else
            jw_null(&w);
        jw_key(&w, "profiles");
        jw_arr_begin(&w);
        for (size_t i = 0; i < n; i++)
            jw_str(&w, names[i]);
        jw_arr_end(&w);
        jw_doc_end(&w);
    } else {
        if (n == 0)
            printf("no profiles (create one with `ferryctl profile create NAME --brokers ... --ca ...`)\n");
        for (size_t i = 0; i < n; i++)
            printf("%s %s\n", strcmp(names[i], cur) == 0 ? "*" : " ", names[i]);
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    return EXIT_OK;
}

struct show_state {
    const struct ctl *ctl;
    struct jw *w;
};

static int show_line(void *arg, const char *k, const char *v)
{
    struct show_state *st = arg;
    if (st->ctl->format == FMT_JSON) {
        jw_obj_begin(st->w);
        jw_kstr(st->w, "name", k);
        jw_kstr(st->w, "value", v);
        jw_obj_end(st->w);
    } else {
        printf("%-10s %s\n", k, v);
    }
    return 0;
}

int cmd_profile_show(struct ctl *ctl, const struct parsed *p)
{
    char name[PROFILE_MAX_NAME + 2], path[PATH_MAX], err[512];
    if (p->npos > 1) {
        usage_error(ctl, "profile show takes at most one NAME");
        return EXIT_USAGE;
    }
    if (p->npos == 1)
        snprintf(name, sizeof(name), "%s", p->pos[0]);
    else if (ctl->profile)
        snprintf(name, sizeof(name), "%s", ctl->profile);
    else if (current_name(name, sizeof(name)) != 0) {
        report_error(ctl, FERRY_ERR__INVALID_ARG, "no current profile (see `ferryctl profile use`)");
        return EXIT_FAIL;
    }
    if (!valid_name(name) || profile_path(name, path, sizeof(path)) != 0) {
        usage_error(ctl, "invalid profile name '%s'", name);
        return EXIT_USAGE;
    }
    struct jw w;
    struct show_state st = {ctl, &w};
    if (ctl->format == FMT_JSON) {
        /* read first so a failure prints only the error document */
        if (access(path, R_OK) != 0) {
            report_error(ctl, FERRY_ERR__INVALID_ARG, "profile %s: %s", name, strerror(errno));
            return EXIT_FAIL;
        }
        jw_doc_begin(&w, stdout);
        jw_kstr(&w, "command", ctl->command);
        jw_kbool(&w, "ok", true);
        jw_kstr(&w, "profile", name);
        jw_kstr(&w, "path", path);
        jw_key(&w, "settings");
        jw_arr_begin(&w);
    } else {
        printf("# profile %s (%s)\n", name, path);
    }
    int rc = profile_read(path, show_line, &st, err, sizeof(err));
    if (ctl->format == FMT_JSON) {
        jw_arr_end(&w);
        jw_doc_end(&w);
    }
    if (rc != 0) {
        report_error(ctl, FERRY_ERR__INVALID_ARG, "%s", err);
        return EXIT_FAIL;
    }
    return EXIT_OK;
}

int cmd_profile_use(struct ctl *ctl, const struct parsed *p)
{
    char path[PATH_MAX];
    if (p->npos != 1 || !valid_name(p->pos[0]) || profile_path(p->pos[0], path, sizeof(path)) != 0) {
        usage_error(ctl, "profile use wants one existing profile NAME");
        return EXIT_USAGE;
    }
    if (access(path, R_OK) != 0) {
        report_error(ctl, FERRY_ERR__INVALID_ARG, "no profile named %s (%s)", p->pos[0], path);
        return EXIT_FAIL;
    }
    if (write_current(p->pos[0]) != 0) {
        report_error(ctl, FERRY_ERR__INVALID_ARG, "could not set the current profile: %s", strerror(errno));
        return EXIT_FAIL;
    }
    profile_result(ctl, p->pos[0], path, "is now current");
    return EXIT_OK;
}

int cmd_profile_delete(struct ctl *ctl, const struct parsed *p)
{
    bool yes = p->nopts > 0; /* the only flag is --yes */
    char path[PATH_MAX], cur[PROFILE_MAX_NAME + 2];
    if (p->npos != 1 || !valid_name(p->pos[0]) || profile_path(p->pos[0], path, sizeof(path)) != 0) {
        usage_error(ctl, "profile delete wants one profile NAME");
        return EXIT_USAGE;
    }
    if (access(path, F_OK) != 0) {
        report_error(ctl, FERRY_ERR__INVALID_ARG, "no profile named %s", p->pos[0]);
        return EXIT_FAIL;
    }
    if (!yes) {
        fprintf(stderr, "ferryctl profile delete: would delete profile %s (%s); refusing without --yes\n",
                p->pos[0], path);
        return EXIT_USAGE;
    }
    if (unlink(path) != 0) {
        report_error(ctl, FERRY_ERR__INVALID_ARG, "delete %s: %s", path, strerror(errno));
        return EXIT_FAIL;
    }
    if (current_name(cur, sizeof(cur)) == 0 && strcmp(cur, p->pos[0]) == 0) {
        char dir[PATH_MAX], cpath[PATH_MAX + 16];
        if (config_dir(dir, sizeof(dir)) == 0) {
            snprintf(cpath, sizeof(cpath), "%s/current", dir);
            unlink(cpath);
        }
    }
    profile_result(ctl, p->pos[0], path, "deleted");
    return EXIT_OK;
}
