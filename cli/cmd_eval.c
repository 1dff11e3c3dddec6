/* `ei eval`: how well a model predicts a text (--ppl) or a dataset (--data), in any attention mode.
 *
 * Counting (--ppl): every document is BOS + its tokens; every token after BOS is predicted from its
 * prefix, so a document of n tokens (BOS included) contributes n - 1 predicted tokens. `tokens` is
 * the number of predicted tokens, `loss` their mean negative log-likelihood in nats and `ppl` =
 * exp(loss). --data scores the loss-masked tokens of each sample, as the trainer's validation loss.
 * Every mode runs through the EdgeInfinite model (train/edge.h): full attention beyond the context
 * uses its sliding window (--ctx, --stride), window / edgeinfinite route short documents to the
 * base model. */
#include "cli/commands.h"
#include "core/ei_args.h"
#include "core/ei_error.h"
#include "core/ei_io.h"
#include "data/dataset.h"
#include "text/paragraphs.h"
#include "text/tokenizer.h"
#include "train/edge_session.h"
#include "train/trainer.h"
#include "formats/model.h"
#include "runtime/runner.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    double t_start, t_last;
    int64_t done_before; /* tokens of finished documents */
    int doc, n_docs;
    int tty;
} progress_state;

static void progress_print(progress_state *p, int64_t done) {
    double now = ei_time_now();
    if (now - p->t_last < 1.0) return;
    p->t_last = now;
    double rate = (double)done / fmax(now - p->t_start, 1e-9);
    fprintf(stderr, "%seval: document %d/%d, %lld tokens scored, %.0f tok/s%s", p->tty ? "\r" : "", p->doc + 1,
            p->n_docs, (long long)done, rate, p->tty ? "   " : "\n");
}

static void progress_cb(void *ctx, int64_t done, int64_t total) {
    (void)total;
    progress_state *p = ctx;
    progress_print(p, p->done_before + done);
}

static void progress_start(progress_state *p, int n_docs) {
    *p = (progress_state){.t_start = ei_time_now(), .n_docs = n_docs, .tty = isatty(2)};
    p->t_last = p->t_start;
}

static void progress_end(const progress_state *p) {
    if (p->tty && ei_time_now() - p->t_start >= 1.0) fputc('\n', stderr);
}

/* The result line(s): text, or one JSON object made with cJSON (escaping included). */
typedef struct {
    const char *input_key, *input, *model, *mode;
    int64_t docs, tokens;
    double loss, secs;
    int exact;
    int64_t answered;
    double exact_rate;
} eval_result;

static int print_result(const eval_result *r, int json) {
    if (!json) {
        printf("tokens %lld\nloss %.6f\nppl %.6f\n", (long long)r->tokens, r->loss, exp(r->loss));
        if (r->exact) printf("answered %lld\nexact %.6f\n", (long long)r->answered, r->exact_rate);
        return 0;
    }
    cJSON *o = cJSON_CreateObject();
    if (!o) return ei_error_set("out of memory");
    cJSON_AddStringToObject(o, r->input_key, r->input);
    cJSON_AddStringToObject(o, "model", r->model);
    cJSON_AddStringToObject(o, "mode", r->mode);
    cJSON_AddNumberToObject(o, strcmp(r->input_key, "data") == 0 ? "samples" : "documents", (double)r->docs);
    cJSON_AddNumberToObject(o, "tokens", (double)r->tokens);
    cJSON_AddNumberToObject(o, "loss", r->loss);
    cJSON_AddNumberToObject(o, "ppl", exp(r->loss));
    cJSON_AddNumberToObject(o, "seconds", r->secs);
    if (r->exact) {
        cJSON_AddNumberToObject(o, "answered", (double)r->answered);
        cJSON_AddNumberToObject(o, "exact", r->exact_rate);
    }
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!s) return ei_error_set("out of memory");
    printf("%s\n", s);
    cJSON_free(s);
    return 0;
}

