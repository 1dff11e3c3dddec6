/* Table, grid and JSON output of ei-eval (eval/report.h). */
#include "eval/report.h"

#include "core/ei_error.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ------------------------------------------------------------------ terminal */

static void fmt_num(char *buf, size_t n, double v, const char *f) {
    if (isnan(v)) snprintf(buf, n, "-");
    else snprintf(buf, n, f, v);
}

static void fmt_bytes(char *buf, size_t n, double b) {
    if (b <= 0) snprintf(buf, n, "-");
    else if (b < 1024.0 * 1024.0) snprintf(buf, n, "%.1f KB", b / 1024.0);
    else if (b < 1024.0 * 1024.0 * 1024.0) snprintf(buf, n, "%.1f MB", b / (1024.0 * 1024.0));
    else snprintf(buf, n, "%.2f GB", b / (1024.0 * 1024.0 * 1024.0));
}

/* The quality column: the metric names make the table readable without the JSON. */
static void fmt_quality(char *buf, size_t n, int type, const ei_eval_numbers *x) {
    char a[32], b[32];
    switch (type) {
    case EI_TASK_QA:
    case EI_TASK_PASSKEY:
        fmt_num(a, sizeof a, x->exact, "%.3f");
        fmt_num(b, sizeof b, x->contains, "%.3f");
        snprintf(buf, n, "exact %s contains %s", a, b);
        break;
    case EI_TASK_CHOICE:
        fmt_num(a, sizeof a, x->choice, "%.3f");
        snprintf(buf, n, "accuracy %s", a);
        break;
    case EI_TASK_SUMMARY:
        fmt_num(a, sizeof a, x->rouge_l, "%.4f");
        snprintf(buf, n, "rouge-l %s", a);
        break;
    default:
        fmt_num(a, sizeof a, x->ppl, "%.4f");
        snprintf(buf, n, "ppl %s", a);
        break;
    }
}

void ei_eval_print_table(FILE *fp, const ei_eval_run_info *info, const ei_eval_summary sum[EI_TASK_COUNT_]) {
    char size[32], rss[32];
    fmt_bytes(size, sizeof size, (double)info->file_bytes);
    fmt_bytes(rss, sizeof rss, (double)info->peak_rss);
    fprintf(fp, "ei-eval: %s (%s, scenario '%s', %s, N = %d, max new %d)\n", info->graph, size, info->scenario,
            info->mode, info->tokens_per_call, info->max_new);
    fprintf(fp, "backend %s%s%s%s, %d thread%s, %s; %.1f s, peak RSS %s\n", info->backend,
            info->kernels ? " (" : "", info->kernels ? info->kernels : "", info->kernels ? ")" : "", info->threads,
            info->threads == 1 ? "" : "s", info->arch, info->seconds, rss);
    fprintf(fp, "%-8s %6s %6s  %-30s %9s %9s %11s %10s %10s\n", "task", "items", "skip", "quality", "ttft p50",
            "ttft p90", "prefill t/s", "decode t/s", "peak RSS");
    for (int t = 0; t < EI_TASK_COUNT_; t++) {
        const ei_eval_summary *s = &sum[t];
        if (s->items == 0) continue;
        ei_eval_numbers x;
        ei_eval_summary_numbers(s, t, &x);
        char q[96], t50[24], t90[24], pf[24], dc[24], pk[32];
        fmt_quality(q, sizeof q, t, &x);
        fmt_num(t50, sizeof t50, x.ttft_median * 1e3, "%.1f ms");
        fmt_num(t90, sizeof t90, x.ttft_p90 * 1e3, "%.1f ms");
        fmt_num(pf, sizeof pf, x.prefill_tps, "%.1f");
        fmt_num(dc, sizeof dc, x.decode_tps, "%.1f");
        fmt_bytes(pk, sizeof pk, (double)s->peak_rss);
        fprintf(fp, "%-8s %6lld %6lld  %-30s %9s %9s %11s %10s %10s\n", ei_task_type_name(t), (long long)s->items,
                (long long)s->skipped, q, t50, t90, pf, dc, pk);
    }
}

