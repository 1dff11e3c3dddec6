/* CPU kernels used by the autograd engine (and usable by any other module): a row-major GEMM
 * wrapper over OpenBLAS, fused causal GQA attention (forward / backward), RMSNorm and RoPE.
 *
 * Every function exists for float (_f32) and double (_f64). Buffers are caller-owned, row-major and
 * contiguous; nothing here allocates. Backward kernels ADD into their gradient outputs (+=), so
 * gradients from several consumers can accumulate; pass NULL for a gradient that is not wanted.
 *
 * Threads: one pool only. Every kernel, GEMM included, runs on the OpenMP team; OpenBLAS is pinned
 * to one thread (ei_k_threads_set / the first GEMM do that), and ei_k_gemm_* cuts large products
 * into fixed blocks shared by the team. Two spinning pools (OpenBLAS pthreads + libgomp) alternating
 * on 2 cores ran 2.5x slower than one thread. Work is partitioned so that every output element is
 * reduced in one fixed order: results are bit-identical for any thread count. Calling these
 * kernels from inside an OpenMP parallel region is allowed (they then run on the calling thread). */
#ifndef EI_KERNELS_H
#define EI_KERNELS_H

#include <stdint.h>

/* Bitwise select c ? a : b. Float compares feeding a plain ?: are not if-converted under GCC's
 * default -ftrapping-math, which leaves the whole loop scalar; an integer mask is. */
static inline float ei_k_select_f32(int c, float a, float b) {
    union {
        float f;
        int32_t i;
    } ua = {a}, ub = {b};
    const int32_t m = -(int32_t)(c != 0);
    ua.i = (ua.i & m) | (ub.i & ~m);
    return ua.f;
}

/* a * b + c, fused where the target has the instruction (ISO C mode does not contract a * b + c
 * by itself), else the plain expression: a libm fmaf call would not vectorise. */
#if defined(__FMA__) || defined(__aarch64__)
#define EI_K_FMA(a, b, c) __builtin_fmaf((a), (b), (c))
#else
#define EI_K_FMA(a, b, c) ((a) * (b) + (c))
#endif

/* exp(x) for x <= 0 in float (softmax terms), written so that loops over it vectorise: Cephes'
 * expf polynomial (about 1 ulp) on the reduced argument x - n ln2, n rounded to nearest through the
 * 1.5 * 2^23 shift (whose low mantissa bits then hold n), scaled by 2^n through the exponent bits.
 * x below -87.3 (where expf leaves the normal range) and -INFINITY give exactly 0, so masked
 * scores drop out; x > 0 is treated as 0 and NaN stays NaN. libm's expf is a call per element
 * that the compiler cannot vectorise; in the attention kernels it was a third of the training
 * time. */
static inline float ei_k_exp_nonpos_f32(float x) {
    /* both clamps keep NaN (their compares are false for it); there is no float-to-int cast, so a
     * NaN only flows through the bits and comes out as NaN */
    float xc = ei_k_select_f32(x < -87.3f, -87.3f, x);
    xc = ei_k_select_f32(xc > 0.0f, 0.0f, xc);
    union {
        float f;
        uint32_t u;
    } t = {xc * 1.44269504088896341f + 12582912.0f};
    const float n = t.f - 12582912.0f;
    const float r = EI_K_FMA(n, 2.12194440e-4f, EI_K_FMA(n, -0.693359375f, xc));
    float p = 1.9875691500e-4f;
    p = EI_K_FMA(p, r, 1.3981999507e-3f);
    p = EI_K_FMA(p, r, 8.3334519073e-3f);
    p = EI_K_FMA(p, r, 4.1665795894e-2f);
    p = EI_K_FMA(p, r, 1.6666665459e-1f);
    p = EI_K_FMA(p, r, 5.0000001201e-1f);
    const float y = EI_K_FMA(p * r, r, r) + 1.0f;
    union {
        uint32_t u;
        float f;
    } scale = {(t.u - 0x4B400000u + 127u) << 23}; /* 2^n, n >= -126 after the clamp; unsigned: wraps, never UB */
    const float res = y * scale.f;
    return ei_k_select_f32(x < -87.3f, 0.0f, res);
}

/* Work (elements touched) below which a kernel stays single-threaded: waking a team costs more
 * than it saves on tiny tensors, and far more when the cores are shared. The one threshold of the
 * host kernels and the autograd ops. */
#define EI_KERNELS_PAR_MIN 32768

/* Sets the OpenMP thread count (n >= 1) used by every kernel; OpenBLAS stays at one thread. */
void ei_k_threads_set(int n);
int ei_k_threads_get(void);
/* Pins OpenBLAS to one thread (idempotent, thread-safe). Every kernel that calls BLAS does it.
 * It also replaces OpenBLAS's generic Prescott kernels, which 0.3.21 picks on CPUs it does not
 * know, by the best AVX-512 / AVX2 set the CPU runs (gemm.c; OPENBLAS_CORETYPE set by the user
 * wins). */
void ei_k_blas_init(void);

