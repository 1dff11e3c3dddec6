/* Reference kernels of the NNAPI conformance library (fake_nnapi.h). Correctness over speed: every
 * operation reads its inputs as real values in double precision ((q - zero point) x scale for the
 * quantised types, per channel where the operand says so), computes in double and writes its
 * output in the output operand's type, quantised with rounding half away from zero and clamped
 * like NNAPI's reference. Quantised FULLY_CONNECTED and CONV_2D use NNAPI's integer arithmetic
 * instead (int32 accumulation, fixed-point requantisation; see fk_requant). A relaxed model rounds every float32 result to float16 precision, as a
 * driver allowed to compute in float16 may. Invalid data found while running (an index out of
 * range) fails the execution with OP_FAILED. */
#include "tests/nnapi/fake_nnapi.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const struct ANeuralNetworksModel *m;
    uint8_t *const *bufs;
    const fk_op *op;
} ex;

#define OPD(e, i) (&(e)->m->opnd[(i)])
#define INO(k) OPD(e, e->op->in[k])
#define OUTO(k) OPD(e, e->op->out[k])

static size_t numel(const fk_operand *o) {
    size_t n = 1;
    if (fk_is_tensor(o->type))
        for (uint32_t i = 0; i < o->rank; i++) n *= o->dims[i];
    return n;
}

static double ld(const fk_operand *o, const uint8_t *p, size_t i) {
    switch (o->type) {
    case ANEURALNETWORKS_FLOAT32:
    case ANEURALNETWORKS_TENSOR_FLOAT32: {
        float f;
        memcpy(&f, p + 4 * i, 4);
        return f;
    }
    case ANEURALNETWORKS_FLOAT16:
    case ANEURALNETWORKS_TENSOR_FLOAT16: {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        return fk_half_to_float(h);
    }
    case ANEURALNETWORKS_INT32:
    case ANEURALNETWORKS_TENSOR_INT32: {
        int32_t v;
        memcpy(&v, p + 4 * i, 4);
        return v;
    }
    case ANEURALNETWORKS_UINT32: {
        uint32_t v;
        memcpy(&v, p + 4 * i, 4);
        return v;
    }
    case ANEURALNETWORKS_TENSOR_QUANT8_ASYMM: return ((double)p[i] - o->zp) * o->scale;
    case ANEURALNETWORKS_TENSOR_QUANT8_ASYMM_SIGNED: return ((double)(int8_t)p[i] - o->zp) * o->scale;
    case ANEURALNETWORKS_TENSOR_QUANT8_SYMM: return (double)(int8_t)p[i] * o->scale;
    case ANEURALNETWORKS_TENSOR_QUANT8_SYMM_PER_CHANNEL: {
        size_t inner = 1;
        for (uint32_t d = o->pc_dim + 1; d < o->rank; d++) inner *= o->dims[d];
        return (double)(int8_t)p[i] * o->pc_scales[(i / inner) % o->dims[o->pc_dim]];
    }
    case ANEURALNETWORKS_TENSOR_QUANT16_SYMM: {
        int16_t v;
        memcpy(&v, p + 2 * i, 2);
        return (double)v * o->scale;
    }
    case ANEURALNETWORKS_TENSOR_QUANT16_ASYMM: {
        uint16_t v;
        memcpy(&v, p + 2 * i, 2);
        return ((double)v - o->zp) * o->scale;
    }
    default: return p[i] != 0; /* BOOL, TENSOR_BOOL8 */
    }
}

static double qround(double v, double lo, double hi) {
    double r = v != v ? 0.0 : v < 0 ? -floor(-v + 0.5) : floor(v + 0.5);
    return r < lo ? lo : r > hi ? hi : r;
}

