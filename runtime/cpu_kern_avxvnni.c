/* The AVX2 + AVX-VNNI copy of the cpu kernels (x86-64): the avx2 copy with vpdpbusd in the integer
 * dot products (one instruction for vpmaddubsw + vpmaddwd + vpaddd, the same int32 lanes). Compiled
 * for that target whatever the build flags and only called when CPUID reports AVX-VNNI
 * (cpu_kern.c); CPUs without it (most CI machines, pre-2021 x86-64) use the avx2 table, which gives
 * the same bits. */
#include "runtime/cpu_kern.h"

#if defined(__x86_64__) && defined(EI_CPU_HAVE_AVXVNNI)

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c,avxvnni"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avxvnni")
#endif

#define EI_V8_IMPL 1
#define EI_V8_VNNI 1
#define KSUF(n) n##_avxvnni
#include "runtime/cpu_v8.h"
#include "runtime/cpu_kern_body.inc"
#include "runtime/cpu_kern_int.inc"

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

const ei_cpu_kernels ei_cpu_kernels_tab_avxvnni = KSUF_TABLE("avx2-vnni");

#else
typedef int ei_cpu_kern_avxvnni_unused; /* ISO C: no empty translation unit */
#endif
