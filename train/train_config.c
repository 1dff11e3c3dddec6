#include "train/train_config.h"
#include "core/ei_error.h"
#include "train/edge.h"
#include "train/seg_graph.h"

#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define OFF(f) offsetof(ei_train_config, f)
#define EI_TC_STR_(x) #x
#define EI_TC_STR(x) EI_TC_STR_(x)
#define NORANGE 1, 0
#define FIXED EI_CFG_FIXED
#define REQ EI_CFG_REQUIRED

/* EI_CFG_FIXED marks what a checkpoint depends on: the EdgeInfinite options (they
 * define the gate shape and the maths the gates were trained for), the dataset with the loader's
 * batch layout and shuffle seed (the saved data position indexes into them). Everything else
 * (schedule, length of the run, evaluation and checkpoint cadence, threads) may change on resume;
 * train.shuffle is fixed with the seed, since the saved position indexes into the order it gives.
 * The base model is compared by identity (size and hash, ei_ckpt_check_resume), not by path, so a
 * moved model file still resumes. */
static const ei_cfg_key head_rows[] = {
    {"model.path", EI_CFG_STRING, OFF(model.path), NORANGE, NULL, NULL, 0, REQ,
     "base model: llama2.c .bin file or Hugging Face folder"},
    {"model.tokenizer", EI_CFG_STRING, OFF(model.tokenizer), NORANGE, NULL, NULL, 0, 0,
     "tokenizer file; empty: the one that belongs to the model"},
    {0},
};

/* The edgeinfinite.* rows come between these two, generated from model/options.h. */
static const ei_cfg_key tail_rows[] = {
    {"data.train", EI_CFG_STRING, OFF(data.train), NORANGE, NULL, NULL, 0, REQ | FIXED,
     "training dataset (.h5 from ei prepare)"},
    {"data.val", EI_CFG_STRING, OFF(data.val), NORANGE, NULL, NULL, 0, 0,
     "validation dataset; empty: no evaluation"},
    {"data.max_tokens", EI_CFG_I64, OFF(data.max_tokens), 0, 1e15, "0", NULL, 0, FIXED,
     "cut each document to this many tokens; 0: no limit"},

    {"train.micro_batch", EI_CFG_INT, OFF(train.micro_batch), 1, 65536, "1", NULL, 0, FIXED,
     "documents per micro-batch (summed over all ranks)"},
    {"train.grad_accum", EI_CFG_INT, OFF(train.grad_accum), 1, 65536, "1", NULL, 0, FIXED,
     "micro-batches accumulated per optimizer step"},
    {"train.lr", EI_CFG_FLOAT, OFF(train.lr), 0, 10, "5e-3", NULL, 0, 0, "peak learning rate of the gates"},
    {"train.betas", EI_CFG_FLOATS, OFF(train.betas), 0, 0.999999999, "[0.9, 0.999]", NULL, 2, 0,
     "Adam beta1, beta2"},
    {"train.eps", EI_CFG_FLOAT, OFF(train.eps), 0, 1, "1e-8", NULL, 0, 0, "Adam epsilon"},
    {"train.weight_decay", EI_CFG_FLOAT, OFF(train.weight_decay), 0, 10, "0", NULL, 0, 0,
     "decoupled weight decay (keep 0 for gates: decay pulls them to 0.5)"},
    {"train.warmup_steps", EI_CFG_INT, OFF(train.warmup_steps), 0, 1e9, "0", NULL, 0, 0,
     "linear warmup steps"},
    {"train.schedule", EI_CFG_ENUM, OFF(train.schedule), NORANGE, "cosine", "cosine|constant", 0, 0,
     "learning rate after warmup: cosine decay to min_lr_ratio * lr, or constant"},
    {"train.min_lr_ratio", EI_CFG_FLOAT, OFF(train.min_lr_ratio), 0, 1, "0.1", NULL, 0, 0,
     "final learning rate of the cosine schedule, as a fraction of lr"},
    {"train.clip_norm", EI_CFG_FLOAT, OFF(train.clip_norm), 0, 1e9, "1.0", NULL, 0, 0,
     "global gradient norm clip; 0: off"},
    {"train.steps", EI_CFG_I64, OFF(train.steps), 0, 1e12, "0", NULL, 0, 0,
     "optimizer steps; 0: as many as train.epochs take"},
    {"train.epochs", EI_CFG_INT, OFF(train.epochs), 0, 1e6, "1", NULL, 0, 0,
     "passes over the training set when train.steps is 0"},
    {"train.eval_every", EI_CFG_INT, OFF(train.eval_every), 0, 1e9, "0", NULL, 0, 0,
     "evaluate every N steps; 0: only at the end"},
    {"train.eval_samples", EI_CFG_INT, OFF(train.eval_samples), 0, 1e9, "0", NULL, 0, 0,
     "validation samples per evaluation; 0: all"},
    {"train.eval_generate", EI_CFG_BOOL, OFF(train.eval_generate), NORANGE, "false", NULL, 0, 0,
     "also generate greedy answers on instruction data and report exact match"},
    {"train.checkpoint_every", EI_CFG_INT, OFF(train.checkpoint_every), 0, 1e9, "0", NULL, 0, 0,
     "write a checkpoint every N steps; 0: only at the end"},
    {"train.keep_last", EI_CFG_INT, OFF(train.keep_last), 1, 100000, "3", NULL, 0, 0,
     "checkpoints kept in out_dir"},
    {"train.out_dir", EI_CFG_STRING, OFF(train.out_dir), NORANGE, "runs/train", NULL, 0, 0,
     "folder for checkpoints and metrics.jsonl"},
    {"train.seed", EI_CFG_I64, OFF(train.seed), 0, 9007199254740992.0, "1234", NULL, 0, FIXED,
     "seed of the shuffling and of everything random"},
    {"train.shuffle", EI_CFG_BOOL, OFF(train.shuffle), NORANGE, "true", NULL, 0, FIXED,
     "visit the training samples in a new seeded order every epoch; false: in file order"},
    {"train.threads", EI_CFG_INT, OFF(train.threads), 0, 4096, "0", NULL, 0, 0,
     "OpenMP threads per rank; 0: the OpenMP default"},
    {"train.max_bad_steps", EI_CFG_INT, OFF(train.max_bad_steps), 1, 1000000, "10", NULL, 0, 0,
     "consecutive steps with a non-finite loss or gradient before training stops"},
    /* a speed / memory trade only: the gradients are the same for every value, so not fixed */
    {"train.activation_memory_mb", EI_CFG_I64, OFF(train.activation_memory_mb), -1, 1e9,
     EI_TC_STR(EI_EDGE_ACTIVATION_MB_DEFAULT), NULL, 0, 0,
     "MiB of segment activations kept from the forward to the backward sweep instead of recomputed; "
     "0: recompute every segment; -1: no limit"},
    {"train.chunk_segments", EI_CFG_INT, OFF(train.chunk_segments), 0, EI_SEG_CHUNK_MAX, "0", NULL, 0, 0,
     "segments per training graph, run layer by layer with each product over all their rows; "
     "0: automatic (2,048 rows, at most 16 segments, within train.activation_memory_mb)"},
    {0},
};