static const char *quality_metric(int type, const ei_eval_numbers *x, double *v) {
    switch (type) {
    case EI_TASK_QA:
    case EI_TASK_PASSKEY: *v = x->contains; return "contains";
    case EI_TASK_CHOICE: *v = x->choice; return "accuracy";
    case EI_TASK_SUMMARY: *v = x->rouge_l; return "rouge_l";
    default: *v = x->ppl; return "ppl";
    }
}

int ei_eval_write_tsv(FILE *fp, int header, const char *label, const ei_eval_run_info *info,
                      const ei_eval_summary sum[EI_TASK_COUNT_]) {
    if (header)
        fprintf(fp, "label\ttask\titems\tskip\tmetric\tquality\tttft_p50_ms\tttft_p90_ms\tprefill_tps\t"
                    "decode_tps\tpeak_rss_mb\tfile_mb\tbackend\tmode\n");
    for (int t = 0; t < EI_TASK_COUNT_; t++) {
        const ei_eval_summary *s = &sum[t];
        if (s->items == 0) continue;
        ei_eval_numbers x;
        ei_eval_summary_numbers(s, t, &x);
        double q;
        const char *metric = quality_metric(t, &x, &q);
        char qs[32], t50[32], t90[32], pf[32], dc[32];
        fmt_num(qs, sizeof qs, q, "%.4f");
        fmt_num(t50, sizeof t50, x.ttft_median * 1e3, "%.1f");
        fmt_num(t90, sizeof t90, x.ttft_p90 * 1e3, "%.1f");
        fmt_num(pf, sizeof pf, x.prefill_tps, "%.1f");
        fmt_num(dc, sizeof dc, x.decode_tps, "%.1f");
        fprintf(fp, "%s\t%s\t%lld\t%lld\t%s\t%s\t%s\t%s\t%s\t%s\t%.2f\t%.2f\t%s\t%s\n", label,
                ei_task_type_name(t), (long long)s->items, (long long)s->skipped, metric, qs, t50, t90, pf, dc,
                (double)s->peak_rss / (1024.0 * 1024.0), (double)info->file_bytes / (1024.0 * 1024.0),
                info->backend, info->mode);
    }
    if (ferror(fp)) {
        ei_error_set("writing the TSV rows failed");
        return -1;
    }
    return 0;
}

/* Mean of `contains` (which = 0) or `exact` (1) over the scored items of a cell. */
static double cell_mean(const ei_eval_pk_view *pk, const ei_eval_result *res, int li, int di, int which) {
    const ei_pk_grid *g = pk->grid;
    double sum = 0.0;
    int n = 0;
    uint32_t base = pk->first + (uint32_t)((li * g->n_depths + di) * g->per_cell);
    for (int r = 0; r < g->per_cell; r++) {
        const ei_eval_result *x = &res[base + (uint32_t)r];
        if (x->skipped) continue;
        sum += which ? x->exact : x->contains;
        n++;
    }
    return n ? sum / n : NAN;
}

void ei_eval_print_grid(FILE *fp, const ei_eval_pk_view *pk, const ei_eval_result *res) {
    const ei_pk_grid *g = pk->grid;
    if (!g) return;
    fprintf(fp, "passkey accuracy (contains; %d sample%s per cell), rows: length in tokens, columns: depth\n",
            g->per_cell, g->per_cell == 1 ? "" : "s");
    fprintf(fp, "%8s", "length");
    for (int d = 0; d < g->n_depths; d++) fprintf(fp, " %6.0f%%", g->depths[d] * 100.0);
    fprintf(fp, " %7s\n", "mean");
    for (int l = 0; l < g->n_lengths; l++) {
        fprintf(fp, "%8lld", (long long)g->lengths[l]);
        double sum = 0.0;
        int n = 0;
        for (int d = 0; d < g->n_depths; d++) {
            double v = cell_mean(pk, res, l, d, 0);
            char c[16];
            fmt_num(c, sizeof c, v, "%.2f");
            fprintf(fp, " %7s", c);
            if (!isnan(v)) {
                sum += v;
                n++;
            }
        }
        char m[16];
        fmt_num(m, sizeof m, n ? sum / n : NAN, "%.2f");
        fprintf(fp, " %7s\n", m);
    }
}

