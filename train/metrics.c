#include "train/metrics.h"
#include "core/ei_error.h"
#include "core/ei_io.h"

#include <errno.h>
#include <stdarg.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct ei_metrics {
    FILE *fp;
    char *path;
};

/* ---------------------------------------------------------------- formatting */

typedef struct {
    char *buf;
    size_t n, len; /* len may exceed n: the size that was needed */
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    size_t room = b->len < b->n ? b->n - b->len : 0;
    int k = vsnprintf(room ? b->buf + b->len : NULL, room, fmt, ap);
    va_end(ap);
    if (k > 0) b->len += (size_t)k;
}

static void sb_num(sbuf *b, const char *key, double x) {
    if (isfinite(x)) sb_printf(b, ", \"%s\": %.9g", key, x);
    else sb_printf(b, ", \"%s\": null", key);
}

static void sb_array(sbuf *b, const char *key, const double *a, int n) {
    sb_printf(b, ", \"%s\": [", key);
    for (int i = 0; i < n; i++) {
        if (isfinite(a[i])) sb_printf(b, "%s%.6g", i ? ", " : "", a[i]);
        else sb_printf(b, "%snull", i ? ", " : "");
    }
    sb_printf(b, "]");
}

int ei_metrics_format(const ei_metrics_row *r, char *buf, size_t n) {
    sbuf b = {buf, n, 0};
    if (n) buf[0] = '\0';
    sb_printf(&b, "{\"step\": %" PRId64, r->step);
    sb_num(&b, "loss", r->loss);
    sb_num(&b, "lr", r->lr);
    sb_num(&b, "grad_norm", r->grad_norm);
    sb_num(&b, "tokens_per_s", r->tokens_per_s);
    if (r->tokens > 0) sb_printf(&b, ", \"tokens\": %" PRId64, r->tokens);
    if (r->n_layers > 0 && r->gate_mean) sb_array(&b, "gate_mean", r->gate_mean, r->n_layers);
    if (r->n_layers > 0 && r->gate_std) sb_array(&b, "gate_std", r->gate_std, r->n_layers);
    if (r->has_val) {
        sb_num(&b, "val_loss", r->val_loss);
        if (r->val_exact >= 0) sb_num(&b, "val_exact", r->val_exact);
    }
    if (r->skipped) sb_printf(&b, ", \"skipped\": true");
    if (r->empty) sb_printf(&b, ", \"empty\": true");
    sb_printf(&b, ", \"bad_steps\": %d}", r->bad_steps);
    return (int)b.len;
}

/* ---------------------------------------------------------------- file */

/* Step number of a metrics line, -1 if the line has none. */
static int64_t line_step(const char *line) {
    const char *p = strstr(line, "\"step\":");
    if (!p) return -1;
    char *end;
    long long s = strtoll(p + 7, &end, 10);
    return end == p + 7 ? -1 : (int64_t)s;
}

/* Rewrites path keeping complete lines up to step keep_to (atomically: a crash here keeps the old file). */
static int truncate_after(const char *path, int64_t keep_to) {
    char *text;
    size_t len;
    if (ei_file_read_all(path, &text, &len)) return -1;
    ei_atomic_file af;
    if (ei_atomic_open(&af, path)) {
        free(text);
        return -1;
    }
    char *p = text;
    while (p < text + len) {
        char *nl = memchr(p, '\n', (size_t)(text + len - p));
        if (!nl) break; /* a partial last line: the run died while writing it */
        *nl = '\0';
        int64_t s = line_step(p);
        if (s <= keep_to) fprintf(af.fp, "%s\n", p); /* lines without a step (summaries) are kept too */
        p = nl + 1;
    }
    free(text);
    return ei_atomic_commit(&af);
}

