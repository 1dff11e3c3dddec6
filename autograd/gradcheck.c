/* Central finite-difference gradient checker (see gradcheck.h). */
#include "autograd/gradcheck.h"
#include "autograd/ag_internal.h"

#include "core/ei_rng.h"

#include <math.h>
#include <stdlib.h>

/* The caller's state word drives ei_rng's splitmix64 directly (not a seeded xoshiro): the public
 * API hands out a single uint64_t state, and this keeps every seed's values as they always were. */
static double rng_next(uint64_t *s) { return (double)(ei_splitmix64(s) >> 11) * 0x1.0p-53; }

int ag_fill_uniform(ag_tensor *t, uint64_t *state, double lo, double hi) {
    if (!t || !ag_is_float(t)) return ei_error_set("ag_fill_uniform: needs a float tensor");
    void *d = ag_tensor_data(t);
    if (!d) return -1;
    for (int64_t i = 0; i < t->numel; i++) {
        const double v = lo + (hi - lo) * rng_next(state);
        if (t->dtype == AG_F32)
            ((float *)d)[i] = (float)v;
        else
            ((double *)d)[i] = v;
    }
    return 0;
}

ag_tensor *ag_gradcheck_loss(ag_graph *g, ag_tensor *out, uint64_t seed) {
    if (!out) return NULL;
    ag_tensor *r = ag_const(g, out->ndim, out->shape);
    if (!r) return NULL;
    if (ag_fill_uniform(r, &seed, -1.0, 1.0)) {
        /* recorded on the graph, so finalize reports this cause rather than a NULL source */
        ag_graph_fail(g, "%s", ei_error_get());
        return NULL;
    }
    return ag_sum_all(g, ag_mul(g, out, r));
}

static double loss_value(ag_graph *g, ag_tensor *loss, int *err) {
    if (ag_graph_forward(g)) {
        *err = 1;
        return 0;
    }
    return ag_tensor_at(loss, 0);
}

int ag_gradcheck(ag_graph *g, ag_tensor *loss, int n, ag_tensor *const *wrt, double step, int64_t max_per_tensor,
                 ag_gradcheck_result *res) {
    ag_gradcheck_result r = {0};
    if (!g || !loss || !res) return ei_error_set("ag_gradcheck: NULL argument");
    if (ag_graph_finalize(g)) return -1;
    if (loss->numel != 1) return ei_error_set("ag_gradcheck: loss must have one element");
    for (int i = 0; i < n; i++) {
        if (!wrt[i] || !wrt[i]->grad || ag_n(wrt[i])->read_only)
            return ei_error_set("ag_gradcheck: tensor %d has no gradient or is read-only", i);
        ag_tensor_zero_grad(wrt[i]);
    }
    if (ag_graph_forward(g) || ag_graph_backward_scalar(g, loss, 1.0)) return -1;
    int err = 0;
    for (int i = 0; i < n; i++) {
        ag_tensor *t = wrt[i];
        const int64_t N = t->numel;
        const int64_t stride = max_per_tensor > 0 && N > max_per_tensor ? (N + max_per_tensor - 1) / max_per_tensor : 1;
        double max_num = 0, max_diff = 0;
        int64_t worst = 0;
        for (int64_t e = 0; e < N; e += stride) {
            double analytic = ag_tensor_grad_at(t, e), num;
            if (t->dtype == AG_F64) {
                double *d = t->data, keep = d[e];
                d[e] = keep + step;
                double fp = loss_value(g, loss, &err);
                d[e] = keep - step;
                double fm = loss_value(g, loss, &err);
                d[e] = keep;
                num = (fp - fm) / (2 * step);
            } else {
                float *d = t->data, keep = d[e];
                d[e] = keep + (float)step;
                double fp = loss_value(g, loss, &err);
                d[e] = keep - (float)step;
                double fm = loss_value(g, loss, &err);
                d[e] = keep;
                num = (fp - fm) / (2 * step);
            }
            if (err) return -1;
            const double diff = fabs(analytic - num);
            if (!(diff <= max_diff)) { /* also catches NaN */
                max_diff = isnan(diff) ? INFINITY : diff;
                worst = e;
            }
            if (fabs(num) > max_num) max_num = fabs(num);
            r.n_checked++;
        }
        const double rel = max_diff / (max_num > 1e-8 ? max_num : 1e-8);
        if (rel >= r.max_rel_err) {
            r.max_rel_err = rel;
            r.worst_tensor = i;
            r.worst_index = worst;
        }
        if (max_diff > r.max_abs_err) r.max_abs_err = max_diff;
        if (max_num > r.max_abs_grad) r.max_abs_grad = max_num;
    }
    /* leave the graph in the unperturbed state */
    if (ag_graph_forward(g)) return -1;
    *res = r;
    return 0;
}
