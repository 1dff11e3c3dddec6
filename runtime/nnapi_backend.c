/* The nnapi backend (backend.h, DESIGN 6.4, docs/nnapi.md): the ei_backend vtable over the NNAPI
 * runtime loaded by nnapi_loader.c and the models built by nnapi_lower*.c.
 *
 * prepare: validate, lower for the target feature level (the runtime's, the chosen device's and
 * max_feature_level, whichever is lowest), ask the device which operations it takes, compile
 * (createForDevices on the chosen device, else ANeuralNetworksCompilation_create; preference
 * SUSTAINED_SPEED; setCaching with the lowering's 32-byte token when a cache directory is given)
 * and create a burst. Whatever cannot be done becomes one notice line and a cpu exec, or, strict,
 * the error.
 *
 * execute: INPUT / OUTPUT bytes that lie inside memory from ei_backend_nnapi_alloc are bound by
 * (ANeuralNetworksMemory, offset): NNAPI maps that memory once and copies nothing per call.
 * Other caller memory is bound by pointer (the runtime may copy it). Tensors whose bytes differ on
 * the NNAPI side (emulated int8, fallback_f16) are converted through a staging area that is itself
 * such memory. From feature level 5 the execution is made reusable and kept while the bindings
 * stay the same, so a decode loop over fixed state buffers sets nothing up per call; computes go
 * through the burst when there is one, else ANeuralNetworksExecution_compute (level 3) or
 * startCompute + ANeuralNetworksEvent_wait (levels 1-2). */
#include "runtime/backend.h"

#include "core/ei_error.h"
#include "core/ei_half.h"
#include "runtime/nnapi_internal.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

typedef struct nn_region {
    struct nn_region *next;
    uint8_t *base;
    size_t size;
    int fd;
    ANeuralNetworksMemory *mem;
} nn_region;

typedef struct {
    ei_backend base;
    ei_nnapi_options o;
    char *lib, *device, *cache_dir, *blob_path; /* copies of the option strings */
    ei_nn_api api;
    ei_nn_device *devs;
    int n_devs, dev; /* dev: chosen device, -1: the runtime's choice */
    int fl;          /* level graphs are lowered for */
    ei_backend *cpu; /* made on the first fallback */
    nn_region *regions;
} nn_backend;

#define NN_EXEC_MAGIC 0x45494e4eu /* "EINN" */

typedef struct {
    uint32_t magic;
    nn_backend *be;
    const ei_graph *g;
    ei_backend_exec *cpu_x; /* non-NULL: the graph runs on cpu */
    ei_nn_lowered L;
    ANeuralNetworksCompilation *comp;
    ANeuralNetworksBurst *burst;
    ANeuralNetworksExecution *reuse;
    const void **last; /* bindings of reuse: inputs then outputs */
    nn_region *stage;
    int partitioned;
    int64_t in_mem, out_mem;
} nn_exec;

static FILE *logf_(const nn_backend *be) { return be->o.log ? be->o.log : stderr; }

/* ---------------------------------------------------------------- shared memory */
/* An fd NNAPI can map: ASharedMemory (libandroid, API 26) on Android; elsewhere an unlinked
 * temporary file, which any POSIX system has. */
static int shm_fd(const nn_backend *be, size_t size) {
    void *h = dlopen("libandroid.so", RTLD_LAZY | RTLD_LOCAL);
    if (h) {
        void *sym = dlsym(h, "ASharedMemory_create");
        int (*create)(const char *, size_t) = NULL;
        if (sym) memcpy(&create, &sym, sizeof sym);
        int fd = create ? create("ei-nnapi", size) : -1;
        dlclose(h);
        if (fd >= 0) return fd;
    }
    const char *dirs[4] = {be->cache_dir, getenv("TMPDIR"), "/data/local/tmp", "/tmp"};
    for (int i = 0; i < 4; i++) {
        if (!dirs[i] || !dirs[i][0] || access(dirs[i], W_OK)) continue;
        char path[512];
        snprintf(path, sizeof path, "%s/ei-nnapi-XXXXXX", dirs[i]);
        int fd = mkstemp(path);
        if (fd < 0) continue;
        unlink(path);
        if (ftruncate(fd, (off_t)size) == 0) return fd;
        close(fd);
    }
    return -1;
}

