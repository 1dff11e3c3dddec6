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

/* Key tiles: EI_ATTN_BK rows at a time inside each part, so that a tile never spans two parts. */
static inline int attn_nparts(const ei_k_attn *p) { return p->n_parts > 1 ? p->n_parts : 1; }
static inline int64_t attn_part_len(const ei_k_attn *p, int i) { return p->n_parts > 1 ? p->part_len[i] : p->tk; }

static int64_t attn_ntiles(const ei_k_attn *p) {
    int64_t n = 0;
    for (int i = 0; i < attn_nparts(p); i++) n += (attn_part_len(p, i) + EI_ATTN_BK - 1) / EI_ATTN_BK;
    return n;
}

typedef struct {
    int part;
    int64_t j0, nk, off; /* first key (over all parts), rows, first row inside the part */
} attn_tile;

/* Tile b (0 <= b < attn_ntiles). */
static attn_tile attn_tile_at(const ei_k_attn *p, int64_t b) {
    attn_tile t = {0, 0, 0, 0};
    int64_t j = 0;
    for (int i = 0; i < attn_nparts(p); i++) {
        const int64_t len = attn_part_len(p, i), nt = (len + EI_ATTN_BK - 1) / EI_ATTN_BK;
        if (b < nt) {
            t.part = i;
            t.off = b * EI_ATTN_BK;
            t.j0 = j + t.off;
            t.nk = len - t.off < EI_ATTN_BK ? len - t.off : EI_ATTN_BK;
            return t;
        }
        b -= nt;
        j += len;
    }
    return t;
}

/* Workspace of the one-pass backward: delta [h, tq] and one dQ share [tq, h, d] per key tile. */
int64_t ei_k_attention_ws_len(const ei_k_attn *p) { return p->h * p->tq + attn_ntiles(p) * p->tq * p->h * p->d; }

/* Stored probabilities: [h, tq, tk] values, then the maximum they are relative to per row and key
 * tile, [h, tq, tiles]. */
int64_t ei_k_attention_p_len(const ei_k_attn *p) { return p->h * p->tq * (p->tk + attn_ntiles(p)); }

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
