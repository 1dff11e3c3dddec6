/* Running evaluation items on the runner and summarising them per task type: the part of `ei-eval`
 * that `ei eval --graph` on the host calls too, so both decode, stop and score the same way.
 * Device side: libc only (runtime/, text/, core/).
 *
 *   ei_eval_result res;
 *   ei_eval_run_item(runner, &set->items[i], &(ei_eval_run_opts){.max_new = 0}, &res);
 *   ei_eval_summary_add(&sum[res.type], &res);
 *   ei_eval_result_free(&res);
 *
 * One item (DESIGN 7):
 *   lm:        the prompt is scored as one document of known length (ei_runner_begin): NLL of every
 *              token after the first, perplexity; nothing is generated.
 *   otherwise: a new document of unknown length (ei_runner_reset), the prompt fed through prefill
 *              (the runner cuts it into calls of N tokens), then greedy decoding (argmax, first
 *              index on ties) one token per decode call until EOS (not fed, not part of the text),
 *              max_new tokens, or the runner's capacity (full scenarios). QA, multiple choice and
 *              passkey stop early once the answer line is complete (eval/metrics.h), which changes
 *              no score; line_stop = 0 decodes to EOS / max_new as summaries always do.
 * Timing: prefill = the ei_runner_feed of the prompt; time to first token = prefill + choosing the
 * first token; decode = every later feed + argmax (decode tokens/s = those steps / their time). */
#ifndef EI_EVAL_TASK_H
#define EI_EVAL_TASK_H

#include "runtime/runner.h"
#include "text/evalset.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int max_new;       /* tokens to generate at most; <= 0: ei_eval_max_new of the runner's file */
    int full_answers;  /* 1: QA / choice / passkey decode to EOS or max_new too (no line stop) */
} ei_eval_run_opts;

typedef enum { EI_STOP_NONE = 0, EI_STOP_EOS, EI_STOP_MAX, EI_STOP_LINE, EI_STOP_CAPACITY } ei_eval_stop;
const char *ei_eval_stop_name(int stop); /* "none", "eos", "max", "line", "capacity" */

typedef struct {
    int type;            /* ei_task_type */
    int skipped;         /* 1: not run (reason in note), no numbers below */
    char note[160];
    int64_t n_prompt;
    int32_t *gen;        /* generated ids, EOS excluded (malloc'd) */
    int64_t n_gen;
    int stop;            /* ei_eval_stop */
    char *text;          /* decoded generation (malloc'd, "" for lm) */
    double ttft, prefill_s, decode_s; /* seconds */
    int64_t decode_steps;
    double nll;          /* lm: summed NLL of nll_count tokens */
    int64_t nll_count;
    /* quality; NAN where the task type has no such number */
    double exact, contains, choice, rouge_l, ppl;
} ei_eval_result;

/* The scenario's max_new_tokens recorded in the .eig, 256 when absent or not a positive number. */
int ei_eval_max_new(const ei_runner *r);

/* Runs one item. Problems of the item that leave the runner usable (prompt longer than a full
 * scenario's capacity, empty prompt) mark it skipped and return 0; -1 with ei_error set on errors
 * of the runner or memory. res is always initialised (free it with ei_eval_result_free). */
int ei_eval_run_item(ei_runner *r, const ei_eval_item *it, const ei_eval_run_opts *o, ei_eval_result *res);
/* Fills the quality fields of res from res->text (or the NLL) and the item's reference: the
 * scoring half of ei_eval_run_item, for callers that generated text another way. */
int ei_eval_score(const ei_eval_item *it, ei_eval_result *res);
void ei_eval_result_free(ei_eval_result *res);

/* Per task type totals. */
typedef struct {
    int64_t items, skipped, scored;     /* scored: items with quality numbers */
    double exact, contains, choice, rouge_l; /* sums over scored items */
    double nll;
    int64_t nll_count;
    int64_t prompt_tokens, decode_steps, gen_tokens;
    double prefill_s, decode_s;
    double *ttft;                       /* per generating item (malloc'd) */
    size_t n_ttft, cap_ttft;
    uint64_t peak_rss;                  /* VmHWM after this type's last item, bytes */
} ei_eval_summary;

int ei_eval_summary_add(ei_eval_summary *s, const ei_eval_result *res);
void ei_eval_summary_free(ei_eval_summary *s);

/* Derived numbers, NAN when undefined (no items of the kind the number needs). */
typedef struct {
    double exact, contains, choice, rouge_l, ppl;  /* means over scored items; ppl over tokens */
    double ttft_median, ttft_p90;
    double prefill_tps, decode_tps;
} ei_eval_numbers;
void ei_eval_summary_numbers(const ei_eval_summary *s, int type, ei_eval_numbers *n);

#endif
