/* What ei-eval prints: the table on the terminal, the passkey accuracy grid and the JSON report.
 * JSON is written by hand (the device links no JSON library); non-finite numbers are null, numbers
 * that the host must reproduce (quality, perplexity) keep 17 significant digits so two runs can be
 * compared exactly. Device side: libc only. */
#ifndef EI_EVAL_REPORT_H
#define EI_EVAL_REPORT_H

#include "eval/passkey_grid.h"
#include "eval/task.h"
#include "text/evalset.h"

#include <stdint.h>
#include <stdio.h>

typedef struct {
    const char *graph;        /* .eig path */
    uint64_t file_bytes;      /* its size */
    const char *scenario;     /* scenario name ("" when absent) */
    const char *mode;         /* edgeinfinite / window / full */
    int tokens_per_call, max_new;
    const char *backend;      /* what ran: "cpu", "nnapi" */
    const char *requested;    /* what was asked for (differs after a fallback) */
    const char *kernels;      /* cpu kernel set ("neon", "avx2", "portable") or NULL */
    int threads;
    const char *eval_set;     /* .eis path or NULL */
    const char *arch;         /* "aarch64", "x86_64", ... */
    double seconds;           /* wall time of the whole run */
    uint64_t peak_rss;        /* VmHWM at the end, bytes */
} ei_eval_run_info;

/* The passkey grid of a run: items [first, first + n_lengths * n_depths * per_cell) of the set. */
typedef struct {
    const ei_pk_grid *grid;   /* NULL: no grid */
    uint32_t first;
} ei_eval_pk_view;

/* Per task type table (task types with no items are left out). */
void ei_eval_print_table(FILE *fp, const ei_eval_run_info *info, const ei_eval_summary sum[EI_TASK_COUNT_]);
/* Rows: lengths; columns: depths; cells: mean `contains` of the cell's items. */
void ei_eval_print_grid(FILE *fp, const ei_eval_pk_view *pk, const ei_eval_result *res);
/* One line per item: "<tag>\t<id> <id> ...\t<stop>" (the exact-comparison output). */
void ei_eval_print_tokens(FILE *fp, const ei_evalset *set, const ei_eval_result *res, uint32_t n);

/* One tab-separated row per task type of the run, for tables that compare runs (scenarios, precisions,
 * backends): label, task, items, skipped, metric name, quality, ttft p50 / p90 (ms), prefill and
 * decode tokens/s, peak RSS and file size (MB), backend, mode. With header != 0 the column names come
 * first. Undefined numbers are "-". 0, or -1 with ei_error set when writing fails. */
int ei_eval_write_tsv(FILE *fp, int header, const char *label, const ei_eval_run_info *info,
                      const ei_eval_summary sum[EI_TASK_COUNT_]);

/* The JSON report of n results. 0, or -1 with ei_error set when writing fails. */
int ei_eval_write_json(FILE *fp, const ei_eval_run_info *info, const ei_evalset *set, const ei_eval_result *res,
                       uint32_t n, const ei_eval_summary sum[EI_TASK_COUNT_], const ei_eval_pk_view *pk);

#endif
