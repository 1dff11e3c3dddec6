/* NNAPI rules of the conformance library (fake_nnapi.h): operand types at addOperand, and per
 * operation code the operand counts, types, feature levels, quantisation rules (per-tensor
 * FULLY_CONNECTED weights, int32 biases with scale input x weight and zero point 0, fixed SOFTMAX /
 * LOGISTIC output scales, the level-1 output-scale constraints), ranks (at most 4) and shapes, as
 * the NNAPI operation reference states them. Only the operations edgeinfinite's lowering emits
 * are implemented; any other code is BAD_DATA here (a limit of this library, said in the reason). */
#include "tests/nnapi/fake_nnapi.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ---------------------------------------------------------------- operand types */
static int type_level(int32_t t) {
    switch (t) {
    case ANEURALNETWORKS_FLOAT32:
    case ANEURALNETWORKS_INT32:
    case ANEURALNETWORKS_UINT32:
    case ANEURALNETWORKS_TENSOR_FLOAT32:
    case ANEURALNETWORKS_TENSOR_INT32:
    case ANEURALNETWORKS_TENSOR_QUANT8_ASYMM: return 1;
    case ANEURALNETWORKS_TENSOR_QUANT8_ASYMM_SIGNED:
    case ANEURALNETWORKS_MODEL: return 4;
    default: return 3;
    }
}

static const char *tname(int32_t t) {
    static const char *const n[] = {"FLOAT32", "INT32", "UINT32", "TENSOR_FLOAT32", "TENSOR_INT32",
                                    "TENSOR_QUANT8_ASYMM", "BOOL", "TENSOR_QUANT16_SYMM", "TENSOR_FLOAT16",
                                    "TENSOR_BOOL8", "FLOAT16", "TENSOR_QUANT8_SYMM_PER_CHANNEL",
                                    "TENSOR_QUANT16_ASYMM", "TENSOR_QUANT8_SYMM", "TENSOR_QUANT8_ASYMM_SIGNED", "MODEL"};
    return t >= 0 && t <= 15 ? n[t] : "?";
}

int fk_check_operand_type(const ANeuralNetworksOperandType *t) {
    int fl = fk_fl();
    if (t->type < 0 || t->type > ANEURALNETWORKS_TENSOR_QUANT8_ASYMM_SIGNED) {
        if (t->type == ANEURALNETWORKS_MODEL)
            return fk_err(ANEURALNETWORKS_BAD_DATA, "operand type MODEL (control flow) is not implemented by this library");
        return fk_err(ANEURALNETWORKS_BAD_DATA, "unknown operand type code %d", (int)t->type);
    }
    if (type_level(t->type) > fl)
        return fk_err(ANEURALNETWORKS_BAD_DATA, "operand type %s needs feature level %d; this runtime has %d",
                      tname(t->type), type_level(t->type), fl);
    int tensor = fk_is_tensor(t->type);
    if (!tensor && (t->dimensionCount || t->dimensions))
        return fk_err(ANEURALNETWORKS_BAD_DATA, "scalar operand %s with %u dimensions", tname(t->type), t->dimensionCount);
    if (tensor && t->dimensionCount && !t->dimensions)
        return fk_err(ANEURALNETWORKS_BAD_DATA, "%s with %u dimensions and no dimension array", tname(t->type),
                      t->dimensionCount);
    if (tensor && !t->dimensionCount && fl < 3)
        return fk_err(ANEURALNETWORKS_BAD_DATA, "tensor of unknown rank needs feature level 3");
    if (t->dimensionCount > FK_MAX_RANK)
        return fk_err(ANEURALNETWORKS_BAD_DATA, "%u dimensions (this library keeps at most %d)", t->dimensionCount,
                      FK_MAX_RANK);
    float s = t->scale;
    int32_t z = t->zeroPoint;
    switch (t->type) {
    case ANEURALNETWORKS_TENSOR_QUANT8_ASYMM:
        if (!(s > 0) || !isfinite(s) || z < 0 || z > 255)
            return fk_err(ANEURALNETWORKS_BAD_DATA, "TENSOR_QUANT8_ASYMM needs scale > 0 and zero point in [0, 255] (%g, %d)",
                          (double)s, (int)z);
        return 0;
    case ANEURALNETWORKS_TENSOR_QUANT8_ASYMM_SIGNED:
        if (!(s > 0) || !isfinite(s) || z < -128 || z > 127)
            return fk_err(ANEURALNETWORKS_BAD_DATA,
                          "TENSOR_QUANT8_ASYMM_SIGNED needs scale > 0 and zero point in [-128, 127] (%g, %d)", (double)s, (int)z);
        return 0;
    case ANEURALNETWORKS_TENSOR_QUANT8_SYMM:
    case ANEURALNETWORKS_TENSOR_QUANT16_SYMM:
        if (!(s > 0) || !isfinite(s) || z != 0)
            return fk_err(ANEURALNETWORKS_BAD_DATA, "%s needs scale > 0 and zero point 0 (%g, %d)", tname(t->type),
                          (double)s, (int)z);
        return 0;
    case ANEURALNETWORKS_TENSOR_QUANT16_ASYMM:
        if (!(s > 0) || !isfinite(s) || z < 0 || z > 65535)
            return fk_err(ANEURALNETWORKS_BAD_DATA, "TENSOR_QUANT16_ASYMM needs scale > 0 and zero point in [0, 65535]");
        return 0;
    case ANEURALNETWORKS_TENSOR_INT32:
        if (s < 0 || !isfinite(s) || z != 0)
            return fk_err(ANEURALNETWORKS_BAD_DATA, "TENSOR_INT32 needs scale >= 0 and zero point 0 (%g, %d)", (double)s,
                          (int)z);
        return 0;
    default: /* float, boolean and per-channel types carry no scale or zero point of their own */
        if (s != 0 || z != 0)
            return fk_err(ANEURALNETWORKS_BAD_DATA, "%s must have scale 0 and zero point 0 (%g, %d)", tname(t->type),
                          (double)s, (int)z);
        return 0;
    }
}

