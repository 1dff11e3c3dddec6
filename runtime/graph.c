/* Graph IR: names, sizes and the builder (see graph.h). The validator is graph_validate.c. */
#include "runtime/graph.h"

#include "core/ei_error.h"

#include <stdlib.h>
#include <string.h>

static const char *const op_names[EI_OP_COUNT] = {
    [EI_OP_GATHER] = "GATHER",
    [EI_OP_FULLY_CONNECTED] = "FULLY_CONNECTED",
    [EI_OP_BATCH_MATMUL] = "BATCH_MATMUL",
    [EI_OP_ADD] = "ADD",
    [EI_OP_SUB] = "SUB",
    [EI_OP_MUL] = "MUL",
    [EI_OP_DIV] = "DIV",
    [EI_OP_RSQRT] = "RSQRT",
    [EI_OP_MEAN] = "MEAN",
    [EI_OP_SOFTMAX] = "SOFTMAX",
    [EI_OP_LOGISTIC] = "LOGISTIC",
    [EI_OP_ELU] = "ELU",
    [EI_OP_EXP] = "EXP",
    [EI_OP_CONCATENATION] = "CONCATENATION",
    [EI_OP_SLICE] = "SLICE",
    [EI_OP_RESHAPE] = "RESHAPE",
    [EI_OP_TRANSPOSE] = "TRANSPOSE",
    [EI_OP_QUANTIZE] = "QUANTIZE",
    [EI_OP_DEQUANTIZE] = "DEQUANTIZE",
    [EI_OP_CAST] = "CAST",
    [EI_OP_MAXIMUM] = "MAXIMUM",
    [EI_OP_SELECT] = "SELECT",
};

static const char *const type_names[EI_GT_COUNT] = {"f32", "f16", "i32", "i8", "u8", "i16", "i4"};
static const size_t type_sizes[EI_GT_COUNT] = {4, 2, 4, 1, 1, 2, 0};

const char *ei_gop_name(ei_gop op) {
    return op > 0 && op < EI_OP_COUNT && op_names[op] ? op_names[op] : "?";
}

const char *ei_gtype_name(ei_gtype t) { return (unsigned)t < EI_GT_COUNT ? type_names[t] : "?"; }

size_t ei_gtype_size(ei_gtype t) { return (unsigned)t < EI_GT_COUNT ? type_sizes[t] : 0; }

int64_t ei_gtensor_numel(const ei_gtensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->rank; i++) n *= t->shape[i];
    return n;
}

uint64_t ei_gtensor_bytes(const ei_gtensor *t) {
    if (t->type != EI_GT_I4) return (uint64_t)ei_gtensor_numel(t) * ei_gtype_size(t->type);
    int64_t last = t->rank ? t->shape[t->rank - 1] : 1;
    int64_t rows = last ? ei_gtensor_numel(t) / last : 0;
    return (uint64_t)rows * (uint64_t)((last + 1) / 2);
}

ei_graph *ei_graph_new(const char *name) {
    ei_graph *g = calloc(1, sizeof *g);
    if (g) g->name = strdup(name ? name : "");
    if (!g || !g->name) {
        free(g);
        ei_error_set("graph: out of memory");
        return NULL;
    }
    return g;
}

void ei_graph_free(ei_graph *g) {
    if (!g) return;
    for (int32_t i = 0; i < g->n_tensors; i++) free(g->tensors[i].name);
    free(g->tensors);
    free(g->nodes);
    free(g->name);
    free(g);
}

static int grow(void **arr, int32_t *cap, int32_t need, size_t elem) {
    if (need <= *cap) return 0;
    int32_t nc = *cap ? *cap * 2 : 64;
    while (nc < need) nc *= 2;
    void *p = realloc(*arr, (size_t)nc * elem);
    if (!p) return ei_error_set("graph: out of memory");
    *arr = p;
    *cap = nc;
    return 0;
}

int32_t ei_graph_add_tensor(ei_graph *g, const char *name, ei_gtype type, ei_gkind kind, int32_t rank,
                            const int32_t *shape) {
    if (rank < 0 || rank > EI_G_MAX_RANK || (rank > 0 && !shape))
        return ei_error_set("graph %s: tensor %s: rank %d outside [0, %d]", g->name, name ? name : "?", rank,
                            EI_G_MAX_RANK);
    if (grow((void **)&g->tensors, &g->cap_tensors, g->n_tensors + 1, sizeof *g->tensors)) return -1;
    ei_gtensor *t = &g->tensors[g->n_tensors];
    memset(t, 0, sizeof *t);
    if (!(t->name = strdup(name ? name : ""))) return ei_error_set("graph: out of memory");
    t->type = type;
    t->kind = kind;
    t->rank = rank;
    for (int i = 0; i < EI_G_MAX_RANK; i++) t->shape[i] = i < rank ? shape[i] : 1;
    t->q.scales = -1;
    return g->n_tensors++;
}

int32_t ei_graph_add_node(ei_graph *g, ei_gop op, int32_t n_in, const int32_t *in, int32_t out,
                          const ei_gparams *p) {
    if (n_in < 1 || n_in > EI_G_MAX_IN)
        return ei_error_set("graph %s: %s with %d inputs (1..%d)", g->name, ei_gop_name(op), n_in, EI_G_MAX_IN);
    if (grow((void **)&g->nodes, &g->cap_nodes, g->n_nodes + 1, sizeof *g->nodes)) return -1;
    ei_gnode *n = &g->nodes[g->n_nodes];
    memset(n, 0, sizeof *n);
    n->op = op;
    n->n_in = n_in;
    for (int32_t i = 0; i < n_in; i++) n->in[i] = in[i];
    n->out = out;
    if (p) n->p = *p;
    return g->n_nodes++;
}

int32_t ei_graph_find(const ei_graph *g, const char *name) {
    for (int32_t i = 0; i < g->n_tensors; i++)
        if (strcmp(g->tensors[i].name, name) == 0) return i;
    return -1;
}