static void region_free(const nn_backend *be, nn_region *r) {
    if (!r) return;
    if (r->mem) be->api.Memory_free(r->mem);
    if (r->base) munmap(r->base, r->size);
    if (r->fd >= 0) close(r->fd);
    free(r);
}

static nn_region *region_new(const nn_backend *be, uint64_t bytes) {
    long pg = sysconf(_SC_PAGESIZE);
    size_t page = pg > 0 ? (size_t)pg : 4096, size = (size_t)((bytes + page - 1) / page * page);
    nn_region *r = calloc(1, sizeof *r);
    if (!r) return ei_error_set("nnapi: out of memory"), NULL;
    r->fd = -1;
    r->size = size ? size : page;
    if ((r->fd = shm_fd(be, r->size)) < 0) {
        ei_error_set("nnapi: no shared memory of %zu bytes (no writable temporary directory)", r->size);
        goto fail;
    }
    void *p = mmap(NULL, r->size, PROT_READ | PROT_WRITE, MAP_SHARED, r->fd, 0);
    if (p == MAP_FAILED) {
        ei_error_set("nnapi: mmap of %zu bytes failed: %s", r->size, strerror(errno));
        goto fail;
    }
    r->base = p;
    int rc = be->api.Memory_createFromFd(r->size, PROT_READ | PROT_WRITE, r->fd, 0, &r->mem);
    if (rc != ANEURALNETWORKS_NO_ERROR) {
        r->mem = NULL;
        ei_error_set("nnapi: ANeuralNetworksMemory_createFromFd (%zu bytes) failed: %s (%d)", r->size,
                     ei_nn_result_name(rc), rc);
        goto fail;
    }
    return r;
fail:
    region_free(be, r);
    return NULL;
}

static const ei_backend_ops nn_ops;

void *ei_backend_nnapi_alloc(ei_backend *b, uint64_t bytes) {
    if (!b || b->ops != &nn_ops) return NULL;
    nn_backend *be = (nn_backend *)b;
    nn_region *r = region_new(be, bytes);
    if (!r) return NULL;
    r->next = be->regions;
    be->regions = r;
    return r->base;
}

void ei_backend_nnapi_free(ei_backend *b, void *p) {
    if (!b || !p || b->ops != &nn_ops) return;
    nn_backend *be = (nn_backend *)b;
    for (nn_region **pr = &be->regions; *pr; pr = &(*pr)->next)
        if ((*pr)->base == p) {
            nn_region *r = *pr;
            *pr = r->next;
            region_free(be, r);
            return;
        }
}

static const nn_region *find_region(const nn_exec *x, const void *p, uint64_t n) {
    const uint8_t *q = p;
    for (const nn_region *r = x->be->regions; r; r = r->next)
        if (q >= r->base && q + n <= r->base + r->size) return r;
    return NULL;
}

/* ---------------------------------------------------------------- prepare */
static void exec_free(nn_exec *x) {
    if (!x) return;
    const ei_nn_api *a = &x->be->api;
    if (x->cpu_x) x->be->cpu->ops->release(x->cpu_x);
    if (x->reuse) a->Execution_free(x->reuse);
    if (x->burst) a->Burst_free(x->burst);
    if (x->comp) a->Compilation_free(x->comp);
    ei_nn_lowered_free(a, &x->L);
    region_free(x->be, x->stage);
    free(x->last);
    x->magic = 0;
    free(x);
}

static int nn_fail(const nn_exec *x, const char *call, int rc) {
    return ei_error_set("graph '%s': %s (model of %d NNAPI operations) failed: %s (%d)", x->g->name, call,
                        (int)x->L.n_ops, ei_nn_result_name(rc), rc);
}