/* ---------------------------------------------------------------- operation context */
typedef struct {
    struct ANeuralNetworksModel *m;
    const fk_op *op;
    uint32_t idx;
    int final, fl;
} vc;

#define IN(k) (&v->m->opnd[v->op->in[k]])
#define OUT(k) (&v->m->opnd[v->op->out[k]])

static int bad(const vc *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int bad(const vc *v, const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return fk_err(ANEURALNETWORKS_BAD_DATA, "operation %u (%s): %s", v->idx, fk_op_name(v->op->code), msg);
}

static int level(const vc *v, int lv, const char *what) {
    if (v->fl >= lv) return 0;
    return bad(v, "%s needs feature level %d; this runtime has %d", what, lv, v->fl);
}

static int counts(const vc *v, uint32_t lo, uint32_t hi, uint32_t nout) {
    if (v->op->nin < lo || v->op->nin > hi) {
        if (lo == hi) return bad(v, "takes %u inputs, got %u", lo, v->op->nin);
        return bad(v, "takes %u..%u inputs, got %u", lo, hi, v->op->nin);
    }
    if (v->op->nout != nout) return bad(v, "has %u outputs, got %u", nout, v->op->nout);
    return 0;
}

static int known(const fk_operand *o) {
    if (!fk_is_tensor(o->type)) return 1;
    if (!o->rank_known) return 0;
    for (uint32_t i = 0; i < o->rank; i++)
        if (!o->dims[i]) return 0;
    return 1;
}

static int want_type(const vc *v, const fk_operand *o, int32_t t, const char *role) {
    if (o->type == t) return 0;
    return bad(v, "%s is %s, expected %s", role, tname(o->type), tname(t));
}

/* A scalar INT32 / FLOAT32 / BOOL parameter: its value when it is a constant; at finish it must be. */
static int param(const vc *v, uint32_t k, int32_t type, double *val, int *have) {
    const fk_operand *o = IN(k);
    char role[32];
    snprintf(role, sizeof role, "input %u", k);
    if (want_type(v, o, type, role)) return ANEURALNETWORKS_BAD_DATA;
    *have = o->lifetime == FK_CONST && o->value && !o->omitted;
    if (!*have) return v->final ? bad(v, "input %u (a parameter) must be a constant", k) : 0;
    const uint8_t *p = o->value;
    if (type == ANEURALNETWORKS_INT32) {
        int32_t i;
        memcpy(&i, p, 4);
        *val = i;
    } else if (type == ANEURALNETWORKS_FLOAT32) {
        float f;
        memcpy(&f, p, 4);
        *val = f;
    } else if (type == ANEURALNETWORKS_FLOAT16) {
        uint16_t h;
        memcpy(&h, p, 2);
        *val = fk_half_to_float(h);
    } else {
        *val = p[0] != 0;
    }
    return 0;
}

/* A constant 1-D TENSOR_INT32 parameter (axes, shapes, permutations, slice bounds). */
static int ivec(const vc *v, uint32_t k, int32_t *out, uint32_t *n, int *have) {
    const fk_operand *o = IN(k);
    char role[32];
    snprintf(role, sizeof role, "input %u", k);
    if (want_type(v, o, ANEURALNETWORKS_TENSOR_INT32, role)) return ANEURALNETWORKS_BAD_DATA;
    if (o->rank_known && o->rank != 1) return bad(v, "input %u must be 1-D, has rank %u", k, o->rank);
    *have = o->lifetime == FK_CONST && o->value && !o->omitted && known(o);
    if (!*have) return v->final ? bad(v, "input %u must be a constant", k) : 0;
    if (o->dims[0] > 16) return bad(v, "input %u has %u values, expected at most 16", k, o->dims[0]);
    *n = o->dims[0];
    memcpy(out, o->value, 4ull * *n);
    return 0;
}

/* Declared output extents must equal what the operation produces; unknown ones are filled in. */
static int set_out(const vc *v, uint32_t k, uint32_t rank, const uint32_t *dims) {
    fk_operand *o = OUT(k);
    if (o->rank_known) {
        if (o->rank != rank) return bad(v, "output %u has rank %u, the operation gives %u", k, o->rank, rank);
        for (uint32_t i = 0; i < rank; i++)
            if (o->dims[i] && o->dims[i] != dims[i])
                return bad(v, "output %u extent %u is %u, the operation gives %u", k, i, o->dims[i], dims[i]);
    }
    if (v->final) {
        o->rank = rank, o->rank_known = 1;
        memcpy(o->dims, dims, 4ull * rank);
    }
    return 0;
}

static int same_q(const fk_operand *a, const fk_operand *b) { return a->scale == b->scale && a->zp == b->zp; }

static int is_q8(int32_t t) {
    return t == ANEURALNETWORKS_TENSOR_QUANT8_ASYMM || t == ANEURALNETWORKS_TENSOR_QUANT8_ASYMM_SIGNED;
}

/* Level of a data type among the common sets: f32 / q8 asymm at base, f16 at 3, q8 signed at 4. */
static int type_in(const vc *v, int32_t t, const int32_t *allowed, int n, int base, const char *role) {
    for (int i = 0; i < n; i++)
        if (allowed[i] == t) {
            int lv = base;
            if (t == ANEURALNETWORKS_TENSOR_FLOAT16 && lv < 3) lv = 3;
            if (t == ANEURALNETWORKS_TENSOR_QUANT8_ASYMM_SIGNED && lv < 4) lv = 4;
            char what[96];
            snprintf(what, sizeof what, "%s on %s", fk_op_name(v->op->code), tname(t));
            return level(v, lv, what);
        }
    return bad(v, "%s is %s, a type this operation does not take", role, tname(t));
}

#define TS(...) (const int32_t[]){__VA_ARGS__}, (int)(sizeof((int32_t[]){__VA_ARGS__}) / 4)
enum {
    F32 = ANEURALNETWORKS_TENSOR_FLOAT32,
    F16 = ANEURALNETWORKS_TENSOR_FLOAT16,
    I32 = ANEURALNETWORKS_TENSOR_INT32,
    Q8A = ANEURALNETWORKS_TENSOR_QUANT8_ASYMM,
    Q8S = ANEURALNETWORKS_TENSOR_QUANT8_ASYMM_SIGNED,
    B8 = ANEURALNETWORKS_TENSOR_BOOL8,
    PCH = ANEURALNETWORKS_TENSOR_QUANT8_SYMM_PER_CHANNEL,
};

static int out_same_type(const vc *v, uint32_t k, int32_t t) {
    char role[32];
    snprintf(role, sizeof role, "output %u", k);
    return want_type(v, OUT(k), t, role);
}

static int same_dims_in(const vc *v, const fk_operand *a, const fk_operand *b, const char *what) {
    if (!known(a) || !known(b)) return 0;
    if (a->rank != b->rank || memcmp(a->dims, b->dims, 4ull * a->rank))
        return bad(v, "%s: shapes differ", what);
    return 0;
}

/* ---------------------------------------------------------------- operations */
static int broadcast(const vc *v, const fk_operand *a, const fk_operand *b, uint32_t k) {
    if (!known(a) || !known(b)) return 0;
    uint32_t r = a->rank > b->rank ? a->rank : b->rank, d[FK_MAX_RANK];
    for (uint32_t i = 0; i < r; i++) {
        uint32_t ea = i < a->rank ? a->dims[a->rank - 1 - i] : 1, eb = i < b->rank ? b->dims[b->rank - 1 - i] : 1;
        if (ea != eb && ea != 1 && eb != 1) return bad(v, "input shapes do not broadcast");
        d[r - 1 - i] = ea > eb ? ea : eb;
    }
    return set_out(v, k, r, d);
}

static int v_arith(const vc *v) {
    int32_t c = v->op->code, t = IN(0)->type;
    int base = c == ANEURALNETWORKS_SUB || c == ANEURALNETWORKS_DIV ? 2 : 1, have;
    double fuse;
    if (counts(v, 3, 3, 1)) return ANEURALNETWORKS_BAD_DATA;
    if (c == ANEURALNETWORKS_DIV ? type_in(v, t, TS(F32, F16, I32), base, "input 0")
                                 : type_in(v, t, TS(F32, F16, I32, Q8A, Q8S), base, "input 0"))
        return ANEURALNETWORKS_BAD_DATA;
    if (t == I32 && level(v, 4, "TENSOR_INT32 arithmetic")) return ANEURALNETWORKS_BAD_DATA;
    if (t == Q8A && c == ANEURALNETWORKS_SUB && level(v, 3, "SUB on TENSOR_QUANT8_ASYMM")) return ANEURALNETWORKS_BAD_DATA;
    if (want_type(v, IN(1), t, "input 1") || out_same_type(v, 0, t) ||
        param(v, 2, ANEURALNETWORKS_INT32, &fuse, &have))
        return ANEURALNETWORKS_BAD_DATA;
    if (have && (fuse < 0 || fuse > 3)) return bad(v, "fused activation %g is not a FuseCode", fuse);
    if (c == ANEURALNETWORKS_MUL && is_q8(t) && !(OUT(0)->scale > IN(0)->scale * IN(1)->scale))
        return bad(v, "quantised MUL needs output scale > input1 scale x input2 scale (%g <= %g)", (double)OUT(0)->scale,
                   (double)(IN(0)->scale * IN(1)->scale));
    return broadcast(v, IN(0), IN(1), 0);
}

static int v_minmax_cmp(const vc *v) {
    int32_t t = IN(0)->type, cmp = v->op->code == ANEURALNETWORKS_NOT_EQUAL;
    if (counts(v, 2, 2, 1)) return ANEURALNETWORKS_BAD_DATA;
    if (cmp ? type_in(v, t, TS(B8, F16, F32, I32, Q8A, Q8S), 3, "input 0")
            : type_in(v, t, TS(F16, F32, I32, Q8A, Q8S), 3, "input 0"))
        return ANEURALNETWORKS_BAD_DATA;
    if (want_type(v, IN(1), t, "input 1") || out_same_type(v, 0, cmp ? B8 : t)) return ANEURALNETWORKS_BAD_DATA;
    return broadcast(v, IN(0), IN(1), 0);
}

static int v_unary(const vc *v) {
    int32_t c = v->op->code, t = IN(0)->type;
    int r;
    if (c == ANEURALNETWORKS_ELU) {
        if (counts(v, 2, 2, 1) || type_in(v, t, TS(F16, F32), 4, "input 0")) return ANEURALNETWORKS_BAD_DATA;
        double a;
        int have;
        if (param(v, 1, t == F16 ? ANEURALNETWORKS_FLOAT16 : ANEURALNETWORKS_FLOAT32, &a, &have))
            return ANEURALNETWORKS_BAD_DATA;
    } else if (counts(v, 1, 1, 1)) {
        return ANEURALNETWORKS_BAD_DATA;
    }
    if (c == ANEURALNETWORKS_LOGISTIC) r = type_in(v, t, TS(F32, Q8A, F16, Q8S), 1, "input 0");
    else if (c == ANEURALNETWORKS_RSQRT && is_q8(t)) r = type_in(v, t, TS(Q8A, Q8S), 7, "input 0");
    else r = type_in(v, t, TS(F16, F32), c == ANEURALNETWORKS_ELU ? 4 : 3, "input 0");
    if (r || out_same_type(v, 0, t)) return ANEURALNETWORKS_BAD_DATA;
    if (c == ANEURALNETWORKS_LOGISTIC && is_q8(t)) {
        int32_t zp = t == Q8A ? 0 : -128;
        if (OUT(0)->scale != 1.0f / 256 || OUT(0)->zp != zp)
            return bad(v, "a quantised LOGISTIC output has scale 1/256 and zero point %d (got %g, %d)", (int)zp,
                       (double)OUT(0)->scale, (int)OUT(0)->zp);
    }
    return known(IN(0)) ? set_out(v, 0, IN(0)->rank, IN(0)->dims) : 0;
}

static int v_softmax(const vc *v) {
    int32_t t = IN(0)->type;
    double beta, axis = -1;
    int have, have_ax = 0;
    if (counts(v, 2, 3, 1) || type_in(v, t, TS(F32, Q8A, F16, Q8S), 1, "input 0") || out_same_type(v, 0, t) ||
        param(v, 1, t == F16 ? ANEURALNETWORKS_FLOAT16 : ANEURALNETWORKS_FLOAT32, &beta, &have))
        return ANEURALNETWORKS_BAD_DATA;
    if (have && !(beta > 0)) return bad(v, "beta %g is not positive", beta);
    uint32_t r = IN(0)->rank;
    if (v->op->nin == 3) {
        if (level(v, 3, "SOFTMAX with an axis") || param(v, 2, ANEURALNETWORKS_INT32, &axis, &have_ax))
            return ANEURALNETWORKS_BAD_DATA;
        if (have_ax && IN(0)->rank_known && (axis < -(double)r || axis >= r))
            return bad(v, "axis %g outside [-%u, %u)", axis, r, r);
    } else if (IN(0)->rank_known && r != 2 && r != 4 && level(v, 3, "SOFTMAX of rank other than 2 and 4")) {
        return ANEURALNETWORKS_BAD_DATA;
    }
    if (is_q8(t)) {
        int32_t zp = t == Q8A ? 0 : -128;
        if (OUT(0)->scale != 1.0f / 256 || OUT(0)->zp != zp)
            return bad(v, "a quantised SOFTMAX output has scale 1/256 and zero point %d (got %g, %d)", (int)zp,
                       (double)OUT(0)->scale, (int)OUT(0)->zp);
    }
    return known(IN(0)) ? set_out(v, 0, r, IN(0)->dims) : 0;
}

static int v_mean(const vc *v) {
    int32_t t = IN(0)->type, ax[16];
    uint32_t n = 0;
    int have, hk;
    double keep;
    if (counts(v, 3, 3, 1) || type_in(v, t, TS(F32, Q8A, F16, Q8S), 2, "input 0") || out_same_type(v, 0, t) ||
        ivec(v, 1, ax, &n, &have) || param(v, 2, ANEURALNETWORKS_INT32, &keep, &hk))
        return ANEURALNETWORKS_BAD_DATA;
    if (!have || !hk || !known(IN(0))) return 0;
    const fk_operand *x = IN(0);
    int red[FK_MAX_RANK] = {0};
    for (uint32_t i = 0; i < n; i++) {
        int32_t a = ax[i] < 0 ? ax[i] + (int32_t)x->rank : ax[i];
        if (a < 0 || a >= (int32_t)x->rank) return bad(v, "axis %d outside the input's rank %u", (int)ax[i], x->rank);
        red[a] = 1;
    }
    uint32_t d[FK_MAX_RANK], r = 0;
    for (uint32_t i = 0; i < x->rank; i++)
        if (!red[i]) d[r++] = x->dims[i];
        else if (keep > 0) d[r++] = 1;
    if (!r) d[r++] = 1; /* everything reduced without keep_dims: NNAPI gives [1] */
    return set_out(v, 0, r, d);
}

/* |bias_scale - product| within NNAPI's tolerance of a millionth. */
static int bias_scale_ok(float bias, double prod) { return fabs((double)bias - prod) <= 1e-6 * prod; }

static int v_fc(const vc *v) {
    const fk_operand *x = IN(0), *w = IN(1), *b = IN(2);
    int32_t t = x->type;
    double fuse;
    int have;
    if (counts(v, 4, 4, 1) || type_in(v, t, TS(F32, F16, Q8A, Q8S), 1, "input 0")) return ANEURALNETWORKS_BAD_DATA;
    if (w->type != t)
        return bad(v, "weights are %s; FULLY_CONNECTED takes weights of the input's type %s (per-tensor only)",
                   tname(w->type), tname(t));
    if (want_type(v, b, is_q8(t) ? I32 : t, "bias") || out_same_type(v, 0, t) ||
        param(v, 3, ANEURALNETWORKS_INT32, &fuse, &have))
        return ANEURALNETWORKS_BAD_DATA;
    if (is_q8(t)) {
        double prod = (double)x->scale * w->scale;
        if (b->zp != 0 || !bias_scale_ok(b->scale, prod))
            return bad(v, "the int32 bias has scale %g zero point %d; it must be input scale x weight scale = %g with "
                          "zero point 0", (double)b->scale, (int)b->zp, prod);
        if (t == Q8A && !(OUT(0)->scale > prod) && level(v, 3, "FULLY_CONNECTED with output scale <= input x weight scale"))
            return ANEURALNETWORKS_BAD_DATA;
    }
    if (x->rank_known && (x->rank < 2 || x->rank > 4)) return bad(v, "input has rank %u, expected 2..4", x->rank);
    if (w->rank_known && w->rank != 2) return bad(v, "weights have rank %u, expected 2", w->rank);
    if (b->rank_known && b->rank != 1) return bad(v, "bias has rank %u, expected 1", b->rank);
    if (!known(x) || !known(w) || !known(b)) return 0;
    uint64_t n = 1;
    for (uint32_t i = 0; i < x->rank; i++) n *= x->dims[i];
    if (n % w->dims[1]) return bad(v, "input of %llu elements does not flatten to rows of %u", (unsigned long long)n, w->dims[1]);
    if (b->dims[0] != w->dims[0]) return bad(v, "bias has %u values for %u units", b->dims[0], w->dims[0]);
    uint32_t d[2] = {(uint32_t)(n / w->dims[1]), w->dims[0]};
    return set_out(v, 0, 2, d);
}

static int v_conv(const vc *v) {
    const fk_operand *x = IN(0), *f = IN(1), *b = IN(2);
    int32_t t = x->type;
    uint32_t nin = v->op->nin;
    if (nin != 7 && nin != 10)
        return bad(v, "%u inputs: this library implements the 7-input (implicit padding) and 10-input (explicit) forms", nin);
    if (counts(v, nin, nin, 1) || type_in(v, t, TS(F32, F16, Q8A, Q8S), 1, "input 0")) return ANEURALNETWORKS_BAD_DATA;
    int pc = f->type == PCH;
    if (f->type != t && !(pc && is_q8(t))) return bad(v, "filter is %s for a %s input", tname(f->type), tname(t));
    if (pc && level(v, 3, "CONV_2D with a per-channel filter")) return ANEURALNETWORKS_BAD_DATA;
    if (pc && (!f->has_pc || f->pc_dim != 0))
        return bad(v, "a per-channel filter needs its scales along dimension 0 (setOperandSymmPerChannelQuantParams)");
    if (want_type(v, b, is_q8(t) ? I32 : t, "bias") || out_same_type(v, 0, t)) return ANEURALNETWORKS_BAD_DATA;
    if (is_q8(t) && !pc && (b->zp != 0 || !bias_scale_ok(b->scale, (double)x->scale * f->scale)))
        return bad(v, "the int32 bias must have scale input x filter = %g and zero point 0 (got %g, %d)",
                   (double)x->scale * f->scale, (double)b->scale, (int)b->zp);
    if (pc && (b->scale != 0 || b->zp != 0))
        return bad(v, "with a per-channel filter the int32 bias has scale 0 and zero point 0 (got %g, %d)",
                   (double)b->scale, (int)b->zp);
    if (t == Q8A && !pc && !(OUT(0)->scale > x->scale * f->scale) &&
        level(v, 3, "CONV_2D with output scale <= input x filter scale"))
        return ANEURALNETWORKS_BAD_DATA;
    double p[9];
    int have = 1, h;
    for (uint32_t k = 3; k < nin; k++) {
        if (param(v, k, ANEURALNETWORKS_INT32, &p[k - 3], &h)) return ANEURALNETWORKS_BAD_DATA;
        have &= h;
    }
    if ((x->rank_known && x->rank != 4) || (f->rank_known && f->rank != 4))
        return bad(v, "input and filter must have rank 4 (NHWC, OHWI)");
    if (!have || !known(x) || !known(f) || !known(b)) return 0;
    if (f->dims[3] != x->dims[3]) return bad(v, "filter depth %u differs from input depth %u", f->dims[3], x->dims[3]);
    if (b->rank != 1 || b->dims[0] != f->dims[0]) return bad(v, "bias must be [%u]", f->dims[0]);
    double sw = nin == 10 ? p[4] : p[1], sh = nin == 10 ? p[5] : p[2];
    if (sw < 1 || sh < 1) return bad(v, "strides must be >= 1");
    uint32_t oh, ow;
    if (nin == 10) {
        if (p[0] < 0 || p[1] < 0 || p[2] < 0 || p[3] < 0) return bad(v, "negative padding");
        double hh = x->dims[1] + p[2] + p[3] - f->dims[1], ww = x->dims[2] + p[0] + p[1] - f->dims[2];
        if (hh < 0 || ww < 0) return bad(v, "the filter is larger than the padded input");
        oh = (uint32_t)(hh / sh) + 1, ow = (uint32_t)(ww / sw) + 1;
    } else if (p[0] == ANEURALNETWORKS_PADDING_SAME) {
        oh = (uint32_t)((x->dims[1] + sh - 1) / sh), ow = (uint32_t)((x->dims[2] + sw - 1) / sw);
    } else if (p[0] == ANEURALNETWORKS_PADDING_VALID) {
        if (x->dims[1] < f->dims[1] || x->dims[2] < f->dims[2]) return bad(v, "the filter is larger than the input");
        oh = (uint32_t)((x->dims[1] - f->dims[1]) / sh) + 1, ow = (uint32_t)((x->dims[2] - f->dims[2]) / sw) + 1;
    } else {
        return bad(v, "padding scheme %g is not a PaddingCode", p[0]);
    }
    uint32_t d[4] = {x->dims[0], oh, ow, f->dims[0]};
    return set_out(v, 0, 4, d);
}

static int v_bmm(const vc *v) {
    const fk_operand *a = IN(0), *b = IN(1);
    int32_t t = a->type;
    double ax, ay;
    int h1, h2;
    if (counts(v, 4, 4, 1) || type_in(v, t, TS(F16, F32, I32, Q8S), 6, "input 0") || want_type(v, b, t, "input 1") ||
        out_same_type(v, 0, t) || param(v, 2, ANEURALNETWORKS_BOOL, &ax, &h1) || param(v, 3, ANEURALNETWORKS_BOOL, &ay, &h2))
        return ANEURALNETWORKS_BAD_DATA;
    if (!known(a) || !known(b) || !h1 || !h2) return 0;
    uint32_t r = a->rank;
    if (r < 2 || r > 4 || b->rank != r) return bad(v, "inputs must have one rank in 2..4");
    for (uint32_t i = 0; i + 2 < r; i++)
        if (a->dims[i] != b->dims[i]) return bad(v, "batch dimensions differ");
    uint32_t M = a->dims[r - (ax ? 1 : 2)], K = a->dims[r - (ax ? 2 : 1)];
    uint32_t K2 = b->dims[r - (ay ? 1 : 2)], N = b->dims[r - (ay ? 2 : 1)];
    if (K != K2) return bad(v, "inner dimensions %u and %u differ", K, K2);
    uint32_t d[4];
    memcpy(d, a->dims, 4ull * r);
    d[r - 2] = M, d[r - 1] = N;
    return set_out(v, 0, r, d);
}

static int v_concat(const vc *v) {
    uint32_t nin = v->op->nin, n = nin - 1;
    if (nin < 2 || v->op->nout != 1) return bad(v, "takes at least 2 inputs and 1 output");
    int32_t t = IN(0)->type;
    double axis;
    int have;
    if (type_in(v, t, TS(F32, Q8A, F16, Q8S), 1, "input 0") || out_same_type(v, 0, t) ||
        param(v, n, ANEURALNETWORKS_INT32, &axis, &have))
        return ANEURALNETWORKS_BAD_DATA;
    for (uint32_t k = 0; k < n; k++) {
        if (want_type(v, IN(k), t, "an input")) return ANEURALNETWORKS_BAD_DATA;
        if (t == Q8A && !same_q(IN(k), OUT(0)) &&
            level(v, 3, "CONCATENATION of inputs with scales or zero points other than the output's"))
            return ANEURALNETWORKS_BAD_DATA;
    }
    for (uint32_t k = 0; k < n; k++)
        if (!known(IN(k))) return 0;
    if (!have) return 0;
    const fk_operand *x = IN(0);
    int32_t a = (int32_t)axis < 0 ? (int32_t)axis + (int32_t)x->rank : (int32_t)axis;
    if (a < 0 || a >= (int32_t)x->rank) return bad(v, "axis %g outside rank %u", axis, x->rank);
    uint32_t d[FK_MAX_RANK];
    memcpy(d, x->dims, 4ull * x->rank);
    d[a] = 0;
    for (uint32_t k = 0; k < n; k++) {
        const fk_operand *y = IN(k);
        if (y->rank != x->rank) return bad(v, "input %u has rank %u, input 0 %u", k, y->rank, x->rank);
        for (uint32_t i = 0; i < x->rank; i++)
            if ((int32_t)i != a && y->dims[i] != x->dims[i]) return bad(v, "input %u differs off the axis", k);
        d[a] += y->dims[a];
    }
    return set_out(v, 0, x->rank, d);
}

static int v_slice(const vc *v) {
    const fk_operand *x = IN(0);
    int32_t t = x->type, b[16], s[16];
    uint32_t nb = 0, ns = 0;
    int hb, hs;
    if (counts(v, 3, 3, 1) || type_in(v, t, TS(F16, F32, I32, Q8A, Q8S), 3, "input 0") || out_same_type(v, 0, t) ||
        ivec(v, 1, b, &nb, &hb) || ivec(v, 2, s, &ns, &hs))
        return ANEURALNETWORKS_BAD_DATA;
    if (is_q8(t) && !same_q(x, OUT(0))) return bad(v, "output scale and zero point must equal the input's");
    if (!hb || !hs || !known(x)) return 0;
    if (nb != x->rank || ns != x->rank) return bad(v, "begin and size need %u values", x->rank);
    uint32_t d[FK_MAX_RANK];
    for (uint32_t i = 0; i < x->rank; i++) {
        int64_t e = x->dims[i], sz = s[i] == -1 ? e - b[i] : s[i];
        if (b[i] < 0 || b[i] >= e || sz < 1 || b[i] + sz > e) return bad(v, "begin %d size %d outside extent %lld", b[i], s[i], (long long)e);
        d[i] = (uint32_t)sz;
    }
    return set_out(v, 0, x->rank, d);
}

static int v_reshape(const vc *v) {
    const fk_operand *x = IN(0);
    int32_t t = x->type, s[16];
    uint32_t n = 0;
    int have;
    if (counts(v, 2, 2, 1) || type_in(v, t, TS(F32, Q8A, F16, Q8S, I32), 1, "input 0") || out_same_type(v, 0, t) ||
        ivec(v, 1, s, &n, &have))
        return ANEURALNETWORKS_BAD_DATA;
    if (t == I32 && level(v, 6, "RESHAPE on TENSOR_INT32")) return ANEURALNETWORKS_BAD_DATA;
    if (is_q8(t) && !same_q(x, OUT(0))) return bad(v, "output scale and zero point must equal the input's");
    if (!have || !known(x)) return 0;
    uint64_t total = 1, part = 1;
    int neg = -1;
    for (uint32_t i = 0; i < x->rank; i++) total *= x->dims[i];
    uint32_t d[16];
    for (uint32_t i = 0; i < n; i++) {
        if (s[i] == -1 && neg < 0) neg = (int)i;
        else if (s[i] < 1) return bad(v, "shape value %d", s[i]);
        else part *= (uint64_t)s[i];
        d[i] = s[i] > 0 ? (uint32_t)s[i] : 0;
    }
    if (neg >= 0) d[neg] = part && total % part == 0 ? (uint32_t)(total / part) : 0, part *= d[neg];
    if (part != total) return bad(v, "shape holds %llu elements, the input %llu", (unsigned long long)part, (unsigned long long)total);
    if (n > 4) return bad(v, "output rank %u exceeds 4", n);
    return set_out(v, 0, n, d);
}

static int v_transpose(const vc *v) {
    const fk_operand *x = IN(0);
    int32_t t = x->type, p[16];
    uint32_t n = 0;
    int have = 0;
    if (counts(v, 2, 2, 1) || type_in(v, t, TS(F32, Q8A, F16, Q8S), 2, "input 0") || out_same_type(v, 0, t))
        return ANEURALNETWORKS_BAD_DATA;
    if (is_q8(t) && !same_q(x, OUT(0))) return bad(v, "output scale and zero point must equal the input's");
    if (!IN(1)->omitted && ivec(v, 1, p, &n, &have)) return ANEURALNETWORKS_BAD_DATA;
    if (!known(x)) return 0;
    if (IN(1)->omitted) {
        n = x->rank, have = 1;
        for (uint32_t i = 0; i < n; i++) p[i] = (int32_t)(n - 1 - i);
    }
    if (!have) return 0;
    if (n != x->rank) return bad(v, "permutation of %u values for rank %u", n, x->rank);
    uint32_t d[FK_MAX_RANK], seen = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (p[i] < 0 || p[i] >= (int32_t)n || (seen >> p[i]) & 1) return bad(v, "not a permutation");
        seen |= 1u << p[i];
        d[i] = x->dims[p[i]];
    }
    return set_out(v, 0, n, d);
}

