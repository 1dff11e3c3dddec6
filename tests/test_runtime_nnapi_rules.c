/* The NNAPI conformance library itself (tests/nnapi), called directly through the NNAPI function
 * table of runtime/nnapi_loader.c: for each rule the backend must respect, a deliberately wrong
 * model or call built by hand is rejected with the NNAPI result code the rule calls for (and a
 * reason), while the matching correct call passes. Rules: lifecycle order (no edits after finish,
 * compilation after finish, execution after compilation, one run unless reusable); operand type
 * codes, feature levels, quantisation parameters and dimensions; operand counts and types per
 * operation; FULLY_CONNECTED's per-tensor weights, int32 bias scales, fixed SOFTMAX / LOGISTIC
 * scales, the output-scale constraints; rank <= 4; fully specified constants and model inputs;
 * value, input and output lengths; functions and operations of higher feature levels; devices;
 * run-time failures. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/test_runtime_cpu_util.h"

#include "runtime/nnapi_internal.h"
#include "tests/nnapi/nnapi_test_util.h"

#include <fcntl.h>
#include <sys/mman.h>

enum { NO_ERROR = 0, UNEXPECTED_NULL = 3, BAD_DATA = 4, OP_FAILED = 5, BAD_STATE = 6 };
enum {
    TF32 = ANEURALNETWORKS_TENSOR_FLOAT32,
    TI32 = ANEURALNETWORKS_TENSOR_INT32,
    TQ8A = ANEURALNETWORKS_TENSOR_QUANT8_ASYMM,
    TQ8S = ANEURALNETWORKS_TENSOR_QUANT8_ASYMM_SIGNED,
    TPCH = ANEURALNETWORKS_TENSOR_QUANT8_SYMM_PER_CHANNEL,
    SI32 = ANEURALNETWORKS_INT32,
};

static ei_nn_api A;
static nt_fake F;

static int setup7(void **s) {
    (void)s;
    nt_env_clear();
    assert_int_equal(ei_nn_load(&A, NT_FL7, 0), 0);
    F = nt_fake_open(NT_FL7);
    return 0;
}

static int setup1(void **s) {
    (void)s;
    nt_env_clear();
    assert_int_equal(ei_nn_load(&A, NT_FL1, 0), 0);
    F = nt_fake_open(NT_FL1);
    return 0;
}

static int teardown(void **s) {
    (void)s;
    nt_fake_close(&F);
    ei_nn_unload(&A);
    nt_env_clear();
    return 0;
}

/* The code, and a reason that names the violation. */
#define EXPECT(code, call, why)                                                                        \
    do {                                                                                               \
        int rc_ = (call);                                                                              \
        if (rc_ != (code) || ((code) && !strstr(F.last_error(), why)))                                 \
            fprintf(stderr, "line %d: got %d (%s), want %d with '%s'\n", __LINE__, rc_, F.last_error(), \
                    (int)(code), why);                                                                 \
        assert_int_equal(rc_, (code));                                                                 \
        if (code) assert_non_null(strstr(F.last_error(), why));                                        \
    } while (0)
#define OK(call) assert_int_equal((call), NO_ERROR)

typedef struct {
    ANeuralNetworksModel *m;
    uint32_t n;
} mb;

static mb model(void) {
    mb b = {NULL, 0};
    OK(A.Model_create(&b.m));
    return b;
}

static int try_add(mb *b, int32_t type, float scale, int32_t zp, uint32_t rank, const uint32_t *dims) {
    ANeuralNetworksOperandType t = {type, rank, rank ? dims : NULL, scale, zp};
    int rc = A.Model_addOperand(b->m, &t);
    if (rc == NO_ERROR) b->n++;
    return rc;
}

static uint32_t add(mb *b, int32_t type, float scale, int32_t zp, uint32_t rank, const uint32_t *dims) {
    OK(try_add(b, type, scale, zp, rank, dims));
    return b->n - 1;
}

#define D(...) (uint32_t)(sizeof((uint32_t[]){__VA_ARGS__}) / 4), (const uint32_t[]){__VA_ARGS__}
#define T(b, type, ...) add(b, type, 0, 0, D(__VA_ARGS__))
#define Q(b, type, s, z, ...) add(b, type, s, z, D(__VA_ARGS__))
#define L(...) (uint32_t)(sizeof((uint32_t[]){__VA_ARGS__}) / 4), (const uint32_t[]){__VA_ARGS__}

static uint32_t i32(mb *b, int32_t v) {
    uint32_t i = add(b, SI32, 0, 0, 0, NULL);
    OK(A.Model_setOperandValue(b->m, (int32_t)i, &v, 4));
    return i;
}

