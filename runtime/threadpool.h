/* A small persistent thread pool for the cpu backend (device side: pthreads only).
 *
 * ei_tp_run(tp, fn, ctx) calls fn(ctx, tid, nth) once on each of nth threads (the caller is tid 0)
 * and returns when all have finished. Work is split by the callee with a fixed static partition
 * (ei_tp_range), so which element a thread computes never depends on timing: together with kernels
 * that never split a reduction, results are bit-identical for any thread count.
 *
 * Wake-up: a decode step is ~100 short parallel regions, so workers spin on a generation counter
 * for a short while after each region (cheap wake-up when the next region follows soon) and then
 * sleep on a condition variable, so an idle pool costs no CPU while the process waits for
 * something else. One region runs at a time: ei_tp_run from two threads at once is serialised. */
#ifndef EI_RUNTIME_THREADPOOL_H
#define EI_RUNTIME_THREADPOOL_H

#include <stdint.h>

typedef struct ei_tp ei_tp;
typedef void (*ei_tp_fn)(void *ctx, int tid, int nth);

/* threads: total including the caller (<= 1: no workers, ei_tp_run calls fn inline). NULL with
 * ei_error set on failure. */
ei_tp *ei_tp_new(int threads);
void ei_tp_free(ei_tp *tp);
int ei_tp_threads(const ei_tp *tp);

/* Runs fn on every thread of the pool (tp NULL: inline with nth = 1). */
void ei_tp_run(ei_tp *tp, ei_tp_fn fn, void *ctx);
/* Like ei_tp_run but with at most nth_max threads (>= 1): small jobs use fewer. */
void ei_tp_run_n(ei_tp *tp, int nth_max, ei_tp_fn fn, void *ctx);

/* The static share [*lo, *hi) of thread tid among nth of n items, boundaries rounded to multiples
 * of align (>= 1) except the last. */
void ei_tp_range(int64_t n, int tid, int nth, int64_t align, int64_t *lo, int64_t *hi);

#endif
