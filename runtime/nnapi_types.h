/* Our own declarations of the Android Neural Networks API (NNAPI) C interface: the constants,
 * the two public structs and a function-pointer type for every NNAPI function edgeinfinite uses.
 * Written from the public NNAPI reference (developer.android.com, "Neural Networks"); the numbers
 * are the published ABI values, not text from the NDK header. We declare them ourselves so the
 * device side builds without the NDK, on Linux as on Android, and loads libneuralnetworks.so at run
 * time (runtime/nnapi_loader.c). The conformance library of tests/nnapi uses the same
 * declarations; the static checks at the end pin the struct layouts the NDK defines for LP64 and
 * ILP32 so a mistake here cannot pass as a working ABI.
 *
 * Feature levels: NNAPI calls its versions feature levels. ANeuralNetworks_getRuntimeFeatureLevel
 * and ANeuralNetworksDevice_getFeatureLevel report them as the codes below (27..31 = Android API
 * levels 27..31 for feature levels 1..5, then 1000000 + n); the rest of edgeinfinite speaks of the
 * small number n (1..8). */
#ifndef EI_RUNTIME_NNAPI_TYPES_H
#define EI_RUNTIME_NNAPI_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---------------------------------------------------------------- operand types (OperandCode) */
enum {
    ANEURALNETWORKS_FLOAT32 = 0,  /* scalar */
    ANEURALNETWORKS_INT32 = 1,    /* scalar */
    ANEURALNETWORKS_UINT32 = 2,   /* scalar */
    ANEURALNETWORKS_TENSOR_FLOAT32 = 3,
    ANEURALNETWORKS_TENSOR_INT32 = 4,
    ANEURALNETWORKS_TENSOR_QUANT8_ASYMM = 5, /* uint8, real = (q - zeroPoint) * scale */
    ANEURALNETWORKS_BOOL = 6,                /* scalar, feature level 3 */
    ANEURALNETWORKS_TENSOR_QUANT16_SYMM = 7, /* feature level 3 */
    ANEURALNETWORKS_TENSOR_FLOAT16 = 8,      /* feature level 3 */
    ANEURALNETWORKS_TENSOR_BOOL8 = 9,        /* feature level 3 */
    ANEURALNETWORKS_FLOAT16 = 10,            /* scalar, feature level 3 */
    ANEURALNETWORKS_TENSOR_QUANT8_SYMM_PER_CHANNEL = 11, /* int8, feature level 3 */
    ANEURALNETWORKS_TENSOR_QUANT16_ASYMM = 12,           /* feature level 3 */
    ANEURALNETWORKS_TENSOR_QUANT8_SYMM = 13,             /* feature level 3 */
    ANEURALNETWORKS_TENSOR_QUANT8_ASYMM_SIGNED = 14,     /* int8, feature level 4 */
    ANEURALNETWORKS_MODEL = 15,                          /* feature level 4 (control flow) */
};

