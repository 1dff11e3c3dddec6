#include "kernels/infer_kernels.h"

#include "kernels/kernels.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

/* Below this much work (multiply-adds) an OpenMP region costs more than it saves, especially on
 * a loaded machine where waking threads is slow. */
#define EI_K_PAR_MIN (1L << 21)

float ei_k_dot(const float *a, const float *b, int n) {
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

void ei_k_rmsnorm(float *out, const float *x, const float *w, int n_rows, int dim, float eps) {
#pragma omp parallel for schedule(static) if ((long)n_rows * dim >= EI_K_PAR_MIN)
    for (int r = 0; r < n_rows; r++) {
        const float *xr = x + (size_t)r * dim;
        float *o = out + (size_t)r * dim;
        float ss = ei_k_dot(xr, xr, dim);
        float inv = 1.0f / sqrtf(ss / (float)dim + eps);
        for (int i = 0; i < dim; i++) o[i] = xr[i] * inv * w[i];
    }
}

void ei_k_linear(float *y, const float *x, const float *W, const float *b, int n_rows, int n_in, int n_out) {
    if (n_rows <= 0 || n_out <= 0) return;
    if (n_rows == 1) {
        ei_k_blas_init(); /* OpenBLAS stays single-threaded next to the OpenMP team */
        cblas_sgemv(CblasRowMajor, CblasNoTrans, n_out, n_in, 1.0f, W, n_in, x, 1, 0.0f, y, 1);
    } else {
        /* through the engine's GEMM: OpenBLAS is pinned to one thread, the blocks go to the OpenMP team */
        ei_k_gemm_f32(0, 1, n_rows, n_out, n_in, 1.0f, x, n_in, W, n_in, 0.0f, y, n_out);
    }
    if (b) {
        for (int r = 0; r < n_rows; r++) {
            float *yr = y + (size_t)r * n_out;
            for (int i = 0; i < n_out; i++) yr[i] += b[i];
        }
    }
}

void ei_k_rope_table(float *cos_tab, float *sin_tab, int n_pos, int head_dim, double theta) {
    int half = head_dim / 2;
    for (int j = 0; j < half; j++) {
        double inv_freq = pow(theta, -2.0 * j / (double)head_dim);
        for (int p = 0; p < n_pos; p++) {
            double a = (double)p * inv_freq;
            cos_tab[(size_t)p * half + j] = (float)cos(a);
            sin_tab[(size_t)p * half + j] = (float)sin(a);
        }
    }
}

void ei_k_rope(float *x, int n_rows, size_t row_stride, int n_heads, int head_dim, const int32_t *pos,
               const float *cos_tab, const float *sin_tab, int interleaved) {
    int half = head_dim / 2;
#pragma omp parallel for schedule(static) if ((long)n_rows * n_heads * head_dim >= EI_K_PAR_MIN)
    for (int r = 0; r < n_rows; r++) {
        const float *c = cos_tab + (size_t)pos[r] * half;
        const float *s = sin_tab + (size_t)pos[r] * half;
        for (int h = 0; h < n_heads; h++) {
            float *v = x + (size_t)r * row_stride + (size_t)h * head_dim;
            if (interleaved) {
                for (int j = 0; j < half; j++) {
                    float a = v[2 * j], b = v[2 * j + 1];
                    v[2 * j] = a * c[j] - b * s[j];
                    v[2 * j + 1] = a * s[j] + b * c[j];
                }
            } else {
                for (int j = 0; j < half; j++) {
                    float a = v[j], b = v[j + half];
                    v[j] = a * c[j] - b * s[j];
                    v[j + half] = b * c[j] + a * s[j];
                }
            }
        }
    }
}

void ei_k_softmax(float *x, int n) {
    if (n <= 0) return;
    float m = x[0];
    for (int i = 1; i < n; i++)
        if (x[i] > m) m = x[i];
    float sum = 0.0f;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - m);
        sum += x[i];
    }
    float inv = 1.0f / sum;
    for (int i = 0; i < n; i++) x[i] *= inv;
}