static void st(const struct ANeuralNetworksModel *m, const fk_operand *o, uint8_t *p, size_t i, double v) {
    switch (o->type) {
    case ANEURALNETWORKS_TENSOR_FLOAT32: {
        float f = (float)v;
        if (m->relaxed) f = fk_half_to_float(fk_float_to_half(f));
        memcpy(p + 4 * i, &f, 4);
        return;
    }
    case ANEURALNETWORKS_TENSOR_FLOAT16: {
        uint16_t h = fk_float_to_half((float)v);
        memcpy(p + 2 * i, &h, 2);
        return;
    }
    case ANEURALNETWORKS_TENSOR_INT32: {
        int32_t q = (int32_t)(v != v ? 0 : v < -2147483648.0 ? -2147483648.0 : v > 2147483647.0 ? 2147483647.0 : trunc(v));
        memcpy(p + 4 * i, &q, 4);
        return;
    }
    case ANEURALNETWORKS_TENSOR_QUANT8_ASYMM: p[i] = (uint8_t)qround(v / o->scale + o->zp, 0, 255); return;
    case ANEURALNETWORKS_TENSOR_QUANT8_ASYMM_SIGNED:
        p[i] = (uint8_t)(int8_t)qround(v / o->scale + o->zp, -128, 127);
        return;
    default: p[i] = v != 0; return; /* TENSOR_BOOL8 */
    }
}

static double *load(const ex *e, uint32_t idx) {
    const fk_operand *o = OPD(e, idx);
    size_t n = numel(o);
    double *v = malloc((n ? n : 1) * sizeof *v);
    if (v)
        for (size_t i = 0; i < n; i++) v[i] = ld(o, e->bufs[idx], i);
    return v;
}

static void store(const ex *e, uint32_t idx, const double *v) {
    const fk_operand *o = OPD(e, idx);
    for (size_t i = 0, n = numel(o); i < n; i++) st(e->m, o, e->bufs[idx], i, v[i]);
}

static double scalar(const ex *e, uint32_t k) { return ld(INO(k), e->bufs[e->op->in[k]], 0); }

static int32_t ivec_at(const ex *e, uint32_t k, size_t i) { return (int32_t)ld(INO(k), e->bufs[e->op->in[k]], i); }

static double fuse(double v, int code) {
    if (code == ANEURALNETWORKS_FUSED_RELU) return v < 0 ? 0 : v;
    if (code == ANEURALNETWORKS_FUSED_RELU1) return v < -1 ? -1 : v > 1 ? 1 : v;
    if (code == ANEURALNETWORKS_FUSED_RELU6) return v < 0 ? 0 : v > 6 ? 6 : v;
    return v;
}

/* Index into x of output element i under right-aligned broadcasting. */
static size_t bidx(const fk_operand *x, const fk_operand *o, size_t i) {
    size_t xi = 0, stride = 1;
    for (int d = (int)o->rank - 1, dx = (int)x->rank - 1; d >= 0; d--, dx--) {
        size_t c = i % o->dims[d];
        i /= o->dims[d];
        if (dx >= 0) {
            if (x->dims[dx] != 1) xi += c * stride;
            stride *= x->dims[dx];
        }
    }
    return xi;
}

static void strides(const fk_operand *o, size_t *s) {
    size_t a = 1;
    for (int d = (int)o->rank - 1; d >= 0; d--) s[d] = a, a *= o->dims[d];
}