static int v_convert(const vc *v) {
    const fk_operand *x = IN(0), *o = OUT(0);
    int32_t c = v->op->code, ti = x->type, to = o->type;
    if (counts(v, 1, 1, 1)) return ANEURALNETWORKS_BAD_DATA;
    if (c == ANEURALNETWORKS_QUANTIZE) {
        if (ti != F32 && ti != F16) return bad(v, "input is %s, expected a float tensor", tname(ti));
        if (type_in(v, to, TS(Q8A, Q8S), 3, "output 0")) return ANEURALNETWORKS_BAD_DATA;
    } else if (c == ANEURALNETWORKS_DEQUANTIZE) {
        if (to != F32 && to != F16) return bad(v, "output is %s, expected a float tensor", tname(to));
        int lv = ti == Q8A && to == F32 ? 1 : 3;
        if (type_in(v, ti, TS(Q8A, Q8S, ANEURALNETWORKS_TENSOR_QUANT8_SYMM, PCH), lv, "input 0") ||
            (to == F16 && level(v, 3, "DEQUANTIZE to TENSOR_FLOAT16")))
            return ANEURALNETWORKS_BAD_DATA;
    } else { /* CAST */
        int ok_i = ti == F16 || ti == F32 || ti == I32 || ti == Q8A, ok_o = to == F16 || to == F32 || to == I32 || to == Q8A;
        if (!(ok_i && ok_o) && !(ti == to && fk_is_tensor(ti)))
            return bad(v, "CAST from %s to %s", tname(ti), tname(to));
        if (level(v, ok_i && ok_o ? 3 : 4, "CAST")) return ANEURALNETWORKS_BAD_DATA;
    }
    return known(x) ? set_out(v, 0, x->rank, x->dims) : 0;
}

