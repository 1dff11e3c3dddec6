/* Fuzz target: `.eig` graph files through ei_eig_open_memory (runtime/eig.c: header, blocks,
 * sections, key/value pairs, the vocabulary and its check, graph records and ei_graph_validate,
 * constant placement). Each input is opened as given (the checks before the checksums), then with
 * its file size, metadata checksum and header checksum recomputed, so mutations reach the sections.
 * A file that opens must give options that validate or a clear error, a vocabulary that rebuilds
 * into a tokenizer, and graphs the cpu backend prepares and runs on zeroed inputs when they are
 * small (eig.h: "a file that opens can be handed to any backend"). */
#include "fuzz.h"

#include "core/ei_error.h"
#include "core/ei_io.h"
#include "runtime/backend.h"
#include "runtime/eig.h"

#include <stdlib.h>
#include <string.h>

static uint64_t rd64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}
static void put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* Runs the graphs whose tensors total at most this many bytes (the fuzzer must not spend its time
 * in big matrix products, and a hostile shape may legitimately need more memory than we have). */
#define RUN_LIMIT (8u << 20)

static void run_graph(ei_backend *b, const ei_eig *e, const ei_graph *g) {
    uint64_t total = 0, n = 0;
    const uint8_t *blob = ei_eig_data(e, &n);
    for (int32_t i = 0; i < g->n_tensors; i++) total += ei_gtensor_bytes(&g->tensors[i]);
    if (total > RUN_LIMIT) return;
    ei_backend_exec *x = b->ops->prepare(b, g, blob, n);
    if (!x) fz_fail("graph '%s' opened (validated) but the cpu backend refuses it: %s", g->name, ei_error_get());
    void **bind = calloc((size_t)g->n_tensors + 1, sizeof *bind);
    int ok = bind != NULL;
    for (int32_t i = 0; ok && i < g->n_tensors; i++) {
        const ei_gtensor *t = &g->tensors[i];
        if (t->kind != EI_GK_INPUT && t->kind != EI_GK_OUTPUT) continue;
        ok = (bind[i] = calloc(1, ei_gtensor_bytes(t) + 1)) != NULL;
    }
    if (ok) b->ops->execute(x, bind); /* may fail cleanly (e.g. a gather index out of range) */
    for (int32_t i = 0; bind && i < g->n_tensors; i++) free(bind[i]);
    free(bind);
    b->ops->release(x);
}

static void exercise(const ei_eig *e) {
    ei_eig_version(e);
    ei_eig_file_size(e);
    ei_eig_config(e);
    static const char *const sections[] = {"OPTS", "SCEN"};
    for (int s = 0; s < 2; s++)
        for (int i = 0; i < ei_eig_kv_count(e, sections[s]); i++) {
            const char *k, *v;
            if (ei_eig_kv_at(e, sections[s], i, &k, &v) != 0 || ei_eig_kv_get(e, sections[s], k) != v)
                fz_fail("%s pair %d does not read back", sections[s], i);
        }
    ei_opts o;
    ei_eig_opts(e, &o);
    ei_eig_verify_data(e);
    if (ei_eig_vocab(e)) {
        ei_tokenizer *t = ei_eig_tokenizer(e);
        if (!t) fz_fail("a vocabulary that passed its check does not rebuild: %s", ei_error_get());
        int32_t ids[16];
        int v = ei_tokenizer_vocab_size(t);
        for (int i = 0; i < 16; i++) ids[i] = (int32_t)((i * 7919) % v);
        char *text = NULL;
        size_t len;
        if (ei_tokenizer_decode(t, ids, 16, &text, &len) != 0) fz_fail("decode failed on valid ids");
        free(text);
        int32_t *enc = NULL;
        size_t ne = 0;
        if (ei_tokenizer_encode(t, "hello <s> world", 15, 1, 1, &enc, &ne) == 0)
            for (size_t i = 0; i < ne; i++)
                if (enc[i] < 0 || enc[i] >= v) fz_fail("encoded id %d outside [0, %d)", enc[i], v);
        free(enc);
        ei_tokenizer_free(t);
    }
    ei_cpu_options co = {.threads = 1};
    ei_backend *b = ei_backend_cpu_new(&co);
    for (int i = 0; b && i < ei_eig_n_graphs(e); i++) {
        const ei_graph *g = ei_eig_graph(e, i);
        if (!g || ei_eig_graph_by_name(e, g->name) != g) fz_fail("graph %d is not found by its name", i);
        run_graph(b, e, g);
    }
    if (b) b->ops->destroy(b);
}

static void open_and_check(const uint8_t *buf, size_t n) {
    ei_eig *e = ei_eig_open_memory(buf, n);
    fz_note(".eig", e != NULL);
    if (!e) return;
    exercise(e);
    ei_eig_close(e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* The data block and constants are 64-byte aligned in memory as in a mapped file; the buffer is
     * exactly size bytes, so ASan catches a read past the end. */
    void *mem = NULL;
    if (posix_memalign(&mem, 64, size ? size : 1) != 0) return 0;
    uint8_t *buf = mem;
    memcpy(buf, data, size);
    open_and_check(buf, size);
    if (size >= 128) {
        put_u64(buf + 16, (uint64_t)size);
        uint64_t mo = rd64(buf + 24), ms = rd64(buf + 32);
        if (mo <= size && ms <= size - mo) put_u64(buf + 56, ei_hash_fnv1a(buf + mo, (size_t)ms, 0));
        put_u64(buf + 120, ei_hash_fnv1a(buf, 120, 0));
        open_and_check(buf, size);
    }
    free(buf);
    return 0;
}