static uint32_t cbytes(mb *b, int32_t type, float s, int32_t z, uint32_t rank, const uint32_t *dims, const void *data,
                       size_t len) {
    uint32_t i = add(b, type, s, z, rank, dims);
    OK(A.Model_setOperandValue(b->m, (int32_t)i, data, len));
    return i;
}

/* ADD(a, b) -> out on [2] float32, inputs and outputs identified. */
static mb add_model(uint32_t *a, uint32_t *c, uint32_t *out) {
    mb b = model();
    *a = T(&b, TF32, 2), *c = T(&b, TF32, 2), *out = T(&b, TF32, 2);
    OK(A.Model_addOperation(b.m, ANEURALNETWORKS_ADD, L(*a, *c, i32(&b, 0)), L(*out)));
    OK(A.Model_identifyInputsAndOutputs(b.m, L(*a, *c), L(*out)));
    return b;
}

static ANeuralNetworksCompilation *compiled(ANeuralNetworksModel *m) {
    ANeuralNetworksCompilation *c;
    OK(A.Compilation_create(m, &c));
    OK(A.Compilation_finish(c));
    return c;
}

/* ---------------------------------------------------------------- lifecycle */
static void test_lifecycle(void **s) {
    (void)s;
    uint32_t a, c, o;
    mb b = add_model(&a, &c, &o);
    ANeuralNetworksCompilation *comp;
    EXPECT(BAD_STATE, A.Compilation_create(b.m, &comp), "not finished");
    OK(A.Model_finish(b.m));
    float one = 1;
    ANeuralNetworksOperandType ft = {TF32, 1, (const uint32_t[]){2}, 0, 0};
    EXPECT(BAD_STATE, A.Model_addOperand(b.m, &ft), "after ANeuralNetworksModel_finish");
    EXPECT(BAD_STATE, A.Model_setOperandValue(b.m, 0, &one, 4), "after ANeuralNetworksModel_finish");
    EXPECT(BAD_STATE, A.Model_addOperation(b.m, ANEURALNETWORKS_ADD, L(a, c, 3), L(o)), "after");
    EXPECT(BAD_STATE, A.Model_identifyInputsAndOutputs(b.m, L(a), L(o)), "after");
    EXPECT(BAD_STATE, A.Model_relaxComputationFloat32toFloat16(b.m, true), "after");
    EXPECT(BAD_STATE, A.Model_finish(b.m), "after");
    OK(A.Compilation_create(b.m, &comp));
    ANeuralNetworksExecution *e;
    ANeuralNetworksBurst *burst;
    EXPECT(BAD_STATE, A.Execution_create(comp, &e), "not finished");
    EXPECT(BAD_STATE, A.Burst_create(comp, &burst), "not finished");
    OK(A.Compilation_setPreference(comp, ANEURALNETWORKS_PREFER_SUSTAINED_SPEED));
    OK(A.Compilation_finish(comp));
    EXPECT(BAD_STATE, A.Compilation_finish(comp), "twice");
    EXPECT(BAD_STATE, A.Compilation_setPreference(comp, 0), "after ANeuralNetworksCompilation_finish");
    EXPECT(BAD_STATE, A.Compilation_setCaching(comp, "/tmp", (const uint8_t[32]){0}), "after");
    OK(A.Execution_create(comp, &e));
    float x[2] = {1, 2}, y[2] = {10, 20}, z[2] = {0, 0};
    EXPECT(BAD_DATA, A.Execution_compute(e), "input 0 was never set");
    OK(A.Execution_setInput(e, 0, NULL, x, 8));
    OK(A.Execution_setInput(e, 1, NULL, y, 8));
    EXPECT(BAD_DATA, A.Execution_compute(e), "output 0 was never set");
    OK(A.Execution_setOutput(e, 0, NULL, z, 8));
    OK(A.Execution_compute(e));
    assert_true(z[0] == 11 && z[1] == 22);
    EXPECT(BAD_STATE, A.Execution_compute(e), "not reusable");
    EXPECT(BAD_STATE, A.Execution_setInput(e, 0, NULL, x, 8), "after the execution was scheduled");
    A.Execution_free(e);
    /* reusable (level 5): computed again, reading the buffers anew */
    OK(A.Execution_create(comp, &e));
    OK(A.Execution_setReusable(e, true));
    OK(A.Execution_setInput(e, 0, NULL, x, 8));
    OK(A.Execution_setInput(e, 1, NULL, y, 8));
    OK(A.Execution_setOutput(e, 0, NULL, z, 8));
    OK(A.Execution_compute(e));
    x[0] = 5;
    OK(A.Burst_create(comp, &burst));
    OK(A.Execution_burstCompute(e, burst));
    assert_true(z[0] == 15);
    EXPECT(BAD_STATE, A.Execution_setReusable(e, false), "after the execution was scheduled");
    A.Execution_free(e);
    /* startCompute: the result travels with the event */
    OK(A.Execution_create(comp, &e));
    OK(A.Execution_setInput(e, 0, NULL, x, 8));
    OK(A.Execution_setInput(e, 1, NULL, y, 8));
    OK(A.Execution_setOutput(e, 0, NULL, z, 8));
    ANeuralNetworksEvent *ev;
    OK(A.Execution_startCompute(e, &ev));
    OK(A.Event_wait(ev));
    A.Event_free(ev);
    A.Execution_free(e);
    ANeuralNetworksCompilation *other = compiled(b.m);
    OK(A.Execution_create(other, &e));
    OK(A.Execution_setInput(e, 0, NULL, x, 8));
    OK(A.Execution_setInput(e, 1, NULL, y, 8));
    OK(A.Execution_setOutput(e, 0, NULL, z, 8));
    EXPECT(BAD_DATA, A.Execution_burstCompute(e, burst), "another compilation");
    A.Execution_free(e);
    A.Burst_free(burst);
    A.Compilation_free(other);
    A.Compilation_free(comp);
    EXPECT(UNEXPECTED_NULL, A.Model_finish(NULL), "NULL");
    EXPECT(BAD_STATE, A.Model_addOperand(b.m, NULL), "after"); /* the state is checked first */
    A.Model_free(b.m);
    mb u = add_model(&a, &c, &o);
    bool sup[1];
    const ANeuralNetworksDevice *dev = NULL;
    OK(A.getDevice(0, (ANeuralNetworksDevice **)&dev));
    EXPECT(BAD_STATE, A.Model_getSupportedOperationsForDevices(u.m, &dev, 1, sup), "not finished");
    EXPECT(UNEXPECTED_NULL, A.Model_addOperand(u.m, NULL), "is NULL");
    A.Model_free(u.m);
}

