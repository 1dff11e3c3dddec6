/* Tokenised datasets in HDF5 (DESIGN 5; docs/datasets.md shows the layout and an `h5dump -H`).
 *
 *   /tokens     int32 [T]      every sample's tokens, concatenated
 *   /loss_mask  uint8 [T]      1 where the token is a training target (predicted from the tokens
 *                              before it in its sample), 0 elsewhere (BOS, prompts)
 *   /offsets    int64 [N+1]    sample i is tokens[offsets[i] .. offsets[i+1]); offsets[0] = 0,
 *                              offsets[N] = T, non-decreasing
 *   /doc_ids    int64 [N]      the source document of each sample (split is by document)
 *   /meta       group          attributes: format_version, tokenizer, tokenizer_vocab_hash, vocab_size,
 *                              bos_id, eos_id, template, kind, split, n_samples, n_tokens, ... (see the
 *                              docs)
 *
 * Writer: samples are appended one by one (streamed to chunked, compressed, checksummed datasets)
 * into a temporary file that is sealed (a whole-file checksum in the HDF5 user block, data/h5file.h)
 * and renamed over the final path by ei_dataset_writer_close.
 *
 * Reader: ei_dataset_open checks the seal before libhdf5 opens the file (a file without one, from
 * another program or an older ei, is read with a note that it is unverified), validates the
 * structure (types, ranks, shapes, offsets) and keeps offsets and doc ids in memory; tokens and
 * masks are read per sample from the file.
 *
 * Iterator (what the trainer relies on):
 *   - Epoch e visits the samples in order perm_e: the identity without shuffling, otherwise a
 *     Fisher-Yates shuffle of the identity (ei_rng_shuffle_i64) drawn from one core/ei_rng stream
 *     seeded with ei_rng_seed(seed): epoch 0 draws first, epoch 1 continues where it stopped, and
 *     so on. Same seed, same orders, whatever the world size.
 *   - Epoch positions p = 0 .. n_batches*B - 1 form global batches of B = batch_size positions;
 *     n_batches = floor(N / B), and the last N mod B positions of each epoch are skipped (so every
 *     step of every rank sees a full global batch; reshuffling moves different samples there).
 *   - Rank r of W owns position p when (p mod B) mod W == r: the ranks' shares of one global batch
 *     are disjoint and together cover it (sizes differ by at most one when W does not divide B).
 *   - A position (epoch, p) names the next global position to visit. ei_dataset_iter_pos reports
 *     p rounded up to the end of the current global batch once this rank has taken its whole share
 *     of it, so all ranks report the same position at batch boundaries; starting an iterator there
 *     continues exactly the same sequence. After the last batch of epoch e it reports (e+1, 0).
 *   - With the position goes the generator state the order of its epoch is drawn from
 *     (ei_dataset_iter_rng). A checkpoint stores both; ei_dataset_iter_resume starts from them
 *     directly, ei_dataset_iter_new recomputes the state by replaying the earlier epochs' draws. */
#ifndef EI_DATASET_H
#define EI_DATASET_H

#include "core/ei_rng.h"
#include "text/tokenizer.h"

#include <stddef.h>
#include <stdint.h>

#define EI_DATASET_FORMAT_VERSION 1

/* ------------------------------------------------------------------ writer */

typedef struct ei_dataset_writer ei_dataset_writer;

/* Creates the temporary file next to path. NULL with ei_error set on failure. */
ei_dataset_writer *ei_dataset_writer_open(const char *path);
/* Appends one sample (n >= 1 tokens; mask values 0 or 1). */
int ei_dataset_writer_add(ei_dataset_writer *w, const int32_t *tokens, const uint8_t *mask, size_t n,
                          int64_t doc_id);
int64_t ei_dataset_writer_n_samples(const ei_dataset_writer *w);
int64_t ei_dataset_writer_n_tokens(const ei_dataset_writer *w);
/* Attributes of /meta (written at close; setting a name twice replaces the value). */
int ei_dataset_writer_attr_str(ei_dataset_writer *w, const char *name, const char *value);
int ei_dataset_writer_attr_i64(ei_dataset_writer *w, const char *name, int64_t value);
int ei_dataset_writer_attr_f64(ei_dataset_writer *w, const char *name, double value);
/* Writes offsets, doc ids, n_samples/n_tokens/format_version and the other attributes, closes the
 * file and renames it into place. Frees w in every case. */
int ei_dataset_writer_close(ei_dataset_writer *w);
/* Discards the temporary file. Frees w. */
void ei_dataset_writer_abort(ei_dataset_writer *w);

/* ------------------------------------------------------------------ reader */

typedef struct ei_dataset ei_dataset;

ei_dataset *ei_dataset_open(const char *path);
void ei_dataset_close(ei_dataset *d);

