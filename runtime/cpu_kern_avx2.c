/* The AVX2 + FMA + F16C copy of the cpu kernels (x86-64). Compiled for that target whatever the
 * build flags, and only called when the CPU reports all three (cpu_kern.c), so a binary built for
 * plain x86-64 still uses it. */
#if defined(__x86_64__)

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#endif

#define EI_V8_IMPL 1
#define KSUF(n) n##_avx2
#include "runtime/cpu_kern.h"
#include "runtime/cpu_v8.h"
#include "runtime/cpu_kern_body.inc"
#include "runtime/cpu_kern_int.inc"

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

const ei_cpu_kernels ei_cpu_kernels_tab_avx2 = KSUF_TABLE("avx2");

#else
typedef int ei_cpu_kern_avx2_unused; /* ISO C: no empty translation unit */
#endif