void ei_eval_print_tokens(FILE *fp, const ei_evalset *set, const ei_eval_result *res, uint32_t n) {
    for (uint32_t i = 0; i < n; i++) {
        fprintf(fp, "%s\t", set->items[i].tag);
        for (int64_t k = 0; k < res[i].n_gen; k++) fprintf(fp, k ? " %d" : "%d", (int)res[i].gen[k]);
        fprintf(fp, "\t%s\n", res[i].skipped ? "skipped" : ei_eval_stop_name(res[i].stop));
    }
}

/* ------------------------------------------------------------------ JSON */

/* Length of the valid UTF-8 sequence at p (1..4), or 0 when the bytes there are not one. */
static int utf8_len(const unsigned char *p) {
    int n = p[0] < 0x80 ? 1 : p[0] >= 0xc2 && p[0] <= 0xdf ? 2 : p[0] >= 0xe0 && p[0] <= 0xef ? 3
            : p[0] >= 0xf0 && p[0] <= 0xf4 ? 4 : 0;
    for (int i = 1; i < n; i++)
        if ((p[i] & 0xc0) != 0x80) return 0;
    if (n == 3 && ((p[0] == 0xe0 && p[1] < 0xa0) || (p[0] == 0xed && p[1] >= 0xa0))) return 0; /* overlong, surrogate */
    if (n == 4 && ((p[0] == 0xf0 && p[1] < 0x90) || (p[0] == 0xf4 && p[1] >= 0x90))) return 0;
    return n;
}

/* A JSON string. Generated text can end inside a character or hold stray bytes (byte-fallback
 * pieces are emitted one byte at a time), and JSON must be UTF-8: such bytes become U+FFFD. */
static void js_str(FILE *fp, const char *s) {
    fputc('"', fp);
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p;) {
        int n = utf8_len(p);
        if (n == 0) {
            fputs("\\ufffd", fp);
            p++;
            continue;
        }
        if (n > 1) {
            fwrite(p, 1, (size_t)n, fp);
            p += n;
            continue;
        }
        switch (*p) {
        case '"': fputs("\\\"", fp); break;
        case '\\': fputs("\\\\", fp); break;
        case '\n': fputs("\\n", fp); break;
        case '\r': fputs("\\r", fp); break;
        case '\t': fputs("\\t", fp); break;
        default:
            if (*p < 0x20 || *p == 0x7f) fprintf(fp, "\\u%04x", *p);
            else fputc(*p, fp);
        }
        p++;
    }
    fputc('"', fp);
}

static void js_num(FILE *fp, double v) {
    if (!isfinite(v)) fputs("null", fp);
    else fprintf(fp, "%.17g", v);
}

static void js_key(FILE *fp, const char *k) {
    js_str(fp, k);
    fputs(": ", fp);
}

/* "key": number, — only when the number exists for the task type, so each type's object holds its
 * own metrics. */
static void js_opt(FILE *fp, const char *k, double v, const char *ind) {
    if (isnan(v)) return;
    fprintf(fp, "%s", ind);
    js_key(fp, k);
    js_num(fp, v);
    fputs(",\n", fp);
}