/* Operations the chosen device does not take: 0 (all taken), the count, or -1 on error. */
static int unsupported_ops(const nn_backend *be, const ei_nn_lowered *L, bool **sup_out) {
    *sup_out = NULL;
    if (be->dev < 0 || !be->api.Model_getSupportedOperationsForDevices || !L->n_ops) return 0;
    bool *sup = calloc((size_t)L->n_ops, sizeof *sup);
    if (!sup) return ei_error_set("nnapi: out of memory");
    const ANeuralNetworksDevice *d = be->devs[be->dev].dev;
    int rc = be->api.Model_getSupportedOperationsForDevices(L->model, &d, 1, sup);
    if (rc != ANEURALNETWORKS_NO_ERROR) {
        free(sup);
        return ei_error_set("nnapi: ANeuralNetworksModel_getSupportedOperationsForDevices failed: %s (%d)",
                            ei_nn_result_name(rc), rc);
    }
    int n = 0;
    for (int32_t i = 0; i < L->n_ops; i++) n += !sup[i];
    *sup_out = sup;
    return n;
}

static int compile(nn_exec *x) {
    nn_backend *be = x->be;
    const ei_nn_api *a = &be->api;
    int rc;
    if (be->dev >= 0 && a->Compilation_createForDevices) {
        const ANeuralNetworksDevice *one = be->devs[be->dev].dev;
        const ANeuralNetworksDevice **all = NULL;
        if (x->partitioned) { /* the chosen device first, then the others take what it cannot */
            all = malloc((size_t)be->n_devs * sizeof *all);
            if (!all) return ei_error_set("nnapi: out of memory");
            all[0] = one;
            for (int i = 0, k = 1; i < be->n_devs; i++)
                if (i != be->dev) all[k++] = be->devs[i].dev;
        }
        rc = a->Compilation_createForDevices(x->L.model, all ? all : &one, all ? (uint32_t)be->n_devs : 1, &x->comp);
        free(all);
        if (rc != ANEURALNETWORKS_NO_ERROR) return x->comp = NULL, nn_fail(x, "ANeuralNetworksCompilation_createForDevices", rc);
    } else {
        rc = a->Compilation_create(x->L.model, &x->comp);
        if (rc != ANEURALNETWORKS_NO_ERROR) return x->comp = NULL, nn_fail(x, "ANeuralNetworksCompilation_create", rc);
    }
    rc = a->Compilation_setPreference(x->comp, ANEURALNETWORKS_PREFER_SUSTAINED_SPEED);
    if (rc != ANEURALNETWORKS_NO_ERROR) return nn_fail(x, "ANeuralNetworksCompilation_setPreference", rc);
    if (be->cache_dir && a->Compilation_setCaching) {
        rc = a->Compilation_setCaching(x->comp, be->cache_dir, x->L.token);
        if (rc != ANEURALNETWORKS_NO_ERROR) return nn_fail(x, "ANeuralNetworksCompilation_setCaching", rc);
    }
    rc = a->Compilation_finish(x->comp);
    if (rc != ANEURALNETWORKS_NO_ERROR) return nn_fail(x, "ANeuralNetworksCompilation_finish", rc);
    if (!be->o.no_burst && a->Burst_create && a->Execution_burstCompute) {
        rc = a->Burst_create(x->comp, &x->burst);
        if (rc != ANEURALNETWORKS_NO_ERROR) return x->burst = NULL, nn_fail(x, "ANeuralNetworksBurst_create", rc);
    }
    return 0;
}

static int setup_stage(nn_exec *x) {
    uint64_t off = 0;
    ei_nn_io *ios[2] = {x->L.in, x->L.out};
    int32_t ns[2] = {x->L.n_in, x->L.n_out};
    for (int k = 0; k < 2; k++)
        for (int32_t i = 0; i < ns[k]; i++)
            if (ios[k][i].conv != EI_NN_CONV_NONE) ios[k][i].stage_off = off, off += (ios[k][i].nn_bytes + 63) & ~63ull;
    x->last = calloc((size_t)(x->L.n_in + x->L.n_out + 1), sizeof *x->last);
    if (!x->last) return ei_error_set("nnapi: out of memory");
    if (off && !(x->stage = region_new(x->be, off))) return -1;
    return 0;
}

