/* ei-eval: the on-device evaluation binary (DESIGN 7, docs/ei-eval.md). Links the device libraries
 * only (runtime, model, text, core: libc, libm, libdl, pthreads), so the same source builds for
 * x86-64, aarch64 Linux (static) and Android.
 *
 * Exit status: 0 done, 1 bad input or a failure while running (corrupt / missing files, a model
 * that produces NaN), 2 usage errors. */
#include "core/ei_args.h"
#include "core/ei_error.h"
#include "core/ei_io.h"
#include "eval/passkey_grid.h"
#include "eval/report.h"
#include "eval/task.h"
#include "runtime/cpu_kern.h"
#include "runtime/eig_abi.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PROG "ei-eval"

static const char *arch_name(void) {
#if defined(__ANDROID__) && defined(__aarch64__)
    return "aarch64-android";
#elif defined(__aarch64__)
    return "aarch64";
#elif defined(__x86_64__)
    return "x86_64";
#elif defined(__arm__)
    return "arm";
#else
    return "unknown";
#endif
}

/* Phones have 4-8 big and little cores; more than 4 threads rarely helps a small model and makes
 * the numbers noisier, so the default stops there. */
static int default_threads(void) {
#ifdef _SC_NPROCESSORS_ONLN
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n >= 1) return n < 4 ? (int)n : 4;
#endif
    return 1;
}

static int fail(void) {
    fprintf(stderr, PROG ": error: %s\n", ei_error_get());
    return 1;
}

static int usage(const char *msg) {
    fprintf(stderr, PROG ": error: %s (see --help)\n", msg);
    return 2;
}

/* ------------------------------------------------------------------ progress */

typedef struct {
    int tty, quiet;
    double t0, last;
    size_t width; /* of the last line on a terminal, to blank it */
} progress;

static void format_eta(char *buf, size_t n, double s) {
    if (!(s >= 0) || s > 1e7) snprintf(buf, n, "?");
    else if (s < 60) snprintf(buf, n, "%.0fs", s);
    else if (s < 3600) snprintf(buf, n, "%dm%02ds", (int)s / 60, (int)s % 60);
    else snprintf(buf, n, "%dh%02dm", (int)s / 3600, (int)s % 3600 / 60);
}

/* One line before each item (a long prefill shows what it is working on): rewritten with \r on a
 * terminal; elsewhere (logs, CI) at most one line a second. */
static void progress_show(progress *p, uint32_t i, uint32_t n, const ei_eval_item *it) {
    if (p->quiet) return;
    double now = ei_time_now();
    if (!p->tty && i > 0 && now - p->last < 1.0) return;
    p->last = now;
    char eta[32] = "?";
    if (i > 0) format_eta(eta, sizeof eta, (now - p->t0) / i * (n - i));
    char line[256];
    int len = snprintf(line, sizeof line, PROG ": %u/%u %s %.60s (%u tokens) ETA %s", i + 1, n,
                       ei_task_type_name(it->type), it->tag, it->n_prompt, eta);
    if (len < 0) return;
    if (p->tty) {
        size_t w = (size_t)len < sizeof line ? (size_t)len : sizeof line - 1;
        fprintf(stderr, "\r%s%*s", line, p->width > w ? (int)(p->width - w) : 0, "");
        p->width = w;
    } else {
        fprintf(stderr, "%s\n", line);
    }
    fflush(stderr);
}

static void progress_done(progress *p, uint32_t n) {
    if (p->quiet) return;
    char line[128];
    int len = snprintf(line, sizeof line, PROG ": %u item%s in %.1f s", n, n == 1 ? "" : "s", ei_time_now() - p->t0);
    size_t w = len > 0 ? (size_t)len : 0;
    fprintf(stderr, "%s%s%*s\n", p->tty ? "\r" : "", line, p->tty && p->width > w ? (int)(p->width - w) : 0, "");
}

/* ------------------------------------------------------------------ inputs */

/* The runner on the requested backend; a backend this build or device cannot provide falls back
 * to cpu with a notice unless strict (DESIGN 6.4). *used names the backend that runs. */
