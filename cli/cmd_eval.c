/* `ei eval --ppl FILE`: perplexity of a text file under a model.
 *
 * Counting: every document is BOS + its tokens; the first token after BOS and every later token is
 * predicted from its prefix, so a document of n tokens (BOS included) contributes n - 1 predicted
 * tokens. `tokens` is the total number of predicted tokens, `loss` their mean negative log-likelihood
 * in nats and `ppl` = exp(loss). A document longer than the context is scored with a sliding window
 * (see ei_infer_score: windows of ctx tokens advancing by --stride, default ctx/2, each scoring only
 * the targets not scored before, so every token after the first window has at least ctx - stride
 * tokens of context). Attention schemes are listed in the mode table below; `full` is the base
 * model with full attention. */
#include "cli/commands.h"
#include "core/ei_args.h"
#include "core/ei_error.h"
#include "core/ei_io.h"
#include "data/dataset.h"
#include "text/tokenizer.h"
#include "train/edge_session.h"
#include "train/infer.h"
#include "train/trainer.h"
#include "formats/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    const ei_model *model;
    int ctx, stride;
    void *state; /* mode-specific */
} eval_ctx;

/* A scoring mode: open its state, score one document (adding to nll_sum / n_pred), close. */
typedef struct {
    const char *name;
    const char *help;
    int (*open)(eval_ctx *e);
    int (*score)(eval_ctx *e, const int32_t *ids, int n, double *nll_sum, int64_t *n_pred);
    void (*close)(eval_ctx *e);
} eval_mode;

static void progress_cb(void *ctx, int64_t done, int64_t total);

static int full_open(eval_ctx *e) {
    ei_infer *inf = ei_infer_new(e->model, e->ctx);
    if (!inf) return -1;
    ei_infer_set_progress(inf, progress_cb, NULL);
    e->state = inf;
    return 0;
}
static int full_score(eval_ctx *e, const int32_t *ids, int n, double *nll_sum, int64_t *n_pred) {
    return ei_infer_score(e->state, ids, n, e->stride, nll_sum, n_pred);
}
static void full_close(eval_ctx *e) { ei_infer_free(e->state); }

/* window / edgeinfinite (train/ei_cli.h): the whole document is processed segment by segment, or
 * routed to the base model when it is no longer than the routing threshold. */
static ei_cli_opts g_edge_opts;

static void edge_progress(void *ctx, int64_t done, int64_t total) { progress_cb(ctx, done, total); }

static int edge_open(eval_ctx *e) {
    ei_cli_session *s = malloc(sizeof *s);
    if (!s) return ei_error_set("out of memory");
    if (ei_cli_session_open(s, &g_edge_opts, e->model) != 0) {
        free(s);
        return -1;
    }
    ei_edge_set_progress(s->edge, edge_progress, NULL);
    e->state = s;
    return 0;
}
static int edge_score(eval_ctx *e, const int32_t *ids, int n, double *nll_sum, int64_t *n_pred) {
    if (n < 2) return 0;
    ei_doc_result r;
    if (ei_edge_doc_eval(((ei_cli_session *)e->state)->edge, ids, ids + 1, NULL, n - 1, &r) != 0) return -1;
    *nll_sum += r.nll_sum;
    *n_pred += r.count;
    return 0;
}
static void edge_close(eval_ctx *e) {
    ei_cli_session_close(e->state);
    free(e->state);
}

static const eval_mode eval_modes[] = {
    {"full", "base model, full attention (sliding window beyond the context)", full_open, full_score, full_close},
    {"window", "sink + window caches only, segment by segment (StreamingLLM)", edge_open, edge_score, edge_close},
    {"edgeinfinite", "EdgeInfinite: sink + window + gated compressive memory", edge_open, edge_score, edge_close},
};

typedef struct {
    double t_start, t_last;
    int64_t done_before; /* predicted tokens of finished documents */
    int doc, n_docs;
    int tty;
} progress_state;

static progress_state g_progress;

static void progress_print(int64_t done) {
    double now = ei_time_now();
    if (now - g_progress.t_last < 1.0) return;
    g_progress.t_last = now;
    double rate = (double)done / fmax(now - g_progress.t_start, 1e-9);
    fprintf(stderr, "%seval: document %d/%d, %lld tokens scored, %.0f tok/s%s", g_progress.tty ? "\r" : "",
            g_progress.doc + 1, g_progress.n_docs, (long long)done, rate, g_progress.tty ? "   " : "\n");
}

static void progress_cb(void *ctx, int64_t done, int64_t total) {
    (void)ctx;
    (void)total;
    progress_print(g_progress.done_before + done);
}

/* Splits text into paragraphs separated by runs of blank (whitespace-only) lines; each paragraph is
 * trimmed of leading and trailing whitespace. Returns the count; spans in *starts / *lens (malloc'd). */
