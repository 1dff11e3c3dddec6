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

/* Gate file: safetensors with float32 tensors "model.layers.<l>.self_attn.memory_gate.weight" [H, D] and
 * "model.layers.<l>.self_attn.memory_gate.bias" [H] (token gate) or "model.layers.<l>.self_attn.memory_gate.beta" [H] (head gate), and
 * metadata {"format": "edgeinfinite-gates", "gate": "token"|"head", "n_layers": ...}. Written
 * atomically. Loading checks the kind, the layer count and every shape against g. */
int ei_gates_save(const ei_gates *g, const char *path);
int ei_gates_load(ei_gates *g, const char *path);
/* ei_gates_save plus the options the gates were trained with, as metadata strings under their
 * config keys ("segment", "sink", "window", "memory_rule", "gate_init_bias", "route_threshold",
 * "bptt_segments"), so inference can reuse them. */
int ei_gates_save_opts(const ei_gates *g, const ei_opts *o, const char *path);
/* Reads the options stored by ei_gates_save_opts (and the gate kind) from a gate file into o;
 * keys absent from the file leave o unchanged. -1 + ei_error on an unreadable file or a bad value. */
int ei_gates_file_opts(const char *path, ei_opts *o);

#endif