/* ---------------------------------------------------------------- operations (OperationCode) */
enum {
    ANEURALNETWORKS_ADD = 0,
    ANEURALNETWORKS_AVERAGE_POOL_2D = 1,
    ANEURALNETWORKS_CONCATENATION = 2,
    ANEURALNETWORKS_CONV_2D = 3,
    ANEURALNETWORKS_DEPTHWISE_CONV_2D = 4,
    ANEURALNETWORKS_DEPTH_TO_SPACE = 5,
    ANEURALNETWORKS_DEQUANTIZE = 6,
    ANEURALNETWORKS_EMBEDDING_LOOKUP = 7,
    ANEURALNETWORKS_FLOOR = 8,
    ANEURALNETWORKS_FULLY_CONNECTED = 9,
    ANEURALNETWORKS_HASHTABLE_LOOKUP = 10,
    ANEURALNETWORKS_L2_NORMALIZATION = 11,
    ANEURALNETWORKS_L2_POOL_2D = 12,
    ANEURALNETWORKS_LOCAL_RESPONSE_NORMALIZATION = 13,
    ANEURALNETWORKS_LOGISTIC = 14,
    ANEURALNETWORKS_LSH_PROJECTION = 15,
    ANEURALNETWORKS_LSTM = 16,
    ANEURALNETWORKS_MAX_POOL_2D = 17,
    ANEURALNETWORKS_MUL = 18,
    ANEURALNETWORKS_RELU = 19,
    ANEURALNETWORKS_RELU1 = 20,
    ANEURALNETWORKS_RELU6 = 21,
    ANEURALNETWORKS_RESHAPE = 22,
    ANEURALNETWORKS_RESIZE_BILINEAR = 23,
    ANEURALNETWORKS_RNN = 24,
    ANEURALNETWORKS_SOFTMAX = 25,
    ANEURALNETWORKS_SPACE_TO_DEPTH = 26,
    ANEURALNETWORKS_SVDF = 27,
    ANEURALNETWORKS_TANH = 28,
    /* feature level 2 */
    ANEURALNETWORKS_BATCH_TO_SPACE_ND = 29,
    ANEURALNETWORKS_DIV = 30,
    ANEURALNETWORKS_MEAN = 31,
    ANEURALNETWORKS_PAD = 32,
    ANEURALNETWORKS_SPACE_TO_BATCH_ND = 33,
    ANEURALNETWORKS_SQUEEZE = 34,
    ANEURALNETWORKS_STRIDED_SLICE = 35,
    ANEURALNETWORKS_SUB = 36,
    ANEURALNETWORKS_TRANSPOSE = 37,
    /* feature level 3 */
    ANEURALNETWORKS_ABS = 38,
    ANEURALNETWORKS_ARGMAX = 39,
    ANEURALNETWORKS_ARGMIN = 40,
    ANEURALNETWORKS_AXIS_ALIGNED_BBOX_TRANSFORM = 41,
    ANEURALNETWORKS_BIDIRECTIONAL_SEQUENCE_LSTM = 42,
    ANEURALNETWORKS_BIDIRECTIONAL_SEQUENCE_RNN = 43,
    ANEURALNETWORKS_BOX_WITH_NMS_LIMIT = 44,
    ANEURALNETWORKS_CAST = 45,
    ANEURALNETWORKS_CHANNEL_SHUFFLE = 46,
    ANEURALNETWORKS_DETECTION_POSTPROCESSING = 47,
    ANEURALNETWORKS_EQUAL = 48,
    ANEURALNETWORKS_EXP = 49,
    ANEURALNETWORKS_EXPAND_DIMS = 50,
    ANEURALNETWORKS_GATHER = 51,
    ANEURALNETWORKS_GENERATE_PROPOSALS = 52,
    ANEURALNETWORKS_GREATER = 53,
    ANEURALNETWORKS_GREATER_EQUAL = 54,
    ANEURALNETWORKS_GROUPED_CONV_2D = 55,
    ANEURALNETWORKS_HEATMAP_MAX_KEYPOINT = 56,
    ANEURALNETWORKS_INSTANCE_NORMALIZATION = 57,
    ANEURALNETWORKS_LESS = 58,
    ANEURALNETWORKS_LESS_EQUAL = 59,
    ANEURALNETWORKS_LOG = 60,
    ANEURALNETWORKS_LOGICAL_AND = 61,
    ANEURALNETWORKS_LOGICAL_NOT = 62,
    ANEURALNETWORKS_LOGICAL_OR = 63,
    ANEURALNETWORKS_LOG_SOFTMAX = 64,
    ANEURALNETWORKS_MAXIMUM = 65,
    ANEURALNETWORKS_MINIMUM = 66,
    ANEURALNETWORKS_NEG = 67,
    ANEURALNETWORKS_NOT_EQUAL = 68,
    ANEURALNETWORKS_PAD_V2 = 69,
    ANEURALNETWORKS_POW = 70,
    ANEURALNETWORKS_PRELU = 71,
    ANEURALNETWORKS_QUANTIZE = 72,
    ANEURALNETWORKS_QUANTIZED_16BIT_LSTM = 73,
    ANEURALNETWORKS_RANDOM_MULTINOMIAL = 74,
    ANEURALNETWORKS_REDUCE_ALL = 75,
    ANEURALNETWORKS_REDUCE_ANY = 76,
    ANEURALNETWORKS_REDUCE_MAX = 77,
    ANEURALNETWORKS_REDUCE_MIN = 78,
    ANEURALNETWORKS_REDUCE_PROD = 79,
    ANEURALNETWORKS_REDUCE_SUM = 80,
    ANEURALNETWORKS_ROI_ALIGN = 81,
    ANEURALNETWORKS_ROI_POOLING = 82,
    ANEURALNETWORKS_RSQRT = 83,
    ANEURALNETWORKS_SELECT = 84,
    ANEURALNETWORKS_SIN = 85,
    ANEURALNETWORKS_SLICE = 86,
    ANEURALNETWORKS_SPLIT = 87,
    ANEURALNETWORKS_SQRT = 88,
    ANEURALNETWORKS_TILE = 89,
    ANEURALNETWORKS_TOPK_V2 = 90,
    ANEURALNETWORKS_TRANSPOSE_CONV_2D = 91,
    ANEURALNETWORKS_UNIDIRECTIONAL_SEQUENCE_LSTM = 92,
    ANEURALNETWORKS_UNIDIRECTIONAL_SEQUENCE_RNN = 93,
    ANEURALNETWORKS_RESIZE_NEAREST_NEIGHBOR = 94,
    /* feature level 4 */
    ANEURALNETWORKS_QUANTIZED_LSTM = 95,
    ANEURALNETWORKS_IF = 96,
    ANEURALNETWORKS_WHILE = 97,
    ANEURALNETWORKS_ELU = 98,
    ANEURALNETWORKS_HARD_SWISH = 99,
    ANEURALNETWORKS_FILL = 100,
    ANEURALNETWORKS_RANK = 101,
    /* feature level 6 */
    ANEURALNETWORKS_BATCH_MATMUL = 102,
    ANEURALNETWORKS_PACK = 103,
    ANEURALNETWORKS_MIRROR_PAD = 104,
    ANEURALNETWORKS_REVERSE = 105,
};

