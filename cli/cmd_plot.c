/* `ei plot metrics.jsonl -o loss.png`: training and validation loss against the step, drawn by
 * gnuplot (Debian gnuplot-nox). The series are written as data files next to a gnuplot script in a
 * temporary folder; gnuplot renders into a temporary name that is renamed onto the output. */
#include "cli/commands.h"
#include "core/ei_args.h"
#include "core/ei_error.h"
#include "core/ei_io.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct {
    double *x, *y;
    size_t n, cap;
} series;

static int series_add(series *s, double x, double y) {
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 256;
        double *nx = realloc(s->x, cap * sizeof *nx);
        if (!nx) return ei_error_set("out of memory");
        s->x = nx;
        double *ny = realloc(s->y, cap * sizeof *ny);
        if (!ny) return ei_error_set("out of memory");
        s->y = ny;
        s->cap = cap;
    }
    s->x[s->n] = x;
    s->y[s->n] = y;
    s->n++;
    return 0;
}

static void series_free(series *s) {
    free(s->x);
    free(s->y);
    memset(s, 0, sizeof *s);
}

typedef struct {
    const char *path;
    series train, val, lr;
    int malformed;
} run_data;

/* A finite number field of o, or 0 when absent/null. */
static int get_num(const cJSON *o, const char *k, double *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) return 0;
    *out = v->valuedouble;
    return 1;
}

static int read_metrics(run_data *r) {
    char *text;
    size_t len;
    if (ei_file_read_all(r->path, &text, &len)) return -1;
    int rc = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line && !rc; line = strtok_r(NULL, "\n", &save)) {
        while (*line == ' ' || *line == '\t' || *line == '\r') line++;
        if (!*line) continue;
        cJSON *o = cJSON_Parse(line);
        double step, v;
        if (!o || !cJSON_IsObject(o)) {
            r->malformed++; /* e.g. the partial last line of a killed run */
        } else if (get_num(o, "step", &step)) {
            if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "skipped")) && get_num(o, "loss", &v))
                rc = series_add(&r->train, step, v);
            if (!rc && get_num(o, "val_loss", &v)) rc = series_add(&r->val, step, v);
            if (!rc && get_num(o, "lr", &v)) rc = series_add(&r->lr, step, v);
        }
        cJSON_Delete(o);
    }
    free(text);
    return rc;
}

static int write_series(const char *path, const series *s, double smooth) {
    FILE *fp = fopen(path, "w");
    if (!fp) return ei_error_set("%s: cannot create: %s", path, strerror(errno));
    /* Debiased EMA (as TensorBoard): the early points are not pulled towards 0. */
    double acc = 0, w = 1;
    for (size_t i = 0; i < s->n; i++) {
        acc = smooth * acc + (1 - smooth) * s->y[i];
        w *= smooth;
        fprintf(fp, "%.10g %.10g %.10g\n", s->x[i], s->y[i], w < 1 ? acc / (1 - w) : s->y[i]);
    }
    if (fclose(fp) != 0) return ei_error_set("%s: write failed", path);
    return 0;
}

/* gnuplot single-quoted string: a quote is written twice. */
static void gp_quote(FILE *fp, const char *s) {
    fputc('\'', fp);
    for (; *s; s++) {
        if (*s == '\'') fputc('\'', fp);
        if (*s != '\n') fputc(*s, fp);
    }
    fputc('\'', fp);
}