static ei_backend *fallback_cpu(nn_backend *be) {
    if (!be->cpu) be->cpu = ei_backend_cpu_new(&be->o.cpu);
    return be->cpu;
}

static ei_backend_exec *nn_prepare(ei_backend *b, const ei_graph *g, const uint8_t *blob, uint64_t blob_size) {
    nn_backend *be = (nn_backend *)b;
    if (!g) return ei_error_set("nnapi backend: no graph"), NULL;
    if (ei_graph_validate(g, blob_size)) return NULL; /* a broken graph is an error on every backend */
    nn_exec *x = calloc(1, sizeof *x);
    if (!x) return ei_error_set("nnapi: out of memory"), NULL;
    x->magic = NN_EXEC_MAGIC, x->be = be, x->g = g;
    x->L.blob_fd = -1;
    char device_id[300] = "";
    if (be->dev >= 0) snprintf(device_id, sizeof device_id, "%s %s", be->devs[be->dev].name, be->devs[be->dev].version);
    ei_nn_lower_opts lo = {.fl = be->fl, .relax_f16 = be->o.relax_f16, .fallback_f16 = be->o.fallback_f16,
                           .blob_path = be->blob_path, .blob_offset = be->o.blob_offset, .blob_hash = be->o.blob_hash,
                           .want_token = be->cache_dir && be->api.Compilation_setCaching, .device_id = device_id};
    int refused = 0;
    bool *sup = NULL;
    if (ei_nn_lower(&be->api, g, blob, blob_size, &lo, &x->L, &refused)) goto fallback;
    int nu = unsupported_ops(be, &x->L, &sup);
    if (nu < 0) goto fallback;
    if (nu > 0) {
        int32_t first = 0;
        while (sup[first]) first++;
        int32_t node = x->L.op_node[first];
        if (!be->o.partition || be->n_devs < 2) {
            ei_error_set("graph '%s': %s does not take %d of %d NNAPI operations (first: operation %d %s, from node %d %s)",
                         g->name, be->devs[be->dev].name, nu, (int)x->L.n_ops, (int)first,
                         ei_nn_op_name(x->L.op_code[first]), (int)node, ei_gop_name(g->nodes[node].op));
            goto fallback;
        }
        x->partitioned = 1;
        fprintf(logf_(be), "ei: nnapi: graph '%s': %s does not take %d of %d operations; NNAPI runs them on other devices\n",
                g->name, be->devs[be->dev].name, nu, (int)x->L.n_ops);
    }
    free(sup);
    sup = NULL;
    if (compile(x) || setup_stage(x)) goto fallback;
    return (ei_backend_exec *)x;
fallback:
    free(sup);
    if (be->o.strict) {
        exec_free(x);
        return NULL;
    }
    {
        char why[1024];
        snprintf(why, sizeof why, "%s", ei_error_get());
        fprintf(logf_(be), "ei: nnapi: %s; running it on the cpu backend\n", why);
    }
    if (x->comp) be->api.Compilation_free(x->comp), x->comp = NULL;
    if (x->burst) be->api.Burst_free(x->burst), x->burst = NULL;
    ei_nn_lowered_free(&be->api, &x->L);
    region_free(be, x->stage);
    x->stage = NULL;
    ei_backend *cpu = fallback_cpu(be);
    if (!cpu || !(x->cpu_x = cpu->ops->prepare(cpu, g, blob, blob_size))) {
        exec_free(x);
        return NULL;
    }
    return (ei_backend_exec *)x;
}

/* ---------------------------------------------------------------- execute */
static void conv_in(const ei_gtensor *t, int conv, const void *src, void *dst) {
    int64_t n = ei_gtensor_numel(t);
    const uint8_t *s8 = src;
    uint8_t *d8 = dst;
    uint16_t *h = dst;
    for (int64_t i = 0; i < n; i++) {
        if (conv == EI_NN_CONV_FLIP) d8[i] = s8[i] ^ 0x80u;
        else if (conv == EI_NN_CONV_F32_F16) {
            float f;
            memcpy(&f, s8 + 4 * i, 4);
            h[i] = ei_f32_to_f16(f);
        } else {
            int16_t q;
            memcpy(&q, s8 + 2 * i, 2);
            h[i] = ei_f32_to_f16((float)((q - t->q.zero_point) * (double)t->q.scale));
        }
    }
}