static ei_runner *open_runner(const char *graph, const ei_runner_options *ro, const char **used) {
    ei_runner *r = ei_runner_open(graph, ro);
    *used = ro->backend;
    if (r || strcmp(ro->backend, "cpu") == 0 || ro->strict) return r;
    fprintf(stderr, PROG ": notice: backend '%s' unavailable (%s); running on cpu (--strict makes this an error)\n",
            ro->backend, ei_error_get());
    *used = "cpu";
    return ei_runner_open(graph, &(ei_runner_options){.backend = "cpu", .threads = ro->threads});
}

/* The items to run: the first max_tasks of the .eis (0: all), then the passkey grid, copied into
 * one set over the model's vocabulary (ids were checked against the .eis's own vocabulary, which
 * must fit in the model's). */
static ei_evalset *build_items(ei_runner *r, const ei_evalset *file, uint32_t max_tasks, const ei_pk_grid *pk,
                               const char *filler_path, uint32_t *pk_first) {
    const ei_tokenizer *tok = ei_runner_tokenizer(r);
    const int vocab = ei_runner_config(r)->vocab_size;
    ei_evalset *set = ei_evalset_new(tok ? ei_tokenizer_identity(tok) : "", vocab, tok ? ei_tokenizer_bos(tok) : -1,
                                     tok ? ei_tokenizer_eos(tok) : -1);
    char *filler = NULL;
    size_t flen = 0;
    if (!set) {
        ei_error_set("out of memory");
        return NULL;
    }
    if (file) {
        uint32_t n = max_tasks && max_tasks < file->n_items ? max_tasks : file->n_items;
        for (uint32_t i = 0; i < n; i++) {
            const ei_eval_item *it = &file->items[i];
            if (ei_evalset_add(set, it->type, it->tag, it->prompt, it->n_prompt, it->ref_text, it->ref_ids,
                               it->n_ref) != 0)
                goto fail;
        }
    }
    *pk_first = set->n_items;
    if (pk) {
        if (!tok) {
            ei_error_set("--passkey: the .eig file has no vocabulary to encode the filler with");
            goto fail;
        }
        if (filler_path && ei_file_read_all(filler_path, &filler, &flen) != 0) goto fail;
        if (ei_pk_generate(tok, filler, flen, pk, set) != 0) {
            if (filler_path) ei_error_prefix("%s: ", filler_path);
            goto fail;
        }
        free(filler);
    }
    return set;
fail:
    free(filler);
    ei_evalset_free(set);
    return NULL;
}

static int check_vocab(const ei_evalset *file, ei_runner *r, const char *path) {
    const int vocab = ei_runner_config(r)->vocab_size;
    if (file->vocab_size > vocab)
        return ei_error_set("%s: made for a vocabulary of %d tokens, but the model has %d (wrong tokenizer?)", path,
                            (int)file->vocab_size, vocab);
    const ei_tokenizer *tok = ei_runner_tokenizer(r);
    /* Identities name the tokenizer file; the same vocabulary as tok512.bin and tok512.model differs
     * in name only, so a mismatch is worth a warning, not a refusal. */
    if (tok && file->tokenizer[0] && strcmp(file->tokenizer, ei_tokenizer_identity(tok)) != 0)
        fprintf(stderr, PROG ": warning: %s was made with tokenizer '%s', the model's is '%s'\n", path, file->tokenizer,
                ei_tokenizer_identity(tok));
    return 0;
}

static int write_json(const char *path, const ei_eval_run_info *info, const ei_evalset *set,
                      const ei_eval_result *res, const ei_eval_summary *sum, const ei_eval_pk_view *pk) {
    if (strcmp(path, "-") == 0) return ei_eval_write_json(stdout, info, set, res, set->n_items, sum, pk);
    ei_atomic_file f;
    if (ei_atomic_open(&f, path) != 0) return -1;
    if (ei_eval_write_json(f.fp, info, set, res, set->n_items, sum, pk) != 0) {
        ei_atomic_abort(&f);
        return ei_error_prefix("%s: ", path);
    }
    return ei_atomic_commit(&f);
}

