#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <stdbool.h>
#include <string.h>

#include "apps/cli.h"

int mvl_cli_usage_error(const char *cmd, const char *usage, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "minimax-vl %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nusage: %s\n", usage);
    return MVL_EXIT_USAGE;
}

int mvl_cli_fail(const mvl_error *err) {
    fprintf(stderr, "minimax-vl: %s\n", err->msg);
    return MVL_EXIT_ERROR;
}

const char *mvl_cli_default_model(void) { return MVL_DEFAULT_MODEL_DIR; }

int mvl_cli_is_help(const char *arg) { return !strcmp(arg, "-h") || !strcmp(arg, "--help"); }

static void print_options(const char *usage, const char *about, const mvl_cli_option *opts, int nopts) {
    printf("usage: %s\n\n%s\n\n", usage, about);
    for (int i = 0; i < nopts; i++) {
        char names[64];
        snprintf(names, sizeof names, "%s%s%s", opts[i].short_name ? opts[i].short_name : "",
                 opts[i].short_name ? ", " : "    ", opts[i].long_name);
        printf("  %-22s %s\n", names, opts[i].help);
    }
    printf("  %-22s %s\n", "-h, --help", "show this help");
}

static int set_value(const char *cmd, const char *usage, const mvl_cli_option *o, const char *v) {
    char *end;
    switch (o->kind) {
    case MVL_OPT_STR:
        *(const char **)o->dest = v;
        return -1;
    case MVL_OPT_LIST: {
        mvl_cli_list *l = o->dest;
        if (l->n >= (int)(sizeof l->items / sizeof l->items[0]))
            return mvl_cli_usage_error(cmd, usage, "too many %s values", o->long_name);
        l->items[l->n++] = v;
        return -1;
    }
    case MVL_OPT_INT: {
        errno = 0;
        long long x = strtoll(v, &end, 10);
        if (!*v || *end || errno) return mvl_cli_usage_error(cmd, usage, "%s needs a whole number, not '%s'", o->long_name, v);
        *(long long *)o->dest = x;
        return -1;
    }
    case MVL_OPT_FLOAT: {
        errno = 0;
        double x = strtod(v, &end);
        if (!*v || *end || errno || !isfinite(x))
            return mvl_cli_usage_error(cmd, usage, "%s needs a number, not '%s'", o->long_name, v);
        *(double *)o->dest = x;
        return -1;
    }
    case MVL_OPT_FLAG:
        break;
    }
    return mvl_cli_usage_error(cmd, usage, "%s takes no value", o->long_name);
}

int mvl_cli_parse(const char *cmd, const char *usage, const char *about, const mvl_cli_option *opts, int nopts,
                  int argc, char **argv, mvl_cli_list *pos) {
    bool only_positional = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (only_positional || a[0] != '-' || !a[1]) {
            if (!pos || pos->n >= (int)(sizeof pos->items / sizeof pos->items[0]))
                return mvl_cli_usage_error(cmd, usage, "unexpected argument '%s'", a);
            pos->items[pos->n++] = a;
            continue;
        }
        if (!strcmp(a, "--")) {
            only_positional = true;
            continue;
        }
        if (mvl_cli_is_help(a)) {
            print_options(usage, about, opts, nopts);
            return MVL_EXIT_OK;
        }
        const char *eq = strncmp(a, "--", 2) ? NULL : strchr(a, '=');
        size_t len = eq ? (size_t)(eq - a) : strlen(a);
        const mvl_cli_option *o = NULL;
        for (int k = 0; k < nopts && !o; k++)
            if ((opts[k].short_name && strlen(opts[k].short_name) == len && !strncmp(a, opts[k].short_name, len)) ||
                (strlen(opts[k].long_name) == len && !strncmp(a, opts[k].long_name, len)))
                o = &opts[k];
        if (!o) return mvl_cli_usage_error(cmd, usage, "unknown option '%.*s'", (int)len, a);
        if (o->kind == MVL_OPT_FLAG) {
            if (eq) return mvl_cli_usage_error(cmd, usage, "%s takes no value", o->long_name);
            *(int *)o->dest = 1;
            continue;
        }
        const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (!v) return mvl_cli_usage_error(cmd, usage, "%s needs a value", o->long_name);
        int rc = set_value(cmd, usage, o, v);
        if (rc >= 0) return rc;
    }
    return -1;
}
