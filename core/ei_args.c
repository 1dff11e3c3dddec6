#include "core/ei_args.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* One-letter options are written with one dash (-o), the others with two. */
static const char *dashes(const char *name) { return name[0] && !name[1] ? "-" : "--"; }

/* The [lo, hi] of option row o (EI_ARG_RANGE in the row after it), or NULL. */
static const double *range_of(const ei_arg *o) {
    return o->name && o[1].name && o[1].kind == EI_ARG_RANGE_ROW ? (const double *)o[1].dst : NULL;
}

static void print_help(FILE *fp, const char *prog, const char *description, const ei_arg *opts);

/* The help is written with one write(2): stdio would split a help longer than its buffer (4 KiB on
 * a pipe) into two, and a reader that stops at its first match (`ei eval --help | grep -q ...`)
 * would then kill the command with SIGPIPE before the second. */
void ei_args_print_help(const char *prog, const char *description, const ei_arg *opts) {
    char *text = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&text, &len);
    if (!fp) {
        print_help(stdout, prog, description, opts);
        return;
    }
    print_help(fp, prog, description, opts);
    fclose(fp);
    fflush(stdout);
    for (size_t off = 0; off < len;) {
        ssize_t w = write(STDOUT_FILENO, text + off, len - off);
        if (w <= 0) break;
        off += (size_t)w;
    }
    free(text);
}

static void print_help(FILE *fp, const char *prog, const char *description, const ei_arg *opts) {
    fprintf(fp, "usage: %s [options]%s\n\n%s\n\noptions:\n", prog, "", description ? description : "");
    for (const ei_arg *o = opts; o && o->name; o++) {
        if (o->kind == EI_ARG_RANGE_ROW) continue; /* its name is "": nothing to print, nothing to index */
        char left[96], names[64];
        const char *help = o->help;
        snprintf(names, sizeof names, "%s%s", dashes(o->name), o->name);
        /* A one-letter row followed by a row for the same variable is its short form, shown on one
         * line with the first row's help: "-o, --output FILE". */
        if (!o->name[1] && o[1].name && o[1].dst == o->dst && o[1].kind == o->kind) {
            snprintf(names, sizeof names, "-%s, --%s", o->name, o[1].name);
            o++;
        }
        if (o->kind == EI_ARG_FLAG)
            snprintf(left, sizeof left, "%s", names);
        else
            snprintf(left, sizeof left, "%s %s", names, o->metavar ? o->metavar : "VALUE");
        char def[160] = "", range[96] = "";
        const double *r = range_of(o);
        if (r) snprintf(range, sizeof range, ", range [%.15g, %.15g]", r[0], r[1]);
        switch (o->kind) {
        case EI_ARG_STR:
            if (*(const char **)o->dst) snprintf(def, sizeof def, " (default: %s)", *(const char **)o->dst);
            break;
        case EI_ARG_INT: snprintf(def, sizeof def, " (default: %d%s)", *(int *)o->dst, range); break;
        case EI_ARG_I64: snprintf(def, sizeof def, " (default: %lld%s)", (long long)*(int64_t *)o->dst, range); break;
        case EI_ARG_FLOAT: snprintf(def, sizeof def, " (default: %g%s)", *(double *)o->dst, range); break;
        default: break;
        }
        fprintf(fp, "  %-30s %s%s\n", left, help ? help : "", def);
    }
    fprintf(fp, "  %-30s %s\n", "-h, --help", "show this help and exit");
}

static int out_of_range(const char *prog, const ei_arg *o, const char *v, double x) {
    const double *r = range_of(o);
    if (!r || (x >= r[0] && x <= r[1])) return 0;
    fprintf(stderr, "%s: error: %s%s %s is out of range: expected %s in [%.15g, %.15g]\n", prog, dashes(o->name),
            o->name, v, o->kind == EI_ARG_FLOAT ? "a number" : "an integer", r[0], r[1]);
    return 1;
}

