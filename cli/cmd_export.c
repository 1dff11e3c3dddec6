/* `ei export`: a training checkpoint to gates.safetensors (the trained memory gates, loadable by
 * `ei eval/generate --gates` and by Python's safetensors/numpy), or with --merged to a folder that
 * describes the whole EdgeInfinite model: the base model's config.json, gates.safetensors and
 * edgeinfinite.json (every option of model/options.h, base-model identity; ei_merged_json_write). */
#include "cli/commands.h"
#include "core/ei_args.h"
#include "core/ei_error.h"
#include "core/ei_io.h"
#include "train/checkpoint.h"
#include "formats/gates.h"
#include "formats/model.h"
#include "train/train_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *DESC =
    "Exports the gate parameters of a training checkpoint.\n\n"
    "  ei export runs/stories_lm -o gates.safetensors        # newest checkpoint in a folder\n"
    "  ei export runs/stories_lm/ckpt-200.h5 --merged out/   # config.json + gates + edgeinfinite.json\n\n"
    "Tensor names: model.layers.{i}.self_attn.memory_gate.weight [H, D] and .bias [H] (token gate) or\n"
    ".beta [H] (head gate), float32; the metadata holds every EdgeInfinite option.\n"
    "edgeinfinite.json (--merged) holds the options and the base model's absolute path and identity.";

static int write_text(const char *path, const char *text) {
    ei_atomic_file f;
    if (ei_atomic_open(&f, path) != 0) return -1;
    fputs(text, f.fp);
    return ei_atomic_commit(&f);
}

/* config.json of the base model in Hugging Face form (copied from an HF folder, derived from the
 * header for a llama2.c file). */
static int write_base_config(const ei_model *m, const char *path) {
    if (ei_path_is_dir(m->path)) {
        char *src = ei_path_join(m->path, "config.json");
        char *buf = NULL;
        size_t len = 0;
        int rc = src ? ei_file_read_all(src, &buf, &len) : -1;
        free(src);
        if (rc == 0) rc = write_text(path, buf);
        free(buf);
        return rc;
    }
    const ei_model_config *c = &m->cfg;
    char text[1024];
    snprintf(text, sizeof text,
             "{\n  \"architectures\": [\"LlamaForCausalLM\"],\n  \"model_type\": \"llama\",\n"
             "  \"hidden_size\": %d,\n  \"intermediate_size\": %d,\n  \"num_hidden_layers\": %d,\n"
             "  \"num_attention_heads\": %d,\n  \"num_key_value_heads\": %d,\n  \"head_dim\": %d,\n"
             "  \"vocab_size\": %d,\n  \"max_position_embeddings\": %d,\n  \"rms_norm_eps\": %g,\n"
             "  \"rope_theta\": %g,\n  \"tie_word_embeddings\": %s,\n  \"bos_token_id\": %d,\n"
             "  \"eos_token_id\": %d,\n  \"hidden_act\": \"silu\",\n  \"torch_dtype\": \"float32\"\n}\n",
             c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim, c->vocab_size,
             c->max_seq_len, (double)c->norm_eps, (double)c->rope_theta, c->tie_embeddings ? "true" : "false",
             c->bos_id, c->eos_id);
    return write_text(path, text);
}

int ei_cmd_export(int argc, char **argv) {
    const char *out = NULL, *merged = NULL;
    ei_arg opts[] = {{"o", EI_ARG_STR, &out, "FILE", "gates file to write (gates.safetensors)"},
                     {"output", EI_ARG_STR, &out, "FILE", "same as -o"},
                     {"merged", EI_ARG_STR, &merged, "DIR", "write a folder: config.json, gates.safetensors, edgeinfinite.json"},
                     {0}};
    char **pos = NULL;
    int npos = 0;
    int rc = ei_args_parse(argc, argv, "ei export CHECKPOINT|DIR (-o FILE | --merged DIR)", DESC, opts, &pos, &npos);
    if (rc != 0) return rc < 0 ? 2 : 0;
    if (npos != 1 || (!out && !merged)) {
        fprintf(stderr, "ei export: error: give one checkpoint file or folder and -o FILE or --merged DIR\n");
        free(pos);
        return 2;
    }
    const char *src = pos[0];
    free(pos);
    char *ckpath = ei_path_is_dir(src) ? ei_ckpt_latest(src, 0) : strdup(src);
    ei_checkpoint c;
    ei_train_config cfg;
    ei_model *m = NULL;
    ei_gates *g = NULL;
    char *gpath = NULL;
    int code = 1, have_c = 0, have_cfg = 0;
    if (!ckpath) goto fail;
    if (ei_ckpt_read(ckpath, 0, &c) != 0) goto fail;
    have_c = 1;
    if (ei_train_config_from_text(&cfg, c.config_yaml, ckpath) != 0) goto fail;
    have_cfg = 1;
    m = ei_model_load(cfg.model.path);
    if (!m) {
        ei_error_prefix("%s: base model of the checkpoint: ", ckpath);
        goto fail;
    }
    if (m->identity != c.model_hash) {
        ei_error_set("%s: the base model at %s is not the one the checkpoint was trained on (hash differs)", ckpath,
                     cfg.model.path);
        goto fail;
    }
    ei_opts o;
    ei_train_config_opts(&cfg, &o);
    g = ei_gates_new(&m->cfg, o.gate, o.gate_init_bias);
    if (!g) goto fail;
    if (g->n != c.n_params) {
        ei_error_set("%s: %zu parameters, but the gates of this model and config have %zu", ckpath, c.n_params, g->n);
        goto fail;
    }
    memcpy(g->data, c.params, g->n * sizeof(float));
    if (merged) {
        if (ei_mkdir_p(merged) != 0) goto fail;
        gpath = ei_path_join(merged, "gates.safetensors");
    } else {
        gpath = strdup(out);
    }
    if (!gpath) goto fail;
    {
        /* `ei export c.h5 -o c.h5` must not replace the checkpoint, nor --merged the model's files. */
        const char *in[] = {ckpath, cfg.model.path, m->path};
        const char *names[] = {"config.json", "edgeinfinite.json"};
        if (ei_check_not_input(gpath, in, 3) != 0) goto fail;
        for (int k = 0; merged && k < 2; k++) {
            char *p = ei_path_join(merged, names[k]);
            int r = p ? ei_check_not_input(p, in, 3) : -1;
            free(p);
            if (r != 0) goto fail;
        }
    }
    if (ei_gates_save_opts(g, &o, gpath) != 0) goto fail;
    if (merged) {
        char *cp = ei_path_join(merged, "config.json");
        int r = cp ? write_base_config(m, cp) : -1;
        free(cp);
        if (r != 0) goto fail;
        ei_merged_info info = {m->path, m->format, m->identity, "gates.safetensors", c.step,
                               ei_opts_route_threshold(&o, &m->cfg)};
        char *jp = ei_path_join(merged, "edgeinfinite.json");
        r = jp ? ei_merged_json_write(jp, &o, &info) : -1;
        free(jp);
        if (r != 0) goto fail;
    }
    printf("ei export: %s (step %lld, %zu gate parameters) -> %s\n", ckpath, (long long)c.step, g->n,
           merged ? merged : gpath);
    code = 0;
    goto done;
fail:
    ei_error_print("export");
done:
    free(gpath);
    ei_gates_free(g);
    ei_model_free(m);
    if (have_cfg) ei_train_config_free(&cfg);
    if (have_c) ei_ckpt_free(&c);
    free(ckpath);
    return code;
}
