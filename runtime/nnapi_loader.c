/* Loading libneuralnetworks.so at run time (DESIGN 6.4): dlopen with RTLD_LAZY | RTLD_LOCAL, every
 * function resolved on its own with dlsym, the feature level from
 * ANeuralNetworks_getRuntimeFeatureLevel when the runtime has it (level 5+) or else inferred from
 * the symbols that exist, and functions above the level in use cleared so no caller can reach
 * them by accident. Also the device list and the names of NNAPI codes for messages. */
#include "runtime/nnapi_internal.h"

#include "core/ei_error.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* dlsym returns object pointers; POSIX guarantees they convert to function pointers, which the
 * memcpy below relies on. */
_Static_assert(sizeof(void *) == sizeof(ei_pfn_ANeuralNetworksModel_create), "function pointers are data-pointer sized");

typedef struct {
    const char *name;
    size_t off;
    int fl;
} sym;

#define S(field, fl) {"ANeuralNetworks" #field, offsetof(ei_nn_api, field), fl}
static const sym syms[] = {
    S(Memory_createFromFd, 1), S(Memory_free, 1), S(Model_create, 1), S(Model_free, 1), S(Model_finish, 1),
    S(Model_addOperand, 1), S(Model_setOperandValue, 1), S(Model_setOperandValueFromMemory, 1),
    S(Model_addOperation, 1), S(Model_identifyInputsAndOutputs, 1), S(Compilation_create, 1),
    S(Compilation_free, 1), S(Compilation_setPreference, 1), S(Compilation_finish, 1), S(Execution_create, 1),
    S(Execution_free, 1), S(Execution_setInput, 1), S(Execution_setInputFromMemory, 1), S(Execution_setOutput, 1),
    S(Execution_setOutputFromMemory, 1), S(Execution_startCompute, 1), S(Event_wait, 1), S(Event_free, 1),
    S(Model_relaxComputationFloat32toFloat16, 2), S(Model_setOperandSymmPerChannelQuantParams, 3),
    S(Model_getSupportedOperationsForDevices, 3), {"ANeuralNetworks_getDeviceCount", offsetof(ei_nn_api, getDeviceCount), 3},
    {"ANeuralNetworks_getDevice", offsetof(ei_nn_api, getDevice), 3}, S(Device_getName, 3), S(Device_getType, 3),
    S(Device_getVersion, 3), S(Device_getFeatureLevel, 3), S(Compilation_createForDevices, 3),
    S(Compilation_setCaching, 3), S(Execution_compute, 3), S(Burst_create, 3), S(Burst_free, 3),
    S(Execution_burstCompute, 3), S(Compilation_setPriority, 4),
    {"ANeuralNetworks_getRuntimeFeatureLevel", offsetof(ei_nn_api, getRuntimeFeatureLevel), 5},
    S(Execution_setReusable, 5),
};
#undef S
enum { N_SYMS = (int)(sizeof syms / sizeof syms[0]) };

static void slot_set(ei_nn_api *api, size_t off, void *p) { memcpy((char *)api + off, &p, sizeof p); }

int ei_nn_fl_from_code(int64_t code) {
    if (code >= ANEURALNETWORKS_FEATURE_LEVEL_1 && code <= ANEURALNETWORKS_FEATURE_LEVEL_5) return (int)(code - 26);
    if (code > ANEURALNETWORKS_FEATURE_LEVEL_5 && code < 1000000) return 5; /* an API level past S: at least 5 */
    if (code >= ANEURALNETWORKS_FEATURE_LEVEL_6 && code < 1000100) return (int)(code - 1000000);
    return 0;
}

int64_t ei_nn_code_from_fl(int fl) { return fl <= 5 ? 26 + fl : 1000000 + fl; }

/* What the symbols imply when the runtime cannot say (levels 1..4 have no query). */
static int infer_level(const ei_nn_api *api) {
    if (api->Compilation_setPriority) return 4;
    if (api->getDeviceCount && api->Compilation_createForDevices && api->Execution_compute) return 3;
    if (api->Model_relaxComputationFloat32toFloat16) return 2;
    return 1;
}