/* ---------------------------------------------------------------- operands */
static void test_operand_types(void **s) {
    (void)s;
    mb b = model();
    EXPECT(BAD_DATA, try_add(&b, 99, 0, 0, D(2)), "unknown operand type code 99");
    EXPECT(BAD_DATA, try_add(&b, TQ8A, 0, 0, D(2)), "scale > 0");
    EXPECT(BAD_DATA, try_add(&b, TQ8A, 0.1f, 256, D(2)), "zero point in [0, 255]");
    EXPECT(BAD_DATA, try_add(&b, TQ8S, 0.1f, 200, D(2)), "zero point in [-128, 127]");
    EXPECT(BAD_DATA, try_add(&b, TF32, 0.5f, 0, D(2)), "must have scale 0");
    EXPECT(BAD_DATA, try_add(&b, TPCH, 0.1f, 0, D(2)), "must have scale 0");
    EXPECT(BAD_DATA, try_add(&b, TI32, 0.5f, 1, D(2)), "TENSOR_INT32 needs scale >= 0 and zero point 0");
    EXPECT(BAD_DATA, try_add(&b, SI32, 0, 0, D(1)), "scalar operand INT32 with 1 dimensions");
    OK(try_add(&b, TQ8S, 0.1f, -3, D(2)));
    nt_level(3);
    EXPECT(BAD_DATA, try_add(&b, TQ8S, 0.1f, 0, D(2)), "TENSOR_QUANT8_ASYMM_SIGNED needs feature level 4");
    nt_level(0);
    A.Model_free(b.m);
}

static void test_operand_types_level1(void **s) {
    (void)s;
    mb b = model();
    EXPECT(BAD_DATA, try_add(&b, ANEURALNETWORKS_TENSOR_FLOAT16, 0, 0, D(2)), "needs feature level 3; this runtime has 1");
    EXPECT(BAD_DATA, try_add(&b, ANEURALNETWORKS_BOOL, 0, 0, 0, NULL), "needs feature level 3");
    EXPECT(BAD_DATA, try_add(&b, TF32, 0, 0, 0, NULL), "unknown rank needs feature level 3");
    A.Model_free(b.m);
    /* the functions of later levels are simply not there */
    void *dl = dlopen(NT_FL1, RTLD_NOW | RTLD_LOCAL);
    assert_non_null(dl);
    assert_null(dlsym(dl, "ANeuralNetworksExecution_compute"));
    assert_null(dlsym(dl, "ANeuralNetworksModel_relaxComputationFloat32toFloat16"));
    assert_null(dlsym(dl, "ANeuralNetworks_getDeviceCount"));
    assert_null(dlsym(dl, "ANeuralNetworks_getRuntimeFeatureLevel"));
    assert_non_null(dlsym(dl, "ANeuralNetworksExecution_startCompute"));
    dlclose(dl);
}

