#include "train/optim.h"
#include "core/ei_error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int ei_adamw_init(ei_adamw *o, size_t n, double beta1, double beta2, double eps, double weight_decay) {
    memset(o, 0, sizeof *o);
    if (!(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1 && eps >= 0 && weight_decay >= 0))
        return ei_error_set("adamw: invalid hyper-parameters (beta1 %g, beta2 %g, eps %g, weight decay %g)", beta1,
                            beta2, eps, weight_decay);
    o->m = calloc(n ? n : 1, sizeof(float));
    o->v = calloc(n ? n : 1, sizeof(float));
    if (!o->m || !o->v) {
        ei_adamw_free(o);
        return ei_error_set("adamw: out of memory for %zu parameters", n);
    }
    o->n = n;
    o->beta1 = beta1;
    o->beta2 = beta2;
    o->eps = eps;
    o->weight_decay = weight_decay;
    return 0;
}

void ei_adamw_free(ei_adamw *o) {
    free(o->m);
    free(o->v);
    o->m = o->v = NULL;
    o->n = 0;
}

int ei_adamw_restore(ei_adamw *o, const float *m, const float *v, int64_t t) {
    if (t < 0) return ei_error_set("adamw: negative step count %lld", (long long)t);
    memcpy(o->m, m, o->n * sizeof(float));
    memcpy(o->v, v, o->n * sizeof(float));
    o->t = t;
    return 0;
}

void ei_adamw_step(ei_adamw *o, float *param, const float *grad, double lr) {
    o->t++;
    /* Scalars in double, the per-element loop in float: the arrays are float and the loop is the
     * only cost. Written as PyTorch does (step size lr / bc1, denominator sqrt(v) / sqrt(bc2) + eps)
     * so results follow its AdamW closely. */
    const double bc1 = 1.0 - pow(o->beta1, (double)o->t);
    const double bc2 = 1.0 - pow(o->beta2, (double)o->t);
    const float b1 = (float)o->beta1, b2 = (float)o->beta2;
    const float a1 = (float)(1.0 - o->beta1), a2 = (float)(1.0 - o->beta2);
    const float step_size = (float)(lr / bc1);
    const float inv_sqrt_bc2 = (float)(1.0 / sqrt(bc2));
    const float eps = (float)o->eps;
    const float decay = (float)(1.0 - lr * o->weight_decay);
    float *m = o->m, *v = o->v;
    for (size_t i = 0; i < o->n; i++) {
        const float g = grad[i];
        m[i] = b1 * m[i] + a1 * g;
        v[i] = b2 * v[i] + a2 * g * g;
        const float denom = sqrtf(v[i]) * inv_sqrt_bc2 + eps;
        param[i] = param[i] * decay - step_size * m[i] / denom;
    }
}

double ei_grad_global_norm(const float *g, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)g[i] * (double)g[i];
    return sqrt(s);
}

double ei_grad_clip(float *g, size_t n, double max_norm) {
    double norm = ei_grad_global_norm(g, n);
    if (max_norm > 0 && isfinite(norm) && norm > max_norm) {
        /* The small margin keeps the clipped norm at or below max_norm after float rounding. */
        const float scale = (float)(max_norm / (norm + 1e-6));
        for (size_t i = 0; i < n; i++) g[i] *= scale;
    }
    return norm;
}

double ei_lr_at(const ei_lr_schedule *s, int64_t step) {
    if (step < 0) step = 0;
    if (step < s->warmup_steps) return s->lr * (double)(step + 1) / (double)s->warmup_steps;
    if (s->kind == EI_LR_CONSTANT) return s->lr;
    int64_t span = s->total_steps - s->warmup_steps;
    double p = span > 0 ? (double)(step - s->warmup_steps) / (double)span : 1.0;
    if (p > 1) p = 1;
    const double r = s->min_lr_ratio;
    return s->lr * (r + (1.0 - r) * 0.5 * (1.0 + cos(M_PI * p)));
}