static ei_cfg_schema schema;
static const ei_cfg_key *train_schema;
static pthread_once_t schema_once = PTHREAD_ONCE_INIT;

static void build_schema(void) {
    ei_cfg_schema_init(&schema);
    if (ei_cfg_schema_add(&schema, head_rows) ||
        ei_opts_schema_append(&schema, EI_TRAIN_CONFIG_OPTS_SECTION, offsetof(ei_train_config, ei)) ||
        ei_cfg_schema_add(&schema, tail_rows)) {
        ei_cfg_schema_free(&schema);
        return;
    }
    train_schema = schema.keys;
}

const ei_cfg_key *ei_train_config_schema(void) {
    pthread_once(&schema_once, build_schema);
    return train_schema;
}

int ei_opts_schema_append(ei_cfg_schema *s, const char *prefix, size_t base) {
    ei_opts def;
    ei_opts_default(&def);
    for (int i = 0; i < ei_opts_count(); i++) {
        const ei_opt_desc *d = ei_opt_desc_at(i);
        char text[64];
        int len = ei_opts_get_str(&def, i, text, sizeof text);
        if (len < 0 || (size_t)len >= sizeof text) return ei_error_set("schema: %s: default too long", d->name);
        ei_cfg_key row = {d->name, EI_CFG_INT, d->offset, d->min, d->max, text, NULL, 0,
                          d->flags & EI_OPT_MATHS ? EI_CFG_FIXED : 0, d->help};
        if (d->type == EI_OPT_FLOAT) row.type = EI_CFG_FLOAT;
        if (d->type == EI_OPT_ENUM) {
            row.type = EI_CFG_ENUM;
            row.choices = d->choices;
            row.min = 1, row.max = 0; /* the choices are the range */
        }
        if (ei_cfg_schema_add_prefixed(s, prefix, base, &row)) return -1;
    }
    return 0;
}