/* ---------------------------------------------------------------- kernels */
static int k_elementwise(const ex *e, double *y) {
    int32_t c = e->op->code;
    const fk_operand *o = OUTO(0);
    size_t n = numel(o);
    if (e->op->nin >= 2 && c != ANEURALNETWORKS_ELU) {
        const fk_operand *a = INO(0), *b = INO(1);
        int fz = e->op->nin == 3 ? (int)scalar(e, 2) : 0;
        for (size_t i = 0; i < n; i++) {
            double u = ld(a, e->bufs[e->op->in[0]], bidx(a, o, i)), w = ld(b, e->bufs[e->op->in[1]], bidx(b, o, i)), r;
            switch (c) {
            case ANEURALNETWORKS_ADD: r = u + w; break;
            case ANEURALNETWORKS_SUB: r = u - w; break;
            case ANEURALNETWORKS_MUL: r = u * w; break;
            case ANEURALNETWORKS_DIV:
                if (a->type == ANEURALNETWORKS_TENSOR_INT32 && w == 0) return ANEURALNETWORKS_OP_FAILED;
                r = a->type == ANEURALNETWORKS_TENSOR_INT32 ? trunc(u / w) : u / w;
                break;
            case ANEURALNETWORKS_MAXIMUM: r = u > w ? u : w; break;
            case ANEURALNETWORKS_MINIMUM: r = u < w ? u : w; break;
            default: r = u != w; break; /* NOT_EQUAL */
            }
            y[i] = fuse(r, fz);
        }
        return 0;
    }
    const fk_operand *x = INO(0);
    double alpha = c == ANEURALNETWORKS_ELU ? scalar(e, 1) : 0;
    for (size_t i = 0; i < n; i++) {
        double u = ld(x, e->bufs[e->op->in[0]], i);
        switch (c) {
        case ANEURALNETWORKS_LOGISTIC: y[i] = 1.0 / (1.0 + exp(-u)); break;
        case ANEURALNETWORKS_EXP: y[i] = exp(u); break;
        case ANEURALNETWORKS_RSQRT: y[i] = 1.0 / sqrt(u); break;
        case ANEURALNETWORKS_ELU: y[i] = u > 0 ? u : alpha * (exp(u) - 1.0); break;
        default: y[i] = u; break; /* QUANTIZE, DEQUANTIZE, CAST */
        }
    }
    return 0;
}

static int k_softmax(const ex *e, double *y) {
    const fk_operand *x = INO(0);
    double beta = scalar(e, 1);
    int32_t axis = e->op->nin == 3 ? (int32_t)scalar(e, 2) : -1;
    if (axis < 0) axis += (int32_t)x->rank;
    size_t st_[FK_MAX_RANK] = {0}, n = numel(x), len = x->dims[axis];
    strides(x, st_);
    size_t inner = st_[axis];
    for (size_t base = 0; base < n; base++) {
        if ((base / inner) % len) continue; /* one row per element with index 0 on the axis */
        double mx = -INFINITY, sum = 0;
        for (size_t j = 0; j < len; j++) {
            double v = ld(x, e->bufs[e->op->in[0]], base + j * inner);
            mx = v > mx ? v : mx;
        }
        for (size_t j = 0; j < len; j++) sum += y[base + j * inner] = exp(beta * (ld(x, e->bufs[e->op->in[0]], base + j * inner) - mx));
        for (size_t j = 0; j < len; j++) y[base + j * inner] /= sum;
    }
    return 0;
}

static int k_mean(const ex *e, double *y) {
    const fk_operand *x = INO(0), *ax = INO(1);
    int red[FK_MAX_RANK] = {0};
    for (size_t i = 0; i < numel(ax); i++) {
        int32_t a = ivec_at(e, 1, i);
        red[a < 0 ? a + (int32_t)x->rank : a] = 1;
    }
    size_t xs[FK_MAX_RANK] = {0}, n = numel(x), no = numel(OUTO(0)), cnt = n / (no ? no : 1);
    strides(x, xs);
    for (size_t i = 0; i < no; i++) y[i] = 0;
    for (size_t i = 0; i < n; i++) {
        size_t oi = 0, mul = 1; /* output index: the kept axes, in order */
        for (int d = (int)x->rank - 1; d >= 0; d--) {
            if (red[d]) continue;
            oi += ((i / xs[d]) % x->dims[d]) * mul;
            mul *= x->dims[d];
        }
        y[oi] += ld(x, e->bufs[e->op->in[0]], i);
    }
    for (size_t i = 0; i < no; i++) y[i] /= (double)cnt;
    return 0;
}

/* Real value of bias element i: float as is, int32 scaled by input x weight (per channel too). */
static double bias_at(const ex *e, const fk_operand *x, const fk_operand *w, size_t i) {
    const fk_operand *b = INO(2);
    double v = ld(b, e->bufs[e->op->in[2]], i);
    if (b->type != ANEURALNETWORKS_TENSOR_INT32) return v;
    double ws = w->type == ANEURALNETWORKS_TENSOR_QUANT8_SYMM_PER_CHANNEL ? w->pc_scales[i] : w->scale;
    return v * x->scale * ws;
}

