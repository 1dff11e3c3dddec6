/* Memory planning for the cpu backend: where every tensor lives during execute.
 * CONST tensors point into the blob (read only, never written), INPUT / OUTPUT into caller memory,
 * a RESHAPE whose output is a VALUE becomes a view of its input's bytes, and every other VALUE gets
 * a 64-byte-aligned slice of one arena. Slices are reused: walking the steps in order, a step's
 * output is placed first (so it never overlaps the step's own inputs) and then every buffer whose
 * last reader was this step goes back to a free list (best fit, neighbours merged). A view keeps
 * its root's buffer alive until the view's last reader. */
#include "runtime/cpu_internal.h"

#include "core/ei_error.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    uint64_t off, size;
} block;

typedef struct {
    block *b;
    int32_t n, cap;
    uint64_t end; /* high-water mark */
} freelist;

static uint64_t align64(uint64_t v) { return (v + 63) & ~(uint64_t)63; }

static int fl_insert(freelist *f, int32_t at, block v) {
    if (f->n == f->cap) {
        int32_t nc = f->cap ? 2 * f->cap : 16;
        block *nb = realloc(f->b, (size_t)nc * sizeof *nb);
        if (!nb) return -1;
        f->b = nb;
        f->cap = nc;
    }
    memmove(f->b + at + 1, f->b + at, (size_t)(f->n - at) * sizeof *f->b);
    f->b[at] = v;
    f->n++;
    return 0;
}

static void fl_remove(freelist *f, int32_t at) {
    memmove(f->b + at, f->b + at + 1, (size_t)(f->n - at - 1) * sizeof *f->b);
    f->n--;
}

static uint64_t fl_alloc(freelist *f, uint64_t size) {
    int32_t best = -1;
    for (int32_t i = 0; i < f->n; i++)
        if (f->b[i].size >= size && (best < 0 || f->b[i].size < f->b[best].size)) best = i;
    if (best >= 0) {
        uint64_t off = f->b[best].off;
        f->b[best].off += size;
        f->b[best].size -= size;
        if (f->b[best].size == 0) fl_remove(f, best);
        return off;
    }
    /* grow the arena, starting inside a free block that ends at the top */
    if (f->n > 0 && f->b[f->n - 1].off + f->b[f->n - 1].size == f->end) {
        uint64_t off = f->b[f->n - 1].off;
        fl_remove(f, f->n - 1);
        f->end = off + size;
        return off;
    }
    uint64_t off = f->end;
    f->end += size;
    return off;
}

static int fl_free(freelist *f, uint64_t off, uint64_t size) {
    int32_t i = 0;
    while (i < f->n && f->b[i].off < off) i++;
    if (fl_insert(f, i, (block){off, size})) return -1;
    if (i + 1 < f->n && f->b[i].off + f->b[i].size == f->b[i + 1].off) {
        f->b[i].size += f->b[i + 1].size;
        fl_remove(f, i + 1);
    }
    if (i > 0 && f->b[i - 1].off + f->b[i - 1].size == f->b[i].off) {
        f->b[i - 1].size += f->b[i].size;
        fl_remove(f, i);
    }
    return 0;
}

int ei_cpu_plan(ei_cpu_exec *x) {
    const ei_graph *g = x->g;
    const int32_t nt = g->n_tensors;
    x->tplan = calloc((size_t)(nt ? nt : 1), sizeof *x->tplan);
    int32_t *last = malloc((size_t)(nt ? nt : 1) * sizeof *last);
    freelist f = {0};
    if (!x->tplan || !last) goto oom;
    for (int32_t t = 0; t < nt; t++) {
        const ei_gkind k = g->tensors[t].kind;
        x->tplan[t].kind = k == EI_GK_CONST ? EI_CPU_ST_CONST : k == EI_GK_VALUE ? EI_CPU_ST_NONE : EI_CPU_ST_BIND;
        x->tplan[t].root = t;
        last[t] = -1;
    }
    for (int32_t i = 0; i < x->n_steps; i++) {
        ei_cpu_step *s = &x->steps[i];
        const ei_gnode *n = &g->nodes[s->node];
        if (g->tensors[s->out].kind != EI_GK_VALUE) continue;
        if (!s->fused && n->op == EI_OP_RESHAPE && g->tensors[n->in[0]].type == g->tensors[s->out].type) {
            int32_t r = x->tplan[n->in[0]].root;
            x->tplan[s->out].kind = EI_CPU_ST_VIEW;
            x->tplan[s->out].root = r;
            s->view = 1;
        } else {
            x->tplan[s->out].kind = EI_CPU_ST_ARENA;
        }
    }
    /* last reader of each root; an output nobody reads dies at its own step */
    for (int32_t i = 0; i < x->n_steps; i++) {
        const ei_cpu_step *s = &x->steps[i];
        for (int32_t j = 0; j < s->n_in; j++) {
            int32_t r = x->tplan[s->in[j]].root;
            if (last[r] < i) last[r] = i;
        }
        int32_t r = x->tplan[s->out].root;
        if (last[r] < i) last[r] = i;
    }
    for (int32_t i = 0; i < x->n_steps; i++) {
        const ei_cpu_step *s = &x->steps[i];
        if (x->tplan[s->out].kind == EI_CPU_ST_ARENA)
            x->tplan[s->out].off = fl_alloc(&f, align64(ei_gtensor_bytes(&g->tensors[s->out])));
        /* free what died here: inputs, and the output itself if nothing reads it */
        for (int32_t j = 0; j <= s->n_in; j++) {
            int32_t t = j < s->n_in ? s->in[j] : s->out, r = x->tplan[t].root;
            if (x->tplan[r].kind != EI_CPU_ST_ARENA || last[r] != i) continue;
            last[r] = -2; /* freed once, even if read twice by this step */
            if (fl_free(&f, x->tplan[r].off, align64(ei_gtensor_bytes(&g->tensors[r])))) goto oom;
        }
    }
    x->arena_bytes = f.end;
    free(f.b);
    free(last);
    return 0;
oom:
    free(f.b);
    free(last);
    return ei_error_set("graph %s: cpu backend: out of memory planning buffers", g->name);
}
