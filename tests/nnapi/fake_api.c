/* The exported NNAPI functions of the conformance library (fake_nnapi.h), with the lifecycle rules
 * of the API: a model is edited until ANeuralNetworksModel_finish and never after (BAD_STATE);
 * compilations need a finished model, executions a finished compilation; an execution's inputs and
 * outputs are set before it is scheduled, every one of them, with the operand's exact byte length;
 * it runs once unless made reusable (level 5); constants and model inputs are fully specified;
 * memory ranges stay inside their ANeuralNetworksMemory. Functions newer than FAKE_FL are not
 * compiled in at all, and those newer than the runtime level in force
 * (EI_FAKE_NNAPI_FEATURE_LEVEL) answer BAD_STATE, so a caller that uses a function its runtime
 * lacks is caught. */
#include "tests/nnapi/fake_nnapi.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

enum {
    MAGIC_MEM = 0x464d454du,
    MAGIC_MODEL = 0x464d4f44u,
    MAGIC_COMP = 0x46434f4du,
    MAGIC_EXEC = 0x46455845u,
    MAGIC_EVENT = 0x46455654u,
    MAGIC_BURST = 0x46425253u,
    MAGIC_DEV = 0x46444556u,
};

static _Thread_local char last_error[600];
static ei_fake_nnapi_stats stats;

static const char *rc_name(int rc) {
    static const char *const n[] = {"NO_ERROR", "OUT_OF_MEMORY", "INCOMPLETE", "UNEXPECTED_NULL", "BAD_DATA",
                                    "OP_FAILED", "BAD_STATE", "UNMAPPABLE"};
    return rc >= 0 && rc < 8 ? n[rc] : "?";
}

int fk_err(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    const char *v = getenv("EI_FAKE_NNAPI_VERBOSE");
    if (v && v[0] == '1') fprintf(stderr, "fake nnapi: %s: %s\n", rc_name(code), last_error);
    return code;
}

int fk_fl(void) {
    const char *s = getenv("EI_FAKE_NNAPI_FEATURE_LEVEL");
    int v = s && s[0] ? atoi(s) : FAKE_FL;
    return v < 1 ? 1 : v > FAKE_FL ? FAKE_FL : v;
}

static inline int64_t fl_code(int fl) { return fl <= 5 ? 26 + fl : 1000000 + fl; }

/* ---------------------------------------------------------------- helpers */
float fk_half_to_float(uint16_t h) {
    int e = (h >> 10) & 31, m = h & 1023;
    double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(m + 1024, e - 25);
    return (float)(h & 0x8000 ? -v : v);
}

uint16_t fk_float_to_half(float f) {
    uint16_t s = signbit(f) ? 0x8000 : 0;
    double a = fabs((double)f);
    if (a != a) return 0x7e00;
    if (a >= 65520.0) return s | 0x7c00;
    if (a < ldexp(1, -14)) return s | (uint16_t)nearbyint(a * ldexp(1, 24)); /* subnormal, ties to even */
    int e;
    double m = frexp(a, &e); /* a = m 2^e, m in [0.5, 1) */
    double q = nearbyint(m * 2048.0);
    if (q == 2048.0) q = 1024.0, e++;
    return s | (uint16_t)((e + 14) << 10 | ((int)q - 1024));
}

int fk_is_tensor(int32_t t) {
    return !(t == ANEURALNETWORKS_FLOAT32 || t == ANEURALNETWORKS_INT32 || t == ANEURALNETWORKS_UINT32 ||
             t == ANEURALNETWORKS_BOOL || t == ANEURALNETWORKS_FLOAT16);
}

size_t fk_elem_size(int32_t t) {
    switch (t) {
    case ANEURALNETWORKS_FLOAT32:
    case ANEURALNETWORKS_INT32:
    case ANEURALNETWORKS_UINT32:
    case ANEURALNETWORKS_TENSOR_FLOAT32:
    case ANEURALNETWORKS_TENSOR_INT32: return 4;
    case ANEURALNETWORKS_FLOAT16:
    case ANEURALNETWORKS_TENSOR_FLOAT16:
    case ANEURALNETWORKS_TENSOR_QUANT16_SYMM:
    case ANEURALNETWORKS_TENSOR_QUANT16_ASYMM: return 2;
    default: return 1;
    }
}

size_t fk_bytes(const fk_operand *o) {
    size_t n = fk_elem_size(o->type);
    if (!fk_is_tensor(o->type)) return n;
    if (!o->rank_known) return 0;
    for (uint32_t i = 0; i < o->rank; i++) n *= o->dims[i];
    return n;
}

/* EI_FAKE_NNAPI_FAIL="<function>:<n>:<code>": the n-th call of that function fails with code. */
static int inject(const char *fn) {
    static char spec_seen[160];
    static int calls;
    const char *spec = getenv("EI_FAKE_NNAPI_FAIL");
    if (!spec || !spec[0]) return 0;
    if (strcmp(spec, spec_seen)) snprintf(spec_seen, sizeof spec_seen, "%s", spec), calls = 0;
    size_t n = strlen(fn);
    int nth, code;
    if (strncmp(spec, fn, n) || spec[n] != ':' || sscanf(spec + n + 1, "%d:%d", &nth, &code) != 2) return 0;
    if (++calls != nth) return 0;
    return fk_err(code, "%s: failure injected by EI_FAKE_NNAPI_FAIL (call %d)", fn, nth);
}

static int enter(const char *fn, int lv) {
    int rc = inject(fn);
    if (rc) return rc;
    if (fk_fl() < lv) return fk_err(ANEURALNETWORKS_BAD_STATE, "%s is feature level %d; this runtime is at level %d", fn, lv, fk_fl());
    return 0;
}

#define ENTER(fn, lv)                   \
    do {                                \
        int rc_ = enter(fn, lv);        \
        if (rc_) return rc_;            \
    } while (0)
