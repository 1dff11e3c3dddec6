/* The numeric core of post-training quantisation (deploy/quant.h, docs/quantisation.md). libc and
 * libm only. Rows are independent, so they run in parallel when OpenMP is on; per-row statistics
 * are combined afterwards in row order so the results do not depend on the thread count. */
#include "deploy/quant.h"

#include "core/ei_error.h"
#include "core/ei_half.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- names */

static const char *const scheme_names[EI_QW_COUNT] = {"f32", "f16", "w8", "w4g32", "w4g64", "w4g128"};
static const char *const act_names[EI_QA_COUNT] = {"float", "a16", "a8", "a8s"};
static const char *const kv_names[EI_QKV_COUNT] = {"f32", "f16", "i8"};

const char *ei_qscheme_name(ei_qscheme s) { return (unsigned)s < EI_QW_COUNT ? scheme_names[s] : "?"; }
const char *ei_qact_name(ei_qact a) { return (unsigned)a < EI_QA_COUNT ? act_names[a] : "?"; }
const char *ei_qkv_name(ei_qkv k) { return (unsigned)k < EI_QKV_COUNT ? kv_names[k] : "?"; }

static int parse_name(const char *s, const char *const *names, int n, const char *what, int *out) {
    for (int i = 0; i < n; i++)
        if (s && strcmp(s, names[i]) == 0) {
            *out = i;
            return 0;
        }
    char list[160];
    size_t k = 0;
    list[0] = '\0';
    for (int i = 0; i < n && k < sizeof list; i++)
        k += (size_t)snprintf(list + k, sizeof list - k, "%s%s", i ? ", " : "", names[i]);
    return ei_error_set("unknown %s '%s' (choices: %s)", what, s ? s : "", list);
}

int ei_qscheme_parse(const char *s, ei_qscheme *out) {
    int i = 0;
    if (parse_name(s, scheme_names, EI_QW_COUNT, "scheme", &i)) return -1;
    *out = (ei_qscheme)i;
    return 0;
}

int ei_qact_parse(const char *s, ei_qact *out) {
    int i = 0;
    if (parse_name(s, act_names, EI_QA_COUNT, "activation precision", &i)) return -1;
    *out = (ei_qact)i;
    return 0;
}

int ei_qkv_parse(const char *s, ei_qkv *out) {
    int i = 0;
    if (parse_name(s, kv_names, EI_QKV_COUNT, "kv_cache precision", &i)) return -1;
    *out = (ei_qkv)i;
    return 0;
}

/* ---------------------------------------------------------------- schemes and sizes */

ei_qscheme_info ei_qscheme_describe(ei_qscheme s) {
    switch (s) {
    case EI_QW_F16: return (ei_qscheme_info){EI_GT_F16, EI_GT_COUNT, EI_GQ_NONE, 0, 0};
    case EI_QW_W8: return (ei_qscheme_info){EI_GT_I8, EI_GT_F32, EI_GQ_CHANNEL, 0, 127};
    case EI_QW_W4G32: return (ei_qscheme_info){EI_GT_I4, EI_GT_F16, EI_GQ_GROUP, 32, 7};
    case EI_QW_W4G64: return (ei_qscheme_info){EI_GT_I4, EI_GT_F16, EI_GQ_GROUP, 64, 7};
    case EI_QW_W4G128: return (ei_qscheme_info){EI_GT_I4, EI_GT_F16, EI_GQ_GROUP, 128, 7};
    default: return (ei_qscheme_info){EI_GT_F32, EI_GT_COUNT, EI_GQ_NONE, 0, 0};
    }
}

ei_gquant ei_qscheme_gquant(ei_qscheme s, int32_t scales_index) {
    ei_qscheme_info in = ei_qscheme_describe(s);
    ei_gquant q = {EI_GQ_NONE, 0.0f, 0, 0, 0, 0};
    if (in.kind == EI_GQ_CHANNEL) q = (ei_gquant){EI_GQ_CHANNEL, 0.0f, 0, 0, 0, scales_index};
    if (in.kind == EI_GQ_GROUP) q = (ei_gquant){EI_GQ_GROUP, 0.0f, 0, 1, in.group, scales_index};
    return q;
}