static int set_value(const char *prog, const ei_arg *o, const char *v) {
    char *end = NULL;
    errno = 0;
    switch (o->kind) {
    case EI_ARG_STR: *(const char **)o->dst = v; return 0;
    case EI_ARG_INT: {
        long long x = strtoll(v, &end, 10);
        if (errno || end == v || *end) break;
        if (out_of_range(prog, o, v, (double)x)) return -1;
        if (x < -2147483647LL || x > 2147483647LL) break;
        *(int *)o->dst = (int)x;
        return 0;
    }
    case EI_ARG_I64: {
        long long x = strtoll(v, &end, 10);
        if (errno || end == v || *end) break;
        if (out_of_range(prog, o, v, (double)x)) return -1;
        *(int64_t *)o->dst = (int64_t)x;
        return 0;
    }
    case EI_ARG_FLOAT: {
        double x = strtod(v, &end);
        if (errno || end == v || *end || !isfinite(x)) break;
        if (out_of_range(prog, o, v, x)) return -1;
        *(double *)o->dst = x;
        return 0;
    }
    case EI_ARG_LIST: {
        ei_arg_list *l = o->dst;
        const char **n = realloc(l->items, sizeof(*n) * (size_t)(l->n + 1));
        if (!n) break;
        n[l->n++] = v;
        l->items = n;
        return 0;
    }
    case EI_ARG_FLAG:
    case EI_ARG_RANGE_ROW: break;
    }
    const double *r = range_of(o);
    if (r) {
        fprintf(stderr, "%s: error: invalid value '%s' for %s%s (expected %s in [%.15g, %.15g])\n", prog, v,
                dashes(o->name), o->name, o->kind == EI_ARG_FLOAT ? "a number" : "an integer", r[0], r[1]);
        return -1;
    }
    fprintf(stderr, "%s: error: invalid value '%s' for %s%s (expected %s)\n", prog, v, dashes(o->name), o->name,
            o->kind == EI_ARG_INT ? "an integer in [-2147483647, 2147483647]"
            : o->kind == EI_ARG_I64   ? "a 64-bit integer"
            : o->kind == EI_ARG_FLOAT ? "a finite number"
                                      : "a value");
    return -1;
}

int ei_args_parse(int argc, char **argv, const char *prog, const char *description, const ei_arg *opts,
                  char ***pos, int *npos) {
    char **p = calloc((size_t)argc + 1, sizeof(char *));
    int np = 0, only_pos = 0;
    if (!p) return -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (only_pos || a[0] != '-' || a[1] == '\0') {
            p[np++] = argv[i];
            continue;
        }
        if (strcmp(a, "--") == 0) {
            only_pos = 1;
            continue;
        }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            ei_args_print_help(prog, description, opts);
            free(p);
            return 1;
        }
        const char *name = a + (a[1] == '-' ? 2 : 1);
        const char *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        const ei_arg *o = NULL;
        for (const ei_arg *q = opts; q && q->name; q++)
            if (q->kind != EI_ARG_RANGE_ROW && nlen && strlen(q->name) == nlen && strncmp(q->name, name, nlen) == 0)
                o = q;
        if (!o) {
            fprintf(stderr, "%s: error: unknown option '%s' (see --help)\n", prog, a);
            free(p);
            return -1;
        }
        if (o->kind == EI_ARG_FLAG) {
            if (eq) {
                fprintf(stderr, "%s: error: %s%s takes no value\n", prog, dashes(o->name), o->name);
                free(p);
                return -1;
            }
            *(int *)o->dst = 1;
            continue;
        }
        const char *v = eq ? eq + 1 : NULL;
        if (!v) {
            if (i + 1 >= argc) {
                fprintf(stderr, "%s: error: %s%s needs a value\n", prog, dashes(o->name), o->name);
                free(p);
                return -1;
            }
            v = argv[++i];
        }
        if (set_value(prog, o, v) != 0) {
            free(p);
            return -1;
        }
    }
    if (pos) *pos = p;
    else free(p);
    if (npos) *npos = np;
    return 0;
}