/* ---- quantised FULLY_CONNECTED / CONV_2D: NNAPI's reference arithmetic (TFLite's kernels):
 * int32 accumulation of (x - x_zp)(w - w_zp) plus the int32 bias, then the fixed-point
 * requantisation by the real multiplier x_scale * w_scale / out_scale (in double; per channel for
 * per-channel filters): QuantizeMultiplier, SaturatingRoundingDoublingHighMul,
 * RoundingDivideByPOT. Written here from those definitions, independently of the cpu backend. */
static void fk_quant_mult(double m, int32_t *q, int *shift) {
    *q = 0, *shift = 0;
    if (!(m > 0.0)) return;
    int e;
    double f = frexp(m, &e);
    long long qf = llround(f * 2147483648.0);
    if (qf == 2147483648LL) qf /= 2, e++;
    if (e < -31) return;
    if (e > 30) qf = 2147483647LL, e = 30;
    *q = (int32_t)qf, *shift = e;
}

static int32_t fk_srdhm(int32_t a, int32_t b) {
    if (a == INT32_MIN && b == INT32_MIN) return INT32_MAX;
    int64_t ab = (int64_t)a * b, nudge = ab >= 0 ? (1 << 30) : (1 - (1 << 30));
    return (int32_t)((ab + nudge) / ((int64_t)1 << 31));
}

static int32_t fk_rdbpot(int32_t x, int exponent) {
    const int32_t mask = (int32_t)(((int64_t)1 << exponent) - 1), rem = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (rem > threshold ? 1 : 0);
}

static int32_t fk_requant(int64_t acc, int32_t q, int shift) {
    int64_t v = acc < INT32_MIN ? INT32_MIN : acc > INT32_MAX ? INT32_MAX : acc;
    const int left = shift > 0 ? shift : 0, right = shift > 0 ? 0 : -shift;
    v *= (int64_t)1 << left;
    v = v < INT32_MIN ? INT32_MIN : v > INT32_MAX ? INT32_MAX : v;
    return fk_rdbpot(fk_srdhm((int32_t)v, q), right);
}

static int is_q8(int32_t t) {
    return t == ANEURALNETWORKS_TENSOR_QUANT8_ASYMM || t == ANEURALNETWORKS_TENSOR_QUANT8_ASYMM_SIGNED;
}

/* The output channel n's value from the integer accumulator (bias included), as a real number the
 * store quantises back to exactly the requantised integer. */
static double q_out(const fk_operand *x, const fk_operand *w, const fk_operand *o, size_t n, int64_t acc) {
    const double ws = w->type == ANEURALNETWORKS_TENSOR_QUANT8_SYMM_PER_CHANNEL ? w->pc_scales[n] : w->scale;
    int32_t q;
    int sh;
    fk_quant_mult((double)x->scale * ws / (double)o->scale, &q, &sh);
    const double lo = o->type == ANEURALNETWORKS_TENSOR_QUANT8_ASYMM ? 0 : -128, hi = lo + 255;
    double v = (double)fk_requant(acc, q, sh) + o->zp;
    v = v < lo ? lo : v > hi ? hi : v;
    return (v - o->zp) * o->scale;
}

/* (x - x_zp) and (w - w_zp) as integers, from the dequantised values load() gives. */
static int64_t qint(double v, double scale) { return llround(v / scale); }

static int64_t q_bias(const ex *e, size_t n) {
    const fk_operand *b = INO(2);
    return b->type == ANEURALNETWORKS_TENSOR_INT32 ? (int64_t)ld(b, e->bufs[e->op->in[2]], n) : 0;
}

