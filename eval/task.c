/* Running and scoring evaluation items (eval/task.h). */
#include "eval/task.h"

#include "core/ei_error.h"
#include "core/ei_io.h"
#include "eval/metrics.h"
#include "runtime/eig_abi.h"
#include "runtime/sampler.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EI_EVAL_DEFAULT_MAX_NEW 256

const char *ei_eval_stop_name(int stop) {
    static const char *const names[] = {"none", "eos", "max", "line", "capacity"};
    return stop >= 0 && stop <= EI_STOP_CAPACITY ? names[stop] : "?";
}

int ei_eval_max_new(const ei_runner *r) {
    const char *v = ei_eig_kv_get(ei_runner_eig(r), "SCEN", EI_SCEN_MAX_NEW_TOKENS);
    if (!v) return EI_EVAL_DEFAULT_MAX_NEW;
    char *end;
    long n = strtol(v, &end, 10);
    return end != v && *end == '\0' && n > 0 && n <= 1L << 30 ? (int)n : EI_EVAL_DEFAULT_MAX_NEW;
}

static void result_init(ei_eval_result *res, const ei_eval_item *it) {
    memset(res, 0, sizeof *res);
    res->type = it->type;
    res->n_prompt = it->n_prompt;
    res->exact = res->contains = res->choice = res->rouge_l = res->ppl = NAN;
    res->ttft = res->prefill_s = res->decode_s = NAN;
}

void ei_eval_result_free(ei_eval_result *res) {
    if (!res) return;
    free(res->gen);
    free(res->text);
    res->gen = NULL;
    res->text = NULL;
}

static int line_task(int type) { return type == EI_TASK_QA || type == EI_TASK_CHOICE || type == EI_TASK_PASSKEY; }

/* Appends piece bytes to the growing text (amortised doubling: answers are streamed per token). */
static int text_append(char **text, size_t *len, size_t *cap, const char *piece, size_t n) {
    if (*len + n + 1 > *cap) {
        size_t c = *cap ? *cap : 256;
        while (c < *len + n + 1) c *= 2;
        char *t = realloc(*text, c);
        if (!t) return ei_error_set("out of memory");
        *text = t;
        *cap = c;
    }
    memcpy(*text + *len, piece, n);
    *len += n;
    (*text)[*len] = '\0';
    return 0;
}

static int run_lm(ei_runner *r, const ei_eval_item *it, ei_eval_result *res) {
    int32_t *targets = malloc(sizeof *targets * it->n_prompt);
    if (!targets) return ei_error_set("out of memory");
    for (uint32_t i = 0; i + 1 < it->n_prompt; i++) targets[i] = it->prompt[i + 1];
    targets[it->n_prompt - 1] = -1;
    ei_runner_begin(r, it->n_prompt);
    double t0 = ei_time_now();
    int rc = ei_runner_feed(r, it->prompt, it->n_prompt, targets, &res->nll, &res->nll_count, NULL);
    res->prefill_s = ei_time_now() - t0;
    free(targets);
    /* A NaN perplexity would otherwise be reported as a result (null in JSON) with exit status 0. */
    if (rc == 0 && !isfinite(res->nll))
        rc = ei_error_set("the loss is not finite (%g): the model produces non-finite logits", res->nll);
    if (rc == 0 && !(res->text = calloc(1, 1))) rc = ei_error_set("out of memory");
    return rc;
}

