/* Fused causal GQA attention kernels (see kernels.h); the body is attention_impl.inc, compiled
 * once per float type. */
#include "kernels/kernels.h"

#include <math.h>
#include <stddef.h>

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

#define REAL float
#define SFX(name) name##_f32
#define EXPR expf
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
