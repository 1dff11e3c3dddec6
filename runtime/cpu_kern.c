/* Run-time choice of the kernel table (see cpu_kern.h). */
#include "runtime/cpu_kern.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__)
#include <cpuid.h>

/* F16C from CPUID leaf 1 (ECX bit 29): clang's __builtin_cpu_supports does not know "f16c". AVX2
 * implies the OS saves the ymm state, which __builtin_cpu_supports("avx2") checks. */
static int has_f16c(void) {
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && ((c >> 29) & 1);
}

/* AVX-VNNI (VEX vpdpbusd): CPUID leaf 7 sub-leaf 1, EAX bit 4. EI_CPU_NO_VNNI=1 in the environment
 * keeps the avx2 table (to compare the two, or to run as a CI machine without it would). */
static int has_avxvnni(void) {
    unsigned a, b, c, d;
    const char *off = getenv("EI_CPU_NO_VNNI");
    if (off && *off && strcmp(off, "0") != 0) return 0;
    return __get_cpuid_max(0, NULL) >= 7 && __get_cpuid_count(7, 1, &a, &b, &c, &d) && ((a >> 4) & 1);
}
#endif

const ei_cpu_kernels *ei_cpu_kernels_portable(void) { return &ei_cpu_kernels_tab_portable; }

const ei_cpu_kernels *ei_cpu_kernels_simd(void) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && has_f16c()) {
#if defined(EI_CPU_HAVE_AVXVNNI)
        if (has_avxvnni()) return &ei_cpu_kernels_tab_avxvnni;
#endif
        return &ei_cpu_kernels_tab_avx2;
    }
    return NULL;
#elif defined(__aarch64__) && defined(__ARM_NEON)
    return &ei_cpu_kernels_tab_neon;
#else
    return NULL;
#endif
}

const ei_cpu_kernels *ei_cpu_kernels_best(void) {
    const ei_cpu_kernels *k = ei_cpu_kernels_simd();
    return k ? k : ei_cpu_kernels_portable();
}