#define NONNULL(p, fn)                                                                   \
    do {                                                                                 \
        if (!(p)) return fk_err(ANEURALNETWORKS_UNEXPECTED_NULL, "%s: %s is NULL", fn, #p); \
    } while (0)

/* ---------------------------------------------------------------- test hooks */
FAKE_API void ei_fake_nnapi_get_stats(ei_fake_nnapi_stats *s) { *s = stats; }
FAKE_API void ei_fake_nnapi_reset_stats(void) { memset(&stats, 0, sizeof stats); }
FAKE_API const char *ei_fake_nnapi_last_error(void) { return last_error; }

/* ---------------------------------------------------------------- memory */
FAKE_API int ANeuralNetworksMemory_createFromFd(size_t size, int protect, int fd, size_t offset,
                                               ANeuralNetworksMemory **memory) {
    ENTER("ANeuralNetworksMemory_createFromFd", 1);
    NONNULL(memory, "ANeuralNetworksMemory_createFromFd");
    *memory = NULL;
    if (fd < 0 || !size || !protect || (protect & ~(PROT_READ | PROT_WRITE)))
        return fk_err(ANEURALNETWORKS_BAD_DATA, "createFromFd: bad fd %d, size %zu or protection %d", fd, size, protect);
    void *p = mmap(NULL, size, protect, MAP_SHARED, fd, (off_t)offset);
    if (p == MAP_FAILED) return fk_err(ANEURALNETWORKS_UNMAPPABLE, "createFromFd: mmap failed: %s", strerror(errno));
    ANeuralNetworksMemory *m = calloc(1, sizeof *m);
    if (!m) return munmap(p, size), ANEURALNETWORKS_OUT_OF_MEMORY;
    m->magic = MAGIC_MEM, m->base = p, m->size = size, m->prot = protect;
    *memory = m;
    stats.memories++;
    return ANEURALNETWORKS_NO_ERROR;
}

FAKE_API void ANeuralNetworksMemory_free(ANeuralNetworksMemory *m) {
    if (!m || m->magic != MAGIC_MEM) return;
    munmap(m->base, m->size);
    m->magic = 0;
    free(m);
}

static int mem_range(const ANeuralNetworksMemory *m, size_t off, size_t len, int prot, const char *fn) {
    if (!m) return fk_err(ANEURALNETWORKS_UNEXPECTED_NULL, "%s: memory is NULL", fn);
    if (m->magic != MAGIC_MEM) return fk_err(ANEURALNETWORKS_BAD_DATA, "%s: not an ANeuralNetworksMemory", fn);
    if (off > m->size || len > m->size - off)
        return fk_err(ANEURALNETWORKS_BAD_DATA, "%s: [%zu, +%zu) lies outside the memory of %zu bytes", fn, off, len, m->size);
    if ((m->prot & prot) != prot)
        return fk_err(ANEURALNETWORKS_BAD_DATA, "%s: the memory is not mapped %s", fn,
                      prot & PROT_WRITE ? "writable" : "readable");
    return 0;
}

/* ---------------------------------------------------------------- model */
FAKE_API int ANeuralNetworksModel_create(ANeuralNetworksModel **model) {
    ENTER("ANeuralNetworksModel_create", 1);
    NONNULL(model, "ANeuralNetworksModel_create");
    *model = calloc(1, sizeof **model);
    if (!*model) return ANEURALNETWORKS_OUT_OF_MEMORY;
    (*model)->magic = MAGIC_MODEL;
    stats.models++;
    return ANEURALNETWORKS_NO_ERROR;
}

FAKE_API void ANeuralNetworksModel_free(ANeuralNetworksModel *m) {
    if (!m || m->magic != MAGIC_MODEL) return;
    for (uint32_t i = 0; i < m->n_opnd; i++) free(m->opnd[i].copy), free(m->opnd[i].pc_scales);
    for (uint32_t i = 0; i < m->n_ops; i++) free(m->ops[i].in), free(m->ops[i].out);
    free(m->opnd), free(m->ops), free(m->inputs), free(m->outputs), free(m->order);
    m->magic = 0;
    free(m);
}

static int editable(ANeuralNetworksModel *m, const char *fn) {
    if (!m) return fk_err(ANEURALNETWORKS_UNEXPECTED_NULL, "%s: model is NULL", fn);
    if (m->magic != MAGIC_MODEL) return fk_err(ANEURALNETWORKS_BAD_DATA, "%s: not an ANeuralNetworksModel", fn);
    if (m->finished) return fk_err(ANEURALNETWORKS_BAD_STATE, "%s after ANeuralNetworksModel_finish", fn);
    return 0;
}

static int operand_at(ANeuralNetworksModel *m, int32_t idx, const char *fn, fk_operand **o) {
    if (idx < 0 || (uint32_t)idx >= m->n_opnd)
        return fk_err(ANEURALNETWORKS_BAD_DATA, "%s: operand %d out of range [0, %u)", fn, (int)idx, m->n_opnd);
    *o = &m->opnd[idx];
    if ((*o)->lifetime == FK_INPUT || (*o)->lifetime == FK_OUTPUT)
        return fk_err(ANEURALNETWORKS_BAD_DATA, "%s: operand %d is a model input or output", fn, (int)idx);
    return 0;
}

FAKE_API int ANeuralNetworksModel_addOperand(ANeuralNetworksModel *m, const ANeuralNetworksOperandType *t) {
    ENTER("ANeuralNetworksModel_addOperand", 1);
    int rc = editable(m, "ANeuralNetworksModel_addOperand");
    if (rc) return rc;
    NONNULL(t, "ANeuralNetworksModel_addOperand");
    if ((rc = fk_check_operand_type(t))) return rc;
    if (m->n_opnd == m->cap_opnd) {
        uint32_t cap = m->cap_opnd ? 2 * m->cap_opnd : 64;
        fk_operand *p = realloc(m->opnd, cap * sizeof *p);
        if (!p) return ANEURALNETWORKS_OUT_OF_MEMORY;
        m->opnd = p, m->cap_opnd = cap;
    }
    fk_operand *o = &m->opnd[m->n_opnd++];
    memset(o, 0, sizeof *o);
    o->type = t->type, o->rank = t->dimensionCount, o->rank_known = fk_is_tensor(t->type) && t->dimensionCount > 0;
    if (t->dimensionCount) memcpy(o->dims, t->dimensions, 4ull * t->dimensionCount);
    o->scale = t->scale, o->zp = t->zeroPoint, o->writer = -1;
    stats.operands++;
    return ANEURALNETWORKS_NO_ERROR;
}

static int value_len_ok(const fk_operand *o, int32_t idx, size_t len, const char *fn) {
    size_t need = fk_bytes(o);
    for (uint32_t i = 0; need && i < o->rank; i++)
        if (!o->dims[i]) need = 0;
    if (!need) return fk_err(ANEURALNETWORKS_BAD_DATA, "%s: operand %d: a constant needs fully specified dimensions", fn, (int)idx);
    if (len != need)
        return fk_err(ANEURALNETWORKS_BAD_DATA, "%s: operand %d: length %zu, its type needs %zu bytes", fn, (int)idx, len, need);
    return 0;
}

FAKE_API int ANeuralNetworksModel_setOperandValue(ANeuralNetworksModel *m, int32_t idx, const void *buf, size_t len) {
    const char *fn = "ANeuralNetworksModel_setOperandValue";
    ENTER(fn, 1);
    fk_operand *o = NULL;
    int rc = editable(m, fn);
    if (rc || (rc = operand_at(m, idx, fn, &o))) return rc;
    free(o->copy), o->copy = NULL;
    if (!buf) {
        if (len) return fk_err(ANEURALNETWORKS_UNEXPECTED_NULL, "%s: NULL buffer of length %zu", fn, len);
        o->omitted = 1, o->lifetime = FK_CONST, o->value = NULL;
        return ANEURALNETWORKS_NO_ERROR;
    }
    if ((rc = value_len_ok(o, idx, len, fn))) return rc;
    if (len <= ANEURALNETWORKS_MAX_SIZE_OF_IMMEDIATELY_COPIED_VALUES) {
        if (!(o->copy = malloc(len))) return ANEURALNETWORKS_OUT_OF_MEMORY;
        memcpy(o->copy, buf, len);
        o->value = o->copy;
        stats.values_copied++;
    } else {
        o->value = buf; /* referenced: the caller keeps it alive, as NNAPI requires */
        stats.values_by_pointer++;
    }
    o->lifetime = FK_CONST, o->omitted = 0, o->len = len;
    return ANEURALNETWORKS_NO_ERROR;
}

FAKE_API int ANeuralNetworksModel_setOperandValueFromMemory(ANeuralNetworksModel *m, int32_t idx,
                                                           const ANeuralNetworksMemory *mem, size_t off, size_t len) {
    const char *fn = "ANeuralNetworksModel_setOperandValueFromMemory";
    ENTER(fn, 1);
    fk_operand *o = NULL;
    int rc = editable(m, fn);
    if (rc || (rc = operand_at(m, idx, fn, &o)) || (rc = mem_range(mem, off, len, PROT_READ, fn)) ||
        (rc = value_len_ok(o, idx, len, fn)))
        return rc;
    free(o->copy), o->copy = NULL;
    o->value = mem->base + off, o->lifetime = FK_CONST, o->omitted = 0, o->len = len;
    stats.values_from_memory++;
    return ANEURALNETWORKS_NO_ERROR;
}

#if FAKE_FL >= 3
FAKE_API int ANeuralNetworksModel_setOperandSymmPerChannelQuantParams(ANeuralNetworksModel *m, int32_t idx,
                                                                     const ANeuralNetworksSymmPerChannelQuantParams *p) {
    const char *fn = "ANeuralNetworksModel_setOperandSymmPerChannelQuantParams";
    ENTER(fn, 3);
    fk_operand *o = NULL;
    int rc = editable(m, fn);
    if (rc || (rc = operand_at(m, idx, fn, &o))) return rc;
    NONNULL(p, fn);
    if (o->type != ANEURALNETWORKS_TENSOR_QUANT8_SYMM_PER_CHANNEL)
        return fk_err(ANEURALNETWORKS_BAD_DATA, "%s: operand %d is not TENSOR_QUANT8_SYMM_PER_CHANNEL", fn, (int)idx);
    if (!o->rank_known || p->channelDim >= o->rank || p->scaleCount != o->dims[p->channelDim] || !p->scales)
        return fk_err(ANEURALNETWORKS_BAD_DATA, "%s: channel dimension %u / %u scales do not fit operand %d", fn,
                      p->channelDim, p->scaleCount, (int)idx);
    for (uint32_t i = 0; i < p->scaleCount; i++)
        if (!(p->scales[i] > 0)) return fk_err(ANEURALNETWORKS_BAD_DATA, "%s: scale %u is %g, must be > 0", fn, i, (double)p->scales[i]);
    free(o->pc_scales);
    if (!(o->pc_scales = malloc(4ull * p->scaleCount))) return ANEURALNETWORKS_OUT_OF_MEMORY;
    memcpy(o->pc_scales, p->scales, 4ull * p->scaleCount);
    o->has_pc = 1, o->pc_dim = p->channelDim, o->pc_n = p->scaleCount;
    return ANEURALNETWORKS_NO_ERROR;
}
#endif

FAKE_API int ANeuralNetworksModel_addOperation(ANeuralNetworksModel *m, ANeuralNetworksOperationType type,
                                              uint32_t nin, const uint32_t *in, uint32_t nout, const uint32_t *out) {
    const char *fn = "ANeuralNetworksModel_addOperation";
    ENTER(fn, 1);
    int rc = editable(m, fn);
    if (rc) return rc;
    if ((nin && !in) || (nout && !out)) return fk_err(ANEURALNETWORKS_UNEXPECTED_NULL, "%s: NULL operand list", fn);
    for (uint32_t k = 0; k < nin; k++)
        if (in[k] >= m->n_opnd) return fk_err(ANEURALNETWORKS_BAD_DATA, "%s: input %u: operand %u out of range", fn, k, in[k]);
    for (uint32_t k = 0; k < nout; k++) {
        if (out[k] >= m->n_opnd) return fk_err(ANEURALNETWORKS_BAD_DATA, "%s: output %u: operand %u out of range", fn, k, out[k]);
        const fk_operand *o = &m->opnd[out[k]];
        if (o->lifetime == FK_CONST || o->lifetime == FK_INPUT)
            return fk_err(ANEURALNETWORKS_BAD_DATA, "%s: output %u: operand %u is a constant or model input", fn, k, out[k]);
        if (o->writer >= 0)
            return fk_err(ANEURALNETWORKS_BAD_DATA, "%s: output %u: operand %u is already written by operation %d", fn, k,
                          out[k], o->writer);
    }
    if (m->n_ops == m->cap_ops) {
        uint32_t cap = m->cap_ops ? 2 * m->cap_ops : 32;
        fk_op *p = realloc(m->ops, cap * sizeof *p);
        if (!p) return ANEURALNETWORKS_OUT_OF_MEMORY;
        m->ops = p, m->cap_ops = cap;
    }
    fk_op *op = &m->ops[m->n_ops];
    op->code = type, op->nin = nin, op->nout = nout;
    op->in = malloc(4ull * nin + 4), op->out = malloc(4ull * nout + 4);
    if (!op->in || !op->out) return free(op->in), free(op->out), ANEURALNETWORKS_OUT_OF_MEMORY;
    memcpy(op->in, in, 4ull * nin), memcpy(op->out, out, 4ull * nout);
    m->n_ops++;
    if ((rc = fk_check_op(m, m->n_ops - 1, 0))) {
        m->n_ops--;
        free(op->in), free(op->out);
        return rc;
    }
    for (uint32_t k = 0; k < nout; k++) m->opnd[out[k]].writer = (int)m->n_ops - 1;
    stats.operations++;
    return ANEURALNETWORKS_NO_ERROR;
}

FAKE_API int ANeuralNetworksModel_identifyInputsAndOutputs(ANeuralNetworksModel *m, uint32_t nin, const uint32_t *in,
                                                          uint32_t nout, const uint32_t *out) {
    const char *fn = "ANeuralNetworksModel_identifyInputsAndOutputs";
    ENTER(fn, 1);
    int rc = editable(m, fn);
    if (rc) return rc;
    if ((nin && !in) || (nout && !out)) return fk_err(ANEURALNETWORKS_UNEXPECTED_NULL, "%s: NULL operand list", fn);
    for (uint32_t k = 0; k < nin + nout; k++) {
        uint32_t i = k < nin ? in[k] : out[k - nin];
        if (i >= m->n_opnd) return fk_err(ANEURALNETWORKS_BAD_DATA, "%s: operand %u out of range", fn, i);
        const fk_operand *o = &m->opnd[i];
        if (o->lifetime == FK_CONST) return fk_err(ANEURALNETWORKS_BAD_DATA, "%s: operand %u is a constant", fn, i);
        if (k < nin && o->writer >= 0)
            return fk_err(ANEURALNETWORKS_BAD_DATA, "%s: input operand %u is written by operation %d", fn, i, o->writer);
        if (k < nin && (!fk_is_tensor(o->type) || !fk_bytes(o)))
            return fk_err(ANEURALNETWORKS_BAD_DATA, "%s: input operand %u needs fully specified dimensions", fn, i);
        for (uint32_t d = 0; k < nin && d < o->rank; d++)
            if (!o->dims[d])
                return fk_err(ANEURALNETWORKS_BAD_DATA, "%s: input operand %u needs fully specified dimensions", fn, i);
    }
    free(m->inputs), free(m->outputs);
    m->inputs = malloc(4ull * nin + 4), m->outputs = malloc(4ull * nout + 4);
    if (!m->inputs || !m->outputs) return ANEURALNETWORKS_OUT_OF_MEMORY;
    memcpy(m->inputs, in, 4ull * nin), memcpy(m->outputs, out, 4ull * nout);
    m->n_inputs = nin, m->n_outputs = nout, m->identified = 1;
    for (uint32_t k = 0; k < nin; k++) m->opnd[in[k]].lifetime = FK_INPUT;
    for (uint32_t k = 0; k < nout; k++) m->opnd[out[k]].lifetime = FK_OUTPUT;
    return ANEURALNETWORKS_NO_ERROR;
}

#if FAKE_FL >= 2
FAKE_API int ANeuralNetworksModel_relaxComputationFloat32toFloat16(ANeuralNetworksModel *m, bool allow) {
    ENTER("ANeuralNetworksModel_relaxComputationFloat32toFloat16", 2);
    int rc = editable(m, "ANeuralNetworksModel_relaxComputationFloat32toFloat16");
    if (rc) return rc;
    m->relaxed = allow;
    return ANEURALNETWORKS_NO_ERROR;
}
#endif

FAKE_API int ANeuralNetworksModel_finish(ANeuralNetworksModel *m) {
    const char *fn = "ANeuralNetworksModel_finish";
    ENTER(fn, 1);
    int rc = editable(m, fn);
    if (rc) return rc;
    if (!m->identified) return fk_err(ANEURALNETWORKS_BAD_DATA, "%s: inputs and outputs were never identified", fn);
    if (!m->n_ops) return fk_err(ANEURALNETWORKS_BAD_DATA, "%s: the model has no operation", fn);
    for (uint32_t i = 0; i < m->n_opnd; i++) {
        const fk_operand *o = &m->opnd[i];
        if (o->type == ANEURALNETWORKS_TENSOR_QUANT8_SYMM_PER_CHANNEL && !o->has_pc)
            return fk_err(ANEURALNETWORKS_BAD_DATA, "%s: per-channel operand %u has no scales", fn, i);
        if (o->lifetime == FK_OUTPUT && o->writer < 0)
            return fk_err(ANEURALNETWORKS_BAD_DATA, "%s: model output operand %u is never written", fn, i);
    }
    /* run order: an operation once all its inputs exist (constants, model inputs, earlier results) */
    uint8_t *have = calloc(m->n_opnd + 1, 1), *done = calloc(m->n_ops + 1, 1);
    free(m->order);
    m->order = malloc(4ull * m->n_ops + 4);
    if (!have || !done || !m->order) return free(have), free(done), ANEURALNETWORKS_OUT_OF_MEMORY;
    for (uint32_t i = 0; i < m->n_opnd; i++) have[i] = m->opnd[i].lifetime == FK_CONST || m->opnd[i].lifetime == FK_INPUT;
    uint32_t n = 0;
    for (int progress = 1; progress && n < m->n_ops;) {
        progress = 0;
        for (uint32_t i = 0; i < m->n_ops; i++) {
            if (done[i]) continue;
            int ready = 1;
            for (uint32_t k = 0; k < m->ops[i].nin && ready; k++) ready = have[m->ops[i].in[k]];
            if (!ready) continue;
            for (uint32_t k = 0; k < m->ops[i].nout; k++) have[m->ops[i].out[k]] = 1;
            done[i] = 1, m->order[n++] = i, progress = 1;
        }
    }
    free(have);
    free(done);
    if (n < m->n_ops)
        return fk_err(ANEURALNETWORKS_BAD_DATA, "%s: %u operations read operands nothing writes (or form a cycle)", fn,
                      m->n_ops - n);
    for (uint32_t i = 0; i < m->n_ops; i++)
        if ((rc = fk_check_op(m, m->order[i], 1))) return rc;
    m->finished = 1;
    if (m->relaxed) stats.relaxed_models++;
    return ANEURALNETWORKS_NO_ERROR;
}

/* ---------------------------------------------------------------- devices */
struct ANeuralNetworksDevice {
    uint32_t magic;
    const char *name, *version;
    int32_t type;
    int npu;
};

static struct ANeuralNetworksDevice devices[2] = {
    {MAGIC_DEV, "nnapi-reference", "1.0.0", ANEURALNETWORKS_DEVICE_CPU, 0},
    {MAGIC_DEV, "ei-fake-npu", "ei-fake-1", ANEURALNETWORKS_DEVICE_ACCELERATOR, 1},
};

static uint32_t n_devices(void) {
    const char *s = getenv("EI_FAKE_NNAPI_NO_NPU");
    return s && s[0] == '1' ? 1 : 2;
}

static inline int dev_ok(const ANeuralNetworksDevice *d) { return d == &devices[0] || (d == &devices[1] && n_devices() == 2); }

static int dev_level(const ANeuralNetworksDevice *d) {
    const char *s = d->npu ? getenv("EI_FAKE_NPU_FEATURE_LEVEL") : NULL;
    int v = s && s[0] ? atoi(s) : fk_fl();
    return v < 1 ? 1 : v > fk_fl() ? fk_fl() : v;
}

/* The fake accelerator rejects the operations named in EI_FAKE_NPU_UNSUPPORTED and any above its level. */
static int dev_supports(const ANeuralNetworksDevice *d, const fk_op *op) {
    if (!d->npu) return 1;
    const char *list = getenv("EI_FAKE_NPU_UNSUPPORTED"), *name = fk_op_name(op->code);
    size_t n = strlen(name);
    for (const char *p = list; p && *p;) {
        const char *e = strchr(p, ',');
        size_t k = e ? (size_t)(e - p) : strlen(p);
        if (k == n && !strncmp(p, name, n)) return 0;
        p = e ? e + 1 : p + k;
    }
    return op->code != ANEURALNETWORKS_BATCH_MATMUL || dev_level(d) >= 6;
}

#if FAKE_FL >= 3
FAKE_API int ANeuralNetworks_getDeviceCount(uint32_t *n) {
    ENTER("ANeuralNetworks_getDeviceCount", 3);
    NONNULL(n, "ANeuralNetworks_getDeviceCount");
    *n = n_devices();
    return ANEURALNETWORKS_NO_ERROR;
}

FAKE_API int ANeuralNetworks_getDevice(uint32_t i, ANeuralNetworksDevice **d) {
    ENTER("ANeuralNetworks_getDevice", 3);
    NONNULL(d, "ANeuralNetworks_getDevice");
    if (i >= n_devices()) return fk_err(ANEURALNETWORKS_BAD_DATA, "getDevice: index %u of %u devices", i, n_devices());
    *d = &devices[i];
    return ANEURALNETWORKS_NO_ERROR;
}

#define DEV_GET(fn, T, field, expr)                                                    \
    FAKE_API int fn(const ANeuralNetworksDevice *d, T *field) {                        \
        ENTER(#fn, 3);                                                                 \
        NONNULL(field, #fn);                                                           \
        if (!d) return fk_err(ANEURALNETWORKS_UNEXPECTED_NULL, "%s: device is NULL", #fn); \
        if (!dev_ok(d)) return fk_err(ANEURALNETWORKS_BAD_DATA, "%s: not a device", #fn); \
        *field = expr;                                                                 \
        return ANEURALNETWORKS_NO_ERROR;                                               \
    }
DEV_GET(ANeuralNetworksDevice_getName, const char *, name, d->name)
DEV_GET(ANeuralNetworksDevice_getVersion, const char *, version, d->version)
DEV_GET(ANeuralNetworksDevice_getType, int32_t, type, d->type)
DEV_GET(ANeuralNetworksDevice_getFeatureLevel, int64_t, level, fl_code(dev_level(d)))

FAKE_API int ANeuralNetworksModel_getSupportedOperationsForDevices(const ANeuralNetworksModel *m,
                                                                  const ANeuralNetworksDevice *const *devs, uint32_t n,
                                                                  bool *sup) {
    const char *fn = "ANeuralNetworksModel_getSupportedOperationsForDevices";
    ENTER(fn, 3);
    NONNULL(m, fn);
    NONNULL(devs, fn);
    NONNULL(sup, fn);
    if (m->magic != MAGIC_MODEL) return fk_err(ANEURALNETWORKS_BAD_DATA, "%s: not a model", fn);
    if (!m->finished) return fk_err(ANEURALNETWORKS_BAD_STATE, "%s: the model is not finished", fn);
    if (!n) return fk_err(ANEURALNETWORKS_BAD_DATA, "%s: no devices", fn);
    for (uint32_t k = 0; k < n; k++)
        if (!dev_ok(devs[k])) return fk_err(ANEURALNETWORKS_BAD_DATA, "%s: device %u is not a device", fn, k);
    for (uint32_t i = 0; i < m->n_ops; i++) {
        sup[i] = false;
        for (uint32_t k = 0; k < n && !sup[i]; k++) sup[i] = dev_supports(devs[k], &m->ops[i]);
    }
    return ANEURALNETWORKS_NO_ERROR;
}
#endif

#if FAKE_FL >= 5
FAKE_API int64_t ANeuralNetworks_getRuntimeFeatureLevel(void) { return fl_code(fk_fl()); }
#endif

/* ---------------------------------------------------------------- compilation */
struct ANeuralNetworksCompilation {
    uint32_t magic;
    ANeuralNetworksModel *model;
    int finished, for_devices, caching;
    char cache_dir[256];
    uint8_t token[ANEURALNETWORKS_BYTE_SIZE_OF_CACHE_TOKEN];
    const ANeuralNetworksDevice *devs[2];
    uint32_t n_devs;
};

static int new_comp(ANeuralNetworksModel *m, ANeuralNetworksCompilation **c, const char *fn) {
    NONNULL(m, fn);
    NONNULL(c, fn);
    *c = NULL;
    if (m->magic != MAGIC_MODEL) return fk_err(ANEURALNETWORKS_BAD_DATA, "%s: not a model", fn);
    if (!m->finished) return fk_err(ANEURALNETWORKS_BAD_STATE, "%s: the model is not finished", fn);
    if (!(*c = calloc(1, sizeof **c))) return ANEURALNETWORKS_OUT_OF_MEMORY;
    (*c)->magic = MAGIC_COMP, (*c)->model = m;
    return 0;
}

FAKE_API int ANeuralNetworksCompilation_create(ANeuralNetworksModel *m, ANeuralNetworksCompilation **c) {
    ENTER("ANeuralNetworksCompilation_create", 1);
    int rc = new_comp(m, c, "ANeuralNetworksCompilation_create");
    if (rc) return rc;
    (*c)->n_devs = n_devices(); /* the runtime may use every device, the reference one included */
    for (uint32_t i = 0; i < (*c)->n_devs; i++) (*c)->devs[i] = &devices[i];
    stats.compilations_default++;
    return ANEURALNETWORKS_NO_ERROR;
}

#if FAKE_FL >= 3
FAKE_API int ANeuralNetworksCompilation_createForDevices(ANeuralNetworksModel *m, const ANeuralNetworksDevice *const *devs,
                                                        uint32_t n, ANeuralNetworksCompilation **c) {
    const char *fn = "ANeuralNetworksCompilation_createForDevices";
    ENTER(fn, 3);
    NONNULL(devs, fn);
    if (!n || n > 2) return fk_err(ANEURALNETWORKS_BAD_DATA, "%s: %u devices", fn, n);
    for (uint32_t k = 0; k < n; k++)
        if (!dev_ok(devs[k])) return fk_err(ANEURALNETWORKS_BAD_DATA, "%s: device %u is not a device", fn, k);
    int rc = new_comp(m, c, fn);
    if (rc) return rc;
    (*c)->for_devices = 1, (*c)->n_devs = n;
    for (uint32_t k = 0; k < n; k++) (*c)->devs[k] = devs[k];
    stats.compilations_for_devices++, stats.last_devices = n;
    return ANEURALNETWORKS_NO_ERROR;
}

FAKE_API int ANeuralNetworksCompilation_setCaching(ANeuralNetworksCompilation *c, const char *dir, const uint8_t *token) {
    const char *fn = "ANeuralNetworksCompilation_setCaching";
    ENTER(fn, 3);
    NONNULL(c, fn);
    NONNULL(dir, fn);
    NONNULL(token, fn);
    if (c->finished) return fk_err(ANEURALNETWORKS_BAD_STATE, "%s after ANeuralNetworksCompilation_finish", fn);
    snprintf(c->cache_dir, sizeof c->cache_dir, "%s", dir);
    memcpy(c->token, token, sizeof c->token);
    c->caching = 1;
    stats.caching++;
    return ANEURALNETWORKS_NO_ERROR;
}
#endif

FAKE_API void ANeuralNetworksCompilation_free(ANeuralNetworksCompilation *c) {
    if (!c || c->magic != MAGIC_COMP) return;
    c->magic = 0;
    free(c);
}

FAKE_API int ANeuralNetworksCompilation_setPreference(ANeuralNetworksCompilation *c, int32_t p) {
    const char *fn = "ANeuralNetworksCompilation_setPreference";
    ENTER(fn, 1);
    NONNULL(c, fn);
    if (c->finished) return fk_err(ANEURALNETWORKS_BAD_STATE, "%s after ANeuralNetworksCompilation_finish", fn);
    if (p < ANEURALNETWORKS_PREFER_LOW_POWER || p > ANEURALNETWORKS_PREFER_SUSTAINED_SPEED)
        return fk_err(ANEURALNETWORKS_BAD_DATA, "%s: %d is not a PreferenceCode", fn, (int)p);
    stats.last_preference = p;
    return ANEURALNETWORKS_NO_ERROR;
}

FAKE_API int ANeuralNetworksCompilation_finish(ANeuralNetworksCompilation *c) {
    const char *fn = "ANeuralNetworksCompilation_finish";
    ENTER(fn, 1);
    NONNULL(c, fn);
    if (c->magic != MAGIC_COMP) return fk_err(ANEURALNETWORKS_BAD_DATA, "%s: not a compilation", fn);
    if (c->finished) return fk_err(ANEURALNETWORKS_BAD_STATE, "%s called twice", fn);
    const ANeuralNetworksModel *m = c->model;
    for (uint32_t i = 0; i < m->n_ops; i++) {
        int ok = 0;
        for (uint32_t k = 0; k < c->n_devs && !ok; k++) ok = dev_supports(c->devs[k], &m->ops[i]);
        if (!ok)
            return fk_err(ANEURALNETWORKS_BAD_DATA, "%s: operation %u (%s) runs on none of the %u devices given", fn, i,
                          fk_op_name(m->ops[i].code), c->n_devs);
    }
    if (c->caching) { /* a real driver stores its compiled form; a token file stands in for it */
        char path[400];
        int k = snprintf(path, sizeof path, "%s/ei-fake-", c->cache_dir);
        for (int i = 0; i < ANEURALNETWORKS_BYTE_SIZE_OF_CACHE_TOKEN && k < (int)sizeof path - 8; i++)
            k += snprintf(path + k, sizeof path - (size_t)k, "%02x", c->token[i]);
        snprintf(path + k, sizeof path - (size_t)k, ".bin");
        if (access(path, F_OK) == 0) stats.cache_hits++;
        else {
            FILE *f = fopen(path, "wb");
            if (f) fputs("ei fake nnapi compilation cache\n", f), fclose(f), stats.cache_writes++;
        }
    }
    c->finished = 1;
    return ANEURALNETWORKS_NO_ERROR;
}

/* ---------------------------------------------------------------- execution */
typedef struct {
    int set;
    const uint8_t *src; /* inputs */
    uint8_t *dst;       /* outputs */
} fk_bind;

struct ANeuralNetworksExecution {
    uint32_t magic;
    ANeuralNetworksCompilation *comp;
    int scheduled, reusable;
    fk_bind *in, *out;
};

struct ANeuralNetworksEvent {
    uint32_t magic;
    int result;
};

struct ANeuralNetworksBurst {
    uint32_t magic;
    ANeuralNetworksCompilation *comp;
};

FAKE_API int ANeuralNetworksExecution_create(ANeuralNetworksCompilation *c, ANeuralNetworksExecution **e) {
    const char *fn = "ANeuralNetworksExecution_create";
    ENTER(fn, 1);
    NONNULL(c, fn);
    NONNULL(e, fn);
    *e = NULL;
    if (c->magic != MAGIC_COMP) return fk_err(ANEURALNETWORKS_BAD_DATA, "%s: not a compilation", fn);
    if (!c->finished) return fk_err(ANEURALNETWORKS_BAD_STATE, "%s: the compilation is not finished", fn);
    ANeuralNetworksExecution *x = calloc(1, sizeof *x);
    if (x) x->in = calloc(c->model->n_inputs + 1, sizeof *x->in), x->out = calloc(c->model->n_outputs + 1, sizeof *x->out);
    if (!x || !x->in || !x->out) {
        if (x) free(x->in), free(x->out);
        free(x);
        return ANEURALNETWORKS_OUT_OF_MEMORY;
    }
    x->magic = MAGIC_EXEC, x->comp = c;
    *e = x;
    stats.executions++;
    return ANEURALNETWORKS_NO_ERROR;
}

FAKE_API void ANeuralNetworksExecution_free(ANeuralNetworksExecution *e) {
    if (!e || e->magic != MAGIC_EXEC) return;
    free(e->in), free(e->out);
    e->magic = 0;
    free(e);
}

/* Checks common to the four set* calls; *o is the model operand of input / output idx. */
static int bind_check(ANeuralNetworksExecution *e, int out, int32_t idx, const ANeuralNetworksOperandType *t, size_t len,
                      const char *fn, const fk_operand **o) {
    NONNULL(e, fn);
    if (e->magic != MAGIC_EXEC) return fk_err(ANEURALNETWORKS_BAD_DATA, "%s: not an execution", fn);
    if (e->scheduled) return fk_err(ANEURALNETWORKS_BAD_STATE, "%s after the execution was scheduled", fn);
    const ANeuralNetworksModel *m = e->comp->model;
    uint32_t n = out ? m->n_outputs : m->n_inputs;
    if (idx < 0 || (uint32_t)idx >= n)
        return fk_err(ANEURALNETWORKS_BAD_DATA, "%s: %s %d out of range [0, %u)", fn, out ? "output" : "input", (int)idx, n);
    *o = &m->opnd[out ? m->outputs[idx] : m->inputs[idx]];
    if (t) {
        int same = t->type == (*o)->type && t->dimensionCount == (*o)->rank && t->scale == (*o)->scale &&
                   t->zeroPoint == (*o)->zp;
        for (uint32_t d = 0; same && d < t->dimensionCount; d++) same = t->dimensions && t->dimensions[d] == (*o)->dims[d];
        if (!same) return fk_err(ANEURALNETWORKS_BAD_DATA, "%s: the type given differs from the model's operand", fn);
    }
    size_t need = fk_bytes(*o);
    if (len != need)
        return fk_err(ANEURALNETWORKS_BAD_DATA, "%s: %s %d: length %zu, the operand has %zu bytes", fn,
                      out ? "output" : "input", (int)idx, len, need);
    return 0;
}

FAKE_API int ANeuralNetworksExecution_setInput(ANeuralNetworksExecution *e, int32_t idx, const ANeuralNetworksOperandType *t,
                                              const void *buf, size_t len) {
    const char *fn = "ANeuralNetworksExecution_setInput";
    ENTER(fn, 1);
    const fk_operand *o = NULL;
    if (!buf) return fk_err(len ? ANEURALNETWORKS_UNEXPECTED_NULL : ANEURALNETWORKS_BAD_DATA,
                            "%s: no buffer (this library's models have no optional inputs)", fn);
    int rc = bind_check(e, 0, idx, t, len, fn, &o);
    if (rc) return rc;
    e->in[idx] = (fk_bind){1, buf, NULL};
    stats.inputs_by_pointer++;
    return ANEURALNETWORKS_NO_ERROR;
}

FAKE_API int ANeuralNetworksExecution_setInputFromMemory(ANeuralNetworksExecution *e, int32_t idx,
                                                        const ANeuralNetworksOperandType *t,
                                                        const ANeuralNetworksMemory *mem, size_t off, size_t len) {
    const char *fn = "ANeuralNetworksExecution_setInputFromMemory";
    ENTER(fn, 1);
    const fk_operand *o = NULL;
    int rc = bind_check(e, 0, idx, t, len, fn, &o);
    if (rc || (rc = mem_range(mem, off, len, PROT_READ, fn))) return rc;
    e->in[idx] = (fk_bind){1, mem->base + off, NULL};
    stats.inputs_from_memory++;
    return ANEURALNETWORKS_NO_ERROR;
}

FAKE_API int ANeuralNetworksExecution_setOutput(ANeuralNetworksExecution *e, int32_t idx, const ANeuralNetworksOperandType *t,
                                               void *buf, size_t len) {
    const char *fn = "ANeuralNetworksExecution_setOutput";
    ENTER(fn, 1);
    const fk_operand *o = NULL;
    if (!buf) return fk_err(len ? ANEURALNETWORKS_UNEXPECTED_NULL : ANEURALNETWORKS_BAD_DATA, "%s: no buffer", fn);
    int rc = bind_check(e, 1, idx, t, len, fn, &o);
    if (rc) return rc;
    e->out[idx] = (fk_bind){1, NULL, buf};
    stats.outputs_by_pointer++;
    return ANEURALNETWORKS_NO_ERROR;
}

FAKE_API int ANeuralNetworksExecution_setOutputFromMemory(ANeuralNetworksExecution *e, int32_t idx,
                                                         const ANeuralNetworksOperandType *t,
                                                         const ANeuralNetworksMemory *mem, size_t off, size_t len) {
    const char *fn = "ANeuralNetworksExecution_setOutputFromMemory";
    ENTER(fn, 1);
    const fk_operand *o = NULL;
    int rc = bind_check(e, 1, idx, t, len, fn, &o);
    if (rc || (rc = mem_range(mem, off, len, PROT_READ | PROT_WRITE, fn))) return rc;
    e->out[idx] = (fk_bind){1, NULL, mem->base + off};
    stats.outputs_from_memory++;
    return ANEURALNETWORKS_NO_ERROR;
}

#if FAKE_FL >= 5
FAKE_API int ANeuralNetworksExecution_setReusable(ANeuralNetworksExecution *e, bool reusable) {
    const char *fn = "ANeuralNetworksExecution_setReusable";
    ENTER(fn, 5);
    NONNULL(e, fn);
    if (e->scheduled) return fk_err(ANEURALNETWORKS_BAD_STATE, "%s after the execution was scheduled", fn);
    e->reusable = reusable;
    if (reusable) stats.reusable_executions++;
    return ANEURALNETWORKS_NO_ERROR;
}
#endif

static int compute(ANeuralNetworksExecution *e, const char *fn) {
    NONNULL(e, fn);
    if (e->magic != MAGIC_EXEC) return fk_err(ANEURALNETWORKS_BAD_DATA, "%s: not an execution", fn);
    if (e->scheduled && !e->reusable)
        return fk_err(ANEURALNETWORKS_BAD_STATE, "%s: the execution already ran (it is not reusable)", fn);
    const ANeuralNetworksModel *m = e->comp->model;
    for (uint32_t i = 0; i < m->n_inputs; i++)
        if (!e->in[i].set) return fk_err(ANEURALNETWORKS_BAD_DATA, "%s: input %u was never set", fn, i);
    for (uint32_t i = 0; i < m->n_outputs; i++)
        if (!e->out[i].set) return fk_err(ANEURALNETWORKS_BAD_DATA, "%s: output %u was never set", fn, i);
    e->scheduled = 1;
    uint8_t **bufs = calloc(m->n_opnd + 1, sizeof *bufs), *own = calloc(m->n_opnd + 1, 1);
    int rc = bufs && own ? ANEURALNETWORKS_NO_ERROR : ANEURALNETWORKS_OUT_OF_MEMORY;
    for (uint32_t i = 0; i < m->n_inputs && !rc; i++) bufs[m->inputs[i]] = (uint8_t *)(uintptr_t)e->in[i].src;
    for (uint32_t i = 0; i < m->n_opnd && !rc; i++) {
        const fk_operand *o = &m->opnd[i];
        if (o->lifetime == FK_CONST) bufs[i] = (uint8_t *)(uintptr_t)o->value;
        else if (o->lifetime != FK_INPUT && !(bufs[i] = malloc(fk_bytes(o) + 1))) rc = ANEURALNETWORKS_OUT_OF_MEMORY;
        else own[i] = o->lifetime != FK_INPUT;
    }
    if (!rc) rc = fk_run(m, bufs);
    for (uint32_t i = 0; i < m->n_outputs && !rc; i++)
        memcpy(e->out[i].dst, bufs[m->outputs[i]], fk_bytes(&m->opnd[m->outputs[i]]));
    for (uint32_t i = 0; bufs && own && i < m->n_opnd; i++)
        if (own[i]) free(bufs[i]);
    free(bufs);
    free(own);
    return rc;
}

#if FAKE_FL >= 3
FAKE_API int ANeuralNetworksExecution_compute(ANeuralNetworksExecution *e) {
    ENTER("ANeuralNetworksExecution_compute", 3);
    stats.computes++;
    return compute(e, "ANeuralNetworksExecution_compute");
}

FAKE_API int ANeuralNetworksBurst_create(ANeuralNetworksCompilation *c, ANeuralNetworksBurst **b) {
    const char *fn = "ANeuralNetworksBurst_create";
    ENTER(fn, 3);
    NONNULL(c, fn);
    NONNULL(b, fn);
    if (!c->finished) return fk_err(ANEURALNETWORKS_BAD_STATE, "%s: the compilation is not finished", fn);
    if (!(*b = calloc(1, sizeof **b))) return ANEURALNETWORKS_OUT_OF_MEMORY;
    (*b)->magic = MAGIC_BURST, (*b)->comp = c;
    stats.bursts++;
    return ANEURALNETWORKS_NO_ERROR;
}

FAKE_API void ANeuralNetworksBurst_free(ANeuralNetworksBurst *b) {
    if (!b || b->magic != MAGIC_BURST) return;
    b->magic = 0;
    free(b);
}

FAKE_API int ANeuralNetworksExecution_burstCompute(ANeuralNetworksExecution *e, ANeuralNetworksBurst *b) {
    const char *fn = "ANeuralNetworksExecution_burstCompute";
    ENTER(fn, 3);
    NONNULL(e, fn);
    NONNULL(b, fn);
    if (b->magic != MAGIC_BURST) return fk_err(ANEURALNETWORKS_BAD_DATA, "%s: not a burst", fn);
    if (e->magic == MAGIC_EXEC && b->comp != e->comp)
        return fk_err(ANEURALNETWORKS_BAD_DATA, "%s: the burst belongs to another compilation", fn);
    stats.burst_computes++;
    return compute(e, fn);
}
#endif

FAKE_API int ANeuralNetworksExecution_startCompute(ANeuralNetworksExecution *e, ANeuralNetworksEvent **ev) {
    const char *fn = "ANeuralNetworksExecution_startCompute";
    ENTER(fn, 1);
    NONNULL(ev, fn);
    *ev = NULL;
    if (e && e->magic == MAGIC_EXEC && e->scheduled && !e->reusable)
        return fk_err(ANEURALNETWORKS_BAD_STATE, "%s: the execution already ran", fn);
    int result = compute(e, fn); /* synchronous here; the result travels with the event */
    if (result == ANEURALNETWORKS_UNEXPECTED_NULL || result == ANEURALNETWORKS_BAD_DATA) return result;
    if (!(*ev = calloc(1, sizeof **ev))) return ANEURALNETWORKS_OUT_OF_MEMORY;
    (*ev)->magic = MAGIC_EVENT, (*ev)->result = result;
    stats.start_computes++;
    return ANEURALNETWORKS_NO_ERROR;
}

FAKE_API int ANeuralNetworksEvent_wait(ANeuralNetworksEvent *ev) {
    ENTER("ANeuralNetworksEvent_wait", 1);
    NONNULL(ev, "ANeuralNetworksEvent_wait");
    if (ev->magic != MAGIC_EVENT) return fk_err(ANEURALNETWORKS_BAD_DATA, "ANeuralNetworksEvent_wait: not an event");
    return ev->result;
}

FAKE_API void ANeuralNetworksEvent_free(ANeuralNetworksEvent *ev) {
    if (!ev || ev->magic != MAGIC_EVENT) return;
    ev->magic = 0;
    free(ev);
}