static void conv_out(const ei_gtensor *t, int conv, const void *src, void *dst) {
    int64_t n = ei_gtensor_numel(t);
    const uint8_t *s8 = src;
    const uint16_t *h = src;
    uint8_t *d8 = dst;
    for (int64_t i = 0; i < n; i++) {
        if (conv == EI_NN_CONV_FLIP) d8[i] = s8[i] ^ 0x80u;
        else if (conv == EI_NN_CONV_F32_F16) {
            float f = ei_f16_to_f32(h[i]);
            memcpy(d8 + 4 * i, &f, 4);
        } else { /* round half away from zero and saturate, as the cpu backend quantises */
            double v = (double)ei_f16_to_f32(h[i]) / t->q.scale;
            v = v != v ? 0.0 : v < 0 ? -floor(-v + 0.5) : floor(v + 0.5);
            v += t->q.zero_point;
            int16_t q = (int16_t)(v < -32768 ? -32768 : v > 32767 ? 32767 : v);
            memcpy(d8 + 2 * i, &q, 2);
        }
    }
}

static int bind_all(nn_exec *x, ANeuralNetworksExecution *e, void *const *bind) {
    const ei_nn_api *a = &x->be->api;
    x->in_mem = x->out_mem = 0;
    for (int k = 0; k < 2; k++) {
        const ei_nn_io *ios = k ? x->L.out : x->L.in;
        for (int32_t i = 0; i < (k ? x->L.n_out : x->L.n_in); i++) {
            const ei_nn_io *io = &ios[i];
            const nn_region *r = io->conv ? x->stage : find_region(x, bind[io->tensor], io->nn_bytes);
            size_t off = io->conv ? (size_t)io->stage_off : r ? (size_t)((uint8_t *)bind[io->tensor] - r->base) : 0;
            int rc;
            const char *call;
            if (r && k) call = "ANeuralNetworksExecution_setOutputFromMemory",
                        rc = a->Execution_setOutputFromMemory(e, i, NULL, r->mem, off, (size_t)io->nn_bytes);
            else if (r) call = "ANeuralNetworksExecution_setInputFromMemory",
                        rc = a->Execution_setInputFromMemory(e, i, NULL, r->mem, off, (size_t)io->nn_bytes);
            else if (k) call = "ANeuralNetworksExecution_setOutput",
                        rc = a->Execution_setOutput(e, i, NULL, bind[io->tensor], (size_t)io->nn_bytes);
            else call = "ANeuralNetworksExecution_setInput",
                 rc = a->Execution_setInput(e, i, NULL, bind[io->tensor], (size_t)io->nn_bytes);
            if (rc != ANEURALNETWORKS_NO_ERROR)
                return ei_error_set("graph '%s': %s tensor %d '%s' (NNAPI model %s %d): %s failed: %s (%d)", x->g->name,
                                    k ? "output" : "input", (int)io->tensor, x->g->tensors[io->tensor].name,
                                    k ? "output" : "input", (int)i, call, ei_nn_result_name(rc), rc);
            if (r && !io->conv) *(k ? &x->out_mem : &x->in_mem) += 1;
        }
    }
    return 0;
}

static int run(nn_exec *x, ANeuralNetworksExecution *e) {
    const ei_nn_api *a = &x->be->api;
    int rc;
    if (x->burst) {
        if ((rc = a->Execution_burstCompute(e, x->burst)) != ANEURALNETWORKS_NO_ERROR)
            return nn_fail(x, "ANeuralNetworksExecution_burstCompute", rc);
    } else if (a->Execution_compute) {
        if ((rc = a->Execution_compute(e)) != ANEURALNETWORKS_NO_ERROR)
            return nn_fail(x, "ANeuralNetworksExecution_compute", rc);
    } else {
        ANeuralNetworksEvent *ev = NULL;
        if ((rc = a->Execution_startCompute(e, &ev)) != ANEURALNETWORKS_NO_ERROR)
            return nn_fail(x, "ANeuralNetworksExecution_startCompute", rc);
        rc = a->Event_wait(ev);
        a->Event_free(ev);
        if (rc != ANEURALNETWORKS_NO_ERROR) return nn_fail(x, "ANeuralNetworksEvent_wait", rc);
    }
    return 0;
}