int ei_qscheme_fits(ei_qscheme s, int64_t cols) {
    if ((unsigned)s >= EI_QW_COUNT || cols < 1) return 0;
    int32_t g = ei_qscheme_describe(s).group;
    return g == 0 || cols % g == 0;
}

ei_qscheme ei_qscheme_fit(ei_qscheme s, int64_t cols) {
    if (ei_qscheme_fits(s, cols) || ei_qscheme_describe(s).group == 0) return s;
    /* smaller groups cost a little more scale storage but are never less accurate */
    for (int t = (int)s - 1; t >= EI_QW_W4G32; t--)
        if (ei_qscheme_fits((ei_qscheme)t, cols)) return (ei_qscheme)t;
    return EI_QW_W8;
}

ei_qscheme ei_qscheme_gathered(ei_qscheme s) { return s >= EI_QW_W4G32 ? EI_QW_W8 : s; }

static int shape_ok(int64_t rows, int64_t cols) {
    return rows >= 1 && cols >= 1 && rows <= EI_G_MAX_NUMEL / cols && cols <= INT32_MAX && rows <= INT32_MAX;
}

int ei_qscheme_bytes(ei_qscheme s, int64_t rows, int64_t cols, uint64_t *data, uint64_t *scales) {
    if ((unsigned)s >= EI_QW_COUNT) return ei_error_set("quantisation: unknown scheme %d", (int)s);
    if (!shape_ok(rows, cols))
        return ei_error_set("quantisation: shape [%lld, %lld] is not positive or exceeds 2^40 elements",
                            (long long)rows, (long long)cols);
    ei_qscheme_info in = ei_qscheme_describe(s);
    if (!ei_qscheme_fits(s, cols))
        return ei_error_set("quantisation: %s needs rows whose length is a multiple of %d, not %lld", ei_qscheme_name(s),
                            (int)in.group, (long long)cols);
    uint64_t r = (uint64_t)rows, c = (uint64_t)cols, d, sc = 0;
    switch (s) {
    case EI_QW_F32: d = r * c * 4; break;
    case EI_QW_F16: d = r * c * 2; break;
    case EI_QW_W8: d = r * c, sc = r * 4; break;
    default: d = r * ((c + 1) / 2), sc = r * (c / (uint64_t)in.group) * 2; break;
    }
    if (data) *data = d;
    if (scales) *scales = sc;
    return 0;
}

uint64_t ei_qscheme_file_bytes(ei_qscheme s, int64_t rows, int64_t cols) {
    uint64_t d = 0, sc = 0;
    if (ei_qscheme_bytes(s, rows, cols, &d, &sc)) return 0;
    return ((d + 63) & ~(uint64_t)63) + ((sc + 63) & ~(uint64_t)63);
}

/* ---------------------------------------------------------------- int4 packing */

int ei_qi4_get(const uint8_t *data, int64_t cols, int64_t r, int64_t c) {
    uint8_t b = data[r * ((cols + 1) / 2) + c / 2];
    int v = c & 1 ? b >> 4 : b & 15;
    return v >= 8 ? v - 16 : v;
}

void ei_qi4_set(uint8_t *data, int64_t cols, int64_t r, int64_t c, int q) {
    uint8_t *b = &data[r * ((cols + 1) / 2) + c / 2];
    uint8_t nib = (uint8_t)((unsigned)q & 15u);
    *b = c & 1 ? (uint8_t)((*b & 0x0f) | (nib << 4)) : (uint8_t)((*b & 0xf0) | nib);
}

/* ---------------------------------------------------------------- scale selection */

void ei_qopts_default(ei_qopts *o) { *o = (ei_qopts){EI_QCLIP_MSE, 21, 0.5}; }

