/* Internals of the nnapi backend (runtime/nnapi_*.c, docs/nnapi.md): the loaded NNAPI function
 * table (nnapi_loader.c), device enumeration, names of NNAPI codes for messages, and the lowering
 * of an IR graph into an ANeuralNetworksModel (nnapi_lower*.c). Not installed. Device side. */
#ifndef EI_RUNTIME_NNAPI_INTERNAL_H
#define EI_RUNTIME_NNAPI_INTERNAL_H

#include "runtime/graph.h"
#include "runtime/nnapi_types.h"

#include <stddef.h>
#include <stdint.h>

/* ---------------------------------------------------------------- loader (nnapi_loader.c) */
#define EI_NN_FN(name) ei_pfn_ANeuralNetworks##name name
typedef struct {
    void *dl;
    char path[256];
    int fl;            /* feature level in use (1..8): the runtime's, lowered by max_feature_level */
    int fl_runtime;    /* what the runtime reports or its symbols imply */
    int64_t fl_code;   /* the runtime's FeatureLevelCode (27.., 1000006..) */
    int fl_inferred;   /* 1: inferred from symbols (no getRuntimeFeatureLevel) */
    /* level 1: all present, or the load fails */
    EI_NN_FN(Memory_createFromFd);
    EI_NN_FN(Memory_free);
    EI_NN_FN(Model_create);
    EI_NN_FN(Model_free);
    EI_NN_FN(Model_finish);
    EI_NN_FN(Model_addOperand);
    EI_NN_FN(Model_setOperandValue);
    EI_NN_FN(Model_setOperandValueFromMemory);
    EI_NN_FN(Model_addOperation);
    EI_NN_FN(Model_identifyInputsAndOutputs);
    EI_NN_FN(Compilation_create);
    EI_NN_FN(Compilation_free);
    EI_NN_FN(Compilation_setPreference);
    EI_NN_FN(Compilation_finish);
    EI_NN_FN(Execution_create);
    EI_NN_FN(Execution_free);
    EI_NN_FN(Execution_setInput);
    EI_NN_FN(Execution_setInputFromMemory);
    EI_NN_FN(Execution_setOutput);
    EI_NN_FN(Execution_setOutputFromMemory);
    EI_NN_FN(Execution_startCompute);
    EI_NN_FN(Event_wait);
    EI_NN_FN(Event_free);
    /* newer: NULL when missing or above the level in use */
    EI_NN_FN(Model_relaxComputationFloat32toFloat16);       /* 2 */
    EI_NN_FN(Model_setOperandSymmPerChannelQuantParams);    /* 3 */
    EI_NN_FN(Model_getSupportedOperationsForDevices);       /* 3 */
    ei_pfn_ANeuralNetworks_getDeviceCount getDeviceCount;   /* 3 */
    ei_pfn_ANeuralNetworks_getDevice getDevice;             /* 3 */
    EI_NN_FN(Device_getName);                               /* 3 */
    EI_NN_FN(Device_getType);                               /* 3 */
    EI_NN_FN(Device_getVersion);                            /* 3 */
    EI_NN_FN(Device_getFeatureLevel);                       /* 3 */
    EI_NN_FN(Compilation_createForDevices);                 /* 3 */
    EI_NN_FN(Compilation_setCaching);                       /* 3 */
    EI_NN_FN(Execution_compute);                            /* 3 */
    EI_NN_FN(Burst_create);                                 /* 3 */
    EI_NN_FN(Burst_free);                                   /* 3 */
    EI_NN_FN(Execution_burstCompute);                       /* 3 */
    EI_NN_FN(Compilation_setPriority);                      /* 4, probed only */
    ei_pfn_ANeuralNetworks_getRuntimeFeatureLevel getRuntimeFeatureLevel; /* 5 */
    EI_NN_FN(Execution_setReusable);                        /* 5 */
} ei_nn_api;
#undef EI_NN_FN

/* Opens path (NULL: $EI_NNAPI_LIB, else "libneuralnetworks.so") with RTLD_LAZY | RTLD_LOCAL,
 * resolves every function separately and sets the feature level; max_fl > 0 caps it. -1 with
 * ei_error set ("nnapi: <path>: <dlerror>" or the missing level-1 symbol). */