static int nn_execute(ei_backend_exec *xe, void *const *bind) {
    nn_exec *x = (nn_exec *)xe;
    if (x->cpu_x) return x->be->cpu->ops->execute(x->cpu_x, bind);
    const ei_nn_api *a = &x->be->api;
    const ei_graph *g = x->g;
    int same = x->reuse != NULL;
    for (int k = 0; k < 2; k++) {
        const ei_nn_io *ios = k ? x->L.out : x->L.in;
        for (int32_t i = 0; i < (k ? x->L.n_out : x->L.n_in); i++) {
            int32_t t = ios[i].tensor;
            if (!bind || !bind[t])
                return ei_error_set("graph %s: %s tensor %d (%s) is not bound", g->name, k ? "output" : "input", (int)t,
                                    g->tensors[t].name);
            if (x->last[k * x->L.n_in + i] != bind[t]) same = 0;
        }
    }
    for (int32_t i = 0; i < x->L.n_in; i++)
        if (x->L.in[i].conv)
            conv_in(&g->tensors[x->L.in[i].tensor], x->L.in[i].conv, bind[x->L.in[i].tensor],
                    x->stage->base + x->L.in[i].stage_off);
    ANeuralNetworksExecution *e = x->reuse;
    if (!same) {
        if (x->reuse) a->Execution_free(x->reuse), x->reuse = NULL;
        int rc = a->Execution_create(x->comp, &e);
        if (rc != ANEURALNETWORKS_NO_ERROR) return nn_fail(x, "ANeuralNetworksExecution_create", rc);
        if (bind_all(x, e, bind)) {
            a->Execution_free(e);
            return -1;
        }
        if (a->Execution_setReusable) { /* level 5: keep it while the bindings stay the same */
            rc = a->Execution_setReusable(e, true);
            if (rc != ANEURALNETWORKS_NO_ERROR) {
                a->Execution_free(e);
                return nn_fail(x, "ANeuralNetworksExecution_setReusable", rc);
            }
            x->reuse = e;
            for (int32_t i = 0; i < x->L.n_in; i++) x->last[i] = bind[x->L.in[i].tensor];
            for (int32_t i = 0; i < x->L.n_out; i++) x->last[x->L.n_in + i] = bind[x->L.out[i].tensor];
        }
    }
    int rc = run(x, e);
    if (!x->reuse) a->Execution_free(e);
    if (rc) {
        if (x->reuse) a->Execution_free(x->reuse), x->reuse = NULL; /* a failed one is not reused */
        return -1;
    }
    for (int32_t i = 0; i < x->L.n_out; i++)
        if (x->L.out[i].conv)
            conv_out(&g->tensors[x->L.out[i].tensor], x->L.out[i].conv, x->stage->base + x->L.out[i].stage_off,
                     bind[x->L.out[i].tensor]);
    return 0;
}

static void nn_release(ei_backend_exec *xe) { exec_free((nn_exec *)xe); }

int ei_backend_nnapi_exec_info(const ei_backend_exec *xe, ei_nnapi_exec_info *info) {
    const nn_exec *x = (const nn_exec *)xe;
    if (!x || x->magic != NN_EXEC_MAGIC) return -1;
    memset(info, 0, sizeof *info);
    info->on_cpu = x->cpu_x != NULL;
    if (info->on_cpu) return 0;
    const nn_backend *be = x->be;
    info->feature_level = x->L.fl;
    info->device = be->dev >= 0 ? be->devs[be->dev].name : NULL;
    info->nnapi_ops = x->L.n_ops;
    info->relaxed = x->L.relaxed, info->f16_mode = x->L.f16_mode, info->i8_emulated = x->L.i8_emulated;
    info->burst = x->burst != NULL, info->reusable = be->api.Execution_setReusable != NULL;
    info->consts_from_memory = x->L.consts_from_memory, info->consts_copied = x->L.consts_copied;
    info->consts_by_pointer = x->L.consts_by_pointer;
    info->inputs_from_memory = x->in_mem, info->outputs_from_memory = x->out_mem;
    return 0;
}