static int v_gather(const vc *v) {
    const fk_operand *x = IN(0), *idx = IN(2);
    int32_t t = x->type;
    double axis;
    int have;
    if (counts(v, 3, 3, 1) || type_in(v, t, TS(F16, F32, I32, Q8A, Q8S), 3, "input 0") ||
        param(v, 1, ANEURALNETWORKS_INT32, &axis, &have) || want_type(v, idx, I32, "indices") || out_same_type(v, 0, t))
        return ANEURALNETWORKS_BAD_DATA;
    if (is_q8(t) && !same_q(x, OUT(0))) return bad(v, "output scale and zero point must equal the input's");
    if (!have || !known(x) || !known(idx)) return 0;
    int32_t a = (int32_t)axis < 0 ? (int32_t)axis + (int32_t)x->rank : (int32_t)axis;
    if (a < 0 || a >= (int32_t)x->rank) return bad(v, "axis %g outside rank %u", axis, x->rank);
    uint32_t d[2 * FK_MAX_RANK], r = 0;
    for (int32_t i = 0; i < a; i++) d[r++] = x->dims[i];
    for (uint32_t i = 0; i < idx->rank; i++) d[r++] = idx->dims[i];
    for (uint32_t i = (uint32_t)a + 1; i < x->rank; i++) d[r++] = x->dims[i];
    if (r > 4) return bad(v, "output rank %u exceeds 4", r);
    return set_out(v, 0, r, d);
}