/* ---------------------------------------------------------------- fused activations (FuseCode) */
enum {
    ANEURALNETWORKS_FUSED_NONE = 0,
    ANEURALNETWORKS_FUSED_RELU = 1,
    ANEURALNETWORKS_FUSED_RELU1 = 2,
    ANEURALNETWORKS_FUSED_RELU6 = 3,
};

/* ---------------------------------------------------------------- implicit padding (PaddingCode) */
enum {
    ANEURALNETWORKS_PADDING_SAME = 1,
    ANEURALNETWORKS_PADDING_VALID = 2,
};

/* ---------------------------------------------------------------- execution preference (PreferenceCode) */
enum {
    ANEURALNETWORKS_PREFER_LOW_POWER = 0,
    ANEURALNETWORKS_PREFER_FAST_SINGLE_ANSWER = 1,
    ANEURALNETWORKS_PREFER_SUSTAINED_SPEED = 2,
};

/* ---------------------------------------------------------------- result codes (ResultCode) */
enum {
    ANEURALNETWORKS_NO_ERROR = 0,
    ANEURALNETWORKS_OUT_OF_MEMORY = 1,
    ANEURALNETWORKS_INCOMPLETE = 2,
    ANEURALNETWORKS_UNEXPECTED_NULL = 3,
    ANEURALNETWORKS_BAD_DATA = 4,
    ANEURALNETWORKS_OP_FAILED = 5,
    ANEURALNETWORKS_BAD_STATE = 6,
    ANEURALNETWORKS_UNMAPPABLE = 7,
    ANEURALNETWORKS_OUTPUT_INSUFFICIENT_SIZE = 8,
    ANEURALNETWORKS_UNAVAILABLE_DEVICE = 9,
    ANEURALNETWORKS_MISSED_DEADLINE_TRANSIENT = 10,
    ANEURALNETWORKS_MISSED_DEADLINE_PERSISTENT = 11,
    ANEURALNETWORKS_RESOURCE_EXHAUSTED_TRANSIENT = 12,
    ANEURALNETWORKS_RESOURCE_EXHAUSTED_PERSISTENT = 13,
    ANEURALNETWORKS_DEAD_OBJECT = 14,
};

/* ---------------------------------------------------------------- device types (DeviceTypeCode) */
enum {
    ANEURALNETWORKS_DEVICE_UNKNOWN = 0,
    ANEURALNETWORKS_DEVICE_OTHER = 1,
    ANEURALNETWORKS_DEVICE_CPU = 2,
    ANEURALNETWORKS_DEVICE_GPU = 3,
    ANEURALNETWORKS_DEVICE_ACCELERATOR = 4,
};