/* How long an idle OpenMP thread spins before it sleeps, as a program's main() sets it: when
 * neither OMP_WAIT_POLICY nor GOMP_SPINCOUNT is in the environment, sets GOMP_SPINCOUNT from the
 * machine's load (ei_k_spin_for_load) and re-executes the program (/proc/self/exe, same argv and
 * environment), because libgomp reads both variables once, in its constructor, before main runs.
 * Returns 0 when nothing was needed, -1 when the re-exec failed (the program then runs on with
 * libgomp's default); on success it does not return. Call it first in main, before any output or
 * threads. Why (gemm.c): libgomp's default of 300,000 spins made a 2-thread training step 10x
 * slower on a loaded machine, while on an idle one 1000 spins cost 10-20% of a training step.
 * Not under valgrind (LD_PRELOAD names its vgpreload library): the exec would leave the tool. `ei`
 * calls it for train, eval, generate and compile. */
#define EI_K_SPINCOUNT "1000"        /* other tasks are running */
#define EI_K_SPINCOUNT_IDLE "300000" /* libgomp's default: the cores are free */
/* The GOMP_SPINCOUNT for a machine of ncpu CPUs with `others` runnable tasks besides this one
 * (-1: unknown): EI_K_SPINCOUNT_IDLE when the team has the cores to itself (no other task below
 * 8 CPUs; fewer than one per 8 CPUs above), else EI_K_SPINCOUNT. A static string. */
const char *ei_k_spin_for_load(int ncpu, int others);
/* Runnable tasks of other processes, from proc (normally "/proc"): procs_running of proc/stat less
 * this process's runnable threads (proc/self/task/<tid>/stat state R; OpenBLAS's pool spins there
 * before main), the fewest of three readings 2 ms apart; -1 when unreadable. */
int ei_k_others_running(const char *proc);
int ei_k_process_init(char **argv);

/* C = alpha * op(A) op(B) + beta * C, row-major. op(A) is M x K, op(B) is K x N; lda/ldb/ldc are
 * the row strides of A, B, C as stored. */
void ei_k_gemm_f32(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                   int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc);
void ei_k_gemm_f64(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, double alpha, const double *a,
                   int64_t lda, const double *b, int64_t ldb, double beta, double *c, int64_t ldc);
/* The same product as one BLAS call on the calling thread, never cut into blocks: for kernels whose
 * own OpenMP tasks are the parallelism (the attention's tiles), where ei_k_gemm_* would run its
 * blocks one after the other on the task's thread. The result depends on the shape only. */
void ei_k_gemm_tile_f32(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                        int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc);
void ei_k_gemm_tile_f64(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, double alpha, const double *a,
                        int64_t lda, const double *b, int64_t ldb, double beta, double *c, int64_t ldc);

/* Attention problem: q [tq, h, d], k [tk, hkv, d], v [tk, hkv, dv], out [tq, h, dv],
 * lse [h, tq] (per-row logsumexp of the scaled, masked scores; -INFINITY for a row that sees no
 * key, whose output is 0). Query head hh uses KV head hh / (h / hkv). Query i sees key j iff
 * j <= causal_offset + i (INT64_MAX: all keys) and the key is valid (valid_u8 / valid_i32 both
 * NULL: all valid; otherwise the non-NULL one, [tk], nonzero = valid). */
#define EI_K_ATTN_MAX_PARTS 4
typedef struct {
    int64_t tq, tk, h, hkv, d, dv;
    double scale;
    int64_t causal_offset;
    const uint8_t *valid_u8;
    const int32_t *valid_i32;
    /* Keys in parts (a segment's sink, window and own rows, without concatenating them): n_parts
     * 0 or 1 means one part of tk rows; else part i holds part_len[i] rows, keys in part order,
     * sum = tk. The causal rule and the valid mask index the keys of all parts in that order. Key
     * tiles never span two parts, so the parts change how the softmax is blocked and results move
     * by rounding against one part. */
    int n_parts;
    int64_t part_len[EI_K_ATTN_MAX_PARTS];
} ei_k_attn;

/* Online softmax over key blocks; no tq x tk buffer. */
void ei_k_attention_forward_f32(const ei_k_attn *p, const float *q, const float *k, const float *v, float *out,
                                float *lse);
void ei_k_attention_forward_f64(const ei_k_attn *p, const double *q, const double *k, const double *v,
                                double *out, double *lse);
/* The forward, also storing what the backward needs instead of recomputing the scores: pst holds
 * ei_k_attention_p_len(p) values (tq x tk probabilities before normalisation plus their per-tile
 * maxima), filled on the visible parts only. Materialises [h, tq, tk]: meant for one segment plus
 * its caches, not for long sequences. */
int64_t ei_k_attention_p_len(const ei_k_attn *p);
void ei_k_attention_forward_p_f32(const ei_k_attn *p, const float *q, const float *k, const float *v, float *out,
                                  float *lse, float *pst);
void ei_k_attention_forward_p_f64(const ei_k_attn *p, const double *q, const double *k, const double *v,
                                  double *out, double *lse, double *pst);
