/* `ei generate`: text generation in any attention mode (train/edge.h), or through the compiled
 * graphs of a .eig file (--graph, runtime/runner.h): the prompt is fed through the segment rule,
 * then one token at a time; window / edgeinfinite documents run on the base model while they are
 * no longer than the routing threshold. */
#include "cli/commands.h"
#include "core/ei_args.h"
#include "core/ei_error.h"
#include "core/ei_io.h"
#include "text/tokenizer.h"
#include "runtime/sampler.h"
#include "train/edge_session.h"
#include "formats/model.h"
#include "runtime/runner.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int ei_cmd_generate(int argc, char **argv) {
    const char *model_path = NULL, *tok_path = NULL, *prompt = NULL, *graph_path = NULL, *backend = "cpu";
    int threads = 2, strict = 0;
    ei_runner_nnapi_cli nn = {0};
    int max_tokens = 256, ctx = 0, print_ids = 0;
    double temperature = 1.0, top_p = 0.9;
    int64_t seed = 0;
    ei_cli_opts eo;
    ei_cli_opts_default(&eo);
    eo.who = "ei generate";
    ei_arg opts[] = {
        {"model", EI_ARG_STR, &model_path, "PATH", "llama2.c .bin file or Hugging Face folder (this or --graph)"},
        {"graph", EI_ARG_STR, &graph_path, "FILE.eig",
         "instead of --model: generate with the compiled graphs of an `ei compile` file (runner)"},
        {"backend", EI_ARG_STR, &backend, "cpu|nnapi", "--graph: the backend the graphs run on"},
        {"threads", EI_ARG_INT, &threads, "N", "--graph: cpu backend threads"},
        EI_ARG_RANGE(1, 256),
        {"strict", EI_ARG_FLAG, &strict, NULL, "--graph --backend nnapi: fail instead of falling back to cpu"},
        EI_RUNNER_NNAPI_ARGS(nn),
        {"tokenizer", EI_ARG_STR, &tok_path, "PATH", "tokenizer file or folder (default: the model's own)"},
        {"prompt", EI_ARG_STR, &prompt, "TEXT", "text to continue, encoded after BOS (default: BOS alone)"},
        {"max-tokens", EI_ARG_INT, &max_tokens, "N", "generate at most N tokens"},
        EI_ARG_RANGE(0, 2147483647),
        {"temperature", EI_ARG_FLOAT, &temperature, "T", "sampling temperature; 0 = greedy"},
        EI_ARG_RANGE(0, 1e6),
        {"top-p", EI_ARG_FLOAT, &top_p, "P", "nucleus sampling threshold in (0, 1]; 1 = off"},
        EI_ARG_RANGE(0, 1),
        {"seed", EI_ARG_I64, &seed, "S", "random seed; 0 = from the clock"},
        EI_ARG_RANGE(0, 9007199254740992.0),
        {"ctx", EI_ARG_INT, &ctx, "N", "--mode full: context length (0: the model's trained context)"},
        EI_ARG_RANGE(0, 1 << 24),
        {"ids", EI_ARG_FLAG, &print_ids, NULL, "print the token ids (prompt and generated, space-separated) instead of text"},
        EI_CLI_ARG_MODE(&eo),
        EI_CLI_ARG_ROWS(&eo),
        {0}};
    int rc = ei_args_parse(argc, argv, "ei generate",
                           "Continues --prompt with the base model (--mode full: full attention over at most "
                           "--ctx tokens), with sink and window caches only (--mode window, StreamingLLM: tokens "
                           "leaving the window are dropped) or with EdgeInfinite (--mode edgeinfinite: they are "
                           "compressed into the memory; trained gates from --gates, untrained gates without it). "
                           "Both window and edgeinfinite run the base model until the text is longer than sink + "
                           "window + segment tokens (the routing threshold). Prints the prompt and the generated "
                           "text to stdout as they come (--ids: token ids), stops at EOS (or BOS), after "
                           "--max-tokens tokens or, in full mode, when the context is full, and prints the speed "
                           "to stderr.\n\n"
                           "  ei generate --model ../shared/fixtures/models/stories260K/stories260K.bin "
                           "--temperature 0 --max-tokens 64",
                           opts, NULL, NULL);
    if (rc) return rc < 0 ? 2 : 0;
    if (!model_path == !graph_path) {
        fprintf(stderr, "ei generate: error: one of --model PATH or --graph FILE.eig is required (see --help)\n");
        return 2;
    }
    if (!graph_path && (strcmp(backend, "cpu") != 0 || strict || nn.lib || nn.device || nn.cache_dir || nn.fallback ||
                        nn.relax_f16)) {
        fprintf(stderr, "ei generate: error: --backend, --strict and the --nnapi-* options apply to --graph\n");
        return 2;
    }
    if (graph_path && (strcmp(eo.mode, "full") != 0 || eo.gates_path || ei_cli_opts_any_set(&eo) || ctx)) {
        fprintf(stderr, "ei generate: error: --mode, --gates, --ctx and the EdgeInfinite options are fixed in a graph "
                        "file (ei compile); with --graph give none of them\n");
        return 2;
    }
    if (max_tokens < 0 || temperature < 0.0 || top_p <= 0.0 || top_p > 1.0 || ctx < 0) {
        fprintf(stderr, "ei generate: error: need --max-tokens >= 0, --temperature >= 0, 0 < --top-p <= 1, --ctx >= 0\n");
        return 2;
    }
    int status = 1;
    ei_model *m = NULL;
    ei_runner *run = NULL;
    ei_tokenizer *tok = NULL;
    const ei_tokenizer *use = NULL;
    ei_cli_session es = {0};
    ei_sampler smp = {0};
    ei_docmodel dm = {0};
    int32_t *ids = NULL;
    float *logits = NULL;
    char *def_tok = NULL;
    size_t n_ids = 0;
    int64_t cap = -1;
    const ei_model_config *c;

    if (graph_path) {
        ei_runner_options ro = {.backend = backend, .threads = threads, .strict = strict};
        if (ei_runner_cli_apply(&nn, &ro) != 0 || !(run = ei_runner_open(graph_path, &ro))) goto fail;
        c = ei_runner_config(run);
        dm = ei_runner_docmodel(run);
        cap = ei_runner_capacity(run);
        use = ei_runner_tokenizer(run);
        if (!use && !tok_path) {
            ei_error_set("%s holds no tokenizer; pass --tokenizer", graph_path);
            goto fail;
        }
    } else {
        if (!(m = ei_model_load(model_path))) goto fail;
        c = &m->cfg;
        if (!tok_path) tok_path = def_tok = ei_model_default_tokenizer(model_path, c->vocab_size);
        if (!tok_path) {
            ei_error_set("%s: no tokenizer found beside the model; pass --tokenizer", model_path);
            goto fail;
        }
    }
    if (tok_path && !(use = tok = ei_tokenizer_load(tok_path, c->vocab_size))) goto fail;
    if (ei_tokenizer_vocab_size(use) > c->vocab_size) {
        ei_error_set("%s: tokenizer has %d tokens but the model only %d", tok_path ? tok_path : graph_path,
                     ei_tokenizer_vocab_size(use), c->vocab_size);
        goto fail;
    }
    if (!prompt) prompt = "";
    if (ei_tokenizer_encode(use, prompt, strlen(prompt), 1, 1, &ids, &n_ids) != 0) goto fail;
    if (n_ids == 0) {
        int bos = ei_tokenizer_bos(use) >= 0 ? ei_tokenizer_bos(use) : c->bos_id;
        if (bos < 0) {
            ei_error_set("empty prompt and neither the tokenizer nor the model defines a BOS token");
            goto fail;
        }
        free(ids);
        if (!(ids = malloc(sizeof *ids))) goto oom;
        ids[0] = bos;
        n_ids = 1;
    }
    if (!graph_path) {
        if (ei_cli_session_open(&es, &eo, m) != 0) goto fail;
        if (ctx && es.mode != EI_MODE_FULL) {
            ei_error_set("--ctx applies to --mode full (window and edgeinfinite have no context limit)");
            goto fail;
        }
        if (es.mode == EI_MODE_FULL && ei_edge_set_context(es.edge, ctx, 0) != 0) goto fail;
        cap = ei_edge_capacity(es.edge);
        dm = ei_edge_docmodel(es.edge);
    }
    if (cap > 0 && (int64_t)n_ids > cap) {
        ei_error_set("prompt has %zu tokens, more than the context of %lld", n_ids, (long long)cap);
        goto fail;
    }
    if (!(logits = malloc(sizeof(float) * (size_t)c->vocab_size))) goto oom;
    uint64_t rs = seed ? (uint64_t)seed : (uint64_t)time(NULL) ^ 0x9E3779B97F4A7C15ull;
    if (ei_sampler_init(&smp, c->vocab_size, (float)temperature, (float)top_p, rs) != 0) goto fail;

    int eos = ei_tokenizer_eos(use) >= 0 ? ei_tokenizer_eos(use) : c->eos_id;
    int bos = ei_tokenizer_bos(use) >= 0 ? ei_tokenizer_bos(use) : c->bos_id;
    char piece[512];
    int prev = -1;
    for (size_t i = 0; i < n_ids; i++) {
        if (print_ids) printf("%s%d", i ? " " : "", ids[i]);
        else {
            ei_tokenizer_decode_piece(use, prev, ids[i], piece, sizeof piece);
            fputs(piece, stdout);
        }
        prev = ids[i];
    }
    fflush(stdout);
    double t0 = ei_time_now();
    dm.begin(dm.impl, -1); /* length unknown: routing follows the length so far */
    if (dm.feed(dm.impl, ids, (int64_t)n_ids, NULL, NULL, NULL, logits) != 0) goto fail;
    double t1 = ei_time_now();
    int generated = 0;
    int64_t pos = (int64_t)n_ids;
    const char *why = "max tokens";
    while (generated < max_tokens) {
        int next = ei_sampler_next(&smp, logits);
        if (next < 0) goto fail;
        if (next == eos || next == bos) {
            why = next == eos ? "EOS" : "BOS";
            break;
        }
        if (print_ids) printf(" %d", next);
        else {
            ei_tokenizer_decode_piece(use, prev, next, piece, sizeof piece);
            fputs(piece, stdout);
        }
        fflush(stdout);
        prev = next;
        generated++;
        if (generated == max_tokens) break;
        if (cap > 0 && pos >= cap) {
            why = "context full";
            break;
        }
        int32_t t = next;
        if (dm.feed(dm.impl, &t, 1, NULL, NULL, NULL, logits) != 0) goto fail;
        pos++;
    }
    double t2 = ei_time_now();
    fputc('\n', stdout);
    fflush(stdout);
    fprintf(stderr, "prompt: %zu tokens (%.1f tok/s); generated: %d tokens, %.1f tok/s; stopped: %s\n", n_ids,
            (double)n_ids / fmax(t1 - t0, 1e-9), generated, generated / fmax(t2 - t1, 1e-9), why);
    status = 0;
    goto done;
oom:
    ei_error_set("out of memory");
fail:
    ei_error_print("generate");
done:
    ei_runner_close(run);
    ei_cli_session_close(&es);
    ei_sampler_free(&smp);
    free(ids);
    free(logits);
    free(def_tok);
    ei_tokenizer_free(tok);
    ei_model_free(m);
    return status;
}