/* ---------------------------------------------------------------- priorities (PriorityCode, level 4) */
enum {
    ANEURALNETWORKS_PRIORITY_LOW = 90,
    ANEURALNETWORKS_PRIORITY_MEDIUM = 100,
    ANEURALNETWORKS_PRIORITY_HIGH = 110,
};

/* ---------------------------------------------------------------- feature levels (FeatureLevelCode) */
enum {
    ANEURALNETWORKS_FEATURE_LEVEL_1 = 27,
    ANEURALNETWORKS_FEATURE_LEVEL_2 = 28,
    ANEURALNETWORKS_FEATURE_LEVEL_3 = 29,
    ANEURALNETWORKS_FEATURE_LEVEL_4 = 30,
    ANEURALNETWORKS_FEATURE_LEVEL_5 = 31,
    ANEURALNETWORKS_FEATURE_LEVEL_6 = 1000006,
    ANEURALNETWORKS_FEATURE_LEVEL_7 = 1000007,
    ANEURALNETWORKS_FEATURE_LEVEL_8 = 1000008,
};

/* setOperandValue copies values up to this many bytes; longer ones are referenced, not copied. */
#define ANEURALNETWORKS_MAX_SIZE_OF_IMMEDIATELY_COPIED_VALUES 128
/* Length of the token ANeuralNetworksCompilation_setCaching takes (feature level 3). */
#define ANEURALNETWORKS_BYTE_SIZE_OF_CACHE_TOKEN 32

/* ---------------------------------------------------------------- opaque objects */
typedef struct ANeuralNetworksMemory ANeuralNetworksMemory;
typedef struct ANeuralNetworksModel ANeuralNetworksModel;
typedef struct ANeuralNetworksCompilation ANeuralNetworksCompilation;
typedef struct ANeuralNetworksExecution ANeuralNetworksExecution;
typedef struct ANeuralNetworksEvent ANeuralNetworksEvent;
typedef struct ANeuralNetworksDevice ANeuralNetworksDevice;
typedef struct ANeuralNetworksBurst ANeuralNetworksBurst;

typedef int32_t ANeuralNetworksOperationType;

/* An operand's type: code, dimensions (NULL / 0 for scalars; 0 = unknown extent), and for
 * quantised tensors the scale and zero point. */
typedef struct ANeuralNetworksOperandType {
    int32_t type;
    uint32_t dimensionCount;
    const uint32_t *dimensions;
    float scale;
    int32_t zeroPoint;
} ANeuralNetworksOperandType;

/* Scales of a TENSOR_QUANT8_SYMM_PER_CHANNEL operand: one per index of dimension channelDim. */
typedef struct ANeuralNetworksSymmPerChannelQuantParams {
    uint32_t channelDim;
    uint32_t scaleCount;
    const float *scales;
} ANeuralNetworksSymmPerChannelQuantParams;

/* The layouts the NDK defines; a difference here would corrupt every call silently. */
#if UINTPTR_MAX == 0xFFFFFFFFFFFFFFFFu
_Static_assert(sizeof(ANeuralNetworksOperandType) == 24, "ANeuralNetworksOperandType is 24 bytes on LP64");
_Static_assert(offsetof(ANeuralNetworksOperandType, dimensionCount) == 4, "dimensionCount at 4");
_Static_assert(offsetof(ANeuralNetworksOperandType, dimensions) == 8, "dimensions at 8 on LP64");
_Static_assert(offsetof(ANeuralNetworksOperandType, scale) == 16, "scale at 16 on LP64");
_Static_assert(offsetof(ANeuralNetworksOperandType, zeroPoint) == 20, "zeroPoint at 20 on LP64");
_Static_assert(sizeof(ANeuralNetworksSymmPerChannelQuantParams) == 16, "per-channel params are 16 bytes on LP64");
_Static_assert(offsetof(ANeuralNetworksSymmPerChannelQuantParams, scaleCount) == 4, "scaleCount at 4");
_Static_assert(offsetof(ANeuralNetworksSymmPerChannelQuantParams, scales) == 8, "scales at 8 on LP64");
#elif UINTPTR_MAX == 0xFFFFFFFFu
_Static_assert(sizeof(ANeuralNetworksOperandType) == 20, "ANeuralNetworksOperandType is 20 bytes on ILP32");
_Static_assert(offsetof(ANeuralNetworksOperandType, dimensionCount) == 4, "dimensionCount at 4");
_Static_assert(offsetof(ANeuralNetworksOperandType, dimensions) == 8, "dimensions at 8 on ILP32");
_Static_assert(offsetof(ANeuralNetworksOperandType, scale) == 12, "scale at 12 on ILP32");
_Static_assert(offsetof(ANeuralNetworksOperandType, zeroPoint) == 16, "zeroPoint at 16 on ILP32");
_Static_assert(sizeof(ANeuralNetworksSymmPerChannelQuantParams) == 12, "per-channel params are 12 bytes on ILP32");
_Static_assert(offsetof(ANeuralNetworksSymmPerChannelQuantParams, scaleCount) == 4, "scaleCount at 4");
_Static_assert(offsetof(ANeuralNetworksSymmPerChannelQuantParams, scales) == 8, "scales at 8 on ILP32");
#else
#error "nnapi_types.h: pointers are neither 32 nor 64 bits wide"
#endif
_Static_assert(sizeof(bool) == 1, "NNAPI passes C99 bool, one byte");

