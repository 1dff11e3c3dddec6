/* `ei inspect FILE.eig`: what a graph file holds (DESIGN 6.3): model config, scenario, options,
 * tokenizer, and per graph its inputs and outputs, node counts by op, tensor counts by kind and
 * constant bytes by precision, then totals over the shared data block. */
#include "cli/commands.h"
#include "core/ei_args.h"
#include "core/ei_error.h"
#include "runtime/eig.h"
#include "runtime/runner.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *DESC =
    "ei inspect FILE.eig [--verify] [--tensors] [--nnapi [--nnapi-lib PATH]]\n\n"
    "Opens a graph file written by `ei compile` (checking every offset, size and graph) and prints the\n"
    "model config, the scenario (SCEN) and EdgeInfinite options (OPTS), the tokenizer, and for each graph\n"
    "its input and output tensors, node counts by op, tensor counts by kind and constant bytes by element\n"
    "type and quantisation scheme, then totals over the shared constant data and the file size.\n"
    "--tensors lists every stored constant; --nnapi loads the NNAPI library and reports, per graph, which\n"
    "operations the device would not run and what the lowering did instead.";

/* Bytes per (element type, quantisation scheme). */
typedef struct {
    uint64_t bytes[EI_GT_COUNT][4];
    uint64_t count[EI_GT_COUNT][4];
} precision_table;

static void print_precisions(const precision_table *p, const char *indent) {
    uint64_t total = 0, n = 0;
    for (int t = 0; t < EI_GT_COUNT; t++)
        for (int q = 0; q < 4; q++) {
            if (!p->count[t][q]) continue;
            char label[32];
            if (q == EI_GQ_NONE) snprintf(label, sizeof label, "%s", ei_gtype_name((ei_gtype)t));
            else snprintf(label, sizeof label, "%s per-%s", ei_gtype_name((ei_gtype)t), ei_gquant_name((ei_gquant_kind)q));
            printf("%s%-18s %12llu bytes in %llu tensors\n", indent, label, (unsigned long long)p->bytes[t][q],
                   (unsigned long long)p->count[t][q]);
            total += p->bytes[t][q];
            n += p->count[t][q];
        }
    printf("%s%-18s %12llu bytes in %llu tensors\n", indent, "total", (unsigned long long)total, (unsigned long long)n);
}

static void add_precision(precision_table *p, const ei_gtensor *t) {
    p->bytes[t->type][t->q.kind] += t->size;
    p->count[t->type][t->q.kind]++;
}

static void print_io(const ei_graph *g, ei_gkind kind, const char *title) {
    int any = 0;
    for (int32_t i = 0; i < g->n_tensors; i++) {
        const ei_gtensor *t = &g->tensors[i];
        if (t->kind != kind) continue;
        if (!any) printf("  %s\n", title);
        any = 1;
        char shape[64];
        ei_gshape_str(t->rank, t->shape, shape, sizeof shape);
        char type[40];
        if (t->q.kind == EI_GQ_TENSOR)
            snprintf(type, sizeof type, "%s (scale %g, zp %d)", ei_gtype_name(t->type), (double)t->q.scale,
                     (int)t->q.zero_point);
        else snprintf(type, sizeof type, "%s", ei_gtype_name(t->type));
        printf("    %-32s %-24s %s\n", t->name, type, shape);
    }
    if (!any) printf("  %s: none\n", title);
}

static void print_graph(const ei_graph *g) {
    printf("\ngraph '%s': %d tensors, %d nodes\n", g->name, (int)g->n_tensors, (int)g->n_nodes);
    print_io(g, EI_GK_INPUT, "inputs");
    print_io(g, EI_GK_OUTPUT, "outputs");
    int ops[EI_OP_COUNT] = {0};
    for (int32_t i = 0; i < g->n_nodes; i++) ops[g->nodes[i].op]++;
    printf("  nodes    ");
    const char *sep = " ";
    for (int op = 1; op < EI_OP_COUNT; op++)
        if (ops[op]) {
            printf("%s%s %d", sep, ei_gop_name((ei_gop)op), ops[op]);
            sep = ", ";
        }
    printf("\n");
    int kinds[4] = {0};
    precision_table prec = {0};
    for (int32_t i = 0; i < g->n_tensors; i++) {
        kinds[g->tensors[i].kind]++;
        if (g->tensors[i].kind == EI_GK_CONST) add_precision(&prec, &g->tensors[i]);
    }
    printf("  tensors   const %d, input %d, output %d, value %d\n", kinds[0], kinds[1], kinds[2], kinds[3]);
    printf("  constants\n");
    print_precisions(&prec, "    ");
}

