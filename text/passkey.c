/* Passkey retrieval samples. */
#include "text/passkey.h"

#include "core/ei_error.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const ei_passkey_default_filler =
    "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. ";

static int encode(const ei_tokenizer *tok, const char *s, ei_tokvec *v) {
    int32_t *ids = NULL;
    size_t n = 0;
    v->n = 0;
    if (ei_tokenizer_encode(tok, s, strlen(s), 0, 0, &ids, &n) != 0) return -1;
    int rc = ei_tokvec_push(v, ids, n, 0);
    free(ids);
    return rc;
}

/* The answer as the tokenizer continues the question: encode(question + " NNNNN") minus the
 * question's own tokens when they are a prefix of it (true for every tokenizer seen so far); else
 * encode("NNNNN") on its own. */
static int answer_ids(const ei_tokenizer *tok, const ei_tokvec *q, const char *qtext, int key, ei_tokvec *a) {
    char buf[256];
    ei_tokvec full = {0};
    snprintf(buf, sizeof buf, "%s %d", qtext, key);
    if (encode(tok, buf, &full) != 0) return -1;
    a->n = 0;
    int rc;
    if (full.n > q->n && memcmp(full.ids, q->ids, q->n * sizeof(int32_t)) == 0) {
        rc = ei_tokvec_push(a, full.ids + q->n, full.n - q->n, 1);
    } else {
        snprintf(buf, sizeof buf, "%d", key);
        rc = encode(tok, buf, a);
        memset(a->mask, 1, a->n);
    }
    ei_tokvec_free(&full);
    return rc;
}

int ei_passkey_sample(const ei_tokenizer *tok, const int32_t *filler, size_t n_filler, int64_t length,
                      double depth, int key, int for_eval, ei_tokvec *out, ei_tokvec *ref, int64_t *key_at) {
    static const char *question = "What is the pass key? The pass key is";
    char ktext[160];
    snprintf(ktext, sizeof ktext, "The pass key is %d. Remember it. %d is the pass key.", key, key);
    ei_tokvec k = {0}, q = {0}, a = {0};
    int rc = -1;
    out->n = 0;
    if (n_filler == 0) return ei_error_set("passkey: empty filler");
    if (!(depth >= 0.0 && depth <= 1.0)) return ei_error_set("passkey: depth %g outside [0, 1]", depth);
    if (encode(tok, ktext, &k) != 0 || encode(tok, question, &q) != 0 || answer_ids(tok, &q, question, key, &a) != 0)
        goto done;
    int bos = ei_tokenizer_bos(tok), eos = ei_tokenizer_eos(tok);
    int64_t fixed = (bos >= 0) + (int64_t)k.n + (int64_t)q.n;
    if (length < fixed) {
        ei_error_set("passkey: length %lld is too short (key sentence and question alone take %lld tokens)",
                     (long long)length, (long long)fixed);
        goto done;
    }
    int64_t nf = length - fixed, at = (int64_t)llround(depth * (double)nf);
    int32_t b = bos;
    if (bos >= 0 && ei_tokvec_push(out, &b, 1, 0) != 0) goto done;
    for (int64_t i = 0; i < nf; i++) {
        if (i == at) {
            if (key_at) *key_at = (int64_t)out->n;
            if (ei_tokvec_push(out, k.ids, k.n, 0) != 0) goto done;
        }
        if (ei_tokvec_push(out, &filler[(size_t)i % n_filler], 1, 0) != 0) goto done;
    }
    if (at == nf) {
        if (key_at) *key_at = (int64_t)out->n;
        if (ei_tokvec_push(out, k.ids, k.n, 0) != 0) goto done;
    }
    if (ei_tokvec_push(out, q.ids, q.n, 0) != 0) goto done;
    if (for_eval) {
        ref->n = 0;
        rc = ei_tokvec_push(ref, a.ids, a.n, 0);
    } else {
        int32_t e = eos;
        rc = ei_tokvec_push(out, a.ids, a.n, 1);
        if (rc == 0 && eos >= 0) rc = ei_tokvec_push(out, &e, 1, 1);
    }
done:
    ei_tokvec_free(&k);
    ei_tokvec_free(&q);
    ei_tokvec_free(&a);
    return rc;
}

int ei_parse_i64_list(const char *s, const char *option, int64_t **out, int *n) {
    *out = NULL;
    *n = 0;
    int cap = 0;
    const char *p = s;
    while (*p) {
        char *end;
        long long v = strtoll(p, &end, 10);
        if (end == p || (*end && *end != ',') || v <= 0) {
            free(*out);
            *out = NULL;
            return ei_error_set("--%s: '%s' is not a comma-separated list of positive integers", option, s);
        }
        if (*n == cap) {
            cap = cap ? cap * 2 : 8;
            int64_t *nv = realloc(*out, sizeof *nv * (size_t)cap);
            if (!nv) return ei_error_set("out of memory");
            *out = nv;
        }
        (*out)[(*n)++] = v;
        p = *end ? end + 1 : end;
    }
    if (*n == 0) return ei_error_set("--%s: empty list", option);
    return 0;
}

int ei_parse_f64_list(const char *s, const char *option, double **out, int *n) {
    *out = NULL;
    *n = 0;
    int cap = 0;
    const char *p = s;
    while (*p) {
        char *end;
        double v = strtod(p, &end);
        if (end == p || (*end && *end != ',') || !(v >= 0.0 && v <= 1.0)) {
            free(*out);
            *out = NULL;
            return ei_error_set("--%s: '%s' is not a comma-separated list of numbers in [0, 1]", option, s);
        }
        if (*n == cap) {
            cap = cap ? cap * 2 : 8;
            double *nv = realloc(*out, sizeof *nv * (size_t)cap);
            if (!nv) return ei_error_set("out of memory");
            *out = nv;
        }
        (*out)[(*n)++] = v;
        p = *end ? end + 1 : end;
    }
    if (*n == 0) return ei_error_set("--%s: empty list", option);
    return 0;
}