void ei_k_swiglu(float *out, const float *gate, const float *up, size_t n) {
#pragma omp parallel for schedule(static) if (n >= EI_K_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

/* exp(x) for x <= 0 (softmax terms), vectorisable: kernels.h's Cephes polynomial (about 1 ulp). */
#define exp_nonpos ei_k_exp_nonpos_f32

/* Keys are processed in blocks: one rescale of the accumulator per block instead of per key. */
#define EI_K_ATT_BLOCK 64

void ei_k_attention(float *out, const float *q, const float *k, const float *v, int n_q, int n_k,
                    int n_heads, int n_kv_heads, int head_dim, int q_offset, const uint8_t *key_valid,
                    float scale) {
    int group = n_heads / n_kv_heads;
    size_t qs = (size_t)n_heads * head_dim, ks = (size_t)n_kv_heads * head_dim;
    long work = (long)n_q * n_heads * n_k * head_dim;
#pragma omp parallel for collapse(2) schedule(static) if (work >= EI_K_PAR_MIN)
    for (int i = 0; i < n_q; i++) {
        for (int h = 0; h < n_heads; h++) {
            const float *qh = q + (size_t)i * qs + (size_t)h * head_dim;
            size_t koff = (size_t)(h / group) * head_dim;
            float *o = out + (size_t)i * qs + (size_t)h * head_dim;
            float acc[EI_K_MAX_HEAD_DIM], sc[EI_K_ATT_BLOCK];
            memset(acc, 0, sizeof(float) * (size_t)head_dim);
            /* Online softmax over blocks: running max m and normaliser l; acc = sum_j exp(s_j - m) v_j. */
            float m = -INFINITY, l = 0.0f;
            int n_vis = q_offset + i + 1 < n_k ? q_offset + i + 1 : n_k;
            for (int j0 = 0; j0 < n_vis; j0 += EI_K_ATT_BLOCK) {
                int nb = n_vis - j0 < EI_K_ATT_BLOCK ? n_vis - j0 : EI_K_ATT_BLOCK;
                float bm = -INFINITY;
                for (int jj = 0; jj < nb; jj++) {
                    int j = j0 + jj;
                    if (key_valid && !key_valid[j]) {
                        sc[jj] = -INFINITY;
                        continue;
                    }
                    sc[jj] = ei_k_dot(qh, k + (size_t)j * ks + koff, head_dim) * scale;
                    if (sc[jj] > bm) bm = sc[jj];
                }
                if (bm == -INFINITY) continue;
                if (bm > m) {
                    float r = m == -INFINITY ? 0.0f : exp_nonpos(m - bm);
                    l *= r;
                    for (int t = 0; t < head_dim; t++) acc[t] *= r;
                    m = bm;
                }
#pragma omp simd
                for (int jj = 0; jj < nb; jj++) sc[jj] = exp_nonpos(sc[jj] - m); /* masked: exp(-inf) = 0 */
                for (int jj = 0; jj < nb; jj++) {
                    float p = sc[jj];
                    if (p == 0.0f) continue;
                    const float *vj = v + (size_t)(j0 + jj) * ks + koff;
                    l += p;
                    for (int t = 0; t < head_dim; t++) acc[t] += p * vj[t];
                }
            }
            float inv = l > 0.0f ? 1.0f / l : 0.0f;
            for (int t = 0; t < head_dim; t++) o[t] = acc[t] * inv;
        }
    }
}

/* Softmax of the first n_vis entries of row (scaled scores), zeros after them. */
static void softmax_prefix(float *row, int n_vis, int n) {
    float m = -INFINITY;
#pragma omp simd reduction(max : m)
    for (int j = 0; j < n_vis; j++) m = row[j] > m ? row[j] : m;
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int j = 0; j < n_vis; j++) {
        row[j] = exp_nonpos(row[j] - m);
        sum += row[j];
    }
    float inv = 1.0f / sum;
    for (int j = 0; j < n_vis; j++) row[j] *= inv;
    for (int j = n_vis; j < n; j++) row[j] = 0.0f;
}

void ei_k_attention_gemm(float *out, const float *q, const float *k, const float *v, int n_q, int n_k,
                         int n_heads, int n_kv_heads, int head_dim, int q_offset, float scale, float *scratch) {
    int group = n_heads / n_kv_heads;
    int qs = n_heads * head_dim, ks = n_kv_heads * head_dim;
    int n_use = q_offset + n_q < n_k ? q_offset + n_q : n_k; /* keys any row can see */
    for (int h = 0; h < n_heads; h++) {
        int g = h / group;
        ei_k_gemm_f32(0, 1, n_q, n_use, head_dim, scale, q + (size_t)h * head_dim, qs, k + (size_t)g * head_dim, ks,
                      0.0f, scratch, n_use);
#pragma omp parallel for schedule(static) if ((long)n_q * n_use >= EI_K_PAR_MIN)
        for (int i = 0; i < n_q; i++) {
            int n_vis = q_offset + i + 1 < n_use ? q_offset + i + 1 : n_use;
            softmax_prefix(scratch + (size_t)i * n_use, n_vis, n_use);
        }
        ei_k_gemm_f32(0, 0, n_q, head_dim, n_use, 1.0f, scratch, n_use, v + (size_t)g * head_dim, ks, 0.0f,
                      out + (size_t)h * head_dim, qs);
    }
}

double ei_k_nll(const float *logits, int n, int target) {
    float m = logits[0];
    for (int i = 1; i < n; i++)
        if (logits[i] > m) m = logits[i];
    double s = 0.0;
    for (int i = 0; i < n; i++) s += exp((double)logits[i] - m);
    return log(s) + m - (double)logits[target];
}