static int v_select(const vc *v) {
    int32_t t = IN(1)->type;
    if (counts(v, 3, 3, 1) || want_type(v, IN(0), B8, "the condition") ||
        type_in(v, t, TS(F16, F32, I32, Q8A, Q8S), 3, "input 1") || want_type(v, IN(2), t, "input 2") ||
        out_same_type(v, 0, t) || same_dims_in(v, IN(0), IN(1), "condition and input 1") ||
        same_dims_in(v, IN(1), IN(2), "inputs 1 and 2"))
        return ANEURALNETWORKS_BAD_DATA;
    return known(IN(1)) ? set_out(v, 0, IN(1)->rank, IN(1)->dims) : 0;
}

static int v_split(const vc *v) {
    const fk_operand *x = IN(0);
    int32_t t = x->type;
    double axis, num;
    int h1, h2;
    if (v->op->nin != 3) return bad(v, "takes 3 inputs, got %u", v->op->nin);
    if (type_in(v, t, TS(F16, F32, I32, Q8A, Q8S), 3, "input 0") || param(v, 1, ANEURALNETWORKS_INT32, &axis, &h1) ||
        param(v, 2, ANEURALNETWORKS_INT32, &num, &h2))
        return ANEURALNETWORKS_BAD_DATA;
    for (uint32_t k = 0; k < v->op->nout; k++)
        if (out_same_type(v, k, t)) return ANEURALNETWORKS_BAD_DATA;
    if (h2 && num != v->op->nout) return bad(v, "num_splits %g but %u outputs", num, v->op->nout);
    if (!h1 || !h2 || !known(x)) return 0;
    int32_t a = (int32_t)axis < 0 ? (int32_t)axis + (int32_t)x->rank : (int32_t)axis;
    if (a < 0 || a >= (int32_t)x->rank || x->dims[a] % (uint32_t)num) return bad(v, "axis %g does not split in %g", axis, num);
    uint32_t d[FK_MAX_RANK];
    memcpy(d, x->dims, 4ull * x->rank);
    d[a] /= (uint32_t)num;
    for (uint32_t k = 0; k < v->op->nout; k++)
        if (set_out(v, k, x->rank, d)) return ANEURALNETWORKS_BAD_DATA;
    return 0;
}