static void print_kv(const ei_eig *e, const char *section, const char *title) {
    int n = ei_eig_kv_count(e, section);
    printf("\n%s (%s)%s\n", title, section, n ? "" : ": none");
    for (int i = 0; i < n; i++) {
        const char *k, *v;
        ei_eig_kv_at(e, section, i, &k, &v);
        printf("  %s = %s\n", k, v);
    }
}

typedef struct {
    uint64_t off, size;
    const ei_gtensor *t;
} cref;

static int cref_cmp(const void *a, const void *b) {
    const cref *x = a, *y = b;
    if (x->off != y->off) return x->off < y->off ? -1 : 1;
    return x->size < y->size ? -1 : x->size > y->size;
}

/* The CONST tensors of every graph sorted by (offset, size): graphs share their weights, so equal
 * neighbours are one stored constant. A malloc'd array (the caller frees it); NULL when out of memory. */
static cref *sorted_consts(const ei_eig *e, size_t *count) {
    size_t n = 0;
    for (int i = 0; i < ei_eig_n_graphs(e); i++) {
        const ei_graph *g = ei_eig_graph(e, i);
        for (int32_t k = 0; k < g->n_tensors; k++) n += g->tensors[k].kind == EI_GK_CONST;
    }
    cref *r = malloc((n ? n : 1) * sizeof *r);
    if (!r) return NULL;
    n = 0;
    for (int i = 0; i < ei_eig_n_graphs(e); i++) {
        const ei_graph *g = ei_eig_graph(e, i);
        for (int32_t k = 0; k < g->n_tensors; k++)
            if (g->tensors[k].kind == EI_GK_CONST) r[n++] = (cref){g->tensors[k].offset, g->tensors[k].size, &g->tensors[k]};
    }
    if (n) qsort(r, n, sizeof *r, cref_cmp);
    *count = n;
    return r;
}

/* Constants once each (graphs share one copy of the weights), by precision. */
static int print_totals(const ei_eig *e) {
    size_t n = 0, nodes = 0;
    for (int i = 0; i < ei_eig_n_graphs(e); i++) nodes += (size_t)ei_eig_graph(e, i)->n_nodes;
    cref *r = sorted_consts(e, &n);
    if (!r) return ei_error_set("out of memory");
    precision_table prec = {0};
    for (size_t i = 0; i < n; i++)
        if (!i || r[i].off != r[i - 1].off || r[i].size != r[i - 1].size) add_precision(&prec, r[i].t);
    free(r);
    uint64_t data;
    ei_eig_data(e, &data);
    printf("\ntotals: %d graphs, %zu nodes\n", ei_eig_n_graphs(e), nodes);
    printf("  constants (each stored once)\n");
    print_precisions(&prec, "    ");
    printf("  data block %llu bytes (with 64-byte alignment)\n", (unsigned long long)data);
    printf("  file size  %llu bytes\n", (unsigned long long)ei_eig_file_size(e));
    return 0;
}

/* Every constant once (graphs share them), in file order: what each weight was stored as. */
static int print_tensors(const ei_eig *e) {
    size_t n = 0;
    cref *r = sorted_consts(e, &n);
    if (!r) return ei_error_set("out of memory");
    printf("\nconstants (each stored once; offset in the data block)\n");
    printf("  %-40s %-18s %-26s %12s %12s\n", "name", "shape", "type", "bytes", "offset");
    for (size_t i = 0; i < n; i++) {
        if (i && r[i].off == r[i - 1].off && r[i].size == r[i - 1].size) continue;
        const ei_gtensor *t = r[i].t;
        char shape[64], type[48];
        ei_gshape_str(t->rank, t->shape, shape, sizeof shape);
        switch (t->q.kind) {
        case EI_GQ_TENSOR:
            snprintf(type, sizeof type, "%s scale %g zp %d", ei_gtype_name(t->type), (double)t->q.scale,
                     (int)t->q.zero_point);
            break;
        case EI_GQ_CHANNEL:
            snprintf(type, sizeof type, "%s per-channel axis %d", ei_gtype_name(t->type), (int)t->q.axis);
            break;
        case EI_GQ_GROUP:
            snprintf(type, sizeof type, "%s groups of %d axis %d", ei_gtype_name(t->type), (int)t->q.group,
                     (int)t->q.axis);
            break;
        default: snprintf(type, sizeof type, "%s", ei_gtype_name(t->type)); break;
        }
        printf("  %-40s %-18s %-26s %12llu %12llu\n", t->name, shape, type, (unsigned long long)t->size,
               (unsigned long long)t->offset);
    }
    free(r);
    return 0;
}

