/* Token vectors (text/tokvec.h). */
#include "text/tokvec.h"

#include "core/ei_error.h"

#include <stdlib.h>
#include <string.h>

int ei_tokvec_push(ei_tokvec *v, const int32_t *ids, size_t n, uint8_t mask) {
    if (n > SIZE_MAX / 8 - v->n) return ei_error_set("token vector: %zu + %zu tokens overflow", v->n, n);
    if (v->n + n > v->cap) {
        size_t cap = v->cap ? v->cap : 256;
        while (cap < v->n + n) cap *= 2;
        int32_t *ni = realloc(v->ids, cap * sizeof *ni);
        if (!ni) return ei_error_set("out of memory (%zu tokens)", cap);
        v->ids = ni;
        uint8_t *nm = realloc(v->mask, cap);
        if (!nm) return ei_error_set("out of memory (%zu tokens)", cap);
        v->mask = nm;
        v->cap = cap;
    }
    if (n) {
        memcpy(v->ids + v->n, ids, n * sizeof *ids);
        memset(v->mask + v->n, mask, n);
    }
    v->n += n;
    return 0;
}

void ei_tokvec_free(ei_tokvec *v) {
    free(v->ids);
    free(v->mask);
    memset(v, 0, sizeof *v);
}
