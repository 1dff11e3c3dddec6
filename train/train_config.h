/* The training configuration (DESIGN 8): one struct filled from YAML files (configs/train/)
 * and `--set section.key=value` overrides through the schema in train_config.c. Every key, its
 * default and range are listed by `ei_train_config_print_schema` and in docs/config.md.
 *
 * Ownership: strings in the struct are malloc'd and freed by ei_train_config_free.
 * Relative paths are kept as written; they resolve against the current directory. */
#ifndef EI_TRAIN_CONFIG_H
#define EI_TRAIN_CONFIG_H

#include "config/ei_config.h"
#include "model/options.h"

#include <stdint.h>
#include <stdio.h>

/* Enum keys are stored as ints in the order of their choices (train.schedule "cosine|constant" is
 * ei_schedule_kind). The `edgeinfinite` section is an ei_opts, its rows generated from the options
 * table of model/options.h (ei_opts_schema_append). */
typedef enum { EI_SCHEDULE_COSINE = 0, EI_SCHEDULE_CONSTANT = 1 } ei_schedule_kind; /* "cosine|constant" */

typedef struct {
    struct {
        char *path;      /* llama2.c .bin or Hugging Face folder (required) */
        char *tokenizer; /* NULL: the tokenizer that belongs to the model */
    } model;
    ei_opts ei; /* the `edgeinfinite:` section */
    struct {
        char *train;        /* dataset.h5 (required) */
        char *val;          /* NULL: no evaluation */
        int64_t max_tokens; /* 0: no limit; documents are cut to this many tokens */
    } data;
    struct {
        int micro_batch;
        int grad_accum;
        double lr;
        double betas[2];
        double eps;
        double weight_decay;
        int warmup_steps;
        int schedule;       /* ei_schedule_kind */
        double min_lr_ratio;
        double clip_norm;   /* 0: no clipping */
        int64_t steps;      /* optimizer steps; 0: as many as `epochs` take */
        int epochs;
        int eval_every;     /* steps; 0: only at the end */
        int eval_samples;   /* validation samples per evaluation; 0: all */
        int eval_generate;  /* also greedy-generate answers and report exact match */
        int checkpoint_every; /* steps; 0: only at the end */
        int keep_last;
        char *out_dir;
        int64_t seed;
        int shuffle;        /* 1: a new seeded order of the training samples every epoch; 0: file order */
        int threads;        /* 0: OpenMP default */
        int max_bad_steps;  /* consecutive non-finite steps before giving up */
        int64_t activation_memory_mb; /* segment activations kept, MiB; 0: recompute all; -1: no limit */
        int chunk_segments;           /* segments per training graph (ei_edge_set_chunk); 0: automatic */
    } train;
} ei_train_config;

/* The schema (NULL-terminated; built on first use and kept for the life of the process; NULL only
 * if that ran out of memory). Keys flagged EI_CFG_FIXED must match when resuming. */
const ei_cfg_key *ei_train_config_schema(void);

/* The YAML section of the EdgeInfinite options in the training config. */
#define EI_TRAIN_CONFIG_OPTS_SECTION "edgeinfinite"

/* Appends one schema row per EdgeInfinite option (model/options.h) to s, for a config struct that
 * embeds an ei_opts at offset base: key "<prefix>.<name>", type, range, default, choices and help
 * from the options table, EI_CFG_FIXED when the option changes the maths (EI_OPT_MATHS). Any config
 * that embeds the options (training, deployment scenarios) uses this, so they cannot disagree. */
int ei_opts_schema_append(ei_cfg_schema *s, const char *prefix, size_t base);

/* Defaults, then each file in order, then each "section.key=value" override, then the required-key
 * and cross-key checks. On failure returns -1 with ei_error set (naming file:line: key or the
 * override) and leaves *cfg empty (nothing to free). */
int ei_train_config_load(ei_train_config *cfg, const char *const *files, int n_files,
                         const char *const *overrides, int n_overrides);
/* Same from YAML text (e.g. the config stored in a checkpoint); no required-key check. */
int ei_train_config_from_text(ei_train_config *cfg, const char *text, const char *name);
void ei_train_config_free(ei_train_config *cfg);

/* Resolved config as YAML (every key). malloc'd; caller frees. */
char *ei_train_config_dump(const ei_train_config *cfg);

/* 0 if a run saved with `saved` may resume under `now` (only keys flagged EI_CFG_FIXED compared);
 * otherwise -1 with an error listing every differing key with both values. */
int ei_train_config_check_resume(const ei_train_config *saved, const ei_train_config *now);

/* The EdgeInfinite options of the config (a copy of cfg->ei). */
void ei_train_config_opts(const ei_train_config *cfg, ei_opts *o);

void ei_train_config_print_schema(FILE *fp);

/* train.activation_memory_mb in bytes for ei_edge_set_activation_memory (-1: no limit). */
int64_t ei_train_config_activation_bytes(const ei_train_config *cfg);

#endif