int64_t ei_dataset_n_samples(const ei_dataset *d);
int64_t ei_dataset_n_tokens(const ei_dataset *d);
int64_t ei_dataset_sample_len(const ei_dataset *d, int64_t i); /* -1 if i is out of range */
int64_t ei_dataset_doc_id(const ei_dataset *d, int64_t i);     /* -1 if i is out of range */
int64_t ei_dataset_max_len(const ei_dataset *d);
int ei_dataset_vocab_size(const ei_dataset *d); /* from /meta; 0 if not recorded */
/* Token ids read from d must also be below vocab (the consuming model's vocabulary): a dataset
 * that records no vocab_size, or a larger one, then fails on the first sample holding such an id
 * with an error naming the sample, instead of indexing past the embedding. */
void ei_dataset_limit_vocab(ei_dataset *d, int vocab);
const char *ei_dataset_path(const ei_dataset *d);
/* String attribute of /meta ("tokenizer", "template", "split", ...); NULL if absent. The string
 * belongs to d. */
const char *ei_dataset_meta_str(const ei_dataset *d, const char *name);
/* Integer attribute of /meta; returns -1 (with ei_error set) if absent. */
int ei_dataset_meta_i64(const ei_dataset *d, const char *name, int64_t *out);

/* Whether the dataset was tokenised with t (the model's tokenizer, named tok_name in messages): the
 * vocabulary hash recorded in /meta (tokenizer_vocab_hash, ei_tokenizer_vocab_hash) must equal t's,
 * so the same vocabulary in another file, folder or format (tok512.bin / tok512.model) matches.
 * Files written before that hash existed are compared by the tokenizer file's hash inside
 * /meta tokenizer (ei_tokenizer_identity). Returns 0 same, 1 nothing recorded, -1 different
 * (ei_error names both tokenizers). */
int ei_dataset_check_tokenizer(const ei_dataset *d, const ei_tokenizer *t, const char *tok_name);

/* Reads sample i into caller buffers of at least ei_dataset_sample_len(d, i) elements (mask may be
 * NULL). Checks token ids against the vocabulary and mask values. Returns the length or -1. */
int64_t ei_dataset_read(ei_dataset *d, int64_t i, int32_t *tokens, uint8_t *mask);
/* As above into malloc'd arrays (caller frees both). */
int64_t ei_dataset_read_alloc(ei_dataset *d, int64_t i, int32_t **tokens, uint8_t **mask);

/* ------------------------------------------------------------------ iterator */

typedef struct {
    int64_t epoch;
    int64_t index; /* global position inside the epoch's order */
} ei_dataset_pos;

typedef struct {
    uint64_t seed;
    int shuffle;        /* 0: file order every epoch */
    int64_t batch_size; /* global batch size B >= 1 */
    int rank, world;    /* 0 <= rank < world */
} ei_dataset_iter_opts;

typedef struct ei_dataset_iter ei_dataset_iter;

/* The dataset must outlive the iterator. Fails if N < B or the options are invalid. Starting past
 * epoch 0 replays the generator through the earlier epochs (O(start.epoch x N)). */
ei_dataset_iter *ei_dataset_iter_new(ei_dataset *d, const ei_dataset_iter_opts *o, ei_dataset_pos start);
/* As ei_dataset_iter_new, with the generator state of start's epoch as ei_dataset_iter_rng gave it
 * (NULL: replay from o->seed). Options, position and state from the same run continue its exact
 * sequence; an all-zero state is refused. */
ei_dataset_iter *ei_dataset_iter_resume(ei_dataset *d, const ei_dataset_iter_opts *o, ei_dataset_pos start,
                                        const ei_rng *rng);
void ei_dataset_iter_free(ei_dataset_iter *it);
/* Sample index (into the dataset) of this rank's next sample; advances. Never runs out: epochs
 * follow each other. pos_out (may be NULL) receives the position of the returned sample. */
int64_t ei_dataset_iter_next(ei_dataset_iter *it, ei_dataset_pos *pos_out);
ei_dataset_pos ei_dataset_iter_pos(const ei_dataset_iter *it);
/* The shuffling generator's state that goes with ei_dataset_iter_pos(it): the state the order of
 * that position's epoch is drawn from (for (e+1, 0) after epoch e, the state epoch e left). */
void ei_dataset_iter_rng(const ei_dataset_iter *it, ei_rng *out);
/* Global batches per epoch, floor(N / B). */
int64_t ei_dataset_iter_batches_per_epoch(const ei_dataset_iter *it);
/* Number of positions of one global batch that rank r of W owns. */
int64_t ei_dataset_rank_share(int64_t batch_size, int rank, int world);

/* The epoch order used by the iterator: perm[0..n) for (seed, epoch >= 0), computed by replaying
 * the stream from epoch 0 (O(epoch x n)). Exposed for tests and tools. */
void ei_dataset_epoch_order(int64_t n, uint64_t seed, int64_t epoch, int shuffle, int64_t *perm);

#endif