static int split_paragraphs(const char *text, size_t len, size_t **starts, size_t **lens) {
    size_t cap = 64, n = 0;
    size_t *s = malloc(cap * sizeof *s), *l = malloc(cap * sizeof *l);
    if (!s || !l) goto oom;
    size_t i = 0;
    while (i < len) {
        /* skip blank lines and leading whitespace */
        while (i < len && (text[i] == ' ' || text[i] == '\t' || text[i] == '\r' || text[i] == '\n' ||
                           text[i] == '\f' || text[i] == '\v'))
            i++;
        if (i >= len) break;
        size_t b = i, e = i;
        /* a paragraph ends at a line that is empty or whitespace-only */
        while (i < len) {
            size_t ls = i;
            while (i < len && text[i] != '\n') i++;
            int blank = 1;
            for (size_t k = ls; k < i; k++)
                if (!(text[k] == ' ' || text[k] == '\t' || text[k] == '\r' || text[k] == '\f' || text[k] == '\v'))
                    blank = 0;
            if (blank) break;
            e = i;
            if (i < len) i++;
        }
        while (e > b && (text[e - 1] == ' ' || text[e - 1] == '\t' || text[e - 1] == '\r')) e--;
        if (n == cap) {
            cap *= 2;
            size_t *ns = realloc(s, cap * sizeof *s), *nl;
            if (!ns) goto oom;
            s = ns;
            if (!(nl = realloc(l, cap * sizeof *l))) goto oom;
            l = nl;
        }
        s[n] = b;
        l[n] = e - b;
        n++;
    }
    *starts = s;
    *lens = l;
    return (int)n;
oom:
    free(s);
    free(l);
    return ei_error_set("out of memory splitting paragraphs");
}

static void json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') fprintf(f, "\\%c", ch);
        else if (ch < 0x20) fprintf(f, "\\u%04x", ch);
        else fputc(ch, f);
    }
    fputc('"', f);
}

/* --data: mean NLL over the loss-masked tokens of the first max_samples samples of an HDF5 dataset
 * (ei prepare), each sample cut to max_tokens (0: whole), in any mode (the session's edge runs the
 * base model in full mode). The same measure as the trainer's validation loss. */
static int score_dataset(const char *path, const ei_model *m, int64_t max_samples, int64_t max_tokens, int json,
                         const char *mode_name, int exact) {
    ei_cli_session s;
    ei_dataset *d = ei_dataset_open(path);
    if (!d) return -1;
    if (ei_dataset_vocab_size(d) > m->cfg.vocab_size) {
        ei_dataset_close(d);
        return ei_error_set("%s: dataset vocabulary (%d) larger than the model's (%d): wrong tokenizer?", path,
                            ei_dataset_vocab_size(d), m->cfg.vocab_size);
    }
    if (ei_cli_session_open(&s, &g_edge_opts, m) != 0) {
        ei_dataset_close(d);
        return -1;
    }
    int64_t n = ei_dataset_n_samples(d);
    if (max_samples > 0 && max_samples < n) n = max_samples;
    ei_sample_buf b = {0};
    double nll = 0, t0 = ei_time_now();
    int64_t count = 0, rc = 0, n_exact = 0, n_answered = 0;
    float *logits = exact ? malloc((size_t)m->cfg.vocab_size * sizeof(float)) : NULL;
    if (exact && !logits) rc = ei_error_set("out of memory");
    g_progress = (progress_state){.t_start = t0, .t_last = t0, .n_docs = (int)n, .tty = isatty(2)};
    ei_edge_set_progress(s.edge, edge_progress, NULL);
    for (int64_t i = 0; i < n && rc == 0; i++) {
        int64_t len, cnt;
        ei_doc_result r;
        if (ei_sample_load(&b, d, i, max_tokens, &len, &cnt) != 0) rc = -1;
        g_progress.doc = (int)i;
        g_progress.done_before = count;
        if (rc == 0 && len > 0 && ei_edge_doc_eval(s.edge, b.tokens, b.targets, b.pmask, len, &r) != 0) rc = -1;
        if (rc == 0 && len > 0) {
            nll += r.nll_sum;
            count += r.count;
        }
        if (rc == 0 && exact) {
            int x = ei_trainer_answer_exact(s.edge, b.tokens, b.mask, len + 1, m->cfg.vocab_size, logits);
            if (x < 0) rc = -1;
            else if (x < 2) {
                n_exact += x;
                n_answered++;
            }
        }
    }
    ei_sample_free(&b);
    free(logits);
    ei_cli_session_close(&s);
    ei_dataset_close(d);
    if (rc != 0) return -1;
    if (count == 0) return ei_error_set("%s: no loss-masked tokens to score", path);
    if (g_progress.tty && ei_time_now() - t0 >= 1.0) fputc('\n', stderr);
    double loss = nll / (double)count, secs = ei_time_now() - t0;
    if (json) {
        printf("{\"data\": ");
        json_string(stdout, path);
        printf(", \"mode\": \"%s\", \"samples\": %lld, \"tokens\": %lld, \"loss\": %.6f, \"ppl\": %.6f, "
               "\"seconds\": %.3f",
               mode_name, (long long)n, (long long)count, loss, exp(loss), secs);
        if (exact) printf(", \"answered\": %lld, \"exact\": %.6f", (long long)n_answered,
                          n_answered ? (double)n_exact / (double)n_answered : 0.0);
        printf("}\n");
    } else {
        printf("tokens %lld\nloss %.6f\nppl %.6f\n", (long long)count, loss, exp(loss));
        if (exact) printf("answered %lld\nexact %.6f\n", (long long)n_answered,
                          n_answered ? (double)n_exact / (double)n_answered : 0.0);
    }
    fprintf(stderr, "eval: %lld samples, %lld tokens in %.2f s\n", (long long)n, (long long)count, secs);
    return 0;
}

