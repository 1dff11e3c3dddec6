/* Measures EdgeInfinite on a real model: peak resident memory of one forward + backward over a
 * document, the saved per-segment state size, and the time per 1K tokens of the forward pass and of
 * forward + backward. One document length per run, because peak RSS (VmHWM) only grows within a
 * process:
 *   for n in 2048 8192 32768; do build/bench_ei --model ../shared/fixtures/models/stories260K/stories260K.bin --tokens $n; done
 * --repeat N runs the document N times and reports the median time per 1K tokens (a training loop
 * sees the steady state: graphs built, buffers warm) next to the first run's. Token ids are
 * pseudo-random (timing and memory do not depend on them). */
#include "core/ei_args.h"
#include "core/ei_error.h"
#include "core/ei_io.h"
#include "kernels/kernels.h"
#include "train/edge.h"

#include <stdio.h>
#include <stdlib.h>

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int main(int argc, char **argv) {
    const char *model_path = NULL;
    int64_t tokens = 2048;
    ei_opts o;
    ei_opts_default(&o);
    const char *gate = "token", *rule = "linear";
    int train_only = 0, repeat = 1, threads = 0;
    ei_arg opts[] = {{"model", EI_ARG_STR, &model_path, "PATH", "base model (required)"},
                     {"tokens", EI_ARG_I64, &tokens, "N", "document length"},
                     {"segment", EI_ARG_INT, &o.segment, "L", "segment length"},
                     {"window", EI_ARG_INT, &o.window, "W", "window cache"},
                     {"sink", EI_ARG_INT, &o.sink, "S", "sink cache"},
                     {"gate", EI_ARG_STR, &gate, "token|head", "gate kind"},
                     {"memory-rule", EI_ARG_STR, &rule, "linear|delta", "memory rule"},
                     {"train-only", EI_ARG_FLAG, &train_only, NULL, "skip the forward-only pass (training peak alone)"},
                     {"repeat", EI_ARG_INT, &repeat, "N", "runs of the document; times are medians"},
                     {"threads", EI_ARG_INT, &threads, "N", "OpenMP threads (0: OMP_NUM_THREADS / all)"},
                     {0}};
    char **pos = NULL;
    int npos = 0;
    int rc = ei_args_parse(argc, argv, "bench_ei", "EdgeInfinite memory and speed on one document.", opts,
                           &pos, &npos);
    free(pos);
    if (rc != 0) return rc > 0 ? 0 : 2;
    if (!model_path || tokens < 2 || repeat < 1 || repeat > 1000 || ei_gate_kind_parse(gate, &o.gate) ||
        ei_mem_rule_parse(rule, &o.memory_rule)) {
        fprintf(stderr, "bench_ei: error: %s\n",
                !model_path ? "--model is required" : tokens < 2 || repeat < 1 || repeat > 1000
                                                           ? "--tokens must be >= 2 and --repeat in [1, 1000]"
                                                           : ei_error_get());
        return 2;
    }
    if (threads > 0) ei_k_threads_set(threads);
    o.route_threshold = 0;
    ei_model *m = ei_model_load(model_path);
    if (!m) {
        ei_error_print("bench_ei");
        return 1;
    }
    size_t rss0 = ei_peak_rss_bytes();
    int32_t *ids = malloc((size_t)(tokens + 1) * sizeof(int32_t));
    double *tf = malloc((size_t)repeat * sizeof(double)), *tb = malloc((size_t)repeat * sizeof(double));
    if (!ids || !tf || !tb) {
        fprintf(stderr, "bench_ei: error: out of memory\n");
        return 1;
    }
    uint64_t x = 12345;
    for (int64_t i = 0; i <= tokens; i++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        ids[i] = (int32_t)(3 + (x >> 33) % (uint64_t)(m->cfg.vocab_size - 3));
    }
    ei_gates *g = ei_gates_new(&m->cfg, o.gate, 0.0);
    ei_edge *e = g ? ei_edge_new(m, &o, g, EI_MODE_EDGEINFINITE, AG_F32) : NULL;
    if (!e) {
        ei_error_print("bench_ei");
        return 1;
    }
    ei_doc_result r = {0};
    size_t rss_fwd = 0;
    int bad = 0;
    for (int it = 0; it < repeat && !bad; it++) {
        double t0 = ei_time_now();
        bad = train_only ? 0 : ei_edge_doc_eval(e, ids, ids + 1, NULL, tokens, &r);
        double t1 = ei_time_now();
        if (it == 0) rss_fwd = ei_peak_rss_bytes();
        bad |= ei_edge_doc_train(e, ids, ids + 1, NULL, tokens, 1.0, &r, NULL);
        double t2 = ei_time_now();
        tf[it] = (t1 - t0) / tokens * 1000.0;
        tb[it] = (t2 - t1) / tokens * 1000.0;
    }
    if (bad) {
        ei_error_print("bench_ei");
        return 1;
    }
    const double f0 = tf[0], b0 = tb[0];
    size_t sb = ei_edge_saved_state_bytes(e);
    printf("{\"tokens\": %lld, \"segment\": %d, \"window\": %d, \"sink\": %d, \"segments\": %d, \"threads\": %d, "
           "\"repeat\": %d, \"loss\": %.4f, \"state_bytes_per_segment\": %zu, \"saved_states_bytes\": %zu, "
           "\"rss_after_load_mb\": %.1f, \"peak_rss_forward_mb\": %.1f, \"peak_rss_fwd_bwd_mb\": %.1f, "
           "\"fwd_s_per_1k\": %.4f, \"fwd_bwd_s_per_1k\": %.4f, \"first_fwd_s_per_1k\": %.4f, "
           "\"first_fwd_bwd_s_per_1k\": %.4f}\n",
           (long long)tokens, o.segment, o.window, o.sink, r.n_segments, ei_k_threads_get(), repeat, r.loss, sb,
           sb * (size_t)r.n_segments, rss0 / 1048576.0, rss_fwd / 1048576.0, ei_peak_rss_bytes() / 1048576.0,
           median(tf, repeat), median(tb, repeat), f0, b0);
    ei_edge_free(e);
    ei_gates_free(g);
    ei_model_free(m);
    free(ids);
    free(tf);
    free(tb);
    return 0;
}