#define F16_MIN_SUB (1.0 / 16777216.0) /* 2^-24 */

/* Smallest value of the storage type >= s, clamped below (see quant.h). +inf when f16 overflows. */
static float scale_up(double s, int f16) {
    if (f16) {
        if (s < F16_MIN_SUB) s = F16_MIN_SUB;
        uint16_t h = ei_f32_to_f16((float)s);
        if ((double)ei_f16_to_f32(h) < s) h++; /* positive halves: the next code is the next value */
        return ei_f16_to_f32(h);
    }
    if (s < (double)FLT_MIN) s = FLT_MIN;
    float v = (float)s;
    if ((double)v < s) v = nextafterf(v, INFINITY);
    return v;
}

/* clamp(round_half_away(w * inv), -qmax, qmax) as a double. Clamping first gives the same integer
 * (qmax is one); truncation by an int32 conversion (|a| <= 127) plus the exact fraction test is
 * round(), written so that the loops below vectorise (GCC keeps trunc / floor scalar under strict
 * IEEE flags). */
static inline double quant1(float w, double inv, double qmax) {
    double r = (double)w * inv;
    double a = fabs(r);
    a = a < qmax ? a : qmax;
    double t = (double)(int32_t)a;
    t += a - t >= 0.5 ? 1.0 : 0.0;
    return copysign(t, r);
}

/* GCC turns the clamp into a branch once qmax is a known constant (after inlining or IPA cloning),
 * and the loop below then stays scalar (2-3x slower); noipa keeps the one vectorised body. */
#if defined(__GNUC__) && !defined(__clang__)
#define EI_NOIPA __attribute__((noipa))
#else
#define EI_NOIPA
#endif

/* Squared error of x[0..n-1] under scale s, with the dequantisation computed exactly as the final
 * one is. Four partial sums so the loop vectorises; the statistics use this same function, so the
 * search's comparisons and the reported errors agree bit for bit. */
EI_NOIPA static double group_sse(const float *x, int64_t n, float s, double qm) {
    double inv = 1.0 / (double)s, acc[4] = {0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 4 <= n; i += 4)
        for (int l = 0; l < 4; l++) {
            float d = (float)quant1(x[i + l], inv, qm) * s;
            double e = (double)x[i + l] - (double)d;
            acc[l] += e * e;
        }
    for (; i < n; i++) {
        float d = (float)quant1(x[i], inv, qm) * s;
        double e = (double)x[i] - (double)d;
        acc[0] += e * e;
    }
    return (acc[0] + acc[1]) + (acc[2] + acc[3]);
}

static float pick_scale(const float *x, int64_t n, int qmax, int f16, const ei_qopts *o) {
    float amax = 0.0f;
    for (int64_t i = 0; i < n; i++) amax = fmaxf(amax, fabsf(x[i]));
    if (amax == 0.0f) return 1.0f;
    float best = scale_up((double)amax / qmax, f16), prev = best;
    if (o->clip == EI_QCLIP_MAXABS || o->grid <= 1) return best;
    double best_sse = group_sse(x, n, best, qmax);
    for (int k = 1; k < o->grid; k++) {
        double c = 1.0 - k * (1.0 - o->clip_min) / (o->grid - 1);
        float s = scale_up(c * (double)amax / qmax, f16);
        if (s == prev) continue; /* coarse f16 scales repeat */
        prev = s;
        double sse = group_sse(x, n, s, qmax);
        if (sse < best_sse) best_sse = sse, best = s;
    }
    return best;
}

/* ---------------------------------------------------------------- weights */

typedef struct {
    int64_t clipped;
    double sse, sum_sq, max_err;
} row_stats;

/* One element's contribution; the squared error of quantised groups comes from group_sse. */
static void stats_add(row_stats *st, float w, float d, float s, int qmax, int quantised) {
    double e = fabs((double)w - (double)d);
    if (!quantised) st->sse += e * e;
    st->sum_sq += (double)w * (double)w;
    if (e > st->max_err) st->max_err = e;
    if (quantised && fabs((double)w) > (double)qmax * (double)s) st->clipped++;
}

