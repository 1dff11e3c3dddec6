#include "train/trainer.h"

#include "core/ei_error.h"
#include "core/ei_io.h"
#include "core/ei_rng.h"
#include "data/dataset.h"
#include "kernels/kernels.h"
#include "train/checkpoint.h"
#include "train/dist.h"
#include "formats/gates.h"
#include "train/edge.h"
#include "train/metrics.h"
#include "train/optim.h"
#include "train/edge_session.h"
#include "formats/model.h"
#include "text/tokenizer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int ei_sample_load(ei_sample_buf *b, ei_dataset *d, int64_t idx, int64_t max_tokens, int64_t *n_out,
                       int64_t *count_out) {
    int64_t n = ei_dataset_sample_len(d, idx);
    if (n < 0) return ei_error_set("%s: sample %lld out of range", ei_dataset_path(d), (long long)idx);
    if (n > b->cap) {
        int64_t cap = n + 1024;
        int32_t *t = realloc(b->tokens, (size_t)cap * sizeof *t);
        if (t) b->tokens = t;
        int32_t *g = realloc(b->targets, (size_t)cap * sizeof *g);
        if (g) b->targets = g;
        uint8_t *m = realloc(b->mask, (size_t)cap);
        if (m) b->mask = m;
        uint8_t *p = realloc(b->pmask, (size_t)cap);
        if (p) b->pmask = p;
        if (!t || !g || !m || !p) return ei_error_set("out of memory for a sample of %lld tokens", (long long)n);
        b->cap = cap;
    }
    if (ei_dataset_read(d, idx, b->tokens, b->mask) < 0) return -1;
    if (max_tokens > 0 && n > max_tokens) n = max_tokens;
    int64_t count = 0;
    for (int64_t t = 0; t + 1 < n; t++) {
        b->targets[t] = b->tokens[t + 1];
        b->pmask[t] = b->mask[t + 1];
        count += b->pmask[t] != 0;
    }
    *n_out = n > 0 ? n - 1 : 0; /* positions that predict something */
    *count_out = count;
    return 0;
}

void ei_sample_free(ei_sample_buf *b) {
    free(b->tokens);
    free(b->targets);
    free(b->mask);
    free(b->pmask);
    memset(b, 0, sizeof *b);
}

static uint64_t model_file_size(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) return 0;
    if (S_ISREG(st.st_mode)) return (uint64_t)st.st_size;
    char *p = ei_path_join(path, "model.safetensors");
    uint64_t s = 0;
    if (p && stat(p, &st) == 0) s = (uint64_t)st.st_size;
    free(p);
    return s;
}

/* Mean NLL of a dataset's first max_samples samples, split across ranks (sample i on rank i % W). */
static int eval_loss(ei_edge *e, ei_dataset *d, int64_t max_samples, int64_t max_tokens, ei_sample_buf *b,
                     double *loss, int64_t *count) {
    int64_t n = ei_dataset_n_samples(d);
    if (max_samples > 0 && max_samples < n) n = max_samples;
    int rank = ei_dist_rank(), world = ei_dist_size();
    double acc[2] = {0, 0};
    int rc = 0;
    for (int64_t i = rank; i < n && rc == 0; i += world) {
        int64_t len, cnt;
        if (ei_sample_load(b, d, i, max_tokens, &len, &cnt) != 0) {
            rc = -1;
            break;
        }
        if (cnt == 0) continue;
        ei_doc_result r;
        if (ei_edge_doc_eval(e, b->tokens, b->targets, b->pmask, len, &r) != 0) {
            rc = -1;
            break;
        }
        acc[0] += r.nll_sum;
        acc[1] += (double)r.count;
    }
    double fail = rc != 0;
    ei_dist_allreduce_max_f64(&fail, 1);
    if (fail != 0) return rc != 0 ? -1 : ei_error_set("evaluation failed on another rank");
    ei_dist_allreduce_sum_f64(acc, 2);
    *count = (int64_t)acc[1];
    *loss = acc[1] > 0 ? acc[0] / acc[1] : NAN;
    return 0;
}

int ei_trainer_answer_exact(ei_edge *e, const int32_t *tokens, const uint8_t *mask, int64_t n, int vocab,
                            float *logits) {
    ei_docmodel dm = ei_edge_docmodel(e);
    dm.vocab = vocab;
    return ei_docmodel_answer_exact(&dm, tokens, mask, n, logits);
}