static int k_fc(const ex *e, double *y) {
    const fk_operand *x = INO(0), *w = INO(1), *o = OUTO(0);
    size_t K = w->dims[1], N = w->dims[0], M = numel(x) / K;
    int fz = (int)scalar(e, 3);
    double *xv = load(e, e->op->in[0]), *wv = load(e, e->op->in[1]);
    if (!xv || !wv) return free(xv), free(wv), ANEURALNETWORKS_OUT_OF_MEMORY;
    const int quant = is_q8(o->type) && is_q8(x->type);
    for (size_t m = 0; m < M; m++)
        for (size_t n = 0; n < N; n++) {
            if (quant) {
                int64_t acc = q_bias(e, n);
                for (size_t k = 0; k < K; k++) acc += qint(xv[m * K + k], x->scale) * qint(wv[n * K + k], w->scale);
                y[m * N + n] = fuse(q_out(x, w, o, n, acc), fz);
                continue;
            }
            double s = bias_at(e, x, w, n);
            for (size_t k = 0; k < K; k++) s += xv[m * K + k] * wv[n * K + k];
            y[m * N + n] = fuse(s, fz);
        }
    free(xv);
    free(wv);
    return 0;
}

static int k_conv(const ex *e, double *y) {
    const fk_operand *x = INO(0), *f = INO(1), *o = OUTO(0);
    int expl = e->op->nin == 10;
    size_t B = x->dims[0], H = x->dims[1], W = x->dims[2], C = x->dims[3];
    size_t O = f->dims[0], KH = f->dims[1], KW = f->dims[2], OH = o->dims[1], OW = o->dims[2];
    long sw = (long)scalar(e, expl ? 7 : 4), sh = (long)scalar(e, expl ? 8 : 5), pl, pt;
    int fz = (int)scalar(e, expl ? 9 : 6);
    if (expl) pl = (long)scalar(e, 3), pt = (long)scalar(e, 5);
    else if ((int)scalar(e, 3) == ANEURALNETWORKS_PADDING_SAME) {
        long th = (long)((OH - 1) * (size_t)sh + KH) - (long)H, tw = (long)((OW - 1) * (size_t)sw + KW) - (long)W;
        pt = th > 0 ? th / 2 : 0, pl = tw > 0 ? tw / 2 : 0;
    } else
        pl = pt = 0;
    double *xv = load(e, e->op->in[0]), *fv = load(e, e->op->in[1]);
    if (!xv || !fv) return free(xv), free(fv), ANEURALNETWORKS_OUT_OF_MEMORY;
    const int quant = is_q8(o->type) && is_q8(x->type);
    for (size_t b = 0; b < B; b++)
        for (size_t oh = 0; oh < OH; oh++)
            for (size_t ow = 0; ow < OW; ow++)
                for (size_t oc = 0; oc < O; oc++) {
                    double s = quant ? 0.0 : bias_at(e, x, f, oc);
                    int64_t acc = quant ? q_bias(e, oc) : 0;
                    const double fs = f->type == ANEURALNETWORKS_TENSOR_QUANT8_SYMM_PER_CHANNEL ? f->pc_scales[oc] : f->scale;
                    for (size_t kh = 0; kh < KH; kh++)
                        for (size_t kw = 0; kw < KW; kw++) {
                            long ih = (long)(oh * (size_t)sh + kh) - pt, iw = (long)(ow * (size_t)sw + kw) - pl;
                            if (ih < 0 || iw < 0 || ih >= (long)H || iw >= (long)W) continue;
                            const double *xp = xv + ((b * H + (size_t)ih) * W + (size_t)iw) * C;
                            const double *fp = fv + ((oc * KH + kh) * KW + kw) * C;
                            if (quant)
                                for (size_t ic = 0; ic < C; ic++) acc += qint(xp[ic], x->scale) * qint(fp[ic], fs);
                            else
                                for (size_t ic = 0; ic < C; ic++) s += xp[ic] * fp[ic];
                        }
                    y[((b * OH + oh) * OW + ow) * O + oc] = fuse(quant ? q_out(x, f, o, oc, acc) : s, fz);
                }
    free(xv);
    free(fv);
    return 0;
}

