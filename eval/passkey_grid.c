/* Passkey items generated on the device (eval/passkey_grid.h). */
#include "eval/passkey_grid.h"

#include "core/ei_error.h"
#include "core/ei_rng.h"
#include "text/passkey.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Room for one more element in a malloc'd array of *cap elements holding n. */
static void *grow(void *p, int n, int *cap, size_t elem) {
    if (n < *cap) return p;
    int c = *cap ? *cap * 2 : 8;
    void *q = realloc(p, elem * (size_t)c);
    if (!q) return NULL;
    *cap = c;
    return q;
}

int ei_pk_parse_lengths(const char *s, const char *option, int64_t **out, int *n) {
    int cap = 0;
    *out = NULL;
    *n = 0;
    for (const char *p = s; *p;) {
        char *end;
        long long v = strtoll(p, &end, 10);
        long long mul = 1;
        if (*end == 'k' || *end == 'K') {
            mul = 1024;
            end++;
        } else if (*end == 'm' || *end == 'M') {
            mul = 1024 * 1024;
            end++;
        }
        if (end == p || (*end && *end != ',') || v <= 0 || v > (1LL << 40) / mul) {
            free(*out);
            *out = NULL;
            return ei_error_set("--%s: '%s' is not a comma-separated list of positive token counts "
                                "(such as 1k,4k,16384)", option, s);
        }
        int64_t *a = grow(*out, *n, &cap, sizeof *a);
        if (!a) {
            free(*out);
            *out = NULL;
            return ei_error_set("out of memory");
        }
        *out = a;
        a[(*n)++] = v * mul;
        p = *end ? end + 1 : end;
    }
    if (*n == 0) return ei_error_set("--%s: empty list", option);
    return 0;
}

int ei_pk_parse_depths(const char *s, const char *option, double **out, int *n) {
    int cap = 0, percent = 0;
    double max = 0.0;
    *out = NULL;
    *n = 0;
    for (const char *p = s; *p;) {
        char *end;
        double v = strtod(p, &end);
        if (end != p && *end == '%') {
            percent = 1;
            end++;
        }
        if (end == p || (*end && *end != ',') || !(v >= 0.0 && v <= 100.0)) {
            free(*out);
            *out = NULL;
            return ei_error_set("--%s: '%s' is not a comma-separated list of depths (percentages 0..100 such as "
                                "0,25,50, or fractions 0..1)",
                                option, s);
        }
        double *a = grow(*out, *n, &cap, sizeof *a);
        if (!a) {
            free(*out);
            *out = NULL;
            return ei_error_set("out of memory");
        }
        *out = a;
        a[(*n)++] = v;
        if (v > max) max = v;
        p = *end ? end + 1 : end;
    }
    if (*n == 0) return ei_error_set("--%s: empty list", option);
    if (percent || max > 1.0)
        for (int i = 0; i < *n; i++) (*out)[i] /= 100.0;
    return 0;
}

int ei_pk_generate(const ei_tokenizer *tok, const char *filler, size_t filler_len, const ei_pk_grid *g,
                   ei_evalset *set) {
    if (!filler) {
        filler = ei_passkey_default_filler;
        filler_len = strlen(filler);
    }
    if (g->per_cell < 1) return ei_error_set("passkey: --per-cell must be at least 1");
    int64_t maxlen = 0;
    for (int i = 0; i < g->n_lengths; i++)
        if (g->lengths[i] > maxlen) maxlen = g->lengths[i];
    /* A token covers at least one byte and the filler repeats when short, so the longest sample
     * never needs more than this (the rule of `ei prepare --passkey`); cut at a space so no word
     * is split. Encoding a whole novel on a phone would cost more than the evaluation. */
    size_t cap = (size_t)maxlen * 16 + 1024;
    if (filler_len > cap) {
        filler_len = cap;
        while (filler_len > cap / 2 && filler[filler_len] != ' ' && filler[filler_len] != '\n') filler_len--;
    }
    int32_t *ids = NULL;
    size_t nf = 0;
    if (ei_tokenizer_encode(tok, filler, filler_len, 0, 0, &ids, &nf) != 0)
        return ei_error_prefix("passkey: encoding the filler: ");
    if (nf == 0) {
        free(ids);
        return ei_error_set("passkey: the filler text gives no tokens");
    }
    ei_rng keys;
    ei_rng_seed(&keys, g->seed);
    ei_tokvec v = {0}, ref = {0};
    int rc = 0;
    for (int li = 0; li < g->n_lengths && rc == 0; li++)
        for (int di = 0; di < g->n_depths && rc == 0; di++)
            for (int r = 0; r < g->per_cell && rc == 0; r++) {
                int key = 10000 + (int)ei_rng_below(&keys, 90000);
                char tag[128], kt[16];
                snprintf(tag, sizeof tag, "passkey:%lld:%.3g:%d", (long long)g->lengths[li], g->depths[di], r);
                snprintf(kt, sizeof kt, "%d", key);
                rc = ei_passkey_sample(tok, ids, nf, g->lengths[li], g->depths[di], key, 1, &v, &ref, NULL);
                if (rc == 0)
                    rc = ei_evalset_add(set, EI_TASK_PASSKEY, tag, v.ids, v.n, kt, ref.ids, ref.n);
            }
    free(ids);
    free(v.ids);
    free(v.mask);
    free(ref.ids);
    free(ref.mask);
    return rc;
}
