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
 * keep_last), gates.safetensors (the final gates, as `ei export` writes them). None of these may
 * be an input (dataset, model, tokenizer): that is refused before anything is written.
 *
 * Skipped steps: a step whose batch holds no loss-masked token is skipped ("empty" in metrics.jsonl;
 * not counted towards max_bad_steps); one with a non-finite loss or gradient is skipped and counted
 * (ei_trainer_update). A run that applied no update at all is an error, not "done". */
#ifndef EI_TRAINER_H
#define EI_TRAINER_H

#include "data/dataset.h"
#include "train/edge.h"
#include "train/optim.h"
#include "train/train_config.h"

typedef struct {
    int resume;          /* continue from the newest valid checkpoint in out_dir */
    const char *resume_dir; /* NULL: cfg->train.out_dir (the caller makes out_dir the folder it resumes) */
    const char *resume_path; /* the checkpoint to resume when the caller already found it; NULL: the newest valid one */
    int quiet;           /* no progress line */
    int allow_tokenizer_mismatch; /* a dataset tokenised with another tokenizer: warn instead of failing */
} ei_trainer_opts;

/* Refuses datasets tokenised with another tokenizer than the model's (ei_dataset_check_tokenizer).
 * The model's tokenizer is tok_path, or when NULL the one beside the model
 * (ei_model_default_tokenizer). allow_mismatch turns a mismatch into a warning. Without a tokenizer
 * to compare with, or for a dataset that records none, nothing is checked (a note on stderr).
 * who prefixes the notes and warnings ("ei train"; NULL: none, as on MPI ranks other than 0). -1 with ei_error set on a refused mismatch or a tokenizer
 * that does not load. */
int ei_check_dataset_tokenizer(ei_dataset *const *d, int n, const ei_model *m, const char *tok_path,
                               int allow_mismatch, const char *who);

/* Runs the whole training job. Returns 0 on success, -1 with ei_error set. Every rank calls it. */
int ei_trainer_run(const ei_train_config *cfg, const ei_trainer_opts *opts);

/* One dataset sample as the (ids, targets, mask) triple of ei_edge: position t reads tokens[t] and
 * predicts targets[t] = tokens[t+1], counted when pmask[t] = loss_mask[t+1] is set. The buffers are
 * owned by the struct (start zeroed, grow as needed, ei_sample_free releases them). */
typedef struct {
    int32_t *tokens, *targets;
    uint8_t *mask, *pmask; /* mask: the sample's loss mask as stored; pmask: shifted to positions */
    int64_t cap;
} ei_sample_buf;

/* Reads sample idx, cut to max_tokens (0: whole). *n_out: positions that predict something (the cut
 * length - 1); *count_out: counted positions. -1 with ei_error set on failure. */
int ei_sample_load(ei_sample_buf *b, ei_dataset *d, int64_t idx, int64_t max_tokens, int64_t *n_out,
                   int64_t *count_out);
void ei_sample_free(ei_sample_buf *b);

/* One optimizer update from an all-reduced, normalised gradient. A non-finite loss or gradient norm
 * skips the update (parameters and moments untouched) and counts it in *bad_run; max_bad_steps in a
 * row is fatal. Otherwise clips to clip_norm, applies AdamW with lr and resets *bad_run.
 * Returns 1 applied, 0 skipped, -1 (ei_error set) too many skipped in a row. */
int ei_trainer_update(ei_adamw *adam, float *params, float *grad, size_t n, double loss, double grad_norm,
                      double lr, double clip_norm, int *bad_run, int max_bad_steps);

/* Greedy exact match of one instruction sample of n tokens: the tokens before the first loss-masked
 * one are the prompt, the masked run after it the reference answer; the model decodes greedily
 * (streaming through e) and must reproduce every answer token. logits: scratch of vocab floats.
 * Returns 1 (exact), 0 (not), 2 (no masked token after the first: nothing to answer), -1 (error). */
int ei_trainer_answer_exact(ei_edge *e, const int32_t *tokens, const uint8_t *mask, int64_t n, int vocab,
                            float *logits);

#endif