static char *find_gnuplot(void) {
    const char *e = getenv("EI_GNUPLOT");
    if (e && *e) {
        if (access(e, X_OK) == 0) return strdup(e);
        ei_error_set("gnuplot not found at EI_GNUPLOT=%s", e);
        return NULL;
    }
    const char *path = getenv("PATH");
    char *copy = strdup(path ? path : "/usr/bin:/bin"), *save = NULL;
    for (char *d = strtok_r(copy, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        char *cand = ei_path_join(d, "gnuplot");
        if (cand && access(cand, X_OK) == 0) {
            free(copy);
            return cand;
        }
        free(cand);
    }
    free(copy);
    ei_error_set("gnuplot not found in PATH: install the Debian package gnuplot-nox (or set EI_GNUPLOT)");
    return NULL;
}

/* Runs gnuplot on script; its stderr goes to errfile and into the error message on failure. */
static int run_gnuplot(const char *gnuplot, const char *script, const char *errfile) {
    pid_t pid = fork();
    if (pid < 0) return ei_error_set("cannot start gnuplot: %s", strerror(errno));
    if (pid == 0) {
        FILE *ef = freopen(errfile, "w", stderr);
        (void)ef;
        execl(gnuplot, gnuplot, script, (char *)NULL);
        _exit(127);
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) return 0;
    char *msg = NULL;
    size_t len = 0;
    if (ei_file_read_all(errfile, &msg, &len) == 0 && len > 1500) msg[1500] = '\0';
    ei_error_set("gnuplot failed (%s %d): %s", WIFEXITED(st) ? "exit status" : "signal",
                 WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st), msg && *msg ? msg : "no message");
    free(msg);
    return -1;
}

static void write_script(FILE *fp, run_data *runs, int nruns, const char *dir, const char *png, const char *title,
                         int width, int height, double smooth, int logy, int show_lr) {
    fprintf(fp, "if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {\n"
                "  set terminal pngcairo size %d,%d enhanced font 'Sans,11' linewidth 1.5\n"
                "} else {\n"
                "  set terminal png size %d,%d\n"
                "}\n",
            width, height, width, height);
    fputs("set output ", fp);
    gp_quote(fp, png);
    fputs("\nset title ", fp);
    gp_quote(fp, title);
    fputs(" noenhanced\nset xlabel 'optimizer step'\nset ylabel 'loss (nats per token)'\n"
          "set grid\nset key top right box opaque noenhanced\nset border 3\nset tics nomirror\n",
          fp);
    if (logy) fputs("set logscale y\n", fp);
    if (show_lr) fputs("set y2label 'learning rate'\nset y2tics\nset format y2 '%.1e'\n", fp);
    static const char *colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"};
    fputs("plot ", fp);
    int first = 1;
    for (int i = 0; i < nruns; i++) {
        const char *c = colors[(size_t)i % (sizeof colors / sizeof colors[0])];
        char suffix[512] = "";
        if (nruns > 1) snprintf(suffix, sizeof suffix, " (%s)", runs[i].path);
        char f[4200];
        if (runs[i].train.n) {
            snprintf(f, sizeof f, "%s/train_%d.dat", dir, i);
            char t[600];
            if (smooth > 0) {
                fprintf(fp, "%s", first ? "" : ", \\\n     ");
                gp_quote(fp, f);
                fprintf(fp, " using 1:2 with lines lc rgb '%s' lw 0.6 dt 1 title ", c);
                snprintf(t, sizeof t, "training loss (raw)%s", suffix);
                gp_quote(fp, t);
                fprintf(fp, " , \\\n     ");
                gp_quote(fp, f);
                fprintf(fp, " using 1:3 with lines lc rgb '%s' lw 2 title ", c);
                snprintf(t, sizeof t, "training loss (EMA %.2g)%s", smooth, suffix);
            } else {
                fprintf(fp, "%s", first ? "" : ", \\\n     ");
                gp_quote(fp, f);
                fprintf(fp, " using 1:2 with lines lc rgb '%s' lw 1.5 title ", c);
                snprintf(t, sizeof t, "training loss%s", suffix);
            }
            gp_quote(fp, t);
            first = 0;
        }
        if (runs[i].val.n) {
            snprintf(f, sizeof f, "%s/val_%d.dat", dir, i);
            fprintf(fp, "%s", first ? "" : ", \\\n     ");
            gp_quote(fp, f);
            /* One run: validation in its own colour; several runs: one colour per run. */
            fprintf(fp, " using 1:2 with linespoints lc rgb '%s' lw 2 dt 2 pt 7 ps 1.1 title ",
                    nruns == 1 ? colors[1] : c);
            char t[600];
            snprintf(t, sizeof t, "validation loss%s", suffix);
            gp_quote(fp, t);
            first = 0;
        }
        if (show_lr && runs[i].lr.n) {
            snprintf(f, sizeof f, "%s/lr_%d.dat", dir, i);
            fprintf(fp, "%s", first ? "" : ", \\\n     ");
            gp_quote(fp, f);
            fprintf(fp, " using 1:2 axes x1y2 with lines lc rgb '#7f7f7f' lw 1 dt 3 title ");
            char t[600];
            snprintf(t, sizeof t, "learning rate%s", suffix);
            gp_quote(fp, t);
            first = 0;
        }
    }
    fputs("\nunset output\n", fp);
}