/* What is scored: the eager model (an ei_edge, with per-segment progress) or a compiled graph file
 * on the runner; both through the document-model interface (model/docmodel.h). */
typedef struct {
    ei_docmodel dm;
    ei_edge *edge;               /* eager; NULL for a graph */
    const ei_model *m;           /* eager */
    ei_runner *runner;           /* graph */
    int vocab;
    int64_t align;               /* streamed feeds are multiples of this (segment boundaries); 0: no streaming */
} eval_target;

/* --data: mean NLL over the loss-masked tokens of the first max_samples samples (each cut to
 * max_tokens, 0: whole), and with exact the greedy exact-match rate of the answers. */
static int score_dataset(const char *path, eval_target *tg, int64_t max_samples, int64_t max_tokens, int exact,
                         int allow_mismatch, eval_result *res) {
    ei_dataset *d = ei_dataset_open(path);
    if (!d) return -1;
    int rc = 0;
    ei_dataset_limit_vocab(d, tg->vocab); /* ids past the model's vocabulary: an error naming the sample */
    if (ei_dataset_vocab_size(d) > tg->vocab)
        rc = ei_error_set("%s: dataset vocabulary (%d) larger than the model's (%d): wrong tokenizer?", path,
                          ei_dataset_vocab_size(d), tg->vocab);
    if (rc == 0 && tg->m && ei_check_dataset_tokenizer(&d, 1, tg->m, NULL, allow_mismatch, "ei eval") != 0) rc = -1;
    const ei_tokenizer *gt = tg->runner ? ei_runner_tokenizer(tg->runner) : NULL;
    if (rc == 0 && gt) { /* a graph file carries its tokenizer: the same check */
        int r = ei_dataset_check_tokenizer(d, gt, "the graph file's tokenizer");
        if (r < 0 && allow_mismatch) fprintf(stderr, "ei eval: warning (--allow-tokenizer-mismatch): %s\n", ei_error_get());
        else if (r < 0) rc = ei_error_prefix("(pass --allow-tokenizer-mismatch if this is deliberate) ");
    }
    int64_t n = ei_dataset_n_samples(d);
    if (max_samples > 0 && max_samples < n) n = max_samples;
    ei_sample_buf b = {0};
    double nll = 0;
    int64_t count = 0, n_exact = 0, n_answered = 0;
    float *logits = exact ? malloc((size_t)tg->vocab * sizeof(float)) : NULL;
    if (rc == 0 && exact && !logits) rc = ei_error_set("out of memory");
    progress_state prog;
    progress_start(&prog, (int)n);
    if (tg->edge) ei_edge_set_progress(tg->edge, progress_cb, &prog);
    for (int64_t i = 0; i < n && rc == 0; i++) {
        int64_t len, cnt;
        if (ei_sample_load(&b, d, i, max_tokens, &len, &cnt) != 0) rc = -1;
        prog.doc = (int)i;
        prog.done_before = count;
        if (rc == 0 && len > 0 && tg->dm.score(tg->dm.impl, b.tokens, b.targets, b.pmask, len, &nll, &count) != 0)
            rc = -1;
        if (!tg->edge) progress_print(&prog, count);
        if (rc == 0 && exact) {
            int x = ei_docmodel_answer_exact(&tg->dm, b.tokens, b.mask, len + 1, logits);
            if (x < 0) rc = -1;
            else if (x < 2) {
                n_exact += x;
                n_answered++;
            }
        }
    }
    if (tg->edge) ei_edge_set_progress(tg->edge, NULL, NULL);
    ei_sample_free(&b);
    free(logits);
    ei_dataset_close(d);
    if (rc != 0) return -1;
    if (count == 0) return ei_error_set("%s: no loss-masked tokens to score", path);
    progress_end(&prog);
    res->docs = n;
    res->tokens = count;
    res->loss = nll / (double)count;
    res->secs = ei_time_now() - prog.t_start;
    res->exact = exact;
    res->answered = n_answered;
    res->exact_rate = n_answered ? (double)n_exact / (double)n_answered : 0.0;
    return 0;
}