/* Exact-match rate over the first max_samples samples, split across ranks (sample i on rank i % W). */
static int eval_exact(ei_edge *e, ei_dataset *d, int64_t max_samples, int vocab, ei_sample_buf *b, double *rate) {
    int64_t n = ei_dataset_n_samples(d);
    if (max_samples > 0 && max_samples < n) n = max_samples;
    int rank = ei_dist_rank(), world = ei_dist_size();
    float *logits = malloc((size_t)vocab * sizeof(float));
    double acc[3] = {0, 0, 0}; /* exact, answered, failure */
    if (!logits) acc[2] = 1;
    for (int64_t i = rank; i < n && acc[2] == 0; i += world) {
        int64_t len, cnt;
        if (ei_sample_load(b, d, i, 0, &len, &cnt) != 0) {
            acc[2] = 1;
            break;
        }
        int r = ei_trainer_answer_exact(e, b->tokens, b->mask, len + 1, vocab, logits);
        if (r < 0) acc[2] = 1;
        else if (r < 2) {
            acc[0] += r;
            acc[1] += 1;
        }
    }
    free(logits);
    ei_dist_allreduce_sum_f64(acc, 3);
    if (acc[2] != 0) return -1;
    *rate = acc[1] > 0 ? acc[0] / acc[1] : -1;
    return 0;
}

/* Per-layer statistics of the gate at its bias (the value of sigmoid(x.w + b) for an input
 * orthogonal to w, and sigmoid(beta) for head gates): mean and standard deviation over heads. */
static void gate_stats(const ei_gates *g, double *mean, double *sd) {
    for (int l = 0; l < g->n_layers; l++) {
        const float *b = g->data + ei_gates_b_offset(g, l);
        double s = 0, s2 = 0;
        for (int h = 0; h < g->n_heads; h++) {
            double v = 1.0 / (1.0 + exp(-(double)b[h]));
            s += v;
            s2 += v * v;
        }
        mean[l] = s / g->n_heads;
        double var = s2 / g->n_heads - mean[l] * mean[l];
        sd[l] = var > 0 ? sqrt(var) : 0;
    }
}

typedef struct {
    ei_model *model;
    ei_gates *gates;
    ei_edge *edge;
    ei_dataset *train, *val;
    ei_dataset_iter *it;
    ei_adamw adam;
    ei_metrics *metrics;
    ei_sample_buf buf;
    double *gmean, *gsd;
    char *cfg_text;
    ei_opts opts;
} trainer;

static void trainer_free(trainer *t) {
    ei_dataset_iter_free(t->it);
    ei_dataset_close(t->train);
    ei_dataset_close(t->val);
    ei_edge_free(t->edge);
    ei_gates_free(t->gates);
    ei_model_free(t->model);
    ei_adamw_free(&t->adam);
    ei_metrics_close(t->metrics);
    ei_sample_free(&t->buf);
    free(t->gmean);
    free(t->gsd);
    free(t->cfg_text);
}

/* The data position and the shuffling generator's state are taken together from the iterator: the
 * RNG the checkpoint stores is the one the training order is drawn from. */
static int save_checkpoint(trainer *t, const ei_train_config *cfg, int64_t step, uint64_t msize) {
    if (!ei_dist_is_root()) return 0;
    ei_dataset_pos pos = ei_dataset_iter_pos(t->it);
    ei_rng rng;
    ei_dataset_iter_rng(t->it, &rng);
    ei_checkpoint c;
    memset(&c, 0, sizeof c);
    c.step = step;
    c.adam_t = t->adam.t;
    c.data_epoch = pos.epoch;
    c.data_index = pos.index;
    c.n_params = t->gates->n;
    c.params = t->gates->data;
    c.adam_m = t->adam.m;
    c.adam_v = t->adam.v;
    c.n_rng = EI_RNG_STATE_WORDS;
    memcpy(c.rng, rng.s, sizeof rng.s);
    c.config_yaml = t->cfg_text;
    c.model_path = t->model->path;
    c.model_size = msize;
    c.model_hash = t->model->identity;
    char *written = NULL;
    if (ei_ckpt_save(cfg->train.out_dir, &c, cfg->train.keep_last, &written) != 0) return -1;
    free(written);
    return 0;
}