static int k_bmm(const ex *e, double *y) {
    const fk_operand *a = INO(0), *b = INO(1);
    int ax = scalar(e, 2) != 0, ay = scalar(e, 3) != 0;
    uint32_t r = a->rank;
    size_t M = a->dims[r - (ax ? 1 : 2)], K = a->dims[r - (ax ? 2 : 1)], N = b->dims[r - (ay ? 2 : 1)];
    size_t nb = numel(a) / (M * K);
    double *av = load(e, e->op->in[0]), *bv = load(e, e->op->in[1]);
    if (!av || !bv) return free(av), free(bv), ANEURALNETWORKS_OUT_OF_MEMORY;
    for (size_t t = 0; t < nb; t++)
        for (size_t m = 0; m < M; m++)
            for (size_t n = 0; n < N; n++) {
                double s = 0;
                for (size_t k = 0; k < K; k++)
                    s += av[t * M * K + (ax ? k * M + m : m * K + k)] * bv[t * K * N + (ay ? n * K + k : k * N + n)];
                y[(t * M + m) * N + n] = s;
            }
    free(av);
    free(bv);
    return 0;
}

/* Data movement: output element i takes input element src(i) of input k. */
static int k_concat(const ex *e, double *y) {
    const fk_operand *o = OUTO(0);
    uint32_t n = e->op->nin - 1;
    int32_t a = (int32_t)scalar(e, n);
    if (a < 0) a += (int32_t)o->rank;
    size_t os[FK_MAX_RANK] = {0}, len = numel(o);
    strides(o, os);
    for (size_t i = 0; i < len; i++) {
        size_t c = (i / os[a]) % o->dims[a], k = 0;
        while (c >= INO(k)->dims[a]) c -= INO(k)->dims[a], k++;
        const fk_operand *x = INO(k);
        size_t xs[FK_MAX_RANK] = {0}, xi = 0;
        strides(x, xs);
        for (uint32_t d = 0; d < o->rank; d++) xi += ((int32_t)d == a ? c : (i / os[d]) % o->dims[d]) * xs[d];
        y[i] = ld(x, e->bufs[e->op->in[k]], xi);
    }
    return 0;
}

static int k_slice_transpose(const ex *e, double *y) {
    const fk_operand *x = INO(0), *o = OUTO(0);
    size_t xs[FK_MAX_RANK] = {0}, os[FK_MAX_RANK] = {0}, n = numel(o);
    int32_t p[FK_MAX_RANK];
    strides(x, xs), strides(o, os);
    int tr = e->op->code == ANEURALNETWORKS_TRANSPOSE;
    for (uint32_t d = 0; d < x->rank; d++)
        p[d] = tr ? (INO(1)->omitted ? (int32_t)(x->rank - 1 - d) : ivec_at(e, 1, d)) : ivec_at(e, 1, d);
    for (size_t i = 0; i < n; i++) {
        size_t xi = 0;
        for (uint32_t d = 0; d < o->rank; d++) {
            size_t c = (i / os[d]) % o->dims[d];
            if (tr) xi += c * xs[p[d]];
            else xi += (c + (size_t)p[d]) * xs[d];
        }
        y[i] = ld(x, e->bufs[e->op->in[0]], xi);
    }
    return 0;
}

static int k_gather(const ex *e, double *y, int embedding) {
    const fk_operand *x = INO(embedding ? 1 : 0), *idx = INO(embedding ? 0 : 2);
    uint32_t xk = embedding ? 1 : 0, ik = embedding ? 0 : 2;
    int32_t a = embedding ? 0 : (int32_t)scalar(e, 1);
    if (a < 0) a += (int32_t)x->rank;
    size_t outer = 1, inner = 1, ni = numel(idx), ext = x->dims[a];
    for (int32_t d = 0; d < a; d++) outer *= x->dims[d];
    for (uint32_t d = (uint32_t)a + 1; d < x->rank; d++) inner *= x->dims[d];
    for (size_t o = 0; o < outer; o++)
        for (size_t j = 0; j < ni; j++) {
            int32_t v = ivec_at(e, ik, j);
            if (v < 0 || (size_t)v >= ext) return ANEURALNETWORKS_OP_FAILED;
            for (size_t i = 0; i < inner; i++)
                y[(o * ni + j) * inner + i] = ld(x, e->bufs[e->op->in[xk]], (o * ext + (size_t)v) * inner + i);
        }
    return 0;
}