/* ------------------------------------------------------------------ --ppl, streamed
 * The whole file as one document without holding it: the text is read in pieces cut at word
 * boundaries (ei_text_cut) and each piece encoded on its own, which gives the tokens of the whole
 * (ei_tokenizer_encode_cont), so memory stays flat however long the file. Pass 1 counts the tokens
 * (routing and the segment plan need the length), pass 2 feeds them in multiples of the segment,
 * which makes the result the same as scoring the whole document at once. */

#define PIECE_BYTES (256u << 10)
#define FEED_MIN ((int64_t)1 << 16)

typedef struct {
    FILE *fp;
    char *buf; /* [cap + 1] */
    size_t cap, len;
    int eof, first;
} text_reader;

static int reader_open(text_reader *r, const char *path) {
    memset(r, 0, sizeof *r);
    r->first = 1;
    r->cap = PIECE_BYTES;
    if (!(r->fp = fopen(path, "rb"))) return ei_error_set("%s: cannot open: %s", path, strerror(errno));
    if (!(r->buf = malloc(r->cap + 1))) {
        fclose(r->fp);
        r->fp = NULL;
        return ei_error_set("out of memory");
    }
    return 0;
}

static void reader_close(text_reader *r) {
    if (r->fp) fclose(r->fp);
    free(r->buf);
    memset(r, 0, sizeof *r);
}

/* The next piece is buf[0..*k) (*k = 0: the end); a text without any cut point grows the buffer. */
static int reader_next(text_reader *r, const char *path, size_t *k) {
    for (;;) {
        while (!r->eof && r->len < r->cap) {
            size_t got = fread(r->buf + r->len, 1, r->cap - r->len, r->fp);
            if (got == 0) {
                if (ferror(r->fp)) return ei_error_set("%s: read error", path);
                r->eof = 1;
            }
            r->len += got;
        }
        size_t c = r->eof ? r->len : ei_text_cut(r->buf, r->len);
        if (c > 0 || r->eof) {
            *k = c;
            return 0;
        }
        char *nb = realloc(r->buf, 2 * r->cap + 1);
        if (!nb) return ei_error_set("%s: out of memory (%zu bytes without a space)", path, r->len);
        r->buf = nb;
        r->cap *= 2;
    }
}

/* Encodes piece buf[0..k) the way `ei prepare` reads text (BOM dropped, CRLF -> LF) and drops it. */
static int reader_encode(text_reader *r, size_t k, const ei_tokenizer *t, int32_t **ids, size_t *n) {
    char keep = r->buf[k];
    size_t len = ei_text_normalize(r->buf, k); /* writes a NUL at len <= k */
    int rc = r->first ? ei_tokenizer_encode(t, r->buf, len, 1, 0, ids, n)
                      : ei_tokenizer_encode_cont(t, r->buf, len, 0, ids, n);
    r->buf[k] = keep;
    memmove(r->buf, r->buf + k, r->len - k);
    r->len -= k;
    r->first = 0;
    return rc;
}

/* Pass 1 (feed NULL): *total = tokens of the document (BOS included), at most budget. Pass 2: feeds
 * them. */
typedef struct {
    eval_target *tg;
    int32_t *pend; /* pend[0] is the last token fed as a target, not yet as a position */
    int64_t n_pend, cap_pend, fed;
    double nll;
    int64_t count;
    progress_state *prog;
} feeder;

static int feed_some(feeder *f, int64_t n) {
    if (n <= 0) return 0;
    /* positions pend[0..n) predict pend[1..n] */
    if (f->tg->dm.feed(f->tg->dm.impl, f->pend, n, f->pend + 1, &f->nll, &f->count, NULL) != 0) return -1;
    memmove(f->pend, f->pend + n, (size_t)(f->n_pend - n) * sizeof *f->pend);
    f->n_pend -= n;
    f->fed += n;
    if (!f->tg->edge) progress_print(f->prog, f->count);
    return 0;
}