/* Appends (the file is a log of runs; rows already there stay). A new or empty file gets the header. */
static int append_tsv(const char *path, const char *label, const ei_eval_run_info *info, const ei_eval_summary *sum) {
    FILE *fp = fopen(path, "a");
    if (!fp) return ei_error_set("%s: cannot open for appending: %s", path, strerror(errno));
    int header = fseek(fp, 0, SEEK_END) == 0 && ftell(fp) == 0;
    if (ei_eval_write_tsv(fp, header, label[0] ? label : "-", info, sum) != 0) {
        fclose(fp);
        return ei_error_prefix("%s: ", path);
    }
    if (fclose(fp) != 0) return ei_error_set("%s: writing failed: %s", path, strerror(errno));
    return 0;
}

/* ------------------------------------------------------------------ main */

static const char *DESCRIPTION =
    "Runs an evaluation set made by `ei prepare --eval-set` (QA, multiple choice, summaries, language\n"
    "modelling, passkey) and/or a passkey grid generated here on a .eig graph file: prompts go through\n"
    "the prefill graph in calls of N tokens, answers are decoded greedily with the decode graph up to\n"
    "the scenario's max_new_tokens or EOS (QA / choice / passkey stop at the end of the answer line).\n"
    "Reports per task type: quality (exact match and contains for QA and passkey, option accuracy for\n"
    "multiple choice, ROUGE-L F1 over words for summaries, perplexity for language modelling), time to\n"
    "first token (median, p90), prefill and decode tokens/s, peak resident memory and the file size;\n"
    "a table on stdout, JSON with --json. Metric definitions: eval/metrics.h, docs/ei-eval.md.\n"
    "Exit status: 0 done, 1 bad input or run failure, 2 usage error.\n\n"
    "  ei-eval --graph model.eig --eval-set tasks.eis --backend cpu --threads 4 --json out.json\n"
    "  ei-eval --graph model.eig --passkey --lengths 1k,4k,16k --depths 0,25,50,75,100 --filler book.txt";