static int run_generate(ei_runner *r, const ei_eval_item *it, const ei_eval_run_opts *o, ei_eval_result *res) {
    const ei_tokenizer *tok = ei_runner_tokenizer(r);
    const int vocab = ei_runner_config(r)->vocab_size;
    const int eos = tok ? ei_tokenizer_eos(tok) : -1;
    const int max_new = o && o->max_new > 0 ? o->max_new : ei_eval_max_new(r);
    const int line_stop = line_task(it->type) && !(o && o->full_answers);
    const int64_t cap = ei_runner_capacity(r);
    float *logits = malloc(sizeof *logits * (size_t)vocab);
    size_t tlen = 0, tcap = 0;
    ei_sampler smp = {0};
    int rc = -1;
    if (!logits || !(res->gen = malloc(sizeof *res->gen * (size_t)max_new))) {
        ei_error_set("out of memory");
        goto done;
    }
    if (ei_sampler_init(&smp, vocab, 0.0f, 1.0f, 0) != 0 || text_append(&res->text, &tlen, &tcap, "", 0) != 0)
        goto done;
    ei_runner_reset(r);
    double t0 = ei_time_now();
    if (ei_runner_feed(r, it->prompt, it->n_prompt, NULL, NULL, NULL, logits) != 0) goto done;
    double t1 = ei_time_now();
    int next = ei_sampler_next(&smp, logits);
    if (next < 0) goto done;
    res->prefill_s = t1 - t0;
    res->ttft = ei_time_now() - t0;
    res->decode_s = 0.0;
    int prev = -1;
    for (;;) {
        if (next == eos) {
            res->stop = EI_STOP_EOS;
            break;
        }
        res->gen[res->n_gen++] = next;
        if (tok) {
            char piece[1024];
            int pn = ei_tokenizer_decode_piece(tok, prev, next, piece, sizeof piece);
            if (pn > 0 && text_append(&res->text, &tlen, &tcap, piece, (size_t)pn) != 0) goto done;
        }
        prev = next;
        if (line_stop && ei_metric_line_complete(res->text)) {
            res->stop = EI_STOP_LINE;
            break;
        }
        if (res->n_gen >= max_new) {
            res->stop = EI_STOP_MAX;
            break;
        }
        if (cap >= 0 && ei_runner_pos(r) >= cap) {
            res->stop = EI_STOP_CAPACITY;
            break;
        }
        int32_t in = next;
        double d0 = ei_time_now();
        if (ei_runner_feed(r, &in, 1, NULL, NULL, NULL, logits) != 0 || (next = ei_sampler_next(&smp, logits)) < 0)
            goto done;
        res->decode_s += ei_time_now() - d0;
        res->decode_steps++;
    }
    /* The streamed pieces only decide the line stop; the text scored is the whole decode, which
     * is what a host caller gets from the same ids (a piece longer than the buffer stays exact). */
    if (tok) {
        char *full = NULL;
        size_t flen = 0;
        if (ei_tokenizer_decode(tok, res->gen, (size_t)res->n_gen, &full, &flen) != 0) goto done;
        free(res->text);
        res->text = full;
    }
    rc = 0;
done:
    ei_sampler_free(&smp);
    free(logits);
    return rc;
}

int ei_eval_run_item(ei_runner *r, const ei_eval_item *it, const ei_eval_run_opts *o, ei_eval_result *res) {
    result_init(res, it);
    const int64_t cap = ei_runner_capacity(r);
    if (it->n_prompt == 0) {
        res->skipped = 1;
        snprintf(res->note, sizeof res->note, "empty prompt");
        return 0;
    }
    if (cap >= 0 && (int64_t)it->n_prompt > cap) {
        res->skipped = 1;
        snprintf(res->note, sizeof res->note, "prompt of %u tokens exceeds the scenario's capacity of %lld",
                 it->n_prompt, (long long)cap);
        return 0;
    }
    if (it->type != EI_TASK_LM && !ei_runner_tokenizer(r))
        return ei_error_set("%s: the .eig file has no vocabulary, so '%s' answers cannot be decoded to text",
                            it->tag, ei_task_type_name(it->type));
    int rc = it->type == EI_TASK_LM ? run_lm(r, it, res) : run_generate(r, it, o, res);
    if (rc != 0) return ei_error_prefix("%s: ", it->tag);
    return ei_eval_score(it, res);
}