static int feeder_push(feeder *f, const int32_t *ids, int64_t n, int last) {
    if (f->n_pend + n > f->cap_pend) {
        int64_t cap = (f->n_pend + n) * 2;
        int32_t *p = realloc(f->pend, (size_t)cap * sizeof *p);
        if (!p) return ei_error_set("out of memory");
        f->pend = p;
        f->cap_pend = cap;
    }
    memcpy(f->pend + f->n_pend, ids, (size_t)n * sizeof *ids);
    f->n_pend += n;
    int64_t ready = f->n_pend - 1; /* positions whose target is known */
    if (last) return feed_some(f, ready);
    if (ready < FEED_MIN + f->tg->align) return 0;
    return feed_some(f, (ready - FEED_MIN) / f->tg->align * f->tg->align);
}

static int score_stream(const char *path, eval_target *tg, const ei_tokenizer *use, int64_t max_tokens,
                        eval_result *res) {
    int64_t budget = max_tokens > 0 ? max_tokens : INT64_MAX, total = 0;
    feeder f = {.tg = tg};
    text_reader r;
    progress_state prog;
    int32_t *ids = NULL;
    int rc = -1;
    for (int pass = 0; pass < 2; pass++) {
        int64_t seen = 0;
        if (reader_open(&r, path) != 0) goto out;
        if (pass == 1) {
            if (total < 2) {
                ei_error_set("%s: nothing to score (no token after BOS)", path);
                goto out;
            }
            progress_start(&prog, 1);
            f.prog = &prog;
            if (tg->edge) ei_edge_set_progress(tg->edge, progress_cb, &prog);
            tg->dm.begin(tg->dm.impl, total - 1);
        }
        while (seen < budget) {
            size_t k = 0, n = 0;
            if (reader_next(&r, path, &k) != 0) goto out;
            if (k == 0 && !r.first) break;
            free(ids);
            ids = NULL;
            if (reader_encode(&r, k, use, &ids, &n) != 0) goto out;
            if ((int64_t)n > budget - seen) n = (size_t)(budget - seen);
            seen += (int64_t)n;
            if (pass == 1 && feeder_push(&f, ids, (int64_t)n, seen == total) != 0) goto out;
            if (k == 0) break;
        }
        reader_close(&r);
        if (pass == 0) total = seen;
    }
    progress_end(&prog);
    if (f.count == 0) {
        ei_error_set("%s: nothing to score (no token after BOS)", path);
        goto out;
    }
    res->docs = 1;
    res->tokens = f.count;
    res->loss = f.nll / (double)f.count;
    res->secs = ei_time_now() - prog.t_start;
    rc = 0;
out:
    if (tg->edge) ei_edge_set_progress(tg->edge, NULL, NULL);
    reader_close(&r);
    free(ids);
    free(f.pend);
    return rc;
}

/* --ppl: the text file as one BOS-prefixed document, or one per paragraph, at most max_tokens
 * tokens in all (0: no limit). */