static int setup_model(trainer *t, const ei_train_config *cfg, ei_mode mode, const char *gates_path) {
    t->model = ei_model_load(cfg->model.path);
    if (!t->model) return -1;
    ei_train_config_opts(cfg, &t->opts);
    if (ei_opts_validate(&t->opts, &t->model->cfg) != 0) return -1;
    if (ei_dist_is_root()) ei_opts_warn_context("ei train", &t->opts, &t->model->cfg);
    t->gates = ei_gates_new(&t->model->cfg, t->opts.gate, t->opts.gate_init_bias);
    if (!t->gates) return -1;
    if (gates_path && ei_gates_load(t->gates, gates_path) != 0) return -1;
    t->edge = ei_edge_new(t->model, &t->opts, t->gates, mode, AG_F32);
    if (!t->edge) return -1;
    ei_edge_set_activation_memory(t->edge, ei_train_config_activation_bytes(cfg));
    return ei_edge_set_chunk(t->edge, cfg->train.chunk_segments);
}

int ei_check_dataset_tokenizer(ei_dataset *const *d, int n, const ei_model *m, const char *tok_path,
                               int allow_mismatch, const char *who) {
    char *def = NULL;
    if (!tok_path) tok_path = def = ei_model_default_tokenizer(m->path, m->cfg.vocab_size);
    if (!tok_path) {
        if (who)
            fprintf(stderr, "%s: note: no tokenizer beside %s, so the datasets' tokenizer is not checked\n", who,
                    m->path);
        return 0;
    }
    ei_tokenizer *t = ei_tokenizer_load(tok_path, m->cfg.vocab_size);
    int rc = t ? 0 : -1;
    if (!t) ei_error_prefix("the model's tokenizer: ");
    for (int i = 0; i < n && rc == 0; i++) {
        int r = ei_dataset_check_tokenizer(d[i], t, tok_path);
        if (r == 1) {
            if (who)
                fprintf(stderr, "%s: note: %s records no tokenizer; not checked against %s\n", who,
                        ei_dataset_path(d[i]), tok_path);
        } else if (r < 0 && allow_mismatch) {
            if (who) fprintf(stderr, "%s: warning (--allow-tokenizer-mismatch): %s\n", who, ei_error_get());
        } else if (r < 0) {
            char *msg = strdup(ei_error_get()); /* ei_error_set writes where the message is */
            ei_error_set("%s (pass --allow-tokenizer-mismatch if this is deliberate)", msg ? msg : "");
            free(msg);
            rc = -1;
        }
    }
    ei_tokenizer_free(t);
    free(def);
    return rc;
}

static int check_dataset(ei_dataset *d, const ei_model *m) {
    int v = ei_dataset_vocab_size(d);
    if (v > m->cfg.vocab_size)
        return ei_error_set("%s: dataset vocabulary (%d) is larger than the model's (%d): wrong tokenizer?",
                            ei_dataset_path(d), v, m->cfg.vocab_size);
    if (ei_dataset_n_samples(d) > 0 && ei_dataset_max_len(d) < 2)
        return ei_error_set("%s: every sample has fewer than 2 tokens: nothing to predict", ei_dataset_path(d));
    /* A dataset that records no vocabulary still cannot index past the embedding. */
    ei_dataset_limit_vocab(d, m->cfg.vocab_size);
    return 0;
}

/* Whether path lies directly in the folder dir (compared by inode, so spellings do not matter). */
static int in_folder(const char *path, const char *dir) {
    const char *slash = strrchr(path, '/');
    char *parent = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    struct stat a, b;
    int r = parent && stat(parent, &a) == 0 && stat(dir, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino;
    free(parent);
    return r;
}

/* What the run writes into out_dir must not be one of its inputs: metrics.jsonl and
 * gates.safetensors are replaced, ckpt-<step>.h5 files are replaced and pruned. */
static int check_outputs(const ei_train_config *cfg) {
    const char *in[] = {cfg->data.train, cfg->data.val, cfg->model.path, cfg->model.tokenizer};
    const int n = (int)(sizeof in / sizeof in[0]);
    static const char *const names[] = {"metrics.jsonl", "gates.safetensors"};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        char *p = ei_path_join(cfg->train.out_dir, names[k]);
        int rc = p ? ei_check_not_input(p, in, n) : ei_error_set("out of memory");
        free(p);
        if (rc) return ei_error_prefix("train.out_dir: ");
    }
    for (int i = 0; i < n; i++) {
        if (!in[i] || !ei_path_exists(cfg->train.out_dir)) continue;
        const char *base = strrchr(in[i], '/');
        base = base ? base + 1 : in[i];
        size_t bl = strlen(base);
        if (strncmp(base, "ckpt-", 5) == 0 && bl > 8 && strcmp(base + bl - 3, ".h5") == 0 &&
            in_folder(in[i], cfg->train.out_dir))
            return ei_error_set("train.out_dir %s: the input %s has a checkpoint's name there and would be "
                                "overwritten or pruned; move it or choose another out_dir",
                                cfg->train.out_dir, in[i]);
    }
    return 0;
}