static void print_model(const ei_eig *e) {
    const ei_model_config *c = ei_eig_config(e);
    printf("\nmodel\n");
    printf("  dim %d, hidden_dim %d, n_layers %d, n_heads %d, n_kv_heads %d, head_dim %d\n", c->dim, c->hidden_dim,
           c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim);
    printf("  vocab_size %d, max_seq_len %d, rope_theta %g, norm_eps %g\n", c->vocab_size, c->max_seq_len,
           (double)c->rope_theta, (double)c->norm_eps);
    printf("  tie_embeddings %d, qkv_bias %d, rope_interleaved %d, bos_id %d, eos_id %d\n", c->tie_embeddings,
           c->qkv_bias, c->rope_interleaved, c->bos_id, c->eos_id);
    const ei_tok_vocab *v = ei_eig_vocab(e);
    if (!v) {
        printf("\ntokenizer: none\n");
        return;
    }
    printf("\ntokenizer: %s%s, %d pieces, %d merges, bos %d, eos %d, unk %d\n",
           v->kind == EI_TOKV_SENTENCEPIECE ? "sentencepiece" : "tokenizer.json",
           v->flags & EI_TOKV_BYTE_LEVEL ? " (byte-level)" : "", (int)v->n_pieces, (int)v->n_merges, (int)v->bos,
           (int)v->eos, (int)v->unk);
    printf("  identity %s\n", v->identity);
}

int ei_cmd_inspect(int argc, char **argv) {
    int verify = 0, nnapi = 0, tensors = 0;
    ei_runner_nnapi_cli nn = {0};
    ei_arg opts[] = {{"verify", EI_ARG_FLAG, &verify, NULL, "also check the constant data against its checksum"},
                     {"tensors", EI_ARG_FLAG, &tensors, NULL,
                      "list every constant once: name, shape, element type and quantisation scheme, bytes"},
                     {"nnapi", EI_ARG_FLAG, &nnapi, NULL,
                      "NNAPI support report: which operations the device would not run, what the lowering did "
                      "instead (loads the library: --nnapi-lib or $EI_NNAPI_LIB)"},
                     EI_RUNNER_NNAPI_ARGS(nn),
                     {0}};
    char **pos = NULL;
    int npos = 0;
    int rc = ei_args_parse(argc, argv, "ei inspect", DESC, opts, &pos, &npos);
    if (rc) {
        free(pos);
        return rc < 0 ? 2 : 0;
    }
    if (npos != 1) {
        fprintf(stderr, "ei inspect: error: give one FILE.eig (see ei inspect --help)\n");
        free(pos);
        return 2;
    }
    const char *path = pos[0];
    ei_eig *e = ei_eig_open(path);
    free(pos);
    if (!e) {
        ei_error_print("inspect");
        return 1;
    }
    if (verify && ei_eig_verify_data(e)) {
        ei_error_print("inspect");
        ei_eig_close(e);
        return 1;
    }
    printf("file %s: format version %u, %llu bytes%s\n", path, (unsigned)ei_eig_version(e),
           (unsigned long long)ei_eig_file_size(e), verify ? ", data checksum ok" : "");
    print_model(e);
    print_kv(e, "SCEN", "scenario");
    print_kv(e, "OPTS", "options");
    for (int i = 0; i < ei_eig_n_graphs(e); i++) print_graph(ei_eig_graph(e, i));
    if (tensors) rc = print_tensors(e);
    if (!rc) rc = print_totals(e);
    if (rc) ei_error_print("inspect");
    ei_eig_close(e);
    if (!rc && nnapi) {
        ei_runner_options ro = {.backend = "nnapi", .threads = 1};
        if (ei_runner_cli_apply(&nn, &ro) != 0) {
            ei_error_print("inspect");
            return 2;
        }
        printf("\nnnapi support\n");
        fflush(stdout);
        int nr = ei_runner_nnapi_report(path, &ro, stdout);
        if (nr < 0) return 1;
        printf("  %d NNAPI operation%s in all would not run on the device\n", nr, nr == 1 ? "" : "s");
    }
    return rc ? 1 : 0;
}
