#include "model/config.h"

#include "core/ei_error.h"

#include <math.h>

/* Limits far above any model this tool targets, low enough that products cannot overflow. */
#define EI_MAX_DIM (1 << 16)
#define EI_MAX_HIDDEN (1 << 18)
#define EI_MAX_LAYERS 1024
#define EI_MAX_HEADS 1024
#define EI_MAX_HEAD_DIM 512
#define EI_MAX_VOCAB (1 << 22)
#define EI_MAX_CTX (1 << 24)

int ei_model_config_validate(const ei_model_config *c, const char *what) {
#define CHECK_RANGE(field, lo, hi)                                                                             \
    if (c->field < (lo) || c->field > (hi))                                                                     \
        return ei_error_set("%s: %s = %d is out of range [%d, %d]", what, #field, c->field, (int)(lo), (int)(hi));
    CHECK_RANGE(dim, 1, EI_MAX_DIM)
    CHECK_RANGE(hidden_dim, 1, EI_MAX_HIDDEN)
    CHECK_RANGE(n_layers, 1, EI_MAX_LAYERS)
    CHECK_RANGE(n_heads, 1, EI_MAX_HEADS)
    CHECK_RANGE(n_kv_heads, 1, EI_MAX_HEADS)
    CHECK_RANGE(head_dim, 2, EI_MAX_HEAD_DIM)
    CHECK_RANGE(vocab_size, 1, EI_MAX_VOCAB)
    CHECK_RANGE(max_seq_len, 1, EI_MAX_CTX)
#undef CHECK_RANGE
    if (c->n_heads % c->n_kv_heads != 0)
        return ei_error_set("%s: n_heads (%d) is not a multiple of n_kv_heads (%d)", what, c->n_heads, c->n_kv_heads);
    if (c->head_dim % 2 != 0) return ei_error_set("%s: head_dim (%d) must be even for RoPE", what, c->head_dim);
    if (!(c->rope_theta > 0.0f) || !isfinite(c->rope_theta))
        return ei_error_set("%s: rope_theta must be a positive number", what);
    if (!(c->norm_eps > 0.0f) || !(c->norm_eps < 1.0f))
        return ei_error_set("%s: rms_norm_eps must be in (0, 1)", what);
    if (c->bos_id >= c->vocab_size || c->eos_id >= c->vocab_size)
        return ei_error_set("%s: bos/eos id (%d/%d) outside the vocabulary of %d", what, c->bos_id, c->eos_id,
                            c->vocab_size);
    return 0;
}

size_t ei_model_config_n_params(const ei_model_config *c) {
    size_t D = (size_t)c->dim, F = (size_t)c->hidden_dim, qd = (size_t)c->n_heads * c->head_dim,
           kvd = (size_t)c->n_kv_heads * c->head_dim, V = (size_t)c->vocab_size;
    size_t layer = 2 * D + qd * D + 2 * kvd * D + D * qd + 3 * F * D;
    if (c->qkv_bias) layer += qd + 2 * kvd;
    return V * D + (size_t)c->n_layers * layer + D + (c->tie_embeddings ? 0 : V * D);
}