/* ---------------------------------------------------------------- functions used (pointer types)
 * The comment gives the feature level that introduced each one. */
/* level 1 */
typedef int (*ei_pfn_ANeuralNetworksMemory_createFromFd)(size_t size, int protect, int fd, size_t offset,
                                                          ANeuralNetworksMemory **memory);
typedef void (*ei_pfn_ANeuralNetworksMemory_free)(ANeuralNetworksMemory *memory);
typedef int (*ei_pfn_ANeuralNetworksModel_create)(ANeuralNetworksModel **model);
typedef void (*ei_pfn_ANeuralNetworksModel_free)(ANeuralNetworksModel *model);
typedef int (*ei_pfn_ANeuralNetworksModel_finish)(ANeuralNetworksModel *model);
typedef int (*ei_pfn_ANeuralNetworksModel_addOperand)(ANeuralNetworksModel *model,
                                                      const ANeuralNetworksOperandType *type);
typedef int (*ei_pfn_ANeuralNetworksModel_setOperandValue)(ANeuralNetworksModel *model, int32_t index,
                                                           const void *buffer, size_t length);
typedef int (*ei_pfn_ANeuralNetworksModel_setOperandValueFromMemory)(ANeuralNetworksModel *model, int32_t index,
                                                                     const ANeuralNetworksMemory *memory,
                                                                     size_t offset, size_t length);
typedef int (*ei_pfn_ANeuralNetworksModel_addOperation)(ANeuralNetworksModel *model, ANeuralNetworksOperationType type,
                                                        uint32_t inputCount, const uint32_t *inputs,
                                                        uint32_t outputCount, const uint32_t *outputs);
typedef int (*ei_pfn_ANeuralNetworksModel_identifyInputsAndOutputs)(ANeuralNetworksModel *model, uint32_t inputCount,
                                                                    const uint32_t *inputs, uint32_t outputCount,
                                                                    const uint32_t *outputs);
typedef int (*ei_pfn_ANeuralNetworksCompilation_create)(ANeuralNetworksModel *model,
                                                        ANeuralNetworksCompilation **compilation);
typedef void (*ei_pfn_ANeuralNetworksCompilation_free)(ANeuralNetworksCompilation *compilation);
typedef int (*ei_pfn_ANeuralNetworksCompilation_setPreference)(ANeuralNetworksCompilation *compilation,
                                                               int32_t preference);
typedef int (*ei_pfn_ANeuralNetworksCompilation_finish)(ANeuralNetworksCompilation *compilation);
typedef int (*ei_pfn_ANeuralNetworksExecution_create)(ANeuralNetworksCompilation *compilation,
                                                      ANeuralNetworksExecution **execution);
typedef void (*ei_pfn_ANeuralNetworksExecution_free)(ANeuralNetworksExecution *execution);
typedef int (*ei_pfn_ANeuralNetworksExecution_setInput)(ANeuralNetworksExecution *execution, int32_t index,
                                                        const ANeuralNetworksOperandType *type, const void *buffer,
                                                        size_t length);