ei_metrics *ei_metrics_open(const char *path, int64_t resume_step) {
    if (resume_step >= 0 && ei_path_exists(path) && truncate_after(path, resume_step)) return NULL;
    FILE *fp = fopen(path, resume_step >= 0 ? "ab" : "wb");
    if (!fp) {
        ei_error_set("%s: cannot open for writing: %s", path, strerror(errno));
        return NULL;
    }
    ei_metrics *m = calloc(1, sizeof *m);
    if (!m || !(m->path = strdup(path))) {
        fclose(fp);
        free(m);
        ei_error_set("out of memory");
        return NULL;
    }
    m->fp = fp;
    return m;
}

int ei_metrics_write_raw(ei_metrics *m, const char *json_object) {
    if (fprintf(m->fp, "%s\n", json_object) < 0 || fflush(m->fp) != 0)
        return ei_error_set("%s: write failed: %s", m->path, strerror(errno));
    return 0;
}

int ei_metrics_write(ei_metrics *m, const ei_metrics_row *r) {
    char small[1024];
    int need = ei_metrics_format(r, small, sizeof small);
    if (need < (int)sizeof small) return ei_metrics_write_raw(m, small);
    char *big = malloc((size_t)need + 1);
    if (!big) return ei_error_set("out of memory");
    ei_metrics_format(r, big, (size_t)need + 1);
    int rc = ei_metrics_write_raw(m, big);
    free(big);
    return rc;
}

void ei_metrics_close(ei_metrics *m) {
    if (!m) return;
    fclose(m->fp);
    free(m->path);
    free(m);
}

/* ---------------------------------------------------------------- progress */

void ei_format_duration(double s, char *buf, size_t n) {
    if (!isfinite(s) || s < 0) {
        snprintf(buf, n, "?");
        return;
    }
    long long t = (long long)(s + 0.5);
    if (t < 60) snprintf(buf, n, "%llds", t);
    else if (t < 3600) snprintf(buf, n, "%lldm%02llds", t / 60, t % 60);
    else if (t < 86400) snprintf(buf, n, "%lldh%02lldm", t / 3600, (t % 3600) / 60);
    else snprintf(buf, n, "%lldd%02lldh", t / 86400, (t % 86400) / 3600);
}

void ei_progress_init(ei_progress *p, FILE *fp, int64_t step_start, int64_t total) {
    memset(p, 0, sizeof *p);
    p->fp = fp;
    p->t_start = ei_time_now();
    p->t_last = -1e30;
    p->step_start = step_start;
    p->total = total;
    p->tty = isatty(fileno(fp));
    p->min_interval = p->tty ? 0.2 : 5.0;
}

static void format_rate(double x, char *buf, size_t n) {
    if (!isfinite(x) || x < 0) snprintf(buf, n, "?");
    else if (x >= 1e6) snprintf(buf, n, "%.2fM", x / 1e6);
    else if (x >= 1e3) snprintf(buf, n, "%.1fk", x / 1e3);
    else snprintf(buf, n, "%.0f", x);
}

void ei_progress_report(ei_progress *p, const ei_metrics_row *r) {
    double now = ei_time_now();
    int last = r->step >= p->total;
    if (!last && now - p->t_last < p->min_interval) return;
    p->t_last = now;
    int64_t done = r->step - p->step_start;
    double eta = done > 0 ? (now - p->t_start) / (double)done * (double)(p->total - r->step) : -1;
    char eta_s[32], rate[32], val[48] = "";
    ei_format_duration(eta, eta_s, sizeof eta_s);
    format_rate(r->tokens_per_s, rate, sizeof rate);
    if (r->has_val) snprintf(val, sizeof val, "  val %.4f", r->val_loss);
    int width = snprintf(NULL, 0, "%" PRId64, p->total);
    fprintf(p->fp, "%sstep %*" PRId64 "/%" PRId64 "  loss %.4f%s  lr %.2e  |g| %.3g  %s tok/s  ETA %s%s%s",
            p->tty ? "\r" : "", width, r->step, p->total, r->loss, val, r->lr, r->grad_norm, rate, eta_s,
            r->skipped ? "  (skipped: non-finite)" : "", p->tty ? "\033[K" : "\n");
    fflush(p->fp);
}

void ei_progress_done(ei_progress *p) {
    if (p->tty) fputc('\n', p->fp);
    fflush(p->fp);
}
