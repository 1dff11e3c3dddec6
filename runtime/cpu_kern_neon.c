/* The NEON copy of the cpu kernels (aarch64, where NEON is part of the base architecture). */
#if defined(__aarch64__) && defined(__ARM_NEON)

#define EI_V8_IMPL 2
#define KSUF(n) n##_neon
#include "runtime/cpu_kern.h"
#include "runtime/cpu_v8.h"
#include "runtime/cpu_kern_body.inc"
#include "runtime/cpu_kern_int.inc"

const ei_cpu_kernels ei_cpu_kernels_tab_neon = KSUF_TABLE("neon");

#else
typedef int ei_cpu_kern_neon_unused; /* ISO C: no empty translation unit */
#endif
