/* Internals of the NNAPI conformance library (tests/nnapi/fake_*.c): a test-only
 * libneuralnetworks.so that checks every call against the NNAPI rules, returns the NNAPI result
 * code a violation deserves (with the reason kept for ei_fake_nnapi_last_error), and runs finished
 * models with its own straightforward reference kernels, in double precision, quantising at every
 * tensor like NNAPI does. Built twice: FAKE_FL=7 (one fake accelerator and the reference device)
 * and FAKE_FL=1 (only the feature-level-1 functions exist). It is conformance, never a measure of
 * any accelerator. */
#ifndef EI_TESTS_FAKE_NNAPI_H
#define EI_TESTS_FAKE_NNAPI_H

#include "runtime/nnapi_types.h"
#include "tests/nnapi/fake_nnapi_hooks.h"

#include <stddef.h>
#include <stdint.h>

#ifndef FAKE_FL
#define FAKE_FL 7
#endif
#define FAKE_API __attribute__((visibility("default")))
#define FK_MAX_RANK 8 /* operands may declare more; operations take at most 4 */

enum { FK_TEMP = 0, FK_CONST, FK_INPUT, FK_OUTPUT };

typedef struct {
    int32_t type;
    uint32_t rank;
    int rank_known; /* tensors: dimensionCount > 0 */
    uint32_t dims[FK_MAX_RANK];
    float scale;
    int32_t zp;
    int has_pc;
    uint32_t pc_dim, pc_n;
    float *pc_scales;
    int lifetime;
    const uint8_t *value; /* FK_CONST: the bytes (copy, caller pointer or memory) */
    uint8_t *copy;
    size_t len;
    int omitted; /* setOperandValue(NULL, 0) */
    int writer;  /* operation writing it, -1 */
} fk_operand;

typedef struct {
    int32_t code;
    uint32_t nin, nout;
    uint32_t *in, *out;
} fk_op;

struct ANeuralNetworksMemory {
    uint32_t magic;
    uint8_t *base;
    size_t size;
    int prot;
};

struct ANeuralNetworksModel {
    uint32_t magic;
    int finished, relaxed, identified;
    fk_operand *opnd;
    uint32_t n_opnd, cap_opnd;
    fk_op *ops;
    uint32_t n_ops, cap_ops;
    uint32_t *inputs, *outputs, n_inputs, n_outputs;
    uint32_t *order; /* run order, after finish */
};

/* ---- fake_api.c */
int fk_err(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int fk_fl(void); /* the runtime level in force (1..FAKE_FL) */
size_t fk_elem_size(int32_t type);
size_t fk_bytes(const fk_operand *o); /* 0 when not fully specified */
int fk_is_tensor(int32_t type);
float fk_half_to_float(uint16_t h);
uint16_t fk_float_to_half(float f);

/* ---- fake_validate.c */
/* addOperand: the type code, its feature level, dimensions and quantisation parameters. */
int fk_check_operand_type(const ANeuralNetworksOperandType *t);
/* One operation: operand counts and types per code, feature levels, quantisation rules, ranks,
 * shapes (output extents inferred into unspecified ones). final: constants must be set by now. */
int fk_check_op(struct ANeuralNetworksModel *m, uint32_t op, int final);
const char *fk_op_name(int32_t code);

/* ---- fake_exec.c: runs m with bufs[i] the bytes of operand i; NO_ERROR or OP_FAILED. */
int fk_run(const struct ANeuralNetworksModel *m, uint8_t *const *bufs);

#endif