typedef int (*ei_pfn_ANeuralNetworksExecution_setInputFromMemory)(ANeuralNetworksExecution *execution, int32_t index,
                                                                  const ANeuralNetworksOperandType *type,
                                                                  const ANeuralNetworksMemory *memory, size_t offset,
                                                                  size_t length);
typedef int (*ei_pfn_ANeuralNetworksExecution_setOutput)(ANeuralNetworksExecution *execution, int32_t index,
                                                         const ANeuralNetworksOperandType *type, void *buffer,
                                                         size_t length);
typedef int (*ei_pfn_ANeuralNetworksExecution_setOutputFromMemory)(ANeuralNetworksExecution *execution, int32_t index,
                                                                   const ANeuralNetworksOperandType *type,
                                                                   const ANeuralNetworksMemory *memory, size_t offset,
                                                                   size_t length);
typedef int (*ei_pfn_ANeuralNetworksExecution_startCompute)(ANeuralNetworksExecution *execution,
                                                            ANeuralNetworksEvent **event);
typedef int (*ei_pfn_ANeuralNetworksEvent_wait)(ANeuralNetworksEvent *event);
typedef void (*ei_pfn_ANeuralNetworksEvent_free)(ANeuralNetworksEvent *event);
/* level 2 */
typedef int (*ei_pfn_ANeuralNetworksModel_relaxComputationFloat32toFloat16)(ANeuralNetworksModel *model, bool allow);
/* level 3 */
typedef int (*ei_pfn_ANeuralNetworksModel_setOperandSymmPerChannelQuantParams)(
    ANeuralNetworksModel *model, int32_t index, const ANeuralNetworksSymmPerChannelQuantParams *channelQuant);
typedef int (*ei_pfn_ANeuralNetworksModel_getSupportedOperationsForDevices)(const ANeuralNetworksModel *model,
                                                                            const ANeuralNetworksDevice *const *devices,
                                                                            uint32_t numDevices, bool *supportedOps);
typedef int (*ei_pfn_ANeuralNetworks_getDeviceCount)(uint32_t *numDevices);
typedef int (*ei_pfn_ANeuralNetworks_getDevice)(uint32_t devIndex, ANeuralNetworksDevice **device);
typedef int (*ei_pfn_ANeuralNetworksDevice_getName)(const ANeuralNetworksDevice *device, const char **name);
typedef int (*ei_pfn_ANeuralNetworksDevice_getType)(const ANeuralNetworksDevice *device, int32_t *type);
typedef int (*ei_pfn_ANeuralNetworksDevice_getVersion)(const ANeuralNetworksDevice *device, const char **version);
typedef int (*ei_pfn_ANeuralNetworksDevice_getFeatureLevel)(const ANeuralNetworksDevice *device,
                                                            int64_t *featureLevel);
typedef int (*ei_pfn_ANeuralNetworksCompilation_createForDevices)(ANeuralNetworksModel *model,
                                                                  const ANeuralNetworksDevice *const *devices,
                                                                  uint32_t numDevices,
                                                                  ANeuralNetworksCompilation **compilation);
typedef int (*ei_pfn_ANeuralNetworksCompilation_setCaching)(ANeuralNetworksCompilation *compilation,
                                                            const char *cacheDir, const uint8_t *token);
typedef int (*ei_pfn_ANeuralNetworksExecution_compute)(ANeuralNetworksExecution *execution);
typedef int (*ei_pfn_ANeuralNetworksBurst_create)(ANeuralNetworksCompilation *compilation,
                                                  ANeuralNetworksBurst **burst);
typedef void (*ei_pfn_ANeuralNetworksBurst_free)(ANeuralNetworksBurst *burst);
typedef int (*ei_pfn_ANeuralNetworksExecution_burstCompute)(ANeuralNetworksExecution *execution,
                                                            ANeuralNetworksBurst *burst);
/* level 4 (only probed, to infer the feature level of a runtime older than level 5) */
typedef int (*ei_pfn_ANeuralNetworksCompilation_setPriority)(ANeuralNetworksCompilation *compilation, int priority);
/* level 5 */
typedef int64_t (*ei_pfn_ANeuralNetworks_getRuntimeFeatureLevel)(void);
typedef int (*ei_pfn_ANeuralNetworksExecution_setReusable)(ANeuralNetworksExecution *execution, bool reusable);

#endif
