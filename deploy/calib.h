/* Calibration and sensitivity for post-training quantisation (DESIGN 6.1), on the eager float
 * model (train/edge.h, the same layer recipe the graphs are lowered from). Host side.
 *
 * Calibration runs the float model in its deployed mode (EdgeInfinite with memory, routed
 * documents included) over dataset samples and records the range of the input and of the output of
 * every linear layer, per (tensor class, layer): the static scales of a8 / a16 activations.
 *
 * Sensitivity quantises one weight at a time to each candidate scheme (the others stay float32),
 * measures the validation loss on dataset samples, and reports the increase over float32; from
 * those numbers `ei compile --budget-mb` picks a scheme per tensor (deploy/quant_plan.h,
 * ei_qbudget_solve) with the least total increase within a size budget. */
#ifndef EI_DEPLOY_CALIB_H
#define EI_DEPLOY_CALIB_H

#include "deploy/quant.h"
#include "deploy/quant_plan.h"
#include "formats/gates.h"
#include "formats/model.h"
#include "model/options.h"

#include <stdio.h>

typedef struct {
    ei_qrange in, out;
} ei_calib_entry;

typedef struct {
    int n_layers;
    ei_calib_entry *e; /* [EI_TC_COUNT * (n_layers + 1)] */
    int64_t samples, tokens;
} ei_calib;

/* The model and where it is evaluated (borrowed). */
typedef struct {
    const ei_model *m;
    const ei_gates *gates; /* NULL for window / full */
    ei_opts o;
    ei_mode mode;
} ei_calib_model;

/* Runs the float model over the first n_samples samples of the dataset (each cut to max_tokens,
 * 0: whole) and records the linear layers' ranges. -1 with ei_error set. */
int ei_calib_run(ei_calib *c, const ei_calib_model *cm, const char *dataset, int64_t n_samples, int64_t max_tokens);
void ei_calib_free(ei_calib *c);
const ei_calib_entry *ei_calib_get(const ei_calib *c, ei_tclass cls, int layer);

/* Mean validation loss (nats) of the model whose weight (cls, layer) is replaced by its
 * quantise-dequantise under s (s EI_QW_F32 or cls EI_TC_COUNT: the float model). */
int ei_calib_loss(const ei_calib_model *cm, const char *dataset, int64_t n_samples, int64_t max_tokens,
                  ei_tclass cls, int layer, ei_qscheme s, const ei_qopts *qo, double *loss);

/* Sensitivity table: for every weight matrix the plan can quantise and every candidate scheme, the
 * loss increase over float32 and the stored size. Prints one line per tensor to out (may be NULL)
 * as it goes. table: malloc'd [n_items] (caller frees each item's cand and the array). */
int ei_calib_sensitivity(const ei_calib_model *cm, const char *dataset, int64_t n_samples, int64_t max_tokens,
                         const ei_qscheme *cands, int n_cands, const ei_qopts *qo, FILE *out,
                         ei_qbudget_item **items, int *n_items, double *base_loss);

#endif
