#include "model/docmodel.h"

#include <stddef.h>

int ei_docmodel_answer_exact(const ei_docmodel *dm, const int32_t *tokens, const uint8_t *mask, int64_t n,
                             float *logits) {
    int64_t first = -1;
    for (int64_t t = 1; t < n; t++)
        if (mask[t]) {
            first = t;
            break;
        }
    if (first < 1) return 2; /* language-modelling sample: nothing to answer */
    /* the sample's length is known: route as scoring it does */
    int64_t end = first;
    while (end < n && mask[end]) end++;
    dm->begin(dm->impl, n - 1); /* the positions scoring the sample sees */
    if (dm->feed(dm->impl, tokens, first, NULL, NULL, NULL, logits) != 0) return -1;
    for (int64_t t = first; t < end; t++) {
        int best = 0;
        for (int v = 1; v < dm->vocab; v++)
            if (logits[v] > logits[best]) best = v;
        if (best != tokens[t]) return 0;
        if (t + 1 < end && dm->feed(dm->impl, &tokens[t], 1, NULL, NULL, NULL, logits) != 0) return -1;
    }
    return 1;
}

int ei_docmodel_score_by_feed(const ei_docmodel *dm, const int32_t *ids, const int32_t *targets, const uint8_t *mask,
                              int64_t n, int32_t *scratch, double *nll, int64_t *count) {
    for (int64_t t = 0; t < n; t++) scratch[t] = targets && targets[t] >= 0 && (!mask || mask[t]) ? targets[t] : -1;
    dm->begin(dm->impl, n);
    return dm->feed(dm->impl, ids, n, scratch, nll, count, NULL);
}
