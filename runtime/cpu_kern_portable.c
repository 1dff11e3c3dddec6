/* The portable C copy of the cpu kernels: the reference every SIMD copy must match bit for bit,
 * and what runs on CPUs without AVX2 / NEON. */
#define EI_V8_IMPL 0
#define KSUF(n) n##_portable
#include "runtime/cpu_kern.h"
#include "runtime/cpu_v8.h"
#include "runtime/cpu_kern_body.inc"
#include "runtime/cpu_kern_int.inc"

const ei_cpu_kernels ei_cpu_kernels_tab_portable = KSUF_TABLE("portable");