int ei_eval_score(const ei_eval_item *it, ei_eval_result *res) {
    if (res->skipped) return 0;
    if (it->type == EI_TASK_LM) {
        res->ppl = ei_metric_perplexity(res->nll, res->nll_count);
        return 0;
    }
    const char *text = res->text ? res->text : "";
    if (it->type == EI_TASK_SUMMARY) {
        res->rouge_l = ei_metric_rouge_l(text, it->ref_text);
        return res->rouge_l < 0 ? ei_error_set("out of memory") : 0;
    }
    char *line = ei_metric_answer_line(text);
    if (!line) return ei_error_set("out of memory");
    int rc = 0;
    if (it->type == EI_TASK_CHOICE) {
        res->choice = ei_metric_choice(line, it->ref_text);
    } else {
        int e = ei_metric_exact(line, it->ref_text), c = ei_metric_contains(line, it->ref_text);
        if (e < 0 || c < 0) rc = ei_error_set("out of memory");
        res->exact = e;
        res->contains = c;
    }
    free(line);
    return rc;
}

/* ------------------------------------------------------------------ summaries */

static double add_if(double sum, double v) { return isnan(v) ? sum : sum + v; }

int ei_eval_summary_add(ei_eval_summary *s, const ei_eval_result *res) {
    s->items++;
    s->peak_rss = ei_peak_rss_bytes();
    if (res->skipped) {
        s->skipped++;
        return 0;
    }
    s->scored++;
    s->exact = add_if(s->exact, res->exact);
    s->contains = add_if(s->contains, res->contains);
    s->choice = add_if(s->choice, res->choice);
    s->rouge_l = add_if(s->rouge_l, res->rouge_l);
    s->nll += res->nll;
    s->nll_count += res->nll_count;
    s->prompt_tokens += res->n_prompt;
    s->prefill_s = add_if(s->prefill_s, res->prefill_s);
    s->decode_steps += res->decode_steps;
    s->decode_s = add_if(s->decode_s, res->decode_s);
    s->gen_tokens += res->n_gen;
    if (!isnan(res->ttft)) {
        if (s->n_ttft == s->cap_ttft) {
            size_t c = s->cap_ttft ? s->cap_ttft * 2 : 16;
            double *t = realloc(s->ttft, c * sizeof *t);
            if (!t) return ei_error_set("out of memory");
            s->ttft = t;
            s->cap_ttft = c;
        }
        s->ttft[s->n_ttft++] = res->ttft;
    }
    return 0;
}

void ei_eval_summary_free(ei_eval_summary *s) {
    if (!s) return;
    free(s->ttft);
    memset(s, 0, sizeof *s);
}

void ei_eval_summary_numbers(const ei_eval_summary *s, int type, ei_eval_numbers *n) {
    const double k = s->scored > 0 ? (double)s->scored : NAN;
    n->exact = n->contains = n->choice = n->rouge_l = n->ppl = NAN;
    if (type == EI_TASK_QA || type == EI_TASK_PASSKEY) {
        n->exact = s->exact / k;
        n->contains = s->contains / k;
    } else if (type == EI_TASK_CHOICE) {
        n->choice = s->choice / k;
    } else if (type == EI_TASK_SUMMARY) {
        n->rouge_l = s->rouge_l / k;
    } else if (type == EI_TASK_LM) {
        n->ppl = ei_metric_perplexity(s->nll, s->nll_count);
    }
    /* the quantile sorts: work on a copy so the summary stays in arrival order */
    n->ttft_median = n->ttft_p90 = NAN;
    double *t = s->n_ttft ? malloc(s->n_ttft * sizeof *t) : NULL;
    if (t) {
        memcpy(t, s->ttft, s->n_ttft * sizeof *t);
        n->ttft_median = ei_metric_quantile(t, s->n_ttft, 0.5);
        n->ttft_p90 = ei_metric_quantile(t, s->n_ttft, 0.9);
        free(t);
    }
    n->prefill_tps = s->prefill_s > 0 ? (double)s->prompt_tokens / s->prefill_s : NAN;
    n->decode_tps = s->decode_s > 0 && s->decode_steps > 0 ? (double)s->decode_steps / s->decode_s : NAN;
}