static int score_text(const char *path, eval_target *tg, const char *tok_path, int paragraphs, int64_t max_tokens,
                      eval_result *res) {
    char *text = NULL, *def_tok = NULL;
    size_t len = 0;
    ei_span *spans = NULL, whole;
    int32_t *ids = NULL;
    ei_tokenizer *tok = NULL;
    int rc = -1;
    size_t n_docs = 0;
    progress_state prog;
    const ei_tokenizer *use = NULL; /* the file's tokenizer of a graph, unless --tokenizer */
    if (!tok_path && tg->runner) {
        if (!(use = ei_runner_tokenizer(tg->runner))) {
            ei_error_set("the graph file holds no tokenizer; pass --tokenizer");
            goto out;
        }
        tok_path = "the graph file's tokenizer";
    } else {
        if (!tok_path && tg->m) tok_path = def_tok = ei_model_default_tokenizer(tg->m->path, tg->vocab);
        if (!tok_path) {
            ei_error_set("%s: no tokenizer found beside the model; pass --tokenizer", tg->m ? tg->m->path : "");
            goto out;
        }
        if (!(use = tok = ei_tokenizer_load(tok_path, tg->vocab))) goto out;
    }
    if (ei_tokenizer_vocab_size(use) > tg->vocab) {
        ei_error_set("%s: tokenizer has %d tokens but the model only %d", tok_path, ei_tokenizer_vocab_size(use),
                     tg->vocab);
        goto out;
    }
    if (ei_tokenizer_bos(use) < 0) {
        ei_error_set("%s: the tokenizer has no BOS token to start documents with", tok_path);
        goto out;
    }
    if (!paragraphs && tg->align > 0) {
        rc = score_stream(path, tg, use, max_tokens, res);
        goto out;
    }
    /* the text as `ei prepare` reads it (BOM dropped, CRLF -> LF), split by the same rule */
    if (ei_file_read_all(path, &text, &len) != 0) goto out;
    len = ei_text_normalize(text, len);
    if (paragraphs) {
        if (ei_text_paragraphs(text, len, &spans, &n_docs) != 0) goto out;
    } else {
        whole = (ei_span){0, len};
        n_docs = 1;
    }
    const ei_span *docs_at = paragraphs ? spans : &whole;
    progress_start(&prog, (int)n_docs);
    if (tg->edge) ei_edge_set_progress(tg->edge, progress_cb, &prog);
    double nll = 0.0;
    int64_t n_pred = 0, budget = max_tokens > 0 ? max_tokens : INT64_MAX, used = 0, docs = 0;
    for (size_t d = 0; d < n_docs && used < budget; d++) {
        size_t n = 0;
        free(ids);
        ids = NULL;
        if (ei_tokenizer_encode(use, text + docs_at[d].start, docs_at[d].len, 1, 0, &ids, &n) != 0) goto out;
        if ((int64_t)n > budget - used) n = (size_t)(budget - used);
        used += (int64_t)n;
        prog.doc = (int)d;
        prog.done_before = n_pred;
        docs++;
        if (n < 2) continue;
        if (tg->dm.score(tg->dm.impl, ids, ids + 1, NULL, (int64_t)n - 1, &nll, &n_pred) != 0) goto out;
        progress_print(&prog, n_pred);
    }
    progress_end(&prog);
    if (n_pred == 0) {
        ei_error_set("%s: nothing to score (no document has a token after BOS)", path);
        goto out;
    }
    res->docs = docs;
    res->tokens = n_pred;
    res->loss = nll / (double)n_pred;
    res->secs = ei_time_now() - prog.t_start;
    rc = 0;
out:
    if (tg->edge) ei_edge_set_progress(tg->edge, NULL, NULL);
    free(ids);
    free(spans);
    free(text);
    free(def_tok);
    ei_tokenizer_free(tok);
    return rc;
}

