/* The runner's NNAPI options as the tools take them, and the per-file NNAPI support report
 * (runtime/runner.h). */
#include "runtime/runner.h"

#include "core/ei_error.h"

#include <string.h>

int ei_runner_cli_apply(const ei_runner_nnapi_cli *c, ei_runner_options *o) {
    o->nnapi_lib = c->lib;
    o->nnapi_device = c->device;
    o->cache_dir = c->cache_dir;
    o->relax_f16 = c->relax_f16;
    o->fallback_f16 = 0;
    if (c->fallback && strcmp(c->fallback, "f16") == 0) o->fallback_f16 = 1;
    else if (c->fallback && strcmp(c->fallback, "cpu") != 0)
        return ei_error_set("--nnapi-fallback: '%s' is neither cpu nor f16", c->fallback);
    return 0;
}

void ei_runner_nnapi_options(const ei_runner_options *o, const char *path, const ei_eig *e, ei_nnapi_options *no) {
    no->lib = o->nnapi_lib;
    no->device = o->nnapi_device;
    no->cache_dir = o->cache_dir;
    no->blob_path = path;
    no->blob_offset = ei_eig_data_offset(e);
    no->blob_hash = ei_eig_data_checksum(e);
    no->relax_f16 = o->relax_f16;
    no->fallback_f16 = o->fallback_f16;
    no->strict = o->strict;
    no->cpu = (ei_cpu_options){.threads = o->threads, .no_fuse = o->no_fuse};
}

int ei_runner_nnapi_report(const char *path, const ei_runner_options *o, FILE *out) {
    ei_eig *e = ei_eig_open(path);
    if (!e) {
        fprintf(out, "nnapi report: %s\n", ei_error_get());
        return -1;
    }
    ei_nnapi_options no = {0};
    ei_runner_nnapi_options(o, path, e, &no);
    ei_backend *probe = ei_backend_nnapi_new(&no); /* a missing library is reported once, not per graph */
    if (!probe) {
        fprintf(out, "nnapi: unavailable: %s\n", ei_error_get());
        ei_eig_close(e);
        return -1;
    }
    probe->ops->destroy(probe);
    uint64_t size;
    const uint8_t *blob = ei_eig_data(e, &size);
    int total = 0;
    for (int i = 0; i < ei_eig_n_graphs(e); i++) {
        no.report_no_header = i > 0;
        int n = ei_nnapi_report(ei_eig_graph(e, i), blob, size, &no, out);
        if (n < 0) total = -1;
        else if (total >= 0) total += n;
    }
    ei_eig_close(e);
    return total;
}