static void quant_row(const float *w, int64_t r, int64_t cols, ei_qscheme s, const ei_qopts *o, void *data,
                      void *scales, row_stats *st) {
    const float *x = w + r * cols;
    memset(st, 0, sizeof *st);
    if (s == EI_QW_F32) {
        memcpy((float *)data + r * cols, x, (size_t)cols * sizeof(float));
        for (int64_t c = 0; c < cols; c++) stats_add(st, x[c], x[c], 0, 0, 0);
        return;
    }
    if (s == EI_QW_F16) {
        uint16_t *h = (uint16_t *)data + r * cols;
        for (int64_t c = 0; c < cols; c++) {
            h[c] = ei_f32_to_f16(x[c]);
            stats_add(st, x[c], ei_f16_to_f32(h[c]), 0, 0, 0);
        }
        return;
    }
    ei_qscheme_info in = ei_qscheme_describe(s);
    int64_t g = in.group ? in.group : cols, ng = cols / g;
    if (s == EI_QW_W4G32 || s == EI_QW_W4G64 || s == EI_QW_W4G128) /* an odd row's pad nibble is 0 */
        memset((uint8_t *)data + r * ((cols + 1) / 2), 0, (size_t)((cols + 1) / 2));
    for (int64_t j = 0; j < ng; j++) {
        const float *xg = x + j * g;
        float sc = pick_scale(xg, g, in.qmax, in.scale_type == EI_GT_F16, o);
        double inv = 1.0 / (double)sc;
        st->sse += group_sse(xg, g, sc, in.qmax);
        if (in.scale_type == EI_GT_F16) ((uint16_t *)scales)[r * ng + j] = ei_f32_to_f16(sc);
        else ((float *)scales)[r] = sc;
        for (int64_t i = 0; i < g; i++) {
            int q = (int)quant1(xg[i], inv, in.qmax);
            if (in.type == EI_GT_I8) ((int8_t *)data)[r * cols + j * g + i] = (int8_t)q;
            else ei_qi4_set(data, cols, r, j * g + i, q);
            stats_add(st, xg[i], (float)q * sc, sc, in.qmax, 1);
        }
    }
}

/* Values the scheme cannot take, found before any work so the parallel part cannot fail. */
static int check_values(const char *name, const float *w, int64_t rows, int64_t cols, ei_qscheme s) {
    ei_qscheme_info in = ei_qscheme_describe(s);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            float v = w[r * cols + c];
            if (!isfinite(v))
                return ei_error_set("tensor '%s': element [%lld, %lld] is %s; a weight must be finite", name,
                                    (long long)r, (long long)c, isnan(v) ? "NaN" : v > 0 ? "+inf" : "-inf");
            if (s == EI_QW_F16 && fabsf(v) >= 65520.0f)
                return ei_error_set("tensor '%s': element [%lld, %lld] = %g exceeds the f16 range (65504)", name,
                                    (long long)r, (long long)c, (double)v);
            /* w4 scales are f16: the max-abs scale m / 7 must stay finite */
            if (in.scale_type == EI_GT_F16 && fabs((double)v) > 65504.0 * in.qmax)
                return ei_error_set("tensor '%s': element [%lld, %lld] = %g needs a %s scale above the f16 range "
                                    "(|w| <= %g); use w8, f16 or f32",
                                    name, (long long)r, (long long)c, (double)v, ei_qscheme_name(s), 65504.0 * in.qmax);
        }
    return 0;
}