/* ---------------------------------------------------------------- the backend */
static void nn_destroy(ei_backend *b) {
    nn_backend *be = (nn_backend *)b;
    if (!be) return;
    while (be->regions) {
        nn_region *r = be->regions;
        be->regions = r->next;
        region_free(be, r);
    }
    if (be->cpu) be->cpu->ops->destroy(be->cpu);
    free(be->devs);
    if (be->api.dl) ei_nn_unload(&be->api);
    free(be->lib), free(be->device), free(be->cache_dir), free(be->blob_path);
    free(be);
}

static const ei_backend_ops nn_ops = {"nnapi", nn_prepare, nn_execute, nn_release, nn_destroy};

static char *dup_or_null(const char *s, int *oom) {
    if (!s) return NULL;
    char *d = strdup(s);
    if (!d) *oom = 1;
    return d;
}

static int choose_device(nn_backend *be) {
    be->dev = -1;
    if (ei_nn_devices(&be->api, &be->devs, &be->n_devs)) return -1;
    if (be->device) {
        for (int i = 0; i < be->n_devs; i++)
            if (strcmp(be->devs[i].name, be->device) == 0) be->dev = i;
        if (be->dev >= 0) return 0;
        char names[512] = "";
        for (int i = 0; i < be->n_devs; i++)
            snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i ? ", " : "", be->devs[i].name);
        return ei_error_set("nnapi: %s has no device '%s' (%s)", be->api.path, be->device,
                            be->n_devs ? names : "the runtime lists no devices below feature level 3");
    }
    for (int i = 0; i < be->n_devs && be->dev < 0; i++)
        if (be->devs[i].type == ANEURALNETWORKS_DEVICE_ACCELERATOR) be->dev = i;
    return 0;
}

ei_backend *ei_backend_nnapi_new(const ei_nnapi_options *o) {
    nn_backend *be = calloc(1, sizeof *be);
    if (!be) return ei_error_set("nnapi: out of memory"), NULL;
    if (o) be->o = *o;
    be->base.ops = &nn_ops;
    be->dev = -1;
    int oom = 0;
    be->lib = dup_or_null(be->o.lib, &oom), be->device = dup_or_null(be->o.device, &oom);
    be->cache_dir = dup_or_null(be->o.cache_dir, &oom), be->blob_path = dup_or_null(be->o.blob_path, &oom);
    be->o.lib = be->lib, be->o.device = be->device, be->o.cache_dir = be->cache_dir, be->o.blob_path = be->blob_path;
    if (oom) {
        ei_error_set("nnapi: out of memory");
        goto fail;
    }
    if (ei_nn_load(&be->api, be->lib, be->o.max_feature_level) || choose_device(be)) goto fail;
    be->fl = be->api.fl;
    if (be->dev >= 0 && be->devs[be->dev].fl < be->fl) be->fl = be->devs[be->dev].fl;
    return &be->base;
fail:
    nn_destroy(&be->base);
    return NULL;
}