static int k_select(const ex *e, double *y) {
    for (size_t i = 0, n = numel(OUTO(0)); i < n; i++)
        y[i] = ld(INO(0), e->bufs[e->op->in[0]], i) != 0 ? ld(INO(1), e->bufs[e->op->in[1]], i)
                                                        : ld(INO(2), e->bufs[e->op->in[2]], i);
    return 0;
}

static int k_split(const ex *e) {
    const fk_operand *x = INO(0);
    int32_t a = (int32_t)scalar(e, 1);
    if (a < 0) a += (int32_t)x->rank;
    size_t outer = 1, inner = 1, part = x->dims[a] / e->op->nout;
    for (int32_t d = 0; d < a; d++) outer *= x->dims[d];
    for (uint32_t d = (uint32_t)a + 1; d < x->rank; d++) inner *= x->dims[d];
    for (uint32_t k = 0; k < e->op->nout; k++)
        for (size_t o = 0; o < outer; o++)
            for (size_t j = 0; j < part; j++)
                for (size_t i = 0; i < inner; i++)
                    st(e->m, OUTO(k), e->bufs[e->op->out[k]], (o * part + j) * inner + i,
                       ld(x, e->bufs[e->op->in[0]], (o * x->dims[a] + k * part + j) * inner + i));
    return 0;
}

static int run_op(const ex *e) {
    int32_t c = e->op->code;
    if (c == ANEURALNETWORKS_SPLIT) return k_split(e);
    if (c == ANEURALNETWORKS_RESHAPE) { /* same type and quantisation: the bytes */
        memcpy(e->bufs[e->op->out[0]], e->bufs[e->op->in[0]], fk_bytes(INO(0)));
        return 0;
    }
    size_t n = numel(OUTO(0));
    double *y = calloc(n ? n : 1, sizeof *y);
    if (!y) return ANEURALNETWORKS_OUT_OF_MEMORY;
    int rc;
    switch (c) {
    case ANEURALNETWORKS_SOFTMAX: rc = k_softmax(e, y); break;
    case ANEURALNETWORKS_MEAN: rc = k_mean(e, y); break;
    case ANEURALNETWORKS_FULLY_CONNECTED: rc = k_fc(e, y); break;
    case ANEURALNETWORKS_CONV_2D: rc = k_conv(e, y); break;
    case ANEURALNETWORKS_BATCH_MATMUL: rc = k_bmm(e, y); break;
    case ANEURALNETWORKS_CONCATENATION: rc = k_concat(e, y); break;
    case ANEURALNETWORKS_SLICE:
    case ANEURALNETWORKS_TRANSPOSE: rc = k_slice_transpose(e, y); break;
    case ANEURALNETWORKS_GATHER: rc = k_gather(e, y, 0); break;
    case ANEURALNETWORKS_EMBEDDING_LOOKUP: rc = k_gather(e, y, 1); break;
    case ANEURALNETWORKS_SELECT: rc = k_select(e, y); break;
    default: rc = k_elementwise(e, y); break;
    }
    if (!rc) store(e, e->op->out[0], y);
    free(y);
    return rc;
}

int fk_run(const struct ANeuralNetworksModel *m, uint8_t *const *bufs) {
    for (uint32_t i = 0; i < m->n_ops; i++) {
        ex e = {m, bufs, &m->ops[m->order[i]]};
        int rc = run_op(&e);
        if (rc) return fk_err(rc, "operation %u (%s) failed while running", m->order[i], fk_op_name(e.op->code));
    }
    return ANEURALNETWORKS_NO_ERROR;
}