/* ---------------------------------------------------------------- operations */
static void test_operation_signatures(void **s) {
    (void)s;
    mb b = model();
    uint32_t a = T(&b, TF32, 2), c = T(&b, TF32, 2), o = T(&b, TF32, 2), q = Q(&b, TQ8A, 0.1f, 0, 2);
    uint32_t f0 = i32(&b, 0), f7 = i32(&b, 7);
    EXPECT(BAD_DATA, A.Model_addOperation(b.m, ANEURALNETWORKS_ADD, L(a, c), L(o)), "takes 3 inputs, got 2");
    EXPECT(BAD_DATA, A.Model_addOperation(b.m, ANEURALNETWORKS_ADD, L(a, q, f0), L(o)), "input 1 is TENSOR_QUANT8_ASYMM");
    EXPECT(BAD_DATA, A.Model_addOperation(b.m, ANEURALNETWORKS_ADD, L(a, c, f7), L(o)), "not a FuseCode");
    EXPECT(BAD_DATA, A.Model_addOperation(b.m, ANEURALNETWORKS_ADD, L(a, c, f0), L(q)), "output 0 is TENSOR_QUANT8_ASYMM");
    EXPECT(BAD_DATA, A.Model_addOperation(b.m, ANEURALNETWORKS_ADD, L(a, c, 99), L(o)), "out of range");
    EXPECT(BAD_DATA, A.Model_addOperation(b.m, 9999, L(a), L(o)), "code 9999 is unknown");
    EXPECT(BAD_DATA, A.Model_addOperation(b.m, ANEURALNETWORKS_LOGISTIC, L(f0), L(o)), "a type this operation does not take");
    EXPECT(BAD_DATA, A.Model_addOperation(b.m, ANEURALNETWORKS_SOFTMAX, L(a, f0, f0, f0), L(o)), "takes 2..3 inputs");
    OK(A.Model_addOperation(b.m, ANEURALNETWORKS_ADD, L(a, c, f0), L(o)));
    EXPECT(BAD_DATA, A.Model_addOperation(b.m, ANEURALNETWORKS_ADD, L(a, c, f0), L(o)), "already written by operation 0");
    EXPECT(BAD_DATA, A.Model_addOperation(b.m, ANEURALNETWORKS_ADD, L(a, c, f0), L(f0)), "is a constant");
    uint32_t never = T(&b, TF32, 2);
    OK(A.Model_identifyInputsAndOutputs(b.m, L(a, c), L(o, never)));
    EXPECT(BAD_DATA, A.Model_finish(b.m), "model output operand");
    A.Model_free(b.m);
}

