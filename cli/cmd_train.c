/* `ei train`: segmented SFT of the EdgeInfinite memory gates (train/trainer.h). Runs single-process
 * or under `mpirun -np P` (data parallel). */
#include "cli/commands.h"
#include "core/ei_args.h"
#include "core/ei_error.h"
#include "core/ei_io.h"
#include "train/checkpoint.h"
#include "train/dist.h"
#include "formats/gates.h"
#include "train/trainer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *DESC =
    "Trains the memory gates of an EdgeInfinite model by segmented supervised fine-tuning (S-SFT):\n"
    "every sample is run segment by segment with full backpropagation through time; only the gate\n"
    "parameters change. Configs are YAML (configs/train/*.yaml; every key: docs/config.md); later\n"
    "files and --set override earlier ones.\n\n"
    "  ei train --config configs/train/stories_lm.yaml --set train.steps=50\n"
    "  ei train --resume runs/stories_lm                 # continue the newest checkpoint\n"
    "  mpirun -np 2 ei train --config ...                 # data parallel over MPI\n\n"
    "Writes to train.out_dir (with --resume DIR: to DIR): metrics.jsonl, ckpt-<step>.h5, gates.safetensors.";

/* With --resume and no --config, the config stored in the newest checkpoint is used. It is written
 * to a temporary file so --set overrides go through the same schema checks as a config file.
 * *ckpt receives the checkpoint's path, which the trainer then resumes (not looked up again, so a
 * skipped corrupt checkpoint is reported once). */
static char *config_from_checkpoint(const char *dir, char **ckpt) {
    char *path = ei_ckpt_latest(dir, 0);
    if (!path) return NULL;
    ei_checkpoint c;
    int rc = ei_ckpt_read(path, 0, &c);
    if (rc != 0) {
        free(path);
        return NULL;
    }
    *ckpt = path;
    char tmpl[] = "/tmp/ei-train-config-XXXXXX";
    int fd = mkstemp(tmpl);
    if (fd < 0) {
        ei_ckpt_free(&c);
        ei_error_set("cannot create a temporary file for the checkpoint's config");
        return NULL;
    }
    size_t n = strlen(c.config_yaml);
    ssize_t w = write(fd, c.config_yaml, n);
    close(fd);
    ei_ckpt_free(&c);
    if (w != (ssize_t)n) {
        unlink(tmpl);
        ei_error_set("cannot write a temporary file for the checkpoint's config");
        return NULL;
    }
    return strdup(tmpl);
}

int ei_cmd_train(int argc, char **argv) {
    ei_arg_list configs = {0}, sets = {0};
    const char *resume = NULL;
    int quiet = 0, print_config = 0, schema = 0, allow_tok = 0;
    ei_arg opts[] = {
        {"config", EI_ARG_LIST, &configs, "FILE", "training config (YAML); may repeat"},
        {"set", EI_ARG_LIST, &sets, "KEY=VALUE", "override a config key, e.g. train.lr=1e-3; may repeat"},
        {"resume", EI_ARG_STR, &resume, "DIR", "continue from the newest valid checkpoint in DIR"},
        {"print-config", EI_ARG_FLAG, &print_config, NULL, "print the resolved config and exit"},
        {"schema", EI_ARG_FLAG, &schema, NULL, "list every config key with its type and default"},
        {"quiet", EI_ARG_FLAG, &quiet, NULL, "no progress line"},
        {"allow-tokenizer-mismatch", EI_ARG_FLAG, &allow_tok, NULL,
         "train on datasets tokenised with another tokenizer than the model's (warning instead of an error)"},
        {0}};
    int npos = 0;
    char **pos = NULL;
    int rc = ei_args_parse(argc, argv, "ei train", DESC, opts, &pos, &npos);
    if (rc != 0) {
        free(configs.items);
        free(sets.items);
        return rc < 0 ? 2 : 0;
    }
    if (npos > 0) {
        fprintf(stderr, "ei train: error: unexpected argument '%s' (config files go after --config)\n", pos[0]);
        free(pos);
        free(configs.items);
        free(sets.items);
        return 2;
    }
    free(pos);
    if (schema) {
        ei_train_config_print_schema(stdout);
        free(configs.items);
        free(sets.items);
        return 0;
    }
    int code = 1;
    char *tmpcfg = NULL, *ckpt = NULL;
    ei_dist_init(&argc, &argv);
    if (configs.n == 0 && !resume) {
        fprintf(stderr, "ei train: error: give --config FILE (or --resume DIR); see --help\n");
        code = 2;
        goto out;
    }
    const char *const *files = configs.items;
    int nfiles = configs.n;
    if (configs.n == 0) {
        tmpcfg = config_from_checkpoint(resume, &ckpt);
        if (!tmpcfg) {
            ei_error_prefix("--resume %s: ", resume);
            ei_error_print("train");
            goto out;
        }
        files = (const char *const *)&tmpcfg;
        nfiles = 1;
    }
    ei_train_config cfg;
    const int loaded = ei_train_config_load(&cfg, files, nfiles, sets.items, sets.n);
    /* read once: removed now, so a run that is killed (or aborts under MPI) leaves no file behind */
    if (tmpcfg) {
        unlink(tmpcfg);
        free(tmpcfg);
        tmpcfg = NULL;
    }
    if (loaded != 0) {
        ei_error_print("train");
        code = 2;
        goto out;
    }
    /* A resumed run continues in the folder it resumes: the config's out_dir (stored in the
     * checkpoint) may be the folder this one was copied from, which must not be written or pruned. */
    struct stat so, sr;
    int same_dir = stat(cfg.train.out_dir, &so) == 0 && stat(resume ? resume : ".", &sr) == 0 &&
                   so.st_dev == sr.st_dev && so.st_ino == sr.st_ino;
    if (resume && strcmp(cfg.train.out_dir, resume) != 0) {
        char *d = strdup(resume);
        if (!d) {
            ei_train_config_free(&cfg);
            fprintf(stderr, "ei train: error: out of memory\n");
            goto out;
        }
        if (ei_dist_is_root() && !print_config && !same_dir)
            fprintf(stderr, "ei train: --resume %s: writing there (not to the config's train.out_dir %s)\n", resume,
                    cfg.train.out_dir);
        free(cfg.train.out_dir);
        cfg.train.out_dir = d;
    }
    if (print_config) {
        char *t = ei_train_config_dump(&cfg);
        if (t && ei_dist_is_root()) fputs(t, stdout);
        free(t);
        ei_train_config_free(&cfg);
        code = 0;
        goto out;
    }
    ei_trainer_opts to = {resume != NULL, resume, ckpt, quiet, allow_tok};
    if (ei_trainer_run(&cfg, &to) != 0) {
        ei_error_print("train");
        ei_train_config_free(&cfg);
        if (ei_dist_size() > 1) ei_dist_abort(1);
        goto out;
    }
    ei_train_config_free(&cfg);
    code = 0;
out:
    if (tmpcfg) unlink(tmpcfg);
    free(tmpcfg);
    free(ckpt);
    free(configs.items);
    free(sets.items);
    ei_dist_finalize();
    return code;
}