/* Test hook (tests/cli_train_hostile.sh): EI_TEST_NAN_STEP="k" or "k-m" (comma-separated) makes the
 * loss of those 1-based steps NaN, as a diverging run would, to exercise the skip-and-count rule. */
static int test_nan_step(int64_t step) {
    const char *v = getenv("EI_TEST_NAN_STEP");
    while (v && *v) {
        char *end;
        long long a = strtoll(v, &end, 10), b = a;
        if (end == v) return 0;
        if (*end == '-') b = strtoll(end + 1, &end, 10);
        if (step >= a && step <= b) return 1;
        v = *end == ',' ? end + 1 : NULL;
    }
    return 0;
}

int ei_trainer_update(ei_adamw *adam, float *params, float *grad, size_t n, double loss, double grad_norm,
                      double lr, double clip_norm, int *bad_run, int max_bad_steps) {
    if (!isfinite(loss) || !isfinite(grad_norm)) {
        (*bad_run)++;
        if (*bad_run >= max_bad_steps)
            return ei_error_set("%d consecutive steps with a non-finite loss or gradient (train.max_bad_steps = %d): "
                                "giving up; lower train.lr or check the data",
                                *bad_run, max_bad_steps);
        return 0;
    }
    *bad_run = 0;
    ei_grad_clip(grad, n, clip_norm);
    ei_adamw_step(adam, params, grad, lr);
    return 1;
}