/* Recomputes the scores. delta is scratch of h * tq values (overwritten). dq, dk, dv: += .
 * Two passes over the scores (one for dq, one for dk/dv). */
void ei_k_attention_backward_f32(const ei_k_attn *p, const float *q, const float *k, const float *v,
                                 const float *out, const float *lse, const float *dout, float *delta, float *dq,
                                 float *dk, float *dv);
void ei_k_attention_backward_f64(const ei_k_attn *p, const double *q, const double *k, const double *v,
                                 const double *out, const double *lse, const double *dout, double *delta,
                                 double *dq, double *dk, double *dv);
/* The same backward in one pass over the scores (half the exponentials and score products): each
 * key tile writes its share of dq into the workspace, and the shares are added in tile order, so
 * the result stays independent of the thread count. ws: ei_k_attention_ws_len(p) values of the
 * kernel's type (overwritten; delta included). pst: NULL (recompute the scores) or the store of
 * ei_k_attention_forward_p from the same inputs. dq, dk, dv: += . */
int64_t ei_k_attention_ws_len(const ei_k_attn *p);
/* The single-array functions take k, v (and dk, dv) as one array of tk rows, cut into p's parts
 * when it has several; the _parts ones take an array of p->n_parts part pointers each (dk, dv NULL,
 * or NULL entries, for gradients not wanted). */
void ei_k_attention_forward_parts_f32(const ei_k_attn *p, const float *q, const float *const *k,
                                      const float *const *v, float *out, float *lse, float *pst);
void ei_k_attention_forward_parts_f64(const ei_k_attn *p, const double *q, const double *const *k,
                                      const double *const *v, double *out, double *lse, double *pst);
void ei_k_attention_backward_parts_f32(const ei_k_attn *p, const float *q, const float *const *k,
                                       const float *const *v, const float *out, const float *lse,
                                       const float *dout, float *ws, const float *pst, float *dq,
                                       float *const *dk, float *const *dv);
void ei_k_attention_backward_parts_f64(const ei_k_attn *p, const double *q, const double *const *k,
                                       const double *const *v, const double *out, const double *lse,
                                       const double *dout, double *ws, const double *pst, double *dq,
                                       double *const *dk, double *const *dv);
void ei_k_attention_backward_ws_f32(const ei_k_attn *p, const float *q, const float *k, const float *v,
                                    const float *out, const float *lse, const float *dout, float *ws,
                                    const float *pst, float *dq, float *dk, float *dv);
void ei_k_attention_backward_ws_f64(const ei_k_attn *p, const double *q, const double *k, const double *v,
                                    const double *out, const double *lse, const double *dout, double *ws,
                                    const double *pst, double *dq, double *dk, double *dv);

/* RMSNorm over rows of length dim: y = x * rstd * w (w NULL = 1), rstd[r] = 1/sqrt(mean(x^2)+eps)
 * is stored for the backward. */
void ei_k_rmsnorm_forward_f32(int64_t rows, int64_t dim, const float *x, const float *w, double eps, float *y,
                              float *rstd);
void ei_k_rmsnorm_forward_f64(int64_t rows, int64_t dim, const double *x, const double *w, double eps, double *y,
                              double *rstd);
/* dx += (dx = when overwrite: a gradient's first write, its old contents ignored), dw += (dw
 * reduced over rows in a fixed order). */
void ei_k_rmsnorm_backward_f32(int64_t rows, int64_t dim, const float *x, const float *w, const float *rstd,
                               const float *dy, float *dx, int overwrite, float *dw);
void ei_k_rmsnorm_backward_f64(int64_t rows, int64_t dim, const double *x, const double *w, const double *rstd,
                               const double *dy, double *dx, int overwrite, double *dw);

/* RoPE, one table generator and one rotation. Layout 0 = interleaved pairs (2i, 2i+1), 1 =
 * rotate-half pairs (i, i + d/2); angle of pair i: pos * theta^(-2i/d), computed in double and
 * rounded once. ei_k_rope_angles_* fills cs [t, d/2, 2] with (cos, sin) of the pair angles of
 * positions pos[0..t) (pos NULL: positions 0 .. t-1). ei_k_rope_tab_* rotates row r of x [t, h, d]
 * by the table row idx[r] (idx NULL: row r), so a table over positions 0..P-1 serves any positions
 * in that range without recomputing; inverse = 1 rotates by the negative angle (the backward:
 * dx = R^T dy). add = 1 ADDS into y (a gradient being accumulated), add = 0 writes y. */
void ei_k_rope_angles_f32(int64_t t, int64_t d, const int32_t *pos, double theta, float *cs);
void ei_k_rope_angles_f64(int64_t t, int64_t d, const int32_t *pos, double theta, double *cs);
void ei_k_rope_tab_f32(int64_t t, int64_t h, int64_t d, const float *cs, const int32_t *idx, int layout, int inverse,
                       int add, const float *x, float *y);
void ei_k_rope_tab_f64(int64_t t, int64_t h, int64_t d, const double *cs, const int32_t *idx, int layout,
                       int inverse, int add, const double *x, double *y);

#endif
