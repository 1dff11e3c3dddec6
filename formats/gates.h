/* The trainable parameters of EdgeInfinite: the memory gates of every layer, in ONE contiguous
 * float32 block with a gradient block of the same layout, so the optimizer is one loop over
 * `n` floats and MPI can all-reduce the gradient in one call.
 *
 * Layout, layer after layer (per_layer floats each):
 *   token gate: w_l [H, D] (row h is w_h; g[t,h] = sigmoid(x_t . w_h + b_h)), then b_l [H]
 *   head gate:  beta_l [H] (g[h] = sigmoid(beta_h))
 * Initialisation: w = 0, b (or beta) = gate_init_bias.
 *
 * Ownership: ei_gates_new allocates both blocks; ei_gates_free releases them. Graphs bind to the
 * blocks without copying, so the blocks must outlive every graph built on them. */
#ifndef EI_GATES_H
#define EI_GATES_H

#include "model/options.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    ei_gate_kind kind;
    int n_layers, n_heads, dim;
    size_t per_layer; /* floats per layer */
    size_t n;         /* total floats = n_layers * per_layer */
    float *data;      /* [n] */
    float *grad;      /* [n], accumulated by backward passes; zero with ei_gates_zero_grad */
} ei_gates;

ei_gates *ei_gates_new(const ei_model_config *cfg, ei_gate_kind kind, double init_bias);
void ei_gates_free(ei_gates *g);
void ei_gates_zero_grad(ei_gates *g);

/* Offsets into data/grad of layer l's pieces (w and b for token gates, beta for head gates). */
size_t ei_gates_w_offset(const ei_gates *g, int layer); /* token gate only */
size_t ei_gates_b_offset(const ei_gates *g, int layer); /* b (token) or beta (head) */

/* Gate file: safetensors with float32 tensors "model.layers.<l>.self_attn.memory_gate.weight" [H, D]
 * and "model.layers.<l>.self_attn.memory_gate.bias" [H] (token gate) or
 * "model.layers.<l>.self_attn.memory_gate.beta" [H] (head gate), and metadata {"format":
 * "edgeinfinite-gates", "n_layers": ..., "gate": "token"|"head"}. Written atomically. Loading checks
 * the kind, the layer count and every shape against g. */
int ei_gates_save(const ei_gates *g, const char *path);
int ei_gates_load(ei_gates *g, const char *path);
/* ei_gates_save plus every option of the table in model/options.h as a metadata string under its
 * config key (text of ei_opts_get_str, so floats read back to the bit), so inference reuses the
 * options the gates were trained with. o->gate must be g's kind. */
int ei_gates_save_opts(const ei_gates *g, const ei_opts *o, const char *path);
/* Reads the options stored in a gate file's metadata into o; options absent from the file leave o
 * unchanged. In a file of format "edgeinfinite-gates" every metadata key other than "format" and
 * "n_layers" must be an option: an unknown one (e.g. from a newer writer with an option this build
 * lacks) is an error naming it, rather than a silently different computation. Files of other
 * formats (hand-made, converted) have only their option keys read. -1 + ei_error on an unreadable
 * file, an unknown key or a bad value; o is then unchanged. */
int ei_gates_file_opts(const char *path, ei_opts *o);

/* edgeinfinite.json of a merged export (`ei export --merged DIR`), written with every option of the
 * table:
 *   {"format": "edgeinfinite", "format_version": 2, "base_model": ABSOLUTE PATH,
 *    "base_model_format": ..., "base_model_hash": "<16 hex digits>", "gates": "gates.safetensors",
 *    "trained_steps": N, "route_threshold_effective": T, "memory_eps": 1e-06,
 *    "options": {"segment": 128, ..., "gate": "token", ..., "positions": "compact"}}
 * Integer and float options are JSON numbers (floats printed to read back to the bit), enum options
 * their names. base_model is made absolute (realpath) so the folder may move while the base model
 * stays put; route_threshold_effective is the routing threshold resolved for that model
 * (informational; options.route_threshold is the option as trained). */
typedef struct {
    const char *base_model;        /* path of the base model as loaded (any form) */
    const char *base_model_format; /* e.g. "llama2c", "hf" */
    uint64_t base_model_hash;
    const char *gates;             /* gate file name inside the folder */
    int64_t trained_steps;
    int route_threshold_effective;
} ei_merged_info;

int ei_merged_json_write(const char *path, const ei_opts *o, const ei_merged_info *info);
/* Reads the options of an edgeinfinite.json into o (options absent from the file leave o unchanged;
 * an unknown option key, a value of the wrong type or out of range is an error naming the key; o is
 * then unchanged). When base_model is given it receives the base model path (malloc'd; a relative
 * path, as in a hand-edited file, is resolved against the folder of path). */
int ei_opts_from_json_file(const char *path, ei_opts *o, char **base_model);

#endif