static void js_summary(FILE *fp, int t, const ei_eval_summary *s) {
    ei_eval_numbers x;
    ei_eval_summary_numbers(s, t, &x);
    const char *ind = "      ";
    fprintf(fp, "    ");
    js_key(fp, ei_task_type_name(t));
    fprintf(fp, "{\n%s\"items\": %lld,\n%s\"skipped\": %lld,\n", ind, (long long)s->items, ind,
            (long long)s->skipped);
    js_opt(fp, "exact", x.exact, ind);
    js_opt(fp, "contains", x.contains, ind);
    js_opt(fp, "accuracy", x.choice, ind);
    js_opt(fp, "rouge_l", x.rouge_l, ind);
    js_opt(fp, "ppl", x.ppl, ind);
    if (t == EI_TASK_LM) {
        fprintf(fp, "%s\"nll\": ", ind);
        js_num(fp, s->nll);
        fprintf(fp, ",\n%s\"scored_tokens\": %lld,\n", ind, (long long)s->nll_count);
    }
    fprintf(fp, "%s\"ttft_median_s\": ", ind);
    js_num(fp, x.ttft_median);
    fprintf(fp, ",\n%s\"ttft_p90_s\": ", ind);
    js_num(fp, x.ttft_p90);
    fprintf(fp, ",\n%s\"prefill_tokens_per_s\": ", ind);
    js_num(fp, x.prefill_tps);
    fprintf(fp, ",\n%s\"decode_tokens_per_s\": ", ind);
    js_num(fp, x.decode_tps);
    fprintf(fp, ",\n%s\"prompt_tokens\": %lld,\n%s\"generated_tokens\": %lld,\n%s\"peak_rss_bytes\": %llu\n    }",
            ind, (long long)s->prompt_tokens, ind, (long long)s->gen_tokens, ind, (unsigned long long)s->peak_rss);
}

static void js_item(FILE *fp, const ei_eval_item *it, const ei_eval_result *r) {
    const char *ind = "      ";
    fprintf(fp, "    {\n%s\"tag\": ", ind);
    js_str(fp, it->tag);
    fprintf(fp, ",\n%s\"task\": ", ind);
    js_str(fp, ei_task_type_name(it->type));
    fprintf(fp, ",\n%s\"prompt_tokens\": %u,\n", ind, it->n_prompt);
    if (r->skipped) {
        fprintf(fp, "%s\"skipped\": ", ind);
        js_str(fp, r->note);
        fputs("\n    }", fp);
        return;
    }
    js_opt(fp, "exact", r->exact, ind);
    js_opt(fp, "contains", r->contains, ind);
    js_opt(fp, "correct", r->choice, ind);
    js_opt(fp, "rouge_l", r->rouge_l, ind);
    js_opt(fp, "ppl", r->ppl, ind);
    if (it->type == EI_TASK_LM) {
        fprintf(fp, "%s\"nll\": ", ind);
        js_num(fp, r->nll);
        fprintf(fp, ",\n%s\"scored_tokens\": %lld,\n%s\"prefill_s\": ", ind, (long long)r->nll_count, ind);
        js_num(fp, r->prefill_s);
        fputs("\n    }", fp);
        return;
    }
    fprintf(fp, "%s\"reference\": ", ind);
    js_str(fp, it->ref_text);
    fprintf(fp, ",\n%s\"text\": ", ind);
    js_str(fp, r->text);
    fprintf(fp, ",\n%s\"generated\": [", ind);
    for (int64_t k = 0; k < r->n_gen; k++) fprintf(fp, k ? ", %d" : "%d", (int)r->gen[k]);
    fprintf(fp, "],\n%s\"stop\": \"%s\",\n%s\"ttft_s\": ", ind, ei_eval_stop_name(r->stop), ind);
    js_num(fp, r->ttft);
    fprintf(fp, ",\n%s\"prefill_s\": ", ind);
    js_num(fp, r->prefill_s);
    fprintf(fp, ",\n%s\"decode_s\": ", ind);
    js_num(fp, r->decode_s);
    fprintf(fp, ",\n%s\"decode_steps\": %lld\n    }", ind, (long long)r->decode_steps);
}