static void remove_dir(const char *dir, int nruns) {
    static const char *names[] = {"train", "val", "lr"};
    char p[4200];
    for (int i = 0; i < nruns; i++)
        for (int k = 0; k < 3; k++) {
            snprintf(p, sizeof p, "%s/%s_%d.dat", dir, names[k], i);
            unlink(p);
        }
    snprintf(p, sizeof p, "%s/plot.gp", dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/gnuplot.err", dir);
    unlink(p);
    rmdir(dir);
}

int ei_cmd_plot(int argc, char **argv) {
    const char *out = NULL, *title = NULL;
    double smooth = 0;
    int logy = 0, show_lr = 0, width = 1000, height = 600;
    ei_arg opts[] = {
        {"o", EI_ARG_STR, &out, "PNG", "output image (required)"},
        {"output", EI_ARG_STR, &out, "PNG", "same as -o"},
        {"title", EI_ARG_STR, &title, "TEXT", "plot title (default: the metrics file)"},
        {"smooth", EI_ARG_FLOAT, &smooth, "A", "also draw an exponential moving average of the training loss, "
                                               "0 <= A < 1 (0: off)"},
        EI_ARG_RANGE(0, 1),
        {"logy", EI_ARG_FLAG, &logy, NULL, "logarithmic loss axis"},
        {"lr", EI_ARG_FLAG, &show_lr, NULL, "draw the learning rate on a second axis"},
        {"width", EI_ARG_INT, &width, "PX", "image width"},
        EI_ARG_RANGE(100, 10000),
        {"height", EI_ARG_INT, &height, "PX", "image height"},
        EI_ARG_RANGE(100, 10000),
        {0},
    };
    char **pos = NULL;
    int npos = 0;
    int rc = ei_args_parse(argc, argv, "ei plot METRICS.jsonl [MORE.jsonl ...] -o PNG",
                           "Draws training and validation loss against the step from one or more metrics.jsonl "
                           "files (written by ei train) as a PNG, with gnuplot.\n\n"
                           "  ei plot runs/stories_lm/metrics.jsonl -o loss.png --smooth 0.9",
                           opts, &pos, &npos);
    if (rc) return rc > 0 ? 0 : 2;
    if (npos < 1 || !out) {
        fprintf(stderr, "ei plot: error: %s (see ei plot --help)\n", npos < 1 ? "no metrics file given" : "-o PNG is required");
        free(pos);
        return 2;
    }
    if (!(smooth >= 0 && smooth < 1) || width < 100 || height < 100 || width > 10000 || height > 10000) {
        fprintf(stderr, "ei plot: error: --smooth must be in [0, 1) and the size in [100, 10000] pixels\n");
        free(pos);
        return 2;
    }
    if (ei_check_not_input(out, (const char *const *)pos, npos) != 0) {
        ei_error_print("plot");
        free(pos);
        return 1;
    }
    run_data *runs = calloc((size_t)npos, sizeof *runs);
    char *gnuplot = NULL, *tmp_png = NULL, dirbuf[4096] = "";
    int have_dir = 0, status = 1;
    if (!runs) {
        ei_error_set("out of memory");
        goto done;
    }
    size_t points = 0;
    for (int i = 0; i < npos; i++) {
        runs[i].path = pos[i];
        if (read_metrics(&runs[i])) goto done;
        if (runs[i].malformed)
            fprintf(stderr, "ei plot: warning: %s: %d line%s that are not JSON objects skipped\n", pos[i],
                    runs[i].malformed, runs[i].malformed == 1 ? "" : "s");
        points += runs[i].train.n + runs[i].val.n;
    }
    if (!points) {
        ei_error_set("%s: no steps with a finite loss or val_loss", pos[0]);
        goto done;
    }
    if (!(gnuplot = find_gnuplot())) goto done;
    const char *tmpdir = getenv("TMPDIR");
    snprintf(dirbuf, sizeof dirbuf, "%s/ei-plot-XXXXXX", tmpdir && *tmpdir ? tmpdir : "/tmp");
    if (!mkdtemp(dirbuf)) {
        ei_error_set("%s: cannot create a temporary folder: %s", dirbuf, strerror(errno));
        goto done;
    }
    have_dir = 1;
    char path[4200];
    for (int i = 0; i < npos; i++) {
        snprintf(path, sizeof path, "%s/train_%d.dat", dirbuf, i);
        if (runs[i].train.n && write_series(path, &runs[i].train, smooth)) goto done;
        snprintf(path, sizeof path, "%s/val_%d.dat", dirbuf, i);
        if (runs[i].val.n && write_series(path, &runs[i].val, 0)) goto done;
        snprintf(path, sizeof path, "%s/lr_%d.dat", dirbuf, i);
        if (show_lr && runs[i].lr.n && write_series(path, &runs[i].lr, 0)) goto done;
    }
    if (!(tmp_png = ei_atomic_tmpname(out))) {
        ei_error_set("out of memory");
        goto done;
    }
    char deftitle[4200];
    snprintf(deftitle, sizeof deftitle, "loss: %s%s", pos[0], npos > 1 ? " and others" : "");
    snprintf(path, sizeof path, "%s/plot.gp", dirbuf);
    FILE *gp = fopen(path, "w");
    if (!gp) {
        ei_error_set("%s: cannot create: %s", path, strerror(errno));
        goto done;
    }
    write_script(gp, runs, npos, dirbuf, tmp_png, title ? title : deftitle, width, height, smooth, logy, show_lr);
    if (fclose(gp) != 0) {
        ei_error_set("%s: write failed", path);
        goto done;
    }
    char errfile[4200];
    snprintf(errfile, sizeof errfile, "%s/gnuplot.err", dirbuf);
    if (run_gnuplot(gnuplot, path, errfile)) {
        ei_atomic_discard(tmp_png);
        goto done;
    }
    if (!ei_path_exists(tmp_png)) {
        ei_atomic_discard(tmp_png);
        ei_error_set("gnuplot wrote no image");
        goto done;
    }
    if (ei_atomic_finish(tmp_png, out)) goto done;
    size_t tr = 0, va = 0;
    for (int i = 0; i < npos; i++) {
        tr += runs[i].train.n;
        va += runs[i].val.n;
    }
    printf("wrote %s (%zu training points, %zu validation points)\n", out, tr, va);
    status = 0;
done:
    if (status) ei_error_print("plot");
    if (have_dir) remove_dir(dirbuf, npos);
    if (runs)
        for (int i = 0; i < npos; i++) {
            series_free(&runs[i].train);
            series_free(&runs[i].val);
            series_free(&runs[i].lr);
        }
    free(runs);
    free(gnuplot);
    free(tmp_png);
    free(pos);
    return status;
}