/* The schema or an error: only an allocation failure on first use makes it NULL. */
static const ei_cfg_key *schema_or_error(void) {
    const ei_cfg_key *k = ei_train_config_schema();
    if (!k) ei_error_set("out of memory building the config schema");
    return k;
}

/* Relations between keys that a per-key range cannot express. */
static int check_cross(const ei_config *c, const ei_train_config *t) {
    if (t->train.steps == 0 && t->train.epochs == 0)
        return ei_error_set("%s: train.epochs: must be > 0 when train.steps is 0",
                            ei_config_origin(c, "train.epochs"));
    if (t->train.steps > 0 && t->train.warmup_steps > t->train.steps)
        return ei_error_set("%s: train.warmup_steps: %d exceeds train.steps (%lld)",
                            ei_config_origin(c, "train.warmup_steps"), t->train.warmup_steps,
                            (long long)t->train.steps);
    if (t->train.eval_generate && !t->data.val)
        return ei_error_set("%s: train.eval_generate: needs data.val", ei_config_origin(c, "train.eval_generate"));
    return 0;
}

int ei_train_config_load(ei_train_config *cfg, const char *const *files, int n_files,
                         const char *const *overrides, int n_overrides) {
    memset(cfg, 0, sizeof *cfg);
    const ei_cfg_key *keys = schema_or_error();
    ei_config c;
    if (!keys || ei_config_init(&c, keys, cfg)) return -1;
    int rc = 0;
    for (int i = 0; i < n_files && !rc; i++) rc = ei_config_load_file(&c, files[i]);
    for (int i = 0; i < n_overrides && !rc; i++) rc = ei_config_set(&c, overrides[i]);
    if (!rc) rc = ei_config_check_required(&c);
    if (!rc) rc = check_cross(&c, cfg);
    if (rc) {
        ei_config_release(&c); /* frees the strings already in cfg */
        memset(cfg, 0, sizeof *cfg);
        return -1;
    }
    /* Keep the strings in cfg, drop the bookkeeping. */
    for (int i = 0; i < c.n_keys; i++) free(c.origin[i]);
    free(c.origin);
    return 0;
}

int ei_train_config_from_text(ei_train_config *cfg, const char *text, const char *name) {
    memset(cfg, 0, sizeof *cfg);
    const ei_cfg_key *keys = schema_or_error();
    ei_config c;
    if (!keys || ei_config_init(&c, keys, cfg)) return -1;
    if (ei_config_load_string(&c, text, name)) {
        ei_config_release(&c);
        memset(cfg, 0, sizeof *cfg);
        return -1;
    }
    for (int i = 0; i < c.n_keys; i++) free(c.origin[i]);
    free(c.origin);
    return 0;
}

void ei_train_config_free(ei_train_config *cfg) {
    const ei_cfg_key *keys = ei_train_config_schema();
    if (!cfg || !keys) return; /* no schema: nothing was ever loaded */
    for (const ei_cfg_key *k = keys; k->key; k++) {
        if (k->type != EI_CFG_STRING) continue;
        char **s = (char **)((char *)cfg + k->offset);
        free(*s);
        *s = NULL;
    }
}

char *ei_train_config_dump(const ei_train_config *cfg) {
    const ei_cfg_key *keys = schema_or_error();
    if (!keys) return NULL;
    ei_config c = {.keys = keys, .dst = (void *)cfg};
    while (keys[c.n_keys].key) c.n_keys++;
    char *s = ei_config_dump(&c);
    if (!s) ei_error_set("out of memory");
    return s;
}

int ei_train_config_check_resume(const ei_train_config *saved, const ei_train_config *now) {
    const ei_cfg_key *keys = schema_or_error();
    if (!keys) return -1;
    char buf[2048];
    int n = ei_config_compare(keys, saved, now, EI_CFG_FIXED, buf, sizeof buf);
    if (n == 0) return 0;
    return ei_error_set("the config differs from the checkpoint's in %d key%s that must not change on resume "
                        "(checkpoint -> now): %s",
                        n, n == 1 ? "" : "s", buf);
}

void ei_train_config_opts(const ei_train_config *cfg, ei_opts *o) { *o = cfg->ei; }

void ei_train_config_print_schema(FILE *fp) {
    const ei_cfg_key *keys = schema_or_error();
    if (keys) ei_config_print_schema(keys, fp);
}

int64_t ei_train_config_activation_bytes(const ei_train_config *cfg) {
    const int64_t mb = cfg->train.activation_memory_mb;
    return mb < 0 ? -1 : mb * ((int64_t)1 << 20);
}