int ei_quantize_weight(const char *name, const float *w, int64_t rows, int64_t cols, ei_qscheme s,
                       const ei_qopts *opts, void *data, void *scales, ei_qstats *stats) {
    name = name ? name : "?";
    ei_qopts o;
    if (opts) o = *opts;
    else ei_qopts_default(&o);
    if (o.grid < 1 || !(o.clip_min > 0.0 && o.clip_min <= 1.0) || (o.clip != EI_QCLIP_MSE && o.clip != EI_QCLIP_MAXABS))
        return ei_error_set("tensor '%s': bad quantisation options (grid %d, clip_min %g)", name, o.grid, o.clip_min);
    if ((unsigned)s >= EI_QW_COUNT) return ei_error_set("tensor '%s': unknown scheme %d", name, (int)s);
    if (s != EI_QW_F32 && s != EI_QW_F16 && !ei_qscheme_fits(s, cols) && shape_ok(rows, cols))
        return ei_error_set("tensor '%s': %s needs rows whose length is a multiple of %d, but [%lld, %lld] has %lld "
                            "(the graph IR has no partial groups; %s fits)",
                            name, ei_qscheme_name(s), (int)ei_qscheme_describe(s).group, (long long)rows,
                            (long long)cols, (long long)cols, ei_qscheme_name(ei_qscheme_fit(s, cols)));
    if (ei_qscheme_bytes(s, rows, cols, NULL, NULL)) return ei_error_prefix("tensor '%s': ", name);
    if (!w || !data || (ei_qscheme_describe(s).scale_type != EI_GT_COUNT && !scales))
        return ei_error_set("tensor '%s': NULL buffer", name);
    if (check_values(name, w, rows, cols, s)) return -1;
    row_stats *rs = malloc((size_t)rows * sizeof *rs);
    if (!rs) return ei_error_set("tensor '%s': out of memory", name);
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 16)
#endif
    for (int64_t r = 0; r < rows; r++) quant_row(w, r, cols, s, &o, data, scales, &rs[r]);
    if (stats) {
        memset(stats, 0, sizeof *stats);
        stats->n = rows * cols;
        for (int64_t r = 0; r < rows; r++) {
            stats->clipped += rs[r].clipped;
            stats->sse += rs[r].sse;
            stats->sum_sq += rs[r].sum_sq;
            if (rs[r].max_err > stats->max_err) stats->max_err = rs[r].max_err;
        }
    }
    free(rs);
    return 0;
}

int ei_dequantize_weight(ei_qscheme s, int64_t rows, int64_t cols, const void *data, const void *scales, float *out) {
    if (ei_qscheme_bytes(s, rows, cols, NULL, NULL)) return -1;
    ei_qscheme_info in = ei_qscheme_describe(s);
    if (!data || !out || (in.scale_type != EI_GT_COUNT && !scales)) return ei_error_set("dequantise: NULL buffer");
    int64_t g = in.group ? in.group : cols, ng = cols / g;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            int64_t i = r * cols + c;
            switch (s) {
            case EI_QW_F32: out[i] = ((const float *)data)[i]; break;
            case EI_QW_F16: out[i] = ei_f16_to_f32(((const uint16_t *)data)[i]); break;
            case EI_QW_W8: out[i] = (float)((const int8_t *)data)[i] * ((const float *)scales)[r]; break;
            default:
                out[i] = (float)ei_qi4_get(data, cols, r, c) * ei_f16_to_f32(((const uint16_t *)scales)[r * ng + c / g]);
                break;
            }
        }
    return 0;
}

int ei_qtensor_quantize(ei_qtensor *q, const char *name, const float *w, int64_t rows, int64_t cols, ei_qscheme s,
                        const ei_qopts *opts) {
    memset(q, 0, sizeof *q);
    uint64_t db = 0, sb = 0;
    if (ei_qscheme_bytes(s, rows, cols, &db, &sb)) return ei_error_prefix("tensor '%s': ", name ? name : "?");
    q->data = malloc(db ? db : 1);
    q->scales = sb ? malloc(sb) : NULL;
    if (!q->data || (sb && !q->scales)) {
        ei_qtensor_free(q);
        return ei_error_set("tensor '%s': out of memory (%llu bytes)", name ? name : "?", (unsigned long long)(db + sb));
    }
    q->scheme = s, q->rows = rows, q->cols = cols, q->data_bytes = db, q->scale_bytes = sb;
    if (ei_quantize_weight(name, w, rows, cols, s, opts, q->data, q->scales, &q->stats)) {
        ei_qtensor_free(q);
        return -1;
    }
    return 0;
}