static void test_quantisation_rules(void **s) {
    (void)s;
    mb b = model();
    uint32_t x = Q(&b, TQ8S, 0.05f, 0, 3, 4), y = Q(&b, TQ8S, 0.1f, 0, 3, 2), f0 = i32(&b, 0);
    int8_t wv[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    int32_t bv[2] = {0, 0};
    /* per-channel weights are not FULLY_CONNECTED's (the lowering uses CONV_2D for them) */
    uint32_t wpc = cbytes(&b, TPCH, 0, 0, D(2, 4), wv, 8);
    OK(A.Model_setOperandSymmPerChannelQuantParams(b.m, (int32_t)wpc, &(ANeuralNetworksSymmPerChannelQuantParams){0, 2, (const float[]){0.1f, 0.2f}}));
    uint32_t b0 = cbytes(&b, TI32, 0, 0, D(2), bv, 8);
    EXPECT(BAD_DATA, A.Model_addOperation(b.m, ANEURALNETWORKS_FULLY_CONNECTED, L(x, wpc, b0, f0), L(y)), "per-tensor only");
    /* the int32 bias has scale input x weight and zero point 0 */
    uint32_t w = cbytes(&b, TQ8S, 0.02f, 0, D(2, 4), wv, 8);
    uint32_t bad_b = cbytes(&b, TI32, 0.5f, 0, D(2), bv, 8), good_b = cbytes(&b, TI32, 0.05f * 0.02f, 0, D(2), bv, 8);
    EXPECT(BAD_DATA, A.Model_addOperation(b.m, ANEURALNETWORKS_FULLY_CONNECTED, L(x, w, bad_b, f0), L(y)),
           "must be input scale x weight scale");
    float fb[2] = {0, 0};
    uint32_t fbias = cbytes(&b, TF32, 0, 0, D(2), fb, 8);
    EXPECT(BAD_DATA, A.Model_addOperation(b.m, ANEURALNETWORKS_FULLY_CONNECTED, L(x, w, fbias, f0), L(y)), "bias is TENSOR_FLOAT32");
    OK(A.Model_addOperation(b.m, ANEURALNETWORKS_FULLY_CONNECTED, L(x, w, good_b, f0), L(y)));
    /* fixed output scales of SOFTMAX and LOGISTIC */
    uint32_t sm = Q(&b, TQ8S, 1.0f / 128, -128, 3, 2), lg = Q(&b, TQ8S, 1.0f / 256, 0, 3, 2);
    uint32_t beta = add(&b, ANEURALNETWORKS_FLOAT32, 0, 0, 0, NULL);
    float one = 1;
    OK(A.Model_setOperandValue(b.m, (int32_t)beta, &one, 4));
    EXPECT(BAD_DATA, A.Model_addOperation(b.m, ANEURALNETWORKS_SOFTMAX, L(y, beta), L(sm)), "scale 1/256 and zero point -128");
    EXPECT(BAD_DATA, A.Model_addOperation(b.m, ANEURALNETWORKS_LOGISTIC, L(y), L(lg)), "scale 1/256 and zero point -128");
    /* quantised MUL: output scale above the product of the input scales */
    uint32_t mo = Q(&b, TQ8S, 0.001f, 0, 3, 2);
    EXPECT(BAD_DATA, A.Model_addOperation(b.m, ANEURALNETWORKS_MUL, L(y, y, f0), L(mo)), "output scale > input1 scale");
    /* per-channel parameters: the right count, positive scales; CONV_2D wants channel dimension 0 */
    uint32_t w2 = cbytes(&b, TPCH, 0, 0, D(2, 1, 1, 4), wv, 8);
    EXPECT(BAD_DATA, A.Model_setOperandSymmPerChannelQuantParams(b.m, (int32_t)w2, &(ANeuralNetworksSymmPerChannelQuantParams){0, 3, (const float[]){1, 1, 1}}), "do not fit");
    EXPECT(BAD_DATA, A.Model_setOperandSymmPerChannelQuantParams(b.m, (int32_t)w2, &(ANeuralNetworksSymmPerChannelQuantParams){0, 2, (const float[]){1, 0}}), "must be > 0");
    EXPECT(BAD_DATA, A.Model_setOperandSymmPerChannelQuantParams(b.m, (int32_t)x, &(ANeuralNetworksSymmPerChannelQuantParams){0, 3, (const float[]){1, 1, 1}}), "is not TENSOR_QUANT8_SYMM_PER_CHANNEL");
    uint32_t x4 = Q(&b, TQ8S, 0.05f, 0, 1, 1, 3, 4), y4 = Q(&b, TQ8S, 0.1f, 0, 1, 1, 3, 2);
    uint32_t p[6] = {f0, f0, f0, f0, i32(&b, 1), i32(&b, 1)};
    uint32_t in10[10] = {x4, w2, b0, p[0], p[1], p[2], p[3], p[4], p[5], f0};
    EXPECT(BAD_DATA, A.Model_addOperation(b.m, ANEURALNETWORKS_CONV_2D, 10, in10, L(y4)), "scales along dimension 0");
    OK(A.Model_setOperandSymmPerChannelQuantParams(b.m, (int32_t)w2, &(ANeuralNetworksSymmPerChannelQuantParams){1, 1, (const float[]){1}}));
    EXPECT(BAD_DATA, A.Model_addOperation(b.m, ANEURALNETWORKS_CONV_2D, 10, in10, L(y4)), "scales along dimension 0");
    OK(A.Model_setOperandSymmPerChannelQuantParams(b.m, (int32_t)w2, &(ANeuralNetworksSymmPerChannelQuantParams){0, 2, (const float[]){0.1f, 0.2f}}));
    in10[2] = good_b; /* a per-channel filter's bias scale is 0: the scale is implied per channel */
    EXPECT(BAD_DATA, A.Model_addOperation(b.m, ANEURALNETWORKS_CONV_2D, 10, in10, L(y4)), "bias has scale 0");
    in10[2] = b0;
    OK(A.Model_addOperation(b.m, ANEURALNETWORKS_CONV_2D, 10, in10, L(y4)));
    /* no int16 in general operations */
    uint32_t h = Q(&b, ANEURALNETWORKS_TENSOR_QUANT16_SYMM, 0.01f, 0, 2), ho = Q(&b, ANEURALNETWORKS_TENSOR_QUANT16_SYMM, 0.01f, 0, 2);
    EXPECT(BAD_DATA, A.Model_addOperation(b.m, ANEURALNETWORKS_ADD, L(h, h, f0), L(ho)), "TENSOR_QUANT16_SYMM, a type this operation does not take");
    A.Model_free(b.m);
    /* level 1-2: a quantised FULLY_CONNECTED needs output scale > input x weight scale */
    nt_level(2);
    mb c = model();
    uint8_t uw[8] = {0};
    uint32_t ux = Q(&c, TQ8A, 0.5f, 0, 1, 4), uwt = cbytes(&c, TQ8A, 0.5f, 0, D(2, 4), uw, 8);
    uint32_t ub = cbytes(&c, TI32, 0.25f, 0, D(2), bv, 8), uy = Q(&c, TQ8A, 0.1f, 0, 1, 2), g0 = i32(&c, 0);
    EXPECT(BAD_DATA, A.Model_addOperation(c.m, ANEURALNETWORKS_FULLY_CONNECTED, L(ux, uwt, ub, g0), L(uy)), "needs feature level 3");
    nt_level(3);
    OK(A.Model_addOperation(c.m, ANEURALNETWORKS_FULLY_CONNECTED, L(ux, uwt, ub, g0), L(uy)));
    nt_level(0);
    A.Model_free(c.m);
}

static void test_ranks_and_shapes(void **s) {
    (void)s;
    mb b = model();
    uint32_t f0 = i32(&b, 0), r5 = T(&b, TF32, 1, 1, 1, 1, 2), r5o = T(&b, TF32, 1, 1, 1, 1, 2);
    EXPECT(BAD_DATA, A.Model_addOperation(b.m, ANEURALNETWORKS_ADD, L(r5, r5, f0), L(r5o)), "rank <= 4");
    uint32_t a2 = T(&b, TF32, 2), a3 = T(&b, TF32, 3), o = T(&b, TF32, 3), o5 = T(&b, TF32, 5);
    EXPECT(BAD_DATA, A.Model_addOperation(b.m, ANEURALNETWORKS_ADD, L(a2, a3, f0), L(o)), "do not broadcast");
    EXPECT(BAD_DATA, A.Model_addOperation(b.m, ANEURALNETWORKS_ADD, L(a3, a3, f0), L(o5)), "the operation gives 3");
    float v[8] = {0};
    uint32_t unk = T(&b, TF32, 0, 4);
    EXPECT(BAD_DATA, A.Model_setOperandValue(b.m, (int32_t)unk, v, 16), "fully specified dimensions");
    EXPECT(BAD_DATA, A.Model_setOperandValue(b.m, (int32_t)a2, v, 12), "length 12, its type needs 8 bytes");
    uint32_t x1 = T(&b, TF32, 4), w = cbytes(&b, TF32, 0, 0, D(2, 4), v, 32), bb = cbytes(&b, TF32, 0, 0, D(2), v, 8);
    uint32_t y = T(&b, TF32, 1, 2);
    EXPECT(BAD_DATA, A.Model_addOperation(b.m, ANEURALNETWORKS_FULLY_CONNECTED, L(x1, w, bb, f0), L(y)), "expected 2..4");
    EXPECT(BAD_DATA, A.Model_identifyInputsAndOutputs(b.m, L(unk), L(o)), "needs fully specified dimensions");
    EXPECT(BAD_DATA, A.Model_identifyInputsAndOutputs(b.m, L(w), L(o)), "is a constant");
    A.Model_free(b.m);
}

static void test_lengths_and_memory(void **s) {
    (void)s;
    char path[256];
    nt_tmp_path(path, sizeof path, "mem");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 4096), 0);
    unlink(path);
    ANeuralNetworksMemory *rw, *ro;
    OK(A.Memory_createFromFd(4096, PROT_READ | PROT_WRITE, fd, 0, &rw));
    OK(A.Memory_createFromFd(4096, PROT_READ, fd, 0, &ro));
    ANeuralNetworksMemory *none;
    EXPECT(BAD_DATA, A.Memory_createFromFd(4096, PROT_EXEC, fd, 0, &none), "protection");
    assert_null(none);
    uint32_t a, c, o;
    mb b = add_model(&a, &c, &o);
    mb k = model();
    uint32_t kc = T(&k, TF32, 2);
    EXPECT(BAD_DATA, A.Model_setOperandValueFromMemory(k.m, (int32_t)kc, rw, 4092, 8), "lies outside the memory");
    OK(A.Model_setOperandValueFromMemory(k.m, (int32_t)kc, ro, 8, 8));
    A.Model_free(k.m);
    OK(A.Model_finish(b.m));
    ANeuralNetworksCompilation *comp = compiled(b.m);
    ANeuralNetworksExecution *e;
    OK(A.Execution_create(comp, &e));
    float x[4] = {0};
    EXPECT(BAD_DATA, A.Execution_setInput(e, 0, NULL, x, 4), "length 4, the operand has 8 bytes");
    EXPECT(BAD_DATA, A.Execution_setInput(e, 2, NULL, x, 8), "input 2 out of range");
    EXPECT(BAD_DATA, A.Execution_setOutput(e, 0, NULL, x, 16), "length 16");
    EXPECT(BAD_DATA, A.Execution_setInputFromMemory(e, 0, NULL, rw, 4090, 8), "lies outside the memory");
    EXPECT(BAD_DATA, A.Execution_setOutputFromMemory(e, 0, NULL, ro, 0, 8), "not mapped writable");
    EXPECT(BAD_DATA, A.Execution_setInput(e, 0, &(ANeuralNetworksOperandType){TF32, 1, (const uint32_t[]){3}, 0, 0}, x, 8),
           "differs from the model's operand");
    EXPECT(UNEXPECTED_NULL, A.Execution_setInput(e, 0, NULL, NULL, 8), "no buffer");
    /* through memory: the model reads and writes the shared pages */
    float *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    assert_true(p != MAP_FAILED);
    p[0] = 1, p[1] = 2, p[2] = 3, p[3] = 4;
    OK(A.Execution_setInputFromMemory(e, 0, NULL, rw, 0, 8));
    OK(A.Execution_setInputFromMemory(e, 1, NULL, ro, 8, 8));
    OK(A.Execution_setOutputFromMemory(e, 0, NULL, rw, 16, 8));
    OK(A.Execution_compute(e));
    assert_true(p[4] == 4 && p[5] == 6);
    munmap(p, 4096);
    A.Execution_free(e);
    A.Compilation_free(comp);
    A.Model_free(b.m);
    A.Memory_free(rw);
    A.Memory_free(ro);
    close(fd);
}

