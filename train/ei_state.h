/* EdgeInfinite recurrent state: per layer and KV head the memory M [d, d], the normaliser z [d], the
 * sink cache (K, V of the first S tokens) and the window cache (K, V of the W most recent tokens
 * before the current segment, right-aligned: the newest is slot W-1), plus the number of tokens
 * seen. Caches hold pre-RoPE K.
 *
 * One contiguous block in the graph's dtype (float32 in production; float64 for the gradient-check
 * twin), so a segment's input state is saved for BPTT with one memcpy. Per layer:
 *   sink_k [S, Hkv, d] | sink_v [S, Hkv, d] | win_k [W, Hkv, d] | win_v [W, Hkv, d] |
 *   M [Hkv, d, d] | z [Hkv, d]
 * Fill levels depend only on the number of tokens seen, never on the data (ei_seg_plan), so the
 * graph of a segment has fixed shapes per plan. Unfilled slots are zero and masked in attention.
 *
 * Ownership: ei_state_new allocates the block; ei_state_free releases it. */
#ifndef EI_STATE_H
#define EI_STATE_H

#include "autograd/autograd.h"
#include "model/options.h"
#include "model/segment.h"

#include <stddef.h>
#include <stdint.h>

typedef enum {
    EI_SC_SINK_K = 0,
    EI_SC_SINK_V,
    EI_SC_WIN_K,
    EI_SC_WIN_V,
    EI_SC_MEM_M,
    EI_SC_MEM_Z,
    EI_SC_COUNT
} ei_state_comp;

typedef struct {
    int n_layers, n_kv_heads, head_dim, sink, window;
    ag_dtype dtype;        /* AG_F32 or AG_F64 */
    size_t elem;           /* bytes per element */
    size_t comp_off[EI_SC_COUNT], comp_len[EI_SC_COUNT]; /* in elements, within one layer */
    size_t per_layer;      /* elements per layer */
    size_t n;              /* elements in the block */
    void *data;            /* [n] */
    int64_t n_seen;        /* tokens of the document processed so far */
} ei_state;

ei_state *ei_state_new(const ei_model_config *cfg, const ei_opts *o, ag_dtype dtype);
void ei_state_free(ei_state *s);
/* Zero state at the start of a document. */
void ei_state_reset(ei_state *s);
size_t ei_state_bytes(const ei_state *s);
/* Pointer to component c of layer l (elements in the state's dtype). */
void *ei_state_ptr(const ei_state *s, void *block, int layer, ei_state_comp c);


#endif
