/* Training checkpoints in HDF5 (DESIGN 4).
 *
 * File layout (format version EI_CKPT_VERSION):
 *   /params       float32 [n]   trainable parameters (all gates, flat)
 *   /adam_m       float32 [n]   Adam first moments
 *   /adam_v       float32 [n]   Adam second moments
 *   /rng_state    uint64  [k]   RNG state words (core/ei_rng.h: k = 4): the data loader's shuffling
 *                               generator as ei_dataset_iter_rng reports it for data_epoch/data_index
 *   /config       string        the resolved config as YAML (train_config dump)
 *   attributes of /: format_version (int32), step, adam_t, data_epoch, data_index (int64),
 *     model_path (string), model_size, model_hash (uint64), checksum (uint64: FNV-1a over the
 *     parameter, moment and RNG arrays and the config, so silent corruption of raw data is caught).
 *
 * The file is built in memory (HDF5 core driver) with a 512-byte user block holding its seal
 * (a whole-file XXH64, core/ei_seal.h), then written to a temporary name, fsynced and renamed
 * (core/ei_io.h): a crash or a full disk never leaves a half-written ckpt-<step>.h5, and libhdf5
 * never writes to disk. Readers check the seal before libhdf5 opens the file (a file without one is
 * read with a note), every dataset's type and shape before reading, the checksum, and that the
 * parameters and moments are finite. */
#ifndef EI_CHECKPOINT_H
#define EI_CHECKPOINT_H

#include "train/train_config.h"

#include <stddef.h>
#include <stdint.h>

#define EI_CKPT_VERSION 1
#define EI_CKPT_MAX_RNG_WORDS 64

typedef struct {
    int format_version;   /* filled by the reader */
    int64_t step;         /* optimizer steps completed (the next step has this 0-based index) */
    int64_t adam_t;       /* updates the optimizer applied (differs from step when steps were skipped) */
    int64_t data_epoch;   /* data-loader position */
    int64_t data_index;
    size_t n_params;
    float *params, *adam_m, *adam_v; /* [n_params] each */
    size_t n_rng;
    uint64_t rng[EI_CKPT_MAX_RNG_WORDS];
    char *config_yaml;    /* NUL-terminated */
    char *model_path;     /* base-model identity */
    uint64_t model_size;
    uint64_t model_hash;
} ei_checkpoint;

/* Writes c to path atomically. The arrays are borrowed. */
int ei_ckpt_write(const char *path, const ei_checkpoint *c);

/* Reads and validates a checkpoint. expect_n_params > 0 requires that parameter count.
 * On success *c owns malloc'd arrays and strings (free with ei_ckpt_free). */
int ei_ckpt_read(const char *path, size_t expect_n_params, ei_checkpoint *c);
void ei_ckpt_free(ei_checkpoint *c);

/* Writes dir/ckpt-<step>.h5 (creating dir) and then deletes the oldest ckpt-*.h5 files beyond
 * keep_last (keep_last <= 0 keeps all). *written (optional) receives the malloc'd path. */
int ei_ckpt_save(const char *dir, const ei_checkpoint *c, int keep_last, char **written);

/* Path of the newest checkpoint in dir that reads and validates (malloc'd); corrupt or partial
 * ones are skipped with a warning on stderr. NULL with ei_error set when there is none. */
char *ei_ckpt_latest(const char *dir, size_t expect_n_params);

/* Refuses to resume when the base model or a key that must not change (EI_CFG_FIXED) differs:
 * returns -1 with an error naming what differs. model_path is informational (a moved file with
 * the same size and hash is the same model). */
int ei_ckpt_check_resume(const ei_checkpoint *c, const ei_train_config *now, uint64_t model_size,
                         uint64_t model_hash, const char *model_path);

#endif