int ei_trainer_run(const ei_train_config *cfg, const ei_trainer_opts *ro) {
    trainer t;
    memset(&t, 0, sizeof t);
    int rank = ei_dist_rank(), world = ei_dist_size(), root = ei_dist_is_root();
    int rc = -1;
    if (cfg->train.threads > 0) ei_k_threads_set(cfg->train.threads);
    if (setup_model(&t, cfg, EI_MODE_EDGEINFINITE, NULL) != 0) goto done;
    if (check_outputs(cfg) != 0) goto done;
    uint64_t msize = model_file_size(cfg->model.path);
    t.cfg_text = ei_train_config_dump(cfg);
    t.train = ei_dataset_open(cfg->data.train);
    if (!t.train || check_dataset(t.train, t.model) != 0) goto done;
    if (cfg->data.val) {
        t.val = ei_dataset_open(cfg->data.val);
        if (!t.val || check_dataset(t.val, t.model) != 0) goto done;
    }
    {
        ei_dataset *sets[2] = {t.train, t.val};
        if (ei_check_dataset_tokenizer(sets, t.val ? 2 : 1, t.model, cfg->model.tokenizer,
                                       ro->allow_tokenizer_mismatch, root ? "ei train" : NULL) != 0)
            goto done;
    }
    int64_t B = (int64_t)cfg->train.micro_batch * cfg->train.grad_accum;
    if (B < world) {
        ei_error_set("global batch (micro_batch %d x grad_accum %d = %lld) is smaller than the %d ranks",
                     cfg->train.micro_batch, cfg->train.grad_accum, (long long)B, world);
        goto done;
    }
    if (ei_dataset_n_samples(t.train) < B) {
        ei_error_set("%s: %lld samples, fewer than one global batch of %lld", cfg->data.train,
                     (long long)ei_dataset_n_samples(t.train), (long long)B);
        goto done;
    }
    if (ei_adamw_init(&t.adam, t.gates->n, cfg->train.betas[0], cfg->train.betas[1], cfg->train.eps,
                      cfg->train.weight_decay) != 0)
        goto done;
    int64_t step = 0;
    ei_dataset_pos pos = {0, 0};
    ei_rng rng;
    int have_rng = 0;
    if (ro->resume) {
        const char *dir = ro->resume_dir ? ro->resume_dir : cfg->train.out_dir;
        char *path = ro->resume_path ? strdup(ro->resume_path) : ei_ckpt_latest(dir, t.gates->n);
        if (!path) {
            ei_error_prefix("--resume: ");
            goto done;
        }
        ei_checkpoint c;
        if (ei_ckpt_read(path, t.gates->n, &c) != 0) {
            free(path);
            goto done;
        }
        /* No saved state (n_rng 0) is still resumable: the iterator replays it from the seed. */
        have_rng = c.n_rng == EI_RNG_STATE_WORDS;
        int bad = ei_ckpt_check_resume(&c, cfg, msize, t.model->identity, cfg->model.path) != 0 ||
                  ei_adamw_restore(&t.adam, c.adam_m, c.adam_v, c.adam_t) != 0;
        if (!bad && c.n_rng != 0 && !have_rng)
            bad = ei_error_set("/rng_state has %zu words, expected %d", c.n_rng, EI_RNG_STATE_WORDS) != 0;
        if (!bad && have_rng) bad = ei_rng_set_state(&rng, c.rng) != 0;
        if (bad) {
            ei_error_prefix("%s: cannot resume: ", path);
            ei_ckpt_free(&c);
            free(path);
            goto done;
        }
        memcpy(t.gates->data, c.params, t.gates->n * sizeof(float));
        step = c.step;
        pos.epoch = c.data_epoch;
        pos.index = c.data_index;
        if (root) fprintf(stderr, "ei train: resuming from %s (step %lld)\n", path, (long long)step);
        ei_ckpt_free(&c);
        free(path);
    }
    ei_dataset_iter_opts io = {(uint64_t)cfg->train.seed, cfg->train.shuffle, B, rank, world};
    t.it = ei_dataset_iter_resume(t.train, &io, pos, have_rng ? &rng : NULL);
    if (!t.it) goto done;
    int64_t total = cfg->train.steps > 0 ? cfg->train.steps
                                         : (int64_t)cfg->train.epochs * ei_dataset_iter_batches_per_epoch(t.it);
    ei_lr_schedule sched = {cfg->train.lr, cfg->train.warmup_steps, total, cfg->train.min_lr_ratio,
                            cfg->train.schedule};
    if (root) {
        if (ei_mkdir_p(cfg->train.out_dir) != 0) goto done;
        char *mp = ei_path_join(cfg->train.out_dir, "metrics.jsonl");
        t.metrics = mp ? ei_metrics_open(mp, ro->resume ? step : -1) : NULL;
        free(mp);
        if (!t.metrics) goto done;
        fprintf(stderr,
                "ei train: %zu trainable gate parameters (%.4f%% of %zu), %lld train samples, "
                "global batch %lld on %d rank(s), steps %lld..%lld\n",
                t.gates->n, 100.0 * (double)t.gates->n / (double)t.model->n_params, t.model->n_params,
                (long long)ei_dataset_n_samples(t.train), (long long)B, world, (long long)step,
                (long long)total);
    }
    t.gmean = calloc((size_t)t.gates->n_layers, sizeof(double));
    t.gsd = calloc((size_t)t.gates->n_layers, sizeof(double));
    if (!t.gmean || !t.gsd) {
        ei_error_set("out of memory");
        goto done;
    }
    ei_progress prog;
    ei_progress_init(&prog, stderr, step, total);
    int64_t share = ei_dataset_rank_share(B, rank, world);
    int bad_run = 0;
    int64_t n_empty = 0, n_bad = 0, first_step = step;
    for (; step < total; step++) {
        double t0 = ei_time_now();
        ei_gates_zero_grad(t.gates);
        /* acc: nll sum, counted tokens, tokens read, local failure flag */
        double acc[4] = {0, 0, 0, 0};
        for (int64_t i = 0; i < share; i++) {
            int64_t idx = ei_dataset_iter_next(t.it, NULL), len, cnt;
            if (ei_sample_load(&t.buf, t.train, idx, cfg->data.max_tokens, &len, &cnt) != 0) {
                acc[3] = 1;
                break;
            }
            acc[2] += (double)len + 1;
            if (cnt == 0) continue;
            ei_doc_result r;
            if (ei_edge_doc_train(t.edge, t.buf.tokens, t.buf.targets, t.buf.pmask, len, (double)cnt, &r, NULL) !=
                0) {
                acc[3] = 1;
                break;
            }
            acc[0] += r.nll_sum;
            acc[1] += (double)r.count;
        }
        double fail = acc[3];
        ei_dist_allreduce_max_f64(&fail, 1);
        if (fail != 0) {
            if (acc[3] == 0) ei_error_set("step %lld failed on another rank", (long long)step + 1);
            goto done;
        }
        ei_dist_allreduce_sum_f32(t.gates->grad, t.gates->n);
        ei_dist_allreduce_sum_f64(acc, 3);
        double loss = acc[1] > 0 ? acc[0] / acc[1] : NAN;
        if (acc[1] > 0 && test_nan_step(step + 1)) loss = NAN;
        if (acc[1] > 0) {
            float inv = (float)(1.0 / acc[1]);
            for (size_t k = 0; k < t.gates->n; k++) t.gates->grad[k] *= inv;
        }
        double gnorm = ei_grad_global_norm(t.gates->grad, t.gates->n);
        double lr = ei_lr_at(&sched, step);
        ei_metrics_row row;
        memset(&row, 0, sizeof row);
        row.step = step + 1;
        row.loss = loss;
        row.lr = lr;
        row.grad_norm = gnorm;
        row.tokens = (int64_t)acc[2];
        row.val_exact = -1;
        /* No counted token in the whole batch: nothing to learn from, and nothing diverged either. */
        int empty = acc[1] == 0;
        int applied = empty ? 0
                            : ei_trainer_update(&t.adam, t.gates->data, t.gates->grad, t.gates->n, loss, gnorm, lr,
                                                cfg->train.clip_norm, &bad_run, cfg->train.max_bad_steps);
        if (applied == 0 && root && empty)
            fprintf(stderr, "%sei train: step %lld: no loss-masked token in the batch, step skipped\n",
                    prog.tty ? "\n" : "", (long long)step + 1);
        else if (applied == 0 && root)
            fprintf(stderr, "%sei train: step %lld: non-finite %s, step skipped (%d in a row)\n", prog.tty ? "\n" : "",
                    (long long)step + 1, !isfinite(loss) ? "loss" : "gradient", bad_run);
        if (applied < 0) {
            ei_error_prefix("step %lld: ", (long long)step + 1);
            goto done;
        }
        n_empty += empty;
        n_bad += applied == 0 && !empty;
        row.skipped = applied == 0;
        row.empty = empty;
        row.bad_steps = bad_run;
        double dt = ei_time_now() - t0;
        row.tokens_per_s = dt > 0 ? acc[2] / dt : 0;
        {
            char lab[64];
            snprintf(lab, sizeof lab, "step %lld, %.3f s", (long long)step + 1, dt);
            ag_profile_flush(lab);
        }
        gate_stats(t.gates, t.gmean, t.gsd);
        row.n_layers = t.gates->n_layers;
        row.gate_mean = t.gmean;
        row.gate_std = t.gsd;
        int last = step + 1 == total;
        if (t.val && ((cfg->train.eval_every > 0 && (step + 1) % cfg->train.eval_every == 0) || last)) {
            int64_t vc = 0;
            if (eval_loss(t.edge, t.val, cfg->train.eval_samples, cfg->data.max_tokens, &t.buf, &row.val_loss, &vc) != 0)
                goto done;
            row.has_val = 1;
            if (cfg->train.eval_generate &&
                eval_exact(t.edge, t.val, cfg->train.eval_samples, t.model->cfg.vocab_size, &t.buf, &row.val_exact) !=
                    0)
                goto done;
            if (root) {
                fprintf(stderr, "%sei train: step %lld: val loss %.4f over %lld tokens", prog.tty ? "\n" : "",
                        (long long)step + 1, row.val_loss, (long long)vc);
                if (row.val_exact >= 0) fprintf(stderr, ", exact match %.3f", row.val_exact);
                fputc('\n', stderr);
            }
        }
        if (root) {
            if (ei_metrics_write(t.metrics, &row) != 0) goto done;
            if (!ro->quiet) ei_progress_report(&prog, &row);
        }
        if ((cfg->train.checkpoint_every > 0 && (step + 1) % cfg->train.checkpoint_every == 0) || last) {
            if (save_checkpoint(&t, cfg, step + 1, msize) != 0) goto done;
        }
    }
    if (root && !ro->quiet) ei_progress_done(&prog);
    if (t.adam.t == 0 && step > first_step) {
        ei_error_set("%s: no optimizer step was applied in %lld steps (%lld had no loss-masked token: samples of "
                     "0-1 tokens or fully masked; %lld a non-finite loss or gradient); no gates written",
                     cfg->data.train, (long long)(step - first_step), (long long)n_empty, (long long)n_bad);
        goto done;
    }
    if (root) {
        char *gp = ei_path_join(cfg->train.out_dir, "gates.safetensors");
        int grc = gp ? ei_gates_save_opts(t.gates, &t.opts, gp) : -1;
        if (grc == 0) fprintf(stderr, "ei train: done, gates written to %s\n", gp);
        free(gp);
        if (grc != 0) goto done;
    }
    rc = 0;
done:
    trainer_free(&t);
    return rc;
}
