/* Speed of a .eig file on the runner (runtime/runner.h): prefill tokens/s of a prompt, decode
 * tokens/s after it, and both at several context lengths (decode cost must stay flat for
 * EdgeInfinite graphs). Prints medians of --reps runs; peak RSS (VmHWM) at the end.
 *
 *   bench_runner --graph model.eig [--threads 2] [--prompt 512] [--decode 128] [--reps 5]
 *                [--contexts 1024,4096,16384,32768] [--warmup 1]
 *   bench_runner --bandwidth [--threads 2]     memory read bandwidth, the bound of a memory-bound decode
 *
 * A warm-up run (the same prompt and a few decode steps, untimed) first touches every weight page
 * of the mapped file and every buffer of the graphs the timed runs use, as llama2.c's run.c leaves
 * its first token out of its rate. */
#include "core/ei_args.h"
#include "core/ei_error.h"
#include "core/ei_io.h"
#include "core/ei_rng.h"
#include "runtime/runner.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- read bandwidth: each thread sums its share of a 1 GiB buffer (far beyond any cache) */
typedef struct {
    const uint64_t *p;
    size_t n;
    uint64_t sum;
} bw_part;

static void *bw_sum(void *arg) {
    bw_part *b = arg;
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (size_t i = 0; i + 4 <= b->n; i += 4) s0 += b->p[i], s1 += b->p[i + 1], s2 += b->p[i + 2], s3 += b->p[i + 3];
    b->sum = s0 + s1 + s2 + s3;
    return NULL;
}