static void js_grid(FILE *fp, const ei_eval_pk_view *pk, const ei_eval_result *res) {
    const ei_pk_grid *g = pk->grid;
    fputs("  \"passkey_grid\": {\n    \"lengths\": [", fp);
    for (int l = 0; l < g->n_lengths; l++) fprintf(fp, l ? ", %lld" : "%lld", (long long)g->lengths[l]);
    fputs("],\n    \"depths\": [", fp);
    for (int d = 0; d < g->n_depths; d++) {
        if (d) fputs(", ", fp);
        js_num(fp, g->depths[d]);
    }
    fprintf(fp, "],\n    \"per_cell\": %d,\n    \"seed\": %llu,\n", g->per_cell, (unsigned long long)g->seed);
    for (int which = 0; which < 2; which++) {
        fprintf(fp, "    \"%s\": [", which ? "exact" : "contains");
        for (int l = 0; l < g->n_lengths; l++) {
            fputs(l ? ", [" : "[", fp);
            for (int d = 0; d < g->n_depths; d++) {
                if (d) fputs(", ", fp);
                js_num(fp, cell_mean(pk, res, l, d, which));
            }
            fputs("]", fp);
        }
        fputs(which ? "]\n" : "],\n", fp);
    }
    fputs("  },\n", fp);
}

int ei_eval_write_json(FILE *fp, const ei_eval_run_info *info, const ei_evalset *set, const ei_eval_result *res,
                       uint32_t n, const ei_eval_summary sum[EI_TASK_COUNT_], const ei_eval_pk_view *pk) {
    fputs("{\n  \"tool\": \"ei-eval\",\n  \"version\": ", fp);
    js_str(fp, EI_VERSION);
    fputs(",\n  \"graph\": ", fp);
    js_str(fp, info->graph);
    fprintf(fp, ",\n  \"model_file_bytes\": %llu,\n  \"scenario\": ", (unsigned long long)info->file_bytes);
    js_str(fp, info->scenario);
    fputs(",\n  \"mode\": ", fp);
    js_str(fp, info->mode);
    fprintf(fp, ",\n  \"tokens_per_call\": %d,\n  \"max_new_tokens\": %d,\n  \"backend\": ", info->tokens_per_call,
            info->max_new);
    js_str(fp, info->backend);
    fputs(",\n  \"backend_requested\": ", fp);
    js_str(fp, info->requested);
    fputs(",\n  \"kernels\": ", fp);
    if (info->kernels) js_str(fp, info->kernels);
    else fputs("null", fp);
    fprintf(fp, ",\n  \"threads\": %d,\n  \"arch\": ", info->threads);
    js_str(fp, info->arch);
    fputs(",\n  \"eval_set\": ", fp);
    if (info->eval_set) js_str(fp, info->eval_set);
    else fputs("null", fp);
    fputs(",\n  \"seconds\": ", fp);
    js_num(fp, info->seconds);
    fprintf(fp, ",\n  \"peak_rss_bytes\": %llu,\n  \"tasks\": {\n", (unsigned long long)info->peak_rss);
    int first = 1;
    for (int t = 0; t < EI_TASK_COUNT_; t++) {
        if (sum[t].items == 0) continue;
        if (!first) fputs(",\n", fp);
        first = 0;
        js_summary(fp, t, &sum[t]);
    }
    fputs("\n  },\n", fp);
    if (pk->grid) js_grid(fp, pk, res);
    fputs("  \"items\": [\n", fp);
    for (uint32_t i = 0; i < n; i++) {
        js_item(fp, &set->items[i], &res[i]);
        fputs(i + 1 < n ? ",\n" : "\n", fp);
    }
    fputs("  ]\n}\n", fp);
    if (fflush(fp) != 0 || ferror(fp)) return ei_error_set("writing the JSON report failed");
    return 0;
}