/* ---------------------------------------------------------------- feature levels, devices, runs */
static void test_levels_of_operations(void **s) {
    (void)s;
    float v[8] = {0};
    mb b = model();
    uint32_t x = T(&b, TF32, 1, 2, 2), y = T(&b, TF32, 1, 2, 2), o = T(&b, TF32, 1, 2, 2);
    bool t = false;
    uint32_t fx = add(&b, ANEURALNETWORKS_BOOL, 0, 0, 0, NULL);
    OK(A.Model_setOperandValue(b.m, (int32_t)fx, &t, 1));
    nt_level(5);
    EXPECT(BAD_DATA, A.Model_addOperation(b.m, ANEURALNETWORKS_BATCH_MATMUL, L(x, y, fx, fx), L(o)), "BATCH_MATMUL needs feature level 6");
    nt_level(6);
    OK(A.Model_addOperation(b.m, ANEURALNETWORKS_BATCH_MATMUL, L(x, y, fx, fx), L(o)));
    nt_level(3);
    uint32_t al = add(&b, ANEURALNETWORKS_FLOAT32, 0, 0, 0, NULL), eo = T(&b, TF32, 1, 2, 2);
    OK(A.Model_setOperandValue(b.m, (int32_t)al, v, 4));
    EXPECT(BAD_DATA, A.Model_addOperation(b.m, ANEURALNETWORKS_ELU, L(o, al), L(eo)), "ELU needs feature level 4");
    nt_level(2);
    uint32_t beta = add(&b, ANEURALNETWORKS_FLOAT32, 0, 0, 0, NULL), so = T(&b, TF32, 1, 2, 2);
    float one = 1;
    OK(A.Model_setOperandValue(b.m, (int32_t)beta, &one, 4));
    EXPECT(BAD_DATA, A.Model_addOperation(b.m, ANEURALNETWORKS_SOFTMAX, L(o, beta), L(so)), "SOFTMAX of rank other than 2 and 4");
    uint32_t n;
    EXPECT(BAD_STATE, A.getDeviceCount(&n), "is feature level 3; this runtime is at level 2");
    nt_level(0);
    A.Model_free(b.m);
}

