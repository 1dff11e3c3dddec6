/* Segmented supervised fine-tuning of the EdgeInfinite memory gates (DESIGN 4): the training loop
 * that ties together the dataset iterator, the EdgeInfinite model (full BPTT by recomputation),
 * AdamW, the schedule, MPI data parallelism, metrics and checkpoints.
 *
 * One optimizer step = one global batch of B = micro_batch * grad_accum samples. Rank r of W takes
 * its share of every global batch (data/dataset.h). Each sample's gradient is the gradient of its
 * summed NLL; the ranks' gradients and token counts are summed with MPI_Allreduce and the sum is
 * divided by the global token count, so the update is the token-weighted mean over the global batch
 * and equals the single-process update up to float summation order.
 *
 * Output in cfg->train.out_dir: metrics.jsonl (one line per step), ckpt-<step>.h5 (the last
 * keep_last), gates.safetensors (the final gates, as `ei export` writes them). */
#ifndef EI_TRAINER_H
#define EI_TRAINER_H

#include "train/train_config.h"

typedef struct {
    int resume;          /* continue from the newest valid checkpoint in out_dir */
    const char *resume_dir; /* NULL: cfg->train.out_dir */
    int quiet;           /* no progress line */
} ei_trainer_opts;

/* Runs the whole training job. Returns 0 on success, -1 with ei_error set. Every rank calls it. */
int ei_trainer_run(const ei_train_config *cfg, const ei_trainer_opts *opts);

/* Evaluation of the gates in `gates_path` (NULL: untrained gates from cfg) or of window mode on a
 * dataset: mean NLL over its first max_samples samples (0: all). mode: "window", "edgeinfinite" or
 * "full". Used by `ei eval --data`. */
int ei_trainer_eval_dataset(const ei_train_config *cfg, const char *mode, const char *gates_path,
                            const char *data_path, int64_t max_samples, double *loss, int64_t *count);

#endif