void ei_qtensor_free(ei_qtensor *q) {
    free(q->data);
    free(q->scales);
    memset(q, 0, sizeof *q);
}

/* ---------------------------------------------------------------- activations */

void ei_qrange_init(ei_qrange *r) { *r = (ei_qrange){0.0f, 0.0f, 0}; }

int ei_qrange_update(ei_qrange *r, const float *x, int64_t n, const char *name) {
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(x[i]))
            return ei_error_set("activation '%s': element %lld is %s during calibration", name ? name : "?",
                                (long long)i, isnan(x[i]) ? "NaN" : "infinite");
        if (r->n == 0 && i == 0) r->lo = r->hi = x[i];
        r->lo = fminf(r->lo, x[i]);
        r->hi = fmaxf(r->hi, x[i]);
    }
    r->n += n;
    return 0;
}

int ei_qact_params(ei_qact a, float lo, float hi, ei_qaparams *p) {
    if (!isfinite(lo) || !isfinite(hi) || lo > hi)
        return ei_error_set("activation range [%g, %g] is not a finite interval", (double)lo, (double)hi);
    lo = fminf(lo, 0.0f), hi = fmaxf(hi, 0.0f);
    double amax = fmax(-(double)lo, (double)hi);
    switch (a) {
    case EI_QA_FLOAT: *p = (ei_qaparams){EI_GT_F32, 0.0f, 0, 0, 0}; return 0;
    case EI_QA_A16:
    case EI_QA_A8S: {
        int big = a == EI_QA_A16;
        double qm = big ? 32767.0 : 127.0;
        float s = amax > 0 ? (float)(amax / qm) : 1.0f;
        if (!(s > 0.0f)) s = FLT_MIN; /* a range of subnormals */
        *p = (ei_qaparams){big ? EI_GT_I16 : EI_GT_I8, s, 0, big ? -32768 : -128, big ? 32767 : 127};
        return 0;
    }
    case EI_QA_A8: {
        double span = (double)hi - (double)lo;
        float s = span > 0 ? (float)(span / 255.0) : 1.0f;
        if (!(s > 0.0f)) s = FLT_MIN;
        double zp = round(-128.0 - (double)lo / (double)s);
        zp = zp < -128 ? -128 : zp > 127 ? 127 : zp;
        *p = (ei_qaparams){EI_GT_I8, s, (int32_t)zp, -128, 127};
        return 0;
    }
    default: return ei_error_set("unknown activation precision %d", (int)a);
    }
}

void ei_qact_quantize(const ei_qaparams *p, const float *x, int64_t n, void *q) {
    for (int64_t i = 0; i < n; i++) {
        /* the quotient in double, as the runtime's cpu backend (cpu_convert.c) and the NNAPI
         * conformance library take it, so that all three round a near-.5 value alike */
        const double r = round((double)x[i] / (double)p->scale);
        double v = r != r ? p->zero_point : r + p->zero_point;
        v = v < p->qmin ? p->qmin : v > p->qmax ? p->qmax : v;
        if (p->type == EI_GT_I16) ((int16_t *)q)[i] = (int16_t)v;
        else ((int8_t *)q)[i] = (int8_t)v;
    }
}

void ei_qact_dequantize(const ei_qaparams *p, const void *q, int64_t n, float *x) {
    for (int64_t i = 0; i < n; i++) {
        int32_t v = p->type == EI_GT_I16 ? ((const int16_t *)q)[i] : ((const int8_t *)q)[i];
        x[i] = (float)(v - p->zero_point) * p->scale;
    }
}