int ei_cmd_eval(int argc, char **argv) {
    const char *ppl_path = NULL, *data_path = NULL, *model_path = NULL, *tok_path = NULL, *graph_path = NULL;
    const char *backend = "cpu";
    int threads = 2, strict = 0;
    ei_runner_nnapi_cli nn = {0};
    int max_tokens = 0, paragraphs = 0, json = 0, ctx = 0, stride = 0, max_samples = 0, exact = 0, allow_tok = 0;
    ei_cli_opts eo;
    ei_cli_opts_default(&eo);
    eo.who = "ei eval";
    ei_arg opts[] = {
        {"ppl", EI_ARG_STR, &ppl_path, "FILE", "text file to score (this or --data is required)"},
        {"data", EI_ARG_STR, &data_path, "FILE.h5",
         "instead of --ppl: mean loss over the loss-masked tokens of a dataset (ei prepare)"},
        {"max-samples", EI_ARG_INT, &max_samples, "N", "--data: only the first N samples (0: all)"},
        EI_ARG_RANGE(0, 2147483647),
        {"exact", EI_ARG_FLAG, &exact, NULL, "--data: also decode each answer greedily and report the exact-match rate"},
        {"allow-tokenizer-mismatch", EI_ARG_FLAG, &allow_tok, NULL,
         "--data: score a dataset tokenised with another tokenizer than the model's (warning instead of an error)"},
        {"model", EI_ARG_STR, &model_path, "PATH", "llama2.c .bin file or Hugging Face folder (this or --graph)"},
        {"graph", EI_ARG_STR, &graph_path, "FILE.eig",
         "instead of --model: score through the compiled graphs of an `ei compile` file (runner, any backend)"},
        {"backend", EI_ARG_STR, &backend, "cpu|nnapi", "--graph: the backend the graphs run on"},
        {"threads", EI_ARG_INT, &threads, "N", "--graph: cpu backend threads"},
        EI_ARG_RANGE(1, 256),
        {"strict", EI_ARG_FLAG, &strict, NULL, "--graph --backend nnapi: fail instead of falling back to cpu"},
        EI_RUNNER_NNAPI_ARGS(nn),
        {"tokenizer", EI_ARG_STR, &tok_path, "PATH", "--ppl: tokenizer file or folder (default: the model's own)"},
        {"paragraphs", EI_ARG_FLAG, &paragraphs, NULL,
         "--ppl: score each blank-line-separated paragraph as its own BOS-prefixed document"},
        {"max-tokens", EI_ARG_INT, &max_tokens, "N",
         "--ppl: keep only the first N tokens, BOS tokens included; --data: cut each sample to N (0: all)"},
        EI_ARG_RANGE(0, 2147483647),
        {"ctx", EI_ARG_INT, &ctx, "N", "--mode full: context length (0: the model's trained context)"},
        EI_ARG_RANGE(0, 1 << 24),
        {"stride", EI_ARG_INT, &stride, "N",
         "--mode full: sliding-window step for documents longer than the context (0: ctx/2)"},
        EI_ARG_RANGE(0, 1 << 24),
        {"json", EI_ARG_FLAG, &json, NULL, "print one JSON object instead of lines"},
        EI_CLI_ARG_MODE(&eo),
        EI_CLI_ARG_ROWS(&eo),
        {0}};
    int rc = ei_args_parse(argc, argv, "ei eval",
                           "Perplexity of a text file. The whole file is one document (BOS + its tokens) unless "
                           "--paragraphs. Prints `tokens N` (predicted tokens: every token after a document's "
                           "BOS), `loss L` (their mean negative log-likelihood, nats) and `ppl P` (exp(loss)). "
                           "With --data FILE.h5 instead: the same three over the loss-masked tokens of a dataset "
                           "from `ei prepare` (each sample its own document), and with --exact the greedy "
                           "exact-match rate of the answers. Full attention scores documents longer than the "
                           "context with a sliding window (--ctx, --stride).",
                           opts, NULL, NULL);
    if (rc) return rc < 0 ? 2 : 0;
    if ((!ppl_path && !data_path) || (ppl_path && data_path) || !model_path == !graph_path) {
        fprintf(stderr, "ei eval: error: one of --model PATH or --graph FILE.eig, and one of --ppl FILE or --data "
                        "FILE.h5 are required (see --help)\n");
        return 2;
    }
    if (max_tokens < 0 || ctx < 0 || stride < 0 || max_samples < 0) {
        fprintf(stderr, "ei eval: error: --max-tokens, --max-samples, --ctx and --stride must be >= 0\n");
        return 2;
    }
    /* options that do not apply to the chosen input or mode are errors, never silently ignored */
    const char *bad = data_path && paragraphs ? "--paragraphs applies to --ppl, not --data"
                      : data_path && tok_path ? "--tokenizer applies to --ppl (a dataset is already tokenised)"
                      : ppl_path && (max_samples || exact || allow_tok)
                          ? "--max-samples, --exact and --allow-tokenizer-mismatch apply to --data, not --ppl"
                      : (ctx || stride) && strcmp(eo.mode, "full") != 0
                          ? "--ctx and --stride apply to --mode full (window and edgeinfinite have no context limit)"
                      : !graph_path && (strcmp(backend, "cpu") != 0 || strict || nn.lib || nn.device || nn.cache_dir ||
                                        nn.fallback || nn.relax_f16)
                          ? "--backend, --strict and the --nnapi-* options apply to --graph"
                      : graph_path && (strcmp(eo.mode, "full") != 0 || eo.gates_path || ei_cli_opts_any_set(&eo))
                          ? "--mode, --gates and the EdgeInfinite options are fixed in a graph file (ei compile); "
                            "with --graph give none of them"
                          : NULL;
    if (bad) {
        fprintf(stderr, "ei eval: error: %s\n", bad);
        return 2;
    }
    int status = 1;
    ei_model *m = NULL;
    ei_cli_session s = {0};
    eval_target tg = {0};
    eval_result res = {.input_key = data_path ? "data" : "file", .input = data_path ? data_path : ppl_path,
                       .model = graph_path ? graph_path : model_path, .mode = eo.mode};
    if (graph_path) {
        ei_runner_options ro = {.backend = backend, .threads = threads, .strict = strict};
        if (ei_runner_cli_apply(&nn, &ro) != 0 || !(tg.runner = ei_runner_open(graph_path, &ro))) goto fail;
        tg.dm = ei_runner_docmodel(tg.runner);
        tg.vocab = ei_runner_config(tg.runner)->vocab_size;
        /* the runner splits into calls of N tokens inside segments: whole multiples of both */
        tg.align = (int64_t)ei_runner_opts(tg.runner)->segment * ei_runner_tokens_per_call(tg.runner);
        res.mode = ei_mode_name(ei_runner_mode(tg.runner));
    } else {
        if (!(m = ei_model_load(model_path)) || ei_cli_session_open(&s, &eo, m) != 0) goto fail;
        if (s.mode == EI_MODE_FULL && ei_edge_set_context(s.edge, ctx, stride) != 0) goto fail;
        tg.edge = s.edge;
        tg.m = m;
        tg.dm = ei_edge_docmodel(s.edge);
        tg.vocab = m->cfg.vocab_size;
        /* full attention scores long documents by a sliding window over the whole: not streamed */
        tg.align = s.mode == EI_MODE_FULL ? 0 : ei_edge_opts(s.edge)->segment;
    }
    if (data_path ? score_dataset(data_path, &tg, max_samples, max_tokens, exact, allow_tok, &res)
                  : score_text(ppl_path, &tg, tok_path, paragraphs, max_tokens, &res))
        goto fail;
    if (!isfinite(res.loss)) {
        /* Finite weights can still overflow to inf; a NaN loss is never a result. */
        ei_error_set("%s: the loss is not finite (%g): the model produces non-finite logits on this input",
                     res.input, res.loss);
        goto fail;
    }
    if (print_result(&res, json) != 0) goto fail;
    fprintf(stderr, "eval: %lld %s, %lld tokens in %.2f s (%.0f tok/s), peak RSS %.1f MB\n", (long long)res.docs,
            data_path ? "samples" : "documents", (long long)res.tokens, res.secs,
            (double)res.tokens / fmax(res.secs, 1e-9), (double)ei_peak_rss_bytes() / 1e6);
    status = 0;
    goto done;
fail:
    ei_error_print("eval");
done:
    ei_runner_close(tg.runner);
    ei_cli_session_close(&s);
    ei_model_free(m);
    return status;
}