int main(int argc, char **argv) {
    const char *graph = NULL, *eval_set = NULL, *backend = "cpu", *json = NULL, *lengths_s = NULL,
               *depths_s = NULL, *filler = NULL, *tsv = NULL, *label = NULL;
    int threads = default_threads(), max_tasks = 0, max_new = 0, passkey = 0, per_cell = 1, strict = 0,
        full_answers = 0, print_tokens = 0, quiet = 0, report = 0;
    ei_runner_nnapi_cli nn = {0};
    int64_t seed = 0;
    ei_arg opts[] = {
        {"graph", EI_ARG_STR, &graph, "FILE.eig", "graph file made by `ei compile` (required)"},
        {"eval-set", EI_ARG_STR, &eval_set, "FILE.eis", "evaluation set made by `ei prepare --eval-set`"},
        {"backend", EI_ARG_STR, &backend, "NAME",
         "cpu or nnapi (nnapi falls back to cpu with a notice unless --strict)"},
        {"strict", EI_ARG_FLAG, &strict, NULL, "fail instead of falling back to cpu"},
        EI_RUNNER_NNAPI_ARGS(nn),
        {"report", EI_ARG_FLAG, &report, NULL,
         "print which NNAPI operations the device would not run and what the lowering did instead (before "
         "running; alone: only the report)"},
        {"threads", EI_ARG_INT, &threads, "N", "cpu worker threads including the caller [online cores, at most 4]"},
        EI_ARG_RANGE(1, 256),
        {"max-tasks", EI_ARG_INT, &max_tasks, "N", "run only the first N items of the evaluation set (0: all)"},
        EI_ARG_RANGE(0, 2147483647),
        {"max-new", EI_ARG_INT, &max_new, "N",
         "generate at most N tokens per answer (0: the scenario's max_new_tokens)"},
        EI_ARG_RANGE(0, 1 << 20),
        {"full-answers", EI_ARG_FLAG, &full_answers, NULL,
         "QA / choice / passkey: decode to EOS or the limit, not only the answer line (scores do not change)"},
        {"passkey", EI_ARG_FLAG, &passkey, NULL, "also run a passkey grid generated on the device"},
        {"lengths", EI_ARG_STR, &lengths_s, "LIST", "--passkey: prompt lengths in tokens, k = 1024 [1k,4k]"},
        {"depths", EI_ARG_STR, &depths_s, "LIST",
         "--passkey: key depths, percent (0,25,50,75,100) or fractions (0,0.5,1) [0,25,50,75,100]"},
        {"filler", EI_ARG_STR, &filler, "FILE", "--passkey: UTF-8 filler text [the classic grass/sky/sun sentences]"},
        {"per-cell", EI_ARG_INT, &per_cell, "N", "--passkey: samples (keys) per length and depth"},
        EI_ARG_RANGE(1, 1e6),
        {"seed", EI_ARG_I64, &seed, "N", "--passkey: seed of the keys"},
        EI_ARG_RANGE(0, 9007199254740992.0),
        {"json", EI_ARG_STR, &json, "FILE", "write the JSON report to FILE ('-': stdout, the table goes to stderr)"},
        {"tsv", EI_ARG_STR, &tsv, "FILE",
         "append one tab-separated row per task type to FILE (created with a header), for comparing runs"},
        {"label", EI_ARG_STR, &label, "NAME", "--tsv: the rows' label [the scenario name]"},
        {"print-tokens", EI_ARG_FLAG, &print_tokens, NULL,
         "print each item's generated token ids (tag, ids, stop reason; tab-separated) before the table"},
        {"quiet", EI_ARG_FLAG, &quiet, NULL, "no progress line"},
        {0}};
    char **pos = NULL;
    int npos = 0;
    int prc = ei_args_parse(argc, argv, PROG, DESCRIPTION, opts, &pos, &npos);
    free(pos);
    if (prc == 1) return 0;
    if (prc < 0) return 2;
    if (npos > 0) return usage("unexpected positional argument");
    if (!graph) return usage("--graph FILE.eig is required");
    if (!eval_set && !passkey && !report)
        return usage("nothing to run: give --eval-set FILE.eis and/or --passkey (or --report)");
    if (!passkey && (lengths_s || depths_s || filler || per_cell != 1 || seed != 0))
        return usage("--lengths, --depths, --filler, --per-cell and --seed need --passkey");
    if (strcmp(backend, "cpu") != 0 && strcmp(backend, "nnapi") != 0)
        return usage("--backend must be cpu or nnapi");
    if (threads < 1 || threads > 256) return usage("--threads must be between 1 and 256");
    if (max_tasks < 0 || max_new < 0) return usage("--max-tasks and --max-new must not be negative");
    if (per_cell < 1) return usage("--per-cell must be at least 1");
    if (label && !tsv) return usage("--label needs --tsv");
    if (label && (strchr(label, '\t') || strchr(label, '\n'))) return usage("--label must not hold tabs or newlines");
    if (seed < 0) return usage("--seed must not be negative");

    ei_runner_options rop = {.backend = backend, .threads = threads, .strict = strict};
    if (ei_runner_cli_apply(&nn, &rop) != 0) return usage(ei_error_get());
    if (report) {
        int nr = ei_runner_nnapi_report(graph, &rop, stdout);
        fflush(stdout);
        if (!eval_set && !passkey) return nr < 0 ? 1 : 0;
        if (nr < 0 && strict) return 1;
    }

    ei_pk_grid grid = {.per_cell = per_cell, .seed = (uint64_t)seed};
    if (passkey &&
        (ei_pk_parse_lengths(lengths_s ? lengths_s : "1k,4k", "lengths", &grid.lengths, &grid.n_lengths) != 0 ||
         ei_pk_parse_depths(depths_s ? depths_s : "0,25,50,75,100", "depths", &grid.depths, &grid.n_depths) != 0)) {
        free(grid.lengths);
        fprintf(stderr, PROG ": error: %s (see --help)\n", ei_error_get());
        return 2;
    }

    {
        /* --json FILE replaces, --tsv FILE appends: neither may be an input. */
        const char *in[] = {graph, eval_set, filler};
        if (ei_check_not_input(json && strcmp(json, "-") != 0 ? json : NULL, in, 3) != 0 ||
            ei_check_not_input(tsv, in, 3) != 0) {
            fprintf(stderr, PROG ": error: %s\n", ei_error_get());
            free(grid.lengths);
            free(grid.depths);
            return 1;
        }
    }
    int rc = 1;
    double t_start = ei_time_now();
    ei_evalset *file = NULL, *set = NULL;
    ei_runner *r = NULL;
    ei_eval_result *res = NULL;
    ei_eval_summary sum[EI_TASK_COUNT_];
    memset(sum, 0, sizeof sum);
    uint32_t done = 0, pk_first = 0;
    const char *used = backend;
    if (eval_set && !(file = ei_evalset_read(eval_set))) goto out;
    if (!(r = open_runner(graph, &rop, &used))) goto out;
    if (file && check_vocab(file, r, eval_set) != 0) goto out;
    if (!(set = build_items(r, file, (uint32_t)max_tasks, passkey ? &grid : NULL, filler, &pk_first))) goto out;
    if (set->n_items == 0) {
        ei_error_set("%s: the evaluation set holds no items", eval_set ? eval_set : "passkey grid");
        goto out;
    }
    if (!(res = calloc(set->n_items, sizeof *res))) {
        ei_error_set("out of memory");
        goto out;
    }

    progress pg = {.tty = isatty(2), .quiet = quiet, .t0 = ei_time_now()};
    ei_eval_run_opts ro = {.max_new = max_new, .full_answers = full_answers};
    for (; done < set->n_items; done++) {
        const ei_eval_item *it = &set->items[done];
        progress_show(&pg, done, set->n_items, it);
        if (ei_eval_run_item(r, it, &ro, &res[done]) != 0 || ei_eval_summary_add(&sum[it->type], &res[done]) != 0) {
            done++; /* its result holds memory to free */
            if (pg.tty && !quiet) fputc('\n', stderr);
            goto out;
        }
    }
    progress_done(&pg, set->n_items);

    const ei_eig *e = ei_runner_eig(r);
    const char *scen = ei_eig_kv_get(e, "SCEN", EI_SCEN_NAME), *mode = ei_eig_kv_get(e, "SCEN", EI_SCEN_MODE);
    ei_eval_run_info info = {
        .graph = graph,
        .file_bytes = ei_eig_file_size(e),
        .scenario = scen ? scen : "",
        .mode = mode ? mode : "",
        .tokens_per_call = ei_runner_tokens_per_call(r),
        .max_new = max_new > 0 ? max_new : ei_eval_max_new(r),
        .backend = used,
        .requested = backend,
        .kernels = strcmp(used, "cpu") == 0 ? ei_cpu_kernels_best()->name : NULL,
        .threads = threads,
        .eval_set = eval_set,
        .arch = arch_name(),
        .seconds = ei_time_now() - t_start,
        .peak_rss = ei_peak_rss_bytes(),
    };
    ei_eval_pk_view pk = {.grid = passkey ? &grid : NULL, .first = pk_first};
    FILE *table = json && strcmp(json, "-") == 0 ? stderr : stdout;
    for (uint32_t i = 0; i < set->n_items; i++)
        if (res[i].skipped) fprintf(stderr, PROG ": skipped %s: %s\n", set->items[i].tag, res[i].note);
    if (print_tokens) ei_eval_print_tokens(table, set, res, set->n_items);
    ei_eval_print_table(table, &info, sum);
    ei_eval_print_grid(table, &pk, res);
    if (fflush(table) != 0) {
        ei_error_set("writing the table failed");
        goto out;
    }
    if (json && write_json(json, &info, set, res, sum, &pk) != 0) goto out;
    if (tsv && append_tsv(tsv, label ? label : info.scenario, &info, sum) != 0) goto out;
    rc = 0;
out:
    if (rc != 0) fail();
    for (uint32_t i = 0; i < done; i++) ei_eval_result_free(&res[i]);
    for (int t = 0; t < EI_TASK_COUNT_; t++) ei_eval_summary_free(&sum[t]);
    free(res);
    ei_evalset_free(set);
    ei_evalset_free(file);
    ei_runner_close(r);
    free(grid.lengths);
    free(grid.depths);
    return rc;
}