int ei_nn_load(ei_nn_api *api, const char *path, int max_fl) {
    memset(api, 0, sizeof *api);
    if (!path || !path[0]) path = getenv("EI_NNAPI_LIB");
    if (!path || !path[0]) path = "libneuralnetworks.so";
    snprintf(api->path, sizeof api->path, "%s", path);
    dlerror();
    api->dl = dlopen(path, RTLD_LAZY | RTLD_LOCAL);
    if (!api->dl) {
        const char *e = dlerror();
        return ei_error_set("nnapi: cannot open %s: %s", path, e ? e : "unknown dlopen error");
    }
    for (int i = 0; i < N_SYMS; i++) {
        dlerror();
        void *p = dlsym(api->dl, syms[i].name);
        if (!p && syms[i].fl == 1) {
            ei_error_set("nnapi: %s is not an NNAPI runtime: %s is missing", path, syms[i].name);
            ei_nn_unload(api);
            return -1;
        }
        slot_set(api, syms[i].off, p);
    }
    if (api->getRuntimeFeatureLevel) {
        api->fl_code = api->getRuntimeFeatureLevel();
        api->fl_runtime = ei_nn_fl_from_code(api->fl_code);
        if (!api->fl_runtime) {
            ei_error_set("nnapi: %s reports an unknown feature level %lld", path, (long long)api->fl_code);
            ei_nn_unload(api);
            return -1;
        }
    } else {
        api->fl_runtime = infer_level(api);
        api->fl_code = ei_nn_code_from_fl(api->fl_runtime);
        api->fl_inferred = 1;
    }
    api->fl = max_fl > 0 && max_fl < api->fl_runtime ? max_fl : api->fl_runtime;
    /* a runtime at level n must not be asked for level n+1 behaviour, even if a symbol resolves */
    for (int i = 0; i < N_SYMS; i++)
        if (syms[i].fl > api->fl) slot_set(api, syms[i].off, NULL);
    return 0;
}

void ei_nn_unload(ei_nn_api *api) {
    if (api->dl) dlclose(api->dl);
    memset(api, 0, sizeof *api);
}

int ei_nn_devices(const ei_nn_api *api, ei_nn_device **out, int *n) {
    *out = NULL;
    *n = 0;
    if (!api->getDeviceCount || !api->getDevice || !api->Device_getName) return 0;
    uint32_t count = 0;
    int rc = api->getDeviceCount(&count);
    if (rc != ANEURALNETWORKS_NO_ERROR)
        return ei_error_set("nnapi: ANeuralNetworks_getDeviceCount failed: %s", ei_nn_result_name(rc));
    if (!count) return 0;
    ei_nn_device *d = calloc(count, sizeof *d);
    if (!d) return ei_error_set("nnapi: out of memory");
    for (uint32_t i = 0; i < count; i++) {
        rc = api->getDevice(i, &d[i].dev);
        if (rc == ANEURALNETWORKS_NO_ERROR) rc = api->Device_getName(d[i].dev, &d[i].name);
        if (rc == ANEURALNETWORKS_NO_ERROR && api->Device_getType) rc = api->Device_getType(d[i].dev, &d[i].type);
        if (rc == ANEURALNETWORKS_NO_ERROR && api->Device_getVersion) rc = api->Device_getVersion(d[i].dev, &d[i].version);
        if (rc == ANEURALNETWORKS_NO_ERROR && api->Device_getFeatureLevel)
            rc = api->Device_getFeatureLevel(d[i].dev, &d[i].fl_code);
        if (rc != ANEURALNETWORKS_NO_ERROR) {
            free(d);
            return ei_error_set("nnapi: querying device %u failed: %s", i, ei_nn_result_name(rc));
        }
        if (!d[i].name) d[i].name = "?";
        if (!d[i].version) d[i].version = "?";
        d[i].fl = ei_nn_fl_from_code(d[i].fl_code);
        if (!d[i].fl) d[i].fl = api->fl_runtime;
    }
    *out = d;
    *n = (int)count;
    return 0;
}

/* ---------------------------------------------------------------- names */
const char *ei_nn_result_name(int rc) {
    static const char *const names[] = {
        "ANEURALNETWORKS_NO_ERROR", "ANEURALNETWORKS_OUT_OF_MEMORY", "ANEURALNETWORKS_INCOMPLETE",
        "ANEURALNETWORKS_UNEXPECTED_NULL", "ANEURALNETWORKS_BAD_DATA", "ANEURALNETWORKS_OP_FAILED",
        "ANEURALNETWORKS_BAD_STATE", "ANEURALNETWORKS_UNMAPPABLE", "ANEURALNETWORKS_OUTPUT_INSUFFICIENT_SIZE",
        "ANEURALNETWORKS_UNAVAILABLE_DEVICE", "ANEURALNETWORKS_MISSED_DEADLINE_TRANSIENT",
        "ANEURALNETWORKS_MISSED_DEADLINE_PERSISTENT", "ANEURALNETWORKS_RESOURCE_EXHAUSTED_TRANSIENT",
        "ANEURALNETWORKS_RESOURCE_EXHAUSTED_PERSISTENT", "ANEURALNETWORKS_DEAD_OBJECT"};
    return rc >= 0 && rc < (int)(sizeof names / sizeof names[0]) ? names[rc] : "unknown NNAPI result code";
}