static int v_embedding(const vc *v) {
    const fk_operand *l = IN(0), *x = IN(1);
    int32_t t = x->type;
    if (counts(v, 2, 2, 1) || want_type(v, l, I32, "lookups") || out_same_type(v, 0, t)) return ANEURALNETWORKS_BAD_DATA;
    if (t == F32 ? 0 : t == I32 || t == Q8A ? level(v, 3, "EMBEDDING_LOOKUP on int32 / uint8")
                 : t == F16 || t == Q8S   ? level(v, 4, "EMBEDDING_LOOKUP on float16 / int8")
                                          : bad(v, "values are %s", tname(t)))
        return ANEURALNETWORKS_BAD_DATA;
    if (!known(l) || !known(x)) return 0;
    if (l->rank != 1 || x->rank < 2) return bad(v, "lookups must be 1-D and values of rank >= 2");
    uint32_t d[FK_MAX_RANK];
    memcpy(d, x->dims, 4ull * x->rank);
    d[0] = l->dims[0];
    return set_out(v, 0, x->rank, d);
}

/* ---------------------------------------------------------------- dispatch */
typedef struct {
    int32_t code;
    const char *name;
    int level;
    int (*check)(const vc *v);
} op_rule;

static const op_rule rules[] = {
    {ANEURALNETWORKS_ADD, "ADD", 1, v_arith},
    {ANEURALNETWORKS_CONCATENATION, "CONCATENATION", 1, v_concat},
    {ANEURALNETWORKS_CONV_2D, "CONV_2D", 1, v_conv},
    {ANEURALNETWORKS_DEQUANTIZE, "DEQUANTIZE", 1, v_convert},
    {ANEURALNETWORKS_EMBEDDING_LOOKUP, "EMBEDDING_LOOKUP", 1, v_embedding},
    {ANEURALNETWORKS_FULLY_CONNECTED, "FULLY_CONNECTED", 1, v_fc},
    {ANEURALNETWORKS_LOGISTIC, "LOGISTIC", 1, v_unary},
    {ANEURALNETWORKS_MUL, "MUL", 1, v_arith},
    {ANEURALNETWORKS_RESHAPE, "RESHAPE", 1, v_reshape},
    {ANEURALNETWORKS_SOFTMAX, "SOFTMAX", 1, v_softmax},
    {ANEURALNETWORKS_DIV, "DIV", 2, v_arith},
    {ANEURALNETWORKS_MEAN, "MEAN", 2, v_mean},
    {ANEURALNETWORKS_SUB, "SUB", 2, v_arith},
    {ANEURALNETWORKS_TRANSPOSE, "TRANSPOSE", 2, v_transpose},
    {ANEURALNETWORKS_CAST, "CAST", 3, v_convert},
    {ANEURALNETWORKS_EXP, "EXP", 3, v_unary},
    {ANEURALNETWORKS_GATHER, "GATHER", 3, v_gather},
    {ANEURALNETWORKS_MAXIMUM, "MAXIMUM", 3, v_minmax_cmp},
    {ANEURALNETWORKS_MINIMUM, "MINIMUM", 3, v_minmax_cmp},
    {ANEURALNETWORKS_NOT_EQUAL, "NOT_EQUAL", 3, v_minmax_cmp},
    {ANEURALNETWORKS_QUANTIZE, "QUANTIZE", 3, v_convert},
    {ANEURALNETWORKS_RSQRT, "RSQRT", 3, v_unary},
    {ANEURALNETWORKS_SELECT, "SELECT", 3, v_select},
    {ANEURALNETWORKS_SLICE, "SLICE", 3, v_slice},
    {ANEURALNETWORKS_SPLIT, "SPLIT", 3, v_split},
    {ANEURALNETWORKS_ELU, "ELU", 4, v_unary},
    {ANEURALNETWORKS_BATCH_MATMUL, "BATCH_MATMUL", 6, v_bmm},
};
enum { N_RULES = (int)(sizeof rules / sizeof rules[0]) };

