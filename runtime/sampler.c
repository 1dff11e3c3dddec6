#include "runtime/sampler.h"

#include "core/ei_error.h"

#include <math.h>
#include <stdlib.h>

typedef struct {
    float p;
    int i;
} prob_index;

static int cmp_prob_desc(const void *a, const void *b) {
    float x = ((const prob_index *)a)->p, y = ((const prob_index *)b)->p;
    if (x != y) return x > y ? -1 : 1;
    return ((const prob_index *)a)->i - ((const prob_index *)b)->i; /* stable for equal probabilities */
}

int ei_sampler_init(ei_sampler *s, int vocab, float temperature, float top_p, uint64_t seed) {
    s->temperature = temperature;
    s->top_p = top_p;
    s->vocab = vocab;
    ei_rng_seed(&s->rng, seed);
    s->scratch = malloc(sizeof(prob_index) * (size_t)(vocab > 0 ? vocab : 1));
    return s->scratch ? 0 : ei_error_set("sampler: out of memory");
}

void ei_sampler_free(ei_sampler *s) {
    free(s->scratch);
    s->scratch = NULL;
}

int ei_sampler_next(ei_sampler *s, float *logits) {
    const int n = s->vocab;
    int best = 0;
    for (int i = 0; i < n; i++) {
        if (!isfinite(logits[i])) return ei_error_set("sampler: logit %d is not finite (%g): the model produced NaN/inf", i, (double)logits[i]);
        if (logits[i] > logits[best]) best = i;
    }
    if (s->temperature <= 0.0f) return best;
    const float m = logits[best];
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        logits[i] = expf((logits[i] - m) / s->temperature);
        sum += logits[i];
    }
    for (int i = 0; i < n; i++) logits[i] = (float)(logits[i] / sum);
    const float r = (float)ei_rng_uniform(&s->rng);
    if (s->top_p <= 0.0f || s->top_p >= 1.0f) {
        float cdf = 0.0f;
        for (int i = 0; i < n; i++) {
            cdf += logits[i];
            if (r < cdf) return i;
        }
        return best; /* rounding left r above the total */
    }
    /* tokens below (1 - top_p) / (n - 1) can never be inside the nucleus: drop them before sorting;
     * the most probable token always passes, so the list is never empty */
    prob_index *sc = s->scratch;
    const float cutoff = n > 1 ? (1.0f - s->top_p) / (float)(n - 1) : 0.0f;
    int k = 0;
    for (int i = 0; i < n; i++)
        if (logits[i] >= cutoff || i == best) sc[k++] = (prob_index){logits[i], i};
    qsort(sc, (size_t)k, sizeof *sc, cmp_prob_desc);
    float cum = 0.0f;
    int last = k - 1;
    for (int i = 0; i < k; i++) {
        cum += sc[i].p;
        if (cum > s->top_p) {
            last = i;
            break;
        }
    }
    const float target = r * cum;
    float cdf = 0.0f;
    for (int i = 0; i <= last; i++) {
        cdf += sc[i].p;
        if (target < cdf) return sc[i].i;
    }
    return sc[last].i;
}