const char *ei_nn_op_name(int32_t op) {
    static const char *const names[] = {
        "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "DEPTH_TO_SPACE", "DEQUANTIZE",
        "EMBEDDING_LOOKUP", "FLOOR", "FULLY_CONNECTED", "HASHTABLE_LOOKUP", "L2_NORMALIZATION", "L2_POOL_2D",
        "LOCAL_RESPONSE_NORMALIZATION", "LOGISTIC", "LSH_PROJECTION", "LSTM", "MAX_POOL_2D", "MUL", "RELU", "RELU1",
        "RELU6", "RESHAPE", "RESIZE_BILINEAR", "RNN", "SOFTMAX", "SPACE_TO_DEPTH", "SVDF", "TANH", "BATCH_TO_SPACE_ND",
        "DIV", "MEAN", "PAD", "SPACE_TO_BATCH_ND", "SQUEEZE", "STRIDED_SLICE", "SUB", "TRANSPOSE", "ABS", "ARGMAX",
        "ARGMIN", "AXIS_ALIGNED_BBOX_TRANSFORM", "BIDIRECTIONAL_SEQUENCE_LSTM", "BIDIRECTIONAL_SEQUENCE_RNN",
        "BOX_WITH_NMS_LIMIT", "CAST", "CHANNEL_SHUFFLE", "DETECTION_POSTPROCESSING", "EQUAL", "EXP", "EXPAND_DIMS",
        "GATHER", "GENERATE_PROPOSALS", "GREATER", "GREATER_EQUAL", "GROUPED_CONV_2D", "HEATMAP_MAX_KEYPOINT",
        "INSTANCE_NORMALIZATION", "LESS", "LESS_EQUAL", "LOG", "LOGICAL_AND", "LOGICAL_NOT", "LOGICAL_OR",
        "LOG_SOFTMAX", "MAXIMUM", "MINIMUM", "NEG", "NOT_EQUAL", "PAD_V2", "POW", "PRELU", "QUANTIZE",
        "QUANTIZED_16BIT_LSTM", "RANDOM_MULTINOMIAL", "REDUCE_ALL", "REDUCE_ANY", "REDUCE_MAX", "REDUCE_MIN",
        "REDUCE_PROD", "REDUCE_SUM", "ROI_ALIGN", "ROI_POOLING", "RSQRT", "SELECT", "SIN", "SLICE", "SPLIT", "SQRT",
        "TILE", "TOPK_V2", "TRANSPOSE_CONV_2D", "UNIDIRECTIONAL_SEQUENCE_LSTM", "UNIDIRECTIONAL_SEQUENCE_RNN",
        "RESIZE_NEAREST_NEIGHBOR", "QUANTIZED_LSTM", "IF", "WHILE", "ELU", "HARD_SWISH", "FILL", "RANK",
        "BATCH_MATMUL", "PACK", "MIRROR_PAD", "REVERSE"};
    _Static_assert(sizeof names / sizeof names[0] == ANEURALNETWORKS_REVERSE + 1, "one name per operation code");
    return op >= 0 && op <= ANEURALNETWORKS_REVERSE ? names[op] : "unknown operation";
}

const char *ei_nn_type_name(int32_t type) {
    static const char *const names[] = {
        "FLOAT32", "INT32", "UINT32", "TENSOR_FLOAT32", "TENSOR_INT32", "TENSOR_QUANT8_ASYMM", "BOOL",
        "TENSOR_QUANT16_SYMM", "TENSOR_FLOAT16", "TENSOR_BOOL8", "FLOAT16", "TENSOR_QUANT8_SYMM_PER_CHANNEL",
        "TENSOR_QUANT16_ASYMM", "TENSOR_QUANT8_SYMM", "TENSOR_QUANT8_ASYMM_SIGNED", "MODEL"};
    return type >= 0 && type <= ANEURALNETWORKS_MODEL ? names[type] : "unknown operand type";
}

const char *ei_nn_device_type_name(int32_t type) {
    static const char *const names[] = {"unknown", "other", "cpu", "gpu", "accelerator"};
    return type >= 0 && type <= ANEURALNETWORKS_DEVICE_ACCELERATOR ? names[type] : "unknown";
}
