/* A document model: what scoring and generation need from an EdgeInfinite model, whichever way it
 * runs — eagerly on autograd graphs (train/edge.h, ei_edge_docmodel) or on the compiled graphs of
 * a .eig file (runtime/runner.h, ei_runner_docmodel) — so `ei eval`, `ei generate`, the trainer's
 * exact-match evaluation and `ei-eval` share one implementation of each measure. libc only.
 *
 * Both implementations follow the one segment rule and routing (model/segment.h): begin(n) starts a
 * document of known length n, begin(-1) one of unknown length; feed adds tokens (targets may be
 * NULL; otherwise the NLL of positions with a target >= 0 is added to *nll and their number to
 * *count); score evaluates a whole document (loss-masked positions only) with its length known. */
#ifndef EI_MODEL_DOCMODEL_H
#define EI_MODEL_DOCMODEL_H

#include <stdint.h>

typedef struct {
    void *impl;
    int vocab;
    void (*begin)(void *impl, int64_t total_len);
    int (*feed)(void *impl, const int32_t *ids, int64_t n, const int32_t *targets, double *nll, int64_t *count,
                float *logits_last);
    /* position t of ids predicts targets[t]; counted when targets[t] >= 0 and (mask NULL or mask[t]) */
    int (*score)(void *impl, const int32_t *ids, const int32_t *targets, const uint8_t *mask, int64_t n, double *nll,
                 int64_t *count);
} ei_docmodel;

/* Greedy exact match of one instruction sample of n tokens (loss mask `mask` over the tokens): the
 * tokens before the first masked one are the prompt, the masked run after it the reference answer;
 * the model decodes greedily with the sample's length known and must reproduce every answer token.
 * logits: scratch of vocab floats. Returns 1 (exact), 0 (not), 2 (no masked token after the first:
 * nothing to answer), -1 (error). */
int ei_docmodel_answer_exact(const ei_docmodel *dm, const int32_t *tokens, const uint8_t *mask, int64_t n,
                             float *logits);

/* score() for implementations that only feed: begin(n), then the positions in one feed with the
 * targets of unmasked positions set to -1 (scratch: n ints, caller's). */
int ei_docmodel_score_by_feed(const ei_docmodel *dm, const int32_t *ids, const int32_t *targets, const uint8_t *mask,
                              int64_t n, int32_t *scratch, double *nll, int64_t *count);

#endif