/* ---------------------------------------------------------------- support report */
int ei_nnapi_report(const ei_graph *g, const uint8_t *blob, uint64_t blob_size, const ei_nnapi_options *o, FILE *out) {
    nn_backend *be = (nn_backend *)ei_backend_nnapi_new(o);
    if (!be) {
        fprintf(out, "nnapi: unavailable: %s\n", ei_error_get());
        return -1;
    }
    const ei_nn_api *a = &be->api;
    if (!o->report_no_header) {
        fprintf(out, "nnapi: %s: runtime feature level %d (code %lld%s)", a->path, a->fl_runtime, (long long)a->fl_code,
                a->fl_inferred ? ", inferred from its symbols" : "");
        if (a->fl < a->fl_runtime) fprintf(out, ", capped at %d", a->fl);
        fprintf(out, "\n");
        for (int i = 0; i < be->n_devs; i++)
            fprintf(out, "  device %d: %s (%s, version %s, feature level %d)%s\n", i, be->devs[i].name,
                    ei_nn_device_type_name(be->devs[i].type), be->devs[i].version, be->devs[i].fl,
                    i == be->dev ? "  <- chosen" : "");
        if (be->dev < 0)
            fprintf(out, "  %s\n", be->n_devs ? "no accelerator: the runtime chooses the device"
                                              : "no device enumeration below feature level 3: the runtime chooses");
    }
    int ret = -1;
    ei_nn_lowered L;
    memset(&L, 0, sizeof L);
    L.blob_fd = -1;
    if (ei_graph_validate(g, blob_size)) {
        fprintf(out, "graph: invalid: %s\n", ei_error_get());
        goto done;
    }
    ei_nn_lower_opts lo = {.fl = be->fl, .relax_f16 = be->o.relax_f16, .fallback_f16 = be->o.fallback_f16,
                           .blob_path = be->blob_path, .blob_offset = be->o.blob_offset};
    int refused = 0;
    if (ei_nn_lower(a, g, blob, blob_size, &lo, &L, &refused)) {
        fprintf(out, "%s\n  => %s; the graph runs on the cpu backend\n", ei_error_get(),
                refused ? "not expressible in NNAPI at this feature level" : "NNAPI rejected the model");
        goto done;
    }
    fprintf(out, "graph '%s': %d IR nodes -> %d NNAPI operations (feature level %d)\n", g->name, (int)g->n_nodes,
            (int)L.n_ops, L.fl);
    for (int32_t i = 0; i < g->n_nodes; i++)
        if (L.note[i][0]) fprintf(out, "  node %d (%s): %s\n", (int)i, ei_gop_name(g->nodes[i].op), L.note[i]);
    if (L.i8_emulated) fprintf(out, "  int8 tensors run as TENSOR_QUANT8_ASYMM with zero point + 128 (level < 4)\n");
    if (L.f16_mode) fprintf(out, "  int16 / int4 tensors run as float16 (fallback_f16)\n");
    if (L.relaxed) fprintf(out, "  float32 arithmetic relaxed to float16\n");
    fprintf(out, "  constants: %lld mapped from the file, %lld copied (<= 128 bytes), %lld by pointer\n",
            (long long)L.consts_from_memory, (long long)L.consts_copied, (long long)L.consts_by_pointer);
    bool *sup = NULL;
    int nu = unsupported_ops(be, &L, &sup);
    if (nu < 0) {
        fprintf(out, "  %s\n", ei_error_get());
        goto done;
    }
    if (be->dev < 0 || !a->Model_getSupportedOperationsForDevices) {
        fprintf(out, "  which operations a device takes is unknown (no accelerator, or feature level < 3)\n");
        ret = 0;
        goto done;
    }
    for (int32_t i = 0; i < L.n_ops; i++)
        if (!sup[i])
            fprintf(out, "  operation %d %s (node %d %s) does not run on %s\n", (int)i, ei_nn_op_name(L.op_code[i]),
                    (int)L.op_node[i], L.op_node[i] >= 0 ? ei_gop_name(g->nodes[L.op_node[i]].op) : "-",
                    be->devs[be->dev].name);
    free(sup);
    fprintf(out, "  %d of %d operations run on %s%s\n", (int)(L.n_ops - nu), (int)L.n_ops, be->devs[be->dev].name,
            !nu ? "" : be->o.partition && be->n_devs > 1 ? "; NNAPI runs the rest on other devices (partition)"
                                                        : "; the graph runs on the cpu backend");
    ret = nu;
done:
    ei_nn_lowered_free(a, &L);
    nn_destroy(&be->base);
    return ret;
}