int ei_cmd_eval(int argc, char **argv) {
    const char *ppl_path = NULL, *data_path = NULL, *model_path = NULL, *tok_path = NULL, *mode_name = "full";
    int max_tokens = 0, paragraphs = 0, json = 0, ctx = 0, stride = 0, max_samples = 0, exact = 0;
    ei_cli_opts_default(&g_edge_opts);
    ei_arg opts[] = {
        {"ppl", EI_ARG_STR, &ppl_path, "FILE", "text file to score (this or --data is required)"},
        {"data", EI_ARG_STR, &data_path, "FILE.h5",
         "instead of --ppl: mean loss over the loss-masked tokens of a dataset (ei prepare)"},
        {"max-samples", EI_ARG_INT, &max_samples, "N", "--data: only the first N samples (0: all)"},
        {"exact", EI_ARG_FLAG, &exact, NULL,
         "--data: also decode each answer greedily and report the exact-match rate"},
        {"model", EI_ARG_STR, &model_path, "PATH", "llama2.c .bin file or Hugging Face folder (required)"},
        {"tokenizer", EI_ARG_STR, &tok_path, "PATH", "tokenizer file or folder (default: the model's own)"},
        {"mode", EI_ARG_STR, &mode_name, "MODE", "attention scheme: full, window or edgeinfinite"},
        {"paragraphs", EI_ARG_FLAG, &paragraphs, NULL,
         "score each blank-line-separated paragraph as its own BOS-prefixed document"},
        {"max-tokens", EI_ARG_INT, &max_tokens, "N",
         "keep only the first N tokens, BOS tokens included (0: all); with --data: per sample"},
        {"ctx", EI_ARG_INT, &ctx, "N", "context length (0: the model's trained context)"},
        {"stride", EI_ARG_INT, &stride, "N", "sliding-window step for documents longer than the context (0: ctx/2)"},
        {"json", EI_ARG_FLAG, &json, NULL, "print one JSON object instead of lines"},
        EI_CLI_ARG_ROWS(&g_edge_opts),
        {0}};
    int rc = ei_args_parse(argc, argv, "ei eval",
                           "Perplexity of a text file. The whole file is one document (BOS + its tokens) unless "
                           "--paragraphs. Prints `tokens N` (predicted tokens: every token after a document's "
                           "BOS), `loss L` (their mean negative log-likelihood, nats) and `ppl P` (exp(loss)). "
                           "With --data FILE.h5 instead: the same three over the loss-masked tokens of a dataset "
                           "from `ei prepare` (each sample its own document), and with --exact the greedy "
                           "exact-match rate of the answers.",
                           opts, NULL, NULL);
    if (rc) return rc < 0 ? 2 : 0;
    if ((!ppl_path && !data_path) || (ppl_path && data_path) || !model_path) {
        fprintf(stderr, "ei eval: error: --model PATH and one of --ppl FILE or --data FILE.h5 are required (see --help)\n");
        return 2;
    }
    if (max_tokens < 0 || ctx < 0 || stride < 0) {
        fprintf(stderr, "ei eval: error: --max-tokens, --ctx and --stride must be >= 0\n");
        return 2;
    }
    const eval_mode *mode = NULL;
    for (size_t i = 0; i < sizeof eval_modes / sizeof eval_modes[0]; i++)
        if (strcmp(eval_modes[i].name, mode_name) == 0) mode = &eval_modes[i];
    if (!mode) {
        fprintf(stderr, "ei eval: error: unknown --mode '%s' (available:", mode_name);
        for (size_t i = 0; i < sizeof eval_modes / sizeof eval_modes[0]; i++) fprintf(stderr, " %s", eval_modes[i].name);
        fprintf(stderr, ")\n");
        return 2;
    }

    if (data_path) {
        g_edge_opts.mode = mode->name;
        ei_model *dm = ei_model_load(model_path);
        int r = dm ? score_dataset(data_path, dm, max_samples, max_tokens, json, mode->name, exact) : -1;
        if (r != 0) ei_error_print("eval");
        ei_model_free(dm);
        return r == 0 ? 0 : 1;
    }
    int status = 1, mode_open = 0;
    ei_model *m = NULL;
    ei_tokenizer *tok = NULL;
    char *text = NULL, *def_tok = NULL;
    size_t len = 0, *starts = NULL, *lens = NULL;
    int32_t *ids = NULL;
    eval_ctx e = {0};

    if (ei_file_read_all(ppl_path, &text, &len) != 0) goto fail;
    if (!(m = ei_model_load(model_path))) goto fail;
    if (!tok_path) tok_path = def_tok = ei_model_default_tokenizer(model_path, m->cfg.vocab_size);
    if (!tok_path) {
        ei_error_set("%s: no tokenizer found beside the model; pass --tokenizer", model_path);
        goto fail;
    }
    if (!(tok = ei_tokenizer_load(tok_path, m->cfg.vocab_size))) goto fail;
    if (ei_tokenizer_vocab_size(tok) > m->cfg.vocab_size) {
        ei_error_set("%s: tokenizer has %d tokens but the model only %d", tok_path, ei_tokenizer_vocab_size(tok),
                     m->cfg.vocab_size);
        goto fail;
    }
    if (ei_tokenizer_bos(tok) < 0) {
        ei_error_set("%s: the tokenizer has no BOS token to start documents with", tok_path);
        goto fail;
    }
    int n_docs;
    if (paragraphs) {
        if ((n_docs = split_paragraphs(text, len, &starts, &lens)) < 0) goto fail;
    } else {
        n_docs = 1;
        starts = malloc(sizeof *starts);
        lens = malloc(sizeof *lens);
        if (!starts || !lens) {
            ei_error_set("out of memory");
            goto fail;
        }
        starts[0] = 0;
        lens[0] = len;
    }
    g_edge_opts.mode = mode->name;
    e.model = m;
    e.ctx = ctx;
    e.stride = stride;
    if (mode->open(&e) != 0) goto fail;
    mode_open = 1;

    g_progress = (progress_state){.t_start = ei_time_now(), .n_docs = n_docs, .tty = isatty(2)};
    g_progress.t_last = g_progress.t_start;
    double nll = 0.0;
    int64_t n_pred = 0, budget = max_tokens > 0 ? max_tokens : INT64_MAX, used = 0;
    int docs_scored = 0;
    for (int d = 0; d < n_docs && used < budget; d++) {
        size_t n = 0;
        free(ids);
        ids = NULL;
        if (ei_tokenizer_encode(tok, text + starts[d], lens[d], 1, 0, &ids, &n) != 0) goto fail;
        if ((int64_t)n > budget - used) n = (size_t)(budget - used);
        if (n > INT32_MAX) {
            ei_error_set("%s: document %d has too many tokens", ppl_path, d + 1);
            goto fail;
        }
        used += (int64_t)n;
        g_progress.doc = d;
        g_progress.done_before = n_pred;
        if (mode->score(&e, ids, (int)n, &nll, &n_pred) != 0) goto fail;
        docs_scored++;
        progress_print(n_pred);
    }
    if (g_progress.tty && ei_time_now() - g_progress.t_start >= 1.0) fputc('\n', stderr);
    double secs = ei_time_now() - g_progress.t_start;
    if (n_pred == 0) {
        ei_error_set("%s: nothing to score (no document has a token after BOS)", ppl_path);
        goto fail;
    }
    double loss = nll / (double)n_pred;
    if (json) {
        printf("{\"file\": ");
        json_string(stdout, ppl_path);
        printf(", \"model\": ");
        json_string(stdout, model_path);
        printf(", \"mode\": \"%s\", \"documents\": %d, \"tokens\": %lld, \"loss\": %.6f, \"ppl\": %.6f, "
               "\"seconds\": %.3f}\n",
               mode->name, docs_scored, (long long)n_pred, loss, exp(loss), secs);
    } else {
        printf("tokens %lld\nloss %.6f\nppl %.6f\n", (long long)n_pred, loss, exp(loss));
    }
    fprintf(stderr, "eval: %d documents, %lld tokens in %.2f s (%.0f tok/s)\n", docs_scored, (long long)n_pred, secs,
            (double)n_pred / fmax(secs, 1e-9));
    status = 0;
    goto done;
fail:
    ei_error_print("eval");
done:
    if (mode_open) mode->close(&e);
    free(ids);
    free(starts);
    free(lens);
    free(text);
    free(def_tok);
    ei_tokenizer_free(tok);
    ei_model_free(m);
    return status;
}
