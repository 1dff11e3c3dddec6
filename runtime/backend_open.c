/* Choosing a backend by name (backend.h): what `--backend cpu|nnapi [--strict]` resolves to. An
 * nnapi backend that cannot be created (no libneuralnetworks.so, an unknown device) is not fatal
 * unless strict: one notice line, then the cpu backend, so the same command runs on a phone with
 * an NPU, a phone without and a Linux host. Graphs the nnapi backend cannot take fall back one by
 * one inside it (nnapi_backend.c). */
#include "runtime/backend.h"

#include "core/ei_error.h"

#include <string.h>

ei_backend *ei_backend_open(const char *name, const ei_backend_options *o) {
    ei_backend_options d = {0};
    if (!o) o = &d;
    if (!name || strcmp(name, "cpu") == 0) return ei_backend_cpu_new(&o->cpu);
    if (strcmp(name, "nnapi") != 0) {
        ei_error_set("unknown backend '%s' (cpu or nnapi)", name);
        return NULL;
    }
    ei_nnapi_options no = o->nnapi;
    no.strict = o->strict;
    no.log = o->log;
    no.cpu = o->cpu;
    ei_backend *b = ei_backend_nnapi_new(&no);
    if (b || o->strict) return b;
    fprintf(o->log ? o->log : stderr, "ei: %s; using the cpu backend\n", ei_error_get());
    return ei_backend_cpu_new(&o->cpu);
}