int ei_nn_load(ei_nn_api *api, const char *path, int max_fl);
void ei_nn_unload(ei_nn_api *api);

typedef struct {
    ANeuralNetworksDevice *dev;
    const char *name, *version;
    int32_t type;
    int64_t fl_code;
    int fl;
} ei_nn_device;

/* Devices of the runtime (level 3); *n = 0 below. *out is malloc'd (caller frees). */
int ei_nn_devices(const ei_nn_api *api, ei_nn_device **out, int *n);

/* Small level number from a FeatureLevelCode (27 -> 1, ..., 1000007 -> 7); 0 if unknown. */
int ei_nn_fl_from_code(int64_t code);
int64_t ei_nn_code_from_fl(int fl);
/* Names for messages: "ANEURALNETWORKS_BAD_DATA", "FULLY_CONNECTED", "TENSOR_QUANT8_ASYMM",
 * "accelerator"; never NULL. */
const char *ei_nn_result_name(int rc);
const char *ei_nn_op_name(int32_t op);
const char *ei_nn_type_name(int32_t type);
const char *ei_nn_device_type_name(int32_t type);

/* ---------------------------------------------------------------- lowering (nnapi_lower*.c) */
/* How a model input's caller bytes become NNAPI bytes (and a model output's back). */
enum {
    EI_NN_CONV_NONE = 0,
    EI_NN_CONV_FLIP,    /* i8 <-> uint8 with zero point + 128 (TENSOR_QUANT8_SIGNED emulated below level 4) */
    EI_NN_CONV_F32_F16, /* f32 <-> f16 (fallback_f16) */
    EI_NN_CONV_Q16_F16, /* i16 quantised <-> its real value as f16 (fallback_f16) */
};

typedef struct {
    int32_t tensor;     /* IR tensor */
    uint32_t operand;   /* NNAPI operand */
    int conv;
    uint64_t nn_bytes;  /* on the NNAPI side */
    uint64_t stage_off; /* conv != NONE: where it is staged (set by the backend) */
} ei_nn_io;

typedef char ei_nn_note[200]; /* room for the longest decomposition note */

typedef struct {
    ANeuralNetworksModel *model;
    int fl;
    int32_t n_ops, cap_ops;
    int32_t *op_node;     /* NNAPI operation -> IR node */
    int32_t *op_code;     /* NNAPI operation -> OperationCode */
    ei_nn_note *note;     /* per IR node: what the lowering did when it is not one-to-one, else "" */
    int32_t n_in, n_out;
    ei_nn_io *in, *out;
    void **owned;         /* derived constants and parameter arrays; live as long as the model */
    int32_t n_owned, cap_owned;
    ANeuralNetworksMemory *blob_mem; /* the file holding the constants, mapped by NNAPI */
    int blob_fd;
    int relaxed, f16_mode, i8_emulated;
    uint8_t token[ANEURALNETWORKS_BYTE_SIZE_OF_CACHE_TOKEN];
    int64_t consts_from_memory, consts_copied, consts_by_pointer;
} ei_nn_lowered;

typedef struct {
    int fl;               /* target level (runtime and device) */
    int relax_f16;        /* relaxComputationFloat32toFloat16 on graphs with f32 arithmetic */
    int fallback_f16;     /* i16 / i4 tensors become f16 instead of refusing the graph */
    const char *blob_path; /* file whose bytes at blob_offset are the blob; NULL: by pointer */
    uint64_t blob_offset;
    uint64_t blob_hash;   /* for the token; 0: hashed here when want_token */
    int want_token;
    const char *device_id; /* device name and version, for the token */
} ei_nn_lower_opts;

/* Builds and finishes the model. On failure: -1 with ei_error set, *refused = 1 when the graph
 * cannot be expressed at this feature level (a rule, not an API error), 0 when an NNAPI call
 * failed. L is left freeable either way. */
int ei_nn_lower(const ei_nn_api *api, const ei_graph *g, const uint8_t *blob, uint64_t blob_size,
                const ei_nn_lower_opts *o, ei_nn_lowered *L, int *refused);
void ei_nn_lowered_free(const ei_nn_api *api, ei_nn_lowered *L);

#endif
