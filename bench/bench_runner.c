/* Speed of a .eig file on the runner (runtime/runner.h): prefill tokens/s of a prompt, decode
 * tokens/s after it, and both at several context lengths (decode cost must stay flat for
 * EdgeInfinite graphs). Prints medians of --reps runs; peak RSS (VmHWM) at the end.
 *
 *   bench_runner --graph model.eig [--threads 2] [--prompt 512] [--decode 128] [--reps 5]
 *                [--contexts 1024,4096,16384,32768] */
#include "core/ei_args.h"
#include "core/ei_error.h"
#include "core/ei_io.h"
#include "core/ei_rng.h"
#include "runtime/runner.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    for (int i = 0; i < decode; i++) {
        int best = 0;
        for (int j = 1; j < V; j++)
            if (logits[j] > logits[best]) best = j;
        int32_t t = best;
        if (ei_runner_feed(r, &t, 1, NULL, NULL, NULL, logits) != 0) return -1;
    }
    double t2 = ei_time_now();
    *pre = ctx / (t1 - t0);
    *dec = decode / (t2 - t1);
    return 0;
}

int main(int argc, char **argv) {
    const char *graph = NULL, *contexts = NULL;
    int threads = 2, prompt = 512, decode = 128, reps = 5;
    ei_arg opts[] = {
        {"graph", EI_ARG_STR, &graph, "FILE.eig", "compiled model (required)"},
        {"threads", EI_ARG_INT, &threads, "N", "cpu backend threads"},
        {"prompt", EI_ARG_INT, &prompt, "N", "prompt tokens fed before decoding"},
        {"decode", EI_ARG_INT, &decode, "N", "tokens decoded after the prompt"},
        {"reps", EI_ARG_INT, &reps, "N", "repetitions (medians are printed)"},
        {"contexts", EI_ARG_STR, &contexts, "N,N,...", "also decode after prompts of these lengths"},
        {0}};
    int rc = ei_args_parse(argc, argv, "bench_runner", "Prefill and decode speed of a .eig graph file.", opts, NULL,
                           NULL);
    if (rc) return rc < 0 ? 2 : 0;
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