static int bandwidth(int threads) {
    const size_t bytes = (size_t)1 << 30, n = bytes / 8;
    uint64_t *buf = malloc(bytes);
    if (!buf || threads < 1 || threads > 64) return 1;
    for (size_t i = 0; i < n; i++) buf[i] = i;
    double best = 0;
    uint64_t check = 0;
    for (int rep = 0; rep < 5; rep++) {
        pthread_t th[64];
        bw_part parts[64];
        double t0 = ei_time_now();
        for (int t = 0; t < threads; t++) {
            parts[t] = (bw_part){buf + n / (size_t)threads * (size_t)t, n / (size_t)threads, 0};
            pthread_create(&th[t], NULL, bw_sum, &parts[t]);
        }
        for (int t = 0; t < threads; t++) pthread_join(th[t], NULL), check += parts[t].sum;
        double gbs = (double)bytes / (ei_time_now() - t0) / 1e9;
        if (gbs > best) best = gbs;
    }
    printf("memory read bandwidth %.1f GB/s (%d threads, best of 5 passes over 1 GiB; checksum %llu)\n", best, threads,
           (unsigned long long)(check & 0xffff));
    free(buf);
    return 0;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Feeds ctx prompt tokens, then decodes `decode` tokens greedily; returns prefill and decode tok/s. */
static int one_run(ei_runner *r, const int32_t *ids, int ctx, int decode, float *logits, double *pre, double *dec) {
    const int V = ei_runner_config(r)->vocab_size;
    ei_runner_reset(r);
    double t0 = ei_time_now();
    if (ei_runner_feed(r, ids, ctx, NULL, NULL, NULL, logits) != 0) return -1;
    double t1 = ei_time_now();
    const ei_runner_stats *st = ei_runner_stats_get(r);
    double g0 = 0;
    for (size_t i = 0; i < sizeof st->seconds / sizeof st->seconds[0]; i++) g0 += st->seconds[i];
    for (int i = 0; i < decode; i++) {
        int best = 0;
        for (int j = 1; j < V; j++)
            if (logits[j] > logits[best]) best = j;
        int32_t t = best;
        if (ei_runner_feed(r, &t, 1, NULL, NULL, NULL, logits) != 0) return -1;
    }
    double t2 = ei_time_now();
    if (getenv("EI_BENCH_GRAPH_TIME")) {
        double g1 = 0;
        for (size_t i = 0; i < sizeof st->seconds / sizeof st->seconds[0]; i++) g1 += st->seconds[i];
        fprintf(stderr, "decode: %.3f ms per token, %.3f ms of it in graphs\n", 1e3 * (t2 - t1) / decode, 1e3 * (g1 - g0) / decode);
    }
    *pre = ctx / (t1 - t0);
    *dec = decode / (t2 - t1);
    return 0;
}

int main(int argc, char **argv) {
    const char *graph = NULL, *contexts = NULL;
    int threads = 2, prompt = 512, decode = 128, reps = 5, warmup = 1, bw = 0;
    ei_arg opts[] = {
        {"graph", EI_ARG_STR, &graph, "FILE.eig", "compiled model (required)"},
        {"threads", EI_ARG_INT, &threads, "N", "cpu backend threads"},
        {"prompt", EI_ARG_INT, &prompt, "N", "prompt tokens fed before decoding"},
        {"decode", EI_ARG_INT, &decode, "N", "tokens decoded after the prompt"},
        {"reps", EI_ARG_INT, &reps, "N", "repetitions (medians are printed)"},
        {"contexts", EI_ARG_STR, &contexts, "N,N,...", "also decode after prompts of these lengths"},
        {"warmup", EI_ARG_INT, &warmup, "N", "untimed runs first (the same prompt, a few decode steps)"},
        {"bandwidth", EI_ARG_FLAG, &bw, NULL, "only measure the memory read bandwidth with --threads threads"},
        {0}};
    int rc = ei_args_parse(argc, argv, "bench_runner", "Prefill and decode speed of a .eig graph file.", opts, NULL,
                           NULL);
    if (rc) return rc < 0 ? 2 : 0;
    if (bw) return bandwidth(threads);
    if (!graph || prompt < 1 || decode < 1 || reps < 1) {
        fprintf(stderr, "bench_runner: --graph is required; --prompt, --decode, --reps >= 1\n");
        return 2;
    }
    ei_runner *r = ei_runner_open(graph, &(ei_runner_options){.threads = threads});
    if (!r) {
        ei_error_print("bench_runner");
        return 1;
    }
    const int V = ei_runner_config(r)->vocab_size;
    int maxctx = prompt;
    for (const char *p = contexts; p && *p;) {
        int c = atoi(p);
        if (c > maxctx) maxctx = c;
        p = strchr(p, ',');
        p = p ? p + 1 : NULL;
    }
    int32_t *ids = malloc(sizeof *ids * (size_t)maxctx);
    float *logits = malloc(sizeof *logits * (size_t)V);
    double *pre = malloc(sizeof *pre * (size_t)reps), *dec = malloc(sizeof *dec * (size_t)reps);
    ei_rng g;
    ei_rng_seed(&g, 1);
    for (int i = 0; i < maxctx; i++) ids[i] = (int32_t)(3 + ei_rng_below(&g, (uint64_t)(V - 3)));
    int status = 0;
    for (int i = 0; i < warmup && !status; i++) {
        double p0, d0;
        status = one_run(r, ids, prompt, 4, logits, &p0, &d0); /* the graphs the timed runs use */
    }
    for (int i = 0; i < reps && !status; i++) status = one_run(r, ids, prompt, decode, logits, &pre[i], &dec[i]);
    if (!status)
        printf("graph %s threads %d: prefill %d tokens %.1f tok/s, decode %d tokens %.2f tok/s (medians of %d)\n", graph,
               threads, prompt, median(pre, reps), decode, median(dec, reps), reps);
    for (const char *p = contexts; p && *p && !status;) {
        int c = atoi(p);
        for (int i = 0; i < reps && !status; i++) status = one_run(r, ids, c, decode, logits, &pre[i], &dec[i]);
        if (!status)
            printf("context %d: prefill %.1f tok/s, decode %.2f tok/s\n", c, median(pre, reps), median(dec, reps));
        p = strchr(p, ',');
        p = p ? p + 1 : NULL;
    }
    if (status) ei_error_print("bench_runner");
    else printf("peak RSS %.1f MB\n", (double)ei_peak_rss_bytes() / 1e6);
    free(ids);
    free(logits);
    free(pre);
    free(dec);
    ei_runner_close(r);
    return status ? 1 : 0;
}
