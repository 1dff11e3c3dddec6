/* Fused causal GQA attention kernels (see kernels.h); the body is attention_impl.inc, compiled
 * once per float type. */
#include "kernels/kernels.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

/* One past the last key query i may see under the causal rule. */
static inline int64_t attn_key_end(const ei_k_attn *p, int64_t i) {
    if (p->causal_offset >= p->tk) return p->tk;
    int64_t e = p->causal_offset + i + 1;
    return e < 0 ? 0 : (e > p->tk ? p->tk : e);
}

/* First query that may see key j. */
static inline int64_t attn_query_begin(const ei_k_attn *p, int64_t j) {
    if (p->causal_offset >= p->tk) return 0;
    int64_t b = j - p->causal_offset;
    return b < 0 ? 0 : b;
}

static inline int attn_key_valid(const ei_k_attn *p, int64_t j) {
    if (p->valid_u8) return p->valid_u8[j] != 0;
    if (p->valid_i32) return p->valid_i32[j] != 0;
    return 1;
}

/* Key rows per tile (BK of attention_impl.inc). 256 rather than 128: half the tile products and
 * their per-call overhead for a segment plus its caches (388 keys here), measured 7% faster
 * training; the score tiles live on the stack (64 x 256 values, two of them in the backward:
 * 128 KiB in float, 256 KiB in double), well inside a thread's stack. */
#define EI_ATTN_BK 256

/* Workspace of the one-pass backward: delta [h, tq] and one dQ share [tq, h, d] per key tile. */
int64_t ei_k_attention_ws_len(const ei_k_attn *p) {
    return p->h * p->tq + (p->tk + EI_ATTN_BK - 1) / EI_ATTN_BK * p->tq * p->h * p->d;
}

/* Stored probabilities: [h, tq, tk] values, then the maximum they are relative to per row and key
 * tile, [h, tq, ceil(tk / BK)]. */
int64_t ei_k_attention_p_len(const ei_k_attn *p) {
    return p->h * p->tq * (p->tk + (p->tk + EI_ATTN_BK - 1) / EI_ATTN_BK);
}

#define REAL float
#define SFX(name) name##_f32
#define EXPR ei_k_exp_nonpos_f32
#define LOGR logf
#include "kernels/attention_impl.inc"
#undef REAL
#undef SFX
#undef EXPR
#undef LOGR

#define REAL double
#define SFX(name) name##_f64
#define EXPR exp
#define LOGR log
#include "kernels/attention_impl.inc"
#undef REAL
#undef SFX
#undef EXPR
#undef LOGR