static void test_levels_of_operations_level1(void **s) {
    (void)s;
    mb b = model();
    uint32_t x = T(&b, TF32, 2), o = T(&b, TF32, 2), f0 = i32(&b, 0);
    EXPECT(BAD_DATA, A.Model_addOperation(b.m, ANEURALNETWORKS_SUB, L(x, x, f0), L(o)), "SUB needs feature level 2");
    EXPECT(BAD_DATA, A.Model_addOperation(b.m, ANEURALNETWORKS_BATCH_MATMUL, L(x, x, f0, f0), L(o)), "needs feature level 6");
    EXPECT(BAD_DATA, A.Model_addOperation(b.m, ANEURALNETWORKS_GATHER, L(x, f0, x), L(o)), "GATHER needs feature level 3");
    OK(A.Model_addOperation(b.m, ANEURALNETWORKS_ADD, L(x, x, f0), L(o)));
    A.Model_free(b.m);
}

static void test_devices_and_runs(void **s) {
    (void)s;
    uint32_t a, c, o;
    mb b = add_model(&a, &c, &o);
    OK(A.Model_finish(b.m));
    ANeuralNetworksDevice *ref, *npu;
    OK(A.getDevice(0, &ref));
    OK(A.getDevice(1, &npu));
    EXPECT(BAD_DATA, A.getDevice(2, &npu), "index 2 of 2");
    setenv("EI_FAKE_NPU_UNSUPPORTED", "ADD", 1);
    bool sup[1];
    OK(A.Model_getSupportedOperationsForDevices(b.m, (const ANeuralNetworksDevice *const *)&npu, 1, sup));
    assert_false(sup[0]);
    ANeuralNetworksCompilation *comp;
    OK(A.Compilation_createForDevices(b.m, (const ANeuralNetworksDevice *const *)&npu, 1, &comp));
    EXPECT(BAD_DATA, A.Compilation_finish(comp), "operation 0 (ADD) runs on none of the 1 devices");
    A.Compilation_free(comp);
    const ANeuralNetworksDevice *both[2] = {npu, ref};
    OK(A.Compilation_createForDevices(b.m, both, 2, &comp));
    OK(A.Compilation_finish(comp));
    A.Compilation_free(comp);
    unsetenv("EI_FAKE_NPU_UNSUPPORTED");
    EXPECT(BAD_DATA, A.Compilation_createForDevices(b.m, both, 0, &comp), "0 devices");
    A.Model_free(b.m);
    /* GATHER with an index out of range fails the run, not the model */
    mb g = model();
    float tab[6] = {1, 2, 3, 4, 5, 6};
    uint32_t x = cbytes(&g, TF32, 0, 0, D(3, 2), tab, 24), idx = T(&g, TI32, 2), out = T(&g, TF32, 2, 2);
    OK(A.Model_addOperation(g.m, ANEURALNETWORKS_GATHER, L(x, i32(&g, 0), idx), L(out)));
    OK(A.Model_identifyInputsAndOutputs(g.m, L(idx), L(out)));
    OK(A.Model_finish(g.m));
    comp = compiled(g.m);
    ANeuralNetworksExecution *e;
    int32_t iv[2] = {2, 3};
    float ov[4];
    OK(A.Execution_create(comp, &e));
    OK(A.Execution_setInput(e, 0, NULL, iv, 8));
    OK(A.Execution_setOutput(e, 0, NULL, ov, 16));
    EXPECT(OP_FAILED, A.Execution_compute(e), "operation 0 (GATHER) failed while running");
    A.Execution_free(e);
    iv[1] = 0;
    OK(A.Execution_create(comp, &e));
    OK(A.Execution_setInput(e, 0, NULL, iv, 8));
    OK(A.Execution_setOutput(e, 0, NULL, ov, 16));
    OK(A.Execution_compute(e));
    assert_true(ov[0] == 5 && ov[1] == 6 && ov[2] == 1 && ov[3] == 2);
    A.Execution_free(e);
    A.Compilation_free(comp);
    A.Model_free(g.m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_lifecycle, setup7, teardown),
        cmocka_unit_test_setup_teardown(test_operand_types, setup7, teardown),
        cmocka_unit_test_setup_teardown(test_operand_types_level1, setup1, teardown),
        cmocka_unit_test_setup_teardown(test_operation_signatures, setup7, teardown),
        cmocka_unit_test_setup_teardown(test_quantisation_rules, setup7, teardown),
        cmocka_unit_test_setup_teardown(test_ranks_and_shapes, setup7, teardown),
        cmocka_unit_test_setup_teardown(test_lengths_and_memory, setup7, teardown),
        cmocka_unit_test_setup_teardown(test_levels_of_operations, setup7, teardown),
        cmocka_unit_test_setup_teardown(test_levels_of_operations_level1, setup1, teardown),
        cmocka_unit_test_setup_teardown(test_devices_and_runs, setup7, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
