/* Test-only entry points of the NNAPI conformance library (tests/nnapi): counters of what the
 * caller did, and the reason behind the last error code it returned. The tests resolve these with
 * dlsym from the same library the backend loaded; the backend itself never knows them. */
#ifndef EI_TESTS_FAKE_NNAPI_HOOKS_H
#define EI_TESTS_FAKE_NNAPI_HOOKS_H

#include <stdint.h>

typedef struct {
    int64_t models, operands, operations;
    int64_t values_copied, values_by_pointer, values_from_memory; /* setOperandValue(FromMemory) */
    int64_t memories;                                             /* createFromFd */
    int64_t compilations_default, compilations_for_devices, last_devices, last_preference;
    int64_t caching, cache_hits, cache_writes, relaxed_models;
    int64_t executions, inputs_by_pointer, inputs_from_memory, outputs_by_pointer, outputs_from_memory;
    int64_t computes, start_computes, burst_computes, bursts, reusable_executions;
} ei_fake_nnapi_stats;

typedef void (*ei_fake_nnapi_get_stats_fn)(ei_fake_nnapi_stats *s);
typedef void (*ei_fake_nnapi_reset_stats_fn)(void);
typedef const char *(*ei_fake_nnapi_last_error_fn)(void);

/* Environment read by the library at each call:
 *   EI_FAKE_NNAPI_FEATURE_LEVEL  1..build level: the runtime's feature level (default: the build's)
 *   EI_FAKE_NPU_UNSUPPORTED      comma-separated operation names the fake accelerator rejects
 *   EI_FAKE_NNAPI_NO_NPU         1: only the reference (cpu) device
 *   EI_FAKE_NNAPI_FAIL           "<function>:<n>:<code>": the n-th call of function returns code
 *   EI_FAKE_NNAPI_VERBOSE        1: print every error's reason to stderr */

#endif