static const op_rule *rule_of(int32_t code) {
    for (int i = 0; i < N_RULES; i++)
        if (rules[i].code == code) return &rules[i];
    return NULL;
}

const char *fk_op_name(int32_t code) {
    const op_rule *r = rule_of(code);
    return r ? r->name : "?";
}

int fk_check_op(struct ANeuralNetworksModel *m, uint32_t i, int final) {
    const fk_op *op = &m->ops[i];
    vc v = {m, op, i, final, fk_fl()};
    const op_rule *r = rule_of(op->code);
    if (!r) return fk_err(ANEURALNETWORKS_BAD_DATA, "operation %u: code %d is unknown or not implemented by this library", i,
                          (int)op->code);
    if (level(&v, r->level, r->name)) return ANEURALNETWORKS_BAD_DATA;
    int optional_perm = op->code == ANEURALNETWORKS_TRANSPOSE;
    for (uint32_t k = 0; k < op->nin; k++) {
        const fk_operand *o = &m->opnd[op->in[k]];
        if (o->omitted && !(optional_perm && k == 1)) return bad(&v, "input %u is omitted but required", k);
        if (fk_is_tensor(o->type) && o->rank_known && o->rank > 4)
            return bad(&v, "input %u has rank %u; NNAPI operations take rank <= 4", k, o->rank);
    }
    for (uint32_t k = 0; k < op->nout; k++) {
        const fk_operand *o = &m->opnd[op->out[k]];
        if (!fk_is_tensor(o->type)) return bad(&v, "output %u is a scalar %s", k, tname(o->type));
        if (o->rank_known && o->rank > 4) return bad(&v, "output %u has rank %u; NNAPI takes rank <= 4", k, o->rank);
    }
    return r->check(&v);
}
