/* AdamW over one contiguous float array, global-norm gradient clipping, and the learning-rate
 * schedule (linear warmup, then cosine decay to min_lr_ratio * lr, or constant).
 *
 * The trainable parameters (all gates of all layers) live in one float array `param[n]` with a
 * same-size gradient array; the optimizer owns its moment arrays m and v. Checkpoints save
 * m, v and t and restore them with ei_adamw_restore. */
#ifndef EI_OPTIM_H
#define EI_OPTIM_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    size_t n;
    float *m, *v;        /* first and second moments, owned, zero at the start */
    int64_t t;           /* updates applied so far (bias correction uses t + 1 for the next one) */
    double beta1, beta2, eps, weight_decay;
} ei_adamw;

int ei_adamw_init(ei_adamw *o, size_t n, double beta1, double beta2, double eps, double weight_decay);
void ei_adamw_free(ei_adamw *o);
/* Copies saved moments (n floats each) and the update count back in. */
int ei_adamw_restore(ei_adamw *o, const float *m, const float *v, int64_t t);

/* One AdamW update with learning rate lr (decoupled weight decay, as PyTorch's AdamW):
 *   t += 1; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2
 *   p = p (1 - lr wd) - lr (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps) */
void ei_adamw_step(ei_adamw *o, float *param, const float *grad, double lr);

/* sqrt(sum g^2) accumulated in double; NaN or inf if any gradient is non-finite. */
double ei_grad_global_norm(const float *g, size_t n);
/* Scales g so its global norm is at most max_norm (no-op when max_norm <= 0, the norm is already
 * small enough, or the norm is non-finite). Returns the norm before clipping. */
double ei_grad_clip(float *g, size_t n, double max_norm);

typedef enum { EI_LR_COSINE = 0, EI_LR_CONSTANT = 1 } ei_lr_kind; /* same order as train.schedule */

typedef struct {
    double lr;            /* peak */
    int64_t warmup_steps;
    int64_t total_steps;  /* optimizer steps in the whole run */
    double min_lr_ratio;  /* cosine ends at lr * min_lr_ratio */
    int kind;             /* ei_lr_kind */
} ei_lr_schedule;

/* Learning rate of the update with 0-based index `step`:
 *   step < warmup:  lr * (step + 1) / warmup
 *   cosine:         lr * (r + (1 - r) * (1 + cos(pi * p)) / 2),  p = (step - warmup) / (total - warmup)
 *                   clamped to p <= 1 (steps past the end keep lr * r)
 *   constant:       lr */
double ei_lr_at(const ei_lr_schedule *s, int64_t step);

#endif
