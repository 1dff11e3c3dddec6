/* The size-budget solver (ei_qbudget_solve, deploy/quant_plan.h): a multiple-choice knapsack, one
 * candidate scheme per tensor, least total loss within a byte budget.
 *
 * Dynamic programme over size: best_i[j] = least loss of items 0..i-1 with a total of at most j
 * units, best_i[j] = min over candidates c with w_c <= j of best_{i-1}[j - w_c] + loss_c. With the
 * unit the gcd of every size the programme is exact (a choice fits iff its unit count fits). Real
 * tensors have a small gcd and budgets of many megabytes, so the unit is coarsened to keep the table
 * within EI_QBUDGET_MAX_UNITS columns: sizes rounded up keep every choice within the budget, and a
 * choice whose true size is at most budget - n u has a rounded size within budget, so the result is
 * no worse than the exact optimum for that slightly smaller budget. A greedy pass then spends what
 * rounding left unused, taking the single-tensor switch that lowers the loss most while fitting. */
#include "deploy/quant_plan.h"

#include "core/ei_error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t gcd64(uint64_t a, uint64_t b) {
    while (b) {
        uint64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

static int check_items(const ei_qbudget_item *items, int n) {
    for (int i = 0; i < n; i++) {
        const ei_qbudget_item *it = &items[i];
        if (it->n_cand < 1 || it->n_cand > 255 || !it->cand)
            return ei_error_set("budget: tensor %s layer %d: %d candidates (1..255 allowed)", ei_tclass_name(it->cls),
                                it->layer, it->n_cand);
        for (int c = 0; c < it->n_cand; c++)
            if (!isfinite(it->cand[c].loss) || it->cand[c].bytes > ((uint64_t)1 << 48))
                return ei_error_set("budget: tensor %s layer %d: candidate %s has loss %g, %llu bytes",
                                    ei_tclass_name(it->cls), it->layer, ei_qscheme_name(it->cand[c].scheme),
                                    it->cand[c].loss, (unsigned long long)it->cand[c].bytes);
    }
    return 0;
}

/* Lowers the loss of a feasible choice by single switches that still fit. */
static void greedy_fill(const ei_qbudget_item *items, int n, uint64_t budget, int *choice, uint64_t *total) {
    for (long iter = 0; iter < 64L * n + 64; iter++) {
        int bi = -1, bc = -1;
        double gain = 0.0;
        for (int i = 0; i < n; i++) {
            const ei_qcand *cur = &items[i].cand[choice[i]];
            for (int c = 0; c < items[i].n_cand; c++) {
                const ei_qcand *x = &items[i].cand[c];
                if (*total - cur->bytes + x->bytes > budget) continue;
                double g = cur->loss - x->loss;
                if (g > gain) gain = g, bi = i, bc = c;
            }
        }
        if (bi < 0) return;
        *total = *total - items[bi].cand[choice[bi]].bytes + items[bi].cand[bc].bytes;
        choice[bi] = bc;
    }
}

int ei_qbudget_solve(const ei_qbudget_item *items, int n, uint64_t budget, int *choice, ei_qbudget_result *res) {
    if (n < 0 || (n && (!items || !choice))) return ei_error_set("budget: bad arguments");
    if (check_items(items, n)) return -1;
    uint64_t min_total = 0, g = 0;
    for (int i = 0; i < n; i++) {
        uint64_t m = items[i].cand[0].bytes;
        for (int c = 0; c < items[i].n_cand; c++) {
            if (items[i].cand[c].bytes < m) m = items[i].cand[c].bytes;
            g = gcd64(g, items[i].cand[c].bytes);
        }
        min_total += m;
    }
    if (min_total > budget)
        return ei_error_set("budget of %llu bytes is below the smallest plan (%llu bytes, every tensor at its smallest "
                            "candidate)",
                            (unsigned long long)budget, (unsigned long long)min_total);
    /* unit: the gcd, coarsened (in multiples of it) until the table fits */
    uint64_t unit = g ? g : 1, units = g ? budget / unit : 0; /* all sizes 0: one column */
    int exact = 1;
    if (units > EI_QBUDGET_MAX_UNITS) {
        uint64_t m = (units + EI_QBUDGET_MAX_UNITS - 1) / EI_QBUDGET_MAX_UNITS;
        unit *= m;
        units = budget / unit;
        exact = 0;
    }
    size_t cols = (size_t)units + 1;
    double *cur = malloc(cols * sizeof *cur), *nxt = malloc(cols * sizeof *nxt);
    uint8_t *pick = n ? malloc((size_t)n * cols) : NULL;
    if (!cur || !nxt || (n && !pick)) {
        free(cur), free(nxt), free(pick);
        return ei_error_set("budget: out of memory (%d tensors x %llu size units)", n, (unsigned long long)cols);
    }
    for (size_t j = 0; j < cols; j++) cur[j] = 0.0;
    for (int i = 0; i < n; i++) {
        for (size_t j = 0; j < cols; j++) {
            double best = INFINITY;
            uint8_t arg = 255;
            for (int c = 0; c < items[i].n_cand; c++) {
                uint64_t w = (items[i].cand[c].bytes + unit - 1) / unit;
                if (w > j || cur[j - w] == INFINITY) continue;
                double v = cur[j - w] + items[i].cand[c].loss;
                if (v < best) best = v, arg = (uint8_t)c;
            }
            nxt[j] = best;
            pick[(size_t)i * cols + j] = arg;
        }
        double *t = cur;
        cur = nxt;
        nxt = t;
    }
    uint64_t total = 0;
    if (cur[units] == INFINITY) {
        /* rounding up made even the smallest choice too big: start from it instead */
        exact = 0;
        for (int i = 0; i < n; i++) {
            choice[i] = 0;
            for (int c = 1; c < items[i].n_cand; c++)
                if (items[i].cand[c].bytes < items[i].cand[choice[i]].bytes) choice[i] = c;
        }
    } else {
        size_t j = (size_t)units;
        for (int i = n - 1; i >= 0; i--) {
            int c = pick[(size_t)i * cols + j];
            choice[i] = c;
            j -= (size_t)((items[i].cand[c].bytes + unit - 1) / unit);
        }
    }
    free(cur), free(nxt), free(pick);
    for (int i = 0; i < n; i++) total += items[i].cand[choice[i]].bytes;
    if (!exact) greedy_fill(items, n, budget, choice, &total);
    if (res) {
        memset(res, 0, sizeof *res);
        for (int i = 0; i < n; i++) res->loss += items[i].cand[choice[i]].loss;
        res->bytes = total;
        res->unit = unit;
        res->exact = exact;
    }
    return 0;
}
